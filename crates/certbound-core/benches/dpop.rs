//! DPoP proof verification (RFC 9449 §4.3) side by side with a raw signature verification of the
//! same alg over the same signing input (issue 12's target: proof ≤ 1.15 × raw signature).
//!
//! ```text
//! cargo bench -p certbound-core --bench dpop -- --noplot
//! ```
//!
//! Proofs are what `certbound_dev::dpop::DpopKey::proof` makes (a `GET` of
//! `https://api.example/accounts`, `ath` for a 480-byte access token, fresh `jti`, `iat` now).
//!
//! * `dpop/<ALG>/verify_proof` — `DpopPolicy::verify_proof` as a client's second and later
//!   requests meet it: its proof header (same `jwk`) is in the policy's key cache, so the
//!   proof's claims are decoded and checked (`jti`, `htm`, `htu`, `iat`, `ath`) and its
//!   signature verified with the cached parsed key. Everything a request pays for its proof
//!   except the replay store and the token (the verified-token cache serves the token).
//! * `dpop/<ALG>/verify_proof_uncached` — the same with the key cache off
//!   (`key_cache_capacity(0)`): a client's first proof — strict parse of the header,
//!   `typ`/`alg`/`jwk` checks, `VerificationKey::from_jwk`, the RFC 7638 thumbprint, the key
//!   parsed by aws-lc, the signature, the claims.
//! * `dpop/<ALG>/raw_aws_lc` — the baseline: aws-lc-rs's one-shot verification of the proof's
//!   signature with the public key bytes taken from the proof's `jwk` (decoded beforehand):
//!   `UnparsedPublicKey::verify` (ES256, EdDSA) or `RsaPublicKeyComponents::verify` (PS256).
//! * `dpop/<ALG>/raw_aws_lc_parsed` — aws-lc-rs with the key parsed beforehand
//!   (`ParsedPublicKey::verify_sig`): the signature check alone, the floor for a cached key.
//! * `dpop/<ALG>/key_verify` — certbound's `VerificationKey::verify` (jsonwebtoken's aws-lc
//!   verifier) with a key built beforehand: the signature step inside `verify_proof`.
//! * `dpop_parts/<ALG>/*` — the other steps alone: `parse`, `from_jwk`, `jwk_thumbprint`,
//!   `normalize_htu` (one URI), `access_token_hash`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;

use certbound_core::{
    access_token_hash, jwk_thumbprint, normalize_htu, Algorithm, DpopPolicy, ProofRequest,
    UnverifiedToken, VerificationKey,
};
use certbound_dev::dpop::DpopKey;
use certbound_dev::unix_now;
use criterion::{criterion_group, criterion_main, Criterion};

const URL: &str = "https://api.example/accounts";

fn dpop(c: &mut Criterion) {
    let policy = DpopPolicy::default();
    let uncached = DpopPolicy::default().key_cache_capacity(0);
    let request = ProofRequest::new("GET", URL);
    // An access token of the usual size (the proof's `ath` is its hash).
    let token = "t".repeat(480);
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::PS256] {
        let name = format!("{alg:?}");
        let key = DpopKey::generate(alg).unwrap();
        let proof = key.proof("GET", URL, Some(&token), None).unwrap();
        let now = unix_now();
        eprintln!("dpop/{name}: proof is {} bytes", proof.len());
        let parsed = UnverifiedToken::parse(&proof).unwrap();
        let message = parsed.signing_input().to_vec();
        let signature = parsed.signature().to_vec();
        let jwk = key.public_jwk().clone();
        let jwk_map = jwk.as_object().unwrap().clone();
        let vkey = VerificationKey::from_jwk(&jwk_map).unwrap();

        // The raw baseline: aws-lc, one shot, from the key's bytes; and the same key parsed
        // beforehand.
        let (parsed_key, raw) = common::raw_verifier(alg, &jwk, &message, &signature);
        // Everything must accept before anything is timed.
        let cached_before = policy.cached_keys();
        let verified = policy
            .verify_proof(&proof, &token, &request, now)
            .unwrap_or_else(|e| panic!("{name}: verify_proof refused a valid proof: {e:?}"));
        assert_eq!(verified.jkt(), &key.jkt());
        let verified_cold = uncached
            .verify_proof(&proof, &token, &request, now)
            .unwrap_or_else(|e| panic!("{name}: uncached verify_proof refused: {e:?}"));
        assert_eq!(verified_cold, verified);
        assert_eq!(
            policy.cached_keys(),
            cached_before + 1,
            "{name}: the proof's key is cached"
        );
        assert_eq!(uncached.cached_keys(), 0);
        assert!(raw(), "{name}: aws-lc refused the proof's signature");
        parsed_key.verify_sig(&message, &signature).unwrap();
        vkey.verify(alg, &message, &signature).unwrap();

        let mut group = c.benchmark_group(format!("dpop/{name}"));
        group.bench_function("verify_proof", |b| {
            b.iter(|| {
                policy
                    .verify_proof(black_box(&proof), black_box(&token), &request, now)
                    .unwrap()
            })
        });
        group.bench_function("verify_proof_uncached", |b| {
            b.iter(|| {
                uncached
                    .verify_proof(black_box(&proof), black_box(&token), &request, now)
                    .unwrap()
            })
        });
        group.bench_function("raw_aws_lc", |b| b.iter(|| assert!(raw())));
        group.bench_function("raw_aws_lc_parsed", |b| {
            b.iter(|| {
                parsed_key
                    .verify_sig(black_box(&message), black_box(&signature))
                    .unwrap()
            })
        });
        group.bench_function("key_verify", |b| {
            b.iter(|| {
                vkey.verify(alg, black_box(&message), black_box(&signature))
                    .unwrap()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("dpop_parts/{name}"));
        group.bench_function("parse", |b| {
            b.iter(|| UnverifiedToken::parse(black_box(&proof)).unwrap())
        });
        group.bench_function("from_jwk", |b| {
            b.iter(|| VerificationKey::from_jwk(black_box(&jwk_map)).unwrap())
        });
        group.bench_function("jwk_thumbprint", |b| {
            b.iter(|| jwk_thumbprint(black_box(&jwk_map)).unwrap())
        });
        group.bench_function("normalize_htu", |b| {
            b.iter(|| normalize_htu(black_box(URL)).unwrap())
        });
        group.bench_function("access_token_hash", |b| {
            b.iter(|| access_token_hash(black_box(&token)))
        });
        group.finish();
    }
}

criterion_group!(benches, dpop);
criterion_main!(benches);
