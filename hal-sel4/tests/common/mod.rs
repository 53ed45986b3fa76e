//! Helpers shared by the model tests: a HAL over the QEMU virt model, snapshots of
//! everything that must come back after a failed or undone operation, and full checks.
#![allow(dead_code)]

pub mod faulty;

use hal_sel4::pool::UntypedPool;
use hal_sel4::table::CapTable;
use hal_sel4::{HalConfig, Sel4Hal};
use sel4::{Kernel, Slot, SlotRegion};
use sel4_model::Model;

/// A HAL over a freshly booted QEMU virt model, owning every untyped and every empty slot.
pub fn model_hal() -> Sel4Hal<Model> {
    let m = Model::qemu_arm_virt();
    let empty = m.bootinfo().empty();
    hal_over(m, empty)
}

/// As [`model_hal`], with only `n` slots for the HAL.
pub fn model_hal_with_slots(n: u64) -> Sel4Hal<Model> {
    let m = Model::qemu_arm_virt();
    let start = m.bootinfo().empty().start;
    hal_over(m, SlotRegion { start, end: Slot::new(start.index() + n) })
}

/// A HAL over `k` (a model or a wrapper of one) with the model's untyped list.
pub fn hal_over<K: Kernel>(k: K, slots: SlotRegion) -> Sel4Hal<K> {
    let m = Model::qemu_arm_virt();
    let untyped = m.untyped_slots().into_iter().map(|(s, d)| (s.cap(), d));
    Sel4Hal::new(k, untyped, HalConfig::new(slots)).expect("the model's untyped list is valid")
}

/// Everything a failed operation must leave as it was.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Snapshot {
    pub model_free_slots: u64,
    pub hal_free_slots: u64,
    pub live_objects: usize,
    /// Every untyped the model has in a slot the HAL knows: (slot, watermark).
    pub watermarks: Vec<(u64, Option<u64>)>,
    pub frames: usize,
    pub allocations: usize,
    pub child_nodes: usize,
}

pub fn snapshot(m: &Model, pool: &UntypedPool, table: &CapTable) -> Snapshot {
    let mut watermarks: Vec<(u64, Option<u64>)> =
        m.untyped_slots().iter().map(|(s, _)| (s.index(), m.watermark(*s))).collect();
    for n in pool.untyped_nodes() {
        if !n.is_root {
            watermarks.push((n.cap.slot().index(), m.watermark(n.cap.slot())));
        }
    }
    watermarks.sort();
    let st = pool.stats();
    Snapshot {
        model_free_slots: m.free_slots(),
        hal_free_slots: st.free_slots,
        live_objects: m.live_objects(),
        watermarks,
        frames: table.len(),
        allocations: st.allocations,
        child_nodes: st.child_nodes,
    }
}

/// The counts of a [`Snapshot`] and the boot untypeds' watermarks, without per-node
/// queries (cheap enough to take before every operation of a long random sequence; the
/// per-node picture is compared with the model by [`check_model`]).
pub fn snap_counts(h: &Sel4Hal<Model>) -> Snapshot {
    let m = h.kernel();
    let st = h.pool().stats();
    Snapshot {
        model_free_slots: m.free_slots(),
        hal_free_slots: st.free_slots,
        live_objects: 0,
        watermarks: m.untyped_slots().iter().map(|(s, _)| (s.index(), m.watermark(*s))).collect(),
        frames: h.table().len(),
        allocations: st.allocations,
        child_nodes: st.child_nodes,
    }
}

pub fn snap(h: &Sel4Hal<Model>) -> Snapshot {
    snapshot(h.kernel(), h.pool(), h.table())
}

/// The model's own invariants, the pool's, and the pool's picture of every untyped (its
/// watermark) against the model's.
pub fn check_model(m: &Model, pool: &UntypedPool) {
    if let Err(errs) = m.check_invariants() {
        panic!("model invariants: {errs:#?}");
    }
    pool.check().unwrap_or_else(|e| panic!("pool invariants: {e}"));
    for n in pool.untyped_nodes() {
        let wm = m.watermark(n.cap.slot());
        assert_eq!(wm, Some(n.watermark.unwrap_or(0)), "watermark of {n:?}");
        assert_eq!(m.descendants(n.cap.slot()) > 0, n.has_children, "children of {n:?}");
        assert_eq!(m.free_index_bytes(n.cap.slot()), Some(n.free_index), "free index of {n:?}");
    }
}

/// [`check_model`] plus every frame's address from the kernel (`Page_GetAddress`).
pub fn check_all(h: &mut Sel4Hal<Model>) {
    check_model(h.kernel(), h.pool());
    h.check_against_kernel().unwrap_or_else(|e| panic!("HAL against kernel: {e}"));
}

/// Invocations of each kind made by `f`, as (retypes, revokes, total).
pub fn cost<R>(h: &mut Sel4Hal<Model>, f: impl FnOnce(&mut Sel4Hal<Model>) -> R) -> (R, Cost) {
    let c0 = h.kernel().counters().clone();
    let r = f(h);
    let c1 = h.kernel().counters();
    let d = |op| c1.get(op) - c0.get(op);
    let cost =
        Cost { retypes: d(sel4::Op::UntypedRetype), revokes: d(sel4::Op::CNodeRevoke), total: c1.total() - c0.total() };
    (r, cost)
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Cost {
    pub retypes: u64,
    pub revokes: u64,
    pub total: u64,
}
