//! `sandbox`: what one task's sandbox costs (a fresh Store and instance,
//! the call, the drop), and what fuel metering, epoch interruption and the
//! pooling allocator each add or save. No Redis: the sandbox alone, one
//! task after another.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use tokio_util::sync::CancellationToken;
use wasmq::plugins::{LoadOptions, Plugin};
use wasmq::sandbox::{
    ComponentCache, Invocation, NoServices, Sandbox, SandboxConfig, Services, TaskLabel,
};

/// Arguments of `sandbox`.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// No-op tasks per configuration.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// CPU-bound tasks per configuration (burn, fixed work).
    #[arg(long, default_value_t = 300)]
    pub heavy_tasks: usize,
    /// SHA-256 rounds (of 4 KiB) of each CPU-bound task.
    #[arg(long, default_value_t = 2_000)]
    pub rounds: u64,
    /// Times each configuration is measured, interleaved; the median is
    /// reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Measure these components instead, one against the other
    /// (`PATH=TASK_TYPE`, payload `{}`; repeat the flag): no-op tasks each,
    /// interleaved `repeats` times, medians printed. For comparing two
    /// builds of a plugin, such as the Python or JavaScript example before
    /// and after a change of its SDK.
    #[arg(long, value_name = "PATH=TASK_TYPE")]
    pub component: Vec<String>,
    /// With `--component`: tasks in flight at once (on this process's
    /// tokio threads, as a worker runs them), each in its own instance.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// With `--component`: bytes of each linear memory the pool keeps
    /// resident between instances (the sandbox's `memory_keep_resident`).
    #[arg(long)]
    pub memory_keep_resident: Option<usize>,
}

