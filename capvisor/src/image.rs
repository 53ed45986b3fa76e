//! `capvisor image`: checks the kernel and root task, places them ([`boot_image::plan`]),
//! and writes the loader with its payload as an ELF (QEMU `-kernel`) and a flat binary
//! (`OUT.bin`, for U-Boot or the Raspberry Pi firmware) with the load address printed.
//!
//! The ELF gives every kernel and root-task segment its own `PT_LOAD` at its final physical
//! address, so QEMU's ELF loader puts the bytes there and the loader only checks them (no
//! copy of tens of megabytes at boot); its payload holds the copy table without the bytes.
//! The flat binary has one load address, so it carries the bytes in the payload and the
//! loader copies them.
//!
//! Owns: reading the input files and the kernel prefix, and the error messages that name
//! file and field. Never touches: the placement rules (boot-image) or the loader.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use boot_image::elf::{EM_AARCH64, Elf, write as elf_write};
use boot_image::fdt::Fdt;
use boot_image::kconfig::{self, Kconfig};
use boot_image::pagetable;
use boot_image::payload::Placement;
use boot_image::plan::{Plan, PlanInput};
use boot_image::{Image, PhysRange};

/// Bytes QEMU reserves for the DTB it places at the base of RAM for ELF images.
const QEMU_DTB_AREA: u64 = 1 << 20;
/// QEMU virt's console, when the platform DTB names none.
const DEFAULT_UART: u64 = 0x0900_0000;

/// Arguments of `capvisor image`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The seL4 kernel ELF [default: $SEL4_PREFIX/bin/kernel.elf].
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The root task ELF.
    #[arg(long)]
    pub root_task: PathBuf,
    /// A device tree to pack into the image instead of the one the firmware passes.
    #[arg(long)]
    pub dtb: Option<PathBuf>,
    /// Where the loader looks for the firmware's DTB when x0 holds none: an address, or
    /// `none` [default: the base of RAM in $SEL4_PREFIX/support/kernel.dtb, where QEMU puts it].
    #[arg(long, value_parser = parse_probe)]
    pub dtb_probe: Option<Probe>,
    /// Bytes reserved for the device tree below the root task.
    #[arg(long, default_value_t = 1 << 20)]
    pub dtb_max: u64,
    /// The loader ELF [default: $CAPVISOR_LOADER, else the loader built next to this tool].
    #[arg(long)]
    pub loader: Option<PathBuf>,
    /// The installed kernel prefix [default: $SEL4_PREFIX].
    #[arg(long)]
    pub sel4_prefix: Option<PathBuf>,
    /// The system or VM file the root task's bundle was packed from, so that a placement the
    /// check refuses is named at its line (without it: at the VM and field).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output ELF; the flat binary goes to OUT.bin.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

/// `--dtb-probe`: an address, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Do not probe.
    None,
    /// Probe this physical address.
    At(u64),
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    if s == "none" {
        return Ok(Probe::None);
    }
    let n = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    n.map(Probe::At).map_err(|_| format!("{s}: want an address (0x40000000) or none"))
}

/// What went wrong, naming the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No kernel prefix.
    #[error(
        "no kernel prefix: set SEL4_PREFIX or pass --sel4-prefix (an installed seL4 with bin/kernel.elf, libsel4/include and support/platform_gen.json)"
    )]
    NoPrefix,
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An input ELF is unusable.
    #[error("{}: {err}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        err: boot_image::Error,
    },
    /// A malformed input (platform description, DTB, configuration).
    #[error("{}: {message}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The root task was built for another kernel configuration.
    #[error("{}: section {}: built for another kernel configuration than {}:\n{diff}", root_task.display(), kconfig::SECTION, prefix.display())]
    ConfigMismatch {
        /// The root task.
        root_task: PathBuf,
        /// The prefix.
        prefix: PathBuf,
        /// One line per differing option.
        diff: String,
    },
    /// The VMs in the root task's bundle do not fit where the kernel and root task will sit.
    #[error("{}: the VMs it carries cannot sit where the configuration puts them:\n{message}", root_task.display())]
    Placement {
        /// The root task.
        root_task: PathBuf,
        /// One refusal per line.
        message: String,
    },
    /// No loader found.
    #[error("no loader ELF: pass --loader or set CAPVISOR_LOADER (looked at {looked})")]
    NoLoader {
        /// Where it looked.
        looked: String,
    },
    /// Placement failed.
    #[error("placing {} and {}: {err}", kernel.display(), root_task.display())]
    Plan {
        /// The kernel.
        kernel: PathBuf,
        /// The root task.
        root_task: PathBuf,
        /// Why.
        err: boot_image::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Io { path: path.to_path_buf(), source })
}

