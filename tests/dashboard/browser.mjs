// End-to-end browser check of the wasmq web dashboard (see README.md).
//
// Environment:
//   DASHBOARD_URL     the dashboard, e.g. http://127.0.0.1:18081/ (required)
//   QUEUE             the queue to look at (default "default")
//   EXPECT_PENDING    \
//   EXPECT_ARCHIVED    } counts expected in QUEUE's row; each optional
//   EXPECT_COMPLETED  /
//   TASK_ID           an archived task in QUEUE that completes when run (optional:
//                     without it the archived-task steps are skipped)
//   EXPECT_HISTORY    1: after a reload, the throughput chart must draw the
//                     server's history at once (points from before the page
//                     opened, with completions in them)
//   FLOW_ID           a flow parent waiting in QUEUE (optional): its detail must
//                     draw the flow's tree with FLOW_TASKS tasks, then print
//                     "flow tree drawn" and follow the tree live until every
//                     task in it shows completed (the test starts a worker
//                     once it reads that line)
//   FLOW_TASKS        how many tasks the flow holds
//   EXPECT_RATE       TARGET|USED: the Limits tab must show a rate limit of
//                     TARGET using USED (such as "echo|3/100"), and then
//   EXPECT_SLOTS      TYPE|MAX: a concurrency limit of TYPE at MAX, its slots free
//   SCREENSHOT        a path: save a full-page screenshot at 1280x800 there
//   SCREENSHOT_WAIT   seconds to let the throughput chart fill before the
//                     screenshot (default 20)
//   TOKEN             the dashboard token, when it has one
//   ATTACK            1: also attack the dashboard from a page on another
//                     origin (forms and no-cors fetches that try to pause QUEUE
//                     and delete its tasks, a cross-origin read, framing) and
//                     through DNS rebinding; every attempt must be refused
//   CHROMIUM          the browser binary (default /usr/bin/chromium)
//
// Exits 0 when every check passes, 1 (with what was expected, what was seen
// and the page's console errors) when one fails.

import http from 'node:http';
import { chromium } from 'playwright-core';

const env = process.env;
const url = env.DASHBOARD_URL;
const queue = env.QUEUE || 'default';
const taskId = env.TASK_ID || '';
const screenshot = env.SCREENSHOT || '';
const expectHistory = env.EXPECT_HISTORY === '1';
const screenshotWait = Number(env.SCREENSHOT_WAIT ?? 20);
const expected = {};
for (const state of ['pending', 'archived', 'completed']) {
  const value = env[`EXPECT_${state.toUpperCase()}`];
  if (value !== undefined && value !== '') expected[state] = String(Number(value));
}

const consoleErrors = [];
const pageErrors = [];
let step = 'starting';

class CheckFailed extends Error {}

function fail(message) {
  throw new CheckFailed(message);
}

