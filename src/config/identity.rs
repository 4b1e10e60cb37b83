//! The `[identity]` section of `plant.toml` and `hub.toml`: the company directory that people
//! sign in through, besides the local users (who stay the break-glass way in).
//!
//! ```toml
//! [identity]
//! require_totp_for_admins = true       # local admins need a second factor (default false)
//!
//! [identity.ldap]
//! url = "ldap://dc1.corp.example"      # StartTLS, always; or "ldaps://dc1.corp.example"
//! ca_file = "/etc/plantd/ldap-ca.pem"  # the directory's CA; default: the system's CAs
//! # Either bind straight as the user's DN:
//! user_dn = "uid={user},ou=people,dc=corp,dc=example"
//! # or find it with a service account (Active Directory):
//! # bind_dn = "cn=plantd,ou=services,dc=corp,dc=example"
//! # bind_password_file = "/etc/plantd/ldap-bind.password"
//! # user_base = "dc=corp,dc=example"
//! # user_filter = "(sAMAccountName={user})"
//! group_base = "ou=groups,dc=corp,dc=example"
//! group_filter = "(member={dn})"       # the default
//! timeout = "5s"                       # each step: connect, TLS, bind, search
//!
//! [identity.ldap.roles]                # groups (DNs) → role; the highest one wins
//! admin = ["cn=plant-it,ou=groups,dc=corp,dc=example"]
//! operator = ["cn=shift-leads,ou=groups,dc=corp,dc=example"]
//! viewer = ["cn=plant-staff,ou=groups,dc=corp,dc=example"]
//! ```
//!
//! Plain LDAP without TLS is refused: a password would cross the network in clear.
//!
//! ```toml
//! [identity.oidc]                      # OpenID Connect: the sign-in page offers the provider
//! issuer = "https://login.corp.example/realms/plants"   # discovery: ISSUER/.well-known/openid-configuration
//! client_id = "plantd-lyon"
//! client_secret_file = "/etc/plantd/oidc-client.secret"
//! redirect_url = "https://plant-lyon.corp.example:8443/auth/oidc/callback"  # as browsers reach this server
//! display_name = "Corp sign-in"        # the button says "Sign in with Corp sign-in"
//! scopes = ["profile", "email"]        # asked besides "openid" (default: these two)
//! groups_claim = "groups"              # the ID token's claim listing the user's groups (default)
//! ca_file = "/etc/plantd/idp-ca.pem"   # the provider's CA; default: the system's CAs
//! timeout = "5s"                       # each request to the provider
//! keys_refresh = "5m"                  # the provider's keys are fetched again when this old
//! clock_skew = "60s"                   # how far the provider's clock may be from ours
//!
//! [identity.oidc.roles]                # groups (as the claim names them) → role; the highest wins
//! admin = ["plant-it"]
//! operator = ["shift-leads"]
//! viewer = ["plant-staff"]
//! ```
//!
//! The provider must be reached over HTTPS; the redirect URL must be this server's HTTPS
//! address with the path `/auth/oidc/callback`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::field::FieldError;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    ldap: Option<RawLdap>,
    oidc: Option<RawOidc>,
    require_totp_for_admins: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdap {
    url: String,
    ca_file: Option<PathBuf>,
    user_dn: Option<String>,
    bind_dn: Option<String>,
    bind_password_file: Option<PathBuf>,
    user_base: Option<String>,
    user_filter: Option<String>,
    group_base: String,
    group_filter: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    roles: RawRoles,
    #[serde(default)]
    plants: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret_file: PathBuf,
    redirect_url: String,
    display_name: Option<String>,
    scopes: Option<Vec<String>>,
    groups_claim: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
    keys_refresh: Option<String>,
    clock_skew: Option<String>,
    #[serde(default)]
    roles: RawRoles,
    #[serde(default)]
    plants: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoles {
    #[serde(default)]
    admin: Vec<String>,
    #[serde(default)]
    operator: Vec<String>,
    #[serde(default)]
    viewer: Vec<String>,
}

/// `[identity]`: where people sign in besides the local users.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityConfig {
    pub ldap: Option<LdapConfig>,
    pub oidc: Option<OidcConfig>,
    /// Local admins must sign in with a second factor (TOTP): one without it may only set
    /// it up (`require_totp_for_admins = true`; default false).
    pub require_totp_for_admins: bool,
}

/// How a user's DN is found.
#[derive(Debug, Clone, PartialEq)]
pub enum UserLookup {
    /// `user_dn`, with `{user}` replaced by the name typed (escaped for a DN).
    Template(String),
    /// Bound as a service account, `user_filter` (with `{user}`, escaped for a filter) is
    /// searched under `user_base`; it must find exactly one entry.
    Search {
        bind_dn: String,
        bind_password_file: PathBuf,
        base: String,
        filter: String,
    },
}

