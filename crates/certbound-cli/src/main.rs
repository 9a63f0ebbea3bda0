//! `certbound` — the command-line companion of the certbound layer.
//!
//! ```text
//! certbound thumbprint CERT…            x5t#S256, hex SHA-256 and subject of every certificate
//! certbound inspect TOKEN|- [--cert …]  header, claims, binding, expiry — and, with keys, the
//!                                       layer's own verdict (CertBoundLayer::verify)
//!           [--proof PROOF --method M --url U]  … and of a DPoP proof for that token
//! certbound dpop key [--alg ES256] [--out FILE]  a DPoP key (PKCS#8 PEM, 0600) and its jkt
//! certbound dpop proof --key KEY --method M --url URL [--token T] [--nonce N]
//!                                       one DPoP proof on stdout, for curl's `-H "DPoP: …"`
//! certbound dev-pki [DIR]               the dev CA, server and client certificates the example uses
//! certbound serve --upstream URL …      certbound in front of any backend (sidecar proxy)
//! certbound serve --forward-auth …      answers an edge proxy's auth subrequests
//! ```
//!
//! Exit codes: 0 success (for `inspect`: the layer would accept the token), 1 the token would be
//! refused or could not be fully checked, 2 a usage or input error (one line on stderr).
#![forbid(unsafe_code)]

mod certs;
mod dev_pki;
mod dpop;
mod inspect;
mod serve;
mod thumbprint;
mod time;

use std::path::PathBuf;

/// mimalloc instead of glibc's malloc: `certbound serve` allocates and frees a few dozen small
/// buffers per proxied request, and glibc's malloc/free were ~6 % of its CPU under load
/// (BENCHMARKS.md, issue 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sender-constrained access tokens (RFC 8705 mTLS, RFC 9449 DPoP): thumbprints, token
/// inspection, DPoP keys and proofs, a dev PKI.
#[derive(Debug, Parser)]
#[command(name = "certbound", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the x5t#S256 thumbprint, hex SHA-256 and subject of certificates (PEM or DER).
    Thumbprint(thumbprint::Args),
    /// Explain an access token (and a DPoP proof): header, claims, binding, expiry, and the
    /// layer's verdict.
    Inspect(Box<inspect::Args>),
    /// DPoP (RFC 9449) client keys and proofs.
    Dpop {
        #[command(subcommand)]
        command: dpop::Command,
    },
    /// Create (or reuse) the dev CA, server and client certificates in DIR.
    #[command(name = "dev-pki")]
    DevPki {
        /// Directory for the certificates and keys: created with mode 0700 if missing, refused if
        /// owned by another user or writable by others. Default: the per-user directory the
        /// example uses ($XDG_RUNTIME_DIR/certbound-dev, else $XDG_CACHE_HOME/certbound-dev, else
        /// $HOME/.cache/certbound-dev).
        dir: Option<PathBuf>,
        /// Generate a fresh set even if DIR already holds one (overwrites the files).
        #[arg(long)]
        force: bool,
    },
    /// Put certbound in front of any backend: a sidecar proxy (--upstream URL) or an edge
    /// proxy's forward-auth endpoint (--forward-auth).
    #[command(long_about = SERVE_ABOUT)]
    Serve(Box<serve::Args>),
}

const SERVE_ABOUT: &str = "Put certbound in front of any backend.\n\n\
With --upstream URL it is a sidecar: it terminates mutual TLS (RFC 8705, both modes, CRLs), \
checks every request's access token exactly as the certbound layer does — JWT, binding to the \
client certificate or DPoP key (RFC 9449), scopes — and forwards only accepted requests to the \
upstream, with X-Certbound-Subject, -Client-Id, -Scope, -Issuer and RFC 9440 Client-Cert \
headers (any copies the client sent are removed). Rejected requests get the RFC 6750 / RFC 9449 \
answer and never reach the upstream.\n\n\
With --forward-auth it answers nginx auth_request, Traefik forwardAuth and Caddy forward_auth \
subrequests about the original request (X-Original-Method/-URI or X-Forwarded-Method/-Uri), \
trusted only from --trusted-proxy peers: 200 with the identity headers, or 401/403 with \
WWW-Authenticate.";

/// `println!` that survives a closed stdout: `certbound … | head -1` ends quietly (exit 0) when
/// the reader has gone, instead of panicking; any other write error is exit 2.
macro_rules! outln {
    () => {
        $crate::write_stdout(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line on stdout (see [`outln!`]).
pub(crate) fn write_stdout(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(2);
        }
    }
}

/// A usage or input error: one line on stderr, exit code 2.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

impl Fatal {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// `Ok(code)` is the command's outcome; `Err` is a usage or input error.
pub(crate) type Outcome = Result<ExitCode, Fatal>;

fn main() -> ExitCode {
    // `certbound serve --config FILE`: the file's settings become flags first.
    let args = match serve::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(Fatal(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap prints them on stdout and exits 0.
            e.exit();
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Thumbprint(args) => thumbprint::run(&args),
        Command::Inspect(args) => inspect::run(*args),
        Command::Dpop { command } => dpop::run(command),
        Command::DevPki { dir, force } => dev_pki::run(dir, force),
        Command::Serve(args) => serve::run(*args),
    };
    match outcome {
        Ok(code) => code,
        Err(Fatal(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Clap's multi-line error as one line: the message up to the usage block, whitespace collapsed,
/// plus where to look for help.
fn one_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .flat_map(str::split_whitespace)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see certbound --help)")
}
