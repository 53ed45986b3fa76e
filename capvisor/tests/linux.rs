//! Linux guest tests: Debian's arm64 kernel with capvisor's initramfs
//! (`guests/linux/fetch-artifacts`), driven through its console.
//!
//! Two kinds:
//! - **Direct**: the kernel boots under QEMU itself with the device tree capvisor generates
//!   for `configs/linux*.toml` (`-dtb`), so the generated tree is checked by the real
//!   kernel: CPUs brought up through PSCI, the GIC, the timer, the PL011 and the
//!   virtio-mmio disk all found and working. Needs QEMU and the artifacts.
//! - **Under capvisor**: the same VM files booted by the root task; needs in addition a
//!   kernel at `$SEL4_PREFIX/bin/kernel.elf` and a root task that runs VMs.
//!
//! The VM files are those of the kernel's platform (`$SEL4_PREFIX`'s `capvisor-platform`):
//! `configs/linux*.toml` on a GICv2, their twins `configs/linux*-gicv3.toml` on a GICv3, whose
//! direct boots run QEMU with `gic-version=3`.
//!
//! Every check types commands on the console and reads their answers: `uname -a`,
//! `/proc/cpuinfo`, `/proc/interrupts` (the timer counts up), the disk mounted and a file
//! read back, and `exit 0`, after which `/init` prints `capvisor-init: status 0` and powers
//! off. Artifacts missing from the cache are fetched (Debian's registry, as root) unless
//! `CAPVISOR_FETCH=0`; without them or QEMU a test prints `skipped: <why>` and passes.
//! Console logs go to `<target>/tmp/linux-test/<name>.log`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use vm_config::{GuestRange, MapType, VmConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const MARKER: &str = "capvisor-init: ready";
/// The kernel the artifacts hold (fetch-artifacts pins it).
const KERNEL_RELEASE: &str = "6.1.0-50-arm64";

#[macro_use]
mod common;
use common::workspace;

fn work_dir() -> PathBuf {
    common::work_dir("linux-test")
}

fn qemu() -> String {
    std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into())
}

/// The artifacts directory (`guests/linux/artifacts`), fetching it once if needed, or why
/// not.
fn artifacts() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if Command::new(qemu()).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(format!("{} is not installed", qemu()));
        }
        common::fetched(
            "guests/linux/artifacts",
            &["Image", "initramfs.cpio.gz", "disk.ext4"],
            "guests/linux/fetch-artifacts",
        )
    })
    .clone()
}

/// What the console reader sees: a finished line, or the unfinished line as it stands after
/// a read (a prompt, an echo while typing).
enum Seen {
    Line(String),
    Partial(String),
}

/// `line` as a line of VM `vm` without its name, or `None` when it is another VM's (named
/// otherwise). Unnamed lines count: once the other VMs stop, the one left writes without
/// its name.
fn strip_name<'l>(vm: Option<&str>, line: &'l str) -> Option<&'l str> {
    let Some(vm) = vm else { return Some(line) };
    match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((name, rest)) if name == vm => Some(rest),
        Some((name, _)) if !name.contains(' ') => None,
        _ => Some(line),
    }
}

/// A running guest: its console as lines, and its input.
struct Console {
    /// Under capvisor with several VMs, the VM whose lines (`[name] ...`) commands read;
    /// `None` for QEMU alone or a single VM (whose lines carry no name).
    vm: Option<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Seen>,
    lines: Vec<String>,
    /// The console's unfinished line, as last seen.
    partial: String,
    log: PathBuf,
    start: Instant,
}

