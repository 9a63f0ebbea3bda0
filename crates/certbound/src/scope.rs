//! Per-route scope requirements: `403` with `error="insufficient_scope"` and the required
//! `scope` in the challenge (RFC 6750 §3.1).
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! # async fn doc(auth: certbound::CertBoundLayer) {
//! let app: Router = Router::new()
//!     .route("/accounts", get(|| async { "list" }).route_layer(auth.require_scope("accounts:read")))
//!     .route("/transfers", post(|| async { "sent" }).route_layer(auth.require_scopes(["transfers", "accounts:read"])))
//!     .layer(auth);
//! # }
//! ```
//! The scope layer must sit *inside* the certbound layer (it reads the [`VerifiedToken`] the
//! certbound layer inserted); without one it answers 401 like a missing token.

use std::sync::Arc;
use std::task::{Context, Poll};

use certbound_core::Rejection;
use futures_util::future::Either;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticate::Authenticator;
use crate::VerifiedToken;

/// Requires every listed scope; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    scopes: Arc<[String]>,
    auth: Arc<Authenticator>,
}

impl RequireScopeLayer {
    pub(crate) fn new(scopes: Vec<String>, auth: Arc<Authenticator>) -> Self {
        Self {
            scopes: scopes.into(),
            auth,
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            scopes: Arc::clone(&self.scopes),
            auth: Arc::clone(&self.auth),
        }
    }
}

/// The service of [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    scopes: Arc<[String]>,
    auth: Arc<Authenticator>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let rejection = match req.extensions().get::<VerifiedToken>() {
            None => Some(Rejection::MissingToken),
            Some(token) if self.scopes.iter().all(|s| token.has_scope(s)) => None,
            Some(_) => Some(Rejection::InsufficientScope),
        };
        match rejection {
            None => Either::Left(self.inner.call(req)),
            Some(rejection) => {
                let required = self.scopes.join(" ");
                tracing::debug!(reason = rejection.code(), required = %required, "certbound scope check refused request");
                Either::Right(std::future::ready(Ok(self
                    .auth
                    .respond_with(&rejection, &[("scope", &required)]))))
            }
        }
    }
}
