//! Per-path rules in `certbound serve`: the decisions are certbound-core's [`PathRules`] and
//! [`suspicious_path`]; here only [`Strict`], the service that answers an ambiguous path 400
//! while rules are configured.

use std::convert::Infallible;
use std::task::{Context, Poll};

pub(crate) use certbound_core::{suspicious_path, PathAccess as Access, PathRules};
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::proxy::{status, Body};

/// Answers 400 to a request whose path is [`suspicious_path`]; passes every other request to the
/// inner service. In front of the rules (and, in forward-auth mode, after the original request
/// is known), so a path is matched only in the one form the upstream will also read.
#[derive(Clone)]
pub(crate) struct Strict<S>(pub(crate) S);

impl<S, B> Service<Request<B>> for Strict<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if suspicious_path(req.uri().path()) {
            tracing::info!(
                "refused a request whose path has dot segments, `;`, `//`, `\\` or \
                 percent-encoded unreserved characters (400; per-path rules are configured)"
            );
            return Box::pin(std::future::ready(Ok(status(
                StatusCode::BAD_REQUEST,
                "ambiguous request path\n",
            ))));
        }
        Box::pin(self.0.call(req))
    }
}
