//! The timer server: [`Core`] decides, [`Server`] performs.
//!
//! [`Core::handle`] is a pure function of the server's state, one received message (badge and
//! words) and one counter reading: it returns the reply and a short list of kernel
//! [`Action`]s (signal a client, program or acknowledge the ticker's virtual timer, resume or
//! suspend the ticker). [`Server`] reads the counter, performs the actions through
//! [`sel4::Kernel`] and runs the receive/reply loop. Both are tested on the host; on the
//! target the loop runs in the server's own thread (`root-task/src/timer.rs`).
//!
//! Owns: the clock, the timeout table, the client registry, the ticker's state and the
//! capabilities in [`ServerCaps`]. Never touches: any other capability, or memory beyond its
//! own state (it never allocates).
//!
//! # Where timeouts come from: the ticker
//! seL4 16.0.0 (non-MCS, hypervisor mode) gives user level no timer it could program alone:
//! the kernel owns the EL2 timer; with `EXPORT_PTMR_USER` off, `CNTHCTL_EL2.EL1PCEN = 0` and
//! `CNTKCTL_EL1.EL0PTEN = 0`, so neither native threads nor guests can program the EL1
//! physical timer (a guest's access traps to its VMM as a VCPU fault). What user level does
//! have is a VCPU's *virtual* timer: `CNTV_CVAL`/`CNTV_CTL` are VCPU registers
//! (`VCPU_WriteRegs`), saved and restored per VCPU by the kernel, and when it fires while its
//! VCPU runs, the kernel masks it and sends the thread's fault handler a `VPPIEvent` fault.
//!
//! So the server owns a *ticker*: a thread bound to a VCPU of its own, in a stage-2 address
//! space of its own holding one page of EL1 code, a loop of `seL4_Yield` made with `hvc #0`
//! (the kernel takes a VCPU thread's `hvc` as a system call). Its fault endpoint is the
//! server's endpoint with badge [`crate::protocol::badge::TICKER`]. To arm a deadline the
//! server writes the ticker's `CNTV_CVAL` (with `CNTVOFF = 0`, in physical counter ticks) and
//! resumes it; the `VPPIEvent` fault arrives when the deadline has passed *and the ticker is
//! running* (the kernel masks the virtual timer interrupt of every VCPU but the current
//! thread's); the server fires due timeouts, re-arms, acknowledges the interrupt
//! (`VCPU_AckVPPI`) and replies to the fault, or suspends the ticker when nothing is pending.
//!
//! The ticker runs at the priority of guest vCPUs, below the server and the VMM: it spins
//! only when no guest wants the CPU, and round-robins with guests otherwise. Latency is
//! therefore exact when the CPU is idle, and bounded by the time slices of the runnable
//! threads at that priority when it is not (non-MCS: `TIME_SLICE` × `TIMER_TICK_MS` = 10 ms
//! each, for CPU-bound guests). No guest can reach the ticker's virtual timer (saved and
//! restored per VCPU) or the physical timer (traps).

use sel4::cap_type::{Endpoint, Notification, Tcb, VCpu};
use sel4::{Cap, Kernel, Message, Received, VCpuReg};

use crate::clock::Clock;
use crate::protocol::{self, CancelOutcome, ErrorCode, MAX_CLIENTS, Request, Stats, badge};
use crate::timeouts::Timeouts;

/// Label of a `VPPIEvent` fault message (`seL4_Fault_VPPIEvent`, libsel4
/// `sel4/sel4_arch/types_gen.h`); its one word is the IRQ number.
pub const VPPI_EVENT_LABEL: u64 = 8;

/// The virtual timer's interrupt: PPI 11, IRQ 27 on the GIC (the kernel's
/// `INTERRUPT_VTIMER_EVENT` on every GIC-based AArch64 platform).
pub const VTIMER_IRQ: u64 = 27;

/// `CNTV_CTL_EL0.ENABLE` (interrupt not masked: `IMASK` = 0).
pub const CNTV_CTL_ENABLE: u64 = 1;

/// A source of raw counter readings (`CNTPCT_EL0` on the target, a test's value on the host).
pub trait Counter {
    /// The counter now.
    fn read(&mut self) -> u64;
}

