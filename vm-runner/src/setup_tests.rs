//! VM construction on the seL4 model: the objects it leaves, the stage-2 tables against the
//! book, the images where the configuration puts them, and teardown giving everything back.

extern crate std;

use alloc::vec;
use alloc::vec::Vec;
use std::path::Path;

use hal_sel4::HalInstance;
use sel4::{Kernel, Message, Op, init_cap};
use sel4_model::{Model, ThreadState};
use vm_config::{GuestPhysAddr, SystemConfig};

use super::*;
use crate::bundle::{Bundle, VmImages};
use hal_sel4::host::{HostHal, HostPaging, pages_held};

/// A HAL cell of its own per test (tests run in parallel).
macro_rules! instance {
    ($name:ident) => {
        struct $name;
        impl hal_sel4::HalInstance for $name {
            type Kernel = sel4_model::Model;
            fn cell() -> &'static hal_sel4::HalCell<sel4_model::Model> {
                static CELL: hal_sel4::HalCell<sel4_model::Model> = hal_sel4::HalCell::new();
                &CELL
            }
        }
    };
}
pub(crate) use instance;

/// The example system file, parsed.
pub(crate) fn example(file: &str) -> SystemConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(file);
    match vm_config::parse_system_file(&path) {
        Ok(s) => s,
        Err(_) => {
            let vm = vm_config::parse_vm_file(&path).unwrap_or_else(|e| panic!("{e}"));
            SystemConfig { vms: vec![vm] }
        }
    }
}

/// A kernel image the copy can be recognised by.
pub(crate) fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Records every copy and every zeroing with the physical address the window maps it to.
pub(crate) struct Recorder<I: HalInstance<Kernel = Model>> {
    pub copies: Vec<(u64, Vec<u8>)>,
    /// `(physical address, length)` of each zeroing, in order.
    pub zeroed: Vec<(u64, u64)>,
    _i: core::marker::PhantomData<I>,
}

impl<I: HalInstance<Kernel = Model>> Recorder<I> {
    pub(crate) fn new() -> Self {
        Recorder { copies: Vec::new(), zeroed: Vec::new(), _i: core::marker::PhantomData }
    }
}

/// The physical address of `[dst, dst + len)` in the root task's address space, which must
/// be mapped writable and contiguous.
pub(crate) fn window_paddr<I: HalInstance<Kernel = Model>>(dst: VirtAddr, len: u64) -> u64 {
    I::cell().with(|h| {
        let t = h.kernel().translate(init_cap::VSPACE.cap(), dst).expect("write to an unmapped address");
        assert_eq!(t.rights, sel4_model::VmRights::ReadWrite, "write to a read-only mapping");
        let last = VirtAddr(dst.get() + len.saturating_sub(1));
        let t2 = h.kernel().translate(init_cap::VSPACE.cap(), last).expect("write runs past the mapping");
        assert_eq!(t2.paddr.get() - t.paddr.get(), last.get() - dst.get());
        t.paddr.get()
    })
}

impl<I: HalInstance<Kernel = Model>> CopyIn for Recorder<I> {
    fn copy(&mut self, dst: VirtAddr, bytes: &[u8]) {
        self.copies.push((window_paddr::<I>(dst, bytes.len() as u64), bytes.to_vec()));
    }

    fn zero(&mut self, dst: VirtAddr, len: u64) {
        self.zeroed.push((window_paddr::<I>(dst, len), len));
    }
}

/// capvisor's HAL over `model`, installed in `I`'s cell with the default split of slots; the
/// options to build VMs with.
pub(crate) fn install<I: HalInstance<Kernel = Model>>(model: Model) -> SetupOptions {
    let list_registers = u8::try_from(model.platform().gic_list_regs).unwrap_or(u8::MAX);
    let slots = split_slots(model.bootinfo().empty(), DEFAULT_VMM_SLOTS);
    let cores = model.cores();
    hal_sel4::host::install_model::<I>(model, slots).unwrap();
    SetupOptions {
        platform: Platform { list_registers, gic_version: Platform::KERNEL_GIC, cores },
        asid_pool: init_cap::ASID_POOL.cap(),
        vmm_tcb: init_cap::TCB.cap(),
    }
}

