//! [`Counting`]: a [`Kernel`] that passes every call to the kernel it wraps and counts it by
//! [`Op`], so the same cost accounting runs over the real kernel (which counts nothing) and
//! the model.
//!
//! Owns only its counters; never changes an argument or a result.

use sel4::cap_type as ct;
use sel4::{CNodeSlot, CPtr, Cap, CapRights, Kernel, Message, ObjectBlueprint, Op, PhysAddr, Received, Slot};
use sel4::{UserContext, VCpuReg, VirtAddr, VmAttributes};

/// Invocation counts, one per [`Op`] (in [`Op::ALL`] order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts([u64; Op::ALL.len()]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; Op::ALL.len()])
    }
}

impl Counts {
    fn index(op: Op) -> usize {
        // `Op::ALL` lists every variant once, so the search always succeeds.
        Op::ALL.iter().position(|o| *o == op).unwrap_or(0)
    }

    /// Calls of one kind.
    pub fn get(&self, op: Op) -> u64 {
        self.0[Self::index(op)]
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The calls made between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut d = Counts::default();
        for (i, v) in d.0.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(earlier.0[i]);
        }
        d
    }
}

/// A kernel that counts the calls it passes on. See the module docs.
pub struct Counting<K> {
    inner: K,
    counts: Counts,
}

