// The component's export: the host calls `handler.handle(task)` for every
// task. Not part of the public API; `wasmq plugin build` exports it.

import { Failure, run, warmUp } from "./index.js";

function failure(err) {
  return { tag: err.kind, val: err.message };
}

// The host reads the last `Uncaught` line of stderr to name the error of
// an attempt that ends this way (class `panic`).
function describe(err) {
  if (err instanceof Error) return `Uncaught ${err.name}: ${err.message}\n${err.stack ?? ""}`;
  return `Uncaught ${String(err)}`;
}

export const handler = {
  handle(task) {
    try {
      const result = run(task);
      if (result && typeof result.then === "function") {
        return result.catch((err) => {
          if (err instanceof Failure) throw failure(err);
          console.error(describe(err));
          throw err;
        });
      }
      return result;
    } catch (err) {
      if (err instanceof Failure) throw failure(err);
      console.error(describe(err));
      throw err;
    }
  },
};

// Runs the export's path a few times at build time, calling no handler
// (see `warmUp` in index.js): as far as a task type no handler has.
export function warmUpExport() {
  warmUp();
  const task = { id: "", taskType: "", payload: new Uint8Array(), queue: "", attempt: 1, maxRetry: 0 };
  for (let i = 0; i < 16; i++) {
    try {
      handler.handle(task);
    } catch {
      // The failure of a task type no handler has, as expected.
    }
  }
}
