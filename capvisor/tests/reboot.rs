//! VMs reboot (issue 15): a guest's PSCI `SYSTEM_RESET` tears its VM down (vCPUs, mappings,
//! memory) and builds it again from the bundle (`[capvisor] on_reset = "reboot"`, the
//! default), and nothing leaks: after every reboot the root task's free capability slots and
//! untyped bytes are back at their counts after the first build.
//!
//! Two systems, each booted once under QEMU on the kernel at `SEL4_PREFIX`, with
//! `reboot_limit = 20`:
//! - `configs/test-guest-reboot-pair.toml`: the test guest's reboot mode (one line per boot,
//!   then `SYSTEM_RESET` with vCPU 1 parked on its timer; see `guests/test-guest/README.md`)
//!   beside the normal test guest, whose lines must be exactly its normal ones;
//! - `configs/linux-reboot.toml`: Debian's Linux, whose initramfs runs `tests/reboot`
//!   (`reboot -f`) as soon as it has booted.
//!
//! For each: the VM boots `reboot_limit + 1` times (its boot lines, one set between each two
//! reboots), the root task reports `rebooted (N)` for N = 1 to the limit with the three counts
//! of its `resources after build` line, and the VM ends with `reboot limit reached`; the root
//! task ends the run with status 0 and never panics. The root task's lines:
//!
//! ```text
//! capvisor: resources after build: hal-slots-free=A untyped-bytes-free=B vmm-slots-free=C
//! capvisor: VM "NAME" rebooted (N): hal-slots-free=A untyped-bytes-free=B vmm-slots-free=C
//! capvisor: VM "NAME" ended: reboot limit reached, status 0
//! ```
//!
//! A test that cannot run here (no kernel, no QEMU, no Linux artifacts) fails, saying why.
//! Console logs: `<target>/tmp/reboot-test/<name>.log` (stamped).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Boot, workspace};
use vm_config::{OnReset, VmConfig};

/// The issue asks for at least this many reboots per guest.
const MIN_REBOOTS: u32 = 20;
/// QEMU's limit for the test guests (21 boots of about 0.1 s, the other VM's 2 to 5 s).
const TEST_GUEST_TIMEOUT_S: u64 = 240;
/// QEMU's limit for Linux: 21 boots of 2 to 4 s here, with room for a loaded machine.
const LINUX_TIMEOUT_S: u64 = 600;

/// The test guest's line in reboot mode, once per boot.
const REBOOT_MODE_LINE: &str = "reboot mode: image and RAM as built, vCPU 1 up; SYSTEM_RESET";
/// `/init`'s marker for the Linux reboot test, once per boot.
const LINUX_READY: &str = "capvisor-init: ready test=reboot";
/// The start of `tests/reboot`'s line, once per boot.
const LINUX_REBOOTING: &str = "test-reboot: rebooting after ";

/// The root task's resource counts (free HAL slots, untyped bytes, VMM slots).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counts {
    hal_slots: u64,
    untyped_bytes: u64,
    vmm_slots: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Counts { hal_slots, untyped_bytes, vmm_slots } = self;
        write!(f, "hal-slots-free={hal_slots} untyped-bytes-free={untyped_bytes} vmm-slots-free={vmm_slots}")
    }
}

/// `hal-slots-free=A untyped-bytes-free=B vmm-slots-free=C`, exactly.
fn parse_counts(s: &str) -> Option<Counts> {
    let mut it = s.split_whitespace();
    let mut field = |name: &str| it.next()?.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok();
    let c = Counts {
        hal_slots: field("hal-slots-free")?,
        untyped_bytes: field("untyped-bytes-free")?,
        vmm_slots: field("vmm-slots-free")?,
    };
    it.next().is_none().then_some(c)
}

/// The kernel prefix to boot, or a failure saying why there is none.
fn kernel_prefix() -> PathBuf {
    let prefix = sel4_codegen::prefix::env_path("SEL4_PREFIX")
        .unwrap_or_else(|| panic!("SEL4_PREFIX is not set: the reboot suite needs a kernel build and cannot run"));
    assert!(
        prefix.join("bin/kernel.elf").is_file(),
        "{} has no bin/kernel.elf: the reboot suite needs a kernel build and cannot run",
        prefix.display()
    );
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    let runs = Command::new(&qemu).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(runs.is_ok_and(|s| s.success()), "{qemu} does not run: the reboot suite cannot boot");
    prefix
}

