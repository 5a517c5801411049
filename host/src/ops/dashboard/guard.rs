//! What the dashboard checks before it answers, beyond what every wasmq
//! HTTP server checks (the `Host` a request names and the security headers:
//! `ops::http`): the token (for every API request when one is set) and the
//! shape and origin of write actions (against cross-site requests).
//!
//! # Rules
//! - With a token set, every `/api/` request needs `Authorization: Bearer
//!   <token>`, compared in constant time.
//! - A write (any method but GET and HEAD) is refused with 403 unless it is
//!   a request no other site can make a browser send: `Origin` (when
//!   present) names this dashboard, `Sec-Fetch-Site` (when present) is
//!   `same-origin`, the body is JSON sent as `Content-Type:
//!   application/json`, and it carries `X-Wasmq-Request: 1`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};
use crate::ops::http::clip;

/// The header the dashboard's own page sets on every write action.
pub const REQUEST_HEADER: &str = "x-wasmq-request";

/// The largest body a write action may carry.
const MAX_WRITE_BODY: usize = 64 * 1024;

/// The Content-Security-Policy of the dashboard: its own script and styles,
/// nothing from elsewhere, no inline code, no framing.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Whether `given` equals `expected`, taking a time that depends on the
/// length of `given` only (never on where they first differ, nor on the
/// length of `expected`).
pub fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = u8::from(given.len() != expected.len());
    for (i, byte) in given.iter().enumerate() {
        diff |= byte ^ expected[i % expected.len()];
    }
    std::hint::black_box(diff) == 0
}

/// Whether a request carries the dashboard's token.
pub fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| same_token(given.trim().as_bytes(), token.as_bytes()))
}

fn forbidden(message: String) -> Response {
    ApiError(StatusCode::FORBIDDEN, message).into_response()
}

/// Why a write is refused, if its origin or shape is one another site could
/// have produced.
fn check_write_shape(headers: &HeaderMap, host: &str) -> Result<(), String> {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    if let Some(site) = text(&HeaderName::from_static("sec-fetch-site"))
        && !site.eq_ignore_ascii_case("same-origin")
    {
        return Err(format!(
            "cross-site write refused: the browser sent it from another site \
             (Sec-Fetch-Site: {}); write actions are accepted only from the dashboard's own page",
            clip(site, 40)
        ));
    }
    if let Some(origin) = text(&header::ORIGIN) {
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        if !own {
            return Err(format!(
                "cross-site write refused: Origin {:?} is not this dashboard (http://{}); \
                 write actions are accepted only from the dashboard's own page",
                clip(origin, 100),
                clip(host, 100)
            ));
        }
    }
    let content_type = text(&header::CONTENT_TYPE).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(format!(
            "write actions need a JSON body sent with Content-Type: application/json (got {}); \
             send for example -H 'Content-Type: application/json' -H 'X-Wasmq-Request: 1' -d '{{}}'",
            if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("{:?}", clip(content_type, 60))
            }
        ));
    }
    if text(&HeaderName::from_static(REQUEST_HEADER)) != Some("1") {
        return Err(
            "write actions need the header X-Wasmq-Request: 1 (the dashboard's page sends it; \
             other sites cannot make a browser send it)"
                .into(),
        );
    }
    Ok(())
}

/// Applies the rules of this module to every request, then adds the
/// security headers to whatever answers it.
pub async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = check(&state, request, next).await;
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn check(state: &Shared, request: Request, next: Next) -> Response {
    let headers = request.headers();
    // The Host was checked by the server (`ops::http`).
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let is_write = !matches!(*request.method(), Method::GET | Method::HEAD);
    if is_write && let Err(refused) = check_write_shape(headers, &host) {
        return forbidden(refused);
    }
    if request.uri().path().starts_with("/api/")
        && let Some(token) = &state.config.token
        && !has_token(headers, token)
    {
        let mut response = ApiError(
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token (printed when it started, or the one given with \
             --token): enter it in the page, or send Authorization: Bearer <token>"
                .into(),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if !is_write {
        return next.run(request).await;
    }
    // The body of a write must be JSON (its content is not used).
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_WRITE_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return forbidden(format!(
                "the body of a write action must be JSON of at most {MAX_WRITE_BODY} bytes, such as {{}}"
            ));
        }
    };
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
        return forbidden(
            "the body of a write action must be JSON, such as {} (an empty body is refused)".into(),
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same_token(b"s3cret", b"s3cret"));
        for given in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"s3crets3cret"] {
            assert!(!same_token(given, b"s3cret"), "{given:?}");
        }
        assert!(!same_token(b"", b""));
    }
}
