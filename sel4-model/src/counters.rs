//! Cost counters: kernel entries by kind, and the memory the kernel zeroes when it resets an
//! untyped. Tests pin invocation counts; benchmarks report them against lower bounds.

use std::fmt;

use sel4::{Observer, Op, OpCounts};

/// Counts since boot or the last [`crate::Model::reset_counters`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Counters {
    ops: OpCounts,
    /// Bytes the kernel cleared while resetting untyped memory for a retype
    /// (`resetUntypedCap`: device memory is not cleared).
    pub bytes_zeroed: u64,
    /// Number of retypes that started an untyped over from its base (`reset` in
    /// `invokeUntyped_Retype`, with a non-zero watermark to reset).
    pub untyped_resets: u64,
}

impl Counters {
    /// Kernel entries of kind `op`.
    pub fn get(&self, op: Op) -> u64 {
        self.ops.get(op)
    }

    /// All kernel entries.
    pub fn total(&self) -> u64 {
        self.ops.total()
    }

    /// Kinds with a non-zero count, in [`Op`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Op, u64)> + '_ {
        self.ops.nonzero()
    }

    pub(crate) fn count(&mut self, op: Op) {
        self.ops.entry(op);
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (op, n) in self.iter() {
            m.entry(&op, &n);
        }
        m.entry(&"bytes_zeroed", &self.bytes_zeroed);
        m.entry(&"untyped_resets", &self.untyped_resets);
        m.finish()
    }
}
