//! Plugins written in Python and JavaScript, built with the real toolchains
//! by `wasmq plugin build`, run by a real `wasmq worker`: results, retries,
//! archives, bad payloads, tagged logs and printing, kv, follow-ups and
//! HTTP under their grants; hostile ones failing only their own tasks; a
//! new Python version deployed while tasks flow.

use std::path::Path;
use std::time::Duration;

use wasmq::{FailureKind, NewTask, TaskInfo, TaskState};
use wasmq_testkit::polyglot::{self, JS_EXAMPLE, JS_HOSTILE, PYTHON_EXAMPLE, PYTHON_HOSTILE};
use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::security::serve_http;
use crate::support::{Env, WASMQ, stdout, wait_until};

/// The component of a plugin under plugins/, built once per change.
fn built(plugin: &str) -> String {
    polyglot::component(plugin, Path::new(WASMQ))
        .display()
        .to_string()
}

/// The differences between the two example plugins.
struct Language {
    /// Task-type prefix (`py`, `js`).
    prefix: &'static str,
    /// The example plugin's name.
    plugin: &'static str,
    /// The example's directory under plugins/.
    example: &'static str,
    /// What the wall clock reads without the `clocks` capability.
    fixed_time: f64,
}

const PYTHON: Language = Language {
    prefix: "py",
    plugin: "py-example",
    example: PYTHON_EXAMPLE,
    fixed_time: 946_684_800.0,
};

const JS: Language = Language {
    prefix: "js",
    plugin: "js-example",
    example: JS_EXAMPLE,
    fixed_time: 946_684_800_000.0,
};

/// Enqueues one task and waits until it is completed or archived.
async fn run(env: &Env, task_type: &str, payload: &str, max_retry: u32) -> TaskInfo {
    let id = env
        .client
        .enqueue(
            NewTask::new(task_type, payload)
                .unwrap()
                .max_retry(max_retry),
        )
        .await
        .unwrap()
        .id;
    wait_until(
        Duration::from_secs(90),
        &format!("{task_type} task {id} to end"),
        || async {
            env.task("default", &id).await.is_some_and(|info| {
                matches!(info.state, TaskState::Completed | TaskState::Archived)
            })
        },
    )
    .await;
    env.task("default", &id).await.unwrap()
}

fn result(info: &TaskInfo) -> serde_json::Value {
    assert_eq!(
        info.state,
        TaskState::Completed,
        "{}: {:?}",
        info.message.task_type,
        info.last_error
    );
    serde_json::from_slice(info.result.as_deref().unwrap()).unwrap()
}

fn failure(info: &TaskInfo) -> (FailureKind, String) {
    assert_eq!(
        info.state,
        TaskState::Archived,
        "{}",
        info.message.task_type
    );
    let error = info.last_error.clone().unwrap();
    (error.kind, error.message)
}

/// A line of the worker's log that contains every one of `needles`.
fn log_line(log: &str, needles: &[&str]) -> String {
    log.lines()
        .find(|line| needles.iter().all(|needle| line.contains(needle)))
        .unwrap_or_else(|| panic!("no log line with {needles:?} in:\n{log}"))
        .to_string()
}

