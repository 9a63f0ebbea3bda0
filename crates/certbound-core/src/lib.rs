//! # certbound-core
//!
//! The sans-IO heart of [certbound](https://docs.rs/certbound): every decision about a
//! certificate-bound access token (RFC 8705), made on plain values — no sockets, no tokio, no tower.
//!
//! A request is accepted when its bearer token is well formed, signed by a key of the configured
//! issuer with an allowed algorithm, issued by that issuer for this audience, within its
//! lifetime, and bound (`cnf."x5t#S256"`) to the certificate the client presented.
//!
//! ```
//! use certbound_core::{
//!     bearer_token, BindingPolicy, KeySet, Rejection, Thumbprint, TokenPolicy, UnverifiedToken,
//! };
//! use http::HeaderMap;
//!
//! let policy = TokenPolicy::new("https://issuer.example/", "https://api.example");
//! let keys = KeySet::default(); // normally from a JWKS document: KeySet::from_jwks(bytes)
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln".parse().unwrap());
//! let presented = Thumbprint::of_der(b"the client's leaf certificate DER");
//!
//! let decide = || -> Result<(), Rejection> {
//!     let token = UnverifiedToken::parse(bearer_token(&headers, 16 * 1024)?)?;
//!     let alg = policy.check_header(token.header())?;
//!     let key = keys.get(token.header().kid(), alg)?;
//!     let claims = policy.verify(token, alg, key, 1_800_000_000)?;
//!     BindingPolicy::Required.check(claims.binding(), Some(&presented))
//! };
//! // This key set is empty, so the kid is unknown: 401 invalid_token.
//! let rejection = decide().unwrap_err();
//! assert_eq!(rejection, Rejection::UnknownKey);
//! assert_eq!(rejection.status(), 401);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bearer;
pub mod certificate;
pub mod forwarded;
pub mod jose;
pub mod keys;
pub mod policy;
pub mod rejection;
pub mod thumbprint;

pub use bearer::{bearer_token, parse_authorization};
pub use certificate::ClientCertificate;
pub use jose::{JoseHeader, UnverifiedToken};
pub use keys::{
    JwksError, KeyError, KeyLookupError, KeySet, ParsedJwks, SkippedKey, VerificationKey,
    MIN_RSA_BITS,
};
pub use policy::{BindingPolicy, TokenPolicy, VerifiedClaims, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY};
pub use rejection::{ErrorClass, Rejection};
pub use thumbprint::{Thumbprint, ThumbprintError};

/// Re-export of the JWT algorithm type used throughout the API.
pub use jsonwebtoken::Algorithm;

/// Default upper bound on a bearer token's length in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
