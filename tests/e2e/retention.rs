//! Keeping the plugin registry small: rolling back to a named version,
//! `wasmq plugin gc`, and the fleet's retention applied by workers.

use std::time::Duration;

use wasmq::{NewTask, TaskState};
use wasmq_testkit::*;

use crate::support::{Env, stderr, stdout, wait_until, wasmq};

/// The component at `component` rebuilt: the same plugin and version,
/// another content hash.
fn variant(component: &str, n: u8) -> Vec<u8> {
    let bytes = std::fs::read(component).expect("the test kit built it");
    with_custom_section(&bytes, "wasmq-test-variant", &[n])
}

/// Runs `wasmq ARGS --redis URL`; returns (success, stdout, stderr).
async fn run(env: &Env, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend(["--redis".to_string(), env.url()]);
    let output = tokio::task::spawn_blocking(move || wasmq(&all))
        .await
        .expect("the command runs");
    (output.status.success(), stdout(&output), stderr(&output))
}

/// Deploys `bytes` as a component file; returns its digest.
async fn deploy(env: &Env, dir: &std::path::Path, bytes: &[u8], extra: &[&str]) -> String {
    let digest = digest_of(bytes);
    let path = dir.join(format!("{}.wasm", &digest[..12]));
    std::fs::write(&path, bytes).unwrap();
    let mut args = vec!["plugin", "deploy", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (ok, out, err) = run(env, &args).await;
    assert!(ok || !extra.is_empty(), "deploy failed: {out}\n{err}");
    digest
}

async fn current(env: &Env) -> Option<String> {
    let mut redis = env.redis_connection().await;
    redis::cmd("HGET")
        .arg("wasmq:{plugins}:current")
        .arg("greeter")
        .query_async(&mut redis)
        .await
        .unwrap()
}

async fn stored(env: &Env, digest: &str) -> bool {
    let mut redis = env.redis_connection().await;
    let copy: Option<String> = redis::cmd("HGET")
        .arg("wasmq:{plugins}:stored")
        .arg(digest)
        .query_async(&mut redis)
        .await
        .unwrap();
    let Some(copy) = copy else { return false };
    redis::cmd("EXISTS")
        .arg(format!("wasmq:{{blob:{digest}}}:{copy}"))
        .query_async::<i64>(&mut redis)
        .await
        .unwrap()
        == 1
}

/// The version that answers a `greet` task.
async fn served_version(env: &Env) -> String {
    let task = NewTask::new("greet", r#"{"name":"r"}"#).unwrap();
    let id = env.client.enqueue(task).await.expect("enqueued").id;
    env.wait_for_state(
        "default",
        &id,
        TaskState::Completed,
        Duration::from_secs(30),
    )
    .await;
    let info = env.task("default", &id).await.expect("the task is kept");
    let result: serde_json::Value =
        serde_json::from_slice(info.result.as_deref().unwrap()).unwrap();
    result["version"].as_str().unwrap().to_string()
}

/// `rollback --to` puts back the version or content hash it names, refuses
/// one the history does not hold naming the ones it does, and says so when
/// the plugin already runs it; the fleet serves what it put back.
#[tokio::test]
async fn a_rollback_puts_back_the_version_or_hash_it_names() {
    let env = Env::start().await;
    let _worker = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = deploy(
        &env,
        dir.path(),
        &std::fs::read(GREETER_COMPONENT).unwrap(),
        &[],
    )
    .await;
    let v2 = deploy(
        &env,
        dir.path(),
        &std::fs::read(GREETER_NEXT_COMPONENT).unwrap(),
        &[],
    )
    .await;
    let v1_rebuilt = deploy(&env, dir.path(), &variant(GREETER_COMPONENT, 1), &[]).await;
    assert_eq!(current(&env).await.as_deref(), Some(v1_rebuilt.as_str()));

    let (ok, out, err) = run(&env, &["plugin", "rollback", "greeter", "--to", "0.2.0"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(current(&env).await, Some(v2.clone()));
    assert_eq!(served_version(&env).await, "0.2.0");

    let (ok, out, err) = run(&env, &["plugin", "rollback", "greeter", "--to", &v1[..8]]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(current(&env).await, Some(v1.clone()));
    assert_eq!(served_version(&env).await, "0.1.0");

    let (ok, _, err) = run(&env, &["plugin", "rollback", "greeter", "--to", "9.9.9"]).await;
    assert!(!ok);
    assert!(
        err.contains(r#"no version or content hash "9.9.9""#)
            && err.contains("0.2.0 (")
            && err.contains(&v1[..12]),
        "{err}"
    );
    let (ok, _, err) = run(&env, &["plugin", "rollback", "greeter", "--to", &v1[..8]]).await;
    assert!(!ok);
    assert!(err.contains("already runs 0.1.0"), "{err}");
    assert_eq!(
        current(&env).await,
        Some(v1),
        "a refused rollback changes nothing"
    );
}

/// `plugin gc --keep 2` deletes the components of older versions and trims
/// their history (a dry run first changes nothing), but keeps a version a
/// live worker still runs, even one out of the history; rolling back within
/// what is kept still works, to a deleted version is refused.
#[tokio::test]
async fn gc_deletes_only_what_no_kept_version_or_live_worker_needs() {
    let env = Env::start().await;
    let frozen = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    let dir = tempfile::tempdir().unwrap();
    let d1 = deploy(&env, dir.path(), &variant(GREETER_COMPONENT, 1), &[]).await;
    // The worker freezes running d1: its heartbeat (alive for 15 s) still
    // says so while the next versions are deployed without it.
    frozen.signal(libc::SIGSTOP);
    let d2 = deploy(
        &env,
        dir.path(),
        &variant(GREETER_COMPONENT, 2),
        &["--wait", "100ms"],
    )
    .await;
    let d3 = deploy(
        &env,
        dir.path(),
        &variant(GREETER_COMPONENT, 3),
        &["--wait", "100ms"],
    )
    .await;
    let d4 = deploy(
        &env,
        dir.path(),
        &variant(GREETER_COMPONENT, 4),
        &["--wait", "100ms"],
    )
    .await;

    let (ok, out, err) = run(&env, &["plugin", "gc", "--keep", "2", "--dry-run"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!("would delete sha256:{}", &d2[..12])),
        "{out}"
    );
    assert!(out.contains("would delete 1 component(s)"), "{out}");
    for digest in [&d1, &d2, &d3, &d4] {
        assert!(stored(&env, digest).await, "a dry run deletes nothing");
    }

    let (ok, out, err) = run(&env, &["plugin", "gc", "--keep", "2"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        !stored(&env, &d2).await,
        "d2: no kept version, no worker: {out}"
    );
    assert!(
        stored(&env, &d1).await,
        "d1: the frozen worker still runs it"
    );
    assert!(
        stored(&env, &d3).await && stored(&env, &d4).await,
        "the newest two are kept"
    );
    let (_, history, _) = run(&env, &["plugin", "history", "greeter"]).await;
    assert!(
        !history.contains(&d2[..12]) && history.contains(&d3[..12]),
        "{history}"
    );

    let (ok, _, err) = run(&env, &["plugin", "rollback", "greeter", "--to", &d2[..8]]).await;
    assert!(!ok && err.contains("no version or content hash"), "{err}");

    // Thawed, the worker takes the current version; d1 is then garbage.
    frozen.signal(libc::SIGCONT);
    wait_until(
        Duration::from_secs(20),
        "d1 collected once no worker runs it",
        || async {
            run(&env, &["plugin", "gc", "--keep", "2"]).await;
            !stored(&env, &d1).await
        },
    )
    .await;
    let (ok, out, err) = run(&env, &["plugin", "rollback", "greeter"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(current(&env).await, Some(d3));
    assert_eq!(served_version(&env).await, "0.1.0");
}

/// With `plugin retention 1`, workers delete the replaced version's
/// component themselves after a deploy; bad settings are refused naming
/// what to write.
#[tokio::test]
async fn workers_apply_the_fleets_retention_after_a_deploy() {
    let env = Env::start().await;
    let _worker = env.bare_worker(&[]);
    env.wait_for_workers(1).await;
    for (bad, says) in [
        ("0", "keep 1 or more"),
        ("fast", "not a number of versions"),
    ] {
        let (ok, _, err) = run(&env, &["plugin", "retention", bad]).await;
        assert!(!ok && err.contains(says), "{bad}: {err}");
    }
    let (ok, out, _) = run(&env, &["plugin", "retention"]).await;
    assert!(ok && out.starts_with("off"), "{out}");
    let (ok, out, err) = run(&env, &["plugin", "retention", "1"]).await;
    assert!(ok, "{out}\n{err}");

    let dir = tempfile::tempdir().unwrap();
    let d1 = deploy(&env, dir.path(), &variant(GREETER_COMPONENT, 1), &[]).await;
    let d2 = deploy(&env, dir.path(), &variant(GREETER_COMPONENT, 2), &[]).await;
    wait_until(Duration::from_secs(20), "the worker deletes d1", || async {
        !stored(&env, &d1).await
    })
    .await;
    assert!(stored(&env, &d2).await, "the current version stays");
    assert_eq!(served_version(&env).await, "0.1.0");
}
