//! Stack supervision benchmark: `cargo bench --bench stack`.
//!
//! Runs the plant's PostgreSQL, Redis and Odoo (the local images, `images/build-local.sh`) under
//! the real `plantd up`, then the same services under `docker-compose` 1.29 as a careful admin
//! would write them (`restart: always`, a healthcheck per service, Odoo `depends_on` the other two
//! with `condition: service_healthy`), and prints, for each:
//! - cold start: from nothing (no containers, no volumes) to all three services healthy;
//! - `kill -9` of PostgreSQL's server process, from the host, to PostgreSQL healthy again;
//! - `docker pause` of Odoo (a hung server) to Odoo healthy again, waiting at most 60 s.
//!
//! The benchmark judges health itself, the same way for both systems, from the host against each
//! container's address on its network: a real PostgreSQL login and `SELECT 1`, Redis `PING`,
//! Odoo `GET /web/health`. It polls every 100 ms, each probe in its own task so that a hung
//! service does not slow the polling. A container that is not running (exited, restarting,
//! paused) fails without a probe. "Healthy" is the first of a run of passing probes lasting 5 s,
//! all from the same server process: a frozen server that answers for a moment when its
//! supervisor unpauses it, just before restarting it, does not count. After a fault it is only
//! looked for once the service was seen failing (or its container changed).
//!
//! `PLANTD_BENCH_RUNS` sets the repetitions (default 3). Everything it creates is named
//! `bench-p<pid>` (plantd) or `bench-c<pid>` (compose) and removed at the end of each run, even
//! when a step fails.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use plantd_testkit::command::{leftovers, remove_by_label, run, unpause};

use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const COMPOSE: &str = "/usr/bin/docker-compose";

/// How often the benchmark probes each service.
const POLL: Duration = Duration::from_millis(100);
/// How long one probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a service must keep passing, from one server process, for its first pass to count.
const STABLE: Duration = Duration::from_secs(5);
const COLD_CAP: Duration = Duration::from_secs(180);
const KILL_CAP: Duration = Duration::from_secs(120);
const PAUSE_CAP: Duration = Duration::from_secs(60);
/// The longest any docker, docker-compose or plantd command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The user both systems give Odoo in PostgreSQL (plantd's `DB_USER`).
const DB_USER: &str = "odoo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Svc {
    Postgres,
    Redis,
    Odoo,
}

impl Svc {
    const ALL: [Svc; 3] = [Svc::Postgres, Svc::Redis, Svc::Odoo];

    fn as_str(self) -> &'static str {
        match self {
            Svc::Postgres => "postgres",
            Svc::Redis => "redis",
            Svc::Odoo => "odoo",
        }
    }
}

/// Where PostgreSQL's password comes from: plantd generates it on first start.
#[derive(Clone)]
enum Password {
    Fixed(String),
    /// plantd's `DATA_DIR/stack/secrets.json`, read at every probe (it appears after the start).
    SecretsFile(PathBuf),
}

impl Password {
    fn get(&self) -> Option<String> {
        match self {
            Password::Fixed(p) => Some(p.clone()),
            Password::SecretsFile(path) => {
                let bytes = std::fs::read(path).ok()?;
                let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                v["postgres_password"].as_str().map(str::to_string)
            }
        }
    }
}

/// One system's running stack, as the benchmark sees it: container names and the password.
#[derive(Clone)]
struct Target {
    containers: [String; 3],
    password: Password,
}

impl Target {
    fn container(&self, svc: Svc) -> &str {
        &self.containers[svc as usize]
    }
}

/// A container as `docker inspect` shows it: running or not, its server's host PID, its address.
struct Look {
    running: bool,
    pid: i64,
    ip: Option<IpAddr>,
}

