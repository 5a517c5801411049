//! Fleet-wide rate limits as people write them: a rate (`100/s`,
//! `20/10s`, `1000/h`), an optional burst, and an optional key path into
//! the payload (`$.tenant_id`) that gives every key a limit of its own.
//!
//! Only the description lives here (parsing, checking, finding a task's
//! key); the counting is `broker/rate_limits.rs` and
//! `scripts/rate_limit.lua`, the admission `worker/rate.rs`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most starts one limit counts per interval: the limiter keeps one
/// entry per start of the last interval.
pub const MAX_RATE_COUNT: u32 = 100_000;

/// The longest interval of a rate.
pub const MAX_RATE_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a rate limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateTarget {
    /// Every task of a type.
    TaskType(String),
    /// Every task of a queue.
    Queue(String),
}

impl RateTarget {
    /// The name the limit is stored under (`type:NAME` or `queue:NAME`).
    pub fn key(&self) -> String {
        match self {
            RateTarget::TaskType(name) => format!("type:{name}"),
            RateTarget::Queue(name) => format!("queue:{name}"),
        }
    }

    /// Reads a stored name back.
    pub fn from_key(key: &str) -> Option<RateTarget> {
        if let Some(name) = key.strip_prefix("type:") {
            Some(RateTarget::TaskType(name.to_string()))
        } else {
            key.strip_prefix("queue:")
                .map(|name| RateTarget::Queue(name.to_string()))
        }
    }
}

impl fmt::Display for RateTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateTarget::TaskType(name) => write!(f, "task type {name:?}"),
            RateTarget::Queue(name) => write!(f, "queue {name:?}"),
        }
    }
}

/// At most `count` starts in any window of `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Starts per interval.
    pub count: u32,
    /// The interval, ms.
    pub interval_ms: u64,
}

impl Rate {
    /// Parses `N/UNIT` (`100/s`, `5/min`, `1000/h`, `10/day`) or
    /// `N/DURATION` (`20/10s`, `3/250ms`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        const HOW: &str = "write it as COUNT/INTERVAL, such as 100/s, 20/10s, 5/min or 1000/h";
        let text = text.trim();
        let Some((count, per)) = text.split_once('/') else {
            return Err(format!("{text:?} is not a rate; {HOW}"));
        };
        let count: u64 = count
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{text:?} does not start with a whole count; {HOW}"))?;
        if count == 0 {
            return Err(format!(
                "{text:?} lets nothing start; a rate counts at least 1 start per interval ({HOW}); to stop a task type, pause its queue"
            ));
        }
        if count > u64::from(MAX_RATE_COUNT) {
            return Err(format!(
                "{text:?} counts more than {MAX_RATE_COUNT} starts per interval; write it over a shorter interval (e.g. 1000/10ms is 100000/s)"
            ));
        }
        let per = per.trim();
        let interval = match per {
            "ms" | "millisecond" => Duration::from_millis(1),
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other)
                .map_err(|_| format!("{text:?} has no interval we know ({other:?}); {HOW}"))?,
        };
        if interval < Duration::from_millis(1) {
            return Err(format!("{text:?}: the interval must be at least 1ms"));
        }
        if interval > MAX_RATE_INTERVAL {
            return Err(format!(
                "{text:?}: the interval is longer than a week; write the rate per day or per hour"
            ));
        }
        Ok(Rate {
            count: count as u32,
            interval_ms: interval.as_millis() as u64,
        })
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.interval_ms {
            1000 => "s".to_string(),
            60_000 => "min".to_string(),
            3_600_000 => "h".to_string(),
            86_400_000 => "day".to_string(),
            ms => humantime::format_duration(Duration::from_millis(ms)).to_string(),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A simple JSON path into a task's payload: `$` then fields (`.name` or
/// `["any name"]`) and array indexes (`[0]`), such as `$.tenant_id`,
/// `$.customer.id` or `$.items[0].sku`. It names one value; a string,
/// number or boolean there is the task's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    steps: Vec<Step>,
}

