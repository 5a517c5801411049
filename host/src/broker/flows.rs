//! Flows: a parent task runs once, after every one of its children has
//! ended, with their outcomes; children may have children of their own, on
//! any queue. A chain (A, then B with A's result, then C with B's) is a flow
//! of one child per level.
//!
//! How a flow stays correct when its tasks live in different Redis Cluster
//! slots (docs/ARCHITECTURE.md, "Flows"):
//! - **Enqueue** writes each queue's nodes in one `flow_enqueue.lua` call
//!   (all or none), parents first (they only wait), leaves last; a refusal
//!   takes back what earlier calls wrote (`flow_discard.lua`).
//! - **A child's end** is noted in its own queue's flow outbox by the same
//!   script that ends it (`settle.lua`, `cancel.lua`, `delete.lua`,
//!   `archive_now.lua`, `reclaim.lua`), then delivered to the parent's queue
//!   by `flow_child_ended.lua`, which records one outcome per child (a
//!   second delivery changes nothing) and makes the parent pending when the
//!   last one arrives. Delivery follows at once; if its process dies first,
//!   the queue's trim finds the report in the outbox and delivers it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::client::unix_ms;
use super::scripts::SCRIPTS;
use super::{ArchiveLimits, Broker, Client, Enqueued, Error, NewTask, invocation, millis};
use crate::spec::TaskSpec;
use crate::task::{
    ErrorRecord, FailureKind, FlowChild, FlowParent, OnChildFailure, TaskMessage, TaskState,
};

/// The deepest a flow may nest (the root is at depth 0), unless the client
/// is configured otherwise.
pub const DEFAULT_MAX_FLOW_DEPTH: usize = 32;
/// The most tasks one flow may hold, unless the client is configured
/// otherwise.
pub const DEFAULT_MAX_FLOW_TASKS: usize = 10_000;

/// A task with the children it waits for.
///
/// ```
/// # use wasmq::{Flow, NewTask, OnChildFailure};
/// let resize = |size: u32| NewTask::from_value("image:resize", &size).unwrap();
/// let flow = Flow::new(NewTask::new("album:publish", "{}").unwrap())
///     .child(Flow::new(resize(64)))
///     .child_with(Flow::new(resize(1024)), OnChildFailure::Continue);
/// assert_eq!(flow.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Flow {
    task: NewTask,
    children: Vec<(Flow, OnChildFailure)>,
}

impl Flow {
    /// A flow of one task; add children with [`Flow::child`].
    pub fn new(task: NewTask) -> Flow {
        Flow {
            task,
            children: Vec::new(),
        }
    }

    /// Adds a child whose failure fails this task (it is archived, never
    /// run).
    pub fn child(self, child: Flow) -> Flow {
        self.child_with(child, OnChildFailure::FailParent)
    }

    /// Adds a child with its own failure policy.
    pub fn child_with(mut self, child: Flow, on_failure: OnChildFailure) -> Flow {
        self.children.push((child, on_failure));
        self
    }

    /// A chain: each task runs after the one before it completed, with its
    /// result as its only child outcome; a failure ends the chain (the
    /// tasks after it are archived, never run). The last task is the flow's
    /// root. Refuses an empty list.
    pub fn chain(tasks: impl IntoIterator<Item = NewTask>) -> Result<Flow, Error> {
        let mut chain: Option<Flow> = None;
        for task in tasks {
            let step = Flow::new(task);
            chain = Some(match chain {
                Some(before) => step.child(before),
                None => step,
            });
        }
        chain.ok_or_else(|| Error::InvalidFlow {
            path: "root".into(),
            reason: "a chain needs at least one task".into(),
        })
    }

