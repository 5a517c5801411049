use std::time::Duration;

use wasmq::{NewTask, TaskState};
use wasmq_testkit::{BURN_COMPONENT, ECHO_COMPONENT, PluginDir};

use crate::support::{Env, wait_until};

/// Fuel enough for a `burn` task to hash for seconds on a core of its own
/// (the default budget runs out after about four).
const AMPLE_FUEL: &str = "1000000000000";

fn burn_tasks(count: usize, ms: u64) -> Vec<NewTask> {
    (0..count)
        .map(|_| NewTask::new("burn", format!(r#"{{"ms":{ms}}}"#)).unwrap())
        .collect()
}

/// kill -9 of a worker with tasks in flight: once their leases expire, a
/// second worker completes every one of them. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_killed_worker_are_completed_by_another() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let ids: Vec<String> = env
        .client
        .enqueue_batch(burn_tasks(12, 3000))
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    // Three slots: as many as the attempts a plugin on trial (new to the
    // worker) may run at once, so all three are running when it is killed.
    let mut first = env.worker(
        plugins.path(),
        &["--concurrency", "3", "--lease", "1s", "--fuel", AMPLE_FUEL],
    );
    wait_until(
        Duration::from_secs(20),
        "the first worker to lease 3 tasks",
        || async { env.counts("default").await.active == 3 },
    )
    .await;
    first.kill9();
    assert_eq!(
        env.counts("default").await.active,
        3,
        "the killed worker's tasks are still leased"
    );

    // Without probation, so that all twelve start at once (a worker that
    // has not run `burn` yet would otherwise try three first, and put the
    // others back for a while). Its own leases are long enough that a
    // loaded machine cannot make it lose one of its tasks: only the killed
    // worker's tasks may run twice.
    let _second = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "12",
            "--lease",
            "5s",
            "--fuel",
            AMPLE_FUEL,
            "--probation-strikes",
            "0",
        ],
    );
    wait_until(
        Duration::from_secs(60),
        "every task to complete",
        || async { env.counts("default").await.completed == 12 },
    )
    .await;
    let counts = env.counts("default").await;
    assert_eq!(counts.unfinished() + counts.archived, 0, "{counts:?}");
    let mut recovered = 0;
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.state, TaskState::Completed);
        if info.attempts == 2 {
            recovered += 1;
            assert_eq!(
                info.last_error.unwrap().kind,
                wasmq::FailureKind::LeaseExpired
            );
        }
    }
    assert_eq!(recovered, 3, "exactly the 3 tasks in flight were run twice");
}

/// SIGTERM with tasks in flight: the worker stops within its shutdown
/// timeout, puts the unfinished tasks back at the head of the queue (their
/// attempt not counted), and a second worker completes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_puts_running_tasks_back_and_loses_nothing() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let ids: Vec<String> = env
        .client
        .enqueue_batch(burn_tasks(6, 5_000))
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let mut worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "3",
            "--shutdown-timeout",
            "1s",
            "--fuel",
            AMPLE_FUEL,
        ],
    );
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "the worker to lease 3 tasks",
        |c| c.active == 3,
    )
    .await;
    let status = worker.terminate(Duration::from_secs(15)).await;
    let log = worker.log();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert_eq!(
        log.matches("put back at the head of its queue").count(),
        3,
        "{log}"
    );
    let counts = env.counts("default").await;
    assert_eq!((counts.pending, counts.active), (6, 0), "{counts:?}");
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(
            (info.state, info.attempts),
            (TaskState::Pending, 0),
            "task {id}"
        );
    }

    let _second = env.worker(
        plugins.path(),
        &["--concurrency", "6", "--fuel", AMPLE_FUEL],
    );
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 6,
    )
    .await;
    for id in &ids {
        assert_eq!(
            env.task("default", id).await.unwrap().attempts,
            1,
            "task {id}"
        );
    }
}

/// A warning about a lost lease means the lease was lost: with no fault at
/// all, many short tasks under short leases (renewed every 100 ms while
/// completions land) all complete on their first attempt, and the worker
/// never says a lease was lost. The renewal that Redis runs just after a
/// task's completion finds it no longer leased; that is not a lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_racing_lease_renewals_are_not_reported_as_lost_leases() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let tasks: Vec<NewTask> = (0..3000)
        .map(|n| NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
        .collect();
    let ids: Vec<String> = env
        .client
        .enqueue_batch(tasks)
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let mut worker = env.worker(plugins.path(), &["--concurrency", "32", "--lease", "300ms"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(120),
        "every task to complete",
        |c| c.completed == ids.len() as u64,
    )
    .await;
    worker.terminate(Duration::from_secs(20)).await;
    let log = worker.log();
    let false_alarms: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("lease lost") || line.contains("lease was lost"))
        .collect();
    for id in ids.iter().step_by(97) {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.attempts, 1, "no fault, so one attempt each: {id}");
    }
    assert!(
        false_alarms.is_empty(),
        "{} lease-lost lines for tasks that completed on their first attempt, e.g.:\n{}",
        false_alarms.len(),
        false_alarms
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
