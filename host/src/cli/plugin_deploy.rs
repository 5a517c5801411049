//! `wasmq plugin deploy | ls | rollback | rm | history`: the fleet's
//! plugins, changed without restarting a worker.

use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::ops::server::{ServerInfo, live_servers};
use crate::plugins::registry::{self, RegistryError};
use crate::sandbox::{Sandbox, SandboxConfig};
use anyhow::Context;

use super::format;
use super::parse::Failure;
use super::plugin::{DeployArgs, ListArgs, NameArgs, RollbackArgs};
use super::table::Table;

fn refused(err: RegistryError) -> Failure {
    match err {
        RegistryError::Broker(err) => err.into(),
        other => anyhow::anyhow!("{other}").into(),
    }
}

/// Runs `wasmq plugin deploy`.
pub(crate) async fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let wasm =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let options = args.limits.load_options()?;
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 4,
        max_memory_bytes: options.ceilings.memory_bytes,
        ..SandboxConfig::default()
    })
    .map_err(anyhow::Error::from)?;
    let broker = args.redis.broker("plugin").await?;
    let registry::Deployed {
        plugin,
        previous,
        replaced,
    } = registry::deploy(&broker, &sandbox, &wasm, &args.file, &options, args.replace)
        .await
        .map_err(refused)?;
    let name = plugin.manifest.name.clone();
    if let Some(held) = &replaced {
        println!(
            "replaces the plugin named {name:?} with task types {} (a different plugin: its kv data stays with it)",
            held.join(", ")
        );
    }
    if previous.as_deref() == Some(plugin.digest.as_str()) {
        println!(
            "{} is already the current version of {name:?}",
            plugin.display_name()
        );
    } else {
        println!(
            "deployed {} ({}), task types {}",
            plugin.display_name(),
            short(&plugin.digest),
            plugin.manifest.task_types.join(", ")
        );
    }
    rollout(&broker, &name, Some(&plugin.digest), args.wait).await
}

/// Runs `wasmq plugin rollback`.
pub(crate) async fn rollback(args: RollbackArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    let deployment = registry::rollback(&broker, &args.name, args.to.as_deref())
        .await
        .map_err(refused)?;
    let digest = deployment.digest.clone().unwrap_or_default();
    println!(
        "{:?} rolled back to {} ({})",
        args.name,
        deployment.version.as_deref().unwrap_or("?"),
        short(&digest)
    );
    rollout(&broker, &args.name, Some(&digest), args.wait).await
}

/// Runs `wasmq plugin rm`.
pub(crate) async fn remove(args: NameArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    let digest = registry::remove(&broker, &args.name)
        .await
        .map_err(refused)?;
    println!(
        "{:?} ({}) removed; its task types wait in retry until a plugin handles them",
        args.name,
        short(&digest)
    );
    rollout(&broker, &args.name, None, args.wait).await
}

