// The status board: a public device token (POST /public/token), one WsgateClient, live events,
// a leaderboard and the seed dashboards' metrics.
//
// Options: URL parameters ?topic=events:demo&board=leaderboard:demo&poll=10000, and any numeric
// WsgateClient option by its name (?heartbeatInterval=30000&hiddenCloseDelay=60000&…); an object
// `window.wsgateOptions` set before this script takes precedence over both.
'use strict';

const params = new URLSearchParams(location.search);
const NUMERIC_OPTIONS = ['initialReconnectDelay', 'maxReconnectDelay', 'reconnectJitter', 'maxReconnectAttempts',
  'probeInterval', 'tokenTimeout', 'connectTimeout', 'subscribeTimeout', 'heartbeatInterval', 'heartbeatTimeout',
  'hiddenCloseDelay', 'queueSize', 'pollInterval'];
const pageOptions = {};
if (params.has('poll')) pageOptions.pollInterval = Number(params.get('poll'));
for (const name of NUMERIC_OPTIONS) {
  if (params.has(name) && Number.isFinite(Number(params.get(name)))) pageOptions[name] = Number(params.get(name));
}
Object.assign(pageOptions, window.wsgateOptions || {});

const topic = pageOptions.topic || params.get('topic') || 'events:demo';
const boardTopic = pageOptions.board || params.get('board') || 'leaderboard:demo';
const shownTopics = [topic, boardTopic];
const origin = location.origin;
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

const $ = (sel) => document.querySelector(sel);
$('#topic-name').textContent = topic;
document.querySelectorAll('.origin').forEach((e) => { e.textContent = origin; });
document.querySelectorAll('.topic').forEach((e) => { e.textContent = boardTopic; });

// --- token -----------------------------------------------------------------------------------

const TOKEN_KEY = 'wsgate.publicToken';
const DEVICE_KEY = 'wsgate.deviceId';

async function getToken(forceFresh, signal) {
  const cached = localStorage.getItem(TOKEN_KEY);
  if (cached && !forceFresh) return cached;
  const body = {};
  const device = localStorage.getItem(DEVICE_KEY);
  if (device) body.deviceId = device;
  const res = await fetch('/public/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal,
  });
  if (!res.ok) {
    const err = new Error('HTTP ' + res.status);
    err.status = res.status;  // 401/403: the page shows "Could not sign in"
    throw err;
  }
  const j = await res.json();
  // `publicToken` is what 0.1 servers sent; read until 0.3.
  const token = j.token ?? j.publicToken;
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(DEVICE_KEY, j.deviceId);
  $('#device').textContent = 'Device ' + j.deviceId + ' — may ' + j.permissions.join(', ');
  return token;
}

// --- rendering -------------------------------------------------------------------------------

const seen = new Set();

function describe(msg) {
  const d = msg.data;
  if (d === undefined || d === null) return '';
  if (typeof d === 'string') return d;
  switch (msg.type) {
    case 'event_created': return 'created ' + (d.name || d.id || '');
    case 'event_update': return (d.id || '') + ' is ' + (d.status || 'updated');
    case 'player_joined': return (d.nickname || d.playerId || 'a player') + ' joined';
    case 'bingo_completed': return (d.nickname || d.playerId || 'a player') + ' completed bingo';
    case 'word_marked': return (d.nickname || d.playerId || 'a player') + ' marked ' + (d.word || 'a word');
    default: return d.text || JSON.stringify(d);
  }
}

function addEvent(msg) {
  if (!msg.id || seen.has(msg.id)) return null;
  seen.add(msg.id);
  const li = document.createElement('li');
  li.dataset.type = msg.type;
  if (msg.data && typeof msg.data === 'object' && msg.data.id !== undefined) li.dataset.entity = String(msg.data.id);
  const time = document.createElement('time');
  time.textContent = (msg.timestamp || '').slice(11, 19);
  const type = document.createElement('span');
  type.className = 'type';
  type.textContent = msg.type;
  const text = document.createElement('span');
  text.className = 'data';
  text.textContent = describe(msg);
  li.append(time, type, text);
  const list = $('#events');
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
  return li;
}

/** The feed rows of entity `id` (seed 004's events carry data.id). */
function rowsOf(id) {
  return [...document.querySelectorAll('#events li[data-entity]')].filter((li) => li.dataset.entity === String(id));
}

function renderLeaderboard(rows) {
  const body = $('#leaderboard tbody');
  body.textContent = '';
  [...rows].sort((a, b) => (b.score || 0) - (a.score || 0)).forEach((r, i) => {
    const tr = document.createElement('tr');
    for (const v of [i + 1, r.name || r.nickname || r.id || '?', r.score ?? '']) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    body.append(tr);
  });
}

function renderMetrics(data) {
  const dl = $('#metrics');
  dl.textContent = '';
  for (const [k, v] of Object.entries(data || {})) {
    const dt = document.createElement('dt');
    dt.textContent = k.replace(/_/g, ' ');
    const dd = document.createElement('dd');
    dd.dataset.metric = k;
    dd.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
    dl.append(dt, dd);
  }
  $('#metrics-section').hidden = false;
}

// A message of a topic the page shows, from the socket, a poll or a history reply.
const shown = (msg) => typeof msg.topic === 'string' && shownTopics.includes(msg.topic);

function handleOther(msg) {
  if (!shown(msg)) return;
  if (Array.isArray(msg.leaderboard)) return renderLeaderboard(msg.leaderboard);
  addEvent(msg);
}

