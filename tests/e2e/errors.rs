use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::support::{Env, stderr, stdout, wasmq};

/// A payload that is not JSON is refused before it reaches Redis.
#[tokio::test]
async fn enqueue_refuses_a_payload_that_is_not_json() {
    let env = Env::start().await;
    let output = env.wasmq(&["enqueue", "email:send", "{to: x}"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not JSON"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.counts("default").await.pending, 0);
}

/// An oversized payload is refused, naming the limit.
#[tokio::test]
async fn enqueue_refuses_an_oversized_payload() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!("\"{}\"", "x".repeat(2 * 1024 * 1024))).unwrap();
    let output = env.wasmq(&["enqueue", "echo", &format!("@{}", big.display())]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("over the 1048576-byte limit"),
        "{}",
        stderr(&output)
    );
}

/// With Redis down, `wasmq enqueue` exits with code 4 naming the URL.
#[tokio::test]
async fn enqueue_to_a_dead_redis_names_the_url() {
    let mut env = Env::start().await;
    let url = env.url();
    env.redis.kill();
    let output = env.wasmq(&["enqueue", "echo", "{}"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains(&url), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );
}

/// `wasmq worker --fail-fast` exits with code 4 when Redis is unreachable;
/// without it, the worker keeps retrying and says so.
#[tokio::test]
async fn a_worker_facing_a_dead_redis_retries_or_fails_fast() {
    let mut env = Env::start().await;
    env.redis.kill();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let output = wasmq(&[
        "worker".into(),
        "--redis".into(),
        env.url(),
        "--plugins".into(),
        plugins.path().display().to_string(),
        "--fail-fast".into(),
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains(&env.url()), "{}", stderr(&output));

    let worker = env.spawn_worker(plugins.path(), &[]);
    worker
        .wait_for_log(
            "(pass --fail-fast to exit instead)",
            std::time::Duration::from_secs(20),
        )
        .await;
    // Redis comes back: the worker connects and serves.
    env.redis.restart().unwrap();
    worker
        .wait_for_log("worker started", std::time::Duration::from_secs(30))
        .await;
}

/// A plugin directory holding a file that is not a component stops the
/// worker at start, naming the file and the problem.
#[tokio::test]
async fn a_malformed_plugin_is_refused_at_start_naming_the_file() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "notes.wasm",
            b"these are not the bytes you are looking for",
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "a core WebAssembly module, not a component",
        ),
        ("empty.wasm", b"", "the file is empty"),
    ];
    for (name, bytes, expected) in cases {
        let path = plugins.add_file(name, bytes);
        let output = wasmq(&[
            "worker".into(),
            "--redis".into(),
            env.url(),
            "--plugins".into(),
            plugins.path().display().to_string(),
        ]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(name), "names the file: {message}");
        assert!(message.contains(expected), "{name}: {message}");
        std::fs::remove_file(path).unwrap();
    }
}

/// `wasmq --help` teaches: it shows examples and the exit codes.
#[test]
fn help_shows_examples_and_exit_codes() {
    let output = wasmq(&["--help".into()]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("3 refused as a duplicate"), "{text}");
}

/// Runs `wasmq` with `args` against `env`, then checks that it did not
/// panic; returns its output.
fn wasmq_no_panic(env: &Env, args: &[&str]) -> std::process::Output {
    let output = env.wasmq(args);
    assert!(
        !stderr(&output).contains("panicked"),
        "`wasmq {}` panicked: {}",
        args.join(" "),
        stderr(&output)
    );
    output
}