fn find_loader(explicit: Option<&Path>) -> Result<PathBuf, ImageError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("CAPVISOR_LOADER") {
        return Ok(PathBuf::from(p));
    }
    let mut looked = Vec::new();
    if let Some(dir) =
        std::env::current_exe().ok().and_then(|e| e.parent().and_then(|d| d.parent()).map(Path::to_path_buf))
    {
        for profile in ["release", "debug"] {
            let p = dir.join("aarch64-unknown-none").join(profile).join("loader");
            if p.is_file() {
                return Ok(p);
            }
            looked.push(p.display().to_string());
        }
    }
    Err(ImageError::NoLoader { looked: looked.join(", ") })
}

/// The kernel's RAM: `memory` of `support/platform_gen.json`.
pub fn platform_memory(path: &Path) -> Result<Vec<PhysRange>, ImageError> {
    let bad = |message: String| ImageError::Input { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io { path: path.to_path_buf(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("line {}: {e}", e.line())))?;
    let list = json.get("memory").and_then(|m| m.as_array()).ok_or_else(|| bad("no \"memory\" list".into()))?;
    let mut ram = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let field =
            |f: &str| m.get(f).and_then(|v| v.as_u64()).ok_or_else(|| bad(format!("memory[{i}].{f} is not a number")));
        let (start, end) = (field("start")?, field("end")?);
        if end <= start {
            return Err(bad(format!("memory[{i}]: end {end:#x} <= start {start:#x}")));
        }
        ram.push(PhysRange { start, end });
    }
    ram.sort_by_key(|r| r.start);
    Ok(ram)
}

/// Checks that the root task's embedded kernel configuration equals the prefix's.
pub fn check_kernel_config(root_task: &Path, root_bytes: &[u8], prefix: &Path) -> Result<Kconfig, ImageError> {
    let installed = Kconfig::from_prefix(prefix)
        .map_err(|e| ImageError::Input { path: e.file.clone(), message: e.message.clone() })?;
    let elf = Elf::parse(root_bytes).map_err(|err| ImageError::Elf {
        path: root_task.to_path_buf(),
        err: boot_image::Error::Elf { image: Image::RootTask, err },
    })?;
    let section = elf.section(kconfig::SECTION).ok_or_else(|| ImageError::Input {
        path: root_task.to_path_buf(),
        message: format!(
            "no {} section: not built with the sel4-root-task runtime, so its kernel configuration is unknown",
            kconfig::SECTION
        ),
    })?;
    let built = std::str::from_utf8(section).ok().and_then(Kconfig::from_text).ok_or_else(|| ImageError::Input {
        path: root_task.to_path_buf(),
        message: format!("section {} is not a {} text", kconfig::SECTION, kconfig::HEADER),
    })?;
    let diff = built.diff(&installed);
    if !diff.is_empty() {
        let mut text = String::new();
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        for (k, b, i) in diff.iter().take(10) {
            let _ = writeln!(text, "  {k}: root task built with {}, kernel has {}", show(b), show(i));
        }
        if diff.len() > 10 {
            let _ = writeln!(text, "  ... and {} more", diff.len() - 10);
        }
        text.push_str("  rebuild the root task with SEL4_PREFIX pointing at this kernel");
        return Err(ImageError::ConfigMismatch {
            root_task: root_task.to_path_buf(),
            prefix: prefix.to_path_buf(),
            diff: text,
        });
    }
    Ok(installed)
}

/// The loader's segments laid out flat from its lowest physical address, zero-filled up
/// to `__payload_start` (the end of the last segment rounded up to 4 KiB).
pub fn flatten_loader(path: &Path, bytes: &[u8]) -> Result<(u64, Vec<u8>, u64), ImageError> {
    let elf = Elf::parse(bytes).map_err(|err| ImageError::Elf {
        path: path.to_path_buf(),
        err: boot_image::Error::Elf { image: Image::Loader, err },
    })?;
    let (lo, hi) = elf.paddr_bounds();
    if elf.entry() != lo {
        return Err(ImageError::Input {
            path: path.to_path_buf(),
            message: format!("e_entry {:#x} is not the image's first byte {lo:#x}", elf.entry()),
        });
    }
    let end = hi.next_multiple_of(pagetable::PAGE_BYTES);
    let mut flat = vec![0u8; (end - lo) as usize];
    for s in elf.load_segments() {
        let at = (s.paddr - lo) as usize;
        flat[at..at + s.filesz as usize].copy_from_slice(elf.segment_data(&s));
    }
    Ok((lo, flat, elf.entry()))
}

