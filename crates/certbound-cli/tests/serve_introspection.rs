//! `certbound serve` with opaque tokens: the sidecar introspects them at a real HTTPS issuer
//! (RFC 7662, client_secret_basic) with the shared `--introspect` flags, checks the binding in
//! the response's `cnf` against each connection's certificate, and forwards only what it
//! accepted — with the identity from the introspection response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use certbound_core::Thumbprint;
use certbound_dev::issuer::{ClientAuthMethod, TestIssuer};
use common::serve::{strings, Echo, Served, Setup, AUD};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_opaque_bound_token_is_introspected_once_and_forwarded_only_for_its_certificate() {
    let setup = Setup::new("introspection");
    let issuer = TestIssuer::start(&[&setup.signer]).await.unwrap();
    issuer.register_introspection_client("sidecar", ClientAuthMethod::SecretBasic("s3cret".into()));
    let issuer_ca = setup.dir.join("issuer-ca.pem");
    std::fs::write(&issuer_ca, issuer.ca_pem()).unwrap();
    let echo = Echo::start(Duration::ZERO).await;
    let served = Served::start(
        &strings(&[
            "--upstream",
            &echo.url(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &setup.path("server.pem"),
            "--tls-key",
            &setup.path("server.key"),
            "--issuer",
            issuer.issuer_url(),
            "--audience",
            AUD,
            "--jwks-ca",
            issuer_ca.to_str().unwrap(),
            "--introspect",
            "--introspection-client-id",
            "sidecar",
            "--introspection-client-secret",
            "s3cret",
        ]),
        &setup.dir,
    );
    let now = certbound_dev::unix_now();
    let token = issuer.issue_opaque(json!({
        "iss": issuer.issuer_url(), "aud": AUD, "sub": "opaque-user", "client_id": "opaque-app",
        "scope": "orders:read", "exp": now + 600, "token_type": "Bearer",
        "cnf": {"x5t#S256": Thumbprint::of_der(&setup.pki.client_a.cert_der).to_string()},
    }));
    assert!(!token.contains('.'), "an opaque token, not a JWS");

    let a = setup.client(Some(&setup.pki.client_a));
    for _ in 0..3 {
        let res = a
            .get(served.url("/orders"))
            .bearer_auth(&token)
            .header("x-certbound-subject", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", served.log());
    }
    let seen = echo.last();
    assert_eq!(seen.headers["x-certbound-subject"], "opaque-user");
    assert_eq!(seen.headers["x-certbound-client-id"], "opaque-app");
    assert_eq!(seen.headers["x-certbound-scope"], "orders:read");
    assert_eq!(
        seen.headers.get_all("x-certbound-subject").iter().count(),
        1
    );
    assert_eq!(echo.count(), 3);

    // The same token from another certificate, or none: 401 invalid_token, nothing forwarded.
    for identity in [Some(&setup.pki.client_b), None] {
        let res = setup
            .client(identity)
            .get(served.url("/orders"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    assert_eq!(echo.count(), 3, "a refused request reached the upstream");
    // One introspection for five requests: the cache answered the rest, and the binding was
    // checked on each of them against that request's certificate.
    assert_eq!(issuer.introspection_calls(), 1);
    assert_eq!(issuer.introspection_refusals(), 0);

    // A token the issuer does not know: inactive → 401, never forwarded.
    let res = a
        .get(served.url("/orders"))
        .bearer_auth("an-opaque-token-nobody-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(echo.count(), 3);
}
