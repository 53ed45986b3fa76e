//! The timer server on the seL4 model: set-up (objects, CSpaces, the ticker's address space,
//! clean-up), the server loop driving the ticker through the kernel, and the client's kernel
//! entries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sel4::cap_type::{Endpoint, Notification, Tcb};
use sel4::{Cap, Kernel, Message, ObjectBlueprint, Op, Slot, VCpuReg, VirtAddr, init_cap};
use sel4_model::{Model, ThreadState};
use timer_server::clock::{Clock, Frequency, ticks_to_ns};
use timer_server::protocol::{CancelOutcome, ErrorCode, ReplyError, Request, badge, decode_reply};
use timer_server::server::{Core, Counter, Server, ServerCaps, TickerState, VPPI_EVENT_LABEL, VTIMER_IRQ};
use timer_server::setup::{self, CodePage, ObjectAlloc, ServerThread, UntypedArena, VcpuThreadParams};
use timer_server::{ClientError, TimerClient};

const HZ: u64 = 62_500_000;
const CODE_IPA: u64 = 0x1000_0000;
const TICKER_PRIO: u64 = 100;

/// A counter the test moves.
#[derive(Clone, Default)]
struct Fake(Arc<AtomicU64>);

impl Counter for Fake {
    fn read(&mut self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Fake {
    fn set_ns(&self, ns: u64) {
        // 16 ns per tick at 62.5 MHz.
        self.0.store(ns / 16, Ordering::Relaxed);
    }
}

fn clock() -> Clock {
    Clock::new(Frequency::new(HZ).unwrap(), 64, 0).unwrap()
}

/// A model and an arena over its largest RAM untyped (returned too) and all its empty slots.
fn model_and_arena() -> (Model, UntypedArena, Slot) {
    let m = Model::qemu_arm_virt();
    let (ut, _) = m
        .untyped_slots()
        .into_iter()
        .filter(|(_, d)| !d.is_device)
        .max_by_key(|(_, d)| d.size_bits)
        .expect("RAM untyped");
    let arena = UntypedArena::new(ut.cap(), m.bootinfo().empty());
    (m, arena, ut)
}

/// A frame to stand for a code page.
fn code_frame(m: &mut Model, arena: &mut UntypedArena) -> Cap<sel4::cap_type::Frame> {
    arena.object(m, ObjectBlueprint::SmallPage).unwrap().cap()
}

#[test]
fn spawn_builds_the_server_and_a_suspended_ticker_and_teardown_gives_everything_back() {
    let (mut m, mut arena, ut) = model_and_arena();
    let free_before = m.free_slots();
    let objects_before = m.live_objects();
    let frame = code_frame(&mut m, &mut arena);
    let ipc_frame = code_frame(&mut m, &mut arena);
    let frame_paddr = m.page_get_address(frame).unwrap();
    m.reset_counters();

    let thread = ServerThread {
        vspace: init_cap::VSPACE.cap(),
        entry: VirtAddr(0x40_1000),
        stack_top: VirtAddr(0x50_0000),
        arg: 0xabcd,
        ipc_buffer: VirtAddr(0x48_0000),
        ipc_frame: ipc_frame.slot().cap(),
        priority: 200,
    };
    let code = CodePage { frame, ipa: VirtAddr(CODE_IPA), entry_offset: 0x40 };
    let s = setup::spawn(&mut m, &mut arena, thread, code, TICKER_PRIO, init_cap::TCB.cap(), init_cap::ASID_POOL.cap())
        .unwrap();

    // The server runs at its priority from its entry, with its argument.
    assert_eq!(m.thread_state(s.tcb), ThreadState::Runnable);
    assert_eq!(m.thread_priority(s.tcb), 200);
    let r = m.thread_registers(s.tcb);
    assert_eq!((r.pc, r.sp, r.x[0], r.tpidr_el0), (0x40_1000, 0x50_0000, 0xabcd, 0));

    // The ticker waits, bound to its VCPU, at EL1 at the code's entry, with CNTVOFF 0, and
    // its address space maps the code frame read-only at the IPA and nothing else there.
    assert_eq!(m.thread_state(s.ticker.tcb), ThreadState::Inactive);
    assert_eq!(m.thread_priority(s.ticker.tcb), TICKER_PRIO);
    let r = m.thread_registers(s.ticker.tcb);
    assert_eq!(r.pc, CODE_IPA + 0x40);
    assert_eq!(r.spsr, setup::SPSR_EL1H_MASKED);
    assert!(m.vcpu_bound_tcb(s.ticker.vcpu).is_some());
    assert_eq!(m.vcpu_read_reg(s.ticker.vcpu, VCpuReg::Cntvoff), Ok(0));
    let t = m.translate(s.ticker.vspace, VirtAddr(CODE_IPA + 0x44)).expect("code mapped");
    assert_eq!(t.paddr.get(), frame_paddr.get() + 0x44);
    assert_eq!(t.rights, sel4_model::VmRights::ReadOnly);
    assert!(m.translate(s.ticker.vspace, VirtAddr(CODE_IPA + 0x1000)).is_none());

    // Clients: an endpoint each with its badge; the notification copy in the server's CNode.
    let ntfn = arena.object(&mut m, ObjectBlueprint::Notification).unwrap().cap::<Notification>();
    let ep0 = s.add_client(&mut m, &mut arena, 0, Some((ntfn, 1 << 4))).unwrap();
    let ep1 = s.add_client(&mut m, &mut arena, 1, None).unwrap();
    match (m.cap(ep0.slot()), m.cap(ep1.slot())) {
        (
            sel4_model::ModelCap::Endpoint {
                badge: b0, send: true, recv: false, grant: false, grant_reply: true, ..
            },
            sel4_model::ModelCap::Endpoint { badge: b1, .. },
        ) => assert_eq!((b0, b1), (badge::client(0), badge::client(1))),
        other => panic!("client caps: {other:?}"),
    }
    assert_eq!(
        s.add_client(&mut m, &mut arena, 16, None),
        Err(setup::SetupError::BadClient { index: 16 }),
        "no 17th client"
    );
    // Re-adding client 0 replaces its notification copy.
    s.add_client(&mut m, &mut arena, 0, Some((ntfn, 1 << 5))).unwrap();

    // The ticker can fault to the server with the ticker badge: that needs its CSpace to
    // resolve slot 1 to the badged endpoint (the model checks the kernel's rule).
    m.tcb_resume(s.ticker.tcb).unwrap();
    m.enqueue_fault(s.ticker.tcb, Message::new(VPPI_EVENT_LABEL, &[VTIMER_IRQ])).unwrap();
    let got = m.recv(s.endpoint);
    assert_eq!(got.badge, badge::TICKER);

    // What set-up cost, by kind (pinned: set-up is part of boot time).
    let c = m.counters();
    assert_eq!(c.get(Op::UntypedRetype), 11, "{c:?}");
    assert_eq!(c.get(Op::TcbConfigure), 2);
    assert_eq!(c.get(Op::TcbWriteRegisters), 2);

    m.tcb_suspend(s.ticker.tcb).unwrap();
    s.stop(&mut m).unwrap();
    arena.teardown(&mut m).unwrap();
    assert_eq!(m.free_slots(), free_before, "every slot back");
    assert_eq!(m.live_objects(), objects_before, "every object gone");
    assert_eq!(m.watermark(ut), Some(0), "the untyped is whole again");
    m.check_invariants().unwrap();
}

/// The server as the model's root task sees it: its caps are root CNode slots.
struct Rig {
    m: Model,
    server: Server<Fake>,
    counter: Fake,
    ep: Cap<Endpoint>,
    ticker: Cap<Tcb>,
    ticker_vcpu: Cap<sel4::cap_type::VCpu>,
    ntfns: Vec<Cap<Notification>>,
    clients: Vec<Cap<Tcb>>,
}

const CLIENTS: usize = 3;

fn rig() -> Rig {
    let (mut m, mut arena, _) = model_and_arena();
    let ep = arena.object(&mut m, ObjectBlueprint::Endpoint).unwrap();
    let frame = code_frame(&mut m, &mut arena);
    let ticker = setup::spawn_vcpu_thread(
        &mut m,
        &mut arena,
        VcpuThreadParams {
            code: CodePage { frame, ipa: VirtAddr(CODE_IPA), entry_offset: 0 },
            fault_ep: ep,
            fault_badge: badge::TICKER,
            priority: TICKER_PRIO,
            authority: init_cap::TCB.cap(),
            asid_pool: init_cap::ASID_POOL.cap(),
        },
    )
    .unwrap();
    // Notifications, and badged send-only copies in consecutive slots as the server's
    // layout has them (a signal through an unbadged cap carries no bits).
    let ntfns: Vec<Cap<Notification>> =
        (0..CLIENTS).map(|_| arena.object(&mut m, ObjectBlueprint::Notification).unwrap().cap()).collect();
    let first = arena.slot().unwrap();
    for (i, n) in ntfns.iter().enumerate() {
        let dest = if i == 0 { first } else { arena.slot().unwrap() };
        assert_eq!(dest.index(), first.index() + i as u64);
        m.cnode_mint(sel4::CNodeSlot::root(dest), n.slot(), sel4::CapRights::WRITE_ONLY, 1).unwrap();
    }
    // Client threads: they only need to be runnable to call.
    let clients: Vec<Cap<Tcb>> =
        (0..CLIENTS).map(|_| arena.object(&mut m, ObjectBlueprint::Tcb).unwrap().cap()).collect();
    for &c in &clients {
        m.tcb_resume(c).unwrap();
    }
    let caps = ServerCaps {
        endpoint: ep.cap(),
        ticker_tcb: ticker.tcb,
        ticker_vcpu: ticker.vcpu,
        notifications: first.cptr(),
    };
    let mut core = Core::new(clock());
    for i in 0..CLIENTS {
        core.add_client(i, i != 2);
    }
    let counter = Fake::default();
    m.reset_counters();
    Rig {
        m,
        server: Server::new(core, counter.clone(), caps),
        counter,
        ep: ep.cap(),
        ticker: ticker.tcb,
        ticker_vcpu: ticker.vcpu,
        ntfns,
        clients,
    }
}

impl Rig {
    /// Client `c` calls; the server receives, handles and replies; the client's reply.
    fn call(&mut self, c: usize, msg: Message) -> Message {
        self.call_with_badge(c, badge::client(c), msg)
    }

    fn call_with_badge(&mut self, c: usize, b: u64, msg: Message) -> Message {
        self.m.enqueue_call(self.ep, self.clients[c], b, msg);
        let r = self.m.recv(self.ep);
        let reply = self.server.handle(&mut self.m, &r).expect("clients are answered");
        self.m.reply(&reply);
        let mut replies = self.m.take_replies(self.clients[c]);
        assert_eq!(replies.len(), 1);
        replies.remove(0)
    }

    /// The ticker's virtual timer fires (it is running): the server handles the fault.
    fn tick(&mut self) -> Option<Message> {
        assert_eq!(self.m.thread_state(self.ticker), ThreadState::Runnable, "a stopped ticker cannot fire");
        self.m.enqueue_fault(self.ticker, Message::new(VPPI_EVENT_LABEL, &[VTIMER_IRQ])).unwrap();
        let r = self.m.recv(self.ep);
        assert_eq!(r.badge, badge::TICKER);
        let reply = self.server.handle(&mut self.m, &r);
        if let Some(reply) = &reply {
            self.m.reply(reply);
        }
        reply
    }

    fn compare(&mut self) -> u64 {
        self.m.vcpu_read_reg(self.ticker_vcpu, VCpuReg::CntvCval).unwrap()
    }
}

#[test]
fn the_server_drives_the_ticker_through_the_kernel() {
    let mut r = rig();
    r.counter.set_ns(1_000_000);
    let reply = r.call(0, Request::SetTimeout { id: 1, deadline_ns: 3_000_000 }.encode());
    assert_eq!(decode_reply::<0>(&reply), Ok([]));
    // Compare value written, timer enabled, ticker resumed: three kernel operations.
    assert_eq!(r.m.thread_state(r.ticker), ThreadState::Runnable);
    assert_eq!(r.m.counters().get(Op::VCpuWriteReg), 2);
    assert_eq!(r.m.counters().get(Op::TcbResume), 1);
    assert_eq!(r.compare(), 3_000_000 / 16);
    assert_eq!(r.m.vcpu_read_reg(r.ticker_vcpu, VCpuReg::CntvCtl), Ok(1));
    r.call(1, Request::SetTimeout { id: 0, deadline_ns: 5_000_000 }.encode());

    // The timer fires at 3 ms: client 0 is signalled (its notification), the interrupt is
    // acknowledged, the compare value moves to 5 ms, the fault reply lets the ticker run on.
    r.counter.set_ns(3_000_000);
    r.m.reset_counters();
    assert!(r.tick().is_some());
    assert_eq!(r.m.poll(r.ntfns[0]), 1, "client 0 signalled");
    assert_eq!(r.m.poll(r.ntfns[1]), 0, "client 1 not yet");
    assert_eq!(r.m.counters().get(Op::Signal), 1);
    assert_eq!(r.m.counters().get(Op::VCpuAckVppi), 1);
    assert_eq!(r.compare(), 5_000_000 / 16);
    assert_eq!(r.m.thread_state(r.ticker), ThreadState::Runnable);

    let reply = r.call(0, Request::Fired.encode());
    assert_eq!(decode_reply::<1>(&reply), Ok([1 << 1]));

    // The last one fires: the ticker is suspended and its fault dropped.
    r.counter.set_ns(5_000_016);
    assert!(r.tick().is_none());
    assert_eq!(r.m.thread_state(r.ticker), ThreadState::Inactive);
    assert_eq!(r.m.poll(r.ntfns[1]), 1);
    assert_eq!(r.server.core().ticker(), TickerState::Stopped);
    assert_eq!(r.server.core().stats().fired, 2);
}

#[test]
fn the_server_answers_bad_requests_with_errors_and_keeps_serving() {
    let mut r = rig();
    r.counter.set_ns(16_000);
    for (b, msg, code) in [
        (0u64, Request::Now.encode(), ErrorCode::UnknownClient),
        (0x4444, Request::Now.encode(), ErrorCode::UnknownClient),
        (badge::client(9), Request::Now.encode(), ErrorCode::UnknownClient),
        (badge::client(0), Message::new(0x1234_5678, &[1, 2, 3]), ErrorCode::BadRequest),
        (badge::client(0), Message::new(timer_server::protocol::label::NOW, &[7]), ErrorCode::BadRequest),
        (badge::client(0), Request::SetTimeout { id: 70, deadline_ns: 1 }.encode(), ErrorCode::BadId),
        (badge::client(2), Request::SetTimeout { id: 1, deadline_ns: 1 }.encode(), ErrorCode::NoNotification),
    ] {
        let reply = r.call_with_badge(0, b, msg);
        assert_eq!(decode_reply::<1>(&reply), Err(ReplyError::Server { code: code as u64 }), "{b:#x} {msg:?}");
    }
    assert_eq!(r.m.counters().get(Op::Signal) + r.m.counters().get(Op::VCpuWriteReg), 0, "errors touch nothing");
    let reply = r.call(1, Request::Now.encode());
    assert_eq!(decode_reply::<1>(&reply), Ok([16_000]));
    assert_eq!(r.server.core().stats().errors, 7);
    assert_eq!(r.server.core().stats().messages, 8);
}

#[test]
fn cancel_and_rearm_through_the_kernel() {
    let mut r = rig();
    r.call(0, Request::SetTimeout { id: 1, deadline_ns: 4_000_000 }.encode());
    r.call(0, Request::SetTimeout { id: 2, deadline_ns: 8_000_000 }.encode());
    let reply = r.call(0, Request::Cancel { id: 1 }.encode());
    assert_eq!(decode_reply::<1>(&reply), Ok([CancelOutcome::Pending as u64]));
    assert_eq!(r.compare(), 8_000_000 / 16, "compare moved to the remaining deadline");
    let reply = r.call(0, Request::Cancel { id: 2 }.encode());
    assert_eq!(decode_reply::<1>(&reply), Ok([CancelOutcome::Pending as u64]));
    assert_eq!(r.m.thread_state(r.ticker), ThreadState::Inactive, "nothing pending: ticker suspended");
}

#[test]
fn a_failing_ticker_operation_takes_timeouts_down_and_now_still_works() {
    let mut r = rig();
    // Delete the ticker's VCPU: writing its registers now fails.
    r.m.cnode_delete(sel4::CNodeSlot::root(r.ticker_vcpu.slot())).unwrap();
    let reply = r.call(0, Request::SetTimeout { id: 1, deadline_ns: 4_000_000 }.encode());
    assert_eq!(decode_reply::<0>(&reply), Ok([]), "the request itself was valid");
    assert_eq!(r.server.core().ticker(), TickerState::Down);
    assert_eq!(r.m.thread_state(r.ticker), ThreadState::Inactive);
    assert!(r.server.core().stats().kernel_errors >= 1);
    let reply = r.call(0, Request::SetTimeout { id: 2, deadline_ns: 1 }.encode());
    assert_eq!(decode_reply::<0>(&reply), Err(ReplyError::Server { code: ErrorCode::TickerDown as u64 }));
    r.counter.set_ns(32);
    assert_eq!(decode_reply::<1>(&r.call(0, Request::Now.encode())), Ok([32]));
}

#[test]
fn now_is_exactly_one_call_and_agrees_with_the_counter() {
    let mut m = Model::qemu_arm_virt();
    let (ut, _) = m.untyped_slots().into_iter().find(|(_, d)| !d.is_device && d.size_bits >= 16).unwrap();
    let ep = m.bootinfo().empty().start;
    m.untyped_retype(ut.cap(), ObjectBlueprint::Endpoint, ep, 1).unwrap();
    let client_ep = Slot::new(ep.index() + 1);
    let rights = setup::CALL_RIGHTS;
    m.cnode_mint(sel4::CNodeSlot::root(client_ep), ep, rights, badge::client(0)).unwrap();

    let counter = Fake::default();
    let core = Arc::new(Mutex::new(Core::new(clock())));
    core.lock().unwrap().add_client(0, false);
    let (c2, k2) = (core.clone(), counter.clone());
    m.serve(
        ep.cap(),
        Box::new(move |b, msg| {
            let raw = k2.0.load(Ordering::Relaxed);
            let out = c2.lock().unwrap().handle(b, msg, raw);
            assert!(out.actions.as_slice().is_empty(), "now needs no kernel operation");
            out.reply.expect("answered")
        }),
    );
    let mut client = TimerClient::new(client_ep.cap());
    let mut last = 0;
    for step in 1..=1000u64 {
        counter.0.store(step * 7919, Ordering::Relaxed);
        m.reset_counters();
        let ns = client.now(&mut m).unwrap();
        let c = m.counters();
        assert_eq!(c.get(Op::Call), 1);
        assert_eq!(Op::ALL.iter().map(|op| c.get(*op)).sum::<u64>(), 1, "one kernel entry in all: {c:?}");
        assert_eq!(ns, ticks_to_ns(step * 7919, Frequency::new(HZ).unwrap()));
        assert!(ns >= last);
        last = ns;
    }
    // The client catches a server whose clock goes backwards.
    let mut fresh = Core::new(clock());
    fresh.add_client(0, false);
    *core.lock().unwrap() = fresh;
    counter.0.store(1, Ordering::Relaxed);
    assert!(matches!(client.now(&mut m), Err(ClientError::NotMonotonic { .. })));
    // The unbadged original capability is not a client.
    let err = client_call_with(&mut m, ep.cap(), Request::Now.encode());
    assert_eq!(err, Err(ReplyError::Server { code: ErrorCode::UnknownClient as u64 }));
}

fn client_call_with(m: &mut Model, ep: Cap<Endpoint>, msg: Message) -> Result<[u64; 1], ReplyError> {
    decode_reply::<1>(&m.call(ep, &msg))
}
