//! Runs one task in a fresh WebAssembly instance, held to its limits.
//!
//! # Overview
//! A [`Sandbox`] owns the wasmtime [`Engine`] (component model, fuel
//! metering, epoch interruption, pooling allocator) and a background thread
//! that ticks the engine's epoch. [`Sandbox::prepare`] checks a component
//! against the `task-handler` world and links it once into a [`Prepared`]
//! (an `InstancePre`). [`Sandbox::run`] then gives each task a new `Store`
//! and instance: nothing survives from one task to the next.
//!
//! Per task: fuel, a wall-clock deadline (checked at every epoch tick, where
//! the instance also yields so that busy instances share threads fairly, and
//! backed by a tokio timeout for time spent in host calls), one memory cap
//! for all the linear memories and tables of all its core instances
//! together, caps on how many of those it may have, a cap on what it may
//! pass the host in one call, and caps on result, message and log sizes. A
//! trap never fails the worker: it becomes a [`TaskFailure`] with a class
//! ([`FailureKind`]).
//!
//! The pooling allocator is sized so that every instance the sandbox
//! allows at once can get its whole per-component allotment (memories,
//! tables, core instances): no instance can take slots another needs. A
//! plugin may also be held to a share of the instances
//! ([`SandboxConfig::max_instances_per_plugin`]); an instance refused for
//! lack of room fails as [`FailureKind::WorkerBusy`], which the worker
//! treats as no attempt at all.
//!
//! The guest gets no ambient authority: no preopened directories, no
//! environment, no arguments, no sockets, empty stdin; what it writes to
//! stdout and stderr goes to the task's log, under its log budget. It may
//! import WASI's clocks and random numbers and the host's `log` interface.

mod cache;
mod classify;
mod grants;
mod host;
mod limits;
mod load;
mod outgoing;
mod output;
mod progress;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub use cache::ComponentCache;
pub use grants::{
    ChildResult, EnqueueError, EnqueueGrant, FlowRequest, FollowUpRequest, Grants, HostPattern,
    HttpGrant, HttpSpan, HttpTracing, KvGrant, NoServices, Rate, Services,
};
pub use host::TaskLabel;
pub use limits::Limits;
pub(crate) use load::Granted;
pub use load::{CompileBounds, LoadError};
pub use outgoing::OutgoingHttp;

use crate::task::{FailureKind, TaskFailure};
use host::{ComponentCounts, HostSetup, HostState, MemoryLimiter, Stop};

/// Host bindings generated from `wit/`, for the benchmarks that call a
/// component of the `task-handler` world in wasmtime alone, beside the
/// sandbox. Not part of the supported interface.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "task-handler",
        imports: { default: async | trappable },
        exports: { default: async },
        // The task handed to `handle` borrows the leased message's id,
        // type, queue and payload instead of copying them per task.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::TaskHandlerPre;
use bindings::wasmq::plugin::types;

/// How the engine is set up; fixed for the life of a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Instances that may exist at once (the worker's concurrency, plus
    /// room for loading): sizes the pooling allocator.
    pub max_instances: u32,
    /// The largest memory cap any plugin may have, in bytes.
    pub max_memory_bytes: u64,
    /// Whether instances burn fuel (each plugin then gets a fuel budget).
    pub fuel_metering: bool,
    /// How often the epoch ticks: the granularity of deadlines and of
    /// yielding between busy instances.
    pub epoch_tick: Duration,
    /// Whether to use the pooling allocator (faster instantiation).
    pub pooling: bool,
    /// Whether compiled code checks the epoch, which is what lets the host
    /// stop a guest at its deadline and make busy guests take turns.
    /// Switching it off is only for measuring its cost: a guest that never
    /// returns could then not be stopped.
    pub epoch_interruption: bool,
    /// Core instances one task's component may create (a componentize-py
    /// component has a few dozen; each costs little until it is used).
    pub max_core_instances_per_component: u32,
    /// Linear memories one task's component may define, all core instances
    /// together.
    pub max_memories_per_component: u32,
    /// Tables one task's component may define, all core instances together.
    pub max_tables_per_component: u32,
    /// Elements one table may hold.
    pub max_table_elements: usize,
    /// Instances one plugin may have at once (`None`: as many as
    /// `max_instances`). A task beyond it fails as
    /// [`FailureKind::WorkerBusy`], which is no attempt.
    pub max_instances_per_plugin: Option<u32>,
    /// Bytes of each linear memory slot the pool keeps resident between
    /// instances (reset in place, only the pages a task dirtied where the
    /// kernel tells them); beyond, memory goes back to the kernel and
    /// faults in again from the component's image.
    pub memory_keep_resident: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_instances: 256,
            max_memory_bytes: 512 * 1024 * 1024,
            fuel_metering: true,
            epoch_tick: Duration::from_millis(10),
            pooling: true,
            epoch_interruption: true,
            max_core_instances_per_component: 64,
            max_memories_per_component: 8,
            max_tables_per_component: 8,
            max_table_elements: 100_000,
            max_instances_per_plugin: None,
            memory_keep_resident: 4 << 20,
        }
    }
}

