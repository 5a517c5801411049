//! Fleet-wide rate limits: `wasmq limit set TYPE --rate N/INTERVAL` across
//! several real workers, per key of the payload, changed and removed while
//! they run, through a worker's kill -9, and bad specs refused.
//!
//! Every start time is the one the `burn` plugin records in its result
//! (the worker's clock, when the handler began), so the limits are judged
//! where they matter: when the handlers start, not when a token is granted.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmq::{FailureKind, NewTask};
use wasmq_testkit::{BURN_COMPONENT, PluginDir};

use crate::support::{Env, stderr, stdout};

/// When each task's handler started (unix ms), by task id.
async fn start_times(env: &Env, ids: &[String]) -> Vec<i64> {
    let mut starts = Vec::new();
    for id in ids {
        let info = env.task("default", id).await.expect("the task is kept");
        let result: serde_json::Value =
            serde_json::from_slice(info.result.as_deref().expect("a completed task's result"))
                .unwrap();
        starts.push(result["started_ms"].as_i64().unwrap());
    }
    starts.sort_unstable();
    starts
}

/// The most starts in any window [t, t + window_ms), and where it begins.
fn busiest_window(starts: &[i64], window_ms: i64) -> (usize, i64) {
    let mut most = (0, 0);
    let mut end = 0;
    for (begin, at) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < at + window_ms {
            end += 1;
        }
        if end - begin > most.0 {
            most = (end - begin, *at);
        }
    }
    most
}

