//! The flags `certbound serve` shares with the example protected API (same spelling): server
//! certificate and client-certificate mode, issuer and keys, proxy mode, DPoP.
//!
//! Interim: this is replaced by the shared configuration module once it lands (one struct for
//! the example and `serve`); until then it builds the same layer and TLS configuration the
//! example builds, without the example's dev mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use certbound::tls::{
    load_ca_roots, load_certs, load_crls, load_private_key, server_config, ClientAuth,
};
use certbound::{
    BindingPolicy, CertBound, CertBoundBuilder, Dpop, ForwardedCertificates, ForwardedFormat,
    IpCidr, NonceKeys, StaticJwks,
};

use crate::Fatal;

/// How long a DPoP nonce stays valid.
const NONCE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// Token validation, TLS and proxy flags (the example protected API's).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LayerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub(crate) listen: SocketAddr,
    /// Server certificate chain (PEM). Reloaded when the file changes or on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to (tls_client_auth). Without it, any
    /// client certificate is accepted in the handshake and only the token binding decides
    /// (self_signed_tls_client_auth).
    #[arg(long)]
    pub(crate) client_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM or DER) for --client-ca (repeatable).
    #[arg(long = "client-crl", value_name = "PEM", requires = "client_ca")]
    pub(crate) client_crl: Vec<PathBuf>,
    /// Token issuer (`iss`). Its keys are found by discovery unless --jwks-uri or --jwks-file
    /// is given.
    #[arg(long)]
    pub(crate) issuer: Option<String>,
    /// Fetch the issuer's keys from this JWKS URL instead of discovery.
    #[arg(long, requires = "issuer", conflicts_with = "jwks_file")]
    pub(crate) jwks_uri: Option<String>,
    /// Read the issuer's keys from this JWKS file.
    #[arg(long, requires = "issuer")]
    pub(crate) jwks_file: Option<PathBuf>,
    /// Extra trust anchor (PEM) for discovery and JWKS over HTTPS.
    #[arg(long)]
    pub(crate) jwks_ca: Option<PathBuf>,
    /// Audience this API is (`aud` must contain it).
    #[arg(long)]
    pub(crate) audience: Option<String>,
    /// required: every token must be bound; if-bound: bound tokens must match, unbound pass.
    #[arg(long, default_value = "required", value_parser = ["required", "if-bound"])]
    pub(crate) binding: String,
    /// Require RFC 9068 typed tokens (typ: at+jwt).
    #[arg(long)]
    pub(crate) require_at_jwt: bool,
    /// Verify every token's signature on every request (switch off the verified-token cache).
    #[arg(long)]
    pub(crate) no_token_cache: bool,
    /// Behind a TLS-terminating proxy: take the client certificate from this forwarded header,
    /// FORMAT[:HEADER-NAME] — nginx:X-SSL-Client-Cert, xfcc, xfcc-hash-only, rfc9440, alb,
    /// alb-passthrough, traefik, base64-der:X-Client-Cert, auth0-edge, auth0-edge-verified.
    #[arg(long, value_name = "FORMAT[:HEADER]")]
    pub(crate) client_cert_header: Option<String>,
    /// A proxy allowed to forward client certificates — and, with --forward-auth, to name the
    /// original request (CIDR; repeatable).
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub(crate) trusted_proxy: Vec<IpCidr>,
    /// With xfcc / xfcc-hash-only: how many trusted Envoy hops write an element.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub(crate) xfcc_hops: u8,
    /// Listen without TLS (for a proxy on the same host or network).
    #[arg(long)]
    pub(crate) plain_http: bool,
    /// Also accept DPoP-bound tokens (RFC 9449). Implied by --dpop-nonce-key.
    #[arg(long)]
    pub(crate) dpop: bool,
    /// The URL clients use to reach this API (origin and any path prefix): DPoP proofs' `htu`
    /// must name it. Without it: https (http with --plain-http) and the request's Host — or,
    /// from a --trusted-proxy only, its Forwarded / X-Forwarded-Proto, -Host and -Prefix.
    #[arg(long, value_name = "URL")]
    pub(crate) public_url: Option<String>,
    /// Require DPoP nonces (RFC 9449 §8), sealed with the keys in FILE (one 32-byte key per
    /// line, 64 hex digits or base64). Implies --dpop.
    #[arg(long, value_name = "FILE")]
    pub(crate) dpop_nonce_key: Option<PathBuf>,
}

fn context<T, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl std::fmt::Display,
) -> Result<T, Fatal> {
    r.map_err(|e| Fatal::new(format!("{what}: {e}")))
}

