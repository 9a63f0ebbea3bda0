//! `certbound serve --upstream` over real sockets: the binary as a real process, a real echo
//! upstream (hyper), real HTTPS clients with client certificates and DPoP keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certbound_core::Algorithm;
use certbound_dev::dpop::DpopKey;
use common::serve::{strings, Echo, Served, Setup};

/// The sidecar in front of `upstream`, mutual TLS with the dev server certificate, plus `extra`.
fn sidecar(setup: &Setup, upstream: &str, extra: &[&str]) -> Served {
    let mut args = strings(&[
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &setup.path("server.pem"),
        "--tls-key",
        &setup.path("server.key"),
    ]);
    args.extend(setup.issuer_args());
    args.extend(strings(extra));
    Served::start(&args, &setup.dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_sees_only_accepted_requests_with_the_verified_identity() {
    let setup = Setup::new("sidecar");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(&setup, &echo.url(), &[]);
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));

    // Client A with its own token, forging every identity header it can think of, a
    // hop-by-hop header, and a body: 200, and the upstream saw the real identity.
    let forged_cert = format!(":{}:", STANDARD.encode(&setup.pki.client_b.cert_der));
    let res = a
        .post(served.url("/orders?id=7"))
        .bearer_auth(&token)
        .header("x-certbound-subject", "admin")
        .header("X-Certbound-Scope", "everything")
        .header("x-certbound-issuer", "https://evil.example/")
        .header("x-certbound-client-id", "root")
        .header("client-cert", &forged_cert)
        .header("client-cert-chain", &forged_cert)
        .header("x-forwarded-for", "203.0.113.66")
        // CGI/WSGI/Rack upstreams read `_` as `-`: these would become the same variables.
        .header("x_certbound_subject", "admin")
        .header("X_Certbound_Issuer", "https://evil.example/")
        .header("client_cert", &forged_cert)
        .header("client_cert_chain", &forged_cert)
        .header("x_forwarded_for", "203.0.113.66")
        .body("order body")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", served.log());
    assert_eq!(res.headers()["x-upstream"], "echo");
    assert!(
        res.headers().get("x-upstream-hop").is_none(),
        "hop-by-hop from the upstream"
    );
    assert_eq!(
        res.text().await.unwrap(),
        "order body",
        "the body streamed both ways"
    );
    assert_eq!(echo.count(), 1);
    let seen = echo.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/orders?id=7");
    let h = &seen.headers;
    assert_eq!(h["x-certbound-subject"], "user-123");
    assert_eq!(h["x-certbound-client-id"], "client-a-app");
    assert_eq!(h["x-certbound-scope"], "orders:read orders:write");
    assert_eq!(h["x-certbound-issuer"], common::serve::ISS);
    assert_eq!(h.get_all("x-certbound-subject").iter().count(), 1);
    let client_cert = format!(":{}:", STANDARD.encode(&setup.pki.client_a.cert_der));
    assert_eq!(
        h["client-cert"],
        client_cert.as_str(),
        "RFC 9440 Client-Cert of the real leaf"
    );
    assert!(h.get("client-cert-chain").is_none());
    for name in [
        "x_certbound_subject",
        "x_certbound_issuer",
        "client_cert",
        "client_cert_chain",
        "x_forwarded_for",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream");
    }
    // The client's own X-Forwarded-For is not trusted; this hop's address replaces it.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["x-forwarded-host"],
        format!("localhost:{}", served.addr.port()).as_str()
    );
    assert_eq!(
        h["forwarded"],
        format!(
            "for=127.0.0.1;proto=https;host=\"localhost:{}\"",
            served.addr.port()
        )
        .as_str()
    );
    assert_eq!(h["authorization"], format!("Bearer {token}").as_str());

    // Another client's certificate with A's token: 401, and the upstream saw nothing.
    for identity in [
        Some(&setup.pki.client_b),
        Some(&setup.pki.self_signed),
        None,
    ] {
        let res = setup
            .client(identity)
            .get(served.url("/orders"))
            .bearer_auth(&token)
            .header("x-certbound-subject", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    // No token at all: 401 with a bare challenge; nothing forwarded.
    let res = a.get(served.url("/orders")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(echo.count(), 1, "a rejected request reached the upstream");

    // HTTP/1.1 client: the hop-by-hop headers it names in Connection are not forwarded.
    let h1 = reqwest::Client::builder()
        .tls_backend_preconfigured({
            let mut c =
                common::serve::client_tls_config(&setup.pki.ca.cert_pem, Some(&setup.pki.client_a));
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            c
        })
        .build()
        .unwrap();
    let res = h1
        .get(served.url("/h1"))
        .bearer_auth(&token)
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);
    let seen = echo.last();
    for name in [
        "x-hop-secret",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_client_is_forwarded_and_a_wrong_proof_is_not() {
    let setup = Setup::new("sidecar-dpop");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(&setup, &echo.url(), &["--dpop", "--upstream-http2"]);
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = setup.dpop_token(&key);
    let client = setup.client(None); // no client certificate: the DPoP key is the binding
    let url = served.url("/orders");
    let proof = key.proof("GET", &url, Some(&token), None).unwrap();
    let res = client
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", served.log());
    let seen = echo.last();
    assert_eq!(seen.version, http::Version::HTTP_2, "h2c to the upstream");
    assert_eq!(seen.headers["x-certbound-subject"], "user-123");
    assert!(
        seen.headers.get("client-cert").is_none(),
        "no client certificate, no Client-Cert"
    );

    // The same proof again (replay), and a proof for another method: 401, not forwarded.
    let again = client
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    let post_proof = key.proof("POST", &url, Some(&token), None).unwrap();
    let wrong = client
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &post_proof)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_dpop_proof"));
    assert_eq!(echo.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_kept_alive_and_reused() {
    let setup = Setup::new("sidecar-keepalive");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(&setup, &echo.url(), &[]);
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));
    for i in 0..20 {
        // Bodies of every kind: empty (the upstream's answer has no body to read to its end),
        // small, and a HEAD (no body at all) in between.
        let res = match i % 3 {
            0 => a.get(served.url("/empty")),
            1 => a.post(served.url("/echo")).body(format!("body {i}")),
            _ => a.head(served.url("/head")),
        }
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "{}", served.log());
        let body = res.text().await.unwrap();
        assert_eq!(
            body,
            if i % 3 == 1 {
                format!("body {i}")
            } else {
                String::new()
            }
        );
        let seen = echo.last();
        assert_eq!(seen.headers["host"], echo.addr.to_string().as_str());
        assert_eq!(seen.version, http::Version::HTTP_11);
    }
    assert_eq!(echo.count(), 20);
    // One request at a time: the connection goes back to the pool after each response (a
    // second one at most, if a response's end raced the next request).
    let opened = echo.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&opened), "{opened} upstream connections");

    // Many clients at once, each sending one request after the other: every request is
    // answered, and the upstream never sees more connections than requests in flight.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let client = setup.client(Some(&setup.pki.client_a));
            let (url, token) = (served.url("/concurrent"), token.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .body(format!("{i}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                    assert_eq!(res.text().await.unwrap(), format!("{i}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    assert_eq!(echo.count(), 20 + 16 * 25);
    let opened = echo.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened <= 2 + 16, "{opened} upstream connections");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_502_and_upstream_slow_is_504() {
    let setup = Setup::new("sidecar-errors");
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = sidecar(&setup, &format!("http://{closed}"), &[]);
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));
    let res = a
        .get(down.url("/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    drop(down);

    let echo = Echo::start(Duration::from_secs(5)).await;
    let slow = sidecar(&setup, &echo.url(), &["--upstream-timeout", "500ms"]);
    let res = a
        .get(slow.url("/slow"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(echo.count(), 1, "the request did reach the slow upstream");
    // A fast path of the same upstream still works.
    let res = a
        .get(slow.url("/fast"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[test]
fn a_plain_upstream_off_loopback_is_refused_unless_allowed() {
    let setup = Setup::new("sidecar-refuse");
    let base = |upstream: &str| {
        let mut args = strings(&[
            "serve",
            "--check-config",
            "--upstream",
            upstream,
            "--tls-cert",
            &setup.path("server.pem"),
            "--tls-key",
            &setup.path("server.key"),
        ]);
        args.extend(setup.issuer_args());
        args
    };
    let run = common::certbound(base("http://192.0.2.10:8080"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--allow-plain-upstream"), "{run:?}");
    let mut allowed = base("http://192.0.2.10:8080");
    allowed.push("--allow-plain-upstream".into());
    let run = common::certbound(allowed);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("configuration OK"), "{run:?}");
    let run = common::certbound(base("http://127.0.0.1:8080"));
    assert_eq!(run.code, 0, "{run:?}");
    // A broken configuration is reported, not served.
    let mut broken = base("http://127.0.0.1:8080");
    broken.extend(strings(&["--client-ca", "/nonexistent/ca.pem"]));
    let run = common::certbound(broken);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--client-ca"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_and_json_logs() {
    let setup = Setup::new("sidecar-admin");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(
        &setup,
        &echo.url(),
        &["--admin-listen", "127.0.0.1:0", "--log-format", "json"],
    );
    let admin = served.admin.expect("admin address printed");
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));
    assert_eq!(
        a.get(served.url("/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(a.get(served.url("/x")).send().await.unwrap().status(), 401);

    let plain = common::serve::http_client();
    let get = |path: &str| plain.get(format!("http://{admin}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("certbound_requests_accepted_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certbound_requests_rejected_total{reason=\"missing_token\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certbound_serve_upstream_requests_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certbound_listener_handshakes_completed_total"),
        "{metrics}"
    );

    // Every log line is one JSON object.
    let log = served.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_paths_and_required_scopes() {
    let setup = Setup::new("sidecar-rules");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(
        &setup,
        &echo.url(),
        &[
            "--public-path",
            "/health",
            "--path-scope",
            "/admin=admin:write",
            "--path-scope",
            "/orders=orders:read",
        ],
    );
    let token = setup.token_for(&setup.pki.client_a); // scope "orders:read orders:write"
    let anonymous = setup.client(None);
    let a = setup.client(Some(&setup.pki.client_a));

    // A public path: no token needed, and no identity reaches the upstream — not even a forged one.
    let res = anonymous
        .get(served.url("/health/live"))
        .header("x-certbound-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(echo.last().headers.get("x-certbound-subject").is_none());
    let forwarded = echo.count();
    // Only on segment boundaries.
    let res = anonymous.get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // A scope the token has: forwarded with the identity.
    let res = a
        .get(served.url("/orders/7"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(echo.last().headers["x-certbound-subject"], "user-123");
    // A scope it lacks: 403 insufficient_scope naming it, nothing forwarded.
    let res = a
        .get(served.url("/admin/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope=\"admin:write\""),
        "{challenge}"
    );
    // Everything else still needs a token.
    let res = anonymous.get(served.url("/other")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(echo.count(), forwarded + 1);

    // Paths an upstream could read as another path are refused while rules are configured:
    // `..;` is `..` to Tomcat, Jetty and Spring (it would borrow /health's public rule), and
    // the others would dodge /admin's scope rule with a token that lacks the scope.
    let forwarded = echo.count();
    for sneaky in [
        "/health/..;/admin/users",
        "/health/.;/admin/users",
        "/health/%252e%252e/admin/users",
    ] {
        let res = anonymous.get(served.url(sneaky)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{sneaky}");
    }
    for sneaky in [
        "/%61dmin/users",
        "//admin/users",
        "/admin;x/users",
        "/admin%2Fusers",
    ] {
        let res = a
            .get(served.url(sneaky))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{sneaky}");
    }
    assert_eq!(echo.count(), forwarded, "an ambiguous path was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_cannot_leave_the_upstream_path_prefix() {
    let setup = Setup::new("sidecar-prefix");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(&setup, &format!("{}/backend", echo.url()), &[]);
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));
    let res = a
        .get(served.url("/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(echo.last().uri.path(), "/backend/orders");
    for sneaky in ["/..;/internal", "/%2e%2e;/internal", "/x/..%2Finternal"] {
        let res = a
            .get(served.url(sneaky))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{sneaky}");
    }
    assert_eq!(echo.count(), 1, "a path outside the prefix was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_from_a_toml_file_with_secrets_from_the_environment() {
    let setup = Setup::new("sidecar-toml");
    let echo = Echo::start(Duration::ZERO).await;
    let file = setup.dir.join("serve.toml");
    let write = |audience_key: &str| {
        std::fs::write(
            &file,
            format!(
                r#"
upstream = "{upstream}"
listen = "127.0.0.1:1"
tls-cert = "{cert}"
tls-key = "{key}"
issuer = "{iss}"
audience = {audience_key}
jwks-file = "{jwks}"

[[path]]
prefix = "/health"
public = true
"#,
                upstream = echo.url(),
                cert = setup.path("server.pem"),
                key = setup.path("server.key"),
                iss = common::serve::ISS,
                jwks = setup.jwks.display(),
            ),
        )
        .unwrap();
    };
    // The audience "secret" from the environment; the command line's --listen wins.
    write(r#"{ env = "CERTBOUND_TEST_AUDIENCE" }"#);
    let config = file.to_str().unwrap();
    let unset = common::certbound(["serve", "--check-config", "--config", config]);
    assert_eq!(unset.code, 2, "{unset:?}");
    assert!(
        unset.stderr.contains("CERTBOUND_TEST_AUDIENCE is not set"),
        "{unset:?}"
    );

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["serve", "--check-config", "--config", config])
        .env("CERTBOUND_TEST_AUDIENCE", common::serve::AUD)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    child.stdout.clear();

    std::env::set_var("CERTBOUND_TEST_AUDIENCE", common::serve::AUD);
    let served = Served::start(
        &strings(&["--config", config, "--listen", "127.0.0.1:0"]),
        &setup.dir,
    );
    let res = setup
        .client(None)
        .get(served.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", served.log());
    let token = setup.token_for(&setup.pki.client_a);
    let a = setup.client(Some(&setup.pki.client_a));
    let res = a
        .get(served.url("/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the file's audience is the token's");
    let res = setup
        .client(None)
        .get(served.url("/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// Request trailers are a second header section: an HTTP/2 upstream would see identity names
/// in them. The sidecar forwards the body and drops its trailers.
#[tokio::test(flavor = "multi_thread")]
async fn request_trailers_never_reach_the_upstream() {
    use http_body_util::BodyExt as _;
    use hyper::body::Frame;

    let setup = Setup::new("sidecar-trailers");
    let echo = Echo::start(Duration::ZERO).await;
    let served = sidecar(&setup, &echo.url(), &["--upstream-http2"]);
    let token = setup.token_for(&setup.pki.client_a);

    // A real HTTP/2 client over mutual TLS that sends a body with trailers.
    let config = std::sync::Arc::new(common::serve::client_tls_config(
        &setup.pki.ca.cert_pem,
        Some(&setup.pki.client_a),
    ));
    let tcp = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-certbound-subject", "admin".parse().unwrap());
    trailers.insert("client-cert", ":AAAA:".parse().unwrap());
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let body = Frames(
        vec![
            Frame::data(bytes::Bytes::from_static(b"order body")),
            Frame::trailers(trailers),
        ]
        .into(),
    );
    let request = http::Request::post(format!("https://localhost:{}/orders", served.addr.port()))
        .header("authorization", format!("Bearer {token}"))
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{}", served.log());
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&echoed[..], b"order body", "the body itself is forwarded");
    let seen = echo.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.headers["x-certbound-subject"], "user-123");
    assert!(
        seen.trailers.as_ref().is_none_or(|t| t.is_empty()),
        "request trailers reached the upstream: {:?}",
        seen.trailers
    );
}

/// A request body of ready frames.
struct Frames(std::collections::VecDeque<hyper::body::Frame<bytes::Bytes>>);

impl hyper::body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// Behind a trusted proxy that sends `X-Forwarded-For` / `Forwarded` as several lines (HAProxy
/// adds its own line): every line is kept, in order, and this hop appended.
#[tokio::test(flavor = "multi_thread")]
async fn every_forwarded_line_of_a_trusted_proxy_reaches_the_upstream() {
    let setup = Setup::new("sidecar-xff");
    let echo = Echo::start(Duration::ZERO).await;
    let mut args = strings(&[
        "--upstream",
        &echo.url(),
        "--listen",
        "127.0.0.1:0",
        "--plain-http",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--client-cert-header",
        "base64-der:X-Client-Cert",
    ]);
    args.extend(setup.issuer_args());
    let served = Served::start(&args, &setup.dir);
    let token = setup.token_for(&setup.pki.client_a);
    let res = common::serve::http_client()
        .get(format!("http://{}/orders", served.addr))
        .bearer_auth(&token)
        .header(
            "x-client-cert",
            STANDARD.encode(&setup.pki.client_a.cert_der),
        )
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=198.51.100.1")
        .header("forwarded", "for=203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", served.log());
    let seen = echo.last();
    assert_eq!(seen.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(
        seen.headers["x-forwarded-for"],
        "198.51.100.1, 203.0.113.9, 127.0.0.1"
    );
    let forwarded = seen.headers["forwarded"].to_str().unwrap();
    assert!(
        forwarded.starts_with("for=198.51.100.1, for=203.0.113.9, for=127.0.0.1;proto=http"),
        "{forwarded}"
    );
}
