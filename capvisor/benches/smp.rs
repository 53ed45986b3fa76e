//! Benchmark: Linux with two vCPUs on two physical cores, against the same Linux on one core
//! and booted directly by QEMU with two.
//!
//! `cargo bench -p capvisor --bench smp [-- --json] [--iterations N]` with `SEL4_PREFIX` a
//! kernel built for two cores (`cmake -DCAPVISOR_NUM_CPUS=2`), and optionally
//! `SEL4_PREFIX_ONE_CORE` the same kernel for one core (the project's default build); without
//! it the one-core rows are left out. Needs QEMU and the Linux artifacts
//! (`guests/linux/fetch-artifacts`); otherwise it says why and prints nothing.
//!
//! Three machines boot `configs/linux-smp.toml`'s guest (its kernel, initramfs, two vCPUs,
//! RAM and command line):
//! - `capvisor_2cores`: the capvisor image on QEMU `-smp 2`, the vCPUs pinned to cores 0 and
//!   1, every fault handled by the VMM on core 0;
//! - `capvisor_1core`: the same on a one-core kernel and `-smp 1`: both vCPUs share the core;
//! - `direct`: QEMU `-smp 2` boots the kernel itself with the device tree capvisor generates.
//!
//! On each, timed on the host's wall clock: the boot (QEMU's start to `/init`'s marker), then
//! one CPU-bound busy loop in the shell (`i=0; while [ $i -lt N ]; ...`, no system calls, no
//! exits but the timer's), then two such loops at once (`(loop) & (loop) & wait`), each from
//! typing the command to its exit status. Two loops take as long as one where each vCPU has a
//! core of its own, twice as long where they share one. Rows, in seconds: each boot against
//! the direct one; each machine's two loops against its one loop; capvisor's loops against
//! the direct machine's; and the exits the VMM handled on core 0 (its counters table) during
//! the whole two-core run. QEMU runs the cores as threads of the host: on a host with two
//! cores that other work shares, the absolute numbers move from run to run; the ratios of
//! one run are the result.
//!
//! Prints a table, or with `--json` one JSON object per row:
//! `{"name", "value", "unit", "reference", "ratio", "reference_name"}`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::shell::Shell;
use common::{BenchRow, print_bench_rows, workspace};

const CONFIG: &str = "linux-smp.toml";
const BOOT: Duration = Duration::from_secs(900);
const COMMAND: Duration = Duration::from_secs(900);
/// Iterations of the busy loop: a few seconds under TCG.
const DEFAULT_ITERATIONS: u64 = 100_000;

/// What one machine measured, in seconds (and the exits the VMM counted, for capvisor).
struct Measured {
    boot: f64,
    one: f64,
    two: f64,
    exits: Option<u64>,
}

fn busy(iterations: u64) -> String {
    format!("i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done")
}

