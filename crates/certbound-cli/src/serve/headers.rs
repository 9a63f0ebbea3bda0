//! What the sidecar does to headers on the way to the upstream and back: hop-by-hop headers
//! removed (RFC 9110 §7.6.1), identity headers the client sent removed and the verified ones
//! added, `X-Forwarded-*` and RFC 7239 `Forwarded` appended. Plain functions over a
//! [`HeaderMap`], tested here with plain values.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certbound::VerifiedToken;
use http::header::{HeaderName, HeaderValue, CONNECTION, FORWARDED, HOST, TE};
use http::HeaderMap;

/// `X-Certbound-Subject`: the token's `sub`.
pub(crate) const SUBJECT: HeaderName = HeaderName::from_static("x-certbound-subject");
/// `X-Certbound-Client-Id`: the token's `client_id`.
pub(crate) const CLIENT_ID: HeaderName = HeaderName::from_static("x-certbound-client-id");
/// `X-Certbound-Scope`: the token's `scope` (space-separated).
pub(crate) const SCOPE: HeaderName = HeaderName::from_static("x-certbound-scope");
/// `X-Certbound-Issuer`: the token's `iss`.
pub(crate) const ISSUER: HeaderName = HeaderName::from_static("x-certbound-issuer");
/// RFC 9440 `Client-Cert`: the client's leaf certificate, `:base64-DER:`.
pub(crate) const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
/// RFC 9440 `Client-Cert-Chain` (never added; always removed from what the client sent).
pub(crate) const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers every proxy removes (RFC 9110 §7.6.1 and the historical ones); `Proxy-*`
/// are removed by prefix.
const HOP_BY_HOP: [&str; 6] = [
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "connection",
];

/// Removes the hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade` and `Proxy-*`. With `keep_te_trailers` (an HTTP/2
/// upstream, gRPC), `TE: trailers` — the one value HTTP/2 allows — is kept.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    let te_trailers = keep_te_trailers
        && headers
            .get_all(TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes every identity header a client may have sent: `X-Certbound-*` (all of them, not only
/// the ones this version adds), `Client-Cert` and `Client-Cert-Chain` — in every spelling an
/// upstream could read as one of them: CGI, WSGI and Rack turn `-` and `_` alike into `_`
/// (`X_Certbound_Subject` becomes `HTTP_X_CERTBOUND_SUBJECT`, CVE-2024-45614), so names are
/// compared with `_` read as `-`. Underscore spellings of `X-Forwarded-*` and `Forwarded`
/// (which only this hop writes) go too.
pub(crate) fn remove_identity(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let raw = name.as_str();
            starts_dashed(raw, "x-certbound-")
                || eq_dashed(raw, CLIENT_CERT.as_str())
                || eq_dashed(raw, CLIENT_CERT_CHAIN.as_str())
                || (raw.contains('_')
                    && (starts_dashed(raw, "x-forwarded-") || eq_dashed(raw, FORWARDED.as_str())))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// `name` (lower case, as [`HeaderName`] keeps it) is `target` with any `-` spelt `_`.
fn eq_dashed(name: &str, target: &str) -> bool {
    name.len() == target.len() && starts_dashed(name, target)
}

/// `name` starts with `prefix`, any `-` of it spelt `_`.
fn starts_dashed(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(n, p)| n == p || (n == b'_' && p == b'-'))
}

/// The RFC 9440 `Client-Cert` value of a leaf certificate: an sf-binary, `:` base64 (with
/// padding) `:` (§2.2).
pub(crate) fn client_cert_value(der: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(":{}:", STANDARD.encode(der))).ok()
}

/// The identity headers for an accepted request: subject, client id, scope and issuer of the
/// verified token (each only when the claim is present and a valid header value), and the
/// RFC 9440 `Client-Cert` when the leaf certificate is known (mutual TLS to this server).
pub(crate) fn identity(
    token: &VerifiedToken,
    leaf_der: Option<&[u8]>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = claims(token);
    if let Some(value) = leaf_der.and_then(client_cert_value) {
        out.push((CLIENT_CERT, value));
    }
    out
}

/// [`identity`] without `Client-Cert`.
pub(crate) fn claims(token: &VerifiedToken) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(5);
    let claims = [
        (SUBJECT, token.sub()),
        (CLIENT_ID, token.client_id()),
        (SCOPE, token.scope()),
        (ISSUER, Some(token.issuer())),
    ];
    for (name, value) in claims {
        // A claim that is not a valid header value (control characters) is left out rather
        // than mangled; the upstream sees no header instead of a wrong one.
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            out.push((name, value));
        }
    }
    out
}

/// Who sent the request, as the upstream should learn it.
pub(crate) struct Hop<'a> {
    /// The TCP peer of this server.
    pub(crate) peer: std::net::IpAddr,
    /// `https` (TLS to this server) or `http`.
    pub(crate) proto: &'static str,
    /// The host the client asked for ([`request_host`]: the one DPoP's `htu` uses).
    pub(crate) host: Option<&'a str>,
    /// The peer is a trusted proxy: its `X-Forwarded-*` / `Forwarded` are kept and appended
    /// to; from anyone else they are replaced.
    pub(crate) trusted: bool,
}

