//! IPC in a single-threaded world: endpoints hold queues of messages that tests enqueue "from"
//! other threads; notifications accumulate badge bits; the root task's receive, reply,
//! signal, wait and poll act on them; a call from the root task is answered by a server
//! closure the test attaches to the endpoint.
//!
//! Owns `Model::endpoints`, `Model::ntfns`, `Model::servers`, the root task's reply cap
//! (`Model::caller`) and the harness API (inherent methods tests call directly; they are not
//! kernel entries and are not counted).

use sel4::Error;
use sel4::cap::{Cap, cap_type};
use sel4::kernel::{Message, Received, UserContext};

use crate::Model;
use crate::caps::ModelCap;
use crate::objects::{Container, Injection, ListRegister, Pending, SendKind, SlotRef, TCB_CTABLE, ThreadState};

/// A server thread's behaviour: given the badge and the message of a call, the reply.
pub type ServerFn = Box<dyn FnMut(u64, &Message) -> Message + Send>;

/// Why a fault could not be delivered (the kernel then double-faults the thread, which
/// becomes inactive).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultDelivery {
    /// The thread's fault handler CPtr does not resolve in its CSpace.
    LookupFailed,
    /// The cap there is not an endpoint with send and grant (or grant-reply) rights.
    NotAFaultEndpoint,
}

/// Labels of fault messages (`seL4_Fault_*`) whose reply restarts the thread whatever its
/// label: cap faults and the architecture's faults.
fn fault_restarts_always(fault_label: u64) -> bool {
    matches!(fault_label, 1 | 5..=8)
}

/// The reply a failed `seL4_Call` invocation returns: the error as label, the kernel's
/// detail word (here the cap index, 0) as the first message register.
fn error_reply(e: Error) -> Message {
    Message::new(e as u64, &[0])
}

impl Model {
    // ---- object clean-up (finalisation) ----

    /// `cancelAllIPC` on a dying endpoint: queued senders are restarted.
    pub(crate) fn endpoint_finalise(&mut self, ep: u64) {
        if let Some(obj) = self.endpoints.remove(&ep) {
            for p in obj.queue {
                if let Some(t) = p.sender.and_then(|t| self.tcbs.get_mut(&t)) {
                    t.state = ThreadState::Runnable;
                }
            }
        }
        self.servers.remove(&ep);
    }

    /// `unbindMaybeNotification` + `cancelAllSignals` on a dying notification.
    pub(crate) fn ntfn_finalise(&mut self, ntfn: u64) {
        if let Some(obj) = self.ntfns.remove(&ntfn)
            && let Some(t) = obj.bound_tcb.and_then(|t| self.tcbs.get_mut(&t))
        {
            t.bound_ntfn = None;
        }
    }

    /// `sendSignal`.
    pub(crate) fn signal_ntfn(&mut self, ntfn: u64, badge: u64) {
        let n = self.ntfns.get_mut(&ntfn).expect("live notification");
        n.active = true;
        n.word |= badge;
    }

    /// A blocking send from the root task: a server consumes it, otherwise it is logged for
    /// the test to read.
    pub(crate) fn root_send(&mut self, ep: u64, badge: u64, msg: &Message) {
        if let Some(server) = self.servers.get_mut(&ep) {
            let _ = server(badge, msg);
        } else {
            self.endpoints.get_mut(&ep).expect("live endpoint").sent.push(*msg);
        }
    }

    /// `seL4_Call` on the cap in `slot`.
    pub(crate) fn root_call(&mut self, slot: SlotRef, msg: &Message) -> Message {
        match self.cap_at(slot) {
            ModelCap::Null | ModelCap::Zombie { .. } => error_reply(Error::InvalidCapability),
            ModelCap::Endpoint { send: false, .. } | ModelCap::Notification { send: false, .. } => {
                error_reply(Error::InvalidCapability)
            }
            ModelCap::Endpoint { paddr, grant: false, grant_reply: false, .. } => panic!(
                "sel4-model: call on endpoint {paddr} through a cap without grant or grant-reply rights; seL4 \
                 cannot give the callee a reply cap and leaves the root task inactive"
            ),
            ModelCap::Endpoint { paddr, badge, .. } => match self.servers.get_mut(&paddr.0) {
                Some(server) => server(badge, msg),
                None => panic!(
                    "sel4-model: call on endpoint {} with no server attached; the root task would block \
                     forever (attach one with Model::serve)",
                    paddr
                ),
            },
            ModelCap::Notification { paddr, badge, .. } => {
                self.signal_ntfn(paddr.0, badge);
                Message::new(0, &[])
            }
            other => panic!(
                "sel4-model: call on a {} cap is an object invocation with label {}; use the typed Kernel method",
                other.kind(),
                msg.info.label()
            ),
        }
    }

