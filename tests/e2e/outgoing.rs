//! Outgoing HTTP from plugins goes through a pool of the plugin's own:
//! one task's connection serves the next task, a server that stops
//! answering costs a task its timeout, and HTTPS is checked against the
//! public roots.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmq::{FailureKind, NewTask, TaskInfo, TaskState};
use wasmq_testkit::*;

use crate::support::Env;
use crate::support::tls::{Certs, TlsRedis};

/// What a [`KeepAliveServer`] has seen.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1 server on loopback that keeps connections open: it answers
/// every request `200 ok`, except `/stall`, which it never answers.
struct KeepAliveServer {
    port: u16,
    seen: Arc<Seen>,
}

impl KeepAliveServer {
    fn start() -> KeepAliveServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let counted = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counted.connections.fetch_add(1, Ordering::SeqCst);
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut first = String::new();
                    loop {
                        // A request's head ends with an empty line.
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => {
                                counted.requests.fetch_add(1, Ordering::SeqCst);
                                if first.starts_with("GET /stall") {
                                    // Hold the connection, never answer.
                                    std::thread::sleep(Duration::from_secs(60));
                                    return;
                                }
                                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                                if writer.write_all(answer.as_bytes()).is_err() {
                                    return;
                                }
                                first.clear();
                            }
                            Ok(_) if first.is_empty() => first = line,
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        KeepAliveServer { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Runs one `relay:fetch` of `url` to its end (no retry).
async fn fetch(env: &Env, worker: &WasmqProcess, url: &str) -> TaskInfo {
    let payload = serde_json::json!({ "url": url }).to_string();
    let id = env
        .client
        .enqueue(NewTask::new("relay:fetch", payload).unwrap().max_retry(0))
        .await
        .unwrap()
        .id;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info = env
            .client
            .task(&id, Some("default"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "relay:fetch of {url} did not end within a minute; the worker's log:\n{}",
            worker.log()
        );
        if matches!(info.state, TaskState::Completed | TaskState::Archived) {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tasks run one after another, each in a fresh instance, send their
/// requests over one connection: the pool keeps it open between tasks
/// (a new connection per request would show here as one per task). A
/// request the server never answers fails its task with the grant's
/// timeout named, and the tasks after it are served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_reuse_their_plugins_connections_and_a_silent_server_times_out() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[RELAY_COMPONENT]);
    let server = KeepAliveServer::start();
    let mut command = WasmqProcess::command(Path::new(crate::support::WASMQ));
    command
        .args(["worker", "--redis", &env.url(), "--no-scheduler"])
        .args([
            "--allow-env",
            "relay=REGION",
            "--allow-secret",
            "relay=TOKEN",
        ])
        .arg("--plugins")
        .arg(plugins.path());
    let worker = WasmqProcess::spawn(command);

    for n in 1..=5 {
        let info = fetch(&env, &worker, &server.url("/ok")).await;
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.last_error);
        let result: serde_json::Value =
            serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
        assert_eq!(result["body"], "ok");
        assert_eq!(server.seen.requests.load(Ordering::SeqCst), n);
    }
    assert_eq!(
        server.seen.connections.load(Ordering::SeqCst),
        1,
        "five tasks in a row, one connection"
    );

    // relay's grant waits 5 s for a response.
    let stalled = fetch(&env, &worker, &server.url("/stall")).await;
    assert_eq!(stalled.state, TaskState::Archived);
    let error = stalled.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::HandlerError, "{error:?}");
    assert!(
        error.message.to_lowercase().contains("timeout"),
        "the failure names the timeout: {}",
        error.message
    );

    let after = fetch(&env, &worker, &server.url("/ok")).await;
    assert_eq!(after.state, TaskState::Completed, "{:?}", after.last_error);
    assert_eq!(
        server.seen.connections.load(Ordering::SeqCst),
        2,
        "the stalled connection was dropped, not put back: the task after it opened a new one"
    );
}

/// A plugin's HTTPS request goes through the same pool over TLS, checked
/// against the public roots: a server whose certificate no public
/// authority signed (here a redis-server's TLS port, with a test CA's
/// certificate) fails the task naming the certificate, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_server_no_public_authority_vouches_for_fails_naming_tls() {
    let env = Env::start().await;
    let certs = Certs::make();
    let untrusted = TlsRedis::start(&certs, "server", "no");
    let plugins = PluginDir::with(&[RELAY_COMPONENT]);
    let mut command = WasmqProcess::command(Path::new(crate::support::WASMQ));
    command
        .args(["worker", "--redis", &env.url(), "--no-scheduler"])
        .args([
            "--allow-env",
            "relay=REGION",
            "--allow-secret",
            "relay=TOKEN",
        ])
        .arg("--plugins")
        .arg(plugins.path());
    let worker = WasmqProcess::spawn(command);

    let url = format!("https://127.0.0.1:{}/", untrusted.tls_port);
    let refused = fetch(&env, &worker, &url).await;
    assert_eq!(refused.state, TaskState::Archived);
    let error = refused.last_error.unwrap();
    assert!(
        error.message.to_lowercase().contains("tls"),
        "the failure names TLS: {}; the worker's log:\n{}",
        error.message,
        worker.log()
    );
}
