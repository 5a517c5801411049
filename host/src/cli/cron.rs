//! `wasmq cron`: add, list, inspect and remove cron entries; and `wasmq
//! scheduler`, which runs a scheduler replica on its own.

use std::path::PathBuf;
use std::time::Duration;

use crate::broker::Broker;
use crate::scheduler::{self, CronEntry, LimitOptions, MisfirePolicy, SchedulerConfig, status};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::RedisArgs;
use super::format;
use super::parse::{self, Failure};
use super::table::Table;
use super::worker::{connect, shutdown_on_signal};

/// The `wasmq cron` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// Add a cron entry: enqueue a task at every tick of a schedule.
    ///
    /// SPEC is `[second] minute hour day-of-month month day-of-week`, e.g.
    /// "0 0 3 * * *" (03:00:00 daily) or "*/2 * * * * *" (every 2 seconds).
    /// Every running scheduler (each worker runs one unless
    /// --no-scheduler) picks the entry up at once; each tick is enqueued
    /// exactly once across all of them, as task `NAME@<tick time>`.
    Add(Box<AddArgs>),
    /// List cron entries with their next tick and last result.
    Ls(ListArgs),
    /// Show an entry's ticks: when each fired, by which scheduler, its task
    /// and how that task ended.
    History(HistoryArgs),
    /// Remove a cron entry (its history goes with it).
    Rm(RemoveArgs),
}

/// Arguments of `wasmq cron add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The entry's name: letters, digits, - _ . :
    pub(crate) name: String,
    /// The schedule, quoted: `[second] minute hour day-of-month month day-of-week`,
    /// or a macro: @yearly, @monthly, @weekly, @daily, @hourly, @every 5s.
    /// A tick in an hour skipped by a daylight-saving change fires once, at
    /// the end of the gap.
    pub(crate) spec: String,
    /// The task type to enqueue at each tick.
    #[arg(value_name = "TYPE")]
    pub(crate) task_type: String,
    /// The payload of each tick's task, as JSON.
    #[arg(default_value = "{}")]
    pub(crate) payload: String,
    /// The time zone the schedule is read in (an IANA name).
    #[arg(long, default_value = "UTC")]
    pub(crate) tz: String,
    /// The queue to enqueue on.
    #[arg(long, short = 'q', default_value = crate::broker::DEFAULT_QUEUE)]
    pub(crate) queue: String,
    /// Ticks missed while no scheduler ran: skip, once (fire the latest), or
    /// all:N (fire each, the latest N).
    #[arg(long, default_value = "once", value_parser = parse_misfire)]
    pub(crate) misfire: MisfirePolicy,
    /// Retries of each tick's task.
    #[arg(long = "max-retry", value_name = "N")]
    pub(crate) max_retry: Option<u32>,
    /// Timeout of each tick's task.
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,
    /// Retention of each tick's completed task.
    #[arg(long, value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) retention: Option<Duration>,
    #[command(flatten)]
    pub(crate) limit: ConcurrencyArgs,
    /// Replace an entry of the same name instead of refusing.
    #[arg(long)]
    pub(crate) replace: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

fn parse_misfire(text: &str) -> Result<MisfirePolicy, String> {
    text.parse()
}

/// Fleet-wide concurrency limit flags (for `cron add` and `limit set`).
#[derive(Debug, Args)]
pub(crate) struct ConcurrencyArgs {
    /// At most N of these tasks run at once across all workers.
    #[arg(long = "max-running", value_name = "N")]
    pub(crate) max_running: Option<u32>,
    /// Shorthand for --max-running 1: never two at once.
    #[arg(long, conflicts_with = "max_running")]
    pub(crate) singleton: bool,
    /// A slot is freed after this long even if its holder never releases it
    /// (it crashed) [default: 15m]. Make it longer than the longest run.
    #[arg(long = "lock-at-most-for", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) lock_at_most_for: Option<Duration>,
    /// A slot stays held at least this long from its task's start, even if
    /// the task ends sooner: the minimum spacing between runs [default: 0s].
    #[arg(long = "lock-at-least-for", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) lock_at_least_for: Option<Duration>,
    /// When no slot is free: `skip` the task (archived as slot-busy) or
    /// `delay:DURATION` it and try again [default: skip].
    #[arg(long = "when-busy", value_name = "skip|delay:DURATION")]
    pub(crate) when_busy: Option<String>,
}

