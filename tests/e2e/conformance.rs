//! The conformance suite: the cases of `tests/conformance/cases.json` (each
//! option, each refusal, batches, look-ups, waiting for results) run with
//! the Rust client (in this process), the Python client (sync and asyncio)
//! and the Node client (child processes running `tests/conformance/runner.*`),
//! each against its own real Redis (one server, or a Redis Cluster whose
//! masters share the case queues) with a real `wasmq worker` running the
//! `echo` and `flaky` plugins. Each runner only reports what it saw; this
//! file judges every report by the cases' expectations, and checks that
//! the messages each client stored agree with the Rust client's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wasmq::Error as BrokerError;
use wasmq::{Client, NewTask, TraceContext};
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, PluginDir, WasmqProcess};

use crate::support::cluster::RedisCluster;
use crate::support::{WASMQ, WORKER_STARTED};
use wasmq::dev::RedisServer;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The cases, parsed.
pub fn cases() -> Value {
    let path = repo().join("tests/conformance/cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("cases.json is readable"))
        .expect("cases.json is JSON")
}

/// The clients the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Rust,
    Python,
    PythonAsync,
    Node,
}

impl Flavour {
    fn name(self) -> &'static str {
        match self {
            Flavour::Rust => "rust",
            Flavour::Python => "python",
            Flavour::PythonAsync => "python-async",
            Flavour::Node => "node",
        }
    }
}

