//! Fuzz mode (entry `_start_fuzz`, load address + 0x300, `configs/test-guest-fuzz.toml`): a
//! seeded loop that keeps doing what a hostile or broken kernel would, and recovers through
//! its own exception vectors.
//!
//! # How a provocation runs and how the guest gets back
//! Every provocation is one to a few instruction words written to a page of RAM
//! ([`CODE_PAGE`]), followed by a branch back, and run by `fuzz_exec` with every register
//! `x0`-`x30` loaded from a chosen register file and `SP_EL0` as the stack (`SPSel` 0). An
//! exception the words cause is taken by this guest's own vector (the "current EL, SP_EL0"
//! group) on `SP_EL1`, which the words cannot reach, and [`on_sync`] returns from it into
//! `fuzz_back`, which restores the stack, the callee-saved registers, `FPCR`, `SPSel` and
//! `DAIF` and returns to the loop: a longjmp. The words cannot hurt the guest itself:
//! - random words are filtered ([`acceptable`]) of what would only destroy the guest without
//!   reaching the hypervisor: unconditional and register branches (into its own code),
//!   `ERET`, conditional branches to themselves, writes to `SCTLR_EL1`, `VBAR_EL1` and
//!   `CPACR_EL1`, `WFI`/`WFE` (exercised in storms, where a wake-up is arranged), and
//!   `HLT #0xf000`, which QEMU with semihosting on (as the test rig runs it) takes as a
//!   semihosting call from any exception level: a guest could end QEMU or write host files
//!   with it, which says nothing about capvisor. Writes to the debug registers are left out
//!   unless the record asks for them ([`fuzz_abi::FLAG_DEBUG_REGISTERS`] says why);
//! - the registers hold addresses of devices, holes and a scratch area ([`DATA`]), small and
//!   random numbers, never addresses of this program; branches reach only zeroed RAM
//!   around [`CODE_PAGE`] (`UDF`);
//! - an interrupt a stray load acknowledged (the GICC frame is a device address and an
//!   offset away) is ended before the next `WFI` storm ([`end_stray_acknowledgements`]).
//!
//! # What it does (one action per iteration, chosen by the seed)
//! - **insn**: one random instruction word at EL1.
//! - **sysreg**: `MRS`/`MSR`/`SYS` words sweeping the whole encoding space (op0 1-3) from a
//!   seeded start, and random ones: trapped ones reach seL4 and the VMM.
//! - **mem**: loads, stores of every size, unaligned, pair, exclusive, acquire/release,
//!   SIMD, atomics, prefetch and cache maintenance by address (`DC CIVAC`, `CVAC`, `CVAU`,
//!   `IVAC`, `ZVA`, `IC IVAU`), and instruction fetches, on every kind of guest-physical page:
//!   emulated devices (GIC distributor, PL011, PL031, a writable flash bank mapped read-only
//!   while it reads as an array, a read-only bank, a dummy device), holes, addresses past the
//!   stage 2, RAM mapped at the first touch, RAM. With the MMU off (Device memory: unaligned
//!   accesses fault at EL1) or on, through an identity map that shows the devices as Device
//!   or as Normal non-cacheable memory, so unaligned and exclusive accesses reach stage 2.
//! - **call**: `HVC` and `SMC` with random function IDs (PSCI, SMCCC, other owners,
//!   yielding, random) and arguments, every seL4 system call number in `x7` in turn; each
//!   answer is checked against what PSCI 1.0 and seL4 allow ([`answer_ok`]).
//! - **forge**: `HVC` with `Send`, `NBSend` or `Call` in `x7` to the VM's own fault
//!   endpoints ([`fuzz_abi::fault_cptr`]): messages the VMM receives as exits of this or the
//!   other vCPU (data and instruction aborts, traps, maintenance, virtual PPIs, capability
//!   faults), each naming a PC from which the guest recovers.
//! - **cpu_on**: PSCI `CPU_ON` over `HVC` and `SMC`, 32- and 64-bit, with bad targets and
//!   bad entry points (each answer checked), and with the good one: vCPU 1 then runs its own
//!   loop (calls, banked distributor registers, SGIs, `WFE`) and turns itself off.
//! - **wfx**: storms of `WFI` (each woken by the virtual timer, the interrupt taken and ended)
//!   and of `WFE`.
//!
//! The functions that end the caller or the VM (`CPU_OFF` on vCPU 0, `SYSTEM_OFF`,
//! `SYSTEM_RESET`, `SYSTEM_RESET2`, `SYSTEM_SUSPEND`) and malformed forged exits are left to
//! the end: after its iterations the guest prints a summary and ends one of four ways,
//! chosen by the seed ([`Finale`]), each a known end for the VMM to report.

use core::arch::{asm, global_asm};

use crate::fuzz_abi::{self, label, psci};
use crate::{Frame, GICC, GICD, Shared, Uart, VTIMER_PPI, mmio_read, mmio_write, sel4_calls};

use core::fmt::Write;

/// The page the words run from (`fuzz_code_page` in `link.ld`, where `fuzz_exec` branches
/// to). The 1 MiB on either side is never written: a conditional branch of a random word
/// lands on zeros (`UDF`).
const CODE_PAGE: u64 = 0x4080_0000;
/// Words written to the code page each time, branch back included (the rest is cleared).
const CODE_WORDS: usize = 8;
/// RAM the words may read and write (1 MiB); `SP_EL0` points into its middle.
const DATA: u64 = 0x40c0_0000;
const DATA_BYTES: u64 = 0x10_0000;
/// The words' stack.
const WORDS_SP: u64 = DATA + DATA_BYTES / 2;
/// The level-1 translation table of the MMU-on accesses (one page).
const TABLES: u64 = 0x40f0_0000;
/// RAM that stays zero: read, and fetched from (as `UDF`); touched first here, so the VM's
/// first-touch path sees it. 1 MiB clear of [`DATA`], which stores with negative offsets
/// reach below.
const ZERO_RAM: [(u64, u64); 2] = [(0x4020_0000, 0x4070_0000), (0x40a0_0000, 0x40b0_0000)];

/// The devices of `configs/test-guest-fuzz.toml`: base and size. The GICC frame (the real
/// virtual CPU interface, no exit) is left alone: writes there only disable this guest's own
/// interrupts.
const DEVICES: [(u64, u64); 6] = [
    (GICD, 0x1_0000),
    (crate::UART, 0x1000),
    (crate::RTC, 0x1000),
    (crate::FLASH, 0x20_0000),
    (0x0, 0x20_0000),
    (0x0a00_0000, 0x1000),
];
/// Addresses with nothing behind them: between and after the devices, around RAM, past
/// the 40- and 44-bit stage-2 limits, at the top of the address space.
const HOLES: [u64; 18] = [
    0x0020_0000,
    0x0420_0000,
    0x0801_2000,
    0x0802_0000,
    0x0901_1000,
    0x0a00_1000,
    0x0c00_0000,
    0x1000_0000,
    0x3fff_f000,
    0x4100_0000,
    0x5000_0000,
    0x8000_0000,
    0x1_0000_0000,
    0xff_ffff_f000,
    1 << 40,
    1 << 44,
    1 << 47,
    0xffff_ffff_ffff_f000,
];

// ---- the words' runner ----

