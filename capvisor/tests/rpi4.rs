//! Raspberry Pi 4 suite: the test guest (configs/rpi4-test-guest.toml) under capvisor on a
//! kernel built for seL4's bcm2711 (platforms/rpi4), booted from the flat binary on QEMU's
//! raspi4b (QEMU 9.0 or later: `scripts/qemu-backports` fetches one; qemu/run-qemu.sh finds
//! it), as the board's firmware would boot it. Checks the guest's console to its clean
//! power-off and the run's exit status.
//!
//! The kernel: `$CAPVISOR_RPI4_PREFIX`, else `$SEL4_PREFIX` when it was built for rpi4 (its
//! `capvisor-platform`), else this suite builds one with CMake from seL4's source
//! (`$SEL4_SOURCE`, else ../shared/sel4/seL4-16.0.0.tar.gz beside the repository) in
//! `<target>/tmp/rpi4/build`. When none of that is possible, or no QEMU has raspi4b, the test
//! cannot run: skipped, and a failure under CI (`CI=true` or `CAPVISOR_REQUIRE_KERNEL=1`).
//!
//! The console log goes to `<target>/tmp/rpi4/test-guest.log`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const BOOT_TIMEOUT_S: u64 = 240;

/// Says why the test cannot run: a failure in CI, else a recorded skip.
fn cannot_run(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the Raspberry Pi 4 suite cannot run (CI=true makes that a failure): {why}");
    }
    sel4_codegen::skip::cannot_run(why);
}

fn platform_of(prefix: &Path) -> Option<String> {
    let text = std::fs::read_to_string(prefix.join("capvisor-platform")).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// A kernel prefix built for rpi4, or why there is none.
fn rpi4_prefix(work: &Path) -> Result<PathBuf, String> {
    if let Some(p) = sel4_codegen::prefix::env_path("CAPVISOR_RPI4_PREFIX") {
        return match platform_of(&p).as_deref() {
            Some("rpi4") if p.join("bin/kernel.elf").is_file() => Ok(p),
            other => Err(format!("CAPVISOR_RPI4_PREFIX={}: a kernel built for {other:?}, not rpi4", p.display())),
        };
    }
    if let Some(p) = sel4_codegen::prefix::env_path("SEL4_PREFIX")
        && platform_of(&p).as_deref() == Some("rpi4")
        && p.join("bin/kernel.elf").is_file()
    {
        return Ok(p);
    }
    let source = match std::env::var_os("SEL4_SOURCE").filter(|s| !s.is_empty()) {
        Some(s) => PathBuf::from(s),
        None => common::workspace().join("../shared/sel4/seL4-16.0.0.tar.gz"),
    };
    if !source.exists() {
        return Err(format!(
            "no kernel built for rpi4 (set CAPVISOR_RPI4_PREFIX) and no seL4 source to build one at {}",
            source.display()
        ));
    }
    // Configuring builds the kernel (kernel/sel4-kernel.cmake); nothing else is needed here.
    let build = work.join("build");
    let out = Command::new("cmake")
        .current_dir(common::workspace())
        .args(["-G", "Ninja", "-B"])
        .arg(&build)
        .arg(format!("-DSEL4_SOURCE={}", source.display()))
        .args(["-DCAPVISOR_PLATFORM=rpi4", "-DCAPVISOR_VMS_CONFIG="])
        .output()
        .map_err(|e| format!("cmake: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the rpi4 kernel with cmake failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(build.join("sel4/release/prefix"))
}

#[test]
fn test_guest_runs_to_power_off_on_raspi4b() {
    let work = common::work_dir("rpi4");
    let prefix = match rpi4_prefix(&work) {
        Ok(p) => p,
        Err(why) => return cannot_run(&why),
    };
    // capvisor vms predicts placement from the kernel build it is given.
    let bundle = work.join("test-guest.bundle");
    let out = Command::new(env!("CARGO_BIN_EXE_capvisor"))
        .env("SEL4_PREFIX", &prefix)
        .arg("vms")
        .arg(common::workspace().join("configs/rpi4-test-guest.toml"))
        .arg("--search")
        .arg(common::test_guest("rpi4"))
        .arg("-o")
        .arg(&bundle)
        .output()
        .expect("run capvisor vms");
    assert!(out.status.success(), "capvisor vms failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let built = common::build_with_bundle(&prefix, &bundle, &work.join("cargo"));
    let image = work.join("test-guest.elf");
    let dtb = prefix.join("support/kernel.dtb");
    let o = common::capvisor_image_with(&prefix, &built, &image, &["--dtb".as_ref(), dtb.as_os_str()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "capvisor image failed:\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("kernel ELF segment 0 [0x1000.."), "bcm2711's kernel sits at 0x1000:\n{stdout}");

    let raw = work.join("test-guest.elf.bin");
    let b = common::run_qemu_on("rpi4", 1, &raw, BOOT_TIMEOUT_S, &[], &[], &work, "test-guest");
    let log = b.log_path.display();
    if b.status.code() == Some(2) {
        // run-qemu.sh's usage status: no QEMU with raspi4b (its message is in the log).
        let text = std::fs::read_to_string(&b.log_path).unwrap_or_default();
        return cannot_run(&format!("qemu/run-qemu.sh --platform rpi4 refused to start: {log}\n{text}"));
    }
    let mut expected = vec![
        // The loader moved itself from the firmware's 0x80000 and found the packed tree.
        "capvisor loader: started at 0x48000000, EL2",
        "capvisor loader: device tree packed in the image",
        "(copied) at [0x1000..",
        // The root task's console is UART0, found through /soc's ranges.
        "capvisor root task: started",
        "selftest bootinfo: ok",
    ];
    let guest = common::test_guest_lines("test-guest", true, false);
    expected.extend(guest.iter().map(String::as_str));
    expected.extend([
        "capvisor: VM \"test-guest\" ended: powered off, status 0",
        "capvisor: all VMs stopped, exit status 0",
    ]);
    let missing = b.missing(&expected);
    assert!(missing.is_empty(), "missing console lines {missing:?}; log: {log}");
    assert_eq!(b.status.code(), Some(0), "exit status; log: {log}");
}
