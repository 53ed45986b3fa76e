//! [`Sel4Hal`]: the HAL's state and its operations, generic over the kernel; and
//! [`GlobalHal`], the `AxVMHal` implementation whose static methods reach one installed
//! instance.
//!
//! # How static trait methods reach state
//! `AxVMHal`'s methods take no `self`. All state lives in a [`Sel4Hal<K>`] value whose
//! methods take `&mut self`: host tests create one per test (over the seL4 model) and call
//! it directly, so nothing is shared between tests and nothing is hidden. For code written
//! against the trait, the owner of the instance declares a [`HalCell`] static and a marker
//! type implementing [`HalInstance`] that names it; `GlobalHal<Marker>` then implements
//! `AxVMHal` by locking that cell and forwarding. The root task does this once:
//!
//! ```text
//! static HAL: HalCell<RealKernel> = HalCell::new();
//! struct RootHal;
//! impl HalInstance for RootHal {
//!     type Kernel = RealKernel;
//!     fn cell() -> &'static HalCell<RealKernel> { &HAL }
//! }
//! HAL.install(Sel4Hal::from_bootinfo(kernel, &bootinfo, config)?)?;
//! type Hal = GlobalHal<RootHal>; // implements AxVMHal
//! ```
//!
//! The cell is a spin mutex (sound with several threads; the root task has one), taken for
//! the length of one method. A HAL method called from inside another on the same cell (a
//! caller that held the HAL across its own work) panics naming that, rather than spinning
//! forever; the VM layer never does (it borrows the kernel per invocation through
//! `sel4::Lent`, see `crate::objects`).
//!
//! # What it owns
//! The kernel handle `K`, the untyped pool, the capability table, the mapping window and the
//! timer client. It must never touch capabilities outside the slot region and untypeds it
//! was given.

use core::fmt;
use core::marker::PhantomData;

use axvm_hal::{HostPhysAddr, HostVirtAddr};
use sel4::cap_type::{Endpoint, Frame, IrqControl, IrqHandler, VSpace};
use sel4::object::PAGE_BITS;
use sel4::{BootInfo, CNodeSlot, Cap, Kernel, ObjectBlueprint, PhysAddr, SlotRegion, UntypedDesc, VirtAddr, init_cap};

use crate::pool::{
    AllocError, Allocation, FreeError, KindRequest, MemoryKind, PoolSetupError, Purpose, UntypedPool, frame_size,
};
use crate::ranges::SlotAllocator;
use crate::table::{CapTable, FrameInfo, TableError};
use crate::time::{TimeError, TimerClient};
use crate::window::{MapError, Window};
use vm_objects::{Objects, Usage};

/// Default base of the root-task mapping window: 512 GiB, one level-0 entry away from the
/// root task's image (which the loader puts in the first 512 GiB).
pub const DEFAULT_WINDOW_BASE: VirtAddr = VirtAddr(0x80_0000_0000);
/// Default size of the window: the whole level-0 entry.
pub const DEFAULT_WINDOW_SIZE: u64 = 0x80_0000_0000;

/// How a [`Sel4Hal`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalConfig {
    /// Root CNode slots the HAL may fill (a part of bootinfo's empty region; the rest stays
    /// with the root task).
    pub slots: SlotRegion,
    /// The root task's VSpace.
    pub vspace: Cap<VSpace>,
    /// Root-task virtual range the HAL maps into.
    pub window_base: VirtAddr,
    /// Its size.
    pub window_size: u64,
    /// Physical range the HAL takes its own memory from (page tables, page-table frames);
    /// `None`: the highest free RAM.
    pub internal: Option<(PhysAddr, u64)>,
    /// The timer server's endpoint.
    pub timer: Option<Cap<Endpoint>>,
    /// Root CNode slots handed out one run at a time to the VM layer for its own
    /// capabilities (`VmObjects::alloc_slots`), apart from those the pool retypes into.
    pub loose_slots: SlotRegion,
    /// The authority IRQ handlers are made from (`VmObjects::irq_handler`).
    pub irq_control: Cap<IrqControl>,
}

impl HalConfig {
    /// All of `slots`, the default window, no timer yet.
    pub fn new(slots: SlotRegion) -> Self {
        HalConfig {
            slots,
            vspace: init_cap::VSPACE.cap(),
            window_base: DEFAULT_WINDOW_BASE,
            window_size: DEFAULT_WINDOW_SIZE,
            internal: None,
            timer: None,
            loose_slots: SlotRegion { start: slots.end, end: slots.end },
            irq_control: init_cap::IRQ_CONTROL.cap(),
        }
    }

