//! Kernel object state other than capabilities: threads, endpoints, notifications,
//! translation tables, ASID pools, VCPUs. Plain data; the operations on it live with the
//! invocations that change it.
//!
//! Objects are keyed by physical base address. An object exists from the retype that creates
//! it until its final capability is deleted (the kernel's finalisation); objects without
//! state (frames, untyped) are not stored.

use std::collections::{BTreeMap, VecDeque};

use sel4::kernel::{Message, UserContext};
use sel4::object::FrameSize;
use sel4::{VirtAddr, VmAttributes};

use crate::caps::VmRights;

/// A container of capability slots.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum Container {
    /// A CNode, by base address.
    CNode(u64),
    /// A TCB's own slots (`tcbCTable` .. `tcbBuffer`), by TCB base address.
    Tcb(u64),
    /// The kernel's IRQ node: slot `irq` holds the notification cap of that IRQ's handler.
    IrqNode,
}

/// One capability slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct SlotRef {
    pub node: Container,
    pub index: u64,
}

impl SlotRef {
    pub fn cnode(base: u64, index: u64) -> Self {
        SlotRef { node: Container::CNode(base), index }
    }
    pub fn tcb(base: u64, index: u64) -> Self {
        SlotRef { node: Container::Tcb(base), index }
    }
}

/// TCB slot indices (non-MCS `tcb_cnode_index`).
pub(crate) const TCB_CTABLE: u64 = 0;
pub(crate) const TCB_VTABLE: u64 = 1;
pub(crate) const TCB_BUFFER: u64 = 4;
/// Number of slots in a TCB (`tcbCNodeEntries`).
pub(crate) const TCB_SLOTS: u64 = 5;

/// A thread's scheduling state (the subset the single-threaded model distinguishes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ThreadState {
    /// Suspended or never started.
    Inactive,
    /// Runnable (`Running` or `Restart` in the kernel).
    Runnable,
    /// Blocked sending on an endpoint (its message is queued there).
    BlockedOnSend,
    /// Waiting for a reply (after a call or a fault was received).
    BlockedOnReply,
}

#[derive(Clone, Debug)]
pub(crate) struct TcbObj {
    pub state: ThreadState,
    pub priority: u64,
    /// The core the thread runs on (`tcbAffinity`).
    pub affinity: u64,
    pub mcp: u64,
    /// `tcbFaultHandler`: a CPtr looked up in the thread's own CSpace at fault time.
    pub fault_handler: u64,
    pub ipc_buffer: u64,
    pub regs: UserContext,
    pub bound_ntfn: Option<u64>,
    pub vcpu: Option<u64>,
    /// Replies delivered to this thread (harness-visible).
    pub replies: Vec<Message>,
    /// Label of the fault the thread waits to have answered (`tcbFault`).
    pub fault: Option<u64>,
}

impl TcbObj {
    pub fn new() -> Self {
        TcbObj {
            state: ThreadState::Inactive,
            priority: 0,
            affinity: 0,
            mcp: 0,
            fault_handler: 0,
            ipc_buffer: 0,
            regs: UserContext { spsr: PSTATE_USER, ..Default::default() },
            bound_ntfn: None,
            vcpu: None,
            replies: Vec::new(),
            fault: None,
        }
    }
}

/// `PSTATE_USER` of a debug build: EL0t with FIQs masked.
pub(crate) const PSTATE_USER: u64 = 1 << 6;

/// `sanitiseRegister(SPSR_EL1, v, archInfo)`: a thread without a VCPU runs only at EL0.
pub(crate) fn sanitise_spsr(v: u64, has_vcpu: bool) -> u64 {
    const EL0T: u64 = 0;
    const EL1T: u64 = 4;
    const EL1H: u64 = 5;
    if has_vcpu && matches!(v & 0x1f, EL0T | EL1T | EL1H) {
        return v;
    }
    (v & 0xf000_0000) | PSTATE_USER
}

/// How a queued message was sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SendKind {
    Send,
    Call,
    Fault,
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub sender: Option<u64>,
    pub badge: u64,
    pub msg: Message,
    pub kind: SendKind,
}

#[derive(Debug, Default)]
pub(crate) struct EndpointObj {
    /// Messages waiting for a receiver.
    pub queue: VecDeque<Pending>,
    /// Messages the root task sent with no server attached (harness-visible).
    pub sent: Vec<Message>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NtfnObj {
    /// `NtfnState_Active`: signalled since the last wait or poll.
    pub active: bool,
    pub word: u64,
    pub bound_tcb: Option<u64>,
}

/// A translation table entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pte {
    /// Next-level table at this physical address.
    Table(u64),
    /// A frame mapping.
    Page { paddr: u64, size: FrameSize, rights: VmRights, attrs: VmAttributes },
}

#[derive(Clone, Debug)]
pub(crate) struct TableObj {
    pub is_vspace: bool,
    pub entries: BTreeMap<u64, Pte>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AsidPoolObj {
    /// Low ASID bits to the VSpace root's base.
    pub entries: BTreeMap<u16, u64>,
}

/// One virtual IRQ written into a list register by `VCPU_InjectIRQ`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Injection {
    /// Virtual IRQ number.
    pub virq: u16,
    /// Priority (0..=31).
    pub priority: u8,
    /// Group (0 or 1).
    pub group: u8,
    /// List register index.
    pub index: u8,
}

/// State of a list register as the kernel sees it (`virq_type`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ListRegister {
    /// Free.
    Invalid,
    /// Holds an injected, not yet acknowledged IRQ.
    Pending(Injection),
    /// The guest is handling the IRQ; the kernel refuses to overwrite it.
    Active(Injection),
}

#[derive(Clone, Debug)]
pub(crate) struct VCpuObj {
    pub regs: [u64; VCPU_REGS],
    pub lrs: Vec<ListRegister>,
    pub tcb: Option<u64>,
    pub vppi_masked: bool,
    pub injections: Vec<Injection>,
}

/// `seL4_VCPUReg_Num`.
pub(crate) const VCPU_REGS: usize = 24;

/// `SCTLR_EL1_VM`, the SCTLR a new VCPU starts with (`armv_vcpu_init`): the Cortex-A57 reserved
/// value with CP15BEN, nTWI, nTWE, UCT and UCI set.
pub(crate) const SCTLR_EL1_VM: u64 = 0x30d0_0800 | 1 << 5 | 1 << 16 | 1 << 18 | 1 << 15 | 1 << 26;

impl VCpuObj {
    pub fn new(list_regs: usize) -> Self {
        let mut regs = [0; VCPU_REGS];
        regs[0] = SCTLR_EL1_VM;
        VCpuObj {
            regs,
            lrs: vec![ListRegister::Invalid; list_regs],
            tcb: None,
            vppi_masked: false,
            injections: Vec::new(),
        }
    }
}

/// The kernel's per-IRQ state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IrqState {
    Inactive,
    Signal,
    Reserved,
}

/// Where a frame is mapped, as the page tables say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// Physical address the virtual address translates to.
    pub paddr: sel4::PhysAddr,
    /// Size of the frame mapping it.
    pub size: FrameSize,
    /// Start of that frame's mapping.
    pub frame_vaddr: VirtAddr,
    /// Mapping rights.
    pub rights: VmRights,
    /// Mapping attributes.
    pub attrs: VmAttributes,
}
