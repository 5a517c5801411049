//! `wasmq limit`: fleet-wide concurrency limits per task type, and rate
//! limits per task type or queue (optionally per key of the payload).

use clap::{Args, Subcommand};

use crate::rate::{KeyPath, Rate, RateLimit, RateTarget};

use super::RedisArgs;
use super::cron::ConcurrencyArgs;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq limit` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum LimitCommand {
    /// Limit how many tasks of a type run at once across all workers
    /// (`--max-running N`, `--singleton` for one, with ShedLock-style lock
    /// times), and/or how many start per interval across all workers
    /// (`--rate 100/s`, per task type or `--queue NAME`, optionally
    /// `--burst B` and `--key '$.tenant_id'` for one limit per key).
    ///
    /// Examples:
    ///   wasmq limit set send-email --rate 100/s
    ///   wasmq limit set call-api --rate 10/s --burst 1 --key '$.tenant_id'
    ///   wasmq limit set --queue webhooks --rate 600/min
    ///   wasmq limit set resize --max-running 4 --when-busy delay:1s
    ///
    /// Every worker applies a change within a second, without a restart.
    #[command(verbatim_doc_comment)]
    Set(SetArgs),
    /// List the limits: concurrency limits with the tasks holding their
    /// slots, rate limits with their starts in the last interval (per key).
    Ls(ListArgs),
    /// Remove the limits of a task type (or only its `--rate` or
    /// `--max-running` one), or a queue's rate limit (`--queue NAME`).
    Rm(RemoveArgs),
}

/// Arguments of `wasmq limit set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The task type.
    #[arg(value_name = "TYPE", required_unless_present = "queue")]
    pub(crate) task_type: Option<String>,
    /// Limit a queue's starts instead of a task type's (rate limits only).
    #[arg(long, value_name = "NAME", conflicts_with = "task_type")]
    pub(crate) queue: Option<String>,
    #[command(flatten)]
    pub(crate) limit: ConcurrencyArgs,
    /// With --max-running or --singleton: each group of tasks (a tenant,
    /// `enqueue --group`) gets that many slots of its own; tasks without a
    /// group share one set.
    #[arg(long = "per-group")]
    pub(crate) per_group: bool,
    #[command(flatten)]
    pub(crate) rate: RateArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// The rate-limit flags of `wasmq limit set`.
#[derive(Debug, Args)]
pub(crate) struct RateArgs {
    /// At most COUNT starts in any window of INTERVAL, across all workers,
    /// on Redis's clock: 100/s, 20/10s, 5/min, 1000/h. A task that finds no
    /// start free goes back to its queue (holding no worker slot) until its
    /// turn.
    #[arg(long, value_name = "COUNT/INTERVAL")]
    pub(crate) rate: Option<String>,
    /// How many of the COUNT may start back to back; fewer spreads starts
    /// out (1: one every INTERVAL/COUNT) [default: COUNT].
    #[arg(
        long,
        value_name = "B",
        requires = "rate",
        allow_negative_numbers = true
    )]
    pub(crate) burst: Option<i64>,
    /// Count per value of this path into the payload ($.tenant_id,
    /// $.customer.id, $.items[0].sku): each key gets the whole rate, and
    /// with --max-running or --singleton its own slots. Tasks whose payload
    /// has nothing there share one bucket of their own.
    #[arg(long, value_name = "PATH")]
    pub(crate) key: Option<String>,
}

impl RateArgs {
    /// The rate limit these flags describe, if any.
    fn limit(&self) -> Result<Option<RateLimit>, Failure> {
        let Some(rate) = &self.rate else {
            return Ok(None);
        };
        let rate = Rate::parse(rate).map_err(|err| anyhow::anyhow!("--rate {err}"))?;
        let burst = match self.burst {
            Some(burst) if burst < 1 => {
                return Err(anyhow::anyhow!(
                    "--burst: a burst of {burst} lets nothing start; write --burst 1 (starts evenly spread) up to --burst {} (the whole count at once)",
                    rate.count
                )
                .into());
            }
            burst => burst.map(|burst| u32::try_from(burst).unwrap_or(u32::MAX)),
        };
        let key = self
            .key
            .as_deref()
            .map(KeyPath::parse)
            .transpose()
            .map_err(|err| anyhow::anyhow!("--key: {err}"))?;
        Ok(Some(
            RateLimit::new(rate, burst, key).map_err(|err| anyhow::anyhow!("--burst: {err}"))?,
        ))
    }
}

