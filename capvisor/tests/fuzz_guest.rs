//! The fuzz guest (`guests/test-guest`'s fuzz mode, `configs/test-guest-fuzz.toml`) beside
//! the normal test guest (`configs/test-guest-fuzz-pair.toml`), on the release kernel under
//! QEMU: several seeds, each a build of the root task whose bundle carries the seed as the fuzz
//! VM's initial RAM disk (the record of `guests/test-guest/src/fuzz_abi.rs`).
//!
//! Per seed it asserts that
//! - the root task stays up: it ends the run itself (its exit status is QEMU's, never the
//!   time limit's), reports both VMs with their counters, never panics, and answers the
//!   console's `Ctrl-A x` within [`END_S`] when the test ends a fuzz VM that still runs;
//! - the good VM is unaffected: its console lines are exactly the normal test guest's, and it
//!   powers off with status 0 within [`GOOD_LIMIT_S`];
//! - the fuzz VM made progress (2000 iterations at least), and ends with a known status: the
//!   finale it announced (powered off with 0, reset, all vCPUs off, an undecodable exit), a
//!   trap or fault the VMM refuses, or `Ctrl-A x` from the test when it still ran at its time
//!   limit or had printed nothing for [`STALL_S`]; if it got to its summary, every answer it
//!   checked was one PSCI 1.0 and seL4 allow;
//!
//! and prints the fuzz VM's exits per kind. Over all seeds, every exit kind the fuzz mode aims
//! at must have been seen.
//!
//! Environment:
//! - `CAPVISOR_FUZZ_MINUTES=N`: the long mode. After the usual seeds, more (each following
//!   from the last), [`LONG_ITERATIONS`] each, for N minutes; the closing note gives the seeds,
//!   the minutes, the iterations and the exits survived per kind.
//! - `CAPVISOR_FUZZ_SEED=S`: start at seed S instead (one seed, or the first of the long
//!   mode's), to reproduce a run.
//! - `CAPVISOR_FUZZ_ITERATIONS=I`: each seed's length (0: until its time limit).
//! - `CAPVISOR_FUZZ_DEBUG_REGISTERS=1`: let the guest write the debug registers too, arming
//!   software step first (`fuzz_abi::FLAG_DEBUG_REGISTERS`). seL4 16.0.0 as capvisor
//!   configures it leaves them to whoever runs next, so the machine stops and the run fails;
//!   a kernel built with `HardwareDebugAPI` passes.
//!
//! Logs: `<target>/tmp/fuzz-guest/seed-<seed>/console.log` (stamped), `qemu.stderr` beside it.

#[path = "common/mod.rs"]
mod common;

/// The fuzz mode's record and the VMM and PSCI numbers it aims at (the guest's own copy),
/// checked against vm-runner's below.
#[path = "../../guests/test-guest/src/fuzz_abi.rs"]
#[allow(dead_code)]
mod guest_abi;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::{work_dir, workspace};

/// The seeds of a normal run: one per finale (the seed modulo 4 picks it).
const SEEDS: [u64; 4] = [0xf022_0001, 0xf022_0002, 0xf022_0003, 0xf022_0004];
/// Iterations per seed: about 15 s of fuzzing on an idle machine.
const ITERATIONS: u64 = 60_000;
/// Iterations per seed in the long mode.
const LONG_ITERATIONS: u64 = 300_000;
/// Seconds the good VM has to finish (it needs 2 to 5 beside the fuzz VM).
const GOOD_LIMIT_S: u64 = 180;
/// Seconds a seed's fuzz VM may run before the test ends it (normal mode).
const FUZZ_LIMIT_S: u64 = 240;
/// Seconds without a line from the fuzz VM (it prints one every 2000 iterations), once the
/// good VM is done, after which the fuzz VM counts as still running (stuck in a `WFI` whose
/// wake-up it undid itself, say) and the test ends it.
const STALL_S: u64 = 30;
/// Seconds the root task has to end the run after `Ctrl-A x`.
const END_S: u64 = 30;
/// QEMU's own time limit beyond the test's: only a root task that hangs meets it.
const QEMU_SLACK_S: u64 = 120;

