//! The HTTP server under the dashboard and the metrics endpoint: one place
//! for what every network surface of wasmq does to every request, whatever
//! serves it.
//!
//! - The `Host` a request names must be the listen address (`127.0.0.1`,
//!   `localhost` or `[::1]` with its port, the bound IP with its port, any
//!   IP literal when bound to `0.0.0.0`/`[::]`) or an allowed name (with
//!   any port or none, as behind a reverse proxy). Anything else gets 421
//!   and no data: a page under another name may be a DNS-rebinding attack
//!   reaching a loopback port from the operator's browser.
//! - Every response, errors included, carries a strict
//!   Content-Security-Policy, `nosniff`, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: no-referrer` and same-origin CORP/COOP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// The Content-Security-Policy of responses that are not pages.
pub const NO_CONTENT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// What a server answers to, and the policy of its responses.
#[derive(Debug, Clone)]
pub struct Site {
    /// Names it answers to besides its listen address and the loopback
    /// names.
    pub allowed_hosts: Vec<String>,
    /// The Content-Security-Policy of its responses.
    pub csp: &'static str,
    /// What a refused `Host` is told to do to reach it by that name.
    pub allow_hint: String,
}

/// Serves `app` on `listener` until `shutdown`, behind the `Host` rule and
/// the security headers of this module.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    site: Site,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let bound = listener.local_addr()?;
    let rule = Arc::new(Rule {
        hosts: HostRule::new(bound, &site.allowed_hosts),
        csp: site.csp,
        allow_hint: site.allow_hint,
    });
    let app = app.layer(axum::middleware::from_fn_with_state(rule, guard));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

struct Rule {
    hosts: HostRule,
    csp: &'static str,
    allow_hint: String,
}

async fn guard(State(rule): State<Arc<Rule>>, request: Request, next: Next) -> Response {
    let mut response = match request.headers().get(header::HOST).map(|v| v.to_str()) {
        Some(Ok(host)) if rule.hosts.allows(host) => next.run(request).await,
        Some(Ok(host)) => refused(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server answers only to {} (the request named {:?}); a page under another \
                 name may be a DNS-rebinding attack; to reach it by that name, {}",
                rule.hosts.describe(),
                clip(host, 100),
                rule.allow_hint,
            ),
        ),
        Some(Err(_)) | None => refused(
            StatusCode::BAD_REQUEST,
            "the request has no readable Host header".into(),
        ),
    };
    add_security_headers(response.headers_mut(), rule.csp);
    response
}

/// A refusal, as JSON (`{"error": ...}`) like every API error.
fn refused(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

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

/// The `Host` values a server answers to.
#[derive(Debug, Clone)]
pub struct HostRule {
    /// The address it is bound to.
    bound: SocketAddr,
    /// Allowed names, lower case, without a port.
    allowed: Vec<String>,
}

impl HostRule {
    /// The rule for a server bound to `bound` that also answers to `allowed`.
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
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
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
}
