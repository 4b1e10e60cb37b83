//! The one error shape of every API answer: `{"error": {"code", "message", "field"?}}` with
//! `Content-Type: application/json`.
//!
//! Handlers answer their own refusals in that shape. What axum answers before a handler runs (a
//! query string or a path segment that does not parse, a method the route does not take, a body
//! over a route's limit) is plain text or empty; [`json_errors`] rewrites those answers, keeping
//! their status and headers (`Allow`, `Retry-After`), so that a client reads every refusal the
//! same way and every one is in the OpenAPI document.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

/// The most of a plain-text refusal kept as the JSON answer's message.
const MESSAGE_MAX: usize = 2048;

/// Middleware: an answer of 400 or more that is not JSON becomes JSON in the error shape;
/// but for the pages a browser is sent to and shown (the end of a sign-in through the company's
/// provider), which are HTML for a person to read.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if status.as_u16() < 400 || page || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = shape(status, text);
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The code and message of a refusal axum answered in plain text (or with no body).
fn shape(status: StatusCode, text: String) -> (&'static str, String) {
    let (code, default) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed".to_string()),
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            // axum adds `Allow` after the route's middleware has run: the message points to it.
            "this route does not take that method; the Allow header lists those it takes"
                .to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "the body is over this route's size limit".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as JSON with \"Content-Type: application/json\"".to_string(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid", "the request is invalid".to_string()),
        StatusCode::TOO_MANY_REQUESTS => ("busy", "too many requests; retry later".to_string()),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "retry later".to_string()),
        s if s.is_server_error() => ("internal", "internal error".to_string()),
        _ => ("refused", "the request was refused".to_string()),
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED || text.is_empty() {
        default
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("{default} ({text})")
    } else {
        text
    };
    (code, message)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn answer(router: Router, method: &str, uri: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn router() -> Router {
        #[derive(serde::Deserialize)]
        struct Q {
            #[allow(dead_code)]
            limit: Option<u32>,
        }
        Router::new()
            .route(
                "/items/{key}",
                get(|axum::extract::Path(_k): axum::extract::Path<String>| async { "ok" }),
            )
            .route(
                "/audit",
                get(|axum::extract::Query(_q): axum::extract::Query<Q>| async { "ok" }),
            )
            .route(
                "/teapot",
                get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
            )
            .layer(axum::middleware::from_fn(json_errors))
    }

    #[tokio::test]
    async fn what_axum_refuses_is_answered_in_the_error_shape() {
        let (status, headers, body) = answer(router(), "GET", "/audit?limit=-1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("limit"),
            "{body}"
        );

        let (status, _, body) = answer(router(), "GET", "/items/%FF").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.starts_with(r#"{"error":{"code":"bad_request""#),
            "{body}"
        );

        let (status, headers, body) = answer(router(), "POST", "/audit").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET,HEAD");
        assert!(body.contains("method_not_allowed"), "{body}");
        assert!(body.contains("Allow header"), "{body}");

        let (status, _, body) = answer(router(), "GET", "/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert!(body.contains("short and stout"), "{body}");

        let (status, headers, body) = answer(router(), "GET", "/audit?limit=3").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok", "a success is left alone");
        assert_ne!(headers[header::CONTENT_TYPE], "application/json");
    }
}
