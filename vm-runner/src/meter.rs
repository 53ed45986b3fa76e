//! The run loop's meter: every entry the wrapped kernel makes is logged by [`Op`], so the
//! run loop reports the system calls it *made* per exit kind, next to the costs
//! [`crate::Action::ops`] predicts. On the model the model's own counters check the meter.
//!
//! Owns the log only; the forwarding is [`sel4::Observed`]'s, so every call passes unchanged.

use alloc::vec::Vec;

use sel4::{Kernel, Observed, Observer, Op};

/// The entries made, oldest first.
#[derive(Debug, Default)]
pub struct Log(Vec<Op>);

impl Observer for Log {
    fn entry(&mut self, op: Op) {
        self.0.push(op);
    }
}

impl Log {
    /// The entries made since the last call, oldest first; clears the log.
    pub fn take(&mut self) -> Vec<Op> {
        core::mem::take(&mut self.0)
    }

    /// Entries logged and not yet taken.
    pub fn pending(&self) -> usize {
        self.0.len()
    }
}

/// A kernel borrowed for one exit, logging each entry before making it.
pub type Meter<'k, K> = Observed<&'k mut K, Log>;

/// Starts metering `kernel` with an empty log.
pub fn meter<K: Kernel>(kernel: &mut K) -> Meter<'_, K> {
    Observed::new(kernel, Log::default())
}
