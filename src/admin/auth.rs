//! Who is signed in: sessions, CSRF tokens, the sign-in lockout and the first-run setup code.
//!
//! Sessions live in memory (a restart of plantd signs everyone out): a random 256-bit id in an
//! HttpOnly, Secure, SameSite=Strict cookie, and a second random value, the CSRF token, that the
//! UI sends back in `X-CSRF-Token` with every change. A session ends after an hour unused or
//! twelve hours in all.
//!
//! Wrong passwords are counted per address and user name: five within 15 minutes from one
//! address lock that name for that address only, for five minutes, so a stranger who knows a
//! name cannot lock its admin out. Against guessing from many addresses, 50 wrong passwords for
//! one name within 15 minutes from all addresses together lock the name for everyone for five
//! minutes (sessions already open keep working). An IPv6 address counts as its /64, which one
//! host usually holds whole. A right password clears its address's count for the name. Wrong
//! setup codes lock setup for five minutes for the address they came from only (a stranger
//! cannot lock the installer out). At most 10 000 addresses and names are followed; past it the
//! ones with the fewest failures are forgotten first.
//!
//! Refused sign-ins and setups are written to the audit log at most once a minute per address
//! and kind of refusal, with a count of the others; so are a signed-in user's refused actions,
//! per user ([`Refusals`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::refusals::Refusals;
use super::store::{Role, UserState};

pub const COOKIE: &str = "plantd_session";
const IDLE: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Wrong passwords (or setup codes) from one address, within [`FAILURE_WINDOW`], that lock a
/// user name (or setup) for that address.
pub const MAX_FAILURES: u32 = 5;
/// Wrong passwords for one user name from all addresses, within [`FAILURE_WINDOW`], that lock
/// the name for everyone.
pub const MAX_NAME_FAILURES: u32 = 50;
/// How long failures are remembered, counted from the first of a run.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const LOCKOUT: Duration = Duration::from_secs(300);
/// Addresses (with a name) and names followed for the lockout.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The user's epoch when the session began: a change to the user (removed, new password
    /// or role, signed out everywhere) moves it on and so ends the session.
    pub epoch: i64,
    /// How they signed in.
    pub via: Via,
    /// For a user of the company's directory or provider, who they are there (a DN, or
    /// `ISSUER#sub`): such a session is not checked against the local users; it lasts its
    /// time (the directory or provider is not asked again).
    pub subject: Option<String>,
    /// Where the browser signs out at the provider too (OIDC's end-session URL).
    pub logout: Option<String>,
    /// At the hub: the plants they see and act on (`None`: every plant).
    pub plants: Option<Vec<String>>,
    /// The user has a second factor (TOTP).
    pub totp: bool,
    /// An admin signed in without a second factor where one is required: they may set one
    /// up, and change nothing else until they have.
    pub must_enrol: bool,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// How a session's user signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A local user of this server.
    Local,
    /// The company's LDAP directory (`[identity.ldap]`).
    Ldap,
    /// The company's OpenID Connect provider (`[identity.oidc]`).
    Oidc,
}

/// A user someone else vouched for: the directory or the provider.
pub struct External {
    pub via: Via,
    pub role: Role,
    pub subject: String,
    pub logout: Option<String>,
    pub plants: Option<Vec<String>>,
}

/// Who a lock keeps out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// The user name, for the address the wrong passwords came from.
    Address,
    /// The user name, for everyone: wrong passwords came from many addresses.
    Everyone,
    /// Setup, for the address the wrong codes came from.
    Setup,
}

/// A lock in force: how long it still lasts, and who it keeps out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub left: Duration,
    pub scope: LockScope,
}

/// What wrong guesses from an address are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Door {
    Password(String),
    Setup,
}

