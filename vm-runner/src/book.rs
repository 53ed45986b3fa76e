//! The stage-2 book: a software copy of a guest's guest-physical to host-physical
//! translation, kept in page tables on the HAL's `PagingHandler`, from which the seL4
//! stage-2 tables are built and against which they are checked.
//!
//! # Why not `axaddrspace::AddrSpace`
//! The seed names axaddrspace 0.1.5's `AddrSpace` as the keeper of this book. Two things in
//! it stop it from running in capvisor's VMM, which is an unprivileged seL4 thread:
//! - every mapping change ends with a TLB invalidation (`PageTable64Cursor`'s `Drop` calls
//!   `A64HVPagingMetaData::flush_tlb`, a `tlbi` instruction) whenever `target_os = "none"`:
//!   at EL0 that instruction is undefined, so the root task would take a fault it has no
//!   handler for;
//! - `map_linear` computes `guest - host` as an unchecked `usize` subtraction, which panics
//!   in a debug build whenever the guest address is below the host address (the usual case
//!   for `MAP_ALLOC` memory, placed wherever the host has RAM).
//!
//! The book here is the same engine `AddrSpace` wraps, `page_table_multiarch`'s
//! [`PageTable64`], over a metadata type ([`BookMeta`]) whose TLB flush is a no-op (no
//! hardware ever walks these tables: the MMU walks seL4's) and an entry format of its own
//! ([`BookPte`]); it maps with the same rule `AddrSpace::map_linear` uses (the largest page
//! that the alignment of both addresses and the remaining size allow).
//!
//! Owns the book's tables (through the paging handler `P`); never touches seL4 objects.

use core::fmt;
use core::marker::PhantomData;

use axaddrspace::GuestPhysAddr as AxGpa;
use memory_addr::PhysAddr as AxPhys;
use page_table_multiarch::{
    GenericPTE, MappingFlags, PageSize, PageTable64, PagingError, PagingHandler, PagingMetaData,
};

/// Levels of the book: the same as a 44-bit seL4 stage-2 VSpace (root at level 0).
pub const BOOK_LEVELS: usize = 4;
/// Guest-physical address bits the book covers.
pub const BOOK_GPA_BITS: usize = 48;

/// Metadata of the book's tables: four levels of 4 KiB tables, and no TLB to flush.
#[derive(Clone, Copy, Debug)]
pub struct BookMeta;

impl PagingMetaData for BookMeta {
    const LEVELS: usize = BOOK_LEVELS;
    const PA_MAX_BITS: usize = 48;
    const VA_MAX_BITS: usize = BOOK_GPA_BITS;
    type VirtAddr = AxGpa;

    fn flush_tlb(_vaddr: Option<AxGpa>) {
        // The book is bookkeeping: no translation hardware caches it.
    }
}

/// One book entry: bit 0 valid, bit 1 next-level table, bit 8 block (a 2 MiB or 1 GiB page
/// above the last level), bits 2-7 the `MappingFlags`, bits 12-47 the physical address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BookPte(u64);

const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1;
const BLOCK: u64 = 1 << 8;
const FLAGS_SHIFT: u32 = 2;
const FLAGS_MASK: u64 = 0x3f << FLAGS_SHIFT;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

impl fmt::Debug for BookPte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BookPte({:#x})", self.0)
    }
}

impl GenericPTE for BookPte {
    fn new_page(paddr: AxPhys, flags: MappingFlags, is_huge: bool) -> Self {
        let mut e = BookPte(VALID | (paddr.as_usize() as u64 & ADDR_MASK));
        e.set_flags(flags, is_huge);
        e
    }
    fn new_table(paddr: AxPhys) -> Self {
        BookPte(VALID | TABLE | (paddr.as_usize() as u64 & ADDR_MASK))
    }
    fn paddr(&self) -> AxPhys {
        AxPhys::from((self.0 & ADDR_MASK) as usize)
    }
    fn flags(&self) -> MappingFlags {
        MappingFlags::from_bits_truncate(((self.0 & FLAGS_MASK) >> FLAGS_SHIFT) as usize)
    }
    fn set_paddr(&mut self, paddr: AxPhys) {
        self.0 = (self.0 & !ADDR_MASK) | (paddr.as_usize() as u64 & ADDR_MASK);
    }
    fn set_flags(&mut self, flags: MappingFlags, is_huge: bool) {
        let f = ((flags.bits() as u64) << FLAGS_SHIFT) & FLAGS_MASK;
        self.0 = (self.0 & !(FLAGS_MASK | BLOCK | TABLE)) | f | if is_huge { BLOCK } else { 0 };
    }
    fn bits(self) -> usize {
        self.0 as usize
    }
    fn is_unused(&self) -> bool {
        self.0 == 0
    }
    fn is_present(&self) -> bool {
        self.0 & VALID != 0
    }
    fn is_huge(&self) -> bool {
        self.0 & (VALID | BLOCK) == VALID | BLOCK
    }
    fn clear(&mut self) {
        self.0 = 0;
    }
}

/// Why the book refused a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BookError {
    /// Addresses or size not 4 KiB aligned, or past [`BOOK_GPA_BITS`].
    Unaligned {
        /// Guest-physical base.
        gpa: u64,
        /// Host-physical base.
        hpa: u64,
        /// Size.
        size: u64,
    },
    /// Part of the range is mapped already.
    AlreadyMapped {
        /// Guest-physical base of the request.
        gpa: u64,
    },
    /// The paging handler had no frame for a table.
    NoMemory,
    /// Any other page-table error.
    Paging,
}