impl Console {
    fn start(mut cmd: Command, name: &str) -> Console {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let (tx, rx) = channel();
        let mut stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    if b == b'\n' {
                        let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                        line.clear();
                        if tx.send(Seen::Line(text)).is_err() {
                            return;
                        }
                    } else {
                        line.push(b);
                    }
                }
                if !line.is_empty() && tx.send(Seen::Partial(String::from_utf8_lossy(&line).into_owned())).is_err() {
                    return;
                }
            }
            if !line.is_empty() {
                let _ = tx.send(Seen::Line(String::from_utf8_lossy(&line).into_owned()));
            }
        });
        let stdin = child.stdin.take();
        Console {
            vm: None,
            child,
            stdin,
            rx,
            lines: Vec::new(),
            partial: String::new(),
            log: work_dir().join(format!("{name}.log")),
            start: Instant::now(),
        }
    }

    fn save(&self) {
        let mut text = self.lines.join("\n");
        text.push('\n');
        let _ = std::fs::write(&self.log, text);
    }

    /// Reads lines until one satisfies `done`; returns the lines read by this call.
    fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Seen::Partial(p)) => self.partial = p,
                Ok(Seen::Line(line)) => {
                    self.partial.clear();
                    self.lines.push(line.clone());
                    let finished = done(&line);
                    got.push(line);
                    if finished {
                        self.save();
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    self.save();
                    let _ = self.child.kill();
                    panic!(
                        "waiting for {what}: {} after {:.1} s; console log: {}",
                        if got.is_empty() { "nothing" } else { "not seen" },
                        self.start.elapsed().as_secs_f64(),
                        self.log.display()
                    );
                }
            }
        }
    }

    /// Waits until the shell reads what is typed: a line typed while it starts can be lost
    /// (its line editor sets the terminal up), so `echo` is typed until it answers.
    /// [`strip_name`] for [`Console::vm`].
    fn strip<'l>(&self, line: &'l str) -> Option<&'l str> {
        strip_name(self.vm.as_deref(), line)
    }

    fn ready(&mut self) {
        let end = Instant::now() + COMMAND_TIMEOUT;
        loop {
            self.type_line("echo @@ready@@");
            let step = Instant::now() + Duration::from_millis(700);
            while let Ok(seen) = self.rx.recv_timeout(step.saturating_duration_since(Instant::now())) {
                let Seen::Line(line) = seen else { continue };
                self.lines.push(line.clone());
                if self.strip(&line).is_some_and(|l| l.starts_with("@@ready@@")) {
                    self.save();
                    return;
                }
            }
            if Instant::now() > end {
                self.save();
                let _ = self.child.kill();
                panic!("the shell does not answer; console log: {}", self.log.display());
            }
        }
    }

    /// Waits until the console's unfinished line satisfies `done` (a prompt, an echo: text
    /// no newline has followed yet).
    fn until_partial(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.partial) {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Seen::Partial(p)) => self.partial = p,
                Ok(Seen::Line(line)) => {
                    self.partial.clear();
                    self.lines.push(line);
                }
                Err(_) => {
                    self.save();
                    let _ = self.child.kill();
                    panic!(
                        "waiting for {what} on the unfinished line (it is {:?}) after {:.1} s; console log: {}",
                        self.partial,
                        self.start.elapsed().as_secs_f64(),
                        self.log.display()
                    );
                }
            }
        }
        self.lines.push(format!("{} (unfinished)", self.partial));
        self.save();
        self.lines.pop();
    }

    /// Types bytes as they are: no newline added.
    fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("console input open");
        stdin.write_all(bytes).and_then(|()| stdin.flush()).unwrap();
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console input open");
        stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n")).and_then(|()| stdin.flush()).unwrap();
    }

    /// Lines of the VM commands go to, without the VM's prefix.
    fn guest_lines(&self, got: Vec<String>) -> Vec<String> {
        got.iter().filter_map(|l| self.strip(l)).map(str::to_string).collect()
    }

    /// Reads guest lines (of [`Console::vm`]) until one satisfies `done`.
    fn until_guest(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let vm = self.vm.clone();
        let got = self.until(what, timeout, |l| strip_name(vm.as_deref(), l).is_some_and(&done));
        self.guest_lines(got)
    }

    /// Runs a shell command and returns its output lines and exit status. The end is
    /// found by a line that starts with a per-call tag, which the echo of the typed
    /// command (after the prompt) never does.
    fn run(&mut self, cmd: &str) -> (Vec<String>, i32) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tag = format!("@@end{}@@", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.type_line(&format!("{cmd}; echo {tag} $?"));
        let got = self.until_guest(&format!("the end of `{cmd}`"), COMMAND_TIMEOUT, |l| l.starts_with(&tag));
        let status = got.last().and_then(|l| l.strip_prefix(&tag)).and_then(|s| s.trim().parse().ok()).unwrap_or(-1);
        // Output lines: those after the echoed command line.
        let echo = got.iter().position(|l| l.contains(&format!("echo {tag}"))).map_or(0, |i| i + 1);
        (got[echo..got.len() - 1].to_vec(), status)
    }

    /// Types `exit STATUS`, waits for init's status line and for QEMU to end.
    fn exit(mut self, status: i32) -> (i32, std::process::ExitStatus, Vec<String>) {
        self.type_line(&format!("exit {status}"));
        let got = self.until_guest("init's status line", COMMAND_TIMEOUT, |l| l.contains("capvisor-init: status"));
        let reported = got
            .last()
            .and_then(|l| l.rsplit("capvisor-init: status ").next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1);
        let (qemu_status, lines) = self.wait_end();
        (reported, qemu_status, lines)
    }

    /// Closes the input and waits for QEMU to end; returns its status and every line.
    fn wait_end(mut self) -> (std::process::ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let end = Instant::now() + BOOT_TIMEOUT;
        let qemu_status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("QEMU did not end after the guest powered off; log: {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(seen) = self.rx.recv_timeout(Duration::from_millis(200)) {
            if let Seen::Line(l) = seen {
                self.lines.push(l);
            }
        }
        self.save();
        (qemu_status, self.lines)
    }
}

