//! The DPoP proof-key cache of `DpopPolicy`: a proof whose header is cached gets the same
//! verdict as with the cache off, for good and hostile proofs alike; nothing but a header whose
//! proof verified is cached; the cache is keyed on the header's exact bytes and bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound_core::{
    access_token_hash, Algorithm, DpopPolicy, ProofRequest, Rejection, VerifiedProof,
    MAX_CACHED_HEADER_LEN,
};
use certbound_dev::dpop::{fresh_jti, DpopKey};
use certbound_dev::unix_now;
use serde_json::{json, Value};

const URL: &str = "https://api.example/accounts";
const TOKEN: &str = "the-access-token";

fn request() -> ProofRequest<'static> {
    ProofRequest::new("GET", URL)
}

fn claims() -> Value {
    json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": unix_now(),
           "ath": access_token_hash(TOKEN)})
}

fn verify(policy: &DpopPolicy, proof: &str) -> Result<VerifiedProof, Rejection> {
    policy.verify_proof(proof, TOKEN, &request(), unix_now())
}

/// `proof` with its header segment replaced by `header`'s.
fn with_header_of(proof: &str, header_of: &str) -> String {
    let (_, rest) = proof.split_once('.').unwrap();
    let (header, _) = header_of.split_once('.').unwrap();
    format!("{header}.{rest}")
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn a_cached_header_gives_the_same_verdict_as_no_cache_for_good_and_hostile_proofs() {
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let other = DpopKey::generate(Algorithm::ES256).unwrap();
    let warm = DpopPolicy::default();
    let cold = DpopPolicy::default().key_cache_capacity(0);
    let first = client.proof("GET", URL, Some(TOKEN), None).unwrap();
    assert_eq!(verify(&warm, &first).unwrap().jkt(), &client.jkt());
    assert_eq!(warm.cached_keys(), 1);

    let good = || client.proof("GET", URL, Some(TOKEN), None).unwrap();
    let signed = |claims: Value| client.proof_with(&client.header(), &claims).unwrap();
    let changed = |name: &str, value: Value| {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(name);
        } else {
            c[name] = value;
        }
        signed(c)
    };
    let g = good();
    let (h, rest) = g.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases: Vec<(&str, String, Result<(), Rejection>)> = vec![
        ("good", good(), Ok(())),
        (
            "extra claim",
            changed("extra", json!({"a": [1, 2]})),
            Ok(()),
        ),
        (
            // The victim's header (cached) over the attacker's signature: the cached key
            // still verifies the signature.
            "cached header, signature by another key",
            with_header_of(&other.proof_with(&client.header(), &claims()).unwrap(), &g),
            Err(Rejection::BadDpopSignature),
        ),
        (
            "cached header, claims of another proof",
            format!(
                "{h}.{}.{s}",
                changed("htm", json!("GET")).split('.').nth(1).unwrap()
            ),
            Err(Rejection::BadDpopSignature),
        ),
        (
            "cached header, empty signature",
            format!("{h}.{p}."),
            Err(Rejection::BadDpopSignature),
        ),
        (
            "cached header, signature not base64url",
            format!("{h}.{p}.{s}="),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "cached header, payload not base64url",
            format!("{h}.{p}+.{s}"),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "cached header, payload not JSON",
            format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("{")),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "cached header, duplicate claim",
            format!(
                "{h}.{}.{s}",
                URL_SAFE_NO_PAD.encode(r#"{"jti":"a","jti":"b"}"#)
            ),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "cached header, four segments",
            format!("{g}.x"),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "cached header, empty payload",
            format!("{h}..{s}"),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "no jti",
            changed("jti", Value::Null),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "jti not a string",
            changed("jti", json!(7)),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "wrong htm",
            changed("htm", json!("POST")),
            Err(Rejection::DpopMethodMismatch),
        ),
        (
            "wrong htu",
            changed("htu", json!("https://api.example/other")),
            Err(Rejection::DpopUriMismatch),
        ),
        (
            "iat an hour ago",
            changed("iat", json!(unix_now() - 3600)),
            Err(Rejection::DpopProofNotFresh),
        ),
        (
            "iat a string",
            changed("iat", json!("now")),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "wrong ath",
            changed("ath", json!(access_token_hash("another"))),
            Err(Rejection::DpopTokenHashMismatch),
        ),
        (
            "ath with padding",
            changed("ath", json!(format!("{}=", access_token_hash(TOKEN)))),
            Err(Rejection::DpopTokenHashMismatch),
        ),
        (
            "nonce not a string",
            changed("nonce", json!(1)),
            Err(Rejection::MalformedDpopProof),
        ),
        (
            "header of another key (not cached), signed by it",
            other.proof("GET", URL, Some(TOKEN), None).unwrap(),
            Ok(()),
        ),
        (
            "header with typ changed (other bytes, not cached)",
            client
                .proof_with(
                    &{
                        let mut h = client.header();
                        h["typ"] = json!("jwt");
                        h
                    },
                    &claims(),
                )
                .unwrap(),
            Err(Rejection::WrongDpopProofType),
        ),
    ];
    for (name, proof, want) in cases {
        let hot = verify(&warm, &proof).map(|_| ());
        let cool = verify(&cold, &proof).map(|_| ());
        assert_eq!(hot, want, "{name} (cache warm)");
        assert_eq!(cool, want, "{name} (no cache)");
    }
    // The good client key and the other key's valid proof; nothing else got in.
    assert_eq!(warm.cached_keys(), 2);
    assert_eq!(cold.cached_keys(), 0);
}

