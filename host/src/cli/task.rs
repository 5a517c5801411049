//! `wasmq task`: show and delete single tasks; see and stop trees of
//! follow-up tasks.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;

use crate::TaskState;
use crate::broker::lineage::Tree;
use crate::broker::{ArchiveLimits, Broker, BulkAction, TaskInfo};
use crate::task::TaskRef;

use super::RedisArgs;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq task` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// List a queue's tasks in one state, a page at a time.
    Ls(ListArgs),
    /// Show a task: its state, attempts, last error, payload and result.
    Show(ShowArgs),
    /// Run a scheduled, retry or archived task now: it goes to the head of
    /// its queue.
    Run(DeleteArgs),
    /// Archive a pending, scheduled or retry task without running it.
    Archive(DeleteArgs),
    /// Delete every task of a queue in a state (not active).
    Deleteall(AllArgs),
    /// Archive every task of a queue in a state (pending, scheduled, retry).
    Archiveall(AllArgs),
    /// Run every task of a queue in a state (scheduled, retry, archived) now.
    Runall(AllArgs),
    /// Delete a task that is not running, with its record and unique lock,
    /// which frees its id for reuse.
    Delete(DeleteArgs),
    /// Cancel a task that has not finished. A running task's worker stops
    /// its instance at once; the task is archived with a `cancelled` error
    /// (and its unique lock released).
    Cancel(DeleteArgs),
    /// Show the tree of follow-up tasks a task belongs to: its root, the
    /// depth reached, and its descendants by state and by depth.
    Tree(ShowArgs),
    /// Stop the tree of follow-up tasks a task belongs to, in one step: no
    /// further follow-up of its root is accepted (enqueues fail as
    /// `denied`), and its root and descendants that have not finished are
    /// cancelled (running ones stopped at once; all archived as cancelled).
    StopTree(ShowArgs),
}

/// Arguments of `wasmq task ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The queue.
    #[arg(long, short = 'q', default_value = crate::broker::DEFAULT_QUEUE)]
    pub(crate) queue: String,
    /// The state: waiting (flow parents), pending, active, scheduled, retry,
    /// archived or completed.
    #[arg(long, short = 's', default_value = "pending")]
    pub(crate) state: TaskState,
    /// Which page (from 0).
    #[arg(long, default_value_t = 0)]
    pub(crate) page: usize,
    /// Tasks per page.
    #[arg(long, default_value_t = 20)]
    pub(crate) size: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq task deleteall`, `archiveall` and `runall`.
#[derive(Debug, Args)]
pub(crate) struct AllArgs {
    /// The queue.
    #[arg(long, short = 'q')]
    pub(crate) queue: String,
    /// The state of the tasks to act on.
    #[arg(long, short = 's')]
    pub(crate) state: TaskState,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq task show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The task id.
    pub(crate) id: String,
    /// The task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    /// Print the task as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq task delete` and `wasmq task cancel`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The task id.
    pub(crate) id: String,
    /// The task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq task` subcommand.
pub(crate) async fn run(command: TaskCommand) -> Result<(), Failure> {
    match command {
        TaskCommand::Show(args) => show(args).await,
        TaskCommand::Ls(args) => list(args).await,
        TaskCommand::Delete(args) => act(args, BulkAction::Delete).await,
        TaskCommand::Run(args) => act(args, BulkAction::Run).await,
        TaskCommand::Archive(args) => act(args, BulkAction::Archive).await,
        TaskCommand::Cancel(args) => cancel(args).await,
        TaskCommand::Tree(args) => tree(args).await,
        TaskCommand::StopTree(args) => stop_tree(args).await,
        TaskCommand::Deleteall(args) => act_all(args, BulkAction::Delete).await,
        TaskCommand::Archiveall(args) => act_all(args, BulkAction::Archive).await,
        TaskCommand::Runall(args) => act_all(args, BulkAction::Run).await,
    }
}

async fn show(args: ShowArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    if args.json {
        println!("{}", info.to_json());
    } else {
        print!("{}", to_text(&info));
    }
    Ok(())
}

fn verb(action: BulkAction) -> (&'static str, &'static str) {
    match action {
        BulkAction::Run => ("running", "moved to the head of the queue"),
        BulkAction::Archive => ("archiving", "archived"),
        BulkAction::Delete => ("deleting", "deleted"),
    }
}

