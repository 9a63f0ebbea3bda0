//! rustls server configurations for the two RFC 8705 client-authentication modes.
//!
//! * [`ClientAuth::ca`] — `tls_client_auth` (RFC 8705 §2.1): the client's chain must verify
//!   to the given CA bundle; a certificate from any other CA is refused in the handshake, and
//!   so is one listed in a certificate revocation list given with [`ClientAuth::with_crls`].
//! * [`ClientAuth::self_signed`] — `self_signed_tls_client_auth` (§2.2): any certificate is
//!   accepted without a chain check, but the client must still sign the handshake with the
//!   certificate's key, so it proves it holds the key.
//!
//! Either way a client that presents no certificate still completes the handshake, so the
//! HTTP layer can answer `401 invalid_token` with a useful challenge instead of a bare TLS
//! alert — unless you ask for [`ClientAuth::mandatory`].
//!
//! ```
//! use certbound_dev::{DevCa, KeyKind};
//! use certbound_tls::{server_config, ClientAuth};
//! use rustls::RootCertStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = DevCa::new("client CA")?;
//! let server = ca.server_cert(&["localhost"])?;
//!
//! // tls_client_auth: only certificates issued by `ca`.
//! let mut roots = RootCertStore::empty();
//! roots.add(ca.cert().cert_der.clone())?;
//! let config = server_config(
//!     vec![server.cert_der.clone()],
//!     server.private_key(),
//!     ClientAuth::ca(roots),
//! )?;
//! assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
//!
//! // self_signed_tls_client_auth, and no TLS at all without a certificate.
//! let strict = server_config(
//!     vec![server.cert_der.clone()],
//!     server.private_key(),
//!     ClientAuth::self_signed().mandatory(),
//! )?;
//! # let _ = strict;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

use crate::TlsError;

/// How the server asks for and checks client certificates.
///
/// Built with [`ClientAuth::ca`] or [`ClientAuth::self_signed`]; optional by default, required
/// after [`ClientAuth::mandatory`].
#[derive(Debug, Clone)]
pub struct ClientAuth {
    mode: Mode,
    mandatory: bool,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

#[derive(Debug, Clone)]
enum Mode {
    Ca(Arc<RootCertStore>),
    SelfSigned,
}

impl ClientAuth {
    /// `tls_client_auth`: a client certificate must chain to one of `roots` (and be valid now,
    /// for client authentication); any other certificate is refused in the handshake.
    ///
    /// The subjects of `roots` are sent to clients as hints for which certificate to present.
    pub fn ca(roots: impl Into<Arc<RootCertStore>>) -> Self {
        Self {
            mode: Mode::Ca(roots.into()),
            mandatory: false,
            crls: Vec::new(),
        }
    }

    /// `self_signed_tls_client_auth`: any well-formed X.509 v3 certificate is accepted without
    /// looking at its issuer or validity period — the token's `cnf."x5t#S256"` binding says
    /// which certificate is the right one. The handshake signature (`CertificateVerify`) is
    /// still verified against the certificate's public key, so the client proves it holds the
    /// private key.
    pub fn self_signed() -> Self {
        Self {
            mode: Mode::SelfSigned,
            mandatory: false,
            crls: Vec::new(),
        }
    }

    /// Refuses, in the handshake, clients that present no certificate.
    ///
    /// Without this (the default) such clients connect, and requests carry a
    /// [`PeerCertificate`](crate::PeerCertificate) without a certificate, which the certbound
    /// layer answers with `401 invalid_token` — more helpful to a client than a TLS alert.
    pub fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }

