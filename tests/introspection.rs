//! Opaque tokens (RFC 7662 introspection) end to end over real sockets: the example routes
//! behind the certbound layer over mutual TLS on loopback, a real dev issuer over HTTPS that
//! issues opaque tokens and answers introspection requests (counting them, checking each client
//! authentication method), and real reqwest clients presenting certificates (or DPoP proofs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certbound::{
    CertBound, CertBoundBuilder, Dpop, IntrospectionAuth, Introspector, IntrospectorBuilder,
    Rejection,
};
use certbound_core::{Algorithm, VerificationKey};
use certbound_dev::dpop::DpopKey;
use certbound_dev::issuer::{ClientAuthMethod, FailureMode, TestIssuer};
use certbound_dev::{unix_now, CertAndKey, SigningKey};
use common::{thumbprint, Answer, Api, Mode, AUDIENCE};
use serde_json::{json, Value};

const CLIENT_ID: &str = "resource-server";
const SECRET: &str = "s3cret: with + odd & chars";

/// An API that introspects opaque tokens at a dev issuer.
struct OpaqueApi {
    api: Api,
    issuer: TestIssuer,
    /// The layer's clock (Unix seconds), movable by tests.
    clock: Arc<AtomicU64>,
    /// A clone of the served layer (same caches and counters).
    layer: certbound::CertBoundLayer,
}

impl OpaqueApi {
    /// The issuer registers `CLIENT_ID` with `method`; the layer authenticates with `auth` and
    /// is then `configure`d.
    async fn start(
        method: ClientAuthMethod,
        auth: IntrospectionAuth,
        configure: impl FnOnce(CertBoundBuilder, &TestIssuer) -> CertBoundBuilder,
    ) -> Self {
        Self::start_with(method, |b| b.auth(auth), configure).await
    }

    async fn start_with(
        method: ClientAuthMethod,
        introspector: impl FnOnce(IntrospectorBuilder) -> IntrospectorBuilder,
        configure: impl FnOnce(CertBoundBuilder, &TestIssuer) -> CertBoundBuilder,
    ) -> Self {
        let signer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let issuer = TestIssuer::start(&[&signer]).await.unwrap();
        issuer.register_introspection_client(CLIENT_ID, method);
        let clock = Arc::new(AtomicU64::new(unix_now()));
        let now = Arc::clone(&clock);
        let builder = CertBound::builder()
            .issuer(issuer.issuer_url())
            .audience(AUDIENCE)
            .jwks_root_certificates_pem(issuer.ca_pem().to_owned())
            // The endpoint comes from the issuer's discovery document.
            .introspection(introspector(Introspector::builder()))
            .clock(move || now.load(Ordering::SeqCst));
        let auth = configure(builder, &issuer).build().await.unwrap();
        let layer = auth.clone();
        let mut api = Api::bind(Mode::SelfSigned).await.serve(auth);
        api.signer = signer;
        Self {
            api,
            issuer,
            clock,
            layer,
        }
    }

    async fn basic() -> Self {
        Self::basic_with(|b, _| b).await
    }

