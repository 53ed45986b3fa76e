//! Property test: long random sequences of retype, copy, mint, move, delete, revoke, ASID
//! assignment, map and unmap keep the model's invariants; a revoke leaves no descendants;
//! revoking every untyped used brings free slots, watermarks and live objects back to where
//! they were at boot.
//!
//! A seeded generator (xorshift) keeps runs reproducible: a failure names the seed and the
//! step, and lists the last operations.

mod common;

use std::collections::VecDeque;

use common::*;
use sel4::kernel::CNodeSlot;
use sel4::{CapRights, Error, Kernel, ObjectBlueprint, Op, Slot, VirtAddr, VmAttributes, init_cap};
use sel4_model::{Model, ModelCap};

/// Operations per run.
const STEPS: usize = 25_000;
/// Root CNode slots the run works in.
const WINDOW: u64 = 160;
/// Full invariant check every this many steps (and after every revoke).
const CHECK_EVERY: usize = 40;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const BLUEPRINTS: [ObjectBlueprint; 17] = [
    ObjectBlueprint::Untyped { size_bits: 12 },
    ObjectBlueprint::Untyped { size_bits: 14 },
    ObjectBlueprint::Untyped { size_bits: 21 },
    ObjectBlueprint::Tcb,
    ObjectBlueprint::Endpoint,
    ObjectBlueprint::Notification,
    ObjectBlueprint::CNode { slot_bits: 1 },
    ObjectBlueprint::CNode { slot_bits: 3 },
    ObjectBlueprint::SmallPage,
    ObjectBlueprint::SmallPage,
    ObjectBlueprint::LargePage,
    ObjectBlueprint::PageTable,
    ObjectBlueprint::PageTable,
    ObjectBlueprint::PageTable,
    ObjectBlueprint::VSpace,
    ObjectBlueprint::VSpace,
    ObjectBlueprint::VCpu,
];

/// Addresses close enough to share tables, plus misaligned and out-of-range ones.
const VADDRS: [u64; 10] = [0, 0x1000, 0x2000, 0x3000, 0x20_0000, 0x4000_0000, 0x4000_1000, 1 << 39, 0x1001, 1 << 44];

struct Run {
    m: Model,
    rng: Rng,
    base: u64,
    untyped: Vec<Slot>,
    log: VecDeque<String>,
    seed: u64,
    step: usize,
    /// Successful retypes.
    made: usize,
    /// Outcomes by operation kind.
    stats: std::collections::BTreeMap<(String, String), usize>,
}

impl Run {
    fn slot(&mut self) -> Slot {
        Slot::new(self.base + self.rng.below(WINDOW))
    }

    /// A destination: mostly a root slot, sometimes a slot of a CNode held in the window.
    fn dest(&mut self) -> CNodeSlot {
        let s = self.slot();
        if self.rng.chance(25)
            && let ModelCap::CNode { radix, .. } = self.m.cap(s)
        {
            return CNodeSlot { cnode: s.cap(), index: self.rng.below(1 << radix), depth: radix as u8 };
        }
        root(self.slot())
    }

    /// Mostly a window slot whose cap satisfies `want` (when there is one), else any slot:
    /// random slots alone rarely line up a frame, a table and a VSpace with an ASID.
    fn slot_where(&mut self, want: impl Fn(&ModelCap) -> bool) -> Slot {
        if self.rng.chance(80) {
            let hits: Vec<Slot> =
                (0..WINDOW).map(|i| Slot::new(self.base + i)).filter(|s| want(&self.m.cap(*s))).collect();
            if !hits.is_empty() {
                return self.rng.pick(&hits);
            }
        }
        self.slot()
    }

    fn is_endpoint(&self, s: Slot) -> bool {
        // Invoking an endpoint cap through an object method is an IPC call (the model panics).
        matches!(self.m.cap(s), ModelCap::Endpoint { .. })
    }

    fn note(&mut self, what: String) {
        if self.log.len() == 12 {
            self.log.pop_front();
        }
        self.log.push_back(what);
    }

