//! The host-physical memory that the placement check (`vm_config::place`) sees before boot,
//! and how the tool knows it:
//! - the RAM the kernel manages and the device ranges: the kernel build's
//!   `support/platform_gen.json` (`$SEL4_PREFIX`, else the interface data
//!   `$CAPVISOR_SEL4_DATA`);
//! - what neither says (the machine's RAM, the devices the kernel drives, the console UART):
//!   capvisor's facts, `platforms/NAME/placement.txt` of the platform the kernel was built
//!   for (the prefix's `capvisor-platform`), built into the tool;
//! - the kernel image: its ELF (`bin/kernel.elf` of the prefix), placed at its physical
//!   addresses by the image tool; without one, the facts' bound from the start of managed RAM;
//! - the root task, its device tree and the objects seL4 makes for it at boot: exactly from
//!   the image tool's plan when the root-task ELF is known (`capvisor image`,
//!   [`from_plan`]); else (`capvisor vms`, `plan`) the top of RAM, sized by the bundle plus the
//!   facts' allowance.
//!
//! Owns: assembling that picture and printing it. Never touches: the rules (`vm_config::place`).

use std::path::{Path, PathBuf};

use boot_image::PhysRange;
use boot_image::elf::Elf;
use boot_image::plan::Plan;
use vm_config::place::{Facts, HostMemory, Span, Use};

/// capvisor's facts about QEMU virt (GICv2).
pub const FACTS: &str = include_str!("../../platforms/qemu-arm-virt/placement.txt");

/// The facts built into the tool, by platform (a folder of `platforms/`); a platform not
/// listed is QEMU virt's.
pub const PLATFORM_FACTS: &[(&str, &str)] = &[
    ("qemu-arm-virt", FACTS),
    ("qemu-arm-virt-gicv3", include_str!("../../platforms/qemu-arm-virt-gicv3/placement.txt")),
    ("rpi4", include_str!("../../platforms/rpi4/placement.txt")),
];

/// The root CNode's size in slots (log 2) that the kernel is built with (`ROOT_CNODE_SIZE_BITS`).
pub const ROOT_CNODE_SIZE_BITS: u32 = 16;

/// The facts of `platform` (QEMU virt's for a platform without its own).
pub fn facts_for(platform: &str) -> Facts {
    let (name, text) = PLATFORM_FACTS.iter().find(|(n, _)| *n == platform).copied().unwrap_or(PLATFORM_FACTS[0]);
    Facts::parse(text).unwrap_or_else(|e| panic!("platforms/{name}/placement.txt: {e}"))
}

/// What the kernel build says about the platform.
pub struct KernelBuild {
    /// RAM the kernel manages.
    pub managed: Vec<(u64, u64)>,
    /// Device ranges.
    pub devices: Vec<(u64, u64)>,
    /// The kernel ELF, when the prefix has one.
    pub kernel_elf: Option<PathBuf>,
    /// Cores the kernel is built for (`MAX_NUM_NODES` of its `gen_config.json`): every vCPU
    /// must be pinned to one of them.
    pub cores: u64,
    /// The platform the kernel was built for: the first word of the prefix's
    /// `capvisor-platform` (written by the CMake build), else qemu-arm-virt (the interface
    /// data's).
    pub platform: String,
}

impl KernelBuild {
    /// capvisor's facts about the platform the kernel was built for.
    pub fn facts(&self) -> Facts {
        facts_for(&self.platform)
    }
}

