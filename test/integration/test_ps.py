"""
`mcpmux ps` and `mcpmux sweep` against a machine set up on purpose: orphans (a cookie
and MCPMUX_OWNER naming a dead pid:starttime, one with a setsid grandchild, one of an
older mcpmux without MCPMUX_OWNER), a carrier whose owner lives, a real serve instance
and its server, a process without a cookie, and an orphan of another user (uid 65534).

Every session ID starts with the test's tag, and every sweep that ends something is
limited to them (--session TAG-*): the machine is shared, and other people's orphans
are not this test's to end.  The container case needs podman (podman_env.py).
"""

import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

import podman_env
from mcptest import (TAG, Case, FIXTURE, MCPMUX, SLOW, WRAPPER, alive, call, initialize, main,
                     ppid_of, proc_environ, proc_state, req, run_on_a_full_stdout, wait_until)

NOBODY = 65534
AS_ROOT = os.geteuid() == 0


def start_ticks(pid):
    """Field 22 of /proc/PID/stat: the start time in clock ticks since boot."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def age_s(pid):
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks(pid) / os.sysconf("SC_CLK_TCK")


def become_nobody():
    os.setgid(NOBODY)
    os.setgroups([])
    os.setuid(NOBODY)


class PsCase(Case):
    """Processes made on purpose, each killed and reaped after the test."""

    def setUp(self):
        super().setUp()
        self.extra = []

    def tearDown(self):
        for p in self.extra:
            if p.poll() is None:
                p.kill()
            p.wait()
        # Carriers made on purpose that are not our children (setsid grandchildren).
        for pid in self.tagged():
            env = proc_environ(pid) or []
            if any(e.startswith(("MCPMUX_SESSION=%s-" % self.tag).encode()) for e in env):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        wait_until(lambda: not [p for p in self.tagged()
                                if p not in {q.pid for q in self.procs}], 5,
                   "the test's processes to be gone")
        super().tearDown()

    def session(self, name):
        return "%s-%s" % (self.tag, name)

    def spawn(self, argv, session=None, owner=None, nobody=False):
        env = dict(self.env)
        if session is not None:
            env["MCPMUX_SESSION"] = session
        if owner is not None:
            env["MCPMUX_OWNER"] = owner
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=become_nobody if nobody else None)
        self.extra.append(p)
        # exec done: the environment is the new one
        wait_until(lambda: session is None or
                   ("MCPMUX_SESSION=%s" % session).encode() in (proc_environ(p.pid) or []),
                   5, "pid %d to exec" % p.pid)
        return p

    def dead_owner(self):
        """pid:starttime of a process that has exited (and been reaped)."""
        p = subprocess.Popen(["sleep", "1000"], env=self.env)
        owner = "%d:%d" % (p.pid, start_ticks(p.pid))
        p.kill()
        p.wait()
        return owner

    def carriers(self, session):
        """Live pids with MCPMUX_SESSION=session."""
        return self.cookie_pids(session)

    def mcpmux(self, *args, nobody=False, timeout=60):
        p = subprocess.run([MCPMUX] + list(args), capture_output=True, env=self.env,
                           timeout=timeout * SLOW, preexec_fn=become_nobody if nobody else None)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def ps_json(self, *args, nobody=False):
        rc, out, err = self.mcpmux("ps", "--json", *args, nobody=nobody)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def ours(self, entries):
        # (an orphan of no session has "session": null)
        return [e for e in entries if (e.get("session") or "").startswith(self.tag)]


class Machine(PsCase):
    """The whole set: what ps lists, what sweep ends, and what both leave alone."""

    def setUp(self):
        super().setUp()
        dead = self.dead_owner()
        self.dead = dead
        # orphans
        self.o1 = self.spawn(["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & "
                              "exec sleep 1000"], self.session("o1"), dead)
        def o1_pids():
            pids = sorted(self.carriers(self.session("o1")))  # (read once: it changes)
            return pids if len(pids) == 2 else None
        self.o1_pids = wait_until(o1_pids, 5, "the setsid grandchild")
        self.o2 = self.spawn(["sleep", "1000"], self.session("o2"), dead)
        self.legacy = self.spawn(["sleep", "1000"], self.session("legacy"))
        # alive: a carrier whose owner lives, a real serve session, no cookie at all
        self.owner = self.spawn(["sleep", "1000"])
        self.owned = self.spawn(["sleep", "1000"], self.session("live"),
                                "%d:%d" % (self.owner.pid, start_ticks(self.owner.pid)))
        self.serve = self.start([MCPMUX, "serve", "--", FIXTURE])
        self.serve.send({"session": self.session("srv"), "message": initialize(1)})
        self.assertEqual(self.reply()["id"], 1)
        self.server = wait_until(lambda: self.carriers(self.session("srv")), 5, "the server")[0]
        self.plain = self.spawn(["sleep", "1000"])
        # another user's orphan
        self.theirs = None
        if AS_ROOT:
            self.theirs = self.spawn(["sleep", "1000"], self.session("nobody"), dead,
                                     nobody=True)
        self.orphan_pids = self.o1_pids + [self.o2.pid, self.legacy.pid]
        self.alive_pids = [self.owner.pid, self.owned.pid, self.server, self.plain.pid,
                           self.serve.pid] + ([self.theirs.pid] if self.theirs else [])

    def reply(self):
        """The next message from serve's session, past its events."""
        while True:
            m = self.serve.msg()
            if "message" in m:
                return m["message"]

    def tearDown(self):
        if self.serve.p.returncode is None:
            self.serve.close_stdin()
            self.serve.wait()
        super().tearDown()

    def assert_alive(self, pids):
        for pid in pids:
            self.assertTrue(alive(pid), "pid %d should be alive" % pid)

    def assert_gone(self, pids):
        for pid in pids:
            self.assertFalse(alive(pid), "pid %d should be gone" % pid)

    def test_ps_json_lists_exactly_the_orphans_and_sessions(self):
        j = self.ps_json()
        self.assertEqual(set(j), {"instances", "orphans", "unknown", "containers", "engines"})
        orphans = {o["session"]: o for o in self.ours(j["orphans"])}
        want = {self.session("o1"), self.session("o2"), self.session("legacy")}
        if AS_ROOT:
            want.add(self.session("nobody"))
        self.assertEqual(set(orphans), want)
        o1 = orphans[self.session("o1")]
        self.assertEqual(o1["owner"], self.dead)
        self.assertEqual(o1["pid"], self.o1.pid)
        self.assertEqual(o1["tree"], 2)
        self.assertEqual(sorted(o1["pids"]), self.o1_pids)
        self.assertEqual(sorted(o1["carriers"]), self.o1_pids)
        self.assertEqual(o1["uid"], os.getuid())
        self.assertEqual(o1["command"], ["sleep", "1000"])
        self.assertGreater(o1["rss_kib"], 0)
        self.assertIsNone(orphans[self.session("legacy")]["owner"])
        if AS_ROOT:
            self.assertEqual(orphans[self.session("nobody")]["uid"], NOBODY)
        self.assertEqual(self.ours(j["unknown"]), [])

        instances = {i["pid"]: i for i in j["instances"]}
        # the live owner: an instance because a carrier names it; its command line says no mode
        owner = instances[self.owner.pid]
        self.assertIsNone(owner["mode"])
        [live] = owner["sessions"]
        self.assertEqual(live["session"], self.session("live"))
        self.assertEqual(live["pids"], [self.owned.pid])
        # no status file: what only a running mcpmux knows is null
        for field in ("ending", "suspended", "idle_s", "session_age_s", "suspends", "resumes"):
            self.assertIn(field, live)
            self.assertIsNone(live[field])
        self.assertEqual((live["state"], live["proc_state"]), ("running", "running"))
        # the real serve instance
        serve = instances[self.serve.pid]
        self.assertEqual(serve["mode"], "serve")
        self.assertEqual(serve["command"], [FIXTURE])
        self.assertEqual(serve["client"]["pid"], os.getpid())
        self.assertIsNone(serve["listen"])
        [srv] = [s for s in serve["sessions"] if s["session"] == self.session("srv")]
        self.assertEqual(srv["server_pid"], self.server)
        self.assertEqual(srv["tree"], 1)
        self.assertEqual(srv["state"], "running")
        # what the instance says (its status file, found through its XDG_RUNTIME_DIR)
        self.assertEqual((srv["ending"], srv["suspended"]), (False, False))
        self.assertEqual((srv["suspends"], srv["resumes"]), (0, 0))
        self.assertGreaterEqual(srv["idle_s"], 0)
        self.assertGreaterEqual(srv["session_age_s"], srv["idle_s"])
        self.assertGreaterEqual(srv["age_s"], 0)
        # never listed: the process without a cookie, ps itself
        listed = set(instances)
        for group in j["orphans"]:
            listed.update(group["pids"])
        self.assertNotIn(self.plain.pid, listed)
        for i in j["instances"]:
            self.assertNotIn("ps", i["argv"][1:2])

    def test_ps_table(self):
        rc, out, err = self.mcpmux("ps")
        self.assertEqual(rc, 0, err)
        self.assertIn("orphans (their mcpmux is gone):", out)
        lines = out.splitlines()
        header = [l for l in lines if l.startswith("SESSION ") and "OWNER" in l][0]
        row = [l for l in lines if l.startswith(self.session("o1"))][0]
        # aligned: each column starts where its header does
        self.assertEqual(row.index(self.dead), header.index("OWNER"))
        self.assertIn(" sleep 1000", row)
        srv = [l for l in lines if l.startswith(self.session("srv"))][0]
        self.assertIn(" %d " % self.serve.pid, srv)
        self.assertIn(" running ", srv)
        self.assertNotIn(self.session("live") + " ", "\n".join(
            lines[lines.index("orphans (their mcpmux is gone):"):]))
        # --session narrows
        rc, out, _ = self.mcpmux("ps", "--session", self.session("o2"))
        self.assertIn(self.session("o2"), out)
        self.assertNotIn(self.session("o1"), out)

    @unittest.skipUnless(AS_ROOT, "needs root to run as another user")
    def test_another_user_sees_only_their_own(self):
        j = self.ps_json(nobody=True)
        self.assertEqual([o["session"] for o in self.ours(j["orphans"])],
                         [self.session("nobody")])
        self.assertNotIn(self.serve.pid, [i["pid"] for i in j["instances"]])
        # their sweep ends their orphan, and nothing of root's (with no engine on PATH: with
        # root's environment, their podman cannot list, and sweep would say so and exit 1)
        self.env["PATH"] = "/nonexistent"
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*", nobody=True)
        self.assertEqual(rc, 0, err)
        self.assertIn(self.session("nobody"), out)
        self.assert_gone([self.theirs.pid])
        self.assert_alive(self.orphan_pids + self.alive_pids[:-1])

    def test_sweep_dry_run_touches_nothing(self):
        rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIn("would end:", out)
        for pid in self.orphan_pids:
            self.assertRegex(out, r"(?m)^\s*%d\s" % pid)
        for pid in self.alive_pids:
            self.assertNotRegex(out, r"(?m)^\s*%d\s" % pid)
        # unfiltered, it lists ours too, and still ends nothing
        rc, out, err = self.mcpmux("sweep", "--dry-run")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.session("o2"), out)
        self.assertNotIn(self.session("live"), out)
        self.assertNotIn(self.session("srv"), out)
        self.assertNotIn(self.session("nobody"), out)
        self.assert_alive(self.orphan_pids + self.alive_pids)

    def test_sweep_ends_exactly_the_orphans(self):
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assert_gone(self.orphan_pids)
        self.assert_alive(self.alive_pids)
        for pid in self.orphan_pids:
            self.assertRegex(out, r"(?m)^\s*%d\s+%s-\S+\s+\S+\s+term\s" % (pid, self.tag))
        self.assertIn("ended 4 process(es)", out)
        # the serve session still answers
        self.serve.send({"session": self.session("srv"), "message": initialize(2)})
        self.assertEqual(self.reply()["id"], 2)
        # nothing left to end
        rc, out, _ = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 0)
        self.assertIn("no orphans to end", out)


