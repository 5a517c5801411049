//! Trees of follow-up tasks: the descendants of each root task, counted and
//! listed across every queue and worker, and fleet-wide rate buckets.
//!
//! A tree's keys live under the hash tag `{tree:<root queue>/<root id>}`,
//! apart from every queue: descendants may go to any queue, so a
//! follow-up is first reserved in the tree's slot (`lineage_reserve.lua`),
//! then enqueued in its queue's slot (`enqueue.lua`), and its reservation
//! released (`lineage_release.lua`) if the enqueue is refused. No script
//! touches two slots. Every change renews the tree's time to live, so the
//! bookkeeping of a finished tree goes away by itself.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::scripts::SCRIPTS;
use super::{Broker, Error};
use crate::task::{TaskRef, TaskState};

/// How long a tree's keys live after its last change: past any retry
/// schedule, so a stop mark outlives the tasks it stops.
pub const TREE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The HASH of a tree: `descendants`, `depth`, `stopped`.
pub fn tree_info_key(root: &TaskRef) -> String {
    format!("wasmq:{{tree:{}/{}}}:info", root.queue, root.id)
}

/// The ZSET of a tree's descendants (`<queue> <id>`) by depth.
pub fn tree_members_key(root: &TaskRef) -> String {
    format!("wasmq:{{tree:{}/{}}}:members", root.queue, root.id)
}

/// The token bucket of a fleet-wide rate.
pub fn rate_key(name: &str) -> String {
    format!("wasmq:{{rate:{name}}}:bucket")
}

/// A descendant as stored in its tree: queue names and ids hold no
/// whitespace, so the space separates them.
fn member(task: &TaskRef) -> String {
    format!("{} {}", task.queue, task.id)
}

fn parse_member(text: &str) -> Option<TaskRef> {
    let (queue, id) = text.split_once(' ')?;
    Some(TaskRef::new(queue, id))
}

/// What a tree answered a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved; the root now has this many descendants.
    Reserved(u64),
    /// An operator stopped the tree at this time (server ms).
    Stopped(i64),
    /// The root already has this many descendants, its most.
    Full(u64),
}

/// A tree of follow-ups as stored: its counters and its descendants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The root task.
    pub root: TaskRef,
    /// Descendants reserved (enqueued, or being enqueued).
    pub descendants: u64,
    /// The deepest generation reached.
    pub depth: u32,
    /// When an operator stopped the tree (server ms).
    pub stopped_at_ms: Option<i64>,
    /// Every descendant with its depth, shallowest first.
    pub members: Vec<(TaskRef, u32)>,
}

impl Broker {
    /// Reserves a place for `descendant`, `depth` generations below `root`,
    /// unless the tree is stopped or already has `max_descendants`.
    pub(crate) async fn reserve_descendant(
        &self,
        root: &TaskRef,
        descendant: &TaskRef,
        depth: u32,
        max_descendants: u64,
    ) -> Result<Reservation, Error> {
        let mut invocation = SCRIPTS.lineage_reserve.prepare_invoke();
        invocation
            .key(tree_info_key(root))
            .key(tree_members_key(root))
            .arg(member(descendant))
            .arg(depth)
            .arg(max_descendants)
            .arg(TREE_TTL.as_millis() as u64);
        let (answer, value): (String, i64) =
            self.run(&root.queue, Some(&root.id), &invocation).await?;
        match answer.as_str() {
            "ok" => Ok(Reservation::Reserved(value.max(0) as u64)),
            "stopped" => Ok(Reservation::Stopped(value)),
            "full" => Ok(Reservation::Full(value.max(0) as u64)),
            other => Err(Error::Corrupt(format!(
                "a tree reservation answered {other:?}"
            ))),
        }
    }

    /// Releases the place reserved for `descendant`; true if there was one.
    pub(crate) async fn release_descendant(
        &self,
        root: &TaskRef,
        descendant: &TaskRef,
    ) -> Result<bool, Error> {
        let mut invocation = SCRIPTS.lineage_release.prepare_invoke();
        invocation
            .key(tree_info_key(root))
            .key(tree_members_key(root))
            .arg(member(descendant));
        let released: i64 = self.run(&root.queue, Some(&root.id), &invocation).await?;
        Ok(released == 1)
    }

    /// Marks the tree of `root` stopped: no further descendant is
    /// reserved. Returns when it was first stopped (server ms).
    pub(crate) async fn stop_tree(&self, root: &TaskRef) -> Result<i64, Error> {
        let mut invocation = SCRIPTS.lineage_stop.prepare_invoke();
        invocation
            .key(tree_info_key(root))
            .key(tree_members_key(root))
            .arg(TREE_TTL.as_millis() as u64);
        self.run(&root.queue, Some(&root.id), &invocation).await
    }

    /// When the tree of `root` was stopped, if it was.
    pub(crate) async fn tree_stopped(&self, root: &TaskRef) -> Result<Option<i64>, Error> {
        self.query(redis::cmd("HGET").arg(tree_info_key(root)).arg("stopped"))
            .await
    }

    /// The tree of `root` as stored (empty for a task with no follow-ups).
    pub(crate) async fn tree(&self, root: &TaskRef) -> Result<Tree, Error> {
        let mut pipe = redis::pipe();
        pipe.hgetall(tree_info_key(root))
            .cmd("ZRANGE")
            .arg(tree_members_key(root))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let (info, members): (HashMap<String, i64>, Vec<(String, f64)>) =
            self.query_pipeline(&pipe).await?;
        Ok(Tree {
            root: root.clone(),
            descendants: info.get("descendants").copied().unwrap_or(0).max(0) as u64,
            depth: info
                .get("depth")
                .copied()
                .unwrap_or(0)
                .clamp(0, u32::MAX as i64) as u32,
            stopped_at_ms: info.get("stopped").copied(),
            members: members
                .into_iter()
                .filter_map(|(text, depth)| Some((parse_member(&text)?, depth.max(0.0) as u32)))
                .collect(),
        })
    }

