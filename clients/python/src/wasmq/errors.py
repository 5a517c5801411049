"""The errors of the wasmq client: one class per case a caller branches on.

Every error is a :class:`WasmqError`. A refused task is a
:class:`DuplicateIdError`, a :class:`DuplicateUniqueError` or an
:class:`InvalidTaskError`; Redis out of reach is a
:class:`RedisUnreachableError`; a refused TLS certificate a
:class:`TlsError`; a durable write that replicas did not confirm in time a
:class:`NotReplicatedError`.
"""

from __future__ import annotations

from typing import Optional


class WasmqError(Exception):
    """Any error of the wasmq client."""


class InvalidTaskError(WasmqError, ValueError):
    """The task (or one of its options) is not acceptable; nothing was sent."""


class DuplicateIdError(WasmqError):
    """A task with this id is already kept in the queue, or its id is still
    reserved."""

    def __init__(
        self,
        queue: str,
        id: str,
        state: Optional[str] = None,
        reserved_for: Optional[float] = None,
    ) -> None:
        self.queue = queue
        self.id = id
        #: The state of the task holding the id (None: it is gone but the id
        #: is reserved).
        self.state = state
        #: Seconds the id stays reserved, when it is.
        self.reserved_for = reserved_for
        if state is None:
            message = (
                f"duplicate task id {id!r}: its task in queue {queue!r} has finished, but the id "
                f"stays reserved for {reserved_for or 0:.0f}s more"
            )
        else:
            message = (
                f"duplicate task id {id!r}: queue {queue!r} already holds it as a {state} task; "
                f"delete it with `wasmq task delete {id} --queue {queue}` to reuse the id"
            )
        super().__init__(message)


class DuplicateUniqueError(WasmqError):
    """An equal task (same queue, type and payload) holds the unique lock."""

    def __init__(self, queue: str, task_type: str, holder: str, remaining: float) -> None:
        self.queue = queue
        self.task_type = task_type
        #: The id of the task holding the lock.
        self.holder = holder
        #: Seconds the lock still holds.
        self.remaining = remaining
        super().__init__(
            f"duplicate task: an equal {task_type!r} task (same queue and payload) is already held "
            f"by task {holder} in queue {queue!r} for {remaining:.3f}s more"
        )


class RedisUnreachableError(WasmqError, ConnectionError):
    """Redis did not answer, or the connection broke: retrying later may work."""


class TlsError(WasmqError):
    """A TLS connection to Redis failed: the certificate was refused (the
    message says why) or the TLS options are unusable."""


class NotReplicatedError(WasmqError):
    """A durable write reached the master but fewer replicas than asked for
    acknowledged it in time: it is in Redis, but a failover now could lose
    it."""

    def __init__(self, wanted: int, acknowledged: int, timeout: float, enqueued=None) -> None:
        self.wanted = wanted
        self.acknowledged = acknowledged
        self.timeout = timeout
        #: What was written (an Enqueued), when the write was an enqueue.
        self.enqueued = enqueued
        super().__init__(
            f"the write is on the master but only {acknowledged} of the {wanted} replica(s) asked "
            f"for acknowledged it within {timeout}s: a failover now could lose it"
        )


class TaskNotFoundError(WasmqError, LookupError):
    """No such task: never enqueued, or gone (completed with retention 0,
    past its retention, or deleted)."""


class TaskFailedError(WasmqError):
    """The task ended archived (failed for good, or cancelled) instead of
    completed; ``last_error`` says why."""

    def __init__(self, info) -> None:
        self.info = info
        self.last_error = info.last_error
        reason = (
            f"{info.last_error.kind}: {info.last_error.message}"
            if info.last_error
            else "no error recorded"
        )
        super().__init__(f"task {info.id} in queue {info.queue!r} was archived ({reason})")


class WaitTimeoutError(WasmqError, TimeoutError):
    """The task did not finish within the time given."""
