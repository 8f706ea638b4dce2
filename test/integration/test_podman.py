"""
A real container: the fixture server in podman (podman_env.py), answering over stdio.

Skipped, with the reason, where podman or runc is missing or the tests do not run as
root.  Prints how long a `podman run` takes to answer initialize (ctest -V shows it).
"""

import json
import statistics
import subprocess
import time
import unittest

import podman_env
import os
import shutil
import signal

from mcptest import Case, FIXTURE, MCPMUX, call, initialize, main, note, req, \
    wait_until

REASON = podman_env.unavailable()


@unittest.skipIf(REASON is not None, REASON or "")
class Podman(podman_env.PodmanCase, Case):
    FIXTURE = FIXTURE

    def tearDown(self):
        try:
            ids = self.remove_leftovers()
        finally:
            super().tearDown()
        self.assertEqual(ids, [], "containers left behind by the test")

    def run_fixture(self, *args):
        """Start `podman run -i --rm ... IMAGE /mcp-fixture`; seconds to the initialize answer."""
        t0 = time.monotonic()
        p = self.start(self.pod.run_argv(*args) + [self.pod.image, "/mcp-fixture"])
        p.send(initialize(1))
        m = p.msg(seconds=60)
        elapsed = time.monotonic() - t0
        self.assertEqual(m.get("id"), 1, m)
        self.assertEqual(m["result"]["serverInfo"]["name"], "mcp-fixture", m)
        return p, elapsed

    def test_initialize_over_stdio_and_gone_after_eof(self):
        p, elapsed = self.run_fixture()
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        p.close_stdin()
        self.assertEqual(p.wait(seconds=60), 0)
        # --rm: the container is removed before `podman run` exits.
        self.assertEqual(self.pod.containers(), [])
        print("\npodman run -> initialize answered in %.0f ms" % (elapsed * 1000))

    def test_startup_time(self):
        """Five runs one after the other: the median time to the initialize answer."""
        times = []
        for _ in range(5):
            p, elapsed = self.run_fixture()
            times.append(elapsed * 1000)
            p.close_stdin()
            self.assertEqual(p.wait(seconds=60), 0)
        wait_until(lambda: self.pod.containers() == [], 10, "the containers to be removed")
        print("\npodman run -> initialize: median %.0f ms, min %.0f ms, max %.0f ms (%s)" %
              (statistics.median(times), min(times), max(times),
               " ".join("%.0f" % t for t in times)))

    def test_labels_are_visible_to_a_label_filter(self):
        p, _ = self.run_fixture("--label", "mcpmux.owner=1:2", "--label", "mcpmux.session=s")
        out = self.pod.podman("ps", "-a", "--filter", "label=mcpmux.owner",
                              "--format", "{{.Labels}}").stdout
        self.assertIn("mcpmux.session:s", out)
        p.close_stdin()
        self.assertEqual(p.wait(seconds=60), 0)
        wait_until(lambda: self.pod.containers() == [], 10, "the container to be removed")


