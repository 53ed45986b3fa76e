//! Guests under capvisor on the real kernel (QEMU), and `capvisor plan` on every example
//! configuration (host only, runs everywhere).
//!
//! The QEMU tests build the test guest (`guests/test-guest`, aarch64-unknown-none), pack a
//! configuration with `capvisor vms`, build the root task with that bundle
//! (`CAPVISOR_VMS`), pack the boot image and boot it under QEMU with a time limit. They skip,
//! saying why, when `SEL4_PREFIX` has no kernel or QEMU is missing. The stamped console logs
//! stay in `<target>/tmp/vm-test/`.
//!
//! Containment depends on the kernel: one built with `KernelDebugBuild` performs seL4's debug
//! system calls for guests too, and a guest's `HVC` with `DebugHalt` in `x7` stops the whole
//! machine. The containment test reads the kernel's configuration from the prefix it boots
//! and, on such a kernel, checks that this is what happens instead.

#[path = "common/mod.rs"]
mod common;

/// The seL4 system call numbers the wild guest issues (its own copy: the guest is built
/// without a kernel prefix), checked against the kernel's XML below.
#[path = "../../guests/test-guest/src/sel4_calls.rs"]
mod guest_calls;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Boot, boot_prerequisites, work_dir, workspace};

const TIMEOUT_S: u64 = 240;
/// Time limit of a boot that is expected to stop at a guest's `DebugHalt` (debug kernels): the
/// wild guest gets there within seconds of the VMs' start.
const HALT_TIMEOUT_S: u64 = 30;

/// The seL4 API calls that fail their capability lookup in a vCPU's empty CSpace and come to
/// the VMM as capability faults when a guest's `HVC` has their number in `x7` (the others,
/// NBSend, Reply and Yield, return to the guest without a fault: seL4's `handleInvocation`
/// drops a failed non-blocking send, `Reply` with no caller and `Yield` do nothing visible).
const API_CALLS_THAT_FAULT: [&str; 5] = ["Call", "ReplyRecv", "Send", "Recv", "NBRecv"];

/// Whether the kernel at `prefix` was configured with boolean `option` on.
fn kernel_option(prefix: &Path, option: &str) -> bool {
    let k = boot_image::kconfig::Kconfig::from_prefix(prefix).unwrap_or_else(|e| panic!("{e}"));
    k.0.get(option).is_some_and(|v| v == "true")
}

/// The columns of the counters table row of `kind` printed for VM `name`, if it has one.
fn counter_row(boot: &Boot, name: &str, kind: &str) -> Option<Vec<String>> {
    let header = find_from(boot, 0, &format!("capvisor: counters of \"{name}\""))?;
    boot.lines[header + 1..]
        .iter()
        .map(|(_, l)| l)
        .take_while(|l| l.starts_with("capvisor:   "))
        .map(|l| l.split_whitespace().skip(1).map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.first().is_some_and(|k| k == kind))
}

fn boot_config(prefix: &Path, config: &str, name: &str) -> Boot {
    common::boot_vm_config(prefix, config, "vm-test", name, TIMEOUT_S)
}

/// Index of the first line at or after `from` containing `marker`.
fn find_from(boot: &Boot, from: usize, marker: &str) -> Option<usize> {
    boot.lines.iter().enumerate().skip(from).find(|(_, (_, l))| l.contains(marker)).map(|(i, _)| i)
}

/// Asserts the markers appear in this order; returns the index of the last.
fn in_order(boot: &Boot, markers: &[&str]) -> usize {
    let mut at = 0;
    for m in markers {
        match find_from(boot, at, m) {
            Some(i) => at = i + 1,
            None => panic!("no {m:?} after line {at}; log: {}", boot.log_path.display()),
        }
    }
    at - 1
}

/// The console lines of VM `name`, and the VMM's lines about it, for the report.
fn echo(boot: &Boot, name: &str) {
    for (t, l) in &boot.lines {
        if l.starts_with(&format!("[{name}]")) || l.contains(&format!("\"{name}\"")) || l.starts_with("capvisor:   ") {
            eprintln!("[{:7.3}] {l}", t.as_secs_f64());
        }
    }
}

