/**
 * The wasmq Redis protocol, version 1 (docs/PROTOCOL.md), without I/O: the
 * bounds a task is checked against (the Rust client's), the task message and
 * the script arguments built from a task, the script text and its SHA1, the
 * keys of a queue, and the decoding of what Redis answers.
 */

import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { DuplicateIdError, DuplicateUniqueError, InvalidTaskError, WasmqError } from './errors.js';

/** The queue a task goes to when none is named. */
export const DEFAULT_QUEUE = 'default';
/** Retries after the first attempt, unless the task says otherwise. */
export const DEFAULT_MAX_RETRY = 25;
/** How long (ms) a completed task and its result are kept. */
export const DEFAULT_RETENTION_MS = 600_000;
/** The largest payload a client accepts (bytes of JSON text), by default. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** The deepest nesting of arrays and objects a payload may have. */
export const MAX_JSON_DEPTH = 64;
const MAX_TASK_TYPE_BYTES = 256;
const MAX_ID_BYTES = 256;
const MAX_QUEUE_BYTES = 128;
/** The ceiling on every duration, and on how far ahead a time may lie: 100 years, in ms. */
export const MAX_DELAY_MS = 100 * 31_557_600 * 1000;
/** Most tasks one script call of a batch carries. */
export const BATCH_CHUNK = 500;
/**
 * Most characters of arguments one enqueue.lua call carries (a larger task goes alone): Redis runs a
 * script call whole, holding every other client meanwhile.
 */
export const BATCH_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * `items` in consecutive chunks of at most BATCH_CHUNK items and, unless one item alone is larger,
 * BATCH_CHUNK_BYTES (`sizeOf` each item).
 */
export function chunks<T>(items: T[], sizeOf: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let total = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (current.length === BATCH_CHUNK || (current.length > 0 && total + size > BATCH_CHUNK_BYTES)) {
      out.push(current);
      current = [];
      total = 0;
    }
    current.push(item);
    total += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
const MAX_RETRY_CEILING = 2 ** 32 - 1;

/** The structures of a queue, in the order every script receives them. */
export const QUEUE_PARTS = [
  'pending', 'active', 'scheduled', 'retry', 'archived', 'completed',
  'msg', 'state', 'attempts', 'owner', 'error', 'result',
  'unique', 'unique_until', 'paused', 'reserved_ids', 'stats',
] as const;
/** The registry of queue names. */
export const QUEUES_KEY = 'wasmq:queues';
/** The states whose ZSET holds a time for the task, in lookup order. */
export const TIMED_STATES = ['active', 'scheduled', 'retry', 'archived', 'completed'] as const;

function scriptText(name: string): string {
  const read = (file: string) => readFileSync(new URL(`../lua/${file}`, import.meta.url), 'utf8');
  // As the host builds it (broker/scripts.rs): prelude, newline, body.
  return `${read('prelude.lua')}\n${read(name)}`;
}

/** The enqueue script, exactly as the host sends it, and its SHA1. */
export const ENQUEUE_SCRIPT = scriptText('enqueue.lua');
export const ENQUEUE_SHA = createHash('sha1').update(ENQUEUE_SCRIPT, 'utf8').digest('hex');
/** The script of debounced enqueues, exactly as the host sends it. */
export const DEBOUNCE_SCRIPT = scriptText('debounce.lua');
/** The script of aggregated enqueues, exactly as the host sends it. */
export const AGGREGATE_SCRIPT = scriptText('aggregate.lua');
/** The most tasks one aggregated batch may hold. */
export const MAX_AGGREGATE_GROUP = 100_000;

/** The most bytes of a debounce key. */
export const MAX_DEBOUNCE_KEY_BYTES = 256;
/** How much longer than its delay a debounce key is held (one day, ms). */
const DEBOUNCE_LOCK_EXTRA_MS = 86_400_000;

/** The seventeen keys of a queue, in script order. */
export function queueKeys(queue: string): string[] {
  return QUEUE_PARTS.map((part) => `wasmq:{${queue}}:${part}`);
}

/** One key of a queue. */
export function key(queue: string, part: string): string {
  return `wasmq:{${queue}}:${part}`;
}

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

/** A stored progress report, or undefined (a report that does not read is advisory, and shown as none). */
function decodeProgress(raw: unknown): Progress | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const report = JSON.parse(String(raw)) as Record<string, unknown>;
    return {
      done: report.done === null || report.done === undefined ? undefined : Number(report.done),
      note: report.note === null ? undefined : report.note,
      attempt: Number(report.attempt ?? 0),
      atMs: Number(report.at_ms ?? 0),
    };
  } catch {
    return undefined;
  }
}

