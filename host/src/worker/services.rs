//! The services plugins reach through their capabilities, backed by the
//! broker: the key-value store and enqueuing follow-up tasks.

use futures::future::BoxFuture;

use crate::broker::{Broker, Client, NewTask};
use crate::sandbox::{FollowUpRequest, Services};

/// [`Services`] on a Redis broker.
pub struct BrokerServices {
    broker: Broker,
    client: Client,
}

impl BrokerServices {
    /// Services on `broker`.
    pub fn new(broker: Broker) -> Self {
        BrokerServices {
            client: Client::new(broker.clone()),
            broker,
        }
    }
}

impl Services for BrokerServices {
    fn kv_get(
        &self,
        plugin: String,
        key: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            broker
                .kv_get(&plugin, &key)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn kv_set(
        &self,
        plugin: String,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            broker
                .kv_set(&plugin, &key, &value, max_keys)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn kv_delete(&self, plugin: String, key: String) -> BoxFuture<'static, Result<bool, String>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            broker
                .kv_delete(&plugin, &key)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn kv_increment(
        &self,
        plugin: String,
        key: String,
        by: i64,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            broker
                .kv_increment(&plugin, &key, by, max_keys)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn enqueue(&self, task: FollowUpRequest) -> BoxFuture<'static, Result<String, String>> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut new = NewTask::new(task.task_type, task.payload)
                .map_err(|err| err.to_string())?
                .queue(task.queue);
            if let Some(delay) = task.delay {
                new = new.process_in(delay);
            }
            if let Some(id) = task.id {
                new = new.id(id);
            }
            client
                .enqueue(new)
                .await
                .map(|enqueued| enqueued.id)
                .map_err(|err| err.to_string())
        })
    }
}
