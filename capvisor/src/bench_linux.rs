//! `capvisor bench-linux`: Linux boot time under capvisor against the same kernel and
//! initramfs booted directly by the same QEMU, measured in the same run.
//!
//! Each run starts QEMU and times, on the wall clock from the moment the process is spawned,
//! the console line `capvisor-init: ready` that the initramfs's `/init` prints once the
//! kernel has booted and run it; then it types `cat /proc/uptime` (when Linux's own clock
//! started, to split the boot into the part before Linux's clock runs and the rest) and
//! `exit 0` into the console (twice a second until the shell takes each) and waits for QEMU
//! to end. The reference is the direct boot:
//!
//! ```text
//! qemu-system-aarch64 -machine virt,virtualization=on,gic-version=2 -cpu cortex-a57
//!     -smp <cpu_num> -m <the VM's RAM> -nographic -kernel Image -initrd initramfs
//!     -append <the VM's cmdline>
//! ```
//!
//! that is, the machine the VM file gives the guest (vCPUs, RAM, command line), with QEMU's
//! own firmware-less boot and device tree. The capvisor run boots a capvisor image (the ELF
//! from `capvisor image`, its root task holding this VM) with `qemu/run-qemu.sh`. Runs
//! alternate between the two so that load from other processes spreads over both. The
//! report gives min, median and max per side, the ratio of the medians, and the VM's exits
//! by kind from the root task's counters table. The capvisor time splits at two console
//! lines: `capvisor: starting` (seL4 booted, the root task built the VM: RAM retyped and
//! zeroed by the kernel, images copied in) and the marker (the guest's own boot), so the
//! guest's part can be compared with the direct boot too. `--json` prints one row per
//! number: name, value, unit, reference (the reference row's median, or null; its name in
//! `reference_name`), ratio.
//!
//! Owns: starting QEMU, timing, and the report. Never touches: the image build.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vm_config::VmConfig;

/// The line `/init` prints when the guest is up.
pub const MARKER: &str = "capvisor-init: ready";

/// Arguments of `capvisor bench-linux`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The VM file (its kernel, initramfs, vCPUs, RAM and command line are used for both sides).
    #[arg(long, default_value = "configs/linux.toml")]
    pub config: PathBuf,
    /// A capvisor image whose root task runs this VM; without it only the reference is measured.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Runs per side.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Seconds one boot may take.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print JSON rows instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The VM file.
    #[error("{0}")]
    Config(#[from] vm_config::ConfigErrors),
    /// Not a Linux VM with an initramfs.
    #[error("{}: {what}", path.display())]
    NotLinux {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A file is missing.
    #[error("{}: not found ({hint})", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// How to get it.
        hint: &'static str,
    },
    /// QEMU could not be started.
    #[error("{what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A boot did not reach the marker.
    #[error("{side} run {run}: no `{MARKER}` within {timeout} s; last console lines:\n{tail}")]
    NoMarker {
        /// Which side.
        side: &'static str,
        /// Which run.
        run: u32,
        /// The limit.
        timeout: u64,
        /// The end of the console.
        tail: String,
    },
}

/// One boot.
#[derive(Clone, Debug, Default)]
pub struct Boot {
    /// Spawn to marker, if it came.
    pub to_marker: Option<Duration>,
    /// The console, line by line, with the time since spawn.
    pub lines: Vec<(Duration, String)>,
    /// Exits by kind, if the root task printed its counters.
    pub exits: Vec<(String, u64)>,
    /// When Linux's clock started (spawn to its zero), from `/proc/uptime` after the marker.
    pub clock_start: Option<Duration>,
}

/// The guest files and machine of a Linux VM file.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The VM.
    pub vm: VmConfig,
    /// Its kernel `Image`.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
}

impl Guest {
    /// Reads the VM file and checks its images exist.
    pub fn load(config: &Path) -> Result<Self, BenchError> {
        let sys = vm_config::parse_system_file(config)?;
        let vm = sys.vms.into_iter().next().ok_or(BenchError::NotLinux { path: config.into(), what: "no VM" })?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let rd = vm.ramdisk.as_ref().ok_or(BenchError::NotLinux { path: config.into(), what: "no ramdisk_path" })?;
        let (kernel, initrd) = (dir.join(&vm.kernel.path), dir.join(&rd.path));
        for p in [&kernel, &initrd] {
            if !p.is_file() {
                return Err(BenchError::Missing { path: p.clone(), hint: "run guests/linux/fetch-artifacts" });
            }
        }
        Ok(Guest { vm, kernel, initrd })
    }

    /// The VM's RAM in MiB.
    pub fn ram_mib(&self) -> u64 {
        self.vm.memory.iter().map(|m| m.range.size_bytes).sum::<u64>() >> 20
    }

