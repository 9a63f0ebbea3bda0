//! Forward-auth: answering an edge proxy's authorization subrequest — nginx `auth_request`,
//! Traefik `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz` (HTTP).
//!
//! The subrequest carries the client's headers (`Authorization`, `DPoP`), the client
//! certificate in the edge's forwarded header, and the original method and URI in
//! `X-Original-Method` / `X-Original-URI` (nginx) or `X-Forwarded-Method` / `X-Forwarded-Uri`
//! (Traefik, Caddy) — one family, chosen by `--forward-auth-headers` (`auto`, the default:
//! the one present, and 400 when both are): an edge sets its own family and passes the
//! client's copies of the other through, so the other is never believed. The client's own
//! `Forwarded` and `X-Forwarded-Prefix` (passed through too) are removed before the layer
//! works out DPoP's `htu`. [`OriginalRequest`] — outside the certbound layer — turns the subrequest
//! back into the client's request, so the layer decides about *that* request: DPoP's `htm`
//! and `htu` are checked against the original method and URI (the layer builds `htu` from
//! `--public-url`, or from the trusted edge's `X-Forwarded-Proto` / `-Host`, as always). Only a
//! `--trusted-proxy` peer may say what the original request was; anyone else gets 403.
//!
//! [`Allow`] — inside the layer — answers an accepted request 200 with the identity headers
//! for the edge to copy; a refused one gets the layer's own 401/403 with `WWW-Authenticate`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use certbound::tls::PeerCertificate;
use certbound::{IpCidr, VerifiedToken};
pub(crate) use certbound_core::{
    original_request as original, ForwardAuthHeaders as HeaderFamily, OriginalRequest as Original,
};
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::headers;
use super::proxy::{empty, status, Body};

/// Outside the layer: rewrites a trusted edge's subrequest into the original request.
#[derive(Clone)]
pub(crate) struct OriginalRequest<S> {
    inner: S,
    trusted: Arc<[IpCidr]>,
    family: HeaderFamily,
}

impl<S> OriginalRequest<S> {
    pub(crate) fn new(inner: S, trusted: Vec<IpCidr>, family: HeaderFamily) -> Self {
        Self {
            inner,
            trusted: trusted.into(),
            family,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for OriginalRequest<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<PeerCertificate>()
            .map(|p| p.remote_addr().ip());
        let trusted = peer.is_some_and(|ip| self.trusted.iter().any(|cidr| cidr.contains(ip)));
        if !trusted {
            // Anyone can send these: at most one line per second.
            static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
                tracing::warn!(
                    peer = %peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                    "forward-auth request from a peer that is not a --trusted-proxy; refused \
                     (403; at most one line per second)"
                );
            }
            return ready(status(StatusCode::FORBIDDEN, "not a trusted proxy\n"));
        }
        match original(self.family, req.method(), req.headers()) {
            Original::Request(method, uri) => {
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                // Edges pass the client's own Forwarded and X-Forwarded-Prefix through to the
                // subrequest (they set X-Forwarded-Proto/-Host themselves): neither may move
                // DPoP's htu. The original URI is the client's whole path, so no prefix applies.
                req.headers_mut().remove(http::header::FORWARDED);
                req.headers_mut().remove("x-forwarded-prefix");
                Box::pin(self.inner.call(req))
            }
            Original::Missing => {
                match self.family {
                    HeaderFamily::Auto => tracing::error!(
                        "forward-auth request without X-Original-URI or X-Forwarded-Uri: \
                         configure the edge to send the original URI (nginx: proxy_set_header \
                         X-Original-URI $request_uri; Traefik and Caddy send X-Forwarded-Uri)"
                    ),
                    HeaderFamily::Nginx => tracing::error!(
                        "forward-auth request without X-Original-URI (--forward-auth-headers \
                         nginx): configure the edge to send it (nginx: proxy_set_header \
                         X-Original-URI $request_uri), or use --forward-auth-headers forwarded \
                         behind Traefik or Caddy"
                    ),
                    HeaderFamily::Forwarded => tracing::error!(
                        "forward-auth request without X-Forwarded-Uri (--forward-auth-headers \
                         forwarded): Traefik and Caddy send it; behind nginx use \
                         --forward-auth-headers nginx"
                    ),
                }
                ready(status(StatusCode::INTERNAL_SERVER_ERROR, ""))
            }
            Original::Ambiguous => {
                tracing::info!(
                    "forward-auth request naming the original request in both X-Original-* and \
                     X-Forwarded-Method/-Uri (the client sent the other family): refused (400); \
                     --forward-auth-headers nginx|forwarded reads only the edge's own"
                );
                ready(status(
                    StatusCode::BAD_REQUEST,
                    "ambiguous original request\n",
                ))
            }
            Original::Malformed => {
                tracing::info!("forward-auth request with a malformed original method or URI");
                ready(status(
                    StatusCode::BAD_REQUEST,
                    "malformed original request\n",
                ))
            }
        }
    }
}

fn ready(response: Response<Body>) -> BoxFuture<Result<Response<Body>, Infallible>> {
    Box::pin(std::future::ready(Ok(response)))
}

/// Inside the layer: 200 with the identity headers of the verified token. `Allow(true)`, for a
/// public path, answers 200 without a token and without identity headers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Allow(pub(crate) bool);

impl<B> Service<Request<B>> for Allow {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.0 {
            return std::future::ready(Ok(Response::new(empty())));
        }
        let Some(token) = req.extensions().get::<VerifiedToken>() else {
            tracing::error!(
                "a forward-auth request was answered without a verified token; the certbound \
                 layer must wrap the answer (refused)"
            );
            return std::future::ready(Ok(status(StatusCode::INTERNAL_SERVER_ERROR, "")));
        };
        // The leaf is known only when the edge connects to this server with the client's own
        // certificate — never in the usual setups, where it arrives in a forwarded header.
        let leaf = req
            .extensions()
            .get::<PeerCertificate>()
            .and_then(PeerCertificate::certificate)
            .map(|c| c.der());
        let mut response = Response::new(empty());
        for (name, value) in headers::identity(token, leaf) {
            response.headers_mut().insert(name, value);
        }
        std::future::ready(Ok(response))
    }
}
