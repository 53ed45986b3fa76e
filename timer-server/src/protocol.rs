//! The timer protocol (version 1): what travels on the server's endpoint.
//!
//! Owns the wire format only: labels, words, badges, error codes, and their encoders and
//! decoders for both sides. Never sends anything (that is [`crate::client`] and
//! [`crate::server`]).
//!
//! # Messages
//! Every request is one `seL4_Call` on a badged endpoint capability; the badge says who is
//! asking (one badge per client, see [`badge`]). No capabilities travel either way.
//!
//! | request | label | words | success reply words |
//! |---|---|---|---|
//! | `now` | [`label::NOW`] | none | `[ns]`: nanoseconds since boot, monotonic |
//! | `set_timeout` | [`label::SET_TIMEOUT`] | `[id, deadline_ns]` | none |
//! | `cancel` | [`label::CANCEL`] | `[id]` | `[outcome]` ([`CancelOutcome`]) |
//! | `fired` | [`label::FIRED`] | none | `[mask]`: ids fired since the last `fired` (bit `id`) |
//! | `stats` | [`label::STATS`] | none | the [`Stats`] words |
//! | `add_client` (admin) | [`label::ADD_CLIENT`] | `[index, notify]` | none |
//! | `remove_client` (admin) | [`label::REMOVE_CLIENT`] | `[index]` | none |
//!
//! A success reply has label [`REPLY_OK`]; a failure has label [`REPLY_ERROR`] and one word,
//! an [`ErrorCode`]. A request with another label, another number of words, extra
//! capabilities or an out-of-range argument gets [`ErrorCode::BadRequest`] (or
//! [`ErrorCode::BadId`] for an id); a badge that is not a registered client gets
//! [`ErrorCode::UnknownClient`]. The server answers every request and keeps serving.
//!
//! # Timeouts
//! A client has [`TIMEOUT_IDS`] one-shot timeouts, named by id. `set_timeout(id, deadline)`
//! arms (or re-arms) one for an absolute time on the `now` clock; when it is due the server
//! marks it fired and signals the client's notification (one signal per client per expiry,
//! however many of its timeouts fired); `fired` returns and clears the fired ids. A deadline
//! already past fires at once. Timeouts fire in deadline order: one expiry (at a ticker event,
//! or when a deadline is set in the past) fires every pending timeout whose deadline has
//! passed, and nothing else fires them (`fired` only reports). `sleep_until` is `set_timeout` of [`SLEEP_ID`] followed by a
//! wait on the notification (see [`crate::client`]).
//!
//! This is the only definition of the protocol: hal-sel4's `current_time_nanos` uses
//! [`crate::client::TimerClient`] too.

use core::fmt;

use sel4::Message;
use sel4::message_info::MessageInfo;

/// Clients a server can serve (client indices `0..MAX_CLIENTS`).
pub const MAX_CLIENTS: usize = 16;
/// Timeout ids per client: `0..TIMEOUT_IDS` (bit `id` of a fired mask).
pub const TIMEOUT_IDS: u64 = 64;
/// The id `sleep_until` uses.
pub const SLEEP_ID: u8 = 63;

/// Request labels: small numbers of capvisor's own (ASCII mnemonics).
pub mod label {
    /// `now`: "NOW" (the same number as hal-sel4's first time protocol).
    pub const NOW: u64 = 0x4e4f57;
    /// `set_timeout`: "SET".
    pub const SET_TIMEOUT: u64 = 0x534554;
    /// `cancel`: "CNL".
    pub const CANCEL: u64 = 0x434e4c;
    /// `fired`: "FIR".
    pub const FIRED: u64 = 0x464952;
    /// `stats`: "STA".
    pub const STATS: u64 = 0x535441;
    /// `add_client` (admin badge only): "ADC".
    pub const ADD_CLIENT: u64 = 0x414443;
    /// `remove_client` (admin badge only): "RMC".
    pub const REMOVE_CLIENT: u64 = 0x524d43;
}

/// Label of a successful reply.
pub const REPLY_OK: u64 = 0;
/// Label of a failure reply.
pub const REPLY_ERROR: u64 = 1;

/// Endpoint badges: who is asking.
pub mod badge {
    use super::MAX_CLIENTS;