/// The VM file for `base` on the prefix's platform: `configs/BASE.toml`, or on a GICv3
/// platform its GICv3 twin `configs/BASE-gicv3.toml` (the same VM with a GICv3).
fn config_file(base: &str) -> String {
    if common::prefix_gic_v3() { format!("{base}-gicv3.toml") } else { format!("{base}.toml") }
}

/// The VM in a config file.
fn vm(name: &str) -> VmConfig {
    let path = workspace().join("configs").join(name);
    vm_config::parse_system_file(&path).unwrap_or_else(|e| panic!("{e}")).vms.remove(0)
}

/// The checks every Linux guest passes through its console, with `cpus` CPUs.
fn check_guest(c: &mut Console, cpus: usize) {
    let (out, st) = c.run("uname -a");
    assert_eq!(st, 0);
    let uname = out.iter().find(|l| l.starts_with("Linux ")).unwrap_or_else(|| panic!("uname: {out:?}"));
    assert!(uname.contains(KERNEL_RELEASE) && uname.contains("aarch64"), "{uname}");

    let (out, st) = c.run("cat /proc/cpuinfo");
    assert_eq!(st, 0);
    let processors = out.iter().filter(|l| l.starts_with("processor")).count();
    assert_eq!(processors, cpus, "/proc/cpuinfo: {out:?}");
    let (out, _) = c.run("cat /sys/devices/system/cpu/online");
    let want = if cpus == 1 { "0".to_string() } else { format!("0-{}", cpus - 1) };
    assert!(out.iter().any(|l| l.trim() == want), "online CPUs {out:?}, want {want}");

    // The timer interrupt counts up (summed over CPUs) between two reads a second apart.
    let timer = |c: &mut Console| -> u64 {
        let (out, st) = c.run("cat /proc/interrupts");
        assert_eq!(st, 0);
        let line = out.iter().find(|l| l.contains("arch_timer")).unwrap_or_else(|| panic!("no arch_timer: {out:?}"));
        line.split_whitespace().skip(1).take(cpus).map(|n| n.parse::<u64>().unwrap_or(0)).sum()
    };
    let a = timer(c);
    c.run("sleep 1");
    let b = timer(c);
    assert!(b > a, "timer interrupts did not count: {a} then {b}");
}

fn check_disk(c: &mut Console) {
    let (out, st) = c.run("/tests/disk");
    assert_eq!(st, 0, "disk test: {out:?}");
    assert!(out.iter().any(|l| l == "test-disk: read capvisor disk: hello from ext4"), "{out:?}");
    assert!(out.iter().any(|l| l == "test-disk: wrote written by the guest"), "{out:?}");
    assert!(out.iter().any(|l| l == "test-disk: unmounted"), "{out:?}");
}

fn finish(c: Console) {
    let log = c.log.clone();
    let (reported, qemu_status, _) = c.exit(0);
    assert_eq!(reported, 0, "log: {}", log.display());
    assert!(qemu_status.success(), "QEMU: {qemu_status}; log: {}", log.display());
}

// ---- direct: the generated device tree under QEMU's own boot ----

