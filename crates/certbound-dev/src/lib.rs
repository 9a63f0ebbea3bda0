//! # certbound-dev
//!
//! Development and test material for certbound, made fresh with [rcgen] and jsonwebtoken:
//! a dev CA, server and client certificates (CA-issued and self-signed), JWT signing keys,
//! certificate-bound tokens, and (feature `issuer`) a local HTTPS issuer serving discovery and
//! JWKS documents.
//!
//! The example API, the `certbound dev-pki` command and every end-to-end test use this one crate,
//! so what the tests exercise is what a user runs. Not for production: keys are generated on the
//! spot and written unencrypted.
//!
//! ```
//! use certbound_dev::{DevCa, KeyKind, SigningKey, bound_claims};
//! use certbound_core::{Algorithm, ClientCertificate};
//!
//! let ca = DevCa::new("certbound dev CA").unwrap();
//! let alice = ca.client_cert("alice", KeyKind::EcP256).unwrap();
//! let signer = SigningKey::generate("key-1", Algorithm::ES256).unwrap();
//! let cert = ClientCertificate::from_der(alice.cert_der.to_vec());
//! let token = signer.sign(&bound_claims("https://issuer", "https://api", cert.thumbprint())).unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! ```
//!
//! # Crate features
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `issuer` | off     | the `issuer` module: a local HTTPS discovery + JWKS server (axum, hyper, tokio-rustls) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod dir;
pub mod dpop;
pub mod envoy;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub mod issuer;
pub mod pki;
pub mod signing;

pub use dir::{default_dev_dir, private_dir, write_private};
pub use pki::{CertAndKey, DevCa, DevPki, KeyKind};
pub use signing::{bound_claims, jwks_document, unix_now, SigningKey};

/// Errors from generating or loading dev material.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// JWT signing failed.
    #[error("JWT signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Reading or writing dev material failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{0}")]
    Invalid(String),
    /// The dev directory is not fit for private keys: owned by another user, writable by group or
    /// others, or not a directory (see [`private_dir`]).
    #[error("refusing to use {} for dev material: {problem}; {fix}, or choose another directory", path.display())]
    UnsafeDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// No per-user directory for dev material: none of `XDG_RUNTIME_DIR`, `XDG_CACHE_HOME`,
    /// `HOME` is set to an absolute path.
    #[error("no per-user directory for dev material: set XDG_RUNTIME_DIR, XDG_CACHE_HOME or HOME, or choose a directory")]
    NoUserDir,
}
