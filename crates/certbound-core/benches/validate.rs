//! Per-request costs in certbound-core, side by side with plain `jsonwebtoken::decode`.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p certbound-core --bench validate
//! ```
//!
//! * `thumbprint/*` — `Thumbprint::of_der` of real dev certificates (P-256 and RSA-2048 keys).
//! * `validate/<ALG>/certbound` — a token on a cache miss, the path the layer takes:
//!   `UnverifiedToken::parse` → `TokenPolicy::check_header` → `KeySet::get` → `TokenPolicy::verify`.
//! * `validate/<ALG>/jsonwebtoken` — `jsonwebtoken::decode::<serde_json::Value>` of the same token
//!   with the same key, checking the same `iss`, `aud`, `exp` (the target: certbound ≤ 1.15×).
//! * `parts/<ALG>/*` — where certbound's time goes: strict parsing alone, and the signature alone
//!   (certbound's `VerificationKey::verify` against `jsonwebtoken::crypto::verify`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound_core::{
    Algorithm, ClientCertificate, KeySet, Thumbprint, TokenPolicy, UnverifiedToken,
};
use certbound_dev::{bound_claims, jwks_document, unix_now, DevCa, KeyKind, SigningKey};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};

const ISS: &str = "https://issuer.example/";
const AUD: &str = "https://api.example";

const ALGS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn thumbprint(c: &mut Criterion) {
    let ca = DevCa::new("bench CA").unwrap();
    let mut group = c.benchmark_group("thumbprint");
    for (name, kind) in [
        ("ec_p256_cert", KeyKind::EcP256),
        ("rsa2048_cert", KeyKind::Rsa2048),
    ] {
        let cert = ca.client_cert("client-a", kind).unwrap();
        let der: Vec<u8> = cert.cert_der.to_vec();
        eprintln!(
            "thumbprint/{name}: certificate is {} bytes of DER",
            der.len()
        );
        group.bench_function(name, |b| b.iter(|| Thumbprint::of_der(black_box(&der))));
    }
    group.finish();
}

struct Case {
    alg: Algorithm,
    token: String,
    keys: KeySet,
    raw_key: DecodingKey,
    validation: Validation,
}

fn case(alg: Algorithm) -> Case {
    let signer = SigningKey::generate("k1", alg).unwrap();
    let ca = DevCa::new("bench CA").unwrap();
    let client = ca.client_cert("client-a", KeyKind::EcP256).unwrap();
    let cert = ClientCertificate::from_der(client.cert_der.to_vec());
    let token = signer
        .sign(&bound_claims(ISS, AUD, cert.thumbprint()))
        .unwrap();
    let jwks = jwks_document(&[&signer]).to_string();
    let keys = KeySet::from_jwks(jwks.as_bytes()).unwrap().keys;
    let jwk: Jwk = serde_json::from_value(signer.public_jwk().clone()).unwrap();
    let raw_key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    Case {
        alg,
        token,
        keys,
        raw_key,
        validation,
    }
}

fn validate(c: &mut Criterion) {
    let policy = TokenPolicy::new(ISS, AUD);
    for alg in ALGS {
        let case = case(alg);
        // After minting: a `now` older than the token's `iat` by more than the leeway would
        // (rightly) be refused as issued in the future.
        let now = unix_now();
        let name = format!("{alg:?}");
        eprintln!("validate/{name}: token is {} bytes", case.token.len());

        // Both must accept the token before anything is timed.
        let ours = || {
            let token = UnverifiedToken::parse(black_box(&case.token))?;
            let alg = policy.check_header(token.header())?;
            let key = case.keys.get(token.header().kid(), alg)?;
            policy.verify(token, alg, key, now)
        };
        let raw = || {
            jsonwebtoken::decode::<serde_json::Value>(
                black_box(&case.token),
                &case.raw_key,
                &case.validation,
            )
        };
        if let Err(e) = ours() {
            panic!("certbound refused the {name} token: {e:?}");
        }
        assert!(raw().is_ok(), "jsonwebtoken refused the {name} token");

        let mut group = c.benchmark_group(format!("validate/{name}"));
        group.bench_function("certbound", |b| b.iter(|| ours().unwrap()));
        group.bench_function("jsonwebtoken", |b| b.iter(|| raw().unwrap()));
        group.finish();

        // Attribution: parsing alone, signature alone.
        let parsed = UnverifiedToken::parse(&case.token).unwrap();
        let key = case.keys.get(Some("k1"), case.alg).unwrap().clone();
        let (message, sig_b64) = case.token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
        let mut group = c.benchmark_group(format!("parts/{name}"));
        group.bench_function("certbound_parse", |b| {
            b.iter(|| UnverifiedToken::parse(black_box(&case.token)).unwrap())
        });
        group.bench_function("certbound_signature", |b| {
            b.iter(|| {
                key.verify(case.alg, black_box(parsed.signing_input()), black_box(&sig))
                    .unwrap()
            })
        });
        group.bench_function("jsonwebtoken_signature", |b| {
            b.iter(|| {
                assert!(jsonwebtoken::crypto::verify(
                    black_box(sig_b64),
                    black_box(message.as_bytes()),
                    &case.raw_key,
                    case.alg
                )
                .unwrap())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, thumbprint, validate);
criterion_main!(benches);
