//! The verified-token cache: a client reuses one token for minutes across many requests, so its
//! signature is verified once, not on every request.
//!
//! What a hit still does, every time: re-checks `exp`/`nbf`/`iat` against the current time,
//! checks that the key that verified the token is still in the issuer's current key set (a key
//! rotated out evicts its entries), and compares the binding with *this* request's certificate.
//! A refetch of the issuer's keys does not empty the cache: a key that is unchanged (same `kid`,
//! `alg`, type and material) keeps its identity across fetches; a key whose material changed
//! under the same `kid` is another key, and its tokens are verified again.
//! Only tokens that verified are cached; nothing the uncached path rejects is ever accepted
//! from the cache.
//!
//! The cache is keyed by the whole token: lookups hash it with a per-process random seed and a
//! hit is confirmed by comparing every byte, so two tokens can never share an entry. It is
//! bounded both in entries and in bytes.
//!
//! ```
//! use certbound::{CertBound, TokenCacheConfig};
//! # async fn doc(keys: certbound::StaticJwks) -> Result<(), certbound::LayerBuildError> {
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(keys)
//!     .token_cache(TokenCacheConfig { max_entries: 50_000, max_bytes: 64 * 1024 * 1024 })
//!     .build()
//!     .await?;
//! let stats = auth.token_cache_stats().expect("the cache is on");
//! assert_eq!((stats.entries, stats.hits, stats.misses), (0, 0, 0));
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use certbound_core::Verified;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

/// Bounds of the verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Most entries held (default 10,000).
    pub max_entries: usize,
    /// Most bytes held, counting each token and an estimate of its claims (default 32 MiB).
    pub max_bytes: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How full the verified-token cache is, and how often it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held, as weighed (each entry counts at least `max_bytes / max_entries`).
    pub bytes: u64,
    /// Requests answered from the cache, without verifying the token's signature again.
    pub hits: u64,
    /// Requests decided the long way (the signature verified, if the token got that far): the
    /// token was not in the cache, or its entry was dropped because the key that verified it is
    /// no longer the issuer's current key for it.
    pub misses: u64,
}

/// One verified token (its claims, the key that verified it, its issuer: the core Verifier
/// re-checks all three on a hit).
#[derive(Clone)]
pub(crate) struct CachedToken {
    verified: Verified,
    /// Estimated bytes this entry holds.
    weight: u64,
}

#[derive(Clone)]
struct ByBytes {
    min_weight: u64,
}

impl Weighter<Box<[u8]>, CachedToken> for ByBytes {
    fn weight(&self, key: &Box<[u8]>, value: &CachedToken) -> u64 {
        // Every entry weighs at least max_bytes / max_entries, which bounds the entry count.
        (key.len() as u64)
            .saturating_add(value.weight)
            .max(self.min_weight)
    }
}

/// A bounded, concurrent map from token bytes to verified claims.
pub(crate) struct TokenCache {
    cache: Cache<Box<[u8]>, CachedToken, ByBytes>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TokenCache {
    pub(crate) fn new(config: TokenCacheConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        let min_weight = (config.max_bytes / max_entries as u64).max(1);
        Self {
            cache: Cache::with_weighter(
                max_entries,
                config.max_bytes.max(1),
                ByBytes { min_weight },
            ),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, token: &str) -> Option<Verified> {
        self.cache.get(token.as_bytes()).map(|hit| hit.verified)
    }

    /// Counts one lookup: `hit` when the entry was used (its key is still the issuer's current
    /// one), a miss otherwise (no entry, or the key changed and the token was verified again).
    pub(crate) fn record(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn insert(&self, token: &str, verified: Verified) {
        // The token bytes (the key, weighed by the weigher) plus the claims held twice — typed
        // fields and the JSON map — and the map's allocations: measured at 3.0–3.8 KB for a
        // 500-byte token, so 1 KiB + 4 bytes per token byte keeps `max_bytes` an upper bound.
        let weight = (token.len() as u64).saturating_mul(4).saturating_add(1024);
        self.cache
            .insert(token.as_bytes().into(), CachedToken { verified, weight });
    }

    pub(crate) fn remove(&self, token: &str) {
        self.cache.remove(token.as_bytes());
    }

    pub(crate) fn stats(&self) -> TokenCacheStats {
        TokenCacheStats {
            entries: self.cache.len(),
            bytes: self.cache.weight(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_bounds_do_not_panic() {
        for (max_entries, max_bytes) in [
            (usize::MAX, u64::MAX),
            (0, 0),
            (1, u64::MAX),
            (usize::MAX, 1),
        ] {
            let cache = TokenCache::new(TokenCacheConfig {
                max_entries,
                max_bytes,
            });
            assert_eq!(cache.stats().entries, 0);
            assert!(cache.get("token").is_none());
        }
    }
}
