//! `certbound inspect TOKEN|-`: what a token says, what it is bound to (`cnf."x5t#S256"`,
//! `cnf.jkt`), whether that is the given certificate or DPoP proof key, the proof's own checks,
//! and — with keys — the layer's own verdict from [`CertBoundLayer::verify`] (or
//! [`CertBoundLayer::verify_dpop`] with a proof).
//!
//! [`CertBoundLayer::verify`]: certbound::CertBoundLayer::verify
//! [`CertBoundLayer::verify_dpop`]: certbound::CertBoundLayer::verify_dpop

use std::fmt::Display;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound::{BindingPolicy, CertBound, Dpop, Rejection, StaticJwks, Thumbprint, VerifiedToken};
use certbound_core::__private::parse_object;
use certbound_core::{
    access_token_hash, jwk_thumbprint, normalize_htu, Confirmation, DpopPolicy, Presented,
    ProofRequest, Scheme, UnverifiedToken, DEFAULT_LEEWAY,
};
use serde_json::{Map, Value};

use crate::certs::{self, Cert};
use crate::{time, Fatal, Outcome};

/// Arguments of `certbound inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The access token: the token itself, a file holding it, or `-` to read it from stdin.
    /// A leading `Bearer ` or `DPoP ` is ignored.
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
    /// A DPoP proof sent with the token (the `DPoP` header's value, or a file holding it): its
    /// checks, and with keys the layer's verdict for `Authorization: DPoP` with this proof.
    #[arg(long, value_name = "PROOF", requires_all = ["method", "url"])]
    proof: Option<String>,
    /// The method of the request the proof goes with (`htm` must equal it).
    #[arg(long, value_name = "M", requires = "proof")]
    method: Option<String>,
    /// The absolute URL of the request the proof goes with (`htu` must name it; query and
    /// fragment do not count).
    #[arg(long, value_name = "U", requires = "proof")]
    url: Option<String>,
}

/// Width of the label column.
const LABEL: usize = 9;

fn row(label: &str, text: impl Display) {
    crate::outln!("{label:LABEL$} {text}");
}

fn more(text: impl Display) {
    crate::outln!("{:LABEL$} {text}", "");
}

/// What `cnf` says, read the way the layer reads it.
enum Bound {
    /// The token could not be parsed at all.
    Unknown,
    /// Neither `cnf."x5t#S256"` nor `cnf.jkt`; the other confirmation members, if any.
    Not(Vec<String>),
    /// `cnf`, `x5t#S256` or `jkt` has the wrong shape.
    Malformed(String),
    /// Bound to a certificate (`x5t#S256`), a DPoP key (`jkt`), or both.
    To {
        cert: Option<Thumbprint>,
        jkt: Option<Thumbprint>,
    },
}

impl Bound {
    fn jkt(&self) -> Option<&Thumbprint> {
        match self {
            Bound::To { jkt, .. } => jkt.as_ref(),
            _ => None,
        }
    }
}

