//! Creating the timer server: its endpoint, its CNode, its thread, the ticker (a VCPU thread in
//! a stage-2 address space of its own) and client capabilities. Generic over
//! [`sel4::Kernel`], so every step is tested on the model; the root task supplies memory
//! (through [`ObjectAlloc`]) and the target-only pieces (the server's entry point, stack and
//! IPC buffer; the page of ticker code).
//!
//! Owns the objects it creates, in slots the allocator hands out, and the copies it places in
//! the server's and the ticker's CNodes. Never touches other capabilities, except to copy or
//! mint from the ones it is given (frames, notifications).
//!
//! # The server's CSpace
//! A CNode of [`layout::RADIX`] bits, guarded to make up 64 bits, holding only what the
//! server needs: its endpoint (receive right only), the ticker's TCB and VCPU, and one
//! notification per client (send right only). See [`layout`].
//!
//! # The ticker
//! A TCB bound to a VCPU, at the guests' priority, in a VSpace of its own where one frame of
//! code is mapped read-only (executable) at an IPA; a CNode of two slots whose slot 1 is its
//! fault endpoint (the server's endpoint, badge [`badge::TICKER`]); no IPC buffer. It is
//! created suspended with `CNTVOFF = 0`; the server starts it when it first arms a deadline.

use core::fmt;

use sel4::cap_type::{AsidPool, CNode, Endpoint, Frame, Granule, Notification, Tcb, Untyped, VCpu, VSpace};
use sel4::{CNodeSlot, CPtr, Cap, CapRights, Kernel, ObjectBlueprint, Slot, SlotRegion, UserContext, VCpuReg};
use sel4::{VirtAddr, VmAttributes};

use crate::protocol::{MAX_CLIENTS, badge};
use crate::server::ServerCaps;

/// The server's CNode.
pub mod layout {
    use sel4::CPtr;

    use crate::protocol::MAX_CLIENTS;
    use crate::server::ServerCaps;

    /// log2 of its slots.
    pub const RADIX: u32 = 5;
    /// The server's endpoint (receive right).
    pub const ENDPOINT: u64 = 1;
    /// The ticker's TCB.
    pub const TICKER_TCB: u64 = 2;
    /// The ticker's VCPU.
    pub const TICKER_VCPU: u64 = 3;
    /// Client `i`'s notification is at `NOTIFICATIONS + i`.
    pub const NOTIFICATIONS: u64 = 16;

    const _: () = assert!(NOTIFICATIONS + MAX_CLIENTS as u64 <= 1 << RADIX);

    /// The server's capabilities as CPtrs in its own CSpace (the CNode is guarded to 64 bits,
    /// so a CPtr is the slot index).
    pub const fn caps() -> ServerCaps {
        ServerCaps {
            endpoint: CPtr::from_bits(ENDPOINT).cast(),
            ticker_tcb: CPtr::from_bits(TICKER_TCB).cast(),
            ticker_vcpu: CPtr::from_bits(TICKER_VCPU).cast(),
            notifications: CPtr::from_bits(NOTIFICATIONS),
        }
    }
}

/// `seL4_CNode_CapData` for a CNode of `radix` bits that resolves a whole 64-bit CPtr: guard
/// 0 of `64 - radix` bits (guard size in bits 0..6).
pub const fn cspace_root_data(radix: u32) -> u64 {
    (64 - radix) as u64
}

/// PSTATE of an EL1 thread on its VCPU: EL1h, with D, A, I and F masked (the ticker takes no
/// exception at EL1; the physical interrupts it causes go to EL2).
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Why setting up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A kernel operation failed.
    Kernel {
        /// What was being done.
        step: &'static str,
        /// The kernel's error.
        error: sel4::Error,
    },
    /// The allocator has no slot left.
    OutOfSlots,
    /// A client index of [`MAX_CLIENTS`] or more.
    BadClient {
        /// The index.
        index: usize,
    },
    /// Still no translation after creating a table at every level.
    MappingLevels {
        /// The address.
        vaddr: u64,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Kernel { step, error } => write!(f, "timer set-up: {step}: {error:?}"),
            SetupError::OutOfSlots => write!(f, "timer set-up: no free slot left"),
            SetupError::BadClient { index } => write!(f, "timer set-up: client index {index} >= {MAX_CLIENTS}"),
            SetupError::MappingLevels { vaddr } => write!(f, "timer set-up: {vaddr:#x} still unmapped after tables"),
        }
    }
}

impl core::error::Error for SetupError {}

trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, SetupError>;
}

impl<T> Step<T> for sel4::Result<T> {
    fn step(self, step: &'static str) -> Result<T, SetupError> {
        self.map_err(|error| SetupError::Kernel { step, error })
    }
}

