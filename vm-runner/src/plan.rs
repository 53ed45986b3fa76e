//! The pure plan of one VM: what [`crate::setup`] will make and do, and what it costs,
//! before any of it happens.
//!
//! Building a VM happens in two steps, as the untyped pool works ("plan, then execute"):
//! 1. [`regions`]: from the configuration alone, the guest-physical ranges and where their
//!    host memory must be (a fixed address, one capvisor chooses, or the shared GICV);
//! 2. [`VmPlan::new`]: once the HAL has placed that memory (its answers, the frames of each
//!    allocation and their kind, are the inputs), every frame capability to copy and map,
//!    every stage-2 page table, every image copy and cache operation, every kernel object
//!    and every vCPU's settings, with the kernel invocations they take
//!    ([`VmPlan::invocations`]).
//!
//! The executor ([`crate::setup::Vmm`]) performs a plan step by step and meters its own
//! kernel invocations; tests check the two agree, and `capvisor plan` prints the plan.
//!
//! Owns only the arithmetic; never touches the kernel, the HAL or guest memory.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

use sel4::object::{PAGE_BITS, PAGE_TABLE_INDEX_BITS};
use sel4::{CacheOp, CapRights, FrameSize, ObjectBlueprint, Op, PhysAddr, Slot, VmAttributes};
use vm_config::{EmulatedKind, GuestPhysAddr, MapType, MemFlags, PopulateRam, VmConfig};
use vm_objects::{MemoryKind, RegionFrame};

use crate::badge::VcpuBadge;
use crate::bundle::VmImages;
use crate::setup::{GUEST_CNODE_SLOT_BITS, GuestMapping, MPIDR_RES1, MappingKind, SetupError, fault_cptr};

/// Translation levels of a guest's stage 2 (`UPT_LEVELS`).
pub const STAGE2_LEVELS: u32 = if sel4::config::AARCH64_VSPACE_S2_START_L1 { 3 } else { 4 };
/// Guest-physical address bits the book and the stage 2 cover (`seL4_UserTop`).
pub const GPA_LIMIT: u64 = if sel4::config::ARM_PA_SIZE_BITS_44 { 1 << 44 } else { 1 << 40 };

/// Device windows: uncached, never executable.
pub const DEVICE_ATTRS: VmAttributes = VmAttributes::EXECUTE_NEVER;

/// Cache maintenance after copying data the guest reads with its caches off.
pub const DATA: &[CacheOp] = &[CacheOp::CleanInvalidateData];
/// ... and after copying code it runs (no stale instruction lines either).
pub const CODE: &[CacheOp] = &[CacheOp::CleanInvalidateData, CacheOp::UnifyInstruction];

/// Bytes a table at `depth` below the root translates, as a power of two.
pub const fn table_span_bits(depth: u32) -> u32 {
    PAGE_BITS + PAGE_TABLE_INDEX_BITS * (STAGE2_LEVELS - depth)
}

/// The page tables a set of frame mappings needs, as `(depth, first address)`, parents
/// before children: a frame of `2^s` bytes needs a table at every depth whose span is
/// larger than the frame.
pub fn tables_needed(frames: impl IntoIterator<Item = (u64, FrameSize)>) -> Vec<(u32, u64)> {
    let mut set = BTreeSet::new();
    for (gpa, size) in frames {
        for depth in 1..STAGE2_LEVELS {
            let span = table_span_bits(depth);
            if span > size.size_bits() {
                set.insert((depth, gpa & !((1u64 << span) - 1)));
            }
        }
    }
    set.into_iter().collect()
}

/// The host alignment a `MAP_ALLOC` region at `gpa` of `size` bytes should have so the
/// largest frames map it: the largest frame size that divides `gpa` and fits in `size`.
pub fn alloc_alignment(gpa: u64, size: u64) -> u64 {
    for f in FrameSize::LARGEST_FIRST {
        let b = f.size_bytes();
        if gpa.is_multiple_of(b) && size >= b {
            return b;
        }
    }
    1 << PAGE_BITS
}