/// Failures within a window that starts at the first of them.
#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            since: now,
            count: 0,
            locked_until: None,
        }
    }

    fn locked_for(&self, now: Instant) -> Option<Duration> {
        let until = self.locked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Neither locked nor counting any more: it can be forgotten.
    fn stale(&self, now: Instant) -> bool {
        match self.locked_until {
            Some(until) => until <= now,
            None => now.duration_since(self.since) >= FAILURE_WINDOW,
        }
    }

    /// Counts a failure; the lock it starts when it reaches `max`.
    fn fail(&mut self, max: u32, now: Instant) -> Option<Duration> {
        if self.stale(now) {
            *self = Tally::new(now);
        }
        self.count += 1;
        if self.count >= max {
            self.locked_until = Some(now + LOCKOUT);
            return Some(LOCKOUT);
        }
        None
    }

    /// Takes back one counted attempt that turned out right, and the lock it started.
    fn undo(&mut self, max: u32) {
        self.count = self.count.saturating_sub(1);
        if self.count < max {
            self.locked_until = None;
        }
    }
}

/// The failures the lockout follows.
#[derive(Debug, Default)]
struct Failures {
    /// Per address (IPv6: its /64) and door.
    from: HashMap<(String, Door), Tally>,
    /// Per user name, from all addresses together.
    names: HashMap<String, Tally>,
}

/// Keeps `map` under [`MAX_TRACKED`]: forgets the stale tallies, then, if made-up names or
/// addresses still fill it, the half with the fewest failures (locks last).
fn bound<K: Eq + Hash + Clone>(map: &mut HashMap<K, Tally>, now: Instant) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, t| !t.stale(now));
    if map.len() < MAX_TRACKED {
        return;
    }
    let mut coldest: Vec<(K, (bool, u32))> = map
        .iter()
        .map(|(k, t)| (k.clone(), (t.locked_for(now).is_some(), t.count)))
        .collect();
    coldest.sort_unstable_by_key(|(_, heat)| *heat);
    let forget = coldest.len() / 2;
    for (k, _) in coldest.into_iter().take(forget) {
        map.remove(&k);
    }
}

/// The address a lock applies to: an IPv4 address as it is, an IPv6 address as its /64, so
/// that a host cannot walk its own prefix for fresh tries.
pub(super) fn source_key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => source.to_string(),
    }
}

/// The sign-in state of the daemon.
#[derive(Debug)]
pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<Failures>,
    setup_code: Mutex<Option<String>>,
    /// Refused sign-ins and setups, per address.
    pub refused_sign_ins: Refusals,
    /// Signed-in users' refused actions, per user.
    pub refused_actions: Refusals,
    /// Signed-in users' audited reads (exports of the audit log), per user: folded as
    /// refusals are, so that a viewer exporting in a loop cannot push admins' entries out.
    pub repeated_reads: Refusals,
}

impl Default for Auth {
    fn default() -> Auth {
        Auth {
            sessions: Default::default(),
            failures: Default::default(),
            setup_code: Default::default(),
            refused_sign_ins: Refusals::new("(many addresses)"),
            refused_actions: Refusals::new("(many users)"),
            repeated_reads: Refusals::new("(many users)"),
        }
    }
}

impl Auth {
    /// How long wrong passwords keep `name` locked for `source`, if they do.
    pub fn locked_for(&self, source: &str, name: &str, now: Instant) -> Option<Lockout> {
        let failures = self.failures.lock().expect("not poisoned");
        if let Some(left) = failures.names.get(name).and_then(|t| t.locked_for(now)) {
            return Some(Lockout {
                left,
                scope: LockScope::Everyone,
            });
        }
        let key = (source_key(source), Door::Password(name.to_string()));
        let left = failures.from.get(&key)?.locked_for(now)?;
        Some(Lockout {
            left,
            scope: LockScope::Address,
        })
    }

    /// Records a wrong password for `name` from `source`; returns the lock it starts, if it
    /// starts one (for everyone before for the address).
    pub fn failed(&self, source: &str, name: &str, now: Instant) -> Option<Lockout> {
        let mut failures = self.failures.lock().expect("not poisoned");
        let Failures { from, names } = &mut *failures;
        bound(from, now);
        bound(names, now);
        let key = (source_key(source), Door::Password(name.to_string()));
        let here = from
            .entry(key)
            .or_insert_with(|| Tally::new(now))
            .fail(MAX_FAILURES, now);
        let everyone = names
            .entry(name.to_string())
            .or_insert_with(|| Tally::new(now))
            .fail(MAX_NAME_FAILURES, now);
        match (everyone, here) {
            (Some(left), _) => Some(Lockout {
                left,
                scope: LockScope::Everyone,
            }),
            (None, Some(left)) => Some(Lockout {
                left,
                scope: LockScope::Address,
            }),
            (None, None) => None,
        }
    }

