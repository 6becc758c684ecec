// A small browser client for wsgate (no build step). It keeps one WebSocket open:
//  - states: connecting, connected, reconnecting (with countdown), disconnected (after the
//    attempt cap; call retry()), error (no token could be obtained);
//  - reconnect delay min(maxDelay, initialDelay * 2^attempt) + jitter(0-1000 ms);
//  - heartbeat {"type":"ping"} every 30 s, connection dropped if no pong within 5 s, paused
//    while the tab is hidden;
//  - polling an HTTP endpoint while not connected;
//  - re-subscribes its topics after every (re)connect, with "since" on topics that keep a
//    history: it tracks the {offset, epoch} it reached per topic, so the server replays what was
//    published while it was away; onRecovery({topic, recovered, missed, reason, position}) says
//    whether that worked (recovered: `missed` publications follow) or the app must resync
//    (recovered false: nothing is replayed; the client continues from `position`);
//  - drops a publication whose offset it already received in that epoch (live and replayed);
//  - answers the server's token_expiring with {"type":"refresh","token":…} (a fresh token from
//    getToken(true)) on the live connection, and after a 4001 close ("token expired") connects
//    again with a fresh token.
/* exported WsgateClient */
'use strict';

class WsgateClient {
  constructor(options) {
    this.opts = Object.assign({
      url: null,                    // ws://host/ws (without token)
      getToken: null,               // async (forceFresh) => token string (connects and refreshes)
      // 'query' sends ?token=...; 'subprotocol' offers ["wsgate", token] (Sec-WebSocket-Protocol),
      // which keeps the token out of URLs and access logs; the server echoes "wsgate".
      tokenIn: 'query',
      topics: [],
      initialReconnectDelay: 1000,
      maxReconnectDelay: 30000,
      maxReconnectAttempts: 10,
      heartbeatInterval: 30000,
      heartbeatTimeout: 5000,
      connectTimeout: 10000,
      pollUrl: null,
      pollInterval: 10000,
      // Offsets this far below the highest received still tell out-of-order from duplicate.
      dedupeWindow: 1024,
      onMessage: () => {},
      onState: () => {},
      onPoll: () => {},
      onRecovery: () => {},
    }, options);
    this.opts.topics = [...this.opts.topics];
    // topic -> { epoch, floor, seen }: every offset <= floor was received, `seen` holds the
    // offsets above it received out of order. `since` is the floor, so a gap is replayed.
    this.streams = new Map();
    this.duplicates = 0;
    this.state = 'disconnected';
    this.attempt = 0;
    this.lastError = null;
    this.reconnectAt = 0;
    this.ws = null;
    this.timers = {};
    this.everOpened = false;
    document.addEventListener('visibilitychange', () => this.onVisibility());
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Manual retry (the button): forget the backoff and connect now. */
  retry() {
    this.attempt = 0;
    this.clear('reconnect');
    this.clear('countdown');
    this.connect();
  }

  /** Subscribes now (if connected) and after every reconnect. */
  subscribe(topic) {
    if (this.opts.topics.includes(topic)) return;
    this.opts.topics.push(topic);
    this.send(this.subscribeFrame(topic));
  }

  /** Unsubscribes and forgets the topic's position. */
  unsubscribe(topic) {
    this.opts.topics = this.opts.topics.filter((t) => t !== topic);
    this.streams.delete(topic);
    this.send({ type: 'unsubscribe', topic });
  }

  /** The {offset, epoch} reached on `topic` (everything up to it was received), or null. */
  position(topic) {
    const s = this.streams.get(topic);
    return s ? { offset: s.floor, epoch: s.epoch } : null;
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  // --- internals -------------------------------------------------------------------------------

  setState(state, extra) {
    this.state = state;
    this.updatePolling();
    this.opts.onState(state, Object.assign({
      attempt: this.attempt,
      maxAttempts: this.opts.maxReconnectAttempts,
      secondsLeft: Math.max(0, Math.ceil((this.reconnectAt - Date.now()) / 1000)),
      lastError: this.lastError,
    }, extra || {}));
  }

  clear(name) {
    if (this.timers[name]) {
      clearTimeout(this.timers[name]);
      clearInterval(this.timers[name]);
      delete this.timers[name];
    }
  }

  async connect() {
    if (this.ws) this.dropSocket();
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let token;
    try {
      token = await this.opts.getToken(this.tokenRejected === true);
    } catch (e) {
      this.lastError = 'cannot get a token: ' + e.message;
      // A server that is down looks like a failed fetch: keep retrying. A refusal is an error.
      if (e.status && e.status >= 400 && e.status < 500) return this.setState('error');
      return this.scheduleReconnect();
    }
    this.tokenRejected = false;
    const sep = this.opts.url.includes('?') ? '&' : '?';
    const ws = this.opts.tokenIn === 'subprotocol'
      ? new WebSocket(this.opts.url, ['wsgate', token])
      : new WebSocket(this.opts.url + sep + 'token=' + encodeURIComponent(token));
    this.ws = ws;
    let opened = false;
    this.timers.connect = setTimeout(() => {
      this.lastError = 'connection timeout';
      this.dropSocket();
      this.scheduleReconnect();
    }, this.opts.connectTimeout);
    ws.onopen = () => {
      opened = true;
      this.clear('connect');
      this.attempt = 0;
      this.lastError = null;
      this.everOpened = true;
      this.setState('connected');
      for (const topic of this.opts.topics) this.send(this.subscribeFrame(topic));
      this.startHeartbeat();
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === 'pong') this.clear('pong');
      if (msg.type === 'token_expiring') this.refreshToken(ws);
      if (!this.track(msg)) return;  // a duplicate
      this.opts.onMessage(msg);
    };
    ws.onerror = () => { this.lastError = 'connection failed'; };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.clear('connect');
      this.stopHeartbeat();
      this.ws = null;
      // A refused upgrade (e.g. an expired token) closes before open: fetch a fresh token next.
      if (!opened || ev.code === 4001) this.tokenRejected = true;
      else this.lastError = ev.code === 1000 ? null : 'closed (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')';
      this.scheduleReconnect();
    };
  }

  // --- stream positions (docs/delivery.md) -----------------------------------------------------

  subscribeFrame(topic) {
    const s = this.streams.get(topic);
    return s ? { type: 'subscribe', topic, since: { offset: s.floor, epoch: s.epoch } } : { type: 'subscribe', topic };
  }

  /** Moves `topic` to `pos`: a new epoch replaces the state, the same one only moves forward. */
  adopt(topic, pos) {
    const s = this.streams.get(topic);
    if (!s || s.epoch !== pos.epoch) {
      this.streams.set(topic, { epoch: pos.epoch, floor: pos.offset, seen: new Set() });
      return;
    }
    if (pos.offset > s.floor) {
      s.floor = pos.offset;
      for (const o of s.seen) if (o <= s.floor) s.seen.delete(o);
      this.advance(s);
    }
  }

  advance(s) {
    while (s.seen.has(s.floor + 1)) {
      s.seen.delete(s.floor + 1);
      s.floor += 1;
    }
  }

  /** Updates positions from a received message; false for a duplicate publication. */
  track(msg) {
    if (!msg || typeof msg !== 'object' || typeof msg.topic !== 'string' || !this.opts.topics.includes(msg.topic)) {
      return true;
    }
    // The epoch is empty only in {offset: 0, epoch: ''}, a stream never published to.
    const isPos = (p) => p && typeof p === 'object' && Number.isSafeInteger(p.offset) && p.offset >= 0 &&
      typeof p.epoch === 'string' && (p.epoch !== '' || p.offset === 0);
    if (msg.type === 'ack') {
      if (msg.action !== 'subscribe') return true;
      const pos = isPos(msg.position) ? { offset: msg.position.offset, epoch: msg.position.epoch } : null;
      const report = typeof msg.recovered === 'boolean';
      // A recovered stream keeps its own position: the replay follows the ack.
      if (pos && (!this.streams.has(msg.topic) || (report && !msg.recovered))) this.adopt(msg.topic, pos);
      if (report) {
        this.opts.onRecovery({
          topic: msg.topic,
          recovered: msg.recovered,
          missed: Number.isSafeInteger(msg.missed) ? msg.missed : 0,
          reason: typeof msg.reason === 'string' ? msg.reason : '',
          resumedFrom: typeof msg.resumedFrom === 'string' ? msg.resumedFrom : '',
          position: pos,
        });
      }
      return true;
    }
    if (!isPos(msg) || msg.offset === 0 || msg.epoch === '') return true;
    let s = this.streams.get(msg.topic);
    if (!s || s.epoch !== msg.epoch) {
      // From {0, ''} (nothing published before the subscription) the first epoch starts at 0;
      // otherwise tracking starts at the first publication of an unknown epoch.
      const fromStart = s && s.epoch === '' && s.floor === 0;
      this.adopt(msg.topic, { offset: fromStart ? 0 : msg.offset - 1, epoch: msg.epoch });
      s = this.streams.get(msg.topic);
    }
    if (msg.offset <= s.floor || s.seen.has(msg.offset)) {
      this.duplicates += 1;
      return false;
    }
    s.seen.add(msg.offset);
    const top = Math.max(...s.seen);
    if (top - s.floor > this.opts.dedupeWindow) {
      s.floor = top - this.opts.dedupeWindow;
      for (const o of s.seen) if (o <= s.floor) s.seen.delete(o);
    }
    this.advance(s);
    return true;
  }

  /** Replaces the token on the live connection (the server keeps it open until the old exp). */
  async refreshToken(ws) {
    let token;
    try {
      token = await this.opts.getToken(true);
    } catch (e) {
      this.lastError = 'cannot refresh the token: ' + e.message;
      return;  // the server closes with 4001 at exp; the reconnect fetches a token again
    }
    if (this.ws === ws) this.send({ type: 'refresh', token });
  }

  dropSocket() {
    const ws = this.ws;
    this.ws = null;
    this.clear('connect');
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
  }

  scheduleReconnect() {
    if (this.stopped) return;
    if (this.attempt >= this.opts.maxReconnectAttempts) {
      this.setState('disconnected');
      return;
    }
    const base = Math.min(this.opts.maxReconnectDelay, this.opts.initialReconnectDelay * Math.pow(2, this.attempt));
    const delay = base + Math.floor(Math.random() * 1000);
    this.attempt += 1;
    this.reconnectAt = Date.now() + delay;
    this.clear('reconnect');
    this.clear('countdown');
    this.timers.reconnect = setTimeout(() => { this.clear('countdown'); this.connect(); }, delay);
    this.timers.countdown = setInterval(() => this.setState('reconnecting'), 1000);
    this.setState('reconnecting');
  }

  startHeartbeat() {
    this.stopHeartbeat();
    if (document.hidden) return;  // resumed by onVisibility()
    this.timers.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatInterval);
  }

  beat() {
    if (!this.send({ type: 'ping' })) return;
    this.clear('pong');
    this.timers.pong = setTimeout(() => {
      this.lastError = 'no pong within ' + this.opts.heartbeatTimeout / 1000 + ' s';
      this.dropSocket();
      this.scheduleReconnect();
    }, this.opts.heartbeatTimeout);
  }

  stopHeartbeat() {
    this.clear('heartbeat');
    this.clear('pong');
  }

  onVisibility() {
    if (document.hidden) {
      this.stopHeartbeat();
      return;
    }
    if (this.state === 'connected') {
      this.startHeartbeat();
      this.beat();  // check the connection survived while hidden
    } else if (this.state === 'reconnecting') {
      this.retry();
    }
  }

  updatePolling() {
    const want = this.state !== 'connected' && this.opts.pollUrl;
    if (want && !this.timers.poll) {
      const poll = async () => {
        try {
          // The poll endpoint answers only what the same token may read.
          const token = await this.opts.getToken(false);
          const res = await fetch(this.opts.pollUrl,
            { cache: 'no-store', headers: { Authorization: 'Bearer ' + token } });
          if (res.ok) this.opts.onPoll(await res.json());
        } catch (e) { /* the server is down; keep polling */ }
      };
      poll();
      this.timers.poll = setInterval(poll, this.opts.pollInterval);
    } else if (!want) {
      this.clear('poll');
    }
    this.opts.onPolling && this.opts.onPolling(!!this.timers.poll);
  }
}

window.WsgateClient = WsgateClient;
