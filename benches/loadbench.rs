//! Load benchmark: what certbound costs per request over real mutual TLS, with HTTP/1.1
//! keep-alive connections that present client A's certificate.
//!
//! ```text
//! cargo bench --bench loadbench                      # the whole run (~3 min after builds)
//! cargo bench --bench loadbench -- --no-peers        # certbound's own variants only
//! ```
//!
//! One command: it starts its own API server (this executable, in a child process: the example
//! API's `/health` and `/api/hello`, plus the open twin below), builds the peer servers in
//! `benches/peers` (release, their own workspace and lock file), starts everything on 127.0.0.1
//! only, and measures in ONE run, alternating the variants in short rounds (the order rotates
//! every round):
//!
//! * `health`        — `GET /health`, no authentication (the floor)
//! * `health_token`  — the same with the bearer token sent anyway (ignored)
//! * `open_twin`     — `GET /open/hello`: the **same handler** as `/api/hello` (same JSON body),
//!   the same request (token header included), but no certbound layer: the baseline for
//!   "what certbound costs"
//! * `hello_cached`  — `GET /api/hello`, certificate-bound token, verified-token cache warm
//! * `hello_opaque`  — `GET /api/hello` on the same server with an **opaque** token bound to the
//!   same certificate (issue 13): introspected once at the dev issuer (RFC 7662), then answered
//!   from the introspection cache
//! * `hello_nocache` — the same against a second server built with `no_token_cache()`
//! * `jwt_authorizer`, `tower_oauth2` — the same bearer token and JWKS through
//!   jwt-authorizer 0.15 (axum 0.7) and tower-oauth2-resource-server 0.12 (no binding check)
//! * `hello_dpop`    — `GET /api/hello` with `Authorization: DPoP <token>` (a token bound to an
//!   ES256 DPoP key by `cnf.jkt`, verified-token cache warm) and a fresh proof per request,
//!   against a third server with DPoP on (`Dpop::default()`: in-memory replay store). Proofs are
//!   made by the client **before** each round (a batch of 2 × the previous round's count), so
//!   signing them is not in the measured client CPU; a proof made inline when a batch runs out
//!   is counted and reported
//! * `hello_dpop_redis` — the same against a fourth server whose replay store is Redis
//!   (`--replay-store redis://HOST:PORT`, only when given; `--redis-pid PID` adds that
//!   redis-server's CPU per request to the report)
//! * `huskarl_dpop`  — the **same token** (`DPoP`, same key) and the same kind of fresh proof
//!   per request (same key, `htu`, `ath`) through huskarl-resource-server 0.11
//!   (`Rfc9068Validator`, huskarl-axum's `ValidatorLayer`, an in-memory `jti` set) in the peers
//!   process; it must answer 200, a replayed proof 401 and a tampered token 401 like (e)
//!
//! * `--sidecar` (a separate run): `certbound serve --upstream` (release build of the CLI;
//!   bound token, verified-token cache warm) in front of a trivial upstream (this executable,
//!   `GET` → a small JSON body) vs Debian nginx doing the same mutual-TLS termination and
//!   `proxy_pass` (keep-alive upstream pool) with no token check: `sidecar_certbound` /
//!   `sidecar_nginx` (goal ≥ 0.8). nginx runs with `worker_processes auto` (master + workers;
//!   their CPU is summed), certbound with tokio's default workers. `--sidecar-baseline BIN`
//!   adds a third variant, `sidecar_certbound_before`, running another `certbound` binary
//!   (e.g. a build of the previous commit) the same way: a before/after ratio in one run. Use
//!   `--secs 2` with it: three 3-s variants leave each one's connections idle past the
//!   server's 10-s header-read timeout, which closes them (the run then fails).
//!
//! It prints req/s, p50/p99 latency and the server's CPU time per request (summed over the
//! server's threads from `/proc/PID/task/*/schedstat`, which is less sensitive to a noisy
//! neighbour than throughput), the ratios (medians of per-round ratios), writes an SVG chart and
//! the tables to `target/loadbench/` (the paths are printed), and then floods 100,000 distinct
//! valid tokens at the cached server (peak RSS before and after) and through an in-process
//! layer (peak RSS and `token_cache_stats()`).
//!
//! Flags (after `--`): `--secs S` per round and variant (default 3), `--rounds N` (5),
//! `--connections C` (8), `--flood N` (100000; 0 skips), `--no-peers`, `--variants a,b` (for
//! profiling; the server pids are printed on stderr), `--out DIR`, `--no-dpop` (skip the DPoP
//! variants), `--replay-store redis://HOST:PORT` and `--redis-pid PID` (the Redis variant),
//! `--dpop-flood N` (100000; distinct valid proofs at the DPoP server, its RSS before and after;
//! 0 skips), and the in-process replay store filled past its bound (`--flood` > 0).
//!
//! Without `--bench` (which `cargo bench` passes), e.g. under `cargo test --benches`, it runs a
//! quick check instead: every variant of certbound's own servers answers 200, a tampered token
//! 401, the twin's body equals the protected route's; one short round; the chart is written.
//! Everything is bounded in time and count and stops by itself; the servers are killed on exit
//! (and exit on their own when this process goes away).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Json, Router};
use certbound::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use certbound::tls::{server_config, ClientAuth, PeerCertificate, TlsListener};
use certbound::{CertBound, CertBoundLayer, Dpop, StaticJwks, TokenCacheConfig, VerifiedToken};
use certbound_core::{Algorithm, ClientCertificate, Thumbprint};
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use certbound_dev::issuer::{ClientAuthMethod, TestIssuer};
use certbound_dev::{bound_claims, jwks_document, DevPki, SigningKey};
use clap::Parser;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

type Error = Box<dyn std::error::Error + Send + Sync>;

const AUDIENCE: &str = "https://api.example";

#[derive(Debug, Parser)]
#[command(
    name = "loadbench",
    about = "certbound load benchmark (127.0.0.1 only): cargo bench --bench loadbench -- [FLAGS]"
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
    /// Run only these variants (comma-separated names, e.g. `open_twin,hello_cached`).
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Distinct valid tokens in the memory flood (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    flood: usize,
    /// Skip jwt-authorizer and tower-oauth2-resource-server (their first build takes minutes).
    #[arg(long)]
    no_peers: bool,
    /// Where the chart and the tables go (default: TARGET_DIR/loadbench).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`: the real run. Without it, a quick check (see the file's docs).
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run the in-process memory flood in this (fresh) process and print one JSON line.
    #[arg(long, hide = true, value_parser = ["cached", "nocache", "bytes", "replay"])]
    rss_child: Option<String>,
    /// Internal: be the API server, with the dev material in this directory.
    #[arg(long, hide = true)]
    serve_child: Option<PathBuf>,
    /// Internal, with `--serve-child`: switch the verified-token cache off.
    #[arg(long, hide = true)]
    no_token_cache: bool,
    /// Skip the DPoP variants.
    #[arg(long)]
    no_dpop: bool,
    /// Also measure DPoP with this Redis as the replay store (`redis://HOST:PORT`).
    /// With `--serve-child`: the server's replay store.
    #[arg(long)]
    replay_store: Option<String>,
    /// The redis-server's pid, to report its CPU per request.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Distinct valid DPoP proofs sent to the DPoP server for its memory (0 skips).
    #[arg(long, default_value_t = 100_000)]
    dpop_flood: usize,
    /// Internal, with `--serve-child`: DPoP on.
    #[arg(long, hide = true)]
    dpop: bool,
    /// Only the sidecar comparison: `certbound serve --upstream` vs nginx proxy_pass.
    #[arg(long)]
    sidecar: bool,
    /// With `--sidecar`: also run this `certbound` binary (e.g. a build of the previous commit)
    /// as the variant `sidecar_certbound_before`, for a before/after ratio in the same run.
    #[arg(long)]
    sidecar_baseline: Option<PathBuf>,
    /// Internal: be the trivial upstream for `--sidecar`.
    #[arg(long, hide = true)]
    upstream_child: bool,
}

