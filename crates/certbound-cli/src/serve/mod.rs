//! `certbound serve`: certbound in front of any backend.
//!
//! * **Sidecar** (`--upstream URL`): terminates mutual TLS (or sits behind a TLS-terminating
//!   proxy with `--plain-http`), lets the certbound layer decide, and forwards only accepted
//!   requests to the upstream ([`proxy`]), with the verified identity in `X-Certbound-*` and
//!   RFC 9440 `Client-Cert` headers ([`headers`]).
//! * **Forward-auth** (`--forward-auth`): answers nginx `auth_request`, Traefik `forwardAuth`
//!   and Caddy `forward_auth` subrequests about the original request ([`forward_auth`]).
//!
//! Operations: the server certificate is reloaded when its files change (polled every
//! `--reload-interval`) or on SIGHUP — new handshakes get the new certificate, open
//! connections keep theirs; SIGTERM or Ctrl-C stops accepting and drains open requests for at
//! most `--drain-timeout`; `--admin-listen` serves `/healthz`, `/readyz` and `/metrics`
//! ([`admin`]); `--log-format json` writes one JSON object per log line.

mod admin;
pub(crate) mod config_file;
mod forward_auth;
mod headers;
mod pool;
mod proxy;
mod rules;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certbound::tls::{Accept, PlainListener, ServerConfigHandle, TlsListener};
use certbound::CertBoundLayer;
use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;

use certbound_cli::config::{ApiConfig, ConfigError};

use crate::{Fatal, Outcome};
use proxy::Body;

/// `certbound serve` flags.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "EXAMPLES:\n  \
    Sidecar in front of a local backend (mutual TLS, tokens bound to client certificates):\n    \
    certbound serve --upstream http://127.0.0.1:8080 --tls-cert server.pem --tls-key server.key \\\n      \
    --issuer https://auth.example.com/ --audience https://api.example.com --listen 0.0.0.0:8443\n\n  \
    Forward-auth behind nginx auth_request (nginx terminates mutual TLS):\n    \
    certbound serve --forward-auth --forward-auth-headers nginx --plain-http \\\n      \
    --listen 127.0.0.1:9000 --public-url https://api.example.com \\\n      \
    --client-cert-header nginx:X-SSL-Client-Cert --trusted-proxy 127.0.0.1/32 \\\n      \
    --issuer https://auth.example.com/ --audience https://api.example.com --dpop\n\n\
SIGNALS:\n  SIGHUP reloads the server certificate (and client CA, CRLs); SIGTERM and SIGINT stop \
accepting and drain.\n\n\
EXIT STATUS:\n  0 after a clean shutdown (or a valid --check-config), 2 for a configuration error.")]
pub(crate) struct Args {
    /// Read settings from this TOML file first: one key per flag (issuer = "…",
    /// trusted-proxy = ["…"], dpop = true), secrets as { env = "NAME" }, per-path rules as
    /// `[[path]]` tables (prefix, public = true | scopes = […]). Flags on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The example protected API's flags (one shared definition).
    #[command(flatten)]
    api: ApiConfig,
    /// Sidecar mode: forward accepted requests to this http:// URL (its path, if any, prefixes
    /// every request's). Rejected requests never reach it; unreachable → 502, too slow → 504.
    #[arg(long, value_name = "URL", required_unless_present = "forward_auth")]
    upstream: Option<String>,
    /// Forward-auth mode: answer an edge proxy's auth subrequests (any path) about the
    /// original request named by X-Original-Method/-URI or X-Forwarded-Method/-Uri (see
    /// --forward-auth-headers) and X-Forwarded-Proto/-Host (or --public-url), trusted only from
    /// --trusted-proxy peers: 200 with X-Certbound-* headers, or 401/403 with WWW-Authenticate.
    #[arg(long, conflicts_with = "upstream")]
    forward_auth: bool,
    /// Forward-auth mode: which headers name the original request — nginx (only
    /// X-Original-Method/-URI, nginx auth_request), forwarded (only X-Forwarded-Method/-Uri,
    /// Traefik and Caddy), or auto: the family present, and 400 when a subrequest has headers of
    /// both (the edge sets its own family and passes the client's copies of the other through).
    #[arg(
        long,
        value_name = "FAMILY",
        default_value = "auto",
        value_parser = forward_auth::HeaderFamily::VALUES
    )]
    forward_auth_headers: String,
    /// Allow an --upstream on a non-loopback address over plain HTTP (the token and the identity
    /// headers cross that network unencrypted).
    #[arg(long)]
    allow_plain_upstream: bool,
    /// Talk HTTP/2 with prior knowledge (h2c) to the upstream instead of HTTP/1.1.
    #[arg(long)]
    upstream_http2: bool,
    /// TCP connect timeout to the upstream (502 when it passes).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    upstream_connect_timeout: Duration,
    /// How long the upstream may take to send its response head (504 when it passes).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// Serve /healthz, /readyz and /metrics (Prometheus) on this address, plain HTTP.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Log format on stderr: text or json (one object per line). Level from RUST_LOG (default
    /// info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// On SIGTERM/SIGINT: how long open requests may take to finish before their connections
    /// are closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How often the certificate files are checked for changes (0 = only on SIGHUP).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// A path prefix that needs no token (repeatable; e.g. /health): forwarded without identity
    /// headers (sidecar) or answered 200 (forward-auth). Matched case-sensitively on segment
    /// boundaries. While any rule is configured, a path an upstream could read as another path
    /// (dot segments, `;`, `//`, `\`, percent-encoded unreserved characters, `%2F`, `%25`) is
    /// answered 400.
    #[arg(long, value_name = "PREFIX")]
    public_path: Vec<String>,
    /// Scopes a path prefix requires, PREFIX=SCOPE[,SCOPE…] (repeatable; the longest prefix
    /// wins): 403 insufficient_scope without them.
    #[arg(long, value_name = "PREFIX=SCOPES")]
    path_scope: Vec<String>,
    /// Check the configuration (files, keys — fetched from the issuer —, upstream) and exit:
    /// 0 when it is valid, 2 with the first problem otherwise.
    #[arg(long)]
    check_config: bool,
}

