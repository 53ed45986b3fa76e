//! The HAL seam on the seL4 model: VMs built through `AxVMHal` and `VmObjects` only, by
//! capvisor's HAL and by a second, simpler one; the plan against what the executor made; a
//! HAL call from inside an exit handler; VMs rebooted many times with nothing leaked.

extern crate std;

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use axvm_hal::{AxVMHal, HostPhysAddr, HostVirtAddr};
use hal_sel4::host::{HostHal, HostPaging, pages_held};
use hal_sel4::{HalConfig, HalInstance, Sel4Hal};
use sel4::{Kernel, Lend, Lent, ObjectBlueprint, PhysAddr, Slot, VirtAddr};
use sel4_model::{Model, ThreadState};
use vm_config::{OnReset, SystemConfig};
use vm_objects::{MemoryKind, Objects, Refused, RegionFrame, Usage, VmObjects};

use crate::StopReason;
use crate::bundle::{Bundle, VmImages};
use crate::devices::psci::fid;
use crate::local_paging::LocalPaging;
use crate::run::{Host, Rebuild, Runner};
use crate::setup::tests::{Recorder, example, image, install, instance};
use crate::setup::{CopyIn, DEFAULT_VMM_SLOTS, SetupOptions, Vmm, split_slots};
use crate::vm::Platform;

/// A guest `HVC #0` at `pc` with `x0..x3`, as the kernel reports it.
fn hvc(pc: u64, x: [u64; 4]) -> sel4::Message {
    sel4::Message::new(sel4::fault::label::UNKNOWN_SYSCALL, &[x[0], x[1], x[2], x[3], 0, 0, 0, 0, pc, 0, 0, 0x3c5, 0])
}

/// A host that records, and whose console hook calls the HAL `H` (as a host that stamps its
/// lines with the HAL's clock would).
struct CallingHost<H: VmObjects> {
    log: Vec<String>,
    usage_seen: Vec<Usage>,
    reboots: Vec<(usize, u32)>,
    _h: core::marker::PhantomData<H>,
}

impl<H: VmObjects> CallingHost<H> {
    fn new() -> Self {
        CallingHost { log: Vec::new(), usage_seen: Vec::new(), reboots: Vec::new(), _h: core::marker::PhantomData }
    }
}

impl<H: VmObjects> Host for CallingHost<H> {
    fn console_out(&mut self, _bytes: &[u8]) {
        // A HAL call from inside the handling of the guest's UART write (its line reaches
        // the terminal through here).
        self.usage_seen.push(H::usage());
    }
    fn vm_rebooted(&mut self, vm: usize, count: u32) {
        self.reboots.push((vm, count));
    }
    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.log.push(alloc::format!("{line}"));
    }
}

/// The bundle of `sys` with a recognisable kernel per VM.
fn bundle_of(sys: &SystemConfig, kernels: &[Vec<u8>]) -> Bundle<'static> {
    let kernels: Vec<&'static [u8]> = kernels.iter().map(|k| &*Vec::leak(k.clone())).collect();
    let images = kernels.iter().map(|k| VmImages { kernel: k, dtb: None, ramdisk: None, flash: Vec::new() }).collect();
    Bundle { system: sys.clone(), images, rtc_base_seconds: 0 }
}

/// A store of a byte to the test guest's UART data register at `pc`.
fn uart_write(pc: u64) -> sel4::Message {
    use crate::esr::{Esr, ec};
    let iss = (1 << 24) | (2 << 22) | (u32::from(true) << 6) | 0x07;
    sel4::Message::new(sel4::fault::label::VM_FAULT, &[pc, 0x0900_0000, 0, Esr::new(ec::DABT_LOWER, true, iss).0])
}

