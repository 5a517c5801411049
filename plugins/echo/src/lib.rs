//! Task type `echo`: returns its payload as its result.
//!
//! The smallest useful plugin, and the no-op of the benchmarks.

use wasmq_guest::{Failure, Handler, Task};

struct Echo;

impl Handler for Echo {
    type Payload = serde_json::Value;
    type Output = serde_json::Value;

    fn handle(_task: &Task, payload: serde_json::Value) -> Result<serde_json::Value, Failure> {
        Ok(payload)
    }
}

wasmq_guest::plugin! {
    handler: Echo,
    name: "echo",
    task_types: ["echo"],
}
