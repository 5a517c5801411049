//! `wasmq flow`: enqueue a flow from a JSON file, draw its tree, cancel or
//! delete it.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::RedisArgs;
use super::parse::Failure;
use crate::broker::{Client, Flow, FlowTree};
use crate::task::OnChildFailure;

/// The `flow` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum FlowCommand {
    /// Enqueue a flow: a task with children that run first (any depth).
    ///
    /// The file holds one task object, as a line of `enqueue --file`, with
    /// a `children` array of the same objects. A parent runs once, after
    /// all its children ended, and receives their outcomes. A child's
    /// `on_failure` says what its failure does to its parent:
    /// `fail-parent` (the default: the parent is archived, never runs),
    /// `ignore` (the parent runs without it) or `continue` (the parent
    /// runs with the error among the outcomes). A file holding an array of
    /// task objects is a chain: each runs after the one before it, with
    /// its result. The whole flow is checked first; a bad node refuses it
    /// with its path (`children[3].children[0].id`) and nothing is
    /// enqueued.
    #[command(after_help = "Example (report.json):\n  \
        {\"type\": \"report:build\", \"queue\": \"reports\",\n   \
         \"children\": [\n     \
           {\"type\": \"fetch\", \"payload\": {\"url\": \"https://a.example\"}},\n     \
           {\"type\": \"fetch\", \"payload\": {\"url\": \"https://b.example\"}, \"on_failure\": \"continue\"}\n   \
         ]}\n\n  \
        wasmq flow add report.json\n  \
        wasmq flow show <printed id>\n\n\
        A chain (chain.json): [{\"type\": \"download\"}, {\"type\": \"transcode\"}, {\"type\": \"publish\"}]")]
    Add(AddArgs),
    /// Draw a flow's tree, with each task's id and state (give the id of
    /// any task in it).
    Show(ShowArgs),
    /// Cancel every task of a flow that has not run yet (running ones are
    /// left to end); the tree shows them archived as cancelled.
    Cancel(EndArgs),
    /// Delete every task of a flow that is not running, records and all.
    Rm(EndArgs),
}

/// Arguments of `wasmq flow add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The flow's JSON file, or `-` for stdin.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Print the root's id and queue as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    /// The queue of tasks that do not name one.
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    /// Retries after the first attempt, for tasks that do not say
    /// [default: 25].
    #[arg(long = "max-retry", value_name = "N")]
    pub(crate) max_retry: Option<u32>,
}

/// Arguments of `wasmq flow show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The id of any task of the flow.
    pub(crate) id: String,
    /// That task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    /// Print the tree as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq flow cancel` and `wasmq flow rm`.
#[derive(Debug, Args)]
pub(crate) struct EndArgs {
    /// The id of any task of the flow.
    pub(crate) id: String,
    /// That task's queue (default: search every known queue).
    #[arg(long, short = 'q')]
    pub(crate) queue: Option<String>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `flow` subcommand.
pub(crate) async fn run(command: FlowCommand) -> Result<(), Failure> {
    match command {
        FlowCommand::Add(args) => add(args).await,
        FlowCommand::Show(args) => show(args).await,
        FlowCommand::Cancel(args) => end(args, false).await,
        FlowCommand::Rm(args) => end(args, true).await,
    }
}

async fn add(args: AddArgs) -> Result<(), Failure> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the flow from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let flow = Flow::from_json(&text, &|mut task| {
        if let Some(queue) = &args.queue {
            task = task.queue(queue);
        }
        if let Some(retries) = args.max_retry {
            task = task.max_retry(retries);
        }
        task
    })?;
    let broker = args.redis.broker("flow").await?;
    let enqueued = Client::new(broker).enqueue_flow(flow).await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "id": enqueued.root.id,
                "queue": enqueued.root.queue,
                "state": enqueued.root.state,
                "tasks": enqueued.tasks,
            })
        );
    } else {
        println!("{}", enqueued.root.id);
        eprintln!(
            "enqueued a flow of {} task{} on its root {} (queue {}): wasmq flow show {}",
            enqueued.tasks,
            if enqueued.tasks == 1 { "" } else { "s" },
            enqueued.root.id,
            enqueued.root.queue,
            enqueued.root.id
        );
    }
    Ok(())
}

async fn show(args: ShowArgs) -> Result<(), Failure> {
    let client = Client::new(args.redis.broker("flow").await?);
    let Some(tree) = client.flow(&args.id, args.queue.as_deref()).await? else {
        return Err(Failure::not_found(format!("no task {}", args.id)));
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&tree).context("encoding the tree")?
        );
    } else {
        print!("{}", draw(&tree));
    }
    Ok(())
}

async fn end(args: EndArgs, delete: bool) -> Result<(), Failure> {
    let client = Client::new(args.redis.broker("flow").await?);
    let ended = if delete {
        client.delete_flow(&args.id, args.queue.as_deref()).await?
    } else {
        client.cancel_flow(&args.id, args.queue.as_deref()).await?
    };
    let Some(ended) = ended else {
        return Err(Failure::not_found(format!("no task {}", args.id)));
    };
    println!(
        "{} {ended} task{} of the flow",
        if delete { "deleted" } else { "cancelled" },
        if ended == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The tree as text: one line per task, children indented under their
/// parent.
fn draw(tree: &FlowTree) -> String {
    let mut out = String::new();
    line(&mut out, tree, &tree.queue, "", "");
    // (node, the prefix of its line, whether it is its parent's last child)
    let mut stack: Vec<(&FlowTree, String, bool)> = Vec::new();
    push_children(&mut stack, tree, "");
    while let Some((node, prefix, last)) = stack.pop() {
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        line(&mut out, node, &tree.queue, &prefix, branch);
        push_children(&mut stack, node, &format!("{prefix}{indent}"));
    }
    out
}

/// Pushes `node`'s children so that they pop in order.
fn push_children<'a>(
    stack: &mut Vec<(&'a FlowTree, String, bool)>,
    node: &'a FlowTree,
    prefix: &str,
) {
    let count = node.children.len();
    for (index, child) in node.children.iter().enumerate().rev() {
        stack.push((child, prefix.to_string(), index + 1 == count));
    }
}

fn line(out: &mut String, node: &FlowTree, root_queue: &str, prefix: &str, branch: &str) {
    let state = match (node.state, &node.outcome) {
        (Some(state), _) => state.to_string(),
        (None, Some(outcome)) => format!("{} (record gone)", outcome.state.as_str()),
        (None, None) => "gone".to_string(),
    };
    let _ = write!(
        out,
        "{prefix}{branch}{}  {}  {state}",
        super::format::printable(&node.task_type, 64),
        node.id
    );
    if node.queue != root_queue {
        let _ = write!(
            out,
            "  (queue {})",
            super::format::printable(&node.queue, 64)
        );
    }
    if let Some(error) = node
        .outcome
        .as_ref()
        .and_then(|outcome| outcome.error.as_ref())
    {
        let _ = write!(
            out,
            "  {}: {}",
            error.kind,
            super::format::printable(&error.message, 200)
        );
    }
    if let Some(policy) = node.on_failure
        && policy != OnChildFailure::FailParent
    {
        let _ = write!(out, "  [on failure: {}]", policy.as_str());
    }
    out.push('\n');
}
