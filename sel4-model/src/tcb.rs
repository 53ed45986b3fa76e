//! Threads, VCPUs and interrupts: the decode paths of the TCB, VCPU, IRQ control and IRQ
//! handler invocations in the kernel's order of checks (`src/object/tcb.c`,
//! `src/arch/arm/object/vcpu.c`, `src/object/interrupt.c`, `src/arch/arm/object/interrupt.c`).
//!
//! Owns `Model::tcbs`, `Model::vcpus`, the IRQ state table and the TCB side of bindings.
//! Threads other than the root task never run in the model: tests act for them through the
//! harness methods in `ipc`.

use sel4::Error;
use sel4::kernel::{UserContext, VCpuReg};

use crate::Model;
use crate::caps::ModelCap;
use crate::objects::{
    Container, Injection, IrqState, ListRegister, SlotRef, TCB_BUFFER, TCB_CTABLE, TCB_VTABLE, ThreadState,
    sanitise_spsr,
};
use crate::vspace::IPC_BUFFER_SIZE_BITS;

/// Highest priority (`seL4_MaxPrio`).
pub(crate) const MAX_PRIO: u64 = sel4::config::NUM_PRIORITIES - 1;
/// Largest virtual IRQ a list register holds (10 bits).
const MAX_VIRQ: u16 = (1 << 10) - 1;

impl Model {
    /// `deriveCap`: the cap a copy gets, or why it cannot be copied.
    pub(crate) fn derive_cap(&self, slot: SlotRef, cap: ModelCap) -> Result<ModelCap, Error> {
        match cap {
            ModelCap::Zombie { .. } | ModelCap::IrqControl => Ok(ModelCap::Null),
            ModelCap::Untyped { .. } => self.ensure_no_children(slot).map(|()| cap),
            ModelCap::VSpace { asid: None, .. } | ModelCap::PageTable { mapped: None, .. } => {
                Err(Error::IllegalOperation)
            }
            ModelCap::Frame { paddr, size, device, rights, .. } => {
                Ok(ModelCap::Frame { paddr, size, device, rights, mapped: None })
            }
            _ => Ok(cap),
        }
    }

    // ---- thread state ----

    /// `cancelIPC`: take the thread out of whatever IPC it is blocked in.
    fn cancel_ipc(&mut self, tcb: u64) {
        match self.tcbs[&tcb].state {
            ThreadState::BlockedOnSend => {
                for ep in self.endpoints.values_mut() {
                    ep.queue.retain(|p| p.sender != Some(tcb));
                }
            }
            ThreadState::BlockedOnReply => {
                // The reply cap the receiver holds goes.
                if self.caller == Some(tcb) {
                    self.caller = None;
                }
            }
            ThreadState::Inactive | ThreadState::Runnable => {}
        }
    }

    /// `suspend`.
    pub(crate) fn suspend(&mut self, tcb: u64) {
        assert!(tcb != self.root_tcb, "sel4-model: the root task suspended itself; seL4 would never return to it");
        self.cancel_ipc(tcb);
        self.tcbs.get_mut(&tcb).expect("live TCB").state = ThreadState::Inactive;
    }

    /// `restart`: a stopped thread becomes runnable, abandoning any IPC.
    pub(crate) fn restart(&mut self, tcb: u64) {
        if self.tcbs[&tcb].state != ThreadState::Runnable {
            self.cancel_ipc(tcb);
            self.tcbs.get_mut(&tcb).expect("live TCB").state = ThreadState::Runnable;
        }
    }

    /// `unbindNotification`.
    pub(crate) fn tcb_unbind_notification(&mut self, tcb: u64) {
        if let Some(n) = self.tcbs.get_mut(&tcb).and_then(|t| t.bound_ntfn.take())
            && let Some(ntfn) = self.ntfns.get_mut(&n)
        {
            ntfn.bound_tcb = None;
        }
    }

    /// `dissociateVCPUTCB`: also drops the thread back to EL0 (its SPSR is sanitised).
    pub(crate) fn dissociate_vcpu(&mut self, vcpu: u64, tcb: u64) {
        if let Some(v) = self.vcpus.get_mut(&vcpu) {
            v.tcb = None;
        }
        if let Some(t) = self.tcbs.get_mut(&tcb) {
            t.vcpu = None;
            t.regs.spsr = sanitise_spsr(t.regs.spsr, false);
        }
    }

    // ---- TCB invocations ----

