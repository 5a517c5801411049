//! Fleet-wide rate limits in Redis: the limits set (one HASH), and the
//! buckets that count starts (`scripts/rate_limit.lua`).
//!
//! Limits live in `wasmq:rate-limits`, a HASH from target (`type:NAME` or
//! `queue:NAME`) to the limit (JSON, [`RateLimit`]). Each limit counts its
//! starts in buckets, one per key (or one for the whole target), all under
//! the hash tag of the target, so that one script call sees a bucket whole
//! on a Redis Cluster:
//!
//! ```text
//! wasmq:{ratelimit:<target>}:log:<bucket>    ZSET start number -> server µs of the start
//! wasmq:{ratelimit:<target>}:state:<bucket>  HASH seq, tat, line, spec
//! wasmq:{ratelimit:<target>}:buckets         ZSET bucket -> server ms of its last start
//! ```
//!
//! A bucket is `*` (a limit without a key), `=<key>` (the key a task's
//! payload gives; keys longer than 200 bytes are named by their SHA-256),
//! or `?` (a keyed limit's tasks whose payload has no key at its path:
//! they share that one bucket).

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::scripts::SCRIPTS;
use super::{Broker, Error};
use crate::rate::{RateLimit, RateTarget};

/// The HASH of rate limits, target -> limit (JSON).
pub const RATE_LIMITS: &str = "wasmq:rate-limits";

/// The bucket of a limit without a key.
pub const WHOLE: &str = "*";

/// The bucket of a keyed limit's tasks whose payload has no key.
pub const NO_KEY: &str = "?";

/// The channel that tells workers the rate limits changed: they read
/// them again at once.
pub const CHANGED: &str = "wasmq:rate-limits:changed";

/// How often every worker reads the rate limits again regardless (a
/// change whose message it missed, while reconnecting, say).
pub const REFRESH: Duration = Duration::from_secs(30);

/// How long a change waits for every worker to have read it before the
/// tasks waiting under the old limit are woken.
pub const PICKUP: Duration = Duration::from_secs(1);

/// The longest key used as is in a bucket's name.
const MAX_KEY_IN_NAME: usize = 200;

/// The bucket a task with key `key` counts in.
pub fn bucket_of(key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() <= MAX_KEY_IN_NAME => format!("={key}"),
        Some(key) => format!("#{:x}", Sha256::digest(key.as_bytes())),
        None => NO_KEY.to_string(),
    }
}

fn log_key(target: &str, bucket: &str) -> String {
    format!("wasmq:{{ratelimit:{target}}}:log:{bucket}")
}

fn state_key(target: &str, bucket: &str) -> String {
    format!("wasmq:{{ratelimit:{target}}}:state:{bucket}")
}

fn buckets_key(target: &str) -> String {
    format!("wasmq:{{ratelimit:{target}}}:buckets")
}

/// What a bucket said to a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Granted, as this start number (to give it back if another limit
    /// refuses the task).
    Granted(u64),
    /// Refused: the task's turn comes after this long.
    Wait(Duration),
}

/// One bucket's use, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketUse {
    /// `*`, `=<key>`, `#<sha256>` or `?` (see the module docs).
    pub bucket: String,
    /// Starts in the last interval.
    pub used: u64,
    /// How far ahead the waiting line's next free turn is (ms; 0: no line).
    pub line_ms: u64,
}

impl Broker {
    /// Sets the rate limit of `target`, replacing any it had. Every worker
    /// is told at once (and reads the limits every [`REFRESH`] regardless);
    /// after [`PICKUP`], the tasks waiting for
    /// their turn under a previous limit are woken to be checked against
    /// this one. Returns how many were woken.
    pub async fn set_rate_limit(
        &self,
        target: &RateTarget,
        limit: &RateLimit,
    ) -> Result<u64, Error> {
        // A RateLimit holds only strings and numbers.
        let json = serde_json::to_string(limit).expect("a RateLimit always encodes");
        let previous: Option<String> = self
            .query(redis::cmd("HGET").arg(RATE_LIMITS).arg(target.key()))
            .await?;
        self.query::<()>(
            redis::cmd("HSET")
                .arg(RATE_LIMITS)
                .arg(target.key())
                .arg(&json),
        )
        .await?;
        self.announce_rate_limits().await?;
        if previous.is_none_or(|previous| previous == json) {
            return Ok(0);
        }
        self.wake_rate_limited(target).await
    }

