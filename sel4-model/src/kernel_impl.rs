//! `impl Kernel for Model`: each method is one kernel entry. It is counted, the invoked cap
//! and the extra caps are looked up in the root task's CSpace (a CPtr that does not resolve
//! is a cap fault), and the cap's type picks the decoder as `decodeInvocation` does: a null
//! cap is `InvalidCapability`, a notification cap is signalled whatever the method, an
//! endpoint cap would be an IPC call, and any other type that does not know the method's
//! label answers `IllegalOperation`.
//!
//! Owns the mapping from trait methods to invocations; the decoders live with their objects.

use sel4::cap::{CPtr, Cap, CapRights, Slot, VmAttributes, cap_type};
use sel4::kernel::{CNodeSlot, CacheOp, Kernel, Message, Op, Received, UserContext, VCpuReg};

/// The end of the physical memory the kernel's window covers with hypervisor support
/// (`PADDR_TOP`: `PPTR_TOP` 2^40 - 2^30 less the window's offset 2^39); flushes past it are
/// refused.
const KERNEL_PADDR_TOP: u64 = (1 << 40) - (1 << 30) - (1 << 39);
use sel4::{Error, ObjectBlueprint, PhysAddr, Result, VirtAddr, init_cap};

use crate::Model;
use crate::caps::ModelCap;
use crate::objects::{Injection, SlotRef};
use crate::untyped::RetypeArgs;

/// How an invocation on a cap of the wrong kind ends before any decoder runs.
enum Early {
    /// Decode by the cap's type.
    Decode(SlotRef, ModelCap),
    /// The cap was a notification: it was signalled and the invocation "succeeded".
    Signalled,
}

impl Model {
    /// Counts the entry and looks up the invoked cap.
    fn enter(&mut self, op: Op, cptr: CPtr) -> SlotRef {
        self.counters.count(op);
        self.lookup_slot(cptr.bits(), "invoked cap")
    }

    /// The generic part of `decodeInvocation`, run after the extra caps were looked up.
    fn dispatch(&mut self, op: Op, slot: SlotRef) -> core::result::Result<Early, Error> {
        match self.cap_at(slot) {
            ModelCap::Null | ModelCap::Zombie { .. } => Err(Error::InvalidCapability),
            ModelCap::Endpoint { send: false, .. } | ModelCap::Notification { send: false, .. } => {
                Err(Error::InvalidCapability)
            }
            ModelCap::Endpoint { paddr, .. } => panic!(
                "sel4-model: {op:?} invoked on endpoint {paddr}: seL4 performs an IPC call on an endpoint cap \
                 whatever the label, which the model does not run"
            ),
            ModelCap::Notification { paddr, badge, .. } => {
                self.signal_ntfn(paddr.0, badge);
                Ok(Early::Signalled)
            }
            cap => Ok(Early::Decode(slot, cap)),
        }
    }

    fn extra(&self, cptr: CPtr) -> SlotRef {
        self.lookup_slot(cptr.bits(), "extra cap")
    }
}

/// Runs `decode` when the invoked cap reaches a decoder; `$signalled` is the result when it
/// was a notification.
macro_rules! invoke {
    ($self:ident, $op:expr, $slot:expr, $signalled:expr, |$s:ident, $cap:ident| $decode:expr) => {
        match $self.dispatch($op, $slot)? {
            Early::Signalled => Ok($signalled),
            Early::Decode($s, $cap) => $decode,
        }
    };
}

