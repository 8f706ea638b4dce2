#!/usr/bin/env node
// Interop over Streamable HTTP: the official MCP TypeScript SDK client
// (StreamableHTTPClientTransport) runs one scenario twice, against
//   reference: server-everything's own Streamable HTTP mode
//              (`node server-everything streamableHttp`), and
//   endpoint:  the endpoint under test in front of server-everything's stdio
//              mode (`mcpmux serve --http PORT -- node server-everything stdio`),
// and the normalized results of every step must be identical.  Then, for the
// endpoint alone: closing the client sends DELETE and it is answered 2xx; the
// session's backend process tree is gone within a few seconds (by the
// MCPMUX_SESSION cookie in /proc for mcpmux; by the processes that appeared
// for the session for any endpoint); the old session ID then gets 404.
//
// usage: node http_interop.mjs [--known STEP]... [--leaky-backend] ENDPOINT
//   ENDPOINT: --mcpmux PATH | --supergateway | -- COMMAND ARG... (harness.mjs)
//   --known STEP     a difference or failure in STEP is reported, not counted;
//                    a known step that passes is counted as a failure (stale)
//   --cookie         also check the MCPMUX_SESSION cookie (on with --mcpmux)
//   --leaky-backend  wrap the backend so that it leaves a setsid() grandchild
//                    behind: the leftover check must then fail (a test of the test)
//   env INTEROP_DUMP=out.json writes both runs' normalized values;
//   INTEROP_TIMEOUT_MS (default 90000) bounds the whole script.
//
// Output: "ok STEP" or "not ok STEP: why" per step, then "N passed, M failed";
// exit 0 iff M == 0; 77 (skipped) when --mcpmux has no --http yet.

import assert from 'node:assert';
import fs from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import {
  Endpoint, describeEndpoint, finish, killTag, mcpmuxHasHttp, parseEndpoint, paths, procsWithEnv,
  runMain, skip, sleep, stillAlive, until,
  TIMEOUT_MULTIPLIER,
} from './harness.mjs';

const GLOBAL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS) || 90_000 * TIMEOUT_MULTIPLIER; // under ctest's 120 s
const REQUEST_TIMEOUT_MS = 20_000;
const GONE_WITHIN_MS = 5_000; // the backend's tree after DELETE
// server-everything sends its first simulated log message and resource update
// at once, then one every 5 s; the first may go to a GET stream not yet open.
const NOTIFY_WITHIN_MS = 12_000;

const STATIC_URI = 'demo://resource/static/document/features.md';
const LONG_ARGS = { duration: 1, steps: 5 };

const CANNED_SAMPLING = {
  model: 'interop-canned-model',
  role: 'assistant',
  stopReason: 'endTurn',
  content: { type: 'text', text: 'canned sampling answer 42' },
};
const CANNED_ELICITATION = {
  action: 'accept',
  content: { name: 'Ada Lovelace', check: true, email: 'ada@example.org', integer: 7 },
};

// ---------------------------------------------------------------------------
// See wrap_interop.mjs: the SDK's Protocol dispatches responses at once but
// notifications a microtask later, so a progress notification that arrives in
// the same chunk as its response is lost.  Deferring responses by a microtask
// restores arrival order; nothing changes on the wire.
class OrderedHTTPClientTransport extends StreamableHTTPClientTransport {
  async start() {
    const deliver = this.onmessage;
    if (deliver) {
      this.onmessage = (message, extra) => {
        const isResponse = message && 'id' in message && !('method' in message);
        if (isResponse) queueMicrotask(() => deliver(message, extra));
        else deliver(message, extra);
      };
    }
    return super.start();
  }
}

const toJSON = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const errorValue = (e) => ({ error: e?.constructor?.name ?? 'Error', code: e?.code, message: String(e?.message ?? e) });

// Session IDs differ between runs; a stdio server behind an endpoint has none
// (server-everything then prints "session undefined").
function normalize(v) {
  return JSON.parse(JSON.stringify(v ?? null)
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<sid>')
    .replace(/(session|SessionId) undefined/g, '$1 <sid>')
    .replace(/ from session <sid>/g, ' ')
    .replace(/ - SessionId <sid>/g, ''));
}

let currentStep = 'startup';

