//! EL2 system registers, cache maintenance, the PSCI call that starts a core, and the jump
//! into the kernel: every instruction the loader needs that Rust cannot express.
//!
//! Owns: SCTLR_EL2, MAIR_EL2, TCR_EL2, TTBR0_EL2, VBAR_EL2, CNTVOFF_EL2 until the kernel
//! takes over, on every core. Never touches: EL1 state (the kernel sets it up), but for
//! TPIDR_EL1, which carries the core's index into the kernel.

use core::arch::{asm, global_asm};

/// SCTLR_EL2: M (MMU), C (data cache), I (instruction cache).
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_I: u64 = 1 << 12;

/// The exception level the loader runs at (2 bits of `CurrentEL`).
pub fn current_el() -> u64 {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effects and is allowed at every EL above 0.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack)) };
    (el >> 2) & 3
}

/// This core's affinity (MPIDR_EL1 Aff3..Aff0, without the U and MT bits): the value a
/// device tree's cpu node has in `reg` and PSCI `CPU_ON` takes.
pub fn mpidr() -> u64 {
    let m: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects and is allowed at EL2.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) m, options(nomem, nostack)) };
    m & 0xff_00ff_ffff
}

/// The physical counter and its frequency in Hz, for the loader's timeouts.
pub fn counter() -> (u64, u64) {
    let (now, hz): (u64, u64);
    // SAFETY: reading the counter registers has no side effects; EL2 may read them.
    unsafe {
        asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0", out(reg) now, out(reg) hz, options(nomem, nostack))
    };
    (now, hz)
}

/// PSCI `CPU_ON` (SMC64 function 0xC4000003) through the SMC conduit: the only one that
/// reaches firmware from EL2 (an HVC would trap to the loader itself). The core `mpidr`
/// starts at EL2 with its MMU off at `entry`, with `context` in x0. Returns PSCI's status
/// (0 success, negative an error).
///
/// # Safety
/// `entry` must be code that can run on a core with its MMU off, at EL2.
pub unsafe fn psci_cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    const CPU_ON: u64 = 0xC400_0003;
    let ret: u64;
    // SAFETY: an SMC with the SMC Calling Convention: x0..x3 in, x0 out, x4..x17 may be
    // clobbered by the firmware. The caller vouches for the entry point.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") CPU_ON => ret,
            inout("x1") mpidr => _,
            inout("x2") entry => _,
            inout("x3") context => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        )
    };
    ret as i64
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: waiting for an event only pauses the CPU.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// Points VBAR_EL2 at the loader's vectors, so a fault prints where it happened.
pub fn install_vectors() {
    // SAFETY: `loader_vectors` is a 2 KiB-aligned EL2 vector table (below) whose entries
    // only call `loader_exception`, which never returns.
    unsafe {
        asm!(
            "adr {t}, loader_vectors",
            "msr vbar_el2, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// Loads the translation registers and turns the MMU and caches on.
///
/// # Safety
/// `ttbr0` must be the physical address of a level-0 table that identity maps all code,
/// data and stack the loader uses from here on, with `mair` and `tcr` matching its
/// descriptors.
pub unsafe fn enable_mmu(mair: u64, tcr: u64, ttbr0: u64) {
    // SAFETY: the caller guarantees the tables map the loader where it runs; the barriers
    // order the table writes before the walker may read them, and the TLBs hold nothing
    // stale because the MMU was off.
    unsafe {
        asm!(
            "dsb sy",
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "tlbi alle2",
            "dsb sy",
            "isb",
            "mrs {t}, sctlr_el2",
            "orr {t}, {t}, {bits}",
            "msr sctlr_el2, {t}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr = in(reg) ttbr0,
            bits = in(reg) SCTLR_M | SCTLR_C | SCTLR_I,
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// Invalidates data-cache lines over `[start, end)` to the point of coherency, before the
/// MMU is on, so cached reads later cannot see stale lines over what was written uncached.
pub fn dcache_invalidate_range(start: u64, end: u64) {
    for_each_line(start, end, |a| {
        // SAFETY: clean-and-invalidate by VA only moves data between cache and memory; the
        // address is one the loader wrote, identity mapped or with the MMU off.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack)) }
    });
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack)) };
}

/// Cleans data-cache lines over `[start, end)` to the point of unification, so
/// instruction fetches see code the loader copied.
pub fn dcache_clean_range(start: u64, end: u64) {
    for_each_line(start, end, |a| {
        // SAFETY: cleaning by VA only writes dirty lines back; `a` is identity mapped.
        unsafe { asm!("dc cvau, {}", in(reg) a, options(nostack)) }
    });
    // SAFETY: barriers and an instruction-cache invalidate have no memory effects beyond
    // making the copied code visible to fetches.
    unsafe { asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack)) };
}

fn for_each_line(start: u64, end: u64, mut op: impl FnMut(u64)) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut a = start & !(line - 1);
    while a < end {
        op(a);
        a += line;
    }
}

/// The arguments seL4's `init_kernel` takes in x0..x5; every core gets the same.
#[derive(Clone, Copy)]
pub struct KernelArgs {
    /// Kernel virtual entry.
    pub entry: u64,
    /// x0: user image physical start.
    pub ui_p_start: u64,
    /// x1: user image physical end.
    pub ui_p_end: u64,
    /// x2: `paddr - vaddr` of the user image.
    pub pv_offset: u64,
    /// x3: user image virtual entry.
    pub v_entry: u64,
    /// x4: DTB physical address.
    pub dtb_paddr: u64,
    /// x5: DTB size.
    pub dtb_size: u64,
}

/// Jumps to the kernel as core `core` (0 the boot core, then 1.. in device-tree order).
///
/// # Safety
/// The kernel and user image must be in place, the MMU on with the kernel's window mapped,
/// and caches maintained for the copied code.
pub unsafe fn enter_kernel(a: &KernelArgs, core: u64) -> ! {
    // SAFETY: the caller guarantees the kernel is loaded and mapped; seL4's `_start` reads
    // exactly x0..x5, and, built for several cores, the core's index from TPIDR_EL1 (its
    // stack and per-core state follow from it). The virtual counter offset is zeroed so
    // guests and the kernel agree on time (CNTVOFF_EL2 resets to an unknown value).
    unsafe {
        asm!(
            "msr cntvoff_el2, xzr",
            "msr tpidr_el1, {core}",
            "isb",
            "br {entry}",
            entry = in(reg) a.entry,
            core = in(reg) core,
            in("x0") a.ui_p_start,
            in("x1") a.ui_p_end,
            in("x2") a.pv_offset,
            in("x3") a.v_entry,
            in("x4") a.dtb_paddr,
            in("x5") a.dtb_size,
            options(noreturn),
        )
    }
}

// EL2 vector table: every one of the 16 entries saves its index and calls
// `loader_exception(index, esr, elr, far)`, which prints and halts.
global_asm!(
    r#"
.macro vector index
    .balign 0x80
    mov x0, #\index
    b loader_vector_common
.endm
    .section .text.vectors, "ax"
    .balign 0x800
    .global loader_vectors
loader_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15
loader_vector_common:
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    bl loader_exception
1:  wfe
    b 1b
"#
);

#[unsafe(no_mangle)]
extern "C" fn loader_exception(index: u64, esr: u64, elr: u64, far: u64) -> ! {
    const KIND: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    let kind = KIND[(index & 3) as usize];
    crate::log!("unexpected {kind} exception (vector {index}): ESR_EL2={esr:#x} ELR_EL2={elr:#x} FAR_EL2={far:#x}");
    crate::log!("halted");
    halt()
}
