//! "Logged once" with bounded memory: the first occurrence of each key is reported, repeats
//! are not, and once the set is full further new keys are counted and reported only by one
//! "suppressed" notice, so a guest probing every address cannot grow the VMM's memory.

use alloc::vec::Vec;

/// What to do about an occurrence.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// First time: report it.
    First,
    /// Reported before.
    Repeat,
    /// The set is full: this is the first key not recorded; report that notices stop here.
    NowSuppressing,
    /// The set is full and this was already said.
    Suppressed,
}

/// A set of up to `capacity` keys.
#[derive(Clone, Debug)]
pub struct LogOnce {
    keys: Vec<u64>,
    capacity: usize,
    suppressed: u64,
}

impl LogOnce {
    /// A set that remembers up to `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        LogOnce { keys: Vec::with_capacity(capacity), capacity, suppressed: 0 }
    }

    /// Records `key` and says whether to report it.
    pub fn see(&mut self, key: u64) -> Seen {
        if self.keys.contains(&key) {
            return Seen::Repeat;
        }
        if self.keys.len() < self.capacity {
            self.keys.push(key);
            return Seen::First;
        }
        self.suppressed = self.suppressed.saturating_add(1);
        if self.suppressed == 1 { Seen::NowSuppressing } else { Seen::Suppressed }
    }

    /// New keys not recorded because the set was full.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_repeat_then_bounded() {
        let mut l = LogOnce::new(2);
        assert_eq!(l.see(10), Seen::First);
        assert_eq!(l.see(10), Seen::Repeat);
        assert_eq!(l.see(11), Seen::First);
        assert_eq!(l.see(12), Seen::NowSuppressing);
        assert_eq!(l.see(13), Seen::Suppressed);
        assert_eq!(l.see(11), Seen::Repeat, "recorded keys stay recorded");
        for k in 0..10_000 {
            l.see(1000 + k);
        }
        assert_eq!(l.keys.len(), 2);
        assert_eq!(l.suppressed(), 10_002);
    }
}