/// `[identity.ldap]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapConfig {
    /// As written: `ldap://host[:port]` (StartTLS) or `ldaps://host[:port]`.
    pub url: String,
    /// Whether TLS starts with StartTLS (`ldap://`) rather than at once (`ldaps://`).
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub user: UserLookup,
    pub group_base: String,
    /// With `{dn}`, the user's DN escaped for a filter.
    pub group_filter: String,
    pub timeout: Duration,
    /// Group DNs giving each role, as written (compared without case or spaces).
    pub admin: Vec<String>,
    pub operator: Vec<String>,
    pub viewer: Vec<String>,
    /// At the hub: the plants each group (DN) may see; see [`PlantScope`].
    pub plants: PlantScope,
}

/// `[identity.oidc]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// As written (its exact string is compared with the tokens' `iss`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    pub redirect_url: String,
    /// What the sign-in page's button names.
    pub display_name: String,
    /// Asked for besides `openid`.
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub keys_refresh: Duration,
    pub clock_skew: Duration,
    /// Groups giving each role, as the claim names them (compared exactly).
    pub admin: Vec<String>,
    pub operator: Vec<String>,
    pub viewer: Vec<String>,
    /// At the hub: the plants each group may see; see [`PlantScope`].
    pub plants: PlantScope,
}

/// `[identity.oidc.plants]` or `[identity.ldap.plants]`, read at the hub: which plants each
/// group's members see and act on, on the fleet page and its API. Empty (the default): every
/// plant. Else a user sees the plants of all their groups listed here (`"*"`: every plant), and
/// one in none of them is refused at sign-in: leaving a group never widens what someone sees.
/// Local users (the break-glass admins) see every plant.
///
/// ```toml
/// [identity.oidc.plants]
/// "lyon-managers" = ["lyon"]
/// "north-region" = ["lille", "roubaix"]
/// "platform-team" = ["*"]
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlantScope(pub Vec<(String, Vec<String>)>);

impl PlantScope {
    fn from_raw(
        section: &str,
        raw: std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<PlantScope, FieldError> {
        for (group, plants) in &raw {
            let field = format!("identity.{section}.plants.{group:?}");
            if plants.is_empty() {
                return Err(FieldError::new(
                    field,
                    "lists no plant; name the plants its members see, or \"*\" for every plant",
                ));
            }
            let plant_name = |p: &str| {
                (1..=64).contains(&p.len())
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            };
            if let Some(bad) = plants.iter().find(|p| p.as_str() != "*" && !plant_name(p)) {
                return Err(FieldError::new(
                    field,
                    format!("{bad:?} is not a plant's name (1 to 64 letters, digits, '.', '_' or '-') or \"*\""),
                ));
            }
        }
        Ok(PlantScope(raw.into_iter().collect()))
    }

    /// The plants a member of `groups` sees: `Ok(None)` for every plant, `Ok(Some(names))`
    /// for those, `Err(())` when no group of theirs is listed (and some are). `same` compares
    /// a listed group with one of the user's.
    #[allow(clippy::result_unit_err)]
    pub fn of(
        &self,
        groups: &[String],
        same: impl Fn(&str, &str) -> bool,
    ) -> Result<Option<Vec<String>>, ()> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut member = false;
        for (group, plants) in &self.0 {
            if groups.iter().any(|g| same(group, g)) {
                member = true;
                if plants.iter().any(|p| p == "*") {
                    return Ok(None);
                }
                seen.extend(plants.iter().cloned());
            }
        }
        if member {
            Ok(Some(seen.into_iter().collect()))
        } else {
            Err(())
        }
    }
}

/// The path of the OIDC redirect, served by the plant's admin UI and the hub's fleet page.
pub const OIDC_CALLBACK: &str = "/auth/oidc/callback";

/// A duration field within `range`, or `default` when absent.
fn duration(
    value: Option<&str>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
    err: impl Fn(String) -> FieldError,
) -> Result<Duration, FieldError> {
    match value {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| range.contains(d))
            .ok_or_else(|| {
                err(format!(
                    "{t:?} is not a duration from {} to {}, such as \"{}\"",
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end()),
                    humantime::format_duration(default)
                ))
            }),
    }
}

