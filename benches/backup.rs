//! Backup benchmark: `cargo bench --bench backup`, as root (`sudo cargo bench --bench backup`):
//! it drives Docker and removes files that containers' users own.
//!
//! Starts the real `plantd up` with a stack of the local images (`images/build-local.sh`), fills
//! Odoo's database and filestore straight through `docker exec` (not JSON-RPC: that would take
//! hours), then times, once per run:
//! - `plantd backup run` (and the size of its archive), split into phases by watching the files
//!   it writes in `DATA_DIR/backups` (its parts directory, the `.partial` archive, the archive);
//! - the floor, by hand on the same data, one after the other into the same file system:
//!   `docker exec pg_dump -U odoo -Fc -d odoo > file`, then `docker exec tar -cf - -C
//!   /var/lib/odoo filestore/odoo > file`; and the same two piped through `zstd -3`, to show
//!   what compressing costs;
//! - `plantd backup verify ID`;
//! - `plantd backup restore ID --json` (wall time, and the `odoo_down_s` it reports), split
//!   into phases the same way (the safety backup it takes first shows as its own archive).
//!
//! After the fill and after each restore, untimed, the table is vacuumed, PostgreSQL
//! checkpointed and the file systems synced: otherwise autovacuum of a freshly written table
//! and the kernel's writeback of the previous step run during the next timed one.
//!
//! The data, meant to compress about as real ERP data does, not like zeros:
//! - table `bench_rows`: sale-order-line-like rows (order references, product codes and names,
//!   states, quantities, prices, dates, lot numbers on 40 % of rows, an MD5 access token on one
//!   row in 12, a free-text note on 30 %), with a primary key; filled until the table alone holds
//!   `PLANTD_BENCH_DB_MIB` MiB (default 1024). Its plain SQL dump compresses about 3.4x with
//!   `zstd -3`.
//! - the filestore: files named by their SHA-1 under `filestore/odoo/<2 hex>/`, owned by uid 101
//!   as Odoo's are, sizes log-uniform between 8 KiB and 2 MiB, until `PLANTD_BENCH_FILES_MIB` MiB
//!   (default 500). By bytes, half are random (standing in for JPEG, PDF, ZIP: incompressible)
//!   and half are CSV-like text from a small vocabulary with random numbers (about 2.6x with
//!   `zstd -3`).
//!
//! `PLANTD_BENCH_RUNS` sets the repetitions (default 1). Everything it creates is named
//! `bench-b<pid>` (the stack: containers, network and volumes carry the label
//! `io.plantd.stack=bench-b<pid>`) or lives in a temporary directory under the target
//! directory, and is removed at the end, also when a step fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plantd_testkit::command::{leftovers, remove_by_label, run, wait_for};

use serde_json::Value;

const IMAGES: [&str; 3] = [
    "plantd-local/postgres:15",
    "plantd-local/redis:7",
    "plantd-local/odoo-emulator:19.0",
];
/// The longest a quick docker or plantd command may run.
const SHORT: Duration = Duration::from_secs(120);
/// The longest a fill, a dump, a backup, a verify or a restore may run.
const LONG: Duration = Duration::from_secs(3600);
const HEALTHY_CAP: Duration = Duration::from_secs(180);
/// Odoo's database and its user in PostgreSQL (plantd's `DB_USER`).
const DB: &str = "odoo";
/// Odoo's uid and gid in its image (as in the official one).
const ODOO_UID: &str = "101:101";
const MIB: u64 = 1 << 20;

/// What the environment asks for.
struct Settings {
    db_mib: u64,
    files_mib: u64,
    runs: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Err(_) => default,
                Ok(s) => s
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| panic!("{name}={s:?}: not a positive whole number")),
            }
        };
        Settings {
            db_mib: number("PLANTD_BENCH_DB_MIB", 1024),
            files_mib: number("PLANTD_BENCH_FILES_MIB", 500),
            runs: number("PLANTD_BENCH_RUNS", 1) as usize,
        }
    }
}

