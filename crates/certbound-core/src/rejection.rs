//! Why a request was refused, and the RFC 6750 §3 answer for it.
//!
//! ```
//! use certbound_core::Rejection;
//! use http::StatusCode;
//!
//! let r = Rejection::BindingMismatch;
//! assert_eq!(r.code(), "binding_mismatch");
//! assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     r.challenge("api"),
//!     r#"Bearer realm="api", error="invalid_token", error_description="token is bound to a different client certificate""#
//! );
//! // No token at all: a challenge without an error code (RFC 6750 §3.1).
//! assert_eq!(Rejection::MissingToken.challenge("api"), r#"Bearer realm="api""#);
//! ```

use http::StatusCode;

/// The RFC 6750 §3.1 error class of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// No credentials in the request: 401 with a bare challenge, no error code.
    NoToken,
    /// `invalid_request` (400): the request itself is malformed.
    InvalidRequest,
    /// `invalid_token` (401): the token is expired, forged, malformed, or not bound to this client.
    InvalidToken,
    /// `insufficient_scope` (403).
    InsufficientScope,
    /// The service cannot decide right now (503 + `Retry-After`): no usable signing keys, the
    /// replay store or the introspection endpoint unavailable.
    Unavailable,
    /// `invalid_dpop_proof` (401, RFC 9449 §7.1): the DPoP proof is missing, malformed, or does
    /// not hold for this request or token. Answered with a `DPoP` challenge.
    InvalidDpopProof,
    /// `use_dpop_nonce` (401, RFC 9449 §9): the proof needs a fresh server nonce, sent in the
    /// `DPoP-Nonce` header. Answered with a `DPoP` challenge.
    UseDpopNonce,
}

impl ErrorClass {
    /// The `error` parameter of the challenge, if any.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            ErrorClass::NoToken | ErrorClass::Unavailable => None,
            ErrorClass::InvalidRequest => Some("invalid_request"),
            ErrorClass::InvalidToken => Some("invalid_token"),
            ErrorClass::InsufficientScope => Some("insufficient_scope"),
            ErrorClass::InvalidDpopProof => Some("invalid_dpop_proof"),
            ErrorClass::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }

    /// The HTTP status for this class.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorClass::NoToken
            | ErrorClass::InvalidToken
            | ErrorClass::InvalidDpopProof
            | ErrorClass::UseDpopNonce => StatusCode::UNAUTHORIZED,
            ErrorClass::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorClass::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

