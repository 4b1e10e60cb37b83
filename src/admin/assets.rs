//! The UI's static files (`web/`), compiled into the binary and served with a strict
//! Content-Security-Policy.
//!
//! Each is gzipped once, at its first request, and sent gzipped to every browser that accepts
//! it (all do): the overview's files shrink from about 115 KB to about 30 KB, which is what a
//! phone on the plant's Wi-Fi waits for. Each carries a weak ETag of its content, so that a
//! reload asks "still the same?" (`no-cache`) and gets a bodiless 304 until plantd is updated.

use std::io::Write;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// One static file of the UI.
pub struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// The gzipped body and the ETag, made at first use.
    made: OnceLock<(Vec<u8>, HeaderValue)>,
}

impl Asset {
    pub const fn new(body: &'static str, content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            made: OnceLock::new(),
        }
    }

    fn made(&self) -> &(Vec<u8>, HeaderValue) {
        self.made.get_or_init(|| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = gz.write_all(self.body.as_bytes());
            let gz = gz.finish().unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, self.body.as_bytes());
            let tag: String = digest.as_ref()[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let etag = HeaderValue::from_str(&format!("W/\"{tag}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""));
            (gz, etag)
        })
    }

    /// The file for a request with `headers`: 304 when the browser has it already, gzipped
    /// when the browser accepts gzip, as it is otherwise.
    pub fn serve(&'static self, headers: &HeaderMap) -> Response {
        let (gz, etag) = self.made();
        let mut response = if matches_etag(headers, etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else if accepts_gzip(headers) && !gz.is_empty() {
            let mut r = gz.as_slice().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            self.body.into_response()
        };
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::ETAG, etag.clone());
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Whether `Accept-Encoding` gives gzip a weight above zero: by name, or else through `*`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let codings: Vec<(String, f32)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0);
            (name, weight)
        })
        .collect();
    let weight_of = |name: &str| codings.iter().find(|(n, _)| n == name).map(|(_, w)| *w);
    weight_of("gzip")
        .or_else(|| weight_of("*"))
        .is_some_and(|w| w > 0.0)
}

/// Whether `If-None-Match` names `etag` (or `*`); weak comparison, as RFC 9110 asks for it.
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag
        .to_str()
        .unwrap_or("")
        .trim_start_matches("W/")
        .to_string();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    static PAGE: Asset = Asset::new("<!doctype html><p>hello hello hello hello</p>", "text/html");

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    async fn body(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn gzip_only_to_who_accepts_it_and_the_same_content_either_way() {
        let r = PAGE.serve(&headers(&[(header::ACCEPT_ENCODING, "gzip, deflate, br")]));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html");
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let gz = body(r).await;
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, PAGE.body);

        for refused in [
            "",
            "br",
            "gzip;q=0",
            "identity, gzip; q=0.0",
            "gzip;Q=0",
            "gzip;q=0, *",
        ] {
            let r = PAGE.serve(&headers(&[(header::ACCEPT_ENCODING, refused)]));
            assert!(
                !r.headers().contains_key(header::CONTENT_ENCODING),
                "{refused:?}"
            );
            assert_eq!(body(r).await, PAGE.body.as_bytes(), "{refused:?}");
        }
        let r = PAGE.serve(&HeaderMap::new());
        assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
        for accepted in ["GZIP;q=0.5", "br, *", "*;q=0.1"] {
            let r = PAGE.serve(&headers(&[(header::ACCEPT_ENCODING, accepted)]));
            assert_eq!(
                r.headers()[header::CONTENT_ENCODING],
                "gzip",
                "{accepted:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_browser_that_has_the_file_gets_a_bodiless_304() {
        let r = PAGE.serve(&HeaderMap::new());
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        assert!(etag.starts_with("W/\""), "{etag}");
        let again = PAGE.serve(&headers(&[
            (header::IF_NONE_MATCH, &etag),
            (header::ACCEPT_ENCODING, "gzip"),
        ]));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert!(body(again).await.is_empty());
        let other = PAGE.serve(&headers(&[(header::IF_NONE_MATCH, "W/\"something-else\"")]));
        assert_eq!(other.status(), StatusCode::OK);
    }
}
