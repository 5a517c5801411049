//! Uses the key-value store although its manifest grants no `kv`: the host
//! refuses to load it.

use wasmq_guest::{Failure, Handler, Task, kv};

struct Ungranted;

impl Handler for Ungranted {
    type Payload = serde_json::Value;
    type Output = Option<Vec<u8>>;

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<Option<Vec<u8>>, Failure> {
        Ok(kv::get("secret")?)
    }
}

wasmq_guest::plugin! {
    handler: Ungranted,
    name: "ungranted",
    task_types: ["ungranted"],
}
