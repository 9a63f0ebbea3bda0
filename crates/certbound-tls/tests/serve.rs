//! `certbound_tls::serve`: the PeerCertificate on every request (both ways the certbound layer
//! and axum read it), the header-read and idle timeouts on HTTP/1.1 and HTTP/2, graceful
//! shutdown. Real sockets and real hyper clients; time bounds are hang guards, and the
//! lower bounds only check that a timeout did not fire early.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use certbound_core::Thumbprint;
use certbound_dev::KeyKind;
use certbound_tls::{ClientAuth, HttpConfig, ListenerStats, Serve, TlsListener};
use common::http::{get1, get2, text, Body};
use common::{connect, guard, wait_for, whoami_app, Pki};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use common::http::get as request;

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2"];

/// Starts `serve` (after `configure`) on a self-signed-mode listener; returns its address,
/// counters and task.
async fn start<F>(
    pki: &Pki,
    app: Router,
    configure: F,
) -> (
    std::net::SocketAddr,
    ListenerStats,
    JoinHandle<std::io::Result<()>>,
)
where
    F: FnOnce(Serve<Router>) -> Serve<Router>,
{
    let listener: TlsListener = pki.listener(ClientAuth::self_signed()).await;
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let server = configure(certbound_tls::serve(listener, app));
    (addr, stats, tokio::spawn(server.into_future()))
}

async fn tls(pki: &Pki, addr: std::net::SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let client = certbound_dev::pki::self_signed_client("serve", KeyKind::EcP256).unwrap();
    let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], alpn);
    connect(addr, config).await.unwrap()
}

/// An HTTP/1.1 client whose connection task can be watched: it ends when the server closes.
async fn h1_client(
    stream: TlsStream<TcpStream>,
) -> (http1::SendRequest<Body>, JoinHandle<hyper::Result<()>>) {
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    (sender, tokio::spawn(conn))
}

async fn h2_client(
    stream: TlsStream<TcpStream>,
) -> (http2::SendRequest<Body>, JoinHandle<hyper::Result<()>>) {
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    (sender, tokio::spawn(conn))
}

#[tokio::test]
async fn every_request_carries_the_peer_certificate_both_ways() {
    let pki = Pki::new();
    let (addr, stats, _server) = start(&pki, whoami_app(), |s| s).await;
    let client = pki.client("both", KeyKind::EcP256);
    let thumbprint = Thumbprint::of_der(&client.cert_der);

    for alpn in [H1, H2] {
        let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], alpn);
        let stream = connect(addr, config).await.unwrap();
        let expected = format!("{} {thumbprint}", stream.get_ref().0.local_addr().unwrap());
        if alpn == H1 {
            let mut sender = common::http::http1(stream).await;
            for path in ["/whoami", "/extension", "/whoami"] {
                assert_eq!(guard(path, get1(&mut sender, path)).await, expected);
            }
        } else {
            let sender = common::http::http2(stream).await;
            for path in ["/whoami", "/extension"] {
                assert_eq!(guard(path, get2(sender.clone(), path)).await, expected);
            }
        }
    }
    // ConnectInfo<PeerCertificate> (axum) and the plain extension (the certbound layer,
    // hyper users) on every request; the certificate hashed once per connection.
    assert_eq!(stats.client_certificates(), 2);
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout() {
    let pki = Pki::new();
    let (addr, stats, _server) = start(&pki, whoami_app(), |s| {
        s.idle_timeout(Duration::from_secs(1))
            .header_read_timeout(Duration::from_secs(30))
    })
    .await;
    let (mut sender, conn) = h1_client(tls(&pki, addr, H1).await).await;
    guard("request", get1(&mut sender, "/whoami")).await;
    let idle_from = Instant::now();
    guard("idle connection closed by the server", conn)
        .await
        .unwrap()
        .unwrap();
    // Not before the idle timeout: the server's idle clock starts when the response ends, a
    // moment before the client sees it, hence the margin.
    assert!(idle_from.elapsed() >= Duration::from_millis(900));
    assert_eq!(stats.idle_timeouts(), 1);
    assert_eq!(stats.header_read_timeouts(), 0);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let pki = Pki::new();
    let (addr, stats, _server) = start(&pki, whoami_app(), |s| {
        s.idle_timeout(Duration::from_secs(1))
    })
    .await;
    let (sender, conn) = h2_client(tls(&pki, addr, H2).await).await;
    guard("request", get2(sender.clone(), "/whoami")).await;
    let idle_from = Instant::now();
    // The server sends GOAWAY and closes; the client's connection task ends.
    guard("idle connection closed by the server", conn)
        .await
        .unwrap()
        .unwrap();
    // Not before the idle timeout: the server's idle clock starts when the response ends, a
    // moment before the client sees it, hence the margin.
    assert!(idle_from.elapsed() >= Duration::from_millis(900));
    assert_eq!(stats.idle_timeouts(), 1);
}

/// A response body that sends `chunks` chunks, one every `every`.
struct Drip {
    chunks: u32,
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    fn new(chunks: u32, every: Duration) -> Self {
        Self {
            chunks,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.chunks -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"drip\n")))))
    }
}

