//! Throughput history: per queue, the attempts that completed and failed
//! in each minute of the last day, kept in Redis so that the dashboard's
//! chart and `wasmq stats --history` have a past the moment they open.
//!
//! Nothing on the task path writes it: the worker that takes the trim turn
//! samples each queue's daily counters once a minute
//! (`history_record.lua`), and the reader turns consecutive samples into
//! counts per interval. A queue no worker serves has no samples (and no
//! throughput to show).

use serde::Serialize;

use super::keys::QueueKeys;
use super::scripts::SCRIPTS;
use super::{Broker, Error};

/// Samples kept per queue: a day of minutes, and some.
const SAMPLES_KEPT: usize = 1_500;

/// The LIST of a queue's samples.
pub fn history_key(queue: &str) -> String {
    format!("wasmq:{{{queue}}}:history")
}

/// The attempts that ended in one interval of a queue's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// When the interval ended (unix ms, Redis's clock).
    pub end_ms: i64,
    /// How long it was, ms (about a minute; longer across a gap in
    /// sampling, when no worker ran).
    pub length_ms: i64,
    /// Attempts that completed in it.
    pub processed: u64,
    /// Attempts that failed in it.
    pub failed: u64,
}

/// One sample: the day's counts at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at_ms: i64,
    day: i64,
    processed: u64,
    failed: u64,
}

impl Sample {
    fn parse(text: &str) -> Option<Sample> {
        let mut parts = text.split(' ');
        let mut next = || parts.next();
        Some(Sample {
            at_ms: next()?.parse().ok()?,
            day: next()?.parse().ok()?,
            processed: next()?.parse().ok()?,
            failed: next()?.parse().ok()?,
        })
    }
}

/// The intervals between consecutive samples (oldest first). Counters
/// start again at zero each UTC day: across midnight, an interval counts
/// what the new day has (the old day's last moments are not seen).
fn intervals(samples: &[Sample]) -> Vec<Interval> {
    samples
        .windows(2)
        .filter(|pair| pair[1].at_ms > pair[0].at_ms)
        .map(|pair| {
            let (before, after) = (pair[0], pair[1]);
            let grew = |a: u64, b: u64| {
                if after.day == before.day {
                    b.saturating_sub(a)
                } else {
                    b
                }
            };
            Interval {
                end_ms: after.at_ms,
                length_ms: after.at_ms - before.at_ms,
                processed: grew(before.processed, after.processed),
                failed: grew(before.failed, after.failed),
            }
        })
        .collect()
}

impl Broker {
    /// Records a sample of `queue`'s counters, unless this minute has one.
    pub(crate) async fn sample_throughput(&self, queue: &str) -> Result<(), Error> {
        let keys = QueueKeys::new(queue);
        let mut invocation = SCRIPTS.history_record.prepare_invoke();
        invocation
            .key(keys.stats())
            .key(history_key(queue))
            .arg(SAMPLES_KEPT);
        self.run::<i64>(queue, None, &invocation).await.map(drop)
    }

    /// `queue`'s history over the last `minutes` minutes, oldest first; the
    /// last interval runs from the newest sample to now.
    pub(crate) async fn throughput_history(
        &self,
        queue: &str,
        minutes: usize,
    ) -> Result<Vec<Interval>, Error> {
        super::keys::validate_queue_name(queue)?;
        let keys = QueueKeys::new(queue);
        let mut pipe = redis::pipe();
        pipe.cmd("LRANGE")
            .arg(history_key(queue))
            .arg(0)
            .arg(minutes.min(SAMPLES_KEPT))
            .cmd("TIME")
            .hgetall(keys.stats());
        let (stored, (seconds, micros), stats): (
            Vec<String>,
            (i64, i64),
            std::collections::HashMap<String, u64>,
        ) = self.query_pipeline(&pipe).await?;
        let now_ms = seconds * 1000 + micros / 1000;
        let mut samples: Vec<Sample> = stored
            .iter()
            .rev()
            .filter_map(|s| Sample::parse(s))
            .collect();
        if !samples.is_empty() {
            let day = now_ms.div_euclid(86_400_000);
            let count = |what: &str| stats.get(&format!("{what}:{day}")).copied().unwrap_or(0);
            samples.push(Sample {
                at_ms: now_ms,
                day,
                processed: count("processed"),
                failed: count("failed"),
            });
        }
        let since = now_ms - minutes as i64 * 60_000;
        Ok(intervals(&samples)
            .into_iter()
            .filter(|interval| interval.end_ms > since)
            .collect())
    }

    /// Forgets a removed queue's history.
    pub(crate) async fn forget_history(&self, queue: &str) -> Result<(), Error> {
        self.query::<i64>(redis::cmd("DEL").arg(history_key(queue)))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, day: i64, processed: u64, failed: u64) -> Sample {
        Sample {
            at_ms,
            day,
            processed,
            failed,
        }
    }

    #[test]
    fn intervals_count_what_ended_between_samples() {
        let got = intervals(&[
            sample(60_000, 0, 10, 1),
            sample(120_500, 0, 40, 1),
            sample(300_000, 0, 45, 3),
        ]);
        assert_eq!(
            got,
            [
                Interval {
                    end_ms: 120_500,
                    length_ms: 60_500,
                    processed: 30,
                    failed: 0
                },
                Interval {
                    end_ms: 300_000,
                    length_ms: 179_500,
                    processed: 5,
                    failed: 2
                },
            ]
        );
    }

    #[test]
    fn a_new_day_counts_from_zero() {
        let got = intervals(&[sample(86_340_000, 0, 900, 9), sample(86_430_000, 1, 7, 0)]);
        assert_eq!((got[0].processed, got[0].failed), (7, 0));
    }

    #[test]
    fn unreadable_samples_are_skipped() {
        assert_eq!(Sample::parse("12 0 3 x"), None);
        assert_eq!(Sample::parse(""), None);
        assert_eq!(Sample::parse("12 0 3 4"), Some(sample(12, 0, 3, 4)));
    }
}
