//! Capability slots, the mapping database (the kernel's capability derivation tree, kept as
//! the kernel keeps it: one doubly linked list in which a cap's descendants follow it),
//! CSpace lookups, deletion with finalisation, and revocation.
//!
//! Owns `Model::ctes`; reaches into object state only through the finalisation hooks of the
//! other modules.

use sel4::Error;

use crate::Model;
use crate::caps::{ModelCap, mask};
use crate::objects::{Container, IrqState, SlotRef, TCB_SLOTS};

/// One capability slot: the cap and its place in the mapping database.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cte {
    pub cap: ModelCap,
    pub prev: Option<SlotRef>,
    pub next: Option<SlotRef>,
    pub revocable: bool,
    pub first_badged: bool,
}

/// Why a CSpace walk failed (the kernel's lookup faults).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum LookupFault {
    InvalidRoot,
    GuardMismatch { bits_left: u32 },
    DepthMismatch { bits_left: u32 },
}

impl Model {
    // ---- slots ----

    pub(crate) fn cap_at(&self, s: SlotRef) -> ModelCap {
        self.ctes.get(&s).map_or(ModelCap::Null, |c| c.cap)
    }

    pub(crate) fn set_cap(&mut self, s: SlotRef, cap: ModelCap) {
        let cte = self.ctes.get_mut(&s).expect("set_cap on an empty slot");
        cte.cap = cap;
    }

    /// `write_slot` of the boot code: a revocable cap with no relatives.
    pub(crate) fn write_slot(&mut self, s: SlotRef, cap: ModelCap) {
        self.ctes.insert(s, Cte { cap, prev: None, next: None, revocable: true, first_badged: true });
    }

    fn link_prev(&mut self, s: Option<SlotRef>, next: Option<SlotRef>) {
        if let Some(s) = s {
            self.ctes.get_mut(&s).expect("MDB link to an empty slot").next = next;
        }
    }

    fn link_next(&mut self, s: Option<SlotRef>, prev: Option<SlotRef>) {
        if let Some(s) = s {
            self.ctes.get_mut(&s).expect("MDB link to an empty slot").prev = prev;
        }
    }

    /// `cteInsert`: `cap` derived from the cap in `src` goes into the empty slot `dest`,
    /// right after `src` in the database.
    pub(crate) fn cte_insert(&mut self, cap: ModelCap, src: SlotRef, dest: SlotRef) {
        let src_cte = self.ctes[&src];
        debug_assert!(!self.ctes.contains_key(&dest), "cteInsert to a full slot");
        let revocable = cap.is_revocable(&src_cte.cap);
        // A child untyped covering all of its parent makes the parent unusable for retype.
        if let (
            ModelCap::Untyped { paddr: sp, size_bits: sb, device, .. },
            ModelCap::Untyped { paddr: np, size_bits: nb, .. },
        ) = (src_cte.cap, cap)
            && sp == np
            && sb == nb
        {
            let full = max_free_index(sb);
            self.set_cap(src, ModelCap::Untyped { paddr: sp, size_bits: sb, free_index: full, device });
        }
        self.ctes.insert(dest, Cte { cap, prev: Some(src), next: src_cte.next, revocable, first_badged: revocable });
        self.link_prev(Some(src), Some(dest));
        self.link_next(src_cte.next, Some(dest));
    }

    /// `insertNewCap`: a freshly created object's cap, a revocable child of `parent`.
    pub(crate) fn insert_new_cap(&mut self, parent: SlotRef, dest: SlotRef, cap: ModelCap) {
        let next = self.ctes[&parent].next;
        self.ctes.insert(dest, Cte { cap, prev: Some(parent), next, revocable: true, first_badged: true });
        self.link_prev(Some(parent), Some(dest));
        self.link_next(next, Some(dest));
    }

    /// `cteMove`: the cap and its database position move from `src` to the empty `dest`.
    pub(crate) fn cte_move(&mut self, cap: ModelCap, src: SlotRef, dest: SlotRef) {
        let mut cte = self.ctes.remove(&src).expect("cteMove from an empty slot");
        cte.cap = cap;
        let (prev, next) = (cte.prev, cte.next);
        self.ctes.insert(dest, cte);
        self.link_prev(prev, Some(dest));
        self.link_next(next, Some(dest));
    }

    /// `emptySlot`: unlink and clear; `cleanup_irq` is the IRQ whose last handler cap this
    /// was (`postCapDeletion`).
    fn empty_slot(&mut self, s: SlotRef, cleanup_irq: Option<u64>) {
        let Some(cte) = self.ctes.remove(&s) else { return };
        self.link_prev(cte.prev, cte.next);
        self.link_next(cte.next, cte.prev);
        if let Some(n) = cte.next {
            self.ctes.get_mut(&n).expect("linked").first_badged |= cte.first_badged;
        }
        if let Some(irq) = cleanup_irq {
            self.irq_state[irq as usize] = IrqState::Inactive;
        }
    }

