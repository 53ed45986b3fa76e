//! Building VMs on seL4 through the HAL seam: guest memory, the stage-2 address space,
//! vCPUs, and the VMM's fault endpoint, from a checked configuration and its images; and
//! building one again after a reset.
//!
//! # The seam
//! Everything goes through a HAL `H` that implements the seed's `AxVMHal` and vm-runner's
//! `VmObjects` (crate `vm-objects`), by static calls that each hold whatever lock the HAL has
//! for their own length only:
//! - guest memory at a host base: `alloc_memory_region_at` / `dealloc_memory_region_at`
//!   (checked afterwards to be the kind the region needs, `VmObjects::region_kind`);
//! - where RAM goes when the configuration leaves it open: `VmObjects::place_ram`;
//! - the stage-2 book's table frames: `AxVMHal::PagingHandler`;
//! - image copies: through `VmObjects::map_region`, each checked with `virt_to_phys`;
//! - kernel objects, frame capabilities, slots: `VmObjects`;
//! - invocations on them: the kernel the HAL lends per call (`sel4::Lent`).
//!
//! # Plan, then execute
//! [`crate::plan`] says, from the configuration and the HAL's placement, what a VM is made of
//! and which invocations it takes; [`Vmm::build`] performs that plan and counts its own
//! invocations into [`Vm::built_with`] (tests check the two agree).
//!
//! # What a VM is made of
//! - **Guest RAM**: each configured region is host memory from the HAL:
//!   `MAP_IDENTICAL` (and `MAP_RESERVED`) at the host address equal to the guest address,
//!   `MAP_ALLOC` where the HAL says it costs least (`VmObjects::place_ram`), at a host address
//!   with the same alignment (up to 1 GiB) as the guest address so that the largest frames
//!   map it. The frames the pool makes are the largest the alignment allows.
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
//! - **Images**: the kernel, device tree and RAM disk are copied in through the VMM's own
//!   mapping of the RAM (`VmObjects::map_region`, once per region, unmapped again afterwards),
//!   after `virt_to_phys` confirms the mapping reaches the planned frame. seL4 zeroes RAM it
//!   retypes, so the rest of guest memory starts as zero.
//! - **Flash banks** (emulated CFI flash): a read-only bank's image, or the kernel when it is
//!   firmware loaded at the bank's base, is read-only RAM at the bank's base, so the guest
//!   runs it in place; a writable bank's whole contents are RAM mapped read-only while the
//!   bank reads as an array ([`FlashRomMapping`], kept mapped in the VMM too: the run loop
//!   applies program and erase there and takes the mapping away for commands).
//! - **vCPUs**: a TCB and a VCPU per vCPU, bound with `VCPU_SetTCB`; `SCTLR_EL1` set to the
//!   kernel's reset value and `VMPIDR_EL2` to the vCPU's affinity; priority from the
//!   configuration (below the VMM's); on a multicore kernel, pinned with `TCB_SetAffinity` to
//!   the core its `phys_cpu_ids` entry names (the VMM itself stays on core 0 and takes every
//!   vCPU's faults there); the guest's stage 2 as VSpace; and a CSpace of its own holding
//!   nothing but the badged fault endpoints of the VM's vCPUs (see below).
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
//! # A reboot
//! [`Vmm::reboot_vm`] frees one VM as a shutdown does (book, copies of shared frames, objects,
//! memory through `dealloc_memory_region_at`, slots) and builds it again from its bundle
//! entry, fixed ranges first; the other VMs and the shared objects stay. Its counters carry
//! over. The seam tests reboot a VM 20 times on the model with every slot and byte back.
//!
//! Owns every object and slot it creates (recorded in [`Vmm`] and [`Vm`], freed by
//! [`Vmm::teardown`] and [`Vmm::reboot_vm`]). Never touches capabilities or memory it was not
//! given, and never the HAL's internals.

use alloc::vec::Vec;
use core::fmt;

use axvm_hal::{HostPhysAddr, HostVirtAddr};
use page_table_multiarch::{MappingFlags, PagingHandler};
use sel4::cap_type::{AsidPool, CNode, Endpoint, Frame, IrqHandler, Notification, PageTable, Tcb, VCpu, VSpace};
use sel4::{
    CNodeSlot, CPtr, Cap, CapRights, FrameSize, Kernel, Lent, ObjectBlueprint, Observed, OpCounts, PhysAddr, Slot,
    SlotRegion, VCpuReg, VirtAddr, VmAttributes,
};
use vm_config::{GuestPhysAddr, PopulateRam, VmConfig};
use vm_objects::{Objects, Refused, VmObjects};

