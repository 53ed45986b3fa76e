//! TCBs, VCPUs and interrupts.

mod common;

use common::*;
use sel4::kernel::{UserContext, VCpuReg};
use sel4::{CPtr, CapRights, Error, Kernel, ObjectBlueprint, Slot, VirtAddr, init_cap};
use sel4_model::{ListRegister, Model, ModelCap, ThreadState};

struct Fixture {
    m: Model,
    ut: Slot,
    n: u64,
}

impl Fixture {
    fn new() -> Self {
        let m = boot();
        let (ut, _) = ram_untyped(&m, 20);
        Fixture { m, ut, n: 0 }
    }
    fn obj(&mut self, b: ObjectBlueprint) -> Slot {
        let s = free(&self.m, self.n);
        self.n += 1;
        make(&mut self.m, self.ut, b, s);
        s
    }
    /// A thread in its own CSpace and VSpace, fault endpoint CPtr `fault_ep` there.
    fn thread(&mut self) -> (Slot, Slot, Slot) {
        let tcb = self.obj(ObjectBlueprint::Tcb);
        let cspace = self.obj(ObjectBlueprint::CNode { slot_bits: 4 });
        let vspace = self.obj(ObjectBlueprint::VSpace);
        self.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vspace.cap()).unwrap();
        (tcb, cspace, vspace)
    }
}

fn configure(m: &mut Model, tcb: Slot, cspace: Slot, vspace: Slot, buf_addr: u64, buf: Slot) -> sel4::Result<()> {
    m.tcb_configure(tcb.cap(), CPtr::from_bits(1), cspace.cap(), 0, vspace.cap(), VirtAddr(buf_addr), buf.cap())
}

#[test]
fn configure_checks_buffer_then_cspace_then_vspace() {
    let mut f = Fixture::new();
    let (tcb, cs, vs) = f.thread();
    let frame = f.obj(ObjectBlueprint::SmallPage);
    let unassigned = f.obj(ObjectBlueprint::VSpace);
    let nothing = free(&f.m, 100);
    // Buffer: not a frame, misaligned.
    assert_eq!(configure(&mut f.m, tcb, cs, vs, 0x1000, nothing), Err(Error::IllegalOperation));
    assert_eq!(configure(&mut f.m, tcb, cs, vs, 0x1200, frame), Err(Error::AlignmentError));
    // A device frame cannot be an IPC buffer.
    let (dev, _) = device_untyped(&f.m, 12);
    let dev_frame = free(&f.m, 101);
    make(&mut f.m, dev, ObjectBlueprint::SmallPage, dev_frame);
    assert_eq!(configure(&mut f.m, tcb, cs, vs, 0x1000, dev_frame), Err(Error::IllegalOperation));
    // CSpace root not a CNode, then VSpace without an ASID (derive refuses it).
    assert_eq!(configure(&mut f.m, tcb, frame, vs, 0x1000, frame), Err(Error::IllegalOperation));
    assert_eq!(configure(&mut f.m, tcb, cs, unassigned, 0x1000, frame), Err(Error::IllegalOperation));
    assert_eq!(configure(&mut f.m, tcb, cs, frame, 0, nothing), Err(Error::IllegalOperation));
    // Address 0: no buffer, the frame cap is not looked at.
    assert_eq!(configure(&mut f.m, tcb, cs, vs, 0, nothing), Ok(()));
    assert_eq!(configure(&mut f.m, tcb, cs, vs, 0x1400, frame), Ok(()));
    // The TCB holds copies: the CNode, VSpace and frame now have descendants.
    assert_eq!(f.m.descendants(cs), 1);
    assert_eq!(f.m.descendants(vs), 1);
    assert_eq!(f.m.descendants(frame), 1);
    // Invoked on something that is not a TCB.
    assert_eq!(configure(&mut f.m, cs, cs, vs, 0, nothing), Err(Error::IllegalOperation));
    check(&f.m);
    // Deleting the TCB releases its copies.
    f.m.cnode_delete(root(tcb)).unwrap();
    assert_eq!(f.m.descendants(cs), 0);
    assert_eq!(f.m.descendants(frame), 0);
    check(&f.m);
}

#[test]
fn cspace_root_data_sets_the_guard() {
    let mut f = Fixture::new();
    let (tcb, cs, vs) = f.thread();
    let conf = |m: &mut Model, data| {
        m.tcb_configure(tcb.cap(), CPtr::NULL, cs.cap(), data, vs.cap(), VirtAddr(0), Slot::new(0).cap())
    };
    // seL4_CNode_CapData: guard size in bits 0..6, the guard above. A 61-bit guard on a
    // 16-slot CNode would resolve 65 bits: the cap becomes null and is no CSpace root.
    assert_eq!(conf(&mut f.m, 61), Err(Error::IllegalOperation));
    assert_eq!(conf(&mut f.m, 60 | 1 << 6), Ok(()));
    check(&f.m);
}

