//! A kernel wrapper that makes one chosen invocation fail, to test that every partial
//! operation is undone. Everything else is passed to the wrapped kernel unchanged.

use sel4::cap_type as ct;
use sel4::{CNodeSlot, CPtr, Cap, CapRights, Kernel, Message, ObjectBlueprint, PhysAddr, Received, Slot, UserContext};
use sel4::{VCpuReg, VirtAddr, VmAttributes};

/// Fails the `fail_at`-th (0-based) fallible invocation with `error`; counts them all.
pub struct Faulty<K> {
    pub inner: K,
    pub fail_at: Option<u64>,
    pub error: sel4::Error,
    pub seen: u64,
}

impl<K: Kernel> Faulty<K> {
    pub fn new(inner: K) -> Self {
        Faulty { inner, fail_at: None, error: sel4::Error::NotEnoughMemory, seen: 0 }
    }

    fn gate(&mut self) -> sel4::Result<()> {
        let n = self.seen;
        self.seen += 1;
        if self.fail_at == Some(n) { Err(self.error) } else { Ok(()) }
    }
}

impl<K: Kernel> Kernel for Faulty<K> {
    fn untyped_retype(&mut self, u: Cap<ct::Untyped>, b: ObjectBlueprint, dest: Slot, count: u64) -> sel4::Result<()> {
        self.gate()?;
        self.inner.untyped_retype(u, b, dest, count)
    }
    fn cnode_copy(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights) -> sel4::Result<()> {
        self.gate()?;
        self.inner.cnode_copy(dest, src, rights)
    }
    fn cnode_mint(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> sel4::Result<()> {
        self.gate()?;
        self.inner.cnode_mint(dest, src, rights, badge)
    }
    fn cnode_move(&mut self, dest: CNodeSlot, src: Slot) -> sel4::Result<()> {
        self.gate()?;
        self.inner.cnode_move(dest, src)
    }
    fn cnode_delete(&mut self, slot: CNodeSlot) -> sel4::Result<()> {
        self.gate()?;
        self.inner.cnode_delete(slot)
    }
    fn cnode_revoke(&mut self, slot: CNodeSlot) -> sel4::Result<()> {
        self.gate()?;
        self.inner.cnode_revoke(slot)
    }
    fn page_map(
        &mut self,
        f: Cap<ct::Frame>,
        vs: Cap<ct::VSpace>,
        va: VirtAddr,
        r: CapRights,
        a: VmAttributes,
    ) -> sel4::Result<()> {
        self.gate()?;
        self.inner.page_map(f, vs, va, r, a)
    }
    fn page_unmap(&mut self, f: Cap<ct::Frame>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.page_unmap(f)
    }
    fn page_get_address(&mut self, f: Cap<ct::Frame>) -> sel4::Result<PhysAddr> {
        self.inner.page_get_address(f)
    }
    fn page_table_map(
        &mut self,
        t: Cap<ct::PageTable>,
        vs: Cap<ct::VSpace>,
        va: VirtAddr,
        a: VmAttributes,
    ) -> sel4::Result<()> {
        self.gate()?;
        self.inner.page_table_map(t, vs, va, a)
    }
    fn page_table_unmap(&mut self, t: Cap<ct::PageTable>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.page_table_unmap(t)
    }
    fn asid_control_make_pool(
        &mut self,
        c: Cap<ct::AsidControl>,
        u: Cap<ct::Untyped>,
        dest: CNodeSlot,
    ) -> sel4::Result<()> {
        self.gate()?;
        self.inner.asid_control_make_pool(c, u, dest)
    }
    fn asid_pool_assign(&mut self, p: Cap<ct::AsidPool>, vs: Cap<ct::VSpace>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.asid_pool_assign(p, vs)
    }
    fn tcb_configure(
        &mut self,
        tcb: Cap<ct::Tcb>,
        fault_ep: CPtr,
        cspace_root: Cap<ct::CNode>,
        cspace_root_data: u64,
        vspace_root: Cap<ct::VSpace>,
        ipc_buffer_addr: VirtAddr,
        ipc_buffer_frame: Cap<ct::Granule>,
    ) -> sel4::Result<()> {
        self.gate()?;
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
    fn tcb_set_priority(&mut self, tcb: Cap<ct::Tcb>, auth: Cap<ct::Tcb>, prio: u64) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_set_priority(tcb, auth, prio)
    }
    fn tcb_write_registers(&mut self, tcb: Cap<ct::Tcb>, resume: bool, regs: &UserContext) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_write_registers(tcb, resume, regs)
    }
    fn tcb_write_registers_prefix(
        &mut self,
        tcb: Cap<ct::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_write_registers_prefix(tcb, resume, regs, count)
    }
    fn tcb_read_registers(&mut self, tcb: Cap<ct::Tcb>, suspend: bool) -> sel4::Result<UserContext> {
        self.gate()?;
        self.inner.tcb_read_registers(tcb, suspend)
    }
    fn tcb_resume(&mut self, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_resume(tcb)
    }
    fn tcb_suspend(&mut self, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_suspend(tcb)
    }
    fn tcb_bind_notification(&mut self, tcb: Cap<ct::Tcb>, n: Cap<ct::Notification>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.tcb_bind_notification(tcb, n)
    }
    fn vcpu_set_tcb(&mut self, v: Cap<ct::VCpu>, tcb: Cap<ct::Tcb>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.vcpu_set_tcb(v, tcb)
    }
    fn vcpu_inject_irq(&mut self, v: Cap<ct::VCpu>, virq: u16, prio: u8, group: u8, index: u8) -> sel4::Result<()> {
        self.gate()?;
        self.inner.vcpu_inject_irq(v, virq, prio, group, index)
    }
    fn vcpu_read_reg(&mut self, v: Cap<ct::VCpu>, reg: VCpuReg) -> sel4::Result<u64> {
        self.gate()?;
        self.inner.vcpu_read_reg(v, reg)
    }
    fn vcpu_write_reg(&mut self, v: Cap<ct::VCpu>, reg: VCpuReg, value: u64) -> sel4::Result<()> {
        self.gate()?;
        self.inner.vcpu_write_reg(v, reg, value)
    }
    fn vcpu_ack_vppi(&mut self, v: Cap<ct::VCpu>, irq: u64) -> sel4::Result<()> {
        self.gate()?;
        self.inner.vcpu_ack_vppi(v, irq)
    }
    fn irq_control_get(&mut self, c: Cap<ct::IrqControl>, irq: u64, edge: bool, dest: CNodeSlot) -> sel4::Result<()> {
        self.gate()?;
        self.inner.irq_control_get(c, irq, edge, dest)
    }
    fn irq_handler_ack(&mut self, h: Cap<ct::IrqHandler>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.irq_handler_ack(h)
    }
    fn irq_handler_set_notification(&mut self, h: Cap<ct::IrqHandler>, n: Cap<ct::Notification>) -> sel4::Result<()> {
        self.gate()?;
        self.inner.irq_handler_set_notification(h, n)
    }
    fn call(&mut self, ep: Cap<ct::Endpoint>, msg: &Message) -> Message {
        self.inner.call(ep, msg)
    }
    fn send(&mut self, ep: Cap<ct::Endpoint>, msg: &Message) {
        self.inner.send(ep, msg)
    }
    fn recv(&mut self, ep: Cap<ct::Endpoint>) -> Received {
        self.inner.recv(ep)
    }
    fn reply(&mut self, msg: &Message) {
        self.inner.reply(msg)
    }
    fn reply_recv(&mut self, ep: Cap<ct::Endpoint>, msg: &Message) -> Received {
        self.inner.reply_recv(ep, msg)
    }
    fn signal(&mut self, n: Cap<ct::Notification>) {
        self.inner.signal(n)
    }
    fn wait(&mut self, n: Cap<ct::Notification>) -> u64 {
        self.inner.wait(n)
    }
    fn poll(&mut self, n: Cap<ct::Notification>) -> u64 {
        self.inner.poll(n)
    }
    fn yield_now(&mut self) {
        self.inner.yield_now()
    }
}
