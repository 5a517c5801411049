/**
 * The wasmq Redis protocol, version 1 (docs/PROTOCOL.md), without I/O: the
 * bounds a task is checked against (the Rust client's), the task message and
 * the script arguments built from a task, the script text and its SHA1, the
 * keys of a queue, and the decoding of what Redis answers.
 */
import { WasmqError } from './errors.js';
/** The queue a task goes to when none is named. */
export declare const DEFAULT_QUEUE = "default";
/** Retries after the first attempt, unless the task says otherwise. */
export declare const DEFAULT_MAX_RETRY = 25;
/** How long (ms) a completed task and its result are kept. */
export declare const DEFAULT_RETENTION_MS = 600000;
/** The largest payload a client accepts (bytes of JSON text), by default. */
export declare const DEFAULT_MAX_PAYLOAD_BYTES: number;
/** The deepest nesting of arrays and objects a payload may have. */
export declare const MAX_JSON_DEPTH = 64;
/** The ceiling on every duration, and on how far ahead a time may lie: 100 years, in ms. */
export declare const MAX_DELAY_MS: number;
/** Most tasks one script call of a batch carries. */
export declare const BATCH_CHUNK = 500;
/**
 * Most characters of arguments one enqueue.lua call carries (a larger task goes alone): Redis runs a
 * script call whole, holding every other client meanwhile.
 */
export declare const BATCH_CHUNK_BYTES: number;
/**
 * `items` in consecutive chunks of at most BATCH_CHUNK items and, unless one item alone is larger,
 * BATCH_CHUNK_BYTES (`sizeOf` each item).
 */
