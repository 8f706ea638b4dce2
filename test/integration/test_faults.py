"""
Fault injection: mcpmux under system calls that fail the way the kernel may.

The shim (test/fault/faultshim.c, LD_PRELOADed into mcpmux only, never into its servers)
makes read/write/readv/writev on pipes and sockets fail with EINTR and move fewer bytes
than asked, at random from a fixed seed, and process creation (fork, clone, posix_spawn),
pipe2() or accept4() fail on their Nth call.  Its counters (FAULT_LOG) show that the faults did happen: a test whose faults
were not injected fails rather than passes.

What each test would catch if mcpmux's handling were removed:

- Interrupted: an EINTR taken for an error (a run torn down early, a lost line) or a short
  write not continued (bytes lost or reordered) changes the client's bytes;
- ClientGone: without SIGPIPE ignored and EPIPE handled, mcpmux dies of SIGPIPE or never
  tears down a server whose client has vanished;
- SpawnFails: a failed spawn that is not answered leaves a request unanswered; one that
  leaks its pipes changes mcpmux's fd count; wrap must exit 1 with the reason;
- Clone3Fails: the same for clone3() (which the shim cannot see: a seccomp filter fails
  it), and a failed spawn that leaves a copy of its pipes in a slot changes what mcpmux's
  descriptors name;
- Clone3Refused: a refusal of clone3() other than ENOSYS (EPERM, EINVAL, E2BIG,
  EOPNOTSUPP) taken for a failure fails every spawn where the old way would work;
- StdoutClosed: a server that closes stdout but keeps running would otherwise leave the
  requests in flight unanswered forever;
- LastWords: a run whose last events come together must still report its end and status;
- EarlySignal: SIGTERM, SIGINT or SIGHUP that comes before the loop watches for it, not
  held until then, kills mcpmux by its default action (no teardown, the wrong status);
- HalfClose: responses written after the client's EOF must still arrive, and then the
  stream must end (EOF), not hang.
- PoolGrant: a slot file that another instance is granting, seen by `ctl stats` before
  it is locked, must not be taken for a dead instance's and removed (its server would
  then go uncounted, and one more would start over the cap); an ask for a slot freed
  after it was seen must not leave its file behind; a directory lock held a moment as a
  wait's bound comes, taken for a stuck one, starts the server uncounted.
- OutOfMemory: a request that cannot be tracked, forwarded anyway, gets no error if its
  server dies; a held line dropped for want of memory, or an HTTP answer, leaves its
  request unanswered; a table entry that cannot be added (uthash's default) exits mcpmux
  and ends every session; a client's batch that cannot be stripped of its answers, sent
  on all the same, is lost, its requests unanswered (wrap between runs, a session being
  resumed), or gives a suspended session's fresh server answers to requests it never
  sent; a line for the client cut for want of memory ends mcpmux as a client gone would,
  with a status that says nothing went wrong; a server whose pool slot cannot be had
  starts uncounted, in silence (the release build only: a sanitizer's
  allocator comes first).
- StderrFull: a stderr file whose disk was full once, given up for good, would say
  nothing more for the rest of a long-lived run, even once the disk has room.
- SharedStderr: a last word written blocking to a shared stderr that nobody reads, its
  flags given back at exit, hangs mcpmux's exit for ever.
"""

import array
import errno
import fcntl
import http.client
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import unittest

from mcptest import (ASKER, FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, Case, alive, call, comm,
                     proc_start,
                     deadline, fd_count, fd_links, initialize, keeper_of, main, note, proc_state,
                     encode, req,
                     wait_until)
from test_escape import own_cgroup_root, rmdir_once_empty
from test_serve import Mux

SHIM = os.environ.get("MCPMUX_FAULTSHIM") or os.path.join(
    os.path.dirname(os.path.abspath(MCPMUX)), "test", "fault", "faultshim.so")
GRACE = ["--eof-grace", "300", "--term-grace", "200"]
BIG = 1 << 20  # the 1 MiB echo
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def shim_missing():
    return not os.path.exists(SHIM) or bool(WRAPPER)


def normalized(m):
    """An end-of-run result, or an event, without what differs from run to run."""
    r = m.get("result", m)
    for k in ("session", "pid", "ms"):
        if k in r:
            r[k] = "*"
    return m


def fill_pipe(p, message):
    """Sends p message, whose answer is larger than p's stdout pipe, and waits until the
    pipe is full (p reads nothing): the answer's head written, its rest queued."""
    p.send(message)
    out = p.p.stdout.fileno()

    def pipe_full():
        unread = array.array("i", [0])
        fcntl.ioctl(out, termios.FIONREAD, unread)
        return unread[0] > 0 and unread[0] >= fcntl.fcntl(out, F_GETPIPE_SZ)
    wait_until(pipe_full, 10, "the client's pipe to be full")


def assert_serve_fine_sharing_its_table(t, p):
    """serve itself answers, exits 0 at EOF, and said its servers share its table."""
    p.send({"message": req(2, "mcpmux/stats")})
    t.assertIn("result", p.msg()["message"])
    p.close_stdin()
    t.assertEqual(p.wait(), 0)
    t.assertIn("spawn: servers share mcpmux's descriptor table", p.stderr())


needs_shim = unittest.skipIf(shim_missing(),
                             "no fault shim (MCPMUX_FAULTSHIM), or mcpmux under a wrapper")


class Faults(Case):
    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.tmp.name, "faults.log")

    def shim_env(self, **faults):
        env = dict(self.env, LD_PRELOAD=SHIM, FAULT_LOG=self.log)
        env.update({"FAULT_" + k.upper(): str(v) for k, v in faults.items()})
        # gcc's ASan runtime insists on coming first in the link map; the shim comes first.
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                                   "verify_asan_link_order=0") if x)
        return env

    def mcpmux(self, argv, env=None, **kw):
        return self.start([MCPMUX] + argv, env=env or self.env, **kw)

    def counters(self, pid):
        """The shim's counters for process pid (written when it exits)."""
        with open(self.log) as f:
            for line in f:
                fields = dict(kv.split("=") for kv in line.split())
                if int(fields["pid"]) == pid:
                    return {k: int(v) for k, v in fields.items()}
        self.fail("no fault counters for pid %d" % pid)

    def assert_clean_stderr(self, p):
        err = p.stderr()
        for bad in ("AddressSanitizer", "runtime error", "LeakSanitizer", "BUG"):
            self.assertNotIn(bad, err)


@needs_shim
class Interrupted(Faults):
    """Random EINTR and short reads and writes: the client sees the same bytes."""

    # short_first: the counts asserted below never depend on how the writes were batched
    FAULTS = dict(seed=7, eintr=200, short=300, short_first=3)

    def wrap_session(self, env):
        msgs = [initialize(0)]
        for i in range(1, 51):
            msgs.append(call(i, "echo", text="x" * BIG if i == 25 else "echo %d \u00e9" % i))
        msgs.append(req(99, "mcpmux/endRun", {"reason": "faults"}))
        p = self.mcpmux(GRACE + ["--", FIXTURE], env=env)
        p.send(*msgs)
        p.close_stdin()
        out = p.read_to_eof(60)
        status = p.wait(30)
        self.assert_clean_stderr(p)
        lines = out.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(len(lines), 53, "every answer, then EOF")
        end = normalized(json.loads(lines[-2]))
        return p, lines[:-2], end, status

    def test_wrap_session_same_bytes(self):
        _, want, want_end, want_status = self.wrap_session(self.env)
        p, got, got_end, status = self.wrap_session(self.shim_env(**self.FAULTS))
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, w, "line %d differs (%d bytes, want %d)" % (i, len(g), len(w)))
        self.assertEqual(got_end, want_end)
        self.assertEqual(status, want_status)
        c = self.counters(p.pid)
        print("\nfaults in wrap: %(reads)d reads, %(writes)d writes: %(eintr)d EINTR, "
              "%(short_reads)d short reads, %(short_writes)d short writes" % c)
        self.assertGreater(c["eintr"], 0, c)
        self.assertGreater(c["short_reads"], 0, c)
        self.assertGreater(c["short_writes"], 0, c)
        self.assert_no_leftovers()

    def serve_session(self, env):
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE], env=env)
        for s in ("a", "b"):
            p.send({"session": s, "message": initialize(0)})
        for i in range(1, 26):
            for s in ("a", "b"):
                text = "x" * BIG if (i, s) == (13, "a") else "%s %d" % (s, i)
                p.send({"session": s, "message": call(i, "echo", text=text)})
        for s in ("a", "b"):
            p.send({"session": s, "message": req(99, "mcpmux/endRun")})
        p.close_stdin()
        out = p.read_to_eof(60)
        status = p.wait(30)
        self.assert_clean_stderr(p)
        per = {"a": [], "b": []}
        for line in out.split(b"\n")[:-1]:
            e = json.loads(line)
            session = e["session"]
            if "event" in e:
                normalized(e)
            elif e["message"].get("id") == 99:
                normalized(e["message"])
            per[session].append(json.dumps(e, sort_keys=True))
        return p, per, status

    def test_serve_sessions_same_messages(self):
        _, want, want_status = self.serve_session(self.env)
        p, got, status = self.serve_session(self.shim_env(**self.FAULTS))
        for s in ("a", "b"):
            self.assertEqual(len(got[s]), 1 + 1 + 25 + 1 + 1, s)
            self.assertEqual(got[s], want[s], s)
        self.assertEqual(status, want_status)
        c = self.counters(p.pid)
        print("\nfaults in serve: %(reads)d reads, %(writes)d writes: %(eintr)d EINTR, "
              "%(short_reads)d short reads, %(short_writes)d short writes" % c)
        self.assertGreater(c["eintr"], 0, c)
        self.assertGreater(c["short_reads"], 0, c)
        self.assertGreater(c["short_writes"], 0, c)
        self.assert_no_leftovers()


class ClientGone(Faults):
    """The client closes its end while mcpmux writes a large response to it."""

    def huge_then_vanish(self, p, serve=False):
        """Ask for 20 MB, read a little of it, close the read end.  The server's pid."""
        huge = call(2, "huge", bytes=20_000_000)
        if serve:
            pid = self.serve_pid(p)
            p.send({"session": "a", "message": huge})
        else:
            pid = self.wrap_pid(p)
            p.send(huge)
        fd = p.p.stdout.fileno()
        wait_until(lambda: select.select([fd], [], [], 0.05)[0], 10, "the response to begin")
        self.assertTrue(os.read(fd, 1000))
        p.p.stdout.close()  # stdin stays open: EPIPE is the only news
        return pid

    def wrap_pid(self, p):
        p.send(call(1, "env"))
        return p.msg()["result"]["structuredContent"]["pid"]

    def serve_pid(self, p):
        p.send({"session": "a", "message": call(1, "env")})
        while True:
            e = p.msg()
            if e.get("message", {}).get("id") == 1:
                return e["message"]["result"]["structuredContent"]["pid"]

    def test_wrap_tears_down_on_epipe(self):
        p = self.mcpmux(GRACE + ["--", FIXTURE])
        pid = self.huge_then_vanish(p)
        # the server finishes its write into mcpmux (which drains it), sees EOF, exits 0
        self.assertEqual(p.wait(10), 0)
        self.assertFalse(alive(pid))
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_wrap_stubborn_server_on_epipe(self):
        """Even a server that ignores EOF and SIGTERM is gone, by SIGKILL, within the graces."""
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--ignore-sigterm", "--ignore-eof"])
        pid = self.huge_then_vanish(p)
        t0 = time.monotonic()
        self.assertEqual(p.wait(10), 128 + signal.SIGKILL)
        self.assertLess(time.monotonic() - t0, (0.3 + 0.2 + 1.5) * (3 if SANITIZED else 1))
        self.assertFalse(alive(pid))
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_serve_on_stdio_ends_everything_on_epipe(self):
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE])
        pid = self.huge_then_vanish(p, serve=True)
        self.assertEqual(p.wait(10), 0)
        self.assertFalse(alive(pid))
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()