/// Rights and attributes of guest RAM with these flags.
pub fn ram_rights(flags: MemFlags) -> (CapRights, VmAttributes) {
    let rights = if flags.contains(MemFlags::WRITE) { CapRights::READ_WRITE } else { CapRights::READ_ONLY };
    let mut attrs = if flags.contains(MemFlags::DEVICE) || flags.contains(MemFlags::UNCACHED) {
        VmAttributes::NONE
    } else {
        VmAttributes::DEFAULT
    };
    if !flags.contains(MemFlags::EXECUTE) {
        attrs = attrs.union(VmAttributes::EXECUTE_NEVER);
    }
    (rights, attrs)
}

/// Where a region's host memory is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostPlace {
    /// At this address, allocated for the VM (`MAP_IDENTICAL`, `MAP_RESERVED`, passthrough).
    Fixed(PhysAddr),
    /// Wherever the HAL finds it cheapest, with this alignment (`MAP_ALLOC`, flash contents).
    Choose {
        /// Host alignment, so the largest frames map it.
        align_bytes: u64,
    },
    /// The host's GICV, allocated once for every VM.
    Shared(PhysAddr),
}

/// The memory a region must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// RAM the kernel manages.
    Ram,
    /// Device memory.
    Device,
    /// Either (`MAP_RESERVED`: RAM the kernel may hand out as device untyped).
    Any,
}

impl Want {
    /// Whether memory of `kind` will do.
    pub fn accepts(self, kind: MemoryKind) -> bool {
        matches!((self, kind), (Want::Any, _) | (Want::Ram, MemoryKind::Ram) | (Want::Device, MemoryKind::Device))
    }
}

/// One guest-physical range of a VM and where its host memory must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RegionPlan {
    /// For messages.
    pub what: &'static str,
    /// What the mapping is.
    pub kind: MappingKind,
    /// Guest-physical base.
    pub gpa: GuestPhysAddr,
    /// Bytes (whole pages).
    pub size_bytes: u64,
    /// Where the host memory is.
    pub host: HostPlace,
    /// What memory it must be.
    pub want: Want,
    /// Rights of the guest's mapping.
    pub rights: CapRights,
    /// Attributes of the guest's mapping.
    pub attrs: VmAttributes,
}

impl RegionPlan {
    /// The mapping once the host memory is at `hpa`.
    pub fn at(&self, hpa: PhysAddr) -> GuestMapping {
        GuestMapping::new(self.kind, self.gpa, hpa, self.size_bytes, self.rights, self.attrs)
    }
}

/// Which of a VM's images.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageSource {
    /// The kernel (or firmware).
    Kernel,
    /// The device tree.
    Dtb,
    /// The RAM disk.
    Ramdisk,
    /// `flash_images[k]`.
    Flash(usize),
}

impl ImageSource {
    /// The bytes, from the bundle.
    pub fn bytes<'b>(self, images: &VmImages<'b>) -> &'b [u8] {
        match self {
            ImageSource::Kernel => images.kernel,
            ImageSource::Dtb => images.dtb.unwrap_or(&[]),
            ImageSource::Ramdisk => images.ramdisk.unwrap_or(&[]),
            ImageSource::Flash(k) => images.flash.get(k).copied().unwrap_or(&[]),
        }
    }
}

/// The read-only flash banks' images: (flash image index, guest base, length cut to the bank).
fn rom_images(config: &VmConfig, images: &VmImages<'_>) -> Vec<(usize, u64, u64)> {
    let mut out = Vec::new();
    for (k, (f, bytes)) in config.flash_images.iter().zip(images.flash.iter()).enumerate() {
        let Some(d) = config.emulated.iter().find(|d| d.kind == EmulatedKind::CfiFlash && d.name == f.device) else {
            continue;
        };
        let len = (bytes.len() as u64).min(d.range.size_bytes);
        if !d.writable() && len > 0 {
            out.push((k, d.range.base.get(), len));
        }
    }
    out
}

