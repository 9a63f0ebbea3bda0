//! What the transport knows about the client on one connection.
//!
//! [`TlsListener`](crate::TlsListener) makes one [`PeerCertificate`] right after each handshake —
//! hashing the leaf certificate once — and the server clones it into every request on that
//! connection. Proxies and tests make their own:
//!
//! ```
//! use certbound_core::{ClientCertificate, Thumbprint};
//! use certbound_tls::PeerCertificate;
//!
//! let der = b"DER of the client's leaf certificate".to_vec();
//! let peer = PeerCertificate::new(
//!     "192.0.2.7:50412".parse().unwrap(),
//!     Some(ClientCertificate::from_der(der.clone())),
//! );
//! assert_eq!(peer.thumbprint(), Some(&Thumbprint::of_der(&der)));
//!
//! // A client that presented no certificate still has an address.
//! let anonymous = PeerCertificate::new("192.0.2.8:50413".parse().unwrap(), None);
//! assert!(anonymous.thumbprint().is_none());
//! ```

use std::net::SocketAddr;

use certbound_core::{ClientCertificate, Thumbprint};

/// The TCP peer address of a connection and the leaf certificate the client presented on it,
/// if any.
///
/// This is the request extension the certbound layer reads (with axum, it arrives as
/// `ConnectInfo<PeerCertificate>`). Cloning is cheap: the certificate is shared, and its
/// thumbprint was computed when the value was made. `Debug` shows the thumbprint, never the
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    remote_addr: SocketAddr,
    certificate: Option<ClientCertificate>,
    tls: bool,
}

impl PeerCertificate {
    /// Describes a connection from `remote_addr` on which the client presented `certificate`
    /// (the leaf only; `None` when it presented none).
    pub fn new(remote_addr: SocketAddr, certificate: Option<ClientCertificate>) -> Self {
        Self {
            remote_addr,
            certificate,
            tls: true,
        }
    }

    /// Describes a plain-TCP connection from `remote_addr` (a [`PlainListener`](crate::PlainListener)
    /// behind a TLS-terminating proxy): no TLS, so no certificate of its own.
    pub fn plain(remote_addr: SocketAddr) -> Self {
        Self {
            remote_addr,
            certificate: None,
            tls: false,
        }
    }

    /// Whether the connection is TLS (so a missing certificate means the client sent none).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Describes a completed rustls server connection: takes the leaf of the client's
    /// certificate chain and computes its thumbprint.
    ///
    /// Call it once per connection, after the handshake; [`TlsListener`](crate::TlsListener)
    /// does this for you.
    pub fn from_connection(remote_addr: SocketAddr, conn: &rustls::ServerConnection) -> Self {
        let certificate = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| ClientCertificate::from_der(leaf.as_ref()));
        Self::new(remote_addr, certificate)
    }

    /// The address of the TCP peer (the client, or a proxy in front of it).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The leaf certificate the client presented, if any.
    pub fn certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_ref()
    }

    /// The `x5t#S256` thumbprint of the client's certificate, if it presented one.
    pub fn thumbprint(&self) -> Option<&Thumbprint> {
        self.certificate.as_ref().map(ClientCertificate::thumbprint)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn debug_shows_thumbprint_not_der() {
        let der = b"\x30\x82secret-looking-der-bytes".to_vec();
        let peer = PeerCertificate::new(
            "127.0.0.1:1".parse().unwrap(),
            Some(ClientCertificate::from_der(der.clone())),
        );
        let debug = format!("{peer:?}");
        assert!(
            debug.contains(&Thumbprint::of_der(&der).to_string()),
            "{debug}"
        );
        assert!(!debug.contains("secret-looking"), "{debug}");
        assert!(debug.contains("127.0.0.1:1"), "{debug}");
    }

    #[test]
    fn clones_share_the_certificate() {
        let peer = PeerCertificate::new(
            "127.0.0.1:1".parse().unwrap(),
            Some(ClientCertificate::from_der(vec![1, 2, 3])),
        );
        let clone = peer.clone();
        let (a, b) = (peer.certificate().unwrap(), clone.certificate().unwrap());
        assert!(std::ptr::eq(a.der().as_ptr(), b.der().as_ptr()));
        assert_eq!(peer, clone);
    }
}
