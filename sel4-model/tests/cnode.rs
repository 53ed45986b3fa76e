//! CNode copy, mint, move, delete and revoke: addressing, error order, derivation and
//! finalisation of the last cap to an object.

mod common;

use common::*;
use sel4::kernel::CNodeSlot;
use sel4::{CapRights, Error, Kernel, ObjectBlueprint, Slot, init_cap};
use sel4_model::{ModelCap, VmRights};

fn nested(cnode: Slot, index: u64, depth: u8) -> CNodeSlot {
    CNodeSlot { cnode: cnode.cap(), index, depth }
}

#[test]
fn copies_land_in_nested_cnodes_addressed_by_index_and_depth() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let cn = free(&m, 0);
    let frame = free(&m, 1);
    make(&mut m, ut, ObjectBlueprint::CNode { slot_bits: 4 }, cn);
    make(&mut m, ut, ObjectBlueprint::SmallPage, frame);
    assert_eq!(m.cnode_copy(nested(cn, 3, 4), frame, CapRights::ALL), Ok(()));
    // Depth must resolve exactly: too deep stops at a frame cap, too shallow cannot index.
    assert_eq!(m.cnode_copy(nested(cn, 3 << 1, 5), frame, CapRights::ALL), Err(Error::FailedLookup));
    assert_eq!(m.cnode_copy(nested(cn, 4, 3), frame, CapRights::ALL), Err(Error::FailedLookup));
    assert_eq!(m.cnode_copy(nested(cn, 4, 0), frame, CapRights::ALL), Err(Error::RangeError));
    assert_eq!(m.cnode_copy(nested(cn, 4, 65), frame, CapRights::ALL), Err(Error::RangeError));
    // The root CNode's guard makes up 48 bits: a CPtr beyond 2^16 does not resolve.
    assert_eq!(m.cnode_copy(root(Slot::new(1 << 16)), frame, CapRights::ALL), Err(Error::FailedLookup));
    // Revoking the original removes the copy inside the nested CNode.
    assert_eq!(m.descendants(frame), 1);
    m.cnode_revoke(root(frame)).unwrap();
    assert_eq!(m.descendants(frame), 0);
    m.cnode_copy(nested(cn, 3, 4), frame, CapRights::ALL).unwrap();
    assert_eq!(m.cnode_delete(nested(cn, 3, 4)), Ok(()));
    assert_eq!(m.cnode_delete(nested(cn, 3, 4)), Ok(()), "deleting an empty slot succeeds");
    check(&m);
}

#[test]
fn copy_checks_destination_then_source() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let ep = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Endpoint, ep);
    // Occupied destination and empty source: the destination is checked first.
    assert_eq!(m.cnode_copy(root(ep), free(&m, 5), CapRights::ALL), Err(Error::DeleteFirst));
    assert_eq!(m.cnode_copy(root(free(&m, 1)), free(&m, 5), CapRights::ALL), Err(Error::FailedLookup));
    // The invoked cap must be a CNode: a frame does not know CNode labels, an empty slot is
    // an invalid cap.
    let frame = init_cap::IPC_BUFFER;
    assert_eq!(m.cnode_copy(nested(frame, 0, 64), ep, CapRights::ALL), Err(Error::IllegalOperation));
    assert_eq!(m.cnode_copy(nested(free(&m, 9), 0, 64), ep, CapRights::ALL), Err(Error::InvalidCapability));
    assert_eq!(m.cnode_delete(nested(frame, 0, 64)), Err(Error::IllegalOperation));
    assert_eq!(m.cnode_revoke(nested(free(&m, 9), 0, 64)), Err(Error::InvalidCapability));
}

#[test]
fn caps_that_cannot_be_derived() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    // IRQ control derives to nothing.
    assert_eq!(m.cnode_copy(root(free(&m, 0)), init_cap::IRQ_CONTROL, CapRights::ALL), Err(Error::IllegalOperation));
    // A VSpace without an ASID and an unmapped page table cannot be copied.
    let vs = free(&m, 1);
    let pt = free(&m, 2);
    make(&mut m, ut, ObjectBlueprint::VSpace, vs);
    make(&mut m, ut, ObjectBlueprint::PageTable, pt);
    assert_eq!(m.cnode_copy(root(free(&m, 3)), vs, CapRights::ALL), Err(Error::IllegalOperation));
    assert_eq!(m.cnode_copy(root(free(&m, 3)), pt, CapRights::ALL), Err(Error::IllegalOperation));
    m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs.cap()).unwrap();
    assert_eq!(m.cnode_copy(root(free(&m, 3)), vs, CapRights::ALL), Ok(()));
    // An untyped with children cannot be copied.
    assert_eq!(m.cnode_copy(root(free(&m, 4)), ut, CapRights::ALL), Err(Error::RevokeFirst));
    // The initial VSpace, ASID control and TCB caps copy fine.
    assert_eq!(m.cnode_copy(root(free(&m, 5)), init_cap::ASID_CONTROL, CapRights::ALL), Ok(()));
    assert!(m.cap(free(&m, 0)).is_null());
    check(&m);
}

#[test]
fn copying_an_untyped_makes_the_parent_full() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 16);
    let copy = free(&m, 0);
    m.cnode_copy(root(copy), ut, CapRights::ALL).unwrap();
    assert_eq!(m.descendants(ut), 1);
    // The parent has a child (the copy) and a full watermark; the copy starts from 0.
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 1), 1), Err(Error::NotEnoughMemory));
    assert_eq!(m.untyped_retype(copy.cap(), ObjectBlueprint::Endpoint, free(&m, 1), 1), Ok(()));
    // Revoking the parent removes the copy and what was made from it.
    m.cnode_revoke(root(ut)).unwrap();
    assert!(m.cap(copy).is_null() && m.cap(free(&m, 1)).is_null());
    assert_eq!(m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, free(&m, 1), 1), Ok(()));
    check(&m);
}

