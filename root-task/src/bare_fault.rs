//! The reference row of `cargo bench -p capvisor --bench exits`: a bare seL4 fault round trip,
//! timed in the same boot as the guest's exits, before the VMs start.
//!
//! A thread on a VCPU of its own, at the guests' priority, in a stage-2 address space that
//! holds one page of code and nothing else (set up as the timer server's ticker is, with
//! `timer_server::setup::spawn_vcpu_thread`), runs [`BATCHES`] batches of [`CALLS`] `hvc #0`
//! with `x7` = 0 and times each batch with the virtual counter (`CNTVCT_EL0`, readable at EL1;
//! its VCPU's `CNTVOFF` is 0, so it is the count the guest reads). The root task's own thread,
//! the VMM's thread, answers each `hvc` with `seL4_ReplyRecv` of a message built once, and
//! does nothing else. What remains is the kernel's part of every guest `HVC` the VMM answers
//! as PSCI: the fault IPC, the switches to the root task and back, and the reply on the slow
//! path; what the VMM adds (decoding, dispatch, counters) is left out. After each batch one
//! more `hvc` reports the batch's ticks in `x1`, outside the timed span. The root task prints
//! `capvisor: bench: bare_fault <CALLS> calls median <m> ticks, min <n> ticks`, the guest's
//! format.
//!
//! # What seL4 16.0.0 does with the reply
//! An `hvc` from EL1 on a VCPU enters the kernel as a system call (`lower_el_sync`:
//! `ESR_EC_LEL_HVC64` goes to `lel_syscall`), which records `FaultIP` = `ELR` - 4, the `hvc`
//! itself (`src/arch/arm/64/traps.S`). `x7` = 0 is no system call number (they are negative),
//! so `slowpath` calls `handleUnknownSyscall`, which raises an `UnknownSyscall` fault
//! (`src/arch/arm/c_traps.c`, `src/api/syscall.c`): a 13-word message, X0-X7, FaultIP, SP, LR,
//! SPSR and the number. The fast path never replies to a thread with a fault
//! (`fastpath_reply_recv` in `src/fastpath/fastpath.c`), so every reply takes the slow path:
//! `handleFaultReply` copies the first `min(length, 12)` words back into X0-X7, FaultIP, SP_EL0,
//! ELR_EL1 and SPSR_EL1 in that order, and a reply with label 0 restarts the thread
//! (`src/api/faults.c`, `SYSCALL_MESSAGE` in `include/arch/arm/arch/64/mode/machine/registerset.h`,
//! `doReplyTransfer` in `src/kernel/thread.c`). A restarted thread resumes at FaultIP
//! (`activateThread`: `setNextPC(getRestartPC)`; `src/kernel/thread.c`,
//! `src/arch/arm/machine/hardware.c`). So an empty reply would run the same `hvc` again: the
//! reply carries X0-X7 and FaultIP = the `hvc` + 4, the nine words the VMM's PSCI replies carry
//! (`vm_runner::action::Next::HvcReply`), so the kernel copies as much as it does for them.
//!
//! Owns: its code page ([`capvisor_bare_fault_page`]) and every object it creates (from the
//! smallest RAM untyped of at least 1 MiB, in the last [`SLOTS`] of the root task's empty
//! slots), all deleted before [`report`] returns, so the untyped is whole again when the
//! timer server and the HAL take their turn. Never touches: the HAL, the VMs, the timer server
//! (none exists yet), nor capabilities other than the ones it creates and the code page's
//! image frame, which it copies.

use core::arch::global_asm;
use core::fmt;

use sel4::cap_type::{Endpoint, Frame};
use sel4::fault::{label, unknown_syscall};
use sel4::{BootInfo, Cap, Kernel, Message, ObjectBlueprint, RealKernel, Received, Slot, SlotRegion, VirtAddr};
use sel4::{init_cap, sys};
use sel4_root_task::image::own_image_frame;
use sel4_root_task::{Start, debug_println};
use timer_server::setup::{CodePage, ObjectAlloc, SetupError, UntypedArena, VcpuThreadParams, spawn_vcpu_thread};

/// Calls per batch and batches: the test guest's bench mode times its exits the same way.
pub const CALLS: u64 = 100;
/// Batches; the median over them is robust to the host preempting QEMU.
pub const BATCHES: usize = 31;
/// Empty slots used, at the end of the root task's (at most 9 are: the endpoint, the VSpace,
/// the code frame's copy, up to 3 page tables, the CNode, the TCB, the VCPU).
pub const SLOTS: u64 = 16;
/// Where the code page sits in the thread's stage-2 address space.
const CODE_IPA: u64 = 0x4000_0000;
/// The badge of the thread's fault endpoint.
const BADGE: u64 = 0xbf;