async function runScenario(label, url, { endpoint, cookie } = {}) {
  const results = [];
  const requests = []; // {method, status, session} of every HTTP request
  const logs = [];
  const updates = [];
  const others = [];
  const errors = [];
  let sampling = 0;
  let elicitation = 0;

  const fetchLogged = async (input, init = {}) => {
    const headers = new Headers(init.headers);
    const entry = { method: init.method ?? 'GET', session: headers.get('mcp-session-id'), status: null };
    requests.push(entry);
    const res = await fetch(input, init);
    entry.status = res.status;
    return res;
  };

  const transport = new OrderedHTTPClientTransport(new URL(url), { fetch: fetchLogged });
  const client = new Client(
    { name: 'mcpmux-http-interop', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {} } },
  );
  client.onerror = (e) => {
    // An SSE GET stream that a server closes is reported here and retried.
    const msg = String(e?.message ?? e);
    if (!/SSE stream disconnected|aborted/i.test(msg)) errors.push(msg);
  };
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params); });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updates.push(n.params); });
  client.fallbackNotificationHandler = async (n) => { others.push(n.method); };
  client.setRequestHandler(CreateMessageRequestSchema, async () => { sampling++; return CANNED_SAMPLING; });
  client.setRequestHandler(ElicitRequestSchema, async () => { elicitation++; return CANNED_ELICITATION; });

  const opts = { timeout: REQUEST_TIMEOUT_MS };
  const step = async (name, fn, check, { compare = true } = {}) => {
    currentStep = `${label}: ${name}`;
    let value;
    try {
      value = normalize(toJSON(await fn()));
    } catch (e) {
      value = errorValue(e);
    }
    results.push({
      step: name,
      value,
      compare,
      check: (v) => (v && v.error ? `${label}: ${v.error}: ${v.message}` : check ? check(v) : null),
    });
    return value;
  };
  const call = (name, args = {}, more = {}) => client.callTool({ name, arguments: args }, undefined, { ...opts, ...more });
  const textOf = (r) => (r?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

  const before = endpoint ? endpoint.tree() : [];
  const init = await step('initialize', async () => {
    await client.connect(transport, opts);
    return {
      protocolVersion: transport.protocolVersion,
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      instructions: client.getInstructions(),
      hasSessionId: Boolean(transport.sessionId),
    };
  }, (v) => (v.serverInfo?.name && v.hasSessionId ? null : `${label}: no serverInfo or no Mcp-Session-Id`));
  const sessionId = transport.sessionId;

  if (!init.error) {
    await step('tools/list', async () => (await client.listTools({}, opts)).tools.map((t) => t.name).sort(), (v) => {
      const missing = ['echo', 'get-sum', 'trigger-long-running-operation', 'trigger-sampling-request',
        'trigger-elicitation-request', 'toggle-simulated-logging', 'toggle-subscriber-updates']
        .filter((n) => !v.includes(n));
      return missing.length ? `${label}: tools missing: ${missing.join(', ')}` : null;
    });
    await step('tools/list schemas', () => client.listTools({}, opts));
    await step('resources/list', () => client.listResources({}, opts), (v) =>
      (v.resources.some((r) => r.uri === STATIC_URI) ? null : `${label}: ${STATIC_URI} not listed`));
    await step('resources/templates/list', () => client.listResourceTemplates({}, opts));
    await step('prompts/list', () => client.listPrompts({}, opts));

    await step('tools/call echo', () => call('echo', { message: 'hello over HTTP ✓ "quoted"\n' }), (v) =>
      (JSON.stringify(v).includes('hello over HTTP') ? null : `${label}: echo lost its text`));
    await step('tools/call get-sum', () => call('get-sum', { a: 19, b: 23 }), (v) =>
      (JSON.stringify(v).includes('42') ? null : `${label}: unexpected sum`));
    await step('progress trigger-long-running-operation', async () => {
      const progress = [];
      const result = await call('trigger-long-running-operation', LONG_ARGS, { onprogress: (p) => progress.push(p) });
      return { progress, result };
    }, (v) => (v.progress.length === LONG_ARGS.steps ? null
      : `${label}: ${v.progress.length} progress notifications, expected ${LONG_ARGS.steps}`));

    await step('resources/read', () => client.readResource({ uri: STATIC_URI }, opts), (v) =>
      (v.contents?.[0]?.text?.length ? null : `${label}: empty resource`));
    await step('prompts/get simple-prompt', () => client.getPrompt({ name: 'simple-prompt' }, opts));
    await step('prompts/get args-prompt', () =>
      client.getPrompt({ name: 'args-prompt', arguments: { city: 'Lyon', state: 'Rhône' } }, opts));

    // Logging: the level is accepted, and simulated messages arrive (their
    // level is random: only that one came, with a valid level, is compared).
    await step('logging', async () => {
      const setLevel = await client.setLoggingLevel('debug', opts);
      const n0 = logs.length;
      const on = textOf(await call('toggle-simulated-logging'));
      const got = await until(() => logs.slice(n0).find((l) => /-level message|level-message/.test(String(l.data))), NOTIFY_WITHIN_MS);
      const off = textOf(await call('toggle-simulated-logging'));
      return {
        setLevel,
        on: on.split('.')[0],
        off,
        received: Boolean(got),
        level: got ? ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'].includes(got.level) : null,
      };
    }, (v) => (v.received ? null : `${label}: no simulated log message within ${NOTIFY_WITHIN_MS} ms`));

    // Resources: subscribe, get an update, unsubscribe.
    await step('resources/subscribe and update', async () => {
      const subscribe = await client.subscribeResource({ uri: STATIC_URI }, opts);
      const n0 = updates.length;
      const on = textOf(await call('toggle-subscriber-updates'));
      const got = await until(() => updates.slice(n0).find((u) => u.uri === STATIC_URI), NOTIFY_WITHIN_MS);
      const off = textOf(await call('toggle-subscriber-updates'));
      const unsubscribe = await client.unsubscribeResource({ uri: STATIC_URI }, opts);
      const ack = logs.find((l) => String(l.data).startsWith('Received Subscribe Resource request'));
      return { subscribe, on: on.split('.')[0], off, update: got ?? null, unsubscribe, ackLogged: Boolean(ack) };
    }, (v) => (v.update ? null : `${label}: no notifications/resources/updated within ${NOTIFY_WITHIN_MS} ms`));

    await step('sampling', async () => {
      const s0 = sampling;
      const result = await call('trigger-sampling-request', { prompt: 'say the magic number', maxTokens: 16 });
      return { requests: sampling - s0, result };
    }, (v) => (v.requests === 1 && JSON.stringify(v.result).includes(CANNED_SAMPLING.content.text) ? null
      : `${label}: ${v.requests} sampling request(s), canned answer ${JSON.stringify(v.result).includes('canned') ? '' : 'not '}in the result`));

    await step('elicitation', async () => {
      const e0 = elicitation;
      const result = await call('trigger-elicitation-request');
      return { requests: elicitation - e0, result };
    }, (v) => (v.requests === 1 && JSON.stringify(v.result).includes('Ada Lovelace') ? null
      : `${label}: ${v.requests} elicitation request(s), canned answer not in the result`));
  }

  // Close the way an SDK user ends an HTTP session: DELETE, then close.
  const sessionProcs = endpoint
    ? endpoint.tree().filter((p) => !before.some((b) => b.pid === p.pid && b.start === p.start))
    : [];
  const cookieProcs = cookie && sessionId ? procsWithEnv('MCPMUX_SESSION', sessionId) : [];
  await step('close sends DELETE', async () => {
    await transport.terminateSession();
    await client.close();
    const del = requests.filter((r) => r.method === 'DELETE');
    return { deletes: del.length, status2xx: del.every((r) => r.status >= 200 && r.status < 300), withSession: del.every((r) => r.session === sessionId) };
  }, (v) => (v.deletes === 1 && v.status2xx && v.withSession ? null
    : `${label}: DELETE requests ${v.deletes}, all 2xx ${v.status2xx}, with the session id ${v.withSession}`));

  if (endpoint) {
    await step('backend tree gone after DELETE', async () => {
      const left = await until(() => (stillAlive(sessionProcs).length === 0 ? [] : null), GONE_WITHIN_MS) ?? stillAlive(sessionProcs);
      return { started: sessionProcs.length, left: left.map((p) => p.pid) };
    }, (v) => {
      if (v.started === 0) return `${label}: no process appeared for the session (is the backend run by the endpoint?)`;
      return v.left.length ? `${label}: ${v.left.length} of the session's ${v.started} process(es) alive ${GONE_WITHIN_MS} ms after DELETE: ${v.left.join(' ')}` : null;
    }, { compare: false });
    if (cookie) {
      await step('no MCPMUX_SESSION process after DELETE', async () => {
        const left = await until(() => (procsWithEnv('MCPMUX_SESSION', sessionId).length === 0 ? [] : null), GONE_WITHIN_MS)
          ?? procsWithEnv('MCPMUX_SESSION', sessionId);
        return { before: cookieProcs.length, left: left.map((p) => p.pid) };
      }, (v) => {
        if (v.before === 0) return `${label}: no process carried MCPMUX_SESSION=${sessionId} before DELETE`;
        return v.left.length ? `${label}: processes with the session's cookie remain: ${v.left.join(' ')}` : null;
      }, { compare: false });
    }
    await step('old session id gets 404', async () => {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId ?? 'none',
          'mcp-protocol-version': init.protocolVersion ?? '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} }),
      });
      await res.body?.cancel();
      return { status: res.status };
    }, (v) => (v.status === 404 ? null : `${label}: ${v.status} for a request with the ended session's id`), { compare: false });
  }

  // list_changed is left out of the comparison: server-everything registers
  // some tools once it knows the client's capabilities and says so at once; in
  // its own HTTP mode that notification has no stream yet (the client opens
  // its GET stream after initialization) and the SDK's server transport drops
  // it, while an endpoint in front of a stdio server delivers it.
  results.push({
    step: 'notifications (other)',
    value: [...new Set(others)].filter((m) => !m.endsWith('/list_changed')).sort(),
    compare: true,
  });
  results.push({
    step: 'client errors',
    value: errors,
    compare: false,
    check: (v) => (v.length ? `${label}: ${v.join('; ')}` : null),
  });
  return { results, requests };
}

