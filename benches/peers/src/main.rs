//! Two peer servers for certbound's load benchmark, in one process on two ports:
//! `GET /api/hello` behind **jwt-authorizer 0.15** (axum 0.7) and behind
//! **tower-oauth2-resource-server 0.12**, each validating the bearer token (signature, `iss`,
//! `aud`, `exp`) against the same static JWKS the certbound example's dev issuer serves, over
//! the same mutual TLS (the dev server certificate; client certificates must chain to the dev
//! CA). Neither layer checks the RFC 8705 certificate binding — that is certbound's job.
//!
//! ```text
//! peers --dev-dir DIR --jwks FILE --issuer URL --audience AUD
//! ```
//!
//! Prints `jwt-authorizer https://127.0.0.1:PORT` and
//! `tower-oauth2-resource-server https://127.0.0.1:PORT`, then serves until killed.

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jwt_authorizer::{IntoLayer, JwtAuthorizer, JwtClaims, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_oauth2_resource_server::claims::DefaultClaims;
use tower_oauth2_resource_server::error::AuthError;
use tower_oauth2_resource_server::error_handler::{DefaultErrorHandler, ErrorHandler};
use tower_oauth2_resource_server::server::OAuth2ResourceServer;
use tower_oauth2_resource_server::tenant::TenantConfiguration;
use tower_oauth2_resource_server::validation::ClaimsValidationSpec;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    dev_dir: PathBuf,
    jwks: PathBuf,
    issuer: String,
    audience: String,
}

fn args() -> Result<Args, Error> {
    let mut it = std::env::args().skip(1);
    let (mut dev_dir, mut jwks, mut issuer, mut audience) = (None, None, None, None);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dev-dir" => dev_dir = Some(PathBuf::from(value)),
            "--jwks" => jwks = Some(PathBuf::from(value)),
            "--issuer" => issuer = Some(value),
            "--audience" => audience = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(Args {
        dev_dir: dev_dir.ok_or("--dev-dir is required")?,
        jwks: jwks.ok_or("--jwks is required")?,
        issuer: issuer.ok_or("--issuer is required")?,
        audience: audience.ok_or("--audience is required")?,
    })
}

fn tls(dev_dir: &std::path::Path) -> Result<TlsAcceptor, Error> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dev_dir.join("server.pem"))?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dev_dir.join("server.key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dev_dir.join("ca.pem"))? {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections and serves `app` on each (HTTP/1.1 keep-alive).
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn jwt_authorizer_app(a: &Args, jwks: &str) -> Result<Router, Error> {
    let auth = JwtAuthorizer::<Value>::from_jwks_text(jwks)
        .validation(
            Validation::new()
                .iss(&[a.issuer.as_str()])
                .aud(&[a.audience.as_str()]),
        )
        .build()
        .await?;
    Ok(Router::new()
        .route("/api/hello", get(jwt_authorizer_hello))
        .layer(auth.into_layer()))
}

async fn jwt_authorizer_hello(JwtClaims(claims): JwtClaims<Value>) -> Json<Value> {
    Json(json!({
        "sub": claims.get("sub"),
        "client_id": claims.get("client_id"),
        "scope": claims.get("scope"),
        "thumbprint": null,
    }))
}

fn tower_oauth2_app(a: &Args, jwks: &str) -> Result<Router, Error> {
    let audiences = vec![a.audience.clone()];
    let tenant = TenantConfiguration::static_builder(jwks)
        .identifier(&a.issuer)
        .audiences(&audiences)
        // iss, aud, exp — what certbound and jwt-authorizer check (`recommended` would also
        // require an `nbf`, which these tokens, like most access tokens, do not carry).
        .claims_validation(
            ClaimsValidationSpec::new()
                .iss(&a.issuer)
                .aud(&audiences)
                .exp(true),
        )
        .build()?;
    let server = futures_block_on(
        OAuth2ResourceServer::<DefaultClaims>::builder()
            .add_tenant(tenant)
            .build(),
    )?;
    Ok(Router::new()
        .route("/api/hello", get(tower_oauth2_hello))
        .layer(server.into_layer_with_error_handler(Arc::new(LoggedErrors))))
}

/// tower-oauth2-resource-server's default answer, and the reason on stderr with `PEERS_DEBUG=1`.
struct LoggedErrors;

impl ErrorHandler<axum::body::Body> for LoggedErrors {
    fn map_error(&self, error: AuthError) -> axum::http::Response<axum::body::Body> {
        if std::env::var_os("PEERS_DEBUG").is_some() {
            eprintln!("tower-oauth2-resource-server refused a token: {error:?}");
        }
        DefaultErrorHandler.map_error(error)
    }
}

async fn tower_oauth2_hello(Extension(claims): Extension<DefaultClaims>) -> Json<Value> {
    Json(json!({
        "sub": claims.sub,
        "client_id": Value::Null,
        "scope": Value::Null,
        "thumbprint": null,
    }))
}

/// The resource-server builder is async only for discovery, which a static tenant skips.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = args()?;
    let jwks = std::fs::read_to_string(&a.jwks)?;
    let acceptor = tls(&a.dev_dir)?;

    let jwt_authorizer = jwt_authorizer_app(&a, &jwks).await?;
    let tower_oauth2 = tower_oauth2_app(&a, &jwks)?;

    let l1 = TcpListener::bind("127.0.0.1:0").await?;
    let l2 = TcpListener::bind("127.0.0.1:0").await?;
    println!("jwt-authorizer https://{}", l1.local_addr()?);
    println!("tower-oauth2-resource-server https://{}", l2.local_addr()?);
    tokio::spawn(serve(l1, acceptor.clone(), jwt_authorizer));
    serve(l2, acceptor, tower_oauth2).await;
    Ok(())
}
