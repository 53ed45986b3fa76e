//! Boot test: builds the root task and the loader, packs them with the kernel at
//! `$SEL4_PREFIX` (`capvisor image`), boots the image under QEMU with a wall-clock limit
//! (`qemu/run-qemu.sh`), and checks the console and the exit status. Skips, saying why,
//! when the prefix has no kernel binary or QEMU is missing.
//!
//! The console log goes to `<target>/tmp/boot-test/console.log` (kept, and its path printed
//! on failure); each line is stamped with the wall-clock time since QEMU started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;
use common::{Boot, Built, boot_prerequisites, capvisor_image_with, cargo_build};

const BOOT_TIMEOUT_S: u64 = 120;

fn work_dir() -> PathBuf {
    common::work_dir("boot-test")
}

/// Builds the target crates once per test process, in a target directory of their own (a
/// nested cargo must not wait on the lock of the cargo running the tests).
fn build_target_crates(prefix: &Path) -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(prefix, &work_dir().join("cargo"), "root-task/selftest-bootinfo"))
}

fn capvisor_image(prefix: &Path, built: &Built, out: &Path) -> std::process::Output {
    capvisor_image_with(prefix, built, out, &[])
}

/// Boots `image` with `qemu/run-qemu.sh` and extra QEMU arguments, log in the boot-test dir.
fn run_qemu(image: &Path, timeout_s: u64, extra_qemu: &[&str], name: &str) -> Boot {
    common::run_qemu_with(image, timeout_s, extra_qemu, &work_dir(), name)
}

/// Console markers of a good boot, loader to root task result. The root task writes through
/// its own UART driver on every kernel build; only a kernel with `KernelPrinting` adds its own
/// boot line.
fn good_boot(prefix: &Path) -> Vec<&'static str> {
    let mut m = vec!["capvisor loader: started at", "capvisor loader: entering kernel at"];
    if kernel_option(prefix, "PRINTING") {
        m.push("Booting all finished, dropped to user space");
    }
    m.extend([
        "capvisor root task: started",
        "capvisor root task: console: PL011 registers at",
        "bootinfo: untyped=",
        "bootinfo: ram_bytes=",
        "bootinfo: largest_ram_untyped paddr=",
        "bootinfo: free_slots=",
        "bootinfo: dtb=present",
        "UT 0 paddr=",
        "selftest bootinfo: ok",
        "capvisor: ALL OK",
    ]);
    m
}

/// Whether the kernel at `prefix` was configured with boolean `option` on.
fn kernel_option(prefix: &Path, option: &str) -> bool {
    let k = boot_image::kconfig::Kconfig::from_prefix(prefix).unwrap_or_else(|e| panic!("{e}"));
    k.0.get(option).is_some_and(|v| v == "true")
}

fn assert_good_boot(prefix: &Path, boot: &Boot) {
    let markers = good_boot(prefix);
    let missing = boot.missing(&markers);
    if !missing.is_empty() || boot.status.code() != Some(0) {
        eprintln!(
            "boot failed: exit {}, missing markers {missing:?}; console log kept at {}",
            boot.status,
            boot.log_path.display()
        );
    }
    assert!(missing.is_empty(), "console lacks {missing:?}; log: {}", boot.log_path.display());
    assert_eq!(boot.status.code(), Some(0), "QEMU exit status; log: {}", boot.log_path.display());
}

#[test]
fn boots_to_all_ok_under_qemu() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let dir = work_dir();
    let image = dir.join("image.elf");
    let out = capvisor_image(&prefix, built, &image);
    assert!(out.status.success(), "capvisor image failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("image.elf.bin").is_file(), "no flat binary next to the ELF");

    let boot = run_qemu(&image, BOOT_TIMEOUT_S, &[], "console");
    assert_good_boot(&prefix, &boot);
    // QEMU placed every segment from the ELF; the loader only checked them.
    let log = boot.log_path.display();
    assert!(boot.first("(in place) at [").is_some(), "log: {log}");
    assert!(boot.lines.iter().all(|(_, l)| !l.contains("(copied)")), "log: {log}");
    assert!(boot.first("device tree at the base of RAM").is_some(), "QEMU's DTB was not used");
    let loader = boot.first("capvisor loader: started at").unwrap_or_default();
    let root = boot.first("capvisor root task: started").unwrap_or_default();
    eprintln!(
        "boot time: QEMU start -> loader first line {:.3} s, -> root task first line {:.3} s, -> exit {:.3} s (log: {})",
        loader.as_secs_f64(),
        root.as_secs_f64(),
        boot.total.as_secs_f64(),
        boot.log_path.display()
    );
}

#[test]
fn boots_with_a_device_tree_packed_into_the_image() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let image = work_dir().join("packed-dtb.elf");
    let dtb = prefix.join("support/kernel.dtb");
    let out = capvisor_image_with(&prefix, built, &image, &["--dtb".as_ref(), dtb.as_os_str()]);
    assert!(out.status.success(), "capvisor image --dtb failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let boot = run_qemu(&image, BOOT_TIMEOUT_S, &[], "packed-dtb");
    assert_good_boot(&prefix, &boot);
    assert!(boot.first("device tree packed in the image").is_some(), "log: {}", boot.log_path.display());
}