macro_rules! rejections {
    ($( $(#[$doc:meta])* $variant:ident => ($code:literal, $class:ident, $desc:literal), )*) => {
        /// Why a request was refused. Each variant has a stable machine-readable [`code`](Self::code)
        /// and maps to an RFC 6750 §3 answer; the description never contains token contents.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
        #[non_exhaustive]
        pub enum Rejection {
            $( $(#[$doc])* #[error($desc)] $variant, )*
            /// No usable signing keys (never fetched, or the cached set is older than its maximum
            /// stale age). Answered with 503 and `Retry-After`, never with acceptance.
            #[error("signing keys are unavailable")]
            KeysUnavailable {
                /// Seconds the client should wait before retrying.
                retry_after_secs: u32,
            },
            /// The DPoP replay store cannot be reached. Answered with 503 and `Retry-After`,
            /// never with acceptance.
            #[error("the DPoP replay store is unavailable")]
            ReplayStoreUnavailable {
                /// Seconds the client should wait before retrying.
                retry_after_secs: u32,
            },
            /// The token is opaque (or every token is introspected) and the issuer's
            /// introspection endpoint (RFC 7662) could not answer: unreachable, a 5xx, a
            /// timeout, or a response that is not a valid introspection response (not strict
            /// JSON, no boolean `active`, an RFC 9701 signed response whose signature, `typ` or
            /// `iss` does not verify). Answered with 503 and `Retry-After`, never with acceptance.
            #[error("the token introspection endpoint is unavailable")]
            IntrospectionUnavailable {
                /// Seconds the client should wait before retrying.
                retry_after_secs: u32,
            },
            /// The introspection endpoint answered, but not with a valid response: not strict
            /// JSON, no boolean `active`, or an RFC 9701 signed response whose signature, key,
            /// `typ`, `iss`, `aud` or `exp` does not hold (a forgery, or the wrong issuer).
            /// Answered with 503 and `Retry-After`, never with acceptance.
            #[error("the token introspection response is invalid")]
            IntrospectionResponseInvalid {
                /// Seconds the client should wait before retrying.
                retry_after_secs: u32,
            },
            /// The introspection endpoint refused this resource server's own client credentials
            /// (401/403, or `invalid_client`): a configuration mistake of the server, not the
            /// client's. Answered with 503 and `Retry-After`, never with acceptance.
            #[error("the token introspection endpoint refused this server's credentials")]
            IntrospectionCredentialsRefused {
                /// Seconds the client should wait before retrying.
                retry_after_secs: u32,
            },
        }

        impl Rejection {
            /// Stable, machine-readable reason code (snake_case); safe to log and to match on.
            pub fn code(&self) -> &'static str {
                match self {
                    $( Rejection::$variant => $code, )*
                    Rejection::KeysUnavailable { .. } => "keys_unavailable",
                    Rejection::ReplayStoreUnavailable { .. } => "replay_store_unavailable",
                    Rejection::IntrospectionUnavailable { .. } => "introspection_unavailable",
                    Rejection::IntrospectionCredentialsRefused { .. } => "introspection_credentials_refused",
                    Rejection::IntrospectionResponseInvalid { .. } => "invalid_introspection_response",
                }
            }

            /// The RFC 6750 error class.
            pub fn class(&self) -> ErrorClass {
                match self {
                    $( Rejection::$variant => ErrorClass::$class, )*
                    Rejection::KeysUnavailable { .. }
                    | Rejection::ReplayStoreUnavailable { .. }
                    | Rejection::IntrospectionUnavailable { .. }
                    | Rejection::IntrospectionCredentialsRefused { .. }
                    | Rejection::IntrospectionResponseInvalid { .. } => ErrorClass::Unavailable,
                }
            }

            /// Every reason code, for documentation and exhaustive tests.
            pub const ALL_CODES: &'static [&'static str] = &[$($code,)* "keys_unavailable", "replay_store_unavailable", "introspection_unavailable", "introspection_credentials_refused", "invalid_introspection_response"];
        }
    };
}

rejections! {
    /// No `Authorization: Bearer` credentials (a token only in the query string or body counts as none).
    MissingToken => ("missing_token", NoToken, "no bearer token in the request"),
    /// More than one `Authorization` header.
    MultipleAuthorizationHeaders => ("multiple_authorization_headers", InvalidRequest, "more than one Authorization header"),
    /// `Authorization: Bearer` with an empty or syntactically invalid token (not token68).
    MalformedAuthorization => ("invalid_request", InvalidRequest, "malformed Authorization header"),
    /// The token is larger than the configured limit.
    TokenTooLarge => ("token_too_large", InvalidToken, "token is larger than allowed"),
    /// Not a compact JWS: segments, base64url, or JSON are wrong (and introspection is off).
    MalformedToken => ("malformed_token", InvalidToken, "token is not a well-formed JWT"),
    /// The introspection endpoint says the token is not active (RFC 7662 §2.2 `active: false`):
    /// unknown, expired, revoked, or issued to another resource.
    InactiveToken => ("inactive_token", InvalidToken, "token is not active"),
    /// The introspection response's `token_type` is not an access-token type (e.g. a refresh token).
    NotAnAccessToken => ("not_an_access_token", InvalidToken, "token is not an access token"),
    /// `alg` is missing, `none`, unknown, or not in the allow-list.
    DisallowedAlgorithm => ("disallowed_algorithm", InvalidToken, "token signing algorithm is not allowed"),
    /// The `alg` does not fit the key's type (`kty`) or the key's own `alg`.
    KeyAlgorithmMismatch => ("key_algorithm_mismatch", InvalidToken, "token algorithm does not match the signing key"),
    /// A `crit` header names an extension this service does not implement.
    UnsupportedCriticalHeader => ("unsupported_critical_header", InvalidToken, "token has a critical header parameter that is not supported"),
    /// `typ` is not `at+jwt` while RFC 9068 typing is required.
    WrongTokenType => ("wrong_token_type", InvalidToken, "token type is not at+jwt"),
    /// No key with this `kid` in the issuer's key set.
    UnknownKey => ("unknown_key", InvalidToken, "token signing key is unknown"),
    /// The signature does not verify.
    BadSignature => ("bad_signature", InvalidToken, "token signature is invalid"),
    /// `iss` is missing, not a string, or not a configured issuer.
    WrongIssuer => ("wrong_issuer", InvalidToken, "token issuer is not accepted"),
    /// `aud` is missing or does not contain the configured audience.
    WrongAudience => ("wrong_audience", InvalidToken, "token audience does not include this resource"),
    /// A required claim is missing or a registered claim has the wrong JSON type.
    InvalidClaims => ("invalid_claims", InvalidToken, "token claims are missing or malformed"),
    /// `exp` is in the past (beyond the leeway).
    Expired => ("expired", InvalidToken, "token has expired"),
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid => ("not_yet_valid", InvalidToken, "token is not valid yet"),
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture => ("issued_in_future", InvalidToken, "token was issued in the future"),
    /// The binding policy requires `cnf."x5t#S256"` and the token has none.
    UnboundToken => ("unbound_token", InvalidToken, "token is not bound to a client certificate"),
    /// `cnf` binds the token by a method certbound cannot verify (e.g. DPoP `jkt`) and carries no
    /// `x5t#S256` (RFC 7800 §3: a recipient that cannot confirm the key must not accept the token).
    UnsupportedBinding => ("unsupported_binding", InvalidToken, "token is bound by a confirmation method this service does not verify"),
    /// `cnf` is not an object, or `x5t#S256` is not exactly a base64url SHA-256.
    MalformedBinding => ("malformed_binding", InvalidToken, "token certificate binding is malformed"),
    /// The token is bound to a different certificate than the one this request came with.
    BindingMismatch => ("binding_mismatch", InvalidToken, "token is bound to a different client certificate"),
    /// The token is bound but the request came without a client certificate.
    MissingClientCertificate => ("missing_client_certificate", InvalidToken, "token is bound but no client certificate was presented"),
    /// The token lacks a scope the route requires.
    InsufficientScope => ("insufficient_scope", InsufficientScope, "token lacks the required scope"),
    /// A forwarded client-certificate header arrived from a peer that is not a trusted proxy.
    UntrustedForwardedCertificate => ("untrusted_forwarded_certificate", InvalidRequest, "forwarded client certificate from an untrusted peer"),
    /// A forwarded client-certificate header is duplicated, oversized, or badly encoded.
    MalformedForwardedCertificate => ("malformed_forwarded_certificate", InvalidRequest, "forwarded client certificate is malformed"),
    /// The proxy says it could not verify the client certificate and the policy requires it.
    UnverifiedForwardedCertificate => ("unverified_forwarded_certificate", InvalidToken, "client certificate was not verified by the proxy"),
    /// A DPoP-bound token (`cnf.jkt`) sent with the `Bearer` scheme (RFC 9449 §7.2).
    DpopBoundTokenAsBearer => ("dpop_bound_token_as_bearer", InvalidToken, "token is DPoP-bound and must be sent with the DPoP scheme"),
    /// `Authorization: DPoP` without a `DPoP` proof header.
    MissingDpopProof => ("missing_dpop_proof", InvalidDpopProof, "no DPoP proof in the request"),
    /// More than one `DPoP` header (RFC 9449 §4.3 check 1).
    MultipleDpopProofs => ("multiple_dpop_proofs", InvalidDpopProof, "more than one DPoP proof in the request"),
    /// Not a compact JWS, or a required claim (`jti`, `htm`, `htu`, `iat`, `ath`) missing or of the wrong type.
    MalformedDpopProof => ("malformed_dpop_proof", InvalidDpopProof, "DPoP proof is malformed"),
    /// `typ` is not `dpop+jwt`.
    WrongDpopProofType => ("wrong_dpop_proof_type", InvalidDpopProof, "DPoP proof type is not dpop+jwt"),
    /// The proof's `alg` is not in the DPoP allow-list (never `none` or HMAC).
    DisallowedDpopAlgorithm => ("disallowed_dpop_algorithm", InvalidDpopProof, "DPoP proof algorithm is not allowed"),
    /// `jwk` is missing, private, symmetric, weak, or does not fit `alg`.
    InvalidDpopKey => ("invalid_dpop_key", InvalidDpopProof, "DPoP proof key is not an acceptable public key"),
    /// The proof's signature does not verify with its `jwk`.
    BadDpopSignature => ("bad_dpop_signature", InvalidDpopProof, "DPoP proof signature is invalid"),
    /// `htm` is not this request's method.
    DpopMethodMismatch => ("dpop_method_mismatch", InvalidDpopProof, "DPoP proof is for another HTTP method"),
    /// `htu` is not this request's URI.
    DpopUriMismatch => ("dpop_uri_mismatch", InvalidDpopProof, "DPoP proof is for another URI"),
    /// `iat` is outside the acceptance window.
    DpopProofNotFresh => ("dpop_proof_not_fresh", InvalidDpopProof, "DPoP proof is too old or issued in the future"),
    /// `ath` is not the hash of the access token sent with it.
    DpopTokenHashMismatch => ("dpop_token_hash_mismatch", InvalidDpopProof, "DPoP proof is for another access token"),
    /// The proof's key is not the key the token is bound to (`cnf.jkt`).
    DpopKeyMismatch => ("dpop_key_mismatch", InvalidToken, "token is bound to a different DPoP key"),
    /// A proof with this key and `jti` was already used (RFC 9449 §11.1).
    DpopProofReplayed => ("dpop_proof_replayed", InvalidDpopProof, "DPoP proof was already used"),
    /// The proof carries no nonce, or one that is not a current server nonce.
    DpopNonceRequired => ("use_dpop_nonce", UseDpopNonce, "a fresh DPoP nonce is required"),
}

impl Rejection {
    /// The HTTP status: 401, 400, 403 or 503.
    pub fn status(&self) -> StatusCode {
        self.class().status()
    }

    /// A short human-readable description; never contains token or certificate contents.
    pub fn description(&self) -> String {
        self.to_string()
    }

    /// The `WWW-Authenticate` value for this rejection (RFC 6750 §3), or `None` for 503.
    ///
    /// `realm` is quoted and escaped. No-token rejections carry no error code (RFC 6750 §3.1).
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        match self.class() {
            ErrorClass::Unavailable => None,
            _ => Some(self.challenge(realm)),
        }
    }

    /// The challenge string, `Bearer realm="…"[, error="…", error_description="…"]`.
    pub fn challenge(&self, realm: &str) -> String {
        self.challenge_with(realm, &[])
    }

    /// The challenge with extra auth-params appended, e.g. `scope` for `insufficient_scope`
    /// (RFC 6750 §3) or `resource_metadata` (RFC 9728 §5.1). Values are quoted and escaped.
    pub fn challenge_with(&self, realm: &str, params: &[(&str, &str)]) -> String {
        self.scheme_challenge("Bearer", realm, None, params)
    }

    /// Every `WWW-Authenticate` challenge for this rejection (none for 503), when the service
    /// also accepts DPoP with the proof algorithms `dpop_algs` (space-separated; `None` when it
    /// does not) and the request used `scheme` (`None`: no credentials at all).
    ///
    /// - no credentials: a `Bearer` challenge, and a `DPoP` one with `algs` (RFC 9449 §7.1);
    /// - a DPoP proof failure (`invalid_dpop_proof`, `use_dpop_nonce`): a `DPoP` challenge;
    /// - anything else: a challenge in the scheme the request used.
    ///
    /// ```
    /// use certbound_core::{Rejection, Scheme};
    /// let both = Rejection::MissingToken.challenges(None, "api", Some("ES256 EdDSA"), &[]);
    /// assert_eq!(both, [r#"Bearer realm="api""#, r#"DPoP realm="api", algs="ES256 EdDSA""#]);
    /// let proof = Rejection::DpopUriMismatch.challenges(Some(Scheme::Dpop), "api", Some("ES256"), &[]);
    /// assert!(proof[0].starts_with(r#"DPoP realm="api", algs="ES256", error="invalid_dpop_proof""#));
    /// ```
    pub fn challenges(
        &self,
        scheme: Option<crate::Scheme>,
        realm: &str,
        dpop_algs: Option<&str>,
        params: &[(&str, &str)],
    ) -> Vec<String> {
        use crate::Scheme;
        let dpop = |r: &Rejection| r.scheme_challenge("DPoP", realm, dpop_algs, params);
        match (self.class(), scheme, dpop_algs) {
            (ErrorClass::Unavailable, _, _) => Vec::new(),
            (ErrorClass::NoToken, _, Some(_)) => {
                vec![self.challenge_with(realm, params), dpop(self)]
            }
            (ErrorClass::InvalidDpopProof | ErrorClass::UseDpopNonce, _, _)
            | (_, Some(Scheme::Dpop), _) => vec![dpop(self)],
            _ => vec![self.challenge_with(realm, params)],
        }
    }

    fn scheme_challenge(
        &self,
        scheme: &str,
        realm: &str,
        algs: Option<&str>,
        params: &[(&str, &str)],
    ) -> String {
        let mut out = String::with_capacity(128);
        out.push_str(scheme);
        out.push_str(" realm=");
        push_quoted(&mut out, realm);
        if let (Some(algs), "DPoP") = (algs, scheme) {
            out.push_str(", algs=");
            push_quoted(&mut out, algs);
        }
        if let Some(error) = self.class().error_code() {
            out.push_str(", error=\"");
            out.push_str(error);
            out.push_str("\", error_description=");
            push_quoted(&mut out, &self.description());
        }
        for (name, value) in params {
            out.push_str(", ");
            out.push_str(name);
            out.push('=');
            push_quoted(&mut out, value);
        }
        out
    }

    /// `Retry-After` seconds for 503 answers.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Rejection::KeysUnavailable { retry_after_secs }
            | Rejection::ReplayStoreUnavailable { retry_after_secs }
            | Rejection::IntrospectionUnavailable { retry_after_secs }
            | Rejection::IntrospectionCredentialsRefused { retry_after_secs }
            | Rejection::IntrospectionResponseInvalid { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }
}

/// Appends `value` as an RFC 7230 quoted-string; characters that cannot appear in a header
/// (controls, non-ASCII) are dropped.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = HashSet::new();
        for code in Rejection::ALL_CODES {
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn classes_map_to_rfc6750() {
        assert_eq!(Rejection::MissingToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            Rejection::MultipleAuthorizationHeaders.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Rejection::MalformedAuthorization.challenge("r"),
            r#"Bearer realm="r", error="invalid_request", error_description="malformed Authorization header""#
        );
        assert_eq!(
            Rejection::Expired.class().error_code(),
            Some("invalid_token")
        );
        assert_eq!(Rejection::InsufficientScope.status(), StatusCode::FORBIDDEN);
        let r = Rejection::KeysUnavailable {
            retry_after_secs: 5,
        };
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.www_authenticate("r"), None);
        assert_eq!(r.retry_after_secs(), Some(5));
    }

    #[test]
    fn extra_params() {
        assert_eq!(
            Rejection::InsufficientScope.challenge_with("r", &[("scope", "read write")]),
            r#"Bearer realm="r", error="insufficient_scope", error_description="token lacks the required scope", scope="read write""#
        );
        assert_eq!(
            Rejection::MissingToken.challenge_with(
                "r",
                &[(
                    "resource_metadata",
                    "https://a/.well-known/oauth-protected-resource"
                )]
            ),
            r#"Bearer realm="r", resource_metadata="https://a/.well-known/oauth-protected-resource""#
        );
    }

    #[test]
    fn realm_is_escaped() {
        assert_eq!(
            Rejection::MissingToken.challenge("a\"b\\c\nd"),
            r#"Bearer realm="a\"b\\cd""#
        );
    }
}
