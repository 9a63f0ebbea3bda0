//! The protected API's settings — one definition shared by the example API
//! (`cargo run --example protected_api`) and `certbound serve`: the same flags, the same
//! checks, the same layer.
//!
//! ```
//! use certbound_cli::config::ApiConfig;
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     api: ApiConfig,
//! }
//!
//! let cli = Cli::try_parse_from([
//!     "api", "--issuer", "https://auth.example.com/", "--audience", "https://api.example.com",
//!     "--client-cert-header", "nginx:X-SSL-Client-Cert", "--trusted-proxy", "10.0.0.0/8",
//! ])
//! .unwrap();
//! assert_eq!(cli.api.issuer.as_deref(), Some("https://auth.example.com/"));
//! // The proxy settings are checked together: a forwarded header needs a trusted proxy.
//! assert!(cli.api.forwarded_certificates().unwrap().is_some());
//!
//! let no_proxy = Cli::try_parse_from(["api", "--client-cert-header", "xfcc"]).unwrap();
//! let err = no_proxy.api.forwarded_certificates().unwrap_err();
//! assert_eq!(err.flag(), "--client-cert-header");
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certbound::replay::RedisReplayStore;
use certbound::tls::{
    load_ca_roots, load_certs, load_crls, load_private_key, server_config, ClientAuth,
};
use certbound::{
    BindingPolicy, CertBound, CertBoundBuilder, Dpop, ForwardedCertificates, ForwardedFormat,
    IntrospectionAuth, Introspector, IpCidr, NonceKeys, StaticJwks,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a DPoP nonce stays valid.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// A setting that cannot be used: the flag it came from and why.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct ConfigError {
    flag: String,
    reason: String,
}

impl ConfigError {
    /// A problem with `flag` (as spelt on the command line, e.g. `--tls-cert server.pem`).
    pub fn new(flag: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            flag: flag.into(),
            reason: reason.to_string(),
        }
    }

    /// The flag at fault, as spelt on the command line (e.g. `--tls-cert`), possibly followed
    /// by its value.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// Why the setting cannot be used.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Where the token's binding is checked, which tokens are accepted, and how clients reach the
