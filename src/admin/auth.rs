//! Who is signed in: sessions, CSRF tokens, the sign-in lockout and the first-run setup code.
//!
//! Sessions live in memory (a restart of plantd signs everyone out): a random 256-bit id in an
//! HttpOnly, Secure, SameSite=Strict cookie, and a second random value, the CSRF token, that the
//! UI sends back in `X-CSRF-Token` with every change. A session ends after an hour unused or
//! twelve hours in all. Five wrong passwords for one user name lock it for five minutes; wrong
//! setup codes lock setup for five minutes for the address they came from only (a stranger
//! cannot lock the installer out). Refused sign-ins and setups are written to the audit log
//! at most once a minute per address and action, with a count of the others ([`Refusals`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::Role;

pub const COOKIE: &str = "plantd_session";
const IDLE: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Wrong passwords in a row that lock a user name.
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// The sign-in state of the daemon.
#[derive(Debug, Default)]
pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
    setup_code: Mutex<Option<String>>,
    pub refusals: Refusals,
}

/// The name wrong setup codes from `source` count against.
pub fn setup_key(source: &str) -> String {
    format!("setup@{source}")
}

/// How often refused attempts from one address are written to the audit log.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Addresses followed one by one; past it, the rest share one count.
const MAX_SOURCES: usize = 4096;

/// What to do with a refused attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Write it: the first from its address and action in this window.
    Write,
    /// Count it; the first counted in a window asks for a summary at the window's end.
    Counted { first: bool },
}

/// Refused sign-ins and setups per address and action: one audit row a window, and one row
/// that sums up the rest, so that a flood without credentials cannot push real entries out of
/// the audit log or wear the disk with fsyncs.
#[derive(Debug, Default)]
pub struct Refusals {
    windows: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl Refusals {
    /// Notes a refused `action` from `source`.
    pub fn note(&self, source: &str, action: &str, now: Instant) -> Refusal {
        let mut windows = self.windows.lock().expect("not poisoned");
        if windows.len() >= MAX_SOURCES {
            windows.retain(|_, (start, _)| now.duration_since(*start) < REFUSAL_WINDOW);
        }
        let source = if windows.len() >= MAX_SOURCES {
            "(many addresses)"
        } else {
            source
        };
        let key = (source.to_string(), action.to_string());
        match windows.get_mut(&key) {
            Some((start, counted)) if now.duration_since(*start) < REFUSAL_WINDOW => {
                *counted += 1;
                Refusal::Counted {
                    first: *counted == 1,
                }
            }
            _ => {
                windows.insert(key, (now, 0));
                Refusal::Write
            }
        }
    }

    /// The refusals counted but not written in `source`'s window for `action`; resets them.
    pub fn take_counted(&self, source: &str, action: &str) -> u64 {
        let mut windows = self.windows.lock().expect("not poisoned");
        windows
            .get_mut(&(source.to_string(), action.to_string()))
            .map_or(0, |(_, counted)| std::mem::take(counted))
    }
}

impl Auth {
    /// Starts a session; returns its cookie value.
    pub fn sign_in(
        &self,
        user: &str,
        role: Role,
        now: Instant,
    ) -> anyhow::Result<(String, Session)> {
        let id = crate::digest::random_secret()?;
        let session = Session {
            user: user.to_string(),
            role,
            csrf: crate::digest::random_secret()?,
            created: now,
            last_seen: now,
        };
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|_, s| alive(s, now));
        sessions.insert(digest(&id), session.clone());
        Ok((id, session))
    }

    /// The live session behind a cookie value, touched.
    pub fn session(&self, id: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let key = digest(id);
        let session = sessions.get_mut(&key)?;
        if !alive(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn sign_out(&self, id: &str) {
        self.sessions
            .lock()
            .expect("not poisoned")
            .remove(&digest(id));
    }

    /// How long the name stays locked, if it is.
    pub fn locked_for(&self, name: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().expect("not poisoned");
        let until = failures.get(name)?.locked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Records a wrong password; returns the lockout it starts, if it starts one.
    pub fn failed(&self, name: &str, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures.len() > 10_000 {
            // Made-up names must not grow this without bound.
            failures.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = failures.entry(name.to_string()).or_default();
        if f.locked_until.is_some_and(|u| u <= now) {
            *f = Failures::default();
        }
        f.count += 1;
        if f.count >= MAX_FAILURES {
            f.locked_until = Some(now + LOCKOUT);
            return Some(LOCKOUT);
        }
        None
    }

    pub fn succeeded(&self, name: &str) {
        self.failures.lock().expect("not poisoned").remove(name);
    }

    pub fn set_setup_code(&self, code: Option<String>) {
        *self.setup_code.lock().expect("not poisoned") = code;
    }

    pub fn setup_pending(&self) -> bool {
        self.setup_code.lock().expect("not poisoned").is_some()
    }

    /// Whether `code` is the setup code (case and dashes aside), compared in constant time.
    pub fn setup_code_matches(&self, code: &str) -> bool {
        let normal = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_uppercase())
                .collect()
        };
        match &*self.setup_code.lock().expect("not poisoned") {
            Some(expected) => {
                let (a, b) = (normal(expected), normal(code));
                same(a.as_bytes(), b.as_bytes())
            }
            None => false,
        }
    }
}

/// Whether two secrets are equal, in time that depends on their length only.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < LIFETIME
}

fn digest(id: &str) -> String {
    crate::digest::hex(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()).as_ref())
}

