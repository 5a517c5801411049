//! The Lua scripts behind every state change, loaded once.
//!
//! Each script lives in `scripts/<name>.lua` with a header listing its KEYS
//! and ARGV. `scripts/prelude.lua` is prepended to every script that works
//! on a queue: it binds the queue's keys to names and holds the helpers they
//! share. `scripts/registry_prelude.lua` is prepended to the plugin
//! registry's scripts. The slot, cron, tree and rate scripts work on keys of
//! their own.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("scripts/prelude.lua");
const REGISTRY_PRELUDE: &str = include_str!("scripts/registry_prelude.lua");

/// The compiled scripts; each is sent by its SHA1 (EVALSHA) and loaded on
/// first use or after a Redis restart.
pub struct Scripts {
    pub enqueue: Script,
    pub dequeue: Script,
    pub settle: Script,
    pub extend: Script,
    pub reclaim: Script,
    pub trim: Script,
    pub delete: Script,
    pub cancel: Script,
    pub run_now: Script,
    pub archive_now: Script,
    pub remove_queue: Script,
    pub slot_acquire: Script,
    pub slot_release: Script,
    pub cron_put: Script,
    pub cron_remove: Script,
    pub cron_advance: Script,
    pub kv_set: Script,
    pub plugin_deploy: Script,
    pub plugin_switch: Script,
    pub plugin_gc: Script,
    pub heartbeat: Script,
    pub history_record: Script,
    pub lineage_reserve: Script,
    pub lineage_release: Script,
    pub lineage_stop: Script,
    pub rate_take: Script,
    pub rate_limit: Script,
    pub rate_wake: Script,
    pub debounce: Script,
    pub flow_enqueue: Script,
    pub flow_discard: Script,
    pub flow_forget: Script,
    pub progress_set: Script,
    pub aggregate: Script,
    pub flow_child_ended: Script,
    pub batch_open: Script,
    pub batch_count: Script,
    pub batch_member_ended: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

fn with_registry_prelude(body: &str) -> Script {
    Script::new(&format!("{REGISTRY_PRELUDE}\n{body}"))
}

/// Every script, built on first use.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: with_prelude(include_str!("scripts/enqueue.lua")),
    dequeue: with_prelude(include_str!("scripts/dequeue.lua")),
    settle: with_prelude(include_str!("scripts/settle.lua")),
    extend: with_prelude(include_str!("scripts/extend.lua")),
    reclaim: with_prelude(include_str!("scripts/reclaim.lua")),
    trim: with_prelude(include_str!("scripts/trim.lua")),
    delete: with_prelude(include_str!("scripts/delete.lua")),
    cancel: with_prelude(include_str!("scripts/cancel.lua")),
    run_now: with_prelude(include_str!("scripts/run_now.lua")),
    archive_now: with_prelude(include_str!("scripts/archive_now.lua")),
    remove_queue: with_prelude(include_str!("scripts/remove_queue.lua")),
    rate_wake: with_prelude(include_str!("scripts/rate_wake.lua")),
    debounce: with_prelude(include_str!("scripts/debounce.lua")),
    flow_enqueue: with_prelude(include_str!("scripts/flow_enqueue.lua")),
    flow_discard: with_prelude(include_str!("scripts/flow_discard.lua")),
    flow_forget: with_prelude(include_str!("scripts/flow_forget.lua")),
    progress_set: with_prelude(include_str!("scripts/progress_set.lua")),
    aggregate: with_prelude(include_str!("scripts/aggregate.lua")),
    flow_child_ended: with_prelude(include_str!("scripts/flow_child_ended.lua")),
    // The scripts below do not work on a queue: they take no prelude.
    batch_open: Script::new(include_str!("scripts/batch_open.lua")),
    batch_count: Script::new(include_str!("scripts/batch_count.lua")),
    batch_member_ended: Script::new(include_str!("scripts/batch_member_ended.lua")),
    slot_acquire: Script::new(include_str!("scripts/slot_acquire.lua")),
    slot_release: Script::new(include_str!("scripts/slot_release.lua")),
    cron_put: Script::new(include_str!("scripts/cron_put.lua")),
    cron_remove: Script::new(include_str!("scripts/cron_remove.lua")),
    cron_advance: Script::new(include_str!("scripts/cron_advance.lua")),
    kv_set: Script::new(include_str!("scripts/kv_set.lua")),
    plugin_deploy: with_registry_prelude(include_str!("scripts/plugin_deploy.lua")),
    plugin_switch: with_registry_prelude(include_str!("scripts/plugin_switch.lua")),
    plugin_gc: Script::new(include_str!("scripts/plugin_gc.lua")),
    heartbeat: Script::new(include_str!("scripts/heartbeat.lua")),
    history_record: Script::new(include_str!("scripts/history_record.lua")),
    lineage_reserve: Script::new(include_str!("scripts/lineage_reserve.lua")),
    lineage_release: Script::new(include_str!("scripts/lineage_release.lua")),
    lineage_stop: Script::new(include_str!("scripts/lineage_stop.lua")),
    rate_take: Script::new(include_str!("scripts/rate_take.lua")),
    rate_limit: Script::new(include_str!("scripts/rate_limit.lua")),
});
