//! Asks for zero fuel per attempt, an impossible limit: the host refuses to
//! load it.

use wasmq_guest::{Failure, Handler, Task};

struct BadLimits;

impl Handler for BadLimits {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        Ok(())
    }
}

wasmq_guest::plugin! {
    handler: BadLimits,
    name: "bad-limits",
    task_types: ["bad-limits"],
    manifest: "wasmq.toml",
}
