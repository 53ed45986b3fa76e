//! An executable model of the seL4 16.0.0 objects capvisor uses (AArch64, hypervisor mode,
//! non-MCS), implementing [`sel4::Kernel`] on the host.
//!
//! HAL and VM code are generic over `Kernel`; under `cargo test` they run on [`Model`]. A
//! differential test runs the same operations on the real kernel and on the model and expects
//! the same results, physical addresses and error kinds, so every invocation here follows the
//! kernel's decode path in the kernel's order of checks (the seL4 source file is named in
//! each module). A test that passes on the model and fails on the kernel is a model bug.
//!
//! # What is modelled
//!
//! - **Untyped memory**: watermark (`capFreeIndex`), alignment of each object to its size,
//!   `Untyped_Retype` of 1..=[`sel4::config::RETYPE_FAN_OUT_LIMIT`] objects with the kernel's
//!   errors, device untyped (frames and untyped only), and the reset of an untyped that has
//!   no children left (the next retype starts from its base again; the memory the kernel
//!   clears is counted in [`Counters::bytes_zeroed`]). Alignment is computed where the kernel
//!   computes it, in its physical-memory window (`paddr + 2^39` at EL2): the same as physical
//!   alignment for objects up to 512 GiB, different for the 1 TiB device untyped at `2^39`.
//! - **CSpace**: the root CNode (`ROOT_CNODE_SIZE_BITS`, guard making up 64 bits) and CNodes
//!   from retype, addressed with `(cnode, index, depth)` and the kernel's guard/radix walk;
//!   copy, mint, move, delete, revoke; the mapping database exactly as the kernel keeps it
//!   (one list, descendants follow their ancestor; revocable and first-badged bits), so
//!   derivation, `RevokeFirst`, "final cap" and badge semantics match. Deleting the last cap
//!   to an object finalises it: a mapped frame or table is unmapped, a VSpace loses its ASID,
//!   an ASID pool leaves the ASID table, a TCB is suspended and unbound, a CNode's or TCB's
//!   own slots are emptied, an IRQ handler's IRQ becomes free.
//! - **Address spaces**: 4 KiB/2 MiB/1 GiB frames with physical addresses, page tables at every
//!   level of the stage-2 VSpace ([`sel4::object::VSPACE_INDEX_BITS`] root index bits, four
//!   levels for a 44-bit input), `seL4_UserTop`, ASID control and pools, `Page_GetAddress`.
//!   Mapping state lives in caps as in the kernel, so a cap whose table or VSpace went away
//!   goes stale exactly as the real one does. As in seL4 16.0.0, `Page_Map` onto a slot that
//!   already maps a frame of the same size replaces that mapping (only `PageTable_Map`
//!   reports `DeleteFirst` for an occupied slot).
//! - **Threads, VCPUs, IRQs**: TCB configure/priority/registers (SPSR sanitised as the kernel
//!   does)/resume/suspend/bind, affinity on a model of a multicore kernel
//!   ([`Model::set_cores`]; one core by default, which has no `TCB_SetAffinity`), VCPU binding, register storage, list registers and injected
//!   IRQs, IRQ control, handler notification and acknowledgement.
//! - **IPC**, single-threaded: endpoints queue messages and faults that a test enqueues "from"
//!   a thread ([`Model::enqueue_send`], [`Model::enqueue_call`], [`Model::enqueue_fault`]);
//!   the root task's `recv`/`reply`/`reply_recv` act on them and replies are logged
//!   ([`Model::take_replies`]); a root-task `call` is answered by a server closure
//!   ([`Model::serve`]); notifications accumulate badge bits. Where the real root task would
//!   block forever (receive on an empty endpoint, wait on an unsignalled notification) or be
//!   suspended by a cap fault (a CPtr that does not resolve), the model panics with a
//!   message saying so: that is a harness bug.
//!
//! # Using it
//!
//! ```
//! use sel4::{Kernel, ObjectBlueprint, Op, Slot};
//! let mut m = sel4_model::Model::qemu_arm_virt();
//! let (ut, desc) = m.untyped_slots().into_iter().find(|(_, d)| !d.is_device && d.size_bits >= 16).unwrap();
//! let dest = m.bootinfo().empty().start;
//! m.untyped_retype(ut.cap(), ObjectBlueprint::SmallPage, dest, 2).unwrap();
//! assert_eq!(m.page_get_address(dest.cap()).unwrap(), desc.paddr);
//! assert_eq!(m.watermark(ut), Some(2 * 4096));
//! assert_eq!(m.counters().get(Op::UntypedRetype), 1);
//! m.check_invariants().unwrap();
//! ```
//!
//! - Boot: [`Model::qemu_arm_virt`] (the checked-in `platforms/qemu-arm-virt/bootinfo.txt`),
//!   [`Model::from_platform`] / [`Model::from_platform_named`] (any description; errors name
//!   file and line). The model writes a real bootinfo frame with
//!   [`sel4::bootinfo::BootInfoWriter`] and boots from what [`sel4::BootInfo`] parses back, so
//!   [`Model::bootinfo`] is what a root task would see.
//! - Costs: [`Model::counters`] counts every `Kernel` method call by [`sel4::Op`] (one call,
//!   one count, success or failure); [`Model::reset_counters`].
//! - Queries: [`Model::untyped_slots`], [`Model::watermark`], [`Model::free_slots`],
//!   [`Model::cap`], [`Model::descendants`], [`Model::live_objects`], [`Model::translate`],
//!   [`Model::check_invariants`].
//! - Harness: the IPC methods above, [`Model::raise_irq`], [`Model::signal_from`],
//!   [`Model::vcpu_injections`], [`Model::set_list_register`], [`Model::thread_state`],
//!   [`Model::thread_registers`].
//!
//! # Argument conventions (shared with `sel4::invocation`)
//!
//! `untyped_retype` passes the root CNode (`init_cap::CNODE`) as extra cap 0 with
//! `node_depth = 0` and `node_offset = dest`; CNode copy/mint/move name the source as
//! `(init_cap::CNODE, src, 64)`; ASID `MakePool` and `IRQControl_GetTrigger` resolve the
//! destination from `dest.cnode`. Invoking an endpoint cap through an object method is an
//! IPC call in seL4 and panics here; invoking a notification cap signals it and succeeds.

