//! The multicore host: seL4 built for two or more cores (`cmake -DCAPVISOR_NUM_CPUS=2`), QEMU
//! with as many (`qemu/run-qemu.sh --cpus 2`), capvisor's loader starting every core (PSCI
//! `CPU_ON`), and each vCPU pinned to the physical core its `phys_cpu_ids` entry names while
//! the VMM on core 0 handles every vCPU's faults.
//!
//! - the root task's self-tests reach `capvisor: ALL OK` with every core up;
//! - the test guest (`configs/test-guest.toml`, two vCPUs) runs its whole script with its
//!   vCPUs on cores 0 and 1;
//! - Linux with two vCPUs (`configs/linux-smp.toml`) reaches its shell with both CPUs online
//!   (`nproc` is 2), each on its own physical core.
//!
//! Needs `SEL4_PREFIX` to be a kernel built for two or more cores (the project's kernel build
//! records its platform and cores in the prefix's `capvisor-platform`), and for the Linux
//! test the artifacts (`guests/linux/fetch-artifacts`). A test that cannot run says
//! `skipped:`, and fails instead under CI (`CI=true`, or `CAPVISOR_REQUIRE_KERNEL=1`).
//! Logs go to `<target>/tmp/smp-test/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[macro_use]
mod common;
use common::shell::Shell;
use common::workspace;

/// QEMU with two cores under TCG on a busy two-core host is slow: generous limits.
const BOOT_TIMEOUT_S: u64 = 900;
const LINUX_UP: Duration = Duration::from_secs(600);
const COMMAND: Duration = Duration::from_secs(120);

/// `Ok` when the test can run; else `Err(why)`, which fails the test under CI.
fn can_run(r: Result<(), String>) -> Result<(), String> {
    match r {
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("cannot run under CI=true: {why}"),
        r => r,
    }
}

/// The multicore kernel at `$SEL4_PREFIX` and its cores, or why there is none.
fn smp_prefix() -> Result<(PathBuf, u32), String> {
    let prefix = sel4_codegen::prefix::env_path("SEL4_PREFIX").ok_or("SEL4_PREFIX is not set")?;
    if !prefix.join("bin/kernel.elf").is_file() {
        return Err(format!("{} has no bin/kernel.elf (a data-only prefix cannot boot)", prefix.display()));
    }
    let (_, cpus) = common::prefix_platform();
    if cpus < 2 {
        return Err(format!(
            "SEL4_PREFIX={} is a kernel for {cpus} core: build one with `cmake -G Ninja -B build-smp \
             -DCAPVISOR_NUM_CPUS=2` and set SEL4_PREFIX to build-smp/sel4/release/prefix",
            prefix.display()
        ));
    }
    Ok((prefix, cpus))
}

/// The prefix and cores, or `None` after reporting why the test cannot run.
fn prerequisites() -> Option<(PathBuf, u32)> {
    match can_run(smp_prefix().map(|_| ())) {
        Ok(()) => smp_prefix().ok(),
        Err(why) => {
            sel4_codegen::skip::cannot_run(&why);
            None
        }
    }
}

/// The loader's line once it has started every core.
fn loader_line(cpus: u32) -> String {
    let ids: Vec<String> = (0..cpus).map(|i| format!("{i:#x}")).collect();
    format!("capvisor loader: {cpus} cores entering the kernel, MPIDR {} (core 0 last)", ids.join(" "))
}

/// Asserts `markers` appear in `lines` in this order.
fn in_order(lines: &[String], markers: &[String], log: &Path) {
    let mut at = 0;
    for m in markers {
        match lines.iter().skip(at).position(|l| l.contains(m.as_str())) {
            Some(i) => at += i + 1,
            None => panic!("no {m:?} after line {at}; log: {}", log.display()),
        }
    }
}

#[test]
fn the_self_tests_pass_with_every_core_started() {
    let Some((prefix, cpus)) = prerequisites() else { return };
    let boot = common::build_and_boot(&prefix, "", "smp-boot", BOOT_TIMEOUT_S);
    let lines: Vec<String> = boot.lines.iter().map(|(_, l)| l.clone()).collect();
    in_order(&lines, &[loader_line(cpus), "capvisor: ALL OK".into()], &boot.log_path);
    assert_eq!(boot.status.code(), Some(0), "log: {}", boot.log_path.display());
}

