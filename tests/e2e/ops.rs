use std::path::Path;
use std::time::Duration;

use wasmq::{NewTask, TaskState};
use wasmq_testkit::{
    BURN_COMPONENT, ECHO_COMPONENT, FLAKY_COMPONENT, LOOP_COMPONENT, PluginDir, WasmqProcess,
};

use crate::dashboard::request;
use crate::support::{Env, WASMQ, free_port, http, stderr, stdout, wait_for_http, wait_until};

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", stdout(output)))
}

/// Puts tasks in every state but active in queue `mixed`: 3 pending, 2
/// scheduled, 2 archived, 4 completed. Returns the archived ids.
async fn mixed_queue(env: &Env) -> Vec<String> {
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let mut archived = Vec::new();
    for n in 0..2 {
        let task = NewTask::new("flaky", format!(r#"{{"fail_times":1,"n":{n}}}"#))
            .unwrap()
            .queue("mixed")
            .max_retry(0);
        archived.push(env.client.enqueue(task).await.unwrap().id);
    }
    for n in 0..4 {
        env.client
            .enqueue(
                NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
                    .unwrap()
                    .queue("mixed"),
            )
            .await
            .unwrap();
    }
    let mut worker = env.worker(plugins.path(), &["--queues", "mixed"]);
    env.wait_for_counts(
        "mixed",
        Duration::from_secs(20),
        "4 completed and 2 archived",
        |c| c.completed == 4 && c.archived == 2,
    )
    .await;
    worker.kill9();
    for n in 0..3 {
        env.client
            .enqueue(
                NewTask::new("echo", format!(r#"{{"later":{n}}}"#))
                    .unwrap()
                    .queue("mixed"),
            )
            .await
            .unwrap();
    }
    for n in 0..2 {
        let task = NewTask::new("echo", format!(r#"{{"s":{n}}}"#))
            .unwrap()
            .queue("mixed")
            .process_in(Duration::from_secs(3600));
        env.client.enqueue(task).await.unwrap();
    }
    archived
}

/// `stats`, `queue ls`, `queue inspect` and `task ls` show what the queue
/// holds, as tables and as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_listings_show_every_state() {
    let env = Env::start().await;
    let archived = mixed_queue(&env).await;

    let stats = json(&env.wasmq(&["stats", "--json"]));
    let mixed = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["queue"] == "mixed")
        .unwrap();
    assert_eq!(mixed["counts"]["pending"], 3);
    assert_eq!(mixed["counts"]["scheduled"], 2);
    assert_eq!(mixed["counts"]["archived"], 2);
    assert_eq!(mixed["counts"]["completed"], 4);
    assert_eq!(mixed["processed_today"], 4);
    assert_eq!(mixed["failed_today"], 2);
    assert!(mixed["oldest_pending_ms"].as_i64().unwrap() >= 0);
    assert!(mixed["memory_bytes"].as_u64().unwrap() > 0);

    let table = stdout(&env.wasmq(&["stats"]));
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(table.contains("mixed"), "{table}");

    let listed = stdout(&env.wasmq(&["queue", "ls"]));
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("mixed") && line.contains("running")),
        "{listed}"
    );
    let inspected = stdout(&env.wasmq(&["queue", "inspect", "mixed"]));
    assert!(
        inspected.contains("3 pending, 0 active, 2 scheduled, 0 retry, 2 archived, 4 completed"),
        "{inspected}"
    );
    assert!(inspected.contains("4 processed, 2 failed"), "{inspected}");
    let missing = env.wasmq(&["queue", "inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(5));

    let tasks = json(&env.wasmq(&[
        "task", "ls", "--queue", "mixed", "--state", "archived", "--json",
    ]));
    let mut ids: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected: Vec<&str> = archived.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected);
    let page = json(&env.wasmq(&[
        "task",
        "ls",
        "--queue",
        "mixed",
        "--state",
        "completed",
        "--size",
        "3",
        "--page",
        "1",
        "--json",
    ]));
    assert_eq!(
        page.as_array().unwrap().len(),
        1,
        "4 completed tasks, pages of 3"
    );
    let table = stdout(&env.wasmq(&["task", "ls", "--queue", "mixed", "--state", "archived"]));
    assert!(
        table.contains("handler-error: failing attempt 1"),
        "{table}"
    );
}

/// Single and bulk actions: run, archive, delete, by id and by state; and
/// removing a queue, refused while it has work unless forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_run_archived_and_deleted_one_by_one_and_in_bulk() {
    let env = Env::start().await;
    let archived = mixed_queue(&env).await;

    let ran = env.wasmq(&["task", "run", &archived[0]]);
    assert!(stdout(&ran).contains("archived task"), "{}", stdout(&ran));
    assert_eq!(
        env.task("mixed", &archived[0]).await.unwrap().state,
        TaskState::Pending
    );
    let again = env.wasmq(&["task", "run", &archived[0]]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("run does not apply to pending tasks"),
        "{}",
        stderr(&again)
    );
    let archive = env.wasmq(&["task", "archive", &archived[0]]);
    assert!(archive.status.success(), "{}", stderr(&archive));
    assert_eq!(
        env.task("mixed", &archived[0]).await.unwrap().state,
        TaskState::Archived
    );

    let moved = env.wasmq(&["task", "runall", "--queue", "mixed", "--state", "scheduled"]);
    assert_eq!(
        stdout(&moved),
        "2 scheduled task(s) of queue \"mixed\" moved to the head of the queue"
    );
    let counts = env.counts("mixed").await;
    assert_eq!((counts.pending, counts.scheduled), (5, 0));
    let archived_all = env.wasmq(&[
        "task",
        "archiveall",
        "--queue",
        "mixed",
        "--state",
        "pending",
    ]);
    assert_eq!(
        stdout(&archived_all),
        "5 pending task(s) of queue \"mixed\" archived"
    );
    let deleted = env.wasmq(&[
        "task",
        "deleteall",
        "--queue",
        "mixed",
        "--state",
        "archived",
    ]);
    assert_eq!(
        stdout(&deleted),
        "7 archived task(s) of queue \"mixed\" deleted"
    );
    let refused = env.wasmq(&["task", "runall", "--queue", "mixed", "--state", "pending"]);
    assert!(
        stderr(&refused).contains("run does not apply to pending tasks"),
        "{}",
        stderr(&refused)
    );

    env.client
        .enqueue(NewTask::new("echo", "{}").unwrap().queue("mixed"))
        .await
        .unwrap();
    let refused = env.wasmq(&["queue", "rm", "mixed"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("still has unfinished tasks"),
        "{}",
        stderr(&refused)
    );
    let removed = env.wasmq(&["queue", "rm", "mixed", "--force"]);
    assert!(
        stdout(&removed).contains("removed with its 5 task(s)"),
        "{}",
        stdout(&removed)
    );
    assert!(!env.queue_names().contains(&"mixed".to_string()));
    assert_eq!(
        env.counts("mixed").await.unfinished() + env.counts("mixed").await.completed,
        0
    );
}

/// `server ls` shows live workers from their heartbeats: host, pid,
/// concurrency, running tasks, plugins and versions; a stopped worker goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ls_shows_live_workers_and_what_they_run() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT, ECHO_COMPONENT]);
    let long = env
        .client
        .enqueue(NewTask::new("burn", r#"{"ms":30000}"#).unwrap())
        .await
        .unwrap()
        .id;
    let mut worker = env.worker(
        plugins.path(),
        &["--concurrency", "3", "--queues", "default=2,low"],
    );
    let servers = loop {
        let servers = json(&env.wasmq(&["server", "ls", "--json"]));
        if servers[0]["running"]
            .as_array()
            .is_some_and(|running| !running.is_empty())
        {
            break servers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let server = &servers[0];
    assert_eq!(server["pid"], worker.pid());
    assert_eq!(server["concurrency"], 3);
    assert_eq!(
        server["queues"],
        serde_json::json!([["default", 2], ["low", 1]])
    );
    assert_eq!(server["running"][0]["id"], long.as_str());
    assert_eq!(server["running"][0]["task_type"], "burn");
    let names: Vec<&str> = server["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["burn", "echo"]);
    assert_eq!(server["plugins"][0]["version"], "0.1.0");
    let table = stdout(&env.wasmq(&["server", "ls"]));
    assert!(table.contains("burn@0.1.0, echo@0.1.0"), "{table}");
    assert!(table.contains("1/3"), "{table}");

    worker.terminate(Duration::from_secs(30)).await;
    let after = json(&env.wasmq(&["server", "ls", "--json"]));
    assert_eq!(
        after,
        serde_json::json!([]),
        "a stopped worker leaves the list"
    );
}

/// `plugin stats` sums runs and failure classes per plugin and task type
/// across workers, with fuel and time percentiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_stats_count_runs_and_failure_classes() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, LOOP_COMPONENT]);
    for _ in 0..10 {
        env.client
            .enqueue(NewTask::new("echo", "{}").unwrap())
            .await
            .unwrap();
    }
    for _ in 0..2 {
        env.client
            .enqueue(NewTask::new("loop", "{}").unwrap().max_retry(0))
            .await
            .unwrap();
    }
    let mut worker = env.worker(plugins.path(), &["--fuel", "20000000"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "every task to end",
        |c| c.completed == 10 && c.archived == 2,
    )
    .await;
    // Statistics are flushed every 5 s and on shutdown.
    worker.terminate(Duration::from_secs(30)).await;
    let stats = json(&env.wasmq(&["plugin", "stats", "--json"]));
    let by_type = |task_type: &str| {
        stats
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["task_type"] == task_type)
            .unwrap()
            .clone()
    };
    let echo = by_type("echo");
    assert_eq!(
        (
            echo["plugin"].as_str(),
            echo["runs"].as_u64(),
            echo["ok"].as_u64()
        ),
        (Some("echo"), Some(10), Some(10))
    );
    assert!(echo["fuel_p50"].as_u64().unwrap() > 0);
    assert!(echo["time_p99_us"].as_u64().unwrap() > 0);
    let spin = by_type("loop");
    assert_eq!(spin["runs"], 2);
    assert_eq!(spin["failures"]["out-of-fuel"], 2);
    let table = stdout(&env.wasmq(&["plugin", "stats"]));
    assert!(table.contains("out-of-fuel=2"), "{table}");
}

/// The worker's Prometheus endpoint counts exactly the tasks it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_tasks_the_worker_ran() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    for _ in 0..20 {
        env.client
            .enqueue(NewTask::new("echo", "{}").unwrap())
            .await
            .unwrap();
    }
    for _ in 0..3 {
        env.client
            .enqueue(
                NewTask::new("flaky", r#"{"fail_times":9}"#)
                    .unwrap()
                    .max_retry(0),
            )
            .await
            .unwrap();
    }
    let address = format!("127.0.0.1:{}", free_port());
    let _worker = env.worker(plugins.path(), &["--metrics-addr", &address]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "every task to end",
        |c| c.completed == 20 && c.archived == 3,
    )
    .await;
    wait_for_http(&address, "/metrics").await;
    let expected = [
        "wasmq_queue_tasks{queue=\"default\",state=\"completed\"} 20",
        "wasmq_queue_tasks{queue=\"default\",state=\"archived\"} 3",
        "wasmq_tasks_processed_total{queue=\"default\",type=\"echo\"} 20",
        "wasmq_tasks_failed_total{queue=\"default\",type=\"flaky\",class=\"handler-error\"} 3",
        "wasmq_task_duration_seconds_count{type=\"echo\"} 20",
        "wasmq_task_fuel_count{plugin=\"flaky\",type=\"flaky\"} 3",
        "wasmq_wasm_instantiation_seconds_count{plugin=\"echo\"} 20",
        "wasmq_plugin_loads_total{plugin=\"echo\",version=\"0.1.0\"} 1",
        "# TYPE wasmq_task_duration_seconds histogram",
    ];
    // The queue gauges are refreshed every few seconds, and a counter may
    // be bumped just after Redis has the outcome: wait for a scrape that
    // shows the end of the run, then say what is missing if none does.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = http("GET", &address, "/metrics", &[]).unwrap().1;
        if expected.iter().all(|line| text.contains(line)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for line in expected {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// The dashboard's API refuses write actions when read-only, and without
/// the token when one is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_guards_write_actions() {
    let env = Env::start().await;
    let id = env
        .client
        .enqueue(
            NewTask::new("echo", "{}")
                .unwrap()
                .process_in(Duration::from_secs(3600)),
        )
        .await
        .unwrap()
        .id;
    let start = |extra: &[&str]| {
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = WasmqProcess::command(Path::new(WASMQ));
        command
            .args(["dashboard", "--redis", &env.url(), "--listen", &address])
            .args(extra);
        (WasmqProcess::spawn(command), address)
    };
    let run = format!("/api/queues/default/tasks/{id}/run");
    // What the dashboard's page sends with every write.
    let write = |address: &str, auth: Option<&str>| {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("X-Wasmq-Request", "1"),
        ];
        headers.extend(auth.map(|auth| ("Authorization", auth)));
        request("POST", address, &run, &headers, "{}")
    };

    let (_read_only, address) = start(&["--read-only"]);
    wait_for_http(&address, "/api/overview").await;
    let (status, _, body) = write(&address, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (status, body) = http("GET", &address, "/api/overview", &[]).unwrap();
    assert_eq!(status, 200);
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["read_only"], true);
    assert_eq!(overview["queues"][0]["counts"]["scheduled"], 1);

    let (_guarded, address) = start(&["--token", "s3cret"]);
    wait_for_http(&address, "/").await;
    let (status, _, _) = write(&address, Some("Bearer wrong"));
    assert_eq!(status, 401);
    let (status, _, body) = write(&address, Some("Bearer s3cret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.task("default", &id).await.unwrap().state,
        TaskState::Pending
    );
    let (status, _, body) = write(&address, Some("Bearer s3cret"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("run does not apply to pending tasks"),
        "{body}"
    );
    let (status, page) = http("GET", &address, "/", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("app.js"), "the page is served by the binary");
}

/// Task types no plugin declares share one `type` label value, however
/// many a producer invents, and the endpoint sends the security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_only_declared_task_types() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    env.client
        .enqueue(NewTask::new("echo", "{}").unwrap())
        .await
        .unwrap();
    for n in 0..60 {
        let task_type = format!("random-{n}-{}", std::process::id());
        env.client
            .enqueue(NewTask::new(&task_type, "{}").unwrap().max_retry(0))
            .await
            .unwrap();
    }
    let address = format!("127.0.0.1:{}", free_port());
    let _worker = env.worker(plugins.path(), &["--metrics-addr", &address]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "every task to end",
        |c| c.completed == 1 && c.archived == 60,
    )
    .await;
    wait_for_http(&address, "/metrics").await;
    let failed =
        "wasmq_tasks_failed_total{queue=\"default\",type=\"_other\",class=\"no-handler\"} 60";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (headers, text) = loop {
        let (_, headers, text) = request("GET", &address, "/metrics", &[], "");
        if text.contains(failed) || std::time::Instant::now() > deadline {
            break (headers, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.contains(failed), "missing {failed:?} in:\n{text}");
    let types: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split("type=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        types,
        ["_other", "echo"].into_iter().collect(),
        "type labels in:\n{text}"
    );
    crate::dashboard::assert_security_headers("/metrics", &headers);
}

/// A Redis of `maxmemory` (with the `noeviction` policy) for the memory
/// tests.
async fn redis_limited_to(maxmemory: &str) -> Env {
    Env::start_with(wasmq::dev::RedisOptions {
        extra_args: vec![
            ("maxmemory".into(), maxmemory.into()),
            ("maxmemory-policy".into(), "noeviction".into()),
        ],
        ..Default::default()
    })
    .await
}

/// Redis's `used_memory`, bytes.
async fn used_memory(env: &Env) -> u64 {
    let mut conn = env.redis_connection().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO memory has used_memory")
}

/// Redis at its memory limit: the worker still runs and records every task
/// it holds, `server ls` still lists it (its heartbeat is written anyway),
/// and it says so once when Redis starts refusing writes and once when
/// Redis accepts them again, instead of an error every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_memory_limit_workers_keep_their_tasks_and_stay_listed() {
    let env = redis_limited_to("8mb").await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let tasks: Vec<NewTask> = (0..40)
        .map(|n| NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
        .collect();
    for outcome in env.client.enqueue_batch(tasks).await {
        outcome.unwrap();
    }
    // Fill Redis up to its limit.
    let mut conn = env.redis_connection().await;
    let filler = "x".repeat(64 * 1024);
    let mut fillers = 0;
    loop {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{fillers}"))
            .arg(&filler)
            .query_async(&mut conn)
            .await;
        match set {
            Ok(()) => fillers += 1,
            Err(err) if err.code() == Some("OOM") => break,
            Err(err) => panic!("filling Redis: {err}"),
        }
    }
    let mut worker = env.worker(plugins.path(), &["--lease", "2s"]);
    env.wait_for_workers(1).await;
    let listed = json(&env.wasmq(&["server", "ls", "--json"]));
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "server ls lists the worker at the memory limit: {listed}"
    );
    worker
        .wait_for_log("Redis is out of memory", Duration::from_secs(20))
        .await;
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete at the memory limit",
        |c| c.completed == 40,
    )
    .await;
    // Two more heartbeats at the limit: still listed, and not one more
    // line about it.
    let mut conn = env.redis_connection().await;
    let score = || {
        let mut conn = conn.clone();
        async move {
            let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg("wasmq:{fleet}:servers")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .unwrap();
            scores.first().map(|(_, score)| *score)
        }
    };
    let first = score().await;
    for _ in 0..2 {
        let before = score().await;
        wait_until(
            Duration::from_secs(20),
            "a heartbeat at the limit",
            || async { score().await != before },
        )
        .await;
    }
    assert_ne!(score().await, first);
    env.wait_for_workers(1).await;

    // Free the memory: the worker notices at its next heartbeat.
    for n in 0..fillers {
        let _: () = redis::cmd("DEL")
            .arg(format!("filler:{n}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    worker
        .wait_for_log("Redis accepts writes again", Duration::from_secs(20))
        .await;
    env.client
        .enqueue(NewTask::new("echo", "{}").unwrap())
        .await
        .expect("Redis takes new tasks again");
    env.wait_for_counts("default", Duration::from_secs(30), "the new task", |c| {
        c.completed == 41
    })
    .await;
    worker.terminate(Duration::from_secs(20)).await;
    let log = worker.log();
    assert_eq!(
        log.matches("Redis is out of memory").count(),
        1,
        "said once per state change:\n{log}"
    );
    assert!(
        !log.contains("a Redis command failed"),
        "no error per failed command:\n{log}"
    );
}

/// Completed tasks' results are held to the queue's byte budget: past it,
/// the completed tasks that expire soonest are forgotten early, so results
/// alone cannot push Redis past its memory limit; every task still runs and
/// is counted, and a result larger than the whole budget is not stored (its
/// task is kept as completed, with a note saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_results_are_held_to_the_queue_budget() {
    let env = redis_limited_to("16mb").await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let budget: u64 = 512 * 1024;
    let payload = format!(r#"{{"s":"{}"}}"#, "r".repeat(100_000));
    let tasks: Vec<NewTask> = (0..100)
        .map(|_| {
            NewTask::new("echo", payload.clone())
                .unwrap()
                .retention(Duration::from_secs(3600))
        })
        .collect();
    for outcome in env.client.enqueue_batch(tasks).await {
        outcome.unwrap();
    }
    let mut worker = env.worker(plugins.path(), &["--result-budget", "512KiB"]);
    wait_until(Duration::from_secs(60), "every task to run", || async {
        let counts = env.counts("default").await;
        counts.pending == 0 && counts.active == 0
    })
    .await;
    let stats = env.queue_stats("default");
    assert_eq!(
        stats["processed_today"], 100,
        "every task ran and was counted"
    );
    let counts = env.counts("default").await;
    assert!(
        counts.completed >= 1 && counts.completed <= 6,
        "as many results as fit in the budget are kept: {counts:?}"
    );
    let mut conn = env.redis_connection().await;
    let total: u64 = redis::cmd("HGET")
        .arg("wasmq:{default}:result")
        .arg(" bytes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(total <= budget, "{total} bytes of results stored");
    assert!(
        used_memory(&env).await < 16 << 20,
        "Redis stayed within its limit"
    );

    let big = format!(r#"{{"s":"{}"}}"#, "b".repeat(600_000));
    let id = env
        .client
        .enqueue(
            NewTask::new("echo", big)
                .unwrap()
                .retention(Duration::from_secs(3600)),
        )
        .await
        .unwrap()
        .id;
    let info = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let note = info.last_error.expect("a note on the dropped result");
    assert!(
        note.message.contains("larger than the result budget"),
        "{}",
        note.message
    );
    worker.terminate(Duration::from_secs(20)).await;
}

/// The metrics endpoint answers only requests that name its address (or a
/// name allowed with `--metrics-allow-host`): a web page reaching it
/// through DNS rebinding gets 421 and no series, with the security headers
/// every response carries.
#[tokio::test]
async fn metrics_refuse_a_foreign_host_name() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _worker = env.worker(
        plugins.path(),
        &[
            "--metrics-addr",
            &address,
            "--metrics-allow-host",
            "metrics.example",
        ],
    );
    wait_for_http(&address, "/metrics").await;
    let rebound = format!("rebind.example:{port}");
    let (status, headers, body) = request("GET", &address, "/metrics", &[("Host", &rebound)], "");
    assert_eq!(status, 421, "{body}");
    assert!(
        !body.contains("wasmq_"),
        "no series for a foreign host: {body}"
    );
    assert!(body.contains("--metrics-allow-host"), "{body}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    for host in [address.clone(), "metrics.example:9100".to_string()] {
        let (status, _, body) = request("GET", &address, "/metrics", &[("Host", &host)], "");
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("# TYPE wasmq_plugin_loads counter"), "{body}");
    }
}

/// `wasmq stats --history` counts, from the samples workers take once a
/// minute, exactly the attempts that ended since the first sample, per
/// queue; and bad spans are refused naming what is kept.
#[tokio::test]
async fn stats_history_counts_what_ended_since_the_first_sample() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let _worker = env.worker(
        plugins.path(),
        &["--queues", "default,other", "--no-scheduler"],
    );
    wait_until(
        Duration::from_secs(30),
        "a sample of both queues",
        || async {
            let mut redis = env.redis_connection().await;
            let mut sampled = 0;
            for queue in ["default", "other"] {
                let len: i64 = redis::cmd("LLEN")
                    .arg(format!("wasmq:{{{queue}}}:history"))
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                sampled += (len >= 1) as usize;
            }
            sampled == 2
        },
    )
    .await;
    for n in 0..5 {
        env.client
            .enqueue(NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
            .await
            .unwrap();
    }
    for _ in 0..2 {
        env.client
            .enqueue(
                NewTask::new("flaky", r#"{"fail_times":1}"#)
                    .unwrap()
                    .queue("other")
                    .max_retry(0),
            )
            .await
            .unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "5 completed", |c| {
        c.completed == 5
    })
    .await;
    env.wait_for_counts("other", Duration::from_secs(30), "2 archived", |c| {
        c.archived == 2
    })
    .await;

    let history = json(&env.wasmq(&["stats", "--history", "--json"]));
    let sum = |queue: &str, field: &str| -> u64 {
        history
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["queue"] == queue)
            .flat_map(|q| q["intervals"].as_array().unwrap().clone())
            .map(|interval| interval[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (sum("default", "processed"), sum("default", "failed")),
        (5, 0),
        "{history}"
    );
    assert_eq!(
        (sum("other", "processed"), sum("other", "failed")),
        (0, 2),
        "{history}"
    );
    let table = stdout(&env.wasmq(&["stats", "--history", "30m"]));
    assert!(
        table.contains("PER SECOND") && table.contains("other"),
        "{table}"
    );

    let refused = env.wasmq(&["stats", "--history", "3d"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("a minute to a day"),
        "{}",
        stderr(&refused)
    );
}