#[test]
fn only_a_header_whose_proof_verified_is_cached() {
    let client = DpopKey::generate(Algorithm::EdDSA).unwrap();
    let attacker = DpopKey::generate(Algorithm::EdDSA).unwrap();
    let policy = DpopPolicy::default();
    // The client's header over the attacker's signature: refused, and not cached.
    let forged = attacker.proof_with(&client.header(), &claims()).unwrap();
    assert_eq!(verify(&policy, &forged), Err(Rejection::BadDpopSignature));
    assert_eq!(policy.cached_keys(), 0);
    // Header checks that fail: nothing cached either.
    let mut private = client.header();
    private["jwk"]["d"] = json!("AAAA");
    let bad_headers = [
        (
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": client.public_jwk()}),
            Rejection::DisallowedDpopAlgorithm,
        ),
        (private, Rejection::InvalidDpopKey),
        (
            json!({"typ": "dpop+jwt", "alg": "EdDSA"}),
            Rejection::InvalidDpopKey,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "EdDSA", "crit": ["x"], "jwk": client.public_jwk()}),
            Rejection::MalformedDpopProof,
        ),
    ];
    for (header, want) in bad_headers {
        let proof = client.proof_with(&header, &claims()).unwrap();
        assert_eq!(verify(&policy, &proof), Err(want), "{header}");
    }
    assert_eq!(policy.cached_keys(), 0);
    // A valid proof whose claims fail still proves the key: its header is cached (the claims
    // are checked on every proof, cached or not).
    let mut stale = claims();
    stale["iat"] = json!(unix_now() - 3600);
    let stale = client.proof_with(&client.header(), &stale).unwrap();
    assert_eq!(verify(&policy, &stale), Err(Rejection::DpopProofNotFresh));
    assert_eq!(policy.cached_keys(), 1);
    assert_eq!(verify(&policy, &stale), Err(Rejection::DpopProofNotFresh));
    let good = client.proof("GET", URL, Some(TOKEN), None).unwrap();
    assert_eq!(verify(&policy, &good).unwrap().jkt(), &client.jkt());
    // And the forged proof is still refused now that the client's header is cached.
    assert_eq!(verify(&policy, &forged), Err(Rejection::BadDpopSignature));
    assert_eq!(policy.cached_keys(), 1);
}

#[test]
fn the_alg_allow_list_is_asked_on_every_proof_even_when_cached() {
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let policy = DpopPolicy::default();
    let proof = client.proof("GET", URL, Some(TOKEN), None).unwrap();
    verify(&policy, &proof).unwrap();
    assert_eq!(policy.cached_keys(), 1);
    // A clone shares the cache; with another allow-list it refuses the cached header's alg.
    let eddsa_only = policy.clone().algorithms([Algorithm::EdDSA]);
    assert_eq!(eddsa_only.cached_keys(), 1);
    let next = client.proof("GET", URL, Some(TOKEN), None).unwrap();
    assert_eq!(
        verify(&eddsa_only, &next),
        Err(Rejection::DisallowedDpopAlgorithm)
    );
    verify(&policy, &next).unwrap();
    // A new capacity starts a new cache of its own.
    let fresh = policy.clone().key_cache_capacity(8);
    assert_eq!(fresh.cached_keys(), 0);
    assert_eq!(policy.cached_keys(), 1);
}

