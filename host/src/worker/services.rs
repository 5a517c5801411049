//! The services plugins reach through their capabilities, backed by the
//! broker: the key-value store and enqueuing follow-up tasks, within the
//! caps on each tree of follow-ups (depth, descendants) and on each
//! plugin's fleet-wide enqueue rate.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::broker::lineage::Reservation;
use crate::broker::{Broker, Client, NewTask};
use crate::sandbox::{EnqueueError, EnqueueGrant, FollowUpRequest, Rate, Services};
use crate::task::{Lineage, TaskMessage, TaskRef};

/// The worker's ceilings on follow-up tasks; a manifest can only lower
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUpCeilings {
    /// The deepest generation below its root a follow-up may be.
    pub max_depth: u32,
    /// Follow-ups one root may have, across generations and workers.
    pub max_descendants: u64,
    /// Follow-ups one plugin may enqueue, fleet-wide.
    pub rate: Rate,
}

impl Default for FollowUpCeilings {
    /// Depth 8, 10,000 descendants per root, 1,000 follow-ups per second
    /// per plugin.
    fn default() -> Self {
        FollowUpCeilings {
            max_depth: 8,
            max_descendants: 10_000,
            rate: Rate {
                count: 1000,
                per: Duration::from_secs(1),
            },
        }
    }
}

impl FollowUpCeilings {
    /// The caps of a plugin with this grant: the lower of each.
    fn narrowed(&self, grant: &EnqueueGrant) -> FollowUpCeilings {
        FollowUpCeilings {
            max_depth: grant
                .max_depth
                .map_or(self.max_depth, |depth| depth.min(self.max_depth)),
            max_descendants: grant
                .max_descendants
                .map_or(self.max_descendants, |most| most.min(self.max_descendants)),
            rate: grant.rate.map_or(self.rate, |rate| rate.min(self.rate)),
        }
    }
}

/// [`Services`] on a Redis broker.
pub struct BrokerServices {
    broker: Broker,
    client: Client,
    ceilings: FollowUpCeilings,
}

impl BrokerServices {
    /// Services on `broker`, within `ceilings` on follow-ups.
    pub fn with_ceilings(broker: Broker, ceilings: FollowUpCeilings) -> Self {
        BrokerServices {
            client: Client::new(broker.clone()),
            broker,
            ceilings,
        }
    }

    /// The services of one attempt of `task` by `plugin`: its follow-ups
    /// descend from it, within the plugin's caps.
    pub fn for_task(
        self: &Arc<Self>,
        task: &TaskMessage,
        plugin: &str,
        grant: Option<&EnqueueGrant>,
    ) -> Arc<dyn Services> {
        match grant {
            // Without the grant the host refuses every enqueue itself.
            None => self.clone() as Arc<dyn Services>,
            Some(grant) => Arc::new(TaskServices {
                inner: self.clone(),
                parent: TaskRef::new(&task.queue, &task.id),
                ancestry: task.ancestry(),
                plugin: plugin.to_string(),
                caps: self.ceilings.narrowed(grant),
            }),
        }
    }

