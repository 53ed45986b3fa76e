//! The table of emulated MMIO windows of one VM: which device answers which guest-physical
//! range. Overlapping windows are refused when registered, so a lookup has one answer.
//!
//! Owns the ranges only; the device state lives in [`crate::vm::VmState`].

use alloc::vec::Vec;
use core::fmt;

use vm_config::GuestRange;

/// Why a window cannot be registered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmioError {
    /// Size 0.
    Empty,
    /// The window wraps past the top of the address space.
    Wraps(GuestRange),
    /// It overlaps a window already registered.
    Overlaps {
        /// The new window.
        new: GuestRange,
        /// The registered one.
        existing: GuestRange,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmioError::Empty => f.write_str("MMIO window of size 0"),
            MmioError::Wraps(r) => write!(f, "MMIO window {r} wraps"),
            MmioError::Overlaps { new, existing } => write!(f, "MMIO window {new} overlaps {existing}"),
        }
    }
}

impl core::error::Error for MmioError {}

/// Sorted, non-overlapping windows, each with the device `T` that answers it.
#[derive(Clone, Debug)]
pub struct MmioMap<T> {
    windows: Vec<(GuestRange, T)>,
}

impl<T> Default for MmioMap<T> {
    fn default() -> Self {
        MmioMap { windows: Vec::new() }
    }
}

impl<T: Copy> MmioMap<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a window, unless it is empty, wraps, or overlaps one already there.
    pub fn register(&mut self, range: GuestRange, device: T) -> Result<(), MmioError> {
        if range.size_bytes == 0 {
            return Err(MmioError::Empty);
        }
        if range.end().is_none() {
            return Err(MmioError::Wraps(range));
        }
        if let Some((existing, _)) = self.windows.iter().find(|(r, _)| r.overlaps(&range)) {
            return Err(MmioError::Overlaps { new: range, existing: *existing });
        }
        let at = self.windows.partition_point(|(r, _)| r.base < range.base);
        self.windows.insert(at, (range, device));
        Ok(())
    }

    /// The device answering `addr` and the offset of `addr` in its window.
    pub fn lookup(&self, addr: u64) -> Option<(T, u64)> {
        // The last window starting at or below addr is the only candidate.
        let i = self.windows.partition_point(|(r, _)| r.base.0 <= addr);
        let (r, d) = self.windows.get(i.checked_sub(1)?)?;
        r.contains(addr).then(|| (*d, addr.wrapping_sub(r.base.0)))
    }

    /// The windows, by base address.
    pub fn windows(&self) -> impl Iterator<Item = (GuestRange, T)> + '_ {
        self.windows.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_window_and_offset() {
        let mut m = MmioMap::new();
        m.register(GuestRange::new(0x0900_0000, 0x1000), 'u').unwrap();
        m.register(GuestRange::new(0x0800_0000, 0x1_0000), 'g').unwrap();
        assert_eq!(m.lookup(0x0800_0000), Some(('g', 0)));
        assert_eq!(m.lookup(0x0800_ffff), Some(('g', 0xffff)));
        assert_eq!(m.lookup(0x0801_0000), None);
        assert_eq!(m.lookup(0x0900_0018), Some(('u', 0x18)));
        assert_eq!(m.lookup(0x0900_1000), None);
        assert_eq!(m.lookup(0), None);
        assert_eq!(m.lookup(u64::MAX), None);
        let bases: Vec<u64> = m.windows().map(|(r, _)| r.base.0).collect();
        assert_eq!(bases, [0x0800_0000, 0x0900_0000]);
    }

    #[test]
    fn overlapping_empty_and_wrapping_windows_are_refused() {
        let mut m = MmioMap::new();
        m.register(GuestRange::new(0x1000, 0x1000), 1).unwrap();
        assert_eq!(
            m.register(GuestRange::new(0x1fff, 2), 2),
            Err(MmioError::Overlaps { new: GuestRange::new(0x1fff, 2), existing: GuestRange::new(0x1000, 0x1000) })
        );
        assert!(matches!(m.register(GuestRange::new(0x0, 0x1001), 3), Err(MmioError::Overlaps { .. })));
        assert_eq!(m.register(GuestRange::new(0x5000, 0), 4), Err(MmioError::Empty));
        assert_eq!(m.register(GuestRange::new(u64::MAX, 2), 5), Err(MmioError::Wraps(GuestRange::new(u64::MAX, 2))));
        // Touching windows are fine, and the refused ones left nothing behind.
        m.register(GuestRange::new(0x2000, 0x1000), 6).unwrap();
        m.register(GuestRange::new(0x0, 0x1000), 7).unwrap();
        assert_eq!(m.windows().count(), 3);
        assert_eq!(m.lookup(0xfff), Some((7, 0xfff)));
        assert_eq!(m.lookup(0x2000), Some((6, 0)));
    }
}