/// The wasmtime engine and the linker every plugin is checked against.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    config: SandboxConfig,
    /// Instances alive per plugin, for `max_instances_per_plugin`.
    live: Mutex<HashMap<String, u32>>,
    _ticker: EpochTicker,
}

/// A component checked against the world and linked: ready to instantiate.
#[derive(Clone)]
pub struct Prepared {
    pre: TaskHandlerPre<HostState>,
}

/// The task as the sandbox hands it to a handler.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The task id.
    pub id: &'a str,
    /// The task type.
    pub task_type: &'a str,
    /// The payload bytes (JSON).
    pub payload: &'a [u8],
    /// The queue.
    pub queue: &'a str,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// Retries allowed after the first attempt.
    pub max_retry: u32,
}

/// What one run produced, with the measurements the worker reports.
#[derive(Debug)]
pub struct Outcome {
    /// The result bytes, or why there are none.
    pub result: Result<Vec<u8>, TaskFailure>,
    /// Fuel burned, when metered.
    pub fuel_used: Option<u64>,
    /// Time to create the instance.
    pub instantiate_time: Duration,
    /// Time from start to finish, instantiation included.
    pub total_time: Duration,
}

impl Sandbox {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, LoadError> {
        let mut engine_config = Config::new();
        engine_config
            .wasm_component_model(true)
            .epoch_interruption(config.epoch_interruption)
            .consume_fuel(config.fuel_metering)
            // wasmtime is built without its `gc` feature, yet 48.0.8 leaves
            // the GC proposal on: a plugin declaring a non-final function
            // type could then reach a run-time subtype check that aborts
            // the whole process (GHSA-rc4p-x33f-vpr2). Off, such a plugin
            // is refused at load.
            .wasm_gc(false)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            // Trap messages name the trap; resolving backtraces to source
            // lines on every trap would make failing tasks far costlier.
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        if config.pooling {
            // Every instance allowed at once gets its whole allotment: the
            // totals are the per-component maxima times the instances.
            let n = config.max_instances.max(1);
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .max_core_instances_per_component(config.max_core_instances_per_component)
                .max_memories_per_component(config.max_memories_per_component)
                .max_tables_per_component(config.max_tables_per_component)
                .table_elements(config.max_table_elements)
                .total_core_instances(n.saturating_mul(config.max_core_instances_per_component))
                .total_memories(n.saturating_mul(config.max_memories_per_component))
                .total_tables(n.saturating_mul(config.max_tables_per_component))
                .total_stacks(n)
                .linear_memory_keep_resident(config.memory_keep_resident)
                .table_keep_resident(64 << 10)
                .pagemap_scan(wasmtime::Enabled::Auto)
                .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
            engine_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine =
            Engine::new(&engine_config).map_err(|err| LoadError::Engine(format!("{err:#}")))?;
        let mut linker = Linker::new(&engine);
        let engine_error = |err: wasmtime::Error| LoadError::Engine(format!("{err:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
        type Own = wasmtime::component::HasSelf<HostState>;
        bindings::wasmq::plugin::log::add_to_linker::<HostState, Own>(&mut linker, |state| state)
            .map_err(engine_error)?;
        bindings::wasmq::plugin::kv::add_to_linker::<HostState, Own>(&mut linker, |state| state)
            .map_err(engine_error)?;
        bindings::wasmq::plugin::enqueue::add_to_linker::<HostState, Own>(&mut linker, |state| {
            state
        })
        .map_err(engine_error)?;
        bindings::wasmq::plugin::flow::add_to_linker::<HostState, Own>(&mut linker, |state| state)
            .map_err(engine_error)?;
        bindings::wasmq::plugin::progress::add_to_linker::<HostState, Own>(&mut linker, |state| {
            state
        })
        .map_err(engine_error)?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick);
        Ok(Sandbox {
            engine,
            linker,
            config,
            live: Mutex::default(),
            _ticker: ticker,
        })
    }

    /// The engine (for compiling components).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration the sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Compiles component bytes, through `cache` when given.
    /// Components that declare more core instances, memories or tables
    /// than this sandbox allows are refused with the reason.
    pub fn compile(
        &self,
        wasm: &[u8],
        cache: Option<&ComponentCache>,
    ) -> Result<Component, LoadError> {
        load::check_bytes(wasm)?;
        load::check_counts(&load::footprint(wasm)?, &self.config)?;
        load::compile(&self.engine, wasm, cache)
    }

    /// Checks, from the binary and without compiling it, that every
    /// interface a component imports is one every plugin gets or one
    /// `grants` allows: a plugin importing what its manifest does not grant
    /// is refused before a costly compile.
    pub(crate) fn check_import_names(
        &self,
        wasm: &[u8],
        granted: Granted,
    ) -> Result<(), LoadError> {
        load::check_import_names(&load::import_names(wasm)?, granted)
    }

    /// Checks that what a component allocates as soon as it is instantiated
    /// (the minimum sizes of its memories and tables) fits within `limits`.
    pub fn check_footprint(&self, wasm: &[u8], limits: &Limits) -> Result<(), LoadError> {
        load::check_minimum(&load::footprint(wasm)?, limits)
    }

    /// Compiles component bytes within `bounds` (function size, compile
    /// time), through the cache when given. Like [`Sandbox::compile`], it
    /// first refuses components that declare more core instances, memories
    /// or tables than this sandbox allows, with the reason.
    pub fn compile_bounded(
        &self,
        wasm: &[u8],
        cache: Option<&ComponentCache>,
        bounds: &CompileBounds,
    ) -> Result<Component, LoadError> {
        load::check_bytes(wasm)?;
        load::check_counts(&load::footprint(wasm)?, &self.config)?;
        load::compile_bounded(&self.engine, wasm, cache, bounds)
    }

    /// The names of the interfaces a component imports and exports.
    pub fn interfaces(&self, component: &Component) -> (Vec<String>, Vec<String>) {
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        (imports, exports)
    }

    /// Checks that a component exports the handler of the `task-handler`
    /// world at the version this host speaks.
    pub fn check_world(&self, component: &Component) -> Result<(), LoadError> {
        load::check_world(&self.engine, component)
    }

    /// Checks a component against the `task-handler` world and the
    /// plugin's grants (every import must be granted), and links it.
    pub fn prepare(&self, component: &Component, grants: &Grants) -> Result<Prepared, LoadError> {
        load::check_world(&self.engine, component)?;
        load::check_imports(&self.engine, component, grants)?;
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|err| load::unsatisfied_import(&self.engine, component, err))?;
        let pre = TaskHandlerPre::new(instance_pre)
            .map_err(|err| LoadError::WrongWorld(format!("{err:#}")))?;
        Ok(Prepared { pre })
    }

