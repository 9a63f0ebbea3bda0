//! Both RFC 8705 client-authentication modes, over real sockets with real rustls clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use certbound_core::Thumbprint;
use certbound_dev::pki::self_signed_client;
use certbound_dev::{CertAndKey, DevCa, KeyKind};
use certbound_tls::{ClientAuth, PeerCertificate, TlsListener};
use common::{connect, guard, refused, wait_for, Pki};
use rustls::pki_types::CertificateDer;
use rustls::{AlertDescription, ClientConfig, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ALL_KINDS: [KeyKind; 4] = [
    KeyKind::EcP256,
    KeyKind::EcP384,
    KeyKind::Rsa2048,
    KeyKind::Ed25519,
];

type ServerStream = certbound_tls::TlsConnection;
type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// One handshake: the server's side from `accept()`, the client's from `connect()`.
async fn handshake(
    listener: &mut TlsListener,
    config: Arc<ClientConfig>,
) -> (ServerStream, PeerCertificate, ClientStream) {
    let addr = listener.local_addr();
    let (server, client) = guard("handshake", async {
        tokio::join!(listener.accept(), connect(addr, config))
    })
    .await;
    let (stream, peer) = server.unwrap();
    (stream, peer, client.unwrap())
}

/// Asserts the peer is `client` and returns nothing else worth keeping.
fn assert_peer_is(peer: &PeerCertificate, client: &CertAndKey, stream: &ClientStream) {
    let expected = Thumbprint::of_der(&client.cert_der);
    assert_eq!(peer.thumbprint(), Some(&expected));
    assert_eq!(peer.certificate().unwrap().der(), client.cert_der.as_ref());
    assert_eq!(peer.remote_addr(), stream.get_ref().0.local_addr().unwrap());
}

#[tokio::test]
async fn ca_mode_accepts_ca_issued_certificates_with_their_thumbprint() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::ca(pki.roots())).await;
    let stats = listener.stats();
    let mut n = 0;
    for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let client = pki.client("client", kind);
            let config = pki.client_config_with(Some(&client), &[version], &[]);
            let (_server, peer, stream) = handshake(&mut listener, config).await;
            assert_peer_is(&peer, &client, &stream);
            n += 1;
        }
    }
    assert_eq!(stats.handshakes_completed(), n);
    assert_eq!(stats.client_certificates(), n);
    assert_eq!(stats.handshakes_failed(), 0);
}

#[tokio::test]
async fn ca_mode_refuses_certificates_of_another_ca_in_the_handshake() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::ca(pki.roots())).await;
    let addr = listener.local_addr();
    let stats = listener.stats();

    let accept = tokio::spawn(async move {
        let accepted = listener.accept().await;
        (listener, accepted)
    });

    let other_ca = DevCa::new("someone else's CA").unwrap();
    let strangers = [
        other_ca.client_cert("stranger", KeyKind::EcP256).unwrap(),
        self_signed_client("self-signed", KeyKind::EcP256).unwrap(),
    ];
    for (i, stranger) in strangers.iter().enumerate() {
        let err = refused(addr, pki.client_config(Some(stranger))).await;
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA)
        );
        wait_for(&stats, "failure counted", |s| {
            s.handshakes_failed() == i as u64 + 1
        })
        .await;
    }
    assert_eq!(stats.handshakes_completed(), 0);
    assert_eq!(stats.client_certificates(), 0);

    // Nothing was handed out for the refused clients: the next connection is a good one.
    let good = pki.client("good", KeyKind::EcP256);
    let stream = connect(addr, pki.client_config(Some(&good))).await.unwrap();
    let (_listener, accepted) = guard("accept", accept).await.unwrap();
    let (_server, peer) = accepted.unwrap();
    assert_peer_is(&peer, &good, &stream);
}

#[tokio::test]
async fn a_client_without_a_certificate_still_completes_tls() {
    let pki = Pki::new();
    for auth in [ClientAuth::ca(pki.roots()), ClientAuth::self_signed()] {
        let mut listener = pki.listener(auth).await;
        let (_server, peer, stream) = handshake(&mut listener, pki.client_config(None)).await;
        assert_eq!(peer.certificate(), None);
        assert_eq!(peer.thumbprint(), None);
        assert_eq!(peer.remote_addr(), stream.get_ref().0.local_addr().unwrap());
        let stats = listener.stats();
        assert_eq!(
            (stats.handshakes_completed(), stats.client_certificates()),
            (1, 0)
        );
    }
}

#[tokio::test]
async fn mandatory_client_auth_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    for auth in [ClientAuth::ca(pki.roots()), ClientAuth::self_signed()] {
        let mut listener = pki.listener(auth.mandatory()).await;
        let addr = listener.local_addr();
        let stats = listener.stats();
        let accept = tokio::spawn(async move {
            let accepted = listener.accept().await;
            (listener, accepted)
        });

        let err = refused(addr, pki.client_config(None)).await;
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        );
        wait_for(&stats, "failure counted", |s| s.handshakes_failed() == 1).await;

        // A client with a certificate is still welcome.
        let client = pki.client("client", KeyKind::EcP256);
        let stream = connect(addr, pki.client_config(Some(&client)))
            .await
            .unwrap();
        let (_listener, accepted) = guard("accept", accept).await.unwrap();
        assert_peer_is(&accepted.unwrap().1, &client, &stream);
    }
}

