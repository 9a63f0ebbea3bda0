//! Middleware that lets a request through only with an access token bound to the client
//! certificate of the connection it arrived on (RFC 8705).
//!
//! `CertBoundLayer` → [`CertBound<S>`] → [`ResponseFuture`], in the style of tower-http.
//! Build the layer with [`CertBound::builder`]. Requests that pass carry a [`VerifiedToken`]
//! extension; requests that fail get an RFC 6750 answer and never reach the inner service.
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use certbound::tls::PeerCertificate;
//! use certbound::{CertBound, ClientCertificate, StaticJwks, VerifiedToken};
//! use certbound_dev::{bound_claims, jwks_document, SigningKey};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer_key = SigningKey::generate("k1", certbound::Algorithm::ES256)?;
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(StaticJwks::from_jwks(jwks_document(&[&issuer_key]).to_string())?)
//!     .build()
//!     .await?;
//! let app = Router::new()
//!     .route("/accounts", get(|token: VerifiedToken| async move { token.sub().unwrap_or("").to_owned() }))
//!     .route_layer(auth); // unknown paths stay 404
//!
//! // The client's certificate, as certbound::tls::serve attaches it to every request.
//! let cert = ClientCertificate::from_der(b"the client's certificate DER".to_vec());
//! let token = issuer_key.sign(&bound_claims("https://auth.example.com/", "https://api.example.com", cert.thumbprint()))?;
//! let request = |cert: Option<ClientCertificate>| {
//!     let mut req = Request::get("/accounts")
//!         .header("authorization", format!("Bearer {token}"))
//!         .body(Body::empty())
//!         .unwrap();
//!     req.extensions_mut().insert(PeerCertificate::new(([127, 0, 0, 1], 50_000).into(), cert));
//!     req
//! };
//! let ok = app.clone().oneshot(request(Some(cert.clone()))).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//! // The same token without the certificate it is bound to: 401 invalid_token.
//! let stolen = app.oneshot(request(None)).await?;
//! assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
//! assert!(stolen.headers()["www-authenticate"].to_str()?.contains(r#"error="invalid_token""#));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use certbound_core::{Rejection, Thumbprint};
use certbound_tls::PeerCertificate;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticate::{Authenticator, Decision, Granted, Refused, RequestView};
use crate::{VerifiedToken, WiringError};

/// The layer. Cheap to clone; every clone shares one configuration and key cache.
#[derive(Debug, Clone)]
pub struct CertBoundLayer {
    pub(crate) auth: Arc<Authenticator>,
}

impl CertBoundLayer {
    /// Decides for a token outside any HTTP request — the same checks, in the same order, with
    /// the same [`Rejection`] codes as the middleware (key refresh included). `presented` is the
    /// thumbprint of the client certificate the token would arrive with.
    ///
    /// ```no_run
    /// # async fn doc(layer: certbound::CertBoundLayer, token: &str, cert_der: &[u8]) {
    /// let presented = certbound::Thumbprint::of_der(cert_der);
    /// match layer.verify(token, Some(presented)).await {
    ///     Ok(token) => println!("accepted: sub={:?}", token.sub()),
    ///     Err(rejection) => println!("refused: {} ({})", rejection.code(), rejection),
    /// }
    /// # }
    /// ```
    pub async fn verify(
        &self,
        token: &str,
        presented: Option<Thumbprint>,
    ) -> Result<VerifiedToken, Rejection> {
        self.decide(certbound_core::Credentials::bearer(token), presented)
            .await
    }

    /// [`verify`](Self::verify) for a DPoP request: `token` sent as `Authorization: DPoP`, with
    /// the DPoP `proof` for `method` and the absolute `url` the request goes to (the `htm` and
    /// `htu` the proof must name). The same checks and codes as the middleware — the proof
    /// (RFC 9449 §4.3), `cnf.jkt`, the nonce when nonces are on, and the replay store, which
    /// remembers the proof: a second call with it is `dpop_proof_replayed`. Needs
    /// [`dpop`](crate::CertBoundBuilder::dpop); without it a DPoP request has no usable
    /// credentials (`missing_token`).
    ///
    /// ```no_run
    /// # async fn doc(layer: certbound::CertBoundLayer, token: &str, proof: &str) {
    /// let url = "https://api.example.com/accounts";
    /// match layer.verify_dpop(token, proof, "GET", url, None).await {
    ///     Ok(token) => println!("accepted: sub={:?}", token.sub()),
    ///     Err(rejection) => println!("refused: {} ({})", rejection.code(), rejection),
    /// }
    /// # }
    /// ```
    pub async fn verify_dpop(
        &self,
        token: &str,
        proof: &str,
        method: &str,
        url: &str,
        presented: Option<Thumbprint>,
    ) -> Result<VerifiedToken, Rejection> {
        let credentials = certbound_core::Credentials::dpop(token, proof).for_request(method, url);
        self.decide(credentials, presented).await
    }

