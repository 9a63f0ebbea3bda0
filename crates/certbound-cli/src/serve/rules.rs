//! Per-path rules: public paths (no token needed) and required scopes, matched by path
//! prefix on segment boundaries, the longest prefix winning; every other path needs a token
//! the layer accepts.
//!
//! A path that could mean something else after normalisation — dot segments, an empty
//! segment, percent-encoded `.`, `/` or `\` — never matches a public rule (it gets the
//! default: a token), so `/public/../admin` cannot borrow `/public`'s rule.

use crate::Fatal;

/// What a path needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token: forwarded (sidecar) or answered 200 (forward-auth) without identity headers.
    Public,
    /// A token the layer accepts, carrying every one of these scopes (403 otherwise).
    Scopes(Vec<String>),
}

/// The rules, longest prefix first.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathRules {
    rules: Vec<(String, Access)>,
}

impl PathRules {
    /// From `--public-path PREFIX` and `--path-scope PREFIX=SCOPE[,SCOPE…]` values.
    pub(crate) fn parse(public: &[String], scoped: &[String]) -> Result<Self, Fatal> {
        let mut rules = Vec::new();
        for prefix in public {
            rules.push((prefix_of(prefix, "--public-path")?, Access::Public));
        }
        for spec in scoped {
            let (prefix, scopes) = spec.split_once('=').ok_or_else(|| {
                Fatal::new(format!(
                    "--path-scope {spec}: expected PREFIX=SCOPE[,SCOPE…], e.g. /admin=admin:write"
                ))
            })?;
            let scopes: Vec<String> = scopes
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if scopes.is_empty() {
                return Err(Fatal::new(format!("--path-scope {spec}: no scope named")));
            }
            rules.push((prefix_of(prefix, "--path-scope")?, Access::Scopes(scopes)));
        }
        for (i, (prefix, _)) in rules.iter().enumerate() {
            if rules[..i].iter().any(|(p, _)| p == prefix) {
                return Err(Fatal::new(format!(
                    "{prefix}: more than one rule for this path"
                )));
            }
        }
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.0.len()));
        Ok(Self { rules })
    }

    /// Whether any rule is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule, longest prefix first.
    pub(crate) fn rules(&self) -> &[(String, Access)] {
        &self.rules
    }

    /// The index of the rule for `path`, or `None` for the default (a token, no scope).
    pub(crate) fn lookup(&self, path: &str) -> Option<usize> {
        let ambiguous = is_ambiguous(path);
        self.rules.iter().position(|(prefix, access)| {
            let matches = path == prefix
                || prefix == "/"
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
            // Scope rules still apply to an ambiguous path (more checks, never fewer).
            matches && !(ambiguous && *access == Access::Public)
        })
    }
}

fn prefix_of(prefix: &str, flag: &str) -> Result<String, Fatal> {
    if !prefix.starts_with('/') || is_ambiguous(prefix) || prefix.contains(['?', '#']) {
        return Err(Fatal::new(format!(
            "{flag} {prefix}: expected a path starting with / (no dot segments, query or \
             percent-encoding)"
        )));
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

/// Dot segments, empty segments, or percent-encoded `.`, `/`, `\`.
fn is_ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
        || path.contains("//")
        || path.split('/').any(|seg| seg == "." || seg == "..")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    fn access(r: &PathRules, path: &str) -> Option<Access> {
        r.lookup(path).map(|i| r.rules()[i].1.clone())
    }

    #[test]
    fn the_longest_prefix_on_a_segment_boundary_wins() {
        let r = rules();
        assert_eq!(access(&r, "/health"), Some(Access::Public));
        assert_eq!(access(&r, "/health/live"), Some(Access::Public));
        assert_eq!(access(&r, "/healthz"), None);
        assert_eq!(access(&r, "/public/a.css"), Some(Access::Public));
        assert_eq!(
            access(&r, "/admin/users"),
            Some(Access::Scopes(vec!["admin:write".into()]))
        );
        assert_eq!(
            access(&r, "/admin/reports/7"),
            Some(Access::Scopes(vec![
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
        ] {
            assert_ne!(access(&r, sneaky), Some(Access::Public), "{sneaky}");
        }
        // A scope rule still applies to such a path.
        assert_eq!(
            access(&r, "/admin/../admin/x"),
            Some(Access::Scopes(vec!["admin:write".into()]))
        );
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
