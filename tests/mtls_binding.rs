//! End to end over real mutual TLS: the issue-2 matrix. A real issuer (HTTPS, discovery, JWKS),
//! the example API behind certbound, real clients presenting real certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use certbound::Rejection;
use certbound_core::Algorithm;
use certbound_dev::pki::self_signed_client;
use certbound_dev::{unix_now, DevCa, KeyKind, SigningKey};
use common::{answer, thumbprint, Api, Mode, AUDIENCE};
use serde_json::json;

#[tokio::test]
async fn bound_token_with_its_certificate_is_accepted_and_the_handler_sees_the_claims() {
    let api = Api::start(Mode::SelfSigned).await;
    let token = api.token_for(&api.pki.client_a);
    let a = api.hello(Some(&api.pki.client_a), Some(&token)).await;
    assert_eq!(a.status, 200, "{a:?}");
    let body = a.json();
    assert_eq!(body["sub"], "user-123");
    assert_eq!(body["client_id"], "client-a");
    assert_eq!(body["scope"], "read write");
    assert_eq!(
        body["thumbprint"],
        thumbprint(&api.pki.client_a).to_string()
    );
    assert!(body["jkt"].is_null(), "not bound to a DPoP key: {body}");
}

#[tokio::test]
async fn the_same_token_from_another_certificate_or_none_is_invalid_token() {
    let api = Api::start(Mode::SelfSigned).await;
    let token = api.token_for(&api.pki.client_a);
    api.hello(Some(&api.pki.client_b), Some(&token))
        .await
        .assert_invalid_token(Rejection::BindingMismatch);
    api.hello(None, Some(&token))
        .await
        .assert_invalid_token(Rejection::MissingClientCertificate);
}

#[tokio::test]
async fn no_token_is_a_bare_challenge_and_query_tokens_are_ignored() {
    let api = Api::start(Mode::SelfSigned).await;
    let a = api.hello(Some(&api.pki.client_a), None).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.challenge.as_deref(),
        Some(format!("Bearer realm=\"{AUDIENCE}\"").as_str())
    );

    let token = api.token_for(&api.pki.client_a);
    let client = api.client(Some(&api.pki.client_a));
    let resp = client
        .get(format!("{}/api/hello?access_token={token}", api.url))
        .send()
        .await
        .unwrap();
    let a = answer(resp).await;
    assert_eq!(a.status, 401);
    assert!(!a.challenge.unwrap().contains("error="));
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let api = Api::start(Mode::SelfSigned).await;
    let token = api.token_for(&api.pki.client_a);
    let client = api.client(Some(&api.pki.client_a));
    let url = format!("{}/api/hello", api.url);
    let two = client
        .get(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let a = answer(two).await;
    assert_eq!(a.status, 400);
    assert!(a.challenge.unwrap().contains("error=\"invalid_request\""));
    let empty = answer(
        client
            .get(&url)
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(empty.status, 400);
}

#[tokio::test]
async fn claims_and_header_failures() {
    let api = Api::start(Mode::SelfSigned).await;
    let a = &api.pki.client_a;
    let now = unix_now();
    let base = api.claims_for(a);
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let cases = [
        (with("exp", json!(now - 3600)), Rejection::Expired),
        (with("nbf", json!(now + 3600)), Rejection::NotYetValid),
        (
            with("iss", json!("https://evil.example/")),
            Rejection::WrongIssuer,
        ),
        (
            with("aud", json!("https://other-api.example")),
            Rejection::WrongAudience,
        ),
        (
            with("cnf", json!({"x5t#S256": "not-a-thumbprint"})),
            Rejection::MalformedBinding,
        ),
        (
            with(
                "cnf",
                json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            ),
            Rejection::DpopBoundTokenAsBearer,
        ),
        (
            with("cnf", json!({"jwk": {"kty": "EC"}})),
            Rejection::UnsupportedBinding,
        ),
    ];
    for (claims, reason) in cases {
        let token = api.signer.sign(&claims).unwrap();
        api.hello(Some(a), Some(&token))
            .await
            .assert_invalid_token(reason);
    }
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let api = Api::start(Mode::SelfSigned).await;
    let a = &api.pki.client_a;
    let claims = api.claims_for(a);
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };

    // alg none, with and without a signature segment.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none","typ":"at+jwt"})),
        b64(&claims)
    );
    api.hello(Some(a), Some(&none))
        .await
        .assert_invalid_token(Rejection::DisallowedAlgorithm);
    // A real alg with the signature stripped.
    let genuine = api.token_for(a);
    let stripped = format!("{}.", genuine.rsplit_once('.').unwrap().0);
    api.hello(Some(a), Some(&stripped))
        .await
        .assert_invalid_token(Rejection::BadSignature);
    let none_sig = format!("{}.{}.AAAA", b64(&json!({"alg":"none"})), b64(&claims));
    api.hello(Some(a), Some(&none_sig))
        .await
        .assert_invalid_token(Rejection::DisallowedAlgorithm);

    // Unknown kid: signed by a key the issuer never published.
    let stranger = SigningKey::generate("not-published", Algorithm::ES256).unwrap();
    api.hello(Some(a), Some(&stranger.sign(&claims).unwrap()))
        .await
        .assert_invalid_token(Rejection::UnknownKey);

    // A published kid, but the signature is from another key.
    let impostor = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    api.hello(Some(a), Some(&impostor.sign(&claims).unwrap()))
        .await
        .assert_invalid_token(Rejection::BadSignature);

    // Tampered claims under a genuine signature.
    let genuine = api.token_for(a);
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut richer = claims.clone();
    richer["scope"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&richer), parts[2]);
    api.hello(Some(a), Some(&tampered))
        .await
        .assert_invalid_token(Rejection::BadSignature);
}

