//! What a plugin may do beyond computing: the capabilities its manifest
//! grants, resolved, and the services the host provides for them.
//!
//! The sandbox knows nothing of Redis: the key-value store and enqueuing
//! reach the outside world through [`Services`], which the worker
//! implements with the broker.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

/// The capabilities of one plugin. Everything is off by default.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Real clocks; otherwise a fixed wall clock and a monotonic clock that
    /// only ticks when read.
    pub clocks: bool,
    /// Real randomness; otherwise a generator seeded by the task id.
    pub random: bool,
    /// Environment values the plugin sees (environment and secrets).
    pub env: Vec<(String, String)>,
    /// Outgoing HTTP.
    pub http: Option<HttpGrant>,
    /// Enqueuing follow-up tasks.
    pub enqueue: Option<EnqueueGrant>,
    /// A key-value store of the plugin's own.
    pub kv: Option<KvGrant>,
}

/// Outgoing HTTP to listed hosts.
#[derive(Debug, Clone)]
pub struct HttpGrant {
    /// The hosts it may reach.
    pub allow: Vec<HostPattern>,
    /// The largest response body, bytes.
    pub max_response_bytes: u64,
    /// How long to wait to connect, for the first byte, and between bytes.
    pub timeout: Duration,
    /// The plugin's pooled client, which sends what the allow list admits.
    pub client: super::outgoing::OutgoingHttp,
}

/// A host a plugin may reach: an exact name or `*.` and a domain, and an
/// optional port (any port when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.domain` or `*.domain:port`.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let text = text.trim();
        if text.contains("://") || text.contains('/') || text.is_empty() {
            return Err(format!(
                "{text:?} is not a host: write a name such as api.example.com, *.example.com or 127.0.0.1:8080 (no scheme, no path)"
            ));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?} has a port that is not a number"))?;
                (host, Some(port))
            }
            _ => (text, None),
        };
        let bare = host.strip_prefix("*.").unwrap_or(host);
        if bare.is_empty()
            || !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(format!("{text:?} is not a host name or address"));
        }
        Ok(HostPattern {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `host` on `port` is allowed by this pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|allowed| allowed != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Enqueuing follow-up tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueGrant {
    /// Tasks one attempt may enqueue.
    pub max_per_task: u32,
    /// Task types it may enqueue (empty: any).
    pub task_types: Vec<String>,
    /// Queues it may enqueue on (empty: any).
    pub queues: Vec<String>,
    /// The deepest generation below its root a follow-up may be (none:
    /// the worker's ceiling; the manifest can only lower it).
    pub max_depth: Option<u32>,
    /// Follow-ups one root may have across all generations and workers
    /// (none: the worker's ceiling; the manifest can only lower it).
    pub max_descendants: Option<u64>,
    /// Follow-ups the plugin may enqueue fleet-wide per period (none: the
    /// worker's ceiling; the manifest can only lower it).
    pub rate: Option<Rate>,
}

/// A rate: `count` events per `per`, written `100/s`, `5/min` or `20/10s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (also the largest burst).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `<count>/<period>`: the period is a unit (`s`, `min`, `h`) or
    /// a duration (`10s`, `500ms`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a rate ({why}): write a count per period, such as 100/s, 5/min or 20/10s"
            )
        };
        let (count, per) = text.trim().split_once('/').ok_or_else(|| bad("no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(per)
        } else {
            humantime::parse_duration(&format!("1{per}"))
        }
        .map_err(|_| bad("the period is not a duration"))?;
        if count == 0 || per.is_zero() || per > Duration::from_secs(86_400) {
            return Err(bad(
                "it needs a count above zero and a period from 1ms to 24h",
            ));
        }
        Ok(Rate { count, per })
    }

    /// Events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }

    /// The lower of two rates.
    pub fn min(self, other: Rate) -> Rate {
        if other.per_second() < self.per_second() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_millis() {
            1000 => write!(f, "{}/s", self.count),
            60_000 => write!(f, "{}/min", self.count),
            3_600_000 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

/// Why the host did not enqueue a follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueError {
    /// A cap on follow-ups refused it (depth, descendants, rate, a stopped
    /// tree): the attempt fails as `denied`.
    Denied(String),
    /// The task was not accepted (a taken id, a bad payload, Redis away):
    /// the plugin is told and may go on.
    Failed(String),
}

impl std::fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnqueueError::Denied(message) | EnqueueError::Failed(message) => f.write_str(message),
        }
    }
}

