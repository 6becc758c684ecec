// A small browser client for wsgate (no build step). It keeps one WebSocket open:
//  - states: connecting (first socket), connected, reconnecting (backoff with countdown),
//    offline (after the attempt cap: one probe every probeInterval, and at once when a poll
//    succeeds or the tab becomes visible), paused (hidden for hiddenCloseDelay: socket closed
//    with 1000, every timer stopped), error (the token endpoint refused with 401/403; probed like
//    offline), disconnected (before start() and after stop());
//  - reconnect delay min(maxReconnectDelay, initialReconnectDelay * 2^attempt) + jitter
//    (0–reconnectJitter ms); the attempt count is reset once every subscribe is acknowledged;
//  - a deadline on every step: token (tokenTimeout, the fetch is aborted), socket open
//    (connectTimeout), each subscribe's ack (subscribeTimeout, matched by `ref`); a missed
//    deadline fails the attempt and the backoff goes on;
//  - the token travels in Sec-WebSocket-Protocol (["wsgate", token]; the server echoes "wsgate"),
//    never in the URL, so it appears in no console message or access log (tokenIn: 'query' sends
//    ?token= for servers without the convention);
//  - heartbeat {"type":"ping"} every heartbeatInterval, socket dropped if no pong within
//    heartbeatTimeout, paused while the tab is hidden;
//  - send() while not connected queues the message (at most queueSize, the oldest dropped first)
//    and sends the queue in order after the next open, after the re-subscriptions;
//  - polling pollUrl every pollInterval only once the socket has failed (never on first load);
//  - typed handlers: on('event_created', fn); messages without one go to onMessage;
//  - re-subscribes every topic (also those added with subscribe() later) after every
//    (re)connect, with "since" on topics that keep a history: it tracks the {offset, epoch} it
//    reached per topic, so the server replays what was published while it was away;
//    onRecovery({topic, recovered, missed, reason, position}) says whether that worked
//    (recovered: `missed` publications follow) or the app must resync (recovered false: nothing
//    is replayed; the client continues from `position`);
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
      // async (forceFresh, signal) => token string. Throw an Error with `status` 401 or 403 when
      // the server refuses to issue one (state 'error'); anything else is retried.
      getToken: null,
      tokenIn: 'subprotocol',       // 'subprotocol' (["wsgate", token]) or 'query' (?token=)
      subprotocol: 'wsgate',
      topics: [],
      initialReconnectDelay: 1000,
      maxReconnectDelay: 30000,
      reconnectJitter: 1000,
      maxReconnectAttempts: 10,
      probeInterval: 60000,         // after the cap; 0 = stay offline until retry()
      tokenTimeout: 10000,
      connectTimeout: 10000,
      subscribeTimeout: 10000,      // 0 = do not wait for acks
      heartbeatInterval: 30000,
      heartbeatTimeout: 5000,
      hiddenCloseDelay: 60000,      // hidden this long: close and pause; null = keep the socket
      queueSize: 256,
      pollUrl: null,
      pollInterval: 10000,          // also the deadline of one poll
      // Offsets this far below the highest received still tell out-of-order from duplicate.
      dedupeWindow: 1024,
      onMessage: () => {},
      onState: () => {},
      onPoll: () => {},
      onPolling: () => {},
      onRecovery: () => {},
    }, options);
    this.opts.topics = [...this.opts.topics];
    // topic -> { epoch, floor, seen }: every offset <= floor was received, `seen` holds the
    // offsets above it received out of order. `since` is the floor, so a gap is replayed.
    this.streams = new Map();
    this.handlers = new Map();      // type -> Set of functions
    this.duplicates = 0;
    this.queue = [];                // messages sent while not connected
    this.dropped = 0;               // queued messages dropped because the queue was full
    this.state = 'disconnected';
    this.attempt = 0;               // the reconnect attempt scheduled or under way, from 1
    this.nextAttemptAt = null;      // Date.now() of the next attempt or probe
    this.trying = false;            // an attempt is under way
    this.failed = false;            // the socket failed since it last opened: polling allowed
    this.lastError = null;          // why, for diagnostics (never contains the token)
    this.ws = null;
    this.ready = false;             // open and every subscribe acknowledged
    this.pendingAcks = new Map();   // ref -> { topic, timer }
    this.nextRef = 0;
    this.generation = 0;            // bumped by every attempt, pause and stop: stale steps end
    this.abort = null;              // AbortController of the attempt's token request
    this.freshToken = false;        // ask getToken for a fresh token next time
    this.polling = false;
    this.timers = {};
    this.stopped = true;
    document.addEventListener('visibilitychange', () => this.onVisibility());
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.failed = false;
    this.attemptNow('connecting');
    if (document.hidden) this.onVisibility();  // opened in a background tab: the hidden delay runs
  }

  /** Closes with 1000 and stops every timer; start() begins again. */
  stop() {
    this.halt(true);
    this.stopped = true;
    this.setState('disconnected');
  }

  /** Manual retry (the button): forget the backoff and connect now. */
  retry() {
    if (this.stopped) return this.start();
    this.attempt = 0;
    this.attemptNow(this.failed ? 'reconnecting' : 'connecting');
  }

  /** Subscribes now (if connected) and after every reconnect. */
  subscribe(topic) {
    if (this.opts.topics.includes(topic)) return;
    this.opts.topics.push(topic);
    if (this.isOpen()) this.sendSubscribe(topic);
  }

  /** Unsubscribes and forgets the topic's position. */
  unsubscribe(topic) {
    this.opts.topics = this.opts.topics.filter((t) => t !== topic);
    this.streams.delete(topic);
    this.sendNow({ type: 'unsubscribe', topic });
  }

  /** The {offset, epoch} reached on `topic` (everything up to it was received), or null. */
  position(topic) {
    const s = this.streams.get(topic);
    return s ? { offset: s.floor, epoch: s.epoch } : null;
  }

  /**
   * Sends `obj` now if connected ('sent'); otherwise queues it for the next connection
   * ('queued'). A full queue drops its oldest message (counted in `dropped`).
   */
  send(obj) {
    if (this.isOpen()) {
      this.ws.send(JSON.stringify(obj));
      return 'sent';
    }
    if (this.opts.queueSize <= 0) {
      this.dropped += 1;
      return 'queued';
    }
    this.queue.push(obj);
    while (this.queue.length > this.opts.queueSize) {
      this.queue.shift();
      this.dropped += 1;
    }
    return 'queued';
  }

  /** Calls `fn(msg)` for every message whose `type` is `type`; returns a function that removes it. */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this.handlers.get(type);
    if (set) set.delete(fn);
  }

  /**
   * Hands `msg` to the handlers of its type, or to onMessage if there are none: for messages the
   * app obtained elsewhere (a poll, a history reply) so they render the same way. A throwing
   * handler is reported and does not stop the others.
   */
  emit(msg) {
    const set = msg && typeof msg.type === 'string' ? this.handlers.get(msg.type) : null;
    if (!set || set.size === 0) return this.opts.onMessage(msg);
    for (const fn of [...set]) {
      try { fn(msg); } catch (e) { console.error('wsgate: handler for', msg.type, 'threw', e); }
    }
  }

  /** What a status display needs; see onState. */
  info() {
    return {
      attempt: this.attempt,
      maxAttempts: this.opts.maxReconnectAttempts,
      nextAttemptAt: this.nextAttemptAt,
      secondsLeft: this.nextAttemptAt === null ? null : Math.max(0, Math.ceil((this.nextAttemptAt - Date.now()) / 1000)),
      trying: this.trying,
      polling: this.polling,
      pollInterval: this.opts.pollInterval,
      queued: this.queue.length,
      lastError: this.lastError,
    };
  }

  // --- internals -------------------------------------------------------------------------------

  isOpen() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN; }

  sendNow(obj) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  setState(state) {
    this.state = state;
    this.updatePolling();
    this.emitState();
  }

  emitState() { this.opts.onState(this.state, this.info()); }

  clear(name) {
    if (this.timers[name]) {
      clearTimeout(this.timers[name]);
      clearInterval(this.timers[name]);
      delete this.timers[name];
    }
  }

  /**
   * Ends the attempt under way, the socket and the backoff timers; `everything` also stops
   * polling and the hidden-tab timer. The queue, topics and positions stay.
   */
  halt(everything) {
    this.generation += 1;
    if (this.abort) this.abort.abort();
    this.abort = null;
    this.dropSocket(1000, 'client closing');
    this.clear('reconnect');
    this.clear('countdown');
    if (everything) for (const name of Object.keys(this.timers)) this.clear(name);
    this.trying = false;
    this.nextAttemptAt = null;
  }

  /** One attempt: token, socket, subscriptions. `state` is shown while it runs. */
  async attemptNow(state) {
    if (this.stopped) return;
    this.halt();
    const gen = this.generation;
    this.trying = true;
    this.setState(state);

    let token;
    const abort = new AbortController();
    this.abort = abort;
    const deadline = setTimeout(() => abort.abort(), this.opts.tokenTimeout);
    try {
      // A getToken that ignores the signal still loses the race against the deadline.
      token = await Promise.race([
        this.opts.getToken(this.freshToken, abort.signal),
        new Promise((_, reject) => abort.signal.addEventListener('abort', () => reject(new Error('aborted')))),
      ]);
    } catch (e) {
      if (gen !== this.generation) return;
      if (abort.signal.aborted) return this.fail('token request timed out');
      if (e && (e.status === 401 || e.status === 403)) return this.fail('sign-in refused (HTTP ' + e.status + ')', true);
      return this.fail('cannot get a token' + (e && e.status ? ' (HTTP ' + e.status + ')' : ': server unreachable'));
    } finally {
      clearTimeout(deadline);
    }
    if (gen !== this.generation) return;
    this.abort = null;
    this.freshToken = false;

    let ws;
    try {
      ws = this.opts.tokenIn === 'query'
        ? new WebSocket(this.opts.url + (this.opts.url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token))
        : new WebSocket(this.opts.url, [this.opts.subprotocol, token]);
    } catch (e) {
      return this.fail('invalid URL or token');  // e.message could quote the token
    }
    this.ws = ws;
    let opened = false;
    this.timers.connect = setTimeout(() => {
      this.dropSocket(1000, 'connect timeout');
      this.fail('connection timed out');
    }, this.opts.connectTimeout);
    ws.onopen = () => {
      opened = true;
      this.clear('connect');
      this.trying = false;
      this.failed = false;
      this.lastError = null;
      this.ready = false;
      this.setState('connected');
      for (const topic of this.opts.topics) this.sendSubscribe(topic);
      const queued = this.queue;
      this.queue = [];
      for (const m of queued) ws.send(JSON.stringify(m));
      this.checkReady();
      this.startHeartbeat();
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.type === 'pong') this.clear('pong');
      if (msg.type === 'token_expiring') this.refreshToken(ws);
      if ((msg.type === 'ack' || msg.type === 'error') && this.pendingAcks.has(msg.ref)) {
        clearTimeout(this.pendingAcks.get(msg.ref).timer);
        this.pendingAcks.delete(msg.ref);
        this.checkReady();
      }
      if (!this.track(msg)) return;  // a duplicate
      this.emit(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.dropSocket();
      if (!opened) {
        // Refused upgrade or network error: the browser does not say which. Not a rejected
        // token (only the token endpoint says that), but the next attempt takes a fresh one.
        this.freshToken = true;
        return this.fail('could not open the connection');
      }
      if (ev.code === 4001) this.freshToken = true;
      this.fail(ev.code === 4001 ? 'token expired' : 'connection lost (' + ev.code + ')');
    };
  }

  sendSubscribe(topic) {
    const frame = this.subscribeFrame(topic);
    if (this.opts.subscribeTimeout > 0) {
      frame.ref = 'sub-' + (++this.nextRef);
      const timer = setTimeout(() => {
        this.dropSocket(4000, 'subscribe timeout');
        this.fail('subscribe to "' + topic + '" not acknowledged in time');
      }, this.opts.subscribeTimeout);
      this.pendingAcks.set(frame.ref, { topic, timer });
    }
    this.sendNow(frame);
  }

  /** Once every subscribe is answered the connection counts as established: a fresh backoff. */
  checkReady() {
    if (this.ready || !this.isOpen() || this.pendingAcks.size > 0) return;
    this.ready = true;
    this.attempt = 0;
    this.emitState();
  }

  /**
   * An attempt failed or the connection was lost: back off, give up to `offline` at the cap
   * (then probe every probeInterval), or `error` when the token was refused.
   */
  fail(reason, refused) {
    this.trying = false;
    this.failed = true;
    this.lastError = reason;
    this.abort = null;
    if (this.stopped || this.state === 'paused') return;
    if (refused) return this.scheduleProbe('error');
    if (this.state === 'offline' || this.state === 'error') return this.scheduleProbe(this.state);
    if (this.attempt >= this.opts.maxReconnectAttempts) return this.scheduleProbe('offline');
    const base = Math.min(this.opts.maxReconnectDelay, this.opts.initialReconnectDelay * Math.pow(2, this.attempt));
    this.attempt += 1;
    this.schedule(base + Math.floor(Math.random() * this.opts.reconnectJitter), 'reconnecting', 'reconnecting');
  }

  scheduleProbe(state) {
    if (this.opts.probeInterval > 0) {
      this.schedule(this.opts.probeInterval + Math.floor(Math.random() * this.opts.reconnectJitter), state, state);
    } else {
      this.nextAttemptAt = null;
      this.setState(state);
    }
  }

  schedule(delay, waitState, attemptState) {
    this.clear('reconnect');
    this.clear('countdown');
    this.nextAttemptAt = Date.now() + delay;
    this.timers.reconnect = setTimeout(() => this.attemptNow(attemptState), delay);
    this.timers.countdown = setInterval(() => this.emitState(), 1000);
    this.setState(waitState);
  }

  /** Try at once if waiting (poll succeeded, tab visible): offline and error only probe. */
  probeNow() {
    if (this.stopped || this.trying || this.state === 'connected' || this.state === 'paused') return;
    if (this.state === 'offline' || this.state === 'error') this.attemptNow(this.state);
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
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), this.opts.tokenTimeout);
    let token;
    try {
      token = await Promise.race([
        this.opts.getToken(true, abort.signal),
        new Promise((_, reject) => abort.signal.addEventListener('abort', () => reject(new Error('aborted')))),
      ]);
    } catch (e) {
      this.lastError = 'cannot refresh the token';
      return;  // the server closes with 4001 at exp; the reconnect fetches a token again
    } finally {
      clearTimeout(deadline);
    }
    if (this.ws === ws) this.sendNow({ type: 'refresh', token });
  }

  /** Forgets the socket (closing it with `code` if still open) and its per-connection timers. */
  dropSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.clear('connect');
    this.stopHeartbeat();
    for (const p of this.pendingAcks.values()) clearTimeout(p.timer);
    this.pendingAcks.clear();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(code || 1000, reason || ''); } catch (e) { /* already closed */ }
    }
  }

  startHeartbeat() {
    this.stopHeartbeat();
    if (document.hidden) return;  // resumed by onVisibility()
    this.timers.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatInterval);
  }

  beat() {
    if (!this.sendNow({ type: 'ping' })) return;
    this.clear('pong');
    this.timers.pong = setTimeout(() => {
      this.dropSocket(4000, 'heartbeat timeout');
      this.fail('no answer to the heartbeat within ' + this.opts.heartbeatTimeout / 1000 + ' s');
    }, this.opts.heartbeatTimeout);
  }

  stopHeartbeat() {
    this.clear('heartbeat');
    this.clear('pong');
  }

  onVisibility() {
    if (this.stopped) return;
    if (document.hidden) {
      this.stopHeartbeat();
      const delay = this.opts.hiddenCloseDelay;
      if (delay !== null && delay !== undefined && delay >= 0 && !this.timers.hidden) {
        this.timers.hidden = setTimeout(() => this.pause(), delay);
      }
      return;
    }
    this.clear('hidden');
    if (this.state === 'paused') {
      this.attempt = 0;
      this.attemptNow('connecting');
    } else if (this.state === 'connected') {
      this.startHeartbeat();
      this.beat();  // check the connection survived while hidden
    } else if (!this.trying) {
      this.retry();
    }
  }

  /** Hidden long enough: close cleanly and stop every timer (polling too) until visible. */
  pause() {
    this.halt(true);
    this.failed = false;
    this.lastError = null;
    this.setState('paused');
  }

  updatePolling() {
    const want = !!this.opts.pollUrl && !this.stopped && this.failed &&
      this.state !== 'connected' && this.state !== 'paused';
    if (want && !this.timers.poll) {
      this.timers.poll = setInterval(() => this.poll(), this.opts.pollInterval);
      this.poll();
    } else if (!want) {
      this.clear('poll');
    }
    if (this.polling !== want) {
      this.polling = want;
      this.opts.onPolling(want);
    }
  }

  async poll() {
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), this.opts.pollInterval);
    try {
      // The poll endpoint answers only what the same token may read; the token goes in a header.
      const token = await this.opts.getToken(false, abort.signal);
      const res = await fetch(this.opts.pollUrl,
        { cache: 'no-store', headers: { Authorization: 'Bearer ' + token }, signal: abort.signal });
      if (!res.ok) return;
      const body = await res.json();
      if (!this.polling) return;  // live again meanwhile: the socket has it
      this.opts.onPoll(body);
      this.probeNow();  // the server answers: try the socket at once
    } catch (e) {
      /* the server is down or slow; the next poll tries again */
    } finally {
      clearTimeout(deadline);
    }
  }
}

window.WsgateClient = WsgateClient;
