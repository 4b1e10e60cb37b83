//! Signing in through the company's LDAP directory (OpenLDAP, Active Directory): the user's
//! password is checked by a bind as their DN, over TLS only (StartTLS or LDAPS, the server's
//! certificate verified), and their groups give their role.
//!
//! One connection per sign-in, closed after it: a sign-in is rare, and a kept connection would
//! be one more thing to break when the directory restarts. Every step has a timeout; the
//! search for groups takes at most [`MAX_GROUPS`] entries. An empty password is refused before
//! the directory sees it: LDAP takes a bind with a DN and no password as an anonymous bind
//! that "succeeds" (RFC 4513, 5.1.2).
//!
//! Whether the directory can be reached is kept for the sign-in page, which says when only
//! local users can sign in. It is learned from sign-ins and from a probe (connect and TLS, no
//! bind) that the sign-in page's requests start at most once per [`PROBE_EVERY`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ldap3::{dn_escape, ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::store::Role;
use crate::config::identity::{LdapConfig, UserLookup};

/// Groups read for a user, at most.
pub const MAX_GROUPS: i32 = 1000;
/// How often the sign-in page may have the directory probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// Who the directory says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Their DN: the subject the audit log names.
    pub dn: String,
    pub role: Role,
    /// The group that gave the role.
    pub group: String,
    /// At the hub: the plants they see (`None`: every plant).
    pub plants: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Wrong password, unknown user, or an empty password.
    #[error("wrong user name or password")]
    BadCredentials,
    /// The password is right, but no group of the user's gives a role here.
    #[error("{dn} is in none of the groups that give a role here ({mapped}); ask your IT to add you to one")]
    NoRole { dn: String, mapped: String },
    /// At the hub: no group of theirs is given plants (`[identity.ldap.plants]`).
    #[error("your company account is in none of the groups that give plants on this hub; ask your IT to add you to one")]
    NoPlants { dn: String },
    /// The directory could not be asked: down, unreachable, TLS refused, too slow.
    #[error("the directory {url} cannot be reached ({why}); local users can still sign in")]
    Unreachable { url: String, why: String },
    /// The directory answered in a way that lets nobody in (the service account's bind
    /// failed, the user search is ambiguous): for the directory's admins to fix.
    #[error("the directory {url} refused the sign-in: {why}")]
    Misconfigured { url: String, why: String },
}

/// What the sign-in page shows of the directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reach {
    pub kind: &'static str,
    pub url: String,
    pub reachable: bool,
    /// Why not, when not.
    pub detail: Option<String>,
    #[serde(skip)]
    checked: Instant,
}

impl Reach {
    pub fn new(kind: &'static str, url: &str, reachable: bool, detail: Option<String>) -> Reach {
        Reach {
            kind,
            url: url.to_string(),
            reachable,
            detail,
            checked: Instant::now(),
        }
    }

    /// Whether it is older than [`PROBE_EVERY`].
    pub fn stale(&self) -> bool {
        self.stale_after(PROBE_EVERY)
    }

    pub fn stale_after(&self, every: Duration) -> bool {
        self.checked.elapsed() >= every
    }
}

/// Directory sign-ins at once; more get 503 at once.
const TURNS: usize = 4;
/// After the directory was found unreachable, sign-ins are told so without trying for this
/// long (a directory that drops packets would hold each for its whole timeout).
const FAIL_FAST: Duration = Duration::from_secs(5);

/// A name as the directory, the lockout and the audit log take it: trimmed, in lower case,
/// 1 to 64 of letters, digits and `. _ - @`; `None` for anything else.
pub fn canonical_name(typed: &str) -> Option<String> {
    // ASCII before lower case: "\u{212A}arl" (a Kelvin sign) must not become "karl".
    if !typed.is_ascii() {
        return None;
    }
    let name = typed.trim().to_ascii_lowercase();
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    ok.then_some(name)
}

