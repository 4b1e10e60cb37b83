//! A second factor for local users: TOTP (RFC 6238: SHA-1, six digits, 30 s steps, one step
//! of clock skew either way), as every authenticator app reads it from a QR code, and ten
//! one-time recovery codes for a lost phone.
//!
//! Enrolment is two steps, so that nobody is left with a factor their app does not have: a
//! new secret is kept aside (`totp_pending`) and shown as a QR code rendered here (an SVG, no
//! request leaves the plant); it becomes the user's once they send a code it makes. A code is
//! taken once: its time step is kept, and a code of that step or an earlier one is refused
//! (RFC 6238, 5.2). Recovery codes are 50 random bits each, kept as SHA-256 hashes (their
//! entropy makes a slow hash needless), and each works once. An admin (or `plantd admin
//! totp-reset` beside the daemon) takes a user's factor away; that ends their sessions.

use data_encoding::{BASE32_NOPAD, BASE64};
use rusqlite::{params, OptionalExtension};
use totp_rs::{Algorithm, Builder, Totp};

use super::store::{Store, StoreError};

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
const STEP: u64 = 30;

/// What a user's authenticator app needs, shown once at enrolment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Enrolment {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    /// `otpauth://totp/...`, what the QR code holds.
    pub uri: String,
    /// The QR code, an SVG as a `data:` URL for an `<img>`.
    pub qr: String,
}

/// How a second factor was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    Code,
    /// A recovery code: this many are left.
    Recovery(usize),
}

fn totp(secret: &[u8]) -> Result<Totp, StoreError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| StoreError::Invalid(format!("the TOTP secret: {e}")))
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| StoreError::Hash("no random numbers from the operating system".into()))?;
    Ok(bytes)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A recovery code as compared: upper case, without dashes or spaces.
fn recovery_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    crate::digest::sha256_hex(normal.as_bytes())
}

/// Whether `code` is six digits (spaces allowed), as an app shows it.
fn is_totp_code(code: &str) -> bool {
    let digits: Vec<char> = code.chars().filter(|c| *c != ' ').collect();
    digits.len() == 6 && digits.iter().all(char::is_ascii_digit)
}

/// `otpauth://totp/ISSUER:USER?secret=...`, percent-encoded.
fn uri(issuer: &str, user: &str, secret: &str) -> String {
    let mut url = url::Url::parse("otpauth://totp/").expect("a URL");
    url.set_path(&format!("{issuer}:{user}"));
    url.query_pairs_mut()
        .append_pair("secret", secret)
        .append_pair("issuer", issuer)
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", "6")
        .append_pair("period", "30");
    url.to_string()
}

fn qr_svg(text: &str) -> Result<String, StoreError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| StoreError::Invalid(format!("the QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        BASE64.encode(svg.as_bytes())
    ))
}

/// A user's second-factor row: secret, last step, recovery hashes, wrong codes, locked until.
type CodeRow = (
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

/// What checking a sign-in's second factor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Passed(Used),
    /// Wrong, or used already.
    Wrong,
    /// Too many wrong codes for this user from everywhere: none is checked for this many
    /// seconds more.
    Locked(u64),
}

/// Wrong codes for one user, from all addresses together, that stop code checks for
/// [`CODE_LOCK`]; every [`CODE_STRIKES`] more lock it again, each time twice as long (at most
/// a day). The password's lockout (per address, and per name) comes first; this bounds what
/// someone who knows the password can guess over days: at most about 10 codes in the first
/// hour, 20 in the first three.
pub const CODE_STRIKES: i64 = 10;
pub const CODE_LOCK: u64 = 3600;

