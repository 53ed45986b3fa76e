//! The HAL on the seL4 model booted from the QEMU virt platform description.
//!
//! Untypeds used (from `platforms/qemu-arm-virt/bootinfo.txt`): RAM 0x6040_0000/22,
//! 0x6400_0000/26, 0x6800_0000/27, 0x7000_0000/28, 0x8000_0000/29, 0xa000_0000/28; device
//! 0xc000_0000/30. RAM ends at 0x6001_0000 below the kernel image (0x6001_0000..0x6023_f000 is
//! not untyped), and device memory 0x4000_0000/29 ends where RAM starts at 0x6000_0000.

mod common;

use common::faulty::{Faulty, faulty};
use common::{Cost, check_all, check_model, cost, hal_over, model_hal, model_hal_with_slots, snap, snapshot};
use hal_sel4::pool::{AllocError, FreeError, Step, plan_cost};
use hal_sel4::{HalError, KindRequest, MemoryKind};
use sel4::cap_type::Tcb;
use sel4::{FrameSize, ObjectBlueprint, Op, PhysAddr, VirtAddr, init_cap};
use sel4_model::Model;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn alloc(h: &mut hal_sel4::Sel4Hal<Model>, base: u64, size: u64) -> Result<(), HalError> {
    h.alloc_region(PhysAddr(base), size, KindRequest::Uniform).map(|_| ())
}

fn retypes(n: u64) -> Cost {
    Cost { retypes: n, revokes: 0, total: n }
}

fn revokes(n: u64) -> Cost {
    Cost { retypes: 0, revokes: n, total: n }
}

// ---- pinned invocation counts ----

/// 4 KiB at offset 0x3000 of the fresh 128 MiB untyped at 0x6800_0000: one retype of four
/// 4 KiB child untypeds (three padding, the fourth the wrapper), one retype of the frame.
/// Freed with one revoke: nothing else lives in the untyped, so the untyped itself is
/// revoked (frames, wrapper and padding at once) and is fresh again; allocating again costs
/// what the first allocation did.
#[test]
fn pinned_4k_inside_an_untyped() {
    let mut h = model_hal();
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6800_3000, 4 * KIB));
    r.unwrap();
    assert_eq!(c, retypes(2));
    check_all(&mut h);
    assert_eq!(h.kernel().descendants(sel4::Slot::new(76 + 49)), 5, "4 children + 1 frame under UT 49");
    let (r, c) = cost(&mut h, |h| h.dealloc_region(PhysAddr(0x6800_3000), 4 * KIB));
    r.unwrap();
    assert_eq!(c, revokes(1));
    assert_eq!(h.kernel().descendants(sel4::Slot::new(76 + 49)), 0);
    assert_eq!(h.pool().stats().child_nodes, 0);
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6800_3000, 4 * KIB));
    r.unwrap();
    assert_eq!(c, retypes(2));
    check_all(&mut h);
}

/// 64 MiB that is exactly the untyped at 0x6400_0000: 32 large pages in one retype, no
/// child untyped; freed by revoking the untyped itself.
#[test]
fn pinned_64m_whole_untyped() {
    let mut h = model_hal();
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6400_0000, 64 * MIB));
    r.unwrap();
    assert_eq!(c, retypes(1));
    let frames: Vec<_> = h.frames(PhysAddr(0x6400_0000)).map(|(f, _)| f.size).collect();
    assert_eq!(frames, vec![FrameSize::Large; 32]);
    check_all(&mut h);
    let (r, c) = cost(&mut h, |h| h.dealloc_region(PhysAddr(0x6400_0000), 64 * MIB));
    r.unwrap();
    assert_eq!(c, revokes(1));
    assert_eq!(h.kernel().watermark(sel4::Slot::new(76 + 48)), Some(0));
}

/// 2 MiB at offset 2 MiB of the 4 MiB untyped at 0x6040_0000: the padding child (2 MiB) and
/// the wrapper (2 MiB) are one retype of two children; then one large page.
#[test]
fn pinned_2m_padding_merged_with_wrapper() {
    let mut h = model_hal();
    let (steps, _) = h.pool().plan(PhysAddr(0x6060_0000), 2 * MIB, KindRequest::Ram, None, 0).unwrap();
    assert!(matches!(steps[0], Step::Split { run, .. } if run.count == 2 && run.size_bits == 21), "{steps:?}");
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6060_0000, 2 * MIB));
    r.unwrap();
    assert_eq!(c, retypes(2));
    check_all(&mut h);
}

