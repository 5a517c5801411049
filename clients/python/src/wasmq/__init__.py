"""Enqueue wasmq tasks from Python.

wasmq runs background tasks from Redis queues, each in a sandboxed
WebAssembly plugin. This package is a producer: it puts tasks on the queues
(speaking the documented protocol, docs/PROTOCOL.md, with the same Lua
scripts as the wasmq host), looks tasks up and waits for their results.

    from wasmq import Client

    client = Client("redis://127.0.0.1:6379")
    task = client.enqueue("email:send", {"to": "a@example.com"}, queue="critical", unique=60)
    print(client.wait(task.id, queue="critical", timeout=10).result_json())

:class:`AsyncClient` is the same API for asyncio.
"""

from ._protocol import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RETRY,
    DEFAULT_QUEUE,
    DEFAULT_RETENTION,
    ENQUEUE_SHA,
    Enqueued,
    ErrorRecord,
    Progress,
    Task,
    TaskInfo,
)
from .aio import AsyncClient
from .client import Client
from .errors import (
    DuplicateIdError,
    DuplicateUniqueError,
    InvalidTaskError,
    NotReplicatedError,
    RedisUnreachableError,
    TaskFailedError,
    TaskNotFoundError,
    TlsError,
    WaitTimeoutError,
    WasmqError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RETRY",
    "DEFAULT_QUEUE",
    "DEFAULT_RETENTION",
    "DuplicateIdError",
    "DuplicateUniqueError",
    "ENQUEUE_SHA",
    "Enqueued",
    "ErrorRecord",
    "InvalidTaskError",
    "NotReplicatedError",
    "Progress",
    "RedisUnreachableError",
    "Task",
    "TaskFailedError",
    "TaskInfo",
    "TaskNotFoundError",
    "TlsError",
    "WaitTimeoutError",
    "WasmqError",
]
