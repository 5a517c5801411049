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
/** Tasks per script call in a batch. */
export declare const BATCH_CHUNK = 500;
/** The structures of a queue, in the order every script receives them. */
export declare const QUEUE_PARTS: readonly ["pending", "active", "scheduled", "retry", "archived", "completed", "msg", "state", "attempts", "owner", "error", "result", "unique", "unique_until", "paused", "reserved_ids", "stats"];
/** The registry of queue names. */
export declare const QUEUES_KEY = "wasmq:queues";
/** The states whose ZSET holds a time for the task, in lookup order. */
export declare const TIMED_STATES: readonly ["active", "scheduled", "retry", "archived", "completed"];
/** The enqueue script, exactly as the host sends it, and its SHA1. */
export declare const ENQUEUE_SCRIPT: string;
export declare const ENQUEUE_SHA: string;
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
}
/** A checked task: its id, queue, type and the seven arguments of enqueue.lua. */
export interface Prepared {
    id: string;
    queue: string;
    type: string;
    args: string[];
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
}
/** How deeply arrays and objects nest in JSON text (0 for a scalar), counted outside strings. */
export declare function jsonDepth(text: string): number;
export declare function checkTaskType(type: unknown): string;
export declare function checkQueue(queue: unknown): string;
export declare function checkId(id: unknown): string;
/** The payload's JSON text: `payloadJson` checked and trimmed as the Rust client keeps it, or `payload` encoded. */
export declare function payloadText(task: Task, type: string): string;
/** `type:hex(sha256(type ‖ 0x00 ‖ payload)[0..16])`: the unique lock of equal tasks. */
export declare function uniqueKey(type: string, payload: string): string;
/** Checks a task as the Rust client does and builds its message and arguments. Throws InvalidTaskError. */
export declare function prepare(task: Task, maxPayloadBytes: number): Prepared;
/** What one reply of enqueue.lua means for its task. */
export declare function decodeEnqueueReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError;
/** Decodes the replies of a lookup pipeline (HGET msg, state, attempts, error, result; ZSCOREs). */
export declare function decodeTask(queue: string, id: string, replies: unknown[]): TaskInfo | undefined;
