//! The allocation benchmark: for regions of 4 KiB, 2 MiB, 64 MiB and 1 GiB at fixed bases,
//! kernel invocations against the lower bound of `hal_sel4::plan`, and wall time per MiB of
//! the allocation, of the same allocation again after a free, and of the reference measured
//! in the same run: the first `Untyped_Retype` from an untyped the HAL does not own.
//!
//! Why that reference: seL4 16 hands out boot untypeds with their free index at the end, so
//! the first retype from one (with no children) resets it, which zeroes *the whole untyped*;
//! later retypes after everything in it was deleted zero only the part used before. The
//! HAL's first allocation in an untyped therefore pays for zeroing all of it, and its time
//! is compared with that zeroing; an allocation made again after a free zeroes only itself.
//!
//! Reference rows (`reference.*`), measured on one RAM untyped the HAL does not own, with
//! raw kernel calls, in this order:
//! - `cold_zero_time_per_mib`: its first retype (one 4 KiB frame): the reset zeroes all of
//!   it, memory nothing has touched since boot; per MiB of the untyped;
//! - `frames_time_per_mib`: after a revoke, frames covering all of it (2 MiB pages; the reset
//!   zeroes 4 KiB): what creating frames costs per MiB (the kernel cleans their cache lines);
//! - `warm_zero_time_per_mib`: after a revoke, one 4 KiB frame again: the reset zeroes the
//!   whole untyped once more, memory now touched; per MiB;
//! - `call_time`: after a revoke, one 4 KiB frame again (the reset zeroes 4 KiB): one call.
//!
//! Before the cases, an untimed warm-up (the 4 KiB case's shape, twice, in a small untyped no
//! case uses): QEMU translates code the first time it runs, which would land on the first case.
//!
//! Rows per case `<c>` (`4k`, `2m`, `64m`, `1g`):
//! - `alloc_<c>.zeroed`: MiB of untyped the first allocation zeroes (every untyped it is the
//!   first to retype from), against the region's MiB;
//! - `alloc_<c>.invocations`: kernel calls of the first allocation, against the lower bound
//!   (`hal_sel4::plan::lower_bound_piece` over the untypeds touched);
//! - `alloc_<c>.invocations_again`: calls of the same allocation after a free, against the first;
//! - `alloc_<c>.time_per_mib`: wall time of the first allocation per MiB of the region, against
//!   what the kernel must do for it at the reference rates: zero the untypeds it touches (cold)
//!   and create its frames;
//! - `alloc_<c>.free_time`: wall time of a free (median of [`AGAIN_ROUNDS`]);
//! - `alloc_<c>.again_time_per_mib`: wall time of the allocation after a free per MiB (median
//!   of [`AGAIN_ROUNDS`]), against zeroing the region (warm) and creating its frames.
//!
//! Owns nothing; the clock is the caller's (on the target, the generic timer's counter).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hal_sel4::plan::lower_bound_piece;
use hal_sel4::{KindRequest, Sel4Hal};
use sel4::cap_type::Untyped;
use sel4::{CNodeSlot, Cap, Kernel, ObjectBlueprint, PhysAddr, SlotRegion, UntypedDesc};

use crate::Failure;
use crate::counting::Counting;
use crate::layout::Layout;

const MIB: f64 = (1u64 << 20) as f64;

/// A region to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Short name (`4k`, `2m`, `64m`, `1g`).
    pub name: &'static str,
    /// Physical base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The regions, at bases inside QEMU virt's RAM as seL4 hands it out (each in untypeds of
/// its own, so every case starts from fresh untypeds): 4 KiB three pages into the 128 MiB
/// untyped at 0x6800_0000; 2 MiB in the upper half of the 4 MiB one at 0x6040_0000; 64 MiB
/// that is exactly the untyped at 0x6400_0000; 1 GiB over the three at 0x7000_0000 (256,
/// 512 and 256 MiB). A case whose range the boot does not back with RAM is reported as
/// skipped.
pub const CASES: [Case; 4] = [
    Case { name: "4k", base: 0x6800_3000, size: 4 << 10 },
    Case { name: "2m", base: 0x6060_0000, size: 2 << 20 },
    Case { name: "64m", base: 0x6400_0000, size: 64 << 20 },
    Case { name: "1g", base: 0x7000_0000, size: 1 << 30 },
];

/// One result: `value` in `unit`, compared with `reference` (same unit) as `value / reference`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `<case>.<what>`.
    pub name: String,
    /// The measurement.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// What it is compared with, if anything.
    pub reference: Option<f64>,
}

impl Row {
    /// `value / reference`.
    pub fn ratio(&self) -> Option<f64> {
        self.reference.filter(|r| *r > 0.0).map(|r| self.value / r)
    }
}

