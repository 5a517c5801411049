//! Fleet-wide concurrency limits: slots shared by every worker, and the
//! limits set per task type.
//!
//! A limit's slots live in `wasmq:{limit:<key>}:holders`, a ZSET from the
//! holding task's id to when the slot frees. Limits set for a task type live
//! in the `wasmq:limits` HASH (type -> limit, JSON) and apply to tasks of
//! that type that carry no limit of their own.

use std::collections::HashMap;

use super::scripts::SCRIPTS;
use super::{Broker, Error};
use crate::task::ConcurrencyLimit;

/// The HASH of limits set per task type.
pub const TYPE_LIMITS: &str = "wasmq:limits";

/// The key of a limit's slot holders.
pub fn holders_key(limit_key: &str) -> String {
    format!("wasmq:{{limit:{limit_key}}}:holders")
}

impl Broker {
    /// Takes a slot of `limit` for task `id`. Returns `Ok(Ok(()))` when it
    /// holds one, or `Ok(Err(holders))` with (some of) the tasks holding
    /// every slot.
    pub(crate) async fn acquire_slot(
        &self,
        limit: &ConcurrencyLimit,
        id: &str,
    ) -> Result<Result<(), Vec<String>>, Error> {
        let mut invocation = SCRIPTS.slot_acquire.prepare_invoke();
        invocation
            .key(holders_key(&limit.key))
            .arg(id)
            .arg(limit.max_running)
            .arg(limit.lock_at_most_for_ms);
        let reply: Vec<String> = self.run(&limit.key, Some(id), &invocation).await?;
        match reply.split_first() {
            Some((taken, _)) if taken == "1" => Ok(Ok(())),
            Some((_, holders)) => Ok(Err(holders.to_vec())),
            None => Err(Error::Corrupt("slot acquisition answered nothing".into())),
        }
    }

    /// Releases task `id`'s slot of `limit`, keeping it held until its
    /// minimum spacing has passed.
    pub(crate) async fn release_slot(
        &self,
        limit: &ConcurrencyLimit,
        id: &str,
    ) -> Result<(), Error> {
        let mut invocation = SCRIPTS.slot_release.prepare_invoke();
        invocation
            .key(holders_key(&limit.key))
            .arg(id)
            .arg(limit.lock_at_most_for_ms)
            .arg(limit.lock_at_least_for_ms);
        self.run::<i64>(&limit.key, Some(id), &invocation)
            .await
            .map(drop)
    }

    /// The tasks holding slots of a limit, with when each slot frees (server
    /// ms).
    pub(crate) async fn slot_holders(&self, limit_key: &str) -> Result<Vec<(String, i64)>, Error> {
        let holders: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(holders_key(limit_key))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(holders
            .into_iter()
            .map(|(id, until)| (id, until as i64))
            .collect())
    }

    /// Sets the limit of a task type.
    pub(crate) async fn set_type_limit(
        &self,
        task_type: &str,
        limit: &ConcurrencyLimit,
    ) -> Result<(), Error> {
        // A ConcurrencyLimit holds only strings and numbers.
        let json = serde_json::to_string(limit).expect("a ConcurrencyLimit always encodes");
        self.query(redis::cmd("HSET").arg(TYPE_LIMITS).arg(task_type).arg(json))
            .await
    }

    /// Removes the limit of a task type. Returns whether there was one.
    pub(crate) async fn remove_type_limit(&self, task_type: &str) -> Result<bool, Error> {
        let removed: i64 = self
            .query(redis::cmd("HDEL").arg(TYPE_LIMITS).arg(task_type))
            .await?;
        Ok(removed == 1)
    }

    /// Every limit set per task type.
    pub(crate) async fn type_limits(&self) -> Result<HashMap<String, ConcurrencyLimit>, Error> {
        let raw: HashMap<String, String> =
            self.query(redis::cmd("HGETALL").arg(TYPE_LIMITS)).await?;
        raw.into_iter()
            .map(|(task_type, json)| {
                serde_json::from_str(&json)
                    .map(|limit| (task_type.clone(), limit))
                    .map_err(|err| {
                        Error::Corrupt(format!(
                            "the limit of task type {task_type:?} is unreadable: {err}"
                        ))
                    })
            })
            .collect()
    }
}