    /// The flow a JSON text describes: one task object in the shape of
    /// `wasmq enqueue --file` with a `children` array of the same objects,
    /// at any depth (each child may say `"on_failure": "fail-parent" |
    /// "ignore" | "continue"`), or an array of task objects for a chain.
    /// `defaults` receives each task with its type and payload and may
    /// give it options that the object's own fields override. Refuses the
    /// whole text with the path of the first bad node.
    pub fn from_json(text: &str, defaults: &dyn Fn(NewTask) -> NewTask) -> Result<Flow, Error> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|err| Error::InvalidFlow {
                path: "root".into(),
                reason: format!("not JSON: {err}"),
            })?;
        if let serde_json::Value::Array(steps) = value {
            let mut tasks = Vec::with_capacity(steps.len());
            for (index, step) in steps.into_iter().enumerate() {
                let path = format!("[{index}]");
                let (task, children, _) = node_task(step, &path, defaults)?;
                if !children.is_empty() {
                    return Err(invalid(
                        &path,
                        "a chain's steps have no children: write a flow (one object) instead",
                    ));
                }
                tasks.push(task);
            }
            return Flow::chain(tasks);
        }
        flow_from_value(value, "root", 0, defaults).map(|(flow, _)| flow)
    }

    /// Children for a task that exists already: JSON text, an array of
    /// task objects as a flow's `children` (each with its own children and
    /// `on_failure`), refused whole with the path of the first bad node
    /// (`children[2].payload`). `defaults` as in [`Flow::from_json`].
    pub(crate) fn children_from_json(
        text: &str,
        defaults: &dyn Fn(NewTask) -> NewTask,
    ) -> Result<Vec<(Flow, OnChildFailure)>, Error> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|err| Error::InvalidFlow {
                path: "children".into(),
                reason: format!("not JSON: {err}"),
            })?;
        let serde_json::Value::Array(children) = value else {
            return Err(invalid(
                "children",
                "children are a JSON array of task objects",
            ));
        };
        if children.is_empty() {
            return Err(invalid("children", "the array holds no task"));
        }
        let mut flows = Vec::with_capacity(children.len());
        for (index, child) in children.into_iter().enumerate() {
            let (flow, policy) =
                flow_from_value(child, &format!("children[{index}]"), 1, defaults)?;
            flows.push((flow, policy.unwrap_or_default()));
        }
        Ok(flows)
    }

    /// How many tasks the flow holds.
    pub fn len(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![self];
        while let Some(flow) = stack.pop() {
            count += 1;
            stack.extend(flow.children.iter().map(|(child, _)| child));
        }
        count
    }

    /// The flow with every task descending from `context` (a plugin's
    /// flow continues the trace of the attempt that started it).
    pub(crate) fn traced(mut self, context: &crate::TraceContext) -> Flow {
        self.task = self.task.trace(context.clone());
        self.children = self
            .children
            .into_iter()
            .map(|(child, policy)| (child.traced(context), policy))
            .collect();
        self
    }

    /// Every task of the flow, root first.
    pub(crate) fn tasks(&self) -> Vec<&NewTask> {
        let mut tasks = Vec::new();
        let mut stack = vec![self];
        while let Some(flow) = stack.pop() {
            tasks.push(&flow.task);
            stack.extend(flow.children.iter().map(|(child, _)| child));
        }
        tasks
    }

    /// Always false: a flow holds at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Error {
    Error::InvalidFlow {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// A node's task, its children (JSON) and its failure policy.
fn node_task(
    value: serde_json::Value,
    path: &str,
    defaults: &dyn Fn(NewTask) -> NewTask,
) -> Result<(NewTask, Vec<serde_json::Value>, Option<OnChildFailure>), Error> {
    if !value.is_object() {
        return Err(invalid(
            path,
            format!("a task is a JSON object with a \"type\", not {value}"),
        ));
    }
    let mut spec: TaskSpec =
        serde_json::from_value(value).map_err(|err| invalid(path, err.to_string()))?;
    let children = spec.children.take().unwrap_or_default();
    let on_failure = spec.on_failure.take();
    let task = spec
        .into_task(defaults)
        .map_err(|reason| invalid(path, reason))?;
    Ok((task, children, on_failure))
}

fn flow_from_value(
    value: serde_json::Value,
    path: &str,
    depth: usize,
    defaults: &dyn Fn(NewTask) -> NewTask,
) -> Result<(Flow, Option<OnChildFailure>), Error> {
    // serde_json's parser stops far below a depth that could overflow the
    // stack here; the client's own cap is checked when the flow is enqueued.
    let (task, children, on_failure) = node_task(value, path, defaults)?;
    let mut flow = Flow::new(task);
    for (index, child) in children.into_iter().enumerate() {
        let child_path = if path == "root" {
            format!("children[{index}]")
        } else {
            format!("{path}.children[{index}]")
        };
        let (child, policy) = flow_from_value(child, &child_path, depth + 1, defaults)?;
        flow = flow.child_with(child, policy.unwrap_or_default());
    }
    if depth == 0 && on_failure.is_some() {
        return Err(invalid(
            "root.on_failure",
            "the root has no parent: `on_failure` belongs on children",
        ));
    }
    Ok((flow, on_failure))
}

/// The caps a client holds flows to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    /// The deepest a child may sit (the root is at depth 0).
    pub max_depth: usize,
    /// The most tasks in one flow.
    pub max_tasks: usize,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_depth: DEFAULT_MAX_FLOW_DEPTH,
            max_tasks: DEFAULT_MAX_FLOW_TASKS,
        }
    }
}

/// A flow the queues accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedFlow {
    /// The root task: it runs last.
    pub root: Enqueued,
    /// How many tasks the flow holds, the root included.
    pub tasks: usize,
}

/// A flow still to check, with its path, depth, and its parent's place
/// among the nodes built with this child's index and failure policy.
type Pending = (Flow, String, usize, Option<(usize, u32, OnChildFailure)>);

/// One node of a flow being enqueued.
struct Node {
    path: String,
    message: TaskMessage,
    delay_ms: u64,
    due_at_ms: i64,
}

/// The calls that write a flow's nodes, one per queue: all in one when the
/// flow lives on one queue; otherwise parents before leaves (so that no
/// task runs until its leaves are in), the root's queue first of all.
fn flow_calls(nodes: &[Node]) -> Vec<(&str, Vec<&Node>)> {
    let root_queue = nodes[0].message.queue.as_str();
    if nodes.iter().all(|node| node.message.queue == root_queue) {
        return vec![(root_queue, nodes.iter().collect())];
    }
    let mut calls = Vec::new();
    for leaves in [false, true] {
        let mut by_queue: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
        for node in nodes
            .iter()
            .filter(|node| node.message.children.is_empty() == leaves)
        {
            by_queue.entry(&node.message.queue).or_default().push(node);
        }
        if let Some(first) = by_queue.remove(root_queue) {
            calls.push((root_queue, first));
        }
        calls.extend(by_queue);
    }
    calls
}

/// The outbox field of the note a flow's first write leaves until the
/// last is done (`flow_enqueue.lua`).
fn unfinished_write_field(root: &str) -> String {
    format!("{root} w")
}

/// A task of a flow written after its first call, as that call's note
/// lists it: what the trim needs to report it to its parent and batch if
/// it was never written.
#[derive(Debug, Serialize, Deserialize)]
struct PlannedTask {
    queue: String,
    id: String,
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    parent: Option<FlowParent>,
    #[serde(default)]
    batch: Option<String>,
}

impl PlannedTask {
    fn of(message: &TaskMessage) -> PlannedTask {
        PlannedTask {
            queue: message.queue.clone(),
            id: message.id.clone(),
            task_type: message.task_type.clone(),
            parent: message.parent.clone(),
            batch: message.batch.clone(),
        }
    }
}

