//! What a diagnostics bundle must not carry, and how it is taken out: every secret the plant
//! knows, in each form it can take in the bundle (as written, escaped as Rust's `Debug` writes
//! it, escaped as JSON), and the user, password and query of every URL.
//!
//! The config section is not the config's `Debug`: it is the `Debug` of a copy whose secret
//! fields were replaced first (the stack's environment values, the URLs' user, password and
//! query), so that no escaping can hide a secret from the replacement that follows.
//!
//! Secrets the plant is sure of (generated passwords, key files, the setup code, URL passwords,
//! values of variables and options named like a secret) are replaced at any length: from 6
//! characters wherever they occur, shorter ones where they stand alone (not inside a longer
//! word or number). Values that may not be secrets at all (other environment variables and
//! options, such as `TZ=UTC`) are replaced from 6 characters on, so that a `1` or a `UTC`
//! does not turn the whole bundle into stars.

use serde_json::Value;

use crate::config::PlantConfig;

/// From this length a secret is replaced wherever it occurs; shorter ones where they stand
/// alone; values that may not be secrets are left shorter than this.
const MIN_ANYWHERE: usize = 6;

/// What stands in for a secret.
const MASK: &str = "***";

/// The secrets to take out of a bundle, in every form, longest first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Secrets {
    forms: Vec<String>,
}

