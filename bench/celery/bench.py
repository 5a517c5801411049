"""The Celery side of wasmq's Python comparison benchmark.

`wasmq-bench polyglot` runs it against the same redis-server as wasmq and
reads the one JSON line it prints:

    python bench.py PORT drain --tasks N --concurrency C

drain: fills the queue with N no-op tasks (one pipeline of kombu messages,
the enqueue rate reported), then starts `celery worker -P threads -c C`
(its best pool for I/O-bound work; no result backend, acks after the task,
no heartbeat, gossip or mingle) and times it until the queue and its
unacked set are empty; reports tasks/s and the worker's peak RSS.
"""

import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

QUEUE = "bench"


def make_app(port):
    app = Celery("bench", broker=f"redis://127.0.0.1:{port}/0")
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=4,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="echo")
    def echo(payload):
        return payload

    return app


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def drain(port, tasks, concurrency):
    app = make_app(port)
    echo = app.tasks["echo"]
    client = redis.Redis(port=port)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            echo.apply_async(args=({},), producer=producer)
    fill_seconds = time.perf_counter() - started
    assert client.llen(QUEUE) == tasks, "the queue holds every task"

    env = dict(os.environ, BENCH_REDIS_PORT=str(port))
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "bench", "worker",
            "-P", "threads", "-c", str(concurrency), "-Q", QUEUE,
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "--loglevel", "WARNING",
        ],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        env=env,
        stdout=subprocess.DEVNULL,
    )
    started = time.perf_counter()
    peak = 0.0
    while True:
        pending = client.llen(QUEUE)
        unacked = client.hlen("unacked")
        peak = max(peak, peak_rss_mb(worker.pid))
        if pending == 0 and unacked == 0:
            break
        if worker.poll() is not None:
            raise SystemExit(f"the celery worker exited with {worker.returncode}")
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    peak = max(peak, peak_rss_mb(worker.pid))
    worker.terminate()
    worker.wait(timeout=30)
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "processed_per_s": round(tasks / seconds),
        "enqueue_per_s": round(tasks / fill_seconds),
        "peak_rss_mb": peak,
    }


# `celery -A bench worker` imports this module and finds `app`.
if "BENCH_REDIS_PORT" in os.environ:
    app = make_app(os.environ["BENCH_REDIS_PORT"])

if __name__ == "__main__":
    port, mode, *rest = sys.argv[1:]
    options = {rest[i].lstrip("-"): int(rest[i + 1]) for i in range(0, len(rest), 2)}
    if mode != "drain":
        raise SystemExit("usage: python bench.py PORT drain --tasks N --concurrency C")
    print(json.dumps(drain(int(port), options["tasks"], options["concurrency"])))
