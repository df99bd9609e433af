//! The release sidecar binary as a child process on free loopback ports, for the benchmarks
//! (each includes this file with `#[path]`).

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::{Instant, sleep, timeout};

/// How long the sidecar may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The release sidecar binary running on free loopback ports; killed on drop.
pub struct SidecarProcess {
    child: Option<Child>,
    pub pid: u32,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl SidecarProcess {
    /// Starts the sidecar with `RUST_LOG=warn`, so that the per-request log line costs nothing.
    pub async fn start(manifests: &Path) -> Self {
        Self::start_logging(manifests, "warn").await
    }

    /// Starts the sidecar with `RUST_LOG` set to `level`.
    pub async fn start_logging(manifests: &Path, level: &str) -> Self {
        let binary = sidecar_binary();
        let [data, admin] = free_ports();
        let log = manifests.join("sidecar.log");
        let stderr = File::create(&log).expect("create the sidecar log");
        let child = Command::new(&binary)
            .arg("--manifests")
            .arg(manifests)
            .args(["--listen", &data.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--debug-listen", ""])
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self {
            pid: child.id(),
            child: Some(child),
            data,
            admin,
            log,
        }
    }

    /// Asks the process to stop (SIGTERM), waits for it and returns what it wrote to stderr.
    pub fn terminate(mut self) -> String {
        self.sigterm();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Like [`Self::terminate`], but counts the lines of stderr that contain `needle` without
    /// holding the log in memory (an hour's request log is gigabytes).
    pub fn terminate_counting_lines(mut self, needle: &str) -> u64 {
        self.sigterm();
        let Ok(file) = File::open(&self.log) else {
            return 0;
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains(needle))
            .count() as u64
    }

    fn sigterm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Kills the process and returns what it wrote to stderr.
    pub fn stop(mut self) -> String {
        self.kill();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `SWITCHYARD_SIDECAR_BIN`, else the workspace's `target/release/switchyard-sidecar`.
pub fn sidecar_binary() -> PathBuf {
    let binary = std::env::var_os("SWITCHYARD_SIDECAR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("release/switchyard-sidecar")
        });
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --release -p switchyard-sidecar` first (bench/run.sh does)",
        binary.display()
    );
    binary
}

/// Two free loopback ports (held together while picking, so they differ).
pub fn free_ports() -> [SocketAddr; 2] {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    [a, b].map(|l| l.local_addr().expect("a bound address"))
}

/// Polls `GET /readyz` on the admin port until it answers 200.
pub async fn wait_ready(client: &Client<HttpConnector, Full<Bytes>>, sidecar: &mut SidecarProcess) {
    let uri: Uri = format!("http://{}/readyz", sidecar.admin)
        .parse()
        .expect("a valid URI");
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        let request = Request::get(uri.clone())
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        if let Ok(Ok(response)) = timeout(Duration::from_secs(1), client.request(request)).await
            && response.status() == StatusCode::OK
        {
            return;
        }
        if let Some(status) = sidecar.exited() {
            let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
            panic!("the sidecar exited ({status}) before it was ready:\n{log}");
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("the sidecar was not ready within {READY_TIMEOUT:?}");
}
