//! Per-path rules for a server in front of other services (`certbound serve`): public paths
//! (no token needed) and required scopes, matched by path prefix on segment boundaries, the
//! longest prefix winning; every other path needs a token the layer accepts.
//!
//! ```
//! use certbound_core::{suspicious_path, PathAccess, PathRules};
//!
//! let rules = PathRules::parse(&["/health".into()], &["/admin=admin:write".into()]).unwrap();
//! let access = |path: &str| rules.lookup(path).map(|i| rules.rules()[i].1.clone());
//! assert_eq!(access("/health/live"), Some(PathAccess::Public));
//! assert_eq!(access("/admin/users"), Some(PathAccess::Scopes(vec!["admin:write".into()])));
//! assert_eq!(access("/healthz"), None); // the default: any token the layer accepts
//! // A path an upstream could read as another one is never public.
//! assert!(suspicious_path("/health/..;/admin"));
//! assert_ne!(access("/health/..;/admin"), Some(PathAccess::Public));
//! ```
//!
//! Rules are matched on the path exactly as it is forwarded, byte for byte: case-sensitive,
//! like most upstreams (an upstream that treats `/ADMIN` as `/admin` needs a rule for each
//! spelling). A path that an upstream could read as another path — dot segments, `;` path
//! parameters (`/public/..;/admin` is `/admin` to Tomcat, Jetty and Spring), an empty
//! segment, `\`, or percent-encoding of an unreserved character or of `/`, `\`, `%`, `;` — is
//! [`suspicious_path`]: while any rule is configured a driver answers it 400 instead of
//! matching it, so matching and forwarding can never disagree about which path it is.

/// A per-path rule that cannot be used (the message names the flag and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathRuleError(String);

/// What a path needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathAccess {
    /// No token: forwarded (sidecar) or answered 200 (forward-auth) without identity headers.
    Public,
    /// A token the layer accepts, carrying every one of these scopes (403 otherwise).
    Scopes(Vec<String>),
}

/// The rules, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    rules: Vec<(String, PathAccess)>,
}

impl PathRules {
    /// From `--public-path PREFIX` and `--path-scope PREFIX=SCOPE[,SCOPE…]` values.
    pub fn parse(public: &[String], scoped: &[String]) -> Result<Self, PathRuleError> {
        let mut rules = Vec::new();
        for prefix in public {
            rules.push((prefix_of(prefix, "--public-path")?, PathAccess::Public));
        }
        for spec in scoped {
            let (prefix, scopes) = spec.split_once('=').ok_or_else(|| {
                PathRuleError(format!(
                    "--path-scope {spec}: expected PREFIX=SCOPE[,SCOPE…], e.g. /admin=admin:write"
                ))
            })?;
            let scopes: Vec<String> = scopes
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if scopes.is_empty() {
                return Err(PathRuleError(format!(
                    "--path-scope {spec}: no scope named"
                )));
            }
            rules.push((
                prefix_of(prefix, "--path-scope")?,
                PathAccess::Scopes(scopes),
            ));
        }
        for (i, (prefix, _)) in rules.iter().enumerate() {
            if rules[..i].iter().any(|(p, _)| p == prefix) {
                return Err(PathRuleError(format!(
                    "{prefix}: more than one rule for this path"
                )));
            }
        }
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.0.len()));
        Ok(Self { rules })
    }

    /// Whether any rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule, longest prefix first.
    pub fn rules(&self) -> &[(String, PathAccess)] {
        &self.rules
    }

    /// The index of the rule for `path`, or `None` for the default (a token, no scope). A
    /// [`suspicious_path`] path never matches a public rule (a driver refuses it (400) before it
    /// gets here; this is the second line).
    pub fn lookup(&self, path: &str) -> Option<usize> {
        let ambiguous = suspicious_path(path);
        self.rules.iter().position(|(prefix, access)| {
            let matches = path == prefix
                || prefix == "/"
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
            // Scope rules still apply to an ambiguous path (more checks, never fewer).
            matches && !(ambiguous && *access == PathAccess::Public)
        })
    }
}