/// API: every setting of the protected API, as command-line flags (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to (tls_client_auth). Without it, any client
    /// certificate is accepted in the handshake and only the token binding decides
    /// (self_signed_tls_client_auth).
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM or DER) for --client-ca: client certificates it lists are
    /// refused in the handshake (repeatable). With any CRL, every CA in a client's chain needs
    /// one, or its clients are refused.
    #[arg(long = "client-crl", value_name = "PEM", requires = "client_ca")]
    pub client_crl: Vec<PathBuf>,
    /// Token issuer (`iss`). Its keys are found by discovery unless --jwks-uri or --jwks-file is
    /// given.
    #[arg(long, requires = "audience", value_name = "URL")]
    pub issuer: Option<String>,
    /// Fetch the issuer's keys from this JWKS URL instead of discovery.
    #[arg(
        long,
        requires = "issuer",
        conflicts_with = "jwks_file",
        value_name = "URL"
    )]
    pub jwks_uri: Option<String>,
    /// Read the issuer's keys from this JWKS file.
    #[arg(long, requires = "issuer", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Extra trust anchor (PEM) for discovery and JWKS over HTTPS.
    #[arg(long, value_name = "PEM")]
    pub jwks_ca: Option<PathBuf>,
    /// Audience this API is (`aud` must contain it). Required with --issuer.
    #[arg(long, value_name = "URI")]
    pub audience: Option<String>,
    /// required: every token must be bound; if-bound: bound tokens must match, unbound pass.
    #[arg(long, default_value = "required", value_parser = ["required", "if-bound"])]
    pub binding: String,
    /// Require RFC 9068 typed tokens (typ: at+jwt).
    #[arg(long)]
    pub require_at_jwt: bool,
    /// Verify every token's signature on every request (switch off the verified-token cache).
    #[arg(long)]
    pub no_token_cache: bool,
    /// Behind a TLS-terminating proxy: take the client certificate from this forwarded header,
    /// FORMAT[:HEADER-NAME] — nginx:X-SSL-Client-Cert, xfcc, xfcc-hash-only, rfc9440, alb,
    /// alb-passthrough, traefik, base64-der:X-Client-Cert, auth0-edge, auth0-edge-verified.
    #[arg(long, value_name = "FORMAT[:HEADER]")]
    pub client_cert_header: Option<String>,
    /// A proxy allowed to forward client certificates (CIDR; repeatable). A forwarded header from
    /// any other peer is refused with 400 and logged.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxy: Vec<IpCidr>,
    /// With xfcc / xfcc-hash-only: how many trusted Envoy hops write an element (the edge one
    /// with SANITIZE_SET, each further one with APPEND_FORWARD). Any other count is refused.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub xfcc_hops: u8,
    /// Listen without TLS (for a proxy on the same host or network); needs --client-cert-header.
    /// Same timeouts and limits as with TLS; the --trusted-proxy networks are not limited per
    /// address.
    #[arg(long)]
    pub plain_http: bool,
    /// Also accept DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP`
    /// proof header. Implied by --dpop-nonce-key and --replay-store.
    #[arg(long)]
    pub dpop: bool,
    /// The URL clients use to reach this API (origin and any path prefix), e.g.
    /// `https://api.example.com`: DPoP proofs' `htu` must name it. Without it: https (http with
    /// --plain-http) and the request's Host — or, from a --trusted-proxy only, its Forwarded /
    /// X-Forwarded-Proto, -Host and -Prefix.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Require DPoP nonces (RFC 9449 §8), sealed with the keys in FILE: one 32-byte key per line
    /// (64 hex digits or base64), the first seals, the others still open (rotation). Replicas
    /// with the same file accept each other's nonces. Implies --dpop.
    #[arg(long, value_name = "FILE")]
    pub dpop_nonce_key: Option<PathBuf>,
    /// Where DPoP proofs are remembered against replay: redis://HOST:PORT (rediss:// for TLS,
    /// redis://user:password@HOST:PORT/DB) — shared by every replica using it. Default: this
    /// process's memory. Redis unreachable at start-up: exit 2; later: 503 with Retry-After.
    /// Implies --dpop.
    #[arg(long, value_name = "redis://HOST:PORT")]
    pub replay_store: Option<SecretUrl>,
    /// Opaque tokens by introspection (`--introspect`, `--introspection-url`, …).
    #[command(flatten)]
    pub introspection: IntrospectionFlags,
}

/// Opaque access tokens by RFC 7662 introspection: the flags shared by the protected API,
/// `certbound serve` and `certbound inspect` (`#[command(flatten)]`). Its `Debug` output (and
/// so [`ApiConfig`]'s) never shows the client secret.
#[derive(Clone, Default, clap::Args)]
pub struct IntrospectionFlags {
    /// Accept opaque access tokens by asking the issuer's introspection endpoint (RFC 7662), as
    /// found by discovery (`introspection_endpoint`). Needs --introspection-client-id and its
    /// credentials. Answers are cached (at most 5 min: a token revoked at the issuer works here
    /// until then).
    #[arg(long)]
    pub introspect: bool,
    /// Accept opaque access tokens by asking this introspection endpoint (RFC 7662) instead of
    /// the discovered one. Implies --introspect.
    #[arg(long, value_name = "URL")]
    pub introspection_url: Option<String>,
    /// This API's client id at the issuer, for the introspection endpoint.
    #[arg(long, value_name = "ID")]
    pub introspection_client_id: Option<String>,
    /// The client secret for --introspection-client-id (client_secret_basic).
    #[arg(
        long,
        value_name = "SECRET",
        requires = "introspection_client_id",
        conflicts_with = "introspection_client_cert"
    )]
    pub introspection_client_secret: Option<String>,
    /// This API's own client certificate (PEM) for the introspection endpoint (tls_client_auth),
    /// with --introspection-client-key.
    #[arg(
        long,
        value_name = "PEM",
        requires_all = ["introspection_client_id", "introspection_client_key"]
    )]
    pub introspection_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --introspection-client-cert.
    #[arg(long, value_name = "PEM", requires = "introspection_client_cert")]
    pub introspection_client_key: Option<PathBuf>,
}