/// Delays, times and retentions past the 100-year ceiling are refused at
/// parse time, from flags and from `enqueue --file` lines; the bad lines
/// are reported by number and the others still go in.
#[tokio::test]
async fn out_of_range_delays_and_times_are_refused_at_every_cli_path() {
    let env = Env::start().await;
    for flags in [
        &["--in", "5000000000y"][..],
        &["--timeout", "200y"],
        &["--retention", "999999999y"],
        &["--at", "9999-01-01T00:00:00Z"],
    ] {
        let mut args = vec!["enqueue", "echo", "{}"];
        args.extend_from_slice(flags);
        let output = wasmq_no_panic(&env, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("100 years"), "{}", stderr(&output));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"type\": \"echo\", \"id\": \"ok-1\"}\n",
            "{\"type\": \"echo\", \"process_in\": 1e30}\n",
            "{\"type\": \"echo\", \"retention\": 1e300}\n",
            "{\"type\": \"echo\", \"timeout\": \"5000000000y\"}\n",
            "{\"type\": \"echo\", \"deadline\": \"9999-01-01T00:00:00Z\"}\n",
            "{\"type\": \"echo\", \"id\": \"ok-2\"}\n",
        ),
    )
    .unwrap();
    let output = wasmq_no_panic(&env, &["enqueue", "--file", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    for line in 2..=5 {
        assert!(
            stderr(&output).contains(&format!("line {line}: ")),
            "line {line} not reported: {}",
            stderr(&output)
        );
    }
    assert!(
        stdout(&output).contains("2 accepted, 4 refused"),
        "{}",
        stdout(&output)
    );
    assert_eq!(env.counts("default").await.pending, 2);
}

/// Writes a task record straight into Redis, as an older version or a
/// hostile client might have left it.
async fn store_raw_task(
    env: &Env,
    queue: &str,
    id: &str,
    state: wasmq::TaskState,
    message: String,
    score: f64,
) {
    let mut redis = env.redis_connection().await;
    let key = |part: &str| format!("wasmq:{{{queue}}}:{part}");
    let mut pipe = redis::pipe();
    pipe.sadd("wasmq:queues", queue)
        .hset(key("msg"), id, message)
        .hset(key("state"), id, state.as_str())
        .hset(key("attempts"), id, 1)
        .hset(
            key("error"),
            id,
            serde_json::json!({"kind": "gave-up", "message": "x\u{1b}[2J\nboom", "attempt": 1, "at_ms": i64::MAX})
                .to_string(),
        );
    match state {
        wasmq::TaskState::Pending => {
            pipe.lpush(key("pending"), id);
        }
        wasmq::TaskState::Waiting => {
            // A flow parent: the number of its children not ended yet.
            pipe.hset(key("waiting"), id, 1);
        }
        other => {
            pipe.zadd(key(other.as_str()), id, score);
        }
    }
    if state == wasmq::TaskState::Completed {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        pipe.hset(key("result"), id, deep);
    }
    let () = pipe.query_async(&mut redis).await.unwrap();
}

/// `task show`, `task ls` (every state) and their `--json` forms print
/// whatever is already stored without panicking: a payload nested 100,000
/// levels deep, a score of 1.8e19, times past the year 9999, a 100,000
/// character type and one holding escape sequences.
#[tokio::test]
async fn every_reader_survives_hostile_records_already_in_redis() {
    let env = Env::start().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for state in wasmq::TaskState::ALL {
        let id = format!("hostile-{state}");
        let message = serde_json::json!({
            "id": id,
            "type": if state == wasmq::TaskState::Retry { "t".repeat(100_000) } else { "evil\u{1b}]0;pwned\u{7}\ntype".to_string() },
            "queue": "default",
            "payload": "PAYLOAD",
            "max_retry": u32::MAX,
            "timeout_ms": u64::MAX,
            "deadline_ms": i64::MAX,
            "retention_ms": u64::MAX,
            "enqueued_at_ms": i64::MAX,
        });
        // serde_json cannot build a Value that deep: splice the text in.
        let message = message.to_string().replace("\"PAYLOAD\"", &deep);
        store_raw_task(&env, "default", &id, state, message, 1.8e19).await;
    }
    for state in wasmq::TaskState::ALL {
        let id = format!("hostile-{state}");
        let output = wasmq_no_panic(&env, &["task", "show", &id]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("after the year 9999"),
            "{}",
            stdout(&output)
        );
        assert!(
            !stdout(&output).contains('\u{1b}'),
            "an escape reached the terminal"
        );
        let output = wasmq_no_panic(&env, &["task", "show", &id, "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
                panic!("task show --json is not JSON ({err}): {}", stderr(&output))
            });
        assert_eq!(json["payload"].as_str(), Some(deep.as_str()));

        for extra in [&[][..], &["--json"]] {
            let mut args = vec!["task", "ls", "--state", state.as_str()];
            args.extend_from_slice(extra);
            let output = wasmq_no_panic(&env, &args);
            assert!(output.status.success(), "{args:?}: {}", stderr(&output));
            assert!(
                stdout(&output).contains(&id),
                "{args:?}: {}",
                stdout(&output)
            );
            assert!(
                !stdout(&output).contains('\u{1b}'),
                "an escape reached the terminal"
            );
        }
    }
    for args in [
        &["stats"][..],
        &["queue", "ls"],
        &["queue", "inspect", "default"],
    ] {
        let output = wasmq_no_panic(&env, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
}

/// What the system cannot show or route is refused at enqueue: a payload
/// nested past the limit, a huge type or one with control characters, a
/// queue name `--queues` cannot express. Pausing a queue that does not
/// exist is "not found".
#[tokio::test]
async fn unshowable_payloads_types_and_queue_names_are_refused() {
    let env = Env::start().await;
    // 50,000 levels: one command-line argument holds at most 128 KiB.
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let long_type = "t".repeat(100_000);
    for (args, says) in [
        (vec!["enqueue", "echo", deep.as_str()], "levels deep"),
        (vec!["enqueue", long_type.as_str(), "{}"], "256-byte limit"),
        (vec!["enqueue", "evil\ntype", "{}"], "control character"),
        (
            vec!["enqueue", "echo", "{}", "--queue", "a=3"],
            "'=' and ','",
        ),
        (
            vec!["enqueue", "echo", "{}", "--queue", "a,b"],
            "'=' and ','",
        ),
    ] {
        let output = wasmq_no_panic(&env, &args);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(says),
            "{says}: {}",
            stderr(&output)
        );
    }
    assert_eq!(env.counts("default").await.pending, 0);
    assert!(env.queue_names().is_empty());

    for verb in ["pause", "resume"] {
        let output = wasmq_no_panic(&env, &["queue", verb, "NOSUCH"]);
        assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("no queue named \"NOSUCH\""),
            "{}",
            stderr(&output)
        );
    }
    let mut redis = env.redis_connection().await;
    let paused: bool = redis::cmd("EXISTS")
        .arg("wasmq:{NOSUCH}:paused")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!paused, "a queue that does not exist was paused");
}

