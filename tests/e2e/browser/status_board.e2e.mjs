// Headless Chromium against examples/realtime_server and examples/web, with the page's timings
// shortened through its URL options. In order:
//  - first load: "Live" without a single poll; the token travels in Sec-WebSocket-Protocol;
//  - the seeds' events render through the client's typed handlers (event_created, event_deleted,
//    metrics_update, player_joined, bingo_completed, leaderboard_update);
//  - the socket closes: what is published meanwhile is replayed on the reconnect ("recovered N
//    missed events", in order), and messages sent while down (a bounded queue) arrive after it;
//  - upgrades refused (a path that is no WebSocket endpoint) while the token endpoint hangs: each
//    token request times out and the next attempt proceeds, polling shows the events AND the
//    leaderboard published meanwhile, "Could not sign in" never appears, and the page is live
//    again by itself once both work;
//  - the server stops: past the attempt cap the page is "Offline — showing updates every 1 s",
//    keeps probing, announces state changes but not the countdown, and is live again by itself
//    (resynced: the restarted server's streams are a new epoch) when the server is back;
//  - the tab is hidden: the socket is closed after the hidden delay, nothing is polled or
//    probed while hidden, and the page reconnects when visible;
//  - a server that never acknowledges the subscriptions fails each attempt at subscribeTimeout;
//  - no console message, log entry or WebSocket URL contains a token.
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

// The page's options (see examples/web/app.js): seconds instead of minutes.
const pageOptions = {
  topic: 'events:demo', poll: 1000, initialReconnectDelay: 200, maxReconnectDelay: 400, reconnectJitter: 200,
  maxReconnectAttempts: 2, probeInterval: 2500, tokenTimeout: 800, connectTimeout: 2000, subscribeTimeout: 3000,
  heartbeatInterval: 2000, heartbeatTimeout: 1500, hiddenCloseDelay: 800, queueSize: 3,
};

const children = new Set();
let browserContext = null;

function log(...a) { console.log('[browser-e2e]', ...a); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, what) { if (!cond) throw new Error(what); }

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

async function publish(port, topic, type, body) {
  const res = await fetch(`http://127.0.0.1:${port}/publish`, {
    method: 'POST',
    headers: { 'X-Admin-Key': adminKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(Object.assign({ topic, type }, body)),
  });
  if (!res.ok) throw new Error('publish failed: ' + res.status);
  return res.json();
}
const publishText = (port, text) => publish(port, 'events:demo', 'activity_event', { data: { text } });

async function connections(port) {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return (await res.json()).connections;
}

async function waitFor(what, fn, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(50);
  }
}

async function eventTexts(page) {
  // The list shows the newest first; oldest first is the order they were received in.
  return (await page.$$eval('#events li .data', (els) => els.map((e) => e.textContent))).reverse();
}

async function waitForState(page, state, timeout) {
  await page.waitForSelector(`#status[data-state="${state}"]`, { timeout });
}

// Publishes `text` until the page's subscription receives it (the subscribe ack follows the open).
async function publishUntilDelivered(port, text) {
  for (let i = 0; i < 100; i++) {
    if ((await publishText(port, text)).delivered > 0) return;
    await sleep(100);
  }
  throw new Error('no subscriber for events:demo');
}

