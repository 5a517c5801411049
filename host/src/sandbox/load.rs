//! Compiling a component and checking that it fits the `task-handler` world
//! before any task runs on it.
//!
//! Compile work is bounded ([`CompileBounds`]): Cranelift's time grows
//! faster than linearly with a function's size, so a component with a
//! function body above the limit is refused before compiling (every core
//! module nested in the component is checked), and a compile that outlasts
//! its deadline is refused.

use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::ComponentCache;

/// The version of the `wasmq:plugin` WIT package this host speaks.
pub const WORLD_VERSION: &str = "0.1.0";

/// The interface every plugin must export.
const HANDLER_INTERFACE: &str = "wasmq:plugin/handler";

/// Why a component cannot be loaded. Each message names the problem and
/// what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file ({0}); a plugin is a .wasm component built for wasm32-wasip2")]
    NotWasm(String),
    /// A core module where a component is needed.
    #[error(
        "a core WebAssembly module, not a component: build the plugin with `cargo build --target wasm32-wasip2` (which makes components), or wrap the module with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component does not validate or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not export the handler interface.
    #[error("{0}")]
    WrongWorld(String),
    /// The component targets another version of the WIT package.
    #[error(
        "the component targets wasmq:plugin@{found}, but this host speaks wasmq:plugin@{WORLD_VERSION}; rebuild it against a wasmq-guest release for {WORLD_VERSION}"
    )]
    VersionMismatch {
        /// The version the component exports.
        found: String,
    },
    /// The component imports something the host does not provide.
    #[error("{0}")]
    UnsatisfiedImport(String),
    /// The component imports a capability its manifest does not grant.
    #[error("{0}")]
    ImportNotGranted(String),
    /// The component is larger than the worker accepts.
    #[error(
        "the component is {size} bytes, over this worker's limit of {limit} bytes (its max-plugin-size)"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The component would create more core instances, memories or tables
    /// than the worker allows, or needs more memory as soon as it is
    /// instantiated than its cap.
    #[error("{0}")]
    TooMuch(String),
    /// A function body is larger than the worker compiles.
    #[error(
        "function {index} of core module {module} is {size} bytes, over this worker's limit of {limit} bytes per function (its max-function-size): compiling it would take too long; split the function, or raise the limit"
    )]
    FunctionTooLarge {
        /// The core module, counted from 0 in the order they appear.
        module: usize,
        /// The function, counted from 0 among the module's defined ones.
        index: usize,
        /// Its body's size, bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Compiling took longer than allowed.
    #[error(
        "compiling the component took longer than this worker's budget of {} (its compile-timeout): it is refused; make its code smaller, or raise the budget",
        humantime::format_duration(*.budget)
    )]
    CompileTimeout {
        /// The budget.
        budget: Duration,
    },
    /// The engine could not be set up.
    #[error("the Wasm engine could not be set up: {0}")]
    Engine(String),
}

/// What a component creates when it is instantiated, all its nested
/// components and core instances together, as its binary declares it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Core module instances.
    pub core_instances: u64,
    /// Linear memories defined (not imported) by those instances.
    pub memories: u64,
    /// Tables defined by those instances.
    pub tables: u64,
    /// The bytes of those memories and tables at their minimum sizes (a
    /// table element counted at `TABLE_ELEMENT_BYTES`).
    pub min_bytes: u64,
    /// The most elements any of those tables starts with.
    pub largest_table: u64,
}

impl Footprint {
    fn add(&mut self, other: &Footprint) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
        self.min_bytes = self.min_bytes.saturating_add(other.min_bytes);
        self.largest_table = self.largest_table.max(other.largest_table);
    }
}

/// A module or component being walked: what instantiating it creates, and
/// (for a component) the footprints of the modules and components in its
/// index spaces.
#[derive(Default)]
struct Frame {
    is_module: bool,
    creates: Footprint,
    modules: Vec<Footprint>,
    components: Vec<Footprint>,
}

/// What instantiating a module the walk cannot see (an import) creates, at
/// the least.
const UNSEEN_MODULE: Footprint = Footprint {
    core_instances: 1,
    memories: 0,
    tables: 0,
    min_bytes: 0,
    largest_table: 0,
};