use crate::badge::VcpuBadge;
use crate::book::{Book, BookError};
use crate::bundle::{Bundle, VmImages};
use crate::plan::{self, HostPlace, Placed, RegionPlan, VmPlan, Want};
pub use crate::plan::{STAGE2_LEVELS, alloc_alignment, table_span_bits, tables_needed};
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
    pub fn new(
        kind: MappingKind,
        gpa: GuestPhysAddr,
        hpa: PhysAddr,
        size_bytes: u64,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Self {
        GuestMapping { kind, gpa, hpa, size_bytes, rights, attrs, allocation: hpa }
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
    /// The plan it was built by (`None` until its memory is placed).
    pub plan: Option<VmPlan>,
    /// The VMM's own kernel invocations building it took (the HAL's excluded), counted as
    /// they were made: [`VmPlan::invocations`] predicts them.
    pub built_with: OpCounts,
    /// Times it was built again after a reset.
    pub reboots: u32,
    regions: Vec<Region>,
    objects: Vec<Objects>,
    slots: Option<(Slot, u64)>,
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
    /// Seconds since 1970 the VMs' real-time clocks start at (the bundle's).
    pub rtc_base_seconds: u64,
    /// How it was built (to build a VM again after a reset).
    pub options: SetupOptions,
    /// Host interrupts routed to the VMM's notification ([`Vmm::route_irq`]).
    pub irqs: Vec<RoutedIrq>,
    objects: Vec<Objects>,
}

/// A host interrupt whose handler signals the VMM's notification with a badge of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RoutedIrq {
    /// The interrupt.
    pub irq: u64,
    /// Its handler (acknowledge it to take the next one).
    pub handler: Cap<IrqHandler>,
    /// The badged copy of the notification the handler signals.
    pub signal: Slot,
    /// The badge bits.
    pub badge: u64,
}

/// Where the VMM's capabilities come from and where it stands.
#[derive(Clone, Copy, Debug)]
pub struct SetupOptions {
    /// Facts about the machine (list registers).
    pub platform: Platform,
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

/// Why a system could not be built (everything made before the failure was freed).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SetupError {
    /// The HAL refused.
    Hal {
        /// The VM, if the step was one VM's.
        vm: Option<usize>,
        /// The step.
        during: &'static str,
        /// Why, in the HAL's words.
        error: Refused,
    },
    /// `alloc_memory_region_at` refused a range (the HAL logs why).
    Memory {
        /// The VM, if the range was one VM's.
        vm: Option<usize>,
        /// What the range is for.
        during: &'static str,
        /// Host-physical base.
        base: PhysAddr,
        /// Bytes.
        size: u64,
    },
    /// The HAL gave memory of the wrong kind (device memory for RAM the guest needs zeroed,
    /// RAM for a passthrough device).
    WrongMemory {
        /// The VM, if the range was one VM's.
        vm: Option<usize>,
        /// What the range is for.
        during: &'static str,
        /// Host-physical base.
        base: PhysAddr,
        /// What it had to be.
        want: Want,
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
    /// The HAL's translation of the VMM's mapping of guest memory is not where the plan put
    /// the bytes: nothing is copied.
    Translation {
        /// The VM.
        vm: usize,
        /// The VMM's address.
        va: VirtAddr,
        /// Where the plan puts the bytes.
        expected: PhysAddr,
        /// Where `virt_to_phys` says it is.
        got: PhysAddr,
    },
    /// A guest address beyond what a stage 2 translates.
    OutOfRange {
        /// The VM.
        vm: usize,
        /// The address.
        gpa: GuestPhysAddr,
    },
    /// A vCPU is pinned to a core the kernel does not run on.
    NoSuchCore {
        /// The VM.
        vm: usize,
        /// The vCPU.
        vcpu: usize,
        /// The core its `phys_cpu_ids` entry names.
        core: u64,
        /// Cores the kernel runs on.
        cores: u64,
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
            SetupError::Memory { vm: v, during, base, size } => {
                vm(f, v)?;
                write!(f, "{during}: the HAL refused {size:#x} bytes at {base}")
            }
            SetupError::WrongMemory { vm: v, during, base, want } => {
                vm(f, v)?;
                write!(f, "{during}: the memory at {base} is not {want:?} memory")
            }
            SetupError::Kernel { vm: v, during, error } => {
                vm(f, v)?;
                write!(f, "{during}: {error:?}")
            }
            SetupError::Book { vm, error } => write!(f, "VM {vm}: {error}"),
            SetupError::NoMemory { vm, size } => write!(f, "VM {vm}: no free RAM for {size:#x} bytes"),
            SetupError::Image { vm, what, load, len } => {
                write!(f, "VM {vm}: {what} of {len:#x} bytes at {load:#x} is not inside the VM's RAM")
            }
            SetupError::Translation { vm, va, expected, got } => {
                write!(f, "VM {vm}: the VMM's {va} should reach {expected}, the HAL translates it to {got}")
            }
            SetupError::OutOfRange { vm, gpa } => {
                write!(f, "VM {vm}: guest address {:#x} is beyond stage 2", gpa.get())
            }
            SetupError::NoSuchCore { vm, vcpu, core, cores } => write!(
                f,
                "VM {vm}: vCPU {vcpu} is pinned to core {core} (base.phys_cpu_ids[{vcpu}]), the kernel runs on cores 0..{cores}"
            ),
            SetupError::Images => f.write_str("the bundle's images do not match its VMs"),
            SetupError::State { vm, error } => write!(f, "VM {vm}: {error}"),
        }
    }
}

