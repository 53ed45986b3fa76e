//! [`Counting`]: a [`Kernel`] that passes every call to the kernel it wraps and counts it by
//! [`sel4::Op`], so the same cost accounting runs over the real kernel (which counts nothing)
//! and the model. The forwarding and the counts are `sel4`'s ([`Observed`] with
//! [`OpCounts`]); a kernel that must be given back afterwards (the root task's `RealKernel`
//! holds the thread's only IPC buffer) is lent as `&mut K`, which is a [`Kernel`] too.
//!
//! Owns only its counters; never changes an argument or a result.

use sel4::{Kernel, Observed, OpCounts};

/// Invocation counts, one per [`sel4::Op`].
pub type Counts = OpCounts;

/// A kernel that counts the calls it passes on. See the module docs.
pub type Counting<K> = Observed<K, OpCounts>;

/// Wraps `kernel` with all counts at 0.
pub fn counting<K: Kernel>(kernel: K) -> Counting<K> {
    Observed::new(kernel, OpCounts::default())
}
