//! The services plugins reach through their capabilities, backed by the
//! broker: the key-value store and enqueuing follow-up tasks, within the
//! caps on each tree of follow-ups (depth, descendants) and on each
//! plugin's fleet-wide enqueue rate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::TraceContext;
use crate::broker::lineage::Reservation;
use crate::broker::{Broker, Client, Flow, NewTask};
use crate::sandbox::{
    ChildResult, EnqueueError, EnqueueGrant, FlowRequest, FollowUpRequest, HttpTracing, Rate,
    Services,
};
use crate::task::{Lineage, OnChildFailure, TaskMessage, TaskRef};

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

/// What an attempt's follow-ups and outgoing requests descend from.
#[derive(Default)]
pub(crate) struct AttemptTrace {
    /// The context its follow-ups carry.
    pub context: Option<TraceContext>,
    /// A span per outgoing request, when the worker traces.
    pub http: Option<Arc<dyn HttpTracing>>,
}

/// The children an attempt's handler added to its own task
/// (`flow.add-children`), held until the attempt ends: enqueued if it
/// succeeds (the task then waits for them), their places in the tree given
/// back if not.
#[derive(Default)]
pub(crate) struct AddedChildren {
    held: Mutex<HeldChildren>,
}

#[derive(Default)]
struct HeldChildren {
    children: Vec<(Flow, OnChildFailure)>,
    /// The root of the task's tree, and the places reserved in it.
    places: Option<(TaskRef, Vec<TaskRef>)>,
}

impl AddedChildren {
    /// Takes what was added: the children, and the places they hold.
    fn take(&self) -> HeldChildren {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True when the handler added children.
    pub fn is_empty(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .children
            .is_empty()
    }
}

/// [`Services`] on a Redis broker.
pub struct BrokerServices {
    broker: Broker,
    client: Client,
    ceilings: FollowUpCeilings,
    /// The worker's running tasks and its lease, for handlers' heartbeats.
    leases: Option<(Arc<super::lease::Running>, Duration)>,
}

impl BrokerServices {
    /// Services on `broker`, within `ceilings` on follow-ups.
    pub fn with_ceilings(broker: Broker, ceilings: FollowUpCeilings) -> Self {
        BrokerServices {
            client: Client::new(broker.clone()),
            broker,
            ceilings,
            leases: None,
        }
    }

    /// Lets handlers' heartbeats renew the leases of `running` tasks, for
    /// `lease` from now.
    pub(crate) fn with_leases(
        mut self,
        running: Arc<super::lease::Running>,
        lease: Duration,
    ) -> Self {
        self.leases = Some((running, lease));
        self
    }

    /// The services of one attempt of `task` by `plugin`: its follow-ups
    /// descend from it (in its tree and its trace), within the plugin's
    /// caps, and its requests are traced when `trace` says. A flow
    /// parent's attempt also reads its `children`'s outcomes here.
    ///
    /// Also returns where the children its handler adds to its own task
    /// are held (none without the `enqueue` grant).
    pub(crate) fn for_task(
        self: &Arc<Self>,
        task: &TaskMessage,
        plugin: &str,
        grant: Option<&EnqueueGrant>,
        trace: AttemptTrace,
        children: Vec<ChildResult>,
    ) -> (Arc<dyn Services>, Option<Arc<AddedChildren>>) {
        if grant.is_none() && children.is_empty() && trace.http.is_none() {
            // Without the grant the host refuses every enqueue itself.
            return (self.clone() as Arc<dyn Services>, None);
        }
        let added = grant.map(|_| Arc::new(AddedChildren::default()));
        let origin = FollowUpOrigin {
            parent: TaskRef::new(&task.queue, &task.id),
            ancestry: task.ancestry(),
            plugin: plugin.to_string(),
            caps: grant.map_or(self.ceilings, |grant| self.ceilings.narrowed(grant)),
            trace: trace.context,
        };
        let services = Arc::new(TaskServices {
            inner: self.clone(),
            origin: Arc::new(origin),
            children,
            http_tracing: trace.http,
            added: added.clone(),
        });
        (services, added)
    }