class PidNamespaces(PsCase):
    """An owner pid:start names a process of the mcpmux's own pid namespace: for an mcpmux
    in a container, a pid of the container's, found from here by its start time and its
    pid there; for an mcpmux here whose server runs in a sandbox of its own, a pid here."""

    def setUp(self):
        super().setUp()
        if shutil.which("unshare") is None or os.geteuid() != 0:
            self.skipTest("needs unshare(1) and root for a pid namespace")

    def test_a_live_mcpmux_in_a_container_owns_its_sessions(self):
        session = self.session("ctr")
        p = self.start(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", MCPMUX,
                        "serve", "-q",
                        "--", FIXTURE])
        p.send({"session": session, "message": initialize(1)})
        while "message" not in p.msg():
            pass  # the started event first
        carriers = self.carriers(session)
        owner = proc_environ(carriers[0])
        self.assertIn(b"MCPMUX_OWNER=1:", b"\0".join(owner), "its owner is pid 1 in there")
        self.assert_owned_and_spared(session, p)

    def test_a_sandboxed_server_of_a_gone_mcpmux_is_an_orphan(self):
        session = self.session("box")
        owner = self.dead_owner()  # an mcpmux of this namespace that is gone
        p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "env",
                              "MCPMUX_SESSION=" + session,
                              "MCPMUX_OWNER=" + owner, "sleep", "1000"], env=self.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.extra.append(p)
        pids = wait_until(lambda: self.carriers(session), 5, "the carrier to exec")
        with open("/proc/%d/status" % pids[0]) as f:
            nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
        self.assertEqual(nspid[-1], "1", "the carrier runs in a pid namespace of its own")
        orphans = self.ours(self.ps_json("--session", session)["orphans"])
        self.assertEqual([o["owner"] for o in orphans], [owner])
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual(rc, 0, err)
        wait_until(lambda: not alive(pids[0]), 5, "the orphan to be ended")


    def assert_owned_and_spared(self, session, p, status=0):
        """The session's carriers: listed under a live instance, no orphan, and sweep
        leaves them alone."""
        carriers = wait_until(lambda: self.carriers(session), 5, "the carriers")
        ps = self.ps_json("--session", session)
        mine = [i for i in ps["instances"] if any(x["session"] == session
                                                 for x in i.get("sessions", []))]
        self.assertEqual(len(mine), 1, ps)
        self.assertEqual(self.ours(ps["orphans"]), [], ps)
        self.assertEqual(self.ours(ps["unknown"]), [], ps)
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual(rc, 0, err)
        self.assertIn("no orphans to end", out)
        self.assertTrue(all(alive(c) for c in carriers), "sweep ended a live session")
        p.close_stdin()
        rc = p.wait()
        if status is not None:
            self.assertEqual(rc, status)

    def serve_session(self, argv, session, **kw):
        p = self.start(argv, **kw)
        p.send({"session": session, "message": initialize(1)})
        while "message" not in p.msg():
            pass  # the started event first
        return p

    def test_a_live_mcpmux_in_a_time_namespace_of_its_own_owns_its_sessions(self):
        """Its MCPMUX_OWNER holds its start time as its own clock reads it: compared with
        its time namespace's offset, not as this clock reads it."""
        session = self.session("clock")
        probe = subprocess.run(["unshare", "--time", "--boottime", "1000", "true"],
                               capture_output=True)
        if probe.returncode != 0:
            self.skipTest("no time namespace here: %s" % probe.stderr.decode())
        p = self.serve_session(["unshare", "--time", "--boottime", "1000", MCPMUX, "serve",
                                "-q", "--", FIXTURE], session)
        self.assert_owned_and_spared(session, p)

    def test_a_sandboxed_server_of_a_live_mcpmux_in_a_container_is_its(self):
        """The server runs in a pid namespace below the container's (unshare, bwrap): its
        owner is found in the namespace above its own."""
        session = self.session("sandbox")
        p = self.serve_session(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                                MCPMUX, "serve", "-q", "--", "unshare", "--pid", "--fork",
                                "--kill-child", FIXTURE], session)
        self.assert_owned_and_spared(session, p)

    def test_thousands_of_groups_hide_no_owner(self):
        """/proc/PID/status longer than any fixed buffer (3,000 supplementary groups come
        before NSpid): the container's mcpmux is still found."""
        session = self.session("groups")
        p = self.serve_session(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                                MCPMUX, "serve", "-q", "--", FIXTURE], session,
                               preexec_fn=lambda: os.setgroups(range(100000, 103000)))
        with open("/proc/%d/status" % self.carriers(session)[0]) as f:
            self.assertGreater(len(f.read()), 16384)
        self.assert_owned_and_spared(session, p)

    def test_an_mcpmux_that_cannot_read_proc_names_no_owner(self):
        """Without /proc it cannot read its own start time: its servers carry no
        MCPMUX_OWNER (one with a start of 0 would name no process, and make them orphans),
        and are known by their place under it."""
        session = self.session("noproc")
        p = self.serve_session(["unshare", "--mount", "sh", "-c",
                                'mount -t tmpfs none /proc && exec "$0" serve -q -- "$1"',
                                MCPMUX, FIXTURE], session)
        carriers = self.carriers(session)
        self.assertFalse([e for e in proc_environ(carriers[0])
                          if e.startswith(b"MCPMUX_OWNER=")])
        # (its exit status is not asserted: a sanitizer's leak check needs /proc too)
        self.assert_owned_and_spared(session, p, status=None)

    def test_from_inside_a_sandbox_an_owner_outside_is_unknown(self):
        """ps and sweep run in a sandbox (pid namespace, its own /proc) that a live mcpmux
        outside runs its server in: that mcpmux is not seen from there, and its pid there
        is no one's or another process's.  Its carriers are unknown, never orphans; a
        carrier there of an owner of that namespace that is gone is still one."""
        owner = self.spawn(["sleep", "1000"])  # a live owner, outside the sandbox
        own = "%d:%d" % (owner.pid, start_ticks(owner.pid))
        live, gone = self.session("outside"), self.session("inside")
        script = ('sleep 1000 & live=$!; MCPMUX_SESSION="$1" MCPMUX_OWNER=9999:1 sleep 1000 & '
                  'gone=$!; "$0" ps --json --session "$2*"; echo "ps=$?"; '
                  '"$0" sweep --session "$2*"; echo "sweep=$?"; '
                  'kill -0 $live && echo live-alive; kill -0 $gone || echo gone-ended; '
                  'kill $live')
        p = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                            "env", "MCPMUX_SESSION=" + live, "MCPMUX_OWNER=" + own,
                            "sh", "-c", script, MCPMUX, gone, self.tag],
                           env=self.env, capture_output=True, timeout=60 * SLOW)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertIn("ps=0", out, err)
        ps = json.loads(out.splitlines()[0])
        self.assertEqual([o["session"] for o in ps["orphans"]], [gone], ps)
        self.assertEqual([(u["session"], u["owner"]) for u in ps["unknown"]], [(live, own)], ps)
        self.assertIn("outside this pid namespace", ps["unknown"][0]["error"])
        self.assertIn("sweep=1", out, err)  # an owner that could not be judged
        self.assertIn("live-alive", out, (out, err))
        self.assertIn("gone-ended", out, (out, err))
        self.assertIn("cannot tell whether mcpmux %s" % own, err)

    def test_a_carrier_in_another_time_namespace_whose_owner_is_gone_is_an_orphan(self):
        """No process has its owner's pid: whatever its clock, that owner is gone."""
        session = self.session("time")
        owner = self.dead_owner()
        p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--time",
                              "--boottime", "100000",
                              "env", "MCPMUX_SESSION=" + session, "MCPMUX_OWNER=" + owner,
                              "sleep", "1000"], env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.extra.append(p)
        pids = wait_until(lambda: self.carriers(session) or p.poll() is not None, 5,
                          "the carrier to exec")
        if p.poll() is not None:
            self.skipTest("no time namespace here: %s" % p.stderr.read().decode())
        orphans = self.ours(self.ps_json("--session", session)["orphans"])
        self.assertEqual([o["owner"] for o in orphans], [owner])
        rc, out, err = self.mcpmux("sweep", "--session", session)
        self.assertEqual(rc, 0, err)
        wait_until(lambda: not alive(pids[0]), 5, "the orphan to be ended")