    /// Enqueues a follow-up of `parent` (whose ancestry is `ancestry`)
    /// within `caps`: depth first, then the plugin's rate, then a place in
    /// the root's tree (in the tree's slot), then the task (in its queue's
    /// slot), giving the place back if the queue refuses it.
    async fn enqueue_follow_up(
        &self,
        task: FollowUpRequest,
        parent: TaskRef,
        ancestry: &Lineage,
        plugin: &str,
        caps: FollowUpCeilings,
    ) -> Result<String, EnqueueError> {
        let lineage = ancestry.child_of(parent);
        let root = lineage.root.clone();
        if lineage.depth > caps.max_depth {
            return Err(EnqueueError::Denied(format!(
                "a follow-up would be {} generations below its root task {root}, past the cap of {} (capabilities.enqueue.max_depth, or the worker's max-follow-up-depth)",
                lineage.depth, caps.max_depth
            )));
        }
        let failed = |err: crate::broker::Error| EnqueueError::Failed(err.to_string());
        let id = task.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut new = NewTask::new(task.task_type, task.payload)
            .map_err(failed)?
            .queue(task.queue.clone())
            .id(id.clone())
            .lineage(lineage.clone());
        if let Some(delay) = task.delay {
            new = new.process_in(delay);
        }
        let rate = caps.rate;
        if let Some(wait) = self
            .broker
            .take_rate_token(&format!("enqueue:{plugin}"), rate.count, rate.per)
            .await
            .map_err(failed)?
        {
            return Err(EnqueueError::Denied(format!(
                "plugin {plugin:?} is past its fleet-wide enqueue rate of {rate} (the next follow-up is allowed in {}; capabilities.enqueue.rate, or the worker's max-enqueue-rate)",
                humantime::format_duration(wait)
            )));
        }
        let descendant = TaskRef::new(&task.queue, &id);
        match self
            .broker
            .reserve_descendant(&root, &descendant, lineage.depth, caps.max_descendants)
            .await
            .map_err(failed)?
        {
            Reservation::Reserved(_) => {}
            Reservation::Stopped(_) => {
                return Err(EnqueueError::Denied(format!(
                    "the tree of root task {root} was stopped (wasmq task stop-tree): it takes no further follow-ups"
                )));
            }
            Reservation::Full(count) => {
                return Err(EnqueueError::Denied(format!(
                    "root task {root} already has {count} descendants, the cap of {} (capabilities.enqueue.max_descendants, or the worker's max-descendants)",
                    caps.max_descendants
                )));
            }
        }
        match self.client.enqueue(new).await {
            Ok(enqueued) => Ok(enqueued.id),
            Err(err) => {
                if let Err(release) = self.broker.release_descendant(&root, &descendant).await {
                    tracing::warn!(
                        root = %root,
                        task = %descendant,
                        error = %release,
                        "a refused follow-up's place in its tree was not given back; it counts until the tree expires"
                    );
                }
                Err(failed(err))
            }
        }
    }
}

/// The services of one attempt: follow-ups descend from its task.
struct TaskServices {
    inner: Arc<BrokerServices>,
    parent: TaskRef,
    ancestry: Lineage,
    plugin: String,
    caps: FollowUpCeilings,
}

impl Services for TaskServices {
    fn kv_get(
        &self,
        plugin: String,
        key: String,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> {
        self.inner.kv_get(plugin, key)
    }

    fn kv_set(
        &self,
        plugin: String,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.inner.kv_set(plugin, key, value, max_keys)
    }

    fn kv_delete(&self, plugin: String, key: String) -> BoxFuture<'static, Result<bool, String>> {
        self.inner.kv_delete(plugin, key)
    }

    fn kv_increment(
        &self,
        plugin: String,
        key: String,
        by: i64,
        max_keys: u64,
    ) -> BoxFuture<'static, Result<i64, String>> {
        self.inner.kv_increment(plugin, key, by, max_keys)
    }

    fn enqueue(&self, task: FollowUpRequest) -> BoxFuture<'static, Result<String, EnqueueError>> {
        let inner = self.inner.clone();
        let (parent, ancestry, plugin, caps) = (
            self.parent.clone(),
            self.ancestry.clone(),
            self.plugin.clone(),
            self.caps,
        );
        Box::pin(async move {
            inner
                .enqueue_follow_up(task, parent, &ancestry, &plugin, caps)
                .await
        })
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

    /// A follow-up with no attempt behind it (services used outside a
    /// worker's attempts): enqueued as it is, the root of its own tree.
    fn enqueue(&self, task: FollowUpRequest) -> BoxFuture<'static, Result<String, EnqueueError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut new = NewTask::new(task.task_type, task.payload)
                .map_err(|err| EnqueueError::Failed(err.to_string()))?
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
                .map_err(|err| EnqueueError::Failed(err.to_string()))
        })
    }
}
