//! `certbound dev-pki [DIR]`: the dev CA, server and client certificates — made by the same
//! `certbound_dev::DevPki` code, in the same per-user directory, as the example API.

use std::path::PathBuf;
use std::process::ExitCode;

use certbound_dev::{CertAndKey, DevError, DevPki};

use crate::{certs, Fatal, Outcome};

pub(crate) fn run(dir: Option<PathBuf>, force: bool) -> Outcome {
    let dir = match dir {
        Some(dir) => dir,
        None => certbound_dev::default_dev_dir().map_err(|e| Fatal::new(format!("{e} (DIR)")))?,
    };
    let dir = dir.as_path();
    let fail = |e: DevError| match e {
        // Already names the directory and what to do.
        DevError::UnsafeDir { .. } => Fatal::new(e.to_string()),
        e => Fatal::new(format!("dev PKI in {}: {e}", dir.display())),
    };
    let (pki, created) = if force {
        let pki = DevPki::generate(dir).map_err(fail)?;
        pki.save().map_err(fail)?;
        (pki, true)
    } else {
        DevPki::load_or_create(dir).map_err(fail)?
    };
    if created {
        crate::outln!("created a dev PKI in {}:", dir.display());
    } else {
        crate::outln!(
            "reusing the dev PKI in {} (nothing written; --force makes a new one):",
            dir.display()
        );
    }
    let members: [(&str, &CertAndKey, &str); 5] = [
        ("ca", &pki.ca, "trust anchor (its key is not kept)"),
        ("server", &pki.server, "server: localhost, 127.0.0.1, ::1"),
        ("client-a", &pki.client_a, "client A, issued by the dev CA"),
        ("client-b", &pki.client_b, "client B, issued by the dev CA"),
        (
            "client-self-signed",
            &pki.self_signed,
            "a self-signed client",
        ),
    ];
    for (name, member, what) in members {
        let cert = certs::describe(0, &member.cert_der)
            .map_err(|e| Fatal::new(format!("{name}.pem: {e}")))?;
        let files = if name == "ca" {
            format!("{name}.pem")
        } else {
            format!("{name}.pem/.key")
        };
        crate::outln!("  {files:28}  {} — {what}", cert.subject);
        crate::outln!("  {:28}  x5t#S256 {}", "", cert.thumbprint);
    }
    crate::outln!(
        "next: certbound thumbprint {}",
        pki.cert_path("client-a").display()
    );
    Ok(ExitCode::SUCCESS)
}
