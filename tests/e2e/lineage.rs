//! Trees of follow-up tasks stay bounded: a plugin that enqueues copies of
//! itself is held to the depth and descendant caps of its root's tree, its
//! fleet-wide enqueue rate holds across workers, and an operator sees and
//! stops a runaway tree with one command.

use std::time::Duration;

use wasmq::{FailureKind, NewTask};
use wasmq_testkit::*;

use crate::support::{Env, stdout, wait_until};

/// Bytes of memory Redis uses (`INFO memory`).
async fn redis_memory(env: &Env) -> u64 {
    let mut redis = env.redis_connection().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

/// Enqueues one replicating root task in `queue`, its copies going there
/// too.
async fn replicate_root(env: &Env, queue: &str, copies: u32) -> String {
    let payload = serde_json::json!({ "copies": copies, "queue": queue }).to_string();
    env.client
        .enqueue(
            NewTask::new("hostile:replicate", payload)
                .unwrap()
                .queue(queue)
                .max_retry(0),
        )
        .await
        .unwrap()
        .id
}

/// A tree of follow-ups as Redis holds it (docs/ARCHITECTURE.md, "Trees
/// of follow-ups"): `wasmq:{tree:<root queue>/<root id>}:info` and
/// `:members`.
#[derive(Debug)]
struct Tree {
    descendants: u64,
    depth: u32,
    stopped: bool,
    /// `(id, depth)` of each descendant, shallowest first.
    members: Vec<(String, u32)>,
}

async fn tree(env: &Env, queue: &str, id: &str) -> Tree {
    read_tree(&mut env.redis_connection().await, queue, id).await
}

async fn read_tree(redis: &mut impl redis::aio::ConnectionLike, queue: &str, id: &str) -> Tree {
    let tag = format!("wasmq:{{tree:{queue}/{id}}}");
    let info: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{tag}:info"))
        .query_async(redis)
        .await
        .expect("Redis answers");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("{tag}:members"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(redis)
        .await
        .expect("Redis answers");
    let number = |field: &str| info.get(field).and_then(|n| n.parse().ok()).unwrap_or(0);
    Tree {
        descendants: number("descendants"),
        depth: number("depth") as u32,
        stopped: info.contains_key("stopped"),
        members: members
            .into_iter()
            .map(|(member, depth)| {
                let id = member.split_once(' ').map_or(member.as_str(), |(_, id)| id);
                (id.to_string(), depth as u32)
            })
            .collect(),
    }
}

/// The archived tasks of `queue`, as `wasmq task ls --json` lists them,
/// page after page.
fn archived(env: &Env, queue: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for page in 0.. {
        let page = page.to_string();
        let listed = json(&env.wasmq(&[
            "task", "ls", "--queue", queue, "--state", "archived", "--size", "1000", "--page",
            &page, "--json",
        ]));
        let tasks = listed.as_array().expect("a list of tasks");
        if tasks.is_empty() {
            return all;
        }
        all.extend(tasks.iter().cloned());
    }
    unreachable!("pages run out")
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_str(&stdout(output)).unwrap_or_else(|err| panic!("{err}: {output:?}"))
}

/// Every archived task of `queue` failed as `denied`; returns their
/// messages.
async fn archived_denials(env: &Env, queue: &str) -> Vec<String> {
    archived(env, queue)
        .into_iter()
        .map(|info| {
            let error: wasmq::ErrorRecord = serde_json::from_value(info["last_error"].clone())
                .expect("an archived task has its error");
            assert_eq!(
                error.kind,
                FailureKind::CapabilityDenied,
                "{}",
                error.message
            );
            error.message
        })
        .collect()
}

/// Unbounded, the replicating plugin (5 copies per attempt) would make
/// 1 + 5 + 25 + 125 + 625 tasks by depth 4. With depth 3 and 40
/// descendants per root, the tree stops at exactly 40 descendants; the
/// attempts refused a follow-up fail as `denied`, naming the cap, and
/// `task tree` and `task show` show the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicating_plugin_stays_within_its_trees_caps() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_REPLICATE_COMPONENT]);
    let memory_before = redis_memory(&env).await;
    let _worker = env.worker(
        plugins.path(),
        &[
            "--queues",
            "tree",
            "--concurrency",
            "4",
            "--no-scheduler",
            "--max-follow-up-depth",
            "3",
            "--max-descendants",
            "40",
        ],
    );
    let root = replicate_root(&env, "tree", 5).await;
    let counts = env
        .wait_for_counts("tree", Duration::from_secs(60), "the tree to settle", |c| {
            c.unfinished() == 0 && c.completed + c.archived > 1
        })
        .await;
    let memory_after = redis_memory(&env).await;
    eprintln!(
        "replicating tree: {} tasks ({} completed, {} archived), Redis memory {memory_before} -> {memory_after} bytes",
        counts.completed + counts.archived,
        counts.completed,
        counts.archived
    );
    assert_eq!(
        counts.completed + counts.archived,
        41,
        "the root and its 40 descendants, no more: {counts:?}"
    );
    let stored = tree(&env, "tree", &root).await;
    assert_eq!(stored.descendants, 40);
    assert_eq!(stored.members.len(), 40);
    assert!(stored.depth <= 3, "{stored:?}");

    let denials = archived_denials(&env, "tree").await;
    assert!(!denials.is_empty());
    assert!(
        denials
            .iter()
            .all(|message| message.contains("denied: enqueue: ")
                && (message.contains("descendants, the cap of 40")
                    || message.contains("past the cap of 3"))),
        "{denials:?}"
    );

    let shown = json(&env.wasmq(&["task", "tree", &root, "--json"]));
    assert_eq!(shown["root"]["id"], root.as_str());
    assert_eq!(shown["descendants"], 40);
    assert_eq!(shown["depth"], stored.depth);
    let by_state = shown["by_state"].as_object().unwrap();
    let counted: u64 = by_state.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted, 40, "{shown}");
    let text = stdout(&env.wasmq(&["task", "tree", &root]));
    assert!(text.contains("descendants: 40"), "{text}");

    // A descendant's ancestry names the root, its depth and its parent.
    let (child, depth) = stored.members.last().unwrap().clone();
    let show = json(&env.wasmq(&["task", "show", &child, "--json"]));
    assert_eq!(show["lineage"]["root"]["id"], root.as_str());
    assert_eq!(show["lineage"]["depth"], depth);
    assert!(show["lineage"]["parent"]["id"].is_string(), "{show}");
    let text = stdout(&env.wasmq(&["task", "show", &child]));
    assert!(
        text.contains(&format!("root tree/{root}, depth {depth}, parent tree/")),
        "{text}"
    );
}

