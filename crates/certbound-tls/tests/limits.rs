//! The listener's defences against clients that connect and then say nothing: the per-address
//! pending-handshake cap, the ClientHello deadline, the connection cap. Real sockets on
//! 127.0.0.x; every time bound is a hang guard, except the 2 s liveness bound the issue sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use certbound_core::Thumbprint;
use certbound_dev::KeyKind;
use certbound_tls::listener::{
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP,
};
use certbound_tls::ClientAuth;
use common::http::{get1, http1};
use common::{closed_by_server, connect, guard, tcp_from, wait_for, whoami_app, Pki};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Makes sure this process may open `needed` descriptors: raises the soft `RLIMIT_NOFILE` up to
/// the hard limit if it is lower (some systems default to 256 or 1,024).
fn ensure_open_files(needed: u64) {
    #[cfg(unix)]
    {
        let limit = rlimit::increase_nofile_limit(needed).unwrap();
        assert!(
            limit >= needed,
            "this test opens about {needed} sockets, but the open-file limit is {limit} and \
             cannot be raised further (hard limit); raise it with `ulimit -Hn`"
        );
    }
    #[cfg(not(unix))]
    let _ = needed;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_do_not_starve_a_client_from_another() {
    const IDLE: usize = 1_100;
    // Client and server ends of every idle socket, plus room for the rest of the process.
    ensure_open_files(2 * IDLE as u64 + 512);
    let pki = Pki::new();
    // Every limit at its default: this is the configuration the issue attacked.
    let listener = pki.listener(ClientAuth::ca(pki.roots())).await;
    let (addr, stats) = (listener.local_addr(), listener.stats());
    tokio::spawn(certbound_tls::serve(listener, whoami_app()).into_future());

    // 1,100 TCP connections from 127.0.0.2 that never send a ClientHello.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tcp_from("127.0.0.2", addr).await);
    }
    // The server has taken at least as many of them as there are handshake slots in all: were
    // one address able to fill those slots, the next client would now wait for a timeout.
    let global = DEFAULT_MAX_PENDING_HANDSHAKES.min(IDLE) as u64;
    wait_for(&stats, "the idle sockets taken", |s| {
        s.tcp_accepted() >= global
    })
    .await;

    // A real mTLS client from 127.0.0.1 gets its answer within 2 s — the liveness requirement
    // under test (without the per-address cap it waited for the 10 s handshake timeout).
    let client = pki.client("real", KeyKind::EcP256);
    let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], &[b"http/1.1"]);
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(2), async {
        let mut sender = http1(connect(addr, config).await.unwrap()).await;
        get1(&mut sender, "/whoami").await
    })
    .await
    .unwrap_or_else(|_| {
        panic!("no answer within 2 s while {IDLE} idle sockets are open: {stats:?}")
    });
    let took = started.elapsed();
    assert!(
        body.starts_with("127.0.0.1:"),
        "answered from the real client's address: {body}"
    );
    assert!(body.ends_with(&Thumbprint::of_der(&client.cert_der).to_string()));

    wait_for(&stats, "every socket taken", |s| {
        s.tcp_accepted() == IDLE as u64 + 1
    })
    .await;
    // 64 of the idle sockets hold handshake slots (until their ClientHello deadline); the rest
    // were closed at once. Slots freed by ClientHello timeouts may have admitted a few more.
    let cap = DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP as u64;
    let rejected = stats.per_ip_limit_rejections();
    let expected = (IDLE as u64).saturating_sub(cap);
    assert!(rejected <= expected, "{stats:?}");
    assert!(
        rejected + stats.client_hello_timeouts() >= expected,
        "{stats:?}"
    );
    assert_eq!(stats.handshakes_completed(), 1);
    println!(
        "{IDLE} idle sockets from 127.0.0.2: {rejected} closed at once; the client from \
         127.0.0.1 got 200 in {took:?}"
    );
}

#[tokio::test]
async fn the_per_address_cap_closes_extra_connections_at_once() {
    let pki = Pki::new();
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .max_pending_handshakes_per_ip(2)
        // Far beyond the hang guard: no slot is freed by a timeout during the test.
        .client_hello_timeout(Duration::from_secs(60))
        .handshake_timeout(Duration::from_secs(60));
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });

    let _first = tcp_from("127.0.0.2", addr).await;
    let _second = tcp_from("127.0.0.2", addr).await;
    wait_for(&stats, "two pending", |s| s.tcp_accepted() == 2).await;
    let third = tcp_from("127.0.0.2", addr).await;
    guard("third connection closed at once", closed_by_server(third)).await;
    assert_eq!(stats.per_ip_limit_rejections(), 1);

    // Another address is not affected: its connection is taken and kept…
    let _other = tcp_from("127.0.0.3", addr).await;
    wait_for(&stats, "other address accepted", |s| s.tcp_accepted() == 4).await;
    assert_eq!(stats.per_ip_limit_rejections(), 1);
    // …and a real client completes its handshake.
    let client = pki.client("real", KeyKind::EcP256);
    let stream = guard(
        "real client",
        connect(addr, pki.client_config(Some(&client))),
    )
    .await
    .unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    let (_connection, peer) = accepted.unwrap();
    assert_eq!(peer.remote_addr(), stream.get_ref().0.local_addr().unwrap());
    assert_eq!(stats.per_ip_limit_rejections(), 1);
}

