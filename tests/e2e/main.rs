//! End-to-end tests: real redis-server processes, the real example plugins
//! built from `plugins/`, and the real `wasmq` binary where a user would
//! run it. Each test starts its own Redis on a free loopback port.

mod support;
// Components forged for tests (squatters, a huge function).
mod forge;

// Tasks flow from producers through workers to completion or the archive.
mod flow;
// Task ids and unique locks refuse duplicates, and free them again.
mod dedup;
// Queue semantics: priorities, pause, cancel, timeouts, retention, locks, files.
mod semantics;
// Cron: exactly once per tick across replicas, misfires, limits, files.
mod cron;
// Fleet-wide rate limits: per type, queue and key; changed live; refused specs.
mod rate;
// Operating: stats, listings, bulk actions, servers, plugin stats, metrics, dashboard API.
mod ops;
// The web dashboard, in headless Chromium.
mod dashboard;
// Deploying plugins to running workers: rollouts, rollbacks, refusals, scaffolds.
mod deploy;
// Native handlers registered through the library, beside plugins.
mod native;
// Untrusted plugins: the hostile suite, capabilities, refusals at load.
mod security;
// Trees of follow-ups: depth, descendant and rate caps; seeing and stopping a tree.
mod lineage;
// Runaway plugins fail their own tasks, never the worker.
mod runaway;
// Plugins that keep hitting their limits are moved to a background lane.
mod probation;
// Crashed, frozen or stopped workers lose no task.
mod recovery;
// Redis restarts, frozen workers, skewed clocks, and the fault-injection run.
mod faults;
// Redis Cluster and Sentinel: queues on several masters, masters killed mid-load.
mod cluster;
// Bad input gets an error that names the problem.
mod errors;
// The Rust, Python and Node clients run the same cases against real workers.
mod conformance;
// TLS for one server, a Cluster and Sentinels; refused certificates named.
mod tls;
// Durable enqueues and completions wait for replicas.
mod durable;
// Connections are named in CLIENT LIST.
mod names;
// Keeping the plugin registry small: rollback --to, gc, retention.
mod retention;
// Plugins in Python and JavaScript: end to end, hostile, hot deploys.
mod polyglot;
// Flows and chains: parents run once after their children, with their outcomes.
mod workflows;
// Fairness between groups, per-group and per-key caps, debounce, aggregation, progress.
mod fairness;
// Traces over OTLP: attempts, sandbox runs and HTTP requests, from producers' contexts.
mod traces;
// Plugins' outgoing HTTP: connections kept and reused, silent servers timed out.
mod outgoing;
