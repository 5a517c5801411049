use std::time::Duration;

use wasmq::NewTask;

use crate::support::{Env, stderr, stdout};

/// A second task with the same id is refused with exit code 3 and an error
/// that names the state holding the id and how to free it; after a delete
/// the id is accepted again.
#[tokio::test]
async fn a_duplicate_task_id_is_refused_until_deleted() {
    let env = Env::start().await;
    let first = env.wasmq(&["enqueue", "report:daily", "{}", "--id", "report-2026-11-22"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first), "report-2026-11-22");

    let second = env.wasmq(&["enqueue", "report:daily", "{}", "--id", "report-2026-11-22"]);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    let message = stderr(&second);
    assert!(
        message.contains(r#"duplicate task id "report-2026-11-22""#),
        "{message}"
    );
    assert!(message.contains("as a pending task"), "{message}");
    assert!(
        message.contains("wasmq task delete report-2026-11-22 --queue default"),
        "{message}"
    );

    let deleted = env.wasmq(&["task", "delete", "report-2026-11-22"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let third = env.wasmq(&["enqueue", "report:daily", "{}", "--id", "report-2026-11-22"]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(env.counts("default").await.pending, 1);
}

/// The same id in another queue is a different task.
#[tokio::test]
async fn the_same_id_in_two_queues_is_two_tasks() {
    let env = Env::start().await;
    for queue in ["a", "b"] {
        let output = env.wasmq(&["enqueue", "echo", "{}", "--id", "same", "--queue", queue]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let ambiguous = env.wasmq(&["task", "show", "same"]);
    assert!(!ambiguous.status.success());
    assert!(
        stderr(&ambiguous).contains("several queues (a, b)"),
        "{}",
        stderr(&ambiguous)
    );
    let shown = env.wasmq(&["task", "show", "same", "--queue", "b"]);
    assert!(
        stdout(&shown).contains("queue:      b"),
        "{}",
        stdout(&shown)
    );
}

/// A unique task is refused while an equal one holds the lock, and
/// accepted again once the lock's time to live has passed. A task with a
/// different payload is not a duplicate.
#[tokio::test]
async fn a_unique_task_is_refused_within_its_ttl_and_accepted_after() {
    let env = Env::start().await;
    let enqueue = |payload: &str| env.wasmq(&["enqueue", "email:send", payload, "--unique", "1s"]);
    let first = enqueue(r#"{"to":"x"}"#);
    assert!(first.status.success(), "{}", stderr(&first));
    let holder = stdout(&first);

    let second = enqueue(r#"{"to":"x"}"#);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    let message = stderr(&second);
    assert!(message.contains("duplicate task"), "{message}");
    assert!(
        message.contains(&holder),
        "names the task holding the lock: {message}"
    );

    let other = enqueue(r#"{"to":"y"}"#);
    assert!(other.status.success(), "{}", stderr(&other));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = enqueue(r#"{"to":"x"}"#);
    assert!(later.status.success(), "after the ttl: {}", stderr(&later));
    assert_eq!(env.counts("default").await.pending, 3);
}

/// `--unique-extend`: each refused duplicate holds the lock one TTL from
/// its own arrival, so duplicates arriving more often than the TTL keep it
/// held well past the first TTL; after a TTL of quiet the next one is
/// accepted. Without it, the same stream gets through once the first TTL
/// ends.
#[tokio::test]
async fn an_extending_unique_lock_holds_while_duplicates_keep_coming() {
    let env = Env::start().await;
    let ttl = Duration::from_secs(2);
    let first = env.wasmq(&[
        "enqueue",
        "email:send",
        r#"{"to":"x"}"#,
        "--unique",
        "2s",
        "--unique-extend",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let task = |to: &str| NewTask::new("email:send", format!(r#"{{"to":"{to}"}}"#)).unwrap();
    env.client.enqueue(task("y").unique(ttl)).await.unwrap();
    // Duplicates every 300 ms for 3 s: past the first TTL.
    let started = std::time::Instant::now();
    let mut passed = (0, 0);
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if env
            .client
            .enqueue(task("x").unique_extending(ttl))
            .await
            .is_ok()
        {
            passed.0 += 1;
        }
        if env.client.enqueue(task("y").unique(ttl)).await.is_ok() {
            passed.1 += 1;
        }
    }
    assert_eq!(passed.0, 0, "the extending lock held while duplicates came");
    assert!(
        passed.1 >= 1,
        "the plain lock let one through after its TTL"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let quiet = env.client.enqueue(task("x").unique_extending(ttl)).await;
    assert!(quiet.is_ok(), "after a TTL of quiet: {quiet:?}");
}

/// Debounce: 100 rapid duplicates under one key, with a worker serving the
/// queue all along, make one run, with the last payload; the next task
/// under the key, once that one ran, is a task of its own. The command
/// line prints the id of the task that will run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_debounced_duplicates_make_one_run_with_the_last_payload() {
    use wasmq::{NewTask, TaskState};
    use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let _worker = env.worker(plugins.path(), &["--no-scheduler"]);
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..100 {
        let task = NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
            .unwrap()
            .debounce("user-7", Duration::from_secs(1));
        let enqueued = env.client.enqueue(task).await.unwrap();
        assert_eq!(enqueued.state, TaskState::Scheduled);
        ids.insert(enqueued.id);
    }
    assert_eq!(ids.len(), 1, "every duplicate went to one task: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    let done = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done.result.as_deref(), Some(br#"{"n":99}"#.as_slice()));
    assert_eq!(done.attempts, 1);
    // Once it ran, the key makes a new task (here from the command line).
    let output = env.wasmq(&[
        "enqueue",
        "echo",
        r#"{"n":100}"#,
        "--debounce",
        "user-7",
        "--in",
        "200ms",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let next = stdout(&output);
    assert_ne!(next, id);
    env.wait_for_state(
        "default",
        &next,
        TaskState::Completed,
        Duration::from_secs(30),
    )
    .await;
    let counts = env.counts("default").await;
    assert_eq!(counts.completed, 2, "{counts:?}");

    // A debounced task needs a delay and takes no id of its own.
    let refused = env.wasmq(&["enqueue", "echo", "{}", "--debounce", "k"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--in"), "{}", stderr(&refused));
}

/// Aggregation (`--group-by KEY`, `NewTask::aggregate`): 250 tasks under
/// one key with batches of at most 100 run as three batches (100, 100,
/// then 50 once their wait ends), each run's payload the array of its
/// members' payloads in order, every member exactly once; the command line
/// prints the batch's id, the same for tasks that join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_tasks_run_as_batches_of_their_payloads() {
    use std::sync::{Arc, Mutex};
    let env = Env::start().await;
    let mut batch_ids = Vec::new();
    for n in 0..250 {
        let task = NewTask::new("tally", format!(r#"{{"n":{n}}}"#))
            .unwrap()
            .aggregate("k", Duration::from_secs(1), 100);
        batch_ids.push(env.client.enqueue(task).await.unwrap().id);
    }
    let distinct: std::collections::BTreeSet<&String> = batch_ids.iter().collect();
    assert_eq!(distinct.len(), 3, "three batches");
    assert_eq!(batch_ids[0], batch_ids[99]);
    assert_ne!(batch_ids[99], batch_ids[100]);
    let cli = |n: u32| {
        env.wasmq(&[
            "enqueue",
            "tally",
            &format!(r#"{{"n":{n}}}"#),
            "--group-by",
            "other",
            "--aggregate-after",
            "300ms",
        ])
    };
    let (first, second) = (cli(1000), cli(1001));
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first), stdout(&second), "both joined one batch");

    let runs: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let recorder = runs.clone();
    let worker = wasmq::Worker::builder(env.client.broker().clone())
        .native("tally", move |task: wasmq::NativeTask| {
            let members: Vec<serde_json::Value> = task.json().unwrap();
            let ns = members.iter().map(|m| m["n"].as_u64().unwrap()).collect();
            recorder.lock().unwrap().push(ns);
            async move { Ok(Vec::new()) }
        })
        .build()
        .expect("the worker builds");
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    crate::support::wait_until(Duration::from_secs(30), "four batches to run", || async {
        let ran = runs.lock().unwrap().len();
        ran == 4 && env.counts("default").await.unfinished() == 0
    })
    .await;
    let mut runs = runs.lock().unwrap().clone();
    runs.sort_by_key(|ns| ns[0]);
    let sizes: Vec<usize> = runs.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50, 2]);
    let all: Vec<u64> = runs[..3].iter().flatten().copied().collect();
    assert_eq!(
        all,
        (0..250).collect::<Vec<u64>>(),
        "every member once, in order"
    );
    assert_eq!(runs[3], [1000, 1001]);
    stop.cancel();
    handle.await.unwrap().unwrap();
}
