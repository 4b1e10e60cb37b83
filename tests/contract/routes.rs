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
