//! Probation: a plugin whose attempts keep ending at their limits runs in
//! the background lane, its other tasks wait in their queue without losing
//! an attempt, and one success ends its probation.

use std::time::Duration;

use wasmq::{FailureKind, NewTask, TaskState};
use wasmq_testkit::*;

use crate::support::{Env, free_port, http, stdout, wait_for_http};

/// The value of one series in a Prometheus text page, if present.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Spinning tasks strike out, their plugin goes on probation, and the echo
/// tasks behind them no longer wait for them; every spinning task still
/// runs exactly once (being parked or put back is not an attempt).
#[tokio::test]
async fn a_plugin_that_keeps_hitting_its_limits_is_put_on_probation_and_loses_nothing() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, HOSTILE_SPIN_COMPONENT]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "2",
            "--fuel",
            "1000000000",
            "--probation-strikes",
            "2",
            "--probation-lane",
            "1",
            "--probation-park",
            "3",
            "--probation-postpone",
            "200ms",
            "--shutdown-timeout",
            "1s",
            "--metrics-addr",
            &metrics,
            "--no-scheduler",
        ],
    );

    // Ten spinning tasks first, then echo tasks behind them.
    let hostile = enqueue_hostile_then_echoes(&env, "hostile:spin", 10, 40).await;
    // The first two spinning tasks take both slots and strike out; the
    // others are parked (or put back) and take no slot, so the echo tasks
    // complete while most spinning tasks are still waiting for the lane
    // (without probation, at least eight would have run first).
    let counts = env
        .wait_for_counts("default", Duration::from_secs(60), "the echo tasks", |c| {
            c.completed == 40
        })
        .await;
    assert!(
        counts.archived <= 4,
        "the echo tasks waited for the spinning tasks: {counts:?}"
    );
    worker
        .wait_for_log(
            "plugin on probation: its last 2 attempts in a row ended at a limit",
            Duration::from_secs(5),
        )
        .await;
    wait_for_http(&metrics, "/metrics").await;
    let (_, text) = http("GET", &metrics, "/metrics", &[]).unwrap();
    assert_eq!(
        series(&text, "wasmq_plugin_on_probation{plugin=\"hostile-spin\"}"),
        Some(1.0),
        "{text}"
    );
    let postponed = series(
        &text,
        "wasmq_probation_postponed_total{queue=\"default\",type=\"hostile:spin\"}",
    );
    assert!(
        postponed.is_some_and(|n| n >= 1.0),
        "with one task running and three parked, some had to go back to the queue: {text}"
    );

    // The lane runs only on idle CPU, which a busy machine may not have:
    // stop this worker (its parked tasks go back) and let one without
    // probation finish the rest.
    worker.terminate(Duration::from_secs(15)).await;
    let _second = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "4",
            "--fuel",
            "1000000000",
            "--probation-strikes",
            "0",
            "--no-scheduler",
        ],
    );
    env.wait_for_counts(
        "default",
        Duration::from_secs(120),
        "every spinning task to end",
        |c| c.archived == 10,
    )
    .await;
    for id in &hostile {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.state, TaskState::Archived, "{id}");
        let error = info.last_error.unwrap();
        assert_eq!(
            error.kind,
            FailureKind::OutOfFuel,
            "{id}: {}",
            error.message
        );
        assert_eq!(error.attempt, 1, "{id}: {}", error.message);
    }
}

