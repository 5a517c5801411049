use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use wasmq::{FailureKind, NewTask, TaskState};
use wasmq_testkit::*;

use crate::support::{Env, free_port, http, stderr, stdout, wait_for_http, wasmq};

/// How a hostile plugin's task must end.
struct Hostile {
    /// The plugin (directory name under plugins/).
    plugin: &'static str,
    component: &'static str,
    task_type: &'static str,
    /// Extra worker flags (small budgets so the test is quick).
    flags: &'static [&'static str],
    kind: FailureKind,
    /// Part of the error message.
    message: &'static str,
    /// Whether the worker refuses the plugin at load instead (`message` is
    /// then part of the reason it gives).
    refused_at_load: bool,
}

const HOSTILE: &[Hostile] = &[
    Hostile {
        plugin: "hostile-spin",
        component: HOSTILE_SPIN_COMPONENT,
        task_type: "hostile:spin",
        flags: &["--fuel", "500000000"],
        kind: FailureKind::OutOfFuel,
        message: "used up its fuel budget of 500000000 units",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-sleep",
        component: HOSTILE_SLEEP_COMPONENT,
        task_type: "hostile:sleep",
        flags: &["--task-timeout", "1s"],
        kind: FailureKind::Timeout,
        message: "time limit of 1s",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-membomb",
        component: HOSTILE_MEMBOMB_COMPONENT,
        task_type: "hostile:membomb",
        flags: &["--memory", "64MiB"],
        kind: FailureKind::OutOfMemory,
        message: "over its cap of 67108864 bytes",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-recurse",
        component: HOSTILE_RECURSE_COMPONENT,
        task_type: "hostile:recurse",
        flags: &[],
        kind: FailureKind::StackOverflow,
        message: "overflowed its stack",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-panic",
        component: HOSTILE_PANIC_COMPONENT,
        task_type: "hostile:panic",
        flags: &[],
        kind: FailureKind::Panic,
        message: "hostile plugin panics on purpose",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-bigresult",
        component: HOSTILE_BIGRESULT_COMPONENT,
        task_type: "hostile:bigresult",
        flags: &[],
        kind: FailureKind::ResultTooLarge,
        message: "over the plugin's limit of 1048576 bytes",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-logflood",
        component: HOSTILE_LOGFLOOD_COMPONENT,
        task_type: "hostile:logflood",
        flags: &["--max-log", "32KiB"],
        kind: FailureKind::LogLimit,
        message: "logged more than its limit of 32768 bytes",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-snoop",
        component: HOSTILE_SNOOP_COMPONENT,
        task_type: "hostile:snoop",
        flags: &[],
        kind: FailureKind::GaveUp,
        message: "saw nothing: no leftovers, no file, no environment, clock at 946684800 s",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-socket",
        component: HOSTILE_SOCKET_COMPONENT,
        task_type: "hostile:socket",
        flags: &[],
        kind: FailureKind::CapabilityDenied,
        message: "denied: binding a TCP socket to 0.0.0.0:0 (plugins get no sockets",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-http",
        component: HOSTILE_HTTP_COMPONENT,
        task_type: "hostile:http",
        flags: &[],
        kind: FailureKind::CapabilityDenied,
        message: "denied: HTTP to exfiltrate.example.com:80, which is not in the plugin's allow list (127.0.0.1)",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-fanout",
        component: HOSTILE_FANOUT_COMPONENT,
        task_type: "hostile:fanout",
        flags: &[],
        kind: FailureKind::CapabilityDenied,
        message: "denied: enqueue: the quota of 3 follow-up tasks per attempt is used up",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-replicate",
        component: HOSTILE_REPLICATE_COMPONENT,
        task_type: "hostile:replicate",
        flags: &["--max-descendants", "3"],
        kind: FailureKind::CapabilityDenied,
        message: "descendants, the cap of 3 (capabilities.enqueue.max_descendants",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-progress",
        component: HOSTILE_PROGRESS_COMPONENT,
        task_type: "hostile:progress",
        flags: &[],
        kind: FailureKind::CapabilityDenied,
        message: "denied: add-children: the flow holds 10 tasks, over the 3 follow-ups left of the attempt's quota",
        refused_at_load: false,
    },
    Hostile {
        plugin: "hostile-initbomb",
        component: HOSTILE_INITBOMB_COMPONENT,
        task_type: "hostile:initbomb",
        flags: &[],
        kind: FailureKind::OutOfMemory,
        message: "as soon as it is instantiated, over the plugin's memory cap of 134217728 bytes",
        refused_at_load: true,
    },
    Hostile {
        plugin: "hostile-bigmessage",
        component: HOSTILE_BIGMESSAGE_COMPONENT,
        task_type: "hostile:bigmessage",
        flags: &[],
        kind: FailureKind::GaveUp,
        message: "... [520192 of 524288 bytes cut]",
        refused_at_load: false,
    },
];