/** How deeply arrays and objects nest in JSON text (0 for a scalar), counted outside strings. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (escaped) escaped = false;
      else if (c === 0x5c) escaped = true;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) depth = Math.max(depth - 1, 0);
  }
  return deepest;
}

const CONTROL = /\p{Cc}/u;
const WHITESPACE = /\p{White_Space}/u;
const bytes = (text: string) => Buffer.byteLength(text, 'utf8');
const show = (text: string) => JSON.stringify(text);

function invalid(message: string): never {
  throw new InvalidTaskError(message);
}

export function checkTaskType(type: unknown): string {
  if (typeof type !== 'string') invalid(`the task type must be a string, not ${typeof type}`);
  if (/^\p{White_Space}*$/u.test(type)) invalid('the task type is empty: name one, such as email:send');
  if (bytes(type) > MAX_TASK_TYPE_BYTES) {
    invalid(
      `the task type ${show([...type].slice(0, 32).join(''))}... is ${bytes(type)} bytes long, over the ${MAX_TASK_TYPE_BYTES}-byte limit; use a short name such as email:send`,
    );
  }
  const bad = [...type].find((c) => CONTROL.test(c));
  if (bad !== undefined) {
    invalid(`the task type ${show(type)} contains the control character ${show(bad)}: use letters, digits and punctuation`);
  }
  return type;
}

export function checkQueue(queue: unknown): string {
  if (typeof queue !== 'string') invalid(`the queue name must be a string, not ${typeof queue}`);
  if (bytes(queue) === 0 || bytes(queue) > MAX_QUEUE_BYTES) {
    invalid(`queue name ${show(queue)} must be 1 to ${MAX_QUEUE_BYTES} bytes long`);
  }
  const bad = [...queue].find((c) => WHITESPACE.test(c) || CONTROL.test(c) || '{}=,'.includes(c));
  if (bad !== undefined) {
    invalid(
      `queue name ${show(queue)} contains ${show(bad)}: use letters, digits and punctuation other than braces, '=' and ',' (--queues uses them to list queues with weights)`,
    );
  }
  return queue;
}

export function checkId(id: unknown): string {
  if (typeof id !== 'string') invalid(`a task id must be a string, not ${typeof id}`);
  if (id === '' || bytes(id) > MAX_ID_BYTES || [...id].some((c) => WHITESPACE.test(c) || CONTROL.test(c))) {
    invalid(`task id ${show(id)} must be 1 to ${MAX_ID_BYTES} bytes with no whitespace`);
  }
  return id;
}

/** The most bytes of a group's name. */
export const MAX_GROUP_BYTES = 128;

export function checkGroup(group: unknown): string {
  if (typeof group !== 'string') invalid(`a group must be a string, not ${typeof group}`);
  if (group === '' || bytes(group) > MAX_GROUP_BYTES || [...group].some((c) => CONTROL.test(c))) {
    invalid(`group ${show(group)} must be 1 to ${MAX_GROUP_BYTES} bytes with no control characters`);
  }
  return group;
}

/** The most bytes of a tracestate. */
export const MAX_TRACESTATE_BYTES = 512;

