//! `certbound serve --config FILE`: the same settings as the flags, in TOML — one key per flag,
//! spelt like the flag without its dashes (`issuer = "https://auth.example.com/"`,
//! `trusted-proxy = ["10.0.0.0/8"]`, `dpop = true`). Secrets come from the environment:
//! `replay-store = { env = "CERTBOUND_REPLAY_STORE" }`. Per-path rules as tables:
//!
//! ```toml
//! [[path]]
//! prefix = "/health"
//! public = true
//!
//! [[path]]
//! prefix = "/admin"
//! scopes = ["admin:write"]
//! ```
//!
//! The file is turned into flags before the command line is parsed, so every value goes
//! through the same checks as the flag; a flag also given on the command line wins over the
//! file's value (repeatable flags add up).

use std::ffi::OsString;
use std::path::Path;

use crate::Fatal;

/// The largest configuration file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// Expands `certbound serve … --config FILE …` into `certbound serve <the file's flags> …`.
/// Any other command line is returned as it is.
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, Fatal> {
    if args.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(args);
    }
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len());
    let mut file = None;
    let mut iter = args.into_iter();
    let (Some(program), Some(serve)) = (iter.next(), iter.next()) else {
        return Err(Fatal::new("serve: no arguments"));
    };
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some("--config") => {
                let path = iter
                    .next()
                    .ok_or_else(|| Fatal::new("--config needs a FILE"))?;
                file = Some(path);
            }
            Some(a) if a.starts_with("--config=") => {
                file = a.strip_prefix("--config=").map(OsString::from);
            }
            Some("--") => {
                rest.push(arg);
                rest.extend(iter.by_ref());
            }
            _ => rest.push(arg),
        }
    }
    let mut out = vec![program, serve];
    if let Some(path) = file {
        let given: Vec<String> = rest
            .iter()
            .filter_map(|a| a.to_str())
            .filter(|a| a.starts_with("--"))
            .map(|a| a.split('=').next().unwrap_or(a).to_owned())
            .collect();
        let path = Path::new(&path);
        let text = read(path)?;
        let lookup = |name: &str| std::env::var(name).ok();
        out.extend(
            to_flags(&text, &given, &lookup)
                .map_err(|e| Fatal::new(format!("--config {}: {e}", path.display())))?
                .into_iter()
                .map(OsString::from),
        );
    }
    out.extend(rest);
    Ok(out)
}

fn read(path: &Path) -> Result<String, Fatal> {
    let what = |e: &dyn std::fmt::Display| Fatal::new(format!("--config {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| what(&e))?;
    if meta.len() > MAX_FILE_LEN {
        return Err(what(&"larger than 1 MiB"));
    }
    std::fs::read_to_string(path).map_err(|e| what(&e))
}

/// The flags `text` (TOML) stands for. `given`: flags on the command line, which win over the
/// file's single values. `env`: the environment, for `{ env = "NAME" }` values.
fn to_flags(
    text: &str,
    given: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        if key == "path" {
            paths(value, &mut flags)?;
            continue;
        }
        if key == "config"
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "{key}: not a setting (keys are the flags' names, e.g. trusted-proxy)"
            ));
        }
        let flag = format!("--{key}");
        match value {
            toml::Value::Array(items) => {
                for item in items {
                    flags.push(flag.clone());
                    flags.push(scalar(key, item, env)?);
                }
            }
            _ if given.contains(&flag) => {} // the command line wins
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            other => {
                flags.push(flag);
                flags.push(scalar(key, other, env)?);
            }
        }
    }
    Ok(flags)
}

/// One value: a string, a number, or `{ env = "NAME" }`.
fn scalar(
    key: &str,
    value: &toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Table(t) if t.len() == 1 => match t.get("env") {
            Some(toml::Value::String(name)) => {
                env(name).ok_or_else(|| format!("{key}: environment variable {name} is not set"))
            }
            _ => Err(format!("{key}: expected a value or {{ env = \"NAME\" }}")),
        },
        _ => Err(format!(
            "{key}: expected a string, a number or {{ env = \"NAME\" }}"
        )),
    }
}

/// `[[path]]` tables: `prefix` with `public = true` or `scopes = [...]`.
fn paths(value: &toml::Value, flags: &mut Vec<String>) -> Result<(), String> {
    let toml::Value::Array(items) = value else {
        return Err("path: expected [[path]] tables".into());
    };
    for item in items {
        let toml::Value::Table(rule) = item else {
            return Err("path: expected [[path]] tables".into());
        };
        if let Some(unknown) = rule
            .keys()
            .find(|k| !["prefix", "public", "scopes"].contains(&k.as_str()))
        {
            return Err(format!(
                "path.{unknown}: not a path setting (prefix, public, scopes)"
            ));
        }
        let Some(toml::Value::String(prefix)) = rule.get("prefix") else {
            return Err("path: every [[path]] needs prefix = \"/…\"".into());
        };
        let public = matches!(rule.get("public"), Some(toml::Value::Boolean(true)));
        let scopes: Vec<&str> = match rule.get("scopes") {
            None => Vec::new(),
            Some(toml::Value::Array(list)) => list
                .iter()
                .map(|s| {
                    s.as_str()
                        .ok_or_else(|| format!("path {prefix}: scopes are strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("path {prefix}: scopes = [\"…\"]")),
        };
        match (public, scopes.is_empty()) {
            (true, true) => {
                flags.push("--public-path".into());
                flags.push(prefix.clone());
            }
            (false, false) => {
                flags.push("--path-scope".into());
                flags.push(format!("{prefix}={}", scopes.join(",")));
            }
            _ => {
                return Err(format!(
                    "path {prefix}: give either public = true or scopes"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "REDIS_URL").then(|| "redis://:secret@127.0.0.1:6379".to_owned())
    }

    #[test]
    fn every_key_is_a_flag_and_secrets_come_from_the_environment() {
        let text = r#"
            issuer = "https://auth.example.com/"
            audience = "https://api.example.com"
            trusted-proxy = ["10.0.0.0/8", "127.0.0.1/32"]
            dpop = true
            require-at-jwt = false
            xfcc-hops = 2
            replay-store = { env = "REDIS_URL" }
            upstream = "http://127.0.0.1:8080"

            [[path]]
            prefix = "/health"
            public = true

            [[path]]
            prefix = "/admin"
            scopes = ["admin:write", "admin:read"]
        "#;
        let flags = to_flags(text, &["--upstream".to_owned()], &env).unwrap();
        let joined = flags.join(" ");
        for expected in [
            "--issuer https://auth.example.com/",
            "--trusted-proxy 10.0.0.0/8 --trusted-proxy 127.0.0.1/32",
            "--xfcc-hops 2",
            "--replay-store redis://:secret@127.0.0.1:6379",
            "--public-path /health",
            "--path-scope /admin=admin:write,admin:read",
        ] {
            assert!(joined.contains(expected), "{expected} in {joined}");
        }
        assert!(flags.contains(&"--dpop".to_owned()));
        assert!(!joined.contains("require-at-jwt"), "false is left out");
        assert!(
            !joined.contains("--upstream"),
            "the command line's --upstream wins"
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                "replay-store = { env = \"UNSET_VAR\" }",
                "UNSET_VAR is not set",
            ),
            ("Issuer = \"x\"", "not a setting"),
            ("config = \"other.toml\"", "not a setting"),
            (
                "[[path]]\nprefix = \"/a\"\npublic = true\nscopes = [\"s\"]",
                "either",
            ),
            ("[[path]]\npublic = true", "prefix"),
            ("issuer = ", "expected"),
        ] {
            let err = to_flags(text, &[], &env).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
