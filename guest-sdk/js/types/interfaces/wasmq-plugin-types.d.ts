declare module 'wasmq:plugin/types@0.1.0' {
  /**
   * One task, as the host hands it to a handler.
   */
  export interface Task {
    /**
     * The task's id, unique within its queue.
     */
    id: string,
    /**
     * The task type the producer gave, such as `thumbnail:make`.
     */
    taskType: string,
    /**
     * The payload the producer enqueued: JSON text, as bytes.
     */
    payload: Uint8Array,
    /**
     * The queue the task was taken from.
     */
    queue: string,
    /**
     * Which attempt this is: 1 on the first run, 2 on the first retry...
     */
    attempt: number,
    /**
     * How many retries the task may have after its first attempt.
     */
    maxRetry: number,
  }
  /**
   * Why a handler did not produce a result.
   */
  export type Failure = FailureRetry | FailureGiveUp | FailureBadPayload;
  /**
   * A failure worth retrying (a flaky upstream, a busy resource): the
   * host retries the task with backoff until it runs out of retries.
   */
  export interface FailureRetry {
    tag: 'retry',
    val: string,
  }
  /**
   * A failure no retry can fix: the host archives the task now.
   */
  export interface FailureGiveUp {
    tag: 'give-up',
    val: string,
  }
  /**
   * The payload could not be decoded into what the handler expects.
   * The host archives the task now: retrying the same bytes is futile.
   */
  export interface FailureBadPayload {
    tag: 'bad-payload',
    val: string,
  }
}