    /// `slots` for the pool and `loose` for the VM layer's own capabilities.
    pub fn with_loose_slots(slots: SlotRegion, loose: SlotRegion) -> Self {
        HalConfig { loose_slots: loose, ..Self::new(slots) }
    }
}

/// Why a HAL operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalError {
    /// Allocation.
    Alloc(AllocError),
    /// Free.
    Free(FreeError),
    /// Translation.
    Table(TableError),
    /// Mapping.
    Map(MapError),
    /// Time.
    Time(TimeError),
    /// A size does not fit the address space (`usize` to `u64` and back).
    TooLarge(u64),
    /// What the HAL recorded disagrees with the kernel.
    Inconsistent {
        /// The frame.
        paddr: PhysAddr,
        /// What the kernel said (`None`: the invocation failed).
        kernel: Option<PhysAddr>,
    },
    /// The pool's own invariants do not hold.
    Pool(&'static str),
    /// The kernel refused an IRQ handler.
    Irq {
        /// The interrupt.
        irq: u64,
        /// Why.
        error: sel4::Error,
    },
    /// Not enough loose slots in one run.
    Slots {
        /// Slots asked for.
        wanted: u64,
        /// Slots free.
        free: u64,
    },
}

impl fmt::Display for HalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HalError::Alloc(e) => e.fmt(f),
            HalError::Free(e) => e.fmt(f),
            HalError::Table(e) => e.fmt(f),
            HalError::Map(e) => e.fmt(f),
            HalError::Time(e) => e.fmt(f),
            HalError::TooLarge(n) => write!(f, "{n:#x} does not fit the address space"),
            HalError::Inconsistent { paddr, kernel } => {
                write!(f, "frame recorded at {paddr}, kernel says {kernel:?}")
            }
            HalError::Pool(why) => write!(f, "untyped pool: {why}"),
            HalError::Irq { irq, error } => write!(f, "IRQControl_GetTrigger({irq}): {error:?}"),
            HalError::Slots { wanted, free } => write!(f, "{wanted} consecutive slots wanted, {free} free"),
        }
    }
}

impl core::error::Error for HalError {}

impl From<AllocError> for HalError {
    fn from(e: AllocError) -> Self {
        HalError::Alloc(e)
    }
}
impl From<FreeError> for HalError {
    fn from(e: FreeError) -> Self {
        HalError::Free(e)
    }
}
impl From<MapError> for HalError {
    fn from(e: MapError) -> Self {
        HalError::Map(e)
    }
}
impl From<TableError> for HalError {
    fn from(e: TableError) -> Self {
        HalError::Table(e)
    }
}
impl From<TimeError> for HalError {
    fn from(e: TimeError) -> Self {
        HalError::Time(e)
    }
}

/// The HAL. See the module docs.
pub struct Sel4Hal<K: Kernel> {
    kernel: K,
    pool: UntypedPool,
    table: CapTable,
    window: Window,
    timer: Option<TimerClient>,
    /// `[start, end)` of the physical range the HAL's own memory comes from.
    internal: Option<(PhysAddr, PhysAddr)>,
    loose: SlotAllocator,
    irq_control: Cap<IrqControl>,
}

impl<K: Kernel> Sel4Hal<K> {
    /// A HAL owning `kernel`, the `untyped` capabilities and `config.slots`.
    pub fn new(
        kernel: K,
        untyped: impl IntoIterator<Item = (Cap<sel4::cap_type::Untyped>, UntypedDesc)>,
        config: HalConfig,
    ) -> Result<Self, PoolSetupError> {
        let pool = UntypedPool::new(untyped, config.slots, sel4::config::RETYPE_FAN_OUT_LIMIT)?;
        let internal = config.internal.map(|(p, n)| (p, p.checked_add(n).unwrap_or(PhysAddr(u64::MAX))));
        Ok(Sel4Hal {
            kernel,
            pool,
            table: CapTable::new(),
            window: Window::new(config.vspace, config.window_base, config.window_size, internal),
            timer: config.timer.map(TimerClient::new),
            internal,
            loose: SlotAllocator::new(config.loose_slots),
            irq_control: config.irq_control,
        })
    }