/// Delivers `msg` as a fault of vCPU 0 of VM `vm`, through the loop's own kernel handle
/// (`Lent`): no HAL lock is held while the loop handles it.
fn exit_through_lent<H: VmObjects<Kernel = Model>, Ho: Host>(
    runner: &mut Runner,
    vmm: &mut Vmm<H::PagingHandler>,
    host: &mut Ho,
    vm: usize,
    msg: sel4::Message,
) {
    let tcb = vmm.vms[vm].vcpus[0].tcb;
    let ep = vmm.fault_ep;
    let closing = H::with_kernel(|m| match runner.next_wait() {
        crate::run::Wait::ReplyRecv(r) => {
            m.reply(&r);
            sel4::Op::ReplyRecv
        }
        crate::run::Wait::Recv => sel4::Op::Recv,
    });
    let r = H::with_kernel(|m| {
        m.enqueue_fault(tcb, msg).unwrap();
        m.recv(ep)
    });
    runner.deliver(&mut Lent::<H>::new(), vmm, host, &r, closing);
}

/// The test guest built through HAL instance `I`, with a loop and a host that calls the HAL.
fn test_guest<I: HalInstance<Kernel = Model>>() -> (Vmm<HostPaging<I>>, Runner, CallingHost<HostHal<I>>) {
    let sys = example("test-guest.toml");
    let bundle = bundle_of(&sys, &[image(1, 0x1000)]);
    let options = install::<I>(Model::qemu_arm_virt());
    let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    (vmm, Runner::new(&["test-guest"]), CallingHost::new())
}

#[test]
fn a_hal_call_from_inside_an_exit_handler_works_while_the_loop_runs() {
    instance!(I);
    type H = HostHal<I>;
    let (mut vmm, mut runner, mut host) = test_guest::<I>();
    runner.start(&mut Lent::<H>::new(), &mut vmm, &mut host);
    // "A\n": the newline ends the line, which reaches the host while the exit is handled.
    H::with_kernel(|m| {
        let tcb = vmm.vms[0].vcpus[0].tcb;
        let mut r = m.thread_registers(tcb);
        r.x[0] = u64::from(b'\n');
        m.tcb_write_registers(tcb, false, &r).unwrap();
    });
    exit_through_lent::<H, _>(&mut runner, &mut vmm, &mut host, 0, uart_write(0x4000_0100));
    assert_eq!(host.usage_seen.len(), 1, "the host's hook ran (and called the HAL) inside the exit");
    assert_eq!(host.usage_seen[0], H::usage(), "and read the HAL's real state");
    assert!(runner.ended[0].is_none(), "the VM runs on");
}

#[test]
#[should_panic(expected = "the HAL was entered again from inside a HAL call")]
fn the_same_hal_call_under_a_held_hal_lock_is_named_not_a_hang() {
    // What the loop did before it borrowed the kernel per invocation: run inside the HAL's
    // lock. The host's HAL call then re-enters the cell, which says so instead of spinning.
    instance!(I);
    let (mut vmm, mut runner, mut host) = test_guest::<I>();
    let (tcb, ep) = (vmm.vms[0].vcpus[0].tcb, vmm.fault_ep);
    I::cell().with(|h| {
        let m = h.kernel_mut();
        runner.start(m, &mut vmm, &mut host);
        let mut r = m.thread_registers(tcb);
        r.x[0] = u64::from(b'\n');
        m.tcb_write_registers(tcb, false, &r).unwrap();
        m.enqueue_fault(tcb, uart_write(0x4000_0100)).unwrap();
        let got = m.recv(ep);
        runner.deliver(m, &mut vmm, &mut host, &got, sel4::Op::Recv);
    });
}

/// Free slots, pool usage, live kernel objects and host pages of HAL instance `I`.
fn resources<I: HalInstance<Kernel = Model>>() -> (u64, Usage, usize, usize) {
    let (slots, objects) = I::cell().with(|h| (h.kernel().free_slots(), h.kernel().live_objects()));
    (slots, HostHal::<I>::usage(), objects, pages_held::<I>())
}

