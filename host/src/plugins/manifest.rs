//! The plugin manifest: what a plugin is called, which task types it
//! handles, the limits it asks for and the capabilities it needs.
//!
//! The guest SDK's `plugin!` macro writes the manifest as TOML into a custom
//! section named `wasmq-manifest` inside the component, so a `.wasm` file is
//! self-describing: copying or deploying it carries its manifest along.
//!
//! Limits the manifest leaves out get the worker's defaults; limits it sets
//! may not exceed the worker's ceilings. Capabilities are off unless
//! listed: the host checks the component's imports against them when it
//! loads the plugin, and enforces them on every call.

use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

use super::PluginError;
use crate::sandbox::{EnqueueGrant, Grants, HostPattern, HttpGrant, KvGrant, Limits, Rate};

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
    /// What the plugin does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The budget it asks for per attempt.
    #[serde(default)]
    pub limits: LimitSpec,
    /// What it may do beyond computing.
    #[serde(default)]
    pub capabilities: CapabilitySpec,
}

/// The limits a manifest asks for; unset ones get the worker's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Fuel per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock time per attempt, e.g. `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Linear memory, e.g. `"64MiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The largest result, e.g. `"256KiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_result: Option<String>,
    /// Log volume per attempt, e.g. `"16KiB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log: Option<String>,
}

/// The capabilities a manifest asks for; each is off unless listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySpec {
    /// Real wall and monotonic clocks (otherwise a fixed, deterministic
    /// clock).
    #[serde(default)]
    pub clocks: bool,
    /// Real randomness (otherwise a generator seeded by the task id).
    #[serde(default)]
    pub random: bool,
    /// Environment values, by name, that the operator provides as
    /// `WASMQ_PLUGIN_ENV_<NAME>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Secrets, by name, that the operator provides as
    /// `WASMQ_PLUGIN_SECRET_<NAME>`; seen by the plugin as environment
    /// values, never shown by wasmq.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Outgoing HTTP (`wasi:http`) to the listed hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Enqueuing follow-up tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueue: Option<EnqueueSpec>,
    /// A key-value store of the plugin's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvSpec>,
}

/// The `http` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Hosts it may reach: `api.example.com`, `api.example.com:8443`,
    /// `*.example.com`, `127.0.0.1`.
    pub allow: Vec<String>,
    /// The largest response body (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response: Option<String>,
    /// How long a request may take to connect and to send each part of its
    /// response (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The `enqueue` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueSpec {
    /// Tasks one attempt may enqueue (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_task: Option<u32>,
    /// Task types it may enqueue (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_types: Vec<String>,
    /// Queues it may enqueue on (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// The deepest generation below the root task a follow-up may be
    /// (default: the worker's ceiling, which it cannot raise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Follow-ups one root task may have across all generations and
    /// workers (default: the worker's ceiling, which it cannot
    /// raise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_descendants: Option<u64>,
    /// Follow-ups the plugin may enqueue fleet-wide, such as `100/s`
    /// (default: the worker's ceiling, which it cannot raise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

/// The `kv` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSpec {
    /// The largest value (default 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<String>,
    /// The most keys (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
}

/// Which plugin may read which environment value and secret, as the
/// operator said. A manifest naming one it is not allowed is refused at
/// load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvAccess {
    env: BTreeMap<String, BTreeSet<String>>,
    secrets: BTreeMap<String, BTreeSet<String>>,
}

/// The two kinds of values a plugin may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Env,
    Secret,
}

impl EnvAccess {
    /// Lets `plugin` read the environment value `name`.
    pub fn allow_env(mut self, plugin: &str, name: &str) -> Self {
        self.env
            .entry(plugin.to_string())
            .or_default()
            .insert(name.to_string());
        self
    }

    /// Lets `plugin` read the secret `name`.
    pub fn allow_secret(mut self, plugin: &str, name: &str) -> Self {
        self.secrets
            .entry(plugin.to_string())
            .or_default()
            .insert(name.to_string());
        self
    }

