//! `wasmq new plugin NAME [--lang rust|python|js]`: a plugin project on the
//! language's guest SDK that builds as it is (`wasmq plugin build`), with a
//! manifest that shows every limit and capability, and a README of three
//! lines: build, deploy, enqueue.

use std::path::{Path, PathBuf};

use crate::plugins::Language;
use anyhow::Context;
use clap::{Args, Subcommand};

use super::parse::Failure;

/// The `wasmq new` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NewCommand {
    /// Create a plugin project in Rust, Python or JavaScript/TypeScript:
    /// `wasmq plugin build` in it makes a component to deploy.
    Plugin(PluginArgs),
}

/// Arguments of `wasmq new plugin`.
#[derive(Debug, Args)]
pub(crate) struct PluginArgs {
    /// The plugin's name (letters, digits, `-`, `_`); also its package's
    /// name and the task type it starts with.
    pub(crate) name: String,
    /// The language: rust (a crate on wasmq-guest), python (app.py, built
    /// with componentize-py) or js (src/index.ts, TypeScript or plain
    /// JavaScript, built with jco and componentize-js).
    #[arg(long, default_value = "rust", value_parser = super::build::parse_language, value_name = "rust|python|js")]
    pub(crate) lang: Language,
    /// Where to create the project (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Rust: the wasmq-guest crate to depend on; js: the wasmq package, for
    /// its types (default: guest-sdk/ of the wasmq source tree this binary
    /// was built from). Python needs none: the build brings the SDK.
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
    let files = match args.lang {
        Language::Rust => {
            let sdk = sdk_dir(&args.sdk, "rust", "Cargo.toml", "the wasmq-guest crate")?;
            let lib = name.replace('-', "_");
            vec![
                ("Cargo.toml", cargo_toml(name, &sdk)),
                ("wasmq.toml", manifest(Language::Rust, name)),
                ("src/lib.rs", lib_rs(name)),
                (
                    "README.md",
                    readme(name, &format!("target/wasm32-wasip2/release/{lib}.wasm")),
                ),
                (".gitignore", "/target\n".to_string()),
            ]
        }
        Language::Python => vec![
            ("wasmq.toml", manifest(Language::Python, name)),
            ("app.py", app_py(name)),
            (
                "README.md",
                readme(name, &format!("target/wasmq/{name}.wasm")),
            ),
            (".gitignore", "/target\n__pycache__/\n".to_string()),
        ],
        Language::JavaScript => {
            let sdk = sdk_dir(
                &args.sdk,
                "js",
                "package.json",
                "the wasmq JavaScript package",
            )
            .ok();
            vec![
                ("wasmq.toml", manifest(Language::JavaScript, name)),
                ("package.json", package_json(name, sdk.as_deref())),
                ("src/index.ts", index_ts(name)),
                ("tsconfig.json", TSCONFIG.to_string()),
                (
                    "README.md",
                    readme(name, &format!("target/wasmq/{name}.wasm")),
                ),
                (".gitignore", "/target\nnode_modules/\n".to_string()),
            ]
        }
    };
    for (file, contents) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let wasm = match args.lang {
        Language::Rust => format!(
            "target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ),
        _ => format!("target/wasmq/{name}.wasm"),
    };
    println!(
        "created plugin {name:?} ({}) in {}",
        args.lang,
        dir.display()
    );
    println!("  build:   cd {} && wasmq plugin build", dir.display());
    println!("  deploy:  wasmq plugin deploy {wasm}");
    println!("  try:     wasmq enqueue {name} '{{\"name\": \"world\"}}'");
    Ok(())
}

/// The SDK of language `lang` under the source tree's guest-sdk/ (or
/// `--sdk`), checked by a file it must hold.
fn sdk_dir(
    given: &Option<PathBuf>,
    lang: &str,
    marker: &str,
    what: &str,
) -> Result<PathBuf, Failure> {
    let sdk = match given {
        Some(sdk) => sdk.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../guest-sdk/{lang}")),
    };
    std::fs::canonicalize(&sdk)
        .ok()
        .filter(|sdk| sdk.join(marker).is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{what} is not at {}: pass --sdk PATH to it (guest-sdk/{lang} in the wasmq source)",
                sdk.display()
            )
            .into()
        })
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

