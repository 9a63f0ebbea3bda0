//! Reading certificates from files (PEM with one or more certificates, or DER) and describing
//! them: thumbprint, subject, validity.

use std::path::Path;

use certbound_core::Thumbprint;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::X509Name;

use crate::Fatal;

/// One certificate from a file.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    /// Position in the file (0 is the first — the leaf of a chain).
    pub(crate) index: usize,
    /// `x5t#S256` of the DER encoding.
    pub(crate) thumbprint: Thumbprint,
    /// The subject, RFC 4514 order (most specific first): `CN=client-a, O=certbound dev`.
    pub(crate) subject: String,
    /// Whether subject and issuer are the same name.
    pub(crate) self_issued: bool,
    /// `notAfter`, Unix seconds.
    pub(crate) not_after: i64,
}

/// Reads every certificate in `path`: PEM (any number of `CERTIFICATE` blocks; other blocks such
/// as private keys are skipped) or a single DER certificate.
pub(crate) fn load(path: &Path) -> Result<Vec<Cert>, Fatal> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| Fatal::new(format!("cannot read {shown}: {e}")))?;
    let ders: Vec<Vec<u8>> = if looks_like_pem(&bytes) {
        let ders = CertificateDer::pem_slice_iter(&bytes)
            .map(|r| r.map(|der| der.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fatal::new(format!("{shown}: not valid PEM: {e}")))?;
        if ders.is_empty() {
            return Err(Fatal::new(format!(
                "{shown}: no CERTIFICATE block in this PEM file"
            )));
        }
        ders
    } else {
        let (rest, _) = X509Certificate::from_der(&bytes).map_err(|e| {
            Fatal::new(format!(
                "{shown}: neither PEM nor a DER X.509 certificate ({e})"
            ))
        })?;
        if !rest.is_empty() {
            return Err(Fatal::new(format!(
                "{shown}: {} unexpected bytes after the DER certificate",
                rest.len()
            )));
        }
        vec![bytes]
    };
    ders.iter()
        .enumerate()
        .map(|(index, der)| {
            describe(index, der).map_err(|e| {
                Fatal::new(format!("{shown} [{index}]: not an X.509 certificate ({e})"))
            })
        })
        .collect()
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Thumbprint, subject and validity of one DER certificate.
pub(crate) fn describe(index: usize, der: &[u8]) -> Result<Cert, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    Ok(Cert {
        index,
        thumbprint: Thumbprint::of_der(der),
        subject: rfc4514(cert.subject()),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A distinguished name as RFC 4514 writes it: most specific RDN first (`CN=…, O=…`), multi-valued
/// RDNs joined with `+`, special characters escaped, non-string values as `#hex`.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map_or_else(|_| attr.attr_type().to_id_string(), str::to_owned);
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => format!("#{}", hex(attr.as_slice())),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    if rdns.is_empty() {
        "(empty)".to_owned()
    } else {
        rdns.join(", ")
    }
}

fn escape(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    for (i, &c) in chars.iter().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == chars.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        if c.is_control() {
            out.push_str(&format!("\\{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