pub(crate) fn build<I: HalInstance<Kernel = Model>>(
    sys: &SystemConfig,
    kernels: &[Vec<u8>],
) -> (Result<Vmm<HostPaging<I>>, SetupError>, Recorder<I>, SetupOptions) {
    let options = install::<I>(Model::qemu_arm_virt());
    let images: Vec<VmImages<'_>> =
        kernels.iter().map(|k| VmImages { kernel: k, dtb: None, ramdisk: None, flash: Vec::new() }).collect();
    let bundle = Bundle { system: sys.clone(), images, rtc_base_seconds: 0 };
    let mut rec = Recorder::<I>::new();
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut rec);
    (vmm, rec, options)
}

#[test]
fn setup_leaves_the_expected_objects() {
    instance!(I);
    let sys = example("test-guest.toml");
    let kernel = image(1, 0x1_2345);
    let (vmm, rec, _) = build::<I>(&sys, core::slice::from_ref(&kernel));
    let vmm = vmm.unwrap();
    assert_eq!(vmm.vms.len(), 1);
    let vm = &vmm.vms[0];
    assert_eq!(vm.vcpus.len(), 2);

    // Guest RAM: 16 MiB at 0x4000_0000, MAP_ALLOC, placed 2 MiB aligned: eight 2 MiB frames.
    let ram = vm.mappings.iter().find(|m| m.kind == MappingKind::Ram).unwrap();
    assert_eq!((ram.gpa.get(), ram.size_bytes), (0x4000_0000, 0x100_0000));
    assert_eq!(ram.hpa.get() % (2 << 20), 0);
    let large = vm.frames.iter().filter(|f| f.size == FrameSize::Large).count();
    let small = vm.frames.iter().filter(|f| f.size == FrameSize::Small).count();
    assert_eq!(
        (large, small),
        (9, 2),
        "RAM and the 2 MiB flash bank in 2 MiB frames, the 8 KiB GICV in two 4 KiB frames"
    );
    // The writable flash bank: its contents read-only in the stage 2, kept by the VMM.
    let flash = vm.mappings.iter().find(|m| m.kind == MappingKind::FlashRom).unwrap();
    assert_eq!((flash.gpa.get(), flash.size_bytes, flash.rights.write), (0x0400_0000, 0x20_0000, false));
    assert_eq!(vm.flash_rom.len(), 1);
    let gicc = vm.mappings.iter().find(|m| m.kind == MappingKind::GicCpuInterface).unwrap();
    assert_eq!((gicc.gpa.get(), gicc.hpa.get(), gicc.size_bytes), (0x0801_0000, 0x0804_0000, 0x2000));

    // Stage 2: the tables the frames need and no more: depth 1 at 0; depth 2 for the first
    // GiB (GICV) and the second (RAM); depth 3 only for the 2 MiB around the GICV.
    let mut tables: Vec<(u32, u64)> = vm.tables.iter().map(|t| (t.depth, t.gpa.get())).collect();
    tables.sort();
    assert_eq!(tables, vec![(1, 0), (2, 0), (2, 0x4000_0000), (3, 0x0800_0000)]);

    I::cell().with(|h| {
        let m = h.kernel_mut();
        for c in &vm.vcpus {
            // Configured, not started, priority from the file, bound to its VCPU.
            assert_eq!(m.thread_state(c.tcb), ThreadState::Inactive);
            assert_eq!(m.thread_priority(c.tcb), 100);
            assert!(m.vcpu_bound_tcb(c.vcpu).is_some());
            assert_eq!(m.vcpu_read_reg(c.vcpu, VCpuReg::Sctlr), Ok(SCTLR_EL1_RESET));
        }
        assert_eq!(m.vcpu_read_reg(vm.vcpus[1].vcpu, VCpuReg::VmpidrEl2), Ok(0x8000_0001));
        // A fault of each vCPU reaches the VMM's endpoint with that vCPU's badge.
        for c in &vm.vcpus {
            m.tcb_resume(c.tcb).unwrap();
            m.enqueue_fault(c.tcb, Message::new(sel4::fault::label::VCPU_FAULT, &[0])).unwrap();
            let r = m.recv(vmm.fault_ep);
            assert_eq!(crate::VcpuBadge::from_badge(r.badge), Some(c.badge));
        }
        m.check_invariants().unwrap_or_else(|e| panic!("{e:?}"));
    });

    // The kernel image landed at the host address behind its guest address; then the flash
    // bank's contents were written erased, all 2 MiB of them.
    assert_eq!(rec.copies[0], (ram.hpa.get(), kernel.clone()));
    let flash = vm.mappings.iter().find(|m| m.kind == MappingKind::FlashRom).unwrap();
    let fill = &rec.copies[1..];
    assert!(fill.iter().all(|(hpa, b)| *hpa >= flash.hpa.get() && b.iter().all(|&x| x == 0xff)));
    assert_eq!(fill.iter().map(|(_, b)| b.len() as u64).sum::<u64>(), 0x20_0000);
    assert_eq!(
        vm.images,
        vec![PlacedImage { what: "kernel", gpa: GuestPhysAddr(0x4000_0000), hpa: ram.hpa, len: 0x1_2345 }]
    );
}

