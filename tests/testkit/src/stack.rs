//! A stack the real `plantd up` supervises on the real Docker engine, with the images that
//! images/build-local.sh builds: its own name, so its own containers, network and volumes,
//! all removed when it is dropped; and the docker CLI.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{self, free_addr, Plant};

/// Runs the docker CLI.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs (tests/run.sh installs docker.io)")
}

pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, container])
}

/// Numbers names (stacks, images) made by this test process, so none is made twice.
pub static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A stack name of this test process's own.
pub fn next_name() -> String {
    assert!(
        docker(&["info"]).status.success(),
        "no Docker engine answers; run the tests through tests/run.sh, which starts one"
    );
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Removes a container or volume this test made by hand, however the test ends.
pub struct Made(pub &'static str, pub String);

impl std::fmt::Display for Made {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = match self.0 {
            "volume" => docker(&["volume", "rm", "-f", &self.1]),
            "image" => docker(&["rmi", &self.1]),
            _ => docker(&["rm", "-f", "-v", &self.1]),
        };
    }
}

/// A plant daemon supervising its own stack; everything it made is removed on drop.
pub struct TestStack {
    pub name: String,
    pub plant: Plant,
    pub config_path: PathBuf,
    pub ingress: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestStack {
    /// Starts `plantd up` with a `[stack]` of local images plus `extra` TOML.
    pub fn start(extra: &str) -> TestStack {
        Self::start_named(next_name(), extra)
    }

    pub fn start_named(name: String, extra: &str) -> TestStack {
        let ingress = free_addr();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = stack_config(&name, ingress, extra);
        let plant = Plant::start(&data, &config);
        TestStack {
            config_path: data.with_extension("toml"),
            name,
            plant,
            ingress,
            _dir: dir,
        }
    }

    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    pub fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = rest.to_vec();
        v.extend([
            "--config",
            self.config_path.to_str().unwrap(),
            "--data-dir",
            self.plant.data_dir.to_str().unwrap(),
        ]);
        v
    }

    /// Runs a plantd CLI command against this plant.
    pub fn cli(&self, rest: &[&str]) -> Output {
        harness::plantd(&self.args(rest))
    }

    pub fn cli_ok(&self, rest: &[&str]) -> String {
        let out = self.cli(rest);
        assert!(
            out.status.success(),
            "plantd {rest:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `plantd stack status --json`, by service.
    pub fn status(&self) -> Vec<Value> {
        serde_json::from_str(&self.cli_ok(&["stack", "status", "--json"])).unwrap()
    }

    pub fn service(&self, service: &str) -> Value {
        self.status()
            .into_iter()
            .find(|s| s["service"] == service)
            .expect("every service is reported")
    }

    pub fn events(&self) -> Vec<Value> {
        serde_json::from_str(&self.cli_ok(&["stack", "events", "--json"])).unwrap()
    }

    /// Waits until `check` holds for the status, or fails with the last status and events.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status();
            if check(&status) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {limit:?}\nstatus: {status:#?}\nevents: {:#?}",
                    self.events()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn wait_all_healthy(&self, limit: Duration) {
        self.wait_for("all services healthy", limit, |s| {
            s.len() == 3 && s.iter().all(|s| s["health"] == "healthy")
        });
    }

    /// Rewrites plant.toml with `extra` and runs `plantd stack apply`.
    pub fn apply(&self, extra: &str) -> String {
        std::fs::write(
            &self.config_path,
            stack_config(&self.name, self.ingress, extra),
        )
        .unwrap();
        self.cli_ok(&["stack", "apply"])
    }

    /// Stops plantd (the containers keep running) and starts it again on `extra`.
    pub fn restart_plantd(&mut self, extra: &str) {
        self.plant.stop();
        let config = stack_config(&self.name, self.ingress, extra);
        self.plant = Plant::start_on(&self.plant.data_dir.clone(), &config, self.plant.addr);
    }

    /// `kill -9` of plantd (the containers keep running), then plantd again on the same
    /// config, data directory and port.
    pub fn kill9_and_restart(&mut self) {
        self.plant.kill9();
        let config = std::fs::read_to_string(&self.config_path).unwrap();
        self.plant = Plant::start_on(&self.plant.data_dir.clone(), &config, self.plant.addr);
    }

    /// Runs SQL in the stack's PostgreSQL, as an admin would with psql.
    pub fn psql(&self, sql: &str) -> String {
        docker_ok(&[
            "exec",
            &self.container("postgres"),
            "psql",
            "-U",
            "odoo",
            "-d",
            "postgres",
            "-tAc",
            sql,
        ])
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.plant.stop();
        remove_stack(&self.name);
    }
}

/// Removes a test stack's containers, network and volumes, found by its label only.
pub fn remove_stack(name: &str) {
    let label = format!("label=io.plantd.stack={name}");
    let ids = docker_ok(&["ps", "-aq", "--filter", &label]);
    for id in ids.lines() {
        let _ = docker(&["rm", "-f", "-v", id]);
    }
    for net in docker_ok(&["network", "ls", "-q", "--filter", &label]).lines() {
        let _ = docker(&["network", "rm", net]);
    }
    for vol in docker_ok(&["volume", "ls", "-q", "--filter", &label]).lines() {
        let _ = docker(&["volume", "rm", vol]);
    }
}

pub fn stack_config(name: &str, ingress: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[stack]\nname = \"{name}\"\nimages = \"local\"\nupgrade_deadline = \"60s\"\n{extra}\n[stack.ingress]\nlisten = \"{ingress}\"\n"
    )
}