impl core::error::Error for SetupError {}

/// Root CNode slots to keep for the VM layer's own capabilities by default: copies of guest
/// frame capabilities, IRQ handlers.
pub const DEFAULT_VMM_SLOTS: u64 = 4096;

/// Splits bootinfo's empty slots: the HAL's pool takes all but the last `vmm` (at most half),
/// the VM layer's loose slots the rest. Returns `(pool, loose)`.
pub fn split_slots(empty: SlotRegion, vmm: u64) -> (SlotRegion, SlotRegion) {
    let vmm = vmm.min(empty.len() / 2);
    empty.split_at(empty.len() - vmm)
}

/// The first error of steps that all run however the earlier ones went (a teardown).
#[derive(Default)]
struct FirstError(Option<SetupError>);

impl FirstError {
    fn note(&mut self, r: Result<(), SetupError>) {
        if let Err(e) = r
            && self.0.is_none()
        {
            self.0 = Some(e);
        }
    }

    fn result(self) -> Result<(), SetupError> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The `k`th slot from `first`.
fn nth(first: Slot, k: usize) -> Slot {
    first.offset(k as u64)
}

fn kernel_err(vm: Option<usize>, during: &'static str) -> impl Fn(sel4::Error) -> SetupError {
    move |error| SetupError::Kernel { vm, during, error }
}

fn hal_err(vm: Option<usize>, during: &'static str) -> impl Fn(Refused) -> SetupError {
    move |error| SetupError::Hal { vm, during, error }
}

/// `[base, base + size)` through `alloc_memory_region_at`, checked to be the memory `want`
/// names (handed back if not).
fn alloc_at<H: VmObjects>(
    vm: Option<usize>,
    during: &'static str,
    base: PhysAddr,
    size: u64,
    want: Want,
) -> Result<(), SetupError> {
    let refused = SetupError::Memory { vm, during, base, size };
    let (Ok(b), Ok(n)) = (usize::try_from(base.get()), usize::try_from(size)) else { return Err(refused) };
    if !H::alloc_memory_region_at(HostPhysAddr::from_usize(b), n) {
        return Err(refused);
    }
    if !H::region_kind(base).is_some_and(|k| want.accepts(k)) {
        H::dealloc_memory_region_at(HostPhysAddr::from_usize(b), n);
        return Err(SetupError::WrongMemory { vm, during, base, want });
    }
    Ok(())
}

/// Gives `[base, base + size)` back through `dealloc_memory_region_at` (which cannot say
/// no); checks that the HAL let it go.
fn dealloc_at<H: VmObjects>(vm: Option<usize>, during: &'static str, r: Region) -> Result<(), SetupError> {
    let (Ok(b), Ok(n)) = (usize::try_from(r.base.get()), usize::try_from(r.size)) else {
        return Err(SetupError::Memory { vm, during, base: r.base, size: r.size });
    };
    H::dealloc_memory_region_at(HostPhysAddr::from_usize(b), n);
    match H::region_kind(r.base) {
        None => Ok(()),
        Some(_) => Err(SetupError::Memory { vm, during, base: r.base, size: r.size }),
    }
}

impl<P: PagingHandler> Vm<P> {
    /// VM `index` of the system, nothing made yet.
    fn fresh(index: usize, config: &VmConfig, platform: Platform, flash: &[&[u8]]) -> Result<Self, SetupError> {
        let mut state = VmState::new(config, platform).map_err(|error| SetupError::State { vm: index, error })?;
        for (f, bytes) in config.flash_images.iter().zip(flash) {
            state.load_flash(&f.device, bytes).map_err(|error| SetupError::State { vm: index, error })?;
        }
        Ok(Vm {
            index,
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
            plan: None,
            built_with: OpCounts::default(),
            reboots: 0,
            regions: Vec::new(),
            objects: Vec::new(),
            slots: None,
        })
    }

    /// The kernel objects made for this VM.
    pub fn objects(&self) -> &[Objects] {
        &self.objects
    }