/** The message's `trace` object as JSON text, or undefined without a traceparent; checked as the Rust client checks it. */
export function checkTrace(traceparent: unknown, tracestate: unknown): string | undefined {
  if (traceparent === undefined) {
    if (tracestate !== undefined) invalid('a tracestate goes with a traceparent: give both');
    return undefined;
  }
  if (typeof traceparent !== 'string') invalid(`a traceparent must be a string, not ${typeof traceparent}`);
  const value = traceparent.trim();
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value);
  let why: string | undefined;
  if (match === null) why = 'is not well formed';
  else if (match[1] !== '00') why = 'is of a version other than 00';
  else if (/^0+$/.test(match[2])) why = 'has an all-zero trace id';
  else if (/^0+$/.test(match[3])) why = 'has an all-zero parent span id';
  if (why !== undefined) {
    invalid(
      `the traceparent ${show(value.slice(0, 64))} ${why}: give the W3C form 00-<32 hex digits trace id>-<16 hex digits parent span id>-<2 hex digits flags>, such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`,
    );
  }
  let trace = `{"traceparent":${show(value)}`;
  if (tracestate !== undefined) {
    if (typeof tracestate !== 'string') invalid(`a tracestate must be a string, not ${typeof tracestate}`);
    const state = tracestate.trim();
    if (state.length > MAX_TRACESTATE_BYTES || /[^\x20-\x7e]/.test(state)) {
      invalid(
        `the tracestate ${show(state.slice(0, 64))} must be printable ASCII of at most ${MAX_TRACESTATE_BYTES} bytes (list-members such as vendor=value, separated by commas)`,
      );
    }
    if (state !== '') trace += `,"tracestate":${show(state)}`;
  }
  return `${trace}}`;
}

function durationMs(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    invalid(`${what} must be a number of milliseconds of at least 0, not ${String(value)}`);
  }
  if (value > MAX_DELAY_MS) invalid(`${what} of ${value} ms is over the ceiling of 100 years`);
  return Math.trunc(value);
}

function unixMs(what: string, value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) invalid(`${what} must be a Date or unix milliseconds`);
  if (ms > Date.now() + MAX_DELAY_MS) invalid(`${what} is more than 100 years from now; give a nearer time`);
  return Math.floor(ms);
}