/// Reads the kernel build's platform description from `prefix` (else `$SEL4_PREFIX`, else the
/// interface data).
pub fn kernel_build(prefix: Option<&Path>) -> Result<KernelBuild, String> {
    let root = match prefix {
        Some(p) => p.to_path_buf(),
        None => kernel_build_root()?,
    };
    let source = root.join("support/platform_gen.json");
    let text = std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", source.display()))?;
    let ranges = |key: &str| -> Result<Vec<(u64, u64)>, String> {
        let list = json.get(key).and_then(|v| v.as_array()).ok_or(format!("{}: no {key:?} list", source.display()))?;
        list.iter()
            .map(|r| match (r.get("start").and_then(|v| v.as_u64()), r.get("end").and_then(|v| v.as_u64())) {
                (Some(s), Some(e)) if s < e => Ok((s, e)),
                _ => Err(format!("{}: {key}: {r} is not {{start, end}} with start < end", source.display())),
            })
            .collect()
    };
    let kernel = root.join("bin/kernel.elf");
    let config = root.join("libsel4/include/kernel/gen_config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    let cores = json
        .get("MAX_NUM_NODES")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: no MAX_NUM_NODES number", config.display()))?;
    let platform = std::fs::read_to_string(root.join("capvisor-platform"))
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "qemu-arm-virt".to_string());
    Ok(KernelBuild {
        managed: ranges("memory")?,
        devices: ranges("devices")?,
        kernel_elf: kernel.is_file().then_some(kernel),
        cores,
        platform,
    })
}

/// `$SEL4_PREFIX`, else the interface data.
pub fn kernel_build_root() -> Result<PathBuf, String> {
    sel4_codegen::prefix::env_path("SEL4_PREFIX")
        .or_else(sel4_codegen::prefix::shared_data)
        .ok_or_else(|| "no kernel build to read the platform from: set SEL4_PREFIX (or CAPVISOR_SEL4_DATA)".to_string())
}

fn page_up(x: u64) -> u64 {
    x.saturating_add(0xfff) & !0xfff
}

fn kept(start: u64, end: u64, what: String) -> Span {
    Span { start, end, used: Use::Taken, what }
}

/// The kernel image: its ELF's physical extent, else the facts' bound.
fn kernel_span(build: &KernelBuild, facts: &Facts) -> Result<Span, String> {
    let base = build.managed.first().map_or(0, |r| r.0);
    match &build.kernel_elf {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let elf = Elf::parse(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            let (lo, hi) = elf.paddr_bounds();
            Ok(kept(lo, page_up(hi), "the seL4 kernel image".into()))
        }
        None => Ok(kept(
            base,
            base + facts.kernel_at_most,
            format!("the seL4 kernel image (at most {} KiB; no kernel ELF to read)", facts.kernel_at_most >> 10),
        )),
    }
}

/// The picture for a bundle of `bundle_bytes` before the root task is built: the root task at
/// the top of RAM, its size bounded by the bundle and the facts' allowance.
pub fn for_bundle(bundle_bytes: u64, prefix: Option<&Path>) -> Result<HostMemory, String> {
    let build = kernel_build(prefix)?;
    let facts = build.facts();
    let top = build.managed.iter().map(|r| r.1).max().unwrap_or(0);
    let size = page_up(bundle_bytes) + facts.root_task_at_most;
    let kept = vec![
        kernel_span(&build, &facts)?,
        kept(
            top.saturating_sub(size),
            top,
            format!(
                "the root task (predicted: at most {} MiB, and this system's {} KiB bundle)",
                facts.root_task_at_most >> 20,
                page_up(bundle_bytes) >> 10
            ),
        ),
    ];
    let mut mem = HostMemory::predicted(&facts, &build.managed, &build.devices, &kept);
    mem.cores = build.cores;
    Ok(mem)
}

/// The picture once the image tool has placed everything: the kernel image, the device tree
/// of `dtb_bytes`, the root task's image and its boot objects, exactly.
pub fn from_plan(plan: &Plan<'_>, dtb_bytes: u64, build: &KernelBuild) -> Result<(HostMemory, Vec<Span>), String> {
    let facts = build.facts();
    let k = plan.kernel_image();
    let d = plan.dtb(dtb_bytes);
    let objects = plan.boot_objects(dtb_bytes, ROOT_CNODE_SIZE_BITS).ok_or(
        "no RAM left for the objects seL4 makes for the root task at boot (its CNode, VSpace, TCB): the kernel \
         would not boot",
    )?;
    let r = PhysRange { start: plan.boot.ui_p_start, end: plan.boot.ui_p_end };
    let kept = vec![
        kept(k.start, k.end, "the seL4 kernel image".into()),
        kept(objects.start, objects.end, "the root task's boot objects (made by seL4 at boot)".into()),
        kept(d.start & !0xfff, page_up(d.end), format!("the device tree the kernel copies ({dtb_bytes} bytes)")),
        kept(r.start, r.end, "the root task's image (with its VM bundle)".into()),
    ];
    let mut mem = HostMemory::predicted(&facts, &build.managed, &build.devices, &kept);
    mem.cores = build.cores;
    Ok((mem, kept))
}

