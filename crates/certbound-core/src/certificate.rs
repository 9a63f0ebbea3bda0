//! A client certificate and its thumbprint, computed once.
//!
//! ```
//! use certbound_core::ClientCertificate;
//!
//! let cert = ClientCertificate::from_der(b"DER bytes of the leaf".to_vec());
//! // The thumbprint was computed when the value was made; reading it costs nothing.
//! println!("client presented {}", cert.thumbprint());
//! ```

use std::fmt;
use std::sync::Arc;

use crate::Thumbprint;

/// The leaf certificate a client presented — in the TLS handshake or through a trusted proxy —
/// with its `x5t#S256` thumbprint, computed once when the value is made.
///
/// Cloning is cheap (the DER is shared). `Debug` shows the thumbprint, never the certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Arc<[u8]>,
    thumbprint: Thumbprint,
}

impl ClientCertificate {
    /// Takes the DER encoding of the leaf certificate and hashes it.
    pub fn from_der(der: impl Into<Arc<[u8]>>) -> Self {
        let der = der.into();
        let thumbprint = Thumbprint::of_der(&der);
        Self { der, thumbprint }
    }

    /// The DER encoding of the leaf certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate's `x5t#S256` thumbprint.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.thumbprint
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("der_len", &self.der.len())
            .finish()
    }
}
