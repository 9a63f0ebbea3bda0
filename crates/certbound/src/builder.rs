//! Configuring the layer.
//!
//! ```no_run
//! use std::time::Duration;
//! use certbound::{BindingPolicy, CertBound, TrustedIssuer};
//!
//! # async fn doc() -> Result<(), certbound::LayerBuildError> {
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
//!
//! With a [`KeySource`] for every issuer nothing needs the network, and
//! [`build_static`](CertBoundBuilder::build_static) builds the layer without `async`:
//!
//! ```
//! use certbound::{CertBound, StaticJwks};
//!
//! # fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(StaticJwks::shared_secret("hs-1", [42u8; 32])?)
//!     .build_static()?;
//! # let _ = auth; Ok(()) }
//! # doc().unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use certbound_core::ForwardedCertificates;
use certbound_core::{
    Algorithm, BindingPolicy, TokenPolicy, Verifier, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_LEN,
};
use certbound_jwks::KeySource;
#[cfg(feature = "remote")]
use certbound_jwks::RemoteJwks;

use crate::authenticate::{system_clock, Authenticator, Clock};
use crate::cache::{TokenCache, TokenCacheConfig};
use crate::CertBoundLayer;

/// Why the layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerBuildError {
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
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    #[error("keys for issuer {issuer}: {source}")]
    Keys {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        #[source]
        source: certbound_jwks::RemoteJwksBuildError,
    },
    /// An issuer's keys would come from the network (discovery from its URL), but certbound
    /// was built without its `remote` feature.
    #[error(
        "issuer {issuer} has no key source: finding its keys by discovery needs certbound's \
         `remote` feature (enable it, or give the issuer a .key_source(..))"
    )]
    RemoteDisabled {
        /// The issuer.
        issuer: String,
    },
    /// The introspection endpoint could not be set up: no `introspection_endpoint` in the
    /// issuer's metadata, unusable client credentials, or trust anchors.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    #[error("introspection for issuer {issuer}: {source}")]
    Introspection {
        /// The issuer.
        issuer: String,
        /// What went wrong.
        #[source]
        source: certbound_jwks::RemoteJwksBuildError,
    },
    /// [`introspect_all`](CertBoundBuilder::introspect_all) without an introspection source.
    #[error("introspect_all needs .introspection(..) or .introspection_source(..)")]
    NoIntrospection,
    /// [`build_static`](CertBoundBuilder::build_static) was called, but an issuer's keys come
    /// from the network (discovery or a `jwks_uri`), which only the async
    /// [`build`](CertBoundBuilder::build) fetches.
    #[error(
        "issuer {issuer} has no static key source: its keys are fetched from the network \
         (discovery or jwks_uri), so build the layer with .build().await, or give it a \
         .key_source(..)"
    )]
    NotStatic {
        /// The issuer.
        issuer: String,
    },
}

fn realm_default(audiences: &[String]) -> String {
    audiences.first().cloned().unwrap_or_default()
}

/// Where an issuer's keys come from.
#[derive(Clone)]
enum KeySpec {
    /// OIDC / RFC 8414 discovery from the issuer URL (needs the `remote` feature).
    Discovery,
    /// A JWKS URL, fetched and cached.
    #[cfg(feature = "remote")]
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
    /// An issuer accepted for the main audience, whose keys are found by discovery (feature
    /// `remote`) unless [`jwks_uri`](Self::jwks_uri) or [`key_source`](Self::key_source) says
    /// otherwise.
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
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
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
    #[cfg(feature = "remote")]
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
    introspection: Option<IntrospectionSpec>,
    introspect_all: bool,
    require_introspection_audience: bool,
    require_signed_introspection: bool,
    introspection_cache: crate::IntrospectionCacheConfig,
}

/// Where opaque tokens are introspected.
#[derive(Clone)]
enum IntrospectionSpec {
    /// An `Introspector` to build (its endpoint from the main issuer's discovery if unset).
    #[cfg(feature = "remote")]
    Remote(Box<certbound_jwks::IntrospectorBuilder>),
    /// Any source given by the user.
    Source(Arc<dyn certbound_jwks::IntrospectionSource>),
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
            #[cfg(feature = "remote")]
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
            introspection: None,
            introspect_all: false,
            require_introspection_audience: false,
            require_signed_introspection: false,
            introspection_cache: crate::IntrospectionCacheConfig::default(),
        }
    }
}

