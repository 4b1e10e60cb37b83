//! Runs Schemathesis and the OpenAPI validator from the virtualenv `tests/run.sh` makes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The seed of every run: the same cases on every machine. `PLANTD_CONTRACT_SEED` and
/// `PLANTD_CONTRACT_EXAMPLES` (cases per operation and phase) change them for a deeper run by
/// hand.
pub const SEED: &str = "20261207";

/// A live API to check: where it is, what its certificate is, and the credentials a client has.
pub struct Target<'a> {
    /// For the log: "plant" or "hub".
    pub name: &'a str,
    /// `https://localhost:PORT`.
    pub base: String,
    /// The server's certificate (or its CA), to verify TLS with.
    pub ca: &'a Path,
    /// The bearer token: a device token on the plant, an API token on the hub.
    pub bearer: &'a str,
    /// An admin's name and password; the hooks sign in with them.
    pub user: &'a str,
    pub password: &'a str,
    /// Cases per operation and phase.
    pub max_examples: u32,
}

/// The virtualenv with Schemathesis; `PLANTD_CONTRACT_VENV` overrides where it is.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("PLANTD_CONTRACT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/contract-venv"));
    assert!(
        venv.join("bin/st").exists(),
        "{} has no Schemathesis: tests/run.sh makes it (python3 -m venv {0}; {0}/bin/pip install -r tests/contract/requirements.txt)",
        venv.display()
    );
    venv
}

/// Writes straight to the test's stderr, past the harness's capture, so that the summary is in
/// the CI log whether the test passes or fails.
pub fn log(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// Logs the resident memory of the process `pid` after a run, in MiB.
pub fn log_rss(name: &str, pid: u32) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap();
    log(&format!("{name} RSS after the run: {} MiB\n", rss / 1024));
}

/// Validates an OpenAPI document with openapi-spec-validator; the errors, if any.
pub fn validate(doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new(venv().join("bin/openapi-spec-validator"))
        .arg("--errors")
        .arg("all")
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `st run` against the target's `/api/v1/openapi.json` with every check and every phase;
/// returns whether it passed and its output. The summary is logged either way.
pub fn run(target: &Target) -> (bool, String) {
    let venv = venv();
    let reports = tempfile::tempdir().unwrap();
    let seed = std::env::var("PLANTD_CONTRACT_SEED").unwrap_or_else(|_| SEED.to_string());
    let examples = std::env::var("PLANTD_CONTRACT_EXAMPLES")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(target.max_examples);
    let started = Instant::now();
    let out = Command::new(venv.join("bin/st"))
        // Schemathesis keeps a cache in its working directory.
        .current_dir(reports.path())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", target.base))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", &seed])
        .args(["--max-examples", &examples.to_string()])
        // One worker: with threads, Debian 12's Python 3.11 can fail inside Hypothesis
        // ("AST constructor recursion depth mismatch", a CPython race in `ast` fixed in 3.12),
        // a failure of the tool, not of the server (seen once in CI at 140cf84).
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .arg("--tls-verify")
        .arg(target.ca)
        .arg("--report-dir")
        .arg(reports.path())
        .args(["--report", "junit"])
        .env(
            "SCHEMATHESIS_HOOKS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/hooks.py"),
        )
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract"),
        )
        .env("NO_COLOR", "1")
        .env("CONTRACT_BASE", &target.base)
        .env("CONTRACT_CA", target.ca)
        .env("CONTRACT_BEARER", target.bearer)
        .env("CONTRACT_USER", target.user)
        .env("CONTRACT_PASSWORD", target.password)
        .output()
        .expect("schemathesis runs");
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .find("SUMMARY")
        .map(|i| &text[text[..i].rfind('\n').unwrap_or(i)..])
        .unwrap_or(&text);
    log(&format!(
        "\n--- Schemathesis against the {} ({:.0} s, seed {seed}, at most {examples} cases per operation and phase) ---{summary}\n",
        target.name,
        elapsed.as_secs_f64(),
    ));
    (out.status.success(), text)
}
