//! Middleware that lets a request through only with an access token bound to the client
//! certificate of the connection it arrived on (RFC 8705).
//!
//! `CertBoundLayer` → [`CertBound<S>`] → [`ResponseFuture`], in the style of tower-http.
//! Build the layer with [`CertBound::builder`]. Requests that pass carry a [`VerifiedToken`]
//! extension; requests that fail get an RFC 6750 answer and never reach the inner service.
//!
//! ```
//! use certbound::{CertBound, StaticJwks, VerifiedToken};
//! use axum::{routing::get, Router};
//!
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! # let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
//! let auth = CertBound::builder()
//!     .issuer("https://auth.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(StaticJwks::from_jwks(jwks)?)
//!     .build()
//!     .await?;
//!
//! let app: Router = Router::new()
//!     .route("/accounts", get(|token: VerifiedToken| async move { token.sub().unwrap_or("").to_owned() }))
//!     .layer(auth);
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

use crate::authenticate::{Authenticator, Decision};
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
        let credentials = certbound_core::Credentials::bearer(token);
        match self.auth.decide_credentials(credentials, presented) {
            Decision::Accept(token) => Ok(token),
            Decision::Reject(rejection) => Err(rejection),
            Decision::Refresh(pending) => pending.await,
        }
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
    /// The [`PeerCertificate`] extension (hyper-util loops, `certbound::tls::serve`) or axum's
    /// `ConnectInfo<PeerCertificate>`: the peer and its certificate's thumbprint, if any.
    Tls {
        peer: std::net::IpAddr,
        thumbprint: Option<Thumbprint>,
    },
    /// axum's `ConnectInfo<SocketAddr>` (plain HTTP behind a proxy): the peer address only.
    Address(std::net::IpAddr),
    /// Nothing: the server was not wired to tell.
    Unknown,
}

pub(crate) fn connection(extensions: &http::Extensions) -> Transport {
    if let Some(peer) = extensions.get::<PeerCertificate>() {
        return Transport::Tls {
            peer: peer.remote_addr().ip(),
            thumbprint: peer.thumbprint().copied(),
        };
    }
    #[cfg(feature = "axum")]
    {
        use axum::extract::ConnectInfo;
        if let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<PeerCertificate>>() {
            return Transport::Tls {
                peer: peer.remote_addr().ip(),
                thumbprint: peer.thumbprint().copied(),
            };
        }
        if let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
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
        let (peer, tls_thumbprint) = match (connection(req.extensions()), forwarding) {
            (Transport::Tls { peer, thumbprint }, _) => (Some(peer), thumbprint),
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
                let response = self.auth.respond_with(&rejection, &[]);
                return ResponseFuture {
                    span,
                    state: State::Rejected {
                        response: Some(response),
                    },
                };
            }
        };
        match self.auth.decide(req.headers(), presented) {
            Decision::Accept(token) => {
                record_acceptance(&span, &token);
                req.extensions_mut().insert(token);
                let future = span.in_scope(|| self.inner.call(req));
                ResponseFuture {
                    span,
                    state: State::Inner { future },
                }
            }
            Decision::Reject(rejection) => {
                record_rejection(&span, &rejection, presented.as_ref());
                let response = self.auth.respond_with(&rejection, &[]);
                ResponseFuture {
                    span,
                    state: State::Rejected {
                        response: Some(response),
                    },
                }
            }
            Decision::Refresh(pending) => {
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
    /// Counter: token signatures verified (a verified-token cache hit verifies none).
    pub const SIGNATURE_VERIFICATIONS: &str = "certbound_signature_verifications_total";
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
        Inner { #[pin] future: S::Future },
        Rejected { response: Option<S::Response> },
        Authenticating {
            pending: BoxFuture<'static, Result<VerifiedToken, Rejection>>,
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
                StateProj::Inner { future } => return future.poll(cx),
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
                        Ok(token) => {
                            record_acceptance(this.span, &token);
                            request.extensions_mut().insert(token);
                            let future = service.call(request);
                            this.state.set(State::Inner { future });
                        }
                        Err(rejection) => {
                            record_rejection(this.span, &rejection, presented.as_ref());
                            let response = auth.respond_with(&rejection, &[]);
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