async fn look(docker: &Docker, container: &str) -> Option<Look> {
    let c = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()?;
    let state = c.state.unwrap_or_default();
    let ip = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_values()
        .filter_map(|e| e.ip_address)
        .find_map(|ip| ip.parse().ok());
    Some(Look {
        running: state.status == Some(ContainerStateStatusEnum::RUNNING),
        pid: state.pid.unwrap_or(0),
        ip,
    })
}

/// One poll of a service: whether it passed, and the container's PID (0 when there is none).
async fn check(docker: &Docker, target: &Target, svc: Svc) -> (bool, i64) {
    let Some(l) = look(docker, target.container(svc)).await else {
        return (false, 0);
    };
    let Some(ip) = l.ip.filter(|_| l.running) else {
        return (false, l.pid);
    };
    let probe = async {
        match svc {
            Svc::Postgres => probe_postgres(ip, target.password.get()?).await,
            Svc::Redis => probe_redis(ip).await,
            Svc::Odoo => probe_odoo(ip).await,
        }
    };
    let ok = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(()))
    );
    (ok, l.pid)
}

/// A real login as Odoo's user, then `SELECT 1`.
async fn probe_postgres(ip: IpAddr, password: String) -> Option<()> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(ip.to_string())
        .port(5432)
        .user(DB_USER)
        .password(password)
        .dbname("postgres")
        .application_name("plantd-bench")
        .connect_timeout(PROBE_TIMEOUT);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
    // The connection is driven here rather than in a task, so a timeout drops it too.
    let query = async move {
        let result = client.simple_query("SELECT 1").await.ok().map(|_| ());
        drop(client);
        result
    };
    let (result, _) = tokio::join!(query, connection);
    result
}

async fn probe_redis(ip: IpAddr) -> Option<()> {
    let mut stream = TcpStream::connect((ip, 6379)).await.ok()?;
    stream.write_all(b"PING\r\n").await.ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await.ok()?;
    buf[..n].starts_with(b"+PONG").then_some(())
}

/// `GET /web/health` by hand (plain HTTP/1.1): a 200 passes.
async fn probe_odoo(ip: IpAddr) -> Option<()> {
    let mut stream = TcpStream::connect((ip, 8069)).await.ok()?;
    let request =
        format!("GET /web/health HTTP/1.1\r\nHost: {ip}:8069\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    (status_line.split_whitespace().nth(1) == Some("200")).then_some(())
}

/// Polls `svc` every [`POLL`] and returns how long after `since` it became healthy: the finish
/// of the first passing probe of a run lasting [`STABLE`], all from one PID. With `fault` (the container's PID
/// before a fault), passes count only after a probe failed or the container's PID changed.
/// `None` if it did not become healthy within `cap`.
async fn healthy(
    docker: Docker,
    target: Target,
    svc: Svc,
    since: Instant,
    fault: Option<i64>,
    cap: Duration,
) -> Option<Duration> {
    // Results by poll, evaluated in the order the polls started.
    let mut polls: Vec<Option<(bool, i64, Instant)>> = Vec::new();
    let mut next = 0;
    let mut failed = fault.is_none();
    // The first pass of the current run of passes, and its server's PID.
    let mut run_start: Option<(Instant, i64)> = None;
    let mut probes = JoinSet::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let give_up = since + cap + STABLE + PROBE_TIMEOUT + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() > give_up {
                    return None;
                }
                let (docker, target, i) = (docker.clone(), target.clone(), polls.len());
                polls.push(None);
                probes.spawn(async move {
                    let (ok, pid) = check(&docker, &target, svc).await;
                    (i, ok, pid, Instant::now())
                });
            }
            Some(Ok((i, ok, pid, done))) = probes.join_next() => {
                polls[i] = Some((ok, pid, done));
                while let Some(Some((ok, pid, done))) = polls.get(next).copied() {
                    next += 1;
                    if !failed {
                        // A changed PID is a new server, which may already pass.
                        failed = !ok || Some(pid) != fault;
                        if !failed {
                            continue;
                        }
                    }
                    if let Some((start, p)) = run_start.filter(|&(_, p)| !ok || p != pid) {
                        println!(
                            "  note: {} passed from {:.1} s, then {} at {:.1} s; not counted",
                            svc.as_str(),
                            (start - since).as_secs_f64(),
                            if ok { format!("PID {p} was replaced by {pid}") } else { "failed".into() },
                            (done - since).as_secs_f64()
                        );
                        run_start = None;
                    }
                    if !ok {
                        continue;
                    }
                    let (start, _) = *run_start.get_or_insert((done, pid));
                    if start > since + cap {
                        return None;
                    }
                    if done >= start + STABLE {
                        return Some(start - since);
                    }
                }
            }
        }
    }
}

