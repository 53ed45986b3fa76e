//! Endpoints, notifications and the harness that plays the other threads.

mod common;

use common::*;
use sel4::kernel::{CNodeSlot, Message};
use sel4::{CPtr, CapRights, Error, Kernel, ObjectBlueprint, Op, Slot, VirtAddr, init_cap};
use sel4_model::{FaultDelivery, Model, ThreadState};

/// A VM-fault-like message (label 5, as the kernel labels `seL4_Fault_VMFault`).
fn vm_fault(addr: u64) -> Message {
    Message::new(5, &[0x1000, addr, 0, 0x9200_0046])
}

struct World {
    m: Model,
    ep: Slot,
    thread: Slot,
}

/// A thread whose CSpace holds, at index 3, the fault endpoint badged 0x42; its CSpace root
/// has a 60-bit guard of 1, so the fault handler CPtr is `1 << 4 | 3`.
fn world() -> World {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 20);
    let (ep, thread, cs, vs) = (free(&m, 0), free(&m, 1), free(&m, 2), free(&m, 3));
    make(&mut m, ut, ObjectBlueprint::Endpoint, ep);
    make(&mut m, ut, ObjectBlueprint::Tcb, thread);
    make(&mut m, ut, ObjectBlueprint::CNode { slot_bits: 4 }, cs);
    make(&mut m, ut, ObjectBlueprint::VSpace, vs);
    m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs.cap()).unwrap();
    m.cnode_mint(CNodeSlot { cnode: cs.cap(), index: 3, depth: 4 }, ep, CapRights::ALL, 0x42).unwrap();
    let handler = CPtr::from_bits(1 << 4 | 3);
    m.tcb_configure(thread.cap(), handler, cs.cap(), 60 | 1 << 6, vs.cap(), VirtAddr(0), Slot::new(0).cap()).unwrap();
    m.tcb_resume(thread.cap()).unwrap();
    World { m, ep, thread }
}

#[test]
fn a_fault_reaches_the_handler_with_its_badge_and_the_reply_restarts_the_thread() {
    let mut w = world();
    w.m.enqueue_fault(w.thread.cap(), vm_fault(0x9000_0000)).unwrap();
    assert_eq!(w.m.thread_state(w.thread.cap()), ThreadState::BlockedOnSend);
    let r = w.m.recv(w.ep.cap());
    assert_eq!(r.badge, 0x42);
    assert_eq!(r.msg, vm_fault(0x9000_0000));
    assert_eq!(w.m.thread_state(w.thread.cap()), ThreadState::BlockedOnReply);
    w.m.reply(&Message::new(0, &[]));
    assert_eq!(w.m.thread_state(w.thread.cap()), ThreadState::Runnable);
    assert_eq!(w.m.take_replies(w.thread.cap()), [Message::new(0, &[])]);
    // A second reply has no caller to go to.
    w.m.reply(&Message::new(0, &[]));
    assert!(w.m.take_replies(w.thread.cap()).is_empty());
    check(&w.m);
}

#[test]
fn reply_recv_answers_and_takes_the_next_message() {
    let mut w = world();
    w.m.enqueue_fault(w.thread.cap(), vm_fault(1)).unwrap();
    w.m.enqueue_send(w.ep.cap(), None, 7, Message::new(9, &[1, 2]));
    w.m.recv(w.ep.cap());
    let next = w.m.reply_recv(w.ep.cap(), &Message::new(0, &[]));
    assert_eq!((next.badge, next.msg.info.label()), (7, 9));
    assert_eq!(w.m.thread_state(w.thread.cap()), ThreadState::Runnable);
    assert_eq!(w.m.counters().get(Op::ReplyRecv), 1);
    assert_eq!(w.m.queued(w.ep.cap()), 0);
}