/// Step 1: the guest-physical ranges of VM `vm` and where their host memory must be, in the
/// order the mappings are made. Fails on a range beyond what a stage 2 translates.
pub fn regions(vm: usize, config: &VmConfig, images: &VmImages<'_>) -> Result<Vec<RegionPlan>, SetupError> {
    let mut out = Vec::new();
    let mut add = |what, kind, gpa: u64, size_bytes: u64, host, want, (rights, attrs)| {
        if gpa.checked_add(size_bytes).is_none_or(|e| e > GPA_LIMIT) {
            return Err(SetupError::OutOfRange { vm, gpa: GuestPhysAddr(gpa) });
        }
        out.push(RegionPlan { what, kind, gpa: GuestPhysAddr(gpa), size_bytes, host, want, rights, attrs });
        Ok(())
    };
    let choose = |gpa: u64, size: u64| HostPlace::Choose { align_bytes: alloc_alignment(gpa, size) };
    let device = (CapRights::READ_WRITE, DEVICE_ATTRS);
    for m in &config.memory {
        let (gpa, size) = (m.range.base.get(), m.range.size_bytes);
        // Reserved memory may be handed out as device untyped (see vm-config's placement
        // check); everything else must be RAM, which seL4 zeroes.
        let (host, want) = match m.map {
            MapType::Identical => (HostPlace::Fixed(PhysAddr(gpa)), Want::Ram),
            MapType::Reserved => (HostPlace::Fixed(PhysAddr(gpa)), Want::Any),
            MapType::Alloc => (choose(gpa, size), Want::Ram),
        };
        add("guest RAM", MappingKind::Ram, gpa, size, host, want, ram_rights(m.flags))?;
    }
    // A read-only flash bank's image is read-only RAM at the bank's base, so the guest
    // executes from it in place (QEMU's pflash in ROM mode); the rest of the bank traps to
    // the flash model. Firmware loaded at a bank's base likewise.
    let mut roms: Vec<(u64, u64)> = rom_images(config, images).into_iter().map(|(_, g, l)| (g, l)).collect();
    if let Some(bank) = config.firmware_bank()
        && !images.kernel.is_empty()
    {
        roms.push((bank.range.base.get(), (images.kernel.len() as u64).min(bank.range.size_bytes)));
    }
    for (gpa, len) in roms {
        let size = len.next_multiple_of(1 << PAGE_BITS);
        let rx = ram_rights(MemFlags::READ | MemFlags::EXECUTE);
        add("flash image", MappingKind::Ram, gpa, size, choose(gpa, size), Want::Ram, rx)?;
    }
    // A writable flash bank is read-only memory holding its contents, mapped while the bank
    // reads as an array (the run loop takes it away for commands).
    for d in config.emulated.iter().filter(|d| d.kind == EmulatedKind::CfiFlash && d.writable()) {
        let (gpa, size) = (d.range.base.get(), d.range.size_bytes);
        let r = ram_rights(MemFlags::READ);
        add("flash bank contents", MappingKind::FlashRom, gpa, size, choose(gpa, size), Want::Ram, r)?;
    }
    if let Some(g) = config.capvisor.gic_cpu_interface {
        let (gpa, size, host) = (g.guest.base.get(), g.guest.size_bytes, HostPlace::Shared(PhysAddr(g.host.get())));
        add("GIC virtual CPU interface", MappingKind::GicCpuInterface, gpa, size, host, Want::Device, device)?;
    }
    for p in config.passthrough.iter().filter_map(|p| p.region) {
        let (gpa, size, host) = (p.guest.base.get(), p.guest.size_bytes, HostPlace::Fixed(PhysAddr(p.host.get())));
        add("passthrough device", MappingKind::Device, gpa, size, host, Want::Device, device)?;
    }
    for r in &config.passthrough_addresses {
        let (base, size) = (r.base.get(), r.size_bytes);
        let host = HostPlace::Fixed(PhysAddr(base));
        add("passthrough address range", MappingKind::Device, base, size, host, Want::Device, device)?;
    }
    Ok(out)
}

