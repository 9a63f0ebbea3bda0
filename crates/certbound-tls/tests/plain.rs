//! `PlainListener` served by `certbound_tls::serve`: HTTP behind a TLS-terminating proxy with the
//! TLS listener's defences — the per-address cap on connections without a request, the
//! connection cap, header-read and idle timeouts, graceful drain — and the peer address on
//! every request. Real sockets on 127.0.0.x and real hyper clients; time bounds are hang guards
//! (and the 2 s liveness bound the issue sets); lower bounds only check that a timeout did not
//! fire early.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use certbound_tls::plain::DEFAULT_MAX_PENDING_CONNECTIONS_PER_IP;
use certbound_tls::{ListenerStats, PlainListener, Serve};
use common::http::{get as request, text, Body};
use common::{closed_by_server, guard, tcp_from, wait_for, whoami_app};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// Makes sure this process may open `needed` descriptors (see tests/limits.rs).
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

/// [`whoami_app`] plus `GET /addr`: the `ConnectInfo<SocketAddr>`.
fn app() -> Router {
    whoami_app().route(
        "/addr",
        get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.to_string() }),
    )
}

/// Starts `serve` (after `configure`) on a plain listener made by `listener`; returns its
/// address, counters and task.
async fn start(
    listener: impl FnOnce(PlainListener) -> PlainListener,
    app: Router,
    configure: impl FnOnce(Serve<Router, PlainListener>) -> Serve<Router, PlainListener>,
) -> (SocketAddr, ListenerStats, JoinHandle<std::io::Result<()>>) {
    let listener = listener(PlainListener::bind("127.0.0.1:0").await.unwrap());
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let server = configure(certbound_tls::serve(listener, app));
    (addr, stats, tokio::spawn(server.into_future()))
}

/// An HTTP/1.1 client over plain TCP from `from`; its connection task ends when the server
/// closes the connection.
async fn h1_from(
    from: &str,
    addr: SocketAddr,
) -> (http1::SendRequest<Body>, JoinHandle<hyper::Result<()>>) {
    let tcp = tcp_from(from, addr).await;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    (sender, tokio::spawn(conn))
}

/// An HTTP/2 client over plain TCP (prior knowledge, as proxies speak h2c to a backend).
async fn h2(addr: SocketAddr) -> (http2::SendRequest<Body>, JoinHandle<hyper::Result<()>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    (sender, tokio::spawn(conn))
}

async fn get1(sender: &mut http1::SendRequest<Body>, path: &str) -> String {
    sender.ready().await.unwrap();
    text(sender.send_request(request(path)).await.unwrap()).await
}

