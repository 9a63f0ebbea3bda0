//! Wiring mistakes are the server's, answered 500 with one error log naming the fix — never 401:
//! `require_scope` under another layer instance or under none, and the `VerifiedToken`
//! extractor on a route the layer does not cover. The right wiring still answers 200 / 403.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use certbound::tls::PeerCertificate;
use certbound::{CertBoundLayer, ClientCertificate, VerifiedToken};
use certbound_core::Algorithm;
use certbound_dev::{bound_claims, SigningKey};
use common::{Logs, AUDIENCE, ISSUER};
use http::{Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};

const FIX: &str = "put require_scope inside the CertBoundLayer it was made from";

struct Setup {
    key: SigningKey,
    cert: ClientCertificate,
}

impl Setup {
    fn new() -> Self {
        Self {
            key: SigningKey::generate("k1", Algorithm::ES256).unwrap(),
            cert: ClientCertificate::from_der(b"client".to_vec()),
        }
    }

    /// A token bound to the client, with `scope` "read write", for `audiences`.
    fn token(&self, audiences: &[&str]) -> String {
        let mut claims = bound_claims(ISSUER, AUDIENCE, self.cert.thumbprint());
        claims["aud"] = serde_json::json!(audiences);
        self.key.sign(&claims).unwrap()
    }

    fn request<B: Default>(&self, token: &str) -> Request<B> {
        let mut req = Request::builder()
            .uri("/admin")
            .header("authorization", format!("Bearer {token}"))
            .body(B::default())
            .unwrap();
        req.extensions_mut().insert(PeerCertificate::new(
            "127.0.0.1:9".parse().unwrap(),
            Some(self.cert.clone()),
        ));
        req
    }
}

/// `outer` around `scope` around a handler that answers 200: the status and the challenge.
async fn call(
    outer: Option<&CertBoundLayer>,
    scope: certbound::scope::RequireScopeLayer,
    req: Request<String>,
) -> (StatusCode, Option<String>) {
    let handler = service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new("handled".to_owned()))
    });
    let response = ServiceBuilder::new()
        .option_layer(outer.cloned())
        .layer(scope)
        .service(handler)
        .oneshot(req)
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    if response.status() != StatusCode::OK {
        assert_eq!(response.body(), "", "the handler ran");
    }
    (response.status(), challenge)
}

#[tokio::test(flavor = "current_thread")]
async fn the_right_wiring_still_answers_200_and_403() {
    let s = Setup::new();
    let a = common::static_layer(&s.key).await;
    let token = s.token(&[AUDIENCE]);
    let (logs, _guard) = Logs::capture();

    assert_eq!(
        call(Some(&a), a.require_scope("read"), s.request(&token)).await,
        (StatusCode::OK, None)
    );
    // A clone of the layer is the same instance.
    assert_eq!(
        call(
            Some(&a.clone()),
            a.require_scopes(["read", "write"]),
            s.request(&token)
        )
        .await,
        (StatusCode::OK, None)
    );
    let (status, challenge) = call(Some(&a), a.require_scope("admin"), s.request(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="admin""#),
        "{challenge}"
    );
    assert!(logs.at("ERROR", "").is_empty(), "{:?}", logs.lines());
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_from_another_layer_does_not_satisfy_require_scope() {
    let s = Setup::new();
    // Two layers of the same issuer and key: B serves another audience.
    let a = common::static_layer_for(&s.key, AUDIENCE).await;
    let b = common::static_layer_for(&s.key, "https://other-api.example").await;
    let (logs, _guard) = Logs::capture();

    // Layer B verifies a token for its audience; A's scope check must not take it.
    let token_b = s.token(&["https://other-api.example"]);
    let (status, challenge) = call(Some(&b), a.require_scope("read"), s.request(&token_b)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        challenge, None,
        "a wiring mistake is no challenge to the client"
    );
    let errors = logs.at("ERROR", FIX);
    assert_eq!(errors.len(), 1, "{:?}", logs.lines());
    assert!(
        errors[0].contains("another certbound layer instance"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("required=read"), "{}", errors[0]);

    // Even with the same configuration: identity is per layer instance, not per setting.
    logs.clear();
    let a2 = common::static_layer_for(&s.key, AUDIENCE).await;
    let token = s.token(&[AUDIENCE]);
    let (status, _) = call(Some(&a2), a.require_scope("read"), s.request(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(logs.at("ERROR", FIX).len(), 1, "{:?}", logs.lines());

    // A token from A's verify() carries A's identity: put into a request by hand, B's scope
    // check refuses it too.
    logs.clear();
    let verified = a.verify(&token, Some(*s.cert.thumbprint())).await.unwrap();
    let mut req = s.request::<String>(&token);
    req.extensions_mut().insert(verified);
    let (status, _) = call(None, b.require_scope("read"), req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "current_thread")]
async fn require_scope_without_any_layer_is_500() {
    let s = Setup::new();
    let a = common::static_layer(&s.key).await;
    let (logs, _guard) = Logs::capture();
    let token = s.token(&[AUDIENCE]);
    for req in [s.request(&token), Request::new(String::new())] {
        logs.clear();
        let (status, challenge) = call(None, a.require_scope("read"), req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(challenge, None);
        let errors = logs.at("ERROR", FIX);
        assert_eq!(errors.len(), 1, "{:?}", logs.lines());
        assert!(errors[0].contains("no VerifiedToken"), "{}", errors[0]);
        assert_eq!(logs.at("ERROR", "").len(), 1, "{:?}", logs.lines());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_extractor_without_the_layer_is_500() {
    let s = Setup::new();
    let a = common::static_layer(&s.key).await;
    let (logs, _guard) = Logs::capture();
    async fn whoami(token: VerifiedToken) -> String {
        token.sub().unwrap_or("-").to_owned()
    }
    async fn maybe(token: Option<VerifiedToken>) -> &'static str {
        if token.is_some() {
            "someone"
        } else {
            "nobody"
        }
    }
    let app = Router::new()
        .route("/protected", get(whoami))
        .route_layer(a)
        .route("/forgotten", get(whoami))
        .route("/open", get(maybe));
    let token = s.token(&[AUDIENCE]);
    let send = |path: &str| {
        let mut req = s.request::<Body>(&token);
        *req.uri_mut() = path.parse().unwrap();
        app.clone().oneshot(req)
    };

    let response = send("/protected").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(logs.at("ERROR", "").is_empty(), "{:?}", logs.lines());

    let response = send("/forgotten").await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("www-authenticate").is_none());
    let errors = logs.at("ERROR", "add the CertBoundLayer to this route");
    assert_eq!(errors.len(), 1, "{:?}", logs.lines());
    assert_eq!(logs.at("ERROR", "").len(), 1, "{:?}", logs.lines());

    // Option<VerifiedToken> outside the layer is None, not an error.
    logs.clear();
    let response = send("/open").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(logs.at("ERROR", "").is_empty(), "{:?}", logs.lines());
}