/// The VM named `name` of the system in `configs/<config>`.
fn config_vm(config: &str, name: &str) -> VmConfig {
    let sys = vm_config::parse_system_file(&workspace().join("configs").join(config)).unwrap_or_else(|e| panic!("{e}"));
    sys.vms.into_iter().find(|v| v.name == name).unwrap_or_else(|| panic!("no VM {name:?} in configs/{config}"))
}

/// The number of reboots `vm`'s file allows, checked against what the issue asks for.
fn reboot_limit(vm: &VmConfig) -> u32 {
    assert_eq!(vm.capvisor.on_reset, OnReset::Reboot, "{}: on_reset", vm.name);
    let limit = vm.capvisor.reboot_limit.unwrap_or_else(|| panic!("{}: no reboot_limit", vm.name));
    assert!(limit >= MIN_REBOOTS, "{}: reboot_limit {limit}, the issue asks for {MIN_REBOOTS}", vm.name);
    limit
}

/// The text after `marker` in `line`, if it holds it.
fn after<'l>(line: &'l str, marker: &str) -> Option<&'l str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// What the console shows of one run, read for one VM.
struct Reboots<'b> {
    boot: &'b Boot,
    name: String,
    /// The counts after the first build.
    built: Counts,
    /// Console index of each `rebooted (N)` line, in order, with N and the counts.
    reboots: Vec<(usize, u32, Counts)>,
}

impl<'b> Reboots<'b> {
    fn read(boot: &'b Boot, name: &str) -> Self {
        let log = boot.log_path.display();
        let built: Vec<Counts> = boot
            .lines
            .iter()
            .filter_map(|(_, l)| after(l, "capvisor: resources after build: "))
            .map(|s| parse_counts(s).unwrap_or_else(|| panic!("bad counts {s:?}; log: {log}")))
            .collect();
        if built.len() != 1 {
            let end = boot.line(&format!("capvisor: VM \"{name}\" ended: ")).unwrap_or("none");
            panic!("{} `resources after build` lines, want 1 (the VM's end: {end:?}); log: {log}", built.len());
        }
        let marker = format!("capvisor: VM \"{name}\" rebooted (");
        let mut reboots = Vec::new();
        for (i, (_, l)) in boot.lines.iter().enumerate() {
            let Some(rest) = after(l, &marker) else { continue };
            let parsed = rest.split_once("): ").and_then(|(n, c)| Some((n.parse::<u32>().ok()?, parse_counts(c)?)));
            let (n, c) = parsed.unwrap_or_else(|| panic!("bad reboot line {l:?}; log: {log}"));
            reboots.push((i, n, c));
        }
        Reboots { boot, name: name.to_string(), built: built[0], reboots }
    }

    /// The `rebooted (N)` lines come for N = 1 to `limit`, in order, each with the counts
    /// after the first build; or what is wrong.
    fn counts(&self, limit: u32) -> Result<(), String> {
        let (name, log) = (&self.name, self.boot.log_path.display());
        let numbers: Vec<u32> = self.reboots.iter().map(|r| r.1).collect();
        if numbers != (1..=limit).collect::<Vec<_>>() {
            return Err(format!("{name} rebooted as {numbers:?}, want 1 to {limit}; log: {log}"));
        }
        if let Some((_, n, c)) = self.reboots.iter().find(|r| r.2 != self.built) {
            return Err(format!("after reboot {n} of {name}: {c}; after the build: {}; log: {log}", self.built));
        }
        let built_at = self.boot.lines.iter().position(|(_, l)| l.contains("capvisor: resources after build: "));
        if built_at > self.reboots.first().map(|r| r.0) {
            return Err(format!("the build's counts come after a reboot; log: {log}"));
        }
        Ok(())
    }

    /// [`Reboots::counts`], as a test's assertion.
    fn check_counts(&self, limit: u32) {
        if let Err(e) = self.counts(limit) {
            panic!("{e}");
        }
    }

    /// The VM's end line says the limit stopped it.
    fn check_end(&self) {
        let end = format!("capvisor: VM \"{}\" ended: reboot limit reached, status 0", self.name);
        let ends: Vec<&str> = self
            .boot
            .lines
            .iter()
            .map(|(_, l)| l.as_str())
            .filter(|l| l.contains(&format!("capvisor: VM \"{}\" ended: ", self.name)))
            .collect();
        assert_eq!(ends, [end.as_str()], "the end of {}; log: {}", self.name, self.boot.log_path.display());
    }