    /// CA mode: refuses, in the handshake, client certificates listed as revoked in `crls`
    /// (certificate revocation lists, such as those from [`load_crls`](crate::load_crls); may
    /// be called again to add more). The client gets a `certificate_revoked` alert.
    ///
    /// Once any CRL is given, revocation is checked for every certificate of the client's chain
    /// below the trust anchor, and a certificate whose issuer has no CRL here is refused too
    /// (its revocation status is unknown) — as nginx's `ssl_crl` does. With an intermediate
    /// CA, give the root's CRL (covering the intermediate) and the intermediate's (covering
    /// the clients). Each CRL must be signed by the CA it is for. A CRL past its `nextUpdate`
    /// is still used: reload the server configuration to pick up a newer one.
    ///
    /// Self-signed mode has no issuer to revoke anything: [`server_config`] and
    /// [`client_cert_verifier`](Self::client_cert_verifier) refuse CRLs there with
    /// [`TlsError::CrlsWithoutCa`].
    ///
    /// ```
    /// use certbound_dev::{DevCa, KeyKind};
    /// use certbound_tls::{server_config, ClientAuth};
    /// use rustls::RootCertStore;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = DevCa::new("client CA")?;
    /// let server = ca.server_cert(&["localhost"])?;
    /// let stolen = ca.client_cert("laptop-lost-on-a-train", KeyKind::EcP256)?;
    /// let crl = ca.revocation_list(&[&stolen])?;
    ///
    /// let mut roots = RootCertStore::empty();
    /// roots.add(ca.cert().cert_der.clone())?;
    /// let auth = ClientAuth::ca(roots).with_crls([crl.der.clone()]);
    /// let config = server_config(vec![server.cert_der.clone()], server.private_key(), auth)?;
    /// # let _ = config;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_crls(
        mut self,
        crls: impl IntoIterator<Item = CertificateRevocationListDer<'static>>,
    ) -> Self {
        self.crls.extend(crls);
        self
    }

    /// How many CRLs are configured.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Whether clients without a certificate are refused in the handshake.
    pub fn is_mandatory(&self) -> bool {
        self.mandatory
    }

    /// The rustls client certificate verifier for this mode, using the aws-lc-rs provider's
    /// signature algorithms — for building a [`ServerConfig`] of your own (for example with a
    /// certificate resolver for several host names).
    pub fn client_cert_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        self.verifier(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }

    fn verifier(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        Ok(match &self.mode {
            Mode::Ca(roots) => {
                let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                    .with_crls(self.crls.iter().cloned());
                if self.mandatory {
                    builder.build()?
                } else {
                    builder.allow_unauthenticated().build()?
                }
            }
            Mode::SelfSigned if !self.crls.is_empty() => return Err(TlsError::CrlsWithoutCa),
            Mode::SelfSigned => Arc::new(SelfSignedClientVerifier {
                algorithms: provider.signature_verification_algorithms,
                mandatory: self.mandatory,
            }),
        })
    }
}

/// Builds a server configuration for RFC 8705 mutual TLS.
///
/// `cert_chain` is the server's certificate followed by its intermediates; `key` its private
/// key (PKCS#8, PKCS#1 or SEC1). The configuration uses the aws-lc-rs provider explicitly (never
/// a process-wide default), rustls' safe default protocol versions (TLS 1.3 and 1.2), and offers
/// ALPN `h2` then `http/1.1`.
///
/// Fails if the key does not parse or does not match the certificate, if the CA bundle of
/// [`ClientAuth::ca`] is empty or one of its CRLs is not a valid CRL, or if CRLs were given in
/// self-signed mode.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = client_auth.verifier(provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ProtocolVersions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)
        .map_err(TlsError::ServerIdentity)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `self_signed_tls_client_auth`: accepts any parseable certificate, verifies the handshake
/// signature made with its key.
#[derive(Debug)]
struct SelfSignedClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl ClientCertVerifier for SelfSignedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the client may present whichever certificate its token is bound to.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // No chain, issuer or validity check by design (RFC 8705 §2.2); only insist that it is
        // a certificate, so its key can check the CertificateVerify signature.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use certbound_dev::{pki::self_signed_client, DevCa, KeyKind};

    fn verifier(auth: ClientAuth) -> Arc<dyn ClientCertVerifier> {
        auth.client_cert_verifier().unwrap()
    }

    #[test]
    fn optional_unless_mandatory() {
        let ca = DevCa::new("unit CA").unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert().cert_der.clone()).unwrap();
        let roots = Arc::new(roots);

        for auth in [ClientAuth::ca(roots.clone()), ClientAuth::self_signed()] {
            assert!(!auth.is_mandatory());
            let v = verifier(auth.clone());
            assert!(v.offer_client_auth());
            assert!(!v.client_auth_mandatory());
            let v = verifier(auth.mandatory());
            assert!(v.offer_client_auth());
            assert!(v.client_auth_mandatory());
        }
    }

    #[test]
    fn self_signed_rejects_what_is_not_a_certificate() {
        let v = verifier(ClientAuth::self_signed());
        let now = UnixTime::now();
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert!(v.verify_client_cert(&garbage, &[], now).is_err());
        assert!(v
            .verify_client_cert(&CertificateDer::from(Vec::new()), &[], now)
            .is_err());

        let client = self_signed_client("unit", KeyKind::EcP256).unwrap();
        assert!(v.verify_client_cert(&client.cert_der, &[], now).is_ok());
        assert!(!v.supported_verify_schemes().is_empty());
        assert!(v.root_hint_subjects().is_empty());
    }

    #[test]
    fn empty_ca_bundle_is_a_configuration_error() {
        let ca = DevCa::new("unit CA").unwrap();
        let server = ca.server_cert(&["localhost"]).unwrap();
        let err = server_config(
            vec![server.cert_der.clone()],
            server.private_key(),
            ClientAuth::ca(RootCertStore::empty()),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::ClientVerifier(_)), "{err:?}");
    }

    #[test]
    fn mismatched_server_key_is_refused() {
        let ca = DevCa::new("unit CA").unwrap();
        let server = ca.server_cert(&["localhost"]).unwrap();
        let other = ca.server_cert(&["localhost"]).unwrap();
        let err = server_config(
            vec![server.cert_der.clone()],
            other.private_key(),
            ClientAuth::self_signed(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::ServerIdentity(_)), "{err:?}");
    }
}
