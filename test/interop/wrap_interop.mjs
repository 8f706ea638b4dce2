#!/usr/bin/env node
// Interop test: the official MCP TypeScript SDK client talks to the reference
// server @modelcontextprotocol/server-everything (stdio mode), once DIRECTLY and
// once THROUGH a wrapper command (mcpmux), and the normalized results of every
// step must be identical.
//
// Usage: node wrap_interop.mjs MCPMUX_BINARY [serve]
//   serve: instead of wrapping, run `MCPMUX serve --listen SOCKET -- <server>` and
//   give the client `MCPMUX connect SOCKET` as its server command; closing the
//   client must end that session's server (the serve process itself stays up).
//   env INTEROP_DUMP=out.json: also write both runs' normalized step values
//   env INTEROP_TIMEOUT_MS=N: global timeout (default 60000)
//   The wrapper is started as:  MCPMUX_BINARY -- <node> <server-everything> stdio
//
// Output: one line per step, "ok <step>" or "not ok <step>: <diff summary>",
// then "N passed, M failed". Exit code 0 iff M == 0.
//
// The tool / prompt / resource names below were read from the installed
// server-everything (see package.json for the pinned version):
//   dist/tools/echo.js                            -> "echo" {message}
//   dist/tools/get-sum.js                         -> "get-sum" {a, b}
//   dist/tools/trigger-long-running-operation.js  -> "trigger-long-running-operation" {duration (s), steps}
//   dist/tools/trigger-sampling-request.js        -> "trigger-sampling-request" {prompt, maxTokens}
//                                                    (registered only after initialize, and only
//                                                    if the client declares the sampling capability)
//   dist/prompts/simple.js                        -> "simple-prompt" (no arguments)
//   dist/resources/files.js                       -> static docs "demo://resource/static/document/<file>"

import assert from 'node:assert';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const GLOBAL_TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS) || 60_000; // whole script
const REQUEST_TIMEOUT_MS = 20_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const serverPath = path.join(here, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');

const TOOL_ECHO = 'echo';
const TOOL_SUM = 'get-sum';
const TOOL_LONG = 'trigger-long-running-operation';
const TOOL_SAMPLING = 'trigger-sampling-request';
const PROMPT_SIMPLE = 'simple-prompt';
const STATIC_RESOURCE_URI = 'demo://resource/static/document/features.md';
const LONG_ARGS = { duration: 1, steps: 5 }; // 5 progress notifications, 200 ms apart

// The fixed answer our "LLM" gives to every sampling/createMessage request.
const CANNED_SAMPLING_RESULT = {
  model: 'interop-canned-model',
  role: 'assistant',
  stopReason: 'endTurn',
  content: { type: 'text', text: 'canned sampling answer 42' },
};

// ---------------------------------------------------------------------------
// Process bookkeeping (Linux /proc): used to check that no child process
// (the wrapper, or the server it started) outlives client.close().

function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the "(comm)" part; comm may contain spaces/parens.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0]=state, rest[1]=ppid, rest[19]=starttime
    return { state: rest[0], ppid: Number(rest[1]), start: rest[19] };
  } catch {
    return null;
  }
}

// All live descendants of `root` (including root), each as {pid, start} so a
// recycled pid is not mistaken for the same process later.
function processTree(root) {
  if (!fs.existsSync('/proc')) return [];
  const all = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(Number(d));
    if (st) all.push({ pid: Number(d), ...st });
  }
  const out = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift();
    const me = all.find((p) => p.pid === pid);
    if (!me || out.some((o) => o.pid === pid)) continue;
    out.push({ pid, start: me.start });
    for (const p of all) if (p.ppid === pid) queue.push(p.pid);
  }
  return out;
}

function stillAlive(procs) {
  // A zombie ('Z') has exited; it is only waiting to be reaped by its parent.
  return procs.filter((p) => {
    const st = procStat(p.pid);
    return st && st.start === p.start && st.state !== 'Z';
  });
}

let currentStep = 'startup'; // for the global-timeout message
const trackedProcs = []; // every process seen during any run (for the final cleanup)

// Record `root` and its current descendants; returns the newly seen ones.
function track(root) {
  const fresh = processTree(root).filter((p) => !trackedProcs.some((t) => t.pid === p.pid && t.start === p.start));
  trackedProcs.push(...fresh);
  return fresh;
}