async fn get2(sender: &mut http2::SendRequest<Body>, path: &str) -> String {
    sender.ready().await.unwrap();
    text(sender.send_request(request(path)).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_do_not_starve_a_plain_client_from_another() {
    const IDLE: usize = 1_100;
    ensure_open_files(2 * IDLE as u64 + 512);
    // Fewer connection slots than idle sockets, so that without the per-address cap the idle
    // sockets would hold every slot and the client would wait for the 10 s header-read
    // timeout. Every other setting at its default.
    const SLOTS: usize = 1_024;
    let (addr, stats, _server) = start(|l| l.max_connections(SLOTS), app(), |s| s).await;

    // 1,100 TCP connections from 127.0.0.2 that never send a byte.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tcp_from("127.0.0.2", addr).await);
    }
    // The server has taken at least as many of them as there are connection slots: were one
    // address able to hold them all, the next client would now wait in the backlog.
    wait_for(&stats, "the idle sockets taken", |s| {
        s.tcp_accepted() >= SLOTS as u64
    })
    .await;

    // A plain-HTTP client from 127.0.0.1 (where the proxy would be) gets its answer within 2 s.
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(2), async {
        let (mut sender, _conn) = h1_from("127.0.0.1", addr).await;
        get1(&mut sender, "/whoami").await
    })
    .await
    .unwrap_or_else(|_| {
        panic!("no answer within 2 s while {IDLE} idle sockets are open: {stats:?}")
    });
    let took = started.elapsed();
    assert!(body.starts_with("127.0.0.1:"), "{body}");
    assert!(
        body.ends_with(" none"),
        "no certificate on plain HTTP: {body}"
    );
    wait_for(&stats, "every socket taken", |s| {
        s.tcp_accepted() == IDLE as u64 + 1
    })
    .await;

    // 64 idle sockets hold their address's slots (until the 10 s header-read timeout); the
    // rest were closed at once. Slots freed by header-read timeouts may have admitted a few
    // more on a very slow machine.
    let cap = DEFAULT_MAX_PENDING_CONNECTIONS_PER_IP as u64;
    let rejected = stats.per_ip_limit_rejections();
    let expected = IDLE as u64 - cap;
    assert!(rejected <= expected, "{stats:?}");
    assert!(
        rejected + stats.header_read_timeouts() >= expected,
        "{stats:?}"
    );
    assert_eq!(stats.connection_limit_waits(), 0, "{stats:?}");
    // The rejected sockets really are closed (one of them, checked from the client side).
    let last = idle.pop().unwrap();
    guard("a rejected socket closed", closed_by_server(last)).await;
    println!(
        "{IDLE} idle sockets from 127.0.0.2: {rejected} closed at once; the plain-HTTP client \
         from 127.0.0.1 got 200 in {took:?}"
    );
}

#[tokio::test]
async fn the_per_address_cap_counts_only_connections_without_a_request() {
    let (addr, stats, _server) = start(
        |l| l.max_pending_connections_per_ip(2),
        app(),
        // Far beyond the hang guard: no slot is freed by a timeout during the test.
        |s| {
            s.header_read_timeout(Duration::from_secs(60))
                .idle_timeout(Duration::from_secs(60))
        },
    )
    .await;

    // A client that has made a request no longer counts, though its connection stays open…
    let (mut busy, _busy_conn) = h1_from("127.0.0.2", addr).await;
    guard("first request", get1(&mut busy, "/whoami")).await;
    // …so two silent connections from the same address are still taken and kept…
    let silent1 = tcp_from("127.0.0.2", addr).await;
    let _silent2 = tcp_from("127.0.0.2", addr).await;
    wait_for(&stats, "two silent connections taken", |s| {
        s.tcp_accepted() == 3
    })
    .await;
    // …and a third is closed at once, before it can say anything.
    let third = tcp_from("127.0.0.2", addr).await;
    guard("third silent connection closed", closed_by_server(third)).await;
    assert_eq!(stats.per_ip_limit_rejections(), 1);
    assert_eq!(stats.header_read_timeouts(), 0);

    // The connection with a request in its past keeps working; another address is unaffected.
    guard("second request", get1(&mut busy, "/whoami")).await;
    let (mut other, _other_conn) = h1_from("127.0.0.3", addr).await;
    let body = guard("other address", get1(&mut other, "/whoami")).await;
    assert!(body.starts_with("127.0.0.3:"), "{body}");
    assert_eq!(stats.per_ip_limit_rejections(), 1);

    // A silent connection that closes gives its slot back.
    drop(silent1);
    let body = guard("slot given back", async {
        loop {
            let (mut sender, _conn) = h1_from("127.0.0.2", addr).await;
            if sender.ready().await.is_ok() {
                if let Ok(response) = sender.send_request(request("/whoami")).await {
                    return text(response).await;
                }
            }
            // Closed at once: the server had not seen the silent connection close yet.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(body.starts_with("127.0.0.2:"), "{body}");
}

#[tokio::test]
async fn trusted_proxies_are_not_limited_per_address() {
    let (addr, stats, _server) = start(
        |l| {
            l.max_pending_connections_per_ip(1)
                .trusted_proxies(["127.0.0.1/32".parse().unwrap()])
        },
        app(),
        |s| s.header_read_timeout(Duration::from_secs(60)),
    )
    .await;

    // The proxy's address: more connections at once than the limit, all kept and served.
    let mut proxy = Vec::new();
    for _ in 0..5 {
        proxy.push(h1_from("127.0.0.1", addr).await);
    }
    wait_for(&stats, "proxy connections taken", |s| s.tcp_accepted() == 5).await;
    for (sender, _conn) in &mut proxy {
        let body = guard("proxy request", get1(sender, "/whoami")).await;
        assert!(body.starts_with("127.0.0.1:"), "{body}");
    }
    assert_eq!(stats.per_ip_limit_rejections(), 0);

    // Any other address is limited.
    let _kept = tcp_from("127.0.0.2", addr).await;
    wait_for(&stats, "one silent connection taken", |s| {
        s.tcp_accepted() == 6
    })
    .await;
    let over = tcp_from("127.0.0.2", addr).await;
    guard("second silent connection closed", closed_by_server(over)).await;
    assert_eq!(stats.per_ip_limit_rejections(), 1);
}

/// Writes `first`, then `more(i)` every 200 ms until the server closes the connection;
/// returns how long that took.
async fn slowloris(stream: TcpStream, first: &[u8], more: fn(u32) -> Vec<u8>) -> Duration {
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    write.write_all(first).await.unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&more(i)).await.is_err() || write.flush().await.is_err() {
                return;
            }
        }
    });
    let _ = guard("slowloris cut off", read.read_to_end(&mut Vec::new())).await;
    trickle.abort();
    started.elapsed()
}

