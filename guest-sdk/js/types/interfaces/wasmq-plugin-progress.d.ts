declare module 'wasmq:plugin/progress@0.1.0' {
  /**
   * Reports progress: `done` (a percentage, or items done: the plugin's
   * choice) and `note`, JSON text of at most 1 KiB (`null` for none).
   * Refused when `done` is not a finite number or `note` is not such
   * JSON.
   */
  export function report(done: number, note: string): void;
  /**
   * Says the task is alive: renews its lease now (at most once a
   * second), and keeps its last report with the time of this call.
   */
  export function heartbeat(): void;
}
