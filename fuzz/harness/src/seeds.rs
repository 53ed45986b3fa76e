//! The starting corpora, made from the VM files in `configs/`: each target gets inputs in its
//! own layout (see the target modules) that reach deep into the code, so that fuzzing starts
//! from what capvisor really reads instead of from random bytes. Guest images are small
//! stand-ins (an `Image` header, a few bytes): placement and parsing depend on the
//! configuration and the headers, not on the images' contents.
//!
//! [`write_all`] writes one file per seed, named after what it came from, so that running
//! the generator again overwrites rather than duplicates.

use std::fs;
use std::path::Path;

use boot_image::elf::EM_AARCH64;
use boot_image::elf::write::{OutSegment, executable};
use boot_image::payload::Placement as CopyPlacement;
use boot_image::plan::{Plan, PlanInput};
use boot_image::{PhysRange, pagetable};
use vm_config::{GuestRange, SystemConfig, VmConfig};
use vm_runner::bundle::{self, VmImages};
use vm_runner::fdt::DtbSource;

use crate::input::Writer;
use crate::linux_image::Placement;
use crate::vm_exits::Setup;

/// The targets, as named in `Cargo.toml` and `fuzz_targets/`.
pub const TARGETS: [&str; 6] = ["vm_file", "bundle", "boot_payload", "linux_image", "vm_exits", "guest_fdt"];

/// One configuration file of `configs/`: its name, text, the VM files it names (with their
/// text) and the system it describes.
pub struct ConfigFile {
    /// File stem.
    pub name: String,
    /// Its text.
    pub text: String,
    /// For a system file, each VM file's text in order.
    pub vm_texts: Vec<String>,
    /// The parsed and checked system.
    pub system: SystemConfig,
}

/// Reads every `*.toml` of `dir` that parses and checks, in name order.
pub fn read_configs(dir: &Path) -> Result<Vec<ConfigFile>, String> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut vm_texts = Vec::new();
        let mut load = |rel: &str| -> Result<(String, String), String> {
            let p = dir.join(rel);
            let t = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            vm_texts.push(t.clone());
            Ok((p.display().to_string(), t))
        };
        let system = vm_config::parse_system_str(&path.display().to_string(), &text, &mut load)
            .map_err(|e| format!("configs must parse: {e}"))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(ConfigFile { name, text, vm_texts, system });
    }
    Ok(out)
}

/// A device tree like the one QEMU `virt` gives the loader: memory, a GICv2, a PL011.
pub fn host_dtb() -> Result<Vec<u8>, String> {
    const HOST: &str = r#"
[base]
id = 1
name = "host"
vm_type = 1
cpu_num = 1
[kernel]
entry_point = 0x4000_0000
image_location = "memory"
kernel_path = "none"
kernel_load_addr = 0x4000_0000
dtb_load_addr = 0x4000_0000
memory_regions = [[0x4000_0000, 0x8000_0000, 0x7, 0]]
[devices]
interrupt_mode = "emu"
emu_devices = [["gicd", 0x0800_0000, 0x1_0000, 0, 0x1, []], ["uart0", 0x0900_0000, 0x1000, 33, 0x2, []]]
[capvisor]
gic_cpu_interface = [0x0801_0000, 0x0804_0000, 0x2000]
"#;
    let vm = vm_config::parse_vm_str("the host device tree's configuration", HOST).map_err(|e| e.to_string())?;
    vm_runner::fdt::generate(&vm, None).map_err(|e| format!("the host device tree: {e}"))
}

/// A 64-byte arm64 `Image` header (`text_offset`, `image_size`, `flags`), then `pad` bytes.
pub fn image_header(text_offset: u64, image_size: u64, flags: u64, pad: usize) -> Vec<u8> {
    let mut h = vec![0u8; vm_runner::linux::HEADER_SIZE + pad];
    h[8..16].copy_from_slice(&text_offset.to_le_bytes());
    h[16..24].copy_from_slice(&image_size.to_le_bytes());
    h[24..32].copy_from_slice(&flags.to_le_bytes());
    let m = vm_runner::linux::MAGIC_OFFSET;
    h[m..m + 4].copy_from_slice(&vm_runner::linux::MAGIC.to_le_bytes());
    h
}

