//! Address spaces: ASID table and pools, translation tables (the VSpace root is a stage-2
//! table in hypervisor mode), and the decode and invoke paths of the frame, page table, ASID
//! control and ASID pool invocations, in the kernel's order of checks
//! (`src/arch/arm/64/kernel/vspace.c`).
//!
//! Owns `Model::tables`, `Model::asid_pools` and `Model::asid_table`; the mapping state a
//! cap carries lives in the cap (a cap says where it mapped its object, and may go stale
//! exactly as the kernel's does).

use sel4::config;
use sel4::object::{FrameSize, PAGE_BITS, PAGE_TABLE_INDEX_BITS, VSPACE_INDEX_BITS};
use sel4::{CapRights, Error, PhysAddr, VirtAddr, VmAttributes};

use crate::Model;
use crate::caps::{Mapping, ModelCap, VmRights, mask};
use crate::cspace::max_free_index;
use crate::objects::{AsidPoolObj, Pte, SlotRef, TableObj, Translation};

/// `asidLowBits` (`seL4_ASIDPoolIndexBits`).
pub(crate) const ASID_LOW_BITS: u32 = 9;
/// `asidHighBits` (`seL4_NumASIDPoolsBits`).
pub(crate) const ASID_HIGH_BITS: u32 = 7;
/// `nASIDPools`.
pub(crate) const N_ASID_POOLS: usize = 1 << ASID_HIGH_BITS;
/// Translation levels of a user VSpace (`UPT_LEVELS`): a 44-bit stage-2 input starts at level 0.
pub(crate) const UPT_LEVELS: u32 = if config::AARCH64_VSPACE_S2_START_L1 { 3 } else { 4 };
/// Highest user virtual address (`seL4_UserTop`); in hypervisor mode the stage-2 input size.
pub(crate) const USER_TOP: u64 = if !config::ARM_HYPERVISOR_SUPPORT {
    0x0000_7fff_ffff_ffff
} else if config::ARM_PA_SIZE_BITS_44 {
    0x0000_0fff_ffff_ffff
} else {
    0x0000_00ff_ffff_ffff
};
/// Alignment the kernel demands of an IPC buffer address (`seL4_IPCBufferSizeBits`).
pub(crate) const IPC_BUFFER_SIZE_BITS: u32 = 10;

/// Bits translated below the slot a walk reaches at `level` (counted down to 0 at the last
/// table), i.e. the size of what that slot maps.
const fn bits_at_level(level: u32) -> u32 {
    PAGE_TABLE_INDEX_BITS * level + PAGE_BITS
}

/// `GET_UPT_INDEX(vaddr, n)`, `n` counted from the root.
fn upt_index(vaddr: u64, n: u32) -> u64 {
    let shift = bits_at_level(UPT_LEVELS - 1 - n);
    let bits = if n == 0 { VSPACE_INDEX_BITS } else { PAGE_TABLE_INDEX_BITS };
    (vaddr >> shift) & mask(bits)
}

/// Result of `lookupPTSlot`: the table and index of the slot, and the bits it maps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PtSlot {
    table: u64,
    index: u64,
    bits_left: u32,
}

impl Model {
    // ---- ASIDs ----

    /// `findVSpaceForASID`: the VSpace root an ASID names, if any.
    pub(crate) fn find_vspace_for_asid(&self, asid: u16) -> Option<u64> {
        let pool = self.asid_table[(asid >> ASID_LOW_BITS) as usize]?;
        self.asid_pools.get(&pool)?.entries.get(&(asid & mask(ASID_LOW_BITS) as u16)).copied()
    }

    /// `deleteASID`.
    pub(crate) fn delete_asid(&mut self, asid: u16, vspace: u64) {
        let Some(pool) = self.asid_table[(asid >> ASID_LOW_BITS) as usize] else { return };
        let low = asid & mask(ASID_LOW_BITS) as u16;
        if let Some(p) = self.asid_pools.get_mut(&pool)
            && p.entries.get(&low) == Some(&vspace)
        {
            p.entries.remove(&low);
        }
    }

