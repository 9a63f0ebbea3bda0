//! What Envoy writes into `x-forwarded-client-cert` for a client certificate, to test XFCC
//! parsing against the real shapes — including the ones a hostile certificate produces.
//!
//! Envoy (`mutateXfccRequestHeader` in `conn_manager_utility.cc`) joins, with `;`: `By=` (its own
//! URI SAN), `Hash=` (hex SHA-256 of the client's DER), then per
//! `set_current_client_cert_details`: `Cert="…"` (URL-encoded PEM), `Subject="…"`, `URI=` (the
//! first URI SAN) and one `DNS=` per DNS SAN — the last two **unquoted**, so a certificate
//! whose SAN contains `,` or `;` writes extra elements or pairs (envoyproxy/envoy#32945).
//!
//! ```
//! use certbound_dev::envoy::{self_signed_client_with_sans, EnvoyXfcc};
//! use certbound_dev::KeyKind;
//!
//! let hostile = self_signed_client_with_sans("mallory", KeyKind::EcP256, &["urn:x,Hash=00"], &[]).unwrap();
//! let element = EnvoyXfcc::mesh("spiffe://cluster.local/ns/edge").element(&hostile);
//! assert!(element.ends_with("URI=urn:x,Hash=00")); // one element that reads as two
//! ```

use rcgen::string::Ia5String;
use rcgen::SanType;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{client_params, CertAndKey};
use crate::{DevError, KeyKind};

/// A self-signed client certificate with these URI and DNS subject alternative names (any
/// IA5 text, commas and semicolons included).
pub fn self_signed_client_with_sans(
    cn: &str,
    kind: KeyKind,
    uris: &[&str],
    dns: &[&str],
) -> Result<CertAndKey, DevError> {
    let key = kind.generate()?;
    let mut params = client_params(cn)?;
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI(Ia5String::try_from(*uri)?));
    }
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(Ia5String::try_from(*name)?));
    }
    Ok(CertAndKey::new(params.self_signed(&key)?, &key))
}

/// Which details an Envoy listener forwards (`forward_client_cert_details: SANITIZE_SET` with
/// `set_current_client_cert_details`).
#[derive(Debug, Clone)]
pub struct EnvoyXfcc {
    /// Envoy's own URI SAN (`By=`).
    pub by: String,
    /// `cert: true`.
    pub cert: bool,
    /// `subject: true`.
    pub subject: bool,
    /// `uri: true`.
    pub uri: bool,
    /// `dns: true`.
    pub dns: bool,
}

impl EnvoyXfcc {
    /// What service meshes set: subject, URI and DNS, no certificate (hash only).
    pub fn mesh(by: &str) -> Self {
        Self {
            by: by.to_owned(),
            cert: false,
            subject: true,
            uri: true,
            dns: true,
        }
    }

    /// Everything, the certificate included.
    pub fn with_cert(by: &str) -> Self {
        Self {
            cert: true,
            ..Self::mesh(by)
        }
    }

    /// The element Envoy writes for a connection from `client`.
    pub fn element(&self, client: &CertAndKey) -> String {
        let mut parts = vec![
            format!("By={}", self.by),
            format!("Hash={}", hex(&Sha256::digest(&client.cert_der))),
        ];
        if self.cert {
            parts.push(format!("Cert=\"{}\"", url_encode(&client.cert_pem)));
        }
        let (subject, uris, dns) = names(&client.cert_der);
        if self.subject {
            parts.push(format!("Subject=\"{subject}\""));
        }
        if self.uri {
            parts.push(format!("URI={}", uris.first().map_or("", String::as_str)));
        }
        if self.dns {
            parts.extend(dns.iter().map(|d| format!("DNS={d}")));
        }
        parts.join(";")
    }
}

fn names(der: &[u8]) -> (String, Vec<String>, Vec<String>) {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return (String::new(), Vec::new(), Vec::new());
    };
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    (cert.subject().to_string(), uris, dns)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Envoy's URL encoding of the PEM: everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