    /// The badge of client `index` (`0..MAX_CLIENTS`): `index + 1`, so no client has badge 0
    /// (an unbadged capability).
    pub const fn client(index: usize) -> u64 {
        index as u64 + 1
    }

    /// The client index of a badge, if it is a client badge.
    pub const fn client_index(badge: u64) -> Option<usize> {
        if badge >= 1 && badge <= MAX_CLIENTS as u64 { Some((badge - 1) as usize) } else { None }
    }

    /// The ticker thread's fault endpoint: its virtual-timer events arrive with this badge.
    pub const TICKER: u64 = 0x100;
    /// The root task's administrative capability (adds and removes clients).
    pub const ADMIN: u64 = 0x200;
}

/// Why the server refused a request (the word of a [`REPLY_ERROR`] reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ErrorCode {
    /// Unknown label, wrong number of words, capabilities attached, or an argument out of range.
    BadRequest = 1,
    /// The badge is not a registered client (or not the admin badge, for admin requests).
    UnknownClient = 2,
    /// A timeout id of [`TIMEOUT_IDS`] or more.
    BadId = 3,
    /// A timeout was set by a client registered without a notification.
    NoNotification = 4,
    /// A client request on the admin badge, or an admin request on a client badge.
    NotAllowed = 5,
    /// The ticker failed (its thread faulted or could not be programmed): timeouts cannot be
    /// delivered; `now` still works.
    TickerDown = 6,
}

impl ErrorCode {
    /// Every code, in number order.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownClient,
        ErrorCode::BadId,
        ErrorCode::NoNotification,
        ErrorCode::NotAllowed,
        ErrorCode::TickerDown,
    ];

    /// The code with this number.
    pub fn from_word(w: u64) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as u64 == w)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::BadRequest => "malformed request",
            ErrorCode::UnknownClient => "badge is not a registered client",
            ErrorCode::BadId => "timeout id out of range",
            ErrorCode::NoNotification => "client has no notification for timeouts",
            ErrorCode::NotAllowed => "request not allowed on this badge",
            ErrorCode::TickerDown => "ticker failed: timeouts unavailable",
        })
    }
}

/// What `cancel` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum CancelOutcome {
    /// Nothing was set with this id.
    NotSet = 0,
    /// It was pending and will not fire.
    Pending = 1,
    /// It had fired and was not collected by `fired` yet; the mark is cleared.
    Fired = 2,
}

impl CancelOutcome {
    /// The outcome with this number.
    pub fn from_word(w: u64) -> Option<Self> {
        match w {
            0 => Some(CancelOutcome::NotSet),
            1 => Some(CancelOutcome::Pending),
            2 => Some(CancelOutcome::Fired),
            _ => None,
        }
    }
}

/// The server's counters (the `stats` reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received (requests and ticker events).
    pub messages: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Virtual-timer events from the ticker.
    pub ticks: u64,
    /// Timeouts that fired.
    pub fired: u64,
    /// Kernel operations the server performed (signals, VCPU register writes, ticker resume,
    /// suspend and acknowledgements), beyond its receive and reply.
    pub kernel_ops: u64,
    /// Kernel operations that failed.
    pub kernel_errors: u64,
}

impl Stats {
    /// Words in the `stats` reply.
    pub const WORDS: usize = 6;

    /// As reply words.
    pub fn to_words(&self) -> [u64; Self::WORDS] {
        [self.messages, self.errors, self.ticks, self.fired, self.kernel_ops, self.kernel_errors]
    }

    /// From reply words.
    pub fn from_words(w: [u64; Self::WORDS]) -> Self {
        Stats { messages: w[0], errors: w[1], ticks: w[2], fired: w[3], kernel_ops: w[4], kernel_errors: w[5] }
    }
}

/// A request, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The current time.
    Now,
    /// Arm timeout `id` for `deadline_ns`.
    SetTimeout {
        /// `0..TIMEOUT_IDS`.
        id: u8,
        /// Absolute, on the `now` clock.
        deadline_ns: u64,
    },
    /// Disarm timeout `id`.
    Cancel {
        /// `0..TIMEOUT_IDS`.
        id: u8,
    },
    /// Collect the fired ids.
    Fired,
    /// The server's counters.
    Stats,
    /// Admin: client `index` may now call; `notify`: it has a notification for timeouts in the
    /// server's CNode.
    AddClient {
        /// `0..MAX_CLIENTS`.
        index: u8,
        /// Whether timeouts can be delivered to it.
        notify: bool,
    },
    /// Admin: client `index` is gone; its timeouts are dropped.
    RemoveClient {
        /// `0..MAX_CLIENTS`.
        index: u8,
    },
}

