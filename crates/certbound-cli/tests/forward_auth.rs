//! `certbound serve --forward-auth` behind real edge proxies from Debian: nginx `auth_request`
//! and Caddy `forward_auth`. The edge terminates mutual TLS and forwards the client
//! certificate; certbound decides about the ORIGINAL method and URI (DPoP `htm`/`htu`).
//! `cargo xtask test` installs nginx and caddy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certbound_core::Algorithm;
use certbound_dev::dpop::DpopKey;
use common::serve::{strings, Echo, Served, Setup};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is required for this test: apt-get install -y {name} (`cargo xtask test` installs it)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// certbound in forward-auth mode behind a proxy on 127.0.0.1 that forwards the certificate
/// in `header_spec`; /health is public, /admin needs admin:write; plus `extra`.
fn forward_auth(setup: &Setup, header_spec: &str, extra: &[&str]) -> Served {
    let mut args = strings(&[
        "--forward-auth",
        "--plain-http",
        "--listen",
        "127.0.0.1:0",
        "--client-cert-header",
        header_spec,
        "--trusted-proxy",
        "127.0.0.1/32",
        "--dpop",
        "--public-path",
        "/health",
        "--path-scope",
        "/admin=admin:write",
    ]);
    args.extend(strings(extra));
    args.extend(setup.issuer_args());
    Served::start(&args, &setup.dir)
}

