//! Rate-limiting a warning per peer, so that a client cannot flood the log.
//!
//! A forwarded certificate header from a peer that is not a trusted proxy is worth a warning — it
//! is a misconfigured proxy list or a forgery — but any client can send one on every request. The
//! limiter lets at most one line per peer per interval through and counts the rest, reported on
//! that peer's next line. Memory is bounded: at most [`MAX_PEERS`] peers are tracked; when the table
//! is full, peers whose interval is over are forgotten, and a new peer that still finds no room is
//! counted (not logged) until some does. So a flood from many addresses writes at most
//! [`MAX_PEERS`] lines per interval and keeps at most [`MAX_PEERS`] entries.
//!
//! Sans-IO: the caller passes `now`; tests use a fixed clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default interval: one line per peer per minute.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// How many peers are tracked at most (and so how many lines per interval at most).
pub(crate) const MAX_PEERS: usize = 256;

/// A line to write, with what was left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permit {
    /// Lines left out for this peer since its last line.
    pub(crate) suppressed: u64,
    /// Lines left out for peers that had to be forgotten or found no room in the table, since the
    /// last line that reported them.
    pub(crate) untracked: u64,
}

struct Peer {
    last: Instant,
    suppressed: u64,
}

#[derive(Default)]
struct Table {
    peers: HashMap<Option<IpAddr>, Peer>,
    untracked: u64,
}

/// See the [module docs](self).
pub(crate) struct WarnLimiter {
    interval: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

impl std::fmt::Debug for WarnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarnLimiter")
            .field("interval", &self.interval)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl WarnLimiter {
    /// One line per peer per `interval` (zero: every line), tracking at most `capacity` peers.
    pub(crate) fn new(interval: Duration, capacity: usize) -> Self {
        Self {
            interval,
            capacity,
            table: Mutex::new(Table::default()),
        }
    }

    /// The interval.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether to write the warning about `peer` at `now`: `Some` with the counts to report, or
    /// `None` (counted).
    pub(crate) fn check(&self, peer: Option<IpAddr>, now: Instant) -> Option<Permit> {
        // Nothing below panics, so a poisoned lock still holds a consistent table.
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *table;
        let interval = self.interval;
        let over = |last: Instant| now.saturating_duration_since(last) >= interval;
        if let Some(entry) = table.peers.get_mut(&peer) {
            if !over(entry.last) {
                entry.suppressed = entry.suppressed.saturating_add(1);
                return None;
            }
            entry.last = now;
            return Some(Permit {
                suppressed: std::mem::take(&mut entry.suppressed),
                untracked: std::mem::take(&mut table.untracked),
            });
        }
        if table.peers.len() >= self.capacity {
            // Forget the peers whose interval is over; keep their counts.
            let mut forgotten = 0u64;
            table.peers.retain(|_, entry| {
                let keep = !over(entry.last);
                if !keep {
                    forgotten = forgotten.saturating_add(entry.suppressed);
                }
                keep
            });
            table.untracked = table.untracked.saturating_add(forgotten);
            if table.peers.len() >= self.capacity {
                table.untracked = table.untracked.saturating_add(1);
                return None;
            }
        }
        table.peers.insert(
            peer,
            Peer {
                last: now,
                suppressed: 0,
            },
        );
        Some(Permit {
            suppressed: 0,
            untracked: std::mem::take(&mut table.untracked),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .peers
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(last: u16) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, (last >> 8) as u8, last as u8]))
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn one_line_per_peer_per_interval_with_the_count_left_out() {
        let limiter = WarnLimiter::new(MIN, 16);
        let t0 = Instant::now();
        let first = limiter.check(ip(1), t0);
        assert_eq!(
            first,
            Some(Permit {
                suppressed: 0,
                untracked: 0
            })
        );
        for s in 1..60 {
            assert_eq!(limiter.check(ip(1), t0 + Duration::from_secs(s)), None);
        }
        // Another peer is not held back by the first.
        assert!(limiter.check(ip(2), t0 + Duration::from_secs(1)).is_some());
        // The interval is over: one line, reporting the 59 left out.
        assert_eq!(
            limiter.check(ip(1), t0 + MIN),
            Some(Permit {
                suppressed: 59,
                untracked: 0
            })
        );
        assert_eq!(
            limiter.check(ip(1), t0 + MIN + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            limiter.check(ip(1), t0 + 2 * MIN),
            Some(Permit {
                suppressed: 1,
                untracked: 0
            })
        );
        // An unknown peer is one peer.
        assert!(limiter.check(None, t0).is_some());
        assert_eq!(limiter.check(None, t0), None);
    }

    #[test]
    fn a_clock_that_goes_back_never_panics_and_holds_lines_back() {
        let limiter = WarnLimiter::new(MIN, 16);
        let t0 = Instant::now() + MIN;
        assert!(limiter.check(ip(1), t0).is_some());
        assert_eq!(limiter.check(ip(1), t0 - MIN), None);
        assert!(limiter.check(ip(1), t0 + MIN).is_some());
    }

    #[test]
    fn zero_interval_lets_every_line_through() {
        let limiter = WarnLimiter::new(Duration::ZERO, 16);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check(ip(1), t0).is_some());
        }
    }

    #[test]
    fn a_flood_from_many_addresses_is_bounded_in_memory_and_lines() {
        let limiter = WarnLimiter::new(MIN, 8);
        let t0 = Instant::now();
        let lines = (0..1000)
            .filter(|i| limiter.check(ip(*i), t0).is_some())
            .count();
        assert_eq!(lines, 8, "at most `capacity` lines per interval");
        assert_eq!(limiter.tracked(), 8, "at most `capacity` entries");
        // Still inside the interval: the tracked peers are held back and counted.
        assert_eq!(limiter.check(ip(0), t0 + Duration::from_secs(1)), None);
        // After the interval a new peer gets a line that reports the 992 untracked ones, and
        // the forgotten peer's own count is kept, not lost.
        assert_eq!(
            limiter.check(ip(5000), t0 + MIN),
            Some(Permit {
                suppressed: 0,
                untracked: 992 + 1
            })
        );
        assert!(limiter.tracked() <= 8);
        assert_eq!(
            limiter.check(ip(5001), t0 + MIN),
            Some(Permit {
                suppressed: 0,
                untracked: 0
            })
        );
    }
}
