//! Hostile: returns a 16 MiB result, far over the host's result cap.

use wasmq_guest::{Failure, Handler, Task};

struct BigResult;

impl Handler for BigResult {
    type Payload = serde_json::Value;
    type Output = String;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<String, Failure> {
        Ok("x".repeat(16 << 20))
    }
}

wasmq_guest::plugin! {
    handler: BigResult,
    name: "hostile-bigresult",
    task_types: ["hostile:bigresult"],
}
