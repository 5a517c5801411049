//! A queue's keys and channels, and the registry of queue names.
//!
//! A queue's keys all carry the hash tag `{<queue>}`, so that they live in
//! one Redis Cluster slot and every script can declare all of them. The few
//! keys that span queues (the queue registry) have no tag and are only used
//! by single commands, never inside a script. The keys of the other parts
//! of the model live with the code that owns them, each under a tag of its
//! own: the fleet's in `fleet.rs`, cron's in `cron.rs`, the registry's in
//! `registry.rs`, plugins' stores in `kv.rs`, limits in `limits.rs`, rate
//! limits in `rate_limits.rs`, trees of follow-ups and follow-up rate
//! buckets in `lineage.rs` (docs/ARCHITECTURE.md has the whole table).

use super::Error;

/// The registry of queue names: a SET, for listing and lookups by id.
pub const QUEUES: &str = "wasmq:queues";

/// The structures of one queue, in the order every script receives them
/// (`scripts/prelude.lua` documents each).
const QUEUE_PARTS: [&str; 21] = [
    "pending",
    "active",
    "scheduled",
    "retry",
    "archived",
    "completed",
    "msg",
    "state",
    "attempts",
    "owner",
    "error",
    "result",
    "unique",
    "unique_until",
    "paused",
    "reserved_ids",
    "stats",
    "parents",
    "waiting",
    "children",
    "flow_outbox",
];

/// The longest queue name accepted.
const MAX_QUEUE_NAME: usize = 128;

/// All the keys of one queue, built once per queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    keys: Vec<String>,
    notify: String,
    cancel: String,
    prefix: String,
}

impl QueueKeys {
    /// The keys of the named queue; the name must already be valid (see
    /// [`validate_queue_name`]).
    pub fn new(queue: &str) -> Self {
        let keys = QUEUE_PARTS
            .iter()
            .map(|part| format!("wasmq:{{{queue}}}:{part}"))
            .collect();
        QueueKeys {
            keys,
            notify: format!("wasmq:{{{queue}}}:notify"),
            cancel: format!("wasmq:{{{queue}}}:cancel"),
            prefix: format!("wasmq:{{{queue}}}:"),
        }
    }

    /// Every key, in script order.
    pub fn all(&self) -> &[String] {
        &self.keys
    }

    /// The channel idle workers listen on for new work.
    pub fn notify_channel(&self) -> &str {
        &self.notify
    }

    /// The channel that carries the ids of cancelled tasks.
    pub fn cancel_channel(&self) -> &str {
        &self.cancel
    }

    /// The groups with pending tasks, in turn order (a LIST; `''` stands
    /// for the ungrouped pending tasks). Scripts name it from the pending
    /// key, as they do the other keys of groups.
    pub fn groups(&self) -> String {
        format!("{}groups", self.prefix)
    }

    /// How many grouped tasks are pending (a STRING).
    pub fn grouped(&self) -> String {
        format!("{}grouped", self.prefix)
    }

    /// The HASH of running tasks' latest progress reports (task id →
    /// JSON).
    pub fn progress(&self) -> String {
        format!("{}progress", self.prefix)
    }

    /// The pending LIST of `group`'s tasks.
    pub fn group_pending(&self, group: &str) -> String {
        format!("{}pending:{group}", self.prefix)
    }

    fn part(&self, part: &str) -> &str {
        let index = QUEUE_PARTS
            .iter()
            .position(|p| *p == part)
            .expect("callers name only parts listed in QUEUE_PARTS");
        &self.keys[index]
    }

    /// The pending LIST.
    pub fn pending(&self) -> &str {
        self.part("pending")
    }

    /// The active ZSET (lease expiries).
    pub fn active(&self) -> &str {
        self.part("active")
    }

    /// The scheduled ZSET.
    pub fn scheduled(&self) -> &str {
        self.part("scheduled")
    }

    /// The retry ZSET.
    pub fn retry(&self) -> &str {
        self.part("retry")
    }

    /// The archived ZSET.
    pub fn archived(&self) -> &str {
        self.part("archived")
    }

    /// The completed ZSET (record expiries).
    pub fn completed(&self) -> &str {
        self.part("completed")
    }

    /// The HASH of task messages.
    pub fn msg(&self) -> &str {
        self.part("msg")
    }

    /// The HASH of task states.
    pub fn state(&self) -> &str {
        self.part("state")
    }

    /// The HASH of attempt counts.
    pub fn attempts(&self) -> &str {
        self.part("attempts")
    }

    /// The HASH of last errors.
    pub fn error(&self) -> &str {
        self.part("error")
    }

    /// The HASH of results.
    pub fn result(&self) -> &str {
        self.part("result")
    }

    /// The HASH of daily processed and failed counts.
    pub fn stats(&self) -> &str {
        self.part("stats")
    }

    /// The HASH of waiting flow parents' children not ended yet.
    pub fn waiting(&self) -> &str {
        self.part("waiting")
    }

    /// The HASH of flow children's outcomes, by `<parent id> <index>`.
    pub fn children(&self) -> &str {
        self.part("children")
    }

    /// The HASH of flow children's ends not yet delivered to their parents.
    pub fn flow_outbox(&self) -> &str {
        self.part("flow_outbox")
    }

    /// The paused flag.
    pub fn paused(&self) -> &str {
        self.part("paused")
    }
}

/// Checks a queue name: 1 to 128 characters, none of them whitespace, a
/// brace (they delimit the Redis Cluster hash tag), `=` or `,` (which
/// `--queues a=3,b=1` cannot express) or a control character.
pub fn validate_queue_name(queue: &str) -> Result<(), Error> {
    if queue.is_empty() || queue.len() > MAX_QUEUE_NAME {
        return Err(Error::InvalidTask(format!(
            "queue name {queue:?} must be 1 to {MAX_QUEUE_NAME} bytes long"
        )));
    }
    if let Some(bad) = queue
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '=' | ','))
    {
        return Err(Error::InvalidTask(format!(
            "queue name {queue:?} contains {bad:?}: use letters, digits and punctuation other than braces, '=' and ',' (a worker's list of queues uses them between names and weights)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_its_hash_tag() {
        let keys = QueueKeys::new("images");
        assert_eq!(keys.all().len(), QUEUE_PARTS.len());
        for key in keys.all() {
            assert!(key.starts_with("wasmq:{images}:"), "{key}");
        }
        assert_eq!(keys.pending(), "wasmq:{images}:pending");
        assert_eq!(keys.paused(), "wasmq:{images}:paused");
        assert_eq!(keys.notify_channel(), "wasmq:{images}:notify");
    }

    #[test]
    fn queue_names_with_braces_or_spaces_are_refused() {
        assert!(validate_queue_name("critical").is_ok());
        assert!(validate_queue_name("team-a.images:v2").is_ok());
        for bad in [
            "",
            "a b",
            "a{b",
            "a}b",
            "tab\there",
            "a=1",
            "a,b",
            "bell\u{7}",
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_queue_name(&"q".repeat(129)).is_err());
    }
}
