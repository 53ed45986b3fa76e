//! What must come back after a refused or undone operation ([`Snapshot`]), and the full
//! check of the HAL against the kernel ([`full_check`]): the pool's invariants, every frame
//! where `Page_GetAddress` says it is, and every slot the pool counts as free really empty.
//!
//! Watermarks: seL4 has no call that reads an untyped's free index, so on the real kernel the
//! snapshot holds the pool's record of them, and the kernel's agreement shows where the next
//! retype puts its objects (every frame's address is checked with `Page_GetAddress`); on the
//! model, `crate::replay::model_agrees` compares every node's watermark directly.
//!
//! Owns nothing. The kernel calls it makes leave the kernel as they found it: a free slot is
//! probed by copying a capability into it and deleting the copy again.

use alloc::format;
use alloc::vec::Vec;

use hal_sel4::Sel4Hal;
use sel4::{CNodeSlot, CapRights, Kernel, Slot, SlotRegion, init_cap};

use crate::Failure;
use crate::counting::Counting;

/// One untyped node as the pool records it: `(paddr, size_bits, slot, watermark, has_children)`.
pub type NodeRecord = (u64, u32, u64, Option<u64>, bool);

/// The HAL's bookkeeping that a refused operation must not change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Free slots in the pool's region.
    pub free_slots: u64,
    /// Live allocations (regions, paging frames, objects, the window's tables).
    pub allocations: usize,
    /// Untyped nodes below the roots.
    pub child_nodes: usize,
    /// Frames in the capability table.
    pub frames: usize,
    /// Frames mapped into the window.
    pub mapped: usize,
    /// Translation tables the window owns.
    pub window_tables: usize,
    /// Number of untyped nodes.
    pub nodes: usize,
    /// A digest of every untyped node's record (address, size, slot, watermark, children):
    /// a digest rather than the list, so a snapshot stays small on the root task's heap.
    pub nodes_digest: u64,
}

/// FNV-1a over the words of each record, in the pool's order.
fn digest(records: impl Iterator<Item = NodeRecord>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u64| {
        for b in w.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (paddr, bits, slot, wm, children) in records {
        eat(paddr);
        eat(u64::from(bits));
        eat(slot);
        eat(wm.map_or(u64::MAX, |w| w));
        eat(u64::from(children));
    }
    h
}

impl Snapshot {
    /// The snapshot of `hal` now.
    pub fn of<K: Kernel>(hal: &Sel4Hal<K>) -> Snapshot {
        let st = hal.pool().stats();
        Snapshot {
            free_slots: st.free_slots,
            allocations: st.allocations,
            child_nodes: st.child_nodes,
            frames: hal.table().len(),
            mapped: hal.table().mapped_len(),
            window_tables: hal.window().tables(),
            nodes: hal.pool().untyped_nodes().count(),
            nodes_digest: digest(
                hal.pool()
                    .untyped_nodes()
                    .map(|n| (n.paddr.get(), n.size_bits, n.cap.slot().index(), n.watermark, n.has_children)),
            ),
        }
    }

    /// The first difference from `other`, for a failure message.
    pub fn difference(&self, other: &Snapshot) -> Option<alloc::string::String> {
        if self == other {
            return None;
        }
        let counts = |s: &Snapshot| (s.free_slots, s.allocations, s.child_nodes, s.frames, s.mapped, s.window_tables);
        if counts(self) != counts(other) {
            return Some(format!(
                "(free slots, allocations, child nodes, frames, mapped, tables) {:?} -> {:?}",
                counts(self),
                counts(other)
            ));
        }
        Some(format!(
            "untyped nodes (address, size, slot, watermark or children): {} nodes, digest {:#x} -> {} nodes, digest {:#x}",
            self.nodes, self.nodes_digest, other.nodes, other.nodes_digest
        ))
    }
}

/// The slots the pool's records say hold a capability: every untyped node below a root and
/// every object of every allocation. Sorted.
pub fn used_slots<K: Kernel>(hal: &Sel4Hal<K>) -> Vec<u64> {
    let mut used: Vec<u64> = hal.pool().untyped_nodes().filter(|n| !n.is_root).map(|n| n.cap.slot().index()).collect();
    for a in hal.pool().allocations() {
        used.extend((0..a.objects).map(|i| a.first_slot.index() + i));
    }
    used.sort_unstable();
    used
}

/// What a passing [`full_check`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSummary {
    /// Frames whose address the kernel confirmed.
    pub frames: usize,
    /// Slots the pool uses.
    pub used_slots: u64,
    /// Free slots the kernel confirmed empty (0 when the probe was skipped).
    pub probed_free: u64,
}

/// Checks the pool's invariants, every frame against `Page_GetAddress`, that the pool's slot
/// records add up to its region, and (with `probe_slots`) that every slot of `region` the
/// pool counts as free is empty in the kernel: a copy of the initial TCB capability goes in
/// and is deleted again, so a slot holding anything makes the copy fail.
///
/// The probe's calls bypass the counters of `Counting`, so costs recorded around operations
/// are not disturbed.
pub fn full_check<K: Kernel>(
    hal: &mut Sel4Hal<Counting<K>>,
    region: SlotRegion,
    probe_slots: bool,
) -> Result<CheckSummary, Failure> {
    hal.check_against_kernel().map_err(|e| Failure::new(format!("HAL against the kernel: {e}")))?;
    let used = used_slots(hal);
    if used.windows(2).any(|w| w[0] == w[1]) {
        return Err(Failure::new("a slot is recorded twice".into()));
    }
    if let Some(&s) = used.iter().find(|&&s| !region.contains(Slot::new(s))) {
        return Err(Failure::new(format!("slot {s} in use outside the HAL's region")));
    }
    let used_n = used.len() as u64;
    if used_n + hal.pool().free_slots() != region.len() {
        return Err(Failure::new(format!(
            "{used_n} slots in use + {} free != {} in the region",
            hal.pool().free_slots(),
            region.len()
        )));
    }
    let mut probed = 0;
    if probe_slots {
        let k = &mut hal.kernel_mut().kernel;
        let mut next_used = used.iter().peekable();
        for s in region.start.index()..region.end.index() {
            if next_used.peek() == Some(&&s) {
                next_used.next();
                continue;
            }
            let dest = CNodeSlot::root(Slot::new(s));
            if let Err(e) = k.cnode_copy(dest, init_cap::TCB, CapRights::ALL) {
                return Err(Failure::new(format!(
                    "slot {s} is free in the pool but the kernel refused a copy into it: {e}"
                )));
            }
            if let Err(e) = k.cnode_delete(dest) {
                return Err(Failure::new(format!("slot {s}: deleting the probe copy failed: {e}")));
            }
            probed += 1;
        }
    }
    Ok(CheckSummary { frames: hal.table().len(), used_slots: used_n, probed_free: probed })
}
