//! The sidecar's inner service: forwards a request the certbound layer accepted to the
//! upstream over pooled keep-alive connections ([`super::pool`] for HTTP/1.1, hyper-util's
//! client for h2c), streaming the bodies both ways.
//!
//! It runs only behind the layer, so every request it sees carries a [`VerifiedToken`]; one
//! without is a wiring mistake, answered 500 and never forwarded. Upstream unreachable → 502,
//! no response head within the timeout → 504.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use certbound::tls::PeerCertificate;
use certbound::{IpCidr, VerifiedToken};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::headers;
use super::pool::Pool;

/// Errors of a body on its way through.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the server sends: the upstream's, streamed, or one of ours.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A short text body.
pub(crate) fn text(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

/// A body holding `text`.
pub(crate) fn owned_text(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

/// A plain-text response with `status`.
pub(crate) fn status(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Metric names of the sidecar (the layer's own are in `certbound::layer::metric_names`).
pub(crate) mod metric_names {
    /// Counter, label `outcome` (`ok`, `connect_error`, `timeout`): requests forwarded.
    pub(crate) const UPSTREAM_REQUESTS: &str = "certbound_serve_upstream_requests_total";
}

/// Where accepted requests go: `http://host:port[/prefix]`.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// Without the trailing `/`; empty for none.
    prefix: String,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    http2: bool,
    /// The `Host` an HTTP/1.1 request carries: the upstream's host, and its port unless 80.
    host: HeaderValue,
}

/// Why an `--upstream` was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("--upstream {0}: expected an absolute http:// URL such as http://127.0.0.1:8080")]
    NotAbsolute(String),
    #[error(
        "--upstream {0}: https upstreams are not supported; run the upstream on loopback over \
         http (the sidecar's usual place) or put it behind a local TLS client"
    )]
    Https(String),
    #[error("--upstream {0}: no query or fragment allowed")]
    Query(String),
    #[error(
        "--upstream {0}: plain HTTP to a host that is not loopback sends the verified identity \
         headers and the client's token unencrypted over the network; pass \
         --allow-plain-upstream if that network is private and trusted"
    )]
    PlainNotLoopback(String),
}

impl Upstream {
    /// Parses and checks `--upstream`: http only; a host other than a loopback address or
    /// `localhost` only with `allow_plain` (the identity headers and the token would cross the
    /// network in clear).
    pub(crate) fn parse(url: &str, allow_plain: bool, http2: bool) -> Result<Self, UpstreamError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| UpstreamError::NotAbsolute(url.to_owned()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(UpstreamError::NotAbsolute(url.to_owned()));
        };
        if *scheme == Scheme::HTTPS {
            return Err(UpstreamError::Https(url.to_owned()));
        }
        if *scheme != Scheme::HTTP || authority.as_str().contains('@') {
            return Err(UpstreamError::NotAbsolute(url.to_owned()));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(UpstreamError::Query(url.to_owned()));
        }
        if !allow_plain && !is_loopback(authority.host()) {
            return Err(UpstreamError::PlainNotLoopback(url.to_owned()));
        }
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host =
            HeaderValue::from_str(&host).map_err(|_| UpstreamError::NotAbsolute(url.to_owned()))?;
        Ok(Self {
            host,
            scheme: scheme.clone(),
            authority: authority.clone(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            http2,
        })
    }

    /// The upstream URI for a request to `path_and_query`.
    fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        let joined = match self.prefix.is_empty() {
            true => pq.to_owned(),
            false => format!("{}{pq}", self.prefix),
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
    }

    /// Whether the URL has a path prefix (requests go under it).
    pub(crate) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// The origin-form target (`/prefix/path?query`) an HTTP/1.1 request to
    /// `path_and_query` carries.
    fn origin_form(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(match (path_and_query, self.prefix.is_empty()) {
            (Some(pq), true) => pq.clone(),
            (None, true) => PathAndQuery::from_static("/"),
            (pq, false) => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{pq}", self.prefix))?
            }
        });
        Ok(Uri::from_parts(parts)?)
    }

    /// `scheme://authority/prefix`, for the start-up line.
    pub(crate) fn display(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// A loopback IP literal (`127.0.0.0/8`, `::1`, bracketed or not) or `localhost`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback())
}

/// Client certificates whose `Client-Cert` value is kept (about 1 KiB each).
const CLIENT_CERT_CACHE: usize = 4096;