async fn act(args: DeleteArgs, action: BulkAction) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    let queue = &info.message.queue;
    let (doing, done) = verb(action);
    let state = broker
        .act_on_task(queue, &args.id, action)
        .await
        .with_context(|| format!("{doing} task {} of queue {queue:?}", args.id))?;
    match state {
        Some(state) => {
            println!("{state} task {} of queue {queue:?} {done}", args.id);
            Ok(())
        }
        None => Err(Failure::not_found(format!(
            "task {} is already gone from queue {queue:?}",
            args.id
        ))),
    }
}

async fn act_all(args: AllArgs, action: BulkAction) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let (doing, done) = verb(action);
    let count = broker
        .act_on_state(&args.queue, args.state, action)
        .await
        .with_context(|| format!("{doing} the {} tasks of queue {:?}", args.state, args.queue))?;
    println!(
        "{count} {} task(s) of queue {:?} {done}",
        args.state, args.queue
    );
    Ok(())
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let size = args.size.clamp(1, 1000);
    let ids = broker
        .task_ids(&args.queue, args.state, args.page * size, size)
        .await?;
    let tasks = broker.task_infos(&args.queue, &ids).await?;
    if args.json {
        let json: Vec<_> = tasks.iter().map(TaskInfo::to_json).collect();
        println!("{}", serde_json::Value::Array(json));
        return Ok(());
    }
    let mut table = Table::new(&["ID", "TYPE", "ATTEMPTS", "WHEN", "PAYLOAD", "LAST ERROR"]);
    for info in &tasks {
        let payload = info.message.payload.get();
        let payload = if payload.chars().count() > 40 {
            format!("{}...", payload.chars().take(37).collect::<String>())
        } else {
            payload.to_string()
        };
        table.row(vec![
            info.message.id.clone(),
            info.message.task_type.clone(),
            format!(
                "{}/{}",
                info.attempts,
                info.message.max_retry.saturating_add(1)
            ),
            info.state_time_ms.map_or_else(|| "-".into(), time),
            payload,
            info.last_error.as_ref().map_or_else(
                || "-".into(),
                |error| format!("{}: {}", error.kind, error.message),
            ),
        ]);
    }
    if table.is_empty() {
        println!(
            "no {} tasks in queue {:?} (page {})",
            args.state, args.queue, args.page
        );
    } else {
        print!("{}", table.render());
    }
    Ok(())
}

async fn cancel(args: DeleteArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
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

/// The root, then the descendants of a tree, with the state of each.
async fn tree_states(
    broker: &Broker,
    tree: &Tree,
) -> Result<Vec<(TaskRef, u32, Option<TaskState>)>, Failure> {
    let mut tasks = vec![(tree.root.clone(), 0)];
    tasks.extend(tree.members.iter().cloned());
    let refs: Vec<TaskRef> = tasks.iter().map(|(task, _)| task.clone()).collect();
    let states = broker
        .task_states(&refs)
        .await
        .with_context(|| format!("reading the states of the tree of {}", tree.root))?;
    Ok(tasks
        .into_iter()
        .map(|(task, depth)| {
            let state = states.get(&task).copied().flatten();
            (task, depth, state)
        })
        .collect())
}

fn state_name(state: Option<TaskState>) -> &'static str {
    state.map_or("gone", TaskState::as_str)
}

