"""Nothing escapes: when mcpmux itself is SIGKILLed (as clients do on timeouts and at
exit, as the OOM killer does), every process of every session it ran ends within
eof-grace + term-grace + 1 s, through its keeper; with a cgroup where one can be made
(as root here), and with the cookie alone (MCPMUX_CGROUP=off)."""

import errno
import fcntl
import json
import os
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time

from mcptest import (FIXTURE, MCPMUX, SLOW, Case, alive, all_pids, call, comm, keeper_of, main,
                     note, ppid_of, proc_environ, proc_state, req, wait_until)

GRACES = ["--eof-grace", "300", "--term-grace", "300"]
BOUND = 0.3 + 0.3 + 1.0


def stat_of(pid):
    """(state, start time) of a process, None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read()
    except OSError:
        return None
    rest = st[st.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[19])


def descends_from(pid, root):
    """Is pid a descendant of root (its parents read from /proc, one by one)?"""
    for _ in range(4096):  # a parent is older, but pids are reused: bounded all the same
        pid = ppid_of(pid)
        if pid is None or pid <= 1:
            return False
        if pid == root:
            return True
    return False


def runs(pid, start):
    """Is the process (pid, start time) still running?  One whose main thread has exited
    while another thread runs on shows as a zombie (state Z), and runs: its other threads
    are listed in /proc/PID/task."""
    st = stat_of(pid)
    if st is None or st[1] != start:
        return False
    try:
        return st[0] not in "ZX" or len(os.listdir("/proc/%d/task" % pid)) > 1
    except OSError:
        return False


def end_running(pids):
    """SIGKILL what of pids ({pid: start time}) still runs: what a failed test leaves of a
    process whose main thread has exited carries no tag the teardown could find."""
    for q, st in pids.items():
        if runs(q, st):
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass


def env_answer(p, serve, session):
    """The answer to the env tool, asked of p (serve: in session's envelope, the lines
    before it skipped)."""
    p.send({"session": session, "message": call(1, "env")} if serve else call(1, "env"))
    while True:
        m = p.msg()
        m = m.get("message", m)
        if m.get("id") == 1:
            return m


def threaded_pids(case, p, pid):
    """{pid: start time} of the server pid and of its daemonised grandchild (--main-thread-
    exits), once the main thread of each has exited; ended at case's cleanup if they run."""
    gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                        "the grandchild")[-1])
    pids = {q: stat_of(q)[1] for q in (pid, gc)}
    case.addCleanup(end_running, pids)
    wait_until(lambda: all(stat_of(q)[0] == "Z" and runs(q, st) for q, st in pids.items()),
               5, "the main threads of the server and its grandchild to exit")
    return pids


def unread(fd):
    """The bytes waiting in the pipe that fd reads."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def zombies_of(seen):
    """The processes of `seen` ({pid: start time}) that are zombies now: dead, unreaped."""
    return [pid for pid, start in seen.items() if stat_of(pid) == ("Z", start)]


def session_of(p, id_, envelope=None):
    """The MCPMUX_SESSION of the server behind p (the env tool's answer)."""
    msg = call(id_, "env")
    p.send(msg if envelope is None else {"session": envelope, "message": msg})
    while True:
        m = p.msg()
        m = m.get("message", m)
        if m.get("id") == id_:
            return m["result"]["structuredContent"]["session"]


class Sigkill(Case):
    SERVERS = {
        # a launcher that execs nothing: the server is the shell's child
        "launcher": ["sh", "-c", FIXTURE + " --ignore-eof; true"],
        # a setsid() daemonised grandchild
        "daemon": [FIXTURE, "--daemonize-grandchild"],
        # both, and deaf to SIGTERM and EOF
        "stubborn": ["sh", "-c", FIXTURE + " --ignore-sigterm --ignore-eof "
                     "--daemonize-grandchild; true"],
    }

    def session_of(self, p, id_, envelope=None):
        return session_of(p, id_, envelope)

    def assert_all_gone_after_kill(self, p, sessions, t0=None):
        t0 = time.monotonic() if t0 is None else t0
        # every process of the test, for the zombie check (its own, not the machine's)
        for pid in self.tagged() + [p.pid]:
            st = stat_of(pid)
            if st is not None:
                self.seen[pid] = st[1]
        status = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "instances", str(p.pid))
        self.assertTrue(os.path.exists(status), "the instance's status file")
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not any(self.cookie_pids(s) for s in sessions) and
                   not self.tagged(), BOUND + 1,
                   "every process of the sessions, and the keeper, to be gone")
        took = time.monotonic() - t0
        self.assertLess(took, BOUND * SLOW + 0.5, "took %.2f s" % took)
        # nothing of the killed instance is left: its status file went with its keeper
        self.assertFalse(os.path.exists(status), "the killed instance's status file")

    def in_teardown(self, p):
        """Wait until a teardown has begun (-v says so)."""
        wait_until(lambda: "teardown begins" in p.stderr(), 5, "the teardown to begin")

    def check_wrap(self, kind, during_teardown=False):
        verbose = ["-v"] if during_teardown else []
        p = self.start([MCPMUX] + verbose + GRACES + ["--"] + self.SERVERS[kind])
        s = self.session_of(p, 1)
        if kind != "launcher":
            wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        if during_teardown:
            p.send(note("mcpmux/endRun"))
            self.in_teardown(p)
        self.assert_all_gone_after_kill(p, [s])

    def check_serve(self, kind, during_teardown=False):
        verbose = ["-v"] if during_teardown else []
        p = self.start([MCPMUX, "serve"] + verbose + GRACES + ["--"] + self.SERVERS[kind])
        sessions = []
        for name in ("one", "two"):
            sessions.append(self.session_of(p, 1, envelope=name))
        if kind != "launcher":
            for s in sessions:
                wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        if during_teardown:
            p.send({"session": "one", "message": note("mcpmux/endRun")})
            self.in_teardown(p)
        self.assert_all_gone_after_kill(p, sessions)

    def check_main_thread_exited(self, serve):
        """A server whose main thread has called pthread_exit() while a second thread serves,
        and a daemonised grandchild of it that does the same: /proc shows each as a zombie
        whose environment is empty, yet they run, and end with the rest."""
        t0 = time.monotonic()
        fixture = [FIXTURE, "--daemonize-grandchild", "--main-thread-exits"]
        p = self.start([MCPMUX] + (["serve"] if serve else []) + GRACES + ["--"] + fixture)
        m = env_answer(p, serve, "one")
        pids = threaded_pids(self, p, m["result"]["structuredContent"]["pid"])
        self.assert_all_gone_after_kill(p, [m["result"]["structuredContent"]["session"]], t0)
        self.assertEqual([q for q, st in pids.items() if runs(q, st)], [],
                         "still running once the keeper is gone")

    def test_wrap_main_thread_exited(self):
        self.check_main_thread_exited(False)

    def test_serve_main_thread_exited(self):
        self.check_main_thread_exited(True)

    def test_wrap_launcher(self):
        self.check_wrap("launcher")

    def test_wrap_daemon(self):
        self.check_wrap("daemon")

    def test_wrap_stubborn(self):
        self.check_wrap("stubborn")

    def test_wrap_stubborn_during_teardown(self):
        self.check_wrap("stubborn", during_teardown=True)

    def test_serve_launcher(self):
        self.check_serve("launcher")

    def test_serve_daemon(self):
        self.check_serve("daemon")

    def test_serve_stubborn(self):
        self.check_serve("stubborn")

    def test_serve_stubborn_during_teardown(self):
        self.check_serve("stubborn", during_teardown=True)

    def setUp(self):
        super().setUp()
        self.seen = {}

    def test_the_status_file_of_a_killed_instance_its_parent_has_not_reaped_goes(self):
        """A zombie still holds the pid: it is the dead instance, and its file goes."""
        p = self.start([MCPMUX] + GRACES + ["--"] + self.SERVERS["daemon"])
        s = self.session_of(p, 1)
        status = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "instances", str(p.pid))
        self.assertTrue(os.path.exists(status), "the instance's status file")
        p.p.send_signal(signal.SIGKILL)
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the keeper, to be gone")
        self.assertEqual(stat_of(p.pid)[0], "Z", "mcpmux, not reaped yet")
        self.assertFalse(os.path.exists(status), "the killed instance's status file")
        p.wait()

    def test_a_hundred_cycles_leave_nothing(self):
        for i in range(100):
            kind = ("launcher", "daemon", "stubborn")[i % 3]
            if i % 2:
                self.check_wrap(kind, during_teardown=i % 4 == 1)
            else:
                self.check_serve(kind, during_teardown=i % 4 == 2)
            for p in self.procs:
                p.kill()
            self.procs = []
        # reaped: by the harness (mcpmux itself), or by init (what mcpmux left re-parented)
        wait_until(lambda: not zombies_of(self.seen), 10,
                   "no zombie of the test's processes (left: %r)" % zombies_of(self.seen))


class SigkillWithoutCgroup(Sigkill):
    """The same, with the cookie alone: the keeper finds the processes by MCPMUX_OWNER."""

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"

    test_a_hundred_cycles_leave_nothing = None


