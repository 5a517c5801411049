// Types of the wasmq JavaScript SDK. The WIT-level types under types/ are
// generated from wit/wasmq.wit by jco (`npm run types`); this file is the
// SDK's own vocabulary on top of them.

/// <reference path="./types/task-handler.d.ts" />

import type { Level } from "wasmq:plugin/log@0.1.0";

export type { Level };

/** The task being handled, without its payload (which the handler receives decoded). */
export interface Task {
  /** The task's id, unique within its queue. */
  readonly id: string;
  /** The task type the producer gave, such as `thumbnail:make`. */
  readonly taskType: string;
  /** The queue the task was taken from. */
  readonly queue: string;
  /** Which attempt this is: 1 on the first run, 2 on the first retry... */
  readonly attempt: number;
  /** How many retries the task may have after its first attempt. */
  readonly maxRetry: number;
  /** True when a `Failure.retry` thrown now would archive the task. */
  readonly isLastAttempt: boolean;
}

/** What the host does next when a handler throws one. */
export type FailureKind = "retry" | "give-up" | "bad-payload";

/** Why a handler produced no result, and what the host should do. */
export class Failure extends Error {
  readonly kind: FailureKind;
  /** Worth retrying: the host retries with backoff while retries are left. */
  static retry(message: unknown): Failure;
  /** No retry can help: the host archives the task now. */
  static giveUp(message: unknown): Failure;
  /** The payload cannot be handled: archived now as `bad-payload`. */
  static badPayload(message: unknown): Failure;
}

/** A capability call the host refused (not granted, over a cap...); uncaught, the attempt is retried. */
export class CapabilityError extends Failure {}

/** A task handler: returns the result (encoded as JSON) or a promise of it. */
export type Handler<P = unknown, R = unknown> = (task: Task, payload: P) => R | Promise<R>;

/** Registers `fn` as the handler of one task type or a list of them. */
export function handler<P = any, R = unknown>(taskTypes: string | string[], fn: Handler<P, R>): Handler<P, R>;

/** Logging into the host's log, tagged with the plugin and the task. */
export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** The plugin's key-value store (capability `kv`). */
export const kv: {
  /** The value of `key` as bytes, or undefined. */
  get(key: string): Uint8Array | undefined;
  /** The value of `key` as text, or undefined. */
  getText(key: string): string | undefined;
  /** Sets `key` to `value` (bytes, or text stored as UTF-8). */
  set(key: string, value: Uint8Array | string): void;
  /** Removes `key`; true if it was set. */
  delete(key: string): boolean;
  /** Adds `by` (default 1) to the integer at `key` and returns the sum. */
  increment(key: string, by?: number): number;
};

/** Options of a follow-up task. */
export interface FollowUpOptions {
  /** Its queue (default: the current task's). */
  queue?: string;
  /** Delay before it is due, in milliseconds. */
  delayMs?: number;
  /** A task id of the plugin's choosing (refused if taken). */
  id?: string;
}

/** Enqueues a follow-up task (capability `enqueue`) and returns its id. */
export function enqueue(taskType: string, payload?: unknown, options?: FollowUpOptions): string;

/** How one child of the running task ended. */
export interface Child {
  readonly id: string;
  readonly queue: string;
  readonly taskType: string;
  /** True when it completed (`result` holds its result bytes). */
  readonly ok: boolean;
  readonly result: Uint8Array | undefined;
  /** Why it did not complete (failed, cancelled, deleted), otherwise. */
  readonly error: string | undefined;
  /** Its result decoded from JSON; throws a CapabilityError when it did not complete. */
  json<T = unknown>(): T;
}

/** Progress: how far the running task has got (every plugin; at most one write every 250 ms, the last one kept). */
export const progress: {
  /** Reports `done` (a percentage, or items done) and a note (JSON-encodable, at most 1 KiB). */
  report(done: number, note?: unknown): void;
  /** Says the task is alive, keeping its last report. */
  heartbeat(): void;
};

/** Flows: the running task's children's outcomes, starting flows, and adding children (capability `enqueue`). */
export const flow: {
  /** The outcomes of the running task's children, in order (empty unless it is a flow parent). */
  children(): Child[];
  /** Starts a flow (a task object with `children`, or an array of them for a chain); returns its root's id. */
  start(spec: unknown): string;
  /**
   * Adds children (task objects, as a flow's `children`) to the running task; returns how many tasks they hold.
   * They are enqueued only if this attempt succeeds; the task then runs again once they have all ended.
   */
  addChildren(children: unknown[]): number;
};