/// A URL that may carry credentials (`redis://user:password@host:6379`): its `Debug` output
/// shows everything but the user information.
///
/// ```
/// use certbound_cli::config::SecretUrl;
///
/// let url: SecretUrl = "redis://app:hunter2@cache:6379/0".parse().unwrap();
/// assert_eq!(url.expose(), "redis://app:hunter2@cache:6379/0");
/// assert_eq!(format!("{url:?}"), "\"redis://<redacted>@cache:6379/0\"");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given, credentials included: for the client that connects, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self(url.to_owned()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => {
                let host_and_path = &rest[at..];
                let sep = if scheme.is_empty() { "" } else { "://" };
                write!(f, "\"{scheme}{sep}<redacted>{host_and_path}\"")
            }
            None => write!(f, "{:?}", self.0),
        }
    }
}

impl std::fmt::Debug for IntrospectionFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionFlags")
            .field("introspect", &self.introspect)
            .field("introspection_url", &self.introspection_url)
            .field("introspection_client_id", &self.introspection_client_id)
            .field(
                "introspection_client_secret",
                &self
                    .introspection_client_secret
                    .as_ref()
                    .map(|_| "<redacted>"),
            )
            .field("introspection_client_cert", &self.introspection_client_cert)
            .field("introspection_client_key", &self.introspection_client_key)
            .finish()
    }
}

impl IntrospectionFlags {
    /// Opaque tokens are introspected: `--introspect` or `--introspection-url`.
    pub fn introspection_on(&self) -> bool {
        self.introspect || self.introspection_url.is_some()
    }

    /// `--introspect` / `--introspection-url` with the client credentials: the introspector
    /// for [`CertBoundBuilder::introspection`] (`None` when introspection is off). The JWKS trust
    /// anchor (`--jwks-ca`) applies to the endpoint too (the builder adds it).
    pub fn introspector(&self) -> Result<Option<certbound::IntrospectorBuilder>, ConfigError> {
        if !self.introspection_on() {
            if self.introspection_client_id.is_some() {
                return Err(ConfigError::new(
                    "--introspection-client-id",
                    "needs --introspect or --introspection-url",
                ));
            }
            return Ok(None);
        }
        let flag = if self.introspect {
            "--introspect"
        } else {
            "--introspection-url"
        };
        let client_id = self.introspection_client_id.clone().ok_or_else(|| {
            ConfigError::new(flag, "needs --introspection-client-id and its credentials")
        })?;
        let auth = match (
            &self.introspection_client_secret,
            &self.introspection_client_cert,
            &self.introspection_client_key,
        ) {
            (Some(secret), None, None) => {
                IntrospectionAuth::client_secret_basic(client_id, secret.clone())
            }
            (None, Some(cert), Some(key)) => IntrospectionAuth::tls_client_auth(
                client_id,
                read_file("--introspection-client-cert", cert, std::fs::read)?,
                read_file("--introspection-client-key", key, std::fs::read)?,
            ),
            _ => {
                return Err(ConfigError::new(
                    "--introspection-client-id",
                    "needs --introspection-client-secret (client_secret_basic) or \
                     --introspection-client-cert with --introspection-client-key (tls_client_auth)",
                ))
            }
        };
        let mut introspector = Introspector::builder().auth(auth);
        if let Some(url) = &self.introspection_url {
            introspector = introspector.endpoint(url.clone());
        }
        Ok(Some(introspector))
    }
}

