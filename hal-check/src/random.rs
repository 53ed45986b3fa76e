//! A seeded random sequence of HAL operations, each with its expected outcome worked out
//! beforehand from the [`Layout`] and a reference record of what is allocated: allocations
//! (good, malformed, overlapping, unbacked, of mixed or wrong kind), frees (good and bad),
//! maps, unmaps, translations against `Page_GetAddress`, paging frames, kernel objects, and
//! a full check every [`CHECK_EVERY`] operations.
//!
//! The sequence depends only on the seed, the layout and the results so far, so the same
//! seed on a kernel and a model that agree gives the same trace.
//!
//! Owns its reference record; frees everything it allocated before it returns.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use hal_sel4::table::TableError;
use hal_sel4::{AllocError, FreeError, HalError, KindRequest, MemoryKind, Objects, Purpose};
use sel4::{Kernel, ObjectBlueprint, PhysAddr, VirtAddr};

use crate::layout::Layout;
use crate::state::Snapshot;
use crate::trace::Driver;
use crate::{Failure, ensure};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// A full check (with the slot probe, if enabled) every this many operations.
pub const CHECK_EVERY: usize = 200;

/// At most this many regions live at once.
pub const MAX_LIVE: usize = 24;

/// SplitMix64: small, seedable, the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What the sequence did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations that succeeded.
    pub allocs: usize,
    /// Allocations refused as expected.
    pub refused: usize,
    /// Refused for want of slots (allowed, never expected).
    pub out_of_slots: usize,
    /// Good frees.
    pub frees: usize,
    /// Frees refused as expected.
    pub bad_frees: usize,
    /// Maps and unmaps.
    pub maps: usize,
    /// Translations checked against the kernel.
    pub translations: usize,
    /// Paging-frame and kernel-object allocations and frees.
    pub internal: usize,
    /// Full checks.
    pub checks: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allocs={} refused={} out_of_slots={} frees={} bad_frees={} maps={} translations={} internal={} checks={}",
            self.allocs,
            self.refused,
            self.out_of_slots,
            self.frees,
            self.bad_frees,
            self.maps,
            self.translations,
            self.internal,
            self.checks
        )
    }
}

/// A live region in the reference record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    size: u64,
    va: Option<u64>,
}

/// The outcome the HAL must give for an allocation, from the layout and the pool's live
/// allocations, in the order the pool checks: shape, overlap, coverage and kind.
pub fn expected_alloc<K: Kernel>(
    d: &Driver<'_, K>,
    l: &Layout,
    base: u64,
    size: u64,
    kind: KindRequest,
) -> Result<MemoryKind, AllocError> {
    if size == 0 {
        return Err(AllocError::Empty { base: PhysAddr(base) });
    }
    let end = base.checked_add(size).ok_or(AllocError::Overflow { base: PhysAddr(base), size })?;
    if !base.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
        return Err(AllocError::Unaligned { base: PhysAddr(base), size });
    }
    // The pool names the overlapping allocation that starts last before the end.
    let (base_pa, end_pa) = (PhysAddr(base), PhysAddr(end));
    if let Some(a) = d.hal().pool().allocations().filter(|a| a.base < end_pa && base_pa < a.end()).last() {
        return Err(AllocError::InUse { other_base: a.base, other_size: a.size });
    }
    let mut cur = base;
    let mut found = None;
    while cur < end {
        let at = PhysAddr(cur);
        let r = l.root_at(cur).ok_or(AllocError::NotBacked { at })?;
        let k = if r.device { MemoryKind::Device } else { MemoryKind::Ram };
        match kind {
            KindRequest::Ram if k != MemoryKind::Ram => {
                return Err(AllocError::WrongKind { wanted: MemoryKind::Ram, at });
            }
            KindRequest::Device if k != MemoryKind::Device => {
                return Err(AllocError::WrongKind { wanted: MemoryKind::Device, at });
            }
            _ => {}
        }
        if found.is_some_and(|f| f != k) {
            return Err(AllocError::MixedKinds { at });
        }
        found = Some(k);
        cur = r.end();
    }
    Ok(found.unwrap_or(MemoryKind::Ram))
}

