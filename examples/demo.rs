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

use certbound::tls::{server_config, ClientAuth, PeerCertificate, TlsListener};
use certbound::CertBound;
use certbound_core::{Algorithm, ClientCertificate};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, DevPki, SigningKey};
use reqwest::header::WWW_AUTHENTICATE;

const AUDIENCE: &str = "https://api.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("certbound-demo-{}", std::process::id()));
    let pki = DevPki::generate(&dir)?;

    // The authorization server's side: a signing key, served as JWKS with discovery.
    let signer = SigningKey::generate("demo-key", Algorithm::ES256)?;
    let issuer = TestIssuer::start(&[&signer]).await?;

    // The resource server: certbound in front of the routes, served over mutual TLS.
    let auth = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .jwks_root_certificates_pem(issuer.ca_pem().as_bytes().to_vec())
        .build()
        .await?;
    let tls = server_config(
        vec![pki.server.cert_der.clone()],
        pki.server.private_key(),
        ClientAuth::self_signed(),
    )?;
    let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
    let url = format!(
        "https://localhost:{}/api/hello",
        listener.local_addr().port()
    );
    let app = support::routes(auth).into_make_service_with_connect_info::<PeerCertificate>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The token the authorization server issued to client A, bound to A's certificate.
    let a = ClientCertificate::from_der(pki.client_a.cert_der.to_vec());
    let token = signer.sign(&bound_claims(issuer.issuer_url(), AUDIENCE, a.thumbprint()))?;

    println!(
        "token bound to client A: cnf.x5t#S256 = {}\n",
        a.thumbprint()
    );
    println!("{:<34} {:>6}  WWW-Authenticate", "request", "status");
    println!("{}", "-".repeat(120));
    let players = [
        ("client A's certificate + A's token", Some(&pki.client_a)),
        ("client B's certificate + A's token", Some(&pki.client_b)),
        ("no certificate + A's token", None),
    ];
    for (label, identity) in players {
        let client = support::https_client(&pki.ca.cert_pem, identity)?;
        let response = client.get(&url).bearer_auth(&token).send().await?;
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        println!("{label:<34} {:>6}  {challenge}", response.status().as_u16());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