/// A mapping whose host memory the HAL has placed: the HAL's answers about it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Placed {
    /// The mapping.
    pub mapping: GuestMapping,
    /// What memory its allocation is.
    pub kind: MemoryKind,
    /// The frame capabilities of its allocation, in address order.
    pub frames: Vec<RegionFrame>,
}

/// One frame of a guest mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FramePlan {
    /// The HAL's capability, copied into a slot of the VM's.
    pub src: Slot,
    /// Guest-physical address.
    pub gpa: GuestPhysAddr,
    /// Host-physical address.
    pub hpa: PhysAddr,
    /// Size.
    pub size: FrameSize,
    /// Index of its mapping.
    pub mapping: usize,
    /// Left for the guest's first touch (`populate_ram = "on_touch"`).
    pub deferred: bool,
    /// The kernel did not zero it (device untyped) and the guest may see it before it is
    /// written: the VMM zeroes it.
    pub zero: bool,
}

/// An image copied into guest RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImagePlan {
    /// `kernel`, `dtb`, `ramdisk` or `flash`.
    pub what: &'static str,
    /// Its bytes.
    pub source: ImageSource,
    /// Guest-physical load address.
    pub gpa: GuestPhysAddr,
    /// Host-physical address it goes to.
    pub hpa: PhysAddr,
    /// Bytes.
    pub len: u64,
    /// Index of the RAM mapping that holds it.
    pub mapping: usize,
    /// Cache maintenance once copied.
    pub ops: &'static [CacheOp],
}

/// A writable flash bank: its contents (image, then erased bytes) in a mapping the VMM keeps.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FlashBankPlan {
    /// Index of its `FlashRom` mapping.
    pub mapping: usize,
    /// The bank's device name.
    pub device: String,
    /// Its image (`flash_images` index), if any.
    pub image: Option<usize>,
}

/// One cache-maintenance invocation on a mapped frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlushPlan {
    /// Index in [`VmPlan::frames`] (a frame mapped at build time).
    pub frame: usize,
    /// The operation.
    pub op: CacheOp,
    /// Offset into the frame of the first byte.
    pub from_offset: u64,
    /// Offset into the frame past the last byte.
    pub to_offset: u64,
}

/// One vCPU's settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VcpuPlan {
    /// Its fault endpoint's badge.
    pub badge: VcpuBadge,
    /// `VMPIDR_EL2`.
    pub vmpidr: u64,
    /// How its TCB names the fault endpoint in the guest CSpace.
    pub fault_cptr: u64,
    /// The physical core it is pinned to (`TCB_SetAffinity`), on a multicore kernel.
    pub core: Option<u64>,
}

/// An image the guest needs, with the cache maintenance it needs once copied: the guest
/// starts with its MMU and caches off and reads memory, not the VMM's cached copy (arm64 boot
/// protocol: the image clean to the point of coherency, and no stale instruction lines for
/// the kernel). QEMU has no caches; boards do.
struct WantedImage {
    what: &'static str,
    source: ImageSource,
    gpa: GuestPhysAddr,
    len: u64,
    ops: &'static [CacheOp],
}