#[test]
fn the_cache_is_bounded_and_keeps_recently_used_keys() {
    let policy = DpopPolicy::default().key_cache_capacity(4);
    let keys: Vec<DpopKey> = (0..6)
        .map(|_| DpopKey::generate(Algorithm::EdDSA).unwrap())
        .collect();
    let proof = |k: &DpopKey| k.proof("GET", URL, Some(TOKEN), None).unwrap();
    for (i, key) in keys.iter().enumerate() {
        verify(&policy, &proof(key)).unwrap();
        assert!(policy.cached_keys() <= 4, "after {} keys", i + 1);
        // keys[0] is used again after every new key (a hit in the older generation moves it
        // to the newer one).
        verify(&policy, &proof(&keys[0])).unwrap();
        assert!(policy.cached_keys() <= 4);
    }
    // 6 distinct keys through a 4-entry cache: it is full, not grown.
    assert!(policy.cached_keys() >= 2);
    // Every key still verifies (a dropped one is parsed again).
    for key in &keys {
        assert_eq!(verify(&policy, &proof(key)).unwrap().jkt(), &key.jkt());
        assert!(policy.cached_keys() <= 4);
    }
}

#[test]
fn a_header_longer_than_the_bound_is_verified_but_not_cached() {
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let policy = DpopPolicy::default();
    let mut header = client.header();
    header["jwk"]["kid"] = json!("k".repeat(MAX_CACHED_HEADER_LEN));
    assert!(segment(&header).len() > MAX_CACHED_HEADER_LEN);
    let proof = client.proof_with(&header, &claims()).unwrap();
    assert_eq!(verify(&policy, &proof).unwrap().jkt(), &client.jkt());
    assert_eq!(policy.cached_keys(), 0);
}

#[test]
fn every_default_algorithm_hits_the_cache_with_the_same_result() {
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ] {
        let client = DpopKey::generate(alg).unwrap();
        let other = DpopKey::generate(alg).unwrap();
        let policy = DpopPolicy::default();
        let cold = DpopPolicy::default().key_cache_capacity(0);
        for round in 0..3 {
            let proof = client.proof("GET", URL, Some(TOKEN), None).unwrap();
            let hot = verify(&policy, &proof).unwrap();
            assert_eq!(hot, verify(&cold, &proof).unwrap(), "{alg:?} round {round}");
            assert_eq!(hot.jkt(), &client.jkt());
            assert_eq!(policy.cached_keys(), 1, "{alg:?}");
            let forged = other.proof_with(&client.header(), &claims()).unwrap();
            assert_eq!(
                verify(&policy, &forged),
                Err(Rejection::BadDpopSignature),
                "{alg:?}"
            );
        }
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    struct Fx {
        client: DpopKey,
        warm: DpopPolicy,
        cold: DpopPolicy,
        proof: String,
    }

    fn fx() -> &'static Fx {
        static FX: OnceLock<Fx> = OnceLock::new();
        FX.get_or_init(|| {
            let client = DpopKey::generate(Algorithm::ES256).unwrap();
            let warm = DpopPolicy::default();
            let proof = client.proof("GET", URL, Some(TOKEN), None).unwrap();
            verify(&warm, &proof).unwrap();
            Fx {
                client,
                warm,
                cold: DpopPolicy::default().key_cache_capacity(0),
                proof,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any one- or two-byte change to a proof whose header is cached gets the verdict it
        /// gets without the cache, and leaves the client's cached key working.
        #[test]
        fn a_mutated_proof_gets_the_uncached_verdict(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0x21u8..0x7f), 1..3)
        ) {
            let fx = fx();
            let mut bytes = fx.proof.clone().into_bytes();
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            let mutated = String::from_utf8(bytes).unwrap();
            let hot = verify(&fx.warm, &mutated).map(|p| *p.jkt());
            let cool = verify(&fx.cold, &mutated).map(|p| *p.jkt());
            prop_assert_eq!(hot, cool);
            let fresh = fx.client.proof("GET", URL, Some(TOKEN), None).unwrap();
            let jkt = *verify(&fx.warm, &fresh).unwrap().jkt();
            prop_assert_eq!(jkt, fx.client.jkt());
        }
    }
}
