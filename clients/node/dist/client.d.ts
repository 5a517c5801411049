/** The client: enqueue tasks, look them up, wait for results. */
import type { ConnectOptions } from './connection.js';
import { WasmqError } from './errors.js';
import type { Enqueued, Task, TaskInfo } from './protocol.js';
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
/**
 * Enqueues tasks on the Redis a wasmq fleet serves, and reads them back.
 *
 * ```ts
 * const client = await Client.connect('redis://127.0.0.1:6379');
 * const task = await client.enqueue({ type: 'email:send', payload: { to: 'a@example.com' } });
 * ```
 */
export declare class Client {
    private readonly target;
    private readonly redis;
    /** How many replicas an enqueue waits for (0: none). */
    readonly waitReplicas: number;
    readonly waitTimeoutMs: number;
    readonly maxPayloadBytes: number;
    private readonly registered;
    private constructor();
    /**
     * Connects to `url`: `redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`,
     * `redis+sentinel://…/MASTER` or `rediss+sentinel://…/MASTER` (default `$WASMQ_REDIS_URL`,
     * then `redis://127.0.0.1:6379`). Throws RedisUnreachableError or TlsError when it cannot.
     */
    static connect(url?: string, options?: ClientOptions): Promise<Client>;
    /** Closes the connection. */
    close(): Promise<void>;
    /** Enqueues one task; throws the error when it is refused. */
    enqueue(task: Task): Promise<Enqueued>;
    /**
     * Enqueues many tasks in one round trip per queue (at most 500 tasks or 4 MiB of them per
     * script call). Each task is accepted or refused on its own: the outcomes come back in
     * order, an Enqueued or the error (not thrown).
     */
    enqueueBatch(tasks: Task[]): Promise<Outcome[]>;
    private register;
    private runEnqueue;
    /**
     * The task's record (state, attempts, last error, result), or undefined when there is no
     * such task. Without a queue, every known queue is searched.
     */
    task(id: string, queue?: string): Promise<TaskInfo | undefined>;
    private findQueue;
    /**
     * Waits until the task is completed and returns its record (with its result). Throws
     * TaskFailedError if it ends archived, TaskNotFoundError if it is (or becomes) gone,
     * WaitTimeoutError after `timeoutMs`.
     */
    wait(id: string, options?: {
        queue?: string;
        timeoutMs?: number;
    }): Promise<TaskInfo>;
    /** The result bytes of the task once it completed (see {@link Client.wait}). */
    waitResult(id: string, options?: {
        queue?: string;
        timeoutMs?: number;
    }): Promise<Buffer | undefined>;
}