/// One example plugin through a real worker: every task type.
async fn end_to_end(language: &Language) {
    let component = built(language.example);
    let env = Env::start().await;
    let plugins = PluginDir::with(&[&component, ECHO_COMPONENT]);
    let port = serve_http();
    let worker = env.worker(
        plugins.path(),
        &["--no-scheduler", "--retry-delay", "200ms"],
    );
    let p = language.prefix;
    let ty = |name: &str| format!("{p}:{name}");

    // A result.
    let echoed = run(&env, &ty("echo"), r#"{"a":[1,2,{"b":null}]}"#, 0).await;
    assert_eq!(
        result(&echoed),
        serde_json::json!({"a": [1, 2, {"b": null}]})
    );

    // A log line, tagged with the plugin and the task.
    let greeted = run(&env, &ty("greet"), r#"{"name":"ann"}"#, 0).await;
    assert_eq!(
        result(&greeted),
        serde_json::json!({"greeting": "hello, ann"})
    );
    let line = log_line(&worker.log(), &["greeting ann on attempt 1"]);
    for tag in [
        format!("plugin=\"{}\"", language.plugin),
        format!("task_id=\"{}\"", greeted.message.id),
        format!("task_type=\"{p}:greet\""),
    ] {
        assert!(line.contains(&tag), "{tag} missing: {line}");
    }

    // give_up archives at once; a payload that does not decode is a bad
    // payload, archived at once.
    let (kind, message) = failure(&run(&env, &ty("greet"), r#"{"name":""}"#, 5).await);
    assert_eq!(kind, FailureKind::GaveUp);
    assert!(message.contains("an empty name"), "{message}");
    let bad = run(&env, &ty("greet"), r#"[1,2,3]"#, 5).await;
    assert_eq!(bad.attempts, 1);
    assert_eq!(
        failure(&bad).0,
        FailureKind::BadPayload,
        "{:?}",
        bad.last_error
    );

    // retry: retried with backoff until it succeeds...
    let flaky = run(&env, &ty("flaky"), r#"{"succeed_on":3}"#, 5).await;
    assert_eq!(result(&flaky), serde_json::json!({"attempts": 3}));
    assert_eq!(flaky.attempts, 3);
    // ... or archived once its retries are used up, with its message.
    let spent = run(&env, &ty("flaky"), r#"{"succeed_on":9}"#, 1).await;
    let (kind, message) = failure(&spent);
    assert_eq!((kind, spent.attempts), (FailureKind::HandlerError, 2));
    assert!(message.contains("flaky: attempt 2 of 9"), "{message}");

    // kv under its grant: the plugin's own store, kept across tasks.
    for expected in 1..=2 {
        let counted = result(&run(&env, &ty("count"), r#"{"key":"hits"}"#, 0).await);
        assert_eq!(counted["count"], expected, "{counted}");
    }

    // enqueue under its grant: follow-ups that run.
    let fanned = result(&run(&env, &ty("fanout"), r#"{"n":2}"#, 0).await);
    let ids = fanned["enqueued"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2, "{fanned}");
    for id in ids {
        let follow_up = env
            .wait_for_state(
                "default",
                id.as_str().unwrap(),
                TaskState::Completed,
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(follow_up.message.task_type, ty("echo"));
    }

    // A flow started by the plugin: its parent, in the same plugin, gets
    // its children's results.
    let started = result(&run(&env, &ty("flow"), r#"{"n":2}"#, 0).await);
    let root = started["root"].as_str().unwrap().to_string();
    let gathered = env
        .wait_for_state(
            "default",
            &root,
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        result(&gathered),
        serde_json::json!({"children": [{"i": 0}, {"i": 1}]})
    );

    // Children the plugin adds to its own running task: it runs again once
    // they ended, with their results, the wait counting no attempt.
    let split = run(&env, &ty("split"), r#"{"n":2}"#, 0).await;
    assert_eq!(
        result(&split),
        serde_json::json!({"children": [{"i": 0}, {"i": 1}]})
    );
    assert_eq!(split.attempts, 1);

    // Progress: the last report stays with the task.
    let reported = run(&env, &ty("progress"), "{}", 0).await;
    let last = reported.progress.expect("the last report is kept");
    assert_eq!(
        (last.done, last.note),
        (Some(100.0), Some(serde_json::json!({"step": "done"})))
    );

    // HTTP to the allowed loopback host, and refused to another.
    let fetched = result(
        &run(
            &env,
            &ty("fetch"),
            &format!(r#"{{"url":"http://127.0.0.1:{port}/small"}}"#),
            0,
        )
        .await,
    );
    assert_eq!(
        (fetched["status"].as_u64(), fetched["body"].as_str()),
        (Some(200), Some("hello, relay"))
    );
    let refused = run(
        &env,
        &ty("fetch"),
        &format!(r#"{{"url":"http://localhost:{port}/small"}}"#),
        3,
    )
    .await;
    let (kind, message) = failure(&refused);
    assert_eq!(kind, FailureKind::CapabilityDenied, "{message}");
    assert!(message.contains("HTTP to localhost"), "{message}");

    // stdout and stderr go to the log, tagged with the task.
    let printed = run(&env, &ty("print"), "{}", 0).await;
    result(&printed);
    let id = &printed.message.id;
    let log = worker.log();
    let out = log_line(&log, &[&format!("printed by task {id}")]);
    assert!(
        out.contains("stream=\"stdout\"")
            && out.contains(&format!("plugin=\"{}\"", language.plugin)),
        "{out}"
    );
    let err = log_line(&log, &[&format!("warned by task {id}")]);
    assert!(
        err.contains("stream=\"stderr\"") && err.contains("WARN"),
        "{err}"
    );

    // Without the clocks and random capabilities: the fixed clock, and
    // randomness seeded by the task id.
    let seen = result(&run(&env, &ty("env"), "{}", 0).await);
    assert_eq!(seen["time"].as_f64(), Some(language.fixed_time), "{seen}");
    let random = seen["random"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&random), "{seen}");

    // The Rust plugin beside it served all along.
    result(&run(&env, "echo", r#"{"from":"rust"}"#, 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_runs_tasks_end_to_end() {
    end_to_end(&PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_runs_tasks_end_to_end() {
    end_to_end(&JS).await;
}

/// How a hostile task must end.
struct Misbehaviour {
    task_type: &'static str,
    kind: FailureKind,
    /// Part of the error message.
    message: &'static str,
}

/// Each hostile task type beside the Rust echo plugin in one worker: each
/// fails with its class, echo tasks keep completing, the worker lives.
async fn hostile(plugin: &str, cases: &[Misbehaviour]) {
    let component = built(plugin);
    let env = Env::start().await;
    let plugins = PluginDir::with(&[&component, ECHO_COMPONENT]);
    let worker = env.worker(plugins.path(), &["--no-scheduler", "--concurrency", "4"]);
    let echoes = |n: usize| {
        (0..n)
            .map(|i| NewTask::new("echo", format!(r#"{{"i":{i}}}"#)).unwrap())
            .collect::<Vec<_>>()
    };
    let mut ids = Vec::new();
    for case in cases {
        ids.push(
            env.client
                .enqueue(NewTask::new(case.task_type, "{}").unwrap().max_retry(0))
                .await
                .unwrap()
                .id,
        );
        for outcome in env.client.enqueue_batch(echoes(10)).await {
            outcome.unwrap();
        }
    }
    let echoed = 10 * cases.len() as u64;
    env.wait_for_counts(
        "default",
        Duration::from_secs(240),
        "every hostile task to end and every echo to complete",
        |c| c.archived == cases.len() as u64 && c.completed == echoed,
    )
    .await;
    for (case, id) in cases.iter().zip(&ids) {
        let info = env.task("default", id).await.unwrap();
        let (kind, message) = failure(&info);
        assert_eq!(kind, case.kind, "{}: {message}", case.task_type);
        assert!(
            message.contains(case.message),
            "{}: {message}",
            case.task_type
        );
        assert!(message.len() <= 8 * 1024, "{}", case.task_type);
    }
    // The worker lives and serves.
    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(
        unsafe { libc::kill(worker.pid(), 0) },
        0,
        "{}",
        worker.log()
    );
    for outcome in env.client.enqueue_batch(echoes(10)).await {
        outcome.unwrap();
    }
    env.wait_for_counts("default", Duration::from_secs(30), "more echoes", |c| {
        c.completed == echoed + 10
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_plugin_fails_only_its_own_tasks() {
    hostile(
        PYTHON_HOSTILE,
        &[
            Misbehaviour {
                task_type: "py:spin",
                kind: FailureKind::OutOfFuel,
                message: "fuel budget of 2000000000",
            },
            Misbehaviour {
                task_type: "py:membomb",
                kind: FailureKind::OutOfMemory,
                message: "over its cap of 67108864 bytes",
            },
            // CPython 3.14 keeps Python frames on the heap: past its
            // raised recursion limit, the memory cap stops it.
            Misbehaviour {
                task_type: "py:recurse",
                kind: FailureKind::OutOfMemory,
                message: "over its cap of 67108864 bytes",
            },
            // Modules load at build time: a module imported only at run
            // time is not in the component (and one that raises while it
            // is imported fails the build: see below).
            Misbehaviour {
                task_type: "py:import",
                kind: FailureKind::Panic,
                message: "No module named 'broken': a Python plugin holds only the modules imported while it was built",
            },
            Misbehaviour {
                task_type: "py:flood",
                kind: FailureKind::LogLimit,
                message: "limit of 65536 bytes",
            },
            Misbehaviour {
                task_type: "py:raise",
                kind: FailureKind::Panic,
                message: "ValueError: the hostile plugin raised this",
            },
            // wasi:sockets is linked (CPython imports it) and refuses
            // every address, recording it.
            Misbehaviour {
                task_type: "py:socket",
                kind: FailureKind::CapabilityDenied,
                message: "TCP socket to 0.0.0.0:0 (plugins get no sockets",
            },
            // wasi:filesystem is linked with no directory preopened.
            Misbehaviour {
                task_type: "py:file",
                kind: FailureKind::Panic,
                message: "FileNotFoundError",
            },
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_javascript_plugin_fails_only_its_own_tasks() {
    hostile(
        JS_HOSTILE,
        &[
            Misbehaviour {
                task_type: "js:spin",
                kind: FailureKind::OutOfFuel,
                message: "fuel budget of 2000000000",
            },
            Misbehaviour {
                task_type: "js:membomb",
                kind: FailureKind::OutOfMemory,
                message: "over its cap of 67108864 bytes",
            },
            Misbehaviour {
                task_type: "js:recurse",
                kind: FailureKind::Panic,
                message: "too much recursion",
            },
            Misbehaviour {
                task_type: "js:import",
                kind: FailureKind::Panic,
                message: "broken.js refuses to be imported",
            },
            Misbehaviour {
                task_type: "js:flood",
                kind: FailureKind::LogLimit,
                message: "limit of 65536 bytes",
            },
            Misbehaviour {
                task_type: "js:throw",
                kind: FailureKind::Panic,
                message: "TypeError: the hostile plugin threw this",
            },
        ],
    )
    .await;
}

/// A new version of a Python plugin deployed into a running worker while
/// tasks flow: the worker compiles it in the background (it has a compile
/// cache of its own here, so it really compiles), `plugin deploy` says so,
/// the old version serves meanwhile, and no task fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_version_deploys_into_a_running_worker_failing_no_task() {
    let first = built(PYTHON_EXAMPLE);
    let env = Env::start().await;
    let deployed = env.wasmq(&["plugin", "deploy", &first]);
    assert!(
        deployed.status.success(),
        "{}",
        crate::support::stderr(&deployed)
    );

    // The worker's own cache holds the first version (as if it had served
    // it before), not the second.
    let wasm = std::fs::read(&first).unwrap();
    let digest = wasmq_testkit::digest_of(&wasm);
    let cache = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(wasmq_testkit::component_cache_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&digest) && name.ends_with(".cwasm") {
            std::fs::copy(&path, cache.path().join(&name)).unwrap();
        }
    }
    let cache_dir = cache.path().display().to_string();
    let worker = env.bare_worker(&["--no-scheduler", "--cache-dir", &cache_dir]);
    env.wait_for_workers(1).await;
    let first_task = run(&env, "py:echo", r#"{"v":1}"#, 0).await;
    result(&first_task);

    // Tasks flow from now on.
    let flowing = tokio_util::sync::CancellationToken::new();
    let producer = {
        let client = env.client.clone();
        let flowing = flowing.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !flowing.is_cancelled() {
                client
                    .enqueue(NewTask::new("py:echo", format!(r#"{{"n":{sent}}}"#)).unwrap())
                    .await
                    .unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };

    let second = tempfile::tempdir().unwrap();
    let second_path = second.path().join("py-example-0.2.0.wasm");
    std::fs::write(
        &second_path,
        crate::forge::with_manifest(&first, |manifest| manifest.version = "0.2.0".into()),
    )
    .unwrap();
    let deployed = env.wasmq(&[
        "plugin",
        "deploy",
        second_path.to_str().unwrap(),
        "--wait",
        "3s",
    ]);
    let said = stdout(&deployed);
    assert!(
        deployed.status.success(),
        "{said}{}",
        crate::support::stderr(&deployed)
    );
    assert!(said.contains("deployed py-example@0.2.0"), "{said}");
    assert!(said.contains("still compiling on"), "{said}");

    wait_until(
        Duration::from_secs(240),
        "the worker to serve version 0.2.0",
        || async { serves(&env, "py-example", "0.2.0").await },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    flowing.cancel();
    let sent = producer.await.unwrap();
    assert!(sent > 10, "only {sent} tasks were sent");
    let counts = env
        .wait_for_counts(
            "default",
            Duration::from_secs(60),
            "every task to complete",
            |c| c.unfinished() == 0,
        )
        .await;
    assert_eq!(
        (counts.completed, counts.archived, counts.retry),
        (sent + 1, 0, 0),
        "{}",
        worker.log()
    );
}

/// Whether a live worker's heartbeat (`wasmq:{fleet}:server:<id>`, its
/// description as JSON) says it serves `version` of `plugin`.
async fn serves(env: &Env, plugin: &str, version: &str) -> bool {
    let mut conn = env.redis_connection().await;
    for id in env.live_workers().await {
        let described: Option<String> = redis::cmd("GET")
            .arg(format!("wasmq:{{fleet}}:server:{id}"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let Some(described) = described else {
            continue;
        };
        let server: serde_json::Value = serde_json::from_str(&described).unwrap();
        let serving = server["plugins"].as_array().is_some_and(|plugins| {
            plugins
                .iter()
                .any(|p| p["name"] == plugin && p["version"] == version)
        });
        if serving {
            return true;
        }
    }
    false
}

/// The names a component's top level imports, read from its binary.
fn import_names(wasm: &[u8]) -> Vec<String> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("the component parses") {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    names.push(import.expect("the import parses").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

/// A Python or JavaScript plugin imports only what its manifest grants
/// (the build targets a world made from it), and one that imports more
/// than its manifest grants is refused at load, naming the import, before
/// any compile.
#[test]
fn an_import_the_manifest_does_not_grant_is_refused_at_load() {
    use wasmq::plugins::{LoadOptions, Plugin};
    use wasmq::sandbox::{Sandbox, SandboxConfig};

    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    for (plugin, hostile) in [(PYTHON_EXAMPLE, PYTHON_HOSTILE), (JS_EXAMPLE, JS_HOSTILE)] {
        // The hostile plugins are granted nothing, and import nothing of
        // the capabilities.
        let wasm = std::fs::read(built(hostile)).unwrap();
        let imports = import_names(&wasm);
        assert!(
            imports
                .iter()
                .any(|name| name.starts_with("wasmq:plugin/log@")),
            "{imports:?}"
        );
        for capability in ["wasmq:plugin/kv", "wasmq:plugin/enqueue", "wasi:http/"] {
            assert!(
                !imports.iter().any(|name| name.starts_with(capability)),
                "{hostile} imports {capability}: {imports:?}"
            );
        }
        // The example without its kv grant.
        let component = built(plugin);
        let forged = crate::forge::with_manifest(&component, |manifest| {
            manifest.capabilities.kv = None;
        });
        let refused = Plugin::load(
            &sandbox,
            &forged,
            Path::new("forged.wasm"),
            &LoadOptions::default(),
        )
        .err()
        .expect("refused");
        let message = refused.to_string();
        assert!(
            message.contains("imports wasmq:plugin/kv@0.1.0, but its manifest does not grant `kv`"),
            "{message}"
        );
    }
}

/// Runs `wasmq plugin build` on `dir` with `env` set; returns (success,
/// stdout, stderr).
fn build_dir(dir: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = wasmq_testkit::WasmqProcess::command(Path::new(WASMQ));
    command.args(["plugin", "build"]).arg(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("wasmq runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The JavaScript toolchain the repository's plugins are built with.
fn jco() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/js/node_modules/.bin/jco")
        .display()
        .to_string()
}

/// Module-level code runs once, at build time: an exception there fails
/// the build with its message, as does a task type of the manifest that no
/// handler is registered for; so does a toolchain that is not installed,
/// with the command that installs it.
#[test]
fn a_plugin_that_cannot_work_fails_its_build_with_the_reason() {
    let write = |dir: &Path, files: &[(&str, &str)]| {
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    };
    let manifest = "name = \"broken\"\nversion = \"0.1.0\"\ntask_types = [\"b:one\"]\n";
    let jco = jco();
    for (entry, code, needle) in [
        (
            "app.py",
            "from wasmq import handler\n\nraise RuntimeError('refusing at import')\n",
            "RuntimeError: refusing at import",
        ),
        (
            "app.py",
            "from wasmq import handler\n\n@handler('b:other')\ndef other(task, payload):\n    return None\n",
            "the manifest lists task types no handler is registered for: b:one",
        ),
        (
            "src/index.js",
            "import { handler } from 'wasmq';\n\nconst settings = JSON.parse('{not json');\nhandler('b:one', () => settings);\n",
            "SyntaxError: JSON.parse",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("wasmq.toml", manifest), (entry, code)]);
        let (ok, _, stderr) = build_dir(dir.path(), &[("WASMQ_JCO", &jco)]);
        assert!(!ok, "{entry}: built anyway");
        assert!(stderr.contains(needle), "{entry}: {stderr}");
    }

    // No toolchain on the PATH: named, with how to install it.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    for (entry, needle) in [
        ("app.py", "pip install componentize-py==0.25.1"),
        (
            "src/index.js",
            "npm install --save-dev @bytecodealliance/jco@1.35.0",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("wasmq.toml", manifest), (entry, "")]);
        let (ok, _, stderr) = build_dir(dir.path(), &[("PATH", &path)]);
        assert!(!ok && stderr.contains(needle), "{entry}: {stderr}");
    }

    // A manifest no worker would take fails before any toolchain runs.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "wasmq.toml",
                "name = \"has space\"\nversion = \"1\"\ntask_types = [\"t\"]\n",
            ),
            ("app.py", ""),
        ],
    );
    let (ok, _, stderr) = build_dir(dir.path(), &[("PATH", &path)]);
    assert!(
        !ok && stderr.contains("plugin name \"has space\""),
        "{stderr}"
    );
}

/// `wasmq new plugin NAME --lang python|js` makes a project that builds as
/// it is (`wasmq plugin build`), into a component carrying its manifest and
/// language, with a README of three lines: build, deploy, enqueue.
#[test]
fn scaffolded_python_and_javascript_plugins_build_as_they_are() {
    use wasmq::plugins::{Language, Manifest, build_info};

    let jco = jco();
    for (lang, language) in [("python", Language::Python), ("js", Language::JavaScript)] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("resize");
        let created = crate::support::wasmq(&[
            "new".into(),
            "plugin".into(),
            "resize".into(),
            "--lang".into(),
            lang.into(),
            "--dir".into(),
            dir.display().to_string(),
        ]);
        assert!(
            created.status.success(),
            "{}",
            crate::support::stderr(&created)
        );
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        for step in [
            "wasmq plugin build",
            "wasmq plugin deploy",
            "wasmq enqueue resize",
        ] {
            assert!(readme.contains(step), "{lang}: {readme}");
        }
        let (ok, built, stderr) = build_dir(&dir, &[("WASMQ_JCO", &jco)]);
        assert!(ok, "{lang}: the scaffold does not build: {stderr}");
        let component = built.trim();
        assert!(component.ends_with("target/wasmq/resize.wasm"), "{built}");
        let wasm = std::fs::read(component).unwrap();
        let manifest = Manifest::from_component(&wasm).unwrap();
        assert_eq!(
            (manifest.name.as_str(), manifest.task_types.clone()),
            ("resize", vec!["resize".to_string()])
        );
        assert_eq!(build_info(&wasm).unwrap().language, language);
    }
}
