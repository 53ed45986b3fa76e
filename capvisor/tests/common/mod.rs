//! Helpers for tests and benchmarks that boot the root task under QEMU: build the target
//! crates with chosen features, pack an image with `capvisor image`, boot it with
//! `qemu/run-qemu.sh` under a time limit and keep the stamped console log.
//!
//! Shared by the boot, timer, HAL and VM tests and the benchmarks (`#[path]`-included
//! there).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};

pub mod shell;

/// The value of a `Result<_, String>` that says why a test cannot run, or: print
/// `skipped: <why>` (a failure under `CAPVISOR_REQUIRE_KERNEL=1`) and return from the test.
/// For suites that include this module with `#[macro_use]`.
#[allow(unused_macros)]
macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => {
                sel4_codegen::skip::cannot_run(&why);
                return;
            }
        }
    };
}
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("capvisor/ is inside the workspace").to_path_buf()
}

/// `<target>/tmp/<name>`, created.
pub fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).expect("create work dir");
    d
}

/// `Some(prefix)` when a boot can run, else `None` after printing why not.
pub fn boot_prerequisites() -> Option<PathBuf> {
    let Some(prefix) = sel4_codegen::prefix::env_path("SEL4_PREFIX") else {
        sel4_codegen::skip::cannot_run("SEL4_PREFIX is not set");
        return None;
    };
    if !prefix.join("bin/kernel.elf").is_file() {
        sel4_codegen::skip::cannot_run(&format!(
            "{} has no bin/kernel.elf (a data-only prefix cannot boot)",
            prefix.display()
        ));
        return None;
    }
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    if Command::new(&qemu).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        sel4_codegen::skip::cannot_run(&format!("{qemu} is not installed"));
        return None;
    }
    Some(prefix)
}

/// The built root task and loader.
pub struct Built {
    /// The root task ELF.
    pub root_task: PathBuf,
    /// The loader ELF.
    pub loader: PathBuf,
}

/// Builds the root task (with cargo `features`) and the loader, release, into `target_dir` (a
/// directory of its own: a nested cargo must not wait on the lock of the cargo running us).
pub fn cargo_build(prefix: &Path, target_dir: &Path, features: &str) -> Built {
    build_root_task(prefix, target_dir, None, features)
}

/// The one cargo build of the root task and the loader behind [`cargo_build`] and
/// [`build_with_bundle_features`]: release, into `target_dir`, embedding `bundle`
/// (`CAPVISOR_VMS`) when given, with cargo `features` (none when empty).
fn build_root_task(prefix: &Path, target_dir: &Path, bundle: Option<&Path>, features: &str) -> Built {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace()).env("SEL4_PREFIX", prefix).env("CARGO_TARGET_DIR", target_dir).args([
        "build",
        "--release",
        "--target",
        "aarch64-unknown-none",
        "-p",
        "root-task",
        "-p",
        "loader",
    ]);
    if let Some(b) = bundle {
        cmd.env("CAPVISOR_VMS", b);
    }
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let status = cmd.status().expect("run cargo");
    let with = bundle.map_or(String::new(), |b| format!(" with {}", b.display()));
    assert!(
        status.success(),
        "cargo build of the root task{with} (features: {features:?}) and loader failed: {status}"
    );
    let out = target_dir.join("aarch64-unknown-none/release");
    Built { root_task: out.join("root-task"), loader: out.join("loader") }
}