    /// A HAL owning every untyped in `bootinfo`.
    pub fn from_bootinfo(kernel: K, bootinfo: &BootInfo<'_>, config: HalConfig) -> Result<Self, PoolSetupError> {
        let untyped = bootinfo.untyped().iter().zip(bootinfo.untyped_list()).map(|(slot, d)| (slot.cap(), d));
        Self::new(kernel, untyped, config)
    }

    /// The kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The kernel, for operations outside the HAL.
    pub fn kernel_mut(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// The untyped pool (read only).
    pub fn pool(&self) -> &UntypedPool {
        &self.pool
    }

    /// The capability table (read only).
    pub fn table(&self) -> &CapTable {
        &self.table
    }

    /// The mapping window (read only).
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Sets the timer server's endpoint.
    pub fn set_timer(&mut self, ep: Cap<Endpoint>) {
        self.timer = Some(TimerClient::new(ep));
    }

    // ---- regions ----

    /// Frames covering exactly `[base, base + size)`, of the kind requested. See
    /// [`crate::pool`] for placement and cost.
    pub fn alloc_region(&mut self, base: PhysAddr, size: u64, kind: KindRequest) -> Result<&Allocation, HalError> {
        self.alloc_frames_at(base, size, kind, Purpose::Region)
    }

    fn alloc_frames_at(
        &mut self,
        base: PhysAddr,
        size: u64,
        kind: KindRequest,
        purpose: Purpose,
    ) -> Result<&Allocation, HalError> {
        let a = self.pool.alloc(&mut self.kernel, base, size, kind, purpose, None, 0)?;
        let mut inserted = 0usize;
        let mut failed = None;
        for o in a.objects() {
            let Some(size) = frame_size(o.blueprint) else { continue };
            let info = FrameInfo { slot: o.slot, paddr: o.paddr, size, allocation: base, vaddr: None };
            if let Err(e) = self.table.insert(info) {
                failed = Some(e);
                break;
            }
            inserted += 1;
        }
        if let Some(e) = failed {
            // A frame already on record at an address the pool just handed out: the two
            // disagree. Undo the allocation rather than keep a table that lies.
            log::error!("hal: capability table refused a new frame ({e}); freeing {base}");
            let a = self.pool.allocation(base).cloned();
            if let Some(a) = a {
                for o in a.objects().take(inserted) {
                    self.table.remove(o.paddr);
                }
            }
            let _ = self.pool.free(&mut self.kernel, base, size, purpose);
            return Err(HalError::Table(e));
        }
        self.pool.allocation(base).ok_or(HalError::Pool("allocation vanished"))
    }

    /// Frees the region at `base`, which must be exactly as allocated: one revoke per
    /// wrapper; every frame, every copy and every mapping of it goes.
    pub fn dealloc_region(&mut self, base: PhysAddr, size: u64) -> Result<(), HalError> {
        self.free_frames_at(base, size, Purpose::Region)
    }

    fn free_frames_at(&mut self, base: PhysAddr, size: u64, purpose: Purpose) -> Result<(), HalError> {
        // Check before forgetting the mapping, so a refused free changes nothing.
        match self.pool.allocation(base) {
            None => return Err(FreeError::NotAllocated { base }.into()),
            Some(a) if a.size != size => {
                return Err(FreeError::SizeMismatch { base, size, allocated: a.size }.into());
            }
            Some(a) if a.purpose != purpose => {
                return Err(FreeError::WrongPurpose { base, purpose: a.purpose }.into());
            }
            Some(_) => {}
        }
        self.window.forget(&mut self.table, base);
        let a = self.pool.free(&mut self.kernel, base, size, purpose)?;
        for o in a.objects() {
            self.table.remove(o.paddr);
        }
        Ok(())
    }

    /// Maps the frames of the allocation at `base` into the root task's window.
    pub fn map_region(&mut self, base: PhysAddr) -> Result<VirtAddr, HalError> {
        Ok(self.window.map(&mut self.kernel, &mut self.pool, &mut self.table, base)?)
    }

    /// Unmaps what [`Sel4Hal::map_region`] mapped.
    pub fn unmap_region(&mut self, base: PhysAddr) -> Result<(), HalError> {
        Ok(self.window.unmap(&mut self.kernel, &mut self.table, base)?)
    }

    /// The frames of the allocation at `base`, in address order (e.g. to copy their caps
    /// into a guest's address space).
    pub fn frames(&self, base: PhysAddr) -> impl Iterator<Item = (&FrameInfo, Cap<Frame>)> {
        let end = self.pool.allocation(base).map_or(base, |a| a.end());
        self.table.frames_in(base, end).map(|f| (f, f.slot.cap::<Frame>()))
    }

    // ---- translation ----

    /// The physical address behind a root-task virtual address the HAL mapped. O(log n), no
    /// kernel call.
    pub fn try_virt_to_phys(&self, vaddr: VirtAddr) -> Result<PhysAddr, TableError> {
        self.table.virt_to_phys(vaddr)
    }

    /// The root-task virtual address of a physical address the HAL mapped.
    pub fn try_phys_to_virt(&self, paddr: PhysAddr) -> Result<VirtAddr, TableError> {
        self.table.phys_to_virt(paddr)
    }

    // ---- page-table frames ----

    /// `num` contiguous 4 KiB-granular frames aligned to `align`, from the HAL's own memory,
    /// mapped into the window (so [`Sel4Hal::try_phys_to_virt`] works for them).
    pub fn alloc_paging_frames(&mut self, num: usize, align: usize) -> Result<PhysAddr, HalError> {
        let page = 1u64 << PAGE_BITS;
        let size = (num as u64).checked_mul(page).ok_or(HalError::TooLarge(num as u64))?;
        let align = (align as u64).max(page);
        if !align.is_power_of_two() {
            return Err(AllocError::Unaligned { base: PhysAddr(0), size: align }.into());
        }
        let base = self.pool.find_free(size, align, self.internal).ok_or(AllocError::NoFreeMemory { size })?;
        self.alloc_frames_at(base, size, KindRequest::Ram, Purpose::Paging)?;
        if let Err(e) = self.window.map(&mut self.kernel, &mut self.pool, &mut self.table, base) {
            let _ = self.free_frames_at(base, size, Purpose::Paging);
            return Err(e.into());
        }
        Ok(base)
    }

    /// Frees what [`Sel4Hal::alloc_paging_frames`] returned (`num` as allocated).
    pub fn dealloc_paging_frames(&mut self, paddr: PhysAddr, num: usize) -> Result<(), HalError> {
        let size = (num as u64).checked_mul(1 << PAGE_BITS).ok_or(HalError::TooLarge(num as u64))?;
        self.free_frames_at(paddr, size, Purpose::Paging)
    }

    // ---- other kernel objects ----

    /// `count` objects of `blueprint` (at most the fan-out limit) from the HAL's own memory,
    /// their capabilities in consecutive slots.
    pub fn alloc_objects(&mut self, blueprint: ObjectBlueprint, count: u64) -> Result<Objects, HalError> {
        let bits = blueprint.physical_size_bits();
        let align = 1u64 << bits.max(PAGE_BITS);
        let bytes = count.checked_shl(bits).filter(|_| bits < 64 && count > 0).ok_or(HalError::TooLarge(count))?;
        let size = bytes.div_ceil(align) * align;
        let base = self.pool.find_free(size, align, self.internal).ok_or(AllocError::NoFreeMemory { size })?;
        let a = self.pool.alloc(
            &mut self.kernel,
            base,
            size,
            KindRequest::Ram,
            Purpose::Objects(blueprint),
            Some(blueprint),
            count,
        )?;
        Ok(Objects { blueprint, base, first: a.first_slot, count })
    }

    /// Frees what [`Sel4Hal::alloc_objects`] returned.
    pub fn free_objects(&mut self, objects: Objects) -> Result<(), HalError> {
        let blueprint = objects.blueprint;
        let size =
            self.pool.allocation(objects.base).map(|a| a.size).ok_or(FreeError::NotAllocated { base: objects.base })?;
        self.pool.free(&mut self.kernel, objects.base, size, Purpose::Objects(blueprint))?;
        Ok(())
    }

    // ---- slots for the VM layer ----

    /// `count` consecutive slots of the loose region ([`HalConfig::loose_slots`]).
    pub fn alloc_slots(&mut self, count: u64) -> Result<sel4::Slot, HalError> {
        self.loose.alloc(count).ok_or(HalError::Slots { wanted: count, free: self.loose.free_count() })
    }

    /// A handler for interrupt `irq`, in a loose slot (`IRQControl_GetTrigger`).
    pub fn irq_handler(&mut self, irq: u64, edge_triggered: bool) -> Result<Cap<IrqHandler>, HalError> {
        let slot = self.alloc_slots(1)?;
        if let Err(error) = self.kernel.irq_control_get(self.irq_control, irq, edge_triggered, CNodeSlot::root(slot)) {
            let _ = self.free_slots(slot, 1);
            return Err(HalError::Irq { irq, error });
        }
        Ok(slot.cap())
    }

    /// Free loose slots.
    pub fn loose_free(&self) -> u64 {
        self.loose.free_count()
    }

    /// Returns slots from [`Sel4Hal::alloc_slots`].
    pub fn free_slots(&mut self, first: sel4::Slot, count: u64) -> Result<(), HalError> {
        self.loose.free(first, count).map_err(|_| HalError::Pool("loose slots freed that were not handed out"))
    }

    /// Free slots (the pool's and the loose ones) and untyped bytes no allocation holds (each
    /// root untyped's size less its watermark).
    pub fn usage(&self) -> Usage {
        let untyped_bytes_free = self
            .pool
            .untyped_nodes()
            .filter(|n| n.is_root)
            .map(|n| (1u64 << n.size_bits).saturating_sub(n.watermark.unwrap_or(0)))
            .sum();
        Usage { slots_free: self.pool.free_slots() + self.loose.free_count(), untyped_bytes_free }
    }

    /// What memory the allocation at `base` is.
    pub fn region_kind(&self, base: PhysAddr) -> Option<MemoryKind> {
        self.pool.allocation(base).map(|a| a.kind)
    }

    /// Where `size` bytes aligned to `align` cost the kernel least to clear.
    pub fn place_ram(&self, size: u64, align: u64) -> Option<PhysAddr> {
        self.pool.find_least_clearing(size, align, None)
    }

    // ---- time ----

    /// Nanoseconds from the timer server: one `seL4_Call`.
    pub fn now_nanos(&mut self) -> Result<u64, TimeError> {
        let timer = self.timer.as_mut().ok_or(TimeError::NoServer)?;
        Ok(timer.now(&mut self.kernel)?)
    }

    // ---- checks ----

    /// Checks the pool's invariants and that every recorded frame is where the kernel says
    /// (`Page_GetAddress` per frame: a test and debugging aid, not free).
    pub fn check_against_kernel(&mut self) -> Result<(), HalError> {
        self.pool.check().map_err(HalError::Pool)?;
        let mut frames = 0usize;
        for a in self.pool.allocations() {
            for o in a.objects() {
                if frame_size(o.blueprint).is_none() {
                    continue;
                }
                frames += 1;
                match self.table.frame(o.paddr) {
                    Some(f) if f.slot == o.slot && f.allocation == a.base => {}
                    _ => return Err(HalError::Inconsistent { paddr: o.paddr, kernel: None }),
                }
            }
        }
        if frames != self.table.len() {
            return Err(HalError::Pool("capability table holds frames of no allocation"));
        }
        for f in self.table.iter() {
            let got = self.kernel.page_get_address(f.slot.cap());
            if got != Ok(f.paddr) {
                return Err(HalError::Inconsistent { paddr: f.paddr, kernel: got.ok() });
            }
        }
        Ok(())
    }

    // ---- the trait's operations, on this instance ----

    /// `alloc_memory_region_at`: any one kind of memory (RAM for guest memory, device memory
    /// for passthrough regions: the VM layer allocates both through the trait, which has no
    /// room for a flag; a range mixing the two is refused). The reason for a refusal is
    /// logged.
    pub fn alloc_memory_region_at(&mut self, base: HostPhysAddr, size: usize) -> bool {
        match self.alloc_region(PhysAddr(base.as_usize() as u64), size as u64, KindRequest::Uniform) {
            Ok(a) => {
                let kind = if a.kind == MemoryKind::Device { "device" } else { "RAM" };
                log::debug!("hal: allocated {kind} {:#x}+{size:#x}", base.as_usize());
                true
            }
            Err(e) => {
                log::warn!("hal: alloc_memory_region_at({:#x}, {size:#x}) refused: {e}", base.as_usize());
                false
            }
        }
    }

    /// `dealloc_memory_region_at`: refusals are logged and change nothing.
    pub fn dealloc_memory_region_at(&mut self, base: HostPhysAddr, size: usize) {
        if let Err(e) = self.dealloc_region(PhysAddr(base.as_usize() as u64), size as u64) {
            log::warn!("hal: dealloc_memory_region_at({:#x}, {size:#x}) refused: {e}", base.as_usize());
        }
    }

    /// `virt_to_phys`: panics naming the address when the table does not know it (the VM
    /// layer asked about memory the HAL never mapped: a bug, not guest data).
    pub fn virt_to_phys(&self, vaddr: HostVirtAddr) -> HostPhysAddr {
        match self.try_virt_to_phys(VirtAddr(vaddr.as_usize() as u64)) {
            Ok(p) => HostPhysAddr::from_usize(p.get() as usize),
            Err(e) => panic!("hal: virt_to_phys({:#x}): {e}", vaddr.as_usize()),
        }
    }

    /// `current_time_nanos`: panics when the timer server cannot be reached or breaks the
    /// protocol (the trait has no way to report it, and a made-up time is worse).
    pub fn current_time_nanos(&mut self) -> u64 {
        match self.now_nanos() {
            Ok(t) => t,
            Err(e) => panic!("hal: current_time_nanos: {e}"),
        }
    }
}

/// The one HAL instance the trait's static methods reach. See the module docs.
pub struct HalCell<K: Kernel> {
    inner: spin::Mutex<Option<Sel4Hal<K>>>,
}

impl<K: Kernel> Default for HalCell<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Kernel> HalCell<K> {
    /// Empty.
    pub const fn new() -> Self {
        HalCell { inner: spin::Mutex::new(None) }
    }