    async fn decide(
        &self,
        credentials: certbound_core::Credentials<'_>,
        presented: Option<Thumbprint>,
    ) -> Result<VerifiedToken, Rejection> {
        match self.auth.decide_credentials(credentials, presented) {
            Decision::Accept(granted) => Ok(granted.token),
            Decision::Reject(refused) => Err(refused.rejection),
            Decision::Pending(pending) => pending
                .await
                .map(|granted| granted.token)
                .map_err(|refused| refused.rejection),
        }
    }

    /// The response this layer gives for `rejection`: its status, the `WWW-Authenticate`
    /// challenge with this layer's realm (and `resource_metadata` when advertised),
    /// `Retry-After` for `503`. See [`RejectionResponse`](crate::response::RejectionResponse).
    pub fn rejection_response(&self, rejection: Rejection) -> crate::response::RejectionResponse {
        crate::response::RejectionResponse::new(rejection, Arc::clone(&self.auth))
    }

    /// Requires `scope` on the routes this wraps (use with `route_layer`, inside this layer):
    /// 403 `insufficient_scope` with `scope="…"` otherwise.
    pub fn require_scope(&self, scope: impl Into<String>) -> crate::scope::RequireScopeLayer {
        crate::scope::RequireScopeLayer::new(vec![scope.into()], Arc::clone(&self.auth))
    }

    /// Requires every one of `scopes`.
    pub fn require_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        scopes: I,
    ) -> crate::scope::RequireScopeLayer {
        crate::scope::RequireScopeLayer::new(
            scopes.into_iter().map(Into::into).collect(),
            Arc::clone(&self.auth),
        )
    }

    /// This resource's RFC 9728 metadata (serve it with
    /// [`ResourceMetadata::router`](crate::metadata::ResourceMetadata::router)).
    pub fn resource_metadata(&self) -> &crate::metadata::ResourceMetadata {
        &self.auth.metadata
    }

    /// The introspection cache's counters (`None` without introspection).
    pub fn introspection_stats(&self) -> Option<crate::introspection::IntrospectionStats> {
        self.auth
            .introspection
            .as_ref()
            .map(crate::introspection::Introspection::stats)
    }

    /// How full the verified-token cache is (`None` when it is switched off).
    pub fn token_cache_stats(&self) -> Option<crate::cache::TokenCacheStats> {
        self.auth
            .cache
            .as_ref()
            .map(crate::cache::TokenCache::stats)
    }
}

