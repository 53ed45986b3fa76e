//! The untyped pool: kernel objects at exact physical addresses, out of the untyped
//! capabilities the root task was given, and back.
//!
//! # What it owns
//! The untyped capabilities it was handed (the *roots*), every untyped it splits off them
//! (the *nodes*), the objects it retypes into nodes (frames, page tables, other kernel
//! objects) and the root CNode slots it was given to hold them. It must never touch a
//! capability outside that slot region, and never retype from an untyped it was not given.
//!
//! # Design: a tree of untyped nodes; every allocation gets nodes of its own
//! seL4's rule for where `Untyped_Retype` places objects is a watermark: objects go at the
//! untyped's free index aligned up to the object size; the index only moves up while the
//! untyped has children; it goes back to 0 only when the untyped has no children at all at
//! the next retype. So memory retyped directly from an untyped can be reused only once
//! *everything* else retyped from it is gone. Two consequences drive the design:
//!
//! 1. **Allocations never share an untyped.** The frames (or objects) of an allocation are
//!    retyped only from untyped nodes that cover exactly a piece of the allocation and hold
//!    nothing else (*wrappers*). A range that is exactly a free node (a whole boot untyped, a
//!    free padding child) is its own wrapper; otherwise the wrappers are new child untypeds,
//!    the maximal aligned blocks of the range ([`crate::plan::blocks`]).
//! 2. **Padding is reusable.** To reach an address inside an untyped, its watermark is
//!    brought there with *child untypeds* that exactly tile the gap ([`crate::plan::pad_runs`]:
//!    aligned objects, so the kernel's align-up skips nothing, counted so that one retype
//!    covers an 8-bit window of the offset). Those children are free nodes: a later
//!    allocation below an earlier one lands in them. So allocations can be made in any order:
//!    A at a high address, then B lower in the same untyped (in A's padding), then C between.
//!
//! Every node is *fresh* (no children, nothing retyped), *split* (its children exactly tile
//! `[start, watermark)`, the rest is untouched) or *holds* one allocation's objects.
//! Placing `[s, t)` in a node: a fresh node equal to the piece is filled directly; otherwise
//! the parts below the watermark go down into the children that cover them, and the part
//! above is reached with padding children and wrapped in new child untypeds. Padding and
//! wrappers of equal size share one retype call.
//!
//! **Freeing** revokes, for each wrapper, the highest node under which nothing else is
//! allocated: one `CNode_Revoke` deletes the frames (and every copy of them, e.g. a guest's
//! mapping copy, which unmaps it), and with them any padding no other allocation needs; the
//! revoked node has no children, so the kernel starts it at 0 again and the same range can
//! be allocated at once. Hence the invariant [`UntypedPool::check`] tests: every split node
//! has a live allocation below it, and the tree (and the slots it holds) is bounded by the
//! live allocations.
//!
//! # Placement and clearing
//! seL4 clears untyped memory when it *resets* an untyped, at a retype into one with no
//! children, up to the untyped's free index; boot untypeds come with the index at their end,
//! so the first retype into one clears all of it (2^`RESET_CHUNK_BITS` bytes at a time, a
//! preemption check between chunks). Each node keeps the kernel's free index, so
//! [`UntypedPool::clearing_cost`] says what an allocation will make the kernel clear (the
//! model tests check it to the byte). Callers that name no address choose: [`UntypedPool::find_free`]
//! (the highest free range: the HAL's own small allocations, out of the way of the fixed
//! addresses configurations name) or [`UntypedPool::find_least_clearing`] (guest RAM that may
//! go anywhere: the range that costs least to clear, e.g. one boot untyped of exactly its
//! size instead of the top of RAM across several).
//!
//! # Invocation cost
//! Alloc: one `Untyped_Retype` per run of equal-size child untypeds (padding and wrappers
//! merged), plus one per wrapper per 256 frames (the fan-out limit). Against the lower bound
//! of [`crate::plan::lower_bound_piece`] (fresh untyped, padding plus fewest frames), an
//! aligned range in a fresh untyped costs exactly the bound when its wrapper fits in the last
//! padding call or the range is a whole untyped, and one call more otherwise (at the start of
//! an untyped, where there is no padding to merge the wrapper into: the price of freeing it
//! on its own). A range whose ends are not both aligned to large powers of two needs one
//! wrapper per maximal aligned block, each with its own frame retype. Free: one
//! `CNode_Revoke` per wrapper at most (one per maximal free subtree). No other kernel call;
//! slot bookkeeping is local.
//!
//! # Limits
//! - Slots: each padding call takes one slot per child (at most 255). Padding lives as long
//!   as an allocation below its parent does.
//! - Fragmentation: a later allocation over many padding children of a node that cannot be
//!   revoked (another allocation lives in it) needs one frame retype per child. E.g. 4 KiB at
//!   offset 4 KiB of a fresh 128 MiB untyped, then 16 MiB at offset 64 MiB: the padding
//!   between is 255 children of 8 KiB and 31 of 2 MiB; with the 4 KiB one freed, 64 MiB at
//!   the untyped's start over them takes 288 retypes (the bound is 2). Small allocations at
//!   the end of an untyped, or in an untyped of their own, avoid it; the config checker is
//!   the place to warn.
//! - All or nothing: every check (shape, overlap, coverage, kind, slots) is made before the
//!   first kernel call. If a kernel call still fails (the kernel disagrees with this
//!   bookkeeping, which is a bug), frames made so far are revoked, untypeds that were fresh
//!   before the call are revoked back to fresh, and child untypeds added to nodes that were
//!   already split are *kept as free nodes*: deleting them would not bring the parent's
//!   watermark back (seL4 never lowers it while children remain), so keeping them is the
//!   only way their memory stays usable. The allocation is not recorded.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use sel4::cap_type::Untyped;
use sel4::object::PAGE_BITS;
use sel4::{CNodeSlot, Cap, FrameSize, Kernel, ObjectBlueprint, PhysAddr, Slot, SlotRegion, UntypedDesc};

use crate::plan::{self, Run};
use crate::ranges::SlotAllocator;

/// The kernel aligns objects in its own window (`pptr = paddr + PPTR_BASE_OFFSET`, and the
/// offset is 2^39 on AArch64: `PPTR_BASE` is 2^39 with hypervisor support, 2^64 - 2^39
/// without). Up to 2^39 bytes, physical and kernel-window alignment agree, so the pool plans
/// in physical addresses; boot untypeds larger than that (huge device regions above 512 GiB,
/// which can look misaligned physically) are left alone.
pub const KERNEL_WINDOW_ALIGN_BITS: u32 = 39;

/// A node of the untyped tree: `(physical address, size_bits)`, unique because a child is
/// always smaller than its parent and siblings never overlap.
pub type NodeKey = (PhysAddr, u32);

/// A piece of a range inside one root: `(root, start, end)`.
type Piece = (NodeKey, PhysAddr, PhysAddr);

fn node_end(key: NodeKey) -> PhysAddr {
    key.0.offset(1u64 << key.1)
}

/// What backs a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Normal memory (zeroed by the kernel when retyped).
    Ram,
    /// Device memory (frames only; never zeroed).
    Device,
}

/// Which kind of memory a caller accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindRequest {
    /// RAM only.
    Ram,
    /// Device memory only.
    Device,
    /// Whatever backs the range, as long as all of it is of one kind.
    Uniform,
}

/// What an allocation is for; only the same purpose may free it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A region at a fixed address (`alloc_memory_region_at`), filled with frames.
    Region,
    /// Frames for page tables (`PagingHandler`), HAL-internal.
    Paging,
    /// Kernel objects of one blueprint (the HAL's own page tables, or objects for callers).
    Objects(ObjectBlueprint),
}

