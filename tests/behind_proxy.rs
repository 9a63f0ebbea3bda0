//! Behind a real TLS-terminating proxy (nginx, HAProxy from Debian): the proxy does mutual TLS
//! and forwards the client certificate in a header; the example API runs in proxy mode
//! (`--plain-http --client-cert-header … --trusted-proxy 127.0.0.1/32`). Plus the spoofing case:
//! the API reached directly from an untrusted address with a forged header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use certbound_dev::DevPki;
use common::process::{free_port, require_program, start_example, wait_for_port, Running};
use common::{answer, support, Answer};

/// The example API in proxy mode, with its dev material and client A's bound token.
struct ProxiedApi {
    _process: Running,
    addr: SocketAddr,
    pki: DevPki,
    token: String,
    dir: PathBuf,
}

impl ProxiedApi {
    fn start(name: &str, header_spec: &str) -> ProxiedApi {
        let dir =
            std::env::temp_dir().join(format!("certbound-proxy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (process, lines) = start_example(
            &[
                "--plain-http",
                "--listen",
                "127.0.0.1:0",
                "--trusted-proxy",
                "127.0.0.1/32",
                "--client-cert-header",
                header_spec,
                "--dev-dir",
                dir.to_str().unwrap(),
            ],
            |l| l.starts_with("token bound to client A"),
        );
        let listen = lines
            .iter()
            .find_map(|l| l.strip_prefix("listening on http://"))
            .unwrap_or_else(|| panic!("{lines:?}"));
        let addr: SocketAddr = listen.split_whitespace().next().unwrap().parse().unwrap();
        let token = std::fs::read_to_string(dir.join("token-a.jwt")).unwrap();
        let (pki, created) = DevPki::load_or_create(&dir).unwrap();
        assert!(!created);
        ProxiedApi {
            _process: process,
            addr,
            pki,
            token,
            dir,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_owned()
    }

    /// The three outcomes of the issue, through the proxy at `proxy_port`.
    async fn check_three_outcomes(&self, proxy_port: u16) {
        let url = format!("https://localhost:{proxy_port}/api/hello");
        let get = |identity| {
            let client = support::https_client(&self.pki.ca.cert_pem, identity).unwrap();
            let req = client.get(&url).bearer_auth(&self.token);
            async move { answer(req.send().await.unwrap()).await }
        };
        let a = get(Some(&self.pki.client_a)).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(
            a.json()["thumbprint"],
            common::thumbprint(&self.pki.client_a).to_string()
        );
        assert_invalid_token(
            &get(Some(&self.pki.client_b)).await,
            "different client certificate",
        );
        assert_invalid_token(&get(None).await, "no client certificate");
    }
}

fn assert_invalid_token(a: &Answer, description: &str) {
    assert_eq!(a.status, 401, "{a:?}");
    let c = a.challenge.as_deref().unwrap();
    assert!(
        c.contains("error=\"invalid_token\"") && c.contains(description),
        "{c}"
    );
}

/// The proxy program (Debian package of the same name), the example API in proxy mode taking
/// `header_spec`, a free port for the proxy, and a directory for its files.
fn proxy_setup(program: &str, header_spec: &str) -> (PathBuf, ProxiedApi, u16, PathBuf) {
    let binary = require_program(program, program);
    let api = ProxiedApi::start(program, header_spec);
    let dir = api.dir.join(program);
    std::fs::create_dir_all(&dir).unwrap();
    (binary, api, free_port(), dir)
}

/// Starts the proxy in the foreground and waits until it listens on `port`.
fn spawn_proxy(binary: &Path, args: &[&str], port: u16) -> Running {
    let child = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    wait_for_port(([127, 0, 0, 1], port).into());
    running
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_forwards_the_escaped_pem() {
    let (nginx, api, port, prefix) = proxy_setup("nginx", "nginx:X-SSL-Client-Cert");
    // The snippet from the README: nginx terminates mTLS without checking the chain (the token
    // binding decides) and forwards the URL-escaped PEM; proxy_set_header replaces any copy the
    // client sent, and an empty value (no certificate) drops the header.
    let conf = format!(
        r#"
daemon off;
worker_processes 1;
master_process off; # one process: stopping it (SIGKILL on drop) leaves no orphaned worker
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_verify_client optional_no_ca;
    location / {{
      proxy_pass http://{api};
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
    }}
  }}
}}
"#,
        prefix = prefix.display(),
        cert = api.path("server.pem"),
        key = api.path("server.key"),
        api = api.addr,
    );
    let conf_path = write(&prefix, "nginx.conf", &conf);
    let _nginx = spawn_proxy(
        &nginx,
        &["-p", prefix.to_str().unwrap(), "-c", &conf_path],
        port,
    );
    api.check_three_outcomes(port).await;

    // A client forging the header behind nginx: nginx replaces it with the real certificate's
    // (client B), or drops it when there is none.
    let forged = urlencode_all(&api.pki.client_a.cert_pem);
    for identity in [Some(&api.pki.client_b), None] {
        let client = support::https_client(&api.pki.ca.cert_pem, identity).unwrap();
        let resp = client
            .get(format!("https://localhost:{port}/api/hello"))
            .bearer_auth(&api.token)
            .header("X-SSL-Client-Cert", &forged)
            .send()
            .await
            .unwrap();
        let a = answer(resp).await;
        assert_eq!(a.status, 401, "{a:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_forwards_base64_der() {
    let (haproxy, api, port, dir) = proxy_setup("haproxy", "base64-der:X-SSL-Client-Cert");
    let combined = write(
        &dir,
        "server-combined.pem",
        &format!("{}{}", api.pki.server.cert_pem, api.pki.server.key_pem),
    );
    // The README snippet: request a client certificate without failing the handshake on chain
    // errors (self-signed clients), delete any client-sent copy, set it only when a certificate
    // was used.
    let conf = format!(
        r#"
global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend tls
  bind 127.0.0.1:{port} ssl crt {combined} verify optional ca-file {ca} ca-ignore-err all crt-ignore-err all alpn http/1.1
  http-request del-header X-SSL-Client-Cert
  http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64] if {{ ssl_c_used }}
  default_backend api
backend api
  server api {api}
"#,
        ca = api.path("ca.pem"),
        api = api.addr,
    );
    let conf_path = write(&dir, "haproxy.cfg", &conf);
    let _haproxy = spawn_proxy(&haproxy, &["-db", "-f", &conf_path], port);
    api.check_three_outcomes(port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_header_from_an_untrusted_peer_is_refused() {
    let api = ProxiedApi::start("spoof", "base64-der:X-SSL-Client-Cert");
    let forged = base64::engine::general_purpose::STANDARD.encode(&api.pki.client_a.cert_der);
    let url = format!("http://{}/api/hello", api.addr);
    // Client A's token, from `from`, with client A's certificate forged into the header (or not).
    let send = |from: [u8; 4], header: Option<&str>| {
        let client = support::http_client_from(from.into()).unwrap();
        let mut req = client.get(&url).bearer_auth(&api.token);
        if let Some(value) = header {
            req = req.header("X-SSL-Client-Cert", value);
        }
        async move { answer(req.send().await.unwrap()).await }
    };
    // Only 127.0.0.1/32 is trusted; this client connects from 127.0.0.2 with client A's
    // certificate in the header and client A's token — everything right but the peer.
    let a = send([127, 0, 0, 2], Some(&forged)).await;
    assert_eq!(a.status, 400, "{a:?}");
    let c = a.challenge.unwrap();
    assert!(
        c.contains("error=\"invalid_request\"") && c.contains("untrusted peer"),
        "{c}"
    );
    // The same request from the trusted address is what a proxy would send: accepted.
    let a = send([127, 0, 0, 1], Some(&forged)).await;
    assert_eq!(a.status, 200, "{a:?}");
    // From the untrusted address without the header: no certificate, so the bound token fails.
    let a = send([127, 0, 0, 2], None).await;
    assert_eq!(a.status, 401, "{a:?}");
}

/// envoyproxy/envoy#32945 over a real socket: a thief holding client A's token and a self-signed
/// certificate whose URI or DNS SAN carries `,Hash=<A's thumbprint>` (or `,Cert=<A's PEM>`), sent
/// through an edge Envoy that writes the header exactly as `EnvoyXfcc` does. Both XFCC modes
/// refuse it; client A's own element is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn xfcc_san_injection_does_not_bind_a_stolen_token() {
    use certbound_dev::envoy::{self_signed_client_with_sans, url_encode, EnvoyXfcc};
    use certbound_dev::KeyKind;

    for (spec, envoy) in [
        (
            "xfcc-hash-only",
            EnvoyXfcc::mesh("spiffe://cluster.local/ns/edge"),
        ),
        (
            "xfcc",
            EnvoyXfcc::with_cert("spiffe://cluster.local/ns/edge"),
        ),
    ] {
        let api = ProxiedApi::start(spec, spec);
        let victim = &api.pki.client_a;
        let hex = common::thumbprint(victim).to_hex();
        let pem = url_encode(&victim.cert_pem);
        let url = format!("http://{}/api/hello", api.addr);
        let client = support::http_client_from([127, 0, 0, 1].into()).unwrap();
        let send = |xfcc: String| {
            let req = client
                .get(&url)
                .bearer_auth(&api.token)
                .header("x-forwarded-client-cert", xfcc);
            async move { answer(req.send().await.unwrap()).await }
        };
        let honest = send(envoy.element(victim)).await;
        assert_eq!(honest.status, 200, "{spec}: {honest:?}");
        for (uris, dns) in [
            (vec![format!("urn:x,Hash={hex}")], vec![]),
            (vec![format!("urn:x;Hash={hex}")], vec![]),
            (vec![format!("urn:x,Cert={pem}")], vec![]),
            (vec![], vec![format!("evil.example,Hash={hex}")]),
        ] {
            let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
            let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
            let thief =
                self_signed_client_with_sans("thief", KeyKind::EcP256, &uris, &dns).unwrap();
            let a = send(envoy.element(&thief)).await;
            assert_eq!(a.status, 400, "{spec} {uris:?} {dns:?}: {a:?}");
            let c = a.challenge.unwrap();
            assert!(c.contains("error=\"invalid_request\""), "{c}");
        }
    }
}

/// The example's plain-HTTP mode under the socket floods an outside check would send: 1,100 idle
/// TCP connections and a slowloris from 127.0.0.2 while the proxy's address (127.0.0.1) sends a
/// forwarded XFCC request — answered 200 within 2 s; the slowloris and the idle connections the
/// server kept are cut at the default 10 s header-read timeout.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_mode_survives_idle_sockets_and_slowloris() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use certbound_dev::envoy::EnvoyXfcc;

    const IDLE: usize = 1_100;
    // The test's ends of the sockets; the example (which inherits the limit) keeps only a few.
    ensure_open_files(IDLE as u64 + 512);
    let api = ProxiedApi::start("flood", "xfcc");
    let from = |ip: [u8; 4]| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        socket.connect(api.addr)
    };

    // A slowloris: a request line, then one header line every 500 ms, never the blank line.
    let started = Instant::now();
    let mut slow = from([127, 0, 0, 2]).await.unwrap();
    slow.write_all(b"GET /api/hello HTTP/1.1\r\nhost: api\r\n")
        .await
        .unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..60 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let line = format!("x-slow-{i}: .\r\n");
            if slow_write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });

    // 1,100 idle sockets from the same address.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(from([127, 0, 0, 2]).await.unwrap());
    }

    // The proxy's request: client A's XFCC element (as an edge Envoy writes it) and token.
    let xfcc = EnvoyXfcc::with_cert("spiffe://cluster.local/ns/edge").element(&api.pki.client_a);
    let client = support::http_client_from([127, 0, 0, 1].into()).unwrap();
    let request = client
        .get(format!("http://{}/api/hello", api.addr))
        .bearer_auth(&api.token)
        .header("x-forwarded-client-cert", xfcc);
    let sent = Instant::now();
    let a = tokio::time::timeout(Duration::from_secs(2), async {
        answer(request.send().await.unwrap()).await
    })
    .await
    .expect("no answer within 2 s while 1,100 idle sockets and a slowloris are open");
    let took = sent.elapsed();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.json()["thumbprint"],
        common::thumbprint(&api.pki.client_a).to_string()
    );

    // The slowloris is cut at the header-read timeout (10 s by default), not before.
    let cut = tokio::time::timeout(
        Duration::from_secs(20),
        slow_read.read_to_end(&mut Vec::new()),
    )
    .await
    .expect("the slowloris was never cut off");
    let slow_for = started.elapsed();
    trickle.abort();
    let _ = cut;
    assert!(slow_for >= Duration::from_secs(10), "{slow_for:?}");

    // Every idle socket is closed by now: most at once (over the per-address limit), the
    // ones the server kept at the header-read timeout.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        for mut socket in idle {
            let mut byte = [0u8; 1];
            assert!(matches!(socket.read(&mut byte).await, Ok(0) | Err(_)));
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle socket was still open");
    println!(
        "example --plain-http: XFCC request from the proxy answered 200 in {took:?} with \
         {IDLE} idle sockets open; slowloris cut after {slow_for:?}"
    );
}

/// Makes sure this process may open `needed` descriptors: raises the soft `RLIMIT_NOFILE` up to
/// the hard limit if it is lower.
fn ensure_open_files(needed: u64) {
    #[cfg(unix)]
    {
        let limit = rlimit::increase_nofile_limit(needed).unwrap();
        assert!(
            limit >= needed,
            "this test opens about {needed} sockets, but the open-file limit is {limit} and \
             cannot be raised further (hard limit); raise it with `ulimit -Hn`"
        );
    }
    #[cfg(not(unix))]
    let _ = needed;
}

/// `$ssl_client_escaped_cert`-style escaping, for forging the header.
fn urlencode_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