// Last resort (global timeout, or leftovers already reported as a failure):
// SIGKILL everything we started that is still alive, including children that
// the tracked processes started since we last looked.
function killTracked() {
  for (const p of stillAlive(trackedProcs)) track(p.pid);
  for (const p of stillAlive(trackedProcs)) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

// ---------------------------------------------------------------------------
// Workaround for a client-side race in the SDK (typescript-sdk issue #2580):
// Protocol dispatches responses synchronously but notifications one microtask
// later, so when the last notifications/progress and the tools/call response
// arrive in the same read() chunk, the response retires the progress handler
// first and the notification is reported as "unknown token" and lost. Whether
// two messages share a chunk is a matter of timing (a proxy that forwards
// them in one write() makes it likelier), so without this the progress count
// would be flaky. We defer each response by one microtask, which restores
// arrival order: notifications queued before it are handled first. Nothing
// is dropped or reordered on the wire; only the in-process dispatch changes.
class OrderedStdioClientTransport extends StdioClientTransport {
  async start() {
    const deliver = this.onmessage; // installed by Protocol.connect() just before start()
    if (deliver) {
      this.onmessage = (message, extra) => {
        const isResponse = message && 'id' in message && !('method' in message);
        if (isResponse) queueMicrotask(() => deliver(message, extra));
        else deliver(message, extra);
      };
    }
    await super.start();
    // Track the child as soon as it exists, even if initialize never succeeds.
    if (this.pid) this.procs = track(this.pid);
  }

  // Called by Client.connect() with the negotiated protocol version (meant for
  // HTTP transports); we only record it so that it can be compared.
  setProtocolVersion(version) {
    this.negotiatedProtocolVersion = version;
  }
}

// ---------------------------------------------------------------------------
// Normalization. Each run yields, per step, a plain JSON value; before the two
// runs are compared, volatile data is removed here. For the steps of this
// scenario, server-everything returns deterministic data, so only these apply:
//
//  * JSON round-trip (toJSON): turns SDK objects into plain data and drops
//    `undefined` members, so that only what was on the wire is compared.
//  * Progress notifications: the SDK already strips `progressToken` before
//    calling onprogress (it is the client's own JSON-RPC request id, which a
//    proxy may renumber on the server side); we keep {progress,total,message}.
//    We compare the sequence of values, not their timing (arrival times depend
//    on the scheduler).
//  * Incoming sampling/createMessage requests: we record only `params`; the
//    JSON-RPC `id` of the server->client request is dropped because a proxy
//    may legitimately renumber requests it forwards; `_meta` is dropped as
//    well (transport-level metadata such as progress tokens/related-task ids).
//  * Errors: recorded as {error: <class name>, code, message}; stack traces
//    (paths, line numbers) are dropped.
//  * Process/timing data (pids, durations, stderr output) is never compared:
//    the wrapper adds its own process and may log on stderr.
//  * Resources and prompts whose content embeds a timestamp
//    (demo://resource/dynamic/..., resource-prompt) are deliberately not used.

function toJSON(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function errorValue(e) {
  return { error: e?.constructor?.name ?? 'Error', code: e?.code, message: String(e?.message ?? e) };
}

// ---------------------------------------------------------------------------
// The scenario. Returns an array of {step, value, check?}; `check(value)`
// returns a string describing what is wrong with a single run's value (sanity
// checks, so that two equally broken runs do not pass), or null.

async function runScenario(label, transportParams, serveRoot) {
  const results = [];
  const record = (step, value, check) => results.push({ step, value, check });
  const errors = [];
  const otherNotifications = [];
  const samplingRequests = [];

  const transport = new OrderedStdioClientTransport({ ...transportParams, stderr: 'pipe' });
  let stderrText = '';
  transport.stderr?.on('data', (d) => { stderrText += d.toString(); });

  const client = new Client(
    { name: 'mcpmux-interop-test', version: '1.0.0' },
    { capabilities: { sampling: {} } },
  );
  client.onerror = (e) => errors.push(String(e?.message ?? e));
  client.fallbackNotificationHandler = async (n) => { otherNotifications.push(n.method); };
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const { _meta, ...params } = request.params ?? {};
    samplingRequests.push(toJSON(params));
    return CANNED_SAMPLING_RESULT;
  });

  const opts = { timeout: REQUEST_TIMEOUT_MS };
  const step = async (name, fn, check) => {
    currentStep = `${label} run, step "${name}"`;
    let value;
    try {
      value = toJSON(await fn());
    } catch (e) {
      value = errorValue(e);
    }
    record(name, value, (v) => (v && v.error ? `${label}: ${v.error}: ${v.message}` : check ? check(v) : null));
  };

  await step('initialize', async () => {
    await client.connect(transport, opts);
    return {
      protocolVersion: transport.negotiatedProtocolVersion,
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      instructions: client.getInstructions(),
    };
  }, (v) => (v.serverInfo?.name && v.protocolVersion ? null : `${label}: no serverInfo/protocolVersion`));

  const connected = !results[0].value?.error;
  if (connected) {
    await step('tools/list', () => client.listTools({}, opts), (v) => {
      const names = v.tools.map((t) => t.name);
      const missing = [TOOL_ECHO, TOOL_SUM, TOOL_LONG, TOOL_SAMPLING].filter((n) => !names.includes(n));
      return missing.length ? `${label}: tools missing: ${missing.join(', ')}` : null;
    });
    await step('resources/list', () => client.listResources({}, opts), (v) =>
      v.resources.some((r) => r.uri === STATIC_RESOURCE_URI) ? null : `${label}: ${STATIC_RESOURCE_URI} not listed`);
    await step('resources/templates/list', () => client.listResourceTemplates({}, opts), (v) =>
      v.resourceTemplates.length ? null : `${label}: no templates`);
    await step('prompts/list', () => client.listPrompts({}, opts), (v) =>
      v.prompts.some((p) => p.name === PROMPT_SIMPLE) ? null : `${label}: ${PROMPT_SIMPLE} not listed`);

    await step(`tools/call ${TOOL_ECHO}`, () =>
      client.callTool({ name: TOOL_ECHO, arguments: { message: 'hello through the pipe ✓ "quoted"\n' } }, undefined, opts),
    (v) => (v.isError ? `${label}: isError` : null));
    await step(`tools/call ${TOOL_SUM}`, () =>
      client.callTool({ name: TOOL_SUM, arguments: { a: 19, b: 23 } }, undefined, opts),
    (v) => (JSON.stringify(v).includes('is 42') ? null : `${label}: unexpected sum result`));

    await step('resources/read', () => client.readResource({ uri: STATIC_RESOURCE_URI }, opts), (v) =>
      v.contents?.[0]?.text?.length ? null : `${label}: empty resource`);
    await step(`prompts/get ${PROMPT_SIMPLE}`, () => client.getPrompt({ name: PROMPT_SIMPLE }, opts), (v) =>
      v.messages?.length ? null : `${label}: no messages`);

    await step(`progress ${TOOL_LONG}`, async () => {
      const progress = [];
      const result = await client.callTool(
        { name: TOOL_LONG, arguments: LONG_ARGS },
        undefined,
        { ...opts, onprogress: (p) => progress.push(toJSON(p)) },
      );
      return { progressCount: progress.length, progress, result };
    }, (v) => (v.progressCount === LONG_ARGS.steps
      ? null
      : `${label}: ${v.progressCount} progress notifications, expected ${LONG_ARGS.steps}`));

    await step(`sampling ${TOOL_SAMPLING}`, async () => {
      const before = samplingRequests.length;
      const result = await client.callTool(
        { name: TOOL_SAMPLING, arguments: { prompt: 'say the magic number', maxTokens: 16 } },
        undefined,
        opts,
      );
      return { samplingRequests: samplingRequests.slice(before), result };
    }, (v) => {
      if (v.samplingRequests.length !== 1) return `${label}: ${v.samplingRequests.length} sampling requests seen`;
      return JSON.stringify(v.result).includes(CANNED_SAMPLING_RESULT.content.text)
        ? null
        : `${label}: canned sampling answer not in tool result`;
    });
  }

  // close: the SDK ends the child's stdin, then SIGTERM/SIGKILL after 2 s each.
  // Afterwards no process started for this run (the child and, for the wrapped
  // run, everything it spawned) may remain; we allow 3 s more for exit.
  await step('close', async () => {
    // Refresh the list: the wrapper's own children exist by now.
    const procs = transport.procs ?? [];
    if (transport.pid) procs.push(...track(transport.pid));
    const serverProcs = serveRoot ? processTree(serveRoot).filter((p) => p.pid !== serveRoot) : [];
    if (serveRoot) track(serveRoot);
    await client.close();
    const deadline = Date.now() + 3000;
    let left = stillAlive(procs);
    while (left.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      left = stillAlive(procs);
    }
    // Through a serve: the session's server is a child of the serve process.
    if (serveRoot && serverProcs.length === 0) throw new Error('no server process under the serve');
    let serverLeft = stillAlive(serverProcs);
    while (serverLeft.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      serverLeft = stillAlive(serverLeft);
    }
    return { leftoverProcesses: left.length + serverLeft.length };
  }, (v) => (v.leftoverProcesses ? `${label}: ${v.leftoverProcesses} process(es) still running after close` : null));

  // Notifications the client got besides progress (e.g. list_changed), and
  // transport/protocol errors reported through client.onerror.
  record('notifications', otherNotifications);
  record('client errors', errors, (v) => (v.length ? `${label}: ${v.join('; ')}` : null));

  return { results, stderrText };
}

