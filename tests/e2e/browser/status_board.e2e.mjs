// Headless Chromium against examples/realtime_server and examples/web: the page connects, shows a
// published event, recovers the events published while its socket was down ("recovered N missed
// events", in order), and reconnects by itself after the server restarts ("resynced": the
// restarted server's in-memory streams are a new epoch).
//
//   node status_board.e2e.mjs --server PATH/realtime_server --chromium /usr/bin/chromium --tmp DIR
// Every process it starts is killed before it exits.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, v, i, a) => {
  if (v.startsWith('--')) acc.push([v.slice(2), a[i + 1]]);
  return acc;
}, []));
const serverBin = args.server;
const chromiumBin = args.chromium || '/usr/bin/chromium';
const tmp = mkdtempSync(join(args.tmp || '/tmp', 'wsgate-browser-'));
const adminKey = randomBytes(16).toString('hex');
const secrets = ['--session-secret', randomBytes(32).toString('hex'), '--public-secret', randomBytes(32).toString('hex')];

const children = new Set();
let browserContext = null;

function log(...a) { console.log('[browser-e2e]', ...a); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer(port) {
  const portFile = join(tmp, 'port');
  rmSync(portFile, { force: true });
  const child = spawn(serverBin, ['--port', String(port), '--port-file', portFile, '--admin-key', adminKey, ...secrets],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.stdout.on('data', () => {});
  child.stderr.on('data', (d) => process.stderr.write(d));
  for (let i = 0; i < 200; i++) {
    if (existsSync(portFile)) {
      const p = Number(readFileSync(portFile, 'utf8').trim());
      if (p > 0) return { child, port: p };
    }
    if (child.exitCode !== null) throw new Error('server exited with ' + child.exitCode);
    await sleep(50);
  }
  throw new Error('server did not report its port');
}

async function stopServer(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10000);
  await exited;
  clearTimeout(t);
}

async function publish(port, text) {
  const res = await fetch(`http://127.0.0.1:${port}/publish`, {
    method: 'POST',
    headers: { 'X-Admin-Key': adminKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ topic: 'events:demo', type: 'activity_event', data: { text } }),
  });
  if (!res.ok) throw new Error('publish failed: ' + res.status);
  return res.json();
}

async function connections(port) {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return (await res.json()).connections;
}

async function eventTexts(page) {
  // The list shows the newest first; oldest first is the order they were received in.
  return (await page.$$eval('#events li .data', (els) => els.map((e) => e.textContent))).reverse();
}

async function waitForState(page, state, timeout) {
  await page.waitForSelector(`#status[data-state="${state}"]`, { timeout });
}

async function main() {
  let srv = await startServer(0);
  const port = srv.port;
  log('server on port', port);

  browserContext = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: chromiumBin,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = browserContext.pages()[0] || await browserContext.newPage();
  page.on('console', (m) => { if (m.type() === 'error') log('page console:', m.text()); });
  await page.goto(`http://127.0.0.1:${port}/?topic=events:demo&poll=1000`, { timeout: 15000 });

  await waitForState(page, 'connected', 15000);
  log('page connected');
  // The subscribe acks follow the open; wait until the server counts the subscription.
  let delivered = 0;
  for (let i = 0; i < 100 && delivered === 0; i++) {
    await sleep(100);
    delivered = 0;
    const rep = await publish(port, 'warm-up');
    delivered = rep.delivered;
  }
  const first = 'first-' + randomBytes(4).toString('hex');
  const rep = await publish(port, first);
  if (rep.delivered < 1) throw new Error('no subscriber for events:demo: ' + JSON.stringify(rep));
  await page.waitForSelector(`#events li:has-text("${first}")`, { timeout: 10000 });
  log('event shown on screen');
  if (!(await page.isHidden('#recovery'))) throw new Error('a first connection reports a recovery');

  // Recovery: the page's socket closes; what is published while it is away is replayed on the
  // reconnect. The poll fallback is stubbed out, so the events can arrive only that way.
  await page.route('**/public/recent**', (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: '{"events":[]}' }));
  await page.evaluate(() => {
    window.wsgateClient.opts.initialReconnectDelay = 3000;  // time to publish while it is away
    window.wsgateClient.ws.close();
  });
  await waitForState(page, 'reconnecting', 10000);
  for (let i = 0; i < 100 && (await connections(port)) !== 0; i++) await sleep(50);
  if ((await connections(port)) !== 0) throw new Error('the server still holds the closed connection');
  const missed = [1, 2, 3].map((n) => `missed-${n}-` + randomBytes(3).toString('hex'));
  for (const m of missed) {
    const r = await publish(port, m);
    if (r.delivered !== 0) throw new Error('published while away but delivered: ' + JSON.stringify(r));
  }
  log('published', missed.length, 'events while the page was away');
  await waitForState(page, 'connected', 20000);
  await page.waitForSelector('#recovery:has-text("recovered 3 missed events")', { timeout: 10000 });
  await page.waitForSelector(`#events li:has-text("${missed[2]}")`, { timeout: 10000 });
  const afterRecovery = await eventTexts(page);
  const tail = afterRecovery.slice(-4);
  if (JSON.stringify(tail) !== JSON.stringify([first, ...missed])) {
    throw new Error('events after recovery, oldest first: ' + JSON.stringify(afterRecovery));
  }
  if (await page.evaluate(() => window.wsgateClient.duplicates) !== 0) throw new Error('duplicates after recovery');
  log('page shows:', await page.textContent('#recovery'), '— in order');
  await page.unroute('**/public/recent**');
  await page.evaluate(() => { window.wsgateClient.opts.initialReconnectDelay = 1000; });

  await stopServer(srv.child);
  log('server stopped');
  await waitForState(page, 'reconnecting', 15000);
  const text = await page.textContent('#status-text');
  if (!/reconnecting in \d+ s/.test(text)) throw new Error('no countdown in status: ' + text);
  log('page shows:', text);

  srv = await startServer(port);
  log('server restarted on port', port);
  await waitForState(page, 'connected', 40000);
  log('page reconnected by itself');
  const second = 'second-' + randomBytes(4).toString('hex');
  for (let i = 0; i < 100; i++) {
    const r = await publish(port, second);
    if (r.delivered > 0) break;
    await sleep(100);
  }
  await page.waitForSelector(`#events li:has-text("${second}")`, { timeout: 10000 });
  log('event after restart shown on screen');
  // The restarted server's in-memory streams have a new epoch: nothing to replay, the page resyncs.
  await page.waitForSelector('#recovery:has-text("resynced")', { timeout: 10000 });
  const resync = await page.textContent('#recovery');
  if (!resync.includes('epoch_changed')) throw new Error('resync without its reason: ' + resync);
  log('page shows:', resync);
}

async function cleanup() {
  if (browserContext) await browserContext.close().catch(() => {});
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
}

const overall = setTimeout(() => { log('FAIL: overall timeout'); cleanup().finally(() => process.exit(3)); }, 150000);
main().then(async () => {
  clearTimeout(overall);
  await cleanup();
  log('PASS');
  process.exit(0);
}, async (e) => {
  clearTimeout(overall);
  log('FAIL:', e && e.stack || e);
  await cleanup();
  process.exit(1);
});
