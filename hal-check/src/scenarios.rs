//! The scenarios: each sets up what it needs from the [`Layout`], checks what the HAL and
//! the kernel say, and gives back everything it allocated. Every operation goes through the
//! [`Driver`], so the scenarios are part of the compared trace.
//!
//! Owns nothing between runs. Ranges are chosen from the layout (largest RAM untyped, a pair
//! of touching untypeds, the first device untyped, a hole, a kind boundary), never from one
//! board's addresses.

use alloc::format;
use alloc::vec::Vec;

use hal_sel4::table::TableError;
use hal_sel4::window::MapError;
use hal_sel4::{AllocError, FreeError, HalError, KindRequest, MemoryKind, Objects};
use sel4::{Kernel, ObjectBlueprint, PhysAddr};

use crate::layout::{Layout, Root};
use crate::state::Snapshot;
use crate::trace::Driver;
use crate::{Failure, ensure};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// A scenario's entry.
pub type ScenarioFn<K> = fn(&mut Driver<'_, K>, &Layout) -> Result<(), Failure>;

/// One scenario.
pub struct Scenario<K: Kernel> {
    /// Name in the trace and the report.
    pub name: &'static str,
    /// The scenario.
    pub run: ScenarioFn<K>,
}

/// Every scenario, in the order [`crate::run_all`] runs them.
pub fn all<K: Kernel>() -> [Scenario<K>; 7] {
    [
        Scenario { name: "refusals_leave_nothing_behind", run: refusals_leave_nothing_behind::<K> },
        Scenario { name: "alloc_dealloc_alloc_same_range", run: alloc_dealloc_alloc_same_range::<K> },
        Scenario { name: "overlapping_allocations_refused", run: overlapping_allocations_refused::<K> },
        Scenario { name: "region_spanning_two_untypeds", run: region_spanning_two_untypeds::<K> },
        Scenario { name: "device_region", run: device_region::<K> },
        Scenario { name: "virt_to_phys_matches_page_get_address", run: virt_to_phys_matches_page_get_address::<K> },
        Scenario { name: "kernel_objects_and_paging_frames", run: kernel_objects_and_paging_frames::<K> },
    ]
}

fn need<T>(v: Option<T>, what: &str) -> Result<T, Failure> {
    v.ok_or_else(|| Failure::new(format!("the layout has no {what}")))
}

fn largest(l: &Layout) -> Result<Root, Failure> {
    let r = need(l.largest_ram(), "RAM untyped")?;
    ensure!(r.size_bits >= 24, "the largest RAM untyped ({:#x}, 2^{}) is below 16 MiB", r.paddr, r.size_bits);
    Ok(r)
}

/// What must hold after a scenario gave back everything it allocated: no frame, no mapping,
/// and every slot back except those of the untyped nodes kept as padding and of the
/// window's translation tables (both stay by design, see `hal_sel4::pool` and `window`).
fn balanced(before: &Snapshot, after: &Snapshot) -> Result<(), Failure> {
    let keep = |s: &Snapshot| s.free_slots + s.child_nodes as u64 + s.window_tables as u64;
    ensure!(after.frames == before.frames && after.mapped == before.mapped, "frames left: {before:?} -> {after:?}");
    ensure!(
        after.allocations - after.window_tables == before.allocations - before.window_tables,
        "allocations left: {} -> {}",
        before.allocations,
        after.allocations
    );
    ensure!(
        keep(after) == keep(before),
        "slots leaked: free {} -> {}, padding nodes {} -> {}, tables {} -> {}",
        before.free_slots,
        after.free_slots,
        before.child_nodes,
        after.child_nodes,
        before.window_tables,
        after.window_tables
    );
    Ok(())
}

fn unchanged<K: Kernel>(d: &Driver<'_, K>, before: &Snapshot, what: &str) -> Result<(), Failure> {
    let now = Snapshot::of(d.hal());
    match before.difference(&now) {
        None => Ok(()),
        Some(diff) => Err(Failure::new(format!("{what} changed the HAL: {diff}"))),
    }
}

fn expect_alloc_refused<K: Kernel>(
    d: &mut Driver<'_, K>,
    base: u64,
    size: u64,
    kind: KindRequest,
    want: AllocError,
    via_trait: bool,
) -> Result<(), Failure> {
    let before = Snapshot::of(d.hal());
    let r = d.alloc(base, size, kind);
    ensure!(r == Err(HalError::Alloc(want)), "alloc {base:#x}+{size:#x} {kind:?}: {r:x?}, want {want:x?}");
    ensure!(d.last_cost().total == 0, "refused alloc {base:#x}+{size:#x} made {} kernel calls", d.last_cost().total);
    unchanged(d, &before, "a refused alloc")?;
    if via_trait {
        ensure!(!d.alloc_at(base, size), "alloc_memory_region_at({base:#x}, {size:#x}) said true");
        ensure!(d.last_cost().total == 0, "refused alloc_memory_region_at made kernel calls");
        unchanged(d, &before, "a refused alloc_memory_region_at")?;
    }
    Ok(())
}

fn expect_free_refused<K: Kernel>(d: &mut Driver<'_, K>, base: u64, size: u64, want: FreeError) -> Result<(), Failure> {
    let before = Snapshot::of(d.hal());
    let r = d.dealloc(base, size);
    ensure!(r == Err(HalError::Free(want)), "dealloc {base:#x}+{size:#x}: {r:x?}, want {want:x?}");
    ensure!(d.last_cost().total == 0, "refused dealloc made {} kernel calls", d.last_cost().total);
    unchanged(d, &before, "a refused dealloc")?;
    d.dealloc_at(base, size);
    ensure!(d.last_cost().total == 0, "refused dealloc_memory_region_at made kernel calls");
    unchanged(d, &before, "a refused dealloc_memory_region_at")
}

fn alloc_ok<K: Kernel>(d: &mut Driver<'_, K>, base: u64, size: u64, kind: KindRequest) -> Result<(), Failure> {
    d.alloc(base, size, kind).map(drop).map_err(|e| Failure::new(format!("alloc {base:#x}+{size:#x}: {e}")))
}

fn free_ok<K: Kernel>(d: &mut Driver<'_, K>, base: u64, size: u64) -> Result<(), Failure> {
    d.dealloc(base, size).map(drop).map_err(|e| Failure::new(format!("dealloc {base:#x}+{size:#x}: {e}")))
}

fn check<K: Kernel>(d: &mut Driver<'_, K>) -> Result<(), Failure> {
    d.check().map(drop)
}

/// Every refused operation (malformed, unbacked, mixed, overlapping, wrong kind, bad frees,
/// bad maps) returns its error (the trait's method: `false`), makes no kernel call, and
/// leaves free slots, watermarks and every record as they were.
pub fn refusals_leave_nothing_behind<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let r = largest(l)?;
    let a = (r.paddr + 3 * 4 * KIB, 4 * KIB);
    let b = (r.paddr + r.size() / 2, (r.size() / 4).min(16 * MIB));
    alloc_ok(d, a.0, a.1, KindRequest::Uniform)?;
    alloc_ok(d, b.0, b.1, KindRequest::Uniform)?;
    let in_a = AllocError::InUse { other_base: PhysAddr(a.0), other_size: a.1 };
    let in_b = AllocError::InUse { other_base: PhysAddr(b.0), other_size: b.1 };
    let mut cases: Vec<(u64, u64, KindRequest, AllocError, bool)> = alloc::vec![
        (r.paddr, 0, KindRequest::Uniform, AllocError::Empty { base: PhysAddr(r.paddr) }, true),
        (
            r.paddr + 0x800,
            4 * KIB,
            KindRequest::Uniform,
            AllocError::Unaligned { base: PhysAddr(r.paddr + 0x800), size: 4 * KIB },
            true
        ),
        (
            r.paddr,
            6 * KIB,
            KindRequest::Uniform,
            AllocError::Unaligned { base: PhysAddr(r.paddr), size: 6 * KIB },
            true
        ),
        (
            u64::MAX - 0xfff,
            8 * KIB,
            KindRequest::Uniform,
            AllocError::Overflow { base: PhysAddr(u64::MAX - 0xfff), size: 8 * KIB },
            true
        ),
        (a.0, a.1, KindRequest::Uniform, in_a, true),
        (a.0 - 4 * KIB, 8 * KIB, KindRequest::Uniform, in_a, true),
        (a.0, 8 * KIB, KindRequest::Uniform, in_a, true),
        (r.paddr, 64 * KIB, KindRequest::Uniform, in_a, true),
        (b.0 + b.1 / 2, 4 * KIB, KindRequest::Uniform, in_b, true),
        (b.0 - 4 * KIB, b.1 + 8 * KIB, KindRequest::Uniform, in_b, true),
        (
            r.paddr + MIB,
            4 * KIB,
            KindRequest::Device,
            AllocError::WrongKind { wanted: MemoryKind::Device, at: PhysAddr(r.paddr + MIB) },
            false
        ),
    ];
    if let Some((h, _)) = l.ram_hole() {
        cases.push((h, 4 * KIB, KindRequest::Uniform, AllocError::NotBacked { at: PhysAddr(h) }, true));
    }
    if let Some(k) = l.kind_boundary() {
        cases.push((k - 4 * KIB, 8 * KIB, KindRequest::Uniform, AllocError::MixedKinds { at: PhysAddr(k) }, true));
    }
    if let Some(dev) = l.device_at_least(12).next() {
        let want = AllocError::WrongKind { wanted: MemoryKind::Ram, at: PhysAddr(dev.paddr) };
        cases.push((dev.paddr, 4 * KIB, KindRequest::Ram, want, false));
    }
    let before = Snapshot::of(d.hal());
    for (base, size, kind, want, via_trait) in cases {
        expect_alloc_refused(d, base, size, kind, want, via_trait)?;
    }
    // Frees that must be refused.
    let not_allocated = |base| FreeError::NotAllocated { base: PhysAddr(base) };
    let size_mismatch = |base, size, allocated| FreeError::SizeMismatch { base: PhysAddr(base), size, allocated };
    expect_free_refused(d, r.paddr + MIB, 4 * KIB, not_allocated(r.paddr + MIB))?;
    expect_free_refused(d, a.0 + 4 * KIB, 4 * KIB, not_allocated(a.0 + 4 * KIB))?;
    expect_free_refused(d, a.0, 8 * KIB, size_mismatch(a.0, 8 * KIB, a.1))?;
    expect_free_refused(d, b.0, b.1 / 2, size_mismatch(b.0, b.1 / 2, b.1))?;
    // Maps and translations that must be refused.
    let r1 = d.map(r.paddr + MIB);
    ensure!(r1 == Err(HalError::Map(MapError::NotAllocated(PhysAddr(r.paddr + MIB)))), "map of nothing: {r1:x?}");
    unchanged(d, &before, "a refused map")?;
    let r2 = d.unmap(a.0);
    ensure!(r2 == Err(HalError::Map(MapError::NotMapped(PhysAddr(a.0)))), "unmap of an unmapped region: {r2:x?}");
    let va = d.map(a.0).map_err(|e| Failure::new(format!("map {:#x}: {e}", a.0)))?;
    let mapped = Snapshot::of(d.hal());
    let r3 = d.map(a.0);
    ensure!(r3 == Err(HalError::Map(MapError::AlreadyMapped(PhysAddr(a.0)))), "second map: {r3:x?}");
    unchanged(d, &mapped, "a refused second map")?;
    d.unmap(a.0).map_err(|e| Failure::new(format!("unmap {:#x}: {e}", a.0)))?;
    let r4 = d.v2p(va.get());
    ensure!(r4 == Err(HalError::Table(TableError::NotMapped(va))), "translation after unmap: {r4:x?}");
    check(d)?;
    free_ok(d, a.0, a.1)?;
    free_ok(d, b.0, b.1)?;
    expect_free_refused(d, a.0, a.1, not_allocated(a.0))?;
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

/// The same range allocated, freed and allocated again, three times, for several shapes:
/// the same frames at the same addresses each round, the state after each free the same as
/// after the first, and later rounds never dearer than the first (the wrapper is reused).
pub fn alloc_dealloc_alloc_same_range<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let r = largest(l)?;
    let mut shapes = alloc::vec![
        (r.paddr + 3 * 4 * KIB, 4 * KIB),
        (r.paddr + r.size() / 4, 2 * MIB),
        (r.paddr + 2 * MIB - 12 * KIB, 5 * MIB + 16 * KIB),
    ];
    // A whole untyped of 2 MiB or more (the smallest such, not the largest one).
    if let Some(w) = l.ram_at_least(21).filter(|w| w.paddr != r.paddr).min_by_key(|w| (w.size_bits, w.paddr)) {
        shapes.push((w.paddr, w.size()));
    }
    for (base, size) in shapes {
        let mut first: Option<(alloc::string::String, u64, Snapshot)> = None;
        for round in 0..3 {
            let made = d
                .alloc(base, size, KindRequest::Uniform)
                .map_err(|e| Failure::new(format!("{base:#x}+{size:#x} round {round}: {e}")))?;
            let frames = d.frames_text(PhysAddr(base));
            check(d)?;
            free_ok(d, base, size)?;
            let after = Snapshot::of(d.hal());
            match &first {
                None => first = Some((frames, made.cost.retypes, after)),
                Some((f0, retypes0, after0)) => {
                    ensure!(frames == *f0, "{base:#x}+{size:#x} round {round}: frames {frames} != {f0}");
                    ensure!(
                        made.cost.retypes <= *retypes0,
                        "{base:#x}+{size:#x} round {round}: {} retypes, first round {retypes0}",
                        made.cost.retypes
                    );
                    if let Some(diff) = after0.difference(&after) {
                        return Err(Failure::new(format!("{base:#x}+{size:#x} round {round}: after free: {diff}")));
                    }
                }
            }
        }
    }
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

/// An allocation refuses every overlapping request (start, end, inside, around) with its
/// own base and size, accepts its neighbours, and once freed lets the enclosing range in.
pub fn overlapping_allocations_refused<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let r = largest(l)?;
    let a = (r.paddr + 4 * MIB, 64 * KIB);
    alloc_ok(d, a.0, a.1, KindRequest::Uniform)?;
    let in_a = AllocError::InUse { other_base: PhysAddr(a.0), other_size: a.1 };
    for (base, size) in [
        (a.0 - 4 * KIB, 8 * KIB),
        (a.0 + a.1 - 4 * KIB, 8 * KIB),
        (a.0 + 16 * KIB, 4 * KIB),
        (a.0 - MIB, 4 * MIB),
        (a.0, a.1),
    ] {
        expect_alloc_refused(d, base, size, KindRequest::Uniform, in_a, true)?;
    }
    let below = (a.0 - 4 * KIB, 4 * KIB);
    let above = (a.0 + a.1, 4 * KIB);
    alloc_ok(d, below.0, below.1, KindRequest::Uniform)?;
    alloc_ok(d, above.0, above.1, KindRequest::Uniform)?;
    check(d)?;
    free_ok(d, below.0, below.1)?;
    free_ok(d, above.0, above.1)?;
    free_ok(d, a.0, a.1)?;
    ensure!(d.alloc_at(a.0 - MIB, 4 * MIB), "the enclosing range after the free");
    free_ok(d, a.0 - MIB, 4 * MIB)?;
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

/// A region across the boundary of two touching RAM untypeds: frames from both, each where
/// `Page_GetAddress` says, translations on both sides right, all of it freed.
pub fn region_spanning_two_untypeds<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let (a, b) = need(l.adjacent_ram_pair(16), "pair of touching RAM untypeds")?;
    let s = a.end() - (a.size() / 2).min(2 * MIB);
    let t = b.paddr + (b.size() / 2).min(2 * MIB) + 4 * KIB;
    alloc_ok(d, s, t - s, KindRequest::Ram)?;
    let fills: Vec<u64> = match d.hal().pool().allocation(PhysAddr(s)) {
        Some(al) => al.fills.iter().map(|f| f.node.0.get()).collect(),
        None => return Err(Failure::new(format!("no allocation recorded at {s:#x}"))),
    };
    ensure!(fills.iter().any(|&n| n < a.end()), "no wrapper inside the first untyped: {fills:x?}");
    ensure!(fills.iter().any(|&n| n >= b.paddr), "no wrapper inside the second untyped: {fills:x?}");
    let va = d.map(s).map_err(|e| Failure::new(format!("map {s:#x}: {e}")))?;
    for off in [0, a.end() - s - 8, a.end() - s, t - s - 1] {
        translate(d, va.get() + off, s + off)?;
    }
    check(d)?;
    free_ok(d, s, t - s)?;
    let r = d.v2p(va.get());
    ensure!(r.is_err(), "translation after the free: {r:x?}");
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

fn translate<K: Kernel>(d: &mut Driver<'_, K>, va: u64, want: u64) -> Result<(), Failure> {
    let t = d.v2p(va).map_err(|e| Failure::new(format!("translate {va:#x}: {e}")))?;
    ensure!(t.paddr.get() == want, "{va:#x} translates to {}, want {want:#x}", t.paddr);
    ensure!(
        t.kernel == Ok(t.frame),
        "{va:#x}: the HAL's frame is at {}, Page_GetAddress says {:x?}",
        t.frame,
        t.kernel
    );
    Ok(())
}

/// Device memory through the trait: allocated as device memory, refused as RAM, mapped and
/// translated, freed and allocated again.
pub fn device_region<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let dev = need(l.device_at_least(16).next(), "device untyped of 64 KiB below 4 GiB")?;
    let (base, size) = (dev.paddr, 64 * KIB);
    let before = Snapshot::of(d.hal());
    let r = d.alloc(base, size, KindRequest::Ram);
    ensure!(
        r == Err(HalError::Alloc(AllocError::WrongKind { wanted: MemoryKind::Ram, at: PhysAddr(base) })),
        "device memory as RAM: {r:x?}"
    );
    unchanged(d, &before, "a refused device alloc")?;
    ensure!(d.alloc_at(base, size), "alloc_memory_region_at({base:#x}, {size:#x}) of device memory");
    let kind = d.hal().pool().allocation(PhysAddr(base)).map(|a| a.kind);
    ensure!(kind == Some(MemoryKind::Device), "kind {kind:?}");
    let va = d.map(base).map_err(|e| Failure::new(format!("map {base:#x}: {e}")))?;
    for off in [0, size / 2 + 8, size - 1] {
        translate(d, va.get() + off, base + off)?;
    }
    check(d)?;
    let cost = d.dealloc_at(base, size);
    ensure!(
        d.hal().pool().allocation(PhysAddr(base)).is_none() && cost.revokes > 0,
        "dealloc_memory_region_at: {cost:?}"
    );
    ensure!(d.alloc_at(base, size), "device memory again");
    free_ok(d, base, size)?;
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

/// Regions of 4 KiB, 2 MiB and (where an aligned untyped allows) 1 GiB frames, and paging
/// frames, mapped: for every mapped frame, at its start, middle and end, the HAL's
/// `virt_to_phys` equals `Page_GetAddress` of the frame plus the offset.
pub fn virt_to_phys_matches_page_get_address<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let r = largest(l)?;
    let mut regions = alloc::vec![(r.paddr + 5 * 4 * KIB, 12 * KIB), (r.paddr + 8 * MIB, 4 * MIB)];
    let huge = l.roots().iter().copied().find(|x| x.size_bits >= 30 && x.paddr % (1 << 30) == 0 && x.end() <= 1 << 32);
    if let Some(h) = huge {
        regions.push((h.paddr, 1 << 30));
    }
    for &(base, size) in &regions {
        alloc_ok(d, base, size, KindRequest::Uniform)?;
        d.map(base).map_err(|e| Failure::new(format!("map {base:#x}: {e}")))?;
    }
    let paging = d.paging(2, 8192).map_err(|e| Failure::new(format!("paging frames: {e}")))?;
    let pv = d.hal().try_phys_to_virt(paging).map_err(|e| Failure::new(format!("phys_to_virt {paging}: {e}")))?;
    translate(d, pv.get() + 4 * KIB + 16, paging.get() + 4 * KIB + 16)?;
    let mapped: Vec<(u64, u64, u64)> =
        d.hal().table().iter().filter_map(|f| f.vaddr.map(|v| (v.get(), f.paddr.get(), f.size.size_bytes()))).collect();
    ensure!(mapped.len() >= 3 + 2 + 2, "only {} mapped frames", mapped.len());
    for (va, pa, len) in mapped {
        for off in [0, len / 2, len - 8] {
            translate(d, va + off, pa + off)?;
        }
    }
    let (va0, _) = d.hal().window().mapping(PhysAddr(regions[0].0)).unwrap_or_default();
    d.unmap(regions[0].0).map_err(|e| Failure::new(format!("unmap: {e}")))?;
    let gone = d.v2p(va0.get());
    ensure!(gone == Err(HalError::Table(TableError::NotMapped(va0))), "unmapped address: {gone:x?}");
    for &(base, size) in &regions {
        free_ok(d, base, size)?;
    }
    d.paging_free(paging, 2).map_err(|e| Failure::new(format!("paging free: {e}")))?;
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}

