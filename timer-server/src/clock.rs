//! Counter ticks and nanoseconds: conversions that cannot overflow, a monotonic clock over a
//! counter that may wrap, and the compare value that arms a deadline.
//!
//! Owns the arithmetic only; never reads a counter (the caller passes raw readings, so
//! every case, wrap included, is tested on the host with made-up readings).
//!
//! # Why no 128-bit multiply
//! `ticks * 1e9 / hz` overflows 64 bits after 18 s at 1 GHz. Splitting `ticks` into whole
//! seconds and a remainder keeps every intermediate in 64 bits and the result exact:
//! `ns = (ticks / hz) * 1e9 + (ticks % hz) * 1e9 / hz`, where `ticks % hz < hz <= 2^32`, so
//! `(ticks % hz) * 1e9 < 2^62`. The first term overflows only after 584 years; it saturates.
//! The same split runs the other way for deadlines, rounded up so a timeout never fires early.
//! (`u128` would also be exact, but costs a library division call on AArch64.)
//!
//! # Counter width and wrap
//! The architecture guarantees a counter of at least 56 bits with a roll-over time of at
//! least 40 years, read zero-extended to 64 bits; QEMU's is 64 bits. [`Clock`] still extends
//! readings across a wrap (it needs one reading per wrap period, which is at least 40 years),
//! and [`Clock::compare_value`] never arms a compare value past the wrap: a deadline beyond it
//! is armed just before it and re-armed after.

use core::fmt;

/// Nanoseconds in a second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A counter frequency in Hz: 1 to `u32::MAX` (`CNTFRQ_EL0` is a 32-bit register).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frequency(u32);

impl Frequency {
    /// `hz`, if it is a frequency the counter can have.
    pub const fn new(hz: u64) -> Result<Self, ClockError> {
        if hz == 0 {
            Err(ClockError::ZeroFrequency)
        } else if hz > u32::MAX as u64 {
            Err(ClockError::FrequencyTooHigh { hz })
        } else {
            Ok(Frequency(hz as u32))
        }
    }

    /// The frequency in Hz.
    pub const fn hz(self) -> u64 {
        self.0 as u64
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

/// Why a clock cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The counter frequency reads 0 (firmware did not set `CNTFRQ_EL0`).
    ZeroFrequency,
    /// More than `CNTFRQ_EL0` can hold.
    FrequencyTooHigh {
        /// The frequency asked for.
        hz: u64,
    },
    /// A counter width outside 8..=64 bits.
    Width {
        /// The width asked for.
        bits: u32,
    },
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::ZeroFrequency => write!(f, "counter frequency is 0 (CNTFRQ_EL0 not set by firmware)"),
            ClockError::FrequencyTooHigh { hz } => write!(f, "counter frequency {hz} Hz does not fit CNTFRQ_EL0"),
            ClockError::Width { bits } => write!(f, "counter width {bits} bits is outside 8..=64"),
        }
    }
}

impl core::error::Error for ClockError {}

/// Nanoseconds in `ticks` ticks at `f`, rounded down; saturates at `u64::MAX` (584 years).
pub const fn ticks_to_ns(ticks: u64, f: Frequency) -> u64 {
    let hz = f.hz();
    let secs = ticks / hz;
    // `rem < hz <= 2^32` and `1e9 < 2^30`: the product stays below 2^62.
    let frac = (ticks % hz) * NANOS_PER_SEC / hz;
    match secs.checked_mul(NANOS_PER_SEC) {
        Some(s) => s.saturating_add(frac),
        None => u64::MAX,
    }
}

/// The fewest ticks at `f` that last at least `ns` nanoseconds (rounded up, so a deadline
/// converted to ticks is never early); saturates at `u64::MAX`.
pub const fn ns_to_ticks_ceil(ns: u64, f: Frequency) -> u64 {
    let hz = f.hz();
    let secs = ns / NANOS_PER_SEC;
    // `rem < 1e9 < 2^30` and `hz <= 2^32`: the product stays below 2^62.
    let frac = ((ns % NANOS_PER_SEC) * hz).div_ceil(NANOS_PER_SEC);
    match secs.checked_mul(hz) {
        Some(t) => t.saturating_add(frac),
        None => u64::MAX,
    }
}

