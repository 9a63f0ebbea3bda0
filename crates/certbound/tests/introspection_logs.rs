//! When the introspection endpoint refuses this server's own credentials, every opaque token is
//! answered 503 and ONE error line names the client id (not one per request), and no line ever
//! carries a token — over real HTTPS against the dev issuer, with the log captured by a real
//! tracing subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use certbound::{CertBound, IntrospectionAuth, Introspector, Rejection, Thumbprint};
use certbound_core::Algorithm;
use certbound_dev::issuer::{ClientAuthMethod, TestIssuer};
use certbound_dev::SigningKey;
use common::{Logs, AUDIENCE};
use serde_json::json;

#[test]
fn refused_credentials_are_logged_once_naming_the_client_and_never_the_token() {
    let (logs, _guard) = Logs::capture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let issuer = TestIssuer::start(&[&key]).await.unwrap();
        issuer.register_introspection_client(
            "orders-api",
            ClientAuthMethod::SecretBasic("right".into()),
        );
        let layer =
            CertBound::builder()
                .issuer(issuer.issuer_url())
                .audience(AUDIENCE)
                .jwks_root_certificates_pem(issuer.ca_pem().to_owned())
                .introspection(Introspector::builder().auth(
                    IntrospectionAuth::client_secret_basic("orders-api", "wrong"),
                ))
                .build()
                .await
                .unwrap();
        let cert = Thumbprint::of_der(b"client certificate");
        let mut tokens = Vec::new();
        for _ in 0..5 {
            let token = issuer.issue_opaque(json!({"aud": AUDIENCE,
                "cnf": {"x5t#S256": cert.to_string()}}));
            let rejection = layer.verify(&token, Some(cert)).await.unwrap_err();
            assert!(
                matches!(rejection, Rejection::IntrospectionCredentialsRefused { .. }),
                "{rejection:?}"
            );
            assert_eq!(rejection.status(), 503);
            tokens.push(token);
        }
        assert_eq!(issuer.introspection_refusals(), 5);
        let errors = logs.at("ERROR", "client_id=orders-api");
        assert_eq!(errors.len(), 1, "{:#?}", logs.lines());
        assert!(
            errors[0].contains("refused this server's client credentials"),
            "{}",
            errors[0]
        );
        for line in logs.lines() {
            for token in &tokens {
                assert!(!line.contains(token.as_str()), "a token in the log: {line}");
            }
            assert!(!line.contains("wrong"), "the secret in the log: {line}");
        }

        // Fixed at the issuer: the same layer accepts (no restart; failures are not cached
        // beyond a second, and these tokens were never cached as refused for longer).
        issuer.register_introspection_client(
            "orders-api",
            ClientAuthMethod::SecretBasic("wrong".into()),
        );
        let fresh = issuer.issue_opaque(json!({"aud": AUDIENCE,
            "cnf": {"x5t#S256": cert.to_string()}}));
        let token = layer.verify(&fresh, Some(cert)).await.unwrap();
        assert!(token.is_introspected());
    });
}