/// A runaway tree (deep caps, no rate to speak of) is stopped by `task stop-tree`: its
/// unfinished tasks are cancelled, and it takes no further follow-up, so
/// the queue drains and the tree's size stays where it was stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_tree_stops_a_runaway_tree() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_REPLICATE_COMPONENT]);
    let _worker = env.worker(
        plugins.path(),
        &[
            "--queues",
            "runaway",
            "--concurrency",
            "4",
            "--no-scheduler",
            "--max-follow-up-depth",
            "64",
            "--max-descendants",
            "1000000",
            "--max-enqueue-rate",
            "1000000/s",
        ],
    );
    let root = replicate_root(&env, "runaway", 3).await;
    wait_until(Duration::from_secs(60), "the tree to grow", || async {
        tree(&env, "runaway", &root).await.descendants >= 200
    })
    .await;

    let stopped = env.wasmq(&["task", "stop-tree", &root, "--json"]);
    let stopped = json(&stopped);
    let cancelled: u64 = stopped["cancelled"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(
        cancelled > 0,
        "a growing tree had unfinished tasks: {stopped}"
    );

    let counts = env
        .wait_for_counts(
            "runaway",
            Duration::from_secs(60),
            "the queue to drain",
            |c| c.unfinished() == 0,
        )
        .await;
    let after = tree(&env, "runaway", &root).await;
    assert!(after.stopped);
    // A place reserved by an attempt cancelled in the middle of its
    // enqueue stays counted: the count may exceed the tasks, never trail.
    assert!(
        counts.completed + counts.archived <= after.descendants + 1,
        "every task of the queue is the root or a counted descendant: {counts:?}, {} descendants",
        after.descendants
    );
    // Refused follow-ups of a stopped tree fail their attempt as denied;
    // the rest were cancelled.
    for info in archived(&env, "runaway") {
        let error: wasmq::ErrorRecord = serde_json::from_value(info["last_error"].clone()).unwrap();
        let error = &error;
        assert!(
            error.kind == FailureKind::Cancelled
                || (error.kind == FailureKind::CapabilityDenied
                    && error.message.contains("was stopped")),
            "{error:?}"
        );
    }
    let text = stdout(&env.wasmq(&["task", "tree", &root]));
    assert!(text.contains("stopped:"), "{text}");

    // Nothing further: another stop finds nothing left to cancel, and the
    // tree has not grown.
    let again = json(&env.wasmq(&["task", "stop-tree", &root, "--json"]));
    assert_eq!(again["cancelled"], serde_json::json!({}), "{again}");
    assert_eq!(
        tree(&env, "runaway", &root).await.descendants,
        after.descendants
    );
}

