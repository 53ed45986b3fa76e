//! The root-task mapping window: a range of the root task's virtual address space that the
//! HAL owns, where it maps frames it allocated (page-table frames for the `PagingHandler`,
//! regions a caller wants to read or write), and the translation tables that range needs.
//!
//! Owns: the virtual range it was given, the translation tables it created in it (each one a
//! one-object allocation of the untyped pool, kept for reuse until the HAL is dropped), and
//! the record of which allocation is mapped where. It must never map outside its range and
//! never unmap a frame it did not map.
//!
//! Mapping a frame of size `2^f` at `va` needs a table at every level whose entries are at
//! least `2^f`: with the root at level 0 (this configuration), a 4 KiB page needs the level
//! 1, 2 and 3 tables covering `va`, a 2 MiB page levels 1 and 2, a 1 GiB page level 1.
//! Cost of mapping an allocation: one `Page_Map` per frame, plus per missing table one
//! `PageTable_Map` and, unless a spare table is at hand, its pool allocation (see
//! [`crate::pool`]). Unmapping: one `Page_Unmap` per frame (or none, when the frames are
//! revoked: deleting a frame capability unmaps it). Tables stay mapped when their frames go;
//! when a larger frame later needs the slot a table occupies, the table (empty, since the
//! window's range there is free) is unmapped with one `PageTable_Unmap` and kept as a spare.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use sel4::cap_type::{Frame, PageTable, VSpace};
use sel4::config;
use sel4::object::{PAGE_BITS, PAGE_TABLE_INDEX_BITS};
use sel4::{Cap, CapRights, Kernel, ObjectBlueprint, PhysAddr, VirtAddr, VmAttributes};

use crate::pool::{AllocError, KindRequest, MemoryKind, Purpose, UntypedPool};
use crate::ranges::VirtRangeAllocator;
use crate::table::{CapTable, TableError};

/// log2 of the span covered by one table at each level below the VSpace root, largest first.
pub const TABLE_SPANS: &[u32] = if config::AARCH64_VSPACE_S2_START_L1 {
    &[PAGE_BITS + 2 * PAGE_TABLE_INDEX_BITS, PAGE_BITS + PAGE_TABLE_INDEX_BITS]
} else {
    &[PAGE_BITS + 3 * PAGE_TABLE_INDEX_BITS, PAGE_BITS + 2 * PAGE_TABLE_INDEX_BITS, PAGE_BITS + PAGE_TABLE_INDEX_BITS]
};

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No allocation of frames starts at this base.
    NotAllocated(PhysAddr),
    /// The allocation is already mapped.
    AlreadyMapped(PhysAddr),
    /// The allocation is not mapped.
    NotMapped(PhysAddr),
    /// The window has no free virtual range of this size and alignment.
    WindowFull {
        /// Bytes asked for.
        size: u64,
    },
    /// A translation table could not be allocated.
    Table(AllocError),
    /// The capability table refused the record.
    Record(TableError),
    /// A kernel invocation failed; what was mapped by this call is unmapped again.
    Kernel {
        /// The invocation.
        during: &'static str,
        /// The kernel's error.
        error: sel4::Error,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::NotAllocated(p) => write!(f, "no frame allocation starts at {p}"),
            MapError::AlreadyMapped(p) => write!(f, "allocation at {p} is already mapped"),
            MapError::NotMapped(p) => write!(f, "allocation at {p} is not mapped"),
            MapError::WindowFull { size } => write!(f, "mapping window has no room for {size:#x} bytes"),
            MapError::Table(e) => write!(f, "translation table: {e}"),
            MapError::Record(e) => write!(f, "capability table: {e}"),
            MapError::Kernel { during, error } => write!(f, "kernel refused {during}: {error}"),
        }
    }
}

impl core::error::Error for MapError {}

/// One translation table the window owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableRecord {
    /// Base of its one-object pool allocation.
    allocation: PhysAddr,
    /// Its capability.
    cap: Cap<PageTable>,
}

