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
//! | `{path}/introspect` (POST)                       | RFC 7662 token introspection          |
//!
//! where `{path}` is the issuer's path (empty unless started with
//! [`TestIssuer::start_with_path`]). The metadata advertises
//! `tls_client_certificate_bound_access_tokens: true` (RFC 8705 §3.3) unless told otherwise.
//!
//! Opaque tokens: [`issue_opaque`](TestIssuer::issue_opaque) registers random reference tokens
//! with their claims (`cnf` included); the introspection endpoint answers for them (RFC 7662)
//! after authenticating the caller by the method registered for its client id
//! ([`register_introspection_client`](TestIssuer::register_introspection_client):
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt`, `tls_client_auth` — the
//! server asks every connection for an optional client certificate), counts the calls, answers
//! with RFC 9701 signed responses when given a key
//! ([`set_introspection_signer`](TestIssuer::set_introspection_signer)), and fails on demand
//! ([`set_introspection_failure`](TestIssuer::set_introspection_failure)).
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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use certbound_core::Thumbprint;
use serde_json::Value;

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
    introspection_endpoint: String,
    opaque: Mutex<HashMap<String, Value>>,
    clients: Mutex<HashMap<String, ClientAuthMethod>>,
    introspection_failure: Mutex<FailureMode>,
    introspection_signer: Mutex<Option<SigningKey>>,
    introspection_calls: AtomicUsize,
    introspection_refusals: AtomicUsize,
}

/// How a client must authenticate at the test issuer's introspection endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// `client_secret_basic` with this secret.
    SecretBasic(String),
    /// `client_secret_post` with this secret.
    SecretPost(String),
    /// `private_key_jwt`: assertions signed by this key (its public half verifies them).
    PrivateKeyJwt(certbound_core::VerificationKey),
    /// `tls_client_auth`: the TLS client certificate with this thumbprint.
    TlsClientAuth(Thumbprint),
}

impl std::fmt::Debug for ClientAuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuthMethod::SecretBasic(_) => "client_secret_basic",
            ClientAuthMethod::SecretPost(_) => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt(_) => "private_key_jwt",
            ClientAuthMethod::TlsClientAuth(_) => "tls_client_auth",
        })
    }
}

/// The thumbprint of the client certificate of the connection a request arrived on.
#[derive(Clone, Copy, Debug)]
struct PeerThumbprint(Option<Thumbprint>);

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
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(AnyClientCertificate(provider)))
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
            issuer: issuer.clone(),
            jwks_body: Mutex::new(jwks_document(keys).to_string()),
            cache_control: Mutex::new(None),
            failure: Mutex::new(FailureMode::Normal),
            issuer_override: Mutex::new(None),
            advertise_bound_tokens: AtomicBool::new(true),
            serve_openid_configuration: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            introspection_endpoint: format!("{issuer}/introspect"),
            opaque: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            introspection_failure: Mutex::new(FailureMode::Normal),
            introspection_signer: Mutex::new(None),
            introspection_calls: AtomicUsize::new(0),
            introspection_refusals: AtomicUsize::new(0),
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
            .route(&format!("{path}/introspect"), post(introspect))
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

    /// The introspection endpoint, `{issuer}/introspect`.
    pub fn introspection_endpoint(&self) -> &str {
        &self.state.introspection_endpoint
    }

    /// Issues an opaque access token: 32 random bytes, base64url, registered with `claims`
    /// (what the introspection endpoint answers for it, plus `active: true`).
    pub fn issue_opaque(&self, claims: Value) -> String {
        let mut bytes = [0u8; 32];
        // The dev issuer's tokens only need to be distinct; a failing RNG would be loud below.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let n = lock(&self.state.opaque).len() as u64;
            bytes[..8].copy_from_slice(&n.to_be_bytes());
        }
        let token =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        lock(&self.state.opaque).insert(token.clone(), claims);
        token
    }

    /// Registers any `token` (a JWT too, for `introspect_all`) with `claims`, as
    /// [`issue_opaque`](Self::issue_opaque) does for a random one.
    pub fn register_token(&self, token: &str, claims: Value) {
        lock(&self.state.opaque).insert(token.to_owned(), claims);
    }

    /// Revokes a token: the endpoint answers `{"active": false}` for it from now on.
    pub fn revoke(&self, token: &str) {
        lock(&self.state.opaque).remove(token);
    }

    /// Lets `client_id` call the introspection endpoint, authenticated by `method`.
    pub fn register_introspection_client(&self, client_id: &str, method: ClientAuthMethod) {
        lock(&self.state.clients).insert(client_id.to_owned(), method);
    }

    /// How the introspection endpoint answers from now on (`Status(401)`: refuses every
    /// client's credentials; `Slow`: hangs before answering).
    pub fn set_introspection_failure(&self, mode: FailureMode) {
        *lock(&self.state.introspection_failure) = mode;
    }

    /// Answer with RFC 9701 signed responses (`application/token-introspection+jwt`) signed by
    /// `key` — one of the issuer's keys, or a forger's (`None`: plain JSON) — to requests whose
    /// `Accept` asks for them (RFC 9701 §4); others get plain JSON.
    pub fn set_introspection_signer(&self, key: Option<SigningKey>) {
        *lock(&self.state.introspection_signer) = key;
    }

    /// How many requests arrived at the introspection endpoint (whatever it answered).
    pub fn introspection_calls(&self) -> usize {
        self.state.introspection_calls.load(Ordering::SeqCst)
    }

    /// How many of them were refused for their client authentication.
    pub fn introspection_refusals(&self) -> usize {
        self.state.introspection_refusals.load(Ordering::SeqCst)
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
                let router = router.clone();
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| Thumbprint::of_der(leaf));
                    let service =
                        TowerToHyperService::new(router.layer(axum::Extension(PeerThumbprint(peer))));
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
        "introspection_endpoint": state.introspection_endpoint,
        "introspection_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
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

/// Requests a client certificate from every connection and accepts any (or none): the
/// introspection endpoint decides per client (`tls_client_auth` compares the thumbprint).
/// Possession of the key is still checked by the TLS handshake signature.
#[derive(Debug)]
struct AnyClientCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` and `%XX`); `None` for bad escapes.
fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, |b| *b == b'=');
        let name = percent_decode(it.next()?)?;
        let value = percent_decode(it.next().unwrap_or_default())?;
        // A repeated parameter is a malformed request (RFC 6749 §3.1).
        if out.insert(name, value).is_some() {
            return None;
        }
    }
    Some(out)
}