/// A `KEY=value` of `platforms/<platform>/platform.env`, if the line is there.
pub fn platform_value(platform: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(workspace().join("platforms").join(platform).join("platform.env")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

/// `capvisor image` of the built crates with the kernel at `prefix`, into `out`, with `extra`
/// arguments; the tool's output, whether it succeeded or not. A platform whose image carries
/// the kernel build's device tree (`IMAGE_DTB=kernel`: the Raspberry Pi 4) gets it packed
/// unless `extra` names one.
pub fn capvisor_image_with(
    prefix: &Path,
    built: &Built,
    out: &Path,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    let platform = std::fs::read_to_string(prefix.join("capvisor-platform")).unwrap_or_default();
    let platform = platform.split_whitespace().next().unwrap_or("qemu-arm-virt");
    let dtb = prefix.join("support/kernel.dtb");
    let mut packed: Vec<&std::ffi::OsStr> = Vec::new();
    if platform_value(platform, "IMAGE_DTB").as_deref() == Some("kernel") && !extra.iter().any(|a| *a == "--dtb") {
        packed.extend(["--dtb".as_ref(), dtb.as_os_str()]);
    }
    Command::new(env!("CARGO_BIN_EXE_capvisor"))
        .args(["image", "--root-task"])
        .arg(&built.root_task)
        .arg("--loader")
        .arg(&built.loader)
        .arg("--sel4-prefix")
        .arg(prefix)
        .arg("-o")
        .arg(out)
        .args(extra)
        .args(packed)
        .output()
        .expect("run capvisor image")
}

/// `capvisor image` of the built crates with the kernel at `prefix`, into `out`; panics with
/// the tool's message if it fails.
pub fn capvisor_image(prefix: &Path, built: &Built, out: &Path) {
    let o = capvisor_image_with(prefix, built, out, &[]);
    assert!(o.status.success(), "capvisor image failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// A finished QEMU run: console lines stamped with the time since start, exit status.
pub struct Boot {
    /// Console lines with their time since QEMU started.
    pub lines: Vec<(Duration, String)>,
    /// QEMU's exit status (the root task's, or 124 on the time limit).
    pub status: std::process::ExitStatus,
    /// Wall time from QEMU's start to its exit.
    pub total: Duration,
    /// Where the stamped log was kept.
    pub log_path: PathBuf,
}

impl Boot {
    /// The first line containing `marker`.
    pub fn line(&self, marker: &str) -> Option<&str> {
        self.lines.iter().map(|(_, l)| l.as_str()).find(|l| l.contains(marker))
    }

    /// The time since QEMU started of the first line containing `marker`.
    pub fn first(&self, marker: &str) -> Option<Duration> {
        self.lines.iter().find(|(_, l)| l.contains(marker)).map(|(t, _)| *t)
    }

    /// The markers with no line.
    pub fn missing<'m>(&self, markers: &[&'m str]) -> Vec<&'m str> {
        markers.iter().copied().filter(|m| self.line(m).is_none()).collect()
    }
}

/// Boots `image` with `qemu/run-qemu.sh`, writing the stamped console to `<dir>/<name>.log`.
pub fn run_qemu(image: &Path, timeout_s: u64, dir: &Path, name: &str) -> Boot {
    run_qemu_with(image, timeout_s, &[], dir, name)
}

/// [`run_qemu`] with extra QEMU arguments.
pub fn run_qemu_with(image: &Path, timeout_s: u64, extra_qemu: &[&str], dir: &Path, name: &str) -> Boot {
    run_qemu_script(image, timeout_s, &[], extra_qemu, dir, name)
}

/// The platform and core count the kernel of `$SEL4_PREFIX` was built for, from the
/// `capvisor-platform` file the project's kernel build writes into its prefix
/// (`qemu-arm-virt-gicv3 2`); a prefix without one (a kernel a user installed) is taken as
/// `qemu-arm-virt` with one core, the default build.
pub fn prefix_platform() -> (String, u32) {
    match sel4_codegen::prefix::env_path("SEL4_PREFIX") {
        Some(prefix) => platform_of(&prefix),
        None => ("qemu-arm-virt".to_string(), 1),
    }
}

/// [`prefix_platform`] of the kernel at `prefix`.
pub fn platform_of(prefix: &Path) -> (String, u32) {
    let default = ("qemu-arm-virt".to_string(), 1);
    let file = prefix.join("capvisor-platform");
    let Ok(text) = std::fs::read_to_string(&file) else { return default };
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|n| n.parse().ok()), words.next()) {
        (Some(name), Some(cpus), None) => (name.to_string(), cpus),
        _ => panic!("{}: want `PLATFORM CPUS`, got {text:?}", file.display()),
    }
}

/// `--platform NAME --cpus N` for `qemu/run-qemu.sh`: the machine the kernel of
/// `$SEL4_PREFIX` was built for ([`prefix_platform`]).
pub fn platform_args() -> Vec<String> {
    let (name, cpus) = prefix_platform();
    vec!["--platform".to_string(), name, "--cpus".to_string(), cpus.to_string()]
}