/// Starts per second once the first `burst` (which a limit lets through at
/// once) have started: from the first start after them to the last.
fn steady_rate(starts: &[i64], burst: usize) -> f64 {
    let span = (starts[starts.len() - 1] - starts[burst]) as f64 / 1000.0;
    (starts.len() - burst - 1) as f64 / span
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Enqueues `n` short burn tasks with `extra` payload fields; their ids.
async fn enqueue_burns(env: &Env, n: usize, extra: impl Fn(usize) -> String) -> Vec<String> {
    env.client
        .enqueue_batch(
            (0..n)
                .map(|i| {
                    NewTask::new("burn", format!(r#"{{"ms":0,"n":{i}{}}}"#, extra(i))).unwrap()
                })
                .collect(),
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect()
}

fn set_limit(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["limit", "set"];
    all.extend_from_slice(args);
    let set = env.wasmq(&all);
    assert!(set.status.success(), "{}", stderr(&set));
    stdout(&set)
}

/// A limit of 50/s across 3 workers and 600 tasks: no one-second window of
/// handler starts holds more than 50, and the starts after the first
/// burst come within 10% of 50 per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_fleet_wide_across_three_workers() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let said = set_limit(&env, &["burn", "--rate", "50/s"]);
    assert!(said.contains("at most 50/s"), "{said}");
    let ids = enqueue_burns(&env, 600, |_| String::new()).await;
    let _workers: Vec<_> = (0..3)
        .map(|_| env.worker(plugins.path(), &["--concurrency", "4", "--no-scheduler"]))
        .collect();
    env.wait_for_counts(
        "default",
        Duration::from_secs(120),
        "every task to complete",
        |c| c.completed == 600,
    )
    .await;
    let starts = start_times(&env, &ids).await;
    let (most, at) = busiest_window(&starts, 1000);
    assert!(
        most <= 50,
        "{most} handlers started in the second from {at} (limit 50/s)"
    );
    assert!(most >= 45, "the limit lets its rate through ({most})");
    let rate = steady_rate(&starts, 50);
    assert!(
        (45.0..=55.0).contains(&rate),
        "{rate:.1} starts per second under a limit of 50/s"
    );
    // Waiting tasks said why.
    let listed = env.wasmq(&["limit", "ls"]);
    let text = stdout(&listed);
    assert!(text.contains("RATE LIMIT"), "{text}");
    assert!(text.contains("burn"), "{text}");
    assert!(text.contains("50/s"), "{text}");
    let listed = env.wasmq(&["limit", "ls", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(json[0]["type"], "burn", "{json}");
    assert_eq!(json[0]["rate_limit"]["rate"]["count"], 50, "{json}");
}

/// A limit per `$.tenant` keeps each tenant under its rate on its own
/// (together they start faster than one tenant may); tasks whose payload
/// has no tenant share one bucket of their own, and say so while they wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_per_key_holds_for_each_key_independently() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    set_limit(
        &env,
        &[
            "burn", "--rate", "10/s", "--burst", "1", "--key", "$.tenant",
        ],
    );
    let tenant = |i: usize| match i % 3 {
        0 => r#","tenant":"a""#.to_string(),
        1 => r#","tenant":"b""#.to_string(),
        _ => String::new(),
    };
    let ids = enqueue_burns(&env, 120, tenant).await;
    let _workers: Vec<_> = (0..3)
        .map(|_| env.worker(plugins.path(), &["--concurrency", "4", "--no-scheduler"]))
        .collect();
    // While they run, the listing shows each key's use.
    crate::support::wait_until(
        Duration::from_secs(60),
        "limit ls to show every key",
        || async {
            let text = stdout(&env.wasmq(&["limit", "ls"]));
            text.contains("$.tenant = a")
                && text.contains("$.tenant = b")
                && text.contains("$.tenant (nothing there)")
        },
    )
    .await;
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 120,
    )
    .await;
    let mut by_key: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let key = match i % 3 {
            0 => "a",
            1 => "b",
            _ => "none",
        };
        by_key.entry(key).or_default().push(id.clone());
    }
    for (key, ids) in &by_key {
        let starts = start_times(&env, ids).await;
        let (most, at) = busiest_window(&starts, 1000);
        assert!(
            most <= 10,
            "key {key}: {most} starts in the second from {at}"
        );
        // A burst of 1: starts are spread, one per 100 ms.
        let rate = steady_rate(&starts, 0);
        assert!(
            (9.0..=11.0).contains(&rate),
            "key {key}: {rate:.1} starts per second under 10/s"
        );
    }
    let all = start_times(&env, &ids).await;
    let (together, _) = busiest_window(&all, 1000);
    assert!(
        together >= 20,
        "keys are limited together, not each on its own ({together} starts in the busiest second)"
    );
    // Keyless tasks waited under their shared bucket (all but the one or
    // two that found its start free, whichever came first), and their notes
    // said so.
    let mut notes = Vec::new();
    for id in &by_key["none"] {
        let info = env.task("default", id).await.unwrap();
        notes.extend(info.last_error);
    }
    assert!(
        notes.len() >= 38,
        "{} of 40 keyless tasks waited",
        notes.len()
    );
    for note in &notes {
        assert_eq!(note.kind, FailureKind::RateLimited, "{note:?}");
        assert!(
            note.message
                .contains("whose payload has nothing at $.tenant (they share one bucket)"),
            "{}",
            note.message
        );
    }
}

/// A limit changed, then removed, while workers run applies without a
/// restart: the tasks waiting for their turns under the old limit are
/// woken and start at the new pace at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_removed_limit_applies_without_restarting_workers() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    set_limit(&env, &["burn", "--rate", "2/s"]);
    let ids = enqueue_burns(&env, 40, |_| String::new()).await;
    let _workers: Vec<_> = (0..2)
        .map(|_| env.worker(plugins.path(), &["--concurrency", "4", "--no-scheduler"]))
        .collect();
    env.wait_for_counts("default", Duration::from_secs(30), "a few tasks", |c| {
        c.completed >= 4
    })
    .await;
    // At 2/s the other 36 would need 18 s more.
    let changed_at = now_ms();
    let said = set_limit(&env, &["burn", "--rate", "100/s"]);
    assert!(said.contains("were woken"), "{said}");
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "every task to complete",
        |c| c.completed == 40,
    )
    .await;
    let starts = start_times(&env, &ids).await;
    let before: Vec<i64> = starts
        .iter()
        .copied()
        .filter(|at| *at < changed_at)
        .collect();
    assert!(
        busiest_window(&before, 1000).0 <= 2,
        "the old limit held: {before:?}"
    );
    let last = starts[starts.len() - 1];
    assert!(
        last - changed_at < 6000,
        "the waiting tasks kept their old turns: the last started {} ms after the change",
        last - changed_at
    );

    // Removed: the same.
    set_limit(&env, &["burn", "--rate", "1/s"]);
    let ids = enqueue_burns(&env, 20, |_| String::new()).await;
    env.wait_for_counts("default", Duration::from_secs(30), "a few more", |c| {
        c.completed >= 42
    })
    .await;
    let removed_at = now_ms();
    let removed = env.wasmq(&["limit", "rm", "burn"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        stdout(&removed).contains("the rate limit of task type \"burn\" removed"),
        "{}",
        stdout(&removed)
    );
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "every task to complete",
        |c| c.completed == 60,
    )
    .await;
    let starts = start_times(&env, &ids).await;
    let last = starts[starts.len() - 1];
    assert!(
        last - removed_at < 6000,
        "the waiting tasks kept their turns: the last started {} ms after the removal",
        last - removed_at
    );
    let listed = env.wasmq(&["limit", "ls"]);
    assert!(stdout(&listed).contains("no limits"), "{}", stdout(&listed));
}

