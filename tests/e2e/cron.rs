use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmq::{Cron, TickOutcome, TickRecord};
use wasmq::{FailureKind, NewTask, TaskState};
use wasmq_testkit::{BURN_COMPONENT, ECHO_COMPONENT, PluginDir, WasmqProcess};

use crate::support::{Env, WASMQ, stderr, stdout, wait_until};

impl Env {
    /// Starts `wasmq scheduler` on this Redis.
    fn scheduler(&self, extra: &[&str]) -> WasmqProcess {
        let mut command = WasmqProcess::command(Path::new(WASMQ));
        command
            .arg("scheduler")
            .args(["--redis", &self.url()])
            .args(extra);
        WasmqProcess::spawn(command)
    }

    /// An entry's tick records, oldest first.
    async fn ticks(&self, entry: &str) -> Vec<TickRecord> {
        let mut records = Cron::new(self.broker().clone())
            .history(entry, 10_000)
            .await
            .unwrap();
        records.reverse();
        records
    }

    /// The ids of every task in a queue.
    async fn task_ids(&self, queue: &str) -> Vec<String> {
        let mut redis = self.redis_connection().await;
        redis::cmd("HKEYS")
            .arg(format!("wasmq:{{{queue}}}:msg"))
            .query_async(&mut redis)
            .await
            .unwrap()
    }
}