/// A key-value store of the plugin's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvGrant {
    /// The largest value, bytes.
    pub max_value_bytes: usize,
    /// The most keys.
    pub max_keys: u64,
    /// The store it reaches: the plugin's identity (name and task-type
    /// set), never its name alone.
    pub store: String,
}

/// A follow-up task a plugin asked to enqueue, already checked against its
/// grant.
#[derive(Debug, Clone)]
pub struct FollowUpRequest {
    /// The task type.
    pub task_type: String,
    /// The payload (JSON text).
    pub payload: String,
    /// The queue.
    pub queue: String,
    /// Delay before it is due.
    pub delay: Option<Duration>,
    /// The id the plugin chose, if any.
    pub id: Option<String>,
}

/// How one child of a flow parent ended, as a plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildResult {
    /// The child's id.
    pub id: String,
    /// The child's queue.
    pub queue: String,
    /// The child's task type.
    pub task_type: String,
    /// Its result when it completed; why it did not, otherwise.
    pub outcome: Result<Vec<u8>, String>,
}

/// A flow a plugin starts, with what its grant allows.
#[derive(Debug, Clone)]
pub struct FlowRequest {
    /// The flow as JSON text (the shape of `wasmq flow add`).
    pub json: String,
    /// The queue of tasks that name none: the running task's.
    pub default_queue: String,
    /// The task types the grant allows (empty: any).
    pub task_types: Vec<String>,
    /// The queues the grant allows (empty: any).
    pub queues: Vec<String>,
    /// The most tasks the flow may hold: what is left of the attempt's
    /// quota.
    pub max_tasks: u32,
}

/// What the host does for plugins with `kv` and `enqueue`. Errors are
/// messages for the plugin.
pub trait Services: Send + Sync {
    /// The value of `key` in `plugin`'s store.
    fn kv_get(
        &self,
        plugin: String,
        key: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>>;
    /// Sets `key`, refusing a new key beyond `max_keys`.
    fn kv_set(
        &self,
        plugin: String,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Removes `key`; true if it was set.
    fn kv_delete(&self, plugin: String, key: String) -> BoxFuture<'static, Result<bool, String>>;
    /// Adds `by` to the integer at `key`, refusing a new key beyond `max_keys`.
    fn kv_increment(
        &self,
        plugin: String,
        key: String,
        by: i64,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<i64, String>>;
    /// Enqueues a follow-up task; returns its id.
    fn enqueue(&self, task: FollowUpRequest) -> BoxFuture<'static, Result<String, EnqueueError>>;
    /// Starts a flow; returns its root's id and how many tasks it holds.
    fn start_flow(
        &self,
        flow: FlowRequest,
    ) -> BoxFuture<'static, Result<(String, u32), EnqueueError>> {
        let _ = flow;
        Box::pin(async {
            Err(EnqueueError::Failed(
                "no queue is available here".to_string(),
            ))
        })
    }
    /// Holds children added to the running task, enqueued if its attempt
    /// succeeds; returns how many tasks they hold.
    fn add_children(&self, flow: FlowRequest) -> BoxFuture<'static, Result<u32, EnqueueError>> {
        let _ = flow;
        Box::pin(async {
            Err(EnqueueError::Failed(
                "no queue is available here".to_string(),
            ))
        })
    }
    /// The outcomes of the running task's children (a flow parent's), in
    /// order.
    fn children(&self) -> Vec<ChildResult> {
        Vec::new()
    }
    /// Keeps `report` (JSON) as the progress of task `id` of `queue`
    /// (default: not kept).
    fn progress(
        &self,
        queue: String,
        id: String,
        report: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        let _ = (queue, id, report);
        Box::pin(async { Ok(()) })
    }
    /// Renews the lease of running task `id` of `queue` now (its handler's
    /// heartbeat; default: nothing to renew).
    fn heartbeat(&self, queue: String, id: String) -> BoxFuture<'static, Result<(), String>> {
        let _ = (queue, id);
        Box::pin(async { Ok(()) })
    }
    /// Traces the attempt's outgoing HTTP requests, when the worker traces
    /// (default: not traced).
    fn http_tracing(&self) -> Option<Arc<dyn HttpTracing>> {
        None
    }
}