@needs_shim
class SpawnFails(Faults):
    """EMFILE from pipe2() and EAGAIN from clone()/fork() when a server is started.
    (Wrap and serve first start their keeper: a fork and two pipes, counted first.)"""

    KEEPER_FORKS, KEEPER_PIPES = 1, 2

    def shim_env(self, **faults):
        # Without a cgroup leaf, and without close_range() (so without sharing mcpmux's
        # descriptor table with the child): otherwise a server is cloned by an inline
        # system call (clone3 with CLONE_VM), which no preloaded library sees.  Its
        # failure takes the same path as clone()'s.
        env = super().shim_env(**faults)
        env["MCPMUX_CGROUP"] = "off"
        env["FAULT_NO_CLOSE_RANGE"] = "1"
        return env

    def test_without_close_range_the_table_is_copied(self):
        """Without close_range() (Linux before 5.9) a server gets a copy of mcpmux's
        descriptor table, -v says so and why, and the server runs as usual."""
        p = self.mcpmux(["-v", "--", FIXTURE], env=self.shim_env())
        p.send(initialize(0))
        self.assertEqual(p.msg()["id"], 0)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        err = p.stderr()
        self.assertIn("spawn: servers get a copy of mcpmux's descriptor table "
                      "(close_range(): Function not implemented)", err)
        self.assertNotIn("servers share", err)
        self.assert_no_leftovers()

    def test_wrap_cannot_start(self):
        """Exit 1, with the reason and what to do about it."""
        for faults, reason in ((dict(pipe2_fail=self.KEEPER_PIPES + 2),
                                "Too many open files (raise the limit with ulimit -n)"),
                               (dict(fork_fail=self.KEEPER_FORKS + 1),
                                "Resource temporarily unavailable (the limit of processes is "
                                "reached: end some, or raise it with ulimit -u or the "
                                "service's TasksMax)")):
            p = self.mcpmux(["--", FIXTURE], env=self.shim_env(**faults))
            p.close_stdin()
            self.assertEqual(p.wait(), 1, faults)
            err = p.stderr()
            self.assertIn("mcpmux: cannot start '%s': %s\n" % (FIXTURE, reason), err)
            self.assertEqual(self.counters(p.pid)["failed"], 1)
            self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_wrap_next_run_cannot_start(self):
        """The run after an end-of-run fails to start: an error, then the next one starts."""
        # the second run's spawn: its process, or its second pipe (the first is closed again)
        for faults in (dict(fork_fail=self.KEEPER_FORKS + 2),
                       dict(pipe2_fail=self.pipe2_per_spawn() + 2)):
            p = self.mcpmux(GRACE + ["--", FIXTURE], env=self.shim_env(**faults))
            p.send(req(1, "ping"))
            self.assertEqual(p.msg()["id"], 1)
            p.send(req(2, "mcpmux/endRun"))
            self.assertEqual(p.msg()["id"], 2)
            fds = fd_count(p.pid)
            p.send(req(3, "ping"))
            err = self.assert_error(p.msg(), 3, -32000)
            self.assertIn("cannot start the server", err["message"])
            self.assertRegex(p.stderr(), r"mcpmux: cannot start the server: [^\n]+ \((raise "
                             r"the limit with ulimit -n|the limit of processes is reached: "
                             r"end some, [^\n]+)\)\n")
            self.assertEqual(fd_count(p.pid), fds, "a failed start leaks no descriptor")
            p.send(req(4, "ping"))
            self.assertEqual(p.msg(), {"jsonrpc": "2.0", "id": 4, "result": {}})
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
            self.assertEqual(self.counters(p.pid)["failed"], 1)
            self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_wrap_next_run_cannot_start_for_a_batch(self):
        """The run a batch would start fails to start: one array with an error for each
        of its requests, by its id, and -32600 with id null for its element that is no
        message; then the next one starts."""
        p = self.mcpmux(GRACE + ["--", FIXTURE],
                        env=self.shim_env(fork_fail=self.KEEPER_FORKS + 2))
        p.send(req(1, "mcpmux/endRun"))
        self.assertEqual(p.msg()["id"], 1)
        p.send([req(2, "ping"), note("notifications/x"), 1, req("b", "ping")])
        got = p.msg()
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [(2, -32000), (None, -32600), ("b", -32000)], got)
        self.assertIn("cannot start the server", got[0]["error"]["message"])
        p.send(req(4, "ping"))
        self.assertEqual(p.msg(), {"jsonrpc": "2.0", "id": 4, "result": {}})
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_a_pool_grant_whose_spawn_fails(self):
        """A session waits for its pool's slot; when it is granted, the spawn fails: the
        waiting request gets -32000, and the next message starts the server, announced
        as started (its first server), not as resumed."""
        from test_serve import Mux
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # a pool of the test's own
        a = Mux(self.mcpmux(["serve", "--max-servers", "1"] + GRACE + ["--", FIXTURE]))
        a.send("v", initialize(1))
        self.assertEqual(a.msg("v")["id"], 1)
        b = Mux(self.mcpmux(["serve", "--max-servers", "1"] + GRACE + ["--", FIXTURE],
                            env=self.shim_env(fork_fail=self.KEEPER_FORKS + 1)))
        b.send("s", initialize(1))
        err = b.msg("s", 15)
        self.assert_error(err, 1, -32000)
        self.assertIn("could not be started", err["error"]["message"])
        self.assertIn("mcpmux: session s: the server could not be started: Resource "
                      "temporarily unavailable (the limit of processes is reached: ",
                      b.p.stderr())
        b.send("s", initialize(2))
        started = b.event("s", "started")
        self.assertEqual(b.msg("s")["id"], 2)
        self.assertGreater(started["pid"], 0)
        self.assertFalse([e for e in b.inbox if e.get("event") == "resumed"], b.inbox)
        for m in (a, b):
            m.p.close_stdin()
            self.assertEqual(m.p.wait(10), 0)
        self.assert_no_leftovers()

    def test_a_resume_whose_spawn_fails(self):
        """The fresh server of a suspended session cannot be started (the fork fails in
        the turn its request came): that held request gets -32000 with the reason, and the
        next message starts the server."""
        log = os.path.join(self.tmp.name, "t.log")
        p = self.mcpmux(GRACE + ["--idle-suspend", "0.4", "--log", log, "--", FIXTURE],
                        env=self.shim_env(fork_fail=self.KEEPER_FORKS + 2))
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.send(note("notifications/initialized"), call(2, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]

        def logged(event):
            with open(log) as f:
                return any(json.loads(line).get("event") == event for line in f)
        # suspended: the next request starts a server in the turn it comes
        wait_until(lambda: not alive(pid) and logged("suspended"), 10,
                   "the idle server's suspend")
        p.send(call(3, "echo", text="x"))
        err = self.assert_error(p.msg(), 3, -32000)
        self.assertIn("the server could not be restarted: Resource temporarily unavailable",
                      err["message"])
        p.send(call(4, "echo", text="y"))
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "y")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(logged("resume-failed"))  # no server came to fail its replay
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def pipe2_per_spawn(self):
        """How many pipe2() calls a serve with one spawn makes (the keeper's, and the
        spawn's: 2, or 3 with a traffic log)."""
        p = self.mcpmux(["serve", "--", FIXTURE], env=self.shim_env())
        p.send({"session": "x", "message": req(1, "ping")})
        p.msg()
        p.msg()
        p.close_stdin()
        p.wait()
        return self.counters(p.pid)["pipe2"]

    def serve_one_fails(self, faults, reason):
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE], env=self.shim_env(**faults))
        p.send({"message": req(0, "mcpmux/stats")})
        self.assertIn("result", p.msg()["message"])
        fds = fd_count(p.pid)
        p.send({"session": "a", "message": req(1, "ping")})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        p.send({"session": "b", "message": req(1, "ping")})
        e = p.msg()
        self.assertEqual(e["session"], "b")
        self.assert_error(e["message"], 1, -32000)
        self.assertIn(reason, e["message"]["error"]["message"])
        p.send({"session": "a", "message": req(2, "ping")})  # the other session is fine
        self.assertEqual(p.msg(), {"session": "a", "message": {"jsonrpc": "2.0", "id": 2,
                                                              "result": {}}})
        p.send({"session": "b", "message": req(2, "ping")})  # and b starts on its next message
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 2)
        for s in ("a", "b"):
            p.send({"session": s, "message": req(3, "mcpmux/endRun")})
        ended = [p.msg() for _ in range(4)]
        self.assertEqual(sorted(e["session"] for e in ended if e.get("event") == "ended"),
                         ["a", "b"])
        wait_until(lambda: fd_count(p.pid) == fds, 2, "serve's fds back to %d" % fds)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_serve_pipe2_fails(self):
        # the second pipe of session b's spawn: the first one must be closed again
        self.serve_one_fails(dict(pipe2_fail=self.pipe2_per_spawn() + 2), "Too many open files")

    def test_serve_fork_fails(self):
        self.serve_one_fails(dict(fork_fail=self.KEEPER_FORKS + 2),
                             "Resource temporarily unavailable")

    def test_serve_accept4_fails(self):
        """Out of descriptors at accept: that connection is refused, the next one served."""
        path = os.path.join(self.tmp.name, "s")
        p = self.start([MCPMUX, "serve", "--listen", path] + GRACE + ["--", FIXTURE],
                       env=self.shim_env(accept4_fail=1), stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        c1 = socket.socket(socket.AF_UNIX)
        c1.settimeout(10 * (3 if SANITIZED else 1))
        c1.connect(path)
        self.assertEqual(c1.recv(100), b"", "the first connection is closed")
        c1.close()
        c2 = socket.socket(socket.AF_UNIX)
        c2.settimeout(10)
        c2.connect(path)
        c2.sendall(json.dumps({"session": "a", "message": req(1, "ping")}).encode() + b"\n")
        f = c2.makefile("rb")
        self.assertEqual(json.loads(f.readline())["event"], "started")
        self.assertEqual(json.loads(f.readline())["message"]["id"], 1)
        c2.close()
        f.close()
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertIn("out of file descriptors", p.stderr())
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    ENFILE_MS = 1500

    def assert_paused_not_spun(self, p, says):
        """ENFILE for ENFILE_MS from the first accept4(): the listener paused between tries
        (a spin calls accept4() tens of thousands of times), then served."""
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        n = self.counters(p.pid)["accept4"]
        self.assertLess(n, 3 * self.ENFILE_MS // 100, "accept4() called %d times" % n)
        self.assertIn(says, p.stderr())
        self.assertIn("trying again in 0.1 s", p.stderr())
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()

    def test_serve_accept4_enfile_pauses(self):
        """The system's file table full: the spare descriptor cannot refuse the connection,
        so serve stops accepting for a moment instead of spinning; the client waits in the
        backlog and is served once descriptors are back."""
        path = os.path.join(self.tmp.name, "s")
        p = self.start([MCPMUX, "serve", "--listen", path] + GRACE + ["--", FIXTURE],
                       env=self.shim_env(accept4_enfile_ms=self.ENFILE_MS), stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        c = socket.socket(socket.AF_UNIX)
        self.addCleanup(c.close)
        c.settimeout(10 * (3 if SANITIZED else 1))
        c.connect(path)
        c.sendall(json.dumps({"session": "a", "message": req(1, "ping")}).encode() + b"\n")
        f = c.makefile("rb")
        self.addCleanup(f.close)
        self.assertEqual(json.loads(f.readline())["event"], "started")
        self.assertEqual(json.loads(f.readline())["message"]["id"], 1)
        self.assert_paused_not_spun(p, "cannot accept a connection on")

    def assert_http_initialize_served(self, p):
        """An initialize POSTed to serve's HTTP endpoint gets its answer."""
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the HTTP port")
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)),
                                       timeout=10 * (3 if SANITIZED else 1))
        self.addCleanup(c.close)
        body = json.dumps(req(1, "initialize", {"protocolVersion": "2025-06-18",
                                                "capabilities": {},
                                                "clientInfo": {"name": "t", "version": "1"}}))
        c.request("POST", "/mcp", body=body,
                  headers={"Content-Type": "application/json",
                           "Accept": "application/json, text/event-stream"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn(b'"id":1', r.read().replace(b" ", b""))
        c.close()

    def test_http_accept4_enfile_pauses(self):
        """The same for the HTTP front end's listener."""
        p = self.start([MCPMUX, "serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                       env=self.shim_env(accept4_enfile_ms=self.ENFILE_MS), stdin=False)
        self.assert_http_initialize_served(p)
        self.assert_paused_not_spun(p, "cannot accept an HTTP connection")

    def test_http_accept4_network_error_is_tried_again(self):
        """accept4() giving a pending TCP connection's network error (EPROTO, as accept(2)
        says to treat as EAGAIN): tried again at once, the listener neither paused nor
        warned about, and the next connection served."""
        p = self.start([MCPMUX, "serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                       env=self.shim_env(accept4_fail="1,2,3", accept4_errno=errno.EPROTO),
                       stdin=False)
        self.assert_http_initialize_served(p)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 3)
        self.assertNotIn("cannot accept", p.stderr())
        self.assert_clean_stderr(p)


class DescriptorLimit(Faults):
    """mcpmux's own table of descriptors full (its limit lowered to what it has open): each
    connection over it is refused at once with the spare descriptor, which is taken again
    after each refusal, and none waits in the backlog."""

    def fill_table(self, p):
        fds = [int(f) for f in os.listdir("/proc/%d/fd" % p.pid)]
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (max(fds) + 1, hard))
        return max(fds) + 1 - len(fds)  # free slots under the limit: accepted connections

    def assert_each_refused(self, p, family, addr, answer):
        held = []
        try:
            for i in range(self.fill_table(p) + 3):
                c = socket.socket(family)
                c.settimeout(10 * (3 if SANITIZED else 1))
                c.connect(addr)
                held.append(c)
            for i, c in enumerate(held[-3:]):
                data = b""
                while True:
                    more = c.recv(4096)
                    if not more:
                        break
                    data += more
                self.assertTrue(data.startswith(answer) if answer else data == b"", (i, data))
        finally:
            for c in held:
                c.close()
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertIn("out of file descriptors", p.stderr())
        self.assertNotIn("trying again", p.stderr())
        self.assert_clean_stderr(p)

    def test_serve_refuses_every_connection_over_the_limit(self):
        path = os.path.join(self.tmp.name, "s")
        p = self.mcpmux(["serve", "--listen", path] + GRACE + ["--", FIXTURE], stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        self.assert_each_refused(p, socket.AF_UNIX, path, b"")

    def test_serve_answers_its_first_message_with_the_table_full(self):
        """The first message serve reads comes while its table of descriptors is full (the
        connection took the last slot): it is answered (the server cannot start), and serve
        goes on.  (The sanitized build aborted there: UBSan's check of simdjson's classes
        opens a pipe, and took the failure for a bad object.)"""
        path = os.path.join(self.tmp.name, "s")
        p = self.mcpmux(["serve", "--listen", path] + GRACE + ["--", FIXTURE], stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        fds = [int(f) for f in os.listdir("/proc/%d/fd" % p.pid)]
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (max(fds) + 2, hard))
        c = socket.socket(socket.AF_UNIX)
        self.addCleanup(c.close)
        c.settimeout(10 * (3 if SANITIZED else 1))
        c.connect(path)
        f = c.makefile("rwb", buffering=0)
        f.write(b'{"session":"a","message":{"jsonrpc":"2.0","id":1,"method":"ping"}}\n')
        m = json.loads(f.readline())
        self.assertEqual(m["message"]["id"], 1, m)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assert_clean_stderr(p)

    def test_http_refuses_every_connection_over_the_limit(self):
        p = self.mcpmux(["serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                        stdin=False)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the HTTP port")
        self.assert_each_refused(p, socket.AF_INET, ("127.0.0.1", int(m.group(1))),
                                 b"HTTP/1.1 503 ")


class Clone3Fails(Case):
    """EAGAIN from clone3(), the spawn mcpmux uses for every server here (into a cgroup
    leaf, sharing its descriptor table until the child unshares it): the session gets
    -32000, and nothing of the failed spawn is kept (its pipes, the slots' copies)."""

    def setUp(self):
        super().setUp()
        if WRAPPER:
            self.skipTest("valgrind has no clone3()")
        self.prefix = [os.environ["MCPMUX_NOCLONE3"], "--errno", str(errno.EAGAIN)]

    def test_serve_spawn_fails(self):
        p = self.start([MCPMUX, "serve", "-v", "--", FIXTURE])
        p.send({"message": req(0, "mcpmux/stats")})
        self.assertIn("result", p.msg()["message"])
        before = sorted(fd_links(p.pid).values())
        for s in ("a", "b", "a"):
            p.send({"session": s, "message": req(1, "ping")})
            e = p.msg()
            self.assertEqual(e["session"], s)
            self.assert_error(e["message"], 1, -32000)
            self.assertIn("Resource temporarily unavailable", e["message"]["error"]["message"])
            self.assertEqual(sorted(fd_links(p.pid).values()), before)
        assert_serve_fine_sharing_its_table(self, p)
        self.assertIn("mcpmux: session a: cannot start the server: Resource temporarily "
                      "unavailable (the limit of processes is reached: end some, or raise it "
                      "with ulimit -u or the service's TasksMax)\n", p.stderr())
        self.assertNotIn("refused", p.stderr())  # EAGAIN is a failure, not a refusal
        self.assert_no_leftovers()

    def test_http_spawn_fails_is_500(self):
        """Over HTTP (docs/http.md, "Refused"): an initialize whose server cannot be started
        gets 500 with the JSON-RPC error for it (its id), no session is made, and the next
        initialize tries again."""
        p = self.start([MCPMUX, "serve", "--http", "127.0.0.1:0", "--idle-timeout", "60"] +
                       GRACE + ["--", FIXTURE])
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the HTTP port")
        body = json.dumps(req(4, "initialize", {"protocolVersion": "2025-06-18",
                                                "capabilities": {},
                                                "clientInfo": {"name": "t", "version": "1"}}))
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)),
                                           timeout=10 * (3 if SANITIZED else 1))
            self.addCleanup(c.close)
            c.request("POST", "/mcp", body=body,
                      headers={"Content-Type": "application/json",
                               "Accept": "application/json, text/event-stream"})
            r = c.getresponse()
            self.assertEqual(r.status, 500)
            self.assertEqual(r.getheader("Content-Type"), "application/json")
            self.assertIsNone(r.getheader("Mcp-Session-Id"))
            e = self.assert_error(json.loads(r.read()), 4, -32000)
            self.assertIn("Resource temporarily unavailable", e["message"])
            c.close()
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0, p.stderr())
        self.assert_no_leftovers()

class Clone3Refused(Case):
    """clone3() refused other than by ENOSYS, as seccomp profiles and kernels refuse it
    (EPERM, EINVAL, E2BIG, EOPNOTSUPP): mcpmux starts its servers the old way, as on ENOSYS,
    says so once, and every session works; only EAGAIN and the like fail a spawn
    (Clone3Fails)."""

    def setUp(self):
        super().setUp()
        if WRAPPER:
            self.skipTest("valgrind has no clone3()")

    def test_each_refusal_falls_back_to_clone(self):
        for err in (errno.EPERM, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP):
            with self.subTest(errno=errno.errorcode[err]):
                self.prefix = [os.environ["MCPMUX_NOCLONE3"], "--errno", str(err)]
                p = self.start([MCPMUX, "serve", "-v", "--", FIXTURE])
                for s in ("a", "b"):
                    p.send({"session": s, "message": call(1, "env")})
                    e = p.msg()
                    while "message" not in e:  # the session's started event
                        e = p.msg()
                    self.assertEqual(e["session"], s)
                    env = self.assert_response(e["message"], 1)["structuredContent"]
                    self.assertEqual(env["fds"], "0,1,2")  # a copy of the table, unshared
                self.assertEqual(p.stderr().count("spawn: clone3() is refused here (%s)" %
                                                  os.strerror(err)), 1, p.stderr())
                self.assertNotIn("cannot start", p.stderr())
                p.close_stdin()
                self.assertEqual(p.wait(), 0)
                self.assert_no_leftovers()


@needs_shim
class ChildUnshareFails(Faults):
    """close_range(CLOSE_RANGE_UNSHARE), a server's first act while it shares mcpmux's
    descriptor table, fails (out of memory): that start fails like an exec that fails
    (-32000 with the reason), before the child has touched a descriptor of the table it
    still shares: serve answers on as before, with the same descriptors."""

    def test_serve_spawn_fails(self):
        p = self.mcpmux(["serve", "-v", "--", FIXTURE],
                        env=self.shim_env(child_unshare=errno.ENOMEM))
        p.send({"message": req(0, "mcpmux/stats")})
        self.assertIn("result", p.msg()["message"])
        before = sorted(fd_links(p.pid).values())
        for s in ("a", "b"):
            p.send({"session": s, "message": req(1, "ping")})
            started, e, ended = p.msg(), p.msg(), p.msg()
            self.assertEqual((started["session"], started["event"]), (s, "started"))
            self.assertEqual(e["session"], s)
            self.assert_error(e["message"], 1, -32000)
            # mcpmux's own failure before the exec: the command is not blamed
            self.assertIn("server could not be started: could not prepare the server's "
                          "process: Cannot allocate memory", e["message"]["error"]["message"])
            self.assertNotIn("cannot run", e["message"]["error"]["message"])
            self.assertEqual((ended["event"], ended["exit"]), ("ended", {"code": 126}))
            self.assertEqual(sorted(fd_links(p.pid).values()), before)
        assert_serve_fine_sharing_its_table(self, p)
        err = p.stderr()
        self.assertEqual(err.count("could not prepare the server's process: Cannot allocate "
                                   "memory\n"), 1, err)
        self.assertIn("its process (pid %d) could not be prepared to execute '%s'" %
                      (started["pid"], FIXTURE), err)
        self.assertNotIn("cannot run", err)
        self.assertNotIn("check that it is", err)
        self.assert_clean_stderr(p)
        self.assert_no_leftovers()


class StdoutClosed(Faults):
    """A server that closes its stdout and keeps running: requests in flight get -32000."""

    def test_wrap(self):
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--stdout-close"])
        p.send(initialize(1), req(2, "ping"), call(3, "sleep", ms=50))
        self.assertEqual(p.msg()["id"], 1)
        for id_ in (2, 3):
            self.assert_error(p.msg(), id_, -32000)
        self.assertEqual(p.wait(), 0)  # its stdin closed, the server exits 0
        self.assert_no_leftovers()

    def test_wrap_server_ignores_eof(self):
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--stdout-close", "--ignore-eof"])
        p.send(initialize(1), req(2, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        self.assert_error(p.msg(), 2, -32000)
        self.assertEqual(p.wait(), 128 + signal.SIGTERM)
        self.assert_no_leftovers()

    def test_serve(self):
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE, "--stdout-close", "--ignore-eof"])
        p.send({"session": "a", "message": initialize(1)},
               {"session": "a", "message": req(2, "ping")})
        started = p.msg()
        self.assertEqual(p.msg()["message"]["id"], 1)
        self.assert_error(p.msg()["message"], 2, -32000)
        ended = p.msg()
        self.assertEqual((ended["event"], ended["pid"], ended["escalation"]),
                         ("ended", started["pid"], "term"))
        self.assertFalse(alive(started["pid"]))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


class LastWords(Faults):
    """
    A server that writes its last answer and exits at once, after the client's EOF: the
    answer, the end of its stdout and its exit reach mcpmux together, in whatever order
    the loop sees them.  Nothing else is left to wake the loop, yet the end-of-run result
    must be written and mcpmux must exit with the server's status.  (A race: repeated.)
    """

    SERVER = ["sh", "-c", 'read line; echo \'{"jsonrpc":"2.0","id":1,"result":{}}\'; exit 3']

    def test_wrap_end_result_and_status_after_eof(self):
        for i in range(20):
            p = self.mcpmux(GRACE + ["--"] + self.SERVER)
            p.send(req(1, "ping"), req(99, "mcpmux/endRun"))
            p.close_stdin()
            out = [json.loads(l) for l in p.read_to_eof(10).splitlines()]
            self.assertEqual([m["id"] for m in out], [1, 99], "run %d" % i)
            self.assertEqual(out[1]["result"]["exit"], {"code": 3})
            self.assertEqual(p.wait(), 3, "run %d" % i)
            p.kill()
        self.assert_no_leftovers()


@needs_shim
class EarlySignal(Faults):
    """
    SIGTERM, SIGINT or SIGHUP that comes while mcpmux is still starting (stopped by the
    shim right after it forked its keeper, before its signal watchers are there): held
    until they are, then acted on as later, with the teardown and the documented status;
    the instance's status file goes with it.
    """

    def started_stopped(self, argv):
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # its status file where the test sees
        p = self.mcpmux(argv, env=self.shim_env(fork_stop=1))
        wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux stopped at its start")
        return p

    def assert_status_file_gone(self):
        instances = os.path.join(self.tmp.name, "mcpmux", "instances")
        self.assertEqual(os.listdir(instances) if os.path.isdir(instances) else [], [])

    def test_wrap_exits_with_the_servers_status(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            p = self.started_stopped(GRACE + ["--", FIXTURE, "--exit-code=4"])
            os.kill(p.pid, sig)
            os.kill(p.pid, signal.SIGCONT)
            self.assertEqual(p.wait(), 4, "%s; stderr:\n%s" % (sig, p.stderr()))
            self.assertEqual(p.read_to_eof(), b"")
            self.assert_clean_stderr(p)
            self.assert_status_file_gone()
            self.assert_no_leftovers()

    def test_serve_exits_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            p = self.started_stopped(["serve"] + GRACE + ["--", FIXTURE])
            os.kill(p.pid, sig)
            os.kill(p.pid, signal.SIGCONT)
            self.assertEqual(p.wait(), 0, "%s; stderr:\n%s" % (sig, p.stderr()))
            self.assert_clean_stderr(p)
            self.assert_status_file_gone()
            self.assert_no_leftovers()


def continued(pid):
    """SIGCONT to pid, if it is still there."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


class KeeperHeld(Faults):
    """The keeper is in a session of its own from its first instruction (docs/lifecycle.md):
    held there by the shim, as a loaded machine may hold it, while mcpmux goes on and
    starts its server, it is already out of mcpmux's process group.  A SIGKILL to that
    group, as a client that ends its whole group sends, misses it, and once it goes on it
    ends what mcpmux left."""

    def test_a_sigkill_to_mcpmuxs_group_misses_a_keeper_held_at_its_start(self):
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--daemonize-grandchild", "--ignore-sigterm"],
                        env=self.shim_env(keeper_stop=1), start_new_session=True)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        held = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 10,
                          "the keeper held")
        self.assertEqual(len(held), 1, held)
        # not under way, but named already (its middle process took the name before it)
        self.assertEqual(comm(held[0]), "mcpmux-keeper")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.assertTrue(alive(held[0]), "the keeper went with mcpmux's group")
        self.assertTrue(alive(gc), "the grandchild is the keeper's to end")
        os.kill(held[0], signal.SIGCONT)
        wait_until(lambda: not self.tagged(), 10, "the grandchild and the keeper to be gone")

    def test_a_keeper_held_at_its_start_is_no_instance_to_ps(self):
        """Held before its first act, the keeper has its name and its title already: `mcpmux
        ps` lists the one instance, not the keeper as a second one with mcpmux's command
        line (and its client init)."""
        p = self.mcpmux(GRACE + ["--", FIXTURE], env=self.shim_env(keeper_stop=1))
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        held = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 10,
                          "the keeper held")
        self.assertEqual(len(held), 1, held)
        self.addCleanup(continued, held[0])
        ps = subprocess.run([MCPMUX, "ps", "--json"], env=self.env, capture_output=True,
                            timeout=30 * SLOW)
        self.assertEqual(ps.returncode, 0, ps.stderr)
        ours = [i["pid"] for i in json.loads(ps.stdout)["instances"]
                if i["pid"] in self.tagged()]
        self.assertEqual(ours, [p.pid], "instances of the test")
        self.assertEqual(keeper_of(held[0]), p.pid)
        os.kill(held[0], signal.SIGCONT)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_keeper_started_in_place_of_one_killed_holds_no_pipe_of_a_server(self):
        """Another keeper, held at its start, holds nothing of mcpmux's but its two pipes
        and its socket (its middle process let the rest go first): mcpmux's close of the server's stdin
        is the server's EOF, and the session ends by it."""
        self.check_new_keeper_holds_no_pipe()

    def test_without_close_range_a_new_keeper_holds_no_pipe_of_a_server_either(self):
        """The same where close_range() fails (before Linux 5.9, or a seccomp profile that
        refuses it): the middle process closes each open descriptor instead."""
        self.check_new_keeper_holds_no_pipe(no_close_range=2)

    def check_new_keeper_holds_no_pipe(self, **faults):
        p = self.mcpmux(GRACE + ["-v", "--", FIXTURE], env=self.shim_env(keeper_stop=1, **faults))
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        first = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 10,
                           "the keeper held")[0]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "takes its place" in p.stderr(), 5, "another keeper",
                   explain=p.stderr)
        k = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T" and
                                q != first], 10, "the new keeper held")[0]
        self.addCleanup(continued, k)
        fds = fd_links(k)
        self.assertEqual(sorted(fds), [0, 1, 2, 3, 4, 5], fds)
        self.assertTrue(fds[5].startswith("socket:"), fds)  # the pool slots' socket
        self.assertEqual(fds[0], "/dev/null")
        self.assertEqual(fds[2], fd_links(p.pid)[2], "mcpmux's stderr, the same pipe")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertRegex(p.stderr(), r"session \S+: ended \(eof, ")
        os.kill(k, signal.SIGCONT)
        wait_until(lambda: not alive(k), 5, "the new keeper to exit")


@needs_shim
class KeeperRestart(Faults):
    """The middle process of another keeper's double fork, stopped or killed (the shim's
    FAULT_MIDDLE_STOP and FAULT_MIDDLE_KILL; mcpmux's first keeper's is the 1st): mcpmux's
    loop goes on, and another keeper is started a second later (docs/lifecycle.md)."""

    ARGV = GRACE + ["--", FIXTURE, "--daemonize-grandchild", "--ignore-sigterm"]

    def keepers(self, p):
        return [q for q in self.tagged() if keeper_of(q) == p.pid]

    def started(self, **faults):
        """wrap, its server's grandchild running: (mcpmux, the grandchild, its keeper)."""
        p = self.mcpmux(self.ARGV, env=self.shim_env(**faults))
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        return p, gc, wait_until(lambda: self.keepers(p), 5, "the keeper")[0]

    def killed_and_all_gone(self, p, gc):
        """The last keeper ends what the SIGKILLed mcpmux leaves."""
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not alive(gc) and not self.tagged(), 10,
                   "the grandchild and the keeper to be gone", explain=p.stderr)

    def test_a_middle_process_killed_after_it_forked_the_keeper(self):
        """That keeper is told "done" and goes without ending anything; the next one
        takes the place of the first."""
        p, gc, first = self.started(middle_kill=2)
        os.kill(first, signal.SIGKILL)
        said = "the keeper (pid %d) is gone: another (pid " % first
        wait_until(lambda: said in p.stderr(), 10, said, explain=p.stderr)
        wait_until(lambda: len(self.keepers(p)) == 1, 5, "one keeper",
                   explain=lambda: repr(self.keepers(p)))
        self.assertTrue(alive(gc), "the keeper of the killed middle ended the grandchild")
        p.send(req(2, "ping"))
        self.assertEqual(p.msg()["id"], 2)
        self.killed_and_all_gone(p, gc)

    def test_a_stopped_middle_process_does_not_hold_up_the_loop(self):
        """mcpmux waits for it half a second, kills it, and answers meanwhile; the next
        try, a second later, starts a keeper."""
        p, gc, first = self.started(middle_stop=2)
        os.kill(first, signal.SIGKILL)
        mid = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 5,
                         "the middle process to stop")[0]
        self.addCleanup(continued, mid)
        p.send(req(2, "ping"))
        self.assertEqual(p.msg()["id"], 2)
        wait_until(lambda: not alive(mid), 5, "the stopped middle process to be killed")
        said = "the keeper (pid %d) is gone: another (pid " % first
        wait_until(lambda: said in p.stderr(), 10, said, explain=p.stderr)
        self.killed_and_all_gone(p, gc)

    def test_a_first_keeper_that_cannot_be_started_is_started_later(self):
        """The first keeper's middle process held past its bound (5 s) is killed, and
        mcpmux goes on without a keeper only until the next try, a second later."""
        p = self.mcpmux(self.ARGV, env=self.shim_env(middle_stop=1))
        mid = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 5,
                         "the first middle process to stop")[0]
        self.addCleanup(continued, mid)
        wait_until(lambda: "cannot start the keeper" in p.stderr(), 10, "the failed start",
                   explain=p.stderr)
        wait_until(lambda: "a keeper runs now" in p.stderr(), 5, "the keeper started later",
                   explain=p.stderr)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        self.assertEqual(len(wait_until(lambda: self.keepers(p), 5, "the keeper")), 1)
        self.killed_and_all_gone(p, gc)


@needs_shim
class KeeperSlots(Faults):
    """The pool slots' descriptors handed to the keeper (docs/lifecycle.md): when they
    cannot be, mcpmux or its keeper says so, once, and the servers start all the same."""

    OPTS = ["--max-servers", "2", "--pool", "p"] + GRACE

    def setUp(self):
        super().setUp()
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # a pool of the test's own

    def two_sessions(self, m):
        for i, s in enumerate(("a", "b")):
            m.send(s, initialize(i))
            self.assertEqual(m.msg(s)["id"], i)

    def ends(self, m, said, failed=None):
        """m's EOF ends it with 0; stderr says `said` times that a slot could not be handed;
        the shim's faults were hit `failed` times (when not None); nothing is left."""
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual(m.p.stderr().count("cannot hand the keeper a pool slot"), said,
                         m.p.stderr())
        if failed is not None:
            self.assertEqual(self.counters(m.p.pid)["failed"], failed)
        self.assert_no_leftovers()

    def keeper(self, p):
        """The keeper of mcpmux p (its pid)."""
        # (under way: a middle process taken for the keeper, on a loaded machine, had the
        # keeper's descriptor limit set on it, and the keeper's never)
        return wait_until(lambda: [q for q in self.tagged()
                                   if keeper_of(q, under_way=True) == p.pid], 5,
                          "the keeper")[0]

    def held(self, keeper):
        """What the pool slots' descriptors the keeper holds link to, sorted."""
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")
        return sorted(l for l in fd_links(keeper).values() if l.startswith(pools))

    def a_slot_freed(self, m):
        """Two sessions, their slots held by the keeper, then a's run ended and its slot
        file gone: the keeper."""
        self.two_sessions(m)
        keeper = self.keeper(m.p)
        held = lambda: self.held(keeper)
        wait_until(lambda: len(held()) == 2, 5, "the keeper to hold both slots",
                   explain=lambda: repr(held()))
        m.send("a", req(2, "mcpmux/endRun"))
        self.assertEqual(m.msg("a")["id"], 2)
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")
        files = lambda: [f for d in os.listdir(pools) for f in os.listdir(os.path.join(pools, d))
                         if f.startswith("s.")]
        wait_until(lambda: len(files()) == 1, 5, "a's slot to be freed",
                   explain=lambda: repr(files()))
        return keeper

    def test_a_socket_for_the_slots_that_cannot_be_made_is_said_once(self):
        m = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE],
                            env=self.shim_env(socketpair_fail=1)))
        self.two_sessions(m)
        self.ends(m, 1, 1)

    def test_a_slot_not_handed_to_a_keeper_behind_leaves_the_socket_for_the_next(self):
        """The slot socket full (the shim's EAGAIN, for the first slot): that slot is not
        handed, said once, and the next one is: the socket is not given up."""
        m = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE],
                            env=self.shim_env(sendfd_eagain=1)))
        self.two_sessions(m)
        keeper = self.keeper(m.p)
        held = lambda: self.held(keeper)
        wait_until(held, 5, "the keeper to hold b's slot")
        self.assertEqual(len(held()), 1, held())
        self.ends(m, 1)

    def test_a_freed_slot_not_said_to_a_keeper_behind_is_let_go_at_its_next_record(self):
        """The socket full when a slot is freed (the shim's EAGAIN, for that record): the
        keeper, reading the records still queued (here: the next slot's), lets the freed
        slot's descriptor go, as its file is gone; it does not hold it until it exits."""
        m = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE],
                            env=self.shim_env(sendrec_eagain=1)))
        keeper = self.a_slot_freed(m)
        held = lambda: self.held(keeper)
        m.send("c", initialize(3))
        self.assertEqual(m.msg("c")["id"], 3)
        wait_until(lambda: len(held()) == 2 and not [l for l in held() if "(deleted)" in l],
                   5, "the keeper to hold b's and c's slots only",
                   explain=lambda: repr(held()))
        self.ends(m, 0, 1)

    def test_a_taken_slot_not_handed_is_said_after_a_freed_slots_record_did_not_go(self):
        """A freed slot's record dropped (the shim's EAGAIN: harmless, the keeper lets that
        slot go at its next record) says nothing, and does not use up the warning: the
        taken slot dropped after it (the third descriptor sent: c's) is said."""
        m = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE],
                            env=self.shim_env(sendrec_eagain=1, sendfd_eagain=3)))
        self.a_slot_freed(m)
        # Its record goes right after the file, in the same turn of the loop as this
        # answer, which comes after it.
        self.assertIn("result", m.control(9, "mcpmux/stats")["message"])
        self.assertNotIn("cannot hand the keeper a pool slot", m.p.stderr())
        m.send("c", initialize(3))
        self.assertEqual(m.msg("c")["id"], 3)
        said = "its slots may be free before what it left is ended"
        wait_until(lambda: said in m.p.stderr(), 5, "c's slot not handed to be said",
                   explain=m.p.stderr)
        self.ends(m, 1, 2)

    def test_a_slot_the_keeper_cannot_take_is_said_once(self):
        """The keeper out of descriptors (its RLIMIT_NOFILE put to 0 here): the slots' come
        cut off (MSG_CTRUNC), and it says so once."""
        m = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE]))
        self.assertIn("result", m.control(1, "mcpmux/stats")["message"])
        keeper = self.keeper(m.p)
        limit = resource.prlimit(keeper, resource.RLIMIT_NOFILE)
        resource.prlimit(keeper, resource.RLIMIT_NOFILE, (0, limit[1]))
        try:
            self.two_sessions(m)
            said = "keeper: a pool slot's descriptor did not come"
            wait_until(lambda: said in m.p.stderr(), 5, "the keeper to say it",
                       explain=m.p.stderr)
        finally:
            resource.prlimit(keeper, resource.RLIMIT_NOFILE, limit)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual(m.p.stderr().count(said), 1, m.p.stderr())
        self.assert_no_leftovers()

    def test_a_slot_granted_without_memory_to_spare_is_handed_to_the_next_keeper(self):
        """Memory short when the slot is granted (the shim's ENOMEM for the next realloc()
        of 32 bytes once initialize came in, what a first table of 8 descriptors would
        take): the slot is handed, and, the keeper killed, to the one started in its
        place, as the slots to tell again are listed without memory to allocate."""
        m = initialize(0)
        m["params"]["clientInfo"]["name"] = "slot-oom"
        env = self.shim_env(malloc_after="slot-oom", malloc_only="realloc", malloc_min=32,
                            malloc_max=32)
        mux = Mux(self.mcpmux(["serve"] + self.OPTS + ["--", FIXTURE], env=env))
        p = mux.p
        mux.send("a", m)  # its session, and so its slot, comes with this line
        self.assertEqual(mux.msg("a")["id"], 0)
        first = self.keeper(p)
        wait_until(lambda: self.held(first), 5, "the keeper to hold the slot")
        os.kill(first, signal.SIGKILL)
        said = "the keeper (pid %d) is gone: another (pid " % first
        wait_until(lambda: said in p.stderr(), 10, said, explain=p.stderr)
        wait_until(lambda: [q for q in self.tagged()
                            if keeper_of(q) == p.pid and q != first and self.held(q)], 5,
                   "the new keeper to hold the slot")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def abandon_then_exit(self, deadline_ms):
        """A run's end abandoned at --kill-deadline (a server mcpmux cannot signal: the
        shim's EPERM; without a cgroup, whose cgroup.kill does not go through it), then a
        normal exit: (the grandchild left running, mcpmux's stderr, the slot files)."""
        slot = os.path.join(self.tmp.name, "mcpmux", "pools")
        env = self.shim_env(nokill="mcp-fixture")
        env["MCPMUX_CGROUP"] = "off"
        p = self.mcpmux(["--max-servers", "1", "--pool", "p", "--eof-grace", "100",
                         "--term-grace", "100", "--kill-deadline", str(deadline_ms), "--",
                         FIXTURE, "--ignore-sigterm", "--ignore-eof",
                         "--daemonize-grandchild"], env=env)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        # the server dies with mcpmux (its parent-death signal), not its grandchild
        pid = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                             "the grandchild")[-1])
        self.addCleanup(lambda: alive(pid) and os.kill(pid, signal.SIGKILL))
        p.send(req(2, "mcpmux/endRun"))
        self.assertIn(pid, p.msg(deadline_ms / 1000 + 10)["result"]["abandoned"])
        p.close_stdin()
        p.wait(deadline_ms / 1000 + 10)  # it waits for what was left, --kill-deadline at most

        def slot_files():
            return [f for d in os.listdir(slot) for f in os.listdir(os.path.join(slot, d))
                    if f.startswith(("s.", "a."))]
        return pid, p, slot_files

    def test_a_slot_kept_for_processes_that_would_not_die_is_held_after_a_normal_exit(self):
        """The keeper holds the kept slot while that server still runs (for --kill-deadline
        at most), and lets it go when it is gone: well before that deadline."""
        deadline_ms = int(8000 * SLOW)
        pid, p, slot_files = self.abandon_then_exit(deadline_ms)
        try:
            self.assertTrue(alive(pid))
            self.assertEqual(len(slot_files()), 1, "the slot was freed while its server runs")
        finally:
            os.kill(pid, signal.SIGKILL)
        # a quarter of the deadline, from well after its start: the deadline cannot free it
        wait_until(lambda: not slot_files(), deadline_ms / 1000 / 4,
                   "the keeper to let the slot go")
        wait_until(lambda: not [q for q in self.tagged() if keeper_of(q) == p.pid], 5,
                   "the keeper to exit")
        self.assertNotIn("exited leaving processes that would not die", p.stderr())
        self.assert_no_leftovers()

    def test_a_slot_kept_for_processes_that_would_not_die_is_let_go_at_the_deadline(self):
        """Those processes still running at --kill-deadline after mcpmux's normal exit: the
        keeper lets the slot go then, and says so; it sends them nothing."""
        deadline_ms = int(2000 * SLOW)
        pid, p, slot_files = self.abandon_then_exit(deadline_ms)
        t = time.monotonic()
        self.assertEqual(len(slot_files()), 1, "the slot was freed while its server runs")
        wait_until(lambda: not slot_files(), deadline_ms / 1000 + 5,
                   "the keeper to let the slot go")
        self.assertGreater(time.monotonic() - t, deadline_ms / 1000 / 2)
        said = "exited leaving processes that would not die: its pool slots are free"
        wait_until(lambda: said in p.stderr(), 5, "the keeper to say it", explain=p.stderr)
        self.assertTrue(alive(pid))
        os.kill(pid, signal.SIGKILL)
        self.assert_no_leftovers()

    def test_a_slot_kept_for_processes_that_would_not_die_is_free_once_they_are_gone(self):
        """A run's end abandoned at --kill-deadline keeps its slot while the processes it
        left run, not until mcpmux exits: once they are gone, the next run takes that
        slot, without waiting the pool's whole bound or going over the cap."""
        env = self.shim_env(nokill="mcp-fixture")
        env["MCPMUX_CGROUP"] = "off"
        deadline_ms = int(4000 * SLOW)
        p = self.mcpmux(["--max-servers", "1", "--pool", "p", "--eof-grace", "100",
                         "--term-grace", "100", "-v", "--kill-deadline", str(deadline_ms), "--",
                         FIXTURE, "--ignore-sigterm", "--ignore-eof",
                         "--daemonize-grandchild"], env=env)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5, "the grandchild")
        p.send(req(2, "mcpmux/endRun"))
        left = p.msg(deadline_ms / 1000 + 10)["result"]["abandoned"]
        self.assertEqual(len(left), 2, left)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(q) for q in left), 5, "the abandoned to die")
        t = time.monotonic()
        p.send(initialize(3))
        self.assertEqual(p.msg(deadline_ms / 1000 + 10)["id"], 3)
        self.assertLess(time.monotonic() - t, deadline_ms / 1000 / 2, p.stderr())
        self.assertNotIn("none idle", p.stderr())
        self.assertIn("the processes a slot was kept for are gone", p.stderr())
        # the new run's server dies with mcpmux (its parent-death signal), not its grandchild
        pid = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr())[1:], 5,
                             "the new grandchild")[-1])
        os.kill(pid, signal.SIGKILL)
        p.close_stdin()
        p.wait()
        self.assert_no_leftovers()

