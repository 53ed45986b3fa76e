//! Raspberry Pi 4 suite: the test guest (configs/rpi4-test-guest.toml) and Linux
//! (configs/rpi4-linux.toml, artifacts from guests/linux/fetch-artifacts) under capvisor on a
//! kernel built for seL4's bcm2711 (platforms/rpi4), booted from the flat binary on QEMU's
//! raspi4b (QEMU 9.0 or later: `scripts/qemu-backports` fetches one; qemu/run-qemu.sh finds
//! it), as the board's firmware would boot it. Checks the guests' consoles to their clean
//! power-off and the run's exit status.
//!
//! The kernel: `$CAPVISOR_RPI4_PREFIX`, else `$SEL4_PREFIX` when it was built for rpi4 (its
//! `capvisor-platform`), else this suite builds one with CMake from seL4's source
//! (`$SEL4_SOURCE`, else ../shared/sel4/seL4-16.0.0.tar.gz beside the repository) in
//! `<target>/tmp/rpi4/build`. When none of that is possible, or no QEMU has raspi4b, the test
//! cannot run: skipped, and a failure under CI (`CI=true` or `CAPVISOR_REQUIRE_KERNEL=1`).
//!
//! The console logs go to `<target>/tmp/rpi4/test-guest.log` and `<target>/tmp/rpi4-linux/linux.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

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
    prefix.join("capvisor-platform").is_file().then(|| common::platform_of(prefix).0)
}

/// The tests take turns: one kernel build, one root-task build and one QEMU at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// [`find_rpi4_prefix`] once per process (the first caller may build the kernel).
fn rpi4_prefix() -> Result<PathBuf, String> {
    static PREFIX: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PREFIX.get_or_init(|| find_rpi4_prefix(&common::work_dir("rpi4"))).clone()
}

/// A kernel prefix built for rpi4, or why there is none.
fn find_rpi4_prefix(work: &Path) -> Result<PathBuf, String> {
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

/// Packs `config` (`capvisor vms` with the test guest on the search path), builds the root
/// task with it for `prefix`, packs the image with the kernel build's device tree and boots
/// the flat binary on raspi4b; `None` (after saying why) when no QEMU there has raspi4b.
fn boot_on_raspi4b(prefix: &Path, config: &Path, work: &Path, name: &str) -> Option<common::Boot> {
    // capvisor vms predicts placement from the kernel build it is given.
    let bundle = work.join(format!("{name}.bundle"));
    common::vms_bundle(prefix, config, Some(common::test_guest("rpi4")), &bundle);
    let built = common::build_with_bundle(prefix, &bundle, &work.join("cargo"));
    let image = work.join(format!("{name}.elf"));
    let dtb = prefix.join("support/kernel.dtb");
    let o = common::capvisor_image_with(prefix, &built, &image, &["--dtb".as_ref(), dtb.as_os_str()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "capvisor image failed:\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("kernel ELF segment 0 [0x1000.."), "bcm2711's kernel sits at 0x1000:\n{stdout}");

    let raw = work.join(format!("{name}.elf.bin"));
    let b = common::run_qemu_on("rpi4", 1, &raw, BOOT_TIMEOUT_S, &[], &[], work, name);
    if b.status.code() == Some(2) {
        // run-qemu.sh's usage status: no QEMU with raspi4b (its message is in the log).
        let text = std::fs::read_to_string(&b.log_path).unwrap_or_default();
        cannot_run(&format!("qemu/run-qemu.sh --platform rpi4 refused to start: {}\n{text}", b.log_path.display()));
        return None;
    }
    Some(b)
}

/// Lines every boot on the Pi shows before its VMs run.
const BOOT_LINES: &[&str] = &[
    // The loader moved itself from the firmware's 0x80000 and found the packed tree.
    "capvisor loader: loaded at 0x80000: moved to the link address 0x48000000",
    "capvisor loader: started at 0x48000000, EL2",
    "capvisor loader: device tree packed in the image",
    "(copied) at [0x1000..",
    // The root task's console is UART0, found through /soc's ranges; its memory check reads
    // both RAM banks of the tree.
    "capvisor root task: started",
    "selftest bootinfo: ok",
];

#[test]
fn test_guest_runs_to_power_off_on_raspi4b() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work = common::work_dir("rpi4");
    let prefix = match rpi4_prefix() {
        Ok(p) => p,
        Err(why) => return cannot_run(&why),
    };
    let config = common::workspace().join("configs/rpi4-test-guest.toml");
    let Some(b) = boot_on_raspi4b(&prefix, &config, &work, "test-guest") else { return };
    let log = b.log_path.display();
    let mut expected = BOOT_LINES.to_vec();
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

/// Linux (configs/rpi4-linux.toml, its initramfs's `interrupts` test instead of the shell)
/// boots on the Pi and its architected timer interrupt counts up, through capvisor's vGIC
/// and the GIC-400's list registers; it powers off with status 0.
#[test]
fn linux_counts_timer_interrupts_on_raspi4b() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work = common::work_dir("rpi4-linux");
    let prefix = match rpi4_prefix() {
        Ok(p) => p,
        Err(why) => return cannot_run(&why),
    };
    let art = match common::fetched(
        "guests/linux/artifacts",
        &["Image", "initramfs.cpio.gz"],
        "guests/linux/fetch-artifacts",
    ) {
        Ok(a) => a,
        Err(why) => return cannot_run(&why),
    };
    let text = std::fs::read_to_string(common::workspace().join("configs/rpi4-linux.toml")).expect("read the config");
    let text = text.replace("../guests/linux/artifacts", &art.display().to_string());
    let text = text.replace("capvisor.test=shell", "capvisor.test=interrupts");
    assert!(text.contains("capvisor.test=interrupts"), "the config's command line changed");
    let config = work.join("rpi4-linux.toml");
    std::fs::write(&config, text).expect("write the config");
    let Some(b) = boot_on_raspi4b(&prefix, &config, &work, "linux") else { return };
    let log = b.log_path.display();
    let mut expected = BOOT_LINES.to_vec();
    expected.extend([
        "capvisor-init: ready test=interrupts",
        "test-interrupts: arch_timer ",
        "capvisor-init: status 0",
        "capvisor: VM \"linux\" ended: powered off, status 0",
    ]);
    let missing = b.missing(&expected);
    assert!(missing.is_empty(), "missing console lines {missing:?}; log: {log}");
    assert_eq!(b.status.code(), Some(0), "exit status; log: {log}");
}
