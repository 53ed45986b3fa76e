//! Tests only: a paging handler with made-up physical addresses and no HAL, for the book's
//! own tests.

extern crate std;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::cell::UnsafeCell;
use std::sync::Mutex;

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;

const PAGE: usize = 4096;

/// One host page. `UnsafeCell`: the page-table code writes through the address handed out.
struct HostPage(Box<[UnsafeCell<u64>; PAGE / 8]>);

static LOCAL: Mutex<BTreeMap<u64, HostPage>> = Mutex::new(BTreeMap::new());
static NEXT: Mutex<u64> = Mutex::new(0x1000_0000);

/// See the module docs.
pub(crate) struct LocalPaging;

impl PagingHandler for LocalPaging {
    fn alloc_frames(num: usize, _align: usize) -> Option<PhysAddr> {
        let mut next = NEXT.lock().unwrap();
        let p = *next;
        *next += (num * PAGE) as u64;
        let mut map = LOCAL.lock().unwrap();
        for i in 0..num as u64 {
            map.insert(p + i * PAGE as u64, HostPage(Box::new([const { UnsafeCell::new(0) }; PAGE / 8])));
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
        VirtAddr::from(map[&page].0.as_ptr() as usize + (p - page) as usize)
    }
}