#![forbid(unsafe_code)]

mod caps;
mod counters;
mod cspace;
mod invariants;
mod ipc;
mod kernel_impl;
mod objects;
mod platform;
mod tcb;
mod untyped;
mod vspace;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sel4::bootinfo::{BootInfo, BootInfoWriter, UntypedDesc};
use sel4::cap::{Cap, Slot, cap_type};
use sel4::object::PAGE_BITS;
use sel4::{PhysAddr, VirtAddr, config, init_cap};

pub use caps::{Mapping, ModelCap, VmRights};
pub use counters::Counters;
pub use ipc::{FaultDelivery, ServerFn};
pub use objects::{Injection, ListRegister, ThreadState, Translation};
pub use platform::{Platform, PlatformError, RootServerLayout};

use cspace::{Cte, max_free_index};
use objects::{
    AsidPoolObj, EndpointObj, IrqState, NtfnObj, SlotRef, TCB_BUFFER, TCB_CTABLE, TCB_VTABLE, TableObj, TcbObj, VCpuObj,
};
use platform::{ROOT_SLOTS, VirtualLayout};

/// The checked-in description of QEMU `virt` (see `platforms/qemu-arm-virt/README.md`).
pub const QEMU_ARM_VIRT: &str = include_str!("../../platforms/qemu-arm-virt/bootinfo.txt");
const QEMU_ARM_VIRT_FILE: &str = "platforms/qemu-arm-virt/bootinfo.txt";
/// The same kernel booted by capvisor's own loader, as its root task printed it
/// (`bootinfo-capvisor.txt`; the untyped at the top of RAM and the slot numbers follow the root
/// task image of the build that printed it, see the README).
pub const QEMU_ARM_VIRT_CAPVISOR: &str = include_str!("../../platforms/qemu-arm-virt/bootinfo-capvisor.txt");
const QEMU_ARM_VIRT_CAPVISOR_FILE: &str = "platforms/qemu-arm-virt/bootinfo-capvisor.txt";

