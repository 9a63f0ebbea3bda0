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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certbound::tls::{PlainListener, TlsListener};
use certbound::CertBoundBuilder;
use certbound_cli::config::ApiConfig;
use certbound_core::{Algorithm, ClientCertificate};
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, DevPki, SigningKey};
use clap::Parser;

/// Serve GET /health (open) and GET /api/hello (certificate-bound token required) over mutual TLS.
///
/// Without --issuer a local dev issuer is started (and DPoP is on); without --tls-cert the dev
/// server certificate is used.
#[derive(Debug, Parser)]
#[command(name = "protected_api", version, about, long_about = None)]
struct Args {
    /// The API's settings: the same flags as `certbound serve`.
    #[command(flatten)]
    api: ApiConfig,
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
    let api = &args.api;
    // Dev material is needed unless both the issuer and the server certificate are real. It lives
    // in a private per-user directory (mode 0700; one owned by someone else or writable by
    // others is refused — exit 2).
    let pki = if api.issuer.is_none() || (api.tls_cert.is_none() && !api.plain_http) {
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

    let (builder, dev_issuer) = token_validation(api, pki.as_ref()).await?;
    // Dev mode shows DPoP beside mTLS: the dev issuer binds tokens both ways.
    let dev_mode = api.issuer.is_none();
    let (builder, dpop_summary) = api.layer(builder, dev_mode).await?;
    if let Some(summary) = &dpop_summary {
        let htu = api
            .public_url
            .as_deref()
            .map_or("the request's Host".to_owned(), |u| {
                format!("{}/…", u.trim_end_matches('/'))
            });
        let why = if api.dpop {
            ""
        } else if dev_mode {
            " (dev mode implies --dpop)"
        } else {
            " (implied by --dpop-nonce-key / --replay-store)"
        };
        println!("DPoP: accepted{why}; htu = {htu}; {summary}");
    }
    let auth = context(builder.build().await, "token validation setup")?;
    let app = support::routes(auth);

    if api.plain_http {
        // The proxies' own connections are not limited per address (a busy proxy opens many
        // at once, each with a request); anyone else may hold at most 64 without a request.
        let listener = context(
            PlainListener::bind(api.listen).await,
            format!("--listen {}", api.listen),
        )?
        .trusted_proxies(api.trusted_proxy.iter().copied());
        let addr = listener.local_addr();
        println!(
            "listening on http://{addr} (plain HTTP: a TLS-terminating proxy forwards the client certificate in {})",
            api.client_cert_header.as_deref().unwrap_or("?")
        );
        if let (Some(pki), Some((issuer, signer))) = (&pki, &dev_issuer) {
            let token_path = write_dev_token(pki, issuer.issuer_url(), &audience(api), signer)?;
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

    let dev_certificate = pki
        .as_ref()
        .map(|pki| (vec![pki.server.cert_der.clone()], pki.server.private_key()));
    let tls = api.tls(dev_certificate)?;
    let listener = context(
        TlsListener::bind(api.listen, tls.config).await,
        format!("--listen {}", api.listen),
    )?;
    let addr = listener.local_addr();
    println!(
        "listening on https://{addr} — client certificates: {}",
        tls.mode
    );
    if let (Some(pki), Some((issuer, signer))) = (&pki, &dev_issuer) {
        print_walkthrough(
            pki,
            issuer.issuer_url(),
            &audience(api),
            signer,
            addr.port(),
        )?;
        if dpop_summary.is_some() {
            print_dpop_walkthrough(api, pki, issuer.issuer_url(), signer, addr.port())?;
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

fn audience(api: &ApiConfig) -> String {
    api.audience
        .clone()
        .unwrap_or_else(|| "https://api.example".into())
}

/// The issuer and its keys: real ones from the flags, or a local dev issuer.
async fn token_validation(
    api: &ApiConfig,
    pki: Option<&DevPki>,
) -> Result<(CertBoundBuilder, Option<(TestIssuer, SigningKey)>), Fatal> {
    let builder = api.token_validation()?;
    if api.issuer.is_some() {
        return Ok((builder, None));
    }
    let dev_dir = pki
        .map(|pki| pki.dir.as_path())
        .ok_or_else(|| Fatal("the dev issuer needs the dev directory".into()))?;
    let signer = dev_signing_key(dev_dir)?;
    let issuer = context(TestIssuer::start(&[&signer]).await, "dev issuer")?;
    let builder = builder
        .issuer(issuer.issuer_url())
        .audience(audience(api))
        .jwks_root_certificates_pem(issuer.ca_pem().as_bytes().to_vec());
    Ok((builder, Some((issuer, signer))))
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
    api: &ApiConfig,
    pki: &DevPki,
    issuer: &str,
    signer: &SigningKey,
    port: u16,
) -> Result<(), Fatal> {
    let (key, key_path) = dev_dpop_key(&pki.dir)?;
    let token = signer.sign(&dpop_bound_claims(issuer, &audience(api), &key.jkt()))?;
    let token_path = pki.dir.join("token-dpop.jwt");
    context(
        certbound_dev::write_private(&token_path, &token),
        token_path.display(),
    )?;
    let d = pki.dir.display();
    let url = format!("https://localhost:{port}/api/hello");
    // The proof names the URL the client uses: the public URL when one is set.
    let htu = match &api.public_url {
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
    if api.dpop_nonce_key.is_some() {
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
