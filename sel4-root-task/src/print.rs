//! Console output through `seL4_DebugPutChar` (debug kernels with `PRINTING`).

use core::fmt;

/// A `core::fmt::Write` sink on the kernel's debug console.
pub struct DebugWriter;

impl fmt::Write for DebugWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        sel4::sys::debug_put_str(s);
        Ok(())
    }
}

/// Prints to the kernel's debug console.
#[macro_export]
macro_rules! debug_print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::DebugWriter, $($arg)*);
    }};
}

/// Prints a line to the kernel's debug console.
#[macro_export]
macro_rules! debug_println {
    () => { $crate::debug_print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::DebugWriter, $($arg)*);
    }};
}