#[test]
fn a_new_receive_drops_the_unanswered_reply_cap() {
    let mut w = world();
    w.m.enqueue_call(w.ep.cap(), w.thread.cap(), 3, Message::new(1, &[]));
    w.m.enqueue_send(w.ep.cap(), None, 4, Message::new(2, &[]));
    w.m.recv(w.ep.cap());
    w.m.recv(w.ep.cap());
    w.m.reply(&Message::new(0, &[]));
    // The caller's reply cap went with the second receive: it waits forever.
    assert!(w.m.take_replies(w.thread.cap()).is_empty());
    assert_eq!(w.m.thread_state(w.thread.cap()), ThreadState::BlockedOnReply);
}

#[test]
fn a_fault_without_a_usable_handler_stops_the_thread() {
    let mut w = world();
    let (ut, _) = ram_untyped(&w.m, 18);
    let (t2, cs2, vs2) = (free(&w.m, 10), free(&w.m, 11), free(&w.m, 12));
    make(&mut w.m, ut, ObjectBlueprint::Tcb, t2);
    make(&mut w.m, ut, ObjectBlueprint::CNode { slot_bits: 2 }, cs2);
    make(&mut w.m, ut, ObjectBlueprint::VSpace, vs2);
    w.m.asid_pool_assign(init_cap::ASID_POOL.cap(), vs2.cap()).unwrap();
    // Handler CPtr 1 in a 4-slot CNode whose 62-bit guard is 1: the guard does not match.
    let guard_1 = 62 | 1 << 6;
    w.m.tcb_configure(t2.cap(), CPtr::from_bits(1), cs2.cap(), guard_1, vs2.cap(), VirtAddr(0), Slot::new(0).cap())
        .unwrap();
    w.m.tcb_resume(t2.cap()).unwrap();
    assert_eq!(w.m.enqueue_fault(t2.cap(), vm_fault(0)), Err(FaultDelivery::LookupFailed));
    assert_eq!(w.m.thread_state(t2.cap()), ThreadState::Inactive);
    // With a 62-bit guard of 0 it resolves, but the slot holds a send-only endpoint cap.
    let cs3 = free(&w.m, 13);
    make(&mut w.m, ut, ObjectBlueprint::CNode { slot_bits: 2 }, cs3);
    w.m.cnode_copy(CNodeSlot { cnode: cs3.cap(), index: 1, depth: 2 }, w.ep, CapRights::WRITE_ONLY).unwrap();
    w.m.tcb_configure(t2.cap(), CPtr::from_bits(1), cs3.cap(), 62, vs2.cap(), VirtAddr(0), Slot::new(0).cap()).unwrap();
    w.m.tcb_resume(t2.cap()).unwrap();
    assert_eq!(w.m.enqueue_fault(t2.cap(), vm_fault(0)), Err(FaultDelivery::NotAFaultEndpoint));
    assert_eq!(w.m.queued(w.ep.cap()), 0);
}

#[test]
fn suspending_or_deleting_a_waiting_thread_cancels_its_ipc() {
    let mut w = world();
    w.m.enqueue_fault(w.thread.cap(), vm_fault(0)).unwrap();
    assert_eq!(w.m.queued(w.ep.cap()), 1);
    w.m.tcb_suspend(w.thread.cap()).unwrap();
    assert_eq!(w.m.queued(w.ep.cap()), 0);
    // Received, then deleted: the reply goes nowhere.
    w.m.tcb_resume(w.thread.cap()).unwrap();
    w.m.enqueue_fault(w.thread.cap(), vm_fault(0)).unwrap();
    w.m.recv(w.ep.cap());
    w.m.cnode_delete(root(w.thread)).unwrap();
    w.m.reply(&Message::new(0, &[]));
    check(&w.m);
}

