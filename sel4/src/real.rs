//! [`RealKernel`]: the [`Kernel`] trait on the real seL4 system calls (target only).
//!
//! Owns the calling thread's IPC buffer while it lives. Every method is exactly one system
//! call: kernel object methods are one `seL4_Call` of the request built by
//! [`crate::invocation::request`] (pure and host-tested), IPC methods the matching system
//! call. Errors come from the reply's label via [`Error::from_word`].

use crate::addr::{PhysAddr, VirtAddr};
use crate::cap::{CPtr, Cap, CapRights, Slot, VmAttributes, cap_type};
use crate::error::{Error, Result};
use crate::invocation::{Request, decode, request};
use crate::kernel::{CNodeSlot, CacheOp, Kernel, MESSAGE_WORDS, Message, Received, UserContext, VCpuReg};
use crate::message_info::MessageInfo;
use crate::object::ObjectBlueprint;
use crate::sys::{self, IpcBuffer};

/// The real kernel, for one thread: holds that thread's IPC buffer.
pub struct RealKernel {
    ipc: &'static mut IpcBuffer,
}

impl RealKernel {
    /// A kernel handle for the calling thread, whose kernel-registered IPC buffer is `ipc`
    /// (bootinfo's `ipc_buffer_addr` for the root task; `TCB_Configure`'s `buffer` for
    /// other threads). One per thread.
    pub fn new(ipc: &'static mut IpcBuffer) -> Self {
        RealKernel { ipc }
    }

    /// A kernel handle over the buffer registered with [`sys::set_ipc_buffer`], which it
    /// takes; `None` if the thread has none.
    pub fn from_registered_ipc_buffer() -> Option<Self> {
        sys::take_ipc_buffer().map(Self::new)
    }

    /// Gives the IPC buffer back (e.g. to [`sys::set_ipc_buffer`]).
    pub fn into_ipc_buffer(self) -> &'static mut IpcBuffer {
        self.ipc
    }

    /// One `seL4_Call` of `req`. Returns the reply's message info on success.
    fn invoke(&mut self, req: Request) -> Result<MessageInfo> {
        let words = req.inv.words();
        self.ipc.msg[..words.len()].copy_from_slice(words);
        for (slot, cap) in self.ipc.caps_or_badges.iter_mut().zip(req.inv.caps()) {
            *slot = cap.bits();
        }
        let reply = sys::call(self.ipc, req.service, req.inv.info());
        match Error::from_word(reply.label()) {
            Ok(None) => Ok(reply),
            Ok(Some(e)) => Err(e),
            // The kernel labels replies to invocations only with seL4_Error values; anything
            // else means the capability was not a kernel object (an endpoint served by a
            // user thread answered), which is an illegal operation for these methods.
            Err(_) => Err(Error::IllegalOperation),
        }
    }

    /// The message registers of the reply now in the IPC buffer.
    fn reply_words(&self, reply: MessageInfo) -> &[u64] {
        let n = (reply.length() as usize).min(self.ipc.msg.len());
        &self.ipc.msg[..n]
    }

    /// Loads `msg` into the IPC buffer and returns the tag to send: no extra caps (a
    /// [`Message`] carries none), length clamped to what the message holds.
    fn load(&mut self, msg: &Message) -> MessageInfo {
        let words = msg.words();
        self.ipc.msg[..words.len()].copy_from_slice(words);
        MessageInfo::new(msg.info.label(), 0, 0, words.len() as u64)
    }

    /// The message now in the IPC buffer under tag `info`.
    fn unload(&self, info: MessageInfo) -> Message {
        let n = (info.length() as usize).min(MESSAGE_WORDS);
        let mut mrs = [0; MESSAGE_WORDS];
        mrs[..n].copy_from_slice(&self.ipc.msg[..n]);
        Message { info, mrs }
    }
}

impl Kernel for RealKernel {
    fn untyped_retype(
        &mut self,
        untyped: Cap<cap_type::Untyped>,
        blueprint: ObjectBlueprint,
        dest: Slot,
        count: u64,
    ) -> Result<()> {
        self.invoke(request::untyped_retype(untyped, blueprint, dest, count)).map(drop)
    }

    fn cnode_copy(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights) -> Result<()> {
        self.invoke(request::cnode_copy(dest, src, rights)).map(drop)
    }

