//! A forwarded certificate header from a peer that is not a trusted proxy is refused every time
//! but logged at most once per peer per interval, over real sockets from 127.0.0.x, with the log
//! captured by a real tracing subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use certbound::CertBound;
use certbound::StaticJwks;
use certbound::{ForwardedCertificates, ForwardedFormat};
use certbound_core::Algorithm;
use certbound_dev::{jwks_document, SigningKey};
use common::{Logs, AUDIENCE, ISSUER};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const WARNING: &str = "not a trusted proxy";

/// The layer behind nginx-style forwarding, trusting only 10.0.0.0/8 (so every 127.0.0.x peer is
/// untrusted), served over plain HTTP on 127.0.0.1.
async fn serve(interval: Option<Duration>) -> SocketAddr {
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let forwarded = ForwardedCertificates::new(
        ForwardedFormat::parse_spec("nginx:X-SSL-Client-Cert").unwrap(),
        vec!["10.0.0.0/8".parse().unwrap()],
    );
    let mut builder = CertBound::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap())
        .forwarded_certificates(forwarded);
    if let Some(interval) = interval {
        builder = builder.untrusted_forwarded_warning_interval(interval);
    }
    let auth = builder.build().await.unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// One request with a forged header from `from` (a 127.0.0.x address); the status code.
async fn forge(server: SocketAddr, from: Ipv4Addr) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer x.y.z\r\n\
              X-SSL-Client-Cert: -----BEGIN%20CERTIFICATE-----forged\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[tokio::test(flavor = "current_thread")]
async fn one_warning_per_peer_per_interval() {
    let (logs, _guard) = Logs::capture();
    let server = serve(None).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    for _ in 0..40 {
        assert_eq!(
            forge(server, attacker).await,
            400,
            "every forgery is refused"
        );
    }
    let lines = logs.at("WARN", WARNING);
    assert_eq!(lines.len(), 1, "{:#?}", logs.lines());
    assert!(lines[0].contains("peer=127.0.0.2"), "{}", lines[0]);
    assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);
    assert!(lines[0].contains("interval_secs=60"), "{}", lines[0]);
    assert!(
        !lines[0].contains("forged"),
        "never the header value: {}",
        lines[0]
    );

    // Another peer gets its own line.
    for _ in 0..5 {
        assert_eq!(forge(server, Ipv4Addr::new(127, 0, 0, 3)).await, 400);
    }
    let lines = logs.at("WARN", WARNING);
    assert_eq!(lines.len(), 2, "{:#?}", logs.lines());
    assert!(lines[1].contains("peer=127.0.0.3"), "{}", lines[1]);
}

#[tokio::test(flavor = "current_thread")]
async fn zero_interval_logs_every_forgery() {
    let (logs, _guard) = Logs::capture();
    let server = serve(Some(Duration::ZERO)).await;
    for _ in 0..5 {
        assert_eq!(forge(server, Ipv4Addr::new(127, 0, 0, 2)).await, 400);
    }
    assert_eq!(logs.at("WARN", WARNING).len(), 5, "{:#?}", logs.lines());
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_from_many_addresses_writes_a_bounded_number_of_lines() {
    let (logs, _guard) = Logs::capture();
    let server = serve(None).await;
    // 300 peers, 127.0.1.0 … 127.0.2.43, two forgeries each.
    for round in 0..2 {
        for i in 0..300u16 {
            let from = Ipv4Addr::new(127, 0, 1 + (i >> 8) as u8, i as u8);
            assert_eq!(forge(server, from).await, 400, "round {round}, {from}");
        }
    }
    // At most 256 peers are tracked: 256 lines, the other 44 peers' forgeries counted.
    assert_eq!(logs.at("WARN", WARNING).len(), 256);
}
