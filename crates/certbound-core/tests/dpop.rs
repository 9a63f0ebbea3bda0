//! DPoP through the Verifier with a fixed clock: the OpenID FAPI 2.0 DPoP negative matrix
//! (FAPI2SPFinalDpopNegativeTests) and its positives, at the decision level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use certbound_core::{access_token_hash, DpopPolicy, NonceKeys};
use certbound_core::{
    Accepted, Algorithm, BindingPolicy, Credentials, KeySet, Rejection, Step, TokenPolicy, Verifier,
};
use certbound_dev::dpop::{dpop_bound_claims, fresh_jti, DpopKey};
use certbound_dev::{jwks_document, SigningKey};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.example/";
const AUD: &str = "https://api.example";
const URL: &str = "https://api.example/accounts";

struct Fx {
    issuer: SigningKey,
    keys: KeySet,
    client: DpopKey,
    other: DpopKey,
}

fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        let issuer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let doc = jwks_document(&[&issuer]).to_string();
        Fx {
            keys: KeySet::from_jwks(doc.as_bytes()).unwrap().keys,
            issuer,
            client: DpopKey::generate(Algorithm::ES256).unwrap(),
            other: DpopKey::generate(Algorithm::ES256).unwrap(),
        }
    })
}

fn now() -> u64 {
    certbound_dev::unix_now()
}

fn verifier() -> Verifier {
    Verifier::new(vec![TokenPolicy::new(ISS, AUD)], BindingPolicy::Required)
        .unwrap()
        .dpop(DpopPolicy::default())
}

fn token() -> String {
    fx().issuer
        .sign(&dpop_bound_claims(ISS, AUD, &fx().client.jkt()))
        .unwrap()
}

fn decide_with(verifier: &Verifier, credentials: Credentials<'_>) -> Result<Accepted, Rejection> {
    match verifier.verify(credentials, None, now()) {
        Step::Accept(accepted) => Ok(accepted),
        Step::Reject(rejection) => Err(rejection),
        Step::NeedKey(need) => {
            let key = fx().keys.get(need.kid(), need.alg()).map(Arc::clone);
            need.resume(key.map_err(Rejection::from))
        }
        Step::NeedIntrospection(_) => unreachable!("introspection is off"),
    }
}

fn decide(token: &str, proof: &str, method: &str, url: &str) -> Result<Accepted, Rejection> {
    decide_with(
        &verifier(),
        Credentials::dpop(token, proof).for_request(method, url),
    )
}

/// A proof by the client's key with these claims changed (`Value::Null` removes one).
fn proof_claims(token: &str, changes: Value) -> String {
    let mut claims = json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": now(),
                            "ath": access_token_hash(token)});
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    fx().client
        .proof_with(&fx().client.header(), &claims)
        .unwrap()
}

fn proof_header(token: &str, changes: Value) -> String {
    let mut header = fx().client.header();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            header.as_object_mut().unwrap().remove(k);
        } else {
            header[k] = v.clone();
        }
    }
    let claims = json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": now(),
                        "ath": access_token_hash(token)});
    fx().client.proof_with(&header, &claims).unwrap()
}

#[test]
fn a_good_proof_is_accepted_and_asks_for_a_replay_check() {
    let token = token();
    let proof = fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let accepted = decide(&token, &proof, "GET", URL).unwrap();
    let replay = accepted.replay_check().expect("DPoP needs a replay check");
    assert_eq!(replay.ttl_secs(), 121);
    assert_eq!(replay.verdict(Some(true), 1), Ok(()));
    assert_eq!(
        replay.verdict(Some(false), 1),
        Err(Rejection::DpopProofReplayed)
    );
    assert_eq!(
        replay.verdict(None, 3),
        Err(Rejection::ReplayStoreUnavailable {
            retry_after_secs: 3
        })
    );
    // The same proof twice has the same replay key; another proof another one.
    let again = decide(&token, &proof, "GET", URL).unwrap();
    assert_eq!(again.replay_check().unwrap().key(), replay.key());
    let other = fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let other = decide(&token, &other, "GET", URL).unwrap();
    assert_ne!(other.replay_check().unwrap().key(), replay.key());
}

