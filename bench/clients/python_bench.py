"""Bulk-enqueue rate of the wasmq Python client (`wasmq-bench clients` runs it).

    python3 python_bench.py PORT TASKS BATCH [async]

Enqueues TASKS no-op `echo` tasks with enqueue_batch in batches of BATCH and
prints one JSON line with the rate.
"""

import asyncio
import json
import sys
import time

import wasmq

port, tasks, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
use_async = len(sys.argv) > 4 and sys.argv[4] == "async"
url = f"redis://127.0.0.1:{port}"


def batches():
    for done in range(0, tasks, batch):
        yield [wasmq.Task("echo", {}, queue="bench-python") for _ in range(min(batch, tasks - done))]


async def run_async():
    client = await wasmq.AsyncClient.connect(url)
    started = time.perf_counter()
    for tasks_ in batches():
        outcomes = await client.enqueue_batch(tasks_)
        assert all(isinstance(o, wasmq.Enqueued) for o in outcomes), outcomes[:1]
    seconds = time.perf_counter() - started
    await client.close()
    return seconds


def run_sync():
    client = wasmq.Client(url)
    started = time.perf_counter()
    for tasks_ in batches():
        outcomes = client.enqueue_batch(tasks_)
        assert all(isinstance(o, wasmq.Enqueued) for o in outcomes), outcomes[:1]
    seconds = time.perf_counter() - started
    client.close()
    return seconds


seconds = asyncio.run(run_async()) if use_async else run_sync()
print(json.dumps({"peer": "wasmq-python" + ("-async" if use_async else ""), "tasks": tasks,
                  "enqueue_per_s": round(tasks / seconds)}))
