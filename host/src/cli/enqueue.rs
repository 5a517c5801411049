//! `wasmq enqueue`: put one task on a queue.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::{Client, NewTask};
use anyhow::Context;
use clap::Args;

use super::parse::{self, Failure};
use super::{DurabilityArgs, RedisArgs};

/// Arguments of `wasmq enqueue`.
#[derive(Debug, Args)]
#[command(
    after_help = "With --file, each line of the file is one task as JSON:\n  \
    {\"type\": \"echo\", \"payload\": {\"n\": 1}, \"queue\": \"default\", \"id\": \"t-1\", \"process_in\": \"10s\",\n   \
    \"max_retry\": 5, \"timeout\": \"30s\", \"retention\": \"1h\", \"unique\": \"1m\"}\n\
    Only \"type\" is required. Durations are text (\"10s\", \"1m30s\") or a number of seconds,\n\
    at most 100 years; times at most 100 years ahead.\n\
    Flags given with --file (--queue, --max-retry, --timeout, --retention, --unique, --in) apply to\n\
    lines that do not set them. A bad line is reported by its number and the others still go in."
)]
pub(crate) struct EnqueueArgs {
    /// The task type, such as `email:send`; it selects the plugin that runs
    /// the task.
    #[arg(value_name = "TYPE", required_unless_present = "file")]
    pub(crate) task_type: Option<String>,
    /// The payload as JSON text (quote it for the shell), `@FILE` to read
    /// it from a file, or `-` to read it from stdin.
    #[arg(value_name = "PAYLOAD", default_value = "{}")]
    pub(crate) payload: String,
    /// Enqueue every task of a JSON Lines file (`-` for stdin) instead, in
    /// pipelined batches, with a progress bar on a terminal.
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with_all = ["task_type", "id", "at", "deadline"])]
    pub(crate) file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) durability: DurabilityArgs,
    /// The queue to put the task on.
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    /// A task id of your choosing; enqueuing the same id again in the same
    /// queue is refused while the first task is kept.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Run the task no sooner than this long from now, e.g. 10s or 5m.
    #[arg(long = "in", value_parser = parse::duration, value_name = "DURATION", conflicts_with = "at")]
    pub(crate) process_in: Option<Duration>,
    /// Run the task no sooner than this time, e.g. 2026-11-22T03:00:00Z.
    #[arg(long, value_parser = parse::time, value_name = "TIME")]
    pub(crate) at: Option<SystemTime>,
    /// Retries after the first attempt before the task is archived
    /// [default: 25].
    #[arg(long = "max-retry", value_name = "N")]
    pub(crate) max_retry: Option<u32>,
    /// How long one attempt may run (the plugin's own limit still applies).
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
    /// A time after which no attempt may still run; with --timeout too, the
    /// earlier wins.
    #[arg(long, value_parser = parse::time, value_name = "TIME")]
    pub(crate) deadline: Option<SystemTime>,
    /// How long the completed task and its result are kept (0s: not kept)
    /// [default: 10m].
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) retention: Option<Duration>,
    /// Refuse this task while an equal one (same queue, type and payload)
    /// enqueued less than DURATION ago is still held; the lock is released
    /// early when that task completes, is archived or is deleted.
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) unique: Option<Duration>,
    /// Debounce under KEY: the task runs --in DURATION from now, and a
    /// task enqueued under the same KEY (same queue and type) before it
    /// starts replaces its payload and waits DURATION again, so a burst of
    /// duplicates runs once, with the last payload (the id printed is the
    /// task that will run it).
    #[arg(long, value_name = "KEY", requires = "process_in", conflicts_with_all = ["id", "unique"])]
    pub(crate) debounce: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl EnqueueArgs {
    /// A client on these Redis options, named `wasmq:cli:enqueue`, waiting
    /// for replicas if asked.
    pub(crate) async fn client(&self) -> Result<Client, crate::broker::Error> {
        let mut options = self.redis.options(super::cli_name("enqueue"));
        options.wait_replicas = self.durability.wait_replicas();
        Client::connect_with(&self.redis.url, &options).await
    }

    /// Applies the option flags to a task.
    pub(crate) fn apply_defaults(&self, mut task: NewTask) -> NewTask {
        if let Some(queue) = &self.queue {
            task = task.queue(queue);
        }
        if let Some(retries) = self.max_retry {
            task = task.max_retry(retries);
        }
        if let Some(retention) = self.retention {
            task = task.retention(retention);
        }
        if let Some(delay) = self.process_in {
            task = task.process_in(delay);
        }
        if let Some(timeout) = self.timeout {
            task = task.timeout(timeout);
        }
        if let Some(ttl) = self.unique {
            task = task.unique(ttl);
        }
        if let (Some(key), Some(delay)) = (&self.debounce, self.process_in) {
            task = task.debounce(key, delay);
        }
        task
    }
}

/// Runs `wasmq enqueue`.
pub(crate) async fn run(args: EnqueueArgs) -> Result<(), Failure> {
    if let Some(file) = &args.file {
        return super::batch::run(&args, file).await;
    }
    let task_type = args
        .task_type
        .clone()
        .expect("clap requires TYPE unless --file is given");
    let payload = read_payload(&args.payload)?;
    let mut task = args.apply_defaults(NewTask::new(&task_type, payload)?);
    if let Some(id) = &args.id {
        task = task.id(id);
    }
    if let Some(at) = args.at {
        task = task.process_at(at);
    }
    if let Some(deadline) = args.deadline {
        task = task.deadline(deadline);
    }
    let queue = args
        .queue
        .clone()
        .unwrap_or_else(|| crate::broker::DEFAULT_QUEUE.to_string());
    let client = args.client().await?;
    let enqueued = client
        .enqueue(task)
        .await
        .with_context(|| format!("enqueue of a {task_type:?} task on queue {queue:?} refused"))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"id": enqueued.id, "queue": enqueued.queue, "state": enqueued.state})
        );
    } else {
        println!("{}", enqueued.id);
        eprintln!(
            "enqueued {task_type} task {} on queue {:?} ({})",
            enqueued.id, enqueued.queue, enqueued.state
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
