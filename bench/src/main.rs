//! wasmq's benchmarks and fault-injection run, against real redis-server
//! processes.
//!
//! ```text
//! cargo run --release -p wasmq-bench -- compare     # wasmq against BullMQ
//! cargo run --release -p wasmq-bench -- drain --tasks 20000 --concurrency 1,10,50,200
//! bench/faults.sh                     # the fault-injection run behind RELIABILITY.md
//! ```
//!
//! `drain`: starts a private redis-server, enqueues no-op `echo` tasks in
//! batches (enqueue/s), then starts a worker in this process and measures
//! how fast it drains the queue (processed/s; or N queues, `--queues N`),
//! each task in a fresh Wasm instance. Prints one JSON line per
//! concurrency.
//!
//! `compare`: wasmq (Wasm plugin and native handler) against BullMQ on the
//! same redis-server in the same run: drain rates over a concurrency sweep,
//! bulk enqueue, enqueue-to-start latency at fixed rates, peak RSS, and
//! drains of tasks with 1 KB, 64 KB and 1 MB payloads; writes the charts
//! of docs/.
//!
//! `latency`: enqueue-to-start latency at a fixed arrival rate, with a
//! native handler or the Wasm plugin.
//!
//! `flows`: flows of a parent and 100 children against BullMQ's
//! FlowProducer, same Redis, same run.
//!
//! `faults`: runs `wasmq_testkit::faults` (worker processes killed, frozen,
//! Redis restarted) and prints its Markdown report.
//!
//! `cron`: tick precision of scheduler replicas racing for every tick.
//!
//! `isolation`: the drain rate of a well-behaved plugin alone, with a
//! quarter of all tasks benign, and with a quarter hostile.
//!
//! `hostile`: each hostile plugin beside a well-behaved one in a real worker
//! process: how its tasks ended, the worker's peak RSS, neighbour tasks lost
//! (the "Hostile plugins" table of RELIABILITY.md).
//!
//! `sandbox`: the cost of one task's sandbox (Store, instance, call), with
//! fuel metering, epoch interruption and the pooling allocator on and off.
//!
//! `polyglot`: the no-op handler in wasmq's Python SDK against Celery
//! (`-P threads`), and in its JavaScript SDK against BullMQ, same Redis,
//! same run.
//!
//! `idle`: the commands per second that idle workers send Redis (`INFO
//! commandstats` deltas), 10 worker processes × 50 empty queues by default.
//!
//! `rate`: what a fleet-wide rate limit costs per start, and its
//! precision (the busiest second of handler starts) across workers.
//!
//! `rollout`: from `wasmq plugin deploy` to every one of 10 workers serving
//! it, for a small Rust component and a 12–18 MB Python or JavaScript one.
//!
//! `traces`: a worker's CPU per task with tracing off and exporting over
//! OTLP to a receiver, each in a child `drain` run.
//!
//! `webhook`: tasks that each make one outgoing HTTP request to a loopback
//! server answering after 100 ms (the `relay` plugin's `relay:fetch`)
//! against BullMQ running the same request with `fetch`, concurrency 100
//! to 1,000.
//!
//! `clients`: the bulk-enqueue rate of the Rust, Python and Node clients
//! beside Celery's `apply_async` and BullMQ's `addBulk`, on one redis-server.
//!
//! `curve`: how the cost grows: the `echo` plugin's drain over worker
//! concurrencies (tasks/s, worker and Redis CPU per task, peak RSS), over
//! the number of queues one worker serves (adding Redis commands per task),
//! and at pending backlogs up to 5 million tasks (enqueue and drain rates,
//! Redis memory per pending task).

mod chart;
mod clients;
mod compare;
mod cron;
mod curve;
mod drain;
mod flows;
mod hostile;
mod idle;
mod isolation;
mod latency;
mod polyglot;
mod rate;
mod rollout;
mod sandbox;
mod traces;
mod webhook;