class HalfClose(Faults):
    """The client ends its input while answers are still coming: all arrive, then EOF."""

    N = 10

    def test_wrap(self):
        p = self.mcpmux(["--eof-grace", "5000", "--", FIXTURE])
        p.send(*[call(i, "sleep", ms=30) for i in range(self.N)])
        p.close_stdin()
        out = p.read_to_eof(20)
        self.assertEqual([json.loads(l)["id"] for l in out.splitlines()], list(range(self.N)))
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_serve_stdio(self):
        p = self.mcpmux(["serve", "--eof-grace", "5000", "--", FIXTURE])
        p.send(*[{"session": "h", "message": call(i, "sleep", ms=30)} for i in range(self.N)])
        p.close_stdin()
        got = [json.loads(l) for l in p.read_to_eof(20).splitlines()]
        self.assertEqual([e["message"]["id"] for e in got if "message" in e], list(range(self.N)))
        self.assertEqual(got[-1]["event"], "ended")
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_serve_socket_shutdown_wr(self):
        """shutdown(SHUT_WR) on a connection: its answers, its ended event, then EOF."""
        path = os.path.join(self.tmp.name, "s")
        p = self.start([MCPMUX, "serve", "--listen", path, "--eof-grace", "5000", "--",
                        FIXTURE], stdin=False)
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        fds = fd_count(p.pid)
        c = socket.socket(socket.AF_UNIX)
        self.addCleanup(c.close)
        c.connect(path)
        c.sendall(b"".join(json.dumps({"session": "h", "message": call(i, "sleep", ms=30)})
                           .encode() + b"\n" for i in range(self.N)))
        c.shutdown(socket.SHUT_WR)
        buf, end = b"", deadline(10)
        c.settimeout(0.1)
        while time.monotonic() < end:
            try:
                chunk = c.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            buf += chunk
        else:
            self.fail("no EOF on the connection after its session ended; got %r" % buf[-300:])
        got = [json.loads(l) for l in buf.splitlines()]
        self.assertEqual([e["message"]["id"] for e in got if "message" in e], list(range(self.N)))
        self.assertEqual(got[-1]["event"], "ended")
        wait_until(lambda: fd_count(p.pid) == fds, 2, "the connection's descriptor closed")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


@needs_shim
class Unkillable(Faults):
    """A process mcpmux cannot end (another user's, EPERM): the run ends as abandoned.
    (Without a cgroup: cgroup.kill does not go through the signals the shim refuses.)"""

    ARGS = ["--eof-grace", "100", "--term-grace", "100", "--kill-deadline", "500"]

    def shim_env(self, **faults):
        env = super().shim_env(**faults)
        env["MCPMUX_CGROUP"] = "off"
        return env

    def test_wrap_end_of_run_reports_abandoned_pids(self):
        """In the end-of-run result, on stderr and in the traffic log's "ended" record."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        p = self.mcpmux(["--log", log] + self.ARGS +
                        ["--", FIXTURE, "--ignore-sigterm", "--ignore-eof"],
                        env=self.shim_env(nokill="mcp-fixture"))
        p.send(call(1, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        t0 = time.monotonic()
        p.send(req(2, "mcpmux/endRun"))
        r = p.msg(10)["result"]
        took = time.monotonic() - t0
        self.assertEqual(r["escalation"], "abandoned")
        self.assertEqual(r["abandoned"], [pid])
        self.assertIsNone(r["exit"])
        self.assertGreater(took, 0.6)  # after SIGKILL and the deadline, not before
        self.assertTrue(alive(pid), "it was reported abandoned, not gone")
        self.assertIn("would not die", p.stderr())

        def ended():  # (the log is written at the end of the turn that answered)
            with open(log) as f:
                return [(r["escalation"], r["abandoned"], r["pid"]) for r in map(json.loads, f)
                        if r.get("event") == "ended"]
        wait_until(ended, 5, "the ended record")
        self.assertEqual(ended(), [("abandoned", [pid], pid)])
        os.kill(pid, signal.SIGKILL)
        p.close_stdin()
        self.assertEqual(p.wait(10), 1)

    def test_wrap_end_of_run_lists_every_abandoned_pid_past_the_first_few(self):
        """More pids than the backend keeps in itself (4): the list is allocated, whole."""
        p = self.mcpmux(self.ARGS + ["--", FIXTURE, "--ignore-sigterm", "--ignore-eof"],
                        env=self.shim_env(nokill="mcp-fixture"))
        p.send(call(1, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        p.send(call(2, "spawn", count=6))
        kids = [int(k) for k in p.msg()["result"]["content"][0]["text"].split()]
        p.send(req(3, "mcpmux/endRun"))
        r = p.msg(10)["result"]
        self.assertEqual(r["escalation"], "abandoned")
        self.assertEqual(sorted(r["abandoned"]), sorted([pid] + kids))
        for k in [pid] + kids:
            os.kill(k, signal.SIGKILL)
        p.close_stdin()
        self.assertEqual(p.wait(10), 1)
        for k in [pid] + kids:
            wait_until(lambda: not alive(k), 5, f"pid {k} to go")

    def test_serve_ended_event_lists_abandoned_pids(self):
        s = self.mcpmux(["serve"] + self.ARGS + ["--", FIXTURE, "--ignore-sigterm", "--ignore-eof"],
                        env=self.shim_env(nokill="mcp-fixture"))
        env = lambda m: {"session": "u", "message": m}
        s.send(env(call(1, "env")))
        self.assertEqual(s.msg()["event"], "started")
        pid = s.msg()["message"]["result"]["structuredContent"]["pid"]
        s.send(env(note("mcpmux/endRun")))
        ev = s.msg(10)
        self.assertEqual(ev["event"], "ended")
        self.assertEqual(ev["escalation"], "abandoned")
        self.assertEqual(ev["abandoned"], [pid])
        # the session left the table: a new message starts a new one
        s.send(env(req(2, "ping")))
        started = s.msg()
        self.assertEqual(started["event"], "started")
        self.assertEqual(s.msg()["message"]["id"], 2)
        os.kill(pid, signal.SIGKILL)
        s.close_stdin()
        self.assertEqual(s.wait(10), 0)
        # The second server is abandoned too at the end; the kernel takes it when serve
        # exits (its parent-death signal), which is not at once: its own exit may still run.
        second = started["pid"]
        wait_until(lambda: not alive(second), 5, "the second server to go with serve")


@needs_shim
class ExitLeftovers(Faults):
    """What serve leaves to its exit: a session's orphan without its environment, in a
    session of its own, that no session can claim (docs/reliability.md).  The exit walks
    again until a walk finds nothing, and waits for what it killed, the kill deadline at
    most.  (Without a cgroup: a leaf would hold the orphan, and its session end it.)"""

    ARGS = ["--eof-grace", "100", "--term-grace", "100"]

    def setUp(self):
        super().setUp()
        self.adopt_orphans()  # a zombie mcpmux did not reap stays in /proc

    def shim_env(self, **faults):
        env = super().shim_env(**faults)
        env["MCPMUX_CGROUP"] = "off"
        return env

    def orphan(self, p):
        """The grandchild of a session of serve p (its comm "exe": re-executed)."""
        p.send({"session": "s", "message": req(1, "ping")})
        while p.msg().get("message", {}).get("id") != 1:
            pass
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        self.addCleanup(self.end, gc, proc_start(gc))
        wait_until(lambda: comm(gc) == "exe", 5, "the grandchild's exec")
        return gc

    def end(self, pid, start):
        """No tag, no owner: neither tearDown nor a keeper finds it."""
        if start is not None and proc_start(pid) == start:
            os.kill(pid, signal.SIGKILL)

    def test_a_child_forked_while_the_exit_walk_ran_is_found_by_the_next(self):
        """The orphan forks after the walk read the tree, before its SIGKILL: its child,
        which that walk did not see, is killed too, and nothing is left in /proc."""
        p = self.mcpmux(["serve", "-v"] + self.ARGS +
                        ["--", FIXTURE, "--clear-env-grandchild", "--fork-on-usr1"],
                        env=self.shim_env(pidfd_stop="exe"))
        gc = self.orphan(p)
        # its SIGUSR1 handler in place (before it, a SIGUSR1 kills it)
        wait_until(lambda: "%d waiting for SIGUSR1" % gc in p.stderr(), 5,
                   "the orphan's SIGUSR1 handler")
        p.close_stdin()
        # stopped between the walk that found the orphan and its signal
        wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux to stop before the signal")
        os.kill(gc, signal.SIGUSR1)

        def children():
            with open("/proc/%d/task/%d/children" % (gc, gc)) as f:
                return [int(c) for c in f.read().split()]
        child = wait_until(children, 5, "the orphan's child")[0]
        self.addCleanup(self.end, child, proc_start(child))
        seen = {pid: proc_start(pid) for pid in (gc, child)}
        os.kill(p.pid, signal.SIGCONT)
        self.assertEqual(p.wait(), 0)
        left = [pid for pid, start in seen.items() if proc_start(pid) == start]
        self.assertEqual(left, [], "in /proc at serve's exit (orphan %d, its child %d); "
                         "stderr:\n%s" % (gc, child, p.stderr()))
        self.assertIn("killed 2 leftover process(es)", p.stderr())

    def test_a_leftover_that_cannot_be_killed_holds_the_exit_for_the_kill_deadline(self):
        """One that SIGKILL cannot end (EPERM) is waited for --kill-deadline, not for ever,
        and said."""
        p = self.mcpmux(["serve", "--kill-deadline", "500"] + self.ARGS +
                        ["--", FIXTURE, "--clear-env-grandchild"],
                        env=self.shim_env(nokill="exe"))
        gc = self.orphan(p)
        t0 = time.monotonic()
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)
        took = time.monotonic() - t0
        try:
            self.assertIn("1 leftover process(es) still there at mcpmux's exit: %d " % gc,
                          p.stderr())
            self.assertGreater(took, 0.5)
            self.assertLess(took, 0.1 + 0.5 + 1.0 * SLOW * (3 if SANITIZED else 1))
            self.assertTrue(alive(gc))
        finally:
            os.kill(gc, signal.SIGKILL)

    def test_an_exit_walk_that_proc_cannot_show_is_said_without_a_count(self):
        """/proc refuses every walk of the exit: it waits --kill-deadline and says that
        processes it could not see may be left, not a count or a list of none."""
        p = self.mcpmux(["serve", "--kill-deadline", "300"] + self.ARGS + ["--", FIXTURE],
                        env=self.shim_env(proc_errno=errno.EACCES, proc_ms=60000))
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)
        err = p.stderr()
        self.assertIn("processes /proc could not show may be left at mcpmux's exit", err)
        self.assertNotIn("leftover process(es)", err)


@needs_shim
class LeafBusy(Faults):
    """A cgroup leaf the kernel still counts a reaped server in, for a moment (as some
    kernels do): the end waits for the leaf to empty, looking again soon, not for the
    next grace, and is reported as the EOF end it was."""

    def end_with_busy_leaf(self, busy_ms):
        """A wrap run ended by mcpmux/endRun while its leaf stays busy for busy_ms after
        the first rmdir: (the end-of-run result, seconds it took)."""
        p = self.mcpmux(["-v", "--eof-grace", "3000", "--term-grace", "1000", "--",
                         FIXTURE], env=self.shim_env(leaf_busy_ms=busy_ms))
        p.send(call(1, "env"))
        self.assertEqual(p.msg()["id"], 1)
        if "cgroup: none usable here" in p.stderr() or "cgroup: off" in p.stderr():
            self.skipTest("no cgroup can be made here")
        t0 = time.monotonic()
        p.send(req(2, "mcpmux/endRun"))
        r = p.msg(15)["result"]
        took = time.monotonic() - t0
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)
        return r, took

    def test_wrap_end_of_run_waits_for_the_leaf_not_the_grace(self):
        r, took = self.end_with_busy_leaf(400)
        self.assertEqual(r["escalation"], "eof", r)
        self.assertGreaterEqual(r["ms"], 350, r)  # not before the leaf was empty
        self.assertLess(took, 2.0 * (3 if SANITIZED else 1), r)  # nor at eof-grace

    def test_a_leaf_busy_past_half_a_second_is_left_to_the_grace_steps(self):
        """Past half a second after the reap, what holds the leaf is taken for a process
        that escaped the walk: no more quick looks (a /proc walk each), the next look is
        the grace step's.  Here the leaf empties at 1.5 s, and the end comes at the
        eof-grace (3 s), as a SIGTERM step."""
        r, took = self.end_with_busy_leaf(1500)
        self.assertEqual(r["escalation"], "term", r)
        self.assertGreaterEqual(took, 2.8, r)


@needs_shim
class LeafGone(Faults):
    """A server's cgroup leaf removed between its mkdir and the server's start in it (by
    another process): the server starts without one, found by the process walk alone, and
    mcpmux says so."""

    def run_with_leaf_gone(self, at):
        """A wrap run whose leaf is removed just after its mkdir or its open (FAULT_LEAF_GONE
        AT): its server answers, and is ended with nothing left; mcpmux's stderr."""
        p = self.mcpmux(["-v"] + GRACE + ["--", FIXTURE], env=self.shim_env(leaf_gone=at))
        p.send(call(1, "env"))
        m = p.msg()
        if "cgroup: none usable here" in p.stderr() or "cgroup: off" in p.stderr():
            self.skipTest("no cgroup can be made here")
        self.assertIn("result", m, m)
        pid = m["result"]["structuredContent"]["pid"]
        with open("/proc/%d/cgroup" % pid) as f:
            self.assertNotRegex(f.read(), r"/s\.\d+$")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(alive(pid))
        self.assert_no_leftovers()
        self.assert_clean_stderr(p)
        return p.stderr()

    def test_clone3_into_a_removed_leaf_starts_the_server_without_one(self):
        """clone3() with CLONE_INTO_CGROUP fails with ENOENT for a removed cgroup."""
        err = self.run_with_leaf_gone("open")
        self.assertRegex(err, r"session [0-9a-f-]+: cannot start its server in its cgroup "
                         r"leaf: No such file or directory \(it runs without one: the process "
                         r"walk alone finds its tree\)")

    def test_a_leaf_the_server_cannot_join_is_said(self):
        """The leaf is gone before mcpmux opens it: the server is started with clone() and
        joins its leaf itself, as where clone3() is refused; that join fails."""
        err = self.run_with_leaf_gone("mkdir")
        self.assertRegex(err, r"session [0-9a-f-]+: its server could not join its cgroup "
                         r"leaf: No such file or directory \(it runs without one: the process "
                         r"walk alone finds its tree\)")

    def test_an_instance_cgroup_removed_again_as_it_is_made_again_is_made_once_more(self):
        """The instance cgroup removed while empty (by hand), then again right after the next
        server's leaf made it again (FAULT_INST_GONE=2, the start's mkdir being the 1st):
        made once more, that server is born in its leaf."""
        p = self.mcpmux(["-v"] + GRACE + ["--", FIXTURE], env=self.shim_env(inst_gone=2))
        p.send(call(1, "env"))
        m = p.msg()
        if "cgroup: none usable here" in p.stderr() or "cgroup: off" in p.stderr():
            self.skipTest("no cgroup can be made here")
        with open("/proc/%d/cgroup" % m["result"]["structuredContent"]["pid"]) as f:
            rel = f.read().strip().rsplit("::", 1)[-1]
        self.assertRegex(rel, r"/mcpmux\.%d/s\.1$" % p.pid)
        inst = own_cgroup_root() + os.path.dirname(rel)
        p.send(note("mcpmux/endRun"))
        wait_until(lambda: not os.path.exists(os.path.join(inst, "s.1")), 5,
                   "the first leaf to be removed")
        rmdir_once_empty(inst)
        p.send(call(2, "env"))
        m = p.msg()
        self.assertIn("result", m, m)
        pid = m["result"]["structuredContent"]["pid"]
        with open("/proc/%d/cgroup" % pid) as f:
            self.assertRegex(f.read().strip().rsplit("::", 1)[-1], r"/mcpmux\.%d/s\.2$" % p.pid,
                             p.stderr())
        self.assertNotIn("cannot make a cgroup leaf", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(alive(pid))
        self.assertFalse(os.path.exists(inst))
        self.assertEqual(self.counters(p.pid)["failed"], 1, "the instance cgroup removed once")
        self.assert_no_leftovers()


@needs_shim
class ProcErrors(Faults):
    """/proc that cannot be read for a while (EACCES as with hidepid, EMFILE as with a full
    descriptor table): the tree is not taken as gone, its grandchild is still found."""

    def run_with(self, err):
        s = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE, "--daemonize-grandchild"],
                        env=self.shim_env(proc_errno=err, proc_ms=600))
        env = lambda m: {"session": "p", "message": m}
        s.send(env(req(0, "ping")))
        self.assertEqual(s.msg()["event"], "started")
        self.assertEqual(s.msg()["message"]["id"], 0)
        gc = int(wait_until(lambda: [l for l in s.stderr().splitlines()
                                     if "grandchild" in l], 5, "the grandchild")[0].split()[-1])
        s.send(env(note("mcpmux/endRun")))
        ev = s.msg(10)
        self.assertEqual(ev["event"], "ended")
        self.assertFalse(alive(gc), "ended was reported while the grandchild lived")
        self.assertIn("cannot read every process", s.stderr())
        s.close_stdin()
        self.assertEqual(s.wait(10), 0)

    def test_eacces(self):
        self.run_with(errno.EACCES)

    def test_emfile(self):
        self.run_with(errno.EMFILE)


