//! `wasmq enqueue`: put one task on a queue.

use std::io::Read;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use wasmq::{Client, NewTask};

use super::RedisArgs;
use super::parse::{self, Failure};

/// Arguments of `wasmq enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The task type, such as `email:send`; it selects the plugin that runs
    /// the task.
    #[arg(value_name = "TYPE")]
    pub task_type: String,
    /// The payload as JSON text (quote it for the shell), `@FILE` to read
    /// it from a file, or `-` to read it from stdin.
    #[arg(value_name = "PAYLOAD", default_value = "{}")]
    pub payload: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The queue to put the task on.
    #[arg(long, short = 'q', default_value = wasmq::broker::DEFAULT_QUEUE)]
    pub queue: String,
    /// A task id of your choosing; enqueuing the same id again in the same
    /// queue is refused while the first task is kept.
    #[arg(long)]
    pub id: Option<String>,
    /// Run the task no sooner than this long from now, e.g. 10s or 5m.
    #[arg(long = "in", value_parser = parse::duration, value_name = "DURATION", conflicts_with = "at")]
    pub process_in: Option<Duration>,
    /// Run the task no sooner than this time, e.g. 2026-11-22T03:00:00Z.
    #[arg(long, value_parser = parse::time, value_name = "TIME")]
    pub at: Option<SystemTime>,
    /// Retries after the first attempt before the task is archived.
    #[arg(long = "max-retry", default_value_t = wasmq::broker::DEFAULT_MAX_RETRY, value_name = "N")]
    pub max_retry: u32,
    /// How long one attempt may run (the plugin's own limit still applies).
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// A time after which no attempt may still run; with --timeout too, the
    /// earlier wins.
    #[arg(long, value_parser = parse::time, value_name = "TIME")]
    pub deadline: Option<SystemTime>,
    /// How long the completed task and its result are kept (0s: not kept).
    #[arg(long, default_value = "10m", value_parser = parse::duration, value_name = "DURATION")]
    pub retention: Duration,
    /// Refuse this task while an equal one (same queue, type and payload)
    /// enqueued less than DURATION ago is still held; the lock is released
    /// early when that task completes, is archived or is deleted.
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub unique: Option<Duration>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wasmq enqueue`.
pub async fn run(args: EnqueueArgs) -> Result<(), Failure> {
    let payload = read_payload(&args.payload)?;
    let mut task = NewTask::new(&args.task_type, payload)?
        .queue(&args.queue)
        .max_retry(args.max_retry)
        .retention(args.retention);
    if let Some(id) = &args.id {
        task = task.id(id);
    }
    if let Some(delay) = args.process_in {
        task = task.process_in(delay);
    }
    if let Some(at) = args.at {
        task = task.process_at(at);
    }
    if let Some(timeout) = args.timeout {
        task = task.timeout(timeout);
    }
    if let Some(deadline) = args.deadline {
        task = task.deadline(deadline);
    }
    if let Some(ttl) = args.unique {
        task = task.unique(ttl);
    }
    let client = Client::connect(&args.redis.url).await?;
    let enqueued = client.enqueue(task).await.with_context(|| {
        format!(
            "enqueue of a {:?} task on queue {:?} refused",
            args.task_type, args.queue
        )
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"id": enqueued.id, "queue": enqueued.queue, "state": enqueued.state})
        );
    } else {
        println!("{}", enqueued.id);
        eprintln!(
            "enqueued {} task {} on queue {:?} ({})",
            args.task_type, enqueued.id, enqueued.queue, enqueued.state
        );
    }
    Ok(())
}

/// The payload text: inline JSON, `@FILE`, or `-` for stdin.
fn read_payload(arg: &str) -> Result<String, Failure> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the payload from stdin")?;
        return Ok(text);
    }
    if let Some(path) = arg.strip_prefix('@') {
        return Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading the payload from {path}"))?);
    }
    Ok(arg.to_string())
}