#[tokio::test]
async fn requests_in_flight_keep_a_connection_from_being_idle() {
    let pki = Pki::new();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow"
            }),
        )
        .route(
            "/drip",
            get(|| async { axum::body::Body::new(Drip::new(6, Duration::from_millis(250))) }),
        );
    let (addr, stats, _server) =
        start(&pki, app, |s| s.idle_timeout(Duration::from_millis(500))).await;

    // A handler that takes three idle timeouts, and a body that takes three to send, on both
    // protocols at once. The clients stay open (a client that hangs up is not idle-closed).
    let h1 = async {
        let (mut sender, conn) = h1_client(tls(&pki, addr, H1).await).await;
        let slow = text(sender.send_request(request("/slow")).await.unwrap()).await;
        sender.ready().await.unwrap();
        let drip = text(sender.send_request(request("/drip")).await.unwrap()).await;
        (slow, drip, conn, Box::new(sender) as Box<dyn Send>)
    };
    let h2 = async {
        let (mut sender, conn) = h2_client(tls(&pki, addr, H2).await).await;
        let slow = text(sender.send_request(request("/slow")).await.unwrap()).await;
        let drip = text(sender.send_request(request("/drip")).await.unwrap()).await;
        (slow, drip, conn, Box::new(sender) as Box<dyn Send>)
    };
    let (h1, h2) = guard("requests", async { tokio::join!(h1, h2) }).await;
    let mut clients = Vec::new();
    for (slow, drip, conn, sender) in [h1, h2] {
        assert_eq!(slow, "slow");
        assert_eq!(drip, "drip\n".repeat(6));
        clients.push((sender, conn));
    }
    assert_eq!(
        stats.idle_timeouts(),
        0,
        "closed while a request was in flight"
    );
    // Once nothing is in flight, the idle timeout applies again.
    for (_sender, conn) in clients {
        guard("idle-closed by the server", conn)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(stats.idle_timeouts(), 2);
}

/// Writes `first`, then `more(i)` every 200 ms until the server closes the connection;
/// returns how long that took.
async fn slowloris(
    mut stream: TlsStream<TcpStream>,
    first: &[u8],
    more: fn(u32) -> Vec<u8>,
) -> Duration {
    let started = Instant::now();
    stream.write_all(first).await.unwrap();
    let (mut read, mut write) = tokio::io::split(stream);
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

/// One more header line, never the blank line that ends the head.
fn header_line(i: u32) -> Vec<u8> {
    format!("x-slow-{i}: .\r\n").into_bytes()
}

/// An HTTP/2 PING frame: traffic, but not a request.
fn h2_ping(i: u32) -> Vec<u8> {
    let mut frame = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&u64::from(i).to_be_bytes());
    frame
}

#[tokio::test]
async fn a_slowloris_is_cut_at_the_header_read_timeout() {
    let pki = Pki::new();
    let (addr, stats, _server) = start(&pki, whoami_app(), |s| {
        s.header_read_timeout(Duration::from_secs(1))
    })
    .await;

    // The first request of a connection, over HTTP/1.1.
    let took = slowloris(
        tls(&pki, addr, H1).await,
        b"GET /whoami HTTP/1.1\r\nhost: localhost\r\n",
        header_line,
    )
    .await;
    assert!(took >= Duration::from_secs(1));
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 1).await;

    // A later request on a kept-alive HTTP/1.1 connection (hyper's own header timer).
    let mut stream = tls(&pki, addr, H1).await;
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let took = slowloris(
        stream,
        b"GET /whoami HTTP/1.1\r\nhost: localhost\r\n",
        header_line,
    )
    .await;
    assert!(took >= Duration::from_millis(500), "{took:?}");
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 2).await;

    // HTTP/2: the connection preface and SETTINGS, then PINGs but never a HEADERS frame.
    let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let preface = [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &settings].concat();
    let took = slowloris(tls(&pki, addr, H2).await, &preface, h2_ping).await;
    assert!(took >= Duration::from_secs(1));
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 3).await;

    // TLS, and then not a single byte.
    let silent = tls(&pki, addr, H1).await;
    let started = Instant::now();
    let (mut read, _write) = tokio::io::split(silent);
    let _ = guard(
        "silent connection closed",
        read.read_to_end(&mut Vec::new()),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    wait_for(&stats, "counted", |s| s.header_read_timeouts() == 4).await;
    assert_eq!(stats.idle_timeouts(), 0);
}

