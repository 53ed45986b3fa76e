//! PL031 real-time clock emulation (ARM PrimeCell), as QEMU models it for the `virt`
//! machine: plain state and functions.
//!
//! The device has no clock of its own: every access brings `now_ns`, monotonic nanoseconds
//! from the VMM's timer server. The counter is the seconds loaded at a load point plus the
//! whole seconds since: `base_seconds` at construction, and a write to `LR` sets it to the
//! written value at that instant (the second starts afresh then; QEMU keeps the old phase).
//! `DR` shows the counter's low 32 bits, so it wraps at 2^32 seconds as the hardware's
//! 32-bit counter does (in 2106 for a Unix-time base). The control register reads 1: the
//! counter always runs and writes to `CR` are ignored, as in QEMU (on hardware the start
//! bit cannot be cleared once set).
//!
//! The match interrupt follows QEMU: `RIS` is set when the counter reaches `MR` (at once if
//! `MR` or `LR` is written so that they are equal), stays set until a write to `ICR`, and is
//! not set again before the next match, one turn of the counter (2^32 s) later unless `MR`
//! or `LR` change. It is computed when asked, from `now_ns`; [`Pl031::next_match_ns`] says
//! when a timer should wake the VMM to raise it.
//!
//! Owns the clock's registers; never reads a clock (time comes in as `now_ns`) and never
//! touches the interrupt controller (the caller reads [`Pl031::irq_level`] after each
//! access, and when the time from [`Pl031::next_match_ns`] comes).

/// Register offsets.
pub mod reg {
    /// Data (the counter; read-only).
    pub const DR: u64 = 0x00;
    /// Match.
    pub const MR: u64 = 0x04;
    /// Load.
    pub const LR: u64 = 0x08;
    /// Control (start bit).
    pub const CR: u64 = 0x0c;
    /// Interrupt mask set/clear.
    pub const IMSC: u64 = 0x10;
    /// Raw interrupt status.
    pub const RIS: u64 = 0x14;
    /// Masked interrupt status.
    pub const MIS: u64 = 0x18;
    /// Interrupt clear (write-only).
    pub const ICR: u64 = 0x1c;
    /// First of the peripheral and PrimeCell ID registers.
    pub const ID_BASE: u64 = super::super::primecell::ID_BASE;
}

/// The match interrupt's bit in `IMSC`, `RIS`, `MIS` and `ICR`.
pub const MATCH: u32 = 1;

/// Nanoseconds per second of the counter.
pub const NS_PER_SECOND: u64 = 1_000_000_000;

/// One turn of the 32-bit counter, in nanoseconds (about 136 years).
const TURN_NS: u64 = (1 << 32) * NS_PER_SECOND;