    /// Holds children a handler adds to its running task `parent` (whose
    /// ancestry is `ancestry`) in `added`, checked as a flow started by
    /// the plugin is (grant, quota, depth, rate, one place in the root's
    /// tree each); they are enqueued only if the attempt succeeds.
    async fn add_children_for(
        &self,
        request: FlowRequest,
        origin: &FollowUpOrigin,
        added: &AddedChildren,
    ) -> Result<u32, EnqueueError> {
        let (plugin, caps, trace) = (origin.plugin.as_str(), origin.caps, origin.trace.clone());
        let lineage = origin.next_generation("the children would be")?;
        let root = lineage.root.clone();
        let queue = request.default_queue.clone();
        let mut children =
            Flow::children_from_json(&request.json, &|task| task.queue(queue.clone()))
                .map_err(|err| EnqueueError::Failed(err.to_string()))?;
        if let Some(context) = &trace {
            children = children
                .into_iter()
                .map(|(child, policy)| (child.traced(context), policy))
                .collect();
        }
        let tasks: Vec<&NewTask> = children
            .iter()
            .flat_map(|(child, _)| child.tasks())
            .collect();
        check_granted(&tasks, &request)?;
        let count = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
        self.take_enqueue_token(plugin, caps.rate).await?;
        let places = self
            .reserve_places(
                &root,
                &request.default_queue,
                count,
                lineage.depth,
                caps.max_descendants,
            )
            .await?;
        let mut held = added.held.lock().unwrap_or_else(|e| e.into_inner());
        held.children.extend(children);
        held.places
            .get_or_insert_with(|| (root, Vec::new()))
            .1
            .extend(places);
        Ok(count)
    }

    /// Makes the running task `task` (held with lease token `token`) wait
    /// for the children its handler added, now that its attempt succeeded;
    /// returns how many tasks were enqueued. Nothing is written on an
    /// error: the caller may try again, or give the places back
    /// ([`BrokerServices::drop_added`]).
    pub(crate) async fn await_children(
        &self,
        task: &TaskMessage,
        token: &str,
        added: &AddedChildren,
    ) -> Result<usize, crate::broker::Error> {
        let children = added
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .children
            .clone();
        let lineage = task
            .ancestry()
            .child_of(TaskRef::new(&task.queue, &task.id));
        self.client
            .await_children(task, token, children, Some(lineage))
            .await
    }

    /// Gives back the places of children added by an attempt that did not
    /// succeed: they are not enqueued.
    pub(crate) async fn drop_added(&self, added: &AddedChildren) {
        if let Some((root, places)) = added.take().places {
            // Boxed: every failed attempt with children added awaits this
            // on its task's path, which should not carry (and copy) the
            // state of the Redis calls.
            Box::pin(self.release_places(&root, &places)).await;
        }
    }

    /// Starts a flow for an attempt of `parent` (whose ancestry is
    /// `ancestry`): every task must be of a type and on a queue the grant
    /// allows, and fit in what is left of the quota; the flow's tasks are
    /// follow-ups of the attempt's task, within its tree's caps (depth,
    /// the plugin's rate, the root's descendants: one place per task).
    async fn start_flow_for(
        &self,
        request: FlowRequest,
        origin: &FollowUpOrigin,
    ) -> Result<(String, u32), EnqueueError> {
        let (plugin, caps, trace) = (origin.plugin.as_str(), origin.caps, origin.trace.clone());
        let lineage = origin.next_generation("a flow's tasks would be")?;
        let root = lineage.root.clone();
        let mut flow = parse_plugin_flow(&request)?;
        if let Some(context) = &trace {
            flow = flow.traced(context);
        }
        let tasks = u32::try_from(flow.len()).unwrap_or(u32::MAX);
        let failed = |err: crate::broker::Error| EnqueueError::Failed(err.to_string());
        self.take_enqueue_token(plugin, caps.rate).await?;
        let reserved = self
            .reserve_places(
                &root,
                &request.default_queue,
                tasks,
                lineage.depth,
                caps.max_descendants,
            )
            .await?;
        match self.client.enqueue_flow_as(flow, Some(lineage)).await {
            Ok(enqueued) => Ok((enqueued.root.id, tasks)),
            Err(err) => {
                self.release_places(&root, &reserved).await;
                Err(failed(err))
            }
        }
    }

    /// Takes one start of `plugin`'s fleet-wide enqueue rate, or refuses
    /// (`denied`) with when the next is allowed.
    async fn take_enqueue_token(&self, plugin: &str, rate: Rate) -> Result<(), EnqueueError> {
        let wait = self
            .broker
            .take_rate_token(&format!("enqueue:{plugin}"), rate.count, rate.per)
            .await
            .map_err(|err| EnqueueError::Failed(err.to_string()))?;
        match wait {
            None => Ok(()),
            Some(wait) => Err(EnqueueError::Denied(format!(
                "plugin {plugin:?} is past its fleet-wide enqueue rate of {rate} (the next follow-up is allowed in {}; capabilities.enqueue.rate, or the worker's max-enqueue-rate)",
                humantime::format_duration(wait)
            ))),
        }
    }

