"""The wasmq Redis protocol, version 1 (docs/PROTOCOL.md), without I/O.

Everything the sync and asyncio clients share: the bounds a task is checked
against (the same as the Rust client's), the task message and the script
arguments built from a task, the script text and its SHA1, the keys of a
queue, and the decoding of what Redis answers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Callable, Optional, Sequence, Union

from .errors import (
    DuplicateIdError,
    DuplicateUniqueError,
    InvalidTaskError,
    WasmqError,
)

#: The queue a task goes to when none is named.
DEFAULT_QUEUE = "default"
#: Retries after the first attempt, unless the task says otherwise.
DEFAULT_MAX_RETRY = 25
#: How long (seconds) a completed task and its result are kept.
DEFAULT_RETENTION = 600.0
#: The largest payload a client accepts (bytes of JSON text), by default.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: The deepest nesting of arrays and objects a payload may have.
MAX_JSON_DEPTH = 64
#: The longest task type, in bytes.
MAX_TASK_TYPE_BYTES = 256
#: The longest task id, in bytes.
MAX_ID_BYTES = 256
#: The longest queue name, in bytes.
MAX_QUEUE_BYTES = 128
#: The ceiling on every delay, timeout, retention and lock, and on how far
#: ahead a time may lie: 100 years, in seconds.
MAX_DELAY_SECONDS = 100 * 31_557_600
#: Tasks per script call in a batch.
BATCH_CHUNK = 500
#: Most characters of arguments one enqueue.lua call carries (a larger task
#: goes alone): Redis runs a script call whole, holding every other client.
BATCH_CHUNK_BYTES = 4 * 1024 * 1024
#: The largest max_retry (a u32 in the message).
MAX_RETRY_CEILING = 2**32 - 1

#: The structures of a queue, in the order every script receives them.
QUEUE_PARTS = (
    "pending", "active", "scheduled", "retry", "archived", "completed",
    "msg", "state", "attempts", "owner", "error", "result",
    "unique", "unique_until", "paused", "reserved_ids", "stats",
)
#: The registry of queue names.
QUEUES_KEY = "wasmq:queues"
#: The states whose ZSET holds a time for the task, in lookup order.
TIMED_STATES = ("active", "scheduled", "retry", "archived", "completed")

Seconds = Union[int, float, timedelta]
When = Union[int, float, datetime]


def _script_text(name: str) -> str:
    scripts = resources.files("wasmq") / "scripts"
    prelude = (scripts / "prelude.lua").read_text(encoding="utf-8")
    body = (scripts / name).read_text(encoding="utf-8")
    # As the host builds it (broker/scripts.rs): prelude, newline, body.
    return f"{prelude}\n{body}"


#: The enqueue script, exactly as the host sends it, and its SHA1.
ENQUEUE_SCRIPT = _script_text("enqueue.lua")
ENQUEUE_SHA = hashlib.sha1(ENQUEUE_SCRIPT.encode("utf-8")).hexdigest()
#: The script of debounced enqueues, and its SHA1.
DEBOUNCE_SCRIPT = _script_text("debounce.lua")
DEBOUNCE_SHA = hashlib.sha1(DEBOUNCE_SCRIPT.encode("utf-8")).hexdigest()
#: The script of aggregated enqueues, and its SHA1.
AGGREGATE_SCRIPT = _script_text("aggregate.lua")
AGGREGATE_SHA = hashlib.sha1(AGGREGATE_SCRIPT.encode("utf-8")).hexdigest()
#: Every script a client sends, loaded when the server does not know one.
SCRIPTS = (ENQUEUE_SCRIPT, DEBOUNCE_SCRIPT, AGGREGATE_SCRIPT)
#: The most tasks one aggregated batch may hold.
MAX_AGGREGATE_GROUP = 100_000

#: The most bytes of a debounce key.
MAX_DEBOUNCE_KEY_BYTES = 256
#: How much longer than its delay a debounce key is held (one day, ms).
DEBOUNCE_LOCK_EXTRA_MS = 86_400_000


def queue_keys(queue: str) -> list[str]:
    """The seventeen keys of a queue, in script order."""
    return [f"wasmq:{{{queue}}}:{part}" for part in QUEUE_PARTS]


def key(queue: str, part: str) -> str:
    """One key of a queue."""
    return f"wasmq:{{{queue}}}:{part}"


# ---------------------------------------------------------------- bounds


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text (0 for a scalar),
    counted outside strings, without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _is_whitespace(char: str) -> bool:
    # Rust's char::is_whitespace (Unicode White_Space); Python's isspace
    # adds U+001C..U+001F, which are control characters anyway.
    return char.isspace() or char == "\u0085"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=1024)
def check_task_type(task_type: Any) -> str:
    if not isinstance(task_type, str):
        raise InvalidTaskError(f"the task type must be a string, not {type(task_type).__name__}")
    if task_type.strip() == "":
        raise InvalidTaskError("the task type is empty: name one, such as email:send")
    size = _utf8_len(task_type)
    if size > MAX_TASK_TYPE_BYTES:
        raise InvalidTaskError(
            f"the task type {task_type[:32]!r}... is {size} bytes long, over the "
            f"{MAX_TASK_TYPE_BYTES}-byte limit; use a short name such as email:send"
        )
    bad = next((c for c in task_type if _is_control(c)), None)
    if bad is not None:
        raise InvalidTaskError(
            f"the task type {task_type!r} contains the control character {bad!r}: "
            "use letters, digits and punctuation"
        )
    return task_type


@functools.lru_cache(maxsize=1024)
def check_queue(queue: Any) -> str:
    if not isinstance(queue, str):
        raise InvalidTaskError(f"the queue name must be a string, not {type(queue).__name__}")
    size = _utf8_len(queue)
    if size == 0 or size > MAX_QUEUE_BYTES:
        raise InvalidTaskError(f"queue name {queue!r} must be 1 to {MAX_QUEUE_BYTES} bytes long")
    bad = next(
        (c for c in queue if _is_whitespace(c) or _is_control(c) or c in "{}=,"), None
    )
    if bad is not None:
        raise InvalidTaskError(
            f"queue name {queue!r} contains {bad!r}: use letters, digits and punctuation "
            "other than braces, '=' and ',' (--queues uses them to list queues with weights)"
        )
    return queue


#: The most bytes of a group's name.
MAX_GROUP_BYTES = 128


def check_group(group: Any) -> str:
    if not isinstance(group, str):
        raise InvalidTaskError(f"a group must be a string, not {type(group).__name__}")
    if group == "" or _utf8_len(group) > MAX_GROUP_BYTES or any(_is_control(c) for c in group):
        raise InvalidTaskError(
            f"group {group!r} must be 1 to {MAX_GROUP_BYTES} bytes with no control characters"
        )
    return group


def check_id(task_id: Any) -> str:
    if not isinstance(task_id, str):
        raise InvalidTaskError(f"a task id must be a string, not {type(task_id).__name__}")
    if (
        task_id == ""
        or _utf8_len(task_id) > MAX_ID_BYTES
        or any(_is_whitespace(c) or _is_control(c) for c in task_id)
    ):
        raise InvalidTaskError(
            f"task id {task_id!r} must be 1 to {MAX_ID_BYTES} bytes with no whitespace"
        )
    return task_id


_HEX = frozenset("0123456789abcdef")
MAX_TRACESTATE_BYTES = 512


def check_trace(traceparent: Any, tracestate: Any) -> Optional[str]:
    """The message's ``trace`` object as JSON text, or None without a
    traceparent; checks both as the Rust client does (a version-00 W3C
    traceparent, a printable-ASCII tracestate of at most 512 bytes)."""
    if traceparent is None:
        if tracestate is not None:
            raise InvalidTaskError("a tracestate goes with a traceparent: give both")
        return None
    if not isinstance(traceparent, str):
        raise InvalidTaskError(f"a traceparent must be a string, not {type(traceparent).__name__}")
    value = traceparent.strip()
    parts = value.split("-")
    lengths = [2, 32, 16, 2]
    well_formed = len(parts) == 4 and all(
        len(part) == n and set(part) <= _HEX for part, n in zip(parts, lengths)
    )
    why = None
    if not well_formed:
        why = "is not well formed"
    elif parts[0] != "00":
        why = "is of a version other than 00"
    elif set(parts[1]) == {"0"}:
        why = "has an all-zero trace id"
    elif set(parts[2]) == {"0"}:
        why = "has an all-zero parent span id"
    if why is not None:
        raise InvalidTaskError(
            f"the traceparent {value[:64]!r} {why}: give the W3C form 00-<32 hex digits trace id>-"
            "<16 hex digits parent span id>-<2 hex digits flags>, such as "
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        )
    parts = ['{"traceparent":', _string(value)]
    if tracestate is not None:
        if not isinstance(tracestate, str):
            raise InvalidTaskError(f"a tracestate must be a string, not {type(tracestate).__name__}")
        state = tracestate.strip()
        if len(state) > MAX_TRACESTATE_BYTES or any(not 0x20 <= ord(c) < 0x7F for c in state):
            raise InvalidTaskError(
                f"the tracestate {state[:64]!r} must be printable ASCII of at most "
                f"{MAX_TRACESTATE_BYTES} bytes (list-members such as vendor=value, separated by commas)"
            )
        if state:
            parts += [',"tracestate":', _string(state)]
    return "".join(parts) + "}"


def _seconds(what: str, value: Seconds) -> float:
    """A duration in seconds (a number or a timedelta), not negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise InvalidTaskError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidTaskError(f"{what} must be a number of seconds of at least 0, not {value!r}")
    if seconds > MAX_DELAY_SECONDS:
        raise InvalidTaskError(f"{what} of {value!r} seconds is over the ceiling of 100 years")
    return seconds


