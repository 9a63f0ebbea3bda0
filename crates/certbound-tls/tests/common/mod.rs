//! Shared test helpers: a dev PKI, rustls clients, hang guards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certbound_dev::{CertAndKey, DevCa, KeyKind};
use certbound_tls::{server_config, ClientAuth, ListenerStats, TlsListener};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Bound on anything that could hang: a guard against a stuck test, never a speed assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(5);

/// Runs `fut`, failing the test if it has not finished within [`HANG_GUARD`].
pub async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what} did not finish"))
}

/// Waits (hang-guarded) until `cond` holds on the listener's counters.
pub async fn wait_for(stats: &ListenerStats, what: &str, cond: impl Fn(&ListenerStats) -> bool) {
    guard(what, async {
        while !cond(stats) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(cond(stats), "{what}: {stats:?}");
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA that issues the server certificate and the "trusted" client certificates.
pub struct Pki {
    pub ca: DevCa,
    pub server: CertAndKey,
}

impl Pki {
    pub fn new() -> Self {
        let ca = DevCa::new("test CA").unwrap();
        let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        Self { ca, server }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert().cert_der.clone()).unwrap();
        roots
    }

    pub fn client(&self, cn: &str, kind: KeyKind) -> CertAndKey {
        self.ca.client_cert(cn, kind).unwrap()
    }

    pub fn server_config(&self, auth: ClientAuth) -> Arc<rustls::ServerConfig> {
        server_config(
            vec![self.server.cert_der.clone()],
            self.server.private_key(),
            auth,
        )
        .unwrap()
    }

    pub async fn listener(&self, auth: ClientAuth) -> TlsListener {
        TlsListener::bind("127.0.0.1:0", self.server_config(auth))
            .await
            .unwrap()
    }

    /// A client trusting this PKI's CA for the server, presenting `client` (if any).
    pub fn client_config(&self, client: Option<&CertAndKey>) -> Arc<ClientConfig> {
        self.client_config_with(client, &[&rustls::version::TLS13], &[])
    }

    pub fn client_config_with(
        &self,
        client: Option<&CertAndKey>,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(self.roots());
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(vec![c.cert_der.clone()], c.private_key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client presenting `cert` but signing the handshake with `key`'s private key: rustls
    /// refuses to build such a client normally, so this goes through a certificate resolver.
    pub fn client_config_forged(
        &self,
        cert: CertificateDer<'static>,
        key: &CertAndKey,
    ) -> Arc<ClientConfig> {
        let signer = provider()
            .key_provider
            .load_private_key(key.private_key())
            .unwrap();
        let resolver = Forged(Arc::new(CertifiedKey::new(vec![cert], signer)));
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_cert_resolver(Arc::new(resolver));
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Forged(Arc<CertifiedKey>);

impl ResolvesClientCert for Forged {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connects and completes the client side of the handshake.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Connects expecting the server to refuse the handshake, and returns the TLS error the client
/// sees. In TLS 1.3 the client's side of the handshake finishes before the server has checked
/// its certificate, so the refusal (an alert) may only arrive on the first read.
pub async fn refused(addr: SocketAddr, config: Arc<ClientConfig>) -> rustls::Error {
    let io_err = guard("refused handshake", async {
        match connect(addr, config).await {
            Err(err) => err,
            Ok(mut stream) => match stream.read_u8().await {
                Err(err) => err,
                Ok(b) => panic!("server sent application data ({b}) instead of refusing"),
            },
        }
    })
    .await;
    io_err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| panic!("not a TLS error: {io_err:?}"))
}

/// HTTP clients over a TLS stream from [`connect`].
pub mod http {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper::client::conn::{http1, http2};
    use hyper::Request;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    pub type Body = Empty<Bytes>;

    pub async fn http1(stream: TlsStream<TcpStream>) -> http1::SendRequest<Body> {
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    pub async fn http2(stream: TlsStream<TcpStream>) -> http2::SendRequest<Body> {
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    pub fn get(path: &str) -> Request<Body> {
        Request::get(format!("https://localhost{path}"))
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap()
    }

    pub async fn text(res: hyper::Response<hyper::body::Incoming>) -> String {
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// GET over HTTP/1.1, waiting until the connection is ready for another request.
    pub async fn get1(sender: &mut http1::SendRequest<Body>, path: &str) -> String {
        sender.ready().await.unwrap();
        text(sender.send_request(get(path)).await.unwrap()).await
    }

    /// GET over HTTP/2 (a new stream on the shared connection).
    pub async fn get2(mut sender: http2::SendRequest<Body>, path: &str) -> String {
        sender.ready().await.unwrap();
        text(sender.send_request(get(path)).await.unwrap()).await
    }
}

/// What the test servers answer: `"<remote addr> <thumbprint or none>"`.
pub fn describe(peer: &certbound_tls::PeerCertificate) -> String {
    let thumbprint = peer
        .thumbprint()
        .map_or_else(|| "none".to_owned(), ToString::to_string);
    format!("{} {thumbprint}", peer.remote_addr())
}

/// An app that answers `GET /whoami` with [`describe`] of the `ConnectInfo<PeerCertificate>`
/// and `GET /extension` with [`describe`] of the plain `PeerCertificate` extension.
pub fn whoami_app() -> axum::Router {
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Extension;
    use certbound_tls::PeerCertificate;
    axum::Router::new()
        .route(
            "/whoami",
            get(|ConnectInfo(peer): ConnectInfo<PeerCertificate>| async move { describe(&peer) }),
        )
        .route(
            "/extension",
            get(|Extension(peer): Extension<PeerCertificate>| async move { describe(&peer) }),
        )
}

/// A TCP connection to `addr` from the loopback address `from` (such as 127.0.0.2), so tests
/// can play several client addresses.
pub async fn tcp_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads from a raw TCP connection until the server closes it (EOF or reset).
pub async fn closed_by_server(mut tcp: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
