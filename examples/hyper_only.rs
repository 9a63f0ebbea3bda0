//! certbound without axum: plain hyper 1 + hyper-util, over real mutual TLS, in one process.
//!
//! A hand-written accept loop over `TlsListener::accept()` serves each connection with
//! `HttpConfig::serve_connection` — hyper-util's `auto::Builder` (HTTP/1.1 and HTTP/2) with
//! header-read and idle timeouts — which puts that connection's `PeerCertificate` into every
//! request's extensions. A `tower::ServiceBuilder` applies the certbound layer around a
//! `service_fn` handler that reads `certbound::VerifiedToken` from the request's extensions. Then the same three clients as `examples/demo.rs` call it with a token
//! bound to client A, and the table shows what each got.
//!
//! ```text
//! cargo run --example hyper_only
//! ```

mod support;

use std::convert::Infallible;
use std::error::Error;
use std::io::Write;

use certbound::tls::{HttpConfig, TlsListener};
use certbound::{CertBoundLayer, VerifiedToken};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use reqwest::header::WWW_AUTHENTICATE;
use support::DevStory;

/// The labels of the three requests, in the order the table prints them.
pub use support::PLAYERS;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout()).await
}

/// The protected handler: only reached with a verified token, which the layer put into the
/// request's extensions.
async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.extensions().get::<VerifiedToken>() {
        Some(token) => serde_json::json!({
            "sub": token.sub(),
            "client_id": token.client_id(),
            "thumbprint": token.thumbprint().map(ToString::to_string),
        })
        .to_string(),
        // Unreachable behind the layer: only a missing layer would get here.
        None => {
            return Ok(Response::builder()
                .status(500)
                .body(Full::from("no verified token"))
                .unwrap_or_default())
        }
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::from(body))
        .unwrap_or_default())
}

/// Accepts mutual-TLS connections and serves each with hyper-util's HTTP/1.1 + HTTP/2 builder.
async fn serve(mut listener: TlsListener, auth: CertBoundLayer) {
    // Header read 10 s, idle keep-alive 60 s (`HttpConfig::hyper_builder()` gives the bare
    // hyper-util builder with the same settings, for a loop of your own).
    let http = HttpConfig::default();
    while let Ok((connection, _peer)) = listener.accept().await {
        let service = tower::ServiceBuilder::new()
            .layer(auth.clone())
            .service(tower::service_fn(hello));
        let http = http.clone();
        tokio::spawn(async move {
            // Attaches the certificate of *this* connection (hashed once) to every request.
            let _ = http.serve_connection(connection, service).await;
        });
    }
}

/// Starts a dev issuer and the protected API, plays the three clients, and writes the table to
/// `out`.
pub async fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // The authorization server's side: a dev issuer (discovery + JWKS) and client A's token.
    let story = DevStory::start("hyper-key").await?;
    let (pki, token) = (&story.pki, &story.token_a);

    // The resource server: certbound around a hyper service, served over mutual TLS.
    let listener = story.listener().await?;
    let url = format!(
        "https://localhost:{}/api/hello",
        listener.local_addr().port()
    );
    let server = tokio::spawn(serve(listener, story.layer().await?));

    writeln!(
        out,
        "hyper + hyper-util at {url}\ntoken bound to client A: cnf.x5t#S256 = {}\n",
        story.thumbprint_a
    )?;
    writeln!(
        out,
        "{:<34} {:>6}  {:<8}  WWW-Authenticate / body",
        "request", "status", "protocol"
    )?;
    writeln!(out, "{}", "-".repeat(120))?;
    for (label, identity) in story.players() {
        let client = support::https_client(&pki.ca.cert_pem, identity)?;
        let response = client.get(&url).bearer_auth(token).send().await?;
        let status = response.status().as_u16();
        let version = format!("{:?}", response.version());
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned);
        let body = response.text().await?;
        let detail = challenge.unwrap_or(body);
        writeln!(out, "{label:<34} {status:>6}  {version:<8}  {detail}")?;
    }
    server.abort();
    Ok(())
}
