//! The kernel trait: every operation capvisor performs on seL4, as one trait with two
//! implementations, the real system calls on the target (`sel4::RealKernel`) and the
//! executable model on the host (`sel4_model::Model`).
//!
//! Policy code (untyped planning, the capability table, exit handling) is generic over
//! [`Kernel`], so it runs unchanged under `cargo test` and on the board. Each method is one
//! kernel invocation or system call; costs are counted in invocations, so a method never
//! hides a loop of kernel calls.
//!
//! CNode addressing: the root task's CSpace is single-level, so a [`Slot`] of the root CNode
//! is its own CPtr. Operations that target another CSpace (a server's or a guest's) name the
//! destination with a [`CNodeSlot`].

use crate::addr::{PhysAddr, VirtAddr};
use crate::cap::{CPtr, Cap, CapRights, Slot, VmAttributes, cap_type};
use crate::error::Result;
use crate::message_info::MessageInfo;
use crate::object::ObjectBlueprint;

/// A slot addressed through a CNode capability: `(cnode, index, depth)` as CNode invocations
/// take it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CNodeSlot {
    /// The CNode capability through which the slot is addressed.
    pub cnode: Cap<cap_type::CNode>,
    /// Index resolved from `cnode`.
    pub index: u64,
    /// Bits of `index` to resolve.
    pub depth: u8,
}

impl CNodeSlot {
    /// A slot of the root task's own root CNode (depth 64: the whole CPtr).
    pub const fn root(slot: Slot) -> Self {
        CNodeSlot { cnode: crate::bootinfo::init_cap::CNODE.cap(), index: slot.index(), depth: 64 }
    }
}

/// The AArch64 register file of a thread (`seL4_UserContext`), by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct UserContext {
    /// Program counter.
    pub pc: u64,
    /// Stack pointer.
    pub sp: u64,
    /// Saved program status (for a VCPU thread: the guest's PSTATE, e.g. EL1h = 0x5 | DAIF).
    pub spsr: u64,
    /// `x0` to `x30`.
    pub x: [u64; 31],
    /// `tpidr_el0`.
    pub tpidr_el0: u64,
    /// `tpidrro_el0`.
    pub tpidrro_el0: u64,
}

impl UserContext {
    /// Number of words in the kernel's `seL4_UserContext`.
    pub const WORDS: usize = 36;

    /// Index of register `xN` (0..=30) in the kernel's word order.
    const fn x_word(n: usize) -> usize {
        match n {
            0..=8 => 3 + n,
            16..=18 => 12 + (n - 16),
            29 => 15,
            30 => 16,
            9..=15 => 17 + (n - 9),
            _ => 24 + (n - 19), // 19..=28
        }
    }

    /// The registers in the order the kernel reads and writes them:
    /// pc, sp, spsr, x0-x8, x16-x18, x29, x30, x9-x15, x19-x28, tpidr_el0, tpidrro_el0.
    pub fn to_words(&self) -> [u64; Self::WORDS] {
        let mut w = [0; Self::WORDS];
        w[0] = self.pc;
        w[1] = self.sp;
        w[2] = self.spsr;
        for (n, v) in self.x.iter().enumerate() {
            w[Self::x_word(n)] = *v;
        }
        w[34] = self.tpidr_el0;
        w[35] = self.tpidrro_el0;
        w
    }

    /// The inverse of [`UserContext::to_words`].
    pub fn from_words(w: &[u64; Self::WORDS]) -> Self {
        let mut c = UserContext { pc: w[0], sp: w[1], spsr: w[2], ..Default::default() };
        for n in 0..31 {
            c.x[n] = w[Self::x_word(n)];
        }
        c.tpidr_el0 = w[34];
        c.tpidrro_el0 = w[35];
        c
    }
}

/// Cache maintenance on a frame's bytes ([`Kernel::page_flush`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CacheOp {
    /// `Clean_Data`: write dirty data lines back to memory (the point of coherency).
    CleanData,
    /// `Invalidate_Data`: drop the data lines (partial lines at the ends are cleaned first).
    InvalidateData,
    /// `CleanInvalidate_Data`: write back, then drop.
    CleanInvalidateData,
    /// `Unify_Instruction`: clean data to the point of unification and invalidate the
    /// instruction lines, so that code written as data is fetched afresh.
    UnifyInstruction,
}