/// Runs a command that must succeed; its stdout.
fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let mut shown = format!("{cmd:?}");
    if shown.len() > 200 {
        // A script or a statement: its start says which one.
        shown = format!("{}...", shown.chars().take(200).collect::<String>());
    }
    let out = run(cmd, limit).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    cmd
}

/// A free port on the loopback address (bound, then released).
fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("a bound socket has an address")
}

/// `plantd up` with its own stack in its own data directory. Dropping it takes the stack down
/// and removes whatever carries the stack's label.
struct Plant {
    bin: PathBuf,
    name: String,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Plant {
    fn start(bin: &Path, dir: &Path, name: &str) -> Plant {
        let config = dir.join("plant.toml");
        // No scheduled backup: it would compete with the measured ones.
        std::fs::write(
            &config,
            format!(
                "[stack]\nname = \"{name}\"\nimages = \"local\"\n[stack.ingress]\nlisten = \"{}\"\n[backup]\nschedule = \"off\"\n",
                free_addr()
            ),
        )
        .expect("writing plant.toml");
        let mut plant = Plant {
            bin: bin.to_path_buf(),
            name: name.to_string(),
            config,
            data: dir.join("data"),
            log: dir.join("plantd.log"),
            child: None,
        };
        let log = std::fs::File::create(&plant.log).expect("creating plantd.log");
        let child = Command::new(&plant.bin)
            .args(["up", "--config"])
            .arg(&plant.config)
            .arg("--data-dir")
            .arg(&plant.data)
            .args(["--listen", &free_addr().to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("plantd up starts");
        plant.child = Some(child);
        plant
    }

    fn label(&self) -> String {
        format!("io.plantd.stack={}", self.name)
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    fn backups(&self) -> PathBuf {
        self.data.join("backups")
    }

    /// `plantd ARGS --config .. --data-dir ..`.
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Waits until `plantd stack status --json` shows the three services healthy.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + HEALTHY_CAP;
        let mut last = Value::Null;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("plantd up exited ({status}); its log:\n{}", self.log_tail());
            }
            if let Ok(o) = run(&mut self.cli(&["stack", "status", "--json"]), SHORT) {
                last = serde_json::from_slice(&o.stdout).unwrap_or_default();
                let services = last.as_array().cloned().unwrap_or_default();
                if services.len() == 3 && services.iter().all(|s| s["health"] == "healthy") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the stack is not healthy within {} s: {last}\nplantd's log:\n{}",
                HEALTHY_CAP.as_secs(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SQL in Odoo's database as an admin would run it: psql in the postgres container.
    fn psql(&self, sql: &str, limit: Duration) -> String {
        run_ok(
            &mut docker(&[
                "exec",
                &self.container("postgres"),
                "psql",
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                DB,
                "-d",
                DB,
                "-c",
                sql,
            ]),
            limit,
        )
    }

    /// The end of plantd's log, for a failed run.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Plant {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `stack down` goes through the running daemon, so it comes before the SIGTERM.
            if matches!(child.try_wait(), Ok(None)) {
                let down = run(
                    &mut self.cli(&["stack", "down", "--delete-volumes", "--yes"]),
                    SHORT,
                );
                if !down.as_ref().is_ok_and(|o| o.status.success()) {
                    eprintln!("warning: plantd stack down failed: {down:?}");
                }
            }
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            if wait_for(&mut child, Duration::from_secs(20)).is_none() {
                eprintln!("warning: plantd did not stop within 20 s of SIGTERM; killed it");
            }
        }
        remove_by_label(&self.label());
    }
}

/// The rows: sale-order-line-like, see the module's documentation. `{FROM}` and `{TO}` are the
/// first and last id.
const INSERT_ROWS: &str = "INSERT INTO bench_rows
SELECT g,
  'SO/' || (2020 + g % 7000000 / 1200000) || '/' || lpad((g / 12)::text, 7, '0'),
  (random() * 5000)::int,
  p,
  'P-' || upper(substr(md5(p::text), 1, 10)),
  (ARRAY['Hex bolt M8x40 zinc', 'Hydraulic pump 45 bar', 'Conveyor belt 2 m', 'Bearing 6204-2RS',
         'Steel sheet 2 mm S235', 'Cable gland M20', 'Pneumatic valve 5/2', 'Safety gloves size 9',
         'Gear motor 0.75 kW', 'Pallet EUR 1200x800'])[1 + p % 10] || ' (' || p || ')',
  (ARRAY['draft', 'sent', 'sale', 'sale', 'sale', 'done', 'done', 'done', 'cancel'])[1 + (random() * 8)::int],
  (1 + (random() * 49)::int)::numeric(12, 3),
  round(1 + (p * 7919 % 99900) / 100.0, 2),
  (ARRAY[0, 0, 0, 5, 10, 2.5])[1 + (random() * 5)::int]::numeric(5, 2),
  date_trunc('second', timestamp '2020-01-01' + (g % 7000000 / 7000000.0 + random() / 100) * interval '6 years'),
  CASE WHEN random() < 0.4 THEN 'LOT-' || upper(substr(md5(random()::text), 1, 12)) END,
  CASE WHEN g % 12 = 0 THEN md5(g::text || random()::text) END,
  CASE WHEN random() < 0.3 THEN 'Delivered to ' || (ARRAY['Lyon', 'Turin', 'Porto', 'Gdansk', 'Brno'])[1 + g % 5]
    || ' dock ' || (g % 17) || ', checked by operator ' || (random() * 300)::int END
FROM generate_series({FROM}::int, {TO}::int) AS g,
  LATERAL (SELECT (random() * 20000)::int + 0 * g AS p) AS product";

const CREATE_TABLE: &str = "CREATE TABLE bench_rows (id bigint NOT NULL, order_ref text, \
    partner_id int, product_id int, default_code text, name text, state text, \
    product_qty numeric(12, 3), price_unit numeric(12, 2), discount numeric(5, 2), \
    date_order timestamp, lot_name text, access_token text, note text)";

/// Writes the filestore: argv is the bytes to write, the directory, a seed. Prints
/// "FILES RANDOM_BYTES TEXT_BYTES".
const FILL_FILESTORE: &str = r#"
import hashlib, math, os, random, sys
target, root, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
words = ("bolt nut washer pump valve motor gear bearing belt sheet steel zinc cable gland pallet "
         "order delivery invoice lot serial quantity unit price discount tax total customer vendor "
         "warehouse stock location dock shift operator line station batch scrap rework quality "
         "inspection passed failed pending approved shipped received Lyon Turin Porto Gdansk Brno "
         "M8 M10 M12 2RS S235 kW bar mm kg pcs EUR note checked by on at for the of and").split()
def text(n):
    parts, size = [], 0
    while size < n:
        line = "%d;SO/%d/%07d;%s;%d;%.2f;%s\n" % (
            rng.randrange(1, 10**6), rng.randrange(2020, 2026), rng.randrange(10**6),
            " ".join(rng.choices(words, k=rng.randrange(3, 12))), rng.randrange(1, 500),
            rng.random() * 1000, rng.choice(words))
        parts.append(line)
        size += len(line)
    return "".join(parts).encode()[:n]
os.makedirs(root, exist_ok=True)
written = {"random": 0, "text": 0}
files = 0
while written["random"] + written["text"] < target:
    n = int(math.exp(rng.uniform(math.log(8 << 10), math.log(2 << 20))))
    n = max(1, min(n, target - written["random"] - written["text"]))
    kind = "random" if written["random"] <= written["text"] else "text"
    data = os.urandom(n) if kind == "random" else text(n)
    name = hashlib.sha1(data).hexdigest()
    os.makedirs(os.path.join(root, name[:2]), exist_ok=True)
    with open(os.path.join(root, name[:2], name), "wb") as f:
        f.write(data)
    written[kind] += n
    files += 1
print(files, written["random"], written["text"])
"#;

/// What the fill put in.
struct Filled {
    database: u64,
    table: u64,
    rows: u64,
    files: u64,
    random_bytes: u64,
    text_bytes: u64,
}

impl Filled {
    fn filestore(&self) -> u64 {
        self.random_bytes + self.text_bytes
    }
}

fn number(s: &str) -> u64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

/// Fills `bench_rows` until the table holds `bytes`: a first batch measures the bytes a row
/// takes, the rest goes in batches of a million rows, then a top-up if still short.
fn fill_database(plant: &Plant, bytes: u64) -> (u64, u64) {
    const FIRST: u64 = 100_000;
    const BATCH: u64 = 1_000_000;
    let insert = |from: u64, to: u64| {
        let sql = INSERT_ROWS
            .replace("{FROM}", &from.to_string())
            .replace("{TO}", &to.to_string());
        plant.psql(&sql, LONG);
    };
    let table_size = || number(&plant.psql("SELECT pg_table_size('bench_rows')", SHORT));
    plant.psql(CREATE_TABLE, SHORT);
    insert(1, FIRST);
    let mut rows = FIRST;
    let per_row = table_size().div_ceil(FIRST);
    let mut missing = bytes.saturating_sub(table_size()).div_ceil(per_row);
    while missing > 0 {
        let n = missing.min(BATCH);
        insert(rows + 1, rows + n);
        rows += n;
        missing -= n;
        println!("  {rows} rows, {:.0} MiB", table_size() as f64 / MIB as f64);
        if missing == 0 {
            missing = bytes.saturating_sub(table_size()).div_ceil(per_row);
        }
    }
    // An index, as any Odoo table has.
    plant.psql("ALTER TABLE bench_rows ADD PRIMARY KEY (id)", LONG);
    settle(plant);
    (table_size(), rows)
}

/// Vacuums the table, checkpoints and syncs, so that neither autovacuum (which a freshly
/// filled or freshly restored table calls for), the checkpointer nor the kernel's writeback
/// works on earlier steps while the next ones are timed. Returns how long that took.
fn settle(plant: &Plant) -> Duration {
    let t = Instant::now();
    plant.psql("VACUUM (ANALYZE) bench_rows", LONG);
    plant.psql("CHECKPOINT", LONG);
    run_ok(&mut Command::new("sync"), LONG);
    t.elapsed()
}

fn fill(plant: &Plant, settings: &Settings) -> Filled {
    let t = Instant::now();
    let (table, rows) = fill_database(plant, settings.db_mib * MIB);
    let database = number(&plant.psql(&format!("SELECT pg_database_size('{DB}')"), SHORT));
    println!(
        "database filled in {:.0} s: {rows} rows, table {}, database {}",
        t.elapsed().as_secs_f64(),
        size(table),
        size(database)
    );
    let t = Instant::now();
    let out = run_ok(
        &mut docker(&[
            "exec",
            "-u",
            ODOO_UID,
            &plant.container("odoo"),
            "python3",
            "-c",
            FILL_FILESTORE,
            &(settings.files_mib * MIB).to_string(),
            &format!("/var/lib/odoo/filestore/{DB}"),
            &std::process::id().to_string(),
        ]),
        LONG,
    );
    let n: Vec<u64> = out.split_whitespace().map(number).collect();
    let [files, random_bytes, text_bytes] = n[..] else {
        panic!("the filestore fill printed {out:?}, not three numbers");
    };
    // Written, not only cached: the backups should not pay for the fill's writeback.
    run_ok(&mut Command::new("sync"), LONG);
    println!(
        "filestore filled in {:.0} s: {files} files, {} random, {} text",
        t.elapsed().as_secs_f64(),
        size(random_bytes),
        size(text_bytes)
    );
    Filled {
        database,
        table,
        rows,
        files,
        random_bytes,
        text_bytes,
    }
}

/// Records when each entry of a backups directory, and of its hidden subdirectories (a backup's
/// parts), is first seen, polling every 20 ms.
struct DirWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<String, Instant>>,
}

impl DirWatch {
    fn start(dir: &Path) -> DirWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, stopping) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            loop {
                let last = stopping.load(Ordering::SeqCst);
                let now = Instant::now();
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') && entry.path().is_dir() {
                        for inner in std::fs::read_dir(entry.path()).into_iter().flatten() {
                            let Ok(inner) = inner else { continue };
                            let inner = inner.file_name().to_string_lossy().into_owned();
                            seen.entry(format!("{name}/{inner}")).or_insert(now);
                        }
                    }
                    seen.entry(name).or_insert(now);
                }
                if last {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        DirWatch { stop, thread }
    }

