"""Runs the conformance cases (cases.json) with the Python client and prints
what it saw as one JSON document; tests/e2e/conformance.rs checks it.

    python3 runner.py URL [--async] [--tls-ca F --tls-cert F --tls-key F]

It asserts nothing itself: it only reports, step by step, the outcome of
each enqueue, batch, lookup and wait, so that every client's report is
judged by the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time

import wasmq
from wasmq import Task

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")


def now_ms() -> int:
    return int(time.time() * 1000)


def make_task(spec: dict, now: int) -> Task:
    task = Task(spec["type"])
    if "payload" in spec:
        task.payload = spec["payload"]
    if "payload_json" in spec:
        task.payload_json = spec["payload_json"]
    if "payload_string_of" in spec:
        task.payload = "x" * spec["payload_string_of"]
    if "queue" in spec:
        task.queue = spec["queue"]
    if "id" in spec:
        task.id = spec["id"]
    if "delay_ms" in spec:
        task.delay = spec["delay_ms"] / 1000
    if "at_offset_ms" in spec:
        task.at = (now + spec["at_offset_ms"]) / 1000
    if "max_retry" in spec:
        task.max_retry = spec["max_retry"]
    if "timeout_ms" in spec:
        task.timeout = spec["timeout_ms"] / 1000
    if "deadline_offset_ms" in spec:
        task.deadline = (now + spec["deadline_offset_ms"]) / 1000
    if "retention_ms" in spec:
        task.retention = spec["retention_ms"] / 1000
    if "unique_ms" in spec:
        task.unique = spec["unique_ms"] / 1000
    if "traceparent" in spec:
        task.traceparent = spec["traceparent"]
    if "tracestate" in spec:
        task.tracestate = spec["tracestate"]
    if "group" in spec:
        task.group = spec["group"]
    if "debounce" in spec:
        task.debounce = spec["debounce"]
    if "aggregate" in spec:
        task.aggregate = spec["aggregate"]
        task.aggregate_after = spec["aggregate_after_ms"] / 1000
        task.max_group = spec["max_group"]
    return task


def outcome(result) -> dict:
    if isinstance(result, wasmq.Enqueued):
        return {"outcome": result.state, "id": result.id}
    seen = {"message": str(result)}
    if isinstance(result, wasmq.DuplicateIdError):
        seen.update(outcome="duplicate_id", state=result.state)
    elif isinstance(result, wasmq.DuplicateUniqueError):
        seen.update(outcome="duplicate_unique", holder=result.holder)
    elif isinstance(result, wasmq.InvalidTaskError):
        seen.update(outcome="invalid_task")
    elif isinstance(result, wasmq.NotReplicatedError):
        seen.update(outcome="not_replicated")
    elif isinstance(result, wasmq.RedisUnreachableError):
        seen.update(outcome="unreachable")
    elif isinstance(result, wasmq.TlsError):
        seen.update(outcome="tls")
    else:
        seen.update(outcome="error")
    return seen


def info_seen(info) -> dict:
    if info is None:
        return {"found": False}
    result = None
    if info.result is not None:
        try:
            result = json.loads(info.result)
        except ValueError:
            result = info.result.decode("utf-8", "replace")
    return {
        "found": True,
        "state": info.state,
        "type": info.type,
        "queue": info.queue,
        "attempts": info.attempts,
        "max_retry": info.max_retry,
        "result": result,
        "last_error_kind": info.last_error.kind if info.last_error else None,
        "state_time_ms": info.state_time_ms,
    }


async def call(value):
    return await value if inspect.isawaitable(value) else value


async def run_step(client, step: dict, labels: dict) -> dict:
    now = now_ms()
    seen: dict = {"now_ms": now}
    op = step["op"]
    resolve = lambda ident: labels.get(ident[1:], ident) if ident.startswith("$") else ident  # noqa: E731
    if op == "enqueue":
        try:
            task = make_task(step["task"], now)
            result = (await call(client.enqueue_batch([task])))[0]
        except wasmq.WasmqError as err:
            result = err
        seen.update(outcome(result))
        if "as" in step and "id" in seen:
            labels[step["as"]] = seen["id"]
    elif op == "batch":
        if "count" in step:
            spec = step["task"]
            tasks = []
            for i in range(step["count"]):
                one = {k: v for k, v in spec.items() if k not in ("id_prefix", "pad_of")}
                one["id"] = f"{spec['id_prefix']}{i}"
                one["payload"] = {"i": i}
                if "pad_of" in spec:
                    one["payload"]["pad"] = "x" * spec["pad_of"]
                tasks.append(make_task(one, now))
            results = await call(client.enqueue_batch(tasks))
            seen["accepted"] = sum(isinstance(r, wasmq.Enqueued) for r in results)
            seen["refused"] = [outcome(r) for r in results if not isinstance(r, wasmq.Enqueued)][:5]
        else:
            tasks = []
            for spec in step["tasks"]:
                tasks.append(make_task(spec, now))
            results = await call(client.enqueue_batch(tasks))
            seen["outcomes"] = [outcome(r) for r in results]
    elif op == "lookup":
        seen.update(info_seen(await call(client.task(resolve(step["id"]), step.get("queue")))))
    elif op == "wait":
        try:
            info = await call(client.wait(resolve(step["id"]), step.get("queue"), step["timeout_ms"] / 1000))
            seen.update(outcome="completed", result=info_seen(info)["result"])
        except wasmq.TaskFailedError as err:
            seen.update(outcome="failed", error_kind=err.last_error.kind if err.last_error else None)
        except wasmq.TaskNotFoundError:
            seen.update(outcome="gone")
        except wasmq.WaitTimeoutError:
            seen.update(outcome="timeout")
    else:
        seen["outcome"] = f"unknown op {op}"
    return seen


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--async", dest="use_async", action="store_true")
    parser.add_argument("--tls-ca")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--only", help="run only the cases of these names, comma-separated")
    args = parser.parse_args()
    options = {
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "name": "wasmq:client:python:conformance",
    }
    flavour = "python-async" if args.use_async else "python"
    if args.use_async:
        client = await wasmq.AsyncClient.connect(args.url, **options)
    else:
        client = wasmq.Client(args.url, **options)
    with open(CASES, encoding="utf-8") as file:
        cases = json.load(file)["cases"]
    only = set(args.only.split(",")) if args.only else None
    report = {"client": flavour, "cases": {}}
    for case in cases:
        if "python" in case.get("skip", []) or (only and case["name"] not in only):
            continue
        labels: dict = {}
        report["cases"][case["name"]] = [await run_step(client, step, labels) for step in case["steps"]]
    await call(client.close())
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.run(main())