    /// `isMDBParentOf(a, b)`.
    pub(crate) fn is_mdb_parent_of(&self, a: SlotRef, b: SlotRef) -> bool {
        let (ca, cb) = (&self.ctes[&a], &self.ctes[&b]);
        if !ca.revocable || !ca.cap.same_region_as(&cb.cap) {
            return false;
        }
        match ca.cap {
            ModelCap::Endpoint { badge, .. } | ModelCap::Notification { badge, .. } if badge != 0 => {
                let b_badge = match cb.cap {
                    ModelCap::Endpoint { badge, .. } | ModelCap::Notification { badge, .. } => badge,
                    _ => return false,
                };
                badge == b_badge && !cb.first_badged
            }
            _ => true,
        }
    }

    /// `ensureNoChildren`: `RevokeFirst` if the next cap in the database descends from `s`.
    pub(crate) fn ensure_no_children(&self, s: SlotRef) -> Result<(), Error> {
        match self.ctes.get(&s).and_then(|c| c.next) {
            Some(n) if self.is_mdb_parent_of(s, n) => Err(Error::RevokeFirst),
            _ => Ok(()),
        }
    }

    /// Whether `s` has a descendant (the kernel's test: the next entry descends from it).
    pub(crate) fn has_children(&self, s: SlotRef) -> bool {
        self.ensure_no_children(s).is_err()
    }

    /// `ensureEmptySlot`.
    pub(crate) fn ensure_empty(&self, s: SlotRef) -> Result<(), Error> {
        if self.ctes.contains_key(&s) { Err(Error::DeleteFirst) } else { Ok(()) }
    }

    /// `isFinalCapability`: no neighbour in the database names the same object.
    pub(crate) fn is_final(&self, s: SlotRef) -> bool {
        let cte = &self.ctes[&s];
        let same = |o: Option<SlotRef>| o.is_some_and(|o| self.ctes[&o].cap.same_object_as(&cte.cap));
        let prev_same = cte.prev.is_some_and(|p| self.ctes[&p].cap.same_object_as(&cte.cap));
        !prev_same && !same(cte.next)
    }

    // ---- lookups ----

    /// `resolveAddressBits`: walk from `node` through `n_bits` bits of `cptr`. Returns the
    /// slot reached and the bits left (non-zero when the walk stopped at a non-CNode cap).
    pub(crate) fn resolve_address_bits(
        &self,
        node: ModelCap,
        cptr: u64,
        mut n_bits: u32,
    ) -> Result<(SlotRef, u32), LookupFault> {
        let ModelCap::CNode { mut paddr, mut radix, mut guard_size, mut guard } = node else {
            return Err(LookupFault::InvalidRoot);
        };
        loop {
            let level = radix + guard_size;
            let g = (cptr >> (n_bits.wrapping_sub(guard_size) & 63)) & mask(guard_size);
            if guard_size > n_bits || g != guard {
                return Err(LookupFault::GuardMismatch { bits_left: n_bits });
            }
            if level > n_bits {
                return Err(LookupFault::DepthMismatch { bits_left: n_bits });
            }
            let shift = n_bits - level;
            let offset = if shift >= 64 { 0 } else { (cptr >> shift) & mask(radix) };
            let slot = SlotRef::cnode(paddr.0, offset);
            if n_bits == level {
                return Ok((slot, 0));
            }
            n_bits -= level;
            match self.cap_at(slot) {
                ModelCap::CNode { paddr: p, radix: r, guard_size: gs, guard: gd } => {
                    (paddr, radix, guard_size, guard) = (p, r, gs, gd);
                }
                _ => return Ok((slot, n_bits)),
            }
        }
    }

    /// `lookupSlot` in the current thread's CSpace: the slot a CPtr names. A lookup fault
    /// here is a cap fault of the root task, which has no fault handler: the kernel would
    /// suspend it, so the model stops the test with a message naming the CPtr.
    pub(crate) fn lookup_slot(&self, cptr: u64, role: &str) -> SlotRef {
        let root = self.cap_at(SlotRef::tcb(self.root_tcb, crate::objects::TCB_CTABLE));
        match self.resolve_address_bits(root, cptr, 64) {
            Ok((slot, _)) => slot,
            Err(f) => panic!(
                "sel4-model: cap fault: CPtr {cptr:#x} ({role}) does not resolve in the root task's CSpace ({f:?}); \
                 seL4 would deliver a cap fault and, with no fault handler, suspend the root task"
            ),
        }
    }

    /// `lookupSlotForCNodeOp` (source or target): the slot `(root, index, depth)` names.
    pub(crate) fn lookup_slot_for_cnode_op(&self, root: ModelCap, index: u64, depth: u64) -> Result<SlotRef, Error> {
        if !matches!(root, ModelCap::CNode { .. }) {
            return Err(Error::FailedLookup);
        }
        if !(1..=64).contains(&depth) {
            return Err(Error::RangeError);
        }
        match self.resolve_address_bits(root, index, depth as u32) {
            Ok((slot, 0)) => Ok(slot),
            Ok(_) | Err(_) => Err(Error::FailedLookup),
        }
    }

    // ---- deletion ----

