//! Hostile: tries to enqueue 1,000 follow-up tasks with a quota of 3.

use wasmq_guest::{Failure, FollowUp, Handler, Task, enqueue};

struct Fanout;

impl Handler for Fanout {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        for n in 0..1000 {
            let follow_up = FollowUp::new("echo", &serde_json::json!({ "from": task.id, "n": n }))?;
            enqueue(follow_up)?;
        }
        Ok(())
    }
}

wasmq_guest::plugin! {
    handler: Fanout,
    name: "hostile-fanout",
    task_types: ["hostile:fanout"],
    manifest: "wasmq.toml",
}