    /// The right password for `name` from `source`: that address's count for the name starts
    /// again, and the attempt (counted before the hash, as every attempt is) is taken back
    /// from the count from all addresses, which otherwise goes on: others may still be guessing.
    pub fn succeeded(&self, source: &str, name: &str) {
        let key = (source_key(source), Door::Password(name.to_string()));
        let mut failures = self.failures.lock().expect("not poisoned");
        failures.from.remove(&key);
        if let Some(tally) = failures.names.get_mut(name) {
            tally.undo(MAX_NAME_FAILURES);
        }
    }

    /// An attempt counted before its password could be checked (the directory could not be
    /// reached): taken back from both counts, so that an outage locks nobody out.
    pub fn not_checked(&self, source: &str, name: &str) {
        let key = (source_key(source), Door::Password(name.to_string()));
        let mut failures = self.failures.lock().expect("not poisoned");
        if let Some(tally) = failures.from.get_mut(&key) {
            tally.undo(MAX_FAILURES);
        }
        if let Some(tally) = failures.names.get_mut(name) {
            tally.undo(MAX_NAME_FAILURES);
        }
    }

    /// How long wrong setup codes keep setup locked for `source`, if they do.
    pub fn setup_locked_for(&self, source: &str, now: Instant) -> Option<Lockout> {
        let failures = self.failures.lock().expect("not poisoned");
        let left = failures
            .from
            .get(&(source_key(source), Door::Setup))?
            .locked_for(now)?;
        Some(Lockout {
            left,
            scope: LockScope::Setup,
        })
    }

    /// Records a wrong setup code from `source`. Setup has no lock for everyone: its code has
    /// 40 bits, and a stranger must not lock the installer out.
    pub fn setup_failed(&self, source: &str, now: Instant) -> Option<Lockout> {
        let mut failures = self.failures.lock().expect("not poisoned");
        bound(&mut failures.from, now);
        let left = failures
            .from
            .entry((source_key(source), Door::Setup))
            .or_insert_with(|| Tally::new(now))
            .fail(MAX_FAILURES, now)?;
        Some(Lockout {
            left,
            scope: LockScope::Setup,
        })
    }

    pub fn setup_succeeded(&self, source: &str) {
        self.failures
            .lock()
            .expect("not poisoned")
            .from
            .remove(&(source_key(source), Door::Setup));
    }

    /// Starts a session; returns its cookie value.
    pub fn sign_in(
        &self,
        user: &str,
        state: UserState,
        now: Instant,
    ) -> anyhow::Result<(String, Session)> {
        self.start(user, state, None, now)
    }

    /// Starts a session for a user the directory or the provider checked.
    pub fn sign_in_external(
        &self,
        user: &str,
        who: External,
        now: Instant,
    ) -> anyhow::Result<(String, Session)> {
        let state = UserState {
            role: who.role,
            epoch: 0,
        };
        self.start(user, state, Some(who), now)
    }