/// Enqueues `hostile` tasks of `task_type` (no retry), then `echoes` echo
/// tasks behind them; returns the hostile tasks' ids.
async fn enqueue_hostile_then_echoes(
    env: &Env,
    task_type: &str,
    hostile: usize,
    echoes: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..hostile {
        let task = NewTask::new(task_type, "{}").unwrap().max_retry(0);
        ids.push(env.client.enqueue(task).await.unwrap().id);
    }
    let echoes = (0..echoes)
        .map(|i| NewTask::new("echo", format!(r#"{{"i":{i}}}"#)).unwrap())
        .collect::<Vec<_>>();
    for outcome in env.client.enqueue_batch(echoes).await {
        outcome.unwrap();
    }
    ids
}

/// The only worker as `wasmq server ls --json` shows it, once its heartbeat
/// (they go out every 5 s) satisfies `shows`, or as last seen after 20 s.
async fn server_once(env: &Env, shows: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = env.wasmq(&["server", "ls", "--json"]);
        let servers: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
        let server = servers[0].clone();
        if shows(&server) || std::time::Instant::now() > deadline {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn one_attempt_that_succeeds_ends_a_plugins_probation() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let worker = env.worker(
        plugins.path(),
        &[
            "--max-result",
            "1KiB",
            "--probation-strikes",
            "2",
            "--metrics-addr",
            &metrics,
            "--no-scheduler",
        ],
    );

    // Two results over the cap: two strikes.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2048));
    for _ in 0..2 {
        let task = NewTask::new("echo", big.as_str()).unwrap().max_retry(0);
        env.client.enqueue(task).await.unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "two failures", |c| {
        c.archived == 2
    })
    .await;
    worker
        .wait_for_log("plugin on probation", Duration::from_secs(5))
        .await;

    // Small payloads run in the lane, succeed, and clear the record.
    for i in 0..5 {
        let task = NewTask::new("echo", format!(r#"{{"i":{i}}}"#)).unwrap();
        env.client.enqueue(task).await.unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "five echoes", |c| {
        c.completed == 5
    })
    .await;
    worker
        .wait_for_log(
            "plugin's probation ended: an attempt succeeded",
            Duration::from_secs(5),
        )
        .await;
    wait_for_http(&metrics, "/metrics").await;
    let (_, text) = http("GET", &metrics, "/metrics", &[]).unwrap();
    assert_eq!(
        series(&text, "wasmq_plugin_on_probation{plugin=\"echo\"}"),
        Some(0.0),
        "{text}"
    );
}

/// Parked tasks are leased but take no slot, operators see them apart from
/// the running ones, and a worker that shuts down puts them back at the
/// head of their queue at once (they do not start in its shutdown
/// timeout), their attempt not counted.
#[tokio::test]
async fn parked_tasks_go_back_to_their_queue_on_shutdown() {
    let env = Env::start().await;
    // A plugin that sleeps in a host call until its timeout: the task in
    // the lane holds its turn for 30 s without using the CPU, so the
    // others stay parked however busy the machine is.
    let plugins = PluginDir::with(&[HOSTILE_SLEEP_COMPONENT]);
    let mut worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "2",
            "--task-timeout",
            "30s",
            "--probation-strikes",
            "1",
            "--probation-lane",
            "1",
            "--shutdown-timeout",
            "1s",
            "--no-scheduler",
        ],
    );
    let sleep = || NewTask::new("hostile:sleep", "{}").unwrap().max_retry(0);
    let strike = sleep().timeout(Duration::from_secs(1));
    env.client.enqueue(strike).await.unwrap();
    env.wait_for_counts("default", Duration::from_secs(30), "one strike", |c| {
        c.archived == 1
    })
    .await;

    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(env.client.enqueue(sleep()).await.unwrap().id);
    }
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "all eight leased by a worker of two slots (one running, seven parked)",
        |c| c.active == 8,
    )
    .await;

    // Operators see it: the plugin on probation, the parked tasks apart
    // from the running one (heartbeats go out every 5 s).
    let server = server_once(&env, |server| server["parked"] == 7).await;
    assert_eq!(server["parked"], 7, "{server}");
    assert_eq!(server["running"].as_array().unwrap().len(), 1, "{server}");
    assert_eq!(server["plugins"][0]["on_probation"], true, "{server}");
    let table = stdout(&env.wasmq(&["server", "ls"]));
    assert!(table.contains("1/2 +7 parked"), "{table}");
    assert!(table.contains("(on probation)"), "{table}");

    let status = worker.terminate(Duration::from_secs(15)).await;
    let log = worker.log();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert_eq!(
        log.matches("put back at the head of its queue").count(),
        8,
        "the running task after the shutdown timeout, the parked ones at once:\n{log}"
    );

    let counts = env.counts("default").await;
    assert_eq!((counts.pending, counts.active), (8, 0), "{counts:?}");
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!((info.state, info.attempts), (TaskState::Pending, 0), "{id}");
    }
}

/// A worker killed while it holds parked tasks loses none of them: their
/// leases run out and another worker takes them back, like any leased task.
#[tokio::test]
async fn parked_tasks_of_a_killed_worker_are_taken_back() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_SLEEP_COMPONENT]);
    let mut worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "2",
            "--probation-strikes",
            "1",
            "--probation-lane",
            "1",
            "--lease",
            "1s",
            "--no-scheduler",
        ],
    );
    // Each attempt sleeps until its 2 s timeout.
    let sleep = |retries| {
        NewTask::new("hostile:sleep", "{}")
            .unwrap()
            .timeout(Duration::from_secs(2))
            .max_retry(retries)
    };
    env.client.enqueue(sleep(0)).await.unwrap();
    env.wait_for_counts("default", Duration::from_secs(30), "one strike", |c| {
        c.archived == 1
    })
    .await;
    for _ in 0..8 {
        env.client.enqueue(sleep(1)).await.unwrap();
    }
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "all eight leased (one running, seven parked)",
        |c| c.active == 8,
    )
    .await;
    worker.kill9();

    // A second worker (without probation, all eight at once) takes them
    // back when their leases run out and runs each again: every one ends,
    // none is left leased to the dead worker.
    let _second = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "8",
            "--probation-strikes",
            "0",
            "--lease",
            "1s",
            "--no-scheduler",
        ],
    );
    let counts = env
        .wait_for_counts(
            "default",
            Duration::from_secs(60),
            "every task taken back and ended",
            |c| c.archived == 9,
        )
        .await;
    assert_eq!((counts.active, counts.pending), (0, 0), "{counts:?}");
}

