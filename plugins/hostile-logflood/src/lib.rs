//! Hostile: floods the host's log with lines, without end.

use wasmq_guest::{Failure, Handler, Task};

struct LogFlood;

impl Handler for LogFlood {
    type Payload = serde_json::Value;
    type Output = ();

    fn handle(_task: &Task, _payload: serde_json::Value) -> Result<(), Failure> {
        let line = "flood ".repeat(100);
        let mut n: u64 = 0;
        loop {
            n += 1;
            wasmq_guest::info!("{n}: {line}");
        }
    }
}

wasmq_guest::plugin! {
    handler: LogFlood,
    name: "hostile-logflood",
    task_types: ["hostile:logflood"],
}
