//! Load benchmark: the example API over real mutual TLS, with HTTP/1.1 keep-alive connections
//! that present client A's certificate, against the same tokens through two peer middlewares.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-bench cargo run --release --example loadbench
//! ```
//!
//! One command: it builds `protected_api` (release) and the peer servers in `benches/peers`
//! (release, their own workspace), starts them on 127.0.0.1 only, and measures in ONE run,
//! alternating the variants in short rounds (the order rotates every round):
//!
//! * `health`        — `GET /health`, no authentication (the floor)
//! * `health_token`  — the same with the bearer token sent anyway (ignored): what carrying a
//!   ~500-byte token over TLS and HTTP costs before anyone looks at it
//! * `hello_cached`  — `GET /api/hello`, certificate-bound token, verified-token cache warm
//! * `hello_nocache` — the same against a second instance started with `--no-token-cache`
//! * `jwt_authorizer`, `tower_oauth2` — the same bearer token and JWKS through
//!   jwt-authorizer 0.15 (axum 0.7) and tower-oauth2-resource-server 0.12 (no binding check)
//!
//! It prints req/s, p50/p99 latency and the server's CPU time per request (summed over the
//! server's threads from `/proc/PID/task/*/schedstat`, which is less sensitive to a noisy
//! neighbour than throughput), the ratios, and then floods 100,000 distinct valid tokens at the
//! cached and uncached instances (peak RSS of the server before and after) and through an
//! in-process layer (peak RSS and `token_cache_stats()`).
//!
//! Flags: `--secs S` per round and variant (default 3), `--rounds N` (5), `--connections C` (8),
//! `--flood N` (100000; 0 skips).
//! Everything is bounded in time and count and stops by itself; the servers are killed on exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certbound::{CertBound, StaticJwks, TokenCacheConfig};
use certbound_core::{Algorithm, ClientCertificate, Thumbprint};
use certbound_dev::{bound_claims, jwks_document, SigningKey};
use clap::Parser;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

const AUDIENCE: &str = "https://api.example";