    /// The state of each of `tasks` (`None`: gone, such as a completed
    /// task past its retention), read queue by queue.
    pub(crate) async fn task_states(
        &self,
        tasks: &[TaskRef],
    ) -> Result<HashMap<TaskRef, Option<TaskState>>, Error> {
        let mut by_queue: BTreeMap<&str, Vec<&TaskRef>> = BTreeMap::new();
        for task in tasks {
            by_queue.entry(task.queue.as_str()).or_default().push(task);
        }
        let mut states = HashMap::with_capacity(tasks.len());
        for (queue, tasks) in by_queue {
            let keys = self.queue_keys(queue);
            for chunk in tasks.chunks(1000) {
                let ids: Vec<&str> = chunk.iter().map(|task| task.id.as_str()).collect();
                let found: Vec<Option<String>> = self
                    .query(redis::cmd("HMGET").arg(keys.state()).arg(ids))
                    .await?;
                for (task, state) in chunk.iter().zip(found) {
                    let state = state.and_then(|s| s.parse::<TaskState>().ok());
                    states.insert((*task).clone(), state);
                }
            }
        }
        Ok(states)
    }

    /// Takes a token of the fleet-wide rate `name` (`count` per `period`).
    /// Returns `None` when taken, or how long until one is.
    pub(crate) async fn take_rate_token(
        &self,
        name: &str,
        count: u32,
        period: Duration,
    ) -> Result<Option<Duration>, Error> {
        let mut invocation = SCRIPTS.rate_take.prepare_invoke();
        invocation
            .key(rate_key(name))
            .arg(count)
            .arg(period.as_millis().max(1) as u64);
        let wait: i64 = self.run(name, None, &invocation).await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trees_keys_share_one_tag_apart_from_its_queue() {
        let root = TaskRef::new("images", "t1");
        assert_eq!(tree_info_key(&root), "wasmq:{tree:images/t1}:info");
        assert_eq!(tree_members_key(&root), "wasmq:{tree:images/t1}:members");
        let text = member(&TaskRef::new("q:2", "a-b"));
        assert_eq!(parse_member(&text), Some(TaskRef::new("q:2", "a-b")));
    }

    async fn broker() -> (crate::dev::RedisServer, Broker) {
        let redis = crate::dev::RedisServer::start().expect("redis-server starts");
        let broker = Broker::connect(&redis.url()).await.expect("Redis answers");
        (redis, broker)
    }

    /// lineage_reserve.lua counts each descendant once, up to the cap;
    /// lineage_release.lua gives a place back once; lineage_stop.lua
    /// refuses every later reservation.
    #[tokio::test]
    async fn reservations_count_release_and_stop() {
        let (_redis, broker) = broker().await;
        let root = TaskRef::new("q", "root");
        let child = |n: u32| {
            TaskRef::new(
                if n.is_multiple_of(2) { "a" } else { "b" },
                &format!("c{n}"),
            )
        };
        for n in 1..=3 {
            let got = broker
                .reserve_descendant(&root, &child(n), n, 3)
                .await
                .unwrap();
            assert_eq!(got, Reservation::Reserved(u64::from(n)));
        }
        // Asking again for a reserved descendant is no new descendant.
        let again = broker.reserve_descendant(&root, &child(2), 2, 3).await;
        assert_eq!(again.unwrap(), Reservation::Reserved(3));
        let full = broker.reserve_descendant(&root, &child(4), 1, 3).await;
        assert_eq!(full.unwrap(), Reservation::Full(3));

        assert!(broker.release_descendant(&root, &child(3)).await.unwrap());
        assert!(!broker.release_descendant(&root, &child(3)).await.unwrap());
        let tree = broker.tree(&root).await.unwrap();
        assert_eq!(
            (tree.descendants, tree.depth, tree.stopped_at_ms),
            (2, 3, None)
        );
        assert_eq!(tree.members, vec![(child(1), 1), (child(2), 2)]);

        let stopped = broker.stop_tree(&root).await.unwrap();
        assert_eq!(broker.stop_tree(&root).await.unwrap(), stopped);
        assert_eq!(broker.tree_stopped(&root).await.unwrap(), Some(stopped));
        let refused = broker.reserve_descendant(&root, &child(5), 1, 3).await;
        assert_eq!(refused.unwrap(), Reservation::Stopped(stopped));
        let ttl: i64 = broker
            .query(redis::cmd("PTTL").arg(tree_members_key(&root)))
            .await
            .unwrap();
        assert!(ttl > 0, "the tree's keys expire");
    }

    /// rate_take.lua hands out its burst, then tells how long to wait.
    #[tokio::test]
    async fn a_rate_bucket_gives_its_burst_then_waits() {
        let (_redis, broker) = broker().await;
        let hour = Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(broker.take_rate_token("t", 3, hour).await.unwrap(), None);
        }
        let wait = broker.take_rate_token("t", 3, hour).await.unwrap();
        assert!(
            wait.is_some_and(|wait| wait > Duration::from_secs(1000)),
            "{wait:?}"
        );
        // Another bucket is untouched.
        assert_eq!(broker.take_rate_token("u", 3, hour).await.unwrap(), None);
    }
}