impl ConcurrencyArgs {
    /// The limit these flags describe, for `key`.
    pub(crate) fn limit(
        &self,
        key: String,
    ) -> Result<Option<crate::task::ConcurrencyLimit>, Failure> {
        LimitOptions {
            max_running: if self.singleton {
                Some(1)
            } else {
                self.max_running
            },
            lock_at_most_for: self.lock_at_most_for,
            lock_at_least_for: self.lock_at_least_for,
            when_busy: self.when_busy.clone(),
        }
        .into_limit(key)
        .map_err(|err| anyhow::anyhow!(err).into())
    }
}

/// Arguments of `wasmq cron ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq cron history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The entry.
    pub(crate) name: String,
    /// How many ticks to show, newest first.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub(crate) limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq cron rm`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The entry.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulerArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) scheduling: SchedulingArgs,
}

/// Scheduler flags shared by `worker`, `dev` and `scheduler`.
#[derive(Debug, Args)]
pub(crate) struct SchedulingArgs {
    /// A TOML file of cron entries, applied at start and whenever it
    /// changes (see docs/ARCHITECTURE.md for its format).
    #[arg(long, value_name = "FILE")]
    pub(crate) schedule: Option<PathBuf>,
    /// A tick found later than this after its time counts as missed (no
    /// scheduler was running) and follows its entry's misfire policy.
    #[arg(long = "misfire-grace", default_value = "10s", value_parser = parse::duration, value_name = "DURATION")]
    pub(crate) misfire_grace: Duration,
}

impl SchedulingArgs {
    /// Refuses a schedule file that does not exist, before anything starts.
    pub(crate) fn check(&self) -> Result<(), Failure> {
        match &self.schedule {
            Some(file) if !file.is_file() => {
                Err(anyhow::anyhow!("the schedule file {} does not exist", file.display()).into())
            }
            _ => Ok(()),
        }
    }

    /// Starts a scheduler replica (and the schedule file's watcher) until
    /// `shutdown`.
    pub(crate) fn spawn(
        &self,
        broker: &Broker,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(file) = &self.schedule {
            tasks.spawn(scheduler::watch_file(
                broker.clone(),
                file.clone(),
                shutdown.clone(),
            ));
        }
        let config = SchedulerConfig {
            misfire_grace: self.misfire_grace,
            ..SchedulerConfig::default()
        };
        tasks.spawn(scheduler::run(broker.clone(), config, shutdown.clone()));
        tasks
    }
}