    fn finish(self) -> BTreeMap<String, Instant> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watch thread does not panic")
    }
}

/// Durations between the first sightings of `marks` (in order), from `start` to `end`; a mark
/// not seen gives `None` for the phases on both sides of it.
fn phases(
    seen: &BTreeMap<String, Instant>,
    start: Instant,
    marks: &[String],
    end: Instant,
) -> Vec<Option<Duration>> {
    let mut points = vec![Some(start)];
    points.extend(marks.iter().map(|m| seen.get(m).copied()));
    points.push(Some(end));
    points
        .windows(2)
        .map(|w| Some(w[1]?.saturating_duration_since(w[0]?)))
        .collect()
}

/// Runs a command whose stdout goes to `out` (through `zstd -3` if `zstd`); its wall time.
fn to_file(cmd: &mut Command, out: &Path, zstd: bool) -> Duration {
    let shown = format!("{cmd:?}");
    let file = std::fs::File::create(out).expect("creating a floor file");
    let t = Instant::now();
    let mut source = cmd
        .stdin(Stdio::null())
        .stdout(if zstd {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone().expect("a file handle clones"))
        })
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let mut compressor = zstd.then(|| {
        Command::new("zstd")
            .args(["-3", "-q", "-c"])
            .stdin(Stdio::from(source.stdout.take().expect("piped")))
            .stdout(Stdio::from(file))
            .spawn()
            .expect("zstd runs (apt-get install zstd)")
    });
    let status = wait_for(&mut source, LONG);
    assert!(
        status.is_some_and(|s| s.success()),
        "{shown} failed: {status:?}"
    );
    if let Some(c) = compressor.as_mut() {
        let status = wait_for(c, LONG);
        assert!(
            status.is_some_and(|s| s.success()),
            "zstd failed: {status:?}"
        );
    }
    t.elapsed()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The hand-run floor: the dump, then the filestore, one after the other.
