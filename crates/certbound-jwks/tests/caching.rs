//! Cache lifetimes from `Cache-Control`, their bounds, and the background refresher's lifetime.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use std::time::Duration;

use certbound_core::Algorithm;
use certbound_jwks::KeySource;
use common::{builder, eventually, issuer, key};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_max_age_means_a_refetch_before_expiry() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    issuer.set_cache_control(Some("public, max-age=1".into()));
    let jwks = builder(&issuer)
        .cache_ttl_bounds(SECOND, Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    // Refreshed at 90 % of the 1 s lifetime, and again after that.
    assert!(eventually(3 * SECOND, || issuer.jwks_fetches() >= 3).await);
    // Rotation by the background refresher alone.
    let k2 = key("k2");
    issuer.set_keys(&[&k2]);
    assert!(
        eventually(2 * SECOND, || jwks
            .lookup(Some("k2"), Algorithm::ES256)
            .is_ok())
        .await
    );
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_is_raised_to_the_minimum() {
    let issuer = issuer(&[&key("k1")]).await;
    issuer.set_cache_control(Some("max-age=1".into()));
    let jwks = builder(&issuer)
        .cache_ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(2 * SECOND).await;
    assert_eq!(issuer.jwks_fetches(), 1);
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_is_lowered_to_the_maximum() {
    let issuer = issuer(&[&key("k1")]).await;
    issuer.set_cache_control(Some("max-age=86400".into()));
    let _jwks = builder(&issuer)
        .cache_ttl_bounds(SECOND, SECOND)
        .build()
        .await
        .unwrap();
    assert!(eventually(2 * SECOND, || issuer.jwks_fetches() >= 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_max_age_the_default_lifetime_applies() {
    let issuer = issuer(&[&key("k1")]).await;
    let _jwks = builder(&issuer)
        .cache_ttl_bounds(SECOND, Duration::from_secs(3600))
        .default_ttl(SECOND)
        .build()
        .await
        .unwrap();
    assert!(eventually(2 * SECOND, || issuer.jwks_fetches() >= 2).await);

    // no-store: the shortest allowed lifetime, not "never cache".
    let issuer = common::issuer(&[&key("k1")]).await;
    issuer.set_cache_control(Some("no-store".into()));
    let _jwks = builder(&issuer)
        .cache_ttl_bounds(SECOND, Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    assert!(eventually(2 * SECOND, || issuer.jwks_fetches() >= 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_source_stops_the_background_refresher() {
    let issuer = issuer(&[&key("k1")]).await;
    issuer.set_cache_control(Some("max-age=1".into()));
    let jwks = builder(&issuer)
        .cache_ttl_bounds(SECOND, SECOND)
        .build()
        .await
        .unwrap();
    let clone = jwks.clone();
    drop(jwks);
    // A clone keeps it alive …
    assert!(eventually(2 * SECOND, || issuer.jwks_fetches() >= 2).await);
    drop(clone);
    // … the last drop ends it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = issuer.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(issuer.jwks_fetches(), after_drop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_everywhere_builds_and_serves() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    // The largest max-age there is, and every knob at its maximum.
    issuer.set_cache_control(Some(format!("max-age={}", u64::MAX)));
    let jwks = builder(&issuer)
        .connect_timeout(Duration::MAX)
        .timeout(Duration::MAX)
        .cache_ttl_bounds(SECOND, Duration::MAX)
        .default_ttl(Duration::MAX)
        .unknown_kid_cooldown(Duration::MAX)
        .max_stale(Duration::MAX)
        .build()
        .await
        .unwrap();
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
    assert_eq!(jwks.stats().state, certbound_jwks::CacheState::Fresh);
    // A cooldown of Duration::MAX: no unknown-kid fetch, ever.
    assert!(jwks.refresh(Some("k2"), Algorithm::ES256).await.is_err());
    // Without max-age: the default lifetime, Duration::MAX, and a manual refetch.
    issuer.set_cache_control(None);
    jwks.refresh_now().await.unwrap();
    // A failure: the back-off and the stale deadline are computed without overflow.
    issuer.set_failure(certbound_dev::issuer::FailureMode::Status(500));
    assert!(jwks.refresh_now().await.is_err());
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
    assert_eq!(issuer.jwks_fetches(), 3);

    // No keys at all, the first fetch failing: Retry-After from a saturated deadline.
    let down = common::issuer(&[&k1]).await;
    down.set_failure(certbound_dev::issuer::FailureMode::Status(503));
    let unavailable = builder(&down)
        .cache_ttl_bounds(SECOND, Duration::MAX)
        .max_stale(Duration::MAX)
        .unknown_kid_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    assert!(matches!(
        unavailable.lookup(Some("k1"), Algorithm::ES256),
        Err(certbound_core::Rejection::KeysUnavailable { retry_after_secs }) if retry_after_secs >= 1
    ));
}