def _millis(value: Seconds) -> int:
    """Whole milliseconds, truncated, as the Rust client counts them."""
    if isinstance(value, timedelta):
        return value // timedelta(milliseconds=1)
    return int(value * 1000)


def _unix_ms(what: str, value: When) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, datetime)):
        raise InvalidTaskError(
            f"{what} must be a datetime or unix seconds, not {value!r}"
        )
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    if math.isnan(seconds):
        raise InvalidTaskError(f"{what} must be a time, not NaN")
    if seconds > time.time() + MAX_DELAY_SECONDS:
        raise InvalidTaskError(f"{what} is more than 100 years from now; give a nearer time")
    return math.floor(seconds * 1000)


#: Compact JSON, as serde_json writes it; NaN and infinities refused.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
#: A JSON string.
_string = json.JSONEncoder(ensure_ascii=False).encode


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def payload_text(payload: Any, payload_json: Optional[str], task_type: str) -> str:
    """The payload's JSON text: `payload_json` checked and trimmed as the
    Rust client keeps it, or `payload` encoded compactly."""
    if payload_json is not None:
        if not isinstance(payload_json, str):
            raise InvalidTaskError("payload_json must be JSON text (a str)")
        try:
            json.loads(payload_json, parse_constant=_reject_constant)
        except ValueError as err:
            raise InvalidTaskError(
                f"the payload of a {task_type!r} task is not JSON: {err}"
            ) from None
        return payload_json.strip(" \t\n\r")
    try:
        return _compact(payload)
    except (TypeError, ValueError) as err:
        raise InvalidTaskError(
            f"the payload of a {task_type!r} task does not encode as JSON: {err}"
        ) from None


