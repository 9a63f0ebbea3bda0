//! The layer's counters, read through a real `metrics` recorder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;

use certbound::tls::PeerCertificate;
use certbound::ClientCertificate;
use certbound_core::Algorithm;
use certbound_dev::{bound_claims, SigningKey};
use http::{Request, Response};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tower::{service_fn, Layer, ServiceExt};

#[tokio::test(flavor = "current_thread")]
async fn accepted_and_rejected_requests_are_counted_by_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let layer = common::static_layer(&key).await;
    let service = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let cert_a = ClientCertificate::from_der(b"client a".to_vec());
    let cert_b = ClientCertificate::from_der(b"client b".to_vec());
    let token = key
        .sign(&bound_claims(
            "https://issuer.example/",
            "https://api.example",
            cert_a.thumbprint(),
        ))
        .unwrap();
    let request = |cert: &ClientCertificate| {
        let mut req = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap();
        let peer = PeerCertificate::new("127.0.0.1:1".parse().unwrap(), Some(cert.clone()));
        req.extensions_mut().insert(peer);
        req
    };
    let status = |cert| {
        let response = service.clone().oneshot(request(cert));
        async move { response.await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&cert_a).await, 200);
    assert_eq!(status(&cert_a).await, 200);
    assert_eq!(status(&cert_b).await, 401);

    // One snapshot: reading it resets the debugging recorder's values.
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, label: Option<(&str, &str)>| -> u64 {
        snapshot
            .iter()
            .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == name)
            .filter(|(key, ..)| {
                label
                    .is_none_or(|(k, v)| key.key().labels().any(|l| l.key() == k && l.value() == v))
            })
            .map(|(.., value)| {
                if let DebugValue::Counter(n) = value {
                    *n
                } else {
                    0
                }
            })
            .sum()
    };
    use certbound::layer::metric_names::{ACCEPTED, REJECTED, SIGNATURE_VERIFICATIONS};
    assert_eq!(counter(ACCEPTED, None), 2);
    // The token was verified once; the two later requests were answered from the cache.
    assert_eq!(counter(SIGNATURE_VERIFICATIONS, None), 1);
    assert_eq!(counter(REJECTED, Some(("reason", "binding_mismatch"))), 1);
    assert_eq!(counter(REJECTED, None), 1);
}