class WithoutClone3(Sigkill):
    """The same where clone3() fails with ENOSYS, as under a container runtime's seccomp
    profile that predates it: servers are spawned the old way and join their cgroup leaf
    themselves, and nothing escapes either."""

    def setUp(self):
        super().setUp()
        self.prefix = [os.environ["MCPMUX_NOCLONE3"]]

    test_a_hundred_cycles_leave_nothing = None

    def cgroup_of(self, pid):
        with open("/proc/%d/cgroup" % pid) as f:
            return f.read().strip().rsplit("::", 1)[-1]

    def test_every_server_is_in_its_leaf(self):
        p = self.start([MCPMUX, "-v"] + GRACES + ["--", FIXTURE])
        leaves = []
        for run in range(3):
            p.send(call(1, "env"))
            env = p.msg()["result"]["structuredContent"]
            pid = env["pid"]
            # spawned by clone(), with a copy of mcpmux's descriptor table: still only
            # its own pipes and what mcpmux inherited (0-2 here)
            self.assertEqual(env["fds"], "0,1,2")
            self.assert_pipes_held_once(p.pid, [pid])
            if "cgroup: none usable here" in p.stderr():
                self.skipTest("no cgroup can be made here: " + p.stderr())
            leaves.append(self.cgroup_of(pid))
            self.assertRegex(leaves[-1], r"/mcpmux\.%d/s\.\d+$" % p.pid)
            p.send(note("mcpmux/endRun"))
            wait_until(lambda: not alive(pid), 5, "the run's server to end")
        self.assertEqual(len(set(leaves)), 3, leaves)
        self.assertEqual(p.stderr().count("clone3() is refused here"), 1,
                         p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


class ExitLeftovers(Case):
    """What serve kills at its exit (what no session claimed, what a teardown saw gone while
    it was still dying) is gone, reaped, the moment its exit status is collected: none of it
    is left in /proc for init to reap later, where a supervisor that looks right after the
    exit would see it (the test, a child subreaper here, is such a supervisor: what mcpmux
    leaves comes to it, and stays until it reaps it).  With a cgroup, a session's leaf
    holds its orphan, and its teardown usually ends and reaps it itself; the cookie-less
    orphan is left to the exit every time without one (ExitLeftoversWithoutCgroup).
    What is looked at is what mcpmux runs: its descendants while it runs.  Its keeper is
    none of them (a double fork: the test's own child here, which the test reaps, not
    mcpmux); nor is it told by its name, which it takes a moment after its start, a moment
    that a loaded machine can make last past the server's first answer."""

    SERVERS = {
        # a double-forked grandchild in its own session without its environment: serve
        # leaves it to its exit (no session can claim it: docs/reliability.md)
        "noenv": [FIXTURE, "--clear-env-grandchild"],
        # a double-forked grandchild in its own session, and both deaf to SIGTERM and EOF
        "daemon": [FIXTURE, "--daemonize-grandchild", "--ignore-sigterm", "--ignore-eof"],
    }

    def setUp(self):
        super().setUp()
        self.adopt_orphans()

    def assert_exit_leaves_nothing(self, p, server, gc, others, what):
        """The server and the grandchild (and those of others that are there) are of p's
        tree; p's stdin closed, p exits with 0, and none of them is left in /proc (the
        same pid with the same start time): what, with p's stderr, says what was."""
        seen = {}
        for pid in [server, gc] + list(others):
            st = stat_of(pid)
            if st is not None and descends_from(pid, p.pid):
                seen[pid] = st[1]
        self.assertEqual({server, gc} - set(seen), set(), "of mcpmux's tree, not seen")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        left = {pid: stat_of(pid) for pid, start in seen.items()
                if (stat_of(pid) or (None, None))[1] == start}
        self.assertEqual(left, {}, "%s (state, start); stderr:\n%s" % (what, p.stderr()))

    def check(self, kind):
        p = self.start([MCPMUX, "serve"] + GRACES + ["--"] + self.SERVERS[kind])
        p.send({"session": "s", "message": call(1, "env")})
        while True:
            m = p.msg().get("message", {})
            if m.get("id") == 1:
                break
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        if kind == "noenv":  # re-executed without its environment (and so its cookie)
            wait_until(lambda: comm(gc) == "exe", 5, "the grandchild's exec")
        server = m["result"]["structuredContent"]["pid"]
        self.assert_exit_leaves_nothing(p, server, gc, self.tagged(),
                                        "%s: left in /proc at serve's exit" % kind)

    def test_serve_leaves_nothing_in_proc(self):
        for kind in self.SERVERS:
            with self.subTest(kind=kind):
                self.check(kind)

    def test_wrap_leaves_nothing_in_proc(self):
        """wrap's exit does as serve's.  A double-forked grandchild in its own session that
        carries another session's cookie (as a nested mcpmux's process does) is no run's:
        without a cgroup its run ends without it, and wrap's exit kills it and reaps it
        (with one, its leaf holds it, and its run ends it)."""
        p = self.start([MCPMUX, "-v"] + GRACES + ["--", "env", "MCPMUX_SESSION=elsewhere",
                                                  FIXTURE, "--daemonize-grandchild"])
        p.send(call(1, "env"))
        m = p.msg()
        self.assertEqual(m.get("id"), 1, m)
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        server = m["result"]["structuredContent"]["pid"]
        self.assert_exit_leaves_nothing(p, server, gc, (), "left in /proc at wrap's exit")
        if self.env.get("MCPMUX_CGROUP") == "off":
            self.assertRegex(p.stderr(), r"ended \(eof, \d+ ms\)\n(.*\n)*mcpmux: killed 1 "
                             r"leftover process\(es\)\n")


class ExitLeftoversWithoutCgroup(ExitLeftovers):
    """The same with the walk alone (MCPMUX_CGROUP=off)."""

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"


class DyingDaemon(Case):
    """Without a cgroup, a daemon that its cookie alone ties to its session (a grandchild
    in a session of its own) is of the tree until it is gone: from the moment a process in
    exit has let its memory go its environment reads empty, yet it holds its files until
    later (here a lock, taken after 256 MiB of memory that take a while to free).  The
    session's "ended" comes once the lock is free, every time, so that a supervisor that
    starts the server again at once finds it free (docs/lifecycle.md)."""

    RUNS = 20

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"

    @staticmethod
    def lock_is_free(path):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def test_ended_comes_once_the_daemon_has_let_its_lock_go(self):
        lock = os.path.join(self.tmp.name, "lock")
        # deaf to EOF: the server and the daemon get their SIGTERM together
        p = self.start([MCPMUX, "serve", "--eof-grace", "50", "--term-grace", "5000", "--",
                        FIXTURE, "--ignore-eof", "--locking-grandchild=" + lock])
        held = []
        for i in range(self.RUNS):
            s = "s%d" % i
            p.send({"session": s, "message": req(1, "ping")})
            while p.msg().get("message", {}).get("id") != 1:
                pass
            self.assertFalse(self.lock_is_free(lock), "the daemon holds the lock")
            p.send({"session": s, "message": req(2, "mcpmux/endRun")})
            while True:
                m = p.msg()
                if m.get("session") == s and m.get("event") == "ended":
                    break
            if not self.lock_is_free(lock):
                held.append(i)
        self.assertEqual(held, [], "runs whose daemon still held its lock at their "
                         "\"ended\"; stderr:\n%s" % p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers(0)


class MainThreadExited(Case):
    """Without a cgroup, a server whose main thread has exited (pthread_exit()) while a
    second thread runs on, and a daemonised grandchild of it that does the same, are of the
    tree: /proc shows each as a zombie with an empty environment, yet they run and hold
    their files.  They are signalled, and a run ends ("ended", a wrap's exit) only once they
    are gone (docs/lifecycle.md)."""

    # deaf to EOF: each has to be signalled
    FIXTURE = [FIXTURE, "--daemonize-grandchild", "--main-thread-exits", "--ignore-eof"]
    OPTS = ["--eof-grace", "100", "--term-grace", "300", "--kill-deadline", "3000"]

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"

    def test_serve_ends_them_before_ended(self):
        p = self.start([MCPMUX, "serve"] + self.OPTS + ["--"] + self.FIXTURE)
        p.send({"session": "s", "message": call(1, "env")})
        while True:
            m = p.msg()
            if m.get("session") == "s" and m.get("message", {}).get("id") == 1:
                break
        pids = threaded_pids(self, p, m["message"]["result"]["structuredContent"]["pid"])
        p.send({"session": "s", "message": note("mcpmux/endRun")})
        while True:
            m = p.msg()
            if m.get("session") == "s" and m.get("event") == "ended":
                break
        self.assertEqual([q for q, st in pids.items() if runs(q, st)], [],
                         "running at \"ended\"; stderr:\n%s" % p.stderr())
        self.assertIn(m["escalation"], ("term", "kill"), m)
        self.assertNotIn("abandoned", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_wrap_ends_them_before_it_exits(self):
        p = self.start([MCPMUX] + self.OPTS + ["--"] + self.FIXTURE)
        p.send(call(1, "env"))
        pids = threaded_pids(self, p, p.msg()["result"]["structuredContent"]["pid"])
        p.close_stdin()
        # the server's status: SIGTERM ended it
        self.assertEqual(p.wait(), 128 + signal.SIGTERM, p.stderr())
        self.assertEqual([q for q, st in pids.items() if runs(q, st)], [],
                         "running at wrap's exit; stderr:\n%s" % p.stderr())
        self.assertNotIn("abandoned", p.stderr())


class LeafAlone(Case):
    """With a cgroup, a grandchild that has left its tree (setsid(), re-executed with no
    environment: no cookie) and whose main thread has then exited while a second thread
    runs on: its cgroup leaf alone ties it to its session, and `cgroup.kill` leaves such a
    process alive (6.18).  A leaf's processes get SIGKILL each after it, so a run's "ended"
    comes once it is gone, and the keeper of a SIGKILLed mcpmux ends it
    (docs/lifecycle.md)."""

    FIXTURE = [FIXTURE, "--clear-env-grandchild", "--main-thread-exits"]
    OPTS = ["--eof-grace", "100", "--term-grace", "300", "--kill-deadline", "3000"]

    def setUp(self):
        super().setUp()
        self.pids = {}

    def escaped(self, p, serve):
        """The env tool's answer; self.pids: {pid: start time} of the server and its
        grandchild, once the grandchild has cleared its environment and the main thread of
        each has exited.  Skipped where the grandchild is in no cgroup leaf of p's."""
        m = env_answer(p, serve, "s")
        env = m["result"]["structuredContent"]
        self.pids = threaded_pids(self, p, env["pid"])
        gc = [q for q in self.pids if q != env["pid"]][0]
        self.assertEqual(comm(gc), "exe", "the grandchild re-executed without environment")
        with open("/proc/%d/cgroup" % gc) as f:
            if not re.search(r"/mcpmux\.%d(\.\d+)?/s\.\d+$" % p.pid, f.read().strip()):
                self.skipTest("no cgroup leaf here")
        return env

    def test_serve_ended_comes_once_it_is_gone(self):
        p = self.start([MCPMUX, "serve"] + self.OPTS + ["--"] + self.FIXTURE)
        self.escaped(p, True)
        p.send({"session": "s", "message": note("mcpmux/endRun")})
        while True:
            m = p.msg()
            if m.get("session") == "s" and m.get("event") == "ended":
                break
        self.assertEqual([q for q, st in self.pids.items() if runs(q, st)], [],
                         "running at \"ended\"; stderr:\n%s" % p.stderr())
        self.assertEqual(m["escalation"], "kill", m)
        self.assertNotIn("abandoned", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def check_keeper(self, serve):
        p = self.start([MCPMUX] + (["serve"] if serve else []) + GRACES + ["--"] +
                       self.FIXTURE)
        env = self.escaped(p, serve)
        t0 = time.monotonic()  # the bound runs from the kill, not from mcpmux's start
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        # The keeper's own waits, when nothing dies, come to the grace and 1 s of SIGKILLs
        # for what carries the owner, then 1 s of cgroup kills: 2.3 s, which a loaded
        # machine stretches (2.5 s seen with other test runs).  The wait has room for
        # that, and what matters is asserted first: nothing runs once the keeper is gone.
        wait_until(lambda: not self.cookie_pids(env["session"]) and not self.tagged(),
                   10, "the server and the keeper to be gone",
                   explain=lambda: "left: %s; stderr:\n%s" % (
                       ["%d %s %s" % (q, comm(q), proc_state(q)) for q in self.tagged()],
                       p.stderr()))
        took = time.monotonic() - t0
        self.assertEqual([q for q, st in self.pids.items() if runs(q, st)], [],
                         "still running once the keeper is gone")
        # BOUND, with 2 s of room for a loaded machine (4.5 s at most, whatever the
        # multiplier).
        self.assertLess(took, min(BOUND * SLOW + 2, 4.5), "took %.2f s; stderr:\n%s" % (
            took, p.stderr()))

    def test_wrap_keeper_ends_it(self):
        self.check_keeper(False)

    def test_serve_keeper_ends_it(self):
        self.check_keeper(True)


class Nested(Case):
    """mcpmux as the server of another mcpmux (`mcpmux -- mcpmux -- server`), without a
    cgroup: the inner one's servers carry MCPMUX_OUTER, which names the outer session
    and instance, so the outer mcpmux, or its keeper, ends them with its own tree, even
    when it has killed the inner mcpmux (and the inner keeper) before that one could."""

    # the inner mcpmux takes far longer to end its server than the outer one waits
    INNER = [MCPMUX, "--eof-grace", "300", "--term-grace", "5000", "--"]
    STUBBORN = ["sh", "-c", FIXTURE + " --ignore-sigterm --ignore-eof --daemonize-grandchild; "
                "true"]

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"

    def start_nested(self):
        p = self.start([MCPMUX] + GRACES + ["--"] + self.INNER + self.STUBBORN)
        s = session_of(p, 1)  # the inner session's cookie
        wait_until(lambda: len(self.cookie_pids(s)) >= 3, 5, "the server and its grandchild")
        return p, s

    def test_a_sigkilled_outer_mcpmux_ends_the_inner_trees(self):
        p, s = self.start_nested()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "the inner session's processes, the inner mcpmux and both keepers to be gone")

    def test_an_outer_run_that_ends_first_ends_the_inner_trees(self):
        p, s = self.start_nested()
        p.send(note("mcpmux/endRun"))
        p.close_stdin()
        self.assertEqual(p.wait(BOUND + 5), 128 + signal.SIGKILL)  # the inner mcpmux's status
        wait_until(lambda: not self.tagged(), 2, "every process of the nested run to be gone")

    def env_of(self, pid):
        """{name: value} of a process's environment."""
        with open("/proc/%d/environ" % pid, "rb") as f:
            pairs = [e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e]
        return dict(pairs)

    def owner_of(self, pid):
        return "%d:%d" % (pid, stat_of(pid)[1])

    def server_env(self, p):
        """The pid and environment of the server behind p."""
        p.send(call(1, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        return pid, self.env_of(pid)

    def test_outer_names_the_outer_instances_innermost_first(self):
        """mcpmux -- mcpmux -- mcpmux -- server: the server's MCPMUX_OUTER is the middle
        one's session and instance, then the outer one's, as `SESSION,PID:START` entries
        separated by a space."""
        p = self.start([MCPMUX] + GRACES + ["--", MCPMUX] + GRACES + ["--"] + self.INNER +
                       [FIXTURE])
        pid, env = self.server_env(p)
        inner = ppid_of(pid)
        middle = ppid_of(inner)
        self.assertEqual(ppid_of(middle), p.pid)
        self.assertEqual(comm(inner), "mcpmux")
        self.assertEqual(comm(middle), "mcpmux")
        env_inner, env_middle = self.env_of(inner), self.env_of(middle)
        self.assertEqual(env_middle["MCPMUX_OWNER"], self.owner_of(p.pid))
        self.assertEqual(env_inner["MCPMUX_OWNER"], self.owner_of(middle))
        self.assertEqual(env["MCPMUX_OWNER"], self.owner_of(inner))
        self.assertEqual(env_inner["MCPMUX_OUTER"],
                         "%s,%s" % (env_middle["MCPMUX_SESSION"], self.owner_of(p.pid)))
        self.assertEqual(env["MCPMUX_OUTER"],
                         "%s,%s %s,%s" % (env_inner["MCPMUX_SESSION"], self.owner_of(middle),
                                          env_middle["MCPMUX_SESSION"], self.owner_of(p.pid)))
        self.assertEqual(len({env["MCPMUX_SESSION"], env_inner["MCPMUX_SESSION"],
                              env_middle["MCPMUX_SESSION"]}), 3)
        self.assertNotIn("MCPMUX_OUTER", self.env_of(p.pid))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        wait_until(lambda: not self.tagged(), 5, "every process of the nested run to be gone")

    def test_outer_holds_at_most_1_kib_leaving_out_the_outermost(self):
        """An mcpmux nested in sessions that take more than 1 KiB to name (here its own
        environment says so, as the ones it runs in would have set it): its servers'
        MCPMUX_OUTER keeps its own session first, then the innermost of the others that fit
        in 1 KiB."""
        own = "own-" + "s" * 120
        entries = ["outer%02d-%s,%d:%d" % (i, "x" * 89, 4000000 + i, 1000 + i)
                   for i in range(12)]
        self.env["MCPMUX_SESSION"] = own
        self.env["MCPMUX_OWNER"] = "3999999:999"
        self.env["MCPMUX_OUTER"] = " ".join(entries)
        self.assertGreater(len(self.env["MCPMUX_OUTER"]), 1024)
        p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
        _, env = self.server_env(p)
        got = env["MCPMUX_OUTER"]
        # its own entry (136 bytes) and 8 of 110, each after a space, fill 1 KiB exactly:
        # the 4 outermost are left out
        kept = [own + ",3999999:999"] + entries[:8]
        self.assertEqual(len(" ".join(kept)), 1024)
        self.assertEqual(got.split(" "), kept)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_nested_session_with_one_of_our_ids_is_not_ours(self):
        """serve's session A runs another serve, which has a session B of its own: ending
        the outer B leaves the inner B alone."""
        sock = os.path.join(self.tmp.name, "inner.sock")
        script = ('if [ "$MCPMUX_SESSION" = A ]; then '
                  'exec "$0" serve --listen "$1" -- "$2" --daemonize-grandchild; fi; exec "$2"')
        p = self.start([MCPMUX, "serve"] + GRACES + ["--", "sh", "-c", script, MCPMUX, sock,
                                                     FIXTURE])
        p.send({"session": "A", "message": req(1, "ping")})
        wait_until(lambda: os.path.exists(sock), 5, "the inner serve to listen")
        c = self.start([MCPMUX, "connect", "--session", "B", sock])
        self.assertEqual(session_of(c, 1), "B")
        wait_until(lambda: len(self.cookie_pids("B")) >= 2, 5, "the inner B's grandchild")
        inner_b = set(self.cookie_pids("B"))
        self.assertEqual(session_of(p, 2, envelope="B"), "B")
        outer_b = set(self.cookie_pids("B")) - inner_b
        self.assertTrue(outer_b)
        p.send({"session": "B", "message": note("mcpmux/endRun")})
        while True:
            m = p.msg()
            if m.get("session") == "B" and m.get("event") == "ended":
                break
        self.assertEqual(set(self.cookie_pids("B")), inner_b, "the inner B must live on")
        c.close_stdin()
        c.wait()
        p.close_stdin()
        p.wait(BOUND + 5)
        wait_until(lambda: not self.tagged(), 5, "every process of both serves to be gone")


class KeeperKilled(Case):
    """A keeper killed while its mcpmux runs (a `kill` of the wrong pid, an OOM kill) is
    replaced (at once the first time, then a second after the last try, not sooner): another
    keeper, a child of mcpmux now (it is a subreaper), is told
    again what the first was told (the cgroup), and ends what a SIGKILLed mcpmux leaves,
    in the same bound (docs/lifecycle.md)."""

    def keepers(self, p):
        return [q for q in self.tagged() if keeper_of(q) == p.pid]

    def replaced(self, p):
        """Kill p's keeper; the one that takes its place, once it is under way.

        The new keeper is the pid mcpmux names: its middle process carries the keeper's
        name too, for the moment before it exits."""
        first = wait_until(lambda: self.keepers(p), 5, "the keeper")
        self.assertEqual(len(first), 1)
        os.kill(first[0], signal.SIGKILL)
        said = re.compile(r"the keeper \(pid %d\) is gone: another \(pid (\d+)\) takes its "
                          r"place" % first[0])
        m = wait_until(lambda: said.search(p.stderr()), 5, "another keeper",
                       explain=lambda: "stderr:\n" + p.stderr())
        second = int(m.group(1))
        wait_until(lambda: self.keepers(p) == [second], 5, "the keeper mcpmux named, alone",
                   explain=lambda: "keepers: %r; stderr:\n%s" % (self.keepers(p), p.stderr()))
        return second

    def check(self, serve):
        p = self.start([MCPMUX] + (["serve"] if serve else []) + GRACES + ["--"] +
                       Sigkill.SERVERS["stubborn"])
        s = session_of(p, 1, "one" if serve else None)
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        self.replaced(p)
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the new keeper, to be gone",
                   explain=lambda: "left: %r; stderr:\n%s" % (
                       ["%d %s" % (q, comm(q)) for q in self.tagged()], p.stderr()))
        took = time.monotonic() - t0
        self.assertLess(took, BOUND * SLOW + 0.5, "took %.2f s" % took)

    def test_wrap_a_killed_keeper_is_replaced(self):
        self.check(False)

    def test_serve_a_killed_keeper_is_replaced(self):
        self.check(True)

    def test_the_new_keeper_kills_the_cgroup(self):
        """It is told the instance cgroup again: a grandchild without its environment,
        which the cgroup alone ties to mcpmux, is ended by it."""
        p = self.start([MCPMUX] + GRACES + ["--"] + LeafAlone.FIXTURE)
        m = env_answer(p, False, None)
        pids = threaded_pids(self, p, m["result"]["structuredContent"]["pid"])
        gc = [q for q in pids if q != m["result"]["structuredContent"]["pid"]][0]
        with open("/proc/%d/cgroup" % gc) as f:
            if not re.search(r"/mcpmux\.%d(\.\d+)?/s\.\d+$" % p.pid, f.read().strip()):
                self.skipTest("no cgroup leaf here")
        self.replaced(p)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not any(runs(q, st) for q, st in pids.items()) and
                   not self.tagged(), BOUND + 1, "the grandchild and the keeper to be gone",
                   explain=lambda: "stderr:\n" + p.stderr())

    def test_keepers_killed_one_after_the_other(self):
        """Each keeper killed as soon as it is there, 20 times: a keeper killed before
        mcpmux has told it the cgroup is not said (the next one is told in its turn); the
        last one ends what the SIGKILLed mcpmux leaves."""
        p = self.start([MCPMUX, "serve"] + GRACES + ["--"] + Sigkill.SERVERS["daemon"])
        s = session_of(p, 1, "one")
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        killed = set()
        for _ in range(20):
            for k in [q for q in self.tagged() if comm(q) == "mcpmux-keeper"]:
                killed.add(k)
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)  # a storm of kills, not a wait for an event
        # every keeper killed has closed its pipe; mcpmux's loop has seen it by its answer
        wait_until(lambda: not any(alive(k) for k in killed), 5, "the keepers to die")
        p.send({"session": "one", "message": req(2, "ping")})
        self.assertEqual(p.msg()["message"]["id"], 2)
        wait_until(lambda: [k for k in self.keepers(p) if k not in killed], 5,
                   "the last keeper", explain=p.stderr)
        self.assertNotIn("cannot tell", p.stderr())
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the last keeper, to be gone")

    def test_keepers_killed_one_after_the_other_are_replaced_once_a_second_at_most(self):
        """The first keeper killed is replaced at once; the one in its place, killed as
        soon as it is there, a second after it was started, not before: whatever kills
        every keeper in a loop does not make mcpmux fork without a pause."""
        p = self.start([MCPMUX, "serve"] + GRACES + ["--"] + Sigkill.SERVERS["daemon"])
        s = session_of(p, 1, "one")
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        second = self.replaced(p)
        started = stat_of(second)[1]
        os.kill(second, signal.SIGKILL)
        third = wait_until(lambda: [q for q in self.keepers(p) if q != second], 5,
                           "the third keeper", explain=p.stderr)[0]
        # (in clock ticks since boot: the second's start precedes the try that started it)
        after = (stat_of(third)[1] - started) / os.sysconf("SC_CLK_TCK")
        self.assertGreaterEqual(after, 0.95, "started %.2f s after the second" % after)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the last keeper, to be gone")

    def test_a_keeper_that_cannot_be_started_is_started_later(self):
        """Another keeper that cannot be started (no descriptor left) is said, and tried
        again every second: once the descriptors are back, one is, and it ends what the
        SIGKILLed mcpmux leaves."""
        p = self.start([MCPMUX, "serve"] + GRACES + ["--"] + Sigkill.SERVERS["daemon"])
        s = session_of(p, 1, "one")
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        first = wait_until(lambda: self.keepers(p), 5, "the keeper")[0]
        limits = resource.prlimit(p.pid, resource.RLIMIT_NOFILE)
        # no descriptor left for the new keeper's pipes
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE,
                         (len(os.listdir("/proc/%d/fd" % p.pid)), limits[1]))
        try:
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: "no other can be started" in p.stderr(), 5,
                       "the failure to be said", explain=p.stderr)
        finally:
            resource.prlimit(p.pid, resource.RLIMIT_NOFILE, limits)
        wait_until(lambda: self.keepers(p), 5, "another keeper", explain=p.stderr)
        wait_until(lambda: "the keeper (pid %d) is gone: another" % first in p.stderr(), 5,
                   "the new keeper to be said", explain=p.stderr)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the new keeper, to be gone",
                   explain=p.stderr)

    def test_a_normal_exit_after_it_leaves_nothing(self):
        """The new keeper is mcpmux's child: no run claims it, mcpmux's exit does not
        kill it as a leftover, and it goes with that exit."""
        p = self.start([MCPMUX, "-v"] + GRACES + ["--"] + Sigkill.SERVERS["daemon"])
        s = session_of(p, 1)
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        k = self.replaced(p)
        self.assertEqual(ppid_of(k), p.pid)
        p.send(call(2, "echo", text="still here"))
        self.assertEqual(p.msg()["id"], 2)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertNotIn("leftover", p.stderr())
        wait_until(lambda: not self.tagged(), 2, "the new keeper to be gone")


