//! `wasmq plugin build [DIR]`: one command that builds a plugin in Rust,
//! Python or JavaScript/TypeScript into a component carrying its manifest,
//! and prints the component's path.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2`; the guest SDK's
//!   `plugin!` macro embeds the manifest.
//! - Python: componentize-py against a world made from the manifest
//!   (`world.rs`), with the `wasmq` package (compiled into this binary, so
//!   the SDK always matches the host) and a generated entry module.
//! - JavaScript / TypeScript: jco's `componentize` (componentize-js), the
//!   same way, bundling the plugin's modules with the SDK.
//!
//! For Python and JavaScript the manifest is `wasmq.toml` as a whole (name,
//! version, task types, limits, capabilities); it is checked as a worker
//! would check it before anything is built, and appended to the component
//! as its `wasmq-manifest` section, with a `wasmq-build` section naming the
//! language and toolchain.

mod js;
mod python;
mod rust;
mod world;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::plugins::sections::{self, BUILD_SECTION, BuildInfo, Language};
use crate::plugins::{Ceilings, MANIFEST_SECTION, Manifest};
use crate::sandbox::Limits;
use anyhow::{Context, anyhow, bail};
use clap::Args;

use super::parse::Failure;

/// Arguments of `wasmq plugin build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The plugin's directory (default: the current one).
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// The plugin's language, when its directory does not say (a
    /// Cargo.toml means Rust, app.py Python, package.json or
    /// src/index.{ts,js} JavaScript).
    #[arg(long, value_parser = parse_language, value_name = "rust|python|js")]
    pub(crate) lang: Option<Language>,
    /// Where to write the component (default: target/wasmq/NAME.wasm in
    /// the plugin's directory; for Rust, cargo's own output).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// Parses `rust`, `python` or `js` (and a few obvious spellings).
pub(crate) fn parse_language(text: &str) -> Result<Language, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "rust" | "rs" => Ok(Language::Rust),
        "python" | "py" => Ok(Language::Python),
        "js" | "javascript" | "ts" | "typescript" | "node" => Ok(Language::JavaScript),
        other => Err(format!(
            "{other:?} is not a plugin language: choose rust, python or js (TypeScript is js)"
        )),
    }
}

/// Runs `wasmq plugin build`.
pub(crate) async fn run(args: BuildArgs) -> Result<(), Failure> {
    let dir = std::fs::canonicalize(&args.dir).map_err(|err| {
        anyhow!(
            "{} is not a plugin directory ({err}); run `wasmq new plugin NAME --lang rust|python|js` to make one",
            args.dir.display()
        )
    })?;
    let language = match args.lang {
        Some(language) => language,
        None => detect(&dir)?,
    };
    let path = tokio::task::spawn_blocking(move || build(&dir, language, args.out.as_deref()))
        .await
        .map_err(|err| anyhow!("the build stopped: {err}"))??;
    // The path alone on stdout, for scripts: `wasmq plugin deploy $(wasmq plugin build)`.
    println!("{}", path.display());
    Ok(())
}

/// Builds the plugin in `dir` and returns its component's path.
pub(crate) fn build(dir: &Path, language: Language, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    if language == Language::Rust {
        return rust::build(dir, out);
    }
    let (manifest, text) = read_manifest(dir)?;
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => dir
            .join("target")
            .join("wasmq")
            .join(format!("{}.wasm", manifest.name)),
    };
    let work = tempfile::Builder::new()
        .prefix("wasmq-build-")
        .tempdir()
        .context("creating a build directory")?;
    let raw = work.path().join("component.wasm");
    eprintln!(
        "building {} {} ({language}) in {}",
        manifest.name,
        manifest.version,
        dir.display()
    );
    let toolchain = match language {
        Language::Python => python::build(dir, &manifest, work.path(), &raw)?,
        Language::JavaScript => js::build(dir, &manifest, work.path(), &raw)?,
        Language::Rust => unreachable!("Rust is built above"),
    };
    let wasm = std::fs::read(&raw)
        .with_context(|| format!("the toolchain wrote no component at {}", raw.display()))?;
    let info = BuildInfo {
        language,
        toolchain,
    };
    let built = sections::append(
        &wasm,
        &[
            (MANIFEST_SECTION, text.as_bytes()),
            (BUILD_SECTION, info.to_toml().as_bytes()),
        ],
    )?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&out, built).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "built {} ({:.1} MB)",
        out.display(),
        wasm.len() as f64 / 1e6
    );
    Ok(out)
}

/// The language of the plugin in `dir`, from the files it holds.
pub(crate) fn detect(dir: &Path) -> anyhow::Result<Language> {
    let has = |name: &str| dir.join(name).is_file();
    let mut found = Vec::new();
    if has("Cargo.toml") {
        found.push(Language::Rust);
    }
    if has("app.py") {
        found.push(Language::Python);
    }
    if js::entry(dir).is_some() {
        found.push(Language::JavaScript);
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "{} holds no plugin: expected a Cargo.toml (Rust), an app.py (Python) or a src/index.ts or src/index.js (JavaScript); `wasmq new plugin NAME --lang rust|python|js` makes one",
            dir.display()
        ),
        several => bail!(
            "{} looks like a plugin in several languages ({}): say which with --lang",
            dir.display(),
            several
                .iter()
                .map(|language| language.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads `wasmq.toml` and checks it as a worker would (with the default
/// limits and ceilings), so that a manifest no worker would take fails the
/// build instead of the deploy.
fn read_manifest(dir: &Path) -> anyhow::Result<(Manifest, String)> {
    let path = dir.join("wasmq.toml");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        anyhow!(
            "cannot read the plugin's manifest {} ({err}): a Python or JavaScript plugin describes itself there (name, version, task_types, [limits], [capabilities])",
            path.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&text)
        .map_err(|err| anyhow!("{} is not a valid manifest: {err}", path.display()))?;
    let refuse = |err: crate::plugins::PluginError| anyhow!("{}: {err}", path.display());
    manifest.check().map_err(refuse)?;
    manifest
        .limits(&Limits::default(), &Ceilings::default())
        .map_err(refuse)?;
    manifest.grants(|_| None).map_err(refuse)?;
    Ok((manifest, text))
}

/// Runs a toolchain command, streaming its output to stderr (stdout is
/// the component's path alone), and fails with `what` and its exit status
/// when it fails.
fn run_tool(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its output is above");
    }
    Ok(())
}

/// The first line a tool prints for `--version`, if it runs.
fn version_of(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

/// `name` found on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