export declare function chunks<T>(items: T[], sizeOf: (item: T) => number): T[][];
/** The structures of a queue, in the order every script receives them. */
export declare const QUEUE_PARTS: readonly ["pending", "active", "scheduled", "retry", "archived", "completed", "msg", "state", "attempts", "owner", "error", "result", "unique", "unique_until", "paused", "reserved_ids", "stats"];
/** The registry of queue names. */
export declare const QUEUES_KEY = "wasmq:queues";
/** The states whose ZSET holds a time for the task, in lookup order. */
export declare const TIMED_STATES: readonly ["active", "scheduled", "retry", "archived", "completed"];
/** The enqueue script, exactly as the host sends it, and its SHA1. */
export declare const ENQUEUE_SCRIPT: string;
export declare const ENQUEUE_SHA: string;
/** The script of debounced enqueues, exactly as the host sends it. */
export declare const DEBOUNCE_SCRIPT: string;
/** The script of aggregated enqueues, exactly as the host sends it. */
export declare const AGGREGATE_SCRIPT: string;
/** The most tasks one aggregated batch may hold. */
export declare const MAX_AGGREGATE_GROUP = 100000;
/** The most bytes of a debounce key. */
export declare const MAX_DEBOUNCE_KEY_BYTES = 256;
/** The seventeen keys of a queue, in script order. */
export declare function queueKeys(queue: string): string[];
/** One key of a queue. */
export declare function key(queue: string, part: string): string;
/** A task to enqueue. Durations are milliseconds; times are Dates or unix ms. */
export interface Task {
    /** The task type; it selects the plugin that runs the task. */
    type: string;
    /** Any JSON-encodable value (default `{}`). */
    payload?: unknown;
    /** The payload as JSON text, sent as it is (instead of `payload`). */
    payloadJson?: string;
    /** The queue (default `default`). */
    queue?: string;
    /** A task id of your choosing; refused while a task with it is kept. */
    id?: string;
    /** Run no sooner than this many ms from now (by the Redis server's clock). */
    delay?: number;
    /** Run no sooner than this time. */
    at?: Date | number;
    /** Retries after the first attempt (default 25). */
    maxRetry?: number;
    /** How long one attempt may run, ms. */
    timeout?: number;
    /** A time after which no attempt may still run. */
    deadline?: Date | number;
    /** How long the completed task and its result are kept, ms (default 10 minutes; 0: not kept). */
    retention?: number;
    /** Refuse this task while an equal one (same queue, type, payload) enqueued less than this many ms ago is held. */
    unique?: number;
    /** The W3C trace context of the span the task descends from: a tracing worker's spans for its attempts are children of it. */
    traceparent?: string;
    /** The W3C tracestate that goes with `traceparent`. */
    tracestate?: string;
    /** The group the task takes turns in (a tenant, a customer): workers take pending tasks from each group of a queue in turn, so that one group's backlog cannot starve another's. */
    group?: string;
    /**
     * Debounce under this key (per queue and type): the task runs `delay` from now, and a task enqueued under the
     * same key before it starts replaces its payload (keeping its id) and waits `delay` again, so a burst of
     * duplicates makes one run, with the last payload. Needs `delay` (at least 1 ms) and no `id`.
     */
    debounce?: string;
    /**
     * Aggregate under this key (per queue and type): the task joins the open batch of the key or opens one, due
     * `aggregateAfter` ms later; the handler runs once per batch, its payload the JSON array of the members'
     * payloads. The id returned is the batch's.
     */
    aggregate?: string;
    /** How long a new batch collects tasks, ms (default 5000). */
    aggregateAfter?: number;
    /** A batch runs at once when it holds this many tasks (default 100). */
    maxGroup?: number;
}
/** A checked task: its id, queue, type and the seven arguments of enqueue.lua. */
export interface Prepared {
    id: string;
    queue: string;
    type: string;
    args: string[];
    /** Enqueued through debounce.lua, one per call. */
    debounced: boolean;
    /** Enqueued through aggregate.lua with these arguments, one per call. */
    aggregateArgs?: string[];
}
/** A task the queue accepted. */
export interface Enqueued {
    id: string;
    queue: string;
    /** `pending` or `scheduled`. */
    state: string;
}
/** A task's last failure. */
export interface ErrorRecord {
    kind: string;
    message: string;
    attempt: number;
    atMs: number;
}
/** Everything stored about one task. */
export interface TaskInfo {
    id: string;
    queue: string;
    type: string;
    state: string;
    /** The payload, decoded. */
    payload: unknown;
    attempts: number;
    maxRetry: number;
    /** The stored message, decoded. */
    message: Record<string, unknown>;
    lastError?: ErrorRecord;
    /** The result bytes of a completed task, while it is kept. */
    result?: Buffer;
    /** The time that goes with the state (server clock, unix ms). */
    stateTimeMs?: number;
    /** The latest progress its handler reported, if any. */
    progress?: Progress;
}
/** How far a task's handler said it got. */
export interface Progress {
    /** How far (a percentage, or items done: the plugin's unit), if said. */
    done?: number;
    /** The plugin's note (decoded JSON), if any. */
    note?: unknown;
    /** The attempt that reported it. */
    attempt: number;
    /** When (unix ms, the worker's clock): its latest report or heartbeat. */
    atMs: number;
}
/** How deeply arrays and objects nest in JSON text (0 for a scalar), counted outside strings. */
export declare function jsonDepth(text: string): number;
export declare function checkTaskType(type: unknown): string;
export declare function checkQueue(queue: unknown): string;
export declare function checkId(id: unknown): string;
/** The most bytes of a group's name. */
export declare const MAX_GROUP_BYTES = 128;
export declare function checkGroup(group: unknown): string;
/** The most bytes of a tracestate. */
export declare const MAX_TRACESTATE_BYTES = 512;
/** The message's `trace` object as JSON text, or undefined without a traceparent; checked as the Rust client checks it. */
export declare function checkTrace(traceparent: unknown, tracestate: unknown): string | undefined;
/** The payload's JSON text: `payloadJson` checked and trimmed as the Rust client keeps it, or `payload` encoded. */
export declare function payloadText(task: Task, type: string): string;
/** `type:hex(sha256(type ‖ 0x00 ‖ payload)[0..16])`: the unique lock of equal tasks. */
export declare function uniqueKey(type: string, payload: string): string;
/** Checks a task as the Rust client does and builds its message and arguments. Throws InvalidTaskError. */
export declare function prepare(task: Task, maxPayloadBytes: number): Prepared;
/** aggregate.lua's answer: the batch's id and state. */
export declare function decodeAggregateReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError;
/** What one reply of enqueue.lua means for its task. */
/** debounce.lua's answer: the id of the task that will run it. */
export declare function decodeDebounceReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError;
export declare function decodeEnqueueReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError;
/** Decodes the replies of a lookup pipeline (HGET msg, state, attempts, error, result, progress; ZSCOREs). */
export declare function decodeTask(queue: string, id: string, replies: unknown[]): TaskInfo | undefined;