/// Walks a component's binary (without compiling it) for what one
/// instance of it creates: each core instantiation counts its module's
/// defined memories and tables, and each component instantiation what the
/// nested component creates.
pub fn footprint(wasm: &[u8]) -> Result<Footprint, LoadError> {
    use wasmparser::{
        ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
        ComponentTypeRef, Encoding, Instance, Payload,
    };
    let invalid = |err: wasmparser::BinaryReaderError| LoadError::Invalid(format!("{err}"));
    let mut stack: Vec<Frame> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        if let Payload::Version { encoding, .. } = payload {
            stack.push(Frame {
                is_module: encoding == Encoding::Module,
                creates: if encoding == Encoding::Module {
                    UNSEEN_MODULE
                } else {
                    Footprint::default()
                },
                ..Frame::default()
            });
            continue;
        }
        if let Payload::End(_) = payload {
            let Some(done) = stack.pop() else { continue };
            match stack.last_mut() {
                // A definition creates nothing until it is instantiated.
                Some(parent) if done.is_module => parent.modules.push(done.creates),
                Some(parent) => parent.components.push(done.creates),
                None => return Ok(done.creates),
            }
            continue;
        }
        // Outer aliases look up the enclosing frames.
        if let Payload::ComponentAliasSection(reader) = payload {
            for alias in reader {
                let (is_module, found) = match alias.map_err(invalid)? {
                    ComponentAlias::Outer { kind, count, index } => {
                        let outer = stack
                            .len()
                            .checked_sub(1 + count as usize)
                            .and_then(|at| stack.get(at));
                        let index = index as usize;
                        match kind {
                            ComponentOuterAliasKind::CoreModule => (
                                true,
                                outer.and_then(|frame| frame.modules.get(index)).copied(),
                            ),
                            ComponentOuterAliasKind::Component => (
                                false,
                                outer.and_then(|frame| frame.components.get(index)).copied(),
                            ),
                            _ => continue,
                        }
                    }
                    ComponentAlias::InstanceExport { kind, .. } => match kind {
                        ComponentExternalKind::Module => (true, None),
                        ComponentExternalKind::Component => (false, None),
                        _ => continue,
                    },
                    ComponentAlias::CoreInstanceExport { .. } => continue,
                };
                let Some(frame) = stack.last_mut() else {
                    continue;
                };
                if is_module {
                    frame.modules.push(found.unwrap_or(UNSEEN_MODULE));
                } else {
                    frame.components.push(found.unwrap_or_default());
                }
            }
            continue;
        }
        let Some(frame) = stack.last_mut() else {
            continue;
        };
        match payload {
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16).min(32);
                    frame.creates.memories += 1;
                    frame.creates.min_bytes = frame
                        .creates
                        .min_bytes
                        .saturating_add(memory.initial.saturating_mul(page));
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let initial = table.map_err(invalid)?.ty.initial;
                    frame.creates.tables += 1;
                    frame.creates.largest_table = frame.creates.largest_table.max(initial);
                    frame.creates.min_bytes = frame
                        .creates
                        .min_bytes
                        .saturating_add(initial.saturating_mul(super::host::TABLE_ELEMENT_BYTES));
                }
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if let Instance::Instantiate { module_index, .. } = instance.map_err(invalid)? {
                        let module = frame
                            .modules
                            .get(module_index as usize)
                            .copied()
                            .unwrap_or(UNSEEN_MODULE);
                        frame.creates.add(&module);
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for instance in reader {
                    if let ComponentInstance::Instantiate {
                        component_index, ..
                    } = instance.map_err(invalid)?
                    {
                        let nested = frame
                            .components
                            .get(component_index as usize)
                            .copied()
                            .unwrap_or_default();
                        frame.creates.add(&nested);
                    }
                }
            }
            // Other entries of the module and component index spaces, so
            // that instantiations find the right ones.
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    match import.map_err(invalid)?.ty {
                        ComponentTypeRef::Module(_) => frame.modules.push(UNSEEN_MODULE),
                        ComponentTypeRef::Component(_) => {
                            frame.components.push(Footprint::default())
                        }
                        _ => {}
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    let index = export.index as usize;
                    match export.kind {
                        ComponentExternalKind::Module => {
                            let module = frame.modules.get(index).copied();
                            frame.modules.push(module.unwrap_or(UNSEEN_MODULE));
                        }
                        ComponentExternalKind::Component => {
                            let nested = frame.components.get(index).copied();
                            frame.components.push(nested.unwrap_or_default());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Err(LoadError::Invalid(
        "the component ends before its last section".into(),
    ))
}

/// Refuses a component that creates more core instances, memories or
/// tables than `config` allows one task.
pub fn check_counts(footprint: &Footprint, config: &super::SandboxConfig) -> Result<(), LoadError> {
    let checks = [
        (
            "core module instances",
            footprint.core_instances,
            config.max_core_instances_per_component,
            "max-component-instances",
        ),
        (
            "linear memories",
            footprint.memories,
            config.max_memories_per_component,
            "max-component-memories",
        ),
        (
            "tables",
            footprint.tables,
            config.max_tables_per_component,
            "max-component-tables",
        ),
    ];
    for (what, found, limit, flag) in checks {
        if found > u64::from(limit) {
            return Err(LoadError::TooMuch(format!(
                "the component creates {found} {what} per instance, over this worker's limit of {limit} (its {flag}); a plugin built with a wasmq-guest, componentize-py or componentize-js toolchain stays well within it"
            )));
        }
    }
    if footprint.largest_table > config.max_table_elements as u64 {
        return Err(LoadError::TooMuch(format!(
            "the component has a table of {} elements at its minimum, over this worker's limit of {} elements per table",
            footprint.largest_table, config.max_table_elements
        )));
    }
    Ok(())
}

/// Refuses a component whose memories and tables, at their minimum sizes,
/// already exceed the plugin's memory cap: every attempt would fail.
pub fn check_minimum(footprint: &Footprint, limits: &super::Limits) -> Result<(), LoadError> {
    if footprint.min_bytes > limits.memory_bytes {
        return Err(LoadError::TooMuch(format!(
            "the component's memories and tables take {} bytes as soon as it is instantiated, over the plugin's memory cap of {} bytes; raise `limits.memory` in its manifest (up to the worker's max-memory ceiling) or lower their minimum sizes",
            footprint.min_bytes, limits.memory_bytes
        )));
    }
    Ok(())
}

/// How much compile work a component may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBounds {
    /// The largest function body, bytes, in any core module of the
    /// component.
    pub max_function_bytes: usize,
    /// The longest a compile may take (a cached one costs nothing).
    pub timeout: Duration,
}

impl Default for CompileBounds {
    /// 1 MiB per function: 2.4 times the largest function of a
    /// componentize-py 0.25 component (CPython's interpreter loop, 427 KB);
    /// and 5 minutes per compile.
    fn default() -> Self {
        CompileBounds {
            max_function_bytes: 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Compiles component bytes, through the cache when given.
pub fn compile(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&ComponentCache>,
) -> Result<Component, LoadError> {
    check_bytes(wasm)?;
    let compile = || Component::new(engine, wasm);
    let compiled = match cache {
        Some(cache) => cache.load_or_compile(engine, wasm, compile),
        None => compile(),
    };
    compiled.map_err(|err| LoadError::Invalid(format!("{err:#}")))
}

/// Compiles component bytes within `bounds`, through the cache when given:
/// refuses a function body over the limit before compiling, and a compile
/// that outlasts the deadline. The compile runs on a thread of its own;
/// Cranelift cannot be interrupted, so one past its deadline finishes there
/// and its result is dropped (never cached), while the caller goes on.
pub fn compile_bounded(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&ComponentCache>,
    bounds: &CompileBounds,
) -> Result<Component, LoadError> {
    check_bytes(wasm)?;
    check_function_sizes(wasm, bounds.max_function_bytes)?;
    let budget = bounds.timeout;
    let timed_out = std::cell::Cell::new(false);
    let compile = || {
        let (engine, bytes) = (engine.clone(), wasm.to_vec());
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("wasmq-compile".into())
            .spawn(move || {
                // The receiver is gone if the deadline passed: nothing to do.
                let _ = sender.send(Component::new(&engine, &bytes));
            })
            .map_err(|err| wasmtime::format_err!("cannot start a compile thread: {err}"))?;
        match receiver.recv_timeout(budget) {
            Ok(compiled) => compiled,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                timed_out.set(true);
                Err(wasmtime::format_err!("compile budget exceeded"))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(wasmtime::format_err!("the compile thread stopped"))
            }
        }
    };
    let compiled = match cache {
        Some(cache) => cache.load_or_compile(engine, wasm, compile),
        None => compile(),
    };
    compiled.map_err(|err| {
        if timed_out.get() {
            LoadError::CompileTimeout { budget }
        } else {
            LoadError::Invalid(format!("{err:#}"))
        }
    })
}

/// Refuses a component with a function body over `limit` bytes, in any of
/// its core modules (nested components included).
pub fn check_function_sizes(wasm: &[u8], limit: usize) -> Result<(), LoadError> {
    let mut module = 0usize;
    let mut index = 0usize;
    let mut seen_module = false;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|err| LoadError::Invalid(err.to_string()))?;
        match payload {
            wasmparser::Payload::ModuleSection { .. } => {
                if seen_module {
                    module += 1;
                }
                seen_module = true;
                index = 0;
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > limit {
                    return Err(LoadError::FunctionTooLarge {
                        module,
                        index,
                        size,
                        limit,
                    });
                }
                index += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses bytes that are not a component at all.
pub(super) fn check_bytes(wasm: &[u8]) -> Result<(), LoadError> {
    if !wasm.starts_with(b"\0asm") {
        let shown: String = wasm
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(LoadError::NotWasm(if wasm.is_empty() {
            "the file is empty".into()
        } else {
            format!("it starts with bytes {shown}, not \\0asm")
        }));
    }
    if wasmparser::Parser::is_core_wasm(wasm) {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// Checks that the component exports `wasmq:plugin/handler` at the version
/// this host speaks.
pub fn check_world(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let wanted = format!("{HANDLER_INTERFACE}@{WORLD_VERSION}");
    if exports.contains(&wanted) {
        return Ok(());
    }
    if let Some(other) = exports
        .iter()
        .find_map(|name| name.strip_prefix(&format!("{HANDLER_INTERFACE}@")))
    {
        return Err(LoadError::VersionMismatch {
            found: other.to_string(),
        });
    }
    Err(LoadError::WrongWorld(format!(
        "the component does not export {wanted}, so it is not a wasmq plugin (it exports: {}); build it against the task-handler world, e.g. with the wasmq-guest crate",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    )))
}

/// Interfaces every plugin may import: their authority is cut to what the
/// grants allow at run time (no preopens, no sockets, granted environment
/// only, deterministic clocks and randomness unless granted).
const ALWAYS_LINKED: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "wasmq:plugin/log@",
    "wasmq:plugin/types@",
    "wasmq:plugin/flow@",
    "wasmq:plugin/progress@",
];

/// Checks that every interface the component imports is one every plugin
/// gets or one its manifest grants.
pub fn check_imports(
    engine: &Engine,
    component: &Component,
    grants: &super::Grants,
) -> Result<(), LoadError> {
    let names: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    check_import_names(&names, Granted::from(grants))
}

/// Which capabilities behind imports a plugin is granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Granted {
    /// `wasi:http`.
    pub http: bool,
    /// `wasmq:plugin/kv`.
    pub kv: bool,
    /// `wasmq:plugin/enqueue`.
    pub enqueue: bool,
}

impl From<&super::Grants> for Granted {
    fn from(grants: &super::Grants) -> Granted {
        Granted {
            http: grants.http.is_some(),
            kv: grants.kv.is_some(),
            enqueue: grants.enqueue.is_some(),
        }
    }
}

/// The names a component's top level imports, read from its binary
/// without compiling it.
pub fn import_names(wasm: &[u8]) -> Result<Vec<String>, LoadError> {
    use wasmparser::Payload;
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(|err| LoadError::Invalid(format!("{err}")))? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|err| LoadError::Invalid(format!("{err}")))?;
                    names.push(import.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Checks import names against the grants: each must be one every plugin
/// gets or one its manifest grants.
pub fn check_import_names(names: &[String], grants: Granted) -> Result<(), LoadError> {
    for name in names {
        if ALWAYS_LINKED.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let (capability, granted) = if name.starts_with("wasi:http/") {
            ("http", grants.http)
        } else if name.starts_with("wasmq:plugin/kv@") {
            ("kv", grants.kv)
        } else if name.starts_with("wasmq:plugin/enqueue@") {
            ("enqueue", grants.enqueue)
        } else {
            return Err(LoadError::UnsatisfiedImport(format!(
                "the component imports {name}, which this host does not provide to plugins (it provides WASI 0.2, wasi:http, and wasmq:plugin@{WORLD_VERSION})"
            )));
        };
        if !granted {
            return Err(LoadError::ImportNotGranted(format!(
                "the component imports {name}, but its manifest does not grant `{capability}`: add a [capabilities.{capability}] section, or remove the code that uses it"
            )));
        }
    }
    Ok(())
}

/// Explains a link failure by listing the component's imports.
pub fn unsatisfied_import(
    engine: &Engine,
    component: &Component,
    error: wasmtime::Error,
) -> LoadError {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    LoadError::UnsatisfiedImport(format!(
        "the component imports something this host does not provide: {}; wasmq gives plugins wasmq:plugin/log@{WORLD_VERSION} and WASI 0.2 (the component imports: {})",
        first_line(&format!("{error:#}")),
        imports.join(", ")
    ))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
