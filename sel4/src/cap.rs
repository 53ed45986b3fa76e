//! Typed capabilities.
//!
//! A [`CPtr`] names a capability in a CSpace. capvisor's root task has a single-level CSpace
//! (the root CNode, `ROOT_CNODE_SIZE_BITS` slots, guard making up the rest of the 64 bits), so
//! a slot index of the root CNode and the CPtr that resolves to it are the same number.
//! [`Cap<T>`] carries the object type in the type system so that, for example, a frame
//! cannot be passed where an untyped is expected; capability arithmetic on plain integers is
//! not offered: a slot `n` places on is [`Slot::offset`], the `k`-th of a region
//! [`SlotRegion::nth`].

use core::fmt;
use core::marker::PhantomData;

/// A capability pointer: the address of a capability in a CSpace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct CPtr(u64);

impl CPtr {
    /// The null capability pointer (slot 0 is `seL4_CapNull`).
    pub const NULL: CPtr = CPtr(0);

    /// A capability pointer from its bits.
    pub const fn from_bits(bits: u64) -> Self {
        CPtr(bits)
    }

    /// The raw bits, as passed to the kernel.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Views this pointer as a capability of type `T`. The kernel checks the type on every
    /// invocation; this only documents what the caller believes is there.
    pub const fn cast<T: CapType>(self) -> Cap<T> {
        Cap { cptr: self, _type: PhantomData }
    }
}

impl fmt::Debug for CPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPtr({})", self.0)
    }
}

/// A slot of the root task's root CNode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Slot(u64);

impl Slot {
    /// The slot with this index.
    pub const fn new(index: u64) -> Self {
        Slot(index)
    }

    /// The slot index.
    pub const fn index(self) -> u64 {
        self.0
    }

    /// The CPtr that resolves to this slot in the root task's single-level CSpace.
    pub const fn cptr(self) -> CPtr {
        CPtr(self.0)
    }

    /// This slot viewed as holding a capability of type `T`.
    pub const fn cap<T: CapType>(self) -> Cap<T> {
        self.cptr().cast()
    }

    /// The slot `n` places after this one, or `None` on overflow.
    pub const fn checked_add(self, n: u64) -> Option<Slot> {
        match self.0.checked_add(n) {
            Some(v) => Some(Slot(v)),
            None => None,
        }
    }

    /// The slot `n` places after this one, for a window the caller knows holds it (e.g. the
    /// `n`-th capability an `Untyped_Retype` wrote from this slot on); an overflow is a bug
    /// (it panics in debug builds, as `+` does).
    pub const fn offset(self, n: u64) -> Slot {
        Slot(self.0 + n)
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.0)
    }
}

/// A half-open range of root CNode slots, `[start, end)`, as bootinfo reports them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SlotRegion {
    /// First slot.
    pub start: Slot,
    /// One past the last slot.
    pub end: Slot,
}

impl SlotRegion {
    /// Number of slots in the region.
    pub const fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether the region has no slots.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `slot` lies in the region.
    pub const fn contains(&self, slot: Slot) -> bool {
        self.start.0 <= slot.0 && slot.0 < self.end.0
    }

    /// The `len` slots from `start`, or `None` when the end overflows.
    pub const fn with_len(start: Slot, len: u64) -> Option<SlotRegion> {
        match start.checked_add(len) {
            Some(end) => Some(SlotRegion { start, end }),
            None => None,
        }
    }

    /// The slot `k` places from the start, or `None` past the end.
    pub const fn nth(&self, k: u64) -> Option<Slot> {
        if k < self.len() { Some(Slot(self.start.0 + k)) } else { None }
    }

    /// The first `n` slots and the rest (`n` past the end: all of them, and none).
    pub const fn split_at(&self, n: u64) -> (SlotRegion, SlotRegion) {
        let n = if n < self.len() { n } else { self.len() };
        let cut = Slot(self.start.0 + n);
        (SlotRegion { start: self.start, end: cut }, SlotRegion { start: cut, end: self.end })
    }