async fn tree(args: ShowArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    let ancestry = info.message.ancestry();
    let tree = broker
        .tree(&ancestry.root)
        .await
        .with_context(|| format!("reading the tree of {}", ancestry.root))?;
    let tasks = tree_states(&broker, &tree).await?;
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_depth: BTreeMap<u32, u64> = BTreeMap::new();
    for (_, depth, state) in &tasks[1..] {
        *by_state.entry(state_name(*state)).or_default() += 1;
        *by_depth.entry(*depth).or_default() += 1;
    }
    let root_state = state_name(tasks[0].2);
    if args.json {
        let json = serde_json::json!({
            "root": tree.root,
            "root_state": root_state,
            "task": {"queue": info.message.queue, "id": info.message.id, "depth": ancestry.depth},
            "descendants": tree.descendants,
            "depth": tree.depth,
            "stopped_at_ms": tree.stopped_at_ms,
            "by_state": by_state,
            "by_depth": by_depth.iter().map(|(depth, n)| (depth.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        });
        println!("{json}");
        return Ok(());
    }
    let list = |counts: Vec<String>| {
        if counts.is_empty() {
            "-".to_string()
        } else {
            counts.join(", ")
        }
    };
    println!("tree of root task {} ({root_state})", tree.root);
    if let Some(at) = tree.stopped_at_ms {
        println!(
            "  stopped:     at {}; no further follow-up is accepted",
            time(at)
        );
    }
    println!(
        "  descendants: {} (depth reached {})",
        tree.descendants, tree.depth
    );
    println!(
        "  by state:    {}",
        list(
            by_state
                .iter()
                .map(|(state, n)| format!("{state} {n}"))
                .collect()
        )
    );
    println!(
        "  by depth:    {}",
        list(
            by_depth
                .iter()
                .map(|(depth, n)| format!("{depth}: {n}"))
                .collect()
        )
    );
    Ok(())
}

async fn stop_tree(args: ShowArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("task").await?;
    let info = find(&broker, &args.id, args.queue.as_deref()).await?;
    let root = info.message.ancestry().root;
    let stopped_at = broker
        .stop_tree(&root)
        .await
        .with_context(|| format!("stopping the tree of {root}"))?;
    // Stopped first: from here on no descendant is added, so this listing
    // is complete (one whose enqueue was under way is cancelled by the
    // worker that fetches it).
    let tree = broker
        .tree(&root)
        .await
        .with_context(|| format!("reading the tree of {root}"))?;
    let tasks = tree_states(&broker, &tree).await?;
    let mut cancelled: BTreeMap<&str, u64> = BTreeMap::new();
    let mut finished = 0u64;
    for (task, _, state) in &tasks {
        if matches!(
            state,
            None | Some(TaskState::Archived) | Some(TaskState::Completed)
        ) {
            finished += 1;
            continue;
        }
        match broker
            .cancel(&task.queue, &task.id, ArchiveLimits::default())
            .await
        {
            Ok(Some(state)) => *cancelled.entry(state.as_str()).or_default() += 1,
            Ok(None) | Err(crate::broker::Error::TaskFinished { .. }) => finished += 1,
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context(format!("cancelling task {task} of the tree of {root}"))
                    .into());
            }
        }
    }
    let total: u64 = cancelled.values().sum();
    let detail: Vec<String> = cancelled
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    if args.json {
        let json = serde_json::json!({
            "root": root,
            "stopped_at_ms": stopped_at,
            "cancelled": cancelled,
            "finished": finished,
        });
        println!("{json}");
        return Ok(());
    }
    println!(
        "stopped the tree of root task {root} at {}: no further follow-up of it is accepted",
        time(stopped_at)
    );
    println!(
        "cancelled {total} task(s){}; {finished} had already finished",
        if detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.join(", "))
        }
    );
    Ok(())
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
    super::format::time_millis(ms)
}

/// Stored text made safe to print (see [`super::format::printable`]).
fn shown(text: &str, max_chars: usize) -> String {
    super::format::printable(text, max_chars)
}

fn to_text(info: &TaskInfo) -> String {
    use crate::TaskState;
    use std::fmt::Write;
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
    let _ = writeln!(out, "task {}", shown(&message.id, 1_000));
    let _ = writeln!(out, "  queue:      {}", shown(&message.queue, 1_000));
    let _ = writeln!(out, "  type:       {}", shown(&message.task_type, 1_000));
    if let Some(group) = &message.group {
        let _ = writeln!(out, "  group:      {}", shown(group, 1_000));
    }
    let _ = writeln!(out, "  state:      {state}");
    if let Some(progress) = &info.progress {
        let done = progress
            .done
            .map(|done| format!("{done} "))
            .unwrap_or_default();
        let note = progress
            .note
            .as_ref()
            .map(|note| format!("{} ", shown(&note.to_string(), 300)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  progress:   {done}{note}(attempt {}, {})",
            progress.attempt,
            time(progress.at_ms)
        );
    }
    let _ = writeln!(
        out,
        "  attempts:   {} (max retry {})",
        info.attempts, message.max_retry
    );
    let _ = writeln!(out, "  enqueued:   {}", time(message.enqueued_at_ms));
    let ancestry = message.ancestry();
    let _ = match &ancestry.parent {
        Some(parent) => writeln!(
            out,
            "  lineage:    root {}, depth {}, parent {parent}",
            ancestry.root, ancestry.depth
        ),
        None => writeln!(out, "  lineage:    a root (depth 0)"),
    };
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
    let _ = writeln!(
        out,
        "  payload:    {}",
        shown(message.payload.get(), usize::MAX)
    );
    if let Some(error) = &info.last_error {
        let _ = writeln!(
            out,
            "  last error: {} on attempt {} at {}: {}",
            error.kind,
            error.attempt,
            time(error.at_ms),
            shown(&error.message, 10_000)
        );
    }
    if let Some(result) = &info.result {
        let _ = writeln!(
            out,
            "  result:     {}",
            shown(&show_bytes(result), usize::MAX)
        );
    }
    out
}
