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
/** Tasks per script call in a batch. */
export const BATCH_CHUNK = 500;
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
  const id = task.id ?? randomUUID();

  let message = `{"id":${show(id)},"type":${show(type)},"queue":${show(queue)},"payload":${payload},"max_retry":${maxRetry}`;
  if (timeoutMs !== undefined) message += `,"timeout_ms":${timeoutMs}`;
  if (deadlineMs !== undefined) message += `,"deadline_ms":${deadlineMs}`;
  message += `,"retention_ms":${retentionMs}`;
  if (lock !== undefined) message += `,"unique_key":${show(lock)}`;
  message += `,"enqueued_at_ms":${Date.now()}}`;
  const args = [
    id,
    message,
    String(delayMs),
    String(dueAtMs),
    lock ?? '',
    String(task.unique === undefined ? 0 : Math.trunc(task.unique)),
    '0',
  ];
  return { id, queue, type, args };
}

/** What one reply of enqueue.lua means for its task. */
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

/** Decodes the replies of a lookup pipeline (HGET msg, state, attempts, error, result; ZSCOREs). */
export function decodeTask(queue: string, id: string, replies: unknown[]): TaskInfo | undefined {
  const [msg, state, attempts, error, result, ...scores] = replies;
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
  };
}