/// Whether the platform of `$SEL4_PREFIX` ([`prefix_platform`]) has a GICv3: its
/// `platforms/NAME/platform.env` says `GIC_VERSION=3`.
pub fn prefix_gic_v3() -> bool {
    let (name, _) = prefix_platform();
    let env = workspace().join("platforms").join(&name).join("platform.env");
    let text = std::fs::read_to_string(&env).unwrap_or_else(|e| panic!("{}: {e}", env.display()));
    text.lines().any(|l| l.trim() == "GIC_VERSION=3")
}

/// [`run_qemu_with`] with options for `qemu/run-qemu.sh` itself (`--raw ADDR`). The machine
/// is the one the kernel was built for ([`prefix_platform`]).
pub fn run_qemu_script(
    image: &Path,
    timeout_s: u64,
    script_opts: &[&str],
    extra_qemu: &[&str],
    dir: &Path,
    name: &str,
) -> Boot {
    let (platform, cpus) = prefix_platform();
    run_qemu_on(&platform, cpus, image, timeout_s, script_opts, extra_qemu, dir, name)
}

/// [`run_qemu_script`] on a named platform (`qemu/run-qemu.sh --platform`) with `cpus` cores.
/// A platform that boots the flat binary (`QEMU_BOOT=raw`) is given `IMAGE.bin` for an
/// `IMAGE` that is `capvisor image`'s ELF.
#[allow(clippy::too_many_arguments)]
pub fn run_qemu_on(
    platform: &str,
    cpus: u32,
    image: &Path,
    timeout_s: u64,
    script_opts: &[&str],
    extra_qemu: &[&str],
    dir: &Path,
    name: &str,
) -> Boot {
    let raw;
    let image = match platform_value(platform, "QEMU_BOOT").as_deref() {
        Some("raw") if image.extension().is_some_and(|e| e == "elf") => {
            raw = PathBuf::from(format!("{}.bin", image.display()));
            raw.as_path()
        }
        _ => image,
    };
    let start = Instant::now();
    let mut child = Command::new(workspace().join("qemu/run-qemu.sh"))
        .arg("--timeout")
        .arg(timeout_s.to_string())
        .args(["--platform", platform, "--cpus", &cpus.to_string()])
        .args(script_opts)
        .arg(image)
        .arg("--")
        .args(extra_qemu)
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
    let log_path = dir.join(format!("{name}.log"));
    let mut log = String::new();
    for (t, l) in &lines {
        log.push_str(&format!("[{:8.3}] {l}\n", t.as_secs_f64()));
    }
    log.push_str(&format!("--- stderr ---\n{stderr}--- exit: {status} after {:.3} s\n", total.as_secs_f64()));
    std::fs::write(&log_path, &log).expect("write console log");
    Boot { lines, status, total, log_path }
}

/// Builds with `features`, packs and boots: the whole path, in `<target>/tmp/<name>/`.
pub fn build_and_boot(prefix: &Path, features: &str, name: &str, timeout_s: u64) -> Boot {
    let dir = work_dir(name);
    let built = cargo_build(prefix, &dir.join("cargo"), features);
    let image = dir.join("image.elf");
    capvisor_image(prefix, &built, &image);
    run_qemu(&image, timeout_s, &dir, name)
}

/// Boots of VM configurations take turns in a process (they share a root-task build directory;
/// a bundle change rebuilds only the root task).
static VM_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the test guest (`guests/test-guest`) once per process into `<work>/guest`;
/// returns the directory holding its ELF.
pub fn test_guest(work: &str) -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let target = work_dir(work).join("guest");
        let status = Command::new(cargo())
            .current_dir(workspace().join("guests/test-guest"))
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--target", "aarch64-unknown-none"])
            .status()
            .expect("run cargo for the test guest");
        assert!(status.success(), "building guests/test-guest failed: {status}");
        target.join("aarch64-unknown-none/release")
    })
}

/// Packs `configs/<config>` with the test guest (`capvisor vms`), builds the root task with
/// that bundle, packs the image and boots it, all in `<target>/tmp/<work>/`.
pub fn boot_vm_config(prefix: &Path, config: &str, work: &str, name: &str, timeout_s: u64) -> Boot {
    boot_vm_config_with(prefix, config, work, name, timeout_s, "")
}