    /// Its slots, in order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + use<> {
        (self.start.0..self.end.0.max(self.start.0)).map(Slot)
    }
}

/// A capability whose object type is `T`.
pub struct Cap<T: CapType> {
    cptr: CPtr,
    _type: PhantomData<T>,
}

impl<T: CapType> Cap<T> {
    /// The capability at `cptr`.
    pub const fn from_cptr(cptr: CPtr) -> Self {
        cptr.cast()
    }

    /// Its capability pointer.
    pub const fn cptr(self) -> CPtr {
        self.cptr
    }

    /// The root CNode slot this capability lives in (root task CSpace only).
    pub const fn slot(self) -> Slot {
        Slot(self.cptr.0)
    }

    /// Forgets the object type.
    pub const fn upcast(self) -> Cap<cap_type::Unspecified> {
        self.cptr.cast()
    }
}

impl<T: CapType> Clone for Cap<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: CapType> Copy for Cap<T> {}
impl<T: CapType> PartialEq for Cap<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cptr == other.cptr
    }
}
impl<T: CapType> Eq for Cap<T> {}

impl<T: CapType> fmt::Debug for Cap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap<{}>({})", T::NAME, self.cptr.0)
    }
}

/// A marker type naming a kind of kernel object.
pub trait CapType: Copy + 'static {
    /// The name used in messages.
    const NAME: &'static str;
}

/// Marker types for every capability kind capvisor uses.
pub mod cap_type {
    use super::CapType;

