//! # certbound-jwks
//!
//! Where [certbound](https://docs.rs/certbound) gets the keys that verify access tokens: the
//! [`KeySource`] trait, a fixed [`StaticJwks`], and a [`RemoteJwks`] that discovers an issuer's
//! `jwks_uri`, caches its keys, follows rotation and rides out outages — and, beside it, where
//! opaque tokens are introspected: the [`IntrospectionSource`] trait and `Introspector`
//! (RFC 7662, with `client_secret_basic`/`_post`, `private_key_jwt` and `tls_client_auth`).
//! (The crate keeps its name for now: it holds all issuer trust, keys and introspection.) Network I/O in certbound
//! lives here and only here; parsing keys is [`certbound_core::KeySet`]'s job.
//!
//! ```
//! use std::sync::Arc;
//! use certbound_core::{Algorithm, Rejection};
//! use certbound_jwks::{KeySource, StaticJwks};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys: Arc<dyn KeySource> = Arc::new(StaticJwks::shared_secret("hs-1", [42u8; 32])?);
//!
//! // The request path: a synchronous lookup, then — only for an unknown kid — a refresh.
//! let key = match keys.lookup(Some("hs-1"), Algorithm::HS256) {
//!     Err(Rejection::UnknownKey) => keys.refresh(Some("hs-1"), Algorithm::HS256).await,
//!     other => other,
//! }?;
//! assert_eq!(key.kid(), Some("hs-1"));
//! assert_eq!(
//!     keys.refresh(Some("rotated"), Algorithm::HS256).await.unwrap_err(),
//!     Rejection::UnknownKey
//! );
//! # Ok(())
//! # }
//! ```
//!
//! For an issuer on the network see `RemoteJwks` and the `remote` module (feature `remote`).
//!
//! # Crate features
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `remote` | on      | `RemoteJwks` and the `remote` module: OpenID Connect / RFC 8414 discovery, HTTPS fetches with reqwest and rustls, caching, rotation and outage handling; [`KeySource::issuer_metadata`]. Needs a tokio runtime. |
//!
//! Without `remote` the crate is [`KeySource`] and [`StaticJwks`] and compiles no HTTP client
//! (no reqwest, no hyper, no tokio):
//!
//! ```toml
//! certbound-jwks = { version = "0.1", default-features = false }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

use certbound_core::{Algorithm, Rejection, VerificationKey};
use futures_util::future::BoxFuture;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub mod remote;
pub mod static_jwks;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use remote::{
    CacheState, FetchError, IntrospectionAuth, Introspector, IntrospectorBuilder, IssuerMetadata,
    JwksStats, RemoteJwks, RemoteJwksBuildError, RemoteJwksBuilder,
};
pub use static_jwks::{StaticJwks, StaticJwksError};

/// Counter (via the `metrics` facade), label `outcome` (`ok` or the failure kind): JWKS fetches.
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub const JWKS_FETCHES_METRIC: &str = "certbound_jwks_fetches_total";

/// Where verification keys come from. The layer calls [`lookup`](Self::lookup) on every request
/// and [`refresh`](Self::refresh) only when `lookup` said [`Rejection::UnknownKey`].
pub trait KeySource: Send + Sync + std::fmt::Debug + 'static {
    /// Fast path: the current key set only. No I/O, no await, no lock that a fetch holds.
    ///
    /// Returns [`Rejection::UnknownKey`] or [`Rejection::KeyAlgorithmMismatch`] from the set, or
    /// [`Rejection::KeysUnavailable`] when there is no usable set (never fetched, or older than
    /// its maximum stale age).
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection>;

    /// Slow path, called only after `lookup` returned `Err(Rejection::UnknownKey)`: refresh
    /// (at most once per cooldown) and look again. Only the caller that starts a fetch waits
    /// for it; others are answered from the current keys at once.
    fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>>;

    /// The issuer's discovery metadata, when this source found its keys by discovery.
    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    fn issuer_metadata(&self) -> Option<&IssuerMetadata> {
        None
    }
}

/// The raw `200 OK` answer of an introspection endpoint, for
/// [`Verifier::check_introspection_response`](certbound_core::Verifier::check_introspection_response).
#[derive(Debug, Clone)]
pub struct IntrospectionReply {
    /// The `Content-Type` header, as sent.
    pub content_type: Option<String>,
    /// The body, as sent (within the size limit).
    pub body: Vec<u8>,
}

/// Where opaque tokens are introspected (RFC 7662), beside [`KeySource`]: the layer calls
/// [`introspect`](Self::introspect) for a token its cache does not know. The network
/// implementation is `Introspector` (feature `remote`).
pub trait IntrospectionSource: Send + Sync + std::fmt::Debug + 'static {
    /// POSTs `token` to the endpoint; the raw answer, or why there is none.
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<IntrospectionReply, certbound_core::IntrospectionFailure>>;

    /// This resource server's client id at the issuer: named in the error log when the
    /// endpoint refuses it, and the `aud` an RFC 9701 signed response must name.
    fn client_id(&self) -> &str;
}

impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
        (**self).lookup(kid, alg)
    }

    #[cfg(feature = "remote")]
    fn issuer_metadata(&self) -> Option<&IssuerMetadata> {
        (**self).issuer_metadata()
    }

    fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
        (**self).refresh(kid, alg)
    }
}

impl<T: KeySource + ?Sized> KeySource for Box<T> {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
        (**self).lookup(kid, alg)
    }

    #[cfg(feature = "remote")]
    fn issuer_metadata(&self) -> Option<&IssuerMetadata> {
        (**self).issuer_metadata()
    }

    fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
        (**self).refresh(kid, alg)
    }
}
