//! Strict parsing of a compact JWS (RFC 7515 §7.1) into an unverified token.
//!
//! Nothing here checks a signature: [`UnverifiedToken`] only says the token is *well formed* —
//! exactly three canonical base64url segments, header and claims JSON objects without duplicate
//! member names, a string `alg`. [`TokenPolicy::verify`](crate::TokenPolicy::verify) decides the rest.
//!
//! ```
//! use certbound_core::UnverifiedToken;
//!
//! // {"alg":"RS256","kid":"k1"} . {"iss":"https://issuer"} . signature
//! let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lzc3VlciJ9.c2ln";
//! let parsed = UnverifiedToken::parse(token).unwrap();
//! assert_eq!(parsed.header().alg(), "RS256");
//! assert_eq!(parsed.header().kid(), Some("k1"));
//! assert_eq!(parsed.unverified_issuer(), Some("https://issuer"));
//!
//! assert!(UnverifiedToken::parse("a.b").is_err());
//! assert!(UnverifiedToken::parse("eyJhbGciOiJub25lIn0=.e30.").is_err()); // padding is not base64url
//! ```

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::Rejection;

/// RFC 9864's fully-specified name for EdDSA over Ed25519 (node oidc-provider 9 signs with it
/// for an Ed25519 key; panva's `dpop` and `oauth4webapi` sign proofs with it).
pub const ED25519_ALG: &str = "Ed25519";

/// A JWS `alg` (a token's or a proof's header, a JWK's `alg`) as the [`Algorithm`](crate::Algorithm) it is
/// verified with: the RFC 7518 names exactly (case-sensitive: `none`, `None`, `RS256 ` are
/// `None`), and `Ed25519` (RFC 9864 §2.2) as `EdDSA` — EdDSA with the Ed25519 curve, the only
/// EdDSA curve a key can have here ([`VerificationKey`](crate::VerificationKey) refuses Ed448),
/// so it is allowed wherever `EdDSA` is.
///
/// ```
/// use certbound_core::{parse_algorithm, Algorithm};
/// assert_eq!(parse_algorithm("ES256"), Some(Algorithm::ES256));
/// assert_eq!(parse_algorithm("Ed25519"), Some(Algorithm::EdDSA));
/// assert_eq!(parse_algorithm("ed25519"), None);
/// assert_eq!(parse_algorithm("none"), None);
/// ```
pub fn parse_algorithm(name: &str) -> Option<crate::Algorithm> {
    if name == ED25519_ALG {
        return Some(crate::Algorithm::EdDSA);
    }
    name.parse().ok()
}

/// The protected header of a JWS, parsed strictly.
///
/// Only members certbound acts on are exposed. `jku`, `x5u`, `jwk` and `x5c` are never used to
/// find or trust a key: keys come only from the configured key source.
#[derive(Debug, Clone)]
pub struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Vec<String>>,
    /// `jwk`, kept only for DPoP proofs (RFC 9449 §4.2), whose key is in their own header; an
    /// access token's `jwk` is never used.
    jwk: Option<Map<String, Value>>,
}

impl JoseHeader {
    /// The `alg` member, as sent (not yet checked against the allow-list).
    pub fn alg(&self) -> &str {
        &self.alg
    }
    /// The `kid` member.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The `typ` member.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    /// The `crit` member, if present.
    pub fn crit(&self) -> Option<&[String]> {
        self.crit.as_deref()
    }
    /// The `jwk` member, for DPoP proof checks only.
    pub(crate) fn jwk(&self) -> Option<&Map<String, Value>> {
        self.jwk.as_ref()
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, Rejection> {
        let alg = match obj.get("alg") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(Rejection::DisallowedAlgorithm),
        };
        let kid = optional_string(obj, "kid").ok_or(Rejection::MalformedToken)?;
        let typ = optional_string(obj, "typ").ok_or(Rejection::MalformedToken)?;
        let crit = match obj.get("crit") {
            None => None,
            Some(Value::Array(items)) if !items.is_empty() => Some(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(Rejection::MalformedToken)?,
            ),
            // RFC 7515 §4.1.11: an empty list or a non-array is not permitted.
            Some(_) => return Err(Rejection::MalformedToken),
        };
        let jwk = match obj.get("jwk") {
            None => None,
            Some(Value::Object(jwk)) => Some(jwk.clone()),
            Some(_) => return Err(Rejection::MalformedToken),
        };
        Ok(Self {
            alg,
            kid,
            typ,
            crit,
            jwk,
        })
    }
}