/// The ASID the kernel gives the root task's VSpace (`IT_ASID`).
const IT_ASID: u16 = 1;

/// The seL4 model: kernel state plus the harness around it. See the crate docs.
pub struct Model {
    platform: Platform,
    /// Every non-empty capability slot, in every CNode, TCB and the IRQ node.
    ctes: BTreeMap<SlotRef, Cte>,
    /// CNode objects: base to radix.
    cnodes: BTreeMap<u64, u32>,
    tcbs: BTreeMap<u64, TcbObj>,
    endpoints: BTreeMap<u64, EndpointObj>,
    ntfns: BTreeMap<u64, NtfnObj>,
    tables: BTreeMap<u64, TableObj>,
    asid_pools: BTreeMap<u64, AsidPoolObj>,
    vcpus: BTreeMap<u64, VCpuObj>,
    /// `armKSASIDTable`: pool base per high ASID bits.
    asid_table: Vec<Option<u64>>,
    irq_state: Vec<IrqState>,
    irq_masked: Vec<bool>,
    /// The root task's TCB and root CNode.
    root_tcb: u64,
    root_cnode: u64,
    /// The thread the root task's reply cap answers (`tcbCaller`).
    caller: Option<u64>,
    counters: Counters,
    bootinfo: Vec<u8>,
    untyped_boot: Vec<(Slot, UntypedDesc)>,
    /// Objects the kernel made at boot outside any untyped: `(base, size_bits)`.
    boot_objects: Vec<(u64, u32)>,
    servers: BTreeMap<u64, ServerFn>,
    /// Cores the modelled kernel runs on (`ksNumCPUs`); more than one models a kernel built
    /// for SMP, which has `TCB_SetAffinity`.
    cores: u64,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("caps", &self.ctes.len())
            .field("live_objects", &self.live_objects())
            .field("free_slots", &self.free_slots())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// The model booted from the checked-in QEMU `virt` description.
    pub fn qemu_arm_virt() -> Model {
        match Model::from_platform_named(QEMU_ARM_VIRT_FILE, QEMU_ARM_VIRT) {
            Ok(m) => m,
            Err(e) => panic!("the checked-in platform description is invalid: {e}"),
        }
    }

    /// The model booted from the checked-in description of a capvisor boot of QEMU `virt`
    /// ([`QEMU_ARM_VIRT_CAPVISOR`]).
    pub fn qemu_arm_virt_capvisor() -> Model {
        match Model::from_platform_named(QEMU_ARM_VIRT_CAPVISOR_FILE, QEMU_ARM_VIRT_CAPVISOR) {
            Ok(m) => m,
            Err(e) => panic!("the checked-in platform description is invalid: {e}"),
        }
    }

    /// The model booted from a platform description (format in
    /// `platforms/qemu-arm-virt/README.md`).
    pub fn from_platform(text: &str) -> Result<Model, PlatformError> {
        Model::from_platform_named("<platform>", text)
    }

    /// As [`Model::from_platform`], naming the file in errors.
    pub fn from_platform_named(file: &str, text: &str) -> Result<Model, PlatformError> {
        let platform = Platform::parse(file, text)?;
        boot(file, platform)
    }

    /// Models a kernel built for `cores` cores (at least 1): `TCB_SetAffinity` exists when
    /// there is more than one and takes a core below `cores`. The bootinfo is left as booted.
    pub fn set_cores(&mut self, cores: u64) {
        self.cores = cores.max(1);
    }

    /// Cores the modelled kernel runs on ([`Model::set_cores`]).
    pub fn cores(&self) -> u64 {
        self.cores
    }

