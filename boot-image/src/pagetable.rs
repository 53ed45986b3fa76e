//! The page tables the loader runs on and hands to the kernel: AArch64 stage-1, EL2
//! translation regime, 4 KiB granule, 48-bit virtual addresses (four levels).
//!
//! The seL4 kernel is entered with the MMU on at its virtual entry address; before it
//! switches to its own tables it needs its image mapped at `vaddr = paddr + offset`, and the
//! loader's own code must stay identity mapped across the jump. It also checks that
//! `TCR_EL2` equals its `TCR_EL2_DEFAULT` and relies on the loader's `MAIR_EL2` (index 0
//! device nGnRnE, index 4 normal write-back), so both values live here.
//!
//! Owns: descriptor encoding, table allocation from a caller-provided arena, the loader's
//! memory map. Never touches: system registers (the loader writes them).

use core::fmt;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Bytes of a page and of a table.
pub const PAGE_BYTES: u64 = 4096;

/// One translation table.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    /// An all-invalid table.
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

/// `MAIR_EL2` as seL4's `enum mair_types` expects it: 0 device nGnRnE, 1 device nGnRE,
/// 2 device GRE, 3 normal non-cacheable, 4 normal write-back, 5 normal write-through.
pub const MAIR_EL2: u64 = /* index 0: 0x00 */
    (0x04 << 8) | (0x0c << 16) | (0x44 << 24) | (0xff << 32) | (0xaa << 40);
/// MAIR index of device nGnRnE memory.
pub const ATTR_DEVICE: u64 = 0;
/// MAIR index of normal write-back memory.
pub const ATTR_NORMAL: u64 = 4;

/// `TCR_EL2` exactly as seL4's `checkTCR_EL2` wants it: T0SZ=16, inner/outer write-back
/// write-allocate walks, inner shareable, 4 KiB granule, RES1 bits 23 and 31, and the
/// physical address size the kernel was configured for (`AARCH64_VSPACE_S2_START_L1`
/// selects 40 bits, otherwise 44 bits).
pub const fn tcr_el2(vspace_s2_start_l1: bool) -> u64 {
    let ps: u64 = if vspace_s2_start_l1 { 2 } else { 4 };
    16 | (1 << 8) | (1 << 10) | (3 << 12) | (ps << 16) | (1 << 23) | (1 << 31)
}

/// How a range is mapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemKind {
    /// Normal write-back cacheable, inner shareable, executable.
    Normal,
    /// Device nGnRnE, execute-never.
    Device,
}

const DESC_VALID: u64 = 1;
const DESC_TABLE: u64 = 0b11;
const DESC_BLOCK: u64 = 0b01;
const DESC_PAGE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
const XN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Highest virtual address + 1 under T0SZ=16.
pub const VA_LIMIT: u64 = 1 << 48;

fn leaf_attrs(kind: MemKind) -> u64 {
    match kind {
        MemKind::Normal => (ATTR_NORMAL << 2) | SH_INNER | AF,
        MemKind::Device => (ATTR_DEVICE << 2) | AF | XN,
    }
}

const fn level_shift(level: usize) -> u32 {
    39 - 9 * level as u32
}

/// Why a mapping cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageTableError {
    /// An address or length is not a multiple of 4 KiB.
    Unaligned {
        /// Virtual address.
        va: u64,
        /// Physical address.
        pa: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The range runs past the 48-bit virtual address space.
    OutOfRange {
        /// First virtual address outside.
        va: u64,
    },
    /// The address is already mapped.
    AlreadyMapped {
        /// Virtual address.
        va: u64,
    },
    /// The arena has no table left.
    OutOfTables {
        /// Tables in the arena.
        capacity: usize,
    },
    /// More distinct memory ranges than the map builder holds.
    TooManyRanges {
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for PageTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageTableError::Unaligned { va, pa, len } => {
                write!(f, "page tables: va {va:#x} pa {pa:#x} len {len:#x} not 4 KiB aligned")
            }
            PageTableError::OutOfRange { va } => write!(f, "page tables: va {va:#x} beyond 48 bits"),
            PageTableError::AlreadyMapped { va } => write!(f, "page tables: va {va:#x} mapped twice"),
            PageTableError::OutOfTables { capacity } => {
                write!(f, "page tables: all {capacity} tables of the arena used")
            }
            PageTableError::TooManyRanges { max } => write!(f, "page tables: more than {max} memory ranges"),
        }
    }
}