    // ---- tables ----

    fn pte(&self, table: u64, index: u64) -> Option<Pte> {
        self.tables.get(&table).and_then(|t| t.entries.get(&index)).copied()
    }

    fn set_pte(&mut self, table: u64, index: u64, pte: Option<Pte>) {
        let t = self.tables.get_mut(&table).expect("sel4-model bug: writing a table that does not exist");
        match pte {
            Some(p) => t.entries.insert(index, p),
            None => t.entries.remove(&index),
        };
    }

    /// `lookupPTSlot`: walk from the root while the entry is a next-level table.
    pub(crate) fn lookup_pt_slot(&self, root: u64, vaddr: u64) -> PtSlot {
        let mut level = UPT_LEVELS - 1;
        let mut bits_left = bits_at_level(level);
        let mut slot = PtSlot { table: root, index: (vaddr >> bits_left) & mask(VSPACE_INDEX_BITS), bits_left };
        while level > 0 {
            let Some(Pte::Table(next)) = self.pte(slot.table, slot.index) else { break };
            level -= 1;
            bits_left -= PAGE_TABLE_INDEX_BITS;
            slot = PtSlot { table: next, index: (vaddr >> bits_left) & mask(PAGE_TABLE_INDEX_BITS), bits_left };
        }
        slot
    }

    /// `unmapPageTable`: remove `target` from the VSpace of `asid` if it is mapped at `vaddr`.
    pub(crate) fn unmap_page_table(&mut self, asid: u16, vaddr: u64, target: u64) {
        let Some(root) = self.find_vspace_for_asid(asid) else { return };
        let mut pt = root;
        let mut slot = None;
        let mut i = 0;
        while i < UPT_LEVELS - 1 && pt != target {
            let idx = upt_index(vaddr, i);
            slot = Some((pt, idx));
            match self.pte(pt, idx) {
                Some(Pte::Table(next)) => pt = next,
                _ => return,
            }
            i += 1;
        }
        if pt != target {
            return;
        }
        if let Some((t, idx)) = slot {
            self.set_pte(t, idx, None);
        }
    }

    /// `unmapPage`: remove the mapping of the frame at `paddr` from `vaddr` in the VSpace of
    /// `asid`, if that is still what is mapped there.
    pub(crate) fn unmap_page(&mut self, size: FrameSize, asid: u16, vaddr: u64, paddr: PhysAddr) {
        let Some(root) = self.find_vspace_for_asid(asid) else { return };
        let s = self.lookup_pt_slot(root, vaddr);
        if s.bits_left != size.size_bits() {
            return;
        }
        if let Some(Pte::Page { paddr: p, .. }) = self.pte(s.table, s.index)
            && p == paddr.0
        {
            self.set_pte(s.table, s.index, None);
        }
    }

    /// What `vaddr` translates to in the VSpace rooted at `root`, by a table walk.
    pub(crate) fn walk(&self, root: u64, vaddr: u64) -> Option<Translation> {
        let s = self.lookup_pt_slot(root, vaddr);
        match self.pte(s.table, s.index)? {
            Pte::Page { paddr, size, rights, attrs } => {
                let offset = vaddr & mask(size.size_bits());
                Some(Translation {
                    paddr: PhysAddr(paddr + offset),
                    size,
                    frame_vaddr: VirtAddr(vaddr - offset),
                    rights,
                    attrs,
                })
            }
            Pte::Table(_) => None,
        }
    }

    // ---- frame invocations ----