/// What every edge must get right, through the edge at `port`.
async fn check_edge(setup: &Setup, echo: &Echo, port: u16, edge: &str, certbound: &Served) {
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let token = setup.token_for(&setup.pki.client_a);

    // Client A, bound token, forging the identity header: 200, and the upstream saw the
    // verified subject.
    let a = setup.client(Some(&setup.pki.client_a));
    let forged_cert = format!(":{}:", STANDARD.encode(&setup.pki.client_b.cert_der));
    let res = a
        .get(url("/api/orders?id=7"))
        .bearer_auth(&token)
        .header("x-certbound-subject", "admin")
        .header("x-certbound-issuer", "https://evil.example/")
        .header("client-cert", &forged_cert)
        .header("client-cert-chain", &forged_cert)
        .header("x_certbound_subject", "admin")
        .header("client_cert", &forged_cert)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{edge}");
    let seen = echo.last();
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/api/orders?id=7"
    );
    assert_eq!(seen.headers["x-certbound-subject"], "user-123", "{edge}");
    assert_eq!(
        seen.headers["x-certbound-client-id"], "client-a-app",
        "{edge}"
    );
    assert_eq!(
        seen.headers["x-certbound-issuer"],
        common::serve::ISS,
        "{edge}"
    );
    assert_no_forged_identity(&seen.headers, edge);

    // A public path: no token needed, and forged identity headers never reach the upstream
    // (the auth answer has none to copy; the edge's recipe deletes the client's copies).
    let res = setup
        .client(None)
        .get(url("/health"))
        .header("x-certbound-subject", "admin")
        .header("x-certbound-issuer", "https://evil.example/")
        .header("client-cert", &forged_cert)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{edge}: {}", certbound.log());
    let seen = echo.last();
    assert_eq!(seen.uri.path(), "/health");
    assert!(
        seen.headers.get("x-certbound-subject").is_none(),
        "{edge}: a forged subject reached the upstream on a public path: {:?}",
        seen.headers
    );
    assert_no_forged_identity(&seen.headers, edge);
    let before = echo.count();

    // The client names a public "original request" in the other family's headers: with a
    // named family only the edge's own is read (DELETE /admin/users/7 without a token: 401);
    // with auto both families are present and the subrequest is refused (400; nginx: 500).
    let res = setup
        .client(None)
        .delete(url("/admin/users/7"))
        .header("x-original-uri", "/health")
        .header("x-original-method", "GET")
        .header("x-forwarded-uri", "/health")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        [400, 401, 500].contains(&res.status().as_u16()),
        "{edge}: {}: {}",
        res.status(),
        certbound.log()
    );
    assert_eq!(
        echo.count(),
        before,
        "{edge}: a forged original request was let through"
    );

    // Paths the upstream could read as another path: `..;` would borrow /health's public
    // rule, the others would dodge /admin's scope rule. Refused (400 from certbound; nginx
    // turns an auth answer other than 2xx/401/403 into 500) and never forwarded.
    for sneaky in ["/health/..;/admin/users", "/health/.;/admin/users"] {
        let res = setup.client(None).get(url(sneaky)).send().await.unwrap();
        assert!(
            res.status() == 400 || res.status() == 500,
            "{edge}: {sneaky}: {}",
            res.status()
        );
    }
    for sneaky in ["/%61dmin/users", "//admin/users", "/admin;x/users"] {
        let res = a.get(url(sneaky)).bearer_auth(&token).send().await.unwrap();
        assert!(
            [400, 403, 500].contains(&res.status().as_u16()),
            "{edge}: {sneaky}: {}",
            res.status()
        );
    }
    assert_eq!(
        echo.count(),
        before,
        "{edge}: an ambiguous path was forwarded"
    );

    // Client B with A's token, and no certificate: 401 with the challenge, nothing forwarded.
    for identity in [Some(&setup.pki.client_b), None] {
        let res = setup
            .client(identity)
            .get(url("/api/orders"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        assert_eq!(
            status,
            401,
            "{edge}, certificate: {}: {body} {challenge:?}\n{}",
            identity.is_some(),
            certbound.log()
        );
        let challenge = challenge.unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{edge}: {challenge}"
        );
    }
    assert_eq!(
        echo.count(),
        before,
        "{edge}: a refused request reached the upstream"
    );

    // DPoP: the proof names the ORIGINAL method and URL, not the subrequest's.
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let dpop_token = setup.dpop_token(&key);
    let plain_client = setup.client(None);
    let send = |method: reqwest::Method, proof: String| {
        plain_client
            .request(method, url("/api/orders?id=8"))
            .header("authorization", format!("DPoP {dpop_token}"))
            .header("dpop", proof)
            .body("{}")
            .send()
    };
    let target = url("/api/orders");
    let ok = send(
        reqwest::Method::POST,
        key.proof("POST", &target, Some(&dpop_token), None).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200, "{edge}");
    assert_eq!(echo.last().method, "POST");
    let before = echo.count();
    // A proof for GET used on a POST, and one for another path: refused.
    for (method, proof_url) in [("GET", target.clone()), ("POST", url("/api/admin"))] {
        let res = send(
            reqwest::Method::POST,
            key.proof(method, &proof_url, Some(&dpop_token), None)
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 401, "{edge}: proof for {method} {proof_url}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains("invalid_dpop_proof"),
            "{edge}: {challenge}"
        );
    }
    assert_eq!(echo.count(), before, "{edge}");

    // The client's own Forwarded / X-Forwarded-Host do not move htu.
    let evil = "https://evil.example/api/orders";
    let res = plain_client
        .post(url("/api/orders"))
        .header("authorization", format!("DPoP {dpop_token}"))
        .header(
            "dpop",
            key.proof("POST", evil, Some(&dpop_token), None).unwrap(),
        )
        .header("forwarded", "host=evil.example;proto=https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "{edge}: htu taken from the client's Forwarded"
    );
    assert_eq!(echo.count(), before, "{edge}");
}

