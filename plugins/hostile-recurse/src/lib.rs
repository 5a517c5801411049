//! Hostile: recurses without end until the stack overflows. Its frames hold
//! only scalars, so it is the engine's stack, not Rust's in-memory stack,
//! that runs out.

use wasmq_guest::{Failure, Handler, Task};

// Endless on purpose: the host must stop it. The work after the call keeps
// the compiler from turning the recursion into a loop.
#[allow(unconditional_recursion)]
#[inline(never)]
fn deeper(n: u64) -> u64 {
    let below = deeper(n.wrapping_add(1));
    if below % 3 == n % 5 {
        below.wrapping_add(1)
    } else {
        below.wrapping_add(2)
    }
}

struct Recurse;

impl Handler for Recurse {
    type Payload = serde_json::Value;
    type Output = u64;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<u64, Failure> {
        Ok(deeper(0))
    }
}

wasmq_guest::plugin! {
    handler: Recurse,
    name: "hostile-recurse",
    task_types: ["hostile:recurse"],
}