#[test]
fn priorities_are_bounded_by_the_authority_mcp() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    let other = f.obj(ObjectBlueprint::Tcb);
    assert_eq!(f.m.tcb_set_priority(tcb.cap(), init_cap::TCB.cap(), 255), Ok(()));
    assert_eq!(f.m.thread_priority(tcb.cap()), 255);
    assert_eq!(f.m.tcb_set_priority(tcb.cap(), init_cap::TCB.cap(), 256), Err(Error::RangeError));
    // A new thread's MCP is 0.
    assert_eq!(f.m.tcb_set_priority(tcb.cap(), other.cap(), 1), Err(Error::RangeError));
    assert_eq!(f.m.tcb_set_priority(tcb.cap(), other.cap(), 0), Ok(()));
    assert_eq!(f.m.tcb_set_priority(tcb.cap(), init_cap::VSPACE.cap(), 0), Err(Error::InvalidCapability));
}

#[test]
fn affinity_needs_a_multicore_kernel_and_an_existing_core() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    // One core: the kernel has no TCB_SetAffinity.
    assert_eq!(f.m.tcb_set_affinity(tcb.cap(), 0), Err(Error::IllegalOperation));
    f.m.set_cores(2);
    assert_eq!(f.m.tcb_set_affinity(tcb.cap(), 1), Ok(()));
    assert_eq!(f.m.thread_affinity(tcb.cap()), 1);
    assert_eq!(f.m.tcb_set_affinity(tcb.cap(), 2), Err(Error::IllegalOperation), "no core 2");
    assert_eq!(f.m.thread_affinity(tcb.cap()), 1);
    assert_eq!(f.m.tcb_set_affinity(init_cap::VSPACE.cap(), 0), Err(Error::IllegalOperation));
}

#[test]
fn registers_round_trip_with_spsr_sanitised() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    let vcpu = f.obj(ObjectBlueprint::VCpu);
    let fresh = f.m.tcb_read_registers(tcb.cap(), false).unwrap();
    assert_eq!(fresh.spsr, 0x40, "a new thread starts in EL0 with FIQs masked");
    let mut regs = UserContext { pc: 0x4000_0000, sp: 0x1000, spsr: 0x3c5, ..Default::default() };
    regs.x[0] = 0xdead;
    regs.x[30] = 7;
    // Without a VCPU the thread is forced to EL0.
    f.m.tcb_write_registers(tcb.cap(), false, &regs).unwrap();
    let back = f.m.tcb_read_registers(tcb.cap(), false).unwrap();
    assert_eq!(back.spsr, 0x40);
    assert_eq!((back.pc, back.sp, back.x[0], back.x[30]), (0x4000_0000, 0x1000, 0xdead, 7));
    // With a VCPU, EL1h is kept; unbinding drops it back to EL0.
    f.m.vcpu_set_tcb(vcpu.cap(), tcb.cap()).unwrap();
    f.m.tcb_write_registers(tcb.cap(), false, &regs).unwrap();
    assert_eq!(f.m.tcb_read_registers(tcb.cap(), false).unwrap().spsr, 0x3c5);
    f.m.cnode_delete(root(vcpu)).unwrap();
    assert_eq!(f.m.thread_registers(tcb.cap()).spsr, 0x40);
    // Not on oneself.
    assert_eq!(f.m.tcb_read_registers(init_cap::TCB.cap(), false), Err(Error::IllegalOperation));
    assert_eq!(f.m.tcb_write_registers(init_cap::TCB.cap(), false, &regs), Err(Error::IllegalOperation));
}

