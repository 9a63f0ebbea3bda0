#![no_main]
//! See `fuzz/src/harness.rs` (`introspection`) for what this target checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| certbound_fuzz::harness::introspection(data));
