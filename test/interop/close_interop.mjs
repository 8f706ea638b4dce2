#!/usr/bin/env node
// Interop test: the official MCP TypeScript SDK's StdioClientTransport.close() in front of
// `mcpmux -- mcp-fixture ...`, with a server that misbehaves at its end.  close() ends the
// child's stdin, waits 2 s for it to exit, sends SIGTERM, waits 2 s more, sends SIGKILL
// and returns (node_modules/@modelcontextprotocol/sdk/dist/esm/client/stdio.js).  What is
// checked is what a user of the SDK is left with: how long close() took, how mcpmux
// ended (its own exit, or the SDK's SIGKILL), what it said, the traffic log, and the
// processes of the tree still alive afterwards.
//
// Usage: node close_interop.mjs MCPMUX_BINARY MCP_FIXTURE_BINARY
//
// Scenarios:
//   huge answer in flight: a 50 MB answer the client no longer reads when it closes
//     (its stdout paused from the call on; the SDK itself goes on reading while it
//     closes, and on a fast machine reads all 50 MB before its SIGTERM, which mcpmux then
//     rightly ends as the server does, with 0).  mcpmux must exit by itself with
//     128 + SIGTERM (143), not the server's status (0), before the SDK's SIGKILL, saying
//     what the client did not read, as the server run directly dies of the SIGTERM.
//     (The SDK starts its child on socketpairs, node's child_process on libuv, not
//     pipes: mcpmux's whole lines after a signal, for a pipe, do not apply.)
//   requests in flight: three calls still running when the client closes; each gets its
//     -32000 error, mcpmux exits with the server's status (143: SIGTERM after the EOF
//     grace), before the SDK's SIGKILL.
//   ignores SIGTERM, daemonised grandchild: the SDK's SIGKILL ends mcpmux as its teardown
//     SIGKILLs the tree (either may come first); if mcpmux goes first, the server dies of
//     its parent-death signal and the keeper ends the grandchild within --term-grace.
//     Nothing carrying the run's tag is left 2 s + 1 s after close() returns.
// In every scenario the traffic log must be whole JSON lines.
//
// Output: "ok <scenario>: <check>" / "not ok ...", then "N passed, M failed"; exit 1 if
// anything failed.  Every process started carries a tag and is SIGKILLed at the end.

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { TIMEOUT_MULTIPLIER, procsWithEnv, sleep, until } from './harness.mjs';

const TAG = 'MCPMUX_CLOSE_INTEROP_TAG';
const SDK_SIGKILL_MS = 4000; // the SDK's 2 s to SIGTERM and 2 s more to SIGKILL
const GLOBAL_TIMEOUT_MS = 90_000 * TIMEOUT_MULTIPLIER;

