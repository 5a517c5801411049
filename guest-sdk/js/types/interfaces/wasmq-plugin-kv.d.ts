declare module 'wasmq:plugin/kv@0.1.0' {
  /**
   * The value of `key`, if it is set.
   */
  export function get(key: string): Uint8Array | undefined;
  /**
   * Sets `key` to `value`. Fails when the value is over the plugin's
   * size cap, or a new key would go over its key cap.
   */
  export function set(key: string, value: Uint8Array): void;
  /**
   * Removes `key`; true if it was set.
   */
  export { _delete as delete };
  function _delete(key: string): boolean;
  /**
   * Adds `by` to the integer at `key` (0 when unset) and returns the sum.
   */
  export function increment(key: string, by: bigint): bigint;
}
