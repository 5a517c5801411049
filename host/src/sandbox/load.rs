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
        "the component is {size} bytes, over this worker's limit of {limit} bytes (--max-plugin-size)"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A function body is larger than the worker compiles.
    #[error(
        "function {index} of core module {module} is {size} bytes, over this worker's limit of {limit} bytes per function (--max-function-size): compiling it would take too long; split the function, or raise the limit"
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
        "compiling the component took longer than this worker's budget of {} (--compile-timeout): it is refused; make its code smaller, or raise the budget",
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
fn check_bytes(wasm: &[u8]) -> Result<(), LoadError> {
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
];

/// Checks that every interface the component imports is one every plugin
/// gets or one its manifest grants.
pub fn check_imports(
    engine: &Engine,
    component: &Component,
    grants: &super::Grants,
) -> Result<(), LoadError> {
    for (name, _) in component.component_type().imports(engine) {
        if ALWAYS_LINKED.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let (capability, granted) = if name.starts_with("wasi:http/") {
            ("http", grants.http.is_some())
        } else if name.starts_with("wasmq:plugin/kv@") {
            ("kv", grants.kv.is_some())
        } else if name.starts_with("wasmq:plugin/enqueue@") {
            ("enqueue", grants.enqueue.is_some())
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