/// A copy of `disk` (the guest writes to it).
fn scratch_disk(art: &Path, name: &str) -> PathBuf {
    let p = work_dir().join(format!("{name}.ext4"));
    std::fs::copy(art.join("disk.ext4"), &p).expect("copy disk image");
    p
}

/// QEMU booting the artifacts with `vm`'s generated device tree (RAM must start at QEMU
/// virt's 0x4000_0000, where QEMU loads the kernel).
fn direct(art: &Path, vm: &VmConfig, name: &str, disk: Option<&Path>) -> Console {
    assert_eq!(vm.memory[0].range.base.0, 0x4000_0000, "QEMU's own boot puts the kernel at 0x4000_0000");
    let mut cmd = common::direct_linux(art, vm, &work_dir().join(format!("{name}.dtb"))).expect("the direct command");
    if let Some(d) = disk {
        cmd.arg("-drive").arg(format!("file={},if=none,format=raw,id=d0", d.display()));
        cmd.args(["-device", "virtio-blk-device,drive=d0"]);
    }
    let mut c = Console::start(cmd, name);
    let marker = c.until("the init marker", BOOT_TIMEOUT, |l| l.contains(MARKER));
    assert!(marker.last().unwrap().contains("test=shell"), "the device tree's bootargs reached the kernel");
    c.ready();
    c
}

#[test]
fn direct_linux_toml_device_tree_boots_the_kernel() {
    let art = need!(artifacts());
    let vm = vm(&config_file("linux"));
    let mut c = direct(&art, &vm, "direct-linux", None);
    check_guest(&mut c, 1);
    finish(c);
}

#[test]
fn direct_linux_smp_toml_device_tree_brings_up_both_cpus_through_psci() {
    let art = need!(artifacts());
    let vm = vm(&config_file("linux-smp"));
    let mut c = direct(&art, &vm, "direct-linux-smp", None);
    check_guest(&mut c, 2);
    finish(c);
}

#[test]
fn direct_linux_disk_toml_device_tree_finds_the_virtio_disk() {
    let art = need!(artifacts());
    // linux-disk.toml's RAM is identity-mapped at 0x7000_0000 for capvisor; QEMU's own
    // boot needs it at 0x4000_0000. The devices (and so the virtio-mmio node) are its own.
    let mut vm = vm(&config_file("linux-disk"));
    vm.memory[0].range = GuestRange::new(0x4000_0000, vm.memory[0].range.size_bytes);
    vm.memory[0].map = MapType::Alloc;
    let disk = scratch_disk(&art, "direct-linux-disk");
    let mut c = direct(&art, &vm, "direct-linux-disk", Some(&disk));
    check_guest(&mut c, 1);
    check_disk(&mut c);
    finish(c);
}

#[test]
fn direct_init_reports_a_failing_status() {
    let art = need!(artifacts());
    let mut c = direct(&art, &vm(&config_file("linux")), "direct-status", None);
    let (_, st) = c.run("false");
    assert_eq!(st, 1, "the shell's status reaches the console");
    let (reported, qemu, _) = c.exit(3);
    assert_eq!(reported, 3);
    assert!(qemu.success(), "power-off ends QEMU normally: {qemu}");
}

// ---- `capvisor dtb`: no QEMU needed ----

/// A synthetic arm64 `Image`: header only, declaring `image_size` bytes.
fn synthetic_image(image_size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 4096];
    h[16..24].copy_from_slice(&image_size.to_le_bytes());
    h[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
    h[0x38..0x3c].copy_from_slice(b"ARM\x64");
    h
}

/// `configs/linux.toml` in a scratch directory with a synthetic kernel and initrd, the
/// initrd moved to `initrd_at`.
fn scratch_vm(name: &str, initrd_at: &str) -> PathBuf {
    let dir = work_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Image"), synthetic_image(0x201_0000)).unwrap();
    std::fs::write(dir.join("initrd"), vec![0u8; 0x1000]).unwrap();
    let text = std::fs::read_to_string(workspace().join("configs/linux.toml"))
        .unwrap()
        .replace("../guests/linux/artifacts/Image", "Image")
        .replace("../guests/linux/artifacts/initramfs.cpio.gz", "initrd")
        .replace("ramdisk_load_addr = 0x4420_0000", &format!("ramdisk_load_addr = {initrd_at}"));
    let cfg = dir.join("vm.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn capvisor_dtb(cfg: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capvisor")).arg("dtb").arg(cfg).arg("-o").arg(out).output().unwrap()
}