def unique_key(task_type: str, payload: str) -> str:
    digest = hashlib.sha256(
        task_type.encode("utf-8") + b"\x00" + payload.encode("utf-8", "surrogatepass")
    ).digest()
    return f"{task_type}:{digest[:16].hex()}"


# ---------------------------------------------------------------- tasks

_UNSET: Any = object()


@dataclass
class Task:
    """A task to enqueue: its type, its payload and its options.

    ``payload`` is any JSON-encodable value (default ``{}``); give
    ``payload_json`` instead to send JSON text as it is. Durations are
    seconds (int or float) or ``timedelta``; times are ``datetime`` or unix
    seconds. Everything is checked when the task is enqueued, with the
    Rust client's bounds.
    """

    type: str
    payload: Any = field(default_factory=dict)
    payload_json: Optional[str] = None
    queue: str = DEFAULT_QUEUE
    id: Optional[str] = None
    delay: Optional[Seconds] = None
    at: Optional[When] = None
    max_retry: int = DEFAULT_MAX_RETRY
    timeout: Optional[Seconds] = None
    deadline: Optional[When] = None
    retention: Seconds = DEFAULT_RETENTION
    unique: Optional[Seconds] = None
    #: The W3C trace context of the span the task descends from: a
    #: tracing worker's spans for its attempts are children of that span.
    traceparent: Optional[str] = None
    tracestate: Optional[str] = None
    #: The group the task takes turns in (a tenant, a customer): workers
    #: take pending tasks from each group of a queue in turn, so that one
    #: group's backlog cannot starve another's.
    group: Optional[str] = None
    #: Debounce under this key (per queue and type): the task runs `delay`
    #: from now, and a task enqueued under the same key before it starts
    #: replaces its payload (keeping its id) and waits `delay` again, so a
    #: burst of duplicates makes one run, with the last payload.
    debounce: Optional[str] = None
    #: Aggregate under this key (per queue and type): the task joins the
    #: open batch of the key or opens one, due `aggregate_after` seconds
    #: later; the handler runs once per batch, its payload the JSON array
    #: of the members' payloads. The id returned is the batch's.
    aggregate: Optional[str] = None
    #: How long a new batch collects tasks (seconds, default 5).
    aggregate_after: Seconds = 5
    #: A batch runs at once when it holds this many tasks (default 100).
    max_group: int = 100


