//! The `AxVMHal` and `PagingHandler` implementations over one installed instance, as the root
//! task uses them, on the QEMU virt model. One test per cell: the cell is process-wide.

mod common;

use axvm_hal::{AxVMHal, HostPhysAddr, HostVirtAddr, PagingHandler};
use hal_sel4::{GlobalHal, GlobalPaging, HalCell, HalInstance};
use sel4::{ObjectBlueprint, PhysAddr, VirtAddr, init_cap};
use sel4_model::Model;

static CELL: HalCell<Model> = HalCell::new();

struct TestHal;
impl HalInstance for TestHal {
    type Kernel = Model;
    fn cell() -> &'static HalCell<Model> {
        &CELL
    }
}

type Hal = GlobalHal<TestHal>;
type Paging = <Hal as AxVMHal>::PagingHandler;

#[test]
fn trait_methods_reach_the_installed_instance() {
    let mut hal = common::model_hal();
    // A timer server: 100 ns per call.
    let ep = hal.alloc_objects(ObjectBlueprint::Endpoint, 1).unwrap().first.cap();
    let mut now = 0u64;
    hal.kernel_mut().serve(
        ep,
        Box::new(move |_, _| {
            now += 100;
            timer_server::protocol::ok(&[now])
        }),
    );
    hal.set_timer(ep);
    assert!(CELL.install(hal).is_ok());
    assert!(CELL.install(common::model_hal()).is_err(), "installed once");

    // Regions.
    let base = HostPhysAddr::from_usize(0x6800_3000);
    assert!(Hal::alloc_memory_region_at(base, 0x1000));
    assert!(!Hal::alloc_memory_region_at(base, 0x1000), "overlap refused");
    Hal::dealloc_memory_region_at(base, 0x1000);
    assert!(Hal::alloc_memory_region_at(base, 0x1000), "the same range again");
    Hal::dealloc_memory_region_at(base, 0x1000);

    // Page-table frames through the PagingHandler: mapped, translatable both ways.
    let pa = Paging::alloc_frame().expect("a frame");
    let va = Paging::phys_to_virt(pa);
    assert_eq!(Hal::virt_to_phys(HostVirtAddr::from_usize(va.as_usize() + 0x10)).as_usize(), pa.as_usize() + 0x10);
    let pa2 = <GlobalPaging<TestHal> as PagingHandler>::alloc_frames(2, 0x2000).expect("two aligned frames");
    assert_eq!(pa2.as_usize() % 0x2000, 0);
    CELL.with(|h| {
        let t = h.kernel().translate(init_cap::VSPACE.cap(), VirtAddr(va.as_usize() as u64)).unwrap();
        assert_eq!(t.paddr, PhysAddr(pa.as_usize() as u64));
        h.check_against_kernel().unwrap();
    });
    Paging::dealloc_frame(pa);
    Paging::dealloc_frames(pa2, 2);
    CELL.with(|h| {
        assert!(h.try_phys_to_virt(PhysAddr(pa.as_usize() as u64)).is_err());
        assert_eq!(h.table().len(), 0);
    });

    // Time: one call each, monotonic.
    assert_eq!(Hal::current_time_nanos(), 100);
    assert_eq!(Hal::current_time_nanos(), 200);

    let hal = CELL.take().expect("installed");
    common::check_model(hal.kernel(), hal.pool());
    assert!(!CELL.is_installed());
}