function diffSummary(a, b) {
  try {
    assert.deepStrictEqual(b, a);
    return null;
  } catch (e) {
    const lines = String(e.message).split('\n').filter((l) => /^[+-]\s/.test(l)).map((l) => l.trim());
    let s = lines.slice(0, 6).join(' | ') || String(e.message).split('\n')[0];
    if (s.length > 400) s = s.slice(0, 397) + '...';
    return `reference/endpoint differ (- reference, + endpoint): ${s}`;
  }
}

async function main() {
  let spec;
  let rest;
  try {
    ({ spec, rest } = parseEndpoint(process.argv.slice(2)));
  } catch (e) {
    console.error(`http_interop.mjs: ${e.message}`);
    process.exit(2);
  }
  const known = new Set();
  let cookie = spec?.kind === 'mcpmux';
  let leaky = false;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--known') known.add(rest[++i]);
    else if (rest[i] === '--cookie') cookie = true;
    else if (rest[i] === '--leaky-backend') leaky = true;
    else { console.error(`http_interop.mjs: unknown argument "${rest[i]}"`); process.exit(2); }
  }
  if (!spec || spec.kind === 'url' || spec.kind === 'everything-http') {
    console.error('usage: node http_interop.mjs [--known STEP]... [--cookie] [--leaky-backend] (--mcpmux PATH | --supergateway | -- COMMAND ARG...)');
    process.exit(2);
  }
  if (!fs.existsSync(paths.everything)) {
    console.error(`server-everything not found at ${paths.everything}; run "npm ci" in test/interop`);
    process.exit(2);
  }
  if (spec.kind === 'mcpmux' && !mcpmuxHasHttp(spec.mcpmux)) {
    skip(`${spec.mcpmux} has no Streamable HTTP front end yet ("mcpmux serve --help" does not mention --http)`);
  }

  let backend = [process.execPath, paths.everything, 'stdio'];
  // A backend that leaves a grandchild in a session of its own, which only a
  // cookie or a snapshot of the tree can find once its parent is gone.
  if (leaky) backend = ['sh', '-c', 'setsid sleep 300 </dev/null >/dev/null 2>&1 & exec "$0" "$@"', ...backend];

  let passed = 0;
  let failed = 0;
  const report = (name, problem) => {
    if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
  };
  const ref = new Endpoint({ kind: 'everything-http' });
  const eut = new Endpoint(spec, { backend });
  const timer = setTimeout(() => {
    report('global timeout', `not finished within ${GLOBAL_TIMEOUT_MS / 1000} s (in ${currentStep})`);
    console.log(`${passed} passed, ${failed} failed`);
    killTag(ref.tag);
    killTag(eut.tag);
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  let reference;
  let tested;
  const stops = [];
  try {
    await ref.start();
    reference = await runScenario('reference', ref.url);
    stops.push(['reference', await ref.stop()]);
    await eut.start();
    console.log(`# endpoint under test: ${describeEndpoint(spec)} at ${eut.url}`);
    tested = await runScenario('endpoint', eut.url, { endpoint: eut, cookie });
  } finally {
    stops.push(['reference', await ref.stop()]);
    stops.push(['endpoint', await eut.stop()]);
  }

  if (process.env.INTEROP_DUMP) {
    const dump = (r) => Object.fromEntries(r.results.map((x) => [x.step, x.value]));
    fs.writeFileSync(process.env.INTEROP_DUMP, JSON.stringify({
      reference: dump(reference), endpoint: dump(tested), requests: { reference: reference.requests, endpoint: tested.requests },
    }, null, 2));
  }

  const names = [...new Set([...reference.results, ...tested.results].map((r) => r.step))];
  for (const name of names) {
    const r = reference.results.find((x) => x.step === name);
    const t = tested.results.find((x) => x.step === name);
    let problem;
    if (!t) problem = 'not run against the endpoint (an earlier step failed)';
    else if (t.compare === false) problem = t.check?.(t.value) ?? null;
    else if (!r) problem = 'not run against the reference';
    else problem = r.check?.(r.value) ?? t.check?.(t.value) ?? diffSummary(r.value, t.value);
    if (known.has(name)) {
      if (problem) { console.log(`# known: ${name}: ${problem}`); problem = null; } else problem = 'listed with --known but passed: remove it';
    }
    report(name, problem);
  }
  for (const [who, st] of stops) {
    if (st.leftovers?.length) report(`${who} stopped clean`, `${st.leftovers.length} process(es) outlived it`);
  }
  clearTimeout(timer);
  finish(passed, failed, eut);
}

runMain(main);
