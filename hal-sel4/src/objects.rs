//! `AxVMHal`, `vm_objects::VmObjects` and `sel4::Lend` for the HAL types whose static methods reach an
//! installed [`Sel4Hal`](crate::Sel4Hal): [`GlobalHal`] on the target and, on the host,
//! [`crate::host::HostHal`]. Each method takes the cell's lock for its own length only.
//!
//! Owns nothing; forwards to the installed instance.

use alloc::vec::Vec;
use axvm_hal::{AxVMHal, HostPhysAddr, HostVirtAddr};

use sel4::cap_type::IrqHandler;
use sel4::{Cap, Lend, ObjectBlueprint, PhysAddr, Slot, VirtAddr};
use vm_objects::{MemoryKind, Objects, Refused, RegionFrame, Usage, VmObjects};

use crate::hal::{GlobalHal, GlobalPaging, HalInstance};
use crate::pool;

macro_rules! impl_vm_objects {
    ($hal:ident, $paging:ident) => {
        impl<I: HalInstance> AxVMHal for $hal<I> {
            type PagingHandler = $paging<I>;

            fn alloc_memory_region_at(base: HostPhysAddr, size: usize) -> bool {
                I::cell().with(|h| h.alloc_memory_region_at(base, size))
            }

            fn dealloc_memory_region_at(base: HostPhysAddr, size: usize) {
                I::cell().with(|h| h.dealloc_memory_region_at(base, size))
            }

            fn virt_to_phys(vaddr: HostVirtAddr) -> HostPhysAddr {
                I::cell().with(|h| h.virt_to_phys(vaddr))
            }

            fn current_time_nanos() -> u64 {
                I::cell().with(|h| h.current_time_nanos())
            }
        }

        impl<I: HalInstance> Lend for $hal<I> {
            type Kernel = I::Kernel;
            fn with_kernel<R>(f: impl FnOnce(&mut I::Kernel) -> R) -> R {
                I::cell().with(|h| f(h.kernel_mut()))
            }
        }

        impl<I: HalInstance> VmObjects for $hal<I> {
            fn alloc_objects(blueprint: ObjectBlueprint, count: u64) -> Result<Objects, Refused> {
                I::cell().with(|h| h.alloc_objects(blueprint, count)).map_err(Refused::of)
            }
            fn free_objects(objects: Objects) -> Result<(), Refused> {
                I::cell().with(|h| h.free_objects(objects)).map_err(Refused::of)
            }
            fn alloc_slots(count: u64) -> Result<Slot, Refused> {
                I::cell().with(|h| h.alloc_slots(count)).map_err(Refused::of)
            }
            fn free_slots(first: Slot, count: u64) -> Result<(), Refused> {
                I::cell().with(|h| h.free_slots(first, count)).map_err(Refused::of)
            }
            fn place_ram(size_bytes: u64, align_bytes: u64) -> Option<PhysAddr> {
                I::cell().with(|h| h.place_ram(size_bytes, align_bytes))
            }
            fn region_kind(base: PhysAddr) -> Option<MemoryKind> {
                I::cell().with(|h| h.region_kind(base)).map(|k| match k {
                    pool::MemoryKind::Ram => MemoryKind::Ram,
                    pool::MemoryKind::Device => MemoryKind::Device,
                })
            }
            fn region_frames(base: PhysAddr) -> Vec<RegionFrame> {
                I::cell().with(|h| {
                    h.frames(base).map(|(f, _)| RegionFrame { slot: f.slot, paddr: f.paddr, size: f.size }).collect()
                })
            }
            fn map_region(base: PhysAddr) -> Result<VirtAddr, Refused> {
                I::cell().with(|h| h.map_region(base)).map_err(Refused::of)
            }
            fn unmap_region(base: PhysAddr) -> Result<(), Refused> {
                I::cell().with(|h| h.unmap_region(base)).map_err(Refused::of)
            }
            fn irq_handler(irq: u64, edge_triggered: bool) -> Result<Cap<IrqHandler>, Refused> {
                I::cell().with(|h| h.irq_handler(irq, edge_triggered)).map_err(Refused::of)
            }
            fn usage() -> Usage {
                I::cell().with(|h| h.usage())
            }
        }
    };
}

impl_vm_objects!(GlobalHal, GlobalPaging);
#[cfg(feature = "host")]
use crate::host::{HostHal, HostPaging};
#[cfg(feature = "host")]
impl_vm_objects!(HostHal, HostPaging);
