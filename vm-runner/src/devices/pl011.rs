//! PL011 UART emulation: plain state and functions.
//!
//! Output is handed out byte for byte as the guest writes it ([`Pl011::take_output`]): the
//! console multiplexer ([`crate::console`]) decides where lines start and which carry the
//! VM's name. Input comes from the multiplexer for the VM that has focus and sits in a
//! bounded queue the guest reads through `DR`.
//!
//! The transmitter is as fast as the VMM drains it: the run loop takes the output after
//! every exit, so the buffer holds a few bytes. Should it ever hold [`OUTPUT_MAX`] bytes,
//! `FR.TXFF` is set (and `TXFE` cleared) until it is drained, as a real FIFO pushes back; a
//! guest that writes `DR` regardless has the byte dropped and counted
//! ([`Pl011::dropped_output`]), as the hardware would. The TX interrupt follows QEMU's
//! model, which Linux's `amba-pl011` driver is known to work with: raised by every write to
//! `DR`, cleared by `ICR`. The receive interrupts (`RX`, `RT`) are levels computed from the
//! queue: raised while it holds data.
//!
//! Owns the UART's registers and buffers; never touches the interrupt controller (the caller
//! reads [`Pl011::irq_level`] after each access) nor the terminal.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Most output bytes waiting for the console: the transmit FIFO reports full at this many,
/// so a guest that prints faster than the console drains cannot grow the VMM.
pub const OUTPUT_MAX: usize = 8192;
/// Depth of the input queue.
pub const INPUT_MAX: usize = 256;

/// Register offsets.
pub mod reg {
    /// Data.
    pub const DR: u64 = 0x000;
    /// Receive status / error clear.
    pub const RSR: u64 = 0x004;
    /// Flags.
    pub const FR: u64 = 0x018;
    /// IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// Integer baud rate divisor.
    pub const IBRD: u64 = 0x024;
    /// Fractional baud rate divisor.
    pub const FBRD: u64 = 0x028;
    /// Line control.
    pub const LCR_H: u64 = 0x02c;
    /// Control.
    pub const CR: u64 = 0x030;
    /// Interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// Interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// Raw interrupt status.
    pub const RIS: u64 = 0x03c;
    /// Masked interrupt status.
    pub const MIS: u64 = 0x040;
    /// Interrupt clear.
    pub const ICR: u64 = 0x044;
    /// DMA control.
    pub const DMACR: u64 = 0x048;
    /// First of the peripheral and PrimeCell ID registers.
    pub const ID_BASE: u64 = super::super::primecell::ID_BASE;
}

/// Flag register bits.
pub mod fr {
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
}

/// Interrupt bits (RIS, MIS, IMSC, ICR).
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Overrun error.
    pub const OE: u32 = 1 << 10;
    /// Every defined bit.
    pub const ALL: u32 = 0x7ff;
}

/// PeriphID0-3 and PCellID0-3 of an ARM PL011 r1p5, as QEMU reports them.
const IDS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// One emulated PL011.
#[derive(Clone, Debug)]
pub struct Pl011 {
    output: Vec<u8>,
    dropped_output: u64,
    input: VecDeque<u8>,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    ilpr: u32,
    /// Latched raw interrupt bits (TX, OE); RX and RT are computed from the queue.
    latched: u32,
    rsr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART in its reset state.
    pub fn new() -> Self {
        Pl011 {
            output: Vec::new(),
            dropped_output: 0,
            input: VecDeque::new(),
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
            ilpr: 0,
            latched: 0,
            rsr: 0,
        }
    }

    fn raw_status(&self) -> u32 {
        let rx = if self.input.is_empty() { 0 } else { int::RX | int::RT };
        self.latched | rx
    }

    /// Whether the UART's interrupt output is asserted.
    pub fn irq_level(&self) -> bool {
        self.raw_status() & self.imsc != 0
    }

