//! Keys fetched from an issuer over HTTPS: discovery, caching, rotation, and outages.
//!
//! ```no_run
//! # async fn run() -> Result<(), certbound_jwks::RemoteJwksBuildError> {
//! use std::time::Duration;
//! use certbound_jwks::{KeySource, RemoteJwks};
//! use certbound_core::{Algorithm, Rejection};
//!
//! let keys = RemoteJwks::builder()
//!     .issuer("https://auth.example.com")          // discovery → jwks_uri
//!     .unknown_kid_cooldown(Duration::from_secs(30))
//!     .build()
//!     .await?;
//! assert!(keys.metadata().is_some_and(|m| m.tls_client_certificate_bound_access_tokens()));
//!
//! // What the layer does per request: the fast path, then (unknown kid only) the slow path.
//! let key = match keys.lookup(Some("key-1"), Algorithm::ES256) {
//!     Err(Rejection::UnknownKey) => keys.refresh(Some("key-1"), Algorithm::ES256).await,
//!     other => other,
//! };
//! # let _ = key;
//! # Ok(())
//! # }
//! ```
//!
//! # How keys stay current
//!
//! * The key set is swapped atomically ([`arc_swap`]); [`lookup`](KeySource::lookup) reads it
//!   without locks and never waits for a fetch.
//! * A fetched set is fresh for `Cache-Control: max-age` (minus `Age`) clamped to
//!   [`cache_ttl_bounds`](RemoteJwksBuilder::cache_ttl_bounds), or
//!   [`default_ttl`](RemoteJwksBuilder::default_ttl) without one. A background task refreshes it
//!   after 90 % of that lifetime; it holds only a weak reference and ends when the last clone of
//!   the [`RemoteJwks`] is dropped.
//! * A token with an unknown `kid` makes [`refresh`](KeySource::refresh) fetch at once — but
//!   never within [`unknown_kid_cooldown`](RemoteJwksBuilder::unknown_kid_cooldown) of the start
//!   of the previous fetch (of any kind), and never while another fetch is in flight. So a flood
//!   of made-up `kid`s costs the issuer at most one request per cooldown, and **no unknown-kid
//!   request ever waits for anything but its own fetch**: the first one after the cooldown
//!   starts the fetch and waits for it (bounded by [`timeout`](RemoteJwksBuilder::timeout));
//!   every other one — inside the cooldown, or while a fetch is in flight — is answered at once
//!   from the current set, after a check of two atomics and without taking a lock, so a slow
//!   issuer holds at most one request per cooldown. (The price: a burst of requests with a
//!   freshly rotated `kid` gets `UnknownKey` except for the one that fetched, until the new set
//!   is installed. Issuers publish new keys ahead of using them, and the background refresh
//!   picks them up, so this is rare.)
//! * New keys are picked up this way; a removed key stops validating with the next fetch, since
//!   every fetch replaces the whole set. A key that is in both the old and the new set with the
//!   same `kid`, `alg`, type and material keeps its identity (the same `Arc`, see
//!   [`KeySet::adopt_unchanged`]), so tokens already verified with it stay in certbound's
//!   verified-token cache across refetches; a key whose material changed under the same `kid`
//!   is a new key, and tokens verified with the old material are verified again (and refused).
//! * Durations may be as large as `Duration::MAX` (`max_stale`, the TTL bounds, the cooldown):
//!   deadlines saturate 100 years ahead instead of overflowing.
//! * When a fetch fails (connection refused, 5xx, garbage, timeout, oversized), the last good set
//!   keeps serving until [`max_stale`](RemoteJwksBuilder::max_stale) after its expiry; retries back
//!   off from 1 s to 60 s. Past that, `lookup` answers
//!   [`Rejection::KeysUnavailable`] (503 with `Retry-After`), never acceptance.

