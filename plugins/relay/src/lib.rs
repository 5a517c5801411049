//! A plugin that uses every capability, as its manifest (`wasmq.toml`)
//! grants them:
//!
//! - `relay:fetch` `{"url": "http://127.0.0.1:8080/x"}`: GETs the URL
//!   (loopback only) and returns its status, size and the start of its body;
//! - `relay:count` `{"key": "k"}`: adds one to a counter in the plugin's
//!   key-value store and returns it;
//! - `relay:fanout` `{"n": 3}`: enqueues `n` echo tasks (at most 5);
//! - `relay:env`: returns the environment values it was granted;
//! - `relay:flow` `{"n": 3}`: starts a flow of `n` echo tasks under a
//!   `relay:gather` parent, and returns the parent's id;
//! - `relay:gather`: returns its children's results (a flow parent).
//! - `relay:split` `{"n": 2, "rounds": 2}`: adds `n` echo children to
//!   itself, `rounds` times (each time it runs again after they ended), then
//!   returns every child's result; with `"fail_after_adding": true` its
//!   first attempt fails after adding them (so they are dropped).
//! - `relay:progress` `{"steps": 4, "spins": 1000000}`: works in `steps`
//!   (`spins` rounds of arithmetic each), reporting its progress after each
//!   (`done` in percent, the step as its note) and heartbeating, and
//!   returns the steps.
//!
//! Any of them with `"fail_attempts": n` first fails its first `n`
//! attempts (retryably), to show retries.

use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, FollowUp, Handler, Task, enqueue, flow, http, kv, progress};

#[derive(Deserialize)]
struct Params {
    url: Option<String>,
    key: Option<String>,
    n: Option<u32>,
    rounds: Option<u32>,
    fail_after_adding: Option<bool>,
    steps: Option<u32>,
    spins: Option<u64>,
    fail_attempts: Option<u32>,
}

#[derive(Serialize, Default)]
struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    enqueued: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u32>,
}

struct Relay;

impl Handler for Relay {
    type Payload = Params;
    type Output = Outcome;

    fn handle(task: &Task, params: Params) -> Result<Outcome, Failure> {
        let mut outcome = Outcome::default();
        if task.attempt <= params.fail_attempts.unwrap_or(0) {
            return Err(Failure::retry(format!(
                "failing attempt {} on purpose (fail_attempts)",
                task.attempt
            )));
        }
        match task.task_type.as_str() {
            "relay:fetch" => {
                let url = params
                    .url
                    .ok_or_else(|| Failure::give_up("relay:fetch needs a url"))?;
                let response = http::get(&url)?;
                outcome.status = Some(response.status);
                outcome.bytes = Some(response.body.len());
                outcome.body = Some(response.text().chars().take(200).collect());
            }
            "relay:count" => {
                let key = params.key.unwrap_or_else(|| "count".into());
                let count = kv::increment(&key, 1)?;
                kv::set("last", key.as_bytes())?;
                let last = kv::get("last")?.unwrap_or_default();
                if last != key.as_bytes() {
                    return Err(Failure::retry(
                        "the key-value store did not keep what was set",
                    ));
                }
                outcome.count = Some(count);
            }
            "relay:fanout" => {
                for n in 0..params.n.unwrap_or(1) {
                    let follow_up =
                        FollowUp::new("echo", &serde_json::json!({ "from": task.id, "n": n }))?;
                    outcome.enqueued.push(enqueue(follow_up)?);
                }
            }
            "relay:flow" => {
                let children: Vec<serde_json::Value> = (0..params.n.unwrap_or(1))
                    .map(|n| serde_json::json!({"type": "echo", "payload": {"n": n}}))
                    .collect();
                let root = serde_json::json!({"type": "relay:gather", "children": children});
                outcome.flow = Some(flow::start(&root)?);
            }
            "relay:gather" => {
                for child in flow::children() {
                    outcome.children.push(child.json()?);
                }
            }
            "relay:split" => {
                let (n, rounds) = (params.n.unwrap_or(1), params.rounds.unwrap_or(1));
                let children = flow::children();
                if children.len() < (n * rounds) as usize {
                    let first = children.len() as u32;
                    let more: Vec<serde_json::Value> = (first..first + n)
                        .map(|k| serde_json::json!({"type": "echo", "payload": {"n": k}}))
                        .collect();
                    flow::add_children(&more)?;
                    if params.fail_after_adding.unwrap_or(false) && task.attempt == 1 {
                        return Err(Failure::retry(
                            "failing after adding children, on purpose (fail_after_adding)",
                        ));
                    }
                } else {
                    for child in children {
                        outcome.children.push(child.json()?);
                    }
                }
            }
            "relay:progress" => {
                let steps = params.steps.unwrap_or(4).max(1);
                let mut state = 1u64;
                for step in 1..=steps {
                    for spin in 0..params.spins.unwrap_or(1_000_000) {
                        state = std::hint::black_box(
                            state.wrapping_mul(6364136223846793005).wrapping_add(spin),
                        );
                    }
                    let done = f64::from(step) * 100.0 / f64::from(steps);
                    progress::report(done, &serde_json::json!({ "step": step }))?;
                    progress::heartbeat();
                }
                outcome.steps = Some(steps);
            }
            "relay:env" => {
                let mut env: Vec<(String, String)> = std::env::vars().collect();
                env.sort();
                outcome.env = env;
            }
            other => return Err(Failure::give_up(format!("relay does not handle {other}"))),
        }
        wasmq_guest::info!("{} done", task.task_type);
        Ok(outcome)
    }
}

wasmq_guest::plugin! {
    handler: Relay,
    name: "relay",
    task_types: [
        "relay:fetch",
        "relay:count",
        "relay:fanout",
        "relay:env",
        "relay:flow",
        "relay:gather",
        "relay:split",
        "relay:progress",
    ],
    manifest: "wasmq.toml",
}