    /// `seL4_Recv` on an endpoint cap (after the lookup).
    pub(crate) fn root_recv(&mut self, slot: SlotRef, cptr: u64) -> Received {
        let ModelCap::Endpoint { paddr, recv: true, .. } = self.cap_at(slot) else {
            panic!(
                "sel4-model: cap fault: recv on CPtr {cptr:#x}, which holds no endpoint cap with receive rights; \
                 seL4 would suspend the root task"
            )
        };
        // A new receive drops the reply cap of the previous one.
        self.caller = None;
        if let Some(n) = self.tcbs[&self.root_tcb].bound_ntfn
            && self.ntfns[&n].active
        {
            let obj = self.ntfns.get_mut(&n).expect("bound notification");
            let badge = std::mem::take(&mut obj.word);
            obj.active = false;
            return Received { badge, msg: Message::new(0, &[]) };
        }
        let Some(p) = self.endpoints.get_mut(&paddr.0).expect("live endpoint").queue.pop_front() else {
            panic!(
                "sel4-model: recv on endpoint {paddr} with nothing queued; the root task would block forever \
                 (enqueue a message or fault first)"
            )
        };
        if let Some(t) = p.sender {
            let tcb = self.tcbs.get_mut(&t).expect("queued sender is live");
            if p.kind == SendKind::Send {
                tcb.state = ThreadState::Runnable;
            } else {
                tcb.state = ThreadState::BlockedOnReply;
                self.caller = Some(t);
            }
        }
        Received { badge: p.badge, msg: p.msg }
    }

    /// `seL4_Reply`: to the thread whose call or fault was received last, if its reply cap
    /// still exists.
    pub(crate) fn root_reply(&mut self, msg: &Message) {
        let Some(t) = self.caller.take() else { return };
        let tcb = self.tcbs.get_mut(&t).expect("caller is live");
        tcb.replies.push(*msg);
        tcb.state = match tcb.fault.take() {
            Some(f) if !fault_restarts_always(f) && msg.info.label() != 0 => ThreadState::Inactive,
            _ => ThreadState::Runnable,
        };
    }

    /// `seL4_Wait` / `seL4_Poll` on a notification cap (after the lookup).
    pub(crate) fn root_wait(&mut self, slot: SlotRef, cptr: u64, blocking: bool) -> u64 {
        let cap = self.cap_at(slot);
        let ok = match cap {
            ModelCap::Notification { paddr, recv: true, .. } => {
                let bound = self.ntfns[&paddr.0].bound_tcb;
                (bound.is_none() || bound == Some(self.root_tcb)).then_some(paddr.0)
            }
            _ => None,
        };
        let Some(n) = ok else {
            panic!(
                "sel4-model: cap fault: wait/poll on CPtr {cptr:#x} ({} cap), not a notification this thread may \
                 wait on; seL4 would suspend the root task",
                cap.kind()
            )
        };
        let obj = self.ntfns.get_mut(&n).expect("live notification");
        if obj.active {
            obj.active = false;
            return std::mem::take(&mut obj.word);
        }
        assert!(
            !blocking,
            "sel4-model: wait on notification {n:#x}, which is not signalled; the root task would block forever"
        );
        0
    }

    // ---- harness ----

    /// The object a root CNode cap names, without counting or faulting.
    fn harness_cap(&self, cptr: u64) -> ModelCap {
        let root = self.cap_at(SlotRef::tcb(self.root_tcb, TCB_CTABLE));
        self.resolve_address_bits(root, cptr, 64).map_or(ModelCap::Null, |(s, _)| self.cap_at(s))
    }

    fn harness_endpoint(&self, ep: Cap<cap_type::Endpoint>) -> u64 {
        match self.harness_cap(ep.cptr().bits()) {
            ModelCap::Endpoint { paddr, .. } => paddr.0,
            other => panic!("sel4-model harness: {ep:?} holds a {} cap, not an endpoint", other.kind()),
        }
    }

    fn harness_tcb(&self, tcb: Cap<cap_type::Tcb>) -> u64 {
        match self.harness_cap(tcb.cptr().bits()) {
            ModelCap::Tcb { paddr } => paddr.0,
            other => panic!("sel4-model harness: {tcb:?} holds a {} cap, not a TCB", other.kind()),
        }
    }

