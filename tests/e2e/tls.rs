//! TLS: a real redis-server (one server, a Cluster, Sentinels) serving
//! TLS with certificates made by the test; the CLI, a worker and the
//! Python and Node clients enqueue and run tasks over it, and a wrong CA,
//! an expired certificate or a missing client certificate is refused with
//! a message that says which.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmq::Client;
use wasmq::{ConnectOptions, TlsOptions};
use wasmq_testkit::{ECHO_COMPONENT, PluginDir};

use crate::conformance::{Flavour, RunnerTls, judge, repo, run_child_runner, start_worker};
use crate::support::cluster::RedisCluster;
use crate::support::sentinel::SentinelSetup;
use crate::support::tls::{Certs, TlsRedis};
use crate::support::{WASMQ, WasmqProcess, stderr, stdout, wait_until};

/// The cases each client runs over TLS: an enqueue run by the worker, a
/// batch across queues, look-ups.
const CASES: &[&str] = &["defaults", "queue", "batch", "lookup"];

fn tls_args(certs: &Certs) -> Vec<String> {
    vec![
        "--tls-ca".into(),
        certs.path("ca.pem").display().to_string(),
    ]
}

fn wasmq_cmd(args: &[&str], extra: &[String]) -> std::process::Output {
    WasmqProcess::command(Path::new(WASMQ))
        .args(args)
        .args(extra)
        .output()
        .expect("wasmq runs")
}