    /// The platform the model booted from.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The bootinfo frame the kernel would hand the root task, parsed.
    pub fn bootinfo(&self) -> BootInfo<'_> {
        BootInfo::from_bytes(&self.bootinfo).expect("the model's own bootinfo parses")
    }

    /// The bootinfo frame as bytes (`seL4_BootInfo` layout).
    pub fn bootinfo_bytes(&self) -> &[u8] {
        &self.bootinfo
    }

    /// The untyped caps the kernel handed over, with their descriptions.
    pub fn untyped_slots(&self) -> Vec<(Slot, UntypedDesc)> {
        self.untyped_boot.clone()
    }

    /// Invocation counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Zeroes the counters.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    fn root_slot(&self, slot: Slot) -> Option<SlotRef> {
        (slot.index() < ROOT_SLOTS).then(|| SlotRef::cnode(self.root_cnode, slot.index()))
    }

    /// The cap in a root CNode slot (`Null` for an empty or out-of-range slot).
    pub fn cap(&self, slot: Slot) -> ModelCap {
        self.root_slot(slot).map_or(ModelCap::Null, |s| self.cap_at(s))
    }

    /// Where the next retype from the untyped in `slot` starts, in bytes from its base: 0 when
    /// it has no children (the kernel starts over), its `capFreeIndex` otherwise. `None` if
    /// the slot holds no untyped.
    pub fn watermark(&self, slot: Slot) -> Option<u64> {
        let s = self.root_slot(slot)?;
        match self.cap_at(s) {
            ModelCap::Untyped { free_index, .. } => {
                Some(if self.has_children(s) { free_index << sel4::object::MIN_UNTYPED_BITS } else { 0 })
            }
            _ => None,
        }
    }

    /// The raw watermark the untyped cap in `slot` holds (`capFreeIndex` in bytes), which
    /// keeps its value after the children are revoked until the next retype resets it.
    pub fn free_index_bytes(&self, slot: Slot) -> Option<u64> {
        match self.cap(slot) {
            ModelCap::Untyped { free_index, .. } => Some(free_index << sel4::object::MIN_UNTYPED_BITS),
            _ => None,
        }
    }

    /// Empty slots in the root CNode.
    pub fn free_slots(&self) -> u64 {
        let lo = SlotRef::cnode(self.root_cnode, 0);
        let hi = SlotRef::cnode(self.root_cnode, u64::MAX);
        ROOT_SLOTS - self.ctes.range(lo..=hi).count() as u64
    }

    /// Number of capabilities derived from the one in `slot` (its descendants in the mapping
    /// database): the caps `CNode_Revoke` on it deletes directly (finalising them may delete
    /// more, e.g. the contents of a CNode).
    pub fn descendants(&self, slot: Slot) -> usize {
        let Some(s) = self.root_slot(slot).filter(|s| self.ctes.contains_key(s)) else { return 0 };
        let mut n = 0;
        let mut cur = self.ctes[&s].next;
        while let Some(c) = cur {
            if !self.is_mdb_parent_of(s, c) {
                break;
            }
            n += 1;
            cur = self.ctes[&c].next;
        }
        n
    }

    /// Objects with at least one capability (untyped regions included; every cap to the same
    /// object counts once).
    pub fn live_objects(&self) -> usize {
        let mut seen = BTreeSet::new();
        for c in self.ctes.values() {
            if let Some((base, bits)) = c.cap.region() {
                seen.insert((c.cap.kind(), base, bits));
            }
        }
        seen.len()
    }

    /// What `vaddr` translates to in the VSpace whose cap is in `vspace`, by walking the
    /// tables (the VSpace must have an ASID).
    pub fn translate(&self, vspace: Cap<cap_type::VSpace>, vaddr: VirtAddr) -> Option<Translation> {
        match self.cap(vspace.slot()) {
            ModelCap::VSpace { paddr, asid: Some(asid) } if self.find_vspace_for_asid(asid) == Some(paddr.0) => {
                self.walk(paddr.0, vaddr.0)
            }
            _ => None,
        }
    }

    /// Whether an IRQ is taken: by the kernel, or by a handler cap.
    pub fn irq_in_use(&self, irq: u64) -> bool {
        self.irq_state.get(irq as usize).is_some_and(|s| *s != IrqState::Inactive)
    }
}