    /// Reserves `place` among `root`'s descendants, or refuses (`denied`):
    /// the tree was stopped, or it holds its most descendants.
    async fn reserve_place(
        &self,
        root: &TaskRef,
        place: &TaskRef,
        depth: u32,
        max_descendants: u64,
    ) -> Result<(), EnqueueError> {
        let reservation = self
            .broker
            .reserve_descendant(root, place, depth, max_descendants)
            .await
            .map_err(|err| EnqueueError::Failed(err.to_string()))?;
        match reservation {
            Reservation::Reserved(_) => Ok(()),
            Reservation::Stopped(_) => Err(EnqueueError::Denied(format!(
                "the tree of root task {root} was stopped (wasmq task stop-tree): it takes no further follow-ups"
            ))),
            Reservation::Full(count) => Err(EnqueueError::Denied(format!(
                "root task {root} already has {count} descendants, the cap of {max_descendants} (capabilities.enqueue.max_descendants, or the worker's max-descendants)"
            ))),
        }
    }

    /// Reserves `count` places among `root`'s descendants for the tasks
    /// of a flow (named apart, since the flow's own ids may repeat ids
    /// elsewhere in the tree), or none.
    async fn reserve_places(
        &self,
        root: &TaskRef,
        queue: &str,
        count: u32,
        depth: u32,
        max_descendants: u64,
    ) -> Result<Vec<TaskRef>, EnqueueError> {
        let mut reserved = Vec::new();
        for n in 0..count {
            let place = TaskRef::new(queue, &format!("flow:{}:{n}", uuid::Uuid::new_v4()));
            if let Err(refusal) = self
                .reserve_place(root, &place, depth, max_descendants)
                .await
            {
                self.release_places(root, &reserved).await;
                return Err(refusal);
            }
            reserved.push(place);
        }
        Ok(reserved)
    }

    async fn release_places(&self, root: &TaskRef, places: &[TaskRef]) {
        for place in places {
            if let Err(err) = self.broker.release_descendant(root, place).await {
                tracing::warn!(root = %root, "a refused flow's place in its tree was not given back: {err}");
                return;
            }
        }
    }