/// `500ms`, `2s`, `1.5s`, `3m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text}: expected a duration such as 500ms, 30s or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text}: {e}"))
}

/// Runs `certbound serve`.
pub(crate) fn run(args: Args) -> Outcome {
    init_logging(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::new(format!("tokio runtime: {e}")))?;
    runtime.block_on(serve(args))
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        "json" => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
}

fn fatal(e: ConfigError) -> Fatal {
    Fatal::new(e.to_string())
}

/// The layer's settings from the shared flags. `certbound serve` has no dev issuer: --issuer
/// is required.
async fn layer_builder(api: &ApiConfig) -> Result<certbound::CertBoundBuilder, Fatal> {
    if api.issuer.is_none() {
        return Err(Fatal::new(
            "--issuer is required (with --audience, and --jwks-uri or --jwks-file unless the \
             issuer supports discovery)",
        ));
    }
    let builder = api.token_validation().map_err(fatal)?;
    let (builder, dpop) = api.layer(builder, false).await.map_err(fatal)?;
    if let Some(summary) = dpop {
        tracing::info!("DPoP accepted: {summary}");
    }
    Ok(builder)
}

/// The server's TLS configuration, read from the files now; `None` with --plain-http.
fn tls_config(api: &ApiConfig) -> Result<Option<Arc<rustls::ServerConfig>>, Fatal> {
    if api.plain_http {
        return Ok(None);
    }
    if api.tls_cert.is_none() {
        return Err(Fatal::new(
            "--tls-cert and --tls-key are required (or --plain-http behind a TLS-terminating proxy)",
        ));
    }
    Ok(Some(api.tls(None).map_err(fatal)?.config))
}

/// The mode, checked before anything is bound.
enum Mode {
    Sidecar(proxy::Upstream),
    ForwardAuth(forward_auth::HeaderFamily),
}

