//! The layer with real HTTPS issuers: several issuers, key rotation, issuer outages (503), slow
//! issuers, and the verified-token cache, which must never accept what the uncached path
//! rejects and must survive refetches of unchanged keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certbound::{CertBound, CertBoundLayer, Rejection, RemoteJwks, TrustedIssuer};
use certbound_core::{Algorithm, Thumbprint};
use certbound_dev::issuer::{FailureMode, TestIssuer};
use certbound_dev::{bound_claims, unix_now, SigningKey};
use common::{answer, Api, Mode, AUDIENCE};
use serde_json::json;

fn tp(n: u8) -> Thumbprint {
    Thumbprint::from_bytes([n; 32])
}

#[tokio::test]
async fn two_issuers_each_token_only_with_its_own_keys() {
    // Both issuers use kid "k1", with different keys.
    let key_x = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let key_y = SigningKey::generate("k1", Algorithm::RS256).unwrap();
    let x = TestIssuer::start(&[&key_x]).await.unwrap();
    let y = TestIssuer::start(&[&key_y]).await.unwrap();
    let layer = CertBound::builder()
        .issuer(x.issuer_url())
        .audience(AUDIENCE)
        .trusted_issuer(TrustedIssuer::new(y.issuer_url()).audience("https://partner-api.example"))
        .jwks_root_certificates_pem(format!("{}{}", x.ca_pem(), y.ca_pem()))
        .build()
        .await
        .unwrap();
    let from_x = key_x
        .sign(&bound_claims(x.issuer_url(), AUDIENCE, &tp(1)))
        .unwrap();
    let from_y = key_y
        .sign(&bound_claims(
            y.issuer_url(),
            "https://partner-api.example",
            &tp(1),
        ))
        .unwrap();
    assert_eq!(
        layer.verify(&from_x, Some(tp(1))).await.unwrap().issuer(),
        x.issuer_url()
    );
    assert_eq!(
        layer.verify(&from_y, Some(tp(1))).await.unwrap().issuer(),
        y.issuer_url()
    );

    // Y's key claiming to be X: X's key "k1" is EC, so an RS256 token finds no fitting key.
    let y_as_x = key_y
        .sign(&bound_claims(x.issuer_url(), AUDIENCE, &tp(1)))
        .unwrap();
    assert_eq!(
        layer.verify(&y_as_x, Some(tp(1))).await.unwrap_err(),
        Rejection::KeyAlgorithmMismatch
    );
    // X's key claiming to be Y: Y's "k1" is RSA.
    let x_as_y = key_x
        .sign(&bound_claims(
            y.issuer_url(),
            "https://partner-api.example",
            &tp(1),
        ))
        .unwrap();
    assert_eq!(
        layer.verify(&x_as_y, Some(tp(1))).await.unwrap_err(),
        Rejection::KeyAlgorithmMismatch
    );
    // Same algorithm, same kid, other issuer's key: the signature does not verify.
    let key_x2 = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let forged = key_x2
        .sign(&bound_claims(x.issuer_url(), AUDIENCE, &tp(1)))
        .unwrap();
    assert_eq!(
        layer.verify(&forged, Some(tp(1))).await.unwrap_err(),
        Rejection::BadSignature
    );
    // Each issuer's own audience: X's audience is not Y's.
    let y_for_x_audience = key_y
        .sign(&bound_claims(y.issuer_url(), AUDIENCE, &tp(1)))
        .unwrap();
    assert_eq!(
        layer
            .verify(&y_for_x_audience, Some(tp(1)))
            .await
            .unwrap_err(),
        Rejection::WrongAudience
    );
    // An issuer nobody configured.
    let stranger = key_x
        .sign(&bound_claims("https://stranger.example/", AUDIENCE, &tp(1)))
        .unwrap();
    assert_eq!(
        layer.verify(&stranger, Some(tp(1))).await.unwrap_err(),
        Rejection::WrongIssuer
    );
}