fn main() -> Result<(), Error> {
    let mut opts = Opts::parse();
    if let Some(mode) = &opts.rss_child {
        return rss_child(mode, opts.flood);
    }
    if opts.upstream_child {
        return upstream_child();
    }
    if let Some(dir) = &opts.serve_child {
        return serve_child(
            dir,
            opts.no_token_cache,
            opts.dpop,
            opts.replay_store.as_deref(),
        );
    }
    if !opts.bench {
        eprintln!("loadbench: no --bench flag (not run by `cargo bench`): quick check only");
        opts.rounds = 1;
        opts.secs = 0.3;
        opts.connections = opts.connections.min(2);
        opts.flood = 0;
        opts.dpop_flood = 0;
        opts.no_peers = true;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("loadbench"));
    std::fs::create_dir_all(&out_dir)?;
    if opts.sidecar {
        let out_dir = out_dir.join("sidecar");
        std::fs::create_dir_all(&out_dir)?;
        return sidecar(&opts, &root, &out_dir);
    }
    let peers_exe = if opts.no_peers {
        None
    } else {
        let manifest = root.join("benches/peers/Cargo.toml");
        let manifest = manifest.to_string_lossy().into_owned();
        // Its own target directory: no lock shared with the `cargo bench` that runs us.
        let peers_target = out_dir.join("peers-target");
        let peers_target = peers_target.to_string_lossy().into_owned();
        Some(build(
            &root,
            &["--manifest-path", &manifest, "--target-dir", &peers_target],
            "peers",
        )?)
    };
    let started = Instant::now();

    let dev_dir = std::env::temp_dir().join(format!("certbound-loadbench-{}", std::process::id()));
    let _cleanup = RemoveDir(dev_dir.clone());
    certbound_dev::private_dir(&dev_dir)?; // mode 0700: it will hold private keys
                                           // Dev material first (the servers load it): certificates and the issuer's signing key.
    DevPki::load_or_create(&dev_dir)?;
    let signer = SigningKey::generate("dev-1", Algorithm::ES256)?;
    certbound_dev::write_private(
        &dev_dir.join("jwt-signing.key"),
        signer.pkcs8_pem().as_bytes(),
    )?;

    let cached = Server::api(&dev_dir, false, None)?;
    let nocache = Server::api(&dev_dir, true, None)?;
    let dpop = if opts.no_dpop {
        None
    } else {
        Some(Server::api(&dev_dir, false, Some(None))?)
    };
    let dpop_redis = match (&opts.replay_store, opts.no_dpop) {
        (Some(url), false) => Some(Server::api(&dev_dir, false, Some(Some(url)))?),
        _ => None,
    };
    let material = Material::load(&dev_dir)?;
    let issuer_b = cached
        .issuer
        .clone()
        .ok_or("no issuer line from the API server")?;
    let issuer_c = nocache
        .issuer
        .clone()
        .ok_or("no issuer line from the API server")?;
    let token_b = material.token(&issuer_b, "bench")?;
    let token_c = material.token(&issuer_c, "bench")?;
    let peers = match &peers_exe {
        Some(exe) => {
            let jwks_path = dev_dir.join("jwks.json");
            std::fs::write(&jwks_path, jwks_document(&[&material.signer]).to_string())?;
            // huskarl's DPoP route takes the tokens of certbound's DPoP server's issuer, so
            // both DPoP routes get the very same token.
            let dpop_issuer = dpop.as_ref().and_then(|d| d.issuer.as_deref());
            Some(Server::peers(
                exe,
                &dev_dir,
                &jwks_path,
                &issuer_b,
                dpop_issuer,
            )?)
        }
        None => None,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(material.connector())?;
    let addr = |s: &Server, name: &str| s.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
    let mut targets = vec![
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
            "(a') /health + the same Authorization header (ignored)",
            addr(&cached, "api"),
            "/health",
            Some(&token_b),
            cached.pid(),
        ),
        Target::new(
            "open_twin",
            "(o) /open/hello: same handler, same request, no layer",
            addr(&cached, "api"),
            "/open/hello",
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
            "hello_opaque",
            "(b') /api/hello, opaque bound token, introspection cache warm",
            addr(&cached, "api"),
            "/api/hello",
            cached.opaque.as_deref(),
            cached.pid(),
        ),
        Target::new(
            "hello_nocache",
            "(c) /api/hello, bound token, no_token_cache()",
            addr(&nocache, "api"),
            "/api/hello",
            Some(&token_c),
            nocache.pid(),
        ),
    ];
    if let Some(peers) = &peers {
        targets.push(Target::new(
            "jwt_authorizer",
            "(d1) jwt-authorizer 0.15 (no binding)",
            addr(peers, "jwt-authorizer"),
            "/api/hello",
            Some(&token_b),
            peers.pid(),
        ));
        targets.push(Target::new(
            "tower_oauth2",
            "(d2) tower-oauth2-resource-server 0.12 (no binding)",
            addr(peers, "tower-oauth2-resource-server"),
            "/api/hello",
            Some(&token_b),
            peers.pid(),
        ));
    }
    let dpop_key = DpopKey::generate(Algorithm::ES256)?;
    let mut dpop_token = None;
    for (server, name, label) in [
        (
            &dpop,
            "hello_dpop",
            "(e) /api/hello, DPoP token + proof (memory replay store)",
        ),
        (
            &dpop_redis,
            "hello_dpop_redis",
            "(f) /api/hello, DPoP (Redis replay store)",
        ),
    ] {
        let Some(server) = server else { continue };
        let issuer = server.issuer.clone().ok_or("no issuer line")?;
        let token = material
            .signer
            .sign(&dpop_bound_claims(&issuer, AUDIENCE, &dpop_key.jkt()))?;
        let mut t = Target::new(
            name,
            label,
            addr(server, "api"),
            "/api/hello",
            None,
            server.pid(),
        )?;
        t.auth = Some(HeaderValue::from_str(&format!("DPoP {token}"))?);
        t.dpop = Some(DpopProofs::new(
            dpop_key.clone(),
            "https://localhost/api/hello",
            token.clone(),
        ));
        if name == "hello_dpop_redis" {
            t.extra_pid = opts.redis_pid;
        } else {
            dpop_token = Some(token);
        }
        targets.push(Ok(t));
    }
    if let (Some(peers), Some(token)) = (&peers, &dpop_token) {
        // The same token and the same kind of proof as (e), at huskarl's DPoP route.
        let mut t = Target::new(
            "huskarl_dpop",
            "(g) huskarl-resource-server 0.11, DPoP token + proof (memory jti set)",
            addr(peers, "huskarl-dpop"),
            "/api/hello",
            None,
            peers.pid(),
        )?;
        t.auth = Some(HeaderValue::from_str(&format!("DPoP {token}"))?);
        t.dpop = Some(DpopProofs::new(
            dpop_key.clone(),
            "https://localhost/api/hello",
            token.clone(),
        ));
        targets.push(Ok(t));
    }
    let mut targets: Vec<Target> = targets.into_iter().collect::<Result<_, _>>()?;
    if !opts.variants.is_empty() {
        targets.retain(|t| opts.variants.iter().any(|v| v == t.name));
    }
    eprintln!(
        "servers: API pid {} (cache), pid {} (no_token_cache), DPoP pid {:?} (memory) {:?} (redis); peers pid {}",
        cached.pid(),
        nocache.pid(),
        dpop.as_ref().map(Server::pid),
        dpop_redis.as_ref().map(Server::pid),
        peers
            .as_ref()
            .map_or_else(|| "- (skipped)".to_owned(), |p| p.pid().to_string())
    );

    let mut markdown = runtime.block_on(run(
        &opts, &client, &targets, &material, &cached, &issuer_b, &out_dir,
    ))?;
    drop((cached, nocache, peers, dpop, dpop_redis));
    if !opts.no_dpop && opts.dpop_flood > 0 {
        // A fresh DPoP server (memory replay store): the rounds' proofs are not in its store.
        let server = Server::api(&dev_dir, false, Some(None))?;
        let issuer = server.issuer.clone().ok_or("no issuer line")?;
        let token = material
            .signer
            .sign(&dpop_bound_claims(&issuer, AUDIENCE, &dpop_key.jkt()))?;
        let mut target = Target::new(
            "dpop_flood",
            "DPoP flood",
            addr(&server, "api"),
            "/api/hello",
            None,
            server.pid(),
        )?;
        target.auth = Some(HeaderValue::from_str(&format!("DPoP {token}"))?);
        target.dpop = Some(DpopProofs::new(
            dpop_key.clone(),
            "https://localhost/api/hello",
            token,
        ));
        let md = runtime.block_on(dpop_flood(&opts, &client, &server, &target))?;
        print!("{md}");
        markdown += &md;
    }

    if opts.flood > 0 {
        let mut md = String::new();
        md += &format!(
            "\n## In-process flood: {} distinct tokens through CertBoundLayer::verify\n\n",
            opts.flood
        );
        md += "| layer | VmHWM before | VmHWM after | growth | cache entries | cache bytes (weighed) | time |\n";
        md += "|---|---:|---:|---:|---:|---:|---:|\n";
        for mode in ["cached", "bytes", "nocache", "replay"] {
            let out = Command::new(std::env::current_exe()?)
                .args(["--rss-child", mode, "--flood", &opts.flood.to_string()])
                .stderr(Stdio::inherit())
                .output()?;
            let line = String::from_utf8_lossy(&out.stdout);
            let v: Value = serde_json::from_str(line.trim())?;
            if mode == "replay" {
                md += &format!("\nDPoP replay store in process (`MemoryReplayStore::default()`, 1,000,000 entries per generation): {v}\n");
                continue;
            }
            let kib = |k: &str| v[k].as_u64().unwrap_or(0);
            md += &format!(
                "| {} | {} | {} | {} | {} | {} | {:.1} s |\n",
                match mode {
                    "cached" => "default (10,000 entries / 32 MiB)",
                    "bytes" => "1,000,000 entries / 16 MiB (bytes decide)",
                    "replay" =>
                        "DPoP MemoryReplayStore::default() (not the token cache): see below",
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
        print!("{md}");
        markdown += &md;
    }
    let md_path = out_dir.join("loadbench.md");
    std::fs::write(&md_path, &markdown)?;
    println!("\ntables: {}", md_path.display());
    println!(
        "loadbench finished in {:.0} s (excluding builds)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where cargo puts build output: this executable is `TARGET/PROFILE/deps/loadbench-HASH`.
fn target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| root.join("target"))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    opts: &Opts,
    client: &TlsConnector,
    targets: &[Target],
    material: &Material,
    cached: &Server,
    issuer_b: &str,
    out_dir: &Path,
) -> Result<String, Error> {
    let t0 = Instant::now();
    // Open every connection once (the handshake is not what is measured), check every variant.
    let mut pools = Vec::new();
    let mut bodies = Vec::new();
    for t in targets {
        let mut conns = Vec::new();
        for _ in 0..opts.connections {
            conns.push(connect(client, t.addr).await?);
        }
        let first_proof = t.dpop.as_ref().map(|d| d.make()).transpose()?;
        let (status, body) =
            fetch(&mut conns[0], t.path, t.auth.as_ref(), first_proof.as_ref()).await?;
        if status != StatusCode::OK {
            return Err(format!("{}: expected 200, got {status}", t.name).into());
        }
        bodies.push((t.name, body));
        if let Some(proof) = &first_proof {
            // The replay store really works: the same proof again is refused.
            let status = request(&mut conns[0], t.path, t.auth.as_ref(), Some(proof)).await?;
            if status != StatusCode::UNAUTHORIZED {
                return Err(
                    format!("{}: a replayed proof got {status}, expected 401", t.name).into(),
                );
            }
        }
        if let (Some(auth), true) = (&t.auth, t.path == "/api/hello") {
            // The layer really validates: a token with a broken signature is refused.
            let bad = tamper(auth);
            let proof = t.dpop.as_ref().map(|d| d.make()).transpose()?;
            let status = request(&mut conns[0], t.path, Some(&bad), proof.as_ref()).await?;
            if status != StatusCode::UNAUTHORIZED {
                return Err(
                    format!("{}: a tampered token got {status}, expected 401", t.name).into(),
                );
            }
        }
        pools.push(conns);
    }
    // The twin answers exactly what the protected route answers.
    let body = |name: &str| bodies.iter().find(|(n, _)| *n == name).map(|(_, b)| b);
    if let (Some(open), Some(protected)) = (body("open_twin"), body("hello_cached")) {
        if open != protected {
            return Err(format!(
                "the open twin's body differs from the protected route's: {open:?} vs {protected:?}"
            )
            .into());
        }
    }
    let mut md = format!(
        "certbound loadbench — {} connections/variant, HTTP/1.1 keep-alive over mTLS (client A), \
         {} rounds × {} s, order rotating\n\nmachine: {} CPUs ({}), load average at start: {}\n",
        opts.connections,
        opts.rounds,
        opts.secs,
        cpus(),
        cpu_model(),
        loadavg()
    );
    println!("\n{md}");

    // Warm-up: one short pass per variant.
    for (t, conns) in targets.iter().zip(pools.iter_mut()) {
        if let Some(d) = &t.dpop {
            d.refill(4000)?;
        }
        let r = drive(conns, t, Duration::from_secs_f64(opts.secs.min(1.0))).await;
        if let Some(d) = &t.dpop {
            // Enough proofs for a round at the warm-up's rate, with room.
            d.set_batch((r.requests as f64 / r.secs * opts.secs * 2.0) as usize);
        }
    }
    let mut results: Vec<Vec<Round>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..opts.rounds {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            if let Some(d) = &targets[i].dpop {
                // Proofs for this round, made before it (not in the measured client CPU).
                d.refill(d.batch())?;
            }
            let r = drive(
                &mut pools[i],
                &targets[i],
                Duration::from_secs_f64(opts.secs),
            )
            .await;
            if r.errors > 0 {
                return Err(format!("{}: {} failed requests", targets[i].name, r.errors).into());
            }
            if let Some(d) = &targets[i].dpop {
                d.set_batch((r.requests as f64 * 2.0) as usize);
            }
            results[i].push(r);
        }
        eprintln!("round {}/{} done", round + 1, opts.rounds);
    }
    let load_end = loadavg();
    let summaries: Vec<Summary> = results.iter().map(|r| summarize(r)).collect();
    let mut tables = report(targets, &summaries);
    for (t, r) in targets.iter().zip(&results) {
        if let Some(d) = &t.dpop {
            let requests: u64 = r.iter().map(|r| r.requests).sum();
            tables += &format!(
                "\n{}: {requests} requests, each with its own proof; {} proofs made inline (a batch ran out), {} made before the rounds\n",
                t.name,
                d.inline.load(Ordering::Relaxed),
                d.made.load(Ordering::Relaxed)
            );
        }
        if let Some(pid) = t.extra_pid {
            let requests: u64 = r.iter().map(|r| r.requests).sum();
            let ns: u64 = r.iter().map(|r| r.extra_cpu_ns).sum();
            tables += &format!(
                "{}: redis-server (pid {pid}) CPU {:.1} µs per request\n",
                t.name,
                ns as f64 / 1000.0 / requests.max(1) as f64
            );
        }
    }
    print!("{tables}");
    md += &tables;
    let tail = format!(
        "\nload rounds took {:.0} s; load average at the end: {load_end}\n",
        t0.elapsed().as_secs_f64()
    );
    print!("{tail}");
    md += &tail;
    let svg = out_dir.join("loadbench.svg");
    chart(&svg, opts, targets, &summaries)?;
    println!("chart: {}", svg.display());

    if opts.flood > 0 {
        let mut flood_md = format!(
            "\n## HTTP flood: {} distinct valid tokens (client A, {} connections), server memory\n\n",
            opts.flood, opts.connections
        );
        flood_md += "| server | VmHWM before | VmHWM after | VmRSS after | growth of peak | req/s | time |\n";
        flood_md += "|---|---:|---:|---:|---:|---:|---:|\n";
        let addr = cached.addrs.first().ok_or("no address")?.1;
        let mut conns = Vec::new();
        for _ in 0..opts.connections {
            conns.push(connect(client, addr).await?);
        }
        let before = proc_status(cached.pid());
        let t = Instant::now();
        let n = flood(&mut conns, material, issuer_b, opts.flood).await?;
        let secs = t.elapsed().as_secs_f64();
        let after = proc_status(cached.pid());
        flood_md += &format!(
            "| API server (cache: 10,000 entries / 32 MiB) | {} | {} | {} | {} | {:.0} | {secs:.1} s |\n",
            mib(before.0),
            mib(after.0),
            mib(after.1),
            mib(after.0.saturating_sub(before.0)),
            n as f64 / secs
        );
        print!("{flood_md}");
        md += &flood_md;
    }
    Ok(md)
}

// ---------------------------------------------------------------- measurement

struct Round {
    requests: u64,
    errors: u64,
    secs: f64,
    server_cpu_ns: u64,
    client_cpu_ns: u64,
    /// CPU of `Target::extra_pid` (a redis-server), when given.
    extra_cpu_ns: u64,
    latencies_ns: Vec<u64>,
}

/// Runs every connection of `conns` flat out for `dur`, one request in flight per connection.
async fn drive(conns: &mut [Conn], t: &Target, dur: Duration) -> Round {
    let server_cpu = tree_cpu_ns(t.pid);
    let extra_cpu = t.extra_pid.map_or(0, task_cpu_ns);
    let client_cpu = task_cpu_ns(std::process::id());
    let start = Instant::now();
    let deadline = start + dur;
    let work = conns.iter_mut().map(|conn| async move {
        let mut lat = Vec::with_capacity(16 * 1024);
        let mut errors = 0u64;
        while Instant::now() < deadline {
            let proof = t.dpop.as_ref().map(DpopProofs::take);
            let t0 = Instant::now();
            match request(conn, t.path, t.auth.as_ref(), proof.as_ref()).await {
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
        server_cpu_ns: tree_cpu_ns(t.pid).saturating_sub(server_cpu),
        extra_cpu_ns: t
            .extra_pid
            .map_or(0, |pid| task_cpu_ns(pid).saturating_sub(extra_cpu)),
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

/// A ratio between two variants, paired per round.
struct Ratio {
    /// Median of the per-round req/s ratios.
    median: f64,
    min: f64,
    max: f64,
    /// Server CPU per request of `b` over that of `a` (higher is better for `a`).
    cpu: f64,
}

fn ratio(targets: &[Target], s: &[Summary], a: &str, b: &str) -> Option<Ratio> {
    let ia = targets.iter().position(|t| t.name == a)?;
    let ib = targets.iter().position(|t| t.name == b)?;
    // Paired per round: both variants ran in the same round, so a neighbour's load that comes
    // and goes between rounds cancels out better than in the totals.
    let paired: Vec<f64> = s[ia]
        .round_rps
        .iter()
        .zip(&s[ib].round_rps)
        .map(|(x, y)| x / y)
        .collect();
    let (min, max) = min_max(&paired);
    Some(Ratio {
        median: median(&paired),
        min,
        max,
        cpu: s[ib].server_us_per_req / s[ia].server_us_per_req,
    })
}

/// The tables, as Markdown.
fn report(targets: &[Target], s: &[Summary]) -> String {
    let mut md = String::from("\n| variant | req/s (median of rounds) | req/s per round (min–max) | p50 µs | p99 µs | server CPU µs/req | client CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (t, s) in targets.iter().zip(s) {
        let (lo, hi) = min_max(&s.round_rps);
        md += &format!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
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
    md += "\n| ratio | req/s, median of per-round ratios | per round (min–max) | server CPU/req, inverse ratio | target |\n|---|---:|---:|---:|---|\n";
    for (a, b, target) in [
        ("hello_cached", "open_twin", Some(0.9)),
        ("hello_opaque", "hello_cached", Some(0.95)),
        ("hello_opaque", "open_twin", None),
        ("hello_nocache", "open_twin", None),
        ("open_twin", "health", None),
        ("health_token", "health", None),
        ("hello_cached", "health", None),
        ("hello_cached", "jwt_authorizer", Some(3.0)),
        ("hello_cached", "tower_oauth2", Some(3.0)),
        ("hello_nocache", "jwt_authorizer", None),
        ("hello_nocache", "tower_oauth2", None),
        ("hello_cached", "hello_nocache", None),
        ("hello_dpop", "hello_cached", None),
        ("hello_dpop", "open_twin", None),
        ("hello_dpop_redis", "hello_dpop", None),
        ("hello_dpop_redis", "hello_cached", None),
        ("sidecar_certbound", "sidecar_nginx", Some(0.8)),
        ("sidecar_certbound_before", "sidecar_nginx", Some(0.8)),
        ("sidecar_certbound", "sidecar_certbound_before", None),
        ("hello_dpop", "huskarl_dpop", Some(4.0)),
        ("hello_dpop_redis", "huskarl_dpop", None),
        ("huskarl_dpop", "tower_oauth2", None),
    ] {
        let Some(r) = ratio(targets, s, a, b) else {
            continue;
        };
        let verdict = match target {
            Some(t) if r.median >= t && r.cpu >= t => format!("≥ {t}: met"),
            Some(t) if r.median >= t => format!("≥ {t}: met by req/s, not by server CPU"),
            Some(t) => format!("≥ {t}: MISSED"),
            None => "(info)".to_owned(),
        };
        md += &format!(
            "| {a} / {b} | {:.2} | {:.2}–{:.2} | {:.2} | {verdict} |\n",
            r.median, r.min, r.max, r.cpu
        );
    }
    let cpu = |name: &str| {
        targets
            .iter()
            .position(|t| t.name == name)
            .map(|i| s[i].server_us_per_req)
    };
    if let (Some(b), Some(o)) = (cpu("hello_cached"), cpu("open_twin")) {
        md += &format!(
            "\ncertbound on a cache hit, server CPU per request: {:+.1} µs ((b) {b:.1} − (o) {o:.1})\n",
            b - o
        );
    }
    if let (Some(d), Some(b)) = (cpu("hello_dpop"), cpu("hello_cached")) {
        md += &format!(
            "DPoP (token cached, proof verified, memory replay store) over the mTLS cache hit, server CPU per request: {:+.1} µs ((e) {d:.1} − (b) {b:.1})\n",
            d - b
        );
    }
    if let (Some(d), Some(h)) = (cpu("hello_dpop"), cpu("huskarl_dpop")) {
        md += &format!(
            "DPoP, certbound (e) against huskarl (g), server CPU per request: {d:.1} µs against {h:.1} µs ({:.2} ×)\n",
            h / d
        );
    }
    if let (Some(r), Some(d)) = (cpu("hello_dpop_redis"), cpu("hello_dpop")) {
        md += &format!(
            "Redis replay store over the memory one, API server CPU per request: {:+.1} µs ((f) {r:.1} − (e) {d:.1}; redis-server's own CPU not included)\n",
            r - d
        );
    }
    md
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

/// CPU time of `pid` and its direct children (nginx's workers), in nanoseconds.
fn tree_cpu_ns(pid: u32) -> u64 {
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    task_cpu_ns(pid) + children.into_iter().map(task_cpu_ns).sum::<u64>()
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

// ---------------------------------------------------------------- the chart

/// Two panels side by side: req/s (median of rounds, whisker min–max) and server CPU µs per
/// request, one bar per variant; the title carries the protected / open twin ratio.
fn chart(path: &Path, opts: &Opts, targets: &[Target], s: &[Summary]) -> Result<(), Error> {
    use plotters::prelude::*;

    let n = targets.len();
    let rows = n as i32;
    let colour = |name: &str| match name {
        "health" | "health_token" | "open_twin" => RGBColor(150, 150, 150),
        "hello_cached" | "hello_nocache" => RGBColor(31, 119, 180),
        "hello_dpop" | "hello_dpop_redis" => RGBColor(44, 160, 44),
        _ => RGBColor(230, 130, 30),
    };
    let short = |t: &Target| t.label.split(" (").next().unwrap_or(t.label).to_owned();
    let labels: Vec<String> = targets
        .iter()
        .map(|t| {
            let mut label = t.label.to_owned();
            if label.chars().count() > 44 {
                label = short(t);
            }
            label
        })
        .collect();
    let headline = ratio(targets, s, "hello_cached", "open_twin").map_or_else(
        || "certbound loadbench".to_owned(),
        |r| {
            format!(
                "certbound, cache hit ÷ open twin route: {:.2}× req/s (rounds {:.2}–{:.2}), {:.2}× by server CPU",
                r.median, r.min, r.max, r.cpu
            )
        },
    );
    let subtitle = format!(
        "{} rounds × {} s per variant, {} keep-alive mTLS connections each, order rotating; {} CPUs, load average at the end {}",
        opts.rounds,
        opts.secs,
        opts.connections,
        cpus(),
        loadavg()
    );

    let height = 168 + 46 * n as u32;
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(88);
    top.draw(&Text::new(
        headline,
        (16, 10),
        ("sans-serif", 20).into_font().style(FontStyle::Bold),
    ))?;
    top.draw(&Text::new(
        subtitle,
        (16, 42),
        ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    top.draw(&Text::new(
        "grey: no authentication · blue: certbound, mTLS-bound token · green: certbound, DPoP-bound token + proof · orange: peer middleware (no binding check)",
        (16, 62),
        ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    let (left, right) = body.split_horizontally(760);

    // The first variant on top.
    let row = |i: usize| rows - 1 - i as i32;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(rows - 1 - *i)
            .ok()
            .and_then(|i| labels.get(i))
            .cloned()
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };

    // Left: req/s.
    let rps: Vec<(f64, f64, f64)> = s
        .iter()
        .map(|s| {
            let (lo, hi) = min_max(&s.round_rps);
            (median(&s.round_rps), lo, hi)
        })
        .collect();
    let x_max = rps.iter().map(|r| r.2).fold(1.0, f64::max) * 1.18;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "req/s — median of rounds (whisker: min–max)",
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..x_max, (0..rows - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label_of)
        .y_label_style(("sans-serif", 13))
        .x_labels(6)
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()?;
    for (i, (t, (m, lo, hi))) in targets.iter().zip(&rps).enumerate() {
        let i = row(i);
        let c = colour(t.name);
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*m, SegmentValue::Exact(i + 1)),
            ],
            c.filled(),
        );
        bar.set_margin(7, 7, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (*lo, SegmentValue::CenterOf(i)),
                (*hi, SegmentValue::CenterOf(i)),
            ],
            BLACK.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{m:.0}"),
            (hi + x_max * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 12),
        )))?;
    }

    // Right: server CPU per request.
    let cpu: Vec<f64> = s.iter().map(|s| s.server_us_per_req).collect();
    let c_max = cpu.iter().copied().fold(1.0, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "server CPU µs per request (lower is better)",
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..c_max, (0..rows - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|_| String::new())
        .x_labels(5)
        .draw()?;
    for (i, (t, v)) in targets.iter().zip(&cpu).enumerate() {
        let i = row(i);
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*v, SegmentValue::Exact(i + 1)),
            ],
            colour(t.name).filled(),
        );
        bar.set_margin(7, 7, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{v:.1}"),
            (v + c_max * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 12),
        )))?;
    }
    root.present()?;
    Ok(())
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
                match request(conn, "/api/hello", Some(&auth), None).await? {
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
    if mode == "replay" {
        return runtime.block_on(rss_replay());
    }
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

/// In a fresh process: the default DPoP replay store (1,000,000 entries per generation) filled
/// with 1,100,000 distinct keys (the last 100,000 must be refused as `Full`), then, after its
/// generation span (the TTL, 2 s here), 1,100,000 more (the first generation moves to
/// "previous", a new one fills). RSS after each phase; one JSON line.
async fn rss_replay() -> Result<(), Error> {
    let store = MemoryReplayStore::default();
    let ttl = Duration::from_secs(2);
    let pid = std::process::id();
    let mut counter = 0u64;
    let mut fill = |n: usize| {
        let mut outcome = (0usize, 0usize);
        let store = &store;
        let keys: Vec<[u8; 32]> = (0..n)
            .map(|_| {
                counter += 1;
                let mut key = [0x5a; 32];
                key[..8].copy_from_slice(&counter.to_le_bytes());
                key
            })
            .collect();
        async move {
            for key in keys {
                match store.first_use(key, ttl).await {
                    Ok(true) => outcome.0 += 1,
                    Ok(false) => return Err::<_, Error>("a new key was seen as a replay".into()),
                    Err(_) => outcome.1 += 1,
                }
            }
            Ok(outcome)
        }
    };
    let before = proc_status(pid);
    let t = Instant::now();
    let (ok1, full1) = fill(1_100_000).await?;
    let secs = t.elapsed().as_secs_f64();
    let after1 = proc_status(pid);
    let len1 = store.len();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let (ok2, full2) = fill(1_100_000).await?;
    let after2 = proc_status(pid);
    let len2 = store.len();
    println!(
        "{}",
        json!({
            "hwm_before_kib": before.0, "rss_before_kib": before.1,
            "phase1": {"accepted": ok1, "refused_full": full1, "held": len1,
                       "hwm_kib": after1.0, "rss_kib": after1.1, "secs": secs},
            "phase2_after_one_span": {"accepted": ok2, "refused_full": full2, "held": len2,
                       "hwm_kib": after2.0, "rss_kib": after2.1},
        })
    );
    Ok(())
}

/// `--dpop-flood N`: N distinct valid proofs (made inline, one per request) with the DPoP-bound
/// token at a fresh DPoP server (memory replay store); its RSS before and after. The store's
/// hash table grows by doubling, so the growth per proof depends on where N falls between two
/// sizes; the in-process `replay` child measures the store at its bound.
async fn dpop_flood(
    opts: &Opts,
    client: &TlsConnector,
    server: &Server,
    target: &Target,
) -> Result<String, Error> {
    let d = target.dpop.as_ref().ok_or("not a DPoP variant")?;
    let mut conns = Vec::new();
    for _ in 0..opts.connections {
        conns.push(connect(client, target.addr).await?);
    }
    let n = opts.dpop_flood;
    // One request first, so lazily initialised state is in "before".
    let proof = d.make()?;
    request(
        &mut conns[0],
        target.path,
        target.auth.as_ref(),
        Some(&proof),
    )
    .await?;
    let before = proc_status(server.pid());
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let work = conns.iter_mut().map(|conn| {
        let next = Arc::clone(&next);
        async move {
            let mut ok = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let proof = d.make()?;
                match request(conn, target.path, target.auth.as_ref(), Some(&proof)).await? {
                    StatusCode::OK => ok += 1,
                    other => return Err::<usize, Error>(format!("DPoP flood: {other}").into()),
                }
            }
            Ok(ok)
        }
    });
    let mut total = 0;
    for r in futures_join_all(work).await {
        total += r?;
    }
    let secs = t.elapsed().as_secs_f64();
    let after = proc_status(server.pid());
    let growth_kib = after.1.saturating_sub(before.1);
    Ok(format!(
        "\n## DPoP flood: {total} distinct valid proofs (one DPoP-bound token, {} connections), DPoP server memory\n\n\
         | VmHWM before | VmHWM after | VmRSS before | VmRSS after | RSS growth | per proof | req/s (proofs made inline) | time |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {:.0} B | {:.0} | {secs:.1} s |\n",
        opts.connections,
        mib(before.0),
        mib(after.0),
        mib(before.1),
        mib(after.1),
        mib(growth_kib),
        growth_kib as f64 * 1024.0 / total.max(1) as f64,
        total as f64 / secs
    ))
}

// ---------------------------------------------------------------- client

struct Target {
    name: &'static str,
    label: &'static str,
    addr: SocketAddr,
    path: &'static str,
    auth: Option<HeaderValue>,
    pid: u32,
    /// DPoP variants: a fresh proof per request.
    dpop: Option<DpopProofs>,
    /// Another process whose CPU is reported per request (a redis-server).
    extra_pid: Option<u32>,
}

/// Proofs for one DPoP variant: a batch made before each round, handed out one per request.
struct DpopProofs {
    key: DpopKey,
    htu: String,
    token: String,
    pool: std::sync::Mutex<Vec<HeaderValue>>,
    next: AtomicUsize,
    batch: AtomicUsize,
    /// Proofs made before rounds, and inline (a batch ran out).
    made: AtomicUsize,
    inline: AtomicUsize,
}

impl DpopProofs {
    fn new(key: DpopKey, htu: &str, token: String) -> Self {
        Self {
            key,
            htu: htu.to_owned(),
            token,
            pool: std::sync::Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            batch: AtomicUsize::new(4000),
            made: AtomicUsize::new(0),
            inline: AtomicUsize::new(0),
        }
    }

    /// A fresh proof (new `jti`, `iat` now) for `GET htu` with `ath` of the token.
    fn make(&self) -> Result<HeaderValue, Error> {
        let proof = self.key.proof("GET", &self.htu, Some(&self.token), None)?;
        Ok(HeaderValue::from_str(&proof)?)
    }

    fn batch(&self) -> usize {
        self.batch.load(Ordering::Relaxed)
    }

    fn set_batch(&self, n: usize) {
        self.batch.store(n.max(1000), Ordering::Relaxed);
    }

    /// Replaces the pool with `n` fresh proofs.
    fn refill(&self, n: usize) -> Result<(), Error> {
        let fresh = (0..n).map(|_| self.make()).collect::<Result<Vec<_>, _>>()?;
        self.made.fetch_add(n, Ordering::Relaxed);
        *self.pool.lock().unwrap() = fresh;
        self.next.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The next unused proof (made inline when the batch ran out).
    fn take(&self) -> HeaderValue {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.pool.lock().unwrap().get(i) {
            return p.clone();
        }
        self.inline.fetch_add(1, Ordering::Relaxed);
        self.make().expect("a DPoP proof")
    }
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
            dpop: None,
            extra_pid: None,
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
    dpop: Option<&HeaderValue>,
) -> Result<StatusCode, Error> {
    Ok(fetch(conn, path, auth, dpop).await?.0)
}

/// One request: the status and the whole body.
async fn fetch(
    conn: &mut Conn,
    path: &str,
    auth: Option<&HeaderValue>,
    dpop: Option<&HeaderValue>,
) -> Result<(StatusCode, Bytes), Error> {
    let mut req = Request::get(path).header(header::HOST, "localhost");
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth.clone());
    }
    if let Some(proof) = dpop {
        req = req.header("dpop", proof.clone());
    }
    conn.ready().await?;
    let resp = conn.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
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
    /// Held open: the API server exits by itself when this closes (we went away).
    _stdin: Option<ChildStdin>,
    addrs: Vec<(String, SocketAddr)>,
    issuer: Option<String>,
    /// An opaque token bound to client A, registered at this server's dev issuer.
    opaque: Option<String>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The API server (this executable with `--serve-child`) on an ephemeral port.
    /// `dpop`: `Some(None)` DPoP on with the in-memory replay store, `Some(Some(url))` with Redis.
    fn api(dev_dir: &Path, no_cache: bool, dpop: Option<Option<&str>>) -> Result<Self, Error> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--serve-child").arg(dev_dir);
        if no_cache {
            cmd.arg("--no-token-cache");
        }
        match dpop {
            Some(Some(url)) => {
                cmd.args(["--dpop", "--replay-store", url]);
            }
            Some(None) => {
                cmd.arg("--dpop");
            }
            None => {}
        }
        Self::start(cmd, |line, s| {
            if let Some(rest) = line.strip_prefix("listening on https://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                s.addrs.push(("api".into(), addr.parse().ok()?));
            }
            if line.starts_with("issuer (dev") {
                s.issuer = line.split_whitespace().last().map(str::to_owned);
            }
            if let Some(token) = line.strip_prefix("opaque token ") {
                s.opaque = Some(token.trim().to_owned());
            }
            (!s.addrs.is_empty() && s.issuer.is_some() && s.opaque.is_some()).then_some(())
        })
    }

    /// The peers process; with `dpop_issuer` also huskarl's DPoP route (three addresses).
    fn peers(
        exe: &Path,
        dev_dir: &Path,
        jwks: &Path,
        issuer: &str,
        dpop_issuer: Option<&str>,
    ) -> Result<Self, Error> {
        let mut cmd = Command::new(exe);
        cmd.arg("--dev-dir").arg(dev_dir).arg("--jwks").arg(jwks);
        cmd.args(["--issuer", issuer, "--audience", AUDIENCE]);
        if let Some(dpop_issuer) = dpop_issuer {
            cmd.args(["--dpop-issuer", dpop_issuer]);
        }
        cmd.env("RUST_LOG", "warn");
        let servers = if dpop_issuer.is_some() { 3 } else { 2 };
        Self::start(cmd, |line, s| {
            let (name, url) = line.split_once(' ')?;
            let addr = url.strip_prefix("https://")?.parse().ok()?;
            s.addrs.push((name.to_owned(), addr));
            (s.addrs.len() == servers).then_some(())
        })
    }

    /// Starts `cmd` and reads its stdout until `ready` says it has everything (60 s at most).
    fn start(
        mut cmd: Command,
        mut ready: impl FnMut(&str, &mut Server) -> Option<()>,
    ) -> Result<Self, Error> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stdin = child.stdin.take();
        let mut server = Server {
            child,
            _stdin: stdin,
            addrs: Vec::new(),
            issuer: None,
            opaque: None,
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
    eprintln!("building {name} (release; the first build takes minutes, --no-peers skips it)…");
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("cargo build for {name} failed (--no-peers skips it)").into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo build did not report an executable for {name}").into())
}

// ---------------------------------------------------------------- the API server

/// The example API's `/health` and `/api/hello` (its handler, behind the certbound layer), and
/// their open twin `/open/hello`: the same handler, handed a token verified once at startup
/// (the layer hands each request its own), with no layer.
fn app(auth: CertBoundLayer, open_token: VerifiedToken) -> Router {
    let protected = Router::new()
        .route("/api/hello", get(hello))
        .route_layer(auth);
    let open = Router::new()
        .route("/open/hello", get(hello))
        .route_layer(Extension(open_token));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(protected)
        .merge(open)
}

/// The example API's handler (examples/support): who the token is for and what it is bound to.
async fn hello(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "sub": token.sub(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "thumbprint": token.thumbprint().map(ToString::to_string),
    }))
}

/// `--serve-child DIR`: the API server over mutual TLS (self-signed client mode, the example's
/// default) with a dev issuer (discovery + JWKS over HTTPS, as the example's dev mode), tokio's
/// default workers, logging at `warn` (rejections would show; accepted requests are not logged).
/// Exits when its stdin closes (the benchmark went away) or after an hour.
fn serve_child(
    dir: &Path,
    no_cache: bool,
    dpop: bool,
    replay_store: Option<&str>,
) -> Result<(), Error> {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600));
        std::process::exit(0);
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (pki, _) = DevPki::load_or_create(dir)?;
        let pem = std::fs::read_to_string(dir.join("jwt-signing.key"))?;
        let signer = SigningKey::from_pkcs8_pem("dev-1", Algorithm::ES256, &pem)?;
        let issuer = TestIssuer::start(&[&signer]).await?;
        let mut builder = CertBound::builder()
            .issuer(issuer.issuer_url())
            .audience(AUDIENCE)
            .jwks_root_certificates_pem(issuer.ca_pem().as_bytes().to_vec());
        if no_cache {
            builder = builder.no_token_cache();
        }
        if dpop {
            // The defaults (the example's --dpop): in-memory replay store unless Redis is given.
            let mut config = Dpop::default();
            if let Some(url) = replay_store {
                config = config.replay_store(RedisReplayStore::connect(url).await?);
            }
            builder = builder.dpop(config);
        }
        // Opaque tokens (issue 13): introspected at the dev issuer, then from the cache.
        issuer.register_introspection_client(
            "loadbench",
            ClientAuthMethod::SecretBasic("loadbench-secret".into()),
        );
        builder = builder.introspection(certbound::Introspector::builder().auth(
            certbound::IntrospectionAuth::client_secret_basic("loadbench", "loadbench-secret"),
        ));
        let auth = builder.build().await?;
        // The twin's token: client A's, with the claims the benchmark's token has.
        let thumbprint = *ClientCertificate::from_der(pki.client_a.cert_der.to_vec()).thumbprint();
        // An opaque token with the same claims (the same binding), for `hello_opaque`.
        let opaque = issuer.issue_opaque(bound_claims(issuer.issuer_url(), AUDIENCE, &thumbprint));
        let token = signer.sign(&bound_claims(issuer.issuer_url(), AUDIENCE, &thumbprint))?;
        let open_token = auth.verify(&token, Some(thumbprint)).await?;
        let tls = server_config(
            vec![pki.server.cert_der.clone()],
            pki.server.private_key(),
            ClientAuth::self_signed(),
        )?;
        let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
        println!("listening on https://{}", listener.local_addr());
        println!("issuer (dev) {}", issuer.issuer_url());
        println!("opaque token {opaque}");
        std::io::stdout().flush()?;
        let app = app(auth, open_token).into_make_service_with_connect_info::<PeerCertificate>();
        axum::serve(listener, app).await?;
        Ok(())
    })
}

