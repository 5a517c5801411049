//! The fault-injection run: many tasks through several worker processes
//! while workers are killed with SIGKILL, one is frozen with SIGSTOP past
//! its lease, and Redis (with an append-only file) is killed and restarted.
//! Beside single tasks run flows (a parent with 20 children) and chains
//! (5 steps). At the end every task must have ended as it should
//! (completed; or, for the share that fails on purpose, archived with its
//! error): none lost, none stuck in active, no flow parent still waiting,
//! none released twice. Re-executions are counted: at-least-once delivery
//! allows them, bounded by what was in flight at each fault.
//!
//! The end-to-end tests run a small plan; `bench/faults.sh` runs the full
//! one and prints the report kept in `RELIABILITY.md`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmq::dev::{RedisOptions, RedisServer};
use wasmq::{Client, Flow, NewTask};

use crate::{BURN_COMPONENT, FLAKY_COMPONENT, PluginDir, WasmqProcess};

/// The queue the run uses.
const QUEUE: &str = "default";

/// What to run and which faults to inject.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The `wasmq` binary that runs the workers.
    pub wasmq: PathBuf,
    /// Tasks to run (each a `burn` task, but for the failing ones).
    pub tasks: usize,
    /// Every this many tasks, one is a `flaky` task that fails its only
    /// attempt and is archived, so that failures are recorded while the
    /// faults hit (0: none).
    pub failing_every: usize,
    /// How long each task hashes.
    pub burn_ms: u64,
    /// Worker processes.
    pub workers: usize,
    /// Concurrency of each worker.
    pub concurrency: usize,
    /// The workers' lease.
    pub lease: Duration,
    /// How many times a worker is killed with SIGKILL (and replaced).
    pub worker_kills: usize,
    /// How long the frozen worker stays stopped (longer than the lease).
    pub freeze_for: Duration,
    /// How many times Redis is killed and restarted.
    pub redis_restarts: usize,
    /// Flows of one parent and 20 children (`burn` tasks).
    pub flows: usize,
    /// Chains of 5 steps (`burn` tasks).
    pub chains: usize,
    /// Give up waiting for the tasks after this long.
    pub timeout: Duration,
}

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A worker killed with SIGKILL, then replaced by a new process.
    KillWorker,
    /// A worker stopped with SIGSTOP past its lease, then continued.
    FreezeWorker,
    /// Redis killed with SIGKILL and restarted from its append-only file.
    RestartRedis,
}

