// A module of its own, bundled with the entry by `wasmq plugin build`.

export function greeting(name: string): string {
  return `hello, ${name}`;
}