/// Appends this hop to `X-Forwarded-For` and RFC 7239 `Forwarded`, and sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host` unless a trusted proxy already set them. What an
/// untrusted client sent in those headers is dropped first.
pub(crate) fn append_forwarded(headers: &mut HeaderMap, hop: &Hop<'_>) {
    if !hop.trusted {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            FORWARDED,
        ] {
            headers.remove(name);
        }
    }
    let ip = hop.peer.to_string();
    append(headers, X_FORWARDED_FOR, &ip);
    // RFC 7239 §6: an IPv6 address is bracketed and quoted; a host with a port is quoted.
    let node = match hop.peer {
        std::net::IpAddr::V4(_) => ip.clone(),
        std::net::IpAddr::V6(_) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={node};proto={}", hop.proto);
    if let Some(host) = hop.host.filter(|h| is_token_safe_host(h)) {
        element.push_str(&format!(";host=\"{host}\""));
    }
    append(headers, FORWARDED, &element);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(hop.proto));
    }
    if !headers.contains_key(X_FORWARDED_HOST) {
        if let Some(value) = hop.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(X_FORWARDED_HOST, value);
        }
    }
}

/// The client-facing host of a request: the URI's authority (HTTP/2 `:authority`, an
/// absolute-form target), else `Host` — the same order as `certbound_core::request_uri`, so the
/// upstream's `X-Forwarded-Host` is the host DPoP's `htu` was checked against.
pub(crate) fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
}

/// A `host[:port]` that can go inside a quoted string without escaping.
fn is_token_safe_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// Appends `value` to the comma-separated list in `name`: every line received (a proxy may
/// send one line per hop), joined in order, then this one — as one header line.
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    let mut joined = String::new();
    for line in headers.get_all(&name) {
        // A line that is not visible ASCII cannot be carried over faithfully: the chain is
        // restarted at this hop rather than guessed.
        let Ok(line) = line.to_str() else {
            joined.clear();
            break;
        };
        let line = line.trim();
        if !line.is_empty() {
            if !joined.is_empty() {
                joined.push_str(", ");
            }
            joined.push_str(line);
        }
    }
    if !joined.is_empty() {
        joined.push_str(", ");
    }
    joined.push_str(value);
    if let Ok(joined) = HeaderValue::from_str(&joined) {
        headers.insert(name, joined);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers, deflate"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
            ("authorization", "Bearer t"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);

        let mut h2 = map(&[("te", "trailers, deflate"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut h2, true);
        assert_eq!(h2["te"], "trailers");
    }

    #[test]
    fn every_identity_header_from_the_client_is_removed() {
        let mut h = map(&[
            ("x-certbound-subject", "admin"),
            ("X-Certbound-Scope", "everything"),
            ("x-certbound-something-new", "x"),
            ("client-cert", ":AAAA:"),
            ("client-cert-chain", ":AAAA:"),
            ("x-request-id", "7"),
        ]);
        remove_identity(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-request-id"]);
    }

    #[test]
    fn underscore_spellings_of_identity_headers_are_removed() {
        let mut h = map(&[
            ("x_certbound_subject", "admin"),
            ("X_Certbound-Scope", "everything"),
            ("client_cert", ":AAAA:"),
            ("Client_Cert_Chain", ":AAAA:"),
            ("x_forwarded_for", "203.0.113.66"),
            ("x_forwarded_host", "evil.example"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x_request_id", "7"),
        ]);
        remove_identity(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-forwarded-for", "x_request_id"]);
    }

    #[test]
    fn every_forwarded_line_of_a_trusted_proxy_is_kept() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "203.0.113.9, 192.0.2.1"),
            ("forwarded", "for=198.51.100.1"),
            ("forwarded", "for=192.0.2.1"),
        ]);
        let hop = Hop {
            peer: "127.0.0.1".parse().unwrap(),
            proto: "https",
            host: None,
            trusted: true,
        };
        append_forwarded(&mut h, &hop);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            h["x-forwarded-for"],
            "198.51.100.1, 203.0.113.9, 192.0.2.1, 127.0.0.1"
        );
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.1, for=192.0.2.1, for=127.0.0.1;proto=https"
        );
    }

    #[test]
    fn the_forwarded_host_is_the_one_htu_uses() {
        // An absolute-form target (or HTTP/2 :authority) wins over Host, as in request_uri.
        let uri: http::Uri = "https://api.example/orders".parse().unwrap();
        let h = map(&[("host", "evil.example")]);
        assert_eq!(request_host(&uri, &h), Some("api.example"));
        assert_eq!(
            certbound_core::request_uri(None, false, true, &uri, &h).as_deref(),
            Some("https://api.example/orders")
        );
        let origin_form: http::Uri = "/orders".parse().unwrap();
        assert_eq!(request_host(&origin_form, &h), Some("evil.example"));
    }

    #[test]
    fn an_untrusted_peer_s_forwarded_headers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.66"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=203.0.113.66"),
        ]);
        let hop = Hop {
            peer: "192.0.2.7".parse().unwrap(),
            proto: "https",
            host: Some("api.example:8443"),
            trusted: false,
        };
        append_forwarded(&mut h, &hop);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example:8443");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=https;host=\"api.example:8443\""
        );
    }

    #[test]
    fn a_trusted_proxy_s_forwarded_headers_are_appended_to() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.1;proto=https"),
        ]);
        let hop = Hop {
            peer: "::1".parse().unwrap(),
            proto: "http",
            host: Some("api.example"),
            trusted: true,
        };
        append_forwarded(&mut h, &hop);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.1;proto=https, for=\"[::1]\";proto=http;host=\"api.example\""
        );
    }
}
