//! The whole certbound layer, in-process: a ready tower service (`CertBoundLayer` over a trivial
//! `service_fn`) called with a prepared `http::Request` that carries `Authorization: Bearer …`
//! and the connection's `PeerCertificate` extension, as `TlsListener` would attach it.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p certbound --bench layer
//! ```
//!
//! * `layer/baseline_inner` — the bare inner service with the same request (what the layer adds
//!   to is measured against this).
//! * `layer/hit` — the verified-token cache holds the token (the steady state of a client that
//!   reuses its token): bearer extraction, cache lookup, key-still-current check, `exp`/`nbf`
//!   re-check, constant-time binding check, `VerifiedToken` extension. Target: hit − baseline ≤ 2 µs.
//! * `layer/opaque_hit` — an opaque token (RFC 7662) whose introspected claims are in the
//!   introspection cache (warm): SHA-256 of the token, cache lookup, `exp` re-check, binding
//!   check, `VerifiedToken` extension. Compare with `layer/hit` (issue 13: ≥ 0.95 × its speed).
//! * `layer/miss/<ALG>` — `.no_token_cache()`: every request verifies the signature and claims.
//! * `app/*` — an axum `Router` shaped like the example API's (`/health` open; `/api/hello`
//!   behind the layer), same prepared request: `app/health` (routing only), `app/hello_ok`
//!   (+ layer hit + `VerifiedToken` extractor, handler returns "ok"), `app/hello_json` (+ the
//!   example's JSON handler), `app/open_json` (the same JSON handler on an open twin route: no
//!   layer, the verified token handed in by an `Extension` — the load benchmark's baseline,
//!   in-process). `app/hello_json − app/open_json` is what the layer costs in an axum app.
//!
//! Requests are built outside the timed section (`iter_batched`), so only `poll_ready` + `call` +
//! polling the response future to completion is timed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::routing::get;
use axum::{Extension, Json, Router};
use certbound::tls::PeerCertificate;
use certbound::{CertBound, CertBoundLayer, ClientCertificate, StaticJwks, VerifiedToken};
use certbound_core::Algorithm;
use certbound_dev::{bound_claims, jwks_document, DevCa, KeyKind, SigningKey};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{header, HeaderValue, Request, Response};
use serde_json::{json, Value};
use tower::{service_fn, Layer, Service};

const ISS: &str = "https://issuer.example/";
const AUD: &str = "https://api.example";

/// Polls a future that completes without waiting (everything here does).
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the service did not complete synchronously"),
    }
}

/// Polls `poll_ready` then calls; the response future is polled to completion.
fn call<S>(service: &mut S, req: Request<()>) -> Response<String>
where
    S: Service<Request<()>, Response = Response<String>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("service not ready"),
    }
    complete(service.call(req)).unwrap()
}

async fn inner(req: Request<()>) -> Result<Response<String>, Infallible> {
    // Touch the extension the layer adds, as a handler would.
    let who = req
        .extensions()
        .get::<VerifiedToken>()
        .map_or(0, |t| t.sub().map_or(0, str::len));
    black_box(who);
    Ok(Response::new(String::new()))
}

struct Fixture {
    token: HeaderValue,
    peer: PeerCertificate,
    raw: String,
    thumbprint: certbound::Thumbprint,
}

impl Fixture {
    fn request(&self) -> Request<()> {
        Request::builder()
            .uri("/api/hello")
            .header(header::AUTHORIZATION, self.token.clone())
            .extension(self.peer.clone())
            .body(())
            .unwrap()
    }
}

fn fixture(alg: Algorithm) -> (Fixture, String) {
    let signer = SigningKey::generate("k1", alg).unwrap();
    let ca = DevCa::new("bench CA").unwrap();
    let client = ca.client_cert("client-a", KeyKind::EcP256).unwrap();
    let cert = ClientCertificate::from_der(client.cert_der.to_vec());
    let token = signer
        .sign(&bound_claims(ISS, AUD, cert.thumbprint()))
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let thumbprint = *cert.thumbprint();
    let fixture = Fixture {
        token: HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        peer: PeerCertificate::new(addr, Some(cert)),
        raw: token,
        thumbprint,
    };
    (fixture, jwks_document(&[&signer]).to_string())
}