/// Three scheduler replicas and an every-second entry, for over a minute;
/// one replica is killed midway and another starts late. Every tick in the
/// window is enqueued exactly once: no duplicate, no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_fires_exactly_once_across_replicas_that_come_and_go() {
    let env = Env::start().await;
    let added = env.wasmq(&[
        "cron",
        "add",
        "every-second",
        "* * * * * *",
        "poll",
        r#"{"n":1}"#,
        "--queue",
        "ticks",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let started = Instant::now();
    let mut replicas = vec![env.scheduler(&[]), env.scheduler(&[]), env.scheduler(&[])];
    tokio::time::sleep(Duration::from_secs(25)).await;
    replicas[0].kill9();
    tokio::time::sleep(Duration::from_secs(10)).await;
    replicas.push(env.scheduler(&[]));
    while started.elapsed() < Duration::from_secs(62) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A clean stop of the replicas still running (the first was killed
    // midway): a replica finishes the tick it is handling, so every task it
    // enqueued has its record.
    for replica in &mut replicas[1..] {
        replica.terminate(Duration::from_secs(10)).await;
    }

    let ids = env.task_ids("ticks").await;
    let mut seconds: Vec<i64> = ids
        .iter()
        .map(|id| {
            let stamp = id
                .strip_prefix("every-second@")
                .expect("tick task ids name their entry");
            humantime::parse_rfc3339(stamp)
                .expect("an RFC 3339 tick")
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        })
        .collect();
    seconds.sort();
    assert!(
        seconds.len() >= 60,
        "only {} ticks in over a minute",
        seconds.len()
    );
    let span = seconds.last().unwrap() - seconds.first().unwrap() + 1;
    assert_eq!(seconds.len() as i64, span, "gaps in the ticks: {seconds:?}");

    let records = env.ticks("every-second").await;
    let fired: Vec<i64> = records.iter().map(|record| record.tick_ms).collect();
    let unique: BTreeSet<i64> = fired.iter().copied().collect();
    assert_eq!(
        fired.len(),
        unique.len(),
        "a tick was recorded as fired twice"
    );
    // A record is written just after its tick's task is enqueued, so the
    // replica killed midway may have left one tick without its record;
    // every record names a task that exists.
    let ids: BTreeSet<&String> = ids.iter().collect();
    assert!(
        records
            .iter()
            .all(|record| record.task_id.as_ref().is_some_and(|id| ids.contains(id))),
        "every record names its tick's task"
    );
    assert!(
        (ids.len() - 1..=ids.len()).contains(&fired.len()),
        "one record per tick, but for at most the tick the killed replica was firing: {} records, {} tasks",
        fired.len(),
        ids.len()
    );
    assert!(
        records
            .iter()
            .all(|record| record.outcome == TickOutcome::Fired)
    );
    let hosts: BTreeSet<&str> = records.iter().map(|record| record.host.as_str()).collect();
    assert!(
        hosts.len() >= 2,
        "ticks were fired by several replicas: {hosts:?}"
    );
}

/// After every scheduler was down for several ticks, each misfire policy
/// does what it says: skip fires none of the missed ticks, once fires the
/// latest, all:3 fires the latest three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_follow_their_misfire_policy() {
    let env = Env::start().await;
    for policy in ["skip", "once", "all:3"] {
        let name = format!("m-{}", policy.replace(':', "-"));
        let added = env.wasmq(&[
            "cron",
            "add",
            &name,
            "* * * * * *",
            "poll",
            "{}",
            "--queue",
            &name,
            "--misfire",
            policy,
        ]);
        assert!(added.status.success(), "{}", stderr(&added));
    }
    // No scheduler for six ticks.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut scheduler = env.scheduler(&["--misfire-grace", "1s"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A clean stop, so that the tick being handled gets its record too.
    scheduler.terminate(Duration::from_secs(10)).await;

    let count = |records: &[TickRecord], outcome| {
        records
            .iter()
            .filter(|record| record.outcome == outcome)
            .count()
    };
    let skip = env.ticks("m-skip").await;
    assert_eq!(count(&skip, TickOutcome::FiredLate), 0, "{skip:?}");
    assert_eq!(count(&skip, TickOutcome::Skipped), 1, "{skip:?}");
    let skipped = skip.iter().find_map(|record| record.skipped).unwrap();
    assert!((4..=7).contains(&skipped), "{skipped} ticks skipped");
    assert!(
        count(&skip, TickOutcome::Fired) >= 2,
        "on-time ticks still fire: {skip:?}"
    );

    let once = env.ticks("m-once").await;
    assert_eq!(count(&once, TickOutcome::FiredLate), 1, "{once:?}");
    let all = env.ticks("m-all-3").await;
    assert_eq!(count(&all, TickOutcome::FiredLate), 3, "{all:?}");
    // The late ticks are the latest missed ones, consecutive.
    let late: Vec<i64> = all
        .iter()
        .filter(|record| record.outcome == TickOutcome::FiredLate)
        .map(|record| record.tick_ms)
        .collect();
    assert_eq!(late[1] - late[0], 1000);
    assert_eq!(late[2] - late[1], 1000);
    // Every fired tick has its task, every skipped one none.
    for (queue, records) in [("m-skip", &skip), ("m-once", &once), ("m-all-3", &all)] {
        let fired = records
            .iter()
            .filter(|record| record.task_id.is_some())
            .count();
        assert_eq!(env.task_ids(queue).await.len(), fired, "{queue}");
    }
}

/// Bad specs and unknown time zones are refused with the position of the
/// error.
#[tokio::test]
async fn bad_cron_specs_and_time_zones_are_refused_with_the_position() {
    let env = Env::start().await;
    let output = env.wasmq(&["cron", "add", "x", "0 0 25 * * *", "report:daily"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains(r#"hour field "25""#), "{message}");
    assert!(message.contains("at column 5"), "{message}");
    assert!(message.contains("      ^^"), "{message}");
    let output = env.wasmq(&[
        "cron",
        "add",
        "x",
        "0 0 3 * * *",
        "report:daily",
        "--tz",
        "Asia/Soul",
    ]);
    assert!(
        stderr(&output).contains(r#"unknown time zone "Asia/Soul""#),
        "{}",
        stderr(&output)
    );
    let listed = env.wasmq(&["cron", "ls"]);
    assert!(
        stdout(&listed).contains("no cron entries"),
        "{}",
        stdout(&listed)
    );
}

/// Intervals [start, end) of burn tasks' runs, from their results.
async fn runs(env: &Env, ids: &[String]) -> Vec<(i64, i64)> {
    let mut runs = Vec::new();
    for id in ids {
        let info = env.task("default", id).await.unwrap();
        let result: serde_json::Value =
            serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
        runs.push((
            result["started_ms"].as_i64().unwrap(),
            result["finished_ms"].as_i64().unwrap(),
        ));
    }
    runs
}

/// The most runs that overlapped at any moment.
fn max_overlap(runs: &[(i64, i64)]) -> usize {
    let mut events: Vec<(i64, i32)> = runs
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // Ends before starts at the same millisecond: touching is not overlapping.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

/// A task type limited to 3 never has more than 3 running across 3
/// workers; a singleton never runs twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_wide_limits_hold_across_workers() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let set = env.wasmq(&[
        "limit",
        "set",
        "burn",
        "--max-running",
        "3",
        "--when-busy",
        "delay:50ms",
    ]);
    assert!(set.status.success(), "{}", stderr(&set));
    let ids: Vec<String> = env
        .client
        .enqueue_batch(
            (0..24)
                .map(|n| NewTask::new("burn", format!(r#"{{"ms":150,"n":{n}}}"#)).unwrap())
                .collect(),
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|_| env.worker(plugins.path(), &["--concurrency", "4", "--no-scheduler"]))
        .collect();
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 24,
    )
    .await;
    let most = max_overlap(&runs(&env, &ids).await);
    assert!(most <= 3, "{most} ran at once");
    assert!(
        most >= 2,
        "the limit still lets tasks run side by side ({most})"
    );
    let listed = env.wasmq(&["limit", "ls"]);
    assert!(stdout(&listed).contains("burn  3"), "{}", stdout(&listed));
    drop(workers);

    let set = env.wasmq(&[
        "limit",
        "set",
        "burn",
        "--singleton",
        "--when-busy",
        "delay:50ms",
    ]);
    assert!(set.status.success(), "{}", stderr(&set));
    let ids: Vec<String> = env
        .client
        .enqueue_batch(
            (0..8)
                .map(|n| NewTask::new("burn", format!(r#"{{"ms":100,"n":{n}}}"#)).unwrap())
                .collect(),
        )
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().id)
        .collect();
    let _workers: Vec<_> = (0..3)
        .map(|_| env.worker(plugins.path(), &["--concurrency", "4", "--no-scheduler"]))
        .collect();
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |c| c.completed == 32,
    )
    .await;
    assert_eq!(
        max_overlap(&runs(&env, &ids).await),
        1,
        "a singleton ran twice at once"
    );
}

/// A singleton whose holder was killed runs again once its lock expires
/// (lock-at-most-for), not before; meanwhile the waiting task says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_runs_again_after_a_killed_holders_lock_expires() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let set = env.wasmq(&[
        "limit",
        "set",
        "burn",
        "--singleton",
        "--lock-at-most-for",
        "8s",
        "--when-busy",
        "delay:100ms",
    ]);
    assert!(set.status.success(), "{}", stderr(&set));
    let holder = NewTask::new("burn", r#"{"ms":20000}"#)
        .unwrap()
        .max_retry(0);
    let holder = env.client.enqueue(holder).await.unwrap().id;
    let mut first = env.worker(plugins.path(), &["--lease", "1s", "--no-scheduler"]);
    // Leased first, then admitted: the holder runs once it holds the slot.
    let redis = env.redis_connection().await;
    let slot_expiry = || {
        let mut redis = redis.clone();
        let holder = holder.clone();
        async move {
            redis::cmd("ZSCORE")
                .arg("wasmq:{limit:type:burn}:holders")
                .arg(&holder)
                .query_async::<Option<f64>>(&mut redis)
                .await
                .unwrap()
        }
    };
    wait_until(
        Duration::from_secs(20),
        "the holder to take the slot",
        || async { slot_expiry().await.is_some() },
    )
    .await;
    let expires = slot_expiry().await.expect("the holder holds the slot");
    first.kill9();

    let next = env
        .client
        .enqueue(NewTask::new("burn", r#"{"ms":10}"#).unwrap())
        .await
        .unwrap()
        .id;
    let _second = env.worker(plugins.path(), &["--lease", "1s", "--no-scheduler"]);
    wait_until(
        Duration::from_secs(20),
        "the next task to wait for the slot",
        || async {
            let info = env.task("default", &next).await.unwrap();
            info.last_error.is_some_and(|error| {
                error.kind == FailureKind::SlotBusy && error.message.contains("delayed")
            })
        },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the next task to complete",
        || async { env.task("default", &next).await.unwrap().state == TaskState::Completed },
    )
    .await;
    let started = runs(&env, std::slice::from_ref(&next)).await[0].0;
    assert!(
        started as f64 >= expires - 50.0,
        "ran at {started}, before the dead holder's lock expired at {expires}"
    );
    let holder = env.task("default", &holder).await.unwrap();
    assert_eq!(
        holder.state,
        TaskState::Archived,
        "the killed holder had no retries left"
    );
}

/// A singleton cron entry whose runs outlast its interval skips the ticks
/// that find it busy, and `cron history` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_singleton_entry_skips_ticks_visibly() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let added = env.wasmq(&[
        "cron",
        "add",
        "slow",
        "* * * * * *",
        "burn",
        r#"{"ms":2500}"#,
        "--singleton",
        "--lock-at-most-for",
        "30s",
        "--when-busy",
        "skip",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let _worker = env.worker(plugins.path(), &["--concurrency", "4"]);
    env.wait_for_counts("default", Duration::from_secs(30), "a skipped tick", |c| {
        c.archived >= 2 && c.completed >= 1
    })
    .await;
    let history = env.wasmq(&["cron", "history", "slow"]);
    let text = stdout(&history);
    assert!(
        text.contains(
            "archived (slot-busy: skipped: all 1 slot(s) of limit \"cron:slow\" are held"
        ),
        "{text}"
    );
    assert!(text.contains("completed"), "{text}");
}

/// Entries from a schedule file are applied at start and whenever the file
/// changes; an entry removed from the file is removed; a broken file
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_file_is_reconciled_on_start_and_on_change() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cron.toml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    write(
        r#"
[[entry]]
name = "nightly-report"
schedule = "0 0 3 * * *"
tz = "Asia/Seoul"
type = "report:daily"
payload = { region = "kr" }
queue = "low"

[[entry]]
name = "poll"
schedule = "*/2 * * * * *"
type = "charger:poll"
"#,
    );
    let scheduler = env.scheduler(&["--schedule", file.to_str().unwrap()]);
    let entries = || async {
        let entries = Cron::new(env.broker().clone()).entries().await.unwrap();
        entries
            .into_iter()
            .map(|entry| entry.name)
            .collect::<Vec<String>>()
    };
    wait_until(Duration::from_secs(20), "the file's entries", || async {
        entries().await == ["nightly-report", "poll"]
    })
    .await;
    let added = env.wasmq(&["cron", "add", "by-hand", "0 * * * *", "x"]);
    assert!(added.status.success());

    // Broken: nothing changes, the log says why.
    write("[[entry]]\nname = \"poll\"\nschedule = \"0 0 25 * * *\"\ntype = \"x\"\n");
    scheduler
        .wait_for_log("schedule file not applied", Duration::from_secs(20))
        .await;
    assert_eq!(entries().await, ["by-hand", "nightly-report", "poll"]);

    // Fixed, with one entry removed and one changed.
    write("[[entry]]\nname = \"poll\"\nschedule = \"*/5 * * * * *\"\ntype = \"charger:poll\"\n");
    wait_until(
        Duration::from_secs(20),
        "the file's new entries",
        || async { entries().await == ["by-hand", "poll"] },
    )
    .await;
    let entries = Cron::new(env.broker().clone()).entries().await.unwrap();
    let poll = entries.iter().find(|entry| entry.name == "poll").unwrap();
    assert_eq!(poll.schedule, "*/5 * * * * *", "{poll:?}");
}

/// Each tick record names the queue its task went to, so the history
/// finds the state of tasks enqueued before the entry moved to another
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_records_name_the_queue_their_task_went_to() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let add = |queue: &str, extra: &[&str]| {
        let mut args = vec![
            "cron",
            "add",
            "moving",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            queue,
        ];
        args.extend_from_slice(extra);
        let added = env.wasmq(&args);
        assert!(added.status.success(), "{}", stderr(&added));
    };
    add("alpha", &[]);
    let _worker = env.worker(plugins.path(), &["--queues", "alpha,beta"]);
    let fired_to = |queue: &'static str| {
        let env = &env;
        move || async move {
            env.ticks("moving")
                .await
                .iter()
                .any(|tick| tick.queue.as_deref() == Some(queue))
        }
    };
    wait_until(
        Duration::from_secs(30),
        "a tick into alpha",
        fired_to("alpha"),
    )
    .await;
    add("beta", &["--replace"]);
    wait_until(
        Duration::from_secs(30),
        "a tick into beta",
        fired_to("beta"),
    )
    .await;
    env.wait_for_counts("alpha", Duration::from_secs(30), "alpha's ticks run", |c| {
        c.pending == 0 && c.active == 0 && c.completed >= 1
    })
    .await;

    let history = env.wasmq(&["cron", "history", "moving", "--json"]);
    let ticks: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    let into_alpha: Vec<&serde_json::Value> = ticks
        .iter()
        .filter(|status| status["tick"]["queue"] == "alpha")
        .collect();
    assert!(!into_alpha.is_empty(), "{ticks:?}");
    for status in into_alpha {
        assert_eq!(
            status["task_state"], "completed",
            "found in its own queue, not the entry's new one: {status}"
        );
    }
    let text = stdout(&env.wasmq(&["cron", "history", "moving"]));
    assert!(text.contains("QUEUE") && text.contains("beta"), "{text}");
}