    /// [`basic`](Self::basic), then `configure`d.
    async fn basic_with(
        configure: impl FnOnce(CertBoundBuilder, &TestIssuer) -> CertBoundBuilder,
    ) -> Self {
        Self::start(
            ClientAuthMethod::SecretBasic(SECRET.into()),
            IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET),
            configure,
        )
        .await
    }

    /// An opaque token bound to `cert`, registered at the issuer.
    fn opaque_for(&self, cert: &CertAndKey) -> String {
        self.issuer.issue_opaque(self.claims(json!({
            "cnf": {"x5t#S256": thumbprint(cert).to_string()}
        })))
    }

    fn claims(&self, extra: Value) -> Value {
        let mut claims = json!({
            "iss": self.issuer.issuer_url(), "aud": AUDIENCE, "sub": "alice",
            "client_id": "client-a", "scope": "read", "token_type": "Bearer",
            "iat": unix_now(), "exp": unix_now() + 3600,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    async fn hello(&self, cert: Option<&CertAndKey>, token: &str) -> Answer {
        self.api.hello(cert, Some(token)).await
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }
}

impl OpaqueApi {
    /// A 503 without a challenge, and — asked of the same layer outside HTTP, which answers
    /// from the same cache — the reason code `code`.
    async fn assert_503(&self, answer: &Answer, token: &str, cert: &CertAndKey, code: &str) {
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.challenge.is_none(), "{answer:?}");
        let rejection = self
            .layer
            .verify(token, Some(thumbprint(cert)))
            .await
            .unwrap_err();
        assert_eq!(rejection.code(), code);
    }
}

/// The 503 answers carry Retry-After; reqwest is asked directly for the header.
async fn retry_after(api: &Api, cert: &CertAndKey, token: &str) -> (u16, Option<String>) {
    let res = api
        .client(Some(cert))
        .get(format!("{}/api/hello", api.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), retry)
}

#[tokio::test]
async fn a_bound_opaque_token_works_only_with_its_certificate_and_costs_one_call() {
    let t = OpaqueApi::basic().await;
    let (a, b) = (&t.api.pki.client_a, &t.api.pki.client_b);
    let token = t.opaque_for(a);

    let ok = t.hello(Some(a), &token).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["sub"], "alice");
    assert_eq!(ok.json()["client_id"], "client-a");
    assert_eq!(ok.json()["thumbprint"], thumbprint(a).to_string());

    // Another certificate, or none: 401 invalid_token — from the cached claims, checked again.
    t.hello(Some(b), &token)
        .await
        .assert_invalid_token(Rejection::BindingMismatch);
    t.hello(None, &token)
        .await
        .assert_invalid_token(Rejection::MissingClientCertificate);
    for _ in 0..5 {
        assert_eq!(t.hello(Some(a), &token).await.status, 200);
    }
    assert_eq!(
        t.issuer.introspection_calls(),
        1,
        "one call per token per cache lifetime"
    );

    // The positive entry lives at most max_ttl (5 min): then one more call.
    t.advance(299);
    assert_eq!(t.hello(Some(a), &token).await.status, 200);
    assert_eq!(t.issuer.introspection_calls(), 1);
    t.advance(2);
    assert_eq!(t.hello(Some(a), &token).await.status, 200);
    assert_eq!(t.issuer.introspection_calls(), 2);

    // Revocation is seen when the entry ends (the documented delay), not before.
    t.issuer.revoke(&token);
    assert_eq!(t.hello(Some(a), &token).await.status, 200);
    t.advance(301);
    t.hello(Some(a), &token)
        .await
        .assert_invalid_token(Rejection::InactiveToken);
    assert_eq!(t.issuer.introspection_calls(), 3);
    let stats = t.layer.introspection_stats().unwrap();
    assert_eq!(stats.calls, 3);
    assert_eq!(stats.entries, 1);
}

#[tokio::test]
async fn a_token_expiring_sooner_than_the_cache_is_refused_after_its_exp() {
    let t = OpaqueApi::basic().await;
    let a = &t.api.pki.client_a;
    let now = unix_now();
    let token = t.issuer.issue_opaque(t.claims(json!({
        "exp": now + 30, "cnf": {"x5t#S256": thumbprint(a).to_string()}
    })));
    assert_eq!(t.hello(Some(a), &token).await.status, 200);
    // exp + leeway (60 s) passed: the issuer still says active, the lifetime rule refuses it.
    t.advance(91);
    t.hello(Some(a), &token)
        .await
        .assert_invalid_token(Rejection::Expired);
}

#[tokio::test]
async fn one_hundred_concurrent_requests_with_a_new_token_make_one_call() {
    let t = OpaqueApi::basic().await;
    let a = t.api.pki.client_a.clone();
    let token = t.opaque_for(&a);
    // The endpoint takes 300 ms, so every request arrives while the first call is in flight.
    t.issuer
        .set_introspection_failure(FailureMode::Slow(Duration::from_millis(300)));
    let client = t.api.client(Some(&a));
    let url = format!("{}/api/hello", t.api.url);
    // One connection first (HTTP/2: the 100 requests share it), not 100 handshakes against the
    // listener's limit of 64 in progress per address.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
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
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(t.issuer.introspection_calls(), 1);
}

