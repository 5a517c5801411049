//! Run statistics per plugin and task type: runs, failures by class, and
//! fuel and time histograms. Workers count in memory and add their counts
//! to Redis every few seconds; `wasmq plugin stats` and the dashboard sum
//! them up across the fleet.
//!
//! Fields of a plugin's HASH (`wasmq:{fleet}:plugin-stats:<plugin>`):
//! `<type>|runs`, `<type>|ok`, `<type>|fail|<class>`, `<type>|fuel|<k>` and
//! `<type>|us|<k>`, where `<k>` is a power-of-two bucket: values from
//! 2^(k-1) up to 2^k - 1 (fuel units, microseconds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::task::FailureKind;

/// The power-of-two bucket of a value: 0 for 0, else its bit length.
pub fn bucket(value: u64) -> u32 {
    64 - value.leading_zeros()
}

/// The largest value a bucket holds.
pub fn bucket_ceiling(bucket: u32) -> u64 {
    match bucket {
        0 => 0,
        64.. => u64::MAX,
        k => (1u64 << k) - 1,
    }
}

/// Counts kept in memory until the next flush.
#[derive(Default)]
pub struct PluginStats {
    pending: Mutex<Pending>,
}

/// What `PluginStats` holds: counts by plugin and task type (updated in
/// place, without allocating, for every attempt), and counts a failed flush
/// put back, already as fields.
#[derive(Default)]
struct Pending {
    counts: HashMap<String, HashMap<String, TypeCounts>>,
    returned: HashMap<String, HashMap<String, u64>>,
}

/// One task type's counts since the last flush.
struct TypeCounts {
    runs: u64,
    ok: u64,
    /// By failure class.
    failures: BTreeMap<&'static str, u64>,
    /// By power-of-two bucket (`bucket`).
    fuel: [u64; 65],
    micros: [u64; 65],
}

impl Default for TypeCounts {
    fn default() -> Self {
        TypeCounts {
            runs: 0,
            ok: 0,
            failures: BTreeMap::new(),
            fuel: [0; 65],
            micros: [0; 65],
        }
    }
}

impl TypeCounts {
    /// Adds these counts to `fields`, as the fields of a plugin's hash.
    fn add_to(&self, task_type: &str, fields: &mut HashMap<String, u64>) {
        let mut add = |field: String, count: u64| {
            if count > 0 {
                *fields.entry(field).or_default() += count;
            }
        };
        add(format!("{task_type}|runs"), self.runs);
        add(format!("{task_type}|ok"), self.ok);
        for (class, count) in &self.failures {
            add(format!("{task_type}|fail|{class}"), *count);
        }
        for (k, count) in self.fuel.iter().enumerate() {
            add(format!("{task_type}|fuel|{k}"), *count);
        }
        for (k, count) in self.micros.iter().enumerate() {
            add(format!("{task_type}|us|{k}"), *count);
        }
    }
}

impl PluginStats {
    /// Counts one attempt of `task_type` on `plugin`.
    pub fn record(
        &self,
        plugin: &str,
        task_type: &str,
        failure: Option<FailureKind>,
        fuel: Option<u64>,
        duration: Duration,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let by_type = match pending.counts.get_mut(plugin) {
            Some(by_type) => by_type,
            None => pending.counts.entry(plugin.to_string()).or_default(),
        };
        let counts = match by_type.get_mut(task_type) {
            Some(counts) => counts,
            None => by_type.entry(task_type.to_string()).or_default(),
        };
        counts.runs += 1;
        match failure {
            None => counts.ok += 1,
            Some(kind) => *counts.failures.entry(kind.as_str()).or_default() += 1,
        }
        if let Some(fuel) = fuel {
            counts.fuel[bucket(fuel) as usize] += 1;
        }
        counts.micros[bucket(duration.as_micros() as u64) as usize] += 1;
    }

    /// Takes the counts gathered since the last call, as the fields of each
    /// plugin's hash.
    pub fn take(&self) -> HashMap<String, HashMap<String, u64>> {
        let Pending { counts, returned } =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut fields = returned;
        for (plugin, by_type) in counts {
            let into = fields.entry(plugin).or_default();
            for (task_type, counts) in by_type {
                counts.add_to(&task_type, into);
            }
        }
        fields
    }

    /// Puts counts back (a flush failed); they go out with the next one.
    pub fn restore(&self, counts: HashMap<String, HashMap<String, u64>>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (plugin, fields) in counts {
            let into = pending.returned.entry(plugin).or_default();
            for (field, count) in fields {
                *into.entry(field).or_default() += count;
            }
        }
    }
}