    /// Installs `hal`; gives it back if one is installed already.
    pub fn install(&self, hal: Sel4Hal<K>) -> Result<(), alloc::boxed::Box<Sel4Hal<K>>> {
        let mut g = self.inner.lock();
        if g.is_some() {
            return Err(alloc::boxed::Box::new(hal));
        }
        *g = Some(hal);
        Ok(())
    }

    /// Takes the installed instance out.
    pub fn take(&self) -> Option<Sel4Hal<K>> {
        self.inner.lock().take()
    }

    /// Whether an instance is installed.
    pub fn is_installed(&self) -> bool {
        self.inner.lock().is_some()
    }

    /// Runs `f` on the installed instance. Panics if none is installed: using the HAL
    /// before the root task set it up is a bug in the root task.
    ///
    /// A HAL call from inside another on the same cell (a bug: the caller held the HAL across
    /// its own work) panics naming that, rather than spinning forever on the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Sel4Hal<K>) -> R) -> R {
        let Some(mut g) = self.inner.try_lock() else {
            panic!("hal: the HAL was entered again from inside a HAL call (a caller held it across its own work)")
        };
        match g.as_mut() {
            Some(hal) => f(hal),
            None => panic!("hal: used before a Sel4Hal was installed in its HalCell"),
        }
    }
}

