#!/usr/bin/env node
// http_sessions: Streamable HTTP endpoints side by side, by hand (never in ctest).
//
//   node bench/http_sessions.mjs [--rounds N] [--sessions N] [--idle N] [--calls N]
//        [--concurrency N] [--only sessions,memory,rtt] [--fixture PATH]
//        [--mcpmux PATH] [--endpoint NAME=COMMAND]... [--no-pin] [--json FILE]
//
// Endpoints (columns):
//   everything-http  server-everything's own Streamable HTTP mode: sessions are
//                    objects in one Node process, no backend process at all
//   supergateway     supergateway 4.0.0, stateful Streamable HTTP (--stateful)
//   mcpmux           `mcpmux serve --http 127.0.0.1:PORT -- BACKEND`, when --mcpmux
//                    names a binary whose `serve --help` mentions --http
//   NAME=COMMAND     any other: {port}, {backend}, {backend_sh}, {node} as in
//                    test/interop/harness.mjs
// Measurements, each from a fresh endpoint process, interleaved: round 1 of
// every endpoint (in an order rotated each round), then round 2, and so on;
// the table shows medians over the rounds and ratios.
//   sessions  sessions started per second: initialize, notifications/initialized,
//             one tools/call (echo), DELETE; --sessions of them, --concurrency at
//             a time, after 5 for warm-up.  Backend: the C fixture (mcp-fixture).
//   memory    --idle sessions opened as above and left open (no DELETE); after
//             1 s idle, the resident memory of the endpoint's whole process tree
//             (VmRSS summed, and PSS, which counts shared pages once), less the
//             tree's before the sessions, divided by the sessions.  Backend: the
//             fixture.
//   rtt       round trip of a 1 KiB tools/call echo on one keep-alive connection,
//             one session, --calls calls after 50 for warm-up: the median and the
//             99th percentile per round.  Backend: server-everything's stdio mode
//             (the same code as everything-http, which is the baseline).
// With pinning (the default), every endpoint process tree runs on CPU 0 and this
// client on CPU 1 (taskset), so the two do not trade places at random.
//
// server-everything, supergateway and the harness come from test/interop
// (npm ci there, or make deps); mcp-fixture from a build (make release).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  Endpoint, mcpmuxHasHttp, median, paths, processTree, sleep,
} from '../test/interop/harness.mjs';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const PROTOCOL = '2025-06-18';

function parseArgs(argv) {
  const o = {
    rounds: 5, sessions: 200, idle: 200, calls: 500, concurrency: 4,
    only: ['sessions', 'memory', 'rtt'], fixture: null, mcpmux: null, extra: [], pin: true, json: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--rounds') o.rounds = Number(next());
    else if (a === '--sessions') o.sessions = Number(next());
    else if (a === '--idle') o.idle = Number(next());
    else if (a === '--calls') o.calls = Number(next());
    else if (a === '--concurrency') o.concurrency = Number(next());
    else if (a === '--only') o.only = next().split(',');
    else if (a === '--fixture') o.fixture = path.resolve(next());
    else if (a === '--mcpmux') o.mcpmux = path.resolve(next());
    else if (a === '--endpoint') {
      const v = next();
      const eq = v.indexOf('=');
      if (eq < 1) throw new Error(`--endpoint wants NAME=COMMAND, not "${v}"`);
      o.extra.push({ name: v.slice(0, eq), argv: v.slice(eq + 1).split(/\s+/).filter(Boolean) });
    } else if (a === '--no-pin') o.pin = false;
    else if (a === '--json') o.json = next();
    else throw new Error(`unknown argument "${a}"`);
  }
  return o;
}

// ---------------------------------------------------------------------------
// A minimal Streamable HTTP client: one JSON-RPC message per POST, the answer
// read whole (an SSE stream ends after the response to its request).

