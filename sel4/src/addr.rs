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
