//! # certbound-core
//!
//! The sans-IO heart of [certbound](https://docs.rs/certbound): every decision about a
//! certificate-bound access token (RFC 8705), made on plain values — no sockets, no tokio, no tower.
//!
//! A request is accepted when its bearer token is well formed, signed by a key of the configured
//! issuer with an allowed algorithm, issued by that issuer for this audience, within its
//! lifetime, and bound (`cnf."x5t#S256"`) to the certificate the client presented.
//!
//! The [`Verifier`] makes the whole decision, exactly as the certbound layer does: it asks for
//! the key it needs ([`Step::NeedKey`]); the driver looks the key up — here in a [`KeySet`],
//! in the layer in the issuer's cached JWKS — and resumes.
//!
//! ```
//! use std::sync::Arc;
//! use certbound_core::{BindingPolicy, KeySet, Rejection, Step, Thumbprint, TokenPolicy, Verifier};
//! use http::HeaderMap;
//!
//! let policy = TokenPolicy::new("https://issuer.example/", "https://api.example");
//! let verifier = Verifier::new(vec![policy], BindingPolicy::Required).unwrap();
//! let keys = KeySet::default(); // normally from a JWKS document: KeySet::from_jwks(bytes)
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("authorization", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln".parse().unwrap());
//! let presented = Thumbprint::of_der(b"the client's leaf certificate DER");
//! let now = 1_800_000_000; // the driver's clock; tests pass a fixed one
//!
//! let decide = || -> Result<_, Rejection> {
//!     let credentials = verifier.credentials(&headers)?;
//!     match verifier.verify(credentials, Some(presented), now) {
//!         Step::Accept(accepted) => Ok(accepted),
//!         Step::Reject(rejection) => Err(rejection),
//!         Step::NeedKey(need) => {
//!             let key = keys.get(need.kid(), need.alg()).map(Arc::clone);
//!             need.resume(key.map_err(Rejection::from))
//!         }
//!         // Only with `.introspection(..)`: an opaque token for the issuer's endpoint.
//!         Step::NeedIntrospection(_) => unreachable!(),
//!     }
//! };
//! // This key set is empty, so the kid is unknown: 401 invalid_token.
//! let rejection = decide().unwrap_err();
//! assert_eq!(rejection, Rejection::UnknownKey);
//! assert_eq!(rejection.status(), 401);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The modules are private: every public item is re-exported below, once, at the crate root.
mod bearer;
mod certificate;
mod confirmation;
mod dpop;
mod forward_auth;
mod forwarded;
pub mod introspection;
mod jose;
mod keys;
mod path_rules;
mod policy;
mod rejection;
mod thumbprint;
mod verifier;

pub use bearer::{bearer_token, parse_authorization, parse_scheme, Scheme};
pub use certificate::ClientCertificate;
pub use confirmation::{BindingPolicy, BindingPolicyError, Confirmation, Presented};
pub use dpop::{
    access_token_hash, jwk_thumbprint, normalize_htu, request_uri, DpopPolicy, NonceKeyError,
    NonceKeys, ProofRequest, ReplayCheck, VerifiedProof, DEFAULT_DPOP_ALGORITHMS,
    DEFAULT_IAT_WINDOW, DEFAULT_KEY_CACHE_CAPACITY, DEFAULT_MAX_PROOF_LEN, MAX_CACHED_HEADER_LEN,
    MAX_JTI_LEN,
};
pub use forward_auth::{original_request, ForwardAuthHeaders, OriginalRequest};
pub use forwarded::{
    CidrError, FormatSpecError, ForwardedCertificates, ForwardedFormat, ForwardedResult, IpCidr,
    DEFAULT_MAX_FORWARDED_HEADER_LEN,
};
pub use introspection::{
    Introspected, IntrospectionFailure, IntrospectionPolicy, IntrospectionResponse,
    SignedIntrospection,
};
pub use jose::{parse_algorithm, JoseHeader, JsonError, UnverifiedToken, ED25519_ALG};
pub use keys::{
    Curve, JwksError, KeyError, KeyLookupError, KeySet, MalformedJwks, ParsedJwks, SkippedKey,
    VerificationKey, MIN_RSA_BITS,
};
pub use path_rules::{suspicious_path, PathAccess, PathRuleError, PathRules};
pub use policy::{TokenPolicy, VerifiedClaims, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY};
pub use rejection::{ErrorClass, Rejection};
pub use thumbprint::{Thumbprint, ThumbprintError};
pub use verifier::{
    Accepted, Credentials, NeedIntrospection, NeedKey, NoIssuer, OwnedCredentials, Step, Verified,
    Verifier,
};

/// Helpers for certbound's own fuzz harness and CLI (decoders exposed for their oracles and
/// reports). Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::forwarded::{first_pem_certificate, percent_decode};
    pub use crate::jose::parse_object;
}

/// Re-export of the JWT algorithm type used throughout the API.
pub use jsonwebtoken::Algorithm;

/// Default upper bound on a bearer token's length in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
