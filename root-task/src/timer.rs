//! The timer server in the root task: the target-only pieces `timer-server` leaves to its
//! host (the counter read, the server thread's stack, IPC buffer and entry point, the
//! ticker's page of EL1 code) and starting and stopping the server.
//!
//! Owns: [`SERVER_STACK`], [`SERVER_IPC`] and the ticker's code page (one server at a time,
//! enforced by [`start`]). Never touches: capabilities other than those the allocator hands
//! out and the root task's own image frames it copies (the IPC buffer page and the code
//! page), found with `sel4_root_task::image`.
//!
//! The server thread shares the root task's address space (its code is in this image) but has
//! its own TCB, stack, IPC buffer, endpoint and CNode (see `timer_server::setup`). Time is the
//! system counter since its reset (base 0), converted at `CNTFRQ_EL0`.
//!
//! # Which counter register
//! Native threads read the system counter through `CNTVCT_EL0` by default, not `CNTPCT_EL0`.
//! seL4 lets EL0 read both (`EXPORT_PCNT_USER`, `EXPORT_VCNT_USER`), but QEMU before 8.2
//! (fixed upstream in September 2023; Debian 12 ships 7.2) checks the wrong bit for an EL0
//! `CNTPCT_EL0` read when `HCR_EL2.E2H` is 0: `CNTHCTL_EL2.EL1PCEN` (the timer bit, off because
//! `EXPORT_PTMR_USER` is off) instead of `EL1PCTEN`, so the read traps to the kernel, which
//! reports a VCPU fault (measured here: the server thread faulted on its first read). `CNTVCT_EL0` is
//! `CNTPCT_EL0 - CNTVOFF_EL2`, and `CNTVOFF_EL2` holds the offset of the last VCPU the kernel
//! loaded (it does not reset it for native threads), or the loader's 0 before any VCPU ran.
//! So the two are the same as long as **every VCPU has `CNTVOFF` 0**: the ticker's does (set
//! at creation), guests' must too (capvisor gives guests the physical count as their virtual
//! count; `VTIMER_UPDATE_VOFFSET` is off, so the kernel never changes it). With the feature
//! `timer-cntpct` the server reads `CNTPCT_EL0` instead (real hardware, or a fixed QEMU).

#[cfg(any(feature = "selftest-timer", feature = "bench-timer"))]
pub mod selftest;

extern crate alloc;

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use alloc::boxed::Box;
use sel4::cap_type::{Frame, Granule};
use sel4::object::PAGE_BITS;
use sel4::sys::IpcBuffer;
use sel4::{BootInfo, RealKernel, VirtAddr, init_cap};
use sel4_root_task::image::own_image_frame;
use timer_server::clock::{Clock, ClockError, Frequency};
use timer_server::server::{Core, Counter, Server};
use timer_server::setup::{self, CodePage, ObjectAlloc, ServerThread, SetupError, Spawned};

/// The server's priority: the highest, as the root task's, so a signal it sends never
/// preempts it halfway through handling a message (the woken client runs when the server next
/// blocks), and it always preempts the ticker and guests.
pub const SERVER_PRIORITY: u64 = 255;
/// The priority of guest vCPUs, which the ticker shares (see `timer_server::server`).
pub const GUEST_PRIORITY: u64 = 100;
/// Where the ticker's code page sits in its own stage-2 address space.
pub const TICKER_IPA: u64 = 0x1000_0000;
/// The counter width assumed: QEMU's is 64 bits; the architecture guarantees at least 56 bits
/// and a roll-over time of at least 40 years, so this matters only after that.
pub const COUNTER_WIDTH_BITS: u32 = 64;

const PAGE: u64 = 1 << PAGE_BITS;
const SERVER_STACK_BYTES: usize = 16 * 1024;

/// The system counter, as the server (and, for the zero-system-call path, the root task)
/// reads it.
pub struct SystemCounter;

impl Counter for SystemCounter {
    fn read(&mut self) -> u64 {
        read_counter()
    }
}