/** The payload's JSON text: `payloadJson` checked and trimmed as the Rust client keeps it, or `payload` encoded. */
export function payloadText(task: Task, type: string): string {
  if (task.payloadJson !== undefined) {
    if (typeof task.payloadJson !== 'string') invalid('payloadJson must be JSON text (a string)');
    try {
      JSON.parse(task.payloadJson);
    } catch (err) {
      invalid(`the payload of a ${show(type)} task is not JSON: ${(err as Error).message}`);
    }
    return task.payloadJson.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, '');
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(task.payload === undefined ? {} : task.payload);
  } catch (err) {
    invalid(`the payload of a ${show(type)} task does not encode as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) invalid(`the payload of a ${show(type)} task does not encode as JSON`);
  return text;
}

/** `type:hex(sha256(type ‖ 0x00 ‖ payload)[0..16])`: the unique lock of equal tasks. */
export function uniqueKey(type: string, payload: string): string {
  const digest = createHash('sha256').update(type, 'utf8').update(Buffer.from([0])).update(payload, 'utf8').digest();
  return `${type}:${digest.subarray(0, 16).toString('hex')}`;
}

/** Checks a task as the Rust client does and builds its message and arguments. Throws InvalidTaskError. */
export function prepare(task: Task, maxPayloadBytes: number): Prepared {
  if (task === null || typeof task !== 'object') invalid('expected a task object');
  const type = checkTaskType(task.type);
  const payload = payloadText(task, type);
  const queue = checkQueue(task.queue ?? DEFAULT_QUEUE);
  if (task.id !== undefined) checkId(task.id);
  const size = bytes(payload);
  if (size > maxPayloadBytes) {
    invalid(
      `the payload of this ${show(type)} task is ${size} bytes, over the ${maxPayloadBytes}-byte limit; store large data elsewhere and enqueue a reference to it`,
    );
  }
  if (task.unique !== undefined && durationMs('a unique lock', task.unique) < 1) {
    invalid('a unique lock needs a time to live of at least 1ms');
  }
  const depth = jsonDepth(payload);
  if (depth > MAX_JSON_DEPTH) {
    invalid(`the payload of this ${show(type)} task nests ${depth} levels deep, over the limit of ${MAX_JSON_DEPTH}; flatten it`);
  }
  if (task.delay !== undefined && task.at !== undefined) invalid('give a delay or a time (at), not both');
  const delayMs = task.delay === undefined ? 0 : durationMs('a process-in delay', task.delay);
  // A time in the past means "now": 1 ms after the epoch is due.
  const dueAtMs = task.at === undefined ? 0 : Math.max(unixMs('the process-at time', task.at), 1);
  const maxRetry = task.maxRetry ?? DEFAULT_MAX_RETRY;
  if (!Number.isInteger(maxRetry) || maxRetry < 0 || maxRetry > MAX_RETRY_CEILING) {
    invalid(`maxRetry must be a whole number from 0 to ${MAX_RETRY_CEILING}, not ${String(maxRetry)}`);
  }
  const timeoutMs = task.timeout === undefined ? undefined : durationMs('a timeout', task.timeout);
  const deadlineMs = task.deadline === undefined ? undefined : unixMs('the deadline', task.deadline);
  const retentionMs = durationMs('a retention', task.retention ?? DEFAULT_RETENTION_MS);
  const lock = task.unique === undefined ? undefined : uniqueKey(type, payload);
  const trace = checkTrace(task.traceparent, task.tracestate);
  const group = task.group === undefined ? undefined : checkGroup(task.group);
  let lockKey = lock;
  let lockTtlMs = task.unique === undefined ? 0 : Math.trunc(task.unique);
  if (task.debounce !== undefined) {
    const debounce: unknown = task.debounce;
    if (
      typeof debounce !== 'string' ||
      debounce === '' ||
      bytes(debounce) > MAX_DEBOUNCE_KEY_BYTES ||
      [...debounce].some((c) => CONTROL.test(c))
    ) {
      invalid(`debounce key ${show(String(debounce))} must be 1 to ${MAX_DEBOUNCE_KEY_BYTES} bytes with no control characters`);
    }
    if (task.delay === undefined || task.at !== undefined || delayMs < 1) {
      invalid('a debounced task waits a delay of at least 1ms (during which duplicates replace it)');
    }
    if (task.id !== undefined) invalid("a debounced task takes no id of its own: duplicates keep the first one's");
    lockKey = `debounce:${type}:${debounce}`;
    lockTtlMs = delayMs + DEBOUNCE_LOCK_EXTRA_MS;
  }
  const id = task.id ?? randomUUID();

  let message = `{"id":${show(id)},"type":${show(type)},"queue":${show(queue)},"payload":${payload},"max_retry":${maxRetry}`;
  if (timeoutMs !== undefined) message += `,"timeout_ms":${timeoutMs}`;
  if (deadlineMs !== undefined) message += `,"deadline_ms":${deadlineMs}`;
  message += `,"retention_ms":${retentionMs}`;
  if (lockKey !== undefined) message += `,"unique_key":${show(lockKey)}`;
  if (group !== undefined) message += `,"group":${show(group)}`;
  if (trace !== undefined) message += `,"trace":${trace}`;
  message += `,"enqueued_at_ms":${Date.now()}}`;
  const args = [
    id,
    message,
    String(delayMs),
    String(dueAtMs),
    lockKey ?? '',
    String(lockTtlMs),
    '0',
  ];
  const aggregateArgs = task.aggregate === undefined ? undefined : aggregateArgsOf(task, type, payload, message, id, maxPayloadBytes);
  return { id, queue, type, args, debounced: task.debounce !== undefined, aggregateArgs };
}

/** aggregate.lua's arguments for `task` (built as a plain task into `message`), checked as the Rust client checks them. */
function aggregateArgsOf(task: Task, type: string, payload: string, message: string, id: string, maxPayloadBytes: number): string[] {
  const key: unknown = task.aggregate;
  if (typeof key !== 'string' || key === '' || bytes(key) > 256 || [...key].some((c) => CONTROL.test(c))) {
    invalid(`aggregation key ${show(String(key))} must be 1 to 256 bytes with no control characters`);
  }
  const maxGroup = task.maxGroup ?? 100;
  if (!Number.isInteger(maxGroup) || maxGroup < 1 || maxGroup > MAX_AGGREGATE_GROUP) {
    invalid(`an aggregation's batches hold 1 to ${MAX_AGGREGATE_GROUP} tasks, not ${String(maxGroup)}`);
  }
  const afterMs = durationMs("an aggregation's wait", task.aggregateAfter ?? 5000);
  if (afterMs < 1) invalid('an aggregation waits at least 1ms for its batch to fill');
  if (task.id !== undefined || task.unique !== undefined || task.debounce !== undefined || task.delay !== undefined || task.at !== undefined) {
    invalid('an aggregated task takes no id, unique lock, debounce or delay of its own: its batch has them');
  }
  const lock = `aggregate:${type}:${key}`;
  // The batch's message: the task's, its payload the array of its members'.
  const payloadAt = message.indexOf(',"payload":') + ',"payload":'.length;
  let batch = `${message.slice(0, payloadAt)}[${payload}]${message.slice(payloadAt + payload.length)}`;
  batch = batch.replace(',"enqueued_at_ms":', `,"unique_key":${show(lock)},"enqueued_at_ms":`);
  const overhead = bytes(batch) - bytes(payload) - 2;
  return [id, batch, String(afterMs), lock, String(maxGroup), payload, String(maxPayloadBytes + overhead), String(afterMs + DEBOUNCE_LOCK_EXTRA_MS)];
}

