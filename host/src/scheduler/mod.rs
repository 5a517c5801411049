//! The cron scheduler: enqueues each tick of each entry exactly once across
//! any number of replicas, with no leader.
//!
//! # Overview
//! Entries live in Redis (`broker::cron`); [`run`] loads them, sleeps until
//! the next tick of any entry, and then, for each entry, handles every tick
//! after the entry's *last handled tick* (kept in Redis, moved only
//! forward). A tick's task gets a deterministic id, `<entry>@<tick time>`,
//! enqueued with that id reserved for an hour: the enqueue script refuses
//! the same id again, so when every replica tries the same tick, exactly one
//! succeeds. The claim and the task are one atomic enqueue in the target
//! queue, so a replica that dies between them loses nothing: the others
//! fire the tick. A tick's task being archived never blocks later ticks,
//! since each tick has its own id. The tick's history record is written
//! just after its task (the history lives under `{cron}`, the task in its
//! queue's slot, so one script cannot write both): a replica killed between
//! the two leaves that tick's task without a record, never the other way.
//!
//! Ticks found more than the misfire grace after their time passed while no
//! scheduler was alive; the entry's [`MisfirePolicy`] decides whether they
//! are skipped, fired once, or each fired (up to a limit).
//!
//! The schedulers read time from Redis (`TIME`, re-synced every few
//! seconds), so replicas with skewed clocks agree on when a tick is due.

mod cron;
mod entry;
mod file;
mod schedule;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use cron::Cron;
pub use entry::{CronEntry, MisfirePolicy, TickOutcome, TickRecord};
pub use file::{LimitOptions, watch_file};
pub use schedule::Schedule;

use crate::broker::{self, Broker, Client, NewTask};

/// How long a tick's task id stays reserved: far longer than replicas can
/// disagree about a tick, so a late replica can never fire it twice.
const TICK_RESERVATION: Duration = Duration::from_secs(3600);

/// Tick records kept per entry.
const HISTORY_KEPT: usize = 1000;

/// Tick enqueues in flight at once.
const PIPELINED: usize = 128;

/// How often entries are reloaded and the clock re-synced, at the latest.
const REFRESH: Duration = Duration::from_secs(5);

/// How a scheduler replica behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This replica's name in tick records (`host:pid`).
    pub host: String,
    /// A tick handled later than this after its time counts as missed.
    pub misfire_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        SchedulerConfig {
            host: format!("{host}:{}", std::process::id()),
            misfire_grace: Duration::from_secs(10),
        }
    }
}

/// An entry with its parsed schedule.
struct Loaded {
    entry: CronEntry,
    schedule: Schedule,
}

/// Redis's clock, as seen from here.
struct ServerClock {
    offset_ms: i64,
    synced: Instant,
}

impl ServerClock {
    async fn sync(broker: &Broker) -> Result<ServerClock, broker::Error> {
        let before = local_ms();
        let server = broker.server_time_ms().await?;
        let after = local_ms();
        Ok(ServerClock {
            offset_ms: server - (before + after) / 2,
            synced: Instant::now(),
        })
    }

    fn now_ms(&self) -> i64 {
        local_ms() + self.offset_ms
    }
}

fn local_ms() -> i64 {
    crate::broker::unix_ms(SystemTime::now())
}