/// Where kernel objects and empty slots come from.
pub trait ObjectAlloc {
    /// One object of `blueprint`, its capability in a fresh root CNode slot.
    fn object<K: Kernel>(&mut self, k: &mut K, blueprint: ObjectBlueprint) -> Result<Slot, SetupError>;
    /// An empty root CNode slot.
    fn slot(&mut self) -> Result<Slot, SetupError>;
}

/// The simplest [`ObjectAlloc`]: objects retyped one at a time from one untyped, into
/// consecutive slots of a region. [`UntypedArena::teardown`] deletes everything it handed out,
/// after which the untyped is whole again (the kernel resets an untyped with no children).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UntypedArena {
    untyped: Cap<Untyped>,
    slots: SlotRegion,
    next: Slot,
}

impl UntypedArena {
    /// An arena over `untyped` (RAM, large enough for what is asked of it) and the empty
    /// root CNode slots `slots`.
    pub const fn new(untyped: Cap<Untyped>, slots: SlotRegion) -> Self {
        UntypedArena { untyped, slots, next: slots.start }
    }

    /// Slots handed out so far.
    pub fn used(&self) -> SlotRegion {
        SlotRegion { start: self.slots.start, end: self.next }
    }

    /// Deletes every capability in the slots handed out, newest first, and starts over. Deleting
    /// the last capability of an object destroys it (a TCB stops, a CNode's contents go, a
    /// mapped frame copy is unmapped).
    pub fn teardown<K: Kernel>(&mut self, k: &mut K) -> Result<(), SetupError> {
        let mut first_error = Ok(());
        while self.next != self.slots.start {
            self.next = Slot::new(self.next.index() - 1);
            let r = k.cnode_delete(CNodeSlot::root(self.next)).step("delete");
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }
}

impl ObjectAlloc for UntypedArena {
    fn object<K: Kernel>(&mut self, k: &mut K, blueprint: ObjectBlueprint) -> Result<Slot, SetupError> {
        let slot = self.slot()?;
        if let Err(error) = k.untyped_retype(self.untyped, blueprint, slot, 1) {
            self.next = slot; // give the slot back
            return Err(SetupError::Kernel { step: "retype", error });
        }
        Ok(slot)
    }

    fn slot(&mut self) -> Result<Slot, SetupError> {
        if !self.slots.contains(self.next) {
            return Err(SetupError::OutOfSlots);
        }
        let s = self.next;
        self.next = Slot::new(s.index() + 1);
        Ok(s)
    }
}

/// A slot of a CNode that the root task holds a capability to (`depth` = its radix: a CNode
/// capability fresh from retype has no guard).
const fn in_cnode(cnode: Cap<CNode>, radix: u32, index: u64) -> CNodeSlot {
    CNodeSlot { cnode, index, depth: radix as u8 }
}

/// Send and grant-reply: what `seL4_Call` needs on an endpoint (a fault endpoint too), and no
/// more (no grant: nothing can hand the server capabilities).
pub const CALL_RIGHTS: CapRights = CapRights { write: true, read: false, grant: false, grant_reply: true };

/// Maps `frame` at `vaddr` in `vspace`, creating translation tables as the kernel asks for
/// them (one `PageTable_Map` per missing level).
pub fn map_with_tables<K: Kernel, A: ObjectAlloc>(
    k: &mut K,
    alloc: &mut A,
    frame: Cap<Frame>,
    vspace: Cap<VSpace>,
    vaddr: VirtAddr,
    rights: CapRights,
    attrs: VmAttributes,
) -> Result<(), SetupError> {
    // A 4-level stage-2 VSpace needs at most 3 tables below its root.
    for _ in 0..4 {
        match k.page_map(frame, vspace, vaddr, rights, attrs) {
            Ok(()) => return Ok(()),
            Err(sel4::Error::FailedLookup) => {
                let pt = alloc.object(k, ObjectBlueprint::PageTable)?;
                k.page_table_map(pt.cap(), vspace, vaddr, VmAttributes::DEFAULT).step("map page table")?;
            }
            Err(error) => return Err(SetupError::Kernel { step: "map page", error }),
        }
    }
    Err(SetupError::MappingLevels { vaddr: vaddr.get() })
}

/// A page of EL1 code for a VCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePage {
    /// A capability to the 4 KiB frame holding the code; a copy of it is mapped.
    pub frame: Cap<Frame>,
    /// The IPA to map it at (page aligned).
    pub ipa: VirtAddr,
    /// Offset of the entry point in the page.
    pub entry_offset: u64,
}

