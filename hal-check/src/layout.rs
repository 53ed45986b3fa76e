//! [`Layout`]: where the HAL's untyped memory lies, read from its pool, and the addresses the
//! scenarios and the random generator pick from it. Nothing is hard-coded for one board: the
//! same code finds its ranges on the recorded platform, on the model of the boot at hand and
//! on the real kernel.
//!
//! Owns nothing but a copy of the root untyped list; never calls the kernel.

use alloc::vec::Vec;

use hal_sel4::Sel4Hal;
use sel4::Kernel;

/// One untyped the pool was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// Physical base.
    pub paddr: u64,
    /// log2 of its size.
    pub size_bits: u32,
    /// Device memory.
    pub device: bool,
}

impl Root {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        1 << self.size_bits
    }
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.paddr + self.size()
    }
}

/// Device memory above this is left out of the picks: the huge regions up the physical
/// address space hold nothing a test can name, and ranges there only slow the model down.
pub const DEVICE_PICK_LIMIT: u64 = 1 << 32;

/// The pool's roots, in address order. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    roots: Vec<Root>,
}

impl Layout {
    /// The roots of `hal`'s pool.
    pub fn of<K: Kernel>(hal: &Sel4Hal<K>) -> Layout {
        Layout::new(hal.pool().untyped_nodes().filter(|n| n.is_root).map(|n| Root {
            paddr: n.paddr.get(),
            size_bits: n.size_bits,
            device: n.device,
        }))
    }

    /// A layout over `roots` (any order).
    pub fn new(roots: impl IntoIterator<Item = Root>) -> Layout {
        let mut roots: Vec<Root> = roots.into_iter().collect();
        roots.sort_by_key(|r| r.paddr);
        Layout { roots }
    }

    /// The roots, in address order.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// The root containing `addr`.
    pub fn root_at(&self, addr: u64) -> Option<Root> {
        let i = self.roots.partition_point(|r| r.paddr <= addr);
        self.roots[..i].last().copied().filter(|r| addr < r.end())
    }

    /// Whether `[s, t)` is covered by roots, and of which kind: `Ok(Some(device))` when all
    /// of one kind, `Ok(None)` when the kinds change, `Err(first uncovered address)`.
    pub fn coverage(&self, s: u64, t: u64) -> Result<Option<bool>, u64> {
        let mut cur = s;
        let mut kind = None;
        let mut mixed = false;
        while cur < t {
            let r = self.root_at(cur).ok_or(cur)?;
            match kind {
                None => kind = Some(r.device),
                Some(k) if k != r.device => mixed = true,
                Some(_) => {}
            }
            cur = r.end();
        }
        Ok(if mixed { None } else { kind })
    }

    /// Maximal runs `[start, end)` of contiguous roots of one kind (`device`), in address order.
    pub fn runs(&self, device: bool) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for r in self.roots.iter().filter(|r| r.device == device) {
            match out.last_mut() {
                Some(last) if last.1 == r.paddr => last.1 = r.end(),
                _ => out.push((r.paddr, r.end())),
            }
        }
        out
    }

    /// The largest RAM root (the lowest of equals).
    pub fn largest_ram(&self) -> Option<Root> {
        self.roots.iter().filter(|r| !r.device).fold(None, |best: Option<Root>, r| match best {
            Some(b) if b.size_bits >= r.size_bits => Some(b),
            _ => Some(*r),
        })
    }

    /// RAM roots of at least `2^min_bits` bytes, in address order.
    pub fn ram_at_least(&self, min_bits: u32) -> impl Iterator<Item = Root> + '_ {
        self.roots.iter().copied().filter(move |r| !r.device && r.size_bits >= min_bits)
    }

    /// Two RAM roots that touch (`a.end() == b.paddr`), each at least `2^min_bits` bytes: the
    /// pair with the largest smaller member, lowest address first among equals.
    pub fn adjacent_ram_pair(&self, min_bits: u32) -> Option<(Root, Root)> {
        let mut best: Option<(Root, Root)> = None;
        for w in self.roots.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.device || b.device || a.end() != b.paddr || a.size_bits.min(b.size_bits) < min_bits {
                continue;
            }
            let size = a.size_bits.min(b.size_bits);
            if best.is_none_or(|(x, y)| x.size_bits.min(y.size_bits) < size) {
                best = Some((a, b));
            }
        }
        best
    }

    /// A page-aligned address where device memory ends and RAM begins (or the other way),
    /// both sides at least a page: where a range of mixed kinds can be asked for.
    pub fn kind_boundary(&self) -> Option<u64> {
        self.roots
            .windows(2)
            .find(|w| {
                w[0].end() == w[1].paddr && w[0].device != w[1].device && w[0].size_bits >= 12 && w[1].size_bits >= 12
            })
            .map(|w| w[1].paddr)
    }

    /// A page-aligned hole between two RAM roots (at least a page, not covered by any root):
    /// `(start, end)` of the first one, rounded inwards to pages.
    pub fn ram_hole(&self) -> Option<(u64, u64)> {
        self.roots.windows(2).find_map(|w| {
            let (a, b) = (w[0], w[1]);
            if a.device || b.device {
                return None;
            }
            let s = a.end().next_multiple_of(4096);
            let t = b.paddr & !4095;
            (t > s).then_some((s, t))
        })
    }

    /// Device roots below [`DEVICE_PICK_LIMIT`] of at least `2^min_bits` bytes.
    pub fn device_at_least(&self, min_bits: u32) -> impl Iterator<Item = Root> + '_ {
        self.roots.iter().copied().filter(move |r| r.device && r.size_bits >= min_bits && r.end() <= DEVICE_PICK_LIMIT)
    }
}
