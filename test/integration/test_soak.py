"""
Soak: many start/run/end cycles with misbehaving servers, then nothing may be left.

Three kinds of cycle share the count MCPMUX_SOAK_CYCLES (200 by default, so that the
suite stays fast; `make soak` runs 10,000 against the release build):

- serve: sessions of one `mcpmux serve`, started by a message and ended by
  mcpmux/endRun (or by their server crashing), many at a time;
- wrap runs: runs inside one `mcpmux --` process, each ended by mcpmux/endRun, the next
  started by the next message;
- wrap processes: one `mcpmux --` process per run, ended by stdin EOF.

serve runs one command for every session, and a wrap process one for every run, so the
command is a small shell script that picks the fixture's misbehaviour: from the session
ID in serve mode ($MCPMUX_SESSION), from a run counter in wrap mode.  Each cycle checks
its own outcome (answers, the -32000 of a crash, the escalation, the exit status).  At
the end: no process carrying the test's tag or one of the sessions' cookies, every
grandchild the fixtures announced gone, no child of mcpmux left (zombie or not), mcpmux's
fd count back to where it started, and its private memory (RssAnon) after the first 10 %
of the cycles compared with the end (printed; asserted flat without sanitizers).

Two smaller tests complete it: connections to `serve --listen` that come and go (every
descriptor released), and the orphan no session can claim (gone when serve exits).
"""

import json
import os
import re
import shlex
import signal
import socket
import time

from mcptest import (FIXTURE, TAG, alive, MCPMUX, SANITIZED, Case, call, deadline, fd_count,
                     initialize, main, pids_with_env, proc_environ, req, rss_anon_kib, wait_until)

CYCLES = int(os.environ.get("MCPMUX_SOAK_CYCLES", "200"))
# A well-behaved fixture exits within a few ms of EOF; 100 ms leaves room for a busy
# machine (500 ms for sanitized builds, whose processes start and exit slowly).  One that
# still misses it exits with its own status during the term grace: counted as "late".
# The term grace is the time a process given SIGTERM takes to die (a setsid child's
# escalation is "term" only if it died in it): 200 ms sanitized, on a loaded machine.
GRACE = ["--eof-grace", "500" if SANITIZED else "100",
         "--term-grace", "200" if SANITIZED else "50"]
PARALLEL = 8  # sessions or wrap processes in flight at once

# kind: (fixture switches, escalation, exit) for a run ended by mcpmux/endRun.
KINDS = {
    "plain": ([], "eof", {"code": 0}),
    "stubborn": (["--ignore-sigterm", "--ignore-eof"], "kill", {"signal": "SIGKILL"}),
    "daemon": (["--daemonize-grandchild"], "term", {"code": 0}),
    "setsid": (["--setsid-child"], "term", {"code": 0}),
    "noise": (["--stdout-noise"], "eof", {"code": 0}),
    "slow": (["--slow-reader=2"], "eof", {"code": 0}),
    "flood": (["--flood=60"], "eof", {"code": 0}),
    "deaf": (["--stop-reading-after=2"], "term", {"signal": "SIGTERM"}),
    "exit3": (["--exit-code=3"], "eof", {"code": 3}),
    "crash": (["--crash-after=1"], "none", {"signal": "SIGSEGV"}),
    # wrap mode only: serve does not claim cookie-less orphans (docs/reliability.md)
    "noenv": (["--clear-env-grandchild", "--ignore-sigterm"], "kill", {"code": 0}),
}
SERVE_KINDS = ["plain", "stubborn", "daemon", "crash", "setsid", "noise", "flood", "deaf",
               "exit3", "slow"]
RUN_KINDS = ["plain", "stubborn", "daemon", "noenv", "setsid", "noise", "flood", "deaf",
             "exit3", "slow"]  # no crash: a crash ends the wrap process (like tini)
PROC_KINDS = RUN_KINDS + ["crash"]
# Exit status of a wrap process ended by stdin EOF, per kind.
PROC_STATUS = {"plain": 0, "stubborn": 128 + signal.SIGKILL, "daemon": 0, "noenv": 0,
               "setsid": 0, "noise": 0, "flood": 0, "deaf": 128 + signal.SIGTERM,
               "exit3": 3, "slow": 0, "crash": 128 + signal.SIGSEGV}

GRANDCHILD = re.compile(r"mcp-fixture: (?:grandchild|setsid child) (\d+)")


def chooser_script(path, select):
    """A /bin/sh script that execs the fixture with the switches of a kind."""
    lines = ["#!/bin/sh", "# Picks the fixture's misbehaviour for this run.", select,
             "# A sanitized fixture's leak check at exit would outlast the EOF grace.",
             'export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"',
             'case "$kind" in']
    for kind, (switches, _, _) in KINDS.items():
        lines.append("%s) exec %s %s ;;" % (kind, shlex.quote(FIXTURE),
                                            " ".join(shlex.quote(s) for s in switches)))
    lines += ["esac", "echo \"soak: no kind '$kind'\" >&2", "exit 99", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, 0o755)
    return path


