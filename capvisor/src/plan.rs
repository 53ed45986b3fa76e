//! `capvisor plan CONFIG`: builds the configured VMs on the seL4 model, exactly as the root
//! task builds them on the kernel, and prints the capability plan: the untyped memory used,
//! the objects and slots made, the kernel invocations by kind, a map of host-physical and
//! guest-physical memory, and the stage-2 check (the book and seL4's tables agree on every
//! page). Then it tears everything down and checks that every slot and byte came back.
//!
//! Needs no kernel and no guest build: an image file that is not found is planned as empty
//! (and said so), because placement depends on the configuration, not on the image's bytes.
//!
//! Owns: the text of the plan. Never touches: how VMs are built (`vm_runner::setup`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hal_sel4::host::{HostHal, HostPaging, install_model, pages_held};
use hal_sel4::pool::{MemoryKind, Purpose};
use hal_sel4::{HalCell, HalInstance};
use sel4::{ObjectBlueprint, VirtAddr};
use sel4_model::Model;
use vm_config::{EmulatedKind, SystemConfig};
use vm_runner::bundle::{Bundle, VmImages};
use vm_runner::setup::{CopyIn, DEFAULT_VMM_SLOTS, MappingKind, SetupOptions, Vmm, split_slots};

/// Arguments of `capvisor plan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A system file (`[system] vms = [...]`) or one VM file.
    pub config: PathBuf,
    /// The platform to plan for: a platform's name (qemu-arm-virt, rpi4: its recorded
    /// description and placement facts, built into the tool), a platform folder (its
    /// bootinfo-capvisor.txt and placement.txt), or a bootinfo description file for the model
    /// (placement then checked against the kernel build's facts) [default: QEMU virt as
    /// capvisor's own loader boots it, platforms/qemu-arm-virt/bootinfo-capvisor.txt].
    #[arg(long)]
    pub platform: Option<PathBuf>,
    /// Directories to look for guest images in (as `capvisor vms`).
    #[arg(long)]
    pub search: Vec<PathBuf>,
    /// Also draw what the placement check sees as an SVG picture: host-physical memory (the
    /// kernel, the root task, each VM's regions, devices) and each VM's guest-physical map,
    /// refusals in red. Written even when the check refuses the system.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The configuration does not parse or check.
    #[error("{0}")]
    Config(#[from] vm_config::ConfigErrors),
    /// An image or the platform file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The platform description is malformed.
    #[error("{0}")]
    Platform(String),
    /// A kernel image cannot be flattened, or a device tree generated.
    #[error("{0}")]
    Images(#[from] crate::vms::VmsError),
    /// Building the VMs failed (the message names the VM and the step).
    #[error("{}: {message}", config.display())]
    Setup {
        /// The configuration.
        config: PathBuf,
        /// Why.
        message: String,
    },
    /// Teardown did not give everything back.
    #[error("teardown: {0}")]
    Teardown(String),
}

/// The model's HAL for the plan (one plan per process).
struct PlanHal;

impl HalInstance for PlanHal {
    type Kernel = Model;
    fn cell() -> &'static HalCell<Model> {
        static CELL: HalCell<Model> = HalCell::new();
        &CELL
    }
}

/// Image copies are not needed to plan; their destinations are checked.
struct CheckCopies {
    copies: usize,
    bytes: u64,
}

impl CopyIn for CheckCopies {
    fn copy(&mut self, dst: VirtAddr, bytes: &[u8]) {
        let mapped = PlanHal::cell().with(|h| h.kernel().translate(sel4::init_cap::VSPACE.cap(), dst).is_some());
        assert!(mapped, "plan: image copy to {dst} which the VMM has not mapped");
        self.copies += 1;
        self.bytes += bytes.len() as u64;
    }

    fn zero(&mut self, dst: VirtAddr, _len: u64) {
        let mapped = PlanHal::cell().with(|h| h.kernel().translate(sel4::init_cap::VSPACE.cap(), dst).is_some());
        assert!(mapped, "plan: zeroing at {dst}, which the VMM has not mapped");
    }

    fn fill(&mut self, dst: VirtAddr, len: u64, _byte: u8) {
        if len > 0 {
            let mapped = PlanHal::cell().with(|h| h.kernel().translate(sel4::init_cap::VSPACE.cap(), dst).is_some());
            assert!(mapped, "plan: filling at {dst}, which the VMM has not mapped");
        }
    }
}

