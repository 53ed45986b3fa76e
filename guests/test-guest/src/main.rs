//! capvisor's bare-metal test guest: an AArch64 EL1 program with no operating system, run
//! with the MMU off (all data accesses Device memory, aligned: the target is strict-align).
//!
//! Normal mode (entry `_start`, the load address):
//! 1. prints a line through the PL011 at 0x0900_0000 (the VMM's emulated UART), and the
//!    emulated distributor's `GICD_TYPER`;
//! 2. enables the GIC distributor (emulated) and CPU interface (GICv2: the real GICV frames
//!    at the GICC address; GICv3: this vCPU's emulated redistributor and the system
//!    registers; [`gic`] tells the two apart at run time), the virtual timer's PPI 27, and
//!    takes 10 virtual-timer interrupts, 10 ms apart, waiting in `WFI`;
//! 3. starts vCPU 1 with PSCI `CPU_ON`; vCPU 1 prints its MPIDR and context, enables its
//!    CPU interface and SGI 1, and waits for it; vCPU 0 sends it SGI 1 (GICv2: `GICD_SGIR`;
//!    GICv3: `ICC_SGI1R_EL1`, trapped to the VMM); vCPU 1 says it took it, then `CPU_OFF`;
//! 4. ends with PSCI `SYSTEM_OFF`, its status in `x1` (capvisor's convention): 0 when every
//!    step worked.
//!
//! Wild mode (entry `_start_wild`, load address + 0x100): does what a broken or hostile
//! guest does (accesses to no device and to unmapped memory, an undefined instruction,
//! unknown `HVC` and `SMC` numbers, a jump to unmapped memory, a pair load from an emulated
//! device, and every seL4 system call number of `sel4_calls` in `x7` through `SVC` and
//! `HVC`), counts the exceptions the VMM delivers back, and powers off with status 0 if each
//! one came back as expected.
//!
//! Bench mode (entry `_start_bench`, load address + 0x200): times VM exits from inside the
//! guest with the virtual counter, for `cargo bench -p capvisor --bench exits`: per kind
//! (an `HVC` the VMM answers as PSCI, an emulated register read, an emulated register
//! write) and, as the lower bound, the loop around them with no exit: the median over
//! batches of the ticks a batch takes, and the cheapest batch; then powers off with 0.
//!
//! Fuzz mode (entry `_start_fuzz`, load address + 0x300): a seeded loop of random
//! instruction words, system registers, memory accesses, calls, forged exits, `CPU_ON` and
//! `WFI`/`WFE` storms, recovering through these vectors (the "current EL, SP_EL0" group takes
//! what the words cause); see [`fuzz`].
//!
//! Reboot mode (entry `_start_reboot`, load address + 0x400): checks that it runs on a VM
//! built afresh (a word of `.data` as the image has it, a word of `.bss` zero, both changed
//! before it resets), starts vCPU 1, which arms its virtual timer 10 s ahead and waits in
//! `WFI`, and issues PSCI `SYSTEM_RESET` with vCPU 1 still waiting: capvisor rebuilds the VM
//! from its bundle, and the next boot checks again. See [`reboot`].
//!
//! Every `HVC` clears `x7` (or sets it on purpose in wild and fuzz modes): seL4 reads `x7` of
//! an `HVC` as a system call number before anything else (see README.md).

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::fmt::{self, Write};

mod sel4_calls;

global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mov x19, #0
    b 1f
.balign 0x100
.global _start_wild
_start_wild:
    mov x19, #1
    b 1f
.balign 0x100
.global _start_bench
_start_bench:
    mov x19, #2
    b 1f
.balign 0x100
.global _start_fuzz
_start_fuzz:
    mov x19, #3
    b 1f
.balign 0x100
.global _start_reboot
_start_reboot:
    mov x19, #4
1:
    mov x1, #(3 << 20)          // CPACR_EL1.FPEN: the compiler uses SIMD registers
    msr cpacr_el1, x1
    isb
    ldr x1, =__stack0_top
    mov sp, x1
    ldr x1, =vectors
    msr vbar_el1, x1
    isb
    mov x0, x19
    bl guest_main