/// One injected fault and what it cost.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// What was done.
    pub fault: Fault,
    /// When, from the start of the run.
    pub at: Duration,
    /// Tasks in flight that the fault hit: those leased by the victim
    /// worker, or every active task when Redis went down.
    pub in_flight: usize,
    /// From the fault until every one of those tasks had ended.
    pub recovered_after: Option<Duration>,
    ids: HashSet<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct FaultReport {
    /// The plan that ran.
    pub plan: FaultPlan,
    /// Every fault injected, in order.
    pub faults: Vec<FaultRecord>,
    /// Tasks completed at the end.
    pub completed: u64,
    /// Failing tasks archived at the end.
    pub archived: u64,
    /// Tasks that did not end as they should (must be 0).
    pub lost: u64,
    /// Tasks still active at the end (must be 0).
    pub stuck_active: u64,
    /// Attempts beyond the first, summed over all tasks: the re-executions
    /// that at-least-once delivery allows.
    pub duplicates: u64,
    /// Flows and chains whose root completed.
    pub flows_completed: u64,
    /// Flow parents (roots and chain steps) run again without a fault to
    /// explain it (their last error is not a lost lease): released twice
    /// (must be 0).
    pub parents_run_twice: u64,
    /// Flow parents run again because the worker running them died or
    /// froze (at-least-once, counted in the duplicates too).
    pub parents_rerun_after_faults: u64,
    /// Flow parents still waiting for their children at the end (must be 0).
    pub parents_stuck: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

impl FaultReport {
    /// Tasks that were in flight at some fault: the bound on duplicates.
    pub fn in_flight_total(&self) -> u64 {
        self.faults.iter().map(|fault| fault.in_flight as u64).sum()
    }

    /// The report as Markdown, as kept in `RELIABILITY.md`.
    pub fn markdown(&self) -> String {
        let plan = &self.plan;
        let mut out = String::new();
        out.push_str(&format!(
            "{} tasks through {} workers (concurrency {}, lease {:?}), Redis with `appendonly yes` and `appendfsync always`: `burn` tasks ({} ms each){}.\n\n",
            plan.tasks,
            plan.workers,
            plan.concurrency,
            plan.lease,
            plan.burn_ms,
            match plan.failing_every {
                0 => String::new(),
                n => format!(", and every {n}th a `flaky` task that fails its only attempt and must end archived"),
            }
        ));
        out.push_str("| fault | at | tasks in flight | all of them ended after |\n| --- | ---: | ---: | ---: |\n");
        for fault in &self.faults {
            let name = match fault.fault {
                Fault::KillWorker => "worker killed (SIGKILL), replaced".to_string(),
                Fault::FreezeWorker => format!("worker frozen (SIGSTOP) for {:?}", plan.freeze_for),
                Fault::RestartRedis => "Redis killed (SIGKILL) and restarted".to_string(),
            };
            let recovered = fault.recovered_after.map_or_else(
                || "never".to_string(),
                |after| format!("{:.1} s", after.as_secs_f64()),
            );
            out.push_str(&format!(
                "| {name} | {:.1} s | {} | {recovered} |\n",
                fault.at.as_secs_f64(),
                fault.in_flight
            ));
        }
        out.push_str(&format!(
            "\n| tasks (flows' included) | completed | archived (failing on purpose) | lost | stuck in active | duplicates (re-executions) | bound (in flight at faults) | run time |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} | {} | {} | {} | {:.1} s |\n",
            self.completed + self.archived + self.lost,
            self.completed,
            self.archived,
            self.lost,
            self.stuck_active,
            self.duplicates,
            self.in_flight_total(),
            self.elapsed.as_secs_f64()
        ));
        if plan.flows + plan.chains > 0 {
            out.push_str(&format!(
                "\n| flows (1 + 20) | chains (5 steps) | completed | parents run twice | parents re-run after a fault | parents stuck |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} | {} | {} |\n",
                plan.flows,
                plan.chains,
                self.flows_completed,
                self.parents_run_twice,
                self.parents_rerun_after_faults,
                self.parents_stuck
            ));
        }
        out
    }
}

/// The workers of the run.
struct Fleet<'a> {
    plan: &'a FaultPlan,
    url: String,
    plugins: PluginDir,
    workers: Vec<WasmqProcess>,
}

impl Fleet<'_> {
    fn spawn(&self) -> WasmqProcess {
        let mut command = WasmqProcess::command(&self.plan.wasmq);
        command
            .arg("worker")
            .args(["--redis", &self.url])
            .arg("--plugins")
            .arg(self.plugins.path())
            .args(["--concurrency", &self.plan.concurrency.to_string()])
            .args(["--lease", &format!("{}ms", self.plan.lease.as_millis())])
            .args(["--retry-delay", "100ms"]);
        WasmqProcess::spawn(command)
    }
}