/// The system counter through `CNTVCT_EL0` (see the module docs), ordered after the
/// instructions before it.
#[cfg(not(feature = "timer-cntpct"))]
#[inline(always)]
pub fn read_counter() -> u64 {
    let v: u64;
    // SAFETY: EL0 may read CNTVCT_EL0 (EXPORT_VCNT_USER, checked below); the read has no side
    // effects. The ISB keeps it from being taken early.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The system counter through `CNTPCT_EL0`, ordered after the instructions before it.
#[cfg(feature = "timer-cntpct")]
#[inline(always)]
pub fn read_counter() -> u64 {
    let v: u64;
    // SAFETY: EL0 may read CNTPCT_EL0 (EXPORT_PCNT_USER, which timer-server checks at build
    // time); the read has no side effects. The ISB keeps it from being taken early.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

#[cfg(not(feature = "timer-cntpct"))]
const _: () = assert!(
    sel4::config::EXPORT_VCNT_USER,
    "root-task reads the counter through CNTVCT_EL0 at EL0: it needs KernelArmExportVCNTUser ON (EXPORT_VCNT_USER), \
     or build with the feature timer-cntpct"
);

/// `CNTFRQ_EL0`: the counter frequency firmware programmed.
pub fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: EL0 may read CNTFRQ_EL0 whenever it may read a counter (EXPORT_PCNT_USER);
    // no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The server thread's stack: only that thread uses it.
#[repr(C, align(4096))]
struct Stack(UnsafeCell<[u8; SERVER_STACK_BYTES]>);

// SAFETY: the root task never touches the stack; only the one server thread runs on it
// (`start` refuses a second server).
unsafe impl Sync for Stack {}

static SERVER_STACK: Stack = Stack(UnsafeCell::new([0; SERVER_STACK_BYTES]));

/// The server thread's IPC buffer, alone in its page (so the page's frame can be given to
/// `TCB_Configure` without exposing anything else).
#[repr(C, align(4096))]
struct IpcPage {
    buf: UnsafeCell<IpcBuffer>,
    _rest: [u8; 4096 - 1024],
}

// SAFETY: only the server thread reaches the buffer (through `server_entry`); the root task
// only takes its address.
unsafe impl Sync for IpcPage {}

static SERVER_IPC: IpcPage = IpcPage { buf: UnsafeCell::new(IpcBuffer::zeroed()), _rest: [0; 4096 - 1024] };

const _: () = assert!(core::mem::size_of::<IpcPage>() == PAGE as usize);

// The ticker's code: a page of its own in the image, mapped read-only and executable at
// `TICKER_IPA` in the ticker's stage-2 address space and nowhere else it could be reached
// from. `hvc #0` from EL1 on a VCPU is a system call to seL4; x7 selects seL4_Yield. The
// loop reloads x7 in case a fault reply ever changes it.
global_asm!(
    ".pushsection .text.capvisor_ticker_page, \"ax\", %progbits",
    ".balign 4096",
    ".global capvisor_ticker_page",
    "capvisor_ticker_page:",
    "1:  mov x7, #{sys_yield}",
    "    hvc #0",
    "    b 1b",
    ".balign 4096",
    ".popsection",
    sys_yield = const sel4::generated::syscall::YIELD,
);

unsafe extern "C" {
    /// Start of the ticker's code page (defined above).
    static capvisor_ticker_page: [u32; 1024];
}

/// The address of the ticker's code page.
pub fn ticker_page_addr() -> u64 {
    (&raw const capvisor_ticker_page) as u64
}

/// Why the server could not start.
#[derive(Clone, Copy, Debug)]
pub enum StartError {
    /// A server is running already (there is one stack and one IPC buffer).
    AlreadyRunning,
    /// The counter frequency is unusable.
    Clock(ClockError),
    /// The image layout is not what `sel4_root_task::image` expects (the page at this address).
    ImageLayout(u64),
    /// Creating the objects failed.
    Setup(SetupError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::AlreadyRunning => write!(f, "a timer server is running already"),
            StartError::Clock(e) => e.fmt(f),
            StartError::ImageLayout(v) => write!(f, "no image frame for page {v:#x}"),
            StartError::Setup(e) => e.fmt(f),
        }
    }
}

static RUNNING: AtomicBool = AtomicBool::new(false);

/// A running server.
pub struct ServerHandle {
    /// Its capabilities (endpoint, admin, ticker, CNode) in the root CNode.
    pub spawned: Spawned,
    /// The counter frequency it converts with.
    pub freq: Frequency,
    state: *mut Server<SystemCounter>,
}

/// Starts the server thread and its ticker, with objects from `alloc`. The server counts from
/// the counter's reset and converts at `CNTFRQ_EL0` (at `sel4::config::TIMER_FREQUENCY` if
/// firmware left it 0).
pub fn start<A: ObjectAlloc>(k: &mut RealKernel, bi: &BootInfo<'_>, alloc: &mut A) -> Result<ServerHandle, StartError> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(StartError::AlreadyRunning);
    }
    let r = start_inner(k, bi, alloc);
    if r.is_err() {
        RUNNING.store(false, Ordering::Release);
    }
    r
}

