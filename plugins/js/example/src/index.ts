// The JavaScript example plugin, in TypeScript: every capability of the
// SDK, one task type each.

import { Failure, enqueue, flow, handler, kv, log, progress, type Task } from "wasmq";
import { greeting } from "./greeting";

/** Returns its payload: the no-op task of the benchmarks. */
handler("js:echo", (_task: Task, payload: unknown) => payload);

interface Greet {
  name: string;
}

handler("js:greet", (task: Task, payload: Greet) => {
  if (typeof payload?.name !== "string") {
    throw Failure.badPayload("expected {\"name\": string}");
  }
  if (payload.name === "") {
    throw Failure.giveUp("an empty name can never be greeted");
  }
  log.info(`greeting ${payload.name} on attempt ${task.attempt}`);
  return { greeting: greeting(payload.name) };
});

/** Asks for a retry until attempt `succeed_on`. */
handler("js:flaky", (task: Task, payload: { succeed_on?: number }) => {
  const succeedOn = payload.succeed_on ?? 1;
  if (task.attempt < succeedOn) {
    throw Failure.retry(`flaky: attempt ${task.attempt} of ${succeedOn}`);
  }
  return { attempts: task.attempt };
});

/** Counts in the plugin's key-value store. */
handler("js:count", (task: Task, payload: { key?: string }) => {
  const total = kv.increment(payload.key ?? "hits", 1);
  kv.set("last", task.id);
  return { count: total, last: kv.getText("last") };
});

/** Enqueues `n` follow-up echo tasks. */
handler("js:fanout", (task: Task, payload: { n?: number }) => {
  const ids: string[] = [];
  for (let i = 0; i < (payload.n ?? 1); i++) {
    ids.push(enqueue("js:echo", { from: task.id, i }));
  }
  return { enqueued: ids };
});

/** Starts a flow of `n` echo tasks under a js:gather parent. */
handler("js:flow", (_task: Task, payload: { n?: number }) => {
  const children = [];
  for (let i = 0; i < (payload.n ?? 1); i++) children.push({ type: "js:echo", payload: { i } });
  return { root: flow.start({ type: "js:gather", children }) };
});

/** A flow parent: returns its children's results, in order. */
handler("js:gather", () => ({ children: flow.children().map((child) => child.json()) }));

/** Adds `n` echo children to itself; once they ended, returns their results. */
handler("js:split", (_task: Task, payload: { n?: number }) => {
  const done = flow.children();
  if (done.length === 0) {
    const children = [];
    for (let i = 0; i < (payload.n ?? 1); i++) children.push({ type: "js:echo", payload: { i } });
    flow.addChildren(children);
    return {};
  }
  return { children: done.map((child) => child.json()) };
});

/** Reports its progress twice; the last report stays with the task. */
handler("js:progress", () => {
  progress.report(50, { step: "half" });
  progress.heartbeat();
  progress.report(100, { step: "done" });
  return {};
});

/** GETs `url` with fetch (only hosts the manifest allows). */
handler("js:fetch", async (_task: Task, payload: { url: string }) => {
  const response = await fetch(payload.url);
  return { status: response.status, body: await response.text() };
});

/** Writes with console.log and console.error: both go to the task log. */
handler("js:print", (task: Task) => {
  console.log(`printed by task ${task.id}`);
  console.error(`warned by task ${task.id}`);
  return {};
});

/** What a plugin without the clocks and random capabilities sees. */
handler("js:env", () => ({ time: Date.now(), random: Math.random() }));
