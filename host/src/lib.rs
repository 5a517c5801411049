/*!
Redis-backed background tasks, each run in a sandboxed WebAssembly component.

Producers put tasks on Redis queues with [`Client`]; a [`Worker`] leases
them and hands each task to the plugin (a Wasm component) that declares its
task type, with a fresh instance per task held to its own fuel, memory and
time budget, or to a native handler written in Rust. This crate is both the
`wasmq` binary's engine and the library a Rust program uses to enqueue
tasks or to embed a worker.

# Brief overview
- [`Client`] and [`NewTask`] enqueue (one task or a batch) and read tasks
  back ([`TaskInfo`]); they speak to Redis through a [`Broker`]: one
  server, a Cluster or a Sentinel-watched master, over TLS with
  [`TlsOptions`], every connection named, and enqueues that wait for
  replicas with [`WaitReplicas`] (all in [`ConnectOptions`]).
- [`Worker::builder`] starts from a [`Broker`] and adds what a worker
  serves: a plugin directory, the plugin registry, native handlers, a
  metrics endpoint, a cron scheduler replica. `wasmq worker` runs this same
  worker.
- [`plugins`] loads a plugin (a component and its manifest), and
  [`sandbox`] runs one plugin on one task, without Redis: what a plugin's
  own tests or a benchmark need.
- [`dev::RedisServer`] starts a private `redis-server`, as `wasmq dev` and
  the tests do.

With the default `cli` feature the crate also holds the command line
(`wasmq`), the web dashboard and `wasmq dev`; an embedding program can leave
them out with `default-features = false`.

The `wasmq` binary allocates through jemalloc: a worker frees on one thread
what another allocated, where glibc's malloc locks its arenas: with
jemalloc a worker of outgoing HTTP requests spends 30% less CPU per task
(BENCHMARKS.md, "The allocator"). The library allocates
through whatever global allocator its program sets; a program that embeds
a busy worker may want to set the same (`tikv-jemallocator`).

# Layout
Only `plugins`, `sandbox` and `dev` are public modules; the others are
reached through the items this page re-exports.
- `broker`: every Redis access; each state change is one Lua script.
- [`sandbox`]: the wasmtime engine, per-task limits and host functions.
- [`plugins`]: plugin manifests, loading a plugin directory, the registry.
- `worker`: the fetch loop, the path of one task, leases, shutdown.
- `scheduler`: cron entries fired exactly once per tick by any number of
  replicas.
- `ops`: metrics, plugin statistics, heartbeats, the HTTP server of the
  dashboard and `/metrics`.
- `cli` (feature `cli`): the `wasmq` command line.

Data flows one way: cli → worker → broker / sandbox. Nothing in `broker`
knows about Wasm; nothing in `sandbox` knows about Redis.

# Example
```no_run
# async fn run() -> Result<(), Box<dyn std::error::Error>> {
use std::time::Duration;
use wasmq::{Client, NewTask, NativeTask, Worker};

let client = Client::connect("redis://127.0.0.1:6379").await?;
let task = NewTask::new("sum", "[1, 2, 39]")?
    .queue("default")
    .process_in(Duration::from_secs(1))
    .unique(Duration::from_secs(60));
let enqueued = client.enqueue(task).await?;
println!("enqueued {}", enqueued.id);

let summary = Worker::builder(client.broker().clone())
    .concurrency(50)
    .plugins_dir("plugins")
    .follow_registry()
    .native("sum", |task: NativeTask| async move {
        let numbers: Vec<i64> = task.json()?;
        Ok(numbers.iter().sum::<i64>().to_string().into_bytes())
    })
    .run(async { tokio::signal::ctrl_c().await.ok(); })
    .await?;
println!("{} tasks completed", summary.completed);
# Ok(()) }
```
*/
#![deny(missing_docs)]

mod broker;
pub mod dev;
mod ops;
pub mod plugins;
mod rate;
pub mod sandbox;
mod scheduler;
mod spec;
mod task;
#[cfg(feature = "otel")]
mod telemetry;
mod trace_context;
mod units;
mod worker;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

pub use broker::rate_limits::BucketUse;
pub use broker::{
    ArchiveLimits, BatchStatus, Broker, ChildEnd, ChildOutcome, Client, ConnectOptions,
    DEFAULT_MAX_FLOW_DEPTH, DEFAULT_MAX_FLOW_TASKS, DEFAULT_MAX_RETRY, DEFAULT_QUEUE,
    DEFAULT_RETENTION, Enqueued, EnqueuedFlow, Error, Flow, FlowLimits, FlowTree, NewTask,
    Progress, QueueCounts, TaskInfo, TlsFailure, TlsOptions, WaitReplicas,
};
pub use ops::metrics::Metrics;
pub use rate::{KeyPath, Rate, RateLimit, RateTarget};
pub use scheduler::{Cron, CronEntry, MisfirePolicy, SchedulerConfig, TickOutcome, TickRecord};
pub use task::{
    ConcurrencyLimit, ErrorRecord, FailureKind, FlowChild, FlowParent, Lineage, OnChildFailure,
    TaskFailure, TaskMessage, TaskRef, TaskState, WhenBusy,
};
#[cfg(feature = "otel")]
pub use telemetry::Tracing;
pub use trace_context::TraceContext;
pub use worker::{
    Backoff, Error as WorkerError, FollowUpCeilings, NativeHandler, NativeTask, ProbationConfig,
    QueueSelection, Summary, Worker, WorkerBuilder,
};

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
