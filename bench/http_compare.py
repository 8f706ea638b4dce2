#!/usr/bin/env python3
"""
http_compare: measure keep-alive HTTP echo servers against each other on loopback.

For each server (a command line that takes the port as its last argument), interleaved
over ROUNDS rounds (the order rotated each round):
  - wrk, 1 KiB POST, keep-alive: requests/s and latency p50/p99, at 32 connections
    (saturated) and at 1 connection (unloaded latency); the server pinned to CPU 0 and
    wrk to CPU 1;
  - the server's CPU time per request in the saturated run (user + system, from
    /proc/PID/stat), which still compares the servers when wrk is the bottleneck;
  - memory per idle connection, each in a fresh server process: its VmRSS before and
    after 1000 connections that sent nothing, and after 1000 connections that each sent
    one request, read the answer and stay open (keep-alive).
Prints one line per run and the medians.

usage: http_compare.py [--rounds N] [--seconds S] NAME=COMMAND ...
"""

import argparse
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LUA = """
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/json"
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def to_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_wrk(pid, port, conns, seconds, script):
    t0 = cpu_ticks(pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c%d" % conns,
                          "-d%ds" % seconds, "--latency", "-s", script,
                          "http://127.0.0.1:%d/" % port],
                         capture_output=True, text=True, check=True).stdout
    cpu = (cpu_ticks(pid) - t0) / os.sysconf("SC_CLK_TCK")
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_us(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_us(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print("  wrk: " + errors.group(0), file=sys.stderr)
    return rps, p50, p99, cpu * 1e6 / max(n, 1)


def start(cmd, port):
    p = subprocess.Popen(["taskset", "-c", "0"] + shlex.split(cmd) + [str(port)])
    if not wait_port(port, time.monotonic() + 5):
        p.kill()
        p.wait()
        raise RuntimeError("%s did not start" % cmd)
    return p


def stop(p):
    p.terminate()
    p.wait()


def idle_rss(pid, port, n, send):
    req = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 1024\r\n\r\n" + b"x" * 1024)
    before = rss_kib(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        if send:
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + 1024:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        socks.append(s)
    # Let the server finish accepting (the last connects may still be in the backlog).
    time.sleep(0.3)
    after = rss_kib(pid)
    for s in socks:
        s.close()
    return (after - before) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("servers", nargs="+")
    args = ap.parse_args()
    servers = [s.split("=", 1) for s in args.servers]
    results = {name: {"rps": [], "cpu": [], "p50": [], "p99": [], "p50_1": [],
                      "p99_1": [], "idle_req": [], "idle_new": []} for name, _ in servers}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
        script = f.name
    port = 18000
    for r in range(args.rounds):
        order = servers[r % len(servers):] + servers[:r % len(servers)]
        for name, cmd in order:
            port += 3
            p = start(cmd, port)
            try:
                rps, p50, p99, cpu = run_wrk(p.pid, port, 32, args.seconds, script)
                _, p50_1, p99_1, _ = run_wrk(p.pid, port, 1, args.seconds, script)
            finally:
                stop(p)
            p = start(cmd, port + 1)
            try:
                idle_new = idle_rss(p.pid, port + 1, args.idle, False)
            finally:
                stop(p)
            p = start(cmd, port + 2)
            try:
                idle_req = idle_rss(p.pid, port + 2, args.idle, True)
            finally:
                stop(p)
            res = results[name]
            for k, v in (("rps", rps), ("cpu", cpu), ("p50", p50), ("p99", p99),
                         ("p50_1", p50_1), ("p99_1", p99_1), ("idle_req", idle_req),
                         ("idle_new", idle_new)):
                res[k].append(v)
            print("round %d %s" % (r + 1, line(name, res, lambda v: v[-1])), flush=True)
    os.unlink(script)
    print("\nmedians over %d rounds:" % args.rounds)
    for name, _ in servers:
        print(line(name, results[name], statistics.median))


def line(name, res, pick):
    m = {k: pick(v) for k, v in res.items()}
    return ("%-10s %7.0f req/s %5.2f us CPU/req  c32 p50 %5.0f us p99 %5.0f us  "
            "c1 p50 %4.0f us p99 %5.0f us  idle %6.0f B/conn silent, %6.0f B/conn after a "
            "request" % (name, m["rps"], m["cpu"], m["p50"], m["p99"], m["p50_1"],
                         m["p99_1"], m["idle_new"], m["idle_req"]))


if __name__ == "__main__":
    main()
