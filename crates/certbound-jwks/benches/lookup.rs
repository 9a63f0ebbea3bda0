//! `KeySource::lookup` on a warm key set: the per-request cost of finding a verification key.
//!
//! `cargo bench -p certbound-jwks --bench lookup`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use certbound_core::{Algorithm, Rejection};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{jwks_document, SigningKey};
use certbound_jwks::{KeySource, RemoteJwks, StaticJwks};
use criterion::{criterion_group, criterion_main, Criterion};

fn keys() -> Vec<SigningKey> {
    (0..8)
        .map(|i| SigningKey::generate(&format!("key-{i}"), Algorithm::ES256).unwrap())
        .collect()
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let refs: Vec<&SigningKey> = keys.iter().collect();

    let static_jwks = StaticJwks::from_jwks(jwks_document(&refs).to_string()).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_issuer, remote) = runtime.block_on(async {
        let issuer = TestIssuer::start(&refs).await.unwrap();
        let remote = RemoteJwks::builder()
            .issuer(issuer.issuer_url())
            .system_roots(false)
            .extra_root_certificates_pem(issuer.ca_pem())
            .build()
            .await
            .unwrap();
        (issuer, remote)
    });

    let mut group = c.benchmark_group("lookup");
    group.bench_function("static/known_kid", |b| {
        b.iter(|| static_jwks.lookup(black_box(Some("key-5")), black_box(Algorithm::ES256)))
    });
    group.bench_function("remote/known_kid", |b| {
        b.iter(|| remote.lookup(black_box(Some("key-5")), black_box(Algorithm::ES256)))
    });
    group.bench_function("remote/unknown_kid", |b| {
        b.iter(|| {
            let r = remote.lookup(black_box(Some("forged")), black_box(Algorithm::ES256));
            assert_eq!(r.unwrap_err(), Rejection::UnknownKey);
        })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
