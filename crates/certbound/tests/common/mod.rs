//! Shared by the certbound crate's integration tests.
#![allow(dead_code)]

use certbound::{CertBound, CertBoundLayer, StaticJwks};
use certbound_dev::{jwks_document, SigningKey};

pub const ISSUER: &str = "https://issuer.example/";
pub const AUDIENCE: &str = "https://api.example";

/// A layer for [`ISSUER`] / [`AUDIENCE`] whose only key is `key`'s public key.
pub async fn static_layer(key: &SigningKey) -> CertBoundLayer {
    static_layer_for(key, AUDIENCE).await
}

/// A layer for [`ISSUER`] / `audience` whose only key is `key`'s public key.
pub async fn static_layer_for(key: &SigningKey, audience: &str) -> CertBoundLayer {
    let keys = StaticJwks::from_jwks(jwks_document(&[key]).to_string()).unwrap();
    CertBound::builder()
        .issuer(ISSUER)
        .audience(audience)
        .key_source(keys)
        .build()
        .await
        .unwrap()
}

/// What the code under test logged, captured by a real `tracing-subscriber` fmt layer (plain
/// text, one event per line) installed as this thread's default subscriber.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing every event at `TRACE` and above on this thread (use a
    /// `current_thread` runtime); capturing stops when the guard is dropped.
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(logs.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The captured lines.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The captured lines at `level` (`"ERROR"`, `"WARN"`, …) that contain `needle`.
    pub fn at(&self, level: &str, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.trim_start().starts_with(level) && l.contains(needle))
            .collect()
    }

    /// Forgets what was captured so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
