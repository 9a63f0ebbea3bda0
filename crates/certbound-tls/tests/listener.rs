//! The listener: concurrent handshakes, timeouts, the pending limit, shutdown on drop.
//! No speed assertions: every time bound here is a hang guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use certbound_core::Thumbprint;
use certbound_dev::KeyKind;
use certbound_tls::ClientAuth;
use common::{closed_by_server, connect, guard, wait_for, Pki};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_stalled_client_does_not_block_others() {
    let pki = Pki::new();
    // The default timeout (10 s) is far beyond the hang guard: the stalled client is still
    // pending when the real one completes.
    let mut listener = pki.listener(ClientAuth::self_signed()).await;
    let addr = listener.local_addr();
    let stats = listener.stats();

    let _stalled = TcpStream::connect(addr).await.unwrap(); // connects, then says nothing
    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });
    wait_for(&stats, "stalled client accepted", |s| s.tcp_accepted() == 1).await;

    let client = pki.client("real", KeyKind::EcP256);
    let stream = guard(
        "real client",
        connect(addr, pki.client_config(Some(&client))),
    )
    .await
    .unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    let (_server, peer) = accepted.unwrap();
    assert_eq!(
        peer.thumbprint(),
        Some(&Thumbprint::of_der(&client.cert_der))
    );
    assert_eq!(peer.remote_addr(), stream.get_ref().0.local_addr().unwrap());
    assert_eq!(stats.tcp_accepted(), 2);
    assert_eq!(stats.handshakes_completed(), 1);
    assert_eq!(stats.handshakes_timed_out(), 0);
}

#[tokio::test]
async fn a_stalled_handshake_times_out_and_is_closed() {
    let pki = Pki::new();
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .handshake_timeout(Duration::from_millis(100));
    let addr = listener.local_addr();
    let stats = listener.stats();
    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });

    let stalled = TcpStream::connect(addr).await.unwrap();
    guard(
        "server closes the stalled connection",
        closed_by_server(stalled),
    )
    .await;
    wait_for(&stats, "timeout counted", |s| s.handshakes_timed_out() == 1).await;
    assert_eq!(stats.handshakes_failed(), 0);
    assert_eq!(stats.handshakes_completed(), 0);

    // The listener is still serving.
    connect(addr, pki.client_config(None)).await.unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    assert!(accepted.unwrap().1.certificate().is_none());
}

#[tokio::test]
async fn at_the_pending_limit_new_clients_wait_for_a_free_slot() {
    let pki = Pki::new();
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .handshake_timeout(Duration::from_millis(200))
        .max_pending_handshakes(1);
    let addr = listener.local_addr();
    let stats = listener.stats();
    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });

    let _stalled = TcpStream::connect(addr).await.unwrap();
    wait_for(&stats, "stalled client accepted", |s| s.tcp_accepted() == 1).await;

    // The only slot is taken: this client's handshake can only start once the stalled one has
    // timed out, so by the time it completes the timeout has been counted.
    let client = pki.client("patient", KeyKind::EcP256);
    guard(
        "patient client",
        connect(addr, pki.client_config(Some(&client))),
    )
    .await
    .unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    assert_eq!(
        accepted.unwrap().1.thumbprint(),
        Some(&Thumbprint::of_der(&client.cert_der))
    );
    assert_eq!(stats.handshakes_timed_out(), 1);
    assert_eq!(stats.handshakes_completed(), 1);
}

#[tokio::test]
async fn many_handshakes_complete_concurrently() {
    const CLIENTS: usize = 16;
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::ca(pki.roots())).await;
    let addr = listener.local_addr();
    let stats = listener.stats();

    let mut clients = tokio::task::JoinSet::new();
    let mut expected = Vec::new();
    for i in 0..CLIENTS {
        let client = pki.client(&format!("client-{i}"), KeyKind::EcP256);
        expected.push(Thumbprint::of_der(&client.cert_der));
        let config = pki.client_config(Some(&client));
        clients.spawn(async move { connect(addr, config).await.map(drop) });
    }
    let mut seen = Vec::new();
    for _ in 0..CLIENTS {
        let (_stream, peer) = guard("accept", listener.accept()).await.unwrap();
        seen.push(*peer.thumbprint().unwrap());
    }
    while let Some(joined) = guard("clients", clients.join_next()).await {
        joined.unwrap().unwrap();
    }
    let key = |t: &Thumbprint| t.to_string();
    seen.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(seen, expected);
    assert_eq!(stats.handshakes_completed(), CLIENTS as u64);
    assert_eq!(stats.client_certificates(), CLIENTS as u64);
}

#[tokio::test]
async fn dropping_the_listener_stops_accepting() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::self_signed()).await;
    let addr = listener.local_addr();
    let stats = listener.stats();

    let (accepted, client) = guard("handshake", async {
        tokio::join!(listener.accept(), connect(addr, pki.client_config(None)))
    })
    .await;
    let (_server, _peer) = accepted.unwrap();
    let _client = client.unwrap();

    let stalled = TcpStream::connect(addr).await.unwrap();
    wait_for(&stats, "stalled client accepted", |s| s.tcp_accepted() == 2).await;
    drop(listener);

    // The handshake in progress is abandoned…
    guard("stalled connection closed", closed_by_server(stalled)).await;
    // …and the port stops accepting.
    guard("port closed", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => return,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;
    assert_eq!(stats.handshakes_timed_out(), 0);
}

#[tokio::test]
async fn a_listener_can_wrap_an_existing_tcp_listener() {
    let pki = Pki::new();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let mut listener =
        certbound_tls::TlsListener::new(tcp, pki.server_config(ClientAuth::self_signed())).unwrap();
    assert_eq!(listener.local_addr(), tcp_addr);
    let (accepted, client) = guard("handshake", async {
        tokio::join!(
            listener.accept(),
            connect(tcp_addr, pki.client_config(None))
        )
    })
    .await;
    let (server, _peer) = accepted.unwrap();
    client.unwrap();
    assert!(server.get_ref().0.nodelay().unwrap(), "TCP_NODELAY is set");
}