/// Builds the state `init_kernel` leaves for the root task.
fn boot(file: &str, platform: Platform) -> Result<Model, PlatformError> {
    let rs = platform.rootserver;
    let layout =
        VirtualLayout::new(platform.image_vaddr, platform.user_image_frames.len(), platform.extra_bi_pages.len());

    // The bootinfo frame, written and parsed back: the caps are placed from what parses.
    let writer = BootInfoWriter {
        empty: platform.empty,
        user_image_frames: platform.user_image_frames,
        user_image_paging: platform.user_image_paging,
        cnode_size_bits: config::ROOT_CNODE_SIZE_BITS,
        ipc_buffer_addr: layout.ipc_buffer,
        untyped_start: platform.untyped_slots.start,
        extra: [None, None],
    };
    let mut bytes = Vec::new();
    writer.write(&platform.untyped, &mut bytes);
    let bi = BootInfo::from_bytes(&bytes).map_err(|e| PlatformError {
        file: file.to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    let untyped_boot: Vec<(Slot, UntypedDesc)> =
        bi.untyped_list().enumerate().map(|(i, d)| (Slot::new(bi.untyped().start.index() + i as u64), d)).collect();
    let n_irqs = platform.max_irq as usize + 1;

    let mut m = Model {
        platform: platform.clone(),
        ctes: BTreeMap::new(),
        cnodes: BTreeMap::new(),
        tcbs: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        ntfns: BTreeMap::new(),
        tables: BTreeMap::new(),
        asid_pools: BTreeMap::new(),
        vcpus: BTreeMap::new(),
        asid_table: vec![None; vspace::N_ASID_POOLS],
        irq_state: vec![IrqState::Inactive; n_irqs],
        irq_masked: vec![false; n_irqs],
        root_tcb: rs.tcb.0,
        root_cnode: rs.cnode.0,
        caller: None,
        counters: Counters::default(),
        bootinfo: Vec::new(),
        untyped_boot,
        boot_objects: Vec::new(),
        servers: BTreeMap::new(),
        cores: 1,
    };
    let root = |s: Slot| SlotRef::cnode(rs.cnode.0, s.index());
    let page = 1u64 << PAGE_BITS;

    // Root CNode; its cap has a guard that makes up the rest of the 64-bit CPtr.
    let radix = config::ROOT_CNODE_SIZE_BITS as u32;
    m.cnodes.insert(rs.cnode.0, radix);
    let cnode_cap = ModelCap::CNode { paddr: rs.cnode, radix, guard_size: 64 - radix, guard: 0 };
    m.write_slot(root(init_cap::CNODE), cnode_cap);
    m.write_slot(root(init_cap::DOMAIN), ModelCap::Domain);
    m.write_slot(root(init_cap::IRQ_CONTROL), ModelCap::IrqControl);

    // The root task's VSpace, its tables and the frames mapped in it.
    m.new_table(rs.vspace.0, true);
    let vspace_cap = ModelCap::VSpace { paddr: rs.vspace, asid: Some(IT_ASID) };
    m.write_slot(root(init_cap::VSPACE), vspace_cap);
    let mapped = !platform.user_image_paging.is_empty();
    if mapped {
        for (i, (vaddr, _level)) in layout.tables().into_iter().enumerate() {
            let t = rs.paging.0 + i as u64 * page;
            m.new_table(t, false);
            let (at, _) = m.boot_map_table(rs.vspace.0, t, vaddr);
            let cap = ModelCap::PageTable {
                paddr: PhysAddr(t),
                mapped: Some(Mapping { asid: IT_ASID, vaddr: VirtAddr(at) }),
            };
            m.write_slot(root(Slot::new(platform.user_image_paging.start.index() + i as u64)), cap);
        }
    }
    let frame = |m: &mut Model, slot: Slot, paddr: u64, vaddr: u64| {
        let mapping = (mapped && m.boot_map_frame(rs.vspace.0, paddr, vaddr))
            .then_some(Mapping { asid: IT_ASID, vaddr: VirtAddr(vaddr) });
        let cap = ModelCap::Frame {
            paddr: PhysAddr(paddr),
            size: sel4::FrameSize::Small,
            device: false,
            rights: VmRights::ReadWrite,
            mapped: mapping,
        };
        m.write_slot(root(slot), cap);
    };
    frame(&mut m, init_cap::BOOTINFO_FRAME, rs.bootinfo.0, layout.bootinfo);
    for i in 0..platform.extra_bi_pages.len() {
        let slot = Slot::new(platform.extra_bi_pages.start.index() + i);
        frame(&mut m, slot, rs.extra_bi.0 + i * page, layout.extra_bi + i * page);
    }
    frame(&mut m, init_cap::IPC_BUFFER, rs.ipc_buffer.0, layout.ipc_buffer);
    for i in 0..platform.user_image_frames.len() {
        let slot = Slot::new(platform.user_image_frames.start.index() + i);
        frame(&mut m, slot, platform.image_paddr.0 + i * page, layout.start + i * page);
    }

    // The initial ASID pool, holding the root task's VSpace at IT_ASID.
    m.write_slot(root(init_cap::ASID_POOL), ModelCap::AsidPool { paddr: rs.asid_pool, asid_base: 0 });
    m.write_slot(root(init_cap::ASID_CONTROL), ModelCap::AsidControl);
    let mut pool = AsidPoolObj::default();
    pool.entries.insert(IT_ASID, rs.vspace.0);
    m.asid_pools.insert(rs.asid_pool.0, pool);
    m.asid_table[0] = Some(rs.asid_pool.0);

    // The root task's TCB: its CSpace, VSpace and IPC buffer slots hold copies of the caps.
    let mut tcb = TcbObj::new();
    tcb.state = ThreadState::Runnable;
    tcb.priority = tcb::MAX_PRIO;
    tcb.mcp = tcb::MAX_PRIO;
    tcb.ipc_buffer = layout.ipc_buffer;
    tcb.regs.x[0] = layout.bootinfo;
    tcb.regs.pc = layout.start;
    m.tcbs.insert(rs.tcb.0, tcb);
    m.cte_insert(cnode_cap, root(init_cap::CNODE), SlotRef::tcb(rs.tcb.0, TCB_CTABLE));
    m.cte_insert(vspace_cap, root(init_cap::VSPACE), SlotRef::tcb(rs.tcb.0, TCB_VTABLE));
    let ipc = m.cap_at(root(init_cap::IPC_BUFFER));
    let ipc = m.derive_cap(root(init_cap::IPC_BUFFER), ipc).expect("frame caps derive");
    m.cte_insert(ipc, root(init_cap::IPC_BUFFER), SlotRef::tcb(rs.tcb.0, TCB_BUFFER));
    m.write_slot(root(init_cap::TCB), ModelCap::Tcb { paddr: rs.tcb });

    // Untyped caps start full (`MAX_FREE_INDEX`): the first retype resets and clears them.
    for (slot, d) in m.untyped_boot.clone() {
        let cap = ModelCap::Untyped {
            paddr: d.paddr,
            size_bits: d.size_bits,
            free_index: max_free_index(d.size_bits),
            device: d.is_device,
        };
        m.write_slot(root(slot), cap);
    }

    for &irq in &platform.kernel_irqs {
        if let Some(s) = m.irq_state.get_mut(irq as usize) {
            *s = IrqState::Reserved;
        }
    }

    let tcb_bits = sel4::generated::object_bits::TCB;
    m.boot_objects = vec![
        (rs.cnode.0, radix + sel4::object::SLOT_BITS),
        (rs.vspace.0, PAGE_BITS),
        (rs.asid_pool.0, PAGE_BITS),
        (rs.ipc_buffer.0, PAGE_BITS),
        (rs.bootinfo.0, PAGE_BITS),
        (rs.tcb.0, tcb_bits),
    ];
    for i in 0..platform.extra_bi_pages.len() {
        m.boot_objects.push((rs.extra_bi.0 + i * page, PAGE_BITS));
    }
    for i in 0..platform.user_image_paging.len() {
        m.boot_objects.push((rs.paging.0 + i * page, PAGE_BITS));
    }
    for i in 0..platform.user_image_frames.len() {
        m.boot_objects.push((platform.image_paddr.0 + i * page, PAGE_BITS));
    }
    m.bootinfo = bytes;
    Ok(m)
}
