declare module 'wasmq:plugin/enqueue@0.1.0' {
  /**
   * Enqueues a task and returns its id, or why it was refused (quota
   * used up, a type or queue not granted, a duplicate id).
   */
  export function enqueue(task: FollowUp): string;
  /**
   * A task to enqueue.
   */
  export interface FollowUp {
    /**
     * Its task type.
     */
    taskType: string,
    /**
     * Its payload: JSON text, as bytes.
     */
    payload: Uint8Array,
    /**
     * Its queue; the current task's queue when none.
     */
    queue?: string,
    /**
     * Delay before it is due, in milliseconds.
     */
    delayMs?: bigint,
    /**
     * A task id of the plugin's choosing (refused if taken).
     */
    id?: string,
  }
}
