//! Durable writes (`--wait-replicas`): an enqueue returns only once a real
//! replica has it, so killing the master right after loses nothing; with
//! the replica frozen, the enqueue says the write is on the master only;
//! a worker's completions wait for the replica the same way when asked.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmq::Client;
use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::conformance::repo;
use crate::support::sentinel::SentinelSetup;
use crate::support::{WASMQ, WORKER_STARTED, WasmqProcess, stderr, wait_until};

/// Tasks each client enqueues before the master is killed.
const TASKS: usize = 300;

/// Enqueues `TASKS` tasks (ids `<prefix>-<n>`) on `url` with `client`,
/// waiting for `replicas` replicas within `timeout_ms`. Returns what the
/// client printed (`ok` when every task was accepted and replicated).
fn enqueue_with(client: &str, url: &str, prefix: &str, replicas: u32, timeout_ms: u64) -> String {
    let output = match client {
        "cli" => {
            let file = tempfile::NamedTempFile::new().expect("a temporary file");
            let lines: String = (0..TASKS)
                .map(|n| format!("{{\"type\":\"echo\",\"id\":\"{prefix}-{n}\",\"payload\":{{\"n\":{n}}}}}\n"))
                .collect();
            std::fs::write(file.path(), lines).unwrap();
            let output = WasmqProcess::command(Path::new(WASMQ))
                .args(["enqueue", "--file"])
                .arg(file.path())
                .args(["--redis", url])
                .args(["--wait-replicas", &replicas.to_string()])
                .args(["--wait-timeout", &format!("{timeout_ms}ms")])
                .output()
                .expect("wasmq runs");
            return if output.status.success() {
                "ok".into()
            } else {
                stderr(&output)
            };
        }
        "python" => Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import wasmq\nc = wasmq.Client({url:?}, wait_replicas={replicas}, wait_timeout={})\nout = c.enqueue_batch([wasmq.Task('echo', {{'n': n}}, id=f'{prefix}-{{n}}') for n in range({TASKS})])\nbad = [str(o) for o in out if not isinstance(o, wasmq.Enqueued)]\nprint(bad[0] if bad else 'ok')",
                    timeout_ms as f64 / 1000.0
                ),
            ])
            .env("PYTHONPATH", repo().join("clients/python/src"))
            .output(),
        _ => Command::new("node")
            .args([
                "--input-type=module",
                "-e",
                &format!(
                    "import {{ Client }} from './clients/node/dist/index.js';\nconst c = await Client.connect({url:?}, {{ waitReplicas: {replicas}, waitTimeoutMs: {timeout_ms} }});\nconst out = await c.enqueueBatch(Array.from({{ length: {TASKS} }}, (_, n) => ({{ type: 'echo', id: `{prefix}-${{n}}`, payload: {{ n }} }})));\nconst bad = out.filter((o) => o instanceof Error);\nconsole.log(bad.length ? bad[0].message : 'ok');\nawait c.close();"
                ),
            ])
            .current_dir(repo())
            .output(),
    }
    .expect("the client runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_enqueue_survives_its_master_killed_right_after() {
    for client in ["cli", "python", "node"] {
        let mut setup = SentinelSetup::start();
        let url = setup.url();
        let said = enqueue_with(client, &url, client, 1, 5_000);
        assert_eq!(
            said, "ok",
            "{client}: a durable enqueue with a live replica"
        );
        // The enqueue has returned: kill the master at once.
        let old_master = setup.original_master_port();
        setup.kill_master();
        wait_until(
            Duration::from_secs(60),
            "the Sentinels to promote the replica",
            || async { setup.master_port() != old_master },
        )
        .await;
        // The promoted replica answers once the Sentinels agree on it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let reader = loop {
            if let Ok(client) = Client::connect(&url).await
                && client.queue_counts("default").await.is_ok()
            {
                break client;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{client}: the new master did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let counts = reader
            .queue_counts("default")
            .await
            .expect("the new master answers");
        assert_eq!(
            counts.pending as usize, TASKS,
            "{client}: every task acknowledged before the master died is on the promoted replica"
        );
        let first = reader
            .task(&format!("{client}-0"), Some("default"))
            .await
            .expect("a lookup answers");
        assert!(
            first.is_some(),
            "{client}: task {client}-0 is on the new master"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_enqueue_says_so_when_the_replica_does_not_confirm() {
    let setup = SentinelSetup::start();
    let url = setup.url();
    setup.freeze_replica(true);
    for client in ["cli", "python", "node"] {
        let said = enqueue_with(client, &url, &format!("{client}-frozen"), 1, 300);
        assert!(
            said.contains("0 of the 1 replica"),
            "{client}: a durable enqueue with a frozen replica says the write is on the master only: {said}"
        );
        // Without --wait-replicas the same enqueue returns at once.
        let said = enqueue_with(client, &url, &format!("{client}-fast"), 0, 300);
        assert_eq!(said, "ok", "{client}: an enqueue that does not wait");
    }
    setup.freeze_replica(false);
    // The tasks refused as not replicated are on the master all the same.
    let reader = Client::connect(&url).await.expect("Redis answers");
    let counts = reader.queue_counts("default").await.unwrap();
    assert_eq!(counts.pending as usize, 6 * TASKS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_asked_to_waits_for_a_replica_before_a_completion_counts() {
    let setup = SentinelSetup::start();
    let url = setup.url();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .arg("worker")
        .args(["--redis", &url])
        .arg("--plugins")
        .arg(plugins.path())
        .args([
            "--wait-replicas",
            "1",
            "--wait-timeout",
            "300ms",
            "--no-scheduler",
        ]);
    let mut worker = WasmqProcess::spawn(command);
    worker.wait_ready_blocking(WORKER_STARTED, Duration::from_secs(120));
    let client = Client::connect(&url).await.expect("Redis answers");
    let run = |id: &'static str| {
        let client = client.clone();
        async move {
            client
                .enqueue(wasmq::NewTask::new("echo", "{}").unwrap().id(id))
                .await
                .expect("accepted");
            wait_until(
                Duration::from_secs(30),
                &format!("{id} to complete"),
                || async {
                    client
                        .task(id, Some("default"))
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|info| info.state == wasmq::TaskState::Completed)
                },
            )
            .await;
        }
    };
    run("with-replica").await;
    assert!(
        !worker.log().contains("replica(s) asked for"),
        "a live replica confirms completions: {}",
        worker.log()
    );
    setup.freeze_replica(true);
    run("replica-frozen").await;
    wait_until(
        Duration::from_secs(10),
        "the worker to report the shortfall",
        || async {
            worker
                .log()
                .contains("only 0 of the 1 replica(s) asked for")
        },
    )
    .await;
    setup.freeze_replica(false);
}
