//! Strictness, one rule per test, written from the specifications rather than from the code:
//! RFC 7515 (JWS), RFC 7519 (JWT), RFC 8725 (JWT BCP), RFC 8705 (mTLS-bound tokens),
//! RFC 9068 (JWT access tokens), RFC 7800 (`cnf`).
//!
//! Every token here is correctly signed (with `certbound_dev::SigningKey`, or by hand over the
//! exact JSON bytes) unless the rule is about the signature, so a rejection is the rule's doing
//! and never an accident of a bad signature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound_core::{
    parse_authorization, Algorithm, BindingPolicy, Credentials, KeySet, Rejection, Step,
    Thumbprint, TokenPolicy, UnverifiedToken, VerificationKey, VerifiedClaims, Verifier,
    DEFAULT_MAX_TOKEN_LEN,
};
use certbound_core::{
    ForwardedCertificates, ForwardedFormat, IpCidr, DEFAULT_MAX_FORWARDED_HEADER_LEN,
};
use certbound_dev::SigningKey;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.example/";
const AUD: &str = "https://api.example";
const CLIENT_DER: &[u8] = b"the client's leaf certificate";

struct Keys {
    ec: SigningKey,
    ec384: SigningKey,
    rsa: SigningKey,
    /// Not in the key set: what an attacker signs with.
    attacker: SigningKey,
    set: KeySet,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ec = SigningKey::generate("ec", Algorithm::ES256).unwrap();
        let ec384 = SigningKey::generate("ec384", Algorithm::ES384).unwrap();
        let rsa = SigningKey::generate("rsa", Algorithm::RS256).unwrap();
        let attacker = SigningKey::generate("attacker", Algorithm::ES256).unwrap();
        let doc = certbound_dev::jwks_document(&[&ec, &ec384, &rsa]);
        let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap().keys;
        Keys {
            ec,
            ec384,
            rsa,
            attacker,
            set,
        }
    })
}

fn client() -> Thumbprint {
    Thumbprint::of_der(CLIENT_DER)
}

fn policy() -> TokenPolicy {
    TokenPolicy::new(ISS, AUD)
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "user-1", "client_id": "client-1", "scope": "read",
        "jti": "id-1", "iat": NOW - 10, "exp": NOW + 600,
        "cnf": {"x5t#S256": client().to_string()},
    })
}

fn header() -> Value {
    json!({"alg": "ES256", "kid": "ec", "typ": "at+jwt"})
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

/// Signed by the real "ec" key under `header`.
fn signed(header: &Value, claims: &Value) -> String {
    keys().ec.sign_with_header(header, claims).unwrap()
}

/// Signs the exact bytes `header_json` and `claims_json` (duplicate members and odd spellings
/// survive) with `signer`.
fn signed_raw(signer: &SigningKey, header_json: &[u8], claims_json: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let pem = signer.pkcs8_pem().as_bytes();
    let key = match signer.alg().family() {
        jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem).unwrap(),
        _ => EncodingKey::from_ec_pem(pem).unwrap(),
    };
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, signer.alg()).unwrap();
    format!("{input}.{sig}")
}