def children(pid):
    """Pids of the children of pid (every thread's)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            out += [int(c) for c in f.read().split()]
    return out


class Soak(Case):
    def setUp(self):
        super().setUp()
        self.grandchildren = set()
        self.cycles = 0
        self.late = 0

    def collect_grandchildren(self, p):
        self.grandchildren.update(int(m) for m in GRANDCHILD.findall(p.stderr()))

    def left(self):
        """Announced grandchildren still alive.  A pid is reused after a wrap of the pid
        space (32,768 here; a soak goes round it), so one counts only while it is still
        this test's: its environment carries the test's tag (unreadable: counted)."""
        tag = ("%s=%s" % (TAG, self.tag)).encode()

        def ours(pid):
            env = proc_environ(pid)
            return env is None or tag in env
        return [g for g in self.grandchildren if alive(g) and ours(g)]

    def assert_nothing_left(self, what):
        wait_until(lambda: not self.left(), 5,
                   "%s: every grandchild gone (left: %r)" % (what, self.left()))
        self.assert_no_leftovers(5, what)

    def check_end(self, kind, escalation, exit_, what, want=None, count=True):
        """The escalation and exit status of a run of this kind."""
        want_escalation, want_exit = want or KINDS[kind][1], KINDS[kind][2]
        if escalation == "term" and want_escalation == "eof" and exit_ == want_exit:
            self.late += count  # exited by itself, after the EOF grace
            return
        self.assertEqual((escalation, exit_), (want_escalation, want_exit), (kind, what))

    def expect(self, p, id_, kind, what):
        """The answer to request id_, skipping the flood's notifications."""
        while True:
            m = p.msg(20)
            if m.get("id") == id_:
                return m
            self.assertEqual(m.get("method"), "notifications/message", "%s (%s): %r" % (
                what, kind, m))

    # ---- serve: sessions of one process ----

    def serve_cycles(self, n, rss):
        script = chooser_script(os.path.join(self.tmp.name, "by-session.sh"),
                                'kind=${MCPMUX_SESSION##*-}')
        p = self.serve(command=[script], opts=GRACE)
        prefix = "soak-%s-" % self.tag[:8]
        inbox = []

        def take(pred):
            end = deadline(30)
            while True:
                for i, e in enumerate(inbox):
                    if pred(e):
                        return inbox.pop(i)
                self.assertLess(time.monotonic(), end, "no matching envelope: %r" % inbox[-3:])
                inbox.append(p.msg(30))

        p.send({"message": req(0, "mcpmux/stats")})
        take(lambda e: "session" not in e)
        fds0 = fd_count(p.pid)
        done = 0
        while done < n:
            batch = []
            for k in range(min(PARALLEL, n - done)):
                i = done + k
                kind = SERVE_KINDS[i % len(SERVE_KINDS)]
                s = "%s%d-%s" % (prefix, i, kind)
                batch.append((s, kind))
                msgs = [initialize(1), call(2, "echo", text=s)]
                if kind != "crash":
                    msgs.append(req(3, "mcpmux/endRun", {"reason": "soak"}))
                p.send(*[{"session": s, "message": m} for m in msgs])
            for s, kind in batch:
                escalation = KINDS[kind][1]
                mine = lambda e, s=s: e.get("session") == s  # noqa: E731
                started = take(lambda e: mine(e) and e.get("event") == "started")
                self.assertEqual(take(lambda e: mine(e) and e.get("message", {}).get("id") == 1)
                                 ["message"]["id"], 1)
                r = take(lambda e: mine(e) and e.get("message", {}).get("id") == 2)["message"]
                if kind == "crash":
                    self.assertEqual(r["error"]["code"], -32000, r)
                else:
                    self.assertEqual(r["result"]["content"][0]["text"], s)
                    end = take(lambda e: mine(e) and e.get("message", {}).get("id") == 3)
                    r = end["message"]["result"]
                    self.check_end(kind, r["escalation"], r["exit"], s)
                ended = take(lambda e: mine(e) and e.get("event") == "ended")
                self.assertEqual(ended["pid"], started["pid"], s)
                if kind == "crash" and ended["escalation"] == "eof":
                    # its stdout's EOF can be seen before its SIGCHLD: "stdout closed
                    # while running" then ends it as an end request would
                    escalation = "eof"
                self.check_end(kind, ended["escalation"], ended["exit"], s, escalation,
                               count=False)
            # flood notifications of ended sessions may still sit in the inbox
            inbox[:] = [e for e in inbox if e.get("session") not in dict(batch)]
            done += len(batch)
            self.cycles += len(batch)
            rss.tick(p.pid, self.cycles)
        wait_until(lambda: children(p.pid) == [], 5, "serve's children to be reaped")
        self.assertEqual(pids_with_env(("MCPMUX_SESSION=%s" % prefix).encode()), [],
                         "processes with a session cookie")
        self.collect_grandchildren(p)
        self.assert_nothing_left("serve")
        fds = fd_count(p.pid)
        p.close_stdin()
        self.assertEqual(p.wait(30), 0)
        return fds0, fds

    # ---- wrap: runs inside one process ----

    def wrap_run_cycles(self, n, rss):
        counter = os.path.join(self.tmp.name, "runs")
        kinds = " ".join(RUN_KINDS)
        # lanes of runs: lane L's runs take the kinds L, L+PARALLEL, ... in turn
        select = ('n=$(cat "$SOAK_COUNTER" 2>/dev/null || echo 0); '
                  'echo $((n + 1)) > "$SOAK_COUNTER"; '
                  'set -- %s; shift $(( (n * %d + $SOAK_LANE) %% $# )); kind=$1' % (
                      kinds, PARALLEL))
        script = chooser_script(os.path.join(self.tmp.name, "by-run.sh"), select)
        lanes = []
        for lane in range(PARALLEL):
            env = dict(self.env, SOAK_COUNTER="%s.%d" % (counter, lane),
                       SOAK_LANE=str(lane))
            lanes.append(self.start_wrap(script, env))
        fds0 = [None] * PARALLEL
        last = [None] * PARALLEL  # each lane's last kind: its exit status at EOF
        done, round_ = 0, 0
        while done < n:
            active = lanes[:min(PARALLEL, n - done)]
            for p in active:
                p.send(initialize(10 * round_ + 1), call(10 * round_ + 2, "echo", text="r"),
                       req(10 * round_ + 3, "mcpmux/endRun"))
            for lane, p in enumerate(active):
                kind = last[lane] = RUN_KINDS[(round_ * PARALLEL + lane) % len(RUN_KINDS)]
                self.expect(p, 10 * round_ + 1, kind, "initialize")
                r = self.expect(p, 10 * round_ + 2, kind, "echo")
                self.assertEqual(r["result"]["content"][0]["text"], "r", (kind, r))
                r = self.expect(p, 10 * round_ + 3, kind, "endRun")["result"]
                self.check_end(kind, r["escalation"], r["exit"], r)
                if fds0[lane] is None:
                    fds0[lane] = fd_count(p.pid)
            done += len(active)
            round_ += 1
            self.cycles += len(active)
            rss.tick(lanes[0].pid, self.cycles)
        for p in lanes:
            wait_until(lambda p=p: children(p.pid) == [], 5, "wrap's children to be reaped")
        fds = [fd_count(p.pid) for p in lanes]
        for p in lanes:
            self.collect_grandchildren(p)
        self.assert_nothing_left("wrap runs")
        for p, kind in zip(lanes, last):
            # after its runs, mcpmux exits with the status of the last one's server
            exit_ = KINDS[kind][2]
            p.close_stdin()
            self.assertEqual(p.wait(30), exit_.get("code", 128 + getattr(
                signal, exit_.get("signal", "SIGKILL"))), kind)
        return fds0, fds

    def start_wrap(self, script, env):
        return self.start([MCPMUX] + GRACE + ["--", script], env=env)

    # ---- wrap: one process per run ----

    def wrap_process_cycles(self, n):
        script = chooser_script(os.path.join(self.tmp.name, "by-env.sh"), "kind=$SOAK_KIND")
        done = 0
        while done < n:
            batch = []
            for k in range(min(PARALLEL, n - done)):
                kind = PROC_KINDS[(done + k) % len(PROC_KINDS)]
                p = self.start_wrap(script, dict(self.env, SOAK_KIND=kind))
                p.send(initialize(1), call(2, "echo", text="p"))
                batch.append((p, kind))
            for p, kind in batch:
                self.expect(p, 1, kind, "initialize")
                r = self.expect(p, 2, kind, "echo")
                if kind == "crash":
                    self.assertEqual(r["error"]["code"], -32000, r)
                p.close_stdin()
                self.assertEqual(p.wait(30), PROC_STATUS[kind], (kind, p.stderr()[-500:]))
                self.collect_grandchildren(p)
                p.kill()  # closes its pipes and stderr file now, not at tearDown
            self.procs = [q for q in self.procs if q not in [b[0] for b in batch]]
            done += len(batch)
            self.cycles += len(batch)
        self.assert_nothing_left("wrap processes")

    def test_soak(self):
        n_serve = CYCLES // 2
        n_runs = CYCLES * 3 // 10
        n_procs = CYCLES - n_serve - n_runs
        t0 = time.monotonic()
        rss = Rss(CYCLES)
        serve_fds = self.serve_cycles(n_serve, rss)
        rss_serve = rss.report("serve")
        rss = Rss(CYCLES, offset=self.cycles)
        run_fds = self.wrap_run_cycles(n_runs, rss)
        rss_runs = rss.report("wrap runs")
        self.wrap_process_cycles(n_procs)
        elapsed = time.monotonic() - t0
        print("\nsoak: %d cycles in %.1f s (serve sessions %d, wrap runs %d, wrap processes %d)"
              % (self.cycles, elapsed, n_serve, n_runs, n_procs))
        print("soak: leftovers 0 (tagged, cookies, %d announced grandchildren), zombies 0; "
              "%d server(s) exited after the EOF grace" % (len(self.grandchildren), self.late))
        print("soak: serve fds %d at start, %d at the end; wrap-run fds %s at start, %s at the end"
              % (serve_fds[0], serve_fds[1], run_fds[0], run_fds[1]))
        self.assertEqual(serve_fds[0], serve_fds[1], "serve's fds")
        self.assertEqual(run_fds[0], run_fds[1], "wrap runs' fds")
        for what, (early, late) in (("serve", rss_serve), ("wrap runs", rss_runs)):
            if not SANITIZED and early is not None:
                # flat: within 10 % (and 256 KiB for allocator noise) of the early figure
                self.assertLessEqual(late, early * 1.1 + 256,
                                     "%s: RssAnon grew from %d to %d KiB" % (what, early, late))