/// Runs `tasks` tasks in a fresh instance each; returns µs per task.
async fn per_task(
    sandbox: &Sandbox,
    component: &str,
    task_type: &str,
    payload: &str,
    tasks: usize,
) -> anyhow::Result<f64> {
    let options = LoadOptions {
        cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
        ..LoadOptions::default()
    };
    let plugin = Plugin::load_file(sandbox, Path::new(component), &options)?;
    anyhow::ensure!(
        plugin.manifest.task_types.iter().any(|t| t == task_type),
        "{component} does not handle {task_type}"
    );
    let services: Arc<dyn Services> = Arc::new(NoServices);
    let cancel = CancellationToken::new();
    let run = |n: usize| {
        let label = TaskLabel {
            plugin: plugin.manifest.name.clone(),
            task_id: n.to_string(),
            task_type: task_type.to_string(),
            attempt: 1,
            queue: "default".into(),
        };
        let invocation = Invocation {
            id: "t",
            task_type,
            payload: payload.as_bytes(),
            queue: "default",
            attempt: 1,
            max_retry: 0,
        };
        sandbox.run(
            &plugin.prepared,
            label,
            invocation,
            &plugin.limits,
            &plugin.grants,
            &services,
            &cancel,
        )
    };
    // Warm up.
    for n in 0..tasks.min(100) {
        run(n)
            .await
            .result
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    let started = Instant::now();
    for n in 0..tasks {
        run(n)
            .await
            .result
            .map_err(|err| anyhow::anyhow!("{err}"))?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / tasks as f64)
}

/// Measures every configuration `repeats` times, interleaved, and prints
/// one JSON line each with the medians.
pub async fn run(args: &SandboxArgs) -> anyhow::Result<()> {
    if !args.component.is_empty() {
        return components(args).await;
    }
    let heavy = format!(r#"{{"rounds":{}}}"#, args.rounds);
    let configs = [
        (true, true, true),
        (false, true, true),
        (true, false, true),
        (false, false, true),
        (true, true, false),
    ];
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); configs.len()];
    for _ in 0..args.repeats.max(1) {
        for (index, (fuel, epoch, pooling)) in configs.iter().enumerate() {
            let sandbox = Sandbox::new(SandboxConfig {
                max_instances: 8,
                fuel_metering: *fuel,
                epoch_interruption: *epoch,
                pooling: *pooling,
                ..SandboxConfig::default()
            })?;
            samples[index].0.push(
                per_task(
                    &sandbox,
                    wasmq_testkit::ECHO_COMPONENT,
                    "echo",
                    "{}",
                    args.tasks,
                )
                .await?,
            );
            samples[index].1.push(
                per_task(
                    &sandbox,
                    wasmq_testkit::BURN_COMPONENT,
                    "burn",
                    &heavy,
                    args.heavy_tasks,
                )
                .await?,
            );
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for ((fuel, epoch, pooling), (noop, burn)) in configs.iter().zip(samples.iter_mut()) {
        println!(
            "{}",
            serde_json::json!({
                "fuel": fuel,
                "epoch_interruption": epoch,
                "pooling": pooling,
                "noop_us_per_task": (median(noop) * 10.0).round() / 10.0,
                "cpu_bound_us_per_task": median(burn).round(),
                "rounds": args.rounds,
            })
        );
    }
    Ok(())
}

/// `--component`: each component's no-op, `concurrency` tasks at once,
/// interleaved `repeats` times; prints one JSON line each with the median
/// µs per task (wall clock over the tasks, so with concurrency above the
/// cores it is the inverse of throughput) and the process's CPU µs per task.
async fn components(args: &SandboxArgs) -> anyhow::Result<()> {
    let options = LoadOptions {
        cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
        ..LoadOptions::default()
    };
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        max_instances: (args.concurrency as u32).max(1) + 4,
        memory_keep_resident: args
            .memory_keep_resident
            .unwrap_or(SandboxConfig::default().memory_keep_resident),
        ..SandboxConfig::default()
    })?);
    let mut plugins = Vec::new();
    for spec in &args.component {
        let (path, task_type) = spec
            .split_once('=')
            .with_context(|| format!("--component {spec}: expected PATH=TASK_TYPE"))?;
        let plugin = Arc::new(Plugin::load_file(&sandbox, Path::new(path), &options)?);
        anyhow::ensure!(
            plugin.manifest.task_types.iter().any(|t| t == task_type),
            "{path} does not handle {task_type}"
        );
        plugins.push((spec.clone(), plugin, task_type.to_string()));
    }
    let services: Arc<dyn Services> = Arc::new(NoServices);
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); plugins.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); plugins.len()];
    for repeat in 0..=args.repeats.max(1) {
        for (index, (_, plugin, task_type)) in plugins.iter().enumerate() {
            let tasks = if repeat == 0 { 100 } else { args.tasks };
            let per_worker = tasks.div_ceil(args.concurrency.max(1));
            let cpu_before = crate::drain::own_cpu_seconds();
            let started = Instant::now();
            let mut running = tokio::task::JoinSet::new();
            for _ in 0..args.concurrency.max(1) {
                let (sandbox, plugin, services) =
                    (sandbox.clone(), plugin.clone(), services.clone());
                let task_type = task_type.clone();
                running.spawn(async move {
                    let cancel = CancellationToken::new();
                    for n in 0..per_worker {
                        let label = TaskLabel {
                            plugin: plugin.manifest.name.clone(),
                            task_id: n.to_string(),
                            task_type: task_type.clone(),
                            attempt: 1,
                            queue: "default".into(),
                        };
                        let invocation = Invocation {
                            id: "t",
                            task_type: &task_type,
                            payload: b"{}",
                            queue: "default",
                            attempt: 1,
                            max_retry: 0,
                        };
                        let outcome = sandbox
                            .run(
                                &plugin.prepared,
                                label,
                                invocation,
                                &plugin.limits,
                                &plugin.grants,
                                &services,
                                &cancel,
                            )
                            .await;
                        outcome.result.map_err(|err| anyhow::anyhow!("{err}"))?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(done) = running.join_next().await {
                done??;
            }
            let done = (per_worker * args.concurrency.max(1)) as f64;
            if repeat > 0 {
                wall[index].push(started.elapsed().as_secs_f64() * 1e6 / done);
                cpu[index].push((crate::drain::own_cpu_seconds() - cpu_before) * 1e6 / done);
            }
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for (((spec, _, _), wall), cpu) in plugins.iter().zip(wall.iter_mut()).zip(cpu.iter_mut()) {
        println!(
            "{}",
            serde_json::json!({
                "component": spec,
                "concurrency": args.concurrency,
                "memory_keep_resident": args.memory_keep_resident,
                "us_per_task": median(wall).round(),
                "cpu_us_per_task": median(cpu).round(),
            })
        );
    }
    Ok(())
}
