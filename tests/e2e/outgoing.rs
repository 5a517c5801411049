//! Outgoing HTTP from plugins goes through a pool of the plugin's own:
//! one task's connection serves the next task, a server that stops
//! answering costs a task its timeout, a plugin's requests never ride a
//! connection another plugin opened, and HTTPS is checked against the
//! public roots.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmq::{DEFAULT_QUEUE, FailureKind, NewTask, TaskInfo, TaskState};
use wasmq_testkit::*;

use crate::support::tls::{Certs, TlsRedis};
use crate::support::{Env, wait_until};

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

/// Starts a worker with the plugins of `plugins`, relay's environment
/// value and secret allowed; returns once it serves.
fn start_worker(env: &Env, plugins: &PluginDir) -> WasmqProcess {
    env.worker(
        plugins.path(),
        &[
            "--no-scheduler",
            "--allow-env",
            "relay=REGION",
            "--allow-secret",
            "relay=TOKEN",
        ],
    )
}

/// Runs one task of `task_type` that GETs `url` to its end (no retry).
async fn get(env: &Env, task_type: &str, url: &str) -> TaskInfo {
    let payload = serde_json::json!({ "url": url }).to_string();
    let id = env
        .client
        .enqueue(NewTask::new(task_type, payload).unwrap().max_retry(0))
        .await
        .unwrap()
        .id;
    wait_until(
        Duration::from_secs(60),
        &format!("{task_type} of {url} to end"),
        || async {
            env.task(DEFAULT_QUEUE, &id).await.is_some_and(|info| {
                matches!(info.state, TaskState::Completed | TaskState::Archived)
            })
        },
    )
    .await;
    env.task(DEFAULT_QUEUE, &id)
        .await
        .expect("the task is kept")
}

/// Runs one `relay:fetch` of `url` to its end (no retry).
async fn fetch(env: &Env, url: &str) -> TaskInfo {
    get(env, "relay:fetch", url).await
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
    let _worker = start_worker(&env, &plugins);

    for n in 1..=5 {
        let info = fetch(&env, &server.url("/ok")).await;
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
    let stalled = fetch(&env, &server.url("/stall")).await;
    assert_eq!(stalled.state, TaskState::Archived);
    let error = stalled.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::HandlerError, "{error:?}");
    assert!(
        error.message.to_lowercase().contains("timeout"),
        "the failure names the timeout: {}",
        error.message
    );

    let after = fetch(&env, &server.url("/ok")).await;
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
/// certificate) fails the task naming TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_server_no_public_authority_vouches_for_fails_naming_tls() {
    let env = Env::start().await;
    let certs = Certs::make();
    let untrusted = TlsRedis::start(&certs, "server", "no");
    let plugins = PluginDir::with(&[RELAY_COMPONENT]);
    let worker = start_worker(&env, &plugins);

    let url = format!("https://127.0.0.1:{}/", untrusted.tls_port);
    let refused = fetch(&env, &url).await;
    assert_eq!(refused.state, TaskState::Archived);
    let error = refused.last_error.unwrap();
    assert!(
        error.message.to_lowercase().contains("tls"),
        "the failure names TLS: {}; the worker's log:\n{}",
        error.message,
        worker.log()
    );
}

/// The pools are the plugins' own: a hostile plugin that GETs the very
/// server `relay` holds an idle connection to gets a connection of its
/// own, never relay's (nor relay the hostile one's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_never_rides_a_connection_another_plugin_opened() {
    let env = Env::start().await;
    let plugins = PluginDir::with(&[RELAY_COMPONENT, HOSTILE_HTTP_COMPONENT]);
    let server = KeepAliveServer::start();
    let _worker = start_worker(&env, &plugins);

    let relayed = fetch(&env, &server.url("/ok")).await;
    assert_eq!(
        relayed.state,
        TaskState::Completed,
        "{:?}",
        relayed.last_error
    );
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1);

    let hostile = get(&env, "hostile:http", &server.url("/ok")).await;
    assert_eq!(
        hostile.state,
        TaskState::Completed,
        "{:?}",
        hostile.last_error
    );
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        server.seen.connections.load(Ordering::SeqCst),
        2,
        "the hostile plugin's request went over relay's idle connection"
    );

    // Each keeps its own: a second round opens nothing new.
    for (task_type, n) in [("relay:fetch", 3), ("hostile:http", 4)] {
        let info = get(&env, task_type, &server.url("/ok")).await;
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.last_error);
        assert_eq!(server.seen.requests.load(Ordering::SeqCst), n);
    }
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 2);
}
