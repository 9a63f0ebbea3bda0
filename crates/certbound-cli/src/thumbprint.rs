//! `certbound thumbprint CERT…`

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{certs, Outcome};

/// Arguments of `certbound thumbprint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Certificate files: PEM with one or more certificates (the first is the leaf), or DER.
    #[arg(required = true, value_name = "CERT")]
    files: Vec<PathBuf>,
    /// Print only the x5t#S256 thumbprints, one per line.
    #[arg(long)]
    raw: bool,
}

pub(crate) fn run(args: &Args) -> Outcome {
    // Read everything first: a bad file is one error line, not half a listing.
    let mut rows = Vec::new();
    for path in &args.files {
        for cert in certs::load(path)? {
            rows.push((format!("{} [{}]", path.display(), cert.index), cert));
        }
    }
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, cert) in &rows {
        if args.raw {
            crate::outln!("{}", cert.thumbprint);
        } else {
            let self_signed = if cert.self_issued {
                "  (self-signed)"
            } else {
                ""
            };
            crate::outln!(
                "{label:width$}  x5t#S256 {}  sha256 {}  subject {}{self_signed}",
                cert.thumbprint,
                cert.thumbprint.to_hex(),
                cert.subject,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
