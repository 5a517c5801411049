//! The budget one task gets inside its sandbox.

use std::time::Duration;

/// Per-task limits. Every one is finite by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Units of fuel (roughly, Wasm instructions) an attempt may burn;
    /// `None` means unmetered (only when the sandbox meters no fuel).
    pub fuel: Option<u64>,
    /// Wall-clock time an attempt may run, instantiation included.
    pub timeout: Duration,
    /// Bytes of linear memory the instance may hold.
    pub memory_bytes: u64,
    /// Bytes the result may have.
    pub max_result_bytes: usize,
    /// Bytes of log lines an attempt may write; further lines are dropped
    /// and counted.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(100_000_000_000),
            timeout: Duration::from_secs(60),
            memory_bytes: 128 * 1024 * 1024,
            max_result_bytes: 1024 * 1024,
            max_log_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// These limits narrowed for one attempt: the attempt may not run past
    /// `timeout` nor past `remaining` (time left before the task's deadline).
    pub fn narrowed(&self, timeout: Option<Duration>, remaining: Option<Duration>) -> Limits {
        let mut limits = self.clone();
        for bound in [timeout, remaining].into_iter().flatten() {
            limits.timeout = limits.timeout.min(bound);
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_of_timeout_deadline_and_plugin_limit_wins() {
        let plugin = Limits {
            timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(plugin.narrowed(None, None).timeout, Duration::from_secs(60));
        assert_eq!(
            plugin.narrowed(secs(30), None).timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            plugin.narrowed(secs(30), secs(5)).timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            plugin.narrowed(secs(5), secs(30)).timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            plugin.narrowed(secs(600), None).timeout,
            Duration::from_secs(60)
        );
    }
}