@dataclass(frozen=True)
class Prepared:
    """A checked task: its id, queue, message and script arguments."""

    id: str
    queue: str
    type: str
    args: tuple[str, ...]
    #: Enqueued through debounce.lua, one per call.
    debounced: bool = False
    #: Enqueued through aggregate.lua with these arguments, one per call.
    aggregate_args: Optional[tuple[str, ...]] = None


def prepare(task: Task, max_payload_bytes: int) -> Prepared:
    """Checks a task as the Rust client does and builds its message and
    the seven arguments of enqueue.lua. Raises InvalidTaskError."""
    if not isinstance(task, Task):
        raise InvalidTaskError(f"expected a wasmq.Task, not {type(task).__name__}")
    task_type = check_task_type(task.type)
    payload = payload_text(task.payload, task.payload_json, task_type)
    queue = check_queue(task.queue)
    if task.id is not None:
        check_id(task.id)
    size = _utf8_len(payload)
    if size > max_payload_bytes:
        raise InvalidTaskError(
            f"the payload of this {task_type!r} task is {size} bytes, over the "
            f"{max_payload_bytes}-byte limit; store large data elsewhere and enqueue a reference to it"
        )
    if task.unique is not None and _seconds("a unique lock", task.unique) < 0.001:
        raise InvalidTaskError("a unique lock needs a time to live of at least 1ms")
    depth = json_depth(payload)
    if depth > MAX_JSON_DEPTH:
        raise InvalidTaskError(
            f"the payload of this {task_type!r} task nests {depth} levels deep, over the "
            f"limit of {MAX_JSON_DEPTH}; flatten it"
        )
    if task.delay is not None and task.at is not None:
        raise InvalidTaskError("give a delay or a time (at), not both")
    delay_ms = due_at_ms = 0
    if task.delay is not None:
        _seconds("a process-in delay", task.delay)
        delay_ms = _millis(task.delay)
    if task.at is not None:
        # A time in the past means "now": 1 ms after the epoch is due.
        due_at_ms = max(_unix_ms("the process-at time", task.at), 1)
    max_retry = task.max_retry
    if isinstance(max_retry, bool) or not isinstance(max_retry, int) or not 0 <= max_retry <= MAX_RETRY_CEILING:
        raise InvalidTaskError(
            f"max_retry must be a whole number from 0 to {MAX_RETRY_CEILING}, not {max_retry!r}"
        )
    timeout_ms = None
    if task.timeout is not None:
        _seconds("a timeout", task.timeout)
        timeout_ms = _millis(task.timeout)
    deadline_ms = None
    if task.deadline is not None:
        deadline_ms = _unix_ms("the deadline", task.deadline)
    _seconds("a retention", task.retention)
    retention_ms = _millis(task.retention)
    unique_ttl_ms = 0
    lock = None
    if task.unique is not None:
        unique_ttl_ms = _millis(task.unique)
        lock = unique_key(task_type, payload)
    trace = check_trace(task.traceparent, task.tracestate)
    group = check_group(task.group) if task.group is not None else None
    if task.debounce is not None:
        debounce = task.debounce
        if (
            not isinstance(debounce, str)
            or debounce == ""
            or _utf8_len(debounce) > MAX_DEBOUNCE_KEY_BYTES
            or any(_is_control(c) for c in debounce)
        ):
            raise InvalidTaskError(
                f"debounce key {debounce!r} must be 1 to {MAX_DEBOUNCE_KEY_BYTES} bytes with no control characters"
            )
        if task.delay is None or task.at is not None or delay_ms < 1:
            raise InvalidTaskError(
                "a debounced task waits a delay of at least 1ms (during which duplicates replace it)"
            )
        if task.id is not None:
            raise InvalidTaskError("a debounced task takes no id of its own: duplicates keep the first one's")
        lock = f"debounce:{task_type}:{debounce}"
        unique_ttl_ms = delay_ms + DEBOUNCE_LOCK_EXTRA_MS
    task_id = task.id if task.id is not None else str(uuid.uuid4())

    parts = [
        '{"id":', _string(task_id),
        ',"type":', _string(task_type),
        ',"queue":', _string(queue),
        ',"payload":', payload,
        ',"max_retry":', str(max_retry),
    ]
    if timeout_ms is not None:
        parts += [',"timeout_ms":', str(timeout_ms)]
    if deadline_ms is not None:
        parts += [',"deadline_ms":', str(deadline_ms)]
    parts += [',"retention_ms":', str(retention_ms)]
    if lock is not None:
        parts += [',"unique_key":', _string(lock)]
    if group is not None:
        parts += [',"group":', _string(group)]
    if trace is not None:
        parts += [',"trace":', trace]
    parts += [',"enqueued_at_ms":', str(math.floor(time.time() * 1000)), "}"]
    message = "".join(parts)
    args = (
        task_id,
        message,
        str(delay_ms),
        str(due_at_ms),
        lock or "",
        str(unique_ttl_ms),
        "0",
    )
    aggregate_args = None
    if task.aggregate is not None:
        aggregate_args = _aggregate_args(task, task_type, payload, message, max_payload_bytes)
    return Prepared(
        id=task_id,
        queue=queue,
        type=task_type,
        args=args,
        debounced=task.debounce is not None,
        aggregate_args=aggregate_args,
    )


