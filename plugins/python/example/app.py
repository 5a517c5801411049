"""The Python example plugin: every capability of the SDK, one task type each."""

import random
import sys
import time
from dataclasses import dataclass

from wasmq import Failure, Task, enqueue, flow, handler, http, kv, log, progress


@handler("py:echo")
def echo(task: Task, payload):
    """Returns its payload: the no-op task of the benchmarks."""
    return payload


@dataclass
class Greet:
    name: str


@handler("py:greet")
def greet(task: Task, payload: Greet) -> dict:
    """A typed payload: `{"name": ...}`, else a bad payload."""
    if not payload.name:
        raise Failure.give_up("an empty name can never be greeted")
    log.info(f"greeting {payload.name} on attempt {task.attempt}")
    return {"greeting": f"hello, {payload.name}"}


@handler("py:flaky")
def flaky(task: Task, payload: dict) -> dict:
    """Asks for a retry until attempt `succeed_on`."""
    succeed_on = int(payload.get("succeed_on", 1))
    if task.attempt < succeed_on:
        raise Failure.retry(f"flaky: attempt {task.attempt} of {succeed_on}")
    return {"attempts": task.attempt}


@handler("py:count")
def count(task: Task, payload: dict) -> dict:
    """Counts in the plugin's key-value store."""
    key = payload.get("key", "hits")
    total = kv.increment(key, 1)
    kv.set("last", task.id)
    return {"count": total, "last": kv.get("last").decode()}


@handler("py:fanout")
def fanout(task: Task, payload: dict) -> dict:
    """Enqueues `n` follow-up echo tasks."""
    ids = [enqueue("py:echo", {"from": task.id, "i": i}) for i in range(int(payload.get("n", 1)))]
    return {"enqueued": ids}


@handler("py:flow")
def start_flow(task: Task, payload: dict) -> dict:
    """Starts a flow of `n` echo tasks under a py:gather parent."""
    children = [{"type": "py:echo", "payload": {"i": i}} for i in range(int(payload.get("n", 1)))]
    return {"root": flow.start({"type": "py:gather", "children": children})}


@handler("py:gather")
def gather(task: Task, payload: dict) -> dict:
    """A flow parent: returns its children's results, in order."""
    return {"children": [child.json() for child in flow.children()]}


@handler("py:split")
def split(task: Task, payload: dict) -> dict:
    """Adds `n` echo children to itself; once they ended, returns their results."""
    done = flow.children()
    if not done:
        flow.add_children([{"type": "py:echo", "payload": {"i": i}} for i in range(int(payload.get("n", 1)))])
        return {}
    return {"children": [child.json() for child in done]}


@handler("py:progress")
def report_progress(task: Task, payload: dict) -> dict:
    """Reports its progress twice; the last report stays with the task."""
    progress.report(50, {"step": "half"})
    progress.heartbeat()
    progress.report(100, {"step": "done"})
    return {}


@handler("py:fetch")
def fetch(task: Task, payload: dict) -> dict:
    """GETs `url` (only hosts the manifest allows)."""
    response = http.get(payload["url"])
    return {"status": response.status, "body": response.text()}


@handler("py:print")
def shout(task: Task, payload: dict) -> dict:
    """Writes to stdout and stderr: both go to the task log."""
    print(f"printed by task {task.id}")
    print(f"warned by task {task.id}", file=sys.stderr)
    return {}


@handler("py:env")
def environment(task: Task, payload: dict) -> dict:
    """What a plugin without the clocks and random capabilities sees."""
    return {"time": time.time(), "random": random.random()}
