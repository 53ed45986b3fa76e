//! Capabilities as the kernel stores them, and the kernel's pure functions over them
//! (`sameRegionAs`, `sameObjectAs`, `isCapRevocable`, `maskCapRights`, `updateCapData`).
//!
//! Owns the cap value type only; slots, the derivation tree and objects live in `cspace` and
//! the object modules.

use sel4::object::FrameSize;
use sel4::{CapRights, PhysAddr, VirtAddr};

use sel4::generated::object_bits;

/// Access rights of a frame capability (`vm_rights_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum VmRights {
    /// No user access (`VMKernelOnly`).
    KernelOnly,
    /// Read only (`VMReadOnly`).
    ReadOnly,
    /// Read and write (`VMReadWrite`).
    ReadWrite,
}

impl VmRights {
    /// `maskVMRights`: what a mapping or a derived cap keeps of `self` under `mask`.
    pub fn mask(self, mask: CapRights) -> VmRights {
        match self {
            VmRights::ReadOnly if mask.read => VmRights::ReadOnly,
            VmRights::ReadWrite if mask.read => {
                if mask.write {
                    VmRights::ReadWrite
                } else {
                    VmRights::ReadOnly
                }
            }
            _ => VmRights::KernelOnly,
        }
    }
}

/// Where a frame or table capability says its object is mapped: `(asid, vaddr)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mapping {
    /// The ASID of the VSpace.
    pub asid: u16,
    /// The virtual address (for a table: the start of the region it translates).
    pub vaddr: VirtAddr,
}

/// A capability, with the fields the kernel keeps in it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ModelCap {
    /// Empty slot.
    Null,
    /// Untyped memory; `free_index` counts `2^MIN_UNTYPED_BITS`-byte units (`capFreeIndex`).
    Untyped {
        /// Base.
        paddr: PhysAddr,
        /// log2 size.
        size_bits: u32,
        /// The watermark, in units of `2^seL4_MinUntypedBits` bytes.
        free_index: u64,
        /// Device memory.
        device: bool,
    },
    /// An endpoint.
    Endpoint {
        /// Object.
        paddr: PhysAddr,
        /// Badge (0: unbadged).
        badge: u64,
        /// May send.
        send: bool,
        /// May receive.
        recv: bool,
        /// May grant.
        grant: bool,
        /// May grant reply.
        grant_reply: bool,
    },
    /// A notification.
    Notification {
        /// Object.
        paddr: PhysAddr,
        /// Badge (0: unbadged).
        badge: u64,
        /// May signal.
        send: bool,
        /// May wait.
        recv: bool,
    },
    /// A CNode with `2^radix` slots and a guard.
    CNode {
        /// Object.
        paddr: PhysAddr,
        /// log2 slots.
        radix: u32,
        /// Bits of guard.
        guard_size: u32,
        /// Guard value.
        guard: u64,
    },
    /// A thread.
    Tcb {
        /// Object.
        paddr: PhysAddr,
    },
    /// A CNode or TCB whose final cap is being deleted (the kernel's Zombie).
    Zombie {
        /// Object.
        paddr: PhysAddr,
        /// log2 size of the object.
        size_bits: u32,
    },
    /// The domain capability.
    Domain,
    /// The IRQ control capability.
    IrqControl,
    /// A handler for one IRQ.
    IrqHandler {
        /// IRQ number.
        irq: u64,
    },
    /// A frame.
    Frame {
        /// Base.
        paddr: PhysAddr,
        /// Size.
        size: FrameSize,
        /// Device memory.
        device: bool,
        /// Rights (`capFVMRights`).
        rights: VmRights,
        /// Where this cap mapped the frame.
        mapped: Option<Mapping>,
    },
    /// A translation table below the root.
    PageTable {
        /// Object.
        paddr: PhysAddr,
        /// Where this cap mapped the table.
        mapped: Option<Mapping>,
    },
    /// A VSpace root (a stage-2 table in hypervisor mode).
    VSpace {
        /// Object.
        paddr: PhysAddr,
        /// The ASID it was given (`capVSIsMapped` + `capVSMappedASID`).
        asid: Option<u16>,
    },
    /// The ASID control capability.
    AsidControl,
    /// An ASID pool.
    AsidPool {
        /// Object.
        paddr: PhysAddr,
        /// First ASID of the pool.
        asid_base: u16,
    },
    /// A virtual CPU.
    VCpu {
        /// Object.
        paddr: PhysAddr,
    },
}

