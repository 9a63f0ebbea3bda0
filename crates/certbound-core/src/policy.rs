//! Token validation policy: algorithm allow-list, header rules, signature, registered claims.
//!
//! Everything is a pure function of the token, the key and `now` (seconds since the Unix epoch),
//! so it is tested with plain values and a fixed clock.
//!
//! ```
//! use certbound_core::{TokenPolicy, UnverifiedToken, Rejection};
//!
//! let policy = TokenPolicy::new("https://issuer.example/", "https://api.example");
//! // A token with alg "none" never reaches a key lookup:
//! let t = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.c2ln";
//! let parsed = UnverifiedToken::parse(t).unwrap();
//! assert_eq!(policy.check_header(parsed.header()).err(), Some(Rejection::DisallowedAlgorithm));
//! ```

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::jose::JoseHeader;
use crate::{Confirmation, Rejection, UnverifiedToken, VerificationKey};

/// The default allow-list: every asymmetric algorithm jsonwebtoken implements. Never `none`;
/// HMAC only when added explicitly together with a shared-secret key.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Default clock-skew allowance for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// How one issuer's tokens are validated.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    require_at_jwt: bool,
}

impl TokenPolicy {
    /// A policy for tokens from `issuer` (matched exactly) for `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway_secs: DEFAULT_LEEWAY.as_secs(),
            require_at_jwt: false,
        }
    }

    /// Also accept tokens whose `aud` contains `audience`.
    pub fn add_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Replaces the algorithm allow-list. HMAC algorithms in it verify only with shared-secret keys.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat` (whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = leeway.as_secs();
        self
    }

    /// Require the RFC 9068 `typ` header `at+jwt` (or `application/at+jwt`).
    pub fn require_at_jwt(mut self, require: bool) -> Self {
        self.require_at_jwt = require;
        self
    }

    /// The issuer this policy accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The accepted audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The leeway in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }

    /// The algorithm allow-list.
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Checks the header before any key is looked up: `alg` allow-listed, `crit` empty of
    /// anything unknown, `typ` when required. Returns the algorithm to verify with.
    pub fn check_header(&self, header: &JoseHeader) -> Result<Algorithm, Rejection> {
        // Case-sensitive: "none", "None", "RS256 " all fail here; "Ed25519" (RFC 9864) is EdDSA.
        let alg = crate::parse_algorithm(header.alg()).ok_or(Rejection::DisallowedAlgorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::DisallowedAlgorithm);
        }
        // certbound implements no JWS extensions, so any critical one is unsupported (RFC 7515 §4.1.11).
        if header.crit().is_some() {
            return Err(Rejection::UnsupportedCriticalHeader);
        }
        if self.require_at_jwt {
            let ok = header.typ().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !ok {
                return Err(Rejection::WrongTokenType);
            }
        }
        Ok(alg)
    }

    /// Verifies the signature with `key`, then the registered claims against `now` (Unix seconds).
    pub fn verify(
        &self,
        token: UnverifiedToken<'_>,
        alg: Algorithm,
        key: &VerificationKey,
        now: u64,
    ) -> Result<VerifiedClaims, Rejection> {
        key.verify(alg, token.signing_input(), token.signature())?;
        let kid = token.header().kid().map(str::to_owned);
        let claims = VerifiedClaims::from_map(token.into_claims(), alg, kid)?;
        if claims.issuer != self.issuer {
            return Err(Rejection::WrongIssuer);
        }
        if !claims.audience.iter().any(|a| self.audiences.contains(a)) {
            return Err(Rejection::WrongAudience);
        }
        claims.check_time(now, self.leeway_secs)?;
        Ok(claims)
    }
}

/// Claims of a token whose signature, issuer, audience and lifetime were verified.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    issuer: String,
    audience: Vec<String>,
    subject: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    jti: Option<String>,
    /// `None` only for an introspection response without `exp` (RFC 7662 makes it optional).
    expires_at: Option<f64>,
    not_before: Option<f64>,
    issued_at: Option<f64>,
    confirmation: Confirmation,
    /// `None` for claims from a plain-JSON introspection response (no signature).
    alg: Option<Algorithm>,
    kid: Option<String>,
    introspected: bool,
    all: Map<String, Value>,
}

impl VerifiedClaims {
    fn from_map(
        all: Map<String, Value>,
        alg: Algorithm,
        kid: Option<String>,
    ) -> Result<Self, Rejection> {
        let string = |name: &str| claim_string(&all, name);
        let number = |name: &str| claim_number(&all, name);
        let issuer = string("iss")?.ok_or(Rejection::InvalidClaims)?;
        let audience = match all.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Rejection::InvalidClaims)?,
            Some(_) => return Err(Rejection::InvalidClaims),
            None => return Err(Rejection::WrongAudience),
        };
        let expires_at = number("exp")?.ok_or(Rejection::InvalidClaims)?;
        let confirmation = Confirmation::from_cnf(all.get("cnf"))?;
        Ok(Self {
            subject: string("sub")?,
            client_id: string("client_id")?,
            scope: string("scope")?,
            jti: string("jti")?,
            not_before: number("nbf")?,
            issued_at: number("iat")?,
            issuer,
            audience,
            expires_at: Some(expires_at),
            confirmation,
            alg: Some(alg),
            kid,
            introspected: false,
            all,
        })
    }

    /// The claims of an active RFC 7662 introspection response, checked against `policy`:
    /// `iss` (when present) is the policy's issuer, `aud` (when present, or always when
    /// `require_audience`) contains one of its audiences, `token_type` (when present) is an
    /// access-token type, the registered claims have their JSON types, and `cnf` parses into the
    /// same [`Confirmation`] as a JWT's. `active` was checked by the caller. The lifetime is
    /// checked by [`check_time`](Self::check_time). `alg`/`kid`: of an RFC 9701 signed response.
    pub(crate) fn from_introspection(
        mut all: Map<String, Value>,
        policy: &TokenPolicy,
        require_audience: bool,
        signed: Option<(Algorithm, Option<String>)>,
    ) -> Result<Self, Rejection> {
        let string = claim_string;
        let number = |name: &str| claim_number(&all, name);
        match string(&all, "iss")? {
            Some(iss) if iss != policy.issuer => return Err(Rejection::WrongIssuer),
            _ => {}
        }
        let audience = match all.get("aud") {
            None if require_audience => return Err(Rejection::WrongAudience),
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Rejection::InvalidClaims)?,
            Some(_) => return Err(Rejection::InvalidClaims),
        };
        if all.contains_key("aud") && !audience.iter().any(|a| policy.audiences.contains(a)) {
            return Err(Rejection::WrongAudience);
        }
        if let Some(token_type) = string(&all, "token_type")? {
            if !crate::introspection::is_access_token_type(&token_type) {
                return Err(Rejection::NotAnAccessToken);
            }
        }
        let confirmation = Confirmation::from_cnf(all.get("cnf"))?;
        let (alg, kid) = match signed {
            Some((alg, kid)) => (Some(alg), kid),
            None => (None, None),
        };
        let claims = Self {
            subject: string(&all, "sub")?,
            client_id: string(&all, "client_id")?,
            scope: string(&all, "scope")?,
            jti: string(&all, "jti")?,
            not_before: number("nbf")?,
            issued_at: number("iat")?,
            expires_at: number("exp")?,
            issuer: policy.issuer.clone(),
            audience,
            confirmation,
            alg,
            kid,
            introspected: true,
            all: Map::new(),
        };
        // `active` said what it had to; the rest is what the application sees.
        all.remove("active");
        Ok(Self { all, ..claims })
    }

    /// Re-checks `exp`, `nbf` and `iat` against `now` (Unix seconds) with `leeway_secs`.
    /// Called on every verification and on every cache hit.
    pub fn check_time(&self, now: u64, leeway_secs: u64) -> Result<(), Rejection> {
        let now = now as f64;
        let leeway = leeway_secs as f64;
        if self.expires_at.is_some_and(|exp| now >= exp + leeway) {
            return Err(Rejection::Expired);
        }
        if self.not_before.is_some_and(|nbf| now + leeway < nbf) {
            return Err(Rejection::NotYetValid);
        }
        if self.issued_at.is_some_and(|iat| now + leeway < iat) {
            return Err(Rejection::IssuedInFuture);
        }
        Ok(())
    }

    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// `aud`, normalised to a list.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }
    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// `client_id` (RFC 9068 §2.2).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
    /// `scope`, the space-separated string (RFC 9068 §2.2.3).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
    /// The individual scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }
    /// Whether `scope` contains `wanted` as a whole word.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }
    /// `jti`.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    /// `exp` in Unix seconds (fractions dropped); `u64::MAX` for an introspected token whose
    /// introspection response had no `exp` (RFC 7662 makes it optional).
    pub fn expires_at(&self) -> u64 {
        self.expires_at.map_or(u64::MAX, |exp| exp as u64)
    }
    /// Whether these claims come from the issuer's introspection endpoint (RFC 7662) rather
    /// than from a JWT this service verified itself.
    pub fn is_introspected(&self) -> bool {
        self.introspected
    }
    /// `cnf`: what the token is bound to.
    pub fn confirmation(&self) -> &Confirmation {
        &self.confirmation
    }
    /// The algorithm the signature was verified with: the token's, or for an introspected token
    /// that of the RFC 9701 signed introspection response (`None` for a plain JSON one).
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }
    /// The `kid` of the key that verified the signature (of the token, or of an RFC 9701
    /// signed introspection response).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// Every claim, as sent.
    pub fn all(&self) -> &Map<String, Value> {
        &self.all
    }
}

/// A registered string claim: absent, or a JSON string (anything else is `invalid_claims`).
fn claim_string(all: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match all.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::InvalidClaims),
    }
}

/// A registered numeric claim (`exp`, `nbf`, `iat`): absent, or a JSON number.
fn claim_number(all: &Map<String, Value>, name: &str) -> Result<Option<f64>, Rejection> {
    match all.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(Rejection::InvalidClaims),
        Some(_) => Err(Rejection::InvalidClaims),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Thumbprint;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn key() -> VerificationKey {
        VerificationKey::from_shared_secret(Some("k".into()), b"0123456789abcdef0123456789abcdef")
    }

    fn policy() -> TokenPolicy {
        TokenPolicy::new("https://iss", "https://api").algorithms([Algorithm::HS256])
    }

    fn sign(header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{c}");
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{sig}")
    }

    fn base_claims() -> Value {
        json!({"iss":"https://iss","aud":"https://api","exp":NOW+300,"iat":NOW,"sub":"alice",
               "cnf":{"x5t#S256":Thumbprint::of_der(b"cert").to_string()}})
    }

    fn check(header: Value, claims: Value, now: u64) -> Result<VerifiedClaims, Rejection> {
        let t = sign(header, claims);
        let parsed = UnverifiedToken::parse(&t)?;
        let p = policy();
        let alg = p.check_header(parsed.header())?;
        p.verify(parsed, alg, &key(), now)
    }

    fn with(mut claims: Value, k: &str, v: Value) -> Value {
        claims[k] = v;
        claims
    }

    fn without(mut claims: Value, k: &str) -> Value {
        claims.as_object_mut().unwrap().remove(k);
        claims
    }

    #[test]
    fn valid_token() {
        let c = check(json!({"alg":"HS256","kid":"k"}), base_claims(), NOW).unwrap();
        assert_eq!(c.subject(), Some("alice"));
        assert_eq!(
            c.confirmation().certificate(),
            Some(&Thumbprint::of_der(b"cert"))
        );
        assert_eq!(c.kid(), Some("k"));
    }

    #[test]
    fn claims_matrix() {
        let h = json!({"alg":"HS256"});
        let b = base_claims();
        let cases = [
            (
                with(b.clone(), "iss", json!("https://other")),
                Rejection::WrongIssuer,
            ),
            (
                with(b.clone(), "iss", json!("https://iss/")),
                Rejection::WrongIssuer,
            ),
            (with(b.clone(), "iss", json!(1)), Rejection::InvalidClaims),
            (without(b.clone(), "iss"), Rejection::InvalidClaims),
            (
                with(b.clone(), "aud", json!("https://other")),
                Rejection::WrongAudience,
            ),
            (with(b.clone(), "aud", json!([])), Rejection::WrongAudience),
            (
                with(b.clone(), "aud", json!(["x", 1])),
                Rejection::InvalidClaims,
            ),
            (without(b.clone(), "aud"), Rejection::WrongAudience),
            (without(b.clone(), "exp"), Rejection::InvalidClaims),
            (
                with(b.clone(), "exp", json!("1900000000")),
                Rejection::InvalidClaims,
            ),
            (with(b.clone(), "exp", json!(NOW - 61)), Rejection::Expired),
            (
                with(b.clone(), "nbf", json!(NOW + 61)),
                Rejection::NotYetValid,
            ),
            (
                with(b.clone(), "iat", json!(NOW + 61)),
                Rejection::IssuedInFuture,
            ),
            (with(b.clone(), "sub", json!(7)), Rejection::InvalidClaims),
            (
                with(b.clone(), "scope", json!(["a"])),
                Rejection::InvalidClaims,
            ),
            (
                with(b.clone(), "cnf", json!("x")),
                Rejection::MalformedBinding,
            ),
            (
                with(b.clone(), "cnf", json!({"x5t#S256": 5})),
                Rejection::MalformedBinding,
            ),
            (
                with(b.clone(), "cnf", json!({"x5t#S256": "short"})),
                Rejection::MalformedBinding,
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                check(h.clone(), claims.clone(), NOW).err(),
                Some(want),
                "{claims}"
            );
        }
    }

    #[test]
    fn leeway_edges() {
        let h = json!({"alg":"HS256"});
        let b = base_claims();
        assert!(check(h.clone(), with(b.clone(), "exp", json!(NOW - 59)), NOW).is_ok());
        assert_eq!(
            check(h.clone(), with(b.clone(), "exp", json!(NOW - 60)), NOW).err(),
            Some(Rejection::Expired)
        );
        assert!(check(h.clone(), with(b.clone(), "nbf", json!(NOW + 60)), NOW).is_ok());
        assert!(check(
            h.clone(),
            with(b.clone(), "aud", json!(["x", "https://api"])),
            NOW
        )
        .is_ok());
        assert!(check(
            h.clone(),
            with(b.clone(), "exp", json!((NOW as f64) + 0.5)),
            NOW
        )
        .is_ok());
    }

    #[test]
    fn header_rules() {
        let b = base_claims();
        let cases = [
            (json!({"alg":"none"}), Rejection::DisallowedAlgorithm),
            (json!({"alg":"NONE"}), Rejection::DisallowedAlgorithm),
            (json!({"alg":"RS256"}), Rejection::DisallowedAlgorithm), // not in this policy's list
            (
                json!({"alg":"HS256","crit":["exp"]}),
                Rejection::UnsupportedCriticalHeader,
            ),
            (
                json!({"alg":"HS256","crit":["b64"],"b64":false}),
                Rejection::UnsupportedCriticalHeader,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(check(h.clone(), b.clone(), NOW).err(), Some(want), "{h}");
        }
        // jku/x5u/jwk/x5c are ignored: the configured key decides.
        assert!(check(
            json!({"alg":"HS256","jku":"https://evil/jwks","jwk":{"kty":"oct","k":"AA"}}),
            b,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn at_jwt_typing() {
        let strict = policy().require_at_jwt(true);
        for (typ, ok) in [
            (Some("at+jwt"), true),
            (Some("application/AT+JWT"), true),
            (Some("JWT"), false),
            (None, false),
        ] {
            let h = match typ {
                Some(t) => json!({"alg":"HS256","typ":t}),
                None => json!({"alg":"HS256"}),
            };
            let t = sign(h, base_claims());
            let parsed = UnverifiedToken::parse(&t).unwrap();
            assert_eq!(strict.check_header(parsed.header()).is_ok(), ok, "{typ:?}");
        }
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let t = sign(json!({"alg":"HS256"}), base_claims());
        let (input, _) = t.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
        let parsed = UnverifiedToken::parse(&forged).unwrap();
        assert_eq!(
            policy().verify(parsed, Algorithm::HS256, &key(), NOW).err(),
            Some(Rejection::BadSignature)
        );
    }
}