impl KeyPath {
    /// Parses a key path.
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        const HOW: &str =
            "write a path such as $.tenant_id, $.customer.id, $.items[0].sku or $[\"tenant id\"]";
        let text = text.trim();
        let Some(rest) = text.strip_prefix('$') else {
            return Err(format!("key path {text:?} must start with $; {HOW}"));
        };
        let mut steps = Vec::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '.' => {
                    let mut name = String::new();
                    while let Some(&(_, c)) = chars.peek() {
                        if c.is_alphanumeric() || c == '_' || c == '-' {
                            name.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if name.is_empty() {
                        return Err(format!(
                            "key path {text:?} has a `.` without a field name after it (at byte {}); {HOW}",
                            at + 1
                        ));
                    }
                    steps.push(Step::Field(name));
                }
                '[' => {
                    let close = rest[at..].find(']').map(|i| at + i).ok_or_else(|| {
                        format!("key path {text:?} opens a `[` it never closes; {HOW}")
                    })?;
                    let inside = rest[at + 1..close].trim();
                    let step = if let Ok(index) = inside.parse::<usize>() {
                        Step::Index(index)
                    } else if inside.len() >= 2
                        && ((inside.starts_with('"') && inside.ends_with('"'))
                            || (inside.starts_with('\'') && inside.ends_with('\'')))
                    {
                        Step::Field(inside[1..inside.len() - 1].to_string())
                    } else {
                        return Err(format!(
                            "key path {text:?}: [{inside}] is neither an index nor a quoted field name; {HOW}"
                        ));
                    };
                    steps.push(step);
                    while chars.peek().is_some_and(|&(i, _)| i <= close) {
                        chars.next();
                    }
                }
                other => {
                    return Err(format!(
                        "key path {text:?} has {other:?} where a `.field` or `[index]` goes; {HOW}"
                    ));
                }
            }
        }
        if steps.is_empty() {
            return Err(format!(
                "key path {text:?} names the whole payload, not a value in it; {HOW}"
            ));
        }
        Ok(KeyPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key this path finds in `payload`: the text of a string, or the
    /// JSON of a number or boolean. `None` when it finds nothing there (or
    /// null, an object or an array).
    pub fn key_of(&self, payload: &serde_json::Value) -> Option<String> {
        let mut value = payload;
        for step in &self.steps {
            value = match step {
                Step::Field(name) => value.as_object()?.get(name)?,
                Step::Index(index) => value.as_array()?.get(*index)?,
            };
        }
        match value {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            serde_json::Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }
}

impl Serialize for KeyPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for KeyPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A fleet-wide rate limit: at most `rate.count` starts in any window of
/// `rate.interval`, at most `burst` of them back to back, counted per key
/// when `key` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// How many starts per interval.
    pub rate: Rate,
    /// How many may start back to back (at most `rate.count`; with fewer,
    /// starts are spread at one per `interval / count` once a burst is
    /// spent).
    pub burst: u32,
    /// The payload path whose value each task is counted under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyPath>,
}

impl RateLimit {
    /// A limit of `rate`, with `burst` (default: the whole count) and
    /// `key`, checked.
    pub fn new(rate: Rate, burst: Option<u32>, key: Option<KeyPath>) -> Result<RateLimit, String> {
        let burst = burst.unwrap_or(rate.count);
        if burst < 1 {
            return Err(format!(
                "a burst of {burst} lets nothing start; write --burst 1 (starts evenly spread) up to --burst {} (the whole count at once)",
                rate.count
            ));
        }
        if burst > rate.count {
            return Err(format!(
                "a burst of {burst} is more than the {} starts {rate} allows in an interval; write --burst {} or less, or raise the rate",
                rate.count, rate.count
            ));
        }
        Ok(RateLimit { rate, burst, key })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rate)?;
        if self.burst != self.rate.count {
            write!(f, " burst {}", self.burst)?;
        }
        if let Some(key) = &self.key {
            write!(f, " per {}", key.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rate(count: u32, ms: u64) -> Rate {
        Rate {
            count,
            interval_ms: ms,
        }
    }

    #[test]
    fn rates_parse_with_units_and_durations() {
        assert_eq!(Rate::parse("100/s"), Ok(rate(100, 1000)));
        assert_eq!(Rate::parse(" 5/min "), Ok(rate(5, 60_000)));
        assert_eq!(Rate::parse("1_000/h"), Ok(rate(1000, 3_600_000)));
        assert_eq!(Rate::parse("10/day"), Ok(rate(10, 86_400_000)));
        assert_eq!(Rate::parse("20/10s"), Ok(rate(20, 10_000)));
        assert_eq!(Rate::parse("3/250ms"), Ok(rate(3, 250)));
        assert_eq!(Rate::parse("1/1m30s"), Ok(rate(1, 90_000)));
        assert_eq!(Rate::parse("100/s").unwrap().to_string(), "100/s");
        assert_eq!(Rate::parse("20/10s").unwrap().to_string(), "20/10s");
    }

    #[test]
    fn bad_rates_say_what_to_write() {
        let zero = Rate::parse("0/s").unwrap_err();
        assert!(zero.contains("lets nothing start"), "{zero}");
        assert!(zero.contains("100/s"), "{zero}");
        let word = Rate::parse("fast").unwrap_err();
        assert!(word.contains("is not a rate"), "{word}");
        assert!(word.contains("COUNT/INTERVAL"), "{word}");
        assert!(Rate::parse("x/s").unwrap_err().contains("whole count"));
        assert!(Rate::parse("-1/s").unwrap_err().contains("whole count"));
        assert!(Rate::parse("1.5/s").unwrap_err().contains("whole count"));
        assert!(
            Rate::parse("10/fortnight")
                .unwrap_err()
                .contains("no interval")
        );
        assert!(Rate::parse("10/0s").unwrap_err().contains("at least 1ms"));
        assert!(Rate::parse("10/30days").unwrap_err().contains("a week"));
        assert!(
            Rate::parse("1000000/s")
                .unwrap_err()
                .contains("more than 100000")
        );
        assert!(Rate::parse("99999999999999999999999/s").is_err());
    }

    #[test]
    fn bursts_lie_between_one_and_the_count() {
        let r = rate(10, 1000);
        assert_eq!(RateLimit::new(r, None, None).unwrap().burst, 10);
        assert_eq!(RateLimit::new(r, Some(1), None).unwrap().burst, 1);
        let none = RateLimit::new(r, Some(0), None).unwrap_err();
        assert!(none.contains("--burst 1"), "{none}");
        let over = RateLimit::new(r, Some(11), None).unwrap_err();
        assert!(over.contains("--burst 10 or less"), "{over}");
    }

    #[test]
    fn key_paths_find_scalars_in_payloads() {
        let payload = json!({
            "tenant_id": "acme",
            "customer": {"id": 42, "vip": true},
            "items": [{"sku": "a-1"}],
            "odd key": "x",
            "nothing": null,
            "nested": {"deep": {}}
        });
        let key = |path: &str| KeyPath::parse(path).unwrap().key_of(&payload);
        assert_eq!(key("$.tenant_id").as_deref(), Some("acme"));
        assert_eq!(key("$.customer.id").as_deref(), Some("42"));
        assert_eq!(key("$.customer.vip").as_deref(), Some("true"));
        assert_eq!(key("$.items[0].sku").as_deref(), Some("a-1"));
        assert_eq!(key("$[\"odd key\"]").as_deref(), Some("x"));
        assert_eq!(key("$['customer']['id']").as_deref(), Some("42"));
        // Nothing there, or nothing usable as a key.
        assert_eq!(key("$.tenant"), None);
        assert_eq!(key("$.items[3].sku"), None);
        assert_eq!(key("$.tenant_id.inner"), None);
        assert_eq!(key("$.nothing"), None);
        assert_eq!(key("$.nested.deep"), None);
        assert_eq!(key("$.items"), None);
        assert_eq!(
            KeyPath::parse("$.tenant_id").unwrap().as_str(),
            "$.tenant_id"
        );
    }

    #[test]
    fn bad_key_paths_say_what_to_write() {
        for (path, says) in [
            ("tenant_id", "must start with $"),
            ("$", "whole payload"),
            ("$.", "without a field name"),
            ("$.a..b", "without a field name"),
            ("$.items[0", "never closes"),
            ("$.items[x]", "neither an index nor a quoted field"),
            ("$.a b", "where a `.field` or `[index]` goes"),
        ] {
            let error = KeyPath::parse(path).unwrap_err();
            assert!(error.contains(says), "{path}: {error}");
            assert!(error.contains("$.tenant_id"), "{path}: {error}");
        }
    }

    #[test]
    fn limits_round_trip_through_json() {
        let limit = RateLimit::new(
            rate(100, 1000),
            Some(20),
            Some(KeyPath::parse("$.tenant_id").unwrap()),
        )
        .unwrap();
        let json = serde_json::to_string(&limit).unwrap();
        assert_eq!(
            json,
            r#"{"rate":{"count":100,"interval_ms":1000},"burst":20,"key":"$.tenant_id"}"#
        );
        assert_eq!(serde_json::from_str::<RateLimit>(&json).unwrap(), limit);
        assert_eq!(limit.to_string(), "100/s burst 20 per $.tenant_id");
        assert_eq!(
            RateTarget::from_key(&RateTarget::Queue("q".into()).key()),
            Some(RateTarget::Queue("q".into()))
        );
        assert_eq!(
            RateTarget::from_key("type:a:b"),
            Some(RateTarget::TaskType("a:b".into()))
        );
    }
}