/// What one task type of one plugin did, summed over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeStats {
    /// The plugin.
    pub plugin: String,
    /// The task type.
    pub task_type: String,
    /// Attempts run.
    pub runs: u64,
    /// Attempts that completed.
    pub ok: u64,
    /// Failed attempts by class.
    pub failures: BTreeMap<String, u64>,
    /// Median fuel burned (upper bound of its power-of-two bucket).
    pub fuel_p50: Option<u64>,
    /// 99th percentile of fuel burned (upper bound of its bucket).
    pub fuel_p99: Option<u64>,
    /// Median attempt time, µs (upper bound of its bucket).
    pub time_p50_us: Option<u64>,
    /// 99th percentile of attempt time, µs (upper bound of its bucket).
    pub time_p99_us: Option<u64>,
}

/// Power-of-two bucket -> count.
type Buckets = BTreeMap<u32, u64>;

/// Sums a plugin's fields into one [`TypeStats`] per task type.
pub fn summarize(plugin: &str, fields: &HashMap<String, u64>) -> Vec<TypeStats> {
    let mut types: BTreeMap<String, (TypeStats, Buckets, Buckets)> = BTreeMap::new();
    for (field, count) in fields {
        let mut parts = field.splitn(3, '|');
        let (Some(task_type), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let rest = parts.next();
        let (stats, fuel, time) = types.entry(task_type.to_string()).or_insert_with(|| {
            (
                TypeStats {
                    plugin: plugin.to_string(),
                    task_type: task_type.to_string(),
                    ..TypeStats::default()
                },
                BTreeMap::new(),
                BTreeMap::new(),
            )
        });
        match (what, rest) {
            ("runs", None) => stats.runs += count,
            ("ok", None) => stats.ok += count,
            ("fail", Some(class)) => *stats.failures.entry(class.to_string()).or_default() += count,
            ("fuel", Some(k)) => {
                if let Ok(k) = k.parse() {
                    *fuel.entry(k).or_default() += count;
                }
            }
            ("us", Some(k)) => {
                if let Ok(k) = k.parse() {
                    *time.entry(k).or_default() += count;
                }
            }
            _ => {}
        }
    }
    types
        .into_values()
        .map(|(mut stats, fuel, time)| {
            stats.fuel_p50 = percentile(&fuel, 0.5);
            stats.fuel_p99 = percentile(&fuel, 0.99);
            stats.time_p50_us = percentile(&time, 0.5);
            stats.time_p99_us = percentile(&time, 0.99);
            stats
        })
        .collect()
}

/// The upper bound of the bucket holding the `p` quantile.
fn percentile(buckets: &Buckets, p: f64) -> Option<u64> {
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, count) in buckets {
        seen += count;
        if seen >= rank {
            return Some(bucket_ceiling(*k));
        }
    }
    buckets.keys().last().map(|k| bucket_ceiling(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(
            (bucket(0), bucket(1), bucket(2), bucket(3), bucket(4)),
            (0, 1, 2, 2, 3)
        );
        assert_eq!(bucket_ceiling(bucket(1000)), 1023);
        assert_eq!(bucket_ceiling(64), u64::MAX);
    }

    #[test]
    fn recorded_attempts_summarize_into_runs_failures_and_percentiles() {
        let stats = PluginStats::default();
        for _ in 0..98 {
            stats.record("echo", "echo", None, Some(1000), Duration::from_micros(300));
        }
        stats.record(
            "echo",
            "echo",
            Some(FailureKind::OutOfFuel),
            Some(1_000_000),
            Duration::from_millis(20),
        );
        stats.record(
            "echo",
            "echo",
            Some(FailureKind::Timeout),
            None,
            Duration::from_millis(20),
        );
        let counts = stats.take();
        assert!(stats.take().is_empty(), "take empties the counts");
        let summary = summarize("echo", &counts["echo"]);
        assert_eq!(summary.len(), 1);
        let echo = &summary[0];
        assert_eq!((echo.runs, echo.ok), (100, 98));
        assert_eq!(echo.failures["out-of-fuel"], 1);
        assert_eq!(echo.failures["timeout"], 1);
        assert_eq!(echo.fuel_p50, Some(1023));
        assert_eq!(
            echo.fuel_p99,
            Some(1_048_575),
            "the 99th of 99 fuel samples is the big one"
        );
        assert_eq!(echo.time_p50_us, Some(511));
        assert_eq!(echo.time_p99_us, Some(32767));
    }
}
