//! The certbound example API: a protected route that answers only clients whose access token is
//! bound to the TLS client certificate they connect with (RFC 8705).
//!
//! With no flags it runs a complete local setup — dev CA, server and client certificates, a dev
//! issuer serving discovery and JWKS, tokens bound to client A — and prints curl commands to try:
//!
//! ```text
//! cargo run --example protected_api
//! ```
//!
//! With flags it protects a real deployment:
//!
//! ```text
//! cargo run --example protected_api -- --listen 0.0.0.0:8443 \
//!     --tls-cert server.pem --tls-key server.key [--client-ca clients-ca.pem [--client-crl ca.crl]] \
//!     --issuer https://auth.example.com/ [--jwks-uri URL | --jwks-file jwks.json] [--jwks-ca ca.pem] \
//!     --audience https://api.example.com [--binding required|if-bound] [--require-at-jwt]
//! ```
//!
//! DPoP-bound tokens (RFC 9449) too — on by default in dev mode — with a replay cache and nonces
//! that every replica shares:
//!
//! ```text
//! cargo run --example protected_api -- … --dpop --public-url https://api.example.com \
//!     --replay-store redis://127.0.0.1:6379 --dpop-nonce-key nonce-keys.txt
//! ```
//!
//! Behind a TLS-terminating proxy (see docs/deploying-behind-a-proxy.md):
//!
//! ```text
//! cargo run --example protected_api -- --plain-http --listen 127.0.0.1:8080 \
//!     --client-cert-header nginx:X-SSL-Client-Cert --trusted-proxy 127.0.0.1/32 …
//! ```

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certbound::replay::RedisReplayStore;
use certbound::tls::{
    load_ca_roots, load_certs, load_crls, load_private_key, server_config, ClientAuth,
    PlainListener, TlsListener,
};
use certbound::{BindingPolicy, CertBound, CertBoundBuilder, Dpop, StaticJwks};
use certbound::{ForwardedCertificates, ForwardedFormat, IpCidr, NonceKeys};
use certbound_core::{Algorithm, ClientCertificate};
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, DevPki, SigningKey};
use clap::Parser;