/// One measure of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Took {
    In(Duration),
    /// Not healthy within this cap.
    NotIn(Duration),
    /// Not measured: the stack never came up.
    Skipped,
}

impl Took {
    fn new(d: Option<Duration>, cap: Duration) -> Took {
        d.map_or(Took::NotIn(cap), Took::In)
    }

    fn show(self) -> String {
        match self {
            Took::In(d) => format!("{:.1} s", d.as_secs_f64()),
            Took::NotIn(cap) => format!("not recovered in {} s", cap.as_secs()),
            Took::Skipped => "-".into(),
        }
    }

    /// For the median: anything but a time counts as longer than any time.
    fn key(self) -> Duration {
        match self {
            Took::In(d) => d,
            Took::NotIn(_) | Took::Skipped => Duration::MAX,
        }
    }
}

/// The three measures of one run of one system.
#[derive(Debug, Clone, Copy)]
struct Measures {
    cold: Took,
    kill: Took,
    pause: Took,
}

impl Measures {
    fn show(&self) -> String {
        format!(
            "cold start {}, kill -9 postgres {}, pause odoo {}",
            self.cold.show(),
            self.kill.show(),
            self.pause.show()
        )
    }
}

/// The three scenarios, on a stack whose start began at `t0`.
async fn scenarios(docker: &Docker, target: &Target, t0: Instant) -> Measures {
    let watch = |svc, since, fault, cap| {
        tokio::spawn(healthy(
            docker.clone(),
            target.clone(),
            svc,
            since,
            fault,
            cap,
        ))
    };

    // 1. From nothing to all three healthy: the last of the three.
    let mut cold = Some(Duration::ZERO);
    for w in Svc::ALL.map(|svc| watch(svc, t0, None, COLD_CAP)) {
        cold = cold.zip(w.await.unwrap()).map(|(a, b)| a.max(b));
    }
    let Some(cold) = cold else {
        return Measures {
            cold: Took::NotIn(COLD_CAP),
            kill: Took::Skipped,
            pause: Took::Skipped,
        };
    };

    // 2. kill -9 of PostgreSQL's server process, PID 1 of its container, from the host.
    let pid = pid_of(docker, target.container(Svc::Postgres)).await;
    let t = Instant::now();
    let out = run(
        Command::new("kill").args(["-9", &pid.to_string()]),
        COMMAND_LIMIT,
    );
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "kill -9 {pid} failed"
    );
    let kill = watch(Svc::Postgres, t, Some(pid), KILL_CAP).await.unwrap();
    // All three healthy again before the next fault.
    let now = Instant::now();
    for (svc, w) in Svc::ALL.map(|svc| (svc, watch(svc, now, None, KILL_CAP))) {
        let settled = w.await.unwrap();
        assert!(
            settled.is_some(),
            "{} is not healthy before the pause",
            svc.as_str()
        );
    }

    // 3. A hung Odoo: the container is frozen, its address and sockets stay.
    let odoo = target.container(Svc::Odoo);
    let pid = pid_of(docker, odoo).await;
    let t = Instant::now();
    docker.pause_container(odoo).await.expect("docker pause");
    let pause = watch(Svc::Odoo, t, Some(pid), PAUSE_CAP).await.unwrap();
    Measures {
        cold: Took::In(cold),
        kill: Took::new(kill, KILL_CAP),
        pause: Took::new(pause, PAUSE_CAP),
    }
}