impl ModelCap {
    /// Whether the slot is empty.
    pub fn is_null(&self) -> bool {
        matches!(self, ModelCap::Null)
    }

    /// The cap's physical region `(base, size_bits)`, for caps that name memory
    /// (`cap_get_capIsPhysical`).
    pub fn region(&self) -> Option<(u64, u32)> {
        Some(match *self {
            ModelCap::Untyped { paddr, size_bits, .. } => (paddr.0, size_bits),
            ModelCap::Endpoint { paddr, .. } => (paddr.0, object_bits::ENDPOINT),
            ModelCap::Notification { paddr, .. } => (paddr.0, object_bits::NOTIFICATION),
            ModelCap::CNode { paddr, radix, .. } => (paddr.0, radix + object_bits::SLOT),
            ModelCap::Tcb { paddr } => (paddr.0, object_bits::TCB),
            ModelCap::Zombie { paddr, size_bits } => (paddr.0, size_bits),
            ModelCap::Frame { paddr, size, .. } => (paddr.0, size.size_bits()),
            ModelCap::PageTable { paddr, .. } => (paddr.0, object_bits::PAGE_TABLE),
            ModelCap::VSpace { paddr, .. } => (paddr.0, object_bits::VSPACE),
            ModelCap::AsidPool { paddr, .. } => (paddr.0, object_bits::ASID_POOL),
            ModelCap::VCpu { paddr } => (paddr.0, object_bits::VCPU),
            ModelCap::Null
            | ModelCap::Domain
            | ModelCap::IrqControl
            | ModelCap::IrqHandler { .. }
            | ModelCap::AsidControl => return None,
        })
    }

