//! Replication to the hub: every acknowledged transaction reaches the hub's PostgreSQL exactly
//! once, in order, through WAN cuts, crashes of either side and restarts; and every refusal of
//! enrollment or connection says why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet::*;
use crate::harness::*;

/// The plant's status as JSON.
fn status(data: &std::path::Path) -> Value {
    let out = plantd(&["status", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `check` holds, for at most `secs`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Posts `n` single transactions with keys `{prefix}-{i}`; returns key → seq of each 2xx.
fn post_many(plant: &Plant, token: &str, prefix: &str, n: usize) -> BTreeMap<String, u64> {
    let client = plant.client();
    let url = plant.url("/api/v1/transactions");
    rt().block_on(async {
        let mut tasks = Vec::new();
        for c in 0..8 {
            let (client, url, token, prefix) = (
                client.clone(),
                url.clone(),
                token.to_string(),
                prefix.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in (c..n).step_by(8) {
                    let key = format!("{prefix}-{i}");
                    let (status, v) = post_json(&client, &url, &token, &tx(&key)).await;
                    assert_eq!(status, 201, "{v}");
                    acked.push((key, v["seq"].as_u64().unwrap()));
                }
                acked
            }));
        }
        let mut all = BTreeMap::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
}

#[test]
fn every_acknowledged_transaction_reaches_the_hub_once_in_order_through_cuts_and_crashes() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let quic = free_udp_addr();
    let relay = Relay::start(quic);
    let mut hub = Hub::start(&dir.path().join("hub"), &pg, quic, Some(relay.addr));
    let (_pd, data, token) = data_dir_with_token("line-1");
    let out = enroll(&data, &hub, &hub.token("lyon", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut plant = Plant::start(&data, "");
    let mut acked = post_many(&plant, &token, "a", 1500);
    wait_for(30, "the hub to catch up", || pg.rows("lyon").len() == 1500);
    assert_eq!(status(&data)["link"]["state"], "online");

    // The WAN goes down: the plant keeps accepting, and says it is cut off.
    relay.cut();
    acked.extend(post_many(&plant, &token, "b", 1000));
    wait_for(60, "the link to be reported down", || {
        let s = status(&data);
        s["link"]["state"] == "degraded" || s["link"]["state"] == "islanded"
    });
    assert_eq!(pg.rows("lyon").len(), 1500, "nothing crossed a cut link");
    relay.heal();
    wait_for(60, "the backlog to drain after the cut", || {
        pg.rows("lyon").len() == 2500
    });

    // The hub dies mid-stream and comes back; then the plant does.
    let load = std::thread::spawn({
        let client_plant_url = plant.url("/api/v1/transactions");
        let cert = data.join("tls/api.crt");
        let addr = plant.addr;
        let token = token.clone();
        move || {
            let client = client_for(&cert, addr);
            rt().block_on(async {
                let mut acked = BTreeMap::new();
                for i in 0..1500 {
                    let key = format!("c-{i}");
                    let (s, v) = post_json(&client, &client_plant_url, &token, &tx(&key)).await;
                    assert_eq!(s, 201);
                    acked.insert(key, v["seq"].as_u64().unwrap());
                }
                acked
            })
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    hub.kill9();
    std::thread::sleep(Duration::from_millis(500));
    hub.restart();
    acked.extend(load.join().unwrap());
    plant.kill9();
    let plant = Plant::start_on(&data, "", plant.addr);
    acked.extend(post_many(&plant, &token, "d", 500));
    let total = acked.len();
    assert_eq!(total, 4500);
    wait_for(90, "the hub to hold everything", || {
        pg.rows("lyon").len() == total
    });

    // The checker: the hub holds exactly the acknowledged set, each once, at its plant seq,
    // gap-free, and the plant's cursor says so.
    let rows = pg.rows("lyon");
    let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    let at_hub: BTreeMap<String, u64> = rows.into_iter().map(|(s, k)| (k, s)).collect();
    assert_eq!(at_hub, acked);
    wait_for(30, "the plant's cursor", || {
        status(&data)["journal"]["hub_acked_seq"] == total
    });
    let fleet = hub.cli(&["plants", "--json"]);
    let fleet: Value = serde_json::from_slice(&fleet.stdout).unwrap();
    assert_eq!(fleet[0]["plant"], "lyon");
    assert_eq!(fleet[0]["stored"], json!(total));
    // Telemetry arrives on its own stream: version, link and the host's numbers.
    let t = &fleet[0]["telemetry"];
    assert_eq!(t["version"], env!("CARGO_PKG_VERSION"), "{fleet}");
    assert!(
        ["online", "degraded", "draining"].contains(&t["link"].as_str().unwrap()),
        "{t}"
    );
    assert!(t["host"]["memory_total_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["host"]["disk_total_bytes"].as_u64().unwrap() > 0, "{t}");
    drop(plant);
}

#[test]
fn enrollment_and_connections_are_refused_with_reasons() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let plant_dir = |name: &str| dir.path().join(name);

    // Unknown token (well-formed, right CA, never issued).
    let real = hub.token("lyon", "1h");
    let forged = format!(
        "pdh1.{}.{}",
        "A".repeat(43),
        real.rsplit('.').next().unwrap()
    );
    let out = enroll(&plant_dir("p1"), &hub, &forged);
    assert!(
        stderr(&out).contains("unknown enrollment token"),
        "{}",
        stderr(&out)
    );
    // A token from another hub (another CA): refused before anything is sent.
    let other = Hub::start(&dir.path().join("other-hub"), &pg, free_udp_addr(), None);
    let out = enroll(&plant_dir("p2"), &hub, &other.token("lyon", "1h"));
    assert!(
        stderr(&out).contains("not the hub that made the token"),
        "{}",
        stderr(&out)
    );
    // Used once, refused the second time.
    assert!(enroll(&plant_dir("p3"), &hub, &real).status.success());
    let out = enroll(&plant_dir("p4"), &hub, &real);
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    // Expired.
    let short = hub.token("paris", "1s");
    std::thread::sleep(Duration::from_millis(1500));
    let out = enroll(&plant_dir("p5"), &hub, &short);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    // Not a token at all.
    let out = enroll(&plant_dir("p6"), &hub, "hello");
    assert!(
        stderr(&out).contains("not an enrollment token"),
        "{}",
        stderr(&out)
    );
    for p in ["p1", "p2", "p4", "p5", "p6"] {
        assert!(
            !plant_dir(p).join("enrollment.json").exists(),
            "{p} recorded a failed enrollment"
        );
    }

    // The enrolled plant replicates; once revoked, its connections are refused and it says so.
    let data = plant_dir("p3");
    let token = create_token(&data, "scanner");
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "x", 10);
    wait_for(30, "replication", || pg.rows("lyon").len() == 10);
    let out = hub.cli(&["plant", "revoke", "lyon"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = || {
        status(&data)["link"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("revoked"))
    };
    // The session that was already running stores nothing more...
    post_many(&plant, &token, "y", 10);
    wait_for(30, "the running session to be refused", refused);
    assert_eq!(pg.rows("lyon").len(), 10, "a revoked plant stores nothing");
    // ...and after a restart its new sessions are refused too.
    drop(plant);
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "z", 10);
    wait_for(30, "the refusal after a restart", refused);
    assert_eq!(pg.rows("lyon").len(), 10, "a revoked plant stores nothing");
    // The fleet API wants a token.
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let url = format!("https://localhost:{}/api/v1/plants", hub.https.port());
    let r = rt().block_on(async { client.get(&url).send().await.unwrap() });
    assert_eq!(r.status().as_u16(), 401);
    let api = last_line(&hub.cli(&["api-token", "create", "--name", "grafana"]));
    let (status, fleet) = rt().block_on(get_json(&client, &url, &api));
    assert_eq!(status, 200);
    let lyon = fleet
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plant"] == "lyon")
        .unwrap();
    assert_eq!(
        (lyon["revoked"].as_bool(), lyon["stored"].as_i64()),
        (Some(true), Some(10))
    );
    let (status, _) = rt().block_on(get_json(&client, &url, "pda_wrong"));
    assert_eq!(status, 401);
    let out = hub.cli(&["plant", "revoke", "ghost"]);
    assert!(stderr(&out).contains("no active plant named \"ghost\""));
}

#[test]
fn an_islanded_plant_keeps_accepting_survives_a_restart_and_drains_on_rejoin() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let (_pd, data, token) = data_dir_with_token("line-2");
    assert!(enroll(&data, &hub, &hub.token("lille", "1h"))
        .status
        .success());
    let d = data.to_str().unwrap();
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "a", 50);
    wait_for(30, "replication", || pg.rows("lille").len() == 50);
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let url = format!("https://localhost:{}/api/v1/plants", hub.https.port());
    let api = last_line(&hub.cli(&["api-token", "create", "--name", "noc"]));
    let state = || {
        let (_, v) = rt().block_on(get_json(&client, &url, &api));
        v[0]["state"].as_str().unwrap_or("").to_string()
    };
    wait_for(15, "lille online at the hub", || state() == "online");
    assert!(plantd(&["island", "--data-dir", d]).status.success());
    // The plant tells the hub before its link goes: islanded, not offline, at once.
    wait_for(10, "lille islanded at the hub", || state() == "islanded");
    post_many(&plant, &token, "b", 100);
    drop(plant);
    // Restarted during the planned WAN work: still islanded, still accepting.
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "c", 100);
    wait_for(10, "the islanded state", || {
        status(&data)["link"]["state"] == "islanded"
    });
    assert_eq!(pg.rows("lille").len(), 50);
    assert_eq!(status(&data)["journal"]["depth"], 200);
    assert_eq!(state(), "islanded", "still islanded, however long");
    assert!(plantd(&["rejoin", "--data-dir", d]).status.success());
    wait_for(15, "lille online at the hub again", || state() == "online");
    wait_for(30, "the drain after rejoin", || {
        pg.rows("lille").len() == 250
    });
    wait_for(30, "an empty backlog", || {
        status(&data)["journal"]["depth"] == 0
    });
    // A rejoin of a plant that is not islanded changes nothing and says so: the live session
    // stays (no reconnect, no switch of hub, no error).
    wait_for(10, "the link online", || {
        status(&data)["link"]["state"] == "online"
    });
    let before = status(&data)["link"].clone();
    let out = plantd(&["rejoin", "--data-dir", d]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not islanded"),
        "{out:?}"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = status(&data)["link"].clone();
    for field in ["state", "hub", "reconnects", "last_error"] {
        assert_eq!(
            after[field], before[field],
            "{field} after a needless rejoin"
        );
    }
    drop(plant);

    // The journal is lost and rebuilt under the same enrollment: its new seqs 1, 2, ... are not
    // the transactions the hub holds under those numbers, so the hub refuses it.
    for f in ["journal.db", "journal.db-wal", "journal.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "fresh", 5);
    wait_for(30, "the refusal of a replaced journal", || {
        status(&data)["link"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("journal was replaced"))
    });
    assert_eq!(pg.rows("lille").len(), 250);
    drop(plant);
}

/// Opens a QUIC connection to the hub and a session stream, with the given client identity;
/// returns whether the hub answered the hello with a resume.
fn quic_hello(hub: &Hub, identity: Option<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = std::fs::read(hub.data_dir.join("ca/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(&cert)
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap(),
    };
    tls.alpn_protocols = vec![b"plantd/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let config = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
    rt().block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(hub.quic, "localhost")
            .unwrap()
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        // Hello: type 1, protocol 1, plant "lyon", version "t".
        let mut hello = vec![0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 4];
        hello.extend_from_slice(b"lyon");
        hello.extend_from_slice(&[0, 0, 0, 1, b't']);
        hello.extend_from_slice(&[0, 0, 0, 1, b'j']);
        let len = (hello.len() - 4) as u32;
        hello[..4].copy_from_slice(&len.to_be_bytes());
        send.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 5];
        recv.read_exact(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        match head[4] {
            2 => Ok(()),
            other => Err(format!("frame type {other} instead of resume")),
        }
    })
}

#[test]
fn the_hub_refuses_connections_without_its_certificates() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let data = dir.path().join("plant");
    assert!(enroll(&data, &hub, &hub.token("lyon", "1h"))
        .status
        .success());
    let read = |f: &str| std::fs::read(data.join(f)).unwrap();

    // The enrolled plant's own identity gets a resume: the check below can tell the difference.
    assert_eq!(
        quic_hello(&hub, Some((read("tls/plant.crt"), read("tls/plant.key")))),
        Ok(())
    );
    // No certificate at all.
    assert!(quic_hello(&hub, None).is_err());
    // A certificate from another CA, even with the same name.
    let other = rcgen::generate_simple_self_signed(vec!["lyon".to_string()]).unwrap();
    let forged = (
        other.cert.pem().into_bytes(),
        other.signing_key.serialize_pem().into_bytes(),
    );
    assert!(quic_hello(&hub, Some(forged)).is_err());
}

#[test]
fn a_slow_link_drains_without_reconnects_and_a_hub_restarted_while_offline_recovers() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let quic = free_udp_addr();
    // 1 Mbit/s, 100 ms round trip.
    let relay = Relay::shaped(quic, Duration::from_millis(100), 1_000_000);
    let mut hub = Hub::start(&dir.path().join("hub"), &pg, quic, Some(relay.addr));
    let (_pd, data, token) = data_dir_with_token("line-3");
    assert!(enroll(&data, &hub, &hub.token("nantes", "1h"))
        .status
        .success());
    let plant = Plant::start(&data, "");
    let started = Instant::now();
    let acked = post_many(&plant, &token, "slow", 3000);
    wait_for(90, "the drain over the slow link", || {
        pg.rows("nantes").len() == 3000
    });
    println!(
        "3000 transactions over 1 Mbit/s, 100 ms RTT in {:?}",
        started.elapsed()
    );
    let s = status(&data);
    assert_eq!(s["link"]["reconnects"], 0, "{s}");

    // The plant goes offline; the hub restarts meanwhile; both recover without help.
    relay.cut();
    let mut more = post_many(&plant, &token, "offline", 200);
    hub.kill9();
    std::thread::sleep(Duration::from_secs(1));
    hub.restart();
    more.extend(post_many(&plant, &token, "offline-2", 100));
    relay.heal();
    wait_for(90, "recovery after the hub restart", || {
        pg.rows("nantes").len() == 3300
    });
    let at_hub: BTreeMap<String, u64> =
        pg.rows("nantes").into_iter().map(|(s, k)| (k, s)).collect();
    for (k, s) in acked.iter().chain(more.iter()) {
        assert_eq!(at_hub.get(k), Some(s), "{k}");
    }
    drop(plant);
}

/// A hub killed and back within a second costs its plants a moment, not QUIC's 15 s idle
/// timeout: the restarted hub answers a plant's next packet on its stale connection with a
/// stateless reset (keyed by the hub's CA, so the same across restarts), and the plant
/// reconnects at once.
#[test]
fn a_hub_restarted_in_a_second_costs_its_plants_seconds_not_the_idle_timeout() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let (_pd, data, token) = data_dir_with_token("line-9");
    assert!(enroll(&data, &hub, &hub.token("nancy", "1h"))
        .status
        .success());
    let plant = Plant::start(&data, "");
    post_many(&plant, &token, "before", 10);
    wait_for(30, "replication", || pg.rows("nancy").len() == 10);
    wait_for(10, "the link online", || {
        status(&data)["link"]["state"] == "online"
    });
    hub.kill9();
    hub.restart();
    let back = Instant::now();
    post_many(&plant, &token, "after", 1);
    wait_for(30, "the transaction after the restart stored", || {
        pg.rows("nancy").len() == 11
    });
    let took = back.elapsed();
    eprintln!("stored {:.1} s after the hub came back", took.as_secs_f64());
    assert!(
        took < Duration::from_secs(3),
        "{took:?}: the plant waited for its stale connection to time out"
    );
}

/// An enrollment at any replica tells the plant every replica's QUIC address (from the shared
/// database), its own first, so that no plant needs `[replication] hubs` by hand.
#[test]
fn enrollment_at_one_replica_hands_out_every_replica() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let (qa, qb) = (free_udp_addr(), free_udp_addr());
    let _hub_a = Hub::start(&dir.path().join("a"), &pg, qa, Some(qa));
    let hub_b = Hub::start(&dir.path().join("b"), &pg, qb, Some(qb));
    let (_pd, data, _token) = data_dir_with_token("line-4");
    let out = enroll(&data, &hub_b, &hub_b.token("metz", "1h"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrollment: Value =
        serde_json::from_slice(&std::fs::read(data.join("enrollment.json")).unwrap()).unwrap();
    let quic: Vec<String> = serde_json::from_value(enrollment["quic"].clone()).unwrap();
    assert_eq!(quic, vec![qb.to_string(), qa.to_string()], "{enrollment}");
}
