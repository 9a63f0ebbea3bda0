//! RFC 9728 metadata served by the example API, `resource_metadata` in challenges, and
//! per-route scopes (RFC 6750 §3.1 `insufficient_scope`), over real mutual TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, Api, Mode, AUDIENCE};
use serde_json::json;

#[tokio::test]
async fn the_example_serves_rfc9728_metadata() {
    let api = Api::start(Mode::SelfSigned).await;
    let client = api.client(None);
    let resp = client
        .get(format!("{}/.well-known/oauth-protected-resource", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": AUDIENCE,
            "authorization_servers": [api.issuer.as_ref().unwrap().issuer_url()],
            "bearer_methods_supported": ["header"],
            "tls_client_certificate_bound_access_tokens": true,
        })
    );
}

#[tokio::test]
async fn challenges_point_to_the_metadata_when_asked() {
    let api = Api::start_with(Mode::SelfSigned, |b| {
        b.resource("https://api.example/v1")
            .scopes_supported(["read", "admin"])
            .advertise_resource_metadata()
    })
    .await;
    let a = api.hello(Some(&api.pki.client_a), None).await;
    assert_eq!(
        a.challenge.as_deref(),
        Some(
            r#"Bearer realm="https://api.example", resource_metadata="https://api.example/.well-known/oauth-protected-resource/v1""#
        )
    );
    let resp = api
        .client(None)
        .get(format!(
            "{}/.well-known/oauth-protected-resource/v1",
            api.url
        ))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["resource"], "https://api.example/v1");
    assert_eq!(doc["scopes_supported"], json!(["read", "admin"]));
}

#[tokio::test]
async fn scopes_are_enforced_per_route() {
    let api = Api::start(Mode::SelfSigned).await;
    let client = api.client(Some(&api.pki.client_a));
    // The dev token has scope "read write".
    let token = api.token_for(&api.pki.client_a);
    let a = answer(
        client
            .get(format!("{}/api/admin", api.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(
        a.challenge.as_deref(),
        Some(
            r#"Bearer realm="https://api.example", error="insufficient_scope", error_description="token lacks the required scope", scope="admin""#
        )
    );
    let mut claims = api.claims_for(&api.pki.client_a);
    claims["scope"] = json!("read admin");
    let admin = api.signer.sign(&claims).unwrap();
    let a = answer(
        client
            .get(format!("{}/api/admin", api.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // "admin" must be a whole word of the scope claim.
    claims["scope"] = json!("read administrator");
    let near = api.signer.sign(&claims).unwrap();
    let a = answer(
        client
            .get(format!("{}/api/admin", api.url))
            .bearer_auth(&near)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 403);
    // The scope check never runs before the binding check: another certificate is still 401.
    let b = api.client(Some(&api.pki.client_b));
    let a = answer(
        b.get(format!("{}/api/admin", api.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 401);
}
