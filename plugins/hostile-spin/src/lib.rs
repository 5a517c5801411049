//! Hostile: spins forever without calling the host. Stopped by fuel or its
//! deadline.

use wasmq_guest::{Failure, Handler, Task};

struct Spin;

impl Handler for Spin {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        let mut x: u64 = 1;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

wasmq_guest::plugin! {
    handler: Spin,
    name: "hostile-spin",
    task_types: ["hostile:spin"],
}
