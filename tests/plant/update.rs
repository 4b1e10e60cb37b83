//! Fleet updates end to end: a real hub on a real PostgreSQL, three real plants, each running
//! its own copy of the plantd binary under a supervisor that restarts it when it exits (as
//! systemd does), and devices posting transactions throughout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet::{enroll, free_udp_addr, Hub, Pg};
use crate::harness::{self, bin, client_for, create_token, free_addr, last_line, tx};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `check` holds, for at most `secs`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plant daemon running its own copy of the binary (`DIR/bin/plantd`, which updates
/// replace), restarted by this supervisor whenever it exits, as `Restart=always` would.
struct Supervised {
    name: String,
    data_dir: PathBuf,
    exe: PathBuf,
    addr: std::net::SocketAddr,
    token: String,
    stopping: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    starts: Arc<Mutex<u32>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervised {
    /// The binary and config go in `root/NAME/`, the data directory in `data_root/NAME`.
    fn start(root: &Path, data_root: &Path, name: &str, hub: &Hub, config: &str) -> Supervised {
        let dir = root.join(name);
        let data_dir = data_root.join(name);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(&data_dir).unwrap();
        let exe = dir.join("bin/plantd");
        std::fs::copy(bin(), &exe).unwrap();
        let token = create_token(&data_dir, "scanner-1");
        let out = enroll(&data_dir, hub, &hub.token(name, "1h"));
        assert!(out.status.success(), "{}", text(&out));
        let config_path = dir.join("plant.toml");
        std::fs::write(&config_path, config).unwrap();
        let addr = free_addr();
        let stopping = Arc::new(AtomicBool::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::default();
        let starts = Arc::new(Mutex::new(0));
        let thread = std::thread::spawn({
            let (stopping, child, starts) = (stopping.clone(), child.clone(), starts.clone());
            let (exe, data_dir) = (exe.clone(), data_dir.clone());
            move || {
                while !stopping.load(Ordering::SeqCst) {
                    let spawned = Command::new(&exe)
                        .args(["up", "--config"])
                        .arg(&config_path)
                        .arg("--data-dir")
                        .arg(&data_dir)
                        .args(["--listen", &addr.to_string()])
                        .env("RUST_LOG", "info")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(
                            std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(data_dir.with_extension("log"))
                                .unwrap(),
                        )
                        .spawn()
                        .expect("the plant's binary starts");
                    *starts.lock().unwrap() += 1;
                    *child.lock().unwrap() = Some(spawned);
                    loop {
                        std::thread::sleep(Duration::from_millis(50));
                        let mut guard = child.lock().unwrap();
                        match guard.as_mut().map(|c| c.try_wait().unwrap()) {
                            Some(None) => continue,
                            _ => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        let plant = Supervised {
            name: name.to_string(),
            data_dir,
            exe,
            addr,
            token,
            stopping,
            child,
            starts,
            thread: Some(thread),
        };
        plant.wait_serving(30);
        plant
    }

    fn wait_serving(&self, secs: u64) {
        wait_for(secs, "the plant to serve", || {
            self.data_dir.join("plantd.sock").exists()
                && std::net::TcpStream::connect(self.addr).is_ok()
        });
    }

    /// What `plantd status --json` says, if the daemon answers.
    fn status(&self) -> Option<Value> {
        let out = Command::new(&self.exe)
            .args(["status", "--json", "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn version(&self) -> Option<String> {
        self.status()
            .and_then(|s| s["version"].as_str().map(str::to_string))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(c) = self.child.lock().unwrap().as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Devices posting to every plant until stopped, retrying while a plant restarts; returns
/// each plant's acknowledged keys.
struct Devices {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, std::thread::JoinHandle<Vec<String>>)>,
}

impl Devices {
    fn start(plants: &[&Supervised], prefix: &str) -> Devices {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = plants
            .iter()
            .map(|p| {
                let (stop, name, token, addr) =
                    (stop.clone(), p.name.clone(), p.token.clone(), p.addr);
                let cert = p.data_dir.join("tls/api.crt");
                let prefix = format!("{prefix}-{}", p.name);
                let handle = std::thread::spawn(move || {
                    let client = client_for(&cert, addr);
                    let url = format!("https://localhost:{}/api/v1/transactions", addr.port());
                    harness::rt().block_on(async {
                        let mut acked = Vec::new();
                        let mut i = 0;
                        while !stop.load(Ordering::SeqCst) {
                            let key = format!("{prefix}-{i}");
                            let sent = client
                                .post(&url)
                                .bearer_auth(&token)
                                .json(&tx(&key))
                                .timeout(Duration::from_secs(5))
                                .send()
                                .await;
                            match sent {
                                Ok(r) if r.status().as_u16() == 201 => {
                                    acked.push(key);
                                    i += 1;
                                }
                                // Down for its swap, or answering 503 while starting: a device
                                // retries the same key (idempotent), as real ones do.
                                _ => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        acked
                    })
                });
                (name, handle)
            })
            .collect();
        Devices { stop, threads }
    }

    fn finish(self) -> BTreeMap<String, Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|(name, t)| (name, t.join().unwrap()))
            .collect()
    }
}

fn rollout(hub: &Hub) -> Value {
    let out = hub.cli(&["rollout", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn plant_states(r: &Value) -> BTreeMap<String, (i64, String, String)> {
    r["plants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["plant"].as_str().unwrap().to_string(),
                (
                    p["wave"].as_i64().unwrap(),
                    p["state"].as_str().unwrap().to_string(),
                    p["reason"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// A copy of the plantd binary that is another release: the same program with bytes after
/// its end (an ELF runs the same with a tail), so that its SHA-256 differs.
fn release_of(dir: &Path, version: &str) -> PathBuf {
    let path = dir.join(format!("plantd-{version}"));
    let mut bytes = std::fs::read(bin()).unwrap();
    bytes.extend_from_slice(format!("\nplantd test release {version}\n").as_bytes());
    std::fs::write(&path, bytes).unwrap();
    path
}

fn keygen(hub: &Hub, path: &Path) -> String {
    let public = last_line(&hub.cli(&["release", "keygen", "--out", path.to_str().unwrap()]));
    assert!(public.starts_with("plantd-release-ed25519:"), "{public}");
    public
}

fn publish(hub: &Hub, file: &Path, version: &str, key: &Path) {
    let out = publish_with_images(hub, file, version, key, None);
    assert!(out.status.success(), "{}", text(&out));
}

/// `plantd hub release publish`, with a stack image bundle when `images` names one.
fn publish_with_images(
    hub: &Hub,
    file: &Path,
    version: &str,
    key: &Path,
    images: Option<&Path>,
) -> std::process::Output {
    let mut args = vec![
        "release",
        "publish",
        file.to_str().unwrap(),
        "--version",
        version,
        "--key",
        key.to_str().unwrap(),
    ];
    if let Some(bundle) = images {
        args.extend(["--images", bundle.to_str().unwrap()]);
    }
    hub.cli(&args)
}

fn start_rollout(hub: &Hub, version: &str, waves: &str, max_failures: &str) {
    let out = hub.cli(&[
        "rollout",
        "start",
        version,
        "--waves",
        waves,
        "--max-failures",
        max_failures,
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

fn hub_versions(hub: &Hub) -> BTreeMap<String, String> {
    let out = hub.cli(&["plants", "--json"]);
    let fleet: Value = serde_json::from_slice(&out.stdout).unwrap();
    fleet
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["plant"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_release_rolls_out_in_waves_and_a_broken_or_unsigned_one_never_takes_over() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let key = dir.path().join("release.key");
    let public = keygen(&hub, &key);
    let config = format!("[update]\nrelease_keys = [\"{public}\"]\ngate_deadline = \"60s\"\n");
    let plants: Vec<Supervised> = ["plant-a", "plant-b", "plant-c"]
        .iter()
        .map(|name| Supervised::start(dir.path(), dir.path(), name, &hub, &config))
        .collect();
    let all: Vec<&Supervised> = plants.iter().collect();
    let built = env!("CARGO_PKG_VERSION");
    wait_for(30, "every plant to report to the hub", || {
        hub_versions(&hub).values().all(|v| v == built) && hub_versions(&hub).len() == 3
    });
    let devices = Devices::start(&all, "v1");

    // Version 2 goes out one plant per wave; every plant ends up running it.
    let v2 = release_of(dir.path(), "2.0.0");
    publish(&hub, &v2, "2.0.0", &key);
    let started = Instant::now();
    start_rollout(&hub, "2.0.0", "1,2,100%", "0");
    wait_for(240, "rollout of 2.0.0 to finish", || {
        // Versions first, then the rollout: a plant of wave N running 2.0.0 means every
        // plant of the waves before it had reported its install before that.
        let running: Vec<bool> = plants
            .iter()
            .map(|p| p.version().as_deref() == Some("2.0.0"))
            .collect();
        let r = rollout(&hub);
        let states = plant_states(&r);
        for (i, p) in plants.iter().enumerate().filter(|(i, _)| running[*i]) {
            for earlier in &plants[..i] {
                assert_eq!(
                    states[&earlier.name].1, "installed",
                    "{} runs 2.0.0 before {} (an earlier wave) was through: {r}",
                    p.name, earlier.name
                );
            }
        }
        r["state"] == "done"
    });
    let took = started.elapsed();
    let r = rollout(&hub);
    let states = plant_states(&r);
    for (i, p) in plants.iter().enumerate() {
        let (wave, state, reason) = &states[&p.name];
        assert_eq!(*wave, i as i64 + 1, "{r}");
        assert_eq!(state, "installed", "{r}");
        assert!(reason.contains("passed its health gate"), "{r}");
        assert_eq!(p.version().as_deref(), Some("2.0.0"), "{}", p.log());
        assert_eq!(
            std::fs::read(&p.exe).unwrap(),
            std::fs::read(&v2).unwrap(),
            "the binary at the plant's path is the release"
        );
        assert_eq!(
            std::fs::read(p.data_dir.join(format!("releases/plantd-{built}"))).unwrap(),
            std::fs::read(bin()).unwrap(),
            "the previous binary is kept"
        );
    }
    wait_for(30, "the hub to see version 2.0.0 everywhere", || {
        hub_versions(&hub).values().all(|v| v == "2.0.0")
    });
    eprintln!(
        "three-plant rollout, one wave each, 2.0.0 from rollout start to done: {:.1} s",
        took.as_secs_f64()
    );

    // A release that exits at start: the first wave's plant tries it twice, keeps 2.0.0, and
    // the rollout pauses itself before the next wave.
    let v3 = Path::new("/usr/bin/false");
    publish(&hub, v3, "3.0.0", &key);
    start_rollout(&hub, "3.0.0", "1,100%", "0");
    wait_for(120, "the broken rollout to pause itself", || {
        rollout(&hub)["state"] == "paused"
    });
    let r = rollout(&hub);
    let states = plant_states(&r);
    let (_, state, reason) = &states["plant-a"];
    assert_eq!(state, "failed", "{r}");
    assert!(reason.contains("exited at start twice"), "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("1 plant(s) failed"),
        "{r}"
    );
    for name in ["plant-b", "plant-c"] {
        assert_eq!(states[name].1, "waiting", "{r}");
    }
    for p in &plants {
        p.wait_serving(60);
        assert_eq!(p.version().as_deref(), Some("2.0.0"), "{}", p.log());
        assert_eq!(std::fs::read(&p.exe).unwrap(), std::fs::read(&v2).unwrap());
    }
    assert!(plants[0].log().contains("release rolled back"));

    // A release signed by a key no plant pins supersedes the paused rollout and is refused by
    // every plant before anything is downloaded.
    let other = dir.path().join("other.key");
    keygen(&hub, &other);
    let v4 = release_of(dir.path(), "4.0.0");
    publish(&hub, &v4, "4.0.0", &other);
    start_rollout(&hub, "4.0.0", "100%", "5");
    wait_for(60, "every plant to refuse 4.0.0", || {
        plant_states(&rollout(&hub))
            .values()
            .all(|(_, s, _)| s == "failed")
    });
    let out = hub.cli(&["rollout", "status", "--id", "2", "--json"]);
    let superseded: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(superseded["state"], "superseded", "{superseded}");
    for (name, (_, _, reason)) in plant_states(&rollout(&hub)) {
        assert!(
            reason.contains("no pinned release key signed"),
            "{name}: {reason}"
        );
    }
    for p in &plants {
        let names: Vec<String> = std::fs::read_dir(p.data_dir.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("4.0.0")),
            "nothing of 4.0.0 was downloaded: {names:?}"
        );
        assert_eq!(p.version().as_deref(), Some("2.0.0"));
    }

    // The fleet page shows it all, to a signed-in user only.
    fleet_page_shows_plants_and_rollouts(&hub);

    // The journal lost nothing across all of it: every acknowledged transaction is at the hub.
    let acked = devices.finish();
    for p in &plants {
        let keys = &acked[&p.name];
        assert!(keys.len() > 50, "{}: only {} posted", p.name, keys.len());
        wait_for(60, "the hub to hold every acknowledged transaction", || {
            pg.rows(&p.name).len() == keys.len()
        });
        let at_hub: Vec<String> = pg.rows(&p.name).into_iter().map(|r| r.1).collect();
        assert_eq!(&at_hub, keys, "{}", p.name);
        assert_eq!(
            *p.starts.lock().unwrap(),
            1,
            "the supervisor never had to restart {}: the swap kept the process",
            p.name
        );
    }
}

#[test]
fn an_update_that_finds_too_little_free_disk_is_refused_with_that_reason() {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let key = dir.path().join("release.key");
    let public = keygen(&hub, &key);
    let config = format!("[update]\nrelease_keys = [\"{public}\"]\n");
    // The plant's data on a disk with room for its journal's 64 MiB reserve, not for that
    // and two binaries.
    let small = dir.path().join("small");
    let _disk = crate::disk_full::SmallDisk::mount(&small, "80m");
    let plant = Supervised::start(dir.path(), &small, "plant-d", &hub, &config);
    let v2 = release_of(dir.path(), "2.0.0");
    publish(&hub, &v2, "2.0.0", &key);
    start_rollout(&hub, "2.0.0", "100%", "0");
    wait_for(60, "the rollout to pause on the refusal", || {
        rollout(&hub)["state"] == "paused"
    });
    let r = rollout(&hub);
    let (_, state, reason) = &plant_states(&r)["plant-d"];
    assert_eq!(state, "failed", "{r}");
    assert!(reason.contains("too little free disk"), "{r}");
    assert!(plant.log().contains("too little free disk"));
    assert_eq!(plant.version().as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let names: Vec<String> = std::fs::read_dir(plant.data_dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("incoming")),
        "{names:?}"
    );
    // It still takes transactions.
    let client = client_for(&plant.data_dir.join("tls/api.crt"), plant.addr);
    let url = format!(
        "https://localhost:{}/api/v1/transactions",
        plant.addr.port()
    );
    let (status, _) = harness::rt().block_on(harness::post_json(
        &client,
        &url,
        &plant.token,
        &tx("after-refusal"),
    ));
    assert_eq!(status, 201);
}

/// The hub's fleet page and its API, as a central team member signed in as a viewer sees them.
fn fleet_page_shows_plants_and_rollouts(hub: &Hub) {
    let out = crate::harness::admin_add(&hub.data_dir, "carla", "viewer", "fleet-viewer-password");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("9443/fleet"), "{}", text(&out));
    let client = client_for(&hub.data_dir.join("ca/ca.crt"), hub.https);
    let url = |path: &str| format!("https://localhost:{}{path}", hub.https.port());
    harness::rt().block_on(async {
        let page = client.get(url("/fleet")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("plantd fleet"));
        let anonymous = client.get(url("/api/v1/fleet")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "the fleet is not shown to anyone");
        let wrong = client
            .post(url("/api/v1/admin/login"))
            .json(&serde_json::json!({"user": "carla", "password": "not her password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let signed = client
            .post(url("/api/v1/admin/login"))
            .json(&serde_json::json!({"user": "carla", "password": "fleet-viewer-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 200);
        let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("Secure")
                && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let session = cookie.split(';').next().unwrap().to_string();
        // Telemetry comes every 10 s: a plant that just restarted reports its link as it
        // was while connecting, then as it is.
        let deadline = Instant::now() + Duration::from_secs(40);
        let fleet = loop {
            let fleet: Value = client
                .get(url("/api/v1/fleet"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            // The plants healthy, and the last rollout (all its plants refused it) ended by the
            // hub's rollout driver, which steps on its own clock.
            let settled = fleet["plants"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["health"] == "ok")
                && fleet["rollouts"][0]["state"] == "done";
            if settled || Instant::now() > deadline {
                break fleet;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let plants = fleet["plants"].as_array().unwrap();
        assert_eq!(plants.len(), 3, "{fleet}");
        for p in plants {
            assert_eq!(p["version"], "2.0.0", "{p}");
            assert_eq!(p["link"], "online", "{p}");
            assert_eq!(p["state"], "online", "{p}");
            assert_eq!(p["health"], "ok", "{p}");
        }
        let rollouts = fleet["rollouts"].as_array().unwrap();
        let states: Vec<(&str, &str)> = rollouts
            .iter()
            .map(|r| (r["version"].as_str().unwrap(), r["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            states,
            [
                ("4.0.0", "done"),
                ("3.0.0", "superseded"),
                ("2.0.0", "done")
            ],
            "{fleet}"
        );
        assert_eq!(rollouts[2]["plants"][0]["state"], "installed");
    });
}

#[test]
fn a_never_healthy_release_is_undone_at_the_deadline_a_stop_mid_trial_keeps_the_old_binary_and_pins_hold(
) {
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let key = dir.path().join("release.key");
    let public = keygen(&hub, &key);
    let config = format!("[update]\nrelease_keys = [\"{public}\"]\ngate_deadline = \"5s\"\n");
    let plant = Supervised::start(dir.path(), dir.path(), "plant-e", &hub, &config);
    let original = std::fs::read(&plant.exe).unwrap();
    // A program that runs for ever, whatever its arguments, and never serves: it starts, and
    // never passes the gate.
    let source = dir.path().join("never.c");
    std::fs::write(
        &source,
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    )
    .unwrap();
    let never = dir.path().join("never-healthy");
    let built = Command::new("cc")
        .arg("-o")
        .arg(&never)
        .arg(&source)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let never_healthy = never.as_path();
    publish(&hub, never_healthy, "5.0.0", &key);
    start_rollout(&hub, "5.0.0", "100%", "0");
    wait_for(60, "the rollout to pause on the rollback", || {
        rollout(&hub)["state"] == "paused"
    });
    let r = rollout(&hub);
    let (_, state, reason) = &plant_states(&r)["plant-e"];
    assert_eq!(state, "failed", "{r}");
    assert!(
        reason.contains("did not pass its health gate within 5 s"),
        "{r}"
    );
    plant.wait_serving(30);
    assert_eq!(plant.version().as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(std::fs::read(&plant.exe).unwrap(), original);
    assert_eq!(*plant.starts.lock().unwrap(), 1);

    // The service is stopped while a release is on trial: the trial ends, nothing is swapped,
    // the process exits, and the old binary is what starts next. A stop is nobody's fault: the
    // release is offered again, and this time fails on its own account.
    publish(&hub, never_healthy, "6.0.0", &key);
    start_rollout(&hub, "6.0.0", "100%", "0");
    let trial = plant.data_dir.join("releases/trial.json");
    wait_for(30, "the trial to start", || trial.exists());
    let pid = plant.child.lock().unwrap().as_ref().unwrap().id();
    let killed = Command::new("kill").arg(pid.to_string()).status().unwrap();
    assert!(killed.success());
    wait_for(30, "the supervisor to start the plant again", || {
        *plant.starts.lock().unwrap() == 2
    });
    assert!(
        plant.log().contains("stopped during the trial"),
        "{}",
        plant.log()
    );
    wait_for(60, "the second trial's outcome to reach the hub", || {
        plant_states(&rollout(&hub))["plant-e"].1 == "failed"
    });
    let r = rollout(&hub);
    assert!(
        plant_states(&r)["plant-e"]
            .2
            .contains("did not pass its health gate within 5 s"),
        "{r}"
    );
    plant.wait_serving(30);
    assert_eq!(std::fs::read(&plant.exe).unwrap(), original);
    assert_eq!(plant.version().as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let pids = Command::new("pgrep")
        .args(["-f", "^/usr/bin/yes up"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&pids.stdout).trim().is_empty(),
        "no trial process is left behind"
    );

    // Pinned: the plant is brought to its pinned release, and rollouts leave it out.
    let v2 = release_of(dir.path(), "2.0.0");
    publish(&hub, &v2, "2.0.0", &key);
    let out = hub.cli(&["plant", "pin", "plant-e", "2.0.0"]);
    assert!(out.status.success(), "{}", text(&out));
    // The trial child answers `plantd status` with its version too: wait for the swap (the
    // binary on disk is the new one) and for the process that execs it to answer.
    let v2_bytes = std::fs::read(&v2).unwrap();
    wait_for(60, "the plant to run its pinned release", || {
        std::fs::read(&plant.exe).is_ok_and(|b| b == v2_bytes)
            && !trial.exists()
            && plant.version().as_deref() == Some("2.0.0")
    });
    start_rollout(&hub, "5.0.0", "100%", "0");
    wait_for(30, "the rollout to finish without the pinned plant", || {
        rollout(&hub)["state"] == "done"
    });
    let r = rollout(&hub);
    assert_eq!(
        plant_states(&r)["plant-e"],
        (1, "pinned".to_string(), "pinned to 2.0.0".to_string()),
        "{r}"
    );
    assert_eq!(plant.version().as_deref(), Some("2.0.0"));
    let refused = hub.cli(&["plant", "pin", "plant-e", "9.9.9"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("no release \"9.9.9\""),
        "{}",
        text(&refused)
    );
}

/// Builds `tag` from a Dockerfile, saves it as a bundle in `dir`, and removes the tag again, so
/// that the plant's load has to bring it.
fn image_bundle(dir: &Path, tag: &str, dockerfile: &str, context: &[(&str, &Path)]) -> PathBuf {
    use crate::stack::docker_ok;
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, file) in context {
        std::fs::copy(file, build.path().join(name)).unwrap();
    }
    let out = Command::new("docker")
        .args(["build", "-q", "--force-rm", "-t", tag])
        .arg(build.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "building {tag}: {}", text(&out));
    let bundle = dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    docker_ok(&["save", "-o", bundle.to_str().unwrap(), tag]);
    docker_ok(&["rmi", tag]);
    bundle
}

/// `plantd stack status --json` of a supervised plant, by service: (image, health).
fn stack_services(plant: &Supervised) -> BTreeMap<String, (String, String)> {
    let out = Command::new(&plant.exe)
        .args(["stack", "status", "--json", "--data-dir"])
        .arg(&plant.data_dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return BTreeMap::new();
    }
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or("").to_string(),
                (
                    s["image"].as_str().unwrap_or("").to_string(),
                    s["health"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_release_brings_stack_images_through_the_hub_behind_the_health_gate() {
    use crate::stack::{next_name, remove_stack, stack_config, Made};
    let pg = Pg::start();
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(&dir.path().join("hub"), &pg, free_udp_addr(), None);
    let key = dir.path().join("release.key");
    let public = keygen(&hub, &key);
    // The images this test makes, removed at the end (after the stack that uses them).
    let next = format!("plantd-local/redis:7-p{}", std::process::id());
    let bad = format!("plantd-local/odoo-emulator:19.0-bad{}", std::process::id());
    let reused = format!("plantd-local/postgres:15-r{}", std::process::id());
    let _images = (
        Made("image", next.clone()),
        Made("image", bad.clone()),
        Made("image", reused.clone()),
    );
    let name = next_name();
    struct Stack(String);
    impl Drop for Stack {
        fn drop(&mut self) {
            remove_stack(&self.0);
        }
    }
    let _stack = Stack(name.clone());
    let config = format!(
        "[update]\nrelease_keys = [\"{public}\"]\n\n{}",
        stack_config(&name, free_addr(), "").replace("\"60s\"", "\"30s\"")
    );
    let plant = Supervised::start(dir.path(), dir.path(), "plant-i", &hub, &config);
    let healthy = |want: &[(&str, &str)]| {
        let s = stack_services(&plant);
        s.len() == 3
            && s.values().all(|(_, h)| h == "healthy")
            && want.iter().all(|(svc, image)| s[*svc].0 == *image)
    };
    wait_for(180, "the stack to be healthy", || healthy(&[]));

    // A new Redis build under a tag of its own, in a bundle with release 2.0.0.
    let started = Instant::now();
    let bundle = image_bundle(
        dir.path(),
        &next,
        "FROM plantd-local/redis:7\nLABEL io.plantd.test=next\n",
        &[],
    );
    let bundle_size = std::fs::metadata(&bundle).unwrap().len();
    let saved = started.elapsed();
    let v2 = release_of(dir.path(), "2.0.0");
    let started = Instant::now();
    let out = publish_with_images(&hub, &v2, "2.0.0", &key, Some(&bundle));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("with stack images {next}")),
        "{}",
        text(&out)
    );
    let published = started.elapsed();
    let listed = hub.cli(&["release", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["images"]["tags"], serde_json::json!([next]));
    assert_eq!(listed[0]["images"]["size"], bundle_size);

    let started = Instant::now();
    start_rollout(&hub, "2.0.0", "100%", "0");
    wait_for(300, "the rollout with images to finish", || {
        rollout(&hub)["state"] == "done"
    });
    let rolled = started.elapsed();
    let r = rollout(&hub);
    let (_, state, reason) = &plant_states(&r)["plant-i"];
    assert_eq!(state, "installed", "{r}");
    assert!(
        reason.contains(&format!("stack images: redis on {next} healthy")),
        "{r}"
    );
    wait_for(60, "the plant to run 2.0.0 on the new Redis", || {
        plant.version().as_deref() == Some("2.0.0") && healthy(&[("redis", next.as_str())])
    });
    println!(
        "stack images through the hub: a {:.0} MB bundle saved in {:.1} s, published in {:.1} s, rolled out (fetch, load, health gate, binary trial) in {:.1} s",
        bundle_size as f64 / 1e6,
        saved.as_secs_f64(),
        published.as_secs_f64(),
        rolled.as_secs_f64()
    );

    // An Odoo build that exits at start, with release 3.0.0: the stack's gate rolls it back,
    // Odoo runs its old image, and the binary is not tried.
    let source = dir.path().join("exits.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"crashing on purpose\"); return 3; }\n",
    )
    .unwrap();
    let exits = dir.path().join("exits");
    let built = Command::new("cc")
        .args(["-static", "-o"])
        .arg(&exits)
        .arg(&source)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let bad_bundle = image_bundle(
        dir.path(),
        &bad,
        "FROM scratch\nCOPY exits /exits\nCMD [\"/exits\"]\n",
        &[("exits", &exits)],
    );
    let v3 = release_of(dir.path(), "3.0.0");
    let out = publish_with_images(&hub, &v3, "3.0.0", &key, Some(&bad_bundle));
    assert!(out.status.success(), "{}", text(&out));
    start_rollout(&hub, "3.0.0", "100%", "0");
    wait_for(300, "the rollout to pause on the stack's rollback", || {
        rollout(&hub)["state"] == "paused"
    });
    let r = rollout(&hub);
    let (_, state, reason) = &plant_states(&r)["plant-i"];
    assert_eq!(state, "failed", "{r}");
    assert!(
        reason.contains("stack images did not pass the health gate") && reason.contains(&bad),
        "{r}"
    );
    wait_for(120, "Odoo back on its old image", || {
        healthy(&[
            ("odoo", "plantd-local/odoo-emulator:19.0"),
            ("redis", next.as_str()),
        ])
    });
    assert_eq!(plant.version().as_deref(), Some("2.0.0"));
    assert_eq!(
        std::fs::read(&plant.exe).unwrap(),
        std::fs::read(&v2).unwrap(),
        "the binary of 3.0.0 was never swapped in"
    );
    // What the stack runs is what it will run after a restart: the move of Odoo is undone on
    // disk too, Redis's stays.
    let overrides: Value =
        serde_json::from_slice(&std::fs::read(plant.data_dir.join("stack/images.json")).unwrap())
            .unwrap();
    assert_eq!(overrides["redis"]["image"], next.as_str(), "{overrides}");
    assert!(overrides.get("odoo").is_none(), "{overrides}");
    assert!(!plant.data_dir.join("stack/images-pending.json").exists());
    let pid = plant.child.lock().unwrap().as_ref().unwrap().id();
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    wait_for(30, "the supervisor to start the plant again", || {
        *plant.starts.lock().unwrap() >= 2
    });
    plant.wait_serving(30);
    std::thread::sleep(Duration::from_secs(3));
    wait_for(60, "the restarted plant's stack on the same images", || {
        healthy(&[
            ("odoo", "plantd-local/odoo-emulator:19.0"),
            ("redis", next.as_str()),
        ])
    });

    // A bundle whose tag names another image on the plant (a build that reused a tag) is
    // refused before Docker loads it: loading would re-point the tag under the stack's feet.
    let reused_bundle = image_bundle(
        dir.path(),
        &reused,
        "FROM plantd-local/postgres:15\nLABEL io.plantd.test=bundled\n",
        &[],
    );
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("Dockerfile"),
        "FROM plantd-local/postgres:15\nLABEL io.plantd.test=already-here\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "--force-rm", "-t", &reused])
        .arg(other.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let here = crate::stack::docker_ok(&["image", "inspect", "-f", "{{.Id}}", &reused]);
    let v4 = release_of(dir.path(), "4.0.0");
    let out = publish_with_images(&hub, &v4, "4.0.0", &key, Some(&reused_bundle));
    assert!(out.status.success(), "{}", text(&out));
    start_rollout(&hub, "4.0.0", "100%", "0");
    wait_for(120, "the rollout to pause on the refusal", || {
        rollout(&hub)["state"] == "paused"
    });
    let r = rollout(&hub);
    let (_, state, reason) = &plant_states(&r)["plant-i"];
    assert_eq!(state, "failed", "{r}");
    assert!(
        reason.contains(&format!("{reused} already names another image here")),
        "{r}"
    );
    assert_eq!(
        crate::stack::docker_ok(&["image", "inspect", "-f", "{{.Id}}", &reused]),
        here,
        "the tag still names the plant's own image"
    );
    assert!(healthy(&[("postgres", "plantd-local/postgres:15")]));

    // Publishing checks the bundle before anything is stored: a file that is not a bundle is
    // refused, and the hub lists no such release.
    let not_a_bundle = dir.path().join("junk.tar");
    std::fs::write(&not_a_bundle, b"not a tar at all").unwrap();
    let out = publish_with_images(&hub, &v3, "3.0.1", &key, Some(&not_a_bundle));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not an image bundle"),
        "{}",
        text(&out)
    );
    let listed = hub.cli(&["release", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "nothing of 3.0.1 is stored"
    );
}