struct Floor {
    dump: Duration,
    files: Duration,
    dump_size: u64,
    files_size: u64,
    /// fsync of both files after the commands (plantd fsyncs its parts and its archive).
    fsync: Duration,
}

impl Floor {
    fn total(&self) -> Duration {
        self.dump + self.files
    }

    fn measure(plant: &Plant, dir: &Path, zstd: bool) -> Floor {
        let ext = if zstd { ".zst" } else { "" };
        let (dump_path, files_path) = (
            dir.join(format!("floor-db.dump{ext}")),
            dir.join(format!("floor-filestore.tar{ext}")),
        );
        let dump = to_file(
            &mut docker(&[
                "exec",
                &plant.container("postgres"),
                "pg_dump",
                "-U",
                DB,
                "-Fc",
                "-d",
                DB,
            ]),
            &dump_path,
            zstd,
        );
        let files = to_file(
            &mut docker(&[
                "exec",
                &plant.container("odoo"),
                "tar",
                "-cf",
                "-",
                "-C",
                "/var/lib/odoo",
                &format!("filestore/{DB}"),
            ]),
            &files_path,
            zstd,
        );
        let t = Instant::now();
        for p in [&dump_path, &files_path] {
            std::fs::File::open(p)
                .and_then(|f| f.sync_all())
                .expect("fsync of a floor file");
        }
        let fsync = t.elapsed();
        let floor = Floor {
            dump,
            files,
            dump_size: file_size(&dump_path),
            files_size: file_size(&files_path),
            fsync,
        };
        for p in [&dump_path, &files_path] {
            let _ = std::fs::remove_file(p);
        }
        floor
    }
}

