//! A replay store in Redis (feature `redis`), shared by every replica of an API.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ReplayStore, ReplayStoreError};

/// The key prefix when none is given.
pub const DEFAULT_KEY_PREFIX: &str = "certbound:dpop:";
/// How long one replay check may take before the request is answered `503` (default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting (at start-up, and each reconnection attempt) may take (default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why [`RedisReplayStore`] could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not a Redis URL (`redis://`, `rediss://`, `redis+unix://`).
    #[error("invalid Redis URL {url}: {reason}")]
    Url {
        /// The URL, without any password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis refused the connection, or its answer was an error.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, without any password.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// Redis did not answer within the connect timeout.
    #[error("cannot reach Redis at {url}: no answer within {} ms", .after.as_millis())]
    Timeout {
        /// The URL, without any password.
        url: String,
        /// The connect timeout.
        after: Duration,
    },
}

/// A [`ReplayStore`] in Redis: every replica that uses the same Redis (and key prefix) refuses
/// a proof any of them accepted before.
///
/// Each check is one command on one multiplexed connection (redis-rs's `ConnectionManager`,
/// which reconnects by itself): `SET <prefix><64 hex digits> 1 NX PX <ttl ms>`. Redis sets the
/// key only if it is absent, atomically, and forgets it after the TTL, so the store needs no
/// cleanup and two replicas racing on one proof cannot both accept it.
///
/// Fails closed: an error, a refused connection, a reply other than `OK`/nil, or no answer
/// within the call timeout (default 500 ms) is [`ReplayStoreError::Unavailable`] — the layer
/// answers `503` with `Retry-After`, counts `certbound_replay_store_errors_total` and logs an
/// error (at most one line a second). A proof is never accepted unchecked.
///
/// Redis must keep every key for its TTL: an evicted key lets its proof be replayed. Use
/// `maxmemory-policy noeviction` (a full Redis then answers `OOM`, which is a `503`) or a Redis
/// of its own; a Redis restarted without persistence forgets the proofs of the last window
/// (two minutes by default) in the same way.
///
/// `rediss://` uses rustls with the platform's root certificates; when the process has no
/// default rustls crypto provider yet, aws-lc-rs (the one certbound already uses) is installed.
///
/// ```no_run
/// use std::time::Duration;
/// use certbound::replay::RedisReplayStore;
/// use certbound::{CertBound, Dpop};
///
/// # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisReplayStore::builder("redis://redis.internal:6379")
///     .key_prefix("accounts-api:dpop:") // keep apart from other APIs on the same Redis
///     .timeout(Duration::from_millis(300)) // per check; longer → 503
///     .connect()
///     .await?; // fails here when Redis cannot be reached at start-up
/// let auth = CertBound::builder()
///     .issuer("https://auth.example.com/")
///     .audience("https://api.example.com")
///     .public_url("https://api.example.com")
///     .dpop(Dpop::default().replay_store(store))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    url: String,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Settings for [`RedisReplayStore`]; [`connect`](Self::connect) makes the store.
#[derive(Clone)]
pub struct RedisReplayStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisReplayStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStoreBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl RedisReplayStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`, `rediss://…` for TLS)
    /// with the default prefix and timeouts. Fails when Redis cannot be reached within the
    /// connect timeout (3 s).
    pub async fn connect(url: impl Into<String>) -> Result<Self, RedisStoreError> {
        Self::builder(url).connect().await
    }

    /// Settings for a store at `url`.
    pub fn builder(url: impl Into<String>) -> RedisReplayStoreBuilder {
        RedisReplayStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The Redis URL, without any password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix of every key this store writes.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key for a replay-store key: the prefix and 64 lowercase hex digits.
    pub fn redis_key(&self, key: &[u8; 32]) -> String {
        let mut out = String::with_capacity(self.prefix.len().saturating_add(64));
        out.push_str(&self.prefix);
        for byte in key {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    async fn set_nx(&self, key: [u8; 32], ttl: Duration) -> Result<bool, ReplayStoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command
            .arg(self.redis_key(&key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis);
        let mut connection = self.connection.clone();
        let reply = tokio::time::timeout(
            self.timeout,
            command.query_async::<redis::Value>(&mut connection),
        )
        .await;
        let too_slow = || {
            ReplayStoreError::Unavailable(format!(
                "Redis at {} did not answer within {} ms",
                self.url,
                self.timeout.as_millis()
            ))
        };
        match reply {
            // Ours, or the connection's own response timeout (the same duration).
            Err(_) => Err(too_slow()),
            Ok(Err(error)) if error.is_timeout() => Err(too_slow()),
            Ok(Err(error)) => Err(ReplayStoreError::Unavailable(format!(
                "Redis at {}: {error}",
                self.url
            ))),
            Ok(Ok(redis::Value::Okay)) => Ok(true),
            Ok(Ok(redis::Value::SimpleString(s))) if s == "OK" => Ok(true),
            Ok(Ok(redis::Value::Nil)) => Ok(false),
            Ok(Ok(_)) => Err(ReplayStoreError::Unavailable(format!(
                "Redis at {}: unexpected reply to SET NX",
                self.url
            ))),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RedisReplayStoreBuilder {
    /// The prefix of every key (default `certbound:dpop:`): give each API its own when several
    /// share one Redis, and the same one to every replica of an API.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one replay check may take (default 500 ms); longer answers `503`. This is
    /// added to the latency of every DPoP request while Redis is slow or away.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take, at start-up and for each reconnection attempt
    /// (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, and checks that Redis answers (`PING`), within the connect timeout.
    pub async fn connect(self) -> Result<RedisReplayStore, RedisStoreError> {
        let url = redact(&self.url);
        let client = redis::Client::open(self.url.as_str()).map_err(|e| RedisStoreError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if self.url.starts_with("rediss:") {
            use certbound_tls::rustls::crypto::{aws_lc_rs, CryptoProvider};
            if CryptoProvider::get_default().is_none() {
                // Another thread may have installed one meanwhile: either way there is one.
                let _ = aws_lc_rs::default_provider().install_default();
            }
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.timeout))
            // Reconnection: a few quick attempts; every later check that finds the connection
            // broken starts another, so recovery does not wait for a long back-off.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let unreachable = |e: redis::RedisError| RedisStoreError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let setup = async {
            let mut connection = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(unreachable)?;
            redis::cmd("PING")
                .query_async::<redis::Value>(&mut connection)
                .await
                .map_err(unreachable)?;
            Ok(connection)
        };
        let connection = tokio::time::timeout(self.connect_timeout, setup)
            .await
            .map_err(|_| RedisStoreError::Timeout {
                url: url.clone(),
                after: self.connect_timeout,
            })??;
        Ok(RedisReplayStore {
            connection,
            prefix: self.prefix,
            timeout: self.timeout,
            url,
        })
    }
}

impl ReplayStore for RedisReplayStore {
    fn first_use(
        &self,
        key: [u8; 32],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>> {
        Box::pin(self.set_nx(key, ttl))
    }
}

/// `url` without a password: `redis://user:secret@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let shown = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        // redis://password@host is also read as a password-only URL by some clients.
        "***".to_owned()
    };
    format!("{scheme}://{shown}@{host}{tail}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_the_url() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("rediss://app:s3cret@redis.internal:6380/2"),
            "rediss://app:***@redis.internal:6380/2"
        );
        assert_eq!(
            redact("redis://:s3cret@redis.internal"),
            "redis://:***@redis.internal"
        );
        assert_eq!(redact("redis://s3cret@h"), "redis://***@h");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_before_connecting() {
        let err = RedisReplayStore::connect("http://127.0.0.1:1")
            .await
            .unwrap_err();
        assert!(matches!(err, RedisStoreError::Url { .. }), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_at_once() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = RedisReplayStore::builder(format!("redis://u:pw@127.0.0.1:{port}"))
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RedisStoreError::Unreachable { .. }), "{text}");
        assert!(
            text.contains(&format!("redis://u:***@127.0.0.1:{port}")),
            "{text}"
        );
        assert!(!text.contains("pw"), "{text}");
    }
}
