//! DPoP proof replay protection (RFC 9449 §11.1): a store that remembers each accepted proof
//! (by a hash of its key thumbprint and `jti`) for as long as the proof could be accepted.
//!
//! The default [`MemoryReplayStore`] serves one process. Replicas behind one load balancer must
//! share a store, or a proof replayed to another replica is accepted there: use the Redis store
//! (`RedisReplayStore`, feature `redis`) or your own [`ReplayStore`].
//!
//! ```
//! use std::time::Duration;
//! use certbound::replay::{MemoryReplayStore, ReplayStore};
//! use futures_util::FutureExt as _;
//!
//! let store = MemoryReplayStore::new(10_000);
//! let key = [7u8; 32];
//! let ttl = Duration::from_secs(121);
//! assert_eq!(store.first_use(key, ttl).now_or_never().unwrap(), Ok(true));
//! assert_eq!(store.first_use(key, ttl).now_or_never().unwrap(), Ok(false)); // a replay
//! ```

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
pub use redis_store::{
    RedisReplayStore, RedisReplayStoreBuilder, RedisStoreError, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX,
};

/// Why a replay store could not answer. The request is answered `503` with `Retry-After`,
/// never accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store is full of proofs that are still within their window.
    #[error("the replay store is full ({0} proofs within their acceptance window)")]
    Full(usize),
    /// The store cannot be reached, or did not answer in time.
    #[error("the replay store is unavailable: {0}")]
    Unavailable(String),
}

/// Remembers accepted DPoP proofs.
pub trait ReplayStore: Send + Sync + fmt::Debug + 'static {
    /// Records `key` for `ttl` and says whether this is its first use: `Ok(true)` the first
    /// time, `Ok(false)` for a replay. Atomic: of two concurrent calls with one key, one gets
    /// `true`. An in-memory store answers at once (the future is ready when returned).
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>>;
}

/// An in-process replay store, bounded in entries (and so in bytes: about 70 bytes an entry,
/// measured; at most `2 × max_entries` entries are held, one generation full and the next filling).
///
/// Entries live in two generations of at least the longest TTL seen; a key is forgotten only
/// after two generation switches, so never before its TTL. When the current generation is full
/// of live proofs, new proofs are refused (`503`) rather than an entry being forgotten early —
/// a flood of unique valid proofs can deny service but never re-open a replay.
pub struct MemoryReplayStore {
    max_entries: usize,
    state: Mutex<Generations>,
}

struct Generations {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
    started: Instant,
    span: Duration,
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryReplayStore {
    /// 1,000,000 entries per generation: at most 2,000,000 held, about 140 MB (measured ~70 B an
    /// entry, BENCHMARKS.md).
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryReplayStore {
    /// A store holding at most `max_entries` proofs per generation (at least 1).
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            state: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                started: Instant::now(),
                span: Duration::ZERO,
            }),
        }
    }

    /// Proofs remembered now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .map_or(0, |s| s.current.len().saturating_add(s.previous.len()))
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, key: [u8; 32], ttl: Duration, now: Instant) -> Result<bool, ReplayStoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ReplayStoreError::Unavailable("replay store lock poisoned".into()))?;
        state.span = state.span.max(ttl);
        let age = now.saturating_duration_since(state.started);
        if age >= state.span.saturating_mul(2) {
            // Both generations are older than every TTL: forget them all.
            state.previous.clear();
            state.current.clear();
            state.started = now;
        } else if age >= state.span {
            let current = std::mem::take(&mut state.current);
            state.previous = current;
            state.started = now;
        }
        if state.previous.contains(&key) || state.current.contains(&key) {
            return Ok(false);
        }
        if state.current.len() >= self.max_entries {
            return Err(ReplayStoreError::Full(state.current.len()));
        }
        state.current.insert(key);
        Ok(true)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>> {
        let answer = self.record(key, ttl, Instant::now());
        Box::pin(std::future::ready(answer))
    }
}

impl<T: ReplayStore + ?Sized> ReplayStore for std::sync::Arc<T> {
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>> {
        (**self).first_use(key, ttl)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn remembers_for_at_least_the_ttl_and_forgets_after_two() {
        let store = MemoryReplayStore::new(100);
        let t0 = Instant::now();
        assert_eq!(store.record([1; 32], TTL, t0), Ok(true));
        assert_eq!(
            store.record([1; 32], TTL, t0 + Duration::from_secs(9)),
            Ok(false)
        );
        // After one switch it is in the previous generation: still a replay.
        assert_eq!(
            store.record([2; 32], TTL, t0 + Duration::from_secs(11)),
            Ok(true)
        );
        assert_eq!(
            store.record([1; 32], TTL, t0 + Duration::from_secs(15)),
            Ok(false)
        );
        // Two spans with no switch in between: everything older is gone.
        assert_eq!(
            store.record([1; 32], TTL, t0 + Duration::from_secs(40)),
            Ok(true)
        );
    }

    #[test]
    fn a_flood_of_unique_proofs_is_refused_not_forgotten() {
        let store = MemoryReplayStore::new(3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            assert_eq!(store.record([i; 32], TTL, t0), Ok(true));
        }
        assert_eq!(
            store.record([9; 32], TTL, t0),
            Err(ReplayStoreError::Full(3))
        );
        // The early proofs are still remembered.
        assert_eq!(store.record([0; 32], TTL, t0), Ok(false));
        assert_eq!(store.len(), 3);
        // Once their window has passed, room again.
        assert_eq!(
            store.record([9; 32], TTL, t0 + Duration::from_secs(25)),
            Ok(true)
        );
    }
}
