//! `wasmq plugin`: what plugins did across the fleet.

use clap::{Args, Subcommand};
use wasmq::broker::Broker;
use wasmq::ops::stats;

use super::RedisArgs;
use super::format;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a plugin file's manifest, limits, capabilities, imports and
    /// exports, and whether this host can load it (exit code 1 if not).
    Inspect(super::plugin_inspect::InspectArgs),
    /// Per plugin and task type: runs, failures by class (fuel, timeout,
    /// memory, trap, handler error...), fuel and time percentiles.
    Stats(StatsArgs),
}

/// Arguments of `wasmq plugin stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Runs a `wasmq plugin` subcommand.
pub async fn run(command: PluginCommand) -> Result<(), Failure> {
    let args = match command {
        PluginCommand::Inspect(args) => return super::plugin_inspect::run(args).await,
        PluginCommand::Stats(args) => args,
    };
    let broker = Broker::connect(&args.redis.url).await?;
    let mut all: Vec<_> = broker.plugin_stats().await?.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let summaries: Vec<stats::TypeStats> = all
        .iter()
        .flat_map(|(plugin, fields)| stats::summarize(plugin, fields))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summaries).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "PLUGIN", "TYPE", "RUNS", "OK", "FAILURES", "FUEL P50", "FUEL P99", "TIME P50", "TIME P99",
    ]);
    for summary in &summaries {
        let failures: Vec<String> = summary
            .failures
            .iter()
            .map(|(class, count)| format!("{class}={count}"))
            .collect();
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        table.row(vec![
            summary.plugin.clone(),
            summary.task_type.clone(),
            summary.runs.to_string(),
            summary.ok.to_string(),
            if failures.is_empty() {
                "-".into()
            } else {
                failures.join(" ")
            },
            or_dash(
                summary
                    .fuel_p50
                    .map(|fuel| format!("<{}", format::count(fuel + 1))),
            ),
            or_dash(
                summary
                    .fuel_p99
                    .map(|fuel| format!("<{}", format::count(fuel + 1))),
            ),
            or_dash(
                summary
                    .time_p50_us
                    .map(|us| format!("<{}", format::micros(us + 1))),
            ),
            or_dash(
                summary
                    .time_p99_us
                    .map(|us| format!("<{}", format::micros(us + 1))),
            ),
        ]);
    }
    if table.is_empty() {
        println!("no plugin has run yet (workers report every 5 s)");
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
