//! The whole decision for one request, sans-IO and resumable (in the style of quinn-proto and
//! rustls): given the request's credentials, the thumbprint of the certificate it presented and
//! `now`, the [`Verifier`] answers [`Step::Accept`], [`Step::Reject`] — or [`Step::NeedKey`] when
//! it needs a verification key, which the driver (the tower layer, the CLI) fetches however it
//! likes and hands back with [`NeedKey::resume`].
//!
//! Issuer selection, header and claim checks, the certificate binding, and the rules for
//! re-validating a token from a verified-token cache all live here; the drivers keep only I/O.
//!
//! ```
//! use std::sync::Arc;
//! use certbound_core::{
//!     Algorithm, BindingPolicy, Credentials, KeySet, Rejection, Step, Thumbprint, TokenPolicy,
//!     VerificationKey, Verifier,
//! };
//! # use base64::Engine as _;
//! # let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
//! # let secret = b"a shared secret that is long enough for HS256 tests";
//! # let sign = |header: serde_json::Value, claims: serde_json::Value| {
//! #     let input = format!("{}.{}", b64(header), b64(claims));
//! #     let key = jsonwebtoken::EncodingKey::from_secret(secret);
//! #     let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
//! #     format!("{input}.{sig}")
//! # };
//! let now = 1_800_000_000;
//! let cert = Thumbprint::of_der(b"the client's leaf certificate DER");
//! let policy = TokenPolicy::new("https://issuer.example/", "https://api.example")
//!     .algorithms([Algorithm::HS256]); // a shared secret keeps this example short
//! let verifier = Verifier::new(vec![policy], BindingPolicy::Required).unwrap();
//! let key = Arc::new(VerificationKey::from_shared_secret(Some("k1".into()), secret));
//!
//! let token = sign(
//!     serde_json::json!({"alg": "HS256", "kid": "k1"}),
//!     serde_json::json!({"iss": "https://issuer.example/", "aud": "https://api.example",
//!                        "exp": now + 300, "cnf": {"x5t#S256": cert.to_string()}}),
//! );
//! let credentials = Credentials::bearer(&token);
//!
//! // The verifier says which key it needs; the driver looks it up (or fetches it) and resumes.
//! let Step::NeedKey(need) = verifier.verify(credentials, Some(cert), now) else { panic!() };
//! assert_eq!((need.issuer(), need.kid(), need.alg()), ("https://issuer.example/", Some("k1"), Algorithm::HS256));
//! let accepted = need.resume(Ok(Arc::clone(&key))).unwrap();
//! assert_eq!(accepted.verified().claims().issuer(), "https://issuer.example/");
//!
//! // The same token from another certificate: 401 invalid_token.
//! let other = Thumbprint::of_der(b"someone else's certificate");
//! let Step::NeedKey(need) = verifier.verify(credentials, Some(other), now) else { panic!() };
//! assert_eq!(need.resume(Ok(key)).unwrap_err(), Rejection::BindingMismatch);
//! ```

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

use crate::bearer::{parse_scheme, Scheme};
use crate::confirmation::{Confirmation, Presented};
use crate::dpop::{DpopPolicy, NonceKeys, ProofRequest, ReplayCheck, VerifiedProof};
use crate::introspection::{Introspected, IntrospectionPolicy, IntrospectionResponse};
use crate::{
    Algorithm, BindingPolicy, Rejection, Thumbprint, TokenPolicy, UnverifiedToken, VerificationKey,
    VerifiedClaims, DEFAULT_MAX_TOKEN_LEN,
};

/// The decision for one request: resumable and sans-IO — see the crate documentation.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuers: Vec<TokenPolicy>,
    binding: BindingPolicy,
    max_token_len: usize,
    dpop: Option<DpopConfig>,
    introspection: Option<IntrospectionPolicy>,
}

/// A [`Verifier`] needs at least one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no issuer configured: a verifier needs at least one TokenPolicy")]
pub struct NoIssuer;

