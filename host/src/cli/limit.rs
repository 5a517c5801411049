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
    /// Count starts per value of this path into the payload ($.tenant_id,
    /// $.customer.id, $.items[0].sku): each key gets the whole rate. Tasks
    /// whose payload has nothing there share one bucket of their own.
    #[arg(long, value_name = "PATH", requires = "rate")]
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
            let rates = rate_rows(&broker).await?;
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
        RateTarget::TaskType(task_type) => args.limit.limit(format!("type:{task_type}"))?,
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
            "at most {} {task_type:?} task(s) run at once from now on (workers pick this up within seconds)",
            limit.max_running
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

/// At most this many keys of a limit are listed.
const KEYS_LISTED: usize = 10;

/// Every rate limit, with the use of its most recently used buckets.
async fn rate_rows(
    broker: &crate::broker::Broker,
) -> Result<
    Vec<(
        RateTarget,
        RateLimit,
        Vec<crate::broker::rate_limits::BucketUse>,
    )>,
    Failure,
> {
    let mut rows = Vec::new();
    for (target, limit) in broker.rate_limits().await? {
        let uses = broker.rate_use(&target, &limit, KEYS_LISTED).await?;
        rows.push((target, limit, uses));
    }
    Ok(rows)
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
    use crate::broker::rate_limits::{NO_KEY, WHOLE};
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
            let key = match bucket.bucket.as_str() {
                WHOLE => key_path.to_string(),
                NO_KEY => format!("{key_path} (nothing there)"),
                // A long key, named by its SHA-256.
                hashed if hashed.starts_with('#') => format!("{key_path} = {hashed}"),
                other => format!("{key_path} = {}", &other[1..]),
            };
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
