/** The client: enqueue tasks, look them up, wait for results. */

import type { Cluster, Redis } from 'ioredis';

import { DEFAULT_URL, defaultName, open, parseUrl, translate } from './connection.js';
import type { ConnectOptions, Target } from './connection.js';
import {
  InvalidTaskError,
  NotReplicatedError,
  RedisUnreachableError,
  TaskFailedError,
  TaskNotFoundError,
  WaitTimeoutError,
  WasmqError,
} from './errors.js';
import {
  chunks,
  DEFAULT_MAX_PAYLOAD_BYTES,
  AGGREGATE_SCRIPT,
  DEBOUNCE_SCRIPT,
  ENQUEUE_SCRIPT,
  QUEUES_KEY,
  TIMED_STATES,
  checkQueue,
  decodeAggregateReply,
  decodeDebounceReply,
  decodeEnqueueReply,
  decodeTask,
  key,
  prepare,
  queueKeys,
} from './protocol.js';
import type { Enqueued, Prepared, Task, TaskInfo } from './protocol.js';

/** Options of {@link Client.connect}. */
export interface ClientOptions extends ConnectOptions {
  /** Return from an enqueue only once this many replicas have it (`WAIT`). */
  waitReplicas?: number;
  /** How long to wait for them, ms (default 5000). */
  waitTimeoutMs?: number;
  /** The largest payload accepted, bytes of JSON text (default 1 MiB). */
  maxPayloadBytes?: number;
}

/** An enqueue's outcome in a batch: the task accepted, or why not. */
export type Outcome = Enqueued | WasmqError;

type Pipeline = ReturnType<Redis['pipeline']>;
type Scripted = Pipeline & {
  wasmqEnqueue(...args: string[]): Pipeline;
  wasmqDebounce(...args: string[]): Pipeline;
  wasmqAggregate(...args: string[]): Pipeline;
};

/**
 * Enqueues tasks on the Redis a wasmq fleet serves, and reads them back.
 *
 * ```ts
 * const client = await Client.connect('redis://127.0.0.1:6379');
 * const task = await client.enqueue({ type: 'email:send', payload: { to: 'a@example.com' } });
 * ```
 */
export class Client {
  /** How many replicas an enqueue waits for (0: none). */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  readonly maxPayloadBytes: number;
  private readonly registered = new Set<string>();

  private constructor(
    private readonly target: Target,
    private readonly redis: Redis | Cluster,
    options: ClientOptions,
  ) {
    this.waitReplicas = options.waitReplicas ?? 0;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 5000;
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    redis.defineCommand('wasmqEnqueue', { numberOfKeys: 17, lua: ENQUEUE_SCRIPT });
    redis.defineCommand('wasmqDebounce', { numberOfKeys: 17, lua: DEBOUNCE_SCRIPT });
    redis.defineCommand('wasmqAggregate', { numberOfKeys: 17, lua: AGGREGATE_SCRIPT });
  }

  /**
   * Connects to `url`: `redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`,
   * `redis+sentinel://…/MASTER` or `rediss+sentinel://…/MASTER` (default `$WASMQ_REDIS_URL`,
   * then `redis://127.0.0.1:6379`). Throws RedisUnreachableError or TlsError when it cannot.
   */
  static async connect(url?: string, options: ClientOptions = {}): Promise<Client> {
    const target = parseUrl(url ?? process.env.WASMQ_REDIS_URL ?? DEFAULT_URL, options);
    const redis = open(target, options.name ?? defaultName());
    // Connection errors are reported by the commands that meet them; the
    // last one says why a first connection failed (a refused certificate,
    // say) when connect() only reports that the connection closed.
    let lastError: unknown;
    redis.on('error', (err: unknown) => {
      lastError = err;
    });
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      const cause = translate(lastError ?? err, target.shown);
      throw cause instanceof RedisUnreachableError && lastError === undefined ? translate(err, target.shown) : cause;
    }
    return new Client(target, redis, options);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** Enqueues one task; throws the error when it is refused. */
  async enqueue(task: Task): Promise<Enqueued> {
    const [outcome] = await this.enqueueBatch([task]);
    if (outcome instanceof Error) throw outcome;
    return outcome;
  }

