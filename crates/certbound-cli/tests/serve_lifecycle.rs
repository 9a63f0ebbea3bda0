//! `certbound serve` operations over real sockets: server-certificate hot reload (SIGHUP and
//! file polling) without dropping open connections, and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certbound_dev::{CertAndKey, DevCa};
use common::serve::{client_tls_config, strings, Echo, Served, Setup};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use tokio::net::TcpStream;

/// Writes the certificate and key the server reads, each by rename (never half a file).
fn install(dir: &Path, server: &CertAndKey) {
    for (name, contents) in [
        ("live.key", &server.key_pem),
        ("live.pem", &server.cert_pem),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A TLS handshake with the server: the leaf certificate it presented, and the connection
/// (HTTP/1.1 over it) for later requests.
async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (Vec<u8>, http1::SendRequest<Empty<bytes::Bytes>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, connection) = http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    (leaf, sender)
}

async fn get(sender: &mut http1::SendRequest<Empty<bytes::Bytes>>, path: &str, token: &str) -> u16 {
    let req = http::Request::get(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

/// Handshakes until the server presents `expected` (at most 20 s).
async fn wait_for_certificate(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    expected: &[u8],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (leaf, _) = connect(addr, Arc::clone(config)).await;
        if leaf == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never presented the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn with_tls_config(config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_certificate_reaches_new_handshakes_and_open_connections_keep_working() {
    let setup = Setup::new("reload");
    let echo = Echo::start(Duration::ZERO).await;
    install(&setup.dir, &setup.pki.server);
    // A renewed certificate from another CA; the client trusts both.
    let renewed_ca = DevCa::new("renewed CA").unwrap();
    let renewed = renewed_ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    let trust = format!("{}{}", setup.pki.ca.cert_pem, renewed_ca.cert().cert_pem);
    let config = with_tls_config(client_tls_config(&trust, Some(&setup.pki.client_a)));
    let token = setup.token_for(&setup.pki.client_a);

    for (how, interval) in [("SIGHUP", "0"), ("polling", "200ms")] {
        install(&setup.dir, &setup.pki.server);
        let mut args = strings(&[
            "--upstream",
            &echo.url(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &setup.path("live.pem"),
            "--tls-key",
            &setup.path("live.key"),
            "--reload-interval",
            interval,
        ]);
        args.extend(setup.issuer_args());
        let served = Served::start(&args, &setup.dir);
        let (leaf, mut open) = connect(served.addr, Arc::clone(&config)).await;
        assert_eq!(leaf, setup.pki.server.cert_der.to_vec(), "{how}");
        assert_eq!(get(&mut open, "/before", &token).await, 200, "{how}");

        // mtime granularity: make sure the new files look different from the old ones.
        tokio::time::sleep(Duration::from_millis(20)).await;
        install(&setup.dir, &renewed);
        if how == "SIGHUP" {
            served.signal("HUP");
        }
        wait_for_certificate(served.addr, &config, &renewed.cert_der).await;
        // The connection opened before the reload is still served.
        assert_eq!(
            get(&mut open, "/after", &token).await,
            200,
            "{how}: {}",
            served.log()
        );
        assert!(served.log().contains("TLS configuration reloaded"), "{how}");

        // A broken file is logged and the current certificate kept.
        std::fs::write(setup.dir.join("live.pem"), "not a certificate").unwrap();
        if how == "SIGHUP" {
            served.signal("HUP");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !served.log().contains("reload failed") {
            assert!(Instant::now() < deadline, "{how}: {}", served.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (leaf, mut fresh) = connect(served.addr, Arc::clone(&config)).await;
        assert_eq!(leaf, renewed.cert_der.to_vec(), "{how}");
        assert_eq!(get(&mut fresh, "/still", &token).await, 200, "{how}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish_then_exits() {
    let setup = Setup::new("drain");
    let echo = Echo::start(Duration::from_millis(1500)).await;
    let mut args = strings(&[
        "--upstream",
        &echo.url(),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &setup.path("server.pem"),
        "--tls-key",
        &setup.path("server.key"),
        "--admin-listen",
        "127.0.0.1:0",
        "--drain-timeout",
        "20s",
    ]);
    args.extend(setup.issuer_args());
    let mut served = Served::start(&args, &setup.dir);
    let admin = served.admin.unwrap();
    let token = setup.token_for(&setup.pki.client_a);
    let client = setup.client(Some(&setup.pki.client_a));
    let in_flight = tokio::spawn({
        let (client, url, token) = (client.clone(), served.url("/slow"), token.clone());
        async move {
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    });
    // Wait until the upstream has the request, then ask the server to stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo.count() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.signal("TERM");
    // Draining: not ready any more (the admin listener still answers).
    let plain = common::serve::http_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = plain
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .unwrap();
        if res.status() == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "still ready while draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = in_flight.await.unwrap();
    assert_eq!(
        status,
        200,
        "the request in flight completed: {}",
        served.log()
    );
    assert_eq!(served.wait_exit(), Some(0), "{}", served.log());
    assert!(
        TcpStream::connect(served.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_deadline_closes_what_is_still_open() {
    let setup = Setup::new("drain-deadline");
    let echo = Echo::start(Duration::from_secs(60)).await;
    let mut args = strings(&[
        "--upstream",
        &echo.url(),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &setup.path("server.pem"),
        "--tls-key",
        &setup.path("server.key"),
        "--drain-timeout",
        "300ms",
    ]);
    args.extend(setup.issuer_args());
    let mut served = Served::start(&args, &setup.dir);
    let token = setup.token_for(&setup.pki.client_a);
    let client = setup.client(Some(&setup.pki.client_a));
    let stuck = tokio::spawn({
        let url = served.url("/slow");
        async move { client.get(url).bearer_auth(token).send().await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo.count() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.signal("TERM");
    // The upstream would answer in a minute; the server gives up after the drain deadline,
    // closes the connection and exits cleanly.
    assert_eq!(served.wait_exit(), Some(0), "{}", served.log());
    assert!(
        stuck.await.unwrap().is_err(),
        "the request was cut off, not answered"
    );
    assert!(served.log().contains("drain timeout"), "{}", served.log());
}

/// `ExecReload=kill -HUP` on a `--plain-http` server (no certificate to reload): the process
/// keeps serving instead of dying of SIGHUP's default action.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_in_plain_http_mode_does_not_stop_the_server() {
    let setup = Setup::new("hup-plain");
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
    let mut served = Served::start(&args, &setup.dir);
    served.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !served.log().contains("SIGHUP: nothing reloaded") {
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "SIGHUP stopped the server: {}",
            served.log()
        );
        assert!(Instant::now() < deadline, "{}", served.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving: a request without a token gets the layer's 401.
    let res = common::serve::http_client()
        .get(format!("http://{}/x", served.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(served.child.try_wait().unwrap().is_none());
    served.signal("TERM");
    assert_eq!(served.wait_exit(), Some(0), "{}", served.log());
}