    /// Removes the rate limit of `target`, and (once every worker has seen
    /// it go, after [`PICKUP`]) wakes the tasks waiting for their turn.
    /// Returns whether there was one, and how many tasks were woken.
    pub async fn remove_rate_limit(&self, target: &RateTarget) -> Result<(bool, u64), Error> {
        let removed: i64 = self
            .query(redis::cmd("HDEL").arg(RATE_LIMITS).arg(target.key()))
            .await?;
        if removed == 0 {
            return Ok((false, 0));
        }
        self.announce_rate_limits().await?;
        Ok((true, self.wake_rate_limited(target).await?))
    }

    /// Tells every worker the rate limits changed.
    async fn announce_rate_limits(&self) -> Result<(), Error> {
        self.query::<i64>(redis::cmd("PUBLISH").arg(CHANGED).arg("1"))
            .await
            .map(drop)
    }

    /// After every worker has read the limits again, puts the tasks waiting
    /// for a turn of `target`'s limit back in pending, in each queue they
    /// may be in.
    async fn wake_rate_limited(&self, target: &RateTarget) -> Result<u64, Error> {
        tokio::time::sleep(PICKUP).await;
        let queues: Vec<String> = match target {
            RateTarget::Queue(queue) => vec![queue.clone()],
            RateTarget::TaskType(_) => {
                self.query(redis::cmd("SMEMBERS").arg(super::keys::QUEUES))
                    .await?
            }
        };
        let needle = format!("the rate limit of {target} (");
        let mut woken = 0;
        for queue in queues {
            if super::keys::validate_queue_name(&queue).is_err() {
                continue;
            }
            let keys = self.queue_keys(&queue);
            let mut invocation = super::invocation(&SCRIPTS.rate_wake, &keys);
            invocation.arg(&needle);
            woken += self.run::<u64>(&queue, None, &invocation).await?;
        }
        Ok(woken)
    }

