//! Running the example binary and external programs (nginx, HAProxy) from tests.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/protected_api`, built by `cargo test` alongside the tests.
pub fn example_binary() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
        .join(format!("protected_api{}", std::env::consts::EXE_SUFFIX))
}

/// A child process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example with `args`; returns it and its stdout lines up to the first line for
/// which `done` is true (at most 60 s).
pub fn start_example(args: &[&str], done: impl Fn(&str) -> bool) -> (Running, Vec<String>) {
    let mut child = Command::new(example_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the protected_api example (built by cargo test)");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let finished = done(&line);
        lines.push(line);
        if finished || Instant::now() > deadline {
            break;
        }
    }
    (running, lines)
}

/// A loopback port that was free a moment ago (for programs that take a port in a config file).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `addr` (at most 20 s).
pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The full path of a program, or a panic that says how to install it.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is required for this test: apt-get install -y {package} (`cargo xtask test` installs it)");
}