/// Resets VM `vm` (a guest `SYSTEM_RESET`) and lets the loop rebuild it.
fn reset<H: VmObjects<Kernel = Model>, Ho: Host>(
    runner: &mut Runner,
    vmm: &mut Vmm<H::PagingHandler>,
    host: &mut Ho,
    rebuild: &mut Rebuild<'_, '_>,
    vm: usize,
) {
    exit_through_lent::<H, _>(runner, vmm, host, vm, hvc(0x4000_0200, [fid::SYSTEM_RESET.into(), 0, 0, 0]));
    assert_eq!(runner.reboots_pending(), [vm], "the reset asks for a rebuild, it does not end the VM");
    runner.reboot_pending::<H, _>(vmm, host, rebuild);
}

#[test]
fn a_vm_reboots_twenty_times_with_every_slot_byte_and_object_back_and_its_neighbour_untouched() {
    instance!(I);
    type H = HostHal<I>;
    let mut sys = example("two-vms.toml");
    sys.vms[0].capvisor.reboot_limit = Some(20);
    let kernels = [image(1, 0x2345), image(2, 0x1000)];
    let bundle = bundle_of(&sys, &kernels);
    let options = install::<I>(Model::qemu_arm_virt());
    let mut rec = Recorder::<I>::new();
    let mut vmm = Vmm::<HostPaging<I>>::build::<H>(&bundle, &options, &mut rec).unwrap();
    let names: Vec<&str> = vmm.vms.iter().map(|v| v.state.name()).collect();
    let mut runner = Runner::new(&names);
    let mut host = CallingHost::<H>::new();
    runner.start(&mut Lent::<H>::new(), &mut vmm, &mut host);
    let at_start = resources::<I>();
    let neighbour = (vmm.vms[1].vspace, vmm.vms[1].vcpus.clone(), vmm.vms[1].mappings.clone());
    let first_plan = vmm.vms[0].plan.clone().unwrap();
    let mut copies = Recorder::<I>::new();
    for n in 1..=20u32 {
        let mut rebuild = Rebuild { bundle: &bundle, copy: &mut copies };
        reset::<H, _>(&mut runner, &mut vmm, &mut host, &mut rebuild, 0);
        assert_eq!(host.reboots.last(), Some(&(0, n)));
        assert!(runner.ended[0].is_none(), "reboot {n}: the VM runs again");
        assert_eq!(resources::<I>(), at_start, "reboot {n}: slots, untyped, objects, pages as after the build");
        let vm = &vmm.vms[0];
        assert_eq!(vm.reboots, n);
        assert_eq!(vm.plan.as_ref().map(|p| p.invocations()), Some(first_plan.invocations()));
        let state = H::with_kernel(|m| m.thread_state(vm.vcpus[0].tcb));
        assert_eq!(state, ThreadState::Runnable, "reboot {n}: vCPU 0 started again");
    }
    // The kernel image went in again each time, where it went the first time.
    let kernel_copies = copies.copies.iter().filter(|(_, b)| *b == kernels[0]).count();
    assert_eq!(kernel_copies, 20);
    // The other VM kept its objects and mappings throughout.
    assert_eq!((vmm.vms[1].vspace, vmm.vms[1].vcpus.clone(), vmm.vms[1].mappings.clone()), neighbour);
    assert!(runner.ended[1].is_none());
    // The 21st reset: the limit stops the VM instead.
    let mut rebuild = Rebuild { bundle: &bundle, copy: &mut copies };
    reset::<H, _>(&mut runner, &mut vmm, &mut host, &mut rebuild, 0);
    assert_eq!(runner.ended[0].map(|e| (e.reason, e.status)), Some((StopReason::RebootLimit, 0)));
    assert_eq!(host.reboots.len(), 20);
    vmm.teardown::<H>().unwrap();
}