#[test]
fn calls_go_to_the_attached_server() {
    let mut w = world();
    let badged = free(&w.m, 20);
    w.m.cnode_mint(root(badged), w.ep, CapRights::ALL, 0x77).unwrap();
    w.m.serve(w.ep.cap(), Box::new(|badge, msg| Message::new(0, &[badge, msg.words().first().map_or(0, |w| w * 2)])));
    let r = w.m.call(badged.cap(), &Message::new(1, &[21]));
    assert_eq!(r.words(), &[0x77, 42]);
    // Sends reach the server too; without one they are logged.
    w.m.send(w.ep.cap(), &Message::new(3, &[]));
    assert!(w.m.take_sent(w.ep.cap()).is_empty());
    // A call on an empty slot answers with the error, as the kernel's reply would.
    let e = w.m.call(free(&w.m, 99).cap(), &Message::new(1, &[]));
    assert_eq!(e.info.label(), Error::InvalidCapability as u64);
    assert_eq!(w.m.counters().get(Op::Call), 2);
}

#[test]
fn sends_without_a_server_are_logged() {
    let mut w = world();
    w.m.send(w.ep.cap(), &Message::new(3, &[4]));
    assert_eq!(w.m.take_sent(w.ep.cap()), [Message::new(3, &[4])]);
    // A cap without send rights cannot send; a send reports no error.
    let ro = free(&w.m, 20);
    w.m.cnode_copy(root(ro), w.ep, CapRights::READ_ONLY).unwrap();
    w.m.send(ro.cap(), &Message::new(3, &[4]));
    assert!(w.m.take_sent(w.ep.cap()).is_empty());
}

#[test]
fn notifications_accumulate_badges() {
    let mut m = boot();
    let (ut, _) = ram_untyped(&m, 18);
    let n = free(&m, 0);
    make(&mut m, ut, ObjectBlueprint::Notification, n);
    let (a, b) = (free(&m, 1), free(&m, 2));
    m.cnode_mint(root(a), n, CapRights::ALL, 0b01).unwrap();
    m.cnode_mint(root(b), n, CapRights::ALL, 0b10).unwrap();
    assert_eq!(m.poll(n.cap()), 0);
    m.signal(a.cap());
    m.signal(b.cap());
    m.signal(a.cap());
    assert_eq!(m.wait(n.cap()), 0b11);
    assert_eq!(m.poll(n.cap()), 0);
    m.signal_from(n.cap(), 0b100);
    assert_eq!(m.poll(n.cap()), 0b100);
    for op in [Op::Signal, Op::Wait, Op::Poll] {
        assert!(m.counters().get(op) > 0);
    }
}

#[test]
fn a_bound_notification_wakes_the_receiver_first() {
    let mut w = world();
    let (ut, _) = ram_untyped(&w.m, 18);
    let n = free(&w.m, 30);
    make(&mut w.m, ut, ObjectBlueprint::Notification, n);
    w.m.tcb_bind_notification(init_cap::TCB.cap(), n.cap()).unwrap();
    w.m.enqueue_send(w.ep.cap(), None, 7, Message::new(9, &[]));
    w.m.signal_from(n.cap(), 0x8);
    let r = w.m.recv(w.ep.cap());
    assert_eq!((r.badge, r.msg.info.label()), (0x8, 0));
    let r = w.m.recv(w.ep.cap());
    assert_eq!((r.badge, r.msg.info.label()), (7, 9));
}

#[test]
#[should_panic(expected = "without grant or grant-reply")]
fn a_call_through_a_cap_that_cannot_take_a_reply_is_a_harness_bug() {
    let mut w = world();
    let send_only = free(&w.m, 20);
    w.m.cnode_copy(root(send_only), w.ep, CapRights::WRITE_ONLY).unwrap();
    w.m.serve(w.ep.cap(), Box::new(|_, _| Message::new(0, &[])));
    let _ = w.m.call(send_only.cap(), &Message::new(1, &[]));
}

#[test]
#[should_panic(expected = "would block forever")]
fn receiving_on_an_empty_endpoint_is_a_harness_bug() {
    let mut w = world();
    w.m.recv(w.ep.cap());
}

#[test]
#[should_panic(expected = "cap fault")]
fn a_cptr_that_does_not_resolve_is_a_cap_fault() {
    let mut m = boot();
    let _ = m.page_get_address(Slot::new(1 << 20).cap());
}