/// [`boot_vm_config`] with the root task's cargo `features` (comma-separated; besides its
/// defaults).
pub fn boot_vm_config_with(
    prefix: &Path,
    config: &str,
    work: &str,
    name: &str,
    timeout_s: u64,
    features: &str,
) -> Boot {
    let _turn = VM_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work_dir(work);
    let bundle = dir.join(format!("{name}.bundle"));
    vms_bundle(prefix, &workspace().join("configs").join(config), Some(test_guest(work)), &bundle);
    let built = build_with_bundle_features(prefix, &bundle, &dir.join("cargo"), features);
    let image = dir.join(format!("{name}.elf"));
    capvisor_image(prefix, &built, &image);
    run_qemu(&image, timeout_s, &dir, name)
}

/// QEMU `virt` booting Linux (`Image` and `initramfs.cpio.gz` from `art`) itself, with the
/// device tree capvisor generates for `vm` written to `dtb`: the machine the VM file describes
/// (its vCPUs, RAM and GIC version), without capvisor. QEMU loads the kernel at 0x4000_0000,
/// so `vm`'s RAM must start there; it rewrites /chosen's initrd range with where it put the
/// initrd.
pub fn direct_linux(art: &Path, vm: &vm_config::VmConfig, dtb: &Path) -> Result<Command, String> {
    let ram: u64 = vm.memory.iter().map(|m| m.range.size_bytes).sum();
    let blob = vm_runner::fdt::generate(vm, None).map_err(|e| format!("device tree of {}: {e:?}", vm.name))?;
    std::fs::write(dtb, blob).map_err(|e| format!("{}: {e}", dtb.display()))?;
    let machine = match vm.gic_version() {
        vm_config::GicVersion::V2 => "virt,virtualization=on,gic-version=2",
        vm_config::GicVersion::V3 => "virt,virtualization=on,gic-version=3",
    };
    let mut cmd = Command::new(std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into()));
    cmd.args(["-machine", machine, "-cpu", "cortex-a57"])
        .args(["-smp", &vm.cpu_num.to_string(), "-m", &format!("{}M", ram >> 20)])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(art.join("Image"))
        .arg("-initrd")
        .arg(art.join("initramfs.cpio.gz"))
        .arg("-dtb")
        .arg(dtb);
    Ok(cmd)
}

/// `capvisor vms CONFIG [--search GUESTS] -o BUNDLE`, placement predicted for the kernel at
/// `prefix`; panics with the tool's message when it refuses the file.
pub fn vms_bundle(prefix: &Path, config: &Path, search: Option<&Path>, bundle: &Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capvisor"));
    cmd.env("SEL4_PREFIX", prefix).arg("vms").arg(config);
    if let Some(dir) = search {
        cmd.arg("--search").arg(dir);
    }
    let out = cmd.arg("-o").arg(bundle).output().expect("run capvisor vms");
    assert!(out.status.success(), "capvisor vms {}:\n{}", config.display(), String::from_utf8_lossy(&out.stderr));
}

/// The bootable image `DIR/NAME.elf` of `config` for the kernel at `prefix`: [`vms_bundle`],
/// the root task built with the bundle (in `DIR/cargo`), `capvisor image`.
pub fn config_image(prefix: &Path, config: &Path, search: Option<&Path>, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the image's folder");
    let bundle = dir.join(format!("{name}.bundle"));
    vms_bundle(prefix, config, search, &bundle);
    let built = build_with_bundle(prefix, &bundle, &dir.join("cargo"));
    let image = dir.join(format!("{name}.elf"));
    capvisor_image(prefix, &built, &image);
    image
}

/// Builds the root task embedding `bundle` (`CAPVISOR_VMS`) and the loader, release, into
/// `target_dir`.
pub fn build_with_bundle(prefix: &Path, bundle: &Path, target_dir: &Path) -> Built {
    build_with_bundle_features(prefix, bundle, target_dir, "")
}

/// [`build_with_bundle`] with the root task's cargo `features` (none when empty).
pub fn build_with_bundle_features(prefix: &Path, bundle: &Path, target_dir: &Path, features: &str) -> Built {
    build_root_task(prefix, target_dir, Some(bundle), features)
}

/// One benchmark row: what was measured and, for a ratio, what it is compared with.
pub struct BenchRow {
    /// Row name.
    pub name: String,
    /// The measurement.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The row or bound the ratio is taken against: its name and value.
    pub reference: Option<(String, f64)>,
}

