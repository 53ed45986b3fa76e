//! The other cores. Once the boot core has placed and checked everything, it starts each
//! with PSCI `CPU_ON`; a started core sets up EL2 as the boot core did (the same page
//! tables, MMU and caches, a stack of its own) and enters the kernel with the boot core's
//! arguments and its own index in TPIDR_EL1 (seL4's `_start` takes the index from there).
//!
//! How many: exactly the kernel's `MAX_NUM_NODES` (the payload's `cores`, which `capvisor
//! image` read from the kernel's `gen_config.json`), since the kernel's boot core waits
//! until that many have entered it. Which: the device tree's cpu nodes give the MPIDRs, and
//! core index k is the k-th cpu node. The boot core must be the first: seL4 on GICv2 uses
//! the index as the GIC CPU interface number, which on QEMU virt is the node's position. A
//! tree with more cpus than the kernel counts leaves the rest off.
//!
//! The boot core waits until each core has turned its MMU on and is about to enter the
//! kernel before it starts the next and enters the kernel itself, so a core that does not
//! come up is reported here, not as a kernel that never finishes booting; and by the time
//! the root task runs (after every core has entered the kernel and switched to its tables)
//! nothing uses the loader's memory any more.
//!
//! Owns: the secondary cores' stacks and the hand-off record they read. Never touches: a
//! core the kernel does not count.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use boot_image::fdt::{Fdt, FdtError};
use boot_image::payload;

use crate::cpu::{self, KernelArgs};

/// Cores the loader can start, the boot core included.
pub const MAX_CORES: usize = payload::MAX_CORES as usize;
/// Stack of each secondary core: it runs only `secondary_main`, no formatting.
const STACK_BYTES: usize = 16 << 10;
/// How long a started core may take to reach the kernel's entry (TCG on a busy host is slow).
const ARRIVAL_TIMEOUT_S: u64 = 30;

/// Everything a secondary core needs, written by the boot core before the first `CPU_ON`
/// and read-only from then on.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Handoff {
    mair: u64,
    tcr: u64,
    ttbr0: u64,
    args: KernelArgs,
}

/// Written once by [`start`] before any secondary runs; cleaned to memory, since the
/// secondaries read it with their MMU (and so their caches) off.
static mut HANDOFF: Handoff = Handoff {
    mair: 0,
    tcr: 0,
    ttbr0: 0,
    args: KernelArgs { entry: 0, ui_p_start: 0, ui_p_end: 0, pv_offset: 0, v_entry: 0, dtb_paddr: 0, dtb_size: 0 },
};

#[repr(C, align(16))]
struct Stacks([[u8; STACK_BYTES]; MAX_CORES]);

/// Core k's stack is entry k (entry 0, the boot core's, is unused: it has the linker's).
/// Only the entry code below touches it, through its address.
static mut STACKS: Stacks = Stacks([[0; STACK_BYTES]; MAX_CORES]);

/// Set by core k with its MMU on, just before it enters the kernel.
static ARRIVED: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(false) }; MAX_CORES];

// A secondary core's first instructions: at EL2, MMU off, x0 = its index (PSCI's context
// id). Interrupts masked, FP/SIMD made usable (as on the boot core), the stack of its
// index, then Rust.
global_asm!(
    r#"
    .section .text.secondary, "ax"
    .global loader_secondary_entry
loader_secondary_entry:
    msr daifset, #0xf
    mrs x1, cptr_el2
    bic x1, x1, #(1 << 10)
    msr cptr_el2, x1
    isb
    ldr x1, ={stacks}
    add x2, x0, #1
    mov x3, #{stack_bytes}
    madd x1, x2, x3, x1
    mov sp, x1
    bl loader_secondary_main
1:  wfe
    b 1b
"#,
    stacks = sym STACKS,
    stack_bytes = const STACK_BYTES,
);

unsafe extern "C" {
    fn loader_secondary_entry();
}

#[unsafe(no_mangle)]
extern "C" fn loader_secondary_main(core: u64) -> ! {
    // SAFETY: `start` wrote the record before starting this core and cleaned it to memory,
    // and nothing writes it afterwards.
    let h = unsafe { (&raw const HANDOFF).read() };
    cpu::install_vectors();
    // SAFETY: the boot core's tables identity-map the loader (this code, its .bss with the
    // stacks) and the console; they are complete and no longer written.
    unsafe { cpu::enable_mmu(h.mair, h.tcr, h.ttbr0) };
    if let Some(flag) = ARRIVED.get(core as usize) {
        flag.store(true, Ordering::Release);
    }
    // SAFETY: the boot core placed and checked the kernel and the user image before starting
    // this core; the tables map the kernel's window.
    unsafe { cpu::enter_kernel(&h.args, core) }
}

