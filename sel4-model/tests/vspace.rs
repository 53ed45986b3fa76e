//! Frames, page tables, VSpaces and ASIDs: the mapping rules and their error order.

mod common;

use common::*;
use sel4::{
    CacheOp, CapRights, Error, FrameSize, Kernel, ObjectBlueprint, PhysAddr, Slot, VirtAddr, VmAttributes, init_cap,
};
use sel4_model::{Mapping, Model, ModelCap, VmRights};

const RW: CapRights = CapRights::READ_WRITE;
const ATTRS: VmAttributes = VmAttributes::DEFAULT;
/// A guest-physical address with room for every frame size.
const IPA: u64 = 0x4000_0000;

struct Space {
    m: Model,
    ut: Slot,
    vs: Slot,
    next: u64,
}

impl Space {
    /// A fresh VSpace with an ASID from the root task's pool.
    fn new() -> Self {
        let mut m = boot();
        let (ut, _) = ram_untyped(&m, 27);
        let vs = free(&m, 0);
        make(&mut m, ut, ObjectBlueprint::VSpace, vs);
        m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs.cap()).unwrap();
        Space { m, ut, vs, next: 1 }
    }

    fn slot(&mut self) -> Slot {
        self.next += 1;
        free(&self.m, self.next)
    }

    fn obj(&mut self, b: ObjectBlueprint) -> Slot {
        let s = self.slot();
        make(&mut self.m, self.ut, b, s);
        s
    }

    fn table_at(&mut self, vaddr: u64) -> Slot {
        let pt = self.obj(ObjectBlueprint::PageTable);
        self.m.page_table_map(pt.cap(), self.vs.cap(), VirtAddr(vaddr), ATTRS).unwrap();
        pt
    }

    fn map(&mut self, frame: Slot, vaddr: u64) -> sel4::Result<()> {
        self.m.page_map(frame.cap(), self.vs.cap(), VirtAddr(vaddr), RW, ATTRS)
    }

    fn at(&self, vaddr: u64) -> Option<PhysAddr> {
        self.m.translate(self.vs.cap(), VirtAddr(vaddr)).map(|t| t.paddr)
    }

    fn paddr(&mut self, frame: Slot) -> PhysAddr {
        self.m.page_get_address(frame.cap()).unwrap()
    }
}

#[test]
fn a_vspace_needs_an_asid_before_anything_maps_into_it() {
    let mut s = Space::new();
    let bare = s.obj(ObjectBlueprint::VSpace);
    let f = s.obj(ObjectBlueprint::SmallPage);
    let pt = s.obj(ObjectBlueprint::PageTable);
    // Not assigned: InvalidCapability, even before the (bad) alignment is looked at.
    assert_eq!(s.m.page_map(f.cap(), bare.cap(), VirtAddr(IPA + 1), RW, ATTRS), Err(Error::InvalidCapability));
    assert_eq!(s.m.page_table_map(pt.cap(), bare.cap(), VirtAddr(IPA), ATTRS), Err(Error::InvalidCapability));
    // Not a VSpace at all.
    assert_eq!(s.m.page_map(f.cap(), pt.cap(), VirtAddr(IPA), RW, ATTRS), Err(Error::InvalidCapability));
    // Assigned, but no tables yet: FailedLookup; misalignment is reported before that.
    assert_eq!(s.map(f, IPA + 0x800), Err(Error::AlignmentError));
    assert_eq!(s.map(f, IPA), Err(Error::FailedLookup));
    check(&s.m);
}