/// The manifest template: every limit and capability, explained. A Rust
/// plugin's name, version and task types come from its `plugin!` macro and
/// Cargo.toml; a Python or JavaScript plugin's from here.
fn manifest(lang: Language, name: &str) -> String {
    let (head, memory, http, kv, enqueue) = match lang {
        Language::Rust => (
            "# The plugin's manifest, embedded into its component by `plugin!` (which adds\n\
             # its name, version and task types).\n"
                .to_string(),
            "# memory = \"128MiB\"",
            "wasmq_guest::http",
            "wasmq_guest::kv",
            "wasmq_guest::enqueue",
        ),
        Language::Python => (
            format!(
                "# The plugin's manifest, embedded into its component by `wasmq plugin build`.\n\
                 name = \"{name}\"\n\
                 version = \"0.1.0\"\n\
                 task_types = [\"{name}\"]          # each needs a handler in app.py\n"
            ),
            "# memory = \"256MiB\"           # the default for Python; an instance starts at about 13 MiB",
            "wasmq.http",
            "wasmq.kv",
            "wasmq.enqueue",
        ),
        Language::JavaScript => (
            format!(
                "# The plugin's manifest, embedded into its component by `wasmq plugin build`.\n\
                 name = \"{name}\"\n\
                 version = \"0.1.0\"\n\
                 task_types = [\"{name}\"]          # each needs a handler in src/index.ts\n"
            ),
            "# memory = \"256MiB\"           # the default for JavaScript; an instance starts at about 10 MiB",
            "fetch()",
            "kv from \"wasmq\"",
            "enqueue from \"wasmq\"",
        ),
    };
    format!(
        r#"{head}# The host enforces it: the plugin gets this budget, and only the
# capabilities listed. Unset limits get the worker's defaults.

[limits]
# fuel = 100_000_000_000    # about one unit per Wasm instruction
timeout = "60s"              # per attempt
{memory}
# max_result = "1MiB"
# max_log = "64KiB"          # log lines, stdout and stderr together

[capabilities]
# clocks = true              # real clocks (otherwise a fixed, deterministic clock)
# random = true              # real randomness (otherwise seeded by the task id)
# env = ["REGION"]           # the worker's WASMQ_PLUGIN_ENV_REGION (needs its --allow-env PLUGIN=REGION)
# secrets = ["API_KEY"]      # the worker's WASMQ_PLUGIN_SECRET_API_KEY (needs --allow-secret PLUGIN=API_KEY)

# [capabilities.http]        # {http}, to these hosts only
# allow = ["api.example.com"]
# max_response = "1MiB"
# timeout = "10s"

# [capabilities.kv]          # {kv}, a store of the plugin's own
# max_value = "64KiB"
# max_keys = 10000

# [capabilities.enqueue]     # {enqueue}, follow-up tasks
# max_per_task = 10
# task_types = ["email:send"]
"#
    )
}

/// A README of three lines: build, deploy, enqueue.
fn readme(name: &str, wasm: &str) -> String {
    format!(
        r#"# {name}

    wasmq plugin build                     # makes {wasm}
    wasmq plugin deploy {wasm}   # hot-loads it into every running worker
    wasmq enqueue {name} '{{"name": "world"}}'   # runs a task; `wasmq task show ID` shows its result
"#
    )
}

fn app_py(name: &str) -> String {
    format!(
        r#""""The `{name}` plugin: handles task type `{name}`.

Payload: {{"name": "world"}}. Result: a greeting and the plugin's version.
Change `Input` and `greet` to do real work; register more task types with
`@handler("...")` and list them in wasmq.toml's `task_types`.
"""

from dataclasses import dataclass

from wasmq import Failure, Task, handler, log


@dataclass
class Input:
    """What a task's JSON payload decodes into (else: archived as bad-payload)."""

    name: str


@handler("{name}")
def greet(task: Task, payload: Input) -> dict:
    if not payload.name:
        # Archived at once: retrying cannot fix the input.
        raise Failure.give_up("`name` is empty")
    log.info(f"greeting {{payload.name}} (attempt {{task.attempt}})")
    # Stored, as JSON, as the task's result.
    return {{"greeting": f"hello, {{payload.name}}", "version": "0.1.0"}}
"#
    )
}

fn index_ts(name: &str) -> String {
    format!(
        r#"// The `{name}` plugin: handles task type `{name}`.
//
// Payload: {{"name": "world"}}. Result: a greeting and the plugin's version.
// Change `Input` and the handler to do real work; register more task types
// with `handler("...", fn)` and list them in wasmq.toml's `task_types`.

import {{ Failure, handler, log, type Task }} from "wasmq";

/** What a task's JSON payload decodes into. */
interface Input {{
  name: string;
}}

handler("{name}", (task: Task, payload: Input) => {{
  if (!payload.name) {{
    // Archived at once: retrying cannot fix the input.
    throw Failure.giveUp("`name` is empty");
  }}
  log.info(`greeting ${{payload.name}} (attempt ${{task.attempt}})`);
  // Stored, as JSON, as the task's result.
  return {{ greeting: `hello, ${{payload.name}}`, version: "0.1.0" }};
}});
"#
    )
}

fn package_json(name: &str, sdk: Option<&Path>) -> String {
    let sdk = match sdk {
        Some(sdk) => format!(
            ",\n  \"dependencies\": {{\n    \"wasmq\": \"file:{}\"\n  }}",
            sdk.display()
        ),
        None => String::new(),
    };
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/jco": "1.35.0"
  }},
  "overrides": {{
    "@bytecodealliance/preview2-shim": "0.25.0"
  }}{sdk}
}}
"#
    )
}

/// For editors: `wasmq plugin build` bundles without type-checking.
const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "ES2022",
    "moduleResolution": "bundler",
    "strict": true,
    "noEmit": true
  },
  "include": ["src"]
}
"#;