mod builder;
mod discovery;
mod error;
mod freshness;
mod http;
mod introspect;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use certbound_core::{Algorithm, KeySet, Rejection, VerificationKey};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use reqwest::Url;
use tokio::sync::Mutex;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use builder::RemoteJwksBuilder;
pub use discovery::IssuerMetadata;
pub use error::{FetchError, RemoteJwksBuildError};
pub use introspect::{
    IntrospectionAuth, Introspector, IntrospectorBuilder, DEFAULT_INTROSPECTION_CONNECT_TIMEOUT,
    DEFAULT_INTROSPECTION_MAX_RESPONSE, DEFAULT_INTROSPECTION_TIMEOUT,
};

use self::freshness::{later, CachePolicy};
use self::http::HttpClient;
use crate::KeySource;

/// Default [`RemoteJwksBuilder::connect_timeout`]: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`RemoteJwksBuilder::timeout`] (whole request, body included): 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RemoteJwksBuilder::max_response_size`]: 512 KiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 512 * 1024;
/// Default lower bound of the cache lifetime: 5 min.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(5 * 60);
/// Default upper bound of the cache lifetime: 24 h.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default cache lifetime when the response has no `max-age`: 10 min.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// Default [`RemoteJwksBuilder::unknown_kid_cooldown`]: 30 s.
pub const DEFAULT_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);
/// Default [`RemoteJwksBuilder::max_stale`]: 24 h.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

/// A [`KeySource`] backed by an issuer's JWKS over HTTPS; see the [module docs](self).
///
/// Cheap to clone; clones share the cache and the background task, which ends when the last
/// clone is dropped. Needs a tokio runtime: [`build`](RemoteJwksBuilder::build) spawns the
/// background refresher on the current one, and [`refresh`](KeySource::refresh) runs its fetch
/// as a task (so a caller that goes away does not cancel a fetch others wait for).
/// [`lookup`](KeySource::lookup) works anywhere.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

/// Cache and fetch counters, from [`RemoteJwks::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksStats {
    /// Fetches that produced a new key set.
    pub fetches_ok: u64,
    /// Fetches that failed (the previous set, if any, kept serving).
    pub fetches_failed: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Time since the current set was fetched; `None` before the first success.
    pub last_success_age: Option<Duration>,
    /// Keys in the current set.
    pub keys: usize,
    /// Keys in the current set that have a `kid`.
    pub kids: usize,
    /// Whether the set is fresh, served stale, or unavailable.
    pub state: CacheState,
}

/// The state of the cached key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheState {
    /// Within its cache lifetime.
    Fresh,
    /// Expired, still served because fetches fail (within `max_stale`).
    Stale,
    /// No set, or older than `max_stale` past expiry: requests get `KeysUnavailable`.
    Unavailable,
}

impl CacheState {
    /// The state of the cached set `cached` (`None`: never fetched) at `now` — the one place
    /// that decides it, for [`lookup`](KeySource::lookup) (which answers from a fresh or stale
    /// set only), [`RemoteJwks::stats`] and the fetch-failure log's `serving` field.
    fn of(cached: Option<&Cached>, now: Instant) -> Self {
        match cached {
            Some(c) if now < c.expires_at => CacheState::Fresh,
            Some(c) if now < c.stale_until => CacheState::Stale,
            _ => CacheState::Unavailable,
        }
    }

    /// `fresh`, `stale` or `unavailable` (for logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Fresh => "fresh",
            CacheState::Stale => "stale",
            CacheState::Unavailable => "unavailable",
        }
    }
}

/// A key set as fetched, with its lifetimes.
struct Cached {
    keys: KeySet,
    fetched_at: Instant,
    expires_at: Instant,
    stale_until: Instant,
}

/// Held only by whoever fetches (the background task, `refresh`, `refresh_now`), never by
/// `lookup`.
struct FetchState {
    failures: u32,
    next_due: Instant,
}