@unittest.skipIf(REASON is not None, REASON or "")
class PodmanTeardown(Podman):
    """mcpmux's ladder reaches the container: a server that ignores EOF and SIGTERM in a
    real container is gone when the end-of-run result comes, and gone after a SIGKILL
    of mcpmux too."""

    STUBBORN = ["/mcp-fixture", "--ignore-sigterm", "--ignore-eof"]
    GRACES = ["-v", "--eof-grace", "500", "--term-grace", "500"]

    test_initialize_over_stdio_and_gone_after_eof = None
    test_startup_time = None
    test_labels_are_visible_to_a_label_filter = None

    def pids_of_container(self, cid):
        """Processes of a container: its monitor (the id on its command line) and those in
        its cgroups (the id in their cgroup paths)."""
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/cgroup" % d, "rb") as f:
                    cg = f.read()
                with open("/proc/%s/stat" % d, "rb") as f:
                    st = f.read()
            except OSError:
                continue
            if st[st.rindex(b")") + 2:st.rindex(b")") + 3] in b"ZX":
                continue
            if cid.encode() in cmd or cid.encode() in cg:
                found.append(int(d))
        return found

    def wrapped(self, mode=()):
        argv = ([MCPMUX] + list(mode) + self.GRACES + ["--"] + self.pod.run_argv() +
                [self.pod.image] + self.STUBBORN)
        return self.start(argv)

    def test_end_of_run_ends_the_container(self):
        p = self.wrapped()
        p.send(initialize(1), call(2, "env"))
        self.assertEqual(p.msg(60)["id"], 1)
        session = p.msg(60)["result"]["structuredContent"]["session"]
        labels = self.pod.podman("ps", "-a", "--filter", "label=" + self.pod.label(),
                                 "--format", "{{.Labels}}").stdout
        with open("/proc/%d/stat" % p.pid) as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        self.assertIn("mcpmux.owner:%d:%s" % (p.pid, start), labels)
        self.assertIn("mcpmux.session:%s" % session, labels)
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        cid = self.pod.containers()[0]
        self.assertTrue(self.pids_of_container(cid))
        t0 = time.monotonic()
        p.send(req(3, "mcpmux/endRun"))
        r = p.msg(60)["result"]
        took = time.monotonic() - t0
        self.assertEqual(r["escalation"], "kill", (r, p.stderr()))
        self.assertEqual(self.pod.containers(), [], "the result came before the container went")
        wait_until(lambda: not self.pids_of_container(cid), 5, "the container's processes")
        p.close_stdin()
        self.assertIn(p.wait(60), (137, 143))  # podman's own status, killed or TERMed
        print("\nend of run of a stubborn container: %.0f ms" % (took * 1000))

    def test_sigkill_to_mcpmux_ends_the_container(self):
        p = self.wrapped()
        p.send(initialize(1))
        self.assertEqual(p.msg(60)["id"], 1)
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        cid = self.pod.containers()[0]
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            wait_until(lambda: self.pod.containers() == [], 30,
                       "the keeper to remove the container")
        except AssertionError:
            print(p.stderr())
            raise
        wait_until(lambda: not self.pids_of_container(cid), 5, "the container's processes")
        print("\ncontainer gone %.0f ms after SIGKILL of mcpmux" % ((time.monotonic() - t0) * 1000))
        wait_until(lambda: not self.tagged(), 10, "the keeper to exit")

    def test_sigkill_to_mcpmux_with_a_long_launcher_prefix(self):
        """The engine's words before `run` (here an env launcher over 1 KiB long, whose last
        word points podman at the test's storage) reach the keeper whole."""
        big = "BIGVAR=" + "x" * 1500
        conf = ["%s=%s" % (k, v) for k, v in self.pod.env.items() if k.startswith("CONTAINERS_")]
        for k in conf:
            del self.env[k.split("=", 1)[0]]
        argv = ([MCPMUX] + self.GRACES + ["--", "env", big] + conf + self.pod.run_argv() +
                [self.pod.image] + self.STUBBORN)
        p = self.start(argv)
        p.send(initialize(1))
        self.assertEqual(p.msg(60)["id"], 1)
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: self.pod.containers() == [], 40,
                   "the keeper to remove the container", explain=lambda: p.stderr())
        wait_until(lambda: not self.tagged(), 15, "the keeper to exit")
        self.assertIn("keeper: removed container", p.stderr())

    def podman_shim(self, first):
        """podman in front of the real one on PATH for mcpmux and its keeper: a shell script
        that runs the lines first, then the real podman."""
        shim = os.path.join(self.tmp.name, "bin")
        os.mkdir(shim)
        with open(os.path.join(shim, "podman"), "w") as f:
            f.write('#!/bin/sh\n' + first + 'exec "%s" "$@"\n' % shutil.which("podman"))
        os.chmod(os.path.join(shim, "podman"), 0o755)
        self.env["PATH"] = shim + ":" + self.env["PATH"]

    def test_container_abandoned_at_a_normal_exit_is_ended_by_the_keeper(self):
        """The engine's `container kill` takes longer than --kill-deadline: mcpmux abandons
        the run with its container and exits normally; the keeper ends the container."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.podman_shim('if [ "$1" = container ] && [ "$2" = kill ] && [ -e "%s" ]; then\n'
                         '    sleep 8\n'
                         'fi\n' % slow)
        p = self.start([MCPMUX, "--kill-deadline", "2000"] + self.GRACES + ["--"] +
                       self.pod.run_argv() + [self.pod.image] + self.STUBBORN)
        p.send(initialize(1))
        self.assertEqual(p.msg(60)["id"], 1)
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        p.close_stdin()
        p.wait(30)
        self.assertIn("abandoned", p.stderr())
        self.assertEqual(len(self.pod.containers()), 1, "the container went with mcpmux")
        os.unlink(slow)  # the engine answers at once from now on
        wait_until(lambda: self.pod.containers() == [], 40,
                   "the keeper to remove the container", explain=lambda: p.stderr())
        wait_until(lambda: not self.tagged(), 15, "the keeper to exit")
        self.assertIn("keeper: removed container", p.stderr())

    def test_a_container_without_its_storage_is_ended_by_the_keeper(self):
        """A `podman run --rm` killed while it removed its container leaves the container in
        podman's records without its storage, which podman's inspect then cannot read
        ("getting container from store ...: container not known"): the keeper finds it
        its mcpmux's by a listing, and removes it (rm -f can)."""
        hold = os.path.join(self.tmp.name, "hold")
        held = os.path.join(self.tmp.name, "held")
        # The keeper's first inspect waits (20 s at most) until the test lets it go.
        self.podman_shim('if [ "$2" = inspect ] && [ -e "%s" ]; then\n'
                         '    : > "%s"\n'
                         '    i=0; while [ -e "%s" ] && [ $i -lt 200 ]; do sleep 0.1; '
                         'i=$((i+1)); done\n'
                         'fi\n' % (hold, held, hold))
        p = self.wrapped()
        p.send(initialize(1))
        self.assertEqual(p.msg(60)["id"], 1)
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        cid = self.pod.containers()[0]
        open(hold, "w").close()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        wait_until(lambda: os.path.exists(held), 30, "the keeper to ask whose the container is",
                   explain=lambda: p.stderr())
        # What the killed `podman run --rm` leaves: the container's storage gone, its
        # record not.
        store = os.path.join(self.pod.dir, "storage", "vfs-containers", "containers.json")
        with open(store) as f:
            stored = json.load(f)
        with open(store, "w") as f:
            json.dump([c for c in stored if c["id"] != cid], f)
        r = self.pod.podman("inspect", cid, check=False)
        self.assertIn("container not known", r.stderr)
        os.unlink(hold)
        wait_until(lambda: self.pod.containers() == [], 40,
                   "the keeper to remove the container", explain=lambda: p.stderr())
        wait_until(lambda: not self.tagged(), 15, "the keeper to exit")
        self.assertIn("keeper: removed container %s" % cid[:12], p.stderr())

    def test_serve_session_in_a_container(self):
        p = self.wrapped(mode=["serve"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg(60)["event"], "started")
        self.assertEqual(p.msg(60)["message"]["id"], 1)
        p.send({"session": "c1", "message": note("mcpmux/endRun")})
        ev = p.msg(60)
        self.assertEqual((ev["event"], ev["escalation"]), ("ended", "kill"))
        self.assertEqual(self.pod.containers(), [])
        p.close_stdin()
        self.assertEqual(p.wait(60), 0)

    def test_a_live_container_of_an_mcpmux_in_a_pid_namespace_is_not_swept(self):
        """The owner label's pid is the container's mcpmux's, in its own pid namespace
        (mcpmux.pidns): found there, the container is owned, and sweep leaves it alone."""
        session = self.tag[:12] + "-pidns"
        p = self.start(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", MCPMUX,
                        "serve"] + self.GRACES + ["--"] + self.pod.run_argv() +
                       [self.pod.image, "/mcp-fixture"])
        p.send({"session": session, "message": initialize(1)})
        self.assertEqual(p.msg(60)["event"], "started")
        self.assertEqual(p.msg(60)["message"]["id"], 1)
        labels = self.pod.podman("ps", "-a", "--filter", "label=" + self.pod.label(),
                                 "--format", "{{.Labels}}").stdout
        self.assertIn("mcpmux.owner:1:", labels, "its owner is pid 1 in there")
        self.assertIn("mcpmux.pidns:", labels)
        ps = json.loads(subprocess.run([MCPMUX, "ps", "--json", "--session", session],
                                       capture_output=True, env=self.env, check=True).stdout)
        owners = [c["owner_state"] for c in ps.get("containers", [])
                  if c.get("session") == session]
        self.assertEqual(owners, ["owned"], ps)
        r = subprocess.run([MCPMUX, "sweep", "--session", session], capture_output=True,
                           env=self.env, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.pod.containers("status=running")), 1, "swept a live one")
        p.send({"session": session, "message": req(2, "ping")})
        self.assertEqual(p.msg(60)["message"]["id"], 2)
        p.close_stdin()
        self.assertEqual(p.wait(60), 0)
        self.assertEqual(self.pod.containers(), [])

    def test_sweep_ends_a_container_whose_mcpmux_and_keeper_were_killed(self):
        """mcpmux and its keeper killed together leave the container and mcpmux's id file
        of it: sweep finds the container by its labels, ends it, and removes that file."""
        p = self.wrapped()
        p.send(initialize(1))
        self.assertEqual(p.msg(60)["id"], 1)
        cid = self.pod.containers("status=running")
        self.assertEqual(len(cid), 1)
        cid = cid[0]
        cid_dir = os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "cid")
        files = sorted(os.listdir(cid_dir))  # the id file, and the record of its engine
        self.assertEqual([f.rsplit(".", 1)[1] for f in files], ["cid", "ctx"], files)
        with open(os.path.join(cid_dir, files[0])) as f:
            self.assertEqual(f.read().strip(), cid)
        self.kill_with_keeper(p)
        self.assertEqual(self.pod.containers("status=running"), [cid])
        self.assertEqual(sorted(os.listdir(cid_dir)), files)
        session = self.pod.podman("container", "inspect", "--format",
                                  '{{index .Config.Labels "mcpmux.session"}}', cid).stdout.strip()
        r = subprocess.run([MCPMUX, "sweep", "-q", "--session", session], capture_output=True,
                           env=self.env, text=True, timeout=120)
        self.assertIn(cid[:12], r.stdout, r.stderr)
        self.assertEqual(self.pod.containers(), [])
        self.assertEqual(os.listdir(cid_dir), [],
                         "mcpmux's id file of the swept container, and its record")

    def test_sweep_says_rm_of_a_stopped_container_it_removed(self):
        """An orphan container that is not running is only removed: its escalation is
        `rm`, not `gone` (which says it went before sweep did anything)."""
        dead = subprocess.Popen(["true"])
        dead.wait()  # a pid that is no process now: the owner is gone
        session = "sweep-rm-" + self.tag[:12]
        self.pod.podman("run", "--label", self.pod.label(),
                        "--label", "mcpmux.owner=%d:1" % dead.pid,
                        "--label", "mcpmux.session=" + session, self.pod.image,
                        "/mcp-fixture", timeout=60)  # no -i: EOF, the server exits at once
        cid = self.pod.containers("status=exited")
        self.assertEqual(len(cid), 1, self.pod.containers())
        r = subprocess.run([MCPMUX, "sweep", "-q", "--session", session], capture_output=True,
                           env=self.env, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [line.split() for line in r.stdout.splitlines() if cid[0][:12] in line]
        self.assertEqual(len(rows), 1, r.stdout)
        self.assertEqual(rows[0][4], "rm", r.stdout)
        self.assertEqual(self.pod.containers(), [])

    def test_sweep_says_gone_of_a_container_gone_before_its_first_kill(self):
        """An orphan container that is gone when sweep's first `kill` reaches it (here
        removed just before it by the shim) went before it was signalled: `gone`."""
        dead = subprocess.Popen(["true"])
        dead.wait()  # a pid that is no process now: the owner is gone
        session = "sweep-gone-" + self.tag[:12]
        cid = self.pod.podman("run", "-d", "--label", self.pod.label(),
                              "--label", "mcpmux.owner=%d:1" % dead.pid,
                              "--label", "mcpmux.session=" + session, self.pod.image,
                              "/mcp-fixture", "--ignore-eof", timeout=60).stdout.strip()
        self.podman_shim('if [ "$1" = container ] && [ "$2" = kill ] && [ "$4" = TERM ]; then\n'
                         '    "%s" rm -f -t 0 "$5" >/dev/null 2>&1\n'
                         'fi\n' % shutil.which("podman"))
        r = subprocess.run([MCPMUX, "sweep", "-q", "--session", session], capture_output=True,
                           env=self.env, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [line.split() for line in r.stdout.splitlines() if cid[:12] in line]
        self.assertEqual(len(rows), 1, r.stdout)
        self.assertEqual(rows[0][4], "gone", r.stdout)
        self.assertEqual(self.pod.containers(), [])

    def test_a_refused_run_leaves_the_container_of_its_name_alone(self):
        """Two sessions of one command with --name: the second run is refused (the name
        is taken), and its teardown must not take the first one's container for its own."""
        name = "mcpmux-test-" + self.tag[:12]
        argv = ([MCPMUX, "serve"] + self.GRACES + ["--"] + self.pod.run_argv("--name", name) +
                [self.pod.image, "/mcp-fixture"])
        p = self.start(argv)
        p.send({"session": "a", "message": initialize(1)})
        self.assertEqual(p.msg(60)["event"], "started")
        self.assertEqual(p.msg(60)["message"]["id"], 1)
        p.send({"session": "b", "message": initialize(1)})
        while True:  # b's run is refused: its session ends
            m = p.msg(60)
            if m.get("session") == "b" and m.get("event") == "ended":
                break
        self.assertEqual(len(self.pod.containers("status=running")), 1)
        p.send({"session": "a", "message": req(2, "ping")})
        m = p.msg(60)
        self.assertEqual((m.get("session"), m.get("message", {}).get("id")), ("a", 2), m)
        self.assertIn("is another run's", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(60), 0)
        self.assertEqual(self.pod.containers(), [])

    def test_an_existing_cidfile_is_never_taken_for_the_runs(self):
        """A --cidfile that is there already names another container: the engine refuses
        the run, and mcpmux (and its keeper) leave that container alone."""
        other = self.pod.podman("run", "-d", "--label", self.pod.label(), self.pod.image,
                                "/mcp-fixture", "--ignore-eof").stdout.strip()
        cidfile = os.path.join(self.tmp.name, "old.cid")
        with open(cidfile, "w") as f:
            f.write(other + "\n")
        p = self.start([MCPMUX] + self.GRACES + ["--"] +
                       self.pod.run_argv("--cidfile", cidfile) + [self.pod.image, "/mcp-fixture"])
        self.assertNotEqual(p.wait(60), 0)
        self.assertIn("exists already", p.stderr())
        self.assertEqual(self.pod.containers("status=running"), [other])
        self.pod.podman("rm", "-f", "-t", "0", other)


if __name__ == "__main__":
    main()