/// Why the other cores could not be started.
pub enum SmpError {
    /// The device tree cannot be read.
    Fdt(FdtError),
    /// Fewer cpu nodes than the kernel's cores.
    TooFewCpus { cores: u64, found: usize },
    /// The boot core is not the first cpu node.
    BootCoreNotFirst { mpidr: u64, first: u64 },
    /// PSCI refused to start a core.
    CpuOn { core: u64, mpidr: u64, status: i64 },
    /// A started core did not reach the kernel's entry.
    NoArrival { core: u64, mpidr: u64 },
}

impl fmt::Display for SmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmpError::Fdt(e) => write!(f, "cpus: {e}"),
            SmpError::TooFewCpus { cores, found } => write!(
                f,
                "the kernel is built for {cores} cores (MAX_NUM_NODES), the device tree has {found} cpu nodes (QEMU: -smp {cores})"
            ),
            SmpError::BootCoreNotFirst { mpidr, first } => {
                write!(f, "booted on the core with MPIDR {mpidr:#x}, but the device tree's first cpu is {first:#x}")
            }
            SmpError::CpuOn { core, mpidr, status } => {
                let what = match status {
                    -1 => "NOT_SUPPORTED",
                    -2 => "INVALID_PARAMETERS",
                    -4 => "ALREADY_ON",
                    -5 => "ON_PENDING",
                    -9 => "INVALID_ADDRESS",
                    _ => "error",
                };
                write!(f, "core {core} (MPIDR {mpidr:#x}): PSCI CPU_ON over SMC returned {status} ({what})")
            }
            SmpError::NoArrival { core, mpidr } => {
                write!(f, "core {core} (MPIDR {mpidr:#x}) was started but did not come up within {ARRIVAL_TIMEOUT_S} s")
            }
        }
    }
}

/// The MMU setting every core uses.
pub struct Mmu {
    /// MAIR_EL2.
    pub mair: u64,
    /// TCR_EL2.
    pub tcr: u64,
    /// TTBR0_EL2: the root table's physical address.
    pub ttbr0: u64,
}

/// Starts cores 1..`cores` and waits until each is about to enter the kernel with `args`.
/// Returns the MPIDRs of the cores started, in index order (the boot core's first).
pub fn start(fdt: &Fdt<'_>, cores: u64, mmu: &Mmu, args: &KernelArgs) -> Result<[u64; MAX_CORES], SmpError> {
    let mut ids = [0u64; MAX_CORES];
    if cores <= 1 {
        ids[0] = cpu::mpidr();
        return Ok(ids);
    }
    let found = fdt.cpu_ids(&mut ids).map_err(SmpError::Fdt)?;
    if (found as u64) < cores {
        return Err(SmpError::TooFewCpus { cores, found });
    }
    if ids[0] != cpu::mpidr() {
        return Err(SmpError::BootCoreNotFirst { mpidr: cpu::mpidr(), first: ids[0] });
    }
    // SAFETY: no secondary runs yet; the record is written here once.
    unsafe { (&raw mut HANDOFF).write(Handoff { mair: mmu.mair, tcr: mmu.tcr, ttbr0: mmu.ttbr0, args: *args }) };
    let handoff = (&raw const HANDOFF) as u64;
    cpu::dcache_invalidate_range(handoff, handoff + core::mem::size_of::<Handoff>() as u64);
    let stacks = (&raw const STACKS) as u64;
    for core in 1..cores {
        let mpidr = ids[core as usize];
        // The core writes its stack with its caches off: no line of it may linger here.
        let stack = stacks + core * STACK_BYTES as u64;
        cpu::dcache_invalidate_range(stack, stack + STACK_BYTES as u64);
        // SAFETY: the entry code runs with the MMU off at EL2 and reads only the hand-off
        // record (in memory) and its stack's address.
        let status = unsafe { cpu::psci_cpu_on(mpidr, loader_secondary_entry as *const () as u64, core) };
        if status != 0 {
            return Err(SmpError::CpuOn { core, mpidr, status });
        }
        let (t0, hz) = cpu::counter();
        while !ARRIVED[core as usize].load(Ordering::Acquire) {
            let (now, _) = cpu::counter();
            if now.wrapping_sub(t0) > ARRIVAL_TIMEOUT_S * hz {
                return Err(SmpError::NoArrival { core, mpidr });
            }
            core::hint::spin_loop();
        }
    }
    Ok(ids)
}
