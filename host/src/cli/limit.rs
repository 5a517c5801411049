//! `wasmq limit`: fleet-wide concurrency limits per task type.

use clap::{Args, Subcommand};

use super::RedisArgs;
use super::cron::ConcurrencyArgs;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq limit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum LimitCommand {
    /// Limit how many tasks of a type run at once across all workers
    /// (`--singleton` for one), with ShedLock-style lock times.
    Set(SetArgs),
    /// List the limits per task type, with the tasks holding their slots.
    Ls(ListArgs),
    /// Remove a task type's limit.
    Rm(RemoveArgs),
}

/// Arguments of `wasmq limit set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The task type.
    #[arg(value_name = "TYPE")]
    pub(crate) task_type: String,
    #[command(flatten)]
    pub(crate) limit: ConcurrencyArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq limit ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq limit rm`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The task type.
    #[arg(value_name = "TYPE")]
    pub(crate) task_type: String,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq limit` subcommand.
pub(crate) async fn run(command: LimitCommand) -> Result<(), Failure> {
    match command {
        LimitCommand::Set(args) => {
            let Some(limit) = args.limit.limit(format!("type:{}", args.task_type))? else {
                return Err(anyhow::anyhow!("give --max-running N or --singleton").into());
            };
            let broker = args.redis.broker("limit").await?;
            broker.set_type_limit(&args.task_type, &limit).await?;
            println!(
                "at most {} {:?} task(s) run at once from now on (workers pick this up within seconds)",
                limit.max_running, args.task_type
            );
            Ok(())
        }
        LimitCommand::Ls(args) => {
            let broker = args.redis.broker("limit").await?;
            let mut limits: Vec<_> = broker.type_limits().await?.into_iter().collect();
            limits.sort_by(|a, b| a.0.cmp(&b.0));
            let mut rows = Vec::new();
            for (task_type, limit) in limits {
                let holders = broker.slot_holders(&limit.key).await?;
                rows.push((task_type, limit, holders));
            }
            if args.json {
                let json: Vec<_> = rows
                    .iter()
                    .map(|(task_type, limit, holders)| {
                        serde_json::json!({"type": task_type, "limit": limit, "holders": holders.iter().map(|(id, _)| id).collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(json));
                return Ok(());
            }
            let mut table = Table::new(&[
                "TYPE",
                "MAX RUNNING",
                "AT MOST",
                "AT LEAST",
                "WHEN BUSY",
                "HELD BY",
            ]);
            for (task_type, limit, holders) in rows {
                let ms = |ms: u64| {
                    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
                };
                table.row(vec![
                    task_type,
                    limit.max_running.to_string(),
                    ms(limit.lock_at_most_for_ms),
                    ms(limit.lock_at_least_for_ms),
                    match limit.when_busy {
                        crate::task::WhenBusy::Skip => "skip".into(),
                        crate::task::WhenBusy::Delay(delay) => format!("delay:{}", ms(delay)),
                    },
                    holders
                        .iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            if table.is_empty() {
                println!("no limits; set one with `wasmq limit set TYPE --max-running N`");
            } else {
                print!("{}", table.render());
            }
            Ok(())
        }
        LimitCommand::Rm(args) => {
            let broker = args.redis.broker("limit").await?;
            if broker.remove_type_limit(&args.task_type).await? {
                println!("the limit of {:?} is removed", args.task_type);
                Ok(())
            } else {
                Err(Failure::not_found(format!(
                    "task type {:?} has no limit",
                    args.task_type
                )))
            }
        }
    }
}