/// 1 GiB of RAM at 0x7000_0000 spans three whole untypeds (256 + 512 + 256 MiB): one retype
/// of large pages in each (128, 256, 128 pages: the middle one exactly the fan-out limit).
#[test]
fn pinned_1g_across_three_untypeds() {
    let mut h = model_hal();
    let (r, c) = cost(&mut h, |h| alloc(h, 0x7000_0000, GIB));
    r.unwrap();
    assert_eq!(c, retypes(3));
    assert_eq!(h.frames(PhysAddr(0x7000_0000)).count(), 512);
    check_all(&mut h);
    let (r, c) = cost(&mut h, |h| h.dealloc_region(PhysAddr(0x7000_0000), GIB));
    r.unwrap();
    assert_eq!(c, revokes(3));
    check_all(&mut h);
}

/// 1 GiB of device memory at 0xc000_0000 is one untyped: one huge page.
#[test]
fn pinned_1g_device_huge_page() {
    let mut h = model_hal();
    let (r, c) = cost(&mut h, |h| h.alloc_region(PhysAddr(0xc000_0000), GIB, KindRequest::Device).map(|a| a.kind));
    assert_eq!(r.unwrap(), MemoryKind::Device);
    assert_eq!(c, retypes(1));
    assert_eq!(h.frames(PhysAddr(0xc000_0000)).map(|(f, _)| f.size).collect::<Vec<_>>(), [FrameSize::Huge]);
    check_all(&mut h);
}

/// `from_bootinfo` takes the untyped in bootinfo's order from its first untyped slot on: the
/// same tree as the model's own list gives, and a region across two untypeds is where the
/// kernel says.
#[test]
fn from_bootinfo_owns_the_untyped_in_their_slots() {
    let m = Model::qemu_arm_virt();
    let bytes = m.bootinfo_bytes().to_vec();
    let bi = sel4::BootInfo::from_bytes(&bytes).unwrap();
    let mut h = hal_sel4::Sel4Hal::from_bootinfo(m, &bi, hal_sel4::HalConfig::new(bi.empty())).unwrap();
    let roots = |h: &hal_sel4::Sel4Hal<Model>| -> Vec<_> {
        h.pool().untyped_nodes().map(|n| (n.cap.slot(), n.paddr, n.size_bits, n.device)).collect()
    };
    assert_eq!(roots(&h), roots(&model_hal()));
    assert!(roots(&h).len() > 2, "{:?}", roots(&h));
    alloc(&mut h, 0x6fff_f000, 8 * KIB).unwrap();
    check_all(&mut h);
}

/// The model's count equals the plan's cost for a spread of shapes.
#[test]
fn measured_cost_is_the_planned_cost() {
    let mut h = model_hal();
    let cases = [
        (0x6800_0000, 4 * KIB),
        (0x6800_5000, 12 * KIB),
        (0x6810_0000, 3 * MIB),
        (0x6c00_0000, 24 * MIB),
        (0x6fff_f000, 8 * KIB),
        (0x8123_4000, 17 * MIB + 8 * KIB),
        (0x0910_0000, 64 * KIB),
    ];
    for (base, size) in cases {
        let (steps, _) = h.pool().plan(PhysAddr(base), size, KindRequest::Uniform, None, 0).unwrap();
        let planned = plan_cost(&steps, 256);
        let (r, c) = cost(&mut h, |h| alloc(h, base, size));
        r.unwrap_or_else(|e| panic!("{base:#x}+{size:#x}: {e}"));
        assert_eq!(c.total, planned, "{base:#x}+{size:#x}");
        check_all(&mut h);
    }
}

// ---- refusals leave everything as it was ----