impl<S> Layer<S> for CertBoundLayer {
    type Service = CertBound<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CertBound {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// The middleware service; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct CertBound<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl CertBound<()> {
    /// Starts configuring the layer.
    pub fn builder() -> crate::CertBoundBuilder {
        crate::CertBoundBuilder::default()
    }
}

impl<S> CertBound<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// What the transport says about the connection a request arrived on.
pub(crate) enum Transport {
    /// The [`PeerCertificate`] extension (hyper-util loops, `certbound::tls::serve`), axum's
    /// `ConnectInfo<PeerCertificate>`, or tonic's `TlsConnectInfo`: the peer (when known) and
    /// its certificate's thumbprint, if it presented one.
    Tls {
        peer: Option<std::net::IpAddr>,
        thumbprint: Option<Thumbprint>,
    },
    /// axum's `ConnectInfo<SocketAddr>` or tonic's `TcpConnectInfo` (plain HTTP behind a
    /// proxy): the peer address only.
    Address(std::net::IpAddr),
    /// Nothing: the server was not wired to tell.
    Unknown,
}

pub(crate) fn connection(extensions: &http::Extensions) -> Transport {
    // A plain (non-TLS) PeerCertificate says only who the peer is.
    let from_peer = |peer: &PeerCertificate| match peer.is_tls() {
        true => Transport::Tls {
            peer: Some(peer.remote_addr().ip()),
            thumbprint: peer.thumbprint().copied(),
        },
        false => Transport::Address(peer.remote_addr().ip()),
    };
    if let Some(peer) = extensions.get::<PeerCertificate>() {
        return from_peer(peer);
    }
    #[cfg(feature = "axum")]
    {
        use axum::extract::ConnectInfo;
        if let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<PeerCertificate>>() {
            return from_peer(peer);
        }
        if let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
            return Transport::Address(addr.ip());
        }
    }
    #[cfg(feature = "tonic")]
    {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            // tonic builds this once per connection, inside its own `Connected` impl for the
            // TLS stream, and offers no per-connection hook to a layer (the layered service is
            // cloned per connection and per request before the connection info exists), so
            // the leaf is hashed here, once per request: one SHA-256 over the leaf's DER.
            return Transport::Tls {
                peer: tls.get_ref().remote_addr().map(|addr| addr.ip()),
                thumbprint: tls
                    .peer_certs()
                    .and_then(|chain| chain.first().map(|leaf| Thumbprint::of_der(leaf))),
            };
        }
        if let Some(addr) = extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
        {
            return Transport::Address(addr.ip());
        }
    }
    Transport::Unknown
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CertBound<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let span = tracing::debug_span!(
            "certbound",
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
            issuer = tracing::field::Empty,
            kid = tracing::field::Empty,
            client_cert = tracing::field::Empty,
        );
        let forwarding = self.auth.forwarded.is_some();
        let transport = connection(req.extensions());
        let tls = matches!(transport, Transport::Tls { .. });
        let (peer, tls_thumbprint) = match (transport, forwarding) {
            (Transport::Tls { peer, thumbprint }, _) => (peer, thumbprint),
            (Transport::Address(peer), true) => (Some(peer), None),
            (Transport::Address(_) | Transport::Unknown, false) => {
                return ResponseFuture::wiring(span, WiringError::NoTransport)
            }
            (Transport::Unknown, true) => {
                return ResponseFuture::wiring(span, WiringError::NoPeerAddress)
            }
        };
        let presented = match self
            .auth
            .client_certificate(req.headers(), peer, tls_thumbprint)
        {
            Ok(presented) => presented,
            Err(rejection) => {
                record_rejection(&span, &rejection, None);
                let response = self.auth.respond_with(&rejection, None, &[]);
                return ResponseFuture {
                    span,
                    state: State::Rejected {
                        response: Some(response),
                    },
                };
            }
        };
        let trusted_proxy = self
            .auth
            .forwarded
            .as_ref()
            .is_some_and(|f| f.is_trusted(peer));
        let view = RequestView {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            tls,
            trusted_proxy,
        };
        match self.auth.decide(&view, presented) {
            Decision::Accept(granted) => {
                record_acceptance(&span, &granted.token);
                req.extensions_mut().insert(granted.token);
                let future = span.in_scope(|| self.inner.call(req));
                ResponseFuture {
                    span,
                    state: State::Inner {
                        future,
                        dpop_nonce: granted.dpop_nonce,
                    },
                }
            }
            Decision::Reject(refused) => {
                record_rejection(&span, &refused.rejection, presented.as_ref());
                let response = self
                    .auth
                    .respond_with(&refused.rejection, refused.scheme, &[]);
                ResponseFuture {
                    span,
                    state: State::Rejected {
                        response: Some(response),
                    },
                }
            }
            Decision::Pending(pending) => {
                // Take the service that was driven to readiness; leave a clone in its place.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    span,
                    state: State::Authenticating {
                        pending,
                        service: Some(service),
                        request: Some(req),
                        auth: Arc::clone(&self.auth),
                        presented,
                    },
                }
            }
        }
    }
}

/// Metric names (via the `metrics` facade; install any recorder/exporter to collect them).
pub mod metric_names {
    /// Counter: requests accepted by the layer.
    pub const ACCEPTED: &str = "certbound_requests_accepted_total";
    /// Counter, label `reason` (a [`Rejection::code`](certbound_core::Rejection::code)): requests refused.
    pub const REJECTED: &str = "certbound_requests_rejected_total";
    /// Counter: DPoP replay-store failures (each answered 503).
    pub const REPLAY_STORE_ERRORS: &str = "certbound_replay_store_errors_total";
    /// Counter: token signatures verified (a verified-token cache hit verifies none).
    pub const SIGNATURE_VERIFICATIONS: &str = "certbound_signature_verifications_total";
    /// Counter: calls to the token introspection endpoint (a cache hit makes none).
    pub const INTROSPECTIONS: &str = "certbound_introspections_total";
}

