// Write wasmq task handlers in JavaScript or TypeScript.
//
// Register a function for each task type with `handler`; the payload, JSON,
// is decoded for you, and what you return (or the promise resolves to) is
// encoded as JSON as the task's result. Throw a `Failure` to ask the host
// to retry later or give up now. The plugin's manifest, `wasmq.toml`, names
// it, lists its task types and asks for limits and capabilities;
// `wasmq plugin build` makes the component and embeds the manifest.
//
// The capabilities a manifest may leave out (`kv`, `enqueue`) come from
// "wasmq:capabilities", a module `wasmq plugin build` writes for each
// plugin: a component imports only what its manifest grants.

import { log as hostLog } from "wasmq:plugin/log@0.1.0";
import {
  addChildren as hostAddChildren,
  children as hostChildren,
  startFlow as hostStartFlow,
} from "wasmq:plugin/flow@0.1.0";
import { heartbeat as hostHeartbeat, report as hostReport } from "wasmq:plugin/progress@0.1.0";
import { kv as hostKv, enqueue as hostEnqueue } from "wasmq:capabilities";

/** Why a handler produced no result, and what the host should do. */
export class Failure extends Error {
  constructor(kind, message) {
    super(String(message));
    this.name = "Failure";
    this.kind = kind;
  }

  /** Worth retrying: the host retries with backoff while retries are left. */
  static retry(message) {
    return new Failure("retry", message);
  }

  /** No retry can help: the host archives the task now. */
  static giveUp(message) {
    return new Failure("give-up", message);
  }

  /** The payload cannot be handled: archived now as `bad-payload`. */
  static badPayload(message) {
    return new Failure("bad-payload", message);
  }
}

/**
 * A capability call the host refused or could not carry out (not granted,
 * over a cap, Redis unavailable). Uncaught, the attempt is retried.
 */
export class CapabilityError extends Failure {
  constructor(message) {
    super("retry", message);
    this.name = "CapabilityError";
  }
}

const handlers = new Map();

/**
 * Registers `fn(task, payload)` as the handler of one task type or a list
 * of them. It may return a value or a promise of one.
 */
export function handler(taskTypes, fn) {
  const types = Array.isArray(taskTypes) ? taskTypes : [taskTypes];
  if (types.length === 0) throw new TypeError("handler: name at least one task type");
  if (typeof fn !== "function") throw new TypeError("handler: the second argument is the function");
  for (const type of types) {
    if (typeof type !== "string" || type === "") {
      throw new TypeError(`handler: task types are non-empty strings, not ${JSON.stringify(type)}`);
    }
    if (handlers.has(type)) throw new Error(`task type ${JSON.stringify(type)} has two handlers`);
    handlers.set(type, fn);
  }
  return fn;
}

function text(message) {
  return typeof message === "string" ? message : String(message);
}

/** Logging into the host's log, tagged with the plugin and the task. */
export const log = {
  trace: (message) => hostLog("trace", text(message)),
  debug: (message) => hostLog("debug", text(message)),
  info: (message) => hostLog("info", text(message)),
  warn: (message) => hostLog("warn", text(message)),
  error: (message) => hostLog("error", text(message)),
};

// What a host refusal carries: the error string of the WIT result.
function refusal(err) {
  if (typeof err === "string") return err;
  if (err && typeof err.payload === "string") return err.payload;
  if (err && typeof err.message === "string") return err.message;
  return String(err);
}

