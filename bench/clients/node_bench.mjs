// Bulk-enqueue rate of the wasmq Node client (`wasmq-bench clients` runs it).
//
//   node node_bench.mjs PORT TASKS BATCH
//
// Enqueues TASKS no-op `echo` tasks with enqueueBatch in batches of BATCH and
// prints one JSON line with the rate.

import { Client } from '../../clients/node/dist/index.js';

const [port, tasks, batch] = process.argv.slice(2).map(Number);
const client = await Client.connect(`redis://127.0.0.1:${port}`);
const started = performance.now();
for (let done = 0; done < tasks; done += batch) {
  const count = Math.min(batch, tasks - done);
  const outcomes = await client.enqueueBatch(Array.from({ length: count }, () => ({ type: 'echo', payload: {}, queue: 'bench-node' })));
  const refused = outcomes.find((outcome) => outcome instanceof Error);
  if (refused) throw refused;
}
const seconds = (performance.now() - started) / 1000;
await client.close();
console.log(JSON.stringify({ peer: 'wasmq-node', tasks, enqueue_per_s: Math.round(tasks / seconds) }));
