//! Hostile: fails with a message far over the host's message cap, and logs
//! a line far over its line cap.
//!
//! - `hostile:bigmessage` gives up with a 512 KiB message (it reaches the
//!   host, which keeps only its start);
//! - `hostile:hugemessage` gives up with a 32 MiB message (more than the
//!   plugin may pass the host in one call: refused before it is copied);
//! - `hostile:bigline` logs one 48 KiB line (within the log budget, over
//!   the line cap) and succeeds.

use wasmq_guest::{Failure, Handler, Task};

struct BigMessage;

impl Handler for BigMessage {
    type Payload = serde_json::Value;
    type Output = u8;

    fn handle(task: &Task, _payload: serde_json::Value) -> Result<u8, Failure> {
        match task.task_type.as_str() {
            "hostile:hugemessage" => Err(Failure::give_up("m".repeat(32 << 20))),
            "hostile:bigline" => {
                wasmq_guest::log(wasmq_guest::Level::Warn, &"l".repeat(48 << 10));
                Ok(1)
            }
            _ => Err(Failure::give_up("m".repeat(512 << 10))),
        }
    }
}

wasmq_guest::plugin! {
    handler: BigMessage,
    name: "hostile-bigmessage",
    task_types: ["hostile:bigmessage", "hostile:hugemessage", "hostile:bigline"],
}
