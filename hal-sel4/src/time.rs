//! Time by IPC: the HAL's side of the timer server.
//!
//! The root task runs at EL0 and keeps no clock itself; the timer server (crate
//! `timer-server`, its own thread) owns the counter. `current_time_nanos` is exactly one
//! `seL4_Call` on the server's endpoint, through the server's own client
//! ([`timer_server::TimerClient`]), so the protocol is defined once, in
//! `timer_server::protocol`. This module owns only what the HAL adds: the case where no
//! server has been configured yet.

use core::fmt;

pub use timer_server::client::{ClientError, TimerClient};

/// Why the time could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// No timer endpoint was configured.
    NoServer,
    /// The server refused, broke the protocol, or went backwards.
    Client(ClientError),
}

impl From<ClientError> for TimeError {
    fn from(e: ClientError) -> Self {
        TimeError::Client(e)
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::NoServer => write!(f, "no timer server endpoint configured"),
            TimeError::Client(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for TimeError {}