class Ladder(PsCase):
    def test_sigterm_ignored_gets_sigkill(self):
        dead = self.dead_owner()
        p = self.spawn(["sh", "-c", "trap '' TERM; exec sleep 1000"], self.session("stub"),
                       dead)
        t0 = time.monotonic()
        rc, out, err = self.mcpmux("sweep", "--term-grace", "300", "--session",
                                   self.session("stub"))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^\s*%d\s.*\skill\s" % p.pid)
        self.assertFalse(alive(p.pid))
        self.assertGreaterEqual(took, 0.3)
        self.assertEqual(p.wait(), -signal.SIGKILL)

    def test_stopped_orphan_ends_on_sigterm(self):
        p = self.spawn(["sleep", "1000"], self.session("stopped"), self.dead_owner())
        os.kill(p.pid, signal.SIGSTOP)
        wait_until(lambda: proc_state(p.pid) == "T", 5, "the orphan to stop")
        rc, out, err = self.mcpmux("sweep", "--session", self.session("stopped"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(p.wait(), -signal.SIGTERM)

    def test_one_that_would_not_die_in_time_is_reported(self):
        p = self.spawn(["sh", "-c", "trap '' TERM; exec sleep 1000"], self.session("late"),
                       self.dead_owner())
        rc, out, err = self.mcpmux("sweep", "--term-grace", "0", "--kill-deadline", "0",
                                   "--session", self.session("late"))
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("pid %d (session '%s'" % (p.pid, self.session("late")), err)
        self.assertIn("would not die", err)
        self.assertRegex(out, r"(?m)^\s*%d\s.*\sabandoned\s" % p.pid)
        self.assertEqual(p.wait(), -signal.SIGKILL)

    def test_a_descendant_without_the_cookie_is_counted_but_not_signalled(self):
        """An orphan's child that cleared its environment (no MCPMUX_SESSION): in the
        orphan's tree, not among its carriers, and sweep leaves it alone."""
        sess = self.session("cleared")
        p = self.spawn(["sh", "-c", "env -i %s=%s sleep 1000 & exec sleep 1000"
                        % (TAG, self.tag)], sess, self.dead_owner())

        def child():
            with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                kids = [int(k) for k in f.read().split()]
            env = proc_environ(kids[0]) if kids else None
            return kids if env and not any(e.startswith(b"MCPMUX_SESSION=")
                                           for e in env) else None
        [kid] = wait_until(child, 5, "the child without the cookie")
        [o] = self.ours(self.ps_json("--session", sess)["orphans"])
        self.assertEqual((o["tree"], sorted(o["pids"]), o["carriers"]),
                         (2, sorted([p.pid, kid]), [p.pid]))
        rc, out, err = self.mcpmux("sweep", "--session", sess)
        self.assertEqual(rc, 0, err)
        self.assertEqual(p.wait(), -signal.SIGTERM)
        self.assertNotRegex(out, r"(?m)^\s*%d\s" % kid)
        self.assertTrue(alive(kid), "sweep signals no process without the cookie")
        os.kill(kid, signal.SIGKILL)

    def test_more_orphans_than_descriptors(self):
        """More carriers than the descriptor table holds: each is still signalled through
        a pidfd after its check, and all are ended."""
        sess = self.session("many")
        p = self.spawn(["sh", "-c", "for i in $(seq 40); do sleep 1000 & done; wait"], sess,
                       self.dead_owner())
        carriers = wait_until(lambda: self.carriers(sess) if len(self.carriers(sess)) == 41
                              else None, 10, "the 40 children")

        def few_fds():
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (32, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        r = subprocess.run([MCPMUX, "sweep", "-q", "--session", sess], capture_output=True,
                           env=self.env, timeout=60 * SLOW, preexec_fn=few_fds)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertEqual(r.returncode, 0, (out, err))
        self.assertIn("ended 41 process(es)", out)
        self.assertFalse([c for c in carriers if alive(c)])
        self.assertEqual(p.wait(), -signal.SIGTERM)

    def test_own_line_is_left_alone(self):
        """A sweep started from inside an orphaned tree ends the rest of it, not its parent."""
        dead = self.dead_owner()
        sess = self.session("self")
        other = self.spawn(["sleep", "1000"], sess, dead)
        env = dict(self.env, MCPMUX_SESSION=sess, MCPMUX_OWNER=dead)
        p = subprocess.run(["sh", "-c", '"$0" sweep --session "$1"; echo "rc=$?"', MCPMUX,
                            sess], env=env, capture_output=True, timeout=60 * SLOW)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertIn("rc=0", out, err)  # sh outlived the sweep
        self.assertIn("is an ancestor of this sweep: left alone", err)
        self.assertEqual(err.count("is an ancestor of this sweep"), 1, err)
        self.assertRegex(out, r"(?m)^\s*%d\s" % other.pid)
        self.assertFalse(alive(other.pid))

    def test_control_bytes_are_not_printed(self):
        """A session ID or an owner is whatever a process's environment holds: the tables
        and the lines on stderr show its control bytes as '?' (an escape sequence would
        drive the terminal, a newline forge a row); --json escapes them."""
        sess = self.session("esc\x1b]0;title\x07\nforged\r")
        shown = self.session("esc?]0;title??forged?")
        dead = self.dead_owner()
        p = self.spawn(["sleep", "1000"], sess, dead)
        owner = "1:1\x1b[2J"  # not PID:START, none above it: unknown, said on stderr
        q = self.spawn(["sleep", "1000"], self.session("owner"), owner)
        control = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")

        j = self.ps_json("--session", self.tag + "-*")
        self.assertEqual([(o["session"], o["owner"], o["pid"]) for o in self.ours(j["orphans"])],
                         [(sess, dead, p.pid)])
        self.assertEqual([(u["session"], u["owner"], u["pid"]) for u in self.ours(j["unknown"])],
                         [(self.session("owner"), owner, q.pid)])
        rc, out, err = self.mcpmux("ps", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIsNone(control.search(out), out)
        self.assertIsNone(control.search(err.replace("\n", "")), err)
        self.assertRegex(out, r"(?m)^%s\s+%s\s+\S+\s+%d\s" % (re.escape(shown), dead, p.pid))
        self.assertNotIn("\nforged", out)
        self.assertIn("cannot tell whether mcpmux 1:1?[2J, the owner of pid %d" % q.pid, err)
        # from inside the tree: its own line is said on stderr, the rest ended
        env = dict(self.env, MCPMUX_SESSION=sess, MCPMUX_OWNER=dead)
        r = subprocess.run(["sh", "-c", '"$0" sweep --session "$1"; echo "rc=$?"', MCPMUX,
                            self.tag + "-*"], env=env, capture_output=True, timeout=60 * SLOW)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertIn("rc=1", out, err)  # the unknown one is left alone
        self.assertIsNone(control.search(out), out)
        self.assertIsNone(control.search(err.replace("\n", "")), err)
        self.assertIn("(session '%s') is an ancestor of this sweep" % shown, err)
        self.assertIn("cannot tell whether mcpmux 1:1?[2J, the owner of pid %d" % q.pid, err)
        self.assertRegex(out, r"(?m)^\s*%d\s+%s\s+%s\s+term\s" % (p.pid, re.escape(shown), dead))
        self.assertEqual(p.wait(), -signal.SIGTERM)
        self.assertTrue(alive(q.pid))

    def test_c1_controls_and_bytes_not_utf8_are_not_printed(self):
        """A C1 control written in UTF-8 (U+009B, that a terminal may take for CSI, the
        start of an escape sequence) and bytes that are not UTF-8, in a session ID or a
        command line, are shown as '?' by the tables, other UTF-8 as it is; a command line
        cut to fit (at 64 words here) ends in '...', not as if it were whole."""
        sess = self.session("c1\u009b2J")
        dead = self.dead_owner()
        words = ["\u009b31mred", "\udcfe\udcc3x", "caf\u00e9"] + ["w%d" % i for i in range(80)]
        p = self.spawn(["sh", "-c", "sleep 1000; :"] + words, sess, dead)
        r = subprocess.run([MCPMUX, "ps", "-q", "--session", self.tag + "-*"],
                           capture_output=True, env=self.env, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()  # strict: every byte of it UTF-8
        self.assertIsNone(re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), ascii(out))
        row = [line for line in out.splitlines() if line.startswith(self.tag)]
        self.assertEqual(len(row), 1, out)
        self.assertRegex(row[0], r"^%s\s+%s\s+\S+\s+%d\s" % (re.escape(self.session("c1?2J")),
                                                               dead, p.pid))
        self.assertTrue(row[0].endswith(" sh -c sleep 1000; : ?31mred ??x caf\u00e9 "
                                        + " ".join("w%d" % i for i in range(58)) + "..."),
                        ascii(row[0]))
        # --json has the words, escaped, and what was not UTF-8 as U+FFFD
        j = self.ps_json("--session", self.tag + "-*")
        self.assertEqual([o["command"] for o in self.ours(j["orphans"])],
                         [["sh", "-c", "sleep 1000; :", "\u009b31mred", "\ufffd\ufffdx"]
                          + words[2:]])

    def test_an_owner_that_does_not_parse_is_unknown(self):
        """MCPMUX_OWNER that is not PID:START (a newer mcpmux's format?, or one longer than
        64 bytes) names no owner that can be judged: under a live instance the carrier is
        that instance's; with none above it, it is unknown, not an orphan, and sweep
        leaves it alone.  PID:0, which an older mcpmux that could not read its own start
        time gave, names a pid alone: one that is gone makes an orphan."""
        bad = self.spawn(["sleep", "1000"], self.session("bad"), "123:456:789")
        too_long = self.spawn(["sleep", "1000"], self.session("long"), "1:" + "2" * 70)
        zero = self.spawn(["sleep", "1000"], self.session("zero"),
                          self.dead_owner().split(":")[0] + ":0")
        serve = self.start([MCPMUX, "serve", "--", "env", "MCPMUX_OWNER=1:2:3", FIXTURE])
        serve.send({"session": self.session("srv"), "message": initialize(1)})
        server = wait_until(lambda: self.carriers(self.session("srv")), 10, "the server")[0]

        try:
            j = self.ps_json("--session", self.tag + "-*")
            self.assertEqual([o["session"] for o in self.ours(j["orphans"])],
                             [self.session("zero")])
            unknown = sorted((u["session"], u["owner"], u["pid"])
                             for u in self.ours(j["unknown"]))
            self.assertEqual(unknown, [(self.session("bad"), "123:456:789", bad.pid),
                                       (self.session("long"), None, too_long.pid)])
            for u in self.ours(j["unknown"]):
                self.assertIn("MCPMUX_OWNER is not PID:START", u["error"])
            [inst] = [i for i in j["instances"] if i["pid"] == serve.pid]
            self.assertEqual([s["pids"] for s in inst["sessions"]], [[server]])
            rc, out, err = self.mcpmux("ps", "--session", self.tag + "-*")
            self.assertEqual(rc, 0, err)
            self.assertNotIn(self.session("bad"), out)
            self.assertNotIn("(older mcpmux)", out)
            said = "cannot tell whether mcpmux %s, the owner of pid %d"
            self.assertIn(said % ("123:456:789", bad.pid), err)
            self.assertIn(said % ("(too long)", too_long.pid), err)

            rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", self.tag + "-*")
            self.assertEqual(rc, 1, err)
            self.assertRegex(out, r"(?m)^\s*%d\s" % zero.pid)
            for pid in (bad.pid, too_long.pid, server):
                self.assertNotRegex(out, r"(?m)^\s*%d\s" % pid)
            rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
            self.assertEqual(rc, 1, err)
            self.assertIn("ended 1 process(es)", out)
            self.assertEqual(zero.wait(), -signal.SIGTERM)
            for pid in (bad.pid, too_long.pid, server):
                self.assertTrue(alive(pid), "pid %d should be alive" % pid)
        finally:
            serve.close_stdin()
            serve.wait()

    def test_an_owner_without_a_start_time_that_lives_is_not_swept(self):
        """PID:0, from an older mcpmux that could not read its own start time, names a pid
        alone.  A carrier outside its owner's tree (a setsid daemon) whose PID is a live
        mcpmux that started before it is that mcpmux's; whose PID is another live process
        that started before it is unknown (it may be an mcpmux not known by its looks):
        sweep leaves both alone.  One whose PID is gone is an orphan, and swept."""
        w = self.wrap()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        live = self.spawn(["sleep", "1000"], self.session("zlive"), "%d:0" % w.pid)
        stranger = self.spawn(["sleep", "1000"])
        unsure = self.spawn(["sleep", "1000"], self.session("zunsure"), "%d:0" % stranger.pid)
        gone = self.spawn(["sleep", "1000"], self.session("zgone"),
                          self.dead_owner().split(":")[0] + ":0")
        try:
            j = self.ps_json("--session", self.tag + "-*")
            [inst] = [i for i in j["instances"] if i["pid"] == w.pid]
            self.assertIn([live.pid], [s["pids"] for s in inst["sessions"]
                                       if s["session"] == self.session("zlive")])
            self.assertEqual([o["pid"] for o in self.ours(j["orphans"])], [gone.pid])
            [u] = self.ours(j["unknown"])
            self.assertEqual((u["session"], u["pid"]), (self.session("zunsure"), unsure.pid))
            self.assertIn("no start time", u["error"])

            rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
            self.assertEqual(rc, 1, err)
            self.assertIn("cannot tell whether mcpmux %d:0, the owner of pid %d"
                          % (stranger.pid, unsure.pid), err)
            self.assertIn("ended 1 process(es)", out)
            self.assertEqual(gone.wait(), -signal.SIGTERM)
            for pid in (live.pid, unsure.pid, stranger.pid):
                self.assertTrue(alive(pid), "pid %d should be alive" % pid)
        finally:
            w.close_stdin()
            w.wait()

    def test_an_empty_owner_is_unknown_and_said_as_empty(self):
        """An empty MCPMUX_OWNER= names no owner either: with no instance above, the carrier
        is unknown and sweep leaves it alone.  It is said as the empty owner it is, not as
        one too long to be kept (owner null in --json, "(too long)" on stderr)."""
        empty = self.spawn(["sleep", "1000"], self.session("empty"), "")
        j = self.ps_json("--session", self.tag + "-*")
        self.assertEqual(self.ours(j["orphans"]), [])
        [u] = self.ours(j["unknown"])
        self.assertEqual((u["session"], u["owner"], u["pid"]),
                         (self.session("empty"), "", empty.pid))
        self.assertIn("MCPMUX_OWNER is not PID:START", u["error"])
        rc, out, err = self.mcpmux("ps", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot tell whether mcpmux (empty), the owner of pid %d" % empty.pid,
                      err)
        self.assertNotIn("(too long)", err)
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 1, err)
        self.assertTrue(alive(empty.pid), "pid %d should be alive" % empty.pid)

    def test_older_than(self):
        dead = self.dead_owner()
        old = self.spawn(["sleep", "1000"], self.session("old"), dead)
        rc, out, err = self.mcpmux("sweep", "--dry-run", "--older-than", "1h",
                                   "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIn("no orphans to end", out)
        wait_until(lambda: age_s(old.pid) > 3, 10, "the first orphan to age")
        # the young one is at most 2 s old when sweep looks: only sweep's start between
        young = self.spawn(["sleep", "1000"], self.session("young"), dead)
        rc, out, err = self.mcpmux("sweep", "--older-than", "2s", "--session",
                                   self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIn(self.session("old"), out)
        self.assertNotIn(self.session("young"), out)
        self.assertFalse(alive(old.pid))
        self.assertTrue(alive(young.pid))

    def test_output_that_cannot_be_written(self):
        """A table or report lost to a full disk is a failure, as ps --json's is."""
        none = self.session("none")
        for args in (["ps", "--session", none], ["ps", "--json", "--session", none],
                     ["sweep", "--session", none], ["sweep", "--dry-run", "--session", none]):
            with open("/dev/full", "wb") as full:
                r = subprocess.run([MCPMUX] + args + ["-q"], stdout=full,
                                   stderr=subprocess.PIPE, env=self.env, timeout=60 * SLOW)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("cannot write to stdout", r.stderr.decode(), args)

    def test_output_that_must_wait_for_room(self):
        """A full non-blocking stdout (a pipe its reader shares with others) is waited on,
        as config's is, where stdio failed on EAGAIN and cut the output short: ps's table
        and JSON, sweep's list of what it would end, and its report of what it ended."""
        orphan = self.spawn(["sleep", "1000"], self.session("orphan"), self.dead_owner())
        ours = self.tag + "-*"
        for args in (["ps", "--session", ours], ["ps", "--json", "--session", ours],
                     ["sweep", "--dry-run", "--session", ours], ["sweep", "--session", ours]):
            rc, out, err = run_on_a_full_stdout([MCPMUX] + args + ["-q"], self.env)
            self.assertEqual(rc, 0, (args, err))
            self.assertNotIn("cannot write", err, args)
            out = out.decode()
            self.assertTrue(out.endswith("\n"), (args, out))
            if "--json" in args:
                self.assertEqual([o["pid"] for o in self.ours(json.loads(out)["orphans"])],
                                 [orphan.pid])
            else:
                self.assertIn(self.session("orphan"), out, args)
        self.assertIn("ended 1 process(es) and 0 container(s)", out)
        self.assertFalse(alive(orphan.pid))

    def test_usage(self):
        # sweep's usage errors come after --dry-run: should one of them be taken, the sweep
        # still ends nothing (unscoped, it would end what other tests left)
        for args in (["sweep", "--dry-run", "--older-than", "10x"],
                     ["sweep", "--dry-run", "--older-than", "0"],
                     ["sweep", "--dry-run", "--json"], ["ps", "--dry-run"], ["ps", "extra"],
                     ["sweep", "--dry-run", "--term-grace", "-1"],
                     ["sweep", "--dry-run", "--session"], ["ps", "--bogus"]):
            rc, out, err = self.mcpmux(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn("mcpmux: ", err, args)
        for sub in ("ps", "sweep"):
            rc, out, err = self.mcpmux(sub, "--help")
            self.assertEqual(rc, 0)
            self.assertIn("usage: mcpmux %s" % sub, out)


class Status(PsCase):
    """What only a running instance knows, from its status file: states, idle times,
    suspend and resume counts, and sessions without a server.  mcpmux and ps run with a
    private XDG_RUNTIME_DIR, where the test also writes files of its own."""

    def setUp(self):
        super().setUp()
        self.xdg = os.path.join(self.tmp.name, "run")
        os.mkdir(self.xdg, 0o700)
        self.env["XDG_RUNTIME_DIR"] = self.xdg
        self.instances = os.path.join(self.xdg, "mcpmux", "instances")

    def tearDown(self):
        # mcpmux ends its servers before PsCase looks for leftovers
        for p in self.procs:
            if p.p.returncode is None:
                p.close_stdin()
                try:
                    p.wait()
                except AssertionError:
                    p.kill()
        super().tearDown()

    def status_file(self, pid):
        return os.path.join(self.instances, str(pid))

    def instance(self, j, pid):
        [i] = [i for i in j["instances"] if i["pid"] == pid]
        return i

    def sessions(self, pid, *args):
        return {s["session"]: s for s in self.instance(self.ps_json(*args), pid)["sessions"]}

    def only_session(self, pid):
        """The one session of wrap instance pid, with the monotonic time ps ran at."""
        t0 = time.monotonic()
        sessions = self.sessions(pid)
        t1 = time.monotonic()
        self.assertEqual(len(sessions), 1, sessions)
        return list(sessions.values())[0], t0, t1

    def server_of(self, pid):
        return wait_until(lambda: [p for p in self.tagged() if ppid_of(p) == pid and
                                   any(e.startswith(b"MCPMUX_SESSION=")
                                       for e in proc_environ(p) or [])],
                          5, "the server of %d" % pid)[0]

    def test_wrap_suspended_session_is_listed(self):
        t_start = time.monotonic()
        w = self.wrap(opts=["--idle-suspend", "0.3"])
        t_sent = time.monotonic()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        t_answer = time.monotonic()
        server = self.server_of(w.pid)
        wait_until(lambda: not alive(server), 10, "the idle server to be suspended")
        s = wait_until(lambda: (lambda s: s if s["state"] == "suspended" else None)(
            self.only_session(w.pid)[0]), 5, "ps to show the session suspended")
        s, t0, t1 = self.only_session(w.pid)
        self.assertEqual(s["state"], "suspended")
        self.assertIsNone(s["server_pid"])
        self.assertIsNone(s["proc_state"])
        self.assertIs(s["suspended"], True)
        self.assertIs(s["ending"], False)
        self.assertEqual(s["suspends"], 1)
        self.assertEqual(s["resumes"], 0)
        self.assertEqual(s["tree"], 0)
        self.assertEqual(s["pids"], [])
        self.assertEqual(s["rss_kib"], 0)
        self.assertIsNone(s["age_s"])  # no process to take it from
        self.assertEqual(s["command"], [FIXTURE])
        self.assertEqual(s["containers"], [])
        # idle since the answer to initialize: at least the suspend delay, and no more
        # than the time since the request was sent (0.1: the file's rounding, ps's own)
        self.assertGreaterEqual(s["idle_s"], 0.3 - 0.1)
        self.assertGreaterEqual(s["idle_s"], t0 - t_answer - 0.1)
        self.assertLessEqual(s["idle_s"], t1 - t_sent + 0.1)
        self.assertGreaterEqual(s["session_age_s"], s["idle_s"])
        self.assertLessEqual(s["session_age_s"], t1 - t_start + 0.1)
        self.assertEqual(self.instance(self.ps_json(), w.pid)["mode"], "wrap")
        # the table: no server, the state, the counts
        rc, out, err = self.mcpmux("ps")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        header = [l for l in lines if l.startswith("SESSION ") and "MCPMUX" in l][0]
        row = [l for l in lines if l.startswith(s["session"])][0]
        self.assertEqual(row.split()[:5], [s["session"], str(w.pid), "-", "0", "suspended"])
        self.assertIn(" 1/0 ", row)
        self.assertEqual(row.index(" suspended") + 1, header.index("STATE"))
        self.assertRegex([l for l in lines if l.lstrip().startswith(str(w.pid))][0],
                         r"^\s*%d\s+\S+\s+wrap\s+\S+\s+\S+\s+1\s" % w.pid)
        # the next message resumes it: a new server, counted
        w.send(req(2, "tools/list"))
        self.assertEqual(w.msg()["id"], 2)
        # the file follows a change within 50 ms
        s2 = wait_until(lambda: [x for x in self.only_session(w.pid)[:1] if x["resumes"] == 1],
                        5, "the resume in the status file")[0]
        self.assertEqual(s2["session"], s["session"])
        self.assertIn(s2["state"], ("running", "suspending", "suspended"))
        if s2["state"] == "running":
            self.assertEqual(s2["suspends"], 1)
            self.assertEqual(s2["server_pid"], self.server_of(w.pid))

    def test_running_session_idle_grows(self):
        w = self.wrap()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        server = self.server_of(w.pid)
        first, _, _ = self.only_session(w.pid)
        self.assertEqual(first["state"], "running")
        self.assertEqual(first["proc_state"], "running")
        self.assertEqual(first["server_pid"], server)
        self.assertIs(first["ending"], False)
        self.assertIs(first["suspended"], False)
        self.assertEqual((first["suspends"], first["resumes"]), (0, 0))
        self.assertEqual(first["tree"], 1)
        self.assertGreaterEqual(first["idle_s"], 0)
        self.assertGreaterEqual(first["session_age_s"], first["idle_s"])
        # ps finds the file where the instance made it (its XDG_RUNTIME_DIR), not its own
        env = {k: v for k, v in self.env.items() if k != "XDG_RUNTIME_DIR"}
        p = subprocess.run([MCPMUX, "ps", "--json"], env=env, capture_output=True,
                           timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        [s] = self.instance(json.loads(p.stdout), w.pid)["sessions"]
        self.assertEqual((s["state"], s["suspends"]), ("running", 0))
        time.sleep(1.2)
        later, _, _ = self.only_session(w.pid)
        self.assertEqual(later["state"], "running")
        self.assertGreaterEqual(later["idle_s"] - first["idle_s"], 1.0)
        self.assertGreaterEqual(later["session_age_s"] - first["session_age_s"], 1.0)
        # traffic: the file says so within a second
        w.send(req(2, "tools/list"))
        self.assertEqual(w.msg()["id"], 2)
        wait_until(lambda: self.only_session(w.pid)[0]["idle_s"] < later["idle_s"] - 0.5,
                   3, "the idle time to restart after traffic")
        # a stopped server: /proc has the last word on processes
        os.kill(server, signal.SIGSTOP)
        try:
            wait_until(lambda: proc_state(server) == "T", 5, "the server to stop")
            s, _, _ = self.only_session(w.pid)
            self.assertEqual((s["state"], s["proc_state"]), ("stopped", "stopped"))
        finally:
            os.kill(server, signal.SIGCONT)

    def test_an_instance_with_its_runtime_dir_given_twice(self):
        # The instance takes the first XDG_RUNTIME_DIR (getenv): ps looks there, not in
        # the second.  Python's environments hold a key once: execve(2) through ctypes.
        other = os.path.join(self.tmp.name, "other")
        os.mkdir(other, 0o700)
        env = [b"%s=%s" % (k.encode(), v.encode()) for k, v in self.env.items()
               if k != "XDG_RUNTIME_DIR"]
        env[:0] = [b"XDG_RUNTIME_DIR=" + self.xdg.encode(),
                   b"XDG_RUNTIME_DIR=" + other.encode()]
        argv = [a.encode() for a in self.prefix + WRAPPER + [MCPMUX, "--", FIXTURE]]
        code = ("import ctypes, shutil, sys\n"
                "a, e = eval(sys.argv[1]), eval(sys.argv[2])\n"
                "a[0] = shutil.which(a[0])\n"
                "A, E = ctypes.c_char_p * (len(a) + 1), ctypes.c_char_p * (len(e) + 1)\n"
                "ctypes.CDLL(None).execve(a[0], A(*a, None), E(*e, None))\n"
                "sys.exit(127)\n")
        w = self.start([sys.executable, "-c", code, repr(argv), repr(env)])
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        self.assertTrue(os.path.exists(self.status_file(w.pid)))
        s, _, _ = self.only_session(w.pid)
        self.assertEqual((s["state"], s["suspends"], s["resumes"]), ("running", 0, 0))
        self.assertIsNotNone(s["idle_s"])
        self.assertIs(s["ending"], False)

    def test_serve_one_session_suspended_one_busy(self):
        serve = self.serve(opts=["--idle-suspend", "0.5"])
        busy, idle = self.session("busy"), self.session("idle")

        def reply(session):
            while True:
                m = serve.msg()
                if m.get("session") == session and "message" in m:
                    return m["message"]
        for sid in (busy, idle):
            serve.send({"session": sid, "message": initialize(1)})
            self.assertEqual(reply(sid)["id"], 1)
        # a request in flight: not idle, never suspended while it lasts
        serve.send({"session": busy, "message": call(2, "sleep", ms=int(30000 * SLOW))})
        wait_until(lambda: self.sessions(serve.pid)[idle]["state"] == "suspended", 10,
                   "the idle session to be suspended")
        ss = self.sessions(serve.pid)
        self.assertEqual(set(ss), {busy, idle})
        b, i = ss[busy], ss[idle]
        self.assertEqual(b["state"], "running")
        self.assertIsNotNone(b["server_pid"])
        self.assertTrue(alive(b["server_pid"]))
        self.assertEqual(b["tree"], 1)
        self.assertEqual((b["suspends"], b["resumes"]), (0, 0))
        self.assertIs(b["suspended"], False)
        self.assertEqual(i["state"], "suspended")
        self.assertIs(i["suspended"], True)
        self.assertIsNone(i["server_pid"])
        self.assertEqual((i["tree"], i["pids"], i["rss_kib"]), (0, [], 0))
        self.assertEqual((i["suspends"], i["resumes"]), (1, 0))
        self.assertGreaterEqual(i["idle_s"], 0.4)
        self.assertEqual(self.cookie_pids(idle), [])
        # --session narrows to the suspended one, in the table too
        self.assertEqual(set(self.sessions(serve.pid, "--session", idle)), {idle})
        rc, out, err = self.mcpmux("ps", "--session", idle)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^%s\s+%d\s+-\s+0\s+suspended\s" % (idle, serve.pid))
        self.assertNotIn(busy, out)
        self.assertRegex(out, r"(?m)^\s*%d\s+\S+\s+serve\s+\S+\s+\S+\s+2\s" % serve.pid)

    def write_status(self, pid, lines, lock=False):
        """A status file of the test's own; with lock, held (an fd to close) as a live
        instance holds its own."""
        os.makedirs(self.instances, mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(self.instances), 0o700)
        fd = os.open(self.status_file(pid), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, "".join(json.dumps(l, separators=(",", ":")) + "\n"
                             for l in lines).encode())
        if lock:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        os.close(fd)
        return None

    def test_stale_status_file_is_ignored(self):
        # An instance without a status file: a carrier names it.  Its "file" is written
        # by the test, with a session that has no process and made-up pids.
        owner = self.spawn(["sleep", "1000"])
        live = self.session("live")
        self.spawn(["sleep", "1000"], live, "%d:%d" % (owner.pid, start_ticks(owner.pid)))
        ghost = self.session("ghost")
        lines = [{"mcpmux": owner.pid, "mode": "serve"},
                 {"session": live, "state": "ending", "pid": 999999, "started": 1.0,
                  "last": 2.0, "suspends": 2, "resumes": 2},
                 {"session": ghost, "state": "suspended", "pid": None, "started": 1.0,
                  "last": 2.0, "suspends": 5, "resumes": 4}]
        self.write_status(owner.pid, lines)
        # and the file of a dead instance (its pid is gone)
        dead = int(self.dead_owner().split(":")[0])
        self.write_status(dead, [{"mcpmux": dead, "mode": "wrap"}] + lines[1:])

        # unlocked: a dead instance's, whatever it says
        ss = self.sessions(owner.pid)
        self.assertEqual(set(ss), {live})
        self.assertEqual(ss[live]["state"], "running")
        for field in ("ending", "suspended", "idle_s", "session_age_s", "suspends", "resumes"):
            self.assertIsNone(ss[live][field], field)
        rc, out, err = self.mcpmux("ps")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(ghost, out)
        self.assertEqual(err.count("status"), 0, err)
        # ps removes nothing, nor does sweep --dry-run
        rc, _, err = self.mcpmux("sweep", "--dry-run", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.status_file(owner.pid)))
        self.assertTrue(os.path.exists(self.status_file(dead)))

        # the same file held under its lock: read, and the session without a process listed
        fd = self.write_status(owner.pid, lines, lock=True)
        try:
            ss = self.sessions(owner.pid)
            self.assertEqual(set(ss), {live, ghost})
            self.assertEqual(ss[live]["state"], "ending")
            self.assertEqual(ss[live]["pids"], [p for p in self.carriers(live)])
            self.assertIsNone(ss[live]["server_pid"])  # the made-up pid is not taken
            self.assertEqual((ss[ghost]["state"], ss[ghost]["server_pid"]), ("suspended", None))
            self.assertEqual((ss[ghost]["suspends"], ss[ghost]["resumes"]), (5, 4))
            self.assertIsNone(ss[ghost]["command"])  # the owner's command line says none
            # another pid in its first line: not this instance's file
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps({"mcpmux": owner.pid + 1}) + "\n").encode(), 0)
            self.assertEqual(set(self.sessions(owner.pid)), {live})
        finally:
            os.close(fd)

        # a symlink to a held file is not followed
        elsewhere = os.path.join(self.xdg, "elsewhere")
        fd = os.open(elsewhere, os.O_RDWR | os.O_CREAT, 0o600)
        os.write(fd, "".join(json.dumps(l) + "\n" for l in lines).encode())
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.unlink(self.status_file(owner.pid))
            os.symlink(elsewhere, self.status_file(owner.pid))
            rc, out, err = self.mcpmux("ps", "--json")
            self.assertEqual(rc, 0, err)
            self.assertEqual(set(s["session"] for s in
                                 self.instance(json.loads(out), owner.pid)["sessions"]),
                             {live})
            self.assertIn("cannot read the status of mcpmux %d" % owner.pid, err)
        finally:
            os.close(fd)
        os.unlink(self.status_file(owner.pid))
        self.write_status(owner.pid, lines)

        # sweep removes the dead instance's file, not the one of a pid that lives
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(self.status_file(dead)))
        self.assertTrue(os.path.exists(self.status_file(owner.pid)))

    def test_a_file_whose_pid_another_program_holds_is_stale(self):
        """A killed instance's file whose pid a process that is no mcpmux now holds is as
        stale as one of a pid that is gone: ps shows nothing of it, and sweep removes it
        (that process left alone), not the file of a live instance."""
        stranger = self.spawn(["sleep", "1000"])
        ghost = self.session("ghost")
        self.write_status(stranger.pid, [
            {"mcpmux": stranger.pid, "mode": "wrap"},
            {"session": ghost, "state": "suspended", "pid": None, "started": 1.0,
             "last": 2.0, "suspends": 1, "resumes": 0}])
        w = self.wrap()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        self.assertTrue(os.path.exists(self.status_file(w.pid)))
        j = self.ps_json()
        self.assertNotIn(stranger.pid, [i["pid"] for i in j["instances"]])
        self.assertNotIn(ghost, json.dumps(j))
        rc, _, err = self.mcpmux("sweep", "--dry-run", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.status_file(stranger.pid)))
        rc, _, err = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(self.status_file(stranger.pid)))
        self.assertTrue(alive(stranger.pid))
        self.assertTrue(os.path.exists(self.status_file(w.pid)))
        self.assertEqual(self.only_session(w.pid)[0]["state"], "running")

    def test_a_state_of_a_newer_mcpmux_is_shown_as_written(self):
        # A state this mcpmux does not know (written by a newer one) is no reason to
        # leave the session out: it is listed with the state as written, escaped.
        owner = self.spawn(["sleep", "1000"])  # an instance: a carrier names it
        self.spawn(["sleep", "1000"], self.session("live"),
                   "%d:%d" % (owner.pid, start_ticks(owner.pid)))
        newer, odd = self.session("newer"), self.session("odd")
        lines = [{"mcpmux": owner.pid, "mode": "serve"},
                 {"session": newer, "state": "hibernating", "pid": None, "started": 1.0,
                  "last": 2.0, "suspends": 1, "resumes": 0},
                 {"session": odd, "state": "x\x1b[2Jy", "pid": None, "started": 1.0,
                  "last": 2.0, "suspends": 0, "resumes": 0}]
        fd = self.write_status(owner.pid, lines, lock=True)
        try:
            ss = self.sessions(owner.pid)
            self.assertEqual(set(ss), {self.session("live"), newer, odd})
            self.assertEqual(ss[newer]["state"], "hibernating")
            self.assertEqual((ss[newer]["suspends"], ss[newer]["server_pid"]), (1, None))
            self.assertIs(ss[newer]["suspended"], False)
            self.assertEqual(ss[odd]["state"], "x\x1b[2Jy")
            rc, out, err = self.mcpmux("ps", "--session", self.tag + "-*")
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"(?m)^%s\s+%d\s+-\s+0\s+hibernating\s" % (newer, owner.pid))
            self.assertRegex(out, r"(?m)^%s\s+%d\s+-\s+0\s+x\?\[2Jy\s" % (odd, owner.pid))
            self.assertNotIn("\x1b", out)
        finally:
            os.close(fd)

    def test_a_long_command_line_is_whole_in_json_or_said_cut(self):
        """--json gives a command line whole up to 128 KiB, however many words (here
        about 9 KiB in 1500 words, past the 4096 bytes and 512 words it once stopped at),
        with "argv_cut" (an instance's, its client's) and "command_cut" (a session's, an
        orphan's) false; a longer one is its first 128 KiB, the flag true.  At the bound:
        128 KiB and the final NUL is whole, a byte more is cut."""
        cap = 128 * 1024
        script = "cat >/dev/null; :"  # the server ends at mcpmux's EOF
        longer = ["w%04d" % i for i in range(1500)]
        longest = ["%02d" % i + "x" * 4000 for i in range(40)]  # 160 KiB
        fixed = sum(len(x.encode()) + 1 for x in [MCPMUX, "--", "sh", "-c", script, "sh"])
        exact = ["y" * (cap - fixed)]  # the wrap's line: 128 KiB and its final NUL
        over = ["y" * (cap - fixed + 1)]
        wraps = {}
        for name, words in (("longer", longer), ("longest", longest), ("exact", exact),
                            ("over", over)):
            cmd = ["sh", "-c", script, "sh"] + words
            w = self.wrap(command=cmd)
            self.server_of(w.pid)
            wraps[name] = (w, [MCPMUX, "--"] + cmd)
        dead = self.dead_owner()
        orphan_cmd = ["sh", "-c", "sleep 1000; :", "sh"] + longer
        orphan = self.spawn(orphan_cmd, self.session("long"), dead)

        def start_of(words):  # the words of the first `cap` bytes of a command line
            raw = b"".join(x.encode() + b"\0" for x in words)[:cap].rstrip(b"\0")
            return [x.decode() for x in raw.split(b"\0")]

        j = self.ps_json()
        w, argv = wraps["longer"]
        i = self.instance(j, w.pid)
        self.assertEqual((i["argv"], i["argv_cut"]), (argv, False))
        self.assertEqual(i["command"], argv[2:])
        self.assertIs(i["client"]["argv_cut"], False)
        [s] = i["sessions"]
        self.assertEqual((s["command"], s["command_cut"]), (argv[2:], False))
        w, argv = wraps["longest"]
        i = self.instance(j, w.pid)
        self.assertEqual((i["argv"], i["argv_cut"]), (start_of(argv), True))
        self.assertEqual(i["command"], start_of(argv)[2:])
        [s] = i["sessions"]
        self.assertEqual((s["command"], s["command_cut"]), (start_of(argv[2:]), True))
        self.assertNotEqual(s["command"], argv[2:])
        self.assertEqual([(o["pid"], o["command"], o["command_cut"])
                          for o in self.ours(j["orphans"])], [(orphan.pid, orphan_cmd, False)])
        w, argv = wraps["exact"]
        self.assertEqual(sum(len(x.encode()) + 1 for x in argv), cap + 1)
        i = self.instance(j, w.pid)
        self.assertEqual((i["argv"], i["argv_cut"]), (argv, False))
        w, argv = wraps["over"]
        i = self.instance(j, w.pid)
        self.assertEqual((i["argv"], i["argv_cut"]), (start_of(argv), True))
        self.assertEqual(len(i["argv"][-1]), len(argv[-1]) - 1)  # its last byte and NUL go

    def test_without_a_runtime_directory_the_status_file_is_under_tmp(self):
        """No XDG_RUNTIME_DIR: the status file is /tmp/mcpmux-UID/instances/PID, held
        locked while the instance runs, read by ps from there, and removed at exit."""
        del self.env["XDG_RUNTIME_DIR"]
        w = self.wrap()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        path = "/tmp/mcpmux-%d/instances/%d" % (os.getuid(), w.pid)
        self.assertTrue(os.path.exists(path), path)
        fd = os.open(path, os.O_RDONLY)
        try:
            with self.assertRaises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        s, _, _ = self.only_session(w.pid)
        self.assertEqual((s["state"], s["suspends"]), ("running", 0))
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertFalse(os.path.exists(path))

    def test_a_killed_instances_file_goes_with_its_keeper_and_sweep_takes_stale_ones(self):
        w = self.wrap()
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        server = self.server_of(w.pid)
        self.assertTrue(os.path.exists(self.status_file(w.pid)))
        w.p.kill()
        w.p.wait()
        wait_until(lambda: not alive(server) and not self.tagged(), 10,
                   "the keeper to end the server, and to be gone")
        self.assertFalse(os.path.exists(self.status_file(w.pid)))
        # A file whose keeper did not remove it (killed too): ps ignores it, sweep takes it.
        dead = subprocess.Popen(["true"])
        dead.wait()
        with open(self.status_file(dead.pid), "w") as f:
            f.write('{"mcpmux":%d,"mode":"wrap"}\n' % dead.pid)
        os.chmod(self.status_file(dead.pid), 0o600)
        self.assertNotIn(dead.pid, [i["pid"] for i in self.ps_json()["instances"]])
        self.assertTrue(os.path.exists(self.status_file(dead.pid)))
        rc, out, err = self.mcpmux("sweep", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(self.status_file(dead.pid)))
        # a clean exit removes its own
        w2 = self.wrap()
        w2.send(initialize(1))
        self.assertEqual(w2.msg()["id"], 1)
        self.assertTrue(os.path.exists(self.status_file(w2.pid)))
        w2.close_stdin()
        w2.wait()
        self.assertFalse(os.path.exists(self.status_file(w2.pid)))


