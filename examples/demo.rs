//! The whole certbound story in one run, in one process, over real mutual TLS.
//!
//! Starts a dev issuer and the protected API, then plays three clients with the same token —
//! the client it was issued to, another client, and a client without a certificate — and a DPoP
//! client (RFC 9449: no certificate, a token bound to its key, a proof per request), and prints
//! what each one got.
//!
//! ```text
//! cargo run --example demo
//! ```

mod support;

use std::future::IntoFuture;

use certbound::{CertBound, Dpop};
use certbound_core::Algorithm;
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
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
    // The layer accepts certificate-bound tokens and DPoP-bound ones.
    let auth = CertBound::builder()
        .issuer(story.issuer.issuer_url())
        .audience(support::AUDIENCE)
        .jwks_root_certificates_pem(story.issuer.ca_pem().as_bytes().to_vec())
        .dpop(Dpop::default())
        .build()
        .await?;
    let app = support::routes(auth);
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

    // A DPoP client: no certificate; its token is bound to its key (cnf.jkt), and each request
    // carries a fresh proof signed with that key, naming the method and URL.
    let dpop_key = DpopKey::generate(Algorithm::ES256)?;
    let claims = dpop_bound_claims(
        story.issuer.issuer_url(),
        support::AUDIENCE,
        &dpop_key.jkt(),
    );
    let dpop_token = story.signer.sign(&claims)?;
    let client = support::https_client(&story.pki.ca.cert_pem, None)?;
    let proof = dpop_key.proof("GET", &url, Some(&dpop_token), None)?;
    let cases = [
        (
            "DPoP client + its token + proof",
            Some(proof.clone()),
            "DPoP",
        ),
        ("DPoP client, the same proof again", Some(proof), "DPoP"),
        ("DPoP client's token as Bearer", None, "Bearer"),
    ];
    for (label, proof, scheme) in cases {
        let mut request = client
            .get(&url)
            .header(AUTHORIZATION, format!("{scheme} {dpop_token}"));
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        let response = request.send().await?;
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" | ");
        let challenge = if challenge.is_empty() {
            "-".to_owned()
        } else {
            challenge
        };
        println!("{label:<34} {:>6}  {challenge}", response.status().as_u16());
    }
    Ok(())
}
