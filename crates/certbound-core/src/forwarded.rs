//! Client certificates forwarded by a TLS-terminating proxy, in every format in use.
//!
//! A forwarded header is evidence only when it comes from a proxy you trust: the layer uses it
//! only when the TCP peer is inside the configured [`IpCidr`]s, and refuses (400
//! `invalid_request`, logged) a request that carries it from anywhere else — never silently
//! ignoring it, which would hide a misconfigured proxy. See [`ForwardedCertificates::extract`].
//!
//! ```
//! use certbound_core::forwarded::{ForwardedCertificates, ForwardedFormat, IpCidr};
//! use http::HeaderMap;
//!
//! let source = ForwardedCertificates::new(
//!     ForwardedFormat::Nginx { header: "x-ssl-client-cert".parse().unwrap() },
//!     vec!["127.0.0.1/32".parse::<IpCidr>().unwrap()],
//! );
//! let mut headers = HeaderMap::new();
//! headers.insert("x-ssl-client-cert", "not%20a%20certificate".parse().unwrap());
//!
//! // From the trusted proxy: parsed, and this value is malformed → 400 invalid_request.
//! let err = source.extract(&headers, Some("127.0.0.1".parse().unwrap())).unwrap_err();
//! assert_eq!(err.code(), "malformed_forwarded_certificate");
//! // From anyone else: refused before it is even parsed.
//! let err = source.extract(&headers, Some("10.1.2.3".parse().unwrap())).unwrap_err();
//! assert_eq!(err.code(), "untrusted_forwarded_certificate");
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName};

use crate::{Rejection, Thumbprint};

/// Default upper bound on one forwarded certificate header value, in bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 16 * 1024;

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a
/// single host).
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are the IPv4 networks they denote
/// (`10.0.0.0/8`): a dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`, and both
/// spellings match them. Wider IPv6 networks (`::/0`) match IPv6 peers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr(ipnet::IpNet);

/// Why a CIDR string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?} (expected ADDRESS or ADDRESS/PREFIX, e.g. 10.0.0.0/8)")]
pub struct CidrError(String);

