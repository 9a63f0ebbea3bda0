//! `certbound dpop key` and `certbound dpop proof`: a DPoP client key (RFC 9449) and proofs made
//! with it, so a person can call a DPoP-protected API with curl:
//!
//! ```text
//! certbound dpop key --out dpop.pem          # prints the jkt an authorization server binds to
//! curl -H "Authorization: DPoP $TOKEN" \
//!      -H "DPoP: $(certbound dpop proof --key dpop.pem --method GET --url $URL --token $TOKEN)" $URL
//! ```
//!
//! The keys and proofs are certbound-dev's [`DpopKey`], the ones the tests use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certbound_core::normalize_htu;
use certbound_core::Algorithm;
use certbound_dev::dpop::DpopKey;
use certbound_dev::DevError;

use crate::{Fatal, Outcome};

/// `certbound dpop …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Make a DPoP key pair (PKCS#8 PEM, mode 0600) and print its jkt (RFC 7638 thumbprint)
    /// and public JWK. An existing key file is kept and described, unless --force.
    Key(KeyArgs),
    /// Print one DPoP proof (and only the proof) for a request: use it as the `DPoP` header.
    Proof(ProofArgs),
}

/// Arguments of `certbound dpop key`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// Proof algorithm: ES256 (P-256), ES384 (P-384), EdDSA (Ed25519), PS256 or RS256 (RSA 2048).
    #[arg(long, default_value = "ES256", value_parser = parse_alg)]
    alg: Algorithm,
    /// Where to write the private key. Default: dpop-key.pem in the per-user dev directory
    /// ($XDG_RUNTIME_DIR/certbound-dev, else $XDG_CACHE_HOME/certbound-dev, else
    /// $HOME/.cache/certbound-dev).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Make a new key even if FILE exists (overwrites it: tokens bound to the old key stop
    /// working).
    #[arg(long)]
    force: bool,
}

/// Arguments of `certbound dpop proof`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProofArgs {
    /// The private key (PKCS#8 PEM, as `certbound dpop key` writes it).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// The request's HTTP method (`htm`), exactly as sent: `GET`, `POST`, … (case-sensitive).
    #[arg(long, value_name = "METHOD")]
    method: String,
    /// The request's absolute URL (`htu`); a query or fragment is left out of the proof, as
    /// RFC 9449 §4.2 says.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The access token the proof goes with (its SHA-256 becomes `ath`): the token, a file
    /// holding it, or `-` for stdin. Without it the proof is for a token request (no `ath`).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// A server nonce (from a `DPoP-Nonce` response header).
    #[arg(long, value_name = "N")]
    nonce: Option<String>,
    /// The key's algorithm, when its type allows several (an RSA key: PS256 by default, or
    /// RS256). Default: the one the key type implies.
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
}

/// An asymmetric JWS algorithm name, exactly as JOSE spells it.
fn parse_alg(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown algorithm {name:?}"))?;
    match alg {
        Algorithm::ES256
        | Algorithm::ES384
        | Algorithm::EdDSA
        | Algorithm::PS256
        | Algorithm::RS256 => Ok(alg),
        _ => Err(format!(
            "{name} is not a DPoP key algorithm here (ES256, ES384, EdDSA, PS256, RS256)"
        )),
    }
}

pub(crate) fn run(command: Command) -> Outcome {
    match command {
        Command::Key(args) => key(args),
        Command::Proof(args) => proof(args),
    }
}

fn key(args: KeyArgs) -> Outcome {
    let path = match args.out {
        Some(path) => path,
        None => {
            let dir = certbound_dev::default_dev_dir()
                .map_err(|e| Fatal::new(format!("{e} (--out FILE)")))?;
            certbound_dev::private_dir(&dir).map_err(|e| Fatal::new(e.to_string()))?;
            dir.join("dpop-key.pem")
        }
    };
    let (key, state) = if path.exists() && !args.force {
        let key = load(&path, None)?;
        (key, "existing key kept; --force makes a new one")
    } else {
        let key = DpopKey::generate(args.alg)
            .map_err(|e| Fatal::new(format!("cannot make a {:?} key: {e}", args.alg)))?;
        certbound_dev::write_private(&path, key.pkcs8_pem())
            .map_err(|e| Fatal::new(format!("--out: {e}")))?;
        (key, "new")
    };
    crate::outln!(
        "key   {} ({:?}, PKCS#8 PEM, mode 0600; {state})",
        path.display(),
        key.alg()
    );
    crate::outln!("jkt   {}", key.jkt());
    crate::outln!("jwk   {}", key.public_jwk());
    crate::outln!(
        "next  have the authorization server bind tokens to this key (cnf.jkt), then:\n      \
         certbound dpop proof --key {} --method GET --url URL --token TOKEN",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn proof(args: ProofArgs) -> Outcome {
    let key = load(&args.key, args.alg)?;
    if normalize_htu(&args.url).is_none() {
        return Err(Fatal::new(format!(
            "--url {:?} is not an absolute http(s) URL (https://host[:port]/path)",
            args.url
        )));
    }
    if args.method.is_empty() || !args.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Fatal::new(format!(
            "--method {:?} is not an HTTP method",
            args.method
        )));
    }
    // RFC 9449 §4.2: htu is the target URI without query and fragment.
    let htu = args.url.split(['?', '#']).next().unwrap_or(&args.url);
    let token = match &args.token {
        Some(arg) => Some(crate::inspect::read_token(arg)?),
        None => None,
    };
    let proof = key
        .proof(&args.method, htu, token.as_deref(), args.nonce.as_deref())
        .map_err(|e| Fatal::new(format!("cannot sign the proof: {e}")))?;
    crate::outln!("{proof}");
    Ok(ExitCode::SUCCESS)
}

/// A DPoP key from a PEM file, its algorithm from `alg` or its type.
fn load(path: &Path, alg: Option<Algorithm>) -> Result<DpopKey, Fatal> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Fatal::new(format!("cannot read the key {}: {e}", path.display())))?;
    DpopKey::from_pem(&pem, alg).map_err(|e| match e {
        DevError::Invalid(why) => Fatal::new(format!("{}: {why}", path.display())),
        e => Fatal::new(format!("{}: {e}", path.display())),
    })
}
