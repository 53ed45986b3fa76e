//! Address newtypes. A physical address, an address inside some VSpace, and a capability
//! slot are different things and never mix silently.

use core::fmt;

macro_rules! addr_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
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
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - bytes`, or `None` below 0.
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// The address `bytes` after this one, for sums the caller has bounded; an
            /// overflow is a bug (it panics in debug builds, as `+` does).
            pub const fn offset(self, bytes: u64) -> Self {
                Self(self.0 + bytes)
            }
            /// Bytes from `base` up to this address; `base` above it is a bug (it panics in
            /// debug builds, as `-` does).
            pub const fn offset_from(self, base: Self) -> u64 {
                self.0 - base.0
            }
            /// Bytes from `base` up to this address, or `None` when `base` lies above it.
            pub const fn checked_offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            /// Rounded down to a multiple of `1 << size_bits` (0 when `size_bits >= 64`).
            pub const fn align_down(self, size_bits: u32) -> Self {
                match u64::MAX.checked_shl(size_bits) {
                    Some(mask) => Self(self.0 & mask),
                    None => Self(0),
                }
            }
            /// Rounded up to a multiple of `1 << size_bits`, or `None` when that does not fit.
            pub const fn checked_align_up(self, size_bits: u32) -> Option<Self> {
                if size_bits >= 64 {
                    return if self.0 == 0 { Some(self) } else { None };
                }
                match self.0.checked_add((1u64 << size_bits) - 1) {
                    Some(v) => Some(Self(v).align_down(size_bits)),
                    None => None,
                }
            }
            /// log2 of the largest power of two the address is a multiple of (64 for 0).
            pub const fn alignment_bits(self) -> u32 {
                self.0.trailing_zeros()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        /// `{:x}` and `{:#x}` print the address as its number does.
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

addr_type!(
    /// A physical address, as the kernel reports it for untyped memory and frames.
    PhysAddr
);
addr_type!(
    /// An address inside a VSpace: a root-task virtual address, or a guest-physical
    /// address (IPA) when the VSpace is a guest's stage-2 translation.
    VirtAddr
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_alignment() {
        let p = PhysAddr(0x6800_3000);
        assert_eq!(p.offset(0x1000), PhysAddr(0x6800_4000));
        assert_eq!(p.offset_from(PhysAddr(0x6800_0000)), 0x3000);
        assert_eq!(p.checked_offset_from(PhysAddr(0x6800_4000)), None);
        assert_eq!(PhysAddr(u64::MAX).checked_add(1), None);
        assert_eq!((p.checked_sub(0x3000), p.checked_sub(0x6800_3001)), (Some(PhysAddr(0x6800_0000)), None));
        assert_eq!(p.align_down(14), PhysAddr(0x6800_0000));
        assert_eq!(p.align_down(12), p);
        assert_eq!(p.align_down(64), PhysAddr(0));
        assert_eq!(p.checked_align_up(14), Some(PhysAddr(0x6800_4000)));
        assert_eq!(p.checked_align_up(12), Some(p));
        assert_eq!(PhysAddr(u64::MAX - 0xfff).checked_align_up(13), None);
        assert_eq!(PhysAddr(1).checked_align_up(64), None);
        assert_eq!(PhysAddr(0).checked_align_up(64), Some(PhysAddr(0)));
        assert_eq!((p.alignment_bits(), PhysAddr(0).alignment_bits()), (12, 64));
        assert!(p.is_aligned(12) && !p.is_aligned(13));
    }

    #[test]
    fn hex_formats_the_number() {
        extern crate std;
        let v = VirtAddr(0x80_0000_1000);
        assert_eq!(
            std::format!("{v:#x} {v:x} {v} {v:?}"),
            "0x8000001000 8000001000 0x8000001000 VirtAddr(0x8000001000)"
        );
    }
}
