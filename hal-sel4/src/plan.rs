//! Pure arithmetic of placing objects in untyped memory: how to pad an untyped up to an
//! address, how to cut a range into aligned blocks, which frames tile a block, and the lower
//! bound on `Untyped_Retype` calls the benchmark compares against.
//!
//! All addresses here are absolute physical addresses ([`PhysAddr`]). An untyped of `2^n`
//! bytes is aligned to `2^n`, so alignment relative to its start and absolute alignment agree
//! for every object not larger than the untyped. Nothing here talks to the kernel.

use alloc::vec::Vec;

use sel4::object::PAGE_BITS;
use sel4::{FrameSize, PhysAddr};

/// `count` consecutive objects of `2^size_bits` bytes, created by one `Untyped_Retype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Address of the first object.
    pub addr: PhysAddr,
    /// log2 of each object's size.
    pub size_bits: u32,
    /// Number of objects.
    pub count: u64,
}

impl Run {
    /// One past the last byte.
    pub fn end(&self) -> PhysAddr {
        self.addr.offset(self.count << self.size_bits)
    }
}

/// log2 of the largest count one retype may create that is a power of two (8 for a fan-out
/// of 256): a window of that many address bits can be covered by one call.
pub const fn window_bits(fan_out: u64) -> u32 {
    63 - fan_out.leading_zeros()
}

/// The runs of untyped objects that exactly tile `[a, b)`, in address order, in as few
/// retype calls as this scheme finds: first up from `a` to the most aligned address `m` in
/// `(a, b]` (each call clears a window of low bits), then down from `m` to `b` (each call
/// covers the highest window of the remaining length). Every object is aligned to its size,
/// so the kernel's align-up of the free index never skips memory: the objects tile `[a, b)`
/// with no gap, which keeps every byte below an untyped's watermark reachable through a
/// child. `a` and `b` must be multiples of `2^min_bits`.
pub fn pad_runs(a: PhysAddr, b: PhysAddr, fan_out: u64) -> Vec<Run> {
    let mut out = Vec::new();
    if a >= b {
        return out;
    }
    let w = window_bits(fan_out);
    // The highest bit where the two differ: `a` has it clear and `b` has it set; if `a` is
    // aligned above it, the descending phase alone works from `a`.
    let p = 63 - (a.get() ^ b.get()).leading_zeros();
    let m = if a.alignment_bits() > p { a } else { b.align_down(p) };
    let mut cur = a;
    // Ascending: the lowest set bit of (m - cur) is cur's alignment; one call clears the
    // window of w bits above it.
    let mut d = m.offset_from(cur);
    while d != 0 {
        let l = d.trailing_zeros();
        let count = (d >> l) & ((1u64 << w) - 1);
        out.push(Run { addr: cur, size_bits: l, count });
        cur = cur.offset(count << l);
        d -= count << l;
    }
    // Descending: cover the top window of the remaining length with objects the size of its
    // lowest set bit.
    let mut d = b.offset_from(cur);
    while d != 0 {
        let h = 63 - d.leading_zeros();
        let lo = h.saturating_sub(w - 1);
        let l = lo + (d >> lo).trailing_zeros();
        let count = d >> l;
        out.push(Run { addr: cur, size_bits: l, count });
        cur = cur.offset(count << l);
        d -= count << l;
    }
    out
}

/// Number of retype calls [`pad_runs`] needs for `[a, b)`.
pub fn pad_calls(a: PhysAddr, b: PhysAddr, fan_out: u64) -> u64 {
    pad_runs(a, b, fan_out).len() as u64
}

/// `[s, t)` cut into maximal aligned power-of-two blocks `(addr, size_bits)`, in address
/// order: sizes grow while `s`'s alignment allows, then shrink to fit `t`.
pub fn blocks(s: PhysAddr, t: PhysAddr) -> Vec<(PhysAddr, u32)> {
    let mut out = Vec::new();
    let mut cur = s;
    while cur < t {
        let room = 63 - t.offset_from(cur).leading_zeros();
        let k = cur.alignment_bits().min(room);
        out.push((cur, k));
        cur = cur.offset(1u64 << k);
    }
    out
}