#[test]
fn every_refused_alloc_leaves_nothing_behind() {
    let mut h = model_hal();
    alloc(&mut h, 0x6800_3000, 4 * KIB).unwrap();
    alloc(&mut h, 0x6c00_0000, 16 * MIB).unwrap();
    let before = snap(&h);
    let in_use_a = AllocError::InUse { other_base: PhysAddr(0x6800_3000), other_size: 4 * KIB };
    let in_use_b = AllocError::InUse { other_base: PhysAddr(0x6c00_0000), other_size: 16 * MIB };
    let refused: [(u64, u64, AllocError); 12] = [
        (0x6800_0000, 0, AllocError::Empty { base: PhysAddr(0x6800_0000) }),
        (0x6800_0800, 4 * KIB, AllocError::Unaligned { base: PhysAddr(0x6800_0800), size: 4 * KIB }),
        (0x6800_0000, 6 * KIB, AllocError::Unaligned { base: PhysAddr(0x6800_0000), size: 6 * KIB }),
        (u64::MAX - 0xfff, 8 * KIB, AllocError::Overflow { base: PhysAddr(u64::MAX - 0xfff), size: 8 * KIB }),
        // The kernel image: not untyped.
        (0x6001_0000, 4 * KIB, AllocError::NotBacked { at: PhysAddr(0x6001_0000) }),
        // Device memory up to 0x6000_0000, RAM from there.
        (0x5fff_f000, 8 * KIB, AllocError::MixedKinds { at: PhysAddr(0x6000_0000) }),
        (0x6800_3000, 4 * KIB, in_use_a),
        (0x6800_2000, 8 * KIB, in_use_a),
        (0x6800_3000, 8 * KIB, in_use_a),
        (0x6800_0000, 64 * KIB, in_use_a),
        (0x6c80_0000, 4 * KIB, in_use_b),
        // The root task's image at the top of RAM is not untyped either.
        (0xc000_0000 - 4 * KIB, 8 * KIB, AllocError::NotBacked { at: PhysAddr(0xc000_0000 - 4 * KIB) }),
    ];
    for (base, size, why) in refused {
        let r = h.alloc_region(PhysAddr(base), size, KindRequest::Uniform).map(|_| ());
        assert_eq!(r, Err(HalError::Alloc(why)));
        assert_eq!(snap(&h), before, "{why}");
        // The trait's method says false for the same reason (logged) and changes nothing.
        assert!(!h.alloc_memory_region_at(axvm_hal::HostPhysAddr::from_usize(base as usize), size as usize));
        assert_eq!(snap(&h), before, "{why}");
    }
    // Wrong explicit kind.
    assert!(matches!(
        h.alloc_region(PhysAddr(0x6900_0000), 4 * KIB, KindRequest::Device),
        Err(HalError::Alloc(AllocError::WrongKind { .. }))
    ));
    assert_eq!(snap(&h), before);
    check_all(&mut h);
}

#[test]
fn out_of_slots_is_refused_before_any_kernel_call() {
    // Four slots: the 4 KiB case needs five (four children and the frame).
    let mut h = model_hal_with_slots(4);
    let before = snap(&h);
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6800_3000, 4 * KIB));
    assert!(matches!(r, Err(HalError::Alloc(AllocError::OutOfSlots { needed: 5, free: 4 }))), "{r:?}");
    assert_eq!(c.total, 0);
    assert_eq!(snap(&h), before);
    // 32 large pages need 32 slots.
    assert!(matches!(alloc(&mut h, 0x6400_0000, 64 * MIB), Err(HalError::Alloc(AllocError::OutOfSlots { .. }))));
    assert_eq!(snap(&h), before);
    // One that fits: 4 KiB at the start of a 4 KiB-aligned... the whole 4 KiB untyped at 0x6023_f000.
    alloc(&mut h, 0x6023_f000, 4 * KIB).unwrap();
    check_all(&mut h);
}

#[test]
fn refused_deallocs_change_nothing() {
    let mut h = model_hal();
    alloc(&mut h, 0x6800_3000, 8 * KIB).unwrap();
    let before = snap(&h);
    let at = PhysAddr(0x6800_3000);
    let refused: [(u64, u64, FreeError); 4] = [
        (0x6900_0000, 4 * KIB, FreeError::NotAllocated { base: PhysAddr(0x6900_0000) }),
        (0x6800_4000, 4 * KIB, FreeError::NotAllocated { base: PhysAddr(0x6800_4000) }),
        (0x6800_3000, 4 * KIB, FreeError::SizeMismatch { base: at, size: 4 * KIB, allocated: 8 * KIB }),
        (0x6800_3000, 16 * KIB, FreeError::SizeMismatch { base: at, size: 16 * KIB, allocated: 8 * KIB }),
    ];
    for (base, size, want) in refused {
        let (r, c) = cost(&mut h, |h| h.dealloc_region(PhysAddr(base), size));
        assert_eq!(r, Err(HalError::Free(want)));
        assert_eq!(c.total, 0);
        h.dealloc_memory_region_at(axvm_hal::HostPhysAddr::from_usize(base as usize), size as usize);
        assert_eq!(snap(&h), before);
    }
    h.dealloc_region(PhysAddr(0x6800_3000), 8 * KIB).unwrap();
    assert_eq!(
        h.dealloc_region(PhysAddr(0x6800_3000), 8 * KIB),
        Err(HalError::Free(FreeError::NotAllocated { base: at })),
        "double free"
    );
    check_all(&mut h);
}

