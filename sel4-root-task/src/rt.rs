//! Entry, stack, bootinfo, IPC buffer, heap and the panic handler.

use core::arch::global_asm;
use core::panic::PanicInfo;

use linked_list_allocator::LockedHeap;
use sel4::bootinfo::BOOTINFO_FRAME_SIZE;
use sel4::sys::IpcBuffer;
use sel4::{BootInfo, Kernel as _, RealKernel, init_cap};

use crate::{HEAP_BYTES, STACK_BYTES, debug_println};

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

unsafe extern "Rust" {
    fn __sel4_root_task_main(bootinfo: &BootInfo<'static>) -> !;
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
        Err(e) => {
            debug_println!("sel4-root-task: bad bootinfo: {e}");
            suspend_self()
        }
    };
    let ipc = bi.ipc_buffer_addr() as *mut IpcBuffer;
    // SAFETY: the kernel mapped the initial thread's IPC buffer at `ipcBuffer`, page
    // aligned and zeroed, and registered it for this thread; this is the only reference.
    sel4::sys::set_ipc_buffer(unsafe { &mut *ipc });
    // SAFETY: HEAP_AREA is only ever reached here, once, before any allocation.
    unsafe { HEAP.lock().init((&raw mut HEAP_AREA).cast::<u8>(), HEAP_BYTES) };
    // A `'static` bootinfo: the frame stays mapped for the root task's whole life.
    let bi: &'static BootInfo<'static> = alloc::boxed::Box::leak(alloc::boxed::Box::new(bi));
    // SAFETY: `__sel4_root_task_main` is defined by the root task's `main!` invocation with
    // exactly this signature.
    unsafe { __sel4_root_task_main(bi) }
}

/// Stops the calling thread: `TCB_Suspend` on the initial thread's own TCB, or, when the
/// IPC buffer is not available (lent out, or not yet registered), `seL4_DebugHalt`.
pub fn suspend_self() -> ! {
    if let Some(mut k) = RealKernel::from_registered_ipc_buffer() {
        let r = k.tcb_suspend(init_cap::TCB.cap());
        debug_println!("sel4-root-task: TCB_Suspend on itself returned {r:?}");
    }
    halt()
}

/// Halts the whole system (`seL4_DebugHalt`); never returns.
pub fn halt() -> ! {
    sel4::sys::debug_halt();
    // DebugHalt does not return on a debug kernel; if it did, stop here visibly.
    debug_println!("sel4-root-task: seL4_DebugHalt returned; stopping in a loop");
    loop {
        sel4::sys::yield_now();
    }
}

/// The status a panic ends a QEMU run with (Rust's own for a panicking process).
pub const PANIC_EXIT_STATUS: u32 = 101;

/// Prints the message and location, then ends the run: under QEMU with semihosting the
/// system exits with [`PANIC_EXIT_STATUS`] (the root task is the VMM; nothing it ran can go
/// on without it, and a test sees the failure at once instead of at its time limit).
/// Without semihosting (hardware) the exit request is an undefined instruction and the
/// thread stops, as [`suspend_self`] would stop it.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => debug_println!("root task panicked at {}:{}:{}: {}", l.file(), l.line(), l.column(), info.message()),
        None => debug_println!("root task panicked: {}", info.message()),
    }
    crate::semihosting::exit(PANIC_EXIT_STATUS)
}