/// A worker killed with kill -9 while its tasks run leaks nothing: the
/// starts it took count for their second, then age out of the window, and
/// the limit goes on letting its full rate through. (The killed tasks have
/// no retry left, so that no CPU-bound rerun shares the machine with the
/// starts being measured.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaks_no_starts() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    set_limit(&env, &["burn", "--rate", "5/s"]);
    let long: Vec<String> = env
        .client
        .enqueue_batch(
            (0..5)
                .map(|n| {
                    NewTask::new("burn", format!(r#"{{"ms":1500,"n":{n}}}"#))
                        .unwrap()
                        .max_retry(0)
                })
                .collect(),
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let mut doomed = env.worker(
        plugins.path(),
        &["--concurrency", "8", "--lease", "1s", "--no-scheduler"],
    );
    env.wait_for_counts("default", Duration::from_secs(30), "5 running", |c| {
        c.active == 5
    })
    .await;
    doomed.kill9();
    let killed_at = now_ms();
    let short = enqueue_burns(&env, 50, |_| String::new()).await;
    let _survivor = env.worker(
        plugins.path(),
        &["--concurrency", "8", "--lease", "1s", "--no-scheduler"],
    );
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 50 && c.archived == 5,
    )
    .await;
    for id in &long {
        let info = env.task("default", id).await.unwrap();
        let error = info.last_error.expect("a lease-expired error");
        assert_eq!(error.kind, FailureKind::LeaseExpired, "{error:?}");
    }
    let starts = start_times(&env, &short).await;
    let (most, at) = busiest_window(&starts, 1000);
    assert!(
        most <= 5,
        "{most} starts in the second from {at}: {:?}",
        starts.iter().map(|s| s - at).collect::<Vec<_>>()
    );
    // The starts the killed worker took still count for their second (so
    // the survivor may start fewer at first), then age out; from the second
    // full window on, the limit lets its whole rate through.
    assert!(starts[0] > killed_at);
    let rate = steady_rate(&starts, 10);
    // Each leaked start would cost a start per second for good (4/s for
    // one); paced at 95% of the limit, the rate stays well above that.
    assert!(
        (4.25..=5.5).contains(&rate),
        "{rate:.2} starts per second under 5/s after a kill -9"
    );
}

/// Bad specs are refused with what to write, and set nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rate_specs_are_refused_with_what_to_write() {
    let env = Env::start().await;
    for (args, says) in [
        (&["burn", "--rate", "0/s"][..], "lets nothing start"),
        (
            &["burn", "--rate", "fast"][..],
            "write it as COUNT/INTERVAL",
        ),
        (
            &["burn", "--rate", "10/fortnight"][..],
            "no interval we know",
        ),
        (&["burn", "--rate", "10/s", "--burst", "0"][..], "--burst 1"),
        (
            &["burn", "--rate", "10/s", "--burst", "-1"][..],
            "a burst of -1 lets nothing start",
        ),
        (
            &["burn", "--rate", "10/s", "--burst", "11"][..],
            "--burst 10 or less",
        ),
        (
            &["burn", "--rate", "10/s", "--key", "tenant"][..],
            "must start with $",
        ),
        (
            &["burn", "--rate", "10/s", "--key", "$.a..b"][..],
            "write a path such as $.tenant_id",
        ),
        (&["burn"][..], "give --rate COUNT/INTERVAL"),
        (
            &["--queue", "q", "--max-running", "2"][..],
            "a queue takes --rate",
        ),
        (
            &["--queue", "a=b", "--rate", "1/s"][..],
            "queue name \"a=b\" contains '='",
        ),
        (&["burn", "--burst", "3"][..], "--rate"),
    ] {
        let mut all = vec!["limit", "set"];
        all.extend_from_slice(args);
        let refused = env.wasmq(&all);
        assert!(!refused.status.success(), "{args:?} was accepted");
        let error = stderr(&refused);
        assert!(error.contains(says), "{args:?}: {error}");
        assert!(!error.contains("panicked"), "{args:?}: {error}");
    }
    let listed = env.wasmq(&["limit", "ls"]);
    assert!(stdout(&listed).contains("no limits"), "{}", stdout(&listed));
    let missing = env.wasmq(&["limit", "rm", "--queue", "q"]);
    assert_eq!(missing.status.code(), Some(5), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("queue \"q\" has no limit"),
        "{}",
        stderr(&missing)
    );
}

