//! `certbound inspect TOKEN|-`: what a token says, what it is bound to, whether that is the given
//! certificate, and — with keys — the layer's own verdict from [`CertBoundLayer::verify`].
//!
//! [`CertBoundLayer::verify`]: certbound::CertBoundLayer::verify

use std::fmt::Display;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound::{BindingPolicy, CertBound, Rejection, StaticJwks, Thumbprint, VerifiedToken};
use certbound_core::__private::parse_object;
use certbound_core::{Confirmation, UnverifiedToken, DEFAULT_LEEWAY};
use serde_json::{Map, Value};

use crate::certs::{self, Cert};
use crate::{time, Fatal, Outcome};

/// Arguments of `certbound inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The access token: the token itself, a file holding it, or `-` to read it from stdin.
    /// A leading `Bearer ` is ignored.
    #[arg(value_name = "TOKEN|-")]
    token: String,
    /// The client certificate the token would arrive with (PEM or DER; in a PEM with a chain the
    /// first certificate is the leaf, which is what a client presents).
    #[arg(long, value_name = "CERT")]
    cert: Option<PathBuf>,
    /// Check the token as the layer would, for this issuer (`iss`, exact match). Its keys come by
    /// discovery unless --jwks-uri or --jwks-file is given.
    #[arg(long, value_name = "URL", requires = "audience")]
    issuer: Option<String>,
    /// Take the issuer's keys from this JWKS URL instead of discovery.
    #[arg(
        long,
        value_name = "URL",
        requires = "issuer",
        conflicts_with = "jwks_file"
    )]
    jwks_uri: Option<String>,
    /// Take the issuer's keys from this JWKS file.
    #[arg(long, value_name = "FILE", requires = "issuer")]
    jwks_file: Option<PathBuf>,
    /// Extra trust anchor (PEM) for discovery and JWKS over HTTPS (a private issuer's CA).
    #[arg(long, value_name = "PEM", requires = "issuer")]
    jwks_ca: Option<PathBuf>,
    /// The audience this API is (`aud` must contain it); repeat to accept several.
    #[arg(long, value_name = "AUD")]
    audience: Vec<String>,
    /// required: every token must be bound; if-bound: bound tokens must match, unbound pass.
    #[arg(long, default_value = "required", value_parser = ["required", "if-bound"])]
    binding: String,
    /// Require RFC 9068 typed tokens (`typ: at+jwt`).
    #[arg(long)]
    require_at_jwt: bool,
    /// Print long header and claim values in full instead of shortening them.
    #[arg(long)]
    full: bool,
}

/// Width of the label column.
const LABEL: usize = 9;

fn row(label: &str, text: impl Display) {
    println!("{label:LABEL$} {text}");
}

fn more(text: impl Display) {
    println!("{:LABEL$} {text}", "");
}

/// What `cnf` says, read the way the layer reads it.
enum Bound {
    /// The token could not be parsed at all.
    Unknown,
    /// No `cnf."x5t#S256"`; the other confirmation members, if any (e.g. DPoP's `jkt`).
    Not(Vec<String>),
    /// `cnf` or `x5t#S256` has the wrong shape.
    Malformed(String),
    /// Bound to this thumbprint.
    To(Thumbprint),
}

/// Where the layer's keys come from, for the report.
enum Keys {
    Discovery,
    Uri(String),
    File(PathBuf, StaticJwks),
}

/// Everything a hint may need.
struct Context<'a> {
    args: &'a Args,
    claims: Option<&'a Map<String, Value>>,
    header: Option<&'a Map<String, Value>>,
    bound: &'a Bound,
    cert: Option<&'a (PathBuf, Vec<Cert>)>,
    leeway: i64,
    now: i64,
}