/// Why an allocation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Size 0.
    Empty {
        /// Requested base.
        base: PhysAddr,
    },
    /// Base or size is not a multiple of 4 KiB.
    Unaligned {
        /// Requested base.
        base: PhysAddr,
        /// Requested size.
        size: u64,
    },
    /// `base + size` overflows.
    Overflow {
        /// Requested base.
        base: PhysAddr,
        /// Requested size.
        size: u64,
    },
    /// The range overlaps a live allocation.
    InUse {
        /// The live allocation's base.
        other_base: PhysAddr,
        /// Its size.
        other_size: u64,
    },
    /// No untyped the pool owns covers this address.
    NotBacked {
        /// First uncovered address.
        at: PhysAddr,
    },
    /// Part of the range is device memory and part RAM.
    MixedKinds {
        /// Where the kind changes.
        at: PhysAddr,
    },
    /// The range is of the other kind than requested.
    WrongKind {
        /// What was asked for.
        wanted: MemoryKind,
        /// Where the other kind was found.
        at: PhysAddr,
    },
    /// Not enough free slots (in contiguous runs) for the caps the plan creates.
    OutOfSlots {
        /// Slots the plan needs.
        needed: u64,
        /// Slots free.
        free: u64,
    },
    /// No free memory of the requested size and alignment (allocations anywhere).
    NoFreeMemory {
        /// Requested size.
        size: u64,
    },
    /// The object does not fit the request (e.g. kernel objects from device memory).
    BadObject {
        /// The blueprint.
        blueprint: ObjectBlueprint,
    },
    /// A kernel invocation failed; everything made before it was undone.
    Kernel {
        /// What the pool was doing.
        during: &'static str,
        /// The kernel's error.
        error: sel4::Error,
    },
    /// The pool's bookkeeping contradicts itself (a bug).
    Internal(&'static str),
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Empty { base } => write!(f, "empty region at {base:#x}"),
            AllocError::Unaligned { base, size } => {
                write!(f, "region {base:#x}+{size:#x} is not 4 KiB aligned")
            }
            AllocError::Overflow { base, size } => write!(f, "region {base:#x}+{size:#x} overflows"),
            AllocError::InUse { other_base, other_size } => {
                write!(f, "overlaps the allocation at {other_base:#x}+{other_size:#x}")
            }
            AllocError::NotBacked { at } => write!(f, "{at:#x} is not backed by any untyped the HAL owns"),
            AllocError::MixedKinds { at } => write!(f, "RAM and device memory meet at {at:#x}"),
            AllocError::WrongKind { wanted, at } => write!(f, "{at:#x} is not {wanted:?} memory"),
            AllocError::OutOfSlots { needed, free } => {
                write!(f, "needs {needed} capability slots, {free} free")
            }
            AllocError::NoFreeMemory { size } => write!(f, "no free RAM for {size:#x} bytes"),
            AllocError::BadObject { blueprint } => write!(f, "cannot make {blueprint:?} here"),
            AllocError::Kernel { during, error } => write!(f, "kernel refused {during}: {error}"),
            AllocError::Internal(why) => write!(f, "untyped pool bookkeeping is inconsistent: {why}"),
        }
    }
}

impl core::error::Error for AllocError {}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// No allocation starts at this base.
    NotAllocated {
        /// The base given.
        base: PhysAddr,
    },
    /// An allocation starts there, but of another size.
    SizeMismatch {
        /// The base given.
        base: PhysAddr,
        /// The size given.
        size: u64,
        /// The allocation's size.
        allocated: u64,
    },
    /// The allocation was made for another purpose (e.g. a page-table frame freed as a region).
    WrongPurpose {
        /// The base given.
        base: PhysAddr,
        /// Its purpose.
        purpose: Purpose,
    },
    /// A revoke failed; wrappers revoked before it stay freed, the rest stay allocated.
    Kernel {
        /// The kernel's error.
        error: sel4::Error,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::NotAllocated { base } => write!(f, "no allocation starts at {base:#x}"),
            FreeError::SizeMismatch { base, size, allocated } => {
                write!(f, "allocation at {base:#x} is {allocated:#x} bytes, not {size:#x}")
            }
            FreeError::WrongPurpose { base, purpose } => {
                write!(f, "allocation at {base:#x} belongs to {purpose:?}")
            }
            FreeError::Kernel { error } => write!(f, "kernel refused a revoke: {error}"),
        }
    }
}

impl core::error::Error for FreeError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NodeState {
    /// No children, nothing retyped: the next retype starts at 0.
    Fresh,
    /// Children tile `[start, watermark)` in address order.
    Split { children: Vec<NodeKey>, watermark: PhysAddr },
    /// Holds the objects of the allocation at `owner`.
    Holds { owner: PhysAddr },
}

#[derive(Clone, Debug)]
struct Node {
    slot: Slot,
    device: bool,
    parent: Option<NodeKey>,
    state: NodeState,
    /// The kernel's free index (`capFreeIndex`) in bytes from the node's start. Only moves
    /// with retypes: a revoke leaves it, and the next retype into the node with no children
    /// first clears `[start, start + free_index)` (`resetUntypedCap`; device memory is not
    /// cleared). Boot untypeds come with it at their end (seL4 hands them out "used", so the
    /// first retype clears the whole untyped), child untypeds with it at 0.
    free_index: u64,
}

/// Objects retyped into one wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The wrapper untyped.
    pub node: NodeKey,
    /// What was made.
    pub blueprint: ObjectBlueprint,
    /// How many (from the wrapper's start, consecutive).
    pub count: u64,
    /// Index of the first one in the allocation's slot window.
    pub first_index: u64,
}

/// One live allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Physical base.
    pub base: PhysAddr,
    /// Size in bytes.
    pub size: u64,
    /// What backs it.
    pub kind: MemoryKind,
    /// Who may free it.
    pub purpose: Purpose,
    /// First slot of the window holding its object caps, in address order.
    pub first_slot: Slot,
    /// Number of object caps.
    pub objects: u64,
    /// The wrappers and what each holds, in address order.
    pub fills: Vec<Fill>,
}

/// One object of an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its capability's slot.
    pub slot: Slot,
    /// Its physical address.
    pub paddr: PhysAddr,
    /// Its type.
    pub blueprint: ObjectBlueprint,
}

impl Allocation {
    /// One past the last byte.
    pub fn end(&self) -> PhysAddr {
        self.base.offset(self.size)
    }

    /// Every object, in address order.
    pub fn objects(&self) -> impl Iterator<Item = ObjectInfo> + '_ {
        self.fills.iter().flat_map(move |f| {
            let bits = f.blueprint.physical_size_bits();
            (0..f.count).map(move |i| ObjectInfo {
                slot: self.first_slot.offset(f.first_index + i),
                paddr: f.node.0.offset(i << bits),
                blueprint: f.blueprint,
            })
        })
    }
}

/// A step of a plan. Costs: `Split` 1, `Fill` one per fan-out objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Retype `run` as child untypeds of `parent`.
    Split {
        /// The parent node.
        parent: NodeKey,
        /// The children.
        run: Run,
    },
    /// Retype objects into a wrapper.
    Fill(Fill),
}

/// Kernel invocations a plan makes.
pub fn plan_cost(steps: &[Step], fan_out: u64) -> u64 {
    steps
        .iter()
        .map(|s| match s {
            Step::Split { .. } => 1,
            Step::Fill(f) => f.count.div_ceil(fan_out),
        })
        .sum()
}