#[test]
fn with_on_reset_stop_a_reset_ends_the_vm_as_before() {
    instance!(I);
    type H = HostHal<I>;
    let mut sys = example("test-guest.toml");
    sys.vms[0].capvisor.on_reset = OnReset::Stop;
    let bundle = bundle_of(&sys, &[image(1, 0x1000)]);
    let options = install::<I>(Model::qemu_arm_virt());
    let mut vmm = Vmm::<HostPaging<I>>::build::<H>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let mut runner = Runner::new(&["test-guest"]);
    let mut host = CallingHost::<H>::new();
    runner.start(&mut Lent::<H>::new(), &mut vmm, &mut host);
    exit_through_lent::<H, _>(
        &mut runner,
        &mut vmm,
        &mut host,
        0,
        hvc(0x4000_0200, [fid::SYSTEM_RESET.into(), 0, 0, 0]),
    );
    assert_eq!(runner.reboots_pending(), [0usize; 0]);
    assert_eq!(runner.ended[0].map(|e| e.reason), Some(StopReason::Reset));
}

#[test]
fn every_example_vm_is_built_with_exactly_the_invocations_its_plan_states() {
    instance!(I);
    type H = HostHal<I>;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut checked = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let sys = example(name);
        let kernels: Vec<Vec<u8>> = (0..sys.vms.len()).map(|i| image(i as u8, 0x3000)).collect();
        let bundle = bundle_of(&sys, &kernels);
        let _ = I::cell().take();
        let mut options = install::<I>(Model::qemu_arm_virt_capvisor());
        // The model's machine with the GIC the example is for (test-guest-gicv3.toml's GICv3).
        options.platform.gic_version = sys.vms[0].gic_version();
        let mut vmm = Vmm::<HostPaging<I>>::build::<H>(&bundle, &options, &mut Recorder::<I>::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for vm in &vmm.vms {
            let plan = vm.plan.as_ref().unwrap();
            assert!(plan.total_invocations() > 0);
            for (op, n) in plan.invocations() {
                assert_eq!(vm.built_with.get(op), n, "{name} VM {}: {op:?}", vm.index);
            }
            assert_eq!(vm.built_with.total(), plan.total_invocations(), "{name} VM {}: nothing unplanned", vm.index);
            assert_eq!(vm.frames.len(), plan.mapped_now(), "{name}");
            assert_eq!(vm.untouched.len(), plan.frames.len() - plan.mapped_now(), "{name}");
            assert_eq!(vm.tables.len(), plan.tables.len(), "{name}");
            checked += 1;
        }
        vmm.teardown::<H>().unwrap();
    }
    assert!(checked >= 12, "only {checked} VMs checked");
}

// ---- a second HAL ----

std::thread_local! {
    /// The simple HAL's instance: one per test thread, in a `RefCell` (a nested call is a
    /// borrow error, at once).
    static SIMPLE: RefCell<Option<Sel4Hal<Model>>> = const { RefCell::new(None) };
}

/// A second HAL for the seam: its own instance per thread with no lock, and page-table frames
/// for the stage-2 book from host memory with made-up addresses ([`LocalPaging`]) instead of
/// the HAL's memory. It shares hal-sel4's `Sel4Hal` engine (the untyped pool) but none of its
/// trait implementations.
struct SimpleHal;

impl SimpleHal {
    fn with<R>(f: impl FnOnce(&mut Sel4Hal<Model>) -> R) -> R {
        SIMPLE.with(|c| f(c.borrow_mut().as_mut().expect("SimpleHal installed")))
    }

    fn install(model: Model) -> SetupOptions {
        let list_registers = u8::try_from(model.platform().gic_list_regs).unwrap_or(u8::MAX);
        let cores = model.cores();
        let (pool, loose) = split_slots(model.bootinfo().empty(), DEFAULT_VMM_SLOTS);
        let untyped: Vec<_> = model.untyped_slots().into_iter().map(|(s, d)| (s.cap(), d)).collect();
        let hal = Sel4Hal::new(model, untyped, HalConfig::with_loose_slots(pool, loose)).unwrap();
        SIMPLE.with(|c| *c.borrow_mut() = Some(hal));
        SetupOptions {
            platform: Platform { list_registers, gic_version: Platform::KERNEL_GIC, cores },
            asid_pool: sel4::init_cap::ASID_POOL.cap(),
            vmm_tcb: sel4::init_cap::TCB.cap(),
        }
    }
}