    /// The direct QEMU command line for this guest.
    pub fn direct_command(&self) -> Command {
        let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
        let mut c = Command::new(qemu);
        c.args(["-machine", "virt,virtualization=on,gic-version=2", "-cpu", "cortex-a57"])
            .args(["-smp", &self.vm.cpu_num.to_string(), "-m", &self.ram_mib().to_string()])
            .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", self.vm.cmdline.as_deref().unwrap_or("console=ttyAMA0")]);
        c
    }
}

/// The capvisor QEMU command line for `image` (the project's `qemu/run-qemu.sh`).
pub fn capvisor_command(workspace: &Path, image: &Path, timeout: u64) -> Command {
    let mut c = Command::new(workspace.join("qemu/run-qemu.sh"));
    c.arg("--timeout").arg(timeout.to_string()).arg(image);
    c
}

/// Parses the root task's counters table (`capvisor:   MmioWrite   553   1651   2.98   2.98`:
/// exit kind, exits, system calls, ...) into (kind, exits); a later table replaces an
/// earlier one.
pub fn parse_exits(lines: &[String]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut in_table = false;
    for l in lines {
        let Some((_, rest)) = l.split_once("capvisor:") else {
            in_table = false;
            continue;
        };
        if rest.contains("counters of") {
            in_table = true;
            out.clear();
            continue;
        }
        if !in_table {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let row = match words.as_slice() {
            [kind, exits, syscalls, ..]
                if kind.starts_with(|c: char| c.is_ascii_uppercase())
                    && kind.chars().all(|c| c.is_ascii_alphanumeric())
                    && syscalls.parse::<u64>().is_ok() =>
            {
                exits.parse::<u64>().ok().map(|n| (kind.to_string(), n))
            }
            _ => None,
        };
        match row {
            Some(r) => out.push(r),
            // The header ("exit kind  exits ...") starts the table; anything else ends it.
            None if words.first() == Some(&"exit") => {}
            None => in_table = false,
        }
    }
    out
}

/// The uptime line `cat /proc/uptime` prints (`12.34 5.67`, after an optional `[vm] `
/// prefix): the first number, seconds since Linux's clock started.
pub fn parse_uptime(line: &str) -> Option<f64> {
    let rest = match line.strip_prefix('[') {
        Some(r) => r.split_once("] ")?.1,
        None => line,
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let two_decimals = |w: &str| w.split_once('.').is_some_and(|(a, b)| !a.is_empty() && b.len() == 2);
    match words[..] {
        [up, idle] if two_decimals(up) && two_decimals(idle) => {
            idle.parse::<f64>().ok()?;
            up.parse().ok()
        }
        _ => None,
    }
}

/// Starts `cmd`, times the marker, then types `cat /proc/uptime` until the answer comes (when
/// Linux's clock started, on the wall clock: the time of the answer less its value, to the
/// 10 ms the file gives) and `exit 0`; waits for the end (or kills QEMU at the time limit).
pub fn boot(mut cmd: Command, timeout: Duration) -> Result<Boot, std::io::Error> {
    let start = Instant::now();
    let mut child: Child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            if tx.send((Instant::now(), text)).is_err() {
                break;
            }
        }
    });
    let mut b = Boot::default();
    let mut marker = None;
    let deadline = start + timeout;
    // Typed until answered (the uptime) or until QEMU ends (`exit 0`): a line typed while the
    // shell starts can be lost (its line editor sets the terminal up), and extra ones after
    // power-off are harmless.
    let mut next_type = None;
    let mut clock_start = None;
    loop {
        let now = Instant::now();
        if let Some(at) = next_type
            && now >= at
        {
            let line: &[u8] = if clock_start.is_none() { b"cat /proc/uptime\n" } else { b"exit 0\n" };
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.write_all(line);
                let _ = stdin.flush();
            }
            next_type = Some(now + Duration::from_millis(500));
        }
        let wait = deadline.saturating_duration_since(now).min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok((t, line)) => {
                if marker.is_none() && line.contains(MARKER) {
                    marker = Some(t - start);
                    next_type = Some(Instant::now());
                } else if marker.is_some()
                    && clock_start.is_none()
                    && let Some(up) = parse_uptime(&line)
                {
                    clock_start = (t - start).checked_sub(Duration::from_secs_f64(up));
                    // Nothing to wait for: `exit 0` right away.
                    next_type = Some(Instant::now());
                }
                b.lines.push((t - start, line));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    b.to_marker = marker;
    b.clock_start = clock_start;
    b.exits = parse_exits(&b.lines.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>());
    Ok(b)
}