function log(message) {
  console.log(`[dashboard] ${message}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A CSS attribute value in double quotes. */
const q = (value) => `"${String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** Polls `read` until `ok(value)` or the time is up; returns the last value. */
async function waitFor(read, ok, timeoutMs, intervalMs = 250) {
  const until = Date.now() + timeoutMs;
  let value;
  for (;;) {
    value = await read();
    if (ok(value)) return { ok: true, value };
    if (Date.now() >= until) return { ok: false, value };
    await sleep(intervalMs);
  }
}

/** Text of the first element matching `selector`, or null when there is none. */
async function textOf(page, selector) {
  const locator = page.locator(selector).first();
  if ((await locator.count()) === 0) return null;
  return ((await locator.textContent({ timeout: 2000 }).catch(() => null)) ?? '').trim();
}

async function visibleMessages(page) {
  return page.locator('#messages .msg-text, #banner:not([hidden])').allTextContents().catch(() => []);
}

async function errorMessages(page) {
  return page.locator('#messages .msg-error .msg-text').allTextContents().catch(() => []);
}

async function run(page) {
  const rowSelector = `tr[data-testid="queue-row"][data-queue=${q(queue)}]`;

  step = `loading ${url}`;
  const response = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  if (!response || !response.ok()) fail(`GET ${url} answered ${response ? response.status() : 'nothing'}`);
  const csp = (await response.allHeaders())['content-security-policy'] || '';
  if (!csp.includes("frame-ancestors 'none'") || !csp.includes("script-src 'self'")) {
    fail(`the page should come with a strict Content-Security-Policy; it has ${JSON.stringify(csp)}`);
  }

  step = `waiting for the row of queue ${queue}`;
  const row = await page.waitForSelector(rowSelector, { timeout: 15000 }).catch(() => null);
  if (!row) {
    const queues = await page.locator('tr[data-testid="queue-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.queue));
    fail(`no row for queue ${queue} within 15 s; queues shown: ${JSON.stringify(queues)}; messages: ${JSON.stringify(await visibleMessages(page))}`);
  }
  log(`queue row ${queue} shown`);

  if (Object.keys(expected).length) {
    step = `checking the counts of ${queue}`;
    const read = async () => {
      const seen = {};
      for (const state of Object.keys(expected)) seen[state] = await textOf(page, `${rowSelector} [data-testid="count-${state}"]`);
      return seen;
    };
    const same = (seen) => Object.entries(expected).every(([state, n]) => seen[state] === n);
    const result = await waitFor(read, same, 10000);
    if (!result.ok) fail(`counts of queue ${queue}: expected ${JSON.stringify(expected)}, saw ${JSON.stringify(result.value)} after 10 s`);
    log(`counts match: ${JSON.stringify(expected)}`);
  }

  if (expectHistory) {
    step = 'reloading: the chart draws the history the server keeps';
    await page.reload({ waitUntil: 'load', timeout: 20000 });
    const chart = '[data-testid="throughput-chart"]';
    const read = async () => {
      const attr = (name) => page.locator(chart).getAttribute(name, { timeout: 5000 }).catch(() => null);
      return { points: Number(await attr('data-history-points')), max: Number(await attr('data-history-max')) };
    };
    // A point from before the page opened, with completions in it.
    const result = await waitFor(read, (v) => v.points >= 1 && v.max > 0, 10000);
    if (!result.ok) fail(`after a reload the chart should show the server's history; saw ${JSON.stringify(result.value)} after 10 s`);
    log(`history drawn after a reload: ${JSON.stringify(result.value)}`);
  }

  if (screenshot && screenshotWait > 0) {
    step = 'letting the throughput chart fill';
    log(`waiting ${screenshotWait} s for the chart to fill before the screenshot`);
    await sleep(screenshotWait * 1000);
  }

  if (env.FLOW_ID) await followFlow(page, rowSelector);
  if (env.EXPECT_RATE) await checkLimits(page);

  if (!taskId) {
    if (screenshot) await takeScreenshot(page);
    log('no TASK_ID given: skipping the task steps');
    return;
  }

  step = `opening the archived tasks of ${queue}`;
  await page.locator(`${rowSelector} [data-testid="count-archived"]`).click({ timeout: 5000 });
  const taskRow = `tr[data-testid="task-row"][data-task-id=${q(taskId)}]`;
  let listed = await page.waitForSelector(taskRow, { timeout: 10000 }).catch(() => null);
  // Many archived tasks: the task may be on a later page.
  for (let pages = 0; !listed && pages < 50; pages += 1) {
    const next = page.locator('#tasks-pager [data-act="page"]').last();
    if ((await next.count()) === 0 || (await next.isDisabled())) break;
    await next.click({ timeout: 5000 });
    listed = await page.waitForSelector(taskRow, { timeout: 3000 }).catch(() => null);
  }
  if (!listed) {
    const ids = await page.locator('tr[data-testid="task-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.taskId));
    fail(`task ${taskId} is not in the archived list of ${queue} within 10 s; listed: ${JSON.stringify(ids)}; messages: ${JSON.stringify(await visibleMessages(page))}`);
  }
  log(`task ${taskId} listed as archived`);

  if (screenshot) await takeScreenshot(page);

  step = `opening the detail of task ${taskId}`;
  await page.locator(`${taskRow} td`).first().click({ timeout: 5000 });
  const detail = '[data-testid="task-detail"]';
  const stateSel = `${detail} [data-testid="task-state"]`;
  const archived = await waitFor(() => textOf(page, stateSel), (s) => s === 'archived', 10000);
  if (!archived.ok) fail(`task detail state: expected "archived", saw ${JSON.stringify(archived.value)}`);

  step = 'checking the last error in the detail';
  const apiTask = await page.evaluate(async ([qn, id, token]) => {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const res = await fetch(`/api/queues/${encodeURIComponent(qn)}/tasks/${encodeURIComponent(id)}`, { headers });
    return res.ok ? res.json() : null;
  }, [queue, taskId, env.TOKEN || '']);
  const errorText = apiTask && apiTask.last_error ? apiTask.last_error.message : null;
  if (!errorText) fail(`the API shows no last error for task ${taskId}: ${JSON.stringify(apiTask)}`);
  const detailText = ((await page.locator(detail).textContent()) || '').replace(/\s+/g, ' ');
  if (!detailText.includes(errorText)) fail(`task detail should show the last error ${JSON.stringify(errorText)}; it shows: ${detailText.slice(0, 600)}`);
  if (apiTask.last_error.kind && !detailText.includes(apiTask.last_error.kind)) {
    fail(`task detail should show the error kind ${JSON.stringify(apiTask.last_error.kind)}`);
  }
  log(`detail shows state archived and the error ${JSON.stringify(errorText)}`);

  step = 'running the task from the detail';
  const runButton = page.locator(`${detail} [data-testid="action-run"]`);
  if ((await runButton.count()) === 0) fail('the task detail has no action-run button for an archived task');
  if (await runButton.isDisabled()) {
    fail(`the Retry button (action-run) is disabled: ${(await runButton.getAttribute('title')) || 'no reason given'}`);
  }
  const errorsBefore = await errorMessages(page);
  await runButton.click({ timeout: 5000 });

  step = 'waiting for the task to complete';
  const seenStates = new Set();
  let refused = null;
  const completed = await waitFor(async () => {
    const s = await textOf(page, stateSel);
    if (s) seenStates.add(s);
    const errors = await errorMessages(page);
    refused = errors.find((e) => !errorsBefore.includes(e)) || null;
    return s;
  }, (s) => s === 'completed' || refused !== null, 30000, 200);
  if (refused && completed.value !== 'completed') fail(`Retry was refused; the page says: ${refused}`);
  if (!completed.ok) {
    fail(`after Retry the detail should reach "completed" within 30 s; it shows ${JSON.stringify(completed.value)} (states seen: ${[...seenStates].join(' → ')}); messages: ${JSON.stringify(await visibleMessages(page))}`);
  }
  log(`task ${taskId} completed (states seen: ${[...seenStates].join(' → ')})`);
}

/** Opens a waiting flow parent and follows its tree until every task completed. */
async function checkLimits(page) {
  const [rateTarget, used] = env.EXPECT_RATE.split('|');
  const [slotType, max] = (env.EXPECT_SLOTS || '|').split('|');
  step = 'opening the Limits tab';
  await page.locator('.tabs a[data-tab="limits"]').click({ timeout: 5000 });
  const rows = (selector) => page.locator(selector).evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent.trim())));
  const rate = await waitFor(() => rows('tr[data-testid="rate-row"]'), (seen) => seen.some((cells) => cells[0] === rateTarget && cells[4] === used), 10000);
  if (!rate.ok) fail(`the Limits tab should show the rate limit of ${rateTarget} using ${used}; saw ${JSON.stringify(rate.value)}`);
  log(`rate limit shown: ${JSON.stringify(rate.value)}`);
  if (slotType) {
    const slots = await waitFor(() => rows('tr[data-testid="concurrency-row"]'), (seen) => seen.some((cells) => cells[0] === slotType && cells[1] === max && cells[3] === 'free'), 10000);
    if (!slots.ok) fail(`the Limits tab should show the concurrency limit of ${slotType} at ${max}, free; saw ${JSON.stringify(slots.value)}`);
    log(`concurrency limit shown: ${JSON.stringify(slots.value)}`);
  }
  step = 'back to the Queues tab';
  await page.locator('.tabs a[data-tab="queues"]').click({ timeout: 5000 });
  await page.waitForSelector(`tr[data-testid="queue-row"][data-queue=${q(queue)}]`, { timeout: 10000 });
}

async function followFlow(page, rowSelector) {
  const flowId = env.FLOW_ID;
  const tasks = Number(env.FLOW_TASKS);
  step = `opening the waiting tasks of ${queue}`;
  await page.locator(`${rowSelector} [data-testid="count-waiting"]`).click({ timeout: 5000 });
  const taskRow = `tr[data-testid="task-row"][data-task-id=${q(flowId)}]`;
  if (!(await page.waitForSelector(taskRow, { timeout: 10000 }).catch(() => null))) {
    fail(`flow parent ${flowId} is not in the waiting list of ${queue} within 10 s`);
  }
  step = `opening the detail of flow parent ${flowId}`;
  await page.locator(`${taskRow} td`).first().click({ timeout: 5000 });
  const node = '[data-testid="task-detail"] [data-testid="flow-tree"] [data-testid="flow-node"]';
  const states = () => page.locator(node).evaluateAll((nodes) => nodes.map((n) => n.dataset.state));
  const drawn = await waitFor(states, (seen) => seen.length === tasks && seen[0] === 'waiting', 10000);
  if (!drawn.ok) fail(`the detail should draw the flow's ${tasks} tasks with the parent waiting; saw ${JSON.stringify(drawn.value)}`);
  log(`flow tree drawn: ${JSON.stringify(drawn.value)}`);
  step = 'following the flow live until every task completed';
  const done = await waitFor(states, (seen) => seen.length === tasks && seen.every((s) => s === 'completed'), 60000, 300);
  if (!done.ok) fail(`every task of the flow should show completed within 60 s without a reload; saw ${JSON.stringify(done.value)}`);
  log(`flow completed live: ${JSON.stringify(done.value)}`);
}

/** The page an attacker serves: forms that post to the dashboard. */
function attackerPage(dashboard) {
  const base = `${dashboard}api/queues/${encodeURIComponent(queue)}`;
  return `<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<iframe id="framed" src="${dashboard}"></iframe>
<form id="form-pause" method="POST" action="${base}/pause" target="sink1"><input name="x" value="1"></form>
<form id="form-deleteall" method="POST" enctype="text/plain" action="${base}/bulk/deleteall?state=completed" target="sink2"><input name='{"x":"' value='"}'></form>
</body></html>`;
}

/** Attacks the dashboard from another origin and through DNS rebinding. */
async function attack(context) {
  const dashboard = new URL(url);
  const writes = []; // the dashboard's answers to POSTs, as the browser saw them
  let sent = 0; // POSTs the browser sent to the dashboard
  const server = http.createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(attackerPage(dashboard.href));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    // attacker.test and rebind.test resolve to 127.0.0.1 (--host-resolver-rules).
    const attackerUrl = `http://attacker.test:${server.address().port}/`;
    const page = await context.newPage();
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().startsWith(dashboard.origin)) sent += 1;
    });
    page.on('response', (r) => {
      if (r.request().method() === 'POST' && r.url().startsWith(dashboard.origin)) writes.push(`${r.url()} -> ${r.status()}`);
    });
    step = `loading the attacker page ${attackerUrl}`;
    await page.goto(attackerUrl, { waitUntil: 'load', timeout: 20000 });

    step = 'checking that the attacker page cannot frame the dashboard';
    for (const frame of page.frames()) {
      if (frame === page.mainFrame()) continue;
      const shown = await frame.locator('header.topbar').count().catch(() => 0);
      if (shown) fail(`the dashboard loaded inside a frame of ${attackerUrl} (${frame.url()})`);
    }

    for (const form of ['form-pause', 'form-deleteall']) {
      step = `submitting ${form} from ${attackerUrl}`;
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && r.url().startsWith(dashboard.origin), { timeout: 10000 }),
        page.evaluate((id) => document.getElementById(id).submit(), form),
      ]);
      if (response.status() !== 403) fail(`${form} from another origin: expected 403, the dashboard answered ${response.status()}`);
    }

    step = `fetching from ${attackerUrl}`;
    const outcomes = await page.evaluate(async ([base, dash]) => {
      const out = {};
      const tryFetch = async (name, target, init) => {
        try {
          const res = await fetch(target, init);
          out[name] = res.type === 'opaque' ? 'opaque' : `${res.status} ${await res.text()}`;
        } catch (err) {
          out[name] = 'blocked';
        }
      };
      await tryFetch('no-cors text/plain pause', `${base}/pause`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
      await tryFetch('no-cors form deleteall', `${base}/bulk/deleteall?state=completed`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'a=1' });
      await tryFetch('no-cors no type pause', `${base}/pause`, { method: 'POST', mode: 'no-cors', body: new Blob(['{}']) });
      await tryFetch('cors json pause', `${base}/pause`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Wasmq-Request': '1' }, body: '{}' });
      await tryFetch('cors read', `${dash}api/overview`, {});
      return out;
    }, [`${dashboard.href}api/queues/${encodeURIComponent(queue)}`, dashboard.href]);
    for (const [name, outcome] of Object.entries(outcomes)) {
      // A no-cors answer is opaque, or blocked by Cross-Origin-Resource-Policy;
      // either way the request reached the dashboard (checked below).
      const allowed = name.startsWith('no-cors') ? ['opaque', 'blocked'] : ['blocked'];
      if (!allowed.includes(outcome)) fail(`${name} from another origin: expected ${allowed.join(' or ')}, got ${outcome}`);
    }
    if (sent < 5) fail(`the browser should have sent 5 POSTs to the dashboard; it sent ${sent}`);
    const obeyed = writes.filter((w) => !w.endsWith('-> 403'));
    if (obeyed.length) fail(`writes from another origin should get 403; these did not: ${JSON.stringify(obeyed)}`);
    log(`cross-origin writes sent: ${sent}, answers seen: ${JSON.stringify(writes)}; fetches: ${JSON.stringify(outcomes)}`);

    for (const path of ['api/overview', '']) {
      const rebound = `http://rebind.test:${dashboard.port}/${path}`;
      step = `loading ${rebound} (a DNS-rebinding name for the dashboard)`;
      const response = await page.goto(rebound, { timeout: 20000 });
      const body = response ? await response.text() : '';
      if (!response || response.status() !== 421) fail(`${rebound}: expected 421, got ${response ? response.status() : 'nothing'}: ${body.slice(0, 300)}`);
      if (body.includes(`"${queue}"`) || body.includes('app.js')) fail(`${rebound} answered with data: ${body.slice(0, 300)}`);
    }
    log('DNS-rebinding names get 421 and no data');
    await page.close();
  } finally {
    server.close();
  }
}

