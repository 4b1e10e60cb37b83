//! A real OpenID Connect provider for the sign-in through `[identity.oidc]`: Debian's
//! glewlwyd 2.7, run in the foreground on 127.0.0.1 on a free port over HTTPS (a certificate
//! from a throwaway CA, [`Provider::ca_file`]), with its own configuration, SQLite database,
//! copy of its login web app and log in a temporary directory (never `/etc/glewlwyd`, its
//! system service or port 4593); killed on drop.
//!
//! It holds one confidential client, [`CLIENT_ID`] with [`CLIENT_SECRET`], for the redirect
//! URLs given to [`Provider::start`]; the people given, whose groups come out as the ID
//! token's `groups` claim (and their name as `preferred_username`); and two RSA signing keys,
//! `key-a` (signing and published at the start) and `key-b`, to turn the keys over
//! ([`Provider::rotate`]) or to sign with a key it does not publish ([`Provider::sign_unpublished`]).
//!
//! glewlwyd's password hash, its plugin parameters and the login page's ways were read from
//! its documentation and source (Debian's package); the schema is the package's own script.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::free_addr;
use crate::ldap::Person;

pub const GLEWLWYD: &str = "/usr/bin/glewlwyd";
const SCHEMA: &str = "/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3";
const WEBAPP: &str = "/usr/share/glewlwyd/webapp";
pub const CLIENT_ID: &str = "plantd";
pub const CLIENT_SECRET: &str = "plantd-client-secret-1";

/// A running glewlwyd; killed on drop.
pub struct Provider {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    /// The private JWKs of `key-a` and `key-b`.
    keys: [Value; 2],
}

