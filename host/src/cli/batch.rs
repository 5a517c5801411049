//! `wasmq batch`: open a batch with callbacks, add tasks to it, close it,
//! look at it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::RedisArgs;
use super::parse::Failure;
use crate::NewTask;
use crate::broker::Client;
use crate::spec::TaskSpec;

/// The `batch` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BatchCommand {
    /// Open a batch: tasks added to it (until it is closed) on any queues,
    /// with callbacks that run once when all have succeeded
    /// (--on-success) or all have ended (--on-complete). Prints its id.
    ///
    /// A callback is one task object, as a line of `enqueue --file`
    /// (inline JSON, or @FILE). Its payload becomes
    /// {"batch": {"id", "total", "succeeded", "failed"}, "payload": <yours>}.
    #[command(after_help = "Example:\n  \
        id=$(wasmq batch open --on-complete '{\"type\": \"import:report\"}')\n  \
        wasmq batch add $id rows.jsonl\n  \
        wasmq batch close $id\n  \
        wasmq batch show $id")]
    Open(OpenArgs),
    /// Add the tasks of a JSON Lines file (`-` for stdin) to an open batch.
    Add(AddArgs),
    /// Close a batch: it takes no more tasks, and its callbacks run once
    /// every task added has ended (at once if all have).
    Close(IdArgs),
    /// A batch's counts: added, succeeded, failed; closed; callbacks done.
    Show(ShowArgs),
}

/// Arguments of `wasmq batch open`.
#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The batch's id (default: a new UUID).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The task to enqueue once every task of the batch completed.
    #[arg(long, value_name = "TASK")]
    pub(crate) on_success: Option<String>,
    /// The task to enqueue once every task of the batch ended, however.
    #[arg(long, value_name = "TASK")]
    pub(crate) on_complete: Option<String>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq batch add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The batch's id.
    pub(crate) batch: String,
    /// A JSON Lines file of tasks, or `-` for stdin.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq batch close`.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The batch's id.
    pub(crate) batch: String,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq batch show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The batch's id.
    pub(crate) batch: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `batch` subcommand.
pub(crate) async fn run(command: BatchCommand) -> Result<(), Failure> {
    match command {
        BatchCommand::Open(args) => open(args).await,
        BatchCommand::Add(args) => add(args).await,
        BatchCommand::Close(args) => {
            let client = Client::new(args.redis.broker("batch").await?);
            let status = client.close_batch(&args.batch).await?;
            println!(
                "closed batch {}: {} tasks, {} succeeded, {} failed{}",
                status.id,
                status.total,
                status.succeeded,
                status.failed,
                if status.done {
                    "; callbacks enqueued"
                } else {
                    ""
                }
            );
            Ok(())
        }
        BatchCommand::Show(args) => {
            let client = Client::new(args.redis.broker("batch").await?);
            let Some(status) = client.batch(&args.batch).await? else {
                return Err(Failure::not_found(format!("no batch {}", args.batch)));
            };
            if args.json {
                super::format::print_json(&status)?;
            } else {
                println!("batch      {}", status.id);
                println!("tasks      {}", status.total);
                println!("succeeded  {}", status.succeeded);
                println!("failed     {}", status.failed);
                println!(
                    "pending    {}",
                    status
                        .total
                        .saturating_sub(status.succeeded + status.failed)
                );
                println!(
                    "closed     {}",
                    if status.closed {
                        "yes"
                    } else {
                        "no: tasks may still be added"
                    }
                );
                println!(
                    "callbacks  {}",
                    if status.done { "enqueued" } else { "not yet" }
                );
            }
            Ok(())
        }
    }
}

/// A task object given inline or as @FILE.
fn task_object(text: &str, what: &str) -> Result<NewTask, Failure> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_string(),
    };
    let spec: TaskSpec = serde_json::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{what} is not a task object: {err}"))?;
    Ok(spec
        .into_task(|task| task)
        .map_err(|err| anyhow::anyhow!("{what}: {err}"))?)
}

async fn open(args: OpenArgs) -> Result<(), Failure> {
    let on_success = args
        .on_success
        .as_deref()
        .map(|text| task_object(text, "--on-success"))
        .transpose()?;
    let on_complete = args
        .on_complete
        .as_deref()
        .map(|text| task_object(text, "--on-complete"))
        .transpose()?;
    if on_success.is_none() && on_complete.is_none() {
        return Err(anyhow::anyhow!(
            "a batch needs a callback: give --on-success TASK, --on-complete TASK or both"
        )
        .into());
    }
    let client = Client::new(args.redis.broker("batch").await?);
    let id = client
        .open_batch(args.id.as_deref(), on_success, on_complete)
        .await?;
    println!("{id}");
    Ok(())
}

async fn add(args: AddArgs) -> Result<(), Failure> {
    let reader: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("opening {}", args.file.display()))?,
        )
    };
    let mut tasks = Vec::new();
    let mut numbers = Vec::new();
    let mut bad = 0;
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<TaskSpec>(&line)
            .map_err(|err| format!("not a task: {err}"))
            .and_then(|spec| spec.into_task(|task| task));
        match parsed {
            Ok(task) => {
                tasks.push(task);
                numbers.push(index + 1);
            }
            Err(err) => {
                eprintln!("line {}: {err}", index + 1);
                bad += 1;
            }
        }
    }
    let client = Client::new(args.redis.broker("batch").await?);
    let outcomes = client.add_to_batch(&args.batch, tasks).await?;
    let mut added = 0;
    for (number, outcome) in numbers.iter().zip(outcomes) {
        match outcome {
            Ok(_) => added += 1,
            Err(err) => {
                eprintln!("line {number}: {err}");
                bad += 1;
            }
        }
    }
    println!("added {added} tasks to batch {}; {bad} refused", args.batch);
    if bad > 0 {
        return Err(anyhow::anyhow!("{bad} lines were refused (see above)").into());
    }
    Ok(())
}
