//! `wasmq plugin`: deploy plugins to the fleet, roll them back, remove
//! them, see where they run and what they did.

use crate::ops::stats;
use clap::{Args, Subcommand};

use super::RedisArgs;
use super::format;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq plugin` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Build a plugin (Rust, Python or JavaScript/TypeScript) from its
    /// directory into a component carrying its manifest; prints the
    /// component's path.
    ///
    /// Rust runs cargo (the `plugin!` macro embeds the manifest). Python
    /// runs componentize-py on app.py; JavaScript runs jco's componentize
    /// on src/index.ts or src/index.js; for both, wasmq.toml (name,
    /// version, task_types, limits, capabilities) is checked, the
    /// component imports only what it grants, and it is embedded. A
    /// missing toolchain is named with the command that installs it.
    ///
    /// Example: wasmq plugin deploy "$(wasmq plugin build ./thumbnailer)"
    Build(super::build::BuildArgs),
    /// Show a plugin file's manifest, limits, capabilities, imports and
    /// exports, and whether this host can load it (exit code 1 if not).
    Inspect(super::plugin_inspect::InspectArgs),
    /// Deploy a plugin to every running worker, without restarts.
    ///
    /// The component is checked here as a worker would load it, and against
    /// the registry: a name belongs to one plugin (its name and task types;
    /// see --replace), and no two deployed plugins share a task type. Only
    /// then is it stored in Redis (content-addressed) and made its plugin's
    /// current version; a refused deploy changes nothing.
    /// Workers swap it in within a second or two (tasks already running
    /// finish on the version they started with); this command waits for
    /// them and reports any worker that refused it, which keeps running
    /// the previous version.
    Deploy(DeployArgs),
    /// List deployed plugins: version, content hash, task types, when
    /// deployed, and which workers run it.
    Ls(ListArgs),
    /// Put back an earlier version, fleet-wide: the one deployed before the
    /// current one, or the one --to names.
    ///
    /// Example: wasmq plugin rollback greeter --to 0.3.1
    Rollback(RollbackArgs),
    /// Remove a deployed plugin: workers unload it, and its task types wait
    /// in retry ("no plugin handles TYPE") until a plugin handles them.
    Rm(NameArgs),
    /// A deployed plugin's history: every deploy, rollback and removal.
    History(NameArgs),
    /// Delete the components nothing needs any more, and trim histories.
    ///
    /// Keeps each plugin's newest --keep versions (its current one always;
    /// history entries of older versions are dropped, and those versions
    /// can no longer be rolled back to) and every component a live worker
    /// runs or is compiling; deletes every other stored component. Safe
    /// while deploys run: nothing being deployed is deleted.
    ///
    /// Example: wasmq plugin gc --keep 5 --dry-run
    Gc(GcArgs),
    /// Show or set how many versions per plugin the fleet keeps: workers
    /// then collect the registry's garbage themselves (as `wasmq plugin gc
    /// --keep N` would) after each deploy, rollback or removal and every
    /// 10 minutes. `off` keeps everything (the default).
    ///
    /// Example: wasmq plugin retention 10
    Retention(RetentionArgs),
    /// Per plugin and task type: runs, failures by class (fuel, timeout,
    /// memory, trap, handler error, lease-expired...), fuel and time
    /// percentiles. Counts attempts that ended, as workers report them every
    /// 5 s: a worker killed with SIGKILL loses its last 5 s of counts.
    Stats(StatsArgs),
}

