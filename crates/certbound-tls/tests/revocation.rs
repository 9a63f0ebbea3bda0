//! CA mode with certificate revocation lists: a revoked client certificate is refused in the
//! handshake, an unrevoked one from the same CA is served — real rcgen CRLs, real sockets,
//! real rustls clients, TLS 1.3 and 1.2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::IntoFuture;

use certbound_core::Thumbprint;
use certbound_dev::{DevCa, KeyKind};
use certbound_tls::{load_crls, ClientAuth, TlsError};
use common::http::{get1, http1};
use common::{connect, guard, refused, wait_for, whoami_app, Pki};
use rustls::{AlertDescription, CertificateError};

const VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_and_an_unrevoked_one_served() {
    let pki = Pki::new();
    let revoked = pki.client("revoked", KeyKind::EcP256);
    let good = pki.client("good", KeyKind::EcP256);
    let crl = pki.ca.revocation_list(&[&revoked]).unwrap();
    let listener = pki
        .listener(ClientAuth::ca(pki.roots()).with_crls([crl.der.clone()]))
        .await;
    let (addr, stats) = (listener.local_addr(), listener.stats());
    tokio::spawn(certbound_tls::serve(listener, whoami_app()).into_future());

    for version in VERSIONS {
        let config = pki.client_config_with(Some(&revoked), &[version], &[b"http/1.1"]);
        let err = refused(addr, config).await;
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::CertificateRevoked),
            "{version:?}"
        );

        let config = pki.client_config_with(Some(&good), &[version], &[b"http/1.1"]);
        let mut sender = http1(connect(addr, config).await.unwrap()).await;
        let body = guard("request", get1(&mut sender, "/whoami")).await;
        assert!(body.ends_with(&Thumbprint::of_der(&good.cert_der).to_string()));
    }
    wait_for(&stats, "refusals counted", |s| s.handshakes_failed() == 2).await;
    assert_eq!(stats.handshakes_completed(), 2);
    assert_eq!(stats.client_certificates(), 2);
}

#[tokio::test]
async fn crls_loaded_from_files_revoke_too() {
    let pki = Pki::new();
    let revoked = pki.client("revoked", KeyKind::Rsa2048);
    let good = pki.client("good", KeyKind::Rsa2048);
    let dir = std::env::temp_dir().join(format!("certbound-tls-crl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The same CRL as PEM and as DER: both load, and either revokes.
    let crl = pki.ca.revocation_list(&[&revoked]).unwrap();
    std::fs::write(dir.join("clients.crl.pem"), &crl.pem).unwrap();
    std::fs::write(dir.join("clients.crl"), crl.der.as_ref()).unwrap();
    for file in ["clients.crl.pem", "clients.crl"] {
        let crls = load_crls(dir.join(file)).unwrap();
        let mut listener = pki
            .listener(ClientAuth::ca(pki.roots()).with_crls(crls))
            .await;
        let addr = listener.local_addr();
        let accept = tokio::spawn(async move {
            let accepted = listener.accept().await;
            (listener, accepted)
        });
        let err = refused(addr, pki.client_config(Some(&revoked))).await;
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::CertificateRevoked),
            "{file}"
        );
        connect(addr, pki.client_config(Some(&good))).await.unwrap();
        let (_listener, accepted) = guard("accept", accept).await.unwrap();
        assert_eq!(
            accepted.unwrap().1.thumbprint(),
            Some(&Thumbprint::of_der(&good.cert_der))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_crls_every_issuer_needs_one_or_its_clients_are_refused() {
    // A CRL from another CA says nothing about this CA's clients: their revocation status is
    // unknown, and they are refused (fail closed, as nginx's ssl_crl does).
    let pki = Pki::new();
    let good = pki.client("good", KeyKind::EcP256);
    let other_ca = DevCa::new("another CA").unwrap();
    let crl = other_ca.revocation_list(&[]).unwrap();
    let mut listener = pki
        .listener(ClientAuth::ca(pki.roots()).with_crls([crl.der.clone()]))
        .await;
    let (addr, stats) = (listener.local_addr(), listener.stats());
    let accept = tokio::spawn(async move { listener.accept().await.map(drop) });
    let err = refused(addr, pki.client_config(Some(&good))).await;
    // rustls reports an unknown revocation status to the client as unknown_ca.
    assert_eq!(
        err,
        rustls::Error::AlertReceived(AlertDescription::UnknownCA)
    );
    wait_for(&stats, "refusal counted", |s| s.handshakes_failed() == 1).await;
    accept.abort();

    // The verifier says why, for the logs.
    let verifier = ClientAuth::ca(pki.roots())
        .with_crls([crl.der.clone()])
        .client_cert_verifier()
        .unwrap();
    let err = verifier
        .verify_client_cert(&good.cert_der, &[], rustls::pki_types::UnixTime::now())
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
    );
}

#[tokio::test]
async fn a_crl_not_signed_by_its_ca_refuses_the_client() {
    // A CRL that names this CA as issuer but is signed by another key is not believed, and
    // the client is refused rather than the forged CRL being ignored.
    let pki = Pki::new();
    let impostor = DevCa::new("test CA").unwrap(); // same name as the real CA, another key
    let good = pki.client("good", KeyKind::EcP256);
    let forged = impostor.revocation_list(&[]).unwrap();
    let verifier = ClientAuth::ca(pki.roots())
        .with_crls([forged.der.clone()])
        .client_cert_verifier()
        .unwrap();
    let err = verifier
        .verify_client_cert(&good.cert_der, &[], rustls::pki_types::UnixTime::now())
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature)
    );
}

#[test]
fn crls_are_refused_in_self_signed_mode() {
    let pki = Pki::new();
    let crl = pki.ca.revocation_list(&[]).unwrap();
    let err = certbound_tls::server_config(
        vec![pki.server.cert_der.clone()],
        pki.server.private_key(),
        ClientAuth::self_signed().with_crls([crl.der.clone()]),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::CrlsWithoutCa), "{err:?}");
}
