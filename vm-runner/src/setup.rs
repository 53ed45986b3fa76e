//! Building VMs on seL4: guest memory, the stage-2 address space, vCPUs, and the VMM's
//! fault endpoint, from a checked configuration and its images.
//!
//! # What a VM is made of
//! - **Guest RAM**: each configured region is host memory from the HAL's untyped pool:
//!   `MAP_IDENTICAL` (and `MAP_RESERVED`) at the host address equal to the guest address,
//!   `MAP_ALLOC` where the kernel clears least (`UntypedPool::find_least_clearing`), at a
//!   host address with the same alignment (up to 1 GiB) as the guest address so that the
//!   largest frames map it. The frames the pool makes are the largest the alignment allows.
//!   Every fixed address of every VM (identical and reserved RAM, passthrough regions) is
//!   allocated before anything whose place capvisor chooses, so that no VM's objects or RAM
//!   can take a range a later VM names.
//! - **The GIC CPU interface**: the host's GICV frames (device memory, allocated once and
//!   shared by every VM) mapped at the guest's GICC address; the hardware banks them per
//!   running vCPU.
//! - **Stage 2**: a VSpace with an ASID from the given pool, the page tables the mappings
//!   need (counted first, made in one retype per VM, mapped top down), and a copy of every
//!   frame capability mapped at its guest address. The same mappings are written into the
//!   stage-2 book ([`crate::book`]) on the HAL's paging handler; [`Vm::book`] and seL4's
//!   tables must agree (tests check every page on the model).
//! - **Images**: the kernel, device tree and RAM disk are copied in through the root task's
//!   own mapping of the RAM (`Sel4Hal::map_region`, unmapped again afterwards). seL4 zeroes
//!   RAM it retypes, so the rest of guest memory starts as zero.
//! - **Flash banks** (emulated CFI flash): a read-only bank's image, or the kernel when it is
//!   firmware loaded at the bank's base, is read-only RAM at the bank's base, so the guest
//!   runs it in place; a writable bank's whole contents are RAM mapped read-only while the
//!   bank reads as an array ([`FlashRomMapping`], kept mapped in the VMM too: the run loop
//!   applies program and erase there and takes the mapping away for commands).
//! - **vCPUs**: a TCB and a VCPU per vCPU, bound with `VCPU_SetTCB`; `SCTLR_EL1` set to the
//!   kernel's reset value and `VMPIDR_EL2` to the vCPU's affinity; priority from the
//!   configuration (below the VMM's); the guest's stage 2 as VSpace; and a CSpace of its
//!   own holding nothing but the badged fault endpoints of the VM's vCPUs (see below).
//!
//! # The guest's CSpace
//! seL4 without MCS looks a thread's fault handler up in the thread's own CSpace when the
//! fault happens, so a vCPU's CSpace cannot be empty: it holds the fault endpoint, minted
//! with the vCPU's badge ([`crate::VcpuBadge`]) and only the rights a fault needs (send and
//! grant-reply; no receive, no grant). It is one CNode per VM with a slot per vCPU, reached
//! through a 61-bit guard ([`GUEST_CSPACE_GUARD`]): a guest `HVC` that happens to carry a
//! system call number in `x7` looks its `x0` up there and meets a guard mismatch (a cap
//! fault, which the VMM answers as PSCI) unless `x0` is exactly that guard and a slot
//! index. A guest that does name it can send messages with its own vCPU's badge, that is,
//! forge exits of its own VM; the VMM trusts nothing in an exit beyond that VM, so the
//! damage stays inside the VM that did it.
//!
//! Owns every object and slot it creates (recorded in [`Vmm`] and [`Vm`], freed by
//! [`Vmm::teardown`]). Never touches capabilities or memory it was not given.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::fmt;

use hal_sel4::ranges::SlotAllocator;
use hal_sel4::{HalError, HalInstance, KindRequest, MemoryKind, Objects};
use page_table_multiarch::{MappingFlags, PagingHandler};
use sel4::cap_type::{AsidPool, CNode, Endpoint, Frame, Notification, PageTable, Tcb, VCpu, VSpace};
use sel4::object::{PAGE_BITS, PAGE_TABLE_INDEX_BITS};
use sel4::{
    CNodeSlot, CPtr, CacheOp, Cap, CapRights, FrameSize, Kernel, ObjectBlueprint, PhysAddr, Slot, SlotRegion, VCpuReg,
    VirtAddr, VmAttributes,
};
use vm_config::{EmulatedKind, GuestPhysAddr, MapType, MemFlags, PopulateRam, VmConfig};

use crate::badge::VcpuBadge;
use crate::book::{Book, BookError};
use crate::bundle::{Bundle, VmImages};
use crate::vm::{BuildError, Platform, UntouchedFrame, VmState};

/// `SCTLR_EL1` of a vCPU before the guest runs: the kernel's `SCTLR_EL1_VM` (MMU, caches
/// and alignment checks off, `WFI`/`WFE` not trapped by EL1, EL0 cache maintenance allowed).
pub const SCTLR_EL1_RESET: u64 = 0x34d5_8820;
/// `VMPIDR_EL2` bit 31 is RES1.
pub const MPIDR_RES1: u64 = 1 << 31;
/// Slots of a guest CNode: one per vCPU, up to [`VmConfig::MAX_CPUS`].
pub const GUEST_CNODE_SLOT_BITS: u32 = 3;
/// The guard in front of a guest CNode (58 bits at most: `seL4_CNode_CapData`).
pub const GUEST_CSPACE_GUARD: u64 = 0x0063_6170_7669_736f;
/// Guard bits: the rest of the 64-bit CPtr after the CNode's index bits.
pub const GUEST_CSPACE_GUARD_BITS: u32 = 64 - GUEST_CNODE_SLOT_BITS;
/// Rights of a vCPU's fault endpoint: send, and grant-reply so seL4 can make the reply cap.
pub const FAULT_EP_RIGHTS: CapRights = CapRights { write: true, read: false, grant: false, grant_reply: true };
/// Translation levels of a guest's stage 2 (`UPT_LEVELS`).
pub const STAGE2_LEVELS: u32 = if sel4::config::AARCH64_VSPACE_S2_START_L1 { 3 } else { 4 };
/// Guest-physical address bits the book and the stage 2 cover (`seL4_UserTop`).
const GPA_LIMIT: u64 = if sel4::config::ARM_PA_SIZE_BITS_44 { 1 << 44 } else { 1 << 40 };

