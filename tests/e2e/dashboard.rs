use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasmq::NewTask;
use wasmq_testkit::{ECHO_COMPONENT, FLAKY_COMPONENT, PluginDir, WasmqProcess};

use crate::support::{Env, WASMQ, free_port, wait_for_http, wait_until};

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
/// it completed; after a reload, the throughput chart draws the history the
/// server keeps at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_retries_an_archived_task_in_a_real_browser() {
    let script = browser_check();
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT, FLAKY_COMPONENT]);
    // Limits the Limits tab draws: the echo tasks below use 3 of 100 starts
    // an hour; flaky's slots are free.
    for limit in [
        &["limit", "set", "echo", "--rate", "100/h"][..],
        &["limit", "set", "flaky", "--max-running", "2"],
    ] {
        let set = env.wasmq(limit);
        assert!(set.status.success(), "{}", crate::support::stderr(&set));
    }
    // The worker first samples the queue's counters (its throughput
    // history); the tasks then complete after that sample, so the history
    // the chart draws on a reload has them.
    let _worker = env.worker(plugins.path(), &["--no-scheduler"]);
    wait_until(Duration::from_secs(30), "a throughput sample", || async {
        let mut redis = env.redis_connection().await;
        redis::cmd("LLEN")
            .arg("wasmq:{default}:history")
            .query_async::<i64>(&mut redis)
            .await
            .unwrap()
            >= 1
    })
    .await;
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
        .env("EXPECT_HISTORY", "1")
        .env("EXPECT_RATE", "echo|3/100")
        .env("EXPECT_SLOTS", "flaky|2")
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

/// One HTTP/1.1 request over loopback with its own `Host` (the address
/// unless `headers` names one) and body: (status, lower-cased headers, body).
pub(crate) fn request(
    method: &str,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        text.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The value of header `name` (lower case) in `headers`.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
}

/// Asserts the security headers every response must carry.
pub(crate) fn assert_security_headers(what: &str, headers: &[(String, String)]) {
    let csp = header(headers, "content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: Content-Security-Policy {csp:?}"
    );
    assert!(!csp.contains("unsafe"), "{what}: {csp:?}");
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(header(headers, name), Some(value), "{what}: {name}");
    }
}

/// Starts `wasmq dashboard` on `address` with `extra` arguments.
fn dashboard(env: &Env, address: &str, extra: &[&str]) -> WasmqProcess {
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command
        .args(["dashboard", "--redis", &env.url(), "--listen", address])
        .args(extra);
    WasmqProcess::spawn(command)
}

/// The headers of a write the dashboard's own page sends from `address`.
fn own_write(address: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Origin", format!("http://{address}")),
        ("Sec-Fetch-Site", "same-origin".into()),
        ("Content-Type", "application/json".into()),
        ("X-Wasmq-Request", "1".into()),
    ]
}

/// Writes another site could make a browser send (form-encoded, text/plain,
/// a foreign Origin or Sec-Fetch-Site, no custom header, no JSON body) get
/// 403 with a message naming what is wrong, and change nothing in Redis;
/// the page's own kind of request is obeyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused_and_change_nothing() {
    let env = Env::start().await;
    for n in 0..3 {
        env.client
            .enqueue(
                NewTask::new("echo", format!(r#"{{"n":{n}}}"#))
                    .unwrap()
                    .process_in(Duration::from_secs(3600)),
            )
            .await
            .unwrap();
    }
    let address = format!("127.0.0.1:{}", free_port());
    let _dashboard = dashboard(&env, &address, &[]);
    wait_for_http(&address, "/api/overview").await;

    let own = format!("http://{address}");
    // (what, headers, body, what the refusal must say)
    type Attempt<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let attempts: &[Attempt] = &[
        (
            "a form post",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            "x=1",
            "Sec-Fetch-Site",
        ),
        (
            "text/plain without browser headers",
            &[("Content-Type", "text/plain")],
            "{}",
            "Content-Type: application/json",
        ),
        (
            "form-encoded without browser headers",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "x=1",
            "Content-Type: application/json",
        ),
        (
            "JSON from a foreign origin",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
                ("X-Wasmq-Request", "1"),
            ],
            "{}",
            "is not this dashboard",
        ),
        (
            "JSON from a sibling port",
            &[
                ("Origin", "http://127.0.0.1:1"),
                ("Content-Type", "application/json"),
                ("X-Wasmq-Request", "1"),
            ],
            "{}",
            "is not this dashboard",
        ),
        (
            "JSON without the custom header",
            &[("Origin", &own), ("Content-Type", "application/json")],
            "{}",
            "X-Wasmq-Request: 1",
        ),
        (
            "an empty body",
            &[
                ("Origin", &own),
                ("Content-Type", "application/json"),
                ("X-Wasmq-Request", "1"),
            ],
            "",
            "must be JSON",
        ),
    ];
    for path in [
        "/api/queues/default/pause",
        "/api/queues/default/bulk/deleteall?state=scheduled",
    ] {
        for (what, headers, body, says) in attempts {
            let (status, response_headers, text) = request("POST", &address, path, headers, body);
            assert_eq!(status, 403, "{what} to {path}: {text}");
            assert!(text.contains(says), "{what} to {path}: {text}");
            assert_security_headers(what, &response_headers);
        }
    }
    let stats = env.queue_stats("default");
    assert_eq!(stats["paused"], false, "a refused write paused the queue");
    assert_eq!(
        stats["counts"]["scheduled"], 3,
        "a refused write deleted tasks"
    );

    let own = own_write(&address);
    let own: Vec<(&str, &str)> = own.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, _, text) = request("POST", &address, "/api/queues/default/pause", &own, "{}");
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.queue_stats("default")["paused"], true);
    // A client that is not a browser sends neither Origin nor Sec-Fetch-Site.
    let (status, _, text) = request(
        "POST",
        &address,
        "/api/queues/default/resume",
        &own[2..],
        "{}",
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.queue_stats("default")["paused"], false);
}