/// What [`spawn_vcpu_thread`] needs besides memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuThreadParams {
    /// The code.
    pub code: CodePage,
    /// Its fault endpoint: this endpoint (a root CNode slot), minted with this badge.
    pub fault_ep: Slot,
    /// The badge.
    pub fault_badge: u64,
    /// Its priority.
    pub priority: u64,
    /// The TCB whose MCP authorises the priority (the root task's).
    pub authority: Cap<Tcb>,
    /// An ASID pool with a free ASID (the root task's initial pool).
    pub asid_pool: Cap<AsidPool>,
}

/// A thread on a VCPU, created suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuThread {
    /// Its TCB.
    pub tcb: Cap<Tcb>,
    /// Its VCPU.
    pub vcpu: Cap<VCpu>,
    /// Its stage-2 VSpace.
    pub vspace: Cap<VSpace>,
    /// Its two-slot CNode (slot 1: the fault endpoint).
    pub cnode: Cap<CNode>,
    /// The copy of the code frame mapped in `vspace`.
    pub code_frame: Cap<Frame>,
}

/// Creates a suspended thread at EL1 on a VCPU of its own, in a stage-2 address space of its
/// own with one page of code and nothing else, whose faults go to `params.fault_ep` with
/// `params.fault_badge`. `CNTVOFF` is 0, so its virtual counter is the physical counter.
pub fn spawn_vcpu_thread<K: Kernel, A: ObjectAlloc>(
    k: &mut K,
    alloc: &mut A,
    params: VcpuThreadParams,
) -> Result<VcpuThread, SetupError> {
    let vspace = alloc.object(k, ObjectBlueprint::VSpace)?.cap::<VSpace>();
    k.asid_pool_assign(params.asid_pool, vspace).step("assign ASID")?;
    let code_frame = alloc.slot()?;
    k.cnode_copy(CNodeSlot::root(code_frame), params.code.frame.slot(), CapRights::READ_ONLY)
        .step("copy code frame")?;
    let code_frame = code_frame.cap::<Frame>();
    map_with_tables(k, alloc, code_frame, vspace, params.code.ipa, CapRights::READ_ONLY, VmAttributes::DEFAULT)?;

    let cnode = alloc.object(k, ObjectBlueprint::CNode { slot_bits: 1 })?.cap::<CNode>();
    k.cnode_mint(in_cnode(cnode, 1, 1), params.fault_ep, CALL_RIGHTS, params.fault_badge)
        .step("mint fault endpoint")?;

    let tcb = alloc.object(k, ObjectBlueprint::Tcb)?.cap::<Tcb>();
    let no_buffer = Cap::<Granule>::from_cptr(CPtr::NULL);
    k.tcb_configure(tcb, CPtr::from_bits(1), cnode, cspace_root_data(1), vspace, VirtAddr(0), no_buffer)
        .step("configure VCPU thread")?;
    k.tcb_set_priority(tcb, params.authority, params.priority).step("set VCPU thread priority")?;
    let vcpu = alloc.object(k, ObjectBlueprint::VCpu)?.cap::<VCpu>();
    k.vcpu_set_tcb(vcpu, tcb).step("bind VCPU")?;
    k.vcpu_write_reg(vcpu, VCpuReg::Cntvoff, 0).step("zero CNTVOFF")?;
    let regs = UserContext {
        pc: params.code.ipa.get() + params.code.entry_offset,
        spsr: SPSR_EL1H_MASKED,
        ..UserContext::default()
    };
    k.tcb_write_registers(tcb, false, &regs).step("write VCPU thread registers")?;
    Ok(VcpuThread { tcb, vcpu, vspace, cnode, code_frame })
}

/// The server thread: where it runs and what it starts with (all in the VSpace `vspace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerThread {
    /// Its address space (normally the root task's, which holds its code).
    pub vspace: Cap<VSpace>,
    /// Entry point: a function taking `arg` in `x0` that never returns.
    pub entry: VirtAddr,
    /// Initial stack pointer (16-byte aligned).
    pub stack_top: VirtAddr,
    /// `x0` at entry.
    pub arg: u64,
    /// Its IPC buffer's address (page aligned: the frame below holds nothing else).
    pub ipc_buffer: VirtAddr,
    /// The frame of its IPC buffer.
    pub ipc_frame: Cap<Granule>,
    /// Its priority: above the ticker's and the clients' (see [`crate::server`]).
    pub priority: u64,
}

/// The running server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    /// The server's TCB.
    pub tcb: Cap<Tcb>,
    /// Its CNode (as the root task holds it: no guard, depth [`layout::RADIX`]).
    pub cnode: Cap<CNode>,
    /// The endpoint, unbadged with all rights (kept by the root task to mint client caps;
    /// calls through it are refused as an unknown client).
    pub endpoint: Cap<Endpoint>,
    /// The admin capability (badge [`badge::ADMIN`]).
    pub admin: Cap<Endpoint>,
    /// The ticker.
    pub ticker: VcpuThread,
}

