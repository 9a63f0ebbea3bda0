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
//! The scope layer must sit *inside* the certbound layer it was made from: it reads the
//! [`VerifiedToken`] that layer inserted, and accepts only a token verified by that same layer
//! instance (or a clone of it). Without that layer — none at all, or only another certbound layer
//! with another issuer or audience — it answers `500` and logs one error naming the fix: a wiring
//! mistake is the server's, never the client's (as axum answers a missing extension).
//!
//! ```
//! use axum::{body::Body, routing::get, Router};
//! use tower::ServiceExt as _;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let key = certbound_dev::SigningKey::generate("k", certbound::Algorithm::ES256).unwrap();
//! # let keys = certbound::StaticJwks::from_jwks(certbound_dev::jwks_document(&[&key]).to_string()).unwrap();
//! # let auth = certbound::CertBound::builder().issuer("https://issuer.example/")
//! #     .audience("https://api.example").key_source(keys).build().await.unwrap();
//! // Wrong: the scope check is there, but the certbound layer is not.
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "secret" }).route_layer(auth.require_scope("admin")));
//! let request = http::Request::get("/admin").body(Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 500); // and one error log naming the fix
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use certbound_core::Rejection;
use futures_util::future::Either;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticate::Authenticator;
use crate::response::wiring_error;
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
        let token = match req.extensions().get::<VerifiedToken>() {
            Some(token) if token.verified_by(self.auth.id) => token,
            other => {
                let found = if other.is_some() {
                    "a VerifiedToken from another certbound layer instance (another issuer, audience or policy)"
                } else {
                    "no VerifiedToken: the certbound layer did not run for this request"
                };
                tracing::error!(
                    required = %self.scopes.join(" "),
                    "require_scope found {found}; put require_scope inside the CertBoundLayer it was made \
                     from (Router::route_layer(auth.require_scope(..)) under .layer(auth) or .route_layer(auth)); \
                     answering 500"
                );
                return Either::Right(std::future::ready(Ok(wiring_error())));
            }
        };
        if self.scopes.iter().all(|s| token.has_scope(s)) {
            return Either::Left(self.inner.call(req));
        }
        let rejection = Rejection::InsufficientScope;
        let required = self.scopes.join(" ");
        tracing::debug!(reason = rejection.code(), required = %required, "certbound scope check refused request");
        Either::Right(std::future::ready(Ok(self.auth.respond_with(
            &rejection,
            None,
            &[("scope", &required)],
        ))))
    }
}