/// Min, median, max.
pub fn stats(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    let n = s.len();
    if n == 0 {
        return Default::default();
    }
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2 };
    (s[0], median, s[n - 1])
}

fn spawn(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Spawn { what: what.to_string(), source }
}

impl Boot {
    /// When the first line containing `text` came.
    pub fn at(&self, text: &str) -> Option<Duration> {
        self.lines.iter().find(|(_, l)| l.contains(text)).map(|(t, _)| *t)
    }
}

/// The root task's line once the VMs are built, just before they run.
pub const VM_START: &str = "capvisor: starting";

fn tail(lines: &[(Duration, String)]) -> String {
    lines.iter().rev().take(15).rev().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
}

/// The workspace holding `qemu/run-qemu.sh`: `$CAPVISOR_WORKSPACE`, else the one this tool
/// was built in.
fn workspace() -> PathBuf {
    std::env::var_os("CAPVISOR_WORKSPACE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Runs `capvisor bench-linux`.
pub fn run(args: &Args) -> Result<(), BenchError> {
    let guest = Guest::load(&args.config)?;
    if let Some(img) = &args.image
        && !img.is_file()
    {
        return Err(BenchError::Missing { path: img.clone(), hint: "build one with capvisor image" });
    }
    let timeout = Duration::from_secs(args.timeout);
    let (mut direct, mut capv, mut setup, mut guest_part) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Linux's clock: when it started (direct: from QEMU's start; capvisor: from the VM's
    // start) and what it read at the marker.
    let (mut direct_early, mut direct_clocked, mut capv_early, mut capv_clocked) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut exits = Vec::new();
    for run in 1..=args.runs {
        let b = boot(guest.direct_command(), timeout).map_err(spawn("qemu-system-aarch64"))?;
        let t = b.to_marker.ok_or_else(|| BenchError::NoMarker {
            side: "direct",
            run,
            timeout: args.timeout,
            tail: tail(&b.lines),
        })?;
        direct.push(t);
        if let Some(z) = b.clock_start {
            direct_early.push(z);
            direct_clocked.push(t.saturating_sub(z));
        }
        if let Some(img) = &args.image {
            let cmd = capvisor_command(&workspace(), img, args.timeout);
            let b = boot(cmd, timeout + Duration::from_secs(10)).map_err(spawn("qemu/run-qemu.sh"))?;
            let t = b.to_marker.ok_or_else(|| BenchError::NoMarker {
                side: "capvisor",
                run,
                timeout: args.timeout,
                tail: tail(&b.lines),
            })?;
            capv.push(t);
            if let Some(v) = b.at(VM_START) {
                setup.push(v);
                guest_part.push(t.saturating_sub(v));
                if let Some(z) = b.clock_start {
                    capv_early.push(z.saturating_sub(v));
                    capv_clocked.push(t.saturating_sub(z));
                }
            }
            exits = b.exits;
        }
        if !args.json {
            eprintln!(
                "run {run}/{}: direct {:.3} s{}",
                args.runs,
                direct[direct.len() - 1].as_secs_f64(),
                match capv.last() {
                    Some(c) => format!(", capvisor {:.3} s", c.as_secs_f64()),
                    None => String::new(),
                }
            );
        }
    }
    let name = &guest.vm.name;
    // Every timing row once: (JSON name, table label, samples, the row it is compared with).
    type Timing<'a> = (String, &'static str, &'a [Duration], Option<usize>);
    let mut timings: Vec<Timing<'_>> =
        vec![(format!("{name}_boot_to_init_direct_qemu"), "QEMU direct (reference)", &direct, None)];
    let (mut early_ref, mut clocked_ref) = (None, None);
    if !direct_early.is_empty() {
        early_ref = Some(timings.len());
        timings.push((
            format!("{name}_direct_to_clock_start"),
            "  of which: QEMU start to Linux's clock",
            &direct_early,
            None,
        ));
        clocked_ref = Some(timings.len());
        timings.push((
            format!("{name}_direct_clock_at_init"),
            "  of which: Linux's clock at init",
            &direct_clocked,
            None,
        ));
    }
    if !capv.is_empty() {
        timings.push((format!("{name}_boot_to_init_capvisor"), "capvisor", &capv, Some(0)));
        if !setup.is_empty() {
            timings.push((format!("{name}_capvisor_to_vm_start"), "  of which: QEMU start to VM start", &setup, None));
            timings.push((
                format!("{name}_capvisor_vm_start_to_init"),
                "  of which: VM start to init (guest boot)",
                &guest_part,
                Some(0),
            ));
        }
        if !capv_early.is_empty() {
            timings.push((
                format!("{name}_capvisor_vm_start_to_clock_start"),
                "    VM start to Linux's clock",
                &capv_early,
                early_ref,
            ));
            timings.push((
                format!("{name}_capvisor_clock_at_init"),
                "    Linux's clock at init",
                &capv_clocked,
                clocked_ref,
            ));
        }
    }
    let median_of = |i: usize| stats(timings[i].2).1.as_secs_f64();
    let ratio = |med: Duration, reference: Option<usize>| reference.map(|i| med.as_secs_f64() / median_of(i));

    if args.json {
        for (key, _, samples, reference) in &timings {
            let (min, med, max) = stats(samples);
            let row = serde_json::json!({
                "name": key, "value": med.as_secs_f64(), "unit": "s",
                "reference": reference.map(median_of), "reference_name": reference.map(|i| timings[i].0.clone()),
                "ratio": ratio(med, *reference),
                "min": min.as_secs_f64(), "max": max.as_secs_f64(), "runs": samples.len(),
            });
            println!("{row}");
        }
        for (kind, n) in &exits {
            let row = serde_json::json!({
                "name": format!("{name}_boot_exits_{kind}"), "value": n, "unit": "exits",
                "reference": null, "ratio": null,
            });
            println!("{row}");
        }
        return Ok(());
    }
    println!("{:<44} {:>10} {:>10} {:>10} {:>7}", "boot to `capvisor-init: ready`", "min", "median", "max", "ratio");
    for (i, (_, label, samples, reference)) in timings.iter().enumerate() {
        let (min, med, max) = stats(samples);
        // The first row is the reference itself.
        let r = match ratio(med, *reference) {
            Some(r) => format!("{r:.2}"),
            None if i == 0 => "1.00".to_string(),
            None => String::new(),
        };
        let label = if label.starts_with(' ') { label.to_string() } else { format!("{name}: {label}") };
        println!(
            "{label:<44} {:>9.3}s {:>9.3}s {:>9.3}s {r:>7}",
            min.as_secs_f64(),
            med.as_secs_f64(),
            max.as_secs_f64()
        );
    }
    if !direct_early.is_empty() {
        println!("(Linux's clock: when it started, from `cat /proc/uptime` typed after the marker, to its 10 ms;");
        println!(" direct QEMU's row includes QEMU's own start, the VM's row does not)");
    }
    if args.image.is_none() {
        println!("(no --image: capvisor side not measured)");
    } else if exits.is_empty() {
        println!("(the root task printed no exit counters)");
    } else {
        println!("exits during the last capvisor run (boot, shell exit, power-off):");
        for (kind, n) in &exits {
            println!("  {kind:<20} {n:>10}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_table_parses_and_only_its_rows_count() {
        let lines: Vec<String> = [
            "capvisor:   MmioWrite   1   2   2.00   2.00",
            "capvisor: counters of \"linux\" (VMM system calls per exit, measured; predicted):",
            "capvisor:   exit kind          exits  syscalls  per exit predicted",
            "capvisor:   MmioRead             442      1326      3.00      3.00",
            "capvisor:   Wfi                41981    167924      4.00      4.00",
            "capvisor: all VMs stopped, exit status 0",
            "capvisor:   Hvc   7   6   0.85   1.00",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Rows outside a table (before the header, after its end) are not counted.
        assert_eq!(parse_exits(&lines), [("MmioRead".to_string(), 442), ("Wfi".to_string(), 41981)]);
    }

    #[test]
    fn uptime_lines_parse_with_or_without_the_vm_prefix_and_nothing_else_does() {
        assert_eq!(parse_uptime("1.65 0.49"), Some(1.65));
        assert_eq!(parse_uptime("[linux] 12.07 3.10"), Some(12.07));
        assert_eq!(parse_uptime("[linux] / # cat /proc/uptime"), None);
        assert_eq!(parse_uptime("capvisor: 1.00 2.00"), None, "a line of the root task's");
        assert_eq!(parse_uptime("1.6 0.49"), None, "not the file's two decimals");
        assert_eq!(parse_uptime("[    1.137247] reboot: Power down"), None);
        assert_eq!(parse_uptime("1.65 0.49 7"), None);
    }

    #[test]
    fn stats_take_the_median_of_odd_and_even_counts() {
        let s = |v: &[u64]| stats(&v.iter().map(|ms| Duration::from_millis(*ms)).collect::<Vec<_>>());
        assert_eq!(s(&[3, 1, 2]), (Duration::from_millis(1), Duration::from_millis(2), Duration::from_millis(3)));
        assert_eq!(s(&[4, 1, 2, 3]).1, Duration::from_micros(2500));
        assert_eq!(s(&[]), Default::default());
    }
}