const GOOD: &str = "test-guest";
const FUZZ: &str = "test-guest-fuzz";

/// Exit kinds (vm-runner's `ExitKind`) the fuzz mode must reach over the seeds of a run.
const KINDS_AIMED_AT: [&str; 13] = [
    "MmioRead",
    "MmioWrite",
    "UnhandledAccess",
    "Hvc",
    "HvcSel4Call",
    "Smc",
    "Wfi",
    "Wfe",
    "SysReg",
    "VgicMaintenance",
    "Vppi",
    "TimerWake",
    "FirstTouch",
];

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => v.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// SplitMix64, for the long mode's next seed.
fn next_seed(s: u64) -> u64 {
    let mut z = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The files of one seed's system in `dir`: the record, the fuzz VM file (the checked-in one
/// with the record as its initial RAM disk), the good VM's and the pair's, as checked in.
fn write_system(dir: &Path, seed: u64, iterations: u64, flags: u64) -> PathBuf {
    let mut record = Vec::new();
    for w in [guest_abi::PARAMS_MAGIC, seed, iterations, flags] {
        record.extend_from_slice(&w.to_le_bytes());
    }
    std::fs::write(dir.join("fuzz.params"), record).unwrap();
    let configs = workspace().join("configs");
    let fuzz = std::fs::read_to_string(configs.join("test-guest-fuzz.toml")).unwrap();
    let lines =
        format!("[kernel]\nramdisk_path = \"fuzz.params\"\nramdisk_load_addr = {:#x}\n", guest_abi::PARAMS_ADDR);
    assert_eq!(fuzz.matches("[kernel]\n").count(), 1, "configs/test-guest-fuzz.toml has one [kernel] table");
    std::fs::write(dir.join("test-guest-fuzz.toml"), fuzz.replace("[kernel]\n", &lines)).unwrap();
    for f in ["test-guest.toml", "test-guest-fuzz-pair.toml"] {
        std::fs::copy(configs.join(f), dir.join(f)).unwrap();
    }
    dir.join("test-guest-fuzz-pair.toml")
}

/// Packs the seed's system, builds the root task with it and packs the boot image.
fn build_image(prefix: &Path, guest: &Path, seed: u64, iterations: u64, flags: u64) -> (PathBuf, PathBuf) {
    let work = work_dir("fuzz-guest");
    let dir = work.join(format!("seed-{seed:#x}"));
    std::fs::create_dir_all(&dir).unwrap();
    let system = write_system(&dir, seed, iterations, flags);
    let bundle = dir.join("vms.bundle");
    common::vms_bundle(prefix, &system, Some(guest), &bundle);
    let built = common::build_with_bundle(prefix, &bundle, &work.join("cargo"));
    let image = dir.join("image.elf");
    common::capvisor_image(prefix, &built, &image);
    (image, dir)
}

/// Why the test typed `Ctrl-A x`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ended {
    /// It did not: the root task ended the run when both VMs had stopped.
    ByItself,
    /// The fuzz VM still ran at its time limit.
    TimeLimit,
    /// The fuzz VM had printed nothing for [`STALL_S`].
    Stalled,
    /// The good VM had not finished within [`GOOD_LIMIT_S`] (a failure).
    GoodVmLate,
}

/// A finished boot: console lines with their time since QEMU started, QEMU's status.
struct Run {
    lines: Vec<(Duration, String)>,
    status: ExitStatus,
    ended: Ended,
    log: PathBuf,
}

impl Run {
    fn line(&self, marker: &str) -> Option<&str> {
        self.lines.iter().map(|(_, l)| l.as_str()).find(|l| l.contains(marker))
    }

