//! Flows and chains against a real Redis and real workers: a parent runs
//! exactly once, after its last child ended, with their outcomes; failure
//! policies; deleting a child counts as its end; cancelling a flow; a
//! malformed flow is refused whole with the path of the bad node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmq::{
    Backoff, ChildEnd, FailureKind, Flow, NativeTask, NewTask, OnChildFailure, Summary,
    TaskFailure, TaskState, Worker, WorkerError,
};

use crate::support::{Env, stderr, stdout};

/// Every run of every task, by id: what the handlers saw.
#[derive(Default, Clone)]
struct Runs {
    by_id: Arc<Mutex<HashMap<String, Vec<NativeTask>>>>,
}

impl Runs {
    fn record(&self, task: &NativeTask) {
        self.by_id
            .lock()
            .unwrap()
            .entry(task.message.id.clone())
            .or_default()
            .push(task.clone());
    }

    fn of(&self, id: &str) -> Vec<NativeTask> {
        self.by_id
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

/// A worker in this process with native handlers:
/// - `double`: returns its payload (a number) times two;
/// - `flaky`: fails its first two attempts, then returns 7;
/// - `fail`: gives up at once;
/// - `sum`: returns the sum of its children's results (numbers), or fails
///   on a child result that is not one;
/// - `append`: returns its children's results joined, then its payload
///   (a string);
/// - `note`: returns its payload (a batch's callbacks).
///
/// Each records its runs in `runs`.
fn start_worker(
    env: &Env,
    runs: &Runs,
    concurrency: usize,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<Summary, WorkerError>>,
) {
    let record = |runs: &Runs| {
        let runs = runs.clone();
        move |task: &NativeTask| runs.record(task)
    };
    let (r1, r2, r3, r4, r5, r6) = (
        record(runs),
        record(runs),
        record(runs),
        record(runs),
        record(runs),
        record(runs),
    );
    let worker = Worker::builder(env.client.broker().clone())
        .queues(wasmq::QueueSelection::parse("default,leaves,roots", false).unwrap())
        .concurrency(concurrency)
        .backoff(Backoff::Exponential {
            base: Duration::from_millis(20),
            max: Duration::from_millis(50),
        })
        .native("double", move |task: NativeTask| {
            r1(&task);
            async move {
                let n: i64 = task.json()?;
                Ok((n * 2).to_string().into_bytes())
            }
        })
        .native("flaky", move |task: NativeTask| {
            r2(&task);
            async move {
                if task.attempt <= 2 {
                    return Err(TaskFailure::new(FailureKind::HandlerError, "not yet"));
                }
                Ok(b"7".to_vec())
            }
        })
        .native("fail", move |task: NativeTask| {
            r3(&task);
            async move {
                Err(TaskFailure::new(
                    FailureKind::GaveUp,
                    "this child always fails",
                ))
            }
        })
        .native("sum", move |task: NativeTask| {
            r4(&task);
            async move {
                let mut total = 0i64;
                for child in &task.children {
                    if let Some(result) = &child.result {
                        let text = String::from_utf8_lossy(result);
                        total += text.parse::<i64>().map_err(|_| {
                            TaskFailure::new(FailureKind::GaveUp, format!("not a number: {text}"))
                        })?;
                    }
                }
                Ok(total.to_string().into_bytes())
            }
        })
        .native("append", move |task: NativeTask| {
            r5(&task);
            async move {
                let mut text = String::new();
                for child in &task.children {
                    text.push_str(&String::from_utf8_lossy(
                        child.result.as_deref().unwrap_or(b""),
                    ));
                }
                let own: String = task.json()?;
                text.push_str(&own);
                Ok(text.into_bytes())
            }
        })
        .native("note", move |task: NativeTask| {
            r6(&task);
            async move { Ok(task.payload().to_vec()) }
        })
        .build()
        .expect("the worker builds");
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    (stop, running)
}

fn task(task_type: &str, payload: &str) -> NewTask {
    NewTask::new(task_type, payload).unwrap()
}

async fn wait_for(env: &Env, queue: &str, id: &str, state: TaskState) -> wasmq::TaskInfo {
    env.wait_for_state(queue, id, state, Duration::from_secs(30))
        .await
}

/// A parent on one queue with 20 children on another, one of which fails
/// twice before it succeeds, runs once, after the last of them, with all
/// 20 results; 8 tasks run at once, so children complete concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_runs_once_after_its_last_child_with_every_result() {
    let env = Env::start().await;
    let runs = Runs::default();
    let mut flow = Flow::new(task("sum", "{}").queue("roots"));
    for n in 0..19 {
        flow = flow.child(Flow::new(task("double", &n.to_string()).queue("leaves")));
    }
    flow = flow.child(Flow::new(task("flaky", "{}").queue("leaves")));
    let enqueued = env.client.enqueue_flow(flow).await.unwrap();
    assert_eq!(enqueued.tasks, 21);
    assert_eq!(enqueued.root.state, TaskState::Waiting);
    assert_eq!(env.counts("roots").await.waiting, 1);

    let (stop, worker) = start_worker(&env, &runs, 8);
    let root = wait_for(&env, "roots", &enqueued.root.id, TaskState::Completed).await;
    // 2 * (0 + 1 + ... + 18) + 7
    assert_eq!(root.result.as_deref(), Some(b"349".as_slice()));
    let parent_runs = runs.of(&enqueued.root.id);
    assert_eq!(parent_runs.len(), 1, "the parent ran exactly once");
    let children = &parent_runs[0].children;
    assert_eq!(children.len(), 20);
    assert!(
        children
            .iter()
            .all(|child| child.state == ChildEnd::Completed)
    );
    assert_eq!(children[19].task_type, "flaky");
    assert_eq!(
        children[3].result.as_deref(),
        Some(b"6".as_slice()),
        "children keep their order"
    );
    assert_eq!(root.attempts, 1);
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// A chain: each step runs after the one before it, with its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_passes_each_result_to_the_next_step() {
    let env = Env::start().await;
    let runs = Runs::default();
    let chain = Flow::chain([
        task("append", r#""a""#),
        task("append", r#""b""#).queue("leaves"),
        task("append", r#""c""#),
    ])
    .unwrap();
    let root = env.client.enqueue_flow(chain).await.unwrap().root;
    let (stop, worker) = start_worker(&env, &runs, 4);
    let done = wait_for(&env, &root.queue, &root.id, TaskState::Completed).await;
    assert_eq!(done.result.as_deref(), Some(b"abc".as_slice()));
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Failure policies: under `fail-parent` the parent is archived as
/// `child-failed` and never runs; under `continue` it runs with the error
/// among the outcomes; under `ignore` it runs without that child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_policy_does_what_it_says() {
    let env = Env::start().await;
    let runs = Runs::default();
    let flow_with = |policy: OnChildFailure| {
        Flow::new(task("sum", "{}"))
            .child(Flow::new(task("double", "5")))
            .child_with(Flow::new(task("fail", "{}").max_retry(0)), policy)
    };
    let failing = env
        .client
        .enqueue_flow(flow_with(OnChildFailure::FailParent))
        .await
        .unwrap()
        .root;
    let continuing = env
        .client
        .enqueue_flow(flow_with(OnChildFailure::Continue))
        .await
        .unwrap()
        .root;
    let ignoring = env
        .client
        .enqueue_flow(flow_with(OnChildFailure::Ignore))
        .await
        .unwrap()
        .root;
    let (stop, worker) = start_worker(&env, &runs, 4);

    let failed = wait_for(&env, "default", &failing.id, TaskState::Archived).await;
    let error = failed.last_error.unwrap();
    assert_eq!(error.kind, FailureKind::ChildFailed);
    assert!(
        error.message.contains("this child always fails"),
        "{}",
        error.message
    );
    assert!(
        runs.of(&failing.id).is_empty(),
        "a failed parent never runs"
    );

    let continued = wait_for(&env, "default", &continuing.id, TaskState::Completed).await;
    assert_eq!(continued.result.as_deref(), Some(b"10".as_slice()));
    let seen = &runs.of(&continuing.id)[0].children;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].state, ChildEnd::Archived);
    assert_eq!(seen[1].error.as_ref().unwrap().kind, FailureKind::GaveUp);

    wait_for(&env, "default", &ignoring.id, TaskState::Completed).await;
    let seen = &runs.of(&ignoring.id)[0].children;
    assert_eq!(seen.len(), 1, "the ignored child's failure is left out");
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// No parent waits for a child that no longer exists: deleting a child
/// that has not run counts as its end, under its policy.
#[tokio::test]
async fn deleting_a_child_counts_as_its_end() {
    let env = Env::start().await;
    let flow = Flow::new(task("sum", "{}"))
        .child(Flow::new(task("double", "1").id("kept")))
        .child_with(
            Flow::new(task("double", "2").id("doomed")),
            OnChildFailure::Continue,
        );
    let root = env.client.enqueue_flow(flow).await.unwrap().root;
    let deleted = env.wasmq(&["task", "delete", "doomed", "--queue", "default"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));

    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 2);
    let done = wait_for(&env, "default", &root.id, TaskState::Completed).await;
    assert_eq!(done.result.as_deref(), Some(b"2".as_slice()));
    let seen = &runs.of(&root.id)[0].children;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].state, ChildEnd::Deleted);
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Removing the queue of a flow's children (`queue rm --force`) ends them
/// for their parents elsewhere: a `continue` parent runs with their
/// `deleted` outcomes, a `fail-parent` one is archived; a queue holding a
/// waiting parent is not removed without --force.
#[tokio::test]
async fn removing_a_childrens_queue_ends_them_for_their_parents() {
    let env = Env::start().await;
    let tolerant = Flow::new(task("sum", "{}").queue("roots")).child_with(
        Flow::new(task("double", "1").queue("leaves")),
        OnChildFailure::Continue,
    );
    let strict = Flow::new(task("sum", "{}").queue("roots"))
        .child(Flow::new(task("double", "1").queue("leaves")));
    let tolerant = env.client.enqueue_flow(tolerant).await.unwrap().root.id;
    let strict = env.client.enqueue_flow(strict).await.unwrap().root.id;
    let refused = env.wasmq(&["queue", "rm", "roots"]);
    assert!(
        !refused.status.success(),
        "a queue with waiting parents is not empty"
    );
    let removed = env.wasmq(&["queue", "rm", "leaves", "--force"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let failed = env.task("roots", &strict).await.unwrap();
    assert_eq!(failed.state, TaskState::Archived);
    assert_eq!(failed.last_error.unwrap().kind, FailureKind::ChildFailed);

    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 2);
    wait_for(&env, "roots", &tolerant, TaskState::Completed).await;
    let seen = &runs.of(&tolerant)[0].children;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].state, ChildEnd::Deleted);
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Retention removes a finished flow whole: once its root is forgotten, so
/// are its finished tasks on every queue, down to the grandchildren and
/// the archived child, however long their own retention; a task outside
/// the flow is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_a_finished_flow_whole() {
    let env = Env::start().await;
    let hour = Duration::from_secs(3600);
    let kept = |task: NewTask, id: &str| task.id(id).retention(hour);
    let flow = Flow::new(
        task("sum", "{}")
            .queue("roots")
            .id("root")
            .retention(Duration::from_secs(1)),
    )
    .child(Flow::new(kept(task("double", "1"), "child")))
    .child(
        Flow::new(kept(task("sum", "{}").queue("leaves"), "middle")).child(Flow::new(kept(
            task("double", "2").queue("leaves"),
            "grandchild",
        ))),
    )
    .child_with(
        Flow::new(task("fail", "{}").queue("leaves").id("failed").max_retry(0)),
        OnChildFailure::Ignore,
    );
    env.client.enqueue_flow(flow).await.unwrap();
    let outsider = env
        .client
        .enqueue(task("double", "3").queue("leaves").retention(hour))
        .await
        .unwrap()
        .id;
    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 4);
    wait_for(&env, "roots", "root", TaskState::Completed).await;
    let flow_tasks = [
        ("roots", "root"),
        ("default", "child"),
        ("leaves", "middle"),
        ("leaves", "grandchild"),
        ("leaves", "failed"),
    ];
    crate::support::wait_until(
        Duration::from_secs(60),
        "every task of the finished flow to be forgotten",
        || async {
            for (queue, id) in flow_tasks {
                if env.task(queue, id).await.is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let outsider = env.task("leaves", &outsider).await;
    assert_eq!(
        outsider.map(|info| info.state),
        Some(TaskState::Completed),
        "a task outside the flow keeps its own retention"
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// `wasmq flow add` enqueues a file's flow; `flow show` draws it with each
/// task's id and state; `flow cancel` ends every task that has not run and
/// the tree says so.
#[tokio::test]
async fn the_cli_adds_shows_and_cancels_a_flow() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    std::fs::write(
        &file,
        r#"{"type": "sum", "id": "report", "queue": "roots",
            "children": [
              {"type": "double", "payload": 1, "id": "a"},
              {"type": "sum", "id": "b", "on_failure": "continue",
               "children": [{"type": "double", "payload": 2, "id": "b1", "queue": "leaves"}]}
            ]}"#,
    )
    .unwrap();
    let added = env.wasmq(&["flow", "add", file.to_str().unwrap()]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(stdout(&added).trim(), "report");

    let shown = env.wasmq(&["flow", "show", "b1"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("sum  report  waiting"), "{text}");
    assert!(lines[1].contains("double  a  pending"), "{text}");
    assert!(
        lines[2].contains("sum  b  waiting") && lines[2].contains("[on failure: continue]"),
        "{text}"
    );
    assert!(
        lines[3].contains("double  b1  pending  (queue leaves)"),
        "{text}"
    );

    let cancelled = env.wasmq(&["flow", "cancel", "a"]);
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert_eq!(stdout(&cancelled).trim(), "cancelled 4 tasks of the flow");
    let json = env.wasmq(&["flow", "show", "report", "--json"]);
    let tree: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(tree["state"], "archived");
    assert_eq!(tree["children"][0]["state"], "archived");
    assert_eq!(tree["children"][1]["children"][0]["state"], "archived");
    let root = env.task("roots", "report").await.unwrap();
    assert_eq!(root.last_error.unwrap().kind, FailureKind::Cancelled);
    for queue in ["roots", "default", "leaves"] {
        assert_eq!(env.counts(queue).await.unfinished(), 0, "{queue}");
    }
}

/// A malformed flow is refused whole, naming the path of the bad node, and
/// nothing of it is enqueued: an unknown field, a duplicate id, a tree too
/// deep, one too large, a child that is not an object.
#[tokio::test]
async fn a_malformed_flow_is_refused_whole_with_the_path_of_the_bad_node() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let deep = (0..40).fold(r#"{"type": "leaf"}"#.to_string(), |inner, _| {
        format!(r#"{{"type": "node", "children": [{inner}]}}"#)
    });
    let wide = format!(
        r#"{{"type": "root", "children": [{}]}}"#,
        vec![r#"{"type": "leaf"}"#; 10_001].join(",")
    );
    let cases = [
        (
            r#"{"type": "a", "children": [{"type": "b"}, {"type": "c"}, {"type": "d"},
               {"type": "e", "children": [{"type": "f", "colour": "red"}]}]}"#.to_string(),
            "children[3].children[0]: unknown field `colour`",
        ),
        (
            r#"{"type": "a", "id": "x", "children": [{"type": "b", "children": [{"type": "c", "id": "x"}]}]}"#.to_string(),
            "children[0].children[0].id: the id \"x\" is also the id of root",
        ),
        (deep, "sits 33 levels below the root"),
        (wide, "more than 10000 tasks"),
        (
            r#"{"type": "a", "children": [3]}"#.to_string(),
            "children[0]: a task is a JSON object",
        ),
        (
            r#"{"type": "a", "on_failure": "ignore"}"#.to_string(),
            "root.on_failure",
        ),
    ];
    for (n, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{n}.json"));
        std::fs::write(&file, text).unwrap();
        let refused = env.wasmq(&["flow", "add", file.to_str().unwrap()]);
        assert!(!refused.status.success());
        let error = stderr(&refused);
        assert!(error.contains("nothing of it was enqueued"), "{error}");
        assert!(
            error.contains(expected),
            "expected {expected:?} in: {error}"
        );
    }
    // An id already taken in Redis is found only when the flow is written:
    // what was written before is taken back.
    env.client
        .enqueue(task("double", "1").id("taken").queue("leaves"))
        .await
        .unwrap();
    let flow = Flow::new(task("sum", "{}").queue("roots"))
        .child(Flow::new(task("double", "1")))
        .child(Flow::new(task("double", "1").id("taken").queue("leaves")));
    let err = env.client.enqueue_flow(flow).await.unwrap_err().to_string();
    assert!(
        err.contains("children[1].id") && err.contains("taken"),
        "{err}"
    );
    for queue in ["default", "roots"] {
        let counts = env.counts(queue).await;
        assert_eq!(counts.unfinished(), 0, "{queue}: {counts:?}");
    }
    assert_eq!(env.counts("leaves").await.pending, 1);
}

/// A report whose first delivery never happened (its deliverer died) is
/// found in the flow outbox by the queue's trim and delivered.
#[tokio::test]
async fn an_undelivered_report_is_delivered_by_the_trim() {
    let env = Env::start().await;
    let flow = Flow::new(task("sum", "{}")).child(Flow::new(task("double", "4").id("only")));
    let root = env.client.enqueue_flow(flow).await.unwrap().root;
    let mut redis = env.redis_connection().await;
    // What delete.lua writes, without the delivery that follows it: the
    // report of a child that ended while its deliverer died.
    let report = r#"{"parent":{"queue":"default","id":"ROOT","index":0,"on_failure":"continue"},"type":"double","state":"deleted","error":null,"at_ms":1}"#
        .replace("ROOT", &root.id);
    let _: () = redis::cmd("HSET")
        .arg("wasmq:{default}:flow_outbox")
        .arg("only")
        .arg(report)
        .query_async(&mut redis)
        .await
        .unwrap();
    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 2);
    let done = wait_for(&env, "default", &root.id, TaskState::Completed).await;
    // The child itself also ran and reported; the parent took one outcome
    // for it, whichever came first, and ran once.
    assert_eq!(runs.of(&root.id).len(), 1);
    assert!(done.result.is_some());
    let outbox: i64 = redis::cmd("HLEN")
        .arg("wasmq:{default}:flow_outbox")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "delivered reports leave the outbox");
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// A flow across queues is written in several calls. One whose producer
/// stopped after writing its parents, before its leaves, leaves no parent
/// waiting forever: the first call's note lists the leaves, and the trim
/// reports those never written to their parents as deleted. A flow written
/// whole leaves no note.
#[tokio::test]
async fn a_flow_whose_producer_died_mid_write_leaves_no_parent_waiting() {
    let env = Env::start().await;
    let mut redis = env.redis_connection().await;
    let outbox = |queue: &str| format!("wasmq:{{{queue}}}:flow_outbox");
    let tolerant = Flow::new(task("sum", "{}").queue("roots").id("tolerant"))
        .child_with(
            Flow::new(task("double", "1").queue("leaves").id("lost-1")),
            OnChildFailure::Continue,
        )
        .child(Flow::new(task("double", "2").queue("roots").id("kept")));
    let strict = Flow::new(task("sum", "{}").queue("roots").id("strict"))
        .child(Flow::new(task("double", "3").queue("leaves").id("lost-2")));
    env.client.enqueue_flow(tolerant).await.unwrap();
    env.client.enqueue_flow(strict).await.unwrap();
    let notes: i64 = redis::cmd("HLEN")
        .arg(outbox("roots"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(notes, 0, "a flow written whole leaves no note");

    // What a producer that died after the first call leaves: the parents
    // and the note of a minute ago, and none of the leaves of "leaves".
    for (root, leaf, index, policy) in [
        ("tolerant", "lost-1", 0, "continue"),
        ("strict", "lost-2", 0, "fail-parent"),
    ] {
        let note = format!(
            r#"1 [{{"queue":"leaves","id":"{leaf}","type":"double","parent":{{"queue":"roots","id":"{root}","index":{index},"on_failure":"{policy}"}}}}]"#
        );
        let _: () = redis::cmd("HSET")
            .arg(outbox("roots"))
            .arg(format!("{root} w"))
            .arg(note)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let _: () = redis::pipe()
        .cmd("HDEL")
        .arg("wasmq:{leaves}:msg")
        .arg(&["lost-1", "lost-2"][..])
        .cmd("HDEL")
        .arg("wasmq:{leaves}:state")
        .arg(&["lost-1", "lost-2"][..])
        .cmd("DEL")
        .arg("wasmq:{leaves}:pending")
        .query_async(&mut redis)
        .await
        .unwrap();

    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 2);
    wait_for(&env, "roots", "tolerant", TaskState::Completed).await;
    let seen = &runs.of("tolerant")[0].children;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].state, ChildEnd::Deleted, "{seen:?}");
    assert_eq!(seen[1].state, ChildEnd::Completed, "{seen:?}");
    let failed = wait_for(&env, "roots", "strict", TaskState::Archived).await;
    assert_eq!(failed.last_error.unwrap().kind, FailureKind::ChildFailed);
    let notes: i64 = redis::cmd("HLEN")
        .arg(outbox("roots"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(notes, 0, "the notes went once settled");
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Many flows completed by several workers at once: every parent runs
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_flows_under_several_workers_run_each_parent_once() {
    let env = Env::start().await;
    let runs = Runs::default();
    let mut roots = Vec::new();
    for _ in 0..30 {
        let mut flow = Flow::new(task("sum", "{}").queue("roots"));
        for n in 0..10 {
            flow = flow.child(Flow::new(task("double", &n.to_string()).queue("leaves")));
        }
        roots.push(env.client.enqueue_flow(flow).await.unwrap().root.id);
    }
    let workers: Vec<_> = (0..3).map(|_| start_worker(&env, &runs, 16)).collect();
    for id in &roots {
        let done = wait_for(&env, "roots", id, TaskState::Completed).await;
        assert_eq!(done.result.as_deref(), Some(b"90".as_slice()));
        assert_eq!(runs.of(id).len(), 1, "parent {id} ran once");
    }
    for (stop, worker) in workers {
        stop.cancel();
        worker.await.unwrap().unwrap();
    }
}

/// A batch: tasks on two queues, added before and after some have run;
/// once it is closed and all have ended, each callback runs exactly once
/// with the batch's counts; `on-success` only when none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_its_callbacks_once_after_it_closed_and_every_task_ended() {
    let env = Env::start().await;
    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 8);
    let callback = |tag: &str| Some(task("note", &format!(r#"{{"tag":"{tag}"}}"#)));
    let clean = env
        .client
        .open_batch(Some("clean"), callback("success"), callback("complete"))
        .await
        .unwrap();
    let doubles = |from: i64, queue: &str| -> Vec<NewTask> {
        (from..from + 5)
            .map(|n| task("double", &n.to_string()).queue(queue))
            .collect()
    };
    for outcome in env
        .client
        .add_to_batch(&clean, doubles(0, "leaves"))
        .await
        .unwrap()
    {
        outcome.unwrap();
    }
    // The first five may all have run before the rest are added: the batch
    // is not done until it is closed.
    for outcome in env
        .client
        .add_to_batch(&clean, doubles(5, "default"))
        .await
        .unwrap()
    {
        outcome.unwrap();
    }
    let status = env.client.close_batch(&clean).await.unwrap();
    assert!(status.closed);
    let success = env
        .wait_for_state(
            "default",
            "clean.on-success",
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let complete = env
        .wait_for_state(
            "default",
            "clean.on-complete",
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let payload: serde_json::Value =
        serde_json::from_slice(complete.result.as_deref().unwrap()).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"batch": {"id": "clean", "total": 10, "succeeded": 10, "failed": 0},
                           "payload": {"tag": "complete"}})
    );
    assert!(success.result.is_some());
    assert_eq!(runs.of("clean.on-success").len(), 1);
    assert_eq!(runs.of("clean.on-complete").len(), 1);
    let refused = env
        .client
        .add_to_batch(&clean, doubles(0, "default"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("closed"), "{refused}");

    let failing = env
        .client
        .open_batch(None, callback("success"), callback("complete"))
        .await
        .unwrap();
    let mut tasks = doubles(0, "leaves");
    tasks.push(task("fail", "{}").max_retry(0));
    env.client.add_to_batch(&failing, tasks).await.unwrap();
    env.client.close_batch(&failing).await.unwrap();
    let complete = env
        .wait_for_state(
            "default",
            &format!("{failing}.on-complete"),
            TaskState::Completed,
            Duration::from_secs(30),
        )
        .await;
    let payload: serde_json::Value =
        serde_json::from_slice(complete.result.as_deref().unwrap()).unwrap();
    assert_eq!(payload["batch"]["failed"], 1);
    assert_eq!(payload["batch"]["succeeded"], 5);
    let status = env.client.batch(&failing).await.unwrap().unwrap();
    assert!(status.done);
    assert!(
        env.task("default", &format!("{failing}.on-success"))
            .await
            .is_none(),
        "on-success never runs for a batch with a failure"
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// `wasmq batch open/add/close/show`: an empty batch closed at once runs
/// its callback; a bad line is reported by number.
#[tokio::test]
async fn the_cli_opens_fills_and_closes_a_batch() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let opened = env.wasmq(&[
        "batch",
        "open",
        "--id",
        "imports",
        "--on-complete",
        r#"{"type": "note", "queue": "roots"}"#,
    ]);
    assert!(opened.status.success(), "{}", stderr(&opened));
    assert_eq!(stdout(&opened).trim(), "imports");
    let file = dir.path().join("rows.jsonl");
    std::fs::write(
        &file,
        "{\"type\": \"double\", \"payload\": 1}\n{\"type\": \"double\", \"colour\": 1}\n",
    )
    .unwrap();
    let added = env.wasmq(&["batch", "add", "imports", file.to_str().unwrap()]);
    assert!(!added.status.success());
    assert!(
        stderr(&added).contains("line 2: not a task: unknown field `colour`"),
        "{}",
        stderr(&added)
    );
    assert!(
        stdout(&added).contains("added 1 tasks"),
        "{}",
        stdout(&added)
    );
    let shown = env.wasmq(&["batch", "show", "imports", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(
        (status["total"].as_u64(), status["closed"].as_bool()),
        (Some(1), Some(false))
    );
    let closed = env.wasmq(&["batch", "close", "imports"]);
    assert!(closed.status.success(), "{}", stderr(&closed));

    let runs = Runs::default();
    let (stop, worker) = start_worker(&env, &runs, 2);
    env.wait_for_state(
        "roots",
        "imports.on-complete",
        TaskState::Completed,
        Duration::from_secs(30),
    )
    .await;
    let missing = env.wasmq(&["batch", "open", "--id", "x"]);
    assert!(
        stderr(&missing).contains("needs a callback"),
        "{}",
        stderr(&missing)
    );
    stop.cancel();
    worker.await.unwrap().unwrap();
}

/// Flows through real workers while one is killed (kill -9) mid-child and
/// Redis (append-only, fsync always) is restarted: every parent completes,
/// after all its children, having been made runnable once (a parent's
/// second attempt, if any, is the lease of a killed worker taken back,
/// never a second release), with every child's outcome recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_survive_a_killed_worker_and_a_redis_restart() {
    let mut env = Env::start_with(wasmq::dev::RedisOptions {
        appendonly: true,
        ..wasmq::dev::RedisOptions::default()
    })
    .await;
    let plugins = wasmq_testkit::PluginDir::with(&[wasmq_testkit::BURN_COMPONENT]);
    let burn = |ms: u64| task("burn", &format!(r#"{{"ms":{ms}}}"#));
    let mut roots = Vec::new();
    for _ in 0..12 {
        let mut flow = Flow::new(burn(5));
        for _ in 0..10 {
            flow = flow.child(Flow::new(burn(150)));
        }
        roots.push(env.client.enqueue_flow(flow).await.unwrap().root.id);
    }
    let args = [
        "--concurrency",
        "6",
        "--lease",
        "1s",
        "--probation-strikes",
        "0",
    ];
    let mut doomed = env.worker(plugins.path(), &args);
    let _survivors = [
        env.worker(plugins.path(), &args),
        env.worker(plugins.path(), &args),
    ];
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "40 children done",
        |c| c.completed >= 40,
    )
    .await;
    doomed.kill9();
    env.wait_for_counts(
        "default",
        Duration::from_secs(60),
        "70 children done",
        |c| c.completed >= 70,
    )
    .await;
    env.redis.restart().expect("redis-server restarts");
    for id in &roots {
        // Redis may still be starting: an error only means "not yet".
        crate::support::wait_until(
            Duration::from_secs(120),
            &format!("parent {id} to complete"),
            || async {
                env.client
                    .task(id, Some("default"))
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|info| info.state == TaskState::Completed)
            },
        )
        .await;
        let mut root = None;
        while root.is_none() {
            root = env.client.task(id, Some("default")).await.ok().flatten();
        }
        let root = root.unwrap();
        if root.attempts > 1 {
            assert_eq!(
                root.last_error.map(|error| error.kind),
                Some(FailureKind::LeaseExpired),
                "a parent ran again only because its worker was killed"
            );
        }
        let mut tree = None;
        while tree.is_none() {
            tree = env.client.flow(id, Some("default")).await.ok().flatten();
        }
        let tree = tree.unwrap();
        assert_eq!(tree.children.len(), 10);
        assert!(
            tree.children.iter().all(|child| child
                .outcome
                .as_ref()
                .is_some_and(|o| o.state == ChildEnd::Completed)),
            "every child's end reached its parent: {tree:?}"
        );
    }
    let counts = env.counts("default").await;
    assert_eq!(counts.unfinished() + counts.archived, 0, "{counts:?}");
}
