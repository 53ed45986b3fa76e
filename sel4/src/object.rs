//! Kernel object types and sizes, taken from the generated configuration (the numbering and
//! sizes move with the kernel configuration: MCS adds object types, hypervisor support adds
//! the VCPU, the physical address size changes the VSpace root).

use crate::generated::{object_bits, object_type};

/// What to create with `Untyped_Retype`: an object type and, for variable-sized objects, its
/// size.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ObjectBlueprint {
    /// Untyped memory of `2^size_bits` bytes.
    Untyped {
        /// log2 of the size in bytes.
        size_bits: u32,
    },
    /// A thread control block.
    Tcb,
    /// An endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// A CNode with `2^slot_bits` slots.
    CNode {
        /// log2 of the number of slots.
        slot_bits: u32,
    },
    /// A 4 KiB frame.
    SmallPage,
    /// A 2 MiB frame.
    LargePage,
    /// A 1 GiB frame.
    HugePage,
    /// A translation table (levels 1 to 3).
    PageTable,
    /// A VSpace root.
    VSpace,
    /// A virtual CPU.
    VCpu,
}

impl ObjectBlueprint {
    /// The kernel's object type number for this configuration.
    pub const fn object_type(self) -> u64 {
        match self {
            ObjectBlueprint::Untyped { .. } => object_type::UNTYPED,
            ObjectBlueprint::Tcb => object_type::TCB,
            ObjectBlueprint::Endpoint => object_type::ENDPOINT,
            ObjectBlueprint::Notification => object_type::NOTIFICATION,
            ObjectBlueprint::CNode { .. } => object_type::CAP_TABLE,
            ObjectBlueprint::SmallPage => object_type::SMALL_PAGE,
            ObjectBlueprint::LargePage => object_type::LARGE_PAGE,
            ObjectBlueprint::HugePage => object_type::HUGE_PAGE,
            ObjectBlueprint::PageTable => object_type::PAGE_TABLE,
            ObjectBlueprint::VSpace => object_type::VSPACE,
            ObjectBlueprint::VCpu => object_type::VCPU,
        }
    }

    /// The `size_bits` argument of `Untyped_Retype`: the size for untyped, log2 slots for a
    /// CNode, and 0 for fixed-size objects.
    pub const fn api_size_bits(self) -> u64 {
        match self {
            ObjectBlueprint::Untyped { size_bits } => size_bits as u64,
            ObjectBlueprint::CNode { slot_bits } => slot_bits as u64,
            _ => 0,
        }
    }

    /// log2 of the number of bytes of memory the object takes.
    pub const fn physical_size_bits(self) -> u32 {
        match self {
            ObjectBlueprint::Untyped { size_bits } => size_bits,
            ObjectBlueprint::Tcb => object_bits::TCB,
            ObjectBlueprint::Endpoint => object_bits::ENDPOINT,
            ObjectBlueprint::Notification => object_bits::NOTIFICATION,
            ObjectBlueprint::CNode { slot_bits } => slot_bits + object_bits::SLOT,
            ObjectBlueprint::SmallPage => object_bits::PAGE,
            ObjectBlueprint::LargePage => object_bits::LARGE_PAGE,
            ObjectBlueprint::HugePage => object_bits::HUGE_PAGE,
            ObjectBlueprint::PageTable => object_bits::PAGE_TABLE,
            ObjectBlueprint::VSpace => object_bits::VSPACE,
            ObjectBlueprint::VCpu => object_bits::VCPU,
        }
    }

    /// Whether this is a frame, the only kind (besides untyped) a device untyped can hold.
    pub const fn is_frame(self) -> bool {
        matches!(self, ObjectBlueprint::SmallPage | ObjectBlueprint::LargePage | ObjectBlueprint::HugePage)
    }

    /// The blueprint for a kernel object type number and `size_bits` argument, as the kernel
    /// decodes an `Untyped_Retype` (used by the model). `None` for unknown types.
    pub const fn from_type(object_type: u64, size_bits: u64) -> Option<Self> {
        // size_bits beyond u32 is caught by the caller's range check; clamp so the cast is exact.
        let sb = if size_bits > u32::MAX as u64 { u32::MAX } else { size_bits as u32 };
        Some(match object_type {
            object_type::UNTYPED => ObjectBlueprint::Untyped { size_bits: sb },
            object_type::TCB => ObjectBlueprint::Tcb,
            object_type::ENDPOINT => ObjectBlueprint::Endpoint,
            object_type::NOTIFICATION => ObjectBlueprint::Notification,
            object_type::CAP_TABLE => ObjectBlueprint::CNode { slot_bits: sb },
            object_type::SMALL_PAGE => ObjectBlueprint::SmallPage,
            object_type::LARGE_PAGE => ObjectBlueprint::LargePage,
            object_type::HUGE_PAGE => ObjectBlueprint::HugePage,
            object_type::PAGE_TABLE => ObjectBlueprint::PageTable,
            object_type::VSPACE => ObjectBlueprint::VSpace,
            object_type::VCPU => ObjectBlueprint::VCpu,
            _ => return None,
        })
    }
}