/// Every hostile plugin under plugins/ has a case in the suite.
#[test]
fn every_hostile_plugin_has_a_case() {
    for (plugin, _) in HOSTILE_COMPONENTS {
        assert!(
            HOSTILE.iter().any(|case| case.plugin == *plugin),
            "no case for {plugin}"
        );
    }
    assert_eq!(HOSTILE.len(), HOSTILE_COMPONENTS.len());
}

/// Resident memory of a process, bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs one hostile plugin's task on a worker that serves the echo plugin
/// at the same time: the task ends with its failure class (in `task show`
/// and the metrics), echo tasks keep completing, the worker lives, and its
/// memory comes back to where it was.
async fn hostile_case(name: &str) {
    let case = HOSTILE.iter().find(|case| case.plugin == name).unwrap();
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, case.component]);
    if case.refused_at_load {
        let output = wasmq(&[
            "worker".into(),
            "--redis".into(),
            env.url(),
            "--plugins".into(),
            plugins.path().display().to_string(),
        ]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
        let reason = stderr(&output);
        assert!(reason.contains(case.message), "{name}: {reason}");
        return;
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut flags = vec![
        "--concurrency",
        "4",
        "--metrics-addr",
        &metrics,
        "--no-scheduler",
    ];
    flags.extend_from_slice(case.flags);
    let worker = env.worker(plugins.path(), &flags);
    let echoes = |n: usize| {
        (0..n)
            .map(|i| NewTask::new("echo", format!(r#"{{"i":{i}}}"#)).unwrap())
            .collect::<Vec<_>>()
    };

    // Warm up, then take the memory baseline.
    for outcome in env.client.enqueue_batch(echoes(20)).await {
        outcome.unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "the warm-up", |c| {
        c.completed == 20
    })
    .await;
    let baseline = rss(worker.pid());

    let hostile = env
        .client
        .enqueue(NewTask::new(case.task_type, "{}").unwrap().max_retry(0))
        .await
        .unwrap()
        .id;
    for outcome in env.client.enqueue_batch(echoes(30)).await {
        outcome.unwrap();
    }
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "the hostile task to end and the echoes to complete",
        |c| c.archived == 1 && c.completed >= 50,
    )
    .await;

    let info = env.task("default", &hostile).await.unwrap();
    assert_eq!(info.state, TaskState::Archived);
    let error = info.last_error.unwrap();
    assert_eq!(error.kind, case.kind, "{name}: {}", error.message);
    // Whatever the plugin said, what is stored of it is bounded.
    assert!(
        error.message.len() <= 8 * 1024,
        "{name}: a stored message of {} bytes",
        error.message.len()
    );
    assert!(
        error.message.contains(case.message),
        "{name}: {}",
        error.message
    );
    let shown = env.wasmq(&["task", "show", &hostile]);
    assert!(
        stdout(&shown).contains(&format!("last error: {} on attempt 1", case.kind)),
        "{}",
        stdout(&shown)
    );
    assert!(
        stdout(&shown).len() < 16 * 1024,
        "{name}: task show printed {} bytes",
        stdout(&shown).len()
    );

    // The worker lives and goes on serving.
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(
        unsafe { libc::kill(worker.pid(), 0) },
        0,
        "{name} killed the worker:\n{}",
        worker.log()
    );
    for outcome in env.client.enqueue_batch(echoes(10)).await {
        outcome.unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "more echoes", |c| {
        c.completed >= 60
    })
    .await;

    wait_for_http(&metrics, "/metrics").await;
    let (_, text) = http("GET", &metrics, "/metrics", &[]).unwrap();
    let failed = format!(
        "wasmq_tasks_failed_total{{queue=\"default\",type=\"{}\",class=\"{}\"}} 1",
        case.task_type, case.kind
    );
    assert!(text.contains(&failed), "missing {failed:?}");

    // Memory comes back: the instance's memory went back to the pool.
    let after = rss(worker.pid());
    assert!(
        after < baseline + 48 * 1024 * 1024,
        "{name}: the worker's memory grew from {baseline} to {after} bytes"
    );
}

macro_rules! hostile_tests {
    ($($test:ident => $plugin:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                hostile_case($plugin).await;
            }
        )*
    };
}

hostile_tests! {
    hostile_spin_runs_out_of_fuel => "hostile-spin",
    hostile_sleep_in_a_host_call_times_out => "hostile-sleep",
    hostile_memory_bomb_hits_its_memory_cap => "hostile-membomb",
    hostile_recursion_overflows_its_stack => "hostile-recurse",
    hostile_panic_is_reported_with_its_message => "hostile-panic",
    hostile_huge_result_is_refused => "hostile-bigresult",
    hostile_log_flood_hits_its_log_limit => "hostile-logflood",
    hostile_snooping_sees_no_file_env_clock_or_randomness => "hostile-snoop",
    hostile_socket_is_denied => "hostile-socket",
    hostile_http_to_an_unlisted_host_is_denied => "hostile-http",
    hostile_enqueue_flood_is_stopped_at_its_quota => "hostile-fanout",
    hostile_plugin_too_big_to_instantiate_is_refused_at_load => "hostile-initbomb",
    hostile_huge_failure_message_is_cut => "hostile-bigmessage",
    hostile_replication_is_stopped_at_its_trees_cap => "hostile-replicate",
    hostile_progress_and_children_are_refused_at_their_caps => "hostile-progress",
}

/// Progress that is no number, a note too long or not JSON are refused
/// (the plugin fails with a panic if one is accepted); a flood of 20,000
/// reports and heartbeats costs Redis a handful of writes, and the last
/// report is the one kept; children of a type the manifest does not grant
/// end the attempt, and none of them is enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_progress_a_report_flood_and_ungranted_children_cost_nothing() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_PROGRESS_COMPONENT]);
    let _worker = env.worker(plugins.path(), &["--no-scheduler"]);
    let mut redis = env.redis_connection().await;
    let script_calls = |info: String| -> u64 {
        info.lines()
            .filter(|line| {
                line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:")
            })
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis)
        .await
        .unwrap();
    let id = env
        .client
        .enqueue(
            NewTask::new("hostile:progress", r#"{"ungranted":true}"#)
                .unwrap()
                .max_retry(0),
        )
        .await
        .unwrap()
        .id;
    let info = env
        .wait_for_state("default", &id, TaskState::Archived, Duration::from_secs(60))
        .await;
    let info_text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .unwrap();
    let calls = script_calls(info_text);
    let error = info.last_error.unwrap();
    assert_eq!(
        error.kind,
        FailureKind::CapabilityDenied,
        "{}",
        error.message
    );
    assert!(
        error.message.contains(
            r#"add-children: the flow has a task of type "secret:thing", not one the manifest grants (echo)"#
        ),
        "{}",
        error.message
    );
    let last = info.progress.expect("the last report is kept");
    assert_eq!(
        (last.done, last.note),
        (Some(100.0), Some(serde_json::json!({"last": true})))
    );
    assert!(
        calls < 1_000,
        "20,000 reports and heartbeats made {calls} script calls"
    );
    assert_eq!(
        env.counts("default").await.unfinished(),
        0,
        "no child was enqueued"
    );
}

/// The enqueue flood put exactly its quota of follow-ups on the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_flood_enqueues_exactly_its_quota() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[HOSTILE_FANOUT_COMPONENT]);
    env.client
        .enqueue(
            NewTask::new("hostile:fanout", "{}")
                .unwrap()
                .max_retry(0)
                .queue("flood"),
        )
        .await
        .unwrap();
    let _worker = env.worker(plugins.path(), &["--queues", "flood", "--no-scheduler"]);
    env.wait_for_counts("flood", Duration::from_secs(30), "the flood to end", |c| {
        c.archived == 1
    })
    .await;
    // No plugin here handles echo: the follow-ups wait, pending or in retry.
    assert_eq!(
        env.counts("flood").await.unfinished(),
        3,
        "exactly the quota of 3 echo tasks"
    );
}

/// A tiny HTTP server on loopback: `/small` answers 12 bytes, `/big` 100 KiB.
pub(crate) fn serve_http() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let read = stream.read(&mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..read]);
            let body = if request.starts_with("GET /big") {
                "b".repeat(100 * 1024)
            } else {
                "hello, relay".to_string()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A plugin gets exactly what its manifest grants: HTTP to the allowed
/// host (with its response cap), its own key-value store, fan-out up to its
/// quota, the environment values the operator provides by name (and no
/// other), and log lines tagged with the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_capabilities_work_within_their_limits() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[RELAY_COMPONENT, ECHO_COMPONENT]);
    let port = serve_http();
    let mut command = WasmqProcess::command(Path::new(crate::support::WASMQ));
    command
        .args([
            "worker",
            "--redis",
            &env.url(),
            "--no-scheduler",
            "--retry-delay",
            "50ms",
            "--allow-env",
            "relay=REGION",
            "--allow-secret",
            "relay=TOKEN",
            "--plugins",
        ])
        .arg(plugins.path())
        .env("WASMQ_PLUGIN_ENV_REGION", "eu-west")
        .env("WASMQ_PLUGIN_SECRET_TOKEN", "s3cret")
        .env("WASMQ_PLUGIN_ENV_OTHER", "not asked for")
        .env("DATABASE_URL", "postgres://the-workers-own");
    let worker = WasmqProcess::spawn(command);

    let run = |task_type: &str, payload: String| {
        let client = env.client.clone();
        let task_type = task_type.to_string();
        async move {
            let id = client
                .enqueue(NewTask::new(task_type, payload).unwrap().max_retry(0))
                .await
                .unwrap()
                .id;
            loop {
                let info = client.task(&id, Some("default")).await.unwrap().unwrap();
                if matches!(info.state, TaskState::Completed | TaskState::Archived) {
                    return info;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let result = |info: &wasmq::TaskInfo| -> serde_json::Value {
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.last_error);
        serde_json::from_slice(info.result.as_deref().unwrap()).unwrap()
    };

    let fetched = run(
        "relay:fetch",
        format!(r#"{{"url":"http://127.0.0.1:{port}/small"}}"#),
    )
    .await;
    let fetched = result(&fetched);
    assert_eq!(
        (fetched["status"].as_u64(), fetched["body"].as_str()),
        (Some(200), Some("hello, relay"))
    );
    let big = run(
        "relay:fetch",
        format!(r#"{{"url":"http://127.0.0.1:{port}/big"}}"#),
    )
    .await;
    let error = big.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::CapabilityDenied);
    assert!(
        error
            .message
            .contains("an HTTP response over the plugin's limit of 65536 bytes"),
        "{}",
        error.message
    );

    for expected in 1..=2 {
        let counted = result(&run("relay:count", r#"{"key":"hits"}"#.into()).await);
        assert_eq!(counted["count"], expected);
    }
    let mut redis = env.redis_connection().await;
    let identity = crate::forge::manifest_of(RELAY_COMPONENT).identity();
    assert!(identity.starts_with("relay."), "{identity}");
    let hits: i64 = redis::cmd("HGET")
        .arg(format!("wasmq:{{kv:{identity}}}:data"))
        .arg("hits")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        hits, 2,
        "the store is the HASH of the plugin's identity (name and task types)"
    );

    let fanned = result(&run("relay:fanout", r#"{"n":3}"#.into()).await);
    assert_eq!(fanned["enqueued"].as_array().unwrap().len(), 3);
    let over = run("relay:fanout", r#"{"n":6}"#.into()).await;
    assert!(over.last_error.unwrap().message.contains("quota of 5"));

    // A flow started by a plugin: its tasks count against the quota (a
    // flow of 1 + 5 tasks is over it), and its parent reads the children's
    // results.
    let started = result(&run("relay:flow", r#"{"n":3}"#.into()).await);
    let parent = started["flow"].as_str().unwrap().to_string();
    let gathered = env
        .wait_for_state(
            "default",
            &parent,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let gathered = result(&gathered);
    let ns: Vec<&serde_json::Value> = gathered["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| &child["n"])
        .collect();
    assert_eq!(
        ns,
        [0, 1, 2],
        "the parent got its children's results, in order"
    );
    let over = run("relay:flow", r#"{"n":5}"#.into()).await;
    let error = over.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::CapabilityDenied);
    assert!(
        error.message.contains("over the 5 follow-ups left"),
        "{}",
        error.message
    );

    // Children a plugin adds to its own running task: the task waits for
    // them and runs again, round after round, seeing every child's result,
    // and the waits count no attempt. Children added by an attempt that
    // failed are dropped.
    let children_ns = |info: &wasmq::TaskInfo| -> Vec<u64> {
        result(info)["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|child| child["n"].as_u64().unwrap())
            .collect()
    };
    let split = run("relay:split", r#"{"n":2,"rounds":2}"#.into()).await;
    assert_eq!(children_ns(&split), [0, 1, 2, 3]);
    assert_eq!(split.attempts, 1, "waiting for children counts no attempt");
    let tree = env
        .client
        .flow(&split.message.id, Some("default"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tree.children.len(), 4, "{tree:?}");
    let retried = env
        .client
        .enqueue(
            NewTask::new("relay:split", r#"{"n":2,"fail_after_adding":true}"#)
                .unwrap()
                .max_retry(1),
        )
        .await
        .unwrap()
        .id;
    let retried = env
        .wait_for_state(
            "default",
            &retried,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(children_ns(&retried), [0, 1]);
    assert_eq!(retried.attempts, 2);
    let tree = env
        .client
        .flow(&retried.message.id, Some("default"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tree.children.len(),
        2,
        "the failed attempt's children were dropped: {tree:?}"
    );

    let seen = result(&run("relay:env", "{}".into()).await);
    assert_eq!(
        seen["env"],
        serde_json::json!([["REGION", "eu-west"], ["TOKEN", "s3cret"]])
    );

    let log = worker.log();
    let line = log
        .lines()
        .find(|line| line.contains("relay:fetch done"))
        .expect("the plugin's log line");
    assert!(
        line.contains("plugin=\"relay\"")
            && line.contains("task_type=\"relay:fetch\"")
            && line.contains("attempt=1"),
        "{line}"
    );
    assert!(line.contains("task_id="), "{line}");
}

/// Components are refused at load, naming the problem: an import the
/// manifest does not grant, impossible limits, another version of the WIT
/// package, a component over the size cap.
#[tokio::test]
async fn bad_plugins_are_refused_at_load_naming_the_problem() {
    let env = Env::start().await;
    let cases: [(&str, &[&str], &str); 4] = [
        (
            UNGRANTED_COMPONENT,
            &[],
            "imports wasmq:plugin/kv@0.1.0, but its manifest does not grant `kv`",
        ),
        (BAD_LIMITS_COMPONENT, &[], "limits.fuel = 0 is impossible"),
        (
            OLD_WORLD_COMPONENT,
            &[],
            "targets wasmq:plugin@0.0.9, but this host speaks wasmq:plugin@0.1.0",
        ),
        (
            ECHO_COMPONENT,
            &["--max-plugin-size", "100KiB"],
            "over this worker's limit of 102400 bytes",
        ),
    ];
    for (component, flags, expected) in cases {
        let inspected = wasmq(
            &[
                vec!["plugin".to_string(), "inspect".into(), component.into()],
                flags.iter().map(|f| f.to_string()).collect(),
            ]
            .concat(),
        );
        assert_eq!(inspected.status.code(), Some(1), "{component}");
        assert!(
            stdout(&inspected).contains("loadable:      no"),
            "{}",
            stdout(&inspected)
        );
        assert!(
            stderr(&inspected).contains(expected),
            "{component}: {}",
            stderr(&inspected)
        );

        let plugins = PluginDir::with(&[component]);
        let mut args = vec![
            "worker".to_string(),
            "--redis".into(),
            env.url(),
            "--plugins".into(),
            plugins.path().display().to_string(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let refused = wasmq(&args);
        assert_eq!(refused.status.code(), Some(1), "{component}");
        assert!(
            stderr(&refused).contains(expected),
            "{component}: {}",
            stderr(&refused)
        );
    }
    let fine = wasmq(&["plugin".into(), "inspect".into(), RELAY_COMPONENT.into()]);
    assert!(fine.status.success(), "{}", stderr(&fine));
    let text = stdout(&fine);
    assert!(text.contains("loadable:      yes"), "{text}");
    assert!(
        text.contains("http to [127.0.0.1] (responses up to 64.0 KiB, timeout 5s)"),
        "{text}"
    );
    assert!(text.contains("wasi:http/outgoing-handler"), "{text}");
}

/// A plugin whose instances each hold many memories cannot take the pool
/// from its neighbour: the pool holds every instance's whole allotment, so
/// each echo task completes at its first attempt and echo is never put on
/// probation, while the hostile plugin's attempts time out beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_holding_many_memories_takes_nothing_from_its_neighbour() {
    use wasmq_testkit::hostile_wat::{Hogs, hog_component};
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    // 79 memories (and the handler's own) per instance, then it spins
    // until its time is up. One such instance held every memory slot of
    // the pool before the pool was sized per component, and echo attempts
    // failed beside it.
    let hog = hog_component(
        "memory-hog",
        "hog",
        Some("64MiB"),
        Hogs {
            instances: 79,
            min_pages: 1,
            grow_pages: 0,
            table_elements: 0,
            spin: true,
        },
    );
    plugins.add_file("memory-hog.wasm", &hog);
    let metrics = format!("127.0.0.1:{}", free_port());
    let _worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "4",
            "--task-timeout",
            "1s",
            "--max-component-memories",
            "80",
            "--max-component-instances",
            "96",
            "--metrics-addr",
            &metrics,
            "--no-scheduler",
        ],
    );
    let mut hostile = Vec::new();
    for _ in 0..6 {
        let task = NewTask::new("hog", "{}").unwrap().max_retry(0);
        hostile.push(env.client.enqueue(task).await.unwrap().id);
    }
    let echoes: Vec<_> = (0..40)
        .map(|i| NewTask::new("echo", format!(r#"{{"i":{i}}}"#)).unwrap())
        .collect();
    let mut ids = Vec::new();
    for outcome in env.client.enqueue_batch(echoes).await {
        ids.push(outcome.unwrap().id);
    }
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "the hogs to time out and the echoes to complete",
        |c| c.archived == 6 && c.completed == 40,
    )
    .await;
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.state, TaskState::Completed);
        assert_eq!(info.attempts, 1, "echo task {id} failed an attempt");
    }
    for id in &hostile {
        let error = env.task("default", id).await.unwrap().last_error.unwrap();
        assert_eq!(error.kind, FailureKind::Timeout, "{}", error.message);
    }
    wait_for_http(&metrics, "/metrics").await;
    let (_, text) = http("GET", &metrics, "/metrics", &[]).unwrap();
    assert!(
        !text.contains("wasmq_plugin_on_probation{plugin=\"echo\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("type=\"echo\",class="),
        "an echo attempt failed:\n{text}"
    );
}

/// With --max-instances-per-plugin 1, a plugin's tasks run one at a time:
/// the others go back to their queue for a moment, no attempt counted,
/// and all complete at their first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_runs_within_its_share_of_instances_and_loses_no_attempt() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[BURN_COMPONENT]);
    let _worker = env.worker(
        plugins.path(),
        &[
            "--concurrency",
            "4",
            "--max-instances-per-plugin",
            "1",
            "--no-scheduler",
        ],
    );
    let mut ids = Vec::new();
    for _ in 0..6 {
        let task = NewTask::new("burn", r#"{"ms":100}"#).unwrap().max_retry(0);
        ids.push(env.client.enqueue(task).await.unwrap().id);
    }
    env.wait_for_counts("default", Duration::from_secs(60), "the burns", |c| {
        c.completed == 6
    })
    .await;
    let mut spans = Vec::new();
    for id in &ids {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(info.attempts, 1, "task {id}");
        let result: serde_json::Value = serde_json::from_slice(&info.result.unwrap()).unwrap();
        spans.push((
            result["started_ms"].as_i64().unwrap(),
            result["finished_ms"].as_i64().unwrap(),
        ));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two instances of the plugin ran at once: {spans:?}"
        );
    }
}

/// Starts a worker on `plugins` with `flags` and returns its log once it
/// exited (it must, refusing a plugin at load).
async fn refused_at_start(env: &Env, plugins: &Path, flags: &[&str]) -> String {
    let mut worker = env.worker(plugins, flags);
    let status = worker.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(1),
        "the worker must refuse to start; log:\n{}",
        worker.log()
    );
    worker.log()
}

/// A plugin reads only the environment values and secrets the operator
/// allowed it by name: naming another plugin's secret in a manifest gets
/// the plugin refused at load, with the flag that would allow it.
#[tokio::test]
async fn secrets_and_env_values_are_given_only_to_the_plugins_allowed_them() {
    let env = Env::start().await;
    let relay = PluginDir::with(&[RELAY_COMPONENT]);
    let log = refused_at_start(&env, relay.path(), &[]).await;
    assert!(
        log.contains("plugin \"relay\" asks for the environment value \"REGION\", which this worker does not allow it to read")
            && log.contains("to allow it, start the worker with --allow-env relay=REGION"),
        "{log}"
    );
    let log = refused_at_start(&env, relay.path(), &["--allow-env", "relay=REGION"]).await;
    assert!(
        log.contains("asks for the secret \"TOKEN\", which this worker does not allow it to read")
            && log.contains("to allow it, start the worker with --allow-secret relay=TOKEN"),
        "{log}"
    );

    // Another plugin naming relay's values in its manifest gets nothing.
    let thief = PluginDir::with(&[]);
    thief.add_file(
        "thief.wasm",
        &crate::forge::with_manifest(RELAY_COMPONENT, |manifest| {
            manifest.name = "thief".into();
            manifest.task_types = vec!["thief:env".into()];
        }),
    );
    let log = refused_at_start(
        &env,
        thief.path(),
        &[
            "--allow-env",
            "relay=REGION",
            "--allow-secret",
            "relay=TOKEN",
        ],
    )
    .await;
    assert!(
        log.contains("plugin \"thief\" asks for the environment value \"REGION\""),
        "{log}"
    );

    let malformed = wasmq(&[
        "worker".into(),
        "--redis".into(),
        env.url(),
        "--allow-secret".into(),
        "TOKEN".into(),
    ]);
    assert_eq!(malformed.status.code(), Some(1));
    assert!(
        stderr(&malformed).contains("--allow-secret \"TOKEN\": expected PLUGIN=NAME"),
        "{}",
        stderr(&malformed)
    );
}

/// A running plugin reports its progress: `task show`, the task's record
/// and so the dashboard and the clients see it while the task runs, and the
/// last report (written when the attempt ends) stays with the task. Its
/// heartbeats renew its lease (the worker's own renewals, with a 30 s
/// lease, come every 10 s: none during the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reports_its_progress_while_it_runs() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[RELAY_COMPONENT]);
    // The relay's manifest asks for an environment value and a secret:
    // the operator allows them, or the plugin is not loaded.
    let grants = [
        "--allow-env",
        "relay=REGION",
        "--allow-secret",
        "relay=TOKEN",
    ];
    let worker = env.worker(plugins.path(), &grants);
    let id = env
        .client
        .enqueue(
            NewTask::new("relay:progress", r#"{"steps":12,"spins":150000000}"#)
                .unwrap()
                .max_retry(0),
        )
        .await
        .unwrap()
        .id;
    let mut seen_running = None;
    let mut expiries: Vec<f64> = Vec::new();
    let mut redis = env.redis_connection().await;
    let started = std::time::Instant::now();
    let done = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the task did not finish: {:?}\n{}",
            env.task("default", &id).await,
            worker.log()
        );
        let info = env.task("default", &id).await.expect("the task is kept");
        match info.state {
            TaskState::Active => {
                if let Some(progress) = info.progress.filter(|p| p.done < Some(100.0)) {
                    seen_running = Some(progress);
                }
                let expiry: Option<f64> = redis::cmd("ZSCORE")
                    .arg("wasmq:{default}:active")
                    .arg(&id)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                expiries.extend(expiry);
            }
            TaskState::Completed | TaskState::Archived => break info,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(done.state, TaskState::Completed, "{:?}", done.last_error);
    let running = seen_running.expect("progress was seen while the task ran");
    assert!(running.done.unwrap() < 100.0, "{running:?}");
    let (first, latest) = (expiries[0], expiries[expiries.len() - 1]);
    assert!(
        latest - first >= 500.0,
        "heartbeats renewed the lease: its expiry moved {} ms",
        latest - first
    );
    let last = done.progress.expect("the last report stays");
    assert_eq!(last.done, Some(100.0));
    assert_eq!(last.note, Some(serde_json::json!({"step": 12})));
    assert_eq!(last.attempt, 1);
    let shown = env.wasmq(&["task", "show", &id]);
    assert!(
        stdout(&shown).contains(r#"progress:   100 {"step":12} (attempt 1"#),
        "{}",
        stdout(&shown)
    );
    // The Python and Node clients read it too.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json; from wasmq import Client; p = Client(sys.argv[1]).task(sys.argv[2], 'default').progress; print(json.dumps([p.done, p.note, p.attempt], separators=(',', ':')))",
            &env.url(),
            &id,
        ])
        .env("PYTHONPATH", repo.join("clients/python/src"))
        .output()
        .expect("python3 runs");
    let node = std::process::Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { Client } from './clients/node/dist/index.js'; const c = await Client.connect(process.argv[1]); const p = (await c.task(process.argv[2], 'default')).progress; console.log(JSON.stringify([p.done, p.note, p.attempt])); await c.close();",
            &env.url(),
            &id,
        ])
        .current_dir(repo)
        .output()
        .expect("node runs");
    for (client, output, expected) in [
        ("python", python, r#"[100.0,{"step":12},1]"#),
        ("node", node, r#"[100,{"step":12},1]"#),
    ] {
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            expected,
            "{client}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
