//! Accepting DPoP-bound tokens (RFC 9449) beside certificate-bound ones.
//!
//! ```
//! use certbound::{CertBound, Dpop};
//! use certbound::NonceKeys;
//! # async fn doc(keys: certbound::StaticJwks) -> Result<(), certbound::LayerBuildError> {
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(keys)
//!     .public_url("https://api.example.com")      // the origin clients put in htu
//!     .dpop(Dpop::default())                      // in-memory replay store, no nonces
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A request with `Authorization: DPoP <token>` and one `DPoP: <proof>` header is accepted
//! when the proof holds for this request (RFC 9449 §4.3), the token's `cnf.jkt` is the proof
//! key's thumbprint, and the proof was not used before (the [`ReplayStore`]). Failures answer
//! `401` with `WWW-Authenticate: DPoP algs="…", error="invalid_dpop_proof"` (or
//! `invalid_token` for the token); with nonces on, a proof without a current nonce gets
//! `error="use_dpop_nonce"` and a `DPoP-Nonce` header.

use std::sync::Arc;
use std::time::Duration;

use certbound_core::Algorithm;
use certbound_core::{DpopPolicy, NonceKeys};

use crate::replay::{MemoryReplayStore, ReplayStore};

/// DPoP settings for [`CertBoundBuilder::dpop`](crate::CertBoundBuilder::dpop).
#[derive(Debug, Clone)]
pub struct Dpop {
    pub(crate) policy: DpopPolicy,
    pub(crate) nonce_keys: Option<NonceKeys>,
    pub(crate) replay: Arc<dyn ReplayStore>,
}

impl Default for Dpop {
    /// ES256, ES384, PS256, EdDSA; `iat` within ±60 s; no nonces; an in-memory replay store.
    fn default() -> Self {
        Self {
            policy: DpopPolicy::default(),
            nonce_keys: None,
            replay: Arc::new(MemoryReplayStore::default()),
        }
    }
}

impl Dpop {
    /// Proof algorithms (default ES256, ES384, PS256, EdDSA; add RS256 here if clients use it;
    /// `none` and HMAC are never accepted). `EdDSA` also admits proofs named `Ed25519`
    /// (RFC 9864), as panva's `dpop` and `oauth4webapi` sign them.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.policy = self.policy.algorithms(algorithms);
        self
    }

    /// How far a proof's `iat` may be from now, either way (default 60 s).
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.policy = self.policy.iat_window(window);
        self
    }

    /// Require server nonces (RFC 9449 §8), sealed with keys every replica shares.
    pub fn nonce_keys(mut self, keys: NonceKeys) -> Self {
        self.nonce_keys = Some(keys);
        self
    }

    /// Where accepted proofs are remembered (default: [`MemoryReplayStore`], one process).
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Arc::new(store);
        self
    }

    /// The proof algorithms, space-separated, for challenges and metadata.
    pub(crate) fn algs(&self) -> String {
        self.policy.algorithm_names().join(" ")
    }
}
