//! [`RemoteJwksBuilder`]: the configuration of a [`RemoteJwks`], checked and turned into one by
//! [`build`](RemoteJwksBuilder::build) (discovery, the first fetch, the background refresher).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::freshness::CachePolicy;
use super::http::{HttpClient, HttpConfig};
use super::{
    discovery, refresh_task, FetchState, Inner, RemoteJwks, RemoteJwksBuildError, Trigger,
    BACKOFF_INITIAL, BACKOFF_MAX, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_STALE, DEFAULT_MAX_TTL, DEFAULT_MIN_TTL, DEFAULT_TIMEOUT, DEFAULT_TTL,
    DEFAULT_UNKNOWN_KID_COOLDOWN, NEVER,
};

/// Configures and builds a [`RemoteJwks`].
#[derive(Clone)]
#[must_use]
pub struct RemoteJwksBuilder {
    source: Option<Source>,
    extra_roots_pem: Vec<Vec<u8>>,
    system_roots: bool,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_size: usize,
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
    cooldown: Duration,
    max_stale: Duration,
    require_initial_keys: bool,
}

#[derive(Debug, Clone)]
enum Source {
    Issuer(String),
    JwksUri(String),
}

impl Default for RemoteJwksBuilder {
    fn default() -> Self {
        Self {
            source: None,
            extra_roots_pem: Vec::new(),
            system_roots: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            min_ttl: DEFAULT_MIN_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            default_ttl: DEFAULT_TTL,
            cooldown: DEFAULT_UNKNOWN_KID_COOLDOWN,
            max_stale: DEFAULT_MAX_STALE,
            require_initial_keys: false,
        }
    }
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksBuilder")
            .field("source", &self.source)
            .field("extra_roots", &self.extra_roots_pem.len())
            .field("system_roots", &self.system_roots)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_response_size", &self.max_response_size)
            .field("ttl_bounds", &(self.min_ttl, self.max_ttl))
            .field("default_ttl", &self.default_ttl)
            .field("unknown_kid_cooldown", &self.cooldown)
            .field("max_stale", &self.max_stale)
            .field("require_initial_keys", &self.require_initial_keys)
            .finish()
    }
}