    /// Parses allowances written `PLUGIN=NAME[,NAME...]`, for environment
    /// values (`env`) and secrets; an error names the entry, after `labels`
    /// (what the caller calls each list).
    pub fn parse(
        env: &[String],
        secrets: &[String],
        labels: (&str, &str),
    ) -> Result<EnvAccess, String> {
        fn parse_into(
            entries: &[String],
            flag: &str,
            into: &mut BTreeMap<String, BTreeSet<String>>,
        ) -> Result<(), String> {
            for entry in entries {
                let Some((plugin, names)) = entry.split_once('=') else {
                    return Err(format!(
                        "{flag} {entry:?}: expected PLUGIN=NAME, e.g. {flag} relay=TOKEN"
                    ));
                };
                let plugin = plugin.trim();
                if plugin.is_empty() {
                    return Err(format!("{flag} {entry:?}: the plugin name is empty"));
                }
                for name in names.split(',').map(str::trim) {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "{flag} {entry:?}: {name:?} is not a name of letters, digits and '_' (give the name without its WASMQ_PLUGIN_ prefix)"
                        ));
                    }
                    into.entry(plugin.to_string())
                        .or_default()
                        .insert(name.to_string());
                }
            }
            Ok(())
        }
        let mut access = EnvAccess::default();
        parse_into(env, labels.0, &mut access.env)?;
        parse_into(secrets, labels.1, &mut access.secrets)?;
        Ok(access)
    }

    fn allows(&self, kind: Access, plugin: &str, name: &str) -> bool {
        let map = match kind {
            Access::Env => &self.env,
            Access::Secret => &self.secrets,
        };
        map.get(plugin).is_some_and(|names| names.contains(name))
    }
}