/// One line per kept span, for the tools' output: `  [start, end) what`.
pub fn describe(kept: &[Span]) -> String {
    let mut out = String::new();
    for s in kept {
        out.push_str(&format!("  placement: {:#x} {:#x} {}\n", s.start, s.end, s.what));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sel4::{PhysAddr, UntypedDesc};
    use vm_config::model::{MemFlags, MemRegion, PassthroughDevice, PassthroughRegion};
    use vm_config::{GuestRange, MapType, SystemConfig, VmConfig, check_placement};

    /// The root task's picture of a real boot by capvisor's loader: the untyped list that
    /// `platforms/qemu-arm-virt/bootinfo-capvisor.txt` recorded.
    fn booted() -> HostMemory {
        booted_on("qemu-arm-virt")
    }

    /// The same for another platform of `crate::plan::PLATFORMS`, from its recorded boot and
    /// with its facts.
    fn booted_on(platform: &str) -> HostMemory {
        let (_, text, _) = crate::plan::PLATFORMS.iter().find(|(n, _, _)| *n == platform).expect("a known platform");
        let mut untyped = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("UT ")) {
            let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).expect(name);
            untyped.push(UntypedDesc {
                paddr: PhysAddr(u64::from_str_radix(field("paddr=").trim_start_matches("0x"), 16).expect("hex")),
                size_bits: field("size_bits=").parse().expect("size_bits"),
                is_device: field("device=") == "true",
            });
        }
        assert!(untyped.len() > 40, "the recorded untyped list");
        HostMemory::from_bootinfo(&facts_for(platform), &untyped)
    }

    /// The tools' picture before boot, for a small bundle.
    fn predicted() -> HostMemory {
        for_bundle(64 << 10, None).expect("the kernel build's platform (SEL4_PREFIX or the interface data)")
    }

    fn system(memory: Vec<MemRegion>, passthrough: Vec<PassthroughDevice>) -> SystemConfig {
        let mut vm = VmConfig::minimal(1, "wrong", GuestRange::new(0x4000_0000, 0x100_0000), 0x4000_0000);
        vm.memory.extend(memory);
        vm.passthrough = passthrough;
        SystemConfig { vms: vec![vm] }
    }

    fn ram(base: u64, size: u64, map: MapType) -> MemRegion {
        MemRegion { range: GuestRange::new(base, size), flags: MemFlags(0x7), map }
    }

    /// The wrong placements of issue 14, each refused by the tools' prediction and by the root
    /// task's check of a real boot, at the same entries.
    #[test]
    fn the_root_task_refuses_what_the_tools_refuse() {
        let on_ram = PassthroughDevice {
            name: "disk".into(),
            region: Some(PassthroughRegion {
                guest: GuestRange::new(0x0a00_0000, 0x1000),
                host: PhysAddr(0x7000_0000),
            }),
            irq: 0,
        };
        let cases: Vec<(&str, SystemConfig, &str)> = vec![
            ("over the kernel", system(vec![ram(0x6000_0000, 0x10_0000, MapType::Identical)], vec![]), "collides with"),
            (
                "over the root task",
                system(vec![ram(0xbfe0_0000, 0x10_0000, MapType::Identical)], vec![]),
                "collides with",
            ),
            (
                "reserved on the console UART",
                system(vec![ram(0x0900_0000, 0x1000, MapType::Reserved)], vec![]),
                "the UART the root task uses for the console",
            ),
            (
                "reserved on device MMIO",
                system(vec![ram(0x0a00_0000, 0x1000, MapType::Reserved)], vec![]),
                "would hand the guest a host device",
            ),
            (
                "identical past the end of RAM",
                system(vec![ram(0xc000_0000, 0x1000_0000, MapType::Identical)], vec![]),
                "is device memory, not RAM",
            ),
            ("more RAM than there is", system(vec![ram(0x5000_0000, 0x1_0000_0000, MapType::Alloc)], vec![]), "need 4"),
            ("passthrough on RAM", system(vec![], vec![on_ram]), "not device memory"),
        ];
        let (tools, root) = (predicted(), booted());
        for (what, sys, words) in &cases {
            let t = check_placement(sys, &tools);
            let r = check_placement(sys, &root);
            assert!(!t.is_empty() && t.iter().any(|p| p.to_string().contains(words)), "{what}: tools: {t:?}");
            assert!(!r.is_empty() && r.iter().any(|p| p.to_string().contains(words)), "{what}: root task: {r:?}");
            let fields = |v: &[vm_config::PlaceProblem]| {
                let mut f: Vec<String> = v.iter().map(|p| p.field.to_string()).collect();
                f.dedup();
                f
            };
            assert_eq!(fields(&t), fields(&r), "{what}: tools {t:?}, root task {r:?}");
        }
    }

    #[test]
    fn every_example_configuration_fits_both_pictures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let (tools, root) = (predicted(), booted());
        let (mut n, mut pi) = (0, 0);
        for e in std::fs::read_dir(&dir).expect("configs/") {
            let p = e.expect("entry").path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let sys = vm_config::parse_system_file(&p).unwrap_or_else(|e| panic!("{e}"));
            // The Raspberry Pi's files (rpi4-*.toml) are the Pi's: checked against its recorded
            // boot (the tools' prediction needs its kernel build), and refused on QEMU virt.
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("rpi4-") {
                assert_eq!(check_placement(&sys, &booted_on("rpi4")), vec![], "{}", p.display());
                assert_ne!(check_placement(&sys, &root), vec![], "{}", p.display());
                pi += 1;
                continue;
            }
            assert_eq!(check_placement(&sys, &tools), vec![], "{}", p.display());
            assert_eq!(check_placement(&sys, &root), vec![], "{}", p.display());
            n += 1;
        }
        assert!(n >= 9, "{n} configurations");
        assert!(pi >= 1, "{pi} Raspberry Pi configurations");
    }
}