impl Kernel for Model {
    fn untyped_retype(
        &mut self,
        untyped: Cap<cap_type::Untyped>,
        blueprint: ObjectBlueprint,
        dest: Slot,
        count: u64,
    ) -> Result<()> {
        let slot = self.enter(Op::UntypedRetype, untyped.cptr());
        let root = self.extra(init_cap::CNODE.cptr());
        invoke!(self, Op::UntypedRetype, slot, (), |s, cap| match cap {
            ModelCap::Untyped { .. } => {
                let args = RetypeArgs {
                    new_type: blueprint.object_type(),
                    user_size: blueprint.api_size_bits(),
                    root: self.cap_at(root),
                    node_index: 0,
                    node_depth: 0,
                    node_offset: dest.index(),
                    node_window: count,
                };
                self.decode_untyped_retype(s, args)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn cnode_copy(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights) -> Result<()> {
        let slot = self.enter(Op::CNodeCopy, dest.cnode.cptr());
        let src_root = self.extra(init_cap::CNODE.cptr());
        invoke!(self, Op::CNodeCopy, slot, (), |_s, cap| self.cnode_insert(cap, dest, src_root, src, |m, from| {
            let masked = m.cap_at(from).mask_rights(rights);
            m.derive_cap(from, masked)
        }))
    }

    fn cnode_mint(&mut self, dest: CNodeSlot, src: Slot, rights: CapRights, badge: u64) -> Result<()> {
        let slot = self.enter(Op::CNodeMint, dest.cnode.cptr());
        let src_root = self.extra(init_cap::CNODE.cptr());
        invoke!(self, Op::CNodeMint, slot, (), |_s, cap| self.cnode_insert(cap, dest, src_root, src, |m, from| {
            let masked = m.cap_at(from).mask_rights(rights);
            m.derive_cap(from, masked.update_data(false, badge))
        }))
    }

    fn cnode_move(&mut self, dest: CNodeSlot, src: Slot) -> Result<()> {
        let slot = self.enter(Op::CNodeMove, dest.cnode.cptr());
        let src_root = self.extra(init_cap::CNODE.cptr());
        invoke!(self, Op::CNodeMove, slot, (), |_s, cap| {
            let (from, to) = self.cnode_src_dest(cap, dest, src_root, src)?;
            let c = self.cap_at(from);
            self.cte_move(c, from, to);
            Ok(())
        })
    }

    fn cnode_delete(&mut self, target: CNodeSlot) -> Result<()> {
        let slot = self.enter(Op::CNodeDelete, target.cnode.cptr());
        invoke!(self, Op::CNodeDelete, slot, (), |_s, cap| {
            let t = self.cnode_target(cap, target)?;
            self.cte_delete(t);
            Ok(())
        })
    }

    fn cnode_revoke(&mut self, target: CNodeSlot) -> Result<()> {
        let slot = self.enter(Op::CNodeRevoke, target.cnode.cptr());
        invoke!(self, Op::CNodeRevoke, slot, (), |_s, cap| {
            let t = self.cnode_target(cap, target)?;
            self.cte_revoke(t);
            Ok(())
        })
    }

    fn page_map(
        &mut self,
        frame: Cap<cap_type::Frame>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        rights: CapRights,
        attrs: VmAttributes,
    ) -> Result<()> {
        let slot = self.enter(Op::PageMap, frame.cptr());
        let vs = self.extra(vspace.cptr());
        invoke!(self, Op::PageMap, slot, (), |s, cap| match cap {
            ModelCap::Frame { .. } => {
                let vs_cap = self.cap_at(vs);
                self.decode_page_map(s, vs_cap, vaddr.0, rights, attrs)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn page_unmap(&mut self, frame: Cap<cap_type::Frame>) -> Result<()> {
        let slot = self.enter(Op::PageUnmap, frame.cptr());
        invoke!(self, Op::PageUnmap, slot, (), |s, cap| match cap {
            ModelCap::Frame { .. } => {
                self.page_unmap_slot(s);
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn page_get_address(&mut self, frame: Cap<cap_type::Frame>) -> Result<PhysAddr> {
        let slot = self.enter(Op::PageGetAddress, frame.cptr());
        // After a signal the stub reads back MR0 as it left it: 0.
        invoke!(self, Op::PageGetAddress, slot, PhysAddr(0), |_s, cap| match cap {
            ModelCap::Frame { paddr, .. } => Ok(paddr),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn page_flush(&mut self, frame: Cap<cap_type::Frame>, _op: CacheOp, start: u64, end: u64) -> Result<()> {
        let slot = self.enter(Op::PageFlush, frame.cptr());
        // The kernel's checks in its order (`decodeARMFrameInvocation`, hypervisor build);
        // the model has no caches, so a flush that passes them changes nothing.
        invoke!(self, Op::PageFlush, slot, (), |_s, cap| match cap {
            ModelCap::Frame { mapped: None, .. } => Err(Error::IllegalOperation),
            ModelCap::Frame { .. } if end <= start => Err(Error::InvalidArgument),
            ModelCap::Frame { size, .. } if start >= 1 << size.size_bits() || end > 1 << size.size_bits() => {
                Err(Error::InvalidArgument)
            }
            ModelCap::Frame { paddr, .. } if paddr.0 + end > KERNEL_PADDR_TOP => Err(Error::IllegalOperation),
            ModelCap::Frame { .. } => Ok(()),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn page_table_map(
        &mut self,
        table: Cap<cap_type::PageTable>,
        vspace: Cap<cap_type::VSpace>,
        vaddr: VirtAddr,
        _attrs: VmAttributes,
    ) -> Result<()> {
        let slot = self.enter(Op::PageTableMap, table.cptr());
        let vs = self.extra(vspace.cptr());
        invoke!(self, Op::PageTableMap, slot, (), |s, cap| match cap {
            ModelCap::PageTable { .. } => {
                let vs_cap = self.cap_at(vs);
                self.decode_page_table_map(s, vs_cap, vaddr.0)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn page_table_unmap(&mut self, table: Cap<cap_type::PageTable>) -> Result<()> {
        let slot = self.enter(Op::PageTableUnmap, table.cptr());
        invoke!(self, Op::PageTableUnmap, slot, (), |s, cap| match cap {
            ModelCap::PageTable { .. } => self.decode_page_table_unmap(s),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn asid_control_make_pool(
        &mut self,
        control: Cap<cap_type::AsidControl>,
        untyped: Cap<cap_type::Untyped>,
        dest: CNodeSlot,
    ) -> Result<()> {
        let slot = self.enter(Op::AsidControlMakePool, control.cptr());
        let ut = self.extra(untyped.cptr());
        let root = self.extra(dest.cnode.cptr());
        invoke!(self, Op::AsidControlMakePool, slot, (), |_s, cap| match cap {
            ModelCap::AsidControl => {
                let root_cap = self.cap_at(root);
                self.decode_make_pool(ut, root_cap, dest.index, u64::from(dest.depth))
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn asid_pool_assign(&mut self, pool: Cap<cap_type::AsidPool>, vspace: Cap<cap_type::VSpace>) -> Result<()> {
        let slot = self.enter(Op::AsidPoolAssign, pool.cptr());
        let vs = self.extra(vspace.cptr());
        invoke!(self, Op::AsidPoolAssign, slot, (), |_s, cap| match cap {
            ModelCap::AsidPool { .. } => self.decode_asid_pool_assign(cap, vs),
            _ => Err(Error::IllegalOperation),
        })
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
        let slot = self.enter(Op::TcbConfigure, tcb.cptr());
        let croot = self.extra(cspace_root.cptr());
        let vroot = self.extra(vspace_root.cptr());
        let buffer = self.extra(ipc_buffer_frame.cptr());
        invoke!(self, Op::TcbConfigure, slot, (), |s, cap| match cap {
            ModelCap::Tcb { paddr } => self.decode_tcb_configure(
                s,
                paddr.0,
                fault_ep.bits(),
                croot,
                cspace_root_data,
                vroot,
                ipc_buffer_addr.0,
                buffer,
            ),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_set_priority(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        authority: Cap<cap_type::Tcb>,
        priority: u64,
    ) -> Result<()> {
        let slot = self.enter(Op::TcbSetPriority, tcb.cptr());
        let auth = self.extra(authority.cptr());
        invoke!(self, Op::TcbSetPriority, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => {
                let auth_cap = self.cap_at(auth);
                self.decode_set_priority(paddr.0, auth_cap, priority)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_set_affinity(&mut self, tcb: Cap<cap_type::Tcb>, core: u64) -> Result<()> {
        let slot = self.enter(Op::TcbSetAffinity, tcb.cptr());
        invoke!(self, Op::TcbSetAffinity, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => self.decode_set_affinity(paddr.0, core),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_write_registers(&mut self, tcb: Cap<cap_type::Tcb>, resume: bool, regs: &UserContext) -> Result<()> {
        let slot = self.enter(Op::TcbWriteRegisters, tcb.cptr());
        invoke!(self, Op::TcbWriteRegisters, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => self.decode_write_registers(paddr.0, resume, regs),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_write_registers_prefix(
        &mut self,
        tcb: Cap<cap_type::Tcb>,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Result<()> {
        let slot = self.enter(Op::TcbWriteRegisters, tcb.cptr());
        invoke!(self, Op::TcbWriteRegisters, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => self.decode_write_registers_prefix(paddr.0, resume, regs, count),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_read_registers(&mut self, tcb: Cap<cap_type::Tcb>, suspend: bool) -> Result<UserContext> {
        let slot = self.enter(Op::TcbReadRegisters, tcb.cptr());
        invoke!(self, Op::TcbReadRegisters, slot, UserContext::default(), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => self.decode_read_registers(paddr.0, suspend),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_resume(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        let slot = self.enter(Op::TcbResume, tcb.cptr());
        invoke!(self, Op::TcbResume, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => {
                self.restart(paddr.0);
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_suspend(&mut self, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        let slot = self.enter(Op::TcbSuspend, tcb.cptr());
        invoke!(self, Op::TcbSuspend, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => {
                self.suspend(paddr.0);
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn tcb_bind_notification(&mut self, tcb: Cap<cap_type::Tcb>, ntfn: Cap<cap_type::Notification>) -> Result<()> {
        let slot = self.enter(Op::TcbBindNotification, tcb.cptr());
        let n = self.extra(ntfn.cptr());
        invoke!(self, Op::TcbBindNotification, slot, (), |_s, cap| match cap {
            ModelCap::Tcb { paddr } => {
                let ncap = self.cap_at(n);
                self.decode_bind_notification(paddr.0, ncap)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn vcpu_set_tcb(&mut self, vcpu: Cap<cap_type::VCpu>, tcb: Cap<cap_type::Tcb>) -> Result<()> {
        let slot = self.enter(Op::VCpuSetTcb, vcpu.cptr());
        let t = self.extra(tcb.cptr());
        invoke!(self, Op::VCpuSetTcb, slot, (), |_s, cap| match cap {
            ModelCap::VCpu { paddr } => {
                let tcap = self.cap_at(t);
                self.decode_vcpu_set_tcb(paddr.0, tcap)
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn vcpu_inject_irq(
        &mut self,
        vcpu: Cap<cap_type::VCpu>,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<()> {
        let slot = self.enter(Op::VCpuInjectIrq, vcpu.cptr());
        invoke!(self, Op::VCpuInjectIrq, slot, (), |_s, cap| match cap {
            ModelCap::VCpu { paddr } => self.decode_vcpu_inject(paddr.0, Injection { virq, priority, group, index }),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn vcpu_read_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg) -> Result<u64> {
        let slot = self.enter(Op::VCpuReadReg, vcpu.cptr());
        invoke!(self, Op::VCpuReadReg, slot, 0, |_s, cap| match cap {
            ModelCap::VCpu { paddr } => Ok(self.vcpu_reg(paddr.0, reg)),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn vcpu_write_reg(&mut self, vcpu: Cap<cap_type::VCpu>, reg: VCpuReg, value: u64) -> Result<()> {
        let slot = self.enter(Op::VCpuWriteReg, vcpu.cptr());
        invoke!(self, Op::VCpuWriteReg, slot, (), |_s, cap| match cap {
            ModelCap::VCpu { paddr } => {
                self.set_vcpu_reg(paddr.0, reg, value);
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn vcpu_ack_vppi(&mut self, vcpu: Cap<cap_type::VCpu>, irq: u64) -> Result<()> {
        let slot = self.enter(Op::VCpuAckVppi, vcpu.cptr());
        invoke!(self, Op::VCpuAckVppi, slot, (), |_s, cap| match cap {
            ModelCap::VCpu { paddr } => self.decode_vcpu_ack_vppi(paddr.0, irq),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn irq_control_get(
        &mut self,
        control: Cap<cap_type::IrqControl>,
        irq: u64,
        _edge_triggered: bool,
        dest: CNodeSlot,
    ) -> Result<()> {
        let slot = self.enter(Op::IrqControlGet, control.cptr());
        let root = self.extra(dest.cnode.cptr());
        invoke!(self, Op::IrqControlGet, slot, (), |s, cap| match cap {
            ModelCap::IrqControl => {
                let root_cap = self.cap_at(root);
                self.decode_irq_control_get(s, irq, root_cap, dest.index, u64::from(dest.depth))
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn irq_handler_ack(&mut self, handler: Cap<cap_type::IrqHandler>) -> Result<()> {
        let slot = self.enter(Op::IrqHandlerAck, handler.cptr());
        invoke!(self, Op::IrqHandlerAck, slot, (), |_s, cap| match cap {
            ModelCap::IrqHandler { irq } => {
                self.irq_masked[irq as usize] = false;
                Ok(())
            }
            _ => Err(Error::IllegalOperation),
        })
    }

    fn irq_handler_set_notification(
        &mut self,
        handler: Cap<cap_type::IrqHandler>,
        ntfn: Cap<cap_type::Notification>,
    ) -> Result<()> {
        let slot = self.enter(Op::IrqHandlerSetNotification, handler.cptr());
        let n = self.extra(ntfn.cptr());
        invoke!(self, Op::IrqHandlerSetNotification, slot, (), |_s, cap| match cap {
            ModelCap::IrqHandler { irq } => self.decode_irq_set_notification(irq, n),
            _ => Err(Error::IllegalOperation),
        })
    }

    fn call(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Message {
        let slot = self.enter(Op::Call, ep.cptr());
        self.root_call(slot, msg)
    }

    fn send(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) {
        let slot = self.enter(Op::Send, ep.cptr());
        self.ipc_send(slot, msg);
    }

    fn recv(&mut self, ep: Cap<cap_type::Endpoint>) -> Received {
        let slot = self.enter(Op::Recv, ep.cptr());
        self.root_recv(slot, ep.cptr().bits())
    }

    fn reply(&mut self, msg: &Message) {
        self.counters.count(Op::Reply);
        self.root_reply(msg);
    }

    fn reply_recv(&mut self, ep: Cap<cap_type::Endpoint>, msg: &Message) -> Received {
        let slot = self.enter(Op::ReplyRecv, ep.cptr());
        self.root_reply(msg);
        self.root_recv(slot, ep.cptr().bits())
    }

    fn signal(&mut self, ntfn: Cap<cap_type::Notification>) {
        let slot = self.enter(Op::Signal, ntfn.cptr());
        self.ipc_send(slot, &Message::new(0, &[]));
    }

    fn wait(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        let slot = self.enter(Op::Wait, ntfn.cptr());
        self.root_wait(slot, ntfn.cptr().bits(), true)
    }

    fn poll(&mut self, ntfn: Cap<cap_type::Notification>) -> u64 {
        let slot = self.enter(Op::Poll, ntfn.cptr());
        self.root_wait(slot, ntfn.cptr().bits(), false)
    }

    fn yield_now(&mut self) {
        self.counters.count(Op::Yield);
    }
}

impl Model {
    /// `seL4_Send` (also `seL4_Signal`) on the cap in `slot`: errors are not reported to a
    /// send, so a failed invocation does nothing.
    fn ipc_send(&mut self, slot: SlotRef, msg: &Message) {
        match self.cap_at(slot) {
            ModelCap::Endpoint { paddr, badge, send: true, .. } => self.root_send(paddr.0, badge, msg),
            ModelCap::Notification { paddr, badge, send: true, .. } => self.signal_ntfn(paddr.0, badge),
            ModelCap::Null | ModelCap::Zombie { .. } | ModelCap::Endpoint { .. } | ModelCap::Notification { .. } => {}
            other if msg.info.label() == 0 => {
                // Label 0 is no invocation of any object: the kernel's IllegalOperation is dropped.
                let _ = other;
            }
            other => panic!(
                "sel4-model: send with label {} on a {} cap is an object invocation; use the typed Kernel method",
                msg.info.label(),
                other.kind()
            ),
        }
    }

    /// The destination slot of a CNode operation invoked on `cap` (`lookupTargetSlot`).
    fn cnode_target(&self, cap: ModelCap, target: CNodeSlot) -> Result<SlotRef> {
        match cap {
            ModelCap::CNode { .. } => self.lookup_slot_for_cnode_op(cap, target.index, u64::from(target.depth)),
            _ => Err(Error::IllegalOperation),
        }
    }

    /// Copy/Mint/Move up to the source checks: `(src, dest)` slots.
    fn cnode_src_dest(
        &self,
        cap: ModelCap,
        dest: CNodeSlot,
        src_root: SlotRef,
        src: Slot,
    ) -> Result<(SlotRef, SlotRef)> {
        let to = self.cnode_target(cap, dest)?;
        self.ensure_empty(to)?;
        let from = self.lookup_slot_for_cnode_op(self.cap_at(src_root), src.index(), 64)?;
        if self.cap_at(from).is_null() {
            return Err(Error::FailedLookup);
        }
        Ok((from, to))
    }

    /// Copy and Mint: `derive` makes the new cap from the source slot.
    fn cnode_insert(
        &mut self,
        cap: ModelCap,
        dest: CNodeSlot,
        src_root: SlotRef,
        src: Slot,
        derive: impl FnOnce(&Model, SlotRef) -> Result<ModelCap>,
    ) -> Result<()> {
        let (from, to) = self.cnode_src_dest(cap, dest, src_root, src)?;
        let new_cap = derive(self, from)?;
        if new_cap.is_null() {
            return Err(Error::IllegalOperation);
        }
        self.cte_insert(new_cap, from, to);
        Ok(())
    }
}
