#!/usr/bin/env node
// A deterministic fault injector in front of a DynamoDB endpoint (dynalite in the tests), for the
// DynamoDB store's retry tests. Node built-ins only.
//
//   node throttle_proxy.js --target http://127.0.0.1:PORT [--port 0] [--throttle-every N]
//        [--throttle-type provisioned|throttling|alternate] [--unprocessed-every N] [--fail-all]
//
// Prints `listening <port>` on stdout once it accepts connections.
//   --throttle-every N     the Nth, 2Nth, ... request is answered HTTP 400 with a throttling error
//                          (ProvisionedThroughputExceededException, ThrottlingException, or the two
//                          in turn) and not forwarded
//   --unprocessed-every N  the Nth, 2Nth, ... BatchWriteItem / BatchGetItem that is forwarded carries
//                          only the first half (rounded up) of each table's requests or keys; the rest
//                          come back in UnprocessedItems / UnprocessedKeys, merged with the server's own
//   --fail-all             every request is answered with a throttling error
// GET /__stats answers what it did, as JSON.
'use strict';

const http = require('node:http');
const zlib = require('node:zlib');

function parseArgs(argv) {
  const o = { target: '', port: 0, throttleEvery: 0, throttleType: 'provisioned', unprocessedEvery: 0, failAll: false };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const count = () => {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${a} needs a whole number`);
      return n;
    };
    if (a === '--target') o.target = next();
    else if (a === '--port') o.port = count();
    else if (a === '--throttle-every') o.throttleEvery = count();
    else if (a === '--throttle-type') o.throttleType = next();
    else if (a === '--unprocessed-every') o.unprocessedEvery = count();
    else if (a === '--fail-all') o.failAll = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.target) throw new Error('--target URL is required');
  if (!['provisioned', 'throttling', 'alternate'].includes(o.throttleType))
    throw new Error('--throttle-type is provisioned, throttling or alternate');
  o.target = new URL(o.target);
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`throttle_proxy: ${e.message}\n`);
  process.exit(2);
}

const stats = {
  requests: 0,             // DynamoDB requests received (not /__stats)
  forwarded: 0,            // sent on to the target
  throttled: 0,            // answered with a throttling error
  throttled_by_type: { ProvisionedThroughputExceededException: 0, ThrottlingException: 0 },
  unprocessed_batches: 0,  // batch requests cut short
  unprocessed_items: 0,    // BatchWriteItem requests held back
  unprocessed_keys: 0,     // BatchGetItem keys held back
  by_operation: {},        // X-Amz-Target operation -> requests received
  errors: 0,               // target unreachable, or an answer that could not be merged
};
let batchCount = 0;
let throttleTurn = 0;

const THROTTLE_TYPES = {
  ProvisionedThroughputExceededException: 'com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException',
  ThrottlingException: 'com.amazon.coral.availability#ThrottlingException',
};

function throttleType() {
  if (opts.throttleType === 'provisioned') return 'ProvisionedThroughputExceededException';
  if (opts.throttleType === 'throttling') return 'ThrottlingException';
  return throttleTurn++ % 2 === 0 ? 'ProvisionedThroughputExceededException' : 'ThrottlingException';
}

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const buf = Buffer.from(text);
  const h = { 'content-type': 'application/x-amz-json-1.0', 'content-length': buf.length, ...headers };
  if (typeof zlib.crc32 === 'function') h['x-amz-crc32'] = String(zlib.crc32(buf));
  res.writeHead(status, h);
  res.end(buf);
}

function throttle(res) {
  const type = throttleType();
  stats.throttled++;
  stats.throttled_by_type[type]++;
  send(res, 400, { __type: THROTTLE_TYPES[type], message: `throttle_proxy: request ${stats.requests} throttled` },
       { 'x-amzn-requestid': `throttle-proxy-${stats.requests}` });
}

// Splits a batch request: what to forward, and what to hand back as unprocessed.
function splitBatch(operation, body) {
  const forward = JSON.parse(JSON.stringify(body));
  const held = {};
  let heldCount = 0;
  if (operation === 'BatchWriteItem') {
    for (const [table, reqs] of Object.entries(body.RequestItems || {})) {
      const keep = Math.ceil(reqs.length / 2);
      if (keep < reqs.length) {
        held[table] = reqs.slice(keep);
        heldCount += reqs.length - keep;
      }
      forward.RequestItems[table] = reqs.slice(0, keep);
    }
  } else {
    for (const [table, spec] of Object.entries(body.RequestItems || {})) {
      const keys = spec.Keys || [];
      const keep = Math.ceil(keys.length / 2);
      if (keep < keys.length) {
        held[table] = { ...spec, Keys: keys.slice(keep) };
        heldCount += keys.length - keep;
      }
      forward.RequestItems[table] = { ...spec, Keys: keys.slice(0, keep) };
    }
  }
  for (const t of Object.keys(forward.RequestItems || {})) {
    const v = forward.RequestItems[t];
    if ((Array.isArray(v) ? v.length : v.Keys.length) === 0) delete forward.RequestItems[t];
  }
  return { forward, held, heldCount };
}

// Adds the held-back part to the target's own UnprocessedItems / UnprocessedKeys.
function mergeUnprocessed(operation, answer, held) {
  const field = operation === 'BatchWriteItem' ? 'UnprocessedItems' : 'UnprocessedKeys';
  const out = answer[field] || {};
  for (const [table, part] of Object.entries(held)) {
    if (operation === 'BatchWriteItem') {
      out[table] = [...(out[table] || []), ...part];
    } else if (out[table]) {
      out[table] = { ...out[table], Keys: [...out[table].Keys, ...part.Keys] };
    } else {
      out[table] = part;
    }
  }
  answer[field] = out;
  if (operation === 'BatchGetItem') answer.Responses = answer.Responses || {};
  return answer;
}

function forward(req, res, bodyBuf, onAnswer) {
  const headers = { ...req.headers, host: opts.target.host, 'content-length': bodyBuf.length };
  const up = http.request({
    host: opts.target.hostname, port: opts.target.port, method: req.method, path: req.url, headers,
  }, (upRes) => {
    const chunks = [];
    upRes.on('data', (c) => chunks.push(c));
    upRes.on('end', () => onAnswer(upRes, Buffer.concat(chunks)));
  });
  up.on('error', (e) => {
    stats.errors++;
    send(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: `throttle_proxy: ${e.message}` });
  });
  stats.forwarded++;
  up.end(bodyBuf);
}

function passThrough(res) {
  return (upRes, buf) => {
    const h = { ...upRes.headers };
    delete h['transfer-encoding'];
    h['content-length'] = buf.length;
    res.writeHead(upRes.statusCode, h);
    res.end(buf);
  };
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET' && req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    const bodyBuf = Buffer.concat(chunks);
    const target = String(req.headers['x-amz-target'] || '');
    const operation = target.includes('.') ? target.split('.').pop() : target;
    stats.requests++;
    stats.by_operation[operation] = (stats.by_operation[operation] || 0) + 1;

    if (opts.failAll || (opts.throttleEvery > 0 && stats.requests % opts.throttleEvery === 0)) {
      throttle(res);
      return;
    }
    if (opts.unprocessedEvery > 0 && (operation === 'BatchWriteItem' || operation === 'BatchGetItem')) {
      let body;
      try {
        body = JSON.parse(bodyBuf.toString());
      } catch (e) {
        forward(req, res, bodyBuf, passThrough(res));
        return;
      }
      if (++batchCount % opts.unprocessedEvery === 0) {
        const { forward: part, held, heldCount } = splitBatch(operation, body);
        if (heldCount > 0) {
          stats.unprocessed_batches++;
          if (operation === 'BatchWriteItem') stats.unprocessed_items += heldCount;
          else stats.unprocessed_keys += heldCount;
          const partBuf = Buffer.from(JSON.stringify(part));
          forward(req, res, partBuf, (upRes, buf) => {
            if (upRes.statusCode !== 200) {
              passThrough(res)(upRes, buf);
              return;
            }
            try {
              send(res, 200, mergeUnprocessed(operation, JSON.parse(buf.toString()), held),
                   { 'x-amzn-requestid': upRes.headers['x-amzn-requestid'] || '' });
            } catch (e) {
              stats.errors++;
              send(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: `throttle_proxy: ${e.message}` });
            }
          });
          return;
        }
      }
    }
    forward(req, res, bodyBuf, passThrough(res));
  });
});

server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