#[test]
fn the_book_and_the_sel4_tables_agree_on_every_page() {
    instance!(I);
    let sys = example("two-vms.toml");
    let (vmm, _, _) = build::<I>(&sys, &[image(1, 0x8000), image(2, 0x8000)]);
    let vmm = vmm.unwrap();
    let mut checked = 0u64;
    for vm in &vmm.vms {
        let book = vm.book.as_ref().unwrap();
        I::cell().with(|h| {
            let m = h.kernel();
            for map in &vm.mappings {
                let (base, host) = (map.gpa.get(), map.hpa.get());
                let mut gpa = base;
                while gpa < base + map.size_bytes {
                    let b = book.translate(GuestPhysAddr(gpa)).unwrap_or_else(|| panic!("book lacks {gpa:#x}"));
                    let k = m.translate(vm.vspace, VirtAddr(gpa)).unwrap_or_else(|| panic!("seL4 lacks {gpa:#x}"));
                    assert_eq!(b.hpa, k.paddr, "{} at {gpa:#x}", vm.config.name);
                    assert_eq!(b.hpa.get(), host + (gpa - base));
                    assert_eq!(k.rights == sel4_model::VmRights::ReadWrite, map.rights.write);
                    checked += 1;
                    gpa += 4096;
                }
                // Just past the end: neither maps it.
                let past = base + map.size_bytes;
                if !vm.mappings.iter().any(|o| o.gpa.get() <= past && past < o.gpa.get() + o.size_bytes) {
                    assert_eq!(book.translate(GuestPhysAddr(past)), None);
                    assert_eq!(m.translate(vm.vspace, VirtAddr(past)), None);
                }
            }
            // Devices the VMM emulates are mapped by neither (accesses must fault).
            for dev in [0x0800_0000u64, 0x0900_0000] {
                assert_eq!(book.translate(GuestPhysAddr(dev)), None);
                assert_eq!(m.translate(vm.vspace, VirtAddr(dev)), None);
            }
        });
    }
    // RAM of both VMs, their GICV pages, their 2 MiB flash banks.
    assert_eq!(checked, (0x100_0000 + 0x80_0000) / 4096 + 2 * 2 + 2 * 0x20_0000 / 4096);
    // The two VMs share the GICV frames and nothing else.
    let a: Vec<u64> = vmm.vms[0].frames.iter().map(|f| f.hpa.get()).collect();
    let shared: Vec<u64> = vmm.vms[1].frames.iter().map(|f| f.hpa.get()).filter(|p| a.contains(p)).collect();
    assert_eq!(shared, vec![0x0804_0000, 0x0804_1000]);
}

