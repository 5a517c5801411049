//! Test support shared by wasmq's end-to-end tests and benchmarks: the
//! plugins of `plugins/`, built once by this crate's build script;
//! directories holding chosen ones for a worker's `--plugins`; `wasmq`
//! child processes; the fault-injection run; hostile components written in
//! WAT; the Python and JavaScript plugins, built once (`polyglot`); and an
//! OTLP receiver that collects the spans workers export (`otlp`).

pub mod faults;
pub mod hostile_wat;
pub mod otlp;
pub mod polyglot;
mod process;

use std::path::{Path, PathBuf};

pub use process::WasmqProcess;

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// A temporary directory holding copies of chosen plugin components, for a
/// worker's `--plugins DIR`. Removed on drop.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// A directory with the given components (paths from the constants).
    pub fn with(components: &[&str]) -> PluginDir {
        let dir = tempfile::Builder::new()
            .prefix("wasmq-plugins-")
            .tempdir()
            .expect("a temporary directory can be created");
        for component in components {
            let source = Path::new(component);
            let name = source.file_name().expect("a component path names a file");
            std::fs::copy(source, dir.path().join(name)).expect("the component can be copied");
        }
        PluginDir { dir }
    }

    /// Adds a file with arbitrary contents (e.g. a malformed plugin).
    pub fn add_file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("the plugin directory is writable");
        path
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Where tests cache compiled components: shared by every test (entries
/// are content-addressed and written atomically), so each plugin is
/// compiled once per build.
pub fn component_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasmq-test-cache")
        .to_path_buf()
}

/// A component's content hash as the registry names it (SHA-256, hex).
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `component` with a custom section `name` holding `payload` appended: the
/// same plugin and version as another build of it, under another content
/// hash. `name` and `payload` together stay under 127 bytes.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let size = 1 + name.len() + payload.len();
    assert!(size < 128, "a one-byte section size");
    let mut out = component.to_vec();
    out.push(0); // a custom section
    out.push(size as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(payload);
    out
}