#[tokio::test]
async fn no_keys_means_503_with_retry_after_never_acceptance() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    let jwks_uri = issuer.jwks_uri().to_owned();
    let ca = issuer.ca_pem().to_owned();
    let url = issuer.issuer_url().to_owned();
    issuer.stop().await;
    // The issuer is down at start-up: the layer still starts, and answers 503 until keys arrive.
    let api = Api::start_custom(Mode::SelfSigned, |b| {
        b.issuer(url.clone())
            .jwks_uri(jwks_uri.clone())
            .jwks_root_certificates_pem(ca.clone())
    })
    .await;
    let token = key
        .sign(&bound_claims(
            &url,
            AUDIENCE,
            &common::thumbprint(&api.pki.client_a),
        ))
        .unwrap();
    let resp = api
        .client(Some(&api.pki.client_a))
        .get(format!("{}/api/hello", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let a = answer(resp).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u32>().is_ok()),
        "{retry_after:?}"
    );
    assert_eq!(a.challenge, None);
}

/// A layer over `issuer` with a short unknown-kid cooldown and a controllable clock.
async fn layer_with_clock(issuer: &TestIssuer, cache: bool, now: Arc<AtomicU64>) -> CertBoundLayer {
    let keys = RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .extra_root_certificates_pem(issuer.ca_pem())
        .unknown_kid_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let builder = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .key_source(keys)
        .clock(move || now.load(Ordering::SeqCst));
    let builder = if cache {
        builder
    } else {
        builder.no_token_cache()
    };
    builder.build().await.unwrap()
}

#[tokio::test]
async fn a_rotated_out_key_stops_validating_even_for_cached_tokens() {
    let old = SigningKey::generate("old", Algorithm::ES256).unwrap();
    let new = SigningKey::generate("new", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&old]).await.unwrap();
    let now = Arc::new(AtomicU64::new(unix_now()));
    for cache in [true, false] {
        issuer.set_keys(&[&old]);
        let layer = layer_with_clock(&issuer, cache, Arc::clone(&now)).await;
        let old_token = old
            .sign(&bound_claims(issuer.issuer_url(), AUDIENCE, &tp(7)))
            .unwrap();
        layer.verify(&old_token, Some(tp(7))).await.unwrap();
        layer.verify(&old_token, Some(tp(7))).await.unwrap(); // warm
                                                              // Rotation: the issuer publishes only the new key; a token with the new kid makes the
                                                              // layer refresh once.
        issuer.set_keys(&[&new]);
        let before = issuer.jwks_fetches();
        let new_token = new
            .sign(&bound_claims(issuer.issuer_url(), AUDIENCE, &tp(7)))
            .unwrap();
        layer.verify(&new_token, Some(tp(7))).await.unwrap();
        assert_eq!(issuer.jwks_fetches(), before + 1, "cache={cache}");
        // The old key is gone: the cached entry must not keep the old token alive.
        assert_eq!(
            layer.verify(&old_token, Some(tp(7))).await.unwrap_err(),
            Rejection::UnknownKey,
            "cache={cache}"
        );
    }
}

/// A token, the certificate it arrives with, a clock offset, and the expected decision.
type Case = (String, Option<Thumbprint>, u64, Result<(), Rejection>);

