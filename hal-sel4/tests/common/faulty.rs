//! A kernel wrapper that makes one chosen invocation fail, to test that every partial
//! operation is undone. Everything else is passed to the wrapped kernel unchanged (the
//! forwarding is `sel4::Observed`'s).

use sel4::{Observed, Observer, Op};

/// Fails the `fail_at`-th (0-based) fallible invocation with `error`; counts them all.
pub struct FailAt {
    pub fail_at: Option<u64>,
    pub error: sel4::Error,
    pub seen: u64,
}

impl Observer for FailAt {
    fn entry(&mut self, _: Op) {}

    fn invocation(&mut self, _: Op) -> sel4::Result<()> {
        let n = self.seen;
        self.seen += 1;
        if self.fail_at == Some(n) { Err(self.error) } else { Ok(()) }
    }
}

/// `K` with invocations that fail on request.
pub type Faulty<K> = Observed<K, FailAt>;

/// Wraps `inner`; nothing fails until `observer.fail_at` is set.
pub fn faulty<K: sel4::Kernel>(inner: K) -> Faulty<K> {
    Observed::new(inner, FailAt { fail_at: None, error: sel4::Error::NotEnoughMemory, seen: 0 })
}
