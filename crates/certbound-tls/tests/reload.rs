//! `TlsListener::config_handle`: a replaced server configuration reaches new handshakes;
//! connections made before keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use certbound_tls::ClientAuth;
use common::{connect, guard, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn new_handshakes_get_the_new_configuration_and_open_connections_keep_theirs() {
    let old = Pki::new();
    let renewed = Pki::new(); // another CA, another server certificate
    let mut listener = old.listener(ClientAuth::self_signed()).await;
    let addr = listener.local_addr();
    let handle = listener.config_handle();

    // A connection before the reload, echoing through the server side.
    let (server, client) = guard("first handshake", async {
        tokio::join!(listener.accept(), connect(addr, old.client_config(None)))
    })
    .await;
    let (mut server, _) = server.unwrap();
    let mut before = client.unwrap();
    let leaf = |stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(leaf(&before), old.server.cert_der.to_vec());

    handle.store(renewed.server_config(ClientAuth::self_signed()));
    assert!(std::sync::Arc::ptr_eq(
        &handle.load(),
        &listener.config_handle().load()
    ));

    // A new handshake sees the renewed certificate (and a client trusting only the old CA
    // is refused).
    let (accepted, client) = guard("second handshake", async {
        tokio::join!(
            listener.accept(),
            connect(addr, renewed.client_config(None))
        )
    })
    .await;
    let _kept = accepted.unwrap();
    assert_eq!(leaf(&client.unwrap()), renewed.server.cert_der.to_vec());
    assert!(connect(addr, old.client_config(None)).await.is_err());

    // The connection opened before the reload still carries data both ways.
    guard("old connection", async {
        before.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(&buf).await.unwrap();
        before.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    })
    .await;
}
