"""The component's export: componentize-py calls `Handler().handle(task)`
for every task. Not part of the public API; `wasmq plugin build` points
componentize-py here."""

import sys
import traceback

from componentize_py_types import Err
from wit_world import exports

from . import _bindings, _run
from ._failure import Failure


def _failure(failure: Failure):
    types = _bindings.types
    if failure.kind == Failure.GIVE_UP:
        return types.Failure_GiveUp(failure.message)
    if failure.kind == Failure.BAD_PAYLOAD:
        return types.Failure_BadPayload(failure.message)
    return types.Failure_Retry(failure.message)


class Handler(exports.Handler):
    def handle(self, task) -> bytes:
        try:
            return _run(task)
        except Failure as failure:
            raise Err(_failure(failure)) from None
        except ModuleNotFoundError as err:
            # Only what was imported while the plugin was built is in the
            # component: say so where the error is read.
            try:
                raise ModuleNotFoundError(
                    f"{err}: a Python plugin holds only the modules imported while it "
                    f"was built; import {err.name!r} at the top of app.py (or of a "
                    "module it imports)",
                    name=err.name,
                ) from err
            except ModuleNotFoundError:
                traceback.print_exc()
                raise
        except BaseException:
            # The traceback goes to the task log; the host reads its last
            # lines to name the exception when the instance traps.
            traceback.print_exc()
            raise
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass


class _WarmUpTask:
    """A task of a type no handler has, for `warm_up`."""

    id = ""
    task_type = ""
    payload = b"{}"
    queue = ""
    attempt = 1
    max_retry = 0


def warm_up():
    """Runs the SDK's per-task path a few times at build time, calling no
    handler (see `wasmq._warm_up`), through this export as far as a task
    type no handler has."""
    from . import _warm_up

    _warm_up()
    for _ in range(16):
        try:
            Handler().handle(_WarmUpTask())
        except Err:
            pass