#[test]
fn capvisor_dtb_writes_the_tree_with_the_initrd_range() {
    let cfg = scratch_vm("dtb-ok", "0x4420_0000");
    let out_path = cfg.with_file_name("vm.dtb");
    let out = capvisor_dtb(&cfg, &out_path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blob = std::fs::read(&out_path).unwrap();
    // The initrd range is in /chosen: start and exclusive end, big-endian u64s.
    let end = (0x4420_0000u64 + 0x1000).to_be_bytes();
    assert!(blob.windows(8).any(|w| w == end), "linux,initrd-end not in the blob");
    assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
}

#[test]
fn capvisor_dtb_refuses_an_initrd_inside_the_kernels_bss() {
    // 0x4200_0000 is past the file's end but inside image_size (0x4201_0000).
    let cfg = scratch_vm("dtb-bss", "0x4200_0000");
    let out = capvisor_dtb(&cfg, &cfg.with_file_name("vm.dtb"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("vm.toml") && err.contains("overlaps the initrd"), "{err}");
}

// ---- under capvisor: the root task runs the VM files ----

/// The installed kernel prefix, or why the capvisor tests cannot run.
fn sel4_prefix() -> Result<PathBuf, String> {
    let prefix = sel4_codegen::prefix::env_path("SEL4_PREFIX");
    let prefix = prefix.ok_or("SEL4_PREFIX is not set")?;
    if !prefix.join("bin/kernel.elf").is_file() {
        return Err(format!("{} has no bin/kernel.elf (a data-only prefix cannot boot)", prefix.display()));
    }
    Ok(prefix)
}

/// Builds take turns in one target directory (a new bundle rebuilds only the root task).
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `capvisor vms` of `config`, the root task built with that bundle, `capvisor image`: the
/// bootable image.
fn capvisor_image(prefix: &Path, config: &Path, name: &str) -> PathBuf {
    let _turn = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    common::config_image(prefix, config, None, &work_dir(), name)
}

/// Boots a capvisor image (`qemu/run-qemu.sh`) up to init's marker. With several VMs,
/// commands read the lines named `[vm] `; a single VM's lines carry no name.
fn capvisor_boot(image: &Path, vm: Option<&str>, extra_qemu: &[String], name: &str) -> Console {
    let mut cmd = Command::new(workspace().join("qemu/run-qemu.sh"));
    // The machine the kernel was built for (a GICv3 kernel does not boot on a GICv2 one).
    cmd.args(common::platform_args());
    cmd.arg("--timeout").arg("600").arg(image).arg("--").args(extra_qemu);
    let mut c = Console::start(cmd, name);
    c.vm = vm.map(str::to_string);
    c.until_guest("the init marker", BOOT_TIMEOUT, |l| l.contains(MARKER));
    c.ready();
    c
}

/// After the guest powered off: the root task's report of `vm`, and its exit status.
fn assert_root_task_reports(lines: &[String], vm: &str, reason: &str, status: i32, log: &Path) {
    let ended = format!("capvisor: VM \"{vm}\" ended: {reason}, status {status}");
    assert!(lines.iter().any(|l| l.contains(&ended)), "no `{ended}`; log: {}", log.display());
    assert!(lines.iter().any(|l| l.contains("capvisor: counters of")), "no counters; log: {}", log.display());
}

fn capvisor_finish(c: Console, vm: &str) {
    let log = c.log.clone();
    let (reported, qemu, lines) = c.exit(0);
    assert_eq!(reported, 0, "log: {}", log.display());
    assert_root_task_reports(&lines, vm, "powered off", 0, &log);
    assert!(lines.iter().any(|l| l.contains("capvisor: all VMs stopped, exit status 0")), "log: {}", log.display());
    assert_eq!(qemu.code(), Some(0), "the root task's exit status; log: {}", log.display());
}

#[test]
fn capvisor_boots_linux_toml_to_a_shell() {
    let prefix = need!(sel4_prefix());
    need!(artifacts());
    let image = capvisor_image(&prefix, &workspace().join("configs").join(config_file("linux")), "capvisor-linux");
    let mut c = capvisor_boot(&image, None, &[], "capvisor-linux");
    check_console(&mut c);
    check_guest(&mut c, 1);
    capvisor_finish(c, "linux");
}

/// The console as a person uses it: the first line says where help is, the prompt shows
/// without Enter, typing echoes as typed, Ctrl-C interrupts the foreground command, and
/// Ctrl-A ? lists the keys and the VM.
fn check_console(c: &mut Console) {
    let first = c.lines.iter().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
    assert!(first.contains("Ctrl-A ?"), "the first console line says where help is: {first:?}");
    let prompt = |p: &str| p.ends_with("# ");
    c.type_line("true");
    c.until_partial("the prompt, no Enter pressed", COMMAND_TIMEOUT, prompt);
    c.type_bytes(b"echo typ");
    c.until_partial("the echo of typed characters", COMMAND_TIMEOUT, |p| p.ends_with("echo typ"));
    c.type_bytes(b"ed\n");
    c.until_guest("the typed command's output", COMMAND_TIMEOUT, |l| l == "typed");
    c.type_line("sleep 100");
    c.until_guest("the echo of sleep", COMMAND_TIMEOUT, |l| l.ends_with("sleep 100"));
    // Give the shell time to start sleep in the foreground, then interrupt it.
    std::thread::sleep(Duration::from_millis(500));
    let interrupted = Instant::now();
    c.type_bytes(&[0x03]);
    c.until_partial("the prompt after Ctrl-C", COMMAND_TIMEOUT, prompt);
    assert!(interrupted.elapsed() < Duration::from_secs(60), "sleep 100 ran to its end: Ctrl-C did not reach it");
    let (_, st) = c.run("true");
    assert_eq!(st, 0, "the shell answers after Ctrl-C");
    c.type_bytes(&[0x01, b'?']);
    let help = c.until("the console's key list", COMMAND_TIMEOUT, |l| l.contains("console: VM 1: linux"));
    assert!(help.iter().any(|l| l.contains("Ctrl-A x")), "{help:?}");
    assert!(help.last().unwrap().contains("(running, typing goes here)"), "{help:?}");
}

#[test]
fn capvisor_boots_linux_smp_toml_with_both_cpus() {
    let prefix = need!(sel4_prefix());
    need!(artifacts());
    // On a GICv3 platform the same VM with a GICv3 (its IPIs are trapped ICC_SGI1R_EL1 writes).
    let file = config_file("linux-smp");
    let name = file.trim_end_matches(".toml");
    let config = workspace().join("configs").join(&file);
    let image = capvisor_image(&prefix, &config, &format!("capvisor-{name}"));
    let mut c = capvisor_boot(&image, None, &[], &format!("capvisor-{name}"));
    check_guest(&mut c, 2);
    capvisor_finish(c, name);
}

#[test]
fn capvisor_boots_linux_disk_toml_with_the_passthrough_disk() {
    let prefix = need!(sel4_prefix());
    let art = need!(artifacts());
    let image =
        capvisor_image(&prefix, &workspace().join("configs").join(config_file("linux-disk")), "capvisor-linux-disk");
    let disk = scratch_disk(&art, "capvisor-linux-disk");
    let qemu = vec![
        "-drive".to_string(),
        format!("file={},if=none,format=raw,id=d0", disk.display()),
        "-device".to_string(),
        "virtio-blk-device,drive=d0".to_string(),
    ];
    let mut c = capvisor_boot(&image, None, &qemu, "capvisor-linux-disk");
    check_guest(&mut c, 1);
    check_disk(&mut c);
    let log = c.log.clone();
    let (reported, qemu_status, lines) = c.exit(0);
    assert_eq!(reported, 0);
    assert!(lines.iter().any(|l| l.contains("host interrupt 79 forwarded")), "log: {}", log.display());
    // The disk's interrupts came through the forwarding path.
    let host_irqs = lines
        .iter()
        .find_map(|l| l.split("capvisor:").nth(1).and_then(|r| r.trim().strip_prefix("HostIrq")))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(host_irqs > 0, "no HostIrq exits counted; log: {}", log.display());
    assert_root_task_reports(&lines, "linux-disk", "powered off", 0, &log);
    assert_eq!(qemu_status.code(), Some(0), "log: {}", log.display());
    // The guest's write reached the disk image on the host.
    let bytes = std::fs::read(&disk).unwrap();
    assert!(bytes.windows(20).any(|w| w == b"written by the guest"), "the guest's file is not on the disk");
}

/// Two Linux VMs (`linux.toml` and a copy named `linux-b`): a system file in a scratch
/// directory, image paths made absolute.
fn two_linux_vms() -> PathBuf {
    let dir = work_dir().join("two-linux");
    std::fs::create_dir_all(&dir).unwrap();
    let art = workspace().join("guests/linux/artifacts");
    let text = std::fs::read_to_string(workspace().join("configs").join(config_file("linux")))
        .unwrap()
        .replace("../guests/linux/artifacts", &art.display().to_string());
    // The first VM's panic (panic=-1: PSCI SYSTEM_RESET) must end it, not reboot it.
    assert_eq!(text.matches("[capvisor]\n").count(), 1, "linux.toml has one [capvisor] table");
    let a = text.replace("[capvisor]\n", "[capvisor]\non_reset = \"stop\"\n");
    std::fs::write(dir.join("a.toml"), &a).unwrap();
    // The second VM's RAM comes from the kernel's memory (the first one has the reserved
    // range at 0x4000_0000), also populated on first touch.
    let b = text.replace("id = 1", "id = 2").replace("name = \"linux\"", "name = \"linux-b\"");
    let b = b.replace("[0x4000_0000, 0x1000_0000, 0x7, 2]", "[0x4000_0000, 0x1000_0000, 0x7, 0]");
    assert!(b.contains("0x7, 0]") && b.contains("populate_ram = \"on_touch\""), "linux.toml changed: {b}");
    std::fs::write(dir.join("b.toml"), b).unwrap();
    std::fs::write(dir.join("system.toml"), "[system]\nvms = [\"a.toml\", \"b.toml\"]\n").unwrap();
    dir.join("system.toml")
}

#[test]
fn capvisor_a_guest_kernel_panic_ends_only_that_vm() {
    let prefix = need!(sel4_prefix());
    need!(artifacts());
    let image = capvisor_image(&prefix, &two_linux_vms(), "capvisor-two-linux");
    let mut c = capvisor_boot(&image, Some("linux"), &[], "capvisor-two-linux");
    // Input goes to the first VM: crash its kernel (sysrq c; panic=-1 resets at once).
    c.type_line("/tests/panic");
    c.until("the first VM stopping", BOOT_TIMEOUT, |l| l.contains("capvisor: linux: stopped: reset"));
    // The second VM still runs and answers once it has focus (Ctrl-A 2).
    c.vm = Some("linux-b".to_string());
    let up = c.lines.iter().any(|l| c.strip(l).is_some_and(|g| g.contains(MARKER)));
    if !up {
        c.until_guest("the second VM's marker", BOOT_TIMEOUT, |l| l.contains(MARKER));
    }
    c.type_line("\u{1}2");
    c.until("the focus switch", COMMAND_TIMEOUT, |l| l.contains("console: input goes to linux-b"));
    c.ready();
    let (out, st) = c.run("uname -r");
    assert_eq!(st, 0);
    assert!(out.iter().any(|l| l.trim() == KERNEL_RELEASE), "{out:?}");
    // Ctrl-A x ends the run, saying so, with a non-zero status.
    let log = c.log.clone();
    c.type_bytes(&[0x01, b'x']);
    c.until("the end from the console", COMMAND_TIMEOUT, |l| l.contains("console: Ctrl-A x: ending the run"));
    let (qemu, lines) = c.wait_end();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[linux] ") && l.contains("Kernel panic - not syncing: sysrq triggered crash")),
        "log: {}",
        log.display()
    );
    assert_root_task_reports(&lines, "linux", "reset", 0, &log);
    assert_root_task_reports(&lines, "linux-b", "ended from the console (Ctrl-A x)", 130, &log);
    assert!(lines.iter().any(|l| l.contains("capvisor: all VMs stopped, exit status 130")), "log: {}", log.display());
    assert_eq!(qemu.code(), Some(130), "log: {}", log.display());
}
