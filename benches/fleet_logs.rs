//! The hub with a fleet streaming logs: `cargo bench --bench fleet_logs`.
//!
//! Starts a throwaway PostgreSQL 15 cluster and the real `plantd hub`, enrolls N plants with
//! the real `plantd enroll` (N = `PLANTD_BENCH_PLANTS`, default 50), and then, for each, holds
//! a replication session open with the plant's own certificate (a hello, as `plantd up` sends
//! it) and streams log batches on a log stream beside it, as `plantd up` does, at
//! `PLANTD_BENCH_LINES` lines a second (default 10), for `PLANTD_BENCH_SECS` seconds (default
//! 60) after 10 s of warm-up. The plants are simulated by this process (fifty real daemons
//! would not fit beside the hub on a small machine); what is measured is the real hub.
//!
//! Prints the hub's CPU (its own and its children's: none) and resident memory over the
//! window, PostgreSQL's CPU, and the lines the hub stored against those sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantd_testkit::fleet::*;
use plantd_testkit::harness::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A frame: `u32 length | u8 type | body` (src/replication/wire.rs).
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Utime + stime of `pid` in clock ticks, and its resident memory in KiB.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields
        .get(11)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// The processes of PostgreSQL's cluster in `data` (the postmaster and its backends).
fn postgres_ticks() -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            total += cpu_and_rss(pid).0;
        }
    }
    total
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plants = env_or("PLANTD_BENCH_PLANTS", 50) as usize;
    let per_s = env_or("PLANTD_BENCH_LINES", 10) as usize;
    let secs = env_or("PLANTD_BENCH_SECS", 60);
    let pg = Pg::start();
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(&base).unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let started = Instant::now();
    let mut identities = Vec::new();
    for i in 0..plants {
        let name = format!("plant-{i:02}");
        let data = dir.path().join(&name);
        std::fs::create_dir_all(&data).unwrap();
        let out = enroll(&data, &hub, &hub.token(&name, "1h"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        identities.push((
            name,
            std::fs::read(data.join("tls/plant.crt")).unwrap(),
            std::fs::read(data.join("tls/plant.key")).unwrap(),
        ));
    }
    println!(
        "{plants} plants enrolled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ca = std::fs::read(hub.data_dir.join("ca/ca.crt")).unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let rt = rt();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (name, cert, key) in identities {
        let (ca, sent, stop, quic) = (ca.clone(), sent.clone(), stop.clone(), hub.quic);
        rt.spawn(async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                roots.add(c.unwrap()).unwrap();
            }
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(&cert)
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap();
            tls.alpn_protocols = vec![b"plantd/1".to_vec()];
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut config = quinn::ClientConfig::new(Arc::new(crypto));
            let mut transport = quinn::TransportConfig::default();
            transport.keep_alive_interval(Some(Duration::from_secs(3)));
            config.transport_config(Arc::new(transport));
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(config);
            let conn = endpoint.connect(quic, "localhost").unwrap().await.unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let mut hello = 1u16.to_be_bytes().to_vec();
            string(&mut hello, &name);
            string(&mut hello, "0.1.0-bench");
            string(&mut hello, &format!("bench-journal-{name}"));
            send.write_all(&frame(1, &hello)).await.unwrap();
            let mut head = [0u8; 5];
            recv.read_exact(&mut head).await.unwrap();
            assert_eq!(head[4], 2, "{name}: a resume");
            let (mut logs, _r) = conn.open_bi().await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let lines: Vec<serde_json::Value> = (0..per_s)
                    .map(|_| {
                        n += 1;
                        serde_json::json!({
                            "at": jiff::Timestamp::now().to_string(),
                            "level": if n.is_multiple_of(10) { "error" } else { "warn" },
                            "target": "plantd::stack::supervisor",
                            "message": format!("odoo is unhealthy: no answer within 5s (probe {n}) service=odoo restarts=3"),
                        })
                    })
                    .collect();
                let body = serde_json::json!({"dropped": 0, "lines": lines}).to_string();
                let mut b = Vec::new();
                string(&mut b, &body);
                logs.write_all(&frame(22, &b)).await.unwrap();
                sent.fetch_add(per_s as u64, Ordering::Relaxed);
            }
            drop(send);
        });
    }
    std::thread::sleep(Duration::from_secs(10));
    let pid = hub.pid();
    let hz = 100.0; // USER_HZ on Linux
    let sent_before = sent.load(Ordering::Relaxed);
    let stored = |pg: &Pg| -> u64 {
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let n: i64 = client
                .query_one("SELECT count(*) FROM plant_logs", &[])
                .await
                .unwrap()
                .get(0);
            n as u64
        })
    };
    let stored_before = stored(&pg);
    let (t0, _) = cpu_and_rss(pid);
    let pg0 = postgres_ticks();
    let window = Instant::now();
    let mut max_rss = 0;
    while window.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(cpu_and_rss(pid).1);
    }
    let elapsed = window.elapsed().as_secs_f64();
    let (t1, rss) = cpu_and_rss(pid);
    let pg1 = postgres_ticks();
    let sent_in = sent.load(Ordering::Relaxed) - sent_before;
    std::thread::sleep(Duration::from_secs(3));
    let stored_in = stored(&pg) - stored_before;
    stop.store(true, Ordering::Relaxed);
    println!(
        "FIGURE hub with {plants} plants streaming {per_s} log lines/s each ({} lines/s) for {elapsed:.0} s: hub CPU {:.1} % of one core, RSS {} MiB at the end (max {} MiB); PostgreSQL CPU {:.1} % of one core; {stored_in} of {sent_in} lines sent in the window stored",
        plants * per_s,
        (t1 - t0) as f64 / hz / elapsed * 100.0,
        rss / 1024,
        max_rss / 1024,
        (pg1 - pg0) as f64 / hz / elapsed * 100.0,
    );
    drop(rt);
}
