//! A first-fit allocator of half-open integer ranges, and the two typed allocators built on
//! it: [`SlotAllocator`] for root CNode slots (an `Untyped_Retype` writes its caps into one
//! contiguous window, so slots are handed out as contiguous runs) and [`VirtRangeAllocator`]
//! for the root-task virtual address window the HAL maps frames into. Owns only its
//! bookkeeping; it never talks to the kernel.

use alloc::collections::BTreeMap;
use core::fmt;

use sel4::{PhysAddr, Slot, SlotRegion, VirtAddr};

/// Free space of `[start, end)` as disjoint, non-adjacent free ranges (adjacent ranges are
/// merged on free, so the map stays as small as the fragmentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeAllocator {
    /// start -> end of each free range.
    free: BTreeMap<u64, u64>,
    start: u64,
    end: u64,
    free_len: u64,
}

/// A range handed back that was not (entirely) allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAllocated {
    /// Start of the offending range.
    pub start: u64,
    /// Its length.
    pub len: u64,
}

impl fmt::Display for NotAllocated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "range {:#x}+{:#x} is not allocated (double free or never handed out)", self.start, self.len)
    }
}

impl RangeAllocator {
    /// Everything in `[start, end)` free.
    pub fn new(start: u64, end: u64) -> Self {
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end);
        }
        RangeAllocator { free, start, end, free_len: end.saturating_sub(start) }
    }

    /// Total free length.
    pub fn free_len(&self) -> u64 {
        self.free_len
    }

    /// The managed range `[start, end)`.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// Length of the largest free run.
    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).max().unwrap_or(0)
    }

    /// The lowest `start` of a free run of `len` with `start % align == phase % align`.
    /// `align` must be a power of two (1 for no constraint). `None` when no run fits.
    pub fn alloc(&mut self, len: u64, align: u64, phase: u64) -> Option<u64> {
        if len == 0 || !align.is_power_of_two() {
            return None;
        }
        let phase = phase & (align - 1);
        let mut found = None;
        for (&s, &e) in &self.free {
            // First address >= s congruent to phase.
            let base = s & !(align - 1);
            let mut cand = base.checked_add(phase)?;
            if cand < s {
                cand = cand.checked_add(align)?;
            }
            if let Some(end) = cand.checked_add(len)
                && end <= e
            {
                found = Some((s, e, cand, end));
                break;
            }
        }
        let (s, e, cand, end) = found?;
        self.free.remove(&s);
        if s < cand {
            self.free.insert(s, cand);
        }
        if end < e {
            self.free.insert(end, e);
        }
        self.free_len -= len;
        Some(cand)
    }

    /// Takes exactly `[start, start + len)`, which must be free.
    pub fn take(&mut self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else { return false };
        if len == 0 {
            return false;
        }
        let Some((&s, &e)) = self.free.range(..=start).next_back() else { return false };
        if end > e {
            return false;
        }
        self.free.remove(&s);
        if s < start {
            self.free.insert(s, start);
        }
        if end < e {
            self.free.insert(end, e);
        }
        self.free_len -= len;
        true
    }

    /// Gives back `[start, start + len)`. Refused, with nothing changed, if any of it is
    /// already free or outside the managed range.
    pub fn free(&mut self, start: u64, len: u64) -> Result<(), NotAllocated> {
        let err = NotAllocated { start, len };
        let end = start.checked_add(len).ok_or(err)?;
        if len == 0 || start < self.start || end > self.end {
            return Err(err);
        }
        // The free range at or before `start` must end at or before it; the next must start
        // at or after `end`.
        let prev = self.free.range(..=start).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, e)) = prev
            && e > start
        {
            return Err(err);
        }
        let next = self.free.range(start..).next().map(|(&s, &e)| (s, e));
        if let Some((s, _)) = next
            && s < end
        {
            return Err(err);
        }
        let mut new_start = start;
        let mut new_end = end;
        if let Some((s, e)) = prev
            && e == start
        {
            self.free.remove(&s);
            new_start = s;
        }
        if let Some((s, e)) = next
            && s == end
        {
            self.free.remove(&s);
            new_end = e;
        }
        self.free.insert(new_start, new_end);
        self.free_len += len;
        Ok(())
    }
}

/// Contiguous runs of root CNode slots from a region the HAL was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotAllocator {
    ranges: RangeAllocator,
}

impl SlotAllocator {
    /// All of `region` free.
    pub fn new(region: SlotRegion) -> Self {
        SlotAllocator { ranges: RangeAllocator::new(region.start.index(), region.end.index()) }
    }

    /// `count` contiguous slots, lowest first fit.
    pub fn alloc(&mut self, count: u64) -> Option<Slot> {
        self.ranges.alloc(count, 1, 0).map(Slot::new)
    }

    /// Returns `count` slots from `first`.
    pub fn free(&mut self, first: Slot, count: u64) -> Result<(), NotAllocated> {
        self.ranges.free(first.index(), count)
    }

    /// Number of free slots.
    pub fn free_count(&self) -> u64 {
        self.ranges.free_len()
    }

    /// Longest contiguous free run.
    pub fn largest_run(&self) -> u64 {
        self.ranges.largest_free()
    }

    /// The region managed.
    pub fn region(&self) -> SlotRegion {
        let (s, e) = self.ranges.bounds();
        SlotRegion { start: Slot::new(s), end: Slot::new(e) }
    }
}

/// Ranges of virtual addresses, `[base, base + size_bytes)`, handed out so that a range
/// starts as its physical counterpart does within the largest frame it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtRangeAllocator {
    ranges: RangeAllocator,
}

