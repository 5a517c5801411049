//! A disk cache of compiled components, so that a worker (or a test) loads
//! a plugin it has seen before in milliseconds instead of recompiling it.
//!
//! Entries are named by the SHA-256 of the component's bytes and by the
//! engine's compatibility hash (wasmtime version and every setting that
//! changes the machine code), so a stale entry is never used. Entries are
//! written to a temporary file and renamed, so concurrent workers sharing a
//! cache directory never read a partial entry.
//!
//! The cache directory must only be writable by the operator: compiled
//! artifacts are loaded as native code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentCache { dir: dir.into() }
    }

    /// The default location: `$WASMQ_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasmq/components`, else `~/.cache/wasmq/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WASMQ_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
        Some(base.join("wasmq").join("components"))
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest = Sha256::digest(wasm);
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            hex::encode(digest),
            hasher.finish()
        ))
    }

    /// The compiled component for `wasm`, if cached.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Option<Component> {
        let entry = self.entry(engine, wasm);
        if !entry.exists() {
            return None;
        }
        // SAFETY: entries are written only by `store` below from components
        // this engine configuration compiled, and are named by the
        // engine's compatibility hash; the directory is the operator's.
        match unsafe { Component::deserialize_file(engine, &entry) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(entry = %entry.display(), %err, "ignoring an unreadable compiled-component cache entry");
                None
            }
        }
    }

    /// The compiled component for `wasm`: from the cache, or compiled with
    /// `compile` and stored. A lock file per entry makes processes that
    /// load the same new component at once compile it once: the others
    /// wait, then read it.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.load(engine, wasm) {
            return Ok(component);
        }
        let lock = std::fs::create_dir_all(&self.dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.entry(engine, wasm).with_extension("lock"))
        });
        let _guard = lock.ok().map(FileLock::acquire);
        if let Some(component) = self.load(engine, wasm) {
            return Ok(component);
        }
        let component = compile()?;
        self.store(engine, wasm, &component);
        Ok(component)
    }

    /// Stores a compiled component; failures only cost a recompile later.
    pub fn store(&self, engine: &Engine, wasm: &[u8], component: &Component) {
        let entry = self.entry(engine, wasm);
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let mut temp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut temp, &bytes)?;
            temp.persist(&entry).map_err(|err| err.error)?;
            Ok(())
        })();
        if let Err(err) = written {
            tracing::debug!(dir = %self.dir.display(), %err, "could not cache a compiled component");
        }
    }
}

/// An exclusive advisory lock on a file, released on drop.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(file: std::fs::File) -> FileLock {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this struct owns. Failure only
        // means compiling without the lock.
        unsafe {
            libc::flock(file.as_raw_fd(), libc::LOCK_EX);
        }
        FileLock(file)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor locked in `acquire`.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