/// The largest frame size not larger than `2^size_bits` (`None` below 4 KiB).
pub fn largest_frame(size_bits: u32) -> Option<FrameSize> {
    FrameSize::LARGEST_FIRST.into_iter().find(|f| f.size_bits() <= size_bits)
}

/// Groups objects given in address order into runs of equal size, each at most `fan_out`
/// long: consecutive objects of equal size share one retype call.
pub fn group_runs(objects: impl IntoIterator<Item = (PhysAddr, u32)>, fan_out: u64) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (addr, size_bits) in objects {
        if let Some(last) = out.last_mut()
            && last.size_bits == size_bits
            && last.end() == addr
            && last.count < fan_out
        {
            last.count += 1;
            continue;
        }
        out.push(Run { addr, size_bits, count: 1 });
    }
    out
}

/// Merges a run list (address order) where neighbours have equal size and the sum fits the
/// fan-out, e.g. the last padding run with the first block.
pub fn merge_runs(runs: impl IntoIterator<Item = Run>, fan_out: u64) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in runs {
        if let Some(last) = out.last_mut()
            && last.size_bits == r.size_bits
            && last.end() == r.addr
            && last.count + r.count <= fan_out
        {
            last.count += r.count;
            continue;
        }
        out.push(r);
    }
    out
}

/// The fewest frames covering `[s, t)` (page aligned): at each address the largest frame its
/// alignment and the remaining length allow. Returned as runs of equal frame size.
pub fn fewest_frames(s: PhysAddr, t: PhysAddr) -> Vec<(FrameSize, u64)> {
    let mut out: Vec<(FrameSize, u64)> = Vec::new();
    let mut cur = s;
    while cur < t {
        let Some(f) = FrameSize::LARGEST_FIRST
            .into_iter()
            .find(|f| cur.is_aligned(f.size_bits()) && t.offset_from(cur) >= f.size_bytes())
        else {
            break;
        };
        match out.last_mut() {
            Some((g, n)) if *g == f => *n += 1,
            _ => out.push((f, 1)),
        }
        cur = cur.offset(f.size_bytes());
    }
    out
}

/// The cost the benchmark compares with: retype calls to create the fewest frames that
/// cover `[s, t)` out of a *fresh* untyped starting at `ut_base`: the padding calls to bring
/// its watermark to `s` plus one call per `fan_out` frames of one size. The padding is
/// counted as the fewest calls that reach `s` from the untyped's start; by the window
/// argument of [`pad_runs`] that is the number of `w`-bit windows needed to cover the set
/// bits of `s - ut_base` (top-down greedy, which is optimal for covering points with
/// intervals). The piece must lie in one untyped.
pub fn lower_bound_piece(ut_base: PhysAddr, s: PhysAddr, t: PhysAddr, fan_out: u64) -> u64 {
    let frames: u64 = fewest_frames(s, t).iter().map(|&(_, n)| n.div_ceil(fan_out)).sum();
    pad_calls(ut_base, s, fan_out) + frames
}