/// Builds tables into an arena whose first table is the root (level 0). The arena's
/// physical address is needed because table descriptors hold physical addresses.
pub struct Builder<'t> {
    tables: &'t mut [Table],
    arena_pa: u64,
    used: usize,
}

impl<'t> Builder<'t> {
    /// A builder over `tables` (cleared here) located at physical address `arena_pa`.
    pub fn new(tables: &'t mut [Table], arena_pa: u64) -> Self {
        for t in tables.iter_mut() {
            t.0 = [0; ENTRIES];
        }
        let used = if tables.is_empty() { 0 } else { 1 };
        Builder { tables, arena_pa, used }
    }

    /// Physical address of the root table (for `TTBR0_EL2`).
    pub fn root_pa(&self) -> u64 {
        self.arena_pa
    }

    /// Tables used so far.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    fn table_index(&self, pa: u64) -> usize {
        ((pa - self.arena_pa) / PAGE_BYTES) as usize
    }

    /// Maps `len` bytes at `va` to `pa`, with the largest blocks alignment allows.
    pub fn map(&mut self, va: u64, pa: u64, len: u64, kind: MemKind) -> Result<(), PageTableError> {
        if !(va | pa | len).is_multiple_of(PAGE_BYTES) {
            return Err(PageTableError::Unaligned { va, pa, len });
        }
        if self.tables.is_empty() {
            return Err(PageTableError::OutOfTables { capacity: 0 });
        }
        match va.checked_add(len) {
            Some(end) if end <= VA_LIMIT => {}
            _ => return Err(PageTableError::OutOfRange { va: VA_LIMIT.max(va) }),
        }
        let (mut va, mut pa, mut left) = (va, pa, len);
        while left > 0 {
            // Level 1 (1 GiB) and level 2 (2 MiB) blocks where alignment and length allow.
            let level = (1..=3)
                .find(|&l| {
                    let size = 1u64 << level_shift(l);
                    (va | pa) % size == 0 && left >= size
                })
                .unwrap_or(3);
            self.map_one(va, pa, level, kind)?;
            let size = 1u64 << level_shift(level);
            va += size;
            pa += size;
            left -= size;
        }
        Ok(())
    }

    fn map_one(&mut self, va: u64, pa: u64, level: usize, kind: MemKind) -> Result<(), PageTableError> {
        let mut table = 0usize;
        for l in 0..level {
            let idx = ((va >> level_shift(l)) & 0x1ff) as usize;
            let e = self.tables[table].0[idx];
            table = if e & DESC_VALID == 0 {
                if self.used == self.tables.len() {
                    return Err(PageTableError::OutOfTables { capacity: self.tables.len() });
                }
                let next = self.used;
                self.used += 1;
                self.tables[table].0[idx] = (self.arena_pa + next as u64 * PAGE_BYTES) | DESC_TABLE;
                next
            } else if e & 0b11 == DESC_TABLE {
                self.table_index(e & ADDR_MASK)
            } else {
                return Err(PageTableError::AlreadyMapped { va });
            };
        }
        let idx = ((va >> level_shift(level)) & 0x1ff) as usize;
        if self.tables[table].0[idx] & DESC_VALID != 0 {
            return Err(PageTableError::AlreadyMapped { va });
        }
        let kind_bits = if level == 3 { DESC_PAGE } else { DESC_BLOCK };
        self.tables[table].0[idx] = (pa & ADDR_MASK) | kind_bits | leaf_attrs(kind);
        Ok(())
    }

    /// Walks the tables: the physical address and memory kind `va` translates to.
    pub fn translate(&self, va: u64) -> Option<(u64, MemKind)> {
        let mut table = 0usize;
        for level in 0..4 {
            let e = *self.tables.get(table)?.0.get(((va >> level_shift(level)) & 0x1ff) as usize)?;
            if e & DESC_VALID == 0 {
                return None;
            }
            let is_table = level < 3 && e & 0b11 == DESC_TABLE;
            if is_table {
                table = self.table_index(e & ADDR_MASK);
                continue;
            }
            let size = 1u64 << level_shift(level);
            let kind = if (e >> 2) & 7 == ATTR_NORMAL { MemKind::Normal } else { MemKind::Device };
            return Some(((e & ADDR_MASK & !(size - 1)) | (va & (size - 1)), kind));
        }
        None
    }
}

