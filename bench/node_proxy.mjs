#!/usr/bin/env node
// node_proxy: the SDK-based Node proxy baseline.  The official MCP TypeScript SDK's
// StdioServerTransport (our stdin/stdout) and StdioClientTransport (a spawned COMMAND)
// piped together: every message is parsed (JSON.parse + the SDK's schema) and
// re-serialised in each direction, which is what a proxy written on the SDK does.
//
//   node bench/node_proxy.mjs -- COMMAND [ARG...]
//
// The SDK is the one pinned by test/interop/package.json and its lockfile (installed
// there by `npm ci`, which `make deps` runs), so the benchmarks need no second copy.
// Stdin EOF closes the command's stdin (the SDK's close: EOF, 2 s, SIGTERM, 2 s,
// SIGKILL); the proxy exits when the command has exited.

import { createRequire } from 'node:module';
import events from 'node:events';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

// The SDK adds a 'drain' listener per message sent while a pipe is full.
events.defaultMaxListeners = 0;

const sdkHome = new URL('../test/interop/package.json', import.meta.url);
const require = createRequire(sdkHome);

async function load(spec) {
  let file;
  try {
    file = require.resolve(spec);
  } catch {
    process.stderr.write(`node_proxy: cannot find ${spec}: run 'npm ci' in test/interop ` +
                         `(make deps does it)\n`);
    process.exit(1);
  }
  return import(pathToFileURL(file).href);
}

const { StdioServerTransport } = await load('@modelcontextprotocol/sdk/server/stdio.js');
const { StdioClientTransport } = await load('@modelcontextprotocol/sdk/client/stdio.js');

const argv = process.argv.slice(2);
if (argv[0] === '--') argv.shift();
if (argv.length === 0) {
  process.stderr.write('usage: node node_proxy.mjs -- COMMAND [ARG...]\n');
  process.exit(2);
}

const client = new StdioClientTransport({
  command: argv[0],
  args: argv.slice(1),
  env: process.env,
  stderr: 'inherit',
});
const server = new StdioServerTransport();

const fail = (what) => (err) => process.stderr.write(`node_proxy: ${what}: ${err?.message ?? err}\n`);
client.onerror = fail('server side');
server.onerror = fail('client side');
server.onmessage = (msg) => { client.send(msg).catch(fail('to the server')); };
client.onmessage = (msg) => { server.send(msg).catch(fail('to the client')); };
client.onclose = () => {
  // The command exited: flush what is queued for our client, then go.
  process.stdout.end(() => process.exit(0));
};
process.stdin.on('end', () => { client.close().catch(fail('close')); });

await client.start();
await server.start();