    /// The memory allocated for this VM (RAM, passthrough windows).
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    fn alloc_objects<H: VmObjects>(
        &mut self,
        blueprint: ObjectBlueprint,
        n: u64,
        during: &'static str,
    ) -> Result<Objects, SetupError> {
        let o = H::alloc_objects(blueprint, n).map_err(hal_err(Some(self.index), during))?;
        self.objects.push(o);
        Ok(o)
    }
}

/// The VMM's mapping of an allocation: (allocation base, where the VMM sees it).
type Kept = Vec<(PhysAddr, VirtAddr)>;

/// Where the VMM sees host `hpa` of the allocation at `alloc`, if it keeps that mapped.
fn kept_va(kept: &Kept, hpa: PhysAddr, alloc: PhysAddr) -> Option<VirtAddr> {
    kept.iter().find(|k| k.0 == alloc).map(|k| VirtAddr(k.1.get() + (hpa.get() - alloc.get())))
}

/// The phases of [`Vmm::build`] for one VM, in order.
impl<P: PagingHandler> Vm<P> {
    /// The book, the VSpace with its ASID, and every page table mapped into it.
    fn stage2<H: VmObjects<PagingHandler = P>, K: Kernel>(
        &mut self,
        plan: &VmPlan,
        options: SetupOptions,
        k: &mut K,
    ) -> Result<(), SetupError> {
        let (i, vm) = (self.index, Some(self.index));
        let mut book = Book::<P>::new().map_err(|error| SetupError::Book { vm: i, error })?;
        let mut booked = Ok(());
        for m in &plan.mappings {
            if let Err(error) = book.map_linear(m.gpa, m.hpa, m.size_bytes, m.book_flags()) {
                booked = Err(SetupError::Book { vm: i, error });
                break;
            }
        }
        self.book = Some(book);
        booked?;
        let vspace: Cap<VSpace> = self.alloc_objects::<H>(ObjectBlueprint::VSpace, 1, "VSpace")?.cap(0);
        self.vspace = vspace;
        k.asid_pool_assign(options.asid_pool, vspace).map_err(kernel_err(vm, "ASIDPool_Assign"))?;
        let mut tables = plan.tables.iter();
        for n in plan.table_runs() {
            let objs = self.alloc_objects::<H>(ObjectBlueprint::PageTable, n, "stage-2 page tables")?;
            for (cap, &(depth, gpa)) in objs.caps::<PageTable>().zip(tables.by_ref()) {
                k.page_table_map(cap, vspace, VirtAddr(gpa.get()), VmAttributes::DEFAULT)
                    .map_err(kernel_err(vm, "PageTable_Map"))?;
                self.tables.push(GuestTable { cap, depth, gpa });
            }
        }
        Ok(())
    }

    /// The VMM's own mappings it keeps while the VM lives (on-demand RAM it zeroes, flash
    /// contents).
    fn map_kept<H: VmObjects<PagingHandler = P>>(&mut self, plan: &VmPlan) -> Result<Kept, SetupError> {
        let mut kept = Kept::new();
        for &mi in &plan.kept {
            let a = plan.mappings[mi].allocation;
            let va = H::map_region(a).map_err(hal_err(Some(self.index), "mapping guest memory into the VMM"))?;
            kept.push((a, va));
        }
        Ok(kept)
    }

    /// A copy of each frame capability in slots of the VM's, mapped unless left for the
    /// guest's first touch. Returns the first slot.
    fn frames<H: VmObjects<PagingHandler = P>, K: Kernel>(
        &mut self,
        plan: &VmPlan,
        kept: &Kept,
        k: &mut K,
    ) -> Result<Slot, SetupError> {
        let vm = Some(self.index);
        let n = plan.slots();
        let first = if n > 0 {
            let s = H::alloc_slots(n).map_err(hal_err(vm, "slots for frame copies"))?;
            self.slots = Some((s, n));
            s
        } else {
            Slot::new(0)
        };
        for (kf, f) in plan.frames.iter().enumerate() {
            let m = plan.mappings[f.mapping];
            let slot = nth(first, kf);
            let cap: Cap<Frame> = slot.cap();
            k.cnode_copy(CNodeSlot::root(slot), f.src, m.rights).map_err(kernel_err(vm, "CNode_Copy (frame)"))?;
            if f.deferred {
                let zero_at = if f.zero { kept_va(kept, f.hpa, m.allocation) } else { None };
                let (rights, attrs) = (m.rights, m.attrs);
                self.untouched.push(UntouchedCaps {
                    cap,
                    gpa: f.gpa,
                    hpa: f.hpa,
                    size: f.size,
                    rights,
                    attrs,
                    zero_at,
                });
                continue;
            }
            self.frames.push(MappedFrame { cap, gpa: f.gpa, hpa: f.hpa, size: f.size });
            k.page_map(cap, self.vspace, VirtAddr(f.gpa.get()), m.rights, m.attrs)
                .map_err(kernel_err(vm, "Page_Map (guest)"))?;
        }
        Ok(first)
    }