function request(agent, url, { method = 'POST', session, body } = {}) {
  return new Promise((resolve, reject) => {
    const headers = {
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL,
    };
    if (session) headers['mcp-session-id'] = session;
    let data = null;
    if (body !== undefined) {
      data = Buffer.from(JSON.stringify(body));
      headers['content-type'] = 'application/json';
      headers['content-length'] = data.length;
    }
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} timed out`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// The JSON-RPC message with `id` in a JSON or SSE answer.
function answerFor(res, id) {
  const ct = String(res.headers['content-type'] ?? '');
  const msgs = [];
  if (ct.includes('text/event-stream')) {
    for (const ev of res.text.split(/\r?\n\r?\n/)) {
      const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (data.trim()) msgs.push(JSON.parse(data));
    }
  } else if (res.text.trim()) {
    msgs.push(JSON.parse(res.text));
  }
  const m = msgs.find((x) => x.id === id);
  if (!m) throw new Error(`no answer for id ${id} in a ${res.status} ${ct}: ${res.text.slice(0, 200)}`);
  if (m.error) throw new Error(`error answer: ${JSON.stringify(m.error)}`);
  return m.result;
}

async function openSession(agent, url, echo) {
  const init = await request(agent, url, {
    body: {
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'http-bench', version: '1' } },
    },
  });
  if (init.status !== 200) throw new Error(`initialize: HTTP ${init.status}: ${init.text.slice(0, 200)}`);
  answerFor(init, 1);
  const session = init.headers['mcp-session-id'];
  if (!session) throw new Error('initialize: no Mcp-Session-Id');
  const note = await request(agent, url, { session, body: { jsonrpc: '2.0', method: 'notifications/initialized' } });
  if (note.status !== 202) throw new Error(`notifications/initialized: HTTP ${note.status}`);
  const call = await request(agent, url, { session, body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: echo('hello') } });
  answerFor(call, 2);
  return session;
}

async function closeSession(agent, url, session) {
  const res = await request(agent, url, { method: 'DELETE', session });
  if (res.status < 200 || res.status >= 300) throw new Error(`DELETE: HTTP ${res.status}`);
}

async function pool(n, concurrency, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  });
  await Promise.all(workers);
}

// ---------------------------------------------------------------------------
// Measurements: each takes a started Endpoint and returns numbers.

async function measureSessions(ep, o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  try {
    for (let i = 0; i < 5; i++) await closeSession(agent, ep.url, await openSession(agent, ep.url, ep.echo));
    const t0 = process.hrtime.bigint();
    await pool(o.sessions, o.concurrency, async () => {
      await closeSession(agent, ep.url, await openSession(agent, ep.url, ep.echo));
    });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { perSecond: o.sessions / s };
  } finally {
    agent.destroy();
  }
}

function pssKiB(procs) {
  let sum = 0;
  for (const p of procs) {
    try {
      const m = /^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p.pid}/smaps_rollup`, 'utf8'));
      if (m) sum += Number(m[1]);
    } catch { /* gone */ }
  }
  return sum;
}

function rssKiBOf(procs) {
  let sum = 0;
  for (const p of procs) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      if (m) sum += Number(m[1]);
    } catch { /* gone */ }
  }
  return sum;
}

