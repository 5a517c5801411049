/// <reference path="./wasmq-plugin-types.d.ts" />
declare module 'wasmq:plugin/handler@0.1.0' {
  /**
   * Runs one task. Returns the result bytes (stored with the completed
   * task for its retention) or a failure that says what the host should
   * do next.
   */
  export function handle(task: Task): Uint8Array;
  export type Task = import('wasmq:plugin/types@0.1.0').Task;
  export type Failure = import('wasmq:plugin/types@0.1.0').Failure;
}
