"""Progress: how far the running task has got.

`wasmq task show`, the dashboard and the clients show a task's latest
report. Every plugin may report; the host writes at most one report every
250 ms (the latest wins, and the last one is written when the attempt
ends)::

    from wasmq import handler, progress

    @handler("import:rows")
    def import_rows(task, payload: dict) -> dict:
        rows = payload["rows"]
        for n, row in enumerate(rows, 1):
            ...
            progress.report(100 * n / len(rows), {"row": n})
        return {"imported": len(rows)}

The worker renews the task's lease on its own while the handler runs;
`heartbeat()` also renews it at once (at most once a second) and says the
task is alive without new figures. Neither stretches the plugin's time
limit.
"""

import json
import typing

from . import _bindings
from ._failure import CapabilityError


def report(done: float, note: typing.Any = None) -> None:
    """Reports `done` (a percentage, or items done: your unit) and `note`
    (anything `json.dumps` encodes, at most 1 KiB of JSON). Raises
    `CapabilityError` when the host refuses it."""
    module = _bindings.progress
    if module is None:
        return
    try:
        text = json.dumps(note)
    except (TypeError, ValueError) as err:
        raise CapabilityError(f"progress: the note does not encode as JSON: {err}") from None
    from componentize_py_types import Err

    try:
        module.report(float(done), text)
    except Err as err:
        raise CapabilityError(str(err.value)) from None


def heartbeat() -> None:
    """Says the task is alive: renews its lease now (at most once a second)
    and keeps its last report."""
    module = _bindings.progress
    if module is not None:
        module.heartbeat()
