//! Every HTTP listener of the daemon and of the hub (the plant's HTTPS API, its plain-HTTP
//! listener, the Odoo ingress, the hub's HTTPS) is served by [`serve`], with the same limits:
//!
//! - a TLS handshake and the first request's headers within `header_read_timeout`, and each
//!   later request's headers within it too (HTTP/1.1);
//! - a request's whole body within `body_read_timeout` of its headers;
//! - a connection with no request in flight and no byte in either direction for `idle_timeout`
//!   is closed;
//! - at most `max_connections` open connections for the whole process, below its open-file
//!   limit: past it, the connection idle the longest makes room for the new one; with none
//!   idle, the new one is answered 503 and closed; past a small margin it is closed at once;
//! - at most `http2_max_streams` requests at once on one HTTP/2 connection, so that streams ×
//!   a route's body limit stays bounded.
//!
//! A refusal answered before the request's body was read (401, 403, 415, ...) first reads and
//! discards a small body (up to [`DRAIN_MAX`]), so that a client that sends its whole body
//! before reading, such as curl over HTTP/2, gets the answer rather than a reset stream.
//!
//! This module owns sockets and timers, and the one JSON error shape every API answers in
//! ([`errors`]); what a route accepts is the route's business.

pub mod errors;
mod request;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::field::FieldError;

pub use request::Counted;

/// The largest body read and thrown away before a refusal is answered.
pub const DRAIN_MAX: u64 = 64 * 1024;
/// Connections over the limit that still get a 503 (beyond them, a connection is closed at once).
const OVERFLOW: usize = 64;
/// File descriptors kept for the rest of the process (journal, SQLite, Docker, QUIC, backups).
const RESERVED_FDS: u64 = 256;
/// The default connection limit, when the open-file limit allows more.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a connection refused with 503 stays open for its answer to leave.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// The limits every HTTP listener applies (`[http]` in plant.toml and hub.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: derived from the open-file limit at start ([`Limits::connection_limit`]).
    pub max_connections: Option<usize>,
    pub http2_max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            http2_max_streams: 16,
        }
    }
}

/// `[http]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<i64>,
    http2_max_streams: Option<i64>,
}

impl Limits {
    /// Validates `[http]`; an error names the key (`http.KEY`) and what to write instead.
    pub fn from_raw(raw: RawLimits) -> Result<Limits, FieldError> {
        let d = Limits::default();
        let duration = |key: &str, v: Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => match humantime::parse_duration(&s) {
                Ok(t) if t >= Duration::from_secs(1) && t <= Duration::from_secs(3600) => Ok(t),
                Ok(_) => Err(FieldError::new(
                    format!("http.{key}"),
                    format!("{s:?} is out of range; use from \"1s\" to \"1h\""),
                )),
                Err(e) => Err(FieldError::new(
                    format!("http.{key}"),
                    format!("{s:?} is not a duration ({e}); use one such as \"10s\""),
                )),
            },
        };
        let max_connections = match raw.max_connections {
            None => None,
            Some(n) if (16..=1_000_000).contains(&n) => Some(n as usize),
            Some(n) => {
                return Err(FieldError::new(
                    "http.max_connections",
                    format!("{n} is out of range; use from 16 to 1000000, or leave it out to derive it from the open-file limit"),
                ))
            }
        };
        let http2_max_streams = match raw.http2_max_streams {
            None => d.http2_max_streams,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                return Err(FieldError::new(
                    "http.http2_max_streams",
                    format!("{n} is out of range; use from 1 to 1000"),
                ))
            }
        };
        Ok(Limits {
            header_read_timeout: duration(
                "header_read_timeout",
                raw.header_read_timeout,
                d.header_read_timeout,
            )?,
            body_read_timeout: duration(
                "body_read_timeout",
                raw.body_read_timeout,
                d.body_read_timeout,
            )?,
            idle_timeout: duration("idle_timeout", raw.idle_timeout, d.idle_timeout)?,
            max_connections,
            http2_max_streams,
        })
    }

    /// The connection limit for a process allowed `open_files` descriptors: the configured one,
    /// never closer than [`RESERVED_FDS`] + the 503 margin to the file limit.
    pub fn connection_limit(&self, open_files: u64) -> usize {
        let room = open_files.saturating_sub(RESERVED_FDS + OVERFLOW as u64) as usize;
        self.max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .min(room)
            .max(1)
    }
}