use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
enum Bench {
    /// wasmq against BullMQ: drain rates over a concurrency sweep, bulk
    /// enqueue, latency at fixed rates, peak RSS, large payloads; draws the
    /// charts of docs/.
    Compare(compare::CompareArgs),
    /// Drain rate of no-op tasks, each in a fresh Wasm instance.
    Drain(drain::Args),
    /// Enqueue-to-start latency at a fixed arrival rate (native handler or
    /// Wasm plugin).
    Latency(latency::LatencyArgs),
    /// The fault-injection run.
    Faults(FaultArgs),
    /// Tick precision of the cron scheduler.
    Cron(cron::CronArgs),
    /// Throughput of a well-behaved plugin next to hostile ones.
    Isolation(isolation::IsolationArgs),
    /// Each hostile plugin beside a well-behaved one: outcomes, peak RSS,
    /// neighbour tasks lost.
    Hostile(hostile::HostileArgs),
    /// Per-task sandbox cost with fuel, epochs and pooling on and off.
    Sandbox(sandbox::SandboxArgs),
    /// Commands per second idle workers send Redis.
    Idle(idle::IdleArgs),
    /// Deploy to every worker serving it: 10 workers, any component.
    Rollout(rollout::RolloutArgs),
    /// Bulk-enqueue rate of each wasmq client beside Celery and BullMQ.
    Clients(clients::ClientsArgs),
    /// Python plugin against Celery, JavaScript plugin against BullMQ.
    Polyglot(polyglot::PolyglotArgs),
    /// A rate limit's cost per start and its precision across workers.
    Rate(rate::RateArgs),
    /// Flows of 1 + N children against BullMQ's FlowProducer: flows/s and
    /// the time from a flow's last child ending to its parent starting.
    Flows(flows::Args),
    /// A worker's CPU per task with tracing off and on.
    Traces(traces::TracesArgs),
    /// Webhook-style tasks (one outgoing HTTP request each, to a server
    /// that answers after 100 ms) against BullMQ running the same request.
    Webhook(webhook::WebhookArgs),
    /// How the cost grows with concurrency, with the queues one worker
    /// serves, and with the backlog waiting in Redis.
    Curve(curve::CurveArgs),
    /// The loopback HTTP server `webhook` starts: answers every request
    /// after a delay, printing its port first.
    #[command(hide = true)]
    SlowServer(webhook::SlowServerArgs),
}

#[derive(Debug, clap::Args)]
struct FaultArgs {
    /// The wasmq binary that runs the workers.
    #[arg(long, default_value = "target/debug/wasmq")]
    wasmq: std::path::PathBuf,
    /// Tasks to run.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Milliseconds each task hashes.
    #[arg(long, default_value_t = 50)]
    burn_ms: u64,
    /// Every this many tasks, one fails its only attempt on purpose and
    /// must end archived (0: none fail).
    #[arg(long, default_value_t = 10)]
    failing_every: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Concurrency per worker.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// SIGKILLs of a worker.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Redis restarts.
    #[arg(long, default_value_t = 1)]
    redis_restarts: usize,
    /// Flows of a parent and 20 children run beside the tasks.
    #[arg(long, default_value_t = 50)]
    flows: usize,
    /// Chains of 5 steps run beside the tasks.
    #[arg(long, default_value_t = 50)]
    chains: usize,
}

/// The worker this binary runs in-process allocates through the same
/// allocator as the `wasmq` binary, so that its figures are the product's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Drain(args) => {
            for &concurrency in &args.concurrency {
                drain::run(&args, concurrency).await?;
            }
        }
        Bench::Compare(args) => compare::run(&args)?,
        Bench::Latency(args) => latency::run(&args).await?,
        Bench::Cron(args) => cron::run(&args).await?,
        Bench::Isolation(args) => isolation::run(&args).await?,
        Bench::Sandbox(args) => sandbox::run(&args).await?,
        Bench::Hostile(args) => hostile::run(&args).await?,
        Bench::Idle(args) => idle::run(&args).await?,
        Bench::Rollout(args) => rollout::run(&args).await?,
        Bench::Clients(args) => clients::run(&args).await?,
        Bench::Polyglot(args) => polyglot::run(&args)?,
        Bench::Rate(args) => rate::run(&args).await?,
        Bench::Flows(args) => flows::run(&args).await?,
        Bench::Traces(args) => traces::run(&args).await?,
        Bench::Webhook(args) => webhook::run(&args)?,
        Bench::Curve(args) => curve::run(&args).await?,
        Bench::SlowServer(args) => webhook::slow_server(&args).await?,
        Bench::Faults(args) => {
            let report = wasmq_testkit::faults::run(wasmq_testkit::faults::FaultPlan {
                wasmq: args.wasmq,
                tasks: args.tasks,
                burn_ms: args.burn_ms,
                failing_every: args.failing_every,
                workers: args.workers,
                concurrency: args.concurrency,
                lease: Duration::from_secs(2),
                worker_kills: args.kills,
                freeze_for: Duration::from_secs(6),
                redis_restarts: args.redis_restarts,
                flows: args.flows,
                chains: args.chains,
                timeout: Duration::from_secs(600),
            })
            .await;
            print!("{}", report.markdown());
            anyhow::ensure!(
                report.lost == 0
                    && report.stuck_active == 0
                    && report.parents_stuck == 0
                    && report.parents_run_twice == 0,
                "tasks were lost or stuck, or a flow parent was stuck or released twice"
            );
        }
    }
    Ok(())
}