impl Client {
    /// Enqueues a flow, whole or not at all: every task is checked first
    /// (a bad one refuses the flow with its path, such as
    /// `children[3].children[0].id`), then written queue by queue, parents
    /// before their children; a task id found taken in Redis takes back
    /// what was written.
    pub async fn enqueue_flow(&self, flow: Flow) -> Result<EnqueuedFlow, Error> {
        self.enqueue_flow_as(flow, None).await
    }

    /// As [`Client::enqueue_flow`], every task given `lineage` (a plugin's
    /// flow: its tasks are follow-ups of the task that started it).
    pub(crate) async fn enqueue_flow_as(
        &self,
        flow: Flow,
        lineage: Option<crate::task::Lineage>,
    ) -> Result<EnqueuedFlow, Error> {
        let nodes = self.flow_nodes(flow, lineage)?;
        let root = &nodes[0].message;
        let root = Enqueued {
            id: root.id.clone(),
            queue: root.queue.clone(),
            state: if root.children.is_empty() {
                if nodes[0].delay_ms > 0 || nodes[0].due_at_ms > unix_ms(SystemTime::now()) {
                    TaskState::Scheduled
                } else {
                    TaskState::Pending
                }
            } else {
                TaskState::Waiting
            },
        };
        let tasks = nodes.len();
        self.write_flow(&nodes, None).await?;
        Ok(EnqueuedFlow { root, tasks })
    }

    /// Makes the running task `parent` (held with lease token `token`) wait
    /// for `children`, which its handler added, instead of completing: they
    /// are enqueued (their tasks given `lineage`), and it runs again once
    /// they have all ended, seeing the outcomes of every child it ever
    /// added. Returns how many tasks were enqueued. Nothing is written when
    /// a child is refused or the lease was lost ([`Error::LeaseLost`]).
    pub(crate) async fn await_children(
        &self,
        parent: &TaskMessage,
        token: &str,
        children: Vec<(Flow, OnChildFailure)>,
        lineage: Option<crate::task::Lineage>,
    ) -> Result<usize, Error> {
        let first = parent.children.len();
        let stack = children
            .into_iter()
            .enumerate()
            .rev()
            .map(|(index, (child, policy))| {
                let slot = u32::try_from(first + index).unwrap_or(u32::MAX);
                (
                    child,
                    format!("children[{index}]"),
                    1,
                    Some((0, slot, policy)),
                )
            })
            .collect();
        let waiting = Node {
            path: "the running task".into(),
            message: parent.clone(),
            delay_ms: 0,
            due_at_ms: 0,
        };
        let nodes = self.build_nodes(vec![waiting], stack, lineage)?;
        self.write_flow(
            &nodes,
            Some((token, nodes[0].message.children.len() - first)),
        )
        .await?;
        Ok(nodes.len() - 1)
    }

    /// Writes a flow's nodes queue by queue ([`flow_calls`]). A flow on one
    /// queue goes in one call, whole or not at all. Across queues, the first
    /// call (the root's queue's parents) also notes what the later ones
    /// write, so that a producer stopping between two calls leaves no
    /// parent waiting forever (the trim reports what was never written);
    /// the note goes once all are written, and a refused flow is taken
    /// back. With `awaiting` (its lease token and how many children it
    /// gains), the first node is a running task that now waits for its
    /// children: it is never taken back, and its note stays for the trim
    /// when a later call fails.
    async fn write_flow(
        &self,
        nodes: &[Node],
        awaiting: Option<(&str, usize)>,
    ) -> Result<(), Error> {
        let root = &nodes[0].message;
        let calls = flow_calls(nodes);
        let note = (calls.len() > 1).then(|| {
            let later: Vec<PlannedTask> = calls[1..]
                .iter()
                .flat_map(|(_, nodes)| nodes.iter().map(|node| PlannedTask::of(&node.message)))
                .collect();
            (
                unfinished_write_field(&root.id),
                serde_json::to_string(&later).expect("planned tasks always encode"),
            )
        });
        let mut written: Vec<(&str, Vec<String>)> = Vec::new();
        for (n, (queue, nodes)) in calls.iter().enumerate() {
            let (this_note, this_awaiting) = if n == 0 {
                (note.as_ref(), awaiting)
            } else {
                (None, None)
            };
            let outcome = match self.ensure_registered(queue).await {
                Ok(()) => {
                    self.broker
                        .flow_enqueue(queue, nodes, this_note, this_awaiting)
                        .await
                }
                Err(err) => Err(err),
            };
            if let Err(err) = outcome {
                if n > 0 && awaiting.is_none() {
                    for (queue, ids) in &written {
                        if let Err(undo) = self.broker.flow_discard(queue, ids).await {
                            tracing::warn!(queue, "taking back a refused flow's tasks: {undo}");
                        }
                    }
                    self.broker
                        .drop_unfinished_write_note(&root.queue, &root.id)
                        .await;
                }
                return Err(err);
            }
            let skip = usize::from(n == 0 && awaiting.is_some());
            written.push((
                queue,
                nodes[skip..]
                    .iter()
                    .map(|node| node.message.id.clone())
                    .collect(),
            ));
        }
        if note.is_some() {
            self.broker
                .drop_unfinished_write_note(&root.queue, &root.id)
                .await;
        }
        Ok(())
    }

    /// Checks every task of the flow and builds their messages, root first.
    fn flow_nodes(
        &self,
        flow: Flow,
        lineage: Option<crate::task::Lineage>,
    ) -> Result<Vec<Node>, Error> {
        self.build_nodes(
            Vec::new(),
            vec![(flow, "root".to_string(), 0, None)],
            lineage,
        )
    }