/// Flags of a Debian arm64 kernel: little-endian, 4 KiB pages, base anywhere.
const DEBIAN_FLAGS: u64 = 0b1010;

/// SplitMix64: deterministic filler, so seeds are the same on every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
}

/// Every VM of every configuration, with its file's name.
fn all_vms(configs: &[ConfigFile]) -> Vec<(String, &VmConfig)> {
    let mut out = Vec::new();
    for c in configs {
        for (i, vm) in c.system.vms.iter().enumerate() {
            out.push((format!("{}-{i}-{}", c.name, vm.name), vm));
        }
    }
    out
}

fn one(vm: &VmConfig) -> SystemConfig {
    SystemConfig { vms: vec![vm.clone()] }
}

fn encode(sys: &SystemConfig) -> Result<Vec<u8>, String> {
    vm_config::encode_system(sys).map_err(|e| e.to_string())
}

/// Seeds of `vm_file`: each file alone, and each system file followed by its VM files.
pub fn vm_file(configs: &[ConfigFile]) -> Vec<(String, Vec<u8>)> {
    let sep = crate::vm_file::SEPARATOR.to_string();
    configs
        .iter()
        .map(|c| {
            let mut parts = vec![c.text.clone()];
            parts.extend(c.vm_texts.iter().cloned());
            (c.name.clone(), parts.join(&sep).into_bytes())
        })
        .collect()
}

/// A VM's images, owned (a bundle borrows them).
struct Images {
    kernel: Vec<u8>,
    dtb: Option<Vec<u8>>,
    ramdisk: Option<Vec<u8>>,
    flash: Vec<Vec<u8>>,
}

impl Images {
    /// Small images for `vm`, in the shape its configuration asks for.
    fn for_vm(vm: &VmConfig) -> Result<Self, String> {
        let kernel = if vm.dtb.is_some() { image_header(0, 0x201_0000, DEBIAN_FLAGS, 64) } else { Mix(7).bytes(256) };
        let ramdisk = vm.ramdisk.as_ref().map(|_| Mix(11).bytes(64));
        let dtb = match DtbSource::of(vm) {
            DtbSource::None => None,
            DtbSource::File(_) => Some(host_dtb()?),
            DtbSource::Generate => {
                let initrd = vm.ramdisk.as_ref().map(|r| GuestRange::new(r.load_addr.0, 64));
                Some(vm_runner::fdt::generate(vm, initrd).map_err(|e| format!("{}: {e}", vm.name))?)
            }
        };
        let flash = vm.flash_images.iter().map(|_| Mix(13).bytes(32)).collect();
        Ok(Images { kernel, dtb, ramdisk, flash })
    }

    fn view(&self) -> VmImages<'_> {
        VmImages {
            kernel: &self.kernel,
            dtb: self.dtb.as_deref(),
            ramdisk: self.ramdisk.as_deref(),
            flash: self.flash.iter().map(Vec::as_slice).collect(),
        }
    }
}

/// Seeds of `bundle`: each configuration as `capvisor vms` would bundle it, with small images.
pub fn bundle(configs: &[ConfigFile]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for c in configs {
        let owned: Vec<Images> = c.system.vms.iter().map(Images::for_vm).collect::<Result<_, _>>()?;
        let views: Vec<VmImages<'_>> = owned.iter().map(Images::view).collect();
        let bytes = bundle::encode(&c.system, &views, 1_765_000_000).map_err(|e| format!("{}: {e}", c.name))?;
        out.push((c.name.clone(), bytes));
    }
    Ok(out)
}

