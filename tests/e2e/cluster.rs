//! Redis Cluster and Sentinel. On a cluster: the same queues, leases, retries, dedup and listings on a
//! real 6-node cluster (3 masters, 3 replicas), with queues spread over
//! different masters, and a master killed mid-load.

use std::path::Path;
use std::time::Duration;

use wasmq::{ChildEnd, Client, Flow, NewTask, TaskState};
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, GREETER_COMPONENT, PluginDir};

use crate::support::cluster::RedisCluster;
use crate::support::sentinel::SentinelSetup;
use crate::support::{WASMQ, WasmqProcess, stderr, stdout, wait_until, wasmq};

/// Three queue names whose keys live on three different masters.
fn queues_on_three_masters(cluster: &RedisCluster) -> Vec<(String, String)> {
    let mut chosen: Vec<(String, String)> = Vec::new();
    for n in 0..200 {
        let name = format!("q{n}");
        let master = cluster.master_of(&format!("wasmq:{{{name}}}:pending"));
        if chosen.iter().all(|(_, taken)| *taken != master) {
            chosen.push((name, master));
        }
        if chosen.len() == 3 {
            return chosen;
        }
    }
    panic!("no three queues on three masters among q0..q199");
}

fn worker(url: &str, plugins: &Path, queues: &[(String, String)]) -> WasmqProcess {
    let weights: Vec<String> = queues.iter().map(|(name, _)| format!("{name}=1")).collect();
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .arg("worker")
        .args(["--redis", url])
        .arg("--plugins")
        .arg(plugins)
        .args(["--queues", &weights.join(",")])
        .args([
            "--concurrency",
            "20",
            "--retry-delay",
            "50ms",
            "--lease",
            "5s",
        ]);
    WasmqProcess::spawn(command)
}

fn cli(url: &str, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend(["--redis".to_string(), url.to_string()]);
    wasmq(&all)
}