impl Request {
    /// The message to send.
    pub fn encode(&self) -> Message {
        match *self {
            Request::Now => Message::new(label::NOW, &[]),
            Request::SetTimeout { id, deadline_ns } => Message::new(label::SET_TIMEOUT, &[u64::from(id), deadline_ns]),
            Request::Cancel { id } => Message::new(label::CANCEL, &[u64::from(id)]),
            Request::Fired => Message::new(label::FIRED, &[]),
            Request::Stats => Message::new(label::STATS, &[]),
            Request::AddClient { index, notify } => {
                Message::new(label::ADD_CLIENT, &[u64::from(index), u64::from(notify)])
            }
            Request::RemoveClient { index } => Message::new(label::REMOVE_CLIENT, &[u64::from(index)]),
        }
    }

    /// Decodes a received message (server side). Never panics: any message decodes to a
    /// request or an error code.
    pub fn decode(msg: &Message) -> Result<Self, ErrorCode> {
        let info = msg.info;
        if info.extra_caps() != 0 || info.caps_unwrapped() != 0 {
            return Err(ErrorCode::BadRequest);
        }
        let n = info.length();
        let w = |i: usize| msg.mrs.get(i).copied().unwrap_or(0);
        let id = |v: u64| u8::try_from(v).ok().filter(|id| u64::from(*id) < TIMEOUT_IDS).ok_or(ErrorCode::BadId);
        let index =
            |v: u64| u8::try_from(v).ok().filter(|i| usize::from(*i) < MAX_CLIENTS).ok_or(ErrorCode::BadRequest);
        match (info.label(), n) {
            (label::NOW, 0) => Ok(Request::Now),
            (label::SET_TIMEOUT, 2) => Ok(Request::SetTimeout { id: id(w(0))?, deadline_ns: w(1) }),
            (label::CANCEL, 1) => Ok(Request::Cancel { id: id(w(0))? }),
            (label::FIRED, 0) => Ok(Request::Fired),
            (label::STATS, 0) => Ok(Request::Stats),
            (label::ADD_CLIENT, 2) => match w(1) {
                0 | 1 => Ok(Request::AddClient { index: index(w(0))?, notify: w(1) == 1 }),
                _ => Err(ErrorCode::BadRequest),
            },
            (label::REMOVE_CLIENT, 1) => Ok(Request::RemoveClient { index: index(w(0))? }),
            _ => Err(ErrorCode::BadRequest),
        }
    }

    /// Whether only the admin badge may make this request.
    pub const fn is_admin(&self) -> bool {
        matches!(self, Request::AddClient { .. } | Request::RemoveClient { .. })
    }
}

/// A success reply carrying `words`.
pub fn ok(words: &[u64]) -> Message {
    Message::new(REPLY_OK, words)
}

/// A failure reply carrying `code`.
pub fn error(code: ErrorCode) -> Message {
    Message::new(REPLY_ERROR, &[code as u64])
}

/// A reply the client could not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The server refused, with this code (the raw word, in case it is newer than this client).
    Server {
        /// The code.
        code: u64,
    },
    /// The reply does not follow the protocol.
    Malformed {
        /// Its label.
        label: u64,
        /// Its length in words.
        length: u64,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Server { code } => match ErrorCode::from_word(*code) {
                Some(c) => write!(f, "timer server: {c}"),
                None => write!(f, "timer server error {code}"),
            },
            ReplyError::Malformed { label, length } => {
                write!(f, "timer server reply with label {label:#x} and {length} words breaks the protocol")
            }
        }
    }
}