/// A VCPU system register (`seL4_VCPUReg`, AArch64 numbering).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u64)]
#[allow(missing_docs)]
pub enum VCpuReg {
    Sctlr = 0,
    Cpacr,
    Ttbr0,
    Ttbr1,
    Tcr,
    Mair,
    Amair,
    Cidr,
    Actlr,
    Afsr0,
    Afsr1,
    Esr,
    Far,
    Par,
    Vbar,
    TpidrEl1,
    VmpidrEl2,
    SpEl1,
    ElrEl1,
    SpsrEl1,
    CntvCtl,
    CntvCval,
    Cntvoff,
    CntkctlEl1,
}

/// Number of message registers a [`Message`] carries. Enough for every fault message and
/// capvisor's own protocols; the kernel allows 120.
pub const MESSAGE_WORDS: usize = 32;

/// An IPC message: tag plus message registers (only the first `info.length()` are valid).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Message {
    /// Label, length, caps.
    pub info: MessageInfo,
    /// Message registers.
    pub mrs: [u64; MESSAGE_WORDS],
}

impl Message {
    /// A message with `label` and the given words (at most [`MESSAGE_WORDS`]; extra words are
    /// dropped, which callers avoid by construction).
    pub fn new(label: u64, words: &[u64]) -> Self {
        let n = words.len().min(MESSAGE_WORDS);
        let mut mrs = [0; MESSAGE_WORDS];
        mrs[..n].copy_from_slice(&words[..n]);
        Message { info: MessageInfo::new(label, 0, 0, n as u64), mrs }
    }

    /// The valid message registers.
    pub fn words(&self) -> &[u64] {
        let n = (self.info.length() as usize).min(MESSAGE_WORDS);
        &self.mrs[..n]
    }
}

/// A message received on an endpoint, with the badge of the capability it was sent through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Received {
    /// The sender's badge (for a fault: the badge of the faulting thread's fault endpoint).
    pub badge: u64,
    /// The message.
    pub msg: Message,
}

/// Kind of a kernel entry, for the invocation counters that tests and benchmarks assert on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Op {
    UntypedRetype,
    CNodeCopy,
    CNodeMint,
    CNodeMove,
    CNodeDelete,
    CNodeRevoke,
    PageMap,
    PageUnmap,
    PageGetAddress,
    PageFlush,
    PageTableMap,
    PageTableUnmap,
    AsidControlMakePool,
    AsidPoolAssign,
    TcbConfigure,
    TcbSetPriority,
    TcbSetAffinity,
    TcbWriteRegisters,
    TcbReadRegisters,
    TcbResume,
    TcbSuspend,
    TcbBindNotification,
    VCpuSetTcb,
    VCpuInjectIrq,
    VCpuReadReg,
    VCpuWriteReg,
    VCpuAckVppi,
    IrqControlGet,
    IrqHandlerAck,
    IrqHandlerSetNotification,
    Call,
    Send,
    Recv,
    Reply,
    ReplyRecv,
    Signal,
    Wait,
    Poll,
    Yield,
}

impl Op {
    /// Every kind, in a stable order (for tables).
    pub const ALL: [Op; 39] = [
        Op::UntypedRetype,
        Op::CNodeCopy,
        Op::CNodeMint,
        Op::CNodeMove,
        Op::CNodeDelete,
        Op::CNodeRevoke,
        Op::PageMap,
        Op::PageUnmap,
        Op::PageGetAddress,
        Op::PageFlush,
        Op::PageTableMap,
        Op::PageTableUnmap,
        Op::AsidControlMakePool,
        Op::AsidPoolAssign,
        Op::TcbConfigure,
        Op::TcbSetPriority,
        Op::TcbSetAffinity,
        Op::TcbWriteRegisters,
        Op::TcbReadRegisters,
        Op::TcbResume,
        Op::TcbSuspend,
        Op::TcbBindNotification,
        Op::VCpuSetTcb,
        Op::VCpuInjectIrq,
        Op::VCpuReadReg,
        Op::VCpuWriteReg,
        Op::VCpuAckVppi,
        Op::IrqControlGet,
        Op::IrqHandlerAck,
        Op::IrqHandlerSetNotification,
        Op::Call,
        Op::Send,
        Op::Recv,
        Op::Reply,
        Op::ReplyRecv,
        Op::Signal,
        Op::Wait,
        Op::Poll,
        Op::Yield,
    ];
}

/// The seL4 operations capvisor uses. One method, one kernel entry.
pub trait Kernel {
    // ---- Untyped ----

    /// `seL4_Untyped_Retype`: create `count` objects of `blueprint` from `untyped`, their
    /// caps in the root CNode slots `dest .. dest + count`.
    fn untyped_retype(
        &mut self,
        untyped: Cap<cap_type::Untyped>,
        blueprint: ObjectBlueprint,
        dest: Slot,
        count: u64,
    ) -> Result<()>;