/// The credentials a request carries: the access token of its one `Authorization` header
/// (`Bearer` or `DPoP` scheme), its `DPoP` proof header(s), and — for DPoP — the method and
/// absolute URI the proof must be for.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'r> {
    scheme: Scheme,
    token: &'r str,
    proof: Proof<'r>,
    target: Option<ProofRequest<'r>>,
}

#[derive(Debug, Clone, Copy)]
enum Proof<'r> {
    None,
    One(&'r str),
    Many,
    /// One header whose value is not visible ASCII: no compact JWS can be.
    Malformed,
}

impl<'r> Credentials<'r> {
    /// The token of the request's one `Authorization: Bearer` or `Authorization: DPoP` header,
    /// at most `max_len` bytes (see [`bearer_token`](crate::bearer_token)), and its `DPoP` header(s).
    pub fn from_headers(headers: &'r HeaderMap, max_len: usize) -> Result<Self, Rejection> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or(Rejection::MissingToken)?;
        if values.next().is_some() {
            return Err(Rejection::MultipleAuthorizationHeaders);
        }
        let (scheme, token) = parse_scheme(value.as_bytes(), max_len)?;
        // A Bearer request's proof is never looked at, so it is not even looked up.
        let proof = match scheme {
            Scheme::Bearer => Proof::None,
            Scheme::Dpop => {
                static DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
                let mut proofs = headers.get_all(&DPOP).iter();
                match (proofs.next(), proofs.next()) {
                    (None, _) => Proof::None,
                    (Some(one), None) => one.to_str().map_or(Proof::Malformed, Proof::One),
                    (Some(_), Some(_)) => Proof::Many,
                }
            }
        };
        Ok(Self {
            scheme,
            token,
            proof,
            target: None,
        })
    }

    /// A token given directly with the `Bearer` scheme (a CLI, a test, a non-HTTP transport).
    pub fn bearer(token: &'r str) -> Self {
        Self {
            scheme: Scheme::Bearer,
            token,
            proof: Proof::None,
            target: None,
        }
    }

    /// A token given directly with the `DPoP` scheme and its proof.
    pub fn dpop(token: &'r str, proof: &'r str) -> Self {
        Self {
            scheme: Scheme::Dpop,
            token,
            proof: Proof::One(proof),
            target: None,
        }
    }

    /// The method (`GET`) and absolute URI the request was sent to, which a DPoP proof's `htm`
    /// and `htu` must name. The driver builds the URI from its public origin (see
    /// [`request_uri`](crate::request_uri)); without it, a DPoP proof cannot be accepted.
    pub fn for_request(mut self, method: &'r str, uri: &'r str) -> Self {
        self.target = Some(ProofRequest::new(method, uri));
        self
    }

    /// The access token, as sent.
    pub fn token(&self) -> &'r str {
        self.token
    }

    /// The scheme the token was sent with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

/// [`Credentials`] that own their strings, for a decision that continues after I/O.
#[derive(Debug, Clone)]
pub struct OwnedCredentials {
    scheme: Scheme,
    token: String,
    proof: OwnedProof,
    target: Option<(String, String)>,
}

#[derive(Debug, Clone)]
enum OwnedProof {
    None,
    One(String),
    Many,
    Malformed,
}

impl OwnedCredentials {
    /// Borrows them back.
    pub fn as_credentials(&self) -> Credentials<'_> {
        Credentials {
            scheme: self.scheme,
            token: &self.token,
            proof: match &self.proof {
                OwnedProof::None => Proof::None,
                OwnedProof::One(proof) => Proof::One(proof),
                OwnedProof::Many => Proof::Many,
                OwnedProof::Malformed => Proof::Malformed,
            },
            target: self
                .target
                .as_ref()
                .map(|(method, uri)| ProofRequest::new(method, uri)),
        }
    }
}