    /// A guest read of `size` bytes at `offset`. Reads that are not of a whole register
    /// return the addressed bytes of it; unknown offsets read as zero.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        let word = offset & !3;
        let v = match word {
            // No framing or parity errors here, so the byte comes with no error bits.
            reg::DR => self.input.pop_front().map_or(0, u32::from),
            reg::RSR => self.rsr,
            reg::FR => {
                let mut f = if self.output.len() >= OUTPUT_MAX { fr::TXFF } else { fr::TXFE };
                if self.input.is_empty() {
                    f |= fr::RXFE;
                }
                if self.input.len() >= INPUT_MAX {
                    f |= fr::RXFF;
                }
                f
            }
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.raw_status(),
            reg::MIS => self.raw_status() & self.imsc,
            reg::DMACR => self.dmacr,
            w => super::primecell::id_register(&IDS, w).unwrap_or(0),
        };
        super::primecell::read_part(v, offset, size)
    }

    /// A guest write of `size` bytes at `offset`. Writes to part of a register other than
    /// its low bytes are ignored.
    pub fn write(&mut self, offset: u64, _size: u8, value: u64) {
        if offset & 3 != 0 {
            return;
        }
        let v = value as u32;
        match offset {
            reg::DR => {
                self.put(v as u8);
                self.latched |= int::TX;
            }
            reg::RSR => {
                self.rsr = 0;
                self.latched &= !int::OE;
            }
            reg::ILPR => self.ilpr = v & 0xff,
            reg::IBRD => self.ibrd = v & 0xffff,
            reg::FBRD => self.fbrd = v & 0x3f,
            reg::LCR_H => self.lcr_h = v & 0xff,
            reg::CR => self.cr = v & 0xff87,
            reg::IFLS => self.ifls = v & 0x3f,
            reg::IMSC => self.imsc = v & int::ALL,
            reg::ICR => self.latched &= !(v & int::ALL),
            reg::DMACR => self.dmacr = v & 0x7,
            _ => {}
        }
    }

    fn put(&mut self, b: u8) {
        if self.output.len() < OUTPUT_MAX {
            self.output.push(b);
        } else {
            self.dropped_output = self.dropped_output.saturating_add(1);
        }
    }

    /// The bytes written since the last call, as written; clears them.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Bytes the guest wrote while the transmit FIFO reported full (dropped).
    pub fn dropped_output(&self) -> u64 {
        self.dropped_output
    }

    /// Queues console input for the guest; returns how many bytes fit. A byte that does not
    /// fit raises the overrun error, as the hardware would.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let room = INPUT_MAX.saturating_sub(self.input.len());
        let n = bytes.len().min(room);
        self.input.extend(bytes.iter().take(n));
        if n < bytes.len() {
            self.rsr |= 1 << 3;
            self.latched |= int::OE;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_str(u: &mut Pl011, s: &str) {
        for b in s.bytes() {
            u.write(reg::DR, 1, b.into());
        }
    }

    #[test]
    fn output_is_handed_out_as_written() {
        let mut u = Pl011::new();
        write_str(&mut u, "/ # ");
        assert_eq!(u.take_output(), b"/ # ", "a prompt without a newline is there at once");
        write_str(&mut u, "ls\r\n");
        assert_eq!(u.take_output(), b"ls\r\n", "bytes unchanged, carriage returns too");
        assert_eq!(u.take_output(), b"");
    }

    #[test]
    fn undrained_output_pushes_back_and_only_writes_past_full_are_dropped() {
        let mut u = Pl011::new();
        for _ in 0..OUTPUT_MAX - 1 {
            u.write(reg::DR, 1, u64::from(b'x'));
        }
        assert_eq!(u.read(reg::FR, 4) as u32 & (fr::TXFF | fr::TXFE), fr::TXFE);
        u.write(reg::DR, 1, u64::from(b'y'));
        assert_eq!(u.read(reg::FR, 4) as u32 & (fr::TXFF | fr::TXFE), fr::TXFF, "full");
        assert_eq!(u.dropped_output(), 0);
        for _ in 0..10 {
            u.write(reg::DR, 4, u64::from(b'z'));
        }
        assert_eq!(u.dropped_output(), 10, "written while full");
        let out = u.take_output();
        assert_eq!(out.len(), OUTPUT_MAX);
        assert_eq!(out.last(), Some(&b'y'));
        assert_eq!(u.read(reg::FR, 4) as u32 & (fr::TXFF | fr::TXFE), fr::TXFE, "drained");
    }

    #[test]
    fn flags_and_input() {
        let mut u = Pl011::new();
        assert_eq!(u.read(reg::FR, 4) as u32, fr::TXFE | fr::RXFE);
        assert_eq!(u.push_input(b"ab"), 2);
        assert_eq!(u.read(reg::FR, 4) as u32 & fr::RXFE, 0);
        assert_eq!(u.read(reg::DR, 4), u64::from(b'a'));
        assert_eq!(u.read(reg::DR, 1), u64::from(b'b'));
        assert_eq!(u.read(reg::DR, 4), 0, "empty reads as 0");
        let big = [b'z'; INPUT_MAX + 10];
        assert_eq!(u.push_input(&big), INPUT_MAX);
        assert_ne!(u.read(reg::FR, 4) as u32 & fr::RXFF, 0);
        assert_ne!(u.read(reg::RIS, 4) as u32 & int::OE, 0, "overrun raised");
        u.write(reg::RSR, 4, 0);
        assert_eq!(u.read(reg::RIS, 4) as u32 & int::OE, 0, "cleared by a write to ECR");
    }

    #[test]
    fn interrupts_follow_the_mask_and_the_queue() {
        let mut u = Pl011::new();
        assert!(!u.irq_level());
        u.write(reg::IMSC, 4, u64::from(int::RX | int::RT));
        assert!(!u.irq_level(), "nothing to receive");
        u.push_input(b"k");
        assert!(u.irq_level());
        assert_eq!(u.read(reg::MIS, 4) as u32, int::RX | int::RT);
        u.write(reg::ICR, 4, u64::from(int::RX | int::RT));
        assert!(u.irq_level(), "RX is a level: it stays while data is queued");
        u.read(reg::DR, 4);
        assert!(!u.irq_level(), "reading the byte drops it");
        // TX: raised by a write, cleared by ICR, visible only when unmasked.
        u.write(reg::DR, 4, u64::from(b'.'));
        assert!(!u.irq_level());
        assert_ne!(u.read(reg::RIS, 4) as u32 & int::TX, 0);
        u.write(reg::IMSC, 4, u64::from(int::TX));
        assert!(u.irq_level());
        u.write(reg::ICR, 4, u64::from(int::TX));
        assert!(!u.irq_level());
    }

    #[test]
    fn registers_keep_their_implemented_bits_and_ids_read_back() {
        let mut u = Pl011::new();
        assert_eq!(u.read(reg::CR, 4), 0x300, "reset: TXE|RXE");
        assert_eq!(u.read(reg::IFLS, 4), 0x12);
        u.write(reg::IBRD, 4, 0xffff_ffff);
        u.write(reg::FBRD, 4, 0xff);
        u.write(reg::LCR_H, 4, 0x170);
        u.write(reg::CR, 4, 0xffff_ffff);
        assert_eq!((u.read(reg::IBRD, 4), u.read(reg::FBRD, 4), u.read(reg::LCR_H, 4)), (0xffff, 0x3f, 0x70));
        assert_eq!(u.read(reg::CR, 4), 0xff87);
        let ids: Vec<u64> = (0..8).map(|i| u.read(reg::ID_BASE + 4 * i, 4)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(u.read(0x800, 4), 0, "unknown offsets read as zero");
        u.write(0x801, 1, 0xff);
        assert_eq!(u.read(reg::CR + 1, 1), 0xff, "byte 1 of CR");
        assert_eq!(u.read(reg::IBRD, 2), 0xffff);
    }
}