#[test]
fn the_test_guest_runs_with_its_vcpus_on_cores_0_and_1() {
    let Some((prefix, cpus)) = prerequisites() else { return };
    let boot = common::boot_vm_config(&prefix, "test-guest.toml", "smp-test", "test-guest", BOOT_TIMEOUT_S);
    let lines: Vec<String> = boot.lines.iter().map(|(_, l)| l.clone()).collect();
    let mut m = vec![
        loader_line(cpus),
        format!("capvisor: VM 0: vCPUs on physical cores [0, 1] of {cpus}; faults handled on core 0"),
    ];
    m.extend(common::test_guest_lines("test-guest", true, false));
    m.push("capvisor: VM \"test-guest\" ended: powered off, status 0".into());
    m.push("capvisor: all VMs stopped, exit status 0".into());
    in_order(&lines, &m, &boot.log_path);
    assert!(boot.line("panicked").is_none(), "log: {}", boot.log_path.display());
    assert_eq!(boot.status.code(), Some(0), "log: {}", boot.log_path.display());
}

/// `capvisor vms` of `configs/<config>`, the root task built with it, `capvisor image`.
fn image_of(prefix: &Path, config: &str, name: &str) -> PathBuf {
    common::config_image(prefix, &workspace().join("configs").join(config), None, &common::work_dir("smp-test"), name)
}

/// Boots `image` on the prefix's machine with its cores; the shell once Linux is up.
pub fn boot_linux(image: &Path, name: &str) -> Result<Shell, String> {
    let (platform, cpus) = common::prefix_platform();
    let mut cmd = Command::new(workspace().join("qemu/run-qemu.sh"));
    cmd.args(["--timeout", &BOOT_TIMEOUT_S.to_string(), "--platform", &platform, "--cpus", &cpus.to_string()])
        .arg(image);
    let mut sh = Shell::start(cmd, common::work_dir("smp-test").join(format!("{name}.log")));
    sh.until("Linux's init marker", LINUX_UP, |l| l.contains("capvisor-init: ready"))?;
    sh.ready(COMMAND)?;
    Ok(sh)
}

#[test]
fn linux_with_two_vcpus_on_two_cores_has_both_cpus_online() {
    let Some((prefix, cpus)) = prerequisites() else { return };
    let art = common::fetched(
        "guests/linux/artifacts",
        &["Image", "initramfs.cpio.gz", "disk.ext4"],
        "guests/linux/fetch-artifacts",
    );
    let art = can_run(art.map(|_| ()));
    need!(art);
    let image = image_of(&prefix, "linux-smp.toml", "linux-smp");
    let mut sh = boot_linux(&image, "linux-smp").unwrap_or_else(|e| panic!("{e}"));
    let log = sh.log.clone();
    let (out, st) = sh.run("nproc", COMMAND).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((st, out.iter().any(|l| l.trim() == "2")), (0, true), "nproc: {out:?}; log: {}", log.display());
    let (out, _) = sh.run("cat /sys/devices/system/cpu/online", COMMAND).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.iter().any(|l| l.trim() == "0-1"), "online CPUs: {out:?}; log: {}", log.display());
    // Both CPUs take timer interrupts: each column of arch_timer counts.
    let (out, _) = sh.run("grep arch_timer /proc/interrupts", COMMAND).unwrap_or_else(|e| panic!("{e}"));
    let counts: Vec<u64> = out
        .iter()
        .find(|l| l.contains("arch_timer"))
        .map(|l| l.split_whitespace().skip(1).take(2).filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert!(counts.len() == 2 && counts.iter().all(|&n| n > 0), "arch_timer: {out:?}; log: {}", log.display());
    sh.type_line("exit 0");
    let (status, lines) = sh.finish(Duration::from_secs(BOOT_TIMEOUT_S));
    let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    let m = [
        loader_line(cpus),
        format!("capvisor: VM 0: vCPUs on physical cores [0, 1] of {cpus}; faults handled on core 0"),
        "capvisor-init: status 0".into(),
        "capvisor: VM \"linux-smp\" ended: powered off, status 0".into(),
        "capvisor: all VMs stopped, exit status 0".into(),
    ];
    in_order(&lines, &m, &log);
    assert_eq!(status.code(), Some(0), "log: {}", log.display());
}
