"""Flows: the running task's children's outcomes, starting flows, and adding children.

A flow parent runs after all its children ended; `children()` gives their
outcomes, in order (a child that failed under the ``ignore`` policy is left
out). `start(flow)` starts a flow (capability ``enqueue``: every task of it
counts against the quota, types and queues the manifest grants)::

    from wasmq import flow, handler

    @handler("report:start")
    def start(task, payload):
        return {"root": flow.start({
            "type": "report:build",
            "children": [{"type": "fetch", "payload": {"url": u}} for u in payload["urls"]],
        })}

    @handler("report:build")
    def build(task, payload):
        return {"pages": [child.json() for child in flow.children() if child.ok]}
"""

import json
import typing

from . import _bindings
from ._failure import CapabilityError


class Child:
    """How one child of the running task ended."""

    __slots__ = ("id", "queue", "task_type", "ok", "result", "error")

    def __init__(self, outcome):
        self.id: str = outcome.id
        self.queue: str = outcome.queue
        self.task_type: str = outcome.task_type
        #: True when it completed (`result` holds its result bytes).
        self.ok: bool = outcome.completed
        self.result: typing.Optional[bytes] = bytes(outcome.output) if outcome.completed else None
        #: Why it did not complete (failed, cancelled, deleted), otherwise.
        self.error: typing.Optional[str] = outcome.error

    def json(self):
        """Its result decoded from JSON; `CapabilityError` when it did not complete."""
        if not self.ok:
            raise CapabilityError(f"child {self.id} ({self.task_type}) did not complete: {self.error}")
        try:
            return json.loads(self.result)
        except ValueError as err:
            raise CapabilityError(f"the result of child {self.id} ({self.task_type}) is not JSON: {err}") from None

    def __repr__(self):
        state = "completed" if self.ok else f"failed: {self.error}"
        return f"Child({self.task_type} {self.id}, {state})"


def children() -> typing.List[Child]:
    """The outcomes of the running task's children, in order (empty unless it is a flow parent)."""
    module = _bindings.flow
    if module is None:
        return []
    return [Child(outcome) for outcome in module.children()]


def start(flow) -> str:
    """Starts a flow and returns its root's id.

    `flow` is a task object (a dict with ``type``, ``payload``, ``queue``,
    ``id``, ``max_retry``, ... and ``children``, at any depth), or a list of
    them for a chain, as `wasmq flow add` reads it; tasks without a queue go
    to the running task's. Raises `CapabilityError` when the host refuses
    it (not granted, over the quota, a type or queue not granted, a bad
    node, named by its path).
    """
    module = _bindings.flow
    if module is None:
        raise CapabilityError("start-flow: this host does not provide flows")
    try:
        text = json.dumps(flow).encode()
    except (TypeError, ValueError) as err:
        raise CapabilityError(f"start-flow: the flow does not encode as JSON: {err}") from None
    from componentize_py_types import Err

    try:
        return module.start_flow(text)
    except Err as err:
        raise CapabilityError(str(err.value)) from None


def add_children(children) -> int:
    """Adds children to the running task and returns how many tasks they hold.

    `children` is a list of task objects (dicts as `start` takes, each with
    its own ``children`` and an ``on_failure`` if it likes); tasks without
    a queue go to the running task's. They are enqueued only if this attempt
    succeeds: then the task waits until they have all ended and runs again
    (its return value this time is dropped, and the attempt not counted),
    and `children()` gives the outcomes of every child it ever added.
    Raises `CapabilityError` when the host refuses them.
    """
    module = _bindings.flow
    if module is None:
        raise CapabilityError("add-children: this host does not provide flows")
    try:
        text = json.dumps(children).encode()
    except (TypeError, ValueError) as err:
        raise CapabilityError(f"add-children: the children do not encode as JSON: {err}") from None
    from componentize_py_types import Err

    try:
        return module.add_children(text)
    except Err as err:
        raise CapabilityError(str(err.value)) from None