    /// What guest memory holds before the guest starts: zeroed frames, the images (each
    /// through the VMM's mapping, checked with `virt_to_phys`), writable flash banks.
    fn contents<H: VmObjects<PagingHandler = P>>(
        &mut self,
        plan: &VmPlan,
        images: &VmImages<'_>,
        copy: &mut dyn CopyIn,
        kept: &Kept,
    ) -> Result<(), SetupError> {
        let (i, vm) = (self.index, Some(self.index));
        for &kf in &plan.zero_now {
            let f = plan.frames[kf];
            if let Some(va) = kept_va(kept, f.hpa, plan.mappings[f.mapping].allocation) {
                copy.zero(va, f.size.size_bytes());
            }
        }
        let mut temporary = Kept::new();
        let mut result = Ok(());
        for im in &plan.images {
            if im.len > 0 {
                let a = plan.mappings[im.mapping].allocation;
                let va = match kept_va(kept, im.hpa, a).or_else(|| kept_va(&temporary, im.hpa, a)) {
                    Some(va) => va,
                    None => match H::map_region(a) {
                        Ok(base) => {
                            temporary.push((a, base));
                            VirtAddr(base.get() + (im.hpa.get() - a.get()))
                        }
                        Err(e) => {
                            result = Err(hal_err(vm, "mapping guest RAM into the VMM")(e));
                            break;
                        }
                    },
                };
                let got = H::virt_to_phys(HostVirtAddr::from_usize(va.get() as usize));
                if got.as_usize() as u64 != im.hpa.get() {
                    let got = PhysAddr(got.as_usize() as u64);
                    result = Err(SetupError::Translation { vm: i, va, expected: im.hpa, got });
                    break;
                }
                let bytes = im.source.bytes(images);
                copy.copy(va, bytes.get(..im.len as usize).unwrap_or(bytes));
            }
            self.images.push(PlacedImage { what: im.what, gpa: im.gpa, hpa: im.hpa, len: im.len });
        }
        for (a, _) in temporary {
            let r = H::unmap_region(a).map_err(hal_err(vm, "unmapping guest RAM from the VMM"));
            result = result.and(r);
        }
        result?;
        for b in &plan.flash_banks {
            let m = plan.mappings[b.mapping];
            let image = b.image.and_then(|k| images.flash.get(k).copied()).unwrap_or(&[]);
            let image = image.get(..(m.size_bytes as usize).min(image.len())).unwrap_or(&[]);
            let Some(at) = kept_va(kept, m.hpa, m.allocation) else { continue };
            copy.copy(at, image);
            copy.fill(VirtAddr(at.get() + image.len() as u64), m.size_bytes - image.len() as u64, 0xff);
            let mut rom = FlashRomMapping { bank: 0, gpa: m.gpa, size_bytes: m.size_bytes, va: at, attrs: m.attrs };
            let frames = self.frames.iter().filter(|f| rom.holds(f.gpa)).count();
            if let Some(bank) = self.state.set_flash_rom(&b.device, frames) {
                rom.bank = bank;
                self.flash_rom.push(rom);
            }
        }
        Ok(())
    }

    /// The planned cache maintenance, through the mapped frame copies from slot `first`; then
    /// the VM model learns which frames wait for the first touch.
    fn flush<K: Kernel>(&mut self, plan: &VmPlan, first: Slot, k: &mut K) -> Result<(), SetupError> {
        for fl in &plan.flushes {
            let cap: Cap<Frame> = nth(first, fl.frame).cap();
            k.page_flush(cap, fl.op, fl.from_offset, fl.to_offset)
                .map_err(kernel_err(Some(self.index), "Page_CleanInvalidate_Data / Unify_Instruction (guest image)"))?;
        }
        if !self.untouched.is_empty() || self.config.capvisor.populate_ram == PopulateRam::OnTouch {
            let frames = self.untouched.iter().map(|u| UntouchedFrame {
                gpa: u.gpa.get(),
                size: u.size.size_bytes(),
                zero: u.zero_at.is_some(),
            });
            self.state.set_untouched(frames.collect());
        }
        Ok(())
    }