    fn fail(&self, msg: &str) -> ! {
        let log: Vec<&String> = self.log.iter().collect();
        panic!("seed {:#x}, step {}: {msg}\nlast operations:\n{log:#?}", self.seed, self.step);
    }

    fn check(&self) {
        if let Err(v) = self.m.check_invariants() {
            self.fail(&format!("invariants violated:\n{}", v.join("\n")));
        }
    }

    fn one(&mut self) {
        let total = self.m.counters().total();
        let r = self.rng.below(100);
        let (what, result): (String, Option<Result<(), Error>>) = match r {
            0..=22 => {
                let ut = if self.rng.chance(70) { self.rng.pick(&self.untyped.clone()) } else { self.slot() };
                let b = self.rng.pick(&BLUEPRINTS);
                let dest = self.slot_where(ModelCap::is_null);
                let n = if self.rng.chance(80) { 1 } else { 1 + self.rng.below(4) };
                if self.is_endpoint(ut) {
                    return;
                }
                let r = self.m.untyped_retype(ut.cap(), b, dest, n);
                self.made += usize::from(r.is_ok());
                (format!("retype {ut:?} {b:?} -> {dest:?} x{n}"), Some(r))
            }
            23..=30 => {
                let (src, dest) = (self.slot_where(|c| !c.is_null()), self.dest());
                let rights = CapRights::from_word(self.rng.below(16));
                if self.is_endpoint(dest.cnode.slot()) {
                    return;
                }
                (format!("copy {src:?} -> {dest:?} {rights:?}"), Some(self.m.cnode_copy(dest, src, rights)))
            }
            31..=36 => {
                let (src, dest) = (self.slot_where(|c| !c.is_null()), self.dest());
                let badge = self.rng.below(4);
                if self.is_endpoint(dest.cnode.slot()) {
                    return;
                }
                (
                    format!("mint {src:?} -> {dest:?} badge {badge}"),
                    Some(self.m.cnode_mint(dest, src, CapRights::ALL, badge)),
                )
            }
            37..=40 => {
                let (src, dest) = (self.slot_where(|c| !c.is_null()), self.dest());
                if self.is_endpoint(dest.cnode.slot()) {
                    return;
                }
                (format!("move {src:?} -> {dest:?}"), Some(self.m.cnode_move(dest, src)))
            }
            41..=48 => {
                let t = self.dest();
                if self.is_endpoint(t.cnode.slot()) {
                    return;
                }
                (format!("delete {t:?}"), Some(self.m.cnode_delete(t)))
            }
            49..=53 => {
                let s = if self.rng.chance(20) { self.rng.pick(&self.untyped.clone()) } else { self.slot() };
                let r = self.m.cnode_revoke(root(s));
                if r.is_ok() && self.m.descendants(s) != 0 {
                    self.fail(&format!("revoke of {s:?} left {} descendants", self.m.descendants(s)));
                }
                (format!("revoke {s:?}"), Some(r))
            }
            54..=59 => {
                let vs = self.slot_where(|c| matches!(c, ModelCap::VSpace { asid: None, .. }));
                (format!("assign {vs:?}"), Some(self.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs.cap())))
            }
            60..=73 => {
                let pt = self.slot_where(|c| matches!(c, ModelCap::PageTable { mapped: None, .. }));
                let vs = self.slot_where(|c| matches!(c, ModelCap::VSpace { asid: Some(_), .. }));
                let v = self.rng.pick(&VADDRS);
                if self.is_endpoint(pt) {
                    return;
                }
                let r = self.m.page_table_map(pt.cap(), vs.cap(), VirtAddr(v), VmAttributes::DEFAULT);
                (format!("pt map {pt:?} in {vs:?} at {v:#x}"), Some(r))
            }
            74..=89 => {
                let f = self.slot_where(|c| matches!(c, ModelCap::Frame { .. }));
                let vs = self.slot_where(|c| matches!(c, ModelCap::VSpace { asid: Some(_), .. }));
                let v = self.rng.pick(&VADDRS);
                if self.is_endpoint(f) {
                    return;
                }
                let r = self.m.page_map(f.cap(), vs.cap(), VirtAddr(v), CapRights::READ_WRITE, VmAttributes::DEFAULT);
                (format!("map {f:?} in {vs:?} at {v:#x}"), Some(r))
            }
            90..=95 => {
                let f = self.slot_where(|c| matches!(c, ModelCap::Frame { mapped: Some(_), .. }));
                if self.is_endpoint(f) {
                    return;
                }
                (format!("unmap {f:?}"), Some(self.m.page_unmap(f.cap())))
            }
            _ => {
                let pt = self.slot_where(|c| matches!(c, ModelCap::PageTable { mapped: Some(_), .. }));
                if self.is_endpoint(pt) {
                    return;
                }
                (format!("pt unmap {pt:?}"), Some(self.m.page_table_unmap(pt.cap())))
            }
        };
        let kind = what.split(' ').next().unwrap_or("").to_string();
        *self.stats.entry((kind, format!("{result:?}"))).or_insert(0) += 1;
        self.note(format!("{what} => {result:?}"));
        if self.m.counters().total() != total + 1 {
            self.fail("an operation was not counted exactly once");
        }
        if what.starts_with("revoke") || self.step.is_multiple_of(CHECK_EVERY) {
            self.check();
        }
    }
}

