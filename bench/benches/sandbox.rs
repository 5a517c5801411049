//! One task's sandbox cost, measured by criterion: a fresh Store and
//! instance of the `echo` plugin, the call, the drop; with fuel metering on
//! and off, and with the pooling allocator on and off. Then the same no-op
//! echo written in each language (Rust, Python, JavaScript), as a worker
//! runs it (`sandbox/language`; the Python and JavaScript plugins are
//! built with `target/release/wasmq plugin build`, so build wasmq first).
//!
//! The floor beside it: the same task in wasmtime alone (the same engine, a
//! bare Store, no wasmq code), for `echo` and for the smallest component of
//! the `task-handler` world (`components/noop.wat`: one core module, no
//! imports, one page of memory), and that component in wasmq's sandbox.
//!
//! ```text
//! cargo bench -p wasmq-bench --bench sandbox
//! ```

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;
use wasmq::plugins::{LoadOptions, Plugin};
use wasmq::sandbox::bindings::TaskHandlerPre;
use wasmq::sandbox::bindings::wasmq::plugin::types::Task;
use wasmq::sandbox::{
    ComponentCache, Grants, Invocation, Limits, NoServices, Prepared, Sandbox, SandboxConfig,
    Services, TaskLabel,
};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a task in wasmq's sandbox runs with, apart from its component.
struct SandboxTask<'a> {
    sandbox: &'a Sandbox,
    limits: &'a Limits,
    grants: &'a Arc<Grants>,
    services: &'a Arc<dyn Services>,
    cancel: &'a CancellationToken,
}

impl SandboxTask<'_> {
    /// Runs one no-op task (`echo`, payload `{}`) of `prepared` in a fresh
    /// instance, as the worker does.
    async fn run(&self, plugin: &str, prepared: &Prepared) {
        self.run_type(plugin, prepared, "echo").await
    }

    /// Runs one no-op task of `task_type` (payload `{}`).
    async fn run_type(&self, plugin: &str, prepared: &Prepared, task_type: &str) {
        let label = TaskLabel {
            plugin: plugin.to_string(),
            task_id: "t".into(),
            task_type: task_type.into(),
            attempt: 1,
            queue: "default".into(),
        };
        let invocation = Invocation {
            id: "t",
            task_type,
            payload: b"{}",
            queue: "default",
            attempt: 1,
            max_retry: 0,
        };
        let outcome = self
            .sandbox
            .run(
                prepared,
                label,
                invocation,
                self.limits,
                self.grants,
                self.services,
                self.cancel,
            )
            .await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }
}

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
        let task = SandboxTask {
            sandbox: &sandbox,
            limits: &plugin.limits,
            grants: &plugin.grants,
            services: &services,
            cancel: &cancel,
        };
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| runtime.block_on(task.run(&plugin.manifest.name, &plugin.prepared)));
        });
    }
    group.finish();
}

/// What a Store in wasmtime alone holds: a resource table and a WASI context
/// made on first use, as wasmq's own state does.
#[derive(Default)]
struct BareState {
    table: ResourceTable,
    wasi: Option<WasiCtx>,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| WasiCtx::builder().build());
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// One task in wasmtime alone: a bare Store with fuel and an epoch deadline
/// (as wasmq sets them), a fresh instance, the call, the drop.
async fn bare_task(engine: &wasmtime::Engine, pre: &TaskHandlerPre<BareState>, task: &Task<'_>) {
    let mut store = Store::new(engine, BareState::default());
    store.set_fuel(u64::MAX).expect("fuel metering is on");
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .expect("the component instantiates");
    let result = instance
        .wasmq_plugin_handler()
        .call_handle(&mut store, task.clone())
        .await
        .expect("the call returns");
    assert!(result.is_ok());
}

