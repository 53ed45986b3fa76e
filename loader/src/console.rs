//! The PL011 console: polled output only, enough for progress and error lines.
//!
//! Owns: the UART's data and flag registers. Never touches: its configuration (firmware or
//! QEMU has set the baud rate).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// QEMU virt's PL011, used only until the payload or the device tree names the console.
pub const QEMU_VIRT_PL011: u64 = 0x0900_0000;

const UARTDR: u64 = 0x00;
const UARTFR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// The console's physical base. The loader is single-threaded; an atomic keeps the one
/// piece of global state safe to reach from the exception handler.
static BASE: AtomicU64 = AtomicU64::new(QEMU_VIRT_PL011);

/// Switches output to the PL011 at `base`.
pub fn set_base(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

/// The current console base.
pub fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

fn put(b: u8) {
    let base = base();
    // SAFETY: `base` is a PL011 (QEMU virt's, or one the payload or DTB named) mapped
    // identity as device memory (or the MMU is off); its FR and DR registers are 32-bit
    // MMIO that the loader alone uses.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & FR_TXFF != 0 {}
        core::ptr::write_volatile((base + UARTDR) as *mut u32, b as u32);
    }
}

/// Console writer for `core::fmt`.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

/// Prints a line prefixed with `capvisor loader: `.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::console::Console, "capvisor loader: ");
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}