impl RemoteJwksBuilder {
    /// Finds the keys by discovery: metadata from `{issuer}/.well-known/openid-configuration`,
    /// else from RFC 8414's `/.well-known/oauth-authorization-server{path}`. The metadata's
    /// `issuer` must equal `issuer` exactly. Replaces an earlier [`jwks_uri`](Self::jwks_uri).
    ///
    /// `issuer` must be `https`; `http` is accepted only for a loopback host (local tests), and
    /// only then may the discovered `jwks_uri` be `http` too.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.source = Some(Source::Issuer(issuer.into()));
        self
    }

    /// Fetches keys from this URL, without discovery. Replaces an earlier [`issuer`](Self::issuer).
    /// `https`, or `http` for a loopback host.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::JwksUri(url.into()));
        self
    }

    /// Also trusts the CA certificate(s) in this PEM data (e.g. a private issuer CA). May be
    /// called more than once.
    pub fn extra_root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Whether the operating system's trust store is used (default `true`). With `false`, only
    /// [`extra_root_certificates_pem`](Self::extra_root_certificates_pem) are trusted.
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.system_roots = enabled;
        self
    }

    /// Time allowed to establish a connection (TCP + TLS). Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole request, body included. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest metadata or JWKS response accepted, in bytes (default 512 KiB). Larger responses
    /// fail the fetch; at most this much is ever buffered.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Bounds for the cache lifetime taken from `Cache-Control: max-age`. Default 5 min … 24 h.
    /// `min` must be at least 1 s and not above `max`.
    pub fn cache_ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// Cache lifetime when a response has no `max-age` (still clamped to the bounds). Default 10 min.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Minimum time between fetches caused by unknown `kid`s, measured from the start of the
    /// previous fetch of any kind. Default 30 s. Inside it — and whenever a fetch is in flight —
    /// an unknown `kid` is answered at once from the current set; see the
    /// [module docs](super#how-keys-stay-current). `Duration::MAX`: unknown `kid`s never fetch.
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long after its expiry a key set keeps serving while fetches fail. Default 24 h;
    /// `Duration::MAX` (or anything over 100 years) means for as long as the process runs.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// Whether [`build`](Self::build) fails when the first key fetch fails (default `false`:
    /// build succeeds, requests get `KeysUnavailable` until a background retry succeeds).
    /// Discovery failures always fail the build.
    pub fn require_initial_keys(mut self, required: bool) -> Self {
        self.require_initial_keys = required;
        self
    }

    /// Runs discovery (if configured), fetches the keys once, and starts the background
    /// refresher on the current tokio runtime.
    pub async fn build(self) -> Result<RemoteJwks, RemoteJwksBuildError> {
        if self.min_ttl < Duration::from_secs(1) {
            return Err(RemoteJwksBuildError::InvalidConfig(
                "the minimum cache lifetime must be at least 1 second",
            ));
        }
        if self.min_ttl > self.max_ttl {
            return Err(RemoteJwksBuildError::InvalidConfig(
                "the minimum cache lifetime is above the maximum",
            ));
        }
        if self.max_response_size == 0 {
            return Err(RemoteJwksBuildError::InvalidConfig(
                "the response size limit is zero",
            ));
        }
        let source = self.source.clone().ok_or(RemoteJwksBuildError::NoSource)?;
        let configured = match &source {
            Source::Issuer(issuer) => discovery::check_url(issuer, true)?,
            Source::JwksUri(uri) => discovery::check_url(uri, false)?,
        };
        let http = HttpClient::new(&HttpConfig {
            system_roots: self.system_roots,
            extra_roots_pem: &self.extra_roots_pem,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_body: self.max_response_size,
            https_only: configured.scheme() == "https",
            identity: None,
            keep_alive: false,
            follow_redirects: true,
        })?;
        let (jwks_uri, metadata) = match &source {
            Source::Issuer(issuer) => {
                let metadata = discovery::discover(&http, issuer, &configured).await?;
                let uri = discovery::check_url(metadata.jwks_uri(), false)?;
                (uri, Some(metadata))
            }
            Source::JwksUri(_) => (configured, None),
        };
        let now = Instant::now();
        let inner = Arc::new(Inner {
            http,
            jwks_uri,
            metadata,
            policy: CachePolicy {
                min_ttl: self.min_ttl,
                max_ttl: self.max_ttl,
                default_ttl: self.default_ttl,
                max_stale: self.max_stale,
                cooldown: self.cooldown,
                backoff_initial: BACKOFF_INITIAL,
                backoff_max: BACKOFF_MAX,
            },
            current: ArcSwapOption::empty(),
            fetch: Arc::new(Mutex::new(FetchState {
                failures: 0,
                next_due: now,
            })),
            generation: AtomicU64::new(0),
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            epoch: now,
            next_attempt_ms: AtomicU64::new(0),
            last_attempt_ms: AtomicU64::new(NEVER),
            in_flight: AtomicBool::new(false),
            task: OnceLock::new(),
        });
        let initial = {
            let mut state = inner.fetch.lock().await;
            inner.fetch_locked(&mut state, Trigger::Initial).await
        };
        if let Err(error) = initial {
            if self.require_initial_keys {
                return Err(RemoteJwksBuildError::InitialFetch(error));
            }
            tracing::warn!(
                url = %inner.jwks_uri,
                "no signing keys yet; requests get 503 until a retry succeeds"
            );
        }
        let task = tokio::spawn(refresh_task(Arc::downgrade(&inner)));
        let _ = inner.task.set(task.abort_handle());
        Ok(RemoteJwks { inner })
    }
}
