//! Discovery, trust anchors and the first fetch, against a real HTTPS issuer on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use std::time::Duration;

use certbound_core::{Algorithm, Rejection};
use certbound_dev::issuer::{FailureMode, TestIssuer};
use certbound_dev::DevCa;
use certbound_jwks::{CacheState, FetchError, KeySource, RemoteJwks, RemoteJwksBuildError};
use common::{builder, eventually, issuer, key, verifies};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_keys() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    let jwks = builder(&issuer).build().await.unwrap();

    let metadata = jwks.metadata().expect("built from an issuer");
    assert_eq!(metadata.issuer(), issuer.issuer_url());
    assert_eq!(metadata.jwks_uri(), issuer.jwks_uri());
    assert!(metadata.tls_client_certificate_bound_access_tokens());
    assert!(metadata
        .metadata_url()
        .ends_with("/.well-known/openid-configuration"));
    assert_eq!(jwks.jwks_uri(), issuer.jwks_uri());
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));

    let key = jwks.lookup(Some("k1"), Algorithm::ES256).unwrap();
    assert!(verifies(&k1, &key));
    assert_eq!(
        jwks.lookup(Some("k1"), Algorithm::RS256).unwrap_err(),
        Rejection::KeyAlgorithmMismatch
    );
    assert_eq!(
        jwks.lookup(Some("nope"), Algorithm::ES256).unwrap_err(),
        Rejection::UnknownKey
    );
    let stats = jwks.stats();
    assert_eq!((stats.fetches_ok, stats.fetches_failed), (1, 0));
    assert_eq!(
        (stats.keys, stats.kids, stats.state),
        (1, 1, CacheState::Fresh)
    );
    assert!(stats.last_success_age.is_some());
    assert_eq!(jwks.kids(), ["k1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_mismatch_is_a_build_error_naming_both_values() {
    let issuer = issuer(&[&key("k1")]).await;
    issuer.set_issuer_override(Some("https://evil.example".into()));

    let err = builder(&issuer).build().await.unwrap_err();
    let RemoteJwksBuildError::IssuerMismatch {
        configured,
        advertised,
        ..
    } = &err
    else {
        panic!("expected IssuerMismatch, got {err:?}");
    };
    assert_eq!(configured, issuer.issuer_url());
    assert_eq!(advertised, "https://evil.example");
    let message = err.to_string();
    assert!(message.contains(issuer.issuer_url()), "{message}");
    assert!(message.contains("https://evil.example"), "{message}");
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "no keys are fetched from a mismatched issuer"
    );

    // A trailing slash is a different issuer, too.
    issuer.set_issuer_override(None);
    let err = RemoteJwks::builder()
        .issuer(format!("{}/", issuer.issuer_url()))
        .system_roots(false)
        .extra_root_certificates_pem(issuer.ca_pem())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::IssuerMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_rfc8414_with_the_path_after_the_well_known_segment() {
    let k1 = key("k1");
    let issuer = TestIssuer::start_with_path("/realms/demo", &[&k1])
        .await
        .unwrap();
    issuer.set_serve_openid_configuration(false);
    issuer.set_advertise_bound_tokens(false);

    let jwks = builder(&issuer).build().await.unwrap();
    let metadata = jwks.metadata().unwrap();
    assert!(
        metadata
            .metadata_url()
            .ends_with("/.well-known/oauth-authorization-server/realms/demo"),
        "{}",
        metadata.metadata_url()
    );
    assert!(!metadata.tls_client_certificate_bound_access_tokens());
    assert_eq!(issuer.discovery_fetches(), 2, "OIDC (404), then RFC 8414");
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_failure_is_a_build_error_listing_both_attempts() {
    let issuer = issuer(&[&key("k1")]).await;
    let b = builder(&issuer);
    issuer.stop().await;
    let err = b.build().await.unwrap_err();
    let RemoteJwksBuildError::Discovery { attempts, .. } = &err else {
        panic!("expected Discovery, got {err:?}");
    };
    assert_eq!(attempts.len(), 2);
    assert!(attempts
        .iter()
        .all(|(_, e)| matches!(e, FetchError::Connect { .. })));
    assert!(
        err.to_string().contains("oauth-authorization-server"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_uri_without_discovery() {
    let issuer = issuer(&[&key("k1")]).await;
    let jwks = RemoteJwks::builder()
        .jwks_uri(issuer.jwks_uri())
        .system_roots(false)
        .extra_root_certificates_pem(issuer.ca_pem())
        .build()
        .await
        .unwrap();
    assert!(jwks.metadata().is_none());
    assert_eq!(issuer.discovery_fetches(), 0);
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_must_be_added_as_a_trust_anchor() {
    let issuer = issuer(&[&key("k1")]).await;
    let other_ca = DevCa::new("some other CA").unwrap();

    // Trusting a different CA: the certificate is refused, with a hint.
    let err = RemoteJwks::builder()
        .jwks_uri(issuer.jwks_uri())
        .system_roots(false)
        .extra_root_certificates_pem(&other_ca.cert().cert_pem)
        .require_initial_keys(true)
        .build()
        .await
        .unwrap_err();
    let RemoteJwksBuildError::InitialFetch(FetchError::UntrustedCertificate { .. }) = &err else {
        panic!("expected an untrusted certificate, got {err:?}");
    };
    assert!(
        err.to_string().contains("extra_root_certificates_pem"),
        "{err}"
    );

    // The system roots alone do not know the dev CA either; discovery fails.
    let err = RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteJwksBuildError::Discovery { attempts, .. }
            if attempts.iter().all(|(_, e)| matches!(e, FetchError::UntrustedCertificate { .. })))
            || matches!(err, RemoteJwksBuildError::NoTrustAnchors),
        "{err:?}"
    );

    // With the issuer's CA added (system roots kept), it works.
    let jwks = RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .extra_root_certificates_pem(issuer.ca_pem())
        .build()
        .await
        .unwrap();
    assert!(jwks.lookup(Some("k1"), Algorithm::ES256).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused() {
    let err = RemoteJwks::builder().build().await.unwrap_err();
    assert!(matches!(err, RemoteJwksBuildError::NoSource), "{err:?}");
    let err = RemoteJwks::builder()
        .issuer("http://auth.example.com")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::InsecureUrl { .. }),
        "{err:?}"
    );
    let err = RemoteJwks::builder()
        .jwks_uri("https://auth.example.com/jwks")
        .cache_ttl_bounds(Duration::from_secs(60), Duration::from_secs(10))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::InvalidConfig(_)),
        "{err:?}"
    );
    let err = RemoteJwks::builder()
        .jwks_uri("https://auth.example.com/jwks")
        .system_roots(false)
        .extra_root_certificates_pem("not a pem")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::ExtraRootCertificates(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_initial_fetch_means_503_until_a_retry_succeeds() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    issuer.set_failure(FailureMode::Status(500));

    let err = builder(&issuer)
        .require_initial_keys(true)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RemoteJwksBuildError::InitialFetch(FetchError::Status { status: 500, .. })
        ),
        "{err:?}"
    );

    let jwks = builder(&issuer).build().await.unwrap();
    let Err(Rejection::KeysUnavailable { retry_after_secs }) =
        jwks.lookup(Some("k1"), Algorithm::ES256)
    else {
        panic!("expected KeysUnavailable");
    };
    assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}");
    assert_eq!(jwks.stats().state, CacheState::Unavailable);

    // The background task retries after 1 s.
    issuer.set_failure(FailureMode::Normal);
    assert!(
        eventually(Duration::from_secs(4), || jwks
            .lookup(Some("k1"), Algorithm::ES256)
            .is_ok())
        .await
    );
    assert_eq!(jwks.stats().fetches_failed, 1);
}