fn opt(f: &mut fmt::Formatter<'_>, v: Option<f64>) -> fmt::Result {
    match v {
        Some(v) => write!(f, "{v:.3}"),
        None => f.write_str("-"),
    }
}

/// `name=<n> value=<v> unit=<u> reference=<r|-> ratio=<x|->`: what the root task prints
/// after [`crate::diff::BENCH_PREFIX`].
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name={} value={:.3} unit={} reference=", self.name, self.value, self.unit)?;
        opt(f, self.reference)?;
        f.write_str(" ratio=")?;
        opt(f, self.ratio())
    }
}

/// What the benchmark measured, and which cases it could not run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
    /// `(case, why)` for each case left out.
    pub skipped: Vec<(&'static str, String)>,
}

/// The untyped the reference is measured on: the largest RAM untyped that no case touches
/// (lowest first among equals), from 2 MiB to 512 MiB (at most the fan-out limit of 2 MiB
/// frames). Returns its index in `untyped`.
pub fn reference_index(untyped: &[UntypedDesc]) -> Option<usize> {
    let touched = |u: &UntypedDesc| CASES.iter().any(|c| c.base < u.end() && u.paddr.get() < c.base + c.size);
    let mut best: Option<usize> = None;
    for (i, u) in untyped.iter().enumerate() {
        if u.is_device || u.size_bits < 21 || u.size_bits > 29 || touched(u) {
            continue;
        }
        if best.is_none_or(|b| untyped[b].size_bits < u.size_bits) {
            best = Some(i);
        }
    }
    best
}

/// The lower bound of retype calls for `[s, t)` out of fresh roots.
pub fn lower_bound(layout: &Layout, s: u64, t: u64, fan_out: u64) -> u64 {
    layout
        .roots()
        .iter()
        .filter(|r| r.paddr < t && s < r.end())
        .map(|r| lower_bound_piece(PhysAddr(r.paddr), PhysAddr(s.max(r.paddr)), PhysAddr(t.min(r.end())), fan_out))
        .sum()
}