// ---------------------------------------------------------------- the sidecar comparison

/// `--upstream-child`: the trivial upstream both proxies forward to — HTTP/1.1 keep-alive on
/// 127.0.0.1, every request answered 200 with a small JSON body; one thread.
fn upstream_child() -> Result<(), Error> {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(
                            br#"{"sub":"user-123","client_id":"client-a","scope":null}"#,
                        )),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// nginx (master + workers), stopped with SIGTERM (the master stops its workers) when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--sidecar`: certbound serve vs nginx, both terminating mutual TLS in front of the same
/// trivial upstream, in one run (see the file's docs).
fn sidecar(opts: &Opts, root: &Path, out_dir: &Path) -> Result<(), Error> {
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("nginx is required for --sidecar: apt-get install -y nginx")?;
    let certbound_bin = build(
        root,
        &["-p", "certbound-cli", "--bin", "certbound"],
        "certbound",
    )?;
    let started = Instant::now();
    let dev_dir = std::env::temp_dir().join(format!("certbound-sidecar-{}", std::process::id()));
    let _cleanup = RemoveDir(dev_dir.clone());
    certbound_dev::private_dir(&dev_dir)?;
    DevPki::load_or_create(&dev_dir)?;
    let signer = SigningKey::generate("dev-1", Algorithm::ES256)?;
    certbound_dev::write_private(
        &dev_dir.join("jwt-signing.key"),
        signer.pkcs8_pem().as_bytes(),
    )?;
    let issuer = "https://issuer.bench/";
    let jwks = dev_dir.join("jwks.json");
    std::fs::write(&jwks, jwks_document(&[&signer]).to_string())?;
    let material = Material::load(&dev_dir)?;
    let token = material.token(issuer, "bench")?;
    let path = |name: &str| dev_dir.join(name).to_string_lossy().into_owned();

    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--upstream-child");
    let upstream = Server::start(cmd, |line, s| {
        let addr = line.strip_prefix("listening on http://")?.parse().ok()?;
        s.addrs.push(("upstream".into(), addr));
        Some(())
    })?;
    let up = upstream.addrs[0].1;

    let start_serve = |bin: &Path| {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--upstream", &format!("http://{up}")])
            .args(["--listen", "127.0.0.1:0"])
            .args([
                "--tls-cert",
                &path("server.pem"),
                "--tls-key",
                &path("server.key"),
            ])
            .args(["--issuer", issuer, "--audience", AUDIENCE])
            .args(["--jwks-file", &jwks.to_string_lossy()])
            .env(
                "RUST_LOG",
                std::env::var("SIDECAR_LOG").unwrap_or_else(|_| "warn".into()),
            );
        Server::start(cmd, |line, s| {
            let addr = line.strip_prefix("listening on https://")?.parse().ok()?;
            s.addrs.push(("serve".into(), addr));
            Some(())
        })
    };
    let serve = start_serve(&certbound_bin)?;
    let baseline = opts
        .sidecar_baseline
        .as_deref()
        .map(start_serve)
        .transpose()?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let prefix = dev_dir.join("nginx");
    std::fs::create_dir_all(&prefix)?;
    let p = prefix.display();
    // The same termination: TLS 1.3 with the same server certificate, a client certificate
    // requested (not chain-verified: self-signed mode, like certbound's), HTTP/1.1 keep-alive
    // to the upstream, access log off (certbound logs nothing per accepted request either).
    let conf = format!(
        r#"
daemon off;
worker_processes auto;
error_log {p}/error.log warn;
pid {p}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  upstream app {{ server {up}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_verify_client optional_no_ca;
    keepalive_requests 100000000;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
    }}
  }}
}}
"#,
        cert = path("server.pem"),
        key = path("server.key"),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let nginx = Nginx(
        Command::new(&nginx_bin)
            .args([
                "-p",
                &prefix.to_string_lossy(),
                "-c",
                &conf_path.to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(nginx_addr).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut targets = vec![
        Target::new(
            "sidecar_certbound",
            "(s1) certbound serve --upstream: mTLS + bound token (cache warm) + proxy",
            Some(serve.addrs[0].1),
            "/api/hello",
            Some(&token),
            serve.pid(),
        )?,
        Target::new(
            "sidecar_nginx",
            "(s2) nginx: mTLS termination + proxy_pass, no token check",
            Some(nginx_addr),
            "/hello",
            Some(&token),
            nginx.0.id(),
        )?,
    ];
    if let Some(before) = &baseline {
        targets.push(Target::new(
            "sidecar_certbound_before",
            "(s0) certbound serve, the --sidecar-baseline build (before)",
            Some(before.addrs[0].1),
            "/api/hello",
            Some(&token),
            before.pid(),
        )?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(material.connector())?;
    let mut quiet = Opts::parse_from(["loadbench"]);
    quiet.secs = opts.secs;
    quiet.rounds = opts.rounds;
    quiet.connections = opts.connections;
    quiet.flood = 0;
    let markdown = runtime.block_on(run(
        &quiet, &client, &targets, &material, &serve, issuer, out_dir,
    ))?;
    drop((nginx, serve, baseline, upstream));
    let md_path = out_dir.join("loadbench-sidecar.md");
    std::fs::write(&md_path, &markdown)?;
    println!("\ntables: {}", md_path.display());
    println!(
        "sidecar comparison finished in {:.0} s (excluding builds)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