impl LayerArgs {
    /// The layer builder: issuer, keys, binding, proxy mode, public URL, DPoP.
    pub(crate) fn layer_builder(&self) -> Result<CertBoundBuilder, Fatal> {
        let (Some(issuer), Some(audience)) = (&self.issuer, &self.audience) else {
            return Err(Fatal::new("--issuer and --audience are required"));
        };
        let binding: BindingPolicy = context(self.binding.parse(), "--binding")?;
        let mut builder = CertBound::builder()
            .binding(binding)
            .issuer(issuer.clone())
            .audience(audience.clone());
        if self.no_token_cache {
            builder = builder.no_token_cache();
        }
        if self.require_at_jwt {
            builder = builder.require_at_jwt();
        }
        if let Some(path) = &self.jwks_ca {
            let pem = context(std::fs::read(path), format!("--jwks-ca {}", path.display()))?;
            builder = builder.jwks_root_certificates_pem(pem);
        }
        if let Some(uri) = &self.jwks_uri {
            builder = builder.jwks_uri(uri.clone());
        }
        if let Some(path) = &self.jwks_file {
            let keys = context(
                StaticJwks::from_file(path),
                format!("--jwks-file {}", path.display()),
            )?;
            builder = builder.key_source(keys);
        }
        if let Some(forwarded) = self.forwarded()? {
            builder = builder.forwarded_certificates(forwarded);
        }
        if let Some(url) = &self.public_url {
            builder = builder.public_url(public_url(url)?);
        }
        if let Some(dpop) = self.dpop_config()? {
            builder = builder.dpop(dpop);
        }
        Ok(builder)
    }

    fn forwarded(&self) -> Result<Option<ForwardedCertificates>, Fatal> {
        let Some(spec) = &self.client_cert_header else {
            return Ok(None);
        };
        let format = ForwardedFormat::parse_spec(spec)
            .map_err(|e| Fatal::new(format!("--client-cert-header {spec}: {e}")))?;
        if self.trusted_proxy.is_empty() {
            return Err(Fatal::new(
                "--client-cert-header needs at least one --trusted-proxy CIDR",
            ));
        }
        Ok(Some(
            ForwardedCertificates::new(format, self.trusted_proxy.clone())
                .xfcc_hops(usize::from(self.xfcc_hops)),
        ))
    }

    fn dpop_config(&self) -> Result<Option<Dpop>, Fatal> {
        if !self.dpop && self.dpop_nonce_key.is_none() {
            return Ok(None);
        }
        let mut dpop = Dpop::default();
        if let Some(path) = &self.dpop_nonce_key {
            let what = format!("--dpop-nonce-key {}", path.display());
            let text = context(std::fs::read_to_string(path), &what)?;
            let keys = context(NonceKeys::from_key_file(&text, NONCE_LIFETIME), &what)?;
            dpop = dpop.nonce_keys(keys);
        }
        Ok(Some(dpop))
    }

    /// The files the TLS configuration is read from (watched for changes).
    pub(crate) fn tls_files(&self) -> Vec<PathBuf> {
        self.tls_cert
            .iter()
            .chain(&self.tls_key)
            .chain(&self.client_ca)
            .chain(&self.client_crl)
            .cloned()
            .collect()
    }

    /// The server's TLS configuration, read from the files now; `None` with --plain-http.
    pub(crate) fn tls_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, Fatal> {
        if self.plain_http {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err(Fatal::new(
                "--tls-cert and --tls-key are required (or --plain-http behind a TLS-terminating proxy)",
            ));
        };
        let chain = context(load_certs(cert), format!("--tls-cert {}", cert.display()))?;
        let key = context(
            load_private_key(key),
            format!("--tls-key {}", key.display()),
        )?;
        let client_auth = match &self.client_ca {
            Some(path) => {
                let roots = context(
                    load_ca_roots(path),
                    format!("--client-ca {}", path.display()),
                )?;
                let mut client_auth = ClientAuth::ca(roots);
                for crl in &self.client_crl {
                    let crls = context(load_crls(crl), format!("--client-crl {}", crl.display()))?;
                    client_auth = client_auth.with_crls(crls);
                }
                client_auth
            }
            None => ClientAuth::self_signed(),
        };
        Ok(Some(context(
            server_config(chain, key, client_auth),
            "TLS configuration",
        )?))
    }
}

/// `--public-url`: an absolute http(s) URL without query or fragment.
fn public_url(url: &str) -> Result<String, Fatal> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| Fatal::new(format!("--public-url {url}: {e}")))?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("https" | "http"));
    if !scheme_ok || parsed.authority().is_none() || parsed.query().is_some() || url.contains('#') {
        return Err(Fatal::new(format!(
            "--public-url {url}: expected an absolute https:// (or http://) URL without query or \
             fragment, e.g. https://api.example.com"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
