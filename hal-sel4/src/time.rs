//! Time by IPC: the protocol spoken with the timer server, and the HAL's client side.
//!
//! The root task runs at EL0 and reads no timer itself; a timer server (its own thread,
//! elsewhere) owns the clock. `current_time_nanos` is exactly one `seL4_Call` on the server's
//! endpoint.
//!
//! # Protocol (version 1)
//! | message | label | words |
//! |---|---|---|
//! | request `now` | [`LABEL_NOW`] | none |
//! | reply, success | [`REPLY_OK`] | `mr0` = nanoseconds since the server started counting, monotonic |
//! | reply, failure | [`REPLY_ERROR`] | `mr0` = server-defined error code |
//!
//! Labels are small numbers of capvisor's own; no capabilities are transferred. A request
//! with another label or with words is answered with [`REPLY_ERROR`] and code
//! [`ERROR_BAD_REQUEST`]. This module owns the encoding and the client; it never serves.

use core::fmt;

use sel4::cap_type::Endpoint;
use sel4::{Cap, Kernel, Message};

/// Label of the `now` request.
pub const LABEL_NOW: u64 = 0x4e4f57; // "NOW"
/// Label of a successful reply.
pub const REPLY_OK: u64 = 0;
/// Label of a failure reply.
pub const REPLY_ERROR: u64 = 1;
/// Error code: the server did not understand the request.
pub const ERROR_BAD_REQUEST: u64 = 1;

/// A request the server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The current time.
    Now,
}

/// The `now` request.
pub fn now_request() -> Message {
    Message::new(LABEL_NOW, &[])
}

/// Decodes a request (server side).
pub fn decode_request(msg: &Message) -> Result<Request, u64> {
    match (msg.info.label(), msg.info.length()) {
        (LABEL_NOW, 0) => Ok(Request::Now),
        _ => Err(ERROR_BAD_REQUEST),
    }
}

/// The success reply carrying `nanos` (server side).
pub fn now_reply(nanos: u64) -> Message {
    Message::new(REPLY_OK, &[nanos])
}

/// The failure reply carrying `code` (server side).
pub fn error_reply(code: u64) -> Message {
    Message::new(REPLY_ERROR, &[code])
}

/// Why the time could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// No timer endpoint was configured.
    NoServer,
    /// The server answered with an error code.
    Server {
        /// The code.
        code: u64,
    },
    /// The reply does not follow the protocol.
    BadReply {
        /// Its label.
        label: u64,
        /// Its length in words.
        length: u64,
    },
    /// The server's clock went backwards.
    NotMonotonic {
        /// Last value seen.
        last: u64,
        /// Value now.
        now: u64,
    },
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::NoServer => write!(f, "no timer server endpoint configured"),
            TimeError::Server { code } => write!(f, "timer server error {code}"),
            TimeError::BadReply { label, length } => {
                write!(f, "timer server reply with label {label:#x} and {length} words breaks the protocol")
            }
            TimeError::NotMonotonic { last, now } => write!(f, "timer went backwards from {last} to {now} ns"),
        }
    }
}

impl core::error::Error for TimeError {}

/// The client: the endpoint and the last time seen (to catch a clock going backwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerClient {
    ep: Cap<Endpoint>,
    last: u64,
}

impl TimerClient {
    /// A client of the server behind `ep`.
    pub fn new(ep: Cap<Endpoint>) -> Self {
        TimerClient { ep, last: 0 }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> Cap<Endpoint> {
        self.ep
    }

    /// One `seL4_Call`: the current time in nanoseconds.
    pub fn now<K: Kernel>(&mut self, kernel: &mut K) -> Result<u64, TimeError> {
        let reply = kernel.call(self.ep, &now_request());
        let (label, length) = (reply.info.label(), reply.info.length());
        match (label, reply.words()) {
            (REPLY_OK, [nanos]) => {
                if *nanos < self.last {
                    return Err(TimeError::NotMonotonic { last: self.last, now: *nanos });
                }
                self.last = *nanos;
                Ok(*nanos)
            }
            (REPLY_ERROR, [code]) => Err(TimeError::Server { code: *code }),
            _ => Err(TimeError::BadReply { label, length }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_replies_round_trip() {
        assert_eq!(decode_request(&now_request()), Ok(Request::Now));
        assert_eq!(decode_request(&Message::new(LABEL_NOW, &[1])), Err(ERROR_BAD_REQUEST));
        assert_eq!(decode_request(&Message::new(7, &[])), Err(ERROR_BAD_REQUEST));
        let r = now_reply(123);
        assert_eq!((r.info.label(), r.words()), (REPLY_OK, &[123u64][..]));
        let e = error_reply(9);
        assert_eq!((e.info.label(), e.words()), (REPLY_ERROR, &[9u64][..]));
    }
}
