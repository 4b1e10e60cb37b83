//! The documents against the routers: every API route a router declares is documented and
//! every documented path is a route (read from the routers' source, as `tests/layers.rs` reads
//! imports), and on the live server every documented operation reaches its handler while every
//! other method on a documented path answers 405 with `Allow` in the error shape.

use std::collections::BTreeSet;

use serde_json::Value;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The paths of the `.route(…)` calls in `files` (relative to the crate) that are API routes:
/// under `/api/`, or `/healthz` and `/metrics` (the UI's pages and files are not API). A path
/// given as a constant is looked up in `consts`.
pub fn declared(files: &[&str], consts: &[(&str, &str)]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in files {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let source = std::fs::read_to_string(&path).unwrap();
        for (i, _) in source.match_indices(".route(") {
            let rest = source[i + ".route(".len()..].trim_start();
            let route = if let Some(lit) = rest.strip_prefix('"') {
                lit[..lit.find('"').unwrap()].to_string()
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                consts
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| {
                        panic!("{file}: route path {name} is not in the test's list of constants")
                    })
                    .1
                    .to_string()
            };
            if route.starts_with("/api/") || route == "/healthz" || route == "/metrics" {
                paths.insert(route);
            }
        }
    }
    paths
}

/// The document's paths.
pub fn documented(doc: &Value) -> BTreeSet<String> {
    doc["paths"].as_object().unwrap().keys().cloned().collect()
}

/// Asserts that the routers' API routes and the document's paths are the same set.
pub fn same_paths(doc: &Value, routes: &BTreeSet<String>) {
    let documented = documented(doc);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(routes).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "routes the document lacks: {undocumented:?}; documented paths no router has: {phantom:?}"
    );
}

/// On the live server: each documented operation is routed (its answer is not the router's
/// "no such route" or 405), and each other method gets 405 in the error shape with `Allow`
/// naming exactly the documented methods (and HEAD with GET). `fill` gives a path's parameters
/// values.
pub async fn probe(
    client: &reqwest::Client,
    base: &str,
    doc: &Value,
    fill: impl Fn(&str) -> String,
) {
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = format!("{base}{}", fill(path));
        let mut allowed: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .filter(|m| METHODS.contains(&m.as_str()))
            .collect();
        for method in METHODS {
            let r = client
                .request(method.parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let allow = r
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_string());
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            if allowed.contains(method) {
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                assert!(
                    !(status == 404 && body.contains("no such route")),
                    "{method} {path} is documented but not routed: {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
                assert_eq!(
                    ctype.as_deref(),
                    Some("application/json"),
                    "{method} {path}: {body}"
                );
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["code"], "method_not_allowed", "{body}");
                let mut named: BTreeSet<String> = allow
                    .unwrap_or_default()
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                if allowed.contains("GET") {
                    named.remove("HEAD");
                }
                assert_eq!(named, allowed, "{method} {path}: Allow");
            }
        }
        allowed.clear();
    }
}

/// Every documented POST but `open` (sign-in, setup, enrollment) is refused with 401 before
/// its body is read when the request has no session: the request announces 3 MiB (over every
/// route's limit) and sends one byte, and the answer must come at once and be 401, not 413 (a
/// body limit checked first) nor a wait for the body (a handler reading it first).
pub async fn changes_refused_before_the_body(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    doc: &Value,
    fill: impl Fn(&str) -> String,
    open: &[&str],
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = std::sync::Arc::new(crate::harness::trusting(ca));
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("post").is_none() || open.contains(&path.as_str()) {
            continue;
        }
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3145728\r\n\r\n{{",
            fill(path)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "POST {path}: no answer within 5 s: the body was waited for before the session check"
        );
        let status_line = String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(
            status_line.starts_with("HTTP/1.1 401"),
            "POST {path} without a session: {status_line:?}, not 401 before the body"
        );
        checked += 1;
    }
    assert!(checked > 0, "no change to check");
}