    /// The guest CSpace (the badged fault endpoints) and each vCPU: TCB, VCPU, bound and set.
    fn make_vcpus<H: VmObjects<PagingHandler = P>, K: Kernel>(
        &mut self,
        plan: &VmPlan,
        options: SetupOptions,
        fault_ep: Cap<Endpoint>,
        k: &mut K,
    ) -> Result<(), SetupError> {
        let vm = Some(self.index);
        let cn =
            self.alloc_objects::<H>(ObjectBlueprint::CNode { slot_bits: GUEST_CNODE_SLOT_BITS }, 1, "guest CNode")?;
        let cnode: Cap<CNode> = cn.cap(0);
        self.cnode = cnode;
        let cpus = plan.vcpus.len() as u64;
        let tcbs = self.alloc_objects::<H>(ObjectBlueprint::Tcb, cpus, "vCPU TCBs")?;
        let vcpus = self.alloc_objects::<H>(ObjectBlueprint::VCpu, cpus, "VCPUs")?;
        let null = Cap::from_cptr(CPtr::NULL);
        for (j, c) in plan.vcpus.iter().enumerate() {
            let (tcb, vcpu): (Cap<Tcb>, Cap<VCpu>) = (tcbs.cap(j as u64), vcpus.cap(j as u64));
            let dest = CNodeSlot { cnode, index: j as u64, depth: GUEST_CNODE_SLOT_BITS as u8 };
            k.cnode_mint(dest, fault_ep.slot(), FAULT_EP_RIGHTS, c.badge.to_badge())
                .map_err(kernel_err(vm, "CNode_Mint (fault endpoint)"))?;
            let fault = CPtr::from_bits(c.fault_cptr);
            k.tcb_configure(tcb, fault, cnode, guest_cspace_data(), self.vspace, VirtAddr(0), null)
                .map_err(kernel_err(vm, "TCB_Configure"))?;
            k.tcb_set_priority(tcb, options.vmm_tcb, plan.priority).map_err(kernel_err(vm, "TCB_SetPriority"))?;
            if let Some(core) = c.core {
                k.tcb_set_affinity(tcb, core).map_err(kernel_err(vm, "TCB_SetAffinity"))?;
            }
            k.vcpu_set_tcb(vcpu, tcb).map_err(kernel_err(vm, "VCPU_SetTCB"))?;
            k.vcpu_write_reg(vcpu, VCpuReg::Sctlr, SCTLR_EL1_RESET).map_err(kernel_err(vm, "VCPU_WriteRegs"))?;
            k.vcpu_write_reg(vcpu, VCpuReg::VmpidrEl2, c.vmpidr).map_err(kernel_err(vm, "VCPU_WriteRegs"))?;
            self.vcpus.push(VcpuCaps { tcb, vcpu, badge: c.badge, vmpidr: c.vmpidr });
        }
        Ok(())
    }
}

impl<P: PagingHandler> Vmm<P> {
    /// The kernel objects the VMM shares between VMs (fault endpoint, notification).
    pub fn objects(&self) -> &[Objects] {
        &self.objects
    }

    /// Builds every VM of `bundle` through the HAL `H` (its `AxVMHal` and `VmObjects`; the
    /// stage-2 book on its paging handler `P`). The vCPUs are configured but not started
    /// ([`crate::run`] starts them). All or nothing: on an error, whatever was made is freed.
    pub fn build<H: VmObjects<PagingHandler = P>>(
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
            rtc_base_seconds: bundle.rtc_base_seconds,
            options: *options,
            irqs: Vec::new(),
            objects: Vec::new(),
        };
        match vmm.build_all::<H>(bundle, copy) {
            Ok(()) => Ok(vmm),
            Err(e) => {
                // Best effort: the first error is the one to report.
                let _ = vmm.teardown::<H>();
                Err(e)
            }
        }
    }

    fn build_all<H: VmObjects<PagingHandler = P>>(
        &mut self,
        bundle: &Bundle<'_>,
        copy: &mut dyn CopyIn,
    ) -> Result<(), SetupError> {
        for (i, (config, images)) in bundle.system.vms.iter().zip(&bundle.images).enumerate() {
            self.vms.push(Vm::fresh(i, config, self.options.platform, &images.flash)?);
        }
        // Every address a configuration names is taken before anything goes where the HAL
        // chooses: an object or a VM's RAM placed first could otherwise sit on a later VM's
        // fixed range.
        let regions: Vec<Vec<RegionPlan>> = (bundle.images.iter().enumerate())
            .map(|(i, images)| plan::regions(i, &self.vms[i].config, images))
            .collect::<Result<_, _>>()?;
        for (i, r) in regions.iter().enumerate() {
            self.reserve_fixed::<H>(i, r)?;
        }
        let mut k = Lent::<H>::new();
        let ep = H::alloc_objects(ObjectBlueprint::Endpoint, 1).map_err(hal_err(None, "fault endpoint"))?;
        self.objects.push(ep);
        self.fault_ep = ep.cap(0);
        let ntfn = H::alloc_objects(ObjectBlueprint::Notification, 1).map_err(hal_err(None, "notification"))?;
        self.objects.push(ntfn);
        self.ntfn = ntfn.cap(0);
        k.tcb_bind_notification(self.options.vmm_tcb, self.ntfn)
            .map_err(kernel_err(None, "TCB_BindNotification (VMM)"))?;

        // The GICV frames: one allocation, every VM maps copies of its frames.
        for r in regions.iter().flatten() {
            if let HostPlace::Shared(base) = r.host
                && !self.shared.iter().any(|s| s.base == base)
            {
                alloc_at::<H>(None, r.what, base, r.size_bytes, r.want)?;
                self.shared.push(Region { base, size: r.size_bytes });
            }
        }
        for (i, images) in bundle.images.iter().enumerate() {
            self.build_vm::<H>(i, &regions[i], images, copy)?;
        }
        Ok(())
    }

