//! Native handlers: an embedding program handles task types in Rust, in its
//! own process, next to Wasm plugins, through the library.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmq::NewTask;
use wasmq::plugins::{LoadOptions, Plugin, PluginSet, Plugins};
use wasmq::sandbox::{ComponentCache, Sandbox, SandboxConfig};
use wasmq::task::{FailureKind, TaskFailure, TaskState};
use wasmq::worker::{NativeTask, QueueSelection, Summary, WorkerConfig};
use wasmq_testkit::ECHO_COMPONENT;

use crate::support::Env;

/// A worker in this process serving the `echo` plugin and, natively, `sum`
/// (adds a JSON array of integers) and `sleep` (sleeps 10 s).
fn start_worker(env: &Env) -> (CancellationToken, tokio::task::JoinHandle<Summary>) {
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 8,
        ..SandboxConfig::default()
    })
    .expect("the sandbox starts");
    let options = LoadOptions {
        cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
        ..LoadOptions::default()
    };
    let echo = Plugin::load_file(&sandbox, Path::new(ECHO_COMPONENT), &options)
        .expect("the echo plugin loads");
    let mut config = WorkerConfig::new(QueueSelection::single("default"));
    config
        .native
        .register("sum", |task: NativeTask| async move {
            let numbers: Vec<i64> = task.json()?;
            Ok(numbers.iter().sum::<i64>().to_string().into_bytes())
        });
    config
        .native
        .register("sleep", |_task: NativeTask| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Err::<Vec<u8>, _>(TaskFailure::new(
                FailureKind::HandlerError,
                "slept to the end, which the timeout should have prevented",
            ))
        });
    let stop = CancellationToken::new();
    let worker = tokio::spawn(wasmq::worker::run(
        env.client.broker().clone(),
        Arc::new(sandbox),
        Plugins::new(PluginSet::new(vec![echo]).expect("one plugin")),
        config,
        stop.clone().cancelled_owned(),
    ));
    (stop, worker)
}

/// Native and Wasm handlers serve the same worker; a payload a native
/// handler cannot decode is archived at once as `bad-payload`.
#[tokio::test]
async fn native_handlers_run_beside_wasm_plugins() {
    let env = Env::start().await;
    let (stop, worker) = start_worker(&env);

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
    let summary = worker.await.unwrap();
    assert_eq!(summary.completed, 2);
}

/// A native handler is held to the task's timeout like a plugin.
#[tokio::test]
async fn a_native_handler_is_stopped_at_the_task_timeout() {
    let env = Env::start().await;
    let (stop, worker) = start_worker(&env);
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
    worker.await.unwrap();
}