fn header_line(i: u32) -> Vec<u8> {
    format!("x-slow-{i}: .\r\n").into_bytes()
}

fn h2_ping(i: u32) -> Vec<u8> {
    let mut frame = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&u64::from(i).to_be_bytes());
    frame
}

#[tokio::test]
async fn a_slowloris_on_plain_http_is_cut_at_the_header_read_timeout() {
    let (addr, stats, _server) = start(
        |l| l,
        app(),
        |s| s.header_read_timeout(Duration::from_secs(1)),
    )
    .await;

    // HTTP/1.1: a request line and one header line after another, never the blank line.
    let took = slowloris(
        TcpStream::connect(addr).await.unwrap(),
        b"GET /whoami HTTP/1.1\r\nhost: api\r\n",
        header_line,
    )
    .await;
    assert!(took >= Duration::from_secs(1), "{took:?}");
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 1).await;

    // HTTP/2 with prior knowledge: the preface and SETTINGS, then PINGs but never HEADERS.
    let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let preface = [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &settings].concat();
    let took = slowloris(TcpStream::connect(addr).await.unwrap(), &preface, h2_ping).await;
    assert!(took >= Duration::from_secs(1), "{took:?}");
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 2).await;

    // Not a single byte.
    let started = Instant::now();
    guard(
        "silent connection closed",
        closed_by_server(TcpStream::connect(addr).await.unwrap()),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 3).await;
    assert_eq!(stats.idle_timeouts(), 0);
    assert_eq!(stats.per_ip_limit_rejections(), 0);
    assert_eq!(stats.handshakes_completed(), 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (addr, stats, _server) = start(
        |l| l,
        app(),
        |s| {
            s.idle_timeout(Duration::from_secs(1))
                .header_read_timeout(Duration::from_secs(30))
        },
    )
    .await;

    // HTTP/1.1 keep-alive.
    let (mut sender, conn) = h1_from("127.0.0.1", addr).await;
    guard("request", get1(&mut sender, "/whoami")).await;
    let idle_from = Instant::now();
    guard("idle HTTP/1.1 connection closed by the server", conn)
        .await
        .unwrap()
        .unwrap();
    assert!(idle_from.elapsed() >= Duration::from_secs(1));
    assert_eq!(stats.idle_timeouts(), 1);

    // HTTP/2 (prior knowledge): GOAWAY, then closed.
    let (mut sender, conn) = h2(addr).await;
    guard("request", get2(&mut sender, "/whoami")).await;
    let idle_from = Instant::now();
    guard("idle HTTP/2 connection closed by the server", conn)
        .await
        .unwrap()
        .unwrap();
    assert!(idle_from.elapsed() >= Duration::from_secs(1));
    assert_eq!(stats.idle_timeouts(), 2);
    assert_eq!(stats.header_read_timeouts(), 0);
}