  /**
   * Enqueues many tasks in one round trip per queue (at most 500 tasks or 4 MiB of them per
   * script call). Each task is accepted or refused on its own: the outcomes come back in
   * order, an Enqueued or the error (not thrown).
   */
  async enqueueBatch(tasks: Task[]): Promise<Outcome[]> {
    const outcomes: (Outcome | undefined)[] = [];
    const byQueue = new Map<string, { index: number; prepared: Prepared }[]>();
    tasks.forEach((task, index) => {
      try {
        const prepared = prepare(task, this.maxPayloadBytes);
        outcomes.push(undefined);
        const entries = byQueue.get(prepared.queue) ?? [];
        entries.push({ index, prepared });
        byQueue.set(prepared.queue, entries);
      } catch (err) {
        outcomes.push(err instanceof WasmqError ? err : new InvalidTaskError(String(err)));
      }
    });
    await Promise.all(
      [...byQueue].map(async ([queue, entries]) => {
        let replies: Outcome[];
        try {
          await this.register(queue);
          replies = await this.runEnqueue(queue, entries.map((entry) => entry.prepared));
        } catch (err) {
          const error = translate(err, this.target.shown);
          replies = entries.map(() => error);
        }
        entries.forEach((entry, i) => {
          outcomes[entry.index] = replies[i];
        });
      }),
    );
    return outcomes as Outcome[];
  }

  private async register(queue: string): Promise<void> {
    if (this.registered.has(queue)) return;
    await this.redis.sadd(QUEUES_KEY, queue);
    this.registered.add(queue);
  }

  private async runEnqueue(queue: string, prepared: Prepared[]): Promise<Outcome[]> {
    const keys = queueKeys(queue);
    // enqueue.lua for plain tasks, in chunks (protocol.ts); debounce.lua for each debounced one. Each call
    // carries the indexes of its tasks.
    type Kind = 'plain' | 'debounce' | 'aggregate';
    const kind = (task: Prepared): Kind => (task.debounced ? 'debounce' : task.aggregateArgs ? 'aggregate' : 'plain');
    const plain = prepared.flatMap((task, n) => (kind(task) === 'plain' ? [n] : []));
    const calls: { kind: Kind; tasks: number[] }[] = [];
    const argumentsLength = (n: number) => prepared[n].args.reduce((sum, arg) => sum + arg.length, 0);
    for (const tasks of chunks(plain, argumentsLength)) calls.push({ kind: 'plain', tasks });
    prepared.forEach((task, n) => {
      if (kind(task) !== 'plain') calls.push({ kind: kind(task), tasks: [n] });
    });
    // One pipeline on the queue's node (a cluster sends a pipeline whose keys share a slot to
    // that slot's master), so that WAIT follows the scripts on the same connection.
    const pipe = this.redis.pipeline() as Scripted;
    for (const call of calls) {
      if (call.kind === 'aggregate') pipe.wasmqAggregate(...keys, ...(prepared[call.tasks[0]].aggregateArgs ?? []));
      else if (call.kind === 'debounce') pipe.wasmqDebounce(...keys, ...prepared[call.tasks[0]].args);
      else pipe.wasmqEnqueue(...keys, ...call.tasks.flatMap((n) => prepared[n].args));
    }
    if (this.waitReplicas > 0) pipe.wait(this.waitReplicas, Math.max(Math.trunc(this.waitTimeoutMs), 1));
    const replies = (await pipe.exec()) ?? [];
    let shortfall: number | undefined;
    if (this.waitReplicas > 0) {
      const [err, acknowledged] = replies[replies.length - 1] ?? [];
      if (err) throw err;
      if (Number(acknowledged) < this.waitReplicas) shortfall = Number(acknowledged);
    }
    const outcomes: Outcome[] = new Array(prepared.length);
    const settle = (n: number, outcome: Enqueued | WasmqError) => {
      outcomes[n] =
        shortfall !== undefined && !(outcome instanceof Error)
          ? new NotReplicatedError(this.waitReplicas, shortfall, this.waitTimeoutMs, outcome)
          : outcome;
    };
    calls.forEach((call, i) => {
      const [err, reply] = replies[i] ?? [new WasmqError('no reply'), undefined];
      if (err) {
        const error = translate(err, this.target.shown);
        call.tasks.forEach((n) => {
          outcomes[n] = error;
        });
        return;
      }
      if (call.kind === 'debounce') {
        settle(call.tasks[0], decodeDebounceReply(prepared[call.tasks[0]], reply));
        return;
      }
      if (call.kind === 'aggregate') {
        settle(call.tasks[0], decodeAggregateReply(prepared[call.tasks[0]], reply));
        return;
      }
      const answers = reply as unknown[];
      if (!Array.isArray(answers) || answers.length !== call.tasks.length) {
        const error = new WasmqError(`enqueue on ${JSON.stringify(queue)} answered ${String(answers?.length)} of ${call.tasks.length} tasks`);
        call.tasks.forEach((n) => {
          outcomes[n] = error;
        });
        return;
      }
      call.tasks.forEach((n, j) => settle(n, decodeEnqueueReply(prepared[n], answers[j])));
    });
    return outcomes;
  }

