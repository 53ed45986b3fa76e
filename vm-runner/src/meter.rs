//! A [`Kernel`] that counts: every entry the wrapped kernel makes is logged by [`Op`], so the
//! run loop reports the system calls it *made* per exit kind, next to the costs
//! [`crate::Action::ops`] predicts. On the model the model's own counters check the meter.
//!
//! Owns the log only; forwards every call unchanged.

use alloc::vec::Vec;

use sel4::cap_type;
use sel4::{
    CNodeSlot, CPtr, Cap, CapRights, Kernel, Message, ObjectBlueprint, Op, PhysAddr, Received, Result, Slot,
    UserContext, VCpuReg, VirtAddr, VmAttributes,
};

/// A kernel that logs each entry before making it.
pub struct Meter<'k, K: Kernel> {
    inner: &'k mut K,
    log: Vec<Op>,
}

impl<'k, K: Kernel> Meter<'k, K> {
    /// Wraps `inner` with an empty log.
    pub fn new(inner: &'k mut K) -> Self {
        Meter { inner, log: Vec::new() }
    }

    fn count(&mut self, op: Op) {
        self.log.push(op);
    }

    /// The entries made since the last call, oldest first; clears the log.
    pub fn take(&mut self) -> Vec<Op> {
        core::mem::take(&mut self.log)
    }

    /// Entries logged and not yet taken.
    pub fn pending(&self) -> usize {
        self.log.len()
    }
}