unsafe extern "C" {
    /// Runs the code page with the registers `regs[0..31]` and `SP_EL0 = regs[31]`;
    /// returns `x0` as the words left it.
    fn fuzz_exec(regs: *const u64) -> u64;
    /// Where the words branch back to, and where an exception they cause resumes.
    fn fuzz_back();
    /// vCPU 1's way out: turns itself off (no stack needed). Forged exits of vCPU 1 name
    /// `fuzz_v1_off - 4` as their PC.
    fn fuzz_v1_off();
    /// vCPU 1's entry (`main.rs`): stack, vectors, then [`fuzz_secondary`].
    fn fuzz_secondary_entry();
    /// [`CODE_PAGE`], as the linker script places it.
    static fuzz_code_page: u8;
}

global_asm!(
    r#"
.section .text.fuzz, "ax"
.global fuzz_exec
fuzz_exec:
    sub sp, sp, #176
    stp x18, x19, [sp, #0]
    stp x20, x21, [sp, #16]
    stp x22, x23, [sp, #32]
    stp x24, x25, [sp, #48]
    stp x26, x27, [sp, #64]
    stp x28, x29, [sp, #80]
    stp x30, xzr, [sp, #96]
    stp d8, d9, [sp, #112]
    stp d10, d11, [sp, #128]
    stp d12, d13, [sp, #144]
    stp d14, d15, [sp, #160]
    mrs x1, fpcr
    str x1, [sp, #104]
    mov x1, sp
    adrp x2, {saved_sp}
    str x1, [x2, :lo12:{saved_sp}]
    ldr x1, [x0, #248]
    msr sp_el0, x1
    msr spsel, #0
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0]
    b fuzz_code_page

.global fuzz_back
fuzz_back:
    msr spsel, #1
    msr daifset, #0xf
    adrp x1, {saved_sp}
    ldr x1, [x1, :lo12:{saved_sp}]
    mov sp, x1
    ldr x1, [sp, #104]
    msr fpcr, x1
    ldp d8, d9, [sp, #112]
    ldp d10, d11, [sp, #128]
    ldp d12, d13, [sp, #144]
    ldp d14, d15, [sp, #160]
    ldp x18, x19, [sp, #0]
    ldp x20, x21, [sp, #16]
    ldp x22, x23, [sp, #32]
    ldp x24, x25, [sp, #48]
    ldp x26, x27, [sp, #64]
    ldp x28, x29, [sp, #80]
    ldr x30, [sp, #96]
    add sp, sp, #176
    ret

    nop
.global fuzz_v1_off
fuzz_v1_off:
    movz x0, #0x0002
    movk x0, #0x8400, lsl #16
    mov x7, #0
    hvc #0
1:  wfe
    b 1b
"#,
    saved_sp = sym SAVED_SP,
);

/// `SP_EL1` of `fuzz_exec`'s frame, for `fuzz_back`.
static SAVED_SP: Shared = Shared::new();
/// The words are running (vCPU 0): an exception returns into `fuzz_back`.
static ACTIVE: Shared = Shared::new();
/// The words took an exception, and its syndrome.
static FAULTED: Shared = Shared::new();
static FAULT_ESR: Shared = Shared::new();
/// The guest is in fuzz mode (set once, before anything can fault).
static MODE: Shared = Shared::new();

/// Whether the guest runs in fuzz mode (the vectors ask).
pub fn mode() -> bool {
    MODE.get() != 0
}

fn poke32(addr: u64, v: u32) {
    // SAFETY: `addr` is in the code page, the scratch area or the tables, which this
    // program owns and nothing else of it uses (the MMU is off: a Device store).
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) };
}

fn poke64(addr: u64, v: u64) {
    // SAFETY: as `poke32`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) };
}

fn peek64(addr: u64) -> u64 {
    // SAFETY: an aligned read of this VM's RAM (the parameter record), no side effect.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// A register file for the words: `x0`-`x30`, then `SP_EL0`.
#[derive(Clone, Copy)]
struct Regs([u64; 32]);

impl Regs {
    fn random(rng: &mut Rng) -> Self {
        let mut r = [0u64; 32];
        for v in r.iter_mut() {
            *v = rng.pool();
        }
        r[31] = WORDS_SP;
        Regs(r)
    }
}

/// Runs `words` (then a branch back) with `regs`: `x0` after them, or the syndrome of the
/// exception they took.
fn exec(words: &[u32], regs: &Regs) -> Result<u64, u64> {
    let back = fuzz_back as *const () as u64;
    let n = words.len().min(CODE_WORDS - 1);
    for i in 0..CODE_WORDS {
        let at = CODE_PAGE + 4 * i as u64;
        let w = match words.get(i) {
            Some(w) if i < n => *w,
            _ if i == n => 0x1400_0000 | ((back.wrapping_sub(at) >> 2) & 0x3ff_ffff) as u32,
            _ => 0,
        };
        poke32(at, w);
    }
    // SAFETY: makes the words just stored visible to instruction fetch; no memory effect.
    unsafe { asm!("dsb ish", "ic ivau, {p}", "dsb ish", "isb", p = in(reg) CODE_PAGE, options(nostack)) };
    FAULTED.set(0);
    ACTIVE.set(1);
    // SAFETY: `fuzz_exec` saves what the caller keeps (callee-saved registers, SP, FPCR)
    // and restores it in `fuzz_back`, whether the words return there or an exception does
    // (`on_sync`); the words touch no memory of this program (see the module docs).
    let x0 = unsafe { fuzz_exec(regs.0.as_ptr()) };
    ACTIVE.set(0);
    if FAULTED.get() != 0 { Err(FAULT_ESR.get()) } else { Ok(x0) }
}

// ---- randomness ----

/// SplitMix64: small, and the same sequence for the same seed on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A register value: small and negative numbers, powers of two, device and hole
    /// addresses, the scratch area, random bits; never near this program's RAM (a power of
    /// two can be its base, 0x4000_0000), which it moves 1 TiB up.
    fn pool(&mut self) -> u64 {
        let v = self.pool_any();
        if (fuzz_abi::RAM_BASE - 0x10_0000..DATA).contains(&v) { v | (1 << 40) } else { v }
    }
    fn pool_any(&mut self) -> u64 {
        match self.below(9) {
            0 => self.below(4097),
            1 => 0u64.wrapping_sub(1 + self.below(4096)),
            2 => (1u64 << self.below(64)).wrapping_sub(self.below(2)),
            3 => self.device_addr(),
            4 => HOLES[self.below(HOLES.len() as u64) as usize] + self.below(0x1000),
            5 => DATA + self.below(DATA_BYTES),
            6 => self.next() & 0xffff_ffff,
            _ => self.next(),
        }
    }
    /// An address in an emulated device: a register-like offset, anywhere, or its last bytes.
    fn device_addr(&mut self) -> u64 {
        let (base, size) = DEVICES[self.below(DEVICES.len() as u64) as usize];
        let off = match self.below(3) {
            0 => self.below(0x40) * 4 % size,
            1 => self.below(size),
            _ => size - 1 - self.below(16),
        };
        base + off
    }
}

// ---- what happened ----

/// Actions by kind, in [`Action`] order.
static ACTIONS: [Shared; 7] = [const { Shared::new() }; 7];
/// Exceptions the words took, by exception class.
static TAKEN: [Shared; 64] = [const { Shared::new() }; 64];
/// Of those, synchronous external aborts: what the VMM injects for an access it refuses.
static INJECTED: Shared = Shared::new();
/// Exceptions outside the words on vCPU 0 (none expected).
static UNEXPECTED: Shared = Shared::new();
static IRQS: Shared = Shared::new();
static TIMER_IRQS: Shared = Shared::new();
/// Calls answered, and answers PSCI 1.0 or seL4 do not allow.
static CALLS: Shared = Shared::new();
static ODD: Shared = Shared::new();
/// Forged exits by label, 0 to 8.
static FORGED: [Shared; 9] = [const { Shared::new() }; 9];
/// `MRS`/`MSR`/`SYS` encodings swept so far, and the sweep's start.
static SWEPT: Shared = Shared::new();
static SWEEP_START: Shared = Shared::new();
/// The next seL4 call number for `x7` (an index into `sel4_calls`).
static SEL4_NEXT: Shared = Shared::new();
/// Memory accesses by view ([`View`]).
static VIEWS: [Shared; 3] = [const { Shared::new() }; 3];
/// vCPU 1: started, loops finished, exceptions (each ended its run), odd answers.
static V1_STARTS: Shared = Shared::new();
static V1_DONE: Shared = Shared::new();
static V1_EXCEPTIONS: Shared = Shared::new();
static V1_ODD: Shared = Shared::new();
static V1_CALLS: Shared = Shared::new();

/// An answer or outcome that breaks the rules: counted, and the first few printed.
fn odd(what: core::fmt::Arguments<'_>) {
    ODD.bump();
    if ODD.get() <= 40 {
        say!("fuzz: odd: {what}");
    }
}

// ---- exceptions ----

fn cpu() -> u64 {
    sysreg_read!("mpidr_el1") & 0xff
}

/// A synchronous exception in fuzz mode. From the words: recorded, and the guest goes on
/// at `fuzz_back`. On vCPU 1 (which takes none unless something was forged or injected):
/// counted, and vCPU 1 turns itself off. Elsewhere on vCPU 0: counted and skipped.
pub fn on_sync(f: &mut Frame) {
    let ec = ((f.esr >> 26) & 0x3f) as usize;
    if cpu() != 0 {
        V1_EXCEPTIONS.bump();
        f.elr = fuzz_v1_off as *const () as u64;
        f.spsr = ENTRY_PSTATE;
        return;
    }
    if ACTIVE.get() != 0 {
        if let Some(c) = TAKEN.get(ec) {
            c.bump();
        }
        if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) && f.esr & 0x3f == 0x10 {
            INJECTED.bump();
        }
        FAULT_ESR.set(f.esr);
        FAULTED.set(1);
        f.elr = fuzz_back as *const () as u64;
        f.spsr = ENTRY_PSTATE;
        return;
    }
    UNEXPECTED.bump();
    if UNEXPECTED.get() <= 4 {
        say!("fuzz: exception outside the words: esr {:#x} elr {:#x} far {:#x}", f.esr, f.elr, f.far);
    }
    // An SVC's ELR is past it already.
    if ec != 0x15 {
        f.elr += 4;
    }
}

/// PSTATE to resume with: EL1h, every interrupt masked.
const ENTRY_PSTATE: u64 = 0x3c5;

/// An interrupt in fuzz mode: acknowledged and ended; the timer is switched off and any
/// other line disabled in the distributor, so that nothing fires again by itself.
pub fn on_irq() {
    let iar = mmio_read(GICC + 0x0c);
    let id = iar & 0x3ff;
    if id >= 1020 {
        return;
    }
    IRQS.bump();
    if id == VTIMER_PPI {
        TIMER_IRQS.bump();
        sysreg_write!("cntv_ctl_el0", 0);
    } else if id >= 16 {
        mmio_write(GICD + 0x180 + 4 * u64::from(id / 32), 1 << (id % 32));
    }
    mmio_write(GICC + 0x10, iar);
}

/// FIQ, SError, or an exception from a lower level in fuzz mode: from the words, as
/// [`on_sync`]; anywhere else the guest cannot go on.
pub fn on_unexpected(f: &mut Frame) {
    if cpu() == 0 && ACTIVE.get() != 0 {
        TAKEN[63].bump();
        FAULT_ESR.set(f.esr);
        FAULTED.set(1);
        f.elr = fuzz_back as *const () as u64;
        f.spsr = ENTRY_PSTATE;
        return;
    }
    say!("fuzz: unexpected exception on vCPU {}: esr {:#x} elr {:#x}", cpu(), f.esr, f.elr);
    crate::system_off(8);
}

// ---- instruction words ----

/// Whether a random word may run: see the module docs for what is left out and why.
fn acceptable(w: u32) -> bool {
    // B, BL: anywhere within 128 MiB, this program's code included.
    if w & 0x7c00_0000 == 0x1400_0000 {
        return false;
    }
    // BR, BLR, RET, ERET, DRPS and their authenticated forms.
    if w & 0xfe00_0000 == 0xd600_0000 {
        return false;
    }
    // B.cond, CBZ/CBNZ (imm19) and TBZ/TBNZ (imm14) to themselves: a loop.
    if (w & 0xff00_0010 == 0x5400_0000 || w & 0x7e00_0000 == 0x3400_0000) && (w >> 5) & 0x7_ffff == 0 {
        return false;
    }
    if w & 0x7e00_0000 == 0x3600_0000 && (w >> 5) & 0x3fff == 0 {
        return false;
    }
    // HLT #0xf000: QEMU's semihosting call.
    if w & 0xffe0_001f == 0xd440_0000 && (w >> 5) & 0xffff == 0xf000 {
        return false;
    }
    if w & 0xffc0_0000 == 0xd500_0000 {
        return system_acceptable(w);
    }
    true
}

/// A system instruction (`MSR` immediate, hint, barrier, `SYS`, `MSR`, `MRS`) that may run.
fn system_acceptable(w: u32) -> bool {
    let read = w & (1 << 21) != 0;
    let op0 = (w >> 19) & 3;
    let op1 = (w >> 16) & 7;
    let crn = (w >> 12) & 0xf;
    let crm = (w >> 8) & 0xf;
    let op2 = (w >> 5) & 7;
    // WFI, WFE (hints CRm 0, op2 2 and 3), WFET, WFIT (CRm 1, op2 0 and 1).
    if op0 == 0 && crn == 2 && ((crm == 0 && (op2 == 2 || op2 == 3)) || (crm == 1 && op2 < 2)) {
        return false;
    }
    // Debug and trace registers: only with the flag (see `fuzz_abi::FLAG_DEBUG_REGISTERS`).
    if op0 == 2 && !read && FLAGS.get() & fuzz_abi::FLAG_DEBUG_REGISTERS == 0 {
        return false;
    }
    // SCTLR_EL1 (the MMU, endianness, alignment), CPACR_EL1 (the FP registers the compiled
    // code uses), VBAR_EL1 (these vectors).
    let denied = [(0, 1, 0, 0), (0, 1, 0, 2), (0, 12, 0, 0)];
    !(op0 == 3 && !read && denied.contains(&(op1, crn, crm, op2)))
}

/// The record's flags (`fuzz_abi::FLAG_DEBUG_REGISTERS`).
static FLAGS: Shared = Shared::new();

/// A random word that may run.
fn random_word(rng: &mut Rng) -> u32 {
    loop {
        let w = rng.next() as u32;
        if acceptable(w) {
            return w;
        }
    }
}

/// Encodings of `MRS`/`MSR`/`SYS` with op0 1 to 3: L, op0, op1, CRn, CRm, op2.
const SYSREG_SPACE: u64 = 2 * 3 * 8 * 16 * 16 * 8;

/// The `i`-th encoding of the sweep (Rt chosen apart).
fn sysreg_word(i: u64, rt: u32) -> u32 {
    let i = i % SYSREG_SPACE;
    let op2 = i % 8;
    let crm = (i / 8) % 16;
    let crn = (i / 128) % 16;
    let op1 = (i / 2048) % 8;
    let op0 = 1 + (i / 16384) % 3;
    let l = i / 49152;
    0xd500_0000
        | (l << 21) as u32
        | (op0 << 19) as u32
        | (op1 << 16) as u32
        | (crn << 12) as u32
        | (crm << 8) as u32
        | (op2 << 5) as u32
        | (rt & 31)
}

// ---- the actions ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Insn,
    Sysreg,
    Mem,
    Call,
    Forge,
    CpuOn,
    Wfx,
}

const ACTION_NAMES: [&str; 7] = ["insn", "sysreg", "mem", "call", "forge", "cpu_on", "wfx"];

fn pick(rng: &mut Rng) -> Action {
    match rng.below(100) {
        0..30 => Action::Insn,
        30..50 => Action::Sysreg,
        50..78 => Action::Mem,
        78..90 => Action::Call,
        90..94 => Action::Forge,
        94..97 => Action::CpuOn,
        _ => Action::Wfx,
    }
}

fn insn(rng: &mut Rng) {
    let regs = Regs::random(rng);
    let _ = exec(&[random_word(rng)], &regs);
}

fn sysreg(rng: &mut Rng) {
    let rt = rng.below(32) as u32;
    let w = if rng.chance(50) {
        let i = SWEEP_START.get() + SWEPT.get();
        SWEPT.bump();
        sysreg_word(i, rt)
    } else {
        sysreg_word(rng.next(), rt)
    };
    if system_acceptable(w) {
        let _ = exec(&[w], &Regs::random(rng));
    }
}

/// How the guest sees memory for an access: MMU off (everything Device-nGnRnE, unaligned
/// accesses fault at EL1), or on with the devices' gigabytes as Device-nGnRE or as Normal
/// non-cacheable memory (unaligned and exclusive accesses reach stage 2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Off,
    Device,
    Normal,
}

/// `MAIR_EL1`: index 0 Device-nGnRnE, 1 Normal non-cacheable, 2 Device-nGnRE.
const MAIR: u64 = 0x04_44_00;
/// `TCR_EL1`: 512 GiB from TTBR0 (T0SZ 25, walks from level 1), 4 KiB granule,
/// non-cacheable walks, TTBR1 walks off (EPD1), 40-bit output.
const TCR: u64 = 25 | (1 << 23) | (2 << 32);
/// `SCTLR_EL1` as the guest started (MMU off).
static SCTLR: Shared = Shared::new();

fn mmu_on(view: View) {
    // Written in full each time: nothing of the table survives a stray store.
    let dev_attr = if view == View::Normal { 1 } else { 2 };
    for i in 0..512u64 {
        let attr = if i == 1 { 1 } else { dev_attr };
        // A 1 GiB block: identity, AttrIndx, AF, EL1 read/write.
        poke64(TABLES + 8 * i, (i << 30) | (attr << 2) | (1 << 10) | 0b01);
    }
    let sctlr = (SCTLR.get() | 1) & !(1 << 1);
    // SAFETY: an identity map of everything this program uses, with the same memory
    // contents (RAM as Normal non-cacheable, so there is nothing to clean): the code after
    // the `isb` runs on as before. Set again in full each time: random words may have
    // written MAIR, TCR or TTBR0 while the MMU was off.
    unsafe {
        asm!(
            "msr mair_el1, {mair}", "msr tcr_el1, {tcr}", "msr ttbr0_el1, {ttbr}", "isb",
            "tlbi vmalle1", "dsb nsh", "isb", "msr sctlr_el1, {sctlr}", "isb",
            mair = in(reg) MAIR, tcr = in(reg) TCR, ttbr = in(reg) TABLES, sctlr = in(reg) sctlr,
            options(nostack)
        )
    };
}

fn mmu_off() {
    // SAFETY: back to the identity the MMU-off guest sees.
    unsafe { asm!("msr sctlr_el1, {s}", "isb", s = in(reg) SCTLR.get(), options(nostack)) };
}

/// Where an access goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Device,
    Hole,
    Data,
    Zero,
    Image,
}

fn address(rng: &mut Rng, region: Region) -> u64 {
    match region {
        Region::Device => rng.device_addr(),
        // Clear of the page's ends: a writeback or unscaled offset (-256 to 255) stays in it.
        Region::Hole => HOLES[rng.below(HOLES.len() as u64) as usize] + 0x100 + rng.below(0xe00),
        Region::Data => DATA + rng.below(DATA_BYTES - 64),
        Region::Zero => {
            let (lo, hi) = ZERO_RAM[rng.below(2) as usize];
            lo + rng.below(hi - lo)
        }
        Region::Image => 0x4000_0000 + rng.below(0x4000),
    }
}

/// A load or store form: its word with Rn = x1, and whether it writes memory.
fn mem_word(rng: &mut Rng, rt: u32) -> (u32, bool) {
    let (rn, rt2, rs, rm) = (1u32, if rt == 3 { 6 } else { 3 }, if rt == 4 { 7 } else { 4 }, 5u32);
    let imm9 = (rng.below(512) as u32) << 12;
    let base = rt | (rn << 5);
    let (w, write) = match rng.below(40) {
        // Single registers, every size, loads and stores.
        0 => (0x3940_0000, false),
        1 => (0x7940_0000, false),
        2 => (0xb940_0000, false),
        3 => (0xf940_0000, false),
        4 => (0x3900_0000, true),
        5 => (0x7900_0000, true),
        6 => (0xb900_0000, true),
        7 => (0xf900_0000, true),
        // Sign-extending loads.
        8 => (0x3980_0000, false),
        9 => (0x39c0_0000, false),
        10 => (0x7980_0000, false),
        11 => (0xb980_0000, false),
        // Unscaled offsets (unaligned), pre- and post-index (writeback), register offset.
        12 => (0xf840_0000 | imm9, false),
        13 => (0xb800_0000 | imm9, true),
        14 => (0x7840_0000 | imm9, false),
        15 => (0xf840_0c00 | imm9, false),
        16 => (0xf800_0400 | imm9, true),
        17 => (0xf860_6800 | (rm << 16), false),
        18 => (0xf820_6800 | (rm << 16), true),
        // Pairs.
        19 => (0x2940_0000 | (rt2 << 10), false),
        20 => (0xa940_0000 | (rt2 << 10), false),
        21 => (0xa900_0000 | (rt2 << 10), true),
        22 => (0x6940_0000 | (rt2 << 10), false),
        23 => (0xa800_0000 | (rt2 << 10), true),
        // Exclusives, acquire/release, exclusive pairs.
        24 => (0xc85f_7c00, false),
        25 => (0x085f_7c00, false),
        26 => (0x8800_7c00 | (rs << 16), true),
        27 => (0xc800_fc00 | (rs << 16), true),
        28 => (0xc8df_fc00, false),
        29 => (0x889f_fc00, true),
        30 => (0xc87f_0000 | (rt2 << 10), false),
        31 => (0xc820_0000 | (rs << 16) | (rt2 << 10), true),
        // SIMD: a 16-byte register, a D register, a structure load.
        32 => (0x3dc0_0000, false),
        33 => (0x3d80_0000, true),
        34 => (0xfd40_0000, false),
        35 => (0x4c40_7000, false),
        // Atomics (ARMv8.1; undefined on the Cortex-A57, so the guest's own).
        36 => (0xf820_0000 | (rs << 16), true),
        37 => (0xc8a0_7c00 | (rs << 16), true),
        // Prefetch.
        38 => (0xf980_0000, false),
        _ => (0x3d40_0000, false),
    };
    (w | base, write)
}

/// Cache maintenance by address (`x1`): `DC CIVAC`, `CVAC`, `CVAU`, `IVAC`, `ZVA`, `IC IVAU`.
const CACHE_OPS: [u32; 6] = [0xd50b_7e21, 0xd50b_7a21, 0xd50b_7b21, 0xd508_7621, 0xd50b_7421, 0xd50b_7521];

fn mem(rng: &mut Rng) {
    let mut regs = Regs::random(rng);
    let kind = rng.below(10);
    if kind == 0 {
        // An instruction fetch from a device, a hole or zeroed RAM (MMU off): never returns.
        let region = [Region::Device, Region::Hole, Region::Zero][rng.below(3) as usize];
        let mut target = address(rng, region) & !3;
        // Not the writable flash bank: what it reads as an array is whatever was programmed.
        if region == Region::Device && (crate::FLASH..crate::FLASH + 0x20_0000).contains(&target) {
            target = crate::UART;
        }
        regs.0[1] = target;
        VIEWS[0].bump();
        if exec(&[0xd63f_0020], &regs).is_ok() {
            odd(format_args!("a fetch from {target:#x} returned"));
        }
        return;
    }
    let cache = kind == 1;
    let rt = if rng.chance(10) { 31 } else { [0, 2, 3, 8, 17, 30][rng.below(6) as usize] };
    let (word, write) = if cache {
        let op = CACHE_OPS[rng.below(CACHE_OPS.len() as u64) as usize];
        (op, true)
    } else {
        mem_word(rng, rt)
    };
    let region = if write {
        [Region::Device, Region::Device, Region::Hole, Region::Data][rng.below(4) as usize]
    } else {
        [Region::Device, Region::Device, Region::Hole, Region::Data, Region::Zero, Region::Image][rng.below(6) as usize]
    };
    let addr = address(rng, region);
    regs.0[1] = addr;
    // The register-offset forms' index: a few bytes past the base.
    regs.0[5] = rng.below(16);
    let view = match rng.below(10) {
        0..6 => View::Off,
        6..8 => View::Device,
        _ => View::Normal,
    };
    VIEWS[view as usize].bump();
    if view != View::Off {
        mmu_on(view);
    }
    let r = exec(&[word], &regs);
    if view != View::Off {
        mmu_off();
    }
    // A load or store with nothing behind it must come back as an abort (or an alignment
    // or address-size fault at EL1). Prefetches and cache maintenance need not, nor a
    // store-exclusive: with no exclusive load before it on that address it fails without
    // an access.
    let store_exclusive = word & 0x3fc0_0000 == 0x0800_0000;
    let plain = !cache && !store_exclusive && word & 0xffc0_0000 != 0xf980_0000;
    if region == Region::Hole && plain && r.is_ok() {
        odd(format_args!("{word:#010x} at {addr:#x} (nothing there) came back without an abort"));
    }
}

/// What PSCI 1.0 (and, for an `HVC`, seL4) allows as the answer to a call with `x0 = fid`
/// and `x7` that came back with `out` in `x0`.
fn answer_ok(hvc: bool, fid: u64, x7: u64, out: u64) -> bool {
    // seL4 performs NBSend, Reply and Yield itself (nothing named in the vCPU's CSpace:
    // nothing done) and returns to the guest without the VMM, x0 as it was.
    if hvc && matches!(x7 as i64, -4 | -6 | -7) {
        return out == fid;
    }
    let f = fid as u32;
    let neg = |e: i64| e as u64;
    let allowed: &[u64] = match f {
        psci::VERSION => &[psci::VERSION_1_0],
        psci::CPU_SUSPEND_32 | psci::CPU_SUSPEND_64 => &[0, neg(-2), neg(-3), neg(-9)],
        psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 => &[0, 1, 2, neg(-2)],
        psci::MIGRATE_INFO_TYPE => &[0, 1, 2, psci::NOT_SUPPORTED],
        psci::FEATURES => {
            return out == psci::NOT_SUPPORTED || (out as i64 >= 0 && out <= u64::from(u32::MAX));
        }
        _ => &[psci::NOT_SUPPORTED],
    };
    // SMC32/HVC32 functions (bit 30 clear) answer in w0.
    if f & 0x4000_0000 == 0 { allowed.iter().any(|a| *a as u32 == out as u32) } else { allowed.contains(&out) }
}

/// Functions that end the caller or the VM, or start a vCPU at an address of the caller's
/// choosing (`CPU_ON` has its own action): never called with random arguments.
fn ends_something(fid: u64) -> bool {
    matches!(
        fid as u32,
        psci::CPU_OFF
            | psci::CPU_ON_32
            | psci::CPU_ON_64
            | psci::SYSTEM_OFF
            | psci::SYSTEM_RESET
            | psci::SYSTEM_SUSPEND_32
            | psci::SYSTEM_SUSPEND_64
            | psci::SYSTEM_RESET2_32
            | psci::SYSTEM_RESET2_64
    )
}

fn function_id(rng: &mut Rng) -> u64 {
    loop {
        let f = match rng.below(8) {
            0 | 1 => {
                let base = if rng.chance(50) { 0x8400_0000 } else { 0xc400_0000 };
                let high = if rng.chance(20) { rng.next() << 32 } else { 0 };
                high | base | rng.below(0x20)
            }
            2 => 0x8000_0000 | rng.below(0x8000),
            3 => 0x8000_0000 | (rng.below(2) << 30) | ((1 + rng.below(63)) << 24) | rng.below(0x1_0000),
            4 => rng.below(0x8000_0000),
            5 => rng.next() & 0xffff_ffff,
            6 => rng.next(),
            _ => {
                let i = SEL4_NEXT.get();
                (if i.is_multiple_of(2) { 0x8400_0000 } else { 0xc400_0000 }) | ((i / 2) % 0x20)
            }
        };
        if !ends_something(f) {
            return f;
        }
    }
}

/// The next seL4 system call number, round the 30 of them.
fn next_sel4_number() -> u64 {
    let all = sel4_calls::API.len() + sel4_calls::DEBUG.len();
    let i = SEL4_NEXT.get() as usize % all;
    SEL4_NEXT.bump();
    let (_, n) =
        if i < sel4_calls::API.len() { sel4_calls::API[i] } else { sel4_calls::DEBUG[i - sel4_calls::API.len()] };
    n as u64
}

fn hvc_word(imm: u32) -> u32 {
    0xd400_0002 | ((imm & 0xffff) << 5)
}

fn smc_word(imm: u32) -> u32 {
    0xd400_0003 | ((imm & 0xffff) << 5)
}

fn call(rng: &mut Rng) {
    let mut regs = Regs::random(rng);
    let fid = function_id(rng);
    let x7 = match rng.below(20) {
        0..10 => 0,
        10..17 => next_sel4_number(),
        _ => rng.pool(),
    };
    regs.0[0] = fid;
    regs.0[7] = x7;
    let hvc = rng.chance(70);
    let imm = if rng.chance(10) { rng.next() as u32 } else { 0 };
    let word = if hvc { hvc_word(imm) } else { smc_word(imm) };
    CALLS.bump();
    match exec(&[word], &regs) {
        Ok(out) if answer_ok(hvc, fid, x7, out) => {}
        Ok(out) => {
            odd(format_args!("{} x0={fid:#x} x7={} answered {out:#x}", if hvc { "hvc" } else { "smc" }, x7 as i64))
        }
        Err(esr) => odd(format_args!(
            "{} x0={fid:#x} x7={} came back as exception {esr:#x}",
            if hvc { "hvc" } else { "smc" },
            x7 as i64
        )),
    }
}

/// seL4's `Call`, `Send` and `NBSend` numbers.
const SEL4_CALL: u64 = -1i64 as u64;
const SEL4_SEND: u64 = -3i64 as u64;
const SEL4_NBSEND: u64 = -4i64 as u64;

/// A syndrome for a forged exit: a data abort with a random ISS (valid or not, any size,
/// register and direction, a translation or permission fault), or a trap the VMM handles.
fn forged_esr(rng: &mut Rng, data_abort: bool) -> u64 {
    let il = 1 << 25;
    if data_abort {
        let iss = (rng.below(2) << 24) | (rng.below(4) << 22) | (rng.below(31) << 16) | (rng.below(2) << 6);
        let fsc = [0x07, 0x06, 0x0f, 0x10, 0x21, rng.below(0x40)][rng.below(6) as usize];
        return (0x24 << 26) | il | iss | fsc;
    }
    let (ec, iss) = match rng.below(4) {
        0 => (0x01, rng.below(2)),
        1 => (0x16, rng.below(0x1_0000)),
        2 => (0x17, rng.below(0x1_0000)),
        _ => (0x18, rng.next() & 0x1ff_ffff),
    };
    (ec << 26) | il | iss
}

/// A message sent to one of the VM's own fault endpoints, which the VMM receives as an exit
/// of that vCPU. Every PC it names is one the guest recovers from: the word after the
/// `HVC` (the branch back) for vCPU 0, vCPU 1's way out for vCPU 1; an abort the VMM injects
/// instead lands in the vectors, which recover too. Exits that stop the VM or park its vCPU
/// on vCPU 1 are left out (see [`finale`] for the first).
fn forge(rng: &mut Rng) {
    let mut regs = Regs::random(rng);
    // vCPU 1 only while it is off (only vCPU 0 starts it, so it stays off): a forged exit
    // may move its PC.
    let v1 = rng.chance(25) && !v1_on();
    let slot = if v1 {
        1
    } else if rng.chance(10) {
        2 + rng.below(6)
    } else {
        0
    };
    let mut dest = fuzz_abi::fault_cptr(slot);
    if rng.chance(5) {
        dest ^= 1 << (3 + rng.below(61));
    }
    let ip = if v1 { fuzz_v1_off as *const () as u64 - 4 } else { CODE_PAGE };
    let lbl = match rng.below(if v1 { 4 } else { 5 }) {
        0 | 1 => label::VM_FAULT,
        2 => label::VGIC_MAINTENANCE,
        3 => label::VPPI_EVENT,
        _ => label::VCPU_FAULT,
    };
    let lbl = if !v1 && rng.chance(10) { label::CAP_FAULT } else { lbl };
    let words: [u64; 4] = match lbl {
        label::VM_FAULT => {
            let region = [Region::Device, Region::Hole, Region::Data, Region::Zero][rng.below(4) as usize];
            let prefetch = u64::from(rng.chance(10));
            [ip, address(rng, region), prefetch, forged_esr(rng, true)]
        }
        // A real list register (0-3) now and then: the VMM then frees, in its model, one the
        // hardware may still hold, and may lose this VM's timer for good (the guest's own
        // harm: its next WFI storm waits for ever). Mostly one past them, or "unknown".
        label::VGIC_MAINTENANCE => {
            let lr = match rng.below(10) {
                0 | 1 => rng.below(4),
                2..6 => 4 + rng.below(252),
                _ => u64::MAX,
            };
            [lr, 0, 0, 0]
        }
        label::VPPI_EVENT => [if rng.chance(80) { u64::from(VTIMER_PPI) } else { rng.below(32) }, 0, 0, 0],
        label::VCPU_FAULT => [forged_esr(rng, false), 0, 0, 0],
        _ => [ip, rng.pool(), rng.below(2), rng.below(4)],
    };
    // Call waits for the VMM's reply: only for exits the VMM answers with one.
    let replies = matches!(lbl, label::VM_FAULT | label::VGIC_MAINTENANCE | label::VPPI_EVENT | label::CAP_FAULT);
    let x7 = match rng.below(10) {
        0 if replies => SEL4_CALL,
        0..5 => SEL4_SEND,
        _ => SEL4_NBSEND,
    };
    regs.0[0] = dest;
    regs.0[1] = (lbl << 12) | fuzz_abi::fault_words(lbl);
    regs.0[2..6].copy_from_slice(&words);
    regs.0[7] = x7;
    if let Some(c) = FORGED.get(lbl as usize) {
        c.bump();
    }
    let _ = exec(&[hvc_word(0)], &regs);
}

/// A `CPU_ON` entry point PSCI must refuse (outside RAM or unaligned), as `CPU_ON` reads it.
fn bad_entry(rng: &mut Rng, fid64: bool) -> u64 {
    loop {
        let e = match rng.below(8) {
            0 => 0,
            1 => crate::UART,
            2 => fuzz_abi::RAM_BASE - 4,
            3 => fuzz_abi::RAM_BASE + fuzz_abi::RAM_BYTES,
            4 => fuzz_abi::RAM_BASE + 1 + rng.below(3),
            5 => u64::MAX - 3,
            6 => 0x1_0000_0000 | rng.below(0x1_0000_0000),
            _ => rng.next(),
        };
        let seen = if fid64 { e } else { e & 0xffff_ffff };
        let in_ram = (fuzz_abi::RAM_BASE..fuzz_abi::RAM_BASE + fuzz_abi::RAM_BYTES).contains(&seen);
        if seen % 4 != 0 || !in_ram {
            return e;
        }
    }
}

/// Context vCPU 1 is started with: this magic in bits 16-31 (`CPU_ON_32` passes 32 bits),
/// its loop's length below.
const V1_MAGIC: u64 = 0x5ec0 << 16;

/// Whether vCPU 1 is on, as PSCI `AFFINITY_INFO` says. Only vCPU 0 starts it, so an answer
/// "off" holds until vCPU 0 calls `CPU_ON`; "on" may turn "off" at any time.
fn v1_on() -> bool {
    crate::hvc(u64::from(psci::AFFINITY_INFO_64), 1, 0, 0, 0) != 1
}

fn cpu_on(rng: &mut Rng) {
    let fid64 = rng.chance(50);
    let fid = if fid64 { psci::CPU_ON_64 } else { psci::CPU_ON_32 };
    let seen = |v: u64| if fid64 { v } else { v & 0xffff_ffff };
    let target = match rng.below(6) {
        0 => rng.next(),
        1 => (1 << 31) | (rng.below(2) << 30),
        2 | 3 => 1,
        4 => (2 + rng.below(254)) | (rng.below(4) << 8),
        _ => 1 | (rng.below(256) << 24) | (rng.next() << 40),
    };
    let good = rng.chance(40);
    let entry = if good { fuzz_secondary_entry as *const () as u64 } else { bad_entry(rng, fid64) };
    let t = seen(target) & psci::MPIDR_AFFINITY_MASK;
    let was_on = v1_on();
    let mut regs = Regs::random(rng);
    regs.0[0] = u64::from(fid) | if rng.chance(10) { rng.next() << 32 } else { 0 };
    regs.0[1] = target;
    regs.0[2] = entry;
    regs.0[3] = V1_MAGIC | (1 + rng.below(400));
    regs.0[7] = 0;
    let hvc = rng.chance(60);
    let r = exec(&[if hvc { hvc_word(0) } else { smc_word(0) }], &regs);
    // vCPU 1 may turn itself off between the check and the call, never on.
    let off_answer = if good { 0 } else { psci::INVALID_ADDRESS };
    let allowed: &[u64] = match t {
        0 => &[psci::ALREADY_ON, psci::INVALID_ADDRESS],
        1 if was_on => &[psci::ALREADY_ON, off_answer],
        1 => &[off_answer],
        _ => &[psci::INVALID_PARAMETERS],
    };
    let out = r.unwrap_or(u64::MAX - 100);
    let ok = r.is_ok() && allowed.iter().any(|a| if fid64 { *a == out } else { *a as u32 == out as u32 });
    CALLS.bump();
    if !ok {
        odd(format_args!(
            "CPU_ON{} target {target:#x} entry {entry:#x} answered {out:#x} ({r:?}); vCPU 1 was {}",
            if fid64 { "_64" } else { "_32" },
            if was_on { "on" } else { "off" }
        ));
    }
    if t == 1 && good && out == 0 {
        V1_STARTS.bump();
    }
}

fn counter() -> u64 {
    sysreg_read!("cntvct_el0")
}

/// The distributor and CPU interface set up for the virtual timer again (random accesses
/// may have changed anything): distributor on, every line group 0, PPI 27 enabled at a
/// middle priority, the CPU interface on for both groups, every priority let through, and
/// nothing left active.
fn gic_ready() {
    // EOImode 0 first (a stray store may have set it): an EOI then also deactivates.
    mmio_write(GICC, 0x7);
    end_stray_acknowledgements();
    mmio_write(GICD, 1);
    mmio_write(GICD + 0x080, 0);
    mmio_write(GICD + 0x100, 1 << VTIMER_PPI);
    mmio_write(GICD + 0x418, 0x8080_8080);
    mmio_write(GICC + 0x04, 0xff);
    mmio_write(GICC + 0x08, 0);
}

/// Interrupts the words acknowledged: a random load that lands on `GICC_IAR` (a device or
/// hole address plus an offset can reach the GICC frame) makes the pending interrupt active,
/// and nothing ends it. An active timer interrupt keeps the timer from ever firing again
/// (the running priority stays at its level, and the VMM waits for its EOI), so the next
/// `WFI` would wait for good. While the running priority is not idle, end each interrupt
/// that can be active (the timer's first; an SGI with either vCPU as its source).
fn end_stray_acknowledgements() {
    let idle = || mmio_read(GICC + 0x14) == 0xff;
    if idle() {
        return;
    }
    STRAY_ACKS.bump();
    let sgis = (0..16u32).flat_map(|id| [id, id | 1 << 10]);
    for iar in core::iter::once(VTIMER_PPI).chain(sgis).chain(16..128) {
        mmio_write(GICC + 0x10, iar);
        if idle() {
            return;
        }
    }
}

/// Times [`end_stray_acknowledgements`] found an interrupt left active.
static STRAY_ACKS: Shared = Shared::new();

/// Takes whatever interrupt is pending now (each handler switches its source off).
fn drain_irqs() {
    // SAFETY: interrupts let in for a moment; `on_irq` handles any of them.
    unsafe { asm!("msr daifclr, #2", "isb", "nop", "nop", "msr daifset, #2", options(nomem, nostack)) };
}

fn wfx(rng: &mut Rng) {
    if rng.chance(50) {
        let n = 1 + rng.below(64);
        for _ in 0..n {
            // SAFETY: waiting for an event has no effect on memory.
            unsafe { asm!("wfe", options(nomem, nostack)) };
        }
        return;
    }
    gic_ready();
    drain_irqs();
    let freq = sysreg_read!("cntfrq_el0");
    for _ in 0..1 + rng.below(16) {
        sysreg_write!("cntv_tval_el0", rng.below(freq / 5000 + 1));
        sysreg_write!("cntv_ctl_el0", 1);
        // SAFETY: waits for the timer (armed just now), then lets its interrupt in; the
        // handler switches the timer off.
        unsafe { asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2", options(nomem, nostack)) };
    }
    sysreg_write!("cntv_ctl_el0", 0);
}

// ---- vCPU 1 ----

/// vCPU 1's loop: calls (answers checked), its banked distributor registers and SGIs to
/// both vCPUs, `WFE`; then it turns itself off.
#[unsafe(no_mangle)]
extern "C" fn fuzz_secondary(context: u64) -> ! {
    if context & 0xffff_0000 != V1_MAGIC {
        V1_ODD.bump();
        say!("fuzz: odd on vCPU 1: started with context {context:#x}");
    }
    let mut rng = Rng(context ^ counter());
    for _ in 0..context & 0xffff {
        match rng.below(4) {
            0 => {
                let fid = function_id(&mut rng);
                let x7 = if rng.chance(50) { 0 } else { rng.pool() };
                let out = crate::hvc(fid, rng.pool(), rng.pool(), rng.pool(), x7);
                V1_CALLS.bump();
                if !answer_ok(true, fid, x7, out) {
                    V1_ODD.bump();
                    if V1_ODD.get() <= 8 {
                        say!("fuzz: odd on vCPU 1: hvc x0={fid:#x} x7={} answered {out:#x}", x7 as i64);
                    }
                }
            }
            1 => {
                // SGIR, the pending and enable bits of SGIs and PPIs, priorities.
                let off = [0xf00, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x400, 0x41c, 0xf10, 0xf20]
                    [rng.below(11) as usize];
                if rng.chance(50) {
                    mmio_write(GICD + off, rng.next() as u32 & 0x03ff_ffff);
                } else {
                    let _ = mmio_read(GICD + off);
                }
            }
            2 => {
                let r = crate::hvc(u64::from(psci::AFFINITY_INFO_64), 0, 0, 0, 0);
                V1_CALLS.bump();
                if r != 0 {
                    V1_ODD.bump();
                    if V1_ODD.get() <= 8 {
                        say!("fuzz: odd on vCPU 1: AFFINITY_INFO of vCPU 0 answered {r:#x}");
                    }
                }
            }
            _ => {
                // SAFETY: waiting for an event has no effect on memory.
                unsafe { asm!("wfe", options(nomem, nostack)) };
            }
        }
    }
    V1_DONE.bump();
    // SAFETY: turns vCPU 1 off (a PSCI call that does not return); needs no stack.
    unsafe { asm!("b fuzz_v1_off", options(noreturn)) };
}

// ---- the loop ----

/// How the run ends after its iterations, chosen by the seed: each is an end the VMM
/// reports with a known reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finale {
    /// PSCI `SYSTEM_OFF`, status 0 (1 if something was odd): "powered off".
    SystemOff,
    /// PSCI `SYSTEM_RESET`: "reset".
    SystemReset,
    /// `CPU_OFF` on every vCPU: "all vCPUs off".
    AllOff,
    /// A forged `UnknownSyscall` exit with 4 words where it has 13: "undecodable fault".
    Undecodable,
}

fn finale(seed: u64) -> Finale {
    match seed % 4 {
        0 => Finale::SystemOff,
        1 => Finale::SystemReset,
        2 => Finale::AllOff,
        _ => Finale::Undecodable,
    }
}

fn progress(i: u64, t0: u64) {
    let taken: u64 = TAKEN.iter().map(Shared::get).sum();
    let ms = (counter() - t0) * 1000 / sysreg_read!("cntfrq_el0").max(1);
    say!(
        "fuzz: {i} iterations, {ms} ms: {taken} exceptions taken ({} injected aborts), {} calls, {} odd",
        INJECTED.get(),
        CALLS.get(),
        ODD.get()
    );
}

/// Name of an exception class the words take.
fn ec_name(ec: usize) -> &'static str {
    match ec {
        0x00 => "undefined",
        0x01 => "wfx",
        0x07 => "fp",
        0x0e => "illegal state",
        0x15 => "svc",
        0x16 => "hvc",
        0x17 => "smc",
        0x18 => "sysreg",
        0x20 | 0x21 => "instruction abort",
        0x22 => "pc alignment",
        0x24 | 0x25 => "data abort",
        0x26 => "sp alignment",
        0x2c => "fp exception",
        0x30..=0x35 => "debug",
        0x3c => "brk",
        0x3f => "fiq/serror",
        _ => "other",
    }
}

fn summary(iterations: u64, t0: u64) -> bool {
    let ms = (counter() - t0) * 1000 / sysreg_read!("cntfrq_el0").max(1);
    say!("fuzz: done: {iterations} iterations in {ms} ms");
    let mut line = heapless_line();
    for (name, n) in ACTION_NAMES.iter().zip(ACTIONS.iter()) {
        let _ = write!(line, " {name} {}", n.get());
    }
    say!("fuzz: actions:{}", line.as_str());
    let mut line = heapless_line();
    for (ec, n) in TAKEN.iter().enumerate() {
        if n.get() != 0 {
            let _ = write!(line, " {:#04x} {} {},", ec, ec_name(ec), n.get());
        }
    }
    say!("fuzz: exceptions taken by the guest (class, kind, count):{}", line.as_str().trim_end_matches(','));
    say!(
        "fuzz: {} synchronous external aborts injected, {} interrupts ({} timer, {} left active by the words), \
         {} exceptions outside the words",
        INJECTED.get(),
        IRQS.get(),
        TIMER_IRQS.get(),
        STRAY_ACKS.get(),
        UNEXPECTED.get()
    );
    let mut line = heapless_line();
    for (l, n) in FORGED.iter().enumerate() {
        if n.get() != 0 {
            let _ = write!(line, " label {l} {},", n.get());
        }
    }
    say!("fuzz: forged exits:{}", line.as_str().trim_end_matches(','));
    say!(
        "fuzz: memory views: MMU off {}, Device {}, Normal {}; sysreg sweep {} of {SYSREG_SPACE} encodings",
        VIEWS[0].get(),
        VIEWS[1].get(),
        VIEWS[2].get(),
        SWEPT.get().min(SYSREG_SPACE)
    );
    say!(
        "fuzz: vCPU 1: started {} times, {} loops finished, {} calls, {} exceptions, {} odd",
        V1_STARTS.get(),
        V1_DONE.get(),
        V1_CALLS.get(),
        V1_EXCEPTIONS.get(),
        V1_ODD.get()
    );
    let odd = ODD.get() + V1_ODD.get();
    say!("fuzz: calls: {} answered, {odd} not as PSCI 1.0 and seL4 allow", CALLS.get() + V1_CALLS.get());
    let ok = odd == 0 && UNEXPECTED.get() == 0;
    say!("fuzz: contained: {}", if ok { "yes" } else { "NO" });
    ok
}

/// A line being put together (no allocator here).
struct Line {
    buf: [u8; 480],
    len: usize,
}

fn heapless_line() -> Line {
    Line { buf: [0; 480], len: 0 }
}

impl Line {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Waits (up to 5 s) for vCPU 1 to be off.
fn wait_v1_off() {
    let deadline = counter() + 5 * sysreg_read!("cntfrq_el0");
    while v1_on() && counter() < deadline {
        core::hint::spin_loop();
    }
}

fn end(seed: u64, ok: bool) -> ! {
    let f = if ok { finale(seed) } else { Finale::SystemOff };
    match f {
        Finale::SystemOff => {
            say!("fuzz: finale: system off");
            crate::system_off(if ok { 0 } else { 1 })
        }
        Finale::SystemReset => {
            say!("fuzz: finale: system reset");
            crate::hvc(u64::from(psci::SYSTEM_RESET), 0, 0, 0, 0);
        }
        Finale::AllOff => {
            wait_v1_off();
            say!("fuzz: finale: all vCPUs off");
            crate::hvc(u64::from(psci::CPU_OFF), 0, 0, 0, 0);
        }
        Finale::Undecodable => {
            say!("fuzz: finale: undecodable exit");
            // SAFETY: a send to this vCPU's own fault endpoint; it returns (nothing to wait
            // for) and the VMM stops the VM.
            unsafe {
                asm!("hvc #0",
                    inout("x0") fuzz_abi::fault_cptr(0) => _, inout("x1") (label::UNKNOWN_SYSCALL << 12) | 4 => _,
                    inout("x2") 0u64 => _, inout("x3") 0u64 => _, inout("x4") 0u64 => _, inout("x5") 0u64 => _,
                    inout("x6") 0u64 => _, inout("x7") SEL4_SEND => _, options(nostack))
            };
        }
    }
    // The VM is over; if the VMM lets this vCPU run at all, it waits.
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// Fuzz mode on vCPU 0.
pub fn run() -> ! {
    MODE.set(1);
    SCTLR.set(sysreg_read!("sctlr_el1"));
    if &raw const fuzz_code_page as u64 != CODE_PAGE {
        say!("fuzz: link.ld puts the code page at {:#x}, not {CODE_PAGE:#x}", &raw const fuzz_code_page as u64);
        crate::system_off(10);
    }
    let (seed, iterations) = if peek64(fuzz_abi::PARAMS_ADDR) == fuzz_abi::PARAMS_MAGIC {
        FLAGS.set(peek64(fuzz_abi::PARAMS_ADDR + 24));
        (peek64(fuzz_abi::PARAMS_ADDR + 8), peek64(fuzz_abi::PARAMS_ADDR + 16))
    } else {
        (fuzz_abi::DEFAULT_SEED, fuzz_abi::DEFAULT_ITERATIONS)
    };
    say!(
        "fuzz: seed {seed:#x}, {iterations} iterations (0: until stopped), flags {:#x}, finale {}",
        FLAGS.get(),
        finale(seed) as u8
    );
    if FLAGS.get() & fuzz_abi::FLAG_DEBUG_REGISTERS != 0 {
        // The leak the flag is about, once and for sure: software step armed (MDSCR_EL1.SS).
        // A kernel that leaves MDSCR_EL1 to the guest steps whoever runs next.
        say!("fuzz: MDSCR_EL1.SS set");
        // SAFETY: debug exceptions stay masked at EL1 here (PSTATE.D); this is the guest's
        // own debug state, or should be.
        unsafe { asm!("msr mdscr_el1, {v}", "isb", v = in(reg) 1u64, options(nostack)) };
    }
    let mut rng = Rng(seed);
    SWEEP_START.set(rng.below(SYSREG_SPACE));
    let t0 = counter();
    let mut i = 0u64;
    while iterations == 0 || i < iterations {
        let a = pick(&mut rng);
        ACTIONS[a as usize].bump();
        match a {
            Action::Insn => insn(&mut rng),
            Action::Sysreg => sysreg(&mut rng),
            Action::Mem => mem(&mut rng),
            Action::Call => call(&mut rng),
            Action::Forge => forge(&mut rng),
            Action::CpuOn => cpu_on(&mut rng),
            Action::Wfx => wfx(&mut rng),
        }
        i += 1;
        if i.is_multiple_of(2000) {
            progress(i, t0);
        }
    }
    let ok = summary(i, t0);
    end(seed, ok)
}
