/*!
Redis-backed background tasks, each run in a sandboxed WebAssembly component.

Producers put tasks on Redis queues with [`Client`]; workers lease them and
hand each task to the plugin (a Wasm component) that declares its task type,
with a fresh instance per task held to its own fuel, memory and time budget.
This crate is both the `wasmq` binary's engine and the library a Rust
program uses to enqueue tasks or to embed a worker.

# Layout
- [`task`]: the shared vocabulary: task messages, states and failure classes.
- [`broker`]: every Redis access; each state change is one Lua script.
- [`sandbox`]: the wasmtime engine, per-task limits and host functions.
- [`plugins`]: plugin manifests, loading a plugin directory, routing task
  types to plugins.
- [`worker`]: the fetch loop, concurrency, leases, retries and shutdown.
- [`scheduler`]: cron entries fired exactly once per tick by any number of
  replicas, and schedule files.
- [`ops`]: heartbeats, Prometheus metrics, plugin statistics and the web
  dashboard.
- [`dev`]: the private redis-server that `wasmq dev` and the tests start.
- `cli` (binary only): the `wasmq` command line.

Data flows one way: cli → worker → broker / sandbox. Nothing in `broker`
knows about Wasm; nothing in `sandbox` knows about Redis.

# Example
```no_run
# async fn run() -> Result<(), wasmq::broker::Error> {
use std::time::Duration;
use wasmq::{Client, NewTask};

let client = Client::connect("redis://127.0.0.1:6379").await?;
let task = NewTask::new("email:send", r#"{"to": "a@example.com"}"#)?
    .queue("critical")
    .process_in(Duration::from_secs(30))
    .unique(Duration::from_secs(60));
let enqueued = client.enqueue(task).await?;
println!("enqueued {}", enqueued.id);
# Ok(()) }
```
*/

pub mod broker;
pub mod dev;
pub mod ops;
pub mod plugins;
pub mod sandbox;
pub mod scheduler;
pub mod task;
pub mod worker;

pub use broker::{Client, NewTask};
pub use task::{FailureKind, TaskState};