impl IpCidr {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`) are
    /// IPv4 peers.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError(s.to_owned());
        // ipnet accepts a few spellings we do not want (a sign or leading zeros in the prefix).
        if let Some((_, prefix)) = s.split_once('/') {
            if prefix.is_empty()
                || !prefix.bytes().all(|b| b.is_ascii_digit())
                || (prefix.len() > 1 && prefix.starts_with('0'))
            {
                return Err(syntax());
            }
        }
        let net = match s.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => ipnet::IpNet::from(s.parse::<IpAddr>().map_err(|_| syntax())?),
        };
        // Every network whose address is IPv4-mapped has a prefix of at least 96.
        let net = match (net, net.network()) {
            (ipnet::IpNet::V6(v6), IpAddr::V6(network)) => match network.to_ipv4_mapped() {
                Some(v4) => v6
                    .prefix_len()
                    .checked_sub(96)
                    .and_then(|prefix| ipnet::Ipv4Net::new(v4, prefix).ok())
                    .map(ipnet::IpNet::V4)
                    .ok_or_else(syntax)?,
                None => net,
            },
            _ => net,
        };
        Ok(Self(net.trunc()))
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The header formats proxies use to forward a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedFormat {
    /// nginx `$ssl_client_escaped_cert`: URL-encoded PEM in a header you name.
    Nginx {
        /// The header nginx sets (`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`).
        header: HeaderName,
    },
    /// Envoy / Istio `x-forwarded-client-cert`: exactly one element by default (what an edge
    /// Envoy with `forward_client_cert_details: SANITIZE_SET` writes), or exactly as many as
    /// [`ForwardedCertificates::xfcc_hops`] says, the client's being the first; `Cert=`
    /// URL-encoded PEM; `Hash=` hex SHA-256, which must agree with `Cert` when both are present
    /// and is used alone only when `hash_only` is set. A repeated `Cert`/`Hash` is malformed.
    /// `URI`, `DNS` and `Subject` come from the client's certificate and are never trusted.
    Xfcc {
        /// Accept an element with `Hash=` and no `Cert=`.
        hash_only: bool,
    },
    /// RFC 9440 `Client-Cert`: a structured-field byte sequence `:base64(DER):`.
    Rfc9440,
    /// AWS ALB mTLS: URL-encoded PEM in which `+`, `=` and `/` stay literal.
    /// `X-Amzn-Mtls-Clientcert-Leaf` (verify mode) or `X-Amzn-Mtls-Clientcert` (passthrough,
    /// whole chain, leaf first).
    Alb {
        /// `true` for passthrough mode's `X-Amzn-Mtls-Clientcert`.
        passthrough: bool,
    },
    /// Traefik v3 `X-Forwarded-Tls-Client-Cert`: base64 DER without armour, chain comma-separated,
    /// leaf first.
    Traefik,
    /// One base64 DER value in a header you name (HAProxy `%[ssl_c_der,base64]`, Caddy
    /// `{http.request.tls.client.certificate_der_base64}`, Cloudflare `Cf-Client-Cert-Der-Base64`).
    Base64Der {
        /// The header name.
        header: HeaderName,
    },
    /// An Auth0-style customer edge: `client-certificate` (URL-encoded PEM, leaf only) and
    /// `client-certificate-ca-verified: SUCCESS | FAILED[: reason]`.
    Auth0Edge {
        /// Refuse certificates the edge did not verify (`FAILED` is normal for self-signed clients).
        require_verified: bool,
    },
}

impl ForwardedFormat {
    /// The header that carries the certificate.
    pub fn header(&self) -> HeaderName {
        match self {
            ForwardedFormat::Nginx { header } | ForwardedFormat::Base64Der { header } => {
                header.clone()
            }
            ForwardedFormat::Xfcc { .. } => HeaderName::from_static("x-forwarded-client-cert"),
            ForwardedFormat::Rfc9440 => HeaderName::from_static("client-cert"),
            ForwardedFormat::Alb { passthrough: false } => {
                HeaderName::from_static("x-amzn-mtls-clientcert-leaf")
            }
            ForwardedFormat::Alb { passthrough: true } => {
                HeaderName::from_static("x-amzn-mtls-clientcert")
            }
            ForwardedFormat::Traefik => HeaderName::from_static("x-forwarded-tls-client-cert"),
            ForwardedFormat::Auth0Edge { .. } => HeaderName::from_static("client-certificate"),
        }
    }

    /// Every format and mode, in a fixed order, with `header` for the formats whose header you
    /// name (nginx, base64-der) — for exhaustive tests, fuzzing and documentation.
    pub fn every(header: &HeaderName) -> Vec<Self> {
        vec![
            ForwardedFormat::Nginx {
                header: header.clone(),
            },
            ForwardedFormat::Xfcc { hash_only: false },
            ForwardedFormat::Xfcc { hash_only: true },
            ForwardedFormat::Rfc9440,
            ForwardedFormat::Alb { passthrough: false },
            ForwardedFormat::Alb { passthrough: true },
            ForwardedFormat::Traefik,
            ForwardedFormat::Base64Der {
                header: header.clone(),
            },
            ForwardedFormat::Auth0Edge {
                require_verified: false,
            },
            ForwardedFormat::Auth0Edge {
                require_verified: true,
            },
        ]
    }

    /// Parses `FORMAT[:HEADER-NAME]`, e.g. `nginx:X-SSL-Client-Cert`, `xfcc`, `rfc9440`,
    /// `alb`, `alb-passthrough`, `traefik`, `base64-der:X-Client-Cert`, `auth0-edge`,
    /// `auth0-edge-verified`, `xfcc-hash-only`.
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let (name, header) = match spec.split_once(':') {
            Some((n, h)) => (n, Some(h)),
            None => (spec, None),
        };
        let named = |what: &str| -> Result<HeaderName, String> {
            let h =
                header.ok_or_else(|| format!("{what} needs a header name: {what}:HEADER-NAME"))?;
            HeaderName::from_str(h).map_err(|_| format!("invalid header name {h:?}"))
        };
        let no_header = |f: ForwardedFormat| match header {
            None => Ok(f),
            Some(_) => Err(format!(
                "{name} uses a fixed header; drop the :HEADER-NAME part"
            )),
        };
        match name {
            "nginx" => Ok(ForwardedFormat::Nginx { header: named("nginx")? }),
            "base64-der" => Ok(ForwardedFormat::Base64Der { header: named("base64-der")? }),
            "xfcc" => no_header(ForwardedFormat::Xfcc { hash_only: false }),
            "xfcc-hash-only" => no_header(ForwardedFormat::Xfcc { hash_only: true }),
            "rfc9440" => no_header(ForwardedFormat::Rfc9440),
            "alb" => no_header(ForwardedFormat::Alb { passthrough: false }),
            "alb-passthrough" => no_header(ForwardedFormat::Alb { passthrough: true }),
            "traefik" => no_header(ForwardedFormat::Traefik),
            "auth0-edge" => no_header(ForwardedFormat::Auth0Edge { require_verified: false }),
            "auth0-edge-verified" => no_header(ForwardedFormat::Auth0Edge { require_verified: true }),
            other => Err(format!(
                "unknown client-certificate header format {other:?} (expected nginx, xfcc, xfcc-hash-only, rfc9440, alb, alb-passthrough, traefik, base64-der, auth0-edge, auth0-edge-verified)"
            )),
        }
    }
}

/// Where the layer takes the client certificate from when a proxy terminates TLS.
#[derive(Debug, Clone)]
pub struct ForwardedCertificates {
    format: ForwardedFormat,
    header: HeaderName,
    trusted: Vec<IpCidr>,
    max_len: usize,
    xfcc_hops: usize,
}

/// A forwarded header from an untrusted peer, or a malformed one: the rejection, with the detail
/// that goes to the log (never to the client).
pub type ForwardedResult = Result<Option<Thumbprint>, Rejection>;

impl ForwardedCertificates {
    /// Use `format`, trusting only peers inside `trusted`.
    pub fn new(format: ForwardedFormat, trusted: Vec<IpCidr>) -> Self {
        let header = format.header();
        Self {
            format,
            header,
            trusted,
            max_len: DEFAULT_MAX_HEADER_LEN,
            xfcc_hops: 1,
        }
    }

    /// For [`ForwardedFormat::Xfcc`]: how many trusted Envoy hops write an element (default 1,
    /// at least 1). The edge one must use `SANITIZE_SET` (it drops what the client sent and
    /// writes the client's element); each further trusted hop with `APPEND_FORWARD` appends its
    /// own. A header with any other number of elements is malformed — a client certificate
    /// whose SAN contains a comma adds one — and the client's certificate is taken from the
    /// first element.
    pub fn xfcc_hops(mut self, hops: usize) -> Self {
        self.xfcc_hops = hops.max(1);
        self
    }

    /// Largest accepted header value in bytes (default 16 KiB).
    pub fn max_header_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The format.
    pub fn format(&self) -> &ForwardedFormat {
        &self.format
    }

    /// The header carrying the certificate.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted.iter().any(|c| c.contains(ip)))
    }

    /// The thumbprint of the forwarded client certificate.
    ///
    /// - no header, or an empty (or whitespace-only) value from a trusted proxy → `Ok(None)` (the
    ///   client presented no certificate; Caddy sends an empty value then);
    /// - the header from a peer outside the trusted networks (or an unknown peer) →
    ///   [`Rejection::UntrustedForwardedCertificate`];
    /// - repeated, oversized or badly encoded → [`Rejection::MalformedForwardedCertificate`];
    /// - an Auth0 edge that says it did not verify the certificate, when verification is
    ///   required → [`Rejection::UnverifiedForwardedCertificate`].
    pub fn extract(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> ForwardedResult {
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if !self.is_trusted(peer) {
            return Err(Rejection::UntrustedForwardedCertificate);
        }
        let malformed = Rejection::MalformedForwardedCertificate;
        if values.next().is_some() || value.len() > self.max_len {
            return Err(malformed);
        }
        let value = value.to_str().map_err(|_| malformed)?;
        if value.trim_matches([' ', '\t']).is_empty() {
            return Ok(None);
        }
        match &self.format {
            ForwardedFormat::Nginx { .. } | ForwardedFormat::Alb { .. } => {
                leaf_from_escaped_pem(value).map(Some)
            }
            ForwardedFormat::Auth0Edge { require_verified } => {
                if *require_verified {
                    let verified = headers.get_all("client-certificate-ca-verified");
                    let mut it = verified.iter();
                    match (it.next().map(|v| v.as_bytes()), it.next()) {
                        (Some(b"SUCCESS"), None) => {}
                        _ => return Err(Rejection::UnverifiedForwardedCertificate),
                    }
                }
                leaf_from_escaped_pem(value).map(Some)
            }
            ForwardedFormat::Xfcc { hash_only } => xfcc(value, *hash_only, self.xfcc_hops),
            ForwardedFormat::Rfc9440 => rfc9440(value).map(Some),
            ForwardedFormat::Traefik => {
                let leaf = value.split(',').next().unwrap_or_default().trim();
                thumbprint_of_der(&STANDARD.decode(leaf).map_err(|_| malformed)?).map(Some)
            }
            ForwardedFormat::Base64Der { .. } => {
                thumbprint_of_der(&STANDARD.decode(value.trim()).map_err(|_| malformed)?).map(Some)
            }
        }
    }
}

/// Percent-decoding as RFC 3986 defines it: `%XX` only; `+` is a plus sign, never a space.
pub fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM document (the leaf, in every format that
/// carries a chain).
pub fn first_pem_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = find(pem, BEGIN)? + BEGIN.len();
    let len = find(&pem[start..], END)?;
    let body: Vec<u8> = pem[start..start + len]
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'\t' | b' '))
        .collect();
    STANDARD.decode(body).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn leaf_from_escaped_pem(value: &str) -> Result<Thumbprint, Rejection> {
    let pem = percent_decode(value).ok_or(Rejection::MalformedForwardedCertificate)?;
    let der = first_pem_certificate(&pem).ok_or(Rejection::MalformedForwardedCertificate)?;
    thumbprint_of_der(&der)
}

/// Hashes `der` after checking that it is exactly one DER SEQUENCE (what every X.509
/// certificate is), so truncated or padded values never produce a thumbprint.
fn thumbprint_of_der(der: &[u8]) -> Result<Thumbprint, Rejection> {
    if is_single_der_sequence(der) {
        Ok(Thumbprint::of_der(der))
    } else {
        Err(Rejection::MalformedForwardedCertificate)
    }
}

fn is_single_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (len, header) = match *first {
        n @ 0..=0x7f => (usize::from(n), 2),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let Some(len_bytes) = rest.get(..n) else {
                return false;
            };
            // DER: minimal length encoding.
            if len_bytes[0] == 0 || (n == 1 && len_bytes[0] < 0x80) {
                return false;
            }
            (
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                2 + n,
            )
        }
        _ => return false,
    };
    header.checked_add(len) == Some(der.len())
}

/// RFC 9440 §2: `Client-Cert: :<base64 DER>:` — a structured-field byte sequence.
fn rfc9440(value: &str) -> Result<Thumbprint, Rejection> {
    let malformed = Rejection::MalformedForwardedCertificate;
    let inner = value
        .trim_matches(' ')
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .ok_or(malformed)?;
    // RFC 8941 §3.3.5: standard alphabet; padding may be omitted by lenient senders.
    let der = STANDARD
        .decode(inner)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(inner))
        .map_err(|_| malformed)?;
    thumbprint_of_der(&der)
}

/// One `key=value` pair of an XFCC element, the value unquoted.
struct XfccPair<'a> {
    key: &'a str,
    value: std::borrow::Cow<'a, str>,
}

/// Envoy's `x-forwarded-client-cert`, parsed strictly into elements of pairs.
///
/// Grammar (Envoy's documentation): elements separated by `,`, pairs by `;`, `key=value`; a
/// value containing `,`, `;` or `=` is double-quoted with `\"` escapes. Envoy writes the URI
/// and DNS SANs *unquoted*, so a certificate whose SAN contains `,` or `;` adds elements or
/// pairs of the client's choosing. Hence: a `"` anywhere but around a whole value is malformed
/// (it could hide separators), and the callers refuse a repeated `Hash`/`Cert` and any element
/// count other than the configured one.
fn xfcc_elements(value: &str) -> Option<Vec<Vec<XfccPair<'_>>>> {
    let bytes = value.as_bytes();
    let mut elements = vec![Vec::new()];
    let mut i = 0;
    loop {
        // Optional whitespace, then a pair (or an empty one, which we skip).
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            None => break,
            Some(b';') => {
                i += 1;
                continue;
            }
            Some(b',') => {
                elements.push(Vec::new());
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let key_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            i += 1;
        }
        if i == key_start || bytes.get(i) != Some(&b'=') {
            return None;
        }
        let key = value.get(key_start..i)?;
        i += 1;
        let pair_value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let mut escaped = false;
            loop {
                match bytes.get(i)? {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => break,
                    _ => {}
                }
                i += 1;
            }
            let inner = value.get(start..i)?;
            i += 1; // the closing quote
            unescape(inner)?
        } else {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b';' | b'"'))
            {
                i += 1;
            }
            if bytes.get(i) == Some(&b'"') {
                return None; // a quote inside an unquoted value
            }
            std::borrow::Cow::Borrowed(value.get(start..i)?.trim_end_matches([' ', '\t']))
        };
        // After a value: whitespace, then a separator or the end.
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        if !matches!(bytes.get(i), None | Some(b',' | b';')) {
            return None;
        }
        elements.last_mut()?.push(XfccPair {
            key,
            value: pair_value,
        });
    }
    Some(elements)
}

