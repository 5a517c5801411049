// The component's export: the host calls `handler.handle(task)` for every
// task. Not part of the public API; `wasmq plugin build` exports it.

import { Failure, run } from "./index.js";

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
