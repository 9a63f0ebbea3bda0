//! Opaque access tokens, decided from the issuer's token introspection response (RFC 7662,
//! and RFC 9701 signed responses): every rule about the response lives here, sans-IO.
//!
//! With an [`IntrospectionPolicy`] on the [`Verifier`](crate::Verifier), a token that is not a
//! compact JWS (not three dot-separated segments, or three that do not parse as one, like a
//! PASETO `v4.local.…`) — or every token, with
//! [`introspect_all`](IntrospectionPolicy::introspect_all) — makes the verifier answer
//! [`Step::NeedIntrospection`](crate::Step::NeedIntrospection). The driver POSTs the token to
//! the endpoint and hands back the raw response (content type and body) to
//! [`check_response`](crate::NeedIntrospection::check_response), or a typed
//! [`IntrospectionFailure`]. The checked response is an [`Introspected`] — the token's claims,
//! what a cache keeps — and [`resume`](crate::NeedIntrospection::resume) checks its lifetime and
//! its binding (`cnf`, the same [`Confirmation`](crate::Confirmation) as a JWT's) against *this*
//! request, every time. A JWT introspected with `introspect_all` keeps its own `cnf`: a response
//! that does not carry the same binding is [`Rejection::BindingMismatch`].
//!
//! ```
//! use certbound_core::{
//!     BindingPolicy, Credentials, IntrospectionPolicy, IntrospectionResponse, Rejection, Step,
//!     Thumbprint, TokenPolicy, Verifier,
//! };
//!
//! let now = 1_800_000_000;
//! let verifier = Verifier::new(
//!     vec![TokenPolicy::new("https://issuer.example/", "https://api.example")],
//!     BindingPolicy::Required,
//! )
//! .unwrap()
//! .introspection(IntrospectionPolicy::default());
//! let cert = Thumbprint::of_der(b"the client's certificate");
//!
//! let Step::NeedIntrospection(need) =
//!     verifier.verify(Credentials::bearer("2YotnFZFEjr1zCsicMWpAA"), Some(cert), now)
//! else { panic!() };
//! // The driver POSTs need.token() to the endpoint; this is what came back.
//! let body = serde_json::json!({
//!     "active": true, "iss": "https://issuer.example/", "aud": "https://api.example",
//!     "exp": now + 300, "sub": "alice", "cnf": {"x5t#S256": cert.to_string()},
//! })
//! .to_string();
//! let IntrospectionResponse::Checked(introspected) =
//!     need.check_response(Some("application/json"), body.as_bytes()).unwrap()
//! else { panic!() };
//! let accepted = need.resume(Ok(introspected.clone())).unwrap();
//! assert_eq!(accepted.verified().claims().subject(), Some("alice"));
//!
//! // The same introspected claims (from a cache) for a request with another certificate.
//! let other = Thumbprint::of_der(b"a thief's certificate");
//! let Step::NeedIntrospection(need) =
//!     verifier.verify(Credentials::bearer("2YotnFZFEjr1zCsicMWpAA"), Some(other), now)
//! else { panic!() };
//! assert_eq!(need.resume(Ok(introspected)).unwrap_err(), Rejection::BindingMismatch);
//! ```

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::jose::parse_object;
use crate::{Rejection, TokenPolicy, VerificationKey, VerifiedClaims};

/// The media type of an RFC 9701 signed introspection response.
pub const INTROSPECTION_JWT_CONTENT_TYPE: &str = "application/token-introspection+jwt";

/// `Retry-After` for a 503 caused by the introspection endpoint (unavailable, or an invalid
/// response), in seconds.
pub const INTROSPECTION_RETRY_AFTER_SECS: u32 = 5;

/// `Retry-After` when the endpoint refused this server's own credentials, in seconds: a
/// configuration mistake is not fixed within seconds.
pub const CREDENTIALS_REFUSED_RETRY_AFTER_SECS: u32 = 30;

/// How old (by its `iat`, beyond the leeway) an RFC 9701 signed response may be: it was just
/// fetched, so an older one is a replay or a broken clock.
pub const SIGNED_RESPONSE_MAX_AGE_SECS: u64 = 60;

/// How opaque tokens are introspected (RFC 7662).
#[derive(Debug, Clone, Default)]
pub struct IntrospectionPolicy {
    issuer: usize,
    require_audience: bool,
    introspect_all: bool,
    require_signed: bool,
    response_audience: Option<String>,
}