struct Inner {
    http: HttpClient,
    jwks_uri: Url,
    metadata: Option<IssuerMetadata>,
    policy: CachePolicy,
    current: ArcSwapOption<Cached>,
    fetch: Arc<Mutex<FetchState>>,
    /// Completed fetch attempts; lets a waiting refresher see that someone fetched meanwhile.
    generation: AtomicU64,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
    consecutive_failures: AtomicU32,
    /// `next_due` as milliseconds since `epoch`, for `Retry-After` without taking the lock.
    epoch: Instant,
    next_attempt_ms: AtomicU64,
    /// When the last fetch (of any kind) started, as milliseconds since `epoch`
    /// (`NEVER` before the first): the unknown-kid cooldown is checked on it without a lock.
    last_attempt_ms: AtomicU64,
    /// A fetch is running: unknown-kid requests do not wait for it.
    in_flight: AtomicBool,
    task: OnceLock<AbortHandle>,
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Initial,
    Scheduled,
    UnknownKid,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Scheduled => "scheduled",
            Trigger::UnknownKid => "unknown_kid",
            Trigger::Manual => "manual",
        }
    }
}

impl RemoteJwks {
    /// A builder; give it [`issuer`](RemoteJwksBuilder::issuer) or
    /// [`jwks_uri`](RemoteJwksBuilder::jwks_uri).
    pub fn builder() -> RemoteJwksBuilder {
        RemoteJwksBuilder::default()
    }

    /// The issuer's metadata, when built with [`issuer`](RemoteJwksBuilder::issuer).
    pub fn metadata(&self) -> Option<&IssuerMetadata> {
        self.inner.metadata.as_ref()
    }

    /// The URL keys are fetched from.
    pub fn jwks_uri(&self) -> &str {
        self.inner.jwks_uri.as_str()
    }

    /// Counters and the state of the cache.
    pub fn stats(&self) -> JwksStats {
        let inner = &self.inner;
        let now = Instant::now();
        let current = inner.current.load();
        let state = CacheState::of(current.as_deref(), now);
        JwksStats {
            fetches_ok: inner.fetches_ok.load(Ordering::Relaxed),
            fetches_failed: inner.fetches_failed.load(Ordering::Relaxed),
            consecutive_failures: inner.consecutive_failures.load(Ordering::Relaxed),
            last_success_age: current
                .as_deref()
                .map(|c| now.saturating_duration_since(c.fetched_at)),
            keys: current.as_deref().map_or(0, |c| c.keys.len()),
            kids: current.as_deref().map_or(0, |c| c.keys.kids().count()),
            state,
        }
    }

    /// The `kid`s of the current set (for diagnostics).
    pub fn kids(&self) -> Vec<String> {
        self.inner
            .current
            .load()
            .as_deref()
            .map(|c| c.keys.kids().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Fetches now, ignoring the cooldown (after waiting for a fetch in progress), and returns
    /// the outcome. For operators and tests; requests never need it.
    pub async fn refresh_now(&self) -> Result<(), FetchError> {
        let mut state = self.inner.fetch.lock().await;
        self.inner.fetch_locked(&mut state, Trigger::Manual).await
    }
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("jwks_uri", &self.inner.jwks_uri.as_str())
            .field(
                "issuer",
                &self.inner.metadata.as_ref().map(IssuerMetadata::issuer),
            )
            .field(
                "keys",
                &self.inner.current.load().as_deref().map(|c| c.keys.len()),
            )
            .finish_non_exhaustive()
    }
}

impl KeySource for RemoteJwks {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
        self.inner.lookup(kid, alg)
    }

    fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
        let kid = kid.map(str::to_owned);
        async move { self.inner.refresh(kid.as_deref(), alg).await }.boxed()
    }

    fn issuer_metadata(&self) -> Option<&IssuerMetadata> {
        self.metadata()
    }
}

/// Sets a flag for as long as it lives.
struct InFlight<'a>(&'a AtomicBool);

