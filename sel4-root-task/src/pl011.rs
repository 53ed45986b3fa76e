//! The PL011 UART's registers, as the root task uses them: output by polling (the runtime's
//! console) and, for the VMM, the receive FIFO and its interrupt.
//!
//! Owns: the register offsets and bits, and volatile access to a mapped register frame. Never
//! touches: the mapping (made by [`crate::console`]) or the UART's configuration (baud rate,
//! line control: firmware and the loader set it, the kernel on a debug build writes through
//! the same settings).

/// Data register: a write sends a byte, a read takes one from the receive FIFO.
pub const DR: usize = 0x000;
/// Flag register.
pub const FR: usize = 0x018;
/// Interrupt mask set/clear register.
pub const IMSC: usize = 0x038;
/// Interrupt clear register.
pub const ICR: usize = 0x044;
/// `FR`: receive FIFO empty.
pub const FR_RXFE: u32 = 1 << 4;
/// `FR`: transmit FIFO full.
pub const FR_TXFF: u32 = 1 << 5;
/// `IMSC`/`ICR`: the receive and receive-timeout interrupts.
pub const RX_INTERRUPTS: u32 = (1 << 4) | (1 << 6);

/// A PL011 whose register frame is mapped (device memory) at a fixed address for the rest of
/// the root task's life.
#[derive(Clone, Copy, Debug)]
pub struct Pl011 {
    regs: usize,
}

impl Pl011 {
    /// The UART whose registers are mapped at `regs`.
    ///
    /// # Safety
    /// `regs` must be the start of a PL011's register block, mapped readable and writable as
    /// device memory in this address space for as long as the value (and its copies) is used,
    /// and used by nothing else as memory.
    pub const unsafe fn new(regs: usize) -> Self {
        Pl011 { regs }
    }

    /// The address the registers are mapped at.
    pub fn address(&self) -> usize {
        self.regs
    }

    /// Reads the 32-bit register at offset `off` (one of the constants above).
    pub fn read(&self, off: usize) -> u32 {
        // SAFETY: `regs` maps the PL011's registers for the root task's life (`new`'s
        // contract); `off` is a register offset inside the 4 KiB block, 4-byte aligned.
        unsafe { core::ptr::read_volatile((self.regs + off) as *const u32) }
    }

    /// Writes the 32-bit register at offset `off`.
    pub fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.regs + off) as *mut u32, v) }
    }

    /// Sends one byte: waits while the transmit FIFO is full, then writes it.
    pub fn put(&self, b: u8) {
        while self.read(FR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.write(DR, u32::from(b));
    }

    /// Takes one byte from the receive FIFO, if it holds one.
    pub fn get(&self) -> Option<u8> {
        (self.read(FR) & FR_RXFE == 0).then(|| self.read(DR) as u8)
    }
}
