//! DPoP across replicas, over real sockets: the `protected_api` example run as two processes
//! that share a real Redis (Debian's `redis-server`, started here on a free loopback port) and a
//! nonce key file — as two replicas behind one load balancer would.
//!
//! - a proof is accepted once: a second use is refused by the same process and by the other;
//! - a nonce one replica issued is accepted by the other (and refused by a process with
//!   another key file);
//! - Redis killed mid-run → 503 with `Retry-After` and nothing accepted; Redis back → 200;
//! - a spoofed `X-Forwarded-Host` from an untrusted peer never changes `htu`;
//! - a bad nonce key file or an unreachable Redis stops the start-up with one line, exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certbound::Rejection;
use certbound_core::Algorithm;
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use certbound_dev::{jwks_document, DevPki, SigningKey};
use common::process::{
    example_binary, free_port, require_program, start_example, wait_for_port, Running,
};
use common::support;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.example";
/// What both replicas are configured with: the URL clients use (a load balancer's).
const PUBLIC_URL: &str = "https://api.example";

/// A scratch directory (mode 0700, as the example wants for dev material), removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("certbound-dpop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        certbound_dev::private_dir(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Redis server on `127.0.0.1:port`, without persistence; killed when dropped.
fn start_redis(port: u16) -> Running {
    let program = require_program("redis-server", "redis-server");
    let child = Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let running = Running(child);
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)));
    running
}

/// Everything the replicas share: the server certificate (a dev PKI in one directory), the
/// issuer's keys (a JWKS file) and, for nonces, one key file.
struct Shared {
    dir: Scratch,
    pki: DevPki,
    signer: SigningKey,
    jwks: PathBuf,
    nonce_keys: PathBuf,
}

impl Shared {
    fn new(tag: &str) -> Self {
        let dir = Scratch::new(tag);
        let (pki, _) = DevPki::load_or_create(&dir.0).unwrap();
        let signer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let jwks = dir.0.join("jwks.json");
        std::fs::write(&jwks, jwks_document(&[&signer]).to_string()).unwrap();
        let nonce_keys = dir.0.join("nonce-keys.txt");
        write_nonce_keys(&nonce_keys);
        Self {
            dir,
            pki,
            signer,
            jwks,
            nonce_keys,
        }
    }

    /// The arguments of one replica: TLS with the shared dev certificate, the issuer's keys
    /// from the file, DPoP with the public URL, plus `extra`.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--dev-dir",
            path(&self.dir.0),
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks-file",
            path(&self.jwks),
            "--dpop",
            "--public-url",
            PUBLIC_URL,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Starts a replica; returns it and its base URL (`https://localhost:PORT`).
    fn start(&self, extra: &[&str]) -> (Running, String) {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (running, lines) = start_example(&args, |l| l.starts_with("listening on"));
        let addr = listening_addr(&lines);
        (running, format!("https://localhost:{}", addr.port()))
    }

    fn client(&self) -> reqwest::Client {
        support::https_client(&self.pki.ca.cert_pem, None).unwrap()
    }