    /// `VM "name" ended: <reason>, status <n>`: reason and status.
    fn vm_end(&self, name: &str) -> Option<(String, i32)> {
        let prefix = format!("capvisor: VM \"{name}\" ended: ");
        let rest = self.lines.iter().find_map(|(_, l)| l.strip_prefix(&prefix))?;
        let (reason, status) = rest.rsplit_once(", status ")?;
        Some((reason.to_string(), status.trim().parse().ok()?))
    }

    /// The exits per kind of VM `name`'s counters table.
    fn exits(&self, name: &str) -> Option<BTreeMap<String, u64>> {
        let header = format!("capvisor: counters of \"{name}\"");
        let at = self.lines.iter().position(|(_, l)| l.starts_with(&header))?;
        let mut kinds = BTreeMap::new();
        for (_, l) in self.lines[at + 1..].iter().take_while(|(_, l)| l.starts_with("capvisor:   ")) {
            let cols: Vec<&str> = l.split_whitespace().skip(1).collect();
            if let (Some(kind), Some(Ok(n))) = (cols.first(), cols.get(1).map(|c| c.parse::<u64>())) {
                kinds.insert(kind.to_string(), n);
            }
        }
        Some(kinds)
    }

    /// The fuzz VM's lines, without its name.
    fn fuzz_lines(&self) -> impl Iterator<Item = &str> {
        let prefix = format!("[{FUZZ}] ");
        self.lines.iter().filter_map(move |(_, l)| l.strip_prefix(prefix.as_str()))
    }

    /// Iterations the fuzz VM reported last (its summary, or its last progress line).
    fn iterations(&self) -> u64 {
        let done = self.fuzz_lines().find_map(|l| l.strip_prefix("fuzz: done: "));
        let last = done.or_else(|| self.fuzz_lines().filter(|l| l.contains(" iterations, ")).last());
        last.and_then(|l| l.trim_start_matches("fuzz: ").split_whitespace().next()?.parse().ok()).unwrap_or(0)
    }
}

/// The processes below `pid` (from `/proc`), children before their parents' turn ends.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // `pid (comm) state ppid ...`: the command may hold spaces, so read after its `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            out.push(c);
            frontier.push(c);
        }
    }
    out
}