def _aggregate_args(
    task: Task, task_type: str, payload: str, message: str, max_payload_bytes: int
) -> tuple[str, ...]:
    """aggregate.lua's arguments for `task` (built as a plain task into
    `message`), checked as the Rust client checks them."""
    key = task.aggregate
    if not isinstance(key, str) or key == "" or _utf8_len(key) > 256 or any(_is_control(c) for c in key):
        raise InvalidTaskError(f"aggregation key {key!r} must be 1 to 256 bytes with no control characters")
    max_group = task.max_group
    if isinstance(max_group, bool) or not isinstance(max_group, int) or not 1 <= max_group <= MAX_AGGREGATE_GROUP:
        raise InvalidTaskError(
            f"an aggregation's batches hold 1 to {MAX_AGGREGATE_GROUP} tasks, not {max_group!r}"
        )
    after_ms = _millis(task.aggregate_after)
    if _seconds("an aggregation's wait", task.aggregate_after) < 0.001 or after_ms < 1:
        raise InvalidTaskError("an aggregation waits at least 1ms for its batch to fill")
    if task.id is not None or task.unique is not None or task.debounce is not None or task.delay is not None or task.at is not None:
        raise InvalidTaskError(
            "an aggregated task takes no id, unique lock, debounce or delay of its own: its batch has them"
        )
    lock = f"aggregate:{task_type}:{key}"
    # The batch's message: the task's, its payload the array of its members'.
    payload_at = message.index(',"payload":') + len(',"payload":')
    batch = message[:payload_at] + "[" + payload + "]" + message[payload_at + len(payload):]
    batch = batch.replace(',"enqueued_at_ms":', ',"unique_key":' + _string(lock) + ',"enqueued_at_ms":', 1)
    overhead = _utf8_len(batch) - _utf8_len(payload) - 2
    return (
        json.loads(message)["id"],
        batch,
        str(after_ms),
        lock,
        str(max_group),
        payload,
        str(max_payload_bytes + overhead),
        str(after_ms + DEBOUNCE_LOCK_EXTRA_MS),
    )