async fn serve(args: Args) -> Outcome {
    // SIGHUP's default action ends the process: take it over before anything slow (key
    // fetching) and in every mode, so a unit's `ExecReload=kill -HUP` never stops the server.
    let hangup = Hangup::install();
    let mode = match (&args.upstream, args.forward_auth) {
        (Some(url), false) => Mode::Sidecar(
            proxy::Upstream::parse(url, args.allow_plain_upstream, args.upstream_http2)
                .map_err(|e| Fatal::new(e.to_string()))?,
        ),
        (None, true) => {
            if args.api.trusted_proxy.is_empty() {
                return Err(Fatal::new(
                    "--forward-auth needs --trusted-proxy CIDR: only the edge proxy may name the \
                     original request",
                ));
            }
            if args.api.client_cert_header.is_none() && args.api.public_url.is_none() {
                return Err(Fatal::new(
                    "--forward-auth needs --client-cert-header (the edge forwards the client \
                     certificate, and its X-Forwarded-Proto/-Host name the DPoP htu) or, for \
                     DPoP only, --public-url",
                ));
            }
            if args.api.dpop && args.api.public_url.is_none() {
                tracing::warn!(
                    "forward-auth with --dpop and no --public-url: DPoP's htu comes from the \
                     edge's X-Forwarded-Proto and X-Forwarded-Host — the edge must set both on \
                     every subrequest (a client's own copies would pass through otherwise); \
                     --public-url https://… fixes htu instead"
                );
            }
            let family =
                forward_auth::HeaderFamily::parse(&args.forward_auth_headers).ok_or_else(|| {
                    Fatal::new(format!(
                        "--forward-auth-headers {}: expected auto, nginx or forwarded",
                        args.forward_auth_headers
                    ))
                })?;
            Mode::ForwardAuth(family)
        }
        _ => {
            return Err(Fatal::new(
                "give exactly one of --upstream URL and --forward-auth",
            ))
        }
    };
    let rules = rules::PathRules::parse(&args.public_path, &args.path_scope)
        .map_err(|e| Fatal::new(e.to_string()))?;
    let builder = layer_builder(&args.api).await?;
    let tls = tls_config(&args.api)?;

    if args.check_config {
        let layer = builder
            .build()
            .await
            .map_err(|e| Fatal::new(format!("token validation setup: {e}")))?;
        drop(layer);
        let what = match &mode {
            Mode::Sidecar(upstream) => format!("sidecar for {}", upstream.display()),
            Mode::ForwardAuth(_) => "forward-auth".to_owned(),
        };
        println!("configuration OK: {what}, keys loaded");
        return Ok(ExitCode::SUCCESS);
    }

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Fatal::new(format!("metrics recorder: {e}")))?;
    let health = admin::Health::default();
    if let Some(addr) = args.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Fatal::new(format!("--admin-listen {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Fatal::new(format!("--admin-listen {addr}: {e}")))?;
        println!("admin on http://{local} (/healthz, /readyz, /metrics)");
        tokio::spawn(admin::serve(listener, health.clone(), metrics));
    }

    // Keys are fetched here (discovery, JWKS): /readyz says "not ready" until this is done.
    let layer = builder
        .build()
        .await
        .map_err(|e| Fatal::new(format!("token validation setup: {e}")))?;
    let trusted = args.api.trusted_proxy.clone();
    let drain = args.drain_timeout;
    let listen = args.api.listen;
    match (tls, mode) {
        (Some(tls), mode) => {
            let listener = TlsListener::bind(listen, tls)
                .await
                .map_err(|e| Fatal::new(format!("--listen {listen}: {e}")))?;
            spawn_reload(
                listener.config_handle(),
                args.api.clone(),
                args.reload_interval,
                hangup,
            );
            println!("listening on https://{}", listener.local_addr());
            run_mode(listener, mode, layer, rules, trusted, &args, &health, drain).await
        }
        (None, mode) => {
            let listener = PlainListener::bind(listen)
                .await
                .map_err(|e| Fatal::new(format!("--listen {listen}: {e}")))?
                .trusted_proxies(trusted.iter().copied());
            hangup.ignore("--plain-http: no certificate to reload");
            println!("listening on http://{}", listener.local_addr());
            run_mode(listener, mode, layer, rules, trusted, &args, &health, drain).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_mode<L: Accept>(
    listener: L,
    mode: Mode,
    layer: CertBoundLayer,
    rules: rules::PathRules,
    trusted: Vec<certbound::IpCidr>,
    args: &Args,
    health: &admin::Health,
    drain: Duration,
) -> Outcome {
    match mode {
        Mode::Sidecar(upstream) => {
            tracing::info!(upstream = %upstream.display(), "sidecar: forwarding accepted requests");
            let timeouts = proxy::Timeouts {
                connect: args.upstream_connect_timeout,
                response: args.upstream_timeout,
            };
            // An upstream path prefix is a rule too: `/../internal` must not leave it.
            let prefixed = upstream.has_prefix();
            let proxy = proxy::Proxy::new(upstream, timeouts, trusted);
            if rules.is_empty() {
                let service = tower_layer::Layer::layer(&layer, proxy);
                if prefixed {
                    return run_server(listener, rules::Strict(service), health, drain).await;
                }
                return run_server(listener, service, health, drain).await;
            }
            let service = Routed::new(&rules, &layer, |access| match access {
                rules::Access::Public => Boxed::new(proxy.public()),
                rules::Access::Scopes(_) => Boxed::new(proxy.clone()),
            });
            run_server(listener, rules::Strict(service), health, drain).await
        }
        Mode::ForwardAuth(family) => {
            tracing::info!(
                ?family,
                "forward-auth: answering the edge's auth subrequests"
            );
            if rules.is_empty() {
                let allow = tower_layer::Layer::layer(&layer, forward_auth::Allow(false));
                let service = forward_auth::OriginalRequest::new(allow, trusted, family);
                return run_server(listener, service, health, drain).await;
            }
            let routed = Routed::new(&rules, &layer, |access| match access {
                rules::Access::Public => Boxed::new(forward_auth::Allow(true)),
                rules::Access::Scopes(_) => Boxed::new(forward_auth::Allow(false)),
            });
            let service =
                forward_auth::OriginalRequest::new(rules::Strict(routed), trusted, family);
            run_server(listener, service, health, drain).await
        }
    }
}

/// A service of either mode, type-erased for [`Routed`].
type Boxed = tower::util::BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// Dispatches each request by the [`rules::PathRules`] of its path: a public rule's service
/// without the layer; a scope rule's inside the layer and its scope check; every other path
/// inside the layer.
#[derive(Clone)]
struct Routed {
    rules: Arc<rules::PathRules>,
    /// One per rule, in the rules' order.
    services: Vec<Boxed>,
    default: Boxed,
}

impl Routed {
    /// `inner(access)` is the service behind each rule (the layer is added here).
    fn new(
        rules: &rules::PathRules,
        layer: &CertBoundLayer,
        inner: impl Fn(&rules::Access) -> Boxed,
    ) -> Self {
        use tower_layer::Layer as _;
        let services = rules
            .rules()
            .iter()
            .map(|(_, access)| match access {
                rules::Access::Public => inner(access),
                rules::Access::Scopes(scopes) => Boxed::new(
                    layer.layer(layer.require_scopes(scopes.clone()).layer(inner(access))),
                ),
            })
            .collect();
        let default = Boxed::new(layer.layer(inner(&rules::Access::Scopes(Vec::new()))));
        Self {
            rules: Arc::new(rules.clone()),
            services,
            default,
        }
    }
}

impl Service<Request<Incoming>> for Routed {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        let service = match self.rules.lookup(req.uri().path()) {
            Some(i) => self.services.get(i).unwrap_or(&self.default),
            None => &self.default,
        };
        Box::pin(service.clone().oneshot(req))
    }
}

async fn run_server<L, S>(
    listener: L,
    service: S,
    health: &admin::Health,
    drain: Duration,
) -> Outcome
where
    L: Accept,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let server = certbound::tls::serve(listener, service);
    health.set_stats(server.stats());
    health.set_ready(true);
    let draining = health.clone();
    let result = server
        .drain_timeout(drain)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.set_ready(false);
            tracing::info!(
                ?drain,
                "shutting down: no new connections; draining open requests"
            );
        })
        .await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Fatal::new(format!("server: {e}"))),
    }
}

