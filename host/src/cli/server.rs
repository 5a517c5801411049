//! `wasmq server ls`: the live workers, from their heartbeats.

use crate::ops::server::{ServerInfo, live_servers};
use clap::{Args, Subcommand};

use super::RedisArgs;
use super::format;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq server` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ServerCommand {
    /// List live workers: host, pid, concurrency, running tasks, plugins
    /// and versions, started at.
    Ls(ListArgs),
}

/// Arguments of `wasmq server ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq server` subcommand.
pub(crate) async fn run(command: ServerCommand) -> Result<(), Failure> {
    let ServerCommand::Ls(args) = command;
    let broker = args.redis.broker("server").await?;
    let mut servers: Vec<ServerInfo> = live_servers(&broker).await?;
    servers.sort_by(|a, b| a.id.cmp(&b.id));
    if args.json {
        format::print_json(&servers)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "ID", "HOST", "PID", "QUEUES", "RUNNING", "PLUGINS", "STARTED",
    ]);
    for server in &servers {
        let queues: Vec<String> = server
            .queues
            .iter()
            .map(|(queue, weight)| format!("{queue}={weight}"))
            .collect();
        let plugins: Vec<String> = server
            .plugins
            .iter()
            .map(|plugin| {
                let probation = if plugin.on_probation {
                    " (on probation)"
                } else {
                    ""
                };
                format!("{}@{}{probation}", plugin.name, plugin.version)
            })
            .collect();
        let parked = match server.parked {
            0 => String::new(),
            n => format!(" +{n} parked"),
        };
        table.row(vec![
            server.id.clone(),
            server.host.clone(),
            server.pid.to_string(),
            format!(
                "{}{}",
                queues.join(","),
                if server.strict { " (strict)" } else { "" }
            ),
            format!("{}/{}{parked}", server.running.len(), server.concurrency),
            plugins.join(", "),
            format::time(server.started_at_ms),
        ]);
    }
    if table.is_empty() {
        println!("no live workers (a worker shows here within 5 s of starting)");
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