// --- status indicator (seed 004) -------------------------------------------------------------
// #status-text is the live region: it changes (and is announced) only when the state does.
// The countdown and attempt count are in #status-detail, which screen readers do not announce.

function stateLabel(state, info) {
  switch (state) {
    case 'connecting': return 'Connecting…';
    case 'connected': return 'Live';
    case 'reconnecting': return 'Reconnecting';
    case 'offline':
      return info.polling ? 'Offline — showing updates every ' + Math.round(info.pollInterval / 1000) + ' s' : 'Offline';
    case 'paused': return 'Paused while the page is hidden';
    case 'error': return 'Could not sign in';
    default: return 'Not connected';
  }
}

function stateDetail(state, info) {
  const when = info.trying ? 'trying now' : info.secondsLeft === null ? '' : 'in ' + info.secondsLeft + ' s';
  if (state === 'reconnecting') return (when ? when + ' ' : '') + '(attempt ' + info.attempt + '/' + info.maxAttempts + ')';
  if (state === 'offline' || state === 'error') {
    return info.trying ? '(trying now)' : info.secondsLeft === null ? '' : '(next try in ' + info.secondsLeft + ' s)';
  }
  return '';
}

function showState(state, info) {
  const box = $('#status');
  box.dataset.state = state;
  box.title = info.lastError && state !== 'connected' ? 'Last problem: ' + info.lastError : '';
  const label = stateLabel(state, info);
  const live = $('#status-text');
  if (live.textContent !== label) live.textContent = label;
  const detail = stateDetail(state, info);
  const el = $('#status-detail');
  if (el.textContent !== detail) el.textContent = detail;
  $('#retry').hidden = !(state === 'offline' || state === 'error' || state === 'reconnecting');
  $('#polling').hidden = !info.polling;
}

// --- recovery after a reconnect --------------------------------------------------------------
// Each resubscription reports whether the server replayed what this page missed. The board
// shows the total of the last reconnect: "recovered N missed events", or "resynced" when a
// topic's history was lost (server restarted, too long away) and the page reloaded it instead.

let recovery = null;

function showRecovery() {
  const el = $('#recovery');
  if (!recovery) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  if (recovery.resynced.length > 0) {
    el.dataset.resync = '';
    el.textContent = 'resynced (' + recovery.resynced.join(', ') + ')';
  } else {
    delete el.dataset.resync;
    el.textContent = 'recovered ' + recovery.missed + ' missed event' + (recovery.missed === 1 ? '' : 's');
  }
}

function onRecovery(r) {
  if (!recovery) recovery = { missed: 0, resynced: [] };
  if (r.recovered) {
    recovery.missed += r.missed;
  } else {
    recovery.resynced.push(r.topic + ': ' + (r.reason || 'unknown'));
    // Nothing is replayed: reload what the topic keeps (the last events, the latest board).
    client.send({ type: 'history', topic: r.topic, limit: r.topic === boardTopic ? 1 : 50 });
  }
  showRecovery();
}

let lastState = null;
function onState(state, info) {
  if (state === 'connected' && lastState !== 'connected') {
    recovery = null;  // a new connection: its acks report afresh
    showRecovery();
  }
  lastState = state;
  showState(state, info);
}

const client = new WsgateClient(Object.assign({}, pageOptions, {
  url: wsUrl,
  getToken,
  topics: shownTopics,
  // Every topic the page shows: the endpoint returns the recent events of all topics the token
  // may read, the page keeps those it shows (events and leaderboard updates alike).
  pollUrl: '/public/recent',
  onMessage: handleOther,
  onState,
  onRecovery,
  onPoll: (j) => (Array.isArray(j.events) ? j.events : []).filter(shown).forEach((m) => client.emit(m)),
  onPolling: () => showState(client.state, client.info()),
}));

// Typed handlers for the seeds' events; every other message of a shown topic goes to handleOther.
client.on('leaderboard_update', (m) => { if (shown(m) && Array.isArray(m.leaderboard)) renderLeaderboard(m.leaderboard); });
client.on('metrics_update', (m) => { if (shown(m)) renderMetrics(m.data); });
client.on('event_created', (m) => { if (shown(m)) addEvent(m); });
client.on('event_update', (m) => {
  if (!shown(m)) return;
  const li = addEvent(m);
  if (li && m.data && m.data.status) rowsOf(m.data.id).forEach((r) => { r.dataset.status = m.data.status; });
});
client.on('event_deleted', (m) => {
  if (!shown(m) || seen.has(m.id)) return;
  seen.add(m.id);
  const id = m.data && m.data.id;
  const rows = id === undefined ? [] : rowsOf(id);
  rows.forEach((r) => r.classList.add('deleted'));
  if (rows.length === 0) {
    seen.delete(m.id);
    addEvent(m);
  }
});
for (const t of ['activity_event', 'player_joined', 'bingo_completed', 'word_marked']) {
  client.on(t, (m) => { if (shown(m)) addEvent(m); });
}
// Each leaderboard-changing game event (seed 001) is followed by its own leaderboard_update.
client.on('history', (m) => (Array.isArray(m.publications) ? m.publications : []).forEach((p) => client.emit(p)));
client.on('error', (m) => console.warn('wsgate error', m.status, m.error));
for (const t of ['pong', 'ack', 'unsubscribed', 'token_expiring']) client.on(t, () => {});

$('#retry').addEventListener('click', () => client.retry());
window.wsgateClient = client;  // for the console and tests
client.start();