/// Decodes a reply that must carry exactly `N` words on success (client side).
pub fn decode_reply<const N: usize>(msg: &Message) -> Result<[u64; N], ReplyError> {
    let info: MessageInfo = msg.info;
    let (label, length) = (info.label(), info.length());
    let malformed = ReplyError::Malformed { label, length };
    match label {
        REPLY_OK if length == N as u64 && info.extra_caps() == 0 => {
            let mut out = [0; N];
            out.copy_from_slice(msg.words().get(..N).ok_or(malformed)?);
            Ok(out)
        }
        REPLY_ERROR if length == 1 => Err(ReplyError::Server { code: msg.mrs[0] }),
        _ => Err(malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Request; 9] = [
        Request::Now,
        Request::SetTimeout { id: 0, deadline_ns: 0 },
        Request::SetTimeout { id: 63, deadline_ns: u64::MAX },
        Request::Cancel { id: 17 },
        Request::Fired,
        Request::Stats,
        Request::AddClient { index: 0, notify: true },
        Request::AddClient { index: 15, notify: false },
        Request::RemoveClient { index: 3 },
    ];

    #[test]
    fn every_request_round_trips() {
        for r in ALL {
            assert_eq!(Request::decode(&r.encode()), Ok(r), "{r:?}");
        }
    }

    #[test]
    fn now_is_wire_compatible_with_the_first_time_protocol() {
        // hal-sel4's first client sends label 0x4e4f57 with no words and expects label 0, [ns].
        let m = Request::Now.encode();
        assert_eq!((m.info.label(), m.info.length()), (0x4e4f57, 0));
        let r = ok(&[123]);
        assert_eq!((r.info.label(), r.words()), (0, &[123u64][..]));
        assert_eq!(decode_reply::<1>(&r), Ok([123]));
    }

    #[test]
    fn malformed_requests_are_refused_with_a_code() {
        let cases: [(Message, ErrorCode); 10] = [
            (Message::new(label::NOW, &[1]), ErrorCode::BadRequest),
            (Message::new(0, &[]), ErrorCode::BadRequest),
            (Message::new(0x7777, &[1, 2]), ErrorCode::BadRequest),
            (Message::new(label::SET_TIMEOUT, &[1]), ErrorCode::BadRequest),
            (Message::new(label::SET_TIMEOUT, &[64, 5]), ErrorCode::BadId),
            (Message::new(label::SET_TIMEOUT, &[1 << 40, 5]), ErrorCode::BadId),
            (Message::new(label::CANCEL, &[u64::MAX]), ErrorCode::BadId),
            (Message::new(label::ADD_CLIENT, &[16, 1]), ErrorCode::BadRequest),
            (Message::new(label::ADD_CLIENT, &[1, 2]), ErrorCode::BadRequest),
            (Message::new(label::REMOVE_CLIENT, &[300]), ErrorCode::BadRequest),
        ];
        for (m, code) in cases {
            assert_eq!(Request::decode(&m), Err(code), "{m:?}");
        }
        // Capabilities attached, or a length beyond the words a Message carries.
        let mut with_cap = Request::Now.encode();
        with_cap.info = MessageInfo::new(label::NOW, 0, 1, 0);
        assert_eq!(Request::decode(&with_cap), Err(ErrorCode::BadRequest));
        let mut long = Request::Fired.encode();
        long.info = MessageInfo::new(label::FIRED, 0, 0, 120);
        assert_eq!(Request::decode(&long), Err(ErrorCode::BadRequest));
    }

    #[test]
    fn replies_decode_or_name_what_is_wrong() {
        assert_eq!(decode_reply::<0>(&ok(&[])), Ok([]));
        assert_eq!(decode_reply::<2>(&ok(&[4, 5])), Ok([4, 5]));
        assert_eq!(decode_reply::<1>(&error(ErrorCode::BadId)), Err(ReplyError::Server { code: 3 }));
        assert_eq!(decode_reply::<1>(&ok(&[])), Err(ReplyError::Malformed { label: 0, length: 0 }));
        assert_eq!(decode_reply::<1>(&Message::new(9, &[1])), Err(ReplyError::Malformed { label: 9, length: 1 }));
        let text = std::format!("{}", ReplyError::Server { code: 2 });
        assert!(text.starts_with("timer server: badge is not"), "{text}");
    }

    #[test]
    fn badges_name_clients_and_nothing_else() {
        assert_eq!(badge::client(0), 1);
        assert_eq!(badge::client_index(badge::client(MAX_CLIENTS - 1)), Some(MAX_CLIENTS - 1));
        for b in [0, MAX_CLIENTS as u64 + 1, badge::TICKER, badge::ADMIN, u64::MAX] {
            assert_eq!(badge::client_index(b), None, "{b:#x}");
        }
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_word(c as u64), Some(c));
        }
        assert_eq!(ErrorCode::from_word(0), None);
    }
}
