use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::support::{Env, stderr, wasmq};

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

    let worker = env.worker(plugins.path(), &[]);
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