/// The test guest's lines in order (`common::test_guest_lines`), then the root task's line
/// that its VM ended; `named`: the system has several VMs, so its lines begin with `[name] `.
fn markers(name: &str, second_vcpu: bool, named: bool) -> Vec<String> {
    let mut m = common::test_guest_lines(name, second_vcpu, named);
    m.push(format!("capvisor: VM \"{name}\" ended: powered off, status 0"));
    m
}

#[test]
fn the_test_guest_prints_ticks_starts_its_second_vcpu_and_powers_off_with_status_0() {
    let Some(prefix) = boot_prerequisites() else { return };
    // The same guest binary on either GIC: its file for the kernel's platform.
    let config = if common::prefix_gic_v3() { "test-guest-gicv3.toml" } else { "test-guest.toml" };
    let boot = boot_config(&prefix, config, "test-guest");
    let log = boot.log_path.display();
    let m = markers("test-guest", true, false);
    let refs: Vec<&str> = m.iter().map(String::as_str).collect();
    in_order(&boot, &refs);
    let last = in_order(&boot, &["capvisor: all VMs stopped, exit status 0"]);
    assert!(last > 0);
    assert_eq!(boot.status.code(), Some(0), "QEMU exit status; log: {log}");
    // The counters table: MMIO writes at 3 system calls each, measured.
    // The counters table: an MMIO write or a read into a register at 3 system calls each
    // (TCB_ReadRegisters, TCB_WriteRegisters, ReplyRecv), measured, as predicted.
    // Measured as predicted. An emulated access costs 3; a read of the real-time clock one
    // more (the call to the timer server for the time); a flash command that leaves or
    // enters read-array mode a Page_Unmap or Page_Map of the bank's frame (and a clean per
    // changed block).
    for kind in ["MmioWrite", "MmioRead"] {
        let row = boot.line(&format!("capvisor:   {kind}")).unwrap_or_else(|| panic!("no {kind} counters; log: {log}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 2], cols[cols.len() - 1], "measured and predicted {kind} cost: {row}");
        let per_exit: f64 = cols[cols.len() - 1].parse().unwrap();
        assert!(
            (3.0..=4.0).contains(&per_exit),
            "{kind}: 3 calls an access, a few more for the clock and flash: {row}"
        );
    }
    assert!(boot.line("panicked").is_none(), "log: {log}");
    echo(&boot, "test-guest");
}

#[test]
fn two_vms_run_side_by_side_and_a_wild_third_is_contained() {
    let Some(prefix) = boot_prerequisites() else { return };
    if kernel_option(&prefix, "DEBUG_BUILD") {
        eprintln!(
            "{} is a debug kernel (KernelDebugBuild): it performs seL4's debug system calls for guests, so a \
             guest's DebugHalt stops the machine; checking that instead of containment",
            prefix.display()
        );
        a_debug_kernel_halts_at_the_wild_guests_debug_halt(&prefix);
        return;
    }
    let config = if common::prefix_gic_v3() { "contained-gicv3.toml" } else { "contained.toml" };
    let boot = boot_config(&prefix, config, "contained");
    let log = boot.log_path.display();
    for (name, second) in [("test-guest", true), ("test-guest-b", false)] {
        let m = markers(name, second, true);
        let refs: Vec<&str> = m.iter().map(String::as_str).collect();
        in_order(&boot, &refs);
        assert!(counter_row(&boot, name, "HvcSel4Call").is_none(), "{name} put nothing in x7; log: {log}");
    }
    let all_numbers = guest_calls::API.len() + guest_calls::DEBUG.len();
    let mut wild = vec![
        "[test-guest-wild] wild: start".to_string(),
        "test-guest-wild: vCPU 0: read at 0xa000000".to_string(),
        "[test-guest-wild] wild: 7 data aborts, 1 instruction aborts, 1 undefined".to_string(),
        "[test-guest-wild] wild: 9 of 9 unknown calls answered".to_string(),
        format!(
            "[test-guest-wild] wild: svc with each of the {all_numbers} seL4 call numbers in x7: {all_numbers} taken at EL1 by this guest"
        ),
        format!(
            "[test-guest-wild] wild: hvc with the {} seL4 API call numbers in x7: survived",
            guest_calls::API.len()
        ),
    ];
    // Every debug and benchmark number through HVC: reported to the VMM as an unknown system
    // call on this kernel, answered as PSCI, and the guest went on.
    for (name, n) in guest_calls::DEBUG {
        wild.push(format!("[test-guest-wild] wild: hvc x7={n} {name}: answered as PSCI"));
    }
    let d = guest_calls::DEBUG.len();
    wild.push(format!(
        "[test-guest-wild] wild: {d} of {d} seL4 debug and benchmark numbers through hvc answered as PSCI; continuing"
    ));
    wild.push("[test-guest-wild] wild: contained: yes".to_string());
    wild.push("capvisor: VM \"test-guest-wild\" ended: powered off, status 0".to_string());
    let refs: Vec<&str> = wild.iter().map(String::as_str).collect();
    in_order(&boot, &refs);
    // The VMM's counters saw each of them: the debug numbers as unknown system calls, the API
    // numbers whose lookup failed as capability faults, each answered with one ReplyRecv or
    // with a register write, as predicted.
    let row = counter_row(&boot, "test-guest-wild", "HvcSel4Call")
        .unwrap_or_else(|| panic!("no HvcSel4Call counters for the wild VM; log: {log}"));
    let expected = guest_calls::DEBUG.len() + API_CALLS_THAT_FAULT.len();
    assert_eq!(row.get(1).map(String::as_str), Some(expected.to_string().as_str()), "HvcSel4Call exits: {row:?}");
    assert_eq!(row.get(3), row.get(4), "measured and predicted system calls per exit: {row:?}");
    // Logged once per address: 0x5000_0000 was written twice.
    let writes = boot.lines.iter().filter(|(_, l)| l.contains("write at 0x50000000")).count();
    assert_eq!(writes, 1, "log: {log}");
    // The two good VMs really ran at the same time: their lines interleave.
    let first_a = find_from(&boot, 0, "[test-guest] tick 1").unwrap();
    let last_a = find_from(&boot, 0, "[test-guest] tick 10").unwrap();
    let b_between = boot.lines[first_a..last_a].iter().any(|(_, l)| l.starts_with("[test-guest-b] tick"));
    assert!(b_between, "test-guest-b ticked while test-guest did; log: {log}");
    in_order(&boot, &["capvisor: all VMs stopped, exit status 0"]);
    assert_eq!(boot.status.code(), Some(0), "log: {log}");
    assert!(boot.line("panicked").is_none(), "log: {log}");
    echo(&boot, "test-guest-wild");
}

/// On a debug kernel: the wild guest gets through the calls before `DebugHalt` (the kernel
/// performs `DebugPutChar` and `DebugDumpScheduler` itself, so they come back unanswered by
/// the VMM), then the kernel halts the whole machine at its `DebugHalt`: no VM finishes and
/// QEMU runs into its time limit.
fn a_debug_kernel_halts_at_the_wild_guests_debug_halt(prefix: &Path) {
    let config = if common::prefix_gic_v3() { "contained-gicv3.toml" } else { "contained.toml" };
    let boot = common::boot_vm_config(prefix, config, "vm-test", "contained-debug", HALT_TIMEOUT_S);
    let log = boot.log_path.display();
    let halt = guest_calls::DEBUG.iter().position(|(name, _)| *name == "DebugHalt").expect("DebugHalt in the list");
    let mut m: Vec<String> = vec!["[test-guest-wild] wild: start".into()];
    for (name, n) in &guest_calls::DEBUG[..halt] {
        m.push(format!("[test-guest-wild] wild: hvc x7={n} {name}: came back with x0 0x84000000, not from the VMM"));
    }
    m.push("Debug halt syscall from user thread".into());
    let refs: Vec<&str> = m.iter().map(String::as_str).collect();
    in_order(&boot, &refs);
    assert!(boot.line("wild: contained:").is_none(), "the wild guest went on past DebugHalt; log: {log}");
    assert!(boot.line("capvisor: all VMs stopped").is_none(), "the VMM went on past DebugHalt; log: {log}");
    assert_eq!(boot.status.code(), Some(124), "QEMU stopped by its time limit; log: {log}");
}

/// The wild guest's seL4 system call numbers are those of the kernel at `SEL4_PREFIX`, name
/// for name and number for number (its `syscall.xml` through the same code generator that
/// numbers the `sel4` crate's calls). Host only.
#[test]
fn the_wild_guests_sel4_call_numbers_are_the_kernels() {
    let prefix = sel4_codegen::Prefix::from_env().unwrap_or_else(|e| panic!("{e}"));
    let config = sel4_codegen::KernelConfig::load(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let calls = sel4_codegen::syscalls::Syscalls::load(&prefix, &config).unwrap_or_else(|e| panic!("{e}"));
    let kernel: Vec<(&str, i64)> = calls.all.iter().map(|c| (c.name.as_str(), c.number)).collect();
    let guest: Vec<(&str, i64)> = guest_calls::API.iter().chain(guest_calls::DEBUG.iter()).copied().collect();
    assert_eq!(guest, kernel, "guests/test-guest/src/sel4_calls.rs against {}", prefix.root().display());
    for name in API_CALLS_THAT_FAULT {
        assert!(guest_calls::API.iter().any(|(n, _)| *n == name), "{name}");
    }
}

/// `capvisor plan` on every example configuration (the Raspberry Pi's, rpi4-*.toml, with
/// `--platform rpi4`): the setup runs on the model, the stage-2 tables agree with the book,
/// and teardown gives everything back. Host only.
#[test]
fn plan_runs_on_every_example_configuration() {
    let configs = workspace().join("configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&configs)
        .expect("configs/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        // The Raspberry Pi's files (rpi4-*.toml) are planned on the Pi's recorded boot.
        let mut plan = Command::new(env!("CARGO_BIN_EXE_capvisor"));
        plan.arg("plan").arg(f);
        if f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rpi4-")) {
            plan.args(["--platform", "rpi4"]);
        }
        let out = plan.output().expect("run capvisor plan");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {}\n{text}", f.display(), String::from_utf8_lossy(&out.stderr));
        let sys = vm_config::parse_system_file(f).unwrap_or_else(|e| panic!("{e}"));
        for vm in &sys.vms {
            assert!(text.contains(&format!("guest-physical memory of {} (id {}", vm.name, vm.id)), "{text}");
        }
        let agree = text.lines().filter(|l| l.contains("stage-2 check:") && l.ends_with("book and seL4 tables agree"));
        assert_eq!(agree.count(), sys.vms.len(), "{}:\n{text}", f.display());
        let vcpus: u64 = sys.vms.iter().map(|v| u64::from(v.cpu_num)).sum();
        let tcb = text.lines().find(|l| l.trim_start().starts_with("Tcb ")).unwrap_or_default();
        assert_eq!(tcb.split_whitespace().last(), Some(vcpus.to_string().as_str()), "{}: {tcb}", f.display());
        assert!(text.contains("TcbConfigure"), "{text}");
        assert!(text.contains("teardown: every VM object and byte returned"), "{text}");
    }
    // The platform option: the same QEMU description given as a file.
    let platform = workspace().join("platforms/qemu-arm-virt/bootinfo.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_capvisor"))
        .args(["plan", "--platform"])
        .arg(&platform)
        .arg(configs.join("two-vms.toml"))
        .output()
        .expect("run capvisor plan");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&platform.display().to_string()));
    // A bad configuration is refused with the file named.
    let bad = work_dir("vm-test").join("bad.toml");
    std::fs::write(&bad, "[base]\nid = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_capvisor")).arg("plan").arg(&bad).output().expect("run capvisor plan");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"), "{}", String::from_utf8_lossy(&out.stderr));
}
