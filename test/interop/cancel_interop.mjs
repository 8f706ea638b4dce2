#!/usr/bin/env node
// Interop over Streamable HTTP: what the official MCP TypeScript SDK client does
// with a request stream that ends without a result, against
// `mcpmux serve --http PORT -- node server-everything stdio`.
//
// The SDK (1.32.2) resumes a POST's stream that ends before it read a result
// (a stream that had a priming event, as mcpmux sends for 2025-11-25) with a
// GET carrying Last-Event-ID, after the stream's `retry`; it reports on
// onerror, and tries twice more, when that GET is refused; and it resumes a
// resumed stream that ends again, for as long as the server answers 200.  Two
// such streams, each while the session's GET stream is open:
//
//   cancel  a call cancelled with an AbortSignal (the SDK sends
//           notifications/cancelled, and mcpmux ends the call's stream): the
//           resume is answered 204 (the stream is over: SSE's "do not
//           reconnect"), not 409 for the open GET stream;
//   error   a request answered with a JSON-RPC error (the SDK counts only a
//           result as the response): the resume finds the finished stream
//           with nothing left after the client's event, and gets 204, not an
//           empty stream that the SDK would resume again every second.
//
// Then a call still works, and onerror reported nothing but the progress
// server-everything goes on sending for the cancelled call: the SDK reports
// each as one for an unknown token.  mcpmux passes them on, as a direct
// connection does: the same cancellation against server-everything's own
// Streamable HTTP mode (the SDK's server transport) gets the same report there
// (its transport keeps the cancelled call's stream open, the server never
// answering it, and sends the progress on it).
//
// usage: node cancel_interop.mjs --mcpmux PATH
// Output: "ok STEP" / "not ok STEP: why" lines, then "N passed, M failed";
// exit 0 iff M == 0; 77 (skipped) when PATH has no --http.

import fs from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import {
  Endpoint, finish, killTag, mcpmuxHasHttp, parseEndpoint, paths, runMain, skip, until,
  TIMEOUT_MULTIPLIER,
} from './harness.mjs';

const GLOBAL_TIMEOUT_MS = 60_000 * TIMEOUT_MULTIPLIER; // under ctest's 120 s
const REQUEST_TIMEOUT_MS = 20_000 * TIMEOUT_MULTIPLIER;
// The stream's retry is 1 s; the SDK's resume comes then.
const RESUME_WITHIN_MS = 10_000 * TIMEOUT_MULTIPLIER;

let passed = 0;
let failed = 0;
const UNKNOWN_TOKEN = /progress notification for an unknown token/;
const report = (name, problem) => {
  if (problem) { failed++; console.log(`not ok ${name}: ${problem}`); } else { passed++; console.log(`ok ${name}`); }
};

// A long-running call of server-everything's, aborted once its first progress came:
// 'aborted', or how it ended otherwise.
async function cancelLongCall(client, opts) {
  const ac = new AbortController();
  let progressed;
  const firstProgress = new Promise((resolve) => { progressed = resolve; });
  const call = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
    undefined, { ...opts, signal: ac.signal, onprogress: () => progressed() });
  const cancelled = call.then(() => 'answered', (e) => (ac.signal.aborted ? 'aborted' : `failed: ${e?.message ?? e}`));
  await Promise.race([firstProgress, call.catch(() => {})]);
  ac.abort('enough');
  return cancelled;
}