impl Store {
    /// Whether `name` has a second factor.
    pub fn has_totp(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.factor_of(&self.writer(), name)?.unwrap_or(false))
    }

    /// Whether `name` has a second factor; `None` for no such user. Read on the connection
    /// the caller holds (the writer's lock, for a change that depends on it).
    fn factor_of(
        &self,
        conn: &rusqlite::Connection,
        name: &str,
    ) -> Result<Option<bool>, StoreError> {
        conn.query_row(
            "SELECT totp_secret IS NOT NULL FROM users WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.sql(e))
    }

    /// Starts an enrolment: a new secret, kept aside until a code it makes is sent. `None`
    /// when the user has a second factor already (it is never replaced this way).
    pub fn totp_begin(&self, name: &str, issuer: &str) -> Result<Option<Enrolment>, StoreError> {
        let secret = BASE32_NOPAD.encode(&random::<20>()?);
        let conn = self.writer();
        match self.factor_of(&conn, name)? {
            None => return Err(StoreError::NoUser(name.to_string())),
            Some(true) => return Ok(None),
            Some(false) => {}
        }
        // Under the writer's lock, and only while there is no factor: a confirm that came
        // between cannot be undone by this.
        conn.execute(
            "UPDATE users SET totp_pending = ?2 WHERE name = ?1 AND totp_secret IS NULL",
            params![name, secret],
        )
        .map_err(|e| self.sql(e))?;
        let uri = uri(issuer, name, &secret);
        Ok(Some(Enrolment {
            qr: qr_svg(&uri)?,
            uri,
            secret,
        }))
    }

    /// Ends an enrolment with a code its secret makes: the secret becomes the user's, the
    /// recovery codes are made (returned once, kept only as hashes), and the user's epoch moves
    /// on (returned): every other session of theirs ends, since none of them gave a code.
    /// `None`: wrong code, no enrolment under way, or a factor set up already.
    pub fn totp_confirm(
        &self,
        name: &str,
        code: &str,
    ) -> Result<Option<(Vec<String>, i64)>, StoreError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))?;
        let row: Option<(Option<String>, bool)> = tx
            .query_row(
                "SELECT totp_pending, totp_secret IS NOT NULL FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let (pending, has) = row.ok_or_else(|| StoreError::NoUser(name.to_string()))?;
        let Some(pending) = pending.filter(|_| !has) else {
            return Ok(None);
        };
        let secret = BASE32_NOPAD
            .decode(pending.as_bytes())
            .map_err(|e| StoreError::Invalid(format!("the pending TOTP secret: {e}")))?;
        if !is_totp_code(code) {
            return Ok(None);
        }
        let Some(step) = totp(&secret)?.check(&code.replace(' ', ""), now_secs()) else {
            return Ok(None);
        };
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let b32 = BASE32_NOPAD.encode(&random::<7>()?);
            // 56 bits make 12 characters; 10 (50 bits) are shown, in two groups.
            codes.push(format!("{}-{}", &b32[..5], &b32[5..10]));
        }
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        let epoch: i64 = tx
            .query_row(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_step = ?2, \
                 totp_recovery = ?3, totp_failures = 0, totp_locked_until = NULL, \
                 epoch = epoch + 1 WHERE name = ?1 RETURNING epoch",
                params![name, step as i64, serde_json::to_string(&hashes).expect("JSON")],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(Some((codes, epoch)))
    }

    /// Checks a sign-in's second factor: a code of the app (once per time step) or a
    /// recovery code (once), unless wrong codes have locked the user's code checks.
    pub fn totp_check(&self, name: &str, code: &str) -> Result<Check, StoreError> {
        let now = now_secs();
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let row: Option<CodeRow> = tx
            .query_row(
                "SELECT totp_secret, totp_step, totp_recovery, totp_failures, totp_locked_until \
                 FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((Some(secret), last_step, recovery, failures, locked_until)) = row else {
            return Ok(Check::Wrong);
        };
        if let Some(until) = locked_until.filter(|u| *u > now as i64) {
            return Ok(Check::Locked(until as u64 - now));
        }
        let used = if code.chars().count() > 32 {
            None
        } else if is_totp_code(code) {
            let secret = BASE32_NOPAD
                .decode(secret.as_bytes())
                .map_err(|e| StoreError::Invalid(format!("the TOTP secret of {name}: {e}")))?;
            match totp(&secret)?.check(&code.replace(' ', ""), now) {
                Some(step) if last_step.is_none_or(|last| step as i64 > last) => {
                    tx.execute(
                        "UPDATE users SET totp_step = ?2 WHERE name = ?1",
                        params![name, step as i64],
                    )
                    .map_err(|e| self.sql(e))?;
                    Some(Used::Code)
                }
                _ => None,
            }
        } else {
            let mut hashes: Vec<String> = recovery
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default();
            let want = recovery_hash(code);
            match hashes
                .iter()
                .position(|h| super::auth::same(h.as_bytes(), want.as_bytes()))
            {
                Some(at) => {
                    hashes.remove(at);
                    tx.execute(
                        "UPDATE users SET totp_recovery = ?2 WHERE name = ?1",
                        params![name, serde_json::to_string(&hashes).expect("JSON")],
                    )
                    .map_err(|e| self.sql(e))?;
                    Some(Used::Recovery(hashes.len()))
                }
                None => None,
            }
        };
        let outcome = match used {
            Some(used) => {
                tx.execute(
                    "UPDATE users SET totp_failures = 0, totp_locked_until = NULL WHERE name = ?1",
                    [name],
                )
                .map_err(|e| self.sql(e))?;
                Check::Passed(used)
            }
            None => {
                let failures = failures + 1;
                let lock = (failures % CODE_STRIKES == 0).then(|| {
                    let times = (failures / CODE_STRIKES - 1).min(5) as u32;
                    now + (CODE_LOCK << times).min(86_400)
                });
                tx.execute(
                    "UPDATE users SET totp_failures = ?2, \
                     totp_locked_until = coalesce(?3, totp_locked_until) WHERE name = ?1",
                    params![name, failures, lock.map(|l| l as i64)],
                )
                .map_err(|e| self.sql(e))?;
                Check::Wrong
            }
        };
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(outcome)
    }

    /// Takes a user's second factor away (a lost phone) and ends their sessions.
    pub fn totp_reset(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.writer();
        let n = conn
            .execute(
                "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_step = NULL, \
                 totp_recovery = NULL, totp_failures = 0, totp_locked_until = NULL, \
                 epoch = epoch + 1 WHERE name = ?1",
                [name],
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NoUser(name.to_string()));
        }
        Ok(())
    }
}