class EngineCommands(PsCase):
    """The engines' commands of ps and sweep, with docker's stand-in (bin/docker)."""

    def engines_on_path(self, podman="echo '[]'"):
        """docker's stand-in first on PATH, and a podman with no container (or one that
        runs the shell command podman): never the host's, whose listing may fail."""
        bindir = os.path.join(self.tmp.name, "bin")
        if not os.path.isdir(bindir):
            os.mkdir(bindir)
            with open(os.path.join(bindir, "podman"), "w") as f:
                f.write("#!/bin/sh\n%s\n" % podman)
            os.chmod(os.path.join(bindir, "podman"), 0o755)
            here = os.path.dirname(os.path.abspath(__file__))
            self.env["PATH"] = (bindir + ":" + os.path.join(here, "bin") + ":" +
                                self.env["PATH"])
        self.env["FAKE_DOCKER_LOG"] = os.path.join(self.tmp.name, "docker.log")

    def hang_the_listing(self):
        """The engines on PATH, docker's listing never answering."""
        self.engines_on_path()
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()  # stays: the listing never answers
        self.env["FAKE_DOCKER_SLOW_LS"] = slow
        self.env["FAKE_DOCKER_WARN"] = "2"  # what it said before it hung is not its error

    def test_a_hung_listing_is_killed_with_what_it_started(self):
        """An engine command that does not answer in 30 s is killed with its process group:
        what it waits for (podman its runtime; the stand-in a child of its own) does not
        outlive it, and ps goes on without that engine's containers."""
        self.hang_the_listing()
        t0 = time.monotonic()
        rc, out, err = self.mcpmux("ps", "--json")
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertGreater(took, 29.5, "ps did not wait for the listing")
        self.assertLess(took, 40 * SLOW)
        self.assertIn("cannot list the containers of docker: no answer within the time limit",
                      err)
        self.assertEqual(json.loads(out)["containers"], [])
        self.assert_no_leftovers(what="the listing and what it started")

    def test_sweep_gives_up_on_a_hung_listing(self):
        """sweep's listing is bounded as ps's is: the engine that does not answer in 30 s is
        killed with what it started and said, and sweep still ends the orphan processes."""
        self.hang_the_listing()
        p = self.spawn(["sleep", "1000"], self.session("hung"), self.dead_owner())
        t0 = time.monotonic()
        rc, out, err = self.mcpmux("sweep", "--session", self.session("hung"))
        took = time.monotonic() - t0
        self.assertGreater(took, 29.5, "sweep did not wait for the listing")
        self.assertLess(took, 40 * SLOW)
        self.assertRegex(out, r"(?m)^\s*%d\s.*\sterm\s" % p.pid)
        self.assertEqual(p.wait(), -signal.SIGTERM)
        # its orphan containers, if any, were not ended: not a success, said once
        self.assertEqual(rc, 1, err)
        self.assertIn("the containers of docker could not be listed: its orphans, if any, are "
                      "not ended (no answer within the time limit", err)
        self.assertEqual(err.count("containers of docker"), 1, err)
        self.assert_no_leftovers(what="the listing and what it started")

    def failing_listing(self, text):
        """The engines on PATH, docker's listing failing with text on stderr."""
        self.engines_on_path()
        self.env["FAKE_DOCKER_LS_FAIL"] = text
        self.env["FAKE_DOCKER_WARN"] = "2"  # warnings first: the error is the last line

    def test_sweep_fails_when_an_engine_that_is_there_cannot_list(self):
        """An engine whose daemon listens but whose listing fails may hold orphans that
        sweep could not see: sweep ends the rest, says so and exits 1; ps says it and
        exits 0, as for an owner it cannot read."""
        sock = os.path.join(self.tmp.name, "docker.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(sock)
        listener.listen(1)
        self.failing_listing("permission denied while trying to connect to the Docker daemon "
                             "socket at unix://%s: connect: permission denied" % sock)
        p = self.spawn(["sleep", "1000"], self.session("denied"), self.dead_owner())
        rc, out, err = self.mcpmux("sweep", "--session", self.session("denied"))
        self.assertEqual(rc, 1, err)
        self.assertRegex(out, r"(?m)^\s*%d\s.*\sterm\s" % p.pid)
        self.assertEqual(p.wait(), -signal.SIGTERM)
        self.assertIn("the containers of docker could not be listed: its orphans, if any, are "
                      "not ended (permission denied", err)
        self.assertEqual(err.count("containers of docker"), 1, err)
        for quiet in ("-q", "--quiet"):  # a failure, not a note: said all the same
            rc, out, err = self.mcpmux("sweep", quiet, "--dry-run")
            self.assertEqual(rc, 1, err)
            self.assertIn("the containers of docker could not be listed", err)
            self.assertEqual(err.count("containers of docker"), 1, err)
        rc, out, err = self.mcpmux("ps", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot list the containers of docker: permission denied", err)
        self.assertEqual(err.count("containers of docker"), 1, err)
        docker = [e for e in json.loads(out)["engines"] if e["engine"] == "docker"]
        self.assertEqual([e["listed"] for e in docker], [False])
        # -q, or --quiet: no note about the engine, the listing the same
        for quiet in ("-q", "--quiet"):
            rc, out, err = self.mcpmux("ps", "--json", quiet)
            self.assertEqual((rc, err), (0, ""), quiet)
            docker = [e for e in json.loads(out)["engines"] if e["engine"] == "docker"]
            self.assertEqual([e["listed"] for e in docker], [False], quiet)

    def test_each_engine_that_cannot_list_is_said(self):
        """Both engines fail to list, in the same second: each is said, by ps and by sweep,
        the second not taken for a repeat of the first and left out."""
        self.engines_on_path("echo 'Error: podman cannot list' >&2; exit 125")
        self.failing_listing("docker cannot list")
        rc, out, err = self.mcpmux("ps", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot list the containers of podman: Error: podman cannot list", err)
        self.assertIn("cannot list the containers of docker: docker cannot list", err)
        rc, out, err = self.mcpmux("sweep", "--dry-run")
        self.assertEqual(rc, 1, err)
        for engine, why in (("podman", "Error: podman"), ("docker", "docker")):
            self.assertIn("the containers of %s could not be listed: its orphans, if any, are "
                          "not ended (%s cannot list)" % (engine, why), err)

    def test_a_warning_that_names_a_missing_socket_is_not_a_daemon_gone(self):
        """podman without a user session warns of its bus socket, missing ("dial unix
        /run/user/UID/bus: ... no such file or directory"), before the error of a listing
        that failed for another reason: the engine is not taken for one without its
        daemon (which has no container, and is not said): ps says its error, and sweep
        fails, its orphans unknown."""
        bus = os.path.join(self.tmp.name, "no-such-dir", "bus")
        self.engines_on_path(
            "echo 'WARN[0000] Failed to add pause process to systemd sandbox cgroup: dial "
            "unix %s: connect: no such file or directory' >&2; echo 'Error: database "
            "configuration mismatch' >&2; exit 125" % bus)
        rc, out, err = self.mcpmux("ps")
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot list the containers of podman: Error: database configuration "
                      "mismatch", err)
        rc, out, err = self.mcpmux("sweep", "--dry-run")
        self.assertEqual(rc, 1, err)
        self.assertIn("the containers of podman could not be listed", err)

    def test_a_listing_that_warns_past_what_is_kept_says_its_error(self):
        """An engine whose listing warns more than the 16 MiB of its stderr that is kept
        before it fails: what is said is its error, its last line, not a warning."""
        self.engines_on_path("yes 'WARN[0000] a warning of the engine' | head -c 17000000 "
                             ">&2; echo >&2; echo 'Error: podman cannot list' >&2; exit 125")
        self.failing_listing("docker cannot list")
        rc, out, err = self.mcpmux("ps", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot list the containers of podman: Error: podman cannot list", err)
        self.assertNotIn("WARN[0000]", err)

    def test_an_engine_without_its_daemon_is_not_a_failure(self):
        """A docker CLI whose daemon is not there (its socket is missing, or nothing
        listens on it: Docker stopped) has no container to list: nothing said, at every
        ps or sweep, and sweep still exits 0; ps --json keeps the engine's error."""
        stale = os.path.join(self.tmp.name, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()  # the file stays, with no one listening: a daemon that died
        for sock in (os.path.join(self.tmp.name, "none.sock"), stale):
            self.failing_listing("Cannot connect to the Docker daemon at unix://%s. Is the "
                                 "docker daemon running?" % sock)
            p = self.spawn(["sleep", "1000"], self.session("nodaemon"), self.dead_owner())
            rc, out, err = self.mcpmux("sweep", "--session", self.session("nodaemon"))
            self.assertEqual(rc, 0, err)
            self.assertEqual(p.wait(), -signal.SIGTERM)
            self.assertNotIn("containers of docker", err)
            rc, out, err = self.mcpmux("ps")
            self.assertEqual((rc, err), (0, ""))
            rc, out, err = self.mcpmux("ps", "--json")
            self.assertEqual((rc, err), (0, ""))
            docker = [e for e in json.loads(out)["engines"] if e["engine"] == "docker"]
            self.assertEqual(len(docker), 1, out)
            self.assertFalse(docker[0]["listed"], out)
            self.assertIn("Cannot connect to the Docker daemon", docker[0]["error"])

    def test_an_engine_without_its_daemon_over_tcp_is_not_a_failure(self):
        """A docker context over tcp:// whose daemon is not there (a connect to its
        endpoint is refused, as sweep sees for itself) has no container to list: nothing
        said, and sweep still exits 0.  An endpoint where something listens is not taken for
        one without a daemon: sweep exits 1."""
        free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()  # nothing listens there now
        for endpoint in ("tcp://127.0.0.1:%d" % port, "tcp://localhost:%d" % port):
            self.failing_listing("Cannot connect to the Docker daemon at %s. Is the docker "
                                 "daemon running?" % endpoint)
            p = self.spawn(["sleep", "1000"], self.session("tcp"), self.dead_owner())
            rc, out, err = self.mcpmux("sweep", "--session", self.session("tcp"))
            self.assertEqual(rc, 0, err)
            self.assertEqual(p.wait(), -signal.SIGTERM)
            self.assertNotIn("containers of docker", err)
            rc, out, err = self.mcpmux("ps")
            self.assertEqual((rc, err), (0, ""))
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.failing_listing("Cannot connect to the Docker daemon at tcp://127.0.0.1:%d. Is "
                             "the docker daemon running?" % listener.getsockname()[1])
        rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", self.session("tcp"))
        self.assertEqual(rc, 1, err)
        self.assertIn("the containers of docker could not be listed", err)

    def test_a_context_over_ssh_whose_daemon_cannot_be_reached_is_a_failure(self):
        """Over ssh:// a docker CLI names no endpoint when the far end cannot reach its
        daemon, only the host of its requests, and says the same whether that daemon is
        not there or is there and refuses the remote user: nothing that can be checked
        from here, so that engine's containers are unknown and sweep exits 1."""
        for host in ("docker.example.com", "api.moby.localhost"):
            self.failing_listing("Cannot connect to the Docker daemon at http://%s. Is the "
                                 "docker daemon running?" % host)
            rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", self.session("ssh"))
            self.assertEqual(rc, 1, err)
            self.assertIn("the containers of docker could not be listed: its orphans, if "
                          "any, are not ended (Cannot connect to the Docker daemon at "
                          "http://%s" % host, err)


PODMAN = podman_env.unavailable()


@unittest.skipIf(PODMAN is not None, PODMAN or "")
class Containers(podman_env.PodmanCase, PsCase):
    """A container labelled mcpmux.owner whose owner is gone, and one whose owner lives."""

    FIXTURE = FIXTURE

    def detached(self, session, owner):
        """A container that stays up after stdin EOF (the fixture's --ignore-eof)."""
        out = self.pod.podman("run", "-d", "--label", self.pod.label(), "--label",
                              "mcpmux.owner=" + owner, "--label", "mcpmux.session=" + session,
                              self.pod.image, "/mcp-fixture", "--ignore-eof").stdout
        return out.strip()

    def test_orphaned_container_listed_and_swept(self):
        owner = self.spawn(["sleep", "1000"])
        live_owner = "%d:%d" % (owner.pid, start_ticks(owner.pid))
        orphan = self.detached(self.session("c-orphan"), self.dead_owner())
        owned = self.detached(self.session("c-owned"), live_owner)

        j = self.ps_json("--session", self.tag + "-*")
        by_id = {c["id"]: c for c in j["containers"]}
        self.assertEqual(set(by_id), {orphan, owned})
        self.assertEqual(by_id[orphan]["owner_state"], "orphan")
        self.assertEqual(by_id[owned]["owner_state"], "owned")
        self.assertEqual(by_id[orphan]["engine"], "podman")
        self.assertEqual(by_id[orphan]["state"], "running")
        self.assertEqual(by_id[orphan]["session"], self.session("c-orphan"))

        rc, out, err = self.mcpmux("sweep", "--dry-run", "--session", self.tag + "-*")
        self.assertEqual(rc, 0, err)
        self.assertIn(orphan[:12], out)
        self.assertNotIn(owned[:12], out)
        self.assertEqual(len(self.pod.containers("status=running")), 2)

        # PID 1 of a container ignores SIGTERM by default: the ladder goes on to KILL and rm.
        rc, out, err = self.mcpmux("sweep", "--term-grace", "500", "--session",
                                   self.tag + "-*")
        self.assertEqual(rc, 0, (out, err))
        self.assertRegex(out, r"(?m)^podman\s+%s\s.*\skill\s" % orphan[:12])
        self.assertEqual(self.pod.containers(), [owned])


if __name__ == "__main__":
    main()
