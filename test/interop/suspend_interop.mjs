#!/usr/bin/env node
// Interop test of --idle-suspend: the official MCP TypeScript SDK client talks to the
// reference server-everything (stdio) through `mcpmux --idle-suspend`, twice:
//
//   steady     the session never pauses (no --idle-suspend);
//   suspended  after initialize, tools/list, a resource subscription and a log level,
//              the client waits until mcpmux has ended the idle server and its whole tree;
//              then it calls tools, reads a resource and gets that resource's updates.
//
// Every step's result must be the same in both runs; in the suspended run the server that
// answers after the pause is a new process, the old one and its tree are gone, and the
// traffic log holds one `suspended` and one `resumed` event.  The log level set before the
// pause must hold after it: server-everything acknowledges a subscription with an "info"
// log message, which the "error" level filters out, so a replay that forgot the level
// would deliver it.
//
// Usage: node suspend_interop.mjs MCPMUX_BINARY
// Output: "ok STEP" / "not ok STEP: why" lines, then "N passed, M failed"; exit 0 iff M == 0.

import assert from 'node:assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  CreateMessageRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import { paths, processTree, procStat, stillAlive, sleep, until } from './harness.mjs';

const IDLE_SUSPEND_S = 1;
const TIMEOUT_MS = 20_000;
const URI = 'demo://resource/static/document/features.md';
const CANNED = { model: 'canned', role: 'assistant', stopReason: 'endTurn', content: { type: 'text', text: 'canned 42' } };

const toJSON = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

// The server: mcpmux's child that is not its keeper (the keeper is not its child).
function serverOf(mcpmuxPid) {
  const kids = processTree(mcpmuxPid).filter((p) => p.ppid === mcpmuxPid);
  return kids.length === 1 ? kids[0] : null;
}

// mcpmux's stderr in the scenario running last: said when the harness itself fails.
let lastStderr = () => '';

async function scenario(mcpmux, suspend, logFile) {
  const steps = [];
  const record = (name, value) => steps.push({ name, value: toJSON(value) });
  const updates = [];
  const logLevels = [];
  const args = [...(suspend ? ['--idle-suspend', String(IDLE_SUSPEND_S)] : []), '--log', logFile,
    '--', process.execPath, paths.everything, 'stdio'];
  const transport = new StdioClientTransport({ command: mcpmux, args, env: { ...process.env }, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d) => { stderr += d.toString(); });
  lastStderr = () => stderr;
  const client = new Client({ name: 'mcpmux-suspend-test', version: '1.0.0' }, { capabilities: { sampling: {} } });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updates.push(n.params.uri); });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logLevels.push(n.params.level); });
  client.setRequestHandler(CreateMessageRequestSchema, async () => CANNED);
  const opts = { timeout: TIMEOUT_MS };
  const facts = { stderr: () => stderr };

  await client.connect(transport, opts);
  record('initialize', { server: client.getServerVersion(), caps: client.getServerCapabilities() });
  const names = (r) => r.tools.map((t) => t.name).sort();
  record('tools/list', names(await client.listTools({}, opts)));
  await client.setLoggingLevel('error', opts);
  record('resources/subscribe', await client.subscribeResource({ uri: URI }, opts));

  facts.before = serverOf(transport.pid);
  facts.beforeTree = processTree(facts.before?.pid ?? -1);
  if (suspend) {
    // the idle server and its whole tree go; mcpmux and the client's pipes stay
    facts.suspended = await until(() => stillAlive(facts.beforeTree).length === 0, 15_000);
    facts.mcpmuxAlive = procStat(transport.pid) !== null;
  }
  record('tools/call echo', await client.callTool({ name: 'echo', arguments: { message: 'after the pause' } }, undefined, opts));
  facts.after = serverOf(transport.pid);
  record('tools/call get-sum', await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } }, undefined, opts));
  record('tools/list again', names(await client.listTools({}, opts)));
  record('resources/read', await client.readResource({ uri: URI }, opts));
  record('sampling', await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'p', maxTokens: 8 } }, undefined, opts));
  // updates for the subscription: toggled on, the first one is sent at once
  updates.length = 0;
  await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} }, undefined, opts);
  await until(() => updates.length > 0, 8_000);
  record('resource updates', [...new Set(updates)]);
  await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} }, undefined, opts);
  record('log levels below error delivered', logLevels.filter((l) => ['debug', 'info', 'notice', 'warning'].includes(l)));

  const tree = processTree(transport.pid);
  await client.close();
  facts.leftAfterClose = await until(() => stillAlive(tree).length === 0, 10_000) ? 0 : stillAlive(tree).length;
  return { steps, facts };
}