/// Addresses the sequence allocates around: the boundaries where the interesting things
/// happen (kinds meet, a hole starts, two untypeds touch) and a few untyped starts.
fn anchors(l: &Layout, rng: &mut Rng) -> Vec<u64> {
    let mut out = Vec::new();
    out.extend(l.kind_boundary());
    out.extend(l.ram_hole().map(|h| h.0));
    out.extend(l.adjacent_ram_pair(16).map(|(_, b)| b.paddr));
    let ram: Vec<u64> = l.ram_at_least(16).map(|r| r.paddr).collect();
    let dev: Vec<u64> = l.device_at_least(16).map(|r| r.paddr).collect();
    for _ in 0..5 {
        if !ram.is_empty() {
            out.push(ram[rng.below(ram.len() as u64) as usize] + rng.below(8) * 8 * MIB);
        }
    }
    for _ in 0..2 {
        if !dev.is_empty() {
            out.push(dev[rng.below(dev.len() as u64) as usize]);
        }
    }
    out
}

fn fail(op: usize, what: alloc::string::String) -> Failure {
    Failure::new(format!("op {op}: {what}"))
}

/// Runs `ops` random operations from `seed`. See the module docs.
pub fn run<K: Kernel>(d: &mut Driver<'_, K>, l: &Layout, seed: u64, ops: usize) -> Result<Stats, Failure> {
    let mut rng = Rng::new(seed);
    let anchors = anchors(l, &mut rng);
    ensure!(!anchors.is_empty(), "the layout offers nothing to allocate");
    let mut live: BTreeMap<u64, Live> = BTreeMap::new();
    let mut paging: Vec<(PhysAddr, usize)> = Vec::new();
    let mut objects: Vec<(Objects, ObjectBlueprint)> = Vec::new();
    let mut st = Stats::default();
    for op in 0..ops {
        let choice = rng.below(100);
        // Live regions stay few enough for the root task's heap (the HAL's records of them).
        if (choice < 40 && live.len() < MAX_LIVE) || live.is_empty() {
            let anchor = anchors[rng.below(anchors.len() as u64) as usize];
            let off = rng.below(8 * MIB / PAGE) * PAGE;
            let mut base = (anchor + off).saturating_sub(4 * MIB);
            // Large pages only where the base allows them; unaligned regions stay at most
            // 1 MiB (256 small pages).
            let aligned = rng.below(3) == 0;
            let mut size = if aligned {
                base &= !(2 * MIB - 1);
                match rng.below(4) {
                    0 => (1 + rng.below(16)) * PAGE,
                    _ => (1 + rng.below(4)) * 2 * MIB,
                }
            } else {
                match rng.below(4) {
                    0..=2 => (1 + rng.below(16)) * PAGE,
                    _ => (1 + rng.below(16)) * 64 * 1024,
                }
            };
            match rng.below(60) {
                0 => size = 0,
                1 => base += 0x800,
                2 => size += 0x200,
                3 if aligned => size = 64 * MIB,
                _ => {}
            }
            let kind = match rng.below(20) {
                0 | 1 => KindRequest::Ram,
                2 => KindRequest::Device,
                _ => KindRequest::Uniform,
            };
            let want = expected_alloc(d, l, base, size, kind);
            let before = Snapshot::of(d.hal());
            let got = d.alloc(base, size, kind);
            match (got, want) {
                (Ok(m), Ok(k)) if m.kind == k => {
                    live.insert(base, Live { size, va: None });
                    st.allocs += 1;
                }
                (Err(HalError::Alloc(AllocError::OutOfSlots { .. })), Ok(_)) => st.out_of_slots += 1,
                (Err(HalError::Alloc(e)), Err(w)) if e == w => st.refused += 1,
                (got, want) => {
                    return Err(fail(
                        op,
                        format!("alloc {base:#x}+{size:#x} {kind:?}: got {got:x?}, expected {want:x?}"),
                    ));
                }
            }
            let refused = want.is_err() || !live.contains_key(&base);
            if refused && let Some(diff) = before.difference(&Snapshot::of(d.hal())) {
                return Err(fail(op, format!("a refused alloc changed the HAL: {diff}")));
            }
        } else if choice < 62 {
            let (&base, &lv) = pick(&live, &mut rng);
            let r = if rng.below(4) == 0 {
                d.dealloc_at(base, lv.size);
                if d.hal().pool().allocation(PhysAddr(base)).is_some() { Err(()) } else { Ok(()) }
            } else {
                d.dealloc(base, lv.size).map(drop).map_err(drop)
            };
            r.map_err(|()| fail(op, format!("free of the live region {base:#x}+{:#x} refused", lv.size)))?;
            live.remove(&base);
            st.frees += 1;
        } else if choice < 67 {
            let (&base, &lv) = pick(&live, &mut rng);
            let (b, s) = match rng.below(3) {
                0 => (base, lv.size + PAGE),
                1 => (base + PAGE, lv.size),
                _ => (base, if lv.size > PAGE { lv.size - PAGE } else { 2 * PAGE }),
            };
            let base = PhysAddr(b);
            let want = match d.hal().pool().allocation(base) {
                None => Some(FreeError::NotAllocated { base }),
                Some(a) if a.size != s => Some(FreeError::SizeMismatch { base, size: s, allocated: a.size }),
                Some(a) if a.purpose != Purpose::Region => Some(FreeError::WrongPurpose { base, purpose: a.purpose }),
                Some(_) => None,
            };
            let Some(want) = want else { continue };
            let before = Snapshot::of(d.hal());
            let r = d.dealloc(b, s);
            ensure!(r == Err(HalError::Free(want)), "op {op}: dealloc {b:#x}+{s:#x}: {r:x?}, expected {want:x?}");
            if let Some(diff) = before.difference(&Snapshot::of(d.hal())) {
                return Err(fail(op, format!("a refused free changed the HAL: {diff}")));
            }
            st.bad_frees += 1;
        } else if choice < 80 {
            let (&base, &lv) = pick(&live, &mut rng);
            match lv.va {
                None => {
                    let va = d.map(base).map_err(|e| fail(op, format!("map {base:#x}: {e}")))?;
                    live.insert(base, Live { va: Some(va.get()), ..lv });
                }
                Some(_) => {
                    d.unmap(base).map_err(|e| fail(op, format!("unmap {base:#x}: {e}")))?;
                    live.insert(base, Live { va: None, ..lv });
                }
            }
            st.maps += 1;
        } else if choice < 92 {
            let mapped: Vec<(u64, u64, u64)> =
                live.iter().filter_map(|(&b, lv)| lv.va.map(|v| (b, lv.size, v))).collect();
            if mapped.is_empty() {
                continue;
            }
            let (b, s, v) = mapped[rng.below(mapped.len() as u64) as usize];
            let off = rng.below(s);
            let t = d.v2p(v + off).map_err(|e| fail(op, format!("translate {:#x}: {e}", v + off)))?;
            ensure!(t.paddr.get() == b + off, "op {op}: {:#x} -> {}, expected {:#x}", v + off, t.paddr, b + off);
            ensure!(t.kernel == Ok(t.frame), "op {op}: frame {} but Page_GetAddress says {:x?}", t.frame, t.kernel);
            // Just past the end: unmapped unless another mapping starts there.
            let past = v + s;
            if !d
                .hal()
                .table()
                .iter()
                .any(|f| f.vaddr.is_some_and(|fv| fv.get() <= past && past < fv.get() + f.size.size_bytes()))
            {
                let r = d.v2p(past);
                ensure!(
                    r == Err(HalError::Table(TableError::NotMapped(VirtAddr(past)))),
                    "op {op}: past the end {past:#x}: {r:x?}"
                );
            }
            st.translations += 1;
        } else {
            match rng.below(4) {
                0 if paging.len() < 8 => {
                    let num = 1 + rng.below(4) as usize;
                    let align = if rng.below(2) == 0 { 4096 } else { 16384 };
                    let p = d.paging(num, align).map_err(|e| fail(op, format!("paging {num}: {e}")))?;
                    ensure!(p.get() % align as u64 == 0, "op {op}: paging frames at {p} not aligned to {align:#x}");
                    paging.push((p, num));
                }
                1 if !paging.is_empty() => {
                    let (p, num) = paging.swap_remove(rng.below(paging.len() as u64) as usize);
                    d.paging_free(p, num).map_err(|e| fail(op, format!("paging free {p}: {e}")))?;
                }
                2 if objects.len() < 8 => {
                    let bp = [ObjectBlueprint::Endpoint, ObjectBlueprint::Notification, ObjectBlueprint::Tcb]
                        [rng.below(3) as usize];
                    let n = 1 + rng.below(4);
                    let o = d.objects(bp, n).map_err(|e| fail(op, format!("objects {bp:?} x{n}: {e}")))?;
                    objects.push((o, bp));
                }
                _ if !objects.is_empty() => {
                    let (o, bp) = objects.swap_remove(rng.below(objects.len() as u64) as usize);
                    d.objects_free(o, bp).map_err(|e| fail(op, format!("objects free: {e}")))?;
                }
                _ => continue,
            }
            st.internal += 1;
        }
        agree(d, &live).map_err(|w| fail(op, w))?;
        if op % CHECK_EVERY == CHECK_EVERY - 1 {
            d.check().map_err(|f| fail(op, f.what))?;
            st.checks += 1;
        }
    }
    d.check()?;
    for (&base, lv) in &live {
        d.dealloc(base, lv.size).map_err(|e| Failure::new(format!("final free of {base:#x}: {e}")))?;
    }
    for (p, num) in paging {
        d.paging_free(p, num).map_err(|e| Failure::new(format!("final paging free {p}: {e}")))?;
    }
    for (o, bp) in objects {
        d.objects_free(o, bp).map_err(|e| Failure::new(format!("final objects free: {e}")))?;
    }
    d.check()?;
    ensure!(d.hal().table().is_empty(), "{} frames left after freeing everything", d.hal().table().len());
    ensure!(
        st.allocs > ops / 10 && st.refused > 0 && st.bad_frees > 0 && st.translations > 0 && st.maps > 0,
        "the sequence exercised too little: {st}"
    );
    Ok(st)
}

fn pick<'m>(live: &'m BTreeMap<u64, Live>, rng: &mut Rng) -> (&'m u64, &'m Live) {
    let i = rng.below(live.len() as u64) as usize;
    live.iter().nth(i).expect("callers pick only from a non-empty record (an empty one makes them allocate)")
}

/// The pool's region allocations and the window's mappings equal the reference record.
fn agree<K: Kernel>(d: &Driver<'_, K>, live: &BTreeMap<u64, Live>) -> Result<(), alloc::string::String> {
    let regions: Vec<(u64, u64)> =
        d.hal().pool().allocations().filter(|a| a.purpose == Purpose::Region).map(|a| (a.base.get(), a.size)).collect();
    let want: Vec<(u64, u64)> = live.iter().map(|(&b, l)| (b, l.size)).collect();
    if regions != want {
        return Err(format!("the pool's regions {regions:x?} differ from the record {want:x?}"));
    }
    for (&b, l) in live {
        let m = d.hal().window().mapping(PhysAddr(b)).map(|(v, _)| v.get());
        if m != l.va {
            return Err(format!("region {b:#x}: mapped at {m:x?}, record says {:x?}", l.va));
        }
    }
    Ok(())
}