    /// Runs one task in a fresh instance of `component`, within `limits`
    /// and `grants` (with `services` behind the key-value store and
    /// enqueuing), until it returns, fails, runs out of budget or `cancel`
    /// fires.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        component: &Prepared,
        label: TaskLabel,
        invocation: Invocation<'_>,
        limits: &Limits,
        grants: &Arc<Grants>,
        services: &Arc<dyn Services>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let Some(_share) = self.share(&label.plugin) else {
            let share = self.config.max_instances_per_plugin.unwrap_or(u32::MAX);
            return Outcome {
                result: Err(TaskFailure::new(
                    FailureKind::WorkerBusy,
                    format!(
                        "this worker already runs {share} instances of plugin {:?}, its share of instances (its max-instances-per-plugin)",
                        label.plugin
                    ),
                )),
                fuel_used: None,
                instantiate_time: Duration::ZERO,
                total_time: started.elapsed(),
            };
        };
        let deadline = started + limits.timeout;
        let config = &self.config;
        let counts = ComponentCounts {
            core_instances: config.max_core_instances_per_component as usize,
            memories: config.max_memories_per_component as usize,
            tables: config.max_tables_per_component as usize,
        };
        let mut store = Store::new(
            &self.engine,
            HostState::new(HostSetup {
                label,
                grants: grants.clone(),
                services: services.clone(),
                limiter: MemoryLimiter::new(limits.memory_bytes, config.max_table_elements, counts),
                limits: limits.clone(),
                deadline,
                cancel: cancel.clone(),
            }),
        );
        store.limiter(|state| &mut state.limiter);
        // What the guest may hand the host in one call (arguments of
        // imports, and the handler's result or failure): anything larger
        // traps before wasmtime copies it.
        let hostcall_bytes =
            limits.hostcall_bytes(grants.kv.as_ref().map_or(0, |kv| kv.max_value_bytes));
        store.set_hostcall_fuel(hostcall_bytes);
        store.set_max_component_handles(host::MAX_HANDLES);
        let fuel_budget = if self.config.fuel_metering {
            let budget = limits.fuel.unwrap_or(u64::MAX);
            // Fuel is enabled on the engine, so setting it cannot fail.
            store.set_fuel(budget).expect("fuel metering is enabled");
            Some(budget)
        } else {
            None
        };
        if self.config.epoch_interruption {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|mut context| {
                let state = context.data_mut();
                if state.cancel.is_cancelled() {
                    state.stop = Some(Stop::Cancelled);
                    return Ok(UpdateDeadline::Interrupt);
                }
                if Instant::now() >= state.deadline {
                    state.stop = Some(Stop::Timeout);
                    return Ok(UpdateDeadline::Interrupt);
                }
                Ok(UpdateDeadline::Yield(1))
            });
        }

