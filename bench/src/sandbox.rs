//! `sandbox`: what one task's sandbox costs (a fresh Store and instance,
//! the call, the drop), and what fuel metering, epoch interruption and the
//! pooling allocator each add or save. No Redis: the sandbox alone, one
//! task after another.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

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