async fn pid_of(docker: &Docker, container: &str) -> i64 {
    let l = look(docker, container).await.expect("docker inspect");
    assert!(l.running && l.pid > 0, "{container} is not running");
    l.pid
}

/// The stack under `plantd up`, in its own data directory; dropping it takes everything down.
struct PlantdStack {
    /// The plantd binary the runs share.
    bin: PathBuf,
    name: String,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl PlantdStack {
    fn new(bin: &Path, dir: &Path, name: &str) -> PlantdStack {
        let config = dir.join("plant.toml");
        std::fs::write(
            &config,
            format!("[stack]\nname = \"{name}\"\nimages = \"local\"\n[stack.ingress]\nlisten = \"off\"\n"),
        )
        .unwrap();
        PlantdStack {
            bin: bin.to_path_buf(),
            name: name.to_string(),
            config,
            data: dir.join("data"),
            log: dir.join("plantd.log"),
            child: None,
        }
    }

    fn label(&self) -> String {
        format!("io.plantd.stack={}", self.name)
    }

    fn target(&self) -> Target {
        Target {
            containers: Svc::ALL.map(|svc| format!("{}-{}", self.name, svc.as_str())),
            password: Password::SecretsFile(self.data.join("stack/secrets.json")),
        }
    }

    fn start(&mut self) {
        let api = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args(["up", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &api.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// `plantd stack status`, one line per service.
    fn status(&self) -> String {
        let out = run(
            Command::new(&self.bin)
                .args(["stack", "status", "--json", "--config"])
                .arg(&self.config)
                .arg("--data-dir")
                .arg(&self.data),
            COMMAND_LIMIT,
        );
        let v: serde_json::Value = out
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        let services = v.as_array().cloned().unwrap_or_default();
        services
            .iter()
            .map(|s| {
                format!(
                    "{} {}/{}, {} restarts",
                    s["service"].as_str().unwrap_or("?"),
                    s["state"].as_str().unwrap_or("?"),
                    s["health"].as_str().unwrap_or("?"),
                    s["restarts"]
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The end of plantd's log, for a failed run.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PlantdStack {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `stack down` goes through the running daemon, so it comes before the SIGTERM.
        unpause(&self.label());
        if matches!(child.try_wait(), Ok(None)) {
            let down = run(
                Command::new(&self.bin)
                    .args(["stack", "down", "--delete-volumes", "--yes", "--config"])
                    .arg(&self.config)
                    .arg("--data-dir")
                    .arg(&self.data),
                COMMAND_LIMIT,
            );
            if !down.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("warning: plantd stack down failed: {down:?}");
            }
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        remove_by_label(&self.label());
    }
}

/// The stack under docker-compose, in its own project directory; dropping it takes it down.
struct ComposeStack {
    project: String,
    dir: PathBuf,
    started: bool,
}

impl ComposeStack {
    fn new(dir: &Path, project: &str, password: &str) -> ComposeStack {
        std::fs::write(dir.join("docker-compose.yml"), compose_file(password)).unwrap();
        std::fs::write(dir.join("odoo.conf"), odoo_conf(password)).unwrap();
        ComposeStack {
            project: project.to_string(),
            dir: dir.to_path_buf(),
            started: false,
        }
    }

    fn label(&self) -> String {
        format!("com.docker.compose.project={}", self.project)
    }

    fn compose(&self) -> Command {
        let mut cmd = Command::new(COMPOSE);
        cmd.current_dir(&self.dir).args(["-p", &self.project]);
        cmd
    }

    fn target(&self, password: &str) -> Target {
        Target {
            containers: Svc::ALL.map(|svc| format!("{}_{}_1", self.project, svc.as_str())),
            password: Password::Fixed(password.to_string()),
        }
    }

    /// `docker-compose up -d` in a thread: with `service_healthy` it returns only once Odoo is
    /// started, and the benchmark polls meanwhile.
    fn start(&mut self) -> std::thread::JoinHandle<Result<Output, String>> {
        self.started = true;
        let mut cmd = self.compose();
        cmd.args(["up", "-d"]);
        std::thread::spawn(move || run(&mut cmd, COLD_CAP))
    }

    /// Docker's view of each container: state and healthcheck status.
    fn status(&self) -> String {
        let names = self.target("").containers;
        let mut args = vec![
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}, {{.RestartCount}} restarts",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = run(Command::new("docker").args(&args), COMMAND_LIMIT);
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace('\n', "; ")
        })
        .unwrap_or_default()
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        unpause(&self.label());
        let down = run(
            self.compose()
                .args(["down", "-v", "--remove-orphans", "-t", "10"]),
            COMMAND_LIMIT,
        );
        if !down.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("warning: docker-compose down failed: {down:?}");
        }
        remove_by_label(&self.label());
    }
}

/// The compose file: what plantd runs, written by a careful admin. The healthchecks use plantd's
/// default probe settings (interval 5 s, timeout 3 s, 3 retries) and start periods.
fn compose_file(password: &str) -> String {
    format!(
        r#"# The plant's stack under docker-compose 1.29, for plantd's stack benchmark.
version: "2.4"
services:
  postgres:
    image: plantd-local/postgres:15
    restart: always
    environment:
      POSTGRES_USER: {DB_USER}
      POSTGRES_PASSWORD: "{password}"
      POSTGRES_DB: postgres
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "{DB_USER}", "-d", "postgres"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 60s
  redis:
    image: plantd-local/redis:7
    restart: always
    volumes:
      - redis:/data
    healthcheck:
      test: ["CMD-SHELL", "redis-cli ping | grep -q PONG"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 20s
  odoo:
    image: plantd-local/odoo-emulator:19.0
    restart: always
    depends_on:
      postgres:
        condition: service_healthy
      redis:
        condition: service_healthy
    environment:
      HOST: postgres
      USER: {DB_USER}
      PASSWORD: "{password}"
    volumes:
      - odoo:/var/lib/odoo
      - ./odoo.conf:/etc/odoo/odoo.conf:ro
    healthcheck:
      test: ["CMD", "python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8069/web/health', timeout=3).status != 200)"]
      interval: 5s
      timeout: 3s
      retries: 3
      start_period: 120s
volumes:
  pgdata:
  redis:
  odoo:
"#
    )
}

/// Odoo's config, as plantd writes it (`src/stack/spec.rs`) with its defaults.
fn odoo_conf(password: &str) -> String {
    format!(
        "[options]\ndb_host = postgres\ndb_port = 5432\ndb_user = {DB_USER}\ndb_password = {password}\n\
         db_name = odoo\ndbfilter = ^odoo$\nadmin_passwd = {password}-admin\nproxy_mode = True\n\
         workers = 2\ngevent_port = 8072\nlist_db = False\ndata_dir = /var/lib/odoo\n"
    )
}

/// One run of plantd: start, the three scenarios, then everything down.
fn run_plantd(
    rt: &tokio::runtime::Runtime,
    docker: &Docker,
    base: &Path,
    bin: &Path,
    name: &str,
) -> Measures {
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut stack = PlantdStack::new(bin, dir.path(), name);
    let left = leftovers(&stack.label());
    assert!(left.is_empty(), "not starting from nothing: {left:?}");
    let target = stack.target();
    let t0 = Instant::now();
    stack.start();
    let m = rt.block_on(scenarios(docker, &target, t0));
    if !matches!(m.cold, Took::In(_)) {
        eprintln!("plantd's log:\n{}", stack.log_tail());
    }
    println!("  plantd after the run: {}", stack.status());
    m
}

/// One run of docker-compose: `up -d`, the three scenarios, then `down -v`.
fn run_compose(
    rt: &tokio::runtime::Runtime,
    docker: &Docker,
    base: &Path,
    project: &str,
) -> Measures {
    let dir = tempfile::tempdir_in(base).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let password = format!("bench{:08x}{:08x}", std::process::id(), nanos);
    let mut stack = ComposeStack::new(dir.path(), project, &password);
    let left = leftovers(&stack.label());
    assert!(left.is_empty(), "not starting from nothing: {left:?}");
    let target = stack.target(&password);
    let t0 = Instant::now();
    let up = stack.start();
    let m = rt.block_on(scenarios(docker, &target, t0));
    match up.join().unwrap() {
        Ok(o) if o.status.success() => {}
        other => eprintln!("docker-compose up failed: {other:?}"),
    }
    println!("  compose after the run: {}", stack.status());
    m
}

/// The median, where "did not recover" counts as longer than any time.
fn median(mut v: Vec<Took>) -> Took {
    v.sort_by_key(|t| t.key());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("PLANTD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    for image in [
        "plantd-local/postgres:15",
        "plantd-local/redis:7",
        "plantd-local/odoo-emulator:19.0",
    ] {
        let present = run(
            Command::new("docker").args(["image", "inspect", image]),
            COMMAND_LIMIT,
        );
        assert!(
            present.is_ok_and(|o| o.status.success()),
            "{image} is missing; run images/build-local.sh first"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let docker = rt.block_on(async {
        Docker::connect_with_local_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .expect("no Docker engine answers")
    });
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = work.path();
    // A copy, so that every run uses the binary this benchmark was built with even when a
    // build elsewhere replaces target/release/plantd meanwhile.
    let bin = base.join("plantd");
    std::fs::copy(env!("CARGO_BIN_EXE_plantd"), &bin).unwrap();
    let pid = std::process::id();
    let (plantd_name, project) = (format!("bench-p{pid}"), format!("bench-c{pid}"));
    let compose_version = run(
        Command::new(COMPOSE).arg("version").arg("--short"),
        COMMAND_LIMIT,
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_default();
    println!(
        "plantd stack benchmark: {} cores, local images, {runs} runs; health judged by this benchmark from the host every {} ms",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        POLL.as_millis()
    );
    println!(
        "plantd: default probes (every 5 s, timeout 3 s, 3 retries; every 1 s after a failure)"
    );
    println!("docker-compose {compose_version}: restart: always, healthchecks every 5 s (timeout 3 s, 3 retries), depends_on service_healthy");

    let mut results: [Vec<Measures>; 2] = [Vec::new(), Vec::new()];
    for r in 1..=runs {
        let p = run_plantd(&rt, &docker, base, &bin, &plantd_name);
        println!("run {r}/{runs} plantd: {}", p.show());
        results[0].push(p);
        let c = run_compose(&rt, &docker, base, &project);
        println!("run {r}/{runs} compose: {}", c.show());
        results[1].push(c);
    }

    println!();
    let runs_header: String = (1..=runs).map(|r| format!(" run {r} |")).collect();
    let runs_rule: String = (1..=runs).map(|_| "------:|").collect();
    println!("| measure | system |{runs_header} median |");
    println!("|---|---|{runs_rule}------:|");
    let measures = [
        "nothing → all three healthy",
        "kill -9 PostgreSQL → healthy",
        "docker pause Odoo → healthy",
    ];
    for (i, label) in measures.into_iter().enumerate() {
        for (system, list) in [("plantd", &results[0]), ("docker-compose", &results[1])] {
            let values: Vec<Took> = list.iter().map(|m| [m.cold, m.kill, m.pause][i]).collect();
            let cells: String = values.iter().map(|v| format!(" {} |", v.show())).collect();
            println!("| {label} | {system} |{cells} {} |", median(values).show());
        }
    }
}