/// Seeds of `boot_payload`: payloads `capvisor image` would make (a kernel and a root task as
/// small ELF files, QEMU `virt`'s RAM), with the segments in the payload or in place, with
/// and without a packed device tree; each sealed (mode 1) and as it is (mode 0).
pub fn boot_payload() -> Result<Vec<(String, Vec<u8>)>, String> {
    const KERNEL_OFFSET: u64 = 0x80_0000_0000;
    let ram = [PhysRange { start: 0x6000_0000, end: 0xc000_0000 }];
    let code = Mix(3).bytes(64);
    let kernel_paddr = 0x6000_0000;
    let kernel = executable(
        EM_AARCH64,
        kernel_paddr + KERNEL_OFFSET,
        &[OutSegment {
            vaddr: kernel_paddr + KERNEL_OFFSET,
            paddr: kernel_paddr,
            data: &code,
            memsz: 0x1000,
            flags: 7,
        }],
    );
    let root_task = executable(
        EM_AARCH64,
        0x40_0000,
        &[
            OutSegment { vaddr: 0x40_0000, paddr: 0x40_0000, data: &code, memsz: 0x1000, flags: 5 },
            OutSegment { vaddr: 0x40_1000, paddr: 0x40_1000, data: &code[..16], memsz: 0x3000, flags: 6 },
        ],
    );
    let dtb = host_dtb()?;
    let mut out = Vec::new();
    for (dtb_name, embedded_dtb) in [("dtb", Some(dtb.as_slice())), ("nodtb", None)] {
        let input = PlanInput {
            kernel: &kernel,
            root_task: &root_task,
            ram: &ram,
            loader: PhysRange { start: 0x4800_0000, end: 0x4802_0000 },
            dtb_max_bytes: 1 << 20,
            embedded_dtb,
            dtb_probe: Some(PhysRange { start: 0x4000_0000, end: 0x4010_0000 }),
            uart: 0x900_0000,
            tcr_el2: pagetable::tcr_el2(false),
            cores: 2,
        };
        let plan = Plan::new(&input).map_err(|e| format!("boot payload plan: {e}"))?;
        for (place_name, placement) in [("payload", CopyPlacement::Payload), ("inplace", CopyPlacement::InPlace)] {
            let bytes = plan.encode(placement);
            for mode in [1u8, 0] {
                let mut seed = vec![mode];
                seed.extend_from_slice(&bytes);
                out.push((format!("{place_name}-{dtb_name}-mode{mode}"), seed));
            }
        }
    }
    Ok(out)
}

/// Seeds of `linux_image`: each VM with a device tree placed as its file says, under a
/// Debian kernel's header; and headers of other shapes under `linux.toml`'s placement.
pub fn linux_image(configs: &[ConfigFile]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut first = None;
    for (name, vm) in all_vms(configs) {
        if vm.dtb.is_none() {
            continue;
        }
        let p = Placement {
            file_len: 0x1f6_e000,
            ram: vm.memory.iter().map(|m| (m.range.base.0, m.range.size_bytes)).collect(),
            load: vm.kernel.load_addr.0,
            entry: (vm.entry_point != vm.kernel.load_addr).then_some(vm.entry_point.0),
            dtb: vm.dtb.as_ref().map(|d| d.load_addr.0),
            ramdisk: vm.ramdisk.as_ref().map(|d| d.load_addr.0),
            initrd_len: vm.ramdisk.as_ref().map(|_| 0x80_0000),
            dtb_len: 0x2000,
        };
        let mut w = Writer(image_header(0, 0x201_0000, DEBIAN_FLAGS, 0));
        p.write(&mut w);
        out.push((name, w.0));
        first.get_or_insert(p);
    }
    let p = first.unwrap_or_default();
    let shapes = [
        ("legacy", image_header(0x8_0000, 0, 0, 0)),
        ("near-base-64k", image_header(0x8_0000, 0x100_0000, 0b0110, 0)),
        ("big-endian", image_header(0, 0x100_0000, 0b1011, 0)),
        ("reserved-flags", image_header(0, 0x100_0000, 0x1_000a, 0)),
    ];
    for (name, h) in shapes {
        let mut w = Writer(h);
        p.write(&mut w);
        out.push((name.to_string(), w.0));
    }
    out
}