#[tokio::test]
async fn the_cache_never_turns_a_rejection_into_an_acceptance() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    let t0 = unix_now();
    let now = Arc::new(AtomicU64::new(t0));
    let iss = issuer.issuer_url().to_owned();
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = json!({"iss": iss, "aud": AUDIENCE, "exp": t0 + 600, "iat": t0, "sub": "s", "cnf": {"x5t#S256": tp(1).to_string()}});
        f(&mut c);
        key.sign(&c).unwrap()
    };
    let valid = claims(&|_| {});
    // (token, presented certificate, time offset, expected result)
    let cases: Vec<Case> = vec![
        (valid.clone(), Some(tp(1)), 0, Ok(())),
        (
            valid.clone(),
            Some(tp(2)),
            0,
            Err(Rejection::BindingMismatch),
        ),
        (
            valid.clone(),
            None,
            0,
            Err(Rejection::MissingClientCertificate),
        ),
        (
            valid.clone(),
            Some(tp(1)),
            600 + 60,
            Err(Rejection::Expired),
        ), // past exp + leeway
        (
            claims(&|c| c["nbf"] = json!(t0 + 300)),
            Some(tp(1)),
            0,
            Err(Rejection::NotYetValid),
        ),
        (
            claims(&|c| c["aud"] = json!("https://elsewhere")),
            Some(tp(1)),
            0,
            Err(Rejection::WrongAudience),
        ),
        (
            claims(&|c| c["iss"] = json!("https://elsewhere/")),
            Some(tp(1)),
            0,
            Err(Rejection::WrongIssuer),
        ),
        (
            claims(&|c| c["exp"] = json!(t0 - 3600)),
            Some(tp(1)),
            0,
            Err(Rejection::Expired),
        ),
        (
            claims(&|c| {
                c.as_object_mut().unwrap().remove("cnf");
            }),
            Some(tp(1)),
            0,
            Err(Rejection::UnboundToken),
        ),
        (
            tamper_signature(&valid),
            Some(tp(1)),
            0,
            Err(Rejection::BadSignature),
        ),
    ];
    let cold = layer_with_clock(&issuer, true, Arc::clone(&now)).await;
    let off = layer_with_clock(&issuer, false, Arc::clone(&now)).await;
    // Warm: every token has been seen once while valid-looking (at t0, with the right cert).
    let warm = layer_with_clock(&issuer, true, Arc::clone(&now)).await;
    for (token, _, _, _) in &cases {
        let _ = warm.verify(token, Some(tp(1))).await;
    }
    for (token, presented, offset, expected) in &cases {
        now.store(t0 + offset, Ordering::SeqCst);
        for (name, layer) in [
            ("off", &off),
            ("cold", &cold),
            ("warm", &warm),
            ("warm again", &warm),
        ] {
            let got = layer.verify(token, *presented).await.map(|_| ());
            assert_eq!(
                &got, expected,
                "{name}: presented={presented:?} offset={offset}"
            );
        }
    }
    // Back at t0 the token is valid again: re-verified and cached anew.
    now.store(t0, Ordering::SeqCst);
    assert!(warm.verify(&valid, Some(tp(1))).await.is_ok());
    assert!(warm.token_cache_stats().unwrap().entries >= 1);
}

/// Changes one character in the middle of the signature (still canonical base64url).
fn tamper_signature(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn cache_bounds_hold_under_many_distinct_tokens() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    let layer = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .jwks_root_certificates_pem(issuer.ca_pem())
        .token_cache(certbound::TokenCacheConfig {
            max_entries: 100,
            max_bytes: 1024 * 1024,
        })
        .build()
        .await
        .unwrap();
    for i in 0..500u32 {
        let mut c = bound_claims(issuer.issuer_url(), AUDIENCE, &tp(1));
        c["jti"] = json!(format!("token-{i}"));
        layer
            .verify(&key.sign(&c).unwrap(), Some(tp(1)))
            .await
            .unwrap();
    }
    let stats = layer.token_cache_stats().unwrap();
    assert!(stats.entries <= 100, "{stats:?}");
    assert!(stats.bytes <= 1024 * 1024, "{stats:?}");
}

/// A layer over `issuer`'s keys (kept, so the test can force refetches) with this cooldown.
async fn remote_layer(issuer: &TestIssuer, cooldown: Duration) -> (CertBoundLayer, RemoteJwks) {
    let keys = RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .system_roots(false)
        .extra_root_certificates_pem(issuer.ca_pem())
        .unknown_kid_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let layer = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .key_source(keys.clone())
        .build()
        .await
        .unwrap();
    (layer, keys)
}

