//! Task type `stamp`: notes when its handler started, in unix µs.
//!
//! The Wasm side of `wasmq-bench latency --handler wasm`: each task's
//! payload carries its enqueue time, and the handler's first act is to read
//! the wall clock and write it to the host's log (`started_us=<µs>`, tagged
//! with the task by the host), so the difference is the task's wait from
//! enqueue to the start of the plugin's own code (lease, dispatch and
//! instantiation included). It also returns the time as its result. The
//! payload is not parsed: only its size matters.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wasmq_guest::{Failure, Handler, Level, Task};

#[derive(Serialize)]
struct Started {
    started_us: u64,
}

struct Stamp;

impl Handler for Stamp {
    type Payload = serde::de::IgnoredAny;
    type Output = Started;

    fn handle(_task: &Task, _payload: serde::de::IgnoredAny) -> Result<Started, Failure> {
        let started_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        wasmq_guest::log(Level::Info, &format!("started_us={started_us}"));
        Ok(Started { started_us })
    }
}

wasmq_guest::plugin! {
    handler: Stamp,
    name: "stamp",
    task_types: ["stamp"],
    manifest: "wasmq.toml",
}
