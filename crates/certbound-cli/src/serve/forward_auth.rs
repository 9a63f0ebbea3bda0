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
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use tower_service::Service;

use super::headers;
use super::proxy::{empty, status, Body};

/// Longest original URI accepted from the edge, in bytes (nginx's default large header
/// buffer is 8 KiB).
const MAX_URI_LEN: usize = 8 * 1024;

/// The original request, as a trusted edge describes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Original {
    /// Method and URI (origin-form: path and query).
    Request(Method, Uri),
    /// The edge sent no original URI: its configuration lacks the header.
    Missing,
    /// The edge sent a method or URI that does not parse.
    Malformed,
    /// `auto`: both families are present — the edge set one and the client sent the other;
    /// which is which cannot be told, so neither is believed.
    Ambiguous,
}

/// Which headers name the original request: one family per deployment, never both — an edge
/// sets its own family and passes the client's copies of the other one through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFamily {
    /// The family present in the subrequest — and [`Original::Ambiguous`] when headers of both
    /// are (the edge's own family plus the client's copies of the other): as safe as naming
    /// the family, as long as the edge always sends its original URI.
    Auto,
    /// nginx `auth_request`: `X-Original-Method` / `X-Original-URI`.
    Nginx,
    /// Traefik, Caddy: `X-Forwarded-Method` / `X-Forwarded-Uri`.
    Forwarded,
}

impl HeaderFamily {
    /// `--forward-auth-headers` values.
    pub(crate) const VALUES: [&'static str; 3] = ["auto", "nginx", "forwarded"];

    /// From a `--forward-auth-headers` value.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "nginx" => Some(Self::Nginx),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    /// The method and URI header names of a named family.
    fn names(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Auto => None,
            Self::Nginx => Some(("x-original-method", "x-original-uri")),
            Self::Forwarded => Some(("x-forwarded-method", "x-forwarded-uri")),
        }
    }

    /// `Auto` resolved for one subrequest: the only family with a header present, `Auto`
    /// itself when both or neither have one.
    fn resolve(self, headers: &HeaderMap) -> Self {
        if self != Self::Auto {
            return self;
        }
        let has = |family: Self| {
            family
                .names()
                .is_some_and(|(m, u)| headers.contains_key(m) || headers.contains_key(u))
        };
        match (has(Self::Nginx), has(Self::Forwarded)) {
            (true, false) => Self::Nginx,
            (false, true) => Self::Forwarded,
            _ => Self::Auto,
        }
    }
}

/// Reads the original method and URI from `family`'s headers only (the other family's are
/// whatever the client sent); `Auto` reads the one family present, and refuses a subrequest
/// with headers of both. Without a method header the subrequest's own method is the
/// original's (nginx's `auth_request` keeps it).
pub(crate) fn original(family: HeaderFamily, method: &Method, headers: &HeaderMap) -> Original {
    let family = family.resolve(headers);
    let Some((method_name, uri_name)) = family.names() else {
        let both = ["x-original-uri", "x-original-method"]
            .iter()
            .any(|n| headers.contains_key(*n));
        return if both {
            Original::Ambiguous
        } else {
            Original::Missing
        };
    };
    let get = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
    let uri = match get(uri_name) {
        None => return Original::Missing,
        Some(Err(_)) => return Original::Malformed,
        Some(Ok(uri)) => uri,
    };
    if uri.is_empty() || uri.len() > MAX_URI_LEN || !uri.starts_with('/') {
        return Original::Malformed;
    }
    let Ok(uri) = uri.parse::<Uri>() else {
        return Original::Malformed;
    };
    let method = match get(method_name) {
        None => method.clone(),
        Some(Ok(m)) if !m.is_empty() && m.len() <= 32 => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => return Original::Malformed,
        },
        Some(_) => return Original::Malformed,
    };
    Original::Request(method, uri)
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn nginx_and_traefik_headers_name_the_original_request() {
        use HeaderFamily::{Forwarded, Nginx};
        let nginx = headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/orders?id=7"),
        ]);
        assert_eq!(
            original(Nginx, &Method::GET, &nginx),
            Original::Request(Method::POST, "/api/orders?id=7".parse().unwrap())
        );
        let traefik = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/orders/7"),
        ]);
        assert_eq!(
            original(Forwarded, &Method::GET, &traefik),
            Original::Request(Method::DELETE, "/api/orders/7".parse().unwrap())
        );
        // nginx without X-Original-Method: the subrequest keeps the client's method.
        let uri_only = headers(&[("x-original-uri", "/a")]);
        assert_eq!(
            original(Nginx, &Method::PUT, &uri_only),
            Original::Request(Method::PUT, "/a".parse().unwrap())
        );
    }

    #[test]
    fn only_the_configured_family_names_the_original_request() {
        use HeaderFamily::{Forwarded, Nginx};
        // Caddy sets X-Forwarded-*; the client's own X-Original-* passes through it.
        let caddy = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/health"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/admin/users/7"),
        ]);
        assert_eq!(
            original(Forwarded, &Method::GET, &caddy),
            Original::Request(Method::DELETE, "/admin/users/7".parse().unwrap())
        );
        assert_eq!(
            original(Nginx, &Method::GET, &caddy),
            Original::Request(Method::GET, "/health".parse().unwrap())
        );
        // auto: both families present is refused, whichever the edge set.
        assert_eq!(
            original(HeaderFamily::Auto, &Method::GET, &caddy),
            Original::Ambiguous
        );
        let method_only = headers(&[("x-original-method", "GET"), ("x-forwarded-uri", "/a")]);
        assert_eq!(
            original(HeaderFamily::Auto, &Method::GET, &method_only),
            Original::Ambiguous
        );
        // auto with one family reads it.
        let nginx = headers(&[("x-original-uri", "/a"), ("x-original-method", "PUT")]);
        assert_eq!(
            original(HeaderFamily::Auto, &Method::GET, &nginx),
            Original::Request(Method::PUT, "/a".parse().unwrap())
        );
        let traefik = headers(&[("x-forwarded-uri", "/b")]);
        assert_eq!(
            original(HeaderFamily::Auto, &Method::POST, &traefik),
            Original::Request(Method::POST, "/b".parse().unwrap())
        );
        assert_eq!(
            original(HeaderFamily::Auto, &Method::GET, &HeaderMap::new()),
            Original::Missing
        );
        // A named family: the other family alone is no original request at all.
        let forged = headers(&[("x-original-uri", "/health")]);
        assert_eq!(
            original(Forwarded, &Method::GET, &forged),
            Original::Missing
        );
        let forged = headers(&[("x-forwarded-uri", "/health")]);
        assert_eq!(original(Nginx, &Method::GET, &forged), Original::Missing);
    }

    #[test]
    fn a_missing_or_malformed_original_is_never_guessed() {
        use HeaderFamily::{Forwarded, Nginx};
        assert_eq!(
            original(Nginx, &Method::GET, &HeaderMap::new()),
            Original::Missing
        );
        for (family, bad) in [
            (Nginx, &[("x-original-uri", "https://evil.example/a")][..]),
            (Nginx, &[("x-original-uri", "")]),
            (
                Nginx,
                &[("x-original-uri", "/a"), ("x-original-method", "GE T")],
            ),
            (Forwarded, &[("x-forwarded-uri", "/a b")]),
        ] {
            assert_eq!(
                original(family, &Method::GET, &headers(bad)),
                Original::Malformed,
                "{bad:?}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(
            original(Nginx, &Method::GET, &headers(&[("x-original-uri", &long)])),
            Original::Malformed
        );
    }
}
