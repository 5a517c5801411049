/*!
Write wasmq task handlers in Rust.

A wasmq plugin is a WebAssembly component that handles one or more task
types. This crate gives plugin authors everything the component needs: the
bindings to the `wasmq:plugin` WIT package, a [`Handler`] trait with typed
payloads, logging into the host, and the [`plugin!`] macro that exports the
handler and embeds the plugin's manifest (its name, version and task types)
into the component.

# Brief overview
Implement [`Handler`] for a type of yours: choose a `Payload` type that the
task's JSON payload decodes into and an `Output` type that is encoded to JSON
as the task's result. Return a [`Failure`] to ask the host to retry later or
to give up now. Then call [`plugin!`] once.

# Example
A complete plugin: `Cargo.toml` declares a `cdylib` that depends on this
crate and `serde`; `src/lib.rs` is:

```no_run
use serde::{Deserialize, Serialize};
use wasmq_guest::{Failure, Handler, Task};

#[derive(Deserialize)]
struct Greet {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    text: String,
}

struct Greeter;

impl Handler for Greeter {
    type Payload = Greet;
    type Output = Greeting;

    fn handle(task: &Task, payload: Greet) -> Result<Greeting, Failure> {
        if payload.name.is_empty() {
            return Err(Failure::give_up("an empty name can never be greeted"));
        }
        wasmq_guest::info!("greeting {} on attempt {}", payload.name, task.attempt);
        Ok(Greeting { text: format!("hello, {}", payload.name) })
    }
}

wasmq_guest::plugin! {
    handler: Greeter,
    name: "greeter",
    task_types: ["greet"],
}
```

Build it with `cargo build --release --target wasm32-wasip2`; the
`.wasm` file under `target/wasm32-wasip2/release/` is the plugin. Give it to a
worker with `wasmq worker --plugins DIR`.

# What the host does with a [`Failure`]
- [`Failure::Retry`]: the task is retried with backoff while it has retries
  left, then archived with the message as its last error.
- [`Failure::GiveUp`]: the task is archived at once.
- A payload that does not decode into `Payload` is reported as a bad payload
  and archived at once, naming the type it should have been.

A panic traps the instance: the host records the panic message and retries.
*/
#![deny(missing_docs)]

mod capabilities;
pub mod http;

use std::fmt;

pub use capabilities::{CapabilityError, FollowUp, enqueue, flow, kv, progress};
use serde::Serialize;
use serde::de::DeserializeOwned;

// The export macro expands in plugin crates, which reach the bindings and the
// runtime through this crate's name.
extern crate self as wasmq_guest;

/// Generated bindings for the `wasmq:plugin` WIT package. Plugin code uses the
/// re-exports at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "task-handler",
        pub_export_macro: true,
        default_bindings_module: "::wasmq_guest::bindings",
        runtime_path: "::wasmq_guest::__private::wit_bindgen::rt",
    });
}

use bindings::exports::wasmq::plugin::handler as wit;
pub use bindings::wasmq::plugin::log::Level;

/// The task being handled, without its payload (which the handler receives
/// already decoded).
#[derive(Debug, Clone)]
pub struct Task {
    /// The task's id, unique within its queue.
    pub id: String,
    /// The task type the producer gave, such as `thumbnail:make`.
    pub task_type: String,
    /// The queue the task was taken from.
    pub queue: String,
    /// Which attempt this is: 1 on the first run, 2 on the first retry...
    pub attempt: u32,
    /// How many retries the task may have after its first attempt.
    pub max_retry: u32,
}

impl Task {
    /// True when a [`Failure::Retry`] returned now would archive the task
    /// instead of retrying it.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt > self.max_retry
    }
}

/// Why a handler produced no result, and what the host should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: the host retries with backoff until the task runs out
    /// of retries.
    Retry(String),
    /// No retry can help: the host archives the task now.
    GiveUp(String),
}

impl Failure {
    /// A failure to retry later, with a message for the task's last error.
    pub fn retry(message: impl fmt::Display) -> Self {
        Failure::Retry(message.to_string())
    }

    /// A failure that archives the task now, with a message for its last
    /// error.
    pub fn give_up(message: impl fmt::Display) -> Self {
        Failure::GiveUp(message.to_string())
    }
}

/// Any error can be returned with `?`: it becomes a [`Failure::Retry`] whose
/// message is the error and its sources.
impl<E: std::error::Error> From<E> for Failure {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure::Retry(message)
    }
}

/// A task handler: the one trait a plugin implements.
pub trait Handler {
    /// What the task's JSON payload is decoded into. Use
    /// `serde_json::Value` to take any JSON.
    type Payload: DeserializeOwned;
    /// What the handler returns; encoded as JSON, it becomes the task's
    /// result.
    type Output: Serialize;

    /// Handles one task.
    fn handle(task: &Task, payload: Self::Payload) -> Result<Self::Output, Failure>;
}

/// Writes one line to the host's log. The host tags it with the plugin and
/// the task, and caps the volume a task may log.
pub fn log(level: Level, message: &str) {
    bindings::wasmq::plugin::log::log(level, message);
}

/// Logs at [`Level::Trace`], formatting like `format!`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, &format!($($arg)+)) };
}

/// Logs at [`Level::Debug`], formatting like `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &format!($($arg)+)) };
}

/// Logs at [`Level::Info`], formatting like `format!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &format!($($arg)+)) };
}