#[test]
fn badges_derive_and_revoke_as_the_kernel_tracks_them() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let ep = free(&m, 0);
    let (b1, b1_copy, b2, plain) = (free(&m, 1), free(&m, 2), free(&m, 3), free(&m, 4));
    make(&mut m, ut, ObjectBlueprint::Endpoint, ep);
    m.cnode_mint(root(b1), ep, CapRights::ALL, 7).unwrap();
    m.cnode_copy(root(b1_copy), b1, CapRights::WRITE_ONLY).unwrap();
    m.cnode_mint(root(b2), ep, CapRights::ALL, 9).unwrap();
    m.cnode_copy(root(plain), ep, CapRights::ALL).unwrap();
    // A badged cap cannot be re-badged.
    assert_eq!(m.cnode_mint(root(free(&m, 5)), b1, CapRights::ALL, 8), Err(Error::IllegalOperation));
    match m.cap(b1_copy) {
        ModelCap::Endpoint { badge: 7, send: true, recv: false, grant: false, .. } => {}
        other => panic!("{other:?}"),
    }
    // Revoking a badged cap removes its copies, not the other badge.
    m.cnode_revoke(root(b1)).unwrap();
    assert!(m.cap(b1_copy).is_null());
    assert!(!m.cap(b2).is_null() && !m.cap(b1).is_null());
    // Revoking the original removes every derived cap.
    assert_eq!(m.descendants(ep), 3);
    m.cnode_revoke(root(ep)).unwrap();
    for s in [b1, b2, plain] {
        assert!(m.cap(s).is_null());
    }
    check(&m);
}

#[test]
fn frame_rights_mask_on_copy() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let f = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::SmallPage, f);
    let rights = |m: &sel4_model::Model, s| match m.cap(s) {
        ModelCap::Frame { rights, .. } => rights,
        other => panic!("{other:?}"),
    };
    m.cnode_copy(root(free(&m, 1)), f, CapRights::READ_ONLY).unwrap();
    m.cnode_copy(root(free(&m, 2)), f, CapRights::WRITE_ONLY).unwrap();
    m.cnode_copy(root(free(&m, 3)), free(&m, 1), CapRights::ALL).unwrap();
    assert_eq!(rights(&m, free(&m, 1)), VmRights::ReadOnly);
    assert_eq!(rights(&m, free(&m, 2)), VmRights::KernelOnly);
    assert_eq!(rights(&m, free(&m, 3)), VmRights::ReadOnly);
}

#[test]
fn move_keeps_the_derivation() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let (a, b) = (free(&m, 0), free(&m, 1));
    make(&mut m, ut, ObjectBlueprint::Notification, a);
    m.cnode_move(root(b), a).unwrap();
    assert!(m.cap(a).is_null());
    assert_eq!(m.cnode_move(root(b), b), Err(Error::DeleteFirst));
    assert_eq!(m.descendants(ut), 1);
    m.cnode_revoke(root(ut)).unwrap();
    assert!(m.cap(b).is_null());
    check(&m);
}

#[test]
fn deleting_the_last_cap_of_a_cnode_deletes_what_it_holds() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let objects_at_boot = m.live_objects();
    let cn = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::CNode { slot_bits: 3 }, cn);
    let (tcb, ntfn, inner) = (free(&m, 1), free(&m, 2), free(&m, 3));
    make(&mut m, ut, ObjectBlueprint::Tcb, tcb);
    make(&mut m, ut, ObjectBlueprint::Notification, ntfn);
    make(&mut m, ut, ObjectBlueprint::CNode { slot_bits: 2 }, inner);
    m.tcb_bind_notification(tcb.cap(), ntfn.cap()).unwrap();
    // Everything moves into the CNode; the inner CNode gets a frame of its own.
    m.cnode_move(nested(cn, 0, 3), tcb).unwrap();
    m.cnode_move(nested(cn, 1, 3), ntfn).unwrap();
    let frame = free(&m, 4);
    make(&mut m, ut, ObjectBlueprint::SmallPage, frame);
    m.cnode_move(nested(inner, 2, 2), frame).unwrap();
    m.cnode_move(nested(cn, 7, 3), inner).unwrap();
    assert_eq!(m.live_objects(), objects_at_boot + 5);
    check(&m);
    m.cnode_delete(root(cn)).unwrap();
    assert_eq!(m.live_objects(), objects_at_boot);
    assert_eq!(m.descendants(ut), 0);
    check(&m);
}

#[test]
fn a_copy_keeps_an_object_alive_until_the_last_cap_goes() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let (cn, copy) = (free(&m, 0), free(&m, 1));
    make(&mut m, ut, ObjectBlueprint::CNode { slot_bits: 2 }, cn);
    let ep = free(&m, 2);
    make(&mut m, ut, ObjectBlueprint::Endpoint, ep);
    m.cnode_move(nested(cn, 1, 2), ep).unwrap();
    m.cnode_copy(root(copy), cn, CapRights::ALL).unwrap();
    let objects = m.live_objects();
    m.cnode_delete(root(cn)).unwrap();
    // Not the last cap: the CNode and its contents live on.
    assert_eq!(m.live_objects(), objects);
    assert!(matches!(m.cap(copy), ModelCap::CNode { .. }));
    m.cnode_delete(root(copy)).unwrap();
    assert_eq!(m.live_objects(), objects - 2);
    check(&m);
}
