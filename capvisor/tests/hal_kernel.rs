//! hal-sel4 on the real kernel under QEMU, against the model.
//!
//! Builds the root task with `selftest-hal` (`root-task/src/halcheck.rs`), boots it, and
//! checks that every scenario of `hal-check` passed on the kernel; then boots the seL4 model
//! from the platform that boot printed (its own untyped list and slot ranges, which differ
//! from the recorded seL4 boot), gives the model's HAL what the root task's HAL was given
//! (the printed share: everything but what the runtime keeps for the console), runs the same
//! scenarios and the same seeded random sequence on it, and compares the two traces line by
//! line: results, physical addresses, slots,
//! virtual addresses, `Page_GetAddress` answers, error kinds and kernel-call counts. Also
//! boots the `bench-hal` build and checks and prints its rows, and checks the recorded
//! `platforms/qemu-arm-virt/bootinfo-capvisor.txt` against this boot (`CAPVISOR_BLESS=1`
//! rewrites it). Skips, saying why, without a kernel binary or QEMU. Logs are kept in
//! `<target>/tmp/hal-kernel*/`.

mod common;
mod hal_common;

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use common::Boot;
use hal_check::diff::compare;
use hal_check::{Config, replay};
use sel4_model::Platform;

/// One QEMU at a time from this file: the benchmark's wall times should not include the
/// other boot's load.
static QEMU: Mutex<()> = Mutex::new(());

/// The self-test boot, shared by the tests of this file.
fn selftest_boot(prefix: &Path) -> &'static Boot {
    static BOOT: OnceLock<Boot> = OnceLock::new();
    BOOT.get_or_init(|| {
        let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
        hal_common::boot(prefix, "selftest-hal", "hal-kernel")
    })
}

#[test]
fn scenarios_pass_and_the_model_agrees_on_every_line() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    let b = selftest_boot(&prefix);
    let log = b.log_path.display();
    for (_, l) in b.lines.iter().filter(|(_, l)| l.starts_with("hal-check") || l.contains("FAILED")) {
        eprintln!("{l}");
    }
    let kernel = hal_common::trace(b);
    for name in hal_check::scenarios::all::<sel4_model::Model>().map(|s| s.name) {
        assert!(
            kernel.contains(&format!("# scenario {name}: ok").as_str()),
            "scenario {name} on the kernel; log: {log}"
        );
    }
    assert!(b.line("selftest hal: ok").is_some(), "log: {log}");
    assert!(b.line("capvisor: ALL OK").is_some(), "log: {log}");
    assert_eq!(b.status.code(), Some(0), "QEMU exit status; log: {log}");

    // The same run on the model of this boot, the HAL given what the kernel's was.
    let model = hal_common::model_of(b);
    let share = hal_common::share(b);
    eprintln!("the HAL's share of the bootinfo: {}", share.line());
    assert!(!share.withheld_untyped.is_empty(), "the runtime keeps the console's untyped; log: {log}");
    let r = replay::run_on_model_with(model, &share, &Config::SELFTEST, false);
    assert_eq!(r.failures, 0, "on the model: {:?}", r.first_failure);
    let model_trace: Vec<&str> = r.trace.iter().map(String::as_str).collect();
    let c = compare(&kernel, &model_trace, 5);
    let random_ops = kernel
        .iter()
        .skip_while(|l| **l != "# random sequence")
        .take_while(|l| !l.starts_with("# random: "))
        .filter(|l| !l.starts_with('#'))
        .count();
    eprintln!(
        "differential: {} lines compared ({random_ops} operations of the random sequence), {} disagreements",
        c.lines, c.disagreements
    );
    for (i, k, m) in &c.first {
        eprintln!(
            "  line {i}:\n    kernel: {}\n    model:  {}",
            k.as_deref().unwrap_or("(none)"),
            m.as_deref().unwrap_or("(none)")
        );
    }
    assert_eq!(c.disagreements, 0, "kernel and model disagree; log: {log}");
    assert!(random_ops >= 1000, "{random_ops} random operations");
}

