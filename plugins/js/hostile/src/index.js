// A hostile JavaScript plugin: one misbehaviour per task type.

import { handler } from "wasmq";

/** Loops forever: stopped when its fuel runs out. */
handler("js:spin", () => {
  let n = 0;
  for (;;) n++;
});

/** Allocates without end: stopped at its memory cap. */
handler("js:membomb", () => {
  const hoard = [];
  for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
});

/** Recurses without end. */
handler("js:recurse", () => {
  const down = (n) => down(n + 1) + 1;
  return down(0);
});

/** Imports a module that throws while it is evaluated. */
handler("js:import", async () => {
  await import("./broken.js");
});

/** Prints megabytes: stopped at its log limit. */
handler("js:flood", () => {
  const line = "x".repeat(1000);
  for (let i = 0; i < 10000; i++) console.log(line);
});

/** An uncaught exception. */
handler("js:throw", () => {
  throw new TypeError("the hostile plugin threw this");
});