impl IdentityConfig {
    pub(crate) fn from_raw(raw: RawIdentity) -> Result<IdentityConfig, FieldError> {
        Ok(IdentityConfig {
            ldap: raw.ldap.map(LdapConfig::from_raw).transpose()?,
            oidc: raw.oidc.map(OidcConfig::from_raw).transpose()?,
            require_totp_for_admins: raw.require_totp_for_admins.unwrap_or(false),
        })
    }
}

impl LdapConfig {
    fn from_raw(raw: RawLdap) -> Result<LdapConfig, FieldError> {
        let err = |field: &str, m: String| FieldError::new(format!("identity.ldap.{field}"), m);
        let url = url::Url::parse(&raw.url).map_err(|e| {
            err(
                "url",
                format!(
                    "{:?} is not a URL ({e}); write \"ldap://dc1.corp.example\" (StartTLS) or \"ldaps://dc1.corp.example\"",
                    raw.url
                ),
            )
        })?;
        let starttls = match url.scheme() {
            "ldap" => true,
            "ldaps" => false,
            other => {
                return Err(err(
                    "url",
                    format!("scheme {other:?}: use ldap:// (with StartTLS, always) or ldaps://"),
                ))
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err("url", format!("{:?} names no host", raw.url)));
        }
        if url.path().len() > 1 || url.query().is_some() {
            return Err(err(
                "url",
                format!(
                    "{:?}: only the scheme, host and port are read; put the base DNs in user_base and group_base",
                    raw.url
                ),
            ));
        }
        let need = |field: &str, v: &Option<String>| -> Result<String, FieldError> {
            v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                err(field, "missing; a search with a service account needs bind_dn, bind_password_file, user_base and user_filter".into())
            })
        };
        let user = match (&raw.user_dn, &raw.bind_dn) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "user_dn",
                    "set either user_dn (bind as the user's DN) or bind_dn with user_base and user_filter (search for it), not both".into(),
                ))
            }
            (Some(t), None) => {
                if !t.contains("{user}") {
                    return Err(err(
                        "user_dn",
                        format!("{t:?} has no {{user}}: write where the name goes, such as \"uid={{user}},ou=people,dc=corp,dc=example\""),
                    ));
                }
                UserLookup::Template(t.clone())
            }
            (None, Some(_)) => {
                let filter = need("user_filter", &raw.user_filter)?;
                if !filter.contains("{user}") {
                    return Err(err(
                        "user_filter",
                        format!("{filter:?} has no {{user}}, such as \"(sAMAccountName={{user}})\""),
                    ));
                }
                UserLookup::Search {
                    bind_dn: need("bind_dn", &raw.bind_dn)?,
                    bind_password_file: raw.bind_password_file.clone().ok_or_else(|| {
                        err(
                            "bind_password_file",
                            "missing; a file holding the service account's password".into(),
                        )
                    })?,
                    base: need("user_base", &raw.user_base)?,
                    filter,
                }
            }
            (None, None) => {
                return Err(err(
                    "user_dn",
                    "missing; set user_dn (such as \"uid={user},ou=people,dc=corp,dc=example\"), or bind_dn, bind_password_file, user_base and user_filter to search for the user".into(),
                ))
            }
        };
        let group_filter = raw
            .group_filter
            .clone()
            .unwrap_or_else(|| "(member={dn})".into());
        if !group_filter.contains("{dn}") {
            return Err(err(
                "group_filter",
                format!("{group_filter:?} has no {{dn}}, such as \"(member={{dn}})\""),
            ));
        }
        let timeout = duration(
            raw.timeout.as_deref(),
            Duration::from_secs(5),
            Duration::from_millis(100)..=Duration::from_secs(60),
            |m| err("timeout", m),
        )?;
        let roles = raw.roles;
        if roles.admin.is_empty() && roles.operator.is_empty() && roles.viewer.is_empty() {
            return Err(err(
                "roles",
                "maps no group to a role, so nobody could sign in through LDAP; add admin, operator or viewer = [\"cn=...\"]".into(),
            ));
        }
        for (role, groups) in [
            ("admin", &roles.admin),
            ("operator", &roles.operator),
            ("viewer", &roles.viewer),
        ] {
            if let Some(g) = groups.iter().find(|g| !g.contains('=')) {
                return Err(err(
                    &format!("roles.{role}"),
                    format!("{g:?} is not a group's DN, such as \"cn=plant-it,ou=groups,dc=corp,dc=example\""),
                ));
            }
        }
        Ok(LdapConfig {
            url: raw.url,
            starttls,
            ca_file: raw.ca_file,
            user,
            group_base: raw.group_base,
            group_filter,
            timeout,
            admin: roles.admin,
            operator: roles.operator,
            viewer: roles.viewer,
            plants: PlantScope::from_raw("ldap", raw.plants)?,
        })
    }
}