async fn reader(url: &str, certs: &Certs) -> Client {
    Client::connect_with(
        url,
        &ConnectOptions {
            tls: TlsOptions {
                ca_file: Some(certs.path("ca.pem")),
                ..TlsOptions::default()
            },
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("the TLS Redis answers")
}

/// The CLI enqueues over TLS, the worker runs the task, `task show` sees
/// it completed; then the Python and Node clients pass the TLS cases.
async fn everything_works_over(url: &str, certs: &Certs, plugins: &PluginDir) {
    let ca = certs.path("ca.pem").display().to_string();
    let worker = start_worker(url, plugins.path(), &["--tls-ca", &ca]);
    let enqueued = wasmq_cmd(
        &["enqueue", "echo", r#"{"over":"tls"}"#, "--redis", url],
        &tls_args(certs),
    );
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let id = stdout(&enqueued);
    let reader = reader(url, certs).await;
    wait_until(
        Duration::from_secs(30),
        &format!("task {id} to complete over TLS (worker: {})", worker.log()),
        || async {
            reader
                .task(&id, Some("default"))
                .await
                .ok()
                .flatten()
                .is_some_and(|info| info.state == wasmq::TaskState::Completed)
        },
    )
    .await;
    // The CA from the environment, as an operator's shell would set it.
    let shown = WasmqProcess::command(Path::new(WASMQ))
        .args(["task", "show", &id, "--redis", url, "--json"])
        .env("WASMQ_TLS_CA", &ca)
        .output()
        .expect("wasmq runs");
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        stdout(&shown).contains(r#""over":"tls""#),
        "{}",
        stdout(&shown)
    );

    let tls = RunnerTls {
        ca: Some(certs.path("ca.pem")),
        ..RunnerTls::default()
    };
    let mut problems = Vec::new();
    for flavour in [Flavour::Python, Flavour::Node] {
        let report = run_child_runner(flavour, url, &tls, CASES);
        problems.extend(judge(&report, &reader, CASES).await.1);
        // Each client starts from clean queues.
        clear(url, certs);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(worker);
}

/// Removes every case queue (`wasmq queue rm --force`, over TLS), so that
/// the next client starts afresh.
fn clear(url: &str, certs: &Certs) {
    let queues = crate::conformance::cases()["queues"].clone();
    for queue in queues.as_array().expect("queues") {
        let queue = queue.as_str().expect("a name");
        // Nothing runs by now but tasks scheduled for later: force. A queue
        // a client never used does not exist: that is fine too.
        wasmq_cmd(
            &["queue", "rm", queue, "--force", "--redis", url],
            &tls_args(certs),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tls_server_serves_the_cli_a_worker_and_every_client() {
    let certs = Certs::make();
    let redis = TlsRedis::start(&certs, "server", "optional");
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    everything_works_over(&redis.url(), &certs, &plugins).await;

    // The certificate names localhost too; without a CA option the system
    // roots do not know the test CA.
    let by_name = wasmq_cmd(
        &["queue", "ls", "--redis", &redis.url_by_name()],
        &tls_args(&certs),
    );
    assert!(by_name.status.success(), "{}", stderr(&by_name));
    let no_ca = wasmq_cmd(&["queue", "ls", "--redis", &redis.url()], &[]);
    assert!(!no_ca.status.success());
    assert!(
        stderr(&no_ca).contains("not signed by a CA"),
        "{}",
        stderr(&no_ca)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_and_tls_sentinels_serve_every_client() {
    let certs = Certs::make();
    let plugins = PluginDir::with(&[ECHO_COMPONENT]);
    {
        let cluster = RedisCluster::start_with(Some(&certs));
        everything_works_over(&cluster.url(), &certs, &plugins).await;
    }
    let sentinels = SentinelSetup::start_with(Some(&certs));
    everything_works_over(&sentinels.url(), &certs, &plugins).await;
}

/// Runs `code` with the Python client; returns its stdout.
fn python(code: &str) -> String {
    let output = Command::new("python3")
        .args(["-c", code])
        .env("PYTHONPATH", repo().join("clients/python/src"))
        .output()
        .expect("python3 runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `code` (an ES module) with the Node client; returns its stdout.
fn node(code: &str) -> String {
    let output = Command::new("node")
        .args(["--input-type=module", "-e", code])
        .current_dir(repo())
        .output()
        .expect("node runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What each client says when connecting to `url` with `ca` (and, with
/// `client_cert`, the client certificate).
fn refusals(url: &str, certs: &Certs, ca: &str, client_cert: bool) -> [String; 3] {
    let ca_path = certs.path(ca).display().to_string();
    let (cert, key) = (
        certs.path("client.pem").display().to_string(),
        certs.path("client.key").display().to_string(),
    );
    let mut cli_args = vec!["--tls-ca".to_string(), ca_path.clone()];
    let (py_cert, node_cert) = if client_cert {
        cli_args.extend([
            "--tls-cert".into(),
            cert.clone(),
            "--tls-key".into(),
            key.clone(),
        ]);
        (
            format!(", tls_cert={cert:?}, tls_key={key:?}"),
            format!(", tlsCert: {cert:?}, tlsKey: {key:?}"),
        )
    } else {
        (String::new(), String::new())
    };
    let cli = wasmq_cmd(&["queue", "ls", "--redis", url], &cli_args);
    let cli = if cli.status.success() {
        "connected".to_string()
    } else {
        stderr(&cli)
    };
    let python = python(&format!(
        "import wasmq\ntry:\n    wasmq.Client({url:?}, tls_ca={ca_path:?}{py_cert}).enqueue('echo', {{}})\n    print('connected')\nexcept wasmq.TlsError as err:\n    print('TlsError', err)\n"
    ));
    let node = node(&format!(
        "import {{ Client, TlsError }} from './clients/node/dist/index.js';\ntry {{ const c = await Client.connect({url:?}, {{ tlsCa: {ca_path:?}{node_cert} }}); await c.enqueue({{ type: 'echo' }}); await c.close(); console.log('connected'); }} catch (err) {{ console.log(err instanceof TlsError ? 'TlsError' : err.constructor.name, err.message); }}"
    ));
    [cli, python, node]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_an_expired_certificate_or_no_client_certificate_is_refused_saying_which() {
    let certs = Certs::make();
    let good = TlsRedis::start(&certs, "server", "optional");
    let expired = TlsRedis::start(&certs, "expired", "optional");
    let strict = TlsRedis::start(&certs, "server", "yes");

    for (who, seen) in
        ["cli", "python", "node"]
            .iter()
            .zip(refusals(&good.url(), &certs, "ca.pem", false))
    {
        assert!(seen.contains("connected"), "{who} over good TLS: {seen}");
    }
    for (who, seen) in
        ["cli", "python", "node"]
            .iter()
            .zip(refusals(&good.url(), &certs, "other-ca.pem", false))
    {
        assert!(
            seen.contains("not signed by a CA") && !seen.contains("connected"),
            "{who} with the wrong CA: {seen}"
        );
        if *who == "cli" {
            assert!(seen.contains("--tls-ca"), "the CLI names its flag: {seen}");
        }
    }
    for (who, seen) in
        ["cli", "python", "node"]
            .iter()
            .zip(refusals(&expired.url(), &certs, "ca.pem", false))
    {
        assert!(
            seen.contains("has expired") && !seen.contains("connected"),
            "{who} with an expired server certificate: {seen}"
        );
    }
    for (who, seen) in
        ["cli", "python", "node"]
            .iter()
            .zip(refusals(&strict.url(), &certs, "ca.pem", true))
    {
        assert!(
            seen.contains("connected"),
            "{who} with a client certificate: {seen}"
        );
    }
    let [cli, ..] = refusals(&strict.url(), &certs, "ca.pem", false);
    assert!(
        cli.contains("requires a client certificate") && cli.contains("--tls-cert"),
        "the CLI without a client certificate says so and names its flags: {cli}"
    );
}
