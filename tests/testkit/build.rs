//! Builds the plugins under `plugins/` for wasm32-wasip2, once per change,
//! and writes a `<NAME>_COMPONENT` constant with the path of each component
//! (the way wasmtime's test-programs artifacts are built).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/testkit sits two levels below the repository root")
        .to_path_buf();
    let plugins = root.join("plugins");

    for path in [
        "guest-sdk/rust",
        "wit",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let members = plugin_members(&plugins);
    for member in &members {
        println!("cargo:rerun-if-changed={}", plugins.join(member).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        // The plugins are their own workspace: keep this build's settings
        // (target dir, flags) out of theirs.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("cargo can be run from a build script");
    assert!(
        status.success(),
        "building the plugins in {} for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)",
        plugins.display()
    );

    let out_dir = plugins.join("target").join("wasm32-wasip2").join("release");
    let mut generated = String::new();
    generated.push_str(&format!(
        "/// The directory holding every built plugin.\npub const PLUGINS_DIR: &str = {:?};\n",
        out_dir.display().to_string()
    ));
    let mut all = Vec::new();
    for member in &members {
        let lib_name = lib_name(&plugins.join(member));
        let path = out_dir.join(format!("{lib_name}.wasm"));
        assert!(
            path.exists(),
            "the build did not produce {}",
            path.display()
        );
        let constant = format!("{}_COMPONENT", member.to_uppercase().replace('-', "_"));
        generated.push_str(&format!(
            "/// The `{member}` plugin's component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
        all.push(format!("({member:?}, {constant})"));
    }
    generated.push_str(&format!(
        "/// Every plugin: (directory name, component path).\npub const ALL_COMPONENTS: &[(&str, &str)] = &[{}];\n",
        all.join(", ")
    ));
    let hostile: Vec<&String> = all
        .iter()
        .filter(|entry| entry.starts_with("(\"hostile-"))
        .collect();
    generated.push_str(&format!(
        "/// The hostile plugins (`plugins/hostile-*`): (directory name, component path).\npub const HOSTILE_COMPONENTS: &[(&str, &str)] = &[{}];\n",
        hostile.iter().map(|entry| entry.as_str()).collect::<Vec<_>>().join(", ")
    ));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("components.rs");
    std::fs::write(out, generated).expect("OUT_DIR is writable");
}

/// The plugin crates: every directory of `plugins/` with a Cargo.toml.
fn plugin_members(plugins: &Path) -> Vec<String> {
    let mut members: Vec<String> = std::fs::read_dir(plugins)
        .expect("plugins/ exists")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    members.sort();
    members
}

/// The `[lib] name` of a plugin crate, which names its .wasm file.
fn lib_name(crate_dir: &Path) -> String {
    let manifest =
        std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("the plugin has a Cargo.toml");
    let mut in_lib = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_lib = line == "[lib]";
        } else if in_lib
            && let Some(value) = line
                .strip_prefix("name")
                .map(str::trim)
                .and_then(|rest| rest.strip_prefix('='))
        {
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!(
        "{} has no [lib] name: every plugin names its component that way",
        crate_dir.display()
    );
}
