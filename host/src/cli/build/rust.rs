//! Building a Rust plugin: `cargo build --release --target wasm32-wasip2`.
//! The guest SDK's `plugin!` macro has already embedded the manifest.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};

/// Builds the crate in `dir`; returns its component's path (copied to
/// `out` when given).
pub(crate) fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains("wasm32-wasip2"))
        .unwrap_or(true);
    if !installed {
        bail!(
            "Rust's wasm32-wasip2 target is not installed: run `rustup target add wasm32-wasip2`"
        );
    }
    eprintln!("building {} (Rust)", dir.display());
    let mut child = Command::new(&cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| {
            anyhow!("cannot run cargo ({err}): install Rust from https://rustup.rs, then `rustup target add wasm32-wasip2`")
        })?;
    let mut components = Vec::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            components.extend(
                files
                    .iter()
                    .filter_map(|file| file.as_str())
                    .filter(|file| file.ends_with(".wasm"))
                    .map(PathBuf::from),
            );
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); its output is above");
    }
    let component = components.pop().ok_or_else(|| {
        anyhow!(
            "cargo built no .wasm: a plugin crate is a library with crate-type = [\"cdylib\"] (see `wasmq new plugin NAME --lang rust`)"
        )
    })?;
    match out {
        Some(out) => {
            std::fs::copy(&component, out)
                .with_context(|| format!("copying the component to {}", out.display()))?;
            Ok(out.to_path_buf())
        }
        None => Ok(component),
    }
}