impl Credentials<'_> {
    /// A copy that owns its strings.
    pub fn to_owned(&self) -> OwnedCredentials {
        OwnedCredentials {
            scheme: self.scheme,
            token: self.token.to_owned(),
            proof: match self.proof {
                Proof::None => OwnedProof::None,
                Proof::One(proof) => OwnedProof::One(proof.to_owned()),
                Proof::Many => OwnedProof::Many,
                Proof::Malformed => OwnedProof::Malformed,
            },
            target: self
                .target
                .map(|t| (t.method().to_owned(), t.uri().to_owned())),
        }
    }
}

/// DPoP settings of a [`Verifier`].
#[derive(Debug, Clone)]
struct DpopConfig {
    policy: DpopPolicy,
    nonces: Option<NonceKeys>,
}

/// A token whose signature and claims were verified: what an accepted request carries and what
/// a verified-token cache keeps.
#[derive(Clone)]
pub struct Verified {
    claims: Arc<VerifiedClaims>,
    /// `None` for an introspected token (its claims came from the issuer's endpoint).
    key: Option<Arc<VerificationKey>>,
    issuer: usize,
}

impl Verified {
    /// The verified claims.
    pub fn claims(&self) -> &Arc<VerifiedClaims> {
        &self.claims
    }

    /// The verified claims, without the key (no extra reference counting).
    pub fn into_claims(self) -> Arc<VerifiedClaims> {
        self.claims
    }

    /// The key that verified the signature (`None` for an introspected token). A cached token
    /// stays valid only while the issuer's key source still returns this very key for its `kid`.
    pub fn key(&self) -> Option<&Arc<VerificationKey>> {
        self.key.as_ref()
    }

    /// Which configured issuer (index into [`Verifier::issuers`]) accepted the token.
    pub fn issuer_index(&self) -> usize {
        self.issuer
    }
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("issuer", &self.claims.issuer())
            .field("kid", &self.claims.kid())
            .field("alg", &self.claims.alg())
            .finish_non_exhaustive()
    }
}

/// An accepted request: the verified token and the certificate thumbprint it was bound to.
#[derive(Debug, Clone)]
pub struct Accepted {
    verified: Verified,
    presented: Option<Thumbprint>,
    fresh: bool,
    replay: Option<ReplayCheck>,
    nonce_issued_at: Option<u64>,
}

impl Accepted {
    /// The verified token.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    /// The thumbprint of the certificate this request presented.
    pub fn presented(&self) -> Option<&Thumbprint> {
        self.presented.as_ref()
    }

    /// Whether the signature was verified just now (as opposed to a cache hit re-checked): a
    /// driver with a verified-token cache stores [`verified`](Self::verified) then.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// For a DPoP request: the proof's replay check, which the driver must run (and honour with
    /// [`ReplayCheck::verdict`]) before it lets the request through.
    pub fn replay_check(&self) -> Option<&ReplayCheck> {
        self.replay.as_ref()
    }

    /// When the DPoP nonce this request carried was issued (nonces on), so the driver can send a
    /// fresh one before it expires.
    pub fn nonce_issued_at(&self) -> Option<u64> {
        self.nonce_issued_at
    }

    /// Splits into the verified token and the presented thumbprint.
    pub fn into_parts(self) -> (Verified, Option<Thumbprint>) {
        (self.verified, self.presented)
    }
}

/// One step of a verification.
#[derive(Debug)]
pub enum Step<'r> {
    /// Accepted.
    Accept(Accepted),
    /// Refused, with the RFC 6750 answer in the [`Rejection`].
    Reject(Rejection),
    /// A verification key is needed; look it up and [`resume`](NeedKey::resume).
    NeedKey(NeedKey<'r>),
    /// The token is opaque (or every token is introspected): POST it to the issuer's
    /// introspection endpoint, [`check_response`](NeedIntrospection::check_response) and
    /// [`resume`](NeedIntrospection::resume) — or resume with cached [`Introspected`] claims.
    NeedIntrospection(NeedIntrospection<'r>),
}

/// The verifier needs the issuer's introspection response for [`token`](Self::token); see
/// [`introspection`](crate::introspection).
#[derive(Debug)]
pub struct NeedIntrospection<'r> {
    verifier: &'r Verifier,
    token: &'r str,
    issuer: usize,
    presented: Option<Thumbprint>,
    now: u64,
    scheme: Scheme,
    proof: Option<Box<(VerifiedProof, Option<u64>)>>,
    /// A JWT's own `cnf` (introspected with `introspect_all`): the issuer put it there, so the
    /// response must confirm it.
    token_binding: Option<Box<Confirmation>>,
}