function call(what, fn) {
  try {
    return fn();
  } catch (err) {
    throw new CapabilityError(refusal(err));
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function grantedKv() {
  if (!hostKv) {
    throw new CapabilityError(
      "kv: the plugin's manifest does not grant `kv`; add [capabilities.kv] to wasmq.toml",
    );
  }
  return hostKv;
}

/** The plugin's key-value store (capability `kv`). */
export const kv = {
  /** The value of `key` as bytes, or undefined. */
  get(key) {
    return call("kv.get", () => grantedKv().get(key));
  },
  /** The value of `key` as text, or undefined. */
  getText(key) {
    const value = kv.get(key);
    return value === undefined ? undefined : decoder.decode(value);
  },
  /** Sets `key` to `value` (a Uint8Array, or text stored as UTF-8). */
  set(key, value) {
    const bytes = typeof value === "string" ? encoder.encode(value) : value;
    call("kv.set", () => grantedKv().set(key, bytes));
  },
  /** Removes `key`; true if it was set. */
  delete(key) {
    return call("kv.delete", () => grantedKv().delete(key));
  },
  /** Adds `by` to the integer at `key` (0 when unset) and returns the sum. */
  increment(key, by = 1) {
    return Number(call("kv.increment", () => grantedKv().increment(key, BigInt(by))));
  },
};

/**
 * Enqueues a follow-up task (capability `enqueue`) and returns its id.
 * `options`: `queue` (default: the current task's), `delayMs`, `id`.
 */
export function enqueue(taskType, payload = null, options = {}) {
  if (!hostEnqueue) {
    throw new CapabilityError(
      "enqueue: the plugin's manifest does not grant `enqueue`; add [capabilities.enqueue] to wasmq.toml",
    );
  }
  const followUp = {
    taskType,
    payload: encoder.encode(JSON.stringify(payload) ?? "null"),
    queue: options.queue,
    delayMs: options.delayMs === undefined ? undefined : BigInt(Math.max(0, Math.floor(options.delayMs))),
    id: options.id,
  };
  return call("enqueue", () => hostEnqueue.enqueue(followUp));
}

/**
 * Flows: the running task's children's outcomes (a flow parent runs after
 * all of them ended; a child that failed under the `ignore` policy is left
 * out), and starting a flow (capability `enqueue`: every task of it counts
 * against the quota, types and queues the manifest grants).
 */
export const flow = {
  /** The outcomes of the running task's children, in order. */
  children() {
    return hostChildren().map((child) => ({
      id: child.id,
      queue: child.queue,
      taskType: child.taskType,
      ok: child.completed,
      result: child.completed ? child.output : undefined,
      error: child.completed ? undefined : child.error,
      /** Its result decoded from JSON; throws a CapabilityError when it did not complete. */
      json() {
        if (!child.completed) {
          throw new CapabilityError(`child ${child.id} (${child.taskType}) did not complete: ${child.error}`);
        }
        try {
          return JSON.parse(decoder.decode(child.output));
        } catch (err) {
          throw new CapabilityError(`the result of child ${child.id} (${child.taskType}) is not JSON: ${err.message}`);
        }
      },
    }));
  },
  /**
   * Starts a flow (a task object with `children`, at any depth, or an
   * array of them for a chain, as `wasmq flow add` reads it) and returns
   * its root's id.
   */
  start(spec) {
    const text = encoder.encode(JSON.stringify(spec) ?? "null");
    return call("start-flow", () => hostStartFlow(text));
  },
  /**
   * Adds children (an array of task objects, as a flow's `children`) to
   * the running task and returns how many tasks they hold. They are
   * enqueued only if this attempt succeeds: then the task waits until they
   * have all ended and runs again (its return value this time is dropped,
   * and the attempt not counted), `children()` giving the outcomes of
   * every child it ever added.
   */
  addChildren(children) {
    const text = encoder.encode(JSON.stringify(children) ?? "null");
    return call("add-children", () => hostAddChildren(text));
  },
};

function decode(taskType, bytes) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw Failure.badPayload(`the payload of task type ${JSON.stringify(taskType)} is not JSON: ${err.message}`);
  }
}

function encode(output) {
  let json;
  try {
    json = JSON.stringify(output === undefined ? null : output);
  } catch (err) {
    throw Failure.giveUp(`the handler's result is not encodable as JSON: ${err.message}`);
  }
  return encoder.encode(json);
}

/** Runs one task (used by the component's export). */
/**
 * Progress: how far the running task has got, shown by `wasmq task show`,
 * the dashboard and the clients. Every plugin may report; the host writes
 * at most one report every 250 ms (the latest wins, and the last one is
 * written when the attempt ends). The worker renews the task's lease for as
 * long as the handler runs, within the plugin's time limit.
 */
export const progress = {
  /** Reports `done` (a percentage, or items done: your unit) and a note (anything JSON.stringify encodes, at most 1 KiB). */
  report(done, note = null) {
    const text = JSON.stringify(note) ?? "null";
    return call("progress", () => hostReport(Number(done), text));
  },
  /** Says the task is alive: renews its lease now (at most once a second) and keeps its last report. */
  heartbeat() {
    hostHeartbeat();
  },
};

export function run(task) {
  const fn = handlers.get(task.taskType);
  if (!fn) {
    const known = [...handlers.keys()].sort().join(", ") || "nothing";
    throw Failure.giveUp(
      `no handler for task type ${JSON.stringify(task.taskType)} in this plugin (it handles: ${known})`,
    );
  }
  const payload = decode(task.taskType, task.payload);
  const view = Object.freeze({
    id: task.id,
    taskType: task.taskType,
    queue: task.queue,
    attempt: task.attempt,
    maxRetry: task.maxRetry,
    isLastAttempt: task.attempt > task.maxRetry,
  });
  const output = fn(view, payload);
  if (output && typeof output.then === "function") {
    return output.then(encode);
  }
  return encode(output);
}

/**
 * Runs the SDK's own per-task path (decode, the task view, encode) a few
 * times without calling any handler (called by the build, at
 * pre-initialisation): SpiderMonkey compiles a function's bytecode on its
 * first call, so doing it here puts the bytecode in the snapshot every task
 * starts from instead of every task compiling it again.
 */
export function warmUp() {
  const samples = ["{}", '{"a":[1,2.5,"x",null,true,false,{"b":{}}]}', "[]", '"x"', "1"];
  for (let i = 0; i < 16; i++) {
    for (const sample of samples) encode(decode("", encoder.encode(sample)));
    handlers.get("");
  }
}

/**
 * Fails the build when the manifest's task types and the registered
 * handlers differ (called by the build, at pre-initialisation).
 */
export function checkTaskTypes(declared) {
  const problems = [];
  const missing = declared.filter((type) => !handlers.has(type)).sort();
  const extra = [...handlers.keys()].filter((type) => !declared.includes(type)).sort();
  if (missing.length) {
    problems.push(`the manifest lists task types no handler is registered for: ${missing.join(", ")}`);
  }
  if (extra.length) {
    problems.push(
      `handlers are registered for task types the manifest does not list (the host would never route them here): ${extra.join(", ")}`,
    );
  }
  if (problems.length) throw new Error(problems.join("; "));
}