/// The CPtr by which vCPU `index`'s TCB names its fault endpoint in the guest CSpace.
pub const fn fault_cptr(index: usize) -> u64 {
    (GUEST_CSPACE_GUARD << GUEST_CNODE_SLOT_BITS) | index as u64
}

/// `cspace_root_data` for the guest CNode: `seL4_CNode_CapData` (guard size in bits 0-5,
/// guard from bit 6).
pub const fn guest_cspace_data() -> u64 {
    (GUEST_CSPACE_GUARD << 6) | GUEST_CSPACE_GUARD_BITS as u64
}

/// What a guest mapping is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MappingKind {
    /// Guest RAM.
    Ram,
    /// The GIC virtual CPU interface at the guest's GICC.
    GicCpuInterface,
    /// A passthrough device window.
    Device,
    /// The contents of a writable flash bank, read-only while the bank is in read-array mode
    /// ([`FlashRomMapping`]).
    FlashRom,
}

/// A writable flash bank's contents as read-only memory in the guest's stage 2, and the
/// VMM's own mapping of it through which the run loop writes changed blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlashRomMapping {
    /// The bank's index among the VM's flash banks.
    pub bank: usize,
    /// Guest-physical base (the bank's).
    pub gpa: GuestPhysAddr,
    /// Size (the bank's).
    pub size_bytes: u64,
    /// Where the VMM sees the contents (kept mapped while the VM lives).
    pub va: VirtAddr,
    /// Attributes of the guest's mapping.
    pub attrs: VmAttributes,
}

impl FlashRomMapping {
    /// Whether the guest frame at `gpa` is one of the bank's.
    pub fn holds(&self, gpa: GuestPhysAddr) -> bool {
        gpa.get() >= self.gpa.get() && gpa.get() - self.gpa.get() < self.size_bytes
    }
}

/// One guest-physical range and the host memory behind it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestMapping {
    /// What it is.
    pub kind: MappingKind,
    /// Guest-physical base.
    pub gpa: GuestPhysAddr,
    /// Host-physical base.
    pub hpa: PhysAddr,
    /// Bytes.
    pub size_bytes: u64,
    /// Rights of the mapping.
    pub rights: CapRights,
    /// Attributes of the mapping.
    pub attrs: VmAttributes,
    /// Base of the HAL allocation holding the frames (differs from `hpa` for a window into
    /// a larger allocation).
    pub allocation: PhysAddr,
}

impl GuestMapping {
    /// A mapping of `size` bytes at `gpa` to `hpa`, whose frames are those of the HAL
    /// allocation at `hpa`.
    pub fn new(kind: MappingKind, gpa: u64, hpa: u64, size: u64, rights: CapRights, attrs: VmAttributes) -> Self {
        GuestMapping {
            kind,
            gpa: GuestPhysAddr(gpa),
            hpa: PhysAddr(hpa),
            size_bytes: size,
            rights,
            attrs,
            allocation: PhysAddr(hpa),
        }
    }

    /// The flags the book records for it.
    pub fn book_flags(&self) -> MappingFlags {
        let mut f = MappingFlags::READ;
        if self.rights.write {
            f |= MappingFlags::WRITE;
        }
        if self.attrs.bits() & VmAttributes::EXECUTE_NEVER.bits() == 0 {
            f |= MappingFlags::EXECUTE;
        }
        if self.attrs.bits() & VmAttributes::PAGE_CACHEABLE.bits() == 0 {
            f |= MappingFlags::DEVICE;
        }
        f
    }
}

/// A frame mapped into a guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MappedFrame {
    /// The copy of the frame capability that is mapped (a VMM slot).
    pub cap: Cap<Frame>,
    /// Guest-physical address.
    pub gpa: GuestPhysAddr,
    /// Host-physical address.
    pub hpa: PhysAddr,
    /// Size.
    pub size: FrameSize,
}

/// A frame of on-demand RAM (`populate_ram = "on_touch"`): its capability copy waits in a
/// VMM slot, unmapped, until the guest first touches it ([`crate::run`] then maps it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UntouchedCaps {
    /// The copy of the frame capability to map (a VMM slot).
    pub cap: Cap<Frame>,
    /// Guest-physical address.
    pub gpa: GuestPhysAddr,
    /// Host-physical address.
    pub hpa: PhysAddr,
    /// Size.
    pub size: FrameSize,
    /// Rights of the mapping.
    pub rights: CapRights,
    /// Attributes of the mapping.
    pub attrs: VmAttributes,
    /// Where the VMM sees the frame to zero it, when the kernel did not zero it (memory from
    /// device untyped): its allocation stays mapped in the HAL's window while the VM lives.
    pub zero_at: Option<VirtAddr>,
}

/// A page table of a guest's stage 2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GuestTable {
    /// Its capability.
    pub cap: Cap<PageTable>,
    /// Depth below the root (1 = the root's children).
    pub depth: u32,
    /// First guest-physical address it translates.
    pub gpa: GuestPhysAddr,
}

/// An image placed in guest memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PlacedImage {
    /// `kernel`, `dtb` or `ramdisk`.
    pub what: &'static str,
    /// Guest-physical load address.
    pub gpa: GuestPhysAddr,
    /// Host-physical address it went to.
    pub hpa: PhysAddr,
    /// Bytes.
    pub len: u64,
}

/// The kernel objects of one vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VcpuCaps {
    /// Its thread.
    pub tcb: Cap<Tcb>,
    /// Its VCPU.
    pub vcpu: Cap<VCpu>,
    /// The badge of its fault endpoint.
    pub badge: VcpuBadge,
    /// `VMPIDR_EL2` as written.
    pub vmpidr: u64,
}

/// A range the HAL allocated for a VM (freed at teardown).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// Host-physical base.
    pub base: PhysAddr,
    /// Bytes.
    pub size: u64,
}