async function takeScreenshot(page) {
  step = `saving the screenshot to ${screenshot}`;
  await page.waitForTimeout(300); // let the last poll paint
  await page.screenshot({ path: screenshot, fullPage: true });
  log(`screenshot saved to ${screenshot}`);
}

async function main() {
  if (!url) {
    console.error('DASHBOARD_URL is not set (e.g. DASHBOARD_URL=http://127.0.0.1:18081/)');
    return 1;
  }
  const browser = await chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP attacker.test 127.0.0.1, MAP rebind.test 127.0.0.1'],
  });
  let status = 0;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    if (env.TOKEN) {
      await context.addInitScript((token) => sessionStorage.setItem('wasmq.dashboard.token', token), env.TOKEN);
    }
    const page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (err) => pageErrors.push(err.stack || String(err)));
    page.on('dialog', (dialog) => dialog.accept());

    await run(page);
    if (pageErrors.length) fail(`the page threw ${pageErrors.length} uncaught error(s)`);
    const refusedByCsp = consoleErrors.filter((e) => e.includes('Content Security Policy'));
    if (refusedByCsp.length) fail(`the page broke its own Content-Security-Policy: ${refusedByCsp.join(' | ')}`);
    if (env.ATTACK === '1') await attack(context);
    log('all checks passed');
  } catch (err) {
    status = 1;
    console.error(`\nFAILED while ${step}:`);
    console.error(`  ${err instanceof CheckFailed ? err.message : err && err.stack ? err.stack : err}`);
  } finally {
    await browser.close().catch(() => {});
  }
  if (status) {
    if (pageErrors.length) {
      console.error('\nuncaught page errors:');
      for (const e of pageErrors) console.error(`  ${e}`);
    }
    console.error(consoleErrors.length ? '\npage console errors:' : '\npage console errors: none');
    for (const e of consoleErrors) console.error(`  ${e}`);
  }
  return status;
}

process.exitCode = await main();