/// Serve GET /health (open) and GET /api/hello (certificate-bound token required) over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "protected_api", version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Server certificate chain (PEM). Without it, the dev server certificate is used.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to (tls_client_auth). Without it, any client
    /// certificate is accepted in the handshake and only the token binding decides
    /// (self_signed_tls_client_auth).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM or DER) for --client-ca: client certificates it lists are
    /// refused in the handshake (repeatable). With any CRL, every CA in a client's chain needs
    /// one, or its clients are refused.
    #[arg(long = "client-crl", value_name = "PEM", requires = "client_ca")]
    client_crl: Vec<PathBuf>,
    /// Token issuer (`iss`). Its keys are found by discovery unless --jwks-uri or --jwks-file is given.
    /// Without it, a local dev issuer is started.
    #[arg(long, requires = "audience")]
    issuer: Option<String>,
    /// Fetch the issuer's keys from this JWKS URL instead of discovery.
    #[arg(long, requires = "issuer", conflicts_with = "jwks_file")]
    jwks_uri: Option<String>,
    /// Read the issuer's keys from this JWKS file.
    #[arg(long, requires = "issuer")]
    jwks_file: Option<PathBuf>,
    /// Extra trust anchor (PEM) for discovery and JWKS over HTTPS.
    #[arg(long)]
    jwks_ca: Option<PathBuf>,
    /// Audience this API is (`aud` must contain it). Required with --issuer.
    #[arg(long)]
    audience: Option<String>,
    /// required: every token must be bound; if-bound: bound tokens must match, unbound pass.
    #[arg(long, default_value = "required", value_parser = ["required", "if-bound"])]
    binding: String,
    /// Require RFC 9068 typed tokens (typ: at+jwt).
    #[arg(long)]
    require_at_jwt: bool,
    /// Verify every token's signature on every request (switch off the verified-token cache).
    #[arg(long)]
    no_token_cache: bool,
    /// Behind a TLS-terminating proxy: take the client certificate from this forwarded header,
    /// FORMAT[:HEADER-NAME] — nginx:X-SSL-Client-Cert, xfcc, xfcc-hash-only, rfc9440, alb,
    /// alb-passthrough, traefik, base64-der:X-Client-Cert, auth0-edge, auth0-edge-verified.
    #[arg(long, value_name = "FORMAT[:HEADER]")]
    client_cert_header: Option<String>,
    /// A proxy allowed to forward client certificates (CIDR; repeatable). A forwarded header from
    /// any other peer is refused with 400 and logged.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxy: Vec<IpCidr>,
    /// With xfcc / xfcc-hash-only: how many trusted Envoy hops write an element (the edge one
    /// with SANITIZE_SET, each further one with APPEND_FORWARD). Any other count is refused.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    xfcc_hops: u8,
    /// Listen without TLS (for a proxy on the same host or network); needs --client-cert-header.
    /// Same timeouts and limits as with TLS; the --trusted-proxy networks are not limited per
    /// address.
    #[arg(long)]
    plain_http: bool,
    /// Also accept DPoP-bound tokens (RFC 9449): `Authorization: DPoP <token>` with a `DPoP`
    /// proof header. On in dev mode (no --issuer), and with --dpop-nonce-key or --replay-store.
    #[arg(long)]
    dpop: bool,
    /// The URL clients use to reach this API (origin and any path prefix), e.g.
    /// https://api.example.com: DPoP proofs' `htu` must name it. Without it: https (http with
    /// --plain-http) and the request's Host — or, from a --trusted-proxy only, its Forwarded /
    /// X-Forwarded-Proto, -Host and -Prefix.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Require DPoP nonces (RFC 9449 §8), sealed with the keys in FILE: one 32-byte key per line
    /// (64 hex digits or base64), the first seals, the others still open (rotation). Replicas
    /// with the same file accept each other's nonces. Implies --dpop.
    #[arg(long, value_name = "FILE")]
    dpop_nonce_key: Option<PathBuf>,
    /// Where DPoP proofs are remembered against replay: redis://HOST:PORT (rediss:// for TLS,
    /// redis://user:password@HOST:PORT/DB) — shared by every replica using it. Default: this
    /// process's memory. Redis unreachable at start-up: exit 2; later: 503 with Retry-After.
    /// Implies --dpop.
    #[arg(long, value_name = "redis://HOST:PORT")]
    replay_store: Option<String>,
    /// Where the dev setup keeps its certificates, keys and tokens (dev mode only). Default:
    /// $XDG_RUNTIME_DIR/certbound-dev, else $XDG_CACHE_HOME/certbound-dev, else
    /// $HOME/.cache/certbound-dev. Created with mode 0700; refused if owned by another user or
    /// writable by group or others.
    #[arg(long)]
    dev_dir: Option<PathBuf>,
}

/// A startup failure: one line on stderr, exit code 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(e.to_string())
    }
}

