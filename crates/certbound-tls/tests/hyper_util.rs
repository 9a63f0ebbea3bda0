//! Without axum's `serve`: a hyper-util `auto::Builder` loop over `TlsListener::accept`, with
//! the `PeerCertificate` inserted as a plain request extension (what a tower stack or the
//! certbound layer reads).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::routing::get;
use axum::{Extension, Router};
use certbound_core::Thumbprint;
use certbound_dev::KeyKind;
use certbound_tls::{ClientAuth, PeerCertificate, TlsListener};
use common::http::{get1, get2, http1, http2};
use common::{connect, describe, guard, Pki};
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

/// The loop from the `listener` module docs, with a tower service (an axum `Router` reading
/// `Extension<PeerCertificate>`) instead of a `service_fn`.
async fn serve(mut listener: TlsListener, app: Router) {
    while let Ok((stream, peer)) = listener.accept().await {
        let app = app.clone();
        tokio::spawn(async move {
            let service = app.map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}

#[tokio::test]
async fn auto_builder_loop_attaches_the_peer_certificate_to_every_request() {
    let pki = Pki::new();
    let listener = pki.listener(ClientAuth::self_signed()).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    let app = Router::new().route(
        "/whoami",
        get(|Extension(peer): Extension<PeerCertificate>| async move { describe(&peer) }),
    );
    tokio::spawn(serve(listener, app));

    let client = certbound_dev::pki::self_signed_client("util", KeyKind::EcP256).unwrap();
    let thumbprint = Thumbprint::of_der(&client.cert_der);

    // HTTP/1.1 keep-alive.
    let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], &[b"http/1.1"]);
    let stream = connect(addr, config).await.unwrap();
    let expected = format!("{} {thumbprint}", stream.get_ref().0.local_addr().unwrap());
    let mut sender = http1(stream).await;
    for _ in 0..3 {
        assert_eq!(
            guard("http/1.1", get1(&mut sender, "/whoami")).await,
            expected
        );
    }

    // HTTP/2, several streams.
    let config = pki.client_config_with(Some(&client), &[&rustls::version::TLS13], &[b"h2"]);
    let stream = connect(addr, config).await.unwrap();
    let expected = format!("{} {thumbprint}", stream.get_ref().0.local_addr().unwrap());
    let sender = http2(stream).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..3 {
        requests.spawn(get2(sender.clone(), "/whoami"));
    }
    while let Some(body) = guard("h2", requests.join_next()).await {
        assert_eq!(body.unwrap(), expected);
    }

    // Two connections, two certificates hashed, however many requests.
    assert_eq!(stats.handshakes_completed(), 2);
    assert_eq!(stats.client_certificates(), 2);
}