/// With the real clock: an endpoint that hangs until the introspector's timeout. The failure is
/// remembered from when the call ended (not from when it started, which would store an entry
/// already ended), and the requests that waited for the call take its answer — so 100
/// concurrent requests make one call, and none queues behind a second call.
#[tokio::test]
async fn a_hanging_endpoint_costs_one_call_for_a_hundred_concurrent_requests() {
    let t = OpaqueApi::start_with(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        |b| {
            b.auth(IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET))
                .timeout(Duration::from_secs(2))
        },
        |b, _| b.clock(unix_now),
    )
    .await;
    let a = t.api.pki.client_a.clone();
    let token = t.opaque_for(&a);
    t.issuer
        .set_introspection_failure(FailureMode::Slow(Duration::from_secs(30)));
    let client = t.api.client(Some(&a));
    let url = format!("{}/api/hello", t.api.url);
    // One connection first (HTTP/2: the 100 requests share it), so the listener's limit of 64
    // handshakes in progress per address is not what this test measures.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry = res.headers().get("retry-after").cloned();
            (res.status().as_u16(), retry)
        }));
    }
    // A guard against a queue of calls, not a speed measurement.
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    })
    .await
    .expect("requests queued behind one another's calls");
    for (status, retry) in &all {
        assert_eq!(*status, 503);
        assert_eq!(retry.as_ref().unwrap(), "5");
    }
    let calls = t.issuer.introspection_calls();
    eprintln!(
        "100 requests, {calls} call(s), all answered in {:?}",
        started.elapsed()
    );
    assert_eq!(calls, 1);
}