pub struct Directory {
    turns: Arc<tokio::sync::Semaphore>,
    config: LdapConfig,
    tls: Arc<rustls::ClientConfig>,
    /// The service account's password, for a search of the user's DN.
    bind_password: Option<String>,
    reach: Mutex<Option<Reach>>,
    probing: AtomicBool,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Reads the CA and the service account's password: a mistake in either stops the start.
    pub fn new(config: LdapConfig) -> anyhow::Result<Directory> {
        let provider = crate::pki::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("rustls protocol versions")?;
        let tls = match &config.ca_file {
            Some(path) => builder
                .with_root_certificates(crate::pki::roots_from_file(
                    path,
                    "[identity.ldap] ca_file",
                )?)
                .with_no_client_auth(),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    rustls_platform_verifier::Verifier::new(provider)
                        .context("loading the system's CA certificates for [identity.ldap]")?,
                ))
                .with_no_client_auth(),
        };
        let bind_password = match &config.user {
            UserLookup::Template(_) => None,
            UserLookup::Search {
                bind_password_file, ..
            } => Some(
                std::fs::read_to_string(bind_password_file)
                    .with_context(|| {
                        format!(
                            "[identity.ldap] bind_password_file = {}",
                            bind_password_file.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
        };
        if bind_password.as_deref() == Some("") {
            anyhow::bail!(
                "[identity.ldap] bind_password_file is empty: the service account would bind without a password, which LDAP takes as anonymous"
            );
        }
        Ok(Directory {
            turns: Arc::new(tokio::sync::Semaphore::new(TURNS)),
            config,
            tls: Arc::new(tls),
            bind_password,
            reach: Mutex::new(None),
            probing: AtomicBool::new(false),
        })
    }

    /// A turn to ask the directory, if one is free.
    pub fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.turns.clone().try_acquire_owned().ok()
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Checks `password` for `user` with the directory and finds their role.
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        if password.is_empty() || user.is_empty() {
            return Err(DirectoryError::BadCredentials);
        }
        let down = self
            .reach
            .lock()
            .expect("not poisoned")
            .clone()
            .filter(|r| !r.reachable && r.checked.elapsed() < FAIL_FAST);
        if let Some(r) = down {
            return Err(self.unreachable(r.detail.unwrap_or_default()));
        }
        // Each step has its timeout; this bounds them all together.
        let all = self.config.timeout * 6;
        let outcome = match tokio::time::timeout(all, self.ask(user, password)).await {
            Ok(r) => r,
            Err(_) => Err(self.unreachable(format!("no answer within {all:?}"))),
        };
        match &outcome {
            Err(DirectoryError::Unreachable { why, .. }) => self.note(false, Some(why.clone())),
            _ => self.note(true, None),
        }
        outcome
    }

    async fn ask(&self, user: &str, password: &str) -> Result<DirectoryUser, DirectoryError> {
        let (conn, mut ldap) = self.connect().await?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.config.timeout);
        let misconfigured = |why: String| DirectoryError::Misconfigured {
            url: self.config.url.clone(),
            why,
        };
        let dn = match &self.config.user {
            UserLookup::Template(t) => t.replace("{user}", &dn_escape(user)),
            UserLookup::Search {
                bind_dn,
                base,
                filter,
                ..
            } => {
                let pw = self.bind_password.as_deref().unwrap_or("");
                ldap.simple_bind(bind_dn, pw)
                    .await
                    .map_err(|e| self.lost(e))?
                    .success()
                    .map_err(|e| {
                        misconfigured(format!("the service account {bind_dn} cannot bind: {e}"))
                    })?;
                let filter = filter.replace("{user}", &ldap_escape(user));
                let (found, _) = ldap
                    .with_timeout(self.config.timeout)
                    .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
                    .search(base, Scope::Subtree, &filter, vec!["1.1"])
                    .await
                    .map_err(|e| self.lost(e))?
                    .success()
                    .map_err(|e| misconfigured(format!("searching {base} for {filter}: {e}")))?;
                match found.len() {
                    0 => return Err(DirectoryError::BadCredentials),
                    1 => SearchEntry::construct(found.into_iter().next().expect("one")).dn,
                    n => {
                        return Err(misconfigured(format!(
                            "{filter} finds {n} entries under {base}; it must find one"
                        )))
                    }
                }
            }
        };
        let bound = ldap
            .with_timeout(self.config.timeout)
            .simple_bind(&dn, password)
            .await
            .map_err(|e| self.lost(e))?;
        match bound.rc {
            0 => {}
            // invalidCredentials; AD also says it for unknown and disabled users.
            49 => return Err(DirectoryError::BadCredentials),
            // unwillingToPerform, inappropriateAuthentication, noSuchObject...
            32 | 48 | 53 => return Err(DirectoryError::BadCredentials),
            rc => {
                return Err(misconfigured(format!(
                    "binding as {dn}: result {rc} {}",
                    bound.text
                )))
            }
        }
        let filter = self.config.group_filter.replace("{dn}", &ldap_escape(&dn));
        let ldap3::SearchResult(groups, result) = ldap
            .with_timeout(self.config.timeout)
            .with_search_options(ldap3::SearchOptions::new().sizelimit(MAX_GROUPS))
            .search(
                &self.config.group_base,
                Scope::Subtree,
                &filter,
                vec!["1.1"],
            )
            .await
            .map_err(|e| self.lost(e))?;
        // sizeLimitExceeded (4): the server's own limit may be below ours; the groups it sent
        // are read, the highest role among them wins.
        if !matches!(result.rc, 0 | 4) {
            return Err(misconfigured(format!(
                "searching {} for {filter}: result {} {}",
                self.config.group_base, result.rc, result.text
            )));
        }
        let _ = ldap.unbind().await;
        let groups: Vec<String> = groups
            .into_iter()
            .map(|g| SearchEntry::construct(g).dn)
            .collect();
        let Some((role, group)) = role_of(&self.config, &groups) else {
            return Err(DirectoryError::NoRole {
                dn,
                mapped: self.mapped_groups(),
            });
        };
        let plants = self
            .config
            .plants
            .of(&groups, |a, b| normal_dn(a) == normal_dn(b))
            .map_err(|()| DirectoryError::NoPlants { dn: dn.clone() })?;
        Ok(DirectoryUser {
            dn,
            role,
            group,
            plants,
        })
    }

    async fn connect(&self) -> Result<(LdapConnAsync, ldap3::Ldap), DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout)
            .set_starttls(self.config.starttls)
            .set_config(self.tls.clone());
        LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| self.unreachable(e.to_string()))
    }

    fn unreachable(&self, why: String) -> DirectoryError {
        DirectoryError::Unreachable {
            url: self.config.url.clone(),
            why,
        }
    }

    /// An error of the connection (not an LDAP result): it went away or timed out.
    fn lost(&self, e: ldap3::LdapError) -> DirectoryError {
        match e {
            ldap3::LdapError::LdapResult { result } => DirectoryError::Misconfigured {
                url: self.config.url.clone(),
                why: result.to_string(),
            },
            e => self.unreachable(e.to_string()),
        }
    }

    fn mapped_groups(&self) -> String {
        let c = &self.config;
        [&c.admin, &c.operator, &c.viewer]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn note(&self, reachable: bool, detail: Option<String>) {
        *self.reach.lock().expect("not poisoned") =
            Some(Reach::new("ldap", &self.config.url, reachable, detail));
    }

    /// What is known of the directory's reach; starts a probe in the background when that is
    /// older than [`PROBE_EVERY`] (one at a time, whoever asks).
    pub fn reach(self: &Arc<Self>) -> Option<Reach> {
        let known = self.reach.lock().expect("not poisoned").clone();
        let stale = known.as_ref().is_none_or(Reach::stale);
        if stale && !self.probing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                me.probe().await;
                me.probing.store(false, Ordering::Release);
            });
        }
        known
    }

    /// Connects (and starts TLS) without binding.
    pub async fn probe(&self) {
        let all = self.config.timeout * 2;
        match tokio::time::timeout(all, self.connect()).await {
            Ok(Ok((conn, mut ldap))) => {
                ldap3::drive!(conn);
                let _ = ldap.unbind().await;
                self.note(true, None);
            }
            Ok(Err(DirectoryError::Unreachable { why, .. })) => self.note(false, Some(why)),
            Ok(Err(e)) => self.note(false, Some(e.to_string())),
            Err(_) => self.note(false, Some(format!("no answer within {all:?}"))),
        }
    }
}

