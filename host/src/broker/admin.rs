//! What operators do to queues and tasks: list them, look at a queue's
//! numbers, and run, archive or delete tasks one by one or by state.

use redis::Value;
use serde::Serialize;

use super::scripts::SCRIPTS;
use super::{ArchiveLimits, Broker, Error, QueueCounts, TaskInfo, invocation, keys, millis};
use crate::task::TaskState;

/// Tasks per script call in bulk actions.
const PAGE: usize = 1000;

/// What an operator does to tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Run now: scheduled, retry or archived tasks go to the head of pending.
    Run,
    /// Archive without running: pending, scheduled or retry tasks.
    Archive,
    /// Delete: any task that is not running.
    Delete,
}

impl BulkAction {
    /// Whether the action applies to tasks in `state`.
    pub fn applies_to(self, state: TaskState) -> bool {
        match self {
            BulkAction::Run => matches!(
                state,
                TaskState::Scheduled | TaskState::Retry | TaskState::Archived
            ),
            BulkAction::Archive => matches!(
                state,
                TaskState::Pending | TaskState::Scheduled | TaskState::Retry
            ),
            BulkAction::Delete => state != TaskState::Active,
        }
    }

    fn refusal(self, state: TaskState) -> String {
        let (verb, states) = match self {
            BulkAction::Run => ("run", "scheduled, retry and archived tasks"),
            BulkAction::Archive => ("archive", "pending, scheduled and retry tasks"),
            BulkAction::Delete => (
                "delete",
                "any task that is not running (cancel running ones)",
            ),
        };
        format!("{verb} does not apply to {state} tasks: it applies to {states}")
    }
}

/// Attempts of one day (UTC, Redis's clock).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DailyCount {
    /// The day, as days since the unix epoch.
    pub day: i64,
    /// Attempts that completed.
    pub processed: u64,
    /// Attempts that failed.
    pub failed: u64,
}

/// A queue's numbers, for `wasmq stats` and the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Tasks by state.
    pub counts: QueueCounts,
    /// Whether the queue is paused.
    pub paused: bool,
    /// Attempts completed today (UTC, Redis's clock).
    pub processed_today: u64,
    /// Attempts failed today.
    pub failed_today: u64,
    /// The last 7 days, oldest first.
    pub daily: Vec<DailyCount>,
    /// How long the oldest pending task has waited since it was enqueued.
    pub oldest_pending_ms: Option<i64>,
    /// What the queue's keys take in Redis (MEMORY USAGE, sampled).
    pub memory_bytes: u64,
}

impl Broker {
    /// What a worker's queue gauges show: the tasks by state, and how long
    /// the oldest pending task has waited (ms). A few commands, unlike
    /// [`Broker::queue_stats`], which also asks `MEMORY USAGE` of every key.
    pub(crate) async fn queue_gauges(
        &self,
        queue: &str,
    ) -> Result<(QueueCounts, Option<i64>), Error> {
        let counts = self.queue_counts(queue).await?;
        if counts.pending == 0 {
            return Ok((counts, None));
        }
        let keys = self.queue_keys(queue);
        let mut pipe = redis::pipe();
        pipe.cmd("LINDEX").arg(keys.pending()).arg(-1).cmd("TIME");
        let (oldest, (seconds, micros)): (Option<String>, (i64, i64)) =
            self.query_pipeline(&pipe).await?;
        let now_ms = seconds * 1000 + micros / 1000;
        let waited = match oldest {
            Some(id) => self
                .task_info(queue, &id)
                .await?
                .map(|info| now_ms - info.message.enqueued_at_ms),
            None => None,
        };
        Ok((counts, waited))
    }

    /// Pending task ids, oldest first, `count` from `offset`: the ungrouped
    /// tasks, then each group's (in turn order).
    async fn pending_ids(
        &self,
        keys: &super::keys::QueueKeys,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>, Error> {
        let window = (offset + count) as isize;
        let groups: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(keys.groups()).arg(0).arg(-1))
            .await?;
        let mut lists = vec![keys.pending().to_string()];
        lists.extend(
            groups
                .iter()
                .filter(|group| !group.is_empty())
                .map(|group| keys.group_pending(group)),
        );
        let mut pipe = redis::pipe();
        for list in &lists {
            // The oldest is at the right end of each list.
            pipe.cmd("LRANGE").arg(list).arg(-window).arg(-1);
        }
        let windows: Vec<Vec<String>> = self.query_pipeline(&pipe).await?;
        Ok(windows
            .into_iter()
            .flat_map(|ids| ids.into_iter().rev())
            .skip(offset)
            .take(count)
            .collect())
    }

