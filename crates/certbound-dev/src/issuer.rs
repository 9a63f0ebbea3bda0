//! A local HTTPS authorization-server stub: discovery documents and a JWKS, with controllable
//! failures, for tests and the example API.
//!
//! [`TestIssuer`] listens on `127.0.0.1` (an ephemeral port) behind a server certificate from its
//! own [`DevCa`]; clients trust it through [`TestIssuer::ca_pem`]. It serves
//!
//! | path                                             | what                                  |
//! |--------------------------------------------------|---------------------------------------|
//! | `{path}/.well-known/openid-configuration`        | OpenID Connect Discovery metadata     |
//! | `/.well-known/oauth-authorization-server{path}`  | RFC 8414 metadata (same document)     |
//! | `{path}/jwks`                                    | the JWKS document                     |
//!
//! where `{path}` is the issuer's path (empty unless started with
//! [`TestIssuer::start_with_path`]). The metadata advertises
//! `tls_client_certificate_bound_access_tokens: true` (RFC 8705 §3.3) unless told otherwise.
//!
//! Everything a key-source test needs to provoke is a method: rotation ([`set_keys`]), caching
//! headers ([`set_cache_control`]), failures of the JWKS endpoint ([`set_failure`]), an outage on
//! the same port ([`stop`] / [`restart`]), a lying `issuer` value ([`set_issuer_override`]), and
//! counters of what was fetched.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use certbound_core::Algorithm;
//! use certbound_dev::issuer::{FailureMode, TestIssuer};
//! use certbound_dev::SigningKey;
//!
//! let key = SigningKey::generate("key-1", Algorithm::ES256)?;
//! let issuer = TestIssuer::start(&[&key]).await?;
//! assert!(issuer.issuer_url().starts_with("https://127.0.0.1:"));
//! assert_eq!(issuer.jwks_uri(), format!("{}/jwks", issuer.issuer_url()));
//! assert!(issuer.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//!
//! // Rotate, misbehave, go away and come back on the same port.
//! let next = SigningKey::generate("key-2", Algorithm::ES256)?;
//! issuer.set_keys(&[&key, &next]);
//! issuer.set_failure(FailureMode::Status(503));
//! issuer.stop().await;
//! issuer.restart().await?;
//! assert_eq!(issuer.jwks_fetches(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! [`set_keys`]: TestIssuer::set_keys
//! [`set_cache_control`]: TestIssuer::set_cache_control
//! [`set_failure`]: TestIssuer::set_failure
//! [`stop`]: TestIssuer::stop
//! [`restart`]: TestIssuer::restart
//! [`set_issuer_override`]: TestIssuer::set_issuer_override

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::{jwks_document, DevCa, DevError, SigningKey};

/// Errors from starting a [`TestIssuer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// Generating the CA or the server certificate failed.
    #[error("test issuer PKI: {0}")]
    Pki(#[from] DevError),
    /// The TLS server configuration was refused.
    #[error("test issuer TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding the listening socket failed (on restart: the port was taken meanwhile).
    #[error("test issuer cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How the JWKS endpoint answers. Discovery endpoints are not affected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Serve the current key set.
    #[default]
    Normal,
    /// Answer with this HTTP status and a short text body.
    Status(u16),
    /// Answer `200 OK`, `Content-Type: application/json`, with a body that is not JSON.
    Garbage,
    /// Wait this long, then serve the key set normally.
    Slow(Duration),
    /// Answer `200 OK` with a body of this many bytes, streamed in chunks *without*
    /// `Content-Length` (it starts like a JWKS and never becomes a valid one).
    Oversized(usize),
}