/// Rounds of free and allocate-again per case.
pub const AGAIN_ROUNDS: usize = 5;

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The reference rates, microseconds per MiB (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rates {
    cold: f64,
    warm: f64,
    frames: f64,
}

/// Runs the benchmark on `hal` (which must not own `reference`), measuring time with
/// `clock` (ticks at `hz`). `scratch` holds empty slots outside the HAL's region, as many as
/// 2 MiB frames in the reference untyped (at most the fan-out limit).
pub fn run<K: Kernel>(
    hal: &mut Sel4Hal<Counting<K>>,
    reference: Option<(Cap<Untyped>, UntypedDesc)>,
    scratch: SlotRegion,
    clock: &mut dyn FnMut() -> u64,
    hz: u64,
) -> Result<Report, Failure> {
    let us = |ticks: u64| ticks as f64 * 1e6 / hz.max(1) as f64;
    let mut report = Report::default();
    let mut rates = None;
    match reference {
        Some((ut, desc)) if desc.size_bits >= 21 && scratch.len() >= 1 << (desc.size_bits - 21) => {
            let k = &mut hal.kernel_mut().kernel;
            let mib = desc.size_bytes() as f64 / MIB;
            let large = 1u64 << (desc.size_bits - 21);
            let mut step = |what: &str, blueprint: ObjectBlueprint, count: u64| -> Result<u64, Failure> {
                let t0 = clock();
                k.untyped_retype(ut, blueprint, scratch.start, count)
                    .map_err(|e| Failure::new(format!("reference {what}: retype from {}: {e}", desc.paddr)))?;
                let t = clock() - t0;
                k.cnode_revoke(CNodeSlot::root(ut.slot()))
                    .map_err(|e| Failure::new(format!("reference {what}: revoke: {e}")))?;
                Ok(t)
            };
            let cold = step("cold", ObjectBlueprint::SmallPage, 1)?;
            let frames = step("frames", ObjectBlueprint::LargePage, large)?;
            let warm = step("warm", ObjectBlueprint::SmallPage, 1)?;
            let call = step("call", ObjectBlueprint::SmallPage, 1)?;
            let r = Rates { cold: us(cold) / mib, warm: us(warm) / mib, frames: us(frames) / mib };
            let n = desc.size_bytes() >> 20;
            let row = |name: &str, value: f64, unit: &'static str| Row {
                name: format!("reference.{name}_{n}m"),
                value,
                unit,
                reference: None,
            };
            report.rows.push(row("cold_zero_time_per_mib", r.cold, "us/MiB"));
            report.rows.push(row("frames_time_per_mib", r.frames, "us/MiB"));
            report.rows.push(row("warm_zero_time_per_mib", r.warm, "us/MiB"));
            report.rows.push(row("call_time", us(call), "us"));
            rates = Some(r);
        }
        _ => report.skipped.push(("reference", String::from("no RAM untyped of 2 MiB or more outside the cases"))),
    }
    let layout = Layout::of(hal);
    let fan_out = hal.pool().fan_out();
    // Warm up, untimed: the first run of the HAL's code and of the kernel paths it takes
    // costs QEMU its translation of them, which is not what the cases measure. The same
    // shape as the 4 KiB case, in the smallest RAM untyped of 64 KiB or more that no case uses.
    let untouched = |r: &crate::layout::Root| CASES.iter().all(|c| c.base + c.size <= r.paddr || r.end() <= c.base);
    if let Some(w) = layout.ram_at_least(16).filter(untouched).min_by_key(|r| (r.size_bits, r.paddr)) {
        let (base, size) = (PhysAddr(w.paddr + 3 * 4096), 4096);
        for round in 0..2 {
            hal.alloc_region(base, size, KindRequest::Ram)
                .map_err(|e| Failure::new(format!("warm-up alloc {round} at {base}: {e}")))?;
            hal.dealloc_region(base, size).map_err(|e| Failure::new(format!("warm-up free {round}: {e}")))?;
        }
    }
    for c in CASES {
        let end = c.base + c.size;
        match layout.coverage(c.base, end) {
            Ok(Some(false)) => {}
            Ok(_) => {
                report.skipped.push((c.name, format!("{:#x}+{:#x} is not all RAM", c.base, c.size)));
                continue;
            }
            Err(at) => {
                report.skipped.push((c.name, format!("{:#x}+{:#x}: {at:#x} is not backed by untyped", c.base, c.size)));
                continue;
            }
        }
        let zeroed: u64 = layout.roots().iter().filter(|r| r.paddr < end && c.base < r.end()).map(|r| r.size()).sum();
        let lb = lower_bound(&layout, c.base, end, fan_out);
        let mib = c.size as f64 / MIB;

        let n0 = hal.kernel().observer;
        let t0 = clock();
        hal.alloc_region(PhysAddr(c.base), c.size, KindRequest::Ram)
            .map_err(|e| Failure::new(format!("{}: alloc: {e}", c.name)))?;
        let t1 = clock();
        let calls = hal.kernel().observer.since(&n0);
        // Free and allocate again, AGAIN_ROUNDS times; the medians are reported (the first
        // round after a large first allocation runs slower under QEMU, and the host may
        // preempt any single one).
        let mut frees = Vec::new();
        let mut agains = Vec::new();
        let mut calls_again = None;
        for round in 0..AGAIN_ROUNDS {
            let t = clock();
            hal.dealloc_region(PhysAddr(c.base), c.size)
                .map_err(|e| Failure::new(format!("{}: free {round}: {e}", c.name)))?;
            let u = clock();
            let n1 = hal.kernel().observer;
            hal.alloc_region(PhysAddr(c.base), c.size, KindRequest::Ram)
                .map_err(|e| Failure::new(format!("{}: alloc again {round}: {e}", c.name)))?;
            let v = clock();
            calls_again.get_or_insert(hal.kernel().observer.since(&n1));
            frees.push(u - t);
            agains.push(v - u);
        }
        hal.dealloc_region(PhysAddr(c.base), c.size)
            .map_err(|e| Failure::new(format!("{}: last free: {e}", c.name)))?;
        let calls_again = calls_again.unwrap_or_default();

        let name = |what: &str| format!("alloc_{}.{what}", c.name);
        report.rows.push(Row { name: name("zeroed"), value: zeroed as f64 / MIB, unit: "MiB", reference: Some(mib) });
        report.rows.push(Row {
            name: name("invocations"),
            value: calls.total() as f64,
            unit: "calls",
            reference: Some(lb as f64),
        });
        report.rows.push(Row {
            name: name("invocations_again"),
            value: calls_again.total() as f64,
            unit: "calls",
            reference: Some(calls.total() as f64),
        });
        report.rows.push(Row {
            name: name("time_per_mib"),
            value: us(t1 - t0) / mib,
            unit: "us/MiB",
            reference: rates.map(|r| (r.cold * (zeroed as f64 / MIB) + r.frames * mib) / mib),
        });
        report.rows.push(Row { name: name("free_time"), value: us(median(&mut frees)), unit: "us", reference: None });
        report.rows.push(Row {
            name: name("again_time_per_mib"),
            value: us(median(&mut agains)) / mib,
            unit: "us/MiB",
            reference: rates.map(|r| r.warm + r.frames),
        });
    }
    Ok(report)
}