/** aggregate.lua's answer: the batch's id and state. */
export function decodeAggregateReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError {
  if (Array.isArray(reply)) {
    const parts = reply.map((part) => (Buffer.isBuffer(part) ? part.toString('utf8') : String(part)));
    if (parts.length === 4 && (parts[0] === 'ok' || parts[0] === 'added')) return { id: parts[1], queue: prepared.queue, state: parts[3] };
    if (parts.length === 2 && parts[0] === 'duplicate-id') return new DuplicateIdError(prepared.queue, prepared.id, parts[1]);
  }
  return new WasmqError(`the aggregated enqueue answered ${JSON.stringify(reply)}`);
}

/** What one reply of enqueue.lua means for its task. */
/** debounce.lua's answer: the id of the task that will run it. */
export function decodeDebounceReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError {
  if (Array.isArray(reply) && reply.length === 2) {
    const [status, value] = reply.map((part) => (Buffer.isBuffer(part) ? part.toString('utf8') : String(part)));
    if (status === 'ok' || status === 'replaced') return { id: value, queue: prepared.queue, state: 'scheduled' };
    if (status === 'duplicate-id') return new DuplicateIdError(prepared.queue, prepared.id, value);
  }
  return new WasmqError(`the debounced enqueue answered ${JSON.stringify(reply)}`);
}

export function decodeEnqueueReply(prepared: Prepared, reply: unknown): Enqueued | WasmqError {
  if (!Array.isArray(reply) || reply.length === 0) return new WasmqError(`enqueue answered ${JSON.stringify(reply)}`);
  const [status, first, second] = reply.map((part) => (Buffer.isBuffer(part) ? part.toString('utf8') : part));
  if (status === 'ok' && reply.length === 2) return { id: prepared.id, queue: prepared.queue, state: String(first) };
  if (status === 'duplicate-id' && reply.length === 2) return new DuplicateIdError(prepared.queue, prepared.id, String(first));
  if (status === 'duplicate-id' && reply.length === 3) {
    return new DuplicateIdError(prepared.queue, prepared.id, undefined, Number(second));
  }
  if (status === 'duplicate-unique' && reply.length === 3) {
    return new DuplicateUniqueError(prepared.queue, prepared.type, String(first), Number(second));
  }
  return new WasmqError(`enqueue answered ${JSON.stringify(reply)}`);
}

/** Decodes the replies of a lookup pipeline (HGET msg, state, attempts, error, result, progress; ZSCOREs). */
export function decodeTask(queue: string, id: string, replies: unknown[]): TaskInfo | undefined {
  const [msg, state, attempts, error, result, progress, ...scores] = replies;
  if (msg === null || msg === undefined) return undefined;
  const message = JSON.parse(String(msg)) as Record<string, unknown>;
  let lastError: ErrorRecord | undefined;
  if (error !== null && error !== undefined) {
    const record = JSON.parse(String(error)) as Record<string, unknown>;
    lastError = {
      kind: String(record.kind ?? ''),
      message: String(record.message ?? ''),
      attempt: Number(record.attempt ?? 0),
      atMs: Number(record.at_ms ?? 0),
    };
  }
  const score = scores.find((value) => value !== null && value !== undefined);
  return {
    id,
    queue,
    type: String(message.type ?? ''),
    state: state === null || state === undefined ? '' : String(state),
    payload: message.payload,
    attempts: attempts === null || attempts === undefined ? 0 : Number(attempts),
    maxRetry: Number(message.max_retry ?? 0),
    message,
    lastError,
    result: result === null || result === undefined ? undefined : (result as Buffer),
    stateTimeMs: score === undefined ? undefined : Math.trunc(Number(score)),
    progress: decodeProgress(progress),
  };
}