    /// Enqueues a follow-up of `parent` (whose ancestry is `ancestry`)
    /// within `caps`: depth first, then the plugin's rate, then a place in
    /// the root's tree (in the tree's slot), then the task (in its queue's
    /// slot), giving the place back if the queue refuses it.
    async fn enqueue_follow_up(
        &self,
        task: FollowUpRequest,
        origin: &FollowUpOrigin,
    ) -> Result<String, EnqueueError> {
        let (plugin, caps, trace) = (origin.plugin.as_str(), origin.caps, origin.trace.clone());
        let lineage = origin.next_generation("a follow-up would be")?;
        let root = lineage.root.clone();
        let failed = |err: crate::broker::Error| EnqueueError::Failed(err.to_string());
        let id = task.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut new = NewTask::new(task.task_type, task.payload)
            .map_err(failed)?
            .queue(task.queue.clone())
            .id(id.clone())
            .lineage(lineage.clone());
        if let Some(context) = trace {
            new = new.trace(context);
        }
        if let Some(delay) = task.delay {
            new = new.process_in(delay);
        }
        self.take_enqueue_token(plugin, caps.rate).await?;
        let descendant = TaskRef::new(&task.queue, &id);
        self.reserve_place(&root, &descendant, lineage.depth, caps.max_descendants)
            .await?;
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

/// The flow a plugin asked for, checked against its grant: every task of
/// a granted type and queue, no more tasks than the quota has left.
fn parse_plugin_flow(request: &FlowRequest) -> Result<Flow, EnqueueError> {
    let queue = request.default_queue.clone();
    let flow = Flow::from_json(&request.json, &|task| task.queue(queue.clone()))
        .map_err(|err| EnqueueError::Failed(err.to_string()))?;
    check_granted(&flow.tasks(), request)?;
    Ok(flow)
}

/// Refuses tasks of a plugin's flow (or added children) past what is left
/// of its quota, or of a type or on a queue its grant does not allow.
fn check_granted(tasks: &[&NewTask], request: &FlowRequest) -> Result<(), EnqueueError> {
    if tasks.len() > request.max_tasks as usize {
        return Err(EnqueueError::Denied(format!(
            "the flow holds {} tasks, over the {} follow-ups left of the attempt's quota",
            tasks.len(),
            request.max_tasks
        )));
    }
    for task in tasks {
        if !request.task_types.is_empty()
            && !request.task_types.iter().any(|t| t == task.task_type())
        {
            return Err(EnqueueError::Denied(format!(
                "the flow has a task of type {:?}, not one the manifest grants ({})",
                task.task_type(),
                request.task_types.join(", ")
            )));
        }
        if !request.queues.is_empty() && !request.queues.iter().any(|q| q == task.queue_ref()) {
            return Err(EnqueueError::Denied(format!(
                "the flow has a task on queue {:?}, not one the manifest grants ({})",
                task.queue_ref(),
                request.queues.join(", ")
            )));
        }
    }
    Ok(())
}

/// The services of one attempt: follow-ups descend from its task, and a
/// flow parent's children's outcomes are at hand.
struct TaskServices {
    inner: Arc<BrokerServices>,
    origin: Arc<FollowUpOrigin>,
    children: Vec<ChildResult>,
    http_tracing: Option<Arc<dyn HttpTracing>>,
    added: Option<Arc<AddedChildren>>,
}

/// Where an attempt's follow-ups and flows come from: its task (their
/// parent) and its ancestry, its plugin and the plugin's caps, and the
/// trace context they continue.
struct FollowUpOrigin {
    parent: TaskRef,
    ancestry: Lineage,
    plugin: String,
    caps: FollowUpCeilings,
    trace: Option<TraceContext>,
}

impl FollowUpOrigin {
    /// The lineage of a task enqueued by this attempt, or the refusal when
    /// it would sit deeper below its root than the caps allow (`what`
    /// names what was asked: "a follow-up would be").
    fn next_generation(&self, what: &str) -> Result<Lineage, EnqueueError> {
        let lineage = self.ancestry.child_of(self.parent.clone());
        if lineage.depth > self.caps.max_depth {
            return Err(EnqueueError::Denied(format!(
                "{what} {} generations below the root task {}, past the cap of {} (capabilities.enqueue.max_depth, or the worker's max-follow-up-depth)",
                lineage.depth, lineage.root, self.caps.max_depth
            )));
        }
        Ok(lineage)
    }
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
        let (inner, origin) = (self.inner.clone(), self.origin.clone());
        Box::pin(async move { inner.enqueue_follow_up(task, &origin).await })
    }

    fn start_flow(
        &self,
        flow: FlowRequest,
    ) -> BoxFuture<'static, Result<(String, u32), EnqueueError>> {
        let (inner, origin) = (self.inner.clone(), self.origin.clone());
        Box::pin(async move { inner.start_flow_for(flow, &origin).await })
    }

    fn add_children(&self, flow: FlowRequest) -> BoxFuture<'static, Result<u32, EnqueueError>> {
        let Some(added) = self.added.clone() else {
            return Box::pin(async {
                Err(EnqueueError::Denied(
                    "the plugin's manifest does not grant `enqueue`".to_string(),
                ))
            });
        };
        let (inner, origin) = (self.inner.clone(), self.origin.clone());
        Box::pin(async move { inner.add_children_for(flow, &origin, &added).await })
    }

    fn progress(
        &self,
        queue: String,
        id: String,
        report: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.inner.progress(queue, id, report)
    }

    fn heartbeat(&self, queue: String, id: String) -> BoxFuture<'static, Result<(), String>> {
        self.inner.heartbeat(queue, id)
    }

    fn children(&self) -> Vec<ChildResult> {
        self.children.clone()
    }

    fn http_tracing(&self) -> Option<Arc<dyn HttpTracing>> {
        self.http_tracing.clone()
    }
}

impl Services for BrokerServices {
    fn heartbeat(&self, queue: String, id: String) -> BoxFuture<'static, Result<(), String>> {
        let Some((running, lease)) = self.leases.clone() else {
            return Box::pin(async { Ok(()) });
        };
        let broker = self.broker.clone();
        Box::pin(async move {
            let Some(task) = running.get(&queue, &id) else {
                return Ok(());
            };
            let asked_at = std::time::Instant::now();
            let held = [(id.clone(), task.token.to_string())];
            let lost = broker
                .extend_leases(&queue, lease, &held)
                .await
                .map_err(|err| err.to_string())?;
            if lost.is_empty() {
                task.extended(asked_at + lease);
            } else if !task.is_settling() {
                tracing::warn!(
                    queue,
                    id,
                    "lease lost (it expired and the task was taken back): stopping this attempt"
                );
                task.stop(super::lease::CancelReason::LeaseLost);
            }
            Ok(())
        })
    }

    fn progress(
        &self,
        queue: String,
        id: String,
        report: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            broker
                .record_progress(&queue, &id, &report)
                .await
                .map_err(|err| err.to_string())
        })
    }

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
