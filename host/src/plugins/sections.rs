//! The custom sections wasmq writes into a component and reads back: the
//! manifest (`wasmq-manifest`, see `manifest.rs`) and what built it
//! (`wasmq-build`: the language and toolchain).
//!
//! A Rust plugin's manifest is written by the guest SDK's `plugin!` macro
//! into its core module. Python and JavaScript toolchains (componentize-py,
//! componentize-js) offer no such hook, so `wasmq plugin build` appends both
//! sections at the end of the finished component: a custom section may
//! stand anywhere among a component's sections, and the host searches the
//! component and every module nested in it.

use std::fmt;

use serde::{Deserialize, Serialize};
use wasmparser::{KnownCustom, Parser, Payload};

use super::manifest::SECTION as MANIFEST_SECTION;

/// The custom section that says how a component was built.
pub const BUILD_SECTION: &str = "wasmq-build";

/// The language a plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, with the `wasmq-guest` crate.
    Rust,
    /// Python, with the `wasmq` package and componentize-py.
    Python,
    /// JavaScript or TypeScript, with the `wasmq` package and
    /// componentize-js.
    #[serde(rename = "js")]
    JavaScript,
}

impl Language {
    /// Its name on the command line and in the build section.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "js",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        })
    }
}

/// What the `wasmq-build` section records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The plugin's language.
    pub language: Language,
    /// The toolchain that made the component, such as `componentize-py
    /// 0.25.1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolchain: String,
}

impl BuildInfo {
    /// The section's contents (TOML).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// The component with each `(name, data)` appended as a custom section.
/// Refuses bytes that are not a component, and a manifest for a component
/// that already carries one (two would be ambiguous).
#[cfg(feature = "cli")]
pub fn append(wasm: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, super::PluginError> {
    use super::PluginError;
    use wasm_encoder::{ComponentSection, CustomSection};

    if !wasm.starts_with(b"\0asm") || Parser::is_core_wasm(wasm) {
        return Err(PluginError::Manifest(
            "the toolchain's output is not a WebAssembly component".into(),
        ));
    }
    let existing = custom_section_names(wasm)?;
    let mut out = wasm.to_vec();
    for (name, data) in sections {
        if *name == MANIFEST_SECTION && existing.iter().any(|found| found == MANIFEST_SECTION) {
            return Err(PluginError::Manifest(format!(
                "the component already carries a `{MANIFEST_SECTION}` section; a plugin has one manifest"
            )));
        }
        CustomSection {
            name: (*name).into(),
            data: (*data).into(),
        }
        .append_to_component(&mut out);
    }
    Ok(out)
}

/// The names of every custom section, nested modules and components
/// included.
#[cfg(feature = "cli")]
fn custom_section_names(wasm: &[u8]) -> Result<Vec<String>, super::PluginError> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|err| {
            super::PluginError::Manifest(format!("the component cannot be parsed: {err}"))
        })?;
        if let Payload::CustomSection(reader) = payload {
            names.push(reader.name().to_string());
        }
    }
    Ok(names)
}

/// How the component was built, as its `wasmq-build` section says; when it
/// has none, the language guessed from what the toolchains leave behind
/// (the `producers` section, CPython's module names), with no toolchain.
pub fn build_info(wasm: &[u8]) -> Option<BuildInfo> {
    let mut javascript = false;
    let mut has_manifest = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::CustomSection(reader)) = payload else {
            continue;
        };
        match reader.name() {
            BUILD_SECTION => {
                let text = std::str::from_utf8(reader.data()).ok()?;
                return toml::from_str(text).ok();
            }
            MANIFEST_SECTION => has_manifest = true,
            _ => {}
        }
        if let KnownCustom::Producers(producers) = reader.as_known() {
            for field in producers.into_iter().flatten() {
                if field.name != "language" {
                    continue;
                }
                for value in field.values.into_iter().flatten() {
                    if value.name == "JavaScript" {
                        javascript = true;
                    }
                }
            }
        }
    }
    let language = if javascript {
        Language::JavaScript
    } else if contains(wasm, b"libpython3") {
        Language::Python
    } else if has_manifest {
        // Only the Rust SDK's macro embeds a manifest by itself.
        Language::Rust
    } else {
        return None;
    };
    Some(BuildInfo {
        language,
        toolchain: String::new(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the preamble alone.
    const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    #[cfg(feature = "cli")]
    fn appended_sections_are_found_again() {
        let manifest = b"name = \"p\"\nversion = \"1\"\ntask_types = [\"t\"]\n";
        let info = BuildInfo {
            language: Language::Python,
            toolchain: "componentize-py 0.25.1".into(),
        };
        let built = append(
            &EMPTY_COMPONENT,
            &[
                (MANIFEST_SECTION, manifest),
                (BUILD_SECTION, info.to_toml().as_bytes()),
            ],
        )
        .unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&built)
            .unwrap();
        let read = super::super::Manifest::from_component(&built).unwrap();
        assert_eq!(read.name, "p");
        assert_eq!(build_info(&built), Some(info));
        // One manifest per plugin.
        let err = append(&built, &[(MANIFEST_SECTION, manifest)]).unwrap_err();
        assert!(err.to_string().contains("already carries"), "{err}");
        // Only components.
        assert!(append(b"\0asm\x01\0\0\0", &[]).is_err());
        assert!(append(b"hello", &[]).is_err());
    }

    #[test]
    fn a_component_without_sections_has_no_known_language() {
        assert_eq!(build_info(&EMPTY_COMPONENT), None);
    }
}