/// One VM, built.
pub struct Vm<P: PagingHandler> {
    /// Its index in the system.
    pub index: usize,
    /// The configuration it was built from.
    pub config: VmConfig,
    /// The VMM's model of it.
    pub state: VmState,
    /// Its stage-2 root.
    pub vspace: Cap<VSpace>,
    /// Its CSpace (the fault endpoints).
    pub cnode: Cap<CNode>,
    /// Its vCPUs, in order.
    pub vcpus: Vec<VcpuCaps>,
    /// Its guest-physical layout.
    pub mappings: Vec<GuestMapping>,
    /// Frames mapped into its stage 2.
    pub frames: Vec<MappedFrame>,
    /// Frames of on-demand RAM not mapped yet.
    pub untouched: Vec<UntouchedCaps>,
    /// Page tables of its stage 2, in the order they were mapped.
    pub tables: Vec<GuestTable>,
    /// Images copied in.
    pub images: Vec<PlacedImage>,
    /// The stage-2 book (dropped before teardown frees the HAL's frames).
    pub book: Option<Book<P>>,
    /// Writable flash banks mapped read-only in read-array mode.
    pub flash_rom: Vec<FlashRomMapping>,
    regions: Vec<Region>,
    objects: Vec<(Objects, ObjectBlueprint)>,
}

/// Every VM of a system and what the VMM shares between them.
pub struct Vmm<P: PagingHandler> {
    /// The VMs, in configuration order.
    pub vms: Vec<Vm<P>>,
    /// The endpoint every vCPU faults to.
    pub fault_ep: Cap<Endpoint>,
    /// The notification bound to the VMM's thread (interrupts, timer wake-ups).
    pub ntfn: Cap<Notification>,
    /// Regions shared by the VMs (the GICV frames).
    pub shared: Vec<Region>,
    /// Slots the VMM may still use for its own capabilities.
    pub slots: SlotAllocator,
    /// Seconds since 1970 the VMs' real-time clocks start at (the bundle's).
    pub rtc_base_seconds: u64,
    objects: Vec<(Objects, ObjectBlueprint)>,
}

/// Where the VMM's capabilities come from and where it stands.
#[derive(Clone, Copy, Debug)]
pub struct SetupOptions {
    /// Facts about the machine (list registers).
    pub platform: Platform,
    /// Root CNode slots for the VMM's own capabilities (frame copies, handlers), apart from
    /// the HAL's.
    pub slots: SlotRegion,
    /// The ASID pool the guests' VSpaces take ASIDs from.
    pub asid_pool: Cap<AsidPool>,
    /// The VMM's own thread: priority authority, and the thread the notification is bound to.
    pub vmm_tcb: Cap<Tcb>,
}

/// Writes bytes into memory the HAL mapped into the root task.
pub trait CopyIn {
    /// Copies `bytes` to the root-task virtual address `dst` (the whole range was mapped
    /// writable by `Sel4Hal::map_region` just before).
    fn copy(&mut self, dst: VirtAddr, bytes: &[u8]);
    /// Writes `len` zero bytes at `dst` (mapped writable, as for [`CopyIn::copy`]).
    fn zero(&mut self, dst: VirtAddr, len: u64);
    /// Writes `len` bytes of `byte` at `dst` (mapped writable, as for [`CopyIn::copy`]).
    fn fill(&mut self, dst: VirtAddr, len: u64, byte: u8) {
        let chunk = [byte; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64);
            self.copy(VirtAddr(dst.get() + done), &chunk[..n as usize]);
            done += n;
        }
    }
}

/// One frame of a guest mapping, as the setup plans its stage 2.
struct PlannedFrame {
    /// The HAL's capability.
    src: Slot,
    gpa: u64,
    hpa: u64,
    size: FrameSize,
    /// Index of its mapping in [`Vm::mappings`].
    mapping: usize,
    /// Left for the guest's first touch.
    deferred: bool,
    /// On-demand RAM the kernel did not zero: the VMM zeroes it.
    zero: bool,
}

/// Why a system could not be built (everything made before the failure was freed).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SetupError {
    /// The HAL refused.
    Hal {
        /// The VM, if the step was one VM's.
        vm: Option<usize>,
        /// The step.
        during: &'static str,
        /// Why.
        error: HalError,
    },
    /// A kernel invocation failed.
    Kernel {
        /// The VM, if the step was one VM's.
        vm: Option<usize>,
        /// The invocation.
        during: &'static str,
        /// The kernel's error.
        error: sel4::Error,
    },
    /// The stage-2 book refused a mapping.
    Book {
        /// The VM.
        vm: usize,
        /// Why.
        error: BookError,
    },
    /// The VMM's slot region is too small.
    Slots {
        /// Slots needed at that point.
        needed: u64,
        /// Slots free.
        free: u64,
    },
    /// No free RAM for a `MAP_ALLOC` region.
    NoMemory {
        /// The VM.
        vm: usize,
        /// Bytes wanted.
        size: u64,
    },
    /// An image does not fit in the VM's RAM.
    Image {
        /// The VM.
        vm: usize,
        /// `kernel`, `dtb` or `ramdisk`.
        what: &'static str,
        /// Load address.
        load: u64,
        /// Length.
        len: u64,
    },
    /// A guest address beyond what a stage 2 translates.
    OutOfRange {
        /// The VM.
        vm: usize,
        /// The address.
        gpa: u64,
    },
    /// The bundle's image list does not match its VMs.
    Images,
    /// The VM model refused the configuration.
    State {
        /// The VM.
        vm: usize,
        /// Why.
        error: BuildError,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vm = |f: &mut fmt::Formatter<'_>, v: &Option<usize>| match v {
            Some(v) => write!(f, "VM {v}: "),
            None => Ok(()),
        };
        match self {
            SetupError::Hal { vm: v, during, error } => {
                vm(f, v)?;
                write!(f, "{during}: {error}")
            }
            SetupError::Kernel { vm: v, during, error } => {
                vm(f, v)?;
                write!(f, "{during}: {error:?}")
            }
            SetupError::Book { vm, error } => write!(f, "VM {vm}: {error}"),
            SetupError::Slots { needed, free } => write!(f, "VMM slots: need {needed}, {free} free"),
            SetupError::NoMemory { vm, size } => write!(f, "VM {vm}: no free RAM for {size:#x} bytes"),
            SetupError::Image { vm, what, load, len } => {
                write!(f, "VM {vm}: {what} of {len:#x} bytes at {load:#x} is not inside the VM's RAM")
            }
            SetupError::OutOfRange { vm, gpa } => write!(f, "VM {vm}: guest address {gpa:#x} is beyond stage 2"),
            SetupError::Images => f.write_str("the bundle's images do not match its VMs"),
            SetupError::State { vm, error } => write!(f, "VM {vm}: {error}"),
        }
    }
}

