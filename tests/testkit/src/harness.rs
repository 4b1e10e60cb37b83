//! Starts and stops the real `plantd` binary in a temporary data directory, and talks to it
//! over HTTPS trusting only the certificate it made.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `plantd` binary cargo built beside the test or benchmark that runs (both live in
/// `target/PROFILE/deps/`, the binary in `target/PROFILE/`).
pub fn built_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the running test's path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test runs from target/PROFILE/deps");
        let bin = profile.join("plantd");
        assert!(
            bin.exists(),
            "{} is not there: run the tests and benchmarks through cargo, which builds it",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// The binary the daemon and CLI helpers run: `PLANTD_TEST_BIN` when set (the static musl
/// build, say), else the one cargo built for these tests.
pub fn bin() -> String {
    std::env::var("PLANTD_TEST_BIN").unwrap_or_else(|_| built_bin().to_string())
}

/// Runs `plantd ARGS` to completion.
pub fn plantd(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("plantd runs")
}

/// The last line of a successful command's stdout: where plantd prints a new token.
pub fn last_line(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .expect("some output")
        .trim()
        .to_string()
}

/// A free loopback port (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Makes a device token through the CLI and returns it (the last line of stdout).
pub fn create_token(data_dir: &Path, device: &str) -> String {
    token_create(data_dir, device, &[])
}

/// `plantd token create` for `device`, with `more` arguments; the token.
fn token_create(data_dir: &Path, device: &str, more: &[&str]) -> String {
    let mut args = vec![
        "token",
        "create",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--device",
        device,
    ];
    args.extend_from_slice(more);
    last_line(&plantd(&args))
}

/// The kinds the tests' devices send: every shipped kind, `odoo.create` (granted only by name)
/// and the tests' own `partner.code`.
pub const TEST_KINDS: &str = "odoo.create,stock.move,stock.picking.validate,mrp.production.done,workorder.time,quality.check,partner.code";

/// [`create_token`] for a device that may send every one of [`TEST_KINDS`].
pub fn create_token_granted(data_dir: &Path, device: &str) -> String {
    token_create(data_dir, device, &["--kinds", TEST_KINDS])
}

/// `plantd admin add USER --role ROLE --data-dir DIR`, the password on stdin, as an admin types
/// it (a plant's or a hub's data directory).
pub fn admin_add(data_dir: &Path, user: &str, role: &str, password: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["admin", "add", user, "--role", role, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

/// A fresh data directory (inside the returned temporary directory) with one device token.
pub fn data_dir_with_token(device: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token = create_token(&data, device);
    (dir, data, token)
}

/// POSTs `body` as a device with `token`; returns the status and the JSON answer.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// GETs `url` as a device with `token`; returns the status and the JSON answer.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A running plant daemon.
pub struct Plant {
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Plant {
    /// Starts `plantd up` with `config` (TOML) on a fresh port and waits until it serves.
    pub fn start(data_dir: &Path, config: &str) -> Plant {
        Self::start_on(data_dir, config, free_addr())
    }

    pub fn start_on(data_dir: &Path, config: &str, addr: SocketAddr) -> Plant {
        Self::start_with(data_dir, config, addr, |_| {})
    }

    /// As [`Plant::start_on`], with `prepare` changing the command first (limits, environment).
    pub fn start_with(
        data_dir: &Path,
        config: &str,
        addr: SocketAddr,
        prepare: impl FnOnce(&mut Command),
    ) -> Plant {
        std::fs::create_dir_all(data_dir).unwrap();
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(bin());
        prepare(&mut command);
        let child = command
            .args(["up", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("plantd up starts");
        let mut plant = Plant {
            data_dir: data_dir.to_path_buf(),
            addr,
            child: Some(child),
        };
        plant.wait_ready();
        plant
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("plantd up exited during start: {status}");
            }
            // The control socket is bound after the TLS material is ready and the listeners.
            let socket = self.data_dir.join("plantd.sock");
            if socket.exists() && std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plantd did not start serving within 20 s"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// A client trusting only this plant's certificate.
    pub fn client(&self) -> reqwest::Client {
        client_for(&self.data_dir.join("tls/api.crt"), self.addr)
    }

    /// A client trusting only this plant's certificate, connecting from loopback address
    /// `ip` (such as 127.0.0.2): another machine, as far as the plant can tell.
    pub fn client_from(&self, ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(trusting(&self.data_dir.join("tls/api.crt")))
            .resolve("localhost", self.addr)
            .local_address(ip.parse::<std::net::IpAddr>().expect("an IP address"))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("plantd runs").id()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(status.success(), "plantd exited with {status} on SIGTERM");
                    return;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("plantd did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Plant {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client for the plain-HTTP listener.
pub fn plain_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A TLS client configuration trusting only the certificate(s) in `cert`.
pub fn trusting(cert: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub fn client_for(cert: &Path, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(trusting(cert))
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Reads every (seq, key) straight from the journal file, as a forensic check would.
pub fn journal_rows(data_dir: &Path) -> Vec<(u64, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut s = conn
        .prepare("SELECT seq, key FROM transactions ORDER BY seq")
        .unwrap();
    s.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// A tokio runtime for a test body.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn tx(key: &str) -> serde_json::Value {
    serde_json::json!({"key": key, "kind": "scan", "payload": {"item": "A-100", "qty": 1}})
}

/// Runs `script`, a browser test of `tests/browser/` (Node.js with playwright-core driving
/// Debian's Chromium, headless), with `env` and `SHOTS` set to `shots`, made afresh. Panics
/// with what it printed when it fails, or when one of the screenshots named in `expect`
/// (without `.png`) is missing or next to empty; prints its steps otherwise.
pub fn run_browser(script: &Path, shots: &Path, env: &[(&str, &str)], expect: &[&str]) {
    let _ = std::fs::remove_dir_all(shots);
    std::fs::create_dir_all(shots).unwrap();
    let mut node = Command::new("node");
    node.arg(script).env("SHOTS", shots);
    for (k, v) in env {
        node.env(k, v);
    }
    let out = node.output().expect("node runs (Debian's nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test {} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    for shot in expect {
        let path = shots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{}: {size} bytes", path.display());
    }
}