/// The window. See the module docs.
#[derive(Clone, Debug)]
pub struct Window {
    vspace: Cap<VSpace>,
    range: VirtRangeAllocator,
    /// `(span_bits, start of the span)` -> table mapped there.
    tables: BTreeMap<(u32, VirtAddr), TableRecord>,
    /// Tables unmapped to make room for a larger frame, empty, ready to be mapped elsewhere.
    spare: Vec<TableRecord>,
    /// Allocation base -> where it is mapped and its length in bytes.
    mapped: BTreeMap<PhysAddr, (VirtAddr, u64)>,
    /// `[start, end)` the window may take memory for its tables from (`None`: anywhere in RAM).
    internal: Option<(PhysAddr, PhysAddr)>,
}

impl Window {
    /// A window over `[base, base + size)` of `vspace`, taking table memory from the
    /// physical range `internal`, `[start, end)` (or anywhere in RAM when `None`).
    pub fn new(vspace: Cap<VSpace>, base: VirtAddr, size: u64, internal: Option<(PhysAddr, PhysAddr)>) -> Self {
        Window {
            vspace,
            range: VirtRangeAllocator::new(base, size),
            tables: BTreeMap::new(),
            spare: Vec::new(),
            mapped: BTreeMap::new(),
            internal,
        }
    }

    /// Number of translation tables the window owns (mapped or spare).
    pub fn tables(&self) -> usize {
        self.tables.len() + self.spare.len()
    }

    /// Number of translation tables mapped.
    pub fn mapped_tables(&self) -> usize {
        self.tables.len()
    }

    /// Where the allocation at `base` is mapped.
    pub fn mapping(&self, base: PhysAddr) -> Option<(VirtAddr, u64)> {
        self.mapped.get(&base).copied()
    }

    /// Maps every frame of the allocation at `base` at the same offsets from one virtual
    /// base, and records the mappings in `table`. All or nothing.
    pub fn map<K: Kernel>(
        &mut self,
        kernel: &mut K,
        pool: &mut UntypedPool,
        table: &mut CapTable,
        base: PhysAddr,
    ) -> Result<VirtAddr, MapError> {
        if self.mapped.contains_key(&base) {
            return Err(MapError::AlreadyMapped(base));
        }
        let a = pool.allocation(base).ok_or(MapError::NotAllocated(base))?;
        if !matches!(a.purpose, Purpose::Region | Purpose::Paging) {
            return Err(MapError::NotAllocated(base));
        }
        let (size, device) = (a.size, a.kind == MemoryKind::Device);
        let frames: Vec<(Cap<Frame>, PhysAddr, u32)> =
            table.frames_in(a.base, a.end()).map(|f| (f.slot.cap::<Frame>(), f.paddr, f.size.size_bits())).collect();
        let align_bits = frames.iter().map(|f| f.2).max().unwrap_or(PAGE_BITS);
        let va = self.range.alloc(size, align_bits, base).ok_or(MapError::WindowFull { size })?;
        let attrs =
            if device { VmAttributes::EXECUTE_NEVER } else { VmAttributes::DEFAULT.union(VmAttributes::EXECUTE_NEVER) };
        let mut done = 0;
        let mut result = Ok(());
        for &(cap, paddr, bits) in &frames {
            let v = va.offset(paddr.offset_from(base));
            if let Err(e) = self.clear_tables_under(kernel, v, bits) {
                result = Err(e);
                break;
            }
            if let Err(e) = self.ensure_tables(kernel, pool, v, bits) {
                result = Err(e);
                break;
            }
            if let Err(error) = kernel.page_map(cap, self.vspace, v, CapRights::READ_WRITE, attrs) {
                result = Err(MapError::Kernel { during: "Page_Map", error });
                break;
            }
            done += 1;
            if let Err(e) = table.set_mapping(paddr, v) {
                result = Err(MapError::Record(e));
                break;
            }
        }
        if let Err(e) = result {
            for &(cap, paddr, _) in &frames[..done] {
                if let Err(err) = kernel.page_unmap(cap) {
                    log::error!("window: undo: Page_Unmap of {paddr:#x} failed: {err}");
                }
                table.clear_mapping(paddr);
            }
            let _ = self.range.free(va, size);
            return Err(e);
        }
        self.mapped.insert(base, (va, size));
        Ok(va)
    }

