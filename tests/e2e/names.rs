//! Every connection wasmq opens is named (`CLIENT SETNAME`), so an
//! operator tells workers, the CLI and each client library apart in
//! `CLIENT LIST`, and a worker's connection keeps its name across a Redis
//! restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wasmq::Client;
use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::conformance::repo;
use crate::support::{Env, WASMQ, WasmqProcess, free_port, redis_cli, wait_until};

/// The `name=` of every connection in `CLIENT LIST`.
fn names(port: u16) -> Vec<String> {
    redis_cli(port, &["CLIENT", "LIST"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("name="))
                .map(str::to_string)
        })
        .collect()
}

/// A child process killed when dropped.
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_wasmq_connection_says_what_it_is_in_client_list() {
    let mut env = Env::start().await;
    let port = env.redis.port();
    let url = env.url();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let worker = env.worker(plugins.path(), &["--no-scheduler"]);
    let dashboard = WasmqProcess::spawn({
        let mut command = WasmqProcess::command(Path::new(WASMQ));
        command
            .arg("dashboard")
            .args(["--redis", &url])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
        command
    });
    let rust = Client::connect(&url).await.expect("Redis answers");
    let _python = Held(
        Command::new("python3")
            .args([
                "-c",
                &format!("import time, wasmq\nc = wasmq.Client({url:?})\nc.task('x', 'default')\ntime.sleep(120)"),
            ])
            .env("PYTHONPATH", repo().join("clients/python/src"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    let _node = Held(
        Command::new("node")
            .args([
                "--input-type=module",
                "-e",
                &format!("import {{ Client }} from './clients/node/dist/index.js';\nconst c = await Client.connect({url:?});\nsetTimeout(() => c.close(), 120000);"),
            ])
            .current_dir(repo())
            .stdout(Stdio::null())
            .spawn()
            .expect("node runs"),
    );
    env.wait_for_workers(1).await;
    let worker_id = env.live_workers().await[0].clone();
    let expected = [
        format!("wasmq:worker:{worker_id}"),
        "wasmq:cli:dashboard".to_string(),
        "wasmq:client:rust:".to_string(),
        "wasmq:client:python:".to_string(),
        "wasmq:client:node:".to_string(),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = names(port);
        if expected
            .iter()
            .all(|name| seen.iter().any(|seen| seen.starts_with(name.as_str())))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected connections named {expected:?}, CLIENT LIST has {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = names(port);
    assert!(
        seen.iter()
            .filter(|name| name.starts_with("wasmq:client:rust:"))
            .all(|name| name.ends_with(&format!(":{}", std::process::id()))),
        "{seen:?}"
    );
    drop(rust);

    // After a restart the worker's connection comes back with its name.
    env.redis.restart().expect("redis-server restarts");
    let worker_name = format!("wasmq:worker:{worker_id}");
    wait_until(
        Duration::from_secs(30),
        &format!(
            "the worker to reconnect as {worker_name} (log: {})",
            worker.log()
        ),
        || async { names(port).contains(&worker_name) },
    )
    .await;
    drop(dashboard);
}
