//! The client side of the timer protocol: one `seL4_Call` per request.
//!
//! Owns a client's endpoint capability, the last time it saw (to catch a clock going
//! backwards) and the fired ids it collected but the caller has not taken yet. Never touches
//! the notification except to wait on it in [`TimerClient::sleep_until`].
//!
//! # Kernel entries
//! `now`, `set_timeout`, `cancel`, `fired`, `stats`: exactly one `seL4_Call` each.
//! `sleep_until`: one `Call` to arm, one `Wait` per wake-up, one `Call` to collect (3 when
//! nothing else fires meanwhile).
//!
//! # The zero-system-call alternative
//! A native thread can read `CNTPCT_EL0` itself (`EXPORT_PCNT_USER` lets EL0 read it) and
//! convert with [`crate::clock::ticks_to_ns`]: the same value the server would report, with
//! no kernel entry. It is allowed only where all of these hold: the reader is trusted code of
//! the root task or VMM (the kernel's help text warns the exported counter is a timing
//! channel; guests must not be handed this path, they have their own virtual counter); it uses
//! the server's frequency and base (see `root-task/src/timer.rs`, base 0: the counter's reset);
//! and the counter does not wrap within the uptime (architecturally guaranteed: at least 40
//! years; the server itself extends across a wrap, a direct reader does not). It gives the
//! time only: timeouts still need the server.

use core::fmt;

use sel4::cap_type::{Endpoint, Notification};
use sel4::{Cap, Kernel};

use crate::protocol::{self, CancelOutcome, ReplyError, Request, SLEEP_ID, Stats, TIMEOUT_IDS};

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server refused or broke the protocol.
    Reply(ReplyError),
    /// The server's clock went backwards.
    NotMonotonic {
        /// Last value seen.
        last: u64,
        /// Value now.
        now: u64,
    },
    /// An id of [`TIMEOUT_IDS`] or more (not sent).
    BadId {
        /// The id.
        id: u8,
    },
    /// `cancel` answered with an outcome this client does not know.
    BadOutcome {
        /// The word.
        word: u64,
    },
}

impl From<ReplyError> for ClientError {
    fn from(e: ReplyError) -> Self {
        ClientError::Reply(e)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Reply(e) => e.fmt(f),
            ClientError::NotMonotonic { last, now } => write!(f, "timer went backwards from {last} to {now} ns"),
            ClientError::BadId { id } => write!(f, "timeout id {id} is not below {TIMEOUT_IDS}"),
            ClientError::BadOutcome { word } => write!(f, "cancel answered with unknown outcome {word}"),
        }
    }
}

impl core::error::Error for ClientError {}

/// A client of the timer server behind one badged endpoint capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerClient {
    ep: Cap<Endpoint>,
    last: u64,
    /// Fired ids collected by `sleep_until` that belong to other timeouts.
    collected: u64,
}

impl TimerClient {
    /// A client of the server behind `ep`.
    pub const fn new(ep: Cap<Endpoint>) -> Self {
        TimerClient { ep, last: 0, collected: 0 }
    }

    /// The endpoint.
    pub const fn endpoint(&self) -> Cap<Endpoint> {
        self.ep
    }

    fn call<K: Kernel, const N: usize>(&self, k: &mut K, r: Request) -> Result<[u64; N], ClientError> {
        let reply = k.call(self.ep, &r.encode());
        Ok(protocol::decode_reply::<N>(&reply)?)
    }

    /// Nanoseconds since boot: one `seL4_Call`.
    pub fn now<K: Kernel>(&mut self, k: &mut K) -> Result<u64, ClientError> {
        let [ns] = self.call::<K, 1>(k, Request::Now)?;
        if ns < self.last {
            return Err(ClientError::NotMonotonic { last: self.last, now: ns });
        }
        self.last = ns;
        Ok(ns)
    }

    /// Arms timeout `id` for `deadline_ns` (absolute, on the `now` clock); it signals this
    /// client's notification when due.
    pub fn set_timeout<K: Kernel>(&mut self, k: &mut K, id: u8, deadline_ns: u64) -> Result<(), ClientError> {
        if u64::from(id) >= TIMEOUT_IDS {
            return Err(ClientError::BadId { id });
        }
        self.collected &= !(1u64 << id);
        self.call::<K, 0>(k, Request::SetTimeout { id, deadline_ns }).map(drop)
    }

    /// Disarms timeout `id`.
    pub fn cancel<K: Kernel>(&mut self, k: &mut K, id: u8) -> Result<CancelOutcome, ClientError> {
        if u64::from(id) >= TIMEOUT_IDS {
            return Err(ClientError::BadId { id });
        }
        let [w] = self.call::<K, 1>(k, Request::Cancel { id })?;
        let mut outcome = CancelOutcome::from_word(w).ok_or(ClientError::BadOutcome { word: w })?;
        if outcome == CancelOutcome::NotSet && self.collected & (1 << id) != 0 {
            outcome = CancelOutcome::Fired;
        }
        self.collected &= !(1u64 << id);
        Ok(outcome)
    }

    /// The ids fired since the last call (bit `id`), including any collected by
    /// [`TimerClient::sleep_until`] meanwhile.
    pub fn fired<K: Kernel>(&mut self, k: &mut K) -> Result<u64, ClientError> {
        let [mask] = self.call::<K, 1>(k, Request::Fired)?;
        Ok(mask | core::mem::take(&mut self.collected))
    }

    /// The server's counters.
    pub fn stats<K: Kernel>(&mut self, k: &mut K) -> Result<Stats, ClientError> {
        Ok(Stats::from_words(self.call::<K, { Stats::WORDS }>(k, Request::Stats)?))
    }

    /// Blocks until `deadline_ns`: arms timeout [`SLEEP_ID`], waits on `ntfn` (this client's
    /// notification) until it has fired. Other ids that fire meanwhile are kept for
    /// [`TimerClient::fired`].
    pub fn sleep_until<K: Kernel>(
        &mut self,
        k: &mut K,
        ntfn: Cap<Notification>,
        deadline_ns: u64,
    ) -> Result<(), ClientError> {
        self.set_timeout(k, SLEEP_ID, deadline_ns)?;
        loop {
            k.wait(ntfn);
            let [mask] = self.call::<K, 1>(k, Request::Fired)?;
            self.collected |= mask & !(1u64 << SLEEP_ID);
            if mask & (1u64 << SLEEP_ID) != 0 {
                return Ok(());
            }
        }
    }
}

/// Admin: lets client `index` call (`notify`: its notification is in the server's CNode, see
/// [`crate::setup::Spawned::add_client`]). One `seL4_Call` on the admin capability.
pub fn add_client<K: Kernel>(k: &mut K, admin: Cap<Endpoint>, index: u8, notify: bool) -> Result<(), ClientError> {
    let reply = k.call(admin, &Request::AddClient { index, notify }.encode());
    Ok(protocol::decode_reply::<0>(&reply).map(drop)?)
}

/// Admin: client `index` may no longer call; its timeouts are dropped. One `seL4_Call`.
pub fn remove_client<K: Kernel>(k: &mut K, admin: Cap<Endpoint>, index: u8) -> Result<(), ClientError> {
    let reply = k.call(admin, &Request::RemoveClient { index }.encode());
    Ok(protocol::decode_reply::<0>(&reply).map(drop)?)
}