    /// Unmaps the allocation at `base` (one `Page_Unmap` per frame).
    pub fn unmap<K: Kernel>(&mut self, kernel: &mut K, table: &mut CapTable, base: PhysAddr) -> Result<(), MapError> {
        let &(va, len) = self.mapped.get(&base).ok_or(MapError::NotMapped(base))?;
        let frames: Vec<(Cap<Frame>, PhysAddr)> =
            table.frames_in(base, base.offset(len)).map(|f| (f.slot.cap::<Frame>(), f.paddr)).collect();
        for (cap, paddr) in frames {
            kernel.page_unmap(cap).map_err(|error| MapError::Kernel { during: "Page_Unmap", error })?;
            table.clear_mapping(paddr);
        }
        self.mapped.remove(&base);
        let _ = self.range.free(va, len);
        Ok(())
    }

    /// Forgets the mapping of `base` without kernel calls: for an allocation about to be
    /// revoked (deleting a frame capability unmaps the frame).
    pub fn forget(&mut self, table: &mut CapTable, base: PhysAddr) {
        if let Some((va, len)) = self.mapped.remove(&base) {
            let paddrs: Vec<PhysAddr> = table.frames_in(base, base.offset(len)).map(|f| f.paddr).collect();
            for p in paddrs {
                table.clear_mapping(p);
            }
            let _ = self.range.free(va, len);
        }
    }

    /// Unmaps the tables that sit where a frame of `2^frame_bits` at `va` goes: a table whose
    /// whole span lies inside the frame (left behind by smaller frames mapped there before;
    /// the window's virtual range is free, so they map nothing). Smallest first, so a table
    /// never leaves with another still mapped inside it. They become spares.
    fn clear_tables_under<K: Kernel>(&mut self, kernel: &mut K, va: VirtAddr, frame_bits: u32) -> Result<(), MapError> {
        let end = va.offset(1u64 << frame_bits);
        for &span in TABLE_SPANS.iter().rev() {
            if span > frame_bits {
                continue;
            }
            let keys: Vec<(u32, VirtAddr)> = self.tables.range((span, va)..(span, end)).map(|(k, _)| *k).collect();
            for key in keys {
                let t = self.tables[&key];
                kernel
                    .page_table_unmap(t.cap)
                    .map_err(|error| MapError::Kernel { during: "PageTable_Unmap", error })?;
                self.tables.remove(&key);
                self.spare.push(t);
            }
        }
        Ok(())
    }

    fn ensure_tables<K: Kernel>(
        &mut self,
        kernel: &mut K,
        pool: &mut UntypedPool,
        va: VirtAddr,
        frame_bits: u32,
    ) -> Result<(), MapError> {
        for &span in TABLE_SPANS {
            if span - PAGE_TABLE_INDEX_BITS < frame_bits {
                continue;
            }
            let key = (span, va.align_down(span));
            if self.tables.contains_key(&key) {
                continue;
            }
            let t = match self.spare.pop() {
                Some(t) => t,
                None => {
                    let size = 1u64 << ObjectBlueprint::PageTable.physical_size_bits();
                    let at = pool
                        .find_free(size, size, self.internal)
                        .ok_or(MapError::Table(AllocError::NoFreeMemory { size }))?;
                    let blueprint = ObjectBlueprint::PageTable;
                    let a = pool
                        .alloc(kernel, at, size, KindRequest::Ram, Purpose::Objects(blueprint), Some(blueprint), 1)
                        .map_err(MapError::Table)?;
                    TableRecord { allocation: at, cap: a.first_slot.cap::<PageTable>() }
                }
            };
            if let Err(error) = kernel.page_table_map(t.cap, self.vspace, key.1, VmAttributes::DEFAULT) {
                // Keep it for later: it is a valid, unmapped table.
                self.spare.push(t);
                return Err(MapError::Kernel { during: "PageTable_Map", error });
            }
            self.tables.insert(key, t);
        }
        Ok(())
    }

    /// Base addresses of the pool allocations holding the window's tables.
    pub fn table_allocations(&self) -> impl Iterator<Item = PhysAddr> + '_ {
        self.tables.values().chain(&self.spare).map(|t| t.allocation)
    }
}
