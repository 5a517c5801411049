//! `hostile`: each hostile plugin beside a well-behaved neighbour, in a real
//! `wasmq worker` process, and what that cost: the worker's peak RSS, how
//! the hostile tasks ended, and whether the neighbour lost any task.
//!
//! Each row starts a private redis-server and one worker (`--plugins` holding
//! `echo` and the hostile plugin), enqueues the hostile tasks interleaved with
//! the neighbour's `echo` tasks, and waits until every task has ended. The
//! worker's peak RSS is its `VmHWM` from `/proc`; the budget it must stay
//! within is its peak with `echo` alone plus `--concurrency` × `--memory`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmq::dev::RedisServer;
use wasmq::{Client, NewTask, TaskState};
use wasmq_testkit::{self as kit, PluginDir, WasmqProcess};

/// Arguments of `hostile`.
#[derive(Debug, clap::Args)]
pub struct HostileArgs {
    /// The `wasmq` binary the workers run.
    #[arg(long, default_value = "target/debug/wasmq")]
    pub wasmq: PathBuf,
    /// Neighbour (`echo`) tasks per row.
    #[arg(long, default_value_t = 300)]
    pub neighbours: usize,
    /// Hostile tasks per row.
    #[arg(long, default_value_t = 12)]
    pub hostile: usize,
    /// The worker's `--concurrency`.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The worker's `--memory`, MiB (every plugin's cap per task).
    #[arg(long, default_value_t = 64)]
    pub memory_mib: u64,
    /// Only the rows whose plugin name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// The longest one row may take before what is left is reported as
    /// stuck, seconds.
    #[arg(long, default_value_t = 180)]
    pub row_timeout_secs: u64,
}