#[tokio::test]
async fn a_slot_is_given_back_when_a_handshake_ends() {
    let pki = Pki::new();
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .max_pending_handshakes_per_ip(1)
        .client_hello_timeout(Duration::from_millis(500));
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let accept = tokio::spawn(async move {
        let mut accepted = Vec::new();
        for _ in 0..2 {
            accepted.push(listener.accept().await.unwrap());
        }
        accepted
    });
    // Sequential handshakes from one address each hold the only slot, then give it back —
    // whether the handshake completed or timed out.
    let client = pki.client("one", KeyKind::EcP256);
    guard("first", connect(addr, pki.client_config(Some(&client))))
        .await
        .unwrap();
    let silent = TcpStream::connect(addr).await.unwrap();
    guard("silent one closed", closed_by_server(silent)).await;
    guard("second", connect(addr, pki.client_config(Some(&client))))
        .await
        .unwrap();
    assert_eq!(guard("accept", accept).await.unwrap().len(), 2);
    assert_eq!(stats.per_ip_limit_rejections(), 0);
    assert_eq!(stats.client_hello_timeouts(), 1);
}

#[tokio::test]
async fn a_silent_client_is_closed_at_the_client_hello_deadline() {
    let pki = Pki::new();
    // The whole-handshake timeout stays at its default (10 s), far beyond the hang guard:
    // only the ClientHello deadline can close these connections in time.
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .client_hello_timeout(Duration::from_millis(300));
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });

    // Connects and sends nothing.
    let silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    guard("silent client closed", closed_by_server(silent)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    wait_for(&stats, "counted", |s| s.client_hello_timeouts() == 1).await;

    // Sends the first bytes of a TLS record and then nothing: the hello must be complete.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    guard("trickling client closed", closed_by_server(trickle)).await;
    wait_for(&stats, "counted", |s| s.client_hello_timeouts() == 2).await;
    assert_eq!(stats.handshakes_timed_out(), 0);
    assert_eq!(stats.handshakes_failed(), 0);

    // The listener still serves.
    connect(addr, pki.client_config(None)).await.unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    assert!(accepted.unwrap().1.certificate().is_none());
}

#[tokio::test]
async fn after_a_client_hello_the_handshake_timeout_applies() {
    let pki = Pki::new();
    let listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .client_hello_timeout(Duration::from_millis(200))
        .handshake_timeout(Duration::from_millis(800));
    let (addr, stats) = (listener.local_addr(), listener.stats());
    tokio::spawn(certbound_tls::serve(listener, whoami_app()).into_future());

    // A real ClientHello, then silence: past the hello deadline, within the handshake timeout.
    let config = pki.client_config(None);
    let mut client =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let started = Instant::now();
    guard("stalled handshake closed", closed_by_server(tcp)).await;
    assert!(started.elapsed() >= Duration::from_millis(800));
    wait_for(&stats, "counted", |s| s.handshakes_timed_out() == 1).await;
    assert_eq!(stats.client_hello_timeouts(), 0);
}

#[tokio::test]
async fn at_the_connection_limit_new_clients_wait_until_one_closes() {
    let pki = Pki::new();
    let mut listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .max_connections(1);
    let (addr, stats) = (listener.local_addr(), listener.stats());

    let (accepted, client) = guard("first handshake", async {
        tokio::join!(listener.accept(), connect(addr, pki.client_config(None)))
    })
    .await;
    let (first, _peer) = accepted.unwrap();
    let _first_client = client.unwrap();
    assert_eq!(stats.open_connections(), 1);
    wait_for(&stats, "limit reached", |s| s.connection_limit_waits() == 1).await;

    // The next client's TCP connection completes in the kernel's backlog, but the listener
    // does not take it while the first connection is open.
    let second = tokio::spawn(connect(addr, pki.client_config(None)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stats.tcp_accepted(), 1, "{stats:?}");
    assert!(!second.is_finished());

    drop(first);
    let (accepted, client) = guard("second handshake", async {
        tokio::join!(listener.accept(), second)
    })
    .await;
    let (second, _peer) = accepted.unwrap();
    client.unwrap().unwrap();
    assert_eq!(stats.tcp_accepted(), 2);
    assert_eq!(stats.open_connections(), 1);
    drop(second);
    assert_eq!(stats.open_connections(), 0);
}
