//! Forward-auth: which request an edge proxy's authorization subrequest (nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`) is about. The edge names the
//! original method and URI in one header family — `X-Original-Method` / `X-Original-URI`
//! (nginx) or `X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy) — and passes the
//! client's copies of the other family through untouched, so only one family is ever believed.
//! The driver (`certbound serve --forward-auth`) asks this only for a trusted edge's subrequest.
//!
//! ```
//! use certbound_core::{original_request, ForwardAuthHeaders, OriginalRequest};
//! use http::{HeaderMap, Method};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-method", "DELETE".parse().unwrap());
//! headers.insert("x-forwarded-uri", "/admin/users/7".parse().unwrap());
//! let original = original_request(ForwardAuthHeaders::Auto, &Method::GET, &headers);
//! assert_eq!(original, OriginalRequest::Request(Method::DELETE, "/admin/users/7".parse().unwrap()));
//!
//! // A client behind Caddy adds nginx's family to pick another request: neither is believed.
//! headers.insert("x-original-uri", "/health".parse().unwrap());
//! let original = original_request(ForwardAuthHeaders::Auto, &Method::GET, &headers);
//! assert_eq!(original, OriginalRequest::Ambiguous);
//! ```

use http::{HeaderMap, Method, Uri};

/// Longest original URI accepted from the edge, in bytes (nginx's default large header
/// buffer is 8 KiB).
const MAX_URI_LEN: usize = 8 * 1024;

/// The original request, as a trusted edge describes it.
#[derive(Debug, PartialEq, Eq)]
pub enum OriginalRequest {
    /// Method and URI (origin-form: path and query).
    Request(Method, Uri),
    /// The edge sent no original URI: its configuration lacks the header.
    Missing,
    /// The edge sent a method or URI that does not parse.
    Malformed,
    /// `auto`: both families are present — the edge set one and the client sent the other;
    /// which is which cannot be told, so neither is believed.
    Ambiguous,
}

/// Which headers name the original request: one family per deployment, never both — an edge
/// sets its own family and passes the client's copies of the other one through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthHeaders {
    /// The family present in the subrequest — and [`OriginalRequest::Ambiguous`] when headers of both
    /// are (the edge's own family plus the client's copies of the other): as safe as naming
    /// the family, as long as the edge always sends its original URI.
    Auto,
    /// nginx `auth_request`: `X-Original-Method` / `X-Original-URI`.
    Nginx,
    /// Traefik, Caddy: `X-Forwarded-Method` / `X-Forwarded-Uri`.
    Forwarded,
}

impl ForwardAuthHeaders {
    /// `--forward-auth-headers` values.
    pub const VALUES: [&'static str; 3] = ["auto", "nginx", "forwarded"];

    /// From a `--forward-auth-headers` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "nginx" => Some(Self::Nginx),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }

    /// The method and URI header names of a named family.
    fn names(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Auto => None,
            Self::Nginx => Some(("x-original-method", "x-original-uri")),
            Self::Forwarded => Some(("x-forwarded-method", "x-forwarded-uri")),
        }
    }

    /// `Auto` resolved for one subrequest: the only family with a header present, `Auto`
    /// itself when both or neither have one.
    fn resolve(self, headers: &HeaderMap) -> Self {
        if self != Self::Auto {
            return self;
        }
        let has = |family: Self| {
            family
                .names()
                .is_some_and(|(m, u)| headers.contains_key(m) || headers.contains_key(u))
        };
        match (has(Self::Nginx), has(Self::Forwarded)) {
            (true, false) => Self::Nginx,
            (false, true) => Self::Forwarded,
            _ => Self::Auto,
        }
    }
}

