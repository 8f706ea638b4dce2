#!/usr/bin/env node
// Scale-out: two instances of an HTTP endpoint behind HAProxy, which routes by
// Mcp-Session-Id with a stick table learned from the initialize response's
// header (docs/scale-out.md has the configuration this test generates).
// Shown with the official SDK client (StreamableHTTPClientTransport):
//   1. new sessions are spread over both instances (round robin);
//   2. every request of a session goes to the instance that initialized it
//      (the backend's environment says which instance runs it);
//   3. once one instance is stopped, its clients get 404 for their session and
//      re-initialize, on the other instance; the other instance's clients go on
//      in their sessions undisturbed;
//   4. with --mcpmux, each backend's MCPMUX_SESSION is its HTTP session ID.
//
// usage: node scaleout.mjs ENDPOINT       (--mcpmux PATH | --supergateway | -- COMMAND...)
//   --no-stick: the configuration without its stick table (the test must fail).
//   The backend is server-everything's stdio mode.  Exit 77 (skipped) when
//   haproxy is not installed, or when --mcpmux has no --http yet.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import {
  Endpoint, describeEndpoint, freePort, killTag, mcpmuxHasHttp, parseEndpoint, skip, sleep,
  TIMEOUT_MULTIPLIER,
} from './harness.mjs';

const GLOBAL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS) || 90_000 * TIMEOUT_MULTIPLIER; // under ctest's 120 s
const REQUEST_TIMEOUT_MS = 20_000;
const CLIENTS = 4;

// The HAProxy configuration: sessions stick to the server that answered their
// initialize (stick store-response on the Mcp-Session-Id it sent back); a
// request that names a session is routed by the table (stick on, which also
// stores); a request without one is balanced.  A stuck server that is down is
// skipped (health checks), and a connection refused is retried on another
// server (redispatch): the request then reaches an instance that does not know
// the session, which answers 404, and the client re-initializes.
export function haproxyConfig({ port, servers, stick = true }) {
  return `global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option redispatch
    retries 2

frontend mcp
    bind 127.0.0.1:${port}
    default_backend mcp_instances

backend mcp_instances
    balance roundrobin
${stick ? `    stick-table type string len 128 size 100k expire 1h
    stick on req.hdr(mcp-session-id)
    stick store-response res.hdr(mcp-session-id)
` : ''}${servers.map((s) => `    server ${s.name} 127.0.0.1:${s.port} check inter 200ms fall 1 rise 1`).join('\n')}
`;
}

let currentStep = 'startup';
let passed = 0;
let failed = 0;
const report = (name, problem) => {
  if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
};

// Each connection keeps the errors its client reports: those of a session on
// the stopped instance are expected (404s, its GET stream failing to
// reconnect); any other client's are not.
async function connect(url) {
  const errors = [];
  const transport = new StreamableHTTPClientTransport(new URL(url));
  const client = new Client({ name: 'mcpmux-scaleout', version: '1.0.0' }, { capabilities: {} });
  client.onerror = (e) => errors.push(`${e?.code ?? ''} ${e?.message ?? e}`.trim());
  await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
  return { client, transport, errors };
}

// Which instance runs this session's backend, from the backend's environment.
async function whereIs(c) {
  const r = await c.client.callTool({ name: 'get-env', arguments: {} }, undefined, { timeout: REQUEST_TIMEOUT_MS });
  const env = JSON.parse(r.content[0].text);
  return { instance: env.SCALEOUT_INSTANCE ?? null, cookie: env.MCPMUX_SESSION ?? null };
}

