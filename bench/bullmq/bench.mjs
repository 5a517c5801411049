// The BullMQ side of wasmq's comparison benchmark. `wasmq-bench compare`
// runs it against the same redis-server as wasmq, one scenario at a time,
// and reads the one JSON line it prints.
//
//   node bench.mjs PORT addbulk --tasks N --batch B
//   node bench.mjs PORT drain   --tasks N --concurrency C --batch B [--payload BYTES]
//   node bench.mjs PORT latency --rate R --seconds S --concurrency C
//   node bench.mjs PORT flows   --flows F --children N --concurrency C
//   node bench.mjs PORT webhook --tasks N --concurrency C --batch B --port P
//
// addbulk: enqueue/s of N no-op jobs through Queue.addBulk in batches of B.
// drain:   jobs/s of a Worker (no-op async processor, removeOnComplete)
//          draining N jobs pre-filled with addBulk (whose rate is also
//          reported); peak RSS of this process. With --payload, each job's
//          data is a JSON object of that many bytes ({"pad":"xx…"}) and the
//          processor returns it as its result, as wasmq's echo does.
// latency: a Worker runs while jobs are added at R/s (addBulk once per
//          millisecond) for S seconds; each job carries its enqueue time,
//          and the processor records how long it waited before starting.
// webhook: like drain, but each job GETs http://127.0.0.1:P/hook with
//          fetch (a server that answers after a delay) and reads its body;
//          also the process's CPU per job, µs.
// flows:   F flows of a parent and N children added with FlowProducer, then
//          drained by a Worker: flows/s, and the time from each flow's last
//          child ending to its parent starting (p50, p99).

import { FlowProducer, Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const [port, mode, ...rest] = process.argv.slice(2);
const options = {};
for (let i = 0; i < rest.length; i += 2) {
  options[rest[i].replace(/^--/, '')] = Number(rest[i + 1]);
}
if (!port || !['addbulk', 'drain', 'latency', 'flows', 'webhook'].includes(mode)) {
  console.error('usage: node bench.mjs PORT addbulk|drain|latency|flows|webhook [--tasks N] [--batch B] [--concurrency C] [--rate R] [--seconds S]');
  process.exit(2);
}

const connection = { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null };
const queueName = `bench-${mode}-${process.pid}`;
const jobOptions = { removeOnComplete: true, removeOnFail: true };

/** Microseconds since the epoch, with sub-millisecond precision. */
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

/** This process's peak resident set size so far, in MB. */
const peakRssMb = () => Math.round(process.resourceUsage().maxRSS * 1.024) / 1000;

/** A job's data: `{}`, or an object whose JSON is `bytes` long. */
const padded = (bytes) => (bytes > 0 ? { pad: 'x'.repeat(Math.max(0, bytes - 10)) } : {});

async function fill(queue, tasks, batch) {
  const data = padded(options.payload ?? 0);
  for (let done = 0; done < tasks; done += batch) {
    const count = Math.min(batch, tasks - done);
    const jobs = Array.from({ length: count }, () => ({ name: 'echo', data, opts: jobOptions }));
    await queue.addBulk(jobs);
  }
}

async function addbulk(queue) {
  const started = performance.now();
  await fill(queue, options.tasks, options.batch);
  const seconds = (performance.now() - started) / 1000;
  return { tasks: options.tasks, enqueue_per_s: Math.round(options.tasks / seconds) };
}

async function drain(queue, processorOverride) {
  const filling = performance.now();
  await fill(queue, options.tasks, options.batch);
  const fillSeconds = (performance.now() - filling) / 1000;
  let completed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const started = performance.now();
  const processor = processorOverride
    ?? (options.payload > 0 ? async (job) => job.data : async () => {});
  const cpuBefore = process.cpuUsage();
  const worker = new Worker(queueName, processor, {
    connection: new IORedis(connection),
    concurrency: options.concurrency,
  });
  worker.on('completed', () => {
    completed += 1;
    if (completed === options.tasks) done();
  });
  // A job that fails would never be counted: say why and stop.
  worker.on('failed', (_job, err) => {
    console.error(`a job failed: ${err}`);
    process.exit(1);
  });
  await finished;
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  await worker.close();
  return {
    tasks: options.tasks,
    cpu_us_per_task: Math.round((cpu.user + cpu.system) / options.tasks),
    concurrency: options.concurrency,
    payload_bytes: options.payload ?? 0,
    processed_per_s: Math.round(options.tasks / seconds),
    enqueue_per_s: Math.round(options.tasks / fillSeconds),
    peak_rss_mb: peakRssMb(),
  };
}

async function webhook(queue) {
  const url = `http://127.0.0.1:${options.port}/hook`;
  return drain(queue, async () => {
    const response = await fetch(url);
    await response.text();
  });
}

async function latency(queue) {
  const waits = [];
  const worker = new Worker(queueName, async (job) => {
    waits.push(nowUs() - job.data.t);
  }, { connection: new IORedis(connection), concurrency: options.concurrency });
  await worker.waitUntilReady();
  const total = Math.round(options.rate * options.seconds);
  const started = performance.now();
  let added = 0;
  while (added < total) {
    // Catch up to where the clock says we should be, once per millisecond.
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * options.rate));
    if (due > added) {
      const jobs = [];
      for (; added < due; added++) {
        jobs.push({ name: 'echo', data: { t: nowUs() }, opts: jobOptions });
      }
      await queue.addBulk(jobs);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  while (waits.length < total) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await worker.close();
  waits.sort((a, b) => a - b);
  const at = (q) => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))] / 1000;
  const round = (ms) => Math.round(ms * 100) / 100;
  return {
    rate: options.rate,
    tasks: total,
    concurrency: options.concurrency,
    p50_ms: round(at(0.5)),
    p99_ms: round(at(0.99)),
    max_ms: round(waits[waits.length - 1] / 1000),
  };
}