pub(crate) fn run(args: Args) -> Outcome {
    let token = read_token(&args.token)?;
    let cert = match &args.cert {
        Some(path) => Some((path.clone(), certs::load(path)?)),
        None => None,
    };
    let binding: BindingPolicy = args
        .binding
        .parse()
        .map_err(|e: certbound_core::BindingPolicyError| Fatal(e.to_string()))?;
    let jwks_ca =
        match &args.jwks_ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Fatal::new(format!("--jwks-ca: cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
    let keys = match (&args.jwks_uri, &args.jwks_file) {
        (_, Some(path)) => Some(Keys::File(
            path.clone(),
            StaticJwks::from_file(path)
                .map_err(|e| Fatal::new(format!("--jwks-file {}: {e}", path.display())))?,
        )),
        (Some(uri), None) => Some(Keys::Uri(uri.clone())),
        (None, None) => args.issuer.as_ref().map(|_| Keys::Discovery),
    };
    let now = time::now();
    let leeway = i64::try_from(DEFAULT_LEEWAY.as_secs()).unwrap_or(60);

    // 1. The token as sent.
    let parsed = UnverifiedToken::parse(&token);
    let header = parsed.as_ref().ok().and_then(|_| header_object(&token));
    let (claims, bound) = match &parsed {
        Ok(t) => {
            let claims = t.unverified_claims();
            show_token(header.as_ref(), claims, now, leeway, args.full);
            (Some(claims), bound_of(claims))
        }
        Err(rejection) => {
            row(
                "token",
                format!(
                    "NOT a well-formed JWT: {} — {}",
                    rejection.code(),
                    rejection.description()
                ),
            );
            more(diagnose(&token));
            (None, Bound::Unknown)
        }
    };
    let cx = Context {
        args: &args,
        claims,
        header: header.as_ref(),
        bound: &bound,
        cert: cert.as_ref(),
        leeway,
        now,
    };

    // 2. The binding against the certificate.
    let presented = cert.as_ref().and_then(|(_, certs)| certs.first());
    let local = show_binding(&cx, presented, binding, now);

    // 3. The verdict.
    println!();
    let Some(keys) = keys else {
        row(
            "verdict",
            "NOT CHECKED — no keys given: the signature, issuer and audience were not verified",
        );
        more("for the layer's verdict add --issuer URL --audience AUD [--jwks-uri URL | --jwks-file FILE]");
        if let Some(Err(rejection)) = local {
            if let Some(hint) = hint(&rejection, &cx) {
                row("hint", hint);
            }
        }
        return Ok(ExitCode::from(1));
    };
    let issuer = args.issuer.clone().unwrap_or_default();
    row(
        "checked",
        format!(
            "by the layer (CertBoundLayer::verify): issuer {issuer}, audience {}, binding {}{}",
            args.audience.join(" | "),
            args.binding,
            if args.require_at_jwt {
                ", typ at+jwt required"
            } else {
                ""
            },
        ),
    );
    more(match &keys {
        Keys::Discovery => "keys by discovery from the issuer".to_owned(),
        Keys::Uri(uri) => format!("keys from {uri}"),
        Keys::File(path, _) => format!("keys from {}", path.display()),
    });
    let verdict = verify(
        &args,
        &issuer,
        keys,
        jwks_ca,
        binding,
        &token,
        presented.map(|c| c.thumbprint),
    )?;
    match verdict {
        Ok(verified) => {
            show_accepted(&verified);
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            row(
                "verdict",
                format!(
                    "REFUSED: {} — {} (HTTP {}{})",
                    rejection.code(),
                    rejection.description(),
                    rejection.status().as_u16(),
                    rejection
                        .class()
                        .error_code()
                        .map(|e| format!(", {e}"))
                        .unwrap_or_default(),
                ),
            );
            if let Some(hint) = hint(&rejection, &cx) {
                row("hint", hint);
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// The token argument: `-` is stdin, an existing file is read, anything else is the token.
fn read_token(arg: &str) -> Result<String, Fatal> {
    let raw = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Fatal::new(format!("cannot read the token from stdin: {e}")))?;
        s
    } else if Path::new(arg).is_file() {
        std::fs::read_to_string(arg)
            .map_err(|e| Fatal::new(format!("cannot read the token from {arg}: {e}")))?
    } else {
        arg.to_owned()
    };
    let token = raw.trim();
    let token = match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    };
    if token.is_empty() {
        return Err(Fatal::new("the token is empty"));
    }
    Ok(token.to_owned())
}

/// The whole protected header (the library's `JoseHeader` exposes only alg/kid/typ/crit).
fn header_object(token: &str) -> Option<Map<String, Value>> {
    let segment = token.split('.').next()?;
    parse_object(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// Registered claims first, in this order; the rest alphabetically.
const CLAIM_ORDER: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "cnf",
];

fn show_token(
    header: Option<&Map<String, Value>>,
    claims: &Map<String, Value>,
    now: i64,
    leeway: i64,
    full: bool,
) {
    if let Some(header) = header {
        row("header", compact(&Value::Object(header.clone()), full));
    }
    let mut names: Vec<&String> = claims.keys().collect();
    names.sort_by_key(|name| {
        (
            CLAIM_ORDER
                .iter()
                .position(|c| c == name)
                .unwrap_or(CLAIM_ORDER.len()),
            name.as_str(),
        )
    });
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).min(16);
    if names.is_empty() {
        row("claims", "(none)");
    }
    for (i, name) in names.into_iter().enumerate() {
        let value = &claims[name];
        let mut text = format!("{name:width$}  {}", compact(value, full));
        if let Some(ts) = timestamp(value) {
            let date = date(value, ts);
            match name.as_str() {
                "exp" => text.push_str(&format!("  {date}")),
                "iat" => text.push_str(&format!("  {date}  (issued {})", time::relative(ts, now))),
                "nbf" if ts > now => text.push_str(&format!(
                    "  {date}  (not valid for another {})",
                    time::span(time::diff(ts, now))
                )),
                "nbf" => text.push_str(&format!(
                    "  {date}  (valid since {})",
                    time::relative(ts, now)
                )),
                _ => {}
            }
        }
        row(if i == 0 { "claims" } else { "" }, text);
    }
    let expiry = match claims.get("exp") {
        None => "no exp claim — the layer refuses tokens without one (invalid_claims)".to_owned(),
        Some(value) => match timestamp(value) {
            None => "exp is not a number — the layer refuses it (invalid_claims)".to_owned(),
            Some(exp) if exp > now => format!(
                "expires in {} ({})",
                time::span(time::diff(exp, now)),
                date(value, exp)
            ),
            Some(exp) if time::diff(exp, now) + i128::from(leeway) > 0 => format!(
                "expired {} ago ({}) — still accepted within the layer's {leeway} s clock-skew leeway",
                time::span(time::diff(exp, now)),
                date(value, exp)
            ),
            Some(exp) => format!(
                "expired {} ago ({})",
                time::span(time::diff(exp, now)),
                date(value, exp)
            ),
        },
    };
    row("expiry", expiry);
}

/// A NumericDate in whole seconds (see [`time::seconds`]: fractions rounded down, the ends of
/// the `i64` range clamped), `None` if it is not a number.
fn timestamp(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64().or_else(|| n.as_f64().and_then(time::seconds))
}

/// The calendar date of a NumericDate, or its raw JSON number if it has none (beyond the year
/// 9999, or clamped from something like `1e300`).
fn date(value: &Value, ts: i64) -> String {
    time::calendar(ts).unwrap_or_else(|| time::no_date(value))
}

/// One-line JSON, long strings shortened unless `full` (no certificate chains, keys or nested
/// tokens spilled on the screen).
fn compact(value: &Value, full: bool) -> String {
    fn shorten(value: &Value) -> Value {
        match value {
            Value::String(s) if s.chars().count() > 80 => Value::String(format!(
                "{}…({} chars; --full shows all)",
                s.chars().take(24).collect::<String>(),
                s.chars().count()
            )),
            Value::Array(items) => Value::Array(items.iter().map(shorten).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), shorten(v))).collect())
            }
            other => other.clone(),
        }
    }
    let value = if full { value.clone() } else { shorten(value) };
    value.to_string()
}