fn run(seed: u64) {
    let m = boot();
    let base = m.bootinfo().empty().start.index() + 10;
    // RAM untyped of 64 KiB, 256 KiB and 4 MiB, device untyped of 4 KiB and 2 MiB.
    let pick = |size: u32, device: bool| {
        m.untyped_slots().into_iter().find(|(_, d)| d.is_device == device && d.size_bits == size).unwrap().0
    };
    let untyped = vec![pick(16, false), pick(18, false), pick(22, false), pick(12, true), pick(21, true)];
    let start = (m.free_slots(), m.live_objects());
    let mut r = Run {
        m,
        rng: Rng(seed),
        base,
        untyped,
        log: VecDeque::new(),
        seed,
        step: 0,
        made: 0,
        stats: Default::default(),
    };
    for step in 0..STEPS {
        r.step = step;
        r.one();
    }
    r.check();
    // Outcomes per operation, shown with --nocapture: how much of each path the run covered.
    let summary: Vec<String> = r.stats.iter().map(|((k, res), n)| format!("{k} {res}: {n}")).collect();
    eprintln!("seed {seed:#x}: {}", summary.join(", "));
    assert!(r.made > STEPS / 50, "the run must create objects ({} successful retypes)", r.made);
    assert!(r.m.counters().get(Op::PageMap) > 0);
    assert!(r.m.live_objects() > start.1, "the run should leave objects behind before the full revoke");

    // Revoke every untyped the run used: everything it made goes.
    for ut in r.untyped.clone() {
        r.m.cnode_revoke(root(ut)).unwrap();
        assert_eq!(r.m.descendants(ut), 0);
    }
    r.check();
    assert_eq!(
        (r.m.free_slots(), r.m.live_objects()),
        start,
        "seed {seed:#x}: slots and objects after the full revoke"
    );
    for ut in &r.untyped {
        assert_eq!(r.m.watermark(*ut), Some(0), "seed {seed:#x}: {ut:?}");
    }
    // And the untyped are as usable as at boot.
    for (i, ut) in r.untyped.clone().into_iter().enumerate() {
        r.m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, Slot::new(base + i as u64), 1).unwrap();
    }
}

#[test]
fn random_operations_keep_the_invariants_seed_1() {
    run(0x5eed_0001);
}

#[test]
fn random_operations_keep_the_invariants_seed_2() {
    run(0x0dd_ba11_cafe);
}

#[test]
fn random_operations_keep_the_invariants_seed_3() {
    run(0x7357_0003_u64 << 8 | 0x77);
}
