//! `axum::serve` over a `TlsListener`: every request carries `ConnectInfo<PeerCertificate>`,
//! computed once per connection, on HTTP/1.1 keep-alive and on concurrent HTTP/2 streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use certbound_core::Thumbprint;
use certbound_dev::KeyKind;
use certbound_tls::{ClientAuth, ListenerStats, PeerCertificate, TlsListener};
use common::http::{get1, get2, http1, http2};
use common::{connect, describe, guard, Pki};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const H2_STREAMS: usize = 8;

async fn whoami(ConnectInfo(peer): ConnectInfo<PeerCertificate>) -> String {
    describe(&peer)
}

/// Serves an app whose `/together` handlers all wait for each other: it only answers once
/// `H2_STREAMS` requests are in flight at the same time.
async fn serve(listener: TlsListener) -> (std::net::SocketAddr, ListenerStats) {
    let addr = listener.local_addr();
    let stats = listener.stats();
    let barrier = Arc::new(Barrier::new(H2_STREAMS));
    let app = Router::new().route("/whoami", get(whoami)).route(
        "/together",
        get(move |info: ConnectInfo<PeerCertificate>| async move {
            barrier.wait().await;
            whoami(info).await
        }),
    );
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerCertificate>(),
    );
    tokio::spawn(async move { server.await });
    (addr, stats)
}

#[tokio::test]
async fn http1_keep_alive_requests_share_one_peer_certificate() {
    let pki = Pki::new();
    let (addr, stats) = serve(pki.listener(ClientAuth::ca(pki.roots())).await).await;
    let client = pki.client("http1", KeyKind::EcP256);
    let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], &[b"http/1.1"]);
    let stream = connect(addr, config).await.unwrap();
    let expected = format!(
        "{} {}",
        stream.get_ref().0.local_addr().unwrap(),
        Thumbprint::of_der(&client.cert_der)
    );
    let mut sender = http1(stream).await;
    for _ in 0..5 {
        assert_eq!(
            guard("request", get1(&mut sender, "/whoami")).await,
            expected
        );
    }
    assert_eq!(stats.tcp_accepted(), 1);
    assert_eq!(stats.handshakes_completed(), 1);
    assert_eq!(stats.client_certificates(), 1);
}

#[tokio::test]
async fn concurrent_http2_streams_share_one_peer_certificate() {
    let pki = Pki::new();
    let (addr, stats) = serve(pki.listener(ClientAuth::self_signed()).await).await;
    let client = certbound_dev::pki::self_signed_client("h2", KeyKind::Rsa2048).unwrap();
    let config = pki.client_config_with(
        Some(&client),
        &[&rustls::version::TLS13],
        &[b"h2", b"http/1.1"],
    );
    let stream = connect(addr, config).await.unwrap();
    let expected = format!(
        "{} {}",
        stream.get_ref().0.local_addr().unwrap(),
        Thumbprint::of_der(&client.cert_der)
    );
    let sender = http2(stream).await;

    // All streams must be open at once for any of them to be answered.
    let mut requests = JoinSet::new();
    for _ in 0..H2_STREAMS {
        requests.spawn(get2(sender.clone(), "/together"));
    }
    let mut answered = 0;
    while let Some(body) = guard("h2 streams", requests.join_next()).await {
        assert_eq!(body.unwrap(), expected);
        answered += 1;
    }
    assert_eq!(answered, H2_STREAMS);
    assert_eq!(guard("request", get2(sender, "/whoami")).await, expected);
    assert_eq!(stats.tcp_accepted(), 1);
    assert_eq!(stats.handshakes_completed(), 1);
    assert_eq!(stats.client_certificates(), 1);
}

#[tokio::test]
async fn connections_without_a_certificate_are_served_without_one() {
    let pki = Pki::new();
    let (addr, stats) = serve(pki.listener(ClientAuth::ca(pki.roots())).await).await;
    let config = pki.client_config_with(None, &[&rustls::version::TLS13], &[b"h2"]);
    let stream = connect(addr, config).await.unwrap();
    let expected = format!("{} none", stream.get_ref().0.local_addr().unwrap());
    let sender = http2(stream).await;
    assert_eq!(guard("request", get2(sender, "/whoami")).await, expected);
    assert_eq!(stats.handshakes_completed(), 1);
    assert_eq!(stats.client_certificates(), 0);
}

#[tokio::test]
async fn each_connection_has_its_own_peer_certificate() {
    let pki = Pki::new();
    let (addr, stats) = serve(pki.listener(ClientAuth::ca(pki.roots())).await).await;
    for name in ["alice", "bob", "carol"] {
        let client = pki.client(name, KeyKind::EcP256);
        let config =
            pki.client_config_with(Some(&client), &[&rustls::version::TLS13], &[b"http/1.1"]);
        let mut sender = http1(connect(addr, config).await.unwrap()).await;
        let body = guard("request", get1(&mut sender, "/whoami")).await;
        assert!(body.ends_with(&Thumbprint::of_der(&client.cert_der).to_string()));
    }
    assert_eq!(stats.client_certificates(), 3);
}

#[tokio::test]
async fn axum_sees_the_local_address() {
    use axum::serve::Listener;
    let pki = Pki::new();
    let listener = pki.listener(ClientAuth::self_signed()).await;
    let local = Listener::local_addr(&listener).unwrap();
    assert_eq!(local.remote_addr(), listener.local_addr());
    assert!(local.certificate().is_none());
}