/// The same for a baseline that uses only 4 KiB frames.
pub fn small_pages_only_piece(ut_base: PhysAddr, s: PhysAddr, t: PhysAddr, fan_out: u64) -> u64 {
    let pages = t.offset_from(s) >> PAGE_BITS;
    pad_calls(ut_base, s, fan_out) + pages.div_ceil(fan_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAN: u64 = 256;

    /// A run, for expectations.
    fn run(addr: u64, size_bits: u32, count: u64) -> Run {
        Run { addr: PhysAddr(addr), size_bits, count }
    }

    fn assert_tiles(runs: &[Run], a: PhysAddr, b: PhysAddr) {
        let mut cur = a;
        for r in runs {
            assert_eq!(r.addr, cur, "gap or overlap in {runs:?}");
            assert!(r.count >= 1 && r.count <= FAN, "{r:?}");
            assert!(r.addr.is_aligned(r.size_bits), "unaligned {r:?}");
            cur = r.end();
        }
        assert_eq!(cur, b, "{runs:?}");
    }

    #[test]
    fn padding_from_an_untyped_start_is_top_down_windows() {
        let base = PhysAddr(0x6800_0000);
        // 0x3000: three 4 KiB objects, one call.
        assert_eq!(pad_runs(base, base.offset(0x3000), FAN), [run(0x6800_0000, 12, 3)]);
        // Bits 21 and 13 are 9 bits apart: an 8-bit window cannot hold both, two calls.
        let r = pad_runs(base, base.offset(0x20_2000), FAN);
        assert_tiles(&r, base, base.offset(0x20_2000));
        assert_eq!(r, [run(0x6800_0000, 21, 1), run(0x6820_0000, 13, 1)]);
        // Bits 20 and 13 fit one window: 129 objects of 8 KiB.
        assert_eq!(pad_runs(base, base.offset(0x10_2000), FAN), [run(0x6800_0000, 13, 0x81)]);
    }

    #[test]
    fn padding_tiles_exactly_for_many_ranges() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = PhysAddr((x & 0xfff_ffff) << 12);
            let b = a.offset((x >> 28 & 0xff_ffff) << 12);
            let r = pad_runs(a, b, FAN);
            assert_tiles(&r, a, b);
        }
    }

    #[test]
    fn padding_call_counts() {
        // Fresh untyped at 0: offset 0x0ff0_0000 has 8 set bits 20..27: one call of 255 MiB.
        assert_eq!(pad_runs(PhysAddr(0), PhysAddr(0x0ff0_0000), FAN), [run(0, 20, 0xff)]);
        // 9 set bits need two windows.
        assert_eq!(pad_calls(PhysAddr(0), PhysAddr(0x1ff0_0000), FAN), 2);
        // From an unaligned watermark up to an aligned address: ascending windows.
        let r = pad_runs(PhysAddr(0x1000), PhysAddr(0x20_0000), FAN);
        assert_eq!(r, [run(0x1000, 12, 255), run(0x10_0000, 20, 1)]);
    }

    #[test]
    fn blocks_are_maximal_and_aligned() {
        let blocks = |s, t| -> Vec<(u64, u32)> {
            blocks(PhysAddr(s), PhysAddr(t)).into_iter().map(|(a, k)| (a.get(), k)).collect()
        };
        assert_eq!(blocks(0x1000, 0x8000), [(0x1000, 12), (0x2000, 13), (0x4000, 14)]);
        assert_eq!(blocks(0x4000_0000, 0x4000_0000 + (96 << 20)), [(0x4000_0000, 26), (0x4400_0000, 25)]);
        assert_eq!(blocks(0, 1 << 30), [(0, 30)]);
    }

    #[test]
    fn fewest_frames_uses_large_pages_where_aligned() {
        use FrameSize::*;
        assert_eq!(fewest_frames(PhysAddr(0x1000), PhysAddr(0x40_1000)), [(Small, 511), (Large, 1), (Small, 1)]);
        assert_eq!(fewest_frames(PhysAddr(0x4000_0000), PhysAddr(0x8000_0000)), [(Huge, 1)]);
    }

    #[test]
    fn lower_bounds() {
        let [ut, at_3000, at_4000, end] = [0x6800_0000, 0x6800_3000, 0x6800_4000, 0x6c00_0000].map(PhysAddr);
        // 4 KiB at offset 0x3000 of a fresh untyped: one padding call, one frame call.
        assert_eq!(lower_bound_piece(ut, at_3000, at_4000, FAN), 2);
        // 64 MiB at the start: 32 large pages, one call.
        assert_eq!(lower_bound_piece(ut, ut, end, FAN), 1);
        // 4 KiB only: 16384 pages, 64 calls.
        assert_eq!(small_pages_only_piece(ut, ut, end, FAN), 64);
    }

    #[test]
    fn runs_group_and_merge() {
        let g = group_runs([(0, 12), (0x1000, 12), (0x2000, 13), (0x4000, 14)].map(|(a, k)| (PhysAddr(a), k)), FAN);
        assert_eq!(g.len(), 3);
        let m = merge_runs([run(0, 12, 3), run(0x3000, 12, 1)], FAN);
        assert_eq!(m, [run(0, 12, 4)]);
        let full = merge_runs([run(0, 12, 255), run(255 << 12, 12, 2)], FAN);
        assert_eq!(full.len(), 2, "257 objects exceed the fan-out");
    }
}