async function main() {
  const { spec } = parseEndpoint(process.argv.slice(2));
  if (spec?.kind !== 'mcpmux') {
    console.error('usage: node cancel_interop.mjs --mcpmux PATH');
    process.exit(2);
  }
  if (!fs.existsSync(paths.everything)) {
    console.error(`server-everything not found at ${paths.everything}; run "npm ci" in test/interop`);
    process.exit(2);
  }
  if (!mcpmuxHasHttp(spec.mcpmux)) skip(`${spec.mcpmux} has no Streamable HTTP front end`);

  const eut = new Endpoint(spec);
  const ref = new Endpoint({ kind: 'everything-http' }); // the reference, at the end
  const timer = setTimeout(() => {
    report('global timeout', `not finished within ${GLOBAL_TIMEOUT_MS / 1000} s`);
    console.log(`${passed} passed, ${failed} failed`);
    killTag(eut.tag);
    killTag(ref.tag);
    process.exit(1);
  }, GLOBAL_TIMEOUT_MS);

  const requests = []; // {method, lastEventId, status}
  const errors = [];
  let unknownTokens = 0;
  let client;
  try {
    await eut.start();
    const fetchLogged = async (input, init = {}) => {
      const headers = new Headers(init.headers);
      const entry = { method: init.method ?? 'GET', lastEventId: headers.get('last-event-id'), status: null };
      requests.push(entry);
      const res = await fetch(input, init);
      entry.status = res.status;
      return res;
    };
    const transport = new StreamableHTTPClientTransport(new URL(eut.url), { fetch: fetchLogged });
    client = new Client({ name: 'mcpmux-cancel-interop', version: '1.0.0' }, { capabilities: {} });
    // server-everything's long-running operation goes on after a cancellation, and
    // the SDK reports its progress for a token it no longer knows: the server's doing
    // (the reference below shows it directly).
    client.onerror = (e) => {
      const msg = String(e?.message ?? e);
      if (UNKNOWN_TOKEN.test(msg)) unknownTokens++;
      else errors.push(msg);
    };
    const opts = { timeout: REQUEST_TIMEOUT_MS };
    await client.connect(transport, opts);
    // The session's GET stream, which the SDK opens after initialization.
    const getOpen = await until(() => requests.some((r) => r.method === 'GET' && !r.lastEventId && r.status === 200), RESUME_WITHIN_MS);
    report('the GET stream is open', getOpen ? null : `no GET stream within ${RESUME_WITHIN_MS} ms: ${JSON.stringify(requests)}`);

    // The first resume (a GET with Last-Event-ID) made after n0 requests of a stream
    // other than `other`'s, once answered.
    const streamOf = (r) => r?.lastEventId?.split(':')[0];
    const resumeAfter = async (n0, other) => until(() => requests.slice(n0).find((r) =>
      r.lastEventId && r.status !== null && streamOf(r) !== streamOf(other)), RESUME_WITHIN_MS);

    // cancel: abort a long-running call once its first progress came.
    let n0 = requests.length;
    const how = await cancelLongCall(client, opts);
    report('cancel: the call is aborted', how === 'aborted' ? null : how);
    let resume = await resumeAfter(n0);
    report('cancel: the SDK resumes the ended stream, answered 204',
      resume?.status === 204 ? null : resume ? `answered ${resume.status} (Last-Event-ID ${resume.lastEventId})` : `no resume within ${RESUME_WITHIN_MS} ms`);

    // error: a request answered with a JSON-RPC error.
    n0 = requests.length;
    const got = await client.getPrompt({ name: 'no-such-prompt' }, opts).then(() => 'answered', (e) => `error ${e?.code}`);
    report('error: the request gets its error', /^error -?\d+$/.test(got) ? null : got);
    resume = await resumeAfter(n0, resume);
    report('error: the SDK resumes the finished stream, answered 204',
      resume?.status === 204 ? null : resume ? `answered ${resume.status} (Last-Event-ID ${resume.lastEventId})` : `no resume within ${RESUME_WITHIN_MS} ms`);

    const echo = await client.callTool({ name: 'echo', arguments: { message: 'still here' } }, undefined, opts)
      .then((r) => JSON.stringify(r), (e) => `failed: ${e?.message ?? e}`);
    report('a call after them', echo.includes('still here') ? null : echo);
    report('no client errors', errors.length ? errors.join('; ') : null);
    // One a second comes until the 30 s operation ends: the first within about 1 s.
    const passedOn = await until(() => unknownTokens > 0, RESUME_WITHIN_MS);
    report('cancel: the progress sent after the cancellation is passed on, as by a direct connection',
      passedOn ? null : `no progress for the cancelled call within ${RESUME_WITHIN_MS} ms`);
    await transport.terminateSession();
    await client.close();
  } catch (e) {
    report('harness', e?.stack ?? String(e));
  } finally {
    const st = await eut.stop();
    if (st.leftovers?.length) report('endpoint stopped clean', `${st.leftovers.length} process(es) outlived it`);
  }

  // The reference: the same cancellation, without mcpmux.
  try {
    await ref.start();
    const transport = new StreamableHTTPClientTransport(new URL(ref.url));
    client = new Client({ name: 'mcpmux-cancel-interop', version: '1.0.0' }, { capabilities: {} });
    let refUnknown = 0;
    client.onerror = (e) => { if (UNKNOWN_TOKEN.test(String(e?.message ?? e))) refUnknown++; };
    const opts = { timeout: REQUEST_TIMEOUT_MS };
    await client.connect(transport, opts);
    const how = await cancelLongCall(client, opts);
    const seen = how === 'aborted' && await until(() => refUnknown > 0, RESUME_WITHIN_MS);
    report('reference: directly, the SDK reports the progress after the cancellation for an unknown token too',
      seen ? null : how !== 'aborted' ? how : `no such report within ${RESUME_WITHIN_MS} ms`);
    await transport.terminateSession();
    await client.close();
  } catch (e) {
    report('reference harness', e?.stack ?? String(e));
  } finally {
    const st = await ref.stop();
    if (st.leftovers?.length) report('reference stopped clean', `${st.leftovers.length} process(es) outlived it`);
  }
  clearTimeout(timer);
  finish(passed, failed, eut);
}

runMain(main);