/// A kernel operation the server performs after deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `seL4_Signal` the notification of client `client`.
    Signal {
        /// Client index.
        client: u8,
    },
    /// Write the ticker VCPU's `CNTV_CVAL` (raw counter ticks).
    SetCompare(u64),
    /// Write the ticker VCPU's `CNTV_CTL` = [`CNTV_CTL_ENABLE`] (once).
    EnableTimer,
    /// `VCPU_AckVPPI` of [`VTIMER_IRQ`] on the ticker's VCPU (after a `VPPIEvent`).
    AckTimer,
    /// `TCB_Resume` the ticker.
    ResumeTicker,
    /// `TCB_Suspend` the ticker (also drops the reply to its pending fault).
    SuspendTicker,
}

impl Action {
    /// Whether the action drives the ticker (as opposed to signalling a client).
    pub const fn is_ticker(&self) -> bool {
        !matches!(self, Action::Signal { .. })
    }
}

/// At most one signal per client and four ticker operations per message.
const MAX_ACTIONS: usize = MAX_CLIENTS + 4;

/// The actions of one message, in the order to perform them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actions {
    ops: [Action; MAX_ACTIONS],
    len: usize,
}

impl Actions {
    const fn new() -> Self {
        Actions { ops: [Action::EnableTimer; MAX_ACTIONS], len: 0 }
    }

    fn push(&mut self, a: Action) {
        // Capacity is one per client plus four ticker steps, which `Core` never exceeds;
        // dropping would lose a signal, so the bound is checked by tests, not here.
        if let Some(slot) = self.ops.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    /// The actions.
    pub fn as_slice(&self) -> &[Action] {
        &self.ops[..self.len]
    }
}

/// What to do about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reply to the sender; `None`: no reply (the ticker was suspended instead).
    pub reply: Option<Message>,
    /// Kernel operations, in order, before the reply.
    pub actions: Actions,
}

/// The ticker thread's state, as the server drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickerState {
    /// Suspended (never started, or nothing pending).
    Stopped,
    /// Resumed, with this compare value armed.
    Running {
        /// `CNTV_CVAL`.
        compare: u64,
    },
    /// Its `VPPIEvent` fault was received and not yet answered (only inside one
    /// [`Core::handle`]).
    Blocked,
    /// It faulted otherwise, or could not be programmed: timeouts are off, `now` still works.
    Down,
}

/// A client slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Client {
    present: bool,
    notify: bool,
}

/// The server's state and decisions. See the module docs.
#[derive(Clone, Debug)]
pub struct Core {
    clock: Clock,
    timeouts: Timeouts,
    clients: [Client; MAX_CLIENTS],
    ticker: TickerState,
    /// The compare value last written to the VCPU, if any.
    written_compare: Option<u64>,
    timer_enabled: bool,
    /// The kernel masked the virtual timer for the ticker's VCPU (after a `VPPIEvent`) and it
    /// was not acknowledged yet.
    vppi_masked: bool,
    stats: Stats,
}