impl CertBoundBuilder {
    /// The issuer whose tokens are accepted (`iss`, matched exactly). Unless
    /// [`jwks_uri`](Self::jwks_uri) or [`key_source`](Self::key_source) is given, its keys are
    /// found by discovery (`/.well-known/openid-configuration`, then RFC 8414), which needs the
    /// `remote` feature (on by default); without it, [`build`](Self::build) answers
    /// [`LayerBuildError::RemoteDisabled`].
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
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
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
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
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

    /// Accept opaque access tokens by asking the main issuer's introspection endpoint (RFC 7662)
    /// with these client credentials; the endpoint comes from the issuer's discovery
    /// (`introspection_endpoint`) unless [`endpoint`](certbound_jwks::IntrospectorBuilder::endpoint)
    /// is set, and the trust anchors of
    /// [`jwks_root_certificates_pem`](Self::jwks_root_certificates_pem) apply to it too.
    /// Answers are cached; see [`introspection`](crate::introspection).
    ///
    /// ```no_run
    /// use certbound::{CertBound, IntrospectionAuth, Introspector};
    /// # async fn doc() -> Result<(), certbound::LayerBuildError> {
    /// let auth = CertBound::builder()
    ///     .issuer("https://auth.example.com/")
    ///     .audience("https://api.example.com")
    ///     .introspection(Introspector::builder().auth(IntrospectionAuth::client_secret_basic("api", "s3cret")))
    ///     .build()
    ///     .await?;
    /// # let _ = auth; Ok(()) }
    /// ```
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    pub fn introspection(mut self, introspector: certbound_jwks::IntrospectorBuilder) -> Self {
        self.introspection = Some(IntrospectionSpec::Remote(Box::new(introspector)));
        self
    }

    /// Accept opaque access tokens by asking this [`IntrospectionSource`](certbound_jwks::IntrospectionSource).
    pub fn introspection_source(
        mut self,
        source: impl certbound_jwks::IntrospectionSource,
    ) -> Self {
        self.introspection = Some(IntrospectionSpec::Source(Arc::new(source)));
        self
    }

    /// Introspect JWTs too, not only opaque tokens (e.g. to honour revocation): every token
    /// costs an introspection call per cache lifetime. Needs an introspection source.
    pub fn introspect_all(mut self) -> Self {
        self.introspect_all = true;
        self
    }

    /// Refuse introspection responses without `aud` (by default `aud` is checked when present).
    pub fn require_introspection_audience(mut self) -> Self {
        self.require_introspection_audience = true;
        self
    }

    /// Accept only RFC 9701 signed introspection responses, verified with the issuer's keys; the
    /// layer's `Introspector` then asks for them
    /// (`Accept: application/token-introspection+jwt`; a custom
    /// [`introspection_source`](Self::introspection_source) must ask itself). Whether required
    /// or not, a signed response must name the source's client id in `aud`, carry an `iat` at
    /// most a minute old (beyond the leeway), and its `exp` ends the cache entry.
    pub fn require_signed_introspection(mut self) -> Self {
        self.require_signed_introspection = true;
        self
    }

    /// Bounds and lifetimes of the introspection cache (default: 10,000 entries, 16 MiB,
    /// positive answers at most 5 min, negative ones 10 s).
    pub fn introspection_cache(mut self, config: crate::IntrospectionCacheConfig) -> Self {
        self.introspection_cache = config;
        self
    }