#[tokio::test]
async fn on_http1_the_header_read_timeout_also_bounds_the_wait_for_the_next_request() {
    // hyper starts the header timer as soon as an HTTP/1.1 connection is idle, so the shorter
    // of the two timeouts closes an idle HTTP/1.1 connection (documented in the server module).
    let pki = Pki::new();
    let (addr, stats, _server) = start(&pki, whoami_app(), |s| {
        s.header_read_timeout(Duration::from_secs(1))
            .idle_timeout(None)
    })
    .await;
    let (mut sender, conn) = h1_client(tls(&pki, addr, H1).await).await;
    guard("request", get1(&mut sender, "/whoami")).await;
    let _ = guard("closed by the server", conn).await.unwrap();
    assert_eq!(stats.header_read_timeouts(), 1);
    assert_eq!(stats.idle_timeouts(), 0);
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_connections_and_finishes_requests_in_flight() {
    let pki = Pki::new();
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let app = whoami_app().route(
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
    let (addr, _stats, server) = start(&pki, app, |s| {
        s.with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
    })
    .await;

    // One idle HTTP/1.1 connection, one HTTP/2 request in flight.
    let (mut idle, idle_conn) = h1_client(tls(&pki, addr, H1).await).await;
    guard("request", get1(&mut idle, "/whoami")).await;
    let (mut busy, _busy_conn) = h2_client(tls(&pki, addr, H2).await).await;
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

#[tokio::test]
async fn the_drain_timeout_bounds_a_graceful_shutdown() {
    let pki = Pki::new();
    let entered = Arc::new(Notify::new());
    let app = Router::new().route(
        "/forever",
        get({
            let entered = entered.clone();
            move || async move {
                entered.notify_one();
                std::future::pending::<()>().await;
            }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, _stats, server) = start(&pki, app, |s| {
        s.with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .drain_timeout(Duration::from_millis(300))
    })
    .await;
    let (mut sender, _conn) = h1_client(tls(&pki, addr, H1).await).await;
    let request = tokio::spawn(async move { sender.send_request(request("/forever")).await });
    guard("handler entered", entered.notified()).await;

    stop.send(()).unwrap();
    guard("server stopped after the drain timeout", server)
        .await
        .unwrap()
        .unwrap();
    // The request never got an answer: its connection was closed.
    assert!(guard("request ended", request).await.unwrap().is_err());
}

#[tokio::test]
async fn serve_connection_gives_hyper_loops_the_same_timeouts_and_certificate() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::self_signed()).await;
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let http = HttpConfig::new().idle_timeout(Duration::from_secs(1));
    // A plain hyper handler (no axum), reading the plain extension.
    let service = tower::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let peer = req
            .extensions()
            .get::<certbound_tls::PeerCertificate>()
            .cloned();
        let body = peer.map_or_else(|| "missing".to_owned(), |p| common::describe(&p));
        Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
    });
    tokio::spawn(async move {
        while let Ok((connection, _peer)) = listener.accept().await {
            let http = http.clone();
            tokio::spawn(async move { http.serve_connection(connection, service).await });
        }
    });

    let stream = tls(&pki, addr, H1).await;
    let local = stream.get_ref().0.local_addr().unwrap();
    let (mut sender, conn) = h1_client(stream).await;
    let body = guard("request", get1(&mut sender, "/")).await;
    assert!(body.starts_with(&local.to_string()), "{body}");
    assert!(!body.ends_with("none"), "{body}");
    guard("idle connection closed", conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.idle_timeouts(), 1);
}

#[tokio::test]
async fn a_response_body_is_collected_over_http2_with_keep_alive_pings() {
    // Keep-alive PINGs every 100 ms while a slow body is sent: the client answers them, so
    // the connection stays up.
    let pki = Pki::new();
    let app = Router::new().route(
        "/drip",
        get(|| async { axum::body::Body::new(Drip::new(4, Duration::from_millis(200))) }),
    );
    let (addr, _stats, _server) = start(&pki, app, |s| {
        s.http_config(
            HttpConfig::new()
                .h2_keep_alive_interval(Duration::from_millis(100))
                .h2_keep_alive_timeout(Duration::from_secs(2)),
        )
    })
    .await;
    let (mut sender, _conn) = h2_client(tls(&pki, addr, H2).await).await;
    let response = guard("request", sender.send_request(request("/drip")))
        .await
        .unwrap();
    let body = guard("body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "drip\n".repeat(4));
}

#[tokio::test]
async fn huge_timeouts_mean_never_and_do_not_panic() {
    let pki = Pki::new();
    let listener = pki
        .listener(ClientAuth::self_signed())
        .await
        .client_hello_timeout(Duration::MAX)
        .handshake_timeout(Duration::MAX);
    let addr = listener.local_addr();
    let http = HttpConfig::new()
        .header_read_timeout(Duration::MAX)
        .idle_timeout(Duration::MAX)
        .h2_keep_alive_interval(Duration::MAX)
        .h2_keep_alive_timeout(Duration::MAX);
    let server = tokio::spawn(
        certbound_tls::serve(listener, whoami_app())
            .http_config(http)
            .into_future(),
    );
    let (mut sender, _conn) = h1_client(tls(&pki, addr, H1).await).await;
    guard("http/1.1", get1(&mut sender, "/whoami")).await;
    guard("http/1.1 again", get1(&mut sender, "/whoami")).await;
    let (sender, _conn) = h2_client(tls(&pki, addr, H2).await).await;
    guard("h2", get2(sender, "/whoami")).await;
    assert!(!server.is_finished(), "the server is still running");
}