#[test]
fn boots_the_flat_binary_loaded_where_the_tool_says() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let image = work_dir().join("flat.elf");
    // Loaded raw, as U-Boot `go` would, QEMU places no DTB: pack one.
    let dtb = prefix.join("support/kernel.dtb");
    let out = capvisor_image_with(&prefix, built, &image, &["--dtb".as_ref(), dtb.as_os_str()]);
    assert!(out.status.success(), "capvisor image --dtb failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let addr = stdout
        .split("load at ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no load address in:\n{stdout}"));
    let boot = common::run_qemu_script(
        &work_dir().join("flat.elf.bin"),
        BOOT_TIMEOUT_S,
        &["--raw", addr],
        &[],
        &work_dir(),
        "flat",
    );
    assert_good_boot(&prefix, &boot);
    // The segments travel in the payload: the loader checked and copied every one.
    let log = boot.log_path.display();
    assert!(boot.first("(copied) at [").is_some(), "log: {log}");
    assert!(boot.lines.iter().all(|(_, l)| !l.contains("(in place)")), "log: {log}");
}

#[test]
fn a_root_task_panic_prints_message_and_location_and_ends_the_run_with_101() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = cargo_build(&prefix, &work_dir().join("cargo-panic"), "root-task/selftest-panic");
    let image = work_dir().join("panic.elf");
    let out = capvisor_image(&prefix, &built, &image);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let boot = run_qemu(&image, 3, &[], "panic");
    let log = boot.log_path.display();
    let line = boot
        .lines
        .iter()
        .map(|(_, l)| l.as_str())
        .find(|l| l.starts_with("root task panicked at "))
        .unwrap_or_else(|| panic!("no panic report; log: {log}"));
    assert!(line.contains("root-task/src/selftest.rs:"), "location: {line}");
    assert!(line.contains("selftest-panic: deliberate panic with"), "message: {line}");
    // Nothing after it: no result line; the run ends at once with the panic status (the
    // time limit is 3 s: an exit code of 124 would mean it kept running).
    assert!(boot.first("capvisor: ALL OK").is_none() && boot.first("capvisor: FAILED").is_none(), "log: {log}");
    assert!(boot.first("TCB_Suspend on itself returned").is_none(), "log: {log}");
    assert_eq!(boot.status.code(), Some(101), "log: {log}");
}

/// A root task whose platform names no UART cannot bring up its console: the runtime writes
/// why (and anything printed before) through semihosting, which QEMU puts on its standard
/// error, and ends the run with `sel4_root_task::NO_CONSOLE_EXIT_STATUS` (102) instead of
/// running on unseen. The device tree packed into the image is the kernel's with its PL011's
/// compatible string renamed.
#[test]
fn a_root_task_without_a_uart_says_why_through_semihosting_and_ends_the_run_with_102() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let mut dtb = std::fs::read(prefix.join("support/kernel.dtb")).expect("read the kernel's DTB");
    let (from, to) = (b"arm,pl011", b"arm,xl011");
    let mut renamed = 0;
    for i in 0..dtb.len().saturating_sub(from.len()) {
        if &dtb[i..i + from.len()] == from {
            dtb[i..i + to.len()].copy_from_slice(to);
            renamed += 1;
        }
    }
    assert!(renamed > 0, "no arm,pl011 in the kernel's DTB");
    let dtb_path = work_dir().join("no-uart.dtb");
    std::fs::write(&dtb_path, &dtb).expect("write the DTB");
    let image = work_dir().join("no-uart.elf");
    let out = capvisor_image_with(&prefix, built, &image, &["--dtb".as_ref(), dtb_path.as_os_str()]);
    assert!(out.status.success(), "capvisor image --dtb failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let boot = run_qemu(&image, 10, &[], "no-uart");
    let log = std::fs::read_to_string(&boot.log_path).expect("read the log");
    let stderr = log.split("--- stderr ---").nth(1).unwrap_or_default();
    assert!(
        stderr
            .contains("sel4-root-task: no console: the root task found no UART: no arm,pl011 node in the device tree"),
        "the reason on QEMU's stderr; log: {}",
        boot.log_path.display()
    );
    assert!(boot.first("capvisor root task: started").is_none(), "log: {}", boot.log_path.display());
    assert_eq!(boot.status.code(), Some(102), "log: {}", boot.log_path.display());
}

/// A loader that must stop: it prints why and halts, so QEMU runs until the time limit.
fn assert_loader_halts(boot: &Boot, why: &str) {
    assert!(boot.first(why).is_some(), "no {why:?} in the console; log: {}", boot.log_path.display());
    assert!(boot.first("capvisor loader: halted").is_some(), "log: {}", boot.log_path.display());
    assert!(boot.first("Bootstrapping kernel").is_none(), "kernel entered; log: {}", boot.log_path.display());
    assert_eq!(boot.status.code(), Some(124), "expected the time limit; log: {}", boot.log_path.display());
}