/// A DN as compared: without case, and without spaces around its separators.
fn normal_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// The highest role the groups give, and the group that gives it.
fn role_of(config: &LdapConfig, groups: &[String]) -> Option<(Role, String)> {
    let member: Vec<(String, &String)> = groups.iter().map(|g| (normal_dn(g), g)).collect();
    [
        (Role::Admin, &config.admin),
        (Role::Operator, &config.operator),
        (Role::Viewer, &config.viewer),
    ]
    .into_iter()
    .find_map(|(role, mapped)| {
        mapped.iter().find_map(|m| {
            let m = normal_dn(m);
            member
                .iter()
                .find(|(g, _)| *g == m)
                .map(|(_, g)| (role, (*g).clone()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LdapConfig {
        LdapConfig {
            url: "ldap://127.0.0.1:1".into(),
            starttls: true,
            ca_file: None,
            user: UserLookup::Template("uid={user},dc=x".into()),
            group_base: "dc=x".into(),
            group_filter: "(member={dn})".into(),
            timeout: Duration::from_secs(1),
            admin: vec!["cn=IT, ou=Groups,dc=x".into()],
            operator: vec!["cn=ops,ou=groups,dc=x".into()],
            viewer: vec!["cn=staff,ou=groups,dc=x".into()],
            plants: Default::default(),
        }
    }

    #[test]
    fn the_highest_mapped_group_gives_the_role_whatever_its_case_and_spaces() {
        let c = config();
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            role_of(
                &c,
                &groups(&["cn=staff,ou=groups,dc=x", "CN=Ops,OU=Groups,DC=x"])
            ),
            Some((Role::Operator, "CN=Ops,OU=Groups,DC=x".into()))
        );
        assert_eq!(
            role_of(
                &c,
                &groups(&["cn=it,ou=groups,dc=x", "cn=staff,ou=groups,dc=x"])
            )
            .map(|r| r.0),
            Some(Role::Admin)
        );
        assert_eq!(role_of(&c, &groups(&["cn=cafeteria,ou=groups,dc=x"])), None);
        assert_eq!(role_of(&c, &[]), None);
    }

    #[test]
    fn a_name_is_one_name_whatever_its_case_and_spaces_and_odd_ones_are_refused() {
        assert_eq!(
            canonical_name("  Ada.Lopez@Corp "),
            Some("ada.lopez@corp".into())
        );
        for odd in [
            "",
            "  ",
            "ada lopez",
            "ada\0",
            "uid=ada,dc=x",
            "ada*",
            "(ada)",
            &"a".repeat(65),
        ] {
            assert_eq!(canonical_name(odd), None, "{odd:?}");
        }
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // Port 1 on loopback answers nothing: a bind there would say unreachable.
        let d = Directory::new(config()).unwrap();
        assert!(matches!(
            d.sign_in("ana", "").await,
            Err(DirectoryError::BadCredentials)
        ));
        assert!(matches!(
            d.sign_in("ana", "x").await,
            Err(DirectoryError::Unreachable { .. })
        ));
    }
}
