//! Opaque access tokens: the layer asks the issuer's introspection endpoint (RFC 7662) and keeps
//! the answer in a cache, so a token costs one round trip per cache lifetime, not one per request.
//!
//! Every rule about the response is certbound-core's ([`certbound_core::introspection`]); this
//! module is the driver's part: the cache, single flight, and the logs.
//!
//! - **Cache**, keyed by SHA-256 of the token (the token itself is not kept). A positive entry
//!   holds the token's introspected *claims* — never a verdict: the lifetime and the binding
//!   (`cnf."x5t#S256"` against this request's certificate, `cnf.jkt` against this request's DPoP
//!   proof) are checked on every request. It lives until `min(exp, now + max_ttl)` (default
//!   5 min), `now` being when the answer arrived; an active answer whose `exp` has already
//!   passed is kept like a negative one. A negative entry (inactive, unknown, wrong audience, …) lives `negative_ttl`
//!   (default 10 s), so a flood of garbage tokens costs the issuer one call per distinct token
//!   per 10 s — and at most `max_concurrent_calls` (default 64) calls are in flight at once;
//!   beyond that a request is answered 503 with `Retry-After: 1` without calling. The endpoint's own failures are remembered for one second only. Bounded in
//!   entries and bytes.
//! - **Single flight**: concurrent requests with the same unknown token wait for one call and
//!   take its answer, whatever its lifetime; an entry that has ended is removed only by a
//!   conditional removal that never touches a call in flight.
//! - **Revocation delay**: a token revoked at the issuer keeps working here until its positive
//!   entry ends — up to `max_ttl` (5 min by default). Lower
//!   [`max_ttl`](IntrospectionCacheConfig::max_ttl) to shorten it (zero: every request
//!   introspects); the endpoint then sees proportionally more calls.
//! - **Failures**: unreachable, 5xx, timeout → 503 `introspection_unavailable` with
//!   `Retry-After`; the endpoint refusing this server's own credentials → 503
//!   `introspection_credentials_refused` and one ERROR line naming the client id (at most one a
//!   minute); an invalid or forged response → 503 `invalid_introspection_response`. Never an
//!   acceptance.
//!
//! ```
//! use std::time::Duration;
//! use certbound::IntrospectionCacheConfig;
//!
//! let config = IntrospectionCacheConfig { max_ttl: Duration::from_secs(60), ..Default::default() };
//! assert_eq!(config.negative_ttl, Duration::from_secs(10));
//! assert_eq!(IntrospectionCacheConfig::default().max_ttl, Duration::from_secs(300));
//! assert_eq!(IntrospectionCacheConfig::default().max_concurrent_calls, 64);
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certbound_core::introspection::{is_token_verdict, token_fingerprint};
use certbound_core::{Introspected, IntrospectionFailure, IntrospectionResponse, Rejection};
use certbound_jwks::IntrospectionSource;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::authenticate::Authenticator;

/// Bounds and lifetimes of the introspection cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntrospectionCacheConfig {
    /// Most entries held (default 10,000).
    pub max_entries: usize,
    /// Most bytes held, by an estimate of each entry's claims (default 16 MiB).
    pub max_bytes: u64,
    /// Longest a positive entry lives, whatever the token's `exp` (default 5 min): the longest
    /// a token revoked at the issuer is still accepted here.
    pub max_ttl: Duration,
    /// How long a negative answer (inactive, wrong audience, …) is remembered (default 10 s).
    pub negative_ttl: Duration,
    /// Most introspection calls in flight at once (default 64; at least 1). A request that
    /// would need one more is answered 503 `introspection_unavailable` with `Retry-After: 1`
    /// at once: a flood of distinct unknown tokens cannot pile up calls to the issuer.
    pub max_concurrent_calls: usize,
    /// Longest one call may take (default 10 s), whatever the source: the `Introspector` has
    /// its own, shorter timeouts; this bounds a custom `IntrospectionSource` too (when the
    /// layer runs on a tokio runtime). A call that takes longer is `introspection_unavailable`.
    pub call_timeout: Duration,
}