    /// Allocates VM `i`'s memory at the addresses its configuration names: RAM mapped
    /// identically or reserved, passthrough device regions and address ranges.
    fn reserve_fixed<H: VmObjects<PagingHandler = P>>(
        &mut self,
        i: usize,
        regions: &[RegionPlan],
    ) -> Result<(), SetupError> {
        for r in regions {
            if let HostPlace::Fixed(base) = r.host {
                alloc_at::<H>(Some(i), r.what, base, r.size_bytes, r.want)?;
                self.vms[i].regions.push(Region { base, size: r.size_bytes });
            }
        }
        Ok(())
    }

    /// Places VM `i`'s memory and plans the rest ([`crate::plan`]): step 1's regions, the
    /// chosen ones allocated where the HAL finds them cheapest.
    fn place<H: VmObjects<PagingHandler = P>>(
        &mut self,
        i: usize,
        regions: &[RegionPlan],
        images: &VmImages<'_>,
    ) -> Result<VmPlan, SetupError> {
        let mut placed = Vec::new();
        for r in regions {
            let hpa = match r.host {
                HostPlace::Fixed(p) | HostPlace::Shared(p) => p,
                HostPlace::Choose { align_bytes } => {
                    let p = H::place_ram(r.size_bytes, align_bytes)
                        .ok_or(SetupError::NoMemory { vm: i, size: r.size_bytes })?;
                    alloc_at::<H>(Some(i), r.what, p, r.size_bytes, r.want)?;
                    self.vms[i].regions.push(Region { base: p, size: r.size_bytes });
                    p
                }
            };
            let kind = H::region_kind(hpa).ok_or(SetupError::WrongMemory {
                vm: Some(i),
                during: r.what,
                base: hpa,
                want: r.want,
            })?;
            placed.push(Placed { mapping: r.at(hpa), kind, frames: H::region_frames(hpa) });
        }
        VmPlan::new(i, &self.vms[i].config, images, &placed, self.options.platform.cores)
    }

    /// Builds VM `i` (its fixed memory already reserved): places it, plans it, performs the
    /// plan. The VMM's own invocations are counted into [`Vm::built_with`].
    fn build_vm<H: VmObjects<PagingHandler = P>>(
        &mut self,
        i: usize,
        regions: &[RegionPlan],
        images: &VmImages<'_>,
        copy: &mut dyn CopyIn,
    ) -> Result<(), SetupError> {
        let plan = self.place::<H>(i, regions, images)?;
        self.vms[i].mappings = plan.mappings.clone();
        self.vms[i].plan = Some(plan.clone());
        let mut k = Observed::new(Lent::<H>::new(), OpCounts::default());
        let r = self.execute::<H, _>(i, &plan, images, copy, &mut k);
        self.vms[i].built_with = k.observer;
        r
    }

    /// Performs `plan` for VM `i`, phase by phase: stage 2, the VMM's kept mappings, frames,
    /// memory contents, cache maintenance, vCPUs.
    fn execute<H: VmObjects<PagingHandler = P>, K: Kernel>(
        &mut self,
        i: usize,
        plan: &VmPlan,
        images: &VmImages<'_>,
        copy: &mut dyn CopyIn,
        k: &mut K,
    ) -> Result<(), SetupError> {
        let (options, fault_ep) = (self.options, self.fault_ep);
        let v = &mut self.vms[i];
        v.stage2::<H, K>(plan, options, k)?;
        let kept = v.map_kept::<H>(plan)?;
        let first = v.frames::<H, K>(plan, &kept, k)?;
        v.contents::<H>(plan, images, copy, &kept)?;
        v.flush(plan, first, k)?;
        v.make_vcpus::<H, K>(plan, options, fault_ep, k)
    }

    /// Frees what building VM `i` made: its book (through the paging handler), the copies of
    /// shared frames (the GICV's: the rest go with their regions), its objects (the vCPU
    /// threads die with their TCBs), its memory through `dealloc_memory_region_at`, and its
    /// slots. Keeps going after an error; returns the first.
    fn teardown_vm<H: VmObjects<PagingHandler = P>>(&mut self, i: usize) -> Result<(), SetupError> {
        let vm = Some(i);
        let v = &mut self.vms[i];
        drop(v.book.take());
        let mut first_err = FirstError::default();
        let mut note = |r| first_err.note(r);
        let mut k = Lent::<H>::new();
        if let (Some(plan), Some((first, _))) = (&v.plan, v.slots) {
            for (kf, f) in plan.frames.iter().enumerate() {
                if plan.mappings[f.mapping].kind == MappingKind::GicCpuInterface {
                    note(
                        k.cnode_delete(CNodeSlot::root(nth(first, kf)))
                            .map_err(kernel_err(vm, "CNode_Delete (GICV copy)")),
                    );
                }
            }
        }
        for o in v.objects.drain(..).rev() {
            note(H::free_objects(o).map_err(hal_err(vm, "freeing VM objects")));
        }
        for r in v.regions.drain(..).rev() {
            note(dealloc_at::<H>(vm, "freeing VM memory", r));
        }
        if let Some((first, n)) = v.slots.take() {
            note(H::free_slots(first, n).map_err(hal_err(vm, "freeing the VM's slots")));
        }
        v.frames.clear();
        v.untouched.clear();
        v.tables.clear();
        v.vcpus.clear();
        v.images.clear();
        v.flash_rom.clear();
        v.mappings.clear();
        v.plan = None;
        first_err.result()
    }