impl Provider {
    /// Starts a provider knowing `people`, with the client allowed to come back to
    /// `redirects` and, after signing out, to `after_logout`.
    pub fn start(people: &[Person], redirects: &[String], after_logout: &[String]) -> Provider {
        assert!(
            Path::new(GLEWLWYD).exists(),
            "{GLEWLWYD} is missing: install Debian's glewlwyd (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_addr().port();
        std::fs::create_dir(d.join("tls")).unwrap();
        let (ca, cert, key) = crate::mail::certificates();
        std::fs::write(d.join("tls/ca.pem"), ca).unwrap();
        std::fs::write(d.join("tls/server.pem"), cert).unwrap();
        std::fs::write(d.join("tls/server.key"), key).unwrap();
        let keys = [rsa_jwk(d, "key-a"), rsa_jwk(d, "key-b")];
        // A copy of the login app (the package's config.json is a link to a directory, and
        // glewlwyd serves no file from outside its folder), with its own config.json.
        let web = d.join("webapp");
        let out = Command::new("cp")
            .arg("-rL")
            .arg(WEBAPP)
            .arg(&web)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "copying {WEBAPP}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(web.join("config.json"));
        let _ = std::fs::remove_file(web.join("config.json"));
        std::fs::write(
            web.join("config.json"),
            json!({"GlewlwydUrl": "./", "ProfileUrl": "profile.html", "AdminUrl": "index.html",
                "LoginUrl": "login.html", "CallbackPage": "callback.html", "PasswordMinLength": 8,
                "lang": ["en"], "defaultScheme": "", "sessionSchemes": [], "register": [],
                "register-complete": [], "providerMainstreamList": [], "pattern": {}})
            .to_string(),
        )
        .unwrap();
        std::fs::write(d.join("glewlwyd.conf"), config(d, port)).unwrap();
        let mut provider = Provider {
            dir,
            port,
            child: None,
            keys,
        };
        let db = rusqlite::Connection::open(provider.db()).unwrap();
        db.execute_batch(&std::fs::read_to_string(SCHEMA).unwrap())
            .unwrap();
        db.execute_batch(&seed(&provider, people, redirects, after_logout))
            .unwrap();
        drop(db);
        provider.restart();
        provider
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("glewlwyd.db")
    }

    /// `https://127.0.0.1:PORT`: its login page and API.
    pub fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The issuer, exactly as its tokens name it (discovery lives below it).
    pub fn issuer(&self) -> String {
        format!("{}/api/oidc", self.origin())
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Writes the client secret to a file (mode 0600) in `dir`, for `client_secret_file`.
    pub fn secret_file(&self, dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("oidc-client.secret");
        std::fs::write(&path, format!("{CLIENT_SECRET}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Stops the server (its port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) and waits until its discovery document answers.
    pub fn restart(&mut self) {
        self.stop();
        let d = self.dir.path();
        let child = Command::new(GLEWLWYD)
            .arg(format!(
                "--config-file={}",
                d.join("glewlwyd.conf").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("glewlwyd.stderr")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "glewlwyd exited with {status}: {}",
                    std::fs::read_to_string(d.join("glewlwyd.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "glewlwyd did not listen within 20 s: {}",
                std::fs::read_to_string(d.join("glewlwyd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// What a browser does, without one: plantd's start (its flow cookie), the provider's
    /// sign-in API and its authorization (with `g_continue`, the login page's "Continue"), and
    /// plantd's callback. Returns the callback's status, page and session cookie, and how long
    /// the round trip through the provider took.
    pub async fn sign_in_through(
        &self,
        server: &reqwest::Client,
        base: &str,
        user: &str,
        password: &str,
    ) -> (reqwest::StatusCode, String, Option<String>, Duration) {
        use reqwest::StatusCode;
        let idp = self;
        let cookie_of = |r: &reqwest::Response, name: &str| -> Option<String> {
            r.headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap().to_string())
                .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
        };
        let provider = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::harness::trusting(&idp.ca_file()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        // Signed in at the provider first: the round trip is what a user who is signed in there
        // waits for (the provider's own login page is the provider's time).
        let r = provider
            .post(format!("{}/api/auth/", idp.origin()))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{user} signs in at the provider"
        );
        let idp_session = cookie_of(&r, "GLEWLWYD2_SESSION_ID").expect("the provider's session");
        let started = Instant::now();
        let r = server
            .get(format!("{base}/auth/oidc/start"))
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::SEE_OTHER {
            let status = r.status();
            return (status, r.text().await.unwrap(), None, started.elapsed());
        }
        let flow = cookie_of(&r, "__Secure-plantd_oidc").expect("the flow cookie");
        let to_provider = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            to_provider.starts_with(&idp.origin())
                && to_provider.contains("code_challenge_method=S256")
                && to_provider.contains("nonce="),
            "{to_provider}"
        );
        let r = provider
            .get(format!("{to_provider}&g_continue"))
            .header("cookie", &idp_session)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FOUND,
            "the provider sends back a code"
        );
        let back = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            back.starts_with(&format!("{base}/auth/oidc/callback?")),
            "{back}"
        );
        let r = server
            .get(&back)
            .header("cookie", &flow)
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let status = r.status();
        let session = cookie_of(&r, "plantd_session");
        (status, r.text().await.unwrap(), session, elapsed)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("glewlwyd runs").id()
    }

    /// Turns the keys over as a provider does: `key-b` signs from now on and both are
    /// published; restarts the server.
    pub fn rotate(&mut self) {
        let private = json!({"keys": [self.keys[1], self.keys[0]]});
        self.set_keys(private, None);
    }

    /// Signs with `key-b` while publishing only `key-a`: what a relying party sees of a token
    /// signed with a key the provider has revoked (or never had); restarts the server.
    pub fn sign_unpublished(&mut self) {
        let private = json!({"keys": [self.keys[1]]});
        let public = json!({"keys": [public_of(&self.keys[0])]});
        self.set_keys(private, Some(public));
    }

    fn set_keys(&mut self, private: Value, public: Option<Value>) {
        let db = rusqlite::Connection::open(self.db()).unwrap();
        let text: String = db
            .query_row(
                "SELECT gpmi_parameters FROM g_plugin_module_instance WHERE gpmi_name = 'oidc'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut params: Value = serde_json::from_str(&text).unwrap();
        params["jwks-private"] = Value::String(private.to_string());
        match public {
            Some(p) => params["jwks-public"] = Value::String(p.to_string()),
            None => {
                params.as_object_mut().unwrap().remove("jwks-public");
            }
        }
        db.execute(
            "UPDATE g_plugin_module_instance SET gpmi_parameters = ?1 WHERE gpmi_name = 'oidc'",
            [params.to_string()],
        )
        .unwrap();
        drop(db);
        self.restart();
    }
}

/// A client of plantd (trusting `cert`, `localhost` being `addr`) that does not follow
/// redirects, as the flow needs.
pub fn no_redirects(cert: &Path, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::harness::trusting(cert))
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh RSA key (Debian's openssl) as a private JWK for RS256 with `kid`.
fn rsa_jwk(dir: &Path, kid: &str) -> Value {
    let pem = dir.join(format!("{kid}.pem"));
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .output()
        .expect("openssl runs (Debian's openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args(["pkey", "-text", "-noout", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // The text form: "modulus:" then indented hex lines, "publicExponent: 65537 (0x10001)".
    let mut fields = std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(name) = &current {
                fields
                    .entry(name.clone())
                    .or_insert_with(String::new)
                    .push_str(&line.trim().replace(':', ""));
            }
        } else if let Some((name, rest)) = line.split_once(':') {
            current = Some(name.trim().to_string());
            if let Some(hex) = rest.trim().split("(0x").nth(1) {
                let hex = hex.trim_end_matches(')');
                let hex = if hex.len() % 2 == 1 {
                    format!("0{hex}")
                } else {
                    hex.to_string()
                };
                fields.insert(name.trim().to_string(), hex);
                current = None;
            }
        }
    }
    let b64 = |name: &str| -> String {
        use base64::Engine;
        let hex = fields
            .get(name)
            .unwrap_or_else(|| panic!("openssl's key text has no {name}: {text}"));
        let mut bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        while bytes.len() > 1 && bytes[0] == 0 {
            bytes.remove(0);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64("modulus"), "e": b64("publicExponent"), "d": b64("privateExponent"),
        "p": b64("prime1"), "q": b64("prime2"), "dp": b64("exponent1"), "dq": b64("exponent2"),
        "qi": b64("coefficient")})
}

fn public_of(jwk: &Value) -> Value {
    let mut public = serde_json::Map::new();
    for k in ["kty", "kid", "alg", "use", "n", "e"] {
        public.insert(k.into(), jwk[k].clone());
    }
    Value::Object(public)
}

/// glewlwyd's stored password: base64 of PBKDF2-HMAC-SHA256 (1000 rounds, 32 bytes) and
/// the 16-character salt, then ",1000".
fn password_hash(password: &str) -> String {
    use base64::Engine;
    let salt: String = {
        let mut raw = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        raw.iter()
            .map(|b| alphabet[*b as usize % alphabet.len()] as char)
            .collect()
    };
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(1000).unwrap(),
        salt.as_bytes(),
        password.as_bytes(),
        &mut out,
    );
    let mut all = out.to_vec();
    all.extend_from_slice(salt.as_bytes());
    format!(
        "{},1000",
        base64::engine::general_purpose::STANDARD.encode(all)
    )
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn seed(p: &Provider, people: &[Person], redirects: &[String], after_logout: &[String]) -> String {
    let users = json!({"use-glewlwyd-connection": true, "pbkdf2-iterations": 1000,
        "data-format": {"groups": {"multiple": true, "read": true, "write": true,
            "profile-read": true, "profile-write": false}}});
    let clients = json!({"use-glewlwyd-connection": true, "data-format": {
        "redirect_uri": {"multiple": true, "read": true, "write": true},
        "authorization_type": {"multiple": true, "read": true, "write": true},
        "token_endpoint_auth_method": {"multiple": true, "read": true, "write": true},
        "client_secret": {"multiple": false, "read": true, "write": true},
        "post_logout_redirect_uris": {"multiple": true, "read": true, "write": true}}});
    let plugin = json!({
        "iss": p.issuer(),
        "jwks-private": json!({"keys": [p.keys[0]]}).to_string(),
        "default-kid": "key-a", "jwks-show": true,
        "access-token-duration": 3600, "refresh-token-duration": 1_209_600, "code-duration": 600,
        "refresh-token-rolling": true, "allow-non-oidc": false,
        "auth-type-code-enabled": true, "auth-type-code-revoke-replayed": true,
        "auth-type-token-enabled": false, "auth-type-none-enabled": false,
        "auth-type-password-enabled": false, "auth-type-client-enabled": false,
        "auth-type-device-enabled": false, "auth-type-refresh-enabled": true,
        "subject-type": "public", "pkce-allowed": true, "pkce-method-plain-allowed": false,
        "request-parameter-allow": false,
        "name-claim": "mandatory", "email-claim": "no", "scope-claim": "no",
        "claims": [
            {"name": "groups", "user-property": "groups", "type": "string", "mandatory": true},
            {"name": "preferred_username", "user-property": "username", "type": "string", "mandatory": true}
        ],
        "session-management-allowed": true, "session-cookie-name": "GLEWLWYD2_OIDC_SID",
        "session-cookie-expiration": 3600,
        "front-channel-logout-allowed": true, "back-channel-logout-allowed": false
    });
    let mut sql = format!(
        "PRAGMA foreign_keys = ON;
UPDATE g_scope SET gs_password_required = 1, gs_password_max_age = 0 WHERE gs_name = 'openid';
UPDATE g_user_module_instance SET gumi_parameters = {} WHERE gumi_name = 'database';
UPDATE g_client_module_instance SET gcmi_parameters = {} WHERE gcmi_name = 'database';
INSERT INTO g_plugin_module_instance (gpmi_module, gpmi_name, gpmi_display_name, gpmi_parameters, gpmi_enabled)
  VALUES ('oidc', 'oidc', 'OpenID Connect', {}, 1);
INSERT INTO g_user_scope (gus_name) VALUES ('openid');
INSERT INTO g_client (gc_client_id, gc_name, gc_description, gc_confidential, gc_password, gc_enabled)
  VALUES ({id}, 'plantd', '', 1, NULL, 1);
",
        q(&users.to_string()),
        q(&clients.to_string()),
        q(&plugin.to_string()),
        id = q(CLIENT_ID),
    );
    let client_prop = |name: &str, value: &str| {
        format!(
            "INSERT INTO g_client_property (gc_id, gcp_name, gcp_value) VALUES ((SELECT gc_id FROM g_client WHERE gc_client_id = {}), {}, {});\n",
            q(CLIENT_ID),
            q(name),
            q(value)
        )
    };
    sql += &client_prop("client_secret", CLIENT_SECRET);
    sql += &client_prop("authorization_type", "code");
    sql += &client_prop("token_endpoint_auth_method", "client_secret_basic");
    sql += &client_prop("token_endpoint_auth_method", "client_secret_post");
    for r in redirects {
        sql += &client_prop("redirect_uri", r);
    }
    for r in after_logout {
        sql += &client_prop("post_logout_redirect_uris", r);
    }
    for person in people {
        let user = q(person.uid);
        let id = format!("(SELECT gu_id FROM g_user WHERE gu_username = {user})");
        sql += &format!(
            "INSERT INTO g_user (gu_username, gu_name, gu_email, gu_enabled) VALUES ({user}, {user}, '', 1);
INSERT INTO g_user_password (gu_id, guw_password) VALUES ({id}, {});
INSERT INTO g_user_scope_user (gu_id, gus_id) VALUES ({id}, (SELECT gus_id FROM g_user_scope WHERE gus_name = 'openid'));
INSERT INTO gpo_subject_identifier (gposi_plugin_name, gposi_username, gposi_client_id, gposi_sector_identifier_uri, gposi_sub) VALUES ('oidc', {user}, NULL, NULL, {user});
",
            q(&password_hash(person.password))
        );
        for g in person.groups {
            sql += &format!(
                "INSERT INTO g_user_property (gu_id, gup_name, gup_value) VALUES ({id}, 'groups', {});\n",
                q(g)
            );
        }
    }
    sql
}

fn config(d: &Path, port: u16) -> String {
    let dd = d.display();
    format!(
        r#"port={port}
bind_address="127.0.0.1"
external_url="https://127.0.0.1:{port}"
login_url="login.html"
api_prefix="api"
static_files_path="{dd}/webapp/"
allow_origin="*"
log_mode="file"
log_level="INFO"
log_file="{dd}/glewlwyd.log"
cookie_secure=1
cookie_same_site="lax"
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
add_x_frame_option_header_deny=true
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
use_secure_connection=true
secure_connection_key_file="{dd}/tls/server.key"
secure_connection_pem_file="{dd}/tls/server.pem"
hash_algorithm="SHA512"
database =
{{
  type = "sqlite3"
  path = "{dd}/glewlwyd.db"
}};
static_files_mime_types =
(
  {{ extension = ".html"  mime_type = "text/html"              compress = 1 }},
  {{ extension = ".css"   mime_type = "text/css"               compress = 1 }},
  {{ extension = ".js"    mime_type = "application/javascript" compress = 1 }},
  {{ extension = ".json"  mime_type = "application/json"       compress = 1 }},
  {{ extension = ".png"   mime_type = "image/png"              compress = 0 }},
  {{ extension = ".ico"   mime_type = "image/x-icon"           compress = 0 }},
  {{ extension = ".ttf"   mime_type = "font/ttf"               compress = 0 }},
  {{ extension = ".woff"  mime_type = "font/woff"              compress = 0 }},
  {{ extension = ".woff2" mime_type = "font/woff2"             compress = 0 }},
  {{ extension = ".svg"   mime_type = "image/svg+xml"          compress = 1 }}
)
"#
    )
}
