use std::time::Duration;

use wasmq::{FailureKind, NewTask, TaskState};
use wasmq_testkit::{ECHO_COMPONENT, LOOP_COMPONENT, PluginDir};

use crate::support::{Env, wait_until};

/// A plugin that never returns fails its task (timeout), and meanwhile the
/// worker keeps completing other tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_times_out_while_other_tasks_complete() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, LOOP_COMPONENT]);
    let stuck = NewTask::new("loop", "{}")
        .unwrap()
        .timeout(Duration::from_secs(2))
        .max_retry(0);
    let stuck = env.client.enqueue(stuck).await.unwrap().id;
    let _worker = env.worker(
        plugins.path(),
        &["--concurrency", "4", "--fuel", "1000000000000000"],
    );
    env.wait_for_state(
        "default",
        &stuck,
        TaskState::Active,
        Duration::from_secs(20),
    )
    .await;

    // While the loop spins, echo tasks go through.
    let echoes: Vec<NewTask> = (0..50)
        .map(|_| NewTask::new("echo", "{}").unwrap())
        .collect();
    for outcome in env.client.enqueue_batch(echoes).await {
        outcome.unwrap();
    }
    wait_until(
        Duration::from_secs(20),
        "the echo tasks to complete",
        || async { env.counts("default").await.completed == 50 },
    )
    .await;
    assert_eq!(
        env.task("default", &stuck).await.unwrap().state,
        TaskState::Active,
        "the echo tasks completed while the loop was still running"
    );

    wait_until(
        Duration::from_secs(20),
        "the loop task to be archived",
        || async { env.task("default", &stuck).await.unwrap().state == TaskState::Archived },
    )
    .await;
    let error = env
        .task("default", &stuck)
        .await
        .unwrap()
        .last_error
        .unwrap();
    assert_eq!(error.kind, FailureKind::Timeout, "{error:?}");
    assert!(
        error.message.contains("time limit of 2s"),
        "{}",
        error.message
    );
}

/// With a small fuel budget, the endless loop fails as out of fuel.
#[tokio::test]
async fn an_endless_loop_runs_out_of_fuel() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[LOOP_COMPONENT]);
    let id = env
        .client
        .enqueue(NewTask::new("loop", "{}").unwrap().max_retry(0))
        .await
        .unwrap()
        .id;
    let _worker = env.worker(plugins.path(), &["--fuel", "50000000"]);
    env.wait_for_state("default", &id, TaskState::Archived, Duration::from_secs(30))
        .await;
    let error = env.task("default", &id).await.unwrap().last_error.unwrap();
    assert_eq!(error.kind, FailureKind::OutOfFuel, "{error:?}");
    assert!(error.message.contains("50000000"), "{}", error.message);
}