/// `POST /api/v1/admin/totp/enrol`: a new secret for the caller's authenticator app (any
/// role, local users only); it counts once confirmed.
pub async fn enrol(
    axum::extract::State(signin): axum::extract::State<super::SignIn>,
    headers: axum::http::HeaderMap,
) -> super::api::Answer {
    use axum::response::IntoResponse;
    let (caller, _) = local_caller(&signin, &headers, "totp.enrol").await?;
    let store = signin.store.clone();
    let (user, issuer) = (caller.clone(), signin.issuer.clone());
    // A session alone never replaces a factor that is set up: a stolen one could otherwise
    // make the account its own. A new phone goes through an admin's reset.
    let outcome = super::api::blocking(move || store.totp_begin(&user, &issuer))
        .await
        .and_then(|r| r.map_err(super::AdminError::from))
        .and_then(|e| {
            e.ok_or_else(|| super::AdminError::Conflict(
                "you have a second factor already; for a new phone, an admin resets it (Users page, or plantd admin totp-reset)".into(),
            ))
        });
    let note = outcome
        .as_ref()
        .map(|_| "a new second factor is being set up");
    signin
        .audit(&caller, "totp.enrol", Some(&caller), note)
        .await;
    Ok(axum::Json(outcome?).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    code: String,
}

/// `POST /api/v1/admin/totp/confirm` `{"code"}`: the enrolment's secret becomes the caller's
/// second factor; the answer holds the recovery codes, shown this once.
pub async fn confirm(
    axum::extract::State(signin): axum::extract::State<super::SignIn>,
    headers: axum::http::HeaderMap,
    bytes: axum::body::Bytes,
) -> super::api::Answer {
    use axum::response::IntoResponse;
    let (caller, id) = local_caller(&signin, &headers, "totp.confirm").await?;
    let outcome = async {
        let b: Confirm = super::api::body(&headers, &bytes)?;
        if b.code.chars().count() > 16 {
            return Err(super::AdminError::BadTotp);
        }
        let store = signin.store.clone();
        let user = caller.clone();
        super::api::blocking(move || store.totp_confirm(&user, b.code.trim()))
            .await??
            .ok_or(super::AdminError::BadTotp)
    }
    .await;
    signin
        .audit(
            &caller,
            "totp.confirm",
            Some(&caller),
            outcome
                .as_ref()
                .map(|_| "second factor set up, recovery codes made"),
        )
        .await;
    let (codes, epoch) = outcome?;
    // This session gave the code: it goes on, and may act (an admin who had to set it up).
    // The user's other sessions, which gave none, end with the epoch that moved on.
    signin.auth.second_factor_set(&id, epoch);
    Ok(axum::Json(serde_json::json!({
        "message": "second factor set up: sign-ins now ask for the app's code",
        "recovery_codes": codes,
    }))
    .into_response())
}

/// The caller of a change to their own second factor: a local user (a directory's users have
/// their directory's), with the session's CSRF token.
async fn local_caller(
    signin: &super::SignIn,
    headers: &axum::http::HeaderMap,
    action: &str,
) -> Result<(String, String), super::AdminError> {
    let caller = signin.actor(headers, action, None).await?;
    match signin.session_of(headers) {
        Some((id, s)) if s.subject.is_none() => Ok((caller.user, id)),
        _ => Err(super::AdminError::Conflict(
            "a company account's second factor is its directory's, not this server's".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::store::Role;

    fn code_now(secret_b32: &str) -> String {
        let secret = BASE32_NOPAD.decode(secret_b32.as_bytes()).unwrap();
        totp(&secret).unwrap().generate(now_secs()).to_string()
    }

    #[test]
    fn enrolment_needs_a_code_and_each_code_works_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add("ana", Role::Admin, "correct horse", true)
            .unwrap();
        assert!(!store.has_totp("ana").unwrap());
        let e = store.totp_begin("ana", "plantd lyon").unwrap().unwrap();
        assert!(
            e.uri
                .starts_with("otpauth://totp/plantd%20lyon:ana?secret="),
            "{}",
            e.uri
        );
        assert!(e.qr.starts_with("data:image/svg+xml;base64,"));
        // Not active until confirmed; a wrong code confirms nothing.
        assert!(!store.has_totp("ana").unwrap());
        let wrong = if code_now(&e.secret) == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(store.totp_confirm("ana", wrong).unwrap(), None);
        let epoch = store.user_state("ana").unwrap().unwrap().epoch;
        let (codes, new_epoch) = store
            .totp_confirm("ana", &code_now(&e.secret))
            .unwrap()
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(new_epoch, epoch + 1, "the other sessions end");
        assert!(store.has_totp("ana").unwrap());
        // Never replaced by a second enrolment.
        assert!(store.totp_begin("ana", "plantd lyon").unwrap().is_none());
        // The code that confirmed is used up; so is each recovery code, once.
        assert_eq!(
            store.totp_check("ana", &code_now(&e.secret)).unwrap(),
            Check::Wrong
        );
        assert_eq!(
            store.totp_check("ana", &codes[3].to_lowercase()).unwrap(),
            Check::Passed(Used::Recovery(9))
        );
        assert_eq!(store.totp_check("ana", &codes[3]).unwrap(), Check::Wrong);
        store.totp_reset("ana").unwrap();
        assert!(!store.has_totp("ana").unwrap());
        assert_eq!(store.totp_check("ana", &codes[4]).unwrap(), Check::Wrong);
    }

    #[test]
    fn wrong_codes_from_everywhere_lock_the_users_code_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add("ana", Role::Admin, "correct horse", true)
            .unwrap();
        let e = store.totp_begin("ana", "plantd").unwrap().unwrap();
        let (codes, _) = store
            .totp_confirm("ana", &code_now(&e.secret))
            .unwrap()
            .unwrap();
        for _ in 0..CODE_STRIKES {
            assert_eq!(
                store.totp_check("ana", "AAAAA-AAAAA").unwrap(),
                Check::Wrong
            );
        }
        // Locked for an hour: even a right recovery code is not looked at.
        assert!(matches!(
            store.totp_check("ana", &codes[0]).unwrap(),
            Check::Locked(left) if left > CODE_LOCK - 60 && left <= CODE_LOCK
        ));
        // An admin's reset clears it.
        store.totp_reset("ana").unwrap();
        let e = store.totp_begin("ana", "plantd").unwrap().unwrap();
        let (codes, _) = store
            .totp_confirm("ana", &code_now(&e.secret))
            .unwrap()
            .unwrap();
        assert_eq!(
            store.totp_check("ana", &codes[0]).unwrap(),
            Check::Passed(Used::Recovery(9))
        );
    }
}
