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
from typing import Any, Optional, Sequence, Union

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


@dataclass(frozen=True)
class Prepared:
    """A checked task: its id, queue, message and script arguments."""

    id: str
    queue: str
    type: str
    args: tuple[str, ...]


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
    return Prepared(id=task_id, queue=queue, type=task_type, args=args)


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


def lookup_commands(queue: str, task_id: str) -> list[tuple]:
    """The commands of a task lookup, in the order decode_task reads."""
    commands: list[tuple] = [
        ("HGET", key(queue, part), task_id)
        for part in ("msg", "state", "attempts", "error", "result")
    ]
    commands += [("ZSCORE", key(queue, state), task_id) for state in TIMED_STATES]
    return commands


def decode_task(queue: str, task_id: str, replies: Sequence[Any]) -> Optional[TaskInfo]:
    msg, state, attempts, error, result, *scores = replies
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
    )


def chunks(items: list, size: int = BATCH_CHUNK) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