fn layer(runtime: &tokio::runtime::Runtime, jwks: &str, cached: bool) -> CertBoundLayer {
    runtime.block_on(async {
        let mut builder = CertBound::builder()
            .issuer(ISS)
            .audience(AUD)
            .key_source(StaticJwks::from_jwks(jwks).unwrap());
        if !cached {
            builder = builder.no_token_cache();
        }
        builder.build().await.unwrap()
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer");

    let (fx, jwks) = fixture(Algorithm::ES256);

    let mut bare = service_fn(inner);
    assert_eq!(call(&mut bare, fx.request()).status(), 200);
    group.bench_function("baseline_inner", |b| {
        b.iter_batched(
            || fx.request(),
            |req| call(&mut bare, req),
            BatchSize::SmallInput,
        )
    });

    let hit_layer = layer(&runtime, &jwks, true);
    let mut hit = hit_layer.layer(service_fn(inner));
    // The first call verifies and fills the cache; every timed call is a hit.
    assert_eq!(call(&mut hit, fx.request()).status(), 200);
    assert_eq!(hit_layer.token_cache_stats().unwrap().entries, 1);
    group.bench_function("hit", |b| {
        b.iter_batched(
            || fx.request(),
            |req| call(&mut hit, req),
            BatchSize::SmallInput,
        )
    });

    // An opaque token bound to the same certificate, introspected once (warm cache).
    let opaque = "2YotnFZFEjr1zCsicMWpAA-opaque-bench-token-0123";
    let body = json!({"active": true, "iss": ISS, "aud": AUD, "sub": "user-123",
                      "client_id": "client-a", "exp": 4_000_000_000u64,
                      "cnf": {"x5t#S256": fx.thumbprint.to_string()}})
    .to_string();
    let opaque_layer = runtime.block_on(async {
        CertBound::builder()
            .issuer(ISS)
            .audience(AUD)
            .key_source(StaticJwks::from_jwks(&jwks).unwrap())
            .introspection_source(Answer(body))
            .build()
            .await
            .unwrap()
    });
    runtime
        .block_on(opaque_layer.verify(opaque, Some(fx.thumbprint)))
        .unwrap();
    let mut opaque_hit = opaque_layer.layer(service_fn(inner));
    let opaque_request = || {
        let mut req = fx.request();
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {opaque}")).unwrap(),
        );
        req
    };
    assert_eq!(call(&mut opaque_hit, opaque_request()).status(), 200);
    assert_eq!(opaque_layer.introspection_stats().unwrap().calls, 1);
    group.bench_function("opaque_hit", |b| {
        b.iter_batched(
            opaque_request,
            |req| call(&mut opaque_hit, req),
            BatchSize::SmallInput,
        )
    });
    assert_eq!(opaque_layer.introspection_stats().unwrap().calls, 1);

    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let (fx, jwks) = fixture(alg);
        let miss_layer = layer(&runtime, &jwks, false);
        let mut miss = miss_layer.layer(service_fn(inner));
        assert_eq!(call(&mut miss, fx.request()).status(), 200);
        assert!(miss_layer.token_cache_stats().is_none());
        group.bench_function(format!("miss/{alg:?}"), |b| {
            b.iter_batched(
                || fx.request(),
                |req| call(&mut miss, req),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // The example API's shape, in-process.
    let app_layer = layer(&runtime, &jwks, true);
    let open_token = runtime
        .block_on(app_layer.verify(&fx.raw, Some(fx.thumbprint)))
        .unwrap();
    let mut app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(
            Router::new()
                .route("/api/hello", get(hello_json))
                .route("/api/ok", get(hello_ok))
                .layer(app_layer),
        )
        .merge(
            Router::new()
                .route("/open/hello", get(hello_json))
                .route_layer(Extension(open_token)),
        );
    let request = |path: &'static str| {
        let fx = &fx;
        move || {
            let mut req = fx.request().map(|()| axum::body::Body::empty());
            *req.uri_mut() = http::Uri::from_static(path);
            req
        }
    };
    for path in ["/health", "/api/ok", "/api/hello", "/open/hello"] {
        let status = call_app(&mut app, request(path)()).status();
        assert_eq!(status, 200, "{path}");
    }
    let mut group = c.benchmark_group("app");
    for (name, path) in [
        ("health", "/health"),
        ("hello_ok", "/api/ok"),
        ("hello_json", "/api/hello"),
        ("open_json", "/open/hello"),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                request(path),
                |req| call_app(&mut app, req),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The example API's handler: who the token is for and what it is bound to, as JSON.
async fn hello_json(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "sub": token.sub(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "thumbprint": token.thumbprint().map(ToString::to_string),
    }))
}

async fn hello_ok(_token: VerifiedToken) -> &'static str {
    "ok"
}

/// An introspection endpoint that always gives the same answer (only the first request asks).
#[derive(Debug)]
struct Answer(String);

impl certbound::IntrospectionSource for Answer {
    fn introspect<'a>(
        &'a self,
        _token: &'a str,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<certbound::IntrospectionReply, certbound_core::IntrospectionFailure>,
    > {
        let reply = certbound::IntrospectionReply {
            content_type: Some("application/json".into()),
            body: self.0.clone().into_bytes(),
        };
        Box::pin(async move { Ok(reply) })
    }

    fn client_id(&self) -> &str {
        "bench"
    }
}

fn call_app(app: &mut Router, req: Request<axum::body::Body>) -> Response<axum::body::Body> {
    let mut cx = Context::from_waker(Waker::noop());
    match Service::<Request<axum::body::Body>>::poll_ready(app, &mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("router not ready"),
    }
    complete(app.call(req)).unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
