//! `Untyped_Retype`: every error path in the kernel's order of checks, placement, the
//! watermark, resets and the zeroing they cost.

mod common;

use common::*;
use sel4::kernel::CNodeSlot;
use sel4::{CapRights, Error, Kernel, ObjectBlueprint, PhysAddr, Slot, init_cap};
use sel4_model::ModelCap;

const PAGE: u64 = 4096;

#[test]
fn invoking_anything_but_an_untyped_fails_as_decode_invocation_does() {
    let mut m = boot();
    let dest = free(&m, 0);
    // An empty slot: InvalidCapability.
    assert_eq!(m.untyped_retype(free(&m, 10).cap(), ObjectBlueprint::Endpoint, dest, 1), Err(Error::InvalidCapability));
    // A frame cap does not know the Retype label: IllegalOperation.
    assert_eq!(
        m.untyped_retype(init_cap::IPC_BUFFER.cap(), ObjectBlueprint::Endpoint, dest, 1),
        Err(Error::IllegalOperation)
    );
    // So does the ASID control cap.
    assert_eq!(
        m.untyped_retype(init_cap::ASID_CONTROL.cap(), ObjectBlueprint::Endpoint, dest, 1),
        Err(Error::IllegalOperation)
    );
    assert!(m.cap(dest).is_null());
    check(&m);
}

#[test]
fn a_notification_cap_is_signalled_whatever_the_method() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let n = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Notification, n);
    m.cnode_mint(root(free(&m, 1)), n, CapRights::ALL, 0b100).unwrap();
    // seL4 sends a signal on a notification cap for any invocation and reports success.
    assert_eq!(m.untyped_retype(free(&m, 1).cap(), ObjectBlueprint::Endpoint, free(&m, 2), 1), Ok(()));
    assert!(m.cap(free(&m, 2)).is_null());
    assert_eq!(m.poll(n.cap()), 0b100);
}

#[test]
fn size_checks_come_first_and_are_range_errors() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    // Even into an occupied slot (checked later), sizes fail first.
    let busy = init_cap::TCB;
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Untyped { size_bits: 64 }, busy, 1), Err(Error::RangeError));
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Untyped { size_bits: 48 }, busy, 1), Err(Error::RangeError));
    // CNode: 2^43 slots of 2^5 bytes is 2^48 bytes.
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::CNode { slot_bits: 43 }, busy, 1), Err(Error::RangeError));
    // Too small: InvalidArgument.
    assert_eq!(
        m.untyped_retype(ut.cap(), ObjectBlueprint::CNode { slot_bits: 0 }, busy, 1),
        Err(Error::InvalidArgument)
    );
    assert_eq!(
        m.untyped_retype(ut.cap(), ObjectBlueprint::Untyped { size_bits: 3 }, busy, 1),
        Err(Error::InvalidArgument)
    );
    // 47 bits is a valid size: the failure is then the occupied slot.
    assert_eq!(
        m.untyped_retype(ut.cap(), ObjectBlueprint::Untyped { size_bits: 47 }, busy, 1),
        Err(Error::DeleteFirst)
    );
}

#[test]
fn destination_window_checks_in_order() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let ep = ObjectBlueprint::Endpoint;
    // Offset past the root CNode.
    assert_eq!(m.untyped_retype(ut.cap(), ep, Slot::new(65536), 1), Err(Error::RangeError));
    // Window of 0 or past the fan-out limit.
    assert_eq!(m.untyped_retype(ut.cap(), ep, free(&m, 0), 0), Err(Error::RangeError));
    let limit = sel4::config::RETYPE_FAN_OUT_LIMIT;
    assert_eq!(m.untyped_retype(ut.cap(), ep, free(&m, 0), limit + 1), Err(Error::RangeError));
    // Window running past the CNode's end.
    assert_eq!(m.untyped_retype(ut.cap(), ep, Slot::new(65535), 2), Err(Error::RangeError));
    assert_eq!(m.untyped_retype(ut.cap(), ep, Slot::new(65535), 1), Ok(()));
    // An occupied slot anywhere in the window: DeleteFirst, and nothing is created.
    let first = free(&m, 0);
    let occupied = free(&m, 3);
    make(&mut m, ut, ep, occupied);
    let before = m.live_objects();
    assert_eq!(m.untyped_retype(ut.cap(), ep, first, 5), Err(Error::DeleteFirst));
    assert_eq!(m.live_objects(), before);
    assert!(m.cap(first).is_null());
    check(&m);
}