/// Tasks flow through queues on three masters: every one completes (half
/// of them in groups, taking turns, whose keys the scripts name in the
/// queue's slot), a flaky one after its retries; a duplicate id is refused; `queue ls
/// --cluster` shows each queue's slot on its master; `server ls` and
/// `stats` read across the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_flow_on_a_cluster_with_queues_on_three_masters() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let queues = queues_on_three_masters(&cluster);
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let _worker = worker(&url, plugins.path(), &queues);

    let client = Client::connect(&url).await.expect("the cluster answers");
    let per_queue = 100;
    for (queue, _) in &queues {
        let batch: Vec<NewTask> = (0..per_queue)
            .map(|n| {
                let task = NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
                    .unwrap()
                    .queue(queue.clone());
                if n % 2 == 0 {
                    task.group(format!("tenant-{}", n % 3))
                } else {
                    task
                }
            })
            .collect();
        for outcome in client.enqueue_batch(batch).await {
            outcome.expect("enqueued");
        }
    }
    let flaky = client
        .enqueue(
            NewTask::new("flaky", r#"{"fail_times":2}"#)
                .unwrap()
                .queue(queues[0].0.clone())
                .max_retry(3),
        )
        .await
        .unwrap()
        .id;

    for (queue, _) in &queues {
        let expected = per_queue + usize::from(*queue == queues[0].0);
        wait_until(
            Duration::from_secs(60),
            &format!("every task of {queue} to complete"),
            || async {
                client
                    .queue_counts(queue)
                    .await
                    .is_ok_and(|counts| counts.completed as usize == expected)
            },
        )
        .await;
    }
    let info = client
        .task(&flaky, Some(&queues[0].0))
        .await
        .unwrap()
        .expect("the flaky task is kept");
    assert_eq!(info.state, TaskState::Completed);
    assert_eq!(info.attempts, 3, "two failures, then success");

    let enqueue_once = || {
        cli(
            &url,
            &[
                "enqueue",
                "echo",
                "{}",
                "--id",
                "once",
                "--queue",
                &queues[1].0,
            ],
        )
    };
    let first = enqueue_once();
    assert!(first.status.success(), "{}", stderr(&first));
    let second = enqueue_once();
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(stderr(&second).contains("once"), "{}", stderr(&second));

    let listed = cli(&url, &["queue", "ls", "--cluster"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = stdout(&listed);
    for (queue, master) in &queues {
        let row = listed
            .lines()
            .find(|line| line.split_whitespace().next() == Some(queue.as_str()))
            .unwrap_or_else(|| panic!("{queue} is listed:\n{listed}"));
        assert!(
            row.contains(master.as_str()),
            "{queue} on {master}:\n{listed}"
        );
    }

    let servers = cli(&url, &["server", "ls", "--json"]);
    assert!(servers.status.success(), "{}", stderr(&servers));
    let servers: serde_json::Value = serde_json::from_str(&stdout(&servers)).unwrap();
    assert_eq!(servers.as_array().map(Vec::len), Some(1), "{servers}");
    let stats = cli(&url, &["stats", "--json"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    wait_until(
        Duration::from_secs(30),
        "plugin stats to be flushed",
        || async {
            let plugin_stats = cli(&url, &["plugin", "stats", "--json"]);
            plugin_stats.status.success() && stdout(&plugin_stats).contains("\"echo\"")
        },
    )
    .await;

    // The plugin registry and cron live on their own slots.
    let deployed = cli(&url, &["plugin", "deploy", GREETER_COMPONENT]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    assert!(
        stdout(&deployed).contains("1 of 1 worker(s) took it"),
        "{}",
        stdout(&deployed)
    );
    let greet = client
        .enqueue(
            NewTask::new("greet", r#"{"name":"cluster"}"#)
                .unwrap()
                .queue(queues[2].0.clone()),
        )
        .await
        .unwrap()
        .id;
    let cron = cli(
        &url,
        &[
            "cron",
            "add",
            "tick",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            &queues[1].0,
        ],
    );
    assert!(cron.status.success(), "{}", stderr(&cron));
    wait_until(
        Duration::from_secs(30),
        "the greet task and two cron ticks",
        || async {
            let greeted = client
                .task(&greet, Some(&queues[2].0))
                .await
                .is_ok_and(|info| info.is_some_and(|info| info.state == TaskState::Completed));
            let history = cli(&url, &["cron", "history", "tick"]);
            greeted && stdout(&history).lines().count() >= 3
        },
    )
    .await;
}

/// A master is killed (SIGKILL) while two workers are busy with its
/// queue: its replica is promoted, the workers ride through the failover,
/// and every task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_load_loses_no_task() {
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let queues = queues_on_three_masters(&cluster);
    let plugins = PluginDir::with(&[wasmq_testkit::BURN_COMPONENT]);

    let client = Client::connect(&url).await.expect("the cluster answers");
    let per_queue = 150;
    for (queue, _) in &queues {
        let batch: Vec<NewTask> = (0..per_queue)
            .map(|_| {
                NewTask::new("burn", r#"{"ms":20}"#)
                    .unwrap()
                    .queue(queue.clone())
            })
            .collect();
        for outcome in client.enqueue_batch(batch).await {
            outcome.expect("enqueued");
        }
    }
    let workers = [
        worker(&url, plugins.path(), &queues),
        worker(&url, plugins.path(), &queues),
    ];
    let (victim_queue, victim) = queues[0].clone();
    wait_until(
        Duration::from_secs(60),
        "some tasks of the victim's queue to complete",
        || async {
            client
                .queue_counts(&victim_queue)
                .await
                .is_ok_and(|counts| counts.completed >= 20)
        },
    )
    .await;
    cluster.kill(&victim);

    for (queue, _) in &queues {
        wait_for_all_completed(&client, queue, per_queue, &workers[0]).await;
    }
    let promoted = cluster.master_of(&format!("wasmq:{{{victim_queue}}}:pending"));
    assert_ne!(
        promoted, victim,
        "a replica took over the killed master's slots"
    );
}

/// Waits (up to 2 minutes, through a failover) until all `tasks` of
/// `queue` completed and none is left unfinished; on timeout, panics with
/// the last counts and the end of a worker's log.
async fn wait_for_all_completed(client: &Client, queue: &str, tasks: usize, worker: &WasmqProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = client.queue_counts(queue).await;
        if counts
            .as_ref()
            .is_ok_and(|counts| counts.completed as usize == tasks && counts.unfinished() == 0)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every task of {queue} should complete after the failover; counts: {counts:?}\nworker log:\n{}",
            tail(&worker.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Sentinel: the master is killed while two workers are busy; the
/// Sentinels promote the replica, the workers find it through them, and
/// every task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_a_sentinel_failover_and_lose_no_task() {
    let mut setup = tokio::task::spawn_blocking(SentinelSetup::start)
        .await
        .unwrap();
    let url = setup.url();
    let queues = vec![("default".to_string(), String::new())];
    let plugins = PluginDir::with(&[wasmq_testkit::BURN_COMPONENT]);
    let client = Client::connect(&url).await.expect("the master answers");
    let tasks = 300;
    let batch: Vec<NewTask> = (0..tasks)
        .map(|_| NewTask::new("burn", r#"{"ms":20}"#).unwrap())
        .collect();
    for outcome in client.enqueue_batch(batch).await {
        outcome.expect("enqueued");
    }
    let workers = [
        worker(&url, plugins.path(), &queues),
        worker(&url, plugins.path(), &queues),
    ];
    wait_until(
        Duration::from_secs(60),
        "some tasks to complete",
        || async {
            client
                .queue_counts("default")
                .await
                .is_ok_and(|counts| counts.completed >= 20)
        },
    )
    .await;
    setup.kill_master();

    wait_for_all_completed(&client, "default", tasks, &workers[0]).await;
    assert_eq!(
        setup.master_port(),
        setup.replica_port(),
        "the replica was promoted"
    );
    assert_ne!(setup.master_port(), setup.original_master_port());
}

/// On a cluster, each deployed component's bytes live in a slot of their
/// own, so components spread over the masters while the registry's index
/// stays on one slot: workers serve what was deployed, rollbacks find it,
/// and `plugin gc` deletes the copies on the other masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_components_spread_over_the_masters() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let queues = vec![("default".to_string(), String::new())];
    let _worker = worker(&url, plugins.path(), &queues);
    let mut redis = redis::cluster::ClusterClient::new(cluster.node_urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let stored = |redis: &mut redis::cluster_async::ClusterConnection| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("HGETALL")
                .arg("wasmq:{plugins}:stored")
                .query_async::<std::collections::HashMap<String, String>>(&mut redis)
                .await
                .unwrap()
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let mut masters = std::collections::BTreeSet::new();
    let mut digests = Vec::new();
    for n in 0..12u8 {
        // The same plugin with a byte more: another component each time.
        let bytes = wasmq_testkit::with_custom_section(
            &std::fs::read(GREETER_COMPONENT).unwrap(),
            "v",
            &[n],
        );
        let path = dir.path().join(format!("greeter-{n}.wasm"));
        std::fs::write(&path, &bytes).unwrap();
        let deployed = cli(&url, &["plugin", "deploy", path.to_str().unwrap()]);
        assert!(deployed.status.success(), "{}", stderr(&deployed));
        let digest = wasmq_testkit::digest_of(&bytes);
        let copy = stored(&mut redis).await.remove(&digest).expect("indexed");
        masters.insert(cluster.master_of(&format!("wasmq:{{blob:{digest}}}:{copy}")));
        digests.push(digest);
        if masters.len() >= 2 && digests.len() >= 3 {
            break;
        }
    }
    assert!(masters.len() >= 2, "copies on {masters:?}");

    let client = Client::connect(&url).await.unwrap();
    let greet = client
        .enqueue(NewTask::new("greet", r#"{"name":"spread"}"#).unwrap())
        .await
        .unwrap()
        .id;
    wait_until(Duration::from_secs(30), "the greet task", || async {
        client
            .task(&greet, Some("default"))
            .await
            .is_ok_and(|info| info.is_some_and(|info| info.state == TaskState::Completed))
    })
    .await;
    let back = cli(
        &url,
        &["plugin", "rollback", "greeter", "--to", &digests[0][..10]],
    );
    assert!(back.status.success(), "{}", stderr(&back));

    let index = stored(&mut redis).await;
    let gc = cli(&url, &["plugin", "gc", "--keep", "1"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let kept = stored(&mut redis).await;
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        [&digests[0]],
        "only the current one"
    );
    for (digest, copy) in &index {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("wasmq:{{blob:{digest}}}:{copy}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(exists == 1, digest == &digests[0], "the copy of {digest}");
    }
}

/// Flows across slots: a parent on one master, children on a second and
/// grandchildren on a third, one retried twice before it succeeds. Each
/// parent runs once, after its last child; a child that fails for good
/// fails its parent on another master; `flow show` draws the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_span_queues_on_three_masters() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let queues = queues_on_three_masters(&cluster);
    let (top, middle, bottom) = (&queues[0].0, &queues[1].0, &queues[2].0);
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let _workers = [
        worker(&url, plugins.path(), &queues),
        worker(&url, plugins.path(), &queues),
    ];
    let client = Client::connect(&url).await.expect("the cluster answers");
    let echo = |n: u32, queue: &str| {
        NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
            .unwrap()
            .queue(queue)
    };
    let mut roots = Vec::new();
    for _ in 0..10 {
        let mut middle_node = Flow::new(echo(100, middle));
        for n in 0..5 {
            middle_node = middle_node.child(Flow::new(echo(n, bottom)));
        }
        let flow = Flow::new(echo(0, top)).child(middle_node).child(Flow::new(
            NewTask::new("flaky", r#"{"fail_times":2}"#)
                .unwrap()
                .queue(middle)
                .max_retry(3),
        ));
        roots.push(client.enqueue_flow(flow).await.unwrap().root.id);
    }
    let failing = Flow::new(echo(1, top)).child(Flow::new(
        NewTask::new("flaky", r#"{"fail_times":5}"#)
            .unwrap()
            .queue(bottom)
            .max_retry(1),
    ));
    let failing = client.enqueue_flow(failing).await.unwrap().root.id;

    for id in &roots {
        wait_until(
            Duration::from_secs(60),
            &format!("root {id} to complete"),
            || async {
                client
                    .task(id, Some(top))
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|info| info.state == TaskState::Completed)
            },
        )
        .await;
        let info = client.task(id, Some(top)).await.unwrap().unwrap();
        assert_eq!(info.attempts, 1, "root {id} ran once");
        let tree = client.flow(id, Some(top)).await.unwrap().unwrap();
        assert_eq!(tree.children.len(), 2);
        assert_eq!(tree.children[0].children.len(), 5);
        let middle_outcome = tree.children[0].outcome.as_ref().unwrap();
        assert_eq!(middle_outcome.state, ChildEnd::Completed);
    }
    wait_until(
        Duration::from_secs(60),
        "the failing flow's root to be archived",
        || async {
            client
                .task(&failing, Some(top))
                .await
                .ok()
                .flatten()
                .is_some_and(|info| info.state == TaskState::Archived)
        },
    )
    .await;
    let info = client.task(&failing, Some(top)).await.unwrap().unwrap();
    assert_eq!(info.attempts, 0, "a parent failed by its child never runs");
    assert_eq!(
        info.last_error.unwrap().kind,
        wasmq::FailureKind::ChildFailed
    );

    let shown = cli(&url, &["flow", "show", &roots[0]]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(
        stdout(&shown).lines().count(),
        1 + 2 + 5,
        "{}",
        stdout(&shown)
    );
}
