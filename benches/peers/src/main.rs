//! Three peer servers for certbound's load benchmark, in one process on three ports:
//! `GET /api/hello` behind **jwt-authorizer 0.15** (axum 0.7) and behind
//! **tower-oauth2-resource-server 0.12**, each validating the bearer token (signature, `iss`,
//! `aud`, `exp`) against the same static JWKS the certbound example's dev issuer serves, over
//! the same mutual TLS (the dev server certificate; client certificates must chain to the dev
//! CA). Neither layer checks the RFC 8705 certificate binding — that is certbound's job.
//!
//! The third, with `--dpop-issuer URL`, is **huskarl** (huskarl-resource-server 0.11's
//! `Rfc9068Validator` behind huskarl-axum 0.1's `ValidatorLayer`, axum 0.8) checking DPoP-bound
//! tokens from that issuer (the same static JWKS): `Authorization: DPoP <token>` and a `DPoP`
//! proof per request — `typ`/`alg`/`jwk`, signature, `iat` (1 min), `htm`, `htu` (public base
//! URL `https://localhost`, what certbound's DPoP route is reached as), `ath`, the token's
//! `cnf.jkt`, and the proof's `jti` against an in-memory replay set (like certbound's default
//! in-memory replay store). Its crypto is huskarl's default native platform (RustCrypto).
//!
//! ```text
//! peers --dev-dir DIR --jwks FILE --issuer URL --audience AUD [--dpop-issuer URL]
//! ```
//!
//! Prints `jwt-authorizer https://127.0.0.1:PORT`,
//! `tower-oauth2-resource-server https://127.0.0.1:PORT` and (with `--dpop-issuer`)
//! `huskarl-dpop https://127.0.0.1:PORT`, then serves until killed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Json, Router};
use huskarl_axum::extractors::ValidatedToken;
use huskarl_axum::layers::ValidatorLayer;
use huskarl_axum::resource_server::core::crypto::verifier::{
    JwsVerifier, JwsVerifierFactory, JwsVerifierPlatform, MultiKeyVerifier,
};
use huskarl_axum::resource_server::core::jwk::{Jwks, PublicJwks};
use huskarl_axum::resource_server::core::jwt::JtiUniquenessChecker;
use huskarl_axum::resource_server::core::platform::MaybeSendBoxFuture;
use huskarl_axum::resource_server::core::{EndpointUrl, Error as HuskarlError, RetryAdvice};
use huskarl_axum::resource_server::validator::rfc9068::{
    Rfc9068AccessTokenClaims, Rfc9068Validator,
};
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
    dpop_issuer: Option<String>,
}

fn args() -> Result<Args, Error> {
    let mut it = std::env::args().skip(1);
    let (mut dev_dir, mut jwks, mut issuer, mut audience) = (None, None, None, None);
    let mut dpop_issuer = None;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dev-dir" => dev_dir = Some(PathBuf::from(value)),
            "--jwks" => jwks = Some(PathBuf::from(value)),
            "--issuer" => issuer = Some(value),
            "--audience" => audience = Some(value),
            "--dpop-issuer" => dpop_issuer = Some(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(Args {
        dev_dir: dev_dir.ok_or("--dev-dir is required")?,
        jwks: jwks.ok_or("--jwks is required")?,
        issuer: issuer.ok_or("--issuer is required")?,
        audience: audience.ok_or("--audience is required")?,
        dpop_issuer,
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
/// Generic over the router: axum 0.7's (jwt-authorizer, tower-oauth2) and 0.8's (huskarl).
async fn serve<A, B>(listener: TcpListener, acceptor: TlsAcceptor, app: A)
where
    A: tower08::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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

/// huskarl: `Rfc9068Validator` (the tokens are RFC 9068 `at+jwt` with `client_id`) with the
/// static JWKS, DPoP proofs' `jti`s in memory, behind `ValidatorLayer::authenticated()`.
async fn huskarl_app(a: &Args, issuer: &str, jwks: &str) -> Result<axum08::Router, Error> {
    let validator = Rfc9068Validator::builder()
        .issuer(issuer)
        .audience(a.audience.as_str())
        .jws_verifier_factory(StaticJwks(jwks.to_owned()))
        .dpop_jti_checker(MemoryJtis::default())
        .build()
        .await?;
    let layer = ValidatorLayer::builder()
        .validator(validator)
        .base_url("https://localhost")?
        .build();
    Ok(axum08::Router::new()
        .route("/api/hello", axum08::routing::get(huskarl_hello))
        .layer(layer.authenticated()))
}

async fn huskarl_hello(token: ValidatedToken<Rfc9068AccessTokenClaims>) -> axum08::Json<Value> {
    axum08::Json(json!({
        "sub": token.sub,
        "client_id": token.claims.client_id,
        "scope": token.claims.scope,
        "thumbprint": null,
    }))
}

/// A fixed JWKS document (what the other peers get), parsed once at start.
struct StaticJwks(String);

impl JwsVerifierFactory for StaticJwks {
    fn build(
        &self,
        _jwks_uri: Option<&EndpointUrl>,
        platform: Arc<dyn JwsVerifierPlatform>,
    ) -> MaybeSendBoxFuture<'static, Result<Arc<dyn JwsVerifier>, HuskarlError>> {
        let text = self.0.clone();
        Box::pin(async move {
            let jwks: Jwks =
                serde_json::from_str(&text).map_err(|e| HuskarlError::new(RetryAdvice::No, e))?;
            let verifier =
                MultiKeyVerifier::from_jwks(&PublicJwks::from(jwks), platform.as_ref()).await?;
            Ok(Arc::new(verifier) as Arc<dyn JwsVerifier>)
        })
    }
}

/// DPoP proof `jti`s seen in the last 2–4 minutes (two generations swapped every 2 minutes;
/// a proof is acceptable for 1 minute plus leeway): huskarl's replay check, in memory.
#[derive(Debug)]
struct MemoryJtis(Mutex<(HashSet<String>, HashSet<String>, Instant)>);

impl Default for MemoryJtis {
    fn default() -> Self {
        Self(Mutex::new((HashSet::new(), HashSet::new(), Instant::now())))
    }
}

impl JtiUniquenessChecker for MemoryJtis {
    fn check_and_mark_seen(&self, jti: &str) -> MaybeSendBoxFuture<'_, Result<bool, HuskarlError>> {
        let seen = {
            let mut g = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (current, previous, since) = &mut *g;
            if since.elapsed() > Duration::from_secs(120) {
                *previous = std::mem::take(current);
                *since = Instant::now();
            }
            previous.contains(jti) || !current.insert(jti.to_owned())
        };
        Box::pin(async move { Ok(seen) })
    }
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

    let huskarl = match &a.dpop_issuer {
        Some(issuer) => Some(huskarl_app(&a, issuer, &jwks).await?),
        None => None,
    };

    let l1 = TcpListener::bind("127.0.0.1:0").await?;
    let l2 = TcpListener::bind("127.0.0.1:0").await?;
    println!("jwt-authorizer https://{}", l1.local_addr()?);
    println!("tower-oauth2-resource-server https://{}", l2.local_addr()?);
    if let Some(huskarl) = huskarl {
        let l3 = TcpListener::bind("127.0.0.1:0").await?;
        println!("huskarl-dpop https://{}", l3.local_addr()?);
        tokio::spawn(serve(l3, acceptor.clone(), huskarl));
    }
    tokio::spawn(serve(l1, acceptor.clone(), jwt_authorizer));
    serve(l2, acceptor, tower_oauth2).await;
    Ok(())
}