/// SIGTERM (systemd, docker stop, Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP, taken over from its default action (ending the process) at start-up.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Self {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "SIGHUP handler not installed");
                    None
                }
            };
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGHUP (never, without a handler).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }

    /// Logs each SIGHUP as doing nothing, `why`.
    fn ignore(mut self, why: &'static str) {
        tokio::spawn(async move {
            loop {
                self.recv().await;
                tracing::info!("SIGHUP: nothing reloaded ({why})");
            }
        });
    }
}

/// Reloads the TLS configuration when its files change (every `interval`; zero: never by
/// polling) or on SIGHUP. A configuration that fails to load is logged and the current one
/// kept.
fn spawn_reload(
    handle: ServerConfigHandle,
    api: ApiConfig,
    interval: Duration,
    mut hangup: Hangup,
) {
    tokio::spawn(async move {
        let files: Vec<PathBuf> = api
            .tls_cert
            .iter()
            .chain(&api.tls_key)
            .chain(&api.client_ca)
            .chain(&api.client_crl)
            .cloned()
            .collect();
        let mut seen = fingerprint(&files);
        let mut tick = (!interval.is_zero()).then(|| tokio::time::interval(interval));
        loop {
            let why = tokio::select! {
                _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => "files changed",
                _ = hangup.recv() => "SIGHUP",
            };
            let now = fingerprint(&files);
            if why == "files changed" && now == seen {
                continue;
            }
            seen = now;
            match tls_config(&api) {
                Ok(Some(config)) => {
                    handle.store(config);
                    tracing::info!(
                        reason = why,
                        "TLS configuration reloaded; new handshakes use it"
                    );
                }
                Ok(None) => {}
                Err(Fatal(error)) => tracing::error!(
                    reason = why,
                    %error,
                    "TLS configuration reload failed; keeping the current one"
                ),
            }
        }
    });
}

/// Modification time and length of each file (missing files count as `None`).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "fast", "5h", "-1s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