/// `cnf."x5t#S256"`, read with the layer's rules.
fn bound_of(claims: &Map<String, Value>) -> Bound {
    match claims.get("cnf") {
        None => Bound::Not(Vec::new()),
        Some(Value::Object(cnf)) => match cnf.get("x5t#S256") {
            None => Bound::Not(cnf.keys().cloned().collect()),
            Some(Value::String(s)) => match Thumbprint::from_cnf_value(s) {
                Ok(tp) => Bound::To(tp),
                Err(e) => Bound::Malformed(format!(
                    "cnf.\"x5t#S256\" is {}: {e}",
                    compact(&Value::String(s.clone()), false)
                )),
            },
            Some(other) => Bound::Malformed(format!(
                "cnf.\"x5t#S256\" is {}, not a string",
                compact(other, false)
            )),
        },
        Some(other) => Bound::Malformed(format!("cnf is {}, not an object", compact(other, false))),
    }
}

/// Prints the binding against the certificate; returns the binding policy's own decision
/// (`None` when the token could not be read).
fn show_binding(
    cx: &Context<'_>,
    presented: Option<&Cert>,
    policy: BindingPolicy,
    now: i64,
) -> Option<Result<(), Rejection>> {
    if matches!(cx.bound, Bound::Unknown) && presented.is_none() {
        return None;
    }
    println!();
    match cx.bound {
        Bound::Unknown => {}
        Bound::To(tp) => {
            row(
                "binding",
                format!("token is bound to       {tp}   (cnf.x5t#S256)"),
            );
        }
        Bound::Not(others) => {
            let others = if others.is_empty() {
                String::new()
            } else {
                format!("; cnf has {} instead", others.join(", "))
            };
            row(
                "binding",
                format!("token is NOT bound: no cnf.\"x5t#S256\" (a plain bearer token{others})"),
            );
        }
        Bound::Malformed(why) => {
            row("binding", format!("malformed binding: {why}"));
        }
    }
    let label = if matches!(cx.bound, Bound::Unknown) {
        "binding"
    } else {
        ""
    };
    match (presented, cx.cert) {
        (Some(cert), Some((path, all))) => {
            let position = if all.len() > 1 {
                format!("{} [0] of {}, the leaf", path.display(), all.len())
            } else {
                format!("{} [0]", path.display())
            };
            row(
                label,
                format!("certificate presents    {}   ({position})", cert.thumbprint),
            );
            let validity = if cert.not_after > now {
                format!("valid until {}", time::utc(cert.not_after))
            } else {
                format!(
                    "EXPIRED {} ago",
                    time::span(time::diff(cert.not_after, now))
                )
            };
            more(format!(
                "certificate subject     {}, {validity}",
                cert.subject
            ));
        }
        _ => row(label, "certificate             none given (--cert CERT)"),
    }
    // The decision is certbound-core's own (Confirmation::check), never re-implemented here.
    let decision = match (cx.bound, cx.claims) {
        (Bound::Unknown, _) | (_, None) => return None,
        (_, Some(claims)) => Confirmation::from_cnf(claims.get("cnf"))
            .and_then(|cnf| cnf.check(policy, presented.map(|c| &c.thumbprint).into())),
    };
    match (&decision, cx.bound) {
        (Ok(()), Bound::To(_)) => more("=> match: the token is bound to this certificate"),
        (Ok(()), _) => more("=> not bound, and --binding if-bound lets unbound tokens through"),
        (Err(r), _) => more(format!("=> {} — {}", r.code(), r.description())),
    }
    Some(decision)
}