    /// A queue's numbers.
    pub(crate) async fn queue_stats(&self, queue: &str) -> Result<QueueStats, Error> {
        keys::validate_queue_name(queue)?;
        let keys = self.queue_keys(queue);
        let counts = self.queue_counts(queue).await?;
        let mut pipe = redis::pipe();
        pipe.exists(keys.paused())
            .hgetall(keys.stats())
            .cmd("LINDEX")
            .arg(keys.pending())
            .arg(-1)
            .cmd("TIME");
        for key in keys.all() {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(5);
        }
        let reply: Vec<Value> = self.query_pipeline(&pipe).await?;
        let corrupt = |err: redis::ParsingError| Error::Corrupt(err.to_string());
        let [paused, stats, oldest, time, memory @ ..] = reply.as_slice() else {
            return Err(Error::Corrupt("queue stats came back short".into()));
        };
        let paused: bool = redis::from_redis_value_ref(paused).map_err(corrupt)?;
        let stats: std::collections::HashMap<String, u64> =
            redis::from_redis_value_ref(stats).map_err(corrupt)?;
        let oldest: Option<String> = redis::from_redis_value_ref(oldest).map_err(corrupt)?;
        let (seconds, micros): (i64, i64) = redis::from_redis_value_ref(time).map_err(corrupt)?;
        let now_ms = seconds * 1000 + micros / 1000;
        let memory_bytes = memory
            .iter()
            .filter_map(|usage| {
                redis::from_redis_value_ref::<Option<u64>>(usage)
                    .ok()
                    .flatten()
            })
            .sum();
        let today = now_ms.div_euclid(86_400_000);
        let day = |what: &str, day: i64| stats.get(&format!("{what}:{day}")).copied().unwrap_or(0);
        let daily = (today - 6..=today)
            .map(|d| DailyCount {
                day: d,
                processed: day("processed", d),
                failed: day("failed", d),
            })
            .collect();
        let oldest_pending_ms = match oldest {
            Some(id) => self
                .task_info(queue, &id)
                .await?
                .map(|info| now_ms - info.message.enqueued_at_ms),
            None => None,
        };
        Ok(QueueStats {
            queue: queue.to_string(),
            counts,
            paused,
            processed_today: day("processed", today),
            failed_today: day("failed", today),
            daily,
            oldest_pending_ms,
            memory_bytes,
        })
    }

    /// Ids of a queue's tasks in `state`, `count` from `offset`: pending in
    /// the order they will run, the others in order of their time (due
    /// time, lease expiry, archive time, expiry).
    pub(crate) async fn task_ids(
        &self,
        queue: &str,
        state: TaskState,
        offset: usize,
        count: usize,
    ) -> Result<Vec<String>, Error> {
        keys::validate_queue_name(queue)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let keys = self.queue_keys(queue);
        let (start, stop) = (offset as isize, (offset + count) as isize - 1);
        let zset = match state {
            TaskState::Pending => {
                return self.pending_ids(&keys, offset, count).await;
            }
            TaskState::Active => keys.active(),
            TaskState::Scheduled => keys.scheduled(),
            TaskState::Retry => keys.retry(),
            TaskState::Archived => keys.archived(),
            TaskState::Completed => keys.completed(),
            TaskState::Waiting => {
                let mut ids: Vec<String> =
                    self.query(redis::cmd("HKEYS").arg(keys.waiting())).await?;
                ids.sort();
                return Ok(ids.into_iter().skip(offset).take(count).collect());
            }
        };
        self.query(redis::cmd("ZRANGE").arg(zset).arg(start).arg(stop))
            .await
    }

