//! Seeded random sequences of alloc / dealloc / map / unmap / translate on the QEMU virt
//! model, against a reference map of what should be allocated, checking every invariant.

mod common;

use std::collections::BTreeMap;

use common::{check_all, model_hal, snap_counts};
use hal_sel4::{HalError, KindRequest};
use sel4::{PhysAddr, VirtAddr, init_cap};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// Contiguous windows of one kind on QEMU virt: RAM 0x6400_0000..0x8000_0000 (three
/// untypeds) and device memory 0x0900_0000..0x0c00_0000 (two untypeds, the UART's included).
const WINDOWS: [(u64, u64); 2] = [(0x6400_0000, 0x8000_0000), (0x0900_0000, 0x0c00_0000)];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn run(seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut h = model_hal();
    // Reference: base -> (size, mapped va).
    let mut live: BTreeMap<u64, (u64, Option<u64>)> = BTreeMap::new();
    let mut stats = [0usize; 6];
    let slot_gap = h.kernel().free_slots() - h.pool().free_slots();
    for op in 0..ops {
        let choice = rng.below(100);
        if choice < 40 || live.is_empty() {
            // Alloc: mostly inside a window, sometimes running out of it.
            let (lo, hi) = WINDOWS[(rng.below(4) == 0) as usize];
            let size = match rng.below(10) {
                0..=5 => (1 + rng.below(16)) * PAGE,
                6..=8 => (1 + rng.below(4)) * 2 * MIB,
                _ => (1 + rng.below(64)) * 64 * 1024,
            };
            let mut base = lo + rng.below((hi - lo) / PAGE) * PAGE;
            if rng.below(3) == 0 {
                base &= !(2 * MIB - 1);
                base = base.max(lo);
            }
            let end = base + size;
            let overlaps = live.range(..end).next_back().is_some_and(|(&b, &(s, _))| b + s > base);
            // Both windows sit inside longer runs of one kind (RAM 0x6023_f000..0xbfc0_0000,
            // device memory 0x0800_0000 region..0x6000_0000) that no 8 MiB request can leave.
            let expect_ok = !overlaps;
            let before = snap_counts(&h);
            let predicted = h.pool().clearing_cost(PhysAddr(base), size, KindRequest::Uniform);
            let zeroed = h.kernel().counters().bytes_zeroed;
            let r = h.alloc_region(PhysAddr(base), size, KindRequest::Uniform).map(|_| ());
            match r {
                Ok(()) => {
                    assert!(expect_ok, "op {op}: {base:#x}+{size:#x} allocated over {live:x?}");
                    let cleared = h.kernel().counters().bytes_zeroed - zeroed;
                    assert_eq!(predicted, Ok(cleared), "op {op}: bytes the kernel cleared for {base:#x}+{size:#x}");
                    live.insert(base, (size, None));
                    stats[0] += 1;
                }
                Err(HalError::Alloc(hal_sel4::AllocError::OutOfSlots { .. })) => {
                    assert_eq!(snap_counts(&h), before, "op {op}");
                    stats[5] += 1;
                }
                Err(e) => {
                    assert!(!expect_ok, "op {op}: {base:#x}+{size:#x} refused: {e}");
                    assert_eq!(snap_counts(&h), before, "op {op}: refused alloc changed state");
                    stats[1] += 1;
                }
            }
        } else if choice < 65 {
            let i = rng.below(live.len() as u64) as usize;
            let (&base, &(size, _)) = live.iter().nth(i).unwrap();
            h.dealloc_region(PhysAddr(base), size).unwrap_or_else(|e| panic!("op {op}: free {base:#x}: {e}"));
            live.remove(&base);
            stats[2] += 1;
        } else if choice < 70 {
            // A free that must be refused: wrong size, or a base inside an allocation.
            let i = rng.below(live.len() as u64) as usize;
            let (&base, &(size, _)) = live.iter().nth(i).unwrap();
            let (b, s) = if rng.below(2) == 0 { (base, size + PAGE) } else { (base + PAGE, size) };
            let before = snap_counts(&h);
            assert!(h.dealloc_region(PhysAddr(b), s).is_err(), "op {op}");
            assert_eq!(snap_counts(&h), before, "op {op}: refused free changed state");
            stats[3] += 1;
        } else if choice < 85 {
            let i = rng.below(live.len() as u64) as usize;
            let (&base, &(size, va)) = live.iter().nth(i).unwrap();
            match va {
                None => {
                    let v = h.map_region(PhysAddr(base)).unwrap_or_else(|e| panic!("op {op}: map {base:#x}: {e}"));
                    live.insert(base, (size, Some(v.get())));
                }
                Some(_) => {
                    h.unmap_region(PhysAddr(base)).unwrap();
                    live.insert(base, (size, None));
                }
            }
        } else {
            // Translate a mapped address, and one just past the end.
            let mapped: Vec<_> = live.iter().filter_map(|(&b, &(s, v))| v.map(|v| (b, s, v))).collect();
            if let Some(&(b, s, v)) = mapped.get(rng.below(mapped.len().max(1) as u64) as usize) {
                let off = rng.below(s);
                let want = PhysAddr(b + off);
                assert_eq!(h.try_virt_to_phys(VirtAddr(v + off)), Ok(want), "op {op}");
                let t = h.kernel().translate(init_cap::VSPACE.cap(), VirtAddr(v + off)).map(|t| t.paddr);
                assert_eq!(t, Some(want), "op {op}: kernel tables");
                let past = VirtAddr(v + s);
                if !mapped.iter().any(|&(_, s2, v2)| v2 <= past.get() && past.get() < v2 + s2) {
                    assert!(h.try_virt_to_phys(past).is_err(), "op {op}");
                }
                stats[4] += 1;
            }
        }
        // Cheap agreement every operation; the pool's structural check every 10 (it walks
        // the whole tree); model invariants, watermarks and Page_GetAddress of every frame
        // every 500.
        assert_eq!(h.pool().stats().allocations, live.len() + h.window().tables(), "op {op}");
        // Every slot the HAL counts as used holds a cap in the kernel, and no other does.
        assert_eq!(h.kernel().free_slots() - h.pool().free_slots(), slot_gap, "op {op}");
        if op % 10 == 9 {
            h.pool().check().unwrap_or_else(|e| panic!("op {op}: pool: {e}"));
        }
        if op % 500 == 499 {
            check_all(&mut h);
        }
    }
    check_all(&mut h);
    // Everything freed: only the window's tables remain, and every slot but theirs is back.
    for (&base, &(size, _)) in &live {
        h.dealloc_region(PhysAddr(base), size).unwrap();
    }
    check_all(&mut h);
    assert_eq!(h.table().len(), 0);
    println!("seed {seed}: {:?}, window tables {}", h.pool().stats(), h.window().tables());
    if std::env::var("HAL_RANDOM_DEBUG").is_ok() {
        for n in h.pool().untyped_nodes().filter(|n| !n.is_root) {
            println!("  node {:?}/{} wm {:?}", n.paddr, n.size_bits, n.watermark);
        }
    }
    println!(
        "seed {seed}: allocs {}, refused {}, frees {}, bad frees {}, translations {}, out of slots {}",
        stats[0], stats[1], stats[2], stats[3], stats[4], stats[5]
    );
    assert!(stats[0] > ops / 10 && stats[1] > 0 && stats[4] > 0, "the sequence exercised too little: {stats:?}");
}

#[test]
fn ten_thousand_random_operations() {
    let ops = std::env::var("HAL_RANDOM_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    run(0x9e37_79b9_7f4a_7c15, ops);
}

#[test]
fn more_seeds() {
    for seed in [1, 0xdead_beef, 0x1234_5678_9abc] {
        run(seed, 1_000);
    }
}