/// Limits survive a Redis restart (append-only, fsync always) mid-run
/// without leaking tokens or slots: a rate of 10/s and a concurrency limit
/// of 2 on the same type, 40 tasks, Redis restarted after 10 of them
/// completed. Every task completes; no one-second window of starts holds
/// more than 10; after the restart the limit lets its full rate through
/// (a leaked token would lower it for good); and no slot stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_survive_a_redis_restart_leaking_nothing() {
    let mut env = Env::start_with(wasmq::dev::RedisOptions {
        appendonly: true,
        ..wasmq::dev::RedisOptions::default()
    })
    .await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    set_limit(
        &env,
        &[
            "burn",
            "--rate",
            "10/s",
            "--max-running",
            "2",
            "--when-busy",
            "delay:20ms",
        ],
    );
    let ids: Vec<String> = env
        .client
        .enqueue_batch(
            (0..40)
                .map(|n| NewTask::new("burn", format!(r#"{{"ms":50,"n":{n}}}"#)).unwrap())
                .collect(),
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let _worker = env.worker(plugins.path(), &["--concurrency", "8", "--no-scheduler"]);
    env.wait_for_counts("default", Duration::from_secs(60), "10 completed", |c| {
        c.completed >= 10
    })
    .await;
    env.redis.restart().expect("redis-server restarts");
    let restarted_at = now_ms();
    // Redis may still be starting: an error only means "not yet".
    crate::support::wait_until(
        Duration::from_secs(120),
        "every task to complete",
        || async {
            env.client
                .queue_counts("default")
                .await
                .is_ok_and(|counts| counts.completed == 40)
        },
    )
    .await;
    let starts = start_times(&env, &ids).await;
    let (most, at) = busiest_window(&starts, 1000);
    assert!(
        most <= 10,
        "{most} starts in the second from {at}: {:?}",
        starts.iter().map(|s| s - at).collect::<Vec<_>>()
    );
    let after: Vec<i64> = starts
        .iter()
        .copied()
        .filter(|start| *start > restarted_at + 1000)
        .collect();
    assert!(
        after.len() >= 10,
        "{} starts after the restart",
        after.len()
    );
    let rate = steady_rate(&after, 0);
    assert!(
        (8.5..=10.5).contains(&rate),
        "{rate:.2} starts per second under 10/s after a Redis restart"
    );
    let listed = env.wasmq(&["limit", "ls", "--json"]);
    let limits: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let holders = limits
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["type"] == "burn" && entry.get("holders").is_some())
        .expect("the concurrency limit is listed")["holders"]
        .clone();
    assert_eq!(holders, serde_json::json!([]), "no slot stays held");
}
