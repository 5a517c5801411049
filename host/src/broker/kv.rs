//! The key-value stores plugins with the `kv` capability get: one HASH per
//! plugin identity, `wasmq:{kv:<name>.<hash of its task types>}:data`
//! (`Manifest::identity`), invisible to other plugins, including one that
//! only copies the name.

use super::scripts::SCRIPTS;
use super::{Broker, Error, script_error_name};

/// The HASH of a plugin's store; `plugin` is its identity.
pub fn store_key(plugin: &str) -> String {
    format!("wasmq:{{kv:{plugin}}}:data")
}

impl Broker {
    /// The value of `key` in `plugin`'s store.
    pub(crate) async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.query(redis::cmd("HGET").arg(store_key(plugin)).arg(key))
            .await
    }

    /// Sets `key`, refusing a new key beyond `max_keys` ([`Error::InvalidTask`]
    /// says so).
    pub(crate) async fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        max_keys: u64,
    ) -> Result<(), Error> {
        self.kv_update(plugin, key, value, max_keys, "set")
            .await
            .map(drop)
    }

    /// Adds `by` to the integer at `key` and returns the sum.
    pub(crate) async fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        by: i64,
        max_keys: u64,
    ) -> Result<i64, Error> {
        self.kv_update(plugin, key, by.to_string().as_bytes(), max_keys, "incr")
            .await
    }

    async fn kv_update(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        max_keys: u64,
        op: &str,
    ) -> Result<i64, Error> {
        let mut invocation = SCRIPTS.kv_set.prepare_invoke();
        invocation
            .key(store_key(plugin))
            .arg(key)
            .arg(value)
            .arg(max_keys)
            .arg(op);
        match self.run::<i64>(plugin, None, &invocation).await {
            Err(Error::Redis { source, .. }) if script_error_name(&source) == Some("FULL") => {
                Err(Error::InvalidTask(format!(
                    "the store holds its cap of {max_keys} keys: delete some, or raise capabilities.kv.max_keys"
                )))
            }
            Err(Error::Redis { source, .. }) if op == "incr" => Err(Error::InvalidTask(format!(
                "the value at {key:?} is not an integer: {}",
                source.detail().unwrap_or_default()
            ))),
            other => other,
        }
    }

    /// Removes `key`; true if it was set.
    pub(crate) async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool, Error> {
        let removed: i64 = self
            .query(redis::cmd("HDEL").arg(store_key(plugin)).arg(key))
            .await?;
        Ok(removed == 1)
    }
}
