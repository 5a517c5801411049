//! `wasmq task`: show and delete single tasks.

use anyhow::Context;
use clap::{Args, Subcommand};
use wasmq::broker::{ArchiveLimits, Broker, TaskInfo};

use super::RedisArgs;
use super::parse::Failure;

/// The `wasmq task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Show a task: its state, attempts, last error, payload and result.
    Show(ShowArgs),
    /// Delete a task that is not running, with its record and unique lock,
    /// which frees its id for reuse.
    Delete(DeleteArgs),
    /// Cancel a task that has not finished. A running task's worker stops
    /// its instance at once; the task is archived with a `cancelled` error
    /// (and its unique lock released).
    Cancel(DeleteArgs),
}

/// Arguments of `wasmq task show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The task id.
    pub id: String,
    /// The task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub queue: Option<String>,
    /// Print the task as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Arguments of `wasmq task delete` and `wasmq task cancel`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The task id.
    pub id: String,
    /// The task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub queue: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Runs a `wasmq task` subcommand.
pub async fn run(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::Show(args) => show(args).await,
        TaskCommand::Delete(args) => delete(args).await,
        TaskCommand::Cancel(args) => cancel(args).await,
    }
}

async fn show(args: ShowArgs) -> Result<(), Failure> {
    let broker = Broker::connect(&args.redis.url).await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    if args.json {
        println!("{}", to_json(&info));
    } else {
        print!("{}", to_text(&info));
    }
    Ok(())
}

async fn delete(args: DeleteArgs) -> Result<(), Failure> {
    let broker = Broker::connect(&args.redis.url).await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    let queue = &info.message.queue;
    let state = broker
        .delete(queue, &args.id)
        .await
        .with_context(|| format!("deleting task {} from queue {queue:?}", args.id))?;
    match state {
        Some(state) => {
            println!("deleted {} task {} from queue {queue:?}", state, args.id);
            Ok(())
        }
        None => Err(Failure::not_found(format!(
            "task {} is already gone from queue {queue:?}",
            args.id
        ))),
    }
}

async fn cancel(args: DeleteArgs) -> Result<(), Failure> {
    let broker = Broker::connect(&args.redis.url).await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    let queue = &info.message.queue;
    let state = broker
        .cancel(queue, &args.id, ArchiveLimits::default())
        .await
        .with_context(|| format!("cancelling task {} in queue {queue:?}", args.id))?;
    match state {
        Some(state) => {
            println!(
                "cancelled {} task {} in queue {queue:?}; it is archived as cancelled",
                state, args.id
            );
            Ok(())
        }
        None => Err(Failure::not_found(format!(
            "task {} is already gone from queue {queue:?}",
            args.id
        ))),
    }
}

async fn find(broker: &Broker, id: &str, queue: Option<&str>) -> Result<TaskInfo, Failure> {
    let found = broker
        .find_task(id, queue)
        .await
        .with_context(|| format!("looking up task {id}"))?;
    found.ok_or_else(|| {
        let place = match queue {
            Some(queue) => format!("in queue {queue:?}"),
            None => "in any queue".to_string(),
        };
        Failure::not_found(format!(
            "no task {id} {place}; completed tasks are kept only for their retention (10m unless enqueued with --retention)"
        ))
    })
}

/// Bytes as text when they are UTF-8, else a note of their size.
fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("<{} bytes of binary data>", bytes.len()),
    }
}

fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn to_text(info: &TaskInfo) -> String {
    use std::fmt::Write;
    use wasmq::TaskState;
    let message = &info.message;
    let mut out = String::new();
    let when = info.state_time_ms.map(time);
    let state = match (info.state, when) {
        (TaskState::Scheduled | TaskState::Retry, Some(at)) => format!("{} (due {at})", info.state),
        (TaskState::Active, Some(at)) => format!("active (lease until {at})"),
        (TaskState::Archived, Some(at)) => format!("archived (at {at})"),
        (TaskState::Completed, Some(at)) => format!("completed (kept until {at})"),
        (state, _) => state.to_string(),
    };
    let _ = writeln!(out, "task {}", message.id);
    let _ = writeln!(out, "  queue:      {}", message.queue);
    let _ = writeln!(out, "  type:       {}", message.task_type);
    let _ = writeln!(out, "  state:      {state}");
    let _ = writeln!(
        out,
        "  attempts:   {} (max retry {})",
        info.attempts, message.max_retry
    );
    let _ = writeln!(out, "  enqueued:   {}", time(message.enqueued_at_ms));
    if let Some(timeout) = message.timeout_ms {
        let _ = writeln!(
            out,
            "  timeout:    {}",
            humantime::format_duration(std::time::Duration::from_millis(timeout))
        );
    }
    if let Some(deadline) = message.deadline_ms {
        let _ = writeln!(out, "  deadline:   {}", time(deadline));
    }
    let _ = writeln!(out, "  payload:    {}", message.payload.get());
    if let Some(error) = &info.last_error {
        let _ = writeln!(
            out,
            "  last error: {} on attempt {} at {}: {}",
            error.kind,
            error.attempt,
            time(error.at_ms),
            error.message
        );
    }
    if let Some(result) = &info.result {
        let _ = writeln!(out, "  result:     {}", show_bytes(result));
    }
    out
}

fn to_json(info: &TaskInfo) -> serde_json::Value {
    let result = info.result.as_deref().map(|bytes| {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => value,
            Err(_) => serde_json::Value::String(show_bytes(bytes)),
        }
    });
    serde_json::json!({
        "id": info.message.id,
        "queue": info.message.queue,
        "type": info.message.task_type,
        "state": info.state,
        "state_time_ms": info.state_time_ms,
        "attempts": info.attempts,
        "max_retry": info.message.max_retry,
        "payload": info.message.payload,
        "timeout_ms": info.message.timeout_ms,
        "deadline_ms": info.message.deadline_ms,
        "retention_ms": info.message.retention_ms,
        "enqueued_at_ms": info.message.enqueued_at_ms,
        "last_error": info.last_error,
        "result": result,
    })
}
