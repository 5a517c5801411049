use std::io::Write;
use std::time::{Duration, SystemTime};

use wasmq::{FailureKind, NewTask, TaskState};
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, LOOP_COMPONENT, PluginDir};

use crate::support::{Env, stderr, stdout, wait_until};

fn echoes(count: usize, queue: &str) -> Vec<NewTask> {
    (0..count)
        .map(|n| {
            NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
                .unwrap()
                .queue(queue)
        })
        .collect()
}

/// Weighted priorities: while every queue has work, each gets its share of
/// the work (6:3:1), measured over the first 1,500 completions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_priorities_hold_over_thousands_of_tasks() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    for queue in ["critical", "default", "low"] {
        for outcome in env.client.enqueue_batch(echoes(1500, queue)).await {
            outcome.unwrap();
        }
    }
    let _worker = env.worker(
        plugins.path(),
        &[
            "--queues",
            "critical=6,default=3,low=1",
            "--concurrency",
            "1",
        ],
    );
    let done = loop {
        let mut done = [0u64; 3];
        for (i, queue) in ["critical", "default", "low"].iter().enumerate() {
            done[i] = env.counts(queue).await.completed;
        }
        if done.iter().sum::<u64>() >= 1500 {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let total = done.iter().sum::<u64>() as f64;
    let shares: Vec<f64> = done.iter().map(|n| *n as f64 / total).collect();
    for (share, expected) in shares.iter().zip([0.6, 0.3, 0.1]) {
        assert!(
            (share - expected).abs() < 0.05,
            "shares {shares:?} (counts {done:?}) are not 6:3:1"
        );
    }
}

/// Strict priorities: no task of a lower queue runs while a higher queue
/// still has pending work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_priorities_serve_lower_queues_only_when_higher_ones_are_empty() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    for queue in ["low", "default", "critical"] {
        for outcome in env.client.enqueue_batch(echoes(300, queue)).await {
            outcome.unwrap();
        }
    }
    let _worker = env.worker(
        plugins.path(),
        &[
            "--queues",
            "low=1,critical=3,default=2",
            "--strict",
            "--concurrency",
            "1",
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "every task to complete",
        || async {
            let mut completed = 0;
            for queue in ["critical", "default", "low"] {
                completed += env.counts(queue).await.completed;
            }
            completed == 900
        },
    )
    .await;
    // Completion times, from the completed sets (scored by completion time
    // plus the same retention).
    let mut redis = env.redis_connection().await;
    let mut spans = Vec::new();
    for queue in ["critical", "default", "low"] {
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("wasmq:{{{queue}}}:completed"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await
            .unwrap();
        let first = scores.iter().map(|(_, s)| *s).fold(f64::MAX, f64::min);
        let last = scores.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
        spans.push((queue, first, last));
    }
    assert!(
        spans[0].2 <= spans[1].1,
        "a default task finished before the last critical one: {spans:?}"
    );
    assert!(
        spans[1].2 <= spans[2].1,
        "a low task finished before the last default one: {spans:?}"
    );
}

/// A paused queue is not served, but still accepts tasks; resumed, it is
/// served at once. The worker serves another queue meanwhile, whose tasks
/// completing (after the paused queue's were enqueued) show that it runs
/// and looked at both.
#[tokio::test]
async fn a_paused_queue_accepts_tasks_but_is_not_served_until_resumed() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let _worker = env.worker(
        plugins.path(),
        &["--queues", "default=2,other=1", "--strict"],
    );
    let paused = env.wasmq(&["queue", "pause", "default"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    for _ in 0..5 {
        let output = env.wasmq(&["enqueue", "echo", "{}"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    // With strict priorities, `other` is served only when `default` has
    // nothing the worker may take: these complete only after the worker
    // found the paused queue's tasks not for it.
    for _ in 0..5 {
        let output = env.wasmq(&["enqueue", "echo", "{}", "--queue", "other"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    env.wait_for_counts(
        "other",
        Duration::from_secs(10),
        "the other queue's tasks",
        |c| c.completed == 5,
    )
    .await;
    assert_eq!(
        env.counts("default").await.pending,
        5,
        "a paused queue was served"
    );

    let resumed = env.wasmq(&["queue", "resume", "default"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    env.wait_for_counts(
        "default",
        Duration::from_secs(10),
        "the tasks to complete",
        |c| c.completed == 5,
    )
    .await;
}

/// `task cancel` stops a running instance at once and archives the task as
/// cancelled; the worker goes on. A pending task is cancelled too.
#[tokio::test]
async fn cancelling_a_running_task_stops_it_and_archives_it_as_cancelled() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, LOOP_COMPONENT]);
    let waiting = env
        .client
        .enqueue(NewTask::new("echo", "{}").unwrap().queue("later"))
        .await
        .unwrap()
        .id;
    let stuck = env
        .client
        .enqueue(NewTask::new("loop", "{}").unwrap())
        .await
        .unwrap()
        .id;
    let worker = env.worker(
        plugins.path(),
        &["--fuel", "1000000000000000", "--task-timeout", "10m"],
    );
    wait_until(Duration::from_secs(20), "the loop task to run", || async {
        env.task("default", &stuck).await.unwrap().state == TaskState::Active
    })
    .await;

    let output = env.wasmq(&["task", "cancel", &stuck]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("cancelled active task"),
        "{}",
        stdout(&output)
    );
    let info = env.task("default", &stuck).await.unwrap();
    assert_eq!(info.state, TaskState::Archived);
    assert_eq!(info.last_error.unwrap().kind, FailureKind::Cancelled);
    worker
        .wait_for_log("task cancelled: stopping it", Duration::from_secs(5))
        .await;
    worker
        .wait_for_log("stopped: the task was cancelled", Duration::from_secs(5))
        .await;

    // The worker goes on serving.
    let echo = env
        .client
        .enqueue(NewTask::new("echo", "{}").unwrap())
        .await
        .unwrap()
        .id;
    wait_until(
        Duration::from_secs(10),
        "an echo task to complete",
        || async { env.task("default", &echo).await.unwrap().state == TaskState::Completed },
    )
    .await;
    assert_eq!(
        env.task("default", &stuck).await.unwrap().state,
        TaskState::Archived
    );

    let output = env.wasmq(&["task", "cancel", &waiting]);
    assert!(
        stdout(&output).contains("cancelled pending task"),
        "{}",
        stdout(&output)
    );
    assert_eq!(env.counts("later").await.pending, 0);
    let again = env.wasmq(&["task", "cancel", &waiting]);
    assert!(
        stderr(&again).contains("already finished"),
        "{}",
        stderr(&again)
    );
}

/// Timeout and deadline both bound an attempt; the earlier wins. A task
/// whose deadline passed is not retried.
#[tokio::test]
async fn the_earlier_of_timeout_and_deadline_ends_an_attempt() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[LOOP_COMPONENT]);
    let deadline_first = NewTask::new("loop", "{}")
        .unwrap()
        .timeout(Duration::from_secs(60))
        .deadline(SystemTime::now() + Duration::from_secs(2))
        .max_retry(5);
    let deadline_first = env.client.enqueue(deadline_first).await.unwrap().id;
    let timeout_first = NewTask::new("loop", "{}")
        .unwrap()
        .timeout(Duration::from_secs(1))
        .deadline(SystemTime::now() + Duration::from_secs(3600))
        .max_retry(0);
    let timeout_first = env.client.enqueue(timeout_first).await.unwrap().id;
    let _worker = env.worker(plugins.path(), &["--fuel", "1000000000000000"]);
    for id in [&deadline_first, &timeout_first] {
        wait_until(
            Duration::from_secs(20),
            "the task to be archived",
            || async { env.task("default", id).await.unwrap().state == TaskState::Archived },
        )
        .await;
    }
    let info = env.task("default", &deadline_first).await.unwrap();
    assert_eq!(info.attempts, 1, "a task past its deadline is not retried");
    let error = info.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::Timeout);
    let error = env
        .task("default", &timeout_first)
        .await
        .unwrap()
        .last_error
        .unwrap();
    assert_eq!(error.kind, FailureKind::Timeout);
    assert!(
        error.message.contains("time limit of 1s"),
        "{}",
        error.message
    );
}

/// Completed tasks are forgotten after their retention; the archive is
/// capped in size, and in age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_archive_caps_bound_what_redis_keeps() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let kept = env
        .client
        .enqueue(
            NewTask::new("echo", "{}")
                .unwrap()
                .retention(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .id;
    let failing: Vec<NewTask> = (0..12)
        .map(|n| {
            NewTask::new("flaky", format!(r#"{{"fail_times":1000,"n":{n}}}"#))
                .unwrap()
                .max_retry(0)
        })
        .collect();
    for outcome in env.client.enqueue_batch(failing).await {
        outcome.unwrap();
    }
    let mut worker = env.worker(plugins.path(), &["--archive-max-size", "5"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(20),
        "the archive to be capped at 5",
        |c| c.archived == 5 && c.unfinished() == 0,
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "the completed task to be forgotten",
        || async { env.task("default", &kept).await.is_none() },
    )
    .await;
    worker.kill9();

    let _aging = env.worker(plugins.path(), &["--archive-max-age", "1s"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(20),
        "the archive to empty by age",
        |c| c.archived == 0,
    )
    .await;
}

/// A unique lock is released when its task completes, is archived or is
/// deleted, so an equal task can be enqueued again.
#[tokio::test]
async fn unique_locks_are_released_when_their_task_ends() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let unique = |task_type: &str, payload: &str| {
        NewTask::new(task_type, payload)
            .unwrap()
            .unique(Duration::from_secs(3600))
            .max_retry(0)
    };
    let completes = env.client.enqueue(unique("echo", "{}")).await.unwrap().id;
    let archived = env
        .client
        .enqueue(unique("flaky", r#"{"fail_times":9}"#))
        .await
        .unwrap()
        .id;
    let deleted = env
        .client
        .enqueue(unique("echo", r#"{"delete":"me"}"#).queue("idle"))
        .await
        .unwrap()
        .id;
    assert!(matches!(
        env.client.enqueue(unique("echo", "{}")).await,
        Err(wasmq::Error::DuplicateUnique { .. })
    ));

    let _worker = env.worker(plugins.path(), &[]);
    for id in [&completes, &archived] {
        wait_until(Duration::from_secs(20), "the task to end", || async {
            let state = env.task("default", id).await.unwrap().state;
            state == TaskState::Completed || state == TaskState::Archived
        })
        .await;
    }
    env.client
        .enqueue(unique("echo", "{}"))
        .await
        .expect("released on completion");
    env.client
        .enqueue(unique("flaky", r#"{"fail_times":9}"#))
        .await
        .expect("released on archive");
    let output = env.wasmq(&["task", "delete", &deleted]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.client
        .enqueue(unique("echo", r#"{"delete":"me"}"#).queue("idle"))
        .await
        .expect("released on delete");
}

/// The id of a completed or archived task is refused with the state that
/// holds it, and can be reused after a delete.
#[tokio::test]
async fn a_finished_task_id_is_reused_after_an_explicit_delete() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let _worker = env.worker(plugins.path(), &[]);
    let first = env.wasmq(&["enqueue", "echo", "{}", "--id", "nightly"]);
    assert!(first.status.success(), "{}", stderr(&first));
    wait_until(Duration::from_secs(20), "the task to complete", || async {
        env.task("default", "nightly").await.unwrap().state == TaskState::Completed
    })
    .await;
    let again = env.wasmq(&["enqueue", "echo", "{}", "--id", "nightly"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(
        stderr(&again).contains("as a completed task"),
        "{}",
        stderr(&again)
    );
    assert!(env.wasmq(&["task", "delete", "nightly"]).status.success());
    let reused = env.wasmq(&["enqueue", "echo", "{}", "--id", "nightly"]);
    assert!(reused.status.success(), "{}", stderr(&reused));
}

/// `enqueue --file` sends every good line, reports each bad one by its
/// number, and sums up.
#[tokio::test]
async fn enqueue_from_a_file_reports_bad_lines_and_sends_the_rest() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for n in 1..=2500 {
        let line = match n {
            7 => "{not json".to_string(),
            11 => r#"{"type":"echo","colour":"red"}"#.to_string(),
            13 => r#"{"type":"echo","id":"dup","queue":"default"}"#.to_string(),
            17 => r#"{"type":"echo","timeout":"soon"}"#.to_string(),
            20 => String::new(),
            1 => r#"{"type":"echo","id":"dup","queue":"default","process_in":"1h","max_retry":2,"retention":30,"unique":"1m","payload":{"a":1}}"#.to_string(),
            _ => format!(r#"{{"type":"echo","payload":{{"n":{n}}}}}"#),
        };
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let output = env.wasmq(&[
        "enqueue",
        "--file",
        path.to_str().unwrap(),
        "--queue",
        "bulk",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let summary = stdout(&output);
    assert!(
        summary.ends_with("2495 accepted, 4 refused (1 duplicates, 3 invalid)"),
        "{summary}"
    );
    let errors = stderr(&output);
    for line in [
        "line 7: not a task",
        "line 11: not a task: unknown field `colour`",
        "line 13: duplicate task id",
        "line 17: `timeout`",
    ] {
        assert!(errors.contains(line), "{line:?} missing from:\n{errors}");
    }
    let bulk = env.counts("bulk").await;
    assert_eq!(bulk.pending, 2494, "{bulk:?}");
    // Line 1 set its own queue, schedule and options.
    let info = env.task("default", "dup").await.unwrap();
    assert_eq!(info.state, TaskState::Scheduled);
    assert_eq!(info.message.max_retry, 2);
    assert_eq!(info.message.retention_ms, 30_000);
    assert!(info.message.unique_key.is_some());
}

/// One enqueue batch refuses exactly what the same tasks enqueued one at a
/// time would: an id given twice, a unique task given twice, an id taken by
/// a task already there, an id still reserved by a deleted task; the rest
/// go to pending (in order) or scheduled.
#[tokio::test]
async fn a_batch_refuses_what_one_task_at_a_time_would() {
    let env = Env::start().await;
    let hour = Duration::from_secs(3600);
    let echo = |id: &str| NewTask::new("echo", "{}").unwrap().id(id);
    let unique = |id: &str| {
        NewTask::new("echo", r#"{"same":true}"#)
            .unwrap()
            .id(id)
            .unique(hour)
    };
    env.client
        .enqueue(echo("gone").reserve_id(hour))
        .await
        .unwrap();
    let deleted = env.wasmq(&["task", "delete", "gone", "--queue", "default"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    env.client.enqueue(echo("there")).await.unwrap();

    let batch = vec![
        echo("a"),
        echo("a"),
        unique("u1"),
        unique("u2"),
        echo("s").process_in(Duration::from_secs(60)),
        echo("s"),
        echo("gone"),
        echo("there"),
        echo("r").reserve_id(hour),
        echo("r"),
    ];
    let outcomes = env.client.enqueue_batch(batch).await;
    let accepted = |n: usize| outcomes[n].as_ref().map(|enqueued| enqueued.state).ok();
    let taken_by = |n: usize| match &outcomes[n] {
        Err(wasmq::Error::DuplicateId {
            state,
            reserved_for,
            ..
        }) => Some((*state, reserved_for.is_some())),
        _ => None,
    };
    assert_eq!(accepted(0), Some(TaskState::Pending), "{:?}", outcomes[0]);
    assert_eq!(
        taken_by(1),
        Some((Some(TaskState::Pending), false)),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(accepted(2), Some(TaskState::Pending), "{:?}", outcomes[2]);
    assert!(
        matches!(&outcomes[3], Err(wasmq::Error::DuplicateUnique { holder, .. }) if holder == "u1"),
        "{:?}",
        outcomes[3]
    );
    assert_eq!(accepted(4), Some(TaskState::Scheduled), "{:?}", outcomes[4]);
    assert_eq!(
        taken_by(5),
        Some((Some(TaskState::Scheduled), false)),
        "{:?}",
        outcomes[5]
    );
    assert_eq!(taken_by(6), Some((None, true)), "{:?}", outcomes[6]);
    assert_eq!(
        taken_by(7),
        Some((Some(TaskState::Pending), false)),
        "{:?}",
        outcomes[7]
    );
    assert_eq!(accepted(8), Some(TaskState::Pending), "{:?}", outcomes[8]);
    assert_eq!(
        taken_by(9),
        Some((Some(TaskState::Pending), false)),
        "{:?}",
        outcomes[9]
    );

    let counts = env.counts("default").await;
    assert_eq!((counts.pending, counts.scheduled), (4, 1), "{counts:?}");
    assert!(
        env.task("default", "u2").await.is_none(),
        "the refused task left nothing"
    );
    // Pending, in the order workers take them (from the right).
    let mut pending: Vec<String> = redis::cmd("LRANGE")
        .arg("wasmq:{default}:pending")
        .arg(0)
        .arg(-1)
        .query_async(&mut env.redis_connection().await)
        .await
        .unwrap();
    pending.reverse();
    assert_eq!(pending, ["there", "a", "u1", "r"]);
}