    /// The VM's own lines (`own` gives a console line's text without the VM's name, or
    /// `None` for another VM's or the root task's), in boots: those before the first
    /// `rebooted` line, between each two, and after the last. A line the console broke to
    /// write others' lines (it writes the unfinished part again right after them, in the same
    /// boot) counts once, whole.
    fn boots(&self, own: impl Fn(&str) -> Option<String>) -> Vec<Vec<String>> {
        let lines = &self.boot.lines;
        let reboot = |i: usize| self.reboots.iter().any(|r| r.0 == i);
        let mut out = vec![Vec::new()];
        for (i, (_, l)) in lines.iter().enumerate() {
            if reboot(i) {
                out.push(Vec::new());
                continue;
            }
            let Some(text) = own(l) else { continue };
            // The next own line, if only others' lines of the same boot come before it.
            let mut others = 0;
            let mut next = None;
            for (j, (_, n)) in lines.iter().enumerate().skip(i + 1) {
                if reboot(j) {
                    break;
                }
                match own(n) {
                    Some(t) => {
                        next = Some(t);
                        break;
                    }
                    None => others += 1,
                }
            }
            let broken = !text.is_empty() && others > 0 && next.is_some_and(|n| n.starts_with(&text));
            if !broken {
                out.last_mut().expect("a boot").push(text);
            }
        }
        out
    }

    /// Seconds from the first line of each boot containing `marker` to the next one's.
    fn intervals(&self, marker: &str) -> Vec<f64> {
        let times: Vec<Duration> =
            self.boot.lines.iter().filter(|(_, l)| l.contains(marker)).map(|(t, _)| *t).collect();
        times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    }

    /// The run ended by itself with status 0, no panic.
    fn check_run(&self) {
        let log = self.boot.log_path.display();
        assert!(self.boot.line("panicked").is_none(), "the root task panicked; log: {log}");
        assert!(self.boot.line("capvisor: all VMs stopped, exit status 0").is_some(), "log: {log}");
        assert_eq!(self.boot.status.code(), Some(0), "QEMU's exit status (124: its time limit); log: {log}");
    }
}

/// `min / median / max` of `v` in seconds.
fn spread(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match (s.first(), s.get(s.len() / 2), s.last()) {
        (Some(a), Some(m), Some(b)) => format!("{a:.3} / {m:.3} / {b:.3} s"),
        _ => "none".into(),
    }
}

#[test]
fn the_test_guest_reboots_20_times_beside_a_normal_one_and_no_slot_or_byte_leaks() {
    const NAME: &str = "test-guest-reboot";
    const OTHER: &str = "test-guest";
    let prefix = kernel_prefix();
    let limit = reboot_limit(&config_vm("test-guest-reboot-pair.toml", NAME));
    let boot =
        common::boot_vm_config(&prefix, "test-guest-reboot-pair.toml", "reboot-test", NAME, TEST_GUEST_TIMEOUT_S);
    let log = boot.log_path.display();
    let r = Reboots::read(&boot, NAME);
    r.check_run();
    r.check_counts(limit);
    r.check_end();

    // One boot line per boot, and nothing else from the VM.
    let tag = format!("[{NAME}] ");
    let boots = r.boots(|l| l.strip_prefix(&tag).map(str::to_string));
    assert_eq!(boots.len() as u32, limit + 1, "log: {log}");
    for (i, lines) in boots.iter().enumerate() {
        assert_eq!(lines, &[REBOOT_MODE_LINE], "boot {} of {NAME}; log: {log}", i + 1);
    }

    // The VM beside it: exactly its normal lines, and powered off with 0.
    let other: Vec<&str> =
        boot.lines.iter().map(|(_, l)| l.as_str()).filter(|l| l.starts_with(&format!("[{OTHER}] "))).collect();
    assert_eq!(other, common::test_guest_lines(OTHER, true, true), "{OTHER}'s lines; log: {log}");
    assert!(
        boot.line(&format!("capvisor: VM \"{OTHER}\" ended: powered off, status 0")).is_some(),
        "{OTHER}'s end; log: {log}"
    );
    // ... and it ran while the other VM rebooted: a reboot between its first and last line.
    let first = boot.lines.iter().position(|(_, l)| l.starts_with(&format!("[{OTHER}] "))).unwrap();
    let last = boot.lines.iter().rposition(|(_, l)| l.starts_with(&format!("[{OTHER}] "))).unwrap();
    assert!(r.reboots.iter().any(|(i, _, _)| (first..last).contains(i)), "no reboot while {OTHER} ran; log: {log}");

    eprintln!(
        "reboot: {NAME}: {} boots, {limit} reboots, each at {}; boot to boot {}; {OTHER} unaffected; run {:.1} s",
        boots.len(),
        r.built,
        spread(&r.intervals(REBOOT_MODE_LINE)),
        boot.total.as_secs_f64()
    );
}