fn context<T, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl std::fmt::Display,
) -> Result<T, Fatal> {
    r.map_err(|e| Fatal(format!("{what}: {e}")))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Rejections (with reason codes) at INFO; not a line per accepted request.
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), Fatal> {
    // Dev material is needed unless both the issuer and the server certificate are real. It lives
    // in a private per-user directory (mode 0700; one owned by someone else or writable by
    // others is refused — exit 2).
    let pki = if args.issuer.is_none() || (args.tls_cert.is_none() && !args.plain_http) {
        let dev_dir = match &args.dev_dir {
            Some(dir) => dir.clone(),
            None => context(certbound_dev::default_dev_dir(), "--dev-dir")?,
        };
        let (pki, created) = DevPki::load_or_create(&dev_dir).map_err(|e| match e {
            // Already names the directory and what to do.
            certbound_dev::DevError::UnsafeDir { .. } => Fatal(format!("{e} (--dev-dir DIR)")),
            e => Fatal(format!("dev certificates: {e}")),
        })?;
        let verb = if created { "created" } else { "reusing" };
        println!(
            "certbound protected API — {verb} dev material in {}",
            dev_dir.display()
        );
        Some(pki)
    } else {
        None
    };

    let (builder, dev_issuer) = token_validation(&args, pki.as_ref()).await?;
    let builder = match proxy_mode(&args)? {
        Some(forwarded) => builder.forwarded_certificates(forwarded),
        None => builder,
    };
    let builder = match &args.public_url {
        Some(url) => builder.public_url(public_url(url)?),
        None => builder,
    };
    let builder = match dpop_config(&args).await? {
        Some(dpop) => builder.dpop(dpop),
        None => builder,
    };
    let auth = context(builder.build().await, "token validation setup")?;
    let app = support::routes(auth);

    if args.plain_http {
        // The proxies' own connections are not limited per address (a busy proxy opens many
        // at once, each with a request); anyone else may hold at most 64 without a request.
        let listener = context(
            PlainListener::bind(args.listen).await,
            format!("--listen {}", args.listen),
        )?
        .trusted_proxies(args.trusted_proxy.iter().copied());
        let addr = listener.local_addr();
        println!(
            "listening on http://{addr} (plain HTTP: a TLS-terminating proxy forwards the client certificate in {})",
            args.client_cert_header.as_deref().unwrap_or("?")
        );
        if let (Some(pki), Some((issuer, signer))) = (&pki, &dev_issuer) {
            let token_path = write_dev_token(pki, issuer.issuer_url(), &audience(&args), signer)?;
            println!(
                "token bound to client A (valid 1 hour): {}",
                token_path.display()
            );
        }
        // The peer address on every request (the layer trusts forwarded certificates only from
        // --trusted-proxy); 10 s to send the headers, 60 s idle keep-alive.
        return context(
            certbound::tls::serve(listener, app)
                .with_graceful_shutdown(shutdown())
                .await,
            "server",
        );
    }

    let (tls, mode) = tls_config(&args, pki.as_ref())?;
    let listener = context(
        TlsListener::bind(args.listen, tls).await,
        format!("--listen {}", args.listen),
    )?;
    let addr = listener.local_addr();
    println!("listening on https://{addr} — client certificates: {mode}");
    if let (Some(pki), Some((issuer, signer))) = (&pki, &dev_issuer) {
        print_walkthrough(
            pki,
            issuer.issuer_url(),
            &audience(&args),
            signer,
            addr.port(),
        )?;
        if dpop_on(&args) {
            print_dpop_walkthrough(&args, pki, issuer.issuer_url(), signer, addr.port())?;
        }
        println!("\nCtrl-C stops the server.");
    }
    // The client certificate on every request; header-read (10 s) and idle (60 s) timeouts.
    context(
        certbound::tls::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await,
        "server",
    )
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

fn audience(args: &Args) -> String {
    args.audience
        .clone()
        .unwrap_or_else(|| "https://api.example".into())
}

/// The server certificate and the client-certificate mode, with a line describing the mode.
fn tls_config(
    args: &Args,
    pki: Option<&DevPki>,
) -> Result<(std::sync::Arc<rustls::ServerConfig>, String), Fatal> {
    let (chain, key) = match (&args.tls_cert, &args.tls_key, pki) {
        (Some(cert), Some(key), _) => (
            context(load_certs(cert), format!("--tls-cert {}", cert.display()))?,
            context(
                load_private_key(key),
                format!("--tls-key {}", key.display()),
            )?,
        ),
        (_, _, Some(pki)) => (vec![pki.server.cert_der.clone()], pki.server.private_key()),
        _ => {
            return Err(Fatal(
                "--tls-cert and --tls-key are required together".into(),
            ))
        }
    };
    let (client_auth, mode) = match &args.client_ca {
        Some(path) => {
            let roots = context(load_ca_roots(path), format!("--client-ca {}", path.display()))?;
            let mut client_auth = ClientAuth::ca(roots);
            for crl in &args.client_crl {
                let crls = context(load_crls(crl), format!("--client-crl {}", crl.display()))?;
                client_auth = client_auth.with_crls(crls);
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
            "self-signed mode (self_signed_tls_client_auth: any certificate, key possession checked)".into(),
        ),
    };
    Ok((
        context(server_config(chain, key, client_auth), "TLS configuration")?,
        mode,
    ))
}

/// The issuer and its keys: real ones from the flags, or a local dev issuer.
async fn token_validation(
    args: &Args,
    pki: Option<&DevPki>,
) -> Result<(CertBoundBuilder, Option<(TestIssuer, SigningKey)>), Fatal> {
    let binding: BindingPolicy = args.binding.parse()?;
    let mut builder = CertBound::builder().binding(binding);
    if args.no_token_cache {
        builder = builder.no_token_cache();
    }
    if args.require_at_jwt {
        builder = builder.require_at_jwt();
    }
    if let Some(path) = &args.jwks_ca {
        let pem = context(std::fs::read(path), format!("--jwks-ca {}", path.display()))?;
        builder = builder.jwks_root_certificates_pem(pem);
    }
    let Some(issuer) = &args.issuer else {
        let dev_dir = pki
            .map(|pki| pki.dir.as_path())
            .ok_or_else(|| Fatal("the dev issuer needs the dev directory".into()))?;
        let signer = dev_signing_key(dev_dir)?;
        let issuer = context(TestIssuer::start(&[&signer]).await, "dev issuer")?;
        let builder = builder
            .issuer(issuer.issuer_url())
            .audience(audience(args))
            .jwks_root_certificates_pem(issuer.ca_pem().as_bytes().to_vec());
        return Ok((builder, Some((issuer, signer))));
    };
    builder = builder.issuer(issuer.clone()).audience(audience(args));
    if let Some(uri) = &args.jwks_uri {
        builder = builder.jwks_uri(uri.clone());
    }
    if let Some(path) = &args.jwks_file {
        let keys = context(
            StaticJwks::from_file(path),
            format!("--jwks-file {}", path.display()),
        )?;
        builder = builder.key_source(keys);
    }
    Ok((builder, None))
}

/// `--client-cert-header` + `--trusted-proxy`: where the client certificate comes from behind a proxy.
fn proxy_mode(args: &Args) -> Result<Option<ForwardedCertificates>, Fatal> {
    let Some(spec) = &args.client_cert_header else {
        if args.plain_http {
            return Err(Fatal(
                "--plain-http needs --client-cert-header (the proxy forwards the certificate)"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let format = ForwardedFormat::parse_spec(spec)
        .map_err(|e| Fatal(format!("--client-cert-header {spec}: {e}")))?;
    if args.trusted_proxy.is_empty() {
        return Err(Fatal(
            "--client-cert-header needs at least one --trusted-proxy CIDR".into(),
        ));
    }
    Ok(Some(
        ForwardedCertificates::new(format, args.trusted_proxy.clone())
            .xfcc_hops(usize::from(args.xfcc_hops)),
    ))
}

/// The dev issuer's signing key, kept in the dev directory so restarts keep the same `kid`.
fn dev_signing_key(dir: &Path) -> Result<SigningKey, Fatal> {
    let path = dir.join("jwt-signing.key");
    if let Ok(pem) = std::fs::read_to_string(&path) {
        context(certbound_dev::dir::narrow_private(&path), path.display())?; // mode 0600
        return context(
            SigningKey::from_pkcs8_pem("dev-1", Algorithm::ES256, &pem),
            path.display(),
        );
    }
    let key = SigningKey::generate("dev-1", Algorithm::ES256)?;
    context(
        certbound_dev::write_private(&path, key.pkcs8_pem()),
        path.display(),
    )?;
    Ok(key)
}

/// Mints a token bound to client A and writes it next to the certificates.
fn write_dev_token(
    pki: &DevPki,
    issuer: &str,
    audience: &str,
    signer: &SigningKey,
) -> Result<PathBuf, Fatal> {
    let client_a = ClientCertificate::from_der(pki.client_a.cert_der.to_vec());
    let token = signer.sign(&bound_claims(issuer, audience, client_a.thumbprint()))?;
    let token_path = pki.dir.join("token-a.jwt");
    context(
        certbound_dev::write_private(&token_path, &token),
        token_path.display(),
    )?;
    Ok(token_path)
}

/// Writes client A's token and prints curl commands that succeed and fail.
fn print_walkthrough(
    pki: &DevPki,
    issuer: &str,
    audience: &str,
    signer: &SigningKey,
    port: u16,
) -> Result<(), Fatal> {
    write_dev_token(pki, issuer, audience, signer)?;
    let client_a = ClientCertificate::from_der(pki.client_a.cert_der.to_vec());
    let d = pki.dir.display();
    let url = format!("https://localhost:{port}/api/hello");
    let bearer = format!("-H \"Authorization: Bearer $(cat {d}/token-a.jwt)\"");
    println!(
        "\nissuer (dev, discovery + JWKS):               {issuer}\n\
         client A's certificate thumbprint (x5t#S256): {}\n\
         token bound to client A (valid 1 hour):       {d}/token-a.jwt\n\n\
         Try it from another shell:\n\n\
         # 1. client A, token bound to client A → 200\n\
         curl -sS -i --cacert {d}/ca.pem --cert {d}/client-a.pem --key {d}/client-a.key {bearer} {url}\n\n\
         # 2. client B's certificate with client A's token → 401 invalid_token (binding_mismatch)\n\
         curl -sS -i --cacert {d}/ca.pem --cert {d}/client-b.pem --key {d}/client-b.key {bearer} {url}\n\n\
         # 3. no client certificate → 401 invalid_token (missing_client_certificate)\n\
         curl -sS -i --cacert {d}/ca.pem {bearer} {url}\n\n\
         # 4. no token → 401, no error code\n\
         curl -sS -i --cacert {d}/ca.pem --cert {d}/client-a.pem --key {d}/client-a.key {url}",
        client_a.thumbprint()
    );
    Ok(())
}

/// DPoP is on: asked for, implied by a DPoP setting, or dev mode (the dev issuer binds tokens
/// both ways, so the walk-through shows both).
fn dpop_on(args: &Args) -> bool {
    args.dpop
        || args.issuer.is_none()
        || args.dpop_nonce_key.is_some()
        || args.replay_store.is_some()
}

/// `--public-url`: an absolute http(s) URL without query or fragment.
fn public_url(url: &str) -> Result<String, Fatal> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| Fatal(format!("--public-url {url}: {e}")))?;
    let scheme_ok = matches!(parsed.scheme_str(), Some("https" | "http"));
    if !scheme_ok || parsed.authority().is_none() || parsed.query().is_some() || url.contains('#') {
        return Err(Fatal(format!(
            "--public-url {url}: expected an absolute https:// (or http://) URL without query or \
             fragment, e.g. https://api.example.com"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// How long a DPoP nonce stays valid.
const NONCE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// `--dpop`, `--dpop-nonce-key`, `--replay-store`: the DPoP settings, with a line saying what
/// is on. Redis is connected to (and pinged) here, so an unreachable one stops the start-up.
async fn dpop_config(args: &Args) -> Result<Option<Dpop>, Fatal> {
    if !dpop_on(args) {
        return Ok(None);
    }
    let mut dpop = Dpop::default();
    let mut nonces = "off".to_owned();
    if let Some(path) = &args.dpop_nonce_key {
        let what = format!("--dpop-nonce-key {}", path.display());
        let text = context(std::fs::read_to_string(path), &what)?;
        let keys = context(NonceKeys::from_key_file(&text, NONCE_LIFETIME), &what)?;
        nonces = format!(
            "required (keys from {}, valid {} s)",
            path.display(),
            keys.lifetime_secs()
        );
        dpop = dpop.nonce_keys(keys);
    }
    let replay = match &args.replay_store {
        Some(url) => {
            let store = RedisReplayStore::connect(url.clone())
                .await
                .map_err(|e| Fatal(format!("--replay-store: {e} (is Redis running?)")))?;
            let shown = format!("Redis at {} (keys {}…)", store.url(), store.key_prefix());
            dpop = dpop.replay_store(store);
            shown
        }
        None => "in memory (this process only)".to_owned(),
    };
    let htu = args
        .public_url
        .as_deref()
        .map_or("the request's Host".to_owned(), |u| format!("{u}/…"));
    let why = if args.dpop {
        ""
    } else if args.issuer.is_none() {
        " (dev mode implies --dpop)"
    } else {
        " (implied by --dpop-nonce-key / --replay-store)"
    };
    println!("DPoP: accepted{why}; htu = {htu}; nonces {nonces}; replay store {replay}");
    Ok(Some(dpop))
}

/// The dev DPoP client key (ES256, PKCS#8 PEM, mode 0600), kept in the dev directory.
fn dev_dpop_key(dir: &Path) -> Result<(DpopKey, PathBuf), Fatal> {
    let path = dir.join("dpop-client.key");
    if let Ok(pem) = std::fs::read_to_string(&path) {
        context(certbound_dev::dir::narrow_private(&path), path.display())?; // mode 0600
        let key = context(
            DpopKey::from_pkcs8_pem(Algorithm::ES256, &pem),
            path.display(),
        )?;
        return Ok((key, path));
    }
    let key = DpopKey::generate(Algorithm::ES256)?;
    context(
        certbound_dev::write_private(&path, key.pkcs8_pem()),
        path.display(),
    )?;
    Ok((key, path))
}

/// Writes the dev DPoP key and a token bound to it, and prints curl commands with proofs from
/// `certbound dpop proof`.
fn print_dpop_walkthrough(
    args: &Args,
    pki: &DevPki,
    issuer: &str,
    signer: &SigningKey,
    port: u16,
) -> Result<(), Fatal> {
    let (key, key_path) = dev_dpop_key(&pki.dir)?;
    let token = signer.sign(&dpop_bound_claims(issuer, &audience(args), &key.jkt()))?;
    let token_path = pki.dir.join("token-dpop.jwt");
    context(
        certbound_dev::write_private(&token_path, &token),
        token_path.display(),
    )?;
    let d = pki.dir.display();
    let url = format!("https://localhost:{port}/api/hello");
    // The proof names the URL the client uses: the public URL when one is set.
    let htu = match &args.public_url {
        Some(public) => format!("{}/api/hello", public.trim_end_matches('/')),
        None => url.clone(),
    };
    let (k, t) = (key_path.display(), token_path.display());
    let proof =
        format!("certbound dpop proof --key {k} --method GET --url {htu} --token \"$(cat {t})\"");
    let auth = format!("-H \"Authorization: DPoP $(cat {t})\"");
    println!(
        "\nDPoP (RFC 9449; no client certificate — the token is bound to a key the client proves it holds):\n\
         DPoP client key (ES256, PKCS#8):              {k}\n\
         its thumbprint (cnf.jkt):                     {}\n\
         token bound to that key (valid 1 hour):       {t}\n\
         proofs come from the certbound CLI (cargo install --path crates/certbound-cli)\n",
        key.jkt()
    );
    if args.dpop_nonce_key.is_some() {
        println!(
            "# 5. DPoP proof without a nonce → 401 use_dpop_nonce, with a DPoP-Nonce header\n\
             curl -sS -i --cacert {d}/ca.pem {auth} -H \"DPoP: $({proof})\" {url}\n\n\
             # 6. the same with NONCE set to that DPoP-Nonce header's value → 200\n\
             curl -sS -i --cacert {d}/ca.pem {auth} -H \"DPoP: $({proof} --nonce \"$NONCE\")\" {url}"
        );
    } else {
        println!(
            "# 5. DPoP token with a fresh proof → 200\n\
             curl -sS -i --cacert {d}/ca.pem {auth} -H \"DPoP: $({proof})\" {url}\n\n\
             # 6. the DPoP token sent as Bearer → 401 invalid_token (dpop_bound_token_as_bearer)\n\
             curl -sS -i --cacert {d}/ca.pem -H \"Authorization: Bearer $(cat {t})\" {url}\n\n\
             # 7. a proof for another URL → 401 invalid_dpop_proof\n\
             curl -sS -i --cacert {d}/ca.pem {auth} -H \"DPoP: $({})\" {url}",
            proof.replace("/api/hello", "/api/admin")
        );
    }
    Ok(())
}