fn percent_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Which client authenticated this request, by its registered method; `None`: refused.
fn authenticate_client(
    state: &IssuerState,
    headers: &axum::http::HeaderMap,
    form: &HashMap<String, String>,
    peer: Option<Thumbprint>,
) -> Option<String> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim()).ok()
        })
        .and_then(|pair| String::from_utf8(pair).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((
                percent_decode(id.as_bytes())?,
                percent_decode(secret.as_bytes())?,
            ))
        });
    let client_id = match (&basic, form.get("client_id")) {
        (Some((id, _)), _) => id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => return None,
    };
    let method = lock(&state.clients).get(&client_id).cloned()?;
    let ok = match method {
        ClientAuthMethod::SecretBasic(secret) => {
            basic.as_ref().is_some_and(|(_, given)| *given == secret)
        }
        ClientAuthMethod::SecretPost(secret) => {
            basic.is_none() && form.get("client_secret") == Some(&secret)
        }
        ClientAuthMethod::TlsClientAuth(expected) => basic.is_none() && peer == Some(expected),
        ClientAuthMethod::PrivateKeyJwt(key) => {
            basic.is_none()
                && form.get("client_assertion_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && form
                    .get("client_assertion")
                    .is_some_and(|jwt| assertion_holds(state, jwt, &client_id, &key))
        }
    };
    ok.then_some(client_id)
}