impl fmt::Display for BookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BookError::Unaligned { gpa, hpa, size } => {
                write!(f, "book: {gpa:#x} -> {hpa:#x} size {size:#x} is not 4 KiB aligned or out of range")
            }
            BookError::AlreadyMapped { gpa } => write!(f, "book: {gpa:#x}: already mapped"),
            BookError::NoMemory => f.write_str("book: no frame for a page table"),
            BookError::Paging => f.write_str("book: page-table error"),
        }
    }
}

impl core::error::Error for BookError {}

/// A translation the book holds.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct BookEntry {
    /// Host-physical address of the queried guest-physical address.
    pub hpa: u64,
    /// Size of the page that maps it.
    pub page_bytes: u64,
    /// Its flags.
    pub flags: MappingFlags,
}

/// The book of one guest.
pub struct Book<P: PagingHandler> {
    pt: PageTable64<BookMeta, BookPte, P>,
    mapped_bytes: u64,
    _p: PhantomData<P>,
}

impl<P: PagingHandler> Book<P> {
    /// An empty book: one root table from `P`.
    pub fn new() -> Result<Self, BookError> {
        let pt = PageTable64::try_new().map_err(|_| BookError::NoMemory)?;
        Ok(Book { pt, mapped_bytes: 0, _p: PhantomData })
    }

    /// Physical address of the root table.
    pub fn root(&self) -> u64 {
        self.pt.root_paddr().as_usize() as u64
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Maps `[gpa, gpa + size)` to `[hpa, hpa + size)` with the largest pages alignment
    /// allows, as `AddrSpace::map_linear` does.
    pub fn map_linear(&mut self, gpa: u64, hpa: u64, size: u64, flags: MappingFlags) -> Result<(), BookError> {
        let bad = BookError::Unaligned { gpa, hpa, size };
        let end = gpa.checked_add(size).ok_or(bad)?;
        if (gpa | hpa | size) & 0xfff != 0 || size == 0 || end > 1 << (BOOK_GPA_BITS - 1) {
            return Err(bad);
        }
        let mut cursor = self.pt.cursor();
        let r = cursor.map_region(
            AxGpa::from(gpa as usize),
            |va| AxPhys::from((hpa + (va.as_usize() as u64 - gpa)) as usize),
            size as usize,
            flags,
            true,
        );
        drop(cursor);
        match r {
            Ok(()) => {
                self.mapped_bytes += size;
                Ok(())
            }
            Err(PagingError::AlreadyMapped | PagingError::MappedToHugePage) => Err(BookError::AlreadyMapped { gpa }),
            Err(PagingError::NoMemory) => Err(BookError::NoMemory),
            Err(_) => Err(BookError::Paging),
        }
    }

    /// What `gpa` translates to, if mapped.
    pub fn translate(&self, gpa: u64) -> Option<BookEntry> {
        let (pa, flags, size) = self.pt.query(AxGpa::from(usize::try_from(gpa).ok()?)).ok()?;
        let page_bytes = match size {
            PageSize::Size4K => 1 << 12,
            PageSize::Size1M => 1 << 20,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        };
        Some(BookEntry { hpa: pa.as_usize() as u64, page_bytes, flags })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_paging::LocalPaging;

    #[test]
    fn maps_with_the_largest_pages_and_translates() {
        let mut b = Book::<LocalPaging>::new().unwrap();
        let rw = MappingFlags::READ | MappingFlags::WRITE;
        // A guest address below its host address (the case AddrSpace cannot take in debug).
        b.map_linear(0x4000_0000, 0xbe00_0000, 0x40_1000, rw).unwrap();
        let e = b.translate(0x4000_1234).unwrap();
        assert_eq!((e.hpa, e.page_bytes, e.flags), (0xbe00_1234, 2 << 20, rw));
        assert_eq!(b.translate(0x403f_ffff).unwrap().hpa, 0xbe3f_ffff);
        assert_eq!(b.translate(0x4040_0000).unwrap().page_bytes, 4096, "the tail is a small page");
        assert_eq!(b.translate(0x4040_1000), None);
        assert_eq!(b.translate(0x3fff_f000), None);
        // Misaligned host address: small pages only.
        b.map_linear(0x8000_0000, 0x1234_5000, 0x20_0000, MappingFlags::READ).unwrap();
        assert_eq!(b.translate(0x8000_0000).unwrap().page_bytes, 4096);
        assert_eq!(b.mapped_bytes(), 0x60_1000);
        assert_eq!(b.map_linear(0x4000_0000, 0, 0x1000, rw), Err(BookError::AlreadyMapped { gpa: 0x4000_0000 }));
        assert!(matches!(b.map_linear(0x4000_0800, 0, 0x1000, rw), Err(BookError::Unaligned { .. })));
        assert!(matches!(b.map_linear(1 << 47, 0, 0x1000, rw), Err(BookError::Unaligned { .. })));
        assert!(matches!(b.map_linear(!0xfff, 0, 0x2000, rw), Err(BookError::Unaligned { .. })));
    }

    #[test]
    fn entries_round_trip_their_fields() {
        let f = MappingFlags::READ | MappingFlags::EXECUTE | MappingFlags::DEVICE;
        let mut e = BookPte::new_page(AxPhys::from(0x1234_5000), f, true);
        assert!(e.is_present() && e.is_huge() && !e.is_unused());
        assert_eq!((e.paddr().as_usize(), e.flags()), (0x1234_5000, f));
        e.set_flags(MappingFlags::READ, false);
        assert!(!e.is_huge());
        let t = BookPte::new_table(AxPhys::from(0x9000));
        assert!(t.is_present() && !t.is_huge());
        e.clear();
        assert!(e.is_unused() && !e.is_present());
    }
}