#[derive(Debug)]
struct IssuerState {
    issuer: String,
    jwks_uri: String,
    jwks_body: Mutex<String>,
    cache_control: Mutex<Option<String>>,
    failure: Mutex<FailureMode>,
    issuer_override: Mutex<Option<String>>,
    advertise_bound_tokens: AtomicBool,
    serve_openid_configuration: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A local HTTPS issuer serving discovery metadata and a JWKS; see the [module docs](self).
///
/// Dropping it shuts the server down.
pub struct TestIssuer {
    state: Arc<IssuerState>,
    addr: SocketAddr,
    ca_pem: String,
    acceptor: TlsAcceptor,
    router: Router,
    server: Mutex<Option<Running>>,
}

/// The accept loop and the way to tell it to stop.
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    fn spawn(listener: TcpListener, acceptor: TlsAcceptor, router: Router) -> Self {
        let (shutdown, signal) = oneshot::channel();
        let task = tokio::spawn(serve(listener, acceptor, router, signal));
        Self { shutdown, task }
    }
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.state.issuer)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// Starts an issuer at `https://127.0.0.1:PORT` serving `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Result<Self, IssuerError> {
        Self::start_with_path("", keys).await
    }

    /// Starts an issuer whose identifier has a path, `https://127.0.0.1:PORT{path}` (e.g.
    /// `"/realms/demo"`), to exercise where the well-known segment goes (RFC 8414 §3.1).
    /// A trailing `/` on `path` is dropped.
    pub async fn start_with_path(path: &str, keys: &[&SigningKey]) -> Result<Self, IssuerError> {
        let path = path.trim_end_matches('/');
        let path = match path {
            "" => String::new(),
            p if p.starts_with('/') => p.to_owned(),
            p => format!("/{p}"),
        };
        let ca = DevCa::new("certbound test issuer CA")?;
        let server_cert = ca.server_cert(&["localhost", "127.0.0.1", "::1"])?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.cert_der.clone()],
                server_cert.private_key(),
            )?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| IssuerError::Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| IssuerError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
        let issuer = format!("https://{addr}{path}");
        let state = Arc::new(IssuerState {
            jwks_uri: format!("{issuer}/jwks"),
            issuer,
            jwks_body: Mutex::new(jwks_document(keys).to_string()),
            cache_control: Mutex::new(None),
            failure: Mutex::new(FailureMode::Normal),
            issuer_override: Mutex::new(None),
            advertise_bound_tokens: AtomicBool::new(true),
            serve_openid_configuration: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(openid_configuration),
            )
            .route(
                &format!("/.well-known/oauth-authorization-server{path}"),
                get(oauth_authorization_server),
            )
            .route(&format!("{path}/jwks"), get(jwks))
            .with_state(Arc::clone(&state));
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let server = Running::spawn(listener, acceptor.clone(), router.clone());
        tracing::debug!(issuer = %state.issuer, "test issuer started");
        Ok(Self {
            state,
            addr,
            ca_pem: ca.cert().cert_pem.clone(),
            acceptor,
            router,
            server: Mutex::new(Some(server)),
        })
    }

    /// The issuer identifier, `https://127.0.0.1:PORT[path]` (no trailing slash).
    pub fn issuer_url(&self) -> &str {
        &self.state.issuer
    }

    /// The JWKS URL, `{issuer}/jwks`.
    pub fn jwks_uri(&self) -> &str {
        &self.state.jwks_uri
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that issued the server certificate (the trust anchor clients need).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Replaces the served key set (rotation): the next JWKS fetch sees exactly `keys`.
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *lock(&self.state.jwks_body) = jwks_document(keys).to_string();
    }

    /// Serves `body` verbatim as the JWKS document (hostile or hand-written key sets).
    pub fn set_jwks_body(&self, body: impl Into<String>) {
        *lock(&self.state.jwks_body) = body.into();
    }

    /// The `Cache-Control` header of JWKS responses (`None`: no header).
    pub fn set_cache_control(&self, value: Option<String>) {
        *lock(&self.state.cache_control) = value;
    }

    /// How the JWKS endpoint answers from now on.
    pub fn set_failure(&self, mode: FailureMode) {
        *lock(&self.state.failure) = mode;
    }

    /// Advertises this `issuer` value in the metadata instead of the real one (`None`: the real one).
    pub fn set_issuer_override(&self, issuer: Option<String>) {
        *lock(&self.state.issuer_override) = issuer;
    }

    /// Whether the metadata says `tls_client_certificate_bound_access_tokens: true` (default) or
    /// leaves the member out.
    pub fn set_advertise_bound_tokens(&self, advertise: bool) {
        self.state
            .advertise_bound_tokens
            .store(advertise, Ordering::Relaxed);
    }

    /// Whether `/.well-known/openid-configuration` exists (default) or answers 404, so that
    /// clients have to fall back to RFC 8414 metadata.
    pub fn set_serve_openid_configuration(&self, serve: bool) {
        self.state
            .serve_openid_configuration
            .store(serve, Ordering::Relaxed);
    }

    /// How many JWKS requests arrived (whatever the failure mode answered).
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many requests arrived at either metadata endpoint (including 404s).
    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection (abruptly, as a crashed server would:
    /// requests in flight fail) and returns once they are all closed. Until
    /// [`restart`](Self::restart), connecting to the port is refused. Does nothing if stopped.
    pub async fn stop(&self) {
        let running = lock(&self.server).take();
        if let Some(Running { shutdown, task }) = running {
            let _ = shutdown.send(());
            let _ = task.await;
            tracing::debug!(issuer = %self.state.issuer, "test issuer stopped");
        }
    }

    /// Listens again on the same port, with the same state. Does nothing if running.
    pub async fn restart(&self) -> Result<(), IssuerError> {
        if lock(&self.server).is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| IssuerError::Bind {
                addr: self.addr,
                source,
            })?;
        let running = Running::spawn(listener, self.acceptor.clone(), self.router.clone());
        if let Some(previous) = lock(&self.server).replace(running) {
            previous.task.abort();
        }
        tracing::debug!(issuer = %self.state.issuer, "test issuer restarted");
        Ok(())
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.server).take() {
            running.task.abort();
        }
    }
}