/// A new setup code: eight letters and digits that cannot be mistaken for each other.
pub fn new_setup_code() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| anyhow::anyhow!("no random numbers from the operating system"))?;
    let chars: String = raw
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}-{}", &chars[..4], &chars[4..]))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for a session id (`None`: the one that ends it).
pub fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_or_old_or_signed_out() {
        let auth = Auth::default();
        let t0 = Instant::now();
        let (id, s) = auth.sign_in("ana", Role::Admin, t0).unwrap();
        assert_eq!(
            auth.session(&id, t0 + Duration::from_secs(10))
                .unwrap()
                .csrf,
            s.csrf
        );
        assert!(auth.session("forged", t0).is_none());
        // Used every 50 minutes it stays, until twelve hours have passed.
        let mut t = t0;
        for _ in 0..14 {
            t += Duration::from_secs(50 * 60);
            assert!(auth.session(&id, t).is_some());
        }
        t += Duration::from_secs(50 * 60);
        assert!(auth.session(&id, t).is_none(), "past its lifetime");
        let (id, _) = auth.sign_in("ana", Role::Admin, t0).unwrap();
        assert!(auth.session(&id, t0 + IDLE).is_none(), "idle for an hour");
        let (id, _) = auth.sign_in("ana", Role::Admin, t0).unwrap();
        auth.sign_out(&id);
        assert!(auth.session(&id, t0).is_none());
    }

    #[test]
    fn five_wrong_passwords_lock_the_name_for_five_minutes() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.failed("ana", t0), None);
        }
        assert_eq!(auth.locked_for("ana", t0), None);
        assert_eq!(auth.failed("ana", t0), Some(LOCKOUT));
        assert_eq!(
            auth.locked_for("ana", t0 + Duration::from_secs(60)),
            Some(LOCKOUT - Duration::from_secs(60))
        );
        assert_eq!(
            auth.locked_for("bob", t0),
            None,
            "other names are not locked"
        );
        let later = t0 + LOCKOUT;
        assert_eq!(auth.locked_for("ana", later), None);
        assert_eq!(auth.failed("ana", later), None, "the count starts again");
        auth.succeeded("ana");
        assert_eq!(auth.locked_for("ana", later), None);
    }

    #[test]
    fn refusals_are_written_once_a_window_per_address_and_summed_up() {
        let r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.note("10.0.0.1", "admin.setup", t0), Refusal::Write);
        assert_eq!(
            r.note("10.0.0.1", "admin.setup", t0),
            Refusal::Counted { first: true }
        );
        for _ in 0..1998 {
            assert_eq!(
                r.note("10.0.0.1", "admin.setup", t0),
                Refusal::Counted { first: false }
            );
        }
        assert_eq!(r.note("10.0.0.2", "admin.setup", t0), Refusal::Write);
        assert_eq!(r.note("10.0.0.1", "sign_in", t0), Refusal::Write);
        assert_eq!(r.take_counted("10.0.0.1", "admin.setup"), 1999);
        assert_eq!(r.take_counted("10.0.0.1", "admin.setup"), 0);
        assert_eq!(
            r.note("10.0.0.1", "admin.setup", t0 + REFUSAL_WINDOW),
            Refusal::Write,
            "a new window"
        );
    }

    #[test]
    fn wrong_setup_codes_lock_their_address_only() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            auth.failed(&setup_key("127.0.0.2"), t0);
        }
        assert!(auth.locked_for(&setup_key("127.0.0.2"), t0).is_some());
        assert_eq!(auth.locked_for(&setup_key("127.0.0.3"), t0), None);
    }

    #[test]
    fn setup_codes_compare_without_case_or_dashes() {
        let auth = Auth::default();
        let code = new_setup_code().unwrap();
        assert!(!auth.setup_code_matches(&code), "no code set");
        auth.set_setup_code(Some(code.clone()));
        assert!(auth.setup_code_matches(&code.to_lowercase().replace('-', "")));
        assert!(!auth.setup_code_matches("AAAA-AAAA") || code == "AAAA-AAAA");
        assert!(!auth.setup_code_matches(""));
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie("a=1; plantd_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("plantd_sessionx=1", COOKIE), None);
        assert!(set_cookie(Some("v")).contains("HttpOnly; Secure; SameSite=Strict"));
    }
}