    fn start(
        &self,
        user: &str,
        state: UserState,
        external: Option<External>,
        now: Instant,
    ) -> anyhow::Result<(String, Session)> {
        let id = crate::digest::random_secret()?;
        let (via, subject, logout, plants) = match external {
            None => (Via::Local, None, None, None),
            Some(e) => (e.via, Some(e.subject), e.logout, e.plants),
        };
        let session = Session {
            user: user.to_string(),
            role: state.role,
            epoch: state.epoch,
            via,
            subject,
            logout,
            plants,
            totp: false,
            must_enrol: false,
            csrf: crate::digest::random_secret()?,
            created: now,
            last_seen: now,
        };
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|_, s| alive(s, now));
        sessions.insert(digest(&id), session.clone());
        Ok((id, session))
    }

    /// Sets the second factor's marks of the session behind `id` (just started, or enrolled).
    pub fn set_second_factor(&self, id: &str, totp: bool, must_enrol: bool) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let s = sessions.get_mut(&digest(id))?;
        s.totp = totp;
        s.must_enrol = must_enrol;
        Some(s.clone())
    }

    /// The session behind `id` set up its user's second factor, which moved the user's
    /// epoch on to `epoch`: it goes on under it, and may act.
    pub fn second_factor_set(&self, id: &str, epoch: i64) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        if let Some(s) = sessions.get_mut(&digest(id)) {
            s.totp = true;
            s.must_enrol = false;
            s.epoch = epoch;
        }
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

    /// Live sessions per user.
    pub fn session_counts(&self, now: Instant) -> HashMap<String, usize> {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|_, s| alive(s, now));
        let mut counts = HashMap::new();
        for s in sessions.values() {
            *counts.entry(s.user.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Ends every session of `user` held here (the store's epoch ends them everywhere).
    pub fn sign_out_user(&self, user: &str) {
        self.sessions
            .lock()
            .expect("not poisoned")
            .retain(|_, s| s.user != user);
    }

    pub fn sign_out(&self, id: &str) {
        self.sessions
            .lock()
            .expect("not poisoned")
            .remove(&digest(id));
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

    const ADMIN: UserState = UserState {
        role: Role::Admin,
        epoch: 0,
    };

    #[test]
    fn sessions_end_when_idle_or_old_or_signed_out() {
        let auth = Auth::default();
        let t0 = Instant::now();
        let (id, s) = auth.sign_in("ana", ADMIN, t0).unwrap();
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
        let (id, _) = auth.sign_in("ana", ADMIN, t0).unwrap();
        assert!(auth.session(&id, t0 + IDLE).is_none(), "idle for an hour");
        let (id, _) = auth.sign_in("ana", ADMIN, t0).unwrap();
        auth.sign_out(&id);
        assert!(auth.session(&id, t0).is_none());
    }

    const FROM_HERE: LockScope = LockScope::Address;

    #[test]
    fn five_wrong_passwords_lock_the_name_for_their_address_only() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.failed("10.0.0.2", "ana", t0), None);
        }
        assert_eq!(auth.locked_for("10.0.0.2", "ana", t0), None);
        let lock = Some(Lockout {
            left: LOCKOUT,
            scope: FROM_HERE,
        });
        assert_eq!(auth.failed("10.0.0.2", "ana", t0), lock);
        assert_eq!(
            auth.locked_for("10.0.0.2", "ana", t0 + Duration::from_secs(60)),
            Some(Lockout {
                left: LOCKOUT - Duration::from_secs(60),
                scope: FROM_HERE
            })
        );
        assert_eq!(
            auth.locked_for("10.0.0.3", "ana", t0),
            None,
            "ana signs in from elsewhere"
        );
        assert_eq!(
            auth.locked_for("10.0.0.2", "bob", t0),
            None,
            "other names are not locked"
        );
        let later = t0 + LOCKOUT;
        assert_eq!(auth.locked_for("10.0.0.2", "ana", later), None);
        assert_eq!(
            auth.failed("10.0.0.2", "ana", later),
            None,
            "the count starts again"
        );
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            auth.failed("10.0.0.2", "ana", t0);
        }
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(auth.failed("10.0.0.2", "ana", later), None);
        assert_eq!(auth.locked_for("10.0.0.2", "ana", later), None);
    }

    #[test]
    fn the_right_password_clears_its_address_count_only() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            auth.failed("10.0.0.2", "ana", t0);
            auth.failed("10.0.0.3", "ana", t0);
        }
        auth.succeeded("10.0.0.2", "ana");
        assert_eq!(
            auth.failed("10.0.0.2", "ana", t0),
            None,
            "10.0.0.2 starts again"
        );
        assert_eq!(
            auth.failed("10.0.0.3", "ana", t0).map(|l| l.scope),
            Some(FROM_HERE),
            "10.0.0.3 keeps its count"
        );
    }

    #[test]
    fn right_passwords_never_add_up_to_a_lock() {
        let auth = Auth::default();
        let t0 = Instant::now();
        // Each sign-in is counted before its hash, then taken back when it was right.
        for i in 0..(3 * MAX_NAME_FAILURES) {
            let source = format!("10.0.3.{}", i % 7);
            auth.failed(&source, "ana", t0);
            auth.succeeded(&source, "ana");
        }
        assert_eq!(auth.locked_for("10.0.3.1", "ana", t0), None);
        assert_eq!(auth.locked_for("10.0.4.1", "ana", t0), None);
        // The last guess of the fifty being the right password does not lock anyone out.
        for i in 1..MAX_NAME_FAILURES {
            auth.failed(&format!("10.0.5.{i}"), "bob", t0);
        }
        assert!(auth.failed("10.0.6.1", "bob", t0).is_some());
        auth.succeeded("10.0.6.1", "bob");
        assert_eq!(auth.locked_for("10.0.6.2", "bob", t0), None);
    }

    #[test]
    fn guesses_from_many_addresses_lock_the_name_for_everyone() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for i in 1..MAX_NAME_FAILURES {
            assert_eq!(auth.failed(&format!("10.0.1.{i}"), "ana", t0), None);
        }
        assert_eq!(auth.locked_for("10.0.2.1", "ana", t0), None);
        let everyone = Some(Lockout {
            left: LOCKOUT,
            scope: LockScope::Everyone,
        });
        assert_eq!(auth.failed("10.0.1.50", "ana", t0), everyone);
        assert_eq!(auth.locked_for("10.0.2.1", "ana", t0), everyone);
        assert_eq!(auth.locked_for("10.0.2.1", "bob", t0), None);
        // While it holds, no sign-in gets as far as its password (`locked_for` refuses it
        // first), so no right password can lift it either.
        assert_eq!(auth.locked_for("10.0.2.1", "ana", t0 + LOCKOUT), None);
        // 49 within 15 minutes, then quiet: no lock.
        let auth = Auth::default();
        for i in 1..MAX_NAME_FAILURES {
            auth.failed(&format!("10.0.1.{i}"), "ana", t0);
        }
        assert_eq!(auth.failed("10.0.1.50", "ana", t0 + FAILURE_WINDOW), None);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for i in 1..=MAX_FAILURES {
            auth.failed(&format!("2001:db8:1:2::{i:x}"), "ana", t0);
        }
        assert!(auth.locked_for("2001:db8:1:2:ffff::1", "ana", t0).is_some());
        assert_eq!(auth.locked_for("2001:db8:1:3::1", "ana", t0), None);
        assert_eq!(source_key("::ffff:10.0.0.2"), "10.0.0.2");
    }

    #[test]
    fn the_lockout_stays_bounded_and_forgets_made_up_names_first() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for i in 0..40u32 {
            auth.failed(&format!("10.1.0.{i}"), "ana", t0);
        }
        for i in 0..3 * MAX_TRACKED as u32 {
            let source = format!("10.2.{}.{}", i / 256, i % 256);
            auth.failed(&source, &format!("made-up-{i}"), t0);
            let failures = auth.failures.lock().unwrap();
            assert!(failures.from.len() <= MAX_TRACKED);
            assert!(failures.names.len() <= MAX_TRACKED);
        }
        for i in 40..MAX_NAME_FAILURES - 1 {
            assert_eq!(auth.failed(&format!("10.1.0.{i}"), "ana", t0), None);
        }
        assert_eq!(
            auth.failed("10.1.0.99", "ana", t0).map(|l| l.scope),
            Some(LockScope::Everyone),
            "ana's 40 earlier failures were kept"
        );
    }

    #[test]
    fn wrong_setup_codes_lock_setup_for_their_address_only() {
        let auth = Auth::default();
        let t0 = Instant::now();
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.setup_failed("127.0.0.2", t0), None);
        }
        assert_eq!(
            auth.setup_failed("127.0.0.2", t0),
            Some(Lockout {
                left: LOCKOUT,
                scope: LockScope::Setup
            })
        );
        assert!(auth.setup_locked_for("127.0.0.2", t0).is_some());
        assert_eq!(auth.setup_locked_for("127.0.0.3", t0), None);
        // Setup and sign-in count apart, whatever name a stranger types.
        assert_eq!(auth.locked_for("127.0.0.2", "setup", t0), None);
        auth.setup_succeeded("127.0.0.2");
        assert_eq!(auth.setup_locked_for("127.0.0.2", t0), None);
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
