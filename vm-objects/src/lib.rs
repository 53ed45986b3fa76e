//! The seL4 objects a VM needs that the seed's `AxVMHal` has no words for: threads, VCPUs,
//! endpoints, notifications, page-table objects and CNodes, IRQ handlers, the frame capabilities of a
//! region, root CNode slots, the VMM's own view of guest memory, and where RAM goes when a
//! configuration leaves it to capvisor.
//!
//! `vm-runner` drives VMs through exactly two traits: `axvm_hal::AxVMHal` (memory at a base,
//! translation, time, page-table frames) and [`VmObjects`] here. Any HAL that implements both
//! can run VMs: `hal-sel4` does (over the real kernel and over the seL4 model), and
//! vm-runner's tests carry a second, simpler one.
//!
//! Like `AxVMHal`, every method is static: an implementation reaches its state through
//! something it owns (a cell the root task installs). The kernel handle is lent for one
//! closure at a time ([`sel4::Lend`]); [`sel4::Lent`] turns that into a `Kernel` that borrows
//! it per invocation, so the VM layer never holds the HAL across its own work and may call
//! the HAL (for time, or to rebuild a VM) from inside an exit handler.
//!
//! Owns nothing but the trait and the plain types it speaks in; never grows an
//! implementation (that is `hal-sel4`'s job).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use axvm_hal::AxVMHal;
use sel4::cap_type::IrqHandler;
use sel4::{Cap, CapType, FrameSize, ObjectBlueprint, PhysAddr, Slot, VirtAddr};

/// Kernel objects of one blueprint made together, their capabilities in consecutive slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objects {
    /// What they are.
    pub blueprint: ObjectBlueprint,
    /// Physical base of the memory behind them (how the HAL finds them again).
    pub base: PhysAddr,
    /// The first capability.
    pub first: Slot,
    /// How many.
    pub count: u64,
}

impl Objects {
    /// The slot of object `k` (`None` past the end).
    pub fn slot(&self, k: u64) -> Option<Slot> {
        (k < self.count).then(|| self.first.offset(k))
    }

    /// The capability of object `k`, typed. Past the end: the null capability, which every
    /// invocation refuses (callers index within `count`).
    pub fn cap<T: CapType>(&self, k: u64) -> Cap<T> {
        self.slot(k).map_or(Cap::from_cptr(sel4::CPtr::NULL), |s| s.cap())
    }

    /// Every capability, in order.
    pub fn caps<T: CapType>(&self) -> impl Iterator<Item = Cap<T>> + '_ {
        (0..self.count).map(|k| self.cap(k))
    }
}

/// What memory a region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM: the kernel zeroed it when it made the frames.
    Ram,
    /// Device memory (or RAM the kernel does not manage): never zeroed by the kernel.
    Device,
}

/// One frame capability of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionFrame {
    /// The HAL's capability (copy it to map it elsewhere).
    pub slot: Slot,
    /// Physical address.
    pub paddr: PhysAddr,
    /// Size.
    pub size: FrameSize,
}

/// Free capability slots and untyped bytes of a HAL: the counts a leak check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Root CNode slots the HAL may still fill.
    pub slots_free: u64,
    /// Untyped bytes not backing any allocation.
    pub untyped_bytes_free: u64,
}

/// Why the HAL refused; the reason is the HAL's own words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Refused {
    /// The refusal `e` describes.
    pub fn of(e: impl fmt::Display) -> Self {
        Refused(alloc::format!("{e}"))
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for Refused {}

/// The seL4 objects of a VM. See the crate docs.
pub trait VmObjects: AxVMHal + sel4::Lend {
    /// `count` objects of `blueprint` (at most the kernel's retype fan-out) from the HAL's own
    /// memory.
    fn alloc_objects(blueprint: ObjectBlueprint, count: u64) -> Result<Objects, Refused>;

    /// Frees what [`VmObjects::alloc_objects`] made: every capability derived from them goes.
    fn free_objects(objects: Objects) -> Result<(), Refused>;

    /// `count` consecutive empty root CNode slots for the VM layer's own capabilities (copies
    /// of frame capabilities, minted endpoints, IRQ handlers).
    fn alloc_slots(count: u64) -> Result<Slot, Refused>;

    /// Returns slots from [`VmObjects::alloc_slots`]; they must be empty again.
    fn free_slots(first: Slot, count: u64) -> Result<(), Refused>;

    /// Where `size_bytes` of RAM aligned to `align_bytes` would cost least to allocate with
    /// `alloc_memory_region_at` (for RAM whose host address the configuration leaves open).
    fn place_ram(size_bytes: u64, align_bytes: u64) -> Option<PhysAddr>;

    /// The kind of the region allocated at `base` (`None`: nothing allocated there).
    fn region_kind(base: PhysAddr) -> Option<MemoryKind>;

    /// The frame capabilities of the region allocated at `base`, in address order (empty:
    /// nothing allocated there).
    fn region_frames(base: PhysAddr) -> Vec<RegionFrame>;

    /// Maps the region allocated at `base` into the VMM's address space, writable; returns
    /// where (`AxVMHal::virt_to_phys` then translates inside it).
    fn map_region(base: PhysAddr) -> Result<VirtAddr, Refused>;

    /// Takes away what [`VmObjects::map_region`] mapped.
    fn unmap_region(base: PhysAddr) -> Result<(), Refused>;

    /// A handler for host interrupt `irq` (level-triggered unless `edge_triggered`), in a
    /// slot of its own: the VM layer binds it to a notification and acknowledges it.
    fn irq_handler(irq: u64, edge_triggered: bool) -> Result<Cap<IrqHandler>, Refused>;

    /// Free slots and untyped bytes now.
    fn usage() -> Usage;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sel4::cap_type::Tcb;

    #[test]
    fn objects_name_their_slots_in_order_and_nothing_past_the_end() {
        let o = Objects { blueprint: ObjectBlueprint::Tcb, base: PhysAddr(0x1000), first: Slot::new(40), count: 3 };
        assert_eq!(o.slot(0), Some(Slot::new(40)));
        assert_eq!(o.slot(2), Some(Slot::new(42)));
        assert_eq!(o.slot(3), None);
        let caps: Vec<Cap<Tcb>> = o.caps().collect();
        assert_eq!(caps, [Slot::new(40).cap(), Slot::new(41).cap(), Slot::new(42).cap()]);
        assert_eq!(o.cap::<Tcb>(3), Cap::from_cptr(sel4::CPtr::NULL), "past the end: the null capability");
    }
}
