//! Root-task runtime: entry, stack, IPC buffer, heap, the console and panics.
//!
//! A root task links this crate, declares its entry and its console with [`main!`], and gets
//! from the runtime, before its `main` runs: a 64 KiB stack, the bootinfo frame (from `x0`)
//! checked and parsed, the IPC buffer registered for the initial thread (via
//! [`sel4::sys::set_ipc_buffer`], so [`sel4::RealKernel::from_registered_ipc_buffer`] can
//! take it), a heap of [`HEAP_BYTES`] behind `alloc`, and its console.
//!
//! # The console
//! The root task writes its console through its own PL011 driver ([`pl011`]), on every kernel
//! build alike: no debug system call, so it runs on a kernel built without `KernelDebugBuild`
//! and `KernelPrinting` (the only kind that contains guests, see `guests/test-guest`). The
//! root task says where its UART is (the `console` function given to [`main!`]: the code
//! asks the platform, e.g. its device tree); the runtime retypes a device frame at that
//! address from the device untyped holding it and maps it over a page of its own image
//! ([`console`]), then hands `main` a [`Start`] that says what it took ([`Reserved`]: that
//! untyped, the first slots of bootinfo's empty region, one image frame) so nothing else uses
//! them. [`debug_println!`] writes there (`"\n"` as `"\r\n"`, as the kernel's console does);
//! what is written before the console is up waits in a small buffer. A runtime that cannot
//! bring the console up ends the run (status [`NO_CONSOLE_EXIT_STATUS`], semihosting), its
//! buffered output and the reason written to QEMU's console through semihosting.
//!
//! # Panics and stopping
//! A panic prints its message and location and ends a QEMU run with status 101
//! (semihosting; on hardware the thread stops). [`suspend_self`] stops the calling thread
//! with `TCB_Suspend`, or with a fault the root task has no handler for when it cannot make
//! that call: neither needs `seL4_DebugHalt`.
//!
//! Every root task built with this runtime also carries the kernel configuration it was
//! built for in the ELF section `.capvisor.kconfig`, which `capvisor image` compares with
//! the kernel it packs.
//!
//! Owns: the initial thread's stack, heap and IPC buffer registration, and the console's
//! objects and mapping ([`Reserved`]). Never touches: any other capability (the root task
//! owns them, through [`sel4::Kernel`]).
//!
//! Everything that only makes sense on the target is behind `cfg(target_os = "none")`; on
//! the host the crate offers the pure parts ([`summary`], [`image`], and [`console`]'s plan
//! and bring-up, generic over [`sel4::Kernel`]) so they are tested there, on the seL4 model.
#![no_std]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod console;
pub mod image;
pub mod summary;

#[cfg(target_os = "none")]
pub mod pl011;
#[cfg(target_os = "none")]
mod print;
#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
pub mod semihosting;

pub use console::Reserved;
#[cfg(target_os = "none")]
pub use print::{ConsoleWriter, write_bytes as console_write};
#[cfg(target_os = "none")]
pub use rt::{NO_CONSOLE_EXIT_STATUS, PANIC_EXIT_STATUS, Start, suspend_self};

/// Heap bytes the runtime provides to `alloc`: 1 MiB, or 8 MiB with the feature `large-heap`
/// (for self-tests that keep large records, e.g. the HAL's after a long random sequence; the
/// heap is part of the image, so it moves the untyped list at the top of RAM).
pub const HEAP_BYTES: usize = if cfg!(feature = "large-heap") { 8 << 20 } else { 1 << 20 };
/// Stack bytes of the initial thread.
pub const STACK_BYTES: usize = 64 * 1024;

/// Declares the root task's entry and its console:
/// `main!(main, console = find_uart)` with `main: fn(&Start) -> !`, called once the stack,
/// IPC buffer, heap and console are up, and
/// `find_uart: fn(&sel4::BootInfo<'_>) -> Result<sel4::PhysAddr, &'static str>`, which says
/// where the platform's console PL011 is (its registers' physical address), or why it
/// cannot tell.
#[macro_export]
macro_rules! main {
    ($f:path, console = $console:path) => {
        #[unsafe(no_mangle)]
        fn __sel4_root_task_main(start: &$crate::Start) -> ! {
            let f: fn(&$crate::Start) -> ! = $f;
            f(start)
        }

        #[unsafe(no_mangle)]
        fn __sel4_root_task_console(
            bi: &$crate::__private::BootInfo<'_>,
        ) -> ::core::result::Result<$crate::__private::PhysAddr, &'static str> {
            let f: fn(
                &$crate::__private::BootInfo<'_>,
            ) -> ::core::result::Result<$crate::__private::PhysAddr, &'static str> = $console;
            f(bi)
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use sel4::{BootInfo, PhysAddr};
}
