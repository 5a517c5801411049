//! Task type `flaky`: fails its first `fail_times` attempts, then succeeds.
//!
//! Payload: `{"fail_times": 2}`. Attempts 1 and 2 fail with a retryable
//! error; attempt 3 returns `{"succeeded_on_attempt": 3}`. Used to show
//! retries with backoff and, with `fail_times` above the task's retries, the
//! archive.

use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, Handler, Task};

#[derive(Deserialize)]
struct Params {
    fail_times: u32,
}

#[derive(Serialize)]
struct Outcome {
    succeeded_on_attempt: u32,
}

struct Flaky;

impl Handler for Flaky {
    type Payload = Params;
    type Output = Outcome;

    fn handle(task: &Task, params: Params) -> Result<Outcome, Failure> {
        if task.attempt <= params.fail_times {
            wasmq_guest::warn!("failing attempt {} on purpose", task.attempt);
            return Err(Failure::retry(format!(
                "failing attempt {} of the first {} on purpose",
                task.attempt, params.fail_times
            )));
        }
        Ok(Outcome {
            succeeded_on_attempt: task.attempt,
        })
    }
}

wasmq_guest::plugin! {
    handler: Flaky,
    name: "flaky",
    task_types: ["flaky"],
}