    /// `cteDelete(slot, exposed = true)`: finalise the cap (if it is the last one to its
    /// object, the object goes) and empty the slot.
    pub(crate) fn cte_delete(&mut self, s: SlotRef) {
        let Some(cte) = self.ctes.get(&s) else { return };
        let cap = cte.cap;
        if let ModelCap::Zombie { .. } = cap {
            // Reached again from inside its own finalisation: the outer call owns the object.
            self.empty_slot(s, None);
            return;
        }
        let is_final = self.is_final(s);
        let cleanup = self.finalise(s, cap, is_final);
        self.empty_slot(s, cleanup);
    }

    /// `cteDeleteOne`: delete a cap that needs no long-running finalisation (endpoint and
    /// notification caps held by the kernel).
    pub(crate) fn cte_delete_one(&mut self, s: SlotRef) {
        self.cte_delete(s);
    }

    /// `cteRevoke`: delete every descendant of `s`.
    pub(crate) fn cte_revoke(&mut self, s: SlotRef) {
        while let Some(next) = self.ctes.get(&s).and_then(|c| c.next) {
            if !self.is_mdb_parent_of(s, next) {
                break;
            }
            self.cte_delete(next);
        }
    }

    /// `finaliseCap` and the object clean-up it implies. Returns the IRQ to deactivate once
    /// the slot is empty.
    fn finalise(&mut self, s: SlotRef, cap: ModelCap, is_final: bool) -> Option<u64> {
        match cap {
            ModelCap::Endpoint { paddr, .. } if is_final => self.endpoint_finalise(paddr.0),
            ModelCap::Notification { paddr, .. } if is_final => self.ntfn_finalise(paddr.0),
            ModelCap::CNode { paddr, radix, .. } if is_final => {
                // The kernel turns the cap into a Zombie and deletes the slots from the last.
                let size_bits = radix + sel4::object::SLOT_BITS;
                self.set_cap(s, ModelCap::Zombie { paddr, size_bits });
                self.delete_node_contents(Container::CNode(paddr.0));
                self.cnodes.remove(&paddr.0);
            }
            ModelCap::Tcb { paddr } if is_final => {
                assert!(
                    paddr.0 != self.root_tcb,
                    "sel4-model: the root task deleted the last cap to its own TCB; seL4 would suspend it for good"
                );
                self.tcb_unbind_notification(paddr.0);
                self.suspend(paddr.0);
                if let Some(v) = self.tcbs[&paddr.0].vcpu {
                    self.dissociate_vcpu(v, paddr.0);
                }
                self.set_cap(s, ModelCap::Zombie { paddr, size_bits: sel4::generated::object_bits::TCB });
                self.delete_node_contents(Container::Tcb(paddr.0));
                self.tcbs.remove(&paddr.0);
            }
            ModelCap::IrqHandler { irq } if is_final => {
                self.cte_delete_one(SlotRef { node: Container::IrqNode, index: irq });
                return Some(irq);
            }
            ModelCap::AsidPool { paddr, asid_base } if is_final => {
                let high = (asid_base >> crate::vspace::ASID_LOW_BITS) as usize;
                if self.asid_table[high] == Some(paddr.0) {
                    self.asid_table[high] = None;
                }
                self.asid_pools.remove(&paddr.0);
            }
            ModelCap::VSpace { paddr, asid } if is_final => {
                if let Some(asid) = asid {
                    self.delete_asid(asid, paddr.0);
                }
                self.tables.remove(&paddr.0);
            }
            ModelCap::PageTable { paddr, mapped } if is_final => {
                if let Some(m) = mapped {
                    self.unmap_page_table(m.asid, m.vaddr.0, paddr.0);
                }
                self.tables.remove(&paddr.0);
            }
            ModelCap::Frame { paddr, size, mapped: Some(m), .. } => {
                self.unmap_page(size, m.asid, m.vaddr.0, paddr);
            }
            ModelCap::VCpu { paddr } if is_final => {
                if let Some(t) = self.vcpus[&paddr.0].tcb {
                    self.dissociate_vcpu(paddr.0, t);
                }
                self.vcpus.remove(&paddr.0);
            }
            _ => {}
        }
        None
    }

    /// Deletes every cap held in `node`, highest slot first (as `reduceZombie` does).
    fn delete_node_contents(&mut self, node: Container) {
        let lo = SlotRef { node, index: 0 };
        let hi = SlotRef { node, index: u64::MAX };
        while let Some((&s, _)) = self.ctes.range(lo..=hi).next_back() {
            self.cte_delete(s);
        }
    }

    /// Number of slots of a container, for validity checks.
    pub(crate) fn node_slots(&self, node: Container) -> Option<u64> {
        match node {
            Container::CNode(base) => self.cnodes.get(&base).map(|r| 1u64 << r),
            Container::Tcb(base) => self.tcbs.contains_key(&base).then_some(TCB_SLOTS),
            Container::IrqNode => Some(self.platform.max_irq + 1),
        }
    }
}

/// `MAX_FREE_INDEX(size_bits)`.
pub(crate) fn max_free_index(size_bits: u32) -> u64 {
    1u64 << (size_bits - sel4::object::MIN_UNTYPED_BITS)
}