impl core::error::Error for SetupError {}

/// VMM slots to keep apart from the HAL's by default: copies of guest frame capabilities,
/// IRQ handlers.
pub const DEFAULT_VMM_SLOTS: u64 = 4096;

/// Splits bootinfo's empty slots: the HAL takes all but the last `vmm` (at most half), the
/// VMM the rest. Returns `(hal, vmm)`.
pub fn split_slots(empty: SlotRegion, vmm: u64) -> (SlotRegion, SlotRegion) {
    let vmm = vmm.min(empty.len() / 2);
    let cut = Slot::new(empty.end.index() - vmm);
    (SlotRegion { start: empty.start, end: cut }, SlotRegion { start: cut, end: empty.end })
}

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

/// The read-only flash banks' images from `flash_images`: (guest base, image), the image
/// cut to the bank.
fn rom_images<'c>(config: &'c VmConfig, images: &'c VmImages<'_>) -> impl Iterator<Item = (u64, &'c [u8])> + 'c {
    config.flash_images.iter().zip(images.flash.iter()).filter_map(|(f, bytes)| {
        let d = config.emulated.iter().find(|d| d.kind == EmulatedKind::CfiFlash && d.name == f.device)?;
        let len = usize::try_from(d.range.size_bytes).unwrap_or(usize::MAX).min(bytes.len());
        let image = bytes.get(..len)?;
        (!d.writable() && !image.is_empty()).then_some((d.range.base.get(), image))
    })
}

/// Guest ranges of read-only RAM that back read-only flash banks: their `flash_images`, and
/// the kernel when it is firmware at a bank's base ([`VmConfig::firmware_bank`]).
fn rom_ranges(config: &VmConfig, images: &VmImages<'_>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = rom_images(config, images).map(|(gpa, i)| (gpa, i.len() as u64)).collect();
    if let Some(bank) = config.firmware_bank()
        && !images.kernel.is_empty()
    {
        out.push((bank.range.base.get(), (images.kernel.len() as u64).min(bank.range.size_bytes)));
    }
    out
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

fn ram_rights(flags: MemFlags) -> (CapRights, VmAttributes) {
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

/// Device windows: uncached, never executable.
const DEVICE_ATTRS: VmAttributes = VmAttributes::EXECUTE_NEVER;

fn kernel_err(vm: Option<usize>, during: &'static str) -> impl Fn(sel4::Error) -> SetupError {
    move |error| SetupError::Kernel { vm, during, error }
}

fn hal_err(vm: Option<usize>, during: &'static str) -> impl Fn(HalError) -> SetupError {
    move |error| SetupError::Hal { vm, during, error }
}

impl<P: PagingHandler> Vm<P> {
    /// The kernel objects made for this VM: each allocation and its blueprint.
    pub fn objects(&self) -> &[(Objects, ObjectBlueprint)] {
        &self.objects
    }

    /// The memory allocated for this VM (RAM, passthrough windows).
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

impl<P: PagingHandler> Vmm<P> {
    /// The kernel objects the VMM shares between VMs (fault endpoint, notification).
    pub fn objects(&self) -> &[(Objects, ObjectBlueprint)] {
        &self.objects
    }

    /// Builds every VM of `bundle` through HAL instance `I`, with the stage-2 book on paging
    /// handler `P` (`GlobalPaging<I>` on the target, `HostPaging<I>` on the host). The vCPUs
    /// are configured but not started ([`crate::run`] starts them). All or nothing: on an
    /// error, whatever was made is freed.
    pub fn build<I: HalInstance>(
        bundle: &Bundle<'_>,
        options: &SetupOptions,
        copy: &mut dyn CopyIn,
    ) -> Result<Self, SetupError> {
        if bundle.images.len() != bundle.system.vms.len() {
            return Err(SetupError::Images);
        }
        let mut vmm = Vmm {
            vms: Vec::new(),
            fault_ep: Cap::from_cptr(CPtr::NULL),
            ntfn: Cap::from_cptr(CPtr::NULL),
            shared: Vec::new(),
            slots: SlotAllocator::new(options.slots),
            rtc_base_seconds: bundle.rtc_base_seconds,
            objects: Vec::new(),
        };
        let result = vmm.build_all::<I>(bundle, options, copy);
        match result {
            Ok(()) => Ok(vmm),
            Err(e) => {
                // Best effort: the first error is the one to report.
                let _ = vmm.teardown::<I>();
                Err(e)
            }
        }
    }

    fn build_all<I: HalInstance>(
        &mut self,
        bundle: &Bundle<'_>,
        options: &SetupOptions,
        copy: &mut dyn CopyIn,
    ) -> Result<(), SetupError> {
        let cell = I::cell();
        for (i, config) in bundle.system.vms.iter().enumerate() {
            let mut state =
                VmState::new(config, options.platform).map_err(|error| SetupError::State { vm: i, error })?;
            for (f, bytes) in config.flash_images.iter().zip(bundle.images.get(i).map_or(&[][..], |m| &m.flash[..])) {
                state.load_flash(&f.device, bytes).map_err(|error| SetupError::State { vm: i, error })?;
            }
            self.vms.push(Vm {
                index: i,
                config: config.clone(),
                state,
                vspace: Cap::from_cptr(CPtr::NULL),
                cnode: Cap::from_cptr(CPtr::NULL),
                vcpus: Vec::new(),
                mappings: Vec::new(),
                frames: Vec::new(),
                untouched: Vec::new(),
                tables: Vec::new(),
                images: Vec::new(),
                book: None,
                flash_rom: Vec::new(),
                regions: Vec::new(),
                objects: Vec::new(),
            });
        }
        // Every address a configuration names is taken before anything goes where the HAL
        // or the pool chooses: an object or a VM's RAM placed first could otherwise sit on
        // a later VM's fixed range.
        for i in 0..self.vms.len() {
            self.reserve_fixed::<I>(i)?;
        }
        let ep =
            cell.with(|h| h.alloc_objects(ObjectBlueprint::Endpoint, 1)).map_err(hal_err(None, "fault endpoint"))?;
        self.objects.push((ep, ObjectBlueprint::Endpoint));
        self.fault_ep = ep.first.cap();
        let ntfn =
            cell.with(|h| h.alloc_objects(ObjectBlueprint::Notification, 1)).map_err(hal_err(None, "notification"))?;
        self.objects.push((ntfn, ObjectBlueprint::Notification));
        self.ntfn = ntfn.first.cap();
        cell.with(|h| h.kernel_mut().tcb_bind_notification(options.vmm_tcb, self.ntfn))
            .map_err(kernel_err(None, "TCB_BindNotification (VMM)"))?;

        // The GICV frames: one allocation, every VM maps copies of its frames.
        for vm in &bundle.system.vms {
            if let Some(g) = vm.capvisor.gic_cpu_interface {
                let (base, size) = (g.host.get(), g.guest.size_bytes);
                if self.shared.iter().any(|r| r.base.get() == base) {
                    continue;
                }
                cell.with(|h| h.alloc_region(PhysAddr(base), size, KindRequest::Device).map(|_| ()))
                    .map_err(hal_err(None, "GIC virtual CPU interface"))?;
                self.shared.push(Region { base: PhysAddr(base), size });
            }
        }

        for (i, images) in bundle.images.iter().enumerate() {
            self.build_vm::<I>(i, images, options, copy)?;
        }
        Ok(())
    }

    /// Allocates VM `i`'s memory at the addresses its configuration names: RAM mapped
    /// identically or reserved, passthrough device regions and address ranges. Checks the
    /// guest addresses first.
    fn reserve_fixed<I: HalInstance>(&mut self, i: usize) -> Result<(), SetupError> {
        let cell = I::cell();
        let vm = Some(i);
        let config = &self.vms[i].config;
        let mut wanted: Vec<(u64, u64, KindRequest, &'static str)> = Vec::new();
        for m in &config.memory {
            let (gpa, size) = (m.range.base.get(), m.range.size_bytes);
            if gpa.checked_add(size).is_none_or(|e| e > GPA_LIMIT) {
                return Err(SetupError::OutOfRange { vm: i, gpa });
            }
            // Reserved memory may be handed out as device untyped (see vm-config's untyped
            // check); everything else must be RAM, which seL4 zeroes.
            match m.map {
                MapType::Identical => wanted.push((gpa, size, KindRequest::Ram, "guest RAM")),
                MapType::Reserved => wanted.push((gpa, size, KindRequest::Uniform, "guest RAM")),
                MapType::Alloc => {}
            }
        }
        for p in config.passthrough.iter().filter_map(|p| p.region) {
            wanted.push((p.host.get(), p.guest.size_bytes, KindRequest::Device, "passthrough device"));
        }
        for r in &config.passthrough_addresses {
            wanted.push((r.base.get(), r.size_bytes, KindRequest::Device, "passthrough address range"));
        }
        for (base, size, kind, during) in wanted {
            cell.with(|h| h.alloc_region(PhysAddr(base), size, kind).map(|_| ())).map_err(hal_err(vm, during))?;
            self.vms[i].regions.push(Region { base: PhysAddr(base), size });
        }
        Ok(())
    }

    /// Cache maintenance `ops` on host-physical `[hpa, hpa + len)` of VM `i`'s RAM, through
    /// the frame copies mapped in its stage 2 (mapped, so the kernel accepts them): one call
    /// per frame and operation.
    fn flush_guest_range<I: HalInstance>(
        &self,
        i: usize,
        hpa: u64,
        len: u64,
        ops: &[CacheOp],
    ) -> Result<(), SetupError> {
        let end = hpa + len;
        for f in &self.vms[i].frames {
            let (fs, fe) = (f.hpa.get(), f.hpa.get() + (1u64 << f.size.size_bits()));
            let (s, e) = (hpa.max(fs), end.min(fe));
            if s >= e {
                continue;
            }
            for &op in ops {
                I::cell()
                    .with(|h| h.kernel_mut().page_flush(f.cap, op, s - fs, e - fs))
                    .map_err(kernel_err(Some(i), "Page_CleanInvalidate_Data / Unify_Instruction (guest image)"))?;
            }
        }
        Ok(())
    }

    /// RAM for `size` bytes of VM `i` at guest `gpa`, wherever the kernel clears least (its
    /// first retype into a boot untyped clears the whole untyped, which is most of the cost
    /// of building a VM), aligned as `gpa` is so the largest frames map it; recorded as the
    /// VM's. Returns the host address.
    fn alloc_ram<I: HalInstance>(
        &mut self,
        i: usize,
        gpa: u64,
        size: u64,
        during: &'static str,
    ) -> Result<u64, SetupError> {
        let cell = I::cell();
        let hpa = cell
            .with(|h| h.pool().find_least_clearing(size, alloc_alignment(gpa, size), None))
            .ok_or(SetupError::NoMemory { vm: i, size })?;
        cell.with(|h| h.alloc_region(PhysAddr(hpa), size, KindRequest::Ram).map(|_| ()))
            .map_err(hal_err(Some(i), during))?;
        self.vms[i].regions.push(Region { base: PhysAddr(hpa), size });
        Ok(hpa)
    }

    fn build_vm<I: HalInstance>(
        &mut self,
        i: usize,
        images: &VmImages<'_>,
        options: &SetupOptions,
        copy: &mut dyn CopyIn,
    ) -> Result<(), SetupError> {
        let cell = I::cell();
        let vm = Some(i);
        let config = self.vms[i].config.clone();

        // ---- guest memory (fixed addresses were reserved by `reserve_fixed`) ----
        for m in &config.memory {
            let (gpa, size) = (m.range.base.get(), m.range.size_bytes);
            let hpa = match m.map {
                MapType::Identical | MapType::Reserved => gpa,
                MapType::Alloc => self.alloc_ram::<I>(i, gpa, size, "guest RAM")?,
            };
            let (rights, attrs) = ram_rights(m.flags);
            self.vms[i].mappings.push(GuestMapping::new(MappingKind::Ram, gpa, hpa, size, rights, attrs));
        }
        // A read-only flash bank's image is read-only RAM at the bank's base, so the guest
        // executes from it in place (QEMU's pflash in ROM mode); the rest of the bank traps
        // to the flash model.
        for (gpa, len) in rom_ranges(&config, images) {
            let size = len.next_multiple_of(1 << PAGE_BITS);
            let hpa = self.alloc_ram::<I>(i, gpa, size, "flash image")?;
            let (rights, attrs) = ram_rights(MemFlags::READ | MemFlags::EXECUTE);
            self.vms[i].mappings.push(GuestMapping::new(MappingKind::Ram, gpa, hpa, size, rights, attrs));
        }
        // A writable flash bank is also read-only memory holding its contents, mapped while
        // the bank reads as an array (the run loop takes it away for commands).
        for d in config.emulated.iter().filter(|d| d.kind == EmulatedKind::CfiFlash && d.writable()) {
            let (gpa, size) = (d.range.base.get(), d.range.size_bytes);
            let hpa = self.alloc_ram::<I>(i, gpa, size, "flash bank contents")?;
            let (rights, attrs) = ram_rights(MemFlags::READ);
            self.vms[i].mappings.push(GuestMapping::new(MappingKind::FlashRom, gpa, hpa, size, rights, attrs));
        }
        if let Some(g) = config.capvisor.gic_cpu_interface {
            let (gpa, hpa, size) = (g.guest.base.get(), g.host.get(), g.guest.size_bytes);
            let m =
                GuestMapping::new(MappingKind::GicCpuInterface, gpa, hpa, size, CapRights::READ_WRITE, DEVICE_ATTRS);
            self.vms[i].mappings.push(m);
        }
        for p in config.passthrough.iter().filter_map(|p| p.region) {
            let (gpa, hpa, size) = (p.guest.base.get(), p.host.get(), p.guest.size_bytes);
            let m = GuestMapping::new(MappingKind::Device, gpa, hpa, size, CapRights::READ_WRITE, DEVICE_ATTRS);
            self.vms[i].mappings.push(m);
        }
        for r in &config.passthrough_addresses {
            let (base, size) = (r.base.get(), r.size_bytes);
            let m = GuestMapping::new(MappingKind::Device, base, base, size, CapRights::READ_WRITE, DEVICE_ATTRS);
            self.vms[i].mappings.push(m);
        }

        // ---- the book ----
        let mut book = Book::<P>::new().map_err(|error| SetupError::Book { vm: i, error })?;
        let mut booked = Ok(());
        for m in &self.vms[i].mappings {
            if let Err(error) = book.map_linear(m.gpa.get(), m.hpa.get(), m.size_bytes, m.book_flags()) {
                booked = Err(SetupError::Book { vm: i, error });
                break;
            }
        }
        self.vms[i].book = Some(book);
        booked?;

        // ---- stage 2: VSpace, tables, frames ----
        let vs = cell.with(|h| h.alloc_objects(ObjectBlueprint::VSpace, 1)).map_err(hal_err(vm, "VSpace"))?;
        self.vms[i].objects.push((vs, ObjectBlueprint::VSpace));
        let vspace: Cap<VSpace> = vs.first.cap();
        self.vms[i].vspace = vspace;
        cell.with(|h| h.kernel_mut().asid_pool_assign(options.asid_pool, vspace))
            .map_err(kernel_err(vm, "ASIDPool_Assign"))?;

        // ---- images, and which frames wait for the guest's first touch ----
        // Each image with the cache maintenance it needs once copied: the guest starts with
        // its MMU and caches off and reads memory, not the VMM's cached copy (arm64 boot
        // protocol: the image clean to the point of coherency, and no stale instruction lines
        // for the kernel). QEMU has no caches; boards do.
        const DATA: &[CacheOp] = &[CacheOp::CleanInvalidateData];
        const CODE: &[CacheOp] = &[CacheOp::CleanInvalidateData, CacheOp::UnifyInstruction];
        let mut wanted: Vec<(&'static str, u64, &[u8], &[CacheOp])> = Vec::new();
        wanted.push(("kernel", config.kernel.load_addr.get(), images.kernel, CODE));
        if let (Some(d), Some(bytes)) = (&config.dtb, images.dtb) {
            wanted.push(("dtb", d.load_addr.get(), bytes, DATA));
        }
        if let (Some(r), Some(bytes)) = (&config.ramdisk, images.ramdisk) {
            wanted.push(("ramdisk", r.load_addr.get(), bytes, DATA));
        }
        for (gpa, image) in rom_images(&config, images) {
            wanted.push(("flash", gpa, image, CODE));
        }
        // With `populate_ram = "on_touch"` the RAM frames holding images are mapped now, the
        // others when the guest first touches them.
        let on_touch = config.capvisor.populate_ram == PopulateRam::OnTouch;
        let holds_image = |gpa: u64, size: u64| {
            wanted.iter().any(|&(_, load, bytes, _)| {
                !bytes.is_empty() && load < gpa.saturating_add(size) && gpa < load.saturating_add(bytes.len() as u64)
            })
        };

        // The frames of every mapping, from the HAL's capability table.
        let mut planned: Vec<PlannedFrame> = Vec::new();
        for (mi, m) in self.vms[i].mappings.iter().enumerate() {
            let (gpa, hpa) = (m.gpa.get(), m.hpa.get());
            let end = hpa + m.size_bytes;
            let ram = m.kind == MappingKind::Ram;
            cell.with(|h| {
                // seL4 zeroes what it retypes from RAM untyped, never device untyped.
                let zeroed = h.pool().allocation(m.allocation.get()).is_some_and(|a| a.kind == MemoryKind::Ram);
                for (f, _) in h.frames(m.allocation) {
                    let p = f.paddr.get();
                    if p >= hpa && p < end {
                        let g = gpa + (p - hpa);
                        let deferred = on_touch && ram && !holds_image(g, f.size.size_bytes());
                        planned.push(PlannedFrame {
                            src: f.slot,
                            gpa: g,
                            hpa: p,
                            size: f.size,
                            mapping: mi,
                            deferred,
                            zero: on_touch && ram && !zeroed,
                        });
                    }
                }
            });
        }
        // Tables for every frame, deferred ones included: a first touch is then one Page_Map.
        let needed = tables_needed(planned.iter().map(|f| (f.gpa, f.size)));
        let fan_out = sel4::config::RETYPE_FAN_OUT_LIMIT;
        for chunk in needed.chunks(fan_out as usize) {
            let objs = cell
                .with(|h| h.alloc_objects(ObjectBlueprint::PageTable, chunk.len() as u64))
                .map_err(hal_err(vm, "stage-2 page tables"))?;
            self.vms[i].objects.push((objs, ObjectBlueprint::PageTable));
            for (k, &(depth, gpa)) in chunk.iter().enumerate() {
                let cap: Cap<PageTable> = Slot::new(objs.first.index() + k as u64).cap();
                cell.with(|h| h.kernel_mut().page_table_map(cap, vspace, VirtAddr(gpa), VmAttributes::DEFAULT))
                    .map_err(kernel_err(vm, "PageTable_Map"))?;
                self.vms[i].tables.push(GuestTable { cap, depth, gpa: GuestPhysAddr(gpa) });
            }
        }
        // On-demand RAM the kernel did not zero: the VMM zeroes each frame before the guest
        // sees it, through a mapping of the allocation kept while the VM lives (the frames
        // mapped now are zeroed below, before the images go in; the others at first touch).
        let mut kept: Vec<(PhysAddr, VirtAddr)> = Vec::new();
        for (mi, m) in self.vms[i].mappings.iter().enumerate() {
            if !planned.iter().any(|f| f.mapping == mi && f.zero) || kept.iter().any(|k| k.0 == m.allocation) {
                continue;
            }
            let va =
                cell.with(|h| h.map_region(m.allocation)).map_err(hal_err(vm, "mapping guest RAM into the VMM"))?;
            kept.push((m.allocation, va));
        }
        let kept_at = |alloc: PhysAddr| kept.iter().find(|k| k.0 == alloc).map(|k| k.1);
        let window = |hpa: u64, alloc: PhysAddr| kept_at(alloc).map(|va| VirtAddr(va.get() + (hpa - alloc.get())));
        let n = planned.len() as u64;
        let first = self.slots.alloc(n).ok_or(SetupError::Slots { needed: n, free: self.slots.free_count() })?;
        for (k, f) in planned.iter().enumerate() {
            let slot = Slot::new(first.index() + k as u64);
            let cap: Cap<Frame> = slot.cap();
            let m = self.vms[i].mappings[f.mapping];
            cell.with(|h| h.kernel_mut().cnode_copy(CNodeSlot::root(slot), f.src, m.rights))
                .map_err(kernel_err(vm, "CNode_Copy (frame)"))?;
            let (gpa, hpa) = (GuestPhysAddr(f.gpa), PhysAddr(f.hpa));
            if f.deferred {
                let (rights, attrs, size) = (m.rights, m.attrs, f.size);
                let zero_at = if f.zero { window(f.hpa, m.allocation) } else { None };
                self.vms[i].untouched.push(UntouchedCaps { cap, gpa, hpa, size, rights, attrs, zero_at });
                continue;
            }
            self.vms[i].frames.push(MappedFrame { cap, gpa, hpa, size: f.size });
            cell.with(|h| h.kernel_mut().page_map(cap, vspace, VirtAddr(f.gpa), m.rights, m.attrs))
                .map_err(kernel_err(vm, "Page_Map (guest)"))?;
        }

        for f in planned.iter().filter(|f| f.zero && !f.deferred) {
            if let Some(va) = window(f.hpa, self.vms[i].mappings[f.mapping].allocation) {
                copy.zero(va, f.size.size_bytes());
            }
        }

        for &(what, load, bytes, ops) in &wanted {
            let len = bytes.len() as u64;
            let m = self.vms[i]
                .mappings
                .iter()
                .find(|m| {
                    m.kind == MappingKind::Ram
                        && load >= m.gpa.get()
                        && load.checked_add(len).is_some_and(|e| e <= m.gpa.get() + m.size_bytes)
                })
                .copied();
            let Some(m) = m else {
                // Nothing to place (an image planned as empty, firmware whose bank is absent).
                if len == 0 {
                    continue;
                }
                return Err(SetupError::Image { vm: i, what, load, len });
            };
            let hpa = m.hpa.get() + (load - m.gpa.get());
            if len > 0 {
                let kept_va = kept_at(m.allocation);
                let va = match kept_va {
                    Some(va) => va,
                    None => cell
                        .with(|h| h.map_region(m.allocation))
                        .map_err(hal_err(vm, "mapping guest RAM into the VMM"))?,
                };
                copy.copy(VirtAddr(va.get() + (hpa - m.allocation.get())), bytes);
                if kept_va.is_none() {
                    cell.with(|h| h.unmap_region(m.allocation))
                        .map_err(hal_err(vm, "unmapping guest RAM from the VMM"))?;
                }
                self.flush_guest_range::<I>(i, hpa, len, ops)?;
            }
            self.vms[i].images.push(PlacedImage { what, gpa: GuestPhysAddr(load), hpa: PhysAddr(hpa), len });
        }
        // Writable flash banks: their image, erased bytes after it, through a mapping the
        // VMM keeps for the blocks the guest changes.
        for m in self.vms[i].mappings.clone().iter().filter(|m| m.kind == MappingKind::FlashRom) {
            let Some(d) = config.emulated.iter().find(|d| d.kind == EmulatedKind::CfiFlash && d.range.base == m.gpa)
            else {
                continue;
            };
            let image = config
                .flash_images
                .iter()
                .position(|f| f.device == d.name)
                .and_then(|k| images.flash.get(k).copied())
                .unwrap_or(&[]);
            let image = image.get(..(m.size_bytes as usize).min(image.len())).unwrap_or(&[]);
            let va = cell
                .with(|h| h.map_region(m.allocation))
                .map_err(hal_err(vm, "mapping flash contents into the VMM"))?;
            let at = VirtAddr(va.get() + (m.hpa.get() - m.allocation.get()));
            copy.copy(at, image);
            copy.fill(VirtAddr(at.get() + image.len() as u64), m.size_bytes - image.len() as u64, 0xff);
            self.flush_guest_range::<I>(i, m.hpa.get(), m.size_bytes, &[CacheOp::CleanInvalidateData])?;
            let mut rom = FlashRomMapping { bank: 0, gpa: m.gpa, size_bytes: m.size_bytes, va: at, attrs: m.attrs };
            let frames = self.vms[i].frames.iter().filter(|f| rom.holds(f.gpa)).count();
            if let Some(bank) = self.vms[i].state.set_flash_rom(&d.name, frames) {
                rom.bank = bank;
                self.vms[i].flash_rom.push(rom);
            }
        }
        // The frames zeroed above (each holds an image, or it would be deferred): clean them
        // whole, since the images' own cleaning covers only the images' bytes.
        for f in planned.iter().filter(|f| f.zero && !f.deferred) {
            self.flush_guest_range::<I>(i, f.hpa, f.size.size_bytes(), &[CacheOp::CleanInvalidateData])?;
        }
        if on_touch {
            let frames = self.vms[i].untouched.iter().map(|u| UntouchedFrame {
                gpa: u.gpa.get(),
                size: u.size.size_bytes(),
                zero: u.zero_at.is_some(),
            });
            let frames = frames.collect();
            self.vms[i].state.set_untouched(frames);
        }

        // ---- the guest CSpace and the vCPUs ----
        let cn = cell
            .with(|h| h.alloc_objects(ObjectBlueprint::CNode { slot_bits: GUEST_CNODE_SLOT_BITS }, 1))
            .map_err(hal_err(vm, "guest CNode"))?;
        self.vms[i].objects.push((cn, ObjectBlueprint::CNode { slot_bits: GUEST_CNODE_SLOT_BITS }));
        let cnode: Cap<CNode> = cn.first.cap();
        self.vms[i].cnode = cnode;
        let cpus = u64::from(config.cpu_num);
        let tcbs = cell.with(|h| h.alloc_objects(ObjectBlueprint::Tcb, cpus)).map_err(hal_err(vm, "vCPU TCBs"))?;
        self.vms[i].objects.push((tcbs, ObjectBlueprint::Tcb));
        let vcpus = cell.with(|h| h.alloc_objects(ObjectBlueprint::VCpu, cpus)).map_err(hal_err(vm, "VCPUs"))?;
        self.vms[i].objects.push((vcpus, ObjectBlueprint::VCpu));
        let ep_slot = self.fault_ep.slot();
        let prio = u64::from(config.capvisor.vcpu_priority);
        for j in 0..usize::from(config.cpu_num) {
            let tcb: Cap<Tcb> = Slot::new(tcbs.first.index() + j as u64).cap();
            let vcpu: Cap<VCpu> = Slot::new(vcpus.first.index() + j as u64).cap();
            let badge = VcpuBadge { vm: i as u8, vcpu: j as u8 };
            let vmpidr = MPIDR_RES1 | (config.mpidr(j) & 0xff_00ff_ffff);
            cell.with(|h| -> Result<(), SetupError> {
                let k = h.kernel_mut();
                let dest = CNodeSlot { cnode, index: j as u64, depth: GUEST_CNODE_SLOT_BITS as u8 };
                k.cnode_mint(dest, ep_slot, FAULT_EP_RIGHTS, badge.to_badge())
                    .map_err(kernel_err(vm, "CNode_Mint (fault endpoint)"))?;
                k.tcb_configure(
                    tcb,
                    CPtr::from_bits(fault_cptr(j)),
                    cnode,
                    guest_cspace_data(),
                    vspace,
                    VirtAddr(0),
                    Cap::from_cptr(CPtr::NULL),
                )
                .map_err(kernel_err(vm, "TCB_Configure"))?;
                k.tcb_set_priority(tcb, options.vmm_tcb, prio).map_err(kernel_err(vm, "TCB_SetPriority"))?;
                k.vcpu_set_tcb(vcpu, tcb).map_err(kernel_err(vm, "VCPU_SetTCB"))?;
                k.vcpu_write_reg(vcpu, VCpuReg::Sctlr, SCTLR_EL1_RESET).map_err(kernel_err(vm, "VCPU_WriteRegs"))?;
                k.vcpu_write_reg(vcpu, VCpuReg::VmpidrEl2, vmpidr).map_err(kernel_err(vm, "VCPU_WriteRegs"))?;
                Ok(())
            })?;
            self.vms[i].vcpus.push(VcpuCaps { tcb, vcpu, badge, vmpidr });
        }
        Ok(())
    }

    /// Frees everything [`Vmm::build`] made: the books (through the paging handler), then
    /// every VM's objects and memory, then the shared objects. The vCPU threads die with
    /// their TCBs.
    pub fn teardown<I: HalInstance>(&mut self) -> Result<(), SetupError> {
        for vm in &mut self.vms {
            // Outside the HAL's lock: the book's frames go back through the paging handler,
            // which takes it.
            drop(vm.book.take());
        }
        let cell = I::cell();
        let mut first_err = None;
        let mut note = |r: Result<(), HalError>, vm: Option<usize>, during: &'static str| {
            if let Err(error) = r
                && first_err.is_none()
            {
                first_err = Some(SetupError::Hal { vm, during, error });
            }
        };
        for vm in self.vms.iter_mut().rev() {
            for (objs, bp) in vm.objects.drain(..).rev() {
                note(cell.with(|h| h.free_objects(objs, bp)), Some(vm.index), "freeing VM objects");
            }
            for r in vm.regions.drain(..).rev() {
                note(cell.with(|h| h.dealloc_region(r.base, r.size)), Some(vm.index), "freeing VM memory");
            }
            vm.frames.clear();
            vm.untouched.clear();
            vm.tables.clear();
            vm.vcpus.clear();
        }
        self.vms.clear();
        for r in self.shared.drain(..).rev() {
            note(cell.with(|h| h.dealloc_region(r.base, r.size)), None, "freeing shared memory");
        }
        for (objs, bp) in self.objects.drain(..).rev() {
            note(cell.with(|h| h.free_objects(objs, bp)), None, "freeing VMM objects");
        }
        self.slots = SlotAllocator::new(self.slots.region());
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "setup_tests.rs"]
pub(crate) mod tests;
