//! axvm 0.2.3's `AxVMHal` driven through the adapter over a small host of the seed's trait
//! (one 4 KiB window mapped at a fixed offset, a clock that advances on every read), and over
//! placements: each answer must be the host's, reached by exactly one call.
//!
//! Every test has its own statics: the trait's methods take no `self`, and tests run in
//! parallel.

use std::any::TypeId;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axvm::AxVMHal as _;
use axvm_adapter::{AxError, AxResult, AxvmHal, NoVcpus, VcpuPlacement};
use axvm_hal::{HostPhysAddr, HostVirtAddr, PagingHandler};
use memory_addr::{PhysAddr, VirtAddr};

/// The window's host-physical base and its host-virtual base.
const PHYS: usize = 0x4000_0000;
const VIRT: usize = 0xffff_8000_4000_0000;
const WINDOW: usize = 0x1000;

/// Hands out the window's one frame and translates inside the window.
struct WindowFrames;

static FRAME_TAKEN: AtomicBool = AtomicBool::new(false);

impl PagingHandler for WindowFrames {
    fn alloc_frames(num: usize, _align: usize) -> Option<PhysAddr> {
        (num == 1 && !FRAME_TAKEN.swap(true, Ordering::SeqCst)).then(|| PhysAddr::from_usize(PHYS))
    }

    fn dealloc_frames(_paddr: PhysAddr, _num: usize) {
        FRAME_TAKEN.store(false, Ordering::SeqCst);
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        let offset = paddr.as_usize().checked_sub(PHYS).filter(|&o| o < WINDOW).expect("outside the window");
        VirtAddr::from_usize(VIRT + offset)
    }
}

/// A seed host with one window, whose clock advances 1000 ns per read.
struct OneWindow;

static CLOCK_NS: AtomicU64 = AtomicU64::new(5_000);

impl axvm_hal::AxVMHal for OneWindow {
    type PagingHandler = WindowFrames;

    fn alloc_memory_region_at(_base: HostPhysAddr, _size: usize) -> bool {
        false
    }

    fn dealloc_memory_region_at(_base: HostPhysAddr, _size: usize) {}

    fn virt_to_phys(vaddr: HostVirtAddr) -> HostPhysAddr {
        // Refuses like hal-sel4 does: a panic naming the address.
        match vaddr.as_usize().checked_sub(VIRT).filter(|&o| o < WINDOW) {
            Some(offset) => HostPhysAddr::from_usize(PHYS + offset),
            None => panic!("virt_to_phys({:#x}): not mapped", vaddr.as_usize()),
        }
    }

    fn current_time_nanos() -> u64 {
        CLOCK_NS.fetch_add(1_000, Ordering::SeqCst) + 1_000
    }
}

type Adapted = AxvmHal<OneWindow>;

#[test]
fn translation_is_the_hosts() {
    let inside = HostVirtAddr::from_usize(VIRT + 0x123);
    assert_eq!(Adapted::virt_to_phys(inside), HostPhysAddr::from_usize(PHYS + 0x123));
    assert_eq!(Adapted::virt_to_phys(HostVirtAddr::from_usize(VIRT)), HostPhysAddr::from_usize(PHYS));
}

#[test]
#[should_panic(expected = "virt_to_phys(0xffff800040001000): not mapped")]
fn a_translation_the_host_refuses_is_refused() {
    Adapted::virt_to_phys(HostVirtAddr::from_usize(VIRT + WINDOW));
}

#[test]
fn time_is_the_hosts_one_read_per_call() {
    let first = Adapted::current_time_nanos();
    let second = Adapted::current_time_nanos();
    assert_eq!(second, first + 1_000, "one host read per call");
    assert_eq!(<OneWindow as axvm_hal::AxVMHal>::current_time_nanos(), second + 1_000);
}

#[test]
fn page_tables_get_the_hosts_frames() {
    type Paging = <Adapted as axvm::AxVMHal>::PagingHandler;
    // No wrapper: axvm's paging handler is the host's own type.
    assert_eq!(TypeId::of::<Paging>(), TypeId::of::<WindowFrames>());

    let frame = Paging::alloc_frame().expect("the window's frame");
    assert_eq!(frame, PhysAddr::from_usize(PHYS));
    assert_eq!(Paging::alloc_frame(), None, "the host has one frame");
    assert_eq!(Paging::phys_to_virt(frame), VirtAddr::from_usize(VIRT));
    Paging::dealloc_frame(frame);
    assert_eq!(Paging::alloc_frame(), Some(frame), "given back, handed out again");
}

#[test]
fn with_no_vcpus_lookups_and_interrupts_find_nothing() {
    assert_eq!(Adapted::vcpu_resides_on(0, 0), Err(AxError::NotFound));
    assert_eq!(Adapted::inject_irq_to_vcpu(0, 0, 27), Err(AxError::NotFound));
}

#[test]
#[should_panic(expected = "current_vm_id asked of a host with no vCPUs")]
fn with_no_vcpus_there_is_no_current_vm() {
    AxvmHal::<OneWindow, NoVcpus>::current_vm_id();
}

#[test]
#[should_panic(expected = "current_pcpu_id asked of a host with no vCPUs")]
fn with_no_vcpus_there_is_no_current_pcpu() {
    Adapted::current_pcpu_id();
}

/// VM 1 with two vCPUs, vCPU n on physical CPU n, vCPU 1 running; interrupts recorded.
struct TwoVcpus;

static INJECTED: Mutex<Vec<(usize, usize, usize)>> = Mutex::new(Vec::new());

impl VcpuPlacement for TwoVcpus {
    fn current_vm_id() -> usize {
        1
    }

    fn current_vcpu_id() -> usize {
        1
    }

    fn current_pcpu_id() -> usize {
        1
    }

    fn vcpu_resides_on(vm_id: usize, vcpu_id: usize) -> AxResult<usize> {
        if vm_id == 1 && vcpu_id < 2 { Ok(vcpu_id) } else { Err(AxError::NotFound) }
    }

    fn inject_irq_to_vcpu(vm_id: usize, vcpu_id: usize, irq: usize) -> AxResult {
        Self::vcpu_resides_on(vm_id, vcpu_id)?;
        INJECTED.lock().unwrap().push((vm_id, vcpu_id, irq));
        Ok(())
    }
}

#[test]
fn a_placement_answers_the_vcpu_questions() {
    type Placed = AxvmHal<OneWindow, TwoVcpus>;
    assert_eq!((Placed::current_vm_id(), Placed::current_vcpu_id(), Placed::current_pcpu_id()), (1, 1, 1));
    assert_eq!(Placed::vcpu_resides_on(1, 0), Ok(0));
    assert_eq!(Placed::vcpu_resides_on(1, 2), Err(AxError::NotFound));
    assert_eq!(Placed::inject_irq_to_vcpu(1, 0, 27), Ok(()));
    assert_eq!(Placed::inject_irq_to_vcpu(2, 0, 27), Err(AxError::NotFound));
    assert_eq!(*INJECTED.lock().unwrap(), [(1, 0, 27)], "only the delivered interrupt reached the placement");
}

/// capvisor's HAL through the adapter, for every instance: checked when this file compiles.
#[allow(dead_code, reason = "a compile-time check, never called")]
fn capvisors_hal_is_an_axvm_hal<I: hal_sel4::HalInstance>() {
    fn is_axvm_hal<T: axvm::AxVMHal>() {}
    is_axvm_hal::<AxvmHal<hal_sel4::GlobalHal<I>>>();
}