    fn cnode_mint(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> Result<()> {
        self.invoke(request::cnode_mint(dest, src, rights, badge)).map(drop)
    }

    fn cnode_move(&mut self, dest: CNodeSlot, src: Slot) -> Result<()> {
        self.invoke(request::cnode_move(dest, src)).map(drop)
    }

    fn cnode_delete(&mut self, slot: CNodeSlot) -> Result<()> {
        self.invoke(request::cnode_delete(slot)).map(drop)
    }

    fn cnode_revoke(&mut self, slot: CNodeSlot) -> Result<()> {
        self.invoke(request::cnode_revoke(slot)).map(drop)
    }

    fn page_map(
        &mut self,
        frame: Cap<cap_type::Frame>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Result<()> {
        self.invoke(request::page_map(frame, vspace, vaddr, rights, attrs)).map(drop)
    }

    fn page_unmap(&mut self, frame: Cap<cap_type::Frame>) -> Result<()> {
        self.invoke(request::page_unmap(frame)).map(drop)
    }

    fn page_get_address(&mut self, frame: Cap<cap_type::Frame>) -> Result<PhysAddr> {
        let reply = self.invoke(request::page_get_address(frame))?;
        Ok(PhysAddr(decode::arm_page_get_address(self.reply_words(reply))))
    }

    fn page_flush(&mut self, frame: Cap<cap_type::Frame>, op: CacheOp, start: u64, end: u64) -> Result<()> {
        self.invoke(request::page_flush(frame, op, start, end)).map(drop)
    }

    fn page_table_map(
        &mut self,
        table: Cap<cap_type::PageTable>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        attrs: VmAttributes,
    ) -> Result<()> {
        self.invoke(request::page_table_map(table, vspace, vaddr, attrs)).map(drop)
    }

    fn page_table_unmap(&mut self, table: Cap<cap_type::PageTable>) -> Result<()> {
        self.invoke(request::page_table_unmap(table)).map(drop)
    }

    fn asid_control_make_pool(
        &mut self,
        control: Cap<cap_type::AsidControl>,
        untyped: Cap<cap_type::Untyped>,
        dest: CNodeSlot,
    ) -> Result<()> {
        self.invoke(request::asid_control_make_pool(control, untyped, dest)).map(drop)
    }

    fn asid_pool_assign(&mut self, pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> Result<()> {
        self.invoke(request::asid_pool_assign(pool, vspace)).map(drop)
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
        let req = request::tcb_configure(
            tcb,
            fault_ep,
            cspace_root,
            cspace_root_data,
            vspace_root,
            ipc_buffer_addr,
            ipc_buffer_frame,
        );
        self.invoke(req).map(drop)
    }

    fn tcb_set_priority(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        authority: Cap<cap_type::Tcb>,
        priority: u64,
    ) -> Result<()> {
        self.invoke(request::tcb_set_priority(tcb, authority, priority)).map(drop)
    }

    fn tcb_set_affinity(&mut self, tcb: Cap<cap_type::Tcb>, core: u64) -> Result<()> {
        match request::tcb_set_affinity(tcb, core) {
            Some(req) => self.invoke(req).map(drop),
            None => Err(Error::IllegalOperation),
        }
    }

    fn tcb_write_registers(&mut self, tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> Result<()> {
        self.invoke(request::tcb_write_registers(tcb, resume, regs)).map(drop)
    }

    fn tcb_write_registers_prefix(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Result<()> {
        self.invoke(request::tcb_write_registers_prefix(tcb, resume, regs, count)).map(drop)
    }

    fn tcb_read_registers(&mut self, tcb: Cap<cap_type::Tcb>, suspend: bool) -> Result<UserContext> {
        let reply = self.invoke(request::tcb_read_registers(tcb, suspend))?;
        Ok(UserContext::from_words(&decode::tcb_read_registers(self.reply_words(reply))))
    }

    fn tcb_resume(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.invoke(request::tcb_resume(tcb)).map(drop)
    }

    fn tcb_suspend(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.invoke(request::tcb_suspend(tcb)).map(drop)
    }

    fn tcb_bind_notification(&mut self, tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> Result<()> {
        self.invoke(request::tcb_bind_notification(tcb, ntfn)).map(drop)
    }

    fn vcpu_set_tcb(&mut self, vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        self.invoke(request::vcpu_set_tcb(vcpu, tcb)).map(drop)
    }

    fn vcpu_inject_irq(
        &mut self,
        vcpu: Cap<cap_type::VCpu>,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<()> {
        self.invoke(request::vcpu_inject_irq(vcpu, virq, priority, group, index)).map(drop)
    }

    fn vcpu_read_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> Result<u64> {
        let reply = self.invoke(request::vcpu_read_reg(vcpu, reg))?;
        Ok(decode::arm_vcpu_read_regs(self.reply_words(reply)))
    }

    fn vcpu_write_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> Result<()> {
        self.invoke(request::vcpu_write_reg(vcpu, reg, value)).map(drop)
    }

    fn vcpu_ack_vppi(&mut self, vcpu: Cap<cap_type::VCpu>, irq: u64) -> Result<()> {
        self.invoke(request::vcpu_ack_vppi(vcpu, irq)).map(drop)
    }

    fn irq_control_get(
        &mut self,
        control: Cap<cap_type::IrqControl>,
        irq: u64,
        edge_triggered: bool,
        dest: CNodeSlot,
    ) -> Result<()> {
        self.invoke(request::irq_control_get(control, irq, edge_triggered, dest)).map(drop)
    }

    fn irq_handler_ack(&mut self, handler: Cap<cap_type::IrqHandler>) -> Result<()> {
        self.invoke(request::irq_handler_ack(handler)).map(drop)
    }

    fn irq_handler_set_notification(
        &mut self,
        handler: Cap<cap_type::IrqHandler>,
        ntfn: Cap<cap_type::Notification>,
    ) -> Result<()> {
        self.invoke(request::irq_handler_set_notification(handler, ntfn)).map(drop)
    }

    fn call(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Message {
        let info = self.load(msg);
        let reply = sys::call(self.ipc, ep.cptr(), info);
        self.unload(reply)
    }

    fn send(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) {
        let info = self.load(msg);
        sys::send(self.ipc, ep.cptr(), info);
    }

    fn recv(&mut self, ep: Cap<cap_type::Endpoint>) -> Received {
        let (info, badge) = sys::recv(self.ipc, ep.cptr());
        Received { badge, msg: self.unload(info) }
    }

    fn reply(&mut self, msg: &Message) {
        let info = self.load(msg);
        sys::reply(self.ipc, info);
    }

    fn reply_recv(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Received {
        let info = self.load(msg);
        let (info, badge) = sys::reply_recv(self.ipc, ep.cptr(), info);
        Received { badge, msg: self.unload(info) }
    }

    fn signal(&mut self, ntfn: Cap<cap_type::Notification>) {
        sys::signal(ntfn.cptr());
    }

    fn wait(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        sys::wait(self.ipc, ntfn.cptr())
    }

    fn poll(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        sys::poll(self.ipc, ntfn.cptr())
    }

    fn yield_now(&mut self) {
        sys::yield_now();
    }
}
