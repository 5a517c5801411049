//! `wasmq new plugin NAME`: a plugin crate on the guest SDK that builds as
//! it is, with a manifest that shows every limit and capability.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::parse::Failure;

/// The `wasmq new` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NewCommand {
    /// Create a plugin crate: `cargo build --release --target
    /// wasm32-wasip2` in it makes a component to deploy.
    Plugin(PluginArgs),
}

/// Arguments of `wasmq new plugin`.
#[derive(Debug, Args)]
pub(crate) struct PluginArgs {
    /// The plugin's name (letters, digits, `-`, `_`); also its crate's name
    /// and the task type it starts with.
    pub(crate) name: String,
    /// Where to create the crate (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The wasmq-guest crate to depend on (default: the guest-sdk of the
    /// wasmq source tree this binary was built from).
    #[arg(long, value_name = "PATH")]
    pub(crate) sdk: Option<PathBuf>,
}

/// Runs `wasmq new`.
pub(crate) async fn run(command: NewCommand) -> Result<(), Failure> {
    let NewCommand::Plugin(args) = command;
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !valid {
        return Err(anyhow::anyhow!(
            "plugin name {name:?} must start with a letter and hold only letters, digits, '-' and '_' (at most 64)"
        )
        .into());
    }
    let sdk = match &args.sdk {
        Some(sdk) => sdk.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|sdk| sdk.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the guest SDK is not at {}: pass --sdk PATH to the wasmq-guest crate (guest-sdk/ in the wasmq source)",
                sdk.display()
            )
        })?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(anyhow::anyhow!(
            "{} already exists and is not empty: pick another --dir",
            dir.display()
        )
        .into());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let lib = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("wasmq.toml", MANIFEST.to_string()),
        ("src/lib.rs", lib_rs(name)),
        ("README.md", readme(name, &lib)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, contents) in files {
        std::fs::write(dir.join(file), contents)
            .with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    println!("created plugin {name:?} in {}", dir.display());
    println!(
        "  build:   cd {} && cargo build --release --target wasm32-wasip2",
        dir.display()
    );
    println!("  deploy:  wasmq plugin deploy target/wasm32-wasip2/release/{lib}.wasm");
    println!("  try:     wasmq enqueue {name} '{{\"name\": \"world\"}}'");
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# A cdylib built for wasm32-wasip2 is a WebAssembly component: the plugin.
crate-type = ["cdylib"]

[dependencies]
wasmq-guest = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
strip = "debuginfo"

# A crate of its own, not part of an enclosing workspace.
[workspace]
"#,
        sdk = sdk.display()
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! The `{name}` plugin: handles task type `{name}`.
//!
//! Payload: `{{"name": "world"}}`. Result: a greeting and the plugin's
//! version. Change `Input`, `Output` and `handle` to do real work; add task
//! types to `task_types` below (`task.task_type` tells them apart).

use serde::{{Deserialize, Serialize}};
use wasmq_guest::{{Failure, Handler, Task}};

/// What a task's JSON payload decodes into.
#[derive(Deserialize)]
struct Input {{
    name: String,
}}

/// What the handler returns: stored, as JSON, as the task's result.
#[derive(Serialize)]
struct Output {{
    greeting: String,
    version: &'static str,
}}

struct Plugin;

impl Handler for Plugin {{
    type Payload = Input;
    type Output = Output;

    fn handle(task: &Task, input: Input) -> Result<Output, Failure> {{
        if input.name.is_empty() {{
            // Archived at once: retrying cannot fix the input.
            return Err(Failure::give_up("`name` is empty"));
        }}
        wasmq_guest::info!("greeting {{}} (attempt {{}})", input.name, task.attempt);
        Ok(Output {{
            greeting: format!("hello, {{}}", input.name),
            version: env!("CARGO_PKG_VERSION"),
        }})
    }}
}}

wasmq_guest::plugin! {{
    handler: Plugin,
    name: "{name}",
    task_types: ["{name}"],
    manifest: "wasmq.toml",
}}
"#
    )
}

/// The manifest template: every limit and capability, explained.
const MANIFEST: &str = r#"# The plugin's manifest, embedded into its component by `plugin!`.
# The host enforces it: the plugin gets this budget, and only the
# capabilities listed. Unset limits get the worker's defaults.

[limits]
# fuel = 100_000_000_000    # about one unit per Wasm instruction
timeout = "60s"              # per attempt
# memory = "128MiB"
# max_result = "1MiB"
# max_log = "64KiB"

[capabilities]
# clocks = true              # real clocks (otherwise a fixed, deterministic clock)
# random = true              # real randomness (otherwise seeded by the task id)
# env = ["REGION"]           # the worker's WASMQ_PLUGIN_ENV_REGION (needs its --allow-env PLUGIN=REGION)
# secrets = ["API_KEY"]      # the worker's WASMQ_PLUGIN_SECRET_API_KEY (needs --allow-secret PLUGIN=API_KEY)

# [capabilities.http]        # wasmq_guest::http, to these hosts only
# allow = ["api.example.com"]
# max_response = "1MiB"
# timeout = "10s"

# [capabilities.kv]          # wasmq_guest::kv, a store of the plugin's own
# max_value = "64KiB"
# max_keys = 10000

# [capabilities.enqueue]     # wasmq_guest::enqueue, follow-up tasks
# max_per_task = 10
# task_types = ["email:send"]
"#;

fn readme(name: &str, lib: &str) -> String {
    format!(
        r#"# {name}

A wasmq plugin. `src/lib.rs` is the handler; `wasmq.toml` is its manifest
(limits and capabilities).

```sh
cargo build --release --target wasm32-wasip2         # target/wasm32-wasip2/release/{lib}.wasm
wasmq plugin inspect target/wasm32-wasip2/release/{lib}.wasm
wasmq plugin deploy target/wasm32-wasip2/release/{lib}.wasm
wasmq enqueue {name} '{{"name": "world"}}'
```
"#
    )
}