    /// Builds VM `i` again from `images` (its bundle entry), as it was at the start: every
    /// object, mapping, copy and byte of memory of the old one is freed first, through the
    /// same HAL calls a shutdown makes. The vCPUs are configured, not started. On an error
    /// the VM is left with nothing (the caller stops it).
    pub fn reboot_vm<H: VmObjects<PagingHandler = P>>(
        &mut self,
        i: usize,
        images: &VmImages<'_>,
        copy: &mut dyn CopyIn,
    ) -> Result<(), SetupError> {
        self.teardown_vm::<H>(i)?;
        let reboots = self.vms[i].reboots.saturating_add(1);
        let counters = self.vms[i].state.counters().clone();
        let fresh = Vm::fresh(i, &self.vms[i].config, self.options.platform, &images.flash)?;
        self.vms[i] = fresh;
        self.vms[i].reboots = reboots;
        self.vms[i].state.set_counters(counters);
        let regions = plan::regions(i, &self.vms[i].config, images)?;
        let r = self.reserve_fixed::<H>(i, &regions).and_then(|()| self.build_vm::<H>(i, &regions, images, copy));
        if r.is_err() {
            let _ = self.teardown_vm::<H>(i);
        }
        r
    }

    /// Routes host interrupt `irq` to the VMM's notification with `badge`: a handler from the
    /// HAL, a copy of the notification minted with the badge, bound, and acknowledged once so
    /// the first interrupt arrives. Three invocations.
    pub fn route_irq<H: VmObjects<PagingHandler = P>>(
        &mut self,
        irq: u64,
        edge_triggered: bool,
        badge: u64,
    ) -> Result<RoutedIrq, SetupError> {
        let mut k = Lent::<H>::new();
        let handler = H::irq_handler(irq, edge_triggered).map_err(hal_err(None, "IRQ handler"))?;
        let signal = match H::alloc_slots(1) {
            Ok(s) => s,
            Err(e) => {
                let _ = k.cnode_delete(CNodeSlot::root(handler.slot()));
                let _ = H::free_slots(handler.slot(), 1);
                return Err(hal_err(None, "a slot for an interrupt's signal")(e));
            }
        };
        let routed = RoutedIrq { irq, handler, signal, badge };
        // Recorded first, so a failure below is undone by `teardown` like the rest.
        self.irqs.push(routed);
        k.cnode_mint(CNodeSlot::root(signal), self.ntfn.slot(), CapRights::WRITE_ONLY, badge)
            .map_err(kernel_err(None, "CNode_Mint (interrupt signal)"))?;
        k.irq_handler_set_notification(handler, signal.cap())
            .map_err(kernel_err(None, "IRQHandler_SetNotification"))?;
        k.irq_handler_ack(handler).map_err(kernel_err(None, "IRQHandler_Ack"))?;
        Ok(routed)
    }

    /// Frees everything [`Vmm::build`] made: every VM (as [`Vmm::reboot_vm`] does), then the
    /// routed interrupts, the shared memory and objects.
    pub fn teardown<H: VmObjects<PagingHandler = P>>(&mut self) -> Result<(), SetupError> {
        let mut first_err = FirstError::default();
        let mut k = Lent::<H>::new();
        for r in self.irqs.drain(..).rev() {
            for slot in [r.signal, r.handler.slot()] {
                let deleted =
                    k.cnode_delete(CNodeSlot::root(slot)).map_err(kernel_err(None, "CNode_Delete (interrupt)"));
                let freed = H::free_slots(slot, 1).map_err(hal_err(None, "freeing an interrupt's slot"));
                first_err.note(deleted.and(freed));
            }
        }
        for i in (0..self.vms.len()).rev() {
            first_err.note(self.teardown_vm::<H>(i));
        }
        self.vms.clear();
        for r in self.shared.drain(..).rev() {
            first_err.note(dealloc_at::<H>(None, "freeing shared memory", r));
        }
        for o in self.objects.drain(..).rev() {
            first_err.note(H::free_objects(o).map_err(hal_err(None, "freeing VMM objects")));
        }
        first_err.result()
    }
}

#[cfg(test)]
#[path = "setup_tests.rs"]
pub(crate) mod tests;