fn record_acceptance(span: &tracing::Span, token: &VerifiedToken) {
    metrics::counter!(metric_names::ACCEPTED).increment(1);
    if !span.is_disabled() {
        span.record("outcome", "accepted");
        span.record("issuer", token.issuer());
        span.record("kid", token.kid().unwrap_or("-"));
        if let Some(tp) = token.presented_thumbprint() {
            span.record("client_cert", tp.short().as_str());
        }
        tracing::debug!(parent: span, "certbound accepted request");
    }
}

fn record_rejection(span: &tracing::Span, rejection: &Rejection, presented: Option<&Thumbprint>) {
    metrics::counter!(metric_names::REJECTED, "reason" => rejection.code()).increment(1);
    if !span.is_disabled() {
        span.record("outcome", "rejected");
        span.record("reason", rejection.code());
        span.record(
            "client_cert",
            presented
                .map(Thumbprint::short)
                .as_deref()
                .unwrap_or("none"),
        );
        tracing::debug!(parent: span, status = rejection.status().as_u16(), "certbound rejected request");
    } else {
        // Rejections are worth a line at INFO even when the per-request span is off (it is a
        // DEBUG span): the reason code and a thumbprint prefix, never the token.
        tracing::info!(
            target: "certbound::rejections",
            reason = rejection.code(),
            status = rejection.status().as_u16(),
            client_cert = presented.map(Thumbprint::short).as_deref().unwrap_or("none"),
            "certbound rejected request"
        );
    }
}