/// Ends `child` (`qemu/run-qemu.sh`) and what it started (`timeout`, QEMU), each by its id.
fn kill_tree(child: &mut Child) {
    for pid in descendants(child.id()).into_iter().rev() {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Boots `image`, watching the console: types `Ctrl-A x` when the fuzz VM still runs at
/// `fuzz_limit` or has stalled once the good VM is done, or when the good VM is late; `Err`
/// when the root task does not end the run after that (or QEMU ends otherwise than by it).
fn boot(image: &Path, dir: &Path, fuzz_limit: Duration) -> Result<Run, String> {
    let log = dir.join("console.log");
    let hard = GOOD_LIMIT_S.max(fuzz_limit.as_secs()) + END_S + QEMU_SLACK_S;
    let mut child = Command::new(workspace().join("qemu/run-qemu.sh"))
        .args(common::platform_args())
        .arg("--timeout")
        .arg(hard.to_string())
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("qemu.stderr")).expect("create qemu.stderr"))
        .spawn()
        .expect("start qemu/run-qemu.sh");
    let start = Instant::now();
    let (tx, rx) = channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            if tx.send((start.elapsed(), text)).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take();
    let mut lines: Vec<(Duration, String)> = Vec::new();
    let (mut good_done, mut fuzz_done) = (false, false);
    let mut last_fuzz = Instant::now();
    let mut typed: Option<(Instant, Ended)> = None;
    let fuzz_prefix = format!("[{FUZZ}] ");
    let failure = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((t, l)) => {
                good_done |= l.starts_with(&format!("capvisor: {GOOD}: exit status"));
                fuzz_done |= l.starts_with(&format!("capvisor: {FUZZ}: exit status"));
                if l.starts_with(&fuzz_prefix) {
                    last_fuzz = Instant::now();
                }
                lines.push((t, l));
            }
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let why = if typed.is_some() {
            None
        } else if !good_done && start.elapsed() > Duration::from_secs(GOOD_LIMIT_S) {
            Some(Ended::GoodVmLate)
        } else if good_done && !fuzz_done && start.elapsed() > fuzz_limit {
            Some(Ended::TimeLimit)
        } else if good_done && !fuzz_done && last_fuzz.elapsed() > Duration::from_secs(STALL_S) {
            Some(Ended::Stalled)
        } else {
            None
        };
        if let Some(why) = why {
            if let Some(input) = stdin.as_mut() {
                let _ = input.write_all(&[0x01, b'x']).and_then(|()| input.flush());
            }
            typed = Some((Instant::now(), why));
        }
        if let Some((at, _)) = typed
            && at.elapsed() > Duration::from_secs(END_S)
        {
            kill_tree(&mut child);
            break Some(format!("the root task did not end the run within {END_S} s of Ctrl-A x: hung"));
        }
    };
    drop(stdin);
    let status = child.wait().expect("wait for QEMU");
    while let Ok((t, l)) = rx.recv_timeout(Duration::from_millis(100)) {
        lines.push((t, l));
    }
    let mut text = String::new();
    for (t, l) in &lines {
        text.push_str(&format!("[{:8.3}] {l}\n", t.as_secs_f64()));
    }
    text.push_str(&format!("--- exit: {status} after {:.3} s\n", start.elapsed().as_secs_f64()));
    std::fs::write(&log, text).expect("write console log");
    if let Some(f) = failure {
        return Err(format!("{f}; log: {}", log.display()));
    }
    if status.code() == Some(124) {
        return Err(format!("QEMU met its {hard} s limit: the root task hung; log: {}", log.display()));
    }
    Ok(Run { lines, status, ended: typed.map_or(Ended::ByItself, |(_, w)| w), log })
}

/// What one seed came to.
struct SeedReport {
    seed: u64,
    iterations: u64,
    fuzz_end: String,
    exits: BTreeMap<String, u64>,
    secs: f64,
}

/// The fuzz VM's end is a known one, and the one its finale announced if it announced one.
fn check_fuzz_end(run: &Run, reason: &str, status: i32) -> Result<(), String> {
    let finale = run.fuzz_lines().find_map(|l| l.strip_prefix("fuzz: finale: "));
    let expected = finale.map(|f| match f {
        "system off" => Some(("powered off", 0)),
        "system reset" => Some(("reset", 0)),
        "all vCPUs off" => Some(("all vCPUs off", 0)),
        "undecodable exit" => Some(("undecodable fault (label 2)", 4)),
        _ => None,
    });
    match expected {
        Some(Some((r, s))) if reason != r || status != s => {
            return Err(format!("finale {finale:?}, but the VMM reports \"{reason}\", status {status}"));
        }
        Some(None) => return Err(format!("unknown finale {finale:?}")),
        _ => {}
    }
    let known = match reason {
        "powered off" | "reset" | "all vCPUs off" => status == 0,
        r if r.starts_with("undecodable fault (label ") => status == 4,
        r if r.starts_with("unhandled trap, ESR ") => status == 3,
        "ended from the console (Ctrl-A x)" => status == 130 && run.ended != Ended::ByItself,
        _ => false,
    };
    if known { Ok(()) } else { Err(format!("not a known end: \"{reason}\", status {status}")) }
}

