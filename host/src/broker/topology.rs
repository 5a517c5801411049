//! Where a queue lives on a Redis Cluster: its hash slot and the nodes
//! that serve it (`wasmq queue ls --cluster`).

use redis::Value;

use super::{Broker, Error};

/// The nodes serving one queue's slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// The hash slot of the queue's `{hash tag}`.
    pub slot: u16,
    /// The master, as `HOST:PORT`.
    pub master: String,
    /// Its replicas, as `HOST:PORT`.
    pub replicas: Vec<String>,
}

impl Broker {
    /// Where `queue` lives: its slot and that slot's master and replicas.
    /// Only on a cluster.
    pub(crate) async fn queue_placement(&self, queue: &str) -> Result<Placement, Error> {
        if !self.is_cluster() {
            return Err(Error::InvalidTask(format!(
                "{} is not a Redis Cluster: slots and nodes exist only on a cluster, reached with a redis+cluster://HOST:PORT,… URL",
                self.url()
            )));
        }
        let keys = self.queue_keys(queue);
        let slot: u16 = self
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(keys.pending()))
            .await?;
        let ranges: Vec<Value> = self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let number = |value: Option<&Value>| match value {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            };
            let (Some(start), Some(end)) = (number(parts.first()), number(parts.get(1))) else {
                continue;
            };
            if !(start..=end).contains(&i64::from(slot)) {
                continue;
            }
            let mut nodes = parts[2..].iter().filter_map(node_address);
            let master = nodes.next().ok_or_else(|| {
                Error::Corrupt(format!("CLUSTER SLOTS names no master for slot {slot}"))
            })?;
            return Ok(Placement {
                slot,
                master,
                replicas: nodes.collect(),
            });
        }
        Err(Error::Corrupt(format!(
            "no node serves slot {slot} (is the cluster still forming?)"
        )))
    }
}

/// `HOST:PORT` of one node entry of `CLUSTER SLOTS`.
fn node_address(node: &Value) -> Option<String> {
    let Value::Array(fields) = node else {
        return None;
    };
    let host = match fields.first()? {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        _ => return None,
    };
    let Value::Int(port) = fields.get(1)? else {
        return None;
    };
    Some(format!("{host}:{port}"))
}
