//! Configuring the layer.
//!
//! ```no_run
//! use std::time::Duration;
//! use certbound::{BindingPolicy, CertBound, TrustedIssuer};
//!
//! # async fn doc() -> Result<(), certbound::BuildError> {
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")             // discovery → jwks_uri → keys, cached
//!     .audience("https://api.example.com")
//!     .binding(BindingPolicy::Required)                // the default
//!     .leeway(Duration::from_secs(30))
//!     .require_at_jwt()                                 // RFC 9068 typ: at+jwt
//!     .trusted_issuer(                                   // a second issuer, with its own keys
//!         TrustedIssuer::new("https://partner.example/").jwks_uri("https://partner.example/keys"),
//!     )
//!     .build()
//!     .await?;
//! # let _ = auth; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use certbound_core::forwarded::ForwardedCertificates;
use certbound_core::{
    Algorithm, BindingPolicy, TokenPolicy, Verifier, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_LEN,
};
use certbound_jwks::{KeySource, RemoteJwks};

use crate::authenticate::{system_clock, Authenticator, Clock};
use crate::cache::{TokenCache, TokenCacheConfig};
use crate::CertBoundLayer;

/// Why the layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No issuer was configured.
    #[error("no issuer configured: call .issuer(url)")]
    NoIssuer,
    /// No audience was configured for an issuer.
    #[error("no audience configured for issuer {0}: call .audience(..)")]
    NoAudience(String),
    /// The algorithm allow-list is empty.
    #[error("the algorithm allow-list is empty")]
    NoAlgorithms,
    /// Two trusted issuers have the same `iss`.
    #[error("issuer {0} is configured twice")]
    DuplicateIssuer(String),
    /// Discovery or the first key fetch failed.
    #[error("keys for issuer {issuer}: {source}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        #[source]
        source: certbound_jwks::BuildError,
    },
}

fn realm_default(audiences: &[String]) -> String {
    audiences.first().cloned().unwrap_or_default()
}

/// Where an issuer's keys come from.
#[derive(Clone)]
enum KeySpec {
    /// OIDC / RFC 8414 discovery from the issuer URL.
    Discovery,
    /// A JWKS URL, fetched and cached.
    JwksUri(String),
    /// A key source given by the user (e.g. [`StaticJwks`](crate::StaticJwks)).
    Source(Arc<dyn KeySource>),
}

/// A trusted issuer besides the main one: its own keys and, optionally, its own audience.
#[derive(Clone)]
pub struct TrustedIssuer {
    issuer: String,
    audiences: Vec<String>,
    keys: KeySpec,
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl TrustedIssuer {
    /// An issuer whose keys are found by discovery, accepted for the main audience.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            keys: KeySpec::Discovery,
        }
    }
    /// Accept this issuer's tokens for `audience` (instead of the main audience).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }
    /// Fetch keys from this JWKS URL instead of discovery.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.keys = KeySpec::JwksUri(uri.into());
        self
    }
    /// Use this key source.
    pub fn key_source(mut self, keys: impl KeySource) -> Self {
        self.keys = KeySpec::Source(Arc::new(keys));
        self
    }
}

/// Builder for [`CertBoundLayer`]; start with [`CertBound::builder`](crate::CertBound::builder).
#[derive(Clone)]
pub struct CertBoundBuilder {
    main: TrustedIssuer,
    main_issuer_set: bool,
    others: Vec<TrustedIssuer>,
    binding: BindingPolicy,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
    require_at_jwt: bool,
    realm: Option<String>,
    max_token_len: usize,
    jwks_roots_pem: Option<Vec<u8>>,
    clock: Clock,
    forwarded: Option<ForwardedCertificates>,
    untrusted_warning_interval: Duration,
    cache: Option<TokenCacheConfig>,
    resource: Option<String>,
    scopes_supported: Vec<String>,
    advertise_metadata: bool,
    dpop: Option<crate::Dpop>,
    public_url: Option<String>,
}

impl std::fmt::Debug for CertBoundBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBoundBuilder")
            .field("main", &self.main)
            .field("others", &self.others)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Default for CertBoundBuilder {
    fn default() -> Self {
        Self {
            main: TrustedIssuer::new(""),
            main_issuer_set: false,
            others: Vec::new(),
            binding: BindingPolicy::Required,
            leeway: DEFAULT_LEEWAY,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            require_at_jwt: false,
            realm: None,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            jwks_roots_pem: None,
            clock: system_clock(),
            forwarded: None,
            untrusted_warning_interval: crate::warn_limit::DEFAULT_INTERVAL,
            cache: Some(TokenCacheConfig::default()),
            resource: None,
            scopes_supported: Vec::new(),
            advertise_metadata: false,
            dpop: None,
            public_url: None,
        }
    }
}

