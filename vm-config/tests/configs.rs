//! The example configurations in `configs/` parse, survive the compact encoding, and sit where
//! the root task's placement check allows them on the untyped memory seL4 16.0.0 actually
//! handed a root task on QEMU virt (the recorded bootinfo in the interface data, when given);
//! the Raspberry Pi's (rpi4-*.toml) on the bootinfo recorded for it (platforms/rpi4).

use std::path::{Path, PathBuf};

use sel4::{PhysAddr, UntypedDesc};
use vm_config::{Facts, HostMemory, check_placement, decode_system, encode_system, load_system, parse_system_file};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn config_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// The platform facts of QEMU virt (`platforms/qemu-arm-virt/placement.txt`).
fn facts() -> Facts {
    facts_of("qemu-arm-virt")
}

/// The placement facts of `platforms/<platform>`.
fn facts_of(platform: &str) -> Facts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../platforms/{platform}/placement.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Facts::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The untyped list recorded from a real boot, from the interface data.
fn recorded_untypeds() -> Option<Vec<UntypedDesc>> {
    let prefix = sel4_codegen::prefix::shared_data()?;
    let text = std::fs::read_to_string(Path::new(&prefix).join("boot/qemu-arm-virt-bootinfo.txt")).ok()?;
    Some(untypeds_of(&text))
}

/// The Raspberry Pi 4's untyped list, recorded on QEMU raspi4b (platforms/rpi4).
fn rpi4_untypeds() -> Vec<UntypedDesc> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/rpi4/bootinfo-capvisor.txt");
    untypeds_of(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn untypeds_of(text: &str) -> Vec<UntypedDesc> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("UT ")) {
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {line}"))
        };
        let paddr = u64::from_str_radix(field("paddr=").trim_start_matches("0x"), 16).unwrap();
        let size_bits = field("size_bits=").parse().unwrap();
        let is_device = field("device=") == "true";
        v.push(UntypedDesc { paddr: PhysAddr(paddr), size_bits, is_device });
    }
    assert!(!v.is_empty(), "no UT lines in the recorded bootinfo");
    v
}

#[test]
fn every_example_config_parses_round_trips_and_fits_the_recorded_untypeds() {
    let files = config_files();
    assert!(files.len() >= 3, "expected the example configs, found {files:?}");
    let untypeds = recorded_untypeds();
    if untypeds.is_none() {
        println!("SEL4_PREFIX has no boot/qemu-arm-virt-bootinfo.txt: untyped check skipped");
    }
    for f in &files {
        let sys = parse_system_file(f).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
        assert!(!sys.vms.is_empty());
        let bytes = encode_system(&sys).unwrap();
        assert_eq!(decode_system(&bytes).as_ref(), Ok(&sys), "{}", f.display());
        assert_eq!(load_system(&bytes).as_ref(), Ok(&sys));
        // The Raspberry Pi's files (rpi4-*.toml) are the Pi's: checked on its recorded boot.
        if f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rpi4-")) {
            let problems = check_placement(&sys, &HostMemory::from_bootinfo(&facts_of("rpi4"), &rpi4_untypeds()));
            assert!(problems.is_empty(), "{}: {problems:?}", f.display());
            continue;
        }
        if let Some(uts) = &untypeds {
            let problems = check_placement(&sys, &HostMemory::from_bootinfo(&facts(), uts));
            assert!(problems.is_empty(), "{}: {problems:?}", f.display());
        }
    }
}

#[test]
fn two_vms_is_the_two_test_guests() {
    let sys = parse_system_file(&configs_dir().join("two-vms.toml")).unwrap();
    let names: Vec<&str> = sys.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["test-guest", "test-guest-b"]);
    assert_eq!(sys.vms[0].cpu_num, 2);
    assert_eq!(sys.vms[0].mpidr(1), 1);
}

#[test]
fn the_recorded_untypeds_do_not_back_a_gicv_outside_device_memory() {
    // A negative control for the check above: the same system with the GIC CPU interface
    // moved onto RAM is refused (passthrough only on device memory the platform lists).
    let Some(uts) = recorded_untypeds() else {
        println!("SEL4_PREFIX has no recorded bootinfo: skipped");
        return;
    };
    let mut sys = parse_system_file(&configs_dir().join("two-vms.toml")).unwrap();
    if let Some(g) = sys.vms[0].capvisor.gic_cpu_interface.as_mut() {
        g.host = PhysAddr(0x7000_0000);
    }
    let problems = check_placement(&sys, &HostMemory::from_bootinfo(&facts(), &uts));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].to_string().contains("not device memory"), "{}", problems[0]);
}

#[test]
fn vcpus_must_be_pinned_to_cores_the_kernel_runs_on() {
    // Only the core problems: this picture has no memory at all.
    let mut mem = HostMemory { cores: 2, ..HostMemory::default() };
    let core_problems = |sys: &vm_config::SystemConfig, mem: &HostMemory| -> Vec<vm_config::PlaceProblem> {
        check_placement(sys, mem)
            .into_iter()
            .filter(|p| matches!(p.kind, vm_config::PlaceKind::NoSuchCore { .. }))
            .collect()
    };
    // The example files name cores 0 and 1 at most: they fit a two-core kernel.
    for f in config_files() {
        let sys = parse_system_file(&f).unwrap();
        let cores = core_problems(&sys, &mem);
        assert!(cores.is_empty(), "{}: {cores:?}", f.display());
    }
    let path = configs_dir().join("linux-smp.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replace("phys_cpu_ids = [0, 1]", "phys_cpu_ids = [0, 2]");
    assert_ne!(bad, text);
    let file = std::env::temp_dir().join(format!("capvisor-cores-{}.toml", std::process::id()));
    std::fs::write(&file, &bad).unwrap();
    let sys = parse_system_file(&file).unwrap();
    let problems = core_problems(&sys, &mem);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field.to_string(), "base.phys_cpu_ids[1]");
    assert_eq!(
        problems[0].to_string(),
        "VM \"linux-smp\": vCPU 1 is pinned to physical core 2, but the kernel runs on cores 0 to 1 \
         (build with -DCAPVISOR_NUM_CPUS=3, or name a core below 2)"
    );
    // The tools name the line and the field.
    let err = vm_config::check_placement_file(&file, &sys, &mem).unwrap_err().to_string();
    let line = bad.lines().position(|l| l.starts_with("phys_cpu_ids")).unwrap() + 1;
    assert!(err.contains(&format!("{}:{line}:", file.display())), "{err}");
    assert!(err.contains("base.phys_cpu_ids[1]") && err.contains("physical core 2"), "{err}");
    // One core: nothing is pinned, so the entry is only the MPIDR the vCPU reports.
    mem.cores = 1;
    assert_eq!(core_problems(&sys, &mem), vec![]);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn the_gicv3_platform_facts_parse_and_name_no_gicv() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/qemu-arm-virt-gicv3/placement.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let facts = Facts::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(facts.gicv.is_none(), "a GICv3 host has no GICV frames to map");
    assert!(text.contains("taken 0x080a0000..0x081a0000"), "the redistributors the kernel drives");
    let sys = parse_system_file(&configs_dir().join("test-guest-gicv3.toml")).unwrap();
    assert_eq!(sys.vms[0].gic_version(), vm_config::GicVersion::V3);
    if let Some(uts) = recorded_untypeds() {
        assert_eq!(check_placement(&sys, &HostMemory::from_bootinfo(&facts, &uts)), vec![]);
    }
}
