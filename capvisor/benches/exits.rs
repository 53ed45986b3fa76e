//! Benchmark: what a VM exit costs, timed from inside a guest.
//!
//! `cargo bench -p capvisor --bench exits [-- --json]` (needs `SEL4_PREFIX` with
//! `bin/kernel.elf`, and QEMU; otherwise it says why and prints nothing).
//!
//! The test guest in its bench mode (`configs/test-guest-bench.toml`) runs under capvisor
//! and times, with the virtual counter, 31 batches of 100 calls of each: the loop with a
//! store to RAM and no exit (the floor), an `HVC` the VMM answers as PSCI `VERSION` (the
//! cheapest exit: one VMM system call, the reply), an emulated register read (GICD_TYPER)
//! and write (a GICD priority register). Rows, in microseconds per call (medians over the
//! batches; the counter follows the host clock, so a batch the host preempted only moves
//! the tail):
//! - `exit_hvc` against the loop without an exit;
//! - `exit_mmio_read` and `exit_mmio_write` against `exit_hvc` (what the emulation's extra
//!   system calls add to the round trip);
//! - the cheapest batch of each, against its median;
//! - VMM system calls per exit of each kind, from the root task's counters, against the
//!   number `vm-runner` predicts for it.
//!
//! Prints a table, or with `--json` one JSON object per row:
//! `{"name", "value", "unit", "reference", "ratio"}` (`reference` names the row or bound the
//! ratio is taken against; both are null for rows without one).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{BenchRow, print_bench_rows};

/// `bench: <kind> <calls> calls median <m> ticks, min <n> ticks` (ticks per batch) →
/// (kind, median, min) in ticks per call.
fn parse_timing(line: &str) -> Option<(String, f64, f64)> {
    let rest = line.split_once("bench: ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    match f[..] {
        [kind, calls, "calls", "median", m, "ticks,", "min", n, "ticks"] => {
            let calls: f64 = calls.parse().ok().filter(|c| *c > 0.0)?;
            Some((kind.to_string(), m.parse::<f64>().ok()? / calls, n.parse::<f64>().ok()? / calls))
        }
        _ => None,
    }
}

/// `bench: counter frequency <hz> Hz, ...` → hz.
fn parse_frequency(line: &str) -> Option<u64> {
    line.split_once("bench: counter frequency ")?.1.split_whitespace().next()?.parse().ok()
}

/// The counters table row `capvisor:   MmioRead   100   300   3.00   3.00` → (kind,
/// measured, predicted) system calls per exit.
fn parse_counter(line: &str) -> Option<(String, f64, f64)> {
    let f: Vec<&str> = line.split_once("capvisor:")?.1.split_whitespace().collect();
    match f[..] {
        [kind, exits, _, measured, predicted] if exits.parse::<u64>().is_ok() => {
            Some((kind.to_string(), measured.parse().ok()?, predicted.parse().ok()?))
        }
        _ => None,
    }
}

fn rows() -> Result<Vec<BenchRow>, String> {
    let Some(prefix) = common::boot_prerequisites() else {
        return Err("no kernel binary or QEMU (see above)".into());
    };
    let b = common::boot_vm_config(&prefix, "test-guest-bench.toml", "exits-bench", "exits-bench", 300);
    if b.status.code() != Some(0) {
        return Err(format!("the benchmark boot failed ({}); log: {}", b.status, b.log_path.display()));
    }
    let hz = b
        .lines
        .iter()
        .find_map(|(_, l)| parse_frequency(l))
        .ok_or(format!("no counter frequency; log: {}", b.log_path.display()))?;
    let us = |ticks: f64| ticks * 1e6 / hz as f64;
    let timing: Vec<(String, f64, f64)> = b.lines.iter().filter_map(|(_, l)| parse_timing(l)).collect();
    let get = |kind: &str| {
        timing.iter().find(|t| t.0 == kind).cloned().ok_or(format!("no {kind} timing; log: {}", b.log_path.display()))
    };
    let (none, hvc, read, write) = (get("none")?, get("hvc")?, get("mmio_read")?, get("mmio_write")?);
    let row = |name: &str, v: f64, reference: Option<(&str, f64)>| BenchRow {
        name: name.into(),
        value: v,
        unit: "us".into(),
        reference: reference.map(|(n, r)| (n.to_string(), r)),
    };
    let mut rows = vec![
        row("no_exit_loop", us(none.1), None),
        row("exit_hvc", us(hvc.1), Some(("no_exit_loop", us(none.1)))),
        row("exit_mmio_read", us(read.1), Some(("exit_hvc", us(hvc.1)))),
        row("exit_mmio_write", us(write.1), Some(("exit_hvc", us(hvc.1)))),
    ];
    for (name, t) in [("exit_hvc", &hvc), ("exit_mmio_read", &read), ("exit_mmio_write", &write)] {
        rows.push(row(&format!("{name}_fastest_batch"), us(t.2), Some((name, us(t.1)))));
    }
    for (_, line) in &b.lines {
        if let Some((kind, measured, predicted)) = parse_counter(line)
            && ["Hvc", "MmioRead", "MmioWrite"].contains(&kind.as_str())
        {
            rows.push(BenchRow {
                name: format!("vmm_syscalls_per_exit_{kind}"),
                value: measured,
                unit: "calls".into(),
                reference: Some((format!("predicted by vm-runner for {kind}"), predicted)),
            });
        }
    }
    Ok(rows)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let rows = match rows() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("exits bench: skipped: {why}");
            return;
        }
    };
    print_bench_rows(&rows, json);
}
