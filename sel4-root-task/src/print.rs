//! The root task's console output: its own PL011 driver, the same on every kernel build
//! (no `seL4_DebugPutChar`, which a kernel without `CONFIG_PRINTING` does not have).
//!
//! `"\n"` goes out as `"\r\n"`, as the kernel's own console writes it (`uart_console_putchar`
//! in seL4's `include/drivers/uart.h`), so the output reads the same as before.
//!
//! Until the runtime has mapped the UART ([`attach`], before `main`), output waits in a
//! small buffer; [`attach`] sends it first, and says how many bytes did not fit. If the
//! console never comes up, the runtime hands the buffer to [`flush_early_to_semihosting`]
//! before it ends the run, so nothing written is lost without a word.
//!
//! Owns: the console's register address once attached, and the early buffer. These are
//! globals on purpose: the print macros and the panic handler have no context to be handed;
//! each is written once (the address) or only before `main` (the buffer), by the initial
//! thread. Never touches: the UART's input side (the VMM's).

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::pl011::Pl011;

/// The console's registers, 0 until [`attach`].
static UART: AtomicUsize = AtomicUsize::new(0);

/// Bytes kept before the console is up. The runtime writes nothing there on a good start, so
/// this only has to hold an error message or two.
const EARLY_BYTES: usize = 1024;

struct Early {
    bytes: [AtomicU8; EARLY_BYTES],
    len: AtomicUsize,
    dropped: AtomicUsize,
}

static EARLY: Early =
    Early { bytes: [const { AtomicU8::new(0) }; EARLY_BYTES], len: AtomicUsize::new(0), dropped: AtomicUsize::new(0) };

fn console() -> Option<Pl011> {
    match UART.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: a non-zero address was stored by `attach`, whose caller guarantees a mapped
        // PL011 register block for the rest of the root task's life.
        regs => Some(unsafe { Pl011::new(regs) }),
    }
}

fn put(u: &Pl011, bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            u.put(b'\r');
        }
        u.put(b);
    }
}

/// Writes `bytes` to the console (or the early buffer before it is up).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(u) = console() {
        put(&u, bytes);
        return;
    }
    for &b in bytes {
        let i = EARLY.len.fetch_add(1, Ordering::Relaxed);
        match EARLY.bytes.get(i) {
            Some(slot) => slot.store(b, Ordering::Relaxed),
            None => {
                EARLY.len.store(EARLY_BYTES, Ordering::Relaxed);
                EARLY.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn early() -> impl Iterator<Item = u8> {
    let n = EARLY.len.load(Ordering::Relaxed).min(EARLY_BYTES);
    EARLY.bytes[..n].iter().map(|b| b.load(Ordering::Relaxed))
}

/// Makes `uart` the console: sends what waited in the early buffer, then says how many bytes
/// did not fit there, if any.
pub(crate) fn attach(uart: Pl011) {
    for b in early() {
        put(&uart, &[b]);
    }
    EARLY.len.store(0, Ordering::Relaxed);
    UART.store(uart.address(), Ordering::Release);
    let dropped = EARLY.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        crate::debug_println!("sel4-root-task: {dropped} bytes written before the console was up were dropped");
    }
}

/// Whether the console is up.
pub fn is_attached() -> bool {
    console().is_some()
}

/// The early buffer through semihosting `SYS_WRITE0` (QEMU's own console), for a run that
/// ends without a console. On hardware without semihosting the first call stops the thread
/// (see [`crate::semihosting`]), which is where such a run was going.
pub(crate) fn flush_early_to_semihosting() {
    let mut chunk = [0u8; 257];
    let mut n = 0;
    for b in early().chain(core::iter::once(b'\n')) {
        // SYS_WRITE0 stops at a NUL byte.
        chunk[n] = if b == 0 { b'.' } else { b };
        n += 1;
        if n == chunk.len() - 1 {
            chunk[n] = 0;
            crate::semihosting::write0(&chunk[..=n]);
            n = 0;
        }
    }
    chunk[n] = 0;
    crate::semihosting::write0(&chunk[..=n]);
    let dropped = EARLY.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        crate::semihosting::write0(b"(and more bytes that did not fit the early buffer)\n\0");
    }
}

/// A `core::fmt::Write` sink on the root task's console.
pub struct ConsoleWriter;

impl fmt::Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints to the root task's console.
#[macro_export]
macro_rules! debug_print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::ConsoleWriter, $($arg)*);
    }};
}

/// Prints a line to the root task's console.
#[macro_export]
macro_rules! debug_println {
    () => { $crate::debug_print!("\n") };
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::ConsoleWriter, $($arg)*);
    }};
}