class KeeperKilledWithoutCgroup(KeeperKilled):
    """The same with the cookie alone (MCPMUX_CGROUP=off): the new keeper, a child of
    mcpmux without a cookie, is claimed by no run of wrap's."""

    test_the_new_keeper_kills_the_cgroup = None  # there is none

    def setUp(self):
        super().setUp()
        self.env["MCPMUX_CGROUP"] = "off"


class ProcessGroup(Case):
    """The keeper runs in a session of its own (docs/lifecycle.md): a signal to mcpmux's
    process group, as a closing terminal or a client that ends its whole group sends, does
    not reach it, and it ends what the SIGKILLed mcpmux leaves, in the same bound."""

    def start_alone(self, verbose=False):
        """mcpmux as the leader of a session and group of its own, its server's daemonised
        grandchild running; the keeper checked to be in neither."""
        p = self.start([MCPMUX] + (["-v"] if verbose else []) + GRACES +
                       ["--"] + Sigkill.SERVERS["stubborn"], start_new_session=True)
        s = session_of(p, 1)
        wait_until(lambda: len(self.cookie_pids(s)) >= 2, 5, "the grandchild")
        keepers = wait_until(lambda: [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                             5, "the keeper")
        self.assertEqual(len(keepers), 1)
        self.assertEqual(os.getsid(p.pid), p.pid)
        self.assertNotEqual(os.getsid(keepers[0]), p.pid)
        self.assertNotEqual(os.getpgid(keepers[0]), p.pid)
        return p, s

    def assert_all_gone(self, p, s, t0):
        p.wait()
        wait_until(lambda: not self.cookie_pids(s) and not self.tagged(), BOUND + 1,
                   "every process of the session, and the keeper, to be gone")
        took = time.monotonic() - t0
        self.assertLess(took, BOUND * SLOW + 0.5, "took %.2f s" % took)

    def test_sigkill_to_mcpmuxs_group_misses_the_keeper(self):
        p, s = self.start_alone()
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGKILL)
        self.assert_all_gone(p, s, t0)

    def test_a_hangup_then_sigkill_to_the_group_misses_the_keeper(self):
        # a terminal that goes: SIGHUP to the group, then SIGKILL during the teardown
        p, s = self.start_alone(verbose=True)
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGHUP)
        wait_until(lambda: "teardown begins" in p.stderr(), 5, "the teardown to begin")
        os.killpg(p.pid, signal.SIGKILL)
        self.assert_all_gone(p, s, t0)

    def test_another_fatal_signal_is_a_sigkill_the_keeper_answers(self):
        """SIGQUIT, and SIGUSR2 without --max-servers, end mcpmux without a teardown, as
        SIGKILL does (docs/reliability.md, "Signals"): the keeper ends what it left."""
        for sig in (signal.SIGQUIT, signal.SIGUSR2):
            p, s = self.start_alone()
            t0 = time.monotonic()
            os.kill(p.pid, sig)
            self.assertEqual(p.wait(), -sig)
            self.assert_all_gone(p, s, t0)