/// Sorted, merged, page-rounded physical ranges (fixed capacity, no heap).
#[derive(Clone, Copy)]
pub struct RangeSet<const N: usize> {
    ranges: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RangeSet<N> {
    /// Empty.
    pub const fn new() -> Self {
        RangeSet { ranges: [(0, 0); N], len: 0 }
    }

    /// Adds `[start, end)` rounded out to pages, merging with overlapping or touching ranges.
    pub fn insert(&mut self, start: u64, end: u64) -> Result<(), PageTableError> {
        let start = start & !(PAGE_BYTES - 1);
        let end = end.saturating_add(PAGE_BYTES - 1) & !(PAGE_BYTES - 1);
        if start >= end {
            return Ok(());
        }
        let (mut s, mut e) = (start, end);
        let mut out = [(0u64, 0u64); N];
        let mut n = 0;
        let mut placed = false;
        for &(a, b) in &self.ranges[..self.len] {
            if b < s {
                out[n] = (a, b);
                n += 1;
            } else if a > e {
                if !placed {
                    if n == N {
                        return Err(PageTableError::TooManyRanges { max: N });
                    }
                    out[n] = (s, e);
                    n += 1;
                    placed = true;
                }
                if n == N {
                    return Err(PageTableError::TooManyRanges { max: N });
                }
                out[n] = (a, b);
                n += 1;
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            if n == N {
                return Err(PageTableError::TooManyRanges { max: N });
            }
            out[n] = (s, e);
            n += 1;
        }
        self.ranges = out;
        self.len = n;
        Ok(())
    }

    /// The ranges, ascending and disjoint.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }
}

/// Lowest virtual address the identity map does not cover: one level-0 entry (512 GiB),
/// below seL4's kernel window at level-0 index 1.
pub const IDENTITY_LIMIT: u64 = 1 << 39;

/// The loader's map: `[0, IDENTITY_LIMIT)` identity mapped, `normal` ranges as normal memory
/// and everything else as device memory; plus each `kernel_window` physical range mapped
/// at `pa + kernel_offset` as normal memory.
pub fn build_boot_map<const N: usize>(
    b: &mut Builder<'_>,
    normal: &RangeSet<N>,
    kernel_offset: u64,
    kernel_window: &RangeSet<N>,
) -> Result<(), PageTableError> {
    let mut next = 0u64;
    for &(s, e) in normal.as_slice() {
        let e = e.min(IDENTITY_LIMIT);
        if s >= e {
            continue;
        }
        if s > next {
            b.map(next, next, s - next, MemKind::Device)?;
        }
        b.map(s, s, e - s, MemKind::Normal)?;
        next = e;
    }
    if next < IDENTITY_LIMIT {
        b.map(next, next, IDENTITY_LIMIT - next, MemKind::Device)?;
    }
    for &(s, e) in kernel_window.as_slice() {
        let va = s.checked_add(kernel_offset).ok_or(PageTableError::OutOfRange { va: s })?;
        b.map(va, s, e - s, MemKind::Normal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const ARENA: u64 = 0x4810_0000;

    #[test]
    fn tcr_matches_sel4_default_for_44_bit_pa() {
        // 16 | WBWC<<8 | WBWC<<10 | ISH<<12 | 16T<<16 | RES1 23,31, computed by hand.
        assert_eq!(tcr_el2(false), 0x8084_3510);
        assert_eq!(tcr_el2(true), 0x8082_3510);
    }

    #[test]
    fn blocks_pages_and_translation() {
        let mut arena = vec![Table::EMPTY; 8];
        let mut b = Builder::new(&mut arena, ARENA);
        // 1 GiB block, 2 MiB block and 4 KiB pages.
        b.map(0x4000_0000, 0x4000_0000, 1 << 30, MemKind::Normal).unwrap();
        b.map(0x80_6000_0000, 0x6000_0000, 0x20_1000, MemKind::Normal).unwrap();
        b.map(0x900_0000, 0x900_0000, 0x1000, MemKind::Device).unwrap();
        assert_eq!(b.translate(0x4123_4567), Some((0x4123_4567, MemKind::Normal)));
        assert_eq!(b.translate(0x80_6012_3456), Some((0x6012_3456, MemKind::Normal)));
        assert_eq!(b.translate(0x80_6020_0abc), Some((0x6020_0abc, MemKind::Normal)));
        assert_eq!(b.translate(0x80_6020_1000), None);
        assert_eq!(b.translate(0x900_0004), Some((0x900_0004, MemKind::Device)));
        assert_eq!(b.translate(0x901_0000), None);
        // Root + L1 (identity) + L1, L2, L3 (window) + L2, L3 (UART) = 7.
        assert_eq!(b.tables_used(), 7);
        assert_eq!(
            b.map(0x4000_1000, 0, 0x1000, MemKind::Normal),
            Err(PageTableError::AlreadyMapped { va: 0x4000_1000 })
        );
        assert_eq!(
            b.map(0x123, 0, 0x1000, MemKind::Normal),
            Err(PageTableError::Unaligned { va: 0x123, pa: 0, len: 0x1000 })
        );
        assert!(matches!(b.map(VA_LIMIT - 0x1000, 0, 0x2000, MemKind::Normal), Err(PageTableError::OutOfRange { .. })));
        let mut small = vec![Table::EMPTY; 2];
        let mut b = Builder::new(&mut small, ARENA);
        assert_eq!(b.map(0, 0, 0x1000, MemKind::Normal), Err(PageTableError::OutOfTables { capacity: 2 }));
    }

    #[test]
    fn descriptors_carry_the_attributes_sel4_expects() {
        let mut arena = vec![Table::EMPTY; 4];
        {
            let mut b = Builder::new(&mut arena, ARENA);
            b.map(0, 0, 1 << 30, MemKind::Device).unwrap();
            b.map(1 << 30, 1 << 30, 1 << 30, MemKind::Normal).unwrap();
        }
        assert_eq!(arena[0].0[0], (ARENA + 0x1000) | 0b11);
        let device = arena[1].0[0];
        let normal = arena[1].0[1];
        assert_eq!(device & 0b11, 0b01, "block");
        assert_eq!((device >> 2) & 7, 0);
        assert_ne!(device & XN, 0);
        assert_eq!((normal >> 2) & 7, 4);
        assert_eq!(normal & (1 << 10), 1 << 10, "access flag");
        assert_eq!(normal & ADDR_MASK, 1 << 30);
    }

    #[test]
    fn range_set_merges_and_rounds() {
        let mut r = RangeSet::<4>::new();
        r.insert(0x6000_0000, 0xc000_0000).unwrap();
        r.insert(0x4800_0010, 0x4810_0001).unwrap();
        r.insert(0x4000_0000, 0x4000_2000).unwrap();
        r.insert(0x4000_1000, 0x4000_3000).unwrap();
        assert_eq!(r.as_slice(), &[(0x4000_0000, 0x4000_3000), (0x4800_0000, 0x4810_1000), (0x6000_0000, 0xc000_0000)]);
        r.insert(0x5000_0000, 0x5000_1000).unwrap();
        assert_eq!(r.insert(0x1000, 0x2000), Err(PageTableError::TooManyRanges { max: 4 }));
        r.insert(0x4000_3000, 0x4800_0000).unwrap();
        assert_eq!(r.as_slice().len(), 3);
    }

    #[test]
    fn boot_map_covers_loader_ram_devices_and_kernel_window() {
        let mut normal = RangeSet::<8>::new();
        normal.insert(0x6000_0000, 0xc000_0000).unwrap();
        normal.insert(0x4800_0000, 0x4823_5000).unwrap();
        normal.insert(0x4000_0000, 0x4000_1ea0).unwrap();
        let mut window = RangeSet::<8>::new();
        window.insert(0x6000_0000, 0xc000_0000).unwrap();
        let mut arena = vec![Table::EMPTY; 16];
        let mut b = Builder::new(&mut arena, ARENA);
        build_boot_map(&mut b, &normal, 0x80_0000_0000, &window).unwrap();
        assert_eq!(b.translate(0x900_0000), Some((0x900_0000, MemKind::Device)));
        assert_eq!(b.translate(0x4000_1000), Some((0x4000_1000, MemKind::Normal)));
        assert_eq!(b.translate(0x4000_2000), Some((0x4000_2000, MemKind::Device)));
        assert_eq!(b.translate(0x4823_4ff8), Some((0x4823_4ff8, MemKind::Normal)));
        assert_eq!(b.translate(0x4823_5000), Some((0x4823_5000, MemKind::Device)));
        assert_eq!(b.translate(0xbfff_f000), Some((0xbfff_f000, MemKind::Normal)));
        assert_eq!(b.translate(0xc000_0000), Some((0xc000_0000, MemKind::Device)));
        assert_eq!(b.translate(IDENTITY_LIMIT - 8), Some((IDENTITY_LIMIT - 8, MemKind::Device)));
        assert_eq!(b.translate(0x80_6000_0000), Some((0x6000_0000, MemKind::Normal)));
        assert_eq!(b.translate(0x80_c000_0000), None);
        assert!(b.tables_used() <= 16);
    }
}