/// `Some(None)` when absent, `Some(Some(s))` when a string, `None` when present with another type.
fn optional_string(obj: &Map<String, Value>, name: &str) -> Option<Option<String>> {
    match obj.get(name) {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// A compact JWS that is well formed but whose signature has not been checked.
#[derive(Clone)]
pub struct UnverifiedToken<'a> {
    header: JoseHeader,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl fmt::Debug for UnverifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims and signature stay out of logs.
        f.debug_struct("UnverifiedToken")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<'a> UnverifiedToken<'a> {
    /// Parses `header.payload.signature` strictly; any deviation is [`Rejection::MalformedToken`]
    /// (or [`Rejection::DisallowedAlgorithm`] when `alg` is missing or not a string).
    pub fn parse(token: &'a str) -> Result<Self, Rejection> {
        let parts = CompactJws::split(token)?;
        let header_bytes = b64url(parts.header)?;
        let claims_bytes = b64url(parts.payload)?;
        let signature = b64url(parts.signature)?;
        let header_obj = parse_object(&header_bytes).map_err(|_| Rejection::MalformedToken)?;
        let claims = parse_object(&claims_bytes).map_err(|_| Rejection::MalformedToken)?;
        let header = JoseHeader::from_object(&header_obj)?;
        Ok(Self {
            header,
            claims,
            signing_input: parts.signing_input,
            signature,
        })
    }

    /// The protected header.
    pub fn header(&self) -> &JoseHeader {
        &self.header
    }

    /// The claims, NOT yet verified.
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `iss` claim, NOT yet verified: use it only to select an issuer's configuration.
    pub fn unverified_issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// `base64url(header) || '.' || base64url(payload)`, the bytes the signature covers.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The decoded signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub(crate) fn into_claims(self) -> Map<String, Value> {
        self.claims
    }
}

/// The segments of a compact JWS, split as [`UnverifiedToken::parse`] splits them (nothing
/// decoded yet): exactly three, header and payload not empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactJws<'a> {
    /// The base64url header segment, as sent.
    pub(crate) header: &'a str,
    /// The base64url payload segment.
    pub(crate) payload: &'a str,
    /// The base64url signature segment.
    pub(crate) signature: &'a str,
    /// `header '.' payload`: the bytes the signature covers.
    pub(crate) signing_input: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `token`; [`Rejection::MalformedToken`] unless it has exactly three segments and
    /// a non-empty header and payload.
    pub(crate) fn split(token: &'a str) -> Result<Self, Rejection> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::MalformedToken);
        };
        // An empty signature is well formed (the unsecured JWS of RFC 7515 §A.5); the `alg`
        // allow-list refuses `none`, and any other `alg` fails signature verification.
        if h.is_empty() || p.is_empty() {
            return Err(Rejection::MalformedToken);
        }
        // h.len() + 1 + p.len() is within `token`; `get` keeps this panic-free regardless.
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(Rejection::MalformedToken)?;
        Ok(Self {
            header: h,
            payload: p,
            signature: s,
            signing_input,
        })
    }
}

/// Canonical base64url without padding: rejects `=`, `+`, `/`, whitespace and non-zero trailing bits.
pub(crate) fn b64url(segment: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejection::MalformedToken)
}

/// Why a JSON document was refused by [`parse_object`]. Positions are 1-based, as serde_json
/// reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON (or nested deeper than serde_json's recursion limit).
    #[error("invalid JSON at line {line} column {column}")]
    Syntax {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// The document ends inside a value.
    #[error("JSON ends early, at line {line} column {column}")]
    Truncated {
        /// Line of the end.
        line: usize,
        /// Column of the end.
        column: usize,
    },
    /// One object has the same member name twice (RFC 7515 §5.2, RFC 8725 §3.1).
    #[error("duplicate member name at line {line} column {column}")]
    DuplicateMember {
        /// Line just after the repeated member's value.
        line: usize,
        /// Column just after the repeated member's value.
        column: usize,
    },
    /// Something follows the value.
    #[error("data after the JSON value at line {line} column {column}")]
    TrailingData {
        /// Line of the first extra character.
        line: usize,
        /// Column of the first extra character.
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
}

impl JsonError {
    fn from_serde(e: &serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Eof => JsonError::Truncated { line, column },
            // The visitor's only own error: serde_json refuses non-finite numbers itself, as
            // a syntax error, before `visit_f64` could see one.
            serde_json::error::Category::Data => JsonError::DuplicateMember { line, column },
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                JsonError::Syntax { line, column }
            }
        }
    }
}