// ---- reuse and order ----

#[test]
fn alloc_dealloc_alloc_the_same_range() {
    let shapes = [
        (0x6800_3000, 4 * KIB),
        (0x6800_0000, 64 * MIB),
        (0x6400_0000, 64 * MIB),
        (0x6fff_f000, 8 * KIB),
        (0x7000_0000, GIB),
        (0x8123_4000, 17 * MIB + 8 * KIB),
    ];
    for (base, size) in shapes {
        let mut h = model_hal();
        let empty = snap(&h);
        for round in 0..3 {
            alloc(&mut h, base, size).unwrap_or_else(|e| panic!("{base:#x}+{size:#x} round {round}: {e}"));
            check_all(&mut h);
            h.dealloc_region(PhysAddr(base), size).unwrap();
            check_all(&mut h);
            assert_eq!(h.table().len(), 0);
            assert_eq!(h.kernel().free_slots() - h.pool().free_slots(), empty.model_free_slots - empty.hal_free_slots);
        }
    }
}

/// A high, then B below it in A's padding, then C between; each freed and reallocated
/// independently; finally the whole untyped.
#[test]
fn allocations_in_any_order_in_one_untyped() {
    let mut h = model_hal();
    let a = (0x6c00_0000, 16 * MIB);
    let b = (0x6800_1000, 4 * KIB);
    let c = (0x6d00_0000, 2 * MIB);
    let (r, k) = cost(&mut h, |h| alloc(h, a.0, a.1));
    r.unwrap();
    assert_eq!(k, retypes(3), "64 MiB padding child, 16 MiB wrapper, 8 large pages");
    let (r, k) = cost(&mut h, |h| alloc(h, b.0, b.1));
    r.unwrap();
    assert_eq!(k, retypes(2), "inside the padding child: 2 x 4 KiB children, 1 page");
    let (r, k) = cost(&mut h, |h| alloc(h, c.0, c.1));
    r.unwrap();
    assert_eq!(k, retypes(2), "at the watermark: wrapper, page");
    check_all(&mut h);
    // A's and C's wrappers are children of the untyped, which holds the others: freeing
    // revokes the wrapper alone, which stays as a fresh child, and allocating again is the
    // frame retype alone. B's wrapper sits in the 64 MiB padding child with nothing else:
    // freeing revokes that child, and allocating again pads it again.
    for ((base, size), again) in [(a, 1), (b, 2), (c, 1)] {
        let (r, k) = cost(&mut h, |h| h.dealloc_region(PhysAddr(base), size));
        r.unwrap();
        assert_eq!(k, revokes(1));
        check_all(&mut h);
        let (r, k) = cost(&mut h, |h| alloc(h, base, size));
        r.unwrap();
        assert_eq!(k, retypes(again), "{base:#x}");
        check_all(&mut h);
    }
    // The whole untyped overlaps all three.
    assert!(alloc(&mut h, 0x6800_0000, 128 * MIB).is_err());
    for (base, size) in [b, a, c] {
        h.dealloc_region(PhysAddr(base), size).unwrap();
    }
    // The last free revoked the untyped: no child left, and the whole of it is 64 large
    // pages in one retype.
    assert_eq!(h.pool().stats().child_nodes, 0);
    let (r, k) = cost(&mut h, |h| alloc(h, 0x6800_0000, 128 * MIB));
    r.unwrap();
    assert_eq!(k, retypes(1));
    check_all(&mut h);
}