#[test]
fn each_frame_size_needs_the_tables_above_it() {
    let mut s = Space::new();
    let huge_dev = {
        // 1 GiB frames come from the 1 GiB device untyped.
        let (dev, _) = device_untyped(&s.m, 30);
        let h = s.slot();
        make(&mut s.m, dev, ObjectBlueprint::HugePage, h);
        h
    };
    let large = s.obj(ObjectBlueprint::LargePage);
    let small = s.obj(ObjectBlueprint::SmallPage);
    assert_eq!(s.map(huge_dev, IPA), Err(Error::FailedLookup));
    s.table_at(IPA); // level 1
    assert_eq!(s.map(large, IPA), Err(Error::FailedLookup));
    assert_eq!(s.map(huge_dev, IPA), Ok(()));
    assert_eq!(s.at(IPA + 0x1234), Some(PhysAddr(0xc000_0000 + 0x1234)));
    // A second gigabyte gets a level 2 table, then a level 3 one.
    let gb2 = IPA + (1 << 30);
    s.table_at(gb2);
    assert_eq!(s.map(small, gb2), Err(Error::FailedLookup));
    assert_eq!(s.map(large, gb2), Ok(()));
    let p = s.paddr(large);
    assert_eq!(s.at(gb2 + 0x1f_f000), Some(PhysAddr(p.0 + 0x1f_f000)));
    let mb2 = gb2 + (2 << 20);
    s.table_at(mb2);
    assert_eq!(s.map(small, mb2), Ok(()));
    assert_eq!(s.at(mb2), Some(s.paddr(small)));
    check(&s.m);
}

#[test]
fn page_table_map_refuses_occupied_slots_and_mapped_tables() {
    let mut s = Space::new();
    let l1 = s.table_at(IPA);
    s.table_at(IPA);
    s.table_at(IPA);
    // Levels 1 to 3 exist: a fourth table has nowhere to go.
    let extra = s.obj(ObjectBlueprint::PageTable);
    assert_eq!(s.m.page_table_map(extra.cap(), s.vs.cap(), VirtAddr(IPA), ATTRS), Err(Error::DeleteFirst));
    // A table cap that is already mapped.
    assert_eq!(s.m.page_table_map(l1.cap(), s.vs.cap(), VirtAddr(1 << 40), ATTRS), Err(Error::InvalidCapability));
    // A 2 MiB frame occupies a level 2 slot: no table can go there.
    let large = s.obj(ObjectBlueprint::LargePage);
    let other = IPA + (4 << 20);
    s.map(large, other).unwrap();
    assert_eq!(s.m.page_table_map(extra.cap(), s.vs.cap(), VirtAddr(other), ATTRS), Err(Error::DeleteFirst));
    // Past the 44-bit input range.
    assert_eq!(s.m.page_table_map(extra.cap(), s.vs.cap(), VirtAddr(1 << 44), ATTRS), Err(Error::InvalidArgument));
    match s.m.cap(l1) {
        ModelCap::PageTable { mapped: Some(Mapping { vaddr, .. }), .. } => assert_eq!(vaddr, VirtAddr(0)),
        other => panic!("{other:?}"),
    }
    check(&s.m);
}

#[test]
fn a_frame_cap_maps_once_and_may_only_be_remapped_in_place() {
    let mut s = Space::new();
    s.table_at(IPA);
    s.table_at(IPA);
    s.table_at(IPA);
    let f = s.obj(ObjectBlueprint::SmallPage);
    s.map(f, IPA).unwrap();
    assert_eq!(s.map(f, IPA + 0x1000), Err(Error::InvalidArgument));
    // Same place, fewer rights: allowed, the mapping is rewritten.
    s.m.page_map(f.cap(), s.vs.cap(), VirtAddr(IPA), CapRights::READ_ONLY, ATTRS).unwrap();
    assert_eq!(s.m.translate(s.vs.cap(), VirtAddr(IPA)).unwrap().rights, VmRights::ReadOnly);
    // Another address space: InvalidCapability.
    let vs2 = s.obj(ObjectBlueprint::VSpace);
    s.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs2.cap()).unwrap();
    assert_eq!(s.m.page_map(f.cap(), vs2.cap(), VirtAddr(IPA), RW, ATTRS), Err(Error::InvalidCapability));
    // A copy is a separate mapping.
    let copy = s.slot();
    s.m.cnode_copy(root(copy), f, CapRights::ALL).unwrap();
    assert_eq!(s.map(copy, IPA + 0x1000), Ok(()));
    assert_eq!(s.at(IPA + 0x1000), s.at(IPA));
    // Beyond seL4_UserTop.
    let g = s.obj(ObjectBlueprint::SmallPage);
    assert_eq!(s.map(g, 1 << 44), Err(Error::InvalidArgument));
    check(&s.m);
}

