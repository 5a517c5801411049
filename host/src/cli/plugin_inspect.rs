//! `wasmq plugin inspect FILE`: what a plugin is, asks for and needs, and
//! whether this host would load it.

use std::path::{Path, PathBuf};

use crate::plugins::{Manifest, Plugin};
use crate::sandbox::{Sandbox, SandboxConfig};
use clap::Args;

use super::LimitArgs;
use super::format;
use super::parse::Failure;

/// Arguments of `wasmq plugin inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The plugin's component (.wasm).
    pub(crate) file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Runs `wasmq plugin inspect`.
pub(crate) async fn run(args: InspectArgs) -> Result<(), Failure> {
    let wasm = std::fs::read(&args.file)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", args.file.display()))?;
    let options = args.limits.load_options()?;
    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: 4,
        max_memory_bytes: options.ceilings.memory_bytes,
        ..SandboxConfig::default()
    })
    .map_err(anyhow::Error::from)?;
    let manifest = Manifest::from_component(&wasm);
    let built = crate::plugins::build_info(&wasm);
    let interfaces = sandbox
        .compile_bounded(&wasm, options.cache.as_ref(), &options.compile)
        .map(|component| sandbox.interfaces(&component));
    let verdict = Plugin::load(&sandbox, &wasm, &args.file, &options);

    if args.json {
        let (imports, exports) = interfaces.as_ref().cloned().unwrap_or_default();
        let json = serde_json::json!({
            "file": args.file,
            "bytes": wasm.len(),
            "language": built.as_ref().map(|info| info.language.name()),
            "toolchain": built.as_ref().map(|info| info.toolchain.as_str()).filter(|t| !t.is_empty()),
            "manifest": manifest.as_ref().ok(),
            "imports": imports,
            "exports": exports,
            "loadable": verdict.is_ok(),
            "problem": verdict.as_ref().err().map(ToString::to_string),
            "limits": verdict.as_ref().ok().map(|plugin| serde_json::json!({
                "fuel": plugin.limits.fuel,
                "timeout_ms": plugin.limits.timeout.as_millis() as u64,
                "memory_bytes": plugin.limits.memory_bytes,
                "max_result_bytes": plugin.limits.max_result_bytes,
                "max_log_bytes": plugin.limits.max_log_bytes,
            })),
        });
        println!("{json}");
    } else {
        print!(
            "{}",
            describe(
                &args.file,
                &wasm,
                built.as_ref(),
                &manifest,
                &interfaces,
                &verdict
            )
        );
    }
    match verdict {
        Ok(_) => Ok(()),
        Err(err) => Err(anyhow::anyhow!("refused: {err}").into()),
    }
}

fn describe(
    file: &Path,
    wasm: &[u8],
    built: Option<&crate::plugins::BuildInfo>,
    manifest: &Result<Manifest, crate::plugins::PluginError>,
    interfaces: &Result<(Vec<String>, Vec<String>), crate::sandbox::LoadError>,
    verdict: &Result<Plugin, crate::plugins::PluginError>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "file:          {} ({})",
        file.display(),
        format::bytes(wasm.len() as u64)
    );
    let _ = match built {
        Some(info) if !info.toolchain.is_empty() => {
            writeln!(out, "language:      {} ({})", info.language, info.toolchain)
        }
        Some(info) => writeln!(out, "language:      {}", info.language),
        None => writeln!(out, "language:      unknown"),
    };
    match manifest {
        Ok(manifest) => {
            let _ = writeln!(out, "plugin:        {} {}", manifest.name, manifest.version);
            let _ = writeln!(out, "task types:    {}", manifest.task_types.join(", "));
        }
        Err(err) => {
            let _ = writeln!(out, "manifest:      none readable ({err})");
        }
    }
    if let Ok(plugin) = verdict {
        let limits = &plugin.limits;
        let _ = writeln!(
            out,
            "limits:        fuel {}, timeout {}, memory {}, result {}, log {}",
            limits
                .fuel
                .map_or_else(|| "unmetered".into(), format::count),
            humantime::format_duration(limits.timeout),
            format::bytes(limits.memory_bytes),
            format::bytes(limits.max_result_bytes as u64),
            format::bytes(limits.max_log_bytes as u64)
        );
        let grants = &plugin.grants;
        let mut caps = Vec::new();
        if grants.clocks {
            caps.push("clocks".to_string());
        }
        if grants.random {
            caps.push("random".to_string());
        }
        if !grants.env.is_empty() {
            let names: Vec<&str> = grants.env.iter().map(|(name, _)| name.as_str()).collect();
            caps.push(format!("env [{}]", names.join(", ")));
        }
        if let Some(http) = &grants.http {
            let hosts: Vec<String> = http.allow.iter().map(ToString::to_string).collect();
            caps.push(format!(
                "http to [{}] (responses up to {}, timeout {})",
                hosts.join(", "),
                format::bytes(http.max_response_bytes),
                humantime::format_duration(http.timeout)
            ));
        }
        if let Some(enqueue) = &grants.enqueue {
            caps.push(format!(
                "enqueue (up to {} per attempt)",
                enqueue.max_per_task
            ));
        }
        if let Some(kv) = &grants.kv {
            caps.push(format!(
                "kv (values up to {}, {} keys)",
                format::bytes(kv.max_value_bytes as u64),
                kv.max_keys
            ));
        }
        let _ = writeln!(
            out,
            "capabilities:  {}",
            if caps.is_empty() {
                "none".to_string()
            } else {
                caps.join("; ")
            }
        );
    }
    match interfaces {
        Ok((imports, exports)) => {
            let _ = writeln!(out, "imports:");
            for import in imports {
                let _ = writeln!(out, "  {import}");
            }
            let _ = writeln!(out, "exports:");
            for export in exports {
                let _ = writeln!(out, "  {export}");
            }
        }
        Err(err) => {
            let _ = writeln!(out, "component:     not loadable as a component ({err})");
        }
    }
    let _ = match verdict {
        Ok(_) => writeln!(out, "loadable:      yes, this host can load it"),
        Err(err) => writeln!(out, "loadable:      no: {err}"),
    };
    if let Ok(manifest) = manifest {
        let _ = writeln!(out, "manifest (as embedded):");
        for line in manifest.to_toml().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}