/// Runs one seed and checks it; panics with the seed and the log on a failure.
fn run_seed(prefix: &Path, guest: &Path, seed: u64, iterations: u64, flags: u64, limit: Duration) -> SeedReport {
    let started = Instant::now();
    let (image, dir) = build_image(prefix, guest, seed, iterations, flags);
    let run = boot(&image, &dir, limit).unwrap_or_else(|e| panic!("seed {seed:#x}: {e}"));
    let log = run.log.display().to_string();
    let fail = |what: String| -> ! { panic!("seed {seed:#x}: {what}; log: {log}") };
    // The root task stayed up and ended the run itself.
    if let Some(l) = run.line("root task panicked") {
        fail(format!("the root task panicked: {l}"));
    }
    let total = run
        .lines
        .iter()
        .find_map(|(_, l)| l.strip_prefix("capvisor: all VMs stopped, exit status "))
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or_else(|| fail("no \"all VMs stopped\" from the root task".into()));
    if run.status.code() != Some(total) {
        fail(format!("QEMU ended with {}, the root task said {total}", run.status));
    }
    // The good VM: its lines exactly, and powered off with 0.
    let expected = common::test_guest_lines(GOOD, true, true);
    let good: Vec<&str> =
        run.lines.iter().map(|(_, l)| l.as_str()).filter(|l| l.starts_with(&format!("[{GOOD}] "))).collect();
    if run.ended == Ended::GoodVmLate {
        fail(format!("the good VM had not finished after {GOOD_LIMIT_S} s"));
    }
    if good != expected {
        fail(format!("the good VM's lines changed:\n  expected {expected:#?}\n  got {good:#?}"));
    }
    if run.vm_end(GOOD) != Some(("powered off".into(), 0)) {
        fail(format!("the good VM ended {:?}", run.vm_end(GOOD)));
    }
    // The fuzz VM: progress, a known end, nothing odd.
    let Some((reason, status)) = run.vm_end(FUZZ) else { fail("no end reported for the fuzz VM".into()) };
    if let Err(e) = check_fuzz_end(&run, &reason, status) {
        fail(e);
    }
    let iterations_done = run.iterations();
    if iterations_done < 2000 {
        fail(format!("the fuzz VM got to {iterations_done} iterations"));
    }
    if let Some(verdict) = run.fuzz_lines().find_map(|l| l.strip_prefix("fuzz: contained: "))
        && verdict != "yes"
    {
        let odd: Vec<&str> = run.fuzz_lines().filter(|l| l.contains("odd")).collect();
        fail(format!("the fuzz VM saw answers PSCI or seL4 do not allow: {odd:#?}"));
    }
    let exits = run.exits(FUZZ).unwrap_or_else(|| fail("no counters of the fuzz VM".into()));
    if run.exits(GOOD).is_none() {
        fail("no counters of the good VM".into());
    }
    let how = match run.ended {
        Ended::ByItself => String::new(),
        Ended::TimeLimit => format!(" (still running at {} s: ended by the test)", limit.as_secs()),
        Ended::Stalled => format!(" (printed nothing for {STALL_S} s: ended by the test)"),
        Ended::GoodVmLate => unreachable!("failed above"),
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz_guest: seed {seed:#x}: {iterations_done} iterations, fuzz VM ended: {reason}, status {status}{how}; \
         good VM unaffected; {secs:.1} s"
    );
    let row: Vec<String> = exits.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!("fuzz_guest:   exits: {} (total {})", row.join(", "), exits.values().sum::<u64>());
    SeedReport { seed, iterations: iterations_done, fuzz_end: reason, exits, secs }
}

/// Whether the kernel at `prefix` was configured with boolean `option` on.
fn kernel_option(prefix: &Path, option: &str) -> bool {
    let k = boot_image::kconfig::Kconfig::from_prefix(prefix).unwrap_or_else(|e| panic!("{e}"));
    k.0.get(option).is_some_and(|v| v == "true")
}

#[test]
fn fuzz_guest_seeds_leave_the_root_task_and_the_good_vm_unharmed() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    if kernel_option(&prefix, "DEBUG_BUILD") {
        sel4_codegen::skip::cannot_run(&format!(
            "{} is a debug kernel: it performs a guest's seL4 debug calls (DebugHalt stops the machine), so the \
             fuzz guest runs on the release kernel only",
            prefix.display()
        ));
        return;
    }
    let minutes = env_u64("CAPVISOR_FUZZ_MINUTES");
    let flags = if std::env::var("CAPVISOR_FUZZ_DEBUG_REGISTERS").is_ok_and(|v| v == "1") {
        guest_abi::FLAG_DEBUG_REGISTERS
    } else {
        0
    };
    let iterations =
        env_u64("CAPVISOR_FUZZ_ITERATIONS").unwrap_or(if minutes.is_some() { LONG_ITERATIONS } else { ITERATIONS });
    let mut seeds: Vec<u64> = match env_u64("CAPVISOR_FUZZ_SEED") {
        Some(s) => vec![s],
        None => SEEDS.to_vec(),
    };
    let guest = common::test_guest("fuzz-guest");
    let start = Instant::now();
    let budget = minutes.map(|m| Duration::from_secs(m * 60));
    let mut reports: Vec<SeedReport> = Vec::new();
    let mut i = 0;
    loop {
        let seed = match seeds.get(i) {
            Some(s) => *s,
            None if budget.is_some() => {
                let s = next_seed(*seeds.last().expect("a first seed"));
                seeds.push(s);
                s
            }
            None => break,
        };
        let limit = match budget {
            // A seed takes what is left (at least 2 minutes), 10 minutes at most.
            Some(b) => {
                let left = b.saturating_sub(start.elapsed());
                if i >= 1 && left < Duration::from_secs(60) {
                    break;
                }
                left.clamp(Duration::from_secs(120), Duration::from_secs(600))
            }
            None => Duration::from_secs(FUZZ_LIMIT_S),
        };
        reports.push(run_seed(&prefix, guest, seed, iterations, flags, limit));
        i += 1;
    }
    // Every exit kind the fuzz mode aims at came up.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reports {
        for (k, n) in &r.exits {
            *totals.entry(k.clone()).or_default() += n;
        }
    }
    let missing: Vec<&str> =
        KINDS_AIMED_AT.iter().copied().filter(|k| totals.get(*k).is_none_or(|n| *n == 0)).collect();
    assert!(missing.is_empty(), "no fuzz VM exits of kinds {missing:?} over seeds {seeds:x?}: {totals:?}");
    let runs: Vec<String> =
        reports.iter().map(|r| format!("{:#x} ({}, {:.0} s)", r.seed, r.fuzz_end, r.secs)).collect();
    let row: Vec<String> = totals.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "fuzz_guest: {} seeds in {:.1} min: {}; {} iterations; exits survived: {} (total {})",
        reports.len(),
        start.elapsed().as_secs_f64() / 60.0,
        runs.join(", "),
        reports.iter().map(|r| r.iterations).sum::<u64>(),
        row.join(", "),
        totals.values().sum::<u64>()
    );
}

