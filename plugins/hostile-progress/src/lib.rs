//! Hostile: abuses the `progress` and `flow` imports through the raw
//! bindings. It reports progress that is not a finite number, a note over
//! 1 KiB and a note that is not JSON (it panics, failing as a panic, if the
//! host accepts one), floods `reports` reports (default 20,000) each with
//! a heartbeat, reports `{"last":true}` at 100, and then adds children:
//! with `"ungranted": true`, one of a task type its manifest does not
//! grant; otherwise ten echo tasks against a quota of three.

use serde::Deserialize;
use wasmq_guest::bindings::wasmq::plugin::{flow, progress};
use wasmq_guest::{CapabilityError, Failure, Handler, Task};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    ungranted: bool,
    #[serde(default = "twenty_thousand")]
    reports: u32,
}

fn twenty_thousand() -> u32 {
    20_000
}

struct Abuse;

impl Handler for Abuse {
    type Payload = Params;
    type Output = u32;

    fn handle(_task: &Task, params: Params) -> Result<u32, Failure> {
        let huge = format!("\"{}\"", "x".repeat(2048));
        let refused = [
            (f64::NAN, "null", "a NaN"),
            (f64::INFINITY, "null", "an infinite number"),
            (1.0, huge.as_str(), "a note over 1 KiB"),
            (1.0, "{not json", "a note that is not JSON"),
        ];
        for (done, note, what) in refused {
            if progress::report(done, note).is_ok() {
                panic!("the host accepted {what}");
            }
        }
        for n in 0..params.reports {
            progress::report(f64::from(n), &format!(r#"{{"n":{n}}}"#)).map_err(CapabilityError)?;
            progress::heartbeat();
        }
        progress::report(100.0, r#"{"last":true}"#).map_err(CapabilityError)?;
        let children: Vec<serde_json::Value> = if params.ungranted {
            vec![serde_json::json!({"type": "secret:thing", "payload": {}})]
        } else {
            (0..10)
                .map(|n| serde_json::json!({"type": "echo", "payload": {"n": n}}))
                .collect()
        };
        let text = serde_json::to_vec(&children).expect("JSON values encode");
        Ok(flow::add_children(&text).map_err(CapabilityError)?)
    }
}

wasmq_guest::plugin! {
    handler: Abuse,
    name: "hostile-progress",
    task_types: ["hostile:progress"],
    manifest: "wasmq.toml",
}