/// The recorded capvisor platform agrees with this boot on everything a root task's size does
/// not move: every device untyped and every RAM untyped of 4 MiB or more. With
/// `CAPVISOR_BLESS=1`, rewrites the file from this boot.
#[test]
fn recorded_capvisor_platform_matches_this_boot() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    let b = selftest_boot(&prefix);
    // One record per platform, and per core count beyond one (the kernel grows with it).
    let (platform, cpus) = common::prefix_platform();
    let file =
        if cpus == 1 { "bootinfo-capvisor.txt".to_string() } else { format!("bootinfo-capvisor-{cpus}cores.txt") };
    let path = common::workspace().join("platforms").join(&platform).join(file);
    let printed = hal_common::platform_text(b);
    let booted = Platform::parse("<boot>", &printed).expect("printed platform parses");
    if std::env::var_os("CAPVISOR_BLESS").is_some_and(|v| v == "1") {
        // A record with lines a boot does not print (rpi4's) is kept by hand (its README).
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!old.contains("Recorded by hand"), "record {} by hand (its README says how)", path.display());
        let mut text = header(&platform, cpus);
        text.push_str(&printed);
        std::fs::write(&path, text).expect("write the recorded platform");
        eprintln!("wrote {}", path.display());
    }
    let recorded_text = std::fs::read_to_string(&path).expect("read the recorded platform");
    let recorded = Platform::parse(&path.display().to_string(), &recorded_text).expect("recorded platform parses");
    let stable = |p: &Platform| -> Vec<(u64, u32, bool)> {
        let mut v: Vec<_> = p
            .untyped
            .iter()
            .filter(|u| u.is_device || u.size_bits >= 22)
            .map(|u| (u.paddr.get(), u.size_bits, u.is_device))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        stable(&recorded),
        stable(&booted),
        "{} no longer matches a boot (rerun with CAPVISOR_BLESS=1 to record this one)",
        path.display()
    );
}

/// `capvisor image` predicts where the kernel and the root task will sit (the placement check
/// refuses VM ranges there before boot); the boot's own bootinfo says where they are. RAM the
/// kernel manages that no untyped covers is exactly: the kernel image less the boot code seL4
/// frees after boot (its first 64 KiB, `.boot`, which comes back as RAM untyped), the root
/// task's boot objects, the device tree and the root task's image.
#[test]
fn placement_predicted_by_the_image_tool_is_where_this_boot_put_things() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    let b = selftest_boot(&prefix);
    let log = b.log_path.display();
    let booted = Platform::parse("<boot>", &hal_common::platform_text(b)).expect("printed platform parses");
    // The same build the boot ran, placed again.
    let dir = common::work_dir("hal-kernel");
    let built = common::Built {
        root_task: dir.join("cargo/aarch64-unknown-none/release/root-task"),
        loader: dir.join("cargo/aarch64-unknown-none/release/loader"),
    };
    let o = common::capvisor_image_with(&prefix, &built, &dir.join("placement.elf"), &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "capvisor image: {}", String::from_utf8_lossy(&o.stderr));
    let kept: Vec<(u64, u64, String)> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("placement: "))
        .map(|l| {
            let mut w = l.splitn(3, ' ');
            let hex =
                |s: Option<&str>| u64::from_str_radix(s.expect("field").trim_start_matches("0x"), 16).expect("hex");
            (hex(w.next()), hex(w.next()), w.next().unwrap_or("").to_string())
        })
        .collect();
    let find = |what: &str| {
        kept.iter().find(|k| k.2.contains(what)).unwrap_or_else(|| panic!("no {what:?} in the prediction:\n{out}"))
    };
    let kernel = find("kernel image");
    let objects = find("boot objects");
    let dtb = find("device tree");
    let image = find("root task's image");
    eprintln!(
        "predicted:\n{out}booted: image at {:#x}, boot objects {:?}",
        booted.image_paddr.get(),
        booted.rootserver
    );
    assert_eq!(image.0, booted.image_paddr.get(), "the root task's image; log: {log}");
    assert_eq!(objects.0, booted.rootserver.cnode.get(), "the root CNode opens the boot objects; log: {log}");
    assert_eq!(objects.1, booted.rootserver.tcb.get() + 2048, "the TCB closes them; log: {log}");
    // The gaps in the RAM untyped list, between the start of the kernel and the end of RAM.
    let mut ram: Vec<(u64, u64)> =
        booted.untyped.iter().filter(|u| !u.is_device).map(|u| (u.paddr.get(), u.end())).collect();
    ram.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = kernel.0;
    for (s, e) in ram.iter().copied().filter(|r| r.1 > kernel.0) {
        if s > at {
            gaps.push((at, s));
        }
        at = at.max(e);
    }
    if at < image.1 {
        gaps.push((at, image.1));
    }
    // Only gaps in the RAM the kernel manages count: a hole between RAM banks (the Raspberry
    // Pi's VideoCore share) is no one's.
    let memory = managed_ram(&prefix);
    gaps.retain(|&(s, e)| memory.iter().any(|&(ms, me)| s >= ms && e <= me));
    // The freed boot code comes back as RAM untyped from the kernel's base: one untyped when
    // the base is aligned (QEMU virt), several when it is not (the Pi's kernel at 0x1000).
    assert!(ram.iter().any(|r| r.0 == kernel.0), "the freed boot code is RAM untyped at the kernel's base");
    let mut freed_end = kernel.0;
    while let Some(r) = ram.iter().find(|r| r.0 == freed_end) {
        freed_end = r.1;
    }
    assert_eq!(
        gaps.first(),
        Some(&(freed_end, kernel.1)),
        "the kernel image past its boot code; gaps {gaps:x?}; log: {log}"
    );
    assert_eq!(gaps.get(1), Some(&(objects.0, objects.1)), "the boot objects; gaps {gaps:x?}; log: {log}");
    let (ds, de) = *gaps.get(2).expect("the device tree's gap");
    assert!(
        dtb.0 == ds && de <= dtb.1,
        "the device tree {ds:#x}..{de:#x} inside the predicted {:#x}..{:#x}",
        dtb.0,
        dtb.1
    );
    assert_eq!(gaps.get(3), Some(&(image.0, image.1)), "the root task's image; gaps {gaps:x?}; log: {log}");
    assert_eq!(gaps.len(), 4, "nothing else is kept; gaps {gaps:x?}");
}

