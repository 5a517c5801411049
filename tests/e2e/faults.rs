use std::path::PathBuf;
use std::time::Duration;

use wasmq::dev::RedisOptions;
use wasmq::{NewTask, TaskState};
use wasmq_testkit::faults::{self, FaultPlan};
use wasmq_testkit::{BURN_COMPONENT, PluginDir};

use crate::support::{Env, WASMQ, wait_until};

fn burn_tasks(count: usize, ms: u64) -> Vec<NewTask> {
    (0..count)
        .map(|n| NewTask::new("burn", format!(r#"{{"ms":{ms},"n":{n}}}"#)).unwrap())
        .collect()
}

/// Redis (append-only file on) is killed and restarted while workers run:
/// they log the outage, reconnect, and every acknowledged task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_through_a_redis_restart_and_lose_nothing() {
    let mut env = Env::start_with(RedisOptions {
        appendonly: true,
        ..RedisOptions::default()
    })
    .await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    for outcome in env.client.enqueue_batch(burn_tasks(1500, 5)).await {
        outcome.expect("acknowledged");
    }
    let workers = [
        env.worker(plugins.path(), &["--concurrency", "8", "--lease", "2s"]),
        env.worker(plugins.path(), &["--concurrency", "8", "--lease", "2s"]),
    ];
    env.wait_for_counts("default", Duration::from_secs(60), "300 completions", |c| {
        c.completed >= 300
    })
    .await;
    env.redis.restart().expect("redis-server restarts");
    env.wait_for_counts(
        "default",
        Duration::from_secs(120),
        "every task to complete",
        |c| c.completed == 1500,
    )
    .await;
    let counts = env.counts("default").await;
    assert_eq!(counts.unfinished() + counts.archived, 0, "{counts:?}");
    for worker in &workers {
        worker
            .wait_for_log("Redis is unreachable", Duration::from_secs(5))
            .await;
        worker
            .wait_for_log("Redis is reachable again", Duration::from_secs(5))
            .await;
    }
}

/// A worker frozen (SIGSTOP) past its lease loses its tasks to another
/// worker, which completes them; when it wakes, its outcomes are dropped
/// because its leases are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_tasks_to_another_and_its_late_results_are_dropped() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let ids: Vec<String> = env
        .client
        .enqueue_batch(burn_tasks(4, 1500))
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let frozen = env.worker(plugins.path(), &["--concurrency", "4", "--lease", "1s"]);
    env.wait_for_counts("default", Duration::from_secs(20), "4 tasks to run", |c| {
        c.active == 4
    })
    .await;
    frozen.signal(libc::SIGSTOP);
    let _other = env.worker(plugins.path(), &["--concurrency", "4", "--lease", "1s"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 4,
    )
    .await;
    frozen.signal(libc::SIGCONT);
    // Said when it drops an outcome, whether its lease renewal or its
    // completion found out first.
    frozen
        .wait_for_log(
            "lease was lost and another worker owns the task",
            Duration::from_secs(20),
        )
        .await;
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.state, TaskState::Completed);
        assert_eq!(
            info.attempts, 2,
            "run by the frozen worker, then by the other"
        );
    }
}

/// Leases run on Redis's clock: workers whose clocks are an hour ahead or
/// behind neither steal live tasks nor leave a dead worker's tasks for an
/// hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_skewed_clocks_neither_steal_nor_strand_tasks() {
    assert!(
        std::process::Command::new("faketime")
            .arg("--version")
            .output()
            .is_ok(),
        "faketime is needed (apt-get install faketime; .ci/setup installs it)"
    );
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let ids: Vec<String> = env
        .client
        .enqueue_batch(burn_tasks(8, 2500))
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let ahead = ["faketime", "-f", "+1h"];
    let behind = ["faketime", "-f", "-1h"];
    let lease = ["--concurrency", "4", "--lease", "1s"];
    let _fast = env.worker_wrapped(&ahead, plugins.path(), &lease);
    let mut slow = env.worker_wrapped(&behind, plugins.path(), &lease);
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 8,
    )
    .await;
    for id in &ids {
        assert_eq!(
            env.task("default", id).await.unwrap().attempts,
            1,
            "task {id} was stolen"
        );
    }

    // The slow-clock worker dies holding tasks: the fast-clock worker takes
    // them back after the lease, not an hour later.
    slow.kill9();
    let mut slow = env.worker_wrapped(&behind, plugins.path(), &lease);
    let more: Vec<String> = env
        .client
        .enqueue_batch(burn_tasks(4, 2500))
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    wait_until(
        Duration::from_secs(20),
        "the slow worker to take a task",
        || async {
            let mut held = false;
            for id in &more {
                held |= env.task("default", id).await.unwrap().state == TaskState::Active;
            }
            held
        },
    )
    .await;
    slow.kill9();
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 12,
    )
    .await;
}

/// The fault-injection suite, small: tasks, flows and chains through 3
/// workers while one is killed twice, another frozen past its lease, and
/// Redis restarted; a tenth of the tasks fail on purpose and must end
/// archived. No task is lost or stuck, every flow completes with no parent
/// stuck or released twice; duplicates stay within what was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_injection_run_loses_no_task() {
    let report = faults::run(FaultPlan {
        wasmq: PathBuf::from(WASMQ),
        tasks: 3000,
        burn_ms: 10,
        failing_every: 10,
        workers: 3,
        concurrency: 6,
        lease: Duration::from_secs(1),
        worker_kills: 2,
        freeze_for: Duration::from_secs(3),
        redis_restarts: 1,
        flows: 5,
        chains: 5,
        timeout: Duration::from_secs(180),
    })
    .await;
    println!("{}", report.markdown());
    assert_eq!(report.faults.len(), 4, "{}", report.markdown());
    assert_eq!(report.lost, 0, "{}", report.markdown());
    assert_eq!(report.stuck_active, 0, "{}", report.markdown());
    assert_eq!(report.flows_completed, 10, "{}", report.markdown());
    assert_eq!(report.parents_stuck, 0, "{}", report.markdown());
    assert_eq!(report.parents_run_twice, 0, "{}", report.markdown());
    assert!(
        report.duplicates <= report.in_flight_total(),
        "more re-executions than tasks in flight at the faults:\n{}",
        report.markdown()
    );
    assert!(
        report
            .faults
            .iter()
            .all(|fault| fault.recovered_after.is_some()),
        "{}",
        report.markdown()
    );
}