/// What a worker allows plugins at most, whatever their manifests ask.
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// Fuel per attempt.
    pub fuel: u64,
    /// Time per attempt.
    pub timeout: Duration,
    /// Linear memory, bytes.
    pub memory_bytes: u64,
    /// Result size, bytes.
    pub max_result_bytes: usize,
    /// Log volume per attempt, bytes.
    pub max_log_bytes: usize,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            fuel: 10_000_000_000_000,
            timeout: Duration::from_secs(3600),
            memory_bytes: 512 * 1024 * 1024,
            max_result_bytes: 64 * 1024 * 1024,
            max_log_bytes: 16 * 1024 * 1024,
        }
    }
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

    /// The limits the plugin gets: its own where it sets them, the worker's
    /// defaults otherwise. Refuses limits that are zero, unreadable or above
    /// the worker's ceilings.
    pub fn limits(&self, defaults: &Limits, ceilings: &Ceilings) -> Result<Limits, PluginError> {
        let spec = &self.limits;
        let refuse =
            |what: String| PluginError::Manifest(format!("plugin {:?}: {what}", self.name));
        let mut limits = defaults.clone();
        if let Some(fuel) = spec.fuel {
            if fuel == 0 || fuel > ceilings.fuel {
                return Err(refuse(format!(
                    "limits.fuel = {fuel} is impossible: it must be between 1 and {} (this worker's ceiling)",
                    ceilings.fuel
                )));
            }
            limits.fuel = Some(fuel);
        }
        if let Some(timeout) = &spec.timeout {
            let timeout = crate::units::duration(timeout)
                .map_err(|err| refuse(format!("limits.timeout: {err}")))?;
            if timeout.is_zero() || timeout > ceilings.timeout {
                return Err(refuse(format!(
                    "limits.timeout must be between 1ms and {} (this worker's ceiling)",
                    humantime::format_duration(ceilings.timeout)
                )));
            }
            limits.timeout = timeout;
        }
        if let Some(memory) = &spec.memory {
            let memory = crate::units::size(memory)
                .map_err(|err| refuse(format!("limits.memory: {err}")))?;
            if memory < 1024 * 1024 || memory > ceilings.memory_bytes {
                return Err(refuse(format!(
                    "limits.memory must be between 1MiB and {} bytes (this worker's max-memory ceiling)",
                    ceilings.memory_bytes
                )));
            }
            limits.memory_bytes = memory;
        }
        if let Some(max_result) = &spec.max_result {
            let max_result = crate::units::size(max_result)
                .map_err(|err| refuse(format!("limits.max_result: {err}")))?;
            if max_result == 0 || max_result > ceilings.max_result_bytes as u64 {
                return Err(refuse(format!(
                    "limits.max_result must be between 1 and {} bytes (this worker's ceiling)",
                    ceilings.max_result_bytes
                )));
            }
            limits.max_result_bytes = max_result as usize;
        }
        if let Some(max_log) = &spec.max_log {
            let max_log = crate::units::size(max_log)
                .map_err(|err| refuse(format!("limits.max_log: {err}")))?;
            if max_log > ceilings.max_log_bytes as u64 {
                return Err(refuse(format!(
                    "limits.max_log must be at most {} bytes (this worker's ceiling)",
                    ceilings.max_log_bytes
                )));
            }
            limits.max_log_bytes = max_log as usize;
        }
        if limits.memory_bytes > ceilings.memory_bytes {
            limits.memory_bytes = ceilings.memory_bytes;
        }
        Ok(limits)
    }

    /// The capabilities the plugin gets, with environment values and
    /// secrets looked up in `lookup` (the worker's
    /// `WASMQ_PLUGIN_ENV_<NAME>` / `WASMQ_PLUGIN_SECRET_<NAME>`). Refuses
    /// capabilities that are malformed or grant nothing.
    pub fn grants(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Grants, PluginError> {
        let caps = &self.capabilities;
        let refuse =
            |what: String| PluginError::Manifest(format!("plugin {:?}: {what}", self.name));
        let mut env = Vec::new();
        for (names, prefix) in [
            (&caps.env, "WASMQ_PLUGIN_ENV_"),
            (&caps.secrets, "WASMQ_PLUGIN_SECRET_"),
        ] {
            for name in names {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(refuse(format!(
                        "environment name {name:?} must be letters, digits and '_'"
                    )));
                }
                match lookup(&format!("{prefix}{name}")) {
                    Some(value) => env.push((name.clone(), value)),
                    None => tracing::warn!(
                        plugin = self.name,
                        "the plugin asks for {name}, which this worker does not provide (set {prefix}{name})"
                    ),
                }
            }
        }
        let http = match &caps.http {
            None => None,
            Some(spec) => {
                if spec.allow.is_empty() {
                    return Err(refuse(
                        "capabilities.http grants no host: list them in `allow`".into(),
                    ));
                }
                let allow = spec
                    .allow
                    .iter()
                    .map(|pattern| {
                        HostPattern::parse(pattern)
                            .map_err(|err| refuse(format!("capabilities.http.allow: {err}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let max_response = match &spec.max_response {
                    Some(size) => crate::units::size(size)
                        .map_err(|err| refuse(format!("capabilities.http.max_response: {err}")))?,
                    None => 1024 * 1024,
                };
                let timeout = match &spec.timeout {
                    Some(timeout) => crate::units::duration(timeout)
                        .map_err(|err| refuse(format!("capabilities.http.timeout: {err}")))?,
                    None => Duration::from_secs(10),
                };
                if max_response == 0 || timeout.is_zero() {
                    return Err(refuse(
                        "capabilities.http needs a max_response and timeout above zero".into(),
                    ));
                }
                Some(HttpGrant {
                    allow,
                    max_response_bytes: max_response,
                    timeout,
                    client: crate::sandbox::OutgoingHttp::new(timeout),
                })
            }
        };
        let enqueue = match &caps.enqueue {
            None => None,
            Some(spec) => {
                let max_per_task = spec.max_per_task.unwrap_or(10);
                if max_per_task == 0 {
                    return Err(refuse(
                        "capabilities.enqueue.max_per_task is 0: drop the capability instead"
                            .into(),
                    ));
                }
                if spec.max_depth == Some(0) || spec.max_descendants == Some(0) {
                    return Err(refuse(
                        "capabilities.enqueue needs max_depth and max_descendants above zero: drop the capability to enqueue nothing"
                            .into(),
                    ));
                }
                let rate = spec
                    .rate
                    .as_deref()
                    .map(Rate::parse)
                    .transpose()
                    .map_err(|err| refuse(format!("capabilities.enqueue.rate: {err}")))?;
                Some(EnqueueGrant {
                    max_per_task,
                    task_types: spec.task_types.clone(),
                    queues: spec.queues.clone(),
                    max_depth: spec.max_depth,
                    max_descendants: spec.max_descendants,
                    rate,
                })
            }
        };
        let kv = match &caps.kv {
            None => None,
            Some(spec) => {
                let max_value = match &spec.max_value {
                    Some(size) => crate::units::size(size)
                        .map_err(|err| refuse(format!("capabilities.kv.max_value: {err}")))?,
                    None => 64 * 1024,
                };
                let max_keys = spec.max_keys.unwrap_or(10_000);
                if max_value == 0 || max_keys == 0 {
                    return Err(refuse(
                        "capabilities.kv needs max_value and max_keys above zero".into(),
                    ));
                }
                Some(KvGrant {
                    max_value_bytes: max_value as usize,
                    max_keys,
                    store: self.identity(),
                })
            }
        };
        Ok(Grants {
            clocks: caps.clocks,
            random: caps.random,
            env,
            http,
            enqueue,
            kv,
        })
    }

    /// The plugin's task types, sorted and without repeats: with its name,
    /// what makes two components "the same plugin".
    pub fn type_set(&self) -> Vec<String> {
        let mut types = self.task_types.clone();
        types.sort();
        types.dedup();
        types
    }

    /// The plugin's identity: its name and a hash of its task-type set
    /// (`name.0123456789ab`). Its kv store belongs to this identity, so a
    /// component that only copies the name does not reach the data.
    pub fn identity(&self) -> String {
        let mut hasher = Sha256::new();
        for task_type in self.type_set() {
            hasher.update(task_type.as_bytes());
            hasher.update([0]);
        }
        format!("{}.{}", self.name, &hex::encode(hasher.finalize())[..12])
    }

    /// The first environment value or secret the operator has not allowed
    /// this plugin to read, as (whether it is a secret, its name).
    pub(crate) fn denied_access(&self, access: &EnvAccess) -> Option<(bool, String)> {
        for (names, kind) in [
            (&self.capabilities.env, Access::Env),
            (&self.capabilities.secrets, Access::Secret),
        ] {
            if let Some(name) = names
                .iter()
                .find(|name| !access.allows(kind, &self.name, name))
            {
                return Some((kind == Access::Secret, name.clone()));
            }
        }
        None
    }

    /// The manifest as TOML, for `wasmq plugin inspect`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|err| format!("# the manifest does not print: {err}"))
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
            description: None,
            limits: LimitSpec::default(),
            capabilities: CapabilitySpec::default(),
        }
    }

    fn parse(text: &str) -> Manifest {
        toml::from_str(&format!(
            "name = \"p\"\nversion = \"1\"\ntask_types = [\"t\"]\n{text}"
        ))
        .unwrap()
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

    #[test]
    fn limits_default_to_the_workers_and_are_capped_by_its_ceilings() {
        let defaults = Limits::default();
        let ceilings = Ceilings::default();
        assert_eq!(parse("").limits(&defaults, &ceilings).unwrap(), defaults);
        let own = parse("[limits]\nfuel = 1_000\ntimeout = \"5s\"\nmemory = \"16MiB\"\nmax_result = \"1KiB\"\nmax_log = \"512\"\n")
            .limits(&defaults, &ceilings)
            .unwrap();
        assert_eq!(own.fuel, Some(1000));
        assert_eq!(own.timeout, Duration::from_secs(5));
        assert_eq!(own.memory_bytes, 16 << 20);
        assert_eq!((own.max_result_bytes, own.max_log_bytes), (1024, 512));
        for (text, needle) in [
            ("[limits]\nfuel = 0", "limits.fuel = 0 is impossible"),
            ("[limits]\ntimeout = \"0s\"", "limits.timeout must be"),
            ("[limits]\ntimeout = \"soon\"", "not a duration"),
            ("[limits]\nmemory = \"4GiB\"", "max-memory ceiling"),
            ("[limits]\nmemory = \"12 parsecs\"", "unknown size unit"),
        ] {
            let err = parse(text)
                .limits(&defaults, &ceilings)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(
            toml::from_str::<Manifest>(
                "name = \"p\"\nversion = \"1\"\ntask_types = [\"t\"]\n[limits]\nspeed = 3"
            )
            .is_err()
        );
    }

    #[test]
    fn capabilities_are_off_unless_listed_and_env_comes_from_the_operator() {
        let none = parse("").grants(|_| None).unwrap();
        assert!(!none.clocks && !none.random && none.env.is_empty());
        assert!(none.http.is_none() && none.enqueue.is_none() && none.kv.is_none());

        let lookup = |name: &str| match name {
            "WASMQ_PLUGIN_ENV_REGION" => Some("eu".to_string()),
            "WASMQ_PLUGIN_SECRET_TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        let all = parse(
            "[capabilities]\nclocks = true\nenv = [\"REGION\", \"HOME\"]\nsecrets = [\"TOKEN\"]\n\
             [capabilities.http]\nallow = [\"api.example.com\", \"127.0.0.1:8080\"]\n\
             [capabilities.enqueue]\nmax_per_task = 3\nmax_depth = 2\nmax_descendants = 50\nrate = \"10/s\"\n\
             [capabilities.kv]\nmax_keys = 5\n",
        )
        .grants(lookup)
        .unwrap();
        assert!(all.clocks && !all.random);
        assert_eq!(
            all.env,
            vec![
                ("REGION".to_string(), "eu".to_string()),
                ("TOKEN".to_string(), "s3cret".to_string())
            ]
        );
        let http = all.http.unwrap();
        assert_eq!(http.allow.len(), 2);
        assert_eq!(http.max_response_bytes, 1024 * 1024);
        let enqueue = all.enqueue.unwrap();
        assert_eq!(enqueue.max_per_task, 3);
        assert_eq!(enqueue.max_depth, Some(2));
        assert_eq!(enqueue.max_descendants, Some(50));
        assert_eq!(enqueue.rate, Some(Rate::parse("10/s").unwrap()));
        assert_eq!(all.kv.unwrap().max_keys, 5);

        for (text, needle) in [
            ("[capabilities.http]\nallow = []", "grants no host"),
            (
                "[capabilities.http]\nallow = [\"http://x.com/path\"]",
                "capabilities.http.allow",
            ),
            (
                "[capabilities.enqueue]\nmax_per_task = 0",
                "max_per_task is 0",
            ),
            (
                "[capabilities.enqueue]\nmax_depth = 0",
                "max_depth and max_descendants above zero",
            ),
            (
                "[capabilities.enqueue]\nrate = \"fast\"",
                "capabilities.enqueue.rate",
            ),
            ("[capabilities]\nenv = [\"A-B\"]", "letters, digits"),
        ] {
            let err = parse(text).grants(|_| None).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_plugin_is_its_name_and_its_set_of_task_types() {
        let one = manifest("x", &["b", "a"]);
        assert_eq!(one.identity(), manifest("x", &["a", "b", "a"]).identity());
        assert_ne!(one.identity(), manifest("x", &["a"]).identity());
        assert_ne!(one.identity(), manifest("y", &["a", "b"]).identity());
        assert!(one.identity().starts_with("x."));
    }

    #[test]
    fn only_allowed_values_may_be_named() {
        let mut asking = manifest("relay", &["r"]);
        asking.capabilities.env = vec!["REGION".into()];
        asking.capabilities.secrets = vec!["TOKEN".into()];
        let labels = ("env", "secrets");
        let none = EnvAccess::default();
        assert_eq!(asking.denied_access(&none), Some((false, "REGION".into())));
        let env_only = EnvAccess::parse(&["relay=REGION".into()], &[], labels).unwrap();
        assert_eq!(
            asking.denied_access(&env_only),
            Some((true, "TOKEN".into()))
        );
        let both = EnvAccess::parse(
            &["relay=REGION".into()],
            &["relay=TOKEN,OTHER".into()],
            labels,
        )
        .unwrap();
        assert_eq!(asking.denied_access(&both), None);
        assert_eq!(
            both,
            EnvAccess::default()
                .allow_env("relay", "REGION")
                .allow_secret("relay", "TOKEN")
                .allow_secret("relay", "OTHER")
        );
        let mut other = asking.clone();
        other.name = "thief".into();
        assert!(other.denied_access(&both).is_some());
        for bad in ["TOKEN", "=TOKEN", "relay=", "relay=WASMQ-X"] {
            let err = EnvAccess::parse(&[], &[bad.into()], labels).unwrap_err();
            assert!(err.starts_with("secrets "), "{bad}: {err}");
        }
    }
}