# ---------------------------------------------------------------- replies


@dataclass(frozen=True)
class Enqueued:
    """A task the queue accepted."""

    id: str
    queue: str
    #: "pending" or "scheduled".
    state: str


@dataclass(frozen=True)
class ErrorRecord:
    """A task's last failure."""

    kind: str
    message: str
    attempt: int
    at_ms: int


@dataclass(frozen=True)
class Progress:
    """How far a task's handler said it got."""

    #: How far (a percentage, or items done: the plugin's unit), if said.
    done: Optional[float]
    #: The plugin's note (decoded JSON), if any.
    note: Any
    #: The attempt that reported it.
    attempt: int
    #: When (unix ms, the worker's clock): its latest report or heartbeat.
    at_ms: int


def _progress(raw: Any) -> Optional[Progress]:
    """A stored progress report, or None (a report that does not read is
    advisory, and shown as none)."""
    if raw is None:
        return None
    try:
        report = json.loads(raw)
        done = report.get("done")
        return Progress(
            done=None if done is None else float(done),
            note=report.get("note"),
            attempt=int(report.get("attempt", 0)),
            at_ms=int(report.get("at_ms", 0)),
        )
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class TaskInfo:
    """Everything stored about one task."""

    id: str
    queue: str
    type: str
    state: str
    #: The payload's JSON text.
    payload: str
    attempts: int
    max_retry: int
    #: The stored message, decoded.
    message: dict
    last_error: Optional[ErrorRecord]
    #: The result bytes of a completed task, while it is kept.
    result: Optional[bytes]
    #: The time that goes with the state (server clock, unix ms).
    state_time_ms: Optional[int]
    #: The latest progress its handler reported, if any.
    progress: Optional["Progress"] = None

    def result_json(self) -> Any:
        """The result decoded as JSON (None when there is none)."""
        return None if self.result is None else json.loads(self.result)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_enqueue_reply(prepared: Prepared, reply: Any) -> Union[Enqueued, WasmqError]:
    if not isinstance(reply, (list, tuple)) or not reply:
        return WasmqError(f"enqueue answered {reply!r}")
    status = _text(reply[0])
    if status == "ok" and len(reply) == 2:
        return Enqueued(id=prepared.id, queue=prepared.queue, state=_text(reply[1]))
    if status == "duplicate-id" and len(reply) == 2:
        return DuplicateIdError(prepared.queue, prepared.id, state=_text(reply[1]))
    if status == "duplicate-id" and len(reply) == 3:
        return DuplicateIdError(
            prepared.queue, prepared.id, reserved_for=int(reply[2]) / 1000
        )
    if status == "duplicate-unique" and len(reply) == 3:
        return DuplicateUniqueError(
            prepared.queue, prepared.type, holder=_text(reply[1]), remaining=int(reply[2]) / 1000
        )
    return WasmqError(f"enqueue answered {reply!r}")


def enqueue_calls(queue: str, prepared: list[Prepared]) -> list[tuple[tuple, list[int]]]:
    """The script calls that enqueue `prepared`, each with the indexes of
    the tasks it carries: enqueue.lua for plain tasks (BATCH_CHUNK per
    call), debounce.lua for each debounced one."""
    keys = queue_keys(queue)
    plain = [n for n, p in enumerate(prepared) if not p.debounced and p.aggregate_args is None]
    calls = [
        (("EVALSHA", ENQUEUE_SHA, len(keys), *keys, *(arg for n in batch for arg in prepared[n].args)), batch)
        for batch in chunks(plain, lambda n: sum(len(arg) for arg in prepared[n].args))
    ]
    calls += [
        (("EVALSHA", DEBOUNCE_SHA, len(keys), *keys, *p.args), [n])
        for n, p in enumerate(prepared)
        if p.debounced
    ]
    calls += [
        (("EVALSHA", AGGREGATE_SHA, len(keys), *keys, *p.aggregate_args), [n])
        for n, p in enumerate(prepared)
        if p.aggregate_args is not None
    ]
    return calls


