use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmq::{NewTask, TaskState};
use wasmq_testkit::*;

use crate::support::{Env, WASMQ, stderr, stdout, wait_until, wasmq};

/// Runs a `wasmq` command on a blocking thread, so the test's producers keep
/// going meanwhile.
async fn wasmq_in_background(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend(["--redis".to_string(), env.url()]);
    tokio::task::spawn_blocking(move || wasmq(&all))
        .await
        .expect("the command runs")
}

/// A `greet` task's result: (greeting, version).
async fn greeting(env: &Env, queue: &str, id: &str) -> (String, String) {
    let info = env.task(queue, id).await.expect("the task is kept");
    assert_eq!(info.state, TaskState::Completed, "task {id}: {info:?}");
    let result: serde_json::Value = serde_json::from_slice(
        info.result
            .as_deref()
            .expect("a completed task has a result"),
    )
    .expect("the result is JSON");
    (
        result["greeting"].as_str().unwrap().to_string(),
        result["version"].as_str().unwrap().to_string(),
    )
}

/// Enqueues one `greet` task and waits for its result.
async fn greet_once(env: &Env, name: &str) -> (String, String) {
    let task = NewTask::new("greet", format!(r#"{{"name":"{name}"}}"#)).unwrap();
    let id = env.client.enqueue(task).await.expect("enqueued").id;
    env.wait_for_state(
        "default",
        &id,
        TaskState::Completed,
        Duration::from_secs(30),
    )
    .await;
    greeting(env, "default", &id).await
}

fn assert_success(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Under a continuous stream of tasks, v2 is deployed to two workers and
/// then rolled back: no task fails, every result comes whole from one
/// version, each command returns once both workers switched, and every task
/// enqueued after it returned runs on the version it put in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_and_rollback_under_a_stream_of_tasks_fail_no_task() {
    let env = Env::start().await;
    let _workers = [
        env.bare_worker(&["--concurrency", "8"]),
        env.bare_worker(&["--concurrency", "8"]),
    ];
    env.wait_for_workers(2).await;

    let first =
        assert_success(&wasmq_in_background(&env, &["plugin", "deploy", GREETER_COMPONENT]).await);
    assert!(first.contains("deployed greeter@0.1.0"), "{first}");
    assert!(first.contains("2 of 2 worker(s) took it"), "{first}");

    // A producer: a task every 5 ms, each running 30 ms, so some are
    // always in flight when the version changes.
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = {
        let (client, ids, stop) = (env.client.clone(), ids.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let task = NewTask::new("greet", format!(r#"{{"name":"n{n}","ms":30}}"#)).unwrap();
                let id = client.enqueue(task).await.expect("enqueued").id;
                ids.lock().unwrap().push(id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let enqueued_so_far = || ids.lock().unwrap().len();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let next = assert_success(
        &wasmq_in_background(&env, &["plugin", "deploy", GREETER_NEXT_COMPONENT]).await,
    );
    let v2_from = enqueued_so_far();
    assert!(next.contains("deployed greeter@0.2.0"), "{next}");
    assert!(next.contains("2 of 2 worker(s) took it"), "{next}");
    println!("deploy: {next}");

    tokio::time::sleep(Duration::from_millis(800)).await;
    let rollback_started = enqueued_so_far();
    let back = assert_success(&wasmq_in_background(&env, &["plugin", "rollback", "greeter"]).await);
    let v1_from = enqueued_so_far();
    assert!(back.contains("\"greeter\" rolled back to 0.1.0"), "{back}");
    assert!(back.contains("2 of 2 worker(s) took it"), "{back}");
    println!("rollback: {back}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    producer.await.unwrap();
    let ids = ids.lock().unwrap().clone();
    assert!(
        v1_from + 20 < ids.len(),
        "too few tasks after the rollback: {}",
        ids.len()
    );

    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "every task to complete",
        |counts| counts.completed == ids.len() as u64,
    )
    .await;
    let counts = env.counts("default").await;
    assert_eq!(
        (counts.retry, counts.archived),
        (0, 0),
        "no task may fail: {counts:?}"
    );
    let mut versions = std::collections::BTreeMap::new();
    for (n, id) in ids.iter().enumerate() {
        let info = env.task("default", id).await.unwrap();
        assert_eq!(
            info.attempts, 1,
            "task {n} failed an attempt: {:?}",
            info.last_error
        );
        let (greeting, version) = greeting(&env, "default", id).await;
        // One version made the whole result.
        let expected = match version.as_str() {
            "0.1.0" => format!("hello, n{n}"),
            "0.2.0" => format!("good day, n{n}"),
            other => panic!("task {n} ran on an unknown version {other}"),
        };
        assert_eq!(greeting, expected, "task {n}");
        if (v2_from..rollback_started).contains(&n) {
            assert_eq!(
                version, "0.2.0",
                "task {n} was enqueued after the deploy returned"
            );
        }
        if n >= v1_from {
            assert_eq!(
                version, "0.1.0",
                "task {n} was enqueued after the rollback returned"
            );
        }
        *versions.entry(version).or_insert(0) += 1;
    }
    println!("tasks per version: {versions:?}");

    let listed = assert_success(&env.wasmq(&["plugin", "ls"]));
    let row = listed
        .lines()
        .find(|line| line.starts_with("greeter"))
        .expect(&listed);
    assert!(
        row.contains("0.1.0") && row.contains("greet") && row.contains("2 running it"),
        "{listed}"
    );
    assert!(row.contains("rollback"), "{listed}");
    let history = assert_success(&env.wasmq(&["plugin", "history", "greeter"]));
    let actions: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert_eq!(actions, ["rollback", "deploy", "deploy"], "{history}");
}

/// A worker started after a deploy serves the deployed version, even over
/// an older copy in its own plugin directory.
#[tokio::test]
async fn a_worker_started_after_a_deploy_serves_the_deployed_version() {
    let env = Env::start().await;
    let deployed = assert_success(&env.wasmq(&["plugin", "deploy", GREETER_NEXT_COMPONENT]));
    assert!(deployed.contains("no worker is running"), "{deployed}");

    let local = PluginDir::with(&[GREETER_COMPONENT, ECHO_COMPONENT]);
    let _worker = env.worker(local.path(), &[]);
    assert_eq!(
        greet_once(&env, "late").await,
        ("good day, late".to_string(), "0.2.0".to_string())
    );

    // Removed from the registry, the worker falls back to its own copy.
    let removed = assert_success(&env.wasmq(&["plugin", "rm", "greeter"]));
    assert!(removed.contains("1 of 1 worker(s) took it"), "{removed}");
    assert_eq!(
        greet_once(&env, "again").await,
        ("hello, again".to_string(), "0.1.0".to_string())
    );
}

/// A bad deploy is refused with the reason, and the old version keeps
/// serving; a version a worker refuses is reported by the deploy and by
/// `plugin ls`, and that worker keeps what it ran.
#[tokio::test]
async fn a_bad_deploy_is_refused_and_the_old_version_keeps_serving() {
    let env = Env::start().await;
    let _worker = env.bare_worker(&[
        "--memory",
        "8MiB",
        "--max-memory",
        "16MiB",
        "--allow-env",
        "relay=REGION",
        "--allow-secret",
        "relay=TOKEN",
    ]);
    env.wait_for_workers(1).await;
    assert_success(&env.wasmq(&["plugin", "deploy", GREETER_COMPONENT]));

    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("greeter.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho not a component\n").unwrap();
    let refused = env.wasmq(&["plugin", "deploy", not_wasm.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not a WebAssembly file"),
        "{}",
        stderr(&refused)
    );

    let wrong_world = env.wasmq(&["plugin", "deploy", OLD_WORLD_COMPONENT]);
    assert!(!wrong_world.status.success());
    assert!(
        stderr(&wrong_world).contains("but this host speaks wasmq:plugin@0.1.0"),
        "the error names the world: {}",
        stderr(&wrong_world)
    );

    // Fine here, but over the worker's memory ceiling: the worker refuses it.
    let over = env.wasmq(&["plugin", "deploy", RELAY_COMPONENT]);
    assert!(!over.status.success(), "{}", stdout(&over));
    assert!(
        stdout(&over).contains("0 of 1 worker(s) took it"),
        "{}",
        stdout(&over)
    );
    assert!(stdout(&over).contains("refused by"), "{}", stdout(&over));
    assert!(
        stdout(&over).contains("16777216 bytes (this worker's max-memory ceiling)"),
        "the refusal names the ceiling: {}",
        stdout(&over)
    );
    assert!(
        stderr(&over).contains("1 worker(s) refused it and keep running the previous version"),
        "{}",
        stderr(&over)
    );
    let listed = assert_success(&env.wasmq(&["plugin", "ls"]));
    let relay = listed
        .lines()
        .find(|line| line.starts_with("relay"))
        .expect(&listed);
    assert!(relay.contains("1 refused it"), "{listed}");
    let greeter = listed
        .lines()
        .find(|line| line.starts_with("greeter"))
        .expect(&listed);
    assert!(
        greeter.contains("0.1.0") && greeter.contains("1 running it"),
        "{listed}"
    );

    assert_eq!(
        greet_once(&env, "still").await,
        ("hello, still".to_string(), "0.1.0".to_string())
    );
}

/// `wasmq new plugin` makes a crate that builds as it is; deployed, it runs
/// tasks; removed, its tasks wait in retry for a plugin to handle them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_plugin_builds_deploys_and_runs() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("resize");
    let created = wasmq(&[
        "new".into(),
        "plugin".into(),
        "resize".into(),
        "--dir".into(),
        crate_dir.display().to_string(),
    ]);
    assert!(
        stdout(&created).contains("created plugin \"resize\""),
        "{}",
        stderr(&created)
    );
    let again = wasmq(&[
        "new".into(),
        "plugin".into(),
        "resize".into(),
        "--dir".into(),
        crate_dir.display().to_string(),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    // Built the way its README says, into a target directory kept between
    // runs so that its dependencies are compiled once.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scaffold-test");
    let build = tokio::task::spawn_blocking({
        let crate_dir = crate_dir.clone();
        move || {
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
                .current_dir(&crate_dir)
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .expect("cargo runs")
        }
    })
    .await
    .unwrap();
    assert!(
        build.status.success(),
        "the scaffold does not build: {}",
        stderr(&build)
    );
    let component = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/scaffold-test/wasm32-wasip2/release/resize.wasm");

    let _worker = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    let deployed = assert_success(&env.wasmq(&["plugin", "deploy", component.to_str().unwrap()]));
    assert!(deployed.contains("deployed resize@0.1.0"), "{deployed}");
    let id = stdout(&env.wasmq(&["enqueue", "resize", r#"{"name":"world"}"#]));
    let info = env
        .wait_for_state(
            "default",
            &id,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let result: serde_json::Value =
        serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"greeting": "hello, world", "version": "0.1.0"})
    );

    assert_success(&env.wasmq(&["plugin", "rm", "resize"]));
    let id = stdout(&env.wasmq(&["enqueue", "resize", r#"{"name":"again"}"#]));
    wait_until(
        Duration::from_secs(30),
        "the task to wait in retry",
        || async {
            env.task("default", &id).await.is_some_and(|info| {
                info.state == TaskState::Retry
                    && info.last_error.is_some_and(|error| {
                        error
                            .message
                            .contains("no plugin handles task type \"resize\"")
                    })
            })
        },
    )
    .await;
}

/// `wasmq dev` reloads a plugin when its file changes, without a restart;
/// a broken file leaves the plugin it replaced serving.
#[tokio::test]
async fn dev_reloads_a_plugin_when_its_file_changes() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[GREETER_COMPONENT]);
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .arg("dev")
        .args(["--redis", &env.url(), "--no-dashboard", "--plugins"])
        .arg(plugins.path());
    let dev = WasmqProcess::spawn(command);
    dev.wait_for_log("worker started", Duration::from_secs(30))
        .await;
    assert_eq!(greet_once(&env, "a").await.1, "0.1.0");

    let file = plugins.path().join("greeter.wasm");
    std::fs::write(&file, b"half a component").unwrap();
    dev.wait_for_log("the changed plugin was refused", Duration::from_secs(30))
        .await;
    assert_eq!(
        greet_once(&env, "b").await.1,
        "0.1.0",
        "the old version keeps serving"
    );

    std::fs::copy(GREETER_NEXT_COMPONENT, &file).unwrap();
    dev.wait_for_log("plugin reloaded", Duration::from_secs(30))
        .await;
    assert_eq!(
        greet_once(&env, "c").await,
        ("good day, c".to_string(), "0.2.0".to_string())
    );
    assert_eq!(dev.log().matches("worker started").count(), 1, "no restart");
}

fn write_component(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// Puts a component into the registry as `name`'s current version without
/// any check, as a registry written before deploys were checked holds it.
async fn put_unchecked(env: &Env, name: &str, bytes: &[u8]) {
    let digest = digest_of(bytes);
    let mut redis = env.redis_connection().await;
    let () = redis::cmd("SET")
        .arg(format!("wasmq:{{plugins}}:blob:{digest}"))
        .arg(bytes)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg("wasmq:{plugins}:current")
        .arg(name)
        .arg(&digest)
        .query_async(&mut redis)
        .await
        .unwrap();
}

/// Runs one task and waits for it to end; returns its info.
async fn run_task(env: &Env, task_type: &str, payload: &str) -> wasmq::TaskInfo {
    let task = NewTask::new(task_type, payload.to_string()).unwrap();
    let id = env.client.enqueue(task).await.expect("enqueued").id;
    env.wait_for_state(
        "default",
        &id,
        TaskState::Completed,
        Duration::from_secs(30),
    )
    .await;
    env.task("default", &id).await.expect("the task is kept")
}

/// A deploy that any check refuses leaves the registry as it was: one
/// claiming a task type another deployed plugin handles, and one taking a
/// name held by a different plugin (other task types). `--replace` lets
/// the second through, saying what it replaces.
#[tokio::test]
async fn a_refused_deploy_leaves_the_registry_as_it_was() {
    let env = Env::start().await;
    assert_success(&env.wasmq(&["plugin", "deploy", GREETER_COMPONENT]));
    let greeter = digest_of(&std::fs::read(GREETER_COMPONENT).unwrap());
    let dir = tempfile::tempdir().unwrap();

    let claimer = write_component(
        dir.path(),
        "claimer.wasm",
        &crate::forge::with_manifest(ECHO_COMPONENT, |manifest| {
            manifest.name = "claimer".into();
            manifest.task_types = vec!["greet".into()];
        }),
    );
    let refused = env.wasmq(&["plugin", "deploy", &claimer]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused)
            .contains("task type \"greet\" is handled by the deployed plugin \"greeter\""),
        "{}",
        stderr(&refused)
    );

    let squatter = write_component(
        dir.path(),
        "squatter.wasm",
        &crate::forge::with_manifest(ECHO_COMPONENT, |manifest| {
            manifest.name = "greeter".into();
        }),
    );
    let held = env.wasmq(&["plugin", "deploy", &squatter]);
    assert!(!held.status.success(), "{}", stdout(&held));
    assert!(
        stderr(&held).contains(
            "the name \"greeter\" belongs to another plugin, with task types greet; this component has task types echo: nothing was deployed"
        ),
        "{}",
        stderr(&held)
    );

    let current = env.deployed_plugins().await;
    assert_eq!(
        current.into_iter().collect::<Vec<_>>(),
        [("greeter".to_string(), greeter.clone())],
        "the refused deploys changed nothing"
    );
    assert!(
        !env.wasmq(&["plugin", "history", "claimer"])
            .status
            .success()
    );
    let history = assert_success(&env.wasmq(&["plugin", "history", "greeter"]));
    assert_eq!(history.lines().count(), 2, "one deploy: {history}");
    // The refused components' bytes were stored before the checks, and
    // deleted again: only the deployed one's copy is left.
    let mut redis = env.redis_connection().await;
    let copies: Vec<String> = redis::cmd("KEYS")
        .arg("wasmq:{blob:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].contains(&greeter), "{copies:?}");

    let replaced = assert_success(&env.wasmq(&["plugin", "deploy", "--replace", &squatter]));
    assert!(
        replaced.contains("replaces the plugin named \"greeter\" with task types greet"),
        "{replaced}"
    );
}

/// A registry holding plugins that conflict (written before deploys were
/// checked) does not stop a worker: it serves every deployed plugin it
/// can, reports the one it refused, and serves that one as soon as the
/// conflict is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_every_deployed_plugin_it_can() {
    let env = Env::start().await;
    assert_success(&env.wasmq(&["plugin", "deploy", GREETER_COMPONENT]));
    assert_success(&env.wasmq(&["plugin", "deploy", ECHO_COMPONENT]));
    let squat = crate::forge::with_manifest(GREETER_NEXT_COMPONENT, |manifest| {
        manifest.name = "squat".into();
    });
    put_unchecked(&env, "squat", &squat).await;

    let _worker = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    assert_eq!(
        greet_once(&env, "first").await,
        ("hello, first".to_string(), "0.1.0".to_string())
    );
    run_task(&env, "echo", r#"{"x":1}"#).await;
    wait_until(
        Duration::from_secs(30),
        "plugin ls to report the refused plugin",
        || async {
            let listed = stdout(&env.wasmq(&["plugin", "ls"]));
            listed
                .lines()
                .any(|line| line.starts_with("squat") && line.contains("1 refused it"))
        },
    )
    .await;
    let listed = assert_success(&env.wasmq(&["plugin", "ls", "--json"]));
    assert!(
        listed
            .contains("task type \\\"greet\\\" is already handled on this worker by greeter@0.1.0"),
        "{listed}"
    );

    let removed = assert_success(&env.wasmq(&["plugin", "rm", "greeter"]));
    assert!(removed.contains("1 of 1 worker(s) took it"), "{removed}");
    assert_eq!(
        greet_once(&env, "then").await,
        ("good day, then".to_string(), "0.2.0".to_string()),
        "with the offender removed, the refused plugin serves"
    );
}

/// A name belongs to one plugin on a worker too: two different plugins of
/// one name in its directory stop it at start, and a deployed plugin whose
/// name a different local plugin holds is refused there and reported.
#[tokio::test]
async fn a_worker_refuses_a_second_plugin_of_a_name() {
    let env = Env::start().await;
    let squatter = crate::forge::with_manifest(ECHO_COMPONENT, |manifest| {
        manifest.name = "greeter".into();
    });
    let both = PluginDir::with(&[GREETER_COMPONENT]);
    both.add_file("squatter.wasm", &squatter);
    let mut worker = env.worker(both.path(), &[]);
    let status = worker.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", worker.log());
    assert!(
        worker
            .log()
            .contains("two different plugins are named \"greeter\""),
        "{}",
        worker.log()
    );

    let local = PluginDir::with(&[]);
    local.add_file("squatter.wasm", &squatter);
    let _worker = env.worker(local.path(), &[]);
    env.wait_for_workers(1).await;
    let deployed = env.wasmq(&["plugin", "deploy", GREETER_COMPONENT]);
    assert!(!deployed.status.success(), "{}", stdout(&deployed));
    assert!(
        stdout(&deployed).contains("the name \"greeter\" is held on this worker by another plugin"),
        "{}",
        stdout(&deployed)
    );
    run_task(&env, "echo", r#"{"x":1}"#).await;
}

/// A plugin's kv data belongs to its identity (name and task types): a
/// different plugin taking the name with `--replace` starts with an empty
/// store instead of reading the one it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_stays_with_the_plugin_that_wrote_it() {
    let env = Env::start().await;
    let _worker = env.bare_worker(&[
        "--allow-env",
        "relay=REGION",
        "--allow-secret",
        "relay=TOKEN",
    ]);
    env.wait_for_workers(1).await;
    assert_success(&env.wasmq(&["plugin", "deploy", RELAY_COMPONENT]));
    let count = |info: wasmq::TaskInfo| -> i64 {
        let result: serde_json::Value =
            serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
        result["count"].as_i64().unwrap()
    };
    for expected in 1..=2 {
        let info = run_task(&env, "relay:count", r#"{"key":"k"}"#).await;
        assert_eq!(count(info), expected);
    }

    let dir = tempfile::tempdir().unwrap();
    let other = write_component(
        dir.path(),
        "other.wasm",
        &crate::forge::with_manifest(RELAY_COMPONENT, |manifest| {
            manifest.version = "9.0.0".into();
            manifest.task_types.push("relay:extra".into());
        }),
    );
    let held = env.wasmq(&["plugin", "deploy", &other]);
    assert!(!held.status.success(), "{}", stdout(&held));
    assert_success(&env.wasmq(&["plugin", "deploy", "--replace", &other]));
    let info = run_task(&env, "relay:count", r#"{"key":"k"}"#).await;
    assert_eq!(
        count(info),
        1,
        "the replacing plugin starts with its own store"
    );
}

/// Compile work is bounded: a component with a function over the size
/// limit, and one whose compile outlasts the budget, are refused at deploy
/// with the reason and change nothing; a worker refuses such a deployed
/// component, reports why, and serves the others.
#[tokio::test]
async fn compile_cost_is_bounded_and_reported() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let huge = crate::forge::huge_function_component(100_000);
    let huge_file = write_component(dir.path(), "huge.wasm", &huge);
    let refused = env.wasmq(&[
        "plugin",
        "deploy",
        "--max-function-size",
        "64KiB",
        &huge_file,
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "function 0 of core module 0 is 100000 bytes, over this worker's limit of 65536 bytes per function (its max-function-size)"
        ),
        "{}",
        stderr(&refused)
    );
    let slow = env.wasmq(&[
        "plugin",
        "deploy",
        "--no-cache",
        "--compile-timeout",
        "1ms",
        GREETER_COMPONENT,
    ]);
    assert!(!slow.status.success());
    assert!(
        stderr(&slow)
            .contains("took longer than this worker's budget of 1ms (its compile-timeout)"),
        "{}",
        stderr(&slow)
    );
    assert!(env.deployed_plugins().await.is_empty());

    assert_success(&env.wasmq(&["plugin", "deploy", GREETER_COMPONENT]));
    put_unchecked(&env, "huge", &huge).await;
    let _worker = env.bare_worker(&["--max-function-size", "64KiB"]);
    env.wait_for_workers(1).await;
    assert_eq!(
        greet_once(&env, "beside").await,
        ("hello, beside".to_string(), "0.1.0".to_string())
    );
    wait_until(
        Duration::from_secs(30),
        "plugin ls to report the refused plugin",
        || async {
            let listed = stdout(&env.wasmq(&["plugin", "ls", "--json"]));
            listed.contains("over this worker's limit of 65536 bytes per function")
        },
    )
    .await;
}

/// A registry entry whose hash is not what wasmq writes (a Redis anyone can
/// write, say: here a non-ASCII string cut mid-character at 12 bytes) is
/// listed as it is; `plugin ls` does not panic, and a worker started beside
/// it serves.
#[tokio::test]
async fn a_stored_hash_wasmq_did_not_write_is_listed_without_a_panic() {
    let env = Env::start().await;
    let mut redis = env.redis_connection().await;
    let odd = "aéééééé";
    let _: i64 = redis::cmd("HSET")
        .arg("wasmq:{plugins}:current")
        .arg("ghost")
        .arg(odd)
        .query_async(&mut redis)
        .await
        .unwrap();
    let listed = assert_success(&env.wasmq(&["plugin", "ls"]));
    assert!(listed.contains(odd), "{listed}");
    let _worker = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    let listed = assert_success(&env.wasmq(&["plugin", "ls"]));
    assert!(listed.contains("ghost"), "{listed}");
}