/// Wall time of `cmd` in the shell, from typing it to its exit status.
fn timed(sh: &mut Shell, cmd: &str) -> Result<f64, String> {
    let t = Instant::now();
    let (out, status) = sh.run(cmd, COMMAND)?;
    if status != 0 {
        return Err(format!("`{cmd}` exited with {status}: {out:?}; log: {}", sh.log.display()));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Boots `cmd`, runs the loops, ends the guest.
fn measure(cmd: Command, log: PathBuf, iterations: u64) -> Result<Measured, String> {
    let mut sh = Shell::start(cmd, log);
    let boot = sh.until("Linux's init marker", BOOT, |l| l.contains("capvisor-init: ready"))?.as_secs_f64();
    sh.ready(COMMAND)?;
    let one = timed(&mut sh, &busy(iterations))?;
    let two = timed(&mut sh, &format!("({l}) & ({l}) & wait", l = busy(iterations)))?;
    let (online, _) = sh.run("cat /sys/devices/system/cpu/online", COMMAND)?;
    if !online.iter().any(|l| l.trim() == "0-1") {
        return Err(format!("the guest has not both CPUs online: {online:?}; log: {}", sh.log.display()));
    }
    sh.type_line("exit 0");
    let (_, lines) = sh.finish(COMMAND);
    // The counters table: `capvisor:   <kind>  <exits>  <syscalls>  <per exit>  <predicted>`.
    let exits = lines
        .iter()
        .filter_map(|(_, l)| {
            let f: Vec<&str> = l.split_once("capvisor:")?.1.split_whitespace().collect();
            match f[..] {
                [kind, exits, _, _, _] if kind != "exit" => exits.parse::<u64>().ok(),
                _ => None,
            }
        })
        .reduce(|a, b| a + b);
    Ok(Measured { boot, one, two, exits })
}

/// The capvisor image of the VM file for the kernel at `prefix`, built in `dir`.
fn image(prefix: &Path, dir: &Path) -> Result<PathBuf, String> {
    Ok(common::config_image(prefix, &workspace().join("configs").join(CONFIG), None, dir, "linux-smp"))
}

/// The capvisor machine for the kernel at `prefix` (its platform and cores).
fn capvisor(prefix: &Path, dir: &Path) -> Result<Command, String> {
    let image = image(prefix, dir)?;
    let (platform, cpus) = common::platform_of(prefix);
    let mut cmd = Command::new(workspace().join("qemu/run-qemu.sh"));
    cmd.args(["--timeout", "1800", "--platform", &platform, "--cpus", &cpus.to_string()]).arg(image);
    Ok(cmd)
}

/// QEMU booting the guest itself, with the device tree capvisor generates for the VM file.
fn direct(art: &Path, dir: &Path) -> Result<Command, String> {
    let path = workspace().join("configs").join(CONFIG);
    let vm = vm_config::parse_system_file(&path).map_err(|e| e.to_string())?.vms.remove(0);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    common::direct_linux(art, &vm, &dir.join("direct.dtb"))
}

fn row(name: &str, value: f64, unit: &str, reference: Option<(&str, f64)>) -> BenchRow {
    BenchRow { name: name.into(), value, unit: unit.into(), reference: reference.map(|(n, v)| (n.to_string(), v)) }
}

fn rows(iterations: u64) -> Result<Vec<BenchRow>, String> {
    let two_prefix = sel4_codegen::prefix::env_path("SEL4_PREFIX").ok_or("SEL4_PREFIX is not set")?;
    let (_, cpus) = common::platform_of(&two_prefix);
    if cpus < 2 {
        return Err(format!(
            "SEL4_PREFIX={} is a one-core kernel: build one with -DCAPVISOR_NUM_CPUS=2",
            two_prefix.display()
        ));
    }
    let art = common::fetched(
        "guests/linux/artifacts",
        &["Image", "initramfs.cpio.gz", "disk.ext4"],
        "guests/linux/fetch-artifacts",
    )?;
    let work = common::work_dir("smp-bench");
    let direct = measure(direct(&art, &work)?, work.join("direct.log"), iterations)?;
    let two = measure(capvisor(&two_prefix, &work.join("two"))?, work.join("capvisor-2cores.log"), iterations)?;
    let one = match sel4_codegen::prefix::env_path("SEL4_PREFIX_ONE_CORE") {
        Some(p) => Some(measure(capvisor(&p, &work.join("one"))?, work.join("capvisor-1core.log"), iterations)?),
        None => {
            eprintln!("smp bench: SEL4_PREFIX_ONE_CORE is not set: no one-core rows");
            None
        }
    };

    let mut r = vec![
        row("boot_direct", direct.boot, "s", None),
        row("boot_capvisor_2cores", two.boot, "s", Some(("boot_direct", direct.boot))),
        row("loop_one_direct", direct.one, "s", None),
        row("loop_two_direct", direct.two, "s", Some(("loop_one_direct", direct.one))),
        row("loop_one_capvisor_2cores", two.one, "s", Some(("loop_one_direct", direct.one))),
        row("loop_two_capvisor_2cores", two.two, "s", Some(("loop_one_capvisor_2cores", two.one))),
        row("loop_two_capvisor_2cores_vs_direct", two.two, "s", Some(("loop_two_direct", direct.two))),
    ];
    if let Some(one) = &one {
        r.push(row("boot_capvisor_1core", one.boot, "s", Some(("boot_capvisor_2cores", two.boot))));
        r.push(row("loop_one_capvisor_1core", one.one, "s", Some(("loop_one_capvisor_2cores", two.one))));
        r.push(row("loop_two_capvisor_1core", one.two, "s", Some(("loop_one_capvisor_1core", one.one))));
        r.push(row("loop_two_capvisor_1core_vs_2cores", one.two, "s", Some(("loop_two_capvisor_2cores", two.two))));
    }
    if let Some(n) = two.exits {
        r.push(row("exits_capvisor_2cores", n as f64, "exits", None));
    }
    if let Some(n) = one.as_ref().and_then(|o| o.exits) {
        r.push(row("exits_capvisor_1core", n as f64, "exits", None));
    }
    Ok(r)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS);
    match rows(iterations) {
        Ok(r) => print_bench_rows(&r, json),
        Err(why) => eprintln!("smp bench: cannot run: {why}"),
    }
}
