//! Hostile: blocks inside a host call, sleeping for an hour, where fuel and
//! epoch checks cannot reach it. Stopped by the host's own timeout.

use std::time::Duration;

use wasmq_guest::{Failure, Handler, Task};

struct Sleep;

impl Handler for Sleep {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(())
    }
}

wasmq_guest::plugin! {
    handler: Sleep,
    name: "hostile-sleep",
    task_types: ["hostile:sleep"],
}
