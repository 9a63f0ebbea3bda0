//! Test harness: a dev issuer (real HTTPS, discovery + JWKS) and the example API behind
//! certbound over real mutual TLS, on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../examples/support/mod.rs"]
pub mod support;

pub mod process;

use certbound::tls::{server_config, ClientAuth, ListenerStats, PeerCertificate, TlsListener};
use certbound::{CertBound, CertBoundBuilder, CertBoundLayer};
use certbound_core::{Algorithm, ClientCertificate, Thumbprint};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, CertAndKey, DevPki, SigningKey};
use serde_json::Value;

pub const AUDIENCE: &str = "https://api.example";

/// A running protected API and everything needed to talk to it.
pub struct Api {
    pub url: String,
    pub pki: DevPki,
    pub issuer: Option<TestIssuer>,
    pub signer: SigningKey,
    pub stats: ListenerStats,
}

/// Which client certificates the TLS handshake accepts.
pub enum Mode {
    SelfSigned,
    Ca,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub challenge: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Asserts 401 invalid_token, and that the description matches `reason`'s.
    pub fn assert_invalid_token(&self, reason: certbound::Rejection) {
        assert_eq!(self.status, 401, "{self:?}");
        let c = self.challenge.as_deref().unwrap_or_default();
        assert!(c.starts_with("Bearer realm="), "{c}");
        assert!(c.contains("error=\"invalid_token\""), "{c}");
        assert!(
            c.contains(&format!("error_description=\"{}\"", reason.description())),
            "want {:?}: {c}",
            reason.code()
        );
    }
}

impl Api {
    pub async fn start(mode: Mode) -> Api {
        Self::start_with(mode, |b| b).await
    }

    pub async fn start_with(
        mode: Mode,
        configure: impl FnOnce(CertBoundBuilder) -> CertBoundBuilder,
    ) -> Api {
        Self::start_signed(mode, Algorithm::ES256, configure).await
    }

    /// Like `start_with`, with the issuer signing with a key for `alg` (kid "k1").
    pub async fn start_signed(
        mode: Mode,
        alg: Algorithm,
        configure: impl FnOnce(CertBoundBuilder) -> CertBoundBuilder,
    ) -> Api {
        let signer = SigningKey::generate("k1", alg).unwrap();
        let issuer = TestIssuer::start(&[&signer]).await.unwrap();
        let (url, ca) = (issuer.issuer_url().to_owned(), issuer.ca_pem().to_owned());
        let mut api = Self::start_custom(mode, |b| {
            configure(b.issuer(url).jwks_root_certificates_pem(ca))
        })
        .await;
        api.issuer = Some(issuer);
        api.signer = signer;
        api
    }

    /// The API with a layer configured entirely by `configure` (issuer included); `issuer` and
    /// `signer` are placeholders the caller may replace.
    pub async fn start_custom(
        mode: Mode,
        configure: impl FnOnce(CertBoundBuilder) -> CertBoundBuilder,
    ) -> Api {
        let auth = configure(CertBound::builder().audience(AUDIENCE))
            .build()
            .await
            .unwrap();
        Self::serve(mode, auth).await
    }

    /// The API protected by `auth` (a clone keeps its statistics readable); `issuer` and
    /// `signer` are placeholders the caller may replace.
    pub async fn serve(mode: Mode, auth: CertBoundLayer) -> Api {
        Self::bind(mode).await.serve(auth)
    }

    /// The listener alone, so the layer can be built knowing the URL (e.g. `.public_url(..)`);
    /// then [`Listening::serve`].
    pub async fn bind(mode: Mode) -> Listening {
        let pki = DevPki::generate(std::env::temp_dir()).unwrap();
        let client_auth = match mode {
            Mode::SelfSigned => ClientAuth::self_signed(),
            Mode::Ca => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(pki.ca.cert_der.clone()).unwrap();
                ClientAuth::ca(roots)
            }
        };
        let tls = server_config(
            vec![pki.server.cert_der.clone()],
            pki.server.private_key(),
            client_auth,
        )
        .unwrap();
        let listener = TlsListener::bind("127.0.0.1:0", tls).await.unwrap();
        let url = format!("https://localhost:{}", listener.local_addr().port());
        Listening { listener, pki, url }
    }

    /// Standard claims for a token bound to `cert`.
    pub fn claims_for(&self, cert: &CertAndKey) -> Value {
        let issuer = self.issuer.as_ref().expect("started with an issuer");
        bound_claims(issuer.issuer_url(), AUDIENCE, &thumbprint(cert))
    }

    /// A valid token bound to `cert`.
    pub fn token_for(&self, cert: &CertAndKey) -> String {
        self.signer.sign(&self.claims_for(cert)).unwrap()
    }

    pub fn client(&self, identity: Option<&CertAndKey>) -> reqwest::Client {
        support::https_client(&self.pki.ca.cert_pem, identity).unwrap()
    }

    /// GET /api/hello with `identity`'s certificate (if any) and `token` (if any).
    pub async fn hello(&self, identity: Option<&CertAndKey>, token: Option<&str>) -> Answer {
        let client = self.client(identity);
        let mut req = client.get(format!("{}/api/hello", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }
}

/// A bound TLS listener not serving yet: [`Api::bind`].
pub struct Listening {
    listener: TlsListener,
    pub pki: DevPki,
    /// `https://localhost:PORT`.
    pub url: String,
}

impl Listening {
    /// Serves the example routes protected by `auth`.
    pub fn serve(self, auth: CertBoundLayer) -> Api {
        let Listening { listener, pki, url } = self;
        let stats = listener.stats();
        let app = support::routes(auth).into_make_service_with_connect_info::<PeerCertificate>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let signer = SigningKey::generate("unused", Algorithm::ES256).unwrap();
        Api {
            url,
            pki,
            issuer: None,
            signer,
            stats,
        }
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.text().await.unwrap();
    Answer {
        status,
        challenge,
        body,
    }
}

pub fn thumbprint(cert: &CertAndKey) -> Thumbprint {
    *ClientCertificate::from_der(cert.cert_der.to_vec()).thumbprint()
}