fn unescape(inner: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !inner.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(std::borrow::Cow::Owned(out))
}

/// Envoy's `x-forwarded-client-cert`. The header must hold exactly `hops` elements — one per
/// trusted Envoy that wrote or appended one, the outermost (edge) one using `SANITIZE_SET` —
/// and the client's certificate is in the first: the element the edge wrote. A count is never
/// taken from the value itself, because a client's certificate SAN can add commas.
fn xfcc(value: &str, hash_only: bool, hops: usize) -> ForwardedResult {
    let malformed = Rejection::MalformedForwardedCertificate;
    let elements = xfcc_elements(value).ok_or(malformed)?;
    if elements.len() != hops {
        return Err(malformed);
    }
    let element = elements.first().ok_or(malformed)?;
    let (mut cert, mut hash) = (None, None);
    for pair in element {
        let slot = if pair.key.eq_ignore_ascii_case("cert") {
            &mut cert
        } else if pair.key.eq_ignore_ascii_case("hash") {
            &mut hash
        } else {
            continue;
        };
        if slot.replace(&pair.value).is_some() {
            return Err(malformed); // Cert= or Hash= twice in one element: a SAN injection
        }
    }
    let from_hash = hash
        .map(|h| Thumbprint::from_hex(h).map_err(|_| malformed))
        .transpose()?;
    let from_cert = cert.map(|c| leaf_from_escaped_pem(c)).transpose()?;
    match (from_cert, from_hash) {
        (Some(c), Some(h)) if c == h => Ok(Some(c)),
        (Some(_), Some(_)) => Err(malformed),
        (Some(c), None) => Ok(Some(c)),
        (None, Some(h)) if hash_only => Ok(Some(h)),
        (None, Some(_)) => Err(malformed),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let c: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.1.2".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        let host: IpCidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpCidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_decoding_keeps_plus() {
        assert_eq!(percent_decode("a+b%2Bc%2fd").unwrap(), b"a+b+c/d");
        assert!(percent_decode("%").is_none());
        assert!(percent_decode("%2").is_none());
        assert!(percent_decode("%zz").is_none());
    }

    #[test]
    fn der_sequence_check() {
        assert!(is_single_der_sequence(&[0x30, 0x00]));
        assert!(is_single_der_sequence(&[0x30, 0x02, 1, 2]));
        assert!(!is_single_der_sequence(&[0x30, 0x02, 1]));
        assert!(!is_single_der_sequence(&[0x30, 0x02, 1, 2, 3]));
        assert!(!is_single_der_sequence(&[0x31, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0])); // non-minimal
        assert!(!is_single_der_sequence(&[0x30, 0x80])); // indefinite
        assert!(!is_single_der_sequence(&[]));
    }

    #[test]
    fn xfcc_grammar() {
        let parsed = xfcc_elements(r#"By=a;Subject="CN=x,O=\"y;z\"";URI=u,Hash=h"#).unwrap();
        assert_eq!(parsed.len(), 2);
        let first: Vec<(&str, &str)> = parsed[0].iter().map(|p| (p.key, &*p.value)).collect();
        assert_eq!(
            first,
            vec![("By", "a"), ("Subject", r#"CN=x,O="y;z""#), ("URI", "u")]
        );
        assert_eq!(parsed[1][0].key, "Hash");
        // Quotes anywhere but around a whole value could hide separators.
        for bad in [
            r#"a="unterminated"#,
            r#"URI=urn:"x"#,
            r#"URI=urn:x";Hash=1"#,
            r#"Subject="a"b;Hash=1"#,
            "=value",
            "novalue",
            "Hash",
        ] {
            assert!(xfcc_elements(bad).is_none(), "{bad}");
        }
        assert_eq!(xfcc_elements("").unwrap().len(), 1);
        assert_eq!(xfcc_elements("Hash=1;;URI=").unwrap()[0].len(), 2);
    }

    #[test]
    fn spec_parsing() {
        assert_eq!(
            ForwardedFormat::parse_spec("nginx:X-SSL-Client-Cert").unwrap(),
            ForwardedFormat::Nginx {
                header: HeaderName::from_static("x-ssl-client-cert")
            }
        );
        assert!(ForwardedFormat::parse_spec("nginx").is_err());
        assert!(ForwardedFormat::parse_spec("xfcc:foo").is_err());
        assert!(ForwardedFormat::parse_spec("bogus").is_err());
        assert_eq!(
            ForwardedFormat::parse_spec("rfc9440").unwrap().header(),
            "client-cert"
        );
    }
}