/// TLS material handed to a runner.
#[derive(Debug, Clone, Default)]
pub struct RunnerTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Runs the Python or Node runner against `url` and returns its report.
/// `only` limits the cases run.
pub fn run_child_runner(flavour: Flavour, url: &str, tls: &RunnerTls, only: &[&str]) -> Value {
    let conformance = repo().join("tests/conformance");
    let mut command = match flavour {
        Flavour::Python | Flavour::PythonAsync => {
            let mut command = Command::new("python3");
            command
                .arg(conformance.join("runner.py"))
                .env("PYTHONPATH", repo().join("clients/python/src"));
            command
        }
        Flavour::Node => {
            let mut command = Command::new("node");
            command.arg(conformance.join("runner.mjs"));
            command
        }
        Flavour::Rust => unreachable!("the Rust runner runs in this process"),
    };
    command.arg(url);
    if flavour == Flavour::PythonAsync {
        command.arg("--async");
    }
    for (flag, path) in [
        ("--tls-ca", &tls.ca),
        ("--tls-cert", &tls.cert),
        ("--tls-key", &tls.key),
    ] {
        if let Some(path) = path {
            command.arg(flag).arg(path);
        }
    }
    if !only.is_empty() {
        command.arg("--only").arg(only.join(","));
    }
    let output = command.output().unwrap_or_else(|err| {
        panic!(
            "the {} runner could not start ({err}): run .ci/setup test (python3 with redis-py, node with clients/node's packages)",
            flavour.name()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the {} runner failed ({}):\n{}\n{}",
        flavour.name(),
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "the {} runner printed no report ({err}):\n{stdout}",
            flavour.name()
        )
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn at_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// A Rust task from a case's task spec.
fn rust_task(spec: &Value, now: i64) -> Result<NewTask, BrokerError> {
    let task_type = spec["type"].as_str().unwrap_or_default();
    let mut task = if let Some(text) = spec["payload_json"].as_str() {
        NewTask::new(task_type, text)?
    } else if let Some(n) = spec["payload_string_of"].as_u64() {
        NewTask::from_value(task_type, &"x".repeat(n as usize))?
    } else if let Some(payload) = spec.get("payload") {
        NewTask::from_value(task_type, payload)?
    } else {
        NewTask::new(task_type, "{}")?
    };
    let int = |name: &str| spec.get(name).and_then(Value::as_i64);
    let millis = |name: &str| {
        spec.get(name)
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
    };
    if let Some(queue) = spec["queue"].as_str() {
        task = task.queue(queue);
    }
    if let Some(id) = spec["id"].as_str() {
        task = task.id(id);
    }
    if let Some(delay) = millis("delay_ms") {
        task = task.process_in(delay);
    }
    if let Some(offset) = int("at_offset_ms") {
        task = task.process_at(at_ms(now + offset));
    }
    if let Some(retries) = int("max_retry") {
        task = task.max_retry(u32::try_from(retries).expect("cases that skip rust hold the rest"));
    }
    if let Some(timeout) = millis("timeout_ms") {
        task = task.timeout(timeout);
    }
    if let Some(offset) = int("deadline_offset_ms") {
        task = task.deadline(at_ms(now + offset));
    }
    if let Some(retention) = millis("retention_ms") {
        task = task.retention(retention);
    }
    if let Some(ttl) = millis("unique_ms") {
        task = task.unique(ttl);
    }
    if let Some(traceparent) = spec["traceparent"].as_str() {
        let context = TraceContext::new(traceparent, spec["tracestate"].as_str())
            .map_err(BrokerError::InvalidTask)?;
        task = task.trace(context);
    }
    if let Some(group) = spec["group"].as_str() {
        task = task.group(group);
    }
    if let Some(key) = spec["debounce"].as_str() {
        task = task.debounce(key, millis("delay_ms").unwrap_or_default());
    }
    if let Some(key) = spec["aggregate"].as_str() {
        let max_group = spec["max_group"].as_u64().unwrap_or(100) as u32;
        task = task.aggregate(
            key,
            millis("aggregate_after_ms").unwrap_or_default(),
            max_group,
        );
    }
    Ok(task)
}

fn rust_outcome(outcome: Result<wasmq::Enqueued, BrokerError>) -> Value {
    match outcome {
        Ok(enqueued) => json!({"outcome": enqueued.state.as_str(), "id": enqueued.id}),
        Err(err) => {
            let message = err.to_string();
            let mut seen = match &err {
                BrokerError::DuplicateId { state, .. } => {
                    json!({"outcome": "duplicate_id", "state": state.map(|s| s.as_str())})
                }
                BrokerError::DuplicateUnique { holder, .. } => {
                    json!({"outcome": "duplicate_unique", "holder": holder})
                }
                BrokerError::InvalidTask(_) => json!({"outcome": "invalid_task"}),
                BrokerError::NotReplicated { .. } => json!({"outcome": "not_replicated"}),
                BrokerError::Tls { .. } => json!({"outcome": "tls"}),
                err if err.is_unreachable() => json!({"outcome": "unreachable"}),
                _ => json!({"outcome": "error"}),
            };
            seen["message"] = json!(message);
            seen
        }
    }
}

fn rust_info(info: Option<wasmq::TaskInfo>) -> Value {
    let Some(info) = info else {
        return json!({"found": false});
    };
    let result = info.result.as_deref().map(|bytes| {
        serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
    });
    json!({
        "found": true,
        "state": info.state.as_str(),
        "type": info.message.task_type,
        "queue": info.message.queue,
        "attempts": info.attempts,
        "max_retry": info.message.max_retry,
        "result": result,
        "last_error_kind": info.last_error.as_ref().map(|e| e.kind.as_str()),
        "state_time_ms": info.state_time_ms,
    })
}

/// Runs the cases with the Rust client, as the other runners do.
pub async fn run_rust(client: &Client, only: &[&str]) -> Value {
    let cases = cases();
    let mut report = serde_json::Map::new();
    for case in cases["cases"].as_array().expect("a list of cases") {
        let name = case["name"].as_str().expect("a name");
        let skipped = case["skip"]
            .as_array()
            .is_some_and(|skip| skip.iter().any(|s| s == "rust"));
        if skipped || (!only.is_empty() && !only.contains(&name)) {
            continue;
        }
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        let mut seen_steps = Vec::new();
        for step in case["steps"].as_array().expect("steps") {
            let now = now_ms();
            let resolve = |id: &str, labels: &BTreeMap<String, String>| match id.strip_prefix('$') {
                Some(label) => labels.get(label).cloned().unwrap_or_else(|| id.to_string()),
                None => id.to_string(),
            };
            let mut seen = match step["op"].as_str().unwrap_or_default() {
                "enqueue" => {
                    let outcome = match rust_task(&step["task"], now) {
                        Ok(task) => client.enqueue(task).await,
                        Err(err) => Err(err),
                    };
                    let seen = rust_outcome(outcome);
                    if let (Some(label), Some(id)) = (step["as"].as_str(), seen["id"].as_str()) {
                        labels.insert(label.to_string(), id.to_string());
                    }
                    seen
                }
                "batch" if step.get("count").is_some() => {
                    let spec = &step["task"];
                    let prefix = spec["id_prefix"].as_str().unwrap_or_default();
                    let tasks = (0..step["count"].as_u64().unwrap_or(0))
                        .map(|i| {
                            let mut one = spec.clone();
                            one["id"] = json!(format!("{prefix}{i}"));
                            one["payload"] = match spec["pad_of"].as_u64() {
                                Some(pad) => json!({ "i": i, "pad": "x".repeat(pad as usize) }),
                                None => json!({ "i": i }),
                            };
                            rust_task(&one, now).expect("a valid bulk task")
                        })
                        .collect();
                    let outcomes = client.enqueue_batch(tasks).await;
                    let refused: Vec<Value> = outcomes
                        .iter()
                        .filter(|o| o.is_err())
                        .take(5)
                        .map(|o| rust_outcome(o.clone()))
                        .collect();
                    json!({"accepted": outcomes.iter().filter(|o| o.is_ok()).count(), "refused": refused})
                }
                "batch" => {
                    let mut built = Vec::new();
                    for spec in step["tasks"].as_array().expect("tasks") {
                        built.push(rust_task(spec, now));
                    }
                    let valid: Vec<NewTask> = built
                        .iter()
                        .filter_map(|task| task.as_ref().ok().cloned())
                        .collect();
                    let mut accepted = client.enqueue_batch(valid).await.into_iter();
                    let outcomes: Vec<Value> = built
                        .into_iter()
                        .map(|task| match task {
                            Ok(_) => rust_outcome(accepted.next().expect("one outcome per task")),
                            Err(err) => rust_outcome(Err(err)),
                        })
                        .collect();
                    json!({ "outcomes": outcomes })
                }
                "lookup" => {
                    let id = resolve(step["id"].as_str().unwrap_or_default(), &labels);
                    rust_info(
                        client
                            .task(&id, step["queue"].as_str())
                            .await
                            .expect("a lookup answers"),
                    )
                }
                "wait" => {
                    let id = resolve(step["id"].as_str().unwrap_or_default(), &labels);
                    let queue = step["queue"].as_str();
                    let deadline = Instant::now()
                        + Duration::from_millis(step["timeout_ms"].as_u64().unwrap_or(10_000));
                    loop {
                        let info = client.task(&id, queue).await.expect("a lookup answers");
                        match info {
                            None => break json!({"outcome": "gone"}),
                            Some(info) if info.state == wasmq::TaskState::Completed => {
                                break json!({"outcome": "completed", "result": rust_info(Some(info))["result"]});
                            }
                            Some(info) if info.state == wasmq::TaskState::Archived => {
                                break json!({"outcome": "failed", "error_kind": info.last_error.map(|e| e.kind.as_str())});
                            }
                            Some(_) if Instant::now() >= deadline => {
                                break json!({"outcome": "timeout"});
                            }
                            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                other => json!({"outcome": format!("unknown op {other}")}),
            };
            seen["now_ms"] = json!(now);
            seen_steps.push(seen);
        }
        report.insert(name.to_string(), Value::Array(seen_steps));
    }
    json!({"client": "rust", "cases": report})
}

/// Whether `seen` satisfies `expected`: equal, or for `{"from_now_ms": N,
/// "tolerance_ms": T}` within T of `now + N`; objects are matched field by
/// field (expected null: absent or null), arrays element by element.
fn matches(expected: &Value, seen: &Value, now: i64) -> bool {
    match expected {
        Value::Object(spec) if spec.contains_key("from_now_ms") => {
            let target = now + spec["from_now_ms"].as_i64().unwrap_or(0);
            let tolerance = spec["tolerance_ms"].as_i64().unwrap_or(0);
            seen.as_i64()
                .is_some_and(|value| (value - target).abs() <= tolerance)
        }
        Value::Object(spec) => spec.iter().all(|(key, want)| {
            let got = seen.get(key).unwrap_or(&Value::Null);
            matches(want, got, now)
        }),
        Value::Array(items) => seen.as_array().is_some_and(|got| {
            got.len() == items.len()
                && items
                    .iter()
                    .zip(got)
                    .all(|(want, got)| matches(want, got, now))
        }),
        Value::Number(n) => seen.as_f64() == n.as_f64(),
        other => other == seen,
    }
}

/// The stored message of task `id` in `queue`, read straight from Redis.
async fn stored_message(client: &Client, queue: &str, id: &str) -> Option<Value> {
    let info = client.task(id, Some(queue)).await.ok()??;
    Some(serde_json::to_value(&info.message).expect("a message encodes"))
}

/// Checks a report against the cases: every step's expectations, and the
/// stored message of every task an `enqueue` step accepted. Returns the
/// stored messages (by case and id) and a list of problems.
pub async fn judge(
    report: &Value,
    reader: &Client,
    only: &[&str],
) -> (BTreeMap<String, Value>, Vec<String>) {
    let client_name = report["client"].as_str().unwrap_or("?").to_string();
    let mut problems = Vec::new();
    let mut messages = BTreeMap::new();
    let cases = cases();
    for case in cases["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or_default();
        let language = match client_name.as_str() {
            "python-async" => "python",
            other => other,
        };
        if case["skip"]
            .as_array()
            .is_some_and(|skip| skip.iter().any(|s| s == language))
            || (!only.is_empty() && !only.contains(&name))
        {
            continue;
        }
        let Some(steps_seen) = report["cases"][name].as_array() else {
            problems.push(format!("{client_name}: case {name} was not run"));
            continue;
        };
        for (index, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
            let seen = steps_seen.get(index).unwrap_or(&Value::Null);
            let now = seen["now_ms"].as_i64().unwrap_or(0);
            let mut expected = step["expect"].clone();
            let message_expectation = expected
                .as_object_mut()
                .and_then(|fields| fields.remove("message"));
            if !matches(&expected, seen, now) {
                problems.push(format!(
                    "{client_name}: case {name} step {index} ({}{}): expected {expected}, saw {seen}",
                    step["op"].as_str().unwrap_or_default(),
                    step["label"]
                        .as_str()
                        .map(|label| format!(" {label}"))
                        .unwrap_or_default(),
                ));
            }
            if step["op"] == "enqueue"
                && let (Some(id), Some(queue)) = (
                    seen["id"].as_str(),
                    Some(step["task"]["queue"].as_str().unwrap_or("default")),
                )
            {
                match stored_message(reader, queue, id).await {
                    Some(message) => {
                        if let Some(want) = &message_expectation
                            && !matches(want, &message, now)
                        {
                            problems.push(format!(
                                "{client_name}: case {name} step {index}: stored message {message} does not match {want}"
                            ));
                        }
                        let key = if step["task"]["id"].is_string() {
                            format!("{name}/{id}")
                        } else {
                            format!("{name}/step{index}")
                        };
                        messages.insert(key, message);
                    }
                    None if step["task"]["retention_ms"] == 0 => {}
                    None => problems.push(format!(
                        "{client_name}: case {name} step {index}: task {id} accepted but no message is stored in {queue}"
                    )),
                }
            }
        }
    }
    (messages, problems)
}

/// A stored message with what legitimately differs between runs removed:
/// the enqueue time, the deadline (relative to each run's clock), and
/// generated ids.
fn normalized(message: &Value, generated: bool) -> Value {
    let mut message = message.clone();
    if let Some(fields) = message.as_object_mut() {
        fields.remove("enqueued_at_ms");
        if fields.remove("deadline_ms").is_some() {
            fields.insert("deadline_ms".into(), json!("set"));
        }
        if generated {
            fields.insert("id".into(), json!("generated"));
        }
    }
    message
}

/// Where a flavour runs: one server or a cluster, with a worker serving
/// every case queue.
enum World {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl World {
    fn url(&self) -> String {
        match self {
            World::Single(server) => server.url(),
            World::Cluster(cluster) => cluster.url(),
        }
    }
}

/// Starts a worker serving every case queue, with `extra` arguments;
/// returns once it serves (or has exited).
pub fn start_worker(url: &str, plugins: &Path, extra: &[&str]) -> WasmqProcess {
    let queues: Vec<String> = cases()["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q.as_str().expect("a queue name").to_string())
        .collect();
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .arg("worker")
        .args(["--redis", url])
        .arg("--plugins")
        .arg(plugins)
        .args(["--queues", &queues.join(",")])
        .args(["--concurrency", "20", "--no-scheduler"])
        .args(extra);
    let mut worker = WasmqProcess::spawn(command);
    worker.wait_ready_blocking(WORKER_STARTED, Duration::from_secs(120));
    worker
}

/// Runs every flavour, each on a fresh world, and checks each report and
/// the messages each stored against the Rust client's.
async fn run_suite(flavours: &[Flavour], cluster: bool) {
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    let mut all_problems = Vec::new();
    let mut reference: Option<BTreeMap<String, Value>> = None;
    for &flavour in flavours {
        let world = if cluster {
            World::Cluster(RedisCluster::start())
        } else {
            World::Single(RedisServer::start().expect("redis-server starts"))
        };
        if let World::Cluster(cluster) = &world {
            // The case queues hash to slots on several masters.
            let masters: std::collections::BTreeSet<String> = cases()["queues"]
                .as_array()
                .expect("queues")
                .iter()
                .map(|queue| {
                    cluster.master_of(&format!(
                        "wasmq:{{{}}}:pending",
                        queue.as_str().unwrap_or_default()
                    ))
                })
                .collect();
            assert!(
                masters.len() >= 2,
                "the case queues should span several masters, not {masters:?}"
            );
        }
        let url = world.url();
        let worker = start_worker(&url, plugins.path(), &[]);
        let reader = Client::connect(&url).await.expect("Redis answers");
        let report = match flavour {
            Flavour::Rust => run_rust(&reader, &[]).await,
            other => run_child_runner(other, &url, &RunnerTls::default(), &[]),
        };
        let (messages, problems) = judge(&report, &reader, &[]).await;
        if !problems.is_empty() {
            all_problems.push(format!(
                "{} problem(s) with the {} client (worker log tail: {}):\n  {}",
                problems.len(),
                flavour.name(),
                worker
                    .log()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | "),
                problems.join("\n  ")
            ));
        }
        match &reference {
            None => reference = Some(messages),
            Some(reference) => {
                for (key, message) in &messages {
                    let generated = key.contains("/step");
                    let Some(rust) = reference.get(key) else {
                        continue;
                    };
                    if normalized(message, generated) != normalized(rust, generated) {
                        all_problems.push(format!(
                            "the {} client stored {key} as {message}, the Rust client as {rust}",
                            flavour.name()
                        ));
                    }
                }
            }
        }
        drop(worker);
        drop(world);
    }
    assert!(all_problems.is_empty(), "{}", all_problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_passes_the_cases_on_one_server() {
    run_suite(
        &[
            Flavour::Rust,
            Flavour::Python,
            Flavour::PythonAsync,
            Flavour::Node,
        ],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_passes_the_cases_on_a_cluster() {
    run_suite(&[Flavour::Rust, Flavour::Python, Flavour::Node], true).await;
}

#[test]
fn the_clients_ship_the_hosts_scripts() {
    let status = Command::new(repo().join("clients/sync-scripts"))
        .arg("--check")
        .status()
        .expect("clients/sync-scripts runs");
    assert!(
        status.success(),
        "a client's copy of a script differs from host/src/broker/scripts: run clients/sync-scripts"
    );
    // And the clients send exactly the host's text: the same SHA1.
    let scripts = repo().join("host/src/broker/scripts");
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(scripts.join("prelude.lua")).unwrap(),
        std::fs::read_to_string(scripts.join("enqueue.lua")).unwrap()
    );
    let sha = redis::Script::new(&text).get_hash().to_string();
    let python = Command::new("python3")
        .args(["-c", "import wasmq; print(wasmq.ENQUEUE_SHA)"])
        .env("PYTHONPATH", repo().join("clients/python/src"))
        .output()
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&python.stdout).trim(), sha);
    let node = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { ENQUEUE_SHA } from './clients/node/dist/index.js'; console.log(ENQUEUE_SHA)",
        ])
        .current_dir(repo())
        .output()
        .expect("node runs");
    assert_eq!(
        String::from_utf8_lossy(&node.stdout).trim(),
        sha,
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );

    // The same script text is not enough: the clients must also pass the
    // queue's keys the host passes, in its order (prelude.lua lists them).
    let prelude = std::fs::read_to_string(scripts.join("prelude.lua")).unwrap();
    let mut hosts: Vec<&str> = prelude
        .lines()
        .filter(|line| line.starts_with("-- KEYS["))
        .filter_map(|line| line.split("wasmq:{<queue>}:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(
        hosts.len(),
        21,
        "prelude.lua lists a queue's keys: {hosts:?}"
    );
    // The last four are the workers' flow keys, which enqueue.lua never
    // touches: producers pass the first seventeen (PROTOCOL.md).
    assert_eq!(
        hosts[17..],
        ["parents", "waiting", "children", "flow_outbox"]
    );
    hosts.truncate(17);
    let python = Command::new("python3")
        .args([
            "-c",
            "from wasmq._protocol import QUEUE_PARTS; print(' '.join(QUEUE_PARTS))",
        ])
        .env("PYTHONPATH", repo().join("clients/python/src"))
        .output()
        .expect("python3 runs");
    let node = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { QUEUE_PARTS } from './clients/node/dist/protocol.js'; console.log(QUEUE_PARTS.join(' '))",
        ])
        .current_dir(repo())
        .output()
        .expect("node runs");
    for (client, output) in [("python", python), ("node", node)] {
        let parts = String::from_utf8_lossy(&output.stdout).to_string();
        assert_eq!(
            parts.split_whitespace().collect::<Vec<_>>(),
            hosts,
            "the {client} client's queue keys differ from prelude.lua's: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_node_clients_compiled_output_matches_its_sources() {
    let output = Command::new("node")
        .arg(repo().join("clients/node/scripts/check-dist.mjs"))
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copies a directory's files (not its `node_modules`) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// An enqueue and a look-up with an installed client, against a fresh
/// Redis: what a user's first program does.
const NODE_SMOKE: &str = "import { Client, ENQUEUE_SHA } from 'wasmq';\nconst c = await Client.connect(process.argv[1]);\nconst t = await c.enqueue({ type: 'echo', payload: { installed: true } });\nconst info = await c.task(t.id, 'default');\nconsole.log(ENQUEUE_SHA, info.state);\nawait c.close();";

fn expected_sha() -> String {
    let scripts = repo().join("host/src/broker/scripts");
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(scripts.join("prelude.lua")).unwrap(),
        std::fs::read_to_string(scripts.join("enqueue.lua")).unwrap()
    );
    redis::Script::new(&text).get_hash().to_string()
}

#[test]
fn the_python_client_installs_with_pip_and_enqueues() {
    let redis = RedisServer::start().expect("redis-server starts");
    let target = tempfile::tempdir().unwrap();
    // `pip install ./clients/python`, into a directory of its own (the
    // package's one dependency, redis-py, is already installed).
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(target.path())
        .arg("./clients/python")
        .current_dir(repo())
        .output()
        .expect("pip runs");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert!(target.path().join("wasmq/scripts/enqueue.lua").exists());
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, wasmq\nc = wasmq.Client(sys.argv[1])\nt = c.enqueue('echo', {'installed': True})\nprint(wasmq.ENQUEUE_SHA, c.task(t.id, 'default').state)",
            &redis.url(),
        ])
        .env("PYTHONPATH", target.path())
        .current_dir(target.path())
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("{} pending", expected_sha()),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_node_client_installs_with_npm_and_enqueues() {
    let redis = RedisServer::start().expect("redis-server starts");
    // Two ways a user installs it: from a project holding the repository
    // (`npm install ./clients/node`), and from a project elsewhere
    // (`npm install --install-links /path/to/clients/node`).
    let inside = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("clients/node"),
        &inside.path().join("clients/node"),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let source = repo().join("clients/node").display().to_string();
    for (project, args) in [
        (inside.path(), vec!["install", "./clients/node"]),
        (
            elsewhere.path(),
            vec!["install", "--install-links", source.as_str()],
        ),
    ] {
        std::fs::write(
            project.join("package.json"),
            r#"{"name":"app","version":"1.0.0","private":true,"type":"module"}"#,
        )
        .unwrap();
        let installed = Command::new("npm")
            .args(&args)
            .args(["--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(project)
            .output()
            .expect("npm runs");
        assert!(
            installed.status.success(),
            "npm {args:?}: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let output = Command::new("node")
            .args(["--input-type=module", "-e", NODE_SMOKE, &redis.url()])
            .current_dir(project)
            .output()
            .expect("node runs");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{} pending", expected_sha()),
            "npm {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