/// How the sidecar talks to its upstream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// TCP connect.
    pub(crate) connect: Duration,
    /// From sending the request until the response head has arrived.
    pub(crate) response: Duration,
}

/// The connections to the upstream.
#[derive(Clone)]
enum Transport {
    /// HTTP/1.1: the sidecar's own pool (see [`super::pool`]).
    Http1(Arc<Pool>),
    /// h2c: hyper-util's client, one multiplexed connection.
    Http2(Arc<Client<HttpConnector, NoTrailers>>),
}

/// The forwarding service (see the module docs). Cheap to clone: the pool is shared.
#[derive(Clone)]
pub(crate) struct Proxy {
    transport: Transport,
    inner: Arc<Inner>,
    /// A public path (`--public-path`): forwarded without a token and without identity.
    public: bool,
}

struct Inner {
    upstream: Upstream,
    timeouts: Timeouts,
    trusted_proxies: Vec<IpCidr>,
    /// `Client-Cert` values by the leaf's thumbprint: encoded once per certificate, not once
    /// per request (a client sends many requests with one certificate).
    client_certs: quick_cache::sync::Cache<certbound::Thumbprint, HeaderValue>,
    /// The counters, registered once (the recorder is installed before the proxy is made).
    forwarded_ok: metrics::Counter,
    connect_errors: metrics::Counter,
    timeouts_hit: metrics::Counter,
}

impl Proxy {
    pub(crate) fn new(
        upstream: Upstream,
        timeouts: Timeouts,
        trusted_proxies: Vec<IpCidr>,
    ) -> Self {
        let transport = match upstream.http2 {
            false => Transport::Http1(Arc::new(Pool::new(
                upstream.authority.host(),
                upstream.authority.port_u16().unwrap_or(80),
                timeouts.connect,
            ))),
            true => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeouts.connect));
                connector.set_nodelay(true);
                let mut builder = Client::builder(TokioExecutor::new());
                builder
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_timer(TokioTimer::new())
                    .http2_only(true);
                Transport::Http2(Arc::new(builder.build(connector)))
            }
        };
        Self {
            transport,
            inner: Arc::new(Inner {
                upstream,
                timeouts,
                trusted_proxies,
                client_certs: quick_cache::sync::Cache::new(CLIENT_CERT_CACHE),
                forwarded_ok: metrics::counter!(metric_names::UPSTREAM_REQUESTS, "outcome" => "ok"),
                connect_errors: metrics::counter!(
                    metric_names::UPSTREAM_REQUESTS,
                    "outcome" => "connect_error"
                ),
                timeouts_hit: metrics::counter!(
                    metric_names::UPSTREAM_REQUESTS,
                    "outcome" => "timeout"
                ),
            }),
            public: false,
        }
    }

    /// The same proxy for public paths: no token needed, no identity headers added (the
    /// client's copies are still removed).
    pub(crate) fn public(&self) -> Self {
        Self {
            public: true,
            ..self.clone()
        }
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let transport = self.transport.clone();
        let inner = Arc::clone(&self.inner);
        let public = self.public;
        Box::pin(async move { Ok(forward(&transport, &inner, public, req).await) })
    }
}

/// The client's request body without its trailers: trailers are a second header section the
/// identity headers could be smuggled in (an HTTP/2 upstream would see them), and nothing
/// here needs them. Trailers are always the last frame, so the body simply ends there.
pub(crate) struct NoTrailers(Incoming);

impl hyper::body::Body for NoTrailers {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => Poll::Ready(None),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.size_hint()
    }
}