/// A request naming a host other than the listen address (DNS rebinding)
/// gets 421 and no data, page or API; `--allow-host` adds a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_a_foreign_host_get_no_data() {
    let env = Env::start().await;
    env.client
        .enqueue(NewTask::new("echo", r#"{"secret":"payload-42"}"#).unwrap())
        .await
        .unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _dashboard = dashboard(&env, &address, &["--allow-host", "dash.example"]);
    wait_for_http(&address, "/api/overview").await;
    let evil = format!("evil.example:{port}");
    for path in ["/api/overview", "/api/queues/default/tasks", "/", "/app.js"] {
        let (status, headers, body) = request("GET", &address, path, &[("Host", &evil)], "");
        assert_eq!(status, 421, "{path}: {body}");
        assert!(body.contains("--allow-host"), "{path}: {body}");
        assert!(!body.contains("payload-42") && !body.contains("\"default\""));
        assert_security_headers(path, &headers);
    }
    let (status, _, body) = request(
        "POST",
        &address,
        "/api/queues/default/pause",
        &[
            ("Host", &evil),
            ("Origin", &format!("http://{evil}")),
            ("Content-Type", "application/json"),
            ("X-Wasmq-Request", "1"),
        ],
        "{}",
    );
    assert_eq!(status, 421, "{body}");
    assert_eq!(env.queue_stats("default")["paused"], false);
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "dash.example".to_string(),
        "dash.example:443".to_string(),
    ] {
        let (status, _, body) = request(
            "GET",
            &address,
            "/api/queues/default/tasks",
            &[("Host", &host)],
            "",
        );
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("payload-42"), "{host}: {body}");
    }
}