/// HMAC over the token with `secret` as the key, header `{"alg":"HS256","kid":"k1"}`.
fn hs256_forgery(claims: &serde_json::Value, secret: &[u8]) -> String {
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let input = format!(
        "{}.{}",
        b64(json!({"alg":"HS256","kid":"k1"}).to_string()),
        b64(claims.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{input}.{sig}")
}

#[tokio::test]
async fn hs256_signed_with_the_issuers_public_key_is_refused() {
    // Key confusion (RFC 8725 §2.1): an RSA issuer; the attacker HMACs with the public key.
    let api = Api::start_signed(Mode::SelfSigned, Algorithm::RS256, |b| b).await;
    let claims = api.claims_for(&api.pki.client_a);
    let public = api.signer.public_jwk().to_string();
    let forged = hs256_forgery(&claims, public.as_bytes());
    // Not on the default allow-list.
    api.hello(Some(&api.pki.client_a), Some(&forged))
        .await
        .assert_invalid_token(Rejection::DisallowedAlgorithm);

    // Even with HS256 allowed, the kid names an RSA key, which never verifies an HMAC.
    let lax = Api::start_signed(Mode::SelfSigned, Algorithm::RS256, |b| {
        b.algorithms([Algorithm::RS256, Algorithm::HS256])
    })
    .await;
    let claims = lax.claims_for(&lax.pki.client_a);
    let forged = hs256_forgery(&claims, lax.signer.public_jwk().to_string().as_bytes());
    lax.hello(Some(&lax.pki.client_a), Some(&forged))
        .await
        .assert_invalid_token(Rejection::KeyAlgorithmMismatch);
    let genuine = lax.token_for(&lax.pki.client_a);
    assert_eq!(
        lax.hello(Some(&lax.pki.client_a), Some(&genuine))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn ca_mode_refuses_an_unknown_ca_in_the_handshake_and_accepts_its_own() {
    let api = Api::start(Mode::Ca).await;
    let other_ca = DevCa::new("someone else's CA").unwrap();
    let stranger = other_ca.client_cert("stranger", KeyKind::EcP256).unwrap();
    let token = api.token_for(&stranger);
    let err = api
        .client(Some(&stranger))
        .get(format!("{}/api/hello", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("the handshake must fail");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    let self_signed = self_signed_client("self", KeyKind::EcP256).unwrap();
    let token = api.token_for(&self_signed);
    assert!(api
        .client(Some(&self_signed))
        .get(format!("{}/api/hello", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .is_err());

    let token = api.token_for(&api.pki.client_a);
    assert_eq!(
        api.hello(Some(&api.pki.client_a), Some(&token))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn self_signed_mode_accepts_self_signed_certificates_and_binds_them() {
    let api = Api::start(Mode::SelfSigned).await;
    for kind in [KeyKind::EcP256, KeyKind::Rsa2048, KeyKind::Ed25519] {
        let me = self_signed_client("me", kind).unwrap();
        let token = api.token_for(&me);
        let a = api.hello(Some(&me), Some(&token)).await;
        assert_eq!(a.status, 200, "{kind:?}: {a:?}");
        assert_eq!(a.json()["thumbprint"], thumbprint(&me).to_string());
        // Someone else's self-signed certificate does not match.
        let other = self_signed_client("other", kind).unwrap();
        api.hello(Some(&other), Some(&token))
            .await
            .assert_invalid_token(Rejection::BindingMismatch);
    }
}

#[tokio::test]
async fn a_certificate_reissued_for_the_same_key_does_not_match() {
    let api = Api::start(Mode::Ca).await;
    let ca = DevCa::new("rotating CA").unwrap();
    let original = ca.client_cert("client", KeyKind::EcP256).unwrap();
    let reissued = ca.reissue(&original, "client").unwrap();
    assert_eq!(original.key_pem, reissued.key_pem);
    let api_ss = Api::start(Mode::SelfSigned).await;
    let token = api_ss.token_for(&original);
    assert_eq!(
        api_ss.hello(Some(&original), Some(&token)).await.status,
        200
    );
    api_ss
        .hello(Some(&reissued), Some(&token))
        .await
        .assert_invalid_token(Rejection::BindingMismatch);
    drop(api);
}

#[tokio::test]
async fn keep_alive_requests_share_one_thumbprint_computation() {
    let api = Api::start(Mode::SelfSigned).await;
    let token = api.token_for(&api.pki.client_a);
    let client = api.client(Some(&api.pki.client_a));
    for _ in 0..5 {
        let a = answer(
            client
                .get(format!("{}/api/hello", api.url))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(api.stats.handshakes_completed(), 1);
    assert_eq!(api.stats.client_certificates(), 1);
}

#[tokio::test]
async fn http2_streams_on_one_connection_are_each_checked() {
    let api = Api::start(Mode::SelfSigned).await;
    let token_a = api.token_for(&api.pki.client_a);
    let token_b = api.token_for(&api.pki.client_b);
    let client = api.client(Some(&api.pki.client_a));
    // Warm the connection so the concurrent requests multiplex over it.
    let first = client
        .get(format!("{}/health", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, url) = (client.clone(), format!("{}/api/hello", api.url));
        let token = if i % 2 == 0 {
            token_a.clone()
        } else {
            token_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(api.stats.handshakes_completed(), 1);
    assert_eq!(api.stats.client_certificates(), 1);
}

#[tokio::test]
async fn if_bound_policy_lets_unbound_tokens_through_but_still_checks_bound_ones() {
    let api = Api::start_with(Mode::SelfSigned, |b| {
        b.binding(certbound::BindingPolicy::IfBound)
    })
    .await;
    let mut unbound = api.claims_for(&api.pki.client_a);
    unbound.as_object_mut().unwrap().remove("cnf");
    let unbound = api.signer.sign(&unbound).unwrap();
    assert_eq!(api.hello(None, Some(&unbound)).await.status, 200);
    let bound = api.token_for(&api.pki.client_a);
    api.hello(Some(&api.pki.client_b), Some(&bound))
        .await
        .assert_invalid_token(Rejection::BindingMismatch);
    api.hello(None, Some(&bound))
        .await
        .assert_invalid_token(Rejection::MissingClientCertificate);
}

#[tokio::test]
async fn at_jwt_typing_when_required() {
    let api = Api::start_with(Mode::SelfSigned, |b| b.require_at_jwt()).await;
    let claims = api.claims_for(&api.pki.client_a);
    assert_eq!(
        api.hello(
            Some(&api.pki.client_a),
            Some(&api.signer.sign(&claims).unwrap())
        )
        .await
        .status,
        200
    );
    let jwt_typed = api
        .signer
        .sign_with_header(&json!({"alg":"ES256","kid":"k1","typ":"JWT"}), &claims)
        .unwrap();
    api.hello(Some(&api.pki.client_a), Some(&jwt_typed))
        .await
        .assert_invalid_token(Rejection::WrongTokenType);
}

#[tokio::test]
async fn unbound_token_is_refused_by_default() {
    let api = Api::start(Mode::SelfSigned).await;
    let mut claims = api.claims_for(&api.pki.client_a);
    claims.as_object_mut().unwrap().remove("cnf");
    let token = api.signer.sign(&claims).unwrap();
    api.hello(Some(&api.pki.client_a), Some(&token))
        .await
        .assert_invalid_token(Rejection::UnboundToken);
}