fn images(
    config: &Path,
    sys: &SystemConfig,
    search: &[PathBuf],
    notes: &mut Vec<String>,
) -> Result<Vec<crate::vms::Images>, PlanError> {
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut all = Vec::new();
    for vm in &sys.vms {
        let mut img = crate::vms::Images::default();
        match crate::vms::find(config, vm, "kernel.kernel_path", &vm.kernel.path, search) {
            Ok(p) => {
                let bytes = std::fs::read(&p).map_err(|source| PlanError::Io { path: p.clone(), source })?;
                img.kernel = crate::vms::flatten(bytes, vm.kernel.load_addr.get(), &p)?;
                img.kernel_path = p;
            }
            Err(_) => notes.push(format!("{}: kernel {:?} not found: planned as empty", vm.name, vm.kernel.path)),
        }
        if let Some(r) = &vm.ramdisk {
            img.ramdisk = Some(match crate::vms::find(config, vm, "kernel.ramdisk_path", &r.path, search) {
                Ok(p) => std::fs::read(&p).map_err(|source| PlanError::Io { path: p.clone(), source })?,
                Err(_) => {
                    notes.push(format!("{}: RAM disk {:?} not found: planned as empty", vm.name, r.path));
                    Vec::new()
                }
            });
        }
        img.dtb = match crate::dtb::device_tree(vm, dir, config) {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("{}: device tree: {e}: planned as empty", vm.name));
                vm.dtb.as_ref().map(|_| Vec::new())
            }
        };
        all.push(img);
    }
    Ok(all)
}

fn size(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn blueprint_name(b: ObjectBlueprint) -> String {
    match b {
        ObjectBlueprint::CNode { slot_bits } => format!("CNode ({} slots)", 1u64 << slot_bits),
        ObjectBlueprint::Untyped { size_bits } => format!("Untyped (2^{size_bits})"),
        other => format!("{other:?}"),
    }
}

/// The platforms whose description (a boot by capvisor's loader) and placement facts are
/// built into the tool, by name.
pub const PLATFORMS: &[(&str, &str, &str)] = &[
    (
        "qemu-arm-virt",
        include_str!("../../platforms/qemu-arm-virt/bootinfo-capvisor.txt"),
        include_str!("../../platforms/qemu-arm-virt/placement.txt"),
    ),
    (
        "rpi4",
        include_str!("../../platforms/rpi4/bootinfo-capvisor.txt"),
        include_str!("../../platforms/rpi4/placement.txt"),
    ),
];

/// What `--platform` named: the model's description and, for a platform (name or folder),
/// its placement facts.
struct PlatformChoice {
    /// For messages: the name, folder or file.
    name: String,
    /// The bootinfo description (sel4-model's format).
    description: String,
    /// The description's file, for the model's messages.
    description_file: String,
    /// `placement.txt`, when the argument names a platform.
    facts: Option<String>,
}

fn choose_platform(arg: &Path) -> Result<PlatformChoice, PlanError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| PlanError::Io { path: p.to_path_buf(), source });
    if arg.is_dir() {
        let description_path = arg.join("bootinfo-capvisor.txt");
        let facts_path = arg.join("placement.txt");
        return Ok(PlatformChoice {
            name: arg.display().to_string(),
            description: read(&description_path)?,
            description_file: description_path.display().to_string(),
            facts: Some(read(&facts_path)?),
        });
    }
    if arg.is_file() {
        return Ok(PlatformChoice {
            name: arg.display().to_string(),
            description: read(arg)?,
            description_file: arg.display().to_string(),
            facts: None,
        });
    }
    let name = arg.to_string_lossy();
    match PLATFORMS.iter().find(|(n, _, _)| *n == name) {
        Some((n, description, facts)) => Ok(PlatformChoice {
            name: format!("{n} (platforms/{n}/bootinfo-capvisor.txt)"),
            description: (*description).to_string(),
            description_file: format!("platforms/{n}/bootinfo-capvisor.txt"),
            facts: Some((*facts).to_string()),
        }),
        None => {
            let known: Vec<&str> = PLATFORMS.iter().map(|(n, _, _)| *n).collect();
            Err(PlanError::Platform(format!(
                "--platform {name}: not a file, a platform folder or a known platform ({})",
                known.join(", ")
            )))
        }
    }
}

