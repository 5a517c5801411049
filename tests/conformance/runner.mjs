// Runs the conformance cases (cases.json) with the Node client and prints
// what it saw as one JSON document; tests/e2e/conformance.rs checks it.
//
//   node runner.mjs URL [--tls-ca F --tls-cert F --tls-key F] [--only a,b]
//
// It asserts nothing itself: it only reports, step by step, the outcome of
// each enqueue, batch, lookup and wait, so that every client's report is
// judged by the same code.

import { readFileSync } from 'node:fs';

import {
  Client,
  DuplicateIdError,
  DuplicateUniqueError,
  InvalidTaskError,
  NotReplicatedError,
  RedisUnreachableError,
  TaskFailedError,
  TaskNotFoundError,
  TlsError,
  WaitTimeoutError,
} from '../../clients/node/dist/index.js';

const [url, ...rest] = process.argv.slice(2);
const flags = {};
for (let i = 0; i < rest.length; i += 2) flags[rest[i].replace(/^--/, '')] = rest[i + 1];

function makeTask(spec, now) {
  const task = { type: spec.type };
  if ('payload' in spec) task.payload = spec.payload;
  if ('payload_json' in spec) task.payloadJson = spec.payload_json;
  if ('payload_string_of' in spec) task.payload = 'x'.repeat(spec.payload_string_of);
  if ('queue' in spec) task.queue = spec.queue;
  if ('id' in spec) task.id = spec.id;
  if ('delay_ms' in spec) task.delay = spec.delay_ms;
  if ('at_offset_ms' in spec) task.at = now + spec.at_offset_ms;
  if ('max_retry' in spec) task.maxRetry = spec.max_retry;
  if ('timeout_ms' in spec) task.timeout = spec.timeout_ms;
  if ('deadline_offset_ms' in spec) task.deadline = now + spec.deadline_offset_ms;
  if ('retention_ms' in spec) task.retention = spec.retention_ms;
  if ('unique_ms' in spec) task.unique = spec.unique_ms;
  if ('traceparent' in spec) task.traceparent = spec.traceparent;
  if ('tracestate' in spec) task.tracestate = spec.tracestate;
  if ('group' in spec) task.group = spec.group;
  if ('debounce' in spec) task.debounce = spec.debounce;
  if ('aggregate' in spec) {
    task.aggregate = spec.aggregate;
    task.aggregateAfter = spec.aggregate_after_ms;
    task.maxGroup = spec.max_group;
  }
  return task;
}

function outcome(result) {
  if (!(result instanceof Error)) return { outcome: result.state, id: result.id };
  const seen = { message: result.message };
  if (result instanceof DuplicateIdError) Object.assign(seen, { outcome: 'duplicate_id', state: result.state ?? null });
  else if (result instanceof DuplicateUniqueError) Object.assign(seen, { outcome: 'duplicate_unique', holder: result.holder });
  else if (result instanceof InvalidTaskError) seen.outcome = 'invalid_task';
  else if (result instanceof NotReplicatedError) seen.outcome = 'not_replicated';
  else if (result instanceof RedisUnreachableError) seen.outcome = 'unreachable';
  else if (result instanceof TlsError) seen.outcome = 'tls';
  else seen.outcome = 'error';
  return seen;
}

function decodeResult(bytes) {
  if (bytes === undefined) return null;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return bytes.toString('utf8');
  }
}

function infoSeen(info) {
  if (info === undefined) return { found: false };
  return {
    found: true,
    state: info.state,
    type: info.type,
    queue: info.queue,
    attempts: info.attempts,
    max_retry: info.maxRetry,
    result: decodeResult(info.result),
    last_error_kind: info.lastError ? info.lastError.kind : null,
    state_time_ms: info.stateTimeMs ?? null,
  };
}

async function runStep(client, step, labels) {
  const now = Date.now();
  const seen = { now_ms: now };
  const resolve = (id) => (id.startsWith('$') ? labels[id.slice(1)] ?? id : id);
  switch (step.op) {
    case 'enqueue': {
      const [result] = await client.enqueueBatch([makeTask(step.task, now)]);
      Object.assign(seen, outcome(result));
      if (step.as && seen.id) labels[step.as] = seen.id;
      break;
    }
    case 'batch': {
      if (step.count !== undefined) {
        const { id_prefix: prefix, pad_of: padOf, ...spec } = step.task;
        const payload = (i) => (padOf === undefined ? { i } : { i, pad: 'x'.repeat(padOf) });
        const tasks = Array.from({ length: step.count }, (_, i) => makeTask({ ...spec, id: `${prefix}${i}`, payload: payload(i) }, now));
        const results = await client.enqueueBatch(tasks);
        seen.accepted = results.filter((r) => !(r instanceof Error)).length;
        seen.refused = results.filter((r) => r instanceof Error).slice(0, 5).map(outcome);
      } else {
        const results = await client.enqueueBatch(step.tasks.map((spec) => makeTask(spec, now)));
        seen.outcomes = results.map(outcome);
      }
      break;
    }
    case 'lookup':
      Object.assign(seen, infoSeen(await client.task(resolve(step.id), step.queue)));
      break;
    case 'wait':
      try {
        const info = await client.wait(resolve(step.id), { queue: step.queue, timeoutMs: step.timeout_ms });
        Object.assign(seen, { outcome: 'completed', result: decodeResult(info.result) });
      } catch (err) {
        if (err instanceof TaskFailedError) Object.assign(seen, { outcome: 'failed', error_kind: err.info.lastError?.kind ?? null });
        else if (err instanceof TaskNotFoundError) seen.outcome = 'gone';
        else if (err instanceof WaitTimeoutError) seen.outcome = 'timeout';
        else throw err;
      }
      break;
    default:
      seen.outcome = `unknown op ${step.op}`;
  }
  return seen;
}

const client = await Client.connect(url, {
  tlsCa: flags['tls-ca'],
  tlsCert: flags['tls-cert'],
  tlsKey: flags['tls-key'],
  name: 'wasmq:client:node:conformance',
});
const { cases } = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));
const only = flags.only ? new Set(flags.only.split(',')) : undefined;
const report = { client: 'node', cases: {} };
for (const testCase of cases) {
  if ((testCase.skip ?? []).includes('node') || (only && !only.has(testCase.name))) continue;
  const labels = {};
  const seen = [];
  for (const step of testCase.steps) seen.push(await runStep(client, step, labels));
  report.cases[testCase.name] = seen;
}
await client.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