#[test]
fn loader_halts_with_a_message_when_entered_at_el1() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let image = work_dir().join("el1.elf");
    assert!(capvisor_image(&prefix, built, &image).status.success());
    let boot = run_qemu(&image, 3, &["-machine", "virtualization=off"], "el1");
    assert_loader_halts(&boot, "entered at EL1: seL4 with hypervisor support must be started at EL2");
}

#[test]
fn loader_halts_with_a_message_without_a_device_tree() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let image = work_dir().join("no-dtb.elf");
    let out = capvisor_image_with(&prefix, built, &image, &["--dtb-probe".as_ref(), "none".as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let boot = run_qemu(&image, 3, &[], "no-dtb");
    assert_loader_halts(&boot, "capvisor loader: no device tree: x0=0x0 holds none");
}

#[test]
fn loader_halts_naming_a_segment_corrupted_in_place() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    let image = work_dir().join("corrupt.elf");
    assert!(capvisor_image(&prefix, built, &image).status.success());
    // The image's last PT_LOAD is a root-task segment that QEMU places at its destination;
    // one flipped bit there must stop the loader before the kernel runs.
    let mut bytes = std::fs::read(&image).expect("read the image");
    let (offset, dest) = {
        let elf = boot_image::Elf::parse(&bytes).expect("the image is an ELF");
        let seg = elf.load_segments().last().expect("segments");
        assert!(seg.filesz > 0 && seg.paddr != elf.entry(), "{seg:?}");
        (seg.offset + seg.filesz / 2, seg.paddr)
    };
    bytes[offset as usize] ^= 0x10;
    std::fs::write(&image, &bytes).expect("write the image");
    let boot = run_qemu(&image, 3, &[], "corrupt");
    let why = format!("to {dest:#x}: checksum of its bytes at its destination");
    assert_loader_halts(&boot, &why);
    let line = boot.line(&why).unwrap_or_default();
    assert!(line.contains("capvisor loader: payload: copy "), "{line}");
}

#[test]
fn image_tool_refuses_a_root_task_built_for_another_kernel_configuration() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    // A prefix whose configuration differs in one option, otherwise the same kernel.
    let fake = work_dir().join("other-prefix");
    for rel in ["bin", "libsel4/include/kernel", "libsel4/include/sel4", "support"] {
        std::fs::create_dir_all(fake.join(rel)).expect("create fake prefix");
    }
    for rel in
        ["bin/kernel.elf", "libsel4/include/sel4/gen_config.json", "support/platform_gen.json", "support/kernel.dtb"]
    {
        std::fs::copy(prefix.join(rel), fake.join(rel)).expect("copy prefix file");
    }
    let config =
        std::fs::read_to_string(prefix.join("libsel4/include/kernel/gen_config.json")).expect("read gen_config");
    assert!(config.contains("\"RETYPE_FAN_OUT_LIMIT\": \"256\""), "expected the recorded fan-out limit");
    let changed = config.replace("\"RETYPE_FAN_OUT_LIMIT\": \"256\"", "\"RETYPE_FAN_OUT_LIMIT\": \"64\"");
    std::fs::write(fake.join("libsel4/include/kernel/gen_config.json"), changed).expect("write gen_config");

    let out = capvisor_image(&fake, built, &work_dir().join("mismatch.elf"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "image built despite a configuration mismatch");
    assert!(stderr.contains(".capvisor.kconfig"), "{stderr}");
    assert!(stderr.contains("RETYPE_FAN_OUT_LIMIT: root task built with 256, kernel has 64"), "{stderr}");
    assert!(stderr.contains(&built.root_task.display().to_string()), "names the root task file: {stderr}");
}

#[test]
fn image_tool_names_a_non_aarch64_kernel() {
    let Some(prefix) = boot_prerequisites() else { return };
    let built = build_target_crates(&prefix);
    // This test binary is a host (x86_64 or other) ELF: not a kernel the loader can enter.
    let host_elf = std::env::current_exe().expect("test executable path");
    let out = Command::new(env!("CARGO_BIN_EXE_capvisor"))
        .args(["image", "--kernel"])
        .arg(&host_elf)
        .arg("--root-task")
        .arg(&built.root_task)
        .arg("--loader")
        .arg(&built.loader)
        .arg("--sel4-prefix")
        .arg(&prefix)
        .arg("-o")
        .arg(work_dir().join("host-kernel.elf"))
        .output()
        .expect("run capvisor image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    if cfg!(target_arch = "aarch64") {
        return;
    }
    assert!(stderr.contains(&host_elf.display().to_string()), "{stderr}");
    assert!(stderr.contains("kernel ELF: e_machine="), "{stderr}");
    assert!(stderr.contains("need 183 (AArch64)"), "{stderr}");
}