    macro_rules! cap_types {
        ($($(#[$m:meta])* $name:ident,)*) => {
            $(
                $(#[$m])*
                #[derive(Clone, Copy, Debug, PartialEq, Eq)]
                pub struct $name;
                impl CapType for $name {
                    const NAME: &'static str = stringify!($name);
                }
            )*
        };
    }

    cap_types! {
        /// Any capability; the type is not known statically.
        Unspecified,
        /// The null capability.
        Null,
        /// Untyped memory.
        Untyped,
        /// A CNode.
        CNode,
        /// A thread control block.
        Tcb,
        /// An AArch64 virtual CPU (hypervisor builds).
        VCpu,
        /// An IPC endpoint.
        Endpoint,
        /// A notification object.
        Notification,
        /// A frame of any size (4 KiB, 2 MiB or 1 GiB); page invocations take all three.
        Frame,
        /// A 4 KiB frame.
        Granule,
        /// A 2 MiB frame.
        LargePage,
        /// A 1 GiB frame.
        HugePage,
        /// A translation table below the VSpace root (levels 1 to 3).
        PageTable,
        /// The root of a VSpace (level 0 table; a guest's stage-2 root in hypervisor builds).
        VSpace,
        /// The ASID control capability.
        AsidControl,
        /// An ASID pool.
        AsidPool,
        /// The IRQ control capability.
        IrqControl,
        /// An IRQ handler.
        IrqHandler,
    }
}

/// Access rights carried by a capability (`seL4_CapRights`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CapRights {
    /// May write.
    pub write: bool,
    /// May read.
    pub read: bool,
    /// May grant capabilities over IPC.
    pub grant: bool,
    /// May grant reply capabilities.
    pub grant_reply: bool,
}

impl CapRights {
    /// All rights.
    pub const ALL: CapRights = CapRights { write: true, read: true, grant: true, grant_reply: true };
    /// Read and write.
    pub const READ_WRITE: CapRights = CapRights { write: true, read: true, grant: false, grant_reply: false };
    /// Read only.
    pub const READ_ONLY: CapRights = CapRights { write: false, read: true, grant: false, grant_reply: false };
    /// Write only (a badged send-only endpoint).
    pub const WRITE_ONLY: CapRights = CapRights { write: true, read: false, grant: false, grant_reply: false };
    /// No rights.
    pub const NONE: CapRights = CapRights { write: false, read: false, grant: false, grant_reply: false };

    /// The word the kernel expects: bit 0 write, 1 read, 2 grant, 3 grant-reply.
    pub const fn to_word(self) -> u64 {
        (self.write as u64) | (self.read as u64) << 1 | (self.grant as u64) << 2 | (self.grant_reply as u64) << 3
    }

    /// Decodes the kernel's rights word; bits above 3 are ignored as the kernel does.
    pub const fn from_word(w: u64) -> Self {
        CapRights { write: w & 1 != 0, read: w & 2 != 0, grant: w & 4 != 0, grant_reply: w & 8 != 0 }
    }

    /// The rights in both `self` and `other` (what a derived capability keeps).
    pub const fn intersect(self, other: CapRights) -> CapRights {
        CapRights::from_word(self.to_word() & other.to_word())
    }
}

/// Memory attributes of a mapping (`seL4_ARM_VMAttributes`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VmAttributes(u64);

impl VmAttributes {
    /// No attributes: uncached (device memory) and executable.
    pub const NONE: VmAttributes = VmAttributes(0);
    /// Page cacheable (`seL4_ARM_PageCacheable`).
    pub const PAGE_CACHEABLE: VmAttributes = VmAttributes(1);
    /// Parity enabled (`seL4_ARM_ParityEnabled`, ignored on AArch64).
    pub const PARITY_ENABLED: VmAttributes = VmAttributes(2);
    /// Execute never (`seL4_ARM_ExecuteNever`).
    pub const EXECUTE_NEVER: VmAttributes = VmAttributes(4);
    /// The kernel's default: cacheable (`seL4_ARM_Default_VMAttributes`).
    pub const DEFAULT: VmAttributes = VmAttributes(1);

    /// The word the kernel expects.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Attributes from the kernel word.
    pub const fn from_bits(bits: u64) -> Self {
        VmAttributes(bits)
    }
    /// Both sets of attributes.
    pub const fn union(self, other: VmAttributes) -> Self {
        VmAttributes(self.0 | other.0)
    }
    /// Whether all of `other` is set.
    pub const fn contains(self, other: VmAttributes) -> bool {
        self.0 & other.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_word_round_trips() {
        for w in 0..16 {
            assert_eq!(CapRights::from_word(w).to_word(), w);
        }
        assert_eq!(CapRights::ALL.intersect(CapRights::READ_ONLY), CapRights::READ_ONLY);
    }

    #[test]
    fn slot_region_counts() {
        let r = SlotRegion { start: Slot::new(150), end: Slot::new(65536) };
        assert_eq!(r.len(), 65386);
        assert!(r.contains(Slot::new(150)));
        assert!(!r.contains(Slot::new(65536)));
    }

    #[test]
    fn slots_by_position() {
        let r = SlotRegion::with_len(Slot::new(150), 3).unwrap();
        assert_eq!(r, SlotRegion { start: Slot::new(150), end: Slot::new(153) });
        assert_eq!((r.nth(0), r.nth(2), r.nth(3)), (Some(Slot::new(150)), Some(Slot::new(152)), None));
        assert!(r.iter().eq([150, 151, 152].map(Slot::new)));
        assert_eq!(Slot::new(150).offset(2), Slot::new(152));
        assert_eq!(SlotRegion::with_len(Slot::new(u64::MAX), 1), None);
        let (head, tail) = r.split_at(1);
        assert_eq!((head.start, head.end, tail.start, tail.end), (r.start, Slot::new(151), Slot::new(151), r.end));
        assert_eq!(r.split_at(9), (r, SlotRegion { start: r.end, end: r.end }));
        // A region whose end lies before its start is empty, whatever the two say.
        let backwards = SlotRegion { start: Slot::new(10), end: Slot::new(5) };
        assert_eq!((backwards.nth(0), backwards.iter().count()), (None, 0));
    }
}