/// The DPoP settings and a line saying what is on (for the start-up banner).
#[derive(Debug)]
pub struct DpopSetup {
    /// What the layer is given.
    pub dpop: Dpop,
    /// Nonces and replay store in words, e.g. `nonces off; replay store in memory (this
    /// process only)`.
    pub summary: String,
}

/// The server's TLS configuration and the client-certificate mode in words.
#[derive(Debug)]
pub struct TlsSetup {
    /// For [`TlsListener::bind`](certbound::tls::TlsListener::bind).
    pub config: Arc<rustls::ServerConfig>,
    /// E.g. `CA mode (tls_client_auth, chain must verify to ca.pem)`.
    pub mode: String,
}

fn read_file<'p, T, E: std::fmt::Display>(
    flag: &str,
    path: &'p Path,
    read: impl FnOnce(&'p Path) -> Result<T, E>,
) -> Result<T, ConfigError> {
    read(path).map_err(|e| ConfigError::new(format!("{flag} {}", path.display()), e))
}

impl ApiConfig {
    /// DPoP is on: asked for, or implied by a nonce key or a replay store.
    pub fn dpop_on(&self) -> bool {
        self.dpop || self.dpop_nonce_key.is_some() || self.replay_store.is_some()
    }

    /// The layer's settings from the flags: binding policy, token cache, typed tokens, the
    /// JWKS trust anchor and — with `--issuer` — the issuer, its audience and where its keys
    /// come from. Without `--issuer` the caller names one (the example starts a dev issuer).
    ///
    /// Proxy, public URL and DPoP settings are separate steps
    /// ([`forwarded_certificates`](Self::forwarded_certificates),
    /// [`public_url`](Self::public_url), [`dpop_setup`](Self::dpop_setup)); [`layer`](Self::layer)
    /// applies them all.
    pub fn token_validation(&self) -> Result<CertBoundBuilder, ConfigError> {
        let binding: BindingPolicy = self
            .binding
            .parse()
            .map_err(|e| ConfigError::new("--binding", e))?;
        let mut builder = CertBound::builder().binding(binding);
        if self.no_token_cache {
            builder = builder.no_token_cache();
        }
        if self.require_at_jwt {
            builder = builder.require_at_jwt();
        }
        if let Some(path) = &self.jwks_ca {
            builder =
                builder.jwks_root_certificates_pem(read_file("--jwks-ca", path, std::fs::read)?);
        }
        let Some(issuer) = &self.issuer else {
            return Ok(builder);
        };
        let audience = self
            .audience
            .clone()
            .ok_or_else(|| ConfigError::new("--issuer", "needs --audience (the API's `aud`)"))?;
        builder = builder.issuer(issuer.clone()).audience(audience);
        if let Some(uri) = &self.jwks_uri {
            builder = builder.jwks_uri(uri.clone());
        }
        if let Some(path) = &self.jwks_file {
            builder = builder.key_source(read_file("--jwks-file", path, StaticJwks::from_file)?);
        }
        Ok(builder)
    }

    /// Opaque tokens are introspected: `--introspect` or `--introspection-url`.
    pub fn introspection_on(&self) -> bool {
        self.introspection.introspection_on()
    }

    /// See [`IntrospectionFlags::introspector`].
    pub fn introspection(&self) -> Result<Option<certbound::IntrospectorBuilder>, ConfigError> {
        self.introspection.introspector()
    }

