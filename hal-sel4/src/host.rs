//! The HAL on the host (feature `host`): [`HostHal`], the same `AxVMHal` and `VmObjects` as
//! [`crate::GlobalHal`] over an instance on the seL4 model, whose `PagingHandler`
//! ([`HostPaging`]) takes its frames from the HAL, as the root task's does, but backs each
//! frame with host memory, so that the VM layer's stage-2 book can be written and read.
//!
//! On the target, [`crate::GlobalPaging`] returns the root-task virtual address where the
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

use crate::hal::HalInstance;
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

/// A HAL over the seL4 model, installed in `I`'s cell, owning every untyped, `pool` for the
/// pool's capabilities and `loose` for the VM layer's own (both parts of bootinfo's empty
/// region: the VM layer's `split_slots` cuts them as the root task does).
pub fn install_model<I: HalInstance<Kernel = sel4_model::Model>>(
    model: sel4_model::Model,
    (pool, loose): (sel4::SlotRegion, sel4::SlotRegion),
) -> Result<(), alloc::string::String> {
    use alloc::string::ToString;
    let untyped: alloc::vec::Vec<_> = model.untyped_slots().into_iter().map(|(s, d)| (s.cap(), d)).collect();
    let hal = crate::Sel4Hal::new(model, untyped, crate::HalConfig::with_loose_slots(pool, loose))
        .map_err(|e| e.to_string())?;
    I::cell().install(hal).map_err(|_| "a HAL is already installed in this cell".to_string())?;
    Ok(())
}

/// `AxVMHal` (and `VmObjects`) over the instance installed in `I`'s cell, with page-table
/// frames in host memory ([`HostPaging`]).
pub struct HostHal<I: HalInstance>(PhantomData<I>);
