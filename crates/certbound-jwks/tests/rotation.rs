//! Key rotation through unknown-kid refreshes, and the flood guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use certbound_core::{Algorithm, Rejection};
use certbound_dev::SigningKey;
use certbound_jwks::KeySource;
use common::{builder, issuer, key, verifies};
use futures_util::FutureExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kid_is_found_with_exactly_one_extra_fetch() {
    let old = key("old");
    let issuer = issuer(&[&old]).await;
    let cooldown = Duration::from_millis(200);
    let jwks = builder(&issuer)
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);

    // The issuer starts signing with a new key.
    let new = key("new");
    issuer.set_keys(&[&old, &new]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;

    assert_eq!(
        jwks.lookup(Some("new"), Algorithm::ES256).unwrap_err(),
        Rejection::UnknownKey
    );
    let found = jwks.refresh(Some("new"), Algorithm::ES256).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 2, "exactly one extra fetch");
    assert!(verifies(&new, &found));
    // From now on the fast path has it.
    assert!(jwks.lookup(Some("new"), Algorithm::ES256).is_ok());
    assert!(jwks.lookup(Some("old"), Algorithm::ES256).is_ok());

    // The old key is withdrawn: after the next fetch it no longer validates.
    issuer.set_keys(&[&new]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert_eq!(
        jwks.refresh(Some("newer"), Algorithm::ES256)
            .await
            .unwrap_err(),
        Rejection::UnknownKey
    );
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(
        jwks.lookup(Some("old"), Algorithm::ES256).unwrap_err(),
        Rejection::UnknownKey
    );
    assert_eq!(jwks.kids(), ["new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_within_the_cooldown_does_not_fetch() {
    let issuer = issuer(&[&key("k1")]).await;
    let jwks = builder(&issuer).build().await.unwrap(); // default cooldown: 30 s
    let next = key("k2");
    issuer.set_keys(&[&next]);
    // Answered on the first poll: inside the cooldown nothing is waited for.
    assert_eq!(
        jwks.refresh(Some("k2"), Algorithm::ES256)
            .now_or_never()
            .expect("answered at once")
            .unwrap_err(),
        Rejection::UnknownKey
    );
    assert_eq!(
        issuer.jwks_fetches(),
        1,
        "the build fetch started the cooldown"
    );
    // A known kid never needs a fetch, even through refresh.
    assert!(jwks.refresh(Some("k1"), Algorithm::ES256).await.is_ok());
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let issuer = issuer(&[&key("k1")]).await;
    let cooldown = Duration::from_secs(2);
    let jwks = builder(&issuer)
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let before = issuer.jwks_fetches();

    let flood = |round: usize| {
        let tasks: Vec<_> = (0..1_000)
            .map(|i| {
                let jwks = jwks.clone();
                tokio::spawn(async move {
                    let kid = format!("forged-{round}-{i}");
                    jwks.refresh(Some(&kid), Algorithm::ES256).await
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    let started = std::time::Instant::now();
    for result in flood(1).await {
        assert_eq!(result.unwrap().unwrap_err(), Rejection::UnknownKey);
    }
    // Still inside the same cooldown window: a second flood fetches nothing.
    for result in flood(2).await {
        assert_eq!(result.unwrap().unwrap_err(), Rejection::UnknownKey);
    }
    assert!(
        started.elapsed() < cooldown,
        "floods took {:?}",
        started.elapsed()
    );
    assert_eq!(issuer.jwks_fetches() - before, 1);
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_keys_keep_their_identity_across_refetches() {
    let stays = key("stays");
    let changes = key("changes");
    let leaves = SigningKey::generate("leaves", Algorithm::RS256).unwrap();
    let issuer = issuer(&[&stays, &changes, &leaves]).await;
    let jwks = builder(&issuer).build().await.unwrap();
    let get = |kid: &str, alg| jwks.lookup(Some(kid), alg).unwrap();
    let before = (
        get("stays", Algorithm::ES256),
        get("changes", Algorithm::ES256),
        get("leaves", Algorithm::RS256),
    );
    // Three refetches of the same document: every key is the very same `Arc`.
    for _ in 0..3 {
        jwks.refresh_now().await.unwrap();
        assert!(Arc::ptr_eq(&get("stays", Algorithm::ES256), &before.0));
        assert!(Arc::ptr_eq(&get("changes", Algorithm::ES256), &before.1));
        assert!(Arc::ptr_eq(&get("leaves", Algorithm::RS256), &before.2));
    }
    assert_eq!(issuer.jwks_fetches(), 4);

    // Same kid, new material; another key withdrawn; the document reordered.
    let changed = key("changes");
    issuer.set_keys(&[&changed, &stays]);
    jwks.refresh_now().await.unwrap();
    assert!(Arc::ptr_eq(&get("stays", Algorithm::ES256), &before.0));
    let now_changed = get("changes", Algorithm::ES256);
    assert!(!Arc::ptr_eq(&now_changed, &before.1));
    assert!(!now_changed.same_key(&before.1));
    assert!(verifies(&changed, &now_changed));
    assert!(
        !verifies(&changes, &now_changed),
        "the old material is gone"
    );
    assert_eq!(
        jwks.lookup(Some("leaves"), Algorithm::RS256).unwrap_err(),
        Rejection::UnknownKey
    );
    // A key that comes back is a new `Arc`: identity is carried from the previous set only.
    issuer.set_keys(&[&changed, &stays, &leaves]);
    jwks.refresh_now().await.unwrap();
    assert!(!Arc::ptr_eq(&get("leaves", Algorithm::RS256), &before.2));
    assert!(get("leaves", Algorithm::RS256).same_key(&before.2));
}
