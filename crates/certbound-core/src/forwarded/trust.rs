//! Whether a forwarded header is evidence: the trusted proxy networks ([`IpCidr`]) and the
//! decision of [`ForwardedCertificates::extract`] — trust first, then header hygiene, then the
//! format's own parser.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::{HeaderMap, HeaderName};

use super::formats::ForwardedFormat;
use crate::{Rejection, Thumbprint};

/// Default upper bound on one forwarded certificate header value, in bytes.
pub const DEFAULT_MAX_FORWARDED_HEADER_LEN: usize = 16 * 1024;

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
            max_len: DEFAULT_MAX_FORWARDED_HEADER_LEN,
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
        self.format.thumbprint(value, headers, self.xfcc_hops)
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
}
