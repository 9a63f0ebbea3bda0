//! The admin listener (`--admin-listen`, plain HTTP — keep it on loopback or a private
//! network): `/healthz` (the process answers), `/readyz` (keys loaded, listening, not
//! draining) and `/metrics` (Prometheus text format: the layer's counters, the sidecar's, and
//! the TLS listener's).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use certbound::tls::ListenerStats;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::proxy::{status, Body};

/// What the admin endpoints report; shared with the server.
#[derive(Clone, Default)]
pub(crate) struct Health {
    ready: Arc<AtomicBool>,
    stats: Arc<OnceLock<ListenerStats>>,
}

impl Health {
    /// Ready: the layer was built (its keys loaded) and the listener is bound.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The listener's counters, for /metrics.
    pub(crate) fn set_stats(&self, stats: ListenerStats) {
        let _ = self.stats.set(stats);
    }
}

/// Serves the admin endpoints on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, health: Health, metrics: PrometheusHandle) {
    let metrics = Arc::new(metrics);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (health, metrics) = (health.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = answer(&req, &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(req: &Request<B>, health: &Health, metrics: &PrometheusHandle) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return status(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    match req.uri().path() {
        "/healthz" => status(StatusCode::OK, "ok\n"),
        "/readyz" => match health.ready.load(Ordering::SeqCst) {
            true => status(StatusCode::OK, "ready\n"),
            false => status(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        },
        "/metrics" => {
            let mut text = metrics.render();
            if let Some(stats) = health.stats.get() {
                text.push_str(&listener_metrics(stats));
            }
            let mut response = Response::new(super::proxy::owned_text(text));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => status(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The TLS (or plain) listener's counters as Prometheus gauges and counters.
fn listener_metrics(stats: &ListenerStats) -> String {
    let rows: [(&str, &str, &str, u64); 6] = [
        (
            "certbound_listener_open_connections",
            "gauge",
            "Connections open now.",
            stats.open_connections(),
        ),
        (
            "certbound_listener_tcp_accepted_total",
            "counter",
            "TCP connections accepted.",
            stats.tcp_accepted(),
        ),
        (
            "certbound_listener_handshakes_completed_total",
            "counter",
            "TLS handshakes completed.",
            stats.handshakes_completed(),
        ),
        (
            "certbound_listener_handshakes_failed_total",
            "counter",
            "TLS handshakes failed.",
            stats.handshakes_failed(),
        ),
        (
            "certbound_listener_header_read_timeouts_total",
            "counter",
            "Connections closed for a slow request head.",
            stats.header_read_timeouts(),
        ),
        (
            "certbound_listener_idle_timeouts_total",
            "counter",
            "Idle connections closed.",
            stats.idle_timeouts(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        ));
    }
    out
}