/// RFC 7523 §3: signed by the client's key, `iss` = `sub` = the client, `aud` the issuer or
/// this endpoint, not expired.
fn assertion_holds(
    state: &IssuerState,
    jwt: &str,
    client_id: &str,
    key: &certbound_core::VerificationKey,
) -> bool {
    let Ok(token) = certbound_core::UnverifiedToken::parse(jwt) else {
        return false;
    };
    let Some(alg) = certbound_core::parse_algorithm(token.header().alg()) else {
        return false;
    };
    if key
        .verify(alg, token.signing_input(), token.signature())
        .is_err()
    {
        return false;
    }
    let claims = token.unverified_claims();
    let is = |name: &str, want: &str| claims.get(name).and_then(Value::as_str) == Some(want);
    let aud_ok = [state.issuer.as_str(), state.introspection_endpoint.as_str()]
        .iter()
        .any(|aud| match claims.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        });
    let fresh = claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| exp > crate::unix_now());
    is("iss", client_id) && is("sub", client_id) && aud_ok && fresh
}

async fn introspect(
    State(state): State<Arc<IssuerState>>,
    axum::Extension(PeerThumbprint(peer)): axum::Extension<PeerThumbprint>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.introspection_calls.fetch_add(1, Ordering::SeqCst);
    let mode = lock(&state.introspection_failure).clone();
    match mode {
        FailureMode::Normal => {}
        FailureMode::Oversized(total) => {
            const CHUNK: usize = 16 * 1024;
            let chunks = (0..total)
                .step_by(CHUNK)
                .map(move |at| vec![b' '; CHUNK.min(total - at)]);
            let body = axum::body::Body::from_stream(futures_util::stream::iter(
                chunks.map(Ok::<_, Infallible>),
            ));
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        FailureMode::Status(400) => {
            // What an issuer answers for credentials it does not know, when it uses 400.
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"invalid_client"}"#,
            )
                .into_response();
        }
        FailureMode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "test issuer failure").into_response();
        }
        FailureMode::Garbage => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "<html>this is not an introspection response</html>",
            )
                .into_response()
        }
        FailureMode::Slow(delay) => tokio::time::sleep(delay).await,
    }
    let Some(form) = parse_form(&body) else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#).into_response();
    };
    let Some(client_id) = authenticate_client(&state, &headers, &form, peer) else {
        state.introspection_refusals.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::WWW_AUTHENTICATE, "Basic realm=\"introspection\""),
            ],
            r#"{"error":"invalid_client"}"#,
        )
            .into_response();
    };
    let Some(token) = form.get("token") else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#).into_response();
    };
    let claims = lock(&state.opaque).get(token).cloned();
    let response = match claims {
        Some(Value::Object(mut claims)) => {
            claims.insert("active".into(), Value::Bool(true));
            Value::Object(claims)
        }
        _ => json!({"active": false}),
    };
    // RFC 9701 §4: a signed response when the request's Accept asks for one.
    let wants_jwt = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/token-introspection+jwt"));
    let signer = lock(&state.introspection_signer)
        .clone()
        .filter(|_| wants_jwt);
    match signer {
        None => (
            [(header::CONTENT_TYPE, "application/json")],
            response.to_string(),
        )
            .into_response(),
        Some(key) => {
            let header = json!({"alg": format!("{:?}", key.alg()), "kid": key.kid(),
                                "typ": "token-introspection+jwt"});
            let claims = json!({"iss": state.issuer, "aud": client_id, "iat": crate::unix_now(),
                                "token_introspection": response});
            match key.sign_with_header(&header, &claims) {
                Ok(jwt) => (
                    [(header::CONTENT_TYPE, "application/token-introspection+jwt")],
                    jwt,
                )
                    .into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    }
}