/// What to put in wrappers as planning walks them in address order.
#[derive(Clone, Copy, Debug)]
struct FillCursor {
    /// `None`: frames, the largest each wrapper allows. `Some`: objects of this blueprint.
    blueprint: Option<ObjectBlueprint>,
    /// Objects still to place (objects only).
    remaining: u64,
    /// Objects placed so far (index into the slot window).
    placed: u64,
}

impl FillCursor {
    fn take(&mut self, node: NodeKey) -> Result<Option<Fill>, AllocError> {
        let (blueprint, count) = match self.blueprint {
            None => {
                let f = plan::largest_frame(node.1).ok_or(AllocError::Internal("wrapper smaller than a page"))?;
                (f.blueprint(), 1u64 << (node.1 - f.size_bits()))
            }
            Some(b) => {
                let bits = b.physical_size_bits();
                if node.1 < bits {
                    return Err(AllocError::Internal("wrapper smaller than its object"));
                }
                let n = self.remaining.min(1u64 << (node.1 - bits).min(63));
                self.remaining -= n;
                (b, n)
            }
        };
        if count == 0 {
            return Ok(None);
        }
        let fill = Fill { node, blueprint, count, first_index: self.placed };
        self.placed += count;
        Ok(Some(fill))
    }
}

/// Counters the tests and the benchmark read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Live allocations.
    pub allocations: usize,
    /// Untyped nodes below the roots.
    pub child_nodes: usize,
    /// Free slots.
    pub free_slots: u64,
}

/// The untyped pool. See the module docs.
#[derive(Clone, Debug)]
pub struct UntypedPool {
    nodes: BTreeMap<NodeKey, Node>,
    /// Root nodes by start address.
    roots: BTreeMap<PhysAddr, NodeKey>,
    allocations: BTreeMap<PhysAddr, Allocation>,
    slots: SlotAllocator,
    fan_out: u64,
}

/// What the caller of [`UntypedPool::new`] got wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSetupError {
    /// Two untypeds overlap.
    Overlap {
        /// The second one's address.
        paddr: PhysAddr,
    },
    /// An untyped is not aligned to its size or its size is out of range.
    BadUntyped {
        /// Its address.
        paddr: PhysAddr,
    },
    /// An untyped cap's slot lies inside the slot region the pool manages.
    SlotInRegion {
        /// The slot.
        slot: Slot,
    },
}

impl fmt::Display for PoolSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolSetupError::Overlap { paddr } => write!(f, "untyped at {paddr:#x} overlaps another"),
            PoolSetupError::BadUntyped { paddr } => write!(f, "untyped at {paddr:#x} is malformed"),
            PoolSetupError::SlotInRegion { slot } => {
                write!(f, "untyped cap in {slot:?} lies in the slot region the pool allocates from")
            }
        }
    }
}

impl UntypedPool {
    /// A pool over `untyped` (capabilities and what they cover, e.g. from bootinfo), placing
    /// new capabilities in `slots`. Untypeds smaller than a page (nothing page aligned fits)
    /// and larger than 2^[`KERNEL_WINDOW_ALIGN_BITS`] are ignored.
    pub fn new(
        untyped: impl IntoIterator<Item = (Cap<Untyped>, UntypedDesc)>,
        slots: SlotRegion,
        fan_out: u64,
    ) -> Result<Self, PoolSetupError> {
        let mut nodes = BTreeMap::new();
        let mut roots = BTreeMap::new();
        for (cap, d) in untyped {
            let paddr = d.paddr;
            if d.size_bits < PAGE_BITS {
                continue;
            }
            if d.size_bits > KERNEL_WINDOW_ALIGN_BITS {
                log::info!(
                    "untyped pool: ignoring the untyped at {paddr:#x} (2^{} bytes): larger than the kernel window's alignment",
                    d.size_bits
                );
                continue;
            }
            if d.size_bits > sel4::object::MAX_UNTYPED_BITS || !d.paddr.is_aligned(d.size_bits) {
                return Err(PoolSetupError::BadUntyped { paddr });
            }
            if slots.contains(cap.slot()) {
                return Err(PoolSetupError::SlotInRegion { slot: cap.slot() });
            }
            let key = (paddr, d.size_bits);
            let end = node_end(key);
            if let Some((_, &prev)) = roots.range(..end).next_back()
                && node_end(prev) > paddr
            {
                return Err(PoolSetupError::Overlap { paddr });
            }
            if let Some((&next, _)) = roots.range(paddr..).next()
                && next < end
            {
                return Err(PoolSetupError::Overlap { paddr });
            }
            roots.insert(paddr, key);
            let node = Node {
                slot: cap.slot(),
                device: d.is_device,
                parent: None,
                state: NodeState::Fresh,
                free_index: 1u64 << d.size_bits,
            };
            nodes.insert(key, node);
        }
        Ok(UntypedPool { nodes, roots, allocations: BTreeMap::new(), slots: SlotAllocator::new(slots), fan_out })
    }