impl Default for IntrospectionCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 * 1024 * 1024,
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(10),
            max_concurrent_calls: 64,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of the introspection cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntrospectionStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held, as weighed.
    pub bytes: u64,
    /// Requests answered from the cache (including those that waited for another request's call).
    pub hits: u64,
    /// Calls to the introspection endpoint.
    pub calls: u64,
}

/// One cached answer, until a Unix second.
#[derive(Clone)]
struct Entry {
    answer: Result<Introspected, Rejection>,
    until: u64,
    weight: u64,
}

#[derive(Clone)]
struct ByWeight {
    min_weight: u64,
}

impl Weighter<[u8; 32], Entry> for ByWeight {
    fn weight(&self, _key: &[u8; 32], entry: &Entry) -> u64 {
        entry.weight.max(self.min_weight)
    }
}

/// The layer's introspection state.
pub(crate) struct Introspection {
    source: Arc<dyn IntrospectionSource>,
    cache: Cache<[u8; 32], Entry, ByWeight>,
    config: IntrospectionCacheConfig,
    refused_log: crate::warn_limit::WarnLimiter,
    invalid_log: AtomicU64,
    saturated_log: AtomicU64,
    hits: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicUsize,
}

/// One of the `max_concurrent_calls` slots, given back on drop.
struct CallSlot<'a>(&'a AtomicUsize);

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("source", &self.source)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Introspection {
    pub(crate) fn new(
        source: Arc<dyn IntrospectionSource>,
        config: IntrospectionCacheConfig,
    ) -> Self {
        let max_entries = config.max_entries.max(1);
        let min_weight = (config.max_bytes / max_entries as u64).max(1);
        Self {
            source,
            cache: Cache::with_weighter(
                max_entries,
                config.max_bytes.max(1),
                ByWeight { min_weight },
            ),
            config,
            refused_log: crate::warn_limit::WarnLimiter::new(Duration::from_secs(60), 1),
            invalid_log: AtomicU64::new(0),
            saturated_log: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub(crate) fn stats(&self) -> IntrospectionStats {
        IntrospectionStats {
            entries: self.cache.len(),
            bytes: self.cache.weight(),
            hits: self.hits.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    /// The cached answer for `token` at `now`, without waiting.
    pub(crate) fn cached(&self, token: &str, now: u64) -> Option<Result<Introspected, Rejection>> {
        let entry = self.cache.get(&token_fingerprint(token))?;
        if now >= entry.until {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.answer)
    }

    /// The answer for `token`: from the cache, from another request's call in flight, or from
    /// one call of our own (which then fills the cache).
    pub(crate) async fn answer(
        &self,
        auth: &Authenticator,
        token: &str,
    ) -> Result<Introspected, Rejection> {
        let key = token_fingerprint(token);
        let now = (auth.clock)();
        if let Some(entry) = self.cache.get(&key) {
            if now < entry.until {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return entry.answer;
            }
            // Ended: remove that entry only. `remove_if` looks at resident entries, so another
            // request's call in flight (a placeholder) is never removed, and an entry stored
            // meanwhile fails the test.
            self.cache.remove_if(&key, |entry| entry.until <= now);
        }
        let guard = match self.cache.get_value_or_guard_async(&key).await {
            // The answer of the call this request waited for (or one stored just now): used
            // whatever its `until` — no call of this request's own would be fresher.
            Ok(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return entry.answer;
            }
            Err(guard) => guard,
        };
        let (answer, weight) = self.call(auth, token).await;
        // Lifetimes count from the answer, not from the request: a call that took the whole
        // timeout must not store an entry that has already ended.
        let now = (auth.clock)();
        let until = match &answer {
            // Active, but its exp (or the signed response's) has passed: nothing to keep it for
            // beyond a negative entry.
            Ok(introspected) if introspected.ends_at() <= now => {
                now.saturating_add(self.config.negative_ttl.as_secs())
            }
            Ok(introspected) => introspected.cache_until(now, self.config.max_ttl.as_secs()),
            Err(rejection) if is_token_verdict(rejection) => {
                now.saturating_add(self.config.negative_ttl.as_secs())
            }
            // The endpoint's own failure: shared by the requests waiting now, retried by the
            // next second's.
            Err(_) => now.saturating_add(1),
        };
        let _ = guard.insert(Entry {
            answer: answer.clone(),
            until,
            weight,
        });
        answer
    }

    /// One call to the endpoint, checked by the verifier; with the weight of what it returned.
    async fn call(
        &self,
        auth: &Authenticator,
        token: &str,
    ) -> (Result<Introspected, Rejection>, u64) {
        let Some(_slot) = self.call_slot() else {
            self.saturated(auth);
            return (
                Err(Rejection::IntrospectionUnavailable {
                    retry_after_secs: 1,
                }),
                64,
            );
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::layer::metric_names::INTROSPECTIONS).increment(1);
        let call = self.source.introspect(token);
        // The timer needs a tokio runtime; elsewhere the source's own timeouts apply.
        let reply = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::time::timeout(self.config.call_timeout, call)
                .await
                .unwrap_or(Err(IntrospectionFailure::Unavailable)),
            Err(_) => call.await,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(failure) => {
                if failure == IntrospectionFailure::CredentialsRefused {
                    self.credentials_refused();
                }
                return (Err(failure.into()), 64);
            }
        };
        // The claims are held twice (typed and as a map): 1 KiB + 4 bytes per response byte
        // keeps max_bytes an upper bound, as for the verified-token cache.
        let weight = (reply.body.len() as u64)
            .saturating_mul(4)
            .saturating_add(1024);
        let checked = auth.verifier.check_introspection_response(
            reply.content_type.as_deref(),
            &reply.body,
            (auth.clock)(),
        );
        let answer = match checked {
            Ok(IntrospectionResponse::Checked(introspected)) => Ok(introspected),
            Ok(IntrospectionResponse::Signed(signed)) => {
                let key = match auth.keys.get(signed.issuer_index()) {
                    None => Err(Rejection::WrongIssuer),
                    Some(keys) => match keys.lookup(signed.kid(), signed.alg()) {
                        Err(Rejection::UnknownKey) => {
                            keys.refresh(signed.kid(), signed.alg()).await
                        }
                        other => other,
                    },
                };
                signed.verify(&auth.verifier, key)
            }
            Err(rejection) => Err(rejection),
        };
        if let Err(rejection @ Rejection::IntrospectionResponseInvalid { .. }) = &answer {
            let second = (auth.clock)();
            if self.invalid_log.swap(second, Ordering::Relaxed) != second {
                tracing::warn!(
                    reason = rejection.code(),
                    "the introspection endpoint's response is invalid (not strict JSON, no boolean \
                     `active`, or a signed response that does not verify with the issuer's keys); answering 503"
                );
            }
        }
        (answer, weight)
    }

    /// A slot for one more call in flight, if fewer than `max_concurrent_calls` are.
    fn call_slot(&self) -> Option<CallSlot<'_>> {
        let max = self.config.max_concurrent_calls.max(1);
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = CallSlot(&self.in_flight);
        (before < max).then_some(slot)
    }

    /// One WARN line a second at most while calls are refused for lack of a slot.
    fn saturated(&self, auth: &Authenticator) {
        let second = (auth.clock)();
        if self.saturated_log.swap(second, Ordering::Relaxed) != second {
            tracing::warn!(
                max_concurrent_calls = self.config.max_concurrent_calls,
                "every introspection call slot is taken (the endpoint is slow, or many distinct \
                 unknown tokens arrive); answering 503 without calling — raise \
                 IntrospectionCacheConfig::max_concurrent_calls if the endpoint can take more"
            );
        }
    }

    /// One ERROR line a minute at most: the fix is in this server's configuration.
    fn credentials_refused(&self) {
        if let Some(permit) = self.refused_log.check(None, std::time::Instant::now()) {
            tracing::error!(
                client_id = %self.source.client_id(),
                suppressed = permit.suppressed,
                "the token introspection endpoint refused this server's client credentials \
                 (401/403/invalid_client); every opaque token is answered 503 until they are fixed: \
                 check the client id, its secret, key or certificate, and its registered \
                 authentication method at the issuer"
            );
        }
    }
}
