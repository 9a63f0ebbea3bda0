//! The example API as a user runs it: `protected_api` with no flags prints curl commands, and
//! each one does exactly what its comment says. Also: bad flags and unreadable files are one
//! clear error line and exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::process::{example_binary, start_example, Running};

/// Starts the example on an ephemeral port in dev mode; returns it and everything it printed up
/// to the "Ctrl-C stops the server." line.
fn start(dev_dir: &std::path::Path) -> (Running, Vec<String>) {
    let dir = dev_dir.to_str().unwrap();
    start_example(&["--listen", "127.0.0.1:0", "--dev-dir", dir], |l| {
        l.starts_with("Ctrl-C stops the server")
    })
}

/// The `certbound` CLI built next to the example, when it has `certbound dpop proof`.
fn certbound_cli_with_dpop() -> Option<std::path::PathBuf> {
    let dir = example_binary().parent()?.parent()?.to_owned();
    let cli = dir.join(format!("certbound{}", std::env::consts::EXE_SUFFIX));
    let help = Command::new(&cli)
        .args(["dpop", "proof", "--help"])
        .output()
        .ok()?;
    help.status.success().then_some(dir)
}

/// `command` with each `$(certbound dpop proof --key K --method M --url U --token "$(cat T)")`
/// replaced by a proof certbound-dev makes with the same key, method, URL and token — for when
/// the CLI is not built (it is when the whole workspace is tested).
fn with_dev_proofs(command: &str) -> String {
    const START: &str = "$(certbound dpop proof ";
    let mut out = command.to_owned();
    while let Some(start) = out.find(START) {
        let token_at = start + out[start..].find("--token \"$(cat ").unwrap();
        let end = token_at + out[token_at..].find(")\")").unwrap() + 3;
        let args: Vec<&str> = out[start + START.len()..end - 1]
            .split_whitespace()
            .collect();
        let value = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
        let key_pem = std::fs::read_to_string(value("--key")).unwrap();
        let key = certbound_dev::dpop::DpopKey::from_pkcs8_pem(
            certbound_core::Algorithm::ES256,
            &key_pem,
        )
        .unwrap();
        let token_file = &out[token_at + "--token \"$(cat ".len()..end - 3];
        let token = std::fs::read_to_string(token_file).unwrap();
        let proof = key
            .proof(value("--method"), value("--url"), Some(token.trim()), None)
            .unwrap();
        out.replace_range(start..end, &proof);
    }
    out
}

/// Runs one printed command with bash, as a user pasting it would; returns the status and every
/// `WWW-Authenticate` line, joined with " | ".
fn run_printed(command: &str) -> (u16, Option<String>) {
    let mut bash = Command::new("bash");
    let command = match certbound_cli_with_dpop() {
        Some(dir) => {
            let path = std::env::var("PATH").unwrap_or_default();
            bash.env("PATH", format!("{}:{path}", dir.display()));
            command.to_owned()
        }
        None => with_dev_proofs(command),
    };
    let out = bash.arg("-c").arg(&command).output().unwrap();
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let challenges: Vec<&str> = text
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .map(str::trim)
        .collect();
    let challenge = (!challenges.is_empty()).then(|| challenges.join(" | "));
    (status, challenge)
}

