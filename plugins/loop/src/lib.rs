//! Task type `loop`: never returns.
//!
//! A runaway handler: the host must stop it by fuel or by its deadline and
//! fail the task, while the worker goes on serving other tasks.

use wasmq_guest::{Failure, Handler, Task};

struct Forever;

impl Handler for Forever {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        let mut spins: u64 = 0;
        loop {
            // black_box keeps the loop from being optimised into a trap.
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

wasmq_guest::plugin! {
    handler: Forever,
    name: "loop",
    task_types: ["loop"],
}