    /// Objects per retype call.
    pub fn fan_out(&self) -> u64 {
        self.fan_out
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            allocations: self.allocations.len(),
            child_nodes: self.nodes.len() - self.roots.len(),
            free_slots: self.slots.free_count(),
        }
    }

    /// Free slots.
    pub fn free_slots(&self) -> u64 {
        self.slots.free_count()
    }

    /// The live allocation starting at `base`.
    pub fn allocation(&self, base: PhysAddr) -> Option<&Allocation> {
        self.allocations.get(&base)
    }

    /// The live allocation containing `addr`.
    pub fn allocation_containing(&self, addr: PhysAddr) -> Option<&Allocation> {
        self.allocations.range(..=addr).next_back().map(|(_, a)| a).filter(|a| addr < a.end())
    }

    /// All live allocations, by base.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.values()
    }

    /// Every untyped node: its capability, range, whether it is device memory, and the
    /// watermark the kernel must agree with (`None` when the node has no children: the
    /// kernel starts it at 0 on the next retype, whatever its stale free index says).
    pub fn untyped_nodes(&self) -> impl Iterator<Item = UntypedNodeInfo> + '_ {
        self.nodes.iter().map(|(&key, n)| UntypedNodeInfo {
            cap: n.slot.cap(),
            paddr: key.0,
            size_bits: key.1,
            device: n.device,
            is_root: n.parent.is_none(),
            watermark: match &n.state {
                NodeState::Fresh => None,
                NodeState::Split { watermark, .. } => Some(watermark.offset_from(key.0)),
                NodeState::Holds { owner } => self.allocations.get(owner).and_then(|a| {
                    let f = a.fills.iter().find(|f| f.node == key)?;
                    Some(f.count << f.blueprint.physical_size_bits())
                }),
            },
            has_children: !matches!(n.state, NodeState::Fresh),
            free_index: n.free_index,
        })
    }

    // ---- planning (pure) ----

    fn overlapping(&self, s: PhysAddr, t: PhysAddr) -> Option<&Allocation> {
        self.allocations.range(..t).next_back().map(|(_, a)| a).filter(|a| a.end() > s)
    }

    fn check_shape(base: PhysAddr, size: u64) -> Result<PhysAddr, AllocError> {
        if size == 0 {
            return Err(AllocError::Empty { base });
        }
        let end = base.checked_add(size).ok_or(AllocError::Overflow { base, size })?;
        if !base.is_aligned(PAGE_BITS) || !size.is_multiple_of(1u64 << PAGE_BITS) {
            return Err(AllocError::Unaligned { base, size });
        }
        Ok(end)
    }

    /// The roots covering `[s, t)` as pieces `(root, piece_start, piece_end)`, all of one
    /// kind, and that kind.
    fn coverage(&self, s: PhysAddr, t: PhysAddr, kind: KindRequest) -> Result<(Vec<Piece>, MemoryKind), AllocError> {
        let mut pieces = Vec::new();
        let mut cur = s;
        let mut found: Option<MemoryKind> = None;
        while cur < t {
            let key = self
                .roots
                .range(..=cur)
                .next_back()
                .map(|(_, &k)| k)
                .filter(|&k| node_end(k) > cur)
                .ok_or(AllocError::NotBacked { at: cur })?;
            let k = if self.nodes[&key].device { MemoryKind::Device } else { MemoryKind::Ram };
            match kind {
                KindRequest::Ram if k != MemoryKind::Ram => {
                    return Err(AllocError::WrongKind { wanted: MemoryKind::Ram, at: cur });
                }
                KindRequest::Device if k != MemoryKind::Device => {
                    return Err(AllocError::WrongKind { wanted: MemoryKind::Device, at: cur });
                }
                _ => {}
            }
            match found {
                Some(prev) if prev != k => return Err(AllocError::MixedKinds { at: cur }),
                _ => found = Some(k),
            }
            let end = node_end(key).min(t);
            pieces.push((key, cur, end));
            cur = end;
        }
        Ok((pieces, found.unwrap_or(MemoryKind::Ram)))
    }

    /// The plan for an allocation of `[base, base + size)`, checking everything that can be
    /// checked without the kernel. Pure.
    pub fn plan(
        &self,
        base: PhysAddr,
        size: u64,
        kind: KindRequest,
        blueprint: Option<ObjectBlueprint>,
        count: u64,
    ) -> Result<(Vec<Step>, MemoryKind), AllocError> {
        let end = Self::check_shape(base, size)?;
        if let Some(a) = self.overlapping(base, end) {
            return Err(AllocError::InUse { other_base: a.base, other_size: a.size });
        }
        let (pieces, mem) = self.coverage(base, end, kind)?;
        if let Some(b) = blueprint
            && mem == MemoryKind::Device
            && !b.is_frame()
        {
            return Err(AllocError::BadObject { blueprint: b });
        }
        let mut cursor = FillCursor { blueprint, remaining: count, placed: 0 };
        let mut steps = Vec::new();
        for (root, s, t) in pieces {
            self.plan_node(root, s, t, &mut cursor, &mut steps)?;
        }
        if blueprint.is_some() && cursor.remaining != 0 {
            return Err(AllocError::Internal("objects do not fit their range"));
        }
        Ok((steps, mem))
    }

    fn plan_node(
        &self,
        key: NodeKey,
        s: PhysAddr,
        t: PhysAddr,
        cur: &mut FillCursor,
        out: &mut Vec<Step>,
    ) -> Result<(), AllocError> {
        let node = self.nodes.get(&key).ok_or(AllocError::Internal("plan reached a missing node"))?;
        match &node.state {
            NodeState::Holds { .. } => Err(AllocError::Internal("free range reached a node that holds objects")),
            NodeState::Fresh => self.plan_extend(key, key.0, s, t, cur, out),
            NodeState::Split { children, watermark } => {
                // Children are sorted and tile the prefix: start at the first one ending after s.
                let first = children.partition_point(|&c| node_end(c) <= s);
                for &c in children[first..].iter().take_while(|c| c.0 < t) {
                    let (cs, ce) = (c.0, node_end(c));
                    self.plan_node(c, s.max(cs), t.min(ce), cur, out)?;
                }
                if t > *watermark {
                    self.plan_extend(key, *watermark, s.max(*watermark), t, cur, out)?;
                }
                Ok(())
            }
        }
    }

    /// Plans `[s, t)` in `key`, whose watermark is `w <= s` and which has nothing at or
    /// above `w`: padding children up to `s`, wrapper children for `[s, t)`, then the fills.
    fn plan_extend(
        &self,
        key: NodeKey,
        w: PhysAddr,
        s: PhysAddr,
        t: PhysAddr,
        cur: &mut FillCursor,
        out: &mut Vec<Step>,
    ) -> Result<(), AllocError> {
        if w == key.0 && s == key.0 && t == node_end(key) {
            if let Some(f) = cur.take(key)? {
                out.push(Step::Fill(f));
            }
            return Ok(());
        }
        let pads = plan::pad_runs(w, s, self.fan_out);
        let blocks = plan::blocks(s, t);
        let wrappers = plan::group_runs(blocks.iter().copied(), self.fan_out);
        for run in plan::merge_runs(pads.into_iter().chain(wrappers), self.fan_out) {
            out.push(Step::Split { parent: key, run });
        }
        for b in blocks {
            if let Some(f) = cur.take(b)? {
                out.push(Step::Fill(f));
            }
        }
        Ok(())
    }

    /// The highest free, RAM-backed, `align`-aligned range of `size` bytes inside
    /// `[within.0, within.1)` (the whole pool when `None`). Pure. The HAL takes its own small
    /// allocations this way: from the top of RAM, out of the way of the fixed-address
    /// regions configurations name.
    pub fn find_free(&self, size: u64, align: u64, within: Option<(PhysAddr, PhysAddr)>) -> Option<PhysAddr> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let (lo, hi) = within.unwrap_or((PhysAddr(0), PhysAddr(u64::MAX)));
        let align_bits = align.trailing_zeros();
        self.ram_runs().into_iter().rev().find_map(|(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            (b > a && b.offset_from(a) >= size).then(|| self.highest_fit(a, b, size, align_bits)).flatten()
        })
    }

    /// Where to put `size` bytes of RAM that may go anywhere (guest RAM a configuration
    /// leaves to capvisor), `align`-aligned, inside `[within.0, within.1)` (the whole pool
    /// when `None`): of the candidates below, the free range for which the kernel clears the
    /// fewest bytes ([`UntypedPool::clearing_cost`]), then the one with the fewest kernel
    /// calls, then the highest. Pure.
    ///
    /// Clearing is the price that matters for large ranges: the first retype into a boot
    /// untyped clears all of it, in chunks of 2^`RESET_CHUNK_BITS` bytes with a preemption
    /// check between them. 256 MiB placed at the top of RAM, across a 256 MiB untyped and the
    /// smaller ones above it, costs 474 MiB of clearing on capvisor's QEMU layout; the
    /// 256 MiB untyped alone costs 256 MiB.
    ///
    /// Candidates (not every aligned address; enough to reach the cheap ones): per RAM
    /// untyped the pool was given, the highest free fit inside it and the fit at its base;
    /// per run of contiguous RAM untypeds, the highest free fit (ranges that span several).
    pub fn find_least_clearing(&self, size: u64, align: u64, within: Option<(PhysAddr, PhysAddr)>) -> Option<PhysAddr> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let (lo, hi) = within.unwrap_or((PhysAddr(0), PhysAddr(u64::MAX)));
        let align_bits = align.trailing_zeros();
        let clip = |(a, b): (PhysAddr, PhysAddr)| {
            let (a, b) = (a.max(lo), b.min(hi));
            (b > a && b.offset_from(a) >= size).then_some((a, b))
        };
        let mut candidates: Vec<PhysAddr> = Vec::new();
        for (a, b) in self.ram_runs().into_iter().filter_map(clip) {
            candidates.extend(self.highest_fit(a, b, size, align_bits));
            for key in self.roots.range(..b).rev().map(|(_, &k)| k).take_while(|k| node_end(*k) > a) {
                let Some((ra, rb)) = clip((key.0, node_end(key))) else { continue };
                candidates.extend(self.highest_fit(ra, rb, size, align_bits));
                let at_base = ra.checked_align_up(align_bits);
                if let Some(c) = at_base.filter(|&c| c.checked_add(size).is_some_and(|e| e <= rb)) {
                    candidates.push(c);
                }
            }
        }
        // A run's highest fit is often its top root's too: plan each address once.
        candidates.sort_unstable();
        candidates.dedup();
        let mut best: Option<((u64, u64), PhysAddr)> = None;
        for c in candidates {
            // `plan` refuses a range that overlaps an allocation or leaves RAM (a fit at a
            // root's base may do either); such candidates drop out here.
            let Ok((steps, _)) = self.plan(c, size, KindRequest::Ram, None, 0) else { continue };
            let key = (self.steps_clearing(&steps), plan_cost(&steps, self.fan_out));
            if best.is_none_or(|(k, b)| key < k || (key == k && c > b)) {
                best = Some((key, c));
            }
        }
        best.map(|(_, c)| c)
    }

    /// Maximal runs of contiguous RAM roots, as `[start, end)`, in address order.
    fn ram_runs(&self) -> Vec<(PhysAddr, PhysAddr)> {
        let mut runs: Vec<(PhysAddr, PhysAddr)> = Vec::new();
        for &key in self.roots.values().filter(|k| !self.nodes[k].device) {
            match runs.last_mut() {
                Some(last) if last.1 == key.0 => last.1 = node_end(key),
                _ => runs.push((key.0, node_end(key))),
            }
        }
        runs
    }

    /// The highest `[c, c + size)` inside `[a, b)`, `c` a multiple of `1 << align_bits`, that
    /// overlaps no allocation.
    fn highest_fit(&self, a: PhysAddr, b: PhysAddr, size: u64, align_bits: u32) -> Option<PhysAddr> {
        let mut cand = b.checked_sub(size)?.align_down(align_bits);
        while cand >= a {
            match self.overlapping(cand, cand.offset(size)) {
                None => return Some(cand),
                Some(o) => cand = o.base.checked_sub(size)?.align_down(align_bits),
            }
        }
        None
    }

    /// Bytes the kernel clears if `[base, base + size)` is allocated now (as frames of
    /// `kind`): every node the plan retypes from while it has no children is reset first,
    /// which clears it up to its free index (RAM only). Pure.
    pub fn clearing_cost(&self, base: PhysAddr, size: u64, kind: KindRequest) -> Result<u64, AllocError> {
        let (steps, _) = self.plan(base, size, kind, None, 0)?;
        Ok(self.steps_clearing(&steps))
    }

    fn steps_clearing(&self, steps: &[Step]) -> u64 {
        let mut seen: Vec<NodeKey> = Vec::new();
        let mut bytes = 0;
        for step in steps {
            let key = match step {
                Step::Split { parent, .. } => *parent,
                Step::Fill(f) => f.node,
            };
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            // Nodes an earlier step of the plan makes are not in the tree yet: they start at 0.
            if let Some(n) = self.nodes.get(&key)
                && n.state == NodeState::Fresh
                && !n.device
            {
                bytes += n.free_index;
            }
        }
        bytes
    }

    // ---- execution ----

    /// Allocates `[base, base + size)`: frames (largest per wrapper) when `blueprint` is
    /// `None`, else `count` objects of `blueprint` in address order. All or nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn alloc<K: Kernel>(
        &mut self,
        kernel: &mut K,
        base: PhysAddr,
        size: u64,
        kind: KindRequest,
        purpose: Purpose,
        blueprint: Option<ObjectBlueprint>,
        count: u64,
    ) -> Result<&Allocation, AllocError> {
        let (steps, mem) = self.plan(base, size, kind, blueprint, count)?;
        let objects: u64 = steps.iter().map(|s| if let Step::Fill(f) = s { f.count } else { 0 }).sum();
        let split_counts: Vec<u64> =
            steps.iter().filter_map(|s| if let Step::Split { run, .. } = s { Some(run.count) } else { None }).collect();

        // Reserve every slot before the first kernel call, so running out is refused with
        // nothing done.
        let free_before = self.slots.free_count();
        let mut split_windows: Vec<Slot> = Vec::with_capacity(split_counts.len());
        let mut object_window = if objects > 0 { self.slots.alloc(objects) } else { Some(Slot::new(0)) };
        if object_window.is_some() {
            for &n in &split_counts {
                match self.slots.alloc(n) {
                    Some(s) => split_windows.push(s),
                    None => break,
                }
            }
        }
        if object_window.is_none() || split_windows.len() != split_counts.len() {
            for (&s, &n) in split_windows.iter().zip(&split_counts) {
                let _ = self.slots.free(s, n);
            }
            if let Some(s) = object_window.take().filter(|_| objects > 0) {
                let _ = self.slots.free(s, objects);
            }
            let needed = objects + split_counts.iter().sum::<u64>();
            return Err(AllocError::OutOfSlots { needed, free: free_before });
        }
        let first_slot = object_window.unwrap_or(Slot::new(0));

        let mut log = ExecLog::default();
        let mut next_split = 0usize;
        let mut result = Ok(());
        for step in &steps {
            let r = match *step {
                Step::Split { parent, run } => {
                    let r = self.exec_split(kernel, parent, run, split_windows[next_split], &mut log);
                    if r.is_ok() {
                        next_split += 1;
                    }
                    r
                }
                Step::Fill(f) => self.exec_fill(kernel, f, first_slot, base, &mut log),
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        if let Err(e) = result {
            log::warn!("untyped pool: allocation of {base:#x}+{size:#x} failed after kernel calls ({e}); undoing");
            self.rollback(kernel, &log);
            // Windows of splits that never ran; the object window (its caps are revoked).
            for (&s, &n) in split_windows.iter().zip(&split_counts).skip(next_split) {
                let _ = self.slots.free(s, n);
            }
            if objects > 0 {
                let _ = self.slots.free(first_slot, objects);
            }
            return Err(e);
        }
        let fills = steps.iter().filter_map(|s| if let Step::Fill(f) = s { Some(*f) } else { None }).collect();
        let a = Allocation { base, size, kind: mem, purpose, first_slot, objects, fills };
        self.allocations.insert(base, a);
        Ok(&self.allocations[&base])
    }

    fn exec_split<K: Kernel>(
        &mut self,
        kernel: &mut K,
        parent: NodeKey,
        run: Run,
        slot: Slot,
        log: &mut ExecLog,
    ) -> Result<(), AllocError> {
        let node = self.nodes.get(&parent).ok_or(AllocError::Internal("split of a missing node"))?;
        let (wm, fresh) = match &node.state {
            NodeState::Fresh => (parent.0, true),
            NodeState::Split { watermark, .. } => (*watermark, false),
            NodeState::Holds { .. } => return Err(AllocError::Internal("split of a node that holds objects")),
        };
        if run.addr != wm || !run.addr.is_aligned(run.size_bits) || run.end() > node_end(parent) {
            return Err(AllocError::Internal("split run does not start at the watermark"));
        }
        let cap = node.slot.cap::<Untyped>();
        let device = node.device;
        kernel
            .untyped_retype(cap, ObjectBlueprint::Untyped { size_bits: run.size_bits }, slot, run.count)
            .map_err(|error| AllocError::Kernel { during: "Untyped_Retype (child untyped)", error })?;
        if fresh {
            log.fresh_split.push(parent);
        }
        let mut new_children = Vec::with_capacity(run.count as usize);
        for i in 0..run.count {
            let key = (run.addr.offset(i << run.size_bits), run.size_bits);
            self.nodes.insert(
                key,
                Node { slot: slot.offset(i), device, parent: Some(parent), state: NodeState::Fresh, free_index: 0 },
            );
            new_children.push(key);
        }
        let node = self.nodes.get_mut(&parent).ok_or(AllocError::Internal("parent vanished"))?;
        node.free_index = run.end().offset_from(parent.0);
        match &mut node.state {
            NodeState::Split { children, watermark } => {
                children.extend(new_children);
                *watermark = run.end();
            }
            state => *state = NodeState::Split { children: new_children, watermark: run.end() },
        }
        Ok(())
    }

    fn exec_fill<K: Kernel>(
        &mut self,
        kernel: &mut K,
        f: Fill,
        first_slot: Slot,
        owner: PhysAddr,
        log: &mut ExecLog,
    ) -> Result<(), AllocError> {
        let node = self.nodes.get(&f.node).ok_or(AllocError::Internal("fill of a missing node"))?;
        if node.state != NodeState::Fresh {
            return Err(AllocError::Internal("fill of a node that is not fresh"));
        }
        let cap = node.slot.cap::<Untyped>();
        let mut done = 0;
        while done < f.count {
            let n = (f.count - done).min(self.fan_out);
            let slot = first_slot.offset(f.first_index + done);
            let r = kernel.untyped_retype(cap, f.blueprint, slot, n);
            if let Err(error) = r {
                return Err(AllocError::Kernel { during: "Untyped_Retype (objects)", error });
            }
            if done == 0 {
                log.filled.push(f.node);
            }
            done += n;
            if let Some(node) = self.nodes.get_mut(&f.node) {
                node.state = NodeState::Holds { owner };
                // A fresh wrapper starts at 0: its objects lie from its start, in order.
                node.free_index = done << f.blueprint.physical_size_bits();
            }
        }
        Ok(())
    }

    /// The highest ancestor of `wrapper` (or itself) whose range overlaps no allocation but
    /// `owner`.
    fn free_top(&self, wrapper: NodeKey, owner: PhysAddr) -> NodeKey {
        let mut top = wrapper;
        while let Some(p) = self.nodes.get(&top).and_then(|n| n.parent) {
            let (ps, pe) = (p.0, node_end(p));
            let other = self.allocations.range(..pe).rev().take_while(|(_, a)| a.end() > ps).any(|(&b, _)| b != owner);
            if other {
                break;
            }
            top = p;
        }
        top
    }

    /// Drops the records of every descendant of `key` (the kernel has deleted their caps),
    /// returns their slots, and makes `key` fresh.
    fn forget_below(&mut self, key: NodeKey) {
        let Some(node) = self.nodes.get_mut(&key) else { return };
        let state = core::mem::replace(&mut node.state, NodeState::Fresh);
        if let NodeState::Split { children, .. } = state {
            for c in children {
                self.forget_below(c);
                if let Some(n) = self.nodes.remove(&c) {
                    let _ = self.slots.free(n.slot, 1);
                }
            }
        }
    }

    fn rollback<K: Kernel>(&mut self, kernel: &mut K, log: &ExecLog) {
        for &key in log.filled.iter().rev() {
            let Some(node) = self.nodes.get(&key) else { continue };
            if let Err(e) = kernel.cnode_revoke(CNodeSlot::root(node.slot)) {
                log::error!("untyped pool: undo: revoke of wrapper {:#x}/{} failed: {e}", key.0, key.1);
                continue;
            }
            if let Some(node) = self.nodes.get_mut(&key) {
                node.state = NodeState::Fresh;
            }
        }
        for &key in log.fresh_split.iter().rev() {
            let Some(node) = self.nodes.get(&key) else { continue };
            if !matches!(node.state, NodeState::Split { .. }) {
                continue;
            }
            if let Err(e) = kernel.cnode_revoke(CNodeSlot::root(node.slot)) {
                log::error!("untyped pool: undo: revoke of {:#x}/{} failed: {e}", key.0, key.1);
                continue;
            }
            self.forget_below(key);
        }
    }

    /// Frees the allocation at `base`, which must be exactly `size` bytes and made for
    /// `purpose`: one revoke per wrapper.
    pub fn free<K: Kernel>(
        &mut self,
        kernel: &mut K,
        base: PhysAddr,
        size: u64,
        purpose: Purpose,
    ) -> Result<Allocation, FreeError> {
        let a = self.allocations.get(&base).ok_or(FreeError::NotAllocated { base })?;
        if a.size != size {
            return Err(FreeError::SizeMismatch { base, size, allocated: a.size });
        }
        if a.purpose != purpose {
            return Err(FreeError::WrongPurpose { base, purpose: a.purpose });
        }
        // Per wrapper, the highest node under which nothing else is allocated: revoking it
        // deletes the frames and any padding no other allocation needs, so the tree only
        // ever holds structure for live allocations (slots stay bounded by them).
        let mut tops: Vec<NodeKey> = Vec::new();
        for f in &a.fills {
            let top = self.free_top(f.node, base);
            if !tops.contains(&top) {
                tops.push(top);
            }
        }
        for top in tops {
            let slot = self.nodes[&top].slot;
            if let Err(error) = kernel.cnode_revoke(CNodeSlot::root(slot)) {
                log::error!("untyped pool: free of {base:#x}: revoke of {:#x}/{} failed: {error}", top.0, top.1);
                // Keep on record what is still there; what was revoked is free.
                let nodes = &self.nodes;
                if let Some(a) = self.allocations.get_mut(&base) {
                    a.fills.retain(|f| matches!(nodes.get(&f.node).map(|n| &n.state), Some(NodeState::Holds { .. })));
                }
                return Err(FreeError::Kernel { error });
            }
            self.forget_below(top);
        }
        let a = self.allocations.remove(&base).expect("checked above");
        if a.objects > 0 {
            let _ = self.slots.free(a.first_slot, a.objects);
        }
        Ok(a)
    }

    /// Checks the pool's own invariants: children tile their parent's used prefix, each
    /// node that holds objects belongs to exactly the allocation that lists it, allocations
    /// do not overlap, and every slot is accounted for once.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut used_slots = 0u64;
        let mut listed_children = 0usize;
        for (&key, node) in &self.nodes {
            if node.parent.is_some() {
                used_slots += 1;
            }
            match &node.state {
                NodeState::Fresh => {}
                NodeState::Split { children, watermark } => {
                    let mut cur = key.0;
                    for c in children {
                        if c.0 != cur {
                            return Err("children do not tile the used prefix");
                        }
                        let child = self.nodes.get(c).ok_or("child missing")?;
                        if child.parent != Some(key) {
                            return Err("child names another parent");
                        }
                        if child.device != node.device {
                            return Err("child of another kind than its parent");
                        }
                        cur = node_end(*c);
                    }
                    listed_children += children.len();
                    // Freeing revokes the highest node with nothing else live below it, and
                    // undoing revokes what was fresh: no split node is left without a reason.
                    if self.overlapping(key.0, node_end(key)).is_none() {
                        return Err("split node with nothing allocated below it");
                    }
                    if cur != *watermark || *watermark > node_end(key) || children.is_empty() {
                        return Err("watermark is not the end of the children");
                    }
                }
                NodeState::Holds { owner } => {
                    let a = self.allocations.get(owner).ok_or("node holds objects of no allocation")?;
                    if !a.fills.iter().any(|f| f.node == key) {
                        return Err("allocation does not list its wrapper");
                    }
                }
            }
        }
        // Every child names its parent and every parent lists its children: with equal counts,
        // the two relations are the same.
        if listed_children != self.nodes.len() - self.roots.len() {
            return Err("a node is not listed by its parent");
        }
        let mut prev_end = PhysAddr(0);
        for a in self.allocations.values() {
            if a.base < prev_end {
                return Err("allocations overlap");
            }
            prev_end = a.end();
            used_slots += a.objects;
            let mut covered = 0;
            for f in &a.fills {
                match self.nodes.get(&f.node).map(|n| &n.state) {
                    Some(NodeState::Holds { owner }) if *owner == a.base => {}
                    _ => return Err("wrapper does not hold its allocation"),
                }
                if f.node.0 < a.base || node_end(f.node) > a.end() {
                    return Err("wrapper outside its allocation");
                }
                covered += 1u64 << f.node.1;
            }
            if a.purpose == Purpose::Region && covered != a.size {
                return Err("region wrappers do not cover the region");
            }
        }
        if used_slots + self.slots.free_count() != self.slots.region().len() {
            return Err("slots leaked or double counted");
        }
        Ok(())
    }
}