/// Children kept by an undone allocation are free nodes like any padding: allocating exactly
/// one of them is its frame retype alone.
#[test]
fn padding_left_by_an_undone_allocation_is_reused() {
    let mut h = faulty_hal();
    h.alloc_region(PhysAddr(0x6800_1000), 4 * KIB, KindRequest::Ram).unwrap();
    // 16 MiB at 0x6c00_0000: two padding retypes (255 x 8 KiB, 31 x 2 MiB), the wrapper, the
    // frames. Fail the frames: padding and wrapper stay as free children of the untyped,
    // which still holds the 4 KiB allocation.
    let seen = h.kernel().observer.seen;
    h.kernel_mut().observer.fail_at = Some(seen + 3);
    assert!(h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).is_err());
    h.kernel_mut().observer.fail_at = None;
    let (steps, _) = h.pool().plan(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram, None, 0).unwrap();
    assert!(matches!(steps[..], [Step::Fill(f)] if f.node == (PhysAddr(0x6c00_0000), 24) && f.count == 8), "{steps:?}");
    let seen = h.kernel().observer.seen;
    h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).unwrap();
    assert_eq!(h.kernel().observer.seen - seen, 1);
    check_model(&h.kernel().kernel, h.pool());
}

/// The fragmentation limit the pool's docs describe, pinned: 4 KiB at 0x6800_1000 and
/// 16 MiB at 0x6c00_0000 leave 1 + 255 + 31 padding children (4 KiB, 8 KiB, 2 MiB) below
/// 0x6c00_0000; with the 4 KiB one freed (its wrapper stays, fresh: the untyped holds the
/// 16 MiB one), 64 MiB at 0x6800_0000 covers 288 free children and takes one frame retype
/// each.
#[test]
fn fragmentation_cost_is_as_documented() {
    let mut h = model_hal();
    alloc(&mut h, 0x6800_1000, 4 * KIB).unwrap();
    alloc(&mut h, 0x6c00_0000, 16 * MIB).unwrap();
    h.dealloc_region(PhysAddr(0x6800_1000), 4 * KIB).unwrap();
    let (r, c) = cost(&mut h, |h| alloc(h, 0x6800_0000, 64 * MIB));
    r.unwrap();
    assert_eq!(c, retypes(288));
    check_all(&mut h);
}

#[test]
fn region_spanning_two_untypeds() {
    let mut h = model_hal();
    alloc(&mut h, 0x6fff_f000, 8 * KIB).unwrap();
    let frames: Vec<_> = h.frames(PhysAddr(0x6fff_f000)).map(|(f, _)| f.paddr).collect();
    assert_eq!(frames, [PhysAddr(0x6fff_f000), PhysAddr(0x7000_0000)]);
    let a = h.pool().allocation(PhysAddr(0x6fff_f000)).unwrap();
    assert_eq!(a.fills.len(), 2);
    check_all(&mut h);
    h.dealloc_region(PhysAddr(0x6fff_f000), 8 * KIB).unwrap();
    check_all(&mut h);
}

// ---- kernel failures part-way are undone ----

fn faulty_hal() -> hal_sel4::Sel4Hal<Faulty<Model>> {
    let m = Model::qemu_arm_virt();
    let empty = m.bootinfo().empty();
    hal_over(faulty(m), empty)
}

/// 16 MiB at 0x6c00_0000 in the fresh 128 MiB untyped takes three retypes; failing each one
/// leaves the model and the HAL exactly as before (the fresh untyped is revoked back).
#[test]
fn kernel_failure_in_a_fresh_untyped_is_undone_exactly() {
    for fail_at in 0..3 {
        let mut h = faulty_hal();
        let before = snapshot(&h.kernel().kernel, h.pool(), h.table());
        h.kernel_mut().observer.fail_at = Some(h.kernel().observer.seen + fail_at);
        let r = h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).map(|_| ());
        assert!(matches!(r, Err(HalError::Alloc(AllocError::Kernel { .. }))), "fail_at {fail_at}: {r:?}");
        let after = snapshot(&h.kernel().kernel, h.pool(), h.table());
        // The untyped's raw free index may be stale, but with no children the kernel starts
        // it at 0 again: the watermark the model reports is back to 0.
        assert_eq!(after, before, "fail_at {fail_at}");
        check_model(&h.kernel().kernel, h.pool());
        h.kernel_mut().observer.fail_at = None;
        h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).unwrap();
        check_model(&h.kernel().kernel, h.pool());
    }
}