#[test]
fn a_missing_root_cnode_cap_is_a_failed_lookup() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    // Move the root CNode cap away from slot 2: retype finds no CNode there.
    let away = free(&m, 0);
    m.cnode_move(root(away), init_cap::CNODE).unwrap();
    assert!(m.cap(init_cap::CNODE).is_null());
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 1), 1), Err(Error::FailedLookup));
    // Moved back through the cap's new home it works again.
    let back = CNodeSlot { cnode: away.cap(), index: init_cap::CNODE.index(), depth: 64 };
    // The source root of a move is slot 2, now empty: FailedLookup too.
    assert_eq!(m.cnode_move(back, away), Err(Error::FailedLookup));
    check(&m);
}

#[test]
fn not_enough_memory_comes_before_the_device_check() {
    let mut m = boot();
    let (ut, d) = ram_untyped(&m, 18);
    assert_eq!(
        m.untyped_retype(ut.cap(), ObjectBlueprint::Untyped { size_bits: 19 }, free(&m, 0), 1),
        Err(Error::NotEnoughMemory)
    );
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, free(&m, 0), 65), Err(Error::NotEnoughMemory));
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, free(&m, 0), 64), Ok(()));
    assert_eq!(m.watermark(ut), Some(1 << d.size_bits));
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 64), 1), Err(Error::NotEnoughMemory));

    let (dev, _) = device_untyped(&m, 12);
    // Two TCBs (2 KiB each) fit a 4 KiB device untyped, so the device rule decides.
    assert_eq!(m.untyped_retype(dev.cap(), ObjectBlueprint::Tcb, free(&m, 100), 2), Err(Error::InvalidArgument));
    // Three do not: NotEnoughMemory is checked first.
    assert_eq!(m.untyped_retype(dev.cap(), ObjectBlueprint::Tcb, free(&m, 100), 3), Err(Error::NotEnoughMemory));
    for b in [
        ObjectBlueprint::Endpoint,
        ObjectBlueprint::CNode { slot_bits: 2 },
        ObjectBlueprint::VSpace,
        ObjectBlueprint::PageTable,
        ObjectBlueprint::VCpu,
    ] {
        assert_eq!(m.untyped_retype(dev.cap(), b, free(&m, 100), 1), Err(Error::InvalidArgument), "{b:?}");
    }
    // Frames and untyped are fine.
    assert_eq!(m.untyped_retype(dev.cap(), ObjectBlueprint::Untyped { size_bits: 11 }, free(&m, 100), 1), Ok(()));
    assert_eq!(m.untyped_retype(dev.cap(), ObjectBlueprint::SmallPage, free(&m, 101), 1), Err(Error::NotEnoughMemory));
    check(&m);
}

#[test]
fn objects_are_aligned_to_their_size_and_the_watermark_moves() {
    let mut m = boot();
    let (ut, d) = ram_untyped(&m, 18);
    let base = d.paddr.0;
    let dest = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Endpoint, dest);
    assert_eq!(m.watermark(ut), Some(16));
    let dest = free(&m, 1);
    make(&mut m, ut, ObjectBlueprint::SmallPage, dest);
    // The page skips to the next 4 KiB boundary.
    assert_eq!(m.page_get_address(free(&m, 1).cap()), Ok(PhysAddr(base + PAGE)));
    assert_eq!(m.watermark(ut), Some(2 * PAGE));
    let dest = free(&m, 2);
    make(&mut m, ut, ObjectBlueprint::Tcb, dest);
    m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, free(&m, 3), 3).unwrap();
    for i in 0..3 {
        assert_eq!(m.page_get_address(free(&m, 3 + i).cap()), Ok(PhysAddr(base + 3 * PAGE + i * PAGE)));
    }
    match m.cap(free(&m, 2)) {
        ModelCap::Tcb { paddr } => assert_eq!(paddr.0, base + 2 * PAGE),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.watermark(ut), Some(6 * PAGE));
    assert_eq!(m.descendants(ut), 6);
    check(&m);
}

#[test]
fn a_full_fan_out_retype_creates_every_object() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let limit = sel4::config::RETYPE_FAN_OUT_LIMIT;
    let before = m.free_slots();
    m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 0), limit).unwrap();
    assert_eq!(m.free_slots(), before - limit);
    assert_eq!(m.watermark(ut), Some(limit * 16));
    assert_eq!(m.descendants(ut), limit as usize);
    check(&m);
}

