//! Hostile: allocates 1 MiB after 1 MiB, touching every page, until memory
//! runs out. Stopped by its memory cap.

use wasmq_guest::{Failure, Handler, Task};

struct MemBomb;

impl Handler for MemBomb {
    type Payload = serde_json::Value;
    type Output = usize;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<usize, Failure> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

wasmq_guest::plugin! {
    handler: MemBomb,
    name: "hostile-membomb",
    task_types: ["hostile:membomb"],
}