/// The numbers the fuzz mode aims at are the VMM's: the guest CSpace's fault endpoints and
/// the PSCI functions and codes (vm-runner's), the fault labels and message lengths (the
/// kernel's, as `sel4::fault` has them). Host only.
#[test]
fn the_fuzz_guests_vmm_numbers_are_vm_runners() {
    use sel4::fault::{
        cap_fault, label, unknown_syscall, user_exception, vcpu_fault, vgic_maintenance, vm_fault, vppi_event,
    };
    use vm_runner::devices::psci::{MPIDR_AFFINITY_MASK, fid, ret};
    for i in 0..8 {
        assert_eq!(guest_abi::fault_cptr(i), vm_runner::setup::fault_cptr(i as usize), "fault endpoint of vCPU {i}");
    }
    let labels = [
        (guest_abi::label::CAP_FAULT, label::CAP_FAULT, cap_fault::MIN_LENGTH),
        (guest_abi::label::UNKNOWN_SYSCALL, label::UNKNOWN_SYSCALL, unknown_syscall::LENGTH),
        (guest_abi::label::USER_EXCEPTION, label::USER_EXCEPTION, user_exception::LENGTH),
        (guest_abi::label::VM_FAULT, label::VM_FAULT, vm_fault::LENGTH),
        (guest_abi::label::VGIC_MAINTENANCE, label::VGIC_MAINTENANCE, vgic_maintenance::LENGTH),
        (guest_abi::label::VCPU_FAULT, label::VCPU_FAULT, vcpu_fault::LENGTH),
        (guest_abi::label::VPPI_EVENT, label::VPPI_EVENT, vppi_event::LENGTH),
    ];
    for (guest, vmm, len) in labels {
        assert_eq!(guest, vmm);
        assert_eq!(guest_abi::fault_words(guest), len as u64, "words of label {guest}");
    }
    let fids = [
        (guest_abi::psci::VERSION, fid::VERSION),
        (guest_abi::psci::CPU_SUSPEND_32, fid::CPU_SUSPEND_32),
        (guest_abi::psci::CPU_SUSPEND_64, fid::CPU_SUSPEND_64),
        (guest_abi::psci::CPU_OFF, fid::CPU_OFF),
        (guest_abi::psci::CPU_ON_32, fid::CPU_ON_32),
        (guest_abi::psci::CPU_ON_64, fid::CPU_ON_64),
        (guest_abi::psci::AFFINITY_INFO_32, fid::AFFINITY_INFO_32),
        (guest_abi::psci::AFFINITY_INFO_64, fid::AFFINITY_INFO_64),
        (guest_abi::psci::MIGRATE_INFO_TYPE, fid::MIGRATE_INFO_TYPE),
        (guest_abi::psci::SYSTEM_OFF, fid::SYSTEM_OFF),
        (guest_abi::psci::SYSTEM_RESET, fid::SYSTEM_RESET),
        (guest_abi::psci::FEATURES, fid::FEATURES),
    ];
    for (guest, vmm) in fids {
        assert_eq!(guest, vmm);
    }
    let codes = [
        (guest_abi::psci::NOT_SUPPORTED, ret::NOT_SUPPORTED),
        (guest_abi::psci::INVALID_PARAMETERS, ret::INVALID_PARAMETERS),
        (guest_abi::psci::ALREADY_ON, ret::ALREADY_ON),
        (guest_abi::psci::INVALID_ADDRESS, ret::INVALID_ADDRESS),
        (guest_abi::psci::VERSION_1_0, ret::VERSION_1_0),
        (guest_abi::psci::MPIDR_AFFINITY_MASK, MPIDR_AFFINITY_MASK),
    ];
    for (guest, vmm) in codes {
        assert_eq!(guest, vmm);
    }
    // The record lies in the fuzz VM's RAM, the last page, as its file says.
    let sys = vm_config::parse_system_file(&workspace().join("configs/test-guest-fuzz-pair.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let fuzz = sys.vms.iter().find(|v| v.name == FUZZ).expect("the fuzz VM in the pair");
    let ram = fuzz.memory.first().expect("RAM").range;
    assert_eq!((ram.base.0, ram.size_bytes), (guest_abi::RAM_BASE, guest_abi::RAM_BYTES));
    assert_eq!(guest_abi::PARAMS_ADDR + 0x1000, guest_abi::RAM_BASE + guest_abi::RAM_BYTES);
    assert_eq!(fuzz.entry_point.0, guest_abi::RAM_BASE + 0x300, "_start_fuzz");
    // A seed whose finale is SYSTEM_RESET ends the VM (check_fuzz_end) rather than running again.
    assert_eq!(fuzz.capvisor.on_reset, vm_config::OnReset::Stop, "configs/test-guest-fuzz.toml: on_reset");
    assert_eq!(sys.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), [FUZZ, GOOD]);
}
