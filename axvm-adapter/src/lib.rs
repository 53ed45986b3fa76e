//! The published `axvm` crate's `AxVMHal` (axvm 0.2.3), implemented for any host of the seed's
//! trait ([`axvm_hal::AxVMHal`]), so that capvisor's `hal_sel4::GlobalHal<I>` is checked
//! against axvm's own trait and not only against the copy the seed keeps.
//!
//! axvm 0.2.3's trait is the seed's, less the allocation pair, plus five questions about
//! vCPU placement:
//!
//! | axvm 0.2.3 `AxVMHal` | answered by |
//! |---|---|
//! | `type PagingHandler` | the seed host's `PagingHandler`, the same type: both traits bound it by `page_table_multiarch` 0.6 |
//! | `virt_to_phys`, `current_time_nanos` | the seed host, forwarded; the address types are the same `memory_addr` 0.4 types, so nothing is converted |
//! | `current_vm_id`, `current_vcpu_id`, `current_pcpu_id`, `vcpu_resides_on`, `inject_irq_to_vcpu` | a [`VcpuPlacement`] ([`NoVcpus`] unless one is named) |
//!
//! The seed's `alloc_memory_region_at` and `dealloc_memory_region_at` have no counterpart in
//! axvm 0.2.3 (its VMs take guest RAM from the global allocator), so nothing here calls them.
//!
//! This crate owns the adapter type and the placement seam, and holds no state. It must never
//! implement the seed's trait (that is `hal-sel4`'s job), depend on seL4, or be linked into
//! the root task: axvm switches on features of the address-space crates (`arm-el2`) that the
//! root task's own page-table code must not get.
#![no_std]
#![forbid(unsafe_code)]

use core::marker::PhantomData;

pub use axerrno::{AxError, AxResult};
use axvm_hal::{HostPhysAddr, HostVirtAddr};

/// The questions axvm's trait asks and the seed's does not: which VM, vCPU and physical CPU
/// are running, where a vCPU runs, and delivering an interrupt to it.
pub trait VcpuPlacement {
    /// The VM whose vCPU is running on this physical CPU.
    fn current_vm_id() -> usize;

    /// The vCPU running on this physical CPU.
    fn current_vcpu_id() -> usize;

    /// This physical CPU.
    fn current_pcpu_id() -> usize;

    /// The physical CPU that vCPU `vcpu_id` of VM `vm_id` runs on.
    fn vcpu_resides_on(vm_id: usize, vcpu_id: usize) -> AxResult<usize>;

    /// Delivers interrupt `irq` to vCPU `vcpu_id` of VM `vm_id`.
    fn inject_irq_to_vcpu(vm_id: usize, vcpu_id: usize, irq: usize) -> AxResult;
}

/// A host that places no vCPUs (capvisor's HAL knows none: `vm-runner` keeps them).
///
/// Lookups and interrupt delivery find nothing (`AxError::NotFound`). The three "current"
/// questions have no truthful number to give and no error channel, so they panic, naming the
/// question: asking them of this host is a wiring bug, not guest data.
pub enum NoVcpus {}

impl VcpuPlacement for NoVcpus {
    fn current_vm_id() -> usize {
        panic!("axvm-adapter: current_vm_id asked of a host with no vCPUs (name a VcpuPlacement)")
    }

    fn current_vcpu_id() -> usize {
        panic!("axvm-adapter: current_vcpu_id asked of a host with no vCPUs (name a VcpuPlacement)")
    }

    fn current_pcpu_id() -> usize {
        panic!("axvm-adapter: current_pcpu_id asked of a host with no vCPUs (name a VcpuPlacement)")
    }

    fn vcpu_resides_on(_vm_id: usize, _vcpu_id: usize) -> AxResult<usize> {
        Err(AxError::NotFound)
    }

    fn inject_irq_to_vcpu(_vm_id: usize, _vcpu_id: usize, _irq: usize) -> AxResult {
        Err(AxError::NotFound)
    }
}

/// `axvm::AxVMHal` over the seed's host `H`, with vCPU placement from `P`.
///
/// `AxvmHal<hal_sel4::GlobalHal<I>>` is capvisor's HAL as axvm 0.2.3 sees it.
pub struct AxvmHal<H, P = NoVcpus>(PhantomData<(H, P)>);

impl<H: axvm_hal::AxVMHal, P: VcpuPlacement> axvm::AxVMHal for AxvmHal<H, P> {
    type PagingHandler = H::PagingHandler;

    fn virt_to_phys(vaddr: HostVirtAddr) -> HostPhysAddr {
        H::virt_to_phys(vaddr)
    }

    fn current_time_nanos() -> u64 {
        H::current_time_nanos()
    }

    fn current_vm_id() -> usize {
        P::current_vm_id()
    }

    fn current_vcpu_id() -> usize {
        P::current_vcpu_id()
    }

    fn current_pcpu_id() -> usize {
        P::current_pcpu_id()
    }

    fn vcpu_resides_on(vm_id: usize, vcpu_id: usize) -> AxResult<usize> {
        P::vcpu_resides_on(vm_id, vcpu_id)
    }

    fn inject_irq_to_vcpu(vm_id: usize, vcpu_id: usize, irq: usize) -> AxResult {
        P::inject_irq_to_vcpu(vm_id, vcpu_id, irq)
    }
}
