#!/usr/bin/env python3
"""What a suspend costs: resume latency against a cold start, and a suspended mcpmux's memory.

    bench/resume.py [--build DIR] [--reps R] [--everything]

For each server (the fixture; with --everything also the reference server-everything under
node), R interleaved repetitions of:

  cold     the server started directly: spawn, initialize, notifications/initialized,
           one tools/call; the time from spawn to the call's answer.
  resume   `mcpmux --idle-suspend 0.2 -- SERVER`, initialized and called once, then left
           until its server is gone; the time from the next tools/call to its answer (a
           fresh spawn, the handshake replayed, the call).
  warm     the same call on a running server, through mcpmux: what a call costs anyway.

It prints medians, resume/cold, and the RssAnon of each suspended mcpmux (the contract's
idle bound is 512 KiB).  Standard library only; binaries from the build directory (make
release).
"""

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class Peer:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.buf = b""

    def send(self, *msgs):
        self.p.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in msgs))
        self.p.stdin.flush()

    def answer(self, id_, seconds=30):
        end = time.monotonic() + seconds
        fd = self.p.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                m = json.loads(line)
                if m.get("id") == id_ and "method" not in m:
                    if "error" in m:
                        raise RuntimeError("error answer: %r" % m)
                    return m
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("no answer to %r" % id_)
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("EOF before the answer to %r" % id_)
            self.buf += chunk

    def close(self):
        self.p.stdin.close()
        self.p.wait(30)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def server_children(pid):
    """mcpmux's children but its keeper (which is not its child) and zombies."""
    out = []
    for c in children(pid):
        try:
            with open("/proc/%d/stat" % c) as f:
                st = f.read()
        except OSError:
            continue
        if st[st.rindex(")") + 2] not in "ZX":
            out.append(c)
    return out


def rss_anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def cold(server, call):
    t0 = time.monotonic()
    p = Peer(server)
    p.send(INIT)
    p.answer(1)
    p.send(INITIALIZED, call(2))
    p.answer(2)
    t = time.monotonic() - t0
    p.close()
    return t


def resume(mcpmux, server, call):
    p = Peer([mcpmux, "--idle-suspend", "0.2", "--"] + server)
    p.send(INIT)
    p.answer(1)
    p.send(INITIALIZED, call(2))
    p.answer(2)
    t0 = time.monotonic()
    p.send(call(3))
    p.answer(3)
    warm = time.monotonic() - t0
    end = time.monotonic() + 30
    while server_children(p.p.pid):
        if time.monotonic() > end:
            raise RuntimeError("the server was not suspended")
        time.sleep(0.01)
    rss = rss_anon_kib(p.p.pid)
    t0 = time.monotonic()
    p.send(call(4))
    p.answer(4)
    t = time.monotonic() - t0
    p.close()
    return t, warm, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--everything", action="store_true",
                    help="also server-everything (node, test/interop/node_modules)")
    args = ap.parse_args()
    mcpmux = os.path.join(args.build, "mcpmux")
    fixture = os.path.join(args.build, "fixtures", "mcp-fixture")
    servers = [("mcp-fixture", [fixture],
                lambda i: {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"text": "x"}}})]
    everything = os.path.join(ROOT, "test", "interop", "node_modules", "@modelcontextprotocol",
                              "server-everything", "dist", "index.js")
    if args.everything:
        node = shutil.which("node")
        if node is None or not os.path.exists(everything):
            sys.exit("bench/resume.py: --everything needs node and npm ci in test/interop")
        servers.append(("server-everything", [node, everything, "stdio"],
                        lambda i: {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                   "params": {"name": "echo",
                                              "arguments": {"message": "x"}}}))
    print("%-18s %10s %10s %10s %12s %14s" % ("SERVER", "COLD MS", "RESUME MS", "WARM MS",
                                             "RESUME/COLD", "SUSPENDED KiB"))
    for name, server, call in servers:
        c, r, w, m = [], [], [], []
        for _ in range(args.reps):
            c.append(cold(server, call))
            t, warm, rss = resume(mcpmux, server, call)
            r.append(t)
            w.append(warm)
            m.append(rss)
        mc, mr = statistics.median(c), statistics.median(r)
        print("%-18s %10.2f %10.2f %10.3f %11.2fx %14d" % (
            name, mc * 1e3, mr * 1e3, statistics.median(w) * 1e3, mr / mc, max(m)))


if __name__ == "__main__":
    main()
