//! One task's sandbox cost, measured by criterion: a fresh Store and
//! instance of the `echo` plugin, the call, the drop; with fuel metering on
//! and off, and with the pooling allocator on and off.
//!
//! ```text
//! cargo bench -p wasmq-bench --bench sandbox
//! ```

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;
use wasmq::plugins::{LoadOptions, Plugin};
use wasmq::sandbox::{
    ComponentCache, Invocation, NoServices, Sandbox, SandboxConfig, Services, TaskLabel,
};

fn sandbox_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let services: Arc<dyn Services> = Arc::new(NoServices);
    let cancel = CancellationToken::new();
    let mut group = c.benchmark_group("sandbox/echo");
    for (fuel, pooling) in [(true, true), (false, true), (true, false), (false, false)] {
        let sandbox = Sandbox::new(SandboxConfig {
            max_instances: 8,
            fuel_metering: fuel,
            pooling,
            ..SandboxConfig::default()
        })
        .expect("the sandbox starts");
        let options = LoadOptions {
            cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
            ..LoadOptions::default()
        };
        let plugin =
            Plugin::load_file(&sandbox, Path::new(wasmq_testkit::ECHO_COMPONENT), &options)
                .expect("the echo plugin loads");
        let name = format!(
            "fuel {}, pooling {}",
            if fuel { "on" } else { "off" },
            if pooling { "on" } else { "off" }
        );
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| {
                let label = TaskLabel {
                    plugin: plugin.manifest.name.clone(),
                    task_id: "t".into(),
                    task_type: "echo".into(),
                    attempt: 1,
                    queue: "default".into(),
                };
                let invocation = Invocation {
                    id: "t",
                    task_type: "echo",
                    payload: b"{}",
                    queue: "default",
                    attempt: 1,
                    max_retry: 0,
                };
                let outcome = runtime.block_on(sandbox.run(
                    &plugin.prepared,
                    label,
                    invocation,
                    &plugin.limits,
                    &plugin.grants,
                    &services,
                    &cancel,
                ));
                assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sandbox_cost);
criterion_main!(benches);