impl Secrets {
    /// Adds `secret` (trimmed) in every form it can take: as written, `Debug`-escaped and
    /// JSON-escaped. `sure`: it is certainly a secret, so it is replaced at any length.
    pub fn add(&mut self, secret: &str, sure: bool) {
        let secret = secret.trim();
        if secret.is_empty() || (!sure && secret.len() < MIN_ANYWHERE) {
            return;
        }
        let debug = format!("{secret:?}");
        let json = serde_json::to_string(secret).expect("a string is JSON");
        for form in [secret, &debug[1..debug.len() - 1], &json[1..json.len() - 1]] {
            if !self.forms.iter().any(|f| f == form) {
                self.forms.push(form.to_string());
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        self.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// The user, password and query of `url` (as written and percent-decoded).
    pub fn add_url(&mut self, url: &str) {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return;
        };
        let mut parts = vec![parsed.username().to_string()];
        parts.extend(parsed.password().map(str::to_string));
        parts.extend(parsed.query().map(str::to_string));
        parts.extend(parsed.query_pairs().map(|(_, v)| v.into_owned()));
        for part in parts {
            self.add(&part, true);
            if let Ok(decoded) = percent_decode(&part) {
                self.add(&decoded, true);
            }
        }
    }

    /// `s` with every form of every secret replaced by `***`.
    pub fn mask(&self, s: &str) -> String {
        let mut s = mask_urls(s);
        for form in &self.forms {
            if !s.contains(form.as_str()) {
                continue;
            }
            s = if form.len() >= MIN_ANYWHERE {
                s.replace(form.as_str(), MASK)
            } else {
                replace_standing_alone(&s, form)
            };
        }
        s
    }
}

/// Percent-decoding of a URL part (`%40` is `@`).
fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).expect("checked") * 16 + hex(l).expect("checked")) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// `s` with `secret` replaced where it stands alone: not preceded or followed by a letter or
/// digit.
fn replace_standing_alone(s: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(secret) {
        let before = match at {
            0 => out.chars().last(),
            _ => rest[..at].chars().last(),
        };
        let after = rest[at + secret.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(secret);
        } else {
            out.push_str(MASK);
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

/// `text` with the user and password (`scheme://USER:PASSWORD@host`) and the query (`?...`)
/// of every URL in it replaced by `***`.
pub fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The URL runs to the first character no URL holds unescaped.
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"'<>`\\{}|^".contains(c))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(q) => {
                out.push_str(&path[..=q]);
                let fragment = path[q..].find('#').map(|f| &path[q + f..]).unwrap_or("");
                out.push_str(MASK);
                out.push_str(fragment);
            }
            None => out.push_str(path),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A URL as the config section shows it: its user, password and query replaced.
fn masked_url(url: &str) -> String {
    mask_urls(url)
}

/// Whether a variable or option of this name holds a secret by its name.
fn named_like_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass", "pwd", "secret", "token", "key", "auth", "cred", "private", "salt",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// The config section of a bundle: the config's `Debug`, from a copy whose secret fields were
/// replaced (environment values, the URLs' user, password and query).
pub fn config_section(config: &PlantConfig) -> String {
    let mut c = config.clone();
    if let Some(stack) = &mut c.stack {
        for service in [&mut stack.postgres, &mut stack.redis, &mut stack.odoo] {
            for value in service.env.values_mut() {
                *value = MASK.to_string();
            }
        }
    }
    if let Some(url) = &mut c.odoo.url {
        *url = masked_url(url);
    }
    for hook in &mut c.alerts.webhooks {
        if !hook.url.username().is_empty() {
            let _ = hook.url.set_username(MASK);
        }
        if hook.url.password().is_some() {
            let _ = hook.url.set_password(Some(MASK));
        }
        if hook.url.query().is_some() {
            hook.url.set_query(Some(MASK));
        }
    }
    format!("{c:#?}")
}

/// Every secret this plant knows, as it could occur in a bundle (reads the files that hold
/// them; blocking).
pub fn secrets(config: &PlantConfig) -> Secrets {
    let data_dir = &config.data_dir;
    let mut found = Secrets::default();
    // The stack's generated passwords.
    let secrets_json = crate::stack::spec::stack_dir(data_dir).join("secrets.json");
    if let Ok(text) = std::fs::read_to_string(&secrets_json) {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            walk_strings(&v, &mut |s| found.add(s, true));
        }
    }
    for file in [
        data_dir.join("admin-setup-code"),
        data_dir.join("backup-identity.txt"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                found.add(line, true);
            }
        }
    }
    let mut files: Vec<&std::path::Path> = Vec::new();
    files.extend(config.odoo.key_file.as_deref());
    files.extend(
        config
            .alerts
            .webhooks
            .iter()
            .map(|w| w.secret_file.as_path()),
    );
    if let Some(email) = &config.alerts.email {
        files.extend(email.user.as_ref().map(|(_, file)| file.as_path()));
    }
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            found.add(&text, true);
        }
    }
    if let Some(url) = &config.odoo.url {
        found.add_url(url);
    }
    for hook in &config.alerts.webhooks {
        found.add_url(hook.url.as_str());
    }
    if let Some(stack) = &config.stack {
        for service in [&stack.postgres, &stack.redis, &stack.odoo] {
            for (name, value) in &service.env {
                found.add(value, named_like_a_secret(name));
            }
        }
        for (name, option) in &stack.odoo_options {
            match option {
                crate::config::OdooOption::Text(t) => found.add(t, named_like_a_secret(name)),
                crate::config::OdooOption::File {
                    secret: Some(s), ..
                } => found.add(s, true),
                crate::config::OdooOption::File { .. } => {}
            }
        }
    }
    found
}

fn walk_strings(v: &Value, add: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => add(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, add)),
        Value::Object(m) => m.values().for_each(|x| walk_strings(x, add)),
        _ => {}
    }
}

