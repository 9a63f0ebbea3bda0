//! The whole certbound story in one run, in one process, over real mutual TLS.
//!
//! Starts a dev issuer and the protected API, then plays three clients with the same token —
//! the client it was issued to, another client, and a client without a certificate — and prints
//! what each one got.
//!
//! ```text
//! cargo run --example demo
//! ```

mod support;

use std::future::IntoFuture;

use reqwest::header::WWW_AUTHENTICATE;
use support::DevStory;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The authorization server's side: a dev issuer (discovery + JWKS) and client A's token.
    let story = DevStory::start("demo-key").await?;

    // The resource server: certbound in front of the routes, served over mutual TLS.
    let listener = story.listener().await?;
    let url = format!(
        "https://localhost:{}/api/hello",
        listener.local_addr().port()
    );
    let app = support::routes(story.layer().await?);
    tokio::spawn(certbound::tls::serve(listener, app).into_future());

    println!(
        "token bound to client A: cnf.x5t#S256 = {}\n",
        story.thumbprint_a
    );
    println!("{:<34} {:>6}  WWW-Authenticate", "request", "status");
    println!("{}", "-".repeat(120));
    for (label, identity) in story.players() {
        let client = support::https_client(&story.pki.ca.cert_pem, identity)?;
        let response = client.get(&url).bearer_auth(&story.token_a).send().await?;
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        println!("{label:<34} {:>6}  {challenge}", response.status().as_u16());
    }
    Ok(())
}
