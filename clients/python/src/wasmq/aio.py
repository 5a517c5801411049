"""The asyncio client: the same API as :class:`wasmq.Client`, awaited.

It mirrors client.py line for line: change the two together."""

from __future__ import annotations

import os
import asyncio
import time
from typing import Any, Iterable, Optional, Union

import redis.asyncio as redis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from . import _protocol as proto
from ._connection import DEFAULT_URL, Target, default_name, parse_url, translate
from .client import _no_script, _redirected, make_task
from ._protocol import Enqueued, Task, TaskInfo
from .errors import (
    InvalidTaskError,
    NotReplicatedError,
    TaskFailedError,
    TaskNotFoundError,
    WaitTimeoutError,
    WasmqError,
)

Outcome = Union[Enqueued, WasmqError]

class AsyncClient:
    """Enqueues tasks on the Redis a wasmq fleet serves, and reads them back
    (asyncio). Create it with ``await AsyncClient.connect(url, ...)``.

    ``url`` is ``redis://``, ``rediss://``, ``redis+cluster://``,
    ``rediss+cluster://``, ``redis+sentinel://…/MASTER`` or
    ``rediss+sentinel://…/MASTER`` (default ``$WASMQ_REDIS_URL``, then
    ``redis://127.0.0.1:6379``). TLS options: ``tls_ca`` (a CA file instead
    of the system's roots), ``tls_cert`` and ``tls_key`` (a client
    certificate), ``tls_skip_hostname_check``. With ``wait_replicas=N`` an
    enqueue returns only once N replicas have it (``WAIT``, up to
    ``wait_timeout`` seconds). Connections are named ``name`` (default
    ``wasmq:client:python:<host>:<pid>``).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        name: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        tls_skip_hostname_check: bool = False,
        wait_replicas: int = 0,
        wait_timeout: float = 5.0,
        max_payload_bytes: int = proto.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        url = url or os.environ.get("WASMQ_REDIS_URL") or DEFAULT_URL
        self._target: Target = parse_url(
            url,
            name=name or default_name(),
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_skip_hostname_check=tls_skip_hostname_check,
        )
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self.max_payload_bytes = max_payload_bytes
        self._registered: set[str] = set()
        self._nodes: dict[tuple, redis.Redis] = {}
        self._redis = self._connect()

    @classmethod
    async def connect(cls, url: Optional[str] = None, **options: Any) -> "AsyncClient":
        """A client with the options of :class:`wasmq.Client`, connected."""
        client = cls(url, **options)
        try:
            if client._target.mode == "cluster":
                await client._redis.initialize()
            await client._redis.ping()
        except Exception as err:  # noqa: BLE001 - every failure to connect is mapped
            await client.close()
            raise translate(err, client._target.shown) from err
        return client

    def _connect(self):
        target = self._target
        if target.mode == "single":
            host, port = target.nodes[0]
            return redis.Redis(host=host, port=port, db=target.db, **target.kwargs)
        if target.mode == "cluster":
            nodes = [ClusterNode(host, port) for host, port in target.nodes]
            return RedisCluster(startup_nodes=nodes, **target.kwargs)
        sentinel_kwargs = {
            k: v for k, v in target.kwargs.items() if k not in ("username", "password")
        }
        sentinel = Sentinel(target.nodes, sentinel_kwargs=sentinel_kwargs, **target.kwargs)
        return sentinel.master_for(target.master, db=target.db)

    async def close(self) -> None:
        """Closes every connection."""
        for node in self._nodes.values():
            await node.aclose()
        await self._redis.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ enqueue

    async def enqueue(self, task_or_type: Union[Task, str], payload: Any = proto._UNSET, **options: Any) -> Enqueued:
        """Enqueues one task: a :class:`Task`, or a type, a payload and the
        Task's options as keywords (queue, id, delay, at, max_retry,
        timeout, deadline, retention, unique, payload_json, traceparent,
        tracestate, group, debounce, aggregate, aggregate_after, max_group).
        Raises the error when it is refused."""
        outcome = (await self.enqueue_batch([make_task(task_or_type, payload, options)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def enqueue_batch(self, tasks: Iterable[Task]) -> list[Outcome]:
        """Enqueues many tasks in one round trip per queue (at most 500
        tasks or 4 MiB of them per script call). Each task is accepted or
        refused on its own: the outcomes come back in order, an
        :class:`Enqueued` or the error (not raised)."""
        outcomes: list[Optional[Outcome]] = []
        by_queue: dict[str, list[tuple[int, proto.Prepared]]] = {}
        for index, task in enumerate(tasks):
            try:
                prepared = proto.prepare(task, self.max_payload_bytes)
            except WasmqError as err:
                outcomes.append(err)
                continue
            outcomes.append(None)
            by_queue.setdefault(prepared.queue, []).append((index, prepared))
        for queue, entries in by_queue.items():
            try:
                await self._register(queue)
                replies = await self._run_enqueue(queue, [p for _, p in entries])
            except WasmqError as err:
                for index, _ in entries:
                    outcomes[index] = err
                continue
            for (index, _), outcome in zip(entries, replies):
                outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    async def _register(self, queue: str) -> None:
        if queue in self._registered:
            return
        try:
            await self._redis.sadd(proto.QUEUES_KEY, queue)
        except Exception as err:  # noqa: BLE001
            raise translate(err, self._target.shown) from err
        self._registered.add(queue)

    async def _run_enqueue(self, queue: str, prepared: list[proto.Prepared]) -> list[Outcome]:
        calls = proto.enqueue_calls(queue, prepared)
        commands = [command for command, _ in calls]
        if self.wait_replicas > 0:
            commands.append(("WAIT", self.wait_replicas, max(int(self.wait_timeout * 1000), 1)))
        replies = await self._pipeline(queue, commands, scripted=len(calls))
        shortfall = None
        if self.wait_replicas > 0:
            acknowledged = int(replies[-1])
            if acknowledged < self.wait_replicas:
                shortfall = acknowledged
        outcomes: list[Optional[Outcome]] = [None] * len(prepared)
        for (_, batch), reply in zip(calls, replies):
            if isinstance(reply, Exception):
                answers: list[Outcome] = [translate(reply, self._target.shown)] * len(batch)
            else:
                answers = proto.decode_call_reply(queue, [prepared[n] for n in batch], reply)
            for n, outcome in zip(batch, answers):
                if shortfall is not None and isinstance(outcome, Enqueued):
                    outcome = NotReplicatedError(self.wait_replicas, shortfall, self.wait_timeout, outcome)
                outcomes[n] = outcome
        return outcomes  # type: ignore[return-value]

    # ------------------------------------------------------------ the slot's node

    async def _node(self, queue: str) -> redis.Redis:
        """The client that reaches the server holding the queue's keys: on
        a cluster, a plain client for its slot's master, so that a pipeline
        (and a WAIT after a script) runs on one connection to that node."""
        if self._target.mode != "cluster":
            return self._redis
        node = self._redis.get_node_from_key(proto.key(queue, "pending"))
        address = (node.host, node.port)
        if address not in self._nodes:
            self._nodes[address] = redis.Redis(host=node.host, port=node.port, **self._target.kwargs)
        return self._nodes[address]

    async def _pipeline(self, queue: str, commands: list[tuple], scripted: int = 0) -> list[Any]:
        """Runs `commands` in one pipeline on the queue's node; the first
        `scripted` of them run the enqueue script (loaded if the server
        does not know it). Errors come back in place."""
        loaded = False
        for attempt in range(5):
            try:
                pipe = (await self._node(queue)).pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
            except Exception as err:  # noqa: BLE001
                raise translate(err, self._target.shown) from err
            if any(_redirected(reply) for reply in replies) and self._target.mode == "cluster":
                await self._redis.nodes_manager.initialize()
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            if scripted and not loaded and any(_no_script(reply) for reply in replies[:scripted]):
                try:
                    node = await self._node(queue)
                    for script in proto.SCRIPTS:
                        await node.script_load(script)
                except Exception as err:  # noqa: BLE001
                    raise translate(err, self._target.shown) from err
                loaded = True
                continue
            return replies
        raise translate(rex.ClusterDownError(f"the slot of queue {queue!r} kept moving"), self._target.shown)

    # ------------------------------------------------------------ reading

    async def task(self, id: str, queue: Optional[str] = None) -> Optional[TaskInfo]:
        """The task's record (state, attempts, last error, result), or
        None when there is no such task. Without a queue, every known
        queue is searched."""
        if queue is None:
            queue = await self._find_queue(id)
            if queue is None:
                return None
        proto.check_queue(queue)
        replies = await self._pipeline(queue, proto.lookup_commands(queue, id))
        for reply in replies:
            if isinstance(reply, Exception):
                raise translate(reply, self._target.shown)
        return proto.decode_task(queue, id, replies)

    async def _find_queue(self, id: str) -> Optional[str]:
        try:
            queues = sorted(q.decode() for q in await self._redis.smembers(proto.QUEUES_KEY))
            found = [q for q in queues if await self._redis.hexists(proto.key(q, "state"), id)]
        except Exception as err:  # noqa: BLE001
            raise translate(err, self._target.shown) from err
        if len(found) > 1:
            raise InvalidTaskError(f"task id {id!r} exists in several queues ({', '.join(found)}): name one")
        return found[0] if found else None

    async def wait(self, id: str, queue: Optional[str] = None, timeout: float = 30.0) -> TaskInfo:
        """Waits until the task is completed and returns its record (with
        its result). Raises TaskFailedError if it ends archived,
        TaskNotFoundError if it is (or becomes) gone, WaitTimeoutError
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            info = await self.task(id, queue)
            if info is None:
                raise TaskNotFoundError(
                    f"no task {id!r}{f' in queue {queue!r}' if queue else ''}: never enqueued, or gone "
                    "(completed with retention 0, past its retention, or deleted)"
                )
            if info.state == "completed":
                return info
            if info.state == "archived":
                raise TaskFailedError(info)
            if time.monotonic() + pause > deadline:
                raise WaitTimeoutError(
                    f"task {id!r} is still {info.state} after {timeout}s"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def wait_result(self, id: str, queue: Optional[str] = None, timeout: float = 30.0) -> Optional[bytes]:
        """The result bytes of the task once it completed (see :meth:`wait`)."""
        return (await self.wait(id, queue, timeout)).result