/// Names the [`HalCell`] that [`GlobalHal`] forwards to.
pub trait HalInstance: 'static {
    /// The kernel the instance runs on.
    type Kernel: Kernel;
    /// The cell.
    fn cell() -> &'static HalCell<Self::Kernel>;
}

/// `AxVMHal` over the instance installed in `I`'s cell.
pub struct GlobalHal<I: HalInstance>(PhantomData<I>);

/// `PagingHandler` over the instance installed in `I`'s cell.
pub struct GlobalPaging<I: HalInstance>(PhantomData<I>);

// `AxVMHal` for `GlobalHal` (with `GlobalPaging`) is in `crate::objects`, beside the
// VM layer's other trait, one implementation for it and the host's `HostHal`.

impl<I: HalInstance> page_table_multiarch::PagingHandler for GlobalPaging<I> {
    fn alloc_frames(num: usize, align: usize) -> Option<memory_addr::PhysAddr> {
        I::cell().with(|h| match h.alloc_paging_frames(num, align) {
            Ok(p) => Some(memory_addr::PhysAddr::from_usize(p.get() as usize)),
            Err(e) => {
                log::warn!("hal: alloc_frames({num}, {align:#x}) refused: {e}");
                None
            }
        })
    }

    fn dealloc_frames(paddr: memory_addr::PhysAddr, num: usize) {
        I::cell().with(|h| {
            if let Err(e) = h.dealloc_paging_frames(PhysAddr(paddr.as_usize() as u64), num) {
                log::warn!("hal: dealloc_frames({:#x}, {num}) refused: {e}", paddr.as_usize());
            }
        })
    }

    fn phys_to_virt(paddr: memory_addr::PhysAddr) -> memory_addr::VirtAddr {
        I::cell().with(|h| match h.try_phys_to_virt(PhysAddr(paddr.as_usize() as u64)) {
            Ok(v) => memory_addr::VirtAddr::from_usize(v.get() as usize),
            Err(e) => panic!("hal: phys_to_virt({:#x}): {e}", paddr.as_usize()),
        })
    }
}
