//! Root-task runtime: entry, stack, IPC buffer, heap, debug printing and panics.
//!
//! A root task links this crate, declares its entry with [`main!`], and gets from the
//! runtime, before its `main` runs: a 64 KiB stack, the bootinfo frame (from `x0`) checked
//! and parsed, the IPC buffer registered for the initial thread (via
//! [`sel4::sys::set_ipc_buffer`], so [`sel4::RealKernel::from_registered_ipc_buffer`] can
//! take it), and a heap of [`HEAP_BYTES`] behind `alloc`. [`debug_println!`] prints through
//! `seL4_DebugPutChar`; a panic prints its message and location and ends a QEMU run with
//! status 101 (semihosting; on hardware the thread stops).
//!
//! Every root task built with this runtime also carries the kernel configuration it was
//! built for in the ELF section `.capvisor.kconfig`, which `capvisor image` compares with
//! the kernel it packs.
//!
//! Owns: the initial thread's stack, heap and IPC buffer registration. Never touches:
//! capabilities (the root task owns them, through [`sel4::Kernel`]).
//!
//! Everything that only makes sense on the target is behind `cfg(target_os = "none")`; on
//! the host the crate offers the pure parts ([`summary`]) so they are tested there.
#![no_std]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod summary;

#[cfg(target_os = "none")]
mod print;
#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
pub mod semihosting;

#[cfg(target_os = "none")]
pub use print::DebugWriter;
#[cfg(target_os = "none")]
pub use rt::{halt, suspend_self};

/// Heap bytes the runtime provides to `alloc`: 1 MiB, or 8 MiB with the feature `large-heap`
/// (for self-tests that keep large records, e.g. the HAL's after a long random sequence; the
/// heap is part of the image, so it moves the untyped list at the top of RAM).
pub const HEAP_BYTES: usize = if cfg!(feature = "large-heap") { 8 << 20 } else { 1 << 20 };
/// Stack bytes of the initial thread.
pub const STACK_BYTES: usize = 64 * 1024;

/// Declares the root task's entry: `fn(&sel4::BootInfo<'static>) -> !`, called once the
/// stack, IPC buffer and heap are set up.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        #[unsafe(no_mangle)]
        fn __sel4_root_task_main(bootinfo: &$crate::__private::BootInfo<'static>) -> ! {
            let f: fn(&$crate::__private::BootInfo<'static>) -> ! = $f;
            f(bootinfo)
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use sel4::BootInfo;
}
