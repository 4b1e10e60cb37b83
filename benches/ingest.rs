//! Load benchmark of the ingest API: `cargo bench --bench ingest`.
//!
//! Starts the real `plantd up` (release build) in a temporary data directory on the same disk
//! as the build, then drives its HTTPS API from keep-alive HTTP/1.1 clients on this machine and
//! prints, per scenario, durable acks per second, p50/p99 latency and the daemon's CPU time per
//! transaction. Every counted ack is a 201, sent only after the journal's fsync.
//!
//! Scenarios: single transactions at concurrency 1, 16 and 64, and 100-item arrays at 16, with
//! the journal in group-commit mode; then the single-transaction load again with one commit per
//! request. Also prints the daemon's idle RSS and this disk's fsync latency.
//! `PLANTD_BENCH_SECS` sets the measured seconds per scenario (default 5).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_plantd");

struct Daemon {
    child: Child,
    addr: SocketAddr,
    token: String,
    cert: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, commit: &str) -> Daemon {
        let data = dir.join(commit);
        std::fs::create_dir_all(&data).unwrap();
        let out = Command::new(BIN)
            .args(["token", "create", "--device", "bench", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        let config = dir.join(format!("{commit}.toml"));
        std::fs::write(&config, format!("[journal]\ncommit = \"{commit}\"\n")).unwrap();
        let addr: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let child = Command::new(BIN)
            .args(["up", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "plantd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            addr,
            token,
            cert: data.join("tls/api.crt"),
        }
    }

    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// User + system CPU time of the daemon so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn tls_connector(cert: &Path) -> TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

struct Outcome {
    transactions: u64,
    requests: u64,
    elapsed: Duration,
    latency_us: hdrhistogram::Histogram<u64>,
    cpu: Duration,
}

/// Runs `concurrency` keep-alive clients for `secs`, each posting `batch` transactions per
/// request, and counts only 201 answers.
async fn drive(d: &Daemon, concurrency: usize, batch: usize, secs: u64, tag: &str) -> Outcome {
    let connector = tls_connector(&d.cert);
    let cpu_before = d.cpu();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let connector = connector.clone();
        let addr = d.addr;
        let auth = format!("Bearer {}", d.token);
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            let mut n = 0u64;
            let mut requests = 0u64;
            while Instant::now() < end {
                let body = if batch == 1 {
                    format!(
                        r#"{{"key":"{tag}-{c}-{n}","kind":"scan","payload":{{"item":"A-100","qty":1,"line":3}}}}"#
                    )
                } else {
                    let mut s = String::from("[");
                    for i in 0..batch {
                        if i > 0 {
                            s.push(',');
                        }
                        s.push_str(&format!(
                            r#"{{"key":"{tag}-{c}-{n}-{i}","kind":"scan","payload":{{"item":"A-100","qty":1,"line":3}}}}"#
                        ));
                    }
                    s.push(']');
                    s
                };
                let req = hyper::Request::post("/api/v1/transactions")
                    .header("host", "localhost")
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let t = Instant::now();
                sender.ready().await.unwrap();
                let resp = sender.send_request(req).await.unwrap();
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                assert_eq!(status, 201, "the daemon refused a benchmark request");
                hist.record(t.elapsed().as_micros() as u64).unwrap();
                n += 1;
                requests += 1;
            }
            (requests * batch as u64, requests, hist)
        }));
    }
    let mut latency_us = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let (mut transactions, mut requests) = (0, 0);
    for t in tasks {
        let (tx, rq, h) = t.await.unwrap();
        transactions += tx;
        requests += rq;
        latency_us.add(h).unwrap();
    }
    Outcome {
        transactions,
        requests,
        elapsed: start.elapsed(),
        latency_us,
        cpu: d.cpu() - cpu_before,
    }
}

/// Average latency of write + fdatasync of 4 KiB on the file system of `dir`.
fn fsync_latency(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 4096];
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
    }
    let d = start.elapsed() / n;
    std::fs::remove_file(path).unwrap();
    d
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: u64 = std::env::var("PLANTD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // On the build's disk, not /tmp (which may be tmpfs, where fsync costs nothing).
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "plantd ingest benchmark: {} cores, HTTPS (TLS 1.3) keep-alive HTTP/1.1, load generator on the same machine, {secs} s per scenario",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "fsync (4 KiB write + fdatasync) on the data disk: {:.2} ms",
        fsync_latency(dir.path()).as_secs_f64() * 1e3
    );

    let scenarios: &[(&str, &str, usize, usize)] = &[
        ("single", "group", 1, 1),
        ("single", "group", 16, 1),
        ("single", "group", 64, 1),
        ("array of 100", "group", 16, 100),
        ("single", "per_request", 1, 1),
        ("single", "per_request", 16, 1),
        ("single", "per_request", 64, 1),
    ];
    println!();
    println!(
        "| scenario     | commit      | clients | durable tx/s | requests/s | p50 ms | p99 ms | daemon CPU µs/tx |"
    );
    println!(
        "|--------------|-------------|--------:|-------------:|-----------:|-------:|-------:|-----------------:|"
    );
    let mut idle_rss = None;
    let mut peak_rss = 0;
    for commit in ["group", "per_request"] {
        let daemon = Daemon::start(dir.path(), commit);
        std::thread::sleep(Duration::from_secs(2));
        if idle_rss.is_none() {
            idle_rss = Some(daemon.rss_kib());
        }
        for (i, &(name, mode, clients, batch)) in scenarios.iter().enumerate() {
            if mode != commit {
                continue;
            }
            let tag = format!("{commit}{i}");
            // Warm-up: connections, TLS sessions, SQLite caches.
            rt.block_on(drive(&daemon, clients, batch, 1, &format!("{tag}w")));
            let o = rt.block_on(drive(&daemon, clients, batch, secs, &tag));
            let tps = o.transactions as f64 / o.elapsed.as_secs_f64();
            let rps = o.requests as f64 / o.elapsed.as_secs_f64();
            println!(
                "| {:<12} | {:<11} | {:>7} | {:>12.0} | {:>10.0} | {:>6.2} | {:>6.2} | {:>16.1} |",
                name,
                mode,
                clients,
                tps,
                rps,
                o.latency_us.value_at_quantile(0.5) as f64 / 1e3,
                o.latency_us.value_at_quantile(0.99) as f64 / 1e3,
                o.cpu.as_secs_f64() * 1e6 / o.transactions.max(1) as f64,
            );
        }
        peak_rss = peak_rss.max(proc_status_kib(daemon.child.id(), "VmHWM:"));
    }
    println!();
    println!(
        "plantd up idle RSS: {:.1} MiB (peak under load: {:.1} MiB)",
        idle_rss.unwrap_or(0) as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
}
