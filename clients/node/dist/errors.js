/**
 * The errors of the wasmq client: one class per case a caller branches on.
 * Every error is a {@link WasmqError}.
 */
/** Any error of the wasmq client. */
export class WasmqError extends Error {
    constructor(message) {
        super(message);
        this.name = new.target.name;
    }
}
/** The task (or one of its options) is not acceptable; nothing was sent. */
export class InvalidTaskError extends WasmqError {
}
/** A task with this id is already kept in the queue, or its id is still reserved. */
export class DuplicateIdError extends WasmqError {
    queue;
    id;
    state;
    reservedForMs;
    constructor(queue, id, 
    /** The state of the task holding the id (undefined: it is gone but the id is reserved). */
    state, 
    /** Milliseconds the id stays reserved, when it is. */
    reservedForMs) {
        super(state === undefined
            ? `duplicate task id ${JSON.stringify(id)}: its task in queue ${JSON.stringify(queue)} has finished, but the id stays reserved for ${reservedForMs ?? 0} ms more`
            : `duplicate task id ${JSON.stringify(id)}: queue ${JSON.stringify(queue)} already holds it as a ${state} task; delete it with \`wasmq task delete ${id} --queue ${queue}\` to reuse the id`);
        this.queue = queue;
        this.id = id;
        this.state = state;
        this.reservedForMs = reservedForMs;
    }
}
/** An equal task (same queue, type and payload) holds the unique lock. */
export class DuplicateUniqueError extends WasmqError {
    queue;
    taskType;
    holder;
    remainingMs;
    constructor(queue, taskType, 
    /** The id of the task holding the lock. */
    holder, 
    /** Milliseconds the lock still holds. */
    remainingMs) {
        super(`duplicate task: an equal ${JSON.stringify(taskType)} task (same queue and payload) is already held by task ${holder} in queue ${JSON.stringify(queue)} for ${remainingMs} ms more`);
        this.queue = queue;
        this.taskType = taskType;
        this.holder = holder;
        this.remainingMs = remainingMs;
    }
}
/** Redis did not answer, or the connection broke: retrying later may work. */
export class RedisUnreachableError extends WasmqError {
}
/** A TLS connection failed: the certificate was refused (the message says why) or the options are unusable. */
export class TlsError extends WasmqError {
}
/**
 * A durable write reached the master but fewer replicas than asked for
 * acknowledged it in time: it is in Redis, but a failover now could lose it.
 */
export class NotReplicatedError extends WasmqError {
    wanted;
    acknowledged;
    timeoutMs;
    enqueued;
    constructor(wanted, acknowledged, timeoutMs, 
    /** What was written, when the write was an enqueue. */
    enqueued) {
        super(`the write is on the master but only ${acknowledged} of the ${wanted} replica(s) asked for acknowledged it within ${timeoutMs} ms: a failover now could lose it`);
        this.wanted = wanted;
        this.acknowledged = acknowledged;
        this.timeoutMs = timeoutMs;
        this.enqueued = enqueued;
    }
}
/** No such task: never enqueued, or gone (completed with retention 0, past its retention, or deleted). */
export class TaskNotFoundError extends WasmqError {
}
/** The task ended archived (failed for good, or cancelled); `info.lastError` says why. */
export class TaskFailedError extends WasmqError {
    info;
    constructor(info) {
        super(`task ${info.id} in queue ${JSON.stringify(info.queue)} was archived (${info.lastError ? `${info.lastError.kind}: ${info.lastError.message}` : 'no error recorded'})`);
        this.info = info;
    }
}
/** The task did not finish within the time given. */
export class WaitTimeoutError extends WasmqError {
}