/// Runs `wasmq scheduler`.
pub(crate) async fn run_scheduler(args: SchedulerArgs) -> Result<(), Failure> {
    args.scheduling.check()?;
    let shutdown = shutdown_on_signal();
    let options = args.redis.options(super::cli_name("scheduler"));
    let Some(broker) = connect(&args.redis.url, &options, false, &shutdown).await? else {
        return Ok(());
    };
    let mut tasks = args.scheduling.spawn(&broker, &shutdown);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Runs a `wasmq cron` subcommand.
pub(crate) async fn run(command: CronCommand) -> Result<(), Failure> {
    match command {
        CronCommand::Add(args) => add(*args).await,
        CronCommand::Ls(args) => list(args).await,
        CronCommand::History(args) => history(args).await,
        CronCommand::Rm(args) => {
            let broker = args.redis.broker("cron").await?;
            if broker.cron_remove(&args.name).await? {
                println!("cron entry {:?} removed", args.name);
                Ok(())
            } else {
                Err(Failure::not_found(format!(
                    "no cron entry named {:?}",
                    args.name
                )))
            }
        }
    }
}

async fn add(args: AddArgs) -> Result<(), Failure> {
    let payload = RawValue::from_string(args.payload.clone())
        .map_err(|err| anyhow::anyhow!("the payload is not JSON: {err}"))?;
    let entry = CronEntry {
        limit: args.limit.limit(format!("cron:{}", args.name))?,
        name: args.name.clone(),
        schedule: args.spec.clone(),
        tz: args.tz.clone(),
        task_type: args.task_type.clone(),
        payload,
        queue: args.queue.clone(),
        max_retry: args.max_retry,
        timeout_ms: args.timeout.map(|d| d.as_millis() as u64),
        retention_ms: args.retention.map(|d| d.as_millis() as u64),
        misfire: args.misfire,
        source: "cli".into(),
    };
    let schedule = entry
        .check()
        .map_err(|err| anyhow::anyhow!("cron entry {:?} refused: {err}", args.name))?;
    let broker = args.redis.broker("cron").await?;
    broker
        .cron_put(&entry.name, &entry.to_json(), !args.replace)
        .await
        .with_context(|| format!("adding cron entry {:?}", entry.name))?;
    let next = schedule
        .next_after(broker.server_time_ms().await?)
        .map(time)
        .unwrap_or_else(|| "never".into());
    println!(
        "cron entry {:?} added: {} {:?} ({}) on queue {:?}; next tick {next}",
        entry.name, entry.task_type, entry.schedule, entry.tz, entry.queue
    );
    Ok(())
}

fn time(ms: i64) -> String {
    super::format::time(ms)
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("cron").await?;
    let entries = status::entries(&broker).await?;
    if args.json {
        format::print_json(&entries)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME",
        "SCHEDULE",
        "TZ",
        "TYPE",
        "QUEUE",
        "MISFIRE",
        "NEXT TICK",
        "LAST TICK",
        "LAST RESULT",
    ]);
    for status in entries {
        let entry = &status.entry;
        let (last_tick, last_result) = match status.last {
            Some(last) => (time(last.tick.tick_ms), last.task_state),
            None => ("-".into(), "-".into()),
        };
        table.row(vec![
            entry.name.clone(),
            entry.schedule.clone(),
            entry.tz.clone(),
            entry.task_type.clone(),
            entry.queue.clone(),
            entry.misfire.to_string(),
            status
                .next_tick_ms
                .map(time)
                .unwrap_or_else(|| "never".into()),
            last_tick,
            last_result,
        ]);
    }
    if table.is_empty() {
        println!("no cron entries; add one with `wasmq cron add NAME SPEC TYPE`");
    } else {
        print!("{}", table.render());
    }
    Ok(())
}

async fn history(args: HistoryArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("cron").await?;
    let Some(ticks) = status::history(&broker, &args.name, args.limit).await? else {
        return Err(Failure::not_found(format!(
            "no cron entry named {:?}",
            args.name
        )));
    };
    if args.json {
        format::print_json(&ticks)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "TICK",
        "HANDLED",
        "BY",
        "OUTCOME",
        "QUEUE",
        "TASK",
        "TASK STATE",
    ]);
    for status in ticks {
        let record = &status.tick;
        let what = match record.skipped {
            Some(count) => format!("{} ({count} ticks)", record.outcome),
            None => record.outcome.to_string(),
        };
        table.row(vec![
            time(record.tick_ms),
            format!("+{} ms", record.at_ms - record.tick_ms),
            record.host.clone(),
            what,
            record.queue.clone().unwrap_or_else(|| "-".into()),
            record.task_id.clone().unwrap_or_else(|| "-".into()),
            status.task_state,
        ]);
    }
    if table.is_empty() {
        println!("cron entry {:?} has not ticked yet", args.name);
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