impl AxVMHal for SimpleHal {
    type PagingHandler = LocalPaging;
    fn alloc_memory_region_at(base: HostPhysAddr, size: usize) -> bool {
        Self::with(|h| h.alloc_memory_region_at(base, size))
    }
    fn dealloc_memory_region_at(base: HostPhysAddr, size: usize) {
        Self::with(|h| h.dealloc_memory_region_at(base, size))
    }
    fn virt_to_phys(vaddr: HostVirtAddr) -> HostPhysAddr {
        Self::with(|h| h.virt_to_phys(vaddr))
    }
    fn current_time_nanos() -> u64 {
        0
    }
}

impl Lend for SimpleHal {
    type Kernel = Model;
    fn with_kernel<R>(f: impl FnOnce(&mut Model) -> R) -> R {
        Self::with(|h| f(h.kernel_mut()))
    }
}

impl VmObjects for SimpleHal {
    fn alloc_objects(blueprint: ObjectBlueprint, count: u64) -> Result<Objects, Refused> {
        Self::with(|h| h.alloc_objects(blueprint, count)).map_err(Refused::of)
    }
    fn free_objects(objects: Objects) -> Result<(), Refused> {
        Self::with(|h| h.free_objects(objects)).map_err(Refused::of)
    }
    fn alloc_slots(count: u64) -> Result<Slot, Refused> {
        Self::with(|h| h.alloc_slots(count)).map_err(Refused::of)
    }
    fn free_slots(first: Slot, count: u64) -> Result<(), Refused> {
        Self::with(|h| h.free_slots(first, count)).map_err(Refused::of)
    }
    fn place_ram(size_bytes: u64, align_bytes: u64) -> Option<PhysAddr> {
        Self::with(|h| h.place_ram(size_bytes, align_bytes))
    }
    fn region_kind(base: PhysAddr) -> Option<MemoryKind> {
        Self::with(|h| h.region_kind(base)).map(|k| match k {
            hal_sel4::MemoryKind::Ram => MemoryKind::Ram,
            hal_sel4::MemoryKind::Device => MemoryKind::Device,
        })
    }
    fn region_frames(base: PhysAddr) -> Vec<RegionFrame> {
        Self::with(|h| {
            h.frames(base).map(|(f, _)| RegionFrame { slot: f.slot, paddr: f.paddr, size: f.size }).collect()
        })
    }
    fn map_region(base: PhysAddr) -> Result<VirtAddr, Refused> {
        Self::with(|h| h.map_region(base)).map_err(Refused::of)
    }
    fn unmap_region(base: PhysAddr) -> Result<(), Refused> {
        Self::with(|h| h.unmap_region(base)).map_err(Refused::of)
    }
    fn irq_handler(irq: u64, edge_triggered: bool) -> Result<sel4::Cap<sel4::cap_type::IrqHandler>, Refused> {
        Self::with(|h| h.irq_handler(irq, edge_triggered)).map_err(Refused::of)
    }
    fn usage() -> Usage {
        Self::with(|h| h.usage())
    }
}

/// Copies nowhere, keeping what was copied (the simple HAL's window has no host memory
/// behind it).
struct Count(Vec<Vec<u8>>);

impl CopyIn for Count {
    fn copy(&mut self, _dst: VirtAddr, bytes: &[u8]) {
        self.0.push(bytes.to_vec());
    }
    fn zero(&mut self, _dst: VirtAddr, _len: u64) {}
}