impl Core {
    /// A server over `clock` with no clients and the ticker stopped.
    pub fn new(clock: Clock) -> Self {
        Core {
            clock,
            timeouts: Timeouts::new(),
            clients: [Client::default(); MAX_CLIENTS],
            ticker: TickerState::Stopped,
            written_compare: None,
            timer_enabled: false,
            vppi_masked: false,
            stats: Stats::default(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The timeouts.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The ticker's state.
    pub fn ticker(&self) -> TickerState {
        self.ticker
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Registers client `index` directly (what an admin `add_client` does), for a server
    /// whose clients are known before it starts.
    pub fn add_client(&mut self, index: usize, notify: bool) -> bool {
        let Some(c) = self.clients.get_mut(index) else { return false };
        *c = Client { present: true, notify };
        self.timeouts.clear(index);
        true
    }

    /// Decides what to do about a message received with `badge`, the counter reading `raw`
    /// taken after it arrived. Never panics, whatever the message.
    pub fn handle(&mut self, badge: u64, msg: &Message, raw: u64) -> Outcome {
        self.stats.messages += 1;
        let now = self.clock.now_ns(raw);
        let mut out = Outcome { reply: None, actions: Actions::new() };
        let reply = match badge {
            badge::TICKER => {
                self.ticker_event(msg, now, &mut out.actions);
                // The fault is answered only to let the ticker run on.
                matches!(self.ticker, TickerState::Running { .. }).then(|| Message::new(0, &[]))
            }
            badge::ADMIN => Some(self.admin(msg, now, &mut out.actions)),
            b => Some(match badge::client_index(b).filter(|&c| self.clients[c].present) {
                Some(c) => self.client(c, msg, now, &mut out.actions),
                None => self.refuse(ErrorCode::UnknownClient),
            }),
        };
        out.reply = reply;
        out
    }

    /// A kernel operation of the last outcome failed: a failed ticker operation takes the
    /// ticker down (the caller suspends it); a failed signal is only counted.
    pub fn kernel_failed(&mut self, action: Action) {
        self.stats.kernel_errors += 1;
        if action.is_ticker() {
            self.ticker = TickerState::Down;
        }
    }

    /// A kernel operation was performed.
    pub fn kernel_done(&mut self) {
        self.stats.kernel_ops += 1;
    }

    fn refuse(&mut self, code: ErrorCode) -> Message {
        self.stats.errors += 1;
        protocol::error(code)
    }

    fn client(&mut self, c: usize, msg: &Message, now: u64, actions: &mut Actions) -> Message {
        let req = match Request::decode(msg) {
            Ok(r) if r.is_admin() => return self.refuse(ErrorCode::NotAllowed),
            Ok(r) => r,
            Err(code) => return self.refuse(code),
        };
        match req {
            Request::Now => protocol::ok(&[now]),
            Request::Stats => protocol::ok(&self.stats.to_words()),
            Request::SetTimeout { id, deadline_ns } => {
                if !self.clients[c].notify {
                    return self.refuse(ErrorCode::NoNotification);
                }
                if self.ticker == TickerState::Down {
                    return self.refuse(ErrorCode::TickerDown);
                }
                self.timeouts.set(c, id, deadline_ns);
                self.expire_and_arm(now, actions);
                protocol::ok(&[])
            }
            Request::Cancel { id } => {
                let outcome: CancelOutcome = self.timeouts.cancel(c, id);
                self.expire_and_arm(now, actions);
                protocol::ok(&[outcome as u64])
            }
            // Only what the server already fired: timeouts fire at ticker events and when set
            // in the past, never because someone asked, so the order of collection follows
            // the order of firing.
            Request::Fired => protocol::ok(&[self.timeouts.take_fired(c)]),
            Request::AddClient { .. } | Request::RemoveClient { .. } => self.refuse(ErrorCode::NotAllowed),
        }
    }

    fn admin(&mut self, msg: &Message, now: u64, actions: &mut Actions) -> Message {
        match Request::decode(msg) {
            Ok(Request::Now) => protocol::ok(&[now]),
            Ok(Request::Stats) => protocol::ok(&self.stats.to_words()),
            Ok(Request::AddClient { index, notify }) => {
                self.add_client(usize::from(index), notify);
                self.expire_and_arm(now, actions);
                protocol::ok(&[])
            }
            Ok(Request::RemoveClient { index }) => {
                if let Some(c) = self.clients.get_mut(usize::from(index)) {
                    *c = Client::default();
                }
                self.timeouts.clear(usize::from(index));
                self.expire_and_arm(now, actions);
                protocol::ok(&[])
            }
            Ok(_) => self.refuse(ErrorCode::NotAllowed),
            Err(code) => self.refuse(code),
        }
    }

    fn ticker_event(&mut self, msg: &Message, now: u64, actions: &mut Actions) {
        let vppi = msg.info.label() == VPPI_EVENT_LABEL && msg.info.length() == 1 && msg.mrs[0] == VTIMER_IRQ;
        if !vppi || self.ticker == TickerState::Down {
            // Any other fault means the ticker's code or address space is broken: stop it for
            // good rather than restart a thread that faults.
            self.stats.errors += 1;
            self.ticker = TickerState::Down;
            actions.push(Action::SuspendTicker);
            return;
        }
        self.stats.ticks += 1;
        self.ticker = TickerState::Blocked;
        self.vppi_masked = true;
        self.expire_and_arm(now, actions);
    }

    /// Fires what is due, signals its owners, and brings the ticker to what the earliest
    /// pending deadline needs.
    fn expire_and_arm(&mut self, now: u64, actions: &mut Actions) {
        let e = self.timeouts.expire(now);
        self.stats.fired += u64::from(e.count);
        for c in 0..MAX_CLIENTS {
            if e.clients & (1 << c) != 0 && self.clients[c].notify {
                actions.push(Action::Signal { client: c as u8 });
            }
        }
        let next = self.timeouts.next_deadline();
        let compare = next.map(|d| self.clock.compare_value(d));
        match (self.ticker, compare) {
            (TickerState::Down, _) | (TickerState::Stopped, None) => {}
            (TickerState::Running { .. } | TickerState::Blocked, None) => {
                actions.push(Action::SuspendTicker);
                self.ticker = TickerState::Stopped;
            }
            (state, Some(cval)) => {
                if self.written_compare != Some(cval) {
                    actions.push(Action::SetCompare(cval));
                    self.written_compare = Some(cval);
                }
                if !self.timer_enabled {
                    actions.push(Action::EnableTimer);
                    self.timer_enabled = true;
                }
                if self.vppi_masked {
                    actions.push(Action::AckTimer);
                    self.vppi_masked = false;
                }
                if state == TickerState::Stopped {
                    actions.push(Action::ResumeTicker);
                }
                self.ticker = TickerState::Running { compare: cval };
            }
        }
    }
}

/// The capabilities the server uses, as CPtrs in its own CSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCaps {
    /// Its endpoint (receive right).
    pub endpoint: Cap<Endpoint>,
    /// The ticker's TCB.
    pub ticker_tcb: Cap<Tcb>,
    /// The ticker's VCPU.
    pub ticker_vcpu: Cap<VCpu>,
    /// Client `i`'s notification is at `notifications + i`.
    pub notifications: sel4::CPtr,
}

impl ServerCaps {
    /// Client `client`'s notification.
    pub fn notification(&self, client: u8) -> Cap<Notification> {
        sel4::CPtr::from_bits(self.notifications.bits() + u64::from(client)).cast()
    }
}

/// The server: [`Core`], a counter and its capabilities.
pub struct Server<C: Counter> {
    core: Core,
    counter: C,
    caps: ServerCaps,
}

impl<C: Counter> Server<C> {
    /// A server.
    pub fn new(core: Core, counter: C, caps: ServerCaps) -> Self {
        Server { core, counter, caps }
    }

    /// The decision state.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The counter.
    pub fn counter_mut(&mut self) -> &mut C {
        &mut self.counter
    }

    /// Handles one received message: reads the counter, decides, performs the actions.
    /// Returns the reply to send (`None`: receive without replying).
    pub fn handle<K: Kernel>(&mut self, kernel: &mut K, received: &Received) -> Option<Message> {
        let raw = self.counter.read();
        let out = self.core.handle(received.badge, &received.msg, raw);
        let mut ticker_failed = false;
        for &a in out.actions.as_slice() {
            if ticker_failed && a.is_ticker() {
                continue;
            }
            match self.perform(kernel, a) {
                Ok(()) => self.core.kernel_done(),
                Err(_) => {
                    self.core.kernel_failed(a);
                    if a.is_ticker() {
                        ticker_failed = true;
                        // Best effort: a ticker that cannot be programmed must not spin.
                        let _ = kernel.tcb_suspend(self.caps.ticker_tcb);
                    }
                }
            }
        }
        // A ticker suspended for failing is not answered; a client still is.
        if ticker_failed && received.badge == badge::TICKER { None } else { out.reply }
    }

    fn perform<K: Kernel>(&mut self, k: &mut K, a: Action) -> sel4::Result<()> {
        match a {
            Action::Signal { client } => {
                k.signal(self.caps.notification(client));
                Ok(())
            }
            Action::SetCompare(v) => k.vcpu_write_reg(self.caps.ticker_vcpu, VCpuReg::CntvCval, v),
            Action::EnableTimer => k.vcpu_write_reg(self.caps.ticker_vcpu, VCpuReg::CntvCtl, CNTV_CTL_ENABLE),
            Action::AckTimer => k.vcpu_ack_vppi(self.caps.ticker_vcpu, VTIMER_IRQ),
            Action::ResumeTicker => k.tcb_resume(self.caps.ticker_tcb),
            Action::SuspendTicker => k.tcb_suspend(self.caps.ticker_tcb),
        }
    }

    /// Serves forever: receive, handle, reply-and-receive.
    pub fn run<K: Kernel>(&mut self, kernel: &mut K) -> ! {
        let ep = self.caps.endpoint;
        let mut received = kernel.recv(ep);
        loop {
            received = match self.handle(kernel, &received) {
                Some(reply) => kernel.reply_recv(ep, &reply),
                None => kernel.recv(ep),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Frequency;
    use crate::protocol::{ReplyError, decode_reply, label};

    const HZ: u64 = 62_500_000; // 16 ns per tick

    fn core() -> Core {
        let mut c = Core::new(Clock::new(Frequency::new(HZ).unwrap(), 64, 0).unwrap());
        c.add_client(0, true);
        c.add_client(1, true);
        c.add_client(2, false);
        c
    }

    fn ticks(ns: u64) -> u64 {
        ns / 16
    }

    fn req(r: Request) -> Message {
        r.encode()
    }

    fn vppi() -> Message {
        Message::new(VPPI_EVENT_LABEL, &[VTIMER_IRQ])
    }

    fn ok_words<const N: usize>(o: &Outcome) -> [u64; N] {
        decode_reply::<N>(o.reply.as_ref().expect("a reply")).expect("success")
    }

    fn err(o: &Outcome) -> ReplyError {
        decode_reply::<0>(o.reply.as_ref().expect("a reply")).expect_err("an error")
    }

    #[test]
    fn now_reads_the_counter_and_does_nothing_else() {
        let mut c = core();
        let o = c.handle(badge::client(0), &req(Request::Now), ticks(1_000_000));
        assert_eq!(ok_words::<1>(&o), [1_000_000]);
        assert!(o.actions.as_slice().is_empty());
        // Monotonic even if asked with an equal reading.
        let o = c.handle(badge::client(1), &req(Request::Now), ticks(1_000_000));
        assert_eq!(ok_words::<1>(&o), [1_000_000]);
    }

    #[test]
    fn first_timeout_programs_enables_and_starts_the_ticker() {
        let mut c = core();
        let o = c.handle(badge::client(0), &req(Request::SetTimeout { id: 1, deadline_ns: 5_000_000 }), 0);
        assert_eq!(ok_words::<0>(&o), []);
        assert_eq!(
            o.actions.as_slice(),
            &[Action::SetCompare(ticks(5_000_000)), Action::EnableTimer, Action::ResumeTicker]
        );
        assert_eq!(c.ticker(), TickerState::Running { compare: ticks(5_000_000) });
        // An earlier deadline only moves the compare value.
        let o = c.handle(badge::client(1), &req(Request::SetTimeout { id: 0, deadline_ns: 2_000_000 }), 10);
        assert_eq!(o.actions.as_slice(), &[Action::SetCompare(ticks(2_000_000))]);
        // A later one changes nothing in the kernel.
        let o = c.handle(badge::client(1), &req(Request::SetTimeout { id: 3, deadline_ns: 9_000_000 }), 20);
        assert!(o.actions.as_slice().is_empty());
    }

    #[test]
    fn a_vppi_event_fires_due_timeouts_rearms_acks_and_resumes() {
        let mut c = core();
        c.handle(badge::client(0), &req(Request::SetTimeout { id: 1, deadline_ns: 2_000_000 }), 0);
        c.handle(badge::client(1), &req(Request::SetTimeout { id: 2, deadline_ns: 2_000_000 }), 0);
        c.handle(badge::client(1), &req(Request::SetTimeout { id: 3, deadline_ns: 7_000_000 }), 0);
        let o = c.handle(badge::TICKER, &vppi(), ticks(2_000_000));
        assert_eq!(
            o.actions.as_slice(),
            &[
                Action::Signal { client: 0 },
                Action::Signal { client: 1 },
                Action::SetCompare(ticks(7_000_000)),
                Action::AckTimer
            ]
        );
        assert_eq!(o.reply, Some(Message::new(0, &[])), "the fault reply resumes the ticker");
        assert_eq!(c.stats().ticks, 1);
        assert_eq!(c.stats().fired, 2);
        let o = c.handle(badge::client(1), &req(Request::Fired), ticks(2_000_100));
        assert_eq!(ok_words::<1>(&o), [1 << 2]);
        // Last one: fired, nothing left, the ticker is suspended and the fault not answered.
        let o = c.handle(badge::TICKER, &vppi(), ticks(7_000_000));
        assert_eq!(o.actions.as_slice(), &[Action::Signal { client: 1 }, Action::SuspendTicker]);
        assert_eq!(o.reply, None);
        assert_eq!(c.ticker(), TickerState::Stopped);
        // Next arm after a suspension acknowledges the masked interrupt before resuming.
        let o =
            c.handle(badge::client(0), &req(Request::SetTimeout { id: 0, deadline_ns: 9_000_000 }), ticks(7_000_100));
        assert_eq!(
            o.actions.as_slice(),
            &[Action::SetCompare(ticks(9_000_000)), Action::AckTimer, Action::ResumeTicker]
        );
    }

    #[test]
    fn an_early_event_fires_nothing_and_rearms() {
        let mut c = core();
        c.handle(badge::client(0), &req(Request::SetTimeout { id: 1, deadline_ns: 4_000_000 }), 0);
        c.handle(badge::client(0), &req(Request::Cancel { id: 1 }), 0);
        c.handle(badge::client(0), &req(Request::SetTimeout { id: 2, deadline_ns: 8_000_000 }), 0);
        let o = c.handle(badge::TICKER, &vppi(), ticks(4_000_000));
        assert_eq!(o.actions.as_slice(), &[Action::AckTimer]);
        assert!(o.reply.is_some());
        assert_eq!(c.stats().fired, 0);
    }

    #[test]
    fn past_deadlines_fire_at_once() {
        let mut c = core();
        let o = c.handle(badge::client(0), &req(Request::SetTimeout { id: 9, deadline_ns: 100 }), ticks(1_000));
        assert_eq!(o.actions.as_slice(), &[Action::Signal { client: 0 }]);
        assert_eq!(c.ticker(), TickerState::Stopped);
        let o = c.handle(badge::client(0), &req(Request::Fired), ticks(1_000));
        assert_eq!(ok_words::<1>(&o), [1 << 9]);
    }

    #[test]
    fn cancel_of_the_last_pending_timeout_suspends_the_ticker() {
        let mut c = core();
        c.handle(badge::client(0), &req(Request::SetTimeout { id: 1, deadline_ns: 4_000_000 }), 0);
        let o = c.handle(badge::client(0), &req(Request::Cancel { id: 1 }), 0);
        assert_eq!(ok_words::<1>(&o), [CancelOutcome::Pending as u64]);
        assert_eq!(o.actions.as_slice(), &[Action::SuspendTicker]);
        let o = c.handle(badge::client(0), &req(Request::Cancel { id: 1 }), 0);
        assert_eq!(ok_words::<1>(&o), [CancelOutcome::NotSet as u64]);
        assert!(o.actions.as_slice().is_empty());
    }

    #[test]
    fn unknown_badges_and_bad_messages_get_errors_and_change_nothing() {
        let mut c = core();
        let before = c.timeouts().clone();
        let cases: [(u64, Message, u64); 9] = [
            (0, req(Request::Now), ErrorCode::UnknownClient as u64),
            (badge::client(5), req(Request::Now), ErrorCode::UnknownClient as u64),
            (0xdead, req(Request::Now), ErrorCode::UnknownClient as u64),
            (badge::client(0), Message::new(label::NOW, &[1]), ErrorCode::BadRequest as u64),
            (badge::client(0), Message::new(0x1234, &[]), ErrorCode::BadRequest as u64),
            (badge::client(0), Message::new(label::SET_TIMEOUT, &[64, 1]), ErrorCode::BadId as u64),
            (badge::client(2), req(Request::SetTimeout { id: 0, deadline_ns: 1 }), ErrorCode::NoNotification as u64),
            (badge::client(0), req(Request::AddClient { index: 3, notify: true }), ErrorCode::NotAllowed as u64),
            (badge::ADMIN, req(Request::Fired), ErrorCode::NotAllowed as u64),
        ];
        for (b, m, code) in cases {
            let o = c.handle(b, &m, 0);
            assert_eq!(err(&o), ReplyError::Server { code }, "badge {b:#x} {m:?}");
            assert!(o.actions.as_slice().is_empty());
        }
        assert_eq!(c.timeouts(), &before);
        assert_eq!(c.stats().errors, 9);
        // And it keeps serving.
        let o = c.handle(badge::client(0), &req(Request::Now), ticks(320));
        assert_eq!(ok_words::<1>(&o), [320]);
    }

    #[test]
    fn admin_adds_and_removes_clients() {
        let mut c = core();
        assert!(c.handle(badge::client(7), &req(Request::Now), 0).reply.is_some());
        let o = c.handle(badge::ADMIN, &req(Request::AddClient { index: 7, notify: true }), 0);
        assert_eq!(ok_words::<0>(&o), []);
        let o = c.handle(badge::client(7), &req(Request::SetTimeout { id: 0, deadline_ns: 1_000_000 }), 0);
        assert_eq!(ok_words::<0>(&o), []);
        let o = c.handle(badge::ADMIN, &req(Request::RemoveClient { index: 7 }), 0);
        assert_eq!(o.actions.as_slice(), &[Action::SuspendTicker], "its only timeout went with it");
        let o = c.handle(badge::client(7), &req(Request::Now), 0);
        assert_eq!(err(&o), ReplyError::Server { code: ErrorCode::UnknownClient as u64 });
    }

    #[test]
    fn a_ticker_fault_other_than_its_timer_takes_timeouts_down_but_not_now() {
        let mut c = core();
        c.handle(badge::client(0), &req(Request::SetTimeout { id: 1, deadline_ns: 4_000_000 }), 0);
        let vm_fault = Message::new(5, &[0x1000, 0x1000, 1, 0x8200_0000]);
        let o = c.handle(badge::TICKER, &vm_fault, 10);
        assert_eq!(o.actions.as_slice(), &[Action::SuspendTicker]);
        assert_eq!(o.reply, None);
        assert_eq!(c.ticker(), TickerState::Down);
        let o = c.handle(badge::client(0), &req(Request::SetTimeout { id: 2, deadline_ns: 1 }), 10);
        assert_eq!(err(&o), ReplyError::Server { code: ErrorCode::TickerDown as u64 });
        let o = c.handle(badge::client(0), &req(Request::Now), ticks(1600));
        assert_eq!(ok_words::<1>(&o), [1600]);
    }

    #[test]
    fn every_client_signalled_at_once_fits_the_action_list() {
        let mut c = Core::new(Clock::new(Frequency::new(HZ).unwrap(), 64, 0).unwrap());
        for i in 0..MAX_CLIENTS {
            c.add_client(i, true);
            c.handle(badge::client(i), &req(Request::SetTimeout { id: 0, deadline_ns: 1600 }), 0);
            c.handle(badge::client(i), &req(Request::SetTimeout { id: 1, deadline_ns: 9600 }), 0);
        }
        let o = c.handle(badge::TICKER, &vppi(), ticks(1600));
        let signals = o.actions.as_slice().iter().filter(|a| !a.is_ticker()).count();
        assert_eq!(signals, MAX_CLIENTS);
        assert_eq!(o.actions.as_slice().len(), MAX_CLIENTS + 2, "{:?}", o.actions);
    }
}