  /**
   * The task's record (state, attempts, last error, result), or undefined when there is no
   * such task. Without a queue, every known queue is searched.
   */
  async task(id: string, queue?: string): Promise<TaskInfo | undefined> {
    try {
      const found = queue ?? (await this.findQueue(id));
      if (found === undefined) return undefined;
      checkQueue(found);
      const pipe = this.redis.pipeline();
      for (const part of ['msg', 'state', 'attempts', 'error']) pipe.hget(key(found, part), id);
      pipe.hgetBuffer(key(found, 'result'), id);
      pipe.hget(key(found, 'progress'), id);
      for (const state of TIMED_STATES) pipe.zscore(key(found, state), id);
      const replies = (await pipe.exec()) ?? [];
      const values = replies.map(([err, value]) => {
        if (err) throw err;
        return value;
      });
      return decodeTask(found, id, values);
    } catch (err) {
      throw translate(err, this.target.shown);
    }
  }

  private async findQueue(id: string): Promise<string | undefined> {
    const queues = (await this.redis.smembers(QUEUES_KEY)).sort();
    const held = await Promise.all(queues.map((queue) => this.redis.hexists(key(queue, 'state'), id)));
    const found = queues.filter((_, i) => held[i] === 1);
    if (found.length > 1) throw new InvalidTaskError(`task id ${JSON.stringify(id)} exists in several queues (${found.join(', ')}): name one`);
    return found[0];
  }

  /**
   * Waits until the task is completed and returns its record (with its result). Throws
   * TaskFailedError if it ends archived, TaskNotFoundError if it is (or becomes) gone,
   * WaitTimeoutError after `timeoutMs`.
   */
  async wait(id: string, options: { queue?: string; timeoutMs?: number } = {}): Promise<TaskInfo> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    let pause = 50;
    for (;;) {
      const info = await this.task(id, options.queue);
      if (info === undefined) {
        throw new TaskNotFoundError(
          `no task ${JSON.stringify(id)}${options.queue ? ` in queue ${JSON.stringify(options.queue)}` : ''}: never enqueued, or gone (completed with retention 0, past its retention, or deleted)`,
        );
      }
      if (info.state === 'completed') return info;
      if (info.state === 'archived') throw new TaskFailedError(info);
      if (Date.now() + pause > deadline) throw new WaitTimeoutError(`task ${JSON.stringify(id)} is still ${info.state} after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 500);
    }
  }

  /** The result bytes of the task once it completed (see {@link Client.wait}). */
  async waitResult(id: string, options: { queue?: string; timeoutMs?: number } = {}): Promise<Buffer | undefined> {
    return (await this.wait(id, options)).result;
  }
}
