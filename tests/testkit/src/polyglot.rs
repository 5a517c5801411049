//! The Python and JavaScript plugins of `plugins/python` and `plugins/js`,
//! built with the real toolchains (componentize-py; jco and
//! componentize-js) by the real `wasmq plugin build`, once per change of
//! their sources.
//!
//! Each build takes most of a minute, so a component is kept under
//! `target/wasmq-polyglot/`, named by a hash of everything that goes into
//! it: the plugin's files, its language's SDK, the WIT, the build code of
//! `wasmq plugin build` and the JavaScript toolchain's lock file. Tests
//! running at once wait for one build (a lock file per plugin). The Rust
//! plugins are built by this crate's build script instead; these need the
//! `wasmq` binary, which the build script cannot run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python example plugin (`plugins/python/example`, `py:*` task types).
pub const PYTHON_EXAMPLE: &str = "python/example";
/// The hostile Python plugin (`plugins/python/hostile`).
pub const PYTHON_HOSTILE: &str = "python/hostile";
/// The JavaScript (TypeScript) example plugin (`plugins/js/example`,
/// `js:*` task types).
pub const JS_EXAMPLE: &str = "js/example";
/// The hostile JavaScript plugin (`plugins/js/hostile`).
pub const JS_HOSTILE: &str = "js/hostile";

/// The component of `plugin` (one of the constants above: a directory
/// under `plugins/`), built with `wasmq` (the binary under test) unless an
/// identical build is kept. Panics with the build's output when it fails
/// (a missing toolchain is named with the command that installs it: run
/// `.ci/setup test`).
pub fn component(plugin: &str, wasmq: &Path) -> PathBuf {
    let root = root();
    let dir = root.join("plugins").join(plugin);
    let language = plugin
        .split('/')
        .next()
        .expect("plugin paths are LANG/NAME");
    // What the wasmq binary compiles in (its SDK, the WIT, the build code).
    let mut compiled_in: Vec<PathBuf> = Vec::new();
    match language {
        "python" => collect(&root.join("guest-sdk/python/wasmq"), &mut compiled_in),
        _ => collect(&root.join("guest-sdk/js/src"), &mut compiled_in),
    }
    compiled_in.push(root.join("wit/wasmq.wit"));
    collect(&root.join("guest-sdk/wasi-wit"), &mut compiled_in);
    collect(&root.join("host/src/cli/build"), &mut compiled_in);
    compiled_in.push(root.join("host/src/plugins/sections.rs"));
    // A binary older than them would build with an older SDK under the
    // new sources' name.
    let built_at = std::fs::metadata(wasmq)
        .and_then(|meta| meta.modified())
        .ok();
    for input in &compiled_in {
        let changed = std::fs::metadata(input)
            .and_then(|meta| meta.modified())
            .ok();
        if let (Some(built_at), Some(changed)) = (built_at, changed) {
            assert!(
                changed <= built_at,
                "{} is older than {}: rebuild it (cargo build -p wasmq, with --release for the benchmarks)",
                wasmq.display(),
                input.display()
            );
        }
    }
    let mut inputs: Vec<PathBuf> = Vec::new();
    collect(&dir, &mut inputs);
    inputs.extend(compiled_in);
    if language == "js" {
        inputs.push(root.join("plugins/js/package-lock.json"));
    }
    let mut hasher = Sha256::new();
    for input in &inputs {
        hasher.update(
            input
                .strip_prefix(&root)
                .unwrap_or(input)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update([0]);
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(input) {
            let _ = file.read_to_end(&mut bytes);
        }
        hasher.update(&bytes);
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    let kept = root.join("target/wasmq-polyglot");
    std::fs::create_dir_all(&kept).expect("target/ is writable");
    let stem = plugin.replace('/', "-");
    let out = kept.join(format!("{stem}-{}.wasm", &digest[..16]));
    if out.is_file() {
        return out;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(kept.join(format!("{stem}.lock")))
        .expect("the lock file can be created");
    let _guard = Lock::acquire(lock);
    if out.is_file() {
        return out;
    }
    let partial = kept.join(format!("{stem}-{}.partial.wasm", &digest[..16]));
    let output = Command::new(wasmq)
        .args(["plugin", "build"])
        .arg(&dir)
        .arg("--out")
        .arg(&partial)
        .env_remove("WASMQ_LOG")
        .output()
        .expect("the wasmq binary runs");
    assert!(
        output.status.success(),
        "`wasmq plugin build {}` failed (run .ci/setup test to install the toolchains):\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &out).expect("the built component can be kept");
    out
}

/// Every file under `dir`, sorted, skipping build output and installed
/// packages.
fn collect(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if matches!(name.as_ref(), "target" | "node_modules" | "__pycache__") {
            continue;
        }
        if path.is_dir() {
            collect(&path, into);
        } else {
            into.push(path);
        }
    }
}

/// An exclusive advisory lock on a file, released on drop.
struct Lock(std::fs::File);

impl Lock {
    fn acquire(file: std::fs::File) -> Lock {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this struct owns.
        unsafe {
            libc::flock(file.as_raw_fd(), libc::LOCK_EX);
        }
        Lock(file)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor locked in `acquire`.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// The `wasmq` binary built in this workspace (release if there is one,
/// else debug), for programs other than the `wasmq` package's own tests
/// (the benchmarks). Panics saying how to build it.
pub fn built_wasmq() -> PathBuf {
    let target = root().join("target");
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("wasmq"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("no wasmq binary under {}: run `cargo build --release -p wasmq` first (it builds the Python and JavaScript plugins)", target.display())
        })
}