/// The three AArch64 frame sizes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum FrameSize {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Large,
    /// 1 GiB.
    Huge,
}

impl FrameSize {
    /// Largest first, the order in which a region is tiled.
    pub const LARGEST_FIRST: [FrameSize; 3] = [FrameSize::Huge, FrameSize::Large, FrameSize::Small];

    /// log2 of the size in bytes.
    pub const fn size_bits(self) -> u32 {
        match self {
            FrameSize::Small => object_bits::PAGE,
            FrameSize::Large => object_bits::LARGE_PAGE,
            FrameSize::Huge => object_bits::HUGE_PAGE,
        }
    }

    /// Size in bytes.
    pub const fn size_bytes(self) -> u64 {
        1 << self.size_bits()
    }

    /// The object to retype for a frame of this size.
    pub const fn blueprint(self) -> ObjectBlueprint {
        match self {
            FrameSize::Small => ObjectBlueprint::SmallPage,
            FrameSize::Large => ObjectBlueprint::LargePage,
            FrameSize::Huge => ObjectBlueprint::HugePage,
        }
    }

    /// The frame size of a blueprint, if it is a frame.
    pub const fn of_blueprint(b: ObjectBlueprint) -> Option<FrameSize> {
        match b {
            ObjectBlueprint::SmallPage => Some(FrameSize::Small),
            ObjectBlueprint::LargePage => Some(FrameSize::Large),
            ObjectBlueprint::HugePage => Some(FrameSize::Huge),
            _ => None,
        }
    }
}

/// Smallest untyped the kernel accepts (`seL4_MinUntypedBits`).
pub const MIN_UNTYPED_BITS: u32 = object_bits::MIN_UNTYPED;
/// Largest untyped the kernel accepts (`seL4_MaxUntypedBits`).
pub const MAX_UNTYPED_BITS: u32 = object_bits::MAX_UNTYPED;
/// log2 of the bytes a capability slot takes (`seL4_SlotBits`).
pub const SLOT_BITS: u32 = object_bits::SLOT;
/// log2 of the 4 KiB page size (`seL4_PageBits`).
pub const PAGE_BITS: u32 = object_bits::PAGE;
/// Index bits of one translation table level (`seL4_PageTableIndexBits`).
pub const PAGE_TABLE_INDEX_BITS: u32 = object_bits::PAGE_TABLE_INDEX;
/// Index bits of the VSpace root (`seL4_VSpaceIndexBits`).
pub const VSPACE_INDEX_BITS: u32 = object_bits::VSPACE_INDEX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blueprints_round_trip_through_type_numbers() {
        let all = [
            ObjectBlueprint::Untyped { size_bits: 20 },
            ObjectBlueprint::Tcb,
            ObjectBlueprint::Endpoint,
            ObjectBlueprint::Notification,
            ObjectBlueprint::CNode { slot_bits: 8 },
            ObjectBlueprint::SmallPage,
            ObjectBlueprint::LargePage,
            ObjectBlueprint::HugePage,
            ObjectBlueprint::PageTable,
            ObjectBlueprint::VSpace,
            ObjectBlueprint::VCpu,
        ];
        for b in all {
            assert_eq!(ObjectBlueprint::from_type(b.object_type(), b.api_size_bits()), Some(b));
        }
        // All type numbers distinct.
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.object_type(), b.object_type(), "{a:?} and {b:?}");
            }
        }
        assert_eq!(ObjectBlueprint::CNode { slot_bits: 8 }.physical_size_bits(), 8 + SLOT_BITS);
    }

    #[test]
    fn frame_sizes_are_ordered() {
        assert!(FrameSize::Small.size_bits() < FrameSize::Large.size_bits());
        assert!(FrameSize::Large.size_bits() < FrameSize::Huge.size_bits());
        for f in FrameSize::LARGEST_FIRST {
            assert_eq!(FrameSize::of_blueprint(f.blueprint()), Some(f));
        }
    }
}