/// Runs the plan and reports what happened.
pub async fn run(plan: FaultPlan) -> FaultReport {
    let mut redis = RedisServer::start_with(RedisOptions {
        appendonly: true,
        ..RedisOptions::default()
    })
    .expect("redis-server starts");
    let url = redis.url();
    let client = Client::connect(&url).await.expect("Redis answers");
    let failing = |n: usize| plan.failing_every > 0 && n.is_multiple_of(plan.failing_every);
    let tasks: Vec<NewTask> = (0..plan.tasks)
        .map(|n| {
            let task = if failing(n) {
                NewTask::new("flaky", format!(r#"{{"fail_times":1000,"n":{n}}}"#))
                    .expect("valid JSON")
                    .max_retry(0)
            } else {
                NewTask::new("burn", format!(r#"{{"ms":{},"n":{n}}}"#, plan.burn_ms))
                    .expect("valid JSON")
            };
            task.retention(Duration::from_secs(3600))
        })
        .collect();
    // Each id with the state it must end in.
    let mut ids: Vec<(String, &str)> = Vec::with_capacity(plan.tasks);
    for (first, chunk) in tasks.chunks(1000).enumerate() {
        for (n, outcome) in client
            .enqueue_batch(chunk.to_vec())
            .await
            .into_iter()
            .enumerate()
        {
            let end = if failing(first * 1000 + n) {
                "archived"
            } else {
                "completed"
            };
            ids.push((outcome.expect("every task is accepted").id, end));
        }
    }
    // Flows and chains, with ids of their own to follow them.
    let burn = |ms: u64| {
        NewTask::new("burn", format!(r#"{{"ms":{ms}}}"#))
            .expect("valid JSON")
            .retention(Duration::from_secs(3600))
    };
    let mut parents: Vec<String> = Vec::new();
    let mut roots: Vec<String> = Vec::new();
    for f in 0..plan.flows {
        let root = format!("flow-{f}");
        let mut flow = Flow::new(burn(1).id(&root));
        for c in 0..20 {
            let id = format!("flow-{f}-{c}");
            flow = flow.child(Flow::new(burn(plan.burn_ms).id(&id)));
            ids.push((id, "completed"));
        }
        client
            .enqueue_flow(flow)
            .await
            .expect("the flow is accepted");
        ids.push((root.clone(), "completed"));
        parents.push(root.clone());
        roots.push(root);
    }
    for c in 0..plan.chains {
        let steps: Vec<NewTask> = (0..5)
            .map(|step| burn(plan.burn_ms).id(format!("chain-{c}-{step}")))
            .collect();
        client
            .enqueue_flow(Flow::chain(steps).expect("five steps"))
            .await
            .expect("the chain is accepted");
        for step in 0..5 {
            let id = format!("chain-{c}-{step}");
            ids.push((id.clone(), "completed"));
            if step > 0 {
                parents.push(id);
            }
        }
        roots.push(format!("chain-{c}-4"));
    }
    let total = ids.len();
    let mut raw = redis_connection(&url).await;

    let mut fleet = Fleet {
        plan: &plan,
        url: url.clone(),
        plugins: PluginDir::with(&[BURN_COMPONENT, FLAKY_COMPONENT]),
        workers: Vec::new(),
    };
    for _ in 0..plan.workers {
        let worker = fleet.spawn();
        fleet.workers.push(worker);
    }

    // The faults, spread over the run by progress.
    let mut schedule: Vec<Fault> = Vec::new();
    let mut kills = plan.worker_kills;
    let mut restarts = plan.redis_restarts;
    let mut freeze = plan.workers > 1;
    while kills + restarts > 0 || freeze {
        if kills > 0 {
            schedule.push(Fault::KillWorker);
            kills -= 1;
        }
        if freeze {
            schedule.push(Fault::FreezeWorker);
            freeze = false;
        } else if restarts > 0 {
            schedule.push(Fault::RestartRedis);
            restarts -= 1;
        }
    }
    let thresholds: Vec<f64> = (0..schedule.len())
        .map(|i| 0.1 + 0.6 * i as f64 / schedule.len().max(1) as f64)
        .collect();

    let started = Instant::now();
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut frozen: Option<(usize, Instant)> = None;
    loop {
        let ended = match client.queue_counts(QUEUE).await {
            Ok(counts) => counts.completed + counts.archived,
            Err(_) => {
                // Redis is restarting.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let progress = ended as f64 / total as f64;
        if records.len() < schedule.len() && progress >= thresholds[records.len()] {
            let fault = schedule[records.len()];
            let at = started.elapsed();
            let ids = match fault {
                Fault::KillWorker => {
                    let victim = fleet.workers[0].pid();
                    let held = leased_by(&mut raw, Some(victim)).await;
                    fleet.workers[0].kill9();
                    fleet.workers[0] = fleet.spawn();
                    held
                }
                Fault::FreezeWorker => {
                    let victim = fleet.workers[1].pid();
                    fleet.workers[1].signal(libc::SIGSTOP);
                    frozen = Some((1, Instant::now() + plan.freeze_for));
                    leased_by(&mut raw, Some(victim)).await
                }
                Fault::RestartRedis => {
                    let held = leased_by(&mut raw, None).await;
                    redis
                        .restart()
                        .expect("redis-server restarts from its append-only file");
                    raw = redis_connection(&url).await;
                    held
                }
            };
            records.push(FaultRecord {
                fault,
                at,
                in_flight: ids.len(),
                recovered_after: None,
                ids,
            });
        }
        if let Some((index, until)) = frozen
            && Instant::now() >= until
        {
            fleet.workers[index].signal(libc::SIGCONT);
            frozen = None;
        }
        for record in records
            .iter_mut()
            .filter(|record| record.recovered_after.is_none())
        {
            if all_ended(&mut raw, &record.ids).await {
                record.recovered_after = Some(started.elapsed().saturating_sub(record.at));
            }
        }
        let all_injected = records.len() == schedule.len() && frozen.is_none();
        let all_recovered = records
            .iter()
            .all(|record| record.recovered_after.is_some());
        if (ended as usize == total && all_injected && all_recovered)
            || started.elapsed() > plan.timeout
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();

    let states: HashMap<String, String> = hash(&mut raw, "state").await;
    let attempts: HashMap<String, String> = hash(&mut raw, "attempts").await;
    let errors: HashMap<String, String> = hash(&mut raw, "error").await;
    let attempts_of =
        |id: &str| -> u64 { attempts.get(id).and_then(|n| n.parse().ok()).unwrap_or(0) };
    let lease_lost = |id: &str| {
        errors
            .get(id)
            .is_some_and(|error| error.contains("\"lease-expired\""))
    };
    let rerun: Vec<&String> = parents.iter().filter(|id| attempts_of(id) > 1).collect();
    let parents_rerun_after_faults = rerun.iter().filter(|id| lease_lost(id)).count() as u64;
    let parents_run_twice = rerun.len() as u64 - parents_rerun_after_faults;
    let parents_stuck = parents
        .iter()
        .filter(|id| states.get(*id).is_some_and(|state| state == "waiting"))
        .count() as u64;
    let flows_completed = roots
        .iter()
        .filter(|id| states.get(*id).is_some_and(|state| state == "completed"))
        .count() as u64;
    let ended_in = |wanted: &str| {
        ids.iter()
            .filter(|(id, end)| *end == wanted && states.get(id).is_some_and(|state| state == end))
            .count() as u64
    };
    let (completed, archived) = (ended_in("completed"), ended_in("archived"));
    let stuck_active = ids
        .iter()
        .filter(|(id, _)| states.get(id).is_some_and(|state| state == "active"))
        .count() as u64;
    let duplicates = ids
        .iter()
        .filter_map(|(id, _)| attempts.get(id).and_then(|n| n.parse::<u64>().ok()))
        .map(|n| n.saturating_sub(1))
        .sum();
    drop(fleet);
    FaultReport {
        plan,
        faults: records,
        completed,
        archived,
        lost: ids.len() as u64 - completed - archived,
        stuck_active,
        duplicates,
        flows_completed,
        parents_run_twice,
        parents_rerun_after_faults,
        parents_stuck,
        elapsed,
    }
}

type Connection = redis::aio::MultiplexedConnection;

async fn redis_connection(url: &str) -> Connection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}

/// Ids of active tasks, leased by the worker with process id `pid` (lease
/// tokens are `host:pid:nonce:fetch`), or all of them. The owner hash holds
/// a field that is not a task (it pins the hash's encoding): only task ids
/// count.
async fn leased_by(raw: &mut Connection, pid: Option<i32>) -> HashSet<String> {
    let owners = hash(raw, "owner").await;
    let pid = pid.map(|pid| pid.to_string());
    owners
        .into_iter()
        .filter(|(id, token)| {
            !id.contains(' ')
                && pid
                    .as_deref()
                    .is_none_or(|pid| token.split(':').nth(1) == Some(pid))
        })
        .map(|(id, _)| id)
        .collect()
}

/// Whether every task of `ids` has ended (completed, or archived).
async fn all_ended(raw: &mut Connection, ids: &HashSet<String>) -> bool {
    if ids.is_empty() {
        return true;
    }
    let mut command = redis::cmd("HMGET");
    command.arg(format!("wasmq:{{{QUEUE}}}:state"));
    for id in ids {
        command.arg(id);
    }
    let states: Vec<Option<String>> = command.query_async(raw).await.unwrap_or_default();
    states.len() == ids.len()
        && states
            .iter()
            .all(|state| matches!(state.as_deref(), Some("completed" | "archived")))
}

async fn hash(raw: &mut Connection, part: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(format!("wasmq:{{{QUEUE}}}:{part}"))
        .query_async(raw)
        .await
        .unwrap_or_default()
}