        let task = types::Task {
            id: invocation.id,
            task_type: invocation.task_type,
            payload: invocation.payload,
            queue: invocation.queue,
            attempt: invocation.attempt,
            max_retry: invocation.max_retry,
        };

        let mut instantiate_time = Duration::ZERO;
        let call = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instantiate_time = started.elapsed();
            instance
                .wasmq_plugin_handler()
                .call_handle(&mut store, task)
                .await
        };
        // The epoch callback stops guest code at the deadline; an outer
        // timeout also covers time spent inside host calls. Most tasks end
        // at their first poll, before either the timer or the cancellation
        // would even be watched: those arm neither.
        let raced = {
            let mut call = std::pin::pin!(call);
            let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(outcome) => Some(outcome),
                Poll::Pending => {
                    let grace = self.config.epoch_tick * 10;
                    let until = tokio::time::Instant::from_std(deadline + grace);
                    tokio::select! {
                        biased;
                        outcome = tokio::time::timeout_at(until, call) => outcome.ok(),
                        _ = cancel.cancelled() => {
                            // Give the guest the chance to be interrupted at its
                            // next tick; if it is inside a host call, drop it now.
                            None
                        }
                    }
                }
            }
        };

        let fuel_used =
            fuel_budget.map(|budget| budget.saturating_sub(store.get_fuel().unwrap_or(0)));
        store.data_mut().flush_progress().await;
        let state = store.data();
        state.finish_output();
        let result = match raced {
            Some(Ok(Ok(bytes))) if bytes.len() > limits.max_result_bytes => Err(TaskFailure::new(
                FailureKind::ResultTooLarge,
                format!(
                    "the result is {} bytes, over the plugin's limit of {} bytes",
                    bytes.len(),
                    limits.max_result_bytes
                ),
            )),
            Some(Ok(Ok(bytes))) => Ok(bytes),
            Some(Ok(Err(failure))) => Err(classify::handler_failure(failure)),
            Some(Err(error)) if classify::pool_exhausted(&error) => {
                Err(classify::worker_busy(&error))
            }
            Some(Err(trap)) => Err(classify::trap(&trap, state, limits, hostcall_bytes)),
            None if cancel.is_cancelled() => Err(TaskFailure::new(
                FailureKind::Cancelled,
                "the task was cancelled while it ran",
            )),
            None => Err(classify::timeout(limits)),
        };
        // A failure after the host refused something the plugin was not
        // granted is reported as that refusal.
        let result = result.map_err(|failure| classify::after_denials(failure, &state.denied()));
        // Failure messages carry guest text: keep only their start.
        let result = result.map_err(|failure| TaskFailure {
            message: limits::cut(failure.message, limits.max_message_bytes),
            ..failure
        });
        Outcome {
            result,
            fuel_used,
            instantiate_time,
            total_time: started.elapsed(),
        }
    }
}

impl Sandbox {
    /// Takes one of `plugin`'s instances, if it has any left of its share;
    /// given back when the guard drops. Without a share per plugin nothing
    /// is counted (no lock, no allocation per task).
    fn share(&self, plugin: &str) -> Option<Share<'_>> {
        let Some(share) = self.config.max_instances_per_plugin else {
            return Some(Share { counted: None });
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let count = live.entry(plugin.to_string()).or_default();
        if *count >= share {
            return None;
        }
        *count += 1;
        Some(Share {
            counted: Some((self, plugin.to_string())),
        })
    }
}

/// One live instance of a plugin, counted against its share when the
/// sandbox has shares.
struct Share<'a> {
    counted: Option<(&'a Sandbox, String)>,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let Some((sandbox, plugin)) = &self.counted else {
            return;
        };
        let mut live = sandbox.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = live.get_mut(plugin) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.remove(plugin);
            }
        }
    }
}

/// Increments the engine's epoch at a fixed interval from a thread of its
/// own, until the engine is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmq-epoch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            // Only fails if the OS cannot create a thread at all, at start.
            .expect("the epoch ticker thread starts");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