impl OidcConfig {
    fn from_raw(raw: RawOidc) -> Result<OidcConfig, FieldError> {
        let err = |field: &str, m: String| FieldError::new(format!("identity.oidc.{field}"), m);
        let https = |field: &str, value: &str| -> Result<url::Url, FieldError> {
            let u = url::Url::parse(value)
                .map_err(|e| err(field, format!("{value:?} is not a URL ({e})")))?;
            if u.scheme() != "https" || u.host_str().is_none_or(str::is_empty) {
                return Err(err(
                    field,
                    format!("{value:?}: only https:// with a host is taken (tokens and codes must not cross the network in clear)"),
                ));
            }
            Ok(u)
        };
        https("issuer", &raw.issuer)?;
        let redirect = https("redirect_url", &raw.redirect_url)?;
        if redirect.path() != OIDC_CALLBACK || redirect.query().is_some() {
            return Err(err(
                "redirect_url",
                format!(
                    "{:?}: the path must be {OIDC_CALLBACK} (where this server takes the provider's answer), with no query, such as \"https://plant-lyon.corp.example:8443{OIDC_CALLBACK}\"",
                    raw.redirect_url
                ),
            ));
        }
        if raw.client_id.trim().is_empty() {
            return Err(err(
                "client_id",
                "is empty; the provider's id of this server".into(),
            ));
        }
        let mut scopes = raw
            .scopes
            .unwrap_or_else(|| vec!["profile".into(), "email".into()]);
        if let Some(bad) = scopes.iter().find(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        }) {
            return Err(err("scopes", format!("{bad:?} is not a scope")));
        }
        scopes.retain(|s| s != "openid");
        let groups_claim = raw.groups_claim.unwrap_or_else(|| "groups".into());
        if groups_claim.trim().is_empty() {
            return Err(err("groups_claim", "is empty".into()));
        }
        let roles = raw.roles;
        if roles.admin.is_empty() && roles.operator.is_empty() && roles.viewer.is_empty() {
            return Err(err(
                "roles",
                "maps no group to a role, so nobody could sign in through OIDC; add admin, operator or viewer = [\"group\"]".into(),
            ));
        }
        Ok(OidcConfig {
            timeout: duration(
                raw.timeout.as_deref(),
                Duration::from_secs(5),
                Duration::from_millis(100)..=Duration::from_secs(60),
                |m| err("timeout", m),
            )?,
            keys_refresh: duration(
                raw.keys_refresh.as_deref(),
                Duration::from_secs(300),
                Duration::from_secs(1)..=Duration::from_secs(86_400),
                |m| err("keys_refresh", m),
            )?,
            clock_skew: duration(
                raw.clock_skew.as_deref(),
                Duration::from_secs(60),
                Duration::ZERO..=Duration::from_secs(600),
                |m| err("clock_skew", m),
            )?,
            issuer: raw.issuer,
            client_id: raw.client_id,
            client_secret_file: raw.client_secret_file,
            redirect_url: raw.redirect_url,
            display_name: raw
                .display_name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "your company account".into()),
            scopes,
            groups_claim,
            ca_file: raw.ca_file,
            admin: roles.admin,
            operator: roles.operator,
            viewer: roles.viewer,
            plants: PlantScope::from_raw("oidc", raw.plants)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IdentityConfig, FieldError> {
        let raw: RawIdentity =
            toml::from_str(text).map_err(|e| FieldError::new("?", e.to_string()))?;
        IdentityConfig::from_raw(raw)
    }

    const GOOD: &str = r#"
[ldap]
url = "ldap://127.0.0.1:3899"
user_dn = "uid={user},ou=people,dc=plant,dc=test"
group_base = "ou=groups,dc=plant,dc=test"
[ldap.roles]
operator = ["cn=ops,ou=groups,dc=plant,dc=test"]
"#;

    #[test]
    fn a_directory_is_read_with_its_defaults() {
        let c = parse(GOOD).unwrap().ldap.unwrap();
        assert!(c.starttls);
        assert_eq!(c.group_filter, "(member={dn})");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(
            c.user,
            UserLookup::Template("uid={user},ou=people,dc=plant,dc=test".into())
        );
        assert!(parse("").unwrap().ldap.is_none());
    }

    #[test]
    fn what_would_leak_a_password_or_let_nobody_in_is_refused_with_its_field() {
        for (from, to, field) in [
            (
                "ldap://127.0.0.1:3899",
                "http://127.0.0.1",
                "identity.ldap.url",
            ),
            ("ldap://127.0.0.1:3899", "ldap:///dc=x", "identity.ldap.url"),
            (
                "ldap://127.0.0.1:3899",
                "ldap://h/dc=plant",
                "identity.ldap.url",
            ),
            ("uid={user},", "uid=nobody,", "identity.ldap.user_dn"),
            (
                "operator = [\"cn=ops,ou=groups,dc=plant,dc=test\"]",
                "",
                "identity.ldap.roles",
            ),
            (
                "operator = [\"cn=ops,ou=groups,dc=plant,dc=test\"]",
                "admin = [\"plant-it\"]",
                "identity.ldap.roles.admin",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        let both = GOOD.replace("group_base", "bind_dn = \"cn=svc\"\ngroup_base");
        assert_eq!(parse(&both).unwrap_err().field, "identity.ldap.user_dn");
        let search = GOOD.replace(
            "user_dn = \"uid={user},ou=people,dc=plant,dc=test\"",
            "bind_dn = \"cn=svc,dc=plant,dc=test\"\nbind_password_file = \"/etc/pw\"\nuser_base = \"dc=plant,dc=test\"",
        );
        assert_eq!(
            parse(&search).unwrap_err().field,
            "identity.ldap.user_filter"
        );
        let search = search.replace("user_base", "user_filter = \"(uid={user})\"\nuser_base");
        assert!(matches!(
            parse(&search).unwrap().ldap.unwrap().user,
            UserLookup::Search { .. }
        ));
    }

    const OIDC: &str = r#"
[oidc]
issuer = "https://127.0.0.1:4593/api/oidc"
client_id = "plantd"
client_secret_file = "/etc/plantd/oidc.secret"
redirect_url = "https://127.0.0.1:8443/auth/oidc/callback"
[oidc.roles]
admin = ["plant-it"]
"#;

    #[test]
    fn plant_scopes_union_their_groups_and_refuse_the_unlisted() {
        let c = parse(&format!(
            "{OIDC}[oidc.plants]\n\"lyon-managers\" = [\"lyon\"]\n\"north\" = [\"lille\", \"lyon\"]\n\"platform\" = [\"*\"]\n"
        ))
        .unwrap()
        .oidc
        .unwrap();
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let eq = |a: &str, b: &str| a == b;
        assert_eq!(
            c.plants.of(&g(&["lyon-managers"]), eq),
            Ok(Some(vec!["lyon".into()]))
        );
        assert_eq!(
            c.plants.of(&g(&["north", "lyon-managers", "x"]), eq),
            Ok(Some(vec!["lille".into(), "lyon".into()]))
        );
        assert_eq!(c.plants.of(&g(&["platform", "north"]), eq), Ok(None));
        assert_eq!(c.plants.of(&g(&["plant-it"]), eq), Err(()));
        assert_eq!(PlantScope::default().of(&g(&["x"]), eq), Ok(None));
        for bad in ["\"x\" = []", "\"x\" = [\"../etc\"]", "\"x\" = [\"\"]"] {
            let e = parse(&format!("{OIDC}[oidc.plants]\n{bad}\n")).unwrap_err();
            assert_eq!(e.field, "identity.oidc.plants.\"x\"", "{bad}: {e}");
        }
    }

    #[test]
    fn a_provider_is_read_with_its_defaults_and_what_would_leak_is_refused() {
        let c = parse(OIDC).unwrap().oidc.unwrap();
        assert_eq!(c.groups_claim, "groups");
        assert_eq!(c.scopes, ["profile", "email"]);
        assert_eq!(c.keys_refresh, Duration::from_secs(300));
        assert_eq!(c.clock_skew, Duration::from_secs(60));
        assert_eq!(c.display_name, "your company account");
        for (from, to, field) in [
            (
                "https://127.0.0.1:4593",
                "http://127.0.0.1:4593",
                "identity.oidc.issuer",
            ),
            (
                "https://127.0.0.1:8443/auth",
                "http://127.0.0.1:8443/auth",
                "identity.oidc.redirect_url",
            ),
            (
                "/auth/oidc/callback",
                "/callback",
                "identity.oidc.redirect_url",
            ),
            ("admin = [\"plant-it\"]", "", "identity.oidc.roles"),
            (
                "client_id = \"plantd\"",
                "client_id = \" \"",
                "identity.oidc.client_id",
            ),
            (
                "[oidc.roles]",
                "clock_skew = \"1h\"\n[oidc.roles]",
                "identity.oidc.clock_skew",
            ),
            (
                "[oidc.roles]",
                "keys_refresh = \"soon\"\n[oidc.roles]",
                "identity.oidc.keys_refresh",
            ),
        ] {
            let text = OIDC.replace(from, to);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }
}