    /// `--client-cert-header` + `--trusted-proxy` + `--xfcc-hops`: where the client certificate
    /// comes from behind a proxy (`None`: from this server's own TLS handshake).
    pub fn forwarded_certificates(&self) -> Result<Option<ForwardedCertificates>, ConfigError> {
        let Some(spec) = &self.client_cert_header else {
            if self.plain_http {
                return Err(ConfigError::new(
                    "--plain-http",
                    "needs --client-cert-header (the proxy forwards the certificate)",
                ));
            }
            return Ok(None);
        };
        let format = ForwardedFormat::parse_spec(spec)
            .map_err(|e| ConfigError::new(format!("--client-cert-header {spec}"), e))?;
        if self.trusted_proxy.is_empty() {
            return Err(ConfigError::new(
                "--client-cert-header",
                "needs at least one --trusted-proxy CIDR",
            ));
        }
        Ok(Some(
            ForwardedCertificates::new(format, self.trusted_proxy.clone())
                .xfcc_hops(usize::from(self.xfcc_hops)),
        ))
    }

    /// `--public-url`, checked: an absolute http(s) URL without query or fragment, without a
    /// trailing `/`.
    pub fn public_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(url) = &self.public_url else {
            return Ok(None);
        };
        let flag = || format!("--public-url {url}");
        let parsed: http::Uri = url.parse().map_err(|e| ConfigError::new(flag(), e))?;
        let scheme_ok = matches!(parsed.scheme_str(), Some("https" | "http"));
        if !scheme_ok
            || parsed.authority().is_none()
            || parsed.query().is_some()
            || url.contains('#')
        {
            return Err(ConfigError::new(
                flag(),
                "expected an absolute https:// (or http://) URL without query or fragment, \
                 e.g. https://api.example.com",
            ));
        }
        Ok(Some(url.trim_end_matches('/').to_owned()))
    }

    /// `--dpop`, `--dpop-nonce-key`, `--replay-store`: the DPoP settings, when DPoP is on (or
    /// `force`d on, as the example does in dev mode). Redis is connected to (and pinged) here,
    /// so an unreachable one stops the start-up.
    pub async fn dpop_setup(&self, force: bool) -> Result<Option<DpopSetup>, ConfigError> {
        if !(force || self.dpop_on()) {
            return Ok(None);
        }
        let mut dpop = Dpop::default();
        let mut nonces = "nonces off".to_owned();
        if let Some(path) = &self.dpop_nonce_key {
            let keys = read_file("--dpop-nonce-key", path, |p| {
                std::fs::read_to_string(p)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        NonceKeys::from_key_file(&text, NONCE_LIFETIME).map_err(|e| e.to_string())
                    })
            })?;
            nonces = format!(
                "nonces required (keys from {}, valid {} s)",
                path.display(),
                keys.lifetime_secs()
            );
            dpop = dpop.nonce_keys(keys);
        }
        let replay = match &self.replay_store {
            Some(url) => {
                let store = RedisReplayStore::connect(url.expose().to_owned())
                    .await
                    .map_err(|e| {
                        ConfigError::new("--replay-store", format!("{e} (is Redis running?)"))
                    })?;
                let shown = format!("Redis at {} (keys {}…)", store.url(), store.key_prefix());
                dpop = dpop.replay_store(store);
                shown
            }
            None => "in memory (this process only)".to_owned(),
        };
        Ok(Some(DpopSetup {
            dpop,
            summary: format!("{nonces}; replay store {replay}"),
        }))
    }

    /// Applies the proxy, public-URL and DPoP settings to `builder` (from
    /// [`token_validation`](Self::token_validation), plus whatever the caller added). Returns
    /// the DPoP summary line when DPoP is on.
    pub async fn layer(
        &self,
        builder: CertBoundBuilder,
        force_dpop: bool,
    ) -> Result<(CertBoundBuilder, Option<String>), ConfigError> {
        let mut builder = builder;
        if let Some(introspector) = self.introspection()? {
            builder = builder.introspection(introspector);
        }
        if let Some(forwarded) = self.forwarded_certificates()? {
            builder = builder.forwarded_certificates(forwarded);
        }
        if let Some(url) = self.public_url()? {
            builder = builder.public_url(url);
        }
        let mut summary = None;
        if let Some(setup) = self.dpop_setup(force_dpop).await? {
            builder = builder.dpop(setup.dpop);
            summary = Some(setup.summary);
        }
        Ok((builder, summary))
    }

    /// The server's TLS configuration: `--tls-cert`/`--tls-key` (or `fallback`, e.g. a dev
    /// certificate, when they are not given), and the client-certificate mode from
    /// `--client-ca`/`--client-crl`.
    pub fn tls(
        &self,
        fallback: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<TlsSetup, ConfigError> {
        let (chain, key) = match (&self.tls_cert, &self.tls_key, fallback) {
            (Some(cert), Some(key), _) => (
                read_file("--tls-cert", cert, load_certs)?,
                read_file("--tls-key", key, load_private_key)?,
            ),
            (None, None, Some(fallback)) => fallback,
            _ => {
                return Err(ConfigError::new(
                    "--tls-cert",
                    "--tls-cert and --tls-key are required together",
                ))
            }
        };
        let (client_auth, mode) = match &self.client_ca {
            Some(path) => {
                let roots = read_file("--client-ca", path, load_ca_roots)?;
                let mut client_auth = ClientAuth::ca(roots);
                for crl in &self.client_crl {
                    client_auth = client_auth.with_crls(read_file("--client-crl", crl, load_crls)?);
                }
                let revocation = match client_auth.crl_count() {
                    0 => String::new(),
                    n => format!(", {n} CRL(s) checked"),
                };
                (
                    client_auth,
                    format!(
                        "CA mode (tls_client_auth, chain must verify to {}{revocation})",
                        path.display()
                    ),
                )
            }
            None => (
                ClientAuth::self_signed(),
                "self-signed mode (self_signed_tls_client_auth: any certificate, key possession \
                 checked)"
                    .to_owned(),
            ),
        };
        let config = server_config(chain, key, client_auth)
            .map_err(|e| ConfigError::new("--tls-cert", format!("TLS configuration: {e}")))?;
        Ok(TlsSetup { config, mode })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        api: ApiConfig,
    }

    fn parse(args: &[&str]) -> Result<ApiConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("api").chain(args.iter().copied())).map(|c| c.api)
    }

    #[test]
    fn issuer_needs_audience_and_jwks_flags_need_issuer() {
        assert!(parse(&["--issuer", "https://a/"]).is_err());
        assert!(parse(&["--jwks-uri", "https://a/jwks"]).is_err());
        assert!(parse(&["--tls-cert", "x.pem"]).is_err());
        assert!(parse(&["--client-crl", "x.crl"]).is_err());
        assert!(parse(&["--xfcc-hops", "0"]).is_err());
        assert!(parse(&["--binding", "sometimes"]).is_err());
    }

    #[test]
    fn proxy_settings_are_checked_together() {
        let plain = parse(&["--plain-http"]).unwrap();
        assert_eq!(
            plain.forwarded_certificates().unwrap_err().flag(),
            "--plain-http"
        );
        let bad = parse(&[
            "--client-cert-header",
            "martian",
            "--trusted-proxy",
            "10.0.0.0/8",
        ])
        .unwrap();
        assert_eq!(
            bad.forwarded_certificates().unwrap_err().flag(),
            "--client-cert-header martian"
        );
        let none = parse(&[]).unwrap();
        assert!(none.forwarded_certificates().unwrap().is_none());
    }

    #[test]
    fn public_url_must_be_an_origin_and_path() {
        let ok = parse(&["--public-url", "https://api.example.com/v1/"]).unwrap();
        assert_eq!(
            ok.public_url().unwrap().as_deref(),
            Some("https://api.example.com/v1")
        );
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://api.example.com/?q=1",
            "https://api.example.com/#x",
        ] {
            let cfg = parse(&["--public-url", bad]).unwrap();
            assert!(cfg.public_url().is_err(), "{bad}");
        }
    }

    #[test]
    fn dpop_is_implied_by_its_settings() {
        assert!(!parse(&[]).unwrap().dpop_on());
        assert!(parse(&["--dpop"]).unwrap().dpop_on());
        assert!(parse(&["--replay-store", "redis://127.0.0.1:1"])
            .unwrap()
            .dpop_on());
        assert!(parse(&["--dpop-nonce-key", "k.txt"]).unwrap().dpop_on());
    }

    #[test]
    fn debug_output_never_shows_the_client_secret() {
        let config = parse(&[
            "--introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-secret",
            "do-not-print-me",
        ])
        .unwrap();
        for shown in [format!("{config:?}"), format!("{:?}", config.introspection)] {
            assert!(!shown.contains("do-not-print-me"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
            assert!(shown.contains("\"api\""), "{shown}");
        }
        let auth = config.introspection().unwrap().unwrap();
        assert!(!format!("{auth:?}").contains("do-not-print-me"));
    }

    #[test]
    fn debug_output_never_shows_the_replay_store_password() {
        let config = parse(&[
            "--replay-store",
            "redis://app:hunter2@cache.internal:6379/2",
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("redis://<redacted>@cache.internal:6379/2"),
            "{shown}"
        );
        // Without credentials nothing is hidden; an '@' after the authority is not userinfo.
        let plain: SecretUrl = "redis://cache:6379/0?name=a@b".parse().unwrap();
        assert_eq!(format!("{plain:?}"), "\"redis://cache:6379/0?name=a@b\"");
        assert_eq!(plain.expose(), "redis://cache:6379/0?name=a@b");
    }

    #[test]
    fn introspection_needs_a_client_and_one_kind_of_credentials() {
        assert!(parse(&[]).unwrap().introspection().unwrap().is_none());
        let basic = parse(&[
            "--introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-secret",
            "s",
        ])
        .unwrap();
        assert!(basic.introspection().unwrap().is_some());
        let by_url = parse(&[
            "--introspection-url",
            "https://a/introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-secret",
            "s",
        ])
        .unwrap();
        assert!(by_url.introspection_on());
        assert!(by_url.introspection().unwrap().unwrap().has_endpoint());
        let no_credentials = parse(&["--introspect", "--introspection-client-id", "api"]).unwrap();
        assert_eq!(
            no_credentials.introspection().unwrap_err().flag(),
            "--introspection-client-id"
        );
        let no_client = parse(&["--introspect"]).unwrap();
        assert_eq!(
            no_client.introspection().unwrap_err().flag(),
            "--introspect"
        );
        let unused = parse(&["--introspection-client-id", "api"]).unwrap();
        assert!(unused.introspection().is_err());
        // A secret and a certificate at once, or a certificate without its key: refused by clap.
        assert!(parse(&[
            "--introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-secret",
            "s",
            "--introspection-client-cert",
            "c.pem",
            "--introspection-client-key",
            "k.pem",
        ])
        .is_err());
        assert!(parse(&[
            "--introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-cert",
            "c.pem",
        ])
        .is_err());
        let missing = parse(&[
            "--introspect",
            "--introspection-client-id",
            "api",
            "--introspection-client-cert",
            "/nonexistent/c.pem",
            "--introspection-client-key",
            "/nonexistent/k.pem",
        ])
        .unwrap();
        assert_eq!(
            missing.introspection().unwrap_err().flag(),
            "--introspection-client-cert /nonexistent/c.pem"
        );
    }

    #[test]
    fn missing_files_name_the_flag_and_path() {
        let cfg = parse(&[
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ])
        .unwrap();
        let err = cfg.tls(None).unwrap_err();
        assert_eq!(err.flag(), "--tls-cert /nonexistent/c.pem");
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.tls(None).unwrap_err().flag(), "--tls-cert");
        let cfg = parse(&["--jwks-ca", "/nonexistent/ca.pem"]).unwrap();
        assert_eq!(
            cfg.token_validation().unwrap_err().flag(),
            "--jwks-ca /nonexistent/ca.pem"
        );
    }
}