pin_project! {
    /// Response future of [`CertBound`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        span: tracing::Span,
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner { #[pin] future: S::Future, dpop_nonce: Option<http::HeaderValue> },
        Rejected { response: Option<S::Response> },
        Authenticating {
            pending: BoxFuture<'static, Result<Granted, Refused>>,
            service: Option<S>,
            request: Option<Request<ReqBody>>,
            auth: Arc<Authenticator>,
            presented: Option<Thumbprint>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    fn wiring(span: tracing::Span, error: WiringError) -> Self {
        if !span.is_disabled() {
            span.record("outcome", "wiring_error");
        }
        ResponseFuture {
            span,
            state: State::Rejected {
                response: Some(error.response()),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, dpop_nonce } => {
                    let mut result = ready!(future.poll(cx));
                    if let (Ok(response), Some(nonce)) = (&mut result, dpop_nonce.take()) {
                        response.headers_mut().insert("dpop-nonce", nonce);
                    }
                    return Poll::Ready(result);
                }
                StateProj::Rejected { response } => {
                    // Polled again after completion: a 500, never an empty 200 and never a panic.
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(|| WiringError::PolledAfterCompletion.response())));
                }
                StateProj::Authenticating {
                    pending,
                    service,
                    request,
                    auth,
                    presented,
                } => {
                    let outcome = ready!(pending.as_mut().poll(cx));
                    let (Some(mut service), Some(mut request)) = (service.take(), request.take())
                    else {
                        return Poll::Ready(Ok(WiringError::PolledAfterCompletion.response()));
                    };
                    match outcome {
                        Ok(granted) => {
                            record_acceptance(this.span, &granted.token);
                            request.extensions_mut().insert(granted.token);
                            let future = service.call(request);
                            this.state.set(State::Inner {
                                future,
                                dpop_nonce: granted.dpop_nonce,
                            });
                        }
                        Err(refused) => {
                            let rejection = refused.rejection;
                            record_rejection(this.span, &rejection, presented.as_ref());
                            let response = auth.respond_with(&rejection, refused.scheme, &[]);
                            this.state.set(State::Rejected {
                                response: Some(response),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// tower-http style: the layer around a `service_fn`, one request per `oneshot`.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use certbound_core::{Algorithm, ClientCertificate, KeySet, VerificationKey};
    use certbound_dev::{bound_claims, jwks_document, SigningKey};
    use certbound_jwks::{KeySource, StaticJwks};
    use futures_util::FutureExt as _;
    use http::{header, Request, Response, StatusCode};
    use tower::{service_fn, ServiceBuilder, ServiceExt as _};

    use super::*;
    use crate::CertBound;

    const ISS: &str = "https://issuer.example/";
    const AUD: &str = "https://api.example";

    fn peer(cert: Option<&[u8]>) -> PeerCertificate {
        PeerCertificate::new(
            ([127, 0, 0, 1], 40_000).into(),
            cert.map(|der| ClientCertificate::from_der(der.to_vec())),
        )
    }

    /// The inner service: 200 with the token's subject, or it proves the layer let a request
    /// through that it should not have.
    async fn handler(req: Request<()>) -> Result<Response<String>, Infallible> {
        let token = req
            .extensions()
            .get::<crate::VerifiedToken>()
            .expect("the layer inserted it");
        Ok(Response::new(token.sub().unwrap_or("-").to_owned()))
    }

    async fn call(
        layer: &CertBoundLayer,
        token: Option<&str>,
        cert: Option<&[u8]>,
    ) -> Response<String> {
        let mut req = Request::builder().uri("/accounts");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut req = req.body(()).unwrap();
        req.extensions_mut().insert(peer(cert));
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(service_fn(handler))
            .oneshot(req)
            .await
            .unwrap()
    }

    fn challenge(res: &Response<String>) -> &str {
        res.headers()
            .get(header::WWW_AUTHENTICATE)
            .map_or("", |v| v.to_str().unwrap())
    }

    async fn layer_with(keys: impl KeySource) -> CertBoundLayer {
        CertBound::builder()
            .issuer(ISS)
            .audience(AUD)
            .realm("accounts")
            .key_source(keys)
            .build()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn accepts_a_bound_token_and_refuses_each_class() {
        let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let layer =
            layer_with(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap()).await;
        let cert = b"client certificate DER".as_slice();
        let token = key
            .sign(&bound_claims(ISS, AUD, &Thumbprint::of_der(cert)))
            .unwrap();

        let ok = call(&layer, Some(&token), Some(cert)).await;
        assert_eq!(
            (ok.status(), ok.body().as_str()),
            (StatusCode::OK, "user-123")
        );

        // No token: a bare challenge with the configured realm.
        let res = call(&layer, None, Some(cert)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge(&res), r#"Bearer realm="accounts""#);
        // Malformed Authorization: 400 invalid_request.
        let res = call(&layer, Some("not a token68!"), Some(cert)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(challenge(&res).contains(r#"error="invalid_request""#));
        // Another certificate: 401 invalid_token, and the inner service never ran.
        let res = call(&layer, Some(&token), Some(b"another certificate")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(
            challenge(&res).contains(r#"realm="accounts", error="invalid_token""#),
            "{}",
            challenge(&res)
        );
        assert_eq!(res.body(), "");
        // Keys unavailable: 503 + Retry-After, never acceptance.
        let empty = layer_with(Unavailable).await;
        let res = call(&empty, Some(&token), Some(cert)).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn a_cache_hit_skips_the_signature_but_not_the_binding() {
        let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let layer =
            layer_with(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap()).await;
        let cert = b"client certificate DER".as_slice();
        let token = key
            .sign(&bound_claims(ISS, AUD, &Thumbprint::of_der(cert)))
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                call(&layer, Some(&token), Some(cert)).await.status(),
                StatusCode::OK
            );
        }
        let res = call(&layer, Some(&token), Some(b"a thief's certificate")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let stats = layer.token_cache_stats().unwrap();
        // One verification; two hits accepted and one refused for the wrong certificate.
        assert_eq!((stats.misses, stats.hits, stats.entries), (1, 3, 1));
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_the_keys_once() {
        let old = SigningKey::generate("old", Algorithm::ES256).unwrap();
        let new = SigningKey::generate("new", Algorithm::ES256).unwrap();
        let source = Arc::new(Rotating {
            current: Mutex::new(keyset(&old)),
            next: keyset(&new),
            refreshes: AtomicUsize::new(0),
        });
        let layer = layer_with(Arc::clone(&source)).await;
        let cert = b"client certificate DER".as_slice();
        let token = new
            .sign(&bound_claims(ISS, AUD, &Thumbprint::of_der(cert)))
            .unwrap();
        assert_eq!(
            call(&layer, Some(&token), Some(cert)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&layer, Some(&token), Some(cert)).await.status(),
            StatusCode::OK
        );
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_transport_information_is_a_wiring_error_not_the_clients() {
        let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let layer =
            layer_with(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap()).await;
        let req = Request::builder()
            .uri("/accounts")
            .header(header::AUTHORIZATION, "Bearer abc")
            .body(())
            .unwrap(); // no PeerCertificate: served without certbound::tls::serve
        let res = ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(handler))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn the_rejection_response_uses_the_layers_realm() {
        let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let layer = layer_with(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap())
            .now_or_never()
            .expect("a static key source builds at once");
        let res: Response<String> = layer.rejection_response(Rejection::Expired).into_http();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(challenge(&res).starts_with(r#"Bearer realm="accounts", error="invalid_token""#));
    }

    /// A replay store that behaves like a remote one: the command goes out on the first poll,
    /// the answer comes on a later one.
    #[derive(Debug, Default)]
    struct RemoteLike {
        seen: Mutex<std::collections::HashSet<[u8; 32]>>,
        calls: AtomicUsize,
    }

    impl crate::replay::ReplayStore for RemoteLike {
        fn first_use(
            &self,
            key: [u8; 32],
            _ttl: std::time::Duration,
        ) -> BoxFuture<'_, Result<bool, crate::replay::ReplayStoreError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let first = self.seen.lock().unwrap().insert(key); // "sent"
                tokio::task::yield_now().await; // waiting for the answer
                Ok(first)
            })
        }
    }

    #[tokio::test]
    async fn a_remote_replay_store_is_asked_once_per_proof() {
        let issuer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let store = Arc::new(RemoteLike::default());
        let layer = CertBound::builder()
            .issuer(ISS)
            .audience(AUD)
            .key_source(StaticJwks::from_jwks(jwks_document(&[&issuer]).to_string()).unwrap())
            .dpop(crate::Dpop::default().replay_store(Arc::clone(&store)))
            .build()
            .await
            .unwrap();
        let client = certbound_dev::dpop::DpopKey::generate(Algorithm::ES256).unwrap();
        let token = issuer
            .sign(&certbound_dev::dpop::dpop_bound_claims(
                ISS,
                AUD,
                &client.jkt(),
            ))
            .unwrap();
        let proof = client
            .proof("GET", "https://api.example/accounts", Some(&token), None)
            .unwrap();
        let send = |proof: String| {
            let mut req = Request::builder()
                .uri("/accounts")
                .header(header::HOST, "api.example")
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("dpop", proof)
                .body(())
                .unwrap();
            req.extensions_mut().insert(peer(None));
            ServiceBuilder::new()
                .layer(layer.clone())
                .service(service_fn(handler))
                .oneshot(req)
        };
        let res = send(proof.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", challenge(&res));
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
        let res = send(proof).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(
            challenge(&res).contains(r#"error="invalid_dpop_proof""#),
            "{}",
            challenge(&res)
        );
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
    }

    fn keyset(key: &SigningKey) -> Arc<KeySet> {
        let doc = jwks_document(&[key]).to_string();
        Arc::new(KeySet::from_jwks(doc.as_bytes()).unwrap().keys)
    }

    /// A key source whose refresh installs the next key set (a JWKS rotation, without HTTP).
    #[derive(Debug)]
    struct Rotating {
        current: Mutex<Arc<KeySet>>,
        next: Arc<KeySet>,
        refreshes: AtomicUsize,
    }

    impl Rotating {
        fn get(
            &self,
            kid: Option<&str>,
            alg: Algorithm,
        ) -> Result<Arc<VerificationKey>, Rejection> {
            let keys = Arc::clone(&self.current.lock().unwrap());
            keys.get(kid, alg).map(Arc::clone).map_err(Rejection::from)
        }
    }

    impl KeySource for Rotating {
        fn lookup(
            &self,
            kid: Option<&str>,
            alg: Algorithm,
        ) -> Result<Arc<VerificationKey>, Rejection> {
            self.get(kid, alg)
        }
        fn refresh(
            &self,
            kid: Option<&str>,
            alg: Algorithm,
        ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            *self.current.lock().unwrap() = Arc::clone(&self.next);
            let answer = self.get(kid, alg);
            Box::pin(async move { answer })
        }
    }

    /// A key source that has no usable keys.
    #[derive(Debug)]
    struct Unavailable;

    impl KeySource for Unavailable {
        fn lookup(&self, _: Option<&str>, _: Algorithm) -> Result<Arc<VerificationKey>, Rejection> {
            Err(Rejection::KeysUnavailable {
                retry_after_secs: 7,
            })
        }
        fn refresh(
            &self,
            kid: Option<&str>,
            alg: Algorithm,
        ) -> BoxFuture<'_, Result<Arc<VerificationKey>, Rejection>> {
            let answer = self.lookup(kid, alg);
            Box::pin(async move { answer })
        }
    }
}