/// The ELF image: the loader (flat, from `base`) with a payload whose copies are in place,
/// then one `PT_LOAD` per non-empty copy at its destination. Returns the file and its number
/// of segments.
pub fn elf_image(plan: &Plan<'_>, base: u64, loader: &[u8], entry: u64) -> (Vec<u8>, usize) {
    let mut head = loader.to_vec();
    head.extend_from_slice(&plan.encode(Placement::InPlace));
    // `p_memsz` is the file size: the loader zero-fills the rest, as for the flat binary,
    // and Plan::new checked the whole [dest, dest + memsz). Flags RWX for every segment,
    // as for the loader's own: QEMU's ELF loader ignores them.
    let mut segments =
        vec![elf_write::OutSegment { vaddr: base, paddr: base, data: &head, memsz: head.len() as u64, flags: 7 }];
    for c in plan.copies.iter().filter(|c| !c.data.is_empty()) {
        segments.push(elf_write::OutSegment {
            vaddr: c.dest,
            paddr: c.dest,
            data: c.data,
            memsz: c.data.len() as u64,
            flags: 7,
        });
    }
    (elf_write::executable(EM_AARCH64, entry, &segments), segments.len())
}

/// Runs `capvisor image`.
pub fn run(args: &Args) -> Result<(), ImageError> {
    let prefix = args
        .sel4_prefix
        .clone()
        .or_else(|| sel4_codegen::prefix::env_path("SEL4_PREFIX"))
        .ok_or(ImageError::NoPrefix)?;
    let kernel_path = args.kernel.clone().unwrap_or_else(|| prefix.join("bin/kernel.elf"));
    let kernel = read(&kernel_path)?;
    let root = read(&args.root_task)?;
    let config = check_kernel_config(&args.root_task, &root, &prefix)?;
    let flag = |k: &str| config.0.get(k).map(String::as_str) == Some("true");
    if !flag("ARM_HYPERVISOR_SUPPORT") {
        return Err(ImageError::Input {
            path: prefix.join(kconfig::FILES[0]),
            message: "ARM_HYPERVISOR_SUPPORT is not true: the loader enters the kernel at EL2".into(),
        });
    }
    let tcr = pagetable::tcr_el2(flag("AARCH64_VSPACE_S2_START_L1"));
    // The kernel waits at boot until every core it was built for has entered it; the
    // loader starts that many (each found in the live device tree by its MPIDR).
    let cores = config.0.get("MAX_NUM_NODES").and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| ImageError::Input {
        path: prefix.join(kconfig::FILES[0]),
        message: "MAX_NUM_NODES is missing or not a number".into(),
    })?;
    let ram = platform_memory(&prefix.join("support/platform_gen.json"))?;

    // The platform's DTB tells where QEMU leaves the live one and where the console is.
    let platform_dtb_path = prefix.join("support/kernel.dtb");
    let (probe, uart) = match std::fs::read(&platform_dtb_path) {
        Ok(bytes) => {
            let bad =
                |e: boot_image::FdtError| ImageError::Input { path: platform_dtb_path.clone(), message: e.to_string() };
            let fdt = Fdt::from_bytes(&bytes).map_err(bad)?;
            let mem = fdt.first_memory().map_err(bad)?.ok_or_else(|| ImageError::Input {
                path: platform_dtb_path.clone(),
                message: "no memory node (device_type = \"memory\")".into(),
            })?;
            let uart = fdt.compatible_reg("arm,pl011").map_err(bad)?.map_or(DEFAULT_UART, |r| r.base);
            (Some(PhysRange { start: mem.base, end: mem.base + QEMU_DTB_AREA }), uart)
        }
        Err(_) if args.dtb.is_some() => (None, DEFAULT_UART),
        Err(source) => return Err(ImageError::Io { path: platform_dtb_path, source }),
    };
    let dtb = match &args.dtb {
        Some(p) => Some(read(p)?),
        None => None,
    };

    let loader_path = find_loader(args.loader.as_deref())?;
    let loader_bytes = read(&loader_path)?;
    let (base, mut flat, entry) = flatten_loader(&loader_path, &loader_bytes)?;
    let input = PlanInput {
        kernel: &kernel,
        root_task: &root,
        ram: &ram,
        loader: PhysRange { start: base, end: base + flat.len() as u64 },
        dtb_max_bytes: args.dtb_max,
        embedded_dtb: dtb.as_deref(),
        dtb_probe: match (args.dtb_probe, &dtb) {
            (_, Some(_)) | (Some(Probe::None), None) => None,
            (Some(Probe::At(a)), None) => Some(PhysRange { start: a, end: a + QEMU_DTB_AREA }),
            (None, None) => probe,
        },
        uart,
        tcr_el2: tcr,
        cores,
    };
    let plan = Plan::new(&input).map_err(|err| match err {
        boot_image::Error::Elf { image: Image::Kernel, .. } => ImageError::Elf { path: kernel_path.clone(), err },
        boot_image::Error::Elf { image: Image::RootTask, .. } => ImageError::Elf { path: args.root_task.clone(), err },
        boot_image::Error::Dtb(_) | boot_image::Error::DtbTooLarge { .. } if args.dtb.is_some() => {
            ImageError::Input { path: args.dtb.clone().unwrap_or_default(), message: err.to_string() }
        }
        err => ImageError::Plan { kernel: kernel_path.clone(), root_task: args.root_task.clone(), err },
    })?;
    let kept = check_placement(args, &prefix, &root, &plan, &platform_dtb_path)?;
    let (elf, segments) = elf_image(&plan, base, &flat, entry);
    flat.extend_from_slice(&plan.encode(Placement::Payload));
    let bin_path = {
        let mut s = args.out.clone().into_os_string();
        s.push(".bin");
        PathBuf::from(s)
    };
    for (path, bytes) in [(&args.out, &elf), (&bin_path, &flat)] {
        std::fs::write(path, bytes).map_err(|source| ImageError::Io { path: path.clone(), source })?;
    }
    println!(
        "capvisor image: {} ({} bytes, ELF for QEMU -kernel: {} segments placed by QEMU)",
        args.out.display(),
        elf.len(),
        segments
    );
    println!(
        "capvisor image: {} ({} bytes): load at {base:#x}, enter at {entry:#x} (U-Boot: go {entry:#x}); \
         loaded and entered elsewhere (the Raspberry Pi firmware: 0x80000), it moves itself there first",
        bin_path.display(),
        flat.len()
    );
    for r in &plan.regions {
        println!("capvisor image:   {r}");
    }
    println!("capvisor image: host memory the kernel and the root task will keep (checked against the VMs):");
    print!("{}", crate::placement::describe(&kept));
    Ok(())
}