/// The same in an untyped that was already split: new child untypeds stay as free nodes
/// (the parent's watermark cannot come back while it has children), frames go, nothing is
/// recorded, and the same allocation succeeds afterwards.
#[test]
fn kernel_failure_in_a_split_untyped_keeps_only_free_children() {
    for fail_at in 0..3 {
        let mut h = faulty_hal();
        h.alloc_region(PhysAddr(0x6800_1000), 4 * KIB, KindRequest::Ram).unwrap();
        let before = snapshot(&h.kernel().kernel, h.pool(), h.table());
        h.kernel_mut().observer.fail_at = Some(h.kernel().observer.seen + fail_at);
        // Above the watermark (0x6800_2000): padding to 0x6c00_0000, wrapper, frames.
        let r = h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).map(|_| ());
        assert!(r.is_err(), "fail_at {fail_at}");
        let after = snapshot(&h.kernel().kernel, h.pool(), h.table());
        assert_eq!((after.frames, after.allocations), (before.frames, before.allocations));
        let kept = after.child_nodes - before.child_nodes;
        assert_eq!(before.hal_free_slots - after.hal_free_slots, kept as u64, "only kept children hold slots");
        assert_eq!(before.model_free_slots - after.model_free_slots, kept as u64);
        check_model(&h.kernel().kernel, h.pool());
        h.kernel_mut().observer.fail_at = None;
        h.alloc_region(PhysAddr(0x6c00_0000), 16 * MIB, KindRequest::Ram).unwrap();
        check_model(&h.kernel().kernel, h.pool());
    }
}

// ---- translation and mapping ----

#[test]
fn mapped_regions_translate_like_the_kernel_page_tables() {
    let mut h = model_hal();
    alloc(&mut h, 0x6800_3000, 12 * KIB).unwrap();
    alloc(&mut h, 0x6400_0000, 64 * MIB).unwrap();
    let va_small = h.map_region(PhysAddr(0x6800_3000)).unwrap();
    let va_large = h.map_region(PhysAddr(0x6400_0000)).unwrap();
    for (va, pa, len) in [(va_small, 0x6800_3000u64, 12 * KIB), (va_large, 0x6400_0000, 64 * MIB)] {
        for off in [0, 0x123, len / 2 + 8, len - 1] {
            let v = VirtAddr(va.get() + off);
            let want = PhysAddr(pa + off);
            assert_eq!(h.try_virt_to_phys(v), Ok(want));
            let t = h.kernel().translate(init_cap::VSPACE.cap(), v).expect("mapped in the kernel's tables");
            assert_eq!(t.paddr, want, "{v:?}");
            assert_eq!(
                h.virt_to_phys(axvm_hal::HostVirtAddr::from_usize(v.get() as usize)).as_usize() as u64,
                want.get()
            );
        }
    }
    assert!(h.try_virt_to_phys(VirtAddr(va_small.get() + 12 * KIB)).is_err());
    check_all(&mut h);
    // Unmapped again: the kernel's tables and the HAL's table agree.
    h.unmap_region(PhysAddr(0x6800_3000)).unwrap();
    assert!(h.kernel().translate(init_cap::VSPACE.cap(), va_small).is_none());
    assert!(h.try_virt_to_phys(va_small).is_err());
    // Freed while mapped: the revoke unmaps, the table forgets.
    h.dealloc_region(PhysAddr(0x6400_0000), 64 * MIB).unwrap();
    assert!(h.kernel().translate(init_cap::VSPACE.cap(), va_large).is_none());
    assert!(h.try_virt_to_phys(va_large).is_err());
    assert_eq!(h.table().mapped_len(), 0);
    check_all(&mut h);
}

#[test]
#[should_panic(expected = "virt_to_phys(0x1234)")]
fn virt_to_phys_of_an_unknown_address_panics_naming_it() {
    let h = model_hal();
    h.virt_to_phys(axvm_hal::HostVirtAddr::from_usize(0x1234));
}

// ---- page-table frames ----