impl IntrospectionPolicy {
    /// Which configured issuer (index into [`Verifier::issuers`](crate::Verifier::issuers))
    /// introspects (default 0, the main issuer): its issuer identifier, audiences, leeway and
    /// algorithm allow-list apply to the responses.
    pub fn issuer_index(mut self, index: usize) -> Self {
        self.issuer = index;
        self
    }

    /// Refuse responses without `aud` (default: `aud` must contain the audience only when
    /// present — RFC 7662 makes it optional).
    pub fn require_audience(mut self, require: bool) -> Self {
        self.require_audience = require;
        self
    }

    /// Introspect JWTs too (e.g. to see revocation), not only opaque tokens.
    pub fn introspect_all(mut self, all: bool) -> Self {
        self.introspect_all = all;
        self
    }

    /// Accept only RFC 9701 signed responses (`application/token-introspection+jwt`).
    pub fn require_signed_response(mut self, require: bool) -> Self {
        self.require_signed = require;
        self
    }

    /// The `aud` an RFC 9701 signed response must contain: this resource server's client id at
    /// the issuer (default: not checked).
    pub fn response_audience(mut self, audience: impl Into<String>) -> Self {
        self.response_audience = Some(audience.into());
        self
    }

    /// The introspecting issuer's index.
    pub fn issuer(&self) -> usize {
        self.issuer
    }

    /// Whether JWTs are introspected too.
    pub fn introspects_all(&self) -> bool {
        self.introspect_all
    }

    /// Whether this token goes to the introspection endpoint by its shape alone: every token
    /// with [`introspect_all`](Self::introspect_all), otherwise those that are not shaped like a
    /// compact JWS. (The verifier also introspects a JWS-shaped token that does not parse as
    /// one.)
    pub fn wants(&self, token: &str) -> bool {
        self.introspect_all || !looks_like_jws(token)
    }
}

/// Whether `token` has the shape of a compact JWS (three dot-separated segments). Anything
/// else — a random reference string, a JWE — is opaque to this service.
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Whether a `token_type` names an access token: `Bearer` and `DPoP` (RFC 6749 §7.1 types,
/// what RFC 7662 §2.2 returns), `access_token`, or the RFC 8693 URI — case-insensitively.
/// `refresh_token`, `id_token` and anything else are not.
pub fn is_access_token_type(token_type: &str) -> bool {
    [
        "bearer",
        "dpop",
        "access_token",
        "urn:ietf:params:oauth:token-type:access_token",
    ]
    .iter()
    .any(|t| token_type.eq_ignore_ascii_case(t))
}

/// Why the driver has no response to hand back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntrospectionFailure {
    /// Unreachable, a timeout, a 5xx, or any other status than 200 that is not a refusal of
    /// the credentials.
    #[error("the introspection endpoint is unavailable")]
    Unavailable,
    /// 401/403 (or an `invalid_client` error): the endpoint refused this server's credentials.
    #[error("the introspection endpoint refused this server's credentials")]
    CredentialsRefused,
}

impl From<IntrospectionFailure> for Rejection {
    fn from(failure: IntrospectionFailure) -> Self {
        match failure {
            IntrospectionFailure::Unavailable => Rejection::IntrospectionUnavailable {
                retry_after_secs: INTROSPECTION_RETRY_AFTER_SECS,
            },
            IntrospectionFailure::CredentialsRefused => {
                Rejection::IntrospectionCredentialsRefused {
                    retry_after_secs: CREDENTIALS_REFUSED_RETRY_AFTER_SECS,
                }
            }
        }
    }
}

/// Whether an introspection verdict is about the token itself (inactive, wrong audience,
/// expired, …), so a negative cache may remember it; the service's own failures (unavailable,
/// credentials refused, an invalid response, keys unavailable) are not remembered beyond a
/// retry.
pub fn is_token_verdict(rejection: &Rejection) -> bool {
    rejection.class() != crate::ErrorClass::Unavailable
}

/// An introspected token: its claims as the endpoint vouched for them. Not a verdict — the
/// lifetime and the binding are checked against each request by
/// [`NeedIntrospection::resume`](crate::NeedIntrospection::resume). What a cache keeps.
#[derive(Debug, Clone)]
pub struct Introspected {
    pub(crate) claims: Arc<VerifiedClaims>,
    pub(crate) issuer: usize,
    /// The `exp` of the RFC 9701 signed response that carried it, if any.
    pub(crate) response_exp: Option<u64>,
}