/// A monotonic clock over raw counter readings: ticks and nanoseconds since `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    freq: Frequency,
    /// `2^width - 1`: readings are taken modulo `2^width`.
    mask: u64,
    /// The last reading, masked.
    last_raw: u64,
    /// Ticks from `base` to `last_raw`, across wraps.
    elapsed: u64,
}

impl Clock {
    /// A clock over a counter of `width_bits` (the architecture's minimum is 56; 8..=64 are
    /// accepted so tests can wrap quickly) at `freq`, counting from the reading `base_raw`.
    pub const fn new(freq: Frequency, width_bits: u32, base_raw: u64) -> Result<Self, ClockError> {
        if width_bits < 8 || width_bits > 64 {
            return Err(ClockError::Width { bits: width_bits });
        }
        let mask = if width_bits == 64 { u64::MAX } else { (1u64 << width_bits) - 1 };
        Ok(Clock { freq, mask, last_raw: base_raw & mask, elapsed: 0 })
    }

    /// The counter frequency.
    pub const fn frequency(&self) -> Frequency {
        self.freq
    }

    /// The largest raw reading (`2^width - 1`).
    pub const fn mask(&self) -> u64 {
        self.mask
    }

    /// Takes a new reading; returns the ticks since `base`. Readings must come in counter order
    /// and less than one wrap period apart (a reading that looks older counts as a wrap).
    pub fn observe(&mut self, raw: u64) -> u64 {
        let raw = raw & self.mask;
        let delta = raw.wrapping_sub(self.last_raw) & self.mask;
        self.elapsed = self.elapsed.saturating_add(delta);
        self.last_raw = raw;
        self.elapsed
    }

    /// Takes a new reading; returns the nanoseconds since `base`. Monotonic.
    pub fn now_ns(&mut self, raw: u64) -> u64 {
        let t = self.observe(raw);
        ticks_to_ns(t, self.freq)
    }

    /// Ticks since `base` at the last reading.
    pub const fn elapsed_ticks(&self) -> u64 {
        self.elapsed
    }

    /// Nanoseconds since `base` at the last reading.
    pub const fn elapsed_ns(&self) -> u64 {
        ticks_to_ns(self.elapsed, self.freq)
    }

    /// The compare value (`CNTV_CVAL`, in raw counter ticks, with `CNTVOFF = 0`) to arm for
    /// `deadline_ns` after the last reading, such that the timer fires no earlier than the
    /// deadline and does not miss it across a counter wrap:
    /// - a deadline already reached: the last reading (fires at once);
    /// - a deadline before the wrap: its exact tick (rounded up);
    /// - a deadline beyond the wrap: [`Clock::wrap_guard_ticks`] before the wrap, to be
    ///   re-armed from there; within that guard, the last reading (the caller polls across
    ///   the wrap, at most one guard period).
    pub fn compare_value(&self, deadline_ns: u64) -> u64 {
        let target = ns_to_ticks_ceil(deadline_ns, self.freq);
        if target <= self.elapsed {
            return self.last_raw;
        }
        let remaining = target - self.elapsed;
        let to_wrap = self.mask - self.last_raw;
        if remaining <= to_wrap {
            return self.last_raw + remaining;
        }
        let guard = self.wrap_guard_ticks();
        if to_wrap > guard { self.last_raw + (to_wrap - guard) } else { self.last_raw }
    }

