//! The stack supervisor against the real Docker engine, with the images that
//! images/build-local.sh builds (tests/run.sh builds them first): PostgreSQL and Redis from
//! Debian's packages, and the Odoo emulator. Each test runs its own stack (its own name, so
//! its own containers, network and volumes) and removes all of it at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use plantd_testkit::stack::*;

use crate::harness;

/// An image whose process exits at once, built on the local base image; removed on drop.
fn exiting_image() -> Made {
    let tag = format!(
        "plantd-test/exits-at-once:{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM plantd-local/base:bookworm\nCMD [\"sh\", \"-c\", \"echo crashing on purpose; exit 3\"]\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "--force-rm", "-t", &tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Made("image", tag)
}

/// One service's entry in a status list (`null` while the supervisor has not reported yet).
fn svc<'a>(status: &'a [Value], service: &str) -> &'a Value {
    status
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or(&Value::Null)
}

fn has_event(events: &[Value], service: &str, event: &str) -> bool {
    events
        .iter()
        .any(|e| e["service"] == service && e["event"] == event)
}

#[test]
fn stack_comes_up_heals_and_leaves_others_alone() {
    // A container on the same engine that plantd does not own.
    let foreign = Made("container", format!("foreign-{}", next_name()));
    let foreign = &foreign.1;
    docker_ok(&[
        "run",
        "-d",
        "--name",
        foreign,
        "--label",
        "owner=someone-else",
        "plantd-local/redis:7",
    ]);
    let foreign_id = inspect(foreign, "{{.Id}}");
    let foreign_started = inspect(foreign, "{{.State.StartedAt}}");

    let mut stack = TestStack::start("");
    let started = Instant::now();
    stack.wait_all_healthy(Duration::from_secs(120));
    eprintln!("from nothing to all healthy in {:?}", started.elapsed());
    let status = stack.status();
    for s in &status {
        let service = s["service"].as_str().unwrap();
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["restarts"], 0, "{s}");
        assert_eq!(s["container"], stack.container(service), "{s}");
        assert!(
            s["image"].as_str().unwrap().starts_with("plantd-local/"),
            "{s}"
        );
        assert!(s["since"].as_str().unwrap().starts_with("20"), "{s}");
        // Every container carries the stack's labels, including the hash of its spec.
        let labels = inspect(&stack.container(service), "{{json .Config.Labels}}");
        let labels: Value = serde_json::from_str(&labels).unwrap();
        assert_eq!(labels["io.plantd.stack"], stack.name.as_str());
        assert_eq!(labels["io.plantd.service"], service);
        assert_eq!(labels["io.plantd.spec"].as_str().unwrap().len(), 16);
    }
    // The generated passwords are in the data dir, mode 0600, and not in the log or status.
    let secrets = stack.plant.data_dir.join("stack/secrets.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secrets: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
    let password = secrets["postgres_password"].as_str().unwrap();
    assert!(password.len() >= 32);
    assert!(!stack.cli_ok(&["stack", "status"]).contains(password));
    // Odoo's config, one file per content (named by its hash), mounted read-only.
    let conf_path = std::fs::read_dir(stack.plant.data_dir.join("stack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "conf"))
        .expect("odoo-HASH.conf in DATA_DIR/stack");
    let odoo_conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(
        inspect(&stack.container("odoo"), "{{json .Mounts}}").contains(conf_path.to_str().unwrap())
    );
    for line in [
        "proxy_mode = True",
        "workers = 4",
        "gevent_port = 8072",
        "list_db = False",
    ] {
        assert!(odoo_conf.contains(line), "odoo.conf lacks {line:?}");
    }
    // It holds passwords: 0600, and the user Odoo's image runs as (odoo, 101) owns it, so
    // Odoo reads it through the mount and nobody else on the host does.
    use std::os::unix::fs::MetadataExt;
    let owner_mode = |p: &std::path::Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o777)
    };
    assert_eq!(owner_mode(&conf_path), (101, 101, 0o600));
    // One an older plantd wrote (root's, 0644) is made so at the next start, Odoo untouched.
    let odoo_id = inspect(&stack.container("odoo"), "{{.Id}}");
    std::os::unix::fs::chown(&conf_path, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&conf_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    stack.restart_plantd("");
    stack.wait_all_healthy(Duration::from_secs(60));
    assert_eq!(owner_mode(&conf_path), (101, 101, 0o600));
    assert_eq!(inspect(&stack.container("odoo"), "{{.Id}}"), odoo_id);
    // "Up for" is the container's: since Docker started it, not since this plantd saw it.
    let started = inspect(&stack.container("odoo"), "{{.State.StartedAt}}");
    let since = stack.service("odoo")["since"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !since.is_empty() && started.starts_with(since.trim_end_matches('Z')),
        "odoo's since {since:?}, Docker's start {started:?}"
    );

    // kill -9 of the PostgreSQL server (PID 1 of its container, seen from the host).
    let pid = inspect(&stack.container("postgres"), "{{.State.Pid}}");
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    stack.wait_for(
        "PostgreSQL restarted and healthy",
        Duration::from_secs(60),
        |s| svc(s, "postgres")["restarts"] == 1 && svc(s, "postgres")["health"] == "healthy",
    );

    // Odoo running but not answering: `docker pause`.
    docker_ok(&["pause", &stack.container("odoo")]);
    let paused = Instant::now();
    // Said at once: a paused container answers nothing, whatever its last probe said.
    stack.wait_for(
        "paused Odoo reported unhealthy",
        Duration::from_secs(8),
        |s| {
            svc(s, "odoo")["health"] == "unhealthy"
                && svc(s, "odoo")["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("paused"))
        },
    );
    eprintln!(
        "paused Odoo reported unhealthy after {:?}",
        paused.elapsed()
    );
    stack.wait_for(
        "hung Odoo restarted and healthy",
        Duration::from_secs(90),
        |s| {
            svc(s, "odoo")["restarts"] == 1
                && svc(s, "odoo")["health"] == "healthy"
                && svc(s, "odoo")["state"] == "running"
        },
    );
    eprintln!("hung Odoo healthy again after {:?}", paused.elapsed());

    // A container removed by hand is recreated.
    let redis_id = inspect(&stack.container("redis"), "{{.Id}}");
    docker_ok(&["rm", "-f", &stack.container("redis")]);
    stack.wait_for(
        "Redis recreated and healthy",
        Duration::from_secs(60),
        |s| svc(s, "redis")["health"] == "healthy" && svc(s, "redis")["id"] != redis_id[..12],
    );

    let events = stack.events();
    assert!(has_event(&events, "postgres", "start"), "{events:#?}");
    assert!(has_event(&events, "odoo", "unhealthy"), "{events:#?}");
    assert!(has_event(&events, "odoo", "restart"), "{events:#?}");
    assert!(has_event(&events, "redis", "create"), "{events:#?}");

    // An admin's restart.
    let started = inspect(&stack.container("redis"), "{{.State.StartedAt}}");
    let out = stack.cli_ok(&["stack", "restart", "redis"]);
    assert!(out.contains("restarted redis"), "{out}");
    let restarted = inspect(&stack.container("redis"), "{{.State.StartedAt}}");
    assert_ne!(restarted, started);
    // Its "up for" starts again (the container keeps its id and its state).
    stack.wait_for("redis up since its restart", Duration::from_secs(10), |s| {
        svc(s, "redis")["since"]
            .as_str()
            .is_some_and(|t| restarted.starts_with(t.trim_end_matches('Z')))
    });
    assert!(stack
        .events()
        .iter()
        .any(|e| e["service"] == "redis" && e["message"] == "asked by an admin"));

    // The logs of a service, as `plantd stack logs` shows them.
    let logs = stack.cli_ok(&["stack", "logs", "odoo", "--tail", "5"]);
    assert!(
        !logs.trim().is_empty() && logs.lines().count() <= 5,
        "{logs}"
    );

    // The foreign container was not touched.
    assert_eq!(inspect(foreign, "{{.Id}}"), foreign_id);
    assert_eq!(inspect(foreign, "{{.State.Status}}"), "running");
    assert_eq!(inspect(foreign, "{{.State.StartedAt}}"), foreign_started);

    // `stack down` removes the containers and keeps the data.
    stack.cli_ok(&["stack", "down"]);
    let label = format!("label=io.plantd.stack={}", stack.name);
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &label]), "");
    docker_ok(&["volume", "inspect", &format!("{}-pgdata", stack.name)]);
    let refused = stack.cli(&["stack", "down", "--delete-volumes"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    docker_ok(&["volume", "inspect", &format!("{}-pgdata", stack.name)]);
    let out = stack.cli_ok(&["stack", "down", "--delete-volumes", "--yes"]);
    assert!(out.contains("deleted volume"), "{out}");
    assert!(
        !docker(&["volume", "inspect", &format!("{}-pgdata", stack.name)])
            .status
            .success()
    );
}

#[test]
fn ingress_proxies_http_and_the_websocket() {
    let stack = TestStack::start("");
    stack.wait_all_healthy(Duration::from_secs(120));
    let rt = harness::rt();
    rt.block_on(async {
        let client = harness::client_for(&stack.plant.data_dir.join("tls/api.crt"), stack.ingress);
        let url = |p: &str| format!("https://localhost:{}{p}", stack.ingress.port());
        let r = client.get(url("/web/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // What Odoo saw: the original host and scheme, and who asked.
        let seen: Value = client
            .get(url("/web/emulator/request"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(seen["scheme"], "https", "{seen}");
        assert_eq!(
            seen["host"],
            format!("localhost:{}", stack.ingress.port()),
            "{seen}"
        );
        assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
        assert_eq!(seen["port"], 8069, "{seen}");
        // The websocket reaches the gevent port.
        let answer = websocket_echo(&stack, "hello from the shop floor").await;
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["echo"], "hello from the shop floor");
        assert_eq!(answer["port"], 8072);
    });
    // While Odoo is down, the ingress says so.
    stack.cli_ok(&["stack", "down"]);
    rt.block_on(async {
        let client = harness::client_for(&stack.plant.data_dir.join("tls/api.crt"), stack.ingress);
        let r = client
            .get(format!(
                "https://localhost:{}/web/health",
                stack.ingress.port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("Odoo is not running"));
    });
    // Down stays down across a restart of plantd, until `stack apply`.
    let mut stack = stack;
    stack.restart_plantd("");
    std::thread::sleep(Duration::from_secs(3));
    let label = format!("label=io.plantd.stack={}", stack.name);
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &label]), "");
    assert!(stack.cli_ok(&["stack", "status"]).contains("taken down"));
    let answer = stack.cli_ok(&["stack", "apply"]);
    assert!(answer.contains("bringing the stack up again"), "{answer}");
    stack.wait_all_healthy(Duration::from_secs(120));
}

/// Opens `/websocket` through the ingress over TLS, sends one text frame and returns the text
/// of the first frame that comes back.
async fn websocket_echo(stack: &TestStack, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = harness::trusting(&stack.plant.data_dir.join("tls/api.crt"));
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(stack.ingress).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "GET /websocket HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: https://localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        stack.ingress.port()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The accept value for the key above, from RFC 6455's own example.
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // One masked text frame (clients must mask).
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let first = s.read_u8().await.unwrap();
    assert_eq!(first, 0x81, "a final text frame");
    let len = match s.read_u8().await.unwrap() {
        n @ 0..=125 => n as usize,
        126 => s.read_u16().await.unwrap() as usize,
        other => panic!("unexpected length byte {other}"),
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).await.unwrap();
    String::from_utf8(payload).unwrap()
}

#[test]
fn spec_change_keeps_data_and_a_bad_upgrade_rolls_back() {
    let mut stack = TestStack::start("");
    stack.wait_all_healthy(Duration::from_secs(120));
    stack.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
    let pg_id = inspect(&stack.container("postgres"), "{{.Id}}");

    // A spec change (a memory limit and an environment variable): recreated, data kept.
    let answer = stack.apply("[stack.postgres]\nmemory = \"512MiB\"\nenv = { TZ = \"UTC\" }\n");
    assert!(answer.contains("postgres: recreating"), "{answer}");
    stack.wait_for("PostgreSQL recreated", Duration::from_secs(60), |s| {
        svc(s, "postgres")["health"] == "healthy" && svc(s, "postgres")["id"] != pg_id[..12]
    });
    assert_eq!(
        inspect(&stack.container("postgres"), "{{.HostConfig.Memory}}"),
        "536870912"
    );
    assert_eq!(stack.psql("SELECT x FROM kept"), "42");

    // An upgrade of Odoo to an image whose process exits at once: rolled back.
    let bad = exiting_image();
    let answer = stack.apply(&format!(
        "[stack.postgres]\nmemory = \"512MiB\"\nenv = {{ TZ = \"UTC\" }}\n[stack.odoo]\nimage = \"{bad}\"\n"
    ));
    assert!(answer.contains("odoo: upgrading"), "{answer}");
    // An upgrade that can change data takes a backup first (invariant 4).
    assert!(
        answer.contains("taken before the new odoo image"),
        "{answer}"
    );
    let listed = stack.cli_ok(&["backup", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    stack.wait_for(
        "the failed upgrade rolled back",
        Duration::from_secs(90),
        |s| {
            has_event(&stack.events(), "odoo", "rollback")
                && svc(s, "odoo")["health"] == "healthy"
                && svc(s, "odoo")["image"] == "plantd-local/odoo-emulator:19.0"
        },
    );
    let events = stack.events();
    let rollback = events
        .iter()
        .find(|e| e["event"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback event: {events:#?}"));
    assert!(
        rollback["message"].as_str().unwrap().contains(&bad.1),
        "{rollback}"
    );
    assert_eq!(stack.psql("SELECT x FROM kept"), "42");

    // The same upgrade made by editing plant.toml while plantd is stopped: judged alike.
    stack.restart_plantd(&format!(
        "[stack.postgres]\nmemory = \"512MiB\"\nenv = {{ TZ = \"UTC\" }}\n[stack.odoo]\nimage = \"{bad}\"\n"
    ));
    stack.wait_for(
        "the upgrade at start rolled back",
        Duration::from_secs(90),
        |s| {
            has_event(&stack.events(), "odoo", "rollback")
                && svc(s, "odoo")["health"] == "healthy"
                && svc(s, "odoo")["image"] == "plantd-local/odoo-emulator:19.0"
        },
    );
}

#[test]
fn a_service_that_always_crashes_opens_the_breaker() {
    let bad = exiting_image();
    let stack = TestStack::start(&format!("[stack.redis]\nimage = \"{bad}\"\n"));
    stack.wait_for("the breaker opened", Duration::from_secs(120), |s| {
        svc(s, "redis")["breaker"] == true
    });
    let redis = stack.service("redis");
    assert_eq!(redis["restarts"], 5, "{redis}");
    // Odoo waits for Redis and is never started against a broken dependency.
    assert_eq!(stack.service("odoo")["state"], "missing");
    // It stays open: no more restarts.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(stack.service("redis")["restarts"], 5);
    let human = stack.cli_ok(&["stack", "status"]);
    assert!(human.contains("BREAKER"), "{human}");
    assert!(has_event(&stack.events(), "redis", "breaker_open"));
    // `plantd status` says what is wrong.
    let status = stack.cli_ok(&["status"]);
    assert!(status.contains("redis unhealthy"), "{status}");

    // A reset closes the breaker and plantd tries again (the image still crashes).
    let answer = stack.cli_ok(&["stack", "reset", "redis"]);
    assert!(
        answer.contains("closed the crash-loop breaker of redis"),
        "{answer}"
    );
    stack.wait_for(
        "Redis tried again after the reset",
        Duration::from_secs(60),
        |s| svc(s, "redis")["restarts"].as_u64() > Some(5),
    );
    // With the cause fixed (the image), Redis and then Odoo come up.
    stack.apply("");
    stack.wait_all_healthy(Duration::from_secs(120));
}

#[test]
fn names_taken_by_others_are_refused_and_left_alone() {
    let name = next_name();
    // Someone else's container and volume, with the names the stack would use.
    let squatter = Made("container", format!("{name}-redis"));
    docker_ok(&["run", "-d", "--name", &squatter.1, "plantd-local/redis:7"]);
    let volume = Made("volume", format!("{name}-pgdata"));
    docker_ok(&["volume", "create", &volume.1]);
    let squatter_id = inspect(&squatter.1, "{{.Id}}");
    let squatter_started = inspect(&squatter.1, "{{.State.StartedAt}}");

    let stack = TestStack::start_named(name, "");
    stack.wait_for("both refusals reported", Duration::from_secs(60), |s| {
        let detail = |svc_name| {
            svc(s, svc_name)["detail"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        detail("postgres").contains("plantd did not create")
            && detail("redis").contains("not this stack's")
    });
    assert_eq!(stack.service("odoo")["state"], "missing");
    // Untouched: the same container, still running, never restarted; the volume unlabelled.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect(&squatter.1, "{{.Id}}"), squatter_id);
    assert_eq!(inspect(&squatter.1, "{{.State.Status}}"), "running");
    assert_eq!(
        inspect(&squatter.1, "{{.State.StartedAt}}"),
        squatter_started
    );
    let labels = docker_ok(&["volume", "inspect", "-f", "{{json .Labels}}", &volume.1]);
    assert!(!labels.contains("io.plantd"), "{labels}");
}

#[test]
fn docker_going_away_does_not_stop_the_journal() {
    // plantd reaches Docker through a relay socket this test can cut, so that the engine the
    // other tests use keeps running.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let relay = SocketRelay::start(&socket, Path::new("/var/run/docker.sock"));
    let stack = TestStack::start(&format!("docker_socket = \"{}\"\n", socket.display()));
    stack.wait_all_healthy(Duration::from_secs(120));
    let token = harness::create_token(&stack.plant.data_dir, "scanner-1");

    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = stack.cli_ok(&["stack", "status"]);
        if out.contains("unreachable") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(report.contains("Docker engine unreachable"), "{report}");
    let status = stack.cli_ok(&["status"]);
    assert!(
        status.contains("the Docker engine is unreachable"),
        "{status}"
    );
    // Devices still get their transactions accepted.
    let rt = harness::rt();
    rt.block_on(async {
        let (code, body) = harness::post_json(
            &stack.plant.client(),
            &stack.plant.url("/api/v1/transactions"),
            &token,
            &harness::tx("while-docker-is-away"),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    });

    // A stopped engine stops its containers too (no live-restore here).
    for service in ["odoo", "redis", "postgres"] {
        docker_ok(&["stop", "-t", "10", &stack.container(service)]);
    }

    relay.heal();
    stack.wait_all_healthy(Duration::from_secs(90));
    for service in ["postgres", "redis", "odoo"] {
        assert_eq!(
            inspect(&stack.container(service), "{{.State.Status}}"),
            "running"
        );
    }
    let events = stack.events();
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("answers again")),
        "{events:#?}"
    );
}

#[test]
fn image_bundles_are_checked_before_loading() {
    // The stack's Redis on a tag of this test's own, which the test can remove and get back.
    let name = next_name();
    let tag = format!("plantd-test/redis:{name}");
    docker_ok(&["tag", "plantd-local/redis:7", &tag]);
    let _made = Made("image", tag.clone());
    let stack = TestStack::start_named(name, &format!("[stack.redis]\nimage = \"{tag}\"\n"));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("stack-images.tar");
    let out = stack.cli_ok(&["images", "save", bundle.to_str().unwrap()]);
    assert!(out.contains(&tag), "{out}");
    let size = std::fs::metadata(&bundle).unwrap().len();

    docker_ok(&["rmi", &tag]);
    assert!(!docker(&["image", "inspect", &tag]).status.success());
    let out = stack.cli_ok(&["images", "load", bundle.to_str().unwrap()]);
    assert!(out.contains(&format!("{tag}: present")), "{out}");
    docker_ok(&["image", "inspect", &tag]);

    // A truncated copy and a file that is no bundle are refused before Docker sees them.
    let truncated = dir.path().join("truncated.tar");
    {
        use std::io::Read;
        let mut head = Vec::new();
        std::fs::File::open(&bundle)
            .unwrap()
            .take(size / 2)
            .read_to_end(&mut head)
            .unwrap();
        std::fs::write(&truncated, head).unwrap();
    }
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not an image bundle").unwrap();
    for (file, want) in [
        (&truncated, "damaged or truncated"),
        (&junk, "not an image bundle"),
    ] {
        let out = stack.cli(&["images", "load", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(want) && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
}

/// A unix-socket relay in front of the Docker engine that a test can cut and heal.
struct SocketRelay {
    path: PathBuf,
    upstream: PathBuf,
    rt: tokio::runtime::Runtime,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SocketRelay {
    fn start(path: &Path, upstream: &Path) -> SocketRelay {
        let relay = SocketRelay {
            path: path.to_path_buf(),
            upstream: upstream.to_path_buf(),
            rt: harness::rt(),
            task: std::sync::Mutex::new(None),
        };
        relay.heal();
        relay
    }

    /// Accepts and forwards connections.
    fn heal(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = {
            let _guard = self.rt.enter();
            tokio::net::UnixListener::bind(&self.path).unwrap()
        };
        let upstream = self.upstream.clone();
        let task = self.rt.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = tokio::net::UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Drops every connection and the socket, as a stopped engine would.
    fn cut(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A daemon stopped while it created the stack's network can leave two networks of that name
/// (Docker 20.10 does not refuse a duplicate through its API); the next daemon keeps one and
/// brings the stack up, instead of failing on an "ambiguous" name until the breaker opens.
#[test]
fn a_duplicate_network_left_behind_is_removed() {
    let name = next_name();
    let network = format!("{name}-net");
    let body = format!(
        "{{\"Name\":\"{network}\",\"Driver\":\"bridge\",\"Labels\":{{\"io.plantd.stack\":\"{name}\"}}}}"
    );
    for _ in 0..2 {
        let out = Command::new("curl")
            .args(["-sf", "--unix-socket", "/var/run/docker.sock", "-X", "POST"])
            .args(["-H", "Content-Type: application/json", "-d", &body])
            .arg("http://localhost/networks/create")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating {network}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let count = || {
        docker_ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=io.plantd.stack={name}"),
        ])
        .lines()
        .count()
    };
    assert_eq!(count(), 2, "the duplicate is there to begin with");
    let stack = TestStack::start_named(name.clone(), "");
    stack.wait_all_healthy(Duration::from_secs(120));
    assert_eq!(count(), 1);
}
