"""Enqueue rate of Celery's apply_async on a Redis broker (`wasmq-bench
clients` runs it beside the wasmq clients, on the same redis-server).

    python3 celery_bench.py PORT TASKS

Celery has no bulk enqueue: each task is one apply_async call, as Celery
applications send them. Prints one JSON line with the rate.
"""

import json
import sys
import time

from celery import Celery

port, tasks = int(sys.argv[1]), int(sys.argv[2])
app = Celery("bench", broker=f"redis://127.0.0.1:{port}/0")
app.conf.task_ignore_result = True


@app.task(name="echo")
def echo(payload):
    return payload


echo.apply_async(args=[{}])  # connect before timing
started = time.perf_counter()
for _ in range(tasks):
    echo.apply_async(args=[{}])
seconds = time.perf_counter() - started
print(json.dumps({"peer": "celery", "tasks": tasks, "enqueue_per_s": round(tasks / seconds)}))
