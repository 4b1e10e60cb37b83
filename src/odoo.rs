//! The Odoo client: one way to call a model method, whichever of Odoo's two external APIs the
//! server speaks.
//!
//! - `/json/2/<model>/<method>` (Odoo 19 and later): named arguments in a JSON body, an API key
//!   as bearer token, the database in `X-Odoo-Database`; errors by HTTP status with a body
//!   `{name, message, ...}`.
//! - `/jsonrpc` `object.execute_kw` (up to 18; deprecated from 19): positional arguments, a uid
//!   from `common.authenticate`, the API key as password; errors as JSON-RPC errors whose
//!   `data.name` is the Python exception.
//!
//! [`Client::connect`] asks `/web/webclient/version_info` (both APIs serve it) and picks the
//! API by the server's major version, unless the config forces one. [`Client::call`] takes
//! `execute_kw`'s convention (positional `args`, named `kwargs`) and, over `/json/2`, names the
//! positional arguments of the ORM's common methods. Errors keep Odoo's own message, and say
//! whether the call may have run ([`OdooError::outcome_unknown`]).

use std::time::Duration;

use serde_json::{json, Map, Value};

/// Which API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiChoice {
    /// By the server's version: `/json/2` from 19 on, `/jsonrpc` before.
    Auto,
    Json2,
    Jsonrpc,
}

/// The API a connected client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Json2,
    Jsonrpc,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Api::Json2 => "/json/2",
            Api::Jsonrpc => "/jsonrpc",
        })
    }
}

/// An Odoo server and the user plantd acts as.
#[derive(Clone)]
pub struct Target {
    /// Such as `http://10.0.0.5:8069` (no trailing slash needed).
    pub url: String,
    pub database: String,
    pub login: String,
    /// The user's API key (Odoo: Preferences, Account Security, New API Key).
    pub key: String,
    pub api: ApiChoice,
    pub timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("api", &self.api)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a call failed, with Odoo's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdooError {
    /// Wrong key, login or database, or a method the user may not call.
    #[error("Odoo refused access: {0}")]
    Access(String),
    /// A constraint or a business rule rejected the data (ValidationError, UserError).
    #[error("Odoo rejected it: {0}")]
    Rejected(String),
    /// A record the call names does not exist (any more).
    #[error("Odoo has no such record: {0}")]
    Missing(String),
    /// No such model, method or route.
    #[error("Odoo has no such method: {0}")]
    NoMethod(String),
    /// Odoo could not be reached, or answered that it cannot serve now (its database is down,
    /// say). The call did not run.
    #[error("Odoo is unreachable: {0}")]
    Down(String),
    /// No answer in time, or the connection broke mid-call: the call may have run.
    #[error("Odoo did not answer: {0} (the call may have run)")]
    NoAnswer(String),
    /// Any other failure Odoo reported: its exception's name and message.
    #[error("Odoo failed: {name}: {message}")]
    Server { name: String, message: String },
    /// An answer that is not what either API gives.
    #[error("unexpected answer from Odoo: {0}")]
    Protocol(String),
    /// `fields_get` of `model` answered something other than an object (`answer`, clipped).
    #[error("unexpected answer from Odoo: {model}: fields_get answered {answer}, not an object")]
    NotFields { model: String, answer: String },
    /// A call's arguments cannot be sent over `/json/2`.
    #[error("unexpected answer from Odoo: {0}")]
    Args(ArgsError),
}

/// Why a call's positional arguments cannot be named for `/json/2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// More positional arguments than the method's known names.
    #[error("over /json/2 the arguments of {method} are named: give them as keyword arguments ({given} positional given, {known} known by name)")]
    Positional {
        method: String,
        given: usize,
        known: usize,
    },
    /// An argument given both by position and by name.
    #[error("{0} is given both by position and by name")]
    Twice(String),
}

impl From<ArgsError> for OdooError {
    fn from(e: ArgsError) -> Self {
        OdooError::Args(e)
    }
}

impl OdooError {
    /// Whether waiting and trying again may help (Odoo or its database away, or no answer).
    pub fn transient(&self) -> bool {
        matches!(self, OdooError::Down(_) | OdooError::NoAnswer(_))
    }