/// Prints `rows` as a table, or with `json` one object per row:
/// `{"name", "value", "unit", "reference", "ratio", "reference_name"}`: `reference` is the
/// value the ratio is taken against (a number, in the row's unit), `reference_name` names the
/// row or bound it comes from; all three are null for rows without one.
pub fn print_bench_rows(rows: &[BenchRow], json: bool) {
    if json {
        for r in rows {
            let (reference, ratio, reference_name) = match &r.reference {
                Some((n, v)) => (
                    serde_json::Value::from(*v),
                    serde_json::Value::from(r.value / v),
                    serde_json::Value::from(n.as_str()),
                ),
                None => (serde_json::Value::Null, serde_json::Value::Null, serde_json::Value::Null),
            };
            let obj = serde_json::json!({
                "name": r.name, "value": r.value, "unit": r.unit, "reference": reference, "ratio": ratio,
                "reference_name": reference_name,
            });
            println!("{obj}");
        }
        return;
    }
    let w_name = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let w_ref = rows.iter().filter_map(|r| r.reference.as_ref().map(|(n, _)| n.len())).max().unwrap_or(9).max(9);
    println!("{:<w_name$} {:>12} {:<8} {:<w_ref$} {:>8}", "name", "value", "unit", "reference", "ratio");
    for r in rows {
        let (reference, ratio) = match &r.reference {
            Some((n, v)) => (n.as_str(), format!("{:.2}", r.value / v)),
            None => ("-", "-".into()),
        };
        println!("{:<w_name$} {:>12.3} {:<8} {:<w_ref$} {:>8}", r.name, r.value, r.unit, reference, ratio);
    }
}

/// `dir` (under the workspace) once it holds every one of `files`, running the fetch script
/// `script` (under the workspace; it fetches from Debian's registry, as root) the first time,
/// unless `CAPVISOR_FETCH=0`; or why not.
pub fn fetched(dir: &str, files: &[&str], script: &str) -> Result<PathBuf, String> {
    let dir = workspace().join(dir);
    let have = |d: &Path| files.iter().all(|f| d.join(f).is_file());
    if have(&dir) {
        return Ok(dir);
    }
    if std::env::var("CAPVISOR_FETCH").is_ok_and(|v| v == "0") {
        return Err(format!("no {} and CAPVISOR_FETCH=0 (run {script})", dir.display()));
    }
    let out = Command::new(workspace().join(script))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if !out.status.success() || !have(&dir) {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        return Err(format!("{script} failed ({}): {last}", out.status));
    }
    Ok(dir)
}

/// The normal-mode test guest's console lines, in order (`guests/test-guest/README.md`):
/// `second_vcpu` when its VM has two vCPUs; `named` when the system has several VMs, so its
/// lines begin with `[name] `.
pub fn test_guest_lines(name: &str, second_vcpu: bool, named: bool) -> Vec<String> {
    let p = |s: &str| if named { format!("[{name}] {s}") } else { s.to_string() };
    let cpus = if second_vcpu { 2 } else { 1 };
    // A GICv3 distributor's TYPER adds IDbits (10-bit INTIDs) and A3V.
    let v3_bits = if prefix_gic_v3() { (9 << 19) | (1 << 24) } else { 0 };
    let mut m = vec![
        p("UART ok: vCPU 0, mpidr 0x80000000, PSCI version 0x10000"),
        p(&format!("GICD_TYPER {:#x}: 128 interrupt lines, {cpus} CPUs", 3 | ((cpus - 1) << 5) | v3_bits)),
        p("flash: CFI query, word programmed and read back, block erased"),
    ];
    for i in 1..=10 {
        m.push(p(&format!("tick {i}")));
    }
    m.push(p("10 timer ticks"));
    if second_vcpu {
        m.push(p("vCPU 1 up: context 0x5ec0, mpidr 0x80000001"));
        m.push(p("vCPU 1: SGI 1 taken"));
        m.push(p("second vCPU up, SGI 1 delivered to it"));
    } else {
        m.push(p("no second vCPU (CPU_ON: invalid parameters)"));
    }
    m.push(p("rtc: ok, running"));
    m.push(p("SYSTEM_OFF status 0"));
    m
}