function events(logFile, name) {
  return fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.event === name);
}

async function main() {
  const mcpmux = path.resolve(process.argv[2] ?? '');
  if (!process.argv[2] || !fs.existsSync(mcpmux)) {
    console.error('usage: node suspend_interop.mjs MCPMUX_BINARY');
    process.exit(2);
  }
  if (!fs.existsSync(paths.everything)) {
    console.error(`server-everything is missing: run "npm ci" in ${path.dirname(paths.conformanceServer)}`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmux-suspend-'));
  const timer = setTimeout(() => { console.log('not ok global timeout\n0 passed, 1 failed'); process.exit(1); }, 120_000);
  let passed = 0;
  let failed = 0;
  const report = (name, problem) => {
    if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
  };
  const steady = await scenario(mcpmux, false, path.join(dir, 'steady.log'));
  const susp = await scenario(mcpmux, true, path.join(dir, 'suspended.log'));

  for (const s of steady.steps) {
    const t = susp.steps.find((x) => x.name === s.name);
    let problem = null;
    try {
      assert.deepStrictEqual(t?.value, s.value);
    } catch (e) {
      problem = `differs after the pause: ${String(e.message).split('\n').slice(0, 6).join(' | ').slice(0, 400)}`;
    }
    report(s.name, problem);
  }
  const f = susp.facts;
  report('the same results need something to compare', steady.steps.find((s) => s.name === 'resource updates')?.value?.[0] === URI ? null : 'no resource update in the steady run');
  report('no log message below the level set before the pause', susp.steps.find((s) => s.name === 'log levels below error delivered').value.length ? 'got some' : null);
  report('the idle server and its tree were ended', f.suspended ? null : `still alive: ${JSON.stringify(stillAlive(f.beforeTree))}`);
  report('mcpmux stayed meanwhile', f.mcpmuxAlive ? null : 'mcpmux is gone');
  report('a new server answered after the pause', f.after && f.before && f.after.pid !== f.before.pid ? null : `before ${f.before?.pid}, after ${f.after?.pid}`);
  const sus = events(path.join(dir, 'suspended.log'), 'suspended');
  const res = events(path.join(dir, 'suspended.log'), 'resumed');
  report('traffic log: one suspended, one resumed', sus.length === 1 && res.length === 1 && sus[0].reason === 'idle' ? null : `${sus.length} suspended, ${res.length} resumed`);
  if (res.length) console.log(`# resume took ${res[0].ms} ms (spawn of node + server-everything, handshake replayed)`);
  report('steady run: never suspended', events(path.join(dir, 'steady.log'), 'suspended').length ? 'it was' : null);
  report('nothing left after close', steady.facts.leftAfterClose + f.leftAfterClose ? `${steady.facts.leftAfterClose + f.leftAfterClose} process(es)` : null);
  if (failed) console.log(`# mcpmux stderr (suspended run):\n# ${f.stderr().trim().split('\n').slice(-10).join('\n# ')}`);
  clearTimeout(timer);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  const err = lastStderr().trim();
  console.log(`not ok harness: ${e?.stack ?? e}`);
  if (err) console.log(`# mcpmux stderr:\n# ${err.split('\n').slice(-10).join('\n# ')}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