async fn forward(
    transport: &Transport,
    inner: &Inner,
    public: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let token = parts.extensions.remove::<VerifiedToken>();
    if token.is_none() && !public {
        // Only reachable if the proxy were served without the layer in front of it.
        tracing::error!(
            "a request reached the upstream proxy without a verified token; the certbound \
             layer must wrap the proxy (never forwarded)"
        );
        return status(StatusCode::INTERNAL_SERVER_ERROR, "");
    }
    let peer = parts.extensions.get::<PeerCertificate>();
    let upstream = &inner.upstream;
    let uri = match transport {
        Transport::Http1(_) => upstream.origin_form(parts.uri.path_and_query()),
        Transport::Http2(_) => upstream.uri_for(parts.uri.path_and_query()),
    };
    let uri = match uri {
        Ok(uri) => uri,
        Err(_) => return status(StatusCode::BAD_REQUEST, "bad request target\n"),
    };
    let host = headers::request_host(&parts.uri, &parts.headers).map(str::to_owned);
    headers::remove_hop_by_hop(&mut parts.headers, upstream.http2);
    headers::remove_identity(&mut parts.headers);
    if let Some(peer) = peer {
        let ip = peer.remote_addr().ip();
        let hop = headers::Hop {
            peer: ip,
            proto: if peer.is_tls() { "https" } else { "http" },
            host: host.as_deref(),
            trusted: inner.trusted_proxies.iter().any(|cidr| cidr.contains(ip)),
        };
        headers::append_forwarded(&mut parts.headers, &hop);
    }
    if let Some(token) = &token {
        for (name, value) in headers::claims(token) {
            parts.headers.insert(name, value);
        }
        if let Some(leaf) = peer.and_then(PeerCertificate::certificate) {
            let value = inner
                .client_certs
                .get_or_insert_with(leaf.thumbprint(), || {
                    headers::client_cert_value(leaf.der()).ok_or(())
                })
                .ok();
            if let Some(value) = value {
                parts.headers.insert(headers::CLIENT_CERT, value);
            }
        }
    }
    // Host names the upstream (HTTP/2: the client sets :authority from the URI).
    match transport {
        Transport::Http1(_) => {
            parts
                .headers
                .insert(http::header::HOST, upstream.host.clone());
        }
        Transport::Http2(_) => {
            parts.headers.remove(http::header::HOST);
        }
    }
    parts.uri = uri;
    parts.version = if upstream.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    // Request trailers are dropped: a client could put identity names there.
    let request = Request::from_parts(parts, NoTrailers(body));
    let sent = async {
        match transport {
            Transport::Http1(pool) => pool
                .send(request)
                .await
                .map(|response| response.map(|body| body.map_err(BoxError::from).boxed())),
            Transport::Http2(client) => client
                .request(request)
                .await
                .map(|response| response.map(|body| body.map_err(BoxError::from).boxed()))
                .map_err(BoxError::from),
        }
    };
    match tokio::time::timeout(inner.timeouts.response, sent).await {
        Ok(Ok(response)) => {
            inner.forwarded_ok.increment(1);
            let (mut parts, body) = response.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers, false);
            Response::from_parts(parts, body)
        }
        Ok(Err(error)) => {
            inner.connect_errors.increment(1);
            tracing::warn!(upstream = %upstream.display(), %error, "upstream request failed; answering 502");
            status(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
        }
        Err(_elapsed) => {
            inner.timeouts_hit.increment(1);
            tracing::warn!(
                upstream = %upstream.display(),
                timeout = ?inner.timeouts.response,
                "upstream did not answer in time; answering 504"
            );
            status(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_upstreams_off_loopback_need_the_explicit_flag() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/api/",
            "http://[::1]:9000",
            "http://127.0.0.2",
        ] {
            assert!(Upstream::parse(ok, false, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.7:8080",
            "http://backend:8080",
            "http://[2001:db8::1]",
        ] {
            let err = Upstream::parse(refused, false, false).unwrap_err();
            assert!(
                matches!(err, UpstreamError::PlainNotLoopback(_)),
                "{refused}"
            );
            assert!(err.to_string().contains("--allow-plain-upstream"));
            assert!(Upstream::parse(refused, true, false).is_ok(), "{refused}");
        }
        for bad in [
            "127.0.0.1:8080",
            "/api",
            "ftp://127.0.0.1",
            "http://u:p@127.0.0.1",
            "http://127.0.0.1/?a=1",
        ] {
            assert!(Upstream::parse(bad, true, false).is_err(), "{bad}");
        }
        assert!(matches!(
            Upstream::parse("https://127.0.0.1", true, false),
            Err(UpstreamError::Https(_))
        ));
    }

    #[test]
    fn the_request_target_goes_under_the_upstream_prefix() {
        let up = Upstream::parse("http://127.0.0.1:8080/backend/", false, false).unwrap();
        let pq: PathAndQuery = "/accounts?page=2".parse().unwrap();
        assert_eq!(
            up.uri_for(Some(&pq)).unwrap(),
            "http://127.0.0.1:8080/backend/accounts?page=2"
        );
        let root = Upstream::parse("http://127.0.0.1:8080", false, false).unwrap();
        assert_eq!(root.uri_for(None).unwrap(), "http://127.0.0.1:8080/");
    }
}