/// Seeds of `vm_exits`: each VM, set up three ways, then deterministic pseudo-random steps.
pub fn vm_exits(configs: &[ConfigFile]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for (k, (name, vm)) in all_vms(configs).into_iter().enumerate() {
        let config = encode(&one(vm))?;
        let len = u16::try_from(config.len()).map_err(|_| format!("{name}: encoding too long"))?;
        for (variant, knobs) in [("plain", 0u8), ("on-touch-rom", 0b1_1110), ("other-policy", 0b1_0001)] {
            let mut w = Writer::default();
            w.u16(len).bytes(&config);
            Setup { vm: 0, knobs, rtc_base: 1_765_000_000, now_ns: 1_000_000 }.write(&mut w);
            let mut mix = Mix(0x5eed ^ (k as u64) << 8 ^ u64::from(knobs));
            if knobs & (1 << 4) != 0 {
                for _ in vm.emulated.iter().filter(|d| d.writable()) {
                    w.u8(16).bytes(&mix.bytes(16));
                }
            }
            w.bytes(&mix.bytes(768));
            out.push((format!("{name}-{variant}"), w.0));
        }
    }
    Ok(out)
}

/// Seeds of `guest_fdt`: each VM alone and each whole system, with a 64 KiB initrd.
pub fn guest_fdt(configs: &[ConfigFile]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let seed = |sys: &SystemConfig| -> Result<Vec<u8>, String> {
        let mut w = Writer::default();
        w.u64(0x1_0000).bytes(&encode(sys)?);
        Ok(w.0)
    };
    for (name, vm) in all_vms(configs) {
        out.push((name, seed(&one(vm))?));
    }
    for c in configs.iter().filter(|c| c.system.vms.len() > 1) {
        out.push((format!("{}-system", c.name), seed(&c.system)?));
    }
    Ok(out)
}

/// The seeds of `target`.
pub fn for_target(target: &str, configs: &[ConfigFile]) -> Result<Vec<(String, Vec<u8>)>, String> {
    match target {
        "vm_file" => Ok(vm_file(configs)),
        "bundle" => bundle(configs),
        "boot_payload" => boot_payload(),
        "linux_image" => Ok(linux_image(configs)),
        "vm_exits" => vm_exits(configs),
        "guest_fdt" => guest_fdt(configs),
        other => Err(format!("no target {other:?} (targets: {})", TARGETS.join(", "))),
    }
}

/// Runs `target`'s body on one input (the seed generator's self-check).
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "vm_file" => crate::vm_file::run(data),
        "bundle" => crate::bundle::run(data),
        "boot_payload" => crate::boot_payload::run(data),
        "linux_image" => crate::linux_image::run(data),
        "vm_exits" => crate::vm_exits::run(data),
        "guest_fdt" => crate::guest_fdt::run(data),
        _ => {}
    }
}

/// Writes the seeds of `targets` into `corpus/<target>/seed-<name>`, runs each target on its
/// seeds, and returns how many each got.
pub fn write_all(configs_dir: &Path, corpus: &Path, targets: &[&str]) -> Result<Vec<(String, usize)>, String> {
    let configs = read_configs(configs_dir)?;
    let mut counts = Vec::new();
    for &t in targets {
        let seeds = for_target(t, &configs)?;
        let dir = corpus.join(t);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, bytes) in &seeds {
            run_target(t, bytes);
            let path = dir.join(format!("seed-{name}"));
            fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        counts.push((t.to_string(), seeds.len()));
    }
    Ok(counts)
}