/// The parts' sizes, from the manifest (the archive's first entry).
fn part_sizes(archive: &Path) -> BTreeMap<String, u64> {
    let read = || -> Option<BTreeMap<String, u64>> {
        let decoder = zstd::Decoder::new(std::fs::File::open(archive).ok()?).ok()?;
        let mut tar = tar::Archive::new(decoder);
        let mut first = tar.entries().ok()?.next()?.ok()?;
        let mut text = String::new();
        first.read_to_string(&mut text).ok()?;
        let manifest: Value = serde_json::from_str(&text).ok()?;
        Some(
            manifest["parts"]
                .as_array()?
                .iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["size"].as_u64()?)))
                .collect(),
        )
    };
    read().unwrap_or_default()
}

/// One run's figures.
struct Measured {
    backup: Duration,
    backup_phases: Vec<Option<Duration>>,
    archive: u64,
    parts: BTreeMap<String, u64>,
    floor: Floor,
    floor_zstd: Floor,
    verify: Duration,
    restore: Duration,
    restore_phases: Vec<Option<Duration>>,
    odoo_down: f64,
}

const BACKUP_PHASES: [&str; 5] = [
    "snapshot, row counts",
    "pg_dump -Fc → db.dump, fsync",
    "tar filestore → filestore.tar, fsync",
    "pack: tar + zstd -3 of the parts, fsync",
    "remove the parts, exit",
];
const RESTORE_PHASES: [&str; 3] = [
    "check the archive (decompress, SHA-256)",
    "safety backup",
    "stage (pg_restore, unpack), swap, Odoo healthy",
];