fn show_accepted(token: &VerifiedToken) {
    row(
        "verdict",
        format!(
            "ACCEPTED — signature ({:?}, kid {}), issuer, audience, lifetime and binding all check out",
            token.alg(),
            token.kid().unwrap_or("none"),
        ),
    );
    let mut who = Vec::new();
    if let Some(sub) = token.sub() {
        who.push(format!("sub {sub}"));
    }
    if let Some(client) = token.client_id() {
        who.push(format!("client_id {client}"));
    }
    if let Some(scope) = token.scope() {
        who.push(format!("scope \"{scope}\""));
    }
    if !who.is_empty() {
        more(who.join(", "));
    }
}

/// Builds the layer from the flags and asks it. A layer that cannot be built (discovery or the
/// first key fetch failed) is an input error.
fn verify(
    args: &Args,
    issuer: &str,
    keys: Keys,
    jwks_ca: Option<Vec<u8>>,
    binding: BindingPolicy,
    token: &str,
    presented: Option<Thumbprint>,
) -> Result<Result<VerifiedToken, Rejection>, Fatal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::new(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let mut builder = CertBound::builder()
            .issuer(issuer)
            .binding(binding)
            .no_token_cache();
        for audience in &args.audience {
            builder = builder.audience(audience.clone());
        }
        if args.require_at_jwt {
            builder = builder.require_at_jwt();
        }
        if let Some(pem) = jwks_ca {
            builder = builder.jwks_root_certificates_pem(pem);
        }
        builder = match keys {
            Keys::Discovery => builder,
            Keys::Uri(uri) => builder.jwks_uri(uri),
            Keys::File(_, jwks) => builder.key_source(jwks),
        };
        let layer = builder
            .build()
            .await
            .map_err(|e| Fatal::new(format!("cannot set up the layer: {e}")))?;
        Ok(layer.verify(token, presented).await)
    })
}

/// Why a token that `UnverifiedToken::parse` refused is malformed, in words.
fn diagnose(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 5 {
        return "5 segments: this is an encrypted token (JWE), not a signed JWT (JWS)".to_owned();
    }
    if parts.len() != 3 {
        return format!(
            "expected 3 dot-separated segments (header.payload.signature), found {}",
            parts.len()
        );
    }
    let names = ["header", "payload", "signature"];
    let mut decoded = Vec::new();
    for (name, segment) in names.iter().zip(&parts) {
        if segment.is_empty() && *name != "signature" {
            return format!("the {name} segment is empty");
        }
        match URL_SAFE_NO_PAD.decode(segment) {
            Ok(bytes) => decoded.push(bytes),
            Err(_) => {
                return format!(
                "the {name} segment is not base64url without padding (no '+', '/', '=' or spaces)"
            )
            }
        }
    }
    for (name, bytes) in names.iter().zip(&decoded).take(2) {
        if let Err(e) = parse_object(bytes) {
            return format!("the {name} is not a JSON object without duplicate members ({e})");
        }
    }
    "the header's alg is missing or not a string, or kid / typ / crit has the wrong type".to_owned()
}