/// Accepts TLS connections until `shutdown` fires (or the task is aborted), then closes the
/// listener and aborts every connection, waiting until they are gone.
async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                drop(listener);
                connections.shutdown().await;
                return;
            }
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "test issuer accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn metadata(state: &IssuerState) -> Response {
    let issuer = lock(&state.issuer_override)
        .clone()
        .unwrap_or_else(|| state.issuer.clone());
    let mut doc = json!({
        "issuer": issuer,
        "jwks_uri": state.jwks_uri,
        "token_endpoint": format!("{}/token", state.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "self_signed_tls_client_auth"],
    });
    if state.advertise_bound_tokens.load(Ordering::Relaxed) {
        doc["tls_client_certificate_bound_access_tokens"] = json!(true);
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

async fn openid_configuration(State(state): State<Arc<IssuerState>>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if !state.serve_openid_configuration.load(Ordering::Relaxed) {
        return StatusCode::NOT_FOUND.into_response();
    }
    metadata(&state)
}

async fn oauth_authorization_server(State(state): State<Arc<IssuerState>>) -> Response {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    metadata(&state)
}

async fn jwks(State(state): State<Arc<IssuerState>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let mode = lock(&state.failure).clone();
    match mode {
        FailureMode::Normal => {}
        FailureMode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "test issuer failure").into_response();
        }
        FailureMode::Garbage => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "<html>this is not a JWKS</html>",
            )
                .into_response();
        }
        FailureMode::Slow(delay) => tokio::time::sleep(delay).await,
        FailureMode::Oversized(total) => {
            const CHUNK: usize = 16 * 1024;
            let head = br#"{"keys":["#;
            let chunks = std::iter::once(head.to_vec()).chain(
                (head.len()..total)
                    .step_by(CHUNK)
                    .map(move |at| vec![b' '; CHUNK.min(total - at)]),
            );
            let body = axum::body::Body::from_stream(futures_util::stream::iter(
                chunks.map(Ok::<_, Infallible>),
            ));
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    }
    let body = lock(&state.jwks_body).clone();
    let cache_control = lock(&state.cache_control).clone();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(value) = cache_control.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}