    /// Replace the clock (seconds since the Unix epoch); for tests.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the layer: runs discovery and the first key fetch for remote issuers.
    ///
    /// Every configuration error is reported before anything is fetched. When every issuer
    /// has a [`key_source`](Self::key_source), nothing is fetched and
    /// [`build_static`](Self::build_static) does the same without `async`.
    pub async fn build(self) -> Result<CertBoundLayer, LayerBuildError> {
        let issuers = self.policies()?;
        let mut keys = Vec::with_capacity(issuers.policies.len());
        for spec in std::iter::once(&self.main).chain(&self.others) {
            let source = self.key_source_for(spec).await?;
            #[cfg(feature = "remote")]
            self.check_advertised_binding(spec, &source);
            keys.push(source);
        }
        let introspection = self.built_introspection(keys.first()).await?;
        self.finish(issuers, keys, introspection)
    }

    /// The remote introspector's builder with what the layer's options imply: the main issuer,
    /// its trust anchors, and — when signed responses are required — the `Accept` that asks
    /// for them.
    #[cfg(feature = "remote")]
    fn remote_introspector(
        &self,
        builder: &certbound_jwks::IntrospectorBuilder,
    ) -> certbound_jwks::IntrospectorBuilder {
        let mut builder = builder.clone().issuer(self.main.issuer.clone());
        if let Some(pem) = &self.jwks_roots_pem {
            builder = builder.extra_root_certificates_pem(pem);
        }
        if self.require_signed_introspection {
            builder = builder.request_signed_response(true);
        }
        builder
    }

    /// The introspection source, built when it is remote.
    async fn built_introspection(
        &self,
        #[allow(unused_variables)] main_keys: Option<&Arc<dyn KeySource>>,
    ) -> Result<Option<Arc<dyn certbound_jwks::IntrospectionSource>>, LayerBuildError> {
        match &self.introspection {
            None => Ok(None),
            Some(IntrospectionSpec::Source(source)) => Ok(Some(Arc::clone(source))),
            #[cfg(feature = "remote")]
            Some(IntrospectionSpec::Remote(builder)) => {
                let builder = self.remote_introspector(builder);
                let metadata = main_keys.and_then(|keys| keys.issuer_metadata());
                let built = match (builder.has_endpoint(), metadata) {
                    (false, None) => builder.build().await,
                    (_, metadata) => builder.build_with_metadata(metadata),
                };
                let introspector = built.map_err(|source| LayerBuildError::Introspection {
                    issuer: self.main.issuer.clone(),
                    source,
                })?;
                Ok(Some(Arc::new(introspector)))
            }
        }
    }

