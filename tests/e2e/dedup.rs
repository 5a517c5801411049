use std::time::Duration;

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
