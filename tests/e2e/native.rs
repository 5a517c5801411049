//! Native handlers: an embedding program handles task types in Rust, in its
//! own process, next to Wasm plugins, through the library.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmq::plugins::LoadOptions;
use wasmq::sandbox::ComponentCache;
use wasmq::{FailureKind, NativeTask, NewTask, Summary, TaskFailure, TaskState, Worker};
use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::support::Env;

/// A worker in this process serving the `echo` plugin and, natively, `sum`
/// (adds a JSON array of integers) and `sleep` (sleeps 10 s), started the
/// way an embedding program starts one; returns once it serves.
async fn start_worker(
    env: &Env,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<Summary, wasmq::WorkerError>>,
    PluginDir,
) {
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let worker = Worker::builder(env.client.broker().clone())
        .plugins_dir(plugins.path())
        .plugin_options(LoadOptions {
            cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
            ..LoadOptions::default()
        })
        .native("sum", |task: NativeTask| async move {
            let numbers: Vec<i64> = task.json()?;
            Ok(numbers.iter().sum::<i64>().to_string().into_bytes())
        })
        .native("sleep", |_task: NativeTask| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Err::<Vec<u8>, _>(TaskFailure::new(
                FailureKind::HandlerError,
                "slept to the end, which the timeout should have prevented",
            ))
        })
        .build()
        .expect("the worker builds");
    assert_eq!(worker.task_types(), ["echo", "sleep", "sum"]);
    let id = worker.id().to_string();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    env.wait_for_worker(&id).await;
    (stop, running, plugins)
}

/// Native and Wasm handlers serve the same worker; a payload a native
/// handler cannot decode is archived at once as `bad-payload`.
#[tokio::test]
async fn native_handlers_run_beside_wasm_plugins() {
    let env = Env::start().await;
    let (stop, worker, _plugins) = start_worker(&env).await;

    let sum = env
        .client
        .enqueue(NewTask::new("sum", "[1, 2, 39]").unwrap())
        .await
        .unwrap()
        .id;
    let echo = env
        .client
        .enqueue(NewTask::new("echo", r#"{"from":"wasm"}"#).unwrap())
        .await
        .unwrap()
        .id;
    let bad = env
        .client
        .enqueue(
            NewTask::new("sum", r#"{"not":"a list"}"#)
                .unwrap()
                .max_retry(5),
        )
        .await
        .unwrap()
        .id;

    let summed = env
        .wait_for_state(
            "default",
            &sum,
            TaskState::Completed,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(summed.result.as_deref(), Some(&b"42"[..]));
    let echoed = env
        .wait_for_state(
            "default",
            &echo,
            TaskState::Completed,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(echoed.result.as_deref(), Some(&br#"{"from":"wasm"}"#[..]));
    let refused = env
        .wait_for_state(
            "default",
            &bad,
            TaskState::Archived,
            Duration::from_secs(20),
        )
        .await;
    let error = refused.last_error.expect("the failure is recorded");
    assert_eq!(error.kind, FailureKind::BadPayload);
    assert!(error.message.contains("\"sum\""), "{}", error.message);
    assert_eq!(refused.attempts, 1, "a bad payload is not retried");

    stop.cancel();
    let summary = worker.await.unwrap().expect("the worker ran");
    assert_eq!(summary.completed, 2);
}

/// A native handler is held to the task's timeout like a plugin.
#[tokio::test]
async fn a_native_handler_is_stopped_at_the_task_timeout() {
    let env = Env::start().await;
    let (stop, worker, _plugins) = start_worker(&env).await;
    let id = env
        .client
        .enqueue(
            NewTask::new("sleep", "{}")
                .unwrap()
                .timeout(Duration::from_millis(300))
                .max_retry(0),
        )
        .await
        .unwrap()
        .id;
    let info = env
        .wait_for_state("default", &id, TaskState::Archived, Duration::from_secs(20))
        .await;
    let error = info.last_error.expect("the failure is recorded");
    assert_eq!(error.kind, FailureKind::Timeout, "{}", error.message);
    assert!(error.message.contains("300ms"), "{}", error.message);
    stop.cancel();
    worker.await.unwrap().expect("the worker ran");
}