    /// The records of several tasks of a queue (missing ones left out).
    pub(crate) async fn task_infos(
        &self,
        queue: &str,
        ids: &[String],
    ) -> Result<Vec<TaskInfo>, Error> {
        let mut infos = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(info) = self.task_info(queue, id).await? {
                infos.push(info);
            }
        }
        Ok(infos)
    }

    /// Applies `action` to tasks of a queue, only to those in `expected`
    /// when given. Returns, per id, the state it was acted on from (`None`:
    /// no such task, or not in a state the action applies to).
    pub(crate) async fn act_on_tasks(
        &self,
        queue: &str,
        action: BulkAction,
        expected: Option<TaskState>,
        ids: &[String],
    ) -> Result<Vec<Option<TaskState>>, Error> {
        keys::validate_queue_name(queue)?;
        let keys = self.queue_keys(queue);
        let (script, extra): (_, Vec<String>) = match action {
            BulkAction::Run => (&SCRIPTS.run_now, vec![]),
            BulkAction::Delete => (&SCRIPTS.delete, vec![]),
            BulkAction::Archive => {
                let limits = ArchiveLimits::default();
                (
                    &SCRIPTS.archive_now,
                    vec![
                        limits.max_size.to_string(),
                        millis(limits.max_age).to_string(),
                    ],
                )
            }
        };
        let mut invocation = invocation(script, &keys);
        invocation.arg(expected.map_or("", TaskState::as_str));
        for arg in &extra {
            invocation.arg(arg);
        }
        for id in ids {
            invocation.arg(id);
        }
        let replies: Vec<Option<String>> = self.run(queue, None, &invocation).await?;
        let states = replies
            .into_iter()
            .map(|state| state.map(|s| s.parse().map_err(Error::Corrupt)).transpose())
            .collect::<Result<Vec<Option<TaskState>>, Error>>()?;
        if !matches!(action, BulkAction::Run) {
            // Flow children that ended here report to their parents.
            let ended: Vec<String> = ids
                .iter()
                .zip(&states)
                .filter(|(_, state)| state.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            if !ended.is_empty() {
                self.deliver_flow_reports(queue, &ended, ArchiveLimits::default())
                    .await?;
            }
        }
        Ok(states)
    }

    /// Applies `action` to one task. Returns the state it left, `None` when
    /// there is no such task; [`Error::TaskActive`] when it runs, and
    /// [`Error::InvalidTask`] when the action does not apply to its state.
    pub(crate) async fn act_on_task(
        &self,
        queue: &str,
        id: &str,
        action: BulkAction,
    ) -> Result<Option<TaskState>, Error> {
        let Some(info) = self.task_info(queue, id).await? else {
            return Ok(None);
        };
        if info.state == TaskState::Active {
            return Err(Error::TaskActive {
                queue: queue.to_string(),
                id: id.to_string(),
            });
        }
        if !action.applies_to(info.state) {
            return Err(Error::InvalidTask(format!(
                "task {id}: {}",
                action.refusal(info.state)
            )));
        }
        let outcome = self
            .act_on_tasks(queue, action, Some(info.state), &[id.to_string()])
            .await?;
        Ok(outcome.into_iter().next().flatten())
    }

    /// Applies `action` to every task of a queue in `state`, a page at a
    /// time. Returns how many tasks it acted on.
    pub(crate) async fn act_on_state(
        &self,
        queue: &str,
        state: TaskState,
        action: BulkAction,
    ) -> Result<u64, Error> {
        if !action.applies_to(state) {
            return Err(Error::InvalidTask(action.refusal(state)));
        }
        let mut done = 0u64;
        let mut offset = 0usize;
        loop {
            let ids = self.task_ids(queue, state, offset, PAGE).await?;
            if ids.is_empty() {
                return Ok(done);
            }
            let acted = self
                .act_on_tasks(queue, action, Some(state), &ids)
                .await?
                .into_iter()
                .filter(Option::is_some)
                .count();
            done += acted as u64;
            // Tasks acted on leave the state; the others stay in place.
            offset += ids.len() - acted;
        }
    }

    /// Removes a queue with everything in it. Without `force`, refuses a
    /// queue that still has unfinished tasks. Returns how many tasks it held.
    pub(crate) async fn remove_queue(&self, queue: &str, force: bool) -> Result<u64, Error> {
        keys::validate_queue_name(queue)?;
        let keys = self.queue_keys(queue);
        // What the queue's tasks owe their flow parents and batches
        // elsewhere: the reports still undelivered now, and an end for each
        // unfinished one once it is removed.
        let unfinished = if force {
            self.deliver_outbox(queue, ArchiveLimits::default()).await?;
            self.unfinished_reporting_tasks(queue).await?
        } else {
            Vec::new()
        };
        let mut invocation = invocation(&SCRIPTS.remove_queue, &keys);
        invocation.arg(if force { "1" } else { "0" });
        let tasks: u64 = self.run(queue, None, &invocation).await?;
        self.report_removed(queue, unfinished, ArchiveLimits::default())
            .await?;
        self.query::<()>(redis::cmd("SREM").arg(keys::QUEUES).arg(queue))
            .await?;
        self.forget_history(queue).await?;
        Ok(tasks)
    }
}
