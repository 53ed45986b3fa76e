//! The `AxVMHal` trait of axvm: the contract between the VM layer and its host.
//!
//! axvm itself cannot be used by capvisor (its vCPU code runs at EL2; capvisor's VMM is an
//! EL0 seL4 client), but its HAL contract is kept verbatim so that the VM layer
//! (`vm-runner`) is written against the same interface and the host side (`hal-sel4`) can
//! be swapped for a test double.
//!
//! This crate owns nothing but the trait and the address types it speaks in; it must never
//! grow an implementation (that is `hal-sel4`'s job) or depend on seL4.
#![no_std]
#![forbid(unsafe_code)]

pub use axaddrspace::{HostPhysAddr, HostVirtAddr};
pub use page_table_multiarch::PagingHandler;

/// Services the VM layer needs from its host: physical memory at fixed addresses, the
/// physical address behind a host virtual address, time, and frames for page tables.
///
/// The methods take no `self`: an implementation reaches its state through something it
/// owns statically (see `hal_sel4::GlobalHal`).
pub trait AxVMHal: Sized {
    /// Frame allocation and physical-to-virtual translation for page tables the VM layer
    /// builds.
    type PagingHandler: page_table_multiarch::PagingHandler;

    /// Makes the host physical range `[base, base + size)` the caller's. Returns `false`
    /// (and leaves the host unchanged) if the range is in use, not backed by memory the host
    /// can hand out, or malformed.
    fn alloc_memory_region_at(base: HostPhysAddr, size: usize) -> bool;

    /// Gives back a range that [`AxVMHal::alloc_memory_region_at`] handed out, exactly as it
    /// was allocated.
    fn dealloc_memory_region_at(base: HostPhysAddr, size: usize);

    /// The host physical address behind host virtual address `vaddr`.
    fn virt_to_phys(vaddr: HostVirtAddr) -> HostPhysAddr;

    /// Monotonic time in nanoseconds.
    fn current_time_nanos() -> u64;
}