#[derive(Debug, Parser)]
#[command(
    name = "loadbench",
    about = "certbound load benchmark (127.0.0.1 only)"
)]
struct Opts {
    /// Seconds per variant per round.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Rounds; every round runs every variant once, in rotating order.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Keep-alive connections per variant (each sends one request at a time).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Run only these variants (comma-separated names, e.g. `health,hello_cached`); for profiling.
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Distinct valid tokens in the memory flood (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    flood: usize,
    /// Internal: run the in-process memory flood in this (fresh) process and print one JSON line.
    #[arg(long, hide = true, value_parser = ["cached", "nocache", "bytes"])]
    rss_child: Option<String>,
}

fn main() -> Result<(), Error> {
    let opts = Opts::parse();
    if let Some(mode) = &opts.rss_child {
        return rss_child(mode, opts.flood);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let api_exe = build(&root, &["--example", "protected_api"], "protected_api")?;
    let peers_manifest = root.join("benches/peers/Cargo.toml");
    let manifest = peers_manifest.to_string_lossy().into_owned();
    let peers_exe = build(&root, &["--manifest-path", &manifest], "peers")?;
    let started = Instant::now();

    let dev_dir = std::env::temp_dir().join(format!("certbound-loadbench-{}", std::process::id()));
    let _cleanup = RemoveDir(dev_dir.clone());
    certbound_dev::private_dir(&dev_dir)?; // mode 0700: it will hold private keys

    // The cached instance first: it creates the dev material the others reuse.
    let cached = Server::api(&api_exe, &dev_dir, false)?;
    let nocache = Server::api(&api_exe, &dev_dir, true)?;
    let material = Material::load(&dev_dir)?;
    let issuer_b = cached
        .issuer
        .clone()
        .ok_or("no issuer line from protected_api")?;
    let issuer_c = nocache
        .issuer
        .clone()
        .ok_or("no issuer line from protected_api")?;
    let token_b = material.token(&issuer_b, "bench")?;
    let token_c = material.token(&issuer_c, "bench")?;
    let jwks_path = dev_dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks_document(&[&material.signer]).to_string())?;
    let peers = Server::peers(&peers_exe, &dev_dir, &jwks_path, &issuer_b)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(material.connector())?;
    let addr = |s: &Server, name: &str| s.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
    let targets = vec![
        Target::new(
            "health",
            "(a) /health, no auth",
            addr(&cached, "api"),
            "/health",
            None,
            cached.pid(),
        ),
        Target::new(
            "health_token",
            "(a') /health, no auth, same Authorization header sent (ignored)",
            addr(&cached, "api"),
            "/health",
            Some(&token_b),
            cached.pid(),
        ),
        Target::new(
            "hello_cached",
            "(b) /api/hello, bound token, cache warm",
            addr(&cached, "api"),
            "/api/hello",
            Some(&token_b),
            cached.pid(),
        ),
        Target::new(
            "hello_nocache",
            "(c) /api/hello, bound token, --no-token-cache",
            addr(&nocache, "api"),
            "/api/hello",
            Some(&token_c),
            nocache.pid(),
        ),
        Target::new(
            "jwt_authorizer",
            "(d1) jwt-authorizer 0.15, same token (no binding)",
            addr(&peers, "jwt-authorizer"),
            "/api/hello",
            Some(&token_b),
            peers.pid(),
        ),
        Target::new(
            "tower_oauth2",
            "(d2) tower-oauth2-resource-server 0.12, same token (no binding)",
            addr(&peers, "tower-oauth2-resource-server"),
            "/api/hello",
            Some(&token_b),
            peers.pid(),
        ),
    ];
    let mut targets: Vec<Target> = targets.into_iter().collect::<Result<_, _>>()?;
    if !opts.variants.is_empty() {
        targets.retain(|t| opts.variants.iter().any(|v| v == t.name));
    }
    eprintln!(
        "servers: protected_api pid {} (cache), pid {} (--no-token-cache); peers pid {}",
        cached.pid(),
        nocache.pid(),
        peers.pid()
    );

    runtime.block_on(run(&opts, &client, &targets, &material, &cached, &issuer_b))?;
    drop((cached, nocache, peers));

    if opts.flood > 0 {
        println!(
            "\n## In-process flood: {} distinct tokens through CertBoundLayer::verify\n",
            opts.flood
        );
        println!("| layer | VmHWM before | VmHWM after | growth | cache entries | cache bytes (weighed) | time |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for mode in ["cached", "bytes", "nocache"] {
            let out = Command::new(std::env::current_exe()?)
                .args(["--rss-child", mode, "--flood", &opts.flood.to_string()])
                .stderr(Stdio::inherit())
                .output()?;
            let line = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(line.trim())?;
            let kib = |k: &str| v[k].as_u64().unwrap_or(0);
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.1} s |",
                match mode {
                    "cached" => "default (10,000 entries / 32 MiB)",
                    "bytes" => "1,000,000 entries / 16 MiB (bytes decide)",
                    _ => "no_token_cache()",
                },
                mib(kib("hwm_before_kib")),
                mib(kib("hwm_after_kib")),
                mib(kib("hwm_after_kib").saturating_sub(kib("hwm_before_kib"))),
                v["entries"],
                v["bytes"],
                v["secs"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!(
        "\nloadbench finished in {:.0} s (excluding builds: see above)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    opts: &Opts,
    client: &TlsConnector,
    targets: &[Target],
    material: &Material,
    cached: &Server,
    issuer_b: &str,
) -> Result<(), Error> {
    let t0 = Instant::now();
    // Open every connection once (the handshake is not what is measured), check every variant.
    let mut pools = Vec::new();
    for t in targets {
        let mut conns = Vec::new();
        for _ in 0..opts.connections {
            conns.push(connect(client, t.addr).await?);
        }
        let status = request(&mut conns[0], t.path, t.auth.as_ref()).await?;
        if status != StatusCode::OK {
            return Err(format!("{}: expected 200, got {status}", t.name).into());
        }
        if let (Some(auth), true) = (&t.auth, t.path != "/health") {
            // The layer really validates: a token with a broken signature is refused.
            let bad = tamper(auth);
            let status = request(&mut conns[0], t.path, Some(&bad)).await?;
            if status != StatusCode::UNAUTHORIZED {
                return Err(
                    format!("{}: a tampered token got {status}, expected 401", t.name).into(),
                );
            }
        }
        pools.push(conns);
    }
    println!("\ncertbound loadbench — {} connections/variant, HTTP/1.1 keep-alive over mTLS (client A), {} rounds x {} s, order rotating", opts.connections, opts.rounds, opts.secs);
    println!(
        "machine: {} CPUs ({}), load average at start: {}",
        cpus(),
        cpu_model(),
        loadavg()
    );

    // Warm-up: one short pass per variant.
    for (t, conns) in targets.iter().zip(pools.iter_mut()) {
        drive(conns, t, Duration::from_secs_f64(opts.secs.min(1.0))).await;
    }
    let mut results: Vec<Vec<Round>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..opts.rounds {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            let r = drive(
                &mut pools[i],
                &targets[i],
                Duration::from_secs_f64(opts.secs),
            )
            .await;
            if r.errors > 0 {
                return Err(format!("{}: {} failed requests", targets[i].name, r.errors).into());
            }
            results[i].push(r);
        }
        eprintln!("round {}/{} done", round + 1, opts.rounds);
    }
    report(targets, &results);
    println!("\nload rounds took {:.0} s", t0.elapsed().as_secs_f64());

    if opts.flood > 0 {
        println!(
            "\n## HTTP flood: {} distinct valid tokens (client A, {} connections), server memory\n",
            opts.flood, opts.connections
        );
        println!(
            "| server | VmHWM before | VmHWM after | VmRSS after | growth of peak | req/s | time |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (name, server, issuer) in [(
            "protected_api (cache: 10,000 entries / 32 MiB)",
            cached,
            issuer_b,
        )] {
            let addr = server.addrs.first().ok_or("no address")?.1;
            let mut conns = Vec::new();
            for _ in 0..opts.connections {
                conns.push(connect(client, addr).await?);
            }
            let before = proc_status(server.pid());
            let t = Instant::now();
            let n = flood(&mut conns, material, issuer, opts.flood).await?;
            let secs = t.elapsed().as_secs_f64();
            let after = proc_status(server.pid());
            println!(
                "| {name} | {} | {} | {} | {} | {:.0} | {secs:.1} s |",
                mib(before.0),
                mib(after.0),
                mib(after.1),
                mib(after.0.saturating_sub(before.0)),
                n as f64 / secs
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- measurement

struct Round {
    requests: u64,
    errors: u64,
    secs: f64,
    server_cpu_ns: u64,
    client_cpu_ns: u64,
    latencies_ns: Vec<u64>,
}

/// Runs every connection of `conns` flat out for `dur`, one request in flight per connection.
async fn drive(conns: &mut [Conn], t: &Target, dur: Duration) -> Round {
    let server_cpu = task_cpu_ns(t.pid);
    let client_cpu = task_cpu_ns(std::process::id());
    let start = Instant::now();
    let deadline = start + dur;
    let work = conns.iter_mut().map(|conn| async move {
        let mut lat = Vec::with_capacity(16 * 1024);
        let mut errors = 0u64;
        while Instant::now() < deadline {
            let t0 = Instant::now();
            match request(conn, t.path, t.auth.as_ref()).await {
                Ok(StatusCode::OK) => lat.push(t0.elapsed().as_nanos() as u64),
                _ => errors += 1,
            }
        }
        (lat, errors)
    });
    let per_conn = futures_join_all(work).await;
    let secs = start.elapsed().as_secs_f64();
    let mut latencies_ns = Vec::new();
    let mut errors = 0;
    for (lat, e) in per_conn {
        latencies_ns.extend(lat);
        errors += e;
    }
    Round {
        requests: latencies_ns.len() as u64,
        errors,
        secs,
        server_cpu_ns: task_cpu_ns(t.pid).saturating_sub(server_cpu),
        client_cpu_ns: task_cpu_ns(std::process::id()).saturating_sub(client_cpu),
        latencies_ns,
    }
}

/// Polls all futures to completion on the current task (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}

struct Summary {
    round_rps: Vec<f64>,
    p50_us: f64,
    p99_us: f64,
    server_us_per_req: f64,
    client_us_per_req: f64,
}

fn summarize(rounds: &[Round]) -> Summary {
    let requests: u64 = rounds.iter().map(|r| r.requests).sum();
    let mut lat: Vec<u64> = rounds
        .iter()
        .flat_map(|r| r.latencies_ns.iter().copied())
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let server: u64 = rounds.iter().map(|r| r.server_cpu_ns).sum();
    let client: u64 = rounds.iter().map(|r| r.client_cpu_ns).sum();
    Summary {
        round_rps: rounds.iter().map(|r| r.requests as f64 / r.secs).collect(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        server_us_per_req: server as f64 / 1000.0 / requests.max(1) as f64,
        client_us_per_req: client as f64 / 1000.0 / requests.max(1) as f64,
    }
}

fn report(targets: &[Target], results: &[Vec<Round>]) {
    let s: Vec<Summary> = results.iter().map(|r| summarize(r)).collect();
    println!("\n| variant | req/s (median of rounds) | req/s per round (min–max) | p50 µs | p99 µs | server CPU µs/req | client CPU µs/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (t, s) in targets.iter().zip(&s) {
        let (lo, hi) = min_max(&s.round_rps);
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            t.label,
            median(&s.round_rps),
            lo,
            hi,
            s.p50_us,
            s.p99_us,
            s.server_us_per_req,
            s.client_us_per_req
        );
    }
    let idx = |name: &str| targets.iter().position(|t| t.name == name);
    let ratio = |a: &str, b: &str, target: Option<f64>| {
        let (Some(ia), Some(ib)) = (idx(a), idx(b)) else {
            return;
        };
        // Paired per round: both variants ran in the same round, so a neighbour's load that
        // comes and goes between rounds cancels out better than in the totals.
        let paired: Vec<f64> = s[ia]
            .round_rps
            .iter()
            .zip(&s[ib].round_rps)
            .map(|(x, y)| x / y)
            .collect();
        let (lo, hi) = min_max(&paired);
        let m = median(&paired);
        let cpu = s[ib].server_us_per_req / s[ia].server_us_per_req;
        let verdict = match target {
            Some(t) if m >= t && cpu >= t => format!("≥ {t}: met"),
            Some(t) if m >= t => format!("≥ {t}: met by req/s, not by server CPU"),
            Some(t) => format!("≥ {t}: MISSED"),
            None => "(info)".to_owned(),
        };
        println!("| {a} / {b} | {m:.2} | {lo:.2}–{hi:.2} | {cpu:.2} | {verdict} |");
    };
    println!("\n| ratio | req/s, median of per-round ratios | per round (min–max) | server CPU/req, inverse ratio | target |");
    println!("|---|---:|---:|---:|---|");
    ratio("hello_cached", "health", Some(0.9));
    ratio("health_token", "health", None);
    ratio("hello_cached", "health_token", None);
    ratio("hello_cached", "jwt_authorizer", Some(3.0));
    ratio("hello_cached", "tower_oauth2", Some(3.0));
    ratio("hello_nocache", "jwt_authorizer", None);
    ratio("hello_nocache", "tower_oauth2", None);
    ratio("hello_cached", "hello_nocache", None);
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// CPU time of every thread of `pid`, in nanoseconds (`/proc/PID/task/*/schedstat`).
fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// (VmHWM, VmRSS) of `pid` in KiB.
fn proc_status(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------- the memory flood

/// Sends `n` requests, each with a different valid token bound to client A, over `conns`.
async fn flood(
    conns: &mut [Conn],
    material: &Material,
    issuer: &str,
    n: usize,
) -> Result<usize, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let work = conns.iter_mut().map(|conn| {
        let next = Arc::clone(&next);
        async move {
            let mut ok = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<usize, Error>(ok);
                }
                let token = material.token(issuer, &format!("flood-{i}"))?;
                let auth = HeaderValue::from_str(&format!("Bearer {token}"))?;
                match request(conn, "/api/hello", Some(&auth)).await? {
                    StatusCode::OK => ok += 1,
                    other => return Err(format!("flood request {i}: {other}").into()),
                }
            }
        }
    });
    let mut total = 0;
    for r in futures_join_all(work).await {
        total += r?;
    }
    Ok(total)
}

/// In a fresh process: `n` distinct tokens through `CertBoundLayer::verify`; peak RSS before and
/// after, and what the cache holds. Prints one JSON line.
///
/// Modes: `cached` (the default limits: 10,000 entries / 32 MiB), `bytes` (1,000,000 entries /
/// 16 MiB, so the byte weights decide, not the per-entry minimum), `nocache` (the control).
fn rss_child(mode: &str, n: usize) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let iss = "https://issuer.example/";
        let signer = SigningKey::generate("k1", Algorithm::ES256)?;
        let pki = certbound_dev::DevCa::new("flood CA")?;
        let client = pki.client_cert("client-a", certbound_dev::KeyKind::EcP256)?;
        let tp: Thumbprint = *ClientCertificate::from_der(client.cert_der.to_vec()).thumbprint();
        let mut builder = CertBound::builder()
            .issuer(iss)
            .audience(AUDIENCE)
            .key_source(StaticJwks::from_jwks(
                jwks_document(&[&signer]).to_string(),
            )?);
        builder = match mode {
            "nocache" => builder.no_token_cache(),
            "bytes" => builder.token_cache(TokenCacheConfig {
                max_entries: 1_000_000,
                max_bytes: 16 * 1024 * 1024,
            }),
            _ => builder,
        };
        let layer = builder.build().await?;
        // One verification first, so lazily initialised state is in "before".
        let mut claims = bound_claims(iss, AUDIENCE, &tp);
        layer.verify(&signer.sign(&claims)?, Some(tp)).await?;
        let before = proc_status(std::process::id());
        let t = Instant::now();
        for i in 0..n {
            claims["jti"] = json!(format!("flood-{i}"));
            let token = signer.sign(&claims)?;
            layer.verify(&token, Some(tp)).await?;
        }
        let secs = t.elapsed().as_secs_f64();
        let after = proc_status(std::process::id());
        let stats = layer.token_cache_stats();
        println!(
            "{}",
            json!({
                "hwm_before_kib": before.0, "hwm_after_kib": after.0, "rss_after_kib": after.1,
                "entries": stats.map(|s| s.entries), "bytes": stats.map(|s| s.bytes), "secs": secs,
            })
        );
        Ok(())
    })
}

// ---------------------------------------------------------------- client

struct Target {
    name: &'static str,
    label: &'static str,
    addr: SocketAddr,
    path: &'static str,
    auth: Option<HeaderValue>,
    pid: u32,
}

impl Target {
    fn new(
        name: &'static str,
        label: &'static str,
        addr: Option<SocketAddr>,
        path: &'static str,
        token: Option<&str>,
        pid: u32,
    ) -> Result<Self, Error> {
        Ok(Self {
            name,
            label,
            addr: addr.ok_or_else(|| format!("{name}: no address"))?,
            path,
            auth: token
                .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                .transpose()?,
            pid,
        })
    }
}

type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(tls: &TlsConnector, addr: SocketAddr) -> Result<Conn, Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tls
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(
    conn: &mut Conn,
    path: &str,
    auth: Option<&HeaderValue>,
) -> Result<StatusCode, Error> {
    let mut req = Request::get(path).header(header::HOST, "localhost");
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    conn.ready().await?;
    let resp = conn.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

/// The same token with one character in the middle of its signature changed (still canonical
/// base64url, so it is refused for its signature, not its encoding).
fn tamper(auth: &HeaderValue) -> HeaderValue {
    let mut bytes = auth.as_bytes().to_vec();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    HeaderValue::from_bytes(&bytes).unwrap()
}

/// What the dev setup wrote: the issuer's signing key, client A, the CA.
struct Material {
    signer: SigningKey,
    thumbprint: Thumbprint,
    client_cert: CertificateDer<'static>,
    client_key_pem: String,
    ca_pem: String,
}

impl Material {
    fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let signer =
            SigningKey::from_pkcs8_pem("dev-1", Algorithm::ES256, &read("jwt-signing.key")?)?;
        let client_cert = CertificateDer::from_pem_slice(read("client-a.pem")?.as_bytes())?;
        let thumbprint = *ClientCertificate::from_der(client_cert.to_vec()).thumbprint();
        Ok(Self {
            signer,
            thumbprint,
            client_cert,
            client_key_pem: read("client-a.key")?,
            ca_pem: read("ca.pem")?,
        })
    }

    /// A token from `issuer` bound to client A; `jti` makes it distinct.
    fn token(&self, issuer: &str, jti: &str) -> Result<String, Error> {
        let mut claims = bound_claims(issuer, AUDIENCE, &self.thumbprint);
        claims["jti"] = json!(jti);
        Ok(self.signer.sign(&claims)?)
    }

    async fn connector(&self) -> Result<TlsConnector, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![self.client_cert.clone()],
                PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes())?,
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

// ---------------------------------------------------------------- servers

/// A server child process, killed (by its own pid) when dropped.
struct Server {
    child: Child,
    addrs: Vec<(String, SocketAddr)>,
    issuer: Option<String>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `protected_api` in dev mode on an ephemeral port; logs at `warn` so logging is not measured.
    fn api(exe: &Path, dev_dir: &Path, no_cache: bool) -> Result<Self, Error> {
        let mut cmd = Command::new(exe);
        cmd.args(["--listen", "127.0.0.1:0", "--dev-dir"])
            .arg(dev_dir);
        if no_cache {
            cmd.arg("--no-token-cache");
        }
        cmd.env("RUST_LOG", "warn");
        Self::start(cmd, |line, s| {
            if let Some(rest) = line.strip_prefix("listening on https://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                s.addrs.push(("api".into(), addr.parse().ok()?));
            }
            if line.starts_with("issuer (dev") {
                s.issuer = line.split_whitespace().last().map(str::to_owned);
            }
            (!s.addrs.is_empty() && s.issuer.is_some()).then_some(())
        })
    }

    fn peers(exe: &Path, dev_dir: &Path, jwks: &Path, issuer: &str) -> Result<Self, Error> {
        let mut cmd = Command::new(exe);
        cmd.arg("--dev-dir").arg(dev_dir).arg("--jwks").arg(jwks);
        cmd.args(["--issuer", issuer, "--audience", AUDIENCE]);
        cmd.env("RUST_LOG", "warn");
        Self::start(cmd, |line, s| {
            let (name, url) = line.split_once(' ')?;
            let addr = url.strip_prefix("https://")?.parse().ok()?;
            s.addrs.push((name.to_owned(), addr));
            (s.addrs.len() == 2).then_some(())
        })
    }

    /// Starts `cmd` and reads its stdout until `ready` says it has everything (60 s at most).
    fn start(
        mut cmd: Command,
        mut ready: impl FnMut(&str, &mut Server) -> Option<()>,
    ) -> Result<Self, Error> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut server = Server {
            child,
            addrs: Vec::new(),
            issuer: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout for the life of the child.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| format!("{:?} did not start in time", cmd.get_program()))?;
            if ready(&line, &mut server).is_some() {
                return Ok(server);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cargo build --release ARGS` and the path of the executable named `name`.
fn build(root: &Path, args: &[&str], name: &str) -> Result<PathBuf, Error> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(args);
    eprintln!("building {name} (release)…");
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("cargo build for {name} failed").into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo build did not report an executable for {name}").into())
}