fn start_inner<A: ObjectAlloc>(
    k: &mut RealKernel,
    bi: &BootInfo<'_>,
    alloc: &mut A,
) -> Result<ServerHandle, StartError> {
    let hz = match counter_frequency() {
        0 => sel4::config::TIMER_FREQUENCY,
        hz => hz,
    };
    let freq = Frequency::new(hz).map_err(StartError::Clock)?;
    let clock = Clock::new(freq, COUNTER_WIDTH_BITS, 0).map_err(StartError::Clock)?;

    // The image frames are found by position; check the position against the linker's idea
    // of where the image starts before trusting it.
    let frame = |va: u64| own_image_frame(bi, VirtAddr(va)).map_err(|at| StartError::ImageLayout(at.get()));
    let ipc_addr = SERVER_IPC.buf.get() as u64;
    let ipc_frame = frame(ipc_addr)?;
    let code_addr = ticker_page_addr();
    let code_frame = frame(code_addr)?;

    let state = Box::into_raw(Box::new(Server::new(Core::new(clock), SystemCounter, setup::layout::caps())));
    let thread = ServerThread {
        vspace: init_cap::VSPACE.cap(),
        entry: VirtAddr(server_entry as *const () as u64),
        stack_top: VirtAddr(SERVER_STACK.0.get() as u64 + SERVER_STACK_BYTES as u64),
        arg: state as u64,
        ipc_buffer: VirtAddr(ipc_addr),
        ipc_frame: ipc_frame.cap::<Granule>(),
        priority: SERVER_PRIORITY,
    };
    let code = CodePage { frame: code_frame.cap::<Frame>(), ipa: VirtAddr(TICKER_IPA), entry_offset: 0 };
    match setup::spawn(k, alloc, thread, code, GUEST_PRIORITY, init_cap::TCB.cap(), init_cap::ASID_POOL.cap()) {
        Ok(spawned) => Ok(ServerHandle { spawned, freq, state }),
        Err(e) => {
            // The thread never started (the last step starts it), so the state is still ours.
            // SAFETY: `state` came from `Box::into_raw` above and no thread received it.
            drop(unsafe { Box::from_raw(state) });
            Err(StartError::Setup(e))
        }
    }
}

impl ServerHandle {
    /// Stops the server and its ticker and frees the server's state; the objects stay with
    /// the allocator (free them after this).
    pub fn shutdown(self, k: &mut RealKernel) -> Result<(), SetupError> {
        self.spawned.stop(k)?;
        // SAFETY: `state` came from `Box::into_raw` in `start`; the only thread that used it is
        // suspended for good (its TCB is about to be freed with the allocator's objects).
        drop(unsafe { Box::from_raw(self.state) });
        RUNNING.store(false, Ordering::Release);
        Ok(())
    }
}

/// The server thread's entry: `x0` is the server state `start` built.
extern "C" fn server_entry(state: usize) -> ! {
    // SAFETY: `state` is the `Box::into_raw` pointer `start` passed in x0; from the moment
    // this thread starts until `shutdown` suspends it, only this thread uses it.
    let server = unsafe { &mut *(state as *mut Server<SystemCounter>) };
    // SAFETY: SERVER_IPC is the IPC buffer `TCB_Configure` registered for this thread; no other
    // thread dereferences it, and one server runs at a time (`start`).
    let ipc: &'static mut IpcBuffer = unsafe { &mut *SERVER_IPC.buf.get() };
    let mut k = RealKernel::new(ipc);
    server.run(&mut k)
}
