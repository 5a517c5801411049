"""Enqueuing follow-up tasks (capability ``enqueue``)."""

import json
import typing

from . import _bindings
from ._failure import CapabilityError


def enqueue(
    task_type: str,
    payload=None,
    *,
    queue: typing.Optional[str] = None,
    delay: typing.Optional[float] = None,
    id: typing.Optional[str] = None,  # noqa: A002 - the task's id
) -> str:
    """Enqueues a follow-up task and returns its id.

    `payload` is encoded as JSON; `queue` defaults to the current task's;
    `delay` is in seconds (a `datetime.timedelta` works too); `id` is
    refused if the queue holds a task with it. Raises `CapabilityError` when
    the host refuses (not granted, quota used up, a type or queue not
    granted, a duplicate id).
    """
    module = _bindings.enqueue
    if module is None:
        raise CapabilityError(
            "enqueue: the plugin's manifest does not grant `enqueue`; add [capabilities.enqueue] to wasmq.toml"
        )
    if hasattr(delay, "total_seconds"):
        delay = delay.total_seconds()
    delay_ms = None if delay is None else max(0, int(delay * 1000))
    try:
        body = json.dumps(payload).encode()
    except (TypeError, ValueError) as err:
        raise CapabilityError(f"enqueue: the payload does not encode as JSON: {err}") from None
    follow_up = module.FollowUp(
        task_type=task_type, payload=body, queue=queue, delay_ms=delay_ms, id=id
    )
    from componentize_py_types import Err

    try:
        return module.enqueue(follow_up)
    except Err as err:
        raise CapabilityError(str(err.value)) from None