// The thread's code, in a page of its own. x19 counts batches, x21 calls; x20 and x22 are a
// batch's counter readings: the kernel's reply writes only x0-x7 and the PC. `mov x7, #0`
// before each `hvc`, because seL4 reads x7 as a system call number first.
global_asm!(
    ".pushsection .text.capvisor_bare_fault_page, \"ax\", %progbits",
    ".balign 4096",
    ".global capvisor_bare_fault_page",
    "capvisor_bare_fault_page:",
    "    mov x19, #{batches}",
    "1:  mov x21, #{calls}",
    "    isb",
    "    mrs x20, cntvct_el0",
    "2:  mov x7, #0",
    ".global capvisor_bare_fault_call",
    "capvisor_bare_fault_call:",
    "    hvc #0",
    "    subs x21, x21, #1",
    "    b.ne 2b",
    "    isb",
    "    mrs x22, cntvct_el0",
    "    sub x1, x22, x20",
    "    mov x7, #0",
    ".global capvisor_bare_fault_report",
    "capvisor_bare_fault_report:",
    "    hvc #0",
    "    subs x19, x19, #1",
    "    b.ne 1b",
    // Not reached: the root task does not answer the last report.
    "3:  b 3b",
    ".balign 4096",
    ".popsection",
    batches = const BATCHES,
    calls = const CALLS,
);

unsafe extern "C" {
    /// Start of the code page (defined above).
    static capvisor_bare_fault_page: [u32; 1024];
    /// The timed `hvc`.
    static capvisor_bare_fault_call: u32;
    /// The `hvc` that reports a batch.
    static capvisor_bare_fault_report: u32;
}

/// Where a symbol of the code page is in the thread's address space.
fn ipa_of(sym: *const u32) -> u64 {
    CODE_IPA + (sym as u64 - (&raw const capvisor_bare_fault_page) as u64)
}

/// Why there is no measurement.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// The IPC buffer is lent out.
    NoIpcBuffer,
    /// The image is not laid out as `sel4_root_task::image` expects (the page at this address).
    ImageLayout(u64),
    /// No RAM untyped of at least 1 MiB.
    NoUntyped,
    /// Fewer than [`SLOTS`] empty slots.
    NoSlots,
    /// Creating or deleting the objects failed.
    Setup(SetupError),
    /// A kernel operation failed.
    Kernel(&'static str, sel4::Error),
    /// A message other than the `hvc` expected: its badge, label and first word after the
    /// registers (the fault IP of an unknown-system-call fault).
    Unexpected {
        /// The badge.
        badge: u64,
        /// The label.
        label: u64,
        /// Word 8.
        ip: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoIpcBuffer => write!(f, "the IPC buffer is lent out"),
            Error::ImageLayout(v) => write!(f, "no image frame for page {v:#x}"),
            Error::NoUntyped => write!(f, "no RAM untyped of 1 MiB"),
            Error::NoSlots => write!(f, "fewer than {SLOTS} empty slots"),
            Error::Setup(e) => e.fmt(f),
            Error::Kernel(step, e) => write!(f, "{step}: {e}"),
            Error::Unexpected { badge, label, ip } => {
                write!(f, "unexpected message: badge {badge:#x}, label {label}, word 8 {ip:#x}")
            }
        }
    }
}

/// Measures and prints the row (or why there is none).
pub fn report(start: &Start) {
    match measure(start) {
        Ok(mut ticks) => {
            let (median, min) = median_min(&mut ticks);
            debug_println!("capvisor: bench: bare_fault {CALLS} calls median {median} ticks, min {min} ticks");
        }
        Err(e) => debug_println!("capvisor: bench: bare_fault failed: {e}"),
    }
}

/// The median and the minimum.
fn median_min(ticks: &mut [u64; BATCHES]) -> (u64, u64) {
    ticks.sort_unstable();
    (ticks[BATCHES / 2], ticks[0])
}

/// Ticks per batch, with the root task's kernel handle lent for the time.
fn measure(start: &Start) -> Result<[u64; BATCHES], Error> {
    let mut k = RealKernel::from_registered_ipc_buffer().ok_or(Error::NoIpcBuffer)?;
    let r = measure_with(&mut k, start);
    sys::set_ipc_buffer(k.into_ipc_buffer());
    r
}