/// Reads the original method and URI from `family`'s headers only (the other family's are
/// whatever the client sent); `Auto` reads the one family present, and refuses a subrequest
/// with headers of both. Without a method header the subrequest's own method is the
/// original's (nginx's `auth_request` keeps it).
pub fn original_request(
    family: ForwardAuthHeaders,
    method: &Method,
    headers: &HeaderMap,
) -> OriginalRequest {
    let family = family.resolve(headers);
    let Some((method_name, uri_name)) = family.names() else {
        let both = ["x-original-uri", "x-original-method"]
            .iter()
            .any(|n| headers.contains_key(*n));
        return if both {
            OriginalRequest::Ambiguous
        } else {
            OriginalRequest::Missing
        };
    };
    let get = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
    let uri = match get(uri_name) {
        None => return OriginalRequest::Missing,
        Some(Err(_)) => return OriginalRequest::Malformed,
        Some(Ok(uri)) => uri,
    };
    if uri.is_empty() || uri.len() > MAX_URI_LEN || !uri.starts_with('/') {
        return OriginalRequest::Malformed;
    }
    let Ok(uri) = uri.parse::<Uri>() else {
        return OriginalRequest::Malformed;
    };
    let method = match get(method_name) {
        None => method.clone(),
        Some(Ok(m)) if !m.is_empty() && m.len() <= 32 => match Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => return OriginalRequest::Malformed,
        },
        Some(_) => return OriginalRequest::Malformed,
    };
    OriginalRequest::Request(method, uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn nginx_and_traefik_headers_name_the_original_request() {
        use ForwardAuthHeaders::{Forwarded, Nginx};
        let nginx = headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/api/orders?id=7"),
        ]);
        assert_eq!(
            original_request(Nginx, &Method::GET, &nginx),
            OriginalRequest::Request(Method::POST, "/api/orders?id=7".parse().unwrap())
        );
        let traefik = headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/orders/7"),
        ]);
        assert_eq!(
            original_request(Forwarded, &Method::GET, &traefik),
            OriginalRequest::Request(Method::DELETE, "/api/orders/7".parse().unwrap())
        );
        // nginx without X-Original-Method: the subrequest keeps the client's method.
        let uri_only = headers(&[("x-original-uri", "/a")]);
        assert_eq!(
            original_request(Nginx, &Method::PUT, &uri_only),
            OriginalRequest::Request(Method::PUT, "/a".parse().unwrap())
        );
    }

    #[test]
    fn only_the_configured_family_names_the_original_request() {
        use ForwardAuthHeaders::{Forwarded, Nginx};
        // Caddy sets X-Forwarded-*; the client's own X-Original-* passes through it.
        let caddy = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/health"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/admin/users/7"),
        ]);
        assert_eq!(
            original_request(Forwarded, &Method::GET, &caddy),
            OriginalRequest::Request(Method::DELETE, "/admin/users/7".parse().unwrap())
        );
        assert_eq!(
            original_request(Nginx, &Method::GET, &caddy),
            OriginalRequest::Request(Method::GET, "/health".parse().unwrap())
        );
        // auto: both families present is refused, whichever the edge set.
        assert_eq!(
            original_request(ForwardAuthHeaders::Auto, &Method::GET, &caddy),
            OriginalRequest::Ambiguous
        );
        let method_only = headers(&[("x-original-method", "GET"), ("x-forwarded-uri", "/a")]);
        assert_eq!(
            original_request(ForwardAuthHeaders::Auto, &Method::GET, &method_only),
            OriginalRequest::Ambiguous
        );
        // auto with one family reads it.
        let nginx = headers(&[("x-original-uri", "/a"), ("x-original-method", "PUT")]);
        assert_eq!(
            original_request(ForwardAuthHeaders::Auto, &Method::GET, &nginx),
            OriginalRequest::Request(Method::PUT, "/a".parse().unwrap())
        );
        let traefik = headers(&[("x-forwarded-uri", "/b")]);
        assert_eq!(
            original_request(ForwardAuthHeaders::Auto, &Method::POST, &traefik),
            OriginalRequest::Request(Method::POST, "/b".parse().unwrap())
        );
        assert_eq!(
            original_request(ForwardAuthHeaders::Auto, &Method::GET, &HeaderMap::new()),
            OriginalRequest::Missing
        );
        // A named family: the other family alone is no original request at all.
        let forged = headers(&[("x-original-uri", "/health")]);
        assert_eq!(
            original_request(Forwarded, &Method::GET, &forged),
            OriginalRequest::Missing
        );
        let forged = headers(&[("x-forwarded-uri", "/health")]);
        assert_eq!(
            original_request(Nginx, &Method::GET, &forged),
            OriginalRequest::Missing
        );
    }

    #[test]
    fn a_missing_or_malformed_original_is_never_guessed() {
        use ForwardAuthHeaders::{Forwarded, Nginx};
        assert_eq!(
            original_request(Nginx, &Method::GET, &HeaderMap::new()),
            OriginalRequest::Missing
        );
        for (family, bad) in [
            (Nginx, &[("x-original-uri", "https://evil.example/a")][..]),
            (Nginx, &[("x-original-uri", "")]),
            (
                Nginx,
                &[("x-original-uri", "/a"), ("x-original-method", "GE T")],
            ),
            (Forwarded, &[("x-forwarded-uri", "/a b")]),
        ] {
            assert_eq!(
                original_request(family, &Method::GET, &headers(bad)),
                OriginalRequest::Malformed,
                "{bad:?}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(
            original_request(Nginx, &Method::GET, &headers(&[("x-original-uri", &long)])),
            OriginalRequest::Malformed
        );
    }
}
