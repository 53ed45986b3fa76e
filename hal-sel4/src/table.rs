//! The capability table: every frame capability the HAL created, by physical address, and
//! where it is mapped in the root task's VSpace.
//!
//! It answers `virt_to_phys` and `phys_to_virt` in O(log n) from two ordered maps, with no
//! kernel call. It owns bookkeeping only: the capabilities themselves belong to the untyped
//! pool's allocations, and mappings are made and removed by the window; this module must
//! never invoke the kernel.

use alloc::collections::BTreeMap;
use core::fmt;

use sel4::{FrameSize, PhysAddr, Slot, VirtAddr};

/// One frame capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Root CNode slot of the capability.
    pub slot: Slot,
    /// Physical address of the frame.
    pub paddr: PhysAddr,
    /// Page size.
    pub size: FrameSize,
    /// Base of the allocation the frame belongs to.
    pub allocation: PhysAddr,
    /// Where the frame is mapped in the root task, if it is.
    pub vaddr: Option<VirtAddr>,
}

impl FrameInfo {
    /// One past the frame's last byte.
    pub fn end(&self) -> PhysAddr {
        self.paddr.offset(self.size.size_bytes())
    }
}

/// Why the table refused an update or a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// No mapping covers the virtual address.
    NotMapped(VirtAddr),
    /// No frame in the table is mapped at a virtual address covering this physical address.
    NoVirtualAddress(PhysAddr),
    /// No frame starts at this physical address.
    UnknownFrame(PhysAddr),
    /// A frame already starts at this physical address.
    DuplicateFrame(PhysAddr),
    /// The frame is already mapped.
    AlreadyMapped(PhysAddr),
    /// The virtual range overlaps another mapping.
    VirtualOverlap(VirtAddr),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::NotMapped(v) => write!(f, "virtual address {v} is not mapped by the HAL"),
            TableError::NoVirtualAddress(p) => {
                write!(f, "physical address {p} is not in a frame the HAL mapped into the root task")
            }
            TableError::UnknownFrame(p) => write!(f, "no frame capability starts at {p}"),
            TableError::DuplicateFrame(p) => write!(f, "a frame capability at {p} is already recorded"),
            TableError::AlreadyMapped(p) => write!(f, "frame {p} is already mapped"),
            TableError::VirtualOverlap(v) => write!(f, "virtual address {v} overlaps an existing mapping"),
        }
    }
}

/// Frame capabilities by physical address, and mapped ones by virtual address.
#[derive(Clone, Debug, Default)]
pub struct CapTable {
    by_paddr: BTreeMap<PhysAddr, FrameInfo>,
    /// Where each mapped frame starts in the root task -> where it starts physically.
    by_vaddr: BTreeMap<VirtAddr, PhysAddr>,
}