impl<'r> NeedIntrospection<'r> {
    /// The token to introspect, as sent. Never log it.
    pub fn token(&self) -> &'r str {
        self.token
    }

    /// The introspecting issuer's index in [`Verifier::issuers`].
    pub fn issuer_index(&self) -> usize {
        self.issuer
    }

    /// The time of this decision.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Checks the endpoint's raw answer (see [`Verifier::check_introspection_response`]).
    pub fn check_response(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<IntrospectionResponse, Rejection> {
        self.verifier
            .check_introspection_response(content_type, body, self.now)
    }

    /// Continues with the token's introspected claims (fresh or cached) or why there are none:
    /// the lifetime is checked against now, and the binding (`cnf`) against this request's
    /// certificate and DPoP proof — never cached as a verdict.
    pub fn resume(
        self,
        introspected: Result<Introspected, Rejection>,
    ) -> Result<Accepted, Rejection> {
        let introspected = introspected?;
        // A JWT bound by its own `cnf` stays bound: a response without that binding (or with
        // another) does not confirm this token.
        if let Some(bound) = &self.token_binding {
            if **bound != *introspected.claims.confirmation() {
                return Err(Rejection::BindingMismatch);
            }
        }
        let policy = self
            .verifier
            .issuers
            .get(introspected.issuer)
            .ok_or(Rejection::WrongIssuer)?;
        introspected
            .claims
            .check_time(self.now, policy.leeway_secs())?;
        let verified = Verified {
            claims: introspected.claims,
            key: None,
            issuer: introspected.issuer,
        };
        self.verifier.bind(
            verified,
            self.presented,
            false,
            self.scheme,
            self.proof.map(|p| *p),
        )
    }
}

/// The verifier needs the key of `issuer` for `kid` and `alg`.
///
/// The driver looks it up in its key source (refreshing it when the `kid` is unknown) and calls
/// [`resume`](Self::resume) with the key or the lookup's rejection (an unknown key, keys
/// unavailable).
#[derive(Debug)]
pub struct NeedKey<'r> {
    verifier: &'r Verifier,
    /// The token as sent; parsed only when the cache cannot vouch for it.
    raw: &'r str,
    // Boxed: only a cache miss (which verifies a signature anyway) has one, and a small NeedKey
    // keeps the cache-hit path's moves cheap.
    token: Option<Box<UnverifiedToken<'r>>>,
    issuer: usize,
    alg: Algorithm,
    presented: Option<Thumbprint>,
    now: u64,
    cached: Option<Verified>,
    scheme: Scheme,
    proof: Option<Box<(VerifiedProof, Option<u64>)>>,
}

