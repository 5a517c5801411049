//! Debounced enqueues (`NewTask::debounce`): one script call per task,
//! `scripts/debounce.lua`, which either hands the new message to the
//! scheduled task holding the key or schedules the new task.

use super::scripts::SCRIPTS;
use super::{Broker, Error, invocation};

impl Broker {
    /// Enqueues a debounced task given as `enqueue.lua`'s seven arguments;
    /// returns the id of the task that will run it (an earlier one's when
    /// that one took the new payload).
    pub(crate) async fn enqueue_debounced(
        &self,
        queue: &str,
        args: &[String; 7],
    ) -> Result<String, Error> {
        let keys = self.queue_keys(queue);
        let mut call = invocation(&SCRIPTS.debounce, &keys);
        for arg in args {
            call.arg(arg);
        }
        let reply: Vec<String> = self.run(queue, Some(&args[0]), &call).await?;
        match reply.as_slice() {
            [status, id] if status == "ok" || status == "replaced" => Ok(id.clone()),
            [status, state] if status == "duplicate-id" => Err(Error::DuplicateId {
                queue: queue.to_string(),
                id: args[0].clone(),
                state: state.parse().ok(),
                reserved_for: None,
            }),
            other => Err(Error::Corrupt(format!(
                "the debounced enqueue answered {other:?}"
            ))),
        }
    }
}
