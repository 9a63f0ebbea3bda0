//! `certbound serve` as a real process, a real echo upstream (hyper), real HTTPS clients.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certbound_core::{Algorithm, Thumbprint};
use certbound_dev::dpop::{dpop_bound_claims, DpopKey};
use certbound_dev::{bound_claims, jwks_document, CertAndKey, DevPki, SigningKey};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const ISS: &str = "https://issuer.test/";
pub const AUD: &str = "https://api.test";

/// Dev certificates, an issuer key and its JWKS file, in a private temporary directory.
pub struct Setup {
    pub dir: PathBuf,
    pub pki: DevPki,
    pub signer: SigningKey,
    pub jwks: PathBuf,
}

impl Drop for Setup {
    /// Removes the directory (keys, logs) — kept when the test failed, for its logs.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Setup {
    pub fn new(name: &str) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("certbound-serve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (pki, _) = DevPki::load_or_create(&dir).unwrap();
        let signer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, jwks_document(&[&signer]).to_string()).unwrap();
        Setup {
            dir,
            pki,
            signer,
            jwks,
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    /// The issuer and key flags.
    pub fn issuer_args(&self) -> Vec<String> {
        [
            "--issuer",
            ISS,
            "--audience",
            AUD,
            "--jwks-file",
            self.jwks.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// A token bound to `cert` (with a subject, client id and scope).
    pub fn token_for(&self, cert: &CertAndKey) -> String {
        let mut claims = bound_claims(ISS, AUD, &Thumbprint::of_der(&cert.cert_der));
        claims["client_id"] = "client-a-app".into();
        claims["scope"] = "orders:read orders:write".into();
        self.signer.sign(&claims).unwrap()
    }

    /// A token bound to a DPoP key.
    pub fn dpop_token(&self, key: &DpopKey) -> String {
        self.signer
            .sign(&dpop_bound_claims(ISS, AUD, &key.jkt()))
            .unwrap()
    }

    pub fn client(&self, identity: Option<&CertAndKey>) -> reqwest::Client {
        https_client(&self.pki.ca.cert_pem, identity)
    }
}

/// A rustls client configuration trusting `ca_pem`, presenting `identity`.
pub fn client_tls_config(ca_pem: &str, identity: Option<&CertAndKey>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        let cert: CertificateDer<'static> = cert.unwrap();
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// An HTTPS client (HTTP/2 and HTTP/1.1) trusting `ca_pem`, presenting `identity`.
pub fn https_client(ca_pem: &str, identity: Option<&CertAndKey>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls_config(ca_pem, identity))
        .build()
        .unwrap()
}

/// A plain-HTTP client (reqwest needs a rustls configuration even so).
pub fn http_client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The request's trailers, if it had any.
    pub trailers: Option<HeaderMap>,
}

/// A real HTTP/1.1 + h2c upstream on 127.0.0.1: records every request and echoes its body;
/// `/slow` answers after `slow`.
pub struct Echo {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    pub async fn start(slow: Duration) -> Echo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move {
                            let (parts, body) = req.into_parts();
                            let (body, trailers) = match body.collect().await {
                                Ok(collected) => {
                                    let trailers = collected.trailers().cloned();
                                    (collected.to_bytes(), trailers)
                                }
                                Err(_) => (Bytes::new(), None),
                            };
                            let slow_path = parts.uri.path() == "/slow";
                            recorded.lock().unwrap().push(Seen {
                                method: parts.method,
                                uri: parts.uri,
                                version: parts.version,
                                headers: parts.headers,
                                body: body.clone(),
                                trailers,
                            });
                            if slow_path {
                                tokio::time::sleep(slow).await;
                            }
                            let mut response = Response::new(Full::new(body));
                            response
                                .headers_mut()
                                .insert("x-upstream", "echo".parse().unwrap());
                            response
                                .headers_mut()
                                .insert("connection", "x-upstream-hop".parse().unwrap());
                            response
                                .headers_mut()
                                .insert("x-upstream-hop", "1".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Echo {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// `certbound serve` running as a real process; killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stderr: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `certbound serve ARGS…` and waits (at most 60 s) for its "listening on" line.
    pub fn start(args: &[String], log_dir: &Path) -> Served {
        Self::start_with_env(args, log_dir, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(args: &[String], log_dir: &Path, env: &[(&str, &str)]) -> Served {
        let stderr_path = log_dir.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_certbound"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "certbound serve did not start: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            };
            if let Some(rest) = line.strip_prefix("admin on http://") {
                admin = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
            let addr = line
                .strip_prefix("listening on https://")
                .or_else(|| line.strip_prefix("listening on http://"));
            if let Some(addr) = addr {
                return Served {
                    child,
                    addr: addr.trim().parse().unwrap(),
                    admin,
                    stderr: stderr_path,
                };
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most 30 s) for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("certbound serve did not exit");
    }
}

/// Strings from `&str`s.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}
