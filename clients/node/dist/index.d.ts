/**
 * Enqueue wasmq tasks from Node.
 *
 * wasmq runs background tasks from Redis queues, each in a sandboxed WebAssembly plugin.
 * This package is a producer: it puts tasks on the queues (speaking the documented
 * protocol, docs/PROTOCOL.md, with the same Lua scripts as the wasmq host), looks tasks up
 * and waits for their results.
 */
export { Client } from './client.js';
export type { ClientOptions, Outcome } from './client.js';
export type { ConnectOptions } from './connection.js';
export { DuplicateIdError, DuplicateUniqueError, InvalidTaskError, NotReplicatedError, RedisUnreachableError, TaskFailedError, TaskNotFoundError, TlsError, WaitTimeoutError, WasmqError, } from './errors.js';
export { DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_RETRY, DEFAULT_QUEUE, DEFAULT_RETENTION_MS, ENQUEUE_SHA, MAX_DELAY_MS, MAX_JSON_DEPTH, } from './protocol.js';
export type { Enqueued, ErrorRecord, Progress, Task, TaskInfo } from './protocol.js';
