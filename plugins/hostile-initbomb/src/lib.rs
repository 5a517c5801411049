//! Hostile: a 256 MiB static makes its memory that large from the start, so
//! it cannot even be instantiated under the default 128 MiB cap.

use wasmq_guest::{Failure, Handler, Task};

static mut BALLAST: [u8; 256 << 20] = [0; 256 << 20];

struct InitBomb;

impl Handler for InitBomb {
    type Payload = serde_json::Value;
    type Output = u8;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<u8, Failure> {
        // SAFETY: one task per instance; nothing else touches the static.
        let ballast = unsafe { &mut *std::ptr::addr_of_mut!(BALLAST) };
        ballast[1] = 1;
        Ok(std::hint::black_box(ballast)[1])
    }
}

wasmq_guest::plugin! {
    handler: InitBomb,
    name: "hostile-initbomb",
    task_types: ["hostile:initbomb"],
}