#[test]
fn a_second_simple_hal_builds_reboots_and_tears_down_the_same_vms() {
    let sys = example("two-vms.toml");
    let kernels = [image(1, 0x2345), image(2, 0x1000)];
    let bundle = bundle_of(&sys, &kernels);
    let options = SimpleHal::install(Model::qemu_arm_virt());
    let start = (SimpleHal::usage(), SimpleHal::with_kernel(|m| (m.free_slots(), m.live_objects())));
    let mut count = Count(Vec::new());
    let mut vmm = Vmm::<LocalPaging>::build::<SimpleHal>(&bundle, &options, &mut count).unwrap();
    for k in &kernels {
        assert_eq!(count.0.iter().filter(|c| *c == k).count(), 1, "each kernel copied in once");
    }
    // The same VMs as capvisor's HAL builds: the plan does not depend on the HAL.
    instance!(I);
    let options_i = install::<I>(Model::qemu_arm_virt());
    let reference = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options_i, &mut Recorder::<I>::new()).unwrap();
    for (a, b) in vmm.vms.iter().zip(&reference.vms) {
        let (pa, pb) = (a.plan.as_ref().unwrap(), b.plan.as_ref().unwrap());
        assert_eq!(pa.invocations(), pb.invocations(), "VM {}", a.index);
        assert_eq!(a.built_with, b.built_with, "VM {}", a.index);
        assert_eq!(a.mappings, b.mappings, "VM {}: same placement", a.index);
        // The guest's stage 2 on the model is what the book says, page by page.
        let book = a.book.as_ref().unwrap();
        for f in &a.frames {
            let t = SimpleHal::with_kernel(|m| m.translate(a.vspace, VirtAddr(f.gpa.get()))).unwrap();
            assert_eq!(t.paddr, f.hpa);
            assert_eq!(book.translate(f.gpa).map(|e| e.hpa), Some(f.hpa));
        }
    }
    let after_build = SimpleHal::usage();
    let mut rebuild = Rebuild { bundle: &bundle, copy: &mut count };
    vmm.reboot_vm::<SimpleHal>(1, &bundle.images[1], rebuild.copy).unwrap();
    let _ = &mut rebuild;
    assert_eq!(SimpleHal::usage(), after_build, "a rebuild gives back what it takes");
    vmm.teardown::<SimpleHal>().unwrap();
    // Everything went back but the page tables of the HAL's own mapping window, which it
    // keeps for reuse (as `capvisor plan` reports).
    let (stats, window_tables) = SimpleHal::with(|h| (h.pool().stats(), h.window().tables()));
    assert_eq!(stats.allocations, window_tables, "nothing but the window's tables is left");
    // Live objects: those tables and the untyped nodes the pool split to place them.
    let (objects_now, objects_at_start) = (SimpleHal::with_kernel(|m| m.live_objects()), start.1.1);
    assert_eq!(objects_now - objects_at_start, window_tables + stats.child_nodes);
}

#[test]
fn a_routed_interrupt_takes_two_slots_and_teardown_gives_them_back() {
    instance!(I);
    type H = HostHal<I>;
    let sys = example("test-guest.toml");
    let bundle = bundle_of(&sys, &[image(1, 0x1000)]);
    let options = install::<I>(Model::qemu_arm_virt());
    let loose_at_start = I::cell().with(|h| h.loose_free());
    let mut vmm = Vmm::<HostPaging<I>>::build::<H>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
    let before = H::usage();
    let r = vmm.route_irq::<H>(33, false, 1 << 5).unwrap();
    assert_eq!((r.irq, r.badge), (33, 1 << 5));
    assert_eq!(H::usage().slots_free, before.slots_free - 2, "the handler and the badged signal");
    assert_eq!(vmm.irqs, [r]);
    // A second handler for the same interrupt: the kernel refuses, and nothing is kept.
    assert!(vmm.route_irq::<H>(33, false, 1 << 6).is_err());
    assert_eq!(H::usage().slots_free, before.slots_free - 2);
    vmm.teardown::<H>().unwrap();
    assert_eq!(I::cell().with(|h| h.loose_free()), loose_at_start, "every slot of the VM layer back");
    // The interrupt can be taken again once its handler is gone.
    let again = H::irq_handler(33, false).unwrap();
    assert_eq!(H::with_kernel(|m| m.irq_handler_ack(again)), Ok(()));
}