    /// How long before a counter wrap a far deadline is re-armed: 1 ms of ticks, at least one.
    pub const fn wrap_guard_ticks(&self) -> u64 {
        let g = self.freq.hz() / 1000;
        if g == 0 { 1 } else { g }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD: [u64; 12] = [
        1,
        3,
        7,
        1000,
        32_768,
        19_200_000,
        24_000_000,
        54_000_000,
        62_500_000,
        1_000_000_000,
        4_000_000_007,
        u32::MAX as u64,
    ];

    fn hz(h: u64) -> Frequency {
        Frequency::new(h).unwrap()
    }

    /// Exact reference in 128 bits.
    fn ref_ticks_to_ns(t: u64, h: u64) -> u64 {
        let v = u128::from(t) * 1_000_000_000 / u128::from(h);
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    fn ref_ns_to_ticks_ceil(ns: u64, h: u64) -> u64 {
        let v = (u128::from(ns) * u128::from(h)).div_ceil(1_000_000_000);
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Mixed magnitudes: small, around powers of two, anywhere.
        fn value(&mut self) -> u64 {
            let r = self.next();
            match r % 4 {
                0 => r >> (r % 64),
                1 => (1u64 << (r % 64)).wrapping_add(r % 7).wrapping_sub(3),
                _ => r,
            }
        }
    }

    #[test]
    fn frequency_must_fit_cntfrq() {
        assert_eq!(Frequency::new(0), Err(ClockError::ZeroFrequency));
        assert_eq!(Frequency::new(1 << 32), Err(ClockError::FrequencyTooHigh { hz: 1 << 32 }));
        assert_eq!(Frequency::new(u32::MAX as u64).map(Frequency::hz), Ok(u32::MAX as u64));
    }

    #[test]
    fn conversions_are_exact_against_128_bit_arithmetic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for &h in &ODD {
            let f = hz(h);
            for t in [0, 1, h - 1, h, h + 1, u64::MAX / h, u64::MAX - 1, u64::MAX] {
                assert_eq!(ticks_to_ns(t, f), ref_ticks_to_ns(t, h), "ticks {t} at {h} Hz");
                assert_eq!(ns_to_ticks_ceil(t, f), ref_ns_to_ticks_ceil(t, h), "ns {t} at {h} Hz");
            }
            for _ in 0..20_000 {
                let v = rng.value();
                assert_eq!(ticks_to_ns(v, f), ref_ticks_to_ns(v, h), "ticks {v} at {h} Hz");
                assert_eq!(ns_to_ticks_ceil(v, f), ref_ns_to_ticks_ceil(v, h), "ns {v} at {h} Hz");
            }
        }
        for _ in 0..50_000 {
            let h = (rng.next() % u64::from(u32::MAX)) + 1;
            let v = rng.value();
            assert_eq!(ticks_to_ns(v, hz(h)), ref_ticks_to_ns(v, h), "ticks {v} at {h} Hz");
            assert_eq!(ns_to_ticks_ceil(v, hz(h)), ref_ns_to_ticks_ceil(v, h), "ns {v} at {h} Hz");
        }
    }

    #[test]
    fn ten_years_of_uptime_converts_exactly_at_any_frequency() {
        const TEN_YEARS_S: u64 = 10 * 365 * 86_400 + 3 * 86_400; // with leap days
        for &h in &ODD {
            let ticks = TEN_YEARS_S * h;
            assert_eq!(ticks_to_ns(ticks, hz(h)), TEN_YEARS_S * NANOS_PER_SEC, "{h} Hz");
            assert_eq!(ns_to_ticks_ceil(TEN_YEARS_S * NANOS_PER_SEC, hz(h)), ticks, "{h} Hz");
            // and a second later still converts without overflow
            assert_eq!(ticks_to_ns(ticks + h, hz(h)), (TEN_YEARS_S + 1) * NANOS_PER_SEC, "{h} Hz");
        }
    }

    #[test]
    fn a_deadline_in_ticks_is_never_early_and_never_a_tick_late() {
        let mut rng = Rng(42);
        for &h in &ODD {
            let f = hz(h);
            for _ in 0..20_000 {
                let ns = rng.next() >> (rng.next() % 40 + 1);
                let t = ns_to_ticks_ceil(ns, f);
                if t == u64::MAX {
                    continue; // saturated: beyond 584 years at this frequency
                }
                assert!(ticks_to_ns(t, f) >= ns, "{ns} ns -> {t} ticks at {h} Hz is early");
                if t > 0 {
                    assert!(ticks_to_ns(t - 1, f) < ns, "{ns} ns -> {t} ticks at {h} Hz is a tick late");
                }
            }
        }
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        assert_eq!(ticks_to_ns(u64::MAX, hz(1)), u64::MAX);
        assert_eq!(ns_to_ticks_ceil(u64::MAX, hz(u32::MAX as u64)), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX, hz(u32::MAX as u64)), ref_ticks_to_ns(u64::MAX, u32::MAX as u64));
    }