    /// Every rate limit set.
    pub async fn rate_limits(&self) -> Result<BTreeMap<RateTarget, RateLimit>, Error> {
        let raw: BTreeMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(RATE_LIMITS)).await?;
        raw.into_iter()
            .filter_map(|(target, json)| {
                let parsed = RateTarget::from_key(&target)?;
                Some(
                    serde_json::from_str(&json)
                        .map(|limit| (parsed, limit))
                        .map_err(|err| {
                            Error::Corrupt(format!(
                                "the rate limit of {target:?} is unreadable: {err}"
                            ))
                        }),
                )
            })
            .collect()
    }

    /// Takes a start from `bucket` of `target`'s `limit`.
    pub(crate) async fn take_rate(
        &self,
        target: &RateTarget,
        limit: &RateLimit,
        bucket: &str,
    ) -> Result<Take, Error> {
        let target_key = target.key();
        let spec = serde_json::to_string(limit).expect("a RateLimit always encodes");
        let mut invocation = SCRIPTS.rate_limit.prepare_invoke();
        invocation
            .key(log_key(&target_key, bucket))
            .key(state_key(&target_key, bucket))
            .key(buckets_key(&target_key))
            .arg("take")
            .arg(limit.rate.count)
            .arg(limit.rate.interval_ms)
            .arg(limit.burst)
            .arg(bucket)
            .arg(spec);
        let (refused, value): (i64, i64) = self.run(&target_key, None, &invocation).await?;
        Ok(if refused == 0 {
            Take::Granted(value.max(0) as u64)
        } else {
            // µs, rounded up to whole ms: never back before the turn.
            Take::Wait(Duration::from_millis((value.max(1) as u64).div_ceil(1000)))
        })
    }

    /// Gives back start `start` of `bucket`, granted but not used (another
    /// limit of the task refused it).
    pub(crate) async fn refund_rate(
        &self,
        target: &RateTarget,
        limit: &RateLimit,
        bucket: &str,
        start: u64,
    ) -> Result<(), Error> {
        let target_key = target.key();
        let mut invocation = SCRIPTS.rate_limit.prepare_invoke();
        invocation
            .key(log_key(&target_key, bucket))
            .key(state_key(&target_key, bucket))
            .key(buckets_key(&target_key))
            .arg("refund")
            .arg(limit.rate.count)
            .arg(limit.rate.interval_ms)
            .arg(limit.burst)
            .arg(bucket)
            .arg(start);
        self.run::<Vec<i64>>(&target_key, None, &invocation)
            .await
            .map(drop)
    }

    /// The use of `target`'s busiest buckets (at most `most`, most recently
    /// used first): starts in the last interval of `limit` and the waiting
    /// line.
    pub async fn rate_use(
        &self,
        target: &RateTarget,
        limit: &RateLimit,
        most: usize,
    ) -> Result<Vec<BucketUse>, Error> {
        let target_key = target.key();
        let (secs, micros): (i64, i64) = self.query(&redis::cmd("TIME")).await?;
        let now_us = secs * 1_000_000 + micros;
        let since = now_us - (limit.rate.interval_ms as i64) * 1000;
        let buckets: Vec<String> = self
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(buckets_key(&target_key))
                    .arg(0)
                    .arg(most.saturating_sub(1)),
            )
            .await?;
        let mut uses = Vec::new();
        for bucket in buckets {
            let used: u64 = self
                .query(
                    redis::cmd("ZCOUNT")
                        .arg(log_key(&target_key, &bucket))
                        .arg(format!("({since}"))
                        .arg("+inf"),
                )
                .await?;
            let line: Option<f64> = self
                .query(
                    redis::cmd("HGET")
                        .arg(state_key(&target_key, &bucket))
                        .arg("line"),
                )
                .await?;
            let line_ms = line.map_or(0, |line| ((line as i64 - now_us).max(0) / 1000) as u64);
            uses.push(BucketUse {
                bucket,
                used,
                line_ms,
            });
        }
        Ok(uses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Rate;

    async fn broker() -> (crate::dev::RedisServer, Broker) {
        let redis = crate::dev::RedisServer::start().expect("redis-server starts");
        let broker = Broker::connect(&redis.url()).await.expect("Redis answers");
        (redis, broker)
    }

    fn limit(count: u32, interval_ms: u64, burst: Option<u32>) -> RateLimit {
        RateLimit::new(Rate { count, interval_ms }, burst, None).unwrap()
    }

    #[test]
    fn buckets_are_named_by_key_or_hash() {
        assert_eq!(bucket_of(Some("acme")), "=acme");
        assert_eq!(bucket_of(None), "?");
        let long = "x".repeat(500);
        assert_eq!(bucket_of(Some(&long)).len(), 65);
        assert_eq!(
            log_key("type:send", "=acme"),
            "wasmq:{ratelimit:type:send}:log:=acme"
        );
    }

    /// rate_limit.lua grants the whole count, then refuses with turns one
    /// spacing apart, each after the window frees; a refund gives a start
    /// back.
    #[tokio::test]
    async fn a_bucket_grants_its_count_then_hands_out_turns() {
        let (_redis, broker) = broker().await;
        let target = RateTarget::TaskType("t".into());
        let hour = limit(3, 3_600_000, None);
        let mut starts = Vec::new();
        for _ in 0..3 {
            match broker.take_rate(&target, &hour, WHOLE).await.unwrap() {
                Take::Granted(start) => starts.push(start),
                Take::Wait(wait) => panic!("refused within the count ({wait:?})"),
            }
        }
        let turn = |take| match take {
            Take::Wait(wait) => wait,
            Take::Granted(_) => panic!("granted past the count"),
        };
        let first = turn(broker.take_rate(&target, &hour, WHOLE).await.unwrap());
        let second = turn(broker.take_rate(&target, &hour, WHOLE).await.unwrap());
        assert!(first > Duration::from_secs(3590), "{first:?}");
        assert!(
            second >= first + Duration::from_secs(1190),
            "turns are one spacing apart: {first:?} then {second:?}"
        );
        // Another target is untouched; a refund frees a start.
        let other = RateTarget::Queue("t".into());
        assert!(matches!(
            broker.take_rate(&other, &hour, WHOLE).await.unwrap(),
            Take::Granted(_)
        ));
        broker
            .refund_rate(&target, &hour, WHOLE, starts[0])
            .await
            .unwrap();
        let used = broker.rate_use(&target, &hour, 10).await.unwrap();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].used, 2, "{used:?}");
        assert!(used[0].line_ms > 3_600_000, "{used:?}");
    }

    /// A burst of 1 spreads starts: the second waits about one spacing.
    #[tokio::test]
    async fn a_burst_of_one_spaces_starts() {
        let (_redis, broker) = broker().await;
        let target = RateTarget::TaskType("t".into());
        let smooth = limit(10, 60_000, Some(1));
        assert!(matches!(
            broker.take_rate(&target, &smooth, WHOLE).await.unwrap(),
            Take::Granted(_)
        ));
        match broker.take_rate(&target, &smooth, WHOLE).await.unwrap() {
            Take::Wait(wait) => assert!(
                wait > Duration::from_secs(5) && wait < Duration::from_secs(7),
                "{wait:?}"
            ),
            Take::Granted(_) => panic!("a burst of 1 granted two at once"),
        }
    }
}