    /// Checks every task of `stack` (each flow with its path, depth and
    /// its parent's place in `nodes` with its index and policy) and builds
    /// their messages after `nodes` (tasks that exist already: their ids
    /// are taken, and they gain the children that name them).
    fn build_nodes(
        &self,
        mut nodes: Vec<Node>,
        mut stack: Vec<Pending>,
        lineage: Option<crate::task::Lineage>,
    ) -> Result<Vec<Node>, Error> {
        let limits = self.flow_limits;
        let mut taken: HashMap<(String, String), String> = nodes
            .iter()
            .map(|node| {
                let message = &node.message;
                (
                    (message.queue.clone(), message.id.clone()),
                    node.path.clone(),
                )
            })
            .collect();
        while let Some((flow, path, depth, parent)) = stack.pop() {
            if depth > limits.max_depth {
                return Err(invalid(
                    &path,
                    format!(
                        "sits {depth} levels below the root, deeper than the limit of {}",
                        limits.max_depth
                    ),
                ));
            }
            if nodes.len() + 1 > limits.max_tasks {
                return Err(invalid(
                    &path,
                    format!(
                        "the flow holds more than {} tasks, the limit: split it into several flows",
                        limits.max_tasks
                    ),
                ));
            }
            let Flow { mut task, children } = flow;
            task.validate(self.max_payload_bytes)
                .map_err(|err| invalid(&path, err.to_string()))?;
            if task.has_unique_options() {
                return Err(invalid(
                    &path,
                    "a flow's tasks take no unique, debounce or id reservation options",
                ));
            }
            if !children.is_empty() && task.is_delayed() {
                return Err(invalid(
                    &path,
                    "a parent runs when its children end: give the delay (process_in, process_at) to its children",
                ));
            }
            let id = task
                .id_ref()
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            if let Some(first) =
                taken.insert((task.queue_ref().to_string(), id.clone()), path.clone())
            {
                let id_path = if task.id_ref().is_some() {
                    format!("{path}.id")
                } else {
                    path.clone()
                };
                return Err(invalid(
                    &id_path,
                    format!(
                        "the id {id:?} is also the id of {first} in the same queue: ids are unique within a queue"
                    ),
                ));
            }
            task = task.id(id);
            if let Some(lineage) = &lineage {
                task = task.lineage(lineage.clone());
            }
            let (mut message, args) = task.into_message();
            let place = nodes.len();
            if let Some((parent_place, index, on_failure)) = parent {
                let parent: &mut Node = &mut nodes[parent_place];
                message.parent = Some(FlowParent {
                    queue: parent.message.queue.clone(),
                    id: parent.message.id.clone(),
                    index,
                    on_failure,
                });
                parent.message.children.push(FlowChild {
                    queue: message.queue.clone(),
                    id: message.id.clone(),
                    task_type: message.task_type.clone(),
                });
            }
            nodes.push(Node {
                path: path.clone(),
                message,
                delay_ms: args[2].parse().unwrap_or(0),
                due_at_ms: args[3].parse().unwrap_or(0),
            });
            // Reversed, so the first child is taken (and indexed) first.
            for (index, (child, on_failure)) in children.into_iter().enumerate().rev() {
                let child_path = if path == "root" {
                    format!("children[{index}]")
                } else {
                    format!("{path}.children[{index}]")
                };
                stack.push((
                    child,
                    child_path,
                    depth + 1,
                    Some((place, index as u32, on_failure)),
                ));
            }
        }
        // Children were taken in index order, so each parent lists them in
        // that order.
        Ok(nodes)
    }

    /// The flow `id` belongs to, from its root down, with each task's state
    /// (`None` when there is no task `id`). `queue` narrows the lookup of
    /// `id` as in [`Client::task`].
    pub async fn flow(&self, id: &str, queue: Option<&str>) -> Result<Option<FlowTree>, Error> {
        let Some(mut info) = self.broker.find_task(id, queue).await? else {
            return Ok(None);
        };
        // Up to the root (or the highest task still kept).
        let mut seen = HashSet::new();
        while let Some(parent) = info.message.parent.clone() {
            if !seen.insert((parent.queue.clone(), parent.id.clone())) {
                break;
            }
            match self.broker.task_info(&parent.queue, &parent.id).await? {
                Some(parent_info) => info = parent_info,
                None => break,
            }
        }
        let mut budget = self.flow_limits.max_tasks.max(1);
        let root = self.broker.flow_subtree(info, None, &mut budget).await?;
        Ok(Some(root))
    }

    /// Cancels every task of the flow `id` belongs to that has not run yet
    /// (waiting, pending, scheduled, retry): each is archived as
    /// `cancelled`. Tasks running now are left to end. Returns how many
    /// were cancelled.
    pub async fn cancel_flow(&self, id: &str, queue: Option<&str>) -> Result<Option<usize>, Error> {
        self.end_flow(id, queue, FlowEnd::Cancel).await
    }

    /// Deletes every task of the flow `id` belongs to that is not running,
    /// records and all. Returns how many were deleted.
    pub async fn delete_flow(&self, id: &str, queue: Option<&str>) -> Result<Option<usize>, Error> {
        self.end_flow(id, queue, FlowEnd::Delete).await
    }