fn instance_floor(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Fuel on, pooling on: the engine wasmq runs tasks in.
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 8,
        ..SandboxConfig::default()
    })
    .expect("the sandbox starts");
    let engine = sandbox.engine();
    let cache = ComponentCache::new(wasmq_testkit::component_cache_dir());
    let echo_bytes =
        std::fs::read(wasmq_testkit::ECHO_COMPONENT).expect("the echo plugin is built");
    let echo = sandbox
        .compile(&echo_bytes, Some(&cache))
        .expect("echo compiles");
    let noop_bytes = wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/components/noop.wat"))
        .expect("noop.wat parses");
    let noop = Component::new(engine, &noop_bytes).expect("noop.wat compiles");

    let mut linker = Linker::<BareState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
    let task = Task {
        id: "t",
        task_type: "echo",
        payload: b"{}",
        queue: "default",
        attempt: 1,
        max_retry: 0,
    };
    let (limits, grants) = (Limits::default(), Arc::new(Grants::default()));
    let services: Arc<dyn Services> = Arc::new(NoServices);
    let cancel = CancellationToken::new();
    let in_sandbox = SandboxTask {
        sandbox: &sandbox,
        limits: &limits,
        grants: &grants,
        services: &services,
        cancel: &cancel,
    };

    let mut group = c.benchmark_group("sandbox/floor");
    for (name, component) in [("echo", &echo), ("noop.wat", &noop)] {
        let pre = linker
            .instantiate_pre(component)
            .and_then(TaskHandlerPre::new)
            .expect("the component targets the task-handler world");
        group.bench_function(BenchmarkId::new("wasmtime alone", name), |bench| {
            bench.iter(|| runtime.block_on(bare_task(engine, &pre, &task)));
        });
        let prepared = sandbox
            .prepare(component, &grants)
            .expect("the component targets the task-handler world");
        group.bench_function(BenchmarkId::new("wasmq sandbox", name), |bench| {
            bench.iter(|| runtime.block_on(in_sandbox.run(name, &prepared)));
        });
    }
    group.finish();
}

/// The same no-op echo in each language, in wasmq's sandbox as a worker
/// runs it (fuel on, pooling on): instance, call, drop.
fn languages(c: &mut Criterion) {
    use wasmq_testkit::polyglot::{self, JS_EXAMPLE, PYTHON_EXAMPLE};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 8,
        ..SandboxConfig::default()
    })
    .expect("the sandbox starts");
    let options = LoadOptions {
        cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
        ..LoadOptions::default()
    };
    let wasmq = polyglot::built_wasmq();
    let services: Arc<dyn Services> = Arc::new(NoServices);
    let cancel = CancellationToken::new();
    // The same sandbox keeping 32 MiB of each memory resident between
    // instances instead of 4 MiB: for the Python and JavaScript images.
    let resident = Sandbox::new(SandboxConfig {
        max_instances: 8,
        memory_keep_resident: 32 << 20,
        ..SandboxConfig::default()
    })
    .expect("the sandbox starts");
    let python = polyglot::component(PYTHON_EXAMPLE, &wasmq);
    let js = polyglot::component(JS_EXAMPLE, &wasmq);
    let rust = std::path::PathBuf::from(wasmq_testkit::ECHO_COMPONENT);
    let mut group = c.benchmark_group("sandbox/language");
    for (language, sandbox, component, task_type) in [
        ("rust", &sandbox, &rust, "echo"),
        ("python", &sandbox, &python, "py:echo"),
        ("python, 32 MiB resident", &resident, &python, "py:echo"),
        ("js", &sandbox, &js, "js:echo"),
        ("js, 32 MiB resident", &resident, &js, "js:echo"),
    ] {
        let plugin =
            Plugin::load_file(sandbox, component, &options).expect("the echo plugin loads");
        let task = SandboxTask {
            sandbox,
            limits: &plugin.limits,
            grants: &plugin.grants,
            services: &services,
            cancel: &cancel,
        };
        group.bench_function(BenchmarkId::from_parameter(language), |bench| {
            bench.iter(|| {
                runtime.block_on(task.run_type(&plugin.manifest.name, &plugin.prepared, task_type))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sandbox_cost, instance_floor, languages);
criterion_main!(benches);