    /// A DPoP client key and a token bound to it.
    fn dpop_client(&self) -> (DpopKey, String) {
        let key = DpopKey::generate(Algorithm::ES256).unwrap();
        let token = self
            .signer
            .sign(&dpop_bound_claims(ISSUER, AUDIENCE, &key.jkt()))
            .unwrap();
        (key, token)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A nonce key file with one random 32-byte key in hex.
fn write_nonce_keys(file: &Path) {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut key)
        .unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(file, format!("# test nonce key\n{hex}\n")).unwrap();
}

/// The address from the example's "listening on https://ADDR …" line.
fn listening_addr(lines: &[String]) -> SocketAddr {
    let line = lines
        .iter()
        .find(|l| l.starts_with("listening on"))
        .unwrap_or_else(|| panic!("no listening line in:\n{}", lines.join("\n")));
    let rest = line.split("://").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// What one request got.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenges: Vec<String>,
    nonce: Option<String>,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    /// Asserts a 401 DPoP challenge with `error` and `rejection`'s description.
    fn assert_refused(&self, error: &str, rejection: &Rejection) {
        assert_eq!(self.status, 401, "{self:?}");
        let dpop = self
            .challenges
            .iter()
            .find(|c| c.starts_with("DPoP "))
            .unwrap_or_else(|| panic!("no DPoP challenge: {self:?}"));
        assert!(dpop.contains(&format!("error=\"{error}\"")), "{dpop}");
        assert!(
            dpop.contains(&format!(
                "error_description=\"{}\"",
                rejection.description()
            )),
            "want {}: {dpop}",
            rejection.code()
        );
        assert_eq!(self.body, "", "the route never ran");
    }
}

/// GET `url` with `Authorization: DPoP <token>` and `DPoP: <proof>`, and any `extra` headers.
async fn dpop_get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    proof: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = client
        .get(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let nonce = header("dpop-nonce");
    let retry_after = header("retry-after");
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    Answer {
        status: response.status().as_u16(),
        challenges,
        nonce,
        retry_after,
        body: response.text().await.unwrap(),
    }
}

/// The URL every proof names: the public URL's /api/hello.
fn htu() -> String {
    format!("{PUBLIC_URL}/api/hello")
}

/// A nonce from `base`: a proof without one is answered 401 use_dpop_nonce with a DPoP-Nonce.
async fn nonce_from(client: &reqwest::Client, base: &str, key: &DpopKey, token: &str) -> String {
    let proof = key.proof("GET", &htu(), Some(token), None).unwrap();
    let answer = dpop_get(client, &format!("{base}/api/hello"), token, &proof, &[]).await;
    answer.assert_refused("use_dpop_nonce", &Rejection::DpopNonceRequired);
    answer
        .nonce
        .expect("a DPoP-Nonce header with use_dpop_nonce")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_is_accepted_once_in_one_process_with_the_memory_store() {
    let shared = Shared::new("memory");
    let (_api, base) = shared.start(&[]); // no --replay-store: in memory
    let client = shared.client();
    let (key, token) = shared.dpop_client();
    let url = format!("{base}/api/hello");
    let proof = key.proof("GET", &htu(), Some(&token), None).unwrap();

    let first = dpop_get(&client, &url, &token, &proof, &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = dpop_get(&client, &url, &token, &proof, &[]).await;
    again.assert_refused("invalid_dpop_proof", &Rejection::DpopProofReplayed);
    // A fresh proof from the same client is fine: only the proof was used up.
    let fresh = key.proof("GET", &htu(), Some(&token), None).unwrap();
    assert_eq!(
        dpop_get(&client, &url, &token, &fresh, &[]).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_accepted_by_one_replica_is_refused_by_both() {
    let redis_port = free_port();
    let _redis = start_redis(redis_port);
    let store = format!("redis://127.0.0.1:{redis_port}");
    let shared = Shared::new("replay");
    let (_a, a) = shared.start(&["--replay-store", &store]);
    let (_b, b) = shared.start(&["--replay-store", &store]);
    let client = shared.client();
    let (key, token) = shared.dpop_client();
    let proof = key.proof("GET", &htu(), Some(&token), None).unwrap();

    let at_a = dpop_get(&client, &format!("{a}/api/hello"), &token, &proof, &[]).await;
    assert_eq!(at_a.status, 200, "{at_a:?}");
    assert!(at_a.body.contains("user-123"), "{}", at_a.body);
    // Replayed to the other replica, and to the same one: refused by both.
    let at_b = dpop_get(&client, &format!("{b}/api/hello"), &token, &proof, &[]).await;
    at_b.assert_refused("invalid_dpop_proof", &Rejection::DpopProofReplayed);
    let at_a = dpop_get(&client, &format!("{a}/api/hello"), &token, &proof, &[]).await;
    at_a.assert_refused("invalid_dpop_proof", &Rejection::DpopProofReplayed);

    // The other way round, with a new proof first used at B.
    let proof = key.proof("GET", &htu(), Some(&token), None).unwrap();
    let at_b = dpop_get(&client, &format!("{b}/api/hello"), &token, &proof, &[]).await;
    assert_eq!(at_b.status, 200, "{at_b:?}");
    let at_a = dpop_get(&client, &format!("{a}/api/hello"), &token, &proof, &[]).await;
    at_a.assert_refused("invalid_dpop_proof", &Rejection::DpopProofReplayed);

    // What the replicas wrote: one key per accepted proof, under the default prefix, with a TTL.
    let cli = require_program("redis-cli", "redis-server");
    let out = Command::new(&cli)
        .args(["-p", &redis_port.to_string(), "--scan", "--pattern", "*"])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert!(k.starts_with("certbound:dpop:"), "{k}");
        assert_eq!(k.len(), "certbound:dpop:".len() + 64, "{k}");
        let ttl = Command::new(&cli)
            .args(["-p", &redis_port.to_string(), "PTTL", k])
            .output()
            .unwrap();
        let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
        // The acceptance window: iat ± 60 s, plus a second.
        assert!(ttl > 0 && ttl <= 121_000, "{k}: PTTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_from_one_replica_is_accepted_by_the_other() {
    let redis_port = free_port();
    let _redis = start_redis(redis_port);
    let store = format!("redis://127.0.0.1:{redis_port}");
    let shared = Shared::new("nonce");
    let keys = path(&shared.nonce_keys).to_owned();
    let (_a, a) = shared.start(&["--replay-store", &store, "--dpop-nonce-key", &keys]);
    let (_b, b) = shared.start(&["--replay-store", &store, "--dpop-nonce-key", &keys]);
    let client = shared.client();
    let (key, token) = shared.dpop_client();

    let nonce = nonce_from(&client, &a, &key, &token).await;
    let proof = key
        .proof("GET", &htu(), Some(&token), Some(&nonce))
        .unwrap();
    let at_b = dpop_get(&client, &format!("{b}/api/hello"), &token, &proof, &[]).await;
    assert_eq!(at_b.status, 200, "{at_b:?}");

    // A process with another nonce key does not accept it.
    let other = Scratch::new("nonce-other");
    let other_keys = other.0.join("keys.txt");
    write_nonce_keys(&other_keys);
    let (_c, c) = shared.start(&["--dpop-nonce-key", path(&other_keys)]);
    let proof = key
        .proof("GET", &htu(), Some(&token), Some(&nonce))
        .unwrap();
    let at_c = dpop_get(&client, &format!("{c}/api/hello"), &token, &proof, &[]).await;
    at_c.assert_refused("use_dpop_nonce", &Rejection::DpopNonceRequired);
    assert!(at_c.nonce.is_some(), "{at_c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_is_503_and_nothing_accepted_then_back_is_200() {
    let redis_port = free_port();
    let redis = start_redis(redis_port);
    let store = format!("redis://127.0.0.1:{redis_port}");
    let shared = Shared::new("outage");
    let (_a, a) = shared.start(&["--replay-store", &store]);
    let client = shared.client();
    let (key, token) = shared.dpop_client();
    let url = format!("{a}/api/hello");

    let used = key.proof("GET", &htu(), Some(&token), None).unwrap();
    assert_eq!(
        dpop_get(&client, &url, &token, &used, &[]).await.status,
        200
    );

    drop(redis); // SIGKILL, and wait for it to exit
    for proof in [
        key.proof("GET", &htu(), Some(&token), None).unwrap(),
        key.proof("GET", &htu(), Some(&token), None).unwrap(),
        used.clone(), // a replay is not accepted either
    ] {
        let answer = dpop_get(&client, &url, &token, &proof, &[]).await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
        assert_eq!(answer.body, "", "the route never ran");
    }

    // Redis back on the same port (empty: no persistence): fresh proofs are accepted again once
    // the replica has reconnected.
    let _redis = start_redis(redis_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let proof = key.proof("GET", &htu(), Some(&token), None).unwrap();
        let answer = dpop_get(&client, &url, &token, &proof, &[]).await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(
            Instant::now() < deadline,
            "still {answer:?} 30 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And replays are refused again.
    let proof = key.proof("GET", &htu(), Some(&token), None).unwrap();
    assert_eq!(
        dpop_get(&client, &url, &token, &proof, &[]).await.status,
        200
    );
    dpop_get(&client, &url, &token, &proof, &[])
        .await
        .assert_refused("invalid_dpop_proof", &Rejection::DpopProofReplayed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_forwarded_host_from_an_untrusted_peer_never_changes_htu() {
    // Plain HTTP behind a proxy at 127.0.0.1 (trusted); 127.0.0.2 plays a client reaching the
    // API directly. No --public-url: htu comes from the request.
    let shared = Shared::new("spoof");
    let (_api, lines) = start_example(
        &[
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
            "--client-cert-header",
            "nginx:X-SSL-Client-Cert",
            "--trusted-proxy",
            "127.0.0.1/32",
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks-file",
            path(&shared.jwks),
            "--dpop",
        ],
        |l| l.starts_with("listening on"),
    );
    let addr = listening_addr(&lines);
    let url = format!("http://{addr}/api/hello");
    let direct = format!("http://{addr}/api/hello"); // what the request really names
    let spoofed = "https://evil.example/api/hello";
    let headers = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "proto=https;host=evil.example"),
    ];
    let (key, token) = shared.dpop_client();
    let untrusted = support::http_client_from([127, 0, 0, 2].into()).unwrap();
    let proxy = support::http_client_from([127, 0, 0, 1].into()).unwrap();

    // From the untrusted peer, a proof for the spoofed host is refused…
    let proof = key.proof("GET", spoofed, Some(&token), None).unwrap();
    dpop_get(&untrusted, &url, &token, &proof, &headers)
        .await
        .assert_refused("invalid_dpop_proof", &Rejection::DpopUriMismatch);
    // …and one for the URL it really sent to is accepted, headers or not.
    let proof = key.proof("GET", &direct, Some(&token), None).unwrap();
    let answer = dpop_get(&untrusted, &url, &token, &proof, &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // The same headers from the trusted proxy do name the client-facing URL.
    let proof = key.proof("GET", spoofed, Some(&token), None).unwrap();
    let answer = dpop_get(&proxy, &url, &token, &proof, &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let proof = key.proof("GET", &direct, Some(&token), None).unwrap();
    dpop_get(&proxy, &url, &token, &proof, &headers)
        .await
        .assert_refused("invalid_dpop_proof", &Rejection::DpopUriMismatch);
}

#[test]
fn a_bad_nonce_key_file_or_unreachable_redis_stops_the_start_with_one_line() {
    let scratch = Scratch::new("startup");
    let dev = scratch.0.join("dev");
    let garbage = scratch.0.join("garbage.txt");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let port = free_port(); // nothing listens there
    let redis = format!("redis://:hunter2@127.0.0.1:{port}");
    let cases: [(Vec<&str>, String); 3] = [
        (
            vec!["--dpop-nonce-key", "/nonexistent/nonce-keys.txt"],
            "error: --dpop-nonce-key /nonexistent/nonce-keys.txt: ".to_owned(),
        ),
        (
            vec!["--dpop-nonce-key", path(&garbage)],
            format!(
                "error: --dpop-nonce-key {}: DPoP nonce key on line 1 is not 32 bytes in hex or base64",
                garbage.display()
            ),
        ),
        (
            vec!["--replay-store", &redis],
            format!("error: --replay-store: cannot reach Redis at redis://:***@127.0.0.1:{port}: "),
        ),
    ];
    for (flags, want) in cases {
        let out = Command::new(example_binary())
            .args(["--listen", "127.0.0.1:0", "--dev-dir", path(&dev)])
            .args(&flags)
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.starts_with(&want), "{flags:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