    // ---- CNode ----

    /// `seL4_CNode_Copy` from a root CNode slot, with `rights` masked in.
    fn cnode_copy(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights) -> Result<()>;
    /// `seL4_CNode_Mint`: copy with rights masked and a badge (endpoints, notifications).
    fn cnode_mint(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> Result<()>;
    /// `seL4_CNode_Move` within or out of the root CNode.
    fn cnode_move(&mut self, dest: CNodeSlot, src: Slot) -> Result<()>;
    /// `seL4_CNode_Delete`.
    fn cnode_delete(&mut self, slot: CNodeSlot) -> Result<()>;
    /// `seL4_CNode_Revoke`: delete every capability derived from this one.
    fn cnode_revoke(&mut self, slot: CNodeSlot) -> Result<()>;

    // ---- Address spaces ----

    /// `seL4_ARM_Page_Map`: map a frame of any size at `vaddr` in `vspace`.
    fn page_map(
        &mut self,
        frame: Cap<cap_type::Frame>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Result<()>;
    /// `seL4_ARM_Page_Unmap`.
    fn page_unmap(&mut self, frame: Cap<cap_type::Frame>) -> Result<()>;
    /// `seL4_ARM_Page_GetAddress`: the frame's physical address.
    fn page_get_address(&mut self, frame: Cap<cap_type::Frame>) -> Result<PhysAddr>;
    /// `seL4_ARM_Page_Clean_Data` and its siblings ([`CacheOp`]): cache maintenance on bytes
    /// `[start, end)` of a frame, offsets from its base. The frame must be mapped somewhere
    /// (the kernel refuses an unmapped one); with hypervisor support the kernel works through
    /// its own window, whatever the mapping.
    fn page_flush(&mut self, frame: Cap<cap_type::Frame>, op: CacheOp, start: u64, end: u64) -> Result<()>;
    /// `seL4_ARM_PageTable_Map`: install a translation table covering `vaddr`.
    fn page_table_map(
        &mut self,
        table: Cap<cap_type::PageTable>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        attrs: VmAttributes,
    ) -> Result<()>;
    /// `seL4_ARM_PageTable_Unmap`.
    fn page_table_unmap(&mut self, table: Cap<cap_type::PageTable>) -> Result<()>;
    /// `seL4_ARM_ASIDControl_MakePool`: turn a 4 KiB untyped into an ASID pool.
    fn asid_control_make_pool(
        &mut self,
        control: Cap<cap_type::AsidControl>,
        untyped: Cap<cap_type::Untyped>,
        dest: CNodeSlot,
    ) -> Result<()>;
    /// `seL4_ARM_ASIDPool_Assign`: give a VSpace an ASID.
    fn asid_pool_assign(&mut self, pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> Result<()>;

    // ---- Threads and VCPUs ----

    /// `seL4_TCB_Configure` (non-MCS): fault endpoint, CSpace, VSpace, IPC buffer.
    #[allow(clippy::too_many_arguments)]
    fn tcb_configure(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        fault_ep: CPtr,
        cspace_root: Cap<cap_type::CNode>,
        cspace_root_data: u64,
        vspace_root: Cap<cap_type::VSpace>,
        ipc_buffer_addr: VirtAddr,
        ipc_buffer_frame: Cap<cap_type::Granule>,
    ) -> Result<()>;
    /// `seL4_TCB_SetPriority`, with the authority of `authority`'s MCP.
    fn tcb_set_priority(&mut self, tcb: Cap<cap_type::Tcb>, authority: Cap<cap_type::Tcb>, priority: u64)
    -> Result<()>;
    /// `seL4_TCB_SetAffinity` (non-MCS, multicore kernels): the thread runs on core `core`
    /// (0-based, below the bootinfo's `numNodes`) from now on. A kernel built for one core has
    /// no such invocation and answers `IllegalOperation`, as for any label it does not know.
    fn tcb_set_affinity(&mut self, tcb: Cap<cap_type::Tcb>, core: u64) -> Result<()>;
    /// `seL4_TCB_WriteRegisters` of the whole register file; `resume` starts the thread.
    fn tcb_write_registers(&mut self, tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> Result<()>;
    /// `seL4_TCB_WriteRegisters` of only the first `count` words of the register file, in the
    /// kernel's order ([`UserContext::to_words`]: pc, sp, spsr, x0-x8, ...); the thread's other
    /// registers keep their values. `count` 1 moves only the PC, which is what an emulated
    /// access needs; a `count` above [`UserContext::WORDS`] writes them all.
    fn tcb_write_registers_prefix(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Result<()>;
    /// `seL4_TCB_ReadRegisters` of the whole register file.
    fn tcb_read_registers(&mut self, tcb: Cap<cap_type::Tcb>, suspend: bool) -> Result<UserContext>;
    /// `seL4_TCB_Resume`.
    fn tcb_resume(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()>;
    /// `seL4_TCB_Suspend`.
    fn tcb_suspend(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()>;
    /// `seL4_TCB_BindNotification`.
    fn tcb_bind_notification(&mut self, tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> Result<()>;
    /// `seL4_ARM_VCPU_SetTCB`: bind a VCPU to the thread that runs it.
    fn vcpu_set_tcb(&mut self, vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> Result<()>;
    /// `seL4_ARM_VCPU_InjectIRQ` into list register `index`.
    fn vcpu_inject_irq(
        &mut self,
        vcpu: Cap<cap_type::VCpu>,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<()>;
    /// `seL4_ARM_VCPU_ReadRegs`.
    fn vcpu_read_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> Result<u64>;
    /// `seL4_ARM_VCPU_WriteRegs`.
    fn vcpu_write_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> Result<()>;
    /// `seL4_ARM_VCPU_AckVPPI`: re-enable delivery of a virtual PPI.
    fn vcpu_ack_vppi(&mut self, vcpu: Cap<cap_type::VCpu>, irq: u64) -> Result<()>;

    // ---- Interrupts ----

    /// `seL4_IRQControl_GetTrigger`: an IRQ handler for `irq` (edge or level) into `dest`.
    fn irq_control_get(
        &mut self,
        control: Cap<cap_type::IrqControl>,
        irq: u64,
        edge_triggered: bool,
        dest: CNodeSlot,
    ) -> Result<()>;
    /// `seL4_IRQHandler_Ack`.
    fn irq_handler_ack(&mut self, handler: Cap<cap_type::IrqHandler>) -> Result<()>;
    /// `seL4_IRQHandler_SetNotification`.
    fn irq_handler_set_notification(
        &mut self,
        handler: Cap<cap_type::IrqHandler>,
        ntfn: Cap<cap_type::Notification>,
    ) -> Result<()>;

    // ---- IPC system calls ----

    /// `seL4_Call`: send and wait for the reply.
    fn call(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Message;
    /// `seL4_Send` (blocking).
    fn send(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message);
    /// `seL4_Recv`: wait for a message (or fault) on an endpoint.
    fn recv(&mut self, ep: Cap<cap_type::Endpoint>) -> Received;
    /// `seL4_Reply` to the last caller.
    fn reply(&mut self, msg: &Message);
    /// `seL4_ReplyRecv`: reply to the last caller and wait for the next message.
    fn reply_recv(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Received;
    /// `seL4_Signal`.
    fn signal(&mut self, ntfn: Cap<cap_type::Notification>);
    /// `seL4_Wait`: block until signalled; returns the accumulated badge bits.
    fn wait(&mut self, ntfn: Cap<cap_type::Notification>) -> u64;
    /// `seL4_Poll`: the accumulated badge bits, 0 when not signalled; never blocks.
    fn poll(&mut self, ntfn: Cap<cap_type::Notification>) -> u64;
    /// `seL4_Yield`.
    fn yield_now(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_context_word_order_matches_the_kernel() {
        let mut c = UserContext { pc: 1, sp: 2, spsr: 3, tpidr_el0: 77, tpidrro_el0: 78, ..Default::default() };
        for n in 0..31 {
            c.x[n] = 100 + n as u64;
        }
        let w = c.to_words();
        assert_eq!(&w[..3], &[1, 2, 3]);
        // pc, sp, spsr, x0..x8, x16, x17, x18, x29, x30, x9..x15, x19..x28, tpidr, tpidrro
        let xs: [usize; 31] = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 17, 18, 29, 30, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23, 24, 25, 26,
            27, 28,
        ];
        for (i, n) in xs.iter().enumerate() {
            assert_eq!(w[3 + i], 100 + *n as u64, "word {}", 3 + i);
        }
        assert_eq!(&w[34..], &[77, 78]);
        assert_eq!(UserContext::from_words(&w), c);
    }

    #[test]
    fn message_keeps_only_its_length() {
        let m = Message::new(7, &[1, 2, 3]);
        assert_eq!(m.info.label(), 7);
        assert_eq!(m.words(), &[1, 2, 3]);
    }
}