fn wanted_images(config: &VmConfig, images: &VmImages<'_>) -> Vec<WantedImage> {
    let image = |what, source, gpa: u64, len: usize, ops| WantedImage {
        what,
        source,
        gpa: GuestPhysAddr(gpa),
        len: len as u64,
        ops,
    };
    let mut out = Vec::new();
    out.push(image("kernel", ImageSource::Kernel, config.kernel.load_addr.get(), images.kernel.len(), CODE));
    if let (Some(d), Some(bytes)) = (&config.dtb, images.dtb) {
        out.push(image("dtb", ImageSource::Dtb, d.load_addr.get(), bytes.len(), DATA));
    }
    if let (Some(r), Some(bytes)) = (&config.ramdisk, images.ramdisk) {
        out.push(image("ramdisk", ImageSource::Ramdisk, r.load_addr.get(), bytes.len(), DATA));
    }
    for (k, gpa, len) in rom_images(config, images) {
        out.push(image("flash", ImageSource::Flash(k), gpa, len as usize, CODE));
    }
    out
}

/// Every frame of every placed mapping. With `populate_ram = "on_touch"` the RAM frames
/// holding images are mapped at the start, the others when the guest first touches them.
fn frames_of(placed: &[Placed], on_touch: bool, wanted: &[WantedImage]) -> Vec<FramePlan> {
    let holds_image = |gpa: u64, size: u64| {
        wanted.iter().any(|w| {
            let load = w.gpa.get();
            w.len > 0 && load < gpa.saturating_add(size) && gpa < load.saturating_add(w.len)
        })
    };
    let mut frames = Vec::new();
    for (mi, p) in placed.iter().enumerate() {
        let m = &p.mapping;
        let (hpa, end) = (m.hpa, PhysAddr(m.hpa.get() + m.size_bytes));
        let ram = m.kind == MappingKind::Ram;
        // seL4 zeroes what it retypes from RAM untyped, never device untyped.
        let zeroed = p.kind == MemoryKind::Ram;
        for f in p.frames.iter().filter(|f| f.paddr >= hpa && f.paddr < end) {
            let gpa = GuestPhysAddr(m.gpa.get() + (f.paddr.get() - hpa.get()));
            frames.push(FramePlan {
                src: f.slot,
                gpa,
                hpa: f.paddr,
                size: f.size,
                mapping: mi,
                deferred: on_touch && ram && !holds_image(gpa.get(), f.size.size_bytes()),
                zero: on_touch && ram && !zeroed,
            });
        }
    }
    frames
}

/// The writable flash banks among the mappings, with their images.
fn flash_banks(config: &VmConfig, mappings: &[GuestMapping]) -> Vec<FlashBankPlan> {
    let mut out = Vec::new();
    for (mi, m) in mappings.iter().enumerate().filter(|(_, m)| m.kind == MappingKind::FlashRom) {
        let Some(d) = config.emulated.iter().find(|d| d.kind == EmulatedKind::CfiFlash && d.range.base == m.gpa) else {
            continue;
        };
        let image = config.flash_images.iter().position(|f| f.device == d.name);
        out.push(FlashBankPlan { mapping: mi, device: d.name.clone(), image });
    }
    out
}

/// Step 2: everything the executor does for one VM. See the module docs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmPlan {
    /// The VM's mappings (the placed regions, in order).
    pub mappings: Vec<GuestMapping>,
    /// Every frame of every mapping, in mapping order.
    pub frames: Vec<FramePlan>,
    /// Stage-2 page tables, parents first.
    pub tables: Vec<(u32, GuestPhysAddr)>,
    /// Mappings the VMM keeps mapped while the VM lives (on-demand RAM it must zero, flash
    /// contents), by index.
    pub kept: Vec<usize>,
    /// Frames the VMM zeroes before the guest starts (indices into `frames`).
    pub zero_now: Vec<usize>,
    /// Image copies.
    pub images: Vec<ImagePlan>,
    /// Writable flash banks.
    pub flash_banks: Vec<FlashBankPlan>,
    /// Cache maintenance, in order, after the copies.
    pub flushes: Vec<FlushPlan>,
    /// vCPUs.
    pub vcpus: Vec<VcpuPlan>,
    /// Their priority.
    pub priority: u64,
}