/// Information about one untyped node, for checks against the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UntypedNodeInfo {
    /// Its capability.
    pub cap: Cap<Untyped>,
    /// Base.
    pub paddr: PhysAddr,
    /// log2 size.
    pub size_bits: u32,
    /// Device memory.
    pub device: bool,
    /// One of the untypeds the pool was given.
    pub is_root: bool,
    /// Bytes used from the start (the kernel's free index), when it has children.
    pub watermark: Option<u64>,
    /// Whether anything was retyped from it and still exists.
    pub has_children: bool,
    /// The kernel's free index in bytes, children or not (what the next retype clears
    /// when there are none).
    pub free_index: u64,
}

/// What an allocation did, so it can be undone.
#[derive(Default)]
struct ExecLog {
    /// Nodes that were fresh when this allocation first split them.
    fresh_split: Vec<NodeKey>,
    /// Wrappers that received objects.
    filled: Vec<NodeKey>,
}

/// The frame size of an object blueprint, for callers that fill the capability table.
pub fn frame_size(b: ObjectBlueprint) -> Option<FrameSize> {
    FrameSize::of_blueprint(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sel4::Slot;

    const FAN: u64 = 256;

    /// A few untypeds of the recorded QEMU virt boot (see `shared/sel4/16.0.0/boot`): RAM at
    /// 0x6400_0000 (64 MiB), 0x6800_0000 (128 MiB), 0x7000_0000 (256 MiB), device at 0x0900_0000
    /// (16 MiB, the UART's untyped) and RAM again right after a device untyped.
    fn pool() -> UntypedPool {
        let uts = [
            (0x0900_0000u64, 24u32, true),
            (0x0a00_0000, 25, true),
            (0x6400_0000, 26, false),
            (0x6800_0000, 27, false),
            (0x7000_0000, 28, false),
        ];
        let list = uts.iter().enumerate().map(|(i, &(p, b, d))| {
            (Slot::new(76 + i as u64).cap(), UntypedDesc { paddr: PhysAddr(p), size_bits: b, is_device: d })
        });
        UntypedPool::new(list, SlotRegion { start: Slot::new(150), end: Slot::new(65536) }, FAN).unwrap()
    }

    fn cost(p: &UntypedPool, base: u64, size: u64) -> u64 {
        plan_cost(&p.plan(PhysAddr(base), size, KindRequest::Uniform, None, 0).unwrap().0, FAN)
    }

    /// `lower_bound_piece` over plain numbers.
    fn bound(ut: u64, s: u64, t: u64) -> u64 {
        plan::lower_bound_piece(PhysAddr(ut), PhysAddr(s), PhysAddr(t), FAN)
    }

    #[test]
    fn small_region_inside_a_fresh_untyped_merges_padding_and_wrapper() {
        let p = pool();
        let (steps, kind) = p.plan(PhysAddr(0x6800_3000), 0x1000, KindRequest::Ram, None, 0).unwrap();
        assert_eq!(kind, MemoryKind::Ram);
        let ut = PhysAddr(0x6800_0000);
        assert_eq!(
            steps,
            [
                Step::Split { parent: (ut, 27), run: Run { addr: ut, size_bits: 12, count: 4 } },
                Step::Fill(Fill {
                    node: (PhysAddr(0x6800_3000), 12),
                    blueprint: ObjectBlueprint::SmallPage,
                    count: 1,
                    first_index: 0
                }),
            ]
        );
        assert_eq!(bound(0x6800_0000, 0x6800_3000, 0x6800_4000), 2);
    }

    #[test]
    fn whole_untyped_is_filled_directly() {
        let p = pool();
        let (steps, _) = p.plan(PhysAddr(0x6400_0000), 64 << 20, KindRequest::Ram, None, 0).unwrap();
        assert_eq!(
            steps,
            [Step::Fill(Fill {
                node: (PhysAddr(0x6400_0000), 26),
                blueprint: ObjectBlueprint::LargePage,
                count: 32,
                first_index: 0
            })]
        );
    }

    #[test]
    fn region_at_the_start_of_a_larger_untyped_needs_a_wrapper() {
        let p = pool();
        // The one call above the bound: the wrapper that makes the region freeable alone.
        assert_eq!(cost(&p, 0x6800_0000, 64 << 20), 2);
        assert_eq!(bound(0x6800_0000, 0x6800_0000, 0x6c00_0000), 1);
    }

    #[test]
    fn region_spanning_two_untypeds_is_planned_per_untyped() {
        let p = pool();
        // Last 2 MiB of 0x6800_0000/27 and first 2 MiB of 0x7000_0000/28.
        let (steps, _) = p.plan(PhysAddr(0x6fe0_0000), 4 << 20, KindRequest::Ram, None, 0).unwrap();
        let fills: Vec<_> = steps.iter().filter_map(|s| if let Step::Fill(f) = s { Some(*f) } else { None }).collect();
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[0].node, (PhysAddr(0x6fe0_0000), 21));
        assert_eq!(fills[1].node, (PhysAddr(0x7000_0000), 21));
        assert_eq!(fills[1].first_index, 1, "frames numbered across untypeds");
    }

    #[test]
    fn refusals_name_the_reason() {
        let p = pool();
        let plan = |b, s, k| p.plan(PhysAddr(b), s, k, None, 0).map(|_| ());
        let [top, unaligned, ram, uart, end] =
            [u64::MAX - 0xfff, 0x6800_0800, 0x6400_0000, 0x0900_0000, 0x8000_0000].map(PhysAddr);
        assert_eq!(plan(0x6800_0000, 0, KindRequest::Ram), Err(AllocError::Empty { base: PhysAddr(0x6800_0000) }));
        assert_eq!(
            plan(0x6800_0800, 0x1000, KindRequest::Ram),
            Err(AllocError::Unaligned { base: unaligned, size: 0x1000 })
        );
        assert_eq!(plan(top.get(), 0x2000, KindRequest::Ram), Err(AllocError::Overflow { base: top, size: 0x2000 }));
        assert_eq!(
            plan(0x6000_0000, 0x1000, KindRequest::Ram),
            Err(AllocError::NotBacked { at: PhysAddr(0x6000_0000) })
        );
        // Runs off the end of RAM at 0x8000_0000 (nothing given to the pool there).
        assert_eq!(plan(0x7fff_f000, 0x2000, KindRequest::Ram), Err(AllocError::NotBacked { at: end }));
        assert_eq!(
            plan(0x0900_0000, 0x1000, KindRequest::Ram),
            Err(AllocError::WrongKind { wanted: MemoryKind::Ram, at: uart })
        );
        assert_eq!(
            plan(0x6400_0000, 0x1000, KindRequest::Device),
            Err(AllocError::WrongKind { wanted: MemoryKind::Device, at: ram })
        );
        assert!(plan(0x0900_0000, 0x1000, KindRequest::Device).is_ok());
        assert!(plan(0x09ff_f000, 0x2000, KindRequest::Device).is_ok(), "two device untypeds");
        assert_eq!(
            p.plan(uart, 0x1000, KindRequest::Device, Some(ObjectBlueprint::PageTable), 1).map(|_| ()),
            Err(AllocError::BadObject { blueprint: ObjectBlueprint::PageTable })
        );
    }

    #[test]
    fn mixed_kinds_are_refused() {
        let list = [
            (Slot::new(76).cap(), UntypedDesc { paddr: PhysAddr(0x1000_0000), size_bits: 20, is_device: true }),
            (Slot::new(77).cap(), UntypedDesc { paddr: PhysAddr(0x1010_0000), size_bits: 20, is_device: false }),
        ];
        let p = UntypedPool::new(list, SlotRegion { start: Slot::new(150), end: Slot::new(200) }, FAN).unwrap();
        assert_eq!(
            p.plan(PhysAddr(0x100f_f000), 0x2000, KindRequest::Uniform, None, 0).map(|_| ()),
            Err(AllocError::MixedKinds { at: PhysAddr(0x1010_0000) })
        );
    }

    #[test]
    fn setup_refuses_overlapping_or_misaligned_untyped() {
        let r = SlotRegion { start: Slot::new(150), end: Slot::new(200) };
        let d = |p, b| UntypedDesc { paddr: PhysAddr(p), size_bits: b, is_device: false };
        let two = [(Slot::new(76).cap(), d(0x1000_0000, 24)), (Slot::new(77).cap(), d(0x1080_0000, 20))];
        let overlap = PoolSetupError::Overlap { paddr: PhysAddr(0x1080_0000) };
        assert_eq!(UntypedPool::new(two, r, FAN).err(), Some(overlap));
        let bad = [(Slot::new(76).cap(), d(0x1000_1000, 16))];
        let malformed = PoolSetupError::BadUntyped { paddr: PhysAddr(0x1000_1000) };
        assert_eq!(UntypedPool::new(bad, r, FAN).err(), Some(malformed));
        let inside = [(Slot::new(160).cap(), d(0x1000_0000, 16))];
        assert_eq!(UntypedPool::new(inside, r, FAN).err(), Some(PoolSetupError::SlotInRegion { slot: Slot::new(160) }));
    }

    /// A frame allocated at `base` in `p`, on a model of this test's untypeds, so the pool's
    /// free indexes move as the kernel's would.
    fn take(p: &mut UntypedPool, m: &mut sel4_model::Model, base: PhysAddr, size: u64) {
        p.alloc(m, base, size, KindRequest::Ram, Purpose::Region, None, 0).unwrap();
    }

    /// `[start, end)` for `within`.
    fn window(start: u64, end: u64) -> Option<(PhysAddr, PhysAddr)> {
        Some((PhysAddr(start), PhysAddr(end)))
    }

    #[test]
    fn find_free_takes_the_highest_ram_first() {
        let p = pool();
        assert_eq!(p.find_free(0x1000, 0x1000, None), Some(PhysAddr(0x7fff_f000)));
        assert_eq!(p.find_free(0x1000, 0x1000, window(0x6400_0000, 0x6800_0000)), Some(PhysAddr(0x67ff_f000)));
        // Larger than any contiguous RAM run (64 + 128 + 256 MiB are contiguous: 448 MiB).
        assert_eq!(p.find_free(512 << 20, 0x1000, None), None);
        assert_eq!(p.find_free(448 << 20, 0x1000, None), Some(PhysAddr(0x6400_0000)));
    }

    #[test]
    fn least_clearing_takes_the_smallest_untyped_then_the_highest() {
        let p = pool();
        // Every RAM untyped is cleared whole at its first retype: the smallest one that fits
        // costs least, whatever the size asked for.
        let [at_64m, at_128m, at_256m] = [0x6400_0000, 0x6800_0000, 0x7000_0000].map(PhysAddr);
        assert_eq!(p.find_least_clearing(0x1000, 0x1000, None), Some(at_64m));
        assert_eq!(p.clearing_cost(at_64m, 0x1000, KindRequest::Ram), Ok(64 << 20));
        assert_eq!(p.clearing_cost(PhysAddr(0x7fff_f000), 0x1000, KindRequest::Ram), Ok(256 << 20));
        // 256 MiB: the 256 MiB untyped exactly; across the 128 MiB and 256 MiB untypeds it
        // would clear 384 MiB.
        assert_eq!(p.find_least_clearing(256 << 20, 2 << 20, None), Some(at_256m));
        assert_eq!(p.clearing_cost(at_128m, 256 << 20, KindRequest::Ram), Ok(384 << 20));
        // 128 MiB: the 128 MiB untyped, not the top of the 256 MiB one (which `find_free`
        // takes).
        assert_eq!(p.find_least_clearing(128 << 20, 2 << 20, None), Some(at_128m));
        assert_eq!(p.find_free(128 << 20, 2 << 20, None), Some(PhysAddr(0x7800_0000)));
        // Inside a window, the cheapest there.
        assert_eq!(p.find_least_clearing(0x1000, 0x1000, window(0x6800_0000, 0x8000_0000)), Some(at_128m));
        // Larger than any contiguous RAM run; the whole run.
        assert_eq!(p.find_least_clearing(512 << 20, 0x1000, None), None);
        assert_eq!(p.find_least_clearing(448 << 20, 0x1000, None), Some(at_64m));
        assert_eq!(p.find_least_clearing(0x1000, 0x3000, None), None, "alignment not a power of two");
    }

    #[test]
    fn least_clearing_prefers_memory_the_kernel_cleared_already() {
        // The model's QEMU virt boot; the pool gets three of its RAM untypeds (as `pool()`).
        let mut m = sel4_model::Model::qemu_arm_virt();
        let mine = [0x6400_0000, 0x6800_0000, 0x7000_0000];
        let list: Vec<_> = m
            .untyped_slots()
            .into_iter()
            .filter(|(_, d)| mine.contains(&d.paddr.get()))
            .map(|(s, d)| (s.cap(), d))
            .collect();
        assert_eq!(list.len(), 3);
        let mut p = UntypedPool::new(list, m.bootinfo().empty(), FAN).unwrap();
        take(&mut p, &mut m, PhysAddr(0x6400_0000), 0x1000);
        assert_eq!(m.counters().bytes_zeroed, 64 << 20, "the first retype cleared the whole untyped");
        // The rest of that untyped is clean now: a second page there clears nothing, and the
        // highest clean page wins.
        assert_eq!(p.find_least_clearing(0x1000, 0x1000, None), Some(PhysAddr(0x67ff_f000)));
        assert_eq!(p.clearing_cost(PhysAddr(0x67ff_f000), 0x1000, KindRequest::Ram), Ok(0));
        // 64 MiB does not fit in what is left of it: the 128 MiB untyped, at its top (a
        // fresh untyped's base costs as much to clear, and the top is higher).
        let at = p.find_least_clearing(64 << 20, 2 << 20, None).unwrap();
        assert_eq!(p.clearing_cost(at, 64 << 20, KindRequest::Ram), Ok(128 << 20));
        assert!((PhysAddr(0x6800_0000)..PhysAddr(0x7000_0000)).contains(&at), "{at:#x}");
        let before = m.counters().bytes_zeroed;
        take(&mut p, &mut m, at, 64 << 20);
        assert_eq!(m.counters().bytes_zeroed - before, 128 << 20, "as predicted");
        // Freed, the untyped keeps the free index its use left: the kernel clears up to it
        // again at the next retype, and the pool says so.
        p.free(&mut m, at, 64 << 20, Purpose::Region).unwrap();
        let again = p.clearing_cost(at, 64 << 20, KindRequest::Ram).unwrap();
        let before = m.counters().bytes_zeroed;
        take(&mut p, &mut m, at, 64 << 20);
        assert_eq!(m.counters().bytes_zeroed - before, again);
        assert!(again > 0 && again <= 128 << 20, "{again:#x}");
    }
}