#[test]
fn a_register_prefix_write_leaves_the_rest() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    let vcpu = f.obj(ObjectBlueprint::VCpu);
    f.m.vcpu_set_tcb(vcpu.cap(), tcb.cap()).unwrap();
    let mut regs = UserContext { pc: 0x4000_0000, sp: 0x1000, spsr: 0x3c5, ..Default::default() };
    for (n, x) in regs.x.iter_mut().enumerate() {
        *x = 100 + n as u64;
    }
    f.m.tcb_write_registers(tcb.cap(), false, &regs).unwrap();
    // One word: only the PC moves.
    let moved = UserContext { pc: 0x4000_0004, ..Default::default() };
    f.m.tcb_write_registers_prefix(tcb.cap(), false, &moved, 1).unwrap();
    assert_eq!(f.m.thread_registers(tcb.cap()), UserContext { pc: 0x4000_0004, ..regs });
    // Nine words: pc, sp, spsr, x0-x5; x6 and up untouched.
    let mut other = UserContext { pc: 8, sp: 0x2000, spsr: 0x3c5, ..Default::default() };
    other.x = [7; 31];
    f.m.tcb_write_registers_prefix(tcb.cap(), false, &other, 9).unwrap();
    let back = f.m.thread_registers(tcb.cap());
    assert_eq!((back.pc, back.sp, back.x[5], back.x[6], back.x[30]), (8, 0x2000, 7, 106, 130));
    // A count past the file writes it all; resume restarts the thread; the root task is refused.
    f.m.tcb_write_registers_prefix(tcb.cap(), true, &other, 1000).unwrap();
    assert_eq!(f.m.thread_registers(tcb.cap()), other);
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Runnable);
    assert_eq!(f.m.tcb_write_registers_prefix(init_cap::TCB.cap(), false, &other, 1), Err(Error::IllegalOperation));
    assert_eq!(f.m.counters().get(sel4::Op::TcbWriteRegisters), 5);
}

#[test]
fn resume_and_suspend() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Inactive);
    f.m.tcb_resume(tcb.cap()).unwrap();
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Runnable);
    f.m.tcb_suspend(tcb.cap()).unwrap();
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Inactive);
    f.m.tcb_write_registers(tcb.cap(), true, &UserContext::default()).unwrap();
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Runnable);
    f.m.tcb_read_registers(tcb.cap(), true).unwrap();
    assert_eq!(f.m.thread_state(tcb.cap()), ThreadState::Inactive);
    assert_eq!(f.m.tcb_resume(init_cap::IRQ_CONTROL.cap()), Err(Error::IllegalOperation));
}

#[test]
fn binding_a_notification() {
    let mut f = Fixture::new();
    let (tcb, _, _) = f.thread();
    let other = f.obj(ObjectBlueprint::Tcb);
    let n = f.obj(ObjectBlueprint::Notification);
    let send_only = free(&f.m, 200);
    f.m.cnode_copy(root(send_only), n, CapRights::WRITE_ONLY).unwrap();
    assert_eq!(f.m.tcb_bind_notification(tcb.cap(), send_only.cap()), Err(Error::IllegalOperation));
    assert_eq!(f.m.tcb_bind_notification(tcb.cap(), tcb.cap()), Err(Error::IllegalOperation));
    assert_eq!(f.m.tcb_bind_notification(tcb.cap(), n.cap()), Ok(()));
    assert_eq!(f.m.tcb_bind_notification(tcb.cap(), n.cap()), Err(Error::IllegalOperation), "already bound");
    assert_eq!(f.m.tcb_bind_notification(other.cap(), n.cap()), Err(Error::IllegalOperation), "taken");
    // Deleting the notification unbinds: the thread can bind again.
    f.m.cnode_revoke(root(n)).unwrap();
    f.m.cnode_delete(root(n)).unwrap();
    let n2 = f.obj(ObjectBlueprint::Notification);
    assert_eq!(f.m.tcb_bind_notification(tcb.cap(), n2.cap()), Ok(()));
    check(&f.m);
}

#[test]
fn vcpu_binding_moves_and_registers_are_stored() {
    let mut f = Fixture::new();
    let (t1, _, _) = f.thread();
    let t2 = f.obj(ObjectBlueprint::Tcb);
    let (v1, v2) = (f.obj(ObjectBlueprint::VCpu), f.obj(ObjectBlueprint::VCpu));
    assert_eq!(f.m.vcpu_set_tcb(v1.cap(), v2.cap()), Err(Error::IllegalOperation));
    f.m.vcpu_set_tcb(v1.cap(), t1.cap()).unwrap();
    // Binding v2 to t1 takes t1 from v1; binding v2 to t2 then frees t1.
    f.m.vcpu_set_tcb(v2.cap(), t1.cap()).unwrap();
    assert_eq!(f.m.vcpu_bound_tcb(v1.cap()), None);
    f.m.vcpu_set_tcb(v2.cap(), t2.cap()).unwrap();
    check(&f.m);
    // A new VCPU's SCTLR is the kernel's SCTLR_EL1_VM; other registers start at 0.
    assert_eq!(f.m.vcpu_read_reg(v1.cap(), VCpuReg::Sctlr), Ok(0x34d5_8820));
    assert_eq!(f.m.vcpu_read_reg(v1.cap(), VCpuReg::Vbar), Ok(0));
    f.m.vcpu_write_reg(v1.cap(), VCpuReg::Vbar, 0x8000).unwrap();
    assert_eq!(f.m.vcpu_read_reg(v1.cap(), VCpuReg::Vbar), Ok(0x8000));
    assert_eq!(f.m.vcpu_read_reg(t1.cap(), VCpuReg::Vbar), Err(Error::IllegalOperation));
    // Deleting the TCB dissociates.
    f.m.cnode_delete(root(t2)).unwrap();
    assert_eq!(f.m.vcpu_bound_tcb(v2.cap()), None);
    check(&f.m);
}