impl VmPlan {
    /// Plans VM `vm` on the placed mappings, for a kernel on `cores` physical cores. Fails
    /// when an image lies outside the VM's RAM, or a vCPU is pinned to a core beyond `cores`.
    pub fn new(
        vm: usize,
        config: &VmConfig,
        images: &VmImages<'_>,
        placed: &[Placed],
        cores: u64,
    ) -> Result<Self, SetupError> {
        let wanted = wanted_images(config, images);
        let frames = frames_of(placed, config.capvisor.populate_ram == PopulateRam::OnTouch, &wanted);
        // Tables for every frame, deferred ones included: a first touch is then one Page_Map.
        let tables = tables_needed(frames.iter().map(|f| (f.gpa.get(), f.size)))
            .into_iter()
            .map(|(d, g)| (d, GuestPhysAddr(g)))
            .collect();
        let mappings: Vec<GuestMapping> = placed.iter().map(|p| p.mapping).collect();
        // On-demand RAM the kernel did not zero: the VMM zeroes each frame before the guest
        // sees it, through a mapping of the allocation kept while the VM lives; and it keeps
        // flash contents mapped to apply the guest's writes.
        let mut kept: Vec<usize> = Vec::new();
        for (mi, m) in mappings.iter().enumerate() {
            let needs = frames.iter().any(|f| f.mapping == mi && f.zero) || m.kind == MappingKind::FlashRom;
            if needs && !kept.iter().any(|&k| mappings[k].allocation == m.allocation) {
                kept.push(mi);
            }
        }
        let zero_now = (0..frames.len()).filter(|&k| frames[k].zero && !frames[k].deferred).collect();
        let vcpus = (0..usize::from(config.cpu_num))
            .map(|j| {
                let core =
                    config.pinned_core(j, cores).map_err(|core| SetupError::NoSuchCore { vm, vcpu: j, core, cores })?;
                Ok(VcpuPlan {
                    badge: VcpuBadge { vm: vm as u8, vcpu: j as u8 },
                    vmpidr: MPIDR_RES1 | (config.mpidr(j) & 0xff_00ff_ffff),
                    fault_cptr: fault_cptr(j),
                    core,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = VmPlan {
            mappings,
            frames,
            tables,
            kept,
            zero_now,
            images: Vec::new(),
            flash_banks: Vec::new(),
            flushes: Vec::new(),
            vcpus,
            priority: u64::from(config.capvisor.vcpu_priority),
        };
        plan.place_images(vm, wanted)?;
        plan.flash_banks = flash_banks(config, &plan.mappings);
        plan.plan_flushes();
        Ok(plan)
    }

    /// Each wanted image into the RAM mapping that holds it.
    fn place_images(&mut self, vm: usize, wanted: Vec<WantedImage>) -> Result<(), SetupError> {
        for w in wanted {
            let (load, len) = (w.gpa.get(), w.len);
            let m = self.mappings.iter().position(|m| {
                m.kind == MappingKind::Ram
                    && load >= m.gpa.get()
                    && load.checked_add(len).is_some_and(|e| e <= m.gpa.get() + m.size_bytes)
            });
            let Some(mi) = m else {
                // Nothing to place (an image planned as empty, firmware whose bank is absent).
                if len == 0 {
                    continue;
                }
                return Err(SetupError::Image { vm, what: w.what, load, len });
            };
            let m = self.mappings[mi];
            let hpa = PhysAddr(m.hpa.get() + (load - m.gpa.get()));
            self.images.push(ImagePlan {
                what: w.what,
                source: w.source,
                gpa: w.gpa,
                hpa,
                len,
                mapping: mi,
                ops: w.ops,
            });
        }
        Ok(())
    }

    /// Cache maintenance: each image's bytes, each flash bank whole, then the frames zeroed
    /// before the start whole (the images' own cleaning covers only the images' bytes).
    fn plan_flushes(&mut self) {
        let images = self.images.iter().filter(|im| im.len > 0).map(|im| (im.hpa.get(), im.len, im.ops));
        let banks =
            self.flash_banks.iter().map(|b| self.mappings[b.mapping]).map(|m| (m.hpa.get(), m.size_bytes, DATA));
        let zeroed = self.zero_now.iter().map(|&k| self.frames[k]).map(|f| (f.hpa.get(), f.size.size_bytes(), DATA));
        let ranges: Vec<(u64, u64, &'static [CacheOp])> = images.chain(banks).chain(zeroed).collect();
        for (hpa, len, ops) in ranges {
            self.flush(hpa, len, ops);
        }
    }

    /// One flush per mapped frame overlapping host `[hpa, hpa + len)` and operation.
    fn flush(&mut self, hpa: u64, len: u64, ops: &'static [CacheOp]) {
        let end = hpa + len;
        for (k, f) in self.frames.iter().enumerate().filter(|(_, f)| !f.deferred) {
            let (fs, fe) = (f.hpa.get(), f.hpa.get() + f.size.size_bytes());
            let (s, e) = (hpa.max(fs), end.min(fe));
            if s >= e {
                continue;
            }
            for &op in ops {
                self.flushes.push(FlushPlan { frame: k, op, from_offset: s - fs, to_offset: e - fs });
            }
        }
    }

    /// Page-table objects, in retypes of at most the fan-out.
    pub fn table_runs(&self) -> Vec<u64> {
        let fan_out = sel4::config::RETYPE_FAN_OUT_LIMIT.max(1);
        let n = self.tables.len() as u64;
        (0..n.div_ceil(fan_out)).map(|k| (n - k * fan_out).min(fan_out)).collect()
    }

    /// The kernel objects the VM gets from the HAL, by kind, in the order they are made.
    pub fn objects(&self) -> Vec<(ObjectBlueprint, u64)> {
        let mut out = alloc::vec![(ObjectBlueprint::VSpace, 1)];
        out.extend(self.table_runs().into_iter().map(|n| (ObjectBlueprint::PageTable, n)));
        let cpus = self.vcpus.len() as u64;
        out.push((ObjectBlueprint::CNode { slot_bits: GUEST_CNODE_SLOT_BITS }, 1));
        out.push((ObjectBlueprint::Tcb, cpus));
        out.push((ObjectBlueprint::VCpu, cpus));
        out
    }

    /// Root CNode slots the VM's frame copies take.
    pub fn slots(&self) -> u64 {
        self.frames.len() as u64
    }

    /// Frames mapped before the guest starts.
    pub fn mapped_now(&self) -> usize {
        self.frames.iter().filter(|f| !f.deferred).count()
    }

    /// The VMM's own kernel invocations to build the VM (the HAL's allocations, retypes and
    /// mappings into the VMM excluded: those are the HAL's plan), by kind.
    pub fn invocations(&self) -> Vec<(Op, u64)> {
        let cpus = self.vcpus.len() as u64;
        let out = [
            (Op::AsidPoolAssign, 1),
            (Op::PageTableMap, self.tables.len() as u64),
            (Op::CNodeCopy, self.frames.len() as u64),
            (Op::PageMap, self.mapped_now() as u64),
            (Op::PageFlush, self.flushes.len() as u64),
            (Op::CNodeMint, cpus),
            (Op::TcbConfigure, cpus),
            (Op::TcbSetPriority, cpus),
            (Op::TcbSetAffinity, self.vcpus.iter().filter(|c| c.core.is_some()).count() as u64),
            (Op::VCpuSetTcb, cpus),
            (Op::VCpuWriteReg, 2 * cpus),
        ];
        out.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// All of [`VmPlan::invocations`].
    pub fn total_invocations(&self) -> u64 {
        self.invocations().iter().map(|(_, n)| n).sum()
    }
}
