//! Entry, stack, bootinfo, IPC buffer, heap, the console's bring-up and the panic handler.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::fmt;
use core::panic::PanicInfo;

use linked_list_allocator::LockedHeap;
use sel4::bootinfo::BOOTINFO_FRAME_SIZE;
use sel4::object::PAGE_BITS;
use sel4::sys::IpcBuffer;
use sel4::{BootInfo, Kernel as _, PhysAddr, RealKernel, Slot, SlotRegion, UntypedDesc, VirtAddr, init_cap};

use crate::console::{self, ConsoleError, Reserved};
use crate::pl011::Pl011;
use crate::{HEAP_BYTES, STACK_BYTES, debug_println, print, semihosting};

// `_start`: the kernel enters the root task at EL0 with x0 = bootinfo frame address and an
// undefined stack pointer. The kernel configuration text rides in the same object file so
// the linker always keeps it (non-allocated: it costs no memory at run time).
global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    adrp x1, __sel4_root_task_stack_top
    add x1, x1, :lo12:__sel4_root_task_stack_top
    mov sp, x1
    mov x29, xzr
    mov x30, xzr
    bl __sel4_root_task_start
1:  b 1b

    .section .bss.__sel4_root_task_stack, "aw", %nobits
    .balign 16
    .space {stack}
__sel4_root_task_stack_top:

    .pushsection .capvisor.kconfig, "", %progbits
"#,
    concat!("    .incbin \"", env!("OUT_DIR"), "/kconfig.txt\"\n"),
    "    .popsection\n",
    stack = const STACK_BYTES,
);

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_BYTES]);

/// The heap's memory; handed to `HEAP` once, at start.
static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_BYTES]);

const PAGE: usize = 1 << PAGE_BITS;

/// The page of this image where the console's registers are mapped: a whole page of `.bss`
/// (zero, so the loader writes nothing there), whose own frame the runtime unmaps at start
/// (see [`crate::console`]). Never read or written as memory: only its address is used.
#[repr(C, align(4096))]
struct ConsolePage(UnsafeCell<[u8; PAGE]>);

// SAFETY: nothing reads or writes the page through this static (see above); after start it
// maps device registers, reached only through `Pl011`'s volatile accesses.
unsafe impl Sync for ConsolePage {}

static CONSOLE_PAGE: ConsolePage = ConsolePage(UnsafeCell::new([0; PAGE]));

unsafe extern "Rust" {
    fn __sel4_root_task_main(start: &Start) -> !;
    fn __sel4_root_task_console(bi: &BootInfo<'_>) -> Result<PhysAddr, &'static str>;
}

/// What the runtime hands `main`.
pub struct Start {
    /// The bootinfo, as the kernel wrote it.
    pub bootinfo: &'static BootInfo<'static>,
    /// What the runtime made from it (the console) and keeps.
    pub reserved: Reserved,
    /// The console UART, mapped for the root task's life (the VMM reads its input side).
    pub console: Pl011,
}

impl Start {
    /// Bootinfo's empty slots the runtime left free: the root task's.
    pub fn empty(&self) -> SlotRegion {
        self.reserved.empty(self.bootinfo)
    }

    /// Bootinfo's untyped the runtime left alone, with their slots: the root task's.
    pub fn untyped(&self) -> impl Iterator<Item = (Slot, UntypedDesc)> + 'static {
        self.reserved.untyped(self.bootinfo)
    }
}

/// The status a run ends with (semihosting) when the runtime cannot bring up the console: a
/// root task that cannot report does not run on unseen.
pub const NO_CONSOLE_EXIT_STATUS: u32 = 102;

/// Why there is no console.
enum NoConsole {
    BadBootinfo(sel4::bootinfo::BootInfoError),
    Locate(&'static str),
    ImageLayout,
    NoIpcBuffer,
    Console(ConsoleError),
}

impl fmt::Display for NoConsole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoConsole::BadBootinfo(e) => write!(f, "bad bootinfo: {e}"),
            NoConsole::Locate(why) => write!(f, "the root task found no UART: {why}"),
            NoConsole::ImageLayout => write!(f, "the image does not start where bootinfo says"),
            NoConsole::NoIpcBuffer => write!(f, "no IPC buffer registered"),
            NoConsole::Console(e) => e.fmt(f),
        }
    }
}

/// Ends the run without a console: the early output and why through semihosting, then the
/// semihosting exit with [`NO_CONSOLE_EXIT_STATUS`].
fn no_console(why: NoConsole) -> ! {
    debug_println!("sel4-root-task: no console: {why}");
    print::flush_early_to_semihosting();
    semihosting::exit(NO_CONSOLE_EXIT_STATUS)
}