/// Logs at [`Level::Warn`], formatting like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &format!($($arg)+)) };
}

/// Logs at [`Level::Error`], formatting like `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &format!($($arg)+)) };
}

/// Exports a [`Handler`] as the plugin's entry point and embeds its manifest.
///
/// ```text
/// wasmq_guest::plugin! {
///     handler: Thumbnailer,          // the type implementing Handler
///     name: "thumbnail",             // the plugin's name
///     task_types: ["thumbnail:make"],// the task types it handles
///     manifest: "wasmq.toml",        // optional: limits and capabilities
/// }
/// ```
///
/// The manifest is written into the component's `wasmq-manifest` custom
/// section as TOML: the name, the crate's version and the task types,
/// followed by the contents of the optional `manifest` file (relative to the
/// crate's directory), which holds the `[limits]` the plugin asks for and
/// the `[capabilities]` it needs:
///
/// ```toml
/// [limits]
/// fuel = 20_000_000_000      # per attempt
/// timeout = "30s"
/// memory = "64MiB"
/// max_result = "256KiB"
/// max_log = "16KiB"
///
/// [capabilities]
/// clocks = true              # real clocks (else a fixed, deterministic clock)
/// random = true              # real randomness (else deterministic, per task)
/// env = ["REGION"]           # values the operator gives as WASMQ_PLUGIN_ENV_REGION
/// secrets = ["API_KEY"]      # values the operator gives as WASMQ_PLUGIN_SECRET_API_KEY
///
/// [capabilities.http]
/// allow = ["api.example.com", "127.0.0.1:8080"]
/// max_response = "1MiB"
/// timeout = "10s"
///
/// [capabilities.enqueue]
/// max_per_task = 10
/// task_types = ["email:send"]  # empty: any type
///
/// [capabilities.kv]
/// max_value = "64KiB"
/// max_keys = 10000
/// ```
///
/// The host reads the manifest when it loads the plugin, routes the task
/// types here, and grants exactly what it lists: a component that imports
/// an interface its manifest does not grant is refused at load time.
#[macro_export]
macro_rules! plugin {
    (
        handler: $handler:ty,
        name: $name:literal,
        task_types: [$($task_type:literal),+ $(,)?]
        $(, manifest: $manifest:literal)? $(,)?
    ) => {
        const _: () = {
            struct __WasmqPlugin;

            impl $crate::bindings::exports::wasmq::plugin::handler::Guest for __WasmqPlugin {
                fn handle(
                    task: $crate::bindings::exports::wasmq::plugin::handler::Task,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<u8>,
                    $crate::bindings::exports::wasmq::plugin::handler::Failure,
                > {
                    $crate::__private::handle::<$handler>(task)
                }
            }

            $crate::bindings::export!(__WasmqPlugin);

            const __MANIFEST: &str = concat!(
                "name = \"", $name, "\"\n",
                "version = \"", env!("CARGO_PKG_VERSION"), "\"\n",
                "task_types = [", $("\"", $task_type, "\", ",)+ "]\n",
                $("\n", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $manifest)),)?
            );

            #[unsafe(link_section = "wasmq-manifest")]
            #[used]
            static __WASMQ_MANIFEST: [u8; __MANIFEST.len()] =
                $crate::__private::bytes_of::<{ __MANIFEST.len() }>(__MANIFEST);

            // What built it, for `wasmq plugin inspect`.
            #[unsafe(link_section = "wasmq-build")]
            #[used]
            static __WASMQ_BUILD: [u8; $crate::__private::BUILD_INFO.len()] =
                $crate::__private::bytes_of::<{ $crate::__private::BUILD_INFO.len() }>(
                    $crate::__private::BUILD_INFO,
                );
        };
    };
}

/// Support for the [`plugin!`] macro; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use super::{Failure, Handler, Task, wit};

    /// The `wasmq-build` section of a Rust plugin: its language and this
    /// SDK's version.
    pub const BUILD_INFO: &str = concat!(
        "language = \"rust\"\ntoolchain = \"wasmq-guest ",
        env!("CARGO_PKG_VERSION"),
        "\"\n"
    );

    /// Copies a string into a fixed-size array, so it can be a static placed
    /// in a custom section.
    pub const fn bytes_of<const N: usize>(text: &str) -> [u8; N] {
        let bytes = text.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }

    /// Decodes the payload, runs the handler and encodes its output.
    pub fn handle<H: Handler>(task: wit::Task) -> Result<Vec<u8>, wit::Failure> {
        let payload: H::Payload = serde_json::from_slice(&task.payload).map_err(|err| {
            wit::Failure::BadPayload(format!(
                "the payload of task type {:?} does not decode into {}: {err}",
                task.task_type,
                std::any::type_name::<H::Payload>(),
            ))
        })?;
        let task = Task {
            id: task.id,
            task_type: task.task_type,
            queue: task.queue,
            attempt: task.attempt,
            max_retry: task.max_retry,
        };
        match H::handle(&task, payload) {
            Ok(output) => serde_json::to_vec(&output).map_err(|err| {
                wit::Failure::GiveUp(format!(
                    "the handler's result is not encodable as JSON: {err}"
                ))
            }),
            Err(Failure::Retry(message)) => Err(wit::Failure::Retry(message)),
            Err(Failure::GiveUp(message)) => Err(wit::Failure::GiveUp(message)),
        }
    }
}