/// Builds the plan's text for the system in `args.config`.
pub fn plan(args: &Args) -> Result<String, PlanError> {
    let sys = vm_config::parse_system_file(&args.config)?;
    let mut notes = Vec::new();
    let imgs = images(&args.config, &sys, &args.search, &mut notes)?;
    // The placement check `capvisor vms` makes, for a bundle of these images.
    let bundle_bytes: usize = imgs
        .iter()
        .map(|i| {
            i.kernel.len()
                + i.dtb.as_ref().map_or(0, Vec::len)
                + i.ramdisk.as_ref().map_or(0, Vec::len)
                + i.flash.iter().map(Vec::len).sum::<usize>()
        })
        .sum();
    let choice = args.platform.as_deref().map(choose_platform).transpose()?;
    let mut model = match &choice {
        None => Model::qemu_arm_virt_capvisor(),
        Some(c) => Model::from_platform_named(&c.description_file, &c.description)
            .map_err(|e| PlanError::Platform(e.to_string()))?,
    };
    // A named platform is checked as its root task checks at boot: its facts beside the
    // untyped memory its recorded boot handed out. Otherwise the tools' prediction from the
    // kernel build.
    let host = match choice.as_ref().and_then(|c| c.facts.as_ref().map(|f| (c, f))) {
        Some((c, text)) => {
            let facts = vm_config::place::Facts::parse(text)
                .map_err(|e| PlanError::Platform(format!("{}: placement facts: {e}", c.name)))?;
            let untyped: Vec<_> = model.bootinfo().untyped_list().collect();
            let mut host = vm_config::place::HostMemory::from_bootinfo(&facts, &untyped);
            host.cores = model.bootinfo().num_nodes();
            host
        }
        None => crate::placement::for_bundle(bundle_bytes as u64 + 4096, None).map_err(PlanError::Platform)?,
    };
    let draw = |placed: &[crate::svg::Placed]| -> Result<(), PlanError> {
        let Some(svg) = &args.svg else { return Ok(()) };
        let text = crate::svg::draw(&sys, &host, placed);
        std::fs::write(svg, text).map_err(|source| PlanError::Io { path: svg.clone(), source })
    };
    if let Err(e) = vm_config::check_placement_file(&args.config, &sys, &host) {
        draw(&[])?;
        return Err(e.into());
    }
    let platform_name = choice.as_ref().map_or(
        "QEMU virt as capvisor's loader boots it (platforms/qemu-arm-virt/bootinfo-capvisor.txt)".to_string(),
        |c| c.name.clone(),
    );
    // One plan per process: the model is installed in a static cell for the paging handler.
    let _ = PlanHal::cell().take();
    let list_registers = u8::try_from(model.platform().gic_list_regs).unwrap_or(u8::MAX);
    // The kernel build's cores: on more than one, each vCPU's pinning is one more invocation.
    model.set_cores(host.cores);
    let slots = split_slots(model.bootinfo().empty(), DEFAULT_VMM_SLOTS);
    install_model::<PlanHal>(model, slots).map_err(PlanError::Platform)?;
    // The model's machine has whichever GIC the configuration's first VM asks for (the model
    // has no GIC of its own); the root task holds every VM to the kernel's.
    let gic_version = sys.vms.first().map_or(vm_runner::Platform::KERNEL_GIC, |v| v.gic_version());
    let options = SetupOptions {
        platform: vm_runner::Platform { list_registers, gic_version, cores: host.cores.max(1) },
        asid_pool: sel4::init_cap::ASID_POOL.cap(),
        vmm_tcb: sel4::init_cap::TCB.cap(),
    };
    let cell = PlanHal::cell();
    let before = cell.with(|h| {
        h.kernel_mut().reset_counters();
        (h.kernel().free_slots(), h.pool().stats(), h.kernel().live_objects())
    });
    let views: Vec<VmImages<'_>> = imgs.iter().map(crate::vms::Images::view).collect();
    let bundle = Bundle { system: sys.clone(), images: views, rtc_base_seconds: 0 };
    let mut copies = CheckCopies { copies: 0, bytes: 0 };
    let mut vmm = Vmm::<HostPaging<PlanHal>>::build::<HostHal<PlanHal>>(&bundle, &options, &mut copies)
        .map_err(|e| PlanError::Setup { config: args.config.clone(), message: e.to_string() })?;
    let mut placed = Vec::new();
    for (i, vm) in vmm.vms.iter().enumerate() {
        for m in &vm.mappings {
            let what = match m.kind {
                MappingKind::Ram
                    if vm.config.memory.iter().any(|r| r.map != vm_config::MapType::Alloc && r.range.base == m.gpa) =>
                {
                    continue;
                }
                MappingKind::Ram => format!("RAM capvisor placed for guest {:#x}", m.gpa.get()),
                MappingKind::FlashRom => format!("flash contents for guest {:#x}", m.gpa.get()),
                MappingKind::GicCpuInterface | MappingKind::Device => continue,
            };
            placed.push(crate::svg::Placed { vm: i, hpa: m.hpa.get(), size: m.size_bytes, what });
        }
    }
    draw(&placed)?;

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "capvisor plan: {} ({} VM{}) on the seL4 model of {platform_name}",
        args.config.display(),
        sys.vms.len(),
        if sys.vms.len() == 1 { "" } else { "s" }
    );
    for n in &notes {
        let _ = writeln!(w, "note: {n}");
    }

    // ---- untyped used ----
    let (after_slots, allocations, counters) = cell.with(|h| {
        let allocs: Vec<_> = h.pool().allocations().cloned().collect();
        (h.kernel().free_slots(), allocs, h.kernel().counters().clone())
    });
    let ram: u64 = allocations.iter().filter(|a| a.kind == MemoryKind::Ram).map(|a| a.size).sum();
    let dev: u64 = allocations.iter().filter(|a| a.kind == MemoryKind::Device).map(|a| a.size).sum();
    let _ = writeln!(
        w,
        "\nuntyped used: {} of RAM, {} of device memory, in {} allocations ({} bytes cleared by the kernel)",
        size(ram),
        size(dev),
        allocations.len(),
        counters.bytes_zeroed
    );

    // ---- objects and slots ----
    let mut objects: BTreeMap<String, u64> = BTreeMap::new();
    for o in vmm.vms.iter().flat_map(|vm| vm.objects()).chain(vmm.objects()) {
        *objects.entry(blueprint_name(o.blueprint)).or_default() += o.count;
    }
    let frames_in_guests: u64 = vmm.vms.iter().map(|v| v.frames.len() as u64).sum();
    let mut frames: BTreeMap<String, u64> = BTreeMap::new();
    for a in &allocations {
        for o in a.objects() {
            if o.blueprint.is_frame() {
                *frames.entry(format!("{:?} frame", o.blueprint)).or_default() += 1;
            }
        }
    }
    let _ = writeln!(w, "\nobjects:");
    for (k, n) in &objects {
        let _ = writeln!(w, "  {k:<24} {n:>6}");
    }
    for (k, n) in &frames {
        let _ = writeln!(w, "  {k:<24} {n:>6}");
    }
    let hal_tables = cell.with(|h| h.window().tables());
    let _ = writeln!(w, "  {:<24} {hal_tables:>6}  (the VMM's own mapping window)", "PageTable (window)");
    let _ =
        writeln!(w, "slots: {} used ({} frame copies mapped into guests)", before.0 - after_slots, frames_in_guests);

    // ---- invocations ----
    let _ = writeln!(w, "\ninvocations ({} in all):", counters.total());
    for (op, n) in counters.iter() {
        let _ = writeln!(w, "  {:<24} {n:>6}", format!("{op:?}"));
    }

    // ---- host-physical memory ----
    let mut labels: BTreeMap<u64, String> = BTreeMap::new();
    for vm in &vmm.vms {
        for r in vm.regions() {
            let kind = vm.mappings.iter().find(|m| m.hpa == r.base).map_or("memory", |m| match m.kind {
                MappingKind::Ram => "guest RAM",
                MappingKind::FlashRom => "flash contents",
                MappingKind::GicCpuInterface => "GICV",
                MappingKind::Device => "passthrough",
            });
            labels.insert(r.base.get(), format!("{}: {kind}", vm.config.name));
        }
        for o in vm.objects() {
            labels.insert(o.base.get(), format!("{}: {} x{}", vm.config.name, blueprint_name(o.blueprint), o.count));
        }
    }
    for r in &vmm.shared {
        labels.insert(r.base.get(), "GICV (every VM)".to_string());
    }
    for o in vmm.objects() {
        labels.insert(o.base.get(), format!("VMM: {} x{}", blueprint_name(o.blueprint), o.count));
    }
    let _ = writeln!(w, "\nhost-physical memory:");
    let mut sorted = allocations.clone();
    sorted.sort_by_key(|a| a.base);
    for a in &sorted {
        let label = labels.get(&a.base.get()).cloned().unwrap_or_else(|| match a.purpose {
            Purpose::Paging => "HAL: stage-2 book table frame".to_string(),
            Purpose::Objects(b) => format!("HAL: mapping window {}", blueprint_name(b)),
            Purpose::Region => "HAL: region".to_string(),
        });
        let kind = if a.kind == MemoryKind::Device { "device" } else { "RAM" };
        let _ = writeln!(w, "  {:#014x}-{:#014x} {:>9} {kind:<6} {label}", a.base, a.end(), size(a.size));
    }

    // ---- guest-physical memory ----
    for vm in &vmm.vms {
        let _ = writeln!(
            w,
            "\nguest-physical memory of {} (id {}, {} vCPU{}):",
            vm.config.name,
            vm.config.id,
            vm.vcpus.len(),
            if vm.vcpus.len() == 1 { "" } else { "s" }
        );
        let mut rows: Vec<(u64, u64, String)> = Vec::new();
        for m in &vm.mappings {
            let what = match m.kind {
                MappingKind::Ram => "RAM",
                MappingKind::FlashRom => "flash contents (read-only in read-array mode)",
                MappingKind::GicCpuInterface => "GICC (host GICV)",
                MappingKind::Device => "passthrough",
            };
            rows.push((
                m.gpa.get(),
                m.size_bytes,
                format!("{what} -> host {:#x} ({})", m.hpa.get(), if m.rights.write { "rw" } else { "ro" }),
            ));
        }
        for d in &vm.config.emulated {
            let kind = match d.kind {
                EmulatedKind::InterruptController => "GICv2 distributor",
                EmulatedKind::GicV3Distributor => "GICv3 distributor",
                EmulatedKind::GicV3Redistributor => "GICv3 redistributors",
                EmulatedKind::Console => "PL011 UART",
                EmulatedKind::Dummy => "dummy device",
                EmulatedKind::CfiFlash if d.writable() => "CFI flash (writable for the run)",
                EmulatedKind::CfiFlash => "CFI flash (read-only)",
                EmulatedKind::Rtc => "PL031 RTC",
            };
            rows.push((d.range.base.get(), d.range.size_bytes, format!("{kind} \"{}\", emulated (traps)", d.name)));
        }
        rows.sort();
        for (gpa, len, what) in rows {
            let _ = writeln!(w, "  {gpa:#014x}-{:#014x} {:>9} {what}", gpa + len, size(len));
        }
        for i in &vm.images {
            let _ =
                writeln!(w, "  image {:<8} at {:#x} ({} bytes, host {:#x})", i.what, i.gpa.get(), i.len, i.hpa.get());
        }
        let _ = writeln!(
            w,
            "  stage 2: {} page tables, {} frames mapped, {} at the guest's first touch; vCPU 0 starts at {:#x}",
            vm.tables.len(),
            vm.frames.len(),
            vm.untouched.len(),
            vm.config.entry_point.get()
        );
        if let Some(plan) = &vm.plan {
            let _ = writeln!(
                w,
                "  setup plan: {} frame copies ({} mapped now, {} at first touch), {} page tables in {} retype(s), {} image(s), {} cache operation(s), {} vCPU(s)",
                plan.frames.len(),
                plan.mapped_now(),
                plan.frames.len() - plan.mapped_now(),
                plan.tables.len(),
                plan.table_runs().len(),
                plan.images.len(),
                plan.flushes.len(),
                plan.vcpus.len()
            );
            let ops: Vec<String> = plan
                .invocations()
                .iter()
                .map(|(op, n)| format!("{op:?} {n} (made {})", vm.built_with.get(*op)))
                .collect();
            let _ = writeln!(
                w,
                "  setup invocations (the VMM's own; the HAL's are above): planned {}, made {}: {}",
                plan.total_invocations(),
                vm.built_with.total(),
                ops.join(", ")
            );
        }
        // The book and seL4's tables must agree on every page; a page of a frame left for the
        // guest's first touch is in the book only, and its frame must be the book's.
        let book = vm.book.as_ref().expect("built VMs have a book");
        let untouched =
            |gpa: u64| vm.untouched.iter().find(|u| (u.gpa.get()..u.gpa.get() + u.size.size_bytes()).contains(&gpa));
        let (mut pages, mut bad) = (0u64, 0u64);
        cell.with(|h| {
            for m in &vm.mappings {
                let mut gpa = m.gpa.get();
                while gpa < m.gpa.get() + m.size_bytes {
                    let b = book.translate(vm_config::GuestPhysAddr(gpa)).map(|e| e.hpa.get());
                    let k = match untouched(gpa) {
                        Some(u) if h.kernel().translate(vm.vspace, VirtAddr(gpa)).is_none() => {
                            Some(u.hpa.get() + (gpa - u.gpa.get()))
                        }
                        Some(_) => None,
                        None => h.kernel().translate(vm.vspace, VirtAddr(gpa)).map(|t| t.paddr.get()),
                    };
                    if b.is_none() || b != k {
                        bad += 1;
                    }
                    pages += 1;
                    gpa += 4096;
                }
            }
        });
        let _ = writeln!(
            w,
            "  stage-2 check: {pages} pages, book and seL4 tables {}",
            if bad == 0 { "agree".to_string() } else { format!("DISAGREE on {bad}") }
        );
        if bad != 0 {
            return Err(PlanError::Setup {
                config: args.config.clone(),
                message: format!("{}: stage-2 tables disagree with the book", vm.config.name),
            });
        }
    }
    let _ = writeln!(w, "\nimages: {} copies, {} bytes through the VMM's window", copies.copies, copies.bytes);

    // ---- teardown ----
    vmm.teardown::<HostHal<PlanHal>>().map_err(|e| PlanError::Teardown(e.to_string()))?;
    let (slots_back, stats, held) = cell.with(|h| (h.kernel().free_slots(), h.pool().stats(), pages_held::<PlanHal>()));
    let kept = cell.with(|h| h.window().tables());
    if stats.allocations != kept || held != 0 {
        return Err(PlanError::Teardown(format!(
            "{} allocations and {held} book pages left (the window keeps {kept} tables)",
            stats.allocations
        )));
    }
    let _ = writeln!(
        w,
        "teardown: every VM object and byte returned; the VMM's window keeps its {kept} tables for reuse ({} slots)",
        before.0 - slots_back
    );
    let _ = cell.take();
    Ok(out)
}

