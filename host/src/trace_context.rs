//! The W3C trace context a task carries (`traceparent`, and optionally
//! `tracestate`): set by its producer or inherited from the attempt that
//! enqueued it, read by the worker as the parent of its attempt spans.
//! Checked here without any tracing library, so producers built without the
//! `otel` feature attach and validate contexts too.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest `tracestate` accepted, in bytes (the W3C limit is 32 members
/// of at most 256 bytes each; 512 bytes is what propagators must keep).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A W3C trace context: the `traceparent` of the span a task descends from,
/// with the vendors' `tracestate` if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl TraceContext {
    /// Checks `traceparent` (version `00`: `00-<32 hex trace id>-<16 hex
    /// span id>-<2 hex flags>`, lowercase, ids not all zero) and
    /// `tracestate` (printable ASCII, at most [`MAX_TRACESTATE_BYTES`]).
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<Self, String> {
        let context = TraceContext {
            traceparent: traceparent.trim().to_string(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|state| !state.is_empty())
                .map(str::to_string),
        };
        context.check()?;
        Ok(context)
    }

    /// A context naming span `span_id` (16 hex digits) of trace `trace_id`
    /// (32 hex digits), sampled or not.
    pub fn from_ids(trace_id: &str, span_id: &str, sampled: bool) -> Result<Self, String> {
        let flags = if sampled { "01" } else { "00" };
        Self::new(&format!("00-{trace_id}-{span_id}-{flags}"), None)
    }

    /// The same context with `tracestate`.
    pub fn with_tracestate(mut self, tracestate: Option<String>) -> Result<Self, String> {
        self.tracestate = tracestate.filter(|state| !state.is_empty());
        self.check()?;
        Ok(self)
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id (32 lowercase hex digits).
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The parent span's id (16 lowercase hex digits).
    pub fn span_id(&self) -> &str {
        self.traceparent.get(36..52).unwrap_or_default()
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.traceparent
            .get(53..55)
            .and_then(|flags| u8::from_str_radix(flags, 16).ok())
            .unwrap_or(0)
    }

    /// Whether this context is well formed (a stored message may hold
    /// anything: a reader checks before using it).
    pub fn check(&self) -> Result<(), String> {
        check_traceparent(&self.traceparent)?;
        if let Some(state) = &self.tracestate
            && (state.len() > MAX_TRACESTATE_BYTES
                || state.bytes().any(|byte| !(0x20..0x7f).contains(&byte)))
        {
            return Err(format!(
                "the tracestate {:?} must be printable ASCII of at most {MAX_TRACESTATE_BYTES} bytes (list-members such as vendor=value, separated by commas)",
                state.chars().take(64).collect::<String>()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent)
    }
}

/// Checks a version-00 `traceparent`.
fn check_traceparent(value: &str) -> Result<(), String> {
    let wrong = |why: &str| {
        Err(format!(
            "the traceparent {:?} {why}: give the W3C form 00-<32 hex digits trace id>-<16 hex digits parent span id>-<2 hex digits flags>, such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            value.chars().take(64).collect::<String>()
        ))
    };
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2) =>
        {
            if *version != "00" {
                return wrong("is of a version other than 00");
            }
            if trace.bytes().all(|byte| byte == b'0') {
                return wrong("has an all-zero trace id");
            }
            if span.bytes().all(|byte| byte == b'0') {
                return wrong("has an all-zero parent span id");
            }
            Ok(())
        }
        _ => wrong("is not well formed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_a_traceparent() {
        let context = TraceContext::new(GOOD, Some("vendor=x")).unwrap();
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id(), "00f067aa0ba902b7");
        assert_eq!(context.flags(), 1);
        assert_eq!(context.tracestate(), Some("vendor=x"));
        let json = serde_json::to_string(&context).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"traceparent":"{GOOD}","tracestate":"vendor=x"}}"#)
        );
    }

    #[test]
    fn refuses_what_is_not_a_version_00_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            let err = TraceContext::new(bad, None).unwrap_err();
            assert!(err.contains("W3C form"), "{bad:?}: {err}");
        }
        let err = TraceContext::new(GOOD, Some("a=\u{7}")).unwrap_err();
        assert!(err.contains("printable ASCII"), "{err}");
    }
}
