//! The plugin manifest: what a plugin is called and which task types it
//! handles.
//!
//! The guest SDK's `plugin!` macro writes the manifest as TOML into a custom
//! section named `wasmq-manifest` inside the component, so a `.wasm` file is
//! self-describing: copying or deploying it carries its manifest along.

use serde::{Deserialize, Serialize};
use wasmparser::{Parser, Payload};

use super::PluginError;

/// The custom section that holds the manifest.
pub const SECTION: &str = "wasmq-manifest";

/// What a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name: letters, digits, `-` and `_`.
    pub name: String,
    /// The plugin's version (its crate's version).
    pub version: String,
    /// The task types it handles.
    pub task_types: Vec<String>,
}

impl Manifest {
    /// Reads and checks the manifest embedded in component bytes.
    pub fn from_component(wasm: &[u8]) -> Result<Manifest, PluginError> {
        let text = find_custom_section(wasm, SECTION)?.ok_or_else(|| {
            PluginError::Manifest(format!(
                "the component has no `{SECTION}` section: build the plugin with the wasmq-guest crate's `plugin!` macro, which embeds its name and task types"
            ))
        })?;
        let text = String::from_utf8(text)
            .map_err(|_| PluginError::Manifest("the manifest is not UTF-8 text".into()))?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|err| PluginError::Manifest(format!("the manifest is not valid: {err}")))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Refuses names and task types that could not be routed or shown.
    pub fn check(&self) -> Result<(), PluginError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(PluginError::Manifest(format!(
                "plugin name {:?} must be 1 to 64 letters, digits, '-' or '_'",
                self.name
            )));
        }
        if self.task_types.is_empty() {
            return Err(PluginError::Manifest(format!(
                "plugin {:?} declares no task types: list at least one in `task_types`",
                self.name
            )));
        }
        for task_type in &self.task_types {
            if task_type.trim().is_empty() || task_type.len() > 200 {
                return Err(PluginError::Manifest(format!(
                    "plugin {:?} declares an empty or over-long task type {task_type:?}",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// The contents of the first custom section called `name`, searching nested
/// modules and components too.
fn find_custom_section(wasm: &[u8], name: &str) -> Result<Option<Vec<u8>>, PluginError> {
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|err| {
            PluginError::Manifest(format!("the component cannot be parsed: {err}"))
        })?;
        if let Payload::CustomSection(reader) = payload
            && reader.name() == name
        {
            return Ok(Some(reader.data().to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, types: &[&str]) -> Manifest {
        Manifest {
            name: name.into(),
            version: "1.0.0".into(),
            task_types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn names_and_task_types_are_checked() {
        assert!(manifest("thumbnail", &["thumbnail:make"]).check().is_ok());
        assert!(manifest("", &["a"]).check().is_err());
        assert!(manifest("has space", &["a"]).check().is_err());
        assert!(manifest("ok", &[]).check().is_err());
        assert!(manifest("ok", &[" "]).check().is_err());
    }

    #[test]
    fn bytes_without_a_manifest_are_refused_with_a_hint() {
        // The smallest valid component: the preamble alone.
        let empty_component = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let err = Manifest::from_component(&empty_component)
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugin!"), "{err}");
    }
}