/// A plugin's enqueue rate is one bucket for the whole fleet: with
/// 5 follow-ups an hour, a first worker's tasks take all 5, and a second
/// worker's (serving another queue) get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueue_rate_holds_across_two_workers() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_REPLICATE_COMPONENT]);
    let flags = |queue: &'static str| {
        [
            "--queues",
            queue,
            "--concurrency",
            "2",
            "--no-scheduler",
            "--max-enqueue-rate",
            "5/h",
        ]
    };
    let roots = |queue: &str| {
        (0..8)
            .map(|_| {
                NewTask::new("hostile:replicate", r#"{"copies": 1, "queue": "copies"}"#)
                    .unwrap()
                    .queue(queue)
                    .max_retry(0)
            })
            .collect::<Vec<_>>()
    };
    let _first = env.worker(plugins.path(), &flags("first"));
    let _second = env.worker(plugins.path(), &flags("second"));
    for outcome in env.client.enqueue_batch(roots("first")).await {
        outcome.unwrap();
    }
    let first = env
        .wait_for_counts("first", Duration::from_secs(60), "the first roots", |c| {
            c.unfinished() == 0
        })
        .await;
    assert_eq!((first.completed, first.archived), (5, 3), "{first:?}");
    for outcome in env.client.enqueue_batch(roots("second")).await {
        outcome.unwrap();
    }
    let second = env
        .wait_for_counts("second", Duration::from_secs(60), "the second roots", |c| {
            c.unfinished() == 0
        })
        .await;
    assert_eq!((second.completed, second.archived), (0, 8), "{second:?}");
    // The copies go to a queue nobody serves: exactly the rate's 5.
    assert_eq!(env.counts("copies").await.pending, 5);
    for message in archived_denials(&env, "second").await {
        assert!(
            message.contains("past its fleet-wide enqueue rate of 5/h"),
            "{message}"
        );
    }
}

/// On a Redis Cluster, the root's queue, its copies' queue and its tree's
/// keys on three different masters: the cap still holds exactly, each
/// script staying in its own slot, and `task tree` reads the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_hold_on_a_cluster_with_tree_and_queues_on_different_masters() {
    use crate::support::cluster::RedisCluster;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let master = |key: String| cluster.master_of(&key);
    let (roots, copies) = ("roots", "copies");
    let copies_master = master(format!("wasmq:{{{copies}}}:pending"));
    let roots_master = master(format!("wasmq:{{{roots}}}:pending"));
    let root = (0..500)
        .map(|n| format!("root{n}"))
        .find(|id| {
            let tree = master(format!("wasmq:{{tree:{roots}/{id}}}:info"));
            tree != copies_master && (tree != roots_master || roots_master == copies_master)
        })
        .expect("a root id whose tree lives on another master than its copies");

    let plugins = PluginDir::with(&[HOSTILE_REPLICATE_COMPONENT]);
    let mut command =
        wasmq_testkit::WasmqProcess::command(std::path::Path::new(crate::support::WASMQ));
    command
        .arg("worker")
        .args(["--redis", &url])
        .arg("--plugins")
        .arg(plugins.path())
        .args(["--queues", "roots,copies", "--no-scheduler"])
        .args(["--max-follow-up-depth", "3", "--max-descendants", "20"]);
    let _worker = wasmq_testkit::WasmqProcess::spawn(command);

    let client = wasmq::Client::connect(&url)
        .await
        .expect("the cluster answers");
    client
        .enqueue(
            NewTask::new("hostile:replicate", r#"{"copies": 5, "queue": "copies"}"#)
                .unwrap()
                .queue(roots)
                .id(root.clone())
                .max_retry(0),
        )
        .await
        .unwrap();
    wait_until(Duration::from_secs(60), "the tree to settle", || async {
        let (Ok(a), Ok(b)) = (
            client.queue_counts(roots).await,
            client.queue_counts(copies).await,
        ) else {
            return false;
        };
        a.unfinished() == 0
            && a.completed + a.archived == 1
            && b.unfinished() == 0
            && b.completed + b.archived > 0
    })
    .await;
    let counts = client.queue_counts(copies).await.unwrap();
    assert_eq!(counts.completed + counts.archived, 20, "{counts:?}");
    let mut redis = redis::cluster::ClusterClient::new(cluster.node_urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let stored = read_tree(&mut redis, roots, &root).await;
    assert_eq!(stored.descendants, 20);

    let mut all: Vec<String> = ["task", "tree", &root, "--queue", roots, "--json"]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    all.extend(["--redis".to_string(), url.clone()]);
    let shown = json(&crate::support::wasmq(&all));
    assert_eq!(shown["descendants"], 20, "{shown}");
}