#[test]
fn revoke_and_retype_start_over_and_count_the_zeroing() {
    let mut m = boot();
    let (ut, d) = ram_untyped(&m, 18);
    // Boot untyped are handed over full: the first retype resets and clears all of it.
    assert_eq!(m.free_index_bytes(ut), Some(1 << d.size_bits));
    assert_eq!(m.watermark(ut), Some(0));
    m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, free(&m, 0), 3).unwrap();
    assert_eq!(m.counters().bytes_zeroed, 1 << d.size_bits);
    assert_eq!(m.counters().untyped_resets, 1);
    // A retype while children exist does not reset.
    m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 3), 1).unwrap();
    assert_eq!(m.counters().untyped_resets, 1);
    assert_eq!(m.watermark(ut), Some(3 * PAGE + 16));

    m.reset_counters();
    m.cnode_revoke(root(ut)).unwrap();
    assert_eq!(m.descendants(ut), 0);
    // The cap keeps its watermark until the next retype...
    assert_eq!(m.free_index_bytes(ut), Some(3 * PAGE + 16));
    assert_eq!(m.watermark(ut), Some(0));
    // ...which clears what was used (in 256-byte chunks) and starts from the base.
    let dest = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::SmallPage, dest);
    assert_eq!(m.page_get_address(free(&m, 0).cap()), Ok(d.paddr));
    assert_eq!(m.counters().bytes_zeroed, 3 * PAGE + 256);
    assert_eq!(m.counters().untyped_resets, 1);
    check(&m);
}

#[test]
fn device_memory_is_never_zeroed() {
    let mut m = boot();
    let (dev, d) = device_untyped(&m, 24);
    let dest = free(&m, 0);
    make(&mut m, dev, ObjectBlueprint::LargePage, dest);
    assert_eq!(m.page_get_address(free(&m, 0).cap()), Ok(d.paddr));
    assert_eq!(m.counters().bytes_zeroed, 0);
    assert_eq!(m.counters().untyped_resets, 1);
    match m.cap(free(&m, 0)) {
        ModelCap::Frame { device, .. } => assert!(device),
        other => panic!("{other:?}"),
    }
}

#[test]
fn children_of_a_child_untyped_are_descendants_of_both() {
    let mut m = boot();
    let (ut, d) = ram_untyped(&m, 18);
    let child = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Untyped { size_bits: 16 }, child);
    m.untyped_retype(child.cap(), ObjectBlueprint::SmallPage, free(&m, 1), 4).unwrap();
    assert_eq!(m.descendants(child), 4);
    assert_eq!(m.descendants(ut), 5);
    // The parent's watermark covers the child untyped only.
    assert_eq!(m.watermark(ut), Some(1 << 16));
    let dest = free(&m, 10);
    make(&mut m, ut, ObjectBlueprint::SmallPage, dest);
    assert_eq!(m.page_get_address(free(&m, 10).cap()), Ok(PhysAddr(d.paddr.0 + (1 << 16))));
    m.cnode_revoke(root(ut)).unwrap();
    for i in 0..11 {
        assert!(m.cap(free(&m, i)).is_null(), "slot {i}");
    }
    check(&m);
}

#[test]
fn alignment_holds_in_the_kernel_window_not_in_physical_addresses() {
    // The 1 TiB device untyped at physical 2^39 is aligned only as the kernel sees it (its
    // window starts at 2^39): a child covering all of it starts at its base.
    let mut m = boot();
    let (dev, d) = device_untyped(&m, 40);
    assert_eq!(d.paddr.0, 1 << 39);
    let dest = free(&m, 0);
    make(&mut m, dev, ObjectBlueprint::Untyped { size_bits: 40 }, dest);
    match m.cap(free(&m, 0)) {
        ModelCap::Untyped { paddr, size_bits: 40, .. } => assert_eq!(paddr, d.paddr),
        other => panic!("{other:?}"),
    }
    check(&m);
}

#[test]
fn failed_retypes_change_nothing() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let dest = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Endpoint, dest);
    let (slots, wm, objs) = (m.free_slots(), m.watermark(ut), m.live_objects());
    for (b, dest, n) in [
        (ObjectBlueprint::Untyped { size_bits: 19 }, free(&m, 1), 1),
        (ObjectBlueprint::Endpoint, free(&m, 0), 1),
        (ObjectBlueprint::Endpoint, free(&m, 1), 0),
        (ObjectBlueprint::CNode { slot_bits: 0 }, free(&m, 1), 1),
    ] {
        assert!(m.untyped_retype(ut.cap(), b, dest, n).is_err());
    }
    assert_eq!((m.free_slots(), m.watermark(ut), m.live_objects()), (slots, wm, objs));
}
