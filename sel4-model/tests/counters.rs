//! One `Kernel` method call is one count of its `Op`, whether it succeeds or fails.

mod common;

use common::*;
use sel4::kernel::{Message, UserContext, VCpuReg};
use sel4::{CPtr, CacheOp, CapRights, Kernel, ObjectBlueprint, Op, Slot, VirtAddr, VmAttributes, init_cap};

#[test]
fn every_method_counts_once_success_or_failure() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 20);
    let base = free(&m, 0).index();
    let s = |i| Slot::new(base + i);
    let (ep, n, tcb, vcpu, frame, pt, vs, cn) = (s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7));
    let (pool_ut, pool, irq) = (s(8), s(9), s(10));
    for (b, d) in [
        (ObjectBlueprint::Endpoint, ep),
        (ObjectBlueprint::Notification, n),
        (ObjectBlueprint::Tcb, tcb),
        (ObjectBlueprint::VCpu, vcpu),
        (ObjectBlueprint::SmallPage, frame),
        (ObjectBlueprint::PageTable, pt),
        (ObjectBlueprint::VSpace, vs),
        (ObjectBlueprint::CNode { slot_bits: 2 }, cn),
        (ObjectBlueprint::Untyped { size_bits: 12 }, pool_ut),
    ] {
        make(&mut m, ut, b, d);
    }
    m.reset_counters();
    assert_eq!(m.counters().total(), 0);

    let empty = s(100);
    let a = VmAttributes::DEFAULT;
    let r = CapRights::ALL;
    // Each call below is made once; about half of them fail.
    let _ = m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, init_cap::TCB, 1);
    let _ = m.cnode_copy(root(empty), ep, r);
    let _ = m.cnode_mint(root(s(101)), ep, r, 5);
    let _ = m.cnode_move(root(s(102)), s(101));
    let _ = m.cnode_delete(root(s(102)));
    let _ = m.cnode_revoke(root(ep));
    let _ = m.asid_control_make_pool(init_cap::ASID_CONTROL.cap(), pool_ut.cap(), root(pool));
    let _ = m.asid_pool_assign(pool.cap(), vs.cap());
    let _ = m.page_table_map(pt.cap(), vs.cap(), VirtAddr(0), a);
    let _ = m.page_map(frame.cap(), vs.cap(), VirtAddr(0x1001), r, a);
    let _ = m.page_unmap(frame.cap());
    let _ = m.page_get_address(frame.cap());
    let _ = m.page_flush(frame.cap(), CacheOp::CleanData, 0, 64);
    let _ = m.page_table_unmap(pt.cap());
    let _ = m.tcb_configure(tcb.cap(), CPtr::NULL, cn.cap(), 0, vs.cap(), VirtAddr(0), Slot::new(0).cap());
    let _ = m.tcb_set_priority(tcb.cap(), init_cap::TCB.cap(), 300);
    let _ = m.tcb_set_affinity(tcb.cap(), 1);
    let _ = m.tcb_write_registers(tcb.cap(), false, &UserContext::default());
    let _ = m.tcb_read_registers(init_cap::TCB.cap(), false);
    let _ = m.tcb_resume(tcb.cap());
    let _ = m.tcb_suspend(tcb.cap());
    let _ = m.tcb_bind_notification(tcb.cap(), ep.cap());
    let _ = m.vcpu_set_tcb(vcpu.cap(), tcb.cap());
    let _ = m.vcpu_inject_irq(vcpu.cap(), 2000, 0, 0, 0);
    let _ = m.vcpu_read_reg(vcpu.cap(), VCpuReg::Sctlr);
    let _ = m.vcpu_write_reg(vcpu.cap(), VCpuReg::Sctlr, 0);
    let _ = m.vcpu_ack_vppi(vcpu.cap(), 0);
    let _ = m.irq_control_get(init_cap::IRQ_CONTROL.cap(), 40, false, root(irq));
    let _ = m.irq_handler_ack(irq.cap());
    let _ = m.irq_handler_set_notification(irq.cap(), n.cap());
    m.send(ep.cap(), &Message::new(0, &[]));
    m.signal(n.cap());
    let _ = m.poll(n.cap());
    m.signal(n.cap());
    let _ = m.wait(n.cap());
    m.reply(&Message::new(0, &[]));
    m.yield_now();
    let _ = m.call(empty.cap(), &Message::new(0, &[]));

    let c = m.counters().clone();
    for op in Op::ALL {
        let expected = match op {
            Op::Signal => 2,
            Op::Recv | Op::ReplyRecv => 0,
            _ => 1,
        };
        assert_eq!(c.get(op), expected, "{op:?}");
    }
    assert_eq!(c.total(), Op::ALL.len() as u64 - 2 + 1);
    // The harness is not the kernel: it counts nothing.
    m.raise_irq(40);
    let _ = m.thread_state(tcb.cap());
    m.check_invariants().unwrap();
    assert_eq!(m.counters().total(), c.total());
    m.reset_counters();
    assert_eq!(m.counters().total(), 0);
    assert_eq!(m.counters().bytes_zeroed, 0);
}