2:  wfe
    b 2b

// vCPU 1 (PSCI CPU_ON): FP on, its own stack, these vectors, then `main` with the context.
.macro SECONDARY main
    mov x19, x0
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    isb
    ldr x1, =__stack1_top
    mov sp, x1
    ldr x1, =vectors
    msr vbar_el1, x1
    isb
    mov x0, x19
    bl \main
3:  wfe
    b 3b
.endm

.global secondary_entry
secondary_entry:
    SECONDARY guest_secondary

// vCPU 1 in fuzz mode.
.global fuzz_secondary_entry
fuzz_secondary_entry:
    SECONDARY fuzz_secondary

// vCPU 1 in reboot mode.
.global reboot_secondary_entry
reboot_secondary_entry:
    SECONDARY reboot_secondary
.ltorg

// An exception frame: x0-x30, ELR, SPSR, ESR, FAR (280 bytes, 288 with padding).
.macro SAVE
    sub sp, sp, #288
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x0, elr_el1
    stp x30, x0, [sp, #240]
    mrs x0, spsr_el1
    mrs x1, esr_el1
    stp x0, x1, [sp, #256]
    mrs x0, far_el1
    str x0, [sp, #272]
    mov x0, sp
.endm

.macro RESTORE
    ldp x30, x0, [sp, #240]
    msr elr_el1, x0
    ldr x0, [sp, #256]
    msr spsr_el1, x0
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    add sp, sp, #288
    eret
.endm

.section .text.vectors, "ax"
.balign 2048
.global vectors
vectors:
    .balign 0x80            // current EL, SP_EL0: only the fuzz mode's words run so
    b sync_entry
    .balign 0x80            // IRQ
    b irq_entry
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80            // current EL, SP_ELx: synchronous
    b sync_entry
    .balign 0x80            // IRQ
    b irq_entry
    .balign 0x80            // FIQ
    b unexpected
    .balign 0x80            // SError
    b unexpected
    .balign 0x80            // lower EL: none
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected
    .balign 0x80
    b unexpected

sync_entry:
    SAVE
    bl guest_sync
    RESTORE

irq_entry:
    SAVE
    bl guest_irq
    RESTORE

unexpected:
    SAVE
    bl guest_unexpected
    RESTORE
"#
);

/// The exception frame the vector code saves.
#[repr(C)]
pub struct Frame {
    x: [u64; 31],
    elr: u64,
    spsr: u64,
    esr: u64,
    far: u64,
}

// ---- devices ----

const UART: u64 = 0x0900_0000;
const GICD: u64 = 0x0800_0000;
/// The emulated PL031 real-time clock and writable CFI flash bank (configs/test-guest.toml).
const RTC: u64 = 0x0901_0000;
const FLASH: u64 = 0x0400_0000;
const GICC: u64 = 0x0801_0000;
const VTIMER_PPI: u32 = 27;

/// A 32-bit store that traps with a full syndrome (one register, no writeback).
fn mmio_write(addr: u64, value: u32) {
    // SAFETY: `addr` is a device register or an address the test wants to fault on; the
    // store has no effect on memory this program uses.
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
}

/// A 32-bit load that traps with a full syndrome.
fn mmio_read(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: as for `mmio_write`; a load has no side effect on this program's memory.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            mmio_write(UART, u32::from(b));
        }
        Ok(())
    }
}

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(Uart, $($t)*);
    }};
}

/// A word shared between the vCPUs and the interrupt handler: volatile, single writer.
struct Shared(UnsafeCell<u64>);

// SAFETY: every access is one aligned volatile load or store of a u64, and each variable
// has one writer (a vCPU or the handler running on it).
unsafe impl Sync for Shared {}