#[tokio::test]
async fn every_request_carries_the_peer_address() {
    let (addr, stats, _server) = start(|l| l, app(), |s| s).await;

    let (mut sender, _conn) = h1_from("127.0.0.4", addr).await;
    let local = get1(&mut sender, "/addr").await;
    assert!(local.starts_with("127.0.0.4:"), "{local}");
    // ConnectInfo<PeerCertificate> (axum), the PeerCertificate extension (the certbound
    // layer, hyper users): the same address, no certificate.
    for path in ["/whoami", "/extension"] {
        assert_eq!(
            guard(path, get1(&mut sender, path)).await,
            format!("{local} none")
        );
    }

    let (mut sender, _conn) = h2(addr).await;
    let local = get2(&mut sender, "/addr").await;
    assert_eq!(
        guard("h2", get2(&mut sender, "/whoami")).await,
        format!("{local} none")
    );
    assert_eq!(stats.client_certificates(), 0);
    assert_eq!(stats.tcp_accepted(), 2);
}

#[tokio::test]
async fn at_the_connection_limit_new_clients_wait_until_one_closes() {
    let mut listener = PlainListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .max_connections(1);
    let (addr, stats) = (listener.local_addr(), listener.stats());

    let (accepted, client) = guard("first", async {
        tokio::join!(listener.accept(), TcpStream::connect(addr))
    })
    .await;
    let (first, remote) = accepted;
    let client = client.unwrap();
    assert_eq!(remote, client.local_addr().unwrap());
    assert_eq!(first.remote_addr(), remote);
    assert!(first.peer().certificate().is_none());
    assert_eq!(stats.open_connections(), 1);

    // The next connection completes in the kernel's backlog, but is not taken while the first
    // is open.
    let second_client = TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished());
    assert_eq!(stats.tcp_accepted(), 1, "{stats:?}");
    assert_eq!(stats.connection_limit_waits(), 1);

    drop(first);
    let (_listener, (second_conn, remote)) = guard("second", &mut second).await.unwrap();
    assert_eq!(remote, second_client.local_addr().unwrap());
    assert_eq!(stats.tcp_accepted(), 2);
    assert_eq!(stats.open_connections(), 1);
    drop(second_conn);
    assert_eq!(stats.open_connections(), 0);
}

#[tokio::test]
async fn graceful_shutdown_drains_plain_connections() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let app = app().route(
        "/hold",
        get({
            let (release, entered) = (release.clone(), entered.clone());
            move || async move {
                entered.notify_one();
                release.notified().await;
                "finished"
            }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, _stats, server) = start(
        |l| l,
        app,
        |s| {
            s.with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
        },
    )
    .await;

    let (mut idle, idle_conn) = h1_from("127.0.0.1", addr).await;
    guard("request", get1(&mut idle, "/whoami")).await;
    let (mut busy, _busy_conn) = h1_from("127.0.0.1", addr).await;
    let hold =
        tokio::spawn(async move { text(busy.send_request(request("/hold")).await.unwrap()).await });
    guard("handler entered", entered.notified()).await;

    stop.send(()).unwrap();
    guard("idle connection closed", idle_conn)
        .await
        .unwrap()
        .unwrap();
    guard("port closed", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(!server.is_finished(), "a request is still in flight");

    release.notify_one();
    assert_eq!(guard("held request", hold).await.unwrap(), "finished");
    guard("server stopped", server).await.unwrap().unwrap();
}