    /// A short name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelCap::Null => "null",
            ModelCap::Untyped { .. } => "untyped",
            ModelCap::Endpoint { .. } => "endpoint",
            ModelCap::Notification { .. } => "notification",
            ModelCap::CNode { .. } => "CNode",
            ModelCap::Tcb { .. } => "TCB",
            ModelCap::Zombie { .. } => "zombie",
            ModelCap::Domain => "domain",
            ModelCap::IrqControl => "IRQ control",
            ModelCap::IrqHandler { .. } => "IRQ handler",
            ModelCap::Frame { .. } => "frame",
            ModelCap::PageTable { .. } => "page table",
            ModelCap::VSpace { .. } => "VSpace",
            ModelCap::AsidControl => "ASID control",
            ModelCap::AsidPool { .. } => "ASID pool",
            ModelCap::VCpu { .. } => "VCPU",
        }
    }

    /// `sameRegionAs(self, b)`.
    pub fn same_region_as(&self, b: &ModelCap) -> bool {
        match (self, b) {
            (ModelCap::Untyped { paddr, size_bits, .. }, _) => match b.region() {
                Some((b_base, b_bits)) => {
                    let a_base = paddr.0;
                    let a_top = a_base.wrapping_add(mask(*size_bits));
                    let b_top = b_base.wrapping_add(mask(b_bits));
                    a_base <= b_base && b_top <= a_top && b_base <= b_top
                }
                None => false,
            },
            (ModelCap::Endpoint { paddr: a, .. }, ModelCap::Endpoint { paddr: b, .. }) => a == b,
            (ModelCap::Notification { paddr: a, .. }, ModelCap::Notification { paddr: b, .. }) => a == b,
            (ModelCap::CNode { paddr: a, radix: ra, .. }, ModelCap::CNode { paddr: b, radix: rb, .. }) => {
                a == b && ra == rb
            }
            (ModelCap::Tcb { paddr: a }, ModelCap::Tcb { paddr: b }) => a == b,
            (ModelCap::Domain, ModelCap::Domain) => true,
            (ModelCap::IrqControl, ModelCap::IrqControl | ModelCap::IrqHandler { .. }) => true,
            (ModelCap::IrqHandler { irq: a }, ModelCap::IrqHandler { irq: b }) => a == b,
            (ModelCap::Frame { paddr: a, size: sa, .. }, ModelCap::Frame { paddr: b, size: sb, .. }) => {
                let (bot_a, bot_b) = (a.0, b.0);
                let top_a = bot_a + mask(sa.size_bits());
                let top_b = bot_b + mask(sb.size_bits());
                bot_a <= bot_b && top_a >= top_b && bot_b <= top_b
            }
            (ModelCap::PageTable { paddr: a, .. }, ModelCap::PageTable { paddr: b, .. }) => a == b,
            (ModelCap::VSpace { paddr: a, .. }, ModelCap::VSpace { paddr: b, .. }) => a == b,
            (ModelCap::AsidControl, ModelCap::AsidControl) => true,
            (ModelCap::AsidPool { paddr: a, .. }, ModelCap::AsidPool { paddr: b, .. }) => a == b,
            (ModelCap::VCpu { paddr: a }, ModelCap::VCpu { paddr: b }) => a == b,
            _ => false,
        }
    }

    /// `sameObjectAs(self, b)`.
    pub fn same_object_as(&self, b: &ModelCap) -> bool {
        match (self, b) {
            (ModelCap::Untyped { .. } | ModelCap::IrqControl, _) => false,
            (
                ModelCap::Frame { paddr: a, size: sa, device: da, .. },
                ModelCap::Frame { paddr: b, size: sb, device: db, .. },
            ) => a == b && sa == sb && da == db,
            _ => self.same_region_as(b),
        }
    }

    /// `isCapRevocable(self = derived, src)`.
    pub fn is_revocable(&self, src: &ModelCap) -> bool {
        match (self, src) {
            (ModelCap::Endpoint { badge: a, .. }, ModelCap::Endpoint { badge: b, .. }) => a != b,
            (ModelCap::Endpoint { badge, .. }, _) => *badge != 0,
            (ModelCap::Notification { badge: a, .. }, ModelCap::Notification { badge: b, .. }) => a != b,
            (ModelCap::Notification { badge, .. }, _) => *badge != 0,
            (ModelCap::IrqHandler { .. }, _) => matches!(src, ModelCap::IrqControl),
            (ModelCap::Untyped { .. }, _) => true,
            _ => false,
        }
    }

    /// `maskCapRights(rights, self)`.
    pub fn mask_rights(&self, r: CapRights) -> ModelCap {
        match *self {
            ModelCap::Endpoint { paddr, badge, send, recv, grant, grant_reply } => ModelCap::Endpoint {
                paddr,
                badge,
                send: send && r.write,
                recv: recv && r.read,
                grant: grant && r.grant,
                grant_reply: grant_reply && r.grant_reply,
            },
            ModelCap::Notification { paddr, badge, send, recv } => {
                ModelCap::Notification { paddr, badge, send: send && r.write, recv: recv && r.read }
            }
            ModelCap::Frame { paddr, size, device, rights, mapped } => {
                ModelCap::Frame { paddr, size, device, rights: rights.mask(r), mapped }
            }
            other => other,
        }
    }

    /// `updateCapData(preserve, data, self)`: the badge of an endpoint or notification, the
    /// guard of a CNode. `Null` when the kernel refuses.
    pub fn update_data(&self, preserve: bool, data: u64) -> ModelCap {
        match *self {
            ModelCap::Endpoint { badge, .. } | ModelCap::Notification { badge, .. } if preserve || badge != 0 => {
                ModelCap::Null
            }
            ModelCap::Endpoint { paddr, send, recv, grant, grant_reply, .. } => {
                ModelCap::Endpoint { paddr, badge: data, send, recv, grant, grant_reply }
            }
            ModelCap::Notification { paddr, send, recv, .. } => {
                ModelCap::Notification { paddr, badge: data, send, recv }
            }
            ModelCap::CNode { paddr, radix, .. } => {
                // seL4_CNode_CapData: guardSize in bits 0..6, guard in bits 6..64.
                let guard_size = (data & 0x3f) as u32;
                if guard_size + radix > 64 {
                    ModelCap::Null
                } else {
                    ModelCap::CNode { paddr, radix, guard_size, guard: (data >> 6) & mask(guard_size) }
                }
            }
            other => other,
        }
    }
}

/// `MASK(bits)`, saturating at 64.
pub(crate) fn mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}