/// Where a row's hostile component comes from.
enum Component {
    /// A plugin built from `plugins/`.
    File(&'static str),
    /// A component made at run time (file name, bytes).
    Made(&'static str, fn() -> Vec<u8>),
}

/// One hostile plugin and how its tasks are made.
struct Row {
    /// What the plugin does, for the table.
    attack: &'static str,
    /// The component.
    component: Component,
    /// The task type it declares.
    task_type: &'static str,
    /// Each task's payload.
    payload: &'static str,
}

/// Every hostile plugin the suite has, in the order of the table.
fn rows() -> Vec<Row> {
    vec![
        Row {
            attack: "spins without end (no host calls)",
            component: Component::File(kit::HOSTILE_SPIN_COMPONENT),
            task_type: "hostile:spin",
            payload: "{}",
        },
        Row {
            attack: "allocates until memory runs out",
            component: Component::File(kit::HOSTILE_MEMBOMB_COMPONENT),
            task_type: "hostile:membomb",
            payload: "{}",
        },
        Row {
            attack: "recurses until the stack overflows",
            component: Component::File(kit::HOSTILE_RECURSE_COMPONENT),
            task_type: "hostile:recurse",
            payload: "{}",
        },
        Row {
            attack: "panics",
            component: Component::File(kit::HOSTILE_PANIC_COMPONENT),
            task_type: "hostile:panic",
            payload: "{}",
        },
        Row {
            attack: "floods the log",
            component: Component::File(kit::HOSTILE_LOGFLOOD_COMPONENT),
            task_type: "hostile:logflood",
            payload: "{}",
        },
        Row {
            attack: "returns a 16 MiB result",
            component: Component::File(kit::HOSTILE_BIGRESULT_COMPONENT),
            task_type: "hostile:bigresult",
            payload: "{}",
        },
        Row {
            attack: "sleeps inside a host call",
            component: Component::File(kit::HOSTILE_SLEEP_COMPONENT),
            task_type: "hostile:sleep",
            payload: "{}",
        },
        Row {
            attack: "opens a TCP socket",
            component: Component::File(kit::HOSTILE_SOCKET_COMPONENT),
            task_type: "hostile:socket",
            payload: "{}",
        },
        Row {
            attack: "HTTP to a host not on its allow list",
            component: Component::File(kit::HOSTILE_HTTP_COMPONENT),
            task_type: "hostile:http",
            payload: "{}",
        },
        Row {
            attack: "enqueues 1,000 follow-ups with a quota of 3",
            component: Component::File(kit::HOSTILE_FANOUT_COMPONENT),
            task_type: "hostile:fanout",
            payload: "{}",
        },
        Row {
            attack: "reads files, env, real clocks, earlier tasks' memory",
            component: Component::File(kit::HOSTILE_SNOOP_COMPONENT),
            task_type: "hostile:snoop",
            payload: "{}",
        },
        Row {
            attack: "gives up with a 512 KiB message",
            component: Component::File(kit::HOSTILE_BIGMESSAGE_COMPONENT),
            task_type: "hostile:bigmessage",
            payload: "{}",
        },
        Row {
            attack: "gives up with a 32 MiB message",
            component: Component::File(kit::HOSTILE_BIGMESSAGE_COMPONENT),
            task_type: "hostile:hugemessage",
            payload: "{}",
        },
        Row {
            attack: "7 core instances, each filling 60 MiB of a memory of its own",
            component: Component::Made("memory-hog.wasm", memory_hog),
            task_type: "hog",
            payload: "{}",
        },
    ]
}

/// A component whose seven extra core instances each fill 60 MiB of a
/// memory of their own: each under a 64 MiB cap, 420 MiB together.
fn memory_hog() -> Vec<u8> {
    use kit::hostile_wat::{Hogs, hog_component};
    hog_component(
        "memory-hog",
        "hog",
        None,
        Hogs {
            instances: 7,
            min_pages: 1,
            grow_pages: 959,
            table_elements: 0,
            spin: false,
        },
    )
}

/// What one row measured.
struct Measured {
    /// How the hostile tasks ended: "completed", or each failure class, with
    /// counts.
    hostile_outcomes: BTreeMap<String, usize>,
    /// Neighbour tasks that did not complete.
    neighbours_lost: usize,
    /// The worker's peak RSS, bytes.
    peak_rss: u64,
    /// How long the row took.
    elapsed: Duration,
}

/// Runs every row and prints the table.
pub async fn run(args: &HostileArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.wasmq.exists(),
        "{} does not exist: build it first (cargo build -p wasmq)",
        args.wasmq.display()
    );
    let baseline = measure(args, None).await?;
    let budget = baseline.peak_rss + args.concurrency as u64 * (args.memory_mib << 20);
    println!(
        "One `wasmq worker` per row (--concurrency {}, --memory {}MiB): {} hostile tasks \
         (no retries) interleaved with {} `echo` tasks. Budget: the worker's peak with `echo` \
         alone ({}) + concurrency × memory = {}.\n",
        args.concurrency,
        args.memory_mib,
        args.hostile,
        args.neighbours,
        mib(baseline.peak_rss),
        mib(budget)
    );
    println!(
        "| attack | task type | how its tasks ended | worker peak RSS | within budget | neighbour tasks lost | row time |"
    );
    println!("| --- | --- | --- | ---: | --- | ---: | ---: |");
    println!(
        "| none (`echo` alone) | `echo` | - | {} | yes | {} | {:.1} s |",
        mib(baseline.peak_rss),
        baseline.neighbours_lost,
        baseline.elapsed.as_secs_f64()
    );
    for row in rows() {
        let plugin = row.task_type;
        if let Some(only) = &args.only
            && !plugin.contains(only.as_str())
        {
            continue;
        }
        let measured = measure(args, Some(&row)).await?;
        let outcomes: Vec<String> = measured
            .hostile_outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} ×{n}"))
            .collect();
        println!(
            "| {} | `{}` | {} | {} | {} | {} | {:.1} s |",
            row.attack,
            plugin,
            outcomes.join(", "),
            mib(measured.peak_rss),
            if measured.peak_rss <= budget {
                "yes"
            } else {
                "**no**"
            },
            measured.neighbours_lost,
            measured.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// One row: a private Redis, one worker, the tasks, and what they did.
async fn measure(args: &HostileArgs, row: Option<&Row>) -> anyhow::Result<Measured> {
    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;
    let plugins = PluginDir::with(&[kit::ECHO_COMPONENT]);
    match row.map(|row| &row.component) {
        Some(Component::File(path)) => {
            let name = std::path::Path::new(path)
                .file_name()
                .context("a component path names a file")?;
            std::fs::copy(path, plugins.path().join(name))?;
        }
        Some(Component::Made(name, make)) => {
            plugins.add_file(name, &make());
        }
        None => {}
    }
    let mut command = WasmqProcess::command(&args.wasmq);
    command.args([
        "worker",
        "--redis",
        &redis.url(),
        "--no-scheduler",
        "--plugins",
    ]);
    command.arg(plugins.path());
    command.args([
        "--concurrency",
        &args.concurrency.to_string(),
        "--memory",
        &format!("{}MiB", args.memory_mib),
        "--fuel",
        "2000000000",
        "--task-timeout",
        "5s",
        "--lease",
        "5s",
    ]);
    let mut worker = WasmqProcess::spawn(command);

    let started = Instant::now();
    let mut neighbours = Vec::with_capacity(args.neighbours);
    let mut hostile = Vec::new();
    let every = if row.is_some() {
        (args.neighbours / args.hostile.max(1)).max(1)
    } else {
        usize::MAX
    };
    for n in 0..args.neighbours {
        if let Some(row) = row
            && n % every == 0
            && hostile.len() < args.hostile
        {
            let task = NewTask::new(row.task_type, row.payload)?
                .max_retry(0)
                .timeout(Duration::from_secs(5));
            hostile.push(client.enqueue(task).await?.id);
        }
        let task = NewTask::new("echo", format!("{{\"n\":{n}}}"))?.max_retry(3);
        neighbours.push(client.enqueue(task).await?.id);
    }

    let mut hostile_outcomes = BTreeMap::new();
    let mut neighbours_lost = 0;
    let mut pending: Vec<(bool, String)> = hostile
        .into_iter()
        .map(|id| (true, id))
        .chain(neighbours.into_iter().map(|id| (false, id)))
        .collect();
    while !pending.is_empty() && started.elapsed() < Duration::from_secs(args.row_timeout_secs) {
        let mut still = Vec::new();
        for (is_hostile, id) in pending {
            let info = client.task(&id, Some("default")).await?;
            let ended = match &info {
                Some(info) => matches!(info.state, TaskState::Completed | TaskState::Archived),
                None => true,
            };
            if !ended {
                still.push((is_hostile, id));
                continue;
            }
            let outcome = match info {
                Some(info) if info.state == TaskState::Completed => "completed".to_string(),
                Some(info) => info
                    .last_error
                    .map(|error| error.kind.as_str().to_string())
                    .unwrap_or_else(|| "archived".into()),
                None => "deleted".into(),
            };
            if is_hostile {
                *hostile_outcomes.entry(outcome).or_insert(0) += 1;
            } else if outcome != "completed" {
                neighbours_lost += 1;
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (is_hostile, _) in &pending {
        if *is_hostile {
            *hostile_outcomes.entry("still running".into()).or_insert(0) += 1;
        } else {
            neighbours_lost += 1;
        }
    }
    let peak_rss = peak_rss(worker.pid()).unwrap_or(0);
    worker.kill9();
    Ok(Measured {
        hostile_outcomes,
        neighbours_lost,
        peak_rss,
        elapsed: started.elapsed(),
    })
}

/// A process's peak resident set (`VmHWM`), bytes.
fn peak_rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}
