//! Fuzz harnesses for certbound-core. The same functions run as plain tests in
//! `crates/certbound-core/tests/corpus_replay.rs`, which includes `harness.rs` by path.
#![forbid(unsafe_code)]

pub mod harness;
