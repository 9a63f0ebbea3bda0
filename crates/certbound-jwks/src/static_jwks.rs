//! A fixed key set: from a JWKS document, a file, a [`KeySet`], or a shared secret.
//!
//! ```
//! use certbound_core::{Algorithm, Rejection};
//! use certbound_jwks::{KeySource, StaticJwks};
//!
//! let keys = StaticJwks::from_jwks(r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1",
//!     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!     "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#)?;
//! assert!(keys.lookup(Some("ec-1"), Algorithm::ES256).is_ok());
//! assert_eq!(keys.lookup(Some("ec-2"), Algorithm::ES256).unwrap_err(), Rejection::UnknownKey);
//!
//! // HMAC keys enter only this way (and HS* must still be allowed by the token policy).
//! let hmac = StaticJwks::shared_secret("hs-1", [7u8; 32])?;
//! assert!(hmac.lookup(Some("hs-1"), Algorithm::HS256).is_ok());
//! # Ok::<(), certbound_jwks::StaticJwksError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use certbound_core::{Algorithm, JwksError, KeySet, Rejection, VerificationKey};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use crate::KeySource;

/// The shortest shared secret accepted: 32 bytes, the HS256 output size (RFC 7518 §3.2).
pub const MIN_SHARED_SECRET_LEN: usize = 32;

/// Why a [`StaticJwks`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaticJwksError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The document was refused.
    #[error("{}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Jwks {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Why.
        source: JwksError,
    },
    /// The shared secret is shorter than [`MIN_SHARED_SECRET_LEN`] bytes.
    #[error("shared secret is {len} bytes; at least {MIN_SHARED_SECRET_LEN} are required (RFC 7518 §3.2)")]
    WeakSecret {
        /// Its length.
        len: usize,
    },
}

/// A [`KeySource`] with a fixed key set. [`refresh`](KeySource::refresh) answers from the same set.
#[derive(Debug, Clone)]
pub struct StaticJwks {
    keys: Arc<KeySet>,
}

impl StaticJwks {
    /// Parses a JWKS document. Unusable keys are skipped (logged as warnings with kid and
    /// reason); a document without a usable key is an error.
    pub fn from_jwks(document: impl AsRef<[u8]>) -> Result<Self, StaticJwksError> {
        Self::parse(document.as_ref(), None)
    }

    /// Reads and parses a JWKS file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, StaticJwksError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| StaticJwksError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, Some(path))
    }

    /// A single shared-secret (HMAC) key with this `kid` — the only way HMAC keys enter
    /// certbound. The secret must be at least [`MIN_SHARED_SECRET_LEN`] bytes.
    pub fn shared_secret(
        kid: impl Into<String>,
        secret: impl AsRef<[u8]>,
    ) -> Result<Self, StaticJwksError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SHARED_SECRET_LEN {
            return Err(StaticJwksError::WeakSecret { len: secret.len() });
        }
        let key = VerificationKey::from_shared_secret(Some(kid.into()), secret);
        Ok(Self::from_key_set(KeySet::new([key])))
    }

    /// Wraps a key set made elsewhere.
    pub fn from_key_set(keys: KeySet) -> Self {
        Self {
            keys: Arc::new(keys),
        }
    }

    /// The keys.
    pub fn key_set(&self) -> &KeySet {
        &self.keys
    }

    fn parse(document: &[u8], path: Option<&Path>) -> Result<Self, StaticJwksError> {
        let parsed = KeySet::from_jwks(document).map_err(|source| StaticJwksError::Jwks {
            path: path.map(Path::to_owned),
            source,
        })?;
        for skipped in &parsed.skipped {
            tracing::warn!(
                file = path.map(|p| p.display().to_string()),
                kid = skipped.kid.as_deref().unwrap_or("(none)"),
                reason = %skipped.reason,
                "skipped a JWKS key that cannot verify signatures"
            );
        }
        Ok(Self::from_key_set(parsed.keys))
    }
}

impl From<KeySet> for StaticJwks {
    fn from(keys: KeySet) -> Self {
        Self::from_key_set(keys)
    }
}

impl KeySource for StaticJwks {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
        self.keys
            .get(kid, alg)
            .map(Arc::clone)
            .map_err(Rejection::from)
    }

    fn refresh(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
        futures_util::future::ready(self.lookup(kid, alg)).boxed()
    }
}