const [mcpmux, fixture] = process.argv.slice(2).map((p) => p && path.resolve(p));
if (!mcpmux || !fixture) {
  console.error('usage: node close_interop.mjs MCPMUX_BINARY MCP_FIXTURE_BINARY');
  process.exit(2);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmux-close-interop-'));
const tags = [];

let passed = 0;
let failed = 0;
function report(name, problem) {
  if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
}

function killTagged() {
  for (const tag of tags) {
    for (const p of procsWithEnv(TAG, tag)) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

// Starts mcpmux through the SDK, lets `before` put something in flight, closes, and
// returns what a user is left with.
async function scenario(name, fixtureArgs, before) {
  const tag = crypto.randomBytes(8).toString('hex');
  tags.push(tag);
  const log = path.join(dir, `${tag}.jsonl`);
  const transport = new StdioClientTransport({
    command: mcpmux,
    args: ['--log', log, '--log-bodies', '200', '--', fixture, ...fixtureArgs],
    env: { ...process.env, [TAG]: tag },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr.on('data', (d) => { stderr += d; });
  const client = new Client({ name: 'close-interop', version: '1.0.0' }, { capabilities: {} });
  client.onerror = () => { /* the SDK's own complaints (a 50 MB line) are not checked */ };
  await client.connect(transport);
  const child = transport._process;
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const pending = (await before(client, child)).map((p) => p.then(() => 'answered', (e) => `${e.code ?? ''} ${e.message}`));
  const t0 = Date.now();
  await client.close();
  const closeMs = Date.now() - t0;
  const exit = await Promise.race([exited, sleep(2000 * TIMEOUT_MULTIPLIER).then(() => null)]);
  const settled = await Promise.all(pending.map((p) => Promise.race([p, sleep(1000).then(() => 'no answer')])));
  return { name, tag, log, stderr, closeMs, exit, settled };
}

function logIsWhole(r) {
  const text = fs.existsSync(r.log) ? fs.readFileSync(r.log, 'utf8') : '';
  if (!text.endsWith('\n')) return 'the traffic log does not end with a whole line';
  for (const line of text.trimEnd().split('\n')) {
    try { JSON.parse(line); } catch { return `a traffic log line is not JSON: ${line.slice(0, 80)}`; }
  }
  const started = text.includes('"event":"started"');
  return started ? null : 'no "started" in the traffic log';
}

async function leftAfter(r, ms) {
  await until(() => procsWithEnv(TAG, r.tag).length === 0, ms);
  const left = procsWithEnv(TAG, r.tag);
  return left.length ? `${left.length} process(es) of the run alive ${ms} ms after close(): ${left.map((p) => p.pid).join(' ')}` : null;
}

async function main() {
  const timer = setTimeout(() => {
    report('global timeout', `not done within ${GLOBAL_TIMEOUT_MS / 1000} s`);
    console.log(`${passed} passed, ${failed} failed`);
    killTagged();
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  // A 50 MB answer in flight, unread, when the client closes.
  let r = await scenario('huge answer in flight', [], async (client, child) => {
    child.stdout.pause(); // the client reads no more: node stops reading the socket
    // once mcpmux is gone, what it left unread is dropped, as a closed client's would be
    child.once('exit', () => child.stdout.destroy());
    const p = client.callTool({ name: 'huge', arguments: { bytes: 50_000_000 } });
    await sleep(300); // the answer is on its way
    return [p];
  });
  report(`${r.name}: mcpmux exits by itself with 143, answers dropped`,
    r.exit && r.exit.code === 143 ? null : `exit ${JSON.stringify(r.exit)} after close() took ${r.closeMs} ms`);
  report(`${r.name}: close() returns before the SDK's SIGKILL`,
    r.closeMs < SDK_SIGKILL_MS ? null : `close() took ${r.closeMs} ms`);
  report(`${r.name}: mcpmux says what the client did not read`,
    /Terminated: the client did not read its last \d+ bytes/.test(r.stderr) ? null : `stderr: ${r.stderr.slice(-300)}`);
  report(`${r.name}: traffic log`, logIsWhole(r));
  report(`${r.name}: nothing left`, await leftAfter(r, 3000 * TIMEOUT_MULTIPLIER));

  // Three calls running when the client closes.
  r = await scenario('requests in flight', [], async (client) => {
    const ps = [1, 2, 3].map(() => client.callTool({ name: 'sleep', arguments: { ms: 30_000 } }, undefined, { timeout: 60_000 }));
    await sleep(300); // the three are with the server
    return ps;
  });
  report(`${r.name}: each call gets its -32000 error`,
    r.settled.every((s) => s.startsWith('-32000 ')) ? null : JSON.stringify(r.settled));
  report(`${r.name}: mcpmux exits with the server's status`,
    r.exit && r.exit.code === 143 ? null : `exit ${JSON.stringify(r.exit)}`);
  report(`${r.name}: close() returns before the SDK's SIGKILL`,
    r.closeMs < SDK_SIGKILL_MS ? null : `close() took ${r.closeMs} ms`);
  report(`${r.name}: traffic log`, logIsWhole(r));
  report(`${r.name}: nothing left`, await leftAfter(r, 3000 * TIMEOUT_MULTIPLIER));

  // A server that ignores SIGTERM and its EOF, with a daemonised grandchild.
  r = await scenario('ignores SIGTERM, daemonised grandchild',
    ['--ignore-sigterm', '--ignore-eof', '--daemonize-grandchild'], async () => []);
  // (its teardown would SIGKILL the tree as the SDK SIGKILLs mcpmux: either may come first)
  report(`${r.name}: mcpmux is gone when close() returns`,
    r.exit ? null : `still running 2 s after close() returned (${r.closeMs} ms)`);
  report(`${r.name}: traffic log`, logIsWhole(r));
  // the keeper: SIGTERM, then SIGKILL after --term-grace (2 s)
  report(`${r.name}: nothing left`, await leftAfter(r, 3000 * TIMEOUT_MULTIPLIER));

  clearTimeout(timer);
  console.log(`${passed} passed, ${failed} failed`);
  killTagged();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`not ok harness: ${e?.stack ?? e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  killTagged();
  process.exit(1);
});