    /// `TCBConfigure` (non-MCS): `decodeTCBConfigure` + `invokeTCB_ThreadControl`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decode_tcb_configure(
        &mut self,
        tcb_slot: SlotRef,
        tcb: u64,
        fault_ep: u64,
        croot_slot: SlotRef,
        croot_data: u64,
        vroot_slot: SlotRef,
        buffer_addr: u64,
        buffer_slot: SlotRef,
    ) -> Result<(), Error> {
        let mut buffer = None;
        if buffer_addr != 0 {
            let cap = self.derive_cap(buffer_slot, self.cap_at(buffer_slot))?;
            match cap {
                ModelCap::Frame { device: false, .. } => {}
                _ => return Err(Error::IllegalOperation),
            }
            if buffer_addr & ((1 << IPC_BUFFER_SIZE_BITS) - 1) != 0 {
                return Err(Error::AlignmentError);
            }
            buffer = Some((cap, buffer_slot));
        }
        let mut croot = self.cap_at(croot_slot);
        if croot_data != 0 {
            croot = croot.update_data(false, croot_data);
        }
        let croot = self.derive_cap(croot_slot, croot)?;
        if !matches!(croot, ModelCap::CNode { .. }) {
            return Err(Error::IllegalOperation);
        }
        let vroot = self.derive_cap(vroot_slot, self.cap_at(vroot_slot))?;
        if !matches!(vroot, ModelCap::VSpace { asid: Some(_), .. }) {
            return Err(Error::IllegalOperation);
        }

        // invokeTCB_ThreadControl: each new cap goes in only if its source and the TCB cap
        // survived the deletion of the old one.
        let tcap = ModelCap::Tcb { paddr: sel4::PhysAddr(tcb) };
        self.tcbs.get_mut(&tcb).expect("live TCB").fault_handler = fault_ep;
        for (index, cap, src) in [(TCB_CTABLE, croot, croot_slot), (TCB_VTABLE, vroot, vroot_slot)] {
            let dest = SlotRef::tcb(tcb, index);
            self.cte_delete(dest);
            if cap.same_object_as(&self.cap_at(src)) && tcap.same_object_as(&self.cap_at(tcb_slot)) {
                self.cte_insert(cap, src, dest);
            }
        }
        let dest = SlotRef::tcb(tcb, TCB_BUFFER);
        self.cte_delete(dest);
        if let Some(t) = self.tcbs.get_mut(&tcb) {
            t.ipc_buffer = buffer_addr;
        }
        if let Some((cap, src)) = buffer
            && cap.same_object_as(&self.cap_at(src))
            && tcap.same_object_as(&self.cap_at(tcb_slot))
        {
            self.cte_insert(cap, src, dest);
        }
        Ok(())
    }

    /// `TCBSetAffinity`: a kernel built for one core has no such label.
    pub(crate) fn decode_set_affinity(&mut self, tcb: u64, core: u64) -> Result<(), Error> {
        if self.cores <= 1 || core >= self.cores {
            return Err(Error::IllegalOperation);
        }
        self.tcbs.get_mut(&tcb).expect("live TCB").affinity = core;
        Ok(())
    }

    /// `TCBSetPriority` with `auth` as the authority.
    pub(crate) fn decode_set_priority(&mut self, tcb: u64, auth: ModelCap, prio: u64) -> Result<(), Error> {
        let ModelCap::Tcb { paddr } = auth else { return Err(Error::InvalidCapability) };
        if prio > self.tcbs[&paddr.0].mcp {
            return Err(Error::RangeError);
        }
        self.tcbs.get_mut(&tcb).expect("live TCB").priority = prio;
        Ok(())
    }

    /// `TCBWriteRegisters` of the whole register file.
    pub(crate) fn decode_write_registers(&mut self, tcb: u64, resume: bool, regs: &UserContext) -> Result<(), Error> {
        self.decode_write_registers_prefix(tcb, resume, regs, UserContext::WORDS)
    }

    /// `TCBWriteRegisters` of the first `count` words (`invokeTCB_WriteRegisters` clamps the
    /// count to the register file and leaves the other registers as they were).
    pub(crate) fn decode_write_registers_prefix(
        &mut self,
        tcb: u64,
        resume: bool,
        regs: &UserContext,
        count: usize,
    ) -> Result<(), Error> {
        if tcb == self.root_tcb {
            return Err(Error::IllegalOperation);
        }
        let t = self.tcbs.get_mut(&tcb).expect("live TCB");
        let n = count.min(UserContext::WORDS);
        let mut words = t.regs.to_words();
        words[..n].copy_from_slice(&regs.to_words()[..n]);
        let mut r = UserContext::from_words(&words);
        r.spsr = sanitise_spsr(r.spsr, t.vcpu.is_some());
        t.regs = r;
        if resume {
            self.restart(tcb);
        }
        Ok(())
    }

    /// `TCBReadRegisters` of the whole register file.
    pub(crate) fn decode_read_registers(&mut self, tcb: u64, suspend: bool) -> Result<UserContext, Error> {
        if tcb == self.root_tcb {
            return Err(Error::IllegalOperation);
        }
        if suspend {
            self.suspend(tcb);
        }
        Ok(self.tcbs[&tcb].regs)
    }

    /// `TCBBindNotification`.
    pub(crate) fn decode_bind_notification(&mut self, tcb: u64, ntfn_cap: ModelCap) -> Result<(), Error> {
        if self.tcbs[&tcb].bound_ntfn.is_some() {
            return Err(Error::IllegalOperation);
        }
        let ModelCap::Notification { paddr, recv, .. } = ntfn_cap else { return Err(Error::IllegalOperation) };
        if !recv || self.ntfns[&paddr.0].bound_tcb.is_some() {
            return Err(Error::IllegalOperation);
        }
        self.ntfns.get_mut(&paddr.0).expect("live notification").bound_tcb = Some(tcb);
        self.tcbs.get_mut(&tcb).expect("live TCB").bound_ntfn = Some(paddr.0);
        Ok(())
    }

    // ---- VCPU invocations ----

    /// `ARMVCPUSetTCB`.
    pub(crate) fn decode_vcpu_set_tcb(&mut self, vcpu: u64, tcb_cap: ModelCap) -> Result<(), Error> {
        let ModelCap::Tcb { paddr } = tcb_cap else { return Err(Error::IllegalOperation) };
        let tcb = paddr.0;
        if let Some(old) = self.tcbs[&tcb].vcpu {
            self.dissociate_vcpu(old, tcb);
        }
        if let Some(old) = self.vcpus[&vcpu].tcb {
            self.dissociate_vcpu(vcpu, old);
        }
        self.tcbs.get_mut(&tcb).expect("live TCB").vcpu = Some(vcpu);
        self.vcpus.get_mut(&vcpu).expect("live VCPU").tcb = Some(tcb);
        Ok(())
    }

    /// `ARMVCPUInjectIRQ`.
    pub(crate) fn decode_vcpu_inject(&mut self, vcpu: u64, inj: Injection) -> Result<(), Error> {
        if inj.virq > MAX_VIRQ || inj.priority > 31 || inj.group > 1 {
            return Err(Error::RangeError);
        }
        if u64::from(inj.index) >= self.platform.gic_list_regs {
            return Err(Error::RangeError);
        }
        let v = self.vcpus.get_mut(&vcpu).expect("live VCPU");
        if let ListRegister::Active(_) = v.lrs[inj.index as usize] {
            return Err(Error::DeleteFirst);
        }
        v.lrs[inj.index as usize] = ListRegister::Pending(inj);
        v.injections.push(inj);
        Ok(())
    }

    /// `ARMVCPUReadReg`.
    pub(crate) fn vcpu_reg(&self, vcpu: u64, reg: VCpuReg) -> u64 {
        self.vcpus[&vcpu].regs[reg as usize]
    }

    /// `ARMVCPUWriteReg`.
    pub(crate) fn set_vcpu_reg(&mut self, vcpu: u64, reg: VCpuReg, value: u64) {
        self.vcpus.get_mut(&vcpu).expect("live VCPU").regs[reg as usize] = value;
    }

    /// `ARMVCPUAckVPPI`.
    pub(crate) fn decode_vcpu_ack_vppi(&mut self, vcpu: u64, irq: u64) -> Result<(), Error> {
        if irq > self.platform.max_irq {
            return Err(Error::RangeError);
        }
        if irq != self.platform.vtimer_irq {
            return Err(Error::InvalidArgument);
        }
        self.vcpus.get_mut(&vcpu).expect("live VCPU").vppi_masked = false;
        Ok(())
    }

    // ---- interrupts ----

    /// `ARMIRQIssueIRQHandlerTrigger`.
    pub(crate) fn decode_irq_control_get(
        &mut self,
        control: SlotRef,
        irq: u64,
        root: ModelCap,
        index: u64,
        depth: u64,
    ) -> Result<(), Error> {
        if irq > self.platform.max_irq {
            return Err(Error::RangeError);
        }
        if self.irq_state[irq as usize] != IrqState::Inactive {
            return Err(Error::RevokeFirst);
        }
        let dest = self.lookup_slot_for_cnode_op(root, index, depth)?;
        self.ensure_empty(dest)?;
        self.irq_state[irq as usize] = IrqState::Signal;
        self.cte_insert(ModelCap::IrqHandler { irq }, control, dest);
        Ok(())
    }

    /// `IRQSetIRQHandler`: the kernel keeps its own copy of the notification cap.
    pub(crate) fn decode_irq_set_notification(&mut self, irq: u64, ntfn_slot: SlotRef) -> Result<(), Error> {
        let cap = self.cap_at(ntfn_slot);
        let ModelCap::Notification { send: true, .. } = cap else { return Err(Error::InvalidCapability) };
        let irq_slot = SlotRef { node: Container::IrqNode, index: irq };
        self.cte_delete_one(irq_slot);
        self.cte_insert(cap, ntfn_slot, irq_slot);
        Ok(())
    }
}