    fn harness_vcpu(&self, vcpu: Cap<cap_type::VCpu>) -> u64 {
        match self.harness_cap(vcpu.cptr().bits()) {
            ModelCap::VCpu { paddr } => paddr.0,
            other => panic!("sel4-model harness: {vcpu:?} holds a {} cap, not a VCPU", other.kind()),
        }
    }

    fn runnable_sender(&self, tcb: u64) {
        let state = self.tcbs[&tcb].state;
        assert!(
            state == ThreadState::Runnable,
            "sel4-model harness: thread {tcb:#x} is {state:?}; only a runnable thread can send or fault"
        );
    }

    /// Attaches a server thread to an endpoint: a `call` (or `send`) from the root task on
    /// any cap to that endpoint runs `server(badge, &msg)` and returns its reply. Replaces any
    /// earlier server; the server goes when the endpoint object does.
    pub fn serve(&mut self, ep: Cap<cap_type::Endpoint>, server: ServerFn) {
        let ep = self.harness_endpoint(ep);
        self.servers.insert(ep, server);
    }

    /// Queues a message on an endpoint as if `from` (or an unnamed thread) had sent it
    /// through a cap badged `badge`; the root task's next `recv` there returns it.
    pub fn enqueue_send(
        &mut self,
        ep: Cap<cap_type::Endpoint>,
        from: Option<Cap<cap_type::Tcb>>,
        badge: u64,
        msg: Message,
    ) {
        let ep = self.harness_endpoint(ep);
        let sender = from.map(|t| self.harness_tcb(t));
        if let Some(t) = sender {
            self.runnable_sender(t);
            self.tcbs.get_mut(&t).expect("live").state = ThreadState::BlockedOnSend;
        }
        let p = Pending { sender, badge, msg, kind: SendKind::Send };
        self.endpoints.get_mut(&ep).expect("live endpoint").queue.push_back(p);
    }

    /// Queues a call from thread `from`: once the root task receives it, `from` waits for the
    /// root task's reply (read it with [`Model::take_replies`]).
    pub fn enqueue_call(&mut self, ep: Cap<cap_type::Endpoint>, from: Cap<cap_type::Tcb>, badge: u64, msg: Message) {
        let ep = self.harness_endpoint(ep);
        let t = self.harness_tcb(from);
        self.runnable_sender(t);
        self.tcbs.get_mut(&t).expect("live").state = ThreadState::BlockedOnSend;
        let p = Pending { sender: Some(t), badge, msg, kind: SendKind::Call };
        self.endpoints.get_mut(&ep).expect("live endpoint").queue.push_back(p);
    }

    /// Makes thread `thread` fault with message `msg` (its label is the fault type, as the
    /// kernel builds it): the kernel looks the thread's fault handler CPtr up in the thread's
    /// own CSpace and queues the fault on that endpoint with the cap's badge. Without a
    /// usable fault endpoint the thread double-faults and becomes inactive.
    pub fn enqueue_fault(&mut self, thread: Cap<cap_type::Tcb>, msg: Message) -> Result<(), FaultDelivery> {
        let t = self.harness_tcb(thread);
        self.runnable_sender(t);
        let cspace = self.cap_at(SlotRef::tcb(t, TCB_CTABLE));
        let handler = self.tcbs[&t].fault_handler;
        let cap = match self.resolve_address_bits(cspace, handler, 64) {
            Ok((s, _)) => self.cap_at(s),
            Err(_) => {
                self.tcbs.get_mut(&t).expect("live").state = ThreadState::Inactive;
                return Err(FaultDelivery::LookupFailed);
            }
        };
        let ModelCap::Endpoint { paddr, badge, send: true, grant, grant_reply, .. } = cap else {
            self.tcbs.get_mut(&t).expect("live").state = ThreadState::Inactive;
            return Err(FaultDelivery::NotAFaultEndpoint);
        };
        if !(grant || grant_reply) {
            self.tcbs.get_mut(&t).expect("live").state = ThreadState::Inactive;
            return Err(FaultDelivery::NotAFaultEndpoint);
        }
        let tcb = self.tcbs.get_mut(&t).expect("live");
        tcb.state = ThreadState::BlockedOnSend;
        tcb.fault = Some(msg.info.label());
        let p = Pending { sender: Some(t), badge, msg, kind: SendKind::Fault };
        self.endpoints.get_mut(&paddr.0).expect("live endpoint").queue.push_back(p);
        Ok(())
    }