/// The bundle inside a root-task ELF: the VM configuration at a page boundary of a loadable
/// segment's bytes (the root task keeps it page aligned), if it carries one.
fn embedded_system(root: &[u8]) -> Option<vm_config::SystemConfig> {
    let elf = Elf::parse(root).ok()?;
    elf.load_segments().find_map(|s| {
        let data = elf.segment_data(&s);
        (0..data.len())
            .step_by(4096)
            .filter(|&at| data[at..].starts_with(&vm_runner::bundle::MAGIC))
            .find_map(|at| vm_runner::bundle::decode_system(&data[at..]).ok())
    })
}

/// Checks where the root task's VMs sit against the memory this plan leaves them; returns
/// what the kernel and the root task keep.
pub(crate) fn check_placement(
    args: &Args,
    prefix: &Path,
    root: &[u8],
    plan: &Plan<'_>,
    platform_dtb: &Path,
) -> Result<Vec<vm_config::place::Span>, ImageError> {
    // The tree QEMU passes is the one the kernel build recorded (same machine options); an
    // embedded one is known.
    let dtb_bytes = match plan.embedded_dtb {
        Some(d) => d.len() as u64,
        None => std::fs::metadata(platform_dtb).map_or(args.dtb_max, |m| m.len()),
    };
    let build = crate::placement::kernel_build(Some(prefix))
        .map_err(|message| ImageError::Input { path: prefix.join("support/platform_gen.json"), message })?;
    let (mem, kept) = crate::placement::from_plan(plan, dtb_bytes, &build)
        .map_err(|message| ImageError::Placement { root_task: args.root_task.clone(), message })?;
    let Some(sys) = embedded_system(root) else { return Ok(kept) };
    let message = match &args.config {
        Some(config) => match vm_config::check_placement_file(config, &sys, &mem) {
            Ok(()) => return Ok(kept),
            Err(e) => e.to_string(),
        },
        None => {
            let problems = vm_config::check_placement(&sys, &mem);
            if problems.is_empty() {
                return Ok(kept);
            }
            problems.iter().map(|p| format!("{}: {p}", p.field)).collect::<Vec<_>>().join("\n")
        }
    };
    Err(ImageError::Placement { root_task: args.root_task.clone(), message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use boot_image::elf::write::OutSegment;
    use boot_image::payload::{Payload, Source};

    const KOFF: u64 = 0x80_0000_0000;

    /// A kernel with two segments (one with BSS) and a root task with a data segment and a
    /// BSS-only one, so that empty copies are covered.
    fn inputs() -> (Vec<u8>, Vec<u8>) {
        let code: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let kernel = elf_write::executable(
            EM_AARCH64,
            0x6000_0000 + KOFF,
            &[
                OutSegment { vaddr: 0x6000_0000 + KOFF, paddr: 0x6000_0000, data: &code, memsz: 0x2000, flags: 5 },
                OutSegment {
                    vaddr: 0x6000_2000 + KOFF,
                    paddr: 0x6000_2000,
                    data: &code[..13],
                    memsz: 0x3000,
                    flags: 6,
                },
            ],
        );
        let root = elf_write::executable(
            EM_AARCH64,
            0x40_0000,
            &[
                OutSegment { vaddr: 0x40_0000, paddr: 0x40_0000, data: &code[7..], memsz: 0x2000, flags: 5 },
                OutSegment { vaddr: 0x40_2000, paddr: 0x40_2000, data: &[], memsz: 0x1000, flags: 6 },
            ],
        );
        (kernel, root)
    }

    #[test]
    fn elf_image_places_every_segment_and_the_loader_checks_them_there() {
        let (kernel, root) = inputs();
        let ram = [PhysRange { start: 0x6000_0000, end: 0xc000_0000 }];
        let base = 0x4800_0000;
        let loader = vec![0xa5u8; 0x3000];
        let plan = Plan::new(&PlanInput {
            kernel: &kernel,
            root_task: &root,
            ram: &ram,
            loader: PhysRange { start: base, end: base + loader.len() as u64 },
            dtb_max_bytes: 1 << 20,
            embedded_dtb: None,
            dtb_probe: Some(PhysRange { start: 0x4000_0000, end: 0x4010_0000 }),
            uart: DEFAULT_UART,
            tcr_el2: pagetable::tcr_el2(false),
            cores: 1,
        })
        .unwrap();
        let (elf, count) = elf_image(&plan, base, &loader, base);
        let elf = Elf::parse(&elf).unwrap();
        assert_eq!(elf.entry(), base);
        let segs: Vec<_> = elf.load_segments().collect();
        // The loader, three non-empty copies; the BSS-only copy has no segment.
        assert_eq!((count, segs.len(), plan.copies.len()), (4, 4, 4));

        // What QEMU does: every PT_LOAD at its p_paddr.
        let at = |addr: u64, len: u64| -> Option<&[u8]> {
            segs.iter().find(|s| s.paddr <= addr && addr + len <= s.paddr + s.filesz).map(|s| {
                let from = (addr - s.paddr) as usize;
                &elf.segment_data(s)[from..from + len as usize]
            })
        };
        let head = at(base, segs[0].filesz).unwrap();
        assert_eq!(&head[..loader.len()], &loader[..]);
        let p = Payload::parse(&head[loader.len()..]).unwrap();
        assert_eq!(p.info, plan.boot);
        // What the loader does: each copy is in place and checks out at its destination.
        for (c, want) in p.copies().zip(&plan.copies) {
            assert_eq!(
                (c.source, c.dest, c.filesz, c.memsz),
                (Source::InPlace, want.dest, want.data.len() as u64, want.memsz)
            );
            let bytes = if c.filesz == 0 { &[][..] } else { at(c.dest, c.filesz).unwrap() };
            assert_eq!(bytes, want.data);
            c.verify(bytes).unwrap();
        }
        for s in &segs[1..] {
            assert_eq!((s.vaddr, s.filesz), (s.paddr, s.memsz), "{s:?}");
        }
    }

    #[test]
    fn flat_payload_carries_the_bytes() {
        let (kernel, root) = inputs();
        let ram = [PhysRange { start: 0x6000_0000, end: 0xc000_0000 }];
        let plan = Plan::new(&PlanInput {
            kernel: &kernel,
            root_task: &root,
            ram: &ram,
            loader: PhysRange { start: 0x4800_0000, end: 0x4800_3000 },
            dtb_max_bytes: 1 << 20,
            embedded_dtb: None,
            dtb_probe: None,
            uart: DEFAULT_UART,
            tcr_el2: pagetable::tcr_el2(false),
            cores: 1,
        })
        .unwrap();
        let bytes = plan.encode(Placement::Payload);
        let p = Payload::parse(&bytes).unwrap();
        for (c, want) in p.copies().zip(&plan.copies) {
            assert!(matches!(c.source, Source::Payload { .. }), "{c:?}");
            let data = p.source_bytes(&c).unwrap();
            assert_eq!(data, want.data);
            c.verify(data).unwrap();
        }
    }
}
