//! Guest-physical addresses and ranges.
//!
//! A guest-physical address (an IPA, the input of the guest's stage-2 translation) is not a
//! host physical address ([`sel4::PhysAddr`]); the two only coincide for identity-mapped
//! regions, and the type says which one a field holds.

use core::fmt;

/// A guest-physical address (IPA).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct GuestPhysAddr(pub u64);

impl GuestPhysAddr {
    /// The raw address.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `1 << size_bits`.
    pub const fn is_aligned(self, size_bits: u32) -> bool {
        size_bits < 64 && self.0 & ((1u64 << size_bits) - 1) == 0
    }

    /// `self + bytes`, or `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(GuestPhysAddr(v)),
            None => None,
        }
    }
}

impl fmt::Debug for GuestPhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for GuestPhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A half-open range `[base, base + size_bytes)` of guest-physical addresses.
///
/// A range whose end would overflow is representable (so that a bad configuration can be
/// reported rather than wrap); [`GuestRange::end`] says so with `None`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct GuestRange {
    /// First address.
    pub base: GuestPhysAddr,
    /// Length in bytes.
    pub size_bytes: u64,
}

impl GuestRange {
    /// The range `[base, base + size_bytes)`.
    pub const fn new(base: u64, size_bytes: u64) -> Self {
        GuestRange { base: GuestPhysAddr(base), size_bytes }
    }

    /// One past the last address, or `None` if that overflows 64 bits.
    pub const fn end(&self) -> Option<u64> {
        self.base.0.checked_add(self.size_bytes)
    }

    /// One past the last address, saturating (for ranges that end at 2^64).
    pub const fn end_saturating(&self) -> u64 {
        self.base.0.saturating_add(self.size_bytes)
    }

    /// Whether `addr` is inside the range.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base.0 && addr - self.base.0 < self.size_bytes
    }

    /// Whether the whole of `[addr, addr + len)` is inside the range (`len` 0 counts as a
    /// single address).
    pub const fn contains_span(&self, addr: u64, len: u64) -> bool {
        if !self.contains(addr) {
            return false;
        }
        let off = addr - self.base.0;
        len <= self.size_bytes - off
    }

    /// The last address of a non-empty range (saturating at 2^64 - 1), or `None` if empty.
    pub const fn last(&self) -> Option<u64> {
        if self.size_bytes == 0 { None } else { Some(self.base.0.saturating_add(self.size_bytes - 1)) }
    }

    /// Whether two non-empty ranges share an address.
    pub const fn overlaps(&self, other: &GuestRange) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => self.base.0 <= b_last && other.base.0 <= a_last,
            _ => false,
        }
    }
}

impl fmt::Display for GuestRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end() {
            Some(end) => write!(f, "[{:#x}, {:#x})", self.base.0, end),
            None => write!(f, "[{:#x}, 2^64 + {:#x})", self.base.0, self.end_saturating()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_only_when_they_share_an_address() {
        let a = GuestRange::new(0x1000, 0x1000);
        assert!(a.overlaps(&GuestRange::new(0x1fff, 1)));
        assert!(!a.overlaps(&GuestRange::new(0x2000, 0x1000)), "touching is not overlapping");
        assert!(!a.overlaps(&GuestRange::new(0, 0x1000)));
        assert!(!a.overlaps(&GuestRange::new(0x1800, 0)), "empty ranges overlap nothing");
        assert!(GuestRange::new(u64::MAX - 1, 2).overlaps(&GuestRange::new(u64::MAX, 1)));
    }

    #[test]
    fn contains_span_checks_both_ends_without_overflow() {
        let a = GuestRange::new(0x1000, 0x1000);
        assert!(a.contains_span(0x1ff8, 8));
        assert!(!a.contains_span(0x1ff8, 9));
        assert!(!a.contains_span(0xfff, 1));
        assert!(!a.contains_span(0x1ff8, u64::MAX));
        let top = GuestRange::new(u64::MAX - 0xfff, 0x1000);
        assert!(top.contains(u64::MAX));
        assert_eq!(top.end(), None);
        assert!(top.contains_span(u64::MAX, 1));
    }
}
