//! The verified token a handler receives.
//!
//! The layer inserts a [`VerifiedToken`] into the request extensions of every request it lets
//! through. With axum it is an extractor; typed custom claims come with `VerifiedToken<MyClaims>`.
//!
//! ```
//! use certbound::VerifiedToken;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct TenantClaims {
//!     tenant: String,
//! }
//!
//! // axum handlers:
//! async fn whoami(token: VerifiedToken) -> String {
//!     format!("{} via {}", token.sub().unwrap_or("-"), token.client_id().unwrap_or("-"))
//! }
//! async fn tenant(token: VerifiedToken<TenantClaims>) -> String {
//!     token.claims().tenant.clone()
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use certbound_core::{Algorithm, Thumbprint, VerifiedClaims};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Which layer instance verified a token: one per [`CertBound::builder`](crate::CertBound::builder)
/// `.build()`, shared by the clones of that layer. [`require_scope`](crate::CertBoundLayer::require_scope)
/// accepts only tokens its own layer verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerId(u64);

impl LayerId {
    /// A new identity, never handed out before in this process (a 64-bit counter does not wrap).
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The default custom-claims type: none. Deserializes from any claims object.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct NoCustomClaims {}

/// An access token that passed every check: signature, issuer, audience, lifetime and — when
/// bound — the certificate binding to the connection the request arrived on.
///
/// Cloning is cheap. `C` is an optional typed view of the claims (see the module docs).
#[derive(Debug, Clone)]
pub struct VerifiedToken<C = NoCustomClaims> {
    claims: Arc<VerifiedClaims>,
    presented: Option<Thumbprint>,
    verified_by: LayerId,
    custom: C,
}

impl VerifiedToken {
    /// Shares `claims` (e.g. with the verified-token cache) — no copy. `verified_by` is the layer
    /// instance that verified it.
    pub(crate) fn new(
        claims: Arc<VerifiedClaims>,
        presented: Option<Thumbprint>,
        verified_by: LayerId,
    ) -> Self {
        Self {
            claims,
            presented,
            verified_by,
            custom: NoCustomClaims {},
        }
    }
}

impl<C> VerifiedToken<C> {
    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.claims.subject()
    }
    /// `client_id` (RFC 9068).
    pub fn client_id(&self) -> Option<&str> {
        self.claims.client_id()
    }
    /// `scope`, the space-separated string.
    pub fn scope(&self) -> Option<&str> {
        self.claims.scope()
    }
    /// The individual scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims.scopes()
    }
    /// Whether the token has `scope` (a whole word of the `scope` claim).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.has_scope(scope)
    }
    /// `iss`.
    pub fn issuer(&self) -> &str {
        self.claims.issuer()
    }
    /// `aud`, as a list.
    pub fn audience(&self) -> &[String] {
        self.claims.audience()
    }
    /// `exp`, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.claims.expires_at()
    }
    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.claims.jti()
    }
    /// The certificate thumbprint the token is bound to (`cnf."x5t#S256"`); `None` only for
    /// unbound tokens accepted under [`BindingPolicy::IfBound`](crate::BindingPolicy::IfBound).
    pub fn thumbprint(&self) -> Option<&Thumbprint> {
        self.claims.confirmation().certificate()
    }
    /// What the token is bound to (`cnf`), parsed.
    pub fn confirmation(&self) -> &certbound_core::Confirmation {
        self.claims.confirmation()
    }
    /// The thumbprint of the client certificate this request came with, if any.
    pub fn presented_thumbprint(&self) -> Option<&Thumbprint> {
        self.presented.as_ref()
    }
    /// The `kid` of the key that verified the signature.
    pub fn kid(&self) -> Option<&str> {
        self.claims.kid()
    }
    /// The signature algorithm: the token's, or for an opaque token that of the issuer's
    /// RFC 9701 signed introspection response (`None` for a plain JSON one).
    pub fn alg(&self) -> Option<Algorithm> {
        self.claims.alg()
    }
    /// Whether the claims come from the issuer's introspection endpoint (an opaque token, or
    /// every token with `introspect_all`).
    pub fn is_introspected(&self) -> bool {
        self.claims.is_introspected()
    }
    /// Every claim, as sent by the issuer.
    pub fn all_claims(&self) -> &Map<String, Value> {
        self.claims.all()
    }
    /// The verified registered claims.
    pub fn verified_claims(&self) -> &VerifiedClaims {
        &self.claims
    }
    /// The typed custom claims.
    pub fn claims(&self) -> &C {
        &self.custom
    }

    /// A view of the same token with the claims deserialized into `T`.
    pub fn with_claims<T: DeserializeOwned>(&self) -> Result<VerifiedToken<T>, serde_json::Error> {
        let custom = T::deserialize(self.claims.all())?;
        Ok(VerifiedToken {
            claims: Arc::clone(&self.claims),
            presented: self.presented,
            verified_by: self.verified_by,
            custom,
        })
    }

    /// Whether the layer instance `layer` verified this token.
    pub(crate) fn verified_by(&self, layer: LayerId) -> bool {
        self.verified_by == layer
    }
}