/// The tools refuse a wrong placement before anything is built: `capvisor vms` writes no bundle,
/// `capvisor plan` plans nothing, and `capvisor image` makes no image of a root task that carries
/// the same VMs; each names the entry.
#[cfg(test)]
mod tools {
    use std::path::{Path, PathBuf};

    use boot_image::PhysRange;
    use boot_image::elf::EM_AARCH64;
    use boot_image::elf::write::{OutSegment, executable};
    use boot_image::plan::{Plan, PlanInput};
    use vm_runner::bundle::{self, VmImages};

    /// A directory with `wrong.toml` (the test guest's file with RAM put over the kernel and a
    /// MAP_RESERVED region on virtio-mmio) and a 4 KiB raw kernel image beside it.
    fn wrong_system(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capvisor-placement-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = include_str!("../../configs/test-guest.toml");
        let text = good
            .replace(r#"kernel_path = "test-guest""#, r#"kernel_path = "k.bin""#)
            .replace(
                "    [0x4000_0000, 0x100_0000, 0x7, 0],\n",
                "    [0x4000_0000, 0x100_0000, 0x7, 0],\n    [0x6000_0000, 0x10_0000, 0x7, 1],\n    [0x0a00_0000, 0x1000, 0x7, 2],\n",
            );
        assert_ne!(text, good, "the test guest's file changed shape");
        std::fs::write(dir.join("wrong.toml"), text).expect("write");
        std::fs::write(dir.join("k.bin"), vec![0u8; 4096]).expect("write");
        dir
    }

    fn assert_names_both(message: &str, with_lines: bool) {
        let lines: Vec<&str> = message.lines().filter(|l| l.contains("VM \"test-guest\"")).collect();
        assert_eq!(lines.len(), 2, "{message}");
        assert!(
            lines[0].contains("kernel.memory_regions[1]") && lines[0].contains("collides with the seL4 kernel image"),
            "{message}"
        );
        assert!(
            lines[1].contains("kernel.memory_regions[2]") && lines[1].contains("would hand the guest a host device"),
            "{message}"
        );
        if with_lines {
            assert!(lines[0].contains("wrong.toml:29:5: ") && lines[1].contains("wrong.toml:30:5: "), "{message}");
        }
    }

    #[test]
    fn vms_and_plan_refuse_at_the_line() {
        let dir = wrong_system("vms");
        let out = dir.join("vms.bundle");
        let e = crate::vms::run(&crate::vms::Args { config: dir.join("wrong.toml"), search: vec![], out: out.clone() })
            .expect_err("vms refuses");
        assert_names_both(&e.to_string(), true);
        assert!(!out.exists(), "no bundle is written");
        let e = crate::plan::plan(&crate::plan::Args {
            config: dir.join("wrong.toml"),
            platform: None,
            search: vec![],
            svg: Some(dir.join("wrong.svg")),
        })
        .expect_err("plan refuses");
        assert_names_both(&e.to_string(), true);
        let svg = std::fs::read_to_string(dir.join("wrong.svg")).expect("the picture is drawn anyway");
        assert!(svg.contains("#d00000") && svg.contains("2 refused"), "red and counted");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn image_refuses_a_root_task_carrying_them() {
        let dir = wrong_system("image");
        let sys = vm_config::parse_system_file(&dir.join("wrong.toml")).expect("parses: only placement is wrong");
        let kernel_bytes = [0u8; 4096];
        let images = [VmImages { kernel: &kernel_bytes, dtb: None, ramdisk: None, flash: Vec::new() }];
        let bundle = bundle::encode(&sys, &images, 0).expect("encode");
        // A root task whose data segment holds the bundle at a page boundary, as the root task
        // keeps it.
        let mut data = vec![0u8; 0x1000];
        data.extend_from_slice(&bundle);
        let code = [0u8; 64];
        let root = executable(
            EM_AARCH64,
            0x40_0000,
            &[
                OutSegment { vaddr: 0x40_0000, paddr: 0x40_0000, data: &code, memsz: 0x1000, flags: 5 },
                OutSegment { vaddr: 0x40_1000, paddr: 0x40_1000, data: &data, memsz: data.len() as u64, flags: 6 },
            ],
        );
        let kernel = executable(
            EM_AARCH64,
            0x80_6000_0000,
            &[OutSegment { vaddr: 0x80_6000_0000, paddr: 0x6000_0000, data: &code, memsz: 0x22_a000, flags: 7 }],
        );
        let ram = [PhysRange { start: 0x6000_0000, end: 0xc000_0000 }];
        let plan = Plan::new(&PlanInput {
            kernel: &kernel,
            root_task: &root,
            ram: &ram,
            loader: PhysRange { start: 0x4800_0000, end: 0x4801_0000 },
            dtb_max_bytes: 1 << 20,
            embedded_dtb: None,
            dtb_probe: None,
            uart: 0x0900_0000,
            tcr_el2: 0,
            cores: 1,
        })
        .expect("plan");
        let prefix = super::kernel_build_root().expect("a kernel build (SEL4_PREFIX or the interface data)");
        let mut args = crate::image::Args {
            kernel: None,
            root_task: dir.join("root-task"),
            dtb: None,
            dtb_probe: None,
            dtb_max: 1 << 20,
            loader: None,
            sel4_prefix: None,
            config: None,
            out: dir.join("image.elf"),
        };
        let no_dtb = Path::new("/nonexistent/kernel.dtb");
        let e = crate::image::check_placement(&args, &prefix, &root, &plan, no_dtb).expect_err("image refuses");
        assert_names_both(&e.to_string(), false);
        args.config = Some(dir.join("wrong.toml"));
        let e = crate::image::check_placement(&args, &prefix, &root, &plan, no_dtb).expect_err("image refuses");
        assert_names_both(&e.to_string(), true);
        let _ = std::fs::remove_dir_all(dir);
    }
}