/// The RAM the kernel at `prefix` manages (`memory` of its `support/platform_gen.json`).
fn managed_ram(prefix: &Path) -> Vec<(u64, u64)> {
    let path = prefix.join("support/platform_gen.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list = json["memory"].as_array().unwrap_or_else(|| panic!("{}: no memory list", path.display()));
    list.iter().map(|r| (r["start"].as_u64().expect("start"), r["end"].as_u64().expect("end"))).collect()
}

/// The recorded file's header: what booted, how the file was made.
fn header(platform: &str, cpus: u32) -> String {
    let env = common::workspace().join("platforms").join(platform).join("platform.env");
    let text = std::fs::read_to_string(&env).unwrap_or_default();
    let described = text.lines().find_map(|l| l.strip_prefix("DESCRIPTION=")).unwrap_or(platform);
    format!(
        "\
# seL4 16.0.0 on {described}, {cpus} core(s), booted by capvisor's own loader
# (`capvisor image`), as the root task built with `selftest-hal` printed it (HALPLAT lines). Generated:
# CAPVISOR_BLESS=1 SEL4_PREFIX=<kernel prefix> cargo test -p capvisor --test hal_kernel recorded_capvisor_platform
# The untyped at the top of RAM and the slot numbers depend on the root task image's size (build and
# features); everything below the root server objects does not. Format: platforms/qemu-arm-virt/README.md.
"
    )
}

#[test]
fn bench_rows_on_the_real_kernel() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    let b = {
        let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
        hal_common::boot(&prefix, "bench-hal", "hal-kernel-bench")
    };
    let log = b.log_path.display();
    assert!(b.line("selftest hal-bench: ok").is_some(), "log: {log}");
    assert_eq!(b.status.code(), Some(0), "log: {log}");
    let (rows, skipped, hz) = hal_common::bench_rows(&b);
    eprintln!("counter {hz:?} Hz; cases not measured on this platform: {skipped:?}\n{}", hal_common::table(&rows));
    assert!(hz.is_some_and(|h| h > 0), "counter frequency; log: {log}");
    for case in hal_check::bench::CASES {
        let has = |what: &str| rows.iter().any(|r| r.name == format!("alloc_{}.{what}", case.name));
        let skip = skipped.iter().any(|s| s.starts_with(&format!("{}:", case.name)));
        assert!(skip || (has("invocations") && has("time_per_mib") && has("again_time_per_mib")), "{}", case.name);
    }
    for r in &rows {
        assert!(r.value > 0.0, "{r:?}");
        if r.name.ends_with(".invocations") {
            assert_eq!(r.ratio, Some(1.0), "fresh allocations meet the lower bound: {r:?}");
        }
    }
    for what in ["cold_zero_time_per_mib", "frames_time_per_mib", "warm_zero_time_per_mib", "call_time"] {
        assert!(rows.iter().any(|r| r.name.starts_with(&format!("reference.{what}_"))), "reference {what}; log: {log}");
    }
}
