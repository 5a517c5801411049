//! `wasmq enqueue`: put one task on a queue.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::{Client, NewTask, TraceContext};
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
    /// With --unique: each refused duplicate also holds the lock for TTL
    /// from its arrival, so a steady stream of duplicates keeps it held
    /// (the next equal task goes through after TTL of quiet, or once the
    /// holder ends).
    #[arg(long = "unique-extend", requires = "unique")]
    pub(crate) unique_extend: bool,
    /// Debounce under KEY: the task runs --in DURATION from now, and a
    /// task enqueued under the same KEY (same queue and type) before it
    /// starts replaces its payload and waits DURATION again, so a burst of
    /// duplicates runs once, with the last payload (the id printed is the
    /// task that will run it).
    #[arg(long, value_name = "KEY", requires = "process_in", conflicts_with_all = ["id", "unique"])]
    pub(crate) debounce: Option<String>,
    /// Put the task in group KEY of its queue (a tenant, a customer):
    /// workers take pending tasks from each group in turn, so one group's
    /// backlog cannot starve another's. With --file, every task without a
    /// "group" of its own.
    #[arg(long, value_name = "KEY")]
    pub(crate) group: Option<String>,
    /// Aggregate under KEY (Asynq's task aggregation): the task joins the
    /// open batch of KEY (same queue and type) or opens one; the handler
    /// runs once per batch, its payload the JSON array of the members'
    /// payloads. The id printed is the batch's.
    #[arg(long = "group-by", value_name = "KEY", conflicts_with_all = ["id", "unique", "debounce", "process_in", "at"])]
    pub(crate) group_by: Option<String>,
    /// With --group-by: how long a new batch collects tasks before it runs.
    #[arg(long = "aggregate-after", value_parser = parse::duration, value_name = "DURATION", default_value = "5s", requires = "group_by")]
    pub(crate) aggregate_after: Duration,
    /// With --group-by: a batch runs at once when it holds N tasks.
    #[arg(
        long = "max-group",
        value_name = "N",
        default_value_t = 100,
        requires = "group_by"
    )]
    pub(crate) max_group: u32,
    /// The W3C trace context of the span this task descends from
    /// (00-<trace id>-<span id>-<flags>): a tracing worker's spans for its
    /// attempts are children of that span. Taken from the TRACEPARENT
    /// variable when not given, as tools that propagate context through the
    /// environment set it. With --file, every task carries it.
    #[arg(long, env = "TRACEPARENT", value_name = "TRACEPARENT")]
    pub(crate) traceparent: Option<String>,
    /// The W3C tracestate that goes with --traceparent (vendor=value,...);
    /// from the TRACESTATE variable when not given.
    #[arg(long, env = "TRACESTATE", value_name = "TRACESTATE")]
    pub(crate) tracestate: Option<String>,
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

    /// The trace context the tasks carry (--traceparent, TRACEPARENT), if
    /// any; an error names what is wrong with it.
    pub(crate) fn trace_context(&self) -> Result<Option<TraceContext>, Failure> {
        let Some(traceparent) = self.traceparent.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        TraceContext::new(traceparent, self.tracestate.as_deref())
            .map(Some)
            .map_err(|err| anyhow::anyhow!("--traceparent (or TRACEPARENT): {err}").into())
    }

    /// Applies the option flags to a task (the trace context once
    /// [`EnqueueArgs::trace_context`] accepted it).
    pub(crate) fn apply_defaults(&self, mut task: NewTask) -> NewTask {
        if let Ok(Some(context)) = self.trace_context() {
            task = task.trace(context);
        }
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
            task = if self.unique_extend {
                task.unique_extending(ttl)
            } else {
                task.unique(ttl)
            };
        }
        if let Some(group) = &self.group {
            task = task.group(group);
        }
        if let Some(key) = &self.group_by {
            task = task.aggregate(key, self.aggregate_after, self.max_group);
        }
        if let (Some(key), Some(delay)) = (&self.debounce, self.process_in) {
            task = task.debounce(key, delay);
        }
        task
    }
}

/// Runs `wasmq enqueue`.
pub(crate) async fn run(args: EnqueueArgs) -> Result<(), Failure> {
    args.trace_context()?;
    if let Some(file) = &args.file {
        return super::enqueue_file::run(&args, file).await;
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