/// An active answer for a token whose `exp` has passed (still within the leeway, so accepted)
/// is kept like a negative answer, not "until exp" — which would have made every request call.
#[tokio::test]
async fn an_active_answer_already_past_its_exp_is_remembered_like_a_negative_one() {
    let t = OpaqueApi::basic().await;
    let a = &t.api.pki.client_a;
    let token = t.issuer.issue_opaque(t.claims(json!({
        "exp": unix_now() - 10, "cnf": {"x5t#S256": thumbprint(a).to_string()}
    })));
    for _ in 0..3 {
        assert_eq!(t.hello(Some(a), &token).await.status, 200);
    }
    assert_eq!(t.issuer.introspection_calls(), 1);
    t.advance(11);
    assert_eq!(t.hello(Some(a), &token).await.status, 200);
    assert_eq!(t.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn unknown_tokens_are_remembered_as_inactive_for_ten_seconds() {
    let t = OpaqueApi::basic().await;
    let a = &t.api.pki.client_a;
    for _ in 0..3 {
        t.hello(Some(a), "garbage-token-0123456789")
            .await
            .assert_invalid_token(Rejection::InactiveToken);
    }
    assert_eq!(t.issuer.introspection_calls(), 1);
    t.advance(9);
    t.hello(Some(a), "garbage-token-0123456789")
        .await
        .assert_invalid_token(Rejection::InactiveToken);
    assert_eq!(t.issuer.introspection_calls(), 1);
    t.advance(2);
    t.hello(Some(a), "garbage-token-0123456789")
        .await
        .assert_invalid_token(Rejection::InactiveToken);
    assert_eq!(t.issuer.introspection_calls(), 2);
    // A token for another audience is refused by the response rules, and remembered too.
    let other = t
        .issuer
        .issue_opaque(t.claims(json!({"aud": "https://other.example"})));
    t.hello(Some(a), &other)
        .await
        .assert_invalid_token(Rejection::WrongAudience);
    t.hello(Some(a), &other)
        .await
        .assert_invalid_token(Rejection::WrongAudience);
    assert_eq!(t.issuer.introspection_calls(), 3);
}

#[tokio::test]
async fn an_outage_is_503_with_retry_after_never_acceptance() {
    let t = OpaqueApi::start_with(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        |b| {
            b.auth(IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET))
                .timeout(Duration::from_millis(400))
        },
        |b, _| b,
    )
    .await;
    let a = &t.api.pki.client_a;
    // 5xx
    t.issuer.set_introspection_failure(FailureMode::Status(500));
    let token = t.opaque_for(a);
    assert_eq!(
        retry_after(&t.api, a, &token).await,
        (503, Some("5".to_owned()))
    );
    // Garbage: an invalid response, 503 too.
    t.issuer.set_introspection_failure(FailureMode::Garbage);
    let token = t.opaque_for(a);
    let answer = t.hello(Some(a), &token).await;
    t.assert_503(&answer, &token, a, "invalid_introspection_response")
        .await;
    // A hanging endpoint: the 400 ms timeout.
    t.issuer
        .set_introspection_failure(FailureMode::Slow(Duration::from_secs(5)));
    let token = t.opaque_for(a);
    let started = std::time::Instant::now();
    assert_eq!(
        retry_after(&t.api, a, &token).await,
        (503, Some("5".to_owned()))
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // Down: nothing listens.
    t.issuer.set_introspection_failure(FailureMode::Normal);
    t.issuer.stop().await;
    let token = t.opaque_for(a);
    assert_eq!(
        retry_after(&t.api, a, &token).await,
        (503, Some("5".to_owned()))
    );
    // Back: the same token is accepted (a failure is remembered for a second at most).
    t.issuer.restart().await.unwrap();
    t.advance(2);
    let answer = t.hello(Some(a), &token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn refused_credentials_are_503_and_the_endpoint_saw_the_wrong_secret() {
    let t = OpaqueApi::start(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        IntrospectionAuth::client_secret_basic(CLIENT_ID, "not the secret"),
        |b, _| b,
    )
    .await;
    let a = &t.api.pki.client_a;
    let token = t.opaque_for(a);
    assert_eq!(
        retry_after(&t.api, a, &token).await,
        (503, Some("30".to_owned()))
    );
    let answer = t.hello(Some(a), &token).await;
    t.assert_503(&answer, &token, a, "introspection_credentials_refused")
        .await;
    assert!(t.issuer.introspection_refusals() >= 1);
}

/// Each method, right → 200 and wrong → 503 (the endpoint refused it).
#[tokio::test]
async fn each_client_authentication_method_is_checked_by_the_endpoint() {
    let rs_cert =
        certbound_dev::pki::self_signed_client("resource-server", certbound_dev::KeyKind::EcP256)
            .unwrap();
    let other_cert =
        certbound_dev::pki::self_signed_client("someone-else", certbound_dev::KeyKind::EcP256)
            .unwrap();
    let rs_key = SigningKey::generate("rs-1", Algorithm::ES256).unwrap();
    let wrong_key = SigningKey::generate("rs-1", Algorithm::ES256).unwrap();
    let public = |key: &SigningKey| {
        VerificationKey::from_jwk(key.public_jwk().as_object().unwrap()).unwrap()
    };
    let jwt = |key: &SigningKey| {
        IntrospectionAuth::private_key_jwt(
            CLIENT_ID,
            key.pkcs8_pem().as_bytes(),
            Algorithm::ES256,
            Some("rs-1".into()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, ClientAuthMethod, IntrospectionAuth, u16)> = vec![
        (
            "basic",
            ClientAuthMethod::SecretBasic(SECRET.into()),
            IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET),
            200,
        ),
        (
            "basic, wrong secret",
            ClientAuthMethod::SecretBasic(SECRET.into()),
            IntrospectionAuth::client_secret_basic(CLIENT_ID, "wrong"),
            503,
        ),
        (
            "post",
            ClientAuthMethod::SecretPost(SECRET.into()),
            IntrospectionAuth::client_secret_post(CLIENT_ID, SECRET),
            200,
        ),
        (
            "post, wrong secret",
            ClientAuthMethod::SecretPost(SECRET.into()),
            IntrospectionAuth::client_secret_post(CLIENT_ID, "wrong"),
            503,
        ),
        (
            "post where basic is registered",
            ClientAuthMethod::SecretBasic(SECRET.into()),
            IntrospectionAuth::client_secret_post(CLIENT_ID, SECRET),
            503,
        ),
        (
            "private_key_jwt",
            ClientAuthMethod::PrivateKeyJwt(public(&rs_key)),
            jwt(&rs_key),
            200,
        ),
        (
            "private_key_jwt, wrong key",
            ClientAuthMethod::PrivateKeyJwt(public(&rs_key)),
            jwt(&wrong_key),
            503,
        ),
        (
            "tls_client_auth",
            ClientAuthMethod::TlsClientAuth(thumbprint(&rs_cert)),
            IntrospectionAuth::tls_client_auth(
                CLIENT_ID,
                rs_cert.cert_pem.clone(),
                rs_cert.key_pem.clone(),
            ),
            200,
        ),
        (
            "tls_client_auth, another certificate",
            ClientAuthMethod::TlsClientAuth(thumbprint(&rs_cert)),
            IntrospectionAuth::tls_client_auth(
                CLIENT_ID,
                other_cert.cert_pem.clone(),
                other_cert.key_pem.clone(),
            ),
            503,
        ),
    ];
    for (name, method, auth, want) in cases {
        let t = OpaqueApi::start(method, auth, |b, _| b).await;
        let a = &t.api.pki.client_a;
        let token = t.opaque_for(a);
        let answer = t.hello(Some(a), &token).await;
        assert_eq!(answer.status, want, "{name}: {answer:?}");
        assert_eq!(t.issuer.introspection_calls(), 1, "{name}");
        assert_eq!(
            t.issuer.introspection_refusals(),
            usize::from(want == 503),
            "{name}"
        );
    }
}

#[tokio::test]
async fn rfc9701_signed_responses_are_verified_and_forgeries_refused() {
    let t = OpaqueApi::start_with(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        // Only the layer's option: it asks for signed responses itself (the issuer signs only
        // when the request's Accept asks for it).
        |b| b.auth(IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET)),
        |b, _| b.require_signed_introspection(),
    )
    .await;
    let a = &t.api.pki.client_a;
    // Unsigned answers are refused when signed ones are required.
    let token = t.opaque_for(a);
    let answer = t.hello(Some(a), &token).await;
    t.assert_503(&answer, &token, a, "invalid_introspection_response")
        .await;
    // Signed by the issuer's key (from its JWKS): accepted.
    t.issuer
        .set_introspection_signer(Some(t.api.signer.clone()));
    let token = t.opaque_for(a);
    let answer = t.hello(Some(a), &token).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // Signed by a forger's key under the issuer's kid: refused, never accepted.
    let forger = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    t.issuer.set_introspection_signer(Some(forger));
    let token = t.opaque_for(a);
    let answer = t.hello(Some(a), &token).await;
    t.assert_503(&answer, &token, a, "invalid_introspection_response")
        .await;
}

/// The layer's introspector under another client id: the `aud` the layer then expects in a
/// signed response.
#[derive(Debug)]
struct AsClient(Introspector, &'static str);

impl certbound::IntrospectionSource for AsClient {
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        certbound::IntrospectionReply,
                        certbound_core::IntrospectionFailure,
                    >,
                > + Send
                + 'a,
        >,
    > {
        self.0.introspect(token)
    }

    fn client_id(&self) -> &str {
        self.1
    }
}

/// An RFC 9701 signed response is for the client that asked (`aud` = the introspection client
/// id, checked by default): the issuer's genuine signed response addressed to another client
/// is refused.
#[tokio::test]
async fn a_signed_response_for_another_client_is_refused() {
    for (as_client, want) in [(CLIENT_ID, 200), ("another-resource-server", 503)] {
        let t = OpaqueApi::basic_with(|b, issuer| {
            let introspector = Introspector::builder()
                .endpoint(issuer.introspection_endpoint())
                .extra_root_certificates_pem(issuer.ca_pem())
                .auth(IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET))
                .request_signed_response(true)
                .build_with_metadata(None)
                .unwrap();
            b.introspection_source(AsClient(introspector, as_client))
                .require_signed_introspection()
        })
        .await;
        t.issuer
            .set_introspection_signer(Some(t.api.signer.clone()));
        let a = &t.api.pki.client_a;
        let token = t.opaque_for(a);
        let answer = t.hello(Some(a), &token).await;
        assert_eq!(answer.status, want, "{as_client}: {answer:?}");
        if want == 503 {
            t.assert_503(&answer, &token, a, "invalid_introspection_response")
                .await;
        }
        assert_eq!(t.issuer.introspection_calls(), 1);
    }
}

/// At most `max_concurrent_calls` calls in flight: with 2 slots and a slow endpoint, five
/// requests with five new tokens make two calls (answered 200 when the endpoint answers); the
/// other three are answered 503 with `Retry-After: 1` without calling.
#[tokio::test]
async fn concurrent_calls_are_capped() {
    let t = OpaqueApi::basic_with(|b, _| {
        b.introspection_cache(certbound::IntrospectionCacheConfig {
            max_concurrent_calls: 2,
            ..Default::default()
        })
    })
    .await;
    let a = t.api.pki.client_a.clone();
    t.issuer
        .set_introspection_failure(FailureMode::Slow(Duration::from_secs(3)));
    let client = t.api.client(Some(&a));
    let url = format!("{}/api/hello", t.api.url);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (client, url, token) = (client.clone(), url.clone(), t.opaque_for(&a));
        tasks.push(tokio::spawn(async move {
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (res.status().as_u16(), retry)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers.sort();
    let one = Some("1".to_owned());
    assert_eq!(
        answers,
        [
            (200, None),
            (200, None),
            (503, one.clone()),
            (503, one.clone()),
            (503, one)
        ]
    );
    assert_eq!(t.issuer.introspection_calls(), 2);
    assert_eq!(t.layer.introspection_stats().unwrap().calls, 2);
}

/// A custom source that never answers.
#[derive(Debug)]
struct NeverAnswers;

impl certbound::IntrospectionSource for NeverAnswers {
    fn introspect<'a>(
        &'a self,
        _token: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        certbound::IntrospectionReply,
                        certbound_core::IntrospectionFailure,
                    >,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(std::future::pending())
    }

    fn client_id(&self) -> &str {
        "never"
    }
}

/// A custom source is bounded by `call_timeout`: unavailable, 503 + Retry-After.
#[tokio::test]
async fn a_custom_source_that_never_answers_is_unavailable_after_the_call_timeout() {
    let t = OpaqueApi::basic_with(|b, _| {
        b.introspection_source(NeverAnswers).introspection_cache(
            certbound::IntrospectionCacheConfig {
                call_timeout: Duration::from_millis(300),
                ..Default::default()
            },
        )
    })
    .await;
    let a = &t.api.pki.client_a;
    let token = t.opaque_for(a);
    // A guard against a hang, not a speed measurement.
    let answer = tokio::time::timeout(Duration::from_secs(30), retry_after(&t.api, a, &token))
        .await
        .expect("the call was never bounded");
    assert_eq!(answer, (503, Some("5".to_owned())));
    assert_eq!(t.layer.introspection_stats().unwrap().calls, 1);
}

#[tokio::test]
async fn a_dpop_bound_opaque_token_needs_a_proof_with_its_key() {
    let t = OpaqueApi::start(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET),
        |b, _| b.dpop(Dpop::default()),
    )
    .await;
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let thief = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = t.issuer.issue_opaque(t.claims(json!({
        "token_type": "DPoP", "cnf": {"jkt": key.jkt().to_string()}
    })));
    let http = t.api.client(None);
    let url = format!("{}/api/hello", t.api.url);
    let send = |proof: Option<String>, scheme: &'static str| {
        let mut req = http
            .get(&url)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        async move { common::answer(req.send().await.unwrap()).await }
    };
    let ok = send(
        Some(key.proof("GET", &url, Some(&token), None).unwrap()),
        "DPoP",
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let stolen = send(
        Some(thief.proof("GET", &url, Some(&token), None).unwrap()),
        "DPoP",
    )
    .await;
    assert_eq!(stolen.status, 401, "{stolen:?}");
    assert!(stolen
        .challenge
        .as_deref()
        .unwrap()
        .contains("token is bound to a different DPoP key"));
    let bearer = send(None, "Bearer").await;
    assert_eq!(bearer.status, 401, "{bearer:?}");
    assert!(bearer
        .challenge
        .as_deref()
        .unwrap()
        .contains("must be sent with the DPoP scheme"));
    assert_eq!(t.issuer.introspection_calls(), 1);
}

/// The example API as an operator runs it against a real issuer: `--issuer … --introspect` with
/// `--introspection-client-id` and a secret (client_secret_basic), and `--introspection-url`
/// with `--introspection-client-cert`/`--introspection-client-key` (tls_client_auth).
#[tokio::test(flavor = "multi_thread")]
async fn the_example_flags_introspect_with_a_secret_or_a_certificate() {
    let signer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&signer]).await.unwrap();
    let dir = std::env::temp_dir().join(format!("certbound-introspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pki = certbound_dev::DevPki::generate(&dir).unwrap();
    pki.save().unwrap();
    let rs = certbound_dev::pki::self_signed_client("api", certbound_dev::KeyKind::EcP256).unwrap();
    let path = |name: &str, contents: &str| {
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    };
    let ca = path("issuer-ca.pem", issuer.ca_pem());
    let (rs_cert, rs_key) = (path("rs.pem", &rs.cert_pem), path("rs.key", &rs.key_pem));
    issuer
        .register_introspection_client("api-basic", ClientAuthMethod::SecretBasic("s3cret".into()));
    issuer.register_introspection_client(
        "api-mtls",
        ClientAuthMethod::TlsClientAuth(thumbprint(&rs)),
    );
    let now = unix_now();
    let token = issuer.issue_opaque(json!({
        "iss": issuer.issuer_url(), "aud": AUDIENCE, "sub": "alice", "exp": now + 600,
        "cnf": {"x5t#S256": thumbprint(&pki.client_a).to_string()},
    }));
    let endpoint = issuer.introspection_endpoint().to_owned();
    let dev_dir = dir.display().to_string();
    let variants: [Vec<&str>; 2] = [
        vec![
            "--introspect",
            "--introspection-client-id",
            "api-basic",
            "--introspection-client-secret",
            "s3cret",
        ],
        vec![
            "--introspection-url",
            &endpoint,
            "--introspection-client-id",
            "api-mtls",
            "--introspection-client-cert",
            &rs_cert,
            "--introspection-client-key",
            &rs_key,
        ],
    ];
    for (i, flags) in variants.iter().enumerate() {
        let port = common::process::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--listen",
            &listen,
            "--dev-dir",
            &dev_dir,
            "--issuer",
            issuer.issuer_url(),
            "--audience",
            AUDIENCE,
            "--jwks-ca",
            &ca,
        ];
        args.extend(flags.iter().copied());
        let (_running, lines) = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                common::process::start_example(&args, |l| l.starts_with("listening on"))
            }
        })
        .await
        .unwrap();
        assert!(
            lines.last().is_some_and(|l| l.starts_with("listening on")),
            "{lines:?}"
        );
        let client = common::support::https_client(&pki.ca.cert_pem, Some(&pki.client_a)).unwrap();
        let url = format!("https://localhost:{port}/api/hello");
        for _ in 0..3 {
            let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{flags:?}");
        }
        let other = common::support::https_client(&pki.ca.cert_pem, Some(&pki.client_b)).unwrap();
        let res = other.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{flags:?}");
        // One call per run: the cache answers the rest.
        assert_eq!(issuer.introspection_calls(), i + 1, "{flags:?}");
        assert_eq!(issuer.introspection_refusals(), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_cache_is_bounded_in_entries_and_bytes() {
    let t = OpaqueApi::start(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET),
        |b, _| {
            b.introspection_cache(certbound::IntrospectionCacheConfig {
                max_entries: 4,
                max_bytes: 64 * 1024,
                ..Default::default()
            })
        },
    )
    .await;
    let a = &t.api.pki.client_a;
    for i in 0..40 {
        let token = t.opaque_for(a);
        assert_eq!(t.hello(Some(a), &token).await.status, 200, "token {i}");
        let stats = t.layer.introspection_stats().unwrap();
        assert!(stats.entries <= 4, "{stats:?}");
        assert!(stats.bytes <= 64 * 1024, "{stats:?}");
    }
    // Garbage fills the same bounded cache (negative entries).
    for i in 0..40 {
        let answer = t.hello(Some(a), &format!("garbage-{i}")).await;
        answer.assert_invalid_token(Rejection::InactiveToken);
        assert!(t.layer.introspection_stats().unwrap().entries <= 4);
    }
    assert_eq!(t.issuer.introspection_calls(), 80);
}

/// `.introspect_all()`: a valid, correctly signed JWT is introspected too, so its revocation at
/// the issuer is seen (after the cache entry ends) although its signature still verifies.
#[tokio::test]
async fn introspect_all_sees_a_revoked_jwt() {
    let t = OpaqueApi::start(
        ClientAuthMethod::SecretBasic(SECRET.into()),
        IntrospectionAuth::client_secret_basic(CLIENT_ID, SECRET),
        |b, _| b.introspect_all(),
    )
    .await;
    let a = &t.api.pki.client_a;
    let claims = t.claims(json!({"cnf": {"x5t#S256": thumbprint(a).to_string()}}));
    let jwt = t.api.signer.sign(&claims).unwrap();
    t.issuer.register_token(&jwt, claims);
    let ok = t.hello(Some(a), &jwt).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        t.issuer.introspection_calls(),
        1,
        "a JWT is introspected too"
    );
    t.hello(Some(&t.api.pki.client_b), &jwt)
        .await
        .assert_invalid_token(Rejection::BindingMismatch);
    t.issuer.revoke(&jwt);
    t.advance(301);
    t.hello(Some(a), &jwt)
        .await
        .assert_invalid_token(Rejection::InactiveToken);
    assert_eq!(t.issuer.introspection_calls(), 2);
}