#[test]
fn printed_curl_commands_behave_as_printed() {
    let dev_dir =
        std::env::temp_dir().join(format!("certbound-walkthrough-{}", std::process::id()));
    let (_server, lines) = start(&dev_dir);
    let commands: Vec<(String, String)> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("# ") && w[1].starts_with("curl "))
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect();
    // Four mTLS commands, then — dev mode accepts DPoP too — three DPoP ones, then two with an
    // opaque token (introspected at the dev issuer).
    assert_eq!(commands.len(), 9, "printed:\n{}", lines.join("\n"));
    assert_eq!(
        commands
            .iter()
            .filter(|(_, c)| c.contains("token-a.opaque"))
            .count(),
        2,
        "printed:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        commands
            .iter()
            .filter(|(_, c)| c.contains("certbound dpop proof --key "))
            .count(),
        2,
        "printed:\n{}",
        lines.join("\n")
    );

    for (comment, command) in &commands {
        let (status, challenge) = run_printed(command);
        let challenge = challenge.unwrap_or_default();
        if comment.contains("→ 200") {
            assert_eq!(status, 200, "{comment}: {challenge}");
        } else if comment.contains("invalid_token") {
            assert_eq!(status, 401, "{comment}");
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{comment}: {challenge}"
            );
        } else if comment.contains("invalid_dpop_proof") {
            assert_eq!(status, 401, "{comment}");
            assert!(
                challenge.contains("error=\"invalid_dpop_proof\""),
                "{comment}: {challenge}"
            );
        } else if comment.contains("no error code") {
            assert_eq!(status, 401, "{comment}");
            assert!(
                challenge.starts_with("www-authenticate: Bearer realm="),
                "{comment}: {challenge}"
            );
            assert!(!challenge.contains("error="), "{comment}: {challenge}");
        } else {
            panic!("unexpected comment {comment}");
        }
    }
    // Unknown paths are not authenticated: 404 with or without a valid bound token, never 401.
    for (_, command) in &commands {
        assert!(command.contains("/api/hello"), "{command}");
        let (status, challenge) = run_printed(&command.replace("/api/hello", "/nonexistent"));
        assert_eq!((status, challenge), (404, None), "{command}");
    }
    let _ = std::fs::remove_dir_all(&dev_dir);
}

#[test]
fn a_second_run_reuses_the_dev_material() {
    let dev_dir = std::env::temp_dir().join(format!("certbound-reuse-{}", std::process::id()));
    let (first, lines) = start(&dev_dir);
    drop(first);
    assert!(lines[0].contains("created dev material"), "{}", lines[0]);
    let ca = std::fs::read(dev_dir.join("ca.pem")).unwrap();
    let (_second, lines) = start(&dev_dir);
    assert!(lines[0].contains("reusing dev material"), "{}", lines[0]);
    assert_eq!(std::fs::read(dev_dir.join("ca.pem")).unwrap(), ca);
    let _ = std::fs::remove_dir_all(&dev_dir);
}

#[test]
fn bad_flags_and_unreadable_files_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &["--binding", "sometimes"],
        &["--no-such-flag"],
        &["--issuer", "https://issuer.example/"], // --audience missing
        &[
            "--tls-cert",
            "/nonexistent/server.pem",
            "--tls-key",
            "/nonexistent/server.key",
        ],
        &[
            "--jwks-ca",
            "/nonexistent/ca.pem",
            "--listen",
            "127.0.0.1:0",
        ],
    ];
    for args in cases {
        let out = Command::new(example_binary())
            .args(*args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {stderr}");
        if args[0].starts_with("--tls") || args[0] == "--jwks-ca" {
            assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
            assert!(first.contains("/nonexistent/"), "{args:?}: {first}");
        }
    }
}

/// A directory under the system temp dir, removed at the end.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("certbound-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn dev_material_goes_to_a_private_per_user_directory() {
    use std::io::{BufRead as _, BufReader};
    let scratch = Scratch::new("example-default-dir");
    let runtime = scratch.0.join("run-user");
    std::fs::create_dir(&runtime).unwrap();
    let mut child = Command::new(example_binary())
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .take_while(|l| !l.starts_with("Ctrl-C stops the server"))
        .collect();
    let dir = runtime.join("certbound-dev");
    assert_eq!(
        lines[0],
        format!(
            "certbound protected API — created dev material in {}",
            dir.display()
        )
    );
    assert_eq!(mode(&dir), 0o700);
    for secret in [
        "server.key",
        "client-a.key",
        "client-b.key",
        "client-self-signed.key",
        "jwt-signing.key",
        "token-a.jwt",
        "dpop-client.key",
        "token-dpop.jwt",
    ] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
}

#[test]
fn an_unsafe_dev_dir_is_refused_with_exit_2() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = Scratch::new("example-unsafe-dir");
    let dir = scratch.0.join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut child = Command::new(example_binary())
        .args(["--listen", "127.0.0.1:0", "--dev-dir"])
        .arg(&dir)
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must refuse at start-up; one that starts serving instead is killed, not waited for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example started with a 0777 --dev-dir instead of refusing it");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d = dir.display();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: refusing to use {d} for dev material: it is writable by group or others \
             (mode 0777); run `chmod 700 {d}`, or choose another directory (--dev-dir DIR)"
        )
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}
