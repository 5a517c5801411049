//! Fairness by key: tasks of a queue carry a group (a tenant), and workers
//! take pending tasks from each group in turn, the ungrouped taking their
//! turn as one more group.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmq::{NativeTask, NewTask, Worker};

use crate::support::{Env, stdout};

/// The order in which tasks started, by id.
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<String>>>);

impl Starts {
    fn position(&self, id: &str) -> Option<usize> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .position(|started| started == id)
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn tenant_task(tenant: Option<&str>, n: usize) -> NewTask {
    let task = NewTask::new("work", format!(r#"{{"n":{n}}}"#)).unwrap();
    match tenant {
        Some(tenant) => task.group(tenant),
        None => task,
    }
}

/// One tenant's 10,000 tasks, then another's 10 and 5 without a group: the
/// second tenant's all start within a few dozen starts, not after the
/// first's backlog, and so do the ungrouped ones. Counts see grouped tasks
/// as pending, `task show` names the group, a deleted grouped task leaves
/// no trace, and a drained queue keeps none of the groups' keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tenant_is_not_starved_by_a_large_ones_backlog() {
    let env = Env::start().await;
    let big: Vec<NewTask> = (0..10_000).map(|n| tenant_task(Some("big"), n)).collect();
    for chunk in big.chunks(1_000) {
        for enqueued in env.client.enqueue_batch(chunk.to_vec()).await {
            enqueued.unwrap();
        }
    }
    let mut small = Vec::new();
    for n in 0..10 {
        small.push(
            env.client
                .enqueue(tenant_task(Some("small"), n))
                .await
                .unwrap()
                .id,
        );
    }
    let mut plain = Vec::new();
    for n in 0..5 {
        plain.push(env.client.enqueue(tenant_task(None, n)).await.unwrap().id);
    }
    let doomed = env
        .client
        .enqueue(tenant_task(Some("small"), 99))
        .await
        .unwrap()
        .id;
    assert_eq!(env.counts("default").await.pending, 10_016);
    let shown = env.wasmq(&["task", "show", &small[0]]);
    assert!(
        stdout(&shown).contains("group:      small"),
        "{}",
        stdout(&shown)
    );
    let deleted = env.wasmq(&["task", "delete", &doomed]);
    assert!(deleted.status.success());
    assert_eq!(env.counts("default").await.pending, 10_015);

    let starts = Starts::default();
    let recorder = starts.clone();
    let worker = Worker::builder(env.client.broker().clone())
        .concurrency(4)
        .native("work", move |task: NativeTask| {
            recorder.0.lock().unwrap().push(task.message.id.clone());
            async move { Ok(Vec::new()) }
        })
        .build()
        .expect("the worker builds");
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    crate::support::wait_until(
        Duration::from_secs(60),
        "the small tenant's tasks to start",
        || async {
            small
                .iter()
                .chain(&plain)
                .all(|id| starts.position(id).is_some())
        },
    )
    .await;
    // One of each group in turn (big, small, ungrouped), give or take what
    // the worker had already leased: all of the small tenant's within the
    // first 10 * 3 starts and a few batches.
    let latest = small
        .iter()
        .chain(&plain)
        .map(|id| starts.position(id).unwrap())
        .max()
        .unwrap();
    assert!(
        latest < 60,
        "the last of the small tenant's and the ungrouped tasks started {latest}th"
    );
    crate::support::wait_until(Duration::from_secs(120), "the backlog to drain", || async {
        env.counts("default").await.unfinished() == 0
    })
    .await;
    assert_eq!(starts.len(), 10_015, "every task ran once");
    let mut redis = env.redis_connection().await;
    let left: i64 = redis::cmd("EXISTS")
        .arg("wasmq:{default}:groups")
        .arg("wasmq:{default}:pending:big")
        .arg("wasmq:{default}:pending:small")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(left, 0, "a drained queue keeps no groups");
    let grouped: Option<i64> = redis::cmd("GET")
        .arg("wasmq:{default}:grouped")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(grouped.unwrap_or(0), 0);
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// A concurrency limit per group: `limit set TYPE --max-running 1
/// --per-group` lets one task of each group run at a time, and the groups
/// run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_group_concurrency_limit_holds_for_each_group() {
    one_at_a_time_per_tenant(&["--per-group"], |tenant, n| {
        NewTask::new("slow", format!(r#"{{"n":{n}}}"#))
            .unwrap()
            .group(tenant)
    })
    .await;
}

/// A concurrency limit per key of the payload: `limit set TYPE
/// --max-running 1 --key '$.tenant'` lets one task per tenant run at a
/// time, the tenants side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_key_concurrency_limit_holds_for_each_key() {
    one_at_a_time_per_tenant(&["--key", "$.tenant"], |tenant, n| {
        NewTask::new("slow", format!(r#"{{"n":{n},"tenant":"{tenant}"}}"#)).unwrap()
    })
    .await;
}

/// Sets `limit set slow --max-running 1` with `scope` flags, runs 4 tasks
/// of tenants a and b (`task`) on a worker of concurrency 4, and checks
/// that each tenant ran one at a time while the two ran side by side.
async fn one_at_a_time_per_tenant(scope: &[&str], task: impl Fn(&str, usize) -> NewTask) {
    let env = Env::start().await;
    let mut args = vec![
        "limit",
        "set",
        "slow",
        "--max-running",
        "1",
        "--when-busy",
        "delay:20ms",
    ];
    args.extend_from_slice(scope);
    let set = env.wasmq(&args);
    assert!(set.status.success(), "{}", crate::support::stderr(&set));
    assert!(stdout(&set).contains(" per "), "{}", stdout(&set));
    for n in 0..4 {
        for tenant in ["a", "b"] {
            env.client.enqueue(task(tenant, n)).await.unwrap();
        }
    }
    // Per tenant: how many run now, and the most that ever ran at once.
    #[derive(Default)]
    struct Running {
        now: std::collections::HashMap<String, usize>,
        most: std::collections::HashMap<String, usize>,
        most_overall: usize,
    }
    let running = Arc::new(Mutex::new(Running::default()));
    let tracker = running.clone();
    let worker = Worker::builder(env.client.broker().clone())
        .concurrency(4)
        .native("slow", move |task: NativeTask| {
            let tracker = tracker.clone();
            let payload: serde_json::Value = task.json().unwrap();
            let tenant = task
                .message
                .group
                .clone()
                .or_else(|| payload["tenant"].as_str().map(str::to_string))
                .unwrap_or_default();
            async move {
                {
                    let mut running = tracker.lock().unwrap();
                    let now = running.now.entry(tenant.clone()).or_default();
                    *now += 1;
                    let now = *now;
                    let most = running.most.entry(tenant.clone()).or_default();
                    *most = (*most).max(now);
                    let overall = running.now.values().sum();
                    running.most_overall = running.most_overall.max(overall);
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                *tracker.lock().unwrap().now.get_mut(&tenant).unwrap() -= 1;
                Ok(Vec::new())
            }
        })
        .build()
        .expect("the worker builds");
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    crate::support::wait_until(
        Duration::from_secs(60),
        "every task to complete",
        || async { env.counts("default").await.completed == 8 },
    )
    .await;
    {
        let running = running.lock().unwrap();
        assert_eq!(running.most.get("a"), Some(&1), "one of tenant a at a time");
        assert_eq!(running.most.get("b"), Some(&1), "one of tenant b at a time");
        assert_eq!(running.most_overall, 2, "the two tenants ran side by side");
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
}