impl Introspected {
    /// The claims (`iss` is the configured issuer even when the response had none).
    pub fn claims(&self) -> &Arc<VerifiedClaims> {
        &self.claims
    }

    /// Which configured issuer introspected it.
    pub fn issuer_index(&self) -> usize {
        self.issuer
    }

    /// When what the issuer said ends (Unix seconds): the token's `exp`, or the signed
    /// response's `exp` when that comes first.
    pub fn ends_at(&self) -> u64 {
        let exp = self.claims.expires_at();
        self.response_exp.map_or(exp, |response| exp.min(response))
    }

    /// Until when (Unix seconds) a cache may keep it, asked at `now` with at most `max_secs`:
    /// `min(exp, the signed response's exp, now + max_secs)`.
    pub fn cache_until(&self, now: u64, max_secs: u64) -> u64 {
        self.ends_at().min(now.saturating_add(max_secs))
    }
}

/// A checked introspection response.
#[derive(Debug)]
pub enum IntrospectionResponse {
    /// A plain JSON response, checked.
    Checked(Introspected),
    /// An RFC 9701 signed response whose header was checked: it needs the issuer's key
    /// ([`kid`](SignedIntrospection::kid), [`alg`](SignedIntrospection::alg)), then
    /// [`verify`](SignedIntrospection::verify).
    Signed(SignedIntrospection),
}

/// An RFC 9701 signed introspection response waiting for the issuer's key.
#[derive(Debug)]
pub struct SignedIntrospection {
    jwt: String,
    issuer: usize,
    kid: Option<String>,
    alg: Algorithm,
    now: u64,
}

impl SignedIntrospection {
    /// The issuer whose key is needed (index into the verifier's issuers).
    pub fn issuer_index(&self) -> usize {
        self.issuer
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm (allow-listed).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Verifies the signature with the issuer's `key` (or the lookup's rejection), then `iss`,
    /// `aud` (when configured: the layer sets this server's client id), `iat` (required, not in
    /// the future and at most [`SIGNED_RESPONSE_MAX_AGE_SECS`] old, both beyond the leeway),
    /// `exp` (which also ends the cache entry), and the `token_introspection` member by the
    /// same rules as a plain response. A signature, key or claim that does not hold is
    /// [`Rejection::IntrospectionResponseInvalid`]; [`Rejection::KeysUnavailable`] passes
    /// through.
    pub fn verify(
        self,
        verifier: &crate::Verifier,
        key: Result<Arc<VerificationKey>, Rejection>,
    ) -> Result<Introspected, Rejection> {
        let invalid = Rejection::IntrospectionResponseInvalid {
            retry_after_secs: INTROSPECTION_RETRY_AFTER_SECS,
        };
        let key = key.map_err(|rejection| match rejection {
            Rejection::KeysUnavailable { .. } => rejection,
            _ => invalid,
        })?;
        let (policy, rules) = verifier.introspection_rules(self.issuer)?;
        let token = crate::UnverifiedToken::parse(&self.jwt).map_err(|_| invalid)?;
        key.verify(self.alg, token.signing_input(), token.signature())
            .map_err(|_| invalid)?;
        let claims = token.unverified_claims();
        if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer()) {
            return Err(invalid);
        }
        if let Some(expected) = &rules.response_audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == expected,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
                _ => false,
            };
            if !ok {
                return Err(invalid);
            }
        }
        let leeway = policy.leeway_secs();
        // RFC 9701 §5: iat is required. A response is fetched just now: not from the future,
        // and not older than the max age.
        let iat = match claims.get("iat") {
            Some(Value::Number(iat)) => seconds(iat).ok_or(invalid)?,
            _ => return Err(invalid),
        };
        if iat > self.now.saturating_add(leeway)
            || self.now
                > iat
                    .saturating_add(SIGNED_RESPONSE_MAX_AGE_SECS)
                    .saturating_add(leeway)
        {
            return Err(invalid);
        }
        let response_exp = match claims.get("exp") {
            None => None,
            Some(Value::Number(exp)) => {
                let exp = seconds(exp).ok_or(invalid)?;
                if self.now >= exp.saturating_add(leeway) {
                    return Err(invalid);
                }
                Some(exp)
            }
            Some(_) => return Err(invalid),
        };
        let response = match claims.get("token_introspection") {
            Some(Value::Object(response)) => response.clone(),
            _ => return Err(invalid),
        };
        let mut introspected = check_members(
            response,
            policy,
            rules,
            self.issuer,
            Some((self.alg, self.kid)),
        )?;
        introspected.response_exp = response_exp;
        Ok(introspected)
    }
}

