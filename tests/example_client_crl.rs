//! The example's `--client-crl` flag, as an operator uses it: files on disk, the real binary,
//! real HTTPS clients. A revoked client certificate is refused in the handshake; another one
//! from the same CA gets through, token binding and all. A bad CRL file is one error line and
//! exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use certbound_core::Algorithm;
use certbound_dev::{bound_claims, jwks_document, DevCa, KeyKind, SigningKey};
use common::process::{example_binary, start_example};
use common::support::https_client;

const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "https://api.example";

/// A directory of operator files, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("certbound-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_revoked_client_is_refused_in_the_handshake_and_another_served() {
    let files = Files::new("client-crl");
    let ca = DevCa::new("clients CA").unwrap();
    let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    let revoked = ca.client_cert("revoked", KeyKind::EcP256).unwrap();
    let good = ca.client_cert("good", KeyKind::EcP256).unwrap();
    let signer = SigningKey::generate("crl-test", Algorithm::ES256).unwrap();
    let crl = ca.revocation_list(&[&revoked]).unwrap();

    let cert = files.write("server.pem", &server.cert_pem);
    let key = files.write("server.key", &server.key_pem);
    let bundle = files.write("clients-ca.pem", &ca.cert().cert_pem);
    let crl_pem = files.write("clients.crl.pem", &crl.pem);
    let crl_der = files.write("empty.crl", ca.revocation_list(&[]).unwrap().der.as_ref());
    let jwks = files.write("jwks.json", jwks_document(&[&signer]).to_string());

    let (_server, lines) = start_example(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &bundle,
            "--client-crl",
            &crl_pem,
            "--client-crl",
            &crl_der,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks-file",
            &jwks,
        ],
        |l| l.starts_with("listening on https://"),
    );
    let listening = lines.last().unwrap();
    assert!(listening.contains("2 CRL(s) checked"), "{listening}");
    let origin = listening
        .strip_prefix("listening on ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .replace("127.0.0.1", "localhost");

    // The revoked client does not get past TLS, on any route.
    let client = https_client(&ca.cert().cert_pem, Some(&revoked)).unwrap();
    let err = client
        .get(format!("{origin}/health"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // Another client of the same CA is served, and its bound token accepted.
    let thumbprint = certbound::ClientCertificate::from_der(good.cert_der.to_vec());
    let token = signer
        .sign(&bound_claims(ISSUER, AUDIENCE, thumbprint.thumbprint()))
        .unwrap();
    let client = https_client(&ca.cert().cert_pem, Some(&good)).unwrap();
    let health = client.get(format!("{origin}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let hello = client
        .get(format!("{origin}/api/hello"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
}

#[test]
fn bad_crl_files_exit_2_with_one_line_naming_the_file() {
    let files = Files::new("bad-client-crl");
    let ca = DevCa::new("clients CA").unwrap();
    let server = ca.server_cert(&["localhost"]).unwrap();
    let signer = SigningKey::generate("crl-test", Algorithm::ES256).unwrap();
    let cert = files.write("server.pem", &server.cert_pem);
    let key = files.write("server.key", &server.key_pem);
    let bundle = files.write("clients-ca.pem", &ca.cert().cert_pem);
    let jwks = files.write("jwks.json", jwks_document(&[&signer]).to_string());
    let not_a_crl = files.write("not-a-crl.pem", &ca.cert().cert_pem);
    let garbage = files.write(
        "garbage.crl",
        "-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----\n",
    );
    let missing = files.path().join("missing.crl");
    let missing = missing.to_str().unwrap();

    for crl in [not_a_crl.as_str(), garbage.as_str(), missing] {
        let out = Command::new(example_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--client-ca",
                &bundle,
                "--client-crl",
                crl,
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
                "--jwks-file",
                &jwks,
            ])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{crl}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{crl}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: --client-crl {crl}")),
            "{crl}: {stderr}"
        );
    }

    // A CRL only makes sense with --client-ca.
    let out = Command::new(example_binary())
        .args(["--client-crl", &garbage])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains("--client-ca"), "{stderr}");
}
