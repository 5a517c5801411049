use std::time::{Duration, Instant};

use wasmq::{NewTask, TaskState};
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, PluginDir};

use crate::support::{Env, stderr, stdout, wait_until};

/// A thousand tasks enqueued through the library all complete, each on its
/// first and only attempt, with their payload as result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_complete_exactly_once() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let tasks: Vec<NewTask> = (0..1000)
        .map(|n| NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
        .collect();
    let enqueued: Vec<_> = env
        .client
        .enqueue_batch(tasks)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("every task is accepted"))
        .collect();
    assert_eq!(enqueued.len(), 1000);
    assert_eq!(env.counts("default").await.pending, 1000);

    let _worker = env.worker(plugins.path(), &["--concurrency", "20"]);
    wait_until(
        Duration::from_secs(60),
        "all 1000 tasks to complete",
        || async { env.counts("default").await.completed == 1000 },
    )
    .await;

    let counts = env.counts("default").await;
    assert_eq!(counts.unfinished(), 0, "{counts:?}");
    assert_eq!(counts.archived, 0, "{counts:?}");
    for (n, task) in enqueued.iter().enumerate() {
        let info = env
            .task("default", &task.id)
            .await
            .expect("the completed task is kept");
        assert_eq!(info.state, TaskState::Completed);
        assert_eq!(info.attempts, 1, "task {n} ran more than once");
        let result: serde_json::Value =
            serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
        assert_eq!(result, serde_json::json!({ "n": n }));
    }
}

/// The CLI enqueues a task and `task show` prints its state and result.
#[tokio::test]
async fn cli_enqueue_then_task_show_prints_the_result() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let output = env.wasmq(&[
        "enqueue",
        "echo",
        r#"{"greeting":"hi"}"#,
        "--queue",
        "images",
        "--max-retry",
        "5",
        "--timeout",
        "30s",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = stdout(&output);
    assert!(!id.is_empty());

    let shown = env.wasmq(&["task", "show", &id]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        stdout(&shown).contains("state:      pending"),
        "{}",
        stdout(&shown)
    );

    let _worker = env.worker(plugins.path(), &["--queues", "images"]);
    env.wait_for_state("images", &id, TaskState::Completed, Duration::from_secs(30))
        .await;
    let shown = env.wasmq(&["task", "show", &id]);
    let text = stdout(&shown);
    assert!(text.contains("state:      completed"), "{text}");
    assert!(text.contains("attempts:   1 (max retry 5)"), "{text}");
    assert!(text.contains(r#"result:     {"greeting":"hi"}"#), "{text}");

    let json = env.wasmq(&["task", "show", &id, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(json["state"], "completed");
    assert_eq!(json["result"]["greeting"], "hi");
    assert_eq!(json["timeout_ms"], 30_000);
}

/// `flaky` fails its first attempts and succeeds on the next one.
#[tokio::test]
async fn a_flaky_task_succeeds_on_its_nth_attempt() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[FLAKY_COMPONENT]);
    let task = NewTask::new("flaky", r#"{"fail_times":3}"#)
        .unwrap()
        .max_retry(5);
    let id = env.client.enqueue(task).await.unwrap().id;
    let _worker = env.worker(plugins.path(), &["--retry-delay", "50ms"]);
    let info = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(info.attempts, 4);
    let result: serde_json::Value =
        serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["succeeded_on_attempt"], 4);
    let error = info.last_error.expect("the failed attempts left an error");
    assert_eq!(error.attempt, 3);
    assert_eq!(error.kind, wasmq::FailureKind::HandlerError);
}

/// A task that always fails is archived after its last retry, with the
/// error of that last attempt.
#[tokio::test]
async fn a_task_that_always_fails_is_archived_after_its_retries() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[FLAKY_COMPONENT]);
    let task = NewTask::new("flaky", r#"{"fail_times":1000}"#)
        .unwrap()
        .max_retry(2);
    let id = env.client.enqueue(task).await.unwrap().id;
    let _worker = env.worker(plugins.path(), &["--retry-delay", "50ms"]);
    let info = env
        .wait_for_state("default", &id, TaskState::Archived, Duration::from_secs(30))
        .await;
    assert_eq!(info.attempts, 3, "1 attempt + 2 retries");
    let error = info.last_error.unwrap();
    assert_eq!(error.attempt, 3);
    assert!(
        error.message.contains("failing attempt 3"),
        "{}",
        error.message
    );

    let shown = env.wasmq(&["task", "show", &id]);
    assert!(
        stdout(&shown).contains("last error: handler-error on attempt 3"),
        "{}",
        stdout(&shown)
    );
}

/// A scheduled task does not run before its time, and runs soon after.
#[tokio::test]
async fn a_scheduled_task_runs_at_its_time_not_before() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let _worker = env.worker(plugins.path(), &[]);
    // Let the worker start and go idle, so an early run would show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delay = Duration::from_secs(2);
    let enqueued_at = Instant::now();
    let output = env.wasmq(&["enqueue", "echo", "{}", "--in", "2s"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = stdout(&output);
    assert!(
        stderr(&output).contains("(scheduled)"),
        "{}",
        stderr(&output)
    );

    loop {
        let info = env.task("default", &id).await.unwrap();
        if info.state == TaskState::Completed {
            break;
        }
        assert!(
            matches!(
                info.state,
                TaskState::Scheduled | TaskState::Pending | TaskState::Active
            ),
            "{:?}",
            info.state
        );
        assert!(
            enqueued_at.elapsed() < delay + Duration::from_secs(10),
            "the task never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        enqueued_at.elapsed() >= delay,
        "ran after {:?}",
        enqueued_at.elapsed()
    );
}

/// A task whose type no plugin handles waits in retry with an error that
/// says so; it is not dropped.
#[tokio::test]
async fn a_task_no_plugin_handles_goes_to_retry_saying_why() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let id = env
        .client
        .enqueue(NewTask::new("resize:image", "{}").unwrap())
        .await
        .unwrap()
        .id;
    let _worker = env.worker(plugins.path(), &[]);
    env.wait_for_state("default", &id, TaskState::Retry, Duration::from_secs(30))
        .await;
    let error = env.task("default", &id).await.unwrap().last_error.unwrap();
    assert_eq!(error.kind, wasmq::FailureKind::NoHandler);
    assert!(
        error
            .message
            .contains(r#"no plugin handles task type "resize:image""#),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("echo"),
        "lists what is served: {}",
        error.message
    );
}

/// A payload the handler cannot decode archives the task at once, naming
/// the type it should have been.
#[tokio::test]
async fn a_payload_the_handler_cannot_decode_is_archived_at_once() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[FLAKY_COMPONENT]);
    let id = env
        .client
        .enqueue(NewTask::new("flaky", r#"{"fail_times":"two"}"#).unwrap())
        .await
        .unwrap()
        .id;
    let _worker = env.worker(plugins.path(), &[]);
    let info = env
        .wait_for_state("default", &id, TaskState::Archived, Duration::from_secs(30))
        .await;
    assert_eq!(info.attempts, 1, "a bad payload is not retried");
    let error = info.last_error.unwrap();
    assert_eq!(error.kind, wasmq::FailureKind::BadPayload);
    assert!(error.message.contains("flaky::Params"), "{}", error.message);
}