#[test]
fn fapi_negative_matrix() {
    let token = token();
    let good = || fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let cases: Vec<(&str, Result<String, Rejection>, Rejection)> = vec![
        (
            "malformed proof",
            Ok("not-a-jwt".into()),
            Rejection::MalformedDpopProof,
        ),
        (
            "missing typ",
            Ok(proof_header(&token, json!({"typ": null}))),
            Rejection::WrongDpopProofType,
        ),
        (
            "bad typ",
            Ok(proof_header(&token, json!({"typ": "jwt"}))),
            Rejection::WrongDpopProofType,
        ),
        (
            "missing alg",
            Ok(proof_header(&token, json!({"alg": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "alg none",
            Ok(proof_header(&token, json!({"alg": "none"}))),
            Rejection::DisallowedDpopAlgorithm,
        ),
        (
            "alg HS256",
            Ok(proof_header(&token, json!({"alg": "HS256"}))),
            Rejection::DisallowedDpopAlgorithm,
        ),
        (
            "missing jwk",
            Ok(proof_header(&token, json!({"jwk": null}))),
            Rejection::InvalidDpopKey,
        ),
        (
            "missing jti",
            Ok(proof_claims(&token, json!({"jti": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "missing htm",
            Ok(proof_claims(&token, json!({"htm": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "missing htu",
            Ok(proof_claims(&token, json!({"htu": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "missing iat",
            Ok(proof_claims(&token, json!({"iat": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "missing ath",
            Ok(proof_claims(&token, json!({"ath": null}))),
            Rejection::MalformedDpopProof,
        ),
        (
            "wrong htm",
            Ok(proof_claims(&token, json!({"htm": "POST"}))),
            Rejection::DpopMethodMismatch,
        ),
        (
            "htu for another URL",
            Ok(proof_claims(
                &token,
                json!({"htu": "https://api.example/other"}),
            )),
            Rejection::DpopUriMismatch,
        ),
        (
            "iat +1 h",
            Ok(proof_claims(&token, json!({"iat": now() + 3600}))),
            Rejection::DpopProofNotFresh,
        ),
        (
            "iat -1 h",
            Ok(proof_claims(&token, json!({"iat": now() - 3600}))),
            Rejection::DpopProofNotFresh,
        ),
        (
            "wrong ath",
            Ok(proof_claims(
                &token,
                json!({"ath": access_token_hash("another token")}),
            )),
            Rejection::DpopTokenHashMismatch,
        ),
        (
            "proof by another key",
            Ok(fx().other.proof("GET", URL, Some(&token), None).unwrap()),
            Rejection::DpopKeyMismatch,
        ),
    ];
    for (name, proof, want) in cases {
        let proof = proof.unwrap();
        assert_eq!(
            decide(&token, &proof, "GET", URL).err(),
            Some(want),
            "{name}"
        );
    }
    // Bad signature: the good proof with its signature's last character changed.
    let mut bad = good();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(
        decide(&token, &bad, "GET", URL),
        Err(Rejection::BadDpopSignature | Rejection::MalformedDpopProof)
    ));
    // A private key in the jwk.
    let mut private = fx().client.header();
    private["jwk"]["d"] = json!("AAAA");
    let claims = json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": now(), "ath": access_token_hash(&token)});
    let proof = fx().client.proof_with(&private, &claims).unwrap();
    assert_eq!(
        decide(&token, &proof, "GET", URL).err(),
        Some(Rejection::InvalidDpopKey)
    );
    // A DPoP-bound token downgraded to Bearer.
    let bearer = decide_with(
        &verifier(),
        Credentials::bearer(&token).for_request("GET", URL),
    );
    assert_eq!(bearer.err(), Some(Rejection::DpopBoundTokenAsBearer));
}

#[test]
fn a_jwk_that_does_not_fit_alg_is_an_invalid_key_not_a_bad_signature() {
    let token = token();
    let claims = json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": now(),
                        "ath": access_token_hash(&token)});
    // A P-384 key (signing ES384) under a header that says ES256, and an EC key under PS256.
    let p384 = DpopKey::generate(Algorithm::ES384).unwrap();
    let mut header = p384.header();
    header["alg"] = json!("ES256");
    let proof = p384.proof_with(&header, &claims).unwrap();
    assert_eq!(
        decide(&token, &proof, "GET", URL).err(),
        Some(Rejection::InvalidDpopKey)
    );
    let mut header = fx().client.header();
    header["alg"] = json!("PS256");
    let proof = fx().client.proof_with(&header, &claims).unwrap();
    assert_eq!(
        decide(&token, &proof, "GET", URL).err(),
        Some(Rejection::InvalidDpopKey)
    );
}

#[test]
fn a_dpop_header_that_is_not_ascii_is_malformed_not_multiple() {
    let token = token();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("DPoP {token}").parse().unwrap());
    headers.insert(
        "dpop",
        http::HeaderValue::from_bytes(b"eyJ\xff.e30.c2ln").unwrap(),
    );
    let credentials = Credentials::from_headers(&headers, 16 * 1024)
        .unwrap()
        .for_request("GET", URL);
    assert_eq!(
        decide_with(&verifier(), credentials).err(),
        Some(Rejection::MalformedDpopProof)
    );
    // Through an owned copy (the path of a decision that waits for a key refresh) too.
    let owned = credentials.to_owned();
    assert_eq!(
        decide_with(&verifier(), owned.as_credentials()).err(),
        Some(Rejection::MalformedDpopProof)
    );
}

#[test]
fn fapi_positives() {
    let token = token();
    for (name, proof, url) in [
        (
            "htu with a query and fragment",
            proof_claims(&token, json!({"htu": "https://api.example/accounts?x=1#f"})),
            URL,
        ),
        (
            "request with a query",
            proof_claims(&token, json!({})),
            "https://api.example/accounts?page=2",
        ),
        (
            "extra claims",
            proof_claims(&token, json!({"extra": {"a": 1}})),
            URL,
        ),
        (
            "host case and default port",
            proof_claims(&token, json!({"htu": "https://API.EXAMPLE:443/accounts"})),
            URL,
        ),
        (
            "iat +10 s",
            proof_claims(&token, json!({"iat": now() + 10})),
            URL,
        ),
        (
            "iat -10 s",
            proof_claims(&token, json!({"iat": now() - 10})),
            URL,
        ),
    ] {
        assert!(decide(&token, &proof, "GET", url).is_ok(), "{name}");
    }
    // The scheme in upper case.
    let proof = fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("DPOP {token}").parse().unwrap());
    headers.insert("dpop", proof.parse().unwrap());
    let credentials = Credentials::from_headers(&headers, 16 * 1024)
        .unwrap()
        .for_request("GET", URL);
    assert!(decide_with(&verifier(), credentials).is_ok());
    // Two DPoP headers: refused.
    headers.append("dpop", proof.parse().unwrap());
    let credentials = Credentials::from_headers(&headers, 16 * 1024)
        .unwrap()
        .for_request("GET", URL);
    assert_eq!(
        decide_with(&verifier(), credentials).err(),
        Some(Rejection::MultipleDpopProofs)
    );
}

#[test]
fn every_default_algorithm_and_rs256_only_when_allowed() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ] {
        let key = DpopKey::generate(alg).unwrap();
        let token = fx()
            .issuer
            .sign(&dpop_bound_claims(ISS, AUD, &key.jkt()))
            .unwrap();
        let proof = key.proof("GET", URL, Some(&token), None).unwrap();
        let got = decide(&token, &proof, "GET", URL);
        if alg == Algorithm::RS256 {
            assert_eq!(got.err(), Some(Rejection::DisallowedDpopAlgorithm));
            let rs256 = Verifier::new(vec![TokenPolicy::new(ISS, AUD)], BindingPolicy::Required)
                .unwrap()
                .dpop(DpopPolicy::default().algorithms([Algorithm::RS256]));
            let c = Credentials::dpop(&token, &proof).for_request("GET", URL);
            assert!(decide_with(&rs256, c).is_ok());
        } else {
            assert!(got.is_ok(), "{alg:?}: {got:?}");
        }
    }
}

#[test]
fn nonces_when_required() {
    let keys = NonceKeys::new(vec![[9u8; 32]], std::time::Duration::from_secs(300)).unwrap();
    let with_nonces = verifier().dpop_nonces(keys.clone());
    let token = token();
    let without = fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let c = Credentials::dpop(&token, &without).for_request("GET", URL);
    assert_eq!(
        decide_with(&with_nonces, c).err(),
        Some(Rejection::DpopNonceRequired)
    );
    let forged = fx()
        .client
        .proof("GET", URL, Some(&token), Some("made-up"))
        .unwrap();
    let c = Credentials::dpop(&token, &forged).for_request("GET", URL);
    assert_eq!(
        decide_with(&with_nonces, c).err(),
        Some(Rejection::DpopNonceRequired)
    );
    let nonce = keys.issue(now() - 10, [3u8; 12]);
    let with = fx()
        .client
        .proof("GET", URL, Some(&token), Some(&nonce))
        .unwrap();
    let c = Credentials::dpop(&token, &with).for_request("GET", URL);
    let accepted = decide_with(&with_nonces, c).unwrap();
    assert_eq!(accepted.nonce_issued_at(), Some(now() - 10));
    // Another replica with the same key file accepts it too.
    let replica = verifier().dpop_nonces(
        NonceKeys::from_key_file(
            &format!("# shared\n{}\n", hex(&[9u8; 32])),
            std::time::Duration::from_secs(300),
        )
        .unwrap(),
    );
    let c = Credentials::dpop(&token, &with).for_request("GET", URL);
    assert!(decide_with(&replica, c).is_ok());
}

#[test]
fn dpop_is_off_unless_configured() {
    let token = token();
    let proof = fx().client.proof("GET", URL, Some(&token), None).unwrap();
    let plain = Verifier::new(vec![TokenPolicy::new(ISS, AUD)], BindingPolicy::Required).unwrap();
    let c = Credentials::dpop(&token, &proof).for_request("GET", URL);
    assert_eq!(decide_with(&plain, c).err(), Some(Rejection::MissingToken));
    // And a DPoP-bound token as Bearer is still refused (never "unbound").
    let c = Credentials::bearer(&token);
    assert_eq!(
        decide_with(&plain, c).err(),
        Some(Rejection::DpopBoundTokenAsBearer)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An opaque DPoP-bound token: its `cnf.jkt` comes from the introspection response and is
/// checked against this request's proof exactly as a JWT's (RFC 9449 §6.2).
#[test]
fn an_introspected_jkt_is_checked_against_the_proof() {
    use certbound_core::{IntrospectionPolicy, IntrospectionResponse};
    let verifier = verifier().introspection(IntrospectionPolicy::default());
    let opaque = "an-opaque-dpop-bound-token";
    let response = json!({"active": true, "iss": ISS, "aud": AUD, "exp": now() + 300,
                          "token_type": "DPoP", "cnf": {"jkt": fx().client.jkt().to_string()}})
    .to_string();
    let decide = |credentials: Credentials<'_>| match verifier.verify(credentials, None, now()) {
        Step::NeedIntrospection(need) => {
            let Ok(IntrospectionResponse::Checked(introspected)) =
                need.check_response(Some("application/json"), response.as_bytes())
            else {
                panic!("a plain response")
            };
            need.resume(Ok(introspected))
        }
        Step::Reject(rejection) => Err(rejection),
        other => panic!("{other:?}"),
    };
    let proof = fx().client.proof("GET", URL, Some(opaque), None).unwrap();
    let accepted = decide(Credentials::dpop(opaque, &proof).for_request("GET", URL)).unwrap();
    assert!(
        accepted.replay_check().is_some(),
        "the proof still needs its replay check"
    );
    assert!(accepted.verified().claims().is_introspected());

    let thief = fx().other.proof("GET", URL, Some(opaque), None).unwrap();
    assert_eq!(
        decide(Credentials::dpop(opaque, &thief).for_request("GET", URL)).unwrap_err(),
        Rejection::DpopKeyMismatch
    );
    assert_eq!(
        decide(Credentials::bearer(opaque)).unwrap_err(),
        Rejection::DpopBoundTokenAsBearer
    );
    // A proof for another token (ath) fails before the endpoint is asked.
    let other_ath = fx()
        .client
        .proof("GET", URL, Some("another"), None)
        .unwrap();
    assert_eq!(
        decide(Credentials::dpop(opaque, &other_ath).for_request("GET", URL)).unwrap_err(),
        Rejection::DpopTokenHashMismatch
    );
}