#[test]
fn paging_frames_come_from_the_pool_and_are_mapped() {
    let mut h = model_hal();
    let before = snap(&h);
    let p = h.alloc_paging_frames(1, 4096).unwrap();
    let v = h.try_phys_to_virt(p).unwrap();
    assert_eq!(h.kernel().translate(init_cap::VSPACE.cap(), v).map(|t| t.paddr), Some(p));
    assert_eq!(h.try_virt_to_phys(v), Ok(p));
    let q = h.alloc_paging_frames(4, 16 * 1024).unwrap();
    assert_eq!(q.get() % (16 * KIB), 0);
    for i in 0..4 {
        let pa = PhysAddr(q.get() + i * 4096);
        let va = h.try_phys_to_virt(pa).unwrap();
        assert_eq!(h.kernel().translate(init_cap::VSPACE.cap(), va).map(|t| t.paddr), Some(pa));
    }
    assert_eq!(h.window().tables(), 3, "one table per level for the window's first 2 MiB");
    check_all(&mut h);
    // A paging frame is not a region: the trait's dealloc refuses it.
    assert!(matches!(h.dealloc_region(p, 4096), Err(HalError::Free(FreeError::WrongPurpose { .. }))));
    h.dealloc_paging_frames(p, 1).unwrap();
    h.dealloc_paging_frames(q, 4).unwrap();
    assert!(h.try_phys_to_virt(p).is_err());
    assert!(h.kernel().translate(init_cap::VSPACE.cap(), v).is_none());
    let after = snap(&h);
    assert_eq!(after.frames, before.frames);
    assert_eq!(after.allocations, 3, "the window keeps its three tables");
    check_all(&mut h);
}

// ---- kernel objects for callers ----

#[test]
fn objects_anywhere_in_ram() {
    let mut h = model_hal();
    let tcbs = h.alloc_objects(ObjectBlueprint::Tcb, 3).unwrap();
    assert_eq!(tcbs.count, 3);
    for i in 0..3 {
        assert_eq!(h.kernel().cap(tcbs.cap::<Tcb>(i).slot()).kind(), "TCB");
    }
    assert_eq!(tcbs.slot(3), None, "no fourth TCB");
    let eps = h.alloc_objects(ObjectBlueprint::Endpoint, 1).unwrap();
    assert_eq!(h.kernel().cap(eps.first).kind(), "endpoint");
    check_all(&mut h);
    h.free_objects(tcbs).unwrap();
    assert_eq!(h.kernel().cap(tcbs.first).kind(), "null");
    h.free_objects(eps).unwrap();
    check_all(&mut h);
}

// ---- time ----

use hal_sel4::time::{ClientError, TimeError};
use timer_server::protocol::{self, ErrorCode, ReplyError, Request};

#[test]
fn time_is_one_call_to_the_timer_server() {
    let mut h = model_hal();
    assert_eq!(h.now_nanos(), Err(TimeError::NoServer));
    let ep = h.alloc_objects(ObjectBlueprint::Endpoint, 1).unwrap().first.cap();
    let mut t = 1_000u64;
    h.kernel_mut().serve(
        ep,
        Box::new(move |_badge, msg| match Request::decode(msg) {
            Ok(Request::Now) => {
                t += 250;
                protocol::ok(&[t])
            }
            Ok(_) => protocol::error(ErrorCode::BadRequest),
            Err(code) => protocol::error(code),
        }),
    );
    h.set_timer(ep);
    let c0 = h.kernel().counters().clone();
    assert_eq!(h.now_nanos(), Ok(1_250));
    assert_eq!(h.current_time_nanos(), 1_500);
    let c1 = h.kernel().counters();
    assert_eq!(c1.get(Op::Call) - c0.get(Op::Call), 2);
    assert_eq!(c1.total() - c0.total(), 2, "nothing but the calls");

    // A server that breaks the protocol, or goes backwards, is reported.
    h.kernel_mut().serve(ep, Box::new(|_, _| sel4::Message::new(0, &[])));
    assert_eq!(
        h.now_nanos(),
        Err(TimeError::Client(ClientError::Reply(ReplyError::Malformed { label: 0, length: 0 })))
    );
    h.kernel_mut().serve(ep, Box::new(|_, _| sel4::Message::new(protocol::REPLY_ERROR, &[7])));
    assert_eq!(h.now_nanos(), Err(TimeError::Client(ClientError::Reply(ReplyError::Server { code: 7 }))));
    h.kernel_mut().serve(ep, Box::new(|_, _| protocol::ok(&[5])));
    assert_eq!(h.now_nanos(), Err(TimeError::Client(ClientError::NotMonotonic { last: 1_500, now: 5 })));
}