async function main() {
  let spec;
  let rest;
  try {
    ({ spec, rest } = parseEndpoint(process.argv.slice(2)));
  } catch (e) {
    console.error(`scaleout.mjs: ${e.message}`);
    process.exit(2);
  }
  // --no-stick leaves the stick table out of the configuration: a by-hand
  // check that the test fails without it.
  const stick = !rest.includes('--no-stick');
  if (!spec || spec.kind === 'url' || rest.some((a) => a !== '--no-stick')) {
    console.error('usage: node scaleout.mjs [--no-stick] (--mcpmux PATH | --supergateway | -- COMMAND ARG...)');
    process.exit(2);
  }
  if (spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).error) {
    skip('haproxy is not installed (Debian: apt-get install haproxy; .ci/deps installs it)');
  }
  if (spec.kind === 'mcpmux' && !mcpmuxHasHttp(spec.mcpmux)) {
    skip(`${spec.mcpmux} has no Streamable HTTP front end yet ("mcpmux serve --help" does not mention --http)`);
  }
  const isMcpmux = spec.kind === 'mcpmux';

  const instances = ['a', 'b'].map((name) => new Endpoint(spec, { env: { SCALEOUT_INSTANCE: name } }));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmux-scaleout-'));
  let haproxy = null;
  const clients = [];
  const unexpected = [];
  const timer = setTimeout(() => {
    report('global timeout', `not finished within ${GLOBAL_TIMEOUT_MS / 1000} s (in ${currentStep})`);
    console.log(`${passed} passed, ${failed} failed`);
    for (const i of instances) killTag(i.tag);
    if (haproxy) { try { haproxy.kill('SIGKILL'); } catch { /* gone */ } }
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  try {
    currentStep = 'starting the instances';
    for (const i of instances) await i.start();
    console.log(`# instances: ${describeEndpoint(spec)} at ${instances.map((i) => i.url).join(' and ')}`);
    const port = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, haproxyConfig({ port, servers: instances.map((i, n) => ({ name: 'ab'[n], port: i.port })), stick }));
    currentStep = 'starting haproxy';
    haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let haproxyErr = '';
    haproxy.stderr.on('data', (d) => { haproxyErr = (haproxyErr + d).slice(-4096); });
    const haproxyExit = new Promise((r) => haproxy.once('exit', (code, signal) => r({ code, signal })));
    const lb = new Endpoint({ kind: 'url', url: `http://127.0.0.1:${port}/mcp` });
    // readiness: haproxy listens (polled, like the instances)
    const end = Date.now() + 10_000;
    let up = false;
    while (!up && Date.now() < end) {
      try {
        const res = await fetch(lb.spec.url, { method: 'GET' });
        await res.body?.cancel();
        up = true;
      } catch { await sleep(20); }
    }
    if (!up) throw new Error(`haproxy did not listen: ${haproxyErr}`);
    const url = lb.spec.url;

    // 1. Sessions through the balancer land on both instances.
    currentStep = 'connecting clients';
    for (let n = 0; n < CLIENTS; n++) {
      const c = await connect(url);
      c.where = await whereIs(c);
      c.session = c.transport.sessionId;
      clients.push(c);
    }
    const on = (name) => clients.filter((c) => c.where.instance === name);
    report('new sessions are spread over both instances',
      on('a').length && on('b').length ? null : `instances of ${CLIENTS} sessions: ${clients.map((c) => c.where.instance).join(' ')}`);
    if (isMcpmux) {
      const bad = clients.filter((c) => c.where.cookie !== c.session);
      report('MCPMUX_SESSION of each backend is its Mcp-Session-Id',
        bad.length ? bad.map((c) => `${c.where.cookie} != ${c.session}`).join('; ') : null);
    }

    // 2. Every later request of a session reaches the same instance.
    currentStep = 'sticky requests';
    const moved = [];
    for (let round = 0; round < 3; round++) {
      for (const c of clients) {
        const w = await whereIs(c);
        if (w.instance !== c.where.instance) moved.push(`${c.session}: ${c.where.instance} -> ${w.instance}`);
      }
    }
    report('each session stays on its instance (3 rounds of calls)', moved.length ? moved.join('; ') : null);

    // 3. Stop instance a: its clients get 404 and re-initialize on b.
    currentStep = 'stopping instance a';
    const stopA = await instances[0].stop();
    report('instance a stopped with nothing left', stopA.leftovers.length ? `${stopA.leftovers.length} process(es) outlived it` : null);
    currentStep = 'clients of the stopped instance';
    const gone = [];
    const reinit = [];
    for (const c of on('a')) {
      try {
        await whereIs(c);
        gone.push(`${c.session}: a call still succeeded`);
      } catch (e) {
        if (e?.code !== 404) gone.push(`${c.session}: ${e?.code ?? ''} ${e?.message ?? e}`);
      }
      try { await c.client.close(); } catch { /* already failing */ }
      const fresh = await connect(url);
      fresh.where = await whereIs(fresh);
      fresh.session = fresh.transport.sessionId;
      if (fresh.where.instance !== 'b') reinit.push(`re-initialized on ${fresh.where.instance}`);
      if (fresh.session === c.session) reinit.push('the same session id came back');
      Object.assign(c, {
        client: fresh.client, transport: fresh.transport, where: fresh.where, session: fresh.session, moved: true,
        errors: fresh.errors,
      });
    }
    report("the stopped instance's sessions get 404", gone.length ? gone.join('; ') : null);
    report('their clients re-initialize on the other instance', reinit.length ? reinit.join('; ') : null);
    currentStep = 'clients of the remaining instance';
    const disturbed = [];
    for (const c of clients.filter((x) => !x.moved)) {
      try {
        const w = await whereIs(c);
        if (w.instance !== 'b') disturbed.push(`${c.session} now on ${w.instance}`);
      } catch (e) {
        disturbed.push(`${c.session}: ${e?.message ?? e}`);
      }
    }
    report("the other instance's sessions carry on", disturbed.length ? disturbed.join('; ') : null);

    // (Closing aborts the GET streams, which the SDK reports: taken before.)
    for (const c of clients) unexpected.push(...c.errors.map((e) => `${c.session}: ${e}`));
    // Close every session properly (DELETE), through the balancer.
    currentStep = 'closing';
    const closeErr = [];
    for (const c of clients) {
      try {
        await c.transport.terminateSession();
        await c.client.close();
      } catch (e) {
        closeErr.push(`${c.session}: ${e?.message ?? e}`);
      }
    }
    report('every session ends with DELETE through haproxy', closeErr.length ? closeErr.join('; ') : null);
    haproxy.kill('SIGTERM');
    const hx = await Promise.race([haproxyExit, sleep(5000).then(() => null)]);
    if (!hx) haproxy.kill('SIGKILL');
    haproxy = null;
  } finally {
    if (haproxy) { try { haproxy.kill('SIGKILL'); } catch { /* gone */ } }
    for (const i of instances) {
      const st = await i.stop();
      if (st.leftovers.length) report('instances stopped clean', `${st.leftovers.length} process(es) outlived ${i.env.SCALEOUT_INSTANCE}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  report('no unexpected client errors', unexpected.length ? unexpected.join('; ') : null);
  clearTimeout(timer);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`not ok harness: ${e?.stack ?? e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