/// Asks the root task where its UART is, then maps it (see [`crate::console`]).
fn bring_up_console(bi: &BootInfo<'_>) -> Result<(Pl011, Reserved), NoConsole> {
    // SAFETY: defined by the root task's `main!` invocation with exactly this signature.
    let uart = unsafe { __sel4_root_task_console(bi) }.map_err(NoConsole::Locate)?;
    // The image frames are found by position from the kernel's layout; check it against the
    // linker's idea of where the image starts before unmapping one of them.
    crate::image::check_own_layout(bi).map_err(|_| NoConsole::ImageLayout)?;
    let page = VirtAddr(CONSOLE_PAGE.0.get() as u64);
    let plan = console::plan(bi, uart, page).map_err(NoConsole::Console)?;
    let mut k = RealKernel::from_registered_ipc_buffer().ok_or(NoConsole::NoIpcBuffer)?;
    let r = console::bring_up(&mut k, &plan);
    sel4::sys::set_ipc_buffer(k.into_ipc_buffer());
    let regs = r.map_err(NoConsole::Console)?;
    // SAFETY: `bring_up` mapped the UART's register frame read-write and uncached over
    // CONSOLE_PAGE, which nothing uses as memory, for good (nothing ever unmaps it).
    let uart = unsafe { Pl011::new(regs.get() as usize) };
    Ok((uart, plan.reserved()))
}

#[unsafe(no_mangle)]
extern "C" fn __sel4_root_task_start(bootinfo: *const u8) -> ! {
    // SAFETY: the kernel maps the bootinfo frame (4 KiB) at `bootinfo` for the root task's
    // lifetime, read-only in effect (nothing here writes it).
    let frame = unsafe { core::slice::from_raw_parts(bootinfo, BOOTINFO_FRAME_SIZE) };
    let extra = u64::from_le_bytes(frame[..8].try_into().unwrap_or([0; 8])) as usize;
    // SAFETY: the kernel maps `extraLen` bytes of extra bootinfo directly after the frame
    // (it sizes the mapping from the same field).
    let all = unsafe { core::slice::from_raw_parts(bootinfo, BOOTINFO_FRAME_SIZE + extra) };
    let bi = match BootInfo::from_bytes(all) {
        Ok(bi) => bi,
        Err(e) => no_console(NoConsole::BadBootinfo(e)),
    };
    let ipc = bi.ipc_buffer_addr() as *mut IpcBuffer;
    // SAFETY: the kernel mapped the initial thread's IPC buffer at `ipcBuffer`, page
    // aligned and zeroed, and registered it for this thread; this is the only reference.
    sel4::sys::set_ipc_buffer(unsafe { &mut *ipc });
    // SAFETY: HEAP_AREA is only ever reached here, once, before any allocation.
    unsafe { HEAP.lock().init((&raw mut HEAP_AREA).cast::<u8>(), HEAP_BYTES) };
    // A `'static` bootinfo: the frame stays mapped for the root task's whole life.
    let bi: &'static BootInfo<'static> = alloc::boxed::Box::leak(alloc::boxed::Box::new(bi));
    let (uart, reserved) = match bring_up_console(bi) {
        Ok(c) => c,
        Err(why) => no_console(why),
    };
    print::attach(uart);
    let start = Start { bootinfo: bi, reserved, console: uart };
    // SAFETY: `__sel4_root_task_main` is defined by the root task's `main!` invocation with
    // exactly this signature.
    unsafe { __sel4_root_task_main(&start) }
}

/// Stops the calling thread: `TCB_Suspend` on the initial thread's own TCB. When the IPC
/// buffer is not available to make that call (lent out, or not yet registered), or the call
/// fails, an undefined instruction stops it instead: the kernel reports the fault to the
/// thread's fault handler, the root task has none, and the kernel makes the thread inactive
/// (a debug kernel prints the fault). No debug system call: this works on every kernel build.
pub fn suspend_self() -> ! {
    if let Some(mut k) = RealKernel::from_registered_ipc_buffer() {
        let r = k.tcb_suspend(init_cap::TCB.cap());
        debug_println!("sel4-root-task: TCB_Suspend on itself returned {r:?}");
    }
    loop {
        // SAFETY: `udf` raises an undefined-instruction exception and touches no memory;
        // the kernel stops this thread there (see above), so the loop never runs twice.
        unsafe { asm!("udf #0", options(nomem, nostack)) };
    }
}

/// The status a panic ends a QEMU run with (Rust's own for a panicking process).
pub const PANIC_EXIT_STATUS: u32 = 101;

/// Prints the message and location, then ends the run: under QEMU with semihosting the
/// system exits with [`PANIC_EXIT_STATUS`] (the root task is the VMM; nothing it ran can go
/// on without it, and a test sees the failure at once instead of at its time limit). A panic
/// before the console is up also hands the early output to semihosting's console. Without
/// semihosting (hardware) the exit request is an undefined instruction and the thread stops,
/// as [`suspend_self`] would stop it.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => debug_println!("root task panicked at {}:{}:{}: {}", l.file(), l.line(), l.column(), info.message()),
        None => debug_println!("root task panicked: {}", info.message()),
    }
    if !print::is_attached() {
        print::flush_early_to_semihosting();
    }
    semihosting::exit(PANIC_EXIT_STATUS)
}