impl<'a> InFlight<'a> {
    fn start(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// `Inner::last_attempt_ms` before any fetch.
const NEVER: u64 = u64::MAX;

impl Inner {
    /// Milliseconds from `epoch` to `t` (saturating).
    fn millis_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(NEVER - 1)
    }

    /// Whether the unknown-kid cooldown is over — two atomic loads, no lock.
    fn cooldown_over(&self) -> bool {
        let last = self.last_attempt_ms.load(Ordering::SeqCst);
        let since = (last != NEVER).then(|| {
            let now = self.millis_since_epoch(Instant::now());
            Duration::from_millis(now.saturating_sub(last))
        });
        self.policy.cooldown_over(since)
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
        let current = self.current.load();
        let cached = current.as_deref();
        match (CacheState::of(cached, Instant::now()), cached) {
            (CacheState::Fresh | CacheState::Stale, Some(cached)) => cached
                .keys
                .get(kid, alg)
                .map(Arc::clone)
                .map_err(Rejection::from),
            (CacheState::Unavailable, _) | (_, None) => Err(Rejection::KeysUnavailable {
                retry_after_secs: self.retry_after_secs(),
            }),
        }
    }

    fn retry_after_secs(&self) -> u32 {
        let due = later(
            self.epoch,
            Duration::from_millis(self.next_attempt_ms.load(Ordering::Relaxed)),
        );
        let wait = due.saturating_duration_since(Instant::now());
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        u32::try_from(secs).unwrap_or(u32::MAX).max(1)
    }

    async fn refresh(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerificationKey>, Rejection> {
        let seen = self.generation.load(Ordering::SeqCst);
        match self.lookup(kid, alg) {
            Err(Rejection::UnknownKey | Rejection::KeysUnavailable { .. }) => {}
            answered => return answered,
        }
        // Inside the cooldown, or with a fetch in flight: answer now, from the current set.
        if self.in_flight.load(Ordering::SeqCst) || !self.cooldown_over() {
            return self.lookup(kid, alg);
        }
        // Never wait for the lock: whoever holds it is fetching (or about to), and this
        // request is not going to queue behind it.
        let Ok(mut state) = Arc::clone(&self.fetch).try_lock_owned() else {
            return self.lookup(kid, alg);
        };
        // Someone may have fetched between the checks above and the lock.
        if self.generation.load(Ordering::SeqCst) != seen || !self.cooldown_over() {
            drop(state);
            return self.lookup(kid, alg);
        }
        tracing::debug!(kid, "unknown kid: fetching keys");
        // The fetch runs in its own task, holding the lock: if this caller goes away, the
        // fetch still completes and installs its result.
        let inner = Arc::clone(self);
        let fetch =
            tokio::spawn(async move { inner.fetch_locked(&mut state, Trigger::UnknownKid).await });
        let _ = fetch.await;
        self.lookup(kid, alg)
    }

    /// Fetches, parses and installs a key set. The caller holds the fetch lock.
    async fn fetch_locked(
        &self,
        state: &mut FetchState,
        trigger: Trigger,
    ) -> Result<(), FetchError> {
        let started = Instant::now();
        self.last_attempt_ms
            .store(self.millis_since_epoch(started), Ordering::SeqCst);
        // Cleared when this fetch ends, however it ends (its future may be dropped).
        let _in_flight = InFlight::start(&self.in_flight);
        let url = &self.jwks_uri;
        let outcome = match self.http.get(url, JWKS_ACCEPT).await {
            Ok(fetched) => match certbound_core::KeySet::from_jwks(&fetched.body) {
                Ok(parsed) => Ok((fetched, parsed)),
                Err(source) => Err(FetchError::Jwks {
                    url: url.to_string(),
                    source,
                }),
            },
            Err(e) => Err(e),
        };
        let now = Instant::now();
        let duration_ms =
            u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX);
        let result = match outcome {
            Ok((fetched, mut parsed)) => {
                for skipped in &parsed.skipped {
                    tracing::warn!(
                        url = %url,
                        kid = skipped.kid.as_deref().unwrap_or("(none)"),
                        reason = %skipped.reason,
                        "skipped a JWKS key that cannot verify signatures"
                    );
                }
                let ttl = self.policy.ttl(
                    fetched.cache_control.iter().map(String::as_str),
                    fetched.age.as_deref(),
                );
                let (expires_at, stale_until) = self.policy.lifetimes(now, ttl);
                let keys = parsed.keys.len();
                // Unchanged keys keep their `Arc`, so verified-token caches keyed on it survive.
                let unchanged = match self.current.load().as_deref() {
                    Some(previous) => parsed.keys.adopt_unchanged(&previous.keys),
                    None => 0,
                };
                self.current.store(Some(Arc::new(Cached {
                    keys: parsed.keys,
                    fetched_at: now,
                    expires_at,
                    stale_until,
                })));
                state.failures = 0;
                state.next_due = self.policy.refresh_at(now, ttl);
                self.fetches_ok.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::JWKS_FETCHES_METRIC, "outcome" => "ok").increment(1);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                tracing::info!(
                    url = %url,
                    status = fetched.status.as_u16(),
                    keys,
                    unchanged,
                    skipped = parsed.skipped.len(),
                    duration_ms,
                    ttl_secs = ttl.as_secs(),
                    trigger = trigger.as_str(),
                    outcome = "ok",
                    "fetched JWKS"
                );
                Ok(())
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let retry_in = self.policy.backoff(state.failures);
                state.next_due = later(now, retry_in);
                self.fetches_failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::JWKS_FETCHES_METRIC, "outcome" => error.kind())
                    .increment(1);
                self.consecutive_failures
                    .store(state.failures, Ordering::Relaxed);
                let serving = CacheState::of(self.current.load().as_deref(), now).as_str();
                tracing::warn!(
                    url = %url,
                    status = match &error { FetchError::Status { status, .. } => Some(*status), _ => None },
                    duration_ms,
                    trigger = trigger.as_str(),
                    outcome = error.kind(),
                    %error,
                    failures = state.failures,
                    retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                    serving,
                    "JWKS fetch failed"
                );
                Err(error)
            }
        };
        let due_ms = state
            .next_due
            .saturating_duration_since(self.epoch)
            .as_millis();
        self.next_attempt_ms
            .store(u64::try_from(due_ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::SeqCst);
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// The background refresher. Holds a strong reference only while it fetches.
async fn refresh_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let due = {
            let mut state = inner.fetch.lock().await;
            if Instant::now() >= state.next_due {
                let _ = inner.fetch_locked(&mut state, Trigger::Scheduled).await;
            }
            state.next_due
        };
        drop(inner);
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_state_is_decided_by_the_two_deadlines() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let cached = Cached {
            keys: KeySet::default(),
            fetched_at: t0,
            expires_at: t0 + secs(10),
            stale_until: t0 + secs(20),
        };
        let at = |t| CacheState::of(Some(&cached), t);
        assert_eq!(CacheState::of(None, t0), CacheState::Unavailable);
        assert_eq!(at(t0), CacheState::Fresh);
        assert_eq!(
            at(t0 + secs(10) - Duration::from_nanos(1)),
            CacheState::Fresh
        );
        assert_eq!(at(t0 + secs(10)), CacheState::Stale);
        assert_eq!(
            at(t0 + secs(20) - Duration::from_nanos(1)),
            CacheState::Stale
        );
        assert_eq!(at(t0 + secs(20)), CacheState::Unavailable);
        assert_eq!(
            [
                CacheState::Fresh,
                CacheState::Stale,
                CacheState::Unavailable
            ]
            .map(CacheState::as_str),
            ["fresh", "stale", "unavailable"]
        );
    }
}