/// A plugin this worker has not run yet is on trial: no more of its
/// attempts run at once than it has strikes left before probation. Its
/// other tasks wait for a verdict only while the trial moves: here the
/// attempts being tried hang (until a 30 s timeout), so those tasks go back
/// to their queue instead of holding the worker's slots, and the echo tasks
/// behind them run meanwhile.
#[tokio::test]
async fn a_plugin_on_trial_runs_no_more_attempts_at_once_than_its_strikes_nor_holds_the_slots() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_SLEEP_COMPONENT, ECHO_COMPONENT]);
    let mut worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "6",
            "--task-timeout",
            "30s",
            "--probation-strikes",
            "2",
            "--shutdown-timeout",
            "1s",
            "--no-scheduler",
        ],
    );
    let sleepers = enqueue_hostile_then_echoes(&env, "hostile:sleep", 8, 10).await;
    // Had the sleepers waited in their slots for a verdict, all six slots
    // would be theirs until the first attempts time out, after 30 s.
    let counts = env
        .wait_for_counts(
            "default",
            Duration::from_secs(20),
            "the echo tasks, while the sleepers on trial still sleep",
            |c| c.completed == 10,
        )
        .await;
    assert_eq!(counts.archived, 0, "a sleeper ended early: {counts:?}");
    let server = server_once(&env, |server| {
        server["running"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    let running = server["running"].as_array().unwrap();
    assert_eq!(running.len(), 2, "two attempts on trial: {server}");
    assert!(
        running
            .iter()
            .all(|task| task["task_type"] == "hostile:sleep"),
        "{server}"
    );
    let plugins = server["plugins"].as_array().unwrap();
    assert!(
        plugins.iter().all(|plugin| plugin["on_probation"] == false),
        "{server}"
    );
    let mut put_back = 0;
    for id in &sleepers {
        let info = env.task("default", id).await.unwrap();
        if let Some(note) = info.last_error {
            assert_eq!(note.kind, FailureKind::Probation, "{id}: {}", note.message);
            assert!(note.message.contains("is on trial"), "{}", note.message);
            put_back += 1;
        }
    }
    assert!(
        put_back >= 1,
        "the sleepers not on trial went back to the queue"
    );

    let status = worker.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}\n{}", worker.log());
    let counts = env.counts("default").await;
    assert_eq!(
        (
            counts.pending + counts.scheduled,
            counts.active,
            counts.archived
        ),
        (8, 0, 0),
        "every sleeper back in the queue on shutdown, none lost: {counts:?}"
    );
    for id in &sleepers {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.attempts, 0, "{id}: being put back is not an attempt");
    }
}
