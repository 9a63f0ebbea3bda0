//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document a resource server publishes
//! at `/.well-known/oauth-protected-resource` so clients can discover how to call it.
//!
//! The layer builds it from its own configuration: `resource` (default: the first audience),
//! `authorization_servers` (the trusted issuers), `bearer_methods_supported: ["header"]`,
//! `scopes_supported` when configured, and `tls_client_certificate_bound_access_tokens: true`
//! (certbound always takes a client certificate, from TLS or a trusted proxy).
//!
//! ```
//! use certbound::metadata::ResourceMetadata;
//!
//! let md = ResourceMetadata::new("https://api.example.com/v1")
//!     .authorization_server("https://auth.example.com/")
//!     .scopes_supported(["read", "write"]);
//! assert_eq!(md.well_known_path(), "/.well-known/oauth-protected-resource/v1");
//! assert_eq!(md.well_known_url(), "https://api.example.com/.well-known/oauth-protected-resource/v1");
//! assert_eq!(md.to_json()["tls_client_certificate_bound_access_tokens"], true);
//! ```

use serde_json::{json, Map, Value};

/// The RFC 9728 well-known path segment.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// An RFC 9728 protected-resource metadata document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    bound_tokens: bool,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    dpop_algs: Vec<String>,
}

impl ResourceMetadata {
    /// Metadata for the resource identified by `resource` (an https URL, RFC 9728 §2).
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bound_tokens: true,
            resource_name: None,
            resource_documentation: None,
            dpop_algs: Vec::new(),
        }
    }

    /// DPoP proof algorithms accepted (space-separated): advertised as
    /// `dpop_signing_alg_values_supported`, with `dpop_bound_access_tokens_required: false`
    /// (certificate-bound tokens are accepted too).
    pub fn dpop_signing_algs(mut self, algs: impl AsRef<str>) -> Self {
        self.dpop_algs = algs
            .as_ref()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        self
    }

    /// Adds an issuer clients can get tokens from.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        if !self.authorization_servers.contains(&issuer) {
            self.authorization_servers.push(issuer);
        }
        self
    }

    /// The scopes this resource understands.
    pub fn scopes_supported<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        scopes: I,
    ) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether to advertise `tls_client_certificate_bound_access_tokens: true` (default true).
    pub fn bound_tokens(mut self, bound: bool) -> Self {
        self.bound_tokens = bound;
        self
    }

    /// A human-readable name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// A URL of human-readable documentation.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The path the document is served at: the well-known segment inserted between the host and
    /// the resource's path (RFC 9728 §3.1).
    pub fn well_known_path(&self) -> String {
        let path = self
            .resource
            .split_once("://")
            .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
        let path = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        format!("{WELL_KNOWN}{path}")
    }

    /// The absolute URL of the document (for the `resource_metadata` challenge parameter).
    pub fn well_known_url(&self) -> String {
        let origin = match self.resource.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
                format!("{scheme}://{host}")
            }
            None => String::new(),
        };
        format!("{origin}{}", self.well_known_path())
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("resource".into(), json!(self.resource));
        if !self.authorization_servers.is_empty() {
            doc.insert(
                "authorization_servers".into(),
                json!(self.authorization_servers),
            );
        }
        doc.insert("bearer_methods_supported".into(), json!(["header"]));
        if !self.scopes_supported.is_empty() {
            doc.insert("scopes_supported".into(), json!(self.scopes_supported));
        }
        if self.bound_tokens {
            doc.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                json!(true),
            );
        }
        if !self.dpop_algs.is_empty() {
            doc.insert(
                "dpop_signing_alg_values_supported".into(),
                json!(self.dpop_algs),
            );
            doc.insert("dpop_bound_access_tokens_required".into(), json!(false));
        }
        if let Some(name) = &self.resource_name {
            doc.insert("resource_name".into(), json!(name));
        }
        if let Some(url) = &self.resource_documentation {
            doc.insert("resource_documentation".into(), json!(url));
        }
        Value::Object(doc)
    }

    /// An axum router serving the document at [`well_known_path`](Self::well_known_path).
    #[cfg(feature = "axum")]
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let body = self.to_json().to_string();
        axum::Router::new().route(
            &self.well_known_path(),
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_paths() {
        for (resource, path, url) in [
            (
                "https://api.example",
                "/.well-known/oauth-protected-resource",
                "https://api.example/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example/",
                "/.well-known/oauth-protected-resource",
                "https://api.example/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example:8443/a/b?x=1",
                "/.well-known/oauth-protected-resource/a/b",
                "https://api.example:8443/.well-known/oauth-protected-resource/a/b",
            ),
        ] {
            let md = ResourceMetadata::new(resource);
            assert_eq!(md.well_known_path(), path, "{resource}");
            assert_eq!(md.well_known_url(), url, "{resource}");
        }
    }

    #[test]
    fn document_members() {
        let doc = ResourceMetadata::new("https://api.example").to_json();
        assert_eq!(
            doc,
            json!({"resource":"https://api.example","bearer_methods_supported":["header"],"tls_client_certificate_bound_access_tokens":true})
        );
        let doc = ResourceMetadata::new("https://api.example")
            .authorization_server("https://a/")
            .authorization_server("https://a/")
            .scopes_supported(["read"])
            .bound_tokens(false)
            .to_json();
        assert_eq!(doc["authorization_servers"], json!(["https://a/"]));
        assert_eq!(doc["scopes_supported"], json!(["read"]));
        assert!(doc
            .get("tls_client_certificate_bound_access_tokens")
            .is_none());
    }
}
