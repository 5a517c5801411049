//! Hostile: panics.

use wasmq_guest::{Failure, Handler, Task};

struct Panic;

impl Handler for Panic {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        panic!("hostile plugin panics on purpose in task {}", task.id);
    }
}

wasmq_guest::plugin! {
    handler: Panic,
    name: "hostile-panic",
    task_types: ["hostile:panic"],
}
