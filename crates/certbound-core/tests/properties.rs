//! Properties that hold for every input, checked with proptest (and, for single-byte changes,
//! exhaustively): the parsers never panic on arbitrary bytes, every correctly issued token
//! verifies whatever its claims, and no single-byte change to a valid token is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::OnceLock;

use certbound_core::{
    __private::parse_object, parse_authorization, Algorithm, BindingPolicy, Credentials, KeySet,
    Rejection, Step, Thumbprint, TokenPolicy, UnverifiedToken, VerifiedClaims, Verifier,
};
use certbound_core::{ForwardedCertificates, ForwardedFormat, IpCidr};
use certbound_core::{IntrospectionPolicy, IntrospectionResponse};
use certbound_dev::SigningKey;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.example/";
const AUD: &str = "https://api.example";

struct Fx {
    ec: SigningKey,
    rsa: SigningKey,
    set: KeySet,
}

fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        let ec = SigningKey::generate("ec", Algorithm::ES256).unwrap();
        let rsa = SigningKey::generate("rsa", Algorithm::RS256).unwrap();
        let doc = certbound_dev::jwks_document(&[&ec, &rsa]);
        let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap().keys;
        Fx { ec, rsa, set }
    })
}

fn client() -> Thumbprint {
    Thumbprint::of_der(b"property client")
}

fn decide(token: &str) -> Result<VerifiedClaims, Rejection> {
    let policy = TokenPolicy::new(ISS, AUD).require_at_jwt(true);
    // Through the Verifier, as the layer does: NeedKey → the key set → resume.
    let verifier = Verifier::new(vec![policy.clone()], BindingPolicy::Required).unwrap();
    let accepted = match verifier.verify(Credentials::bearer(token), Some(client()), NOW) {
        Step::Accept(accepted) => accepted,
        Step::Reject(rejection) => return Err(rejection),
        Step::NeedKey(need) => {
            let key = fx()
                .set
                .get(need.kid(), need.alg())
                .map(std::sync::Arc::clone);
            need.resume(key.map_err(Rejection::from))?
        }
        Step::NeedIntrospection(_) => unreachable!("introspection is off"),
    };
    Ok(VerifiedClaims::clone(accepted.verified().claims()))
}

fn base_claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "s", "exp": NOW + 600, "iat": NOW,
           "cnf": {"x5t#S256": client().to_string()}})
}

fn all_formats() -> Vec<ForwardedFormat> {
    ForwardedFormat::every(&HeaderName::from_static("x-ssl-client-cert"))
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const REGISTERED: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "sub",
    "jti",
    "client_id",
    "scope",
    "cnf",
];