/// `capvisor plan`.
pub fn run(args: &Args) -> Result<(), PlanError> {
    print!("{}", plan(args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(name)
    }

    fn plan_on(file: &str, platform: &str) -> Result<String, PlanError> {
        plan(&Args { config: config(file), platform: Some(PathBuf::from(platform)), search: vec![], svg: None })
    }

    /// `--platform rpi4` checks a VM file against the Raspberry Pi 4's recorded boot and
    /// facts: its test-guest file passes and is planned on that model; QEMU virt's, whose
    /// GICC comes from virt's GICV address, is refused at that line, and the Pi's file is
    /// refused on QEMU virt the same way.
    #[test]
    fn platform_by_name_checks_against_that_platform() {
        let text = plan_on("rpi4-test-guest.toml", "rpi4").expect("the rpi4 test guest plans on rpi4");
        assert!(text.contains("on the seL4 model of rpi4 (platforms/rpi4/bootinfo-capvisor.txt)"), "{text}");
        assert!(text.contains("teardown: every VM object and byte returned"), "{text}");

        let e = plan_on("test-guest.toml", "rpi4").expect_err("virt's GICV is RAM on the Pi").to_string();
        assert!(e.contains("test-guest.toml:55:21: capvisor.gic_cpu_interface") && e.contains("0x8040000"), "{e}");

        let e = plan_on("rpi4-test-guest.toml", "qemu-arm-virt").expect_err("the Pi's GICV is not virt's").to_string();
        assert!(
            e.contains("capvisor.gic_cpu_interface")
                && e.contains(
                    "host [0xff846000, 0xff848000) is not inside the GIC virtual CPU interface (GICV) [0x8040000"
                ),
            "{e}"
        );
        // A platform folder is the same platform.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platforms/rpi4");
        let e = plan(&Args { config: config("test-guest.toml"), platform: Some(dir), search: vec![], svg: None })
            .expect_err("the folder's facts");
        assert!(e.to_string().contains("capvisor.gic_cpu_interface"), "{e}");

        let e = plan_on("rpi4-test-guest.toml", "no-such-board").expect_err("unknown").to_string();
        assert!(e.contains("--platform no-such-board") && e.contains("qemu-arm-virt, rpi4"), "{e}");
    }
}