/// The machine's load average, as a caveat beside the figures: other work on it slows them.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn one_run(plant: &mut Plant, dir: &Path) -> Measured {
    plant.wait_healthy();
    println!("  load average before: {}", load());
    let backups = plant.backups();

    let watch = DirWatch::start(&backups);
    let t = Instant::now();
    let out = run_ok(&mut plant.cli(&["backup", "run", "--json"]), LONG);
    let (backup, end) = (t.elapsed(), Instant::now());
    let seen = watch.finish();
    let listed: Value = serde_json::from_str(&out).expect("backup run --json prints JSON");
    let id = listed["id"].as_str().expect("an id").to_string();
    let archive = listed["size"].as_u64().expect("a size");
    let parts = part_sizes(Path::new(listed["path"].as_str().expect("a path")));
    let backup_phases = phases(
        &seen,
        t,
        &[
            format!(".{id}.parts/db.dump"),
            format!(".{id}.parts/filestore.tar"),
            format!("{id}.tar.zst.partial"),
            format!("{id}.tar.zst"),
        ],
        end,
    );
    println!("  backup run: {:.1} s", backup.as_secs_f64());

    // The floor right after, on the same data.
    let floor = Floor::measure(plant, dir, false);
    println!("  floor: {:.1} s", floor.total().as_secs_f64());
    let floor_zstd = Floor::measure(plant, dir, true);
    println!(
        "  floor | zstd -3: {:.1} s",
        floor_zstd.total().as_secs_f64()
    );

    let t = Instant::now();
    run_ok(&mut plant.cli(&["backup", "verify", &id]), LONG);
    let verify = t.elapsed();
    println!("  verify: {:.1} s", verify.as_secs_f64());

    let watch = DirWatch::start(&backups);
    let t = Instant::now();
    let out = run_ok(&mut plant.cli(&["backup", "restore", &id, "--json"]), LONG);
    let (restore, end) = (t.elapsed(), Instant::now());
    let seen = watch.finish();
    let restored: Value = serde_json::from_str(&out).expect("backup restore --json prints JSON");
    let safety = restored["safety_backup"].as_str().unwrap_or_default();
    let restore_phases = phases(
        &seen,
        t,
        &[format!(".{safety}.parts"), format!("{safety}.tar.zst")],
        end,
    );
    let odoo_down = restored["odoo_down_s"].as_f64().expect("odoo_down_s");
    println!(
        "  restore: {:.1} s, Odoo down {odoo_down:.1} s; load average after: {}",
        restore.as_secs_f64(),
        load()
    );

    let settled = settle(plant);
    println!(
        "  vacuum, checkpoint and sync of the restored data (not timed): {:.1} s",
        settled.as_secs_f64()
    );

    // The archives take room that the next run needs; they are in the benchmark's own directory.
    for entry in std::fs::read_dir(&backups).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.zst") || name.ends_with(".verified") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Measured {
        backup,
        backup_phases,
        archive,
        parts,
        floor,
        floor_zstd,
        verify,
        restore,
        restore_phases,
        odoo_down,
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 10 * 1024 * MIB {
        format!("{:.1} GiB", bytes as f64 / (1024 * MIB) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints one table row: a cell per run and the median, `show` formatting each value.
fn row(label: &str, values: Vec<f64>, show: impl Fn(f64) -> String) {
    let cells: String = values.iter().map(|&v| format!(" {} |", show(v))).collect();
    let show = |v: f64| if v.is_nan() { "-".to_string() } else { show(v) };
    let mid = if values.is_empty() {
        "-".to_string()
    } else {
        show(median(values))
    };
    println!("| {label} |{cells} {mid} |");
}

fn report(filled: &Filled, runs: &[Measured]) {
    let raw = filled.database + filled.filestore();
    println!();
    println!("| data | size |");
    println!("|---|---:|");
    println!(
        "| database `odoo` (pg_database_size) | {} |",
        size(filled.database)
    );
    println!(
        "| of which table bench_rows ({} rows, pg_table_size) | {} |",
        filled.rows,
        size(filled.table)
    );
    println!(
        "| filestore: {} files, {} random + {} CSV-like text | {} |",
        filled.files,
        size(filled.random_bytes),
        size(filled.text_bytes),
        size(filled.filestore())
    );
    println!("| raw total (database + filestore) | {} |", size(raw));

    let header: String = (1..=runs.len()).map(|r| format!(" run {r} |")).collect();
    let rule: String = runs.iter().map(|_| "---:|").collect();
    println!();
    println!("| measure |{header} median |");
    println!("|---|{rule}---:|");
    let s = |d: f64| format!("{d:.1} s");
    let x = |r: f64| format!("{r:.2}x");
    let m = |b: f64| size(b as u64);
    let each = |f: &dyn Fn(&Measured) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    row(
        "**plantd backup run**",
        each(&|r| r.backup.as_secs_f64()),
        s,
    );
    for (i, label) in BACKUP_PHASES.iter().enumerate() {
        let v = each(&|r| r.backup_phases[i].map_or(f64::NAN, |d| d.as_secs_f64()));
        row(&format!("  · {label}"), v, s);
    }
    row(
        "floor: pg_dump -Fc > file",
        each(&|r| r.floor.dump.as_secs_f64()),
        s,
    );
    row(
        "floor: tar -cf - filestore/odoo > file",
        each(&|r| r.floor.files.as_secs_f64()),
        s,
    );
    row(
        "**floor: sum**",
        each(&|r| r.floor.total().as_secs_f64()),
        s,
    );
    row(
        "**backup / floor** (goal ≤ 1.30x)",
        each(&|r| r.backup.as_secs_f64() / r.floor.total().as_secs_f64()),
        x,
    );
    row(
        "fsync of the floor's two files (not in the floor)",
        each(&|r| r.floor.fsync.as_secs_f64()),
        s,
    );
    row(
        "floor \\| zstd -3: pg_dump -Fc",
        each(&|r| r.floor_zstd.dump.as_secs_f64()),
        s,
    );
    row(
        "floor \\| zstd -3: tar",
        each(&|r| r.floor_zstd.files.as_secs_f64()),
        s,
    );
    row(
        "floor \\| zstd -3: sum",
        each(&|r| r.floor_zstd.total().as_secs_f64()),
        s,
    );
    row(
        "backup / (floor \\| zstd -3)",
        each(&|r| r.backup.as_secs_f64() / r.floor_zstd.total().as_secs_f64()),
        x,
    );
    row("archive (.tar.zst)", each(&|r| r.archive as f64), m);
    row(
        "archive / raw (database + filestore)",
        each(&|r| r.archive as f64 / raw as f64),
        |v| format!("{:.1} %", v * 100.0),
    );
    row(
        "  · part db.dump (pg_dump -Fc)",
        each(&|r| r.parts.get("db.dump").copied().unwrap_or(0) as f64),
        m,
    );
    row(
        "  · part filestore.tar",
        each(&|r| r.parts.get("filestore.tar").copied().unwrap_or(0) as f64),
        m,
    );
    row(
        "floor files: dump + tar",
        each(&|r| (r.floor.dump_size + r.floor.files_size) as f64),
        m,
    );
    row(
        "floor \\| zstd -3 files: dump + tar",
        each(&|r| (r.floor_zstd.dump_size + r.floor_zstd.files_size) as f64),
        m,
    );
    row(
        "**plantd backup verify**",
        each(&|r| r.verify.as_secs_f64()),
        s,
    );
    row(
        "**plantd backup restore**",
        each(&|r| r.restore.as_secs_f64()),
        s,
    );
    for (i, label) in RESTORE_PHASES.iter().enumerate() {
        let v = each(&|r| r.restore_phases[i].map_or(f64::NAN, |d| d.as_secs_f64()));
        row(&format!("  · {label}"), v, s);
    }
    row("**Odoo down (odoo_down_s)**", each(&|r| r.odoo_down), s);
}

fn version(cmd: &mut Command) -> String {
    run(cmd, SHORT)
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim_matches(|c: char| c == '*' || c.is_whitespace())
                .to_string()
        })
        .unwrap_or_default()
}