/// Runs a scheduler replica until `shutdown`.
pub async fn run(broker: Broker, config: SchedulerConfig, shutdown: CancellationToken) {
    let client = Client::new(broker.clone());
    let changed = Arc::new(Notify::new());
    let listener = {
        let changed = changed.clone();
        tokio::spawn(broker::subscribe(
            broker.clone(),
            vec![broker::cron::CHANGED.to_string()],
            shutdown.clone(),
            move |_| changed.notify_one(),
        ))
    };
    tracing::info!(host = config.host, "scheduler started");

    let mut entries: Vec<Loaded> = Vec::new();
    let mut loaded_at: Option<Instant> = None;
    let mut clock: Option<ServerClock> = None;
    let mut reload = true;
    loop {
        if reload || loaded_at.is_none_or(|at| at.elapsed() >= REFRESH) {
            match load_entries(&broker).await {
                Ok(fresh) => {
                    entries = fresh;
                    loaded_at = Some(Instant::now());
                }
                Err(err) => tracing::warn!(%err, "could not load cron entries; retrying"),
            }
            reload = false;
        }
        if clock
            .as_ref()
            .is_none_or(|clock| clock.synced.elapsed() >= REFRESH)
        {
            match ServerClock::sync(&broker).await {
                Ok(synced) => clock = Some(synced),
                Err(err) => tracing::debug!(%err, "could not read Redis's clock"),
            }
        }
        let wait = match &clock {
            Some(clock) => {
                if let Err(err) = handle_due_ticks(&client, &config, &entries, clock).await {
                    tracing::warn!(%err, "could not handle cron ticks; retrying");
                }
                let now = clock.now_ms();
                entries
                    .iter()
                    .filter_map(|loaded| loaded.schedule.next_after(now))
                    .min()
                    .map_or(REFRESH, |next| {
                        Duration::from_millis(u64::try_from(next - now).unwrap_or(0))
                    })
                    .min(REFRESH)
            }
            None => Duration::from_secs(1),
        };
        let notified = changed.notified();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified => reload = true,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    listener.abort();
    tracing::info!(host = config.host, "scheduler stopped");
}

async fn load_entries(broker: &Broker) -> Result<Vec<Loaded>, broker::Error> {
    let mut loaded = Vec::new();
    for (name, json) in broker.cron_entries().await? {
        let parsed = serde_json::from_str::<CronEntry>(&json)
            .map_err(|err| err.to_string())
            .and_then(|entry| entry.check().map(|schedule| Loaded { entry, schedule }));
        match parsed {
            Ok(entry) => loaded.push(entry),
            Err(err) => tracing::error!(entry = name, %err, "ignoring an unreadable cron entry"),
        }
    }
    Ok(loaded)
}

/// Fires every due tick of every entry, as the misfire policies say. The
/// enqueues of all entries go out at once, pipelined on the connection, so
/// the hundredth entry of a tick is not late behind the first ninety-nine.
async fn handle_due_ticks(
    client: &Client,
    config: &SchedulerConfig,
    entries: &[Loaded],
    clock: &ServerClock,
) -> Result<(), broker::Error> {
    let broker = client.broker();
    let last_ticks: HashMap<String, i64> = broker.cron_last_ticks().await?;
    let now = clock.now_ms();
    let grace = i64::try_from(config.misfire_grace.as_millis()).unwrap_or(i64::MAX);

    // What is due: (entry, newest tick, newest missed tick) and the fires.
    let mut due: Vec<(&Loaded, i64, Option<i64>)> = Vec::new();
    let mut fires: Vec<(&CronEntry, i64, TickOutcome)> = Vec::new();
    for loaded in entries {
        // An entry with no last tick yet starts now: no backlog.
        let last = last_ticks.get(&loaded.entry.name).copied().unwrap_or(now);
        let Some(newest) = loaded
            .schedule
            .last_at_or_before(now)
            .filter(|tick| *tick > last)
        else {
            continue;
        };
        let newest_missed = if last < now - grace {
            loaded
                .schedule
                .last_at_or_before(now - grace)
                .filter(|tick| *tick > last)
        } else {
            None
        };
        if let Some(newest_missed) = newest_missed {
            match loaded.entry.misfire {
                MisfirePolicy::Skip => {}
                MisfirePolicy::Once => {
                    fires.push((&loaded.entry, newest_missed, TickOutcome::FiredLate))
                }
                MisfirePolicy::All(limit) => fires.extend(
                    loaded
                        .schedule
                        .last_ticks(last, now - grace, limit as usize)
                        .into_iter()
                        .map(|tick| (&loaded.entry, tick, TickOutcome::FiredLate)),
                ),
            }
        }
        fires.extend(
            loaded
                .schedule
                .ticks_between(last.max(now - grace), now, 10_000)
                .into_iter()
                .map(|tick| (&loaded.entry, tick, TickOutcome::Fired)),
        );
        due.push((loaded, newest, newest_missed));
    }

    for batch in fires.chunks(PIPELINED) {
        let batch = batch
            .iter()
            .map(|(entry, tick, outcome)| fire(client, config, entry, *tick, *outcome, clock));
        futures::future::join_all(batch)
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
    }

    for (loaded, newest, newest_missed) in due {
        let name = &loaded.entry.name;
        // Only the replica that moves the last tick forward records skipped
        // ticks, so they are recorded once.
        if let Some(previous) = broker.cron_advance(name, newest).await?
            && loaded.entry.misfire == MisfirePolicy::Skip
            && let Some(newest_missed) = newest_missed
        {
            let skipped = loaded
                .schedule
                .ticks_between(previous, newest_missed, 100_000)
                .len() as u64;
            let record = TickRecord {
                tick_ms: newest_missed,
                at_ms: clock.now_ms(),
                host: config.host.clone(),
                outcome: TickOutcome::Skipped,
                task_id: None,
                queue: None,
                skipped: Some(skipped),
            };
            tracing::warn!(
                entry = name,
                skipped,
                "skipped ticks missed while no scheduler was running"
            );
            broker
                .cron_record(name, &to_json(&record), HISTORY_KEPT)
                .await?;
        }
    }
    Ok(())
}

/// The id of a tick's task: `<entry>@<tick in RFC 3339, UTC>`.
pub fn tick_task_id(entry: &str, tick_ms: i64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(tick_ms).unwrap_or(0));
    let stamp = humantime::format_rfc3339_millis(at).to_string();
    // Whole seconds read better: drop ".000".
    format!("{entry}@{}", stamp.replace(".000Z", "Z"))
}