/// A DPoP proof given with `--proof`, and the request it must be for.
struct ProofView {
    method: String,
    url: String,
    header: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
    /// The RFC 7638 thumbprint of the proof's `jwk`, when it has one.
    jkt: Option<Thumbprint>,
    /// certbound-core's verdict on the proof alone (`DpopPolicy::verify_proof`).
    verdict: Result<(), Rejection>,
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
    proof: Option<&'a ProofView>,
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
    let proof = match (&args.proof, &args.method, &args.url) {
        (Some(proof), Some(method), Some(url)) => Some((read_proof(proof)?, method, url)),
        _ => None,
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
    // 2. The DPoP proof, checked on its own by certbound-core.
    let proof_view = proof
        .as_ref()
        .map(|(proof, method, url)| show_proof(proof, &token, method, url, now, args.full));
    let cx = Context {
        args: &args,
        claims,
        header: header.as_ref(),
        bound: &bound,
        cert: cert.as_ref(),
        proof: proof_view.as_ref(),
        leeway,
        now,
    };

    // 3. The binding against the certificate and the proof's key.
    let presented = cert.as_ref().and_then(|(_, certs)| certs.first());
    let decision = show_binding(&cx, presented, binding, now);
    // The layer checks the proof before the token: a failure of the proof comes first.
    let local = match proof_view.as_ref().map(|p| p.verdict) {
        Some(Err(rejection)) => Some(Err(rejection)),
        _ => decision,
    };

    // 4. The verdict.
    crate::outln!();
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
            "by the layer ({}): issuer {issuer}, audience {}, binding {}{}",
            match &proof {
                Some((_, method, url)) => format!(
                    "CertBoundLayer::verify_dpop, Authorization: DPoP + the proof, for {method} {url}"
                ),
                None => "CertBoundLayer::verify".to_owned(),
            },
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
    let request = proof
        .as_ref()
        .map(|(proof, method, url)| (proof.as_str(), method.as_str(), url.as_str()));
    let verdict = verify(
        &args,
        &issuer,
        keys,
        jwks_ca,
        binding,
        &token,
        request,
        presented.map(|c| c.thumbprint),
    )?;
    match verdict {
        Ok(verified) => {
            show_accepted(&verified);
            if proof.is_some() {
                more("and the DPoP proof holds for this request (a server accepts each proof once: its jti is remembered)");
            }
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

/// The token argument: `-` is stdin, an existing file is read, anything else is the token; a
/// leading `Bearer ` or `DPoP ` (any case) is dropped.
pub(crate) fn read_token(arg: &str) -> Result<String, Fatal> {
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
    let token = strip_prefix_ignore_case(token, "bearer ")
        .or_else(|| strip_prefix_ignore_case(token, "dpop "))
        .map_or(token, str::trim_start);
    if token.is_empty() {
        return Err(Fatal::new("the token is empty"));
    }
    Ok(token.to_owned())
}

/// `text` without `prefix` (ASCII case-insensitive), if it starts with it.
fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The `--proof` argument: the proof itself or a file holding it; a copied `DPoP: ` header
/// name in front is dropped.
fn read_proof(arg: &str) -> Result<String, Fatal> {
    let raw = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg)
            .map_err(|e| Fatal::new(format!("cannot read the proof from {arg}: {e}")))?
    } else {
        arg.to_owned()
    };
    let proof = raw.trim();
    let proof = strip_prefix_ignore_case(proof, "dpop:").map_or(proof, str::trim_start);
    if proof.is_empty() {
        return Err(Fatal::new("the DPoP proof is empty"));
    }
    Ok(proof.to_owned())
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

/// `cnf."x5t#S256"` and `cnf.jkt`, read with the layer's rules.
fn bound_of(claims: &Map<String, Value>) -> Bound {
    let cnf = match claims.get("cnf") {
        None => return Bound::Not(Vec::new()),
        Some(Value::Object(cnf)) => cnf,
        Some(other) => {
            return Bound::Malformed(format!("cnf is {}, not an object", compact(other, false)))
        }
    };
    let member = |name: &str, shown: &str| -> Result<Option<Thumbprint>, String> {
        match cnf.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Thumbprint::from_cnf_value(s).map(Some).map_err(|e| {
                format!(
                    "cnf.{shown} is {}: {e}",
                    compact(&Value::String(s.clone()), false)
                )
            }),
            Some(other) => Err(format!(
                "cnf.{shown} is {}, not a string",
                compact(other, false)
            )),
        }
    };
    let thumbprints = member("x5t#S256", "\"x5t#S256\"")
        .and_then(|cert| member("jkt", "jkt").map(|jkt| (cert, jkt)));
    match thumbprints {
        Err(why) => Bound::Malformed(why),
        Ok((None, None)) => Bound::Not(cnf.keys().cloned().collect()),
        Ok((cert, jkt)) => Bound::To { cert, jkt },
    }
}

/// Prints the binding against the certificate and the proof's key; returns the binding
/// policy's own decision (`None` when the token could not be read).
fn show_binding(
    cx: &Context<'_>,
    presented: Option<&Cert>,
    policy: BindingPolicy,
    now: i64,
) -> Option<Result<(), Rejection>> {
    if matches!(cx.bound, Bound::Unknown) && presented.is_none() && cx.proof.is_none() {
        return None;
    }
    crate::outln!();
    let mut label = "binding";
    let mut next = |text: String| {
        row(label, text);
        label = "";
    };
    match cx.bound {
        Bound::Unknown => {}
        Bound::To { cert, jkt } => {
            if let Some(tp) = cert {
                next(format!("token is bound to       {tp}   (cnf.x5t#S256)"));
            }
            if let Some(jkt) = jkt {
                next(format!("token is bound to key   {jkt}   (cnf.jkt, DPoP)"));
            }
        }
        Bound::Not(others) => {
            let others = if others.is_empty() {
                String::new()
            } else {
                format!("; cnf has {} instead", others.join(", "))
            };
            next(format!(
                "token is NOT bound: no cnf.\"x5t#S256\" or cnf.jkt (a plain bearer token{others})"
            ));
        }
        Bound::Malformed(why) => next(format!("malformed binding: {why}")),
    }
    let dpop_only = matches!(
        cx.bound,
        Bound::To {
            cert: None,
            jkt: Some(_)
        }
    );
    match (presented, cx.cert) {
        (Some(cert), Some((path, all))) => {
            let position = if all.len() > 1 {
                format!("{} [0] of {}, the leaf", path.display(), all.len())
            } else {
                format!("{} [0]", path.display())
            };
            next(format!(
                "certificate presents    {}   ({position})",
                cert.thumbprint
            ));
            let validity = if cert.not_after > now {
                format!("valid until {}", time::utc(cert.not_after))
            } else {
                format!(
                    "EXPIRED {} ago",
                    time::span(time::diff(cert.not_after, now))
                )
            };
            next(format!(
                "certificate subject     {}, {validity}",
                cert.subject
            ));
        }
        // A token bound only to a DPoP key needs no certificate.
        _ if dpop_only => {}
        _ => next("certificate             none given (--cert CERT)".to_owned()),
    }
    match cx.proof {
        Some(ProofView { jkt: Some(jkt), .. }) => {
            next(format!("proof is signed by key  {jkt}   (the proof's jwk)"));
        }
        Some(_) => next("proof key               none: the proof has no usable jwk".to_owned()),
        None if cx.bound.jkt().is_some() => {
            next(
                "proof                   none given (--proof PROOF --method M --url U)".to_owned(),
            );
        }
        None => {}
    }
    // The decision is certbound-core's own (Confirmation::check), never re-implemented here.
    let certificate = Presented::certificate(presented.map(|c| &c.thumbprint));
    let against = match cx.proof {
        Some(ProofView { jkt: Some(jkt), .. }) => certificate.with_dpop_key(jkt),
        Some(_) => certificate.with_scheme(Scheme::Dpop),
        None => certificate,
    };
    let decision = match (cx.bound, cx.claims) {
        (Bound::Unknown, _) | (_, None) => return None,
        (_, Some(claims)) => {
            Confirmation::from_cnf(claims.get("cnf")).and_then(|cnf| cnf.check(policy, against))
        }
    };
    match (&decision, cx.bound) {
        (
            Ok(()),
            Bound::To {
                cert: Some(_),
                jkt: Some(_),
            },
        ) => {
            more("=> match: the certificate and the proof's key are the ones the token is bound to")
        }
        (Ok(()), Bound::To { cert: Some(_), .. }) => {
            more("=> match: the token is bound to this certificate")
        }
        (Ok(()), Bound::To { jkt: Some(_), .. }) => {
            more("=> match: the proof is signed by the key the token is bound to")
        }
        (Ok(()), _) => more("=> not bound, and --binding if-bound lets unbound tokens through"),
        (Err(r), _) => more(format!("=> {} — {}", r.code(), r.description())),
    }
    Some(decision)
}

/// The checks of RFC 9449 §4.3, in the order certbound-core makes them.
const PROOF_CHECKS: [&str; 9] = [
    "typ", "alg", "jwk", "sig", "jti", "htm", "htu", "iat", "ath",
];

/// Prints what a DPoP proof says and how it fares against `method` `url` and `token`: the
/// values, each check marked from certbound-core's verdict (`DpopPolicy::verify_proof`, which
/// stops at the first failure), and that verdict.
fn show_proof(
    proof: &str,
    token: &str,
    method: &str,
    url: &str,
    now: i64,
    full: bool,
) -> ProofView {
    let policy = DpopPolicy::default();
    let now_secs = u64::try_from(now).unwrap_or(0);
    let verdict = policy
        .verify_proof(proof, token, &ProofRequest::new(method, url), now_secs)
        .map(|_| ());
    let parsed = UnverifiedToken::parse(proof);
    let header = parsed.as_ref().ok().and_then(|_| header_object(proof));
    let claims = parsed.as_ref().ok().map(|p| p.unverified_claims().clone());
    let jkt = header
        .as_ref()
        .and_then(|h| h.get("jwk"))
        .and_then(Value::as_object)
        .and_then(jwk_thumbprint);
    crate::outln!();
    let (Some(header), Some(claims)) = (header, claims) else {
        row(
            "proof",
            format!("NOT a well-formed JWS: {}", diagnose(proof)),
        );
        more(format!(
            "=> {} — {}",
            Rejection::MalformedDpopProof.code(),
            Rejection::MalformedDpopProof
        ));
        return ProofView {
            method: method.to_owned(),
            url: url.to_owned(),
            header: None,
            claims: None,
            jkt,
            verdict,
        };
    };
    let mut shown_header = header.clone();
    shown_header.remove("jwk"); // on the jwk line
    row(
        "proof",
        format!("header {}", compact(&Value::Object(shown_header), full)),
    );
    more(format!(
        "claims {}",
        compact(&Value::Object(claims.clone()), full)
    ));

    let text = |name: &str| {
        claims
            .get(name)
            .map_or_else(|| "missing".to_owned(), |v| compact(v, false))
    };
    let not_string = |name: &str| !matches!(claims.get(name), Some(Value::String(_)));
    let failed = match verdict {
        Ok(()) => None,
        Err(Rejection::WrongDpopProofType) => Some("typ"),
        Err(Rejection::DisallowedDpopAlgorithm) => Some("alg"),
        Err(Rejection::InvalidDpopKey) => Some("jwk"),
        Err(Rejection::BadDpopSignature) => Some("sig"),
        Err(Rejection::DpopMethodMismatch) => Some("htm"),
        Err(Rejection::DpopUriMismatch) => Some("htu"),
        Err(Rejection::DpopProofNotFresh) => Some("iat"),
        Err(Rejection::DpopTokenHashMismatch) => Some("ath"),
        // A missing or mistyped claim: the first one, in the order of the checks.
        Err(_) => ["jti", "htm", "htu", "iat", "ath"]
            .into_iter()
            .find(|name| match *name {
                "iat" => !matches!(claims.get("iat"), Some(Value::Number(_))),
                name => not_string(name),
            }),
    };
    let failed_at = failed.and_then(|f| PROOF_CHECKS.iter().position(|c| *c == f));
    let jwk = header.get("jwk").and_then(Value::as_object);
    for (i, check) in PROOF_CHECKS.iter().enumerate() {
        let mark = match (verdict, failed_at) {
            (Ok(()), _) => "ok",
            (Err(_), Some(at)) if i < at => "ok",
            (Err(_), Some(at)) if i == at => "FAILS",
            (Err(_), Some(_)) => "-",
            // Failed on something without a line (crit, size, nonce type): see the verdict.
            (Err(_), None) => "?",
        };
        let value = match *check {
            "typ" => format!("{} (must be \"dpop+jwt\")", header_text_of(&header, "typ")),
            "alg" => format!(
                "{} (allowed: {})",
                header_text_of(&header, "alg"),
                policy.algorithm_names().join(" ")
            ),
            "jwk" => match jwk {
                None => "missing".to_owned(),
                Some(jwk) => {
                    let kind = ["kty", "crv"]
                        .iter()
                        .filter_map(|m| jwk.get(*m).and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(" ");
                    match &jkt {
                        Some(jkt) => format!("{kind}, jkt {jkt}"),
                        None => format!("{kind}, no RFC 7638 thumbprint"),
                    }
                }
            },
            "sig" => "signed by the key in jwk".to_owned(),
            "jti" => text("jti"),
            "htm" => format!("{}; the request is {method}", text("htm")),
            "htu" => {
                let normal =
                    |u: &str| normalize_htu(u).unwrap_or_else(|| "not an http(s) URL".to_owned());
                match claims.get("htu").and_then(Value::as_str) {
                    Some(htu) if normal(htu) == htu => {
                        format!("{}; the request is {}", text("htu"), normal(url))
                    }
                    Some(htu) => format!(
                        "{} (normalised {}); the request is {}",
                        text("htu"),
                        normal(htu),
                        normal(url)
                    ),
                    None => format!("{}; the request is {}", text("htu"), normal(url)),
                }
            }
            "iat" => match claims.get("iat").and_then(timestamp) {
                Some(iat) => format!(
                    "{} (issued {}; accepted within ±{} s)",
                    text("iat"),
                    time::relative(iat, now),
                    policy.iat_window_secs()
                ),
                None => text("iat"),
            },
            _ => match claims.get("ath").and_then(Value::as_str) {
                Some(ath) if ath == access_token_hash(token) => {
                    format!("{} = SHA-256 of the token", text("ath"))
                }
                Some(_) => format!(
                    "{}; SHA-256 of the token is {}",
                    text("ath"),
                    access_token_hash(token)
                ),
                None => text("ath"),
            },
        };
        row(
            if i == 0 { "checks" } else { "" },
            format!("{mark:5} {check:3}  {value}"),
        );
    }
    if let Some(nonce) = claims.get("nonce") {
        more(format!(
            "      nonce  {} (a server nonce; not checked here: the server's nonce keys decide)",
            compact(nonce, false)
        ));
    }
    match verdict {
        Ok(()) => more(format!(
            "=> the proof holds for {method} {url} (certbound-core DpopPolicy)"
        )),
        Err(r) => more(format!("=> {} — {}", r.code(), r.description())),
    }
    ProofView {
        method: method.to_owned(),
        url: url.to_owned(),
        header: Some(header),
        claims: Some(claims),
        jkt,
        verdict,
    }
}

fn header_text_of(header: &Map<String, Value>, name: &str) -> String {
    header
        .get(name)
        .map_or_else(|| "missing".to_owned(), |v| compact(v, false))
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

/// Builds the layer from the flags and asks it — with a DPoP proof (`request`: the proof, the
/// method and the URL), as a DPoP request to a layer that accepts DPoP. A layer that cannot be
/// built (discovery or the first key fetch failed) is an input error.
#[allow(clippy::too_many_arguments)]
fn verify(
    args: &Args,
    issuer: &str,
    keys: Keys,
    jwks_ca: Option<Vec<u8>>,
    binding: BindingPolicy,
    token: &str,
    request: Option<(&str, &str, &str)>,
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
        if request.is_some() {
            builder = builder.dpop(Dpop::default());
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
        Ok(match request {
            Some((proof, method, url)) => {
                layer
                    .verify_dpop(token, proof, method, url, presented)
                    .await
            }
            None => layer.verify(token, presented).await,
        })
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

fn proof_header_text(cx: &Context<'_>, name: &str) -> String {
    cx.proof
        .and_then(|p| p.header.as_ref())
        .map_or_else(|| "missing".to_owned(), |h| header_text_of(h, name))
}

fn proof_claim_text(cx: &Context<'_>, name: &str) -> String {
    cx.proof
        .and_then(|p| p.claims.as_ref())
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
                (Bound::To { cert: Some(tp), .. }, Some((path, all))) => all
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
        Rejection::DpopBoundTokenAsBearer => "the token is DPoP-bound (cnf.jkt): the client must send it as `Authorization: DPoP` with a `DPoP` proof header; to check a proof here add --proof PROOF --method M --url U (`certbound dpop proof` makes one)".to_owned(),
        Rejection::MissingDpopProof => "a DPoP request needs exactly one `DPoP` proof header".to_owned(),
        Rejection::MalformedDpopProof => "a proof is a compact JWS (typ dpop+jwt, no crit) whose claims have jti, htm, htu and ath as strings and iat as a number".to_owned(),
        Rejection::WrongDpopProofType => format!("the proof's typ is {}; it must be \"dpop+jwt\"", proof_header_text(cx, "typ")),
        Rejection::DisallowedDpopAlgorithm => format!("the proof's alg is {}; accepted: ES256 ES384 PS256 EdDSA Ed25519 (RS256 only when the server adds it; never none or HMAC)", proof_header_text(cx, "alg")),
        Rejection::InvalidDpopKey => "the proof's header needs `jwk`: the client's public key (EC, RSA or OKP) fitting alg — no private members (d, p, q, …), no symmetric key".to_owned(),
        Rejection::BadDpopSignature => "the proof's signature does not verify with its own jwk: it was altered, or signed by another key than the one it carries".to_owned(),
        Rejection::DpopMethodMismatch => format!("the proof's htm is {}; the request is {} (case-sensitive: make a proof per request, with its method)", proof_claim_text(cx, "htm"), cx.proof.map_or("", |p| p.method.as_str())),
        Rejection::DpopUriMismatch => format!("the proof's htu is {}; the request URL is {} — scheme, host and port must be the ones the client used (behind a proxy the server needs .public_url(..) or a trusted proxy's X-Forwarded-*)", proof_claim_text(cx, "htu"), cx.proof.map_or("", |p| p.url.as_str())),
        Rejection::DpopProofNotFresh => "the proof's iat is outside the server's window (±60 s): make a fresh proof for every request, and check the client's clock".to_owned(),
        Rejection::DpopTokenHashMismatch => "the proof's ath is not the SHA-256 of this token: it was made for another token (or none) — `certbound dpop proof --token TOKEN`".to_owned(),
        Rejection::DpopKeyMismatch => match (cx.bound.jkt(), cx.proof.and_then(|p| p.jkt.as_ref())) {
            (Some(bound), Some(key)) => format!("the token is bound to key {bound}, the proof is signed by {key}: sign proofs with the key the token was issued for"),
            (None, _) => "the token has no cnf.jkt: it is not DPoP-bound, so it cannot be sent with a DPoP proof (send it as Bearer over mutual TLS)".to_owned(),
            _ => "the proof is signed by another key than the one the token is bound to".to_owned(),
        },
        _ => return None,
    })
}
