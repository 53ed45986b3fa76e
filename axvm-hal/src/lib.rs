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
///
/// A host that owns one fixed range and no page-table frames:
///
/// ```
/// use core::sync::atomic::{AtomicBool, Ordering};
/// use axvm_hal::{AxVMHal, HostPhysAddr, HostVirtAddr, PagingHandler};
///
/// static TAKEN: AtomicBool = AtomicBool::new(false);
/// struct NoFrames;
/// impl PagingHandler for NoFrames {
///     fn alloc_frames(_: usize, _: usize) -> Option<memory_addr::PhysAddr> { None }
///     fn dealloc_frames(_: memory_addr::PhysAddr, _: usize) {}
///     fn phys_to_virt(p: memory_addr::PhysAddr) -> memory_addr::VirtAddr { memory_addr::VirtAddr::from_usize(p.as_usize()) }
/// }
/// struct OneRange;
/// impl AxVMHal for OneRange {
///     type PagingHandler = NoFrames;
///     fn alloc_memory_region_at(base: HostPhysAddr, size: usize) -> bool {
///         base.as_usize() == 0x4000_0000 && size == 0x1000 && !TAKEN.swap(true, Ordering::SeqCst)
///     }
///     fn dealloc_memory_region_at(_: HostPhysAddr, _: usize) { TAKEN.store(false, Ordering::SeqCst) }
///     fn virt_to_phys(v: HostVirtAddr) -> HostPhysAddr { HostPhysAddr::from_usize(v.as_usize()) }
///     fn current_time_nanos() -> u64 { 0 }
/// }
/// let base = HostPhysAddr::from_usize(0x4000_0000);
/// assert!(OneRange::alloc_memory_region_at(base, 0x1000));
/// assert!(!OneRange::alloc_memory_region_at(base, 0x1000));
/// OneRange::dealloc_memory_region_at(base, 0x1000);
/// assert!(OneRange::alloc_memory_region_at(base, 0x1000));
/// // The page-table crate's addresses are the HAL's: no conversion between them.
/// let p: memory_addr::PhysAddr = base;
/// assert_eq!(<OneRange as AxVMHal>::PagingHandler::alloc_frame(), None);
/// # let _ = p;
/// ```
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