def decode_call_reply(queue: str, batch: list[Prepared], reply: Any) -> list[Union[Enqueued, WasmqError]]:
    """The outcomes of one enqueue call (see enqueue_calls)."""
    if batch and batch[0].debounced:
        return [decode_debounce_reply(batch[0], reply)]
    if batch and batch[0].aggregate_args is not None:
        return [decode_aggregate_reply(batch[0], reply)]
    if not isinstance(reply, (list, tuple)) or len(reply) != len(batch):
        count = len(reply) if isinstance(reply, (list, tuple)) else 0
        return [WasmqError(f"enqueue on {queue!r} answered {count} of {len(batch)} tasks")] * len(batch)
    return [decode_enqueue_reply(p, answer) for p, answer in zip(batch, reply)]


def decode_aggregate_reply(prepared: Prepared, reply: Any) -> Union[Enqueued, WasmqError]:
    """aggregate.lua's answer: the batch's id and state."""
    if isinstance(reply, (list, tuple)) and len(reply) == 4 and _text(reply[0]) in ("ok", "added"):
        return Enqueued(id=_text(reply[1]), queue=prepared.queue, state=_text(reply[3]))
    if isinstance(reply, (list, tuple)) and len(reply) == 2 and _text(reply[0]) == "duplicate-id":
        return DuplicateIdError(prepared.queue, prepared.id, state=_text(reply[1]))
    return WasmqError(f"the aggregated enqueue answered {reply!r}")


def decode_debounce_reply(prepared: Prepared, reply: Any) -> Union[Enqueued, WasmqError]:
    """debounce.lua's answer: the id of the task that will run it."""
    if isinstance(reply, (list, tuple)) and len(reply) == 2:
        status = _text(reply[0])
        if status in ("ok", "replaced"):
            return Enqueued(id=_text(reply[1]), queue=prepared.queue, state="scheduled")
        if status == "duplicate-id":
            return DuplicateIdError(prepared.queue, prepared.id, state=_text(reply[1]))
    return WasmqError(f"the debounced enqueue answered {reply!r}")


def lookup_commands(queue: str, task_id: str) -> list[tuple]:
    """The commands of a task lookup, in the order decode_task reads."""
    commands: list[tuple] = [
        ("HGET", key(queue, part), task_id)
        for part in ("msg", "state", "attempts", "error", "result")
    ]
    commands.append(("HGET", key(queue, "progress"), task_id))
    commands += [("ZSCORE", key(queue, state), task_id) for state in TIMED_STATES]
    return commands


def decode_task(queue: str, task_id: str, replies: Sequence[Any]) -> Optional[TaskInfo]:
    msg, state, attempts, error, result, progress, *scores = replies
    if msg is None:
        return None
    message = json.loads(msg)
    last_error = None
    if error is not None:
        record = json.loads(error)
        last_error = ErrorRecord(
            kind=record.get("kind", ""),
            message=record.get("message", ""),
            attempt=int(record.get("attempt", 0)),
            at_ms=int(record.get("at_ms", 0)),
        )
    state_time = next((score for score in scores if score is not None), None)
    payload = json.dumps(message.get("payload"), separators=(",", ":"), ensure_ascii=False)
    return TaskInfo(
        id=task_id,
        queue=queue,
        type=message.get("type", ""),
        state=_text(state) if state is not None else "",
        payload=payload,
        attempts=int(attempts) if attempts is not None else 0,
        max_retry=int(message.get("max_retry", 0)),
        message=message,
        last_error=last_error,
        result=bytes(result) if result is not None else None,
        state_time_ms=int(float(state_time)) if state_time is not None else None,
        progress=_progress(progress),
    )


def chunks(items: list, size_of: Callable[[Any], int]) -> list[list]:
    """`items` in consecutive chunks of at most BATCH_CHUNK items and, unless
    one item alone is larger, BATCH_CHUNK_BYTES (`size_of` each item)."""
    out: list[list] = []
    current: list = []
    total = 0
    for item in items:
        size = size_of(item)
        if len(current) == BATCH_CHUNK or (current and total + size > BATCH_CHUNK_BYTES):
            out.append(current)
            current, total = [], 0
        current.append(item)
        total += size
    if current:
        out.append(current)
    return out