#[test]
fn teardown_gives_back_every_slot_byte_and_page() {
    instance!(I);
    let sys = example("two-vms.toml");
    let options = install::<I>(Model::qemu_arm_virt());
    let kernels = [image(1, 0x1000), image(2, 0x1000)];
    let images: Vec<VmImages<'_>> =
        kernels.iter().map(|k| VmImages { kernel: k, dtb: None, ramdisk: None, flash: Vec::new() }).collect();
    let bundle = Bundle { system: sys, images, rtc_base_seconds: 0 };
    let state = || I::cell().with(|h| (h.kernel().free_slots(), h.pool().stats(), h.kernel().live_objects()));
    let mut last = None;
    for round in 0..3 {
        let mut rec = Recorder::<I>::new();
        let mut vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut rec).unwrap();
        assert!(pages_held::<I>() > 0);
        vmm.teardown::<HostHal<I>>().unwrap();
        assert_eq!(pages_held::<I>(), 0, "round {round}: book pages");
        // What stays is the HAL's mapping window's own tables, kept for reuse.
        let (tables, allocations) = I::cell().with(|h| (h.window().tables(), h.pool().stats().allocations));
        assert_eq!(allocations, tables, "round {round}: only window tables remain");
        let now = state();
        if let Some(prev) = last {
            assert_eq!(now, prev, "round {round} left more behind than the round before");
        }
        last = Some(now);
        I::cell().with(|h| h.check_against_kernel()).unwrap();
    }
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    instance!(I);
    let options = install::<I>(Model::qemu_arm_virt());
    let state = || I::cell().with(|h| (h.kernel().free_slots(), h.pool().stats()));
    // Warm the HAL's mapping window (its tables are kept for reuse) with one good build.
    let good = image(1, 0x1000);
    let bundle = Bundle {
        system: example("test-guest.toml"),
        images: vec![VmImages { kernel: &good, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new())
        .unwrap()
        .teardown::<HostHal<I>>()
        .unwrap();
    let before = state();

    // The second VM wants more RAM than QEMU virt has: the first is built, then undone.
    let mut sys = example("two-vms.toml");
    sys.vms[1].memory[0].range.size_bytes = 8 << 30;
    let kernels = [image(1, 0x1000), image(2, 0x1000)];
    let images: Vec<VmImages<'_>> =
        kernels.iter().map(|k| VmImages { kernel: k, dtb: None, ramdisk: None, flash: Vec::new() }).collect();
    let bundle = Bundle { system: sys, images, rtc_base_seconds: 0 };
    let err = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).err().unwrap();
    assert_eq!(err, SetupError::NoMemory { vm: 1, size: 8 << 30 });
    assert_eq!(state(), before);
    assert_eq!(pages_held::<I>(), 0);

    // An image past the end of RAM is refused by name, after the memory was made.
    let big = image(3, 0x100_0001);
    let bundle = Bundle {
        system: example("test-guest.toml"),
        images: vec![VmImages { kernel: &big, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let err = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).err().unwrap();
    assert_eq!(err, SetupError::Image { vm: 0, what: "kernel", load: 0x4000_0000, len: 0x100_0001 });
    assert_eq!(state(), before);
    assert_eq!(pages_held::<I>(), 0);
}

#[test]
fn setup_costs_are_what_the_plan_says() {
    instance!(I);
    let sys = example("test-guest.toml");
    let options = install::<I>(Model::qemu_arm_virt());
    I::cell().with(|h| h.kernel_mut().reset_counters());
    let kernel = image(1, 0x1000);
    let bundle = Bundle {
        system: sys,
        images: vec![VmImages { kernel: &kernel, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let vm = &vmm.vms[0];
    let c = I::cell().with(|h| h.kernel().counters().clone());
    // Per frame one CNode_Copy and one Page_Map into the guest; per table one map; per vCPU
    // a mint, a configure, a priority, a bind and two register writes.
    let frames = vm.frames.len() as u64;
    assert_eq!(c.get(Op::CNodeMint), 2);
    assert_eq!(c.get(Op::TcbConfigure), 2);
    assert_eq!(c.get(Op::TcbSetPriority), 2);
    assert_eq!(c.get(Op::VCpuSetTcb), 2);
    assert_eq!(c.get(Op::VCpuWriteReg), 4);
    assert_eq!(c.get(Op::AsidPoolAssign), 1);
    assert_eq!(c.get(Op::TcbBindNotification), 1);
    assert_eq!(c.get(Op::CNodeCopy), frames);
    // Every frame copy is mapped in the guest's VSpace at its guest address.
    I::cell().with(|h| {
        for f in &vm.frames {
            match h.kernel().cap(f.cap.slot()) {
                sel4_model::ModelCap::Frame { mapped: Some(at), .. } => assert_eq!(at.vaddr.get(), f.gpa.get()),
                other => panic!("frame copy {:?}: {other:?}", f.cap),
            }
        }
    });
    // Guest tables: one PageTable_Map each (the window's own tables add to the count).
    assert!(c.get(Op::PageTableMap) >= vm.tables.len() as u64);
}

#[test]
fn vcpus_are_pinned_to_their_cores_on_a_multicore_kernel() {
    instance!(I);
    // test-guest.toml: two vCPUs, phys_cpu_ids = [0, 1].
    let sys = example("test-guest.toml");
    let mut model = Model::qemu_arm_virt();
    model.set_cores(2);
    let options = install::<I>(model);
    assert_eq!(options.platform.cores, 2);
    I::cell().with(|h| h.kernel_mut().reset_counters());
    let kernel = image(1, 0x1000);
    let bundle = Bundle {
        system: sys.clone(),
        images: vec![VmImages { kernel: &kernel, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let vm = &vmm.vms[0];
    let c = I::cell().with(|h| h.kernel().counters().clone());
    assert_eq!(c.get(Op::TcbSetAffinity), 2);
    assert_eq!(vm.built_with.get(Op::TcbSetAffinity), 2);
    I::cell().with(|h| {
        let cores: Vec<u64> = vm.vcpus.iter().map(|v| h.kernel().thread_affinity(v.tcb)).collect();
        assert_eq!(cores, [0, 1]);
    });

    // On one core nothing is pinned, and the same file costs no SetAffinity.
    instance!(J);
    let (vmm, _, _) = build::<J>(&sys, core::slice::from_ref(&kernel));
    assert_eq!(vmm.unwrap().vms[0].built_with.get(Op::TcbSetAffinity), 0);

    // A vCPU on a core the kernel does not run on: refused before any object is made.
    instance!(K);
    let mut three = sys.clone();
    three.vms[0].phys_cpu_ids = vec![0, 2];
    let mut model = Model::qemu_arm_virt();
    model.set_cores(2);
    let options = install::<K>(model);
    let bundle = Bundle {
        system: three,
        images: vec![VmImages { kernel: &kernel, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let Err(err) = Vmm::<HostPaging<K>>::build::<HostHal<K>>(&bundle, &options, &mut Recorder::<K>::new()) else {
        panic!("a vCPU on core 2 of 2 was built");
    };
    assert_eq!(err, SetupError::NoSuchCore { vm: 0, vcpu: 1, core: 2, cores: 2 });
    assert!(alloc::format!("{err}").contains("base.phys_cpu_ids[1]"), "{err}");
}

#[test]
fn tables_needed_by_frame_size() {
    use FrameSize::*;
    // A 1 GiB frame needs only the depth-1 table; a 2 MiB frame depths 1-2; 4 KiB all three.
    assert_eq!(tables_needed([(0x4000_0000, Huge)]), vec![(1, 0)]);
    assert_eq!(tables_needed([(0x4020_0000, Large)]), vec![(1, 0), (2, 0x4000_0000)]);
    assert_eq!(tables_needed([(0x4020_1000, Small)]), vec![(1, 0), (2, 0x4000_0000), (3, 0x4020_0000)]);
    // Shared parents are counted once; parents come first.
    let t = tables_needed([(0x4020_1000, Small), (0x4020_2000, Small), (0x80_0000_0000, Small)]);
    assert_eq!(
        t,
        vec![(1, 0), (1, 0x80_0000_0000), (2, 0x4000_0000), (2, 0x80_0000_0000), (3, 0x4020_0000), (3, 0x80_0000_0000)]
    );
    assert_eq!(alloc_alignment(0x4000_0000, 0x100_0000), 2 << 20);
    assert_eq!(alloc_alignment(0x4000_0000, 1 << 30), 1 << 30);
    assert_eq!(alloc_alignment(0x4000_1000, 1 << 30), 4096);
    assert_eq!(fault_cptr(1) >> GUEST_CNODE_SLOT_BITS, GUEST_CSPACE_GUARD);
    assert_eq!(guest_cspace_data() & 0x3f, 61);
}

#[test]
fn guest_ram_left_to_capvisor_goes_where_the_kernel_clears_least() {
    instance!(I);
    // configs/linux.toml's 256 MiB of RAM, but anywhere (MAP_ALLOC) and mapped before the
    // VM starts, on the untyped layout capvisor's own loader gives the root task.
    let mut sys = example("linux.toml");
    sys.vms[0].memory[0].map = vm_config::MapType::Alloc;
    sys.vms[0].capvisor.populate_ram = vm_config::PopulateRam::Eager;
    let size = sys.vms[0].memory[0].range.size_bytes;
    let options = install::<I>(Model::qemu_arm_virt_capvisor());
    let (highest, highest_cost) = I::cell().with(|h| {
        let at = h.pool().find_free(size, 2 << 20, None).unwrap();
        (at, h.pool().clearing_cost(at, size, hal_sel4::KindRequest::Ram).unwrap())
    });
    I::cell().with(|h| h.kernel_mut().reset_counters());
    let kernel = image(3, 0x1000);
    let bundle = Bundle {
        system: sys,
        images: vec![VmImages { kernel: &kernel, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let ram = vmm.vms[0].mappings[0];
    assert_eq!(ram.kind, MappingKind::Ram);
    // The RAM is one boot untyped, exactly: the kernel clears nothing it does not give.
    let untyped = Model::qemu_arm_virt_capvisor().untyped_slots();
    assert!(
        untyped.iter().any(|(_, d)| d.paddr.get() == ram.hpa.get() && 1u64 << d.size_bits == size && !d.is_device),
        "RAM at {:#x} is not a whole {size:#x}-byte untyped",
        ram.hpa.get()
    );
    // Building the whole VM (RAM, tables, vCPUs, the VMM's own objects) cleared less than
    // the highest free range's RAM alone would have.
    let zeroed = I::cell().with(|h| h.kernel().counters().bytes_zeroed);
    assert!(zeroed >= size, "the RAM itself is cleared: {zeroed:#x}");
    assert!(zeroed < highest_cost, "cleared {zeroed:#x}; RAM at {highest:#x} alone clears {highest_cost:#x}");
}

#[test]
fn fixed_addresses_of_every_vm_are_taken_before_ram_placed_anywhere() {
    instance!(I);
    // VM 0 leaves its 256 MiB to capvisor; VM 1 wants the very untyped that placement would
    // pick for VM 0 (the one that costs least to clear), identity mapped.
    let mut sys = example("linux.toml");
    let size = sys.vms[0].memory[0].range.size_bytes;
    let options = install::<I>(Model::qemu_arm_virt_capvisor());
    let cheapest = I::cell().with(|h| h.pool().find_least_clearing(size, 2 << 20, None)).unwrap().get();
    let mut second = sys.vms[0].clone();
    second.id = 1;
    second.name = "second".into();
    second.memory[0].range.base = GuestPhysAddr(cheapest);
    second.memory[0].map = vm_config::MapType::Identical;
    second.kernel.load_addr = GuestPhysAddr(cheapest);
    second.entry_point = GuestPhysAddr(cheapest);
    second.dtb = None;
    second.ramdisk = None;
    sys.vms[0].dtb = None;
    sys.vms[0].ramdisk = None;
    sys.vms.push(second);
    let (k0, k1) = (image(4, 0x1000), image(5, 0x1000));
    let images = vec![
        VmImages { kernel: &k0, dtb: None, ramdisk: None, flash: Vec::new() },
        VmImages { kernel: &k1, dtb: None, ramdisk: None, flash: Vec::new() },
    ];
    let bundle = Bundle { system: sys, images, rtc_base_seconds: 0 };
    let mut rec = Recorder::<I>::new();
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut rec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vmm.vms[1].mappings[0].hpa.get(), cheapest, "VM 1 got the range it names");
    let ram0 = vmm.vms[0].mappings[0].hpa.get();
    assert!(ram0 + size <= cheapest || ram0 >= cheapest + size, "VM 0's RAM at {ram0:#x} overlaps VM 1's");
    // Each kernel landed in its own VM's RAM.
    assert_eq!(rec.copies.iter().map(|c| c.0).collect::<Vec<_>>(), [ram0, cheapest]);
}

#[test]
fn images_are_cleaned_to_memory_frame_by_frame_and_the_kernel_unified() {
    instance!(I);
    // linux.toml's 256 MiB in 2 MiB frames, mapped before the VM starts (no zeroing by the
    // VMM); a 5 MiB kernel at the base of RAM spans three frames, a 3000-byte device tree
    // sits inside one.
    let mut sys = example("linux.toml");
    sys.vms[0].capvisor.populate_ram = vm_config::PopulateRam::Eager;
    let options = install::<I>(Model::qemu_arm_virt_capvisor());
    I::cell().with(|h| h.kernel_mut().reset_counters());
    let (kernel, dtb) = (image(6, 5 << 20), image(7, 3000));
    let images = vec![VmImages { kernel: &kernel, dtb: Some(&dtb), ramdisk: None, flash: Vec::new() }];
    let bundle = Bundle { system: sys, images, rtc_base_seconds: 0 };
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let ram = vmm.vms[0].mappings[0];
    let in_ram = |f: &&MappedFrame| (ram.gpa.get()..ram.gpa.get() + ram.size_bytes).contains(&f.gpa.get());
    assert!(vmm.vms[0].frames.iter().filter(in_ram).all(|f| f.size == FrameSize::Large), "2 MiB frames");
    let flushes = I::cell().with(|h| h.kernel().counters().get(Op::PageFlush));
    // Kernel: clean+invalidate and unify in each of its 3 frames; DTB: clean+invalidate once.
    assert_eq!(flushes, 3 * 2 + 1);
}

#[test]
fn linux_toml_ram_is_cleared_by_nobody_until_the_guest_touches_it() {
    instance!(I);
    // configs/linux.toml as written: 256 MiB reserved at 0x4000_0000 (device untyped, which
    // the kernel never zeroes), populated on first touch.
    let sys = example("linux.toml");
    let size = sys.vms[0].memory[0].range.size_bytes;
    let options = install::<I>(Model::qemu_arm_virt_capvisor());
    I::cell().with(|h| h.kernel_mut().reset_counters());
    // A kernel image of 5 MiB + 4 KiB at 0x4000_0000: three 2 MiB frames hold it.
    let kernel = image(4, (5 << 20) + 0x1000);
    let bundle = Bundle {
        system: sys,
        images: vec![VmImages { kernel: &kernel, dtb: None, ramdisk: None, flash: Vec::new() }],
        rtc_base_seconds: 0,
    };
    let mut rec = Recorder::<I>::new();
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut rec).unwrap();
    let vm = &vmm.vms[0];
    // The kernel's 3 frames: clean+invalidate and unify over the image, then each zeroed
    // frame cleaned whole (the image's cleaning leaves its zeroed bytes out).
    assert_eq!(I::cell().with(|h| h.kernel().counters().get(Op::PageFlush)), 3 * 2 + 3);
    let zeroed_by_kernel = I::cell().with(|h| h.kernel().counters().bytes_zeroed);
    assert!(zeroed_by_kernel < 16 << 20, "the kernel cleared {zeroed_by_kernel:#x} bytes, not the RAM");
    let ram_frames: Vec<u64> =
        vm.frames.iter().filter(|f| (0x4000_0000..0x5000_0000).contains(&f.gpa.get())).map(|f| f.gpa.get()).collect();
    assert_eq!(ram_frames, [0x4000_0000, 0x4020_0000, 0x4040_0000], "only the image's frames are mapped");
    assert_eq!(vm.untouched.len() as u64, size / (2 << 20) - 3);
    assert!(vm.untouched.iter().all(|u| u.zero_at.is_some() && u.gpa.get() >= 0x4060_0000));
    // The VMM zeroed exactly the mapped RAM frames, at their host addresses, before the copy.
    let mut zeroed = rec.zeroed.clone();
    zeroed.sort_unstable();
    assert_eq!(zeroed, [(0x4000_0000, 2 << 20), (0x4020_0000, 2 << 20), (0x4040_0000, 2 << 20)]);
    assert_eq!(rec.copies.len(), 1);
    assert_eq!((rec.copies[0].0, rec.copies[0].1.len()), (0x4000_0000, kernel.len()));
    // The VM's model knows the same frames.
    let gpas: Vec<u64> = vm.state.untouched().iter().map(|f| f.gpa).collect();
    let mut want: Vec<u64> = vm.untouched.iter().map(|u| u.gpa.get()).collect();
    want.sort_unstable();
    assert_eq!(gpas, want);
}