impl VirtRangeAllocator {
    /// All of `[base, base + size_bytes)` free (cut at the top of the address space).
    pub fn new(base: VirtAddr, size_bytes: u64) -> Self {
        let end = base.checked_add(size_bytes).unwrap_or(VirtAddr(u64::MAX));
        VirtRangeAllocator { ranges: RangeAllocator::new(base.get(), end.get()) }
    }

    /// The lowest free `[va, va + len_bytes)` whose `va` agrees with `like` in the low
    /// `align_bits` bits: frames that are `2^align_bits`-aligned physically are so virtually.
    pub fn alloc(&mut self, len_bytes: u64, align_bits: u32, like: PhysAddr) -> Option<VirtAddr> {
        let align = 1u64.checked_shl(align_bits)?;
        self.ranges.alloc(len_bytes, align, like.get()).map(VirtAddr)
    }

    /// Gives back `[va, va + len_bytes)`; refused, with nothing changed, unless all of it was
    /// handed out.
    pub fn free(&mut self, va: VirtAddr, len_bytes: u64) -> Result<(), NotAllocated> {
        self.ranges.free(va.get(), len_bytes)
    }

    /// Free bytes.
    pub fn free_len(&self) -> u64 {
        self.ranges.free_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_with_alignment_and_phase() {
        let mut r = RangeAllocator::new(0x1000, 0x10000);
        assert_eq!(r.alloc(0x1000, 1, 0), Some(0x1000));
        // Next 0x4000-aligned start at or after 0x2000 is 0x4000.
        assert_eq!(r.alloc(0x1000, 0x4000, 0), Some(0x4000));
        // Phase 0x3000 mod 0x4000: 0x3000 is free.
        assert_eq!(r.alloc(0x1000, 0x4000, 0x3000), Some(0x3000));
        // The hole at 0x2000 is still there.
        assert_eq!(r.alloc(0x1000, 1, 0), Some(0x2000));
        assert_eq!(r.free_len(), 0xf000 - 0x4000);
        assert_eq!(r.alloc(0x10000, 1, 0), None);
    }

    #[test]
    fn free_merges_neighbours_and_refuses_double_free() {
        let mut r = RangeAllocator::new(0, 100);
        let a = r.alloc(10, 1, 0).unwrap();
        let b = r.alloc(10, 1, 0).unwrap();
        let c = r.alloc(10, 1, 0).unwrap();
        assert_eq!((a, b, c), (0, 10, 20));
        r.free(b, 10).unwrap();
        assert_eq!(r.free(b, 10), Err(NotAllocated { start: 10, len: 10 }));
        // Overlaps the free range [10, 20).
        assert!(r.free(5, 10).is_err());
        // Outside the managed range.
        assert!(r.free(95, 10).is_err());
        r.free(a, 10).unwrap();
        r.free(c, 10).unwrap();
        assert_eq!(r, RangeAllocator::new(0, 100), "all merged back into one range");
    }

    #[test]
    fn take_exact_range() {
        let mut r = RangeAllocator::new(0, 100);
        assert!(r.take(40, 20));
        assert!(!r.take(50, 20), "overlaps the taken part");
        assert_eq!(r.largest_free(), 40);
        r.free(40, 20).unwrap();
        assert_eq!(r.largest_free(), 100);
    }

    #[test]
    fn virtual_ranges_follow_the_physical_alignment() {
        let mut v = VirtRangeAllocator::new(VirtAddr(0x80_0000_0000), 0x40_0000);
        // A 4 KiB page: any page boundary; the first one.
        assert_eq!(v.alloc(0x1000, 12, PhysAddr(0x6800_3000)), Some(VirtAddr(0x80_0000_0000)));
        // 2 MiB at a 2 MiB-aligned physical address: the next 2 MiB boundary.
        assert_eq!(v.alloc(0x20_0000, 21, PhysAddr(0x6860_0000)), Some(VirtAddr(0x80_0020_0000)));
        // Pages at 0x...5000 in a 64 KiB-aligned group: the same offset in the next 64 KiB.
        assert_eq!(v.alloc(0x1000, 16, PhysAddr(0x6800_5000)), Some(VirtAddr(0x80_0000_5000)));
        assert_eq!(v.alloc(0x40_0000, 12, PhysAddr(0)), None, "no room left for 4 MiB");
        assert_eq!(v.free_len(), 0x40_0000 - 0x20_2000);
        v.free(VirtAddr(0x80_0020_0000), 0x20_0000).unwrap();
        assert!(v.free(VirtAddr(0x80_0020_0000), 0x20_0000).is_err(), "freed twice");
        // At the top of the address space the range is cut, not wrapped.
        let top = VirtRangeAllocator::new(VirtAddr(u64::MAX - 0xfff), 0x2000);
        assert_eq!(top.free_len(), 0xfff);
    }

    #[test]
    fn slots_are_contiguous_runs() {
        let mut s = SlotAllocator::new(SlotRegion { start: Slot::new(150), end: Slot::new(160) });
        let a = s.alloc(4).unwrap();
        let b = s.alloc(4).unwrap();
        assert_eq!((a, b), (Slot::new(150), Slot::new(154)));
        assert_eq!(s.alloc(3), None, "only 2 left");
        s.free(a, 4).unwrap();
        assert_eq!(s.largest_run(), 4);
        assert_eq!(s.alloc(3), Some(Slot::new(150)));
        assert_eq!(s.free_count(), 3);
    }
}
