//! Benchmark: what a VM exit costs, timed from inside a guest, against what seL4 alone costs
//! for the same round trip.
//!
//! `cargo bench -p capvisor --bench exits [-- --json]` (needs `SEL4_PREFIX` with
//! `bin/kernel.elf`, and QEMU; otherwise it says why and prints nothing). Runs on release and
//! debug kernels; the first row says which (`DEBUG_BUILD` of the prefix's `gen_config.json`).
//!
//! One boot of the root task built with `bench-exits`, embedding
//! `configs/test-guest-bench.toml`:
//! - first, before the VMs start, the root task times a bare seL4 fault round trip
//!   (`root-task/src/bare_fault.rs`): a thread on a VCPU of its own (one page of code in its
//!   own stage-2 address space) runs batches of `hvc`, and the root task's thread answers each
//!   with `seL4_ReplyRecv` of a prepared message (the PC past the `hvc`) and nothing else:
//!   the kernel's part of an exit, without the VMM's decoding and dispatch;
//! - then the test guest in its bench mode times, with the virtual counter: the loop with a
//!   store to RAM and no exit (the floor), an `HVC` the VMM answers as PSCI `VERSION` (the
//!   cheapest exit: one VMM system call, the reply), an emulated register read (GICD_TYPER)
//!   and write (a GICD priority register).
//!
//! Both time 31 batches of 100 calls with the same counter (every VCPU's `CNTVOFF` is 0).
//! Rows, in microseconds per call (medians over the batches; the counter follows the host
//! clock, so a batch the host preempted only moves the tail):
//! - `kernel_debug_build`: 1 on a debug kernel, 0 on a release one;
//! - `bare_fault_round_trip`: the reference for the VMM's cost;
//! - `exit_hvc` against the loop without an exit;
//! - `exit_mmio_read` and `exit_mmio_write` against `exit_hvc` (what the emulation's extra
//!   system calls add to the round trip);
//! - `exit_hvc_vs_bare_fault`, `exit_mmio_read_vs_bare_fault`, `exit_mmio_write_vs_bare_fault`:
//!   each exit against the bare round trip (the ratio is what the VMM multiplies seL4's own
//!   cost by);
//! - the cheapest batch of each, against its median;
//! - VMM system calls per exit of each kind, from the root task's counters, against the
//!   number `vm-runner` predicts for it.
//!
//! Prints a table, or with `--json` one JSON object per row:
//! `{"name", "value", "unit", "reference", "ratio", "reference_name"}` (`reference` is the
//! value the ratio is taken against, `reference_name` the row or bound it comes from; all
//! three are null for rows without one).

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

/// Whether the kernel at `prefix` is a debug build, from its `gen_config.json`.
fn kernel_debug_build(prefix: &std::path::Path) -> Result<bool, String> {
    let p = sel4_codegen::prefix::Prefix::new(prefix).map_err(|e| e.to_string())?;
    let config = sel4_codegen::config::KernelConfig::load(&p).map_err(|e| e.to_string())?;
    config.require_flag("DEBUG_BUILD").map_err(|e| e.to_string())
}

/// The rows of one boot of the kernel at `prefix` (a debug build if `debug`).
fn rows(prefix: &std::path::Path, debug: bool) -> Result<Vec<BenchRow>, String> {
    let b =
        common::boot_vm_config_with(prefix, "test-guest-bench.toml", "exits-bench", "exits-bench", 300, "bench-exits");
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
    let bare = get("bare_fault")?;
    let row = |name: &str, v: f64, reference: Option<(&str, f64)>| BenchRow {
        name: name.into(),
        value: v,
        unit: "us".into(),
        reference: reference.map(|(n, r)| (n.to_string(), r)),
    };
    let bare_ref = Some(("bare_fault_round_trip", us(bare.1)));
    let mut rows = vec![
        BenchRow {
            name: "kernel_debug_build".into(),
            value: f64::from(u8::from(debug)),
            unit: "bool".into(),
            reference: None,
        },
        row("no_exit_loop", us(none.1), None),
        row("bare_fault_round_trip", us(bare.1), None),
        row("exit_hvc", us(hvc.1), Some(("no_exit_loop", us(none.1)))),
        row("exit_mmio_read", us(read.1), Some(("exit_hvc", us(hvc.1)))),
        row("exit_mmio_write", us(write.1), Some(("exit_hvc", us(hvc.1)))),
        row("exit_hvc_vs_bare_fault", us(hvc.1), bare_ref),
        row("exit_mmio_read_vs_bare_fault", us(read.1), bare_ref),
        row("exit_mmio_write_vs_bare_fault", us(write.1), bare_ref),
    ];
    for (name, t) in
        [("exit_hvc", &hvc), ("exit_mmio_read", &read), ("exit_mmio_write", &write), ("bare_fault_round_trip", &bare)]
    {
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
    let Some(prefix) = common::boot_prerequisites() else {
        eprintln!("exits bench: skipped: no kernel binary or QEMU (see above)");
        return;
    };
    let rows = match kernel_debug_build(&prefix).and_then(|debug| Ok((debug, rows(&prefix, debug)?))) {
        Ok((debug, rows)) => {
            if !json {
                println!(
                    "kernel: {} (DEBUG_BUILD {debug} in {}/libsel4/include/kernel/gen_config.json)",
                    if debug { "debug" } else { "release" },
                    prefix.display()
                );
            }
            rows
        }
        Err(why) => {
            eprintln!("exits bench: skipped: {why}");
            return;
        }
    };
    print_bench_rows(&rows, json);
}
