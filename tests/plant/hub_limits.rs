//! The hub under floods from outside, on the real binary and a real PostgreSQL: a revoked
//! plant's certificate opening 110 QUIC connections, 300 enrollments at once, and hellos with
//! oversized or malformed fields. The hub keeps its database connections within its pool
//! (`[postgres] pool_size`, 16 by default), answers its fleet API, and stores nothing a refused
//! hello carried.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fleet::*;
use crate::harness::*;

/// `[postgres] pool_size` when hub.toml does not set it.
const DEFAULT_POOL: i64 = 16;

async fn pg_client(pg: &Pg) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Client connections to PostgreSQL other than the one asking: the hub's.
async fn hub_backends(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// The process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples `pid`'s RSS every 50 ms until dropped; `max()` is the highest seen.
struct RssWatch {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let (max, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (m, s) = (max.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch { max, stop }
    }

    fn max_mib(&self) -> f64 {
        self.max.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A QUIC endpoint presenting the enrolled plant's certificate from `data`, as a plant would.
fn plant_endpoint(data: &Path) -> quinn::Endpoint {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = data.join("tls");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tls.join("hub-ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.join("plant.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(tls.join("plant.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"plantd/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(60).try_into().unwrap()));
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    client.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    endpoint
}

/// A hello frame, encoded by hand as the wire format says (u32 length, type 1, u16 protocol,
/// then plant, version and journal as u32-prefixed strings).
fn hello(plant: &str, version: &str, journal: &str) -> Vec<u8> {
    let mut body = vec![1u8];
    body.extend_from_slice(&1u16.to_be_bytes());
    for s in [plant, version, journal] {
        body.extend_from_slice(&(s.len() as u32).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The hub's first answer: ("resume", "") or ("refuse", its message), or why none came.
async fn answer(recv: &mut quinn::RecvStream) -> (String, String) {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() >= 4 + len {
                return match buf[4] {
                    2 => ("resume".into(), String::new()),
                    5 => {
                        let n = u32::from_be_bytes(buf[6..10].try_into().unwrap()) as usize;
                        (
                            "refuse".into(),
                            String::from_utf8_lossy(&buf[10..10 + n]).into_owned(),
                        )
                    }
                    t => (format!("frame type {t}"), String::new()),
                };
            }
        }
        match tokio::time::timeout_at(deadline, recv.read_chunk(65536, true)).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk.bytes),
            Ok(Ok(None)) => return ("end of stream".into(), String::new()),
            Ok(Err(e)) => return ("stream error".into(), e.to_string()),
            Err(_) => return ("no answer in 15 s".into(), String::new()),
        }
    }
}

/// Sends `frame` as the first frame of a new connection and returns the hub's answer.
async fn first_frame(endpoint: &quinn::Endpoint, hub: &Hub, frame: Vec<u8>) -> (String, String) {
    let conn = endpoint
        .connect(hub.quic, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The hub may refuse before it has read it all: the write's own outcome does not matter.
    // The stream stays open, as a plant's does, until the answer is in.
    let writer = tokio::spawn(async move {
        let _ = send.write_all(&frame).await;
        std::future::pending::<()>().await;
        drop(send);
    });
    let got = answer(&mut recv).await;
    writer.abort();
    conn.close(0u32.into(), b"test done");
    got
}

async fn version_at_hub(db: &tokio_postgres::Client, plant: &str) -> Option<String> {
    db.query_one("SELECT version FROM plants WHERE name = $1", &[&plant])
        .await
        .unwrap()
        .get(0)
}

#[test]
fn a_revoked_certificate_flood_keeps_the_hub_database_within_its_pool() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let (_pd, data, _) = data_dir_with_token("scanner");
    let out = enroll(&data, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hub.cli(&["plant", "revoke", "lyon"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = last_line(&hub.cli(&["api-token", "create", "--name", "ops"]));
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let url = format!("https://localhost:{}/api/v1/plants", hub.https.port());
    let rss = RssWatch::start(hub.pid());
    let rt = rt();
    rt.block_on(async {
        let db = pg_client(&pg).await;
        let endpoint = plant_endpoint(&data);
        // 110 connections with the revoked plant's certificate, held open: half say nothing,
        // half send a hello (with a version the hub must not store) and keep their stream.
        let opened = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..110 {
            let (endpoint, quic) = (endpoint.clone(), hub.quic);
            tasks.push(tokio::spawn(async move {
                let conn = endpoint.connect(quic, "localhost").unwrap().await.unwrap();
                if i % 2 == 0 {
                    return (conn, None);
                }
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                let journal = "ab".repeat(16);
                send.write_all(&hello("lyon", "9.9.9-flood", &journal))
                    .await
                    .unwrap();
                let got = answer(&mut recv).await;
                (conn, Some((got, send)))
            }));
        }
        let mut idle = Vec::new();
        for t in tasks {
            let (conn, said) = t.await.unwrap();
            match said {
                None => idle.push(conn),
                Some(((kind, message), _send)) => {
                    assert_eq!(kind, "refuse", "a revoked plant's hello: {message}");
                    assert!(message.contains("revoked"), "{message}");
                }
            }
        }
        // While the idle ones are held: the database has at most the pool's connections from
        // the hub, and the fleet API and the CLI answer.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let backends = hub_backends(&db).await;
        println!("hub connections to PostgreSQL with 55 idle revoked QUIC connections open: {backends}");
        assert!(
            backends <= DEFAULT_POOL,
            "{backends} database connections for {} idle QUIC connections; the pool holds {DEFAULT_POOL}",
            idle.len()
        );
        let (status, fleet) = get_json(&client, &url, &api).await;
        assert_eq!(status, 200, "the fleet API during the flood: {fleet}");
        let lyon = fleet.as_array().unwrap().iter().find(|p| p["plant"] == "lyon").unwrap();
        assert_eq!(lyon["revoked"], true);
        let out = hub.cli(&["plants"]);
        assert!(out.status.success(), "hub plants during the flood: {}", String::from_utf8_lossy(&out.stderr));
        // Nothing a refused hello carried was written.
        assert_eq!(version_at_hub(&db, "lyon").await, None);
        // A connection that sends no hello is closed by the hub within its deadline (10 s).
        for conn in &idle {
            let left = Duration::from_secs(16).saturating_sub(opened.elapsed());
            let closed = tokio::time::timeout(left, conn.closed()).await;
            let reason = closed.unwrap_or_else(|_| {
                panic!("an idle connection was still open {:?} after it connected", opened.elapsed())
            });
            assert!(
                matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if String::from_utf8_lossy(&c.reason).contains("no hello")),
                "{reason}"
            );
        }
        println!(
            "the hub closed all {} idle connections {:.1} s after they connected",
            idle.len(),
            opened.elapsed().as_secs_f64()
        );
        assert!(hub_backends(&db).await <= DEFAULT_POOL);
    });
    println!(
        "hub RSS during the 110-connection flood: at most {:.1} MiB",
        rss.max_mib()
    );
}

#[test]
fn three_hundred_enrollments_at_once_get_201_403_or_429_never_503() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    // 250 valid one-time tokens, stored as `plantd hub token create` stores them (hashed,
    // for a plant of their own), and 50 well-formed tokens the hub never issued.
    use rustls::pki_types::pem::PemObject;
    let ca =
        rustls::pki_types::CertificateDer::from_pem_file(hub.data_dir.join("ca/ca.crt")).unwrap();
    let sha = |b: &[u8]| -> String {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let fingerprint = sha(&ca);
    let tokens: Vec<(String, bool)> = (0..300)
        .map(|i| (format!("pdh1.{i:043}.{fingerprint}"), i < 250))
        .collect();
    let rt = rt();
    rt.block_on(async {
        let db = pg_client(&pg).await;
        for (i, (token, valid)) in tokens.iter().enumerate() {
            if *valid {
                let plant = format!("plant-{i}");
                db.execute("INSERT INTO plants (name) VALUES ($1)", &[&plant])
                    .await
                    .unwrap();
                db.execute(
                    "INSERT INTO enrollment_tokens (token_sha256, plant, expires_at)
                     VALUES ($1, $2, now() + interval '1 hour')",
                    &[&sha(token.as_bytes()), &plant],
                )
                .await
                .unwrap();
            }
        }
    });
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let url = format!("https://localhost:{}/api/v1/enroll", hub.https.port());
    let rss = RssWatch::start(hub.pid());
    let started = Instant::now();
    let answers: Vec<(u16, bool, String)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for (token, valid) in tokens.clone() {
            let (client, url, csr) = (client.clone(), url.clone(), csr.clone());
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(&url)
                    .json(&serde_json::json!({"token": token, "csr": csr}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, valid, r.text().await.unwrap_or_default())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let took = started.elapsed();
    let count = |s: u16| answers.iter().filter(|a| a.0 == s).count();
    println!(
        "300 concurrent enrollments in {:.2} s: {} × 201, {} × 403, {} × 429, {} × 503; hub RSS at most {:.1} MiB",
        took.as_secs_f64(),
        count(201),
        count(403),
        count(429),
        count(503),
        rss.max_mib()
    );
    if let Some(a) = answers.iter().find(|a| a.0 == 503) {
        panic!("{} enrollments got 503, such as: {}", count(503), a.2);
    }
    for (status, valid, body) in &answers {
        match (status, valid) {
            (201, true) | (403, false) | (429, _) => {}
            _ => panic!(
                "a {} token got {status}: {body}",
                if *valid { "valid" } else { "unknown" }
            ),
        }
        if *status == 429 {
            assert!(body.contains("busy"), "{body}");
        }
    }
    let enrolled: i64 = rt.block_on(async {
        pg_client(&pg)
            .await
            .query_one(
                "SELECT count(*) FROM plants WHERE enrolled_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(
        enrolled as usize,
        count(201),
        "each 201 is an enrolled plant, and only those"
    );
}

#[test]
fn oversized_or_malformed_hellos_are_refused_and_nothing_is_stored() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let (_pd, data, _) = data_dir_with_token("scanner");
    let out = enroll(&data, &hub, &hub.token("lille", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = "cd".repeat(16);
    let rt = rt();
    rt.block_on(async {
        let db = pg_client(&pg).await;
        let endpoint = plant_endpoint(&data);
        let huge = format!("1.{}", "x".repeat(4 * 1024 * 1024));
        let cases = [
            (hello("lille", &huge, &journal), "over the 65536-byte limit"),
            (
                hello("lille", &format!("1.{}", "0".repeat(200)), &journal),
                "hello: version \"1.000",
            ),
            (
                hello("lille", "1.0<script>alert(1)</script>", &journal),
                "hello: version",
            ),
            (hello("../lille", "1.0.0", &journal), "hello: plant name"),
            (
                hello("lille", "1.0.0", "'; DROP TABLE plants; --"),
                "hello: journal id",
            ),
        ];
        for (frame, expected) in cases {
            let (kind, message) = first_frame(&endpoint, &hub, frame).await;
            assert_eq!(kind, "refuse", "{expected}: {message}");
            assert!(
                message.contains(expected),
                "expected {expected:?} in: {message}"
            );
            assert!(
                message.len() < 400,
                "the refusal does not echo the field: {message}"
            );
            assert_eq!(
                version_at_hub(&db, "lille").await,
                None,
                "a refused hello stored its version"
            );
        }
        // The hub answers a hello within the bounds, and keeps its version.
        let (kind, message) = first_frame(&endpoint, &hub, hello("lille", "1.2.3", &journal)).await;
        assert_eq!(kind, "resume", "{message}");
        assert_eq!(version_at_hub(&db, "lille").await.as_deref(), Some("1.2.3"));
    });
}

#[test]
fn the_hub_talks_to_postgresql_over_verified_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A CA and a server certificate for "localhost", as a database team would issue them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let pg = Pg::start_with_tls(Some((&server.pem(), &server_key.serialize_pem())));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let toml = format!(
        "[postgres]\nsslmode = \"verify-full\"\nca_file = \"{}\"\npool_size = 4\n",
        ca_file.display()
    );
    let url = format!("postgres://postgres@localhost:{}/postgres", pg.port);
    let hub = Hub::start_on(&dir.path().join("hub"), &url, free_udp_addr(), &toml);
    let (_pd, data, _) = data_dir_with_token("scanner");
    let out = enroll(&data, &hub, &hub.token("nantes", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (tls, plain): (i64, i64) = rt().block_on(async {
        let db = pg_client(&pg).await;
        let r = db
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
                 WHERE a.application_name = 'plantd-hub'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    });
    println!("hub connections to PostgreSQL: {tls} over TLS, {plain} without");
    assert!(tls >= 1 && plain == 0, "{tls} over TLS, {plain} without");
    // Another CA: refused, and the message says it is the certificate.
    let other = rcgen::KeyPair::generate().unwrap();
    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = other_params.self_signed(&other).unwrap();
    std::fs::write(&ca_file, other_ca.pem()).unwrap();
    let out = hub.cli(&["--config", hub.config.to_str().unwrap(), "plants"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a database with a certificate from another CA was trusted"
    );
    assert!(
        err.contains("certificate") && err.contains("localhost"),
        "{err}"
    );
}
