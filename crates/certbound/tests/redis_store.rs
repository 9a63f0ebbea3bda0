//! `RedisReplayStore` against a real Redis (Debian's `redis-server`, started here on a free
//! loopback port without persistence): first use once, shared between store instances with one
//! prefix, forgotten after the TTL; a hung Redis times out and a dead one is unavailable —
//! errors, never `Ok(true)` — and the store recovers when Redis is back.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certbound::replay::{RedisReplayStore, ReplayStore, ReplayStoreError};

/// redis-server on 127.0.0.1:`port`; killed (SIGKILL) when dropped.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Self {
        let program = ["/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("redis-server is required: apt-get install -y redis-server (`cargo xtask test` installs it)");
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn key(n: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = n;
    k[31] = 0xa5;
    k
}

const TTL: Duration = Duration::from_secs(121);

#[tokio::test(flavor = "multi_thread")]
async fn first_use_once_shared_by_prefix_and_forgotten_after_the_ttl() {
    let port = free_port();
    let _redis = Redis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let a = RedisReplayStore::connect(url.clone()).await.unwrap();
    let b = RedisReplayStore::connect(url.clone()).await.unwrap(); // another replica
    let other_api = RedisReplayStore::builder(url.clone())
        .key_prefix("other-api:")
        .connect()
        .await
        .unwrap();
    assert_eq!(a.key_prefix(), "certbound:dpop:");
    assert_eq!(
        a.redis_key(&key(1)),
        format!("certbound:dpop:01{}a5", "00".repeat(30))
    );

    assert_eq!(a.first_use(key(1), TTL).await, Ok(true));
    assert_eq!(a.first_use(key(1), TTL).await, Ok(false));
    assert_eq!(b.first_use(key(1), TTL).await, Ok(false));
    assert_eq!(other_api.first_use(key(1), TTL).await, Ok(true));

    // Of many concurrent first uses of one key, exactly one wins.
    let wins = futures_util::future::join_all((0..20).map(|i| {
        let store = if i % 2 == 0 { &a } else { &b };
        store.first_use(key(2), TTL)
    }))
    .await
    .into_iter()
    .filter(|r| *r == Ok(true))
    .count();
    assert_eq!(wins, 1);

    // Forgotten once the TTL has passed.
    assert_eq!(
        a.first_use(key(3), Duration::from_millis(200)).await,
        Ok(true)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        a.first_use(key(3), Duration::from_millis(200)).await,
        Ok(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_or_dead_redis_is_unavailable_never_a_first_use_and_it_recovers() {
    let port = free_port();
    let redis = Redis::start(port);
    let store = RedisReplayStore::builder(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    assert_eq!(store.first_use(key(1), TTL).await, Ok(true));

    // Hung (SIGSTOP): no answer within the call timeout.
    redis.signal("-STOP");
    let answer = store.first_use(key(2), TTL).await;
    redis.signal("-CONT");
    match answer {
        Err(ReplayStoreError::Unavailable(why)) => {
            assert!(why.contains("did not answer within 200 ms"), "{why}")
        }
        other => panic!("a hung Redis answered {other:?}"),
    }
    // Answering again: the late reply to the timed-out call does not confuse the next one.
    assert_eq!(store.first_use(key(3), TTL).await, Ok(true));
    assert_eq!(store.first_use(key(3), TTL).await, Ok(false));

    // Dead (SIGKILL): every call is an error, a replay included.
    drop(redis);
    for k in [key(4), key(3)] {
        let answer = store.first_use(k, TTL).await;
        assert!(
            matches!(answer, Err(ReplayStoreError::Unavailable(_))),
            "{answer:?}"
        );
    }

    // Back (empty): the store reconnects by itself.
    let _redis = Redis::start(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 10u8;
    loop {
        n = n.wrapping_add(1);
        match store.first_use(key(n), TTL).await {
            Ok(true) => break,
            Err(ReplayStoreError::Unavailable(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no reconnection 30 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.first_use(key(n), TTL).await, Ok(false));
}
