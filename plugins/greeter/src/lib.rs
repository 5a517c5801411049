//! Task type `greet`: returns a greeting and the version of the plugin that
//! made it.
//!
//! Payload: `{"name": "world", "ms": 20}`. It waits `ms` milliseconds
//! first, so that tasks are in flight while a new version is deployed. The
//! same source builds `greeter-next` (version 0.2.0), which greets
//! differently: the deploy tests tell the two apart by the result.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, Handler, Task};

#[derive(Deserialize)]
struct Params {
    name: String,
    #[serde(default)]
    ms: u64,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    version: &'static str,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Greeter;

impl Handler for Greeter {
    type Payload = Params;
    type Output = Greeting;

    fn handle(_task: &Task, params: Params) -> Result<Greeting, Failure> {
        std::thread::sleep(Duration::from_millis(params.ms));
        let salutation = if VERSION.starts_with("0.1.") {
            "hello"
        } else {
            "good day"
        };
        Ok(Greeting {
            greeting: format!("{salutation}, {}", params.name),
            version: VERSION,
        })
    }
}

wasmq_guest::plugin! {
    handler: Greeter,
    name: "greeter",
    task_types: ["greet"],
    manifest: "wasmq.toml",
}