/// No client-sent identity header in any spelling reached the upstream.
fn assert_no_forged_identity(headers: &http::HeaderMap, edge: &str) {
    for name in [
        "client-cert",
        "client-cert-chain",
        "x_certbound_subject",
        "client_cert",
    ] {
        assert!(
            headers.get(name).is_none(),
            "{edge}: {name} reached the upstream: {:?}",
            headers.get(name)
        );
    }
    if let Some(issuer) = headers.get("x-certbound-issuer") {
        assert_eq!(issuer, common::serve::ISS, "{edge}: a forged issuer");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_with_mtls_and_dpop_clients() {
    let nginx = require_program("nginx");
    let setup = Setup::new("fa-nginx");
    let echo = Echo::start(Duration::ZERO).await;
    let port = free_port();
    let public_url = format!("https://localhost:{port}");
    let certbound = forward_auth(
        &setup,
        "nginx:X-SSL-Client-Cert",
        &[
            "--forward-auth-headers",
            "nginx",
            "--public-url",
            &public_url,
        ],
    );
    let prefix = setup.dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    // docs/serve.md's nginx snippet: the subrequest names the original request and carries
    // the client certificate (and none of the client's Forwarded / X-Forwarded-Prefix); every
    // identity header is set on the proxied request (proxy_set_header replaces any copy the
    // client sent, an empty value drops it).
    let conf = format!(
        r#"
daemon off;
worker_processes 1;
master_process off;
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
      auth_request /_certbound;
      auth_request_set $cb_subject $upstream_http_x_certbound_subject;
      auth_request_set $cb_client_id $upstream_http_x_certbound_client_id;
      auth_request_set $cb_scope $upstream_http_x_certbound_scope;
      auth_request_set $cb_issuer $upstream_http_x_certbound_issuer;
      proxy_set_header X-Certbound-Subject $cb_subject;
      proxy_set_header X-Certbound-Client-Id $cb_client_id;
      proxy_set_header X-Certbound-Scope $cb_scope;
      proxy_set_header X-Certbound-Issuer $cb_issuer;
      proxy_set_header Client-Cert "";
      proxy_set_header Client-Cert-Chain "";
      proxy_pass http://{echo};
    }}
    location = /_certbound {{
      internal;
      proxy_pass http://{certbound};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
      proxy_set_header Forwarded "";
      proxy_set_header X-Forwarded-Prefix "";
    }}
  }}
}}
"#,
        prefix = prefix.display(),
        cert = setup.path("server.pem"),
        key = setup.path("server.key"),
        echo = echo.addr,
        certbound = certbound.addr,
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(nginx)
        .args([
            "-p",
            prefix.to_str().unwrap(),
            "-c",
            conf_path.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _nginx = Running(child);
    wait_for_port(([127, 0, 0, 1], port).into());
    check_edge(&setup, &echo, port, "nginx", &certbound).await;

    // The forward-auth endpoint itself, from a peer that is not the edge: 403, whatever it
    // claims the original request was.
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(common::serve::client_tls_config(
            &setup.pki.ca.cert_pem,
            None,
        ))
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let res = client
        .get(format!("http://{}/auth", certbound.addr))
        .header("x-original-uri", "/api/orders")
        .bearer_auth(setup.token_for(&setup.pki.client_a))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_with_mtls_and_dpop_clients() {
    let caddy = require_program("caddy");
    let setup = Setup::new("fa-caddy");
    let echo = Echo::start(Duration::ZERO).await;
    let port = free_port();
    // The defaults, as checks kept outside the repository drive it: --forward-auth-headers
    // auto, htu from Caddy's X-Forwarded-Proto/-Host.
    let certbound = forward_auth(&setup, "base64-der:X-Client-Cert", &[]);
    let home = setup.dir.join("caddy");
    std::fs::create_dir_all(&home).unwrap();
    // docs/serve.md's Caddyfile: Caddy requests (does not verify) a client certificate and
    // forwards its DER in X-Client-Cert; forward_auth sends X-Forwarded-Method/-Uri and copies
    // the identity headers onto the proxied request — after every client-sent copy (and
    // Forwarded, X-Forwarded-Prefix, any name with `_`) was deleted.
    let conf = format!(
        r#"{{
  admin off
  auto_https disable_redirects
  skip_install_trust
}}
https://localhost:{port} {{
  tls {cert} {key} {{
    client_auth {{
      mode request
    }}
  }}
  # Identity headers come only from certbound's answer: delete the client's copies first
  # (copy_headers keeps them when the answer has none), and what must not move DPoP's htu.
  request_header -X-Certbound-*
  request_header -Client-Cert*
  request_header -*_*
  request_header -Forwarded
  request_header -X-Forwarded-Prefix
  # A header missing from the answer (a public path has none) is copied by Caddy 2.6 as the
  # literal placeholder text: delete those after forward_auth.
  @no_subject header_regexp X-Certbound-Subject ^.http\.reverse_proxy\.
  @no_client_id header_regexp X-Certbound-Client-Id ^.http\.reverse_proxy\.
  @no_scope header_regexp X-Certbound-Scope ^.http\.reverse_proxy\.
  @no_issuer header_regexp X-Certbound-Issuer ^.http\.reverse_proxy\.
  # Without a client certificate Caddy 2.6 leaves the placeholder unreplaced (it would send
  # its literal text), so the header is set only when the value is base64, removed otherwise.
  @cert vars_regexp {{http.request.tls.client.certificate_der_base64}} ^[A-Za-z0-9+/]+=*$
  handle @cert {{
    forward_auth 127.0.0.1:{certbound} {{
      uri /auth
      header_up X-Client-Cert {{http.request.tls.client.certificate_der_base64}}
      copy_headers X-Certbound-Subject X-Certbound-Client-Id X-Certbound-Scope X-Certbound-Issuer
    }}
    request_header @no_subject -X-Certbound-Subject
    request_header @no_client_id -X-Certbound-Client-Id
    request_header @no_scope -X-Certbound-Scope
    request_header @no_issuer -X-Certbound-Issuer
    reverse_proxy {echo}
  }}
  handle {{
    forward_auth 127.0.0.1:{certbound} {{
      uri /auth
      header_up -X-Client-Cert
      copy_headers X-Certbound-Subject X-Certbound-Client-Id X-Certbound-Scope X-Certbound-Issuer
    }}
    request_header @no_subject -X-Certbound-Subject
    request_header @no_client_id -X-Certbound-Client-Id
    request_header @no_scope -X-Certbound-Scope
    request_header @no_issuer -X-Certbound-Issuer
    reverse_proxy {echo}
  }}
}}
"#,
        cert = setup.path("server.pem"),
        key = setup.path("server.key"),
        certbound = certbound.addr.port(),
        echo = echo.addr,
    );
    let conf_path = home.join("Caddyfile");
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(home.join("caddy.log")).unwrap();
    let child = Command::new(caddy)
        .args([
            "run",
            "--adapter",
            "caddyfile",
            "--config",
            conf_path.to_str().unwrap(),
        ])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _caddy = Running(child);
    wait_for_port(([127, 0, 0, 1], port).into());
    check_edge(&setup, &echo, port, "caddy", &certbound).await;
}