/// Waits until every live worker runs `digest` of `name` (or, for `None`,
/// none of it), or refused it, and reports. Fails if a worker refused it or
/// did not take it in time. A worker still compiling it (a large component,
/// such as a Python or JavaScript plugin, takes most of a minute) is
/// reported as such, with how long it has been at it: it serves the
/// previous version meanwhile and takes the new one when it is compiled,
/// so waiting only for compiles is no failure.
async fn rollout(
    broker: &Broker,
    name: &str,
    digest: Option<&str>,
    wait: Duration,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut said_compiling = false;
    loop {
        let servers = live_servers(broker).await?;
        let (done, refused, waiting) = progress(&servers, name, digest);
        let compiling: Vec<(String, i64)> = digest
            .map(|digest| compiling_on(&servers, name, digest))
            .unwrap_or_default();
        let over = started.elapsed() >= wait;
        if !said_compiling && !compiling.is_empty() && !over {
            said_compiling = true;
            println!(
                "{} worker(s) compiling it in the background (the previous version serves meanwhile)...",
                compiling.len()
            );
        }
        if waiting.is_empty() || over {
            if servers.is_empty() {
                println!("no worker is running: workers take it when they start");
                return Ok(());
            }
            println!(
                "{} of {} worker(s) took it in {:.1} s",
                done.len(),
                servers.len(),
                started.elapsed().as_secs_f64()
            );
            for (worker, error) in &refused {
                println!("  refused by {worker}: {error}");
            }
            let now = chrono::Utc::now().timestamp_millis();
            let mut stalled = 0;
            for worker in &waiting {
                match compiling.iter().find(|(id, _)| id == worker) {
                    Some((_, since_ms)) => println!(
                        "  still compiling on {worker} (for {:.0} s; it serves the previous version until then)",
                        (now - since_ms).max(0) as f64 / 1000.0
                    ),
                    None => {
                        stalled += 1;
                        println!("  not yet taken by {worker}");
                    }
                }
            }
            if !refused.is_empty() {
                return Err(anyhow::anyhow!(
                    "{} worker(s) refused it and keep running the previous version",
                    refused.len()
                )
                .into());
            }
            if stalled > 0 {
                return Err(anyhow::anyhow!(
                    "{stalled} worker(s) did not take it within {}",
                    humantime::format_duration(wait)
                )
                .into());
            }
            if !waiting.is_empty() {
                println!(
                    "the rest take it as soon as they have compiled it: `wasmq plugin ls` follows the rollout"
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The workers compiling `digest` of `name`, with since when (unix ms).
fn compiling_on(servers: &[ServerInfo], name: &str, digest: &str) -> Vec<(String, i64)> {
    servers
        .iter()
        .filter_map(|server| {
            server
                .compiling
                .iter()
                .find(|load| load.name == name && load.digest == digest)
                .map(|load| (server.id.clone(), load.since_ms))
        })
        .collect()
}

type Progress = (Vec<String>, Vec<(String, String)>, Vec<String>);

fn progress(servers: &[ServerInfo], name: &str, digest: Option<&str>) -> Progress {
    match digest {
        Some(digest) => {
            let (running, other, failed) = registry::where_it_runs(servers, name, digest);
            let mut waiting: Vec<String> = other.into_iter().map(|(worker, _)| worker).collect();
            // A worker that has not loaded any version of it yet.
            for server in servers {
                let known = running.contains(&server.id)
                    || failed.iter().any(|(worker, _)| worker == &server.id)
                    || waiting.contains(&server.id);
                if !known {
                    waiting.push(server.id.clone());
                }
            }
            (running, failed, waiting)
        }
        None => {
            let (done, waiting): (Vec<&ServerInfo>, Vec<&ServerInfo>) =
                servers.iter().partition(|server| {
                    !server
                        .plugins
                        .iter()
                        .any(|plugin| plugin.name == name && plugin.deployed)
                });
            (
                done.iter().map(|server| server.id.clone()).collect(),
                Vec::new(),
                waiting.iter().map(|server| server.id.clone()).collect(),
            )
        }
    }
}

fn short(digest: &str) -> String {
    format!("sha256:{}", registry::short_digest(digest))
}

/// Runs `wasmq plugin ls`.
pub(crate) async fn list(args: ListArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    let plugins = registry::list(&broker).await?;
    if args.json {
        format::print_json(&plugins)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "NAME",
        "VERSION",
        "HASH",
        "TASK TYPES",
        "DEPLOYED",
        "WORKERS",
    ]);
    for plugin in &plugins {
        let current = &plugin.current;
        let mut workers = Vec::new();
        if !plugin.running.is_empty() {
            workers.push(format!("{} running it", plugin.running.len()));
        }
        if !plugin.running_other.is_empty() {
            workers.push(format!("{} on another version", plugin.running_other.len()));
        }
        if !plugin.failed.is_empty() {
            workers.push(format!("{} refused it", plugin.failed.len()));
        }
        table.row(vec![
            plugin.name.clone(),
            current.version.clone().unwrap_or_else(|| "?".into()),
            short(current.digest.as_deref().unwrap_or_default()),
            current.task_types.join(", "),
            format!(
                "{} ({}, by {})",
                format::time(current.at_ms),
                current.action,
                current.by
            ),
            if workers.is_empty() {
                "none".into()
            } else {
                workers.join(", ")
            },
        ]);
    }
    if table.is_empty() {
        println!("no plugin is deployed; `wasmq plugin deploy FILE` deploys one");
    } else {
        print!("{}", table.render());
    }
    Ok(())
}

/// Runs `wasmq plugin history`.
pub(crate) async fn history(args: NameArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("plugin").await?;
    let past = registry::history(&broker, &args.name).await?;
    if past.is_empty() {
        return Err(Failure::not_found(format!(
            "plugin {:?} was never deployed",
            args.name
        )));
    }
    let mut table = Table::new(&["WHEN", "ACTION", "VERSION", "HASH", "BY"]);
    for entry in past {
        table.row(vec![
            format::time(entry.at_ms),
            entry.action,
            entry.version.unwrap_or_else(|| "-".into()),
            entry.digest.as_deref().map_or_else(|| "-".into(), short),
            entry.by,
        ]);
    }
    print!("{}", table.render());
    Ok(())
}