// ---------------------------------------------------------------------------

function diffSummary(a, b) {
  try {
    assert.deepStrictEqual(b, a);
    return null;
  } catch (e) {
    const lines = String(e.message).split('\n')
      .filter((l) => /^[+-] /.test(l) || /^[+-]\s/.test(l))
      .map((l) => l.trim());
    let s = lines.slice(0, 6).join(' | ') || String(e.message).split('\n')[0];
    if (s.length > 300) s = s.slice(0, 297) + '...';
    return `direct/wrapped differ (- direct, + wrapped): ${s}`;
  }
}

async function main() {
  const wrapper = process.argv[2];
  if (!wrapper) {
    console.error('usage: node wrap_interop.mjs MCPMUX_BINARY');
    process.exit(2);
  }
  if (!fs.existsSync(serverPath)) {
    console.error(`server-everything not found at ${serverPath}; run "npm ci" in ${here}`);
    process.exit(2);
  }

  let passed = 0;
  let failed = 0;
  const report = (name, problem) => {
    if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
  };

  const timer = setTimeout(() => {
    report('global timeout', `scenario did not finish within ${GLOBAL_TIMEOUT_MS / 1000} s (stuck in ${currentStep})`);
    console.log(`${passed} passed, ${failed} failed`);
    killTracked();
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  // Both runs get our full environment (the SDK would otherwise pass only a
  // few variables such as PATH and HOME), so a wrapper can be configured
  // through environment variables; the server sees the same in both runs.
  const env = { ...process.env };
  const direct = await runScenario('direct', { command: process.execPath, args: [serverPath, 'stdio'], env });
  let wrapped;
  if (process.argv[3] === 'serve') {
    const { spawn } = await import('node:child_process');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmux-interop-'));
    const sock = path.join(dir, 'serve.sock');
    const serve = spawn(path.resolve(wrapper), ['serve', '--listen', sock, '--', process.execPath, serverPath, 'stdio'],
      { env, stdio: ['ignore', 'ignore', 'inherit'] });
    track(serve.pid);
    const until = Date.now() + 10_000;
    while (!fs.existsSync(sock) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    wrapped = await runScenario('wrapped', { command: path.resolve(wrapper), args: ['connect', sock], env }, serve.pid);
    const exited = new Promise((r) => serve.once('exit', (code, sig) => r({ code, sig })));
    serve.kill('SIGTERM');
    const st = await exited;
    report('serve exits 0 on SIGTERM', st.code === 0 ? null : `exit ${st.code} ${st.sig ?? ''}`);
    fs.rmSync(dir, { recursive: true, force: true });
  } else {
    wrapped = await runScenario('wrapped', {
      command: path.resolve(wrapper),
      args: ['--', process.execPath, serverPath, 'stdio'],
      env,
    });
  }

  // INTEROP_DUMP=file.json writes both runs' normalized values, for debugging.
  if (process.env.INTEROP_DUMP) {
    const dump = (r) => Object.fromEntries(r.results.map((x) => [x.step, x.value]));
    fs.writeFileSync(process.env.INTEROP_DUMP, JSON.stringify({ direct: dump(direct), wrapped: dump(wrapped) }, null, 2));
  }

  const names = [...new Set([...direct.results, ...wrapped.results].map((r) => r.step))];
  for (const name of names) {
    const d = direct.results.find((r) => r.step === name);
    const w = wrapped.results.find((r) => r.step === name);
    if (!d || !w) {
      report(name, `not run in the ${d ? 'wrapped' : 'direct'} run (an earlier step failed)`);
      continue;
    }
    const problem = d.check?.(d.value) ?? w.check?.(w.value) ?? diffSummary(d.value, w.value);
    report(name, problem);
  }

  clearTimeout(timer);
  if (failed) {
    for (const [label, r] of [['direct', direct], ['wrapped', wrapped]]) {
      const tail = r.stderrText.trim().split('\n').slice(-10).join('\n# ');
      if (tail) console.log(`# ${label} stderr (last lines):\n# ${tail}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  killTracked();
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`not ok harness: ${e?.stack ?? e}`);
  console.log('0 passed, 1 failed');
  killTracked();
  process.exit(1);
});