fn prefix_of(prefix: &str, flag: &str) -> Result<String, PathRuleError> {
    if !prefix.starts_with('/') || suspicious_path(prefix) || prefix.contains(['?', '#']) {
        return Err(PathRuleError(format!(
            "{flag} {prefix}: expected a path starting with / (no dot segments, query or \
             percent-encoding)"
        )));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

/// Whether an upstream could read `path` as another path than a byte-wise prefix match does:
/// a dot segment, a `;` (path parameters: Tomcat, Jetty and Spring drop `;…` from a segment,
/// so `..;` is `..`), an empty segment (`//`), a `\`, a control character, or a
/// percent-encoded unreserved character (`%61dmin` is `admin`), `/`, `\`, `%` (double
/// encoding), `;` or control character — or a `%` not followed by two hex digits.
pub fn suspicious_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if path.contains(['\\', ';'])
        || path.contains("//")
        || bytes.iter().any(|b| b.is_ascii_control())
        || path.split('/').any(|seg| seg == "." || seg == "..")
    {
        return true;
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| b == b'%') {
        let (Some(hi), Some(lo)) = (
            rest.get(i + 1).copied().and_then(hex),
            rest.get(i + 2).copied().and_then(hex),
        ) else {
            return true;
        };
        let decoded = (hi << 4) | lo;
        let decoded = u8::try_from(decoded).unwrap_or(0);
        if decoded.is_ascii_alphanumeric()
            || b"-._~/\\%;".contains(&decoded)
            || decoded.is_ascii_control()
        {
            return true;
        }
        rest = rest.get(i + 3..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PathRules {
        PathRules::parse(
            &["/health".into(), "/public/".into()],
            &[
                "/admin=admin:write".into(),
                "/admin/reports=reports:read,admin:write".into(),
            ],
        )
        .unwrap()
    }

    fn access(r: &PathRules, path: &str) -> Option<PathAccess> {
        r.lookup(path).map(|i| r.rules()[i].1.clone())
    }

    #[test]
    fn the_longest_prefix_on_a_segment_boundary_wins() {
        let r = rules();
        assert_eq!(access(&r, "/health"), Some(PathAccess::Public));
        assert_eq!(access(&r, "/health/live"), Some(PathAccess::Public));
        assert_eq!(access(&r, "/healthz"), None);
        assert_eq!(access(&r, "/public/a.css"), Some(PathAccess::Public));
        assert_eq!(
            access(&r, "/admin/users"),
            Some(PathAccess::Scopes(vec!["admin:write".into()]))
        );
        assert_eq!(
            access(&r, "/admin/reports/7"),
            Some(PathAccess::Scopes(vec![
                "reports:read".into(),
                "admin:write".into()
            ]))
        );
        assert_eq!(access(&r, "/api/orders"), None);
    }

    #[test]
    fn a_path_that_normalises_elsewhere_is_never_public() {
        let r = rules();
        for sneaky in [
            "/public/../admin/users",
            "/public/./x",
            "/public/%2e%2e/admin",
            "/public/..%2Fadmin",
            "/public//x",
            "/health/..",
            "/public\\..\\admin",
            "/public/..;/admin/users",
            "/public/.;/x",
            "/public/%252e%252e/admin",
            "/public;x/../admin",
        ] {
            assert_ne!(access(&r, sneaky), Some(PathAccess::Public), "{sneaky}");
        }
        // A scope rule still applies to such a path.
        assert_eq!(
            access(&r, "/admin/../admin/x"),
            Some(PathAccess::Scopes(vec!["admin:write".into()]))
        );
    }

    #[test]
    fn paths_an_upstream_could_read_differently_are_suspicious() {
        for sneaky in [
            "/x/../admin/users",
            "/./admin",
            "//admin/users",
            "/%61dmin/users",
            "/%2561dmin",
            "/admin;x/users",
            "/public/..;/admin",
            "/admin%2Fusers",
            "/admin%5cusers",
            "/admin%3busers",
            "/admin%7e",
            "/admin%00",
            "/admin%",
            "/admin%4",
            "/admin%zz",
            "/a\\b",
        ] {
            assert!(suspicious_path(sneaky), "{sneaky}");
        }
        for fine in [
            "/",
            "/admin/users",
            "/a.b/c..d/...",
            "/files/caf%C3%A9",
            "/search/a%20b",
            "/q%3Fx",
            "/ADMIN/users",
        ] {
            assert!(!suspicious_path(fine), "{fine}");
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        for (public, scoped) in [
            (vec!["health".to_owned()], vec![]),
            (vec!["/a/../b".to_owned()], vec![]),
            (vec![], vec!["/admin".to_owned()]),
            (vec![], vec!["/admin=".to_owned()]),
            (vec!["/x".to_owned()], vec!["/x=a".to_owned()]),
        ] {
            assert!(
                PathRules::parse(&public, &scoped).is_err(),
                "{public:?} {scoped:?}"
            );
        }
    }
}
