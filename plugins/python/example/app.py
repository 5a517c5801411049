"""The Python example plugin: every capability of the SDK, one task type each."""

import random
import sys
import time
from dataclasses import dataclass

from wasmq import Failure, Task, enqueue, handler, http, kv, log


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
