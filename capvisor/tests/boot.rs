//! Boot test: builds the root task and the loader, packs them with the kernel at
//! `$SEL4_PREFIX` (`capvisor image`), boots the image under QEMU with a wall-clock limit
//! (`qemu/run-qemu.sh`), and checks the console and the exit status. Skips, saying why,
//! when the prefix has no kernel binary or QEMU is missing.
//!
//! The console log goes to `<target>/tmp/boot-test/console.log` (kept, and its path printed
//! on failure); each line is stamped with the wall-clock time since QEMU started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT_S: u64 = 120;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("capvisor/ is inside the workspace").to_path_buf()
}

fn work_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-test");
    std::fs::create_dir_all(&d).expect("create boot-test dir");
    d
}

/// `Some(prefix)` when a boot can run, else `None` after printing why not.
fn boot_prerequisites() -> Option<PathBuf> {
    let Some(prefix) = std::env::var_os("SEL4_PREFIX").filter(|p| !p.is_empty()).map(PathBuf::from) else {
        eprintln!("skipped: SEL4_PREFIX is not set");
        return None;
    };
    if !prefix.join("bin/kernel.elf").is_file() {
        eprintln!("skipped: {} has no bin/kernel.elf (a data-only prefix cannot boot)", prefix.display());
        return None;
    }
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    if Command::new(&qemu).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("skipped: {qemu} is not installed");
        return None;
    }
    Some(prefix)
}

struct Built {
    root_task: PathBuf,
    loader: PathBuf,
}

/// Builds the target crates once per test process, in a target directory of their own (a
/// nested cargo must not wait on the lock of the cargo running the tests).
fn build_target_crates(prefix: &Path) -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_dir = work_dir().join("cargo");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .env("SEL4_PREFIX", prefix)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["build", "--release", "--target", "aarch64-unknown-none", "-p", "root-task", "-p", "loader"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build of root-task and loader failed: {status}");
        let out = target_dir.join("aarch64-unknown-none/release");
        Built { root_task: out.join("root-task"), loader: out.join("loader") }
    })
}

fn capvisor_image(prefix: &Path, built: &Built, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capvisor"))
        .args(["image", "--root-task"])
        .arg(&built.root_task)
        .arg("--loader")
        .arg(&built.loader)
        .arg("--sel4-prefix")
        .arg(prefix)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run capvisor image")
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

    let start = Instant::now();
    let mut child = Command::new(workspace().join("qemu/run-qemu.sh"))
        .arg("--timeout")
        .arg(BOOT_TIMEOUT_S.to_string())
        .arg(&image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu/run-qemu.sh");
    let stderr = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut lines: Vec<(Duration, String)> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
        lines.push((start.elapsed(), text));
    }
    let status = child.wait().expect("wait for QEMU");
    let total = start.elapsed();
    let stderr = err_thread.join().unwrap_or_default();

    let log_path = dir.join("console.log");
    let mut log = String::new();
    for (t, l) in &lines {
        log.push_str(&format!("[{:8.3}] {l}\n", t.as_secs_f64()));
    }
    log.push_str(&format!("--- stderr ---\n{stderr}--- exit: {status} after {:.3} s\n", total.as_secs_f64()));
    std::fs::write(&log_path, &log).expect("write console log");

    let first = |marker: &str| lines.iter().find(|(_, l)| l.contains(marker)).map(|(t, _)| *t);
    let markers = [
        "capvisor loader: started at",
        "capvisor loader: entering kernel at",
        "Booting all finished, dropped to user space",
        "capvisor root task: started",
        "bootinfo: untyped=",
        "bootinfo: ram_bytes=",
        "bootinfo: largest_ram_untyped paddr=",
        "bootinfo: free_slots=",
        "bootinfo: dtb=present",
        "UT 0 paddr=",
        "selftest bootinfo: ok",
        "capvisor: ALL OK",
    ];
    let missing: Vec<&str> = markers.iter().copied().filter(|m| first(m).is_none()).collect();
    let ok = status.code() == Some(0) && missing.is_empty();
    if !ok {
        eprintln!(
            "boot failed: exit {status}, missing markers {missing:?}; console log kept at {}",
            log_path.display()
        );
    }
    assert!(missing.is_empty(), "console lacks {missing:?}; log: {}", log_path.display());
    assert_eq!(status.code(), Some(0), "QEMU exit status; log: {}", log_path.display());

    let loader = first("capvisor loader: started at").unwrap_or_default();
    let root = first("capvisor root task: started").unwrap_or_default();
    eprintln!(
        "boot time: QEMU start -> loader first line {:.3} s, -> root task first line {:.3} s, -> exit {:.3} s (log: {})",
        loader.as_secs_f64(),
        root.as_secs_f64(),
        total.as_secs_f64(),
        log_path.display()
    );
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
