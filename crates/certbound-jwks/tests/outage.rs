//! Outages: the cached set keeps answering until its maximum stale age; a slow issuer never
//! delays the fast path, nor unknown-kid requests other than the one that fetches.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use std::time::{Duration, Instant};

use certbound_core::{Algorithm, JwksError, Rejection};
use certbound_dev::issuer::FailureMode;
use certbound_jwks::{CacheState, FetchError, KeySource};
use common::{builder, eventually, issuer, key};
use futures_util::FutureExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_until_max_stale_then_unavailable() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    issuer.set_cache_control(Some("max-age=1".into()));
    let built = Instant::now();
    let jwks = builder(&issuer)
        .cache_ttl_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .max_stale(Duration::from_secs(2))
        .unknown_kid_cooldown(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let ok = || jwks.lookup(Some("k1"), Algorithm::ES256).is_ok();

    // Connection refused.
    issuer.stop().await;
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert!(ok());

    // 500.
    issuer.restart().await.unwrap();
    issuer.set_failure(FailureMode::Status(500));
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(ok());

    // Garbage.
    issuer.set_failure(FailureMode::Garbage);
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Jwks {
                source: JwksError::Malformed(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(ok());

    // Past its 1 s lifetime the set is served stale …
    assert!(
        eventually(Duration::from_secs(2), || jwks.stats().state
            == CacheState::Stale)
        .await
    );
    assert!(ok());
    assert!(built.elapsed() < Duration::from_secs(3));
    // … until 2 s after that, then requests get 503 with a Retry-After.
    assert!(
        eventually(Duration::from_secs(4), || matches!(
            jwks.lookup(Some("k1"), Algorithm::ES256),
            Err(Rejection::KeysUnavailable { retry_after_secs }) if retry_after_secs >= 1
        ))
        .await
    );
    assert!(built.elapsed() >= Duration::from_secs(3));
    let stats = jwks.stats();
    assert_eq!(stats.state, CacheState::Unavailable);
    assert_eq!(stats.fetches_ok, 1);
    assert!(stats.fetches_failed >= 3);
    assert!(stats.consecutive_failures >= 3);

    // The issuer recovers; the next unknown-kid refresh (cooldown over) restores service.
    issuer.set_failure(FailureMode::Normal);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(jwks.refresh(Some("k1"), Algorithm::ES256).await.is_ok());
    assert!(ok());
    assert_eq!(jwks.stats().consecutive_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_issuer_never_delays_lookup() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let jwks = builder(&issuer)
        .timeout(Duration::from_millis(700))
        .unknown_kid_cooldown(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    issuer.set_failure(FailureMode::Slow(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(60)).await;

    // An unknown kid starts a fetch that will hang until the timeout.
    let refresh = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refresh(Some("k2"), Algorithm::ES256).await }
    });
    assert!(eventually(Duration::from_secs(2), || issuer.jwks_fetches() == 2).await);
    assert!(!refresh.is_finished(), "the fetch is in flight");

    // Meanwhile the fast path answers at once, every time.
    let started = Instant::now();
    for _ in 0..10_000 {
        assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(200),
        "lookups took {elapsed:?}"
    );
    assert!(
        !refresh.is_finished(),
        "lookups finished while the fetch was still in flight"
    );

    // The refresh gives up at the timeout and the old set stays.
    let started = Instant::now();
    assert_eq!(refresh.await.unwrap().unwrap_err(), Rejection::UnknownKey);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(jwks.stats().fetches_failed, 1);
    let err = jwks.refresh_now().await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_requests_never_wait_for_a_slow_fetch() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let cooldown = Duration::from_millis(100);
    let jwks = builder(&issuer)
        .timeout(Duration::from_secs(10))
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    issuer.set_failure(FailureMode::Slow(Duration::from_secs(2)));
    tokio::time::sleep(cooldown + Duration::from_millis(20)).await;

    // The first unknown kid after the cooldown fetches, and waits for its (slow) fetch.
    let trigger = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refresh(Some("new-1"), Algorithm::ES256).await }
    });
    assert!(eventually(Duration::from_secs(2), || issuer.jwks_fetches() == 2).await);

    // Every other one is answered on its first poll — inside the cooldown, and past it while
    // the fetch is still in flight — and a known kid is answered as usual.
    for round in 0..2 {
        for i in 0..1_000 {
            let kid = format!("forged-{round}-{i}");
            let answer = jwks.refresh(Some(&kid), Algorithm::ES256).now_or_never();
            assert_eq!(
                answer.expect("answered without waiting").unwrap_err(),
                Rejection::UnknownKey
            );
        }
        let known = jwks.refresh(Some("k1"), Algorithm::ES256).now_or_never();
        assert!(known.expect("answered without waiting").is_ok());
        assert!(
            !trigger.is_finished(),
            "round {round}: the fetch is in flight"
        );
        tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
    }
    assert_eq!(issuer.jwks_fetches(), 2, "the flood fetched nothing");

    // The slow fetch succeeds; the trigger gets its answer from the new set.
    assert_eq!(trigger.await.unwrap().unwrap_err(), Rejection::UnknownKey);
    assert_eq!(jwks.stats().fetches_ok, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_fetch_does_not_block_later_refreshes() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let cooldown = Duration::from_millis(50);
    let jwks = builder(&issuer)
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    issuer.set_failure(FailureMode::Slow(Duration::from_secs(5)));
    // A manual fetch whose caller gives up (its future is dropped mid-fetch).
    let abandoned = tokio::time::timeout(Duration::from_millis(300), jwks.refresh_now()).await;
    assert!(abandoned.is_err(), "still in flight when abandoned");

    // The next unknown kid after the cooldown fetches again and finds the new key.
    let k2 = key("k2");
    issuer.set_keys(&[&k1, &k2]);
    issuer.set_failure(FailureMode::Normal);
    tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
    let before = issuer.jwks_fetches();
    assert!(jwks.refresh(Some("k2"), Algorithm::ES256).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), before + 1);
}