function rssAnonKiB(pid) {
  try {
    const m = /RssAnon:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function measureMemory(ep, o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  try {
    await closeSession(agent, ep.url, await openSession(agent, ep.url, ep.echo));
    await sleep(1000);
    const t0 = processTree(ep.pid);
    const own0 = rssAnonKiB(ep.pid);
    const rss0 = rssKiBOf(t0);
    const pss0 = pssKiB(t0);
    await pool(o.idle, o.concurrency, async () => { await openSession(agent, ep.url, ep.echo); });
    agent.destroy(); // idle sessions hold no connection
    await sleep(1000);
    const t1 = processTree(ep.pid);
    const own1 = rssAnonKiB(ep.pid);
    const rss1 = rssKiBOf(t1);
    const pss1 = pssKiB(t1);
    return {
      processes: t1.length,
      rssTotalPerSession: rss1 / o.idle,
      rssPerSession: (rss1 - rss0) / o.idle,
      pssPerSession: (pss1 - pss0) / o.idle,
      ownPerSession: (own1 - own0) / o.idle, // the endpoint's own process: no backend in it
    };
  } finally {
    agent.destroy();
  }
}

async function measureRtt(ep, o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const session = await openSession(agent, ep.url, ep.echo);
    const payload = 'x'.repeat(1024);
    const lat = [];
    for (let i = 0; i < 50 + o.calls; i++) {
      const t0 = process.hrtime.bigint();
      const res = await request(agent, ep.url, {
        session, body: { jsonrpc: '2.0', id: 10 + i, method: 'tools/call', params: ep.echo(payload) },
      });
      const r = answerFor(res, 10 + i);
      if (!JSON.stringify(r).includes(payload)) throw new Error('echo lost its payload');
      if (i >= 50) lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    await closeSession(agent, ep.url, session);
    lat.sort((a, b) => a - b);
    return { p50us: median(lat), p99us: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] };
  } finally {
    agent.destroy();
  }
}

// ---------------------------------------------------------------------------

function findFixture(o) {
  if (o.fixture) return o.fixture;
  for (const b of ['build/release', 'build/dev']) {
    const p = path.join(ROOT, b, 'fixtures', 'mcp-fixture');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('mcp-fixture not found: build it (make release) or give --fixture PATH');
}

const echoEverything = (m) => ({ name: 'echo', arguments: { message: m } });
const echoFixture = (m) => ({ name: 'echo', arguments: { text: m } });

function endpoints(o, group, fixture) {
  const small = group !== 'rtt';
  const backend = small ? [fixture] : [process.execPath, paths.everything, 'stdio'];
  const echo = small ? echoFixture : echoEverything;
  const list = [{ name: 'everything-http', spec: { kind: 'everything-http' }, backend, echo: echoEverything }];
  list.push({ name: 'supergateway', spec: { kind: 'supergateway' }, backend, echo });
  if (o.mcpmux) list.push({ name: 'mcpmux', spec: { kind: 'mcpmux', mcpmux: o.mcpmux }, backend, echo });
  for (const e of o.extra) list.push({ name: e.name, spec: { kind: 'command', argv: e.argv }, backend, echo });
  return list;
}

const MEASURE = { sessions: measureSessions, memory: measureMemory, rtt: measureRtt };

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.rounds < 1) throw new Error('--rounds must be at least 1');
  // Pin this client to CPU 1 by re-running it under taskset; endpoints go to CPU 0.
  if (o.pin && !process.env.HTTP_BENCH_PINNED) {
    const r = spawnSync('taskset', ['-c', '1', process.execPath, ...process.argv.slice(1)],
      { stdio: 'inherit', env: { ...process.env, HTTP_BENCH_PINNED: '1' } });
    if (r.error) throw new Error(`taskset: ${r.error.message} (or run with --no-pin)`);
    process.exit(r.status ?? 1);
  }
  if (o.mcpmux && !mcpmuxHasHttp(o.mcpmux)) {
    console.log(`# ${o.mcpmux}: "serve --help" does not mention --http: no mcpmux column yet`);
    o.mcpmux = null;
  }
  const fixture = o.only.some((g) => g !== 'rtt') ? findFixture(o) : null;
  const wrap = o.pin ? ['taskset', '-c', '0'] : [];
  console.log(`# ${new Date().toISOString()}  node ${process.version}  rounds ${o.rounds}  pinned ${o.pin}`);
  console.log(`# sessions ${o.sessions} (concurrency ${o.concurrency}), idle ${o.idle}, rtt calls ${o.calls}; fixture ${fixture ?? '-'}`);

  const results = {}; // group -> endpoint -> [round values]
  let failures = 0;
  for (const group of o.only) {
    if (!MEASURE[group]) throw new Error(`unknown group "${group}"`);
    const eps = endpoints(o, group, fixture);
    results[group] = Object.fromEntries(eps.map((e) => [e.name, []]));
    for (let round = 0; round < o.rounds; round++) {
      const order = eps.map((_, i) => eps[(i + round) % eps.length]);
      for (const e of order) {
        const ep = new Endpoint(e.spec, { backend: e.backend, wrap });
        ep.echo = e.echo;
        let value;
        try {
          await ep.start();
          value = await MEASURE[group](ep, o);
        } catch (err) {
          failures++;
          value = { error: String(err.message ?? err) };
        } finally {
          const st = await ep.stop();
          if (st.leftovers.length) {
            failures++;
            value = { ...value, error: `${st.leftovers.length} process(es) outlived the endpoint` };
          }
        }
        results[group][e.name].push(value);
        console.log(`# ${group} round ${round + 1} ${e.name}: ${JSON.stringify(value, (k, v) => (typeof v === 'number' ? Number(v.toFixed(1)) : v))}`);
      }
    }
  }

  const fmt = (v, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');
  const col = (group, name, key) => results[group][name].filter((v) => !v.error).map((v) => v[key]);
  // base2: a second ratio column (the round trips: to supergateway as well).
  const table = (title, group, key, unit, base, digits = 0, better = 'higher', base2 = null) => {
    if (!results[group]) return;
    console.log(`\n${title} (${unit}; median of ${o.rounds}, [min-max]; ratio to ${base}${base2 ? `, to ${base2}` : ''})`);
    const baseMed = median(col(group, base, key));
    const base2Med = base2 ? median(col(group, base2, key)) : NaN;
    for (const name of Object.keys(results[group])) {
      const xs = col(group, name, key);
      const med = median(xs);
      const ratio = med / baseMed;
      const second = base2 ? `  ${fmt(med / base2Med, 2)}x` : '';
      console.log(`  ${name.padEnd(16)} ${fmt(med, digits).padStart(10)}  [${fmt(Math.min(...xs), digits)}-${fmt(Math.max(...xs), digits)}]  ${fmt(ratio, 2)}x${second}${name === base ? ' (base)' : ''}  n=${xs.length}`);
    }
    if (better) console.log(`  (${better} is better)`);
  };
  table('sessions started per second: initialize + initialized + tools/call + DELETE', 'sessions', 'perSecond', 'sessions/s', 'supergateway');
  table('memory per idle session: tree RSS growth / sessions', 'memory', 'rssPerSession', 'KiB', 'supergateway', 0, 'lower');
  table('memory per idle session: tree PSS growth / sessions', 'memory', 'pssPerSession', 'KiB', 'supergateway', 0, 'lower');
  table('memory per idle session: whole tree RSS / sessions', 'memory', 'rssTotalPerSession', 'KiB', 'supergateway', 0, 'lower');
  table('memory per idle session: the endpoint process itself, RssAnon growth / sessions', 'memory', 'ownPerSession', 'KiB', 'supergateway', 1, 'lower');
  table('round trip, 1 KiB tools/call echo, keep-alive: median', 'rtt', 'p50us', 'µs', 'everything-http', 0, 'lower', 'supergateway');
  table('round trip, 1 KiB tools/call echo, keep-alive: 99th percentile', 'rtt', 'p99us', 'µs', 'everything-http', 0, 'lower', 'supergateway');
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ options: o, results }, null, 2));
  if (failures) console.log(`\n${failures} measurement(s) failed (see the "#" lines)`);
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`http_sessions: ${e?.stack ?? e}`);
  process.exit(2);
});
