"""Write wasmq task handlers in Python.

A wasmq plugin handles one or more task types. Register a function for each
with the `handler` decorator (or subclass `Handler`); the payload, JSON, is
decoded for you (into a dataclass if the parameter is annotated with one),
and what you return is encoded as JSON as the task's result. Raise a
`Failure` to ask the host to retry later or give up now::

    from dataclasses import dataclass
    from wasmq import Failure, Task, handler, log

    @dataclass
    class Greet:
        name: str

    @handler("greet")
    def greet(task: Task, payload: Greet) -> dict:
        if not payload.name:
            raise Failure.give_up("an empty name can never be greeted")
        log.info(f"greeting {payload.name} on attempt {task.attempt}")
        return {"text": f"hello, {payload.name}"}

The plugin's manifest, `wasmq.toml` beside `app.py`, names it, lists its
task types and asks for limits and capabilities; `wasmq plugin build` makes
the component and embeds the manifest.

What the host does with a failure:

- `Failure.retry(msg)`: retried with backoff while retries are left, then
  archived with the message as the task's last error.
- `Failure.give_up(msg)`: archived at once.
- `Failure.bad_payload(msg)`, and a payload that does not decode: archived
  at once as `bad-payload`.
- Any other exception: the attempt fails as `panic` (retried), with the
  exception and where it was raised as its error, and the traceback in the
  task log.

`print` and `sys.stderr` go to the host's log too, tagged with the task, and
count against the same log budget as `log`.
"""

import dataclasses
import inspect
import json
import typing

from . import flow
from . import log
from . import kv
from . import progress
from ._enqueue import enqueue
from ._failure import CapabilityError, Failure

__all__ = [
    "CapabilityError",
    "Failure",
    "Handler",
    "Task",
    "enqueue",
    "flow",
    "handler",
    "kv",
    "log",
    "progress",
]


@dataclasses.dataclass(frozen=True)
class Task:
    """The task being handled, without its payload (which the handler
    receives decoded)."""

    id: str
    """The task's id, unique within its queue."""
    task_type: str
    """The task type the producer gave, such as ``thumbnail:make``."""
    queue: str
    """The queue the task was taken from."""
    attempt: int
    """Which attempt this is: 1 on the first run, 2 on the first retry..."""
    max_retry: int
    """How many retries the task may have after its first attempt."""

    @property
    def is_last_attempt(self) -> bool:
        """True when a `Failure.retry` raised now would archive the task."""
        return self.attempt > self.max_retry


# Task type -> (the function that handles it, the dataclass its payload
# decodes into or None). Filled when app.py is imported, which is at build
# time: every task starts from that snapshot and pays nothing for it.
_handlers: typing.Dict[str, typing.Tuple[typing.Callable, typing.Optional[type]]] = {}


def _register(task_types, function, owner):
    if not task_types:
        raise TypeError(f"{owner} handles no task type: name at least one")
    payload_type = _payload_type(function)
    for task_type in task_types:
        if not isinstance(task_type, str) or not task_type:
            raise TypeError(f"{owner}: task types are non-empty strings, not {task_type!r}")
        if task_type in _handlers:
            raise ValueError(f"task type {task_type!r} has two handlers")
        _handlers[task_type] = (function, payload_type)


def handler(*task_types: str):
    """Registers the decorated function as the handler of `task_types`.

    The function takes ``(task, payload)``. The payload is the decoded JSON;
    when the parameter is annotated with a dataclass, it is built from the
    JSON object's fields, and a payload that does not fit is a bad payload.
    """

    def register(function):
        _register(task_types, function, getattr(function, "__name__", repr(function)))
        return function

    return register


class Handler:
    """A class-based handler: subclass it, list `task_types`, define
    ``handle(self, task, payload)``. Subclasses register themselves; one
    instance is made per task."""

    task_types: typing.Sequence[str] = ()

    def handle(self, task: Task, payload):  # pragma: no cover - overridden
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "handle" not in cls.__dict__:
            return
        handle = cls.handle

        def run(task, payload):
            return cls().handle(task, payload)

        run.__wasmq_signature__ = handle
        _register(tuple(cls.task_types), run, cls.__name__)


def _payload_type(function):
    """The dataclass the handler's payload parameter is annotated with."""
    target = getattr(function, "__wasmq_signature__", function)
    try:
        hints = typing.get_type_hints(target)
        params = list(inspect.signature(target).parameters)
    except (TypeError, ValueError, NameError):
        return None
    # (self,) task, payload
    if params and params[0] == "self":
        params = params[1:]
    if len(params) < 2:
        return None
    hint = hints.get(params[1])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    return None


def _decode(task_type, wanted, raw: bytes):
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise Failure.bad_payload(
            f"the payload of task type {task_type!r} is not JSON: {err}"
        ) from None
    if wanted is None:
        return value
    if not isinstance(value, dict):
        raise Failure.bad_payload(
            f"the payload of task type {task_type!r} does not decode into "
            f"{wanted.__name__}: expected a JSON object, got {type(value).__name__}"
        )
    try:
        return wanted(**value)
    except TypeError as err:
        raise Failure.bad_payload(
            f"the payload of task type {task_type!r} does not decode into "
            f"{wanted.__name__}: {err}"
        ) from None


def _encode(output) -> bytes:
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        output = dataclasses.asdict(output)
    try:
        return json.dumps(output).encode()
    except (TypeError, ValueError) as err:
        raise Failure.give_up(f"the handler's result is not encodable as JSON: {err}") from None


def _run(task) -> bytes:
    """Runs one task: the entry point the component exports."""
    found = _handlers.get(task.task_type)
    if found is None:
        raise Failure.give_up(
            f"no handler for task type {task.task_type!r} in this plugin "
            f"(it handles: {', '.join(sorted(_handlers)) or 'nothing'})"
        )
    function, payload_type = found
    payload = _decode(task.task_type, payload_type, task.payload)
    view = Task(
        id=task.id,
        task_type=task.task_type,
        queue=task.queue,
        attempt=task.attempt,
        max_retry=task.max_retry,
    )
    return _encode(function(view, payload))


def _warm_up():
    """Runs the SDK's own per-task path (decode, the task view, encode) a few
    times without calling any handler (run by the build, at
    pre-initialisation): what CPython does on the first runs of a code path
    (specialising its bytecode, filling caches) is then in the snapshot every
    task starts from instead of being redone by every task."""
    samples = (b"{}", b'{"a": [1, 2.5, "x", null, true, false, {"b": {}}]}', b"[]", b'"x"', b"1")
    for _ in range(16):
        for raw in samples:
            _encode(_decode("", None, raw))
        _handlers.get("")
        Task(id="", task_type="", queue="", attempt=1, max_retry=0)


def _check_task_types(declared):
    """Fails the build when the manifest's task types and the registered
    handlers differ (run by the build, at pre-initialisation)."""
    declared = set(declared)
    registered = set(_handlers)
    missing = sorted(declared - registered)
    extra = sorted(registered - declared)
    problems = []
    if missing:
        problems.append(
            "the manifest lists task types no handler is registered for: " + ", ".join(missing)
        )
    if extra:
        problems.append(
            "handlers are registered for task types the manifest does not list "
            "(the host would never route them here): " + ", ".join(extra)
        )
    if problems:
        raise RuntimeError("; ".join(problems))
