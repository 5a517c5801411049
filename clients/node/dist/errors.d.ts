/**
 * The errors of the wasmq client: one class per case a caller branches on.
 * Every error is a {@link WasmqError}.
 */
/** Any error of the wasmq client. */
export declare class WasmqError extends Error {
    constructor(message: string);
}
/** The task (or one of its options) is not acceptable; nothing was sent. */
export declare class InvalidTaskError extends WasmqError {
}
/** A task with this id is already kept in the queue, or its id is still reserved. */
export declare class DuplicateIdError extends WasmqError {
    readonly queue: string;
    readonly id: string;
    /** The state of the task holding the id (undefined: it is gone but the id is reserved). */
    readonly state?: string | undefined;
    /** Milliseconds the id stays reserved, when it is. */
    readonly reservedForMs?: number | undefined;
    constructor(queue: string, id: string, 
    /** The state of the task holding the id (undefined: it is gone but the id is reserved). */
    state?: string | undefined, 
    /** Milliseconds the id stays reserved, when it is. */
    reservedForMs?: number | undefined);
}
/** An equal task (same queue, type and payload) holds the unique lock. */
export declare class DuplicateUniqueError extends WasmqError {
    readonly queue: string;
    readonly taskType: string;
    /** The id of the task holding the lock. */
    readonly holder: string;
    /** Milliseconds the lock still holds. */
    readonly remainingMs: number;
    constructor(queue: string, taskType: string, 
    /** The id of the task holding the lock. */
    holder: string, 
    /** Milliseconds the lock still holds. */
    remainingMs: number);
}
/** Redis did not answer, or the connection broke: retrying later may work. */
export declare class RedisUnreachableError extends WasmqError {
}
/** A TLS connection failed: the certificate was refused (the message says why) or the options are unusable. */
export declare class TlsError extends WasmqError {
}
/**
 * A durable write reached the master but fewer replicas than asked for
 * acknowledged it in time: it is in Redis, but a failover now could lose it.
 */
export declare class NotReplicatedError extends WasmqError {
    readonly wanted: number;
    readonly acknowledged: number;
    readonly timeoutMs: number;
    /** What was written, when the write was an enqueue. */
    readonly enqueued?: unknown | undefined;
    constructor(wanted: number, acknowledged: number, timeoutMs: number, 
    /** What was written, when the write was an enqueue. */
    enqueued?: unknown | undefined);
}
/** No such task: never enqueued, or gone (completed with retention 0, past its retention, or deleted). */
export declare class TaskNotFoundError extends WasmqError {
}
/** The task ended archived (failed for good, or cancelled); `info.lastError` says why. */
export declare class TaskFailedError extends WasmqError {
    readonly info: {
        id: string;
        queue: string;
        lastError?: {
            kind: string;
            message: string;
        };
    };
    constructor(info: {
        id: string;
        queue: string;
        lastError?: {
            kind: string;
            message: string;
        };
    });
}
/** The task did not finish within the time given. */
export declare class WaitTimeoutError extends WasmqError {
}