impl CapTable {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.by_paddr.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_paddr.is_empty()
    }

    /// Number of mapped frames.
    pub fn mapped_len(&self) -> usize {
        self.by_vaddr.len()
    }

    /// Records a new, unmapped frame.
    pub fn insert(&mut self, mut frame: FrameInfo) -> Result<(), TableError> {
        if self.by_paddr.contains_key(&frame.paddr) {
            return Err(TableError::DuplicateFrame(frame.paddr));
        }
        frame.vaddr = None;
        self.by_paddr.insert(frame.paddr, frame);
        Ok(())
    }

    /// Forgets the frame starting at `paddr` (and its mapping entry).
    pub fn remove(&mut self, paddr: PhysAddr) -> Option<FrameInfo> {
        let f = self.by_paddr.remove(&paddr)?;
        if let Some(v) = f.vaddr {
            self.by_vaddr.remove(&v);
        }
        Some(f)
    }

    /// The frame starting at `paddr`.
    pub fn frame(&self, paddr: PhysAddr) -> Option<&FrameInfo> {
        self.by_paddr.get(&paddr)
    }

    /// Frames whose start lies in `[start, end)`, in address order.
    pub fn frames_in(&self, start: PhysAddr, end: PhysAddr) -> impl Iterator<Item = &FrameInfo> {
        self.by_paddr.range(start..end).map(|(_, f)| f)
    }

    /// All frames, in address order.
    pub fn iter(&self) -> impl Iterator<Item = &FrameInfo> {
        self.by_paddr.values()
    }

    /// Records that the frame at `paddr` is mapped at `vaddr`.
    pub fn set_mapping(&mut self, paddr: PhysAddr, vaddr: VirtAddr) -> Result<(), TableError> {
        let f = self.by_paddr.get(&paddr).ok_or(TableError::UnknownFrame(paddr))?;
        if f.vaddr.is_some() {
            return Err(TableError::AlreadyMapped(paddr));
        }
        let end = vaddr.checked_add(f.size.size_bytes()).ok_or(TableError::VirtualOverlap(vaddr))?;
        if let Some((&v, p)) = self.by_vaddr.range(..end).next_back()
            && v.offset(self.by_paddr[p].size.size_bytes()) > vaddr
        {
            return Err(TableError::VirtualOverlap(vaddr));
        }
        self.by_vaddr.insert(vaddr, paddr);
        if let Some(f) = self.by_paddr.get_mut(&paddr) {
            f.vaddr = Some(vaddr);
        }
        Ok(())
    }

    /// Records that the frame at `paddr` is no longer mapped; returns where it was.
    pub fn clear_mapping(&mut self, paddr: PhysAddr) -> Option<VirtAddr> {
        let f = self.by_paddr.get_mut(&paddr)?;
        let v = f.vaddr.take()?;
        self.by_vaddr.remove(&v);
        Some(v)
    }

    /// The physical address behind `vaddr`, from the mapping that covers it.
    pub fn virt_to_phys(&self, vaddr: VirtAddr) -> Result<PhysAddr, TableError> {
        let (&v, &p) = self.by_vaddr.range(..=vaddr).next_back().ok_or(TableError::NotMapped(vaddr))?;
        let off = vaddr.offset_from(v);
        if off >= self.by_paddr[&p].size.size_bytes() {
            return Err(TableError::NotMapped(vaddr));
        }
        Ok(p.offset(off))
    }

    /// The root-task virtual address of `paddr`, if a mapped frame covers it.
    pub fn phys_to_virt(&self, paddr: PhysAddr) -> Result<VirtAddr, TableError> {
        let (&p, f) = self.by_paddr.range(..=paddr).next_back().ok_or(TableError::NoVirtualAddress(paddr))?;
        let off = paddr.offset_from(p);
        match f.vaddr {
            Some(v) if off < f.size.size_bytes() => Ok(v.offset(off)),
            _ => Err(TableError::NoVirtualAddress(paddr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(slot: u64, paddr: u64, size: FrameSize) -> FrameInfo {
        FrameInfo { slot: Slot::new(slot), paddr: PhysAddr(paddr), size, allocation: PhysAddr(paddr), vaddr: None }
    }

    #[test]
    fn translation_both_ways() {
        let mut t = CapTable::new();
        t.insert(frame(200, 0x6000_0000, FrameSize::Large)).unwrap();
        t.insert(frame(201, 0x7000_0000, FrameSize::Small)).unwrap();
        assert_eq!(
            t.insert(frame(202, 0x7000_0000, FrameSize::Small)),
            Err(TableError::DuplicateFrame(PhysAddr(0x7000_0000)))
        );
        t.set_mapping(PhysAddr(0x6000_0000), VirtAddr(0x80_0000_0000)).unwrap();
        assert_eq!(t.virt_to_phys(VirtAddr(0x80_0012_3456)), Ok(PhysAddr(0x6012_3456)));
        assert_eq!(t.virt_to_phys(VirtAddr(0x80_0020_0000)), Err(TableError::NotMapped(VirtAddr(0x80_0020_0000))));
        assert_eq!(t.virt_to_phys(VirtAddr(0x7f_ffff_ffff)), Err(TableError::NotMapped(VirtAddr(0x7f_ffff_ffff))));
        assert_eq!(t.phys_to_virt(PhysAddr(0x601f_ffff)), Ok(VirtAddr(0x80_001f_ffff)));
        assert!(t.phys_to_virt(PhysAddr(0x7000_0000)).is_err(), "not mapped");
        // A second mapping overlapping the first is refused.
        assert_eq!(
            t.set_mapping(PhysAddr(0x7000_0000), VirtAddr(0x80_001f_f000)),
            Err(TableError::VirtualOverlap(VirtAddr(0x80_001f_f000)))
        );
        t.set_mapping(PhysAddr(0x7000_0000), VirtAddr(0x80_0020_0000)).unwrap();
        assert_eq!(t.mapped_len(), 2);
        assert_eq!(t.remove(PhysAddr(0x6000_0000)).map(|f| f.slot), Some(Slot::new(200)));
        assert!(t.virt_to_phys(VirtAddr(0x80_0000_0000)).is_err(), "mapping forgotten with the frame");
        assert_eq!(t.clear_mapping(PhysAddr(0x7000_0000)), Some(VirtAddr(0x80_0020_0000)));
        assert_eq!(t.mapped_len(), 0);
    }
}