    #[test]
    fn clock_is_monotonic_over_increasing_readings() {
        let mut rng = Rng(7);
        for &h in &ODD {
            let mut c = Clock::new(hz(h), 64, 0).unwrap();
            let mut raw = 0u64;
            let mut last = 0;
            for _ in 0..10_000 {
                raw += rng.next() % (h * 3 + 1);
                let ns = c.now_ns(raw);
                assert!(ns >= last, "{h} Hz: {ns} after {last}");
                assert_eq!(ns, ref_ticks_to_ns(raw, h));
                last = ns;
            }
        }
    }

    #[test]
    fn clock_counts_across_a_64_bit_wrap() {
        let base = u64::MAX - 100;
        let mut c = Clock::new(hz(1_000_000_000), 64, base).unwrap();
        assert_eq!(c.observe(u64::MAX), 100);
        assert_eq!(c.observe(49), 150); // wrapped: 100 + 1 (to 0) + 49
        assert_eq!(c.now_ns(1049), 1150);
    }

    #[test]
    fn clock_counts_across_a_56_bit_wrap_and_ignores_bits_above_the_width() {
        let top = (1u64 << 56) - 1;
        let mut c = Clock::new(hz(62_500_000), 56, top - 9).unwrap();
        assert_eq!(c.observe(top), 9);
        assert_eq!(c.observe(5), 15);
        // A reading with bits above the width (never produced by hardware) is masked.
        assert_eq!(c.observe((1 << 60) | 6), 16);
        assert_eq!(c.elapsed_ns(), 16 * 16);
        assert_eq!(Clock::new(hz(1), 7, 0), Err(ClockError::Width { bits: 7 }));
        assert_eq!(Clock::new(hz(1), 65, 0), Err(ClockError::Width { bits: 65 }));
    }

    #[test]
    fn compare_value_is_the_deadline_tick_when_no_wrap_intervenes() {
        let f = hz(62_500_000); // 16 ns per tick
        let mut c = Clock::new(f, 64, 1000).unwrap();
        c.observe(1000 + 625_000); // 10 ms after base
        // 15 ms after base: 937_500 ticks after base.
        assert_eq!(c.compare_value(15_000_000), 1000 + 937_500);
        // 1 ns after a tick boundary rounds up to the next tick.
        assert_eq!(c.compare_value(15_000_001), 1000 + 937_501);
        // Already due: fire at once.
        assert_eq!(c.compare_value(10_000_000), 1000 + 625_000);
        assert_eq!(c.compare_value(0), 1000 + 625_000);
    }

    #[test]
    fn compare_value_stops_before_a_wrap_and_polls_across_it() {
        let f = hz(1_000_000); // guard: 1000 ticks
        let top = (1u64 << 16) - 1;
        let mut c = Clock::new(f, 16, 0).unwrap();
        assert_eq!(c.wrap_guard_ticks(), 1000);
        c.observe(top - 5000);
        let elapsed = c.elapsed_ticks();
        // Deadline 10_000 ticks away: beyond the wrap, armed 1000 ticks before it.
        let far = ticks_to_ns(elapsed + 10_000, f);
        assert_eq!(c.compare_value(far), top - 1000);
        // Deadline exactly at the last tick before the wrap: armed there.
        assert_eq!(c.compare_value(ticks_to_ns(elapsed + 5000, f)), top);
        // Inside the guard, a far deadline polls (arms at the current reading) ...
        c.observe(top - 500);
        assert_eq!(c.compare_value(far), top - 500);
        // ... and after the wrap it is armed at its tick again.
        c.observe(3);
        assert_eq!(c.elapsed_ticks(), elapsed + 5000 + 4);
        assert_eq!(c.compare_value(far), 3 + (10_000 - 5004));
    }

    #[test]
    fn wrap_guard_is_at_least_one_tick() {
        let c = Clock::new(hz(999), 64, 0).unwrap();
        assert_eq!(c.wrap_guard_ticks(), 1);
    }
}