    /// `ARMPageMap`, after the frame cap was found in `slot`.
    pub(crate) fn decode_page_map(
        &mut self,
        slot: SlotRef,
        vspace_cap: ModelCap,
        vaddr: u64,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Result<(), Error> {
        let ModelCap::Frame { paddr, size, device, rights: cap_rights, mapped } = self.cap_at(slot) else {
            unreachable!("decode_page_map on a non-frame cap")
        };
        let vm_rights = cap_rights.mask(rights);
        let ModelCap::VSpace { paddr: vs, asid: Some(asid) } = vspace_cap else {
            return Err(Error::InvalidCapability);
        };
        let root = self.find_vspace_for_asid(asid).ok_or(Error::FailedLookup)?;
        if root != vs.0 {
            return Err(Error::InvalidCapability);
        }
        if vaddr & mask(size.size_bits()) != 0 {
            return Err(Error::AlignmentError);
        }
        match mapped {
            Some(m) if m.asid != asid => return Err(Error::InvalidCapability),
            Some(m) if m.vaddr.0 != vaddr => return Err(Error::InvalidArgument),
            Some(_) => {}
            None => {
                if vaddr.wrapping_add(size.size_bytes()).wrapping_sub(1) > USER_TOP {
                    return Err(Error::InvalidArgument);
                }
            }
        }
        let s = self.lookup_pt_slot(root, vaddr);
        if s.bits_left != size.size_bits() {
            return Err(Error::FailedLookup);
        }
        let mapping = Some(Mapping { asid, vaddr: VirtAddr(vaddr) });
        self.set_cap(slot, ModelCap::Frame { paddr, size, device, rights: cap_rights, mapped: mapping });
        // An existing mapping in the slot is replaced (the kernel flushes the TLB entry).
        self.set_pte(s.table, s.index, Some(Pte::Page { paddr: paddr.0, size, rights: vm_rights, attrs }));
        Ok(())
    }

    /// `ARMPageUnmap`.
    pub(crate) fn page_unmap_slot(&mut self, slot: SlotRef) {
        let ModelCap::Frame { paddr, size, device, rights, mapped } = self.cap_at(slot) else {
            unreachable!("page_unmap on a non-frame cap")
        };
        if let Some(m) = mapped {
            self.unmap_page(size, m.asid, m.vaddr.0, paddr);
        }
        self.set_cap(slot, ModelCap::Frame { paddr, size, device, rights, mapped: None });
    }

    // ---- page table invocations ----

    /// `ARMPageTableMap`, after the table cap was found in `slot`.
    pub(crate) fn decode_page_table_map(
        &mut self,
        slot: SlotRef,
        vspace_cap: ModelCap,
        vaddr: u64,
    ) -> Result<(), Error> {
        let ModelCap::PageTable { paddr, mapped } = self.cap_at(slot) else {
            unreachable!("decode_page_table_map on a non-table cap")
        };
        if mapped.is_some() {
            return Err(Error::InvalidCapability);
        }
        let ModelCap::VSpace { paddr: vs, asid: Some(asid) } = vspace_cap else {
            return Err(Error::InvalidCapability);
        };
        if vaddr > USER_TOP {
            return Err(Error::InvalidArgument);
        }
        let root = self.find_vspace_for_asid(asid).ok_or(Error::FailedLookup)?;
        if root != vs.0 {
            return Err(Error::InvalidCapability);
        }
        let s = self.lookup_pt_slot(root, vaddr);
        if s.bits_left == PAGE_BITS || self.pte(s.table, s.index).is_some() {
            return Err(Error::DeleteFirst);
        }
        let at = VirtAddr(vaddr & !mask(s.bits_left));
        self.set_cap(slot, ModelCap::PageTable { paddr, mapped: Some(Mapping { asid, vaddr: at }) });
        self.set_pte(s.table, s.index, Some(Pte::Table(paddr.0)));
        Ok(())
    }

    /// `ARMPageTableUnmap`.
    pub(crate) fn decode_page_table_unmap(&mut self, slot: SlotRef) -> Result<(), Error> {
        if !self.is_final(slot) {
            return Err(Error::RevokeFirst);
        }
        let ModelCap::PageTable { paddr, mapped } = self.cap_at(slot) else {
            unreachable!("page_table_unmap on a non-table cap")
        };
        if let Some(m) = mapped {
            self.unmap_page_table(m.asid, m.vaddr.0, paddr.0);
            // clearMemory_PT: the table's own entries go too.
            if let Some(t) = self.tables.get_mut(&paddr.0) {
                t.entries.clear();
            }
        }
        self.set_cap(slot, ModelCap::PageTable { paddr, mapped: None });
        Ok(())
    }

    // ---- ASID control and pools ----

    /// `ARMASIDControlMakePool`, with the untyped's slot and the destination CNode cap.
    pub(crate) fn decode_make_pool(
        &mut self,
        ut_slot: SlotRef,
        root: ModelCap,
        index: u64,
        depth: u64,
    ) -> Result<(), Error> {
        let i = self.asid_table.iter().position(Option::is_none).ok_or(Error::DeleteFirst)?;
        let ModelCap::Untyped { paddr, size_bits, device: false, .. } = self.cap_at(ut_slot) else {
            return Err(Error::InvalidCapability);
        };
        if size_bits != sel4::generated::object_bits::ASID_POOL {
            return Err(Error::InvalidCapability);
        }
        self.ensure_no_children(ut_slot)?;
        let dest = self.lookup_slot_for_cnode_op(root, index, depth)?;
        self.ensure_empty(dest)?;
        // The untyped is marked full: its memory is now the pool.
        self.set_cap(
            ut_slot,
            ModelCap::Untyped { paddr, size_bits, free_index: max_free_index(size_bits), device: false },
        );
        let asid_base = (i as u16) << ASID_LOW_BITS;
        self.cte_insert(ModelCap::AsidPool { paddr, asid_base }, ut_slot, dest);
        self.asid_pools.insert(paddr.0, AsidPoolObj::default());
        self.asid_table[i] = Some(paddr.0);
        Ok(())
    }

    /// `ARMASIDPoolAssign`.
    pub(crate) fn decode_asid_pool_assign(&mut self, pool_cap: ModelCap, vs_slot: SlotRef) -> Result<(), Error> {
        let ModelCap::AsidPool { paddr, asid_base } = pool_cap else { unreachable!("assign on a non-pool cap") };
        let ModelCap::VSpace { paddr: vs, asid: None } = self.cap_at(vs_slot) else {
            return Err(Error::InvalidCapability);
        };
        let pool = self.asid_table[(asid_base >> ASID_LOW_BITS) as usize].ok_or(Error::FailedLookup)?;
        if pool != paddr.0 {
            return Err(Error::InvalidCapability);
        }
        let entries = &self.asid_pools[&pool].entries;
        let free = (0..1u16 << ASID_LOW_BITS).find(|&i| asid_base + i != 0 && !entries.contains_key(&i));
        let i = free.ok_or(Error::DeleteFirst)?;
        let asid = asid_base + i;
        self.set_cap(vs_slot, ModelCap::VSpace { paddr: vs, asid: Some(asid) });
        self.asid_pools.get_mut(&pool).expect("pool exists").entries.insert(i, vs.0);
        Ok(())
    }

    /// A fresh, empty translation table object.
    pub(crate) fn new_table(&mut self, paddr: u64, is_vspace: bool) {
        self.tables.insert(paddr, TableObj { is_vspace, entries: Default::default() });
    }

    /// Installs a mapping at boot (the kernel's `map_it_*` functions), tables first.
    pub(crate) fn boot_map_table(&mut self, root: u64, table: u64, vaddr: u64) -> (u64, u32) {
        let s = self.lookup_pt_slot(root, vaddr);
        self.set_pte(s.table, s.index, Some(Pte::Table(table)));
        (vaddr & !mask(s.bits_left), s.bits_left)
    }

    /// Maps a 4 KiB frame at boot.
    pub(crate) fn boot_map_frame(&mut self, root: u64, paddr: u64, vaddr: u64) -> bool {
        let s = self.lookup_pt_slot(root, vaddr);
        if s.bits_left != PAGE_BITS {
            return false;
        }
        let pte =
            Pte::Page { paddr, size: FrameSize::Small, rights: VmRights::ReadWrite, attrs: VmAttributes::DEFAULT };
        self.set_pte(s.table, s.index, Some(pte));
        true
    }
}