// Records what the status shows: every distinct "state|text detail|title" (the title holds the
// last problem), and each change of the ARIA live region (what a screen reader announces).
function recordStatus() {
  window.__statusLog = [];
  window.__announcements = [];
  document.addEventListener('DOMContentLoaded', () => {
    const box = document.querySelector('#status');
    const live = document.querySelector('#status-text');
    const detail = document.querySelector('#status-detail');
    new MutationObserver(() => window.__announcements.push(live.textContent))
      .observe(live, { childList: true, characterData: true, subtree: true });
    const note = () => {
      const s = box.dataset.state + '|' + live.textContent + ' ' + detail.textContent + '|' + box.title;
      if (window.__statusLog[window.__statusLog.length - 1] !== s) window.__statusLog.push(s);
    };
    new MutationObserver(note).observe(box, { attributes: true, childList: true, characterData: true, subtree: true });
  });
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
  await page.addInitScript(recordStatus);

  // Everything the browser prints or requests, to search for tokens at the end.
  const printed = [];
  const tokens = new Set();
  const socketUrls = [];
  const requests = [];  // {path, at}
  page.on('console', (m) => {
    printed.push(m.text());
    if (m.type() === 'error') log('page console:', m.text());
  });
  page.on('pageerror', (e) => printed.push(String(e && e.stack || e)));
  page.on('websocket', (ws) => socketUrls.push(ws.url()));
  page.on('request', (r) => requests.push({ path: new URL(r.url()).pathname, at: Date.now() }));
  page.on('response', async (r) => {
    if (new URL(r.url()).pathname !== '/public/token' || !r.ok()) return;
    try { tokens.add((await r.json()).token); } catch (e) { /* aborted */ }
  });
  const cdp = await browserContext.newCDPSession(page);
  cdp.on('Log.entryAdded', (e) => printed.push(e.entry.text + ' ' + (e.entry.url || '')));
  await cdp.send('Log.enable');
  const count = (path, since = 0) => requests.filter((r) => r.path === path && r.at >= since).length;
  const statusText = async () => (await page.textContent('#status-text')) + ' ' + (await page.textContent('#status-detail'));

  const query = new URLSearchParams(Object.entries(pageOptions).map(([k, v]) => [k, String(v)]));
  await page.goto(`http://127.0.0.1:${port}/?${query}`, { timeout: 15000 });

  // --- first load -------------------------------------------------------------------------------
  await waitForState(page, 'connected', 15000);
  check((await page.textContent('#status-text')) === 'Live', 'connected but not "Live"');
  check(await page.evaluate(() => window.wsgateClient.ws.protocol) === 'wsgate', 'the server did not select "wsgate"');
  check(!socketUrls.some((u) => u.includes('token')), 'token in a WebSocket URL: ' + socketUrls);
  await publishUntilDelivered(port, 'warm-up');
  check(count('/public/recent') === 0, 'polled on first load');
  check(await page.isHidden('#polling'), 'the polling note shows on first load');
  log('page live, no poll on first load, token in the subprotocol header');

  // --- the seeds' events through typed handlers ---------------------------------------------------
  await publish(port, 'events:demo', 'event_created', { data: { id: 'evt_1', name: 'signup' } });
  await publish(port, 'events:demo', 'metrics_update', { data: { total_events: 5, failed_events: 1 } });
  await publish(port, 'events:demo', 'event_deleted', { data: { id: 'evt_1' } });
  await publish(port, 'events:demo', 'player_joined', { data: { nickname: 'ana' } });
  await publish(port, 'events:demo', 'bingo_completed', { data: { nickname: 'ana' } });
  await publish(port, 'leaderboard:demo', 'leaderboard_update', { fields: { leaderboard: [{ name: 'ana', score: 5 }] } });
  await page.waitForSelector('#events li.deleted[data-entity="evt_1"]', { timeout: 10000 });
  await page.waitForSelector('#metrics dd[data-metric="total_events"]:has-text("5")', { timeout: 10000 });
  await page.waitForSelector('#events li:has-text("ana joined")', { timeout: 10000 });
  await page.waitForSelector('#events li:has-text("ana completed bingo")', { timeout: 10000 });
  await page.waitForSelector('#leaderboard td:has-text("ana")', { timeout: 10000 });
  log('seed events shown (created, deleted, metrics, joined, bingo, leaderboard)');

  const first = 'first-' + randomBytes(4).toString('hex');
  check((await publishText(port, first)).delivered >= 1, 'no subscriber for events:demo');
  await page.waitForSelector(`#events li:has-text("${first}")`, { timeout: 10000 });
  check(await page.isHidden('#recovery'), 'a first connection reports a recovery');

  // --- recovery and the outbound queue ------------------------------------------------------------
  // The poll fallback is stubbed out, so the missed events can arrive only through the replay.
  await page.route('**/public/recent**', (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: '{"events":[]}' }));
  const queued = await page.evaluate(() => {
    const c = window.wsgateClient;
    window.__pongs = [];
    c.on('pong', (m) => { if (m.ref) window.__pongs.push(m.ref); });
    c.opts.initialReconnectDelay = c.opts.maxReconnectDelay = 3000;  // time to publish while it is away
    c.ws.close();
    // Five messages while down into a queue of three: the oldest two are dropped.
    return ['q1', 'q2', 'q3', 'q4', 'q5'].map((ref) => c.send({ type: 'ping', ref }));
  });
  check(queued.every((r) => r === 'queued'), 'send() while down: ' + queued);
  await waitForState(page, 'reconnecting', 10000);
  await waitFor('the server to drop the closed connection', async () => (await connections(port)) === 0, 5000);
  const missed = [1, 2, 3].map((n) => `missed-${n}-` + randomBytes(3).toString('hex'));
  for (const m of missed) {
    const r = await publishText(port, m);
    check(r.delivered === 0, 'published while away but delivered: ' + JSON.stringify(r));
  }
  await waitForState(page, 'connected', 20000);
  await page.waitForSelector('#recovery:has-text("recovered 3 missed events")', { timeout: 10000 });
  await page.waitForSelector(`#events li:has-text("${missed[2]}")`, { timeout: 10000 });
  const tail = (await eventTexts(page)).slice(-4);
  check(JSON.stringify(tail) === JSON.stringify([first, ...missed]), 'events after recovery, oldest first: ' + tail);
  check(await page.evaluate(() => window.wsgateClient.duplicates) === 0, 'duplicates after recovery');
  await waitFor('the queued messages', () => page.evaluate(() => window.__pongs.length >= 3), 5000);
  const pongs = await page.evaluate(() => window.__pongs);
  check(JSON.stringify(pongs) === '["q3","q4","q5"]', 'queued messages answered: ' + pongs);
  check(await page.evaluate(() => window.wsgateClient.dropped) === 2, 'dropped count');
  log('recovered 3 missed events in order; queued q3..q5 arrived after the reconnect, q1, q2 dropped');
  await page.unroute('**/public/recent**');
  await page.evaluate((o) => {
    window.wsgateClient.opts.initialReconnectDelay = o.initialReconnectDelay;
    window.wsgateClient.opts.maxReconnectDelay = o.maxReconnectDelay;
  }, pageOptions);

  // --- upgrades refused, token endpoint frozen: deadlines, polling of every topic -----------------
  let frozenRequests = 0;
  await page.route('**/public/token', () => { frozenRequests += 1; });  // never answered
  const refusedSince = Date.now();
  await page.evaluate(() => {
    const c = window.wsgateClient;
    c.opts.url = c.opts.url.replace(/\/ws$/, '/no-websocket-here');
    c.ws.close();
  });
  await page.waitForSelector('#polling', { state: 'visible', timeout: 5000 });
  const polledText = 'polled-' + randomBytes(3).toString('hex');
  await publishText(port, polledText);
  await publish(port, 'leaderboard:demo', 'leaderboard_update', { fields: { leaderboard: [{ name: 'polled-player', score: 99 }] } });
  await page.waitForSelector(`#events li:has-text("${polledText}")`, { timeout: 5000 });
  await page.waitForSelector('#leaderboard td:has-text("polled-player")', { timeout: 5000 });
  log('polling shows the events feed and the leaderboard');
  // Each frozen token request is abandoned after tokenTimeout and the next attempt makes another.
  await waitFor('three token requests', () => frozenRequests >= 3, 10000);
  await waitForState(page, 'offline', 5000);
  check((await page.textContent('#status-text')) === 'Offline — showing updates every 1 s',
    'offline text: ' + await statusText());
  const log1 = await page.evaluate(() => window.__statusLog);
  check(!log1.some((s) => s.includes('Could not sign in')), 'a refused upgrade or a slow token shown as a rejected token');
  check(log1.some((s) => /^reconnecting\|Reconnecting (in \d+ s|trying now) \(attempt \d\/2\)\|/.test(s)),
    'no "Reconnecting in N s (attempt n/2)": ' + JSON.stringify(log1.slice(-10)));
  log(frozenRequests, 'token requests timed out, each followed by the next attempt; page shows:', await statusText());
  await page.unroute('**/public/token');
  await page.evaluate(() => {
    const c = window.wsgateClient;
    c.opts.url = c.opts.url.replace(/\/no-websocket-here$/, '/ws');
  });
  await waitForState(page, 'connected', 10000);
  check(await page.isHidden('#polling'), 'still polling while live');
  log('live again by itself after', ((Date.now() - refusedSince) / 1000).toFixed(1), 's');

  // --- outage past the attempt cap, server back ---------------------------------------------------
  await stopServer(srv.child);
  log('server stopped');
  await waitForState(page, 'offline', 10000);
  check((await page.textContent('#status-text')) === 'Offline — showing updates every 1 s', 'offline: ' + await statusText());
  // The countdown ticks, the live region does not; the page keeps probing.
  const announced = await page.evaluate(() => window.__announcements.length);
  const detail0 = await page.textContent('#status-detail');
  const offlineSince = Date.now();
  await waitFor('a probe while offline', () => count('/public/token', offlineSince) >= 1, 6000);
  await waitFor('the countdown to change', async () => (await page.textContent('#status-detail')) !== detail0, 3000);
  check(await page.evaluate(() => window.__announcements.length) === announced, 'the countdown is announced');
  log('offline, probing; page shows:', await statusText());

  srv = await startServer(port);
  log('server restarted on port', port);
  const restartedAt = Date.now();
  await waitForState(page, 'connected', 10000);
  log('live again by itself after', ((Date.now() - restartedAt) / 1000).toFixed(1), 's');
  const second = 'second-' + randomBytes(4).toString('hex');
  await publishUntilDelivered(port, second);
  await page.waitForSelector(`#events li:has-text("${second}")`, { timeout: 10000 });
  // The restarted server's in-memory streams have a new epoch: nothing to replay, the page resyncs.
  await page.waitForSelector('#recovery:has-text("resynced")', { timeout: 10000 });
  const resync = await page.textContent('#recovery');
  check(resync.includes('epoch_changed'), 'resync without its reason: ' + resync);
  log('page shows:', resync);

  // --- hidden tab ---------------------------------------------------------------------------------
  const setVisibility = (state) => page.evaluate((s) => {
    window.__visibility = s;
    if (!window.__visibilityPatched) {
      window.__visibilityPatched = true;
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => window.__visibility });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__visibility === 'hidden' });
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
  await setVisibility('hidden');
  await waitForState(page, 'paused', 3000);
  await waitFor('the server to see the socket closed', async () => (await connections(port)) === 0, 3000);
  const pausedAt = Date.now();
  const socketsBefore = socketUrls.length;
  await sleep(1500);
  check(count('/public/recent', pausedAt) === 0 && count('/public/token', pausedAt) === 0 && socketUrls.length === socketsBefore,
    'polled or probed while hidden');
  log('hidden: socket closed, nothing polled or probed; page shows:', await statusText());
  await setVisibility('visible');
  await waitForState(page, 'connected', 5000);
  await waitFor('the server to count the page again', async () => (await connections(port)) === 1, 3000);
  log('visible: live again');

  // --- subscriptions never acknowledged (last: a WebSocket route stays) ---------------------------
  // The socket opens, but the subscribe frames never reach the server: each attempt fails at
  // subscribeTimeout and the backoff keeps growing, since the connection never became ready.
  let swallowed = 0;
  await page.routeWebSocket(/\/ws$/, (route) => {
    const server = route.connectToServer();
    route.onMessage((m) => {
      if (typeof m === 'string' && m.includes('"type":"subscribe"')) swallowed += 1;
      else server.send(m);
    });
  });
  await page.evaluate(() => window.wsgateClient.ws.close());
  await waitFor('two attempts whose subscriptions are never acknowledged', () => swallowed >= 4, 15000);
  const unacked = await page.evaluate(() => ({ attempt: window.wsgateClient.attempt, ready: window.wsgateClient.ready }));
  check(unacked.attempt >= 2 && !unacked.ready, 'an unacknowledged connection counted as established: ' + JSON.stringify(unacked));
  await waitFor('the subscribe deadline to fail the attempt', () => page.evaluate(() =>
    window.__statusLog.some((s) => s.includes('"events:demo" not acknowledged in time'))), 5000);
  log('unacknowledged subscriptions fail each attempt after', pageOptions.subscribeTimeout, 'ms; attempt', unacked.attempt);

  // --- the console never shows a token ------------------------------------------------------------
  tokens.add(await page.evaluate(() => localStorage.getItem('wsgate.publicToken')));
  tokens.delete(null);
  check(tokens.size >= 2, 'expected several tokens, saw ' + tokens.size);
  check(printed.some((t) => t.includes('no-websocket-here')), 'the refused upgrades were not logged (is the check blind?)');
  for (const t of tokens) {
    const leaks = [...printed, ...socketUrls].filter((s) => s.includes(t) || s.includes(encodeURIComponent(t)));
    check(leaks.length === 0, 'a token in the console: ' + leaks[0]);
  }
  const announcements = await page.evaluate(() => window.__announcements);
  check(announcements.every((a, i) => i === 0 || a !== announcements[i - 1]), 'repeated announcements: ' + announcements);
  check(announcements.length <= 30, announcements.length + ' announcements');
  log(printed.length, 'console and log entries, none with any of', tokens.size, 'tokens;', announcements.length,
    'announcements:', announcements.join(' / '));
}

async function cleanup() {
  if (browserContext) await browserContext.close().catch(() => {});
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
}

const overall = setTimeout(() => { log('FAIL: overall timeout'); cleanup().finally(() => process.exit(3)); }, 120000);
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
