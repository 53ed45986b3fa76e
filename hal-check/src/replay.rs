//! The host side of the differential run: [`run_on_model_with`] sets up a HAL over
//! `sel4_model::Model` exactly as the root task sets up its own over the real kernel (the
//! untyped and slots of the bootinfo its runtime left it, a [`HalShare`]; [`run_on_model`]:
//! all of them) and runs [`crate::run_all`] with the same configuration, collecting the
//! trace; [`model_agrees`] is the per-operation check of the
//! model's own view (watermarks, children, free slots, invariants) against the pool.
//!
//! Host only (`std`); owns the model it is given.

extern crate std;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::format;

use hal_sel4::{HalConfig, Sel4Hal};
use sel4::{BootInfo, SlotRegion};
use sel4_model::Model;

use crate::diff::HalShare;
use crate::{Config, Counting, Driver, counting, run_all};

/// A HAL over `model` given all of its bootinfo, and its slot region.
pub fn hal_over_model(model: Model) -> (Sel4Hal<Counting<Model>>, SlotRegion) {
    let bytes = model.bootinfo_bytes().to_vec();
    let bi = BootInfo::from_bytes(&bytes).expect("the model's bootinfo parses");
    hal_over_model_with(model, &HalShare::whole(&bi))
}

/// A HAL over `model` given `share` of its bootinfo, as the root task's was, and its slot
/// region.
pub fn hal_over_model_with(model: Model, share: &HalShare) -> (Sel4Hal<Counting<Model>>, SlotRegion) {
    let bytes = model.bootinfo_bytes().to_vec();
    let bi = BootInfo::from_bytes(&bytes).expect("the model's bootinfo parses");
    let hal = Sel4Hal::new(counting(model), share.untyped(&bi), HalConfig::new(share.slots))
        .expect("the model's bootinfo is a valid HAL setup");
    (hal, share.slots)
}

/// A per-operation hook that panics, naming the operation, when the model disagrees with
/// the pool: an untyped's watermark or whether it has children, the number of free slots
/// (`outside_free`: the free slots outside the pool's region, constant), or (every 25
/// operations) the model's own invariants.
pub fn model_agrees(outside_free: u64) -> impl FnMut(&Sel4Hal<Counting<Model>>) {
    let mut n = 0u64;
    move |h| {
        n += 1;
        let m = &h.kernel().kernel;
        for node in h.pool().untyped_nodes() {
            assert_eq!(
                m.watermark(node.cap.slot()),
                Some(node.watermark.unwrap_or(0)),
                "operation {n}: watermark of {node:x?}"
            );
            assert_eq!(m.descendants(node.cap.slot()) > 0, node.has_children, "operation {n}: children of {node:x?}");
        }
        assert_eq!(m.free_slots(), h.pool().free_slots() + outside_free, "operation {n}: free slots");
        if n.is_multiple_of(25)
            && let Err(e) = m.check_invariants()
        {
            panic!("operation {n}: model invariants: {e:#?}");
        }
    }
}

/// A run on the model.
#[derive(Debug)]
pub struct Replay {
    /// The trace lines, without prefix.
    pub trace: Vec<String>,
    /// Failed parts (scenarios, random sequence, last check).
    pub failures: usize,
    /// The first failure, named.
    pub first_failure: Option<String>,
}

/// Runs [`run_all`] with `config` on `model`, the HAL given all of its bootinfo; with
/// `check_each_op`, [`model_agrees`] after every operation, and the model's invariants at the
/// end either way.
pub fn run_on_model(model: Model, config: &Config, check_each_op: bool) -> Replay {
    let bytes = model.bootinfo_bytes().to_vec();
    let bi = BootInfo::from_bytes(&bytes).expect("the model's bootinfo parses");
    let share = HalShare::whole(&bi);
    run_on_model_with(model, &share, config, check_each_op)
}

/// [`run_on_model`] with the HAL given `share` of the bootinfo.
pub fn run_on_model_with(model: Model, share: &HalShare, config: &Config, check_each_op: bool) -> Replay {
    let (hal, region) = hal_over_model_with(model, share);
    let outside = hal.kernel().kernel.free_slots() - hal.pool().free_slots();
    let mut trace = Vec::new();
    let mut sink = |s: &str| trace.push(s.to_string());
    let mut hook = model_agrees(outside);
    let mut d = Driver::new(hal, region, &mut sink);
    if check_each_op {
        d.set_after_op(&mut hook);
    }
    let out = run_all(&mut d, config);
    let hal = d.into_hal();
    if let Err(e) = hal.kernel().kernel.check_invariants() {
        panic!("model invariants at the end: {e:#?}");
    }
    let first_failure = out.first_failure().map(|(n, f)| format!("{n}: {f}"));
    Replay { trace, failures: out.failures(), first_failure }
}
