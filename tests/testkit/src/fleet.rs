//! The hub side for integration tests: a throwaway PostgreSQL cluster, the real `plantd hub`,
//! and a UDP relay between plant and hub that can cut the WAN.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 cluster in a temporary directory on a free port, owned by the `postgres`
/// user (PostgreSQL refuses to run as root); stopped on drop.
pub struct Pg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
}

impl Pg {
    pub fn start() -> Pg {
        Self::start_with_tls(None)
    }

    /// A cluster that also accepts TLS with this certificate and key (PEM).
    pub fn start_with_tls(tls: Option<(&str, &str)>) -> Pg {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        let ok = Command::new("chown")
            .arg("postgres")
            .arg(&data)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "chown postgres (is the postgresql-15 package installed?)"
        );
        let port = free_addr().port();
        let run = |args: &[&str]| {
            let out = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let d = data.to_str().unwrap();
        run(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            d,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let mut opts = format!("-p {port} -k {d} -c listen_addresses=127.0.0.1");
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                assert!(Command::new("chown")
                    .arg("postgres")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success());
            }
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        run(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            d,
            "-o",
            &opts,
            "-l",
            &format!("{d}/log"),
            "-w",
            "start",
        ]);
        Pg {
            _dir: dir,
            data,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// (seq, key) of every row the hub stored for `plant`, in seq order.
    pub fn rows(&self, plant: &str) -> Vec<(u64, String)> {
        rt().block_on(async {
            connect(&self.url())
                .await
                .query(
                    "SELECT seq, key FROM transactions WHERE plant = $1 ORDER BY seq",
                    &[&plant],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
                .collect()
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A running `plantd hub`.
pub struct Hub {
    pub data_dir: PathBuf,
    pub database: String,
    pub https: SocketAddr,
    pub quic: SocketAddr,
    /// Its hub.toml.
    pub config: PathBuf,
    child: Option<Child>,
}

impl Hub {
    /// Starts a hub with QUIC on `quic`; `advertise` is the QUIC address plants are told (the
    /// relay, in tests).
    pub fn start(data_dir: &Path, pg: &Pg, quic: SocketAddr, advertise: Option<SocketAddr>) -> Hub {
        let mut text = String::new();
        if let Some(a) = advertise {
            text.push_str(&format!("advertise = [\"{a}\"]\n"));
        }
        Hub::start_with(data_dir, pg, quic, &text)
    }

    /// A hub whose hub.toml is `text`.
    pub fn start_with(data_dir: &Path, pg: &Pg, quic: SocketAddr, text: &str) -> Hub {
        Hub::start_on(data_dir, &pg.url(), quic, text)
    }

    /// A hub whose hub.toml is `text`, on the database at `database`.
    pub fn start_on(data_dir: &Path, database: &str, quic: SocketAddr, text: &str) -> Hub {
        Hub::start_at(data_dir, database, quic, free_addr(), text)
    }

    /// As [`Hub::start_on`], serving HTTPS on `https` (which its hub.toml may name).
    pub fn start_at(
        data_dir: &Path,
        database: &str,
        quic: SocketAddr,
        https: SocketAddr,
        text: &str,
    ) -> Hub {
        std::fs::create_dir_all(data_dir).unwrap();
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, text).unwrap();
        let mut hub = Hub {
            data_dir: data_dir.to_path_buf(),
            database: database.to_string(),
            https,
            quic,
            config,
            child: None,
        };
        hub.restart();
        hub
    }

    pub fn restart(&mut self) {
        let child = Command::new(bin())
            .args(["hub", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database", &self.database])
            .args([
                "--listen",
                &self.https.to_string(),
                "--quic",
                &self.quic.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.https).is_err() {
            assert!(Instant::now() < deadline, "the hub did not start");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs `plantd hub ARGS` with this hub's data dir and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .arg("hub")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database", &self.database])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// The hub process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the hub runs").id()
    }

    pub fn token(&self, plant: &str, ttl: &str) -> String {
        last_line(&self.cli(&["token", "create", "--plant", plant, "--ttl", ttl]))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn free_udp_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Runs `plantd enroll` for `data_dir` against `hub`.
pub fn enroll(data_dir: &Path, hub: &Hub, token: &str) -> std::process::Output {
    Command::new(bin())
        .args(["enroll", "--data-dir", data_dir.to_str().unwrap()])
        .args(["--hub", &hub.https.to_string(), "--token", token])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A UDP relay on loopback between one plant and one hub. `cut()` drops every datagram;
/// [`Relay::shaped`] adds a one-way delay and a bandwidth limit with a bounded queue, like a
/// slow WAN link.
pub struct Relay {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

/// Delay and rate of one direction of a shaped link.
#[derive(Clone, Copy)]
struct Shape {
    delay: Duration,
    bytes_per_s: u64,
    queue_bytes: usize,
}

impl Relay {
    pub fn start(upstream: SocketAddr) -> Relay {
        Self::run(upstream, None)
    }

    /// A link of `bits_per_s` each way with `rtt` round trip; datagrams beyond a queue of
    /// about 0.5 s are dropped, as a router would.
    pub fn shaped(upstream: SocketAddr, rtt: Duration, bits_per_s: u64) -> Relay {
        let bytes_per_s = bits_per_s / 8;
        Self::run(
            upstream,
            Some(Shape {
                delay: rtt / 2,
                bytes_per_s,
                queue_bytes: (bytes_per_s / 2) as usize,
            }),
        )
    }

    fn run(upstream: SocketAddr, shape: Option<Shape>) -> Relay {
        let rt = rt();
        let down = Arc::new(AtomicBool::new(false));
        let front = Arc::new(
            rt.block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
                .unwrap(),
        );
        let addr = front.local_addr().unwrap();
        let d = down.clone();
        rt.spawn(async move {
            let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
            let to_hub = pipe(back.clone(), shape, move |_| Some(upstream));
            let c = client.clone();
            let to_plant = pipe(front.clone(), shape, move |_| *c.lock().unwrap());
            let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => if let Ok((n, from)) = r {
                        *client.lock().unwrap() = Some(from);
                        if !d.load(Ordering::Relaxed) {
                            let _ = to_hub.send(a[..n].to_vec());
                        }
                    },
                    r = back.recv_from(&mut b) => if let Ok((n, _)) = r {
                        if !d.load(Ordering::Relaxed) {
                            let _ = to_plant.send(b[..n].to_vec());
                        }
                    },
                }
            }
        });
        Relay {
            addr,
            down,
            _rt: rt,
        }
    }

    pub fn cut(&self) {
        self.down.store(true, Ordering::Relaxed);
    }

    pub fn heal(&self) {
        self.down.store(false, Ordering::Relaxed);
    }
}

/// One direction: datagrams go out of `socket` to `dest`, after the shape's delay and at its
/// rate, or at once without a shape.
fn pipe(
    socket: Arc<tokio::net::UdpSocket>,
    shape: Option<Shape>,
    dest: impl Fn(()) -> Option<SocketAddr> + Send + 'static,
) -> tokio::sync::mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let (timed_tx, mut timed_rx) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let q = queued.clone();
    tokio::spawn(async move {
        // Admission: stamp arrival, drop when the queue is full.
        while let Some(d) = rx.recv().await {
            if let Some(s) = shape {
                if q.load(Ordering::Relaxed) + d.len() > s.queue_bytes {
                    continue;
                }
                q.fetch_add(d.len(), Ordering::Relaxed);
            }
            let _ = timed_tx.send((tokio::time::Instant::now(), d));
        }
    });
    tokio::spawn(async move {
        let mut free_at = tokio::time::Instant::now();
        while let Some((arrived, d)) = timed_rx.recv().await {
            if let Some(s) = shape {
                let wire = Duration::from_secs_f64(d.len() as f64 / s.bytes_per_s as f64);
                let start = free_at.max(tokio::time::Instant::now());
                free_at = start + wire;
                queued.fetch_sub(d.len(), Ordering::Relaxed);
                tokio::time::sleep_until(free_at.max(arrived + s.delay)).await;
            }
            if let Some(to) = dest(()) {
                let _ = socket.send_to(&d, to).await;
            }
        }
    });
    tx
}

/// A client of the database at `url` (the throwaway cluster's, or a hub's), its connection
/// driven on this runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}
