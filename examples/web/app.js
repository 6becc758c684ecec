// The status board: a public device token (POST /public/token), one WsgateClient, live events
// and a leaderboard. URL parameters: ?topic=events:demo&board=leaderboard:demo&poll=10000
'use strict';

const params = new URLSearchParams(location.search);
const topic = params.get('topic') || 'events:demo';
const boardTopic = params.get('board') || 'leaderboard:demo';
const pollInterval = Number(params.get('poll') || 10000);
const origin = location.origin;
const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';

const $ = (sel) => document.querySelector(sel);
$('#topic-name').textContent = topic;
document.querySelectorAll('.origin').forEach((e) => { e.textContent = origin; });
document.querySelectorAll('.topic').forEach((e) => { e.textContent = boardTopic; });

// --- token -----------------------------------------------------------------------------------

const TOKEN_KEY = 'wsgate.publicToken';
const DEVICE_KEY = 'wsgate.deviceId';

async function getToken(forceFresh) {
  const cached = localStorage.getItem(TOKEN_KEY);
  if (cached && !forceFresh) return cached;
  const body = {};
  const device = localStorage.getItem(DEVICE_KEY);
  if (device) body.deviceId = device;
  const res = await fetch('/public/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!res.ok) {
    const err = new Error('HTTP ' + res.status);
    err.status = res.status;
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

function addEvent(msg) {
  if (!msg.id || seen.has(msg.id)) return;
  seen.add(msg.id);
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = (msg.timestamp || '').slice(11, 19);
  const type = document.createElement('span');
  type.className = 'type';
  type.textContent = msg.type;
  const text = document.createElement('span');
  text.className = 'data';
  const d = msg.data;
  text.textContent = d === undefined ? '' : (typeof d === 'string' ? d : (d && d.text) || JSON.stringify(d));
  li.append(time, type, text);
  const list = $('#events');
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
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

function handle(msg) {
  if (msg.type === 'pong' || msg.type === 'ack') return;
  if (msg.type === 'history') {
    (Array.isArray(msg.publications) ? msg.publications : []).forEach(handle);
    return;
  }
  if (msg.type === 'error') {
    console.warn('wsgate error', msg);
    return;
  }
  if (Array.isArray(msg.leaderboard)) renderLeaderboard(msg.leaderboard);
  if (msg.topic === topic || (msg.topic === boardTopic && !Array.isArray(msg.leaderboard))) addEvent(msg);
}

// --- status indicator (seed 004) -------------------------------------------------------------

function showState(state, info) {
  const box = $('#status');
  box.dataset.state = state;
  let text = state;
  if (state === 'reconnecting') {
    text = 'reconnecting in ' + info.secondsLeft + ' s (attempt ' + info.attempt + '/' + info.maxAttempts + ')';
  } else if (state === 'disconnected') {
    text = 'disconnected';
  } else if (state === 'error') {
    text = 'error';
  }
  if (info.lastError && state !== 'connected') text += ' — ' + info.lastError;
  $('#status-text').textContent = text;
  $('#retry').hidden = !(state === 'disconnected' || state === 'error' || state === 'reconnecting');
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

function onState(state, info) {
  if (state === 'connected') {
    recovery = null;  // a new connection: its acks report afresh
    showRecovery();
  }
  showState(state, info);
}

const client = new WsgateClient({
  url: wsUrl,
  getToken,
  topics: [topic, boardTopic],
  pollUrl: '/public/recent?topic=' + encodeURIComponent(topic),
  pollInterval,
  onMessage: handle,
  onState,
  onRecovery,
  onPoll: (j) => (j.events || []).forEach(handle),
  onPolling: (on) => { $('#polling').hidden = !on; },
});
$('#retry').addEventListener('click', () => client.retry());
window.wsgateClient = client;  // for the console and tests
client.start();
