declare module 'wasmq:plugin/log@0.1.0' {
  /**
   * Writes one line to the host log. The host adds the plugin name and
   * the task's id, type and attempt, and caps the volume per task.
   */
  export function log(level: Level, message: string): void;
  /**
   * How important a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