/// Traces an attempt's outgoing `wasi:http` requests: a span per request,
/// whose context the request carries as its `traceparent` header.
pub trait HttpTracing: Send + Sync {
    /// A request is about to be sent.
    fn request(&self, method: &http::Method, uri: &http::Uri) -> Box<dyn HttpSpan>;
}

/// The span of one outgoing request.
pub trait HttpSpan: Send {
    /// The `traceparent` header the request carries (naming this span).
    fn traceparent(&self) -> String;
    /// The `tracestate` header it carries, if any.
    fn tracestate(&self) -> Option<String>;
    /// The response's status arrived (`Ok`), or the request failed (`Err`).
    fn end(self: Box<Self>, status: Result<u16, String>);
}

/// No services: every call fails. For sandboxes run without Redis.
pub struct NoServices;

impl Services for NoServices {
    fn kv_get(&self, _: String, _: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        Box::pin(async { Err("no key-value store is available here".to_string()) })
    }
    fn kv_set(
        &self,
        _: String,
        _: String,
        _: Vec<u8>,
        _: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("no key-value store is available here".to_string()) })
    }
    fn kv_delete(&self, _: String, _: String) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async { Err("no key-value store is available here".to_string()) })
    }
    fn kv_increment(
        &self,
        _: String,
        _: String,
        _: i64,
        _: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        Box::pin(async { Err("no key-value store is available here".to_string()) })
    }
    fn enqueue(&self, _: FollowUpRequest) -> BoxFuture<'static, Result<String, EnqueueError>> {
        Box::pin(async {
            Err(EnqueueError::Failed(
                "no queue is available here".to_string(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_names_ports_and_subdomains() {
        let exact = HostPattern::parse("api.example.com").unwrap();
        assert!(exact.matches("api.example.com", 443));
        assert!(exact.matches("API.example.com", 80));
        assert!(!exact.matches("evil.com", 443));
        assert!(!exact.matches("api.example.com.evil.com", 443));
        let port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(port.matches("127.0.0.1", 8080));
        assert!(!port.matches("127.0.0.1", 8081));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com", 443));
        assert!(!wild.matches("example.com", 443));
        assert!(!wild.matches("aexample.com", 443));
        for bad in ["http://x.com", "x.com/path", "", "x.com:port", "sp ace"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_parse_print_and_compare() {
        let per_second = Rate::parse("100/s").unwrap();
        assert_eq!(per_second.count, 100);
        assert_eq!(per_second.per, Duration::from_secs(1));
        assert_eq!(per_second.to_string(), "100/s");
        assert_eq!(Rate::parse("5/min").unwrap().to_string(), "5/min");
        let ten = Rate::parse("20/10s").unwrap();
        assert_eq!(ten.per, Duration::from_secs(10));
        assert_eq!(ten.to_string(), "20/10s");
        assert_eq!(per_second.min(ten), ten);
        assert_eq!(ten.min(per_second), ten);
        for bad in ["", "100", "0/s", "x/s", "10/parsec", "1/0s", "5/2d"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }
}