class Owner(Case):
    def test_keeper_is_not_a_descendant_and_goes_with_a_normal_exit(self):
        p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
        p.send(req(1, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        keepers = wait_until(lambda: [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                             5, "the keeper")
        self.assertEqual(len(keepers), 1)
        with open("/proc/%d/cmdline" % keepers[0], "rb") as f:
            self.assertEqual(f.read().rstrip(b"\0"), b"mcpmux-keeper for %d" % p.pid)
        with open("/proc/%d/stat" % keepers[0]) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        self.assertNotEqual(ppid, p.pid)
        # it holds none of the client's pipes
        fds = [os.readlink("/proc/%d/fd/%s" % (keepers[0], fd))
               for fd in os.listdir("/proc/%d/fd" % keepers[0])]
        self.assertNotIn(os.readlink("/proc/%d/fd/1" % p.pid), fds)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        wait_until(lambda: not alive(keepers[0]), 5, "the keeper to exit with mcpmux")
        self.assertNotIn("keeper:", p.stderr())

    def test_a_normal_exit_waits_a_second_at_most_for_the_keeper(self):
        """A keeper that cannot go (stopped) does not hold up a wrapper's exit more than a
        second (docs/lifecycle.md), and goes once it runs again."""
        p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
        p.send(req(1, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        keeper = wait_until(lambda: [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                            5, "the keeper")[0]
        os.kill(keeper, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
            self.assertLess(time.monotonic() - t0, 0.3 + 1.0 + 0.5 * SLOW)
        finally:
            os.kill(keeper, signal.SIGCONT)
        wait_until(lambda: not alive(keeper), 5, "the keeper to exit once it runs")

    def test_a_signal_while_mcpmux_exits_leaves_its_exit_status(self):
        """SIGTERM, SIGINT or SIGHUP that comes once the loop is over (here while mcpmux
        waits for its stopped keeper, after it told it "done") is not death by the signal:
        wrap exits with the server's status, serve with 0 (docs/reliability.md)."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            for argv, status in (([], 4), (["serve"], 0)):
                p = self.start([MCPMUX] + argv + GRACES + ["--", FIXTURE, "--exit-code=4"],
                               env=dict(self.env, MCPMUX_CGROUP="off"))
                if argv:
                    p.send({"session": "s", "message": req(1, "ping")})
                    while p.msg().get("message", {}).get("id") != 1:
                        pass
                else:
                    p.send(req(1, "ping"))
                    self.assertEqual(p.msg()["id"], 1)
                keeper = wait_until(
                    lambda: [q for q in self.tagged() if keeper_of(q) == p.pid], 5,
                    "the keeper")[0]
                # its pipe from mcpmux (fd 3), read by the test only to count its bytes
                pipe = os.open("/proc/%d/fd/3" % keeper, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    wait_until(lambda: unread(pipe) == 0 and stat_of(keeper)[0] == "S", 5,
                               "the keeper idle")
                    os.kill(keeper, signal.SIGSTOP)
                    try:
                        # stopped, not only sent the signal: woken in its read by the
                        # SIGSTOP, it would still take bytes already there before stopping
                        wait_until(lambda: stat_of(keeper)[0] == "T", 5, "the keeper to stop")
                        p.close_stdin()
                        wait_until(lambda: unread(pipe) > 0, 10, "mcpmux's \"done\" to the keeper")
                        os.kill(p.pid, sig)
                        self.assertEqual(p.wait(), status, "%s %r; stderr:\n%s" % (
                            sig, argv, p.stderr()))
                    finally:
                        os.kill(keeper, signal.SIGCONT)
                finally:
                    os.close(pipe)
                wait_until(lambda: not alive(keeper), 5, "the keeper to exit")
                self.assertNotIn("keeper:", p.stderr())


    def test_as_pid_1_the_keeper_is_no_orphan_of_a_run(self):
        """mcpmux as pid 1 of a pid namespace (a container's entry point): the keeper's
        double fork brings it back to mcpmux, which must not take it for an orphan of a
        server's and end it with the run."""
        if shutil.which("unshare") is None or os.geteuid() != 0:
            self.skipTest("needs unshare(1) and root for a pid namespace")
        p = self.start(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", MCPMUX,
                        "-v"] + GRACES +
                       ["--", FIXTURE])
        p.send(call(1, "env"))
        self.assertEqual(p.msg()["result"]["structuredContent"]["ppid"], 1, "mcpmux is pid 1")
        keepers = wait_until(lambda: [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                             5, "the keeper")
        p.send(req(2, "mcpmux/endRun"))
        res = p.msg()["result"]
        self.assertEqual(res["escalation"], "eof", res)
        self.assertTrue(alive(keepers[0]), "the keeper was ended with the run")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        wait_until(lambda: not alive(keepers[0]), 5, "the keeper to exit with mcpmux")

def own_cgroup_root():
    """Where cgroup v2 is mounted, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            words = fields.split()
            if rest.startswith("cgroup2 ") and words[3] == "/":
                return words[4]
    return None


def own_cgroup():
    """This process's cgroup v2 directory, or None."""
    mnt = own_cgroup_root()
    with open("/proc/self/cgroup") as f:
        rel = next((l.strip()[3:] for l in f if l.startswith("0::")), None)
    if mnt is None or rel is None:
        return None
    return mnt + ("" if rel == "/" else rel)


def rmdir_once_empty(d, seconds=5):
    """Remove cgroup d (gone already is fine), waiting while the kernel says it is busy:
    a reaped process leaves its cgroup a moment after the reap."""
    def gone():
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            return False
        return True
    wait_until(gone, seconds, "cgroup %s to be removed" % d)


class OwnCgroupCase(Case):
    """Tests that make cgroups under the one this test runs in (self.parent)."""

    def setUp(self):
        super().setUp()
        self.parent = own_cgroup()
        if self.parent is None or not os.access(os.path.join(self.parent, "cgroup.procs"),
                                                os.W_OK):
            self.skipTest("no cgroup v2 of our own to make cgroups in")


class LeftCgroups(OwnCgroupCase):
    """The cgroups of an mcpmux whose keeper was SIGKILLed with it, or of a tree abandoned
    as unkillable, stay behind: the next mcpmux removes them, when empty and their mcpmux
    is gone, and nothing else."""

    def test_empty_cgroups_of_gone_instances_are_removed_at_start(self):
        # Named after processes alive while the cgroups are made (so that no mcpmux of
        # another test takes them meanwhile), which then go.
        owners = [subprocess.Popen(["sleep", "60"], env=self.env) for _ in range(2)]
        stale = os.path.join(self.parent, "mcpmux.%d" % owners[0].pid)  # empty
        busy = os.path.join(self.parent, "mcpmux.%d" % owners[1].pid)   # a process in it
        kept = os.path.join(self.parent, "mcpmux.%d" % os.getpid())     # owner alive
        made = [stale, stale + "/s.1", stale + "/s.2", busy, busy + "/s.1", kept]
        sleeper = None
        try:
            for d in made:
                os.mkdir(d)
            sleeper = subprocess.Popen(["sleep", "60"], env=self.env)
            with open(busy + "/s.1/cgroup.procs", "w") as f:
                f.write(str(sleeper.pid))
            for o in owners:
                o.kill()
                o.wait()
            # made a moment ago, they would be kept as maybe a starting instance's
            p = self.start([MCPMUX, "-v"] + GRACES + ["--", FIXTURE],
                           env=dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
            p.send(req(1, "ping"))
            self.assertEqual(p.msg()["id"], 1)
            if "cgroup: none usable here" in p.stderr():
                self.skipTest("no cgroup can be made here: " + p.stderr())
            # (by this mcpmux, or by one of another test that started meanwhile)
            self.assertFalse(os.path.exists(stale), p.stderr())
            self.assertTrue(os.path.isdir(busy + "/s.1"))
            self.assertTrue(os.path.isdir(kept))
            self.assertTrue(alive(sleeper.pid), "a process of a left cgroup was touched")
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        finally:
            for o in owners:
                o.kill()
                o.wait()
            if sleeper is not None:
                sleeper.kill()
                sleeper.wait()
            for d in reversed(made):
                rmdir_once_empty(d)

    def test_a_taken_name_is_never_shared(self):
        """A cgroup named after mcpmux's pid that is there already is another instance's
        (one of another pid namespace with the same pid, or a killed one whose keeper
        still works in it): mcpmux makes one of its own, and the other's processes are
        never touched, even in a leaf named like its own first one."""
        sleeper = subprocess.Popen(["sleep", "60"], env=self.env)
        made = []
        # The shell makes mcpmux.$$ (its pid, mcpmux's after the exec) with a process in
        # s.1, the name of mcpmux's first leaf.
        script = ('d="$1/mcpmux.$$"; mkdir "$d" "$d/s.1" && echo "$2" > "$d/s.1/cgroup.procs"'
                  ' && shift 2 && exec "$@"')
        try:
            p = self.start(["sh", "-c", script, "sh", self.parent, str(sleeper.pid), MCPMUX,
                            "-v"] + GRACES + ["--", FIXTURE])
            taken = os.path.join(self.parent, "mcpmux.%d" % p.pid)
            made = [taken, taken + "/s.1"]
            p.send(call(1, "env"))
            pid = p.msg()["result"]["structuredContent"]["pid"]
            if "cgroup: none usable here" in p.stderr():
                self.skipTest("no cgroup can be made here: " + p.stderr())
            with open("/proc/%d/cgroup" % pid) as f:
                leaf = f.read().strip().rsplit("::", 1)[-1]
            self.assertRegex(leaf, r"/mcpmux\.%d\.2/s\.1$" % p.pid)
            p.send(note("mcpmux/endRun"))
            wait_until(lambda: "ended" in p.stderr(), 5, "the run to end")
            self.assertFalse(alive(pid))
            self.assertRegex(p.stderr(), r"ended \(eof", "the run ended at its EOF")
            self.assertTrue(alive(sleeper.pid), "a process of another's cgroup was killed")
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
            self.assertFalse(os.path.exists(os.path.join(self.parent,
                                                         "mcpmux.%d.2" % p.pid)))
            self.assertTrue(os.path.isdir(taken + "/s.1"), "another's cgroup was removed")
        finally:
            sleeper.kill()
            sleeper.wait()
            for d in reversed(made):
                rmdir_once_empty(d)

    def test_cgroups_nested_in_a_leaf_go_with_it(self):
        """A server that is an mcpmux itself makes its cgroups inside its leaf; killed, it
        leaves them behind, empty: the leaf is removed with all of them."""
        p = self.start([MCPMUX, "-v"] + GRACES + ["--", FIXTURE])
        p.send(call(1, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        if "cgroup: none usable here" in p.stderr():
            self.skipTest("no cgroup can be made here: " + p.stderr())
        with open("/proc/%d/cgroup" % pid) as f:
            leaf = own_cgroup_root() + f.read().strip().rsplit("::", 1)[-1]
        nested = [leaf + "/mcpmux.7", leaf + "/mcpmux.7/s.1", leaf + "/mcpmux.7/s.1/mcpmux.9",
                  leaf + "/mcpmux.7/s.2"]
        for d in nested:
            os.mkdir(d)
        try:
            p.send(note("mcpmux/endRun"))
            wait_until(lambda: not os.path.exists(leaf), 5, "the leaf to be removed")
            self.assertFalse(alive(pid))
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        finally:
            for d in reversed(nested):
                rmdir_once_empty(d)

    def test_a_removed_instance_cgroup_is_made_again(self):
        """An mcpmux of another pid namespace in the same cgroup sees this one's pid as
        gone and may remove its cgroup while it is empty: the next server's leaf makes it
        again, and the server is born in it."""
        p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
        inst = os.path.join(self.parent, "mcpmux.%d" % p.pid)
        leaves = []
        for run in range(2):
            p.send(call(1, "env"))
            pid = p.msg()["result"]["structuredContent"]["pid"]
            with open("/proc/%d/cgroup" % pid) as f:
                leaves.append(f.read().strip().rsplit("::", 1)[-1])
            p.send(note("mcpmux/endRun"))
            wait_until(lambda: not alive(pid), 5, "the run's server to end")
            if run == 0:
                # what another instance's sweep does: every empty cgroup, then the instance
                wait_until(lambda: not os.path.exists(os.path.join(inst, "s.1")), 5,
                           "the first leaf to be removed")
                rmdir_once_empty(inst)
        self.assertRegex(leaves[0], r"/mcpmux\.%d/s\.1$" % p.pid)
        self.assertRegex(leaves[1], r"/mcpmux\.%d/s\.2$" % p.pid)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(os.path.exists(inst))

    def test_the_cgroups_of_an_abandoned_tree_go_with_a_later_start(self):
        """A tree abandoned as unkillable (here: frozen by the cgroup v1 freezer, in which a
        SIGKILLed process waits, in D state, until it is thawed) holds its leaf past
        mcpmux's exit; once it is gone, the next mcpmux removes the empty cgroups."""
        freezer = "/sys/fs/cgroup/freezer"
        if not os.access(os.path.join(freezer, "cgroup.procs"), os.W_OK):
            self.skipTest("no cgroup v1 freezer to hold a process unkillable")
        frozen = os.path.join(freezer, "mcpmux-test.%d" % os.getpid())
        os.mkdir(frozen)
        pid = None
        try:
            p = self.start([MCPMUX, "--eof-grace", "100", "--term-grace", "100",
                            "--kill-deadline", "300", "--", FIXTURE])
            inst = os.path.join(self.parent, "mcpmux.%d" % p.pid)
            p.send(call(1, "env"))
            pid = p.msg()["result"]["structuredContent"]["pid"]
            if not os.path.isdir(inst):
                self.skipTest("no cgroup can be made here: " + p.stderr())
            with open(os.path.join(frozen, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            with open(os.path.join(frozen, "freezer.state"), "w") as f:
                f.write("FROZEN")
            p.send(req(2, "mcpmux/endRun"))
            r = p.msg(10)["result"]
            self.assertEqual((r["escalation"], r["abandoned"]), ("abandoned", [pid]), r)
            p.close_stdin()
            self.assertEqual(p.wait(), 1)
            self.assertTrue(os.path.isdir(os.path.join(inst, "s.1")), "the leaf holds it")
            with open(os.path.join(frozen, "freezer.state"), "w") as f:
                f.write("THAWED")
            wait_until(lambda: not alive(pid), 5, "the thawed server to die of its SIGKILL")
            q = self.start([MCPMUX] + GRACES + ["--", FIXTURE],
                           env=dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
            q.send(req(1, "ping"))
            self.assertEqual(q.msg()["id"], 1)
            # (by this mcpmux, or by one of another test that started meanwhile)
            self.assertFalse(os.path.exists(inst))
            q.close_stdin()
            self.assertEqual(q.wait(), 0)
        finally:
            with open(os.path.join(frozen, "freezer.state"), "w") as f:
                f.write("THAWED")
            if pid is not None:
                if alive(pid):  # a skip or a failure before its end
                    os.kill(pid, signal.SIGKILL)
                wait_until(lambda: not alive(pid), 5, "the server to go")
            rmdir_once_empty(frozen)


class SweptCgroups(OwnCgroupCase):
    """mcpmux and its keeper SIGKILLed together: the server dies of its parent-death signal,
    but a grandchild that cleared its environment lives on in the instance's cgroup, which
    no cookie finds.  `mcpmux ps` lists it as an orphan, and `mcpmux sweep` ends it with the
    ladder and removes the emptied cgroups, by the cgroup that the instance's status file
    names (docs/ps.md).  Every sweep that ends something is limited to the test's own
    session: the machine is shared."""

    FIXTURE = [FIXTURE, "--clear-env-grandchild", "--ignore-sigterm"]

    def mcpmux(self, *args, cgroup=None):
        """mcpmux ARGS, run in cgroup when given (made, and removed at cleanup)."""
        argv = [MCPMUX] + list(args)
        if cgroup is not None:
            if not os.path.isdir(cgroup):
                os.mkdir(cgroup)
                self.addCleanup(rmdir_once_empty, cgroup)
            argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup] + argv
        p = subprocess.run(argv, capture_output=True, env=self.env, timeout=60 * SLOW)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def ps_orphans(self):
        rc, out, err = self.mcpmux("ps", "--json")
        self.assertEqual(rc, 0, err)
        return json.loads(out)["orphans"]

    def escaped(self, p):
        """(session, grandchild, its leaf) of p's server, once the grandchild has cleared
        its environment; ended at cleanup if it runs.  Skipped where it is in no leaf."""
        session = session_of(p, 1)
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", p.stderr()), 5,
                            "the grandchild")[-1])
        pids = {gc: stat_of(gc)[1]}
        with open("/proc/%d/cgroup" % gc) as f:
            rel = f.read().strip().rsplit("::", 1)[-1]
        leaf = own_cgroup_root() + rel
        if re.search(r"/mcpmux\.%d(\.\d+)?/s\.\d+$" % p.pid, rel):
            self.addCleanup(rmdir_once_empty, os.path.dirname(leaf))
            self.addCleanup(rmdir_once_empty, leaf)
        self.addCleanup(end_running, pids)  # first, then its cgroups
        if not re.search(r"/mcpmux\.%d(\.\d+)?/s\.\d+$" % p.pid, rel):
            self.skipTest("no cgroup leaf here")
        wait_until(lambda: proc_environ(gc) == [b""], 5, "the grandchild to clear its "
                   "environment")
        return session, gc, pids[gc], leaf

    def kill_with_keeper(self, p):
        """SIGKILL p and its keeper together: the keeper, stopped first, ends nothing."""
        keeper = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == p.pid], 5,
                            "the keeper")[0]
        os.kill(keeper, signal.SIGSTOP)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        os.kill(keeper, signal.SIGKILL)
        wait_until(lambda: not alive(keeper), 5, "the keeper to be gone")

    def test_sweep_ends_what_is_left_in_a_dead_instances_cgroup(self):
        p = self.start([MCPMUX] + GRACES + ["--"] + self.FIXTURE)
        session, gc, start, leaf = self.escaped(p)
        inst = os.path.dirname(leaf)
        status = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "instances", str(p.pid))
        self.kill_with_keeper(p)
        wait_until(lambda: not self.cookie_pids(session), 5, "the server to die with mcpmux")
        self.assertTrue(runs(gc, start), "the grandchild lives on")
        self.assertTrue(os.path.exists(status), "the dead instance's status file stays")
        # ps: an orphan of the dead instance, in its leaf, of its session
        ours = [o for o in self.ps_orphans() if o.get("cgroup") == inst]
        self.assertEqual(len(ours), 1, ours)
        self.assertEqual((ours[0]["session"], ours[0]["pid"], ours[0]["pids"]),
                         (session, gc, [gc]), ours)
        self.assertRegex(ours[0]["owner"], r"^%d:\d+$" % p.pid)
        rc, out, err = self.mcpmux("ps", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"orphans \(their mcpmux is gone\):\n.*\n%s +%d:\d+ +\S+ +%d "
                         % (re.escape(session), p.pid, gc))
        # sweep --dry-run: listed, nothing ended, nothing removed
        rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"would end:\n.*\n *%d +%s +%d:\d+ +- " %
                         (gc, re.escape(session), p.pid))
        self.assertTrue(runs(gc, start), "a dry run ended it")
        self.assertTrue(os.path.isdir(leaf) and os.path.exists(status))
        # --older-than: too young to be taken
        rc, out, err = self.mcpmux("sweep", "--older-than", "1h", "--session", session)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertTrue(runs(gc, start))
        self.assertTrue(os.path.exists(status), "the file that names the cgroup stays")
        # sweep, from another cgroup (the status file names the dead instance's): deaf to
        # SIGTERM, it takes a SIGKILL after the grace; then the cgroups and the file go
        elsewhere = os.path.join(self.parent, "sweep-test.%d" % os.getpid())
        rc, out, err = self.mcpmux("sweep", "--term-grace", "300", "--session", session,
                                   cgroup=elsewhere)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\n *%d +%s +%d:\d+ +kill " % (gc, re.escape(session), p.pid))
        self.assertIn("ended 1 process(es) and 0 container(s)", out)
        self.assertFalse(runs(gc, start), "the grandchild is ended")
        self.assertFalse(os.path.exists(leaf), "the leaf is removed")
        self.assertFalse(os.path.exists(inst), "the instance cgroup is removed")
        self.assertFalse(os.path.exists(status), "the status file is removed")
        self.assertEqual([o for o in self.ps_orphans() if o.get("cgroup") == inst], [])

    def test_a_live_instances_cgroup_is_left_alone(self):
        p = self.start([MCPMUX] + GRACES + ["--"] + self.FIXTURE)
        session, gc, start, leaf = self.escaped(p)
        inst = os.path.dirname(leaf)
        self.assertEqual([o for o in self.ps_orphans() if o.get("cgroup") == inst], [])
        rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(out, r"\n *%d " % gc)
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertTrue(runs(gc, start), "a live instance's process was ended")
        self.assertTrue(os.path.isdir(leaf), "a live instance's cgroup was removed")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(runs(gc, start), "mcpmux ends its own at its exit")

    def own_sub(self, name):
        """A cgroup of this test's own below its cgroup (removed at cleanup): an mcpmux or
        sweep run in it makes and looks for "mcpmux.PID" cgroups there, where no other run
        on the machine looks."""
        sub = os.path.join(self.parent, "%s.%d" % (name, os.getpid()))
        os.mkdir(sub)

        def remove():
            # what a killed mcpmux left in it too, deepest first
            for d in sorted((w[0] for w in os.walk(sub)), key=len, reverse=True):
                rmdir_once_empty(d)
        self.addCleanup(remove)
        return sub

    def test_a_live_instance_in_another_pid_namespace_is_left_alone(self):
        """The PID of an instance cgroup's name is in the instance's pid namespace: an
        mcpmux that is PID 1 of a namespace of its own names its cgroup "mcpmux.1", and a
        server of it without a cookie, in that cgroup, is no orphan to ps or sweep."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a pid namespace")
        sub = self.own_sub("pidns-test")
        # its status file where ps and sweep do not look: no held file tells them
        other_run = tempfile.TemporaryDirectory(prefix="mcpmux-run-")
        self.addCleanup(other_run.cleanup)
        env = dict(self.env, XDG_RUNTIME_DIR=other_run.name)
        p = self.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub,
                        "unshare", "-pf", "--kill-child", "--mount-proc", MCPMUX] + GRACES +
                       ["--", "env", "-i", FIXTURE], env=env)
        p.send(req(1, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        leaf = os.path.join(sub, "mcpmux.1", "s.1")
        if not os.path.isdir(leaf):
            self.skipTest("no cgroup leaf here: " + p.stderr())
        with open(os.path.join(leaf, "cgroup.procs")) as f:
            server = [int(x) for x in f.read().split()]
        self.assertEqual(len(server), 1, server)
        self.assertNotIn(b"MCPMUX_SESSION", b"".join(proc_environ(server[0]) or []))
        rc, out, err = self.mcpmux("ps", "--json", cgroup=sub)
        self.assertEqual(rc, 0, err)
        self.assertEqual([o for o in json.loads(out)["orphans"]
                          if (o.get("cgroup") or "").startswith(sub + "/")], [])
        rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
        self.assertNotRegex(out, r"\n *%d " % server[0])
        self.assertNotIn("mcpmux.1 ", out)
        self.assertTrue(os.path.isdir(leaf))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def gone_pid(self):
        """The pid of a process that was and is no more (reaped)."""
        q = subprocess.Popen(["true"], env={})
        q.wait()
        return q.pid

    def fake_dead_cgroup(self, sub, procs=()):
        """sub/mcpmux.G/s.1, G the pid of a process gone, with procs moved into its leaf."""
        inst = os.path.join(sub, "mcpmux.%d" % self.gone_pid())
        os.mkdir(inst)
        os.mkdir(inst + "/s.1")
        for q in procs:
            with open(inst + "/s.1/cgroup.procs", "w") as f:
                f.write(str(q))
        return inst

    def too_deep_dead_cgroup(self, sub):
        """fake_dead_cgroup(sub) deeper than the walk goes, a live process in its leaf 40
        levels below s.1: (the cgroup, that leaf, the process)."""
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        inst = self.fake_dead_cgroup(sub)
        deep = inst + "/s.1" + "/d" * 40
        os.makedirs(deep)
        with open(deep + "/cgroup.procs", "w") as f:
            f.write(str(left.pid))
        return inst, deep, left

    def status_names(self, inst, session, start=1):
        """A status file of the gone pid of inst's name, naming inst and its leaf s.1 of
        session, as a killed instance leaves it (its owner's start time: start)."""
        pid = int(inst.rsplit(".", 1)[-1])
        d = self.env["XDG_RUNTIME_DIR"]
        for name in ("mcpmux", "instances"):
            d = os.path.join(d, name)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
        fd = os.open(os.path.join(d, str(pid)), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"mcpmux": pid, "mode": "wrap", "owner": "%d:%d" % (pid, start),
                                "cgroup": inst}) + "\n")
            f.write(json.dumps({"session": session, "leaf": "s.1"}) + "\n")

    def deaf_victim(self):
        """A cookieless process deaf to SIGTERM that says "term" on each (ended at
        cleanup), once it is ready."""
        v = subprocess.Popen(
            ["python3", "-c", "import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: print('term', flush=True))\n"
             "print('ready', flush=True)\nwhile True: time.sleep(60)\n"],
            env={}, stdout=subprocess.PIPE)
        self.addCleanup(v.stdout.close)
        self.addCleanup(v.wait)
        self.addCleanup(v.kill)
        self.assertEqual(self.line_of(v), "ready")
        return v

    def line_of(self, v):
        """The next line of v's stdout, waited for a bounded time."""
        r, _, _ = select.select([v.stdout], [], [], 10 * SLOW)
        self.assertTrue(r, "no line from pid %d" % v.pid)
        return v.stdout.readline().decode().strip()

    def sweep_in_background(self, *args):
        """mcpmux sweep ARGS, started (and reaped at cleanup)."""
        q = subprocess.Popen([MCPMUX, "sweep"] + list(args), env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def reap():
            try:
                q.communicate(timeout=60 * SLOW)
            except subprocess.TimeoutExpired:
                q.kill()
                q.communicate()
        self.addCleanup(reap)
        return q

    def orphans_in(self, sub):
        rc, out, err = self.mcpmux("ps", "--json", cgroup=sub)
        self.assertEqual(rc, 0, err)
        return [o for o in json.loads(out)["orphans"]
                if (o.get("cgroup") or "").startswith(sub + "/")]

    def idle_in_another_pid_namespace(self, sub, env):
        """An mcpmux started in sub, in a pid namespace of its own where its pid is that of
        a process gone here (its cgroup's name names no process here), once its first
        server's run has ended: idle, its instance cgroup empty.  (it, its cgroup)"""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a pid namespace")
        pid = self.gone_pid()
        p = self.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub,
                        "unshare", "-pf", "--kill-child", "--mount-proc", "sh", "-c",
                        'echo $(($0 - 1)) > /proc/sys/kernel/ns_last_pid && "$@"; exit $?',
                        str(pid), MCPMUX] + GRACES + ["--", FIXTURE], env=env)
        inst = os.path.join(sub, "mcpmux.%d" % pid)
        p.send(call(1, "env"))
        self.assertIn("result", p.msg())
        if not os.path.isdir(inst + "/s.1"):
            self.skipTest("no cgroup leaf here: " + p.stderr())
        p.send(note("mcpmux/endRun"))
        wait_until(lambda: not os.path.exists(inst + "/s.1"), 5, "the leaf to be removed")
        self.assertTrue(os.path.isdir(inst))
        return p, inst

    def start_in(self, sub, env, mcpmux=MCPMUX):
        """An mcpmux -v started in sub, once it has answered (its start-up done)."""
        q = self.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub, mcpmux,
                        "-v"] + GRACES + ["--", FIXTURE], env=env)
        q.send(req(1, "ping"))
        self.assertEqual(q.msg()["id"], 1)
        return q

    def next_server_in(self, p, inst, leaf):
        """p's next server is born in its instance cgroup's leaf."""
        p.send(call(2, "env"))
        self.assertIn("result", p.msg())
        self.assertTrue(os.path.isdir(os.path.join(inst, leaf)), p.stderr())
        with open(os.path.join(inst, leaf, "cgroup.procs")) as f:
            self.assertEqual(len(f.read().split()), 1)
        self.assertNotIn("cannot make a cgroup leaf", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(os.path.exists(inst))

    def test_an_idle_instance_of_another_pid_namespace_keeps_its_cgroup_at_a_start(self):
        """The empty cgroup of an idle mcpmux of another pid namespace, whose status file is
        held: an mcpmux that starts beside it leaves it alone, whatever its age (sweep's
        rules).  Removed by hand, the next server's leaf makes it again."""
        sub = self.own_sub("idle-ns-test")
        p, inst = self.idle_in_another_pid_namespace(sub, self.env)
        q = self.start_in(sub, dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
        self.assertTrue(os.path.isdir(inst), "removed at a start: " + q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        os.rmdir(inst)
        self.next_server_in(p, inst, "s.2")

    def test_an_idle_instance_of_another_pid_namespace_is_known_by_its_pid_there(self):
        """Its status file where the others do not look: the cgroup is still known for an
        instance's of another pid namespace whose pid there is the name's, by start-up and
        by sweep."""
        sub = self.own_sub("idle-ns-test")
        other_run = tempfile.TemporaryDirectory(prefix="mcpmux-run-")
        self.addCleanup(other_run.cleanup)
        p, inst = self.idle_in_another_pid_namespace(
            sub, dict(self.env, XDG_RUNTIME_DIR=other_run.name))
        q = self.start_in(sub, dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
        self.assertTrue(os.path.isdir(inst), "removed at a start: " + q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        # a process put in it is no orphan to ps or sweep: the cgroup is a live instance's
        os.mkdir(inst + "/s.9")
        self.addCleanup(rmdir_once_empty, inst + "/s.9")
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        with open(inst + "/s.9/cgroup.procs", "w") as f:
            f.write(str(left.pid))
        self.assertEqual(self.orphans_in(sub), [])
        rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(out, r"\n *%d " % left.pid)
        left.kill()
        left.wait()
        rmdir_once_empty(inst + "/s.9")
        self.next_server_in(p, inst, "s.2")

    def test_an_empty_cgroup_made_a_moment_ago_is_kept_at_a_start(self):
        """An empty cgroup named after a pid that is gone, made a moment ago, may be a
        starting instance's (of another pid namespace): a start leaves it.  Older than the
        bound (MCPMUX_SWEEP_YOUNG_S, here 0), it is removed."""
        sub = self.own_sub("young-start-test")
        inst = self.fake_dead_cgroup(sub)
        # a bound no test run outlasts: made "a moment ago" however slow the machine
        q = self.start_in(sub, dict(self.env, MCPMUX_SWEEP_YOUNG_S="3600"))
        self.assertTrue(os.path.isdir(inst + "/s.1"), "removed at a start: " + q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        q = self.start_in(sub, dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
        self.assertFalse(os.path.exists(inst), q.stderr())
        self.assertIn("cgroup: removed 1 empty cgroup(s) of mcpmux instances that are gone",
                      q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)

    def runtime_instances(self):
        """This test's runtime directory's "mcpmux/instances" (made, private)."""
        d = self.env["XDG_RUNTIME_DIR"]
        for name in ("mcpmux", "instances"):
            d = os.path.join(d, name)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
        return d

    def test_a_held_status_file_alone_keeps_a_cgroup_at_a_start(self):
        """A status file of the gone pid of an empty cgroup's name, held (its instance's
        lock): a start leaves the cgroup, whatever its age.  Its lock free, the next start
        removes it."""
        sub = self.own_sub("held-start-test")
        inst = self.fake_dead_cgroup(sub)
        pid = int(inst.rsplit(".", 1)[-1])
        fd = os.open(os.path.join(self.runtime_instances(), str(pid)),
                     os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        env = dict(self.env, MCPMUX_SWEEP_YOUNG_S="0")
        q = self.start_in(sub, env)
        self.assertTrue(os.path.isdir(inst + "/s.1"), "removed at a start: " + q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        q = self.start_in(sub, env)
        self.assertFalse(os.path.exists(inst), q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)

    def test_a_stale_status_file_does_not_take_an_idle_instance_of_another_pid_namespace(self):
        """A stale status file (its lock free, its owner gone) of the pid of an idle mcpmux
        of another pid namespace, naming its cgroup: neither a start nor sweep takes the
        cgroup, which its pid there keeps."""
        sub = self.own_sub("stale-ns-test")
        other_run = tempfile.TemporaryDirectory(prefix="mcpmux-run-")
        self.addCleanup(other_run.cleanup)
        p, inst = self.idle_in_another_pid_namespace(
            sub, dict(self.env, XDG_RUNTIME_DIR=other_run.name))
        session = self.tag + "-stale"
        self.status_names(inst, session)
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        q = self.start_in(sub, self.env)
        self.assertTrue(os.path.isdir(inst), "removed at a start: " + q.stderr())
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        rc, out, err = self.mcpmux("sweep", "--session", session, cgroup=sub)
        self.assertEqual(out, "no orphans to end\n", err)
        self.assertTrue(os.path.isdir(inst), "removed by sweep: " + err)
        self.next_server_in(p, inst, "s.2")

    def stale_file_beside_a_live_instance(self, name, mcpmux=MCPMUX, owner_start=None):
        """A live idle mcpmux (mcpmux) of another runtime directory in its own cgroup below
        name, and a stale status file (its lock free, its owner gone, of start
        owner_start(pid), 1 when None) of its pid, naming that cgroup, as a killed instance
        of that pid would have left it: sweep leaves the cgroup alone, and the instance's
        next server is born in it."""
        sub = self.own_sub(name)
        other_run = tempfile.TemporaryDirectory(prefix="mcpmux-run-")
        self.addCleanup(other_run.cleanup)
        p = self.start_in(sub, dict(self.env, XDG_RUNTIME_DIR=other_run.name), mcpmux)
        inst = os.path.join(sub, "mcpmux.%d" % p.pid)
        if not os.path.isdir(inst + "/s.1"):
            self.skipTest("no cgroup leaf here: " + p.stderr())
        p.send(note("mcpmux/endRun"))
        wait_until(lambda: not os.path.exists(inst + "/s.1"), 5, "the leaf to be removed")
        session = self.tag + "-stale"
        self.status_names(inst, session, owner_start(p.pid) if owner_start else 1)
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        rc, out, err = self.mcpmux("sweep", "--session", session, cgroup=sub)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.isdir(inst), "removed by sweep: " + err)
        self.next_server_in(p, inst, "s.2")
        return out

    def test_a_stale_status_file_does_not_take_the_cgroup_of_a_live_instance_with_its_pid(self):
        """A stale status file (its lock free, its owner gone) of a pid that a live mcpmux
        of another runtime directory has now, naming the cgroup that mcpmux made (the gone
        instance's was removed before the pid came round again): sweep leaves that idle
        instance's cgroup alone, as it would one found by its name."""
        out = self.stale_file_beside_a_live_instance("stale-pid-test")
        self.assertEqual(out, "no orphans to end\n")

    def test_a_stale_status_file_from_another_clock_does_not_take_a_live_cgroup(self):
        """The same, the live mcpmux renamed (the scan finds no instance in it: only its
        age tells it the cgroup's maker), and the stale file's owner of a time namespace
        whose boottime runs 100,000 s ahead: its start reads later than the live one's,
        but proves nothing (it reads later than the cgroup it made, too): the cgroup is
        left alone."""
        renamed = os.path.join(self.tmp.name, "mcp-proxy")
        shutil.copy(MCPMUX, renamed)
        ahead = 100000 * os.sysconf("SC_CLK_TCK")
        self.stale_file_beside_a_live_instance(
            "stale-clock-test", renamed, lambda pid: stat_of(pid)[1] - 500 + ahead)

    def test_a_stale_status_file_of_a_pid_namespace_below_takes_its_cgroup_from_an_older_process(self):
        """A killed mcpmux of a pid namespace below (a container sharing the runtime
        directory) leaves its status file of its pid there, N, naming its cgroup mcpmux.N.
        Here N is an unrelated process that started before that mcpmux, so it had the pid
        while the mcpmux ran: not the cgroup's maker.  sweep removes the cgroup, and the
        file."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a pid namespace")
        sub = self.own_sub("ns-older-test")
        older = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(older.wait)
        self.addCleanup(older.kill)
        n = older.pid
        # the namespace's init stays (sleep) once mcpmux is killed: its end would end all
        p = self.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub,
                        "unshare", "-pf", "--kill-child", "--mount-proc", "sh", "-c",
                        'echo $(($0 - 1)) > /proc/sys/kernel/ns_last_pid && "$@"; exec sleep 60',
                        str(n), MCPMUX] + GRACES + ["--", FIXTURE])
        inst = os.path.join(sub, "mcpmux.%d" % n)
        session = session_of(p, 1)
        if not os.path.isdir(inst + "/s.1"):
            self.skipTest("no cgroup leaf here: " + p.stderr())
        status = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "instances", str(n))
        with open(status) as f:
            self.assertEqual(json.loads(f.readline())["cgroup"], inst)

        def nspid(q):
            try:
                with open("/proc/%d/status" % q) as f:
                    return next((l.split()[1:] for l in f if l.startswith("NSpid:")), [])
            except OSError:
                return []
        mux = [q for q in self.tagged() if comm(q) == "mcpmux" and nspid(q)[-1:] == [str(n)]]
        keepers = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == n], 5,
                             "the keeper")
        self.assertEqual(len(mux), 1, mux)
        for k in keepers:
            os.kill(k, signal.SIGSTOP)
        os.kill(mux[0], signal.SIGKILL)
        for k in keepers:
            os.kill(k, signal.SIGKILL)
        wait_until(lambda: not alive(mux[0]) and not any(alive(k) for k in keepers), 5,
                   "mcpmux and its keeper to be gone")
        wait_until(lambda: not self.cookie_pids(session), 5, "the server to die with mcpmux")
        self.assertTrue(os.path.isdir(inst + "/s.1") and os.path.exists(status))
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertFalse(os.path.exists(inst), "the cgroup is left: " + err)
        self.assertFalse(os.path.exists(status), err)
        self.assertTrue(alive(n), "the older process was signalled")
        p.kill()
        p.wait()
        # the namespace's init goes with unshare, and the namespace with it
        wait_until(lambda: not self.tagged(), 5, "the pid namespace to be gone")

    def test_a_status_file_whose_cgroup_a_process_with_its_pid_may_have_made_stays(self):
        """A stale status file of a pid that a live process, no instance, has now, which
        started after the gone instance and before the file's cgroup was made (maybe its
        maker, as for a cgroup found by its name): sweep leaves the cgroup, and the file
        too, the only thing that names it, and says so.  Once that process is gone, sweep
        ends what is left in the cgroup and removes it, and the file.  A dry run says the
        same first, and removes nothing; ps, a look at what runs, says nothing of it and
        does not list the process left in the cgroup."""
        sub = self.own_sub("left-file-test")
        other = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        inst = os.path.join(sub, "mcpmux.%d" % other.pid)
        os.mkdir(inst)
        os.mkdir(inst + "/s.1")
        with open(inst + "/s.1/cgroup.procs", "w") as f:
            f.write(str(left.pid))
        session = self.tag + "-left"
        self.status_names(inst, session)  # its owner started at boot: gone
        status = os.path.join(self.runtime_instances(), str(other.pid))
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        said = ("left the cgroup %s, and the status file of the gone instance %d that "
                "names it: pid %d is now another process, which may have made it"
                % (inst, other.pid, other.pid))
        rc, out, err = self.mcpmux("ps")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(said, err)
        self.assertNotIn(str(left.pid), out)
        for args in (["--dry-run"], []):
            with self.subTest(args=args):
                rc, out, err = self.mcpmux("sweep", "--session", session, *args)
                self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
                self.assertTrue(alive(left.pid))
                self.assertTrue(os.path.isdir(inst + "/s.1"))
                self.assertTrue(os.path.exists(status),
                                "the file that names the cgroup is removed")
                self.assertEqual([l for l in err.splitlines() if "left the cgroup" in l],
                                 ["mcpmux: " + said], err)
        other.kill()
        other.wait()
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertIn("ended 1 process(es) and 0 container(s)", out)
        self.assertEqual(left.wait(timeout=10 * SLOW), -signal.SIGTERM)
        self.assertFalse(os.path.exists(inst), err)
        self.assertFalse(os.path.exists(status), err)

    def zombie_instance(self):
        """An mcpmux started in a cgroup of the test's, below a parent that never reaps it,
        killed with its keeper: a zombie, its cgroup holding its server's grandchild, which
        cleared its environment.  (the parent, mcpmux's pid, the session, the grandchild and
        its start time, the instance cgroup, the status file)"""
        sub = self.own_sub("zombie-test")
        code = ("import subprocess, sys, time\n"
                "p = subprocess.Popen(sys.argv[1:])\n"
                "print(p.pid, file=sys.stderr, flush=True)\n"
                "time.sleep(60)\n")
        parent = self.start(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub,
                             "python3", "-c", code, MCPMUX] + GRACES + ["--"] + self.FIXTURE)
        self.addCleanup(parent.wait)
        self.addCleanup(parent.kill)
        session = session_of(parent, 1)
        mux = int(parent.stderr().split()[0])
        gc = int(wait_until(lambda: re.findall(r"grandchild (\d+)", parent.stderr()), 5,
                            "the grandchild")[-1])
        pids = {gc: stat_of(gc)[1]}
        self.addCleanup(end_running, pids)
        inst = os.path.join(sub, "mcpmux.%d" % mux)
        if not os.path.isdir(inst + "/s.1"):
            self.skipTest("no cgroup leaf here: " + parent.stderr())
        wait_until(lambda: proc_environ(gc) == [b""], 5, "the grandchild to clear its "
                   "environment")
        keeper = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == mux], 5,
                            "the keeper")[0]
        os.kill(keeper, signal.SIGSTOP)
        os.kill(mux, signal.SIGKILL)
        os.kill(keeper, signal.SIGKILL)
        wait_until(lambda: proc_state(mux) == "Z" and not alive(keeper), 5,
                   "mcpmux to be a zombie and its keeper gone")
        wait_until(lambda: not self.cookie_pids(session), 5, "the server to die with mcpmux")
        self.assertTrue(runs(gc, pids[gc]), "the grandchild lives on")
        status = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "instances", str(mux))
        self.assertTrue(os.path.exists(status))
        return parent, mux, session, gc, pids[gc], inst, status

    def sweep_past_zombie(self, parent, mux, session, gc, start, inst, status):
        """sweep ends the grandchild and removes the cgroup and the file, mcpmux a zombie
        still; its parent is ended then."""
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\n *%d +%s +%d:\d+ +\S+ " % (gc, re.escape(session), mux))
        self.assertIn("ended 1 process(es) and 0 container(s)", out)
        self.assertFalse(runs(gc, start), "the grandchild is ended")
        self.assertFalse(os.path.exists(inst), "the instance cgroup is removed")
        self.assertFalse(os.path.exists(status), "the status file is removed")
        self.assertEqual(proc_state(mux), "Z")
        parent.kill()
        parent.wait()
        wait_until(lambda: proc_state(mux) is None, 5, "mcpmux to be reaped")

    def test_a_zombie_instance_keeps_no_cgroup(self):
        """A killed mcpmux that its parent has not reaped yet, a zombie still called
        "mcpmux", with its pid: its status file's cgroup is a gone instance's, and sweep
        ends what is left in it."""
        self.sweep_past_zombie(*self.zombie_instance())

    def test_a_zombie_instance_keeps_no_cgroup_whatever_its_files_owner_says(self):
        """The same, when the status file's owner has another start time than /proc shows
        (one written in a time namespace): a zombie keeps nothing whatever it is."""
        z = self.zombie_instance()
        status = z[-1]
        with open(status) as f:
            lines = f.read().splitlines(True)
        head = json.loads(lines[0])
        head["owner"] = "%d:1" % z[1]
        with open(status, "w") as f:
            f.write(json.dumps(head) + "\n" + "".join(lines[1:]))
        self.sweep_past_zombie(*z)

    def test_a_start_reads_no_other_process_command_line_or_environment(self):
        """The clean-up at a start, with an orphan's cgroup and an empty one of gone
        instances beside its own, reads no other process's command line or environment
        (a read that may wait on the process): only what a start needs."""
        strace = shutil.which("strace")
        if strace is None:
            self.skipTest("needs strace(1)")
        if subprocess.run([strace, "-qq", "-o", "/dev/null", "true"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            self.skipTest("strace(1) cannot trace here (ptrace denied)")
        sub = self.own_sub("start-reads-test")
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        self.fake_dead_cgroup(sub, [left.pid])
        empty = self.fake_dead_cgroup(sub)
        trace = os.path.join(self.env["XDG_RUNTIME_DIR"], "start.trace")
        r = subprocess.run(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', sub,
                            strace, "-qq", "-e", "trace=open,openat,openat2", "-o", trace, MCPMUX, "-v"] +
                           GRACES + ["--", FIXTURE],
                           input=(json.dumps(req(1, "ping")) + "\n").encode(),
                           capture_output=True,
                           # (LeakSanitizer does not work under ptrace)
                           env=dict(self.env, MCPMUX_SWEEP_YOUNG_S="0",
                                    ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                                    ":detect_leaks=0"),
                           timeout=60 * SLOW)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 0, err)
        with open(trace) as f:
            opens = f.read()
        if "open" not in opens:
            self.skipTest("strace traced nothing here: " + err)
        self.assertFalse(os.path.exists(empty), err)  # the clean-up ran
        self.assertEqual(re.findall(r'"/proc/\d+/(?:cmdline|environ)"', opens), [])

    def test_a_start_reads_no_cgroup_elsewhere(self):
        """A stale status file naming a dead cgroup elsewhere that cannot be read whole: a
        start, whose clean-up looks only beside its own cgroup, neither reads nor speaks
        of it."""
        elsewhere = self.own_sub("elsewhere-test")
        far, deep, left = self.too_deep_dead_cgroup(elsewhere)
        self.status_names(far, self.tag + "-far")
        sub = self.own_sub("here-test")
        near = self.fake_dead_cgroup(sub)
        q = self.start_in(sub, dict(self.env, MCPMUX_SWEEP_YOUNG_S="0"))
        self.assertFalse(os.path.exists(near), q.stderr())  # the clean-up ran
        q.close_stdin()
        self.assertEqual(q.wait(), 0)
        self.assertNotIn("cannot read all of the cgroup", q.stderr())
        self.assertTrue(os.path.isdir(deep) and alive(left.pid))

    def test_a_cookieless_server_below_a_live_instance_keeps_any_cgroup(self):
        """A process below a live instance keeps the cgroup it is in, whatever its name
        says: a server that cleared its environment, moved into a cgroup named after a
        pid gone, with no status file, is no orphan."""
        sub = self.own_sub("below-test")
        p = self.start([MCPMUX] + GRACES + ["--", "env", "-i", FIXTURE])
        p.send(req(1, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        server = [q for q in all_pids() if ppid_of(q) == p.pid and keeper_of(q) is None]
        self.assertEqual(len(server), 1, server)
        self.assertNotIn(b"MCPMUX_SESSION", b"".join(proc_environ(server[0]) or []))
        inst = self.fake_dead_cgroup(sub, server)
        self.assertEqual(self.orphans_in(sub), [])
        rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
        self.assertNotRegex(out, r"\n *%d " % server[0])
        self.assertTrue(os.path.isdir(inst))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_cgroup_named_after_a_held_status_file_is_left_alone(self):
        """An instance makes its cgroup before its status file says so: a cgroup named after
        the pid of a status file that is held (empty: being written) is a live instance's.
        Once the file is free, the same cgroup is a dead one's."""
        sub = self.own_sub("held-test")
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        inst = self.fake_dead_cgroup(sub, [left.pid])
        d = self.env["XDG_RUNTIME_DIR"]
        for name in ("mcpmux", "instances"):  # private, as mcpmux makes them
            d = os.path.join(d, name)
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
        fd = os.open(os.path.join(d, inst.rsplit(".", 1)[-1]), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.assertEqual(self.orphans_in(sub), [])
            fcntl.flock(fd, fcntl.LOCK_UN)
            ours = self.orphans_in(sub)
            self.assertEqual([o["pids"] for o in ours], [[left.pid]], ours)
        finally:
            os.close(fd)

    def test_an_empty_cgroup_made_a_moment_ago_is_not_removed(self):
        """A leaf made a moment ago may be a starting instance's, not used yet: sweep does
        not remove a dead cgroup found empty whose leaves are that young, even one whose
        status file names a session it selects."""
        sub = self.own_sub("young-test")
        inst = self.fake_dead_cgroup(sub)
        session = self.tag + "-young"
        self.status_names(inst, session)
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertTrue(os.path.isdir(inst + "/s.1"), "a leaf made a moment ago was removed")

    def test_an_empty_dead_cgroup_older_than_the_bound_is_removed(self):
        """A dead cgroup found empty, its leaves older than the bound (MCPMUX_SWEEP_YOUNG_S,
        here 0), whose status file names a session that --session selects, is removed."""
        sub = self.own_sub("old-test")
        inst = self.fake_dead_cgroup(sub)
        session = self.tag + "-old"
        self.status_names(inst, session)
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertFalse(os.path.exists(inst), "an empty dead cgroup was left: " + err)

    def test_a_leaf_made_during_the_ladder_is_not_removed(self):
        """A leaf made in a dead cgroup after sweep judged it (here: while its process
        takes the grace) may be a starting instance's: sweep removes the emptied leaf it
        judged, and neither the new one nor the cgroup that holds it."""
        sub = self.own_sub("during-test")
        victim = self.deaf_victim()
        inst = self.fake_dead_cgroup(sub, [victim.pid])
        session = self.tag + "-during"
        self.status_names(inst, session)
        q = self.sweep_in_background("--session", session, "--term-grace", str(int(3000 * SLOW)))
        self.assertEqual(self.line_of(victim), "term")
        os.mkdir(inst + "/s.2")
        out, err = q.communicate(timeout=60 * SLOW)
        self.assertEqual(q.returncode, 0, err)
        self.assertRegex(out.decode(), r"\n *%d +%s +\S+ +kill " % (victim.pid,
                                                                   re.escape(session)))
        self.assertTrue(os.path.isdir(inst + "/s.2"), "a leaf made during the ladder was "
                        "removed")
        self.assertFalse(os.path.exists(inst + "/s.1"), "the emptied leaf was left")

    def test_a_cgroup_found_live_during_the_ladder_spares_its_processes(self):
        """A dead cgroup found a live instance's after its processes were chosen (here: a
        live instance's server moved into it during the grace) is left alone: what was
        chosen in it gets no SIGKILL."""
        sub = self.own_sub("spare-test")
        victim = self.deaf_victim()
        inst = self.fake_dead_cgroup(sub, [victim.pid])
        session = self.tag + "-spare"
        self.status_names(inst, session)
        p = self.start([MCPMUX] + GRACES + ["--", "env", "-i", FIXTURE])
        p.send(req(1, "ping"))
        self.assertEqual(p.msg()["id"], 1)
        server = [r for r in all_pids() if ppid_of(r) == p.pid and keeper_of(r) is None]
        self.assertEqual(len(server), 1, server)
        with open("/proc/%d/cgroup" % server[0]) as f:
            home = own_cgroup_root() + f.read().strip().rsplit("::", 1)[-1]
        q = self.sweep_in_background("--session", session, "--term-grace", str(int(3000 * SLOW)))
        self.assertEqual(self.line_of(victim), "term")
        with open(inst + "/s.1/cgroup.procs", "w") as f:
            f.write(str(server[0]))
        out, err = q.communicate(timeout=60 * SLOW)
        self.assertTrue(alive(victim.pid), "a process of a cgroup found live was killed: %s"
                        % err.decode())
        self.assertIn("signalled no more", err.decode())
        self.assertTrue(os.path.isdir(inst + "/s.1"))
        with open(home + "/cgroup.procs", "w") as f:
            f.write(str(server[0]))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_cgroup_not_read_whole_is_left_alone_and_said(self):
        """A dead cgroup that cannot be read whole (here: deeper than the walk goes) may hold
        what is not seen: ps says so and lists none of it, and sweep removes none of it."""
        sub = self.own_sub("deep-test")
        inst, deep, left = self.too_deep_dead_cgroup(sub)
        rc, out, err = self.mcpmux("ps", "--json", cgroup=sub)
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot read all of the cgroup %s of an instance that is gone" % inst, err)
        self.assertEqual([o for o in json.loads(out)["orphans"]
                          if (o.get("cgroup") or "").startswith(sub + "/")], [])
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-none", cgroup=sub)
        self.assertEqual((rc, out), (1, "no orphans to end\n"), err)
        self.assertTrue(os.path.isdir(deep) and alive(left.pid))

    def test_a_sweep_for_a_session_removes_no_other_cgroup(self):
        """sweep --session removes only the dead cgroups whose processes it selected: not an
        empty one nor one whose process is of no session selected."""
        sub = self.own_sub("select-test")
        left = subprocess.Popen(["sleep", "60"], env={})
        self.addCleanup(left.wait)
        self.addCleanup(left.kill)
        empty = self.fake_dead_cgroup(sub)
        busy = self.fake_dead_cgroup(sub, [left.pid])
        # no young cgroup kept for its age: the selection alone keeps them
        self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-none", cgroup=sub)
        self.assertEqual((rc, out), (0, "no orphans to end\n"), err)
        self.assertTrue(os.path.isdir(empty + "/s.1"), "an empty cgroup not selected was removed")
        self.assertTrue(os.path.isdir(busy + "/s.1"))
        self.assertTrue(alive(left.pid))

    def reused_pid_cgroup(self, sub):
        """(sub/mcpmux.PID, the process PID, started more than a second after that cgroup
        was made: a pid reused), by ns_last_pid; skipped where it cannot be written.  The
        cgroup is held open, so that its inode, and with it its time, stays."""
        knob = "/proc/sys/kernel/ns_last_pid"
        if not os.access(knob, os.W_OK):
            self.skipTest("needs ns_last_pid to start a process with a pid of our choice")
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        for _ in range(20):
            with open(knob) as f:
                target = int(f.read()) + 50
            while target >= pid_max or target < 1000 or os.path.exists("/proc/%d" % target):
                target = 1000 if target >= pid_max else target + 1
            inst = os.path.join(sub, "mcpmux.%d" % target)
            os.mkdir(inst)
            fd = os.open(inst, os.O_RDONLY | os.O_DIRECTORY)
            made = os.fstat(fd).st_ctime
            # the clock, not an event: a process that started after the cgroup, beyond the
            # second of slack that sweep gives a process said to be older
            wait_until(lambda: time.time() > made + 1.2, 5 * SLOW, "a second to pass")
            with open(knob, "w") as f:
                f.write(str(target - 1))
            other = subprocess.Popen(["sleep", "60"], env=self.env)
            if other.pid == target:
                self.addCleanup(os.close, fd)
                return inst, other
            other.kill()
            other.wait()
            os.close(fd)
            os.rmdir(inst)
        self.fail("no process got the pid chosen")

    def test_a_cgroup_named_after_an_older_process_is_left_alone(self):
        """An "mcpmux.PID" cgroup found by its name whose PID is a live process that started
        before it was made may be its maker, an mcpmux not known as one (renamed, or run
        under another program, before it locks its status file): left alone."""
        sub = self.own_sub("older-test")
        other = subprocess.Popen(["sleep", "60"], env=self.env)
        left = subprocess.Popen(["sleep", "60"], env={})
        inst = os.path.join(sub, "mcpmux.%d" % other.pid)
        try:
            os.mkdir(inst)
            os.mkdir(inst + "/s.1")
            with open(inst + "/s.1/cgroup.procs", "w") as f:
                f.write(str(left.pid))
            self.assertEqual([o for o in self.orphans_in(sub) if o.get("cgroup") == inst], [])
            self.env["MCPMUX_SWEEP_YOUNG_S"] = "0"
            rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
            self.assertEqual(rc, 0, err)
            self.assertNotRegex(out, r"\n *%d " % left.pid)
            self.assertTrue(alive(left.pid))
        finally:
            for q in (other, left):
                q.kill()
                q.wait()
            for d in (inst + "/s.1", inst):
                rmdir_once_empty(d)

    def test_a_cgroup_named_after_a_reused_pid_is_found(self):
        """Without a status file, an "mcpmux.PID" cgroup below sweep's own is found by its
        name: dead while PID is a live process that is no mcpmux and started after the
        cgroup was made (a pid reused)."""
        sub = self.own_sub("reused-test")
        inst, other = self.reused_pid_cgroup(sub)
        left = subprocess.Popen(["sleep", "60"], env={})
        made = [inst, inst + "/s.1"]
        try:
            os.mkdir(inst + "/s.1")
            with open(inst + "/s.1/cgroup.procs", "w") as f:
                f.write(str(left.pid))
            ours = [o for o in self.orphans_in(sub) if o.get("cgroup") == inst]
            self.assertEqual(len(ours), 1, ours)
            self.assertEqual((ours[0]["session"], ours[0]["owner"], ours[0]["pids"]),
                             (None, None, [left.pid]), ours)
            rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"\n *%d +- +mcpmux\.%d +- " % (left.pid, other.pid))
            self.assertTrue(alive(left.pid))
            # with a carrier of a session whose owner lives in it: a live one's, left alone
            with open("/proc/self/stat", "rb") as f:
                me = f.read()
            live_env = {"MCPMUX_SESSION": self.tag + "-live", "MCPMUX_OWNER": "%d:%d" % (
                os.getpid(), int(me[me.rindex(b")") + 2:].split()[19]))}
            carrier = subprocess.Popen(["sleep", "60"], env=live_env)
            try:
                wait_until(lambda: ("MCPMUX_SESSION=%s-live" % self.tag).encode() in
                           (proc_environ(carrier.pid) or []), 5, "the carrier to exec")
                with open(inst + "/s.1/cgroup.procs", "w") as f:
                    f.write(str(carrier.pid))
                self.assertEqual([o for o in self.orphans_in(sub) if o.get("cgroup") == inst], [])
                rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
                self.assertEqual(rc, 0, err)
                self.assertNotRegex(out, r"\n *%d " % left.pid)
            finally:
                carrier.kill()
                carrier.wait()
            # named after a live mcpmux: that instance's, left alone
            p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
            p.send(req(1, "ping"))
            self.assertEqual(p.msg()["id"], 1)
            live = os.path.join(sub, "mcpmux.%d.9" % p.pid)
            made += [live, live + "/s.1"]
            os.mkdir(live)
            os.mkdir(live + "/s.1")
            with open(live + "/s.1/cgroup.procs", "w") as f:
                f.write(str(left.pid))
            self.assertEqual([o for o in self.orphans_in(sub) if o.get("cgroup") == live], [])
            rc, out, err = self.mcpmux("sweep", "--dry-run", cgroup=sub)
            self.assertEqual(rc, 0, err)
            self.assertNotRegex(out, r"\n *%d " % left.pid)
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        finally:
            for q in (other, left):
                q.kill()
                q.wait()
            for d in reversed(made):
                rmdir_once_empty(d)


class NoLeaf(OwnCgroupCase):
    """A leaf that cannot be made (cgroup.max.descendants or cgroup.max.depth reached):
    the server starts without one, found by the process walk alone, and mcpmux says so."""

    def cgroup_of(self, pid):
        with open("/proc/%d/cgroup" % pid) as f:
            return f.read().strip().rsplit("::", 1)[-1]

    def test_a_server_without_a_leaf_is_said(self):
        p = self.start([MCPMUX] + GRACES + ["--", FIXTURE])
        inst = os.path.join(self.parent, "mcpmux.%d" % p.pid)
        p.send(call(1, "env"))
        first = p.msg()["result"]["structuredContent"]["pid"]
        if not os.path.isdir(inst):
            self.skipTest("no cgroup can be made here: " + p.stderr())
        self.assertRegex(self.cgroup_of(first), r"/mcpmux\.%d/s\.1$" % p.pid)
        p.send(note("mcpmux/endRun"))
        wait_until(lambda: not os.path.exists(os.path.join(inst, "s.1")), 5,
                   "the first leaf to be removed")
        with open(os.path.join(inst, "cgroup.max.descendants"), "w") as f:
            f.write("0")
        p.send(call(2, "env"))
        pid = p.msg()["result"]["structuredContent"]["pid"]
        # in mcpmux's own cgroup, where its start put it
        self.assertEqual(self.cgroup_of(pid), self.cgroup_of(p.pid))
        wait_until(lambda: "cannot make a cgroup leaf" in p.stderr(), 5,
                   "mcpmux to say the server has no leaf", p.stderr)
        self.assertRegex(p.stderr(), r"session [0-9a-f-]+: cannot make a cgroup leaf for "
                         r"its server: Resource temporarily unavailable \(it runs without "
                         r"one: the process walk alone finds its tree\)")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertFalse(alive(pid))
        self.assertFalse(os.path.exists(inst))
        self.assert_no_leftovers()


if __name__ == "__main__":
    main()
