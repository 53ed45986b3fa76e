//! The table of one-shot timeouts: per client, [`TIMEOUT_IDS`] slots, each pending with a
//! deadline, fired (not yet collected) or free.
//!
//! Owns deadlines and the pending and fired marks. Never signals anyone or touches the
//! kernel: [`Timeouts::expire`] says which clients to signal and [`crate::server`] does it.
//!
//! Sizes are fixed ([`MAX_CLIENTS`] × [`TIMEOUT_IDS`] deadlines, 8 KiB), so the server never
//! allocates. The earliest deadline is found by a scan over the pending marks: cost grows with
//! the number of pending timeouts (a bit-scan per pending one), and it is computed once per
//! request that changes the table, never on `now`.

use crate::protocol::{CancelOutcome, MAX_CLIENTS, TIMEOUT_IDS};

const IDS: usize = TIMEOUT_IDS as usize;

/// The timeouts of every client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    deadline: [[u64; IDS]; MAX_CLIENTS],
    /// Bit `id`: pending.
    pending: [u64; MAX_CLIENTS],
    /// Bit `id`: fired, not collected.
    fired: [u64; MAX_CLIENTS],
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Timeouts::expire`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Bit `client`: that client has newly fired timeouts (signal it once).
    pub clients: u32,
    /// Timeouts that fired.
    pub count: u32,
}

const _: () = assert!(MAX_CLIENTS <= 32, "Expired::clients is a 32-bit mask");

impl Timeouts {
    /// No timeouts.
    pub const fn new() -> Self {
        Timeouts { deadline: [[0; IDS]; MAX_CLIENTS], pending: [0; MAX_CLIENTS], fired: [0; MAX_CLIENTS] }
    }

    fn bit(client: usize, id: u8) -> Option<u64> {
        (client < MAX_CLIENTS && u64::from(id) < TIMEOUT_IDS).then(|| 1u64 << id)
    }

    /// Arms timeout `id` of `client` for `deadline_ns`, replacing a pending one and clearing an
    /// uncollected firing of the same id. Returns false (and changes nothing) for an index out
    /// of range.
    pub fn set(&mut self, client: usize, id: u8, deadline_ns: u64) -> bool {
        let Some(bit) = Self::bit(client, id) else { return false };
        self.deadline[client][usize::from(id)] = deadline_ns;
        self.pending[client] |= bit;
        self.fired[client] &= !bit;
        true
    }

    /// Disarms timeout `id` of `client` and clears its fired mark.
    pub fn cancel(&mut self, client: usize, id: u8) -> CancelOutcome {
        let Some(bit) = Self::bit(client, id) else { return CancelOutcome::NotSet };
        let outcome = if self.pending[client] & bit != 0 {
            CancelOutcome::Pending
        } else if self.fired[client] & bit != 0 {
            CancelOutcome::Fired
        } else {
            CancelOutcome::NotSet
        };
        self.pending[client] &= !bit;
        self.fired[client] &= !bit;
        outcome
    }

    /// The fired ids of `client` (bit `id`), cleared.
    pub fn take_fired(&mut self, client: usize) -> u64 {
        self.fired.get_mut(client).map_or(0, core::mem::take)
    }

    /// Drops every timeout of `client`.
    pub fn clear(&mut self, client: usize) {
        if client < MAX_CLIENTS {
            self.pending[client] = 0;
            self.fired[client] = 0;
        }
    }

    /// Whether timeout `id` of `client` is pending.
    pub fn is_pending(&self, client: usize, id: u8) -> bool {
        Self::bit(client, id).is_some_and(|b| self.pending[client] & b != 0)
    }

    /// Number of pending timeouts.
    pub fn pending_count(&self) -> u32 {
        self.pending.iter().map(|p| p.count_ones()).sum()
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        for (c, &mask) in self.pending.iter().enumerate() {
            let mut m = mask;
            while m != 0 {
                let id = m.trailing_zeros() as usize;
                m &= m - 1;
                let d = self.deadline[c][id];
                best = Some(best.map_or(d, |b| b.min(d)));
            }
        }
        best
    }

    /// Fires every pending timeout with a deadline at or before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) -> Expired {
        let mut out = Expired::default();
        for c in 0..MAX_CLIENTS {
            let mut m = self.pending[c];
            let mut due = 0u64;
            while m != 0 {
                let id = m.trailing_zeros() as usize;
                m &= m - 1;
                if self.deadline[c][id] <= now_ns {
                    due |= 1 << id;
                }
            }
            if due != 0 {
                self.pending[c] &= !due;
                self.fired[c] |= due;
                out.clients |= 1 << c;
                out.count += due.count_ones();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_expire_collect() {
        let mut t = Timeouts::new();
        assert_eq!(t.next_deadline(), None);
        assert!(t.set(0, 5, 300));
        assert!(t.set(3, 0, 100));
        assert!(t.set(3, 63, 200));
        assert_eq!(t.pending_count(), 3);
        assert_eq!(t.next_deadline(), Some(100));
        assert_eq!(t.expire(99), Expired::default());
        assert_eq!(t.expire(200), Expired { clients: 1 << 3, count: 2 });
        assert_eq!(t.next_deadline(), Some(300));
        assert_eq!(t.take_fired(3), (1 << 0) | (1 << 63));
        assert_eq!(t.take_fired(3), 0);
        assert_eq!(t.expire(u64::MAX), Expired { clients: 1, count: 1 });
        assert_eq!(t.take_fired(0), 1 << 5);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn set_replaces_and_cancel_reports() {
        let mut t = Timeouts::new();
        t.set(1, 2, 500);
        t.set(1, 2, 50);
        assert_eq!(t.next_deadline(), Some(50));
        assert_eq!(t.cancel(1, 2), CancelOutcome::Pending);
        assert_eq!(t.cancel(1, 2), CancelOutcome::NotSet);
        t.set(1, 2, 10);
        t.expire(10);
        assert_eq!(t.cancel(1, 2), CancelOutcome::Fired);
        assert_eq!(t.take_fired(1), 0);
        // Re-arming clears an uncollected firing of the same id.
        t.set(1, 3, 10);
        t.expire(10);
        t.set(1, 3, 20);
        assert_eq!(t.take_fired(1), 0);
        assert!(t.is_pending(1, 3));
    }

    #[test]
    fn out_of_range_changes_nothing() {
        let mut t = Timeouts::new();
        assert!(!t.set(MAX_CLIENTS, 0, 1));
        assert!(!t.set(0, 64, 1));
        assert_eq!(t.cancel(MAX_CLIENTS, 0), CancelOutcome::NotSet);
        assert_eq!(t.take_fired(99), 0);
        t.clear(99);
        assert_eq!(t, Timeouts::new());
    }

    #[test]
    fn expiry_follows_deadline_order_over_many_clients() {
        // 100 timeouts over 4 clients, deadlines a permutation; expiring at each deadline in
        // turn fires exactly that one.
        let mut t = Timeouts::new();
        let mut deadlines = [0u64; 100];
        for (k, d) in deadlines.iter_mut().enumerate() {
            *d = 1000 + ((k as u64 * 37) % 100) * 10;
            t.set(k % 4, (k / 4) as u8, *d);
        }
        let mut sorted = deadlines;
        sorted.sort_unstable();
        for (n, &d) in sorted.iter().enumerate() {
            assert_eq!(t.next_deadline(), Some(d));
            let e = t.expire(d);
            assert_eq!(e.count, 1, "deadline {d}");
            assert_eq!(t.pending_count(), 99 - n as u32);
        }
        let total: u32 = (0..4).map(|c| t.take_fired(c).count_ones()).sum();
        assert_eq!(total, 100);
    }
}