#[test]
fn inject_irq_checks_ranges_and_busy_list_registers() {
    let mut f = Fixture::new();
    let v = f.obj(ObjectBlueprint::VCpu);
    let vc = v.cap();
    assert_eq!(f.m.vcpu_inject_irq(vc, 1024, 0, 0, 0), Err(Error::RangeError));
    assert_eq!(f.m.vcpu_inject_irq(vc, 33, 32, 0, 0), Err(Error::RangeError));
    assert_eq!(f.m.vcpu_inject_irq(vc, 33, 0, 2, 0), Err(Error::RangeError));
    assert_eq!(f.m.vcpu_inject_irq(vc, 33, 0, 0, 4), Err(Error::RangeError), "QEMU's GICv2 has 4 list registers");
    assert_eq!(f.m.vcpu_inject_irq(vc, 33, 0, 1, 3), Ok(()));
    // A pending entry may be overwritten; an active one may not.
    assert_eq!(f.m.vcpu_inject_irq(vc, 34, 0, 1, 3), Ok(()));
    let ListRegister::Pending(inj) = f.m.list_register(vc, 3) else { panic!() };
    f.m.set_list_register(vc, 3, ListRegister::Active(inj));
    assert_eq!(f.m.vcpu_inject_irq(vc, 35, 0, 1, 3), Err(Error::DeleteFirst));
    let log: Vec<u16> = f.m.vcpu_injections(vc).iter().map(|i| i.virq).collect();
    assert_eq!(log, [33, 34]);
    // AckVPPI: only the virtual timer.
    assert_eq!(f.m.vcpu_ack_vppi(vc, 160), Err(Error::RangeError));
    assert_eq!(f.m.vcpu_ack_vppi(vc, 26), Err(Error::InvalidArgument));
    assert_eq!(f.m.vcpu_ack_vppi(vc, 27), Ok(()));
}

#[test]
fn irq_handlers_are_issued_once_and_deliver_to_their_notification() {
    let mut f = Fixture::new();
    let ctl = init_cap::IRQ_CONTROL.cap();
    let h = free(&f.m, 50);
    assert_eq!(f.m.irq_control_get(ctl, 160, false, root(h)), Err(Error::RangeError));
    for kernel_irq in [25, 26, 27] {
        assert_eq!(f.m.irq_control_get(ctl, kernel_irq, false, root(h)), Err(Error::RevokeFirst));
    }
    assert_eq!(f.m.irq_control_get(ctl, 33, false, root(init_cap::TCB)), Err(Error::DeleteFirst));
    assert!(!f.m.irq_in_use(33));
    assert_eq!(f.m.irq_control_get(ctl, 33, true, root(h)), Ok(()));
    assert_eq!(f.m.irq_control_get(ctl, 33, true, root(free(&f.m, 51))), Err(Error::RevokeFirst));
    assert!(matches!(f.m.cap(h), ModelCap::IrqHandler { irq: 33 }));

    let n = f.obj(ObjectBlueprint::Notification);
    let badged = free(&f.m, 52);
    f.m.cnode_mint(root(badged), n, CapRights::ALL, 1 << 5).unwrap();
    assert_eq!(f.m.irq_handler_set_notification(h.cap(), h.cap()), Err(Error::InvalidCapability));
    f.m.irq_handler_set_notification(h.cap(), badged.cap()).unwrap();
    assert!(f.m.raise_irq(33));
    assert!(!f.m.raise_irq(33), "masked until acknowledged");
    assert_eq!(f.m.poll(n.cap()), 1 << 5);
    f.m.irq_handler_ack(h.cap()).unwrap();
    assert!(f.m.raise_irq(33));
    // The kernel holds a copy of the notification cap: revoking the badged cap removes it.
    f.m.cnode_revoke(root(n)).unwrap();
    f.m.irq_handler_ack(h.cap()).unwrap();
    assert!(!f.m.raise_irq(33), "no notification left to signal");
    // Deleting the handler frees the IRQ.
    f.m.cnode_delete(root(h)).unwrap();
    assert!(!f.m.irq_in_use(33));
    assert_eq!(f.m.irq_control_get(ctl, 33, false, root(h)), Ok(()));
    check(&f.m);
}