/// Signs `input` (already `b64(header).b64(claims)`) with the "ec" key.
fn sign_input(input: &str) -> String {
    let key = EncodingKey::from_ec_pem(keys().ec.pkcs8_pem().as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

/// The whole decision, as the layer makes it: parse, header, key, signature and claims, binding.
fn decide_with(policy: &TokenPolicy, token: &str) -> Result<VerifiedClaims, Rejection> {
    // Through the Verifier, as the layer does: NeedKey → the key set → resume.
    let verifier = Verifier::new(vec![policy.clone()], BindingPolicy::Required)
        .unwrap()
        .max_token_len(usize::MAX); // these tests are about the parser, not the size limit
    let accepted = match verifier.verify(Credentials::bearer(token), Some(client()), NOW) {
        Step::Accept(accepted) => accepted,
        Step::Reject(rejection) => return Err(rejection),
        Step::NeedKey(need) => {
            let key = keys()
                .set
                .get(need.kid(), need.alg())
                .map(std::sync::Arc::clone);
            need.resume(key.map_err(Rejection::from))?
        }
        Step::NeedIntrospection(_) => unreachable!("introspection is off"),
    };
    Ok(VerifiedClaims::clone(accepted.verified().claims()))
}

fn decide(token: &str) -> Result<VerifiedClaims, Rejection> {
    decide_with(&policy(), token)
}

/// Asserts the token is refused with `want`, and that this is a 401 invalid_token.
#[track_caller]
fn refused(token: &str, want: Rejection, why: &str) {
    let got = decide(token).err();
    assert_eq!(got, Some(want), "{why}: {token}");
    assert_eq!(want.status(), 401);
    assert_eq!(want.class().error_code(), Some("invalid_token"));
}

/// Asserts the token is refused with one of `allowed` (where the RFC leaves the reason open).
#[track_caller]
fn refused_any(token: &str, allowed: &[Rejection], why: &str) {
    match decide(token) {
        Ok(_) => panic!("{why}: accepted {token}"),
        Err(r) => {
            assert!(allowed.contains(&r), "{why}: {r:?} not in {allowed:?}");
            assert_eq!(r.status(), 401, "{why}");
        }
    }
}

fn segments(t: &str) -> [String; 3] {
    let v: Vec<&str> = t.split('.').collect();
    assert_eq!(v.len(), 3);
    [v[0].to_owned(), v[1].to_owned(), v[2].to_owned()]
}

#[test]
fn control_a_correct_token_is_accepted() {
    let c = decide(&signed(&header(), &claims())).unwrap();
    assert_eq!(c.subject(), Some("user-1"));
    assert_eq!(c.confirmation().certificate(), Some(&client()));
    let rsa = keys()
        .rsa
        .sign_with_header(&json!({"alg":"RS256","kid":"rsa"}), &claims())
        .unwrap();
    decide(&rsa).unwrap();
}

// ---- RFC 7515 §3.1 / §7.1, RFC 7519 §7.2: the compact serialization ----

#[test]
fn exactly_three_segments() {
    let t = signed(&header(), &claims());
    let [h, c, s] = segments(&t);
    for bad in [
        format!("{h}.{c}"),
        format!("{h}.{c}.{s}.{s}"),
        format!("{h}.{c}.{s}."),
        format!(".{h}.{c}.{s}"),
        format!("{h}..{c}.{s}"),
        // A JWE (RFC 7516 §7.1) has five segments; certbound only accepts JWS.
        format!("{h}.{c}.{s}.{s}.{s}"),
        h.clone(),
        String::new(),
        "..".into(),
    ] {
        refused(&bad, Rejection::MalformedToken, "not three segments");
    }
}

#[test]
fn empty_header_or_payload_segment_is_malformed_and_empty_signature_never_verifies() {
    let t = signed(&header(), &claims());
    let [h, c, s] = segments(&t);
    refused(
        &format!(".{c}.{s}"),
        Rejection::MalformedToken,
        "empty header",
    );
    refused(
        &format!("{h}..{s}"),
        Rejection::MalformedToken,
        "empty payload",
    );
    refused(
        &format!("{h}.{c}."),
        Rejection::BadSignature,
        "stripped signature",
    );
}

#[test]
fn padding_is_not_base64url() {
    let t = signed(&header(), &claims());
    let [h, c, s] = segments(&t);
    for bad in [
        format!("{h}=.{c}.{s}"),
        format!("{h}.{c}=.{s}"),
        format!("{h}.{c}.{s}="),
        format!("{h}.{c}.{s}=="),
        format!("{h}==.{c}.{s}"),
    ] {
        refused(&bad, Rejection::MalformedToken, "padding");
    }
}

/// A header whose base64url contains both `-` and `_`, correctly signed.
fn token_with_url_safe_chars() -> String {
    // ">>>" encodes to "Pj4-" and "???" to "Pz8_".
    let h = json!({"alg":"ES256","kid":"ec","x":">>>???>>>???"});
    let t = signed(&h, &claims());
    assert!(t.split('.').next().unwrap().contains('-'));
    assert!(t.split('.').next().unwrap().contains('_'));
    decide(&t).unwrap();
    t
}

#[test]
fn standard_base64_alphabet_is_refused() {
    let t = token_with_url_safe_chars();
    let [h, c, s] = segments(&t);
    let plus = h.replace('-', "+");
    let slash = h.replace('_', "/");
    refused(&format!("{plus}.{c}.{s}"), Rejection::MalformedToken, "'+'");
    refused(
        &format!("{slash}.{c}.{s}"),
        Rejection::MalformedToken,
        "'/'",
    );
    // Even re-signed over the standard-alphabet text, it is not base64url.
    refused(
        &sign_input(&format!("{plus}.{c}")),
        Rejection::MalformedToken,
        "'+' re-signed",
    );
}

#[test]
fn whitespace_anywhere_is_refused() {
    let t = signed(&header(), &claims());
    let [h, c, s] = segments(&t);
    let (h1, h2) = h.split_at(8);
    for bad in [
        format!(" {t}"),
        format!("{t} "),
        format!("{t}\n"),
        format!("{h1} {h2}.{c}.{s}"),
        format!("{h1}\n{h2}.{c}.{s}"),
        format!("{h}.{c}.\t{s}"),
        format!("{h}. {c}.{s}"),
        format!("{h}.{c}.{s}\r\n"),
    ] {
        refused(&bad, Rejection::MalformedToken, "whitespace");
    }
}

/// Replaces the last character of a segment whose length leaves unused low bits (2 or 3 mod 4)
/// by another that decodes to the same bytes.
fn same_bytes_other_spelling(seg: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_mask = match seg.len() % 4 {
        2 => 0x0f,
        3 => 0x03,
        _ => return None,
    };
    let last = *seg.as_bytes().last()?;
    let idx = ALPHABET.iter().position(|&c| c == last)?;
    let other = ALPHABET[(idx & !unused_mask) | (!idx & unused_mask & 0x01)];
    let mut out = seg[..seg.len() - 1].to_owned();
    out.push(other as char);
    Some(out)
}

#[test]
fn non_canonical_trailing_bits_are_refused_in_every_segment() {
    // Find a header/claims pair whose three segments all have spare trailing bits.
    let mut found = None;
    for pad in 0..12 {
        let h = json!({"alg":"ES256","kid":"ec","p":"x".repeat(pad)});
        for cpad in 0..12 {
            let c = with(claims(), "p", json!("y".repeat(cpad)));
            let t = signed(&h, &c);
            let segs = segments(&t);
            if segs.iter().all(|s| same_bytes_other_spelling(s).is_some()) {
                found = Some(t);
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let t = found.expect("some padding gives spare bits in all three segments");
    decide(&t).unwrap();
    let [h, c, s] = segments(&t);
    let h2 = same_bytes_other_spelling(&h).unwrap();
    let c2 = same_bytes_other_spelling(&c).unwrap();
    let s2 = same_bytes_other_spelling(&s).unwrap();
    // The lenient decoder would read the same bytes: the spelling alone differs.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    assert_eq!(lenient.decode(&s2).unwrap(), lenient.decode(&s).unwrap());
    refused(
        &format!("{h2}.{c}.{s}"),
        Rejection::MalformedToken,
        "header bits",
    );
    refused(
        &format!("{h}.{c2}.{s}"),
        Rejection::MalformedToken,
        "claims bits",
    );
    refused(
        &format!("{h}.{c}.{s2}"),
        Rejection::MalformedToken,
        "signature bits",
    );
    // Re-signed over the odd spelling: still not canonical base64url.
    refused(
        &sign_input(&format!("{h2}.{c}")),
        Rejection::MalformedToken,
        "re-signed header bits",
    );
}

#[test]
fn impossible_base64_lengths_are_refused() {
    let t = signed(&header(), &claims());
    let [h, c, s] = segments(&t);
    // A length of 1 mod 4 cannot encode whole bytes.
    let h5 = if h.len() % 4 == 0 {
        format!("{h}A")
    } else {
        format!("{h}{}", "A".repeat(5 - h.len() % 4))
    };
    assert_eq!(h5.len() % 4, 1);
    refused(
        &format!("{h5}.{c}.{s}"),
        Rejection::MalformedToken,
        "1 mod 4",
    );
}

// ---- RFC 7515 §5.2 step 3/4, RFC 7519 §7.2, RFC 8725 §3.7: the JSON ----

#[test]
fn header_and_claims_must_be_json_objects() {
    for (h, c) in [
        (r#"["alg","ES256"]"#.to_owned(), claims().to_string()),
        (r#""ES256""#.to_owned(), claims().to_string()),
        ("null".to_owned(), claims().to_string()),
        (r#"{"alg":"ES256","kid":"ec"}"#.to_owned(), "[]".to_owned()),
        (r#"{"alg":"ES256","kid":"ec"}"#.to_owned(), "42".to_owned()),
        (
            r#"{"alg":"ES256","kid":"ec"}"#.to_owned(),
            r#""claims""#.to_owned(),
        ),
        (r#"{"alg":"ES256","kid":"ec"}"#.to_owned(), "".to_owned()),
    ] {
        let t = signed_raw(&keys().ec, h.as_bytes(), c.as_bytes());
        refused_any(
            &t,
            &[Rejection::MalformedToken, Rejection::DisallowedAlgorithm],
            &format!("{h} / {c}"),
        );
    }
}

#[test]
fn trailing_data_after_the_json_object_is_refused() {
    let h = br#"{"alg":"ES256","kid":"ec"}"#;
    let c = claims().to_string();
    for (hh, cc) in [
        (
            format!("{} {{}}", std::str::from_utf8(h).unwrap()),
            c.clone(),
        ),
        (std::str::from_utf8(h).unwrap().to_owned(), format!("{c}x")),
        (
            std::str::from_utf8(h).unwrap().to_owned(),
            format!("{c}{c}"),
        ),
        (
            std::str::from_utf8(h).unwrap().to_owned(),
            format!("{c}\u{0}"),
        ),
    ] {
        refused(
            &signed_raw(&keys().ec, hh.as_bytes(), cc.as_bytes()),
            Rejection::MalformedToken,
            "trailing data",
        );
    }
}

#[test]
fn json_must_be_utf8() {
    let c = claims().to_string();
    // Invalid UTF-8 inside a string.
    let mut bad_utf8 = br#"{"alg":"ES256","kid":"ec","x":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#""}"#);
    refused(
        &signed_raw(&keys().ec, &bad_utf8, c.as_bytes()),
        Rejection::MalformedToken,
        "invalid UTF-8",
    );
    // UTF-16LE claims.
    let utf16: Vec<u8> = c.encode_utf16().flat_map(u16::to_le_bytes).collect();
    refused(
        &signed_raw(&keys().ec, br#"{"alg":"ES256","kid":"ec"}"#, &utf16),
        Rejection::MalformedToken,
        "UTF-16",
    );
    // A byte-order mark is not JSON whitespace.
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(c.as_bytes());
    refused(
        &signed_raw(&keys().ec, br#"{"alg":"ES256","kid":"ec"}"#, &bom),
        Rejection::MalformedToken,
        "BOM",
    );
    // A lone surrogate escape is not a Unicode string.
    let lone = format!(
        r#"{{"iss":"{ISS}\ud800","aud":"{AUD}","exp":{}}}"#,
        NOW + 60
    );
    refused(
        &signed_raw(
            &keys().ec,
            br#"{"alg":"ES256","kid":"ec"}"#,
            lone.as_bytes(),
        ),
        Rejection::MalformedToken,
        "lone surrogate",
    );
}

#[test]
fn duplicate_header_members_are_refused_never_resolved() {
    let c = claims().to_string();
    for h in [
        r#"{"alg":"ES256","alg":"none","kid":"ec"}"#,
        r#"{"alg":"none","alg":"ES256","kid":"ec"}"#,
        r#"{"alg":"ES256","kid":"ec","kid":"other"}"#,
        r#"{"alg":"ES256","kid":"ec","typ":"at+jwt","typ":"JWT"}"#,
        // The same name spelled with an escape is the same member (RFC 8259 §7).
        r#"{"alg":"ES256","\u0061lg":"ES256","kid":"ec"}"#,
    ] {
        refused(
            &signed_raw(&keys().ec, h.as_bytes(), c.as_bytes()),
            Rejection::MalformedToken,
            h,
        );
    }
}

#[test]
fn duplicate_claims_are_refused_never_resolved() {
    let h = br#"{"alg":"ES256","kid":"ec"}"#;
    let tp = client().to_string();
    let base = format!(
        r#""aud":"{AUD}","exp":{},"cnf":{{"x5t#S256":"{tp}"}}"#,
        NOW + 600
    );
    for c in [
        format!(r#"{{"iss":"https://evil/","iss":"{ISS}",{base}}}"#),
        format!(r#"{{"iss":"{ISS}","iss":"{ISS}",{base}}}"#),
        format!(r#"{{"iss":"{ISS}",{base},"exp":1}}"#),
        format!(r#"{{"iss":"{ISS}",{base},"aud":"https://other"}}"#),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"cnf":{{"x5t#S256":"{tp}","x5t#S256":"{tp}"}}}}"#,
            NOW + 600
        ),
        format!(r#"{{"iss":"{ISS}",{base},"ext":[{{"a":1,"a":2}}]}}"#),
        format!(r#"{{"\u0069ss":"{ISS}","iss":"{ISS}",{base}}}"#),
    ] {
        refused(
            &signed_raw(&keys().ec, h, c.as_bytes()),
            Rejection::MalformedToken,
            &c,
        );
    }
}

#[test]
fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    // 10 000 nested arrays: far beyond any real claim, refused by the nesting limit.
    let deep = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"x":{}{}}}"#,
        NOW + 600,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    refused(
        &signed_raw(
            &keys().ec,
            br#"{"alg":"ES256","kid":"ec"}"#,
            deep.as_bytes(),
        ),
        Rejection::MalformedToken,
        "nesting bomb",
    );
    let deep_obj = format!(
        r#"{{"alg":"ES256","kid":"ec","x":{}1{}}}"#,
        r#"{"a":"#.repeat(5_000),
        "}".repeat(5_000)
    );
    refused(
        &signed_raw(
            &keys().ec,
            deep_obj.as_bytes(),
            claims().to_string().as_bytes(),
        ),
        Rejection::MalformedToken,
        "nested header objects",
    );
}

// ---- RFC 7515 §4.1.1, RFC 8725 §3.1–3.2: alg ----

#[test]
fn alg_must_be_present() {
    refused(
        &signed(&json!({"kid":"ec"}), &claims()),
        Rejection::DisallowedAlgorithm,
        "no alg",
    );
}

#[test]
fn alg_must_be_a_string() {
    for alg in [
        json!(null),
        json!(256),
        json!(["ES256"]),
        json!({"name":"ES256"}),
        json!(true),
    ] {
        refused_any(
            &signed(&json!({"alg": alg, "kid":"ec"}), &claims()),
            &[Rejection::DisallowedAlgorithm, Rejection::MalformedToken],
            "alg not a string",
        );
    }
}

#[test]
fn alg_none_in_every_spelling_is_refused() {
    let c = URL_SAFE_NO_PAD.encode(claims().to_string());
    for alg in [
        "none",
        "None",
        "NONE",
        "nOnE",
        "none ",
        " none",
        "none\u{0}",
    ] {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "ec"}).to_string());
        // Unsigned, and with a real signature over the same input.
        refused(&format!("{h}.{c}."), Rejection::DisallowedAlgorithm, alg);
        refused(
            &sign_input(&format!("{h}.{c}")),
            Rejection::DisallowedAlgorithm,
            alg,
        );
    }
}

#[test]
fn alg_is_case_sensitive_and_exact() {
    for alg in [
        "es256",
        "Es256",
        "ES256 ",
        " ES256",
        "ES256\u{0}",
        "ES-256",
        "ECDSA",
    ] {
        refused(
            &signed(&json!({"alg": alg, "kid":"ec"}), &claims()),
            Rejection::DisallowedAlgorithm,
            alg,
        );
    }
}

#[test]
fn alg_outside_the_allow_list_is_refused_even_when_the_signature_is_good() {
    // Only RS256 allowed: a correctly ES256-signed token is still refused (RFC 8725 §3.2).
    let only_rs = policy().algorithms([Algorithm::RS256]);
    assert_eq!(
        decide_with(&only_rs, &signed(&header(), &claims())).err(),
        Some(Rejection::DisallowedAlgorithm)
    );
    // HMAC is never in the default list.
    refused(
        &signed(&json!({"alg":"HS256","kid":"ec"}), &claims()),
        Rejection::DisallowedAlgorithm,
        "HS256 by default",
    );
    // Algorithms jsonwebtoken does not implement.
    for alg in ["ES512", "RS1", "HS1", "A128KW", "dir", "ES256K", "ed25519"] {
        refused(
            &signed(&json!({"alg": alg, "kid":"ec"}), &claims()),
            Rejection::DisallowedAlgorithm,
            alg,
        );
    }
    // "Ed25519" (RFC 9864) is EdDSA: allowed where EdDSA is, and only for an Ed25519 key.
    refused(
        &signed(&json!({"alg": "Ed25519", "kid":"ec"}), &claims()),
        Rejection::KeyAlgorithmMismatch,
        "Ed25519 with a P-256 key",
    );
    let no_eddsa = policy().algorithms([Algorithm::ES256]);
    assert_eq!(
        decide_with(
            &no_eddsa,
            &signed(&json!({"alg": "Ed25519", "kid":"ec"}), &claims())
        )
        .err(),
        Some(Rejection::DisallowedAlgorithm)
    );
}

#[test]
fn alg_must_fit_the_key_type() {
    // RS256 signed by the RSA key, but pointing at the EC key's kid.
    let t = keys()
        .rsa
        .sign_with_header(&json!({"alg":"RS256","kid":"ec"}), &claims())
        .unwrap();
    refused(&t, Rejection::KeyAlgorithmMismatch, "RSA alg, EC key");
    // ES256 signed by the EC key, pointing at the RSA key's kid.
    refused(
        &signed(&json!({"alg":"ES256","kid":"rsa"}), &claims()),
        Rejection::KeyAlgorithmMismatch,
        "EC alg, RSA key",
    );
}

#[test]
fn alg_must_fit_the_curve() {
    // ES384 signed by the P-384 key but naming the P-256 key, and the other way round.
    let t = keys()
        .ec384
        .sign_with_header(&json!({"alg":"ES384","kid":"ec"}), &claims())
        .unwrap();
    refused(&t, Rejection::KeyAlgorithmMismatch, "ES384 with P-256");
    refused(
        &signed(&json!({"alg":"ES256","kid":"ec384"}), &claims()),
        Rejection::KeyAlgorithmMismatch,
        "ES256 with P-384",
    );
}

#[test]
fn alg_must_equal_the_jwk_alg_when_the_jwk_has_one() {
    // The RSA JWK says "alg":"RS256"; a PS256 signature by the same private key is refused.
    let pem = keys().rsa.pkcs8_pem();
    let ps = SigningKey::from_pkcs8_pem("rsa", Algorithm::PS256, pem).unwrap();
    let t = ps
        .sign_with_header(&json!({"alg":"PS256","kid":"rsa"}), &claims())
        .unwrap();
    refused(
        &t,
        Rejection::KeyAlgorithmMismatch,
        "PS256 with an RS256 JWK",
    );
    // Without a JWK alg the same signature verifies: the family decides (see SECURITY.md).
    let mut jwk = keys().rsa.public_jwk().clone();
    jwk.as_object_mut().unwrap().remove("alg");
    let set = KeySet::new([VerificationKey::from_jwk(jwk.as_object().unwrap()).unwrap()]);
    let parsed = UnverifiedToken::parse(&t).unwrap();
    let alg = policy().check_header(parsed.header()).unwrap();
    let key = set.get(Some("rsa"), alg).unwrap();
    policy().verify(parsed, alg, key, NOW).unwrap();
}

#[test]
fn hmac_with_a_public_key_as_secret_is_refused() {
    // The classic key confusion: alg HS256 with the RSA public key (as published) as the secret,
    // even when the deployment allows HS256.
    let allow_hs = policy().algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::HS256]);
    for (kid, secret) in [
        ("rsa", keys().rsa.public_jwk().to_string()),
        (
            "rsa",
            keys().rsa.public_jwk()["n"].as_str().unwrap().to_owned(),
        ),
        ("ec", keys().ec.public_jwk().to_string()),
    ] {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg":"HS256","kid":kid}).to_string()),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )
        .unwrap();
        let t = format!("{input}.{sig}");
        assert_eq!(
            decide_with(&allow_hs, &t).err(),
            Some(Rejection::KeyAlgorithmMismatch),
            "{kid}"
        );
    }
}

#[test]
fn a_jwks_never_supplies_an_hmac_key() {
    // RFC 8725 §3.1 / §3.5: a symmetric key in a public document is skipped, so a token signed
    // with that published "secret" has no key at all.
    let doc = json!({"keys":[
        {"kty":"oct","kid":"shared","k": URL_SAFE_NO_PAD.encode("published secret")},
        keys().ec.public_jwk(),
    ]});
    let parsed = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.skipped.len(), 1);
    assert!(parsed.keys.get(Some("shared"), Algorithm::HS256).is_err());
}

// ---- RFC 7515 §4.1.2–4.1.6, RFC 8725 §3.10: keys come only from the configured source ----

#[test]
fn embedded_key_headers_are_never_used_to_find_or_trust_a_key() {
    let attacker = &keys().attacker;
    let evil_jwk = attacker.public_jwk().clone();
    let evil_headers = [
        json!({"alg":"ES256","kid":"attacker","jwk": evil_jwk}),
        json!({"alg":"ES256","kid":"attacker","jku":"https://evil.example/jwks.json"}),
        json!({"alg":"ES256","kid":"attacker","x5u":"https://evil.example/cert.pem"}),
        json!({"alg":"ES256","kid":"attacker","x5c":["MIIBszCCAVmgAwIBAgIUQ"]}),
        json!({"alg":"ES256","jwk": evil_jwk}),
    ];
    for h in &evil_headers {
        let t = attacker.sign_with_header(h, &claims()).unwrap();
        // No such kid: unknown. No kid: the one configured ES256 key decides, and the
        // attacker's signature does not verify with it.
        refused_any(
            &t,
            &[Rejection::UnknownKey, Rejection::BadSignature],
            &h.to_string(),
        );
    }
    // The same headers naming a real kid: the real key decides, and it did not sign this.
    for h in &evil_headers {
        let mut h = h.clone();
        h["kid"] = json!("ec");
        let t = attacker.sign_with_header(&h, &claims()).unwrap();
        refused(&t, Rejection::BadSignature, &h.to_string());
    }
}

#[test]
fn embedded_key_headers_on_a_genuine_token_change_nothing() {
    // RFC 7515 lets a producer send them; ignoring them is correct, refusing is not required.
    let h = json!({"alg":"ES256","kid":"ec","jku":"https://evil.example/jwks",
                   "x5u":"https://evil.example/c","jwk":keys().attacker.public_jwk()});
    decide(&signed(&h, &claims())).unwrap();
}

#[test]
fn kid_must_be_a_string_and_unknown_kids_are_unknown() {
    for kid in [json!(1), json!(null), json!(["ec"]), json!({"id":"ec"})] {
        refused(
            &signed(&json!({"alg":"ES256","kid":kid}), &claims()),
            Rejection::MalformedToken,
            "kid type",
        );
    }
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "ec\u{0}",
        "EC",
        "ec ",
        "",
        "/dev/null",
        "${jndi:ldap://x}",
    ] {
        refused(
            &signed(&json!({"alg":"ES256","kid":kid}), &claims()),
            Rejection::UnknownKey,
            kid,
        );
    }
}

#[test]
fn without_kid_only_a_single_fitting_key_is_used() {
    // Several keys fit ES256? Only one here ("ec"), so a kid-less ES256 token verifies with it…
    decide(&signed(&json!({"alg":"ES256"}), &claims())).unwrap();
    // …and never with another key tried in turn: the attacker's signature is simply bad.
    let t = keys()
        .attacker
        .sign_with_header(&json!({"alg":"ES256"}), &claims())
        .unwrap();
    refused(&t, Rejection::BadSignature, "kid-less forgery");
}

// ---- RFC 7515 §4.1.11: crit ----

#[test]
fn crit_naming_anything_is_refused_since_no_extension_is_understood() {
    for h in [
        json!({"alg":"ES256","kid":"ec","crit":["exp"],"exp":1}),
        json!({"alg":"ES256","kid":"ec","crit":["b64"],"b64":false}),
        json!({"alg":"ES256","kid":"ec","crit":["http://example.invalid/ext"],"http://example.invalid/ext":1}),
        // Names a parameter that is not present.
        json!({"alg":"ES256","kid":"ec","crit":["nope"]}),
        // Names a parameter RFC 7515 itself defines (producers MUST NOT).
        json!({"alg":"ES256","kid":"ec","crit":["alg"]}),
    ] {
        refused(
            &signed(&h, &claims()),
            Rejection::UnsupportedCriticalHeader,
            &h.to_string(),
        );
    }
}

#[test]
fn crit_must_be_a_non_empty_array_of_strings() {
    for crit in [
        json!([]),
        json!("exp"),
        json!([1]),
        json!(null),
        json!({"exp":true}),
    ] {
        refused_any(
            &signed(&json!({"alg":"ES256","kid":"ec","crit":crit}), &claims()),
            &[
                Rejection::MalformedToken,
                Rejection::UnsupportedCriticalHeader,
            ],
            &crit.to_string(),
        );
    }
}

#[test]
fn unprotected_b64_false_without_crit_does_not_change_what_is_signed() {
    // RFC 7797 §6: b64 is only honoured when listed in crit; certbound never honours it, so the
    // signature is over the base64url payload as usual.
    decide(&signed(
        &json!({"alg":"ES256","kid":"ec","b64":false}),
        &claims(),
    ))
    .unwrap();
}

// ---- RFC 7519 §4.1: registered claims with the wrong JSON type ----

#[test]
fn exp_must_be_a_number() {
    for v in [
        json!("1900000000"),
        json!(true),
        json!(null),
        json!([NOW + 600]),
        json!({"t":1}),
    ] {
        refused(
            &signed(&header(), &with(claims(), "exp", v.clone())),
            Rejection::InvalidClaims,
            &v.to_string(),
        );
    }
    // RFC 9068 §2.2: exp is required.
    refused(
        &signed(&header(), &without(claims(), "exp")),
        Rejection::InvalidClaims,
        "no exp",
    );
}

#[test]
fn nbf_and_iat_must_be_numbers() {
    for name in ["nbf", "iat"] {
        for v in [json!(false), json!("0"), json!(null), json!([0])] {
            refused(
                &signed(&header(), &with(claims(), name, v.clone())),
                Rejection::InvalidClaims,
                &format!("{name}={v}"),
            );
        }
    }
}

#[test]
fn iss_must_be_a_string_equal_to_the_issuer() {
    for v in [
        json!([ISS]),
        json!(1),
        json!(null),
        json!({"iss":ISS}),
        json!(true),
    ] {
        refused_any(
            &signed(&header(), &with(claims(), "iss", v.clone())),
            &[Rejection::InvalidClaims, Rejection::WrongIssuer],
            &v.to_string(),
        );
    }
    refused_any(
        &signed(&header(), &without(claims(), "iss")),
        &[Rejection::InvalidClaims, Rejection::WrongIssuer],
        "no iss",
    );
    // Exact comparison, no normalisation (RFC 7519 §2 StringOrURI, RFC 9068 §4).
    for v in [
        "https://issuer.example",
        "https://ISSUER.example/",
        "https://issuer.example/\u{0}",
        "https://issuer.example//",
        " https://issuer.example/",
    ] {
        refused(
            &signed(&header(), &with(claims(), "iss", json!(v))),
            Rejection::WrongIssuer,
            v,
        );
    }
}

#[test]
fn aud_must_be_a_string_or_an_array_of_strings() {
    for v in [
        json!(1),
        json!({"aud":AUD}),
        json!(true),
        json!([AUD, 1]),
        json!([[AUD]]),
        json!(null),
    ] {
        refused_any(
            &signed(&header(), &with(claims(), "aud", v.clone())),
            &[Rejection::InvalidClaims, Rejection::WrongAudience],
            &v.to_string(),
        );
    }
    refused(
        &signed(&header(), &with(claims(), "aud", json!([]))),
        Rejection::WrongAudience,
        "[]",
    );
    refused(
        &signed(&header(), &without(claims(), "aud")),
        Rejection::WrongAudience,
        "no aud",
    );
    decide(&signed(
        &header(),
        &with(claims(), "aud", json!(["https://other", AUD])),
    ))
    .unwrap();
}

#[test]
fn other_registered_string_claims_must_be_strings() {
    for name in ["sub", "jti", "client_id", "scope"] {
        for v in [json!(1), json!(["a"]), json!({"a":1}), json!(false)] {
            refused(
                &signed(&header(), &with(claims(), name, v.clone())),
                Rejection::InvalidClaims,
                &format!("{name}={v}"),
            );
        }
    }
}

#[test]
fn numeric_dates_are_checked_with_leeway_and_out_of_range_numbers_are_malformed() {
    let c = |k: &str, v: Value| signed(&header(), &with(claims(), k, v));
    refused(&c("exp", json!(NOW - 61)), Rejection::Expired, "expired");
    decide(&c("exp", json!(NOW - 59))).unwrap();
    decide(&c("exp", json!(NOW as f64 + 0.5))).unwrap();
    refused(&c("exp", json!(-1)), Rejection::Expired, "negative exp");
    refused(&c("nbf", json!(NOW + 61)), Rejection::NotYetValid, "nbf");
    refused(&c("iat", json!(NOW + 61)), Rejection::IssuedInFuture, "iat");
    // 1e400 is not a finite number: the JSON itself is refused.
    let huge = format!(r#"{{"iss":"{ISS}","aud":"{AUD}","exp":1e400}}"#);
    refused(
        &signed_raw(
            &keys().ec,
            br#"{"alg":"ES256","kid":"ec"}"#,
            huge.as_bytes(),
        ),
        Rejection::MalformedToken,
        "1e400",
    );
}

// ---- RFC 7800 §3, RFC 8705 §3.1: cnf and x5t#S256 ----

#[test]
fn cnf_must_be_an_object() {
    for v in [
        json!("x"),
        json!([client().to_string()]),
        json!(1),
        json!(null),
        json!(true),
    ] {
        refused(
            &signed(&header(), &with(claims(), "cnf", v.clone())),
            Rejection::MalformedBinding,
            &v.to_string(),
        );
    }
}

#[test]
fn x5t_s256_must_be_a_string() {
    for v in [
        json!(1),
        json!(null),
        json!([client().to_string()]),
        json!({"v":1}),
        json!(true),
    ] {
        refused(
            &signed(
                &header(),
                &with(claims(), "cnf", json!({"x5t#S256": v.clone()})),
            ),
            Rejection::MalformedBinding,
            &v.to_string(),
        );
    }
}

#[test]
fn x5t_s256_must_have_the_exact_form() {
    let tp = client().to_string();
    let hex = client().to_hex();
    let standard = tp.replace('-', "+").replace('_', "/");
    let mut trailing = tp.clone().into_bytes();
    trailing[42] ^= 0x01; // the last character carries 2 spare bits
    let trailing = String::from_utf8(trailing).unwrap();
    assert_ne!(trailing, tp);
    let sha1_len = URL_SAFE_NO_PAD.encode([7u8; 20]);
    let sha512_len = URL_SAFE_NO_PAD.encode([7u8; 64]);
    for bad in [
        format!("{tp}="),
        hex.clone(),
        hex.to_uppercase(),
        format!(" {tp}"),
        format!("{tp}\n"),
        tp[..42].to_owned(),
        format!("{tp}A"),
        sha1_len,
        sha512_len,
        String::new(),
        format!("sha256:{tp}"),
    ] {
        refused(
            &signed(&header(), &with(claims(), "cnf", json!({"x5t#S256": bad}))),
            Rejection::MalformedBinding,
            &bad,
        );
    }
    if standard != tp {
        refused(
            &signed(
                &header(),
                &with(claims(), "cnf", json!({"x5t#S256": standard})),
            ),
            Rejection::MalformedBinding,
            "standard alphabet",
        );
    }
    // Non-canonical last character: decodes leniently to the same 32 bytes, still refused.
    refused_any(
        &signed(
            &header(),
            &with(claims(), "cnf", json!({"x5t#S256": trailing})),
        ),
        &[Rejection::MalformedBinding, Rejection::BindingMismatch],
        "trailing bits",
    );
}

#[test]
fn x5t_s256_comparison_is_exact() {
    // Case-changed base64url is a different thumbprint (base64 is case-sensitive).
    let tp = client().to_string();
    let swapped: String = tp
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    refused_any(
        &signed(
            &header(),
            &with(claims(), "cnf", json!({"x5t#S256": swapped})),
        ),
        &[Rejection::BindingMismatch, Rejection::MalformedBinding],
        "case swapped",
    );
    // The thumbprint of another certificate (e.g. the CA's instead of the leaf's).
    let ca = Thumbprint::of_der(b"the CA certificate").to_string();
    refused(
        &signed(&header(), &with(claims(), "cnf", json!({"x5t#S256": ca}))),
        Rejection::BindingMismatch,
        "CA thumbprint",
    );
}

#[test]
fn unknown_cnf_members_do_not_break_a_correctly_bound_token() {
    let cnf = json!({"x5t#S256": client().to_string(),
                     "x5t": "abc", "kid": "x", "ext": {"n": [1, 2]}});
    let c = decide(&signed(&header(), &with(claims(), "cnf", cnf))).unwrap();
    assert_eq!(c.confirmation().certificate(), Some(&client()));
    // A DPoP key binding beside the certificate binding must hold too (RFC 7800 §3.1): sent
    // with the Bearer scheme, the token is refused, never accepted on x5t#S256 alone.
    let both = json!({"x5t#S256": client().to_string(), "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    refused(
        &signed(&header(), &with(claims(), "cnf", both)),
        Rejection::DpopBoundTokenAsBearer,
        "x5t#S256 and jkt",
    );
}

#[test]
fn a_binding_in_the_wrong_place_is_no_binding() {
    let tp = client().to_string();
    // In the JOSE header instead of the claims.
    let h = json!({"alg":"ES256","kid":"ec","x5t#S256": tp, "cnf": {"x5t#S256": tp}});
    refused(
        &signed(&h, &without(claims(), "cnf")),
        Rejection::UnboundToken,
        "in the header",
    );
    // Top-level claim instead of inside cnf.
    refused(
        &signed(
            &header(),
            &with(without(claims(), "cnf"), "x5t#S256", json!(tp)),
        ),
        Rejection::UnboundToken,
        "top-level",
    );
    // SHA-1 x5t instead of x5t#S256.
    let sha1 = URL_SAFE_NO_PAD.encode([1u8; 20]);
    refused(
        &signed(&header(), &with(claims(), "cnf", json!({"x5t": sha1}))),
        Rejection::UnsupportedBinding, // a confirmation method we do not verify, never "unbound"
        "x5t",
    );
    // Differently cased member name.
    refused(
        &signed(&header(), &with(claims(), "cnf", json!({"X5T#S256": tp}))),
        Rejection::UnsupportedBinding,
        "X5T#S256",
    );
    refused(
        &signed(&header(), &with(claims(), "cnf", json!({}))),
        Rejection::UnboundToken,
        "{}",
    );
}

// ---- RFC 9068 §2.1 and §4: typ ----

#[test]
fn at_jwt_mode_accepts_only_at_jwt_types() {
    let strict = policy().require_at_jwt(true);
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/At+Jwt",
    ] {
        let h = json!({"alg":"ES256","kid":"ec","typ":typ});
        decide_with(&strict, &signed(&h, &claims())).unwrap();
    }
    for typ in [
        "JWT",
        "jwt",
        "application/jwt",
        "at+jwt ",
        " at+jwt",
        "at+jwt;charset=utf-8",
        "at-jwt",
        "application/at+jwt+x",
        "text/at+jwt",
        "dpop+jwt",
        "secevent+jwt",
        "",
    ] {
        let h = json!({"alg":"ES256","kid":"ec","typ":typ});
        assert_eq!(
            decide_with(&strict, &signed(&h, &claims())).err(),
            Some(Rejection::WrongTokenType),
            "{typ:?}"
        );
    }
    assert_eq!(
        decide_with(
            &strict,
            &signed(&json!({"alg":"ES256","kid":"ec"}), &claims())
        )
        .err(),
        Some(Rejection::WrongTokenType),
        "no typ"
    );
    for typ in [json!(["at+jwt"]), json!(1), json!(null)] {
        let h = json!({"alg":"ES256","kid":"ec","typ":typ});
        assert_eq!(
            decide_with(&strict, &signed(&h, &claims())).err(),
            Some(Rejection::MalformedToken),
            "{typ}"
        );
    }
}

#[test]
fn without_at_jwt_mode_typ_is_not_required() {
    decide(&signed(&json!({"alg":"ES256","kid":"ec"}), &claims())).unwrap();
    decide(&signed(
        &json!({"alg":"ES256","kid":"ec","typ":"JWT"}),
        &claims(),
    ))
    .unwrap();
}

// ---- Size limits ----

#[test]
fn the_bearer_token_is_bounded() {
    let at_limit = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_LEN));
    assert_eq!(
        parse_authorization(at_limit.as_bytes(), DEFAULT_MAX_TOKEN_LEN).map(str::len),
        Ok(DEFAULT_MAX_TOKEN_LEN)
    );
    let over = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1));
    let r = parse_authorization(over.as_bytes(), DEFAULT_MAX_TOKEN_LEN).unwrap_err();
    assert_eq!(r, Rejection::TokenTooLarge);
    assert_eq!((r.status().as_u16(), r.code()), (401, "token_too_large"));
    // A megabyte is refused by length, before anything looks at its contents.
    let huge = format!("Bearer {}", "a.".repeat(512 * 1024));
    assert_eq!(
        parse_authorization(huge.as_bytes(), DEFAULT_MAX_TOKEN_LEN),
        Err(Rejection::TokenTooLarge)
    );
}

#[test]
fn the_forwarded_certificate_header_is_bounded() {
    let source = ForwardedCertificates::new(
        ForwardedFormat::Rfc9440,
        vec!["10.0.0.0/8".parse::<IpCidr>().unwrap()],
    );
    let mut headers = HeaderMap::new();
    let value = format!(":{}:", "A".repeat(DEFAULT_MAX_FORWARDED_HEADER_LEN));
    headers.insert("client-cert", HeaderValue::from_str(&value).unwrap());
    assert_eq!(
        source.extract(&headers, Some("10.1.2.3".parse().unwrap())),
        Err(Rejection::MalformedForwardedCertificate)
    );
}

// ---- Key material a JWKS must not be able to smuggle in ----

/// EMSA-PKCS1-v1_5 encoding of SHA-256(`msg`) for a 2048-bit modulus (RFC 8017 §9.2).
fn emsa_pkcs1_sha256(msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let digest_info_prefix: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let t_len = digest_info_prefix.len() + 32;
    let mut em = vec![0x00, 0x01];
    em.extend(std::iter::repeat_n(0xff, 256 - t_len - 3));
    em.push(0x00);
    em.extend_from_slice(&digest_info_prefix);
    em.extend_from_slice(&Sha256::digest(msg));
    assert_eq!(em.len(), 256);
    em
}

#[test]
fn an_rsa_jwk_with_public_exponent_one_verifies_nothing() {
    // With e = 1, s^e mod n = s: anyone could "sign" by sending the padded hash itself.
    let n = URL_SAFE_NO_PAD.encode([0xffu8; 256]);
    let jwk = json!({"kty":"RSA","kid":"e1","n": n, "e": "AQ"});
    let doc = json!({"keys":[jwk, keys().ec.public_jwk()]});
    let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap().keys;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg":"RS256","kid":"e1"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let forged = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(emsa_pkcs1_sha256(input.as_bytes()))
    );
    let parsed = UnverifiedToken::parse(&forged).unwrap();
    let alg = policy().check_header(parsed.header()).unwrap();
    let outcome = set
        .get(Some("e1"), alg)
        .map_err(Rejection::from)
        .and_then(|key| policy().verify(parsed, alg, key, NOW));
    assert!(
        outcome.is_err(),
        "an e=1 RSA key verified a forged signature"
    );
}

#[test]
fn a_small_order_ed25519_jwk_verifies_nothing() {
    // The identity point as a public key: with R = identity and S = 0, the Ed25519 equation
    // [S]B = R + [k]A holds for every message under cofactorless verification.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwk =
        json!({"kty":"OKP","crv":"Ed25519","kid":"small","x": URL_SAFE_NO_PAD.encode(identity)});
    let doc = json!({"keys":[jwk, keys().ec.public_jwk()]});
    let set = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap().keys;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg":"EdDSA","kid":"small"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let parsed = UnverifiedToken::parse(&forged).unwrap();
    let alg = policy().check_header(parsed.header()).unwrap();
    let outcome = set
        .get(Some("small"), alg)
        .map_err(Rejection::from)
        .and_then(|key| policy().verify(parsed, alg, key, NOW));
    assert!(
        outcome.is_err(),
        "a small-order Ed25519 key verified a forged signature"
    );
}
