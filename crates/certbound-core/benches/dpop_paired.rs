//! `DpopPolicy::verify_proof` ÷ a raw aws-lc verification of the same signature, **paired**:
//! the two alternate in blocks of about a millisecond, and the ratio is the median of the
//! per-pair ratios — a neighbour's load that comes and goes hits both sides of a pair alike,
//! where criterion measures each side in its own multi-second window.
//!
//! ```text
//! cargo bench -p certbound-core --bench dpop_paired            # 4 s per alg
//! cargo bench -p certbound-core --bench dpop_paired -- --secs 8
//! ```
//!
//! It uses only what every version of `verify_proof` has (a default `DpopPolicy`, a
//! `certbound_dev` proof), so the same file measures an older library for a before/after.
//! `verify_proof` gets the same valid proof every time — as a client's later requests reach it
//! (same header; a new proof differs only in its claims). `raw_aws_lc` is aws-lc-rs's one-shot
//! verification from the `jwk`'s key bytes, decoded beforehand, exactly as in `benches/dpop.rs`;
//! `raw_parsed` the same with the key parsed beforehand (`ParsedPublicKey`): the signature
//! check alone. The three rotate block by block.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use certbound_core::{Algorithm, DpopPolicy, ProofRequest, UnverifiedToken};
use certbound_dev::dpop::DpopKey;
use certbound_dev::unix_now;

const URL: &str = "https://api.example/accounts";

/// Nanoseconds per call of `f`, over a block of `n` calls.
fn block(n: u32, f: &dyn Fn()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let mut secs = 4.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--secs" {
            secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs);
        }
    }
    let policy = DpopPolicy::default();
    let request = ProofRequest::new("GET", URL);
    let token = "t".repeat(480);
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::PS256] {
        let key = DpopKey::generate(alg).unwrap();
        let proof = key.proof("GET", URL, Some(&token), None).unwrap();
        let now = unix_now();
        let parsed = UnverifiedToken::parse(&proof).unwrap();
        let message = parsed.signing_input().to_vec();
        let signature = parsed.signature().to_vec();
        let jwk = key.public_jwk().clone();
        let (parsed_key, raw) = common::raw_verifier(alg, &jwk, &message, &signature);
        let verify = || {
            black_box(
                policy
                    .verify_proof(black_box(&proof), black_box(&token), &request, now)
                    .unwrap(),
            );
        };
        let raw_call = || assert!(raw());
        let parsed_call = || {
            parsed_key
                .verify_sig(black_box(&message), black_box(&signature))
                .unwrap()
        };
        // All accept before anything is timed; then a short warm-up.
        verify();
        raw_call();
        parsed_call();
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(500) {
            verify();
            raw_call();
            parsed_call();
        }
        // Blocks of about 1 ms (sized from the median of 9 short samples), the three sides
        // rotating which goes first.
        let mut sample: Vec<f64> = (0..9).map(|_| block(10, &raw_call)).collect();
        sample.sort_by(f64::total_cmp);
        let n = (1_000_000.0 / sample[4]).clamp(1.0, 10_000.0) as u32;
        let sides: [&dyn Fn(); 3] = [&verify, &raw_call, &parsed_call];
        let mut ns: [Vec<f64>; 3] = Default::default();
        let (mut vs_raw, mut vs_parsed) = (Vec::new(), Vec::new());
        let start = Instant::now();
        let mut i = 0usize;
        while start.elapsed().as_secs_f64() < secs {
            let mut t = [0.0; 3];
            for k in 0..3 {
                let side = (i + k) % 3;
                t[side] = block(n, sides[side]);
            }
            vs_raw.push(t[0] / t[1]);
            vs_parsed.push(t[0] / t[2]);
            for (v, x) in ns.iter_mut().zip(t) {
                v.push(x);
            }
            i += 1;
        }
        for v in ns.iter_mut().chain([&mut vs_raw, &mut vs_parsed]) {
            v.sort_by(f64::total_cmp);
        }
        let us = |v: &[f64]| percentile(v, 0.5) / 1000.0;
        println!(
            "paired dpop/{alg:?}: verify_proof / raw_aws_lc median {:.3} (p10 {:.3}, p90 {:.3}); verify_proof / raw_parsed median {:.3} (p10 {:.3}, p90 {:.3}); {} triples of {n}-call blocks; medians: verify_proof {:.2} µs, raw_aws_lc {:.2} µs, raw_parsed {:.2} µs",
            percentile(&vs_raw, 0.5),
            percentile(&vs_raw, 0.1),
            percentile(&vs_raw, 0.9),
            percentile(&vs_parsed, 0.5),
            percentile(&vs_parsed, 0.1),
            percentile(&vs_parsed, 0.9),
            vs_raw.len(),
            us(&ns[0]),
            us(&ns[1]),
            us(&ns[2]),
        );
    }
}
