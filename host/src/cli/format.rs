//! How the CLI writes times, durations and sizes for people, and JSON for
//! scripts (`--json`).

use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::parse::Failure;

/// Prints `value` as one line of JSON (what `--json` promises).
pub(crate) fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    println!("{}", serde_json::to_string(value).context("encoding JSON")?);
    Ok(())
}

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const LAST_PRINTABLE_MS: i64 = 253_402_300_799_999;

/// A unix-ms time as RFC 3339 (UTC, seconds). Any stored value prints:
/// times before 1970 as 1970, times past year 9999 as a note.
pub(crate) fn time(ms: i64) -> String {
    rfc3339(ms, false)
}

/// A unix-ms time as RFC 3339 (UTC, milliseconds), like [`time`].
pub(crate) fn time_millis(ms: i64) -> String {
    rfc3339(ms, true)
}

fn rfc3339(ms: i64, millis: bool) -> String {
    if ms > LAST_PRINTABLE_MS {
        return format!("after the year 9999 ({ms} ms since 1970)");
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    if millis {
        humantime::format_rfc3339_millis(at).to_string()
    } else {
        humantime::format_rfc3339_seconds(at).to_string()
    }
}

/// Text from Redis made safe for a terminal: control characters (newlines,
/// escape sequences) are written escaped, and text longer than `max_chars`
/// is cut with `...`.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A duration in ms, rounded for reading: `850ms`, `12s`, `3m 20s`.
pub(crate) fn age(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let rounded = if ms < 1000 { ms } else { ms / 1000 * 1000 };
    humantime::format_duration(Duration::from_millis(rounded)).to_string()
}

/// A byte count: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub(crate) fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A count of microseconds for reading: `420µs`, `12.5ms`, `2.1s`.
pub(crate) fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1000.0),
        _ => format!("{:.1}s", us as f64 / 1_000_000.0),
    }
}

/// A large count with a metric suffix: `950`, `12.3k`, `4.5M`, `1.2G`.
pub(crate) fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// The STATE and six count columns that queue tables share: `running` or
/// `paused`, then pending, active, scheduled, retry, archived, completed.
pub(crate) fn queue_state_and_counts(
    paused: bool,
    counts: &crate::broker::QueueCounts,
) -> Vec<String> {
    vec![
        if paused { "paused" } else { "running" }.to_string(),
        counts.pending.to_string(),
        counts.active.to_string(),
        counts.scheduled.to_string(),
        counts.retry.to_string(),
        counts.archived.to_string(),
        counts.completed.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_stored_time_prints() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(-5), "1970-01-01T00:00:00Z");
        assert!(time(i64::MAX).contains("after the year 9999"));
        assert!(time_millis(18_446_744_073_709_551_615f64 as i64).contains("9999"));
        assert_eq!(time_millis(LAST_PRINTABLE_MS), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn printable_escapes_control_characters_and_cuts_long_text() {
        assert_eq!(printable("a\nb\u{1b}[2J", 100), "a\\nb\\u{1b}[2J");
        assert_eq!(printable(&"x".repeat(10), 4), "xxxx...");
        assert_eq!(printable("short", 4_000), "short");
    }

    #[test]
    fn values_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(age(850), "850ms");
        assert_eq!(age(200_500), "3m 20s");
        assert_eq!(micros(12_500), "12.5ms");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
    }
}