#[test]
fn linux_reboots_20_times_and_no_slot_or_byte_leaks() {
    const NAME: &str = "linux-reboot";
    let prefix = kernel_prefix();
    linux_artifacts_with_the_reboot_test();
    let limit = reboot_limit(&config_vm("linux-reboot.toml", NAME));
    let boot = common::boot_vm_config(&prefix, "linux-reboot.toml", "reboot-test", NAME, LINUX_TIMEOUT_S);
    let log = boot.log_path.display();
    let r = Reboots::read(&boot, NAME);
    r.check_run();
    r.check_counts(limit);
    r.check_end();

    // A single VM writes without its name: every line that is not the root task's is Linux's.
    let boots = r.boots(|l| (!l.starts_with("capvisor: ")).then(|| l.to_string()));
    assert_eq!(boots.len() as u32, limit + 1, "log: {log}");
    for (i, lines) in boots.iter().enumerate() {
        // The first boot's lines begin with the root task's start; the VM's begin at the
        // kernel's. Each boot: init's marker, the test's line, then the kernel's restart.
        let ready = lines.iter().filter(|l| l.as_str() == LINUX_READY).count();
        let rebooting = lines.iter().filter(|l| l.starts_with(LINUX_REBOOTING)).count();
        assert_eq!((ready, rebooting), (1, 1), "boot {} of {NAME}: {lines:#?}; log: {log}", i + 1);
        assert!(!lines.iter().any(|l| l.contains("capvisor-init: status")), "the reboot test fell through; log: {log}");
    }

    let uptimes: Vec<f64> = boot
        .lines
        .iter()
        .filter_map(|(_, l)| after(l, LINUX_REBOOTING)?.split_whitespace().next()?.parse().ok())
        .collect();
    eprintln!(
        "reboot: {NAME}: {} boots, {limit} reboots, each at {}; boot to boot {}, Linux's uptime at its reboot {}; run {:.1} s",
        boots.len(),
        r.built,
        spread(&r.intervals(LINUX_READY)),
        spread(&uptimes),
        boot.total.as_secs_f64()
    );
}

