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

/// hal-sel4's time client (what `current_time_nanos` calls) against the timer server's
/// decision code on the model: the same wire protocol, one `seL4_Call` per reading and no
/// other kernel entry, times monotonic and exact for the counter readings.
#[test]
fn hal_current_time_nanos_is_one_call_to_the_timer_server() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use sel4::{CNodeSlot, Kernel, ObjectBlueprint, Op, Slot, SlotRegion};
    use timer_server::clock::{Clock, Frequency, ticks_to_ns};
    use timer_server::protocol::badge;
    use timer_server::server::Core;

    let mut m = sel4_model::Model::qemu_arm_virt();
    let (ut, _) = m.untyped_slots().into_iter().find(|(_, d)| !d.is_device && d.size_bits >= 16).expect("RAM untyped");
    let empty = m.bootinfo().empty();
    let ep = empty.start;
    m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, ep, 1).expect("endpoint");
    let client = Slot::new(ep.index() + 1);
    m.cnode_mint(CNodeSlot::root(client), ep, timer_server::setup::CALL_RIGHTS, badge::client(3)).expect("mint");
    let freq = Frequency::new(19_200_000).expect("frequency");
    let counter = Arc::new(AtomicU64::new(0));
    let core = Arc::new(Mutex::new(Core::new(Clock::new(freq, 64, 0).expect("clock"))));
    core.lock().expect("core").add_client(3, false);
    let (c, k) = (core.clone(), counter.clone());
    m.serve(
        ep.cap(),
        Box::new(move |b, msg| c.lock().expect("core").handle(b, msg, k.load(Ordering::Relaxed)).reply.expect("reply")),
    );
    let mut config = hal_sel4::HalConfig::new(SlotRegion { start: Slot::new(client.index() + 1), end: empty.end });
    config.timer = Some(client.cap());
    let Ok(mut hal) = hal_sel4::Sel4Hal::new(m, std::iter::empty(), config) else { panic!("Sel4Hal on the model") };
    for step in 1..=500u64 {
        let raw = step * 1_000_003;
        counter.store(raw, Ordering::Relaxed);
        hal.kernel_mut().reset_counters();
        assert_eq!(hal.current_time_nanos(), ticks_to_ns(raw, freq));
        let c = hal.kernel().counters();
        assert_eq!((c.get(Op::Call), c.total()), (1, 1), "one Call, nothing else");
    }
}