/// Arguments of `wasmq plugin deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The plugin's component (.wasm).
    pub(crate) file: std::path::PathBuf,
    /// Let it take a name held by a different plugin (one with other task
    /// types), replacing that plugin. Without it such a deploy is refused
    /// and changes nothing. The replaced plugin's kv data is not carried
    /// over: a store belongs to a name and its task types.
    #[arg(long)]
    pub(crate) replace: bool,
    /// How long to wait for the workers to take it.
    #[arg(long, default_value = "15s", value_parser = super::parse::duration, value_name = "DURATION")]
    pub(crate) wait: std::time::Duration,
    #[command(flatten)]
    pub(crate) limits: super::LimitArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq plugin ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments naming a deployed plugin.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The plugin's name.
    pub(crate) name: String,
    /// How long to wait for the workers to take the change.
    #[arg(long, default_value = "15s", value_parser = super::parse::duration, value_name = "DURATION")]
    pub(crate) wait: std::time::Duration,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq plugin rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The plugin's name.
    pub(crate) name: String,
    /// The version to put back (as its manifest says, e.g. 0.3.1), or the
    /// start of its content hash (6 hex digits or more, as `wasmq plugin
    /// history` shows). Without it: the version before the current one.
    #[arg(long, value_name = "VERSION|HASH")]
    pub(crate) to: Option<String>,
    /// How long to wait for the workers to take the change.
    #[arg(long, default_value = "15s", value_parser = super::parse::duration, value_name = "DURATION")]
    pub(crate) wait: std::time::Duration,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq plugin gc`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Versions kept per plugin (distinct components, newest first).
    /// Default: the fleet's retention (`wasmq plugin retention`), or 10.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub(crate) keep: Option<u32>,
    /// Say what would be deleted; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq plugin retention`.
#[derive(Debug, Args)]
pub(crate) struct RetentionArgs {
    /// Versions kept per plugin (1 or more), or `off`. Without it, shows
    /// the current setting.
    #[arg(value_name = "N|off", value_parser = kept_versions)]
    pub(crate) keep: Option<KeptVersions>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// What `wasmq plugin retention` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeptVersions {
    /// Keep this many versions per plugin.
    Newest(u32),
    /// Keep everything.
    Off,
}

fn kept_versions(text: &str) -> Result<KeptVersions, String> {
    match text.trim() {
        "off" => Ok(KeptVersions::Off),
        number => match number.parse::<u32>() {
            Ok(0) => Err("0 would delete every version, the current ones' history included; keep 1 or more, or say `off` to keep everything".into()),
            Ok(n) => Ok(KeptVersions::Newest(n)),
            Err(_) => Err(format!(
                "{number:?} is not a number of versions; write one (e.g. 10), or `off` to keep everything"
            )),
        },
    }
}

/// What `wasmq plugin stats` counts, printed under its table.
const COVERAGE: &str = "\
RUNS counts attempts that ended on a worker (attempts, not tasks: a retried task runs more than
once), as each worker adds its counts every 5 s and when it shuts down; a worker killed without
shutting down (SIGKILL, a crash) takes its last 5 s of counts with it, and the attempts it was
running are counted only when they run again. lease-expired: attempts stopped because their lease
was lost (another worker took the task back); cancelled: stopped by `wasmq task cancel`, or put
back by a worker's shutdown timeout.
Completed tasks are counted exactly, per queue, by `wasmq stats`.";

/// Arguments of `wasmq plugin stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq plugin` subcommand.
pub(crate) async fn run(command: PluginCommand) -> Result<(), Failure> {
    let args = match command {
        PluginCommand::Build(args) => return super::build::run(args).await,
        PluginCommand::Inspect(args) => return super::plugin_inspect::run(args).await,
        PluginCommand::Deploy(args) => return super::plugin_deploy::deploy(args).await,
        PluginCommand::Ls(args) => return super::plugin_deploy::list(args).await,
        PluginCommand::Rollback(args) => return super::plugin_deploy::rollback(args).await,
        PluginCommand::Rm(args) => return super::plugin_deploy::remove(args).await,
        PluginCommand::History(args) => return super::plugin_deploy::history(args).await,
        PluginCommand::Gc(args) => return super::plugin_gc::collect(args).await,
        PluginCommand::Retention(args) => return super::plugin_gc::retention(args).await,
        PluginCommand::Stats(args) => args,
    };
    let broker = args.redis.broker("plugin").await?;
    let mut all: Vec<_> = broker.plugin_stats().await?.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let summaries: Vec<stats::TypeStats> = all
        .iter()
        .flat_map(|(plugin, fields)| stats::summarize(plugin, fields))
        .collect();
    if args.json {
        format::print_json(&summaries)?;
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
        println!("{COVERAGE}");
    }
    Ok(())
}