impl NeedKey<'_> {
    /// The issuer whose key is needed.
    pub fn issuer(&self) -> &str {
        self.verifier
            .issuers
            .get(self.issuer)
            .map_or("", TokenPolicy::issuer)
    }

    /// The issuer's index in [`Verifier::issuers`] (the driver's key sources are kept in the
    /// same order).
    pub fn issuer_index(&self) -> usize {
        self.issuer
    }

    /// The token's `kid`.
    pub fn kid(&self) -> Option<&str> {
        match (&self.token, &self.cached) {
            (Some(token), _) => token.header().kid(),
            (None, Some(hit)) => hit.claims.kid(),
            (None, None) => None,
        }
    }

    /// The algorithm the signature must verify with (checked against the allow-list).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether `key` lets a cached token skip its signature check: it is the very key that
    /// verified the token (still in the issuer's current set).
    pub fn uses_cached(&self, key: &Arc<VerificationKey>) -> bool {
        self.cached
            .as_ref()
            .and_then(|hit| hit.key.as_ref())
            .is_some_and(|cached| Arc::ptr_eq(cached, key))
    }

    /// Continues with the key the driver found, or the rejection its lookup gave.
    ///
    /// For a cached token, the key must be the very key that verified it (it is still in the
    /// issuer's current set): then only the lifetime and the binding are checked again.
    /// Otherwise the signature is verified with `key` from scratch.
    pub fn resume(
        self,
        key: Result<Arc<VerificationKey>, Rejection>,
    ) -> Result<Accepted, Rejection> {
        let key = key?;
        let verifier = self.verifier;
        let policy = verifier
            .issuers
            .get(self.issuer)
            .ok_or(Rejection::WrongIssuer)?;
        let uses_cached = self.uses_cached(&key);
        let (verified, fresh) = match (self.cached, uses_cached) {
            (Some(hit), true) => {
                hit.claims.check_time(self.now, policy.leeway_secs())?;
                (hit, false)
            }
            _ => {
                // Not vouched for by the cache (or its key changed): the whole check.
                let token = match self.token {
                    Some(token) => *token,
                    None => UnverifiedToken::parse(self.raw)?,
                };
                let alg = policy.check_header(token.header())?;
                let claims = policy.verify(token, alg, &key, self.now)?;
                let verified = Verified {
                    claims: Arc::new(claims),
                    key: Some(key),
                    issuer: self.issuer,
                };
                (verified, true)
            }
        };
        verifier.bind(
            verified,
            self.presented,
            fresh,
            self.scheme,
            self.proof.map(|p| *p),
        )
    }
}

impl Verifier {
    /// A verifier for tokens of these issuers (at least one), with this binding policy.
    ///
    /// With one issuer every token goes to it; with several, the token's unverified `iss`
    /// selects the policy (and is verified again by it).
    pub fn new(issuers: Vec<TokenPolicy>, binding: BindingPolicy) -> Result<Self, NoIssuer> {
        if issuers.is_empty() {
            return Err(NoIssuer);
        }
        Ok(Self {
            issuers,
            binding,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            dpop: None,
            introspection: None,
        })
    }

    /// Decide opaque tokens (and, with [`IntrospectionPolicy::introspect_all`], every token)
    /// from the issuer's introspection endpoint (RFC 7662): see
    /// [`introspection`](crate::introspection).
    pub fn introspection(mut self, policy: IntrospectionPolicy) -> Self {
        self.introspection = Some(policy);
        self
    }

    /// The introspection policy, when opaque tokens are introspected.
    pub fn introspection_policy(&self) -> Option<&IntrospectionPolicy> {
        self.introspection.as_ref()
    }

    /// Largest accepted token, in bytes (default [`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// The configured token-length limit.
    pub fn token_len_limit(&self) -> usize {
        self.max_token_len
    }

    /// The issuers' policies, in configuration order.
    pub fn issuers(&self) -> &[TokenPolicy] {
        &self.issuers
    }

    /// The binding policy.
    pub fn binding(&self) -> BindingPolicy {
        self.binding
    }

