//! A plugin that uses every capability, as its manifest (`wasmq.toml`)
//! grants them:
//!
//! - `relay:fetch` `{"url": "http://127.0.0.1:8080/x"}`: GETs the URL
//!   (loopback only) and returns its status, size and the start of its body;
//! - `relay:count` `{"key": "k"}`: adds one to a counter in the plugin's
//!   key-value store and returns it;
//! - `relay:fanout` `{"n": 3}`: enqueues `n` echo tasks (at most 5);
//! - `relay:env`: returns the environment values it was granted.

use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, FollowUp, Handler, Task, enqueue, http, kv};

#[derive(Deserialize)]
struct Params {
    url: Option<String>,
    key: Option<String>,
    n: Option<u32>,
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
}

struct Relay;

impl Handler for Relay {
    type Payload = Params;
    type Output = Outcome;

    fn handle(task: &Task, params: Params) -> Result<Outcome, Failure> {
        let mut outcome = Outcome::default();
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
    task_types: ["relay:fetch", "relay:count", "relay:fanout", "relay:env"],
    manifest: "wasmq.toml",
}
