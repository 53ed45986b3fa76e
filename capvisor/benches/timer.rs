//! Benchmark: the cost of `current_time_nanos`.
//!
//! `cargo bench -p capvisor --bench timer [-- --json]`
//!
//! Rows, measured in one run:
//! - on the seL4 model: kernel entries per `Sel4Hal::current_time_nanos` (hal-sel4's time
//!   client against the timer server's decision code), against the lower bound of one
//!   `seL4_Call`;
//! - under QEMU (needs `SEL4_PREFIX` with `bin/kernel.elf`, and QEMU): the root task built
//!   with `bench-timer` prints the counter frequency, the cost in counter ticks of a direct
//!   counter read (the zero-system-call path) and of `now` through the server (the IPC path,
//!   the same single `Call` as `current_time_nanos`), side by side: medians over 101 batches of
//!   200 calls (robust to the host preempting QEMU, whose counter follows the host clock), and
//!   the cheapest single `now`.
//!
//! Prints a table, or with `--json` one JSON object per row:
//! `{"name", "value", "unit", "reference", "ratio", "reference_name"}` (`reference` is the
//! value the ratio is taken against, `reference_name` the row or bound it comes from; all
//! three are null for rows without one).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{BenchRow, print_bench_rows};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hal_sel4::{HalConfig, Sel4Hal};
use sel4::{CNodeSlot, Kernel, ObjectBlueprint, Op, Slot, SlotRegion};
use sel4_model::Model;
use timer_server::clock::{Clock, Frequency};
use timer_server::protocol::badge;
use timer_server::server::Core;
use timer_server::setup::CALL_RIGHTS;

/// Kernel entries per `current_time_nanos` on the model, through hal-sel4's client.
fn model_rows() -> Vec<BenchRow> {
    const CALLS: u64 = 1000;
    let mut m = Model::qemu_arm_virt();
    let (ut, _) = m.untyped_slots().into_iter().find(|(_, d)| !d.is_device && d.size_bits >= 16).expect("RAM untyped");
    let empty = m.bootinfo().empty();
    let ep = empty.start;
    m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, ep, 1).expect("endpoint");
    let client = Slot::new(ep.index() + 1);
    m.cnode_mint(CNodeSlot::root(client), ep, CALL_RIGHTS, badge::client(0)).expect("client cap");
    let counter = Arc::new(AtomicU64::new(0));
    let core = Arc::new(Mutex::new(Core::new(
        Clock::new(Frequency::new(62_500_000).expect("frequency"), 64, 0).expect("clock"),
    )));
    core.lock().expect("core").add_client(0, false);
    let (c, k) = (core.clone(), counter.clone());
    m.serve(
        ep.cap(),
        Box::new(move |b, msg| {
            let raw = k.fetch_add(300, Ordering::Relaxed);
            c.lock().expect("core").handle(b, msg, raw).reply.expect("a reply")
        }),
    );
    let mut config = HalConfig::new(SlotRegion { start: Slot::new(client.index() + 1), end: empty.end });
    config.timer = Some(client.cap());
    let mut hal = match Sel4Hal::new(m, std::iter::empty(), config) {
        Ok(h) => h,
        Err(e) => panic!("Sel4Hal on the model: {e:?}"),
    };
    hal.kernel_mut().reset_counters();
    let mut last = 0;
    for _ in 0..CALLS {
        let t = hal.current_time_nanos();
        assert!(t >= last, "time went backwards");
        last = t;
    }
    let c = hal.kernel().counters();
    let per_call = |n: u64| n as f64 / CALLS as f64;
    vec![
        BenchRow {
            name: "model: kernel entries per current_time_nanos".into(),
            value: per_call(c.total()),
            unit: "entries".into(),
            reference: Some(("lower bound: one seL4_Call".into(), 1.0)),
        },
        BenchRow {
            name: "model: seL4_Call per current_time_nanos".into(),
            value: per_call(c.get(Op::Call)),
            unit: "calls".into(),
            reference: Some(("lower bound: one seL4_Call".into(), 1.0)),
        },
    ]
}

/// The rows the root task prints under QEMU, or why there are none.
fn qemu_rows() -> Result<Vec<BenchRow>, String> {
    let Some(prefix) = common::boot_prerequisites() else {
        return Err("no kernel binary or QEMU (see above)".into());
    };
    let b = common::build_and_boot(&prefix, "root-task/bench-timer", "timer-bench", 300);
    if b.status.code() != Some(0) {
        return Err(format!("the benchmark boot failed ({}); log: {}", b.status, b.log_path.display()));
    }
    // "bench timer <name> <value> <unit> <reference row or ->"
    let mut raw: Vec<(String, f64, String, Option<String>)> = Vec::new();
    for (_, line) in &b.lines {
        let Some(rest) = line.strip_prefix("bench timer ") else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let [name, value, unit, reference] = f[..] else {
            return Err(format!("malformed bench line {line:?}"));
        };
        let value: f64 = value.parse().map_err(|_| format!("bad value in {line:?}"))?;
        raw.push((name.into(), value, unit.into(), (reference != "-").then(|| reference.to_string())));
    }
    if raw.is_empty() {
        return Err(format!("no bench lines; log: {}", b.log_path.display()));
    }
    let value_of = |n: &str| raw.iter().find(|r| r.0 == n).map(|r| r.1);
    let mut rows = Vec::new();
    for (name, value, unit, reference) in &raw {
        let reference = match reference {
            Some(r) => Some((format!("qemu: {r}"), value_of(r).ok_or(format!("{name}: no row {r}"))?)),
            None => None,
        };
        rows.push(BenchRow { name: format!("qemu: {name}"), value: *value, unit: unit.clone(), reference });
    }
    Ok(rows)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let mut rows = model_rows();
    match qemu_rows() {
        Ok(r) => rows.extend(r),
        Err(why) => eprintln!("timer bench: QEMU rows skipped: {why}"),
    }
    print_bench_rows(&rows, json);
}
