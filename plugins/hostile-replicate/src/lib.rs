//! Hostile: every attempt enqueues `copies` (default 5) copies of itself,
//! with the same payload, on `queue` (default `replicas`), ignoring every
//! refusal, and succeeds. Unbounded, one task grows into a tree of
//! follow-ups that doubles generation after generation.

use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, FollowUp, Handler, Task, enqueue};

#[derive(Deserialize, Serialize)]
struct Params {
    #[serde(default = "five")]
    copies: u32,
    #[serde(default = "replicas")]
    queue: String,
}

fn five() -> u32 {
    5
}

fn replicas() -> String {
    "replicas".into()
}

struct Replicate;

impl Handler for Replicate {
    type Payload = Params;
    type Output = u32;

    fn handle(task: &Task, params: Params) -> Result<u32, Failure> {
        let mut enqueued = 0;
        for _ in 0..params.copies {
            let copy = FollowUp::new(&task.task_type, &params)?.queue(&params.queue);
            if enqueue(copy).is_ok() {
                enqueued += 1;
            }
        }
        Ok(enqueued)
    }
}

wasmq_guest::plugin! {
    handler: Replicate,
    name: "hostile-replicate",
    task_types: ["hostile:replicate"],
    manifest: "wasmq.toml",
}