/// PeriphID0-3 and PCellID0-3 of an ARM PL031, as QEMU reports them.
const IDS: [u8; 8] = [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// One emulated PL031.
#[derive(Clone, Debug)]
pub struct Pl031 {
    /// The counter at `load_ns`, unwrapped (only its low 32 bits are ever shown).
    load_seconds: u64,
    load_ns: u64,
    mr: u32,
    lr: u32,
    imsc: u32,
    /// A match accounted for and not yet cleared.
    latched: bool,
    /// When the next match sets `RIS`: armed by writes to `MR` and `LR`; `None` before or
    /// when too far away to name in nanoseconds.
    match_ns: Option<u64>,
}

impl Pl031 {
    /// A clock reading `base_seconds` at `now_ns`, in its reset state (match, load and mask
    /// zero, no match armed until `MR` or `LR` is written, as in QEMU).
    pub fn new(base_seconds: u64, now_ns: u64) -> Self {
        Pl031 { load_seconds: base_seconds, load_ns: now_ns, mr: 0, lr: 0, imsc: 0, latched: false, match_ns: None }
    }

    /// Whole seconds since the load point; none if `now_ns` is before it.
    fn elapsed_seconds(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.load_ns) / NS_PER_SECOND
    }

    /// The counter as `DR` shows it.
    pub fn counter(&self, now_ns: u64) -> u32 {
        self.load_seconds.wrapping_add(self.elapsed_seconds(now_ns)) as u32
    }

    fn raw_status(&self, now_ns: u64) -> bool {
        self.latched || self.match_ns.is_some_and(|t| now_ns >= t)
    }

    /// Whether the interrupt output is asserted at `now_ns`.
    pub fn irq_level(&self, now_ns: u64) -> bool {
        self.imsc & MATCH != 0 && self.raw_status(now_ns)
    }

    /// When the interrupt output will next rise, for a VMM timer: `None` while it is masked,
    /// already raised, or no match is armed within reach.
    pub fn next_match_ns(&self, now_ns: u64) -> Option<u64> {
        if self.imsc & MATCH == 0 || self.raw_status(now_ns) {
            return None;
        }
        self.match_ns
    }

    /// Latches a match that has happened by `now_ns` and arms the next one, a turn later.
    fn settle(&mut self, now_ns: u64) {
        if let Some(t) = self.match_ns.filter(|&t| now_ns >= t) {
            self.latched = true;
            let turns = (now_ns - t) / TURN_NS + 1;
            self.match_ns = turns.checked_mul(TURN_NS).and_then(|d| t.checked_add(d));
        }
    }

    /// Arms the match for the current `MR` and counter; equal now means a match now.
    fn arm(&mut self, now_ns: u64) {
        let ahead = self.mr.wrapping_sub(self.counter(now_ns));
        let ahead_seconds = if ahead == 0 {
            self.latched = true;
            1u64 << 32
        } else {
            u64::from(ahead)
        };
        self.match_ns = self
            .elapsed_seconds(now_ns)
            .checked_add(ahead_seconds)
            .and_then(|s| s.checked_mul(NS_PER_SECOND))
            .and_then(|ns| ns.checked_add(self.load_ns));
    }

    /// A guest read of `size` bytes at `offset` at time `now_ns`. Reads that are not of a
    /// whole register return the addressed bytes of it; unknown offsets read as zero.
    pub fn read(&mut self, offset: u64, size: u8, now_ns: u64) -> u64 {
        self.settle(now_ns);
        let word = offset & !3;
        let v = match word {
            reg::DR => self.counter(now_ns),
            reg::MR => self.mr,
            reg::LR => self.lr,
            reg::CR => 1,
            reg::IMSC => self.imsc,
            reg::RIS => u32::from(self.raw_status(now_ns)),
            reg::MIS => u32::from(self.raw_status(now_ns)) & self.imsc,
            w => super::primecell::id_register(&IDS, w).unwrap_or(0),
        };
        super::primecell::read_part(v, offset, size)
    }

    /// A guest write of `size` bytes at `offset` at time `now_ns`. Writes to part of a
    /// register other than its low bytes, and to read-only registers, are ignored.
    pub fn write(&mut self, offset: u64, _size: u8, value: u64, now_ns: u64) {
        if offset & 3 != 0 {
            return;
        }
        self.settle(now_ns);
        let v = value as u32;
        match offset {
            reg::MR => {
                self.mr = v;
                self.arm(now_ns);
            }
            reg::LR => {
                self.lr = v;
                self.load_seconds = u64::from(v);
                self.load_ns = now_ns;
                self.arm(now_ns);
            }
            reg::IMSC => self.imsc = v & MATCH,
            reg::ICR if v & MATCH != 0 => self.latched = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const S: u64 = NS_PER_SECOND;

    #[test]
    fn the_counter_advances_with_time() {
        let mut r = Pl031::new(1_700_000_000, 5 * S);
        assert_eq!(r.read(reg::DR, 4, 5 * S), 1_700_000_000);
        assert_eq!(r.read(reg::DR, 4, 6 * S - 1), 1_700_000_000, "a whole second has not passed");
        assert_eq!(r.read(reg::DR, 4, 6 * S), 1_700_000_001);
        assert_eq!(r.read(reg::DR, 4, 5 * S + 90 * S + S / 2), 1_700_000_090);
        assert_eq!(r.read(reg::DR, 1, 6 * S), u64::from(1_700_000_001u32 & 0xff), "low byte");
        assert_eq!(r.read(reg::DR + 2, 2, 6 * S), u64::from(1_700_000_001u32 >> 16), "upper half");
        assert_eq!(r.read(reg::DR, 4, 0), 1_700_000_000, "time before the start: no panic, no change");
        r.write(reg::DR, 4, 7, 6 * S);
        assert_eq!(r.read(reg::DR, 4, 6 * S), 1_700_000_001, "DR is read-only");
    }

    #[test]
    fn dr_wraps_at_32_bits() {
        let r = Pl031::new(u64::from(u32::MAX), 0);
        assert_eq!(r.counter(S - 1), u32::MAX);
        assert_eq!(r.counter(S), 0);
        assert_eq!(r.counter(3 * S), 2);
        let r = Pl031::new(u64::MAX, 0);
        assert_eq!((r.counter(0), r.counter(S)), (u32::MAX, 0), "a base past 32 bits shows its low bits");
    }

    #[test]
    fn a_load_sets_the_counter_at_that_instant() {
        let mut r = Pl031::new(1000, 0);
        r.write(reg::LR, 4, 50, 10 * S + S / 2);
        assert_eq!(r.read(reg::LR, 4, 11 * S), 50);
        assert_eq!(r.read(reg::DR, 4, 10 * S + S / 2), 50);
        assert_eq!(r.read(reg::DR, 4, 11 * S + S / 2 - 1), 50);
        assert_eq!(r.read(reg::DR, 4, 11 * S + S / 2), 51);
        r.write(reg::LR, 4, 0xffff_ffff_0000_0007, 20 * S);
        assert_eq!(r.read(reg::DR, 4, 20 * S), 7, "32 bits are loaded");
    }

    #[test]
    fn the_match_interrupt_is_raised_masked_and_cleared() {
        let mut r = Pl031::new(1000, 0);
        r.write(reg::MR, 4, 1005, S / 2);
        assert_eq!(r.read(reg::MR, 4, S), 1005);
        assert!(!r.irq_level(4 * S), "masked and not yet matched");
        assert_eq!(r.next_match_ns(S), None, "masked: no timer needed");
        r.write(reg::IMSC, 4, 0xffff_ffff, S);
        assert_eq!(r.read(reg::IMSC, 4, S), 1);
        assert_eq!(r.next_match_ns(S), Some(5 * S));
        assert!(!r.irq_level(5 * S - 1));
        assert_eq!(r.read(reg::RIS, 4, 5 * S - 1), 0);
        assert!(r.irq_level(5 * S), "DR reached MR");
        assert_eq!(r.next_match_ns(5 * S), None, "already raised");
        assert_eq!((r.read(reg::RIS, 4, 6 * S), r.read(reg::MIS, 4, 6 * S)), (1, 1));
        assert!(r.irq_level(100 * S), "a level: it stays until cleared");
        // Masking hides it from MIS and the line, not from RIS.
        r.write(reg::IMSC, 4, 0, 7 * S);
        assert!(!r.irq_level(7 * S));
        assert_eq!((r.read(reg::RIS, 4, 7 * S), r.read(reg::MIS, 4, 7 * S)), (1, 0));
        r.write(reg::IMSC, 4, 1, 7 * S);
        assert!(r.irq_level(7 * S));
        // ICR clears it until the next match, a whole turn of the counter later.
        r.write(reg::ICR, 4, 1, 8 * S);
        assert!(!r.irq_level(8 * S));
        assert!(!r.irq_level(1_000_000 * S));
        assert_eq!(r.read(reg::ICR, 4, 8 * S), 0, "write-only");
        assert_eq!(r.next_match_ns(8 * S), Some(5 * S + TURN_NS));
        assert!(r.irq_level(5 * S + TURN_NS));
        // A new MR arms a new match.
        r.write(reg::ICR, 4, 1, 9 * S);
        r.write(reg::MR, 4, 1012, 9 * S);
        assert_eq!(r.next_match_ns(9 * S), Some(12 * S));
        // Loading the counter moves the match with it.
        r.write(reg::LR, 4, 1011, 10 * S + S / 4);
        assert_eq!(r.next_match_ns(10 * S + S / 4), Some(11 * S + S / 4));
        assert!(!r.irq_level(11 * S));
        assert!(r.irq_level(11 * S + S / 4));
    }

    #[test]
    fn mr_equal_to_the_counter_matches_at_once() {
        let mut r = Pl031::new(500, 0);
        r.write(reg::IMSC, 4, 1, 0);
        r.write(reg::MR, 4, 502, 2 * S + 7);
        assert!(r.irq_level(2 * S + 7), "as QEMU: equal when written is a match");
        r.write(reg::ICR, 4, 1, 3 * S);
        assert!(!r.irq_level(3 * S));
        // The same through LR.
        r.write(reg::LR, 4, 502, 4 * S);
        assert!(r.irq_level(4 * S));
        // An ICR of other bits clears nothing.
        r.write(reg::ICR, 4, 2, 4 * S);
        assert!(r.irq_level(4 * S));
    }

    #[test]
    fn ids_and_the_control_register_read_back() {
        let mut r = Pl031::new(0, 0);
        let ids: Vec<u64> = (0..8).map(|i| r.read(reg::ID_BASE + 4 * i, 4, 0)).collect();
        assert_eq!(ids, [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(r.read(reg::CR, 4, 0), 1, "started at reset");
        r.write(reg::CR, 4, 0, 0);
        assert_eq!(r.read(reg::CR, 4, 0), 1, "and cannot be stopped");
        assert_eq!(r.read(0x800, 4, 0), 0, "unknown offsets read as zero");
        assert_eq!(r.read(0x1000, 4, 0), 0, "past the window");
    }

    #[test]
    fn odd_accesses_and_extreme_times_never_panic() {
        let mut r = Pl031::new(u64::MAX, u64::MAX);
        assert_eq!(r.read(reg::DR, 4, u64::MAX), u64::from(u32::MAX));
        r.write(reg::MR, 4, 3, u64::MAX);
        assert_eq!(r.next_match_ns(u64::MAX), None, "beyond u64 nanoseconds: never");
        r.write(reg::LR, 4, 0, u64::MAX - 1);
        r.write(reg::MR, 4, u64::from(u32::MAX), 0);
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut step = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..100_000 {
            let (a, b, c) = (step(), step(), step());
            let offset = if a & 1 == 0 { (a >> 1) % 0x1010 } else { a };
            let size = (b >> 56) as u8 % 10;
            let now = match c % 3 {
                0 => c,
                1 => u64::MAX - (c >> 40),
                _ => c >> 20,
            };
            if b & 1 == 0 {
                r.read(offset, size, now);
            } else {
                r.write(offset, size, b, now);
            }
            r.irq_level(now);
            r.next_match_ns(now);
        }
        // A bounded behaviour check after the storm.
        r.write(reg::LR, 4, 100, 0);
        r.write(reg::ICR, 4, 1, 0);
        r.write(reg::MR, 4, 101, 0);
        assert_eq!(r.read(reg::DR, 4, 0), 100);
    }
}