    /// Whether the call may have run although it failed: a retry must first look whether it did.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, OdooError::NoAnswer(_))
    }
}

/// A connected client.
pub struct Client {
    http: reqwest::Client,
    target: Target,
    api: Api,
    version: String,
    /// The user's id, for `/jsonrpc`.
    uid: i64,
    /// Records looked up by code or external id in this Odoo ("model code" → id), for as long
    /// as the connection lasts: each Odoo resolves on its own, and a reconnect starts afresh.
    refs: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Set when a call was refused access: a key rotated since this connection signed in
    /// looks like that, and a fresh connection reads the key again.
    refused_access: std::sync::atomic::AtomicBool,
    /// Each model's fields as `fields_get` told them, and when, for as long as the connection
    /// lasts.
    fields: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Fields)>>,
}

/// A model's fields by name: their type ("char", "many2one", "one2many"...) and, for a
/// relational one, the model it refers to.
pub type Fields = std::sync::Arc<std::collections::HashMap<String, FieldType>>;

/// A field's type, and the model a relational field refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    pub kind: String,
    pub relation: Option<String>,
}

/// `fields_get`'s answer (`{name: {type, relation}}`) as [`Fields`].
fn parse_fields(
    model: &str,
    answer: &Value,
) -> Result<std::collections::HashMap<String, FieldType>, OdooError> {
    let map = answer.as_object().ok_or_else(|| OdooError::NotFields {
        model: model.to_string(),
        answer: clip(&answer.to_string()),
    })?;
    Ok(map
        .iter()
        .map(|(name, f)| {
            let field = FieldType {
                kind: f["type"].as_str().unwrap_or_default().to_string(),
                relation: f["relation"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
            };
            (name.clone(), field)
        })
        .collect())
}

impl Client {
    /// Asks the server's version, picks the API, and (for `/jsonrpc`) signs in.
    pub async fn connect(target: Target) -> Result<Client, OdooError> {
        let http = reqwest::Client::builder()
            .timeout(target.timeout)
            .connect_timeout(target.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| OdooError::Protocol(format!("building the HTTP client: {e}")))?;
        let base = target.url.trim_end_matches('/').to_string();
        let info = jsonrpc(
            &http,
            &format!("{base}/web/webclient/version_info"),
            json!({}),
        )
        .await?;
        let version = info["server_version"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                OdooError::Protocol(format!("version_info without server_version: {info}"))
            })?;
        // Odoo Online and other SaaS builds say "saas~18.2".
        let major = info["server_version_info"][0]
            .as_i64()
            .or_else(|| {
                let v = info["server_version_info"][0].as_str().unwrap_or(&version);
                v.trim_start_matches("saas~")
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .ok_or_else(|| {
                OdooError::Protocol(format!("version {version:?} has no major number"))
            })?;
        let api = match target.api {
            ApiChoice::Json2 => Api::Json2,
            ApiChoice::Jsonrpc => Api::Jsonrpc,
            ApiChoice::Auto if major >= 19 => Api::Json2,
            ApiChoice::Auto => Api::Jsonrpc,
        };
        let mut client = Client {
            http,
            target: Target {
                url: base,
                ..target
            },
            api,
            version,
            uid: 0,
            refs: Default::default(),
            refused_access: Default::default(),
            fields: Default::default(),
        };
        if api == Api::Jsonrpc {
            let t = &client.target;
            let uid = client
                .rpc(
                    "common",
                    "authenticate",
                    json!([t.database, t.login, t.key, {}]),
                )
                .await?;
            client.uid = uid.as_i64().filter(|u| *u > 0).ok_or_else(|| {
                OdooError::Access(format!(
                    "login {:?} with the configured key is refused by database {:?}",
                    t.login, t.database
                ))
            })?;
        }
        Ok(client)
    }

    pub fn api(&self) -> Api {
        self.api
    }

    /// A record id this connection looked up before under `key`.
    pub fn cached(&self, key: &str) -> Option<i64> {
        self.refs.lock().expect("not poisoned").get(key).copied()
    }

    /// Remembers a looked-up record id for the rest of the connection.
    pub fn remember(&self, key: String, id: i64) {
        let mut refs = self.refs.lock().expect("not poisoned");
        // Bounded: a plant names a few thousand products and locations at most.
        if refs.len() >= 100_000 {
            refs.clear();
        }
        refs.insert(key, id);
    }

    /// `model`'s fields (type and relation), asked once per connection.
    pub async fn fields(&self, model: &str) -> Result<Fields, OdooError> {
        if let Some((_, f)) = self.fields.lock().expect("not poisoned").get(model) {
            return Ok(f.clone());
        }
        let answer = self
            .call(
                model,
                "fields_get",
                vec![],
                Map::from_iter([("attributes".to_string(), json!(["type", "relation"]))]),
            )
            .await?;
        let fields = std::sync::Arc::new(parse_fields(model, &answer)?);
        let mut cache = self.fields.lock().expect("not poisoned");
        // Bounded: a plant's kinds touch a few dozen models.
        if cache.len() >= 1_000 {
            cache.clear();
        }
        cache.insert(
            model.to_string(),
            (std::time::Instant::now(), fields.clone()),
        );
        Ok(fields)
    }

    /// [`Client::fields`], asked again when what this connection knows of `model` is older than
    /// `age` (a module installed since may have added fields): at most once per `age`.
    pub async fn fields_again(&self, model: &str, age: Duration) -> Result<Fields, OdooError> {
        {
            let mut cache = self.fields.lock().expect("not poisoned");
            match cache.get(model) {
                Some((at, f)) if at.elapsed() < age => return Ok(f.clone()),
                _ => {
                    cache.remove(model);
                }
            }
        }
        self.fields(model).await
    }

    /// The server's version, as it reports it (such as "19.0").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Calls `model.method` with `execute_kw`'s convention: positional `args` (for a method
    /// on records, the ids first) and named `kwargs`.
    pub async fn call(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        match self.api {
            Api::Jsonrpc => {
                let t = &self.target;
                self.rpc(
                    "object",
                    "execute_kw",
                    json!([t.database, self.uid, t.key, model, method, args, kwargs]),
                )
                .await
            }
            Api::Json2 => {
                let body = named(method, args, kwargs)?;
                self.json2(model, method, Value::Object(body)).await
            }
        }
    }

    /// Calls `model.method` on the records `ids`, with named `kwargs`: any method on records,
    /// whatever its name, over either API.
    pub async fn call_on(
        &self,
        model: &str,
        method: &str,
        ids: &[i64],
        kwargs: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        match self.api {
            Api::Jsonrpc => self.call(model, method, vec![json!(ids)], kwargs).await,
            Api::Json2 => {
                let mut body = kwargs;
                body.insert("ids".into(), json!(ids));
                self.json2(model, method, Value::Object(body)).await
            }
        }
    }

    /// Whether a call on this connection was refused access.
    pub fn refused_access(&self) -> bool {
        self.refused_access
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note<T>(&self, result: Result<T, OdooError>) -> Result<T, OdooError> {
        if let Err(OdooError::Access(_)) = &result {
            self.refused_access
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    async fn rpc(&self, service: &str, method: &str, args: Value) -> Result<Value, OdooError> {
        let params = json!({"service": service, "method": method, "args": args});
        self.note(jsonrpc(&self.http, &format!("{}/jsonrpc", self.target.url), params).await)
    }

    async fn json2(&self, model: &str, method: &str, body: Value) -> Result<Value, OdooError> {
        let answer = self.json2_once(model, method, body).await;
        self.note(answer)
    }

    async fn json2_once(&self, model: &str, method: &str, body: Value) -> Result<Value, OdooError> {
        let url = format!("{}/json/2/{model}/{method}", self.target.url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.target.key)
            .header("X-Odoo-Database", &self.target.database)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        if status == 200 {
            return serde_json::from_str(&text).map_err(|e| {
                OdooError::Protocol(format!("{url}: not JSON ({e}): {}", clip(&text)))
            });
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(json2_error(status, &body, &text))
    }
}

/// One JSON-RPC call; its `result`, or the error it carries.
async fn jsonrpc(http: &reqwest::Client, url: &str, params: Value) -> Result<Value, OdooError> {
    let request = json!({"jsonrpc": "2.0", "method": "call", "params": params, "id": 1});
    let response = http
        .post(url)
        .json(&request)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport)?;
    let body: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) if matches!(status, 429 | 502..=504) => {
            return Err(OdooError::Down(format!("{url}: HTTP {status}")))
        }
        Err(e) => {
            return Err(OdooError::Protocol(format!(
                "{url}: HTTP {status}, not JSON ({e}): {}",
                clip(&text)
            )))
        }
    };
    if let Some(error) = body.get("error") {
        return Err(jsonrpc_error(error));
    }
    match body.get("result") {
        Some(result) => Ok(result.clone()),
        // Odoo leaves `result` out when the method returned None.
        None if body.get("jsonrpc").is_some() && body.get("id").is_some() => Ok(Value::Null),
        None => Err(OdooError::Protocol(format!(
            "{url}: neither result nor error: {}",
            clip(&text)
        ))),
    }
}

fn transport(e: reqwest::Error) -> OdooError {
    let what = std::error::Error::source(&e)
        .map(|s| format!("{e}: {s}"))
        .unwrap_or_else(|| e.to_string());
    if e.is_connect() {
        OdooError::Down(what)
    } else {
        // A timeout, or a connection that broke after the request went out.
        OdooError::NoAnswer(what)
    }
}

/// A JSON-RPC `error` object, by the Python exception it names.
fn jsonrpc_error(error: &Value) -> OdooError {
    let name = error["data"]["name"].as_str().unwrap_or_default();
    let message = error["data"]["message"]
        .as_str()
        .or_else(|| error["message"].as_str())
        .unwrap_or("no message")
        .to_string();
    if name.is_empty() && error["code"].as_i64() == Some(404) {
        return OdooError::NoMethod(message);
    }
    by_name(name, message)
}

/// A `/json/2` error: by the exception's name, else by the HTTP status.
fn json2_error(status: u16, body: &Value, text: &str) -> OdooError {
    let name = body["name"].as_str().unwrap_or_default();
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}: {}", clip(text)));
    match (status, name) {
        (_, n) if n.starts_with("odoo.exceptions.") || n.starts_with("psycopg2.") => {
            by_name(n, message)
        }
        (401 | 403, _) => OdooError::Access(message),
        (404, _) => OdooError::NoMethod(message),
        (429 | 502..=504, _) => OdooError::Down(message),
        _ => OdooError::Server {
            name: if name.is_empty() {
                format!("HTTP {status}")
            } else {
                name.to_string()
            },
            message,
        },
    }
}

fn by_name(name: &str, message: String) -> OdooError {
    match name {
        "odoo.exceptions.AccessDenied" | "odoo.exceptions.AccessError" => {
            OdooError::Access(message)
        }
        "odoo.exceptions.ValidationError" | "odoo.exceptions.UserError" => {
            OdooError::Rejected(message)
        }
        "odoo.exceptions.MissingError" => OdooError::Missing(message),
        // A wrong database name is the config's fault, not a passing one.
        n if n.starts_with("psycopg2.OperationalError") && message.contains("does not exist") => {
            OdooError::Server {
                name: name.to_string(),
                message,
            }
        }
        // Rolled back, to be tried again: the database away, or a write that met another one.
        n if n.starts_with("psycopg2.OperationalError")
            || n.starts_with("psycopg2.errors.SerializationFailure")
            || n.starts_with("psycopg2.errors.DeadlockDetected")
            || n.starts_with("psycopg2.errors.LockNotAvailable")
            || n == "odoo.exceptions.ConcurrencyError" =>
        {
            OdooError::Down(message)
        }
        "builtins.AttributeError" if message.contains("does not exist") => {
            OdooError::NoMethod(message)
        }
        _ => OdooError::Server {
            name: name.to_string(),
            message,
        },
    }
}

/// The positional arguments of the ORM's common methods, named for `/json/2`, merged with the
/// named ones.
fn named(
    method: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<Map<String, Value>, ArgsError> {
    let names: &[&str] = match method {
        "create" => &["vals_list"],
        "write" => &["ids", "vals"],
        "read" => &["ids", "fields"],
        "unlink" => &["ids"],
        "search" => &["domain", "offset", "limit", "order"],
        "search_count" => &["domain", "limit"],
        "search_read" => &["domain", "fields", "offset", "limit", "order"],
        "load" => &["fields", "data"],
        m if m.starts_with("button_") || m.starts_with("action_") => &["ids"],
        _ => &[],
    };
    if args.len() > names.len() {
        return Err(ArgsError::Positional {
            method: method.to_string(),
            given: args.len(),
            known: names.len(),
        });
    }
    let mut body = Map::new();
    for (name, value) in names.iter().zip(args) {
        body.insert(name.to_string(), value);
    }
    for (k, v) in kwargs {
        if body.contains_key(&k) {
            return Err(ArgsError::Twice(k));
        }
        body.insert(k, v);
    }
    Ok(body)
}

fn clip(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_odoos_message_and_say_what_kind() {
        let rpc = |name: &str, message: &str| {
            jsonrpc_error(
                &json!({"code": 0, "message": "Odoo Server Error", "data": {"name": name, "message": message}}),
            )
        };
        assert_eq!(
            rpc(
                "odoo.exceptions.ValidationError",
                "The quantity must be positive"
            ),
            OdooError::Rejected("The quantity must be positive".into())
        );
        assert_eq!(
            rpc("odoo.exceptions.AccessDenied", "Access Denied"),
            OdooError::Access("Access Denied".into())
        );
        assert_eq!(
            rpc("odoo.exceptions.MissingError", "Record does not exist"),
            OdooError::Missing("Record does not exist".into())
        );
        assert!(rpc("psycopg2.OperationalError", "connection refused").transient());
        assert!(!rpc("psycopg2.OperationalError", "database \"x\" does not exist").transient());
        assert!(rpc(
            "psycopg2.errors.SerializationFailure",
            "could not serialize"
        )
        .transient());
        assert!(rpc("odoo.exceptions.ConcurrencyError", "retries exhausted").transient());
        assert_eq!(
            rpc("builtins.ValueError", "bad domain"),
            OdooError::Server {
                name: "builtins.ValueError".into(),
                message: "bad domain".into()
            }
        );
        assert!(matches!(
            jsonrpc_error(&json!({"code": 404, "message": "404: Not Found"})),
            OdooError::NoMethod(_)
        ));

        let j2 = |status, body: Value| json2_error(status, &body, &body.to_string());
        assert_eq!(
            j2(
                422,
                json!({"name": "odoo.exceptions.ValidationError", "message": "negative"})
            ),
            OdooError::Rejected("negative".into())
        );
        assert_eq!(
            j2(
                401,
                json!({"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"})
            ),
            OdooError::Access("Invalid apikey".into())
        );
        assert!(matches!(
            j2(
                404,
                json!({"name": "werkzeug.exceptions.NotFound", "message": "no method"})
            ),
            OdooError::NoMethod(_)
        ));
        assert!(matches!(
            j2(
                404,
                json!({"name": "odoo.exceptions.MissingError", "message": "gone"})
            ),
            OdooError::Missing(_)
        ));
        assert!(j2(503, Value::Null).transient());
        assert!(matches!(
            j2(
                422,
                json!({"name": "werkzeug.exceptions.UnprocessableEntity", "message": "bad args"})
            ),
            OdooError::Server { .. }
        ));
        assert!(OdooError::NoAnswer("timeout".into()).outcome_unknown());
        assert!(!OdooError::Down("refused".into()).outcome_unknown());
    }

    #[test]
    fn positional_arguments_are_named_for_json2() {
        let body = named(
            "search_read",
            vec![json!([["name", "=", "A"]]), json!(["name"])],
            Map::from_iter([("limit".to_string(), json!(5))]),
        )
        .unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"domain": [["name", "=", "A"]], "fields": ["name"], "limit": 5})
        );
        let body = named("button_validate", vec![json!([4])], Map::new()).unwrap();
        assert_eq!(Value::Object(body), json!({"ids": [4]}));
        assert!(named("do_something", vec![json!(1)], Map::new())
            .unwrap_err()
            .to_string()
            .contains("keyword arguments"));
        assert!(named(
            "write",
            vec![json!([1]), json!({})],
            Map::from_iter([("ids".to_string(), json!([2]))])
        )
        .unwrap_err()
        .to_string()
        .contains("both by position and by name"));
    }
}
