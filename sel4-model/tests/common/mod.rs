//! Helpers shared by the model's integration tests.
#![allow(dead_code)]

use sel4::bootinfo::UntypedDesc;
use sel4::kernel::CNodeSlot;
use sel4::{Kernel, ObjectBlueprint, Slot};
use sel4_model::Model;

/// The QEMU virt model, with its invariants checked.
pub fn boot() -> Model {
    let m = Model::qemu_arm_virt();
    m.check_invariants().unwrap();
    m
}

/// The first RAM untyped of exactly `size_bits`.
pub fn ram_untyped(m: &Model, size_bits: u32) -> (Slot, UntypedDesc) {
    m.untyped_slots().into_iter().find(|(_, d)| !d.is_device && d.size_bits == size_bits).expect("platform has one")
}

/// The first device untyped of exactly `size_bits`.
pub fn device_untyped(m: &Model, size_bits: u32) -> (Slot, UntypedDesc) {
    m.untyped_slots().into_iter().find(|(_, d)| d.is_device && d.size_bits == size_bits).expect("platform has one")
}

/// The `n`th slot of the bootinfo's empty region.
pub fn free(m: &Model, n: u64) -> Slot {
    Slot::new(m.bootinfo().empty().start.index() + n)
}

/// A root CNode slot as a CNode operation names it.
pub fn root(slot: Slot) -> CNodeSlot {
    CNodeSlot::root(slot)
}

/// Retypes one object of `b` from `ut` into `dest`, which must succeed.
pub fn make(m: &mut Model, ut: Slot, b: ObjectBlueprint, dest: Slot) {
    m.untyped_retype(ut.cap(), b, dest, 1).unwrap_or_else(|e| panic!("retype {b:?} into {dest:?}: {e}"));
}

/// Panics with the violations if the model's invariants do not hold.
pub fn check(m: &Model) {
    if let Err(v) = m.check_invariants() {
        panic!("invariants violated:\n{}", v.join("\n"));
    }
}