impl Shared {
    const fn new() -> Self {
        Shared::with(0)
    }
    /// A word that starts as `v`: in `.data` (the image) unless `v` is 0 (`.bss`).
    const fn with(v: u64) -> Self {
        Shared(UnsafeCell::new(v))
    }
    fn get(&self) -> u64 {
        // SAFETY: see the `Sync` impl.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
    fn set(&self, v: u64) {
        // SAFETY: see the `Sync` impl.
        unsafe { core::ptr::write_volatile(self.0.get(), v) }
    }
    fn bump(&self) {
        self.set(self.get() + 1);
    }
}

static TICKS: Shared = Shared::new();
static INTERVAL: Shared = Shared::new();
static SECONDARY_UP: Shared = Shared::new();
/// SGIs vCPU 1's handler took (its writer), and vCPU 1 done waiting for one (its writer).
static SGIS_TAKEN: Shared = Shared::new();
static SECONDARY_DONE: Shared = Shared::new();
/// The SGI vCPU 0 sends vCPU 1.
const TEST_SGI: u32 = 1;
static DATA_ABORTS: Shared = Shared::new();
static INSN_ABORTS: Shared = Shared::new();
static UNDEFINED: Shared = Shared::new();
static SVCS: Shared = Shared::new();
static LAST_SVC_X7: Shared = Shared::new();
static BAD: Shared = Shared::new();

// ---- system registers ----

macro_rules! sysreg_read {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1-accessible system register has no side effect.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! sysreg_write {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the registers written (timer, DAIF, GIC CPU interface) affect only this
        // program's interrupts.
        unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}

mod fuzz;
mod fuzz_abi;
mod gic;

// ---- PSCI ----

mod psci {
    pub const VERSION: u64 = 0x8400_0000;
    pub const CPU_OFF: u64 = 0x8400_0002;
    pub const CPU_ON: u64 = 0xc400_0003;
    pub const SYSTEM_OFF: u64 = 0x8400_0008;
    pub const SYSTEM_RESET: u64 = 0x8400_0009;
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
}

/// `HVC #0` with `x0`-`x3` and `x7` as given; returns `x0`.
fn hvc(x0: u64, x1: u64, x2: u64, x3: u64, x7: u64) -> u64 {
    let r: u64;
    // SAFETY: a call to the hypervisor (or, with a system call number in x7, to seL4); it
    // may change x0-x7 and nothing else of this program.
    unsafe {
        asm!("hvc #0",
            inout("x0") x0 => r, inout("x1") x1 => _, inout("x2") x2 => _, inout("x3") x3 => _,
            inout("x4") 0u64 => _, inout("x5") 0u64 => _, inout("x6") 0u64 => _, inout("x7") x7 => _,
            options(nostack))
    };
    r
}

/// `SVC #0` with `x0` and `x7` as given; returns `x0`. An `SVC` at EL1 is taken at EL1, by
/// this program's own vector (the architecture routes it there; a hypervisor cannot trap it),
/// so seL4 and the VMM never see it whatever `x7` holds.
fn svc(x0: u64, x7: u64) -> u64 {
    let r: u64;
    // SAFETY: the handler (`guest_sync`) counts the call and returns past it; it restores
    // every register but those declared here.
    unsafe {
        asm!("svc #0",
            inout("x0") x0 => r, inout("x7") x7 => _, options(nostack))
    };
    r
}

/// `SMC #0` with `x0`; returns `x0`.
fn smc(x0: u64) -> u64 {
    let r: u64;
    // SAFETY: as `hvc`; seL4 traps every SMC to the VMM.
    unsafe {
        asm!("smc #0",
            inout("x0") x0 => r, inout("x1") 0u64 => _, inout("x2") 0u64 => _, inout("x3") 0u64 => _,
            inout("x7") 0u64 => _, options(nostack))
    };
    r
}

fn system_off(status: u64) -> ! {
    say!("SYSTEM_OFF status {status}");
    hvc(psci::SYSTEM_OFF, status, 0, 0, 0);
    // SYSTEM_OFF does not return; if it did, stop here.
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

// ---- exceptions ----

#[unsafe(no_mangle)]
extern "C" fn guest_sync(f: &mut Frame) {
    if fuzz::mode() {
        return fuzz::on_sync(f);
    }
    let ec = (f.esr >> 26) & 0x3f;
    let external = f.esr & 0x3f == 0x10;
    match ec {
        // Data abort at EL1 (a synchronous external abort from the VMM): skip the access.
        0x25 if external => {
            DATA_ABORTS.bump();
            f.elr += 4;
        }
        // Instruction abort at EL1: return to the caller of the jump.
        0x21 if external => {
            INSN_ABORTS.bump();
            f.elr = f.x[30];
        }
        // Undefined instruction: skip it.
        0x00 => {
            UNDEFINED.bump();
            f.elr += 4;
        }
        // SVC (ELR is already past it): count it and note x7.
        0x15 => {
            SVCS.bump();
            LAST_SVC_X7.set(f.x[7]);
        }
        _ => {
            BAD.bump();
            say!("unexpected synchronous exception: esr {:#x} elr {:#x} far {:#x}", f.esr, f.elr, f.far);
            system_off(9);
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn guest_irq(_f: &mut Frame) {
    if fuzz::mode() {
        return fuzz::on_irq();
    }
    let iar = gic::ack();
    let id = iar & 0x3ff;
    if id == 1023 {
        return; // spurious: nothing to acknowledge
    }
    if id == TEST_SGI {
        SGIS_TAKEN.bump();
    } else if id == VTIMER_PPI {
        let n = TICKS.get() + 1;
        TICKS.set(n);
        say!("tick {n}");
        if n < 10 {
            sysreg_write!("cntv_tval_el0", INTERVAL.get());
        } else {
            sysreg_write!("cntv_ctl_el0", 0);
        }
    } else {
        BAD.bump();
        say!("unexpected interrupt {id}");
    }
    gic::eoi(iar);
}

#[unsafe(no_mangle)]
extern "C" fn guest_unexpected(f: &mut Frame) {
    if fuzz::mode() {
        return fuzz::on_unexpected(f);
    }
    say!("unexpected exception: esr {:#x} elr {:#x}", f.esr, f.elr);
    system_off(8);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("panic: {info}");
    system_off(7)
}

// ---- normal mode ----

fn counter() -> u64 {
    sysreg_read!("cntvct_el0")
}

fn timer_ticks() -> bool {
    let freq = sysreg_read!("cntfrq_el0");
    INTERVAL.set(freq / 100);
    // Distributor: the guest's group on; PPI 27 enabled; CPU interface: that group on, all
    // priorities.
    gic::enable_distributor();
    if !gic::enable_cpu(1 << VTIMER_PPI) {
        say!("timer: the GIC CPU interface could not be enabled");
        return false;
    }
    sysreg_write!("cntv_tval_el0", INTERVAL.get());
    sysreg_write!("cntv_ctl_el0", 1);
    let deadline = counter() + freq * 5;
    // Check, then wait, with IRQs masked: an interrupt between the check and the WFI stays
    // pending and ends the WFI (a pending interrupt wakes WFI even when masked), instead of
    // being taken before the WFI and leaving it to sleep for good. It is taken when IRQs are
    // unmasked after the WFI.
    while TICKS.get() < 10 && counter() < deadline {
        // SAFETY: waiting for an interrupt, then letting it in; the handler is installed.
        unsafe { asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2", options(nomem, nostack)) };
    }
    TICKS.get() == 10
}

unsafe extern "C" {
    fn secondary_entry();
}

fn second_vcpu() -> Result<(), u64> {
    let entry = secondary_entry as *const () as u64;
    let r = hvc(psci::CPU_ON, 1, entry, 0x5ec0, 0);
    if r != 0 {
        return Err(r);
    }
    let freq = sysreg_read!("cntfrq_el0");
    let deadline = counter() + freq * 5;
    while SECONDARY_UP.get() == 0 && counter() < deadline {
        core::hint::spin_loop();
    }
    if SECONDARY_UP.get() == 0 {
        return Err(0);
    }
    // vCPU 1 is waiting for the SGI with its interface on (SECONDARY_UP is set after that).
    gic::send_sgi(TEST_SGI, 1);
    while SECONDARY_DONE.get() == 0 && counter() < deadline + freq * 5 {
        core::hint::spin_loop();
    }
    match SECONDARY_DONE.get() {
        1 => Ok(()),
        _ => Err(1),
    }
}

#[unsafe(no_mangle)]
extern "C" fn guest_secondary(context: u64) -> ! {
    let mpidr = sysreg_read!("mpidr_el1");
    say!("vCPU 1 up: context {context:#x}, mpidr {mpidr:#x}");
    let ready = gic::enable_cpu(1 << TEST_SGI);
    SECONDARY_UP.set(1);
    let deadline = counter() + sysreg_read!("cntfrq_el0") * 5;
    while ready && SGIS_TAKEN.get() == 0 && counter() < deadline {
        // SAFETY: waiting for the SGI, then letting it in; the handler is installed.
        unsafe { asm!("wfi", "msr daifclr, #2", "isb", "msr daifset, #2", options(nomem, nostack)) };
    }
    if SGIS_TAKEN.get() == 1 {
        say!("vCPU 1: SGI {TEST_SGI} taken");
        SECONDARY_DONE.set(1);
    } else {
        say!("vCPU 1: {} SGIs taken (interface ready: {ready})", SGIS_TAKEN.get());
        SECONDARY_DONE.set(2);
    }
    hvc(psci::CPU_OFF, 0, 0, 0, 0);
    loop {
        // SAFETY: CPU_OFF does not return; if it did, wait.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// A CFI command to both chips of the 32-bit bank (each answers in its own half).
fn flash_cmd(offset: u64, cmd: u32) {
    mmio_write(FLASH + offset, cmd << 16 | cmd);
}

/// Programs a word of the emulated flash and reads it back, then erases its block, as a
/// firmware's flash driver does; the line says what went wrong first.
fn flash_check() -> Result<(), &'static str> {
    flash_cmd(0x55 * 4, 0x98);
    if mmio_read(FLASH + 0x10 * 4) != 0x0051_0051 {
        return Err("CFI query: no 'Q' at word 0x10");
    }
    flash_cmd(0, 0xff);
    if mmio_read(FLASH + 0x100) != 0xffff_ffff {
        return Err("not erased at the start");
    }
    flash_cmd(0x100, 0x40);
    mmio_write(FLASH + 0x100, 0x1234_5678);
    flash_cmd(0, 0x70);
    if mmio_read(FLASH) & 0x00b0_00b0 != 0x0080_0080 {
        return Err("program: status not ready or an error bit set");
    }
    flash_cmd(0, 0xff);
    if mmio_read(FLASH + 0x100) != 0x1234_5678 {
        return Err("program: the word does not read back");
    }
    flash_cmd(0x100, 0x20);
    flash_cmd(0x100, 0xd0);
    flash_cmd(0, 0x70);
    if mmio_read(FLASH) & 0x00b0_00b0 != 0x0080_0080 {
        return Err("erase: status not ready or an error bit set");
    }
    flash_cmd(0, 0xff);
    if mmio_read(FLASH + 0x100) != 0xffff_ffff {
        return Err("erase: the block does not read erased");
    }
    Ok(())
}

fn normal() -> ! {
    let mpidr = sysreg_read!("mpidr_el1");
    say!("UART ok: vCPU 0, mpidr {mpidr:#x}, PSCI version {:#x}", hvc(psci::VERSION, 0, 0, 0, 0));
    // An emulated register read: GICD_TYPER (lines and CPUs of the distributor).
    let typer = mmio_read(GICD + 0x004);
    say!("GICD_TYPER {typer:#x}: {} interrupt lines, {} CPUs", 32 * ((typer & 0x1f) + 1), ((typer >> 5) & 7) + 1);
    let mut status = 0;
    // The real-time clock: seconds since 1970, from the bundle's build time on.
    let rtc_start = mmio_read(RTC);
    match flash_check() {
        Ok(()) => say!("flash: CFI query, word programmed and read back, block erased"),
        Err(e) => {
            say!("flash: {e}");
            status = 4;
        }
    }
    if timer_ticks() {
        say!("10 timer ticks");
    } else {
        say!("timer: only {} ticks", TICKS.get());
        status = 1;
    }
    match second_vcpu() {
        Ok(()) => say!("second vCPU up, SGI {TEST_SGI} delivered to it"),
        // A VM with one vCPU: PSCI says the target does not exist.
        Err(r) if r == -2i64 as u64 => say!("no second vCPU (CPU_ON: invalid parameters)"),
        Err(r) => {
            say!("second vCPU failed: {r:#x}");
            status = 2;
        }
    }
    // The clock goes on: it shows the next second within 3 s of the virtual counter.
    let freq = sysreg_read!("cntfrq_el0");
    let deadline = counter() + 3 * freq;
    let mut rtc_end = mmio_read(RTC);
    while rtc_end == rtc_start && counter() < deadline {
        let next = counter() + freq / 100;
        while counter() < next {}
        rtc_end = mmio_read(RTC);
    }
    // 2023-11-14: any bundle is younger.
    if rtc_start >= 1_700_000_000 && rtc_end > rtc_start {
        say!("rtc: ok, running");
    } else {
        say!("rtc: {rtc_start} then {rtc_end}");
        status = 5;
    }
    if BAD.get() != 0 {
        status = 3;
    }
    system_off(status)
}

// ---- wild mode ----

fn wild() -> ! {
    say!("wild: start");
    // Accesses to no device, and to guest-physical memory with nothing behind it.
    let _ = mmio_read(0x0a00_0000);
    mmio_write(0x0a00_0000, 1);
    for a in [0x5000_0000u64, 0x6000_0000, 0x5000_0000, 0x1_0000_0000] {
        mmio_write(a, 0xdead);
    }
    // A pair load from the emulated distributor: the syndrome cannot describe it.
    // SAFETY: a load whose abort the handler skips.
    unsafe { asm!("ldp {a:w}, {b:w}, [{p}]", p = in(reg) GICD, a = out(reg) _, b = out(reg) _, options(nostack)) };
    let data_expected = 7;
    // An undefined instruction (taken by this program itself, never by the VMM).
    // SAFETY: the handler skips it.
    unsafe { asm!("udf #0", options(nomem, nostack)) };
    // A jump to unmapped memory: the handler returns to the instruction after it.
    // SAFETY: the instruction abort comes back to the return address in x30.
    unsafe { asm!("blr {t}", t = in(reg) 0x5000_0000u64, lateout("x30") _, clobber_abi("C")) };
    say!(
        "wild: {} data aborts, {} instruction aborts, {} undefined",
        DATA_ABORTS.get(),
        INSN_ABORTS.get(),
        UNDEFINED.get()
    );

    // Unknown HVC and SMC function numbers.
    let mut answered = 0;
    for f in [0x8400_00ffu64, 0x1234, 0xc400_00ff, u64::MAX] {
        answered += u32::from(hvc(f, 1, 2, 3, 0) == psci::NOT_SUPPORTED);
        answered += u32::from(smc(f) == psci::NOT_SUPPORTED);
    }
    answered += u32::from(smc(psci::VERSION) == 0x1_0000);
    say!("wild: {answered} of 9 unknown calls answered NOT_SUPPORTED or by version");
    // WFE traps and comes back.
    // SAFETY: waiting for an event has no effect on memory.
    unsafe { asm!("wfe", options(nomem, nostack)) };
    let svcs = svc_every_sel4_number();
    // HVC with the seL4 API call numbers in x7: the kernel performs the call on this
    // vCPU's CSpace, which holds nothing it can name; the ones that fail their lookup come
    // to the VMM as cap faults and are answered as PSCI, the others (NBSend, Reply, Yield)
    // return with x0 as it was.
    for (_, n) in sel4_calls::API {
        let _ = hvc(psci::VERSION, 0, 0, 0, n as u64);
    }
    say!("wild: hvc with the {} seL4 API call numbers in x7: survived", sel4_calls::API.len());
    // Last, because a debug kernel stops the whole machine at DebugHalt (README.md).
    let debug_answered = hvc_every_sel4_debug_number();
    let ok = DATA_ABORTS.get() == data_expected
        && INSN_ABORTS.get() == 1
        && UNDEFINED.get() == 1
        && answered == 9
        && svcs == sel4_calls::API.len() + sel4_calls::DEBUG.len()
        && debug_answered == sel4_calls::DEBUG.len()
        && BAD.get() == 0;
    say!("wild: contained: {}", if ok { "yes" } else { "NO" });
    system_off(if ok { 0 } else { 1 })
}

/// `SVC` with every seL4 system call number in `x7`: each must be taken by this program's own
/// vector with that `x7` (see [`svc`]). Returns how many were.
fn svc_every_sel4_number() -> usize {
    let mut taken = 0;
    for (name, n) in sel4_calls::API.iter().chain(sel4_calls::DEBUG.iter()) {
        let before = SVCS.get();
        let _ = svc(psci::VERSION, *n as u64);
        if SVCS.get() == before + 1 && LAST_SVC_X7.get() == *n as u64 {
            taken += 1;
        } else {
            say!("wild: svc x7={n} {name}: not taken at EL1 as expected");
        }
    }
    let all = sel4_calls::API.len() + sel4_calls::DEBUG.len();
    say!("wild: svc with each of the {all} seL4 call numbers in x7: {taken} taken at EL1 by this guest");
    taken
}

/// `HVC` with every number of seL4's debug section in `x7` (PSCI `VERSION` in `x0`), one line
/// each. seL4 reads `x7` of a guest `HVC` as a system call number before anything else; a
/// kernel without the call (no `KernelDebugBuild`, `KernelPrinting` or benchmarks) reports it
/// to the VMM as an unknown system call, which the VMM answers as PSCI: `x0` comes back as the
/// PSCI version. Returns how many were answered so.
fn hvc_every_sel4_debug_number() -> usize {
    let mut answered = 0;
    for (name, n) in sel4_calls::DEBUG {
        let r = hvc(psci::VERSION, 0, 0, 0, n as u64);
        if r == 0x1_0000 {
            answered += 1;
            say!("wild: hvc x7={n} {name}: answered as PSCI");
        } else {
            say!("wild: hvc x7={n} {name}: came back with x0 {r:#x}, not from the VMM");
        }
    }
    let all = sel4_calls::DEBUG.len();
    say!("wild: {answered} of {all} seL4 debug and benchmark numbers through hvc answered as PSCI; continuing");
    answered
}

// ---- bench mode ----

/// Calls per batch and batches per kind: medians over batches are robust to the host
/// preempting QEMU (the virtual counter follows the host clock).
const BENCH_CALLS: u64 = 100;
const BENCH_BATCHES: usize = 31;

/// Ticks a batch of [`BENCH_CALLS`] calls of `f` takes: the median and the minimum over
/// the batches (whole batches: one call without an exit is below the counter's resolution).
fn time_batches(mut f: impl FnMut()) -> (u64, u64) {
    let mut batch = [0u64; BENCH_BATCHES];
    for slot in batch.iter_mut() {
        let t0 = counter();
        for _ in 0..BENCH_CALLS {
            f();
        }
        *slot = counter() - t0;
    }
    batch.sort_unstable();
    (batch[BENCH_BATCHES / 2], batch[0])
}

fn bench() -> ! {
    say!("bench: counter frequency {} Hz, {BENCH_BATCHES} batches of {BENCH_CALLS} calls", sysreg_read!("cntfrq_el0"));
    let scratch = Shared::new();
    let rows: [(&str, (u64, u64)); 4] = [
        // The loop itself and a store to RAM: no exit, the floor under every row below.
        ("none", time_batches(|| scratch.bump())),
        (
            "hvc",
            time_batches(|| {
                let _ = hvc(psci::VERSION, 0, 0, 0, 0);
            }),
        ),
        (
            "mmio_read",
            time_batches(|| {
                let _ = mmio_read(GICD + 0x004);
            }),
        ),
        // GICD_IPRIORITYR of SPI 40, which nothing in this VM uses.
        ("mmio_write", time_batches(|| mmio_write(GICD + 0x400 + 40, 0xa0a0_a0a0))),
    ];
    for (kind, (median, min)) in rows {
        say!("bench: {kind} {BENCH_CALLS} calls median {median} ticks, min {min} ticks");
    }
    system_off(if BAD.get() == 0 { 0 } else { 1 })
}

// ---- reboot mode ----

/// What the image holds in [`IMAGE_MARK`]; each boot overwrites it before resetting.
const IMAGE_MARK_BUILT: u64 = 0x6275_696c_7420_6173; // "built as" in ASCII
/// A word of `.data`: as built unless this VM's memory outlived a reset.
static IMAGE_MARK: Shared = Shared::with(IMAGE_MARK_BUILT);
/// A word of `.bss`: zero in RAM the VM was built with.
static RAM_MARK: Shared = Shared::new();
/// Set by vCPU 1 once it runs.
static REBOOT_SECONDARY_UP: Shared = Shared::new();

unsafe extern "C" {
    fn reboot_secondary_entry();
}

/// The reboot mode: one line per boot, then PSCI `SYSTEM_RESET`, for capvisor to rebuild the
/// VM from its bundle (`on_reset = "reboot"`, `configs/test-guest-reboot.toml`).
///
/// Each boot checks that it is a new one: [`IMAGE_MARK`] as the image has it and
/// [`RAM_MARK`] zero (a VM whose image was not loaded again, or whose RAM was kept, shows the
/// previous boot's values), then changes both. vCPU 1 is left waiting in `WFI` with its
/// virtual timer armed 10 s ahead when vCPU 0 resets, so teardown meets a vCPU that is parked
/// on a timer; 10 s is far beyond the reset (about 50 ms later), so a wake-up the VMM forgot
/// to cancel would reach a VM built since. vCPU 0 waits 50 ms of virtual time before its
/// reset so that the reboots spread over the time a VM beside it runs.
///
/// Prints `reboot mode: image and RAM as built, vCPU 1 up; SYSTEM_RESET` and resets; on a
/// stale boot or a vCPU 1 that does not start, says why and powers off with status 6 or 2.
fn reboot() -> ! {
    let (image, ram) = (IMAGE_MARK.get(), RAM_MARK.get());
    IMAGE_MARK.set(!IMAGE_MARK_BUILT);
    RAM_MARK.set(1);
    if image != IMAGE_MARK_BUILT || ram != 0 {
        say!("reboot mode: stale state from an earlier boot: .data word {image:#x}, .bss word {ram:#x}");
        system_off(6);
    }
    let entry = reboot_secondary_entry as *const () as u64;
    let r = hvc(psci::CPU_ON, 1, entry, 0, 0);
    let freq = sysreg_read!("cntfrq_el0");
    let deadline = counter() + freq * 5;
    while r == 0 && REBOOT_SECONDARY_UP.get() == 0 && counter() < deadline {
        core::hint::spin_loop();
    }
    if r != 0 || REBOOT_SECONDARY_UP.get() == 0 {
        say!("reboot mode: vCPU 1 did not come up (CPU_ON: {r:#x})");
        system_off(2);
    }
    let until = counter() + freq / 20;
    while counter() < until {
        core::hint::spin_loop();
    }
    say!("reboot mode: image and RAM as built, vCPU 1 up; SYSTEM_RESET");
    let r = hvc(psci::SYSTEM_RESET, 0, 0, 0, 0);
    say!("reboot mode: SYSTEM_RESET returned {r:#x}");
    system_off(6)
}

/// vCPU 1 of the reboot mode: says it is up, arms its virtual timer 10 s ahead (its interrupt
/// stays masked) and waits for an interrupt until the reset ends it.
#[unsafe(no_mangle)]
extern "C" fn reboot_secondary(_context: u64) -> ! {
    REBOOT_SECONDARY_UP.set(1);
    let freq = sysreg_read!("cntfrq_el0");
    sysreg_write!("cntv_tval_el0", freq * 10);
    sysreg_write!("cntv_ctl_el0", 1);
    loop {
        // SAFETY: waiting for an interrupt has no effect on memory.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

#[unsafe(no_mangle)]
extern "C" fn guest_main(mode: u64) -> ! {
    match mode {
        1 => wild(),
        2 => bench(),
        3 => fuzz::run(),
        4 => reboot(),
        _ => normal(),
    }
}