/// The target of `limit set` or `limit rm`: a task type or `--queue NAME`.
fn target(task_type: &Option<String>, queue: &Option<String>) -> Result<RateTarget, Failure> {
    match (task_type, queue) {
        (_, Some(queue)) => {
            crate::broker::keys::validate_queue_name(queue)?;
            Ok(RateTarget::Queue(queue.clone()))
        }
        (Some(task_type), None) => Ok(RateTarget::TaskType(task_type.clone())),
        (None, None) => Err(anyhow::anyhow!("give a TYPE or --queue NAME").into()),
    }
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
    #[arg(value_name = "TYPE", required_unless_present = "queue")]
    pub(crate) task_type: Option<String>,
    /// Remove a queue's rate limit instead.
    #[arg(long, value_name = "NAME", conflicts_with = "task_type")]
    pub(crate) queue: Option<String>,
    /// Remove only the type's rate limit.
    #[arg(long, conflicts_with = "max_running")]
    pub(crate) rate: bool,
    /// Remove only the type's concurrency limit.
    #[arg(long = "max-running", conflicts_with = "queue")]
    pub(crate) max_running: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq limit` subcommand.
pub(crate) async fn run(command: LimitCommand) -> Result<(), Failure> {
    match command {
        LimitCommand::Set(args) => set(args).await,
        LimitCommand::Ls(args) => {
            let broker = args.redis.broker("limit").await?;
            let rates = crate::ops::limits::rates(&broker).await?;
            let rows = crate::ops::limits::concurrency(&broker).await?;
            if args.json {
                let json: Vec<_> = rows
                    .iter()
                    .map(|(task_type, limit, holders)| {
                        serde_json::json!({"type": task_type, "limit": limit, "holders": holders})
                    })
                    .chain(rates.iter().map(|(target, limit, uses)| {
                        let mut entry = match target {
                            RateTarget::TaskType(name) => serde_json::json!({"type": name}),
                            RateTarget::Queue(name) => serde_json::json!({"queue": name}),
                        };
                        entry["rate_limit"] = serde_json::json!(limit);
                        entry["use"] = serde_json::json!(uses);
                        entry
                    }))
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
                    format!(
                        "{}{}",
                        limit.max_running,
                        crate::ops::limits::slots_scope(&limit)
                    ),
                    ms(limit.lock_at_most_for_ms),
                    ms(limit.lock_at_least_for_ms),
                    crate::ops::limits::when_busy_label(limit.when_busy),
                    holders.join(", "),
                ]);
            }
            if table.is_empty() && rates.is_empty() {
                println!(
                    "no limits; set one with `wasmq limit set TYPE --max-running N` or `--rate 100/s`"
                );
                return Ok(());
            }
            if !table.is_empty() {
                print!("{}", table.render());
            }
            if !rates.is_empty() {
                if !table.is_empty() {
                    println!();
                }
                print!("{}", rate_table(&rates).render());
            }
            Ok(())
        }
        LimitCommand::Rm(args) => remove(args).await,
    }
}

/// `wasmq limit set`.
async fn set(args: SetArgs) -> Result<(), Failure> {
    let target = target(&args.task_type, &args.queue)?;
    let rate = args.rate.limit()?;
    let concurrency = match &target {
        RateTarget::TaskType(task_type) => {
            args.limit.limit(format!("type:{task_type}"))?.map(|limit| {
                crate::task::ConcurrencyLimit {
                    per_group: args.per_group,
                    ..limit
                }
            })
        }
        RateTarget::Queue(_) => {
            if args.limit.limit("queue".into())?.is_some() {
                return Err(anyhow::anyhow!(
                    "--max-running and --singleton apply to task types; a queue takes --rate COUNT/INTERVAL"
                )
                .into());
            }
            None
        }
    };
    if args.rate.key.is_some() && rate.is_none() && concurrency.is_none() {
        return Err(anyhow::anyhow!(
            "--key goes with --rate COUNT/INTERVAL or --max-running N: it gives each value of the path a limit of its own"
        )
        .into());
    }
    let concurrency = match (concurrency, &args.rate.key) {
        (Some(limit), Some(path)) => Some(crate::task::ConcurrencyLimit {
            key_path: Some(
                crate::rate::KeyPath::parse(path).map_err(|err| anyhow::anyhow!("--key: {err}"))?,
            ),
            ..limit
        }),
        (limit, _) => limit,
    };
    if args.per_group && concurrency.is_none() {
        return Err(anyhow::anyhow!(
            "--per-group goes with --max-running N or --singleton on a task type: each group gets N slots"
        )
        .into());
    }
    if rate.is_none() && concurrency.is_none() {
        return Err(anyhow::anyhow!(
            "give --rate COUNT/INTERVAL (such as --rate 100/s), --max-running N or --singleton"
        )
        .into());
    }
    let broker = args.redis.broker("limit").await?;
    if let (Some(limit), RateTarget::TaskType(task_type)) = (&concurrency, &target) {
        broker.set_type_limit(task_type, limit).await?;
        println!(
            "at most {} {task_type:?} task(s){} run at once from now on (workers pick this up within seconds)",
            limit.max_running,
            crate::ops::limits::slots_scope(limit)
        );
    }
    if let Some(limit) = &rate {
        let woken = broker.set_rate_limit(&target, limit).await?;
        if woken > 0 {
            println!("{woken} task(s) waiting for a turn under the old limit were woken");
        }
        let per_key = match &limit.key {
            Some(path) => format!(" per value of {}", path.as_str()),
            None => String::new(),
        };
        println!(
            "{target}: at most {}{per_key} from now on, fleet-wide (every worker applies it within a second)",
            limit.rate
        );
    }
    Ok(())
}

/// `wasmq limit rm`.
async fn remove(args: RemoveArgs) -> Result<(), Failure> {
    let target = target(&args.task_type, &args.queue)?;
    let broker = args.redis.broker("limit").await?;
    let mut removed = Vec::new();
    if let RateTarget::TaskType(task_type) = &target
        && !args.rate
        && broker.remove_type_limit(task_type).await?
    {
        removed.push("concurrency limit");
    }
    let mut woken = 0;
    if !args.max_running {
        let (had, waiting) = broker.remove_rate_limit(&target).await?;
        if had {
            removed.push("rate limit");
        }
        woken = waiting;
    }
    if removed.is_empty() {
        return Err(Failure::not_found(format!(
            "{target} has no {}",
            if args.rate {
                "rate limit"
            } else if args.max_running {
                "concurrency limit"
            } else {
                "limit"
            }
        )));
    }
    println!(
        "the {} of {target} removed (every worker applies this within a second)",
        removed.join(" and ")
    );
    if woken > 0 {
        println!("{woken} task(s) waiting for a turn were woken");
    }
    Ok(())
}

/// The table of rate limits: one row per limit and, for a keyed limit,
/// one per recently used key.
fn rate_table(
    rows: &[(
        RateTarget,
        RateLimit,
        Vec<crate::broker::rate_limits::BucketUse>,
    )],
) -> Table {
    let mut table = Table::new(&["RATE LIMIT", "RATE", "BURST", "KEY", "USED", "WAITING"]);
    for (target, limit, uses) in rows {
        let key_path = limit.key.as_ref().map_or("-", |key| key.as_str());
        let waiting = |line_ms: u64| {
            if line_ms == 0 {
                "-".to_string()
            } else {
                format!(
                    "turns for {}",
                    humantime::format_duration(std::time::Duration::from_millis(line_ms))
                )
            }
        };
        let name = match target {
            RateTarget::TaskType(name) => name.clone(),
            RateTarget::Queue(name) => format!("queue {name}"),
        };
        if uses.is_empty() {
            table.row(vec![
                name.clone(),
                limit.rate.to_string(),
                limit.burst.to_string(),
                key_path.to_string(),
                format!("0/{}", limit.rate.count),
                "-".into(),
            ]);
        }
        for bucket in uses {
            let key = crate::ops::limits::bucket_label(limit, &bucket.bucket);
            table.row(vec![
                name.clone(),
                limit.rate.to_string(),
                limit.burst.to_string(),
                key,
                format!("{}/{}", bucket.used, limit.rate.count),
                waiting(bucket.line_ms),
            ]);
        }
    }
    table
}