#[test]
fn mapping_over_a_mapped_frame_replaces_it_and_the_old_cap_goes_stale() {
    let mut s = Space::new();
    s.table_at(IPA);
    s.table_at(IPA);
    s.table_at(IPA);
    let (a, b) = (s.obj(ObjectBlueprint::SmallPage), s.obj(ObjectBlueprint::SmallPage));
    s.map(a, IPA).unwrap();
    assert_eq!(s.map(b, IPA), Ok(()));
    assert_eq!(s.at(IPA), Some(s.paddr(b)));
    // Unmapping the stale cap leaves b's mapping alone.
    s.m.page_unmap(a.cap()).unwrap();
    assert_eq!(s.at(IPA), Some(s.paddr(b)));
    s.m.page_unmap(b.cap()).unwrap();
    assert_eq!(s.at(IPA), None);
    assert_eq!(s.m.page_unmap(b.cap()), Ok(()), "unmapping an unmapped frame succeeds");
    check(&s.m);
}

#[test]
fn deleting_the_last_cap_unmaps() {
    let mut s = Space::new();
    let l1 = s.table_at(IPA);
    s.table_at(IPA);
    let l3 = s.table_at(IPA);
    let f = s.obj(ObjectBlueprint::SmallPage);
    s.map(f, IPA).unwrap();
    // Deleting an (unmapped) copy leaves the mapping.
    let copy = s.slot();
    s.m.cnode_copy(root(copy), f, CapRights::ALL).unwrap();
    s.m.cnode_delete(root(copy)).unwrap();
    assert!(s.at(IPA).is_some());
    s.m.cnode_delete(root(f)).unwrap();
    assert_eq!(s.at(IPA), None);
    // A table with a copy is not final: unmap wants a revoke first.
    let l3_copy = s.slot();
    s.m.cnode_copy(root(l3_copy), l3, CapRights::ALL).unwrap();
    assert_eq!(s.m.page_table_unmap(l3.cap()), Err(Error::RevokeFirst));
    s.m.cnode_delete(root(l3_copy)).unwrap();
    // Deleting the level 1 table cuts everything below it off.
    let g = s.obj(ObjectBlueprint::SmallPage);
    s.map(g, IPA).unwrap();
    s.m.cnode_delete(root(l1)).unwrap();
    assert_eq!(s.at(IPA), None);
    // g's cap still says where it was mapped: it can be mapped there again once tables exist.
    assert!(matches!(s.m.cap(g), ModelCap::Frame { mapped: Some(_), .. }));
    assert_eq!(s.map(g, IPA), Err(Error::FailedLookup));
    s.table_at(IPA);
    s.table_at(IPA);
    s.table_at(IPA);
    assert_eq!(s.map(g, IPA + 0x1000), Err(Error::InvalidArgument));
    assert_eq!(s.map(g, IPA), Ok(()));
    check(&s.m);
}

#[test]
fn page_table_unmap_clears_the_table() {
    let mut s = Space::new();
    s.table_at(IPA);
    s.table_at(IPA);
    let l3 = s.table_at(IPA);
    let f = s.obj(ObjectBlueprint::SmallPage);
    s.map(f, IPA).unwrap();
    s.m.page_table_unmap(l3.cap()).unwrap();
    assert_eq!(s.at(IPA), None);
    // Mapped again elsewhere, the table comes back empty.
    s.m.page_table_map(l3.cap(), s.vs.cap(), VirtAddr(IPA + (2 << 20)), ATTRS).unwrap();
    assert_eq!(s.at(IPA + (2 << 20)), None);
    check(&s.m);
}

#[test]
fn a_deleted_vspace_frees_its_asid_for_the_next_one() {
    let mut s = Space::new();
    let asid_of = |m: &Model, vs: Slot| match m.cap(vs) {
        ModelCap::VSpace { asid, .. } => asid,
        other => panic!("{other:?}"),
    };
    // The root task holds ASID 1 and ASID 0 is never handed out: the first VSpace got 2.
    assert_eq!(asid_of(&s.m, s.vs), Some(2));
    s.table_at(IPA);
    s.table_at(IPA);
    s.table_at(IPA);
    let f = s.obj(ObjectBlueprint::SmallPage);
    s.map(f, IPA).unwrap();
    s.m.cnode_delete(root(s.vs)).unwrap();
    let vs2 = s.obj(ObjectBlueprint::VSpace);
    s.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs2.cap()).unwrap();
    assert_eq!(asid_of(&s.m, vs2), Some(2));
    assert_eq!(s.m.translate(vs2.cap(), VirtAddr(IPA)), None);
    // Assigning twice is refused.
    assert_eq!(s.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs2.cap()), Err(Error::InvalidCapability));
    check(&s.m);
}