fn claim_text(cx: &Context<'_>, name: &str) -> String {
    cx.claims
        .and_then(|c| c.get(name))
        .map_or_else(|| "missing".to_owned(), |v| compact(v, false))
}

fn header_text(cx: &Context<'_>, name: &str) -> String {
    cx.header
        .and_then(|h| h.get(name))
        .map_or_else(|| "missing".to_owned(), |v| compact(v, false))
}

/// One line on what to do about a rejection.
fn hint(rejection: &Rejection, cx: &Context<'_>) -> Option<String> {
    let leeway = cx.leeway;
    Some(match rejection {
        Rejection::BindingMismatch => {
            let elsewhere = match (cx.bound, cx.cert) {
                (Bound::To(tp), Some((path, all))) => all
                    .iter()
                    .skip(1)
                    .find(|c| c.thumbprint == *tp)
                    .map(|c| (path, c)),
                _ => None,
            };
            match elsewhere {
                Some((path, c)) => format!(
                    "the token is bound to certificate [{}] in {} ({}), not to the leaf [0] a client presents",
                    c.index,
                    path.display(),
                    c.subject
                ),
                None => "the token was issued to a different certificate — was the client certificate re-issued?".to_owned(),
            }
        }
        Rejection::MissingClientCertificate => "the token is bound: pass the client's certificate with --cert CERT (the client must send it in the TLS handshake)".to_owned(),
        Rejection::UnboundToken => "the issuer gave out a plain bearer token — get it over mutual TLS as a client registered for certificate-bound tokens, or accept bearer tokens with --binding if-bound".to_owned(),
        Rejection::MalformedBinding => "cnf.\"x5t#S256\" must be the base64url (no padding, 43 characters) SHA-256 of the certificate's DER".to_owned(),
        Rejection::Expired => {
            let ago = cx
                .claims
                .and_then(|c| c.get("exp"))
                .and_then(timestamp)
                .map(|exp| format!("it expired {} ago", time::span(time::diff(exp, cx.now))))
                .unwrap_or_else(|| "it has expired".to_owned());
            format!("get a new token: {ago}, and the layer allows only {leeway} s of clock skew")
        }
        Rejection::NotYetValid | Rejection::IssuedInFuture => format!("check the clocks: nbf/iat is ahead of this machine's clock by more than the {leeway} s leeway"),
        Rejection::WrongIssuer => format!(
            "the token's iss is {}; this layer accepts only \"{}\" (exact match, trailing slash included)",
            claim_text(cx, "iss"),
            cx.args.issuer.as_deref().unwrap_or("")
        ),
        Rejection::WrongAudience => format!("the token's aud is {}; this API is {}", claim_text(cx, "aud"), cx.args.audience.join(" | ")),
        Rejection::UnknownKey => format!("the issuer's key set has no key with kid {} — a token from another issuer or environment, or a key not published yet", header_text(cx, "kid")),
        Rejection::BadSignature => format!("the signature does not verify with the issuer's key {} — the token was altered or signed by someone else", header_text(cx, "kid")),
        Rejection::DisallowedAlgorithm => format!("alg {} is not allowed (RS*, PS*, ES256, ES384, EdDSA; never none)", header_text(cx, "alg")),
        Rejection::KeyAlgorithmMismatch => format!("alg {} does not fit the type or alg of key {}", header_text(cx, "alg"), header_text(cx, "kid")),
        Rejection::WrongTokenType => format!("typ is {}; --require-at-jwt wants \"at+jwt\" (RFC 9068)", header_text(cx, "typ")),
        Rejection::UnsupportedCriticalHeader => format!("crit is {}; certbound implements no critical header extensions", header_text(cx, "crit")),
        Rejection::InvalidClaims => "iss must be a string, exp a number, aud a string or list of strings, nbf/iat numbers, sub/client_id/scope/jti strings".to_owned(),
        Rejection::MalformedToken => "a JWT is header.payload.signature, each base64url without padding, header and payload JSON objects".to_owned(),
        Rejection::TokenTooLarge => "the layer accepts tokens up to 16 KiB".to_owned(),
        Rejection::MalformedAuthorization => "the token has characters a bearer token cannot have (RFC 6750 token68)".to_owned(),
        Rejection::KeysUnavailable { .. } => "the issuer's keys could not be fetched: check the issuer URL, --jwks-ca and the network".to_owned(),
        _ => return None,
    })
}