@needs_shim
class PoolGrant(Faults):
    def setUp(self):
        super().setUp()
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # a pool of the test's own

    def slot_files(self):
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        return [f for sub in os.listdir(d) for f in os.listdir(os.path.join(d, sub))
                if f.startswith("s.")]

    def test_stats_during_a_grant_keep_its_slot(self):
        from test_serve import Mux
        opts = ["--max-servers", "1", "--pool", "p"] + GRACE
        s = Mux(self.mcpmux(["serve"] + opts + ["--", FIXTURE]))
        self.assertIn("result", s.control(1, "mcpmux/stats")["message"])  # its pool is open
        # flock() 1: the instance's own file; 2: the pool's directory; 3: the new slot's
        # file, just made, locked 1.5 s later
        a = self.mcpmux(opts + ["--", FIXTURE],
                        env=self.shim_env(flock_slow=3, flock_ms=1500))
        wait_until(self.slot_files, 5, "a's slot file")
        pool = s.control(2, "mcpmux/stats")["message"]["result"]["pool"]
        self.assertEqual(pool["max"], 1)
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        self.assertEqual(len(self.slot_files()), 1, "a's slot is still counted")
        b = self.mcpmux(opts + ["-v", "--", FIXTURE])
        b.send(initialize(1))
        self.assertEqual(b.msg(15)["id"], 1)
        self.assertIn("its pool is full", b.stderr())  # a's idle server went first
        self.assertEqual(len(self.slot_files()), 1)
        for p in (a, b):
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        s.p.close_stdin()
        self.assertEqual(s.p.wait(), 0)
        self.assertEqual(self.counters(a.pid)["failed"], 1)
        self.assert_clean_stderr(a)
        self.assert_no_leftovers()

    def test_a_state_that_cannot_be_recorded_is_said_once(self):
        """A full file system under the pool (ENOSPC on the slot file's state, its first 5
        writes: the grant's and four busy/idle changes): one warning, not one a change;
        then one line when a state is recorded again; the requests are all answered."""
        a = self.mcpmux(["--max-servers", "1", "--pool", "p"] + GRACE + ["--", FIXTURE],
                        env=self.shim_env(pwrite_nospc="/pools/", pwrite_nospc_calls=5))
        a.send(initialize(0))
        self.assertEqual(a.msg()["id"], 0)
        again = "pool p: servers' states are recorded again"
        for i in range(1, 20):
            a.send(req(i, "ping"))
            self.assertEqual(a.msg()["id"], i)
            if again in a.stderr():
                break
        a.close_stdin()
        self.assertEqual(a.wait(), 0)
        err = a.stderr()  # with what mcpmux sums up at its exit
        self.assertEqual(err.count("cannot record"), 1, err)
        self.assertIn("pool p: cannot record a server's state: No space left on device (said "
                      "once, until they are all recorded again)\n", err)
        self.assertEqual(err.count(again + "\n"), 1, err)
        self.assertEqual(self.counters(a.pid)["failed"], 5)
        self.assert_clean_stderr(a)
        self.assert_no_leftovers()

    def slot_state(self, end):
        """What the one slot file whose name ends with end says."""
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        names = [os.path.join(d, sub, f) for sub in os.listdir(d)
                 for f in os.listdir(os.path.join(d, sub)) if f.startswith("s.")
                 and f.endswith(end)]
        self.assertEqual(len(names), 1, names)
        with open(names[0]) as f:
            return f.read()

    def test_one_servers_state_recorded_again_is_not_all(self):
        """ENOSPC on the first 6 writes of a state: a's grant, busy and idle, then b's. a's
        state recorded again (a ping) while b's still is not: no "recorded again" until
        b's is too."""
        from test_serve import Mux
        opts = ["--max-servers", "2", "--pool", "p"] + GRACE
        s = Mux(self.mcpmux(["serve"] + opts + ["--", FIXTURE],
                            env=self.shim_env(pwrite_nospc="/pools/", pwrite_nospc_calls=6)))
        again = "pool p: servers' states are recorded again"
        for sid in ("a", "b"):
            s.send(sid, initialize(0))
            self.assertEqual(s.msg(sid)["id"], 0)
        s.send("a", req(1, "ping"))
        self.assertEqual(s.msg("a")["id"], 1)
        wait_until(lambda: self.slot_state(".1").startswith("idle "), 5, "a's idle state")
        self.assertEqual(self.slot_state(".2"), "", "none of b's states was recorded")
        self.assertNotIn(again, s.p.stderr(), "a's state is recorded, not b's")
        s.send("b", req(1, "ping"))
        self.assertEqual(s.msg("b")["id"], 1)
        wait_until(lambda: again in s.p.stderr(), 5, "b's state recorded again")
        s.p.close_stdin()
        self.assertEqual(s.p.wait(), 0)
        err = s.p.stderr()
        self.assertEqual(err.count("cannot record"), 1, err)
        self.assertEqual(err.count(again + "\n"), 1, err)
        self.assertEqual(self.counters(s.p.pid)["failed"], 6)
        self.assert_clean_stderr(s.p)
        self.assert_no_leftovers()

    def test_each_servers_state_is_said_on_its_own(self):
        """Each server has a state file of its own: ENOSPC on a's only (its first 5
        writes: the grant's, then busy and idle for an initialize and a ping).  b's states,
        recorded meanwhile, are not said to be a's recorded again, and a's failing on does
        not make a second warning; "recorded again" comes once a's state is."""
        from test_serve import Mux
        opts = ["--max-servers", "2", "--pool", "p"] + GRACE
        s = Mux(self.mcpmux(["serve"] + opts + ["--", FIXTURE],
                            env=self.shim_env(pwrite_nospc=".1", pwrite_nospc_end=1,
                                              pwrite_nospc_calls=5)))
        again = "pool p: servers' states are recorded again"
        s.send("a", initialize(0))
        self.assertEqual(s.msg("a")["id"], 0)
        s.send("b", initialize(0))
        self.assertEqual(s.msg("b")["id"], 0)
        self.assertNotIn(again, s.p.stderr(), "b's state is recorded, not a's")
        s.send("a", req(1, "ping"))
        self.assertEqual(s.msg("a")["id"], 1)
        self.assertEqual(self.slot_state(".1"), "", "none of a's states was recorded")
        s.send("a", req(2, "ping"))
        self.assertEqual(s.msg("a")["id"], 2)
        wait_until(lambda: again in s.p.stderr(), 5, "a's state recorded again")
        self.assertRegex(self.slot_state(".1"), r"^(busy|idle) ")
        s.p.close_stdin()
        self.assertEqual(s.p.wait(), 0)
        err = s.p.stderr()
        self.assertEqual(err.count("cannot record"), 1, err)
        self.assertEqual(err.count(again + "\n"), 1, err)
        self.assertEqual(self.counters(s.p.pid)["failed"], 5)
        self.assert_clean_stderr(s.p)
        self.assert_no_leftovers()

    def test_a_server_whose_state_was_not_recorded_goes(self):
        """a's state is never recorded (ENOSPC on its slot file alone), b's is: once a's run
        ends, its slot file goes with the state it did not take, and the pool's states are
        recorded again, which is said."""
        from test_serve import Mux
        opts = ["--max-servers", "2", "--pool", "p"] + GRACE
        s = Mux(self.mcpmux(["serve"] + opts + ["--", FIXTURE],
                            env=self.shim_env(pwrite_nospc=".1", pwrite_nospc_end=1,
                                              pwrite_nospc_calls=1000)))
        again = "pool p: servers' states are recorded again"
        for sid in ("a", "b"):
            s.send(sid, initialize(0))
            self.assertEqual(s.msg(sid)["id"], 0)
        self.assertEqual(self.slot_state(".1"), "", "none of a's states was recorded")
        self.assertNotIn(again, s.p.stderr())
        s.send("a", {"jsonrpc": "2.0", "method": "mcpmux/endRun"})
        wait_until(lambda: again in s.p.stderr(), 5, "the states recorded again once a is gone")
        s.send("b", req(1, "ping"))
        self.assertEqual(s.msg("b")["id"], 1)
        s.p.close_stdin()
        self.assertEqual(s.p.wait(), 0)
        err = s.p.stderr()
        self.assertEqual(err.count("cannot record"), 1, err)
        self.assertEqual(err.count(again + "\n"), 1, err)
        self.assert_clean_stderr(s.p)
        self.assert_no_leftovers()

    def test_a_directory_locked_a_moment_at_the_bound_is_tried_again(self):
        """b waits for a's slot (a stopped: it cannot answer the ask).  Just as b's wait
        reaches its bound, another process holds the pool's directory locked for a moment
        (b stopped before its bound, the lock taken, b let go on past it: it finds the lock
        held, and stops there, FAULT_FLOCK_BUSY_STOP, until the lock is let go).  That is
        no stuck lock: b tries again, and starts counted, over the cap, as at any bound,
        not uncounted with a word of a directory that stayed locked."""
        opts = ["--max-servers", "1", "--pool", "p", "--kill-deadline", "2000"] + GRACE
        bound = 3.5  # (300 + 200 + 2000) ms + 1 s
        a = self.mcpmux(opts + ["--", FIXTURE])
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        os.kill(a.pid, signal.SIGSTOP)
        try:
            b = self.mcpmux(opts + ["-v", "--", FIXTURE], env=self.shim_env(flock_busy_stop=1))
            wait_until(lambda: "its pool is full" in b.stderr(), 10, "b to wait for a slot")
            t_want = time.monotonic()  # b's wait began before this
            d = os.path.join(self.tmp.name, "mcpmux", "pools")
            (sub,) = os.listdir(d)
            fd = os.open(os.path.join(d, sub), os.O_RDONLY | os.O_DIRECTORY)
            self.addCleanup(os.close, fd)

            def stop_b():
                os.kill(b.pid, signal.SIGSTOP)
                self.assertTrue(os.WIFSTOPPED(os.waitpid(b.pid, os.WUNTRACED)[1]))
            stop_b()
            while True:  # (b stopped while it held the lock: let it go on a moment)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    os.kill(b.pid, signal.SIGCONT)
                    stop_b()
            self.assertNotIn("came free", b.stderr(), "b reached its bound too soon")
            # b's bound passes while it is stopped (its clock goes on)
            time.sleep(max(0, t_want + bound + 0.1 - time.monotonic()))
            os.kill(b.pid, signal.SIGCONT)
            until = deadline(10)
            while True:  # b at its bound, stopped where it found the lock held
                pid, status = os.waitpid(b.pid, os.WUNTRACED | os.WNOHANG)
                if pid == b.pid:
                    break
                self.assertLess(time.monotonic(), until, "b never found the directory locked")
                time.sleep(0.01)
            self.assertTrue(os.WIFSTOPPED(status))
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.kill(b.pid, signal.SIGCONT)
            b.send(initialize(1))
            self.assertEqual(b.msg(10)["id"], 1)
            self.assertEqual(sorted(self.slot_files()),
                             sorted(["s.%d.1" % a.pid, "s.%d.1" % b.pid]))
        finally:
            os.kill(a.pid, signal.SIGCONT)
        err = b.stderr()
        self.assertNotIn("stayed locked", err)
        self.assertIn("pool p: no server's slot came free in 3.5 s: one more starts, 1 of 1 "
                      "live", err)
        # a, going on, answers the ask: the pool is back to one server
        wait_until(lambda: self.slot_files() == ["s.%d.1" % b.pid], 10,
                   "a's server to give its slot up")
        for p in (a, b):
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(b.pid)["failed"], 1)
        self.assert_clean_stderr(b)
        self.assert_no_leftovers()

    def test_an_ask_for_a_slot_freed_meanwhile_leaves_no_file(self):
        opts = ["--max-servers", "1", "--pool", "p"] + GRACE
        a = self.mcpmux(opts + ["--", FIXTURE])
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        # flock() 3: b's look at a's slot, seen held; a is gone when b asks for it
        b = self.mcpmux(opts + ["--", FIXTURE],
                        env=self.shim_env(flock_slow=3, flock_after=1, flock_ms=1500))
        time.sleep(0.3)
        a.close_stdin()
        self.assertEqual(a.wait(), 0)
        b.send(initialize(1))
        self.assertEqual(b.msg()["id"], 1)
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assertEqual(self.counters(b.pid)["failed"], 1)
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        left = [f for sub in os.listdir(d) for f in os.listdir(os.path.join(d, sub))
                if f[:2] in ("s.", "a.")]
        # a file for a.PID.SEQ would mark a later instance with a's pid as asked
        self.assertEqual(left, [])
        self.assert_no_leftovers()




@needs_shim
class LongTurn(Faults):
    """A loop turn made long by other work (mcpmux stopped in it, as a slow start of
    another server or many sessions ending at once on a loaded machine make it): a
    teardown's grace is not shortened by it, nor does it signal a server that exited."""

    def end_in_a_long_turn(self, lines):
        """serve (-v), session a initialized, then lines (a's end of run and b's first
        message) in one read, one turn, made long where b's server starts: mcpmux stops
        at the open of b's cgroup leaf (FAULT_OPEN_STOP), and goes on once a's server, if
        its stdin was closed before, has exited, and a's --eof-grace (1 s) is past.  a's
        server exits at once on stdin's EOF.  The end of run's result, which says a's
        escalation."""
        from test_serve import Mux
        m = Mux(self.mcpmux(["serve", "-v", "--eof-grace", "1000", "--term-grace", "1000",
                             "--", FIXTURE], env=self.shim_env(open_stop="/s.2")))
        m.send("a", call(1, "env"))
        apid = m.msg("a")["result"]["structuredContent"]["pid"]
        if "cgroup: none usable here" in m.p.stderr() or "cgroup: off" in m.p.stderr():
            self.skipTest("no cgroup leaf is made here")
        m.p.write(b"".join(encode({"session": s, "message": msg}) for s, msg in lines))
        wait_until(lambda: proc_state(m.p.pid) == "T", 10, "mcpmux stopped at b's leaf")
        t0 = time.monotonic()
        if lines[0][0] == "a":
            wait_until(lambda: proc_state(apid) == "Z", 10, "a's server to exit")
        time.sleep(max(0, 1.5 - (time.monotonic() - t0)))  # the long turn: past a's grace
        os.kill(m.p.pid, signal.SIGCONT)
        r = m.msg("a", 15)
        self.assertEqual(r["id"], 2)
        self.assertEqual(m.msg("b", 15)["id"], 1)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers()
        return r["result"]

    def test_a_grace_counts_from_its_start_not_from_a_long_turns(self):
        """b's first message, whose server's start makes the turn long, then a's end of
        run: a's grace counts from the end of run, not from the start of that turn, and
        a's server ends with escalation eof, not signalled at the next turn as if its
        grace had run out."""
        r = self.end_in_a_long_turn((("b", initialize(1)), ("a", req(2, "mcpmux/endRun"))))
        self.assertEqual(r["escalation"], "eof", r)

    def test_a_grace_that_runs_out_in_a_long_turn_finds_the_server_exited(self):
        """a's end of run, then b's first message, whose server's start makes the turn
        long: a's grace runs out in that turn, while a's server has exited at its EOF
        and is not reaped yet.  The grace finds it exited and signals nothing: escalation
        eof, not term."""
        r = self.end_in_a_long_turn((("a", req(2, "mcpmux/endRun")), ("b", initialize(1))))
        self.assertEqual(r["escalation"], "eof", r)
        self.assertEqual(r["exit"], {"code": 0}, r)


@needs_shim
class ConfigFiles(Faults):
    def test_a_backup_is_made_where_the_file_system_has_no_hard_links(self):
        """The backup is linked into place so that it never replaces a FILE.bak; where
        link() is refused (vfat, some FUSE file systems), it is renamed into place without
        replacing one (renameat2 RENAME_NOREPLACE), and an existing one is still kept:
        here one that mcpmux did not see when it looked for it (lstat() says ENOENT, as when
        another process makes it right after), so that the rename is what keeps it."""
        path = os.path.join(self.tmp.name, "mcp.json")
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        with open(path, "wb") as f:
            f.write(text)
        # Every link() and linkat() fails: the backup's and the file's unnamed files
        # cannot be linked, nor the backup's named one.
        env = self.shim_env(link_fail="1,2,3,4")
        p = self.mcpmux(["config", "wrap", "--in-place", path], env=env)
        self.assertEqual(p.wait(), 0, p.stderr())
        with open(path + ".bak", "rb") as f:
            self.assertEqual(f.read(), text)
        with open(path, "rb") as f:
            self.assertIn(b"mcpmux", f.read())
        self.assertEqual([n for n in os.listdir(self.tmp.name) if "mcpmux-" in n], [])
        # Again, on the wrapped file: the older backup is kept as it is.
        env = self.shim_env(link_fail="1,2,3,4", lstat_enoent="/mcp.json.bak")
        p = self.mcpmux(["config", "unwrap", "--in-place", path], env=env)
        self.assertEqual(p.wait(), 0, p.stderr())
        self.assertIn("(an older one, kept)", p.stderr())
        with open(path + ".bak", "rb") as f:
            self.assertEqual(f.read(), text)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), text)
        self.assertEqual([n for n in os.listdir(self.tmp.name) if "mcpmux-" in n], [])
        # The lstat(), the backup's two links and the new file's unnamed one failed.
        self.assertEqual(self.counters(p.pid)["failed"], 4)

    def test_a_directory_that_cannot_be_synced_is_said(self):
        """The new file is renamed into place, then its directory synced: where that sync
        fails, the rewrite is done (exit 0, the file wrapped, its backup made) and mcpmux
        says that the new name may not survive a power loss."""
        d = os.path.join(self.tmp.name, "d")
        os.mkdir(d)
        path = os.path.join(d, "mcp.json")
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        with open(path, "wb") as f:
            f.write(text)
        p = self.mcpmux(["config", "wrap", "--in-place", path],
                        env=self.shim_env(fsync_dir=str(errno.EIO)))
        self.assertEqual(p.wait(), 0, p.stderr())
        err = p.stderr()
        self.assertIn("mcpmux: '%s' is replaced, but its directory cannot be synced: the new "
                      "name may not survive a power loss: Input/output error" % path, err)
        self.assertIn("wrapped 1 of 1 server; backup in %s.bak" % path, err)
        with open(path + ".bak", "rb") as f:
            self.assertEqual(f.read(), text)
        with open(path, "rb") as f:
            self.assertIn(b"mcpmux", f.read())
        self.assertEqual(sorted(os.listdir(d)), ["mcp.json", "mcp.json.bak"])

    def test_named_temporary_files_of_a_file_named_near_the_longest_name(self):
        """Where the unnamed files cannot be linked, the backup and the new file are
        written under temporary names: for a file whose name is as long as FILE.bak
        allows, those names are cut to fit too."""
        d = os.path.join(self.tmp.name, "d")
        os.mkdir(d)
        longest = os.pathconf(d, "PC_NAME_MAX")
        path = os.path.join(d, "m" * (longest - len(".bak") - 5) + ".json")
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        with open(path, "wb") as f:
            f.write(text)
        p = self.mcpmux(["config", "wrap", "--in-place", path],
                        env=self.shim_env(link_fail="1,2,3,4"))
        self.assertEqual(p.wait(), 0, p.stderr())
        with open(path + ".bak", "rb") as f:
            self.assertEqual(f.read(), text)
        with open(path, "rb") as f:
            self.assertIn(b"mcpmux", f.read())
        self.assertEqual(sorted(os.listdir(d)),
                         sorted([os.path.basename(path), os.path.basename(path) + ".bak"]))

    def test_a_run_killed_while_writing_leaves_nothing_behind(self):
        """The backup and the new file are written with no name, and linked only once
        they are whole: a run killed while it writes either (here at their fsync) leaves
        the original as it was, and no half-written or temporary file beside it."""
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        for nth, left in ((1, ["mcp.json"]), (2, ["mcp.json", "mcp.json.bak"])):
            with self.subTest(fsync=nth):
                d = os.path.join(self.tmp.name, str(nth))
                os.mkdir(d)
                path = os.path.join(d, "mcp.json")
                with open(path, "wb") as f:
                    f.write(text)
                p = self.mcpmux(["config", "wrap", "--in-place", path],
                                env=self.shim_env(fsync_stop=str(nth)))
                wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux stopped at its fsync")
                os.kill(p.pid, signal.SIGKILL)
                self.assertEqual(p.wait(), -signal.SIGKILL)
                self.assertEqual(sorted(os.listdir(d)), left)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), text)
                if nth == 2:
                    with open(path + ".bak", "rb") as f:
                        self.assertEqual(f.read(), text)

    def test_a_change_made_during_the_rewrite_is_kept(self):
        """The client saves the file while mcpmux rewrites it (here while mcpmux is stopped
        at the new file's fsync): mcpmux replaces nothing, says so, and removes the backup
        it made; the same with a change of the same size whose writer then put the
        modification time back."""
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        theirs = {"longer": b'{"mcpServers":{"a":{"command":"srv","args":["x","y"]}}}\n',
                  "same size, same mtime": text.replace(b'"x"', b'"z"')}
        for what, new in theirs.items():
            with self.subTest(what):
                d = os.path.join(self.tmp.name, what.replace(" ", "-").replace(",", ""))
                os.mkdir(d)
                path = os.path.join(d, "mcp.json")
                with open(path, "wb") as f:
                    f.write(text)
                p = self.mcpmux(["config", "wrap", "--in-place", path],
                                env=self.shim_env(fsync_stop="2"))
                wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux stopped at its fsync")
                st = os.stat(path)
                with open(path, "r+b") as f:
                    f.write(new)
                if len(new) == len(text):
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
                    self.assertEqual(os.stat(path).st_mtime_ns, st.st_mtime_ns)
                os.kill(p.pid, signal.SIGCONT)
                self.assertEqual(p.wait(), 1, p.stderr())
                self.assertIn("'%s' changed while it was being rewritten (nothing written; "
                              "try again)" % path, p.stderr())
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), new)
                self.assertEqual(os.listdir(d), ["mcp.json"])

    def test_a_symlink_replaced_during_the_rewrite_is_seen(self):
        """FILE is a symlink, and while mcpmux rewrites its target (stopped at the new
        file's fsync) the client saves FILE by renaming a new file over it, or FILE is
        pointed at another file: FILE no longer leads to the file read.  mcpmux replaces
        nothing, says so and removes the backup it made, where it rewrote the old target
        and said it had wrapped the servers of a FILE that still had none."""
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        new = b'{"mcpServers":{"a":{"command":"srv","args":["x","y"]}}}\n'
        for how in ("replaced by a file", "pointed elsewhere"):
            with self.subTest(how):
                d = os.path.join(self.tmp.name, how.replace(" ", "-"))
                os.mkdir(d)
                real, link = os.path.join(d, "real.json"), os.path.join(d, "mcp.json")
                with open(real, "wb") as f:
                    f.write(text)
                os.symlink("real.json", link)
                p = self.mcpmux(["config", "wrap", "--in-place", link],
                                env=self.shim_env(fsync_stop="2"))
                wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux stopped at its fsync")
                saved = os.path.join(d, "saved.json")
                with open(saved, "wb") as f:
                    f.write(new)
                if how == "replaced by a file":
                    os.rename(saved, link)
                else:
                    os.symlink("saved.json", link + ".new")
                    os.rename(link + ".new", link)
                os.kill(p.pid, signal.SIGCONT)
                self.assertEqual(p.wait(), 1, p.stderr())
                self.assertIn("'%s' changed while it was being rewritten (nothing written; "
                              "try again)" % link, p.stderr())
                with open(link, "rb") as f:
                    self.assertEqual(f.read(), new)
                with open(real, "rb") as f:
                    self.assertEqual(f.read(), text)
                self.assertNotIn("real.json.bak", os.listdir(d))

    def test_an_attribute_that_cannot_be_copied_is_named(self):
        """An extended attribute that cannot be set on the new file (one only a privileged
        process may set): a warning that names it, for the backup and for the file; the
        text is written, with the attributes that could be copied."""
        path = os.path.join(self.tmp.name, "mcp.json")
        text = b'{"mcpServers":{"a":{"command":"srv","args":["x"]}}}\n'
        with open(path, "wb") as f:
            f.write(text)
        try:
            os.setxattr(path, "user.kept", b"1")
            os.setxattr(path, "user.refused", b"2")
        except OSError as e:
            self.skipTest(f"no extended attributes here: {e}")
        p = self.mcpmux(["config", "wrap", "--in-place", path],
                        env=self.shim_env(xattr_fail="user.refused"))
        self.assertEqual(p.wait(), 0, p.stderr())
        err = p.stderr()
        self.assertIn("cannot give the backup %s.bak 1 extended attribute(s) of the "
                      "original, user.refused among them: Operation not permitted" % path, err)
        self.assertIn("cannot give %s 1 extended attribute(s) of the original, user.refused "
                      "among them: Operation not permitted" % path, err)
        with open(path, "rb") as f:
            self.assertIn(b"mcpmux", f.read())
        for f in (path, path + ".bak"):
            with self.subTest(file=f):
                self.assertEqual(os.getxattr(f, "user.kept"), b"1")
                self.assertNotIn("user.refused", os.listxattr(f))


@needs_shim
class ReadErrors(Faults):
    """`mcpmux log` on a file with a bad block (FAULT_EIO_FILE, FAULT_EIO_AT): the read
    error is said and fails the command; it is never taken for a line still being
    written, and a rotated file's leaves the new file followed."""

    def ping_log(self, name, *ids):
        """A log a wrap wrote with a ping for each of ids."""
        path = os.path.join(self.tmp.name, name)
        w = self.mcpmux(["--log", path, "--", FIXTURE])
        for i in ids:
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        with open(path, "rb") as f:
            return path, f.read()

    def test_show_and_stats_fail_at_a_read_error_mid_line(self):
        path, data = self.ping_log("t.log", 1, 2)
        bad = data.index(b'"id":2,')  # in the middle of ping #2's line
        env = self.shim_env(eio_file="/t.log", eio_at=bad)
        for cmd in ("show", "stats"):
            with self.subTest(cmd=cmd):
                p = self.mcpmux(["log", cmd, "--color", "never", path], env=env)
                out = p.read_to_eof(10).decode()
                self.assertEqual(p.wait(), 1, p.stderr())
                self.assertIn("%s: read error: Input/output error" % path, p.stderr())
                self.assertNotIn("cut short", p.stderr())
                if cmd == "show":
                    self.assertIn("-> ping #1", out)
                    self.assertNotIn("ping #2", out)

    def test_follow_ends_at_a_read_error(self):
        """Not a line still being written, waited for in silence: the error, and the end."""
        path, data = self.ping_log("t.log", 1, 2)
        p = self.mcpmux(["log", "show", "--follow", "--color", "never", path],
                        env=self.shim_env(eio_file="/t.log", eio_at=data.index(b'"id":2,')))
        while "-> ping #1" not in p.line().decode():
            pass
        self.assertEqual(p.wait(), 1, p.stderr())
        self.assertIn("%s: read error: Input/output error" % path, p.stderr())

    def test_follow_a_read_error_on_the_rotated_file_leaves_the_new_one_followed(self):
        _, one = self.ping_log("1.log", 1)
        _, more = self.ping_log("2.log", 2, 3, 4)
        lines = more.splitlines(keepends=True)
        ping = {i: b"".join(l for l in lines if b'"id":%d,' % i in l) for i in (2, 3, 4)}
        path = os.path.join(self.tmp.name, "f.log")
        with open(path, "wb") as f:
            f.write(one)
        # every read of the file once it is f.log.1 fails where it has bytes
        p = self.mcpmux(["log", "show", "--follow", "--color", "never", path],
                        env=self.shim_env(eio_file="/f.log.1"))
        seen = []

        def until(text):
            while text not in (seen or [""])[-1]:
                seen.append(p.line().decode())
        until("* ended")  # all of it read: the bad block is only what comes after
        os.rename(path, path + ".1")
        with open(path, "wb") as f:
            f.write(ping[2])
        until("ping #2")  # on the new file; the old one is read 2 s more
        with open(path + ".1", "ab") as f:
            f.write(ping[3])  # the bad block
        wait_until(lambda: "read error" in p.stderr(), 5, "the read error to be said")
        self.assertIn("%s: read error: Input/output error" % path, p.stderr())
        with open(path, "ab") as f:
            f.write(ping[4])
        until("ping #4")
        self.assertNotIn("ping #3", "".join(seen))
        self.assertIsNone(p.p.poll())


@needs_shim
class LogBecomesFifo(Faults):
    """The log's path becomes a FIFO between mcpmux's look at it and its open (the first
    open() of it stops mcpmux, FAULT_OPEN_STOP): it is written as a FIFO is, held open
    for reading too (docs/traffic-log.md), not refused or opened for writing only."""

    def start_while_a_fifo_is_made(self, reader):
        log = os.path.join(self.tmp.name, "t.log")
        w = self.mcpmux(["--log", log] + GRACE + ["--", FIXTURE],
                        env=self.shim_env(open_stop="/t.log"))
        wait_until(lambda: proc_state(w.pid) == "T", 10, "mcpmux stopped at the log's open")
        os.mkfifo(log)
        fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK) if reader else None
        os.kill(w.pid, signal.SIGCONT)
        return w, fd

    def pings_then_exit(self, w):
        for i in range(20):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())
        self.assertNotIn("cannot write", w.stderr())
        self.assertEqual(self.counters(w.pid)["failed"], 1)
        self.assertRegex(w.stderr(), r"traffic log .*: \d+ bytes of records still in the FIFO "
                         r"at exit")

    def test_no_reader(self):
        w, _ = self.start_while_a_fifo_is_made(reader=False)
        self.pings_then_exit(w)

    def test_a_reader_that_goes_away(self):
        """Once the reader that was there at the open has gone, the records wait in the
        pipe for the next one, as they would had the FIFO been there from the start."""
        w, fd = self.start_while_a_fifo_is_made(reader=True)
        try:
            w.send(req(100, "ping"))
            self.assertEqual(w.msg()["id"], 100)
            wait_until(lambda: select.select([fd], [], [], 0.05)[0], 10, "a record in the FIFO")
        finally:
            os.close(fd)
        self.pings_then_exit(w)