fn measure_with(k: &mut RealKernel, start: &Start) -> Result<[u64; BATCHES], Error> {
    let code = code_frame(start.bootinfo)?;
    let (untyped, _) = start
        .untyped()
        .filter(|(_, u)| !u.is_device && u.size_bits >= 20)
        .min_by_key(|(_, u)| u.size_bits)
        .ok_or(Error::NoUntyped)?;
    let empty = start.empty();
    let first = empty.end.index().checked_sub(SLOTS).filter(|s| *s >= empty.start.index()).ok_or(Error::NoSlots)?;
    let mut arena = UntypedArena::new(untyped.cap(), SlotRegion { start: Slot::new(first), end: empty.end });
    let r = run(k, &mut arena, code);
    // Everything goes, newest first, whatever happened: the TCB stops, the mapped copy of the
    // code frame is unmapped, the untyped has no children left.
    let freed = arena.teardown(k);
    let ticks = r?;
    freed.map_err(Error::Setup)?;
    Ok(ticks)
}

/// The image frame of the code page, after checking the image is where the linker put it.
fn code_frame(bi: &BootInfo<'_>) -> Result<Cap<Frame>, Error> {
    let page = (&raw const capvisor_bare_fault_page) as u64;
    own_image_frame(bi, VirtAddr(page)).map(|s| s.cap::<Frame>()).map_err(|at| Error::ImageLayout(at.get()))
}

/// Creates the endpoint and the thread, answers it, stops it.
fn run(k: &mut RealKernel, arena: &mut UntypedArena, code: Cap<Frame>) -> Result<[u64; BATCHES], Error> {
    let ep = arena.object(k, ObjectBlueprint::Endpoint).map_err(Error::Setup)?;
    let params = VcpuThreadParams {
        code: CodePage { frame: code, ipa: VirtAddr(CODE_IPA), entry_offset: 0 },
        fault_ep: ep,
        fault_badge: BADGE,
        // The default priority of guests' vCPUs, the bench VM's.
        priority: u64::from(vm_config::CapvisorOptions::default().vcpu_priority),
        authority: init_cap::TCB.cap(),
        asid_pool: init_cap::ASID_POOL.cap(),
    };
    let thread = spawn_vcpu_thread(k, arena, params).map_err(Error::Setup)?;
    k.tcb_resume(thread.tcb).map_err(|e| Error::Kernel("TCB_Resume", e))?;
    let r = answer(k, ep.cap());
    let stopped = k.tcb_suspend(thread.tcb).map_err(|e| Error::Kernel("TCB_Suspend", e));
    let ticks = r?;
    stopped?;
    Ok(ticks)
}

/// The reply that resumes the thread past the `hvc` at `ip`: X0-X7 (zero) and FaultIP.
fn resume_after(ip: u64) -> Message {
    let mut w = [0u64; unknown_syscall::REPLY_LENGTH];
    w[unknown_syscall::FAULT_IP] = ip + 4;
    Message::new(0, &w)
}

/// Whether `r` is the thread's `hvc` at `ip`.
fn expect(r: &Received, ip: u64) -> Result<(), Error> {
    let word8 = r.msg.words().get(unknown_syscall::FAULT_IP).copied().unwrap_or(0);
    if r.badge == BADGE && r.msg.info.label() == label::UNKNOWN_SYSCALL && word8 == ip {
        Ok(())
    } else {
        Err(Error::Unexpected { badge: r.badge, label: r.msg.info.label(), ip: word8 })
    }
}

/// Answers every timed `hvc` and collects the reports; leaves the thread waiting for the reply
/// to its last report.
fn answer(k: &mut RealKernel, ep: Cap<Endpoint>) -> Result<[u64; BATCHES], Error> {
    let call = ipa_of(&raw const capvisor_bare_fault_call);
    let report = ipa_of(&raw const capvisor_bare_fault_report);
    let (after_call, after_report) = (resume_after(call), resume_after(report));
    let mut ticks = [0u64; BATCHES];
    let mut r = k.recv(ep);
    for (b, t) in ticks.iter_mut().enumerate() {
        for _ in 0..CALLS {
            expect(&r, call)?;
            r = k.reply_recv(ep, &after_call);
        }
        expect(&r, report)?;
        *t = r.msg.words().get(unknown_syscall::X0 + 1).copied().unwrap_or(0);
        if b + 1 < BATCHES {
            r = k.reply_recv(ep, &after_report);
        }
    }
    Ok(ticks)
}