impl CertBoundBuilder {
    /// The issuer whose tokens are accepted (`iss`, matched exactly). Unless
    /// [`jwks_uri`](Self::jwks_uri) or [`key_source`](Self::key_source) is given, its keys are
    /// found by discovery (`/.well-known/openid-configuration`, then RFC 8414).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.main.issuer = issuer.into();
        self.main_issuer_set = true;
        self
    }

    /// The audience this resource server is (`aud` must contain it). Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.main.audiences.push(audience.into());
        self
    }

    /// Fetch the main issuer's keys from this JWKS URL (no discovery).
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.main.keys = KeySpec::JwksUri(uri.into());
        self
    }

    /// Take the main issuer's keys from this source (e.g. [`StaticJwks`](crate::StaticJwks)).
    pub fn key_source(mut self, keys: impl KeySource) -> Self {
        self.main.keys = KeySpec::Source(Arc::new(keys));
        self
    }

    /// Extra trust anchors (PEM) for discovery and JWKS over HTTPS, for issuers with a private CA.
    pub fn jwks_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.jwks_roots_pem = Some(pem.into());
        self
    }

    /// Accept tokens from another issuer too.
    pub fn trusted_issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.others.push(issuer);
        self
    }

    /// [`BindingPolicy::Required`] (default) or [`BindingPolicy::IfBound`].
    pub fn binding(mut self, binding: BindingPolicy) -> Self {
        self.binding = binding;
        self
    }

    /// Clock-skew allowance for `exp`, `nbf`, `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Replace the algorithm allow-list (default: RS*, PS*, ES256, ES384, EdDSA). `none` is never
    /// accepted; HMAC algorithms verify only with a shared-secret key source.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Require RFC 9068 typed tokens (`typ: at+jwt`).
    pub fn require_at_jwt(mut self) -> Self {
        self.require_at_jwt = true;
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges (default: the first audience).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Largest accepted bearer token, in bytes (default 16 KiB).
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Take the client certificate from a TLS-terminating proxy's header instead of the TLS
    /// connection — only from peers inside the trusted networks (see
    /// [`ForwardedCertificates`]).
    pub fn forwarded_certificates(mut self, source: ForwardedCertificates) -> Self {
        self.forwarded = Some(source);
        self
    }

    /// A forwarded certificate header from a peer outside the trusted networks is refused and
    /// logged as a warning — at most one line per peer per `interval` (default 60 s; zero logs
    /// every one), each with the number left out since that peer's last line. At most 256 peers
    /// are tracked, so a flood from many addresses writes at most 256 lines per interval and
    /// holds bounded memory.
    pub fn untrusted_forwarded_warning_interval(mut self, interval: Duration) -> Self {
        self.untrusted_warning_interval = interval;
        self
    }

    /// Bounds of the verified-token cache (on by default: 10,000 entries, 32 MiB).
    pub fn token_cache(mut self, config: TokenCacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Verify every token's signature on every request (no verified-token cache).
    pub fn no_token_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// This resource's identifier for RFC 9728 metadata (default: the first audience).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Scopes listed as `scopes_supported` in the RFC 9728 metadata.
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        scopes: I,
    ) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Add `resource_metadata="…/.well-known/oauth-protected-resource…"` to every challenge
    /// (RFC 9728 §5.1), so clients can discover the authorization servers from a 401.
    pub fn advertise_resource_metadata(mut self) -> Self {
        self.advertise_metadata = true;
        self
    }

    /// Also accept DPoP-bound tokens (RFC 9449): `Authorization: DPoP` with a `DPoP` proof;
    /// see [`Dpop`](crate::Dpop).
    pub fn dpop(mut self, dpop: crate::Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// The origin (and path prefix) clients use to reach this API, e.g.
    /// `https://api.example.com` or `https://gw.example.com/accounts-api`: DPoP proofs' `htu`
    /// must name it. Without it, the request's own `Host` (or, from a trusted proxy,
    /// `Forwarded` / `X-Forwarded-Host`, `-Proto`, `-Prefix`) is used.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Replace the clock (seconds since the Unix epoch); for tests.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the layer: runs discovery and the first key fetch for remote issuers.
    pub async fn build(self) -> Result<CertBoundLayer, BuildError> {
        if !self.main_issuer_set || self.main.issuer.is_empty() {
            return Err(BuildError::NoIssuer);
        }
        if self.algorithms.is_empty() {
            return Err(BuildError::NoAlgorithms);
        }
        let main_audiences = self.main.audiences.clone();
        let realm = match (&self.realm, main_audiences.first()) {
            (Some(realm), _) => realm.clone(),
            (None, Some(aud)) => aud.clone(),
            (None, None) => return Err(BuildError::NoAudience(self.main.issuer.clone())),
        };
        let mut policies: Vec<TokenPolicy> = Vec::with_capacity(1 + self.others.len());
        let mut keys = Vec::with_capacity(1 + self.others.len());
        for spec in std::iter::once(&self.main).chain(&self.others) {
            if policies.iter().any(|p| p.issuer() == spec.issuer) {
                return Err(BuildError::DuplicateIssuer(spec.issuer.clone()));
            }
            let audiences = if spec.audiences.is_empty() {
                &main_audiences
            } else {
                &spec.audiences
            };
            let (first, rest) = audiences
                .split_first()
                .ok_or_else(|| BuildError::NoAudience(spec.issuer.clone()))?;
            let mut policy = TokenPolicy::new(spec.issuer.clone(), first.clone())
                .algorithms(self.algorithms.iter().copied())
                .leeway(self.leeway)
                .require_at_jwt(self.require_at_jwt);
            for aud in rest {
                policy = policy.add_audience(aud.clone());
            }
            let source = self.key_source_for(spec).await?;
            if let Some(metadata) = source.issuer_metadata() {
                if self.binding == BindingPolicy::Required
                    && !metadata.tls_client_certificate_bound_access_tokens()
                {
                    tracing::warn!(
                        issuer = %spec.issuer,
                        metadata_url = %metadata.metadata_url(),
                        "binding is required but the issuer's metadata does not advertise \
                         tls_client_certificate_bound_access_tokens: its tokens may carry no cnf and will be refused as unbound_token"
                    );
                }
            }
            policies.push(policy);
            keys.push(source);
        }
        let mut metadata = crate::metadata::ResourceMetadata::new(
            self.resource
                .clone()
                .unwrap_or_else(|| realm_default(&main_audiences)),
        )
        .scopes_supported(self.scopes_supported.iter().cloned());
        for policy in &policies {
            metadata = metadata.authorization_server(policy.issuer());
        }
        let mut verifier = Verifier::new(policies, self.binding)
            .map_err(|_| BuildError::NoIssuer)?
            .max_token_len(self.max_token_len);
        if let Some(dpop) = &self.dpop {
            verifier = verifier.dpop(dpop.policy.clone());
            if let Some(keys) = &dpop.nonce_keys {
                verifier = verifier.dpop_nonces(keys.clone());
            }
            metadata = metadata.dpop_signing_algs(dpop.algs());
        }
        Ok(CertBoundLayer {
            auth: Arc::new(Authenticator {
                id: crate::token::LayerId::next(),
                metadata,
                advertise_metadata: self.advertise_metadata,
                verifier,
                keys,
                realm,
                clock: self.clock,
                forwarded: self.forwarded,
                untrusted_warnings: crate::warn_limit::WarnLimiter::new(
                    self.untrusted_warning_interval,
                    crate::warn_limit::MAX_PEERS,
                ),
                cache: self.cache.map(TokenCache::new),
                dpop_algs: self.dpop.as_ref().map(crate::Dpop::algs),
                replay: self.dpop.as_ref().map(|d| Arc::clone(&d.replay)),
                public_url: self.public_url,
            }),
        })
    }

    async fn key_source_for(&self, spec: &TrustedIssuer) -> Result<Arc<dyn KeySource>, BuildError> {
        let remote = match &spec.keys {
            KeySpec::Source(source) => return Ok(Arc::clone(source)),
            KeySpec::Discovery => RemoteJwks::builder().issuer(spec.issuer.clone()),
            KeySpec::JwksUri(uri) => RemoteJwks::builder().jwks_uri(uri.clone()),
        };
        let remote = match &self.jwks_roots_pem {
            Some(pem) => remote.extra_root_certificates_pem(pem.clone()),
            None => remote,
        };
        let jwks = remote.build().await.map_err(|source| BuildError::Keys {
            issuer: spec.issuer.clone(),
            source,
        })?;
        Ok(Arc::new(jwks))
    }
}