impl<K> Counting<K> {
    /// Wraps `inner` with all counts at 0.
    pub fn new(inner: K) -> Self {
        Counting { inner, counts: Counts::default() }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The wrapped kernel.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// The wrapped kernel, for calls that should not be counted.
    pub fn inner_mut(&mut self) -> &mut K {
        &mut self.inner
    }

    /// Gives the wrapped kernel back.
    pub fn into_inner(self) -> K {
        self.inner
    }

    fn count(&mut self, op: Op) -> &mut K {
        self.counts.0[Counts::index(op)] += 1;
        &mut self.inner
    }
}

/// The `Kernel` methods, each passing its call to `$target` after binding `$op` to its
/// [`Op`] (the one list serves [`Counting`] and [`KernelRef`]).
macro_rules! forward {
    ($s:ident, $op:ident => $target:expr) => {
        fn untyped_retype(&mut $s, u: Cap<ct::Untyped>, b: ObjectBlueprint, dest: Slot, count: u64) -> sel4::Result<()> {
            { let $op = Op::UntypedRetype; $target }.untyped_retype(u, b, dest, count)
        }
        fn cnode_copy(&mut $s, dest: CNodeSlot, src: Slot, rights: CapRights) -> sel4::Result<()> {
            { let $op = Op::CNodeCopy; $target }.cnode_copy(dest, src, rights)
        }
        fn cnode_mint(&mut $s, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> sel4::Result<()> {
            { let $op = Op::CNodeMint; $target }.cnode_mint(dest, src, rights, badge)
        }
        fn cnode_move(&mut $s, dest: CNodeSlot, src: Slot) -> sel4::Result<()> {
            { let $op = Op::CNodeMove; $target }.cnode_move(dest, src)
        }
        fn cnode_delete(&mut $s, slot: CNodeSlot) -> sel4::Result<()> {
            { let $op = Op::CNodeDelete; $target }.cnode_delete(slot)
        }
        fn cnode_revoke(&mut $s, slot: CNodeSlot) -> sel4::Result<()> {
            { let $op = Op::CNodeRevoke; $target }.cnode_revoke(slot)
        }
        fn page_map(
            &mut $s,
            frame: Cap<ct::Frame>,
            vspace: Cap<ct::VSpace>,
            vaddr: VirtAddr,
            rights: CapRights,
            attrs: VmAttributes,
        ) -> sel4::Result<()> {
            { let $op = Op::PageMap; $target }.page_map(frame, vspace, vaddr, rights, attrs)
        }
        fn page_unmap(&mut $s, frame: Cap<ct::Frame>) -> sel4::Result<()> {
            { let $op = Op::PageUnmap; $target }.page_unmap(frame)
        }
        fn page_get_address(&mut $s, frame: Cap<ct::Frame>) -> sel4::Result<PhysAddr> {
            { let $op = Op::PageGetAddress; $target }.page_get_address(frame)
        }
        fn page_table_map(
            &mut $s,
            table: Cap<ct::PageTable>,
            vspace: Cap<ct::VSpace>,
            vaddr: VirtAddr,
            attrs: VmAttributes,
        ) -> sel4::Result<()> {
            { let $op = Op::PageTableMap; $target }.page_table_map(table, vspace, vaddr, attrs)
        }
        fn page_table_unmap(&mut $s, table: Cap<ct::PageTable>) -> sel4::Result<()> {
            { let $op = Op::PageTableUnmap; $target }.page_table_unmap(table)
        }
        fn asid_control_make_pool(
            &mut $s,
            control: Cap<ct::AsidControl>,
            untyped: Cap<ct::Untyped>,
            dest: CNodeSlot,
        ) -> sel4::Result<()> {
            { let $op = Op::AsidControlMakePool; $target }.asid_control_make_pool(control, untyped, dest)
        }
        fn asid_pool_assign(&mut $s, pool: Cap<ct::AsidPool>, vspace: Cap<ct::VSpace>) -> sel4::Result<()> {
            { let $op = Op::AsidPoolAssign; $target }.asid_pool_assign(pool, vspace)
        }
        fn tcb_configure(
            &mut $s,
            tcb: Cap<ct::Tcb>,
            fault_ep: CPtr,
            cspace_root: Cap<ct::CNode>,
            cspace_root_data: u64,
            vspace_root: Cap<ct::VSpace>,
            ipc_buffer_addr: VirtAddr,
            ipc_buffer_frame: Cap<ct::Granule>,
        ) -> sel4::Result<()> {
            { let $op = Op::TcbConfigure; $target }.tcb_configure(
                tcb,
                fault_ep,
                cspace_root,
                cspace_root_data,
                vspace_root,
                ipc_buffer_addr,
                ipc_buffer_frame,
            )
        }
        fn tcb_set_priority(&mut $s, tcb: Cap<ct::Tcb>, authority: Cap<ct::Tcb>, priority: u64) -> sel4::Result<()> {
            { let $op = Op::TcbSetPriority; $target }.tcb_set_priority(tcb, authority, priority)
        }
        fn tcb_write_registers(&mut $s, tcb: Cap<ct::Tcb>, resume: bool, regs: &UserContext) -> sel4::Result<()> {
            { let $op = Op::TcbWriteRegisters; $target }.tcb_write_registers(tcb, resume, regs)
        }
        fn tcb_write_registers_prefix(
            &mut $s,
            tcb: Cap<ct::Tcb>,
            resume: bool,
            regs: &UserContext,
            count: usize,
        ) -> sel4::Result<()> {
            { let $op = Op::TcbWriteRegisters; $target }.tcb_write_registers_prefix(tcb, resume, regs, count)
        }
        fn tcb_read_registers(&mut $s, tcb: Cap<ct::Tcb>, suspend: bool) -> sel4::Result<UserContext> {
            { let $op = Op::TcbReadRegisters; $target }.tcb_read_registers(tcb, suspend)
        }
        fn tcb_resume(&mut $s, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
            { let $op = Op::TcbResume; $target }.tcb_resume(tcb)
        }
        fn tcb_suspend(&mut $s, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
            { let $op = Op::TcbSuspend; $target }.tcb_suspend(tcb)
        }
        fn tcb_bind_notification(&mut $s, tcb: Cap<ct::Tcb>, ntfn: Cap<ct::Notification>) -> sel4::Result<()> {
            { let $op = Op::TcbBindNotification; $target }.tcb_bind_notification(tcb, ntfn)
        }
        fn vcpu_set_tcb(&mut $s, vcpu: Cap<ct::VCpu>, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
            { let $op = Op::VCpuSetTcb; $target }.vcpu_set_tcb(vcpu, tcb)
        }
        fn vcpu_inject_irq(&mut $s, vcpu: Cap<ct::VCpu>, virq: u16, priority: u8, group: u8, index: u8) -> sel4::Result<()> {
            { let $op = Op::VCpuInjectIrq; $target }.vcpu_inject_irq(vcpu, virq, priority, group, index)
        }
        fn vcpu_read_reg(&mut $s, vcpu: Cap<ct::VCpu>, reg: VCpuReg) -> sel4::Result<u64> {
            { let $op = Op::VCpuReadReg; $target }.vcpu_read_reg(vcpu, reg)
        }
        fn vcpu_write_reg(&mut $s, vcpu: Cap<ct::VCpu>, reg: VCpuReg, value: u64) -> sel4::Result<()> {
            { let $op = Op::VCpuWriteReg; $target }.vcpu_write_reg(vcpu, reg, value)
        }
        fn vcpu_ack_vppi(&mut $s, vcpu: Cap<ct::VCpu>, irq: u64) -> sel4::Result<()> {
            { let $op = Op::VCpuAckVppi; $target }.vcpu_ack_vppi(vcpu, irq)
        }
        fn irq_control_get(
            &mut $s,
            control: Cap<ct::IrqControl>,
            irq: u64,
            edge_triggered: bool,
            dest: CNodeSlot,
        ) -> sel4::Result<()> {
            { let $op = Op::IrqControlGet; $target }.irq_control_get(control, irq, edge_triggered, dest)
        }
        fn irq_handler_ack(&mut $s, handler: Cap<ct::IrqHandler>) -> sel4::Result<()> {
            { let $op = Op::IrqHandlerAck; $target }.irq_handler_ack(handler)
        }
        fn irq_handler_set_notification(
            &mut $s,
            handler: Cap<ct::IrqHandler>,
            ntfn: Cap<ct::Notification>,
        ) -> sel4::Result<()> {
            { let $op = Op::IrqHandlerSetNotification; $target }.irq_handler_set_notification(handler, ntfn)
        }
        fn call(&mut $s, ep: Cap<ct::Endpoint>, msg: &Message) -> Message {
            { let $op = Op::Call; $target }.call(ep, msg)
        }
        fn send(&mut $s, ep: Cap<ct::Endpoint>, msg: &Message) {
            { let $op = Op::Send; $target }.send(ep, msg)
        }
        fn recv(&mut $s, ep: Cap<ct::Endpoint>) -> Received {
            { let $op = Op::Recv; $target }.recv(ep)
        }
        fn reply(&mut $s, msg: &Message) {
            { let $op = Op::Reply; $target }.reply(msg)
        }
        fn reply_recv(&mut $s, ep: Cap<ct::Endpoint>, msg: &Message) -> Received {
            { let $op = Op::ReplyRecv; $target }.reply_recv(ep, msg)
        }
        fn signal(&mut $s, ntfn: Cap<ct::Notification>) {
            { let $op = Op::Signal; $target }.signal(ntfn)
        }
        fn wait(&mut $s, ntfn: Cap<ct::Notification>) -> u64 {
            { let $op = Op::Wait; $target }.wait(ntfn)
        }
        fn poll(&mut $s, ntfn: Cap<ct::Notification>) -> u64 {
            { let $op = Op::Poll; $target }.poll(ntfn)
        }
        fn yield_now(&mut $s) {
            { let $op = Op::Yield; $target }.yield_now()
        }
    };
}

impl<K: Kernel> Kernel for Counting<K> {
    forward!(self, op => self.count(op));
}

/// A kernel borrowed for a while: lets a caller that must get its kernel back (the root
/// task's `RealKernel` holds the thread's only IPC buffer) lend it to a HAL that takes its
/// kernel by value. Passes every call on unchanged.
pub struct KernelRef<'k, K>(pub &'k mut K);

impl<K: Kernel> Kernel for KernelRef<'_, K> {
    forward!(self, _op => &mut *self.0);
}