    /// The request's credentials, or the rejection for missing or malformed ones.
    pub fn credentials<'r>(&self, headers: &'r HeaderMap) -> Result<Credentials<'r>, Rejection> {
        Credentials::from_headers(headers, self.max_token_len)
    }

    /// Starts the decision for `credentials` presented with the certificate `presented` at
    /// `now` (Unix seconds).
    pub fn verify<'r>(
        &'r self,
        credentials: Credentials<'r>,
        presented: Option<Thumbprint>,
        now: u64,
    ) -> Step<'r> {
        self.start(credentials, presented, now, None)
    }

    /// Like [`verify`](Self::verify) for a token found in a verified-token cache: the lifetime,
    /// the key (still the issuer's current one) and the binding are checked again; the
    /// signature only if the key changed. `cached` must be what an earlier acceptance of the
    /// very same token produced.
    pub fn revalidate<'r>(
        &'r self,
        credentials: Credentials<'r>,
        cached: Verified,
        presented: Option<Thumbprint>,
        now: u64,
    ) -> Step<'r> {
        self.start(credentials, presented, now, Some(cached))
    }

    fn start<'r>(
        &'r self,
        credentials: Credentials<'r>,
        presented: Option<Thumbprint>,
        now: u64,
        cached: Option<Verified>,
    ) -> Step<'r> {
        let step = || -> Result<Step<'r>, Rejection> {
            if credentials.token.len() > self.max_token_len {
                return Err(Rejection::TokenTooLarge);
            }
            let proof = self.check_proof(&credentials, now)?;
            // Parsed here when introspection is on: a token with the shape of a compact JWS
            // that does not parse as one (a PASETO-like `v4.local.…`) is opaque too.
            let mut parsed = None;
            if let (None, Some(introspection)) = (&cached, &self.introspection) {
                let opaque = introspection.wants(credentials.token)
                    || match UnverifiedToken::parse(credentials.token) {
                        Ok(token) => {
                            parsed = Some(token);
                            false
                        }
                        Err(Rejection::MalformedToken) => true,
                        Err(rejection) => return Err(rejection),
                    };
                if opaque {
                    let token_binding = token_binding(credentials.token)?;
                    return Ok(Step::NeedIntrospection(NeedIntrospection {
                        verifier: self,
                        token: credentials.token,
                        issuer: introspection.issuer(),
                        presented,
                        now,
                        scheme: credentials.scheme,
                        proof: proof.map(Box::new),
                        token_binding,
                    }));
                }
            }
            // A cache hit is keyed by the token's exact bytes: its issuer, kid and alg are the
            // ones this token had when it was verified, so it is not parsed again.
            let (token, issuer, alg) = match &cached {
                Some(hit) => (
                    None,
                    hit.issuer,
                    hit.claims.alg().ok_or(Rejection::MalformedToken)?,
                ),
                None => {
                    let token = match parsed {
                        Some(token) => token,
                        None => UnverifiedToken::parse(credentials.token)?,
                    };
                    let issuer = self.select_issuer(&token)?;
                    let policy = self.issuers.get(issuer).ok_or(Rejection::WrongIssuer)?;
                    let alg = policy.check_header(token.header())?;
                    (Some(Box::new(token)), issuer, alg)
                }
            };
            Ok(Step::NeedKey(NeedKey {
                verifier: self,
                raw: credentials.token,
                token,
                issuer,
                alg,
                presented,
                now,
                cached,
                scheme: credentials.scheme,
                proof: proof.map(Box::new),
            }))
        };
        match step() {
            Ok(step) => step,
            Err(rejection) => Step::Reject(rejection),
        }
    }

    /// With one issuer, every token goes to it (and a foreign `iss` fails after the signature
    /// check). With several, the unverified `iss` only selects the configuration; it is verified
    /// again by that issuer's policy.
    fn select_issuer(&self, token: &UnverifiedToken<'_>) -> Result<usize, Rejection> {
        if self.issuers.len() == 1 {
            return Ok(0);
        }
        let iss = token.unverified_issuer().ok_or(Rejection::WrongIssuer)?;
        self.issuers
            .iter()
            .position(|p| p.issuer() == iss)
            .ok_or(Rejection::WrongIssuer)
    }

    /// RFC 9449 §4.3 for a `DPoP` request (before the token is looked at), and the nonce when
    /// nonces are on. `None` for a `Bearer` request (a stray `DPoP` header is ignored).
    fn check_proof(
        &self,
        credentials: &Credentials<'_>,
        now: u64,
    ) -> Result<Option<(VerifiedProof, Option<u64>)>, Rejection> {
        if credentials.scheme == Scheme::Bearer {
            return Ok(None);
        }
        // A DPoP-scheme request to a service that does not accept DPoP has no usable credentials.
        let dpop = self.dpop.as_ref().ok_or(Rejection::MissingToken)?;
        let proof = match credentials.proof {
            Proof::None => return Err(Rejection::MissingDpopProof),
            Proof::Many => return Err(Rejection::MultipleDpopProofs),
            Proof::Malformed => return Err(Rejection::MalformedDpopProof),
            Proof::One(proof) => proof,
        };
        let target = credentials.target.ok_or(Rejection::DpopUriMismatch)?;
        let verified = dpop
            .policy
            .verify_proof(proof, credentials.token, &target, now)?;
        let nonce_issued_at = match &dpop.nonces {
            None => None,
            Some(nonces) => Some(
                verified
                    .nonce()
                    .and_then(|nonce| nonces.issued_at(nonce, now))
                    .ok_or(Rejection::DpopNonceRequired)?,
            ),
        };
        Ok(Some((verified, nonce_issued_at)))
    }

    /// The binding, checked per request (never cached as a verdict), and the replay check a
    /// DPoP proof still needs.
    fn bind(
        &self,
        verified: Verified,
        presented: Option<Thumbprint>,
        fresh: bool,
        scheme: Scheme,
        proof: Option<(VerifiedProof, Option<u64>)>,
    ) -> Result<Accepted, Rejection> {
        let mut against = Presented::certificate(presented.as_ref()).with_scheme(scheme);
        if let Some((proof, _)) = &proof {
            against = against.with_dpop_key(proof.jkt());
        }
        verified
            .claims
            .confirmation()
            .check(self.binding, against)?;
        let (replay, nonce_issued_at) = match (&proof, &self.dpop) {
            (Some((proof, issued)), Some(dpop)) => {
                (Some(ReplayCheck::new(proof, &dpop.policy)), *issued)
            }
            _ => (None, None),
        };
        Ok(Accepted {
            verified,
            presented,
            fresh,
            replay,
            nonce_issued_at,
        })
    }

    /// Also accept DPoP-bound tokens (`Authorization: DPoP` + a proof), checked with `policy`.
    pub fn dpop(mut self, policy: DpopPolicy) -> Self {
        let nonces = self.dpop.take().and_then(|d| d.nonces);
        self.dpop = Some(DpopConfig { policy, nonces });
        self
    }

    /// Require a server nonce in every DPoP proof (RFC 9449 §8), sealed with `keys`. Needs
    /// [`dpop`](Self::dpop) (a default policy is assumed otherwise).
    pub fn dpop_nonces(mut self, keys: NonceKeys) -> Self {
        let policy = self.dpop.take().map(|d| d.policy).unwrap_or_default();
        self.dpop = Some(DpopConfig {
            policy,
            nonces: Some(keys),
        });
        self
    }

    /// The DPoP policy, when DPoP is accepted.
    pub fn dpop_policy(&self) -> Option<&DpopPolicy> {
        self.dpop.as_ref().map(|d| &d.policy)
    }

    /// The DPoP nonce keys, when nonces are required.
    pub fn dpop_nonce_keys(&self) -> Option<&NonceKeys> {
        self.dpop.as_ref().and_then(|d| d.nonces.as_ref())
    }
}

/// The `cnf` of a token introspected although it is a compact JWS (`introspect_all`), when it
/// names a binding. Its signature is not checked here, and need not be: the bytes are the
/// token the issuer vouches for (a `cnf` added by anyone else makes a token the issuer does not
/// know), and it only ever adds a constraint. Anything that does not parse as a JWS is opaque.
fn token_binding(token: &str) -> Result<Option<Box<Confirmation>>, Rejection> {
    if !crate::introspection::looks_like_jws(token) {
        return Ok(None);
    }
    let Ok(parsed) = UnverifiedToken::parse(token) else {
        return Ok(None);
    };
    let binding = Confirmation::from_cnf(parsed.unverified_claims().get("cnf"))?;
    Ok(binding.is_bound().then(|| Box::new(binding)))
}