/// (misses, hits) of the layer's verified-token cache: a miss is a signature verification.
fn verifications(layer: &CertBoundLayer) -> (u64, u64) {
    let stats = layer.token_cache_stats().unwrap();
    (stats.misses, stats.hits)
}

#[tokio::test]
async fn a_steady_client_is_verified_once_across_key_refetches() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    let (layer, keys) = remote_layer(&issuer, Duration::ZERO).await;
    let api = Api::serve(Mode::SelfSigned, layer.clone()).await;
    let client = &api.pki.client_a;
    let bound = |signer: &SigningKey| {
        signer
            .sign(&bound_claims(
                issuer.issuer_url(),
                AUDIENCE,
                &common::thumbprint(client),
            ))
            .unwrap()
    };
    let token = bound(&key);
    assert_eq!(api.hello(Some(client), Some(&token)).await.status, 200);
    assert_eq!(verifications(&layer), (1, 0));

    // Three refetches — forced, caused by an unknown-kid token through the layer, forced —
    // each followed by the steady client's next request: answered from the cache every time.
    let stranger = bound(&SigningKey::generate("unknown", Algorithm::ES256).unwrap());
    for round in 0..3 {
        let fetches = issuer.jwks_fetches();
        if round == 1 {
            api.hello(Some(client), Some(&stranger))
                .await
                .assert_invalid_token(Rejection::UnknownKey);
        } else {
            keys.refresh_now().await.unwrap();
        }
        assert_eq!(issuer.jwks_fetches(), fetches + 1, "round {round}");
        assert_eq!(api.hello(Some(client), Some(&token)).await.status, 200);
    }
    // One verification for the steady token (and one for the stranger, refused); three hits.
    assert_eq!(verifications(&layer), (2, 3));

    // The key really changes — same kid, new material: the cached entry is dropped, the old
    // token is verified again, against the new key, and refused.
    let replaced = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    issuer.set_keys(&[&replaced]);
    keys.refresh_now().await.unwrap();
    api.hello(Some(client), Some(&token))
        .await
        .assert_invalid_token(Rejection::BadSignature);
    assert_eq!(verifications(&layer), (3, 3));
    let renewed = bound(&replaced);
    for _ in 0..2 {
        assert_eq!(api.hello(Some(client), Some(&renewed)).await.status, 200);
    }
    assert_eq!(verifications(&layer), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_issuer_holds_only_the_unknown_kid_request_that_fetches() {
    const SLOW: Duration = Duration::from_secs(5);
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    let cooldown = Duration::from_millis(200);
    let (layer, _keys) = remote_layer(&issuer, cooldown).await;
    let api = Api::serve(Mode::SelfSigned, layer).await;
    let identity = &api.pki.client_a;
    let client = api.client(Some(identity));
    let url = format!("{}/api/hello", api.url);
    let bound = |signer: &SigningKey| {
        signer
            .sign(&bound_claims(
                issuer.issuer_url(),
                AUDIENCE,
                &common::thumbprint(identity),
            ))
            .unwrap()
    };
    let known = bound(&key);
    // Warm the connection; then the issuer turns slow, and the cooldown is over.
    assert_eq!(timed_get(&client, &url, &known).await.0.status, 200);
    issuer.set_failure(FailureMode::Slow(SLOW));
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;

    // The first unknown kid fetches, and waits for the slow issuer.
    let trigger = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        let token = bound(&SigningKey::generate("rotated", Algorithm::ES256).unwrap());
        async move { timed_get(&client, &url, &token).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while issuer.jwks_fetches() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(issuer.jwks_fetches(), 2, "the slow fetch is in flight");

    // The flood: 20 clients × 10 unknown-kid tokens, with known-kid requests among them.
    let forged: Vec<Vec<String>> = (0..20)
        .map(|c| {
            (0..10)
                .map(|i| {
                    bound(
                        &SigningKey::generate(&format!("forged-{c}-{i}"), Algorithm::ES256)
                            .unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let mut flood = tokio::task::JoinSet::new();
    for tokens in forged {
        let (client, url, known) = (client.clone(), url.clone(), known.clone());
        flood.spawn(async move {
            let mut answers = Vec::new();
            for token in tokens {
                answers.push((false, timed_get(&client, &url, &token).await));
                answers.push((true, timed_get(&client, &url, &known).await));
            }
            answers
        });
    }
    let answers: Vec<_> = flood.join_all().await.into_iter().flatten().collect();
    assert!(
        !trigger.is_finished(),
        "the flood was answered while the fetch was in flight"
    );
    let mut slowest = (Duration::ZERO, Duration::ZERO);
    for (is_known, (answer, took)) in &answers {
        if *is_known {
            assert_eq!(answer.status, 200, "{answer:?}");
            slowest.0 = slowest.0.max(*took);
        } else {
            answer.assert_invalid_token(Rejection::UnknownKey);
            slowest.1 = slowest.1.max(*took);
        }
    }
    eprintln!(
        "{} requests during a {SLOW:?} fetch; slowest known-kid answer {:?}, slowest unknown-kid answer {:?}",
        answers.len(),
        slowest.0,
        slowest.1
    );
    assert!(slowest.1 < Duration::from_millis(100), "{slowest:?}");
    assert!(slowest.0 < Duration::from_millis(100), "{slowest:?}");
    assert_eq!(issuer.jwks_fetches(), 2, "the flood fetched nothing");

    // The request that fetched got its answer once the issuer did.
    let (answer, took) = trigger.await.unwrap();
    answer.assert_invalid_token(Rejection::UnknownKey);
    assert!(took >= SLOW - Duration::from_millis(500), "{took:?}");
}

/// GET `url` with `token`, and how long the answer took.
async fn timed_get(client: &reqwest::Client, url: &str, token: &str) -> (common::Answer, Duration) {
    let started = std::time::Instant::now();
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    (answer(response).await, started.elapsed())
}

#[tokio::test]
async fn duration_max_settings_build_and_serve() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await.unwrap();
    issuer.set_cache_control(Some(format!("max-age={}", u64::MAX)));
    let keys = RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .system_roots(false)
        .extra_root_certificates_pem(issuer.ca_pem())
        .connect_timeout(Duration::MAX)
        .timeout(Duration::MAX)
        .cache_ttl_bounds(Duration::from_secs(1), Duration::MAX)
        .default_ttl(Duration::MAX)
        .unknown_kid_cooldown(Duration::MAX)
        .max_stale(Duration::MAX)
        .build()
        .await
        .unwrap();
    let layer = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .key_source(keys.clone())
        .leeway(Duration::MAX)
        .token_cache(certbound::TokenCacheConfig {
            max_entries: usize::MAX,
            max_bytes: u64::MAX,
        })
        .build()
        .await
        .unwrap();
    let api = Api::serve(Mode::SelfSigned, layer.clone()).await;
    let client = &api.pki.client_a;
    let token = key
        .sign(&bound_claims(
            issuer.issuer_url(),
            AUDIENCE,
            &common::thumbprint(client),
        ))
        .unwrap();
    assert_eq!(api.hello(Some(client), Some(&token)).await.status, 200);
    keys.refresh_now().await.unwrap();
    assert_eq!(api.hello(Some(client), Some(&token)).await.status, 200);
    assert_eq!(verifications(&layer), (1, 1));
    // A cooldown of Duration::MAX: an unknown kid never fetches, and is answered.
    let stranger = SigningKey::generate("k2", Algorithm::ES256).unwrap();
    let token = stranger
        .sign(&bound_claims(
            issuer.issuer_url(),
            AUDIENCE,
            &common::thumbprint(client),
        ))
        .unwrap();
    api.hello(Some(client), Some(&token))
        .await
        .assert_invalid_token(Rejection::UnknownKey);
    assert_eq!(issuer.jwks_fetches(), 2);
}