/// Beyond loopback every API request, reads too, needs the token (also
/// read-only, where one is generated); an empty token is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_token_guards_reads() {
    let env = Env::start().await;
    env.client
        .enqueue(NewTask::new("echo", r#"{"secret":"payload-42"}"#).unwrap())
        .await
        .unwrap();

    let output = Command::new(WASMQ)
        .args(["dashboard", "--redis", &env.url(), "--token", ""])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token is empty"), "{stderr}");

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _guarded = dashboard(
        &env,
        &format!("0.0.0.0:{port}"),
        &["--token", "s3cret", "--read-only"],
    );
    wait_for_http(&address, "/").await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("s3cret"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        for path in ["/api/overview", "/api/queues/default/tasks", "/api/cron"] {
            let (status, _, body) = request("GET", &address, path, &headers, "");
            assert_eq!(status, 401, "{path} with {auth:?}: {body}");
            assert!(body.contains("token"), "{body}");
            assert!(!body.contains("payload-42"));
        }
    }
    let (status, _, body) = request(
        "GET",
        &address,
        "/api/queues/default/tasks",
        &[("Authorization", "Bearer s3cret")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("payload-42"), "{body}");
    // The page itself holds no data: it loads and asks for the token.
    let (status, _, page) = request("GET", &address, "/", &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("token-input"), "{page}");

    // Read-only beyond loopback without --token: a token is generated.
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _read_only = dashboard(&env, &format!("0.0.0.0:{port}"), &["--read-only"]);
    wait_for_http(&address, "/").await;
    let (status, _, body) = request("GET", &address, "/api/overview", &[], "");
    assert_eq!(status, 401, "{body}");
}

/// Pages, API answers, errors and refusals all carry the security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_response_carries_the_security_headers() {
    let env = Env::start().await;
    let address = format!("127.0.0.1:{}", free_port());
    let _dashboard = dashboard(&env, &address, &[]);
    wait_for_http(&address, "/api/overview").await;
    for (method, path, expected) in [
        ("GET", "/", 200),
        ("GET", "/app.js", 200),
        ("GET", "/app.css", 200),
        ("GET", "/api/overview", 200),
        ("GET", "/api/queues/default/tasks/nosuch", 404),
        ("GET", "/api/queues/default/tasks?state=bogus", 400),
        ("GET", "/nosuch", 404),
        ("POST", "/api/queues/default/pause", 403),
    ] {
        let (status, headers, body) = request(method, &address, path, &[], "");
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert_security_headers(&format!("{method} {path}"), &headers);
    }
}

/// In headless Chromium, a page on another origin tries form posts and
/// no-cors fetches that would pause the queue and delete its tasks, a
/// cross-origin read and framing the dashboard, and a DNS-rebinding name
/// loads it: all refused, and nothing changed in Redis. The dashboard's
/// own page still works under its Content-Security-Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_change_or_read_the_dashboard() {
    let script = browser_check();
    let env = Env::start().await;
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    for n in 0..3 {
        env.client
            .enqueue(NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap())
            .await
            .unwrap();
    }
    let worker = env.worker(plugins.path(), &["--no-scheduler"]);
    env.wait_for_counts("default", Duration::from_secs(30), "3 completed", |c| {
        c.completed == 3
    })
    .await;
    drop(worker);

    let address = format!("127.0.0.1:{}", free_port());
    let _dashboard = dashboard(&env, &address, &[]);
    wait_for_http(&address, "/api/overview").await;
    let mut check = Command::new("node");
    check
        .arg(&script)
        .env("DASHBOARD_URL", format!("http://{address}/"))
        .env("QUEUE", "default")
        .env("EXPECT_COMPLETED", "3")
        .env("ATTACK", "1");
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
    let stats = env.queue_stats("default");
    assert_eq!(stats["paused"], false, "the attacker page paused the queue");
    assert_eq!(
        stats["counts"]["completed"], 3,
        "the attacker page deleted tasks"
    );
}

/// In headless Chromium: a waiting flow parent's detail draws the flow's
/// tree, and follows it live (no reload) until every task completed, as a
/// worker started once the tree is drawn runs the flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_a_flow_and_follows_it_live() {
    use std::io::BufRead;
    let script = browser_check();
    let env = Env::start().await;
    let echo = |n: u32| NewTask::new("echo", format!(r#"{{"n":{n}}}"#)).unwrap();
    let flow = wasmq::Flow::new(echo(0))
        .child(wasmq::Flow::new(echo(1)).child(wasmq::Flow::new(echo(11))))
        .child(wasmq::Flow::new(echo(2)));
    let root = env.client.enqueue_flow(flow).await.unwrap().root.id;

    let address = format!("127.0.0.1:{}", free_port());
    let mut command = WasmqProcess::command(Path::new(WASMQ));
    command.args(["dashboard", "--redis", &env.url(), "--listen", &address]);
    let _dashboard = WasmqProcess::spawn(command);
    wait_for_http(&address, "/api/overview").await;

    let mut check = Command::new("node")
        .arg(&script)
        .env("DASHBOARD_URL", format!("http://{address}/"))
        .env("QUEUE", "default")
        .env("FLOW_ID", &root)
        .env("FLOW_TASKS", "4")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (Node.js 20 is needed)");
    let stdout = check.stdout.take().unwrap();
    // The worker starts only once the browser has drawn the waiting tree.
    let (drawn_tx, drawn_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("flow tree drawn") {
                let _ = drawn_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let drawn = tokio::task::spawn_blocking(move || drawn_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    let _worker = drawn
        .is_ok()
        .then(|| env.worker(plugins.path(), &["--no-scheduler"]));
    let output = tokio::task::spawn_blocking(move || check.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let seen = reader.join().unwrap();
    assert!(
        output.status.success(),
        "the browser check failed:\n{seen}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(seen.contains("flow completed live"), "{seen}");
}
