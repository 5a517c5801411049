declare module 'wasmq:plugin/flow@0.1.0' {
  /**
   * The outcomes of the running task's children, in order: empty unless
   * the task is a flow parent. A child that failed under the `ignore`
   * policy is left out.
   */
  export function children(): Array<ChildOutcome>;
  /**
   * Starts a flow: JSON text, one task object in the shape of
   * `wasmq flow add` (`type`, `payload`, `queue`, `id`, `max_retry`,
   * ... and `children`, at any depth), or an array of them for a chain.
   * Tasks without a queue go to the running task's. Returns the root's
   * id, or why the flow was refused (nothing of it is enqueued then).
   */
  export function startFlow(flow: Uint8Array): string;
  /**
   * Adds children to the running task: JSON text, an array of task
   * objects as a flow's `children` (each may have `children` of its own
   * and an `on_failure`); tasks without a queue go to the running
   * task's. They are held until the attempt ends and enqueued only if it
   * succeeds: then the task does not complete (this attempt's result is
   * dropped, and the attempt not counted) but waits until they have all
   * ended, and runs again, `children` giving the outcomes of every child
   * it ever added. Counted under the `enqueue` grant and quota as
   * `start-flow` is. Returns how many tasks were added, or why they were
   * refused (nothing is added then).
   */
  export function addChildren(children: Uint8Array): number;
  /**
   * How one child of the running task ended.
   */
  export interface ChildOutcome {
    /**
     * The child's id.
     */
    id: string,
    /**
     * The child's queue.
     */
    queue: string,
    /**
     * The child's task type.
     */
    taskType: string,
    /**
     * True when it completed (`output` holds its result); false when
     * it failed, was cancelled or was deleted (`error` says why).
     */
    completed: boolean,
    /**
     * Its result, when it completed; empty otherwise.
     */
    output: Uint8Array,
    /**
     * Why it did not complete, when it did not.
     */
    error?: string,
  }
}