#[tokio::test]
async fn self_signed_mode_accepts_any_certificate_with_its_thumbprint() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::self_signed()).await;
    let mut n = 0;
    for kind in ALL_KINDS {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let client = self_signed_client("self-signed", kind).unwrap();
            let config = pki.client_config_with(Some(&client), &[version], &[]);
            let (_server, peer, stream) = handshake(&mut listener, config).await;
            assert_peer_is(&peer, &client, &stream);
            n += 1;
        }
    }
    // Certificates from any CA are just certificates here.
    let other_ca = DevCa::new("someone else's CA").unwrap();
    let client = other_ca.client_cert("issued", KeyKind::Rsa2048).unwrap();
    let (_server, peer, stream) = handshake(&mut listener, pki.client_config(Some(&client))).await;
    assert_peer_is(&peer, &client, &stream);
    n += 1;

    let stats = listener.stats();
    assert_eq!(stats.handshakes_completed(), n);
    assert_eq!(stats.client_certificates(), n);
}

#[tokio::test]
async fn the_client_must_sign_the_handshake_with_the_certificates_key() {
    let pki = Pki::new();
    let holder = self_signed_client("holder", KeyKind::EcP256).unwrap();
    let thief = self_signed_client("thief", KeyKind::EcP256).unwrap();
    let issued = pki.client("issued", KeyKind::EcP256);
    let cases = [
        (ClientAuth::self_signed(), holder.cert_der.clone()),
        (ClientAuth::ca(pki.roots()), issued.cert_der.clone()),
    ];
    for (auth, stolen_cert) in cases {
        let listener = pki.listener(auth).await;
        let addr = listener.local_addr();
        let stats = listener.stats();
        let _accepting = tokio::spawn(async move {
            let mut listener = listener;
            let _ = listener.accept().await;
        });
        // Presents a certificate it holds no key for: the CertificateVerify signature fails.
        let err = refused(addr, pki.client_config_forged(stolen_cert, &thief)).await;
        assert_eq!(
            err,
            rustls::Error::AlertReceived(AlertDescription::DecryptError)
        );
        wait_for(&stats, "failure counted", |s| s.handshakes_failed() == 1).await;
        assert_eq!(stats.handshakes_completed(), 0);
    }
}

#[tokio::test]
async fn self_signed_mode_refuses_what_is_not_a_certificate() {
    let pki = Pki::new();
    let listener = pki.listener(ClientAuth::self_signed()).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    let _accepting = tokio::spawn(async move {
        let mut listener = listener;
        let _ = listener.accept().await;
    });
    let key = self_signed_client("k", KeyKind::EcP256).unwrap();
    let garbage = CertificateDer::from(b"\x30\x03\x02\x01\x01 not a certificate".to_vec());
    let err = refused(addr, pki.client_config_forged(garbage, &key)).await;
    assert_eq!(
        err,
        rustls::Error::AlertReceived(AlertDescription::BadCertificate)
    );
    wait_for(&stats, "failure counted", |s| s.handshakes_failed() == 1).await;
}

#[tokio::test]
async fn a_resumed_session_keeps_its_client_certificate() {
    let pki = Pki::new();
    let cases = [
        (
            ClientAuth::self_signed(),
            self_signed_client("resumer", KeyKind::EcP256).unwrap(),
        ),
        (
            ClientAuth::ca(pki.roots()),
            pki.client("resumer", KeyKind::EcP256),
        ),
    ];
    for (auth, client) in cases {
        let mut listener = pki.listener(auth).await;
        let config = pki.client_config(Some(&client));

        let (mut server, first, mut stream) = handshake(&mut listener, config.clone()).await;
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // Reading makes the client process the session tickets sent after the handshake.
        server.write_all(b"x").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(guard("read", stream.read_u8()).await.unwrap(), b'x');

        let (_server, second, stream) = handshake(&mut listener, config).await;
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
        assert_eq!(second.thumbprint(), first.thumbprint());
        assert_peer_is(&second, &client, &stream);
        assert_eq!(listener.stats().client_certificates(), 2);
    }
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let pki = Pki::new();
    let mut listener = pki.listener(ClientAuth::self_signed()).await;
    for proto in [&b"h2"[..], b"http/1.1"] {
        let config = pki.client_config_with(None, &[&rustls::version::TLS13], &[proto]);
        let (server, _peer, client) = handshake(&mut listener, config).await;
        assert_eq!(server.get_ref().1.alpn_protocol(), Some(proto));
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(proto));
    }
}
