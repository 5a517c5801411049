use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasmq::NewTask;
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, PluginDir, WasmqProcess};

use crate::support::{Env, WASMQ, free_port, wait_for_http};

/// The browser check and its dependencies.
fn browser_check() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dashboard");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/dashboard` (.ci/setup does)"
    );
    assert!(
        Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
            .exists(),
        "Chromium is not installed: `apt-get install chromium` (.ci/setup does)"
    );
    dir.join("browser.mjs")
}

/// In headless Chromium: the dashboard shows a queue with the right counts;
/// an archived task opens with its error; Retry runs it and the page shows
/// it completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_retries_an_archived_task_in_a_real_browser() {
    let script = browser_check();
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    for n in 0..3 {
        env.client
            .enqueue(NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
            .await
            .unwrap();
    }
    // Fails its first attempt only: archived at once, completes when retried.
    let archived = env
        .client
        .enqueue(
            NewTask::new("flaky", r#"{"fail_times":1}"#)
                .unwrap()
                .max_retry(0),
        )
        .await
        .unwrap()
        .id;
    let _worker = env.worker(plugins.path(), &["--no-scheduler"]);
    env.wait_for_counts(
        "default",
        Duration::from_secs(30),
        "3 completed and 1 archived",
        |c| c.completed == 3 && c.archived == 1,
    )
    .await;

    let address = format!("127.0.0.1:{}", free_port());
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command.args(["dashboard", "--redis", &env.url(), "--listen", &address]);
    let _dashboard = WasmqProcess::spawn(command);
    wait_for_http(&address, "/api/overview").await;

    let mut check = Command::new("node");
    check
        .arg(&script)
        .env("DASHBOARD_URL", format!("http://{address}/"))
        .env("QUEUE", "default")
        .env("EXPECT_PENDING", "0")
        .env("EXPECT_ARCHIVED", "1")
        .env("EXPECT_COMPLETED", "3")
        .env("TASK_ID", &archived);
    // Refresh docs/dashboard.png with WASMQ_UPDATE_SCREENSHOT=1.
    if std::env::var_os("WASMQ_UPDATE_SCREENSHOT").is_some() {
        check
            .env(
                "SCREENSHOT",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png"),
            )
            .env("SCREENSHOT_WAIT", "0");
    }
    let output = tokio::task::spawn_blocking(move || check.output())
        .await
        .unwrap()
        .expect("node runs (Node.js 20 is needed)");
    assert!(
        output.status.success(),
        "the browser check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let info = env.task("default", &archived).await.unwrap();
    assert_eq!(
        info.state,
        wasmq::TaskState::Completed,
        "the retried task completed"
    );
    assert_eq!(info.attempts, 2);
}