/// Creates and starts the server thread, with its ticker. `ticker_code` is the ticker's page
/// (a loop of `hvc #0` with `x7` = `seL4_SysYield`); `ticker_priority` the guests' priority.
/// The server starts receiving at once; clients are added with [`Spawned::add_client`].
pub fn spawn<K: Kernel, A: ObjectAlloc>(
    k: &mut K,
    alloc: &mut A,
    thread: ServerThread,
    ticker_code: CodePage,
    ticker_priority: u64,
    authority: Cap<Tcb>,
    asid_pool: Cap<AsidPool>,
) -> Result<Spawned, SetupError> {
    let ep = alloc.object(k, ObjectBlueprint::Endpoint)?;
    let ticker = spawn_vcpu_thread(
        k,
        alloc,
        VcpuThreadParams {
            code: ticker_code,
            fault_ep: ep,
            fault_badge: badge::TICKER,
            priority: ticker_priority,
            authority,
            asid_pool,
        },
    )?;
    let cnode = alloc.object(k, ObjectBlueprint::CNode { slot_bits: layout::RADIX })?.cap::<CNode>();
    let at = |i| in_cnode(cnode, layout::RADIX, i);
    k.cnode_copy(at(layout::ENDPOINT), ep, CapRights::READ_ONLY).step("copy endpoint to server")?;
    k.cnode_copy(at(layout::TICKER_TCB), ticker.tcb.slot(), CapRights::ALL).step("copy ticker TCB to server")?;
    k.cnode_copy(at(layout::TICKER_VCPU), ticker.vcpu.slot(), CapRights::ALL).step("copy ticker VCPU to server")?;

    let admin = alloc.slot()?;
    k.cnode_mint(CNodeSlot::root(admin), ep, CALL_RIGHTS, badge::ADMIN).step("mint admin endpoint")?;

    let tcb = alloc.object(k, ObjectBlueprint::Tcb)?.cap::<Tcb>();
    k.tcb_configure(
        tcb,
        CPtr::NULL,
        cnode,
        cspace_root_data(layout::RADIX),
        thread.vspace,
        thread.ipc_buffer,
        thread.ipc_frame,
    )
    .step("configure server thread")?;
    k.tcb_set_priority(tcb, authority, thread.priority).step("set server priority")?;
    let mut regs = UserContext { pc: thread.entry.get(), sp: thread.stack_top.get(), ..UserContext::default() };
    regs.x[0] = thread.arg;
    k.tcb_write_registers(tcb, true, &regs).step("start server thread")?;
    Ok(Spawned { tcb, cnode, endpoint: ep.cap(), admin: admin.cap(), ticker })
}

impl Spawned {
    /// The capabilities the server thread finds in its own CSpace.
    pub const fn server_caps(&self) -> ServerCaps {
        layout::caps()
    }

    /// Gives client `index` an endpoint capability with its badge (in a new root CNode slot)
    /// and, when `notification` is given, puts a send-only copy of it, minted with the badge
    /// given, in the server's CNode for the client's timeouts (replacing an earlier one). The
    /// server serves the client once it is registered: [`crate::client::add_client`] on
    /// [`Spawned::admin`], or [`crate::server::Core::add_client`] before the server starts.
    pub fn add_client<K: Kernel, A: ObjectAlloc>(
        &self,
        k: &mut K,
        alloc: &mut A,
        index: usize,
        notification: Option<(Cap<Notification>, u64)>,
    ) -> Result<Cap<Endpoint>, SetupError> {
        if index >= MAX_CLIENTS {
            return Err(SetupError::BadClient { index });
        }
        if let Some((ntfn, ntfn_badge)) = notification {
            let dest = in_cnode(self.cnode, layout::RADIX, layout::NOTIFICATIONS + index as u64);
            k.cnode_delete(dest).step("clear client notification slot")?;
            k.cnode_mint(dest, ntfn.slot(), CapRights::WRITE_ONLY, ntfn_badge).step("mint client notification")?;
        }
        let slot = alloc.slot()?;
        k.cnode_mint(CNodeSlot::root(slot), self.endpoint.slot(), CALL_RIGHTS, badge::client(index))
            .step("mint client endpoint")?;
        Ok(slot.cap())
    }

    /// Stops the server and its ticker (their objects stay until the allocator frees them).
    pub fn stop<K: Kernel>(&self, k: &mut K) -> Result<(), SetupError> {
        k.tcb_suspend(self.tcb).step("suspend server")?;
        k.tcb_suspend(self.ticker.tcb).step("suspend ticker")
    }
}