#[test]
fn asid_pools_come_from_4k_untyped() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let (pool_ut, big) = (free(&m, 0), free(&m, 1));
    make(&mut m, ut, ObjectBlueprint::Untyped { size_bits: 12 }, pool_ut);
    make(&mut m, ut, ObjectBlueprint::Untyped { size_bits: 13 }, big);
    let (dev_ut, _) = device_untyped(&m, 12);
    let ctl = init_cap::ASID_CONTROL.cap();
    let pool = free(&m, 3);
    assert_eq!(m.asid_control_make_pool(ctl, big.cap(), root(pool)), Err(Error::InvalidCapability));
    assert_eq!(m.asid_control_make_pool(ctl, dev_ut.cap(), root(pool)), Err(Error::InvalidCapability));
    assert_eq!(m.asid_control_make_pool(ctl, init_cap::IPC_BUFFER.cap(), root(pool)), Err(Error::InvalidCapability));
    assert_eq!(m.asid_control_make_pool(ctl, pool_ut.cap(), root(init_cap::TCB)), Err(Error::DeleteFirst));
    assert_eq!(m.asid_control_make_pool(ctl, pool_ut.cap(), root(pool)), Ok(()));
    // The untyped now holds the pool: it is a child, so the untyped is busy.
    assert_eq!(m.asid_control_make_pool(ctl, pool_ut.cap(), root(free(&m, 4))), Err(Error::RevokeFirst));
    assert_eq!(m.untyped_retype(pool_ut.cap(), ObjectBlueprint::Endpoint, free(&m, 4), 1), Err(Error::NotEnoughMemory));
    match m.cap(pool) {
        ModelCap::AsidPool { asid_base, .. } => assert_eq!(asid_base, 512),
        other => panic!("{other:?}"),
    }
    let vs = free(&m, 5);
    make(&mut m, ut, ObjectBlueprint::VSpace, vs);
    m.asid_pool_assign(pool.cap(), vs.cap()).unwrap();
    assert!(matches!(m.cap(vs), ModelCap::VSpace { asid: Some(512), .. }));
    // Revoking the untyped deletes the pool: the VSpace's ASID goes with it.
    m.cnode_revoke(root(pool_ut)).unwrap();
    assert!(m.cap(pool).is_null());
    let f = free(&m, 6);
    make(&mut m, ut, ObjectBlueprint::SmallPage, f);
    assert_eq!(m.page_map(f.cap(), vs.cap(), VirtAddr(0), RW, ATTRS), Err(Error::FailedLookup));
    check(&m);
}

#[test]
fn a_pool_holds_511_or_512_asids() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 23);
    let vs0 = free(&m, 0).index();
    m.untyped_retype(ut.cap(), ObjectBlueprint::VSpace, Slot::new(vs0), 256).unwrap();
    m.untyped_retype(ut.cap(), ObjectBlueprint::VSpace, Slot::new(vs0 + 256), 256).unwrap();
    // The root task's pool: ASID 0 is never used and ASID 1 is the root task's.
    for i in 0..510 {
        m.asid_pool_assign(init_cap::ASID_POOL.cap(), Slot::new(vs0 + i).cap()).unwrap();
    }
    assert_eq!(m.asid_pool_assign(init_cap::ASID_POOL.cap(), Slot::new(vs0 + 510).cap()), Err(Error::DeleteFirst));
    // Freeing one makes room.
    m.cnode_delete(root(Slot::new(vs0 + 7))).unwrap();
    assert_eq!(m.asid_pool_assign(init_cap::ASID_POOL.cap(), Slot::new(vs0 + 510).cap()), Ok(()));
    assert!(matches!(m.cap(Slot::new(vs0 + 510)), ModelCap::VSpace { asid: Some(9), .. }));
    check(&m);
}