/// `bundle` with every secret and every URL's user, password and query replaced by `***`, in
/// any string of it (keys too), its shape kept.
pub fn redact(bundle: Value, secrets: &Secrets) -> Value {
    match bundle {
        Value::String(s) => Value::String(secrets.mask(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| redact(x, secrets)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (secrets.mask(&k), redact(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(list: &[(&str, bool)]) -> Secrets {
        let mut s = Secrets::default();
        for (secret, sure) in list {
            s.add(secret, *sure);
        }
        s
    }

    #[test]
    fn redaction_replaces_every_occurrence_in_every_string_and_keeps_the_shape() {
        let bundle = json!({
            "config": "env: {\"SMTP_PASSWORD\": \"hunter2-smtp\"}",
            "logs": {"odoo": ["connecting with hunter2-smtp and pw-of-postgres", "fine"]},
            "n": 3,
        });
        let out = redact(
            bundle,
            &with(&[("pw-of-postgres", true), ("hunter2-smtp", false)]),
        );
        let text = out.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("pw-of-postgres"),
            "{text}"
        );
        assert_eq!(out["logs"]["odoo"][0], "connecting with *** and ***");
        assert_eq!(out["n"], 3);
    }

    #[test]
    fn escaped_forms_of_a_secret_are_replaced_too() {
        let secret = r#"q"uo\te-secret"#;
        let s = with(&[(secret, true)]);
        let debug = format!(
            "{:#?}",
            std::collections::BTreeMap::from([("MAIL", secret)])
        );
        assert!(debug.contains(r#"q\"uo\\te-secret"#), "{debug}");
        let json_text = json!({ "token": secret }).to_string();
        for text in [secret.to_string(), debug, json_text] {
            let masked = s.mask(&text);
            assert!(
                !masked.contains("uo") && !masked.contains("te-secret"),
                "{text} gave {masked}"
            );
        }
    }

    #[test]
    fn short_secrets_are_replaced_where_they_stand_alone_and_unsure_ones_are_left() {
        let s = with(&[("pw9", true), ("UTC", false), ("1", false)]);
        assert_eq!(
            s.mask("login pw9 ok; user:pw9@db; pw99 and xpw9 stay; TZ=UTC, 1 worker"),
            "login *** ok; user:***@db; pw99 and xpw9 stay; TZ=UTC, 1 worker"
        );
        assert_eq!(s.mask("pw9"), "***");
    }

    #[test]
    fn urls_lose_their_user_password_and_query_wherever_they_are() {
        for (text, want) in [
            (
                "GET https://ana:s3cret@odoo.example.com:8069/web?token=abc#top failed",
                "GET https://***@odoo.example.com:8069/web?***#top failed",
            ),
            (
                "dsn postgres://odoo:pw@db:5432, retrying",
                "dsn postgres://***@db:5432, retrying",
            ),
            (
                r#"url: Some("http://10.0.0.5:8069/hook?sig=x&k=y")"#,
                r#"url: Some("http://10.0.0.5:8069/hook?***")"#,
            ),
            (
                "plain http://odoo:8069/web stays",
                "plain http://odoo:8069/web stays",
            ),
            ("no url here", "no url here"),
        ] {
            assert_eq!(mask_urls(text), want, "{text}");
        }
        let mut s = Secrets::default();
        s.add_url("https://hook-user:p%40ss-word@alerts.example/h?sig=query-secret-55");
        let masked = s.mask("the key p@ss-word, the sig query-secret-55, user hook-user");
        assert_eq!(masked, "the key ***, the sig ***, user ***");
    }

    #[test]
    fn the_config_section_has_no_env_value_and_no_url_secret() {
        let text = "[odoo]\nurl = \"https://apiuser:url-pass-93@odoo.example/?token=qs-secret-41\"\n[stack]\n[stack.odoo.env]\nMAIL_TOKEN = 'q\"uo\\te-secret-7'\nTZ = \"Europe/Paris\"\n";
        let mut config = PlantConfig::parse("plant.toml", text).expect("valid");
        config.data_dir = "/nonexistent/plantd-mask-test".into();
        let section = config_section(&config);
        for secret in [
            "url-pass-93",
            "qs-secret-41",
            "apiuser",
            "uo\\",
            "Europe/Paris",
        ] {
            assert!(!section.contains(secret), "{secret} in {section}");
        }
        assert!(section.contains("odoo.example"), "{section}");
        assert!(section.contains("MAIL_TOKEN"), "{section}");
        let found = secrets(&config);
        let masked = found.mask("sent q\"uo\\te-secret-7 with url-pass-93");
        assert_eq!(masked, "sent *** with ***");
    }

    #[test]
    fn names_that_say_secret() {
        for name in [
            "SMTP_PASSWORD",
            "api_key",
            "GITHUB_TOKEN",
            "db_passwd",
            "Secret",
        ] {
            assert!(named_like_a_secret(name), "{name}");
        }
        for name in ["TZ", "PGDATA", "workers", "LANG"] {
            assert!(!named_like_a_secret(name), "{name}");
        }
    }
}
