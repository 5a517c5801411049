//! What the dashboard checks before it answers: the `Host` a request names
//! (against DNS rebinding), the token (for every API request when one is
//! set), the shape and origin of write actions (against cross-site
//! requests), and the security headers every response carries.
//!
//! # Rules
//! - `Host` must name the listen address: `127.0.0.1`, `localhost` or
//!   `[::1]` with the dashboard's port, the bound IP with its port (any IP
//!   literal when bound to `0.0.0.0`/`[::]`), or a name given with
//!   `--allow-host` (with any port or none, as behind a reverse proxy).
//!   Anything else gets 421 and no data.
//! - With a token set, every `/api/` request needs `Authorization: Bearer
//!   <token>`, compared in constant time.
//! - A write (any method but GET and HEAD) is refused with 403 unless it is
//!   a request no other site can make a browser send: `Origin` (when
//!   present) names this dashboard, `Sec-Fetch-Site` (when present) is
//!   `same-origin`, the body is JSON sent as `Content-Type:
//!   application/json`, and it carries `X-Wasmq-Request: 1`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};

/// The header the dashboard's own page sets on every write action.
pub const REQUEST_HEADER: &str = "x-wasmq-request";

/// The largest body a write action may carry.
const MAX_WRITE_BODY: usize = 64 * 1024;

/// The Content-Security-Policy of the dashboard: its own script and styles,
/// nothing from elsewhere, no inline code, no framing.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The Content-Security-Policy of responses that are not pages (`/metrics`).
pub const NO_CONTENT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Sets the security headers of every response: `csp`, no MIME sniffing,
/// no framing, no referrer, no cross-origin embedding.
pub fn add_security_headers(headers: &mut HeaderMap, csp: &'static str) {
    let fixed: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The `Host` values a dashboard answers to.
#[derive(Debug, Clone)]
pub struct HostRule {
    /// The address it is bound to.
    bound: SocketAddr,
    /// Names given with `--allow-host`, lower case, without a port.
    allowed: Vec<String>,
}

impl HostRule {
    /// The rule for a dashboard bound to `bound` that also answers to `allowed`.
    pub fn new(bound: SocketAddr, allowed: &[String]) -> Self {
        HostRule {
            bound,
            allowed: allowed
                .iter()
                .map(|name| normalize(split_host(name).0))
                .collect(),
        }
    }

    /// Whether a request naming `host` (a `Host` header value) is served.
    pub fn allows(&self, host: &str) -> bool {
        let (name, port) = split_host(host);
        let name = normalize(name);
        if self.allowed.contains(&name) {
            return true;
        }
        let port = match port {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) => port,
                Err(_) => return false,
            },
        };
        if port != self.bound.port() {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.bound.ip() || self.bound.ip().is_unspecified(),
            Err(_) => false,
        }
    }

    /// The values it answers to, for error messages.
    fn describe(&self) -> String {
        let port = self.bound.port();
        let mut names = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        let ip = self.bound.ip();
        if ip.is_unspecified() {
            names.push(format!("any IP address of this machine with port {port}"));
        } else if !ip.is_loopback() {
            names.push(self.bound.to_string());
        }
        names.extend(self.allowed.iter().cloned());
        names.join(", ")
    }
}

/// Splits `name:port`, `[v6]:port`, `name` or `[v6]` into name and port.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, after)) => (ip, after.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((name, _)) if name.contains(':') => (host, None),
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// A host name as compared: lower case, without a trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// At most `max` characters of `text`, for quoting client input in messages.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

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
    add_security_headers(response.headers_mut(), DASHBOARD_CSP);
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn check(state: &Shared, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = match headers.get(header::HOST).map(|value| value.to_str()) {
        Some(Ok(host)) => host.to_string(),
        Some(Err(_)) | None => {
            return ApiError(
                StatusCode::BAD_REQUEST,
                "the request has no readable Host header".into(),
            )
            .into_response();
        }
    };
    if !state.hosts.allows(&host) {
        return ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this dashboard answers only to {} (the request named {:?}); a page under \
                 another name may be a DNS-rebinding attack; to reach the dashboard by that \
                 name, start it with --allow-host NAME",
                state.hosts.describe(),
                clip(&host, 100)
            ),
        )
        .into_response();
    }
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
    fn hosts_naming_the_listen_address_are_served_and_others_are_not() {
        let loopback = HostRule::new("127.0.0.1:8080".parse().unwrap(), &[]);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST.:8080",
            "[::1]:8080",
        ] {
            assert!(loopback.allows(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "localhost:9999",
            "127.0.0.1",
            "localhost.evil.example:8080",
            "10.0.0.1:8080",
            "",
            "[::1",
        ] {
            assert!(!loopback.allows(host), "{host}");
        }
        let named = HostRule::new(
            "192.168.1.5:80".parse().unwrap(),
            &["Dash.Example.com".to_string()],
        );
        assert!(named.allows("192.168.1.5"));
        assert!(named.allows("dash.example.com"));
        assert!(named.allows("dash.example.com:443"));
        assert!(!named.allows("192.168.1.6"));
        assert!(!named.allows("evil.example.com"));
        let any = HostRule::new("0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(any.allows("10.1.2.3:8080"));
        assert!(!any.allows("rebind.example:8080"));
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same_token(b"s3cret", b"s3cret"));
        for given in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"s3crets3cret"] {
            assert!(!same_token(given, b"s3cret"), "{given:?}");
        }
        assert!(!same_token(b"", b""));
    }
}