@needs_shim
class LogFull(Faults):
    """A file system that fills up exactly at the end of a record (FAULT_NOSPC_FILE: a
    write of several records takes the first whole, the next write fails with ENOSPC),
    then has room again: nothing of a record was cut, so the log goes on with no empty
    line (which its reader would warn about as a line that is no record)."""

    def test_a_write_cut_between_two_records_leaves_no_empty_line(self):
        log = os.path.join(self.tmp.name, "t.log")
        w = self.mcpmux(["--log", log] + GRACE + ["--", FIXTURE],
                        env=self.shim_env(nospc_file="/t.log"))
        # messages of one read: their records leave in one write
        w.send(*[req(i, "ping") for i in range(5)])
        self.assertEqual(sorted(w.msg()["id"] for _ in range(5)), list(range(5)))
        for i in range(5, 20):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())
        self.assertEqual(self.counters(w.pid)["failed"], 1)
        self.assertIn("No space left on device", w.stderr())
        self.assertIn("writing again", w.stderr())
        with open(log, "rb") as f:
            lines = f.read().split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual([n for n, l in enumerate(lines[:-1], 1) if not l], [],
                         "empty lines in the log")
        for line in lines[:-1]:
            json.loads(line)
        r = subprocess.run([MCPMUX, "log", "show", log], capture_output=True, env=self.env,
                           stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, b""))

    def test_a_rotation_onto_a_file_another_instance_wrote_starts_it_whole(self):
        """A record cut in the middle; the log rotated, and another instance that shares it
        writes the new file first: the cut record stays the old file's (which still ends
        in it), and this instance's records follow the other's with no empty line."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.mcpmux(["-v", "--log", log] + GRACE + ["--", FIXTURE],
                        env=self.shim_env(nospc_file="/t.log", nospc_cut=10,
                                          nospc_calls=1000))
        w.send(*[req(i, "ping") for i in range(5)])
        self.assertEqual(sorted(w.msg()["id"] for _ in range(5)), list(range(5)))
        wait_until(lambda: "No space left on device" in w.stderr(), 10, "the log full")
        os.rename(log, log + ".1")
        other = self.mcpmux(["--log", log, "--", FIXTURE])
        other.send(req(1, "ping"))
        self.assertEqual(other.msg()["id"], 1)
        other.close_stdin()
        self.assertEqual(other.wait(), 0)
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopened" in w.stderr(), 10, "the log reopened")
        w.send(req(100, "ping"))
        self.assertEqual(w.msg()["id"], 100)
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())
        with open(log + ".1", "rb") as f:
            old = f.read()
        self.assertFalse(old.endswith(b"\n"), "the old file ends with the cut record")
        with open(log, "rb") as f:
            lines = f.read().split(b"\n")
        self.assertEqual([n for n, l in enumerate(lines[:-1], 1) if not l], [],
                         "empty lines in the new file")
        ids = [json.loads(l).get("id") for l in lines[:-1]]
        self.assertIn(100, ids)
        r = subprocess.run([MCPMUX, "log", "show", log], capture_output=True, env=self.env,
                           stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual((r.returncode, r.stderr), (0, b""))


@needs_shim
@unittest.skipIf(SANITIZED, "a sanitizer's allocator comes before the shim's malloc()")
class OutOfMemory(Faults):
    """Allocations that fail just after a given message came in (FAULT_MALLOC_AFTER): the
    message mcpmux cannot keep is answered, never lost in silence, and the run goes on.
    The marker is sent escaped ("\\u004f" for "O") where only the server's answer must
    hold it: the fixture writes it unescaped."""

    def live_servers(self):
        """The fixture servers of the test's tree that are alive."""
        return [q for q in self.tagged() if comm(q) == "mcp-fixture" and alive(q)]

    def goes_on_and_ends(self, p, srv=None, absent=None):
        """After the fault: p's next call is answered, then it ends (ends())."""
        p.send(call(2, "echo", text="after"))
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "after")
        self.ends(p, srv, absent)

    def ends(self, p, srv=None, absent=None):
        """p's client's EOF ends it with 0, the fault was hit, `absent` is not on its
        stderr; serve (srv) ends at SIGTERM with 0; nothing is left."""
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertGreaterEqual(self.counters(p.pid)["failed"], 1)
        if absent is not None:
            self.assertNotIn(absent, p.stderr())
        if srv is not None:
            srv.p.send_signal(signal.SIGTERM)
            self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    def oom_env(self, marker, **faults):
        return self.shim_env(malloc_after=marker, **faults)

    def wrap_initialized(self, env, *opts, server_args=()):
        p = self.mcpmux(GRACE + list(opts) + ["--", FIXTURE] + list(server_args), env=env)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        p.send(note("notifications/initialized"))
        return p

    def serve_initialized(self, env):
        """serve (with env), its session s initialized: the process."""
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE], env=env)
        p.send({"session": "s", "message": initialize(0)})
        self.assertEqual(p.msg()["event"], "started")
        self.assert_response(p.msg()["message"], 0)
        p.send({"session": "s", "message": note("notifications/initialized")})
        return p

    @staticmethod
    def marked(msg, marker):
        """msg's line, its "TEXT" the marker, sent escaped: only the answer holds it."""
        return json.dumps(msg).replace("TEXT", "\\u%04x" % ord(marker[0]) + marker[1:])

    def test_a_request_that_cannot_be_tracked_is_refused(self):
        """No memory for its entry in the table of requests in flight: a request would
        get no error if its server died.  It is refused at once, not forwarded (the
        server does not crash on it), and the run goes on."""
        p = self.wrap_initialized(self.oom_env("OOM-1"))
        p.send(call("OOM-1", "crash"))
        err = self.assert_error(p.msg(), "OOM-1", -32000)
        self.assertIn("out of memory", err["message"])
        self.goes_on_and_ends(p)

    def test_an_abandoned_list_with_no_memory_keeps_the_first_few_and_counts_all(self):
        """No memory for the list of more pids than the backend keeps in itself (4): the
        result lists the first 4, and stderr counts every pid it found, not the 4.  (As
        Unkillable: the fixture's tree cannot be signalled, and no cgroup.)"""
        env = self.oom_env("OOM-C", nokill="mcp-fixture", malloc_min=28, malloc_max=28,
                           malloc_only="calloc")
        env["MCPMUX_CGROUP"] = "off"
        p = self.mcpmux(Unkillable.ARGS + ["--", FIXTURE, "--ignore-sigterm", "--ignore-eof"],
                        env=env)
        p.send(call(1, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        p.send(call(2, "spawn", count=6))
        kids = [int(k) for k in p.msg()["result"]["content"][0]["text"].split()]
        p.send(req("OOM-C", "mcpmux/endRun"))
        r = p.msg(10)["result"]
        self.assertEqual(r["escalation"], "abandoned")
        self.assertEqual(len(r["abandoned"]), 4)
        self.assertLessEqual(set(r["abandoned"]), set([pid] + kids))
        for k in [pid] + kids:
            os.kill(k, signal.SIGKILL)
        p.close_stdin()
        self.assertEqual(p.wait(10), 1)
        self.assertGreaterEqual(self.counters(p.pid)["failed"], 1)
        err = p.stderr()
        self.assertIn("7 process(es) would not die", err)
        self.assertIn("out of memory: 4 of the 7 pids it left are listed", err)
        for k in [pid] + kids:
            wait_until(lambda: not alive(k), 5, f"pid {k} to go")

    def test_a_replay_whose_id_cannot_be_kept_is_refused(self):
        """No memory to keep the id of the initialize replayed to a fresh server (the
        strdup of its 17 bytes): the request that started it gets a -32000 error that says
        out of memory, and the next request gets another fresh server."""
        env = self.oom_env("OOM-R", malloc_min=18, malloc_max=18, malloc_only="malloc")
        p = self.wrap_initialized(env)
        p.send(req(1, "mcpmux/endRun"))
        self.assert_response(p.msg(10), 1)
        p.send(req("OOM-R", "ping"))
        err = self.assert_error(p.msg(10), "OOM-R", -32000)
        self.assertIn("handshake (out of memory)", err["message"])
        self.goes_on_and_ends(p)

    def test_a_log_record_memory_ran_out_for_is_dropped_whole(self):
        """No memory to build a record of the traffic log (FAULT_MALLOC_MIN: the growth of
        its buffer past 1 MiB for the escaped text of a line of 300,000 control bytes, the
        marker at its end): that record, and the record of its error answer after it in
        the same turn, are dropped, and stderr says so; every record of a later turn is
        whole.  The head of the cut record was written, and took the line of the next
        one (the request after it), in silence."""
        log = os.path.join(self.tmp.name, "t.log")
        env = self.oom_env("OOM-L", malloc_min=1 << 20, malloc_only="realloc")
        p = self.wrap_initialized(env, "--log", log)
        p.write(b"\x01" * 300000 + b"OOM-L\n")
        self.assert_error(p.msg(10), None, -32700)
        p.send(req(2, "ping"))
        self.assert_response(p.msg(), 2)
        self.goes_on_and_ends(p)
        with open(log, "rb") as f:
            recs = [json.loads(line) for line in f]
        self.assertEqual([(r["dir"], r.get("id")) for r in recs if "dir" in r and
                          r.get("method") != "notifications/initialized"],
                         [("in", 0), ("out", 0), ("in", 2), ("out", 2),
                          ("in", 2), ("out", 2)])
        self.assertEqual(p.stderr().count("out of memory for a record"), 1, p.stderr())

    def test_a_batch_over_max_message_whose_errors_cannot_be_held_gets_one(self):
        """No memory for the array of errors that answers each request of a batch of the
        client's over --max-message (FAULT_MALLOC_MIN: its growth past 32 KiB, the marker
        in its last request; 300 requests, whose array, some 42 KB, is within the 64 KiB
        it may take, and a notification): its requests get one -32600 with id null, and
        stderr says they could not each be answered, and that the notification was dropped
        (as when they get their array); the run goes on."""
        env = self.oom_env("OOM-A", malloc_min=32768, malloc_only="realloc")
        p = self.wrap_initialized(env, "--max-message", "4096")
        p.send([req(k, "ping") for k in range(299)] + [note("notifications/x"),
                                                       req("OOM-A", "ping")])
        self.assert_error(p.msg(10), None, -32600)
        wait_until(lambda: "could not each be answered" in p.stderr(), 5, "the error")
        self.assertIn("a notification of the client over --max-message", p.stderr())
        self.goes_on_and_ends(p)

    def test_serve_a_batch_over_max_message_whose_errors_cannot_be_held_gets_one(self):
        """serve: the same for a batch in a session's envelope (the connection's own session
        s, and one of no connection's, s1): one -32600 with id null in the session's
        envelope, and stderr says, of that session, that its requests could not each be
        answered and that the notification was dropped; the session goes on."""
        for sid in ("s", "s1"):
            with self.subTest(session=sid):
                p = self.mcpmux(["serve"] + GRACE + ["--max-message", "4096", "--", FIXTURE],
                                env=self.oom_env("OOM-A", malloc_min=32768,
                                                 malloc_only="realloc"))
                p.send({"session": "s", "message": initialize(0)})
                self.assertEqual(p.msg()["event"], "started")
                self.assert_response(p.msg()["message"], 0)
                p.send({"session": sid,
                        "message": [req(k, "ping") for k in range(299)]
                        + [note("notifications/x"), req("OOM-A", "ping")]})
                m = p.msg(10)
                self.assertEqual(m["session"], sid, m)
                self.assert_error(m["message"], None, -32600)
                wait_until(lambda: "session %s: out of memory: the requests of a batch of the "
                           "client's over --max-message could not each be answered" % sid
                           in p.stderr(), 5, "the error")
                self.assertIn("session %s: a notification of the client over --max-message"
                              % sid, p.stderr())
                p.send({"session": "s", "message": call(2, "echo", text="after")})
                m = p.msg(10)
                self.assertEqual(m["message"]["result"]["content"][0]["text"], "after")
                p.close_stdin()
                self.assertEqual(p.wait(), 0)
                self.assertEqual(self.counters(p.pid)["failed"], 1)
                self.assert_no_leftovers()

    def test_a_line_held_behind_an_ended_run_that_cannot_be_held_is_refused(self):
        """No memory to hold a request behind an ended run's last replies (the held
        queue's growth past 4 KiB, for the marked line of 5 KB): it is not handled and gets
        a -32000 "out of memory" error, in its place after those replies; the lines held
        before it (a request, a notification) still reach the next run, and the line after
        it (a request over --max-message) gets its -32600 after that error; stderr says
        the line could not be held."""
        env = self.oom_env("OOM-H", malloc_min=4096, malloc_only="realloc")
        p = self.wrap_initialized(env, "--max-message", "8192",
                                  server_args=["--stderr-chatter"])
        p.send(call(1, "sleep", ms=60000), req("e", "mcpmux/endRun"), req(2, "ping"),
               note("notifications/x"), req("OOM-H", "ping", {"pad": "p" * 5000}),
               req("big", "ping", {"pad": "p" * 9000}))
        got = [p.msg(10) for _ in range(5)]
        key = [(m["id"], m["error"]["code"] if "error" in m else "result") for m in got]
        # the ended run's replies first, then the held lines' in their order (the ping's
        # answer comes from the next run's server, later)
        self.assertEqual(key[:2], [(1, -32000), ("e", "result")], got)
        self.assertEqual([k for k in key[2:] if k[0] != 2],
                         [("OOM-H", -32000), ("big", -32600)], got)
        self.assertIn((2, "result"), key[2:])
        self.assertEqual(got[key.index(("OOM-H", -32000))]["error"]["message"], "out of memory")
        wait_until(lambda: "a line of the client's could not be held behind an ended run's"
                   " replies: not handled: its request gets an error" in p.stderr(), 5,
                   "the error")
        # the held notification reached the next run's server (--stderr-chatter)
        wait_until(lambda: "mcp-fixture: got notifications/x" in p.stderr(), 5,
                   "the held notification at the next run's server")
        self.goes_on_and_ends(p)

    def test_a_notification_or_non_json_held_behind_an_ended_run_that_cannot_be_held(self):
        """No memory to hold, behind an ended run's last replies, a notification, a line
        that is not JSON, or a JSON line that is no message (the held queue's growth past
        4 KiB, for a line of 5 KB): the notification is dropped, the other lines get the
        parse error or the -32600 with id null they would have had, held in their place;
        stderr says which it was (not "0 requests"), and a request held after it still
        reaches the next run."""
        notification = json.dumps(note("notifications/x", {"pad": "OOM-N" + "p" * 5000}))
        for line, said, errors in (
                (notification, "a notification, dropped", []),
                ('{"oops OOM-N' + "p" * 5000, "it is not JSON and gets a parse error",
                 [(None, -32700)]),
                (json.dumps({"foo": 2, "pad": "OOM-N" + "p" * 5000}),
                 "it is no JSON-RPC message and gets an Invalid Request error",
                 [(None, -32600)])):
            with self.subTest(said=said):
                env = self.oom_env("OOM-N", malloc_min=4096, malloc_only="realloc")
                p = self.wrap_initialized(env, "--max-message", "8192",
                                          server_args=["--stderr-chatter"])
                p.send(call(1, "sleep", ms=60000), req("e", "mcpmux/endRun"))
                p.write(line.encode() + b"\n")
                p.send(req(3, "ping"))
                got = [p.msg(10) for _ in range(3 + len(errors))]
                key = [(m["id"], m["error"]["code"] if "error" in m else "result")
                       for m in got]
                self.assertEqual(key, [(1, -32000), ("e", "result")] + errors
                                 + [(3, "result")], got)
                wait_until(lambda: "a line of the client's could not be held behind an "
                           "ended run's replies: not handled: " + said in p.stderr(), 5,
                           "what became of the line")
                self.assertNotIn("0 requests", p.stderr())
                self.assertNotIn("got notifications/x", p.stderr())
                self.assertNotIn("got invalid JSON", p.stderr())
                self.goes_on_and_ends(p)

    @staticmethod
    def hold_three_lines_behind_an_end(p):
        """p (wrap): a call in flight and an end of run, then in one write a ping, a
        notification that brings the held queue near 4 KB, and the request marked
        "OOM-F", all held behind that run's last replies."""
        p.send(call(1, "sleep", ms=60000), req("e", "mcpmux/endRun"))
        lines = [json.dumps(req(2, "ping"))]
        pad = 4096 - (len(lines[0]) + 2) - 2 - len(json.dumps(note("notifications/x",
                                                                   {"pad": ""}))) - 20
        lines.append(json.dumps(note("notifications/x", {"pad": "p" * pad})))
        lines.append(json.dumps(req("OOM-F", "ping")))
        p.write(("\n".join(lines) + "\n").encode())

    def test_lines_held_behind_an_ended_run_are_let_go_when_an_error_cannot_be_held(self):
        """The held queue nearly full (a request and a notification, some 4 KB), then a
        request that it has no memory to hold, nor its error (the queue's growth past
        8 KiB, twice): every line held is let go, each request among them gets a -32000
        "out of memory" error at once (the notification is dropped), and stderr counts
        them; the run goes on."""
        env = self.oom_env("OOM-F", malloc_min=8192, malloc_count=2, malloc_only="realloc")
        p = self.wrap_initialized(env, "--max-message", "8192",
                                  server_args=["--stderr-chatter"])
        self.hold_three_lines_behind_an_end(p)
        got = [p.msg(10) for _ in range(4)]
        key = sorted((str(m["id"]), m["error"]["code"] if "error" in m else "result")
                     for m in got)
        self.assertEqual(key, [("1", -32000), ("2", -32000), ("OOM-F", -32000),
                               ("e", "result")], got)
        for m in got:
            if m["id"] in (2, "OOM-F"):
                self.assertEqual(m["error"]["message"], "out of memory")
        wait_until(lambda: "out of memory: 3 lines of the client's held behind an ended "
                   "run's replies were dropped (their 2 requests get an error each) and 0 "
                   "answers of mcpmux's own held with them go now" in p.stderr(), 5,
                   "the count")
        self.goes_on_and_ends(p)
        self.assertNotIn("got notifications/x", p.stderr())

    def test_an_own_answer_held_that_cannot_be_queued_when_let_go_is_said(self):
        """While the client's pipe is full (fill_pipe()), behind an ended run's replies:
        the -32600 for a request over --max-message held, a notification (the held queue
        near 4 KB), then a request that the held queue has no memory for, nor for its error
        (its growth past 8 KiB, twice): the lines held are let go, the -32600 goes now,
        and the client's queue has no memory for it (the source that would queue it
        behind those replies, then its first chunk: the next two allocations of any size):
        stderr says a message from mcpmux was lost, not only how many answers went; the
        marked request still gets its error, and the run goes on."""
        env = self.oom_env("OOM-F", malloc_min=8192, malloc_count=2, malloc_then=2)
        p = self.wrap_initialized(env, "--max-message", "4M")
        fill_pipe(p, call(5, "huge", bytes=3 << 20))
        p.send(call(1, "sleep", ms=60000), req("e", "mcpmux/endRun"))
        big = json.dumps(req("big", "ping", {"pad": "p" * (4200 << 10)}))
        own = ('{"jsonrpc":"2.0","id":"big","error":{"code":-32600,"message":"Invalid Request: '
               'message too large (%d bytes, the limit is 4194304: see --max-message)"}}'
               % len(big))
        pad = 4096 - (len(own) + 2) - 2 - len(json.dumps(note("notifications/x",
                                                              {"pad": ""}))) - 20
        lines = [big, json.dumps(note("notifications/x", {"pad": "p" * pad})),
                 json.dumps(req("OOM-F", "ping"))]
        p.write(("\n".join(lines) + "\n").encode())
        wait_until(lambda: "answers of mcpmux's own held with them go now" in p.stderr(), 10,
                   "the held lines let go")
        self.assertIn("out of memory: 2 lines of the client's held behind an ended run's "
                      "replies were dropped (their 1 requests get an error each) and 1 "
                      "answers of mcpmux's own held with them go now", p.stderr())
        self.assertIn("out of memory: a message from mcpmux was lost", p.stderr())
        self.assertEqual(p.msg(10)["id"], 5)
        got = [p.msg(10) for _ in range(3)]
        key = sorted((str(m["id"]), m["error"]["code"] if "error" in m else "result")
                     for m in got)
        self.assertEqual(key, [("1", -32000), ("OOM-F", -32000), ("e", "result")], got)
        self.goes_on_and_ends(p)

    def test_the_error_of_a_held_line_let_go_waits_in_the_memory_kept_for_errors(self):
        """While the client's pipe is full (fill_pipe()), and mcpmux's own queue holds a
        -32600 of 1.5 KB (a first chunk of its size: no room left), behind an ended run's
        replies: a request and a notification held (some 4 KB), then a request that the
        held queue has no memory for, nor for its error (its growth past 8 KiB, twice): the
        lines held are let go, and the client's queue has no new chunk (16 KiB) for the
        -32000 errors of the two requests either: they wait in the memory kept for such
        errors and go all the same, not said lost; the run goes on."""
        env = self.oom_env("OOM-F", malloc_min=8192, malloc_count=4)
        p = self.wrap_initialized(env, "--max-message", "4M", server_args=["--stderr-chatter"])
        fill_pipe(p, call(5, "huge", bytes=3 << 20))
        long_id = "k" * 1500
        # no message: mcpmux's -32600, queued before the marker is read (the notification
        # after it reached the server)
        p.send({"jsonrpc": "2.0", "id": long_id}, note("notifications/y"))
        wait_until(lambda: "mcp-fixture: got notifications/y" in p.stderr(), 10,
                   "the line before the notification handled")
        self.hold_three_lines_behind_an_end(p)
        wait_until(lambda: "answers of mcpmux's own held with them go now" in p.stderr(), 10,
                   "the held lines let go")
        self.assertIn("out of memory: 3 lines of the client's held behind an ended run's "
                      "replies were dropped (their 2 requests get an error each) and 0 "
                      "answers of mcpmux's own held with them go now", p.stderr())
        self.assertEqual(p.msg(10)["id"], 5)
        got = [p.msg(10) for _ in range(5)]
        key = sorted((str(m["id"]), m["error"]["code"] if "error" in m else "result")
                     for m in got)
        self.assertEqual(key, sorted([("1", -32000), ("2", -32000), ("OOM-F", -32000),
                                      ("e", "result"), (long_id, -32600)]), got)
        self.assertNotIn("the error for a line of the client's held behind an ended run's "
                         "replies was lost", p.stderr())
        self.goes_on_and_ends(p)
        self.assertEqual(self.counters(p.pid)["failed"], 4)

    def test_a_batch_that_cannot_be_stripped_of_its_answers_is_refused(self):
        """After an end-of-run, wrap takes the answers out of a client's batch (the next
        run's server never sent their requests); no memory for the batch without them
        (its first 256 bytes): each request of the batch gets a -32000 "out of memory"
        error, in one array, no server is started for it (nothing of it is sent), and the
        next request starts the next run."""
        env = self.oom_env("OOM-B", malloc_min=256, malloc_max=256, malloc_only="realloc")
        p = self.wrap_initialized(env)
        p.send(req(1, "mcpmux/endRun"))
        self.assert_response(p.msg(10), 1)
        wait_until(lambda: not self.live_servers(), 10, "the ended run's server to be gone")
        p.send([{"jsonrpc": "2.0", "id": "gone", "result": {}}, req("OOM-B", "ping"),
                note("notifications/x"), call(3, "echo", text="x")])
        got = p.msg()
        self.assertEqual([(g["id"], g["error"]["code"], g["error"]["message"]) for g in got],
                         [("OOM-B", -32000, "out of memory"), (3, -32000, "out of memory")])
        self.assertEqual(self.live_servers(), [])
        self.assertIn("out of memory: a batch of the client's was refused", p.stderr())
        self.goes_on_and_ends(p)

    def test_a_refused_batch_has_not_answered_a_gone_servers_request(self):
        """A batch of the client's in a run, with an answer to a request of the server gone
        with the run before, and no memory for the batch without that answer (its first
        256 bytes): the batch is refused, and the request is still in flight: the answer
        sent again is dropped, not passed on to the current server."""
        env = self.oom_env("OOM-C", malloc_min=256, malloc_max=256, malloc_only="realloc")
        p = self.wrap_initialized(env)
        p.send(call(1, "ask"))
        answer = {"jsonrpc": "2.0", "id": p.msg()["id"], "result": {}}
        p.send(req("e", "mcpmux/endRun"))
        self.assertEqual(sorted(str(p.msg(10)["id"]) for _ in range(2)), ["1", "e"])
        wait_until(lambda: not self.live_servers(), 10, "the ended run's server to be gone")
        p.send(req(4, "ping"))
        self.assert_response(p.msg(10), 4)
        p.send([answer, req("OOM-C", "ping"), note("notifications/x"),
                call(3, "echo", text="x")])
        got = p.msg()
        self.assertEqual([(g["id"], g["error"]["code"], g["error"]["message"]) for g in got],
                         [("OOM-C", -32000, "out of memory"), (3, -32000, "out of memory")])
        p.send(answer)
        wait_until(lambda: "is for a server whose run is over: dropped" in p.stderr(), 5,
                   "the warning")
        p.send(call(5, "handshake"))
        m = p.msg()
        self.assertEqual(m["result"]["structuredContent"]["answersSeen"], 0, m)
        self.goes_on_and_ends(p)

    def suspended_for_a_batch(self, marker, serve, *server_args, again=True):
        """wrap, or serve's session "s" (serve), with --idle-suspend, subscribed to
        fixture://a and at level warning, its server suspended (again: resumed by a
        request, then suspended again, so that what mcpmux scans held lines with has room
        for the elements of a batch already); after a read holding marker, the first 256
        bytes of a buffer (realloc) cannot be had.  The process, functions that send a
        message and get the next, and a batch to send: an answer to the server that is
        gone, a request (id marker), a notification and another request (id 7), which
        would change what a fresh server reports (`handshake`)."""
        env = self.oom_env(marker, malloc_min=256, malloc_max=256, malloc_only="realloc")
        args = ["--idle-suspend", "0.4"] + GRACE + ["--", FIXTURE] + list(server_args)
        p = self.mcpmux((["serve"] if serve else []) + args, env=env)
        if serve:
            mux = Mux(p)
            send, recv = (lambda m: mux.send("s", m)), (lambda t=10: mux.msg("s", t))
        else:
            send, recv = p.send, p.msg
        send(initialize(0))
        self.assert_response(recv(), 0)
        send(note("notifications/initialized"))
        send(req(1, "resources/subscribe", {"uri": "fixture://a"}))
        self.assert_response(recv(), 1)
        send(req(2, "logging/setLevel", {"level": "warning"}))
        self.assert_response(recv(), 2)
        wait_until(lambda: not self.live_servers(), 10, "the idle server to be suspended")
        if again:
            send(req(3, "ping"))
            self.assert_response(recv(), 3)
            wait_until(lambda: not self.live_servers(), 10, "the resumed server to be suspended")
        batch = [{"jsonrpc": "2.0", "id": "gone", "result": {"roots": []}},
                 req(marker, "resources/subscribe", {"uri": "fixture://oom"}),
                 note("notifications/roots/list_changed"),
                 req(7, "logging/setLevel", {"level": "debug"})]
        return p, send, recv, batch

    def assert_batch_refused(self, got, marker):
        """got: one -32000 "out of memory" error for each request of the batch, in one
        array."""
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g.get("error")) for g in got],
                         [(marker, {"code": -32000, "message": "out of memory"}),
                          (7, {"code": -32000, "message": "out of memory"})])

    def assert_fresh_server_heard_none_of_it(self, p, send, recv):
        """The next request is answered by a fresh server that got the replay and nothing
        of the refused batch; the client's EOF ends the process with 0, nothing left."""
        send(call(8, "handshake"))
        hs = self.assert_response(recv(), 8)["structuredContent"]
        self.assertEqual((hs["subscriptions"], hs["level"], hs["answersSeen"]),
                         (["fixture://a"], "warning", 0), hs)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertGreaterEqual(self.counters(p.pid)["failed"], 1)
        self.assertIn("out of memory: dropped a client response", p.stderr())
        self.assert_no_leftovers()

    def batch_to_a_suspended_session(self, marker, serve, again=True):
        """A suspended session takes the answers out of a client's batch (the fresh server
        never sent their requests) before a fresh server starts for the rest; no memory for
        the batch without them: each request of the batch gets a -32000 "out of memory"
        error, in one array, no server is started for it, and the next request resumes
        the session, its fresh server hearing nothing of the batch."""
        p, send, recv, batch = self.suspended_for_a_batch(marker, serve, again=again)
        send(batch)
        self.assert_batch_refused(recv(), marker)
        self.assertEqual(self.live_servers(), [])
        self.assert_fresh_server_heard_none_of_it(p, send, recv)

    def test_a_suspended_sessions_batch_that_cannot_be_stripped_is_refused(self):
        self.batch_to_a_suspended_session("OOM-S", serve=False)

    def test_serve_a_suspended_sessions_batch_that_cannot_be_stripped_is_refused(self):
        self.batch_to_a_suspended_session("OOM-T", serve=True)

    def test_a_batch_whose_answer_cannot_be_scanned_alone_is_refused(self):
        """The same at the session's first suspend, where what mcpmux scans the batch's
        elements with, one at a time, has no memory yet: it is that memory (its first 256
        bytes) that cannot be had, as the answer is scanned.  An element that could not be
        scanned may be an answer: the batch is refused as above, where it went to the
        fresh server whole, with the answer to a request that server never sent."""
        self.batch_to_a_suspended_session("OOM-W", serve=False, again=False)

    def batch_to_a_resuming_session(self, marker, serve):
        """A session being resumed (its fresh server slow to answer the replayed
        initialize) takes the answers to no request of the fresh server out of a client's
        batch; no memory for the batch without them: each request of the batch gets a
        -32000 "out of memory" error, in one array, the request held before it is still
        answered by the fresh server, which hears nothing of the batch, and the session
        goes on."""
        behave = os.path.join(self.tmp.name, "behave")
        open(behave, "w").close()
        p, send, recv, batch = self.suspended_for_a_batch(
            marker, serve, "--behave-file=" + behave)
        with open(behave, "w") as f:
            f.write("slow-init=1000\n")
        send(req(5, "ping"))  # held while the fresh server starts
        wait_until(self.live_servers, 10, "the fresh server")
        send(batch)
        self.assert_batch_refused(recv(), marker)
        self.assert_response(recv(10), 5)
        self.assert_fresh_server_heard_none_of_it(p, send, recv)

    def test_a_resuming_sessions_batch_that_cannot_be_stripped_is_refused(self):
        self.batch_to_a_resuming_session("OOM-U", serve=False)

    def test_serve_a_resuming_sessions_batch_that_cannot_be_stripped_is_refused(self):
        self.batch_to_a_resuming_session("OOM-V", serve=True)

    def suspended_with_room_to_parse(self, marker, *server_args):
        """wrap with --idle-suspend, its server suspended once a line longer than those to
        come was parsed (mcpmux's parser has room for them already); after a read holding
        marker, the held buffer's growth (realloc, not its first 256 bytes) fails.  The
        process."""
        env = self.oom_env(marker, malloc_min=1024, malloc_only="realloc")
        p = self.wrap_initialized(env, "--idle-suspend", "0.4", server_args=server_args)
        p.send(req(1, "ping", {"pad": "y" * 3000}))
        self.assert_response(p.msg(), 1)
        wait_until(lambda: not self.live_servers(), 10, "the idle server to be suspended")
        return p

    def test_a_held_line_that_cannot_be_kept_is_refused_and_those_before_it_stay(self):
        """Lines held for a server being resumed: one that the held buffer has no room
        for (it must grow) is answered with an error; the line held before it still
        reaches the fresh server, and its answer the client."""
        behave = os.path.join(self.tmp.name, "behave")
        open(behave, "w").close()
        p = self.suspended_with_room_to_parse("OOM-2", "--behave-file=" + behave)
        with open(behave, "w") as f:
            f.write("slow-init=1000\n")
        p.send(req(2, "ping"))  # held while the fresh server starts
        wait_until(self.live_servers, 10, "the fresh server")
        p.send(req("OOM-2", "ping", {"pad": "x" * 1000}))  # the held buffer must grow
        err = self.assert_error(p.msg(), "OOM-2", -32000)
        self.assertIn("out of memory", err["message"])
        self.assert_response(p.msg(10), 2)
        self.ends(p)

    def test_a_line_that_cannot_be_held_starts_no_server(self):
        """A suspended session's line that cannot be held (out of memory) is answered with
        an error, and no server starts for it (one started, to hear the replay, for a
        message already answered): an end-of-run finds the session still suspended."""
        p = self.suspended_with_room_to_parse("OOM-5")
        p.send(req("OOM-5", "ping", {"pad": "x" * 1000}))
        err = self.assert_error(p.msg(), "OOM-5", -32000)
        self.assertIn("out of memory", err["message"])
        p.send(req(2, "mcpmux/endRun"))
        r = self.assert_response(p.msg(10), 2)
        self.assertEqual((r["pid"], r.get("suspended")), (None, True))
        self.ends(p)

    def test_a_line_that_cannot_be_held_for_the_replay_starts_none(self):
        """The next run's first message (not initialize) waits for the handshake replay to
        its fresh server; one that cannot be held (out of memory) is answered with an
        error, and the server is sent no replay for it: at the end-of-run it exits at its
        EOF (busy with a slow replayed initialize, it was past its EOF grace)."""
        behave = os.path.join(self.tmp.name, "behave")
        open(behave, "w").close()
        env = self.oom_env("OOM-6", malloc_min=1024, malloc_only="realloc")
        p = self.wrap_initialized(env, server_args=["--behave-file=" + behave])
        p.send(req(1, "ping", {"pad": "y" * 3000}))
        self.assert_response(p.msg(), 1)
        with open(behave, "w") as f:
            f.write("slow-init=3000\n")
        p.send(req(2, "mcpmux/endRun"))
        self.assert_response(p.msg(10), 2)
        p.send(req("OOM-6", "ping", {"pad": "x" * 1000}))
        err = self.assert_error(p.msg(), "OOM-6", -32000)
        self.assertIn("out of memory", err["message"])
        p.send(req(3, "mcpmux/endRun"))
        r = self.assert_response(p.msg(10), 3)
        self.assertEqual((r["exit"], r["escalation"]), ({"code": 0}, "eof"))
        self.ends(p)

    def test_a_session_that_cannot_be_entered_is_refused_and_serve_goes_on(self):
        """serve: no memory for a new session's entry in the table of sessions (the table's
        first, FAULT_MALLOC_MIN/MAX: its header).  The session's request is refused with an
        error, and serve goes on: the next session runs."""
        env = self.oom_env("OOM-4", malloc_min=64, malloc_max=64, malloc_only="malloc")
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE], env=env)
        # A first run, ended: what mcpmux parses with is ready, and the table empty again.
        p.send({"session": "warm", "message": initialize(0)})
        self.assertEqual(p.msg()["event"], "started")
        self.assert_response(p.msg()["message"], 0)
        p.send({"session": "warm", "message": req(1, "mcpmux/endRun")})
        self.assert_response(p.msg()["message"], 1)
        self.assertEqual(p.msg()["event"], "ended")
        p.send({"session": "OOM-4", "message": initialize(0)})
        m = p.msg()
        self.assertEqual(m["session"], "OOM-4")
        err = self.assert_error(m["message"], 0, -32000)
        self.assertIn("out of memory", err["message"])
        p.send({"session": "after", "message": initialize(0)})
        self.assertEqual(p.msg()["event"], "started")
        self.assert_response(p.msg()["message"], 0)
        self.ends(p)

    def test_a_server_that_cannot_be_entered_by_pid_is_still_reaped_and_ended(self):
        """No memory for a server's entry in the table of servers by pid (the table's first:
        a server started to resume a suspended run).  The server runs, its exit is still
        seen and its tree ended: its run is suspended again, resumed again, and nothing is
        left at the end.  The fallback is said on stderr."""
        env = self.oom_env("OOM-5", malloc_min=64, malloc_max=64, malloc_only="malloc")
        p = self.wrap_initialized(env, "--idle-suspend", "0.3")
        wait_until(lambda: not self.live_servers(), 10, "the idle server to be suspended")
        p.send(req("OOM-5", "ping"))  # its server is started, with no room in the table
        self.assert_response(p.msg(), "OOM-5")
        wait_until(lambda: not self.live_servers(), 10, "the resumed server to be suspended again")
        p.send(call(2, "echo", text="after"))
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "after")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertGreaterEqual(self.counters(p.pid)["failed"], 1)
        self.assertRegex(p.stderr(), r"out of memory: server \d+ is not in the table of "
                         r"servers by pid \(it is found in a list instead\)")
        self.assert_no_leftovers()

    def test_a_server_whose_pool_slot_cannot_be_had_is_not_started(self):
        """No memory for a server's pool slot (--max-servers: its calloc() of 120 bytes,
        FAULT_MALLOC_MIN/MAX) when a suspended session's request comes: the server is not
        started, where it started uncounted (over the cap, maybe) in silence.  The request
        gets an error that says why, stderr says it once, and the next request starts a
        server that holds the pool's one slot."""
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # a pool of the test's own
        env = self.oom_env("OOM-P", malloc_min=120, malloc_max=120, malloc_only="calloc")
        p = self.wrap_initialized(env, "--idle-suspend", "0.3", "--max-servers", "1",
                                  "--pool", "p")
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")

        def slots():
            return [f for sub in os.listdir(pools) for f in os.listdir(os.path.join(pools, sub))
                    if f.startswith("s.")]
        wait_until(lambda: not self.live_servers() and not slots(), 10,
                   "the idle server to be suspended, its slot free")
        p.send(req("OOM-P", "ping"))
        err = self.assert_error(p.msg(), "OOM-P", -32000)
        self.assertIn("Cannot allocate memory", err["message"])
        self.assertEqual((self.live_servers(), slots()), ([], []))
        p.send(call(2, "echo", text="after"))
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "after")
        self.assertEqual(len(self.live_servers()), 1)
        self.assertEqual(len(slots()), 1, "the server holds its slot")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assertEqual(p.stderr().count("could not be restarted: Cannot allocate memory"), 1,
                         p.stderr())
        self.assert_no_leftovers()

    def test_a_line_said_with_no_memory_left_reaches_stderr(self):
        """The same, and no memory left for the line that says it either (FAULT_MALLOC_THEN:
        the next allocation fails too, which was a chunk of stderr's queue): with nothing
        queued, the line is written straight out, where it was dropped and only counted
        (as if stderr had not been read in time)."""
        env = self.oom_env("OOM-K", malloc_min=64, malloc_max=64, malloc_only="malloc",
                           malloc_then=1)
        p = self.wrap_initialized(env, "--idle-suspend", "0.3")
        wait_until(lambda: not self.live_servers(), 10, "the idle server to be suspended")
        p.send(req("OOM-K", "ping"))  # its server is started, with no room in the table
        self.assert_response(p.msg(), "OOM-K")
        wait_until(lambda: "out of memory" in p.stderr(), 10, "the line that says it",
                   lambda: p.stderr()[-500:])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 2)
        self.assertRegex(p.stderr(), r"out of memory: server \d+ is not in the table of "
                         r"servers by pid \(it is found in a list instead\)")
        self.assertNotIn("lines of stderr dropped", p.stderr())
        self.assert_no_leftovers()

    def full_stderr_pipe(self, room=False):
        """A pipe filled with whole lines, that nobody reads: its two ends (the write end
        for mcpmux's stderr, to be closed once it is started).  With room, its first line
        is read: the pipe takes one page (4096 bytes) more."""
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(w, False)
        try:
            while True:
                os.write(w, b"x" * 4095 + b"\n")  # whole lines, as atomic writes
        except BlockingIOError:
            pass
        os.set_blocking(w, True)
        if room:
            self.assertEqual(os.read(r, 4096), b"x" * 4095 + b"\n")
        return r, w

    def read_until_dropped_then_eof(self, p, r):
        """Read stderr's pipe again until the count of the lines dropped is there; then EOF
        on stdin ends the run with 0.  What the pipe got, to its end, and the count's line
        (asserted to be the only one)."""
        os.set_blocking(r, False)
        got, end = b"", deadline(10)
        while b"lines of stderr dropped" not in got:
            rd, _, _ = select.select([r], [], [], max(0, end - time.monotonic()))
            self.assertTrue(rd, "no count of the lines dropped: %r" % got[-300:])
            got += os.read(r, 1 << 20)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        end = deadline(10)
        while True:  # the rest, to EOF (the keeper shares the pipe, and exits too)
            rd, _, _ = select.select([r], [], [], max(0, end - time.monotonic()))
            self.assertTrue(rd, "no EOF on stderr: %r" % got[-300:])
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            got += chunk
        said = [l for l in got.split(b"\n") if b"lines of stderr dropped" in l]
        self.assertEqual(len(said), 1, said)
        return got, said[0]

    def relayed_stderr_lost(self, marker, chunk, first="", before="", tail="", after=""):
        """mcpmux's stderr a pipe that is full and not read, and the server's stderr relayed
        (with a traffic log): the fixture writes `first` (queued, when not empty), then a
        line that holds marker (after `before`, in the same write, and with `tail` at its
        end), for which stderr's queue cannot have a new chunk (`chunk` bytes with its
        header: FAULT_MALLOC_MIN and _MAX), then `after` (when not empty: queued, memory
        back).  With `before`, the pipe has room for one page (4096 bytes): that line is
        cut there.  The pipe is read again until the count of the lines dropped is there,
        which must say why; EOF on stdin ends the run with 0.  What the pipe got, to the
        end."""
        r, w = self.full_stderr_pipe(room=bool(before))
        log = os.path.join(self.tmp.name, "t.jsonl")
        env = self.oom_env(marker, malloc_min=chunk, malloc_max=chunk, malloc_only="malloc")
        try:
            p = self.mcpmux(["--log", log] + GRACE + ["--", FIXTURE], stderr=w, env=env)
        finally:
            os.close(w)

        def relayed(text):  # read from the server's pipe: its record is in the log
            with open(log) as f:
                return any(r.get("event") == "stderr" and text.rstrip("\n") in r.get("text", "")
                           for r in map(json.loads, f))
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        if first:
            p.send(call(1, "stderr", text=first))
            self.assert_response(p.msg(), 1)
            wait_until(lambda: relayed(first), 10, "the first line relayed")
        lost = marker + ": a line of the server that no memory is left to queue" + tail + "\n"
        # The marker escaped: the fixture writes it, mcpmux reads it from the server only.
        p.write(json.dumps(call(2, "stderr", text="TEXT")).replace(
            "TEXT", json.dumps(before)[1:-1] + "\\u004f" + lost[1:-1] + "\\n").encode() +
            b"\n")
        self.assert_response(p.msg(), 2)
        wait_until(lambda: relayed(lost), 10, "the lost line read from the server")
        if after:
            p.send(call(3, "stderr", text=after))
            self.assert_response(p.msg(), 3)
            wait_until(lambda: relayed(after), 10, "the line after it relayed")
        got, said = self.read_until_dropped_then_eof(p, r)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assertNotIn(lost.encode(), got)
        self.assertEqual(said, b"mcpmux: 1 lines of stderr dropped (stderr could not be "
                               b"queued: out of memory)")
        self.assert_no_leftovers()
        return got

    def test_a_server_stderr_line_that_cannot_be_queued_is_counted(self):
        """A server's stderr relayed to a stderr pipe that is full, nothing queued: the
        queue's first chunk (1 KiB) cannot be had for what stderr does not take.  The line
        is dropped and counted, and the count, which says that memory ran out, is written
        once stderr is read again; where it was lost with nothing said."""
        self.relayed_stderr_lost("OOM-R", (1 << 10) + 32)

    def test_a_server_stderr_line_cut_by_a_full_pipe_is_the_only_one_counted(self):
        """The same with room in the pipe for the line before it, written in the same
        write and read in the same read: that line goes out whole, the lost one is cut,
        and only the lost one is counted."""
        before = "a line of the server, written whole " + "a" * 3000 + "\n"
        got = self.relayed_stderr_lost("OOM-H", (1 << 10) + 32, before=before,
                                       tail=" " + "b" * 1400)
        self.assertIn(before.encode() + b"OOM-H", got)

    def test_a_server_stderr_line_cut_for_want_of_memory_is_ended_before_the_next(self):
        """The same, and a line of the server after it, which is queued: the cut line is
        ended before it, so that no line the reader gets is two of the server's run
        together (its rest, up to its end, is dropped)."""
        before = "a line of the server, written whole " + "a" * 3000 + "\n"
        after = "a line of the server after the cut one\n"
        got = self.relayed_stderr_lost("OOM-N", (1 << 10) + 32, before=before,
                                       tail=" " + "b" * 1400, after=after)
        lost = b"OOM-N: a line of the server that no memory is left to queue " + b"b" * 1400
        lines = got.split(b"\n")
        self.assertEqual(lines[-1], b"")
        cut = [l for l in lines if l.startswith(b"OOM-N")]
        self.assertEqual(len(cut), 1, cut)
        self.assertTrue(lost.startswith(cut[0]), cut[0][-100:])
        self.assertEqual(lines[lines.index(cut[0]) + 1], after.encode()[:-1])
        self.assertEqual(set(lines[:-1]) - set(cut),
                         {b"x" * 4095, before.encode()[:-1], after.encode()[:-1],
                          b"mcpmux: 1 lines of stderr dropped (stderr could not be queued: "
                          b"out of memory)"})

    def test_a_server_stderr_line_behind_a_queued_one_that_cannot_be_queued_is_counted(self):
        """The same behind a line of the server already queued: the queue's next chunk
        (16 KiB) cannot be had.  The line queued before it is written, then the count."""
        first = "a line of the server, queued " + "y" * 960 + "\n"
        got = self.relayed_stderr_lost("OOM-S", (16 << 10) + 32, first)
        self.assertIn(first.encode() + b"mcpmux: 1 lines of stderr dropped", got)

    def test_a_line_dropped_for_want_of_memory_is_said_to_be(self):
        """mcpmux's own line (a server started with no room in the table of servers by
        pid), with stderr a pipe that is full and not read, and no memory for a chunk of
        stderr's queue either (FAULT_MALLOC_THEN): it is dropped and counted, and the count
        says that memory ran out, not that stderr was not read in time."""
        env = self.oom_env("OOM-L", malloc_min=64, malloc_max=64, malloc_only="malloc",
                           malloc_then=1)
        r, w = self.full_stderr_pipe()
        try:
            p = self.mcpmux(GRACE + ["--idle-suspend", "0.3", "--", FIXTURE], stderr=w,
                            env=env)
        finally:
            os.close(w)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        p.send(note("notifications/initialized"))
        wait_until(lambda: not self.live_servers(), 10, "the idle server to be suspended")
        p.send(req("OOM-L", "ping"))  # its server is started, with no room in the table
        self.assert_response(p.msg(), "OOM-L")
        got, said = self.read_until_dropped_then_eof(p, r)
        self.assertEqual(self.counters(p.pid)["failed"], 2)
        self.assertNotIn(b"is not in the table of servers by pid", got)
        self.assertEqual(said, b"mcpmux: 1 lines of stderr dropped (stderr could not be "
                               b"queued: out of memory)")
        self.assert_no_leftovers()

    def test_lines_dropped_for_two_causes_are_counted_for_each(self):
        """A traffic log on stderr, a pipe that is full and not read: a record that the
        queue has no new chunk for (16 KiB and its header) is dropped for want of memory,
        then one bigger than the queue's bound for want of a reader.  The count says how
        many lines were dropped for each cause, not the last cause for them all."""
        r, w = self.full_stderr_pipe()
        env = self.oom_env("OOM-C", malloc_min=(16 << 10) + 32, malloc_max=(16 << 10) + 32,
                           malloc_only="malloc")
        try:
            p = self.mcpmux(["--log", "-"] + GRACE + ["--", FIXTURE], stderr=w, env=env)
        finally:
            os.close(w)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        # A record that fills a chunk of its own to its end: the next one needs a chunk.
        p.send(req(1, "ping", {"pad": "y" * (20 << 10)}))
        self.assert_response(p.msg(), 1)
        p.send(req("OOM-C", "ping", {"pad": "z" * (16 << 10)}))
        self.assert_response(p.msg(), "OOM-C")
        p.send(req(2, "ping", {"pad": "w" * (70 << 10)}))
        self.assert_response(p.msg(), 2)
        got, said = self.read_until_dropped_then_eof(p, r)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assertFalse(b"z" * 100 in got or b"w" * 100 in got, "a dropped record written")
        self.assertEqual(said, b"mcpmux: 2 lines of stderr dropped (1: stderr was not read "
                               b"in time; 1: stderr could not be queued: out of memory)")
        self.assert_no_leftovers()

    def queue_oom_env(self, marker, count=1):
        """The first new chunk of a client's queue after a read that holds marker fails
        (FAULT_MALLOC_MIN and _MAX: 16 KiB and its header, and not the parser's memory,
        which mcpmux may have given back while idle); with count, that many new chunks
        fail (a large count: the queue cannot grow at all, even for the error that would
        replace an answer)."""
        chunk = (16 << 10) + 32
        return self.oom_env(marker, malloc_min=chunk, malloc_max=chunk, malloc_only="malloc",
                            malloc_count=count)

    def lost_behind_a_full_queue(self, p, line, put=lambda m: m, get=lambda m: m, failed=1):
        """A 3 MiB answer fills the client's pipe, and its rest is queued (the client reads
        nothing); then `line` goes out, whose answer holds the marker and meets the fault.
        The big answer is read, then what came in the lost answer's place (returned); a
        call after it is answered, and EOF ends the run with 0.  put and get wrap and
        unwrap a message (serve's envelope); failed: the allocations that failed (None: at
        least two, the answer's and its error's)."""
        huge = 3 << 20
        fill_pipe(p, put(call(1, "huge", bytes=huge)))
        p.write(line.encode() + b"\n")
        # Nothing is read before the answer met the fault: a client that reads meanwhile
        # may empty the queue, and the answer then goes out at once, with no new chunk.
        wait_until(lambda: "out of memory" in p.stderr(), 10, "the answer to find no memory")
        m = get(p.msg())
        self.assertEqual(m["id"], 1)
        self.assertEqual(len(m["result"]["content"][0]["text"]), huge)
        lost = get(p.msg())
        p.send(put(call(2, "echo", text="after")))
        self.assertEqual(get(p.msg())["result"]["content"][0]["text"], "after")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        if failed is None:
            self.assertGreaterEqual(self.counters(p.pid)["failed"], 2)
        else:
            self.assertEqual(self.counters(p.pid)["failed"], failed)
        self.assertIn("out of memory: a server's answer for the client was lost (an error "
                      "went in its place)", p.stderr())
        return lost

    def serve_answer_lost(self, marker, count=1, failed=1):
        """serve_initialized() with queue_oom_env(marker, count), and its session's answer
        lost_behind_a_full_queue() (failed), in the session's envelope: the error in its
        place says out of memory.  The process."""
        p = self.serve_initialized(self.queue_oom_env(marker, count))

        def put(m):
            return {"session": "s", "message": m}

        def get(m):
            self.assertEqual(m["session"], "s")
            return m["message"]
        line = self.marked(put(call(3, "echo", text="TEXT")), marker)
        lost = self.lost_behind_a_full_queue(p, line, put=put, get=get, failed=failed)
        self.assertIn("out of memory", self.assert_error(lost, 3, -32000)["message"])
        return p

    def test_an_answer_that_cannot_be_queued_is_replaced_by_an_error(self):
        """The client reads nothing for a while, and a server's answer finds no memory in
        the client's queue.  Its request gets a -32000 error in its place, after what was
        queued before it, and the run goes on."""
        p = self.wrap_initialized(self.queue_oom_env("OOM-6"))
        line = self.marked(call(3, "echo", text="TEXT"), "OOM-6")
        err = self.assert_error(self.lost_behind_a_full_queue(p, line), 3, -32000)
        self.assertIn("out of memory", err["message"])
        self.assert_no_leftovers()

    def test_a_batch_of_answers_that_cannot_be_queued_is_replaced_by_errors(self):
        """The same for the answers to a client's batch, which the server sends in one
        array: each of its requests gets a -32000 error in its place, in one array."""
        p = self.wrap_initialized(self.queue_oom_env("OOM-8"))
        line = self.marked([call(3, "echo", text="TEXT"), note("notifications/x"),
                            call("four", "echo", text="x")], "OOM-8")
        errs = self.lost_behind_a_full_queue(p, line)
        self.assertIsInstance(errs, list)
        self.assertEqual([e["id"] for e in errs], [3, "four"])
        for e in errs:
            self.assertIn("out of memory", self.assert_error(e, e["id"], -32000)["message"])
        self.assert_no_leftovers()

    def test_serve_an_answer_that_cannot_be_queued_is_replaced_by_an_error(self):
        """serve: the same for a session's answer, in its envelope: the error goes in the
        session's envelope, after what was queued before it, and the session goes on."""
        p = self.serve_answer_lost("OOM-A")
        self.assertIn("session s: out of memory: a server's answer", p.stderr())
        self.assert_no_leftovers()

    def test_connect_an_answer_that_cannot_be_queued_is_replaced_by_an_error(self):
        """connect: the same for an answer that serve sent it, for its client."""
        srv, p = self.connected(self.queue_oom_env("OOM-B"))
        line = self.marked(call(3, "echo", text="TEXT"), "OOM-B")
        err = self.assert_error(self.lost_behind_a_full_queue(p, line), 3, -32000)
        self.assertIn("out of memory", err["message"])
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    NO_QUEUE = 1000000  # FAULT_MALLOC_COUNT: no new chunk for the rest of the run

    def test_an_answer_lost_with_no_memory_left_is_replaced_by_an_error(self):
        """The same when the client's queue cannot grow at all, not even for the error
        (every new chunk fails): the error waits in memory kept for it, and goes at the end
        of the line being written."""
        p = self.wrap_initialized(self.queue_oom_env("OOM-C", count=self.NO_QUEUE))
        line = self.marked(call(3, "echo", text="TEXT"), "OOM-C")
        lost = self.lost_behind_a_full_queue(p, line, failed=None)
        self.assertIn("out of memory", self.assert_error(lost, 3, -32000)["message"])
        self.assertNotIn("a message for the client was lost", p.stderr())
        self.assert_no_leftovers()

    def test_a_batch_of_answers_lost_with_no_memory_left_is_replaced_by_errors(self):
        """The same for the answers to a client's batch: one array of errors."""
        p = self.wrap_initialized(self.queue_oom_env("OOM-D", count=self.NO_QUEUE))
        line = self.marked([call(3, "echo", text="TEXT"), note("notifications/x"),
                            call("four", "echo", text="x")], "OOM-D")
        errs = self.lost_behind_a_full_queue(p, line, failed=None)
        self.assertEqual([e["id"] for e in errs], [3, "four"])
        for e in errs:
            self.assertIn("out of memory", self.assert_error(e, e["id"], -32000)["message"])
        self.assertNotIn("a message for the client was lost", p.stderr())
        self.assert_no_leftovers()

    def test_serve_a_batchs_errors_that_cannot_be_queued_get_one_error(self):
        """serve --max-message 4M: a batch too long to be read whole (300 requests of 14 KB,
        the marker in the last, and a notification), in the connection's own session and in
        one of no connection's, while the client's pipe is full (fill_pipe()): the queue's
        new chunk for the array of their errors fails, and the array is not queued; its
        requests get one -32600 with id null in its place, and stderr says the array
        could not be queued, and that the notification was dropped.  With then, the queue
        has no memory for that error either (big_batch_env()): it waits in the memory kept
        for such errors, and goes all the same (the requests are not said to be left
        unanswered)."""
        pad = "p" * (14 << 10)
        unanswered = ("out of memory: the error with id null for the requests of a batch of "
                      "the client's over --max-message was lost: they are left unanswered")
        for sid in ("s", "s1"):
            for then in (0, 1):
                with self.subTest(session=sid, then=then):
                    # (the queue's new chunk for the array, of its size: some 50 KB)
                    p = self.mcpmux(["serve"] + GRACE + ["--max-message", "4M", "--", FIXTURE],
                                    env=self.big_batch_env(then))
                    p.send({"session": "s", "message": initialize(0)})
                    self.assertEqual(p.msg()["event"], "started")
                    self.assert_response(p.msg()["message"], 0)
                    fill_pipe(p, {"session": "s", "message": call(1, "huge", bytes=3 << 20)})
                    batch = ([req(k, "ping", {"p": pad}) for k in range(299)]
                             + [note("notifications/x"), req("OOM-Q", "ping", {"p": pad})])
                    p.send({"session": sid, "message": batch})
                    wait_until(lambda: "the array of errors for the requests of a batch of the "
                               "client's over --max-message could not be queued: one error "
                               "with id null answers them" in p.stderr(), 10, "the array lost")
                    self.assertIn("session %s: a notification of the client over "
                                  "--max-message" % sid, p.stderr())
                    m = p.msg()
                    self.assertEqual((m["session"], m["message"]["id"]), ("s", 1))
                    m = p.msg()
                    self.assertEqual(m["session"], sid)
                    self.assert_error(m["message"], None, -32600)
                    self.assertNotIn(unanswered, p.stderr())
                    self.assertNotIn("a message from mcpmux was lost", p.stderr())
                    self.assertNotIn("a message for the client was lost", p.stderr())
                    p.send({"session": "s", "message": call(2, "echo", text="after")})
                    m = p.msg()
                    self.assertEqual(m["message"]["result"]["content"][0]["text"], "after")
                    p.close_stdin()
                    self.assertEqual(p.wait(), 0)
                    self.assertEqual(self.counters(p.pid)["failed"], 1 + then)

    def big_batch_errors_not_queued(self, p, then):
        """p (wrap or connect, --max-message 4M, initialized, with big_batch_env(then)):
        while the client's pipe is full (fill_pipe()), a batch over the bound of 300
        requests of 14 KB, the marker in the last, and a notification, whose array of
        errors (some 50 KB) the client's queue has no new chunk for: its requests get one
        -32600 with id null in its place, and stderr says so, and that the notification was
        dropped; with then, the queue has no chunk for that error
        either: it waits in the memory kept for such errors, and goes all the same (the
        requests are not said to be left unanswered).  The run goes on: a call after it is
        answered, and EOF ends it with 0."""
        pad = "p" * (14 << 10)
        fill_pipe(p, call(1, "huge", bytes=3 << 20))
        p.send([req(k, "ping", {"p": pad}) for k in range(299)]
               + [note("notifications/x"), req("OOM-Q", "ping", {"p": pad})])
        said = ("out of memory: the array of errors for the requests of a batch of the "
                "client's over --max-message could not be queued: one error with id null "
                "answers them")
        wait_until(lambda: said in p.stderr(), 10, "the array lost")
        self.assertIn("a notification of the client over --max-message", p.stderr())
        p.send(call(2, "echo", text="after"))
        self.assertEqual(p.msg()["id"], 1)
        unanswered = ("out of memory: the error with id null for the requests of a batch of "
                      "the client's over --max-message was lost: they are left unanswered")
        self.assert_error(p.msg(), None, -32600)
        self.assertNotIn(unanswered, p.stderr())
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "after")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1 + then)

    def big_batch_env(self, then):
        """The queue's new chunk for a batch's array of errors fails (of its size: the huge
        answer's rest filled a chunk of its own, which has no room left); with then, the
        next one too (the one error's, 16 KiB)."""
        return self.oom_env("OOM-Q", malloc_min=32 << 10, malloc_max=64 << 10,
                            malloc_only="malloc", malloc_then=then)

    def test_a_batchs_errors_that_cannot_be_queued_get_one_error(self):
        """wrap --max-message 4M: the array of errors for a batch over the bound that the
        client's queue has no memory for gets one -32600 with id null in its place
        (big_batch_errors_not_queued())."""
        for then in (0, 1):
            with self.subTest(then=then):
                p = self.wrap_initialized(self.big_batch_env(then), "--max-message", "4M")
                self.big_batch_errors_not_queued(p, then)
                self.assert_no_leftovers()

    def test_a_held_batchs_errors_that_cannot_be_queued_get_one_error(self):
        """wrap --max-message 4M, while the client's pipe is full (fill_pipe()): a batch
        over the bound right after an end of run whose replies are still to come (a
        request in flight), its array of errors held behind them; when it goes, behind
        those replies (still queued behind the answer that fills the pipe), there is no
        memory for it (its chunk of 36 to 64 KiB): its requests get one -32600 with id
        null in its place, after those replies, and stderr says so (not only that a
        message was lost), and that the batch's notification was dropped. A call after
        them is answered by the next run."""
        # 370 errors of about 155 bytes: more than 36 KiB past the room left in the chunk
        # of the replies it goes behind, less than 64 KiB (and more than opendir()'s 32 KiB
        # block as the ended run's tree is read)
        pad = "p" * (12 << 10)
        not_queued = ("out of memory: the array of errors for the requests of a batch of "
                      "the client's over --max-message could not be queued: one error with "
                      "id null answers them")
        env = self.oom_env("OOM-Q", malloc_min=36 << 10, malloc_max=64 << 10,
                           malloc_only="malloc")
        p = self.wrap_initialized(env, "--max-message", "4M")
        fill_pipe(p, call(5, "huge", bytes=3 << 20))
        p.send(call(1, "sleep", ms=60000), req("e", "mcpmux/endRun"))
        p.send([req(k, "ping", {"p": pad}) for k in range(369)]
               + [note("notifications/x"), req("OOM-Q", "ping", {"p": pad})])
        p.send(call(2, "echo", text="after"))
        wait_until(lambda: not_queued in p.stderr(), 10, "the array lost")
        self.assertIn("a notification of the client over --max-message", p.stderr())
        self.assertEqual(p.msg(10)["id"], 5)
        got = [p.msg(10) for _ in range(3)]
        key = [(m["id"], m["error"]["code"] if "error" in m else "result") for m in got]
        self.assertEqual(key, [(1, -32000), ("e", "result"), (None, -32600)], got)
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "after")
        self.assertNotIn("they are left unanswered", p.stderr())
        self.assertNotIn("a message from mcpmux was lost", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_no_leftovers()

    def test_a_held_batchs_one_error_with_no_memory_waits_in_the_memory_kept_for_errors(self):
        """The same, but when the array goes there is no memory for its one error either:
        the ended run's replies (one -32000 for each of 8 requests in flight, and the end's
        result) leave less room in their 16 KiB chunk than the error takes (the ids' lengths
        are set to that from a first run's replies), so the error needs a chunk of its own,
        which fails too (FAULT_MALLOC_THEN).  It waits in the memory kept for such errors
        and goes at the end of the line being written (the answer that fills the pipe),
        ahead of those replies (it has no id they could share); its requests are not said
        to be left unanswered."""
        # a first run: the length of the lines of a reply for id "c" and of the end's result
        p = self.wrap_initialized(self.env)
        p.send(call("c", "sleep", ms=60000), req("e", "mcpmux/endRun"))
        lines = [p.line(10) for _ in range(2)]
        self.assertEqual([json.loads(l)["id"] for l in lines], ["c", "e"])
        one, result = (len(l) + 1 for l in lines)
        p.close_stdin()
        self.assertEqual(p.wait(), 128 + signal.SIGTERM)  # (its server's, ended while asleep)
        # 8 ids: the replies fill their chunk but for 40 bytes (the pid's digits may
        # differ by one or two), less than the one error's line
        lens = [1500] * 7
        lens.append((16 << 10) - 40 - result - sum(one - 1 + n for n in lens) - (one - 1))
        ids = ["i%d-" % k + "x" * (n - 3) for k, n in enumerate(lens)]
        pad = "p" * (12 << 10)
        not_queued = ("out of memory: the array of errors for the requests of a batch of "
                      "the client's over --max-message could not be queued: one error with "
                      "id null answers them")
        env = self.oom_env("OOM-Q", malloc_min=36 << 10, malloc_max=64 << 10,
                           malloc_only="malloc", malloc_then=1)
        p = self.wrap_initialized(env, "--max-message", "4M")
        fill_pipe(p, call(5, "huge", bytes=3 << 20))
        p.send(*[call(i, "sleep", ms=60000) for i in ids], req("e", "mcpmux/endRun"))
        p.send([req(k, "ping", {"p": pad}) for k in range(369)]
               + [req("OOM-Q", "ping", {"p": pad})])
        p.send(call(2, "echo", text="after"))
        wait_until(lambda: not_queued in p.stderr(), 10, "the array lost")
        self.assertEqual(p.msg(10)["id"], 5)
        got = [p.msg(10) for _ in range(10)]
        key = [(m["id"], m["error"]["code"] if "error" in m else "result") for m in got]
        self.assertEqual(key, [(None, -32600)] + [(i, -32000) for i in ids] + [("e", "result")],
                         got)
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "after")
        self.assertNotIn("they are left unanswered", p.stderr())
        self.assertNotIn("a message from mcpmux was lost", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 2)
        self.assert_no_leftovers()

    CUT = ("out of memory: the array of errors for the requests of a batch of the client's "
           "over --max-message was written only in part, its rest could not be queued: the "
           "client's output ends there, and they are left unanswered")

    def test_the_rest_of_a_read_with_no_memory_to_keep_waits_for_the_client_gone(self):
        """The client closes its stdout, then writes a line that is not JSON and a call in
        one write: mcpmux finds the client gone as it writes the parse error; the rest of
        the chunk, the call, has no memory to be kept (its own size, FAULT_MALLOC_MIN and
        MAX): it is dropped, not handed out before mcpmux hears that the client is gone:
        the server never gets it."""
        line = json.dumps(call(2, "echo", text="ZQX9" + "a" * 2300)).encode() + b"\n"
        env = self.oom_env("ZQX9", malloc_min=len(line), malloc_max=len(line),
                           malloc_only="malloc")
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--stderr-chatter"], env=env)
        p.send(initialize(1))
        p.msg()
        wait_until(lambda: "got initialize" in p.stderr(), 5, "the server's chatter")
        p.p.stdout.close()
        p.write(b"not json\n" + line)
        self.assertEqual(p.wait(), 0, p.stderr())
        self.assertNotIn("got tools/call", p.stderr())
        self.assertEqual(self.counters(p.pid)["failed"], 1, p.stderr())
        self.assert_no_leftovers()

    LINE_CUT = (r"out of memory: a line for the client was cut after \d+ of its \d+ bytes "
                r"\(no memory to queue the rest\): the client's output ends there")

    def ended_reasons(self, log, event="ended"):
        """The reasons of the `ended` (or other event's) records of the traffic log at log."""
        with open(log, "rb") as f:
            return [r.get("reason") for r in map(json.loads, f.read().splitlines())
                    if r.get("event") == event]

    def test_a_servers_answer_cut_for_want_of_memory_is_said(self):
        """wrap: a server's answer of 3 MiB, longer than the client's pipe (1 MiB), that
        the pipe takes in part while the queue has no memory for its rest: stderr says the
        line was cut and that the client's output ends there (not only that a message was
        lost); the client reads the answer's head, no line's end, then EOF.  The run ends
        for that, the log's reason `output-cut` (not `client-gone`: the client is still
        there), and mcpmux, which failed its client, exits 1 (not the server's 0)."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=4 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap_initialized(env, "--max-message", "8M", "--log", log)
        p.send(call("OOM-Q", "huge", bytes=3 << 20))
        wait_until(lambda: re.search(self.LINE_CUT, p.stderr()), 10, "the line cut said")
        out = p.read_to_eof(10)
        self.assertTrue(out.startswith(b'{"jsonrpc":"2.0","id":"OOM-Q",'), out[:200])
        self.assertNotIn(b"\n", out)
        self.assertEqual(p.wait(), 1, p.stderr())
        self.assertEqual(self.ended_reasons(log), ["output-cut"])
        self.assertEqual(self.ended_reasons(log, "undelivered"), [])  # (nothing was queued)
        self.assert_no_leftovers()

    def logged_in(self, log, id_):
        """Has the traffic log at log a record of the client's message id_ sent on?"""
        with open(log, "rb") as f:
            return any(r.get("dir") == "in" and r.get("id") == id_
                       for r in map(json.loads, f.read().splitlines()))

    def test_a_signal_after_a_cut_leaves_the_status_of_the_cut(self):
        """wrap: the line cut first, then a SIGINT while the server still runs (it ignores
        stdin's EOF): mcpmux failed its client before the signal came, and exits 1, not
        with the status of a server ended by the signal."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=4 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap_initialized(env, "--eof-grace", "5000", "--max-message", "8M", "--log",
                                  log, server_args=["--ignore-eof"])
        p.send(call("OOM-Q", "huge", bytes=3 << 20))
        wait_until(lambda: re.search(self.LINE_CUT, p.stderr()), 10, "the line cut said")
        p.p.send_signal(signal.SIGINT)
        p.read_to_eof(10)
        self.assertEqual(p.wait(), 1, p.stderr())
        self.assertEqual(self.ended_reasons(log), ["output-cut"])
        self.assert_no_leftovers()

    def test_a_cut_after_a_signal_leaves_the_status_of_the_signal(self):
        """wrap, its stdout a socket (as node's child_process gives it, where a line is
        begun after a signal as before it): a SIGTERM, then the server's answer of 3 MiB
        cut for want of memory.  The end was asked for first: mcpmux exits with the
        signal's status, as it does for messages left unwritten after a signal (not 1,
        nor the 0 of a server that finished)."""
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=4 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.mcpmux(GRACE + ["--eof-grace", "5000", "--max-message", "8M", "--log", log,
                                 "--", FIXTURE, "--slow-reader=1000"], env=env,
                        stdout=b.fileno())
        b.close()
        a.settimeout(10 * SLOW)
        f = a.makefile("rb")
        self.addCleanup(f.close)
        p.send(initialize(0))
        self.assertEqual(json.loads(f.readline())["id"], 0)
        p.send(call("OOM-Q", "huge", bytes=3 << 20))
        # sent on to the server, which reads it 1 s later and answers after the signal
        wait_until(lambda: self.logged_in(log, "OOM-Q"), 5, "the request sent on")
        p.p.send_signal(signal.SIGTERM)
        wait_until(lambda: re.search(self.LINE_CUT, p.stderr()), 10, "the line cut said")
        self.assertEqual(p.wait(), 128 + signal.SIGTERM, p.stderr())
        self.assert_no_leftovers()

    def test_serve_a_cut_after_a_signal_leaves_the_status_of_the_signal(self):
        """serve on stdio: a SIGTERM, then a session's answer of 3 MiB cut for want of
        memory: serve exits as after a signal (0), not 1."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=4 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.mcpmux(["serve"] + GRACE + ["--eof-grace", "5000", "--max-message", "8M",
                                             "--log", log, "--", FIXTURE,
                                             "--slow-reader=1000"], env=env)
        p.send({"session": "s", "message": initialize(0)})
        self.assertEqual(p.msg(10)["event"], "started")
        self.assert_response(p.msg(10)["message"], 0)
        p.send({"session": "s", "message": call("OOM-Q", "huge", bytes=3 << 20)})
        wait_until(lambda: self.logged_in(log, "OOM-Q"), 5, "the request sent on")
        p.p.send_signal(signal.SIGTERM)
        wait_until(lambda: re.search(self.LINE_CUT, p.stderr()), 10, "the line cut said")
        p.read_to_eof(10)
        self.assertEqual(p.wait(), 0, p.stderr())
        self.assert_no_leftovers()

    def big_batch_errors_cut(self, p, put=lambda m: m, head=b'[{"jsonrpc":"2.0","id":0,'):
        """p (wrap, connect or serve, --max-message 4M, initialized, with oom_env("OOM-Q",
        malloc_min=128K, malloc_max=2M, malloc_only="malloc"); put wraps a message in
        serve's envelope): a batch over the bound of 8,000 requests of 600 bytes, the marker
        in the last, whose array of errors (some 1.3 MB) is longer than the client's pipe
        (1 MiB, or 64 KiB): the pipe takes its head, and the queue has no memory for its
        rest (some 300 KB, or 1.2 MB).  Half a line is out, which nothing may follow:
        stderr says the array was written only in part and its requests are left
        unanswered, not that one error with id null answers them, and the client's output
        ends there: what it reads after the answers before is the array's head (head), no
        line's end.  p is reaped (its status returned)."""
        pad = "p" * 520
        p.send(put([req(k, "ping", {"p": pad}) for k in range(7999)]
                   + [req("OOM-Q", "ping", {"p": pad})]))
        wait_until(lambda: self.CUT in p.stderr(), 10, "the array cut")
        self.assertRegex(p.stderr(), self.LINE_CUT)
        out = p.read_to_eof(10)
        self.assertTrue(out.startswith(head), out[:200])
        self.assertGreaterEqual(len(out), 64 << 10)
        self.assertNotIn(b"\n", out)
        self.assertNotIn("one error with id null answers them", p.stderr())
        self.assertNotIn("a message from mcpmux was lost", p.stderr())
        status = p.wait()
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        return status

    def test_a_batchs_errors_written_in_part_end_the_clients_output(self):
        """wrap --max-message 4M: an array of errors for a batch over the bound that the
        client's pipe takes only in part, its rest not queued for want of memory, is said
        written in part, its requests left unanswered, and the client's output ends there
        (big_batch_errors_cut()); mcpmux ends its run (reason `output-cut`) and exits 1."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=2 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap_initialized(env, "--max-message", "4M", "--log", log)
        self.assertEqual(self.big_batch_errors_cut(p), 1)
        self.assertEqual(self.ended_reasons(log), ["output-cut"])
        self.assert_no_leftovers()

    def test_serve_a_batchs_errors_written_in_part_end_the_clients_output(self):
        """serve --max-message 4M: the same for a batch in a session's envelope (the
        connection's own session s); serve ends every session (reason `output-cut`) and
        exits 1."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=2 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.mcpmux(["serve"] + GRACE + ["--max-message", "4M", "--log", log, "--",
                                             FIXTURE], env=env)
        p.send({"session": "s", "message": initialize(0)})
        self.assertEqual(p.msg()["event"], "started")
        self.assert_response(p.msg()["message"], 0)
        status = self.big_batch_errors_cut(
            p, put=lambda m: {"session": "s", "message": m},
            head=b'{"session":"s","message":[{"jsonrpc":"2.0","id":0,')
        self.assertIn("session s: " + self.CUT, p.stderr())
        self.assertEqual(status, 1)
        self.assertEqual(self.ended_reasons(log), ["output-cut"])
        self.assert_no_leftovers()

    def test_connect_a_batchs_errors_written_in_part_end_the_clients_output(self):
        """connect --max-message 4M: the same; connect ends its session, the reason it
        gives serve (the log's `end-requested`) that it cut a line for the client, and
        exits 1 (not the server's 0)."""
        env = self.oom_env("OOM-Q", malloc_min=128 << 10, malloc_max=2 << 20,
                           malloc_only="malloc")
        log = os.path.join(self.tmp.name, "t.log")
        srv, p = self.connected(env, opts=("--max-message", "4M"), log=log)
        try:
            self.assertEqual(self.big_batch_errors_cut(p), 1)
            self.assertEqual(self.ended_reasons(log, "end-requested"),
                             ["connect cut a line for the client (out of memory)"])
        finally:
            srv.p.send_signal(signal.SIGTERM)
            status = srv.wait()
        self.assertEqual(status, 0)
        self.assert_no_leftovers()

    def test_connect_a_batchs_errors_that_cannot_be_queued_get_one_error(self):
        """connect --max-message 4M: the same."""
        for then in (0, 1):
            with self.subTest(then=then):
                srv, p = self.connected(self.big_batch_env(then),
                                        opts=("--max-message", "4M"))
                try:
                    self.big_batch_errors_not_queued(p, then)
                finally:  # (the next subtest's serve takes the socket's path)
                    srv.p.send_signal(signal.SIGTERM)
                    status = srv.wait()
                self.assertEqual(status, 0)
                self.assert_no_leftovers()

    def test_serve_an_answer_lost_with_no_memory_left_is_replaced_by_an_error(self):
        """serve: the same, the error in the session's envelope."""
        p = self.serve_answer_lost("OOM-E", count=self.NO_QUEUE, failed=None)
        self.assertNotIn("a message for the client was lost", p.stderr())
        self.assert_no_leftovers()

    def test_connect_an_answer_lost_with_no_memory_left_is_replaced_by_an_error(self):
        """connect: the same for an answer that serve sent it, for its client."""
        srv, p = self.connected(self.queue_oom_env("OOM-F", count=self.NO_QUEUE))
        line = self.marked(call(3, "echo", text="TEXT"), "OOM-F")
        lost = self.lost_behind_a_full_queue(p, line, failed=None)
        self.assertIn("out of memory", self.assert_error(lost, 3, -32000)["message"])
        self.assertNotIn("a message for the client was lost", p.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    def test_a_server_line_that_cannot_be_held_is_said_to_be_out_of_memory(self):
        """A server's answer longer than one read, whose buffer cannot grow (realloc) as it
        comes in: its request gets a -32000 error that says out of memory, not that the
        answer was over --max-message, which it is not; the run goes on."""
        env = self.oom_env("OOM-7", malloc_only="realloc")
        p = self.mcpmux(GRACE + ["--", FIXTURE, "--huge-result", str(200 << 10)], env=env)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        # the answer starts with OOM-7
        p.write(self.marked(call(1, "echo", text="TEXT"), "OOM-7").encode() + b"\n")
        err = self.assert_error(p.msg(), 1, -32000)
        self.assertIn("out of memory", err["message"])
        self.assertNotIn("too large", err["message"])
        p.send(call(2, "echo", text="after"))
        self.assertEqual(len(p.msg()["result"]["content"][0]["text"]), 200 << 10)
        self.ends(p, absent="--max-message")

    def test_a_client_line_that_cannot_be_held_is_said_to_be_out_of_memory(self):
        """A client's request longer than one read, whose buffer cannot grow (realloc) as
        it comes in: it is not forwarded, and its error (-32000) says out of memory, not
        that the request was over --max-message, which it is not; the run goes on."""
        env = self.oom_env("OOM-9", malloc_only="realloc")
        p = self.wrap_initialized(env)
        # More than the pipe holds: its first read is a part of it, with the marker.
        p.send(call("OOM-9", "echo", text="x" * (200 << 10)))
        err = self.assert_error(p.msg(), "OOM-9", -32000)
        self.assertIn("out of memory", err["message"])
        self.assertNotIn("too large", err["message"])
        self.goes_on_and_ends(p, absent="--max-message")

    def test_serve_a_client_line_that_cannot_be_held_is_said_to_be_out_of_memory(self):
        """serve: the same for a session's request in its envelope: the error, in the
        session's envelope, says out of memory, and the session goes on."""
        p = self.serve_initialized(self.oom_env("OOM-G", malloc_only="realloc"))
        # More than the pipe holds: its first read is a part of it, with the marker.
        p.send({"session": "s", "message": call("OOM-G", "echo", text="x" * (200 << 10))})
        m = p.msg()
        self.assertEqual(m["session"], "s")
        err = self.assert_error(m["message"], "OOM-G", -32000)
        self.assertIn("out of memory", err["message"])
        self.assertNotIn("too large", err["message"])
        p.send({"session": "s", "message": call(2, "echo", text="after")})
        m = p.msg()
        self.assertEqual(m["message"]["result"]["content"][0]["text"], "after")
        self.ends(p, absent="--max-message")

    def connected(self, env, *server_args, opts=(), log=None):
        """serve --listen (--log log, when given), and connect (with env and opts) to it,
        initialized: the two processes."""
        path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.mcpmux(["serve", "--listen", path] + GRACE
                          + (["--log", log] if log else []) + ["--", FIXTURE]
                          + list(server_args))
        wait_until(lambda: os.path.exists(path), 10, "the socket")
        p = self.mcpmux(["connect", "--session", "s"] + list(opts) + [path], env=env)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        p.send(note("notifications/initialized"))
        return srv, p

    def connected_to(self, server, env, max_message=4096):
        """serve --listen of the Python server (its source), and connect (with env and
        --max-message) to it: the two processes."""
        path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.mcpmux(["serve", "--listen", path] + GRACE
                          + ["--", sys.executable, "-c", server])
        wait_until(lambda: os.path.exists(path), 10, "the socket")
        p = self.mcpmux(["connect", "--session", "s", "--max-message", str(max_message), path],
                        env=env)
        return srv, p

    def test_connect_a_client_line_that_cannot_be_held_is_said_to_be_out_of_memory(self):
        """connect: the same for its client's request, which is not sent to serve."""
        srv, p = self.connected(self.oom_env("OOM-H", malloc_only="realloc"))
        p.send(call("OOM-H", "echo", text="x" * (200 << 10)))
        err = self.assert_error(p.msg(), "OOM-H", -32000)
        self.assertIn("out of memory", err["message"])
        self.assertNotIn("too large", err["message"])
        self.goes_on_and_ends(p, srv, absent="--max-message")

    def test_connect_a_line_of_serve_that_cannot_be_held_is_said_to_be_out_of_memory(self):
        """connect: an answer of serve's longer than one read, whose buffer cannot grow
        (realloc) as it comes in: its request gets a -32000 error that says out of memory,
        and stderr does not say it was over --max-message; the run goes on."""
        srv, p = self.connected(self.oom_env("OOM-I", malloc_only="realloc"),
                                "--huge-result", str(200 << 10))
        # the answer starts with OOM-I
        p.write(self.marked(call(1, "echo", text="TEXT"), "OOM-I").encode() + b"\n")
        err = self.assert_error(p.msg(), 1, -32000)
        self.assertIn("out of memory", err["message"])
        p.send(call(2, "echo", text="after"))
        self.assertEqual(len(p.msg()["result"]["content"][0]["text"]), 200 << 10)
        self.ends(p, srv, absent="--max-message")

    # A server that asks the client: "ask" {"ids": [...]} sends a request with each id;
    # "huge" {"bytes": N} is answered with a string of N bytes; any other request with the
    # errors the client gave it so far, as [id, code].
    HUGE_ASKER = """
import json, sys
got = []
for line in sys.stdin:
    m = json.loads(line)
    if "method" not in m:
        got.append([m["id"], m["error"]["code"]])
    elif m["method"] == "ask":
        for k in m["params"]["ids"]:
            print(json.dumps({"jsonrpc": "2.0", "id": k, "method": "sampling/createMessage"}),
                  flush=True)
    if m.get("method") == "huge":
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": "x" * m["params"]["bytes"]}),
              flush=True)
    elif "id" in m and "method" in m:
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": got}), flush=True)
"""

    def test_connect_a_request_of_the_server_lost_for_want_of_memory_is_not_in_flight(self):
        """connect: a request of the server's that its client's queue had no memory for
        never reached the client, and is not kept in flight: an answer to it over
        connect's --max-message is dropped as one to no request in flight, and the server
        gets no error for it."""
        srv, p = self.connected_to(self.HUGE_ASKER, self.queue_oom_env("OOM-L"), 4 << 20)
        huge = 3 << 20
        fill_pipe(p, req(1, "huge", {"bytes": huge}))
        # The marker escaped: only the server's request holds it, as its id.
        p.write(b'{"jsonrpc":"2.0","id":2,"method":"ask","params":{"ids":["\\u004fOM-L"]}}\n')
        wait_until(lambda: "a message for the client was lost" in p.stderr(), 10,
                   "the request to find no memory")
        self.assertEqual(len(p.msg()["result"]), huge)
        self.assertEqual(p.msg(), {"jsonrpc": "2.0", "id": 2, "result": []})
        p.send({"jsonrpc": "2.0", "id": "OOM-L", "result": "y" * (5 << 20)})
        wait_until(lambda: "answers no request of the server in flight" in p.stderr(), 10,
                   "the answer to be dropped")
        p.send(req(3, "report"))
        self.assertEqual(p.msg(), {"jsonrpc": "2.0", "id": 3, "result": []})
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    def test_connect_a_request_of_the_server_that_cannot_be_kept_in_flight_is_refused(self):
        """connect: a request of the server's that there is no memory to keep in flight
        (the first key of its table: FAULT_MALLOC_ONLY realloc of 256 bytes) is not passed
        on, for an answer to it over --max-message could not get the server its error: the
        server gets a -32000 error in its place at once, and stderr says so; connect goes
        on (docs/decisions.md)."""
        env = self.oom_env("OOM-P", malloc_min=256, malloc_max=256, malloc_only="realloc")
        srv, p = self.connected_to(ASKER, env)
        # The marker escaped: only the server's request holds it, as its id.
        p.write(b'{"jsonrpc":"2.0","id":1,"method":"ask","params":{"ids":["\\u004fOM-P"]}}\n')
        self.assertEqual(p.msg(10), {"jsonrpc": "2.0", "id": 1, "result": []})
        p.send(req(3, "report"))
        self.assertEqual(p.msg(10), {"jsonrpc": "2.0", "id": 3, "result": [["OOM-P", -32000]]})
        self.assertIn("a request of the server's could not be kept in flight: not passed on",
                      p.stderr())
        p.send(req(4, "ask", {"ids": ["s4"]}))
        self.assertEqual([p.msg(10)["id"] for _ in range(2)], ["s4", 4])
        p.send({"jsonrpc": "2.0", "id": "s4", "result": "y" * 5000})
        p.send(req(5, "report"))
        self.assertEqual(p.msg(10), {"jsonrpc": "2.0", "id": 5,
                                     "result": [["OOM-P", -32000], ["s4", -32000]]})
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    def connect_oversize_batch(self, **faults):
        """connect --max-message 4096 (to serve of ASKER), with the faults after the marker
        OOM-A: a batch over the bound of 300 requests (their array of errors, some 42 KB,
        within the 64 KiB it may take), the first with the marker as its id.  The process, once the line after the batch's answer is read (the report of
        what the server got, nothing): the lines the client got after the batch."""
        srv, p = self.connected_to(ASKER, self.oom_env("OOM-A", **faults))
        self.addCleanup(lambda: (srv.p.send_signal(signal.SIGTERM), srv.wait()))
        p.send(req(0, "ping"))
        self.assertEqual(p.msg(10), {"jsonrpc": "2.0", "id": 0, "result": []})
        p.send([req("OOM-A", "ping")] + [req(k, "ping") for k in range(1, 300)])
        p.send(req("r", "report"))
        lines = []
        while True:
            lines.append(p.line(10))
            if lines[-1].startswith(b"{") and json.loads(lines[-1]).get("id") == "r":
                break
        return p, lines

    def test_connect_an_error_there_is_no_memory_to_write_is_said_lost(self):
        """connect: a batch of the client's over --max-message whose errors by id there is
        no memory to write (a big realloc() fails), nor then its one -32600 with id null
        (the next one fails too): the client gets no empty line in its place, and stderr
        says the error was lost and the requests left unanswered; connect goes on."""
        p, lines = self.connect_oversize_batch(malloc_min=65536, malloc_only="realloc",
                                               malloc_then=1)
        self.assertEqual(lines[:-1], [])  # (no empty line in the error's place)
        self.assertIn("could not each be answered", p.stderr())
        self.assertIn("out of memory: the error with id null for the requests of a batch of "
                      "the client's over --max-message was lost: they are left unanswered",
                      p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_connect_a_batch_of_the_server_kept_once_retried_is_said_no_loss(self):
        """connect: a batch of the server's requests whose first keeping in flight ran out
        of memory (one realloc() of 256 bytes fails), kept in full once passed on: stderr
        does not claim any was lost, and the client's answer over --max-message to one
        gets the server its error."""
        env = self.oom_env("OOM-P", malloc_min=256, malloc_max=256, malloc_only="realloc")
        srv, p = self.connected_to(ASKER, env)
        batch = json.dumps([req("b1", "x"), req("OOM-P", "x")])
        # The marker escaped: only the server's batch holds it.
        p.write(json.dumps(req(1, "raw", {"lines": [batch]})).replace(
            "OOM-P", "\\u004fOM-P").encode() + b"\n")
        got = [p.msg(10), p.msg(10)]
        self.assertIn({"jsonrpc": "2.0", "id": 1, "result": []}, got)
        self.assertIn([req("b1", "x"), req("OOM-P", "x")], got)
        p.send({"jsonrpc": "2.0", "id": "OOM-P", "result": "y" * 5000})
        p.send(req(5, "report"))
        self.assertEqual(p.msg(10), {"jsonrpc": "2.0", "id": 5, "result": [["OOM-P", -32000]]})
        self.ends(p, srv, absent="could not be kept in flight")

    def test_connect_a_line_of_serve_dropped_with_no_memory_left_is_replaced(self):
        """connect: an answer of serve's over connect's --max-message, dropped, while its
        client's queue cannot grow at all (every new chunk fails): the error in its place
        waits in the memory kept for it, goes at the end of the line being written, and
        the run goes on."""
        srv, p = self.connected(self.queue_oom_env("OOM-K", count=self.NO_QUEUE),
                                opts=["--max-message", str(4 << 20)])
        huge = 3 << 20
        fill_pipe(p, call(1, "huge", bytes=huge))
        p.send(call("OOM-K", "huge", bytes=5 << 20))  # its answer is over --max-message
        wait_until(lambda: "over --max-message" in p.stderr(), 10, "the answer to be dropped")
        m = p.msg()
        self.assertEqual(m["id"], 1)
        self.assertEqual(len(m["result"]["content"][0]["text"]), huge)
        err = self.assert_error(p.msg(), "OOM-K", -32000)
        self.assertIn("too large", err["message"])
        self.goes_on_and_ends(p, srv, absent="was lost")

    def test_log_stats_that_cannot_count_a_session_fails(self):
        """`mcpmux log stats`: no memory for a session's entry at its first record (which
        holds the marker, read with fgets(); FAULT_MALLOC_ONLY: the entry's calloc()).
        Counts that miss that record would be wrong: none are printed, the command says
        out of memory and exits 1."""
        path = os.path.join(self.tmp.name, "t.log")
        srv = self.mcpmux(["serve", "--log", path] + GRACE + ["--", FIXTURE])
        for sid in ("first", "OOM-J"):
            srv.send({"session": sid, "message": req(1, "ping")})
            self.assertEqual(srv.msg()["event"], "started")
            self.assertEqual(srv.msg()["message"]["id"], 1)
        srv.close_stdin()
        self.assertEqual(srv.wait(), 0)
        p = self.mcpmux(["log", "stats", path],
                        env=self.oom_env("OOM-J", malloc_only="calloc"))
        out = p.read_to_eof(10).decode()
        self.assertEqual(p.wait(), 1, out)
        self.assertEqual(out, "")
        self.assertIn("out of memory", p.stderr())
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        r = subprocess.run([MCPMUX, "log", "stats", path], capture_output=True,
                           env=self.env, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"OOM-J", r.stdout)  # all of it, with memory

    def test_an_http_answer_that_cannot_be_kept_ends_its_stream_with_an_error(self):
        """serve --http: the server's answer cannot be copied for its stream (a big one,
        FAULT_MALLOC_MIN): its request still ends, with a smaller error in its place."""
        self.http_answer_lost()

    def test_an_http_answer_lost_with_no_memory_left_ends_its_stream_with_an_error(self):
        """The same, and then no memory at all (FAULT_MALLOC_THEN: the small error; the
        message on stderr needs none): the error goes in memory kept for it, the stream
        still ends, and stderr says what was lost."""
        self.http_answer_lost(then=1)

    def test_an_http_answer_in_a_batch_that_cannot_be_kept_ends_its_stream_with_an_error(self):
        """serve --http: a server that answers in a batch (initialize, after a notification:
        the fixture's init-batch) has each element go its own way; the answer, which cannot
        be copied for its stream (FAULT_MALLOC_MIN and _MAX: its event, 32 bytes and the
        answer's 190), still ends its request's stream, with an error in its place."""
        behave = os.path.join(self.tmp.name, "behave")
        with open(behave, "w") as f:
            f.write("init-batch\n")
        size = 32 + 190
        env = self.oom_env("batched", malloc_min=size, malloc_max=size, malloc_only="malloc")
        p = self.mcpmux(["serve", "--http", "127.0.0.1:0"] + GRACE
                        + ["--", FIXTURE, "--behave-file=" + behave], env=env)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the port")
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        try:
            c.request("POST", "/mcp", body=json.dumps(initialize(0)),
                      headers={"Content-Type": "application/json",
                               "Accept": "application/json"})
            r = c.getresponse()
            status, body = r.status, r.read()
        finally:
            c.close()
        self.assertEqual(status, 200)
        err = self.assert_error(json.loads(body), 0, -32000)
        self.assertIn("out of memory", err["message"])
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assertIn("out of memory: a message for the HTTP client was lost", p.stderr())
        self.assert_no_leftovers()

    def http_answer_lost(self, then=0):
        env = self.oom_env("OOM-3", malloc_min=32 << 10, malloc_only="malloc",
                           malloc_then=then)
        p = self.mcpmux(["serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                        env=env)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the port")
        port = int(m.group(1))

        def post(body, sid=None, seconds=10):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
            h = {"Content-Type": "application/json", "Accept": "application/json"}
            if sid:
                h["Mcp-Session-Id"] = sid
            try:
                c.request("POST", "/mcp", body=body, headers=h)
                r = c.getresponse()
                return r.status, r.getheader("Mcp-Session-Id"), r.read()
            finally:
                c.close()

        status, sid, _ = post(json.dumps(initialize(0)))
        self.assertEqual(status, 200)
        self.assertEqual(post(json.dumps(note("notifications/initialized")), sid)[0], 202)
        # A longer answer first: what mcpmux parses and frames has room for the next one.
        big = "y" * (200 << 10)
        status, _, body = post(json.dumps(call(1, "echo", text=big)), sid)
        self.assertEqual(json.loads(body)["result"]["content"][0]["text"], big)
        text = "x" * (40 << 10) + "\\u004fOM-3"  # the answer ends with OOM-3
        status, _, body = post(json.dumps(call(2, "echo", text="TEXT")).replace(
            "TEXT", text), sid)
        self.assertEqual(status, 200)
        m = json.loads(body)
        self.assertEqual(m["id"], 2)
        self.assertEqual(m["error"]["code"], -32000)
        self.assertIn("out of memory", m["error"]["message"])
        status, _, body = post(json.dumps(call(3, "echo", text="after")), sid)
        self.assertEqual(json.loads(body)["result"]["content"][0]["text"], "after")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1 + then)
        self.assertIn("out of memory: a message for the HTTP client was lost", p.stderr())

    def test_an_http_request_that_cannot_get_a_stream_is_refused_with_its_id(self):
        """serve --http: no memory for the stream of a request in a running session (the
        key of its id: FAULT_MALLOC_MIN and _MAX, the id's 1,000 bytes and 32).  It is
        refused with 503 and the -32000 error for that request, with its id (the client
        knows which one failed), not forwarded, and the session goes on."""
        rid = "OOM-7" + "p" * (1000 - 7)
        size = len(json.dumps(rid)) + 32
        env = self.oom_env("OOM-7", malloc_min=size, malloc_max=size, malloc_only="malloc")
        p = self.mcpmux(["serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                        env=env)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the port")
        port = int(m.group(1))

        def post(msg, sid=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            h = {"Content-Type": "application/json", "Accept": "application/json"}
            if sid:
                h["Mcp-Session-Id"] = sid
            try:
                c.request("POST", "/mcp", body=json.dumps(msg), headers=h)
                r = c.getresponse()
                return r.status, r.getheader("Mcp-Session-Id"), r.read()
            finally:
                c.close()

        status, sid, _ = post(initialize(0))
        self.assertEqual(status, 200)
        self.assertEqual(post(note("notifications/initialized"), sid)[0], 202)
        status, _, body = post(call(rid, "crash"), sid)
        self.assertEqual(status, 503, body)
        err = self.assert_error(json.loads(body), rid, -32000)
        self.assertIn("out of memory", err["message"])
        status, _, body = post(call(2, "echo", text="after"), sid)
        self.assertEqual(json.loads(body)["result"]["content"][0]["text"], "after")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_no_leftovers()

    def test_the_event_loops_own_allocation_with_no_memory_ends_no_session(self):
        """libev grows its arrays (more descriptors and events than ever) with an allocator
        that aborts the process when it gets no memory: one allocation would end every
        session.  A realloc() of libev's of 16 to 64 bytes (the first after the marker's read,
        as 40 sessions start) finds none: mcpmux gives libev its reserve, and every
        session is answered, then serve exits 0 at EOF."""
        env = self.oom_env("OOM-EV", malloc_min=16, malloc_max=64, malloc_only="realloc")
        p = self.mcpmux(["serve"] + GRACE + ["--", FIXTURE], env=env)
        sessions = ["OOM-EV"] + ["s%d" % i for i in range(40)]
        p.send(*({"session": s, "message": req(1, "ping")} for s in sessions))
        answered = set()
        while len(answered) < len(sessions):
            m = p.msg()
            if "message" in m:
                self.assert_response(m["message"], 1)
                answered.add(m["session"])
        self.assertEqual(answered, set(sessions))
        p.close_stdin()
        self.assertEqual(p.wait(), 0, p.stderr())
        self.assertNotIn("libev", p.stderr())
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_no_leftovers()

    def http_serve(self, env):
        """serve --http under env: the process, and post(marker), which sends one POST of an
        initialize (in one write, marker in a header: the read that holds the marker holds
        the whole request) and gives the lines of the answer's head (a reset ends them)."""
        p = self.mcpmux(["serve", "--http", "127.0.0.1:0"] + GRACE + ["--", FIXTURE],
                        env=env)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10, "the port")
        port = int(m.group(1))
        body = json.dumps(initialize(0)).encode()

        def post(marker):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Test: %s\r\n"
                          b"Content-Type: application/json\r\nAccept: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (marker, len(body), body))
                data = b""
                while b"\r\n\r\n" not in data:
                    try:
                        more = s.recv(4096)
                    except ConnectionResetError:
                        break
                    if not more:
                        break
                    data += more
                return data.split(b"\r\n")
            finally:
                s.close()
        return p, post

    def test_an_http_request_with_no_memory_to_begin_is_503_not_400(self):
        """serve --http: no memory for a request's record, the first allocation once its
        bytes are read (the marker is in its head).  The request was well formed: the
        layer answers 503 (try again), as for every other allocation of a request, not
        400 (do not send this again), and the next request is served."""
        p, post = self.http_serve(self.oom_env("OOM-8", malloc_only="calloc"))
        self.assertEqual(post(b"OOM-8")[0], b"HTTP/1.1 503 Service Unavailable")
        self.assertEqual(post(b"after")[0], b"HTTP/1.1 200 OK")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 1)
        self.assert_no_leftovers()

    def test_an_http_connection_with_no_memory_to_accept_is_503_not_closed_in_silence(self):
        """serve --http: no memory for a new connection's record (the second calloc() once
        the marker is read: the first is the marked request's own, answered 503 above).
        The connection is answered 503 with Retry-After, as one over the limit is, not
        closed without a word (a reset, or an end with no answer), and the next one is
        served."""
        p, post = self.http_serve(self.oom_env("OOM-9", malloc_only="calloc", malloc_count=2))
        self.assertEqual(post(b"OOM-9")[0], b"HTTP/1.1 503 Service Unavailable")
        head = post(b"next")
        self.assertEqual(head[0], b"HTTP/1.1 503 Service Unavailable", head)
        self.assertIn(b"Retry-After: 1", head)
        self.assertEqual(post(b"after")[0], b"HTTP/1.1 200 OK")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.counters(p.pid)["failed"], 2)
        self.assert_no_leftovers()


@needs_shim
class StderrFull(Faults):
    """mcpmux's stderr a file on a file system that is full, then has room again
    (FAULT_FULL_FILE: its writes fail with ENOSPC while the file FAULT_FULL_WHILE exists)."""

    def test_a_stderr_file_is_written_again_once_its_disk_has_room(self):
        """A write that fails with ENOSPC does not end stderr for the rest of the run: what
        does not fit in the queue is dropped and counted, the write is tried again a second
        later, and once the disk has room the queue, the count and what comes after are
        written, while mcpmux runs on."""
        flag = os.path.join(self.tmp.name, "full")
        open(flag, "w").close()
        path = os.path.join(self.tmp.name, "stderr.txt")
        with open(path, "wb") as f:
            w = self.mcpmux(["--log", "-"] + GRACE + ["--", FIXTURE], stderr=f,
                            env=self.shim_env(full_file="/stderr.txt", full_while=flag))

        def written():
            with open(path, "rb") as f:
                return f.read()
        self.pings(w)
        os.unlink(flag)  # room again
        wait_until(lambda: b"lines of stderr dropped" in written(), 10,
                   "the count of the lines dropped", lambda: repr(written()[-300:]))
        w.send(req(5000, "ping"))
        self.assertEqual(w.msg()["id"], 5000)
        wait_until(lambda: len([l for l in written().split(b"\n")
                                if l.startswith(b'{"ts"') and b'"id":5000,' in l]) == 2, 10,
                   "the records of a message after it", lambda: repr(written()[-300:]))
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertGreater(self.counters(w.pid)["failed"], 0)
        lines = written().split(b"\n")
        self.assertEqual(lines[-1], b"")
        said = [n for n, l in enumerate(lines) if b"lines of stderr dropped" in l]
        self.assertEqual(len(said), 1, said)
        m = re.fullmatch(rb"mcpmux: ([0-9]+) lines of stderr dropped \(stderr could not be "
                         rb"written: No space left on device\)", lines[said[0]])
        self.assertTrue(m, lines[said[0]])
        before = lines[:said[0]]
        for rec in before + lines[said[0] + 1:-1]:
            json.loads(rec)  # every line else a whole record
        # what was queued, then written, and what was dropped: all the records of the pings
        self.assertEqual(len(before) + int(m.group(1)), 1 + 2 * 2001)
        self.assertEqual([json.loads(l)["id"] for l in lines[said[0] + 1:said[0] + 3]],
                         [5000, 5000], "after the count, the records of the next message")

    def test_a_server_stderr_relayed_while_the_disk_is_full_is_written_once_it_has_room(self):
        """A server's stderr that mcpmux relays (with a traffic log) while its stderr's disk
        is full: held in the queue, which has room for it, not dropped, and written once
        the disk has room; nothing is said dropped."""
        flag = os.path.join(self.tmp.name, "full")
        open(flag, "w").close()
        path = os.path.join(self.tmp.name, "stderr.txt")
        log = os.path.join(self.tmp.name, "t.jsonl")
        with open(path, "wb") as f:
            w = self.mcpmux(["--log", log] + GRACE + ["--", FIXTURE], stderr=f,
                            env=self.shim_env(full_file="/stderr.txt", full_while=flag))

        def written():
            with open(path, "rb") as f:
                return f.read()

        def relayed(text):  # read from the server's pipe: its record is in the log
            with open(log) as f:
                return any(r.get("event") == "stderr" and r.get("text") == text
                           for r in map(json.loads, f))
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        # the first fails to be written (the disk is full), the second comes while it is
        for i, text in enumerate(["first line of the server", "second line of the server"]):
            w.send(call(i + 1, "stderr", text=text + "\n"))
            self.assert_response(w.msg(), i + 1)
            wait_until(lambda: relayed(text), 10, "the server's stderr relayed")
        self.assertEqual(written(), b"")
        os.unlink(flag)  # room again
        want = b"first line of the server\nsecond line of the server\n"
        wait_until(lambda: written() == want, 10, "the server's stderr written",
                   lambda: repr(written()[-300:]))
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertGreater(self.counters(w.pid)["failed"], 0)
        self.assertEqual(written(), want)


@needs_shim
class SharedStderr(Faults):
    """mcpmux's stderr a pipe that it cannot open again (FAULT_STDIO_SHARED: as without
    /proc): it works on the description it shares, with O_NONBLOCK while it runs, and
    gives the flags back at exit."""

    def test_last_words_on_a_full_stderr_never_hang_the_exit(self):
        """A stderr pipe that is full and that nobody reads, and a keeper that is gone (at
        exit, mcpmux says it cannot tell it, after its stderr's queue was given up): that
        line gets one write that never blocks, and mcpmux exits within its graces, where a
        blocking write waited for ever."""
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(w, False)
        try:
            while True:
                os.write(w, b"x" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(w, True)
        try:
            p = self.mcpmux(GRACE + ["--", FIXTURE], stderr=w,
                            env=self.shim_env(stdio_shared=1))
        finally:
            os.close(w)
        p.send(initialize(0))
        self.assert_response(p.msg(), 0)
        with open("/proc/%d/fdinfo/2" % p.pid) as f:
            flags = int(f.read().split("flags:")[1].split()[0], 8)
        self.assertTrue(flags & os.O_NONBLOCK, "stderr's shared description, non-blocking")
        keeper = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == p.pid], 10,
                            "the keeper")[0]
        os.kill(keeper, signal.SIGKILL)
        wait_until(lambda: not alive(keeper), 10, "the keeper to be gone")
        p.close_stdin()
        t0 = time.monotonic()
        self.assertEqual(p.wait(10), 0)
        self.assertLess(time.monotonic() - t0, 5 * (5 if SANITIZED or WRAPPER else 1))
        self.assertGreater(self.counters(p.pid)["failed"], 0)
        self.assert_no_leftovers()


if __name__ == "__main__":
    main()