prop_compose! {
    /// Valid claims with random contents: any strings, any extra claims, aud as a string or a
    /// list containing ours, exp in the future, nbf/iat in the past, extra cnf members.
    fn valid_claims()(
        sub in ".*",
        jti in ".*",
        client_id in ".*",
        scope in "[a-z:]{0,8}( [a-z:]{1,8}){0,4}",
        aud_list in prop::option::of(prop::collection::vec("\\PC{0,20}", 0..4)),
        exp_ahead in 1u64..1_000_000_000,
        nbf_ago in prop::option::of(0u64..1_000_000_000),
        iat_ago in prop::option::of(0u64..1_000_000_000),
        fractional in any::<bool>(),
        extra in prop::collection::btree_map("[a-zA-Z_#$.]{1,12}", json_value(), 0..6),
        cnf_extra in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..3),
    ) -> Value {
        let mut c = Map::new();
        for (k, v) in extra {
            if !REGISTERED.contains(&k.as_str()) && k != "x5t#S256" {
                c.insert(k, v);
            }
        }
        c.insert("iss".into(), json!(ISS));
        c.insert("aud".into(), match aud_list {
            None => json!(AUD),
            Some(mut list) => {
                let at = list.len() / 2;
                list.insert(at, AUD.to_owned());
                json!(list)
            }
        });
        let exp = NOW + exp_ahead;
        c.insert("exp".into(), if fractional { json!(exp as f64 + 0.25) } else { json!(exp) });
        if let Some(ago) = nbf_ago { c.insert("nbf".into(), json!(NOW - ago)); }
        if let Some(ago) = iat_ago { c.insert("iat".into(), json!(NOW - ago)); }
        c.insert("sub".into(), json!(sub));
        c.insert("jti".into(), json!(jti));
        c.insert("client_id".into(), json!(client_id));
        c.insert("scope".into(), json!(scope));
        let mut cnf: Map<String, Value> = cnf_extra.into_iter().collect();
        cnf.insert("x5t#S256".into(), json!(client().to_string()));
        c.insert("cnf".into(), Value::Object(cnf));
        Value::Object(c)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_token_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(t) = UnverifiedToken::parse(&s) {
            let _ = TokenPolicy::new(ISS, AUD).check_header(t.header());
        }
        let _ = parse_object(&bytes);
    }

    #[test]
    fn token_shaped_strings_never_panic(
        h in "[A-Za-z0-9_=+/-]{0,80}", c in "[A-Za-z0-9_=+/-]{0,80}", s in "[A-Za-z0-9_=+/-]{0,90}",
        dots in 0usize..5,
    ) {
        let t = [h, c, s].join(&".".repeat(dots.max(1)));
        let _ = decide(&t);
    }

    #[test]
    fn random_json_in_the_segments_never_panics(header in json_value(), claims in json_value()) {
        let t = fx().ec.sign_with_header(&header, &claims).unwrap();
        let _ = decide(&t);
        // The same claims under a sane header exercise the claim rules after a good signature.
        let t = fx().ec.sign_with_header(&json!({"alg":"ES256","kid":"ec","typ":"at+jwt"}), &claims).unwrap();
        let _ = decide(&t);
    }

    #[test]
    fn random_bytes_never_panic_bearer_extraction(bytes in prop::collection::vec(any::<u8>(), 0..300), max in 0usize..400) {
        if let Ok(t) = parse_authorization(&bytes, max) {
            prop_assert!(!t.is_empty() && t.len() <= max);
        }
        let mut prefixed = b"Bearer ".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = parse_authorization(&prefixed, max);
    }

    #[test]
    fn random_strings_never_panic_thumbprint_parsing(s in "\\PC{0,60}", b in "[A-Za-z0-9_-]{43}") {
        let _ = Thumbprint::from_cnf_value(&s);
        let _ = Thumbprint::from_hex(&s);
        // 43 alphabet characters parse exactly when they are the canonical spelling.
        if let Ok(tp) = Thumbprint::from_cnf_value(&b) {
            prop_assert_eq!(tp.to_string(), b);
        }
    }

    /// An introspection response is network input: whatever its bytes, content type or JSON
    /// members, checking it never panics, and nothing but an object with `active: true` (and
    /// members of the right types) is ever accepted.
    #[test]
    fn random_introspection_responses_never_panic_nor_pass_without_active_true(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        doc in json_value(),
        signed in any::<bool>(),
    ) {
        let verifier = Verifier::new(vec![TokenPolicy::new(ISS, AUD)], BindingPolicy::IfBound)
            .unwrap()
            .introspection(IntrospectionPolicy::default());
        let ct = if signed { "application/token-introspection+jwt" } else { "application/json" };
        let _ = verifier.check_introspection_response(Some(ct), &bytes, NOW);
        let body = doc.to_string();
        let active = doc.get("active") == Some(&Value::Bool(true));
        match verifier.check_introspection_response(Some("application/json"), body.as_bytes(), NOW) {
            Ok(IntrospectionResponse::Checked(_)) => prop_assert!(active, "{body}"),
            Ok(IntrospectionResponse::Signed(_)) => prop_assert!(false, "JSON read as signed: {body}"),
            Err(_) => {}
        }
    }

    #[test]
    fn random_bytes_never_panic_jwks_parsing(bytes in prop::collection::vec(any::<u8>(), 0..400), doc in json_value()) {
        let _ = KeySet::from_jwks(&bytes);
        let _ = KeySet::from_jwks(json!({"keys": [doc.clone()]}).to_string().as_bytes());
        let _ = KeySet::from_jwks(json!({"keys": doc}).to_string().as_bytes());
    }

    #[test]
    fn random_values_never_panic_forwarded_parsers(
        value in "[\\x20-\\x7e]{0,400}", which in 0usize..10, peer_trusted in any::<bool>(), aux in "[\\x20-\\x7e]{0,20}",
    ) {
        let format = all_formats()[which].clone();
        let source = ForwardedCertificates::new(format.clone(), vec!["10.0.0.0/8".parse::<IpCidr>().unwrap()]);
        let peer: IpAddr = if peer_trusted { "10.9.9.9" } else { "192.0.2.9" }.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(format.header(), HeaderValue::from_str(&value).unwrap());
        headers.insert("client-certificate-ca-verified", HeaderValue::from_str(&aux).unwrap());
        let r = source.extract(&headers, Some(peer));
        if !peer_trusted {
            prop_assert_eq!(r, Err(Rejection::UntrustedForwardedCertificate));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tokens_with_random_valid_claims_always_verify(claims in valid_claims(), rsa in any::<bool>()) {
        let signer = if rsa { &fx().rsa } else { &fx().ec };
        let t = signer.sign(&claims).unwrap();
        let verified = decide(&t);
        prop_assert!(verified.is_ok(), "{:?} for {}", verified.err(), claims);
        let v = verified.unwrap();
        prop_assert_eq!(v.subject(), claims["sub"].as_str());
        prop_assert_eq!(v.jti(), claims["jti"].as_str());
        prop_assert_eq!(v.client_id(), claims["client_id"].as_str());
        prop_assert_eq!(v.confirmation().certificate(), Some(&client()));
        // Every claim comes through (values too, except that serde_json may round a float's
        // last digit).
        prop_assert!(v.all().keys().eq(claims.as_object().unwrap().keys()));
        prop_assert_eq!(v.audience().contains(&AUD.to_owned()), true);
    }

    #[test]
    fn random_single_byte_changes_are_rejected(pos in any::<prop::sample::Index>(), byte in any::<u8>(), rsa in any::<bool>()) {
        let t = valid_token(rsa);
        let mut bytes = t.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(s) = String::from_utf8(bytes) {
            prop_assert!(decide(&s).is_err(), "accepted a changed token at {}", i);
        }
    }
}

fn valid_token(rsa: bool) -> String {
    static TOKENS: OnceLock<(String, String)> = OnceLock::new();
    let (ec, rs) = TOKENS.get_or_init(|| (spare_bits_token(&fx().ec), spare_bits_token(&fx().rsa)));
    if rsa {
        rs.clone()
    } else {
        ec.clone()
    }
}

/// A valid token whose three segments all end in a character with spare low bits (length 2 or
/// 3 mod 4), found by padding the header and the claims.
fn spare_bits_token(signer: &SigningKey) -> String {
    let spare = |t: &str| t.split('.').all(|s| s.len() % 4 >= 2);
    for hpad in 0..8 {
        for cpad in 0..8 {
            let h = json!({"alg": format!("{:?}", signer.alg()), "kid": signer.kid(),
                           "typ": "at+jwt", "p": "h".repeat(hpad)});
            let mut c = base_claims();
            c["p"] = json!("c".repeat(cpad));
            let t = signer.sign_with_header(&h, &c).unwrap();
            if spare(&t) {
                return t;
            }
        }
    }
    panic!("no padding gives spare bits in every segment");
}

/// Every position, every other byte value: 255 × length changes, none accepted. This includes
/// the base64url characters of a segment's last position that decode to the same bytes (the
/// spare low bits), which only canonical decoding refuses.
#[test]
fn every_single_byte_change_is_rejected() {
    for rsa in [false, true] {
        let t = valid_token(rsa);
        assert!(decide(&t).is_ok(), "control token");
        let mut same_bytes_spellings = 0;
        for i in 0..t.len() {
            for b in 0..=255u8 {
                if t.as_bytes()[i] == b {
                    continue;
                }
                let mut bytes = t.clone().into_bytes();
                bytes[i] = b;
                let Ok(s) = String::from_utf8(bytes) else {
                    continue;
                };
                let outcome = decide(&s);
                assert!(outcome.is_err(), "accepted byte {b:#04x} at {i}");
                if is_same_bytes_spelling(&t, &s) {
                    same_bytes_spellings += 1;
                    assert_eq!(outcome.err(), Some(Rejection::MalformedToken), "{i} {b}");
                }
            }
        }
        // Three segments, each with 3 (2 spare bits) or 15 (4 spare bits) other spellings.
        assert!(same_bytes_spellings >= 9, "{same_bytes_spellings}");
    }
}

/// Whether `changed` decodes (leniently) to the same bytes as `original`, segment by segment.
fn is_same_bytes_spelling(original: &str, changed: &str) -> bool {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    let lenient = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let a: Vec<&str> = original.split('.').collect();
    let b: Vec<&str> = changed.split('.').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| match (lenient.decode(x), lenient.decode(y)) {
                (Ok(p), Ok(q)) => p == q,
                _ => false,
            })
}
