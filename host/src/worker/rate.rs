//! Fleet-wide rate limits at admission: which limits a task falls under
//! (its type's, its queue's), the bucket its payload's key puts it in, and
//! one start taken from each, or the time until its turn.
//!
//! The limits are read again whenever `wasmq limit` announces a change
//! (and every [`REFRESH`] regardless), so a limit set, changed or removed
//! applies to every worker within a moment, without a restart, and an idle
//! worker does not poll for them. A task that finds no start free holds nothing: it is put back
//! (`Settlement::Postpone`) until its turn in the bucket's waiting line.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::outage::OutageLog;
use crate::broker::rate_limits::{self, REFRESH, Take};
use crate::broker::{Broker, Error};
use crate::rate::{RateLimit, RateTarget};
use crate::task::TaskMessage;

/// The rate limits in force, as last read.
#[derive(Default)]
pub(crate) struct RateLimits {
    by_target: RwLock<BTreeMap<RateTarget, RateLimit>>,
}

/// What the rate limits say to a task.
pub(crate) enum RateAdmission {
    /// Every limit it falls under (maybe none) gave it a start.
    Start,
    /// A limit had no start free: it may try again after `delay`.
    Wait { delay: Duration, why: String },
    /// Redis could not say.
    Unknown(Error),
}

impl RateLimits {
    /// Replaces every limit.
    pub fn replace(&self, limits: BTreeMap<RateTarget, RateLimit>) {
        // A poisoned lock only means a panic elsewhere while swapping in a
        // whole map.
        *self.by_target.write().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// The limits `message` falls under: its type's, then its queue's.
    fn of(&self, message: &TaskMessage) -> Vec<(RateTarget, RateLimit)> {
        let limits = self.by_target.read().unwrap_or_else(|e| e.into_inner());
        if limits.is_empty() {
            return Vec::new();
        }
        [
            RateTarget::TaskType(message.task_type.clone()),
            RateTarget::Queue(message.queue.clone()),
        ]
        .into_iter()
        .filter_map(|target| {
            let limit = limits.get(&target)?.clone();
            Some((target, limit))
        })
        .collect()
    }

    /// Takes one start from every limit `message` falls under. If one
    /// refuses, the starts already taken from the others are given back.
    pub async fn admit(&self, broker: &Broker, message: &TaskMessage) -> RateAdmission {
        let limits = self.of(message);
        if limits.is_empty() {
            return RateAdmission::Start;
        }
        // Boxed: most tasks fall under no limit, and their path should not
        // carry (and copy) the state of these Redis calls.
        Box::pin(Self::take(broker, message, limits)).await
    }

    /// Takes one start from each of `limits` (see `admit`).
    async fn take(
        broker: &Broker,
        message: &TaskMessage,
        limits: Vec<(RateTarget, RateLimit)>,
    ) -> RateAdmission {
        let payload = limits
            .iter()
            .any(|(_, limit)| limit.key.is_some())
            .then(|| serde_json::from_str::<serde_json::Value>(message.payload.get()).ok())
            .flatten();
        let mut taken = Vec::new();
        for (target, limit) in &limits {
            let (bucket, missing) = match &limit.key {
                None => (rate_limits::WHOLE.to_string(), false),
                Some(path) => {
                    let key = payload.as_ref().and_then(|payload| path.key_of(payload));
                    (rate_limits::bucket_of(key.as_deref()), key.is_none())
                }
            };
            match broker.take_rate(target, limit, &bucket).await {
                Ok(Take::Granted(start)) => taken.push((target, limit, bucket, start)),
                Ok(Take::Wait(delay)) => {
                    refund(broker, &taken).await;
                    let of = match (&limit.key, missing) {
                        (Some(path), true) => format!(
                            " for tasks whose payload has nothing at {} (they share one bucket)",
                            path.as_str()
                        ),
                        (Some(_), false) => format!(" for key {:?}", &bucket[1..]),
                        (None, _) => String::new(),
                    };
                    return RateAdmission::Wait {
                        delay,
                        why: format!(
                            "the rate limit of {target} ({limit}) has no start free{of} before its turn"
                        ),
                    };
                }
                Err(err) => {
                    refund(broker, &taken).await;
                    return RateAdmission::Unknown(err);
                }
            }
        }
        RateAdmission::Start
    }
}

/// Gives back starts taken for a task that another limit refused.
async fn refund(broker: &Broker, taken: &[(&RateTarget, &RateLimit, String, u64)]) {
    for (target, limit, bucket, start) in taken {
        if let Err(err) = broker.refund_rate(target, limit, bucket, *start).await {
            tracing::debug!(%err, %target, "could not give back a rate-limited start; it counts until the interval passes");
        }
    }
}

/// Reads the rate limits into `limits` whenever they are announced to have
/// changed, and every [`REFRESH`] regardless, until `stop`.
pub(crate) async fn refresh(
    broker: Broker,
    limits: Arc<RateLimits>,
    outage: Arc<OutageLog>,
    stop: CancellationToken,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let listener = {
        let changed = changed.clone();
        tokio::spawn(crate::broker::subscribe(
            broker.clone(),
            vec![rate_limits::CHANGED.to_string()],
            stop.clone(),
            move |_| changed.notify_one(),
        ))
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(REFRESH) => {}
        }
        match broker.rate_limits().await {
            Ok(read) => limits.replace(read),
            Err(err) => outage.failed(&err),
        }
    }
    let _ = listener.await;
}
