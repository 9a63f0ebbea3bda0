//! Hostile or broken JWKS responses: oversized bodies, unusable keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use certbound_core::{Algorithm, JwksError, Rejection};
use certbound_dev::issuer::FailureMode;
use certbound_jwks::{FetchError, KeySource, RemoteJwksBuildError};
use common::{builder, issuer, key};
use serde_json::json;

const LIMIT: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_fail_the_fetch() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let jwks = builder(&issuer)
        .max_response_size(LIMIT)
        .build()
        .await
        .unwrap();

    // Announced by Content-Length.
    let padding = " ".repeat(LIMIT);
    issuer.set_jwks_body(format!("{{\"keys\":[{}]{padding}}}", k1.public_jwk()));
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: LIMIT, .. }),
        "{err:?}"
    );

    // Streamed without Content-Length: cut off at the limit, not buffered to the end.
    issuer.set_failure(FailureMode::Oversized(64 * 1024 * 1024));
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: LIMIT, .. }),
        "{err:?}"
    );

    // Just under the limit is fine.
    issuer.set_failure(FailureMode::Normal);
    let body = format!("{{\"keys\":[{}]}}", k1.public_jwk());
    let fill = LIMIT - body.len();
    issuer.set_jwks_body(format!("{body}{}", " ".repeat(fill)));
    jwks.refresh_now().await.unwrap();

    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
    let stats = jwks.stats();
    assert_eq!((stats.fetches_ok, stats.fetches_failed), (2, 2));

    // require_initial_keys turns the same failure into a build error.
    issuer.set_failure(FailureMode::Oversized(LIMIT + 1));
    let err = builder(&issuer)
        .max_response_size(LIMIT)
        .require_initial_keys(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RemoteJwksBuildError::InitialFetch(FetchError::TooLarge { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_keys_are_skipped_and_a_set_without_usable_keys_is_refused() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let mut encryption = k1.public_jwk().clone();
    encryption["kid"] = json!("enc-1");
    encryption["use"] = json!("enc");
    let unknown_kty = json!({"kty": "PQC", "kid": "pqc-1", "pub": "AAAA"});
    let symmetric = json!({"kty": "oct", "kid": "hs-1", "k": "c2VjcmV0"});
    issuer.set_jwks_body(
        json!({"keys": [encryption, unknown_kty, symmetric, k1.public_jwk()]}).to_string(),
    );

    let jwks = builder(&issuer).build().await.unwrap();
    assert_eq!(jwks.kids(), ["k1"]);
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
    for kid in ["enc-1", "pqc-1", "hs-1"] {
        assert_eq!(
            jwks.lookup(Some(kid), Algorithm::ES256).unwrap_err(),
            Rejection::UnknownKey,
            "{kid}"
        );
    }

    // Nothing usable: the fetch fails and the previous set stays.
    issuer.set_jwks_body(json!({"keys": [encryption, unknown_kty]}).to_string());
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Jwks {
                source: JwksError::NoUsableKey { skipped: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());

    let err = builder(&issuer)
        .require_initial_keys(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RemoteJwksBuildError::InitialFetch(FetchError::Jwks { .. })
        ),
        "{err:?}"
    );
}