/// Parses a JSON object, refusing duplicate member names at any depth (RFC 7515 §5.2 and
/// RFC 8725 §3.1 leave no room for "last one wins") and trailing data. Nesting is limited by
/// serde_json's recursion limit.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = de
        .deserialize_any(StrictVisitor)
        .map_err(|e| JsonError::from_serde(&e))?;
    de.end().map_err(|e| JsonError::TrailingData {
        line: e.line(),
        column: e.column(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(h: &str, c: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(c), enc("sig"))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","typ":"at+jwt"}"#,
            r#"{"iss":"x","n":{"a":1}}"#,
        );
        let p = UnverifiedToken::parse(&t).unwrap();
        assert_eq!(p.header().alg(), "ES256");
        assert_eq!(p.header().typ(), Some("at+jwt"));
        assert_eq!(p.signature(), b"sig");
        assert_eq!(p.signing_input(), t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn segment_count_and_emptiness() {
        let good = token(r#"{"alg":"RS256"}"#, "{}");
        for bad in [
            String::new(),
            "..".into(),
            format!("{good}."),
            format!(".{good}"),
            good.rsplit_once('.').unwrap().0.to_owned(),
        ] {
            assert_eq!(
                UnverifiedToken::parse(&bad).err(),
                Some(Rejection::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_signature_is_well_formed_but_empty() {
        let unsecured = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc("{}"));
        let p = UnverifiedToken::parse(&unsecured).unwrap();
        assert!(p.signature().is_empty());
        assert_eq!(p.header().alg(), "none");
    }

    #[test]
    fn non_canonical_base64url_is_refused() {
        let h = enc(r#"{"alg":"RS256"}"#);
        let c = enc("{}");
        for bad in [
            format!("{h}=.{c}.c2ln"),
            format!("{h}.{c}.c2ln=="),
            format!("{h}.{c}.c2l+"),
            format!("{h}.{c}.c2l/"),
            format!("{h}.{c} .c2ln"),
            format!("{h}.{c}.c2l"), // "si" is c2k; c2l has non-zero trailing bits
        ] {
            assert_eq!(
                UnverifiedToken::parse(&bad).err(),
                Some(Rejection::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        for (h, c) in [
            (r#"{"alg":"RS256","alg":"none"}"#, "{}"),
            (r#"{"alg":"RS256"}"#, r#"{"iss":"a","iss":"b"}"#),
            (
                r#"{"alg":"RS256"}"#,
                r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            ),
            (r#"{"alg":"RS256"}"#, r#"{"l":[{"k":1,"k":2}]}"#),
        ] {
            assert_eq!(
                UnverifiedToken::parse(&token(h, c)).err(),
                Some(Rejection::MalformedToken),
                "{h} {c}"
            );
        }
    }

    #[test]
    fn header_member_types() {
        let cases = [
            (r#"{"kid":"a"}"#, Rejection::DisallowedAlgorithm),
            (r#"{"alg":256}"#, Rejection::DisallowedAlgorithm),
            (r#"{"alg":"RS256","kid":1}"#, Rejection::MalformedToken),
            (
                r#"{"alg":"RS256","typ":["at+jwt"]}"#,
                Rejection::MalformedToken,
            ),
            (r#"{"alg":"RS256","crit":[]}"#, Rejection::MalformedToken),
            (r#"{"alg":"RS256","crit":"exp"}"#, Rejection::MalformedToken),
            (r#"{"alg":"RS256","crit":[1]}"#, Rejection::MalformedToken),
            (r#"["alg","RS256"]"#, Rejection::MalformedToken),
            (r#"{"alg":"RS256"} x"#, Rejection::MalformedToken),
        ];
        for (h, want) in cases {
            assert_eq!(
                UnverifiedToken::parse(&token(h, "{}")).err(),
                Some(want),
                "{h}"
            );
        }
    }

    #[test]
    fn claims_must_be_an_object() {
        for c in ["[]", "1", "\"s\"", "null", "{", ""] {
            assert_eq!(
                UnverifiedToken::parse(&token(r#"{"alg":"RS256"}"#, c)).err(),
                Some(Rejection::MalformedToken),
                "{c}"
            );
        }
    }

    #[test]
    fn json_errors_are_typed() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#).unwrap_err(),
            JsonError::DuplicateMember {
                line: 1,
                column: 13
            }
        );
        assert!(matches!(
            parse_object(br#"{"n":{"a":1,"a":2}}"#),
            Err(JsonError::DuplicateMember { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":1"#),
            Err(JsonError::Truncated { .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":}"#),
            Err(JsonError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_object(br#"{"a":1e400}"#),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            parse_object(br#"{} {}"#),
            Err(JsonError::TrailingData { line: 1, column: 4 })
        ));
        assert_eq!(parse_object(b"[1]").unwrap_err(), JsonError::NotAnObject);
        assert_eq!(
            JsonError::Syntax { line: 2, column: 7 }.to_string(),
            "invalid JSON at line 2 column 7"
        );
    }
}