/// Raises the soft open-file limit to the hard one (as Go and systemd services do) and returns
/// the limit in force.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(cur), max) = (limit.current, limit.maximum) {
        let want = max.unwrap_or(1 << 20).min(1 << 20);
        if want > cur {
            let raised = rustix::process::Rlimit {
                current: Some(want),
                maximum: max,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return want;
            }
        }
        return cur;
    }
    1 << 20
}

/// One open connection, as its socket, its service and the gate see it.
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since the gate's epoch of the last byte in either direction.
    last_active: AtomicU64,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

/// The connections of the whole process: shared by all its listeners.
pub struct Gate {
    limits: Limits,
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

enum Admit {
    Serve(u64, Arc<Conn>),
    Refuse(u64, Arc<Conn>),
    Close,
}

impl Gate {
    /// A gate with `limits`, its connection limit derived from `open_files`.
    pub fn new(limits: Limits, open_files: u64) -> Arc<Gate> {
        let max = limits.connection_limit(open_files);
        tracing::info!(
            max_connections = max,
            open_files,
            header_read_timeout = ?limits.header_read_timeout,
            body_read_timeout = ?limits.body_read_timeout,
            idle_timeout = ?limits.idle_timeout,
            http2_max_streams = limits.http2_max_streams,
            "HTTP listener limits"
        );
        Arc::new(Gate {
            limits,
            max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn admit(&self) -> Admit {
        let mut conns = self.conns.lock().expect("not poisoned");
        let n = conns.len();
        if n >= self.max + OVERFLOW {
            return Admit::Close;
        }
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let live = conns
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .count();
        let serve = if live < self.max {
            true
        } else {
            // Full: the connection idle the longest makes room, as nginx does with keep-alive
            // connections; a connection with a request in flight is never cut.
            let victim = conns
                .values()
                .filter(|c| {
                    !c.evicted.load(Ordering::Relaxed) && c.in_flight.load(Ordering::Relaxed) == 0
                })
                .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
            match victim {
                Some(v) => {
                    v.evicted.store(true, Ordering::Relaxed);
                    v.waker.wake();
                    true
                }
                None => false,
            }
        };
        conns.insert(id, conn.clone());
        if serve {
            Admit::Serve(id, conn)
        } else {
            Admit::Refuse(id, conn)
        }
    }

    fn remove(&self, id: u64) {
        self.conns.lock().expect("not poisoned").remove(&id);
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) under the gate's limits, until
/// `handle` shuts it down. The router sees the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: axum::Router,
    gate: Arc<Gate>,
    handle: axum_server::Handle<SocketAddr>,
) -> io::Result<()> {
    let limits = gate.limits.clone();
    let guard = Guard { gate };
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let configure =
        |builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>| {
            builder
                .http1()
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .max_concurrent_streams(limits.http2_max_streams)
                .max_header_list_size(64 * 1024);
        };
    match tls {
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                .handshake_timeout(limits.header_read_timeout)
                .acceptor(guard);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .first_request_timeout(limits.header_read_timeout)
                .handle(handle);
            configure(server.http_builder());
            server.serve(make).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(guard)
                .first_request_timeout(limits.header_read_timeout)
                .handle(handle);
            configure(server.http_builder());
            server.serve(make).await
        }
    }
}

/// The acceptor under TLS: admits the connection through the gate, sets `TCP_NODELAY` (so
/// that a response's last TLS record is not held back by Nagle's algorithm waiting for the
/// client's delayed ACK), and tracks the socket and the requests.
#[derive(Clone)]
struct Guard {
    gate: Arc<Gate>,
}

impl<S> axum_server::accept::Accept<TcpStream, S> for Guard {
    type Stream = Tracked;
    type Service = Counted<S>;
    type Future = std::future::Ready<io::Result<(Tracked, Counted<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let (id, conn, refuse) = match self.gate.admit() {
            Admit::Serve(id, conn) => (id, conn, false),
            Admit::Refuse(id, conn) => (id, conn, true),
            Admit::Close => {
                return std::future::ready(Err(io::Error::other(
                    "connection limit reached: closed at once",
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let idle = if refuse {
            REFUSED_LINGER
        } else {
            self.gate.limits.idle_timeout
        };
        let tracked = Tracked {
            io: stream,
            id,
            conn: conn.clone(),
            gate: self.gate.clone(),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        };
        let counted = Counted {
            inner: service,
            conn,
            refuse,
            body_timeout: self.gate.limits.body_read_timeout,
            max: self.gate.max,
        };
        std::future::ready(Ok((tracked, counted)))
    }
}

/// A TCP stream that notes when bytes move, closes itself when idle, and leaves the gate
/// when dropped.
pub struct Tracked {
    io: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    gate: Arc<Gate>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Tracked {
    fn touch(&self) {
        self.conn
            .last_active
            .store(self.gate.now_ms(), Ordering::Relaxed);
    }

    /// Whether the connection should close now; else arms the idle timer.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.conn.evicted.load(Ordering::Relaxed) {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            ));
        }
        loop {
            let now = tokio::time::Instant::now();
            let deadline = if self.conn.in_flight.load(Ordering::Relaxed) > 0 {
                now + self.idle
            } else {
                let last = self.conn.last_active.load(Ordering::Relaxed);
                let since = self.gate.now_ms().saturating_sub(last);
                let left = self.idle.saturating_sub(Duration::from_millis(since));
                if left.is_zero() {
                    return Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection closed",
                    ));
                }
                now + left
            };
            self.sleep.as_mut().reset(deadline);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.gate.remove(self.id);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.evicted.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.conn.waker.register(cx.waker());
                match self.check_idle(cx) {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_below_the_open_file_limit() {
        let l = Limits::default();
        assert_eq!(l.connection_limit(1024), 1024 - 256 - 64);
        assert_eq!(l.connection_limit(1 << 20), DEFAULT_MAX_CONNECTIONS);
        let set = Limits {
            max_connections: Some(100),
            ..Limits::default()
        };
        assert_eq!(set.connection_limit(1024), 100);
        assert_eq!(set.connection_limit(300), 1, "never zero");
    }

    #[test]
    fn limits_are_checked_with_the_key_named() {
        let raw: RawLimits = toml::from_str("idle_timeout = \"0s\"").unwrap();
        let FieldError {
            field,
            message: msg,
        } = Limits::from_raw(raw).unwrap_err();
        assert_eq!(field, "http.idle_timeout");
        assert!(msg.contains("out of range"), "{msg}");
        let raw: RawLimits = toml::from_str("http2_max_streams = 0").unwrap();
        assert_eq!(
            Limits::from_raw(raw).unwrap_err().field,
            "http.http2_max_streams"
        );
        let raw: RawLimits =
            toml::from_str("header_read_timeout = \"5s\"\nmax_connections = 500").unwrap();
        let l = Limits::from_raw(raw).unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_secs(5));
        assert_eq!(l.max_connections, Some(500));
        assert!(toml::from_str::<RawLimits>("header_timeout = \"5s\"").is_err());
    }

    #[test]
    fn a_full_gate_makes_room_by_closing_the_longest_idle_connection() {
        let gate = Gate::new(
            Limits {
                max_connections: Some(2),
                ..Limits::default()
            },
            1 << 20,
        );
        let Admit::Serve(_, a) = gate.admit() else {
            panic!("room")
        };
        let Admit::Serve(_, b) = gate.admit() else {
            panic!("room")
        };
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        // Full: `a` is idle, so it makes room.
        let Admit::Serve(_, c) = gate.admit() else {
            panic!("a makes room")
        };
        assert!(a.evicted.load(Ordering::Relaxed));
        assert!(
            !b.evicted.load(Ordering::Relaxed),
            "b has a request in flight"
        );
        // Full with every connection busy: 503.
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(gate.admit(), Admit::Refuse(..)));
    }
}
