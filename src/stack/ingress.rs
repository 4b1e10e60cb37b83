//! Odoo's front door: plantd's own TLS listener (`stack.ingress.listen`), proxying to Odoo's HTTP
//! port with `X-Forwarded-*`, and `/websocket` to the gevent port with the upgrade carried
//! through, so that Odoo's bus works without an extra reverse proxy.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// Odoo's HTTP port, and the gevent port that serves its websocket when it runs workers.
const HTTP_PORT: u16 = 8069;
const GEVENT_PORT: u16 = 8072;

#[derive(Clone)]
struct Upstream {
    odoo: watch::Receiver<Option<IpAddr>>,
    websocket_port: u16,
}

/// Headers that belong to one hop (RFC 9110 §7.6.1); an upgrade keeps `connection` and
/// `upgrade`, which carry it.
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "connection",
    "upgrade",
];

/// Removes the hop-by-hop headers, and those the `connection` header names.
fn strip_hop_by_hop(headers: &mut axum::http::HeaderMap, upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let keep = |h: &str| upgrade && (h == "connection" || h == "upgrade");
    for h in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        if !keep(h) {
            headers.remove(h);
        }
    }
}

/// The ingress app. With `workers = 0` Odoo serves its websocket on the HTTP port itself (no
/// gevent process); with workers, only the gevent port can.
pub fn router(odoo: watch::Receiver<Option<IpAddr>>, odoo_workers: u32) -> axum::Router {
    let websocket_port = if odoo_workers > 0 {
        GEVENT_PORT
    } else {
        HTTP_PORT
    };
    axum::Router::new().fallback(proxy).with_state(Upstream {
        odoo,
        websocket_port,
    })
}

fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn wants_upgrade(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && req.headers().contains_key(header::UPGRADE)
}

async fn proxy(
    State(upstream): State<Upstream>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let Some(ip) = *upstream.odoo.borrow() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Odoo is not running right now; plantd is bringing it back (see `plantd stack status`)",
        );
    };
    let websocket = req.uri().path() == "/websocket";
    let port = if websocket {
        upstream.websocket_port
    } else {
        HTTP_PORT
    };
    let upgrade = wants_upgrade(&req);
    // HTTP/2 clients send the host as the URI's authority; Odoo speaks HTTP/1.1 and wants a
    // Host header and a path.
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_default();
    *req.uri_mut() = path;
    *req.version_mut() = axum::http::Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    // HTTP/2 may split cookies over several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if cookies.len() > 1 {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-real-ip", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host.clone());
        headers.insert(header::HOST, host);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let stream = match tokio::net::TcpStream::connect((ip, port)).await {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("Odoo does not answer on port {port}: {e}"),
            )
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &format!("talking to Odoo: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "ingress upstream connection ended");
        }
    });
    let mut response = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &format!("talking to Odoo: {e}")),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            });
        }
    }
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(response.headers_mut(), switching);
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("cookie", HeaderValue::from_static("session_id=abc"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["cookie"]);

        let mut h = axum::http::HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h, true);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["connection", "upgrade"]);
    }
}
