//! Admin UI benchmark: `cargo bench --bench admin_ui` (needs the local images, Chromium, and
//! `npm ci --prefix tests/browser`; `tests/run.sh` installs them).
//!
//! Starts `plantd up` supervising its stack (the local images), waits for the three services
//! healthy, adds an admin, then runs `tests/browser/overview_bench.mjs` in Debian's Chromium, which opens
//! the overview from a cold browser cache `PLANTD_BENCH_RUNS` times (default 20) and reports the
//! time to the first render that shows the verdict, the first contentful paint, and the bytes
//! transferred. Meanwhile and after, it reads the daemon's resident memory (VmRSS): idle with
//! no browser, then with the overview open and polling every 2 s for `PLANTD_BENCH_OPEN_S`
//! seconds (default 60). Everything is named `bench-u<pid>` and removed at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    bin: PathBuf,
    config: PathBuf,
    data: PathBuf,
    child: Child,
}

impl Daemon {
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data);
        cmd
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self
            .cli(&["stack", "down", "--delete-volumes", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runs = env_or("PLANTD_BENCH_RUNS", 20);
    let open_s = env_or("PLANTD_BENCH_OPEN_S", 60);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/browser` first"
    );
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let bin = work.path().join("plantd");
    std::fs::copy(env!("CARGO_BIN_EXE_plantd"), &bin).expect("copying plantd");
    let name = format!("bench-u{}", std::process::id());
    let config = work.path().join("plant.toml");
    std::fs::write(
        &config,
        format!(
            "[stack]\nname = \"{name}\"\nimages = \"local\"\n[stack.ingress]\nlisten = \"127.0.0.1:{}\"\n[backup]\nschedule = \"off\"\n",
            free_port()
        ),
    )
    .unwrap();
    let port = free_port();
    let data = work.path().join("data");
    let child = Command::new(&bin)
        .args(["up", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plantd up starts");
    let daemon = Daemon {
        bin,
        config,
        data,
        child,
    };

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = daemon.cli(&["stack", "status", "--json"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.matches("\"healthy\"").count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stack did not become healthy: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut add = daemon
        .cli(&["admin", "add", "bench", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(add.stdin.take().unwrap(), "bench password 1").unwrap();
    assert!(add.wait().unwrap().success());

    std::thread::sleep(Duration::from_secs(10));
    let idle = daemon.rss_kib();
    println!(
        "plantd admin UI benchmark: {} cores, {runs} cold loads of the overview, then {open_s} s open; daemon idle RSS {:.1} MiB (stack supervised, no browser)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        idle as f64 / 1024.0
    );
    let mut node = Command::new("node")
        .arg(root.join("tests/browser/overview_bench.mjs"))
        .env("PLANTD_URL", format!("https://127.0.0.1:{port}"))
        .env("ADMIN_USER", "bench")
        .env("ADMIN_PASSWORD", "bench password 1")
        .env("RUNS", runs.to_string())
        .env("OPEN_S", open_s.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut open_samples = Vec::new();
    let lines = BufReader::new(node.stdout.take().unwrap()).lines();
    for line in lines.map_while(Result::ok) {
        println!("{line}");
        if line.contains("\"open\":true") {
            let until = Instant::now() + Duration::from_secs(open_s);
            while Instant::now() < until {
                std::thread::sleep(Duration::from_secs(2));
                open_samples.push(daemon.rss_kib());
            }
        }
    }
    assert!(node.wait().unwrap().success(), "the browser script failed");
    open_samples.sort_unstable();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "daemon RSS with the overview open and polling: median {:.1} MiB, max {:.1} MiB over {} samples (idle before: {:.1} MiB)",
        mib(open_samples.get(open_samples.len() / 2).copied().unwrap_or(0)),
        mib(open_samples.last().copied().unwrap_or(0)),
        open_samples.len(),
        mib(idle)
    );
}