    /// Builds the layer without `async`, when every issuer's keys are given as a
    /// [`key_source`](Self::key_source) (e.g. [`StaticJwks`](crate::StaticJwks)) and nothing
    /// needs the network. An issuer found by discovery or a `jwks_uri` is
    /// [`LayerBuildError::NotStatic`]: use [`build`](Self::build) for those.
    pub fn build_static(self) -> Result<CertBoundLayer, LayerBuildError> {
        let issuers = self.policies()?;
        let keys = std::iter::once(&self.main)
            .chain(&self.others)
            .map(|spec| match &spec.keys {
                KeySpec::Source(source) => Ok(Arc::clone(source)),
                _ => Err(LayerBuildError::NotStatic {
                    issuer: spec.issuer.clone(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let introspection = match &self.introspection {
            None => None,
            Some(IntrospectionSpec::Source(source)) => Some(Arc::clone(source)),
            #[cfg(feature = "remote")]
            Some(IntrospectionSpec::Remote(builder)) => {
                let builder = self.remote_introspector(builder);
                if !builder.has_endpoint() {
                    return Err(LayerBuildError::NotStatic {
                        issuer: self.main.issuer.clone(),
                    });
                }
                let introspector = builder.build_with_metadata(None).map_err(|source| {
                    LayerBuildError::Introspection {
                        issuer: self.main.issuer.clone(),
                        source,
                    }
                })?;
                Some(Arc::new(introspector) as Arc<dyn certbound_jwks::IntrospectionSource>)
            }
        };
        self.finish(issuers, keys, introspection)
    }

    /// Checks the configuration and makes one token policy per issuer (main first).
    fn policies(&self) -> Result<Issuers, LayerBuildError> {
        if !self.main_issuer_set || self.main.issuer.is_empty() {
            return Err(LayerBuildError::NoIssuer);
        }
        if self.algorithms.is_empty() {
            return Err(LayerBuildError::NoAlgorithms);
        }
        let main_audiences = &self.main.audiences;
        let realm = match (&self.realm, main_audiences.first()) {
            (Some(realm), _) => realm.clone(),
            (None, Some(aud)) => aud.clone(),
            (None, None) => return Err(LayerBuildError::NoAudience(self.main.issuer.clone())),
        };
        let mut policies: Vec<TokenPolicy> = Vec::with_capacity(1 + self.others.len());
        for spec in std::iter::once(&self.main).chain(&self.others) {
            if policies.iter().any(|p| p.issuer() == spec.issuer) {
                return Err(LayerBuildError::DuplicateIssuer(spec.issuer.clone()));
            }
            let audiences = if spec.audiences.is_empty() {
                main_audiences
            } else {
                &spec.audiences
            };
            let (first, rest) = audiences
                .split_first()
                .ok_or_else(|| LayerBuildError::NoAudience(spec.issuer.clone()))?;
            let mut policy = TokenPolicy::new(spec.issuer.clone(), first.clone())
                .algorithms(self.algorithms.iter().copied())
                .leeway(self.leeway)
                .require_at_jwt(self.require_at_jwt);
            for aud in rest {
                policy = policy.add_audience(aud.clone());
            }
            policies.push(policy);
        }
        Ok(Issuers { realm, policies })
    }

    /// The layer, from the checked policies and one key source per issuer (same order).
    fn finish(
        self,
        issuers: Issuers,
        keys: Vec<Arc<dyn KeySource>>,
        introspection: Option<Arc<dyn certbound_jwks::IntrospectionSource>>,
    ) -> Result<CertBoundLayer, LayerBuildError> {
        if introspection.is_none() && self.introspect_all {
            return Err(LayerBuildError::NoIntrospection);
        }
        let Issuers { realm, policies } = issuers;
        let mut metadata = crate::metadata::ResourceMetadata::new(
            self.resource
                .clone()
                .unwrap_or_else(|| realm_default(&self.main.audiences)),
        )
        .scopes_supported(self.scopes_supported.iter().cloned());
        for policy in &policies {
            metadata = metadata.authorization_server(policy.issuer());
        }
        let mut verifier = Verifier::new(policies, self.binding)
            .map_err(|_| LayerBuildError::NoIssuer)?
            .max_token_len(self.max_token_len);
        if let Some(dpop) = &self.dpop {
            verifier = verifier.dpop(dpop.policy.clone());
            if let Some(keys) = &dpop.nonce_keys {
                verifier = verifier.dpop_nonces(keys.clone());
            }
            metadata = metadata.dpop_signing_algs(dpop.algs());
        }
        if let Some(source) = &introspection {
            verifier = verifier.introspection(
                certbound_core::IntrospectionPolicy::default()
                    .introspect_all(self.introspect_all)
                    .require_audience(self.require_introspection_audience)
                    .require_signed_response(self.require_signed_introspection)
                    // RFC 9701 §5: a signed response is addressed to the client that asked.
                    .response_audience(source.client_id()),
            );
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
                introspection: introspection.map(|source| {
                    crate::introspection::Introspection::new(source, self.introspection_cache)
                }),
            }),
        })
    }

    /// Warns when binding is required but the issuer's discovery metadata does not advertise
    /// certificate-bound tokens.
    #[cfg(feature = "remote")]
    fn check_advertised_binding(&self, spec: &TrustedIssuer, source: &Arc<dyn KeySource>) {
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
    }

    #[cfg(feature = "remote")]
    async fn key_source_for(
        &self,
        spec: &TrustedIssuer,
    ) -> Result<Arc<dyn KeySource>, LayerBuildError> {
        let remote = match &spec.keys {
            KeySpec::Source(source) => return Ok(Arc::clone(source)),
            KeySpec::Discovery => RemoteJwks::builder().issuer(spec.issuer.clone()),
            KeySpec::JwksUri(uri) => RemoteJwks::builder().jwks_uri(uri.clone()),
        };
        let remote = match &self.jwks_roots_pem {
            Some(pem) => remote.extra_root_certificates_pem(pem.clone()),
            None => remote,
        };
        let jwks = remote
            .build()
            .await
            .map_err(|source| LayerBuildError::Keys {
                issuer: spec.issuer.clone(),
                source,
            })?;
        Ok(Arc::new(jwks))
    }

    #[cfg(not(feature = "remote"))]
    async fn key_source_for(
        &self,
        spec: &TrustedIssuer,
    ) -> Result<Arc<dyn KeySource>, LayerBuildError> {
        match &spec.keys {
            KeySpec::Source(source) => Ok(Arc::clone(source)),
            KeySpec::Discovery => Err(LayerBuildError::RemoteDisabled {
                issuer: spec.issuer.clone(),
            }),
        }
    }
}

/// The checked configuration of every issuer: the challenge realm and one policy per issuer.
struct Issuers {
    realm: String,
    policies: Vec<TokenPolicy>,
}

#[cfg(test)]
mod tests {
    use certbound_jwks::StaticJwks;

    use super::*;
    use crate::CertBound;

    fn keys() -> StaticJwks {
        StaticJwks::shared_secret("k", [7u8; 32]).unwrap()
    }

    fn with_keys() -> CertBoundBuilder {
        CertBound::builder()
            .issuer("https://a.example/")
            .audience("https://api.example")
            .key_source(keys())
    }

    #[test]
    fn build_static_needs_a_key_source_for_every_issuer() {
        assert!(with_keys().build_static().is_ok());
        assert!(with_keys()
            .trusted_issuer(TrustedIssuer::new("https://b.example/").key_source(keys()))
            .build_static()
            .is_ok());

        // An issuer left to discovery: not static, and the error says what to do.
        let err = with_keys()
            .trusted_issuer(TrustedIssuer::new("https://b.example/"))
            .build_static()
            .unwrap_err();
        assert!(
            matches!(&err, LayerBuildError::NotStatic { issuer } if issuer == "https://b.example/"),
            "{err:?}"
        );
        assert!(err.to_string().contains(".build().await"), "{err}");
        let err = CertBound::builder()
            .issuer("https://a.example/")
            .audience("https://api.example")
            .build_static()
            .unwrap_err();
        assert!(matches!(err, LayerBuildError::NotStatic { .. }), "{err:?}");

        // Configuration errors are the same as build's.
        let err = CertBound::builder()
            .key_source(keys())
            .build_static()
            .unwrap_err();
        assert!(matches!(err, LayerBuildError::NoIssuer), "{err:?}");
        let err = with_keys()
            .trusted_issuer(TrustedIssuer::new("https://a.example/").key_source(keys()))
            .build_static()
            .unwrap_err();
        assert!(
            matches!(err, LayerBuildError::DuplicateIssuer(_)),
            "{err:?}"
        );
    }

    #[cfg(feature = "remote")]
    #[tokio::test]
    async fn configuration_errors_come_before_any_fetch() {
        // Nothing listens on port 1: had build fetched first, this would be LayerBuildError::Keys.
        let err = CertBound::builder()
            .issuer("https://127.0.0.1:1/")
            .audience("https://api.example")
            .trusted_issuer(TrustedIssuer::new("https://127.0.0.1:1/"))
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(err, LayerBuildError::DuplicateIssuer(_)),
            "{err:?}"
        );
        let err = CertBound::builder()
            .issuer("https://127.0.0.1:1/")
            .audience("https://api.example")
            .jwks_uri("https://127.0.0.1:1/jwks")
            .build_static()
            .unwrap_err();
        assert!(matches!(err, LayerBuildError::NotStatic { .. }), "{err:?}");
    }

    #[cfg(not(feature = "remote"))]
    #[tokio::test]
    async fn without_remote_discovery_is_a_build_error_naming_the_feature() {
        let err = CertBound::builder()
            .issuer("https://a.example/")
            .audience("https://api.example")
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LayerBuildError::RemoteDisabled { issuer } if issuer == "https://a.example/"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`remote` feature"), "{err}");
        // With a key source for every issuer, build works without the feature.
        assert!(with_keys().build().await.is_ok());
    }
}