/// Kernel objects and paging frames come from the HAL's own memory, can be freed only by
/// their own kind of call, and give every slot back.
pub fn kernel_objects_and_paging_frames<K: Kernel>(d: &mut Driver<'_, K>, _l: &Layout) -> Result<(), Failure> {
    let start = Snapshot::of(d.hal());
    let mut made: Vec<(Objects, ObjectBlueprint)> = Vec::new();
    for (bp, n) in [(ObjectBlueprint::Endpoint, 3), (ObjectBlueprint::Notification, 1), (ObjectBlueprint::Tcb, 2)] {
        let o = d.objects(bp, n).map_err(|e| Failure::new(format!("{bp:?} x{n}: {e}")))?;
        ensure!(o.count == n, "{bp:?}: {} made", o.count);
        made.push((o, bp));
    }
    let p = d.paging(1, 4096).map_err(|e| Failure::new(format!("paging frame: {e}")))?;
    let r = d.dealloc(p.get(), 4 * KIB);
    ensure!(
        matches!(r, Err(HalError::Free(FreeError::WrongPurpose { .. }))),
        "a paging frame freed as a region: {r:x?}"
    );
    check(d)?;
    for (o, bp) in made {
        d.objects_free(o, bp).map_err(|e| Failure::new(format!("free {bp:?}: {e}")))?;
    }
    d.paging_free(p, 1).map_err(|e| Failure::new(format!("paging free: {e}")))?;
    check(d)?;
    balanced(&start, &Snapshot::of(d.hal()))
}