    async fn end_flow(
        &self,
        id: &str,
        queue: Option<&str>,
        end: FlowEnd,
    ) -> Result<Option<usize>, Error> {
        let Some(tree) = self.flow(id, queue).await? else {
            return Ok(None);
        };
        // Top down: a parent ends before its children report to it.
        let mut order = Vec::new();
        let mut queue_of_nodes = vec![&tree];
        while let Some(node) = queue_of_nodes.pop() {
            order.push(node);
            queue_of_nodes.extend(node.children.iter().rev());
        }
        let mut ended = 0;
        for node in order {
            let Some(state) = node.state else { continue };
            let applies = match end {
                FlowEnd::Cancel => !matches!(
                    state,
                    TaskState::Active | TaskState::Archived | TaskState::Completed
                ),
                FlowEnd::Delete => state != TaskState::Active,
            };
            if !applies {
                continue;
            }
            let done = match end {
                FlowEnd::Cancel => self
                    .broker
                    .cancel(&node.queue, &node.id, ArchiveLimits::default())
                    .await
                    .map(|state| state.is_some())
                    .or_else(|err| match err {
                        Error::TaskFinished { .. } => Ok(false),
                        err => Err(err),
                    })?,
                FlowEnd::Delete => self
                    .broker
                    .act_on_tasks(
                        &node.queue,
                        super::BulkAction::Delete,
                        None,
                        std::slice::from_ref(&node.id),
                    )
                    .await?
                    .first()
                    .is_some_and(Option::is_some),
            };
            if done {
                ended += 1;
            }
        }
        Ok(Some(ended))
    }
}

#[derive(Debug, Clone, Copy)]
enum FlowEnd {
    Cancel,
    Delete,
}

/// One task of a flow as [`Client::flow`] draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowTree {
    /// The task's queue.
    pub queue: String,
    /// The task's id.
    pub id: String,
    /// The task's type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Where the task is now; `None` when its record is gone (completed
    /// and past its retention, or deleted).
    pub state: Option<TaskState>,
    /// What its failure does to its parent (children only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnChildFailure>,
    /// How it ended, as its parent recorded it (children only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ChildOutcome>,
    /// Its own children, in order.
    pub children: Vec<FlowTree>,
}

/// How a child of a flow parent ended, as the parent receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildOutcome {
    /// The child's queue.
    pub queue: String,
    /// The child's id.
    pub id: String,
    /// The child's task type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// How it ended.
    pub state: ChildEnd,
    /// Its result, when it completed.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub result: Option<Vec<u8>>,
    /// Its last error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    /// Its failure policy toward the parent.
    pub on_failure: OnChildFailure,
}

impl ChildOutcome {
    /// Whether a handler sees this outcome: every child's but a failed
    /// one's under the `ignore` policy.
    pub fn is_shown_to_parent(&self) -> bool {
        self.state == ChildEnd::Completed || self.on_failure != OnChildFailure::Ignore
    }
}

/// How a flow child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildEnd {
    /// It completed, with a result.
    Completed,
    /// It failed for good (or was cancelled): archived with its error.
    Archived,
    /// It was deleted before it ended.
    Deleted,
}

impl ChildEnd {
    /// The name used in flows' records and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildEnd::Completed => "completed",
            ChildEnd::Archived => "archived",
            ChildEnd::Deleted => "deleted",
        }
    }
}

/// A report waiting in a queue's flow outbox (`prelude.lua`'s
/// `note_flow_end`).
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    parent: Option<FlowParent>,
    #[serde(default)]
    batch: Option<String>,
    #[serde(rename = "type")]
    task_type: String,
    state: ChildEnd,
    #[serde(default)]
    error: Option<String>,
}

