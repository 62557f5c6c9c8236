//! Timers armed on one connection (`set-timer`): kept in deadline order on the connection, fired by its session loop
//! between its other events (so in order with them), and dropped with it. The hub counts them per project for the
//! project's quota.

use std::time::{Duration, Instant};

use wasmsock_wire::Bytes;
use wasmsock_wire::limits::DEFAULT_MAX_TIMERS_PER_CONNECTION;

/// The armed timers of one connection, soonest first. A handful at most, so a sorted `Vec` beats a tree.
#[derive(Debug, Default)]
pub struct Timers {
    next_id: u64,
    armed: Vec<Armed>,
}

#[derive(Debug)]
struct Armed {
    at: Instant,
    id: u64,
    payload: Bytes,
}

impl Timers {
    /// Arms a timer firing after `delay`; its id (from 1, never reused on this connection), or `None` at the cap.
    pub fn arm(&mut self, delay: Duration, payload: Bytes) -> Option<u64> {
        if self.armed.len() >= DEFAULT_MAX_TIMERS_PER_CONNECTION {
            return None;
        }
        self.next_id += 1;
        let at = Instant::now() + delay;
        // After every timer due at the same moment: two timers with one deadline fire in the order they were armed.
        let place = self.armed.partition_point(|armed| armed.at <= at);
        self.armed.insert(place, Armed { at, id: self.next_id, payload });
        Some(self.next_id)
    }

    /// Cancels timer `id`; whether it was armed.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.armed.len();
        self.armed.retain(|armed| armed.id != id);
        self.armed.len() < before
    }

    /// When the soonest timer is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.armed.first().map(|armed| armed.at)
    }

    /// The soonest timer, if it is due at `now`: its id, payload and when it was due.
    pub fn take_due(&mut self, now: Instant) -> Option<(u64, Bytes, Instant)> {
        if self.armed.first()?.at > now {
            return None;
        }
        let armed = self.armed.remove(0);
        Some((armed.id, armed.payload, armed.at))
    }

    /// How many are armed.
    pub fn len(&self) -> usize {
        self.armed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_soonest_first_ties_in_arming_order_and_cancelled_ones_never() {
        let mut timers = Timers::default();
        let late = timers.arm(Duration::from_secs(60), Bytes::from_static(b"late")).unwrap();
        let a = timers.arm(Duration::ZERO, Bytes::from_static(b"a")).unwrap();
        let b = timers.arm(Duration::ZERO, Bytes::from_static(b"b")).unwrap();
        let gone = timers.arm(Duration::ZERO, Bytes::from_static(b"gone")).unwrap();
        assert!(timers.cancel(gone));
        assert!(!timers.cancel(gone));
        let now = Instant::now();
        assert_eq!(timers.take_due(now).map(|(id, payload, _)| (id, payload)), Some((a, Bytes::from_static(b"a"))));
        assert_eq!(timers.take_due(now).map(|(id, payload, _)| (id, payload)), Some((b, Bytes::from_static(b"b"))));
        assert_eq!(timers.take_due(now), None, "the late one is not due");
        assert!(timers.next_due().is_some_and(|at| at > now));
        assert!(timers.cancel(late) && timers.len() == 0);
    }

    #[test]
    fn a_connection_has_at_most_its_cap_of_timers() {
        let mut timers = Timers::default();
        for _ in 0..DEFAULT_MAX_TIMERS_PER_CONNECTION {
            assert!(timers.arm(Duration::from_secs(1), Bytes::new()).is_some());
        }
        assert_eq!(timers.arm(Duration::from_secs(1), Bytes::new()), None);
        assert_eq!(timers.len(), DEFAULT_MAX_TIMERS_PER_CONNECTION);
    }
}
