//! axum extractors: `VerifiedToken`, `VerifiedToken<MyClaims>`, `Option<VerifiedToken>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use certbound::tls::PeerCertificate;
use certbound::{ClientCertificate, VerifiedToken};
use certbound_core::Algorithm;
use certbound_dev::{bound_claims, SigningKey};
use http::Request;
use serde::Deserialize;
use tower::ServiceExt;

#[derive(Deserialize)]
struct TenantClaims {
    tenant: String,
    #[serde(default)]
    roles: Vec<String>,
}

async fn tenant(token: VerifiedToken<TenantClaims>) -> String {
    format!(
        "{} {} {:?}",
        token.claims().tenant,
        token.sub().unwrap_or("-"),
        token.claims().roles
    )
}

async fn maybe(token: Option<VerifiedToken>) -> &'static str {
    if token.is_some() {
        "someone"
    } else {
        "nobody"
    }
}

async fn body(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn typed_custom_claims_and_optional_tokens() {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let auth = common::static_layer(&key).await;
    let app = Router::new()
        .route("/tenant", get(tenant))
        .layer(auth)
        .route("/open", get(maybe));
    let cert = ClientCertificate::from_der(b"client".to_vec());
    let request = |path: &str, token: Option<&str>| {
        let mut builder = Request::builder().uri(path);
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let mut req = builder.body(Body::empty()).unwrap();
        req.extensions_mut().insert(PeerCertificate::new(
            "127.0.0.1:9".parse().unwrap(),
            Some(cert.clone()),
        ));
        req
    };
    let mut claims = bound_claims(
        "https://issuer.example/",
        "https://api.example",
        cert.thumbprint(),
    );
    claims["tenant"] = "acme".into();
    claims["roles"] = serde_json::json!(["admin"]);
    let with_tenant = key.sign(&claims).unwrap();
    claims.as_object_mut().unwrap().remove("tenant");
    let without_tenant = key.sign(&claims).unwrap();

    let resp = app
        .clone()
        .oneshot(request("/tenant", Some(&with_tenant)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(body(resp).await, r#"acme user-123 ["admin"]"#);

    // A verified token whose claims lack what the handler's type needs: 401 invalid_token.
    let resp = app
        .clone()
        .oneshot(request("/tenant", Some(&without_tenant)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("claims"),
        "{challenge}"
    );

    // Outside the layer, Option<VerifiedToken> is None, even with a token.
    let resp = app
        .clone()
        .oneshot(request("/open", Some(&with_tenant)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "nobody");
}
