//! Host-only support (feature `host`, and tests): a `PagingHandler` that takes its frames
//! from the HAL, as the root task's does, but backs each frame with host memory, so that
//! the stage-2 book ([`crate::book`]) can be written and read on the seL4 model.
//!
//! On the target, `hal_sel4::GlobalPaging` returns the root-task virtual address where the
//! HAL mapped the frame; on the host there is no memory behind such an address, so this
//! handler keeps a host page per frame, keyed by the HAL instance and the physical address.
//! Everything else (which physical frames, the pool's accounting, the model's retypes and
//! mappings) is exactly the target's.
//!
//! Owns the host pages; never touches the kernel except through the HAL.

extern crate std;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use std::sync::Mutex;

use hal_sel4::HalInstance;
use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;

const PAGE: usize = 4096;

/// One host page. `UnsafeCell`: the page-table code writes through the address this
/// handler hands out while the map holds the page.
struct HostPage(Box<[UnsafeCell<u64>; PAGE / 8]>);

impl HostPage {
    fn new() -> Self {
        HostPage(Box::new([const { UnsafeCell::new(0) }; PAGE / 8]))
    }
    fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

/// Host pages by (HAL cell, physical page).
static PAGES: Mutex<BTreeMap<(usize, u64), HostPage>> = Mutex::new(BTreeMap::new());

fn pages() -> std::sync::MutexGuard<'static, BTreeMap<(usize, u64), HostPage>> {
    // A poisoned map still holds valid pages: a panic elsewhere does not corrupt it.
    PAGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The paging handler of HAL instance `I` on the host. See the module docs.
pub struct HostPaging<I: HalInstance>(PhantomData<I>);

fn cell_id<I: HalInstance>() -> usize {
    core::ptr::from_ref(I::cell()) as usize
}

impl<I: HalInstance> PagingHandler for HostPaging<I> {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        let paddr = match I::cell().with(|h| h.alloc_paging_frames(num, align)) {
            Ok(p) => p.get(),
            Err(_) => return None,
        };
        let id = cell_id::<I>();
        let mut map = pages();
        for i in 0..num as u64 {
            map.insert((id, paddr + i * PAGE as u64), HostPage::new());
        }
        Some(PhysAddr::from(paddr as usize))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        let p = paddr.as_usize() as u64;
        // Freed in the HAL first: if it refuses, the pages stay (as the frames do).
        if I::cell().with(|h| h.dealloc_paging_frames(sel4::PhysAddr(p), num)).is_ok() {
            let id = cell_id::<I>();
            let mut map = pages();
            for i in 0..num as u64 {
                map.remove(&(id, p + i * PAGE as u64));
            }
        }
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        let p = paddr.as_usize() as u64;
        let page = p & !(PAGE as u64 - 1);
        match pages().get(&(cell_id::<I>(), page)) {
            Some(hp) => VirtAddr::from(hp.addr() + (p - page) as usize),
            None => panic!("host paging: {p:#x} is not a frame this HAL handed out for page tables"),
        }
    }
}

/// Host pages still held for HAL instance `I` (a test checks they all come back).
pub fn pages_held<I: HalInstance>() -> usize {
    let id = cell_id::<I>();
    pages().keys().filter(|(c, _)| *c == id).count()
}

/// A HAL over the seL4 model, installed in `I`'s cell, owning every untyped and the empty
/// slots but the last [`crate::setup::DEFAULT_VMM_SLOTS`]; returns the options to build VMs
/// with (the VMM's slots, the initial ASID pool, the root task's TCB).
pub fn install_model_hal<I: HalInstance<Kernel = sel4_model::Model>>(
    model: sel4_model::Model,
) -> Result<crate::setup::SetupOptions, alloc::string::String> {
    use alloc::string::ToString;
    let empty = model.bootinfo().empty();
    let list_registers = u8::try_from(model.platform().gic_list_regs).unwrap_or(u8::MAX);
    let (hal_slots, vmm_slots) = crate::setup::split_slots(empty, crate::setup::DEFAULT_VMM_SLOTS);
    let untyped: alloc::vec::Vec<_> = model.untyped_slots().into_iter().map(|(s, d)| (s.cap(), d)).collect();
    let hal = hal_sel4::Sel4Hal::new(model, untyped, hal_sel4::HalConfig::new(hal_slots)).map_err(|e| e.to_string())?;
    I::cell().install(hal).map_err(|_| "a HAL is already installed in this cell".to_string())?;
    Ok(crate::setup::SetupOptions {
        platform: crate::vm::Platform { list_registers },
        slots: vmm_slots,
        asid_pool: sel4::init_cap::ASID_POOL.cap(),
        vmm_tcb: sel4::init_cap::TCB.cap(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    static LOCAL: Mutex<BTreeMap<u64, HostPage>> = Mutex::new(BTreeMap::new());
    static NEXT: Mutex<u64> = Mutex::new(0x1000_0000);

    /// A paging handler with made-up physical addresses and no HAL, for the book's own tests.
    pub(crate) struct LocalPaging;

    impl PagingHandler for LocalPaging {
        fn alloc_frames(num: usize, _align: usize) -> Option<PhysAddr> {
            let mut next = NEXT.lock().unwrap();
            let p = *next;
            *next += (num * PAGE) as u64;
            let mut map = LOCAL.lock().unwrap();
            for i in 0..num as u64 {
                map.insert(p + i * PAGE as u64, HostPage::new());
            }
            Some(PhysAddr::from(p as usize))
        }
        fn dealloc_frames(paddr: PhysAddr, num: usize) {
            let mut map = LOCAL.lock().unwrap();
            for i in 0..num as u64 {
                map.remove(&(paddr.as_usize() as u64 + i * PAGE as u64));
            }
        }
        fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
            let p = paddr.as_usize() as u64;
            let page = p & !(PAGE as u64 - 1);
            let map = LOCAL.lock().unwrap();
            VirtAddr::from(map[&page].addr() + (p - page) as usize)
        }
    }
}