/// Makes sure `guests/linux/artifacts` holds an initramfs with this tree's `tests/reboot`
/// (an older cache lacks it): fetched, or rebuilt in the cache the link points to, by
/// `guests/linux/fetch-artifacts` (Debian's registry, as root) unless `CAPVISOR_FETCH=0`.
fn linux_artifacts_with_the_reboot_test() {
    let art =
        common::fetched("guests/linux/artifacts", &["Image", "initramfs.cpio.gz"], "guests/linux/fetch-artifacts")
            .unwrap_or_else(|why| panic!("the Linux artifacts: {why}"));
    let script = std::fs::read(workspace().join("guests/linux/initramfs/tests/reboot")).unwrap();
    if initramfs_file(&art, "tests/reboot").as_deref() == Some(script.as_slice()) {
        return;
    }
    assert!(
        !std::env::var("CAPVISOR_FETCH").is_ok_and(|v| v == "0"),
        "{}/initramfs.cpio.gz lacks this tree's tests/reboot and CAPVISOR_FETCH=0: run guests/linux/fetch-artifacts",
        art.display()
    );
    let mut cmd = Command::new(workspace().join("guests/linux/fetch-artifacts"));
    if let Ok(cache) = std::fs::read_link(workspace().join("guests/linux/artifacts")) {
        cmd.arg("--cache").arg(cache);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run guests/linux/fetch-artifacts");
    assert!(out.status.success(), "guests/linux/fetch-artifacts:\n{}", String::from_utf8_lossy(&out.stderr));
    let rebuilt = initramfs_file(&art, "tests/reboot");
    assert_eq!(rebuilt.as_deref(), Some(script.as_slice()), "the rebuilt initramfs still lacks tests/reboot");
}

/// The bytes of `name` in the artifacts' initramfs (gzip, newc cpio), if it holds it.
fn initramfs_file(art: &Path, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("sh")
        .args(["-c", "gzip -dc \"$1\" | cpio -i --quiet --to-stdout \"$2\"", "sh"])
        .arg(art.join("initramfs.cpio.gz"))
        .arg(name)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// The two systems are what this suite assumes, and the counts line parses as the root task
/// writes it. Host only.
#[test]
fn the_reboot_configs_reboot_at_least_20_times_and_counts_parse() {
    for (config, name) in [("test-guest-reboot-pair.toml", "test-guest-reboot"), ("linux-reboot.toml", "linux-reboot")]
    {
        let vm = config_vm(config, name);
        reboot_limit(&vm);
    }
    // The test guest's reboot mode is entered at 0x400 past its load address.
    let vm = config_vm("test-guest-reboot-pair.toml", "test-guest-reboot");
    assert_eq!(vm.entry_point.0, vm.kernel.load_addr.0 + 0x400, "_start_reboot (guests/test-guest/link.ld)");
    assert_eq!(vm.cpu_num, 2, "vCPU 1 waits on its timer when vCPU 0 resets");
    // The VM beside it is the normal test guest, which never resets.
    let other = config_vm("test-guest-reboot-pair.toml", "test-guest");
    assert_eq!(other.entry_point, other.kernel.load_addr);
    let linux = config_vm("linux-reboot.toml", "linux-reboot");
    assert!(linux.cmdline.as_deref().is_some_and(|c| c.split_whitespace().any(|w| w == "capvisor.test=reboot")));

    let line = "capvisor: VM \"x\" rebooted (3): hal-slots-free=10 untyped-bytes-free=4096 vmm-slots-free=7";
    let rest = after(line, "capvisor: VM \"x\" rebooted (").unwrap();
    let (n, counts) = rest.split_once("): ").unwrap();
    assert_eq!(n, "3");
    assert_eq!(parse_counts(counts), Some(Counts { hal_slots: 10, untyped_bytes: 4096, vmm_slots: 7 }));
    assert_eq!(parse_counts("hal-slots-free=10 untyped-bytes-free=4096"), None);
    assert_eq!(parse_counts("hal-slots-free=10 untyped-bytes-free=4096 vmm-slots-free=7 more=1"), None);
    assert_eq!(parse_counts("untyped-bytes-free=4096 hal-slots-free=10 vmm-slots-free=7"), None);
}

/// A stamped console of `lines` (no QEMU), as [`Boot`] holds one.
fn console(lines: &[&str]) -> Boot {
    use std::os::unix::process::ExitStatusExt;
    Boot {
        lines: lines.iter().enumerate().map(|(i, l)| (Duration::from_millis(100 * i as u64), l.to_string())).collect(),
        status: std::process::ExitStatus::from_raw(0),
        total: Duration::from_secs(1),
        log_path: PathBuf::from("synthetic.log"),
    }
}

/// How the suite reads a console: a VM's line that another VM's line broke counts once, each
/// boot's lines are those between two reboots, and a count that differs is caught. Host only.
#[test]
fn a_console_is_read_by_boots_and_a_broken_line_counts_once() {
    let c = "hal-slots-free=5 untyped-bytes-free=4096 vmm-slots-free=9";
    let boot = console(&[
        "capvisor: resources after build: hal-slots-free=5 untyped-bytes-free=4096 vmm-slots-free=9",
        "[a] reboot mode: image and",
        "[b] tick 1",
        "[a] reboot mode: image and RAM as built",
        &format!("capvisor: VM \"a\" rebooted (1): {c}"),
        "[a] reboot mode: image and RAM as built",
        "[b] tick 2",
        &format!("capvisor: VM \"a\" rebooted (2): {c}"),
        "[a] reboot mode: image and RAM as built",
        "capvisor: VM \"a\" ended: reboot limit reached, status 0",
    ]);
    let r = Reboots::read(&boot, "a");
    r.check_counts(2);
    r.check_end();
    let boots = r.boots(|l| l.strip_prefix("[a] ").map(str::to_string));
    assert_eq!(boots, [["reboot mode: image and RAM as built"]; 3]);
    assert_eq!(r.intervals("[a] reboot mode: image and RAM as built").len(), 2);

    // A leak after the second reboot, and a missing reboot, are failures.
    let leaked = console(&[
        "capvisor: resources after build: hal-slots-free=5 untyped-bytes-free=4096 vmm-slots-free=9",
        &format!("capvisor: VM \"a\" rebooted (1): {c}"),
        "capvisor: VM \"a\" rebooted (2): hal-slots-free=4 untyped-bytes-free=4096 vmm-slots-free=9",
    ]);
    let r = Reboots::read(&leaked, "a");
    let e = r.counts(2).unwrap_err();
    assert!(e.starts_with("after reboot 2 of a: hal-slots-free=4 "), "a slot leaked: {e}");
    let e = r.counts(3).unwrap_err();
    assert!(e.starts_with("a rebooted as [1, 2], want 1 to 3"), "reboot 3 is missing: {e}");
}
