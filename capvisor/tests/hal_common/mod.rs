//! Shared by `tests/hal_kernel.rs` and `benches/hal.rs` (`#[path]`-included there): boots
//! of the root task in its `selftest-hal` and `bench-hal` modes, the model built from the
//! platform a boot printed, and the benchmark rows it printed.
#![allow(dead_code)]

use std::path::Path;

use hal_check::diff::{BENCH_PREFIX, HalShare, PLATFORM_PREFIX, SHARE_PREFIX, TRACE_PREFIX, extract};
use sel4_model::Model;

use crate::common::{self, Boot};

/// Wall-clock limit of one boot: the self-test makes a few million kernel calls (its slot
/// probes) under QEMU's emulation.
pub const TIMEOUT_S: u64 = 300;

/// The console lines of a boot.
pub fn console(b: &Boot) -> Vec<&str> {
    b.lines.iter().map(|(_, l)| l.as_str()).collect()
}

/// Builds the root task with `feature`, boots it, returns the boot.
pub fn boot(prefix: &Path, feature: &str, name: &str) -> Boot {
    common::build_and_boot(prefix, &format!("root-task/{feature}"), name, TIMEOUT_S)
}

/// The platform description the boot printed, as text in the model's format.
pub fn platform_text(b: &Boot) -> String {
    let mut s = extract(console(b), PLATFORM_PREFIX).join("\n");
    s.push('\n');
    s
}

/// The model of the boot: booted from the platform the root task printed.
pub fn model_of(b: &Boot) -> Model {
    Model::from_platform_named("<platform printed by the root task>", &platform_text(b))
        .unwrap_or_else(|e| panic!("the printed platform does not parse: {e}; log: {}", b.log_path.display()))
}

/// What of the bootinfo the boot's HAL was given (the line after [`SHARE_PREFIX`]).
pub fn share(b: &Boot) -> HalShare {
    let lines = extract(console(b), SHARE_PREFIX);
    let [line] = lines.as_slice() else {
        panic!("expected one {SHARE_PREFIX:?} line, found {}; log: {}", lines.len(), b.log_path.display())
    };
    HalShare::parse(line).unwrap_or_else(|e| panic!("{e}; log: {}", b.log_path.display()))
}

/// The trace the boot printed.
pub fn trace(b: &Boot) -> Vec<&str> {
    extract(console(b), TRACE_PREFIX)
}

/// One benchmark row as printed: `name=.. value=.. unit=.. reference=.. ratio=..`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub reference: Option<f64>,
    pub ratio: Option<f64>,
}

/// The rows and `(case, reason)` skips a `bench-hal` boot printed, and the counter frequency.
pub fn bench_rows(b: &Boot) -> (Vec<Row>, Vec<String>, Option<u64>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut hz = None;
    for l in extract(console(b), BENCH_PREFIX) {
        if let Some(s) = l.strip_prefix("skipped ") {
            skipped.push(s.to_string());
            continue;
        }
        if let Some(h) = l.strip_prefix("counter_hz=") {
            hz = h.parse().ok();
            continue;
        }
        let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k).and_then(|w| w.strip_prefix('=')));
        let num = |k: &str| field(k).and_then(|v| v.parse::<f64>().ok());
        let (Some(name), Some(value), Some(unit)) = (field("name"), num("value"), field("unit")) else {
            panic!("not a benchmark row: {l:?}; log: {}", b.log_path.display());
        };
        rows.push(Row {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            reference: num("reference"),
            ratio: num("ratio"),
        });
    }
    (rows, skipped, hz)
}

/// The rows as a table for people.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!("{:<42} {:>14} {:<7} {:>14} {:>8}\n", "row", "value", "unit", "reference", "ratio");
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for r in rows {
        s.push_str(&format!(
            "{:<42} {:>14.3} {:<7} {:>14} {:>8}\n",
            r.name,
            r.value,
            r.unit,
            opt(r.reference),
            opt(r.ratio)
        ));
    }
    s
}