#[test]
fn the_root_task_vspace_maps_its_image_ipc_buffer_and_bootinfo() {
    let mut m = boot();
    let p = m.platform().clone();
    let vs = init_cap::VSPACE.cap();
    let ipc = m.bootinfo().ipc_buffer_addr();
    assert_eq!(ipc, p.image_vaddr.0 + 55 * 4096);
    assert_eq!(m.translate(vs, VirtAddr(ipc)).map(|t| t.paddr), Some(p.rootserver.ipc_buffer));
    assert_eq!(m.translate(vs, VirtAddr(ipc + 4096)).map(|t| t.paddr), Some(p.rootserver.bootinfo));
    assert_eq!(m.translate(vs, p.image_vaddr).map(|t| t.paddr), Some(p.image_paddr));
    assert_eq!(m.page_get_address(init_cap::IPC_BUFFER.cap()), Ok(p.rootserver.ipc_buffer));
    // The image's tables are there: a 4 KiB frame maps next to the image without new tables,
    // and a new level 1 table at the same address finds every level taken.
    let (ut, _) = ram_untyped(&m, 18);
    let f = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::SmallPage, f);
    let next = VirtAddr(p.image_vaddr.0 + 0x10_0000);
    assert_eq!(m.page_map(f.cap(), vs, next, RW, ATTRS), Ok(()));
    let pt = free(&m, 1);
    make(&mut m, ut, ObjectBlueprint::PageTable, pt);
    assert_eq!(m.page_table_map(pt.cap(), vs, next, ATTRS), Err(Error::DeleteFirst));
    assert_eq!(m.translate(vs, next).map(|t| t.size), Some(FrameSize::Small));
    check(&m);
}

#[test]
fn get_address_answers_for_frames_only() {
    let mut m = boot();
    let (ut, d) = ram_untyped(&m, 18);
    let f = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::SmallPage, f);
    assert_eq!(m.page_get_address(f.cap()), Ok(d.paddr));
    assert_eq!(m.page_get_address(init_cap::TCB.cap()), Err(Error::IllegalOperation));
    assert_eq!(m.page_get_address(init_cap::CNODE.cap()), Err(Error::IllegalOperation));
    assert_eq!(m.page_get_address(free(&m, 9).cap()), Err(Error::InvalidCapability));
}

#[test]
fn cache_maintenance_needs_a_mapped_frame_and_a_range_inside_it() {
    let mut s = Space::new();
    s.table_at(IPA);
    s.table_at(IPA);
    let f = s.obj(ObjectBlueprint::LargePage);
    let flush = |m: &mut Model, op, a, b| m.page_flush(f.cap(), op, a, b);
    // Unmapped: the kernel has no address space to flush through.
    assert_eq!(flush(&mut s.m, CacheOp::CleanData, 0, 64), Err(Error::IllegalOperation));
    s.map(f, IPA).unwrap();
    for op in [CacheOp::CleanData, CacheOp::InvalidateData, CacheOp::CleanInvalidateData, CacheOp::UnifyInstruction] {
        assert_eq!(flush(&mut s.m, op, 0, 2 << 20), Ok(()), "{op:?}: the whole 2 MiB frame");
        assert_eq!(flush(&mut s.m, op, 0x40, 0x80), Ok(()));
    }
    // Empty or reversed range: argument 1; a range leaving the frame: argument 0.
    assert_eq!(flush(&mut s.m, CacheOp::CleanData, 0x80, 0x80), Err(Error::InvalidArgument));
    assert_eq!(flush(&mut s.m, CacheOp::CleanData, 0x80, 0x40), Err(Error::InvalidArgument));
    assert_eq!(flush(&mut s.m, CacheOp::CleanData, 0, (2 << 20) + 1), Err(Error::InvalidArgument));
    assert_eq!(flush(&mut s.m, CacheOp::CleanData, 2 << 20, (2 << 20) + 64), Err(Error::InvalidArgument));
    // Not a frame.
    assert_eq!(s.m.page_flush(s.vs.cap(), CacheOp::CleanData, 0, 64), Err(Error::IllegalOperation));
    assert_eq!(s.m.counters().get(sel4::Op::PageFlush), 14, "every call is a kernel entry, refused or not");
    check(&s.m);
}