class ServeSockets(Case):
    """
    Connections to `serve --listen`, each with a session, one after another: every other
    client waits for its session's end and then hangs up; the others, the last one among
    them, hang up at once, so their sessions end without them and nothing else happens
    after the last one's end.
    """

    def test_connections_leave_no_descriptor(self):
        path = os.path.join(self.tmp.name, "s")
        p = self.start([MCPMUX, "serve", "--listen", path] + GRACE + ["--", FIXTURE],
                       stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        fds = fd_count(p.pid)
        n = max(10, CYCLES // 10) // 2 * 2
        for i in range(n):
            c = socket.socket(socket.AF_UNIX)
            c.settimeout(20)
            c.connect(path)
            f = c.makefile("rwb")
            f.write(b'{"session":"c%d","message":{"jsonrpc":"2.0","id":1,"method":"ping"}}\n'
                    % i)
            f.write(b'{"session":"c%d","message":{"jsonrpc":"2.0","id":2,'
                    b'"method":"mcpmux/endRun"}}\n' % i)
            f.flush()
            if i % 2 == 0:
                events = [json.loads(f.readline()) for _ in range(4)]
                self.assertEqual(events[-1]["event"], "ended", events)
            f.close()
            c.close()
        self.cycles = n
        # the last session ends after its client is gone, and nothing happens after that
        wait_until(lambda: fd_count(p.pid) == fds, 2,
                   "serve's fds back to %d after %d connections" % (fds, n))
        self.assertEqual(children(p.pid), [])
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


class ServeOrphans(Case):
    """
    What the serve cycles leave out: a grandchild that left the process group and dropped
    its cookie (--clear-env-grandchild) is re-parented to mcpmux with nothing that names
    its session, so no session's teardown finds it (docs/reliability.md).  It must still
    not outlive mcpmux: serve, like wrap, kills what is left when it exits.
    """

    def start_orphan(self, m, session):
        m.send({"session": session, "message": req(1, "ping")})
        self.assertEqual(m.msg()["event"], "started")
        self.assertEqual(m.msg()["message"]["id"], 1)
        return int(wait_until(lambda: GRANDCHILD.findall(m.stderr()), 5, "the grandchild")[-1])

    def test_nothing_left_after_serve_exits(self):
        m = self.serve("--clear-env-grandchild", opts=GRACE)
        gc = self.start_orphan(m, "a")
        m.close_stdin()
        self.assertEqual(m.wait(), 0)
        try:
            wait_until(lambda: not alive(gc), 2, "the orphan to go when serve exits")
        finally:
            if alive(gc):
                os.kill(gc, signal.SIGKILL)


class Rss:
    """mcpmux's RssAnon after the first 10 % of the cycles, and at the end."""

    def __init__(self, total, offset=0):
        self.mark = offset + max(1, total // 10)
        self.early = None
        self.late = None
        self.pid = None

    def tick(self, pid, cycles):
        self.pid = pid
        if self.early is None and cycles >= self.mark:
            self.early = rss_anon_kib(pid)
        self.late = rss_anon_kib(pid)

    def report(self, what):
        print("\nsoak: %s: RssAnon %s KiB after the first 10 %%, %s KiB at the end%s"
              % (what, self.early, self.late, " (sanitized build: not asserted)"
                 if SANITIZED else ""))
        return self.early, self.late


if __name__ == "__main__":
    main()