#[test]
fn forward_auth_header_family_flag() {
    let setup = Setup::new("fa-flags");
    let base = |extra: &[&str]| {
        let mut args = strings(&[
            "serve",
            "--check-config",
            "--forward-auth",
            "--plain-http",
            "--client-cert-header",
            "nginx:X-SSL-Client-Cert",
            "--trusted-proxy",
            "127.0.0.1/32",
            "--dpop",
        ]);
        args.extend(setup.issuer_args());
        args.extend(strings(extra));
        args
    };
    // The example's flags alone still start (auto; htu from the edge's X-Forwarded-*).
    let run = common::certbound(base(&[]));
    assert_eq!(run.code, 0, "{run:?}");
    for family in ["auto", "nginx", "forwarded"] {
        let run = common::certbound(base(&["--forward-auth-headers", family]));
        assert_eq!(run.code, 0, "{family}: {run:?}");
    }
    let run = common::certbound(base(&["--forward-auth-headers", "both"]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--forward-auth-headers"), "{run:?}");
}

/// An edge that passes the client's own headers through (as nginx, Caddy and Traefik do with
/// any header they do not set): played here by a real client on 127.0.0.1 (a trusted proxy).
#[tokio::test(flavor = "multi_thread")]
async fn what_an_edge_passes_through_cannot_rename_the_original_request() {
    let setup = Setup::new("fa-passthrough");
    let served = forward_auth(&setup, "nginx:X-SSL-Client-Cert", &[]);
    let edge = common::serve::http_client();
    let auth = format!("http://{}/auth", served.addr);
    let key = DpopKey::generate(Algorithm::ES256).unwrap();
    let token = setup.dpop_token(&key);
    let real = "https://api.test/api/orders";
    let send = |proof: String, extra: &'static [(&'static str, &'static str)]| {
        let mut req = edge
            .get(&auth)
            .header("x-original-method", "POST")
            .header("x-original-uri", "/api/orders")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "api.test")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        req.send()
    };
    // The client's Forwarded / X-Forwarded-Prefix, passed through: htu stays the edge's.
    let evil = "https://evil.example/x/api/orders";
    let forged: &'static [(&'static str, &'static str)] = &[
        ("forwarded", "host=evil.example;proto=https"),
        ("x-forwarded-prefix", "/x"),
    ];
    let res = send(key.proof("POST", evil, Some(&token), None).unwrap(), forged)
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "{}", served.log());
    let res = send(key.proof("POST", real, Some(&token), None).unwrap(), forged)
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", served.log());
    // The client's X-Forwarded-Uri next to the edge's X-Original-URI (auto): refused.
    let res = send(
        key.proof("POST", real, Some(&token), None).unwrap(),
        &[
            ("x-forwarded-uri", "/health"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 400, "{}", served.log());
}