/// Enqueues a tick's task; the replica that wins the tick records it.
async fn fire(
    client: &Client,
    config: &SchedulerConfig,
    entry: &CronEntry,
    tick: i64,
    outcome: TickOutcome,
    clock: &ServerClock,
) -> Result<(), broker::Error> {
    let id = tick_task_id(&entry.name, tick);
    let mut task = NewTask::new(&entry.task_type, entry.payload.get())?
        .queue(&entry.queue)
        .id(&id)
        .reserve_id(TICK_RESERVATION);
    if let Some(retries) = entry.max_retry {
        task = task.max_retry(retries);
    }
    if let Some(timeout) = entry.timeout_ms {
        task = task.timeout(Duration::from_millis(timeout));
    }
    if let Some(retention) = entry.retention_ms {
        task = task.retention(Duration::from_millis(retention));
    }
    if let Some(limit) = &entry.limit {
        task = task.limit(limit.clone());
    }
    match client.enqueue(task).await {
        Ok(_) => {
            let record = TickRecord {
                tick_ms: tick,
                at_ms: clock.now_ms(),
                host: config.host.clone(),
                outcome,
                task_id: Some(id.clone()),
                queue: Some(entry.queue.clone()),
                skipped: None,
            };
            tracing::debug!(entry = entry.name, task_id = id, "tick fired");
            client
                .broker()
                .cron_record(&entry.name, &to_json(&record), HISTORY_KEPT)
                .await
        }
        // Another replica fired this tick.
        Err(broker::Error::DuplicateId { .. }) => Ok(()),
        Err(err) if err.is_unreachable() => Err(err),
        Err(err) => {
            tracing::error!(entry = entry.name, %err, "could not enqueue a tick's task");
            Ok(())
        }
    }
}

fn to_json(record: &TickRecord) -> String {
    // Strings and numbers only.
    serde_json::to_string(record).expect("a TickRecord always encodes")
}