    /// Messages queued on an endpoint and not yet received.
    pub fn queued(&self, ep: Cap<cap_type::Endpoint>) -> usize {
        self.endpoints[&self.harness_endpoint(ep)].queue.len()
    }

    /// Replies the root task sent to `thread`, oldest first; clears the log.
    pub fn take_replies(&mut self, thread: Cap<cap_type::Tcb>) -> Vec<Message> {
        let t = self.harness_tcb(thread);
        std::mem::take(&mut self.tcbs.get_mut(&t).expect("live").replies)
    }

    /// Messages the root task sent on an endpoint that has no server; clears the log.
    pub fn take_sent(&mut self, ep: Cap<cap_type::Endpoint>) -> Vec<Message> {
        let ep = self.harness_endpoint(ep);
        std::mem::take(&mut self.endpoints.get_mut(&ep).expect("live").sent)
    }

    /// A thread's scheduling state.
    pub fn thread_state(&self, thread: Cap<cap_type::Tcb>) -> ThreadState {
        self.tcbs[&self.harness_tcb(thread)].state
    }

    /// A thread's registers as the kernel holds them (after sanitising).
    pub fn thread_registers(&self, thread: Cap<cap_type::Tcb>) -> UserContext {
        self.tcbs[&self.harness_tcb(thread)].regs
    }

    /// The core a thread runs on.
    pub fn thread_affinity(&self, thread: Cap<cap_type::Tcb>) -> u64 {
        self.tcbs[&self.harness_tcb(thread)].affinity
    }

    /// A thread's priority.
    pub fn thread_priority(&self, thread: Cap<cap_type::Tcb>) -> u64 {
        self.tcbs[&self.harness_tcb(thread)].priority
    }

    /// Signals a notification as another thread would, through a cap badged `badge`.
    pub fn signal_from(&mut self, ntfn: Cap<cap_type::Notification>, badge: u64) {
        match self.harness_cap(ntfn.cptr().bits()) {
            ModelCap::Notification { paddr, .. } => self.signal_ntfn(paddr.0, badge),
            other => panic!("sel4-model harness: {ntfn:?} holds a {} cap, not a notification", other.kind()),
        }
    }

    /// The hardware raises `irq`: if it has a handler with a notification and is not masked,
    /// the notification is signalled with that cap's badge and the IRQ stays masked until
    /// `IRQHandler_Ack`. Returns whether a notification was signalled.
    pub fn raise_irq(&mut self, irq: u64) -> bool {
        let i = irq as usize;
        if i >= self.irq_masked.len() || self.irq_masked[i] {
            return false;
        }
        match self.cap_at(SlotRef { node: Container::IrqNode, index: irq }) {
            ModelCap::Notification { paddr, badge, .. } => {
                self.irq_masked[i] = true;
                self.signal_ntfn(paddr.0, badge);
                true
            }
            _ => false,
        }
    }

    /// Whether `irq` waits for an `IRQHandler_Ack`.
    pub fn irq_masked(&self, irq: u64) -> bool {
        self.irq_masked.get(irq as usize).copied().unwrap_or(false)
    }

    /// Every `VCPU_InjectIRQ` that succeeded on this VCPU, oldest first.
    pub fn vcpu_injections(&self, vcpu: Cap<cap_type::VCpu>) -> &[Injection] {
        &self.vcpus[&self.harness_vcpu(vcpu)].injections
    }

    /// A list register of a VCPU.
    pub fn list_register(&self, vcpu: Cap<cap_type::VCpu>, index: usize) -> ListRegister {
        self.vcpus[&self.harness_vcpu(vcpu)].lrs[index]
    }

    /// Sets a list register as the guest's interrupt handling would (e.g. `Active` while the
    /// guest services it, `Invalid` after its EOI).
    pub fn set_list_register(&mut self, vcpu: Cap<cap_type::VCpu>, index: usize, lr: ListRegister) {
        let v = self.harness_vcpu(vcpu);
        self.vcpus.get_mut(&v).expect("live").lrs[index] = lr;
    }

    /// The thread a VCPU is bound to, as the TCB's physical address.
    pub fn vcpu_bound_tcb(&self, vcpu: Cap<cap_type::VCpu>) -> Option<sel4::PhysAddr> {
        self.vcpus[&self.harness_vcpu(vcpu)].tcb.map(sel4::PhysAddr)
    }
}
