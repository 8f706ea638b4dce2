#!/usr/bin/env python3
"""
http_scale: session scale through one `mcpmux serve --http`, the HTTP door's
counterpart of bench/sessions.c (the envelope door).

  http_scale.py [--n N] [--get] [--idle-ms MS] [--clients K] -- MCPMUX serve [OPTIONS] -- BACKEND...

1. Starts the serve command with `--http 127.0.0.1:0` added, reads its port from
   stderr, and reads its memory (RssAnon, Pss_Anon) with no session.
2. Opens N sessions from K client threads over keep-alive connections: initialize
   (answered as SSE), notifications/initialized (202), and with --get a GET stream per
   session that stays open; times until all N have answered.
3. Leaves them idle for MS milliseconds (default 1000) and reads mcpmux's memory again:
   the memory per idle session (with --get, its open stream and connection included).
4. DELETEs them all at once, on a connection each (connected before the clock starts),
   and times until the last is answered (each answer waits for its server's tree to be
   gone): the counterpart of ending N envelope sessions at once.

Prints one JSON line.  Standard library only.
"""

import argparse
import http.client
import json
import os
import re
import select
import selectors
import socket
import subprocess
import sys
import threading
import time

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"}}})
INITIALIZED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
HEADERS = {"Content-Type": "application/json",
           "Accept": "application/json, text/event-stream"}


def kib(pid, fname, key):
    with open("/proc/%d/%s" % (pid, fname)) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def memory(pid):
    return kib(pid, "status", "RssAnon:"), kib(pid, "smaps_rollup", "Pss_Anon:")


def post(conn, body, sid=None):
    h = dict(HEADERS)
    if sid:
        h["Mcp-Session-Id"] = sid
    conn.request("POST", "/mcp", body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 202):
        raise RuntimeError("POST answered %d: %r" % (r.status, data[:200]))
    return r, data


def run_threads(k, fn, n):
    """fn(conn, i) for i in range(n), spread over k threads with a connection each."""
    errors = []
    nxt = [0]
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= n:
                    return
                fn(conn, i)
        except Exception as e:  # noqa: BLE001 (reported)
            errors.append(repr(e))
        finally:
            conn.close()
    threads = [threading.Thread(target=worker) for _ in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])


def main():
    global PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--get", action="store_true", help="hold a GET stream per session")
    ap.add_argument("--idle-ms", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if "serve" not in cmd or "--" not in cmd:
        ap.error("give: -- MCPMUX serve [OPTIONS] -- BACKEND...")
    at = cmd.index("--")
    cmd = cmd[:at] + ["--http", "127.0.0.1:0"] + cmd[at:]
    mux = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    err = b""
    deadline = time.monotonic() + 10
    while not re.search(rb"on port (\d+)", err):
        r, _, _ = select.select([mux.stderr], [], [], max(deadline - time.monotonic(), 0))
        if not r:
            mux.kill()
            sys.exit("mcpmux did not listen: %r" % err)
        err += os.read(mux.stderr.fileno(), 4096)
    PORT = int(re.search(rb"on port (\d+)", err).group(1))
    threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(
        mux.stderr.fileno(), 65536), b"")], daemon=True).start()
    time.sleep(0.2)
    rss0, pss0 = memory(mux.pid)

    sids = [None] * a.n
    t0 = time.monotonic()

    def start(conn, i):
        r, _ = post(conn, INIT)
        sids[i] = r.getheader("Mcp-Session-Id")
        post(conn, INITIALIZED, sids[i])
    run_threads(a.clients, start, a.n)
    t1 = time.monotonic()
    streams = []
    if a.get:
        for sid in sids:
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                       "Mcp-Session-Id: %s\r\n\r\n" % sid).encode())
            streams.append(s)
        for s in streams:
            s.settimeout(10)
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise RuntimeError("a GET stream was refused")
    time.sleep(a.idle_ms / 1000)
    rss1, pss1 = memory(mux.pid)

    # All DELETEs at once, one connection each (as N clients would end their runs),
    # connected first so that only the ends are timed.
    conns = [socket.create_connection(("127.0.0.1", PORT)) for _ in sids]
    sel = selectors.DefaultSelector()
    got = {}
    t2 = time.monotonic()
    for c, sid in zip(conns, sids):
        c.sendall(("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: %s\r\n"
                   "Connection: close\r\n\r\n" % sid).encode())
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        got[c] = b""
    left = len(conns)
    while left > 0:
        ev = sel.select(60)
        if not ev:
            raise RuntimeError("DELETEs not answered within 60 s")
        for key, _ in ev:
            data = key.fileobj.recv(65536)
            got[key.fileobj] += data
            if not data:
                sel.unregister(key.fileobj)
                left -= 1
    t3 = time.monotonic()
    bad = [g for g in got.values() if not g.startswith(b"HTTP/1.1 200")]
    for c in conns:
        c.close()
    for s in streams:
        s.close()
    mux.terminate()
    code = mux.wait(30)
    print(json.dumps({
        "tool": "http_scale", "n": a.n, "get_streams": a.get, "clients": a.clients,
        "start_s": round(t1 - t0, 4), "start_per_s": round(a.n / (t1 - t0), 1),
        "rss_anon_kib_before": rss0, "rss_anon_kib_idle": rss1,
        "rss_per_session_b": round((rss1 - rss0) * 1024 / a.n),
        "pss_anon_per_session_b": round((pss1 - pss0) * 1024 / a.n),
        "delete_all_ms": round((t3 - t2) * 1000, 2), "deletes_not_200": len(bad),
        "exit": code}))


if __name__ == "__main__":
    main()
