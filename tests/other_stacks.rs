//! The same certbound layer in front of other stacks: a tonic gRPC service
//! (`examples/tonic_health.rs`) and plain hyper + hyper-util without axum
//! (`examples/hyper_only.rs`). Each example's story runs here in-process — the example's own
//! `run`, which is all its `main` does — and the table it prints is checked row by row.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Each example is its own crate with its own `mod support;`; included side by side here, the
// shared module is loaded once per example.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/tonic_health.rs"]
mod tonic_example;

#[allow(dead_code)]
#[path = "../examples/hyper_only.rs"]
mod hyper_example;

use certbound::Rejection;

/// The printed row for `label`, split into its columns after the label.
fn row<'a>(printed: &'a str, label: &str) -> Vec<&'a str> {
    let rows: Vec<&str> = printed.lines().filter(|l| l.starts_with(label)).collect();
    assert_eq!(rows.len(), 1, "one row for {label:?} in:\n{printed}");
    rows[0][label.len()..].split_whitespace().collect()
}

/// The `cnf.x5t#S256` the example printed for client A.
fn printed_thumbprint(printed: &str) -> &str {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("token bound to client A: cnf.x5t#S256 = "))
        .unwrap_or_else(|| panic!("no thumbprint line in:\n{printed}"))
}

/// The tail of a row from the column that starts with `from` (the challenge has spaces).
fn rest_from(columns: &[&str], from: usize) -> String {
    columns[from..].join(" ")
}

fn assert_invalid_token(challenge: &str, reason: Rejection, printed: &str) {
    assert!(
        challenge.starts_with("Bearer realm=\"https://api.example\""),
        "{challenge}\n{printed}"
    );
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{challenge}\n{printed}"
    );
    assert!(
        challenge.contains(&format!("error_description=\"{}\"", reason.description())),
        "want {}: {challenge}\n{printed}",
        reason.code()
    );
}

#[tokio::test]
async fn tonic_health_example_serves_client_a_and_refuses_b_and_no_cert_as_unauthenticated() {
    let mut out = Vec::new();
    let result = tonic_example::run(&mut out).await;
    let printed = String::from_utf8(out).unwrap();
    if let Err(e) = result {
        panic!("the example failed: {e}\nprinted:\n{printed}");
    }
    let [a, b, none] = tonic_example::PLAYERS;

    // Client A, its own token: HTTP 200, gRPC OK, the health service answers SERVING.
    assert_eq!(row(&printed, a), ["200", "Ok", "SERVING"], "{printed}");

    // Client B with A's token, and no certificate: the layer's 401, which tonic reports as
    // Unauthenticated — with the layer's challenge in the status metadata.
    for (label, reason) in [
        (b, Rejection::BindingMismatch),
        (none, Rejection::MissingClientCertificate),
    ] {
        let columns = row(&printed, label);
        assert_eq!(
            columns[..3],
            ["401", "Unauthenticated", "WWW-Authenticate:"]
        );
        assert_invalid_token(&rest_from(&columns, 3), reason, &printed);
    }
}

#[tokio::test]
async fn hyper_only_example_accepts_client_a_and_refuses_b_and_no_cert_with_401() {
    let mut out = Vec::new();
    let result = hyper_example::run(&mut out).await;
    let printed = String::from_utf8(out).unwrap();
    if let Err(e) = result {
        panic!("the example failed: {e}\nprinted:\n{printed}");
    }
    let [a, b, none] = hyper_example::PLAYERS;

    // Client A, its own token: 200 over HTTP/2, and the handler saw the verified token.
    let columns = row(&printed, a);
    assert_eq!(columns[..2], ["200", "HTTP/2.0"], "{printed}");
    let body: serde_json::Value = serde_json::from_str(&rest_from(&columns, 2)).unwrap();
    assert_eq!(body["sub"], "user-123", "{printed}");
    assert_eq!(body["client_id"], "client-a", "{printed}");
    assert_eq!(
        body["thumbprint"],
        printed_thumbprint(&printed),
        "{printed}"
    );

    // Client B with A's token, and no certificate: 401 invalid_token, never reaching the handler.
    for (label, reason) in [
        (b, Rejection::BindingMismatch),
        (none, Rejection::MissingClientCertificate),
    ] {
        let columns = row(&printed, label);
        assert_eq!(columns[..2], ["401", "HTTP/2.0"], "{printed}");
        assert_invalid_token(&rest_from(&columns, 2), reason, &printed);
    }
}