fn main() {
    let settings = Settings::from_env();
    assert!(
        run(&mut docker(&["info"]), SHORT).is_ok_and(|o| o.status.success()),
        "no Docker engine answers (start dockerd, and run this as root)"
    );
    for image in IMAGES {
        assert!(
            run(&mut docker(&["image", "inspect", image]), SHORT).is_ok_and(|o| o.status.success()),
            "{image} is missing; run images/build-local.sh first"
        );
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    // A copy, so that the run uses the binary this benchmark was built with even when a build
    // elsewhere replaces target/release/plantd meanwhile.
    let bin = work.path().join("plantd");
    std::fs::copy(env!("CARGO_BIN_EXE_plantd"), &bin).expect("copying plantd");
    let name = format!("bench-b{}", std::process::id());
    let label = format!("io.plantd.stack={name}");
    let left = leftovers(&label);
    assert!(left.is_empty(), "not starting from nothing: {left:?}");

    println!(
        "plantd backup benchmark: {} cores, database {} MiB of rows, filestore {} MiB, {} run(s); {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.db_mib,
        settings.files_mib,
        settings.runs,
        version(Command::new("zstd").arg("--version")),
    );
    println!("work directory {}", work.path().display());
    // Declared after `work`, so dropped before it: the stack goes down while its config exists.
    let mut plant = Plant::start(&bin, work.path(), &name);
    let t = Instant::now();
    plant.wait_healthy();
    println!(
        "stack {name} healthy in {:.0} s; {}",
        t.elapsed().as_secs_f64(),
        version(&mut docker(&[
            "exec",
            &plant.container("postgres"),
            "pg_dump",
            "--version"
        ]))
    );
    let filled = fill(&plant, &settings);

    let mut runs = Vec::new();
    for r in 1..=settings.runs {
        println!("run {r}/{}", settings.runs);
        runs.push(one_run(&mut plant, work.path()));
    }
    report(&filled, &runs);
}
