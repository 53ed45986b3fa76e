//! Benchmark: the HAL's allocations on the real kernel under QEMU.
//!
//! `cargo bench -p capvisor --bench hal_kernel [-- --json]` (needs `SEL4_PREFIX` with
//! `bin/kernel.elf`, and QEMU; says why and prints nothing else without them).
//!
//! Builds the root task with `bench-hal`, boots it, and prints what `hal_check::bench`
//! measured in that one run (rows and references are documented there): for regions of
//! 4 KiB, 2 MiB, 64 MiB and 1 GiB at fixed bases, kernel invocations against the lower bound,
//! the untyped memory the first allocation zeroes, and wall time per MiB (counter ticks of
//! `CNTVCT_EL0` at `CNTFRQ_EL0`) of the allocation, of the same allocation after a free, and
//! of the reference, the first retype of an untyped the HAL does not own. Model-only
//! invocation rows for more shapes are in `cargo bench -p hal-sel4 --bench hal`.
//!
//! Prints a table, or with `--json` one JSON object per row: `{"name", "value", "unit",
//! "reference", "ratio"}` (`reference` and `ratio` null for rows without a reference). QEMU's
//! counter follows the host's clock, so times include the host's own costs (first touches
//! of guest RAM among them).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/hal_common/mod.rs"]
mod hal_common;

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let Some(prefix) = common::boot_prerequisites() else { return };
    let b = hal_common::boot(&prefix, "bench-hal", "hal-kernel-bench");
    if b.status.code() != Some(0) {
        eprintln!("hal bench: the boot failed (exit {}); log: {}", b.status, b.log_path.display());
        std::process::exit(1);
    }
    let (rows, skipped, hz) = hal_common::bench_rows(&b);
    if json {
        for r in &rows {
            let obj = serde_json::json!({
                "name": r.name, "value": r.value, "unit": r.unit, "reference": r.reference, "ratio": r.ratio,
            });
            println!("{obj}");
        }
    } else {
        println!("counter: {} Hz (log: {})", hz.unwrap_or(0), b.log_path.display());
        print!("{}", hal_common::table(&rows));
    }
    for s in skipped {
        eprintln!("hal bench: skipped {s}");
    }
}
