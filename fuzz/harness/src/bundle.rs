//! Target `bundle`: the VM bundle the root task embeds, and what the root task does with it
//! (`root-task/src/vmm.rs`, `run`): [`Bundle::decode`] (which decodes the compact system
//! and runs every configuration rule), the placement check ([`vm_config::check_placement`])
//! against the host memory the bootinfo's untyped list and the platform's facts describe,
//! then [`Vmm::build`]: every VM's memory, stage 2, vCPUs and images, here on the seL4 model
//! booted from the description of QEMU `virt` as capvisor's loader boots it (the untyped
//! list the root task gets there). Also [`bundle::decode_system`], the configuration alone
//! as `capvisor image` reads it.
//!
//! Input: the bundle's bytes.
//!
//! Invariants: `decode_system` accepts what `decode` accepts, with the same system; every
//! image copy goes to memory the VMM mapped; after a build, whether it succeeded (then torn
//! down) or failed (then undone by the build itself), every allocation and book page is
//! returned, as `capvisor plan` checks.

use std::sync::OnceLock;

use hal_sel4::host::{HostHal, HostPaging, install_model, pages_held};
use hal_sel4::{HalCell, HalInstance};
use sel4::{UntypedDesc, VirtAddr};
use sel4_model::Model;
use vm_config::HostMemory;
use vm_runner::bundle::{self, Bundle};
use vm_runner::setup::{CopyIn, Vmm};

/// The HAL cell the builds run in: one model at a time, a new one per input.
struct FuzzHal;

impl HalInstance for FuzzHal {
    type Kernel = Model;
    fn cell() -> &'static HalCell<Model> {
        static CELL: HalCell<Model> = HalCell::new();
        &CELL
    }
}

/// Copies are not kept; their destinations must be mapped in the VMM's window.
struct CheckCopies;

fn assert_mapped(dst: VirtAddr, what: &str) {
    let mapped = FuzzHal::cell().with(|h| h.kernel().translate(sel4::init_cap::VSPACE.cap(), dst).is_some());
    assert!(mapped, "{what} at {dst}, which the VMM has not mapped");
}

impl CopyIn for CheckCopies {
    fn copy(&mut self, dst: VirtAddr, bytes: &[u8]) {
        if !bytes.is_empty() {
            assert_mapped(dst, "image copy");
        }
    }

    fn zero(&mut self, dst: VirtAddr, len: u64) {
        if len > 0 {
            assert_mapped(dst, "zeroing");
        }
    }

    fn fill(&mut self, dst: VirtAddr, len: u64, _byte: u8) {
        if len > 0 {
            assert_mapped(dst, "filling");
        }
    }
}

/// capvisor's facts about QEMU `virt`, as the root task embeds them.
const PLATFORM_FACTS: &str = include_str!("../../../platforms/qemu-arm-virt/placement.txt");

/// Host memory as the root task sees it on QEMU `virt` booted by capvisor's loader: the
/// model's untyped list and the platform's facts.
fn host_memory() -> &'static HostMemory {
    static MEMORY: OnceLock<HostMemory> = OnceLock::new();
    MEMORY.get_or_init(|| {
        let untyped: Vec<UntypedDesc> =
            Model::qemu_arm_virt_capvisor().untyped_slots().into_iter().map(|(_, d)| d).collect();
        match vm_config::Facts::parse(PLATFORM_FACTS) {
            Ok(facts) => HostMemory::from_bootinfo(&facts, &untyped),
            Err(e) => panic!("platforms/qemu-arm-virt/placement.txt: {e}"),
        }
    })
}

/// One input.
pub fn run(data: &[u8]) {
    let system = bundle::decode_system(data);
    let bundle = match Bundle::decode(data) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(system.as_ref(), Ok(&bundle.system), "decode_system disagrees with decode");
    let problems = vm_config::check_placement(&bundle.system, host_memory());
    if !problems.is_empty() {
        for p in &problems {
            let _ = p.to_string();
        }
        return;
    }
    build(&bundle);
}

/// [`Vmm::build`] on a fresh model, then teardown and the accounting check.
fn build(bundle: &Bundle<'_>) {
    let cell = FuzzHal::cell();
    let _ = cell.take();
    let model = Model::qemu_arm_virt_capvisor();
    let list_registers = u8::try_from(model.platform().gic_list_regs).unwrap_or(u8::MAX);
    let model_cores = model.cores();
    let slots = vm_runner::setup::split_slots(model.bootinfo().empty(), vm_runner::setup::DEFAULT_VMM_SLOTS);
    if let Err(e) = install_model::<FuzzHal>(model, slots) {
        panic!("the model HAL: {e}");
    }
    let options = vm_runner::setup::SetupOptions {
        platform: vm_runner::Platform {
            list_registers,
            gic_version: vm_runner::Platform::KERNEL_GIC,
            cores: model_cores,
        },
        asid_pool: sel4::init_cap::ASID_POOL.cap(),
        vmm_tcb: sel4::init_cap::TCB.cap(),
    };
    match Vmm::<HostPaging<FuzzHal>>::build::<HostHal<FuzzHal>>(bundle, &options, &mut CheckCopies) {
        Ok(mut vmm) => {
            for vm in &vmm.vms {
                let _ = vm.state.boot();
            }
            if let Err(e) = vmm.teardown::<HostHal<FuzzHal>>() {
                panic!("teardown of a built VMM: {e}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let (allocations, kept) = cell.with(|h| (h.pool().stats().allocations, h.window().tables()));
    let held = pages_held::<FuzzHal>();
    assert!(
        allocations == kept && held == 0,
        "{allocations} allocations and {held} book pages left after the VMM is gone (the window keeps {kept} tables)"
    );
    let _ = cell.take();
}