/// A listing piped into a reader that stops early (`| head -1`) ends
/// quietly, with no "failed printing to stdout" panic.
#[tokio::test]
async fn a_listing_piped_into_head_exits_quietly() {
    let env = Env::start().await;
    for n in 0..3 {
        env.client
            .enqueue(wasmq::NewTask::new("echo", format!("{{\"n\":{n}}}")).unwrap())
            .await
            .unwrap();
    }
    for args in [
        &["task", "ls"][..],
        &["task", "ls", "--json"],
        &["queue", "ls"],
    ] {
        let mut child =
            wasmq_testkit::WasmqProcess::command(std::path::Path::new(crate::support::WASMQ))
                .args(args)
                .args(["--redis", &env.url()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

/// A Redis at its maxmemory (noeviction) is named as out of memory, for
/// one task and for a file, never "invalid".
#[tokio::test]
async fn a_full_redis_is_named_out_of_memory() {
    let env = Env::start().await;
    env.client
        .enqueue(wasmq::NewTask::new("echo", "{}").unwrap())
        .await
        .unwrap();
    let set = crate::support::redis_cli(env.redis.port(), &["CONFIG", "SET", "maxmemory", "1"]);
    assert!(set.is_some_and(|reply| reply.contains("OK")));

    let output = wasmq_no_panic(&env, &["enqueue", "echo", "{}"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is out of memory"),
        "{}",
        stderr(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.jsonl");
    std::fs::write(&file, "{\"type\": \"echo\"}\n".repeat(3)).unwrap();
    let output = wasmq_no_panic(&env, &["enqueue", "--file", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is out of memory"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("0 invalid"), "{}", stdout(&output));
}

/// A Redis that needs a password says so: none given, or a wrong one; a
/// worker with --fail-fast exits with that message before it starts.
#[tokio::test]
async fn a_missing_or_wrong_password_is_named() {
    let env = Env::start().await;
    let port = env.redis.port();
    let set = crate::support::redis_cli(port, &["CONFIG", "SET", "requirepass", "s3cret"]);
    assert!(set.is_some_and(|reply| reply.contains("OK")));

    let run = |url: String| {
        wasmq(&[
            "enqueue".into(),
            "echo".into(),
            "{}".into(),
            "--redis".into(),
            url,
        ])
    };
    let output = run(format!("redis://127.0.0.1:{port}"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("requires a password and none was given"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );

    let output = run(format!("redis://:wrong@127.0.0.1:{port}"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("refused the password"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("unreachable"),
        "{}",
        stderr(&output)
    );

    let output = run(format!("redis://:s3cret@127.0.0.1:{port}"));
    assert!(output.status.success(), "{}", stderr(&output));

    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let mut command =
        wasmq_testkit::WasmqProcess::command(std::path::Path::new(crate::support::WASMQ));
    command
        .arg("worker")
        .args([
            "--redis",
            &format!("redis://127.0.0.1:{port}"),
            "--fail-fast",
            "--plugins",
        ])
        .arg(plugins.path());
    let mut worker = wasmq_testkit::WasmqProcess::spawn(command);
    let status = worker.wait_exit(std::time::Duration::from_secs(60)).await;
    let log = worker.log();
    assert!(
        status.is_some_and(|status| !status.success()),
        "the worker kept running: {log}"
    );
    assert!(log.contains("requires a password"), "{log}");
    assert!(!log.contains("worker started"), "{log}");
}

/// Cron specs that can never fire are refused; the common macros are
/// accepted, and an `@every` no cron spec can keep says what to write.
#[tokio::test]
async fn cron_specs_that_never_fire_are_refused_and_macros_accepted() {
    let env = Env::start().await;
    let output = wasmq_no_panic(&env, &["cron", "add", "never", "0 0 0 30 2 *", "echo"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("can never fire"),
        "{}",
        stderr(&output)
    );

    for (name, spec) in [
        ("five", "@every 5s"),
        ("hourly", "@hourly"),
        ("daily", "@daily"),
        ("weekly", "@weekly"),
        ("monthly", "@monthly"),
        ("yearly", "@yearly"),
        ("annually", "@annually"),
        ("midnight", "@midnight"),
    ] {
        let output = wasmq_no_panic(&env, &["cron", "add", name, spec, "echo"]);
        assert!(output.status.success(), "{spec}: {}", stderr(&output));
        assert!(
            stdout(&output).contains("next tick"),
            "{spec}: {}",
            stdout(&output)
        );
    }
    let output = wasmq_no_panic(&env, &["cron", "add", "seven", "@every 7s", "echo"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("write a cron spec instead"),
        "{}",
        stderr(&output)
    );
}

/// `wasmq dev`'s `try:` lines work when pasted into a shell (the binary it
/// runs is not on PATH), and dev mode logs at INFO by default.
#[tokio::test]
async fn dev_prints_try_lines_that_work_when_pasted() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut dev = KillOnDrop(
        wasmq_testkit::WasmqProcess::command(std::path::Path::new(crate::support::WASMQ))
            .args(["dev", "--redis", &env.url(), "--no-dashboard", "--plugins"])
            .arg(plugins.path())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    crate::support::wait_until(
        std::time::Duration::from_secs(60),
        "the try: lines",
        || async { read(&out_path).contains("stop:") },
    )
    .await;
    let banner = read(&out_path);
    let enqueue = banner
        .lines()
        .find_map(|line| line.trim().strip_prefix("try:"))
        .expect("a try: line")
        .trim()
        .to_string();
    // Pasted from a directory that has no wasmq in it, with no wasmq on
    // PATH.
    let pasted = std::process::Command::new("sh")
        .args(["-c", &enqueue])
        .current_dir(dir.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(pasted.status.success(), "{enqueue}: {}", stderr(&pasted));
    let id = stdout(&pasted);
    env.wait_for_state(
        "default",
        &id,
        wasmq::TaskState::Completed,
        std::time::Duration::from_secs(60),
    )
    .await;
    let show = banner
        .lines()
        .find(|line| line.contains("task show"))
        .expect("a task show line")
        .trim()
        .replace("<ID>", &id);
    let pasted = std::process::Command::new("sh")
        .args(["-c", &show])
        .current_dir(dir.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(pasted.status.success(), "{show}: {}", stderr(&pasted));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(dev.0.id() as i32, libc::SIGTERM);
    }
    let _ = dev.0.wait();
    let log = read(&err_path);
    assert!(log.contains("worker started"), "{log}");
    assert!(!log.contains("DEBUG"), "dev logs at INFO by default: {log}");
}

/// A child process killed (and reaped) when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
