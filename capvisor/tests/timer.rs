//! The timer server on the real kernel under QEMU: builds the root task with
//! `selftest-timer`, boots it, and checks every case of `root-task/src/timer/selftest.rs`
//! passed: 10^5 `now` calls monotonic and inside their own round trips, 10 ms sleeps waking
//! within 10..20 ms, 100 timeouts from 4 clients fired once each in deadline order, cancel,
//! error replies to bad requests with the server still serving, and a guest on a VCPU writing
//! timer registers without changing the server's time or timeouts. Skips, saying why, without
//! a kernel binary or QEMU. The console log is kept in `<target>/tmp/timer-test/`.
//!
//! The sleep and busy-guest cases assert wall-clock bounds (QEMU's counter follows the host's
//! clock): a host too loaded to run QEMU for 10 ms can fail them, so a run that fails only on
//! such a bound is repeated once, and both results are printed.

mod common;

use std::path::Path;

/// Cases the self-test prints, one line each.
const CASES: [&str; 6] = [
    "timer: now: ok",
    "timer: sleep: ok",
    "timer: order: ok",
    "timer: cancel: ok",
    "timer: errors: ok",
    "timer: guest: ok",
];

/// Failures that only a wall-clock bound can produce.
const TIMING: [&str; 2] = ["woke outside 10..20 ms", "later than a time slice"];

fn boot(prefix: &Path, name: &str) -> common::Boot {
    common::build_and_boot(prefix, "root-task/selftest-timer", name, 300)
}

#[test]
fn timer_server_passes_its_self_tests_on_the_real_kernel() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    let mut b = boot(&prefix, "timer-test");
    if b.status.code() != Some(0) && TIMING.iter().any(|t| b.line(t).is_some()) {
        eprintln!(
            "timer test: a wall-clock bound failed ({}); running once more (log kept at {})",
            TIMING.iter().find_map(|t| b.line(t)).unwrap_or_default(),
            b.log_path.display()
        );
        b = boot(&prefix, "timer-test-retry");
    }
    let log = b.log_path.display();
    for (_, l) in b.lines.iter().filter(|(_, l)| l.starts_with("timer:") || l.contains("FAILED")) {
        eprintln!("{l}");
    }
    let missing = b.missing(&CASES);
    assert!(missing.is_empty(), "cases missing: {missing:?}; log: {log}");
    assert!(b.line("selftest timer: ok").is_some(), "log: {log}");
    assert!(b.line("capvisor: ALL OK").is_some(), "log: {log}");
    assert_eq!(b.status.code(), Some(0), "QEMU exit status; log: {log}");
    // The server counted no failed kernel operation and answered exactly the 7 bad requests
    // with errors.
    let stats = b.line("timer: server stats:").unwrap_or_default();
    assert!(stats.contains(" errors=7 ") && stats.ends_with("kernel_errors=0"), "{stats}; log: {log}");
}