impl Broker {
    /// Writes one queue's nodes of a flow (`flow_enqueue.lua`): all or none.
    /// The first call of a flow across queues also leaves `note` (its
    /// outbox field and the tasks the later calls write).
    /// With `awaiting` (a lease token and how many children it gains), the
    /// first node is a running task that now waits for its children.
    async fn flow_enqueue(
        &self,
        queue: &str,
        nodes: &[&Node],
        note: Option<&(String, String)>,
        awaiting: Option<(&str, usize)>,
    ) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let mut call = invocation(&SCRIPTS.flow_enqueue, &keys);
        match note {
            Some((field, tasks)) => call.arg(field).arg(tasks),
            None => call.arg("").arg(""),
        };
        match awaiting {
            Some((token, _)) => call.arg(token).arg(nodes[0].message.children.len()),
            None => call.arg("").arg(""),
        };
        for (n, node) in nodes.iter().enumerate() {
            let children = match awaiting {
                Some((_, gained)) if n == 0 => gained,
                _ => node.message.children.len(),
            };
            // A TaskMessage holds only strings, numbers and raw JSON.
            let encoded =
                serde_json::to_string(&node.message).expect("a TaskMessage always encodes");
            call.arg(&node.message.id)
                .arg(encoded)
                .arg(children)
                .arg(node.delay_ms)
                .arg(node.due_at_ms);
        }
        let reply: Vec<Value> = self.run(queue, None, &call).await?;
        let text =
            |value: &Value| -> String { redis::from_redis_value_ref(value).unwrap_or_default() };
        match reply.as_slice() {
            [status] if text(status) == "ok" => Ok(()),
            [status] if text(status) == "lease-lost" => Err(Error::LeaseLost {
                queue: queue.to_string(),
                id: nodes[0].message.id.clone(),
            }),
            [status, id, rest @ ..] if text(status) == "duplicate-id" => {
                let id = text(id);
                let path = nodes
                    .iter()
                    .find(|node| node.message.id == id)
                    .map_or_else(|| "root".to_string(), |node| node.path.clone());
                let taken = match rest {
                    [state] => format!("a {} task", text(state)),
                    [_, remaining] => {
                        let ms: u64 = redis::from_redis_value_ref(remaining).unwrap_or_default();
                        format!(
                            "a reservation for {} more",
                            humantime::format_duration(std::time::Duration::from_millis(ms))
                        )
                    }
                    _ => "a task".to_string(),
                };
                Err(invalid(
                    &format!("{path}.id"),
                    format!(
                        "the id {id:?} is taken in queue {queue:?} by {taken}: choose another id, or leave it out"
                    ),
                ))
            }
            other => Err(Error::Corrupt(format!("flow enqueue answered {other:?}"))),
        }
    }

    /// Removes the note a flow's first write left (its last write is done,
    /// or the flow was taken back); a note left behind only costs the trim
    /// a check.
    async fn drop_unfinished_write_note(&self, queue: &str, root: &str) {
        let keys = self.queue_keys(queue);
        let dropped = self
            .query::<()>(
                redis::cmd("HDEL")
                    .arg(keys.flow_outbox())
                    .arg(unfinished_write_field(root)),
            )
            .await;
        if let Err(err) = dropped {
            tracing::debug!(queue, root, "a flow's write note stays for the trim: {err}");
        }
    }

    /// Reports the tasks of flows whose producer stopped between two of
    /// their writes (`notes`: each root's id and the tasks its later calls
    /// were to write, as the trim of `queue` found them) that were never
    /// written, as deleted, to their parents and batches; then drops the
    /// notes. A task that exists, or whose own report is waiting, is left
    /// alone.
    pub(crate) async fn settle_unfinished_writes(
        &self,
        queue: &str,
        notes: &[(String, Vec<u8>)],
        archive: ArchiveLimits,
    ) -> Result<(), Error> {
        for (root, tasks) in notes {
            let tasks: Vec<PlannedTask> = serde_json::from_slice(tasks).unwrap_or_default();
            let mut by_queue: BTreeMap<&str, Vec<&PlannedTask>> = BTreeMap::new();
            for task in &tasks {
                by_queue.entry(&task.queue).or_default().push(task);
            }
            let mut missing = Vec::new();
            for (task_queue, tasks) in by_queue {
                let keys = self.queue_keys(task_queue);
                let ids: Vec<&str> = tasks.iter().map(|task| task.id.as_str()).collect();
                let states: Vec<Option<String>> = self
                    .query(redis::cmd("HMGET").arg(keys.state()).arg(&ids))
                    .await?;
                let reports: Vec<Option<String>> = self
                    .query(redis::cmd("HMGET").arg(keys.flow_outbox()).arg(&ids))
                    .await?;
                for ((task, state), report) in tasks.into_iter().zip(states).zip(reports) {
                    if state.is_none() && report.is_none() {
                        missing.push(task);
                    }
                }
            }
            if !missing.is_empty() {
                tracing::warn!(
                    queue,
                    root,
                    count = missing.len(),
                    "a flow's producer stopped before writing all of it: its tasks never written are reported to their parents as deleted"
                );
            }
            for task in missing {
                if let Some(batch) = &task.batch {
                    self.batch_member_ended(batch, &task.queue, &task.id, ChildEnd::Deleted)
                        .await?;
                }
                if let Some(parent) = task.parent.clone() {
                    let report = Report {
                        parent: Some(parent.clone()),
                        batch: task.batch.clone(),
                        task_type: task.task_type.clone(),
                        state: ChildEnd::Deleted,
                        error: None,
                    };
                    let failed = self
                        .deliver(&task.queue, &task.id, parent, report, None, archive)
                        .await?;
                    if let Some((parent_queue, parent_id)) = failed {
                        self.deliver_flow_reports(&parent_queue, &[parent_id], archive)
                            .await?;
                    }
                }
            }
            let keys = self.queue_keys(queue);
            self.query::<()>(
                redis::cmd("HDEL")
                    .arg(keys.flow_outbox())
                    .arg(unfinished_write_field(root)),
            )
            .await?;
        }
        Ok(())
    }

    /// Takes back nodes of a refused flow (`flow_discard.lua`).
    async fn flow_discard(&self, queue: &str, ids: &[String]) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let mut call = invocation(&SCRIPTS.flow_discard, &keys);
        for id in ids {
            call.arg(id);
        }
        let _: i64 = self.run(queue, None, &call).await?;
        Ok(())
    }

    /// Forgets the finished children of flow parents of `queue` that were
    /// forgotten (`leftovers`: each parent's id and its children, JSON, as
    /// the queue's trim found them in the outbox), in whatever queue each
    /// child lives; a child that is itself a parent leaves its own children
    /// to its queue's next trim. Retention thus removes a finished flow
    /// whole. A child that has not finished is left alone.
    pub(crate) async fn forget_flow_leftovers(
        &self,
        queue: &str,
        leftovers: &[(String, Vec<u8>)],
    ) -> Result<(), Error> {
        let mut by_queue: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, children) in leftovers {
            // Written by prelude.lua from a stored message; a list that does
            // not decode has nothing to forget.
            let children: Vec<FlowChild> = serde_json::from_slice(children).unwrap_or_default();
            for child in children {
                by_queue.entry(child.queue).or_default().push(child.id);
            }
        }
        for (child_queue, ids) in by_queue {
            for chunk in ids.chunks(500) {
                let keys = self.queue_keys(&child_queue);
                let mut call = invocation(&SCRIPTS.flow_forget, &keys);
                for id in chunk {
                    call.arg(id);
                }
                let _: i64 = self.run(&child_queue, None, &call).await?;
            }
        }
        let fields: Vec<String> = leftovers
            .iter()
            .map(|(parent, _)| format!("{parent} f"))
            .collect();
        let keys = self.queue_keys(queue);
        self.query::<()>(redis::cmd("HDEL").arg(keys.flow_outbox()).arg(&fields))
            .await
    }

    /// Delivers the reports of tasks of `queue` that ended (`ids`; those
    /// with no report waiting are skipped) to their flow parents and
    /// batches, and a parent's own report in turn when it failed with its
    /// child.
    /// Delivering twice changes nothing.
    pub(crate) async fn deliver_flow_reports(
        &self,
        queue: &str,
        ids: &[String],
        archive: ArchiveLimits,
    ) -> Result<(), Error> {
        let mut work: Vec<(String, Vec<String>)> = vec![(queue.to_string(), ids.to_vec())];
        while let Some((queue, ids)) = work.pop() {
            let keys = self.queue_keys(&queue);
            let mut fields = Vec::with_capacity(ids.len() * 2);
            for id in &ids {
                fields.push(id.clone());
                fields.push(format!("{id} r"));
            }
            let values: Vec<Option<Vec<u8>>> = self
                .query(redis::cmd("HMGET").arg(keys.flow_outbox()).arg(&fields))
                .await?;
            // Every report at once (they are independent: each child's
            // outcome is its own, and a parent counts them in any order),
            // then one HDEL for all that were delivered.
            let deliveries = ids.iter().zip(values.chunks(2)).filter_map(|(id, pair)| {
                let report = pair[0].as_ref()?;
                let result = pair.get(1).cloned().flatten();
                Some(self.deliver_one(&queue, id, report, result, archive))
            });
            let outcomes = futures::future::join_all(deliveries).await;
            let mut delivered = Vec::new();
            for outcome in outcomes {
                let (id, failed_parent) = outcome?;
                delivered.push(format!("{id} r"));
                delivered.push(id);
                if let Some((parent_queue, parent_id)) = failed_parent {
                    work.push((parent_queue, vec![parent_id]));
                }
            }
            if !delivered.is_empty() {
                self.query::<()>(redis::cmd("HDEL").arg(keys.flow_outbox()).arg(&delivered))
                    .await?;
            }
        }
        Ok(())
    }

    /// Delivers every report waiting in `queue`'s outbox.
    pub(crate) async fn deliver_outbox(
        &self,
        queue: &str,
        archive: ArchiveLimits,
    ) -> Result<(), Error> {
        let keys = self.queue_keys(queue);
        let fields: Vec<String> = self
            .query(redis::cmd("HKEYS").arg(keys.flow_outbox()))
            .await?;
        let ids: Vec<String> = fields
            .into_iter()
            .filter(|field| !field.contains(' '))
            .collect();
        for chunk in ids.chunks(500) {
            self.deliver_flow_reports(queue, chunk, archive).await?;
        }
        Ok(())
    }

    /// The messages of `queue`'s tasks that have not ended and report their
    /// end to a flow parent or a batch.
    pub(crate) async fn unfinished_reporting_tasks(
        &self,
        queue: &str,
    ) -> Result<Vec<TaskMessage>, Error> {
        let keys = self.queue_keys(queue);
        let mut found = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<(String, Vec<u8>)>) = self
                .query(
                    redis::cmd("HSCAN")
                        .arg(keys.msg())
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(500),
                )
                .await?;
            let messages: Vec<TaskMessage> = page
                .into_iter()
                .filter_map(|(_, msg)| serde_json::from_slice::<TaskMessage>(&msg).ok())
                .filter(TaskMessage::reports_end)
                .collect();
            if !messages.is_empty() {
                let ids: Vec<&str> = messages.iter().map(|message| message.id.as_str()).collect();
                let states: Vec<Option<String>> = self
                    .query(redis::cmd("HMGET").arg(keys.state()).arg(&ids))
                    .await?;
                for (message, state) in messages.into_iter().zip(states) {
                    if !matches!(state.as_deref(), Some("completed" | "archived")) {
                        found.push(message);
                    }
                }
            }
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Reports the end (`deleted`) of tasks of `queue` removed with it to
    /// their flow parents (in other queues) and batches.
    pub(crate) async fn report_removed(
        &self,
        queue: &str,
        removed: Vec<TaskMessage>,
        archive: ArchiveLimits,
    ) -> Result<(), Error> {
        for message in removed {
            let report = Report {
                parent: message
                    .parent
                    .clone()
                    .filter(|parent| parent.queue != queue),
                batch: message.batch.clone(),
                task_type: message.task_type.clone(),
                state: ChildEnd::Deleted,
                error: None,
            };
            if let Some(batch) = &report.batch {
                self.batch_member_ended(batch, queue, &message.id, ChildEnd::Deleted)
                    .await?;
            }
            if let Some(parent) = report.parent.clone() {
                let failed = self
                    .deliver(queue, &message.id, parent, report, None, archive)
                    .await?;
                // A parent failed by this child reports its own end in turn.
                if let Some((parent_queue, parent_id)) = failed {
                    self.deliver_flow_reports(&parent_queue, &[parent_id], archive)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Delivers the report of task `id` of `queue` to its batch and its
    /// parent; returns the id, and the parent when it failed with it.
    async fn deliver_one(
        &self,
        queue: &str,
        id: &str,
        report: &[u8],
        result: Option<Vec<u8>>,
        archive: ArchiveLimits,
    ) -> Result<(String, Option<(String, String)>), Error> {
        let report = match serde_json::from_slice::<Report>(report) {
            Ok(report) => report,
            Err(err) => {
                tracing::warn!(queue, id, "an unreadable flow report was dropped: {err}");
                return Ok((id.to_string(), None));
            }
        };
        if let Some(batch) = &report.batch {
            self.batch_member_ended(batch, queue, id, report.state)
                .await?;
        }
        let failed_parent = match report.parent.clone() {
            Some(parent) => {
                self.deliver(queue, id, parent, report, result, archive)
                    .await?
            }
            None => None,
        };
        Ok((id.to_string(), failed_parent))
    }

    /// Delivers one report to its parent; returns the parent when it failed
    /// with it.
    async fn deliver(
        &self,
        queue: &str,
        id: &str,
        parent: FlowParent,
        report: Report,
        result: Option<Vec<u8>>,
        archive: ArchiveLimits,
    ) -> Result<Option<(String, String)>, Error> {
        let parent = &parent;
        let error: Option<ErrorRecord> = report
            .error
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let outcome = ChildOutcome {
            queue: queue.to_string(),
            id: id.to_string(),
            task_type: report.task_type,
            state: report.state,
            result: None,
            error: error.clone(),
            on_failure: parent.on_failure,
        };
        let failed = report.state != ChildEnd::Completed;
        let fails_parent = failed && parent.on_failure == OnChildFailure::FailParent;
        let parent_error = ErrorRecord {
            kind: FailureKind::ChildFailed,
            message: format!(
                "its child {id} ({}, queue {queue}) was {}{}",
                outcome.task_type,
                report.state.as_str(),
                error
                    .as_ref()
                    .map(|error| format!(": {}: {}", error.kind, error.message))
                    .unwrap_or_default()
            ),
            attempt: 0,
            at_ms: unix_ms(SystemTime::now()),
        };
        let keys = self.queue_keys(&parent.queue);
        let mut call = invocation(&SCRIPTS.flow_child_ended, &keys);
        call.arg(&parent.id)
            .arg(parent.index)
            .arg(serde_json::to_string(&outcome).expect("an outcome always encodes"))
            .arg(if result.is_some() { "1" } else { "" })
            .arg(result.unwrap_or_default())
            .arg(if fails_parent { "1" } else { "" })
            .arg(serde_json::to_string(&parent_error).expect("an ErrorRecord always encodes"))
            .arg(archive.max_size)
            .arg(millis(archive.max_age));
        let answer: String = self.run(&parent.queue, Some(&parent.id), &call).await?;
        Ok((answer == "parent-failed").then(|| (parent.queue.clone(), parent.id.clone())))
    }

    /// The outcomes of a flow parent's children, in order; a child with
    /// no outcome yet is left out.
    pub(crate) async fn flow_children(
        &self,
        message: &TaskMessage,
    ) -> Result<Vec<ChildOutcome>, Error> {
        if message.children.is_empty() {
            return Ok(Vec::new());
        }
        // Boxed: every task's path awaits this, and most tasks, having no
        // children, should not carry (and copy) the state of the read.
        Box::pin(self.read_flow_children(message)).await
    }

    /// Reads the outcomes of `message`'s children (see `flow_children`).
    async fn read_flow_children(&self, message: &TaskMessage) -> Result<Vec<ChildOutcome>, Error> {
        let keys = self.queue_keys(&message.queue);
        let mut fields = Vec::with_capacity(message.children.len() * 2);
        for index in 0..message.children.len() {
            fields.push(format!("{} {index}", message.id));
            fields.push(format!("{} {index} r", message.id));
        }
        let values: Vec<Option<Vec<u8>>> = self
            .query(redis::cmd("HMGET").arg(keys.children()).arg(&fields))
            .await?;
        let mut outcomes = Vec::new();
        for pair in values.chunks(2) {
            let Some(recorded) = &pair[0] else { continue };
            let mut outcome: ChildOutcome = serde_json::from_slice(recorded).map_err(|err| {
                Error::Corrupt(format!(
                    "a child outcome of task {} is unreadable: {err}",
                    message.id
                ))
            })?;
            outcome.result = pair.get(1).cloned().flatten();
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The tree below `info`, each child with the outcome its parent
    /// recorded; at most `budget` tasks are read.
    async fn flow_subtree(
        &self,
        info: crate::TaskInfo,
        outcome: Option<ChildOutcome>,
        budget: &mut usize,
    ) -> Result<FlowTree, Error> {
        // Breadth first with an explicit stack of (node path, info).
        let mut root = FlowTree {
            queue: info.message.queue.clone(),
            id: info.message.id.clone(),
            task_type: info.message.task_type.clone(),
            state: Some(info.state),
            on_failure: info.message.parent.as_ref().map(|parent| parent.on_failure),
            outcome,
            children: Vec::new(),
        };
        let mut frontier: Vec<(Vec<usize>, TaskMessage)> = vec![(Vec::new(), info.message)];
        while let Some((path, message)) = frontier.pop() {
            let outcomes: HashMap<String, ChildOutcome> = self
                .flow_children(&message)
                .await?
                .into_iter()
                .map(|outcome| (format!("{}\n{}", outcome.queue, outcome.id), outcome))
                .collect();
            let mut nodes = Vec::new();
            for (index, child) in message.children.iter().enumerate() {
                if *budget == 0 {
                    break;
                }
                *budget -= 1;
                let outcome = outcomes
                    .get(&format!("{}\n{}", child.queue, child.id))
                    .cloned();
                let info = self.task_info(&child.queue, &child.id).await.ok().flatten();
                let state = info.as_ref().map(|info| info.state);
                let on_failure = info
                    .as_ref()
                    .and_then(|info| info.message.parent.as_ref())
                    .map(|parent| parent.on_failure)
                    .or(outcome.as_ref().map(|outcome| outcome.on_failure));
                if let Some(info) = info
                    && !info.message.children.is_empty()
                {
                    let mut child_path = path.clone();
                    child_path.push(index);
                    frontier.push((child_path, info.message));
                }
                nodes.push(FlowTree {
                    queue: child.queue.clone(),
                    id: child.id.clone(),
                    task_type: child.task_type.clone(),
                    state,
                    on_failure,
                    outcome,
                    children: Vec::new(),
                });
            }
            let mut at = &mut root;
            for step in &path {
                at = &mut at.children[*step];
            }
            at.children = nodes;
        }
        Ok(root)
    }
}