impl<K: Kernel> Kernel for Meter<'_, K> {
    fn untyped_retype(
        &mut self,
        untyped: Cap<cap_type::Untyped>,
        blueprint: ObjectBlueprint,
        dest: Slot,
        count: u64,
    ) -> Result<()> {
        self.count(Op::UntypedRetype);
        self.inner.untyped_retype(untyped, blueprint, dest, count)
    }

    fn cnode_copy(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights) -> Result<()> {
        self.count(Op::CNodeCopy);
        self.inner.cnode_copy(dest, src, rights)
    }

    fn cnode_mint(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> Result<()> {
        self.count(Op::CNodeMint);
        self.inner.cnode_mint(dest, src, rights, badge)
    }

    fn cnode_move(&mut self, dest: CNodeSlot, src: Slot) -> Result<()> {
        self.count(Op::CNodeMove);
        self.inner.cnode_move(dest, src)
    }

    fn cnode_delete(&mut self, slot: CNodeSlot) -> Result<()> {
        self.count(Op::CNodeDelete);
        self.inner.cnode_delete(slot)
    }

    fn cnode_revoke(&mut self, slot: CNodeSlot) -> Result<()> {
        self.count(Op::CNodeRevoke);
        self.inner.cnode_revoke(slot)
    }

    fn page_map(
        &mut self,
        frame: Cap<cap_type::Frame>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Result<()> {
        self.count(Op::PageMap);
        self.inner.page_map(frame, vspace, vaddr, rights, attrs)
    }

    fn page_unmap(&mut self, frame: Cap<cap_type::Frame>) -> Result<()> {
        self.count(Op::PageUnmap);
        self.inner.page_unmap(frame)
    }

    fn page_get_address(&mut self, frame: Cap<cap_type::Frame>) -> Result<PhysAddr> {
        self.count(Op::PageGetAddress);
        self.inner.page_get_address(frame)
    }

    fn page_table_map(
        &mut self,
        table: Cap<cap_type::PageTable>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        attrs: VmAttributes,
    ) -> Result<()> {
        self.count(Op::PageTableMap);
        self.inner.page_table_map(table, vspace, vaddr, attrs)
    }

    fn page_table_unmap(&mut self, table: Cap<cap_type::PageTable>) -> Result<()> {
        self.count(Op::PageTableUnmap);
        self.inner.page_table_unmap(table)
    }

    fn asid_control_make_pool(
        &mut self,
        control: Cap<cap_type::AsidControl>,
        untyped: Cap<cap_type::Untyped>,
        dest: CNodeSlot,
    ) -> Result<()> {
        self.count(Op::AsidControlMakePool);
        self.inner.asid_control_make_pool(control, untyped, dest)
    }

    fn asid_pool_assign(&mut self, pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> Result<()> {
        self.count(Op::AsidPoolAssign);
        self.inner.asid_pool_assign(pool, vspace)
    }

    fn tcb_configure(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        fault_ep: CPtr,
        cspace_root: Cap<cap_type::CNode>,
        cspace_root_data: u64,
        vspace_root: Cap<cap_type::VSpace>,
        ipc_buffer_addr: VirtAddr,
        ipc_buffer_frame: Cap<cap_type::Granule>,
    ) -> Result<()> {
        self.count(Op::TcbConfigure);
        self.inner.tcb_configure(
            tcb,
            fault_ep,
            cspace_root,
            cspace_root_data,
            vspace_root,
            ipc_buffer_addr,
            ipc_buffer_frame,
        )
    }

    fn tcb_set_priority(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        authority: Cap<cap_type::Tcb>,
        priority: u64,
    ) -> Result<()> {
        self.count(Op::TcbSetPriority);
        self.inner.tcb_set_priority(tcb, authority, priority)
    }

    fn tcb_write_registers(&mut self, tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> Result<()> {
        self.count(Op::TcbWriteRegisters);
        self.inner.tcb_write_registers(tcb, resume, regs)
    }

    fn tcb_write_registers_prefix(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Result<()> {
        self.count(Op::TcbWriteRegisters);
        self.inner.tcb_write_registers_prefix(tcb, resume, regs, count)
    }

    fn tcb_read_registers(&mut self, tcb: Cap<cap_type::Tcb>, suspend: bool) -> Result<UserContext> {
        self.count(Op::TcbReadRegisters);
        self.inner.tcb_read_registers(tcb, suspend)
    }

    fn tcb_resume(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.count(Op::TcbResume);
        self.inner.tcb_resume(tcb)
    }

    fn tcb_suspend(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.count(Op::TcbSuspend);
        self.inner.tcb_suspend(tcb)
    }

    fn tcb_bind_notification(&mut self, tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> Result<()> {
        self.count(Op::TcbBindNotification);
        self.inner.tcb_bind_notification(tcb, ntfn)
    }

    fn vcpu_set_tcb(&mut self, vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.count(Op::VCpuSetTcb);
        self.inner.vcpu_set_tcb(vcpu, tcb)
    }

    fn vcpu_inject_irq(
        &mut self,
        vcpu: Cap<cap_type::VCpu>,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<()> {
        self.count(Op::VCpuInjectIrq);
        self.inner.vcpu_inject_irq(vcpu, virq, priority, group, index)
    }

    fn vcpu_read_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> Result<u64> {
        self.count(Op::VCpuReadReg);
        self.inner.vcpu_read_reg(vcpu, reg)
    }

    fn vcpu_write_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> Result<()> {
        self.count(Op::VCpuWriteReg);
        self.inner.vcpu_write_reg(vcpu, reg, value)
    }

    fn vcpu_ack_vppi(&mut self, vcpu: Cap<cap_type::VCpu>, irq: u64) -> Result<()> {
        self.count(Op::VCpuAckVppi);
        self.inner.vcpu_ack_vppi(vcpu, irq)
    }

    fn irq_control_get(
        &mut self,
        control: Cap<cap_type::IrqControl>,
        irq: u64,
        edge_triggered: bool,
        dest: CNodeSlot,
    ) -> Result<()> {
        self.count(Op::IrqControlGet);
        self.inner.irq_control_get(control, irq, edge_triggered, dest)
    }

    fn irq_handler_ack(&mut self, handler: Cap<cap_type::IrqHandler>) -> Result<()> {
        self.count(Op::IrqHandlerAck);
        self.inner.irq_handler_ack(handler)
    }

    fn irq_handler_set_notification(
        &mut self,
        handler: Cap<cap_type::IrqHandler>,
        ntfn: Cap<cap_type::Notification>,
    ) -> Result<()> {
        self.count(Op::IrqHandlerSetNotification);
        self.inner.irq_handler_set_notification(handler, ntfn)
    }

    fn call(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Message {
        self.count(Op::Call);
        self.inner.call(ep, msg)
    }

    fn send(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) {
        self.count(Op::Send);
        self.inner.send(ep, msg)
    }

    fn recv(&mut self, ep: Cap<cap_type::Endpoint>) -> Received {
        self.count(Op::Recv);
        self.inner.recv(ep)
    }

    fn reply(&mut self, msg: &Message) {
        self.count(Op::Reply);
        self.inner.reply(msg)
    }

    fn reply_recv(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Received {
        self.count(Op::ReplyRecv);
        self.inner.reply_recv(ep, msg)
    }

    fn signal(&mut self, ntfn: Cap<cap_type::Notification>) {
        self.count(Op::Signal);
        self.inner.signal(ntfn)
    }

    fn wait(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        self.count(Op::Wait);
        self.inner.wait(ntfn)
    }

    fn poll(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        self.count(Op::Poll);
        self.inner.poll(ntfn)
    }

    fn yield_now(&mut self) {
        self.count(Op::Yield);
        self.inner.yield_now()
    }
}