/// A NumericDate (RFC 7519 §2) as whole seconds: a non-negative finite number, rounded down.
fn seconds(number: &serde_json::Number) -> Option<u64> {
    if let Some(secs) = number.as_u64() {
        return Some(secs);
    }
    let secs = number.as_f64()?;
    // In range for u64 and not negative: the cast rounds down.
    (secs.is_finite() && (0.0..1.8e19).contains(&secs)).then_some(secs as u64)
}

impl crate::Verifier {
    /// The introspecting issuer's token policy and the introspection rules.
    pub(crate) fn introspection_rules(
        &self,
        issuer: usize,
    ) -> Result<(&TokenPolicy, &IntrospectionPolicy), Rejection> {
        let rules = self
            .introspection_policy()
            .ok_or(Rejection::MalformedToken)?;
        let policy = self.issuers().get(issuer).ok_or(Rejection::WrongIssuer)?;
        Ok((policy, rules))
    }

    /// Checks a raw introspection response (`content_type` as sent, `body`) of the
    /// introspecting issuer at `now`: see the [module docs](crate::introspection). Anything that
    /// is not a valid response — not strict JSON (duplicate members refused), no boolean
    /// `active` — is [`Rejection::IntrospectionResponseInvalid`]; `active: false` is
    /// [`Rejection::InactiveToken`].
    pub fn check_introspection_response(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<IntrospectionResponse, Rejection> {
        let invalid = Rejection::IntrospectionResponseInvalid {
            retry_after_secs: INTROSPECTION_RETRY_AFTER_SECS,
        };
        let rules = self
            .introspection_policy()
            .ok_or(Rejection::MalformedToken)?;
        let issuer = rules.issuer;
        let (policy, rules) = self.introspection_rules(issuer)?;
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if media_type.eq_ignore_ascii_case(INTROSPECTION_JWT_CONTENT_TYPE) {
            let jwt = std::str::from_utf8(body)
                .map_err(|_| invalid)?
                .trim()
                .to_owned();
            let token = crate::UnverifiedToken::parse(&jwt).map_err(|_| invalid)?;
            let header = token.header();
            let alg = crate::parse_algorithm(header.alg())
                .filter(|alg| policy.allowed_algorithms().contains(alg))
                .ok_or(invalid)?;
            if header.crit().is_some() {
                return Err(invalid);
            }
            let typ_ok = header.typ().is_some_and(|typ| {
                typ.eq_ignore_ascii_case("token-introspection+jwt")
                    || typ.eq_ignore_ascii_case(INTROSPECTION_JWT_CONTENT_TYPE)
            });
            if !typ_ok {
                return Err(invalid);
            }
            let kid = header.kid().map(str::to_owned);
            return Ok(IntrospectionResponse::Signed(SignedIntrospection {
                jwt,
                issuer,
                kid,
                alg,
                now,
            }));
        }
        if rules.require_signed {
            return Err(invalid);
        }
        let response = parse_object(body).map_err(|_| invalid)?;
        check_members(response, policy, rules, issuer, None).map(IntrospectionResponse::Checked)
    }
}

/// The RFC 7662 §2.2 members of a response (plain, or an RFC 9701 `token_introspection`).
fn check_members(
    response: Map<String, Value>,
    policy: &TokenPolicy,
    rules: &IntrospectionPolicy,
    issuer: usize,
    signed: Option<(Algorithm, Option<String>)>,
) -> Result<Introspected, Rejection> {
    match response.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Rejection::InactiveToken),
        _ => {
            return Err(Rejection::IntrospectionResponseInvalid {
                retry_after_secs: INTROSPECTION_RETRY_AFTER_SECS,
            })
        }
    }
    let claims =
        VerifiedClaims::from_introspection(response, policy, rules.require_audience, signed)?;
    Ok(Introspected {
        claims: Arc::new(claims),
        issuer,
        response_exp: None,
    })
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B), for the
/// `token` parameter and `client_secret_basic` credentials.
pub fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The `Authorization` value of `client_secret_basic` (RFC 6749 §2.3.1: both parts
/// form-urlencoded, then Basic).
pub fn client_secret_basic(client_id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_urlencode(client_id), form_urlencode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A short, stable fingerprint of a token for logs and cache keys: never the token itself.
pub fn token_fingerprint(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The first 8 base64url characters of [`token_fingerprint`], for a log line.
pub fn token_log_id(token: &str) -> String {
    let mut id = URL_SAFE_NO_PAD.encode(token_fingerprint(token));
    id.truncate(8);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BindingPolicy, Credentials, Step, Thumbprint, Verifier};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISS: &str = "https://iss";
    const AUD: &str = "https://api";
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier(policy: IntrospectionPolicy) -> Verifier {
        Verifier::new(
            vec![TokenPolicy::new(ISS, AUD).algorithms([Algorithm::HS256])],
            BindingPolicy::Required,
        )
        .unwrap()
        .introspection(policy)
    }

    fn cert() -> Thumbprint {
        Thumbprint::of_der(b"cert")
    }

    fn active() -> Value {
        json!({"active": true, "iss": ISS, "aud": AUD, "exp": NOW + 300, "iat": NOW,
               "sub": "alice", "client_id": "c1", "scope": "read write", "token_type": "Bearer",
               "cnf": {"x5t#S256": cert().to_string()}})
    }

    fn decide(
        v: &Verifier,
        body: &[u8],
        ct: &str,
        presented: Option<Thumbprint>,
    ) -> Result<crate::Accepted, Rejection> {
        let Step::NeedIntrospection(need) =
            v.verify(Credentials::bearer("opaque-1"), presented, NOW)
        else {
            panic!("expected NeedIntrospection")
        };
        match need.check_response(Some(ct), body) {
            Ok(IntrospectionResponse::Checked(i)) => need.resume(Ok(i)),
            Ok(IntrospectionResponse::Signed(s)) => {
                let key = Arc::new(VerificationKey::from_shared_secret(
                    Some("k".into()),
                    SECRET,
                ));
                let i = s.verify(v, Ok(key));
                need.resume(i)
            }
            Err(r) => need.resume(Err(r)),
        }
    }

    fn check(body: Value) -> Result<crate::Accepted, Rejection> {
        decide(
            &verifier(IntrospectionPolicy::default()),
            body.to_string().as_bytes(),
            "application/json; charset=utf-8",
            Some(cert()),
        )
    }

    fn with(mut v: Value, k: &str, x: Value) -> Value {
        v[k] = x;
        v
    }

    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    fn sign(header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{sig}")
    }

    #[test]
    fn an_active_bound_response_is_accepted_with_its_claims() {
        let accepted = check(active()).unwrap();
        let claims = accepted.verified().claims();
        assert!(claims.is_introspected());
        assert_eq!(claims.subject(), Some("alice"));
        assert_eq!(claims.client_id(), Some("c1"));
        assert!(claims.has_scope("write"));
        assert_eq!(claims.issuer(), ISS);
        assert_eq!(claims.alg(), None);
        assert_eq!(claims.confirmation().certificate(), Some(&cert()));
        assert!(!claims.all().contains_key("active"));
        assert!(!accepted.is_fresh(), "never stored in the JWT cache");
    }

    #[test]
    fn response_rules() {
        let a = active();
        let cases = [
            (with(a.clone(), "active", json!(false)), "inactive_token"),
            (json!({"active": false}), "inactive_token"),
            (
                with(a.clone(), "active", json!("true")),
                "invalid_introspection_response",
            ),
            (
                without(a.clone(), "active"),
                "invalid_introspection_response",
            ),
            (
                with(a.clone(), "iss", json!("https://other")),
                "wrong_issuer",
            ),
            (with(a.clone(), "iss", json!(7)), "invalid_claims"),
            (
                with(a.clone(), "aud", json!("https://other")),
                "wrong_audience",
            ),
            (with(a.clone(), "aud", json!(["x", AUD])), ""),
            (with(a.clone(), "aud", json!([])), "wrong_audience"),
            (with(a.clone(), "aud", json!(5)), "invalid_claims"),
            (with(a.clone(), "exp", json!(NOW - 61)), "expired"),
            (with(a.clone(), "exp", json!(NOW - 59)), ""),
            (with(a.clone(), "exp", json!("soon")), "invalid_claims"),
            (with(a.clone(), "nbf", json!(NOW + 61)), "not_yet_valid"),
            (
                with(a.clone(), "token_type", json!("refresh_token")),
                "not_an_access_token",
            ),
            (with(a.clone(), "token_type", json!("DPoP")), ""),
            (with(a.clone(), "token_type", json!("bearer")), ""),
            (with(a.clone(), "token_type", json!(1)), "invalid_claims"),
            (with(a.clone(), "sub", json!(1)), "invalid_claims"),
            (
                with(a.clone(), "cnf", json!({"x5t#S256": "short"})),
                "malformed_binding",
            ),
            (without(a.clone(), "cnf"), "unbound_token"),
            (
                with(
                    a.clone(),
                    "cnf",
                    json!({"x5t#S256": Thumbprint::of_der(b"other").to_string()}),
                ),
                "binding_mismatch",
            ),
            // Optional members may be absent.
            (
                without(without(without(a.clone(), "iss"), "aud"), "exp"),
                "",
            ),
        ];
        for (body, want) in cases {
            let got = check(body.clone()).err().map_or("", |r| r.code());
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn strict_json_and_unsigned_when_signed_is_required() {
        let v = verifier(IntrospectionPolicy::default());
        for body in [
            &br#"{"active":true,"active":false}"#[..],
            b"<html>",
            b"[true]",
            b"",
            br#"{"active":true} {}"#,
        ] {
            assert_eq!(
                decide(&v, body, "application/json", Some(cert()))
                    .unwrap_err()
                    .code(),
                "invalid_introspection_response",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let signed_only = verifier(IntrospectionPolicy::default().require_signed_response(true));
        assert_eq!(
            decide(
                &signed_only,
                active().to_string().as_bytes(),
                "application/json",
                Some(cert())
            )
            .unwrap_err()
            .code(),
            "invalid_introspection_response"
        );
    }

    #[test]
    fn audience_can_be_required() {
        let v = verifier(IntrospectionPolicy::default().require_audience(true));
        let body = without(active(), "aud").to_string();
        assert_eq!(
            decide(&v, body.as_bytes(), "application/json", Some(cert())).unwrap_err(),
            Rejection::WrongAudience
        );
    }

    #[test]
    fn rfc9701_signed_responses() {
        let v = verifier(IntrospectionPolicy::default().response_audience("rs-client"));
        let header = json!({"alg": "HS256", "kid": "k", "typ": "token-introspection+jwt"});
        let claims =
            json!({"iss": ISS, "aud": "rs-client", "iat": NOW, "token_introspection": active()});
        let ct = INTROSPECTION_JWT_CONTENT_TYPE;
        let ok = sign(header.clone(), claims.clone());
        let accepted = decide(&v, ok.as_bytes(), ct, Some(cert())).unwrap();
        assert_eq!(accepted.verified().claims().alg(), Some(Algorithm::HS256));
        assert_eq!(accepted.verified().claims().kid(), Some("k"));

        let invalid = "invalid_introspection_response";
        // Forged: the signature does not verify.
        let mut forged = ok.clone();
        forged.pop();
        forged.push(if ok.ends_with('A') { 'B' } else { 'A' });
        let cases = [
            (forged, invalid),
            (
                sign(with(header.clone(), "typ", json!("JWT")), claims.clone()),
                invalid,
            ),
            (
                sign(without(header.clone(), "typ"), claims.clone()),
                invalid,
            ),
            (
                sign(with(header.clone(), "alg", json!("none")), claims.clone()),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    with(claims.clone(), "iss", json!("https://evil")),
                ),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    with(claims.clone(), "aud", json!("someone-else")),
                ),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    with(claims.clone(), "exp", json!(NOW - 120)),
                ),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    without(claims.clone(), "token_introspection"),
                ),
                invalid,
            ),
            // iat: required, not from the future, not older than the max age (+ leeway).
            (
                sign(header.clone(), without(claims.clone(), "iat")),
                invalid,
            ),
            (
                sign(header.clone(), with(claims.clone(), "iat", json!("now"))),
                invalid,
            ),
            (
                sign(header.clone(), with(claims.clone(), "iat", json!(NOW + 61))),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    with(claims.clone(), "iat", json!(NOW - 121)),
                ),
                invalid,
            ),
            (
                sign(header.clone(), with(claims.clone(), "iat", json!(-5))),
                invalid,
            ),
            (
                sign(
                    header.clone(),
                    with(
                        claims.clone(),
                        "token_introspection",
                        json!({"active": false}),
                    ),
                ),
                "inactive_token",
            ),
            ("not a jwt".to_owned(), invalid),
        ];
        for (body, want) in cases {
            assert_eq!(
                decide(&v, body.as_bytes(), ct, Some(cert()))
                    .unwrap_err()
                    .code(),
                want,
                "{body}"
            );
        }
        // Within the leeway and the max age: accepted.
        for iat in [NOW + 60, NOW - 120] {
            let body = sign(header.clone(), with(claims.clone(), "iat", json!(iat)));
            assert!(
                decide(&v, body.as_bytes(), ct, Some(cert())).is_ok(),
                "{iat}"
            );
        }
        // The signed response's exp ends the cache entry when it comes before the token's.
        let signed_until = |claims: Value| {
            let Step::NeedIntrospection(need) =
                v.verify(Credentials::bearer("opaque-1"), Some(cert()), NOW)
            else {
                panic!()
            };
            let body = sign(header.clone(), claims);
            let Ok(IntrospectionResponse::Signed(s)) =
                need.check_response(Some(ct), body.as_bytes())
            else {
                panic!()
            };
            let key = Arc::new(VerificationKey::from_shared_secret(
                Some("k".into()),
                SECRET,
            ));
            s.verify(&v, Ok(key)).unwrap().cache_until(NOW, 3600)
        };
        assert_eq!(signed_until(claims.clone()), NOW + 300);
        assert_eq!(
            signed_until(with(claims.clone(), "exp", json!(NOW + 30))),
            NOW + 30
        );
        assert_eq!(
            signed_until(with(claims.clone(), "exp", json!(NOW as f64 + 30.9))),
            NOW + 30
        );
        // A key lookup that fails: the response cannot be trusted, never the token's fault.
        let Step::NeedIntrospection(need) =
            v.verify(Credentials::bearer("opaque-1"), Some(cert()), NOW)
        else {
            panic!()
        };
        let Ok(IntrospectionResponse::Signed(s)) = need.check_response(Some(ct), ok.as_bytes())
        else {
            panic!()
        };
        assert_eq!(s.kid(), Some("k"));
        assert_eq!(
            s.verify(&v, Err(Rejection::UnknownKey)).unwrap_err().code(),
            invalid
        );
    }

    /// `introspect_all` under `IfBound`: a JWT's own `cnf` binds it whatever the response
    /// says — a response without that `cnf` (or with another) does not confirm the token.
    #[test]
    fn an_introspected_jwt_keeps_its_own_binding() {
        let v = Verifier::new(
            vec![TokenPolicy::new(ISS, AUD).algorithms([Algorithm::HS256])],
            BindingPolicy::IfBound,
        )
        .unwrap()
        .introspection(IntrospectionPolicy::default().introspect_all(true));
        let claims = json!({"iss": ISS, "aud": AUD, "exp": NOW + 300,
                            "cnf": {"x5t#S256": cert().to_string()}});
        let bound_jwt = sign(json!({"alg": "HS256", "kid": "k"}), claims.clone());
        let unbound_jwt = sign(json!({"alg": "HS256", "kid": "k"}), without(claims, "cnf"));
        let other = Thumbprint::of_der(b"other cert");
        let run = |token: &str, response: Value, presented: Option<Thumbprint>| {
            let Step::NeedIntrospection(need) =
                v.verify(Credentials::bearer(token), presented, NOW)
            else {
                panic!("expected NeedIntrospection")
            };
            match need.check_response(Some("application/json"), response.to_string().as_bytes()) {
                Ok(IntrospectionResponse::Checked(i)) => need.resume(Ok(i)),
                other => panic!("{other:?}"),
            }
        };
        let unbound_response = without(active(), "cnf");
        let other_response = with(active(), "cnf", json!({"x5t#S256": other.to_string()}));
        // The response omits cnf: the JWT's binding still holds — without a certificate, or
        // even with the right one, the response does not confirm it.
        assert_eq!(
            run(&bound_jwt, unbound_response.clone(), None).unwrap_err(),
            Rejection::BindingMismatch
        );
        assert_eq!(
            run(&bound_jwt, unbound_response.clone(), Some(cert())).unwrap_err(),
            Rejection::BindingMismatch
        );
        // Another binding in the response: refused whichever certificate is presented.
        for presented in [Some(cert()), Some(other), None] {
            assert_eq!(
                run(&bound_jwt, other_response.clone(), presented).unwrap_err(),
                Rejection::BindingMismatch
            );
        }
        // Both agree: the binding is checked against the request as usual.
        assert!(run(&bound_jwt, active(), Some(cert())).is_ok());
        assert_eq!(
            run(&bound_jwt, active(), None).unwrap_err(),
            Rejection::MissingClientCertificate
        );
        // A JWT without cnf: the response's binding (or none, under IfBound) decides.
        assert!(run(&unbound_jwt, unbound_response, None).is_ok());
        assert_eq!(
            run(&unbound_jwt, active(), Some(other)).unwrap_err(),
            Rejection::BindingMismatch
        );
        // A JWS-shaped token with a malformed cnf is refused as such.
        let malformed = sign(
            json!({"alg": "HS256"}),
            json!({"iss": ISS, "cnf": {"x5t#S256": 7}}),
        );
        assert!(matches!(
            v.verify(Credentials::bearer(&malformed), Some(cert()), NOW),
            Step::Reject(Rejection::MalformedBinding)
        ));
    }

    #[test]
    fn which_tokens_are_introspected() {
        let v = verifier(IntrospectionPolicy::default());
        let jwt = "eyJhbGciOiJIUzI1NiJ9.e30.c2ln";
        assert!(matches!(
            v.verify(Credentials::bearer(jwt), None, NOW),
            Step::NeedKey(_) | Step::Reject(_)
        ));
        for opaque in ["abc", "a.b", "a.b.c.d.e"] {
            assert!(
                matches!(
                    v.verify(Credentials::bearer(opaque), None, NOW),
                    Step::NeedIntrospection(_)
                ),
                "{opaque}"
            );
        }
        // Two dots but not a JWS (PASETO-like, or base64url that is not JSON): opaque too.
        for opaque in [
            "v4.local.c29tZXRoaW5n",
            "abc.def.ghi",
            "e30.bm90IGpzb24.c2ln",
        ] {
            assert!(
                matches!(
                    v.verify(Credentials::bearer(opaque), None, NOW),
                    Step::NeedIntrospection(_)
                ),
                "{opaque}"
            );
        }
        let all = verifier(IntrospectionPolicy::default().introspect_all(true));
        assert!(matches!(
            all.verify(Credentials::bearer(jwt), None, NOW),
            Step::NeedIntrospection(_)
        ));
        // Without introspection, an opaque token is malformed as before.
        let off = Verifier::new(vec![TokenPolicy::new(ISS, AUD)], BindingPolicy::Required).unwrap();
        assert!(matches!(
            off.verify(Credentials::bearer("abc"), None, NOW),
            Step::Reject(Rejection::MalformedToken)
        ));
    }

    #[test]
    fn failures_and_cache_rules() {
        let r: Rejection = IntrospectionFailure::Unavailable.into();
        assert_eq!(
            (r.code(), r.status().as_u16(), r.retry_after_secs()),
            ("introspection_unavailable", 503, Some(5))
        );
        let r: Rejection = IntrospectionFailure::CredentialsRefused.into();
        assert_eq!(
            (r.code(), r.status().as_u16()),
            ("introspection_credentials_refused", 503)
        );
        assert!(!is_token_verdict(&r));
        assert!(is_token_verdict(&Rejection::InactiveToken));
        assert!(is_token_verdict(&Rejection::WrongAudience));
        let v = verifier(IntrospectionPolicy::default());
        let Ok(IntrospectionResponse::Checked(i)) =
            v.check_introspection_response(None, active().to_string().as_bytes(), NOW)
        else {
            panic!()
        };
        assert_eq!(i.cache_until(NOW, 60), NOW + 60);
        assert_eq!(i.cache_until(NOW, 3600), NOW + 300);
    }

    #[test]
    fn client_credentials_encoding() {
        assert_eq!(form_urlencode("a b+c/é"), "a+b%2Bc%2F%C3%A9");
        // RFC 6749 §2.3.1: "s3cr3t:" would otherwise split wrongly.
        assert_eq!(
            client_secret_basic("id:1", "p:w"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("id%3A1:p%3Aw")
            )
        );
        assert_eq!(token_log_id("x").len(), 8);
    }
}