async function flows() {
  const producer = new FlowProducer({ connection: new IORedis(connection) });
  const enqueueStarted = performance.now();
  for (let f = 0; f < options.flows; f++) {
    const children = Array.from({ length: options.children }, () => ({ name: 'child', queueName, data: {}, opts: jobOptions }));
    await producer.add({ name: 'parent', queueName, data: {}, opts: jobOptions, children });
  }
  const enqueueSeconds = (performance.now() - enqueueStarted) / 1000;
  const lastChildEnd = new Map();
  const waits = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const started = performance.now();
  const worker = new Worker(queueName, async (job) => {
    if (job.name === 'child') {
      const parent = job.parent ? job.parent.id : job.parentKey;
      const end = nowUs();
      lastChildEnd.set(parent, Math.max(lastChildEnd.get(parent) || 0, end));
    } else {
      const start = nowUs();
      const last = lastChildEnd.get(job.id);
      if (last !== undefined) waits.push(start - last);
      if (waits.length === options.flows) done();
    }
  }, { connection: new IORedis(connection), concurrency: options.concurrency });
  await finished;
  const seconds = (performance.now() - started) / 1000;
  await worker.close();
  await producer.close();
  waits.sort((a, b) => a - b);
  const at = (q) => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))] / 1000;
  const round = (v) => Math.round(v * 100) / 100;
  return {
    flows: options.flows,
    children: options.children,
    concurrency: options.concurrency,
    flows_per_s: Math.round((options.flows / seconds) * 10) / 10,
    tasks_per_s: Math.round((options.flows * (options.children + 1)) / seconds),
    enqueue_flows_per_s: Math.round((options.flows / enqueueSeconds) * 10) / 10,
    parent_wait_p50_ms: round(at(0.5)),
    parent_wait_p99_ms: round(at(0.99)),
  };
}

const queue = new Queue(queueName, { connection: new IORedis(connection) });
const result = await { addbulk, drain, latency, flows, webhook }[mode](queue);
await queue.obliterate({ force: true });
await queue.close();
console.log(JSON.stringify({ peer: 'bullmq', mode, ...result }));
process.exit(0);
