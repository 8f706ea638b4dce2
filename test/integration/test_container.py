"""Container backends with docker's command line: a stand-in `docker` (bin/docker)
records what mcpmux asks of it, since docker's daemon cannot run here.  What podman
really does is in test_podman.py."""

import os
import signal
import subprocess
import time
import unittest

from mcptest import Case, FIXTURE, MCPMUX, SLOW, WRAPPER, alive, call, comm, initialize, keeper_of, \
    main, ppid_of, proc_state, req, wait_until

def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.environ.get("MCPMUX_FAULTSHIM") or os.path.join(
    os.path.dirname(os.path.abspath(MCPMUX)), "test", "fault", "faultshim.so")
GRACES = ["--eof-grace", "300", "--term-grace", "300"]
# The ladder of the fake's container, through the engine, when SIGTERM does not end it.
LADDER = [
    "container kill --signal TERM fake0123456789abcdef",
    "container kill --signal KILL fake0123456789abcdef",
    "container inspect --format {{.State.Status}} fake0123456789abcdef",
    "container rm -f fake0123456789abcdef",
]


class FakeDockerCase(Case):
    """The stand-in first on PATH, logging to a file of the test's."""

    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.tmp.name, "docker.log")
        self.env["PATH"] = os.path.join(HERE, "bin") + ":" + self.env["PATH"]
        self.env["FAKE_DOCKER_LOG"] = self.log
        self.env["FAKE_DOCKER_SERVER"] = os.path.abspath(FIXTURE)

    def calls(self):
        with open(self.log) as f:
            return [l.split() for l in f.read().splitlines()]

    def owner_of(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            return "%d:%s" % (pid, f.read().rsplit(")", 1)[1].split()[19])

    def keepers(self):
        """The keeper processes: not a keeper's engine command between its fork and its
        exec, which shows the keeper's command line (a child of a keeper).  A keeper that
        has not taken its name yet (slow to start, on a loaded machine: mcpmux does not
        wait for that, and may be gone before) still has mcpmux's: a process of that name
        is one while no mcpmux of the test runs."""
        running = {p.pid for p in self.procs if p.p.poll() is None}
        keepers = [q for q in self.tagged() if keeper_of(q) is not None or
                   (comm(q) == "mcpmux" and q not in running)]
        return [q for q in keepers if ppid_of(q) not in keepers]

    def wait_for_keeper(self, p, timeout=20):
        """Until mcpmux's keeper has done its work and gone."""
        wait_until(lambda: not self.keepers(), timeout, "the keeper to finish",
                   explain=lambda: p.stderr())

    def initialized_run(self, options=(), **env):
        """wrap (with more options) in front of the fake engine's container
        (FAKE_DOCKER_ARGS "" unless env says otherwise), its initialize answered."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        self.env.update(env)
        p = self.start([MCPMUX] + GRACES + list(options) + ["--", "docker", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        return p

    def creating_run(self, options=(), run=(), **env):
        """wrap (with more options, and run's before the image) in front of a container the
        fake engine is still making (its id file stays empty), once the engine has begun."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_CREATE=slow, FAKE_DOCKER_ARGS="")
        self.env.update(env)
        p = self.start([MCPMUX] + GRACES + list(options) + ["--", "docker", "run", "-i"] +
                       list(run) + ["img"])
        wait_until(lambda: os.path.exists(self.log + ".created"), 5,
                   "the engine to make the container")
        return p

    def ended(self, p, timeout=10):
        """serve's `ended` event, the lines before it skipped."""
        while True:
            m = p.msg(timeout)
            if m.get("event") == "ended":
                return m

    def exit_and_let_the_keeper_end_it(self, p, *files):
        """The engine answers again (files removed): mcpmux exits with 0 at its client's
        EOF, and the keeper ends what was left, leaving nothing."""
        for f in files:
            os.unlink(f)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.wait_for_keeper(p)
        self.assert_no_leftovers()

    def kill_and_wait_for_keeper(self, p, timeout=20):
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        self.wait_for_keeper(p, timeout)


class FakeDocker(FakeDockerCase):
    def test_run_gets_labels_and_a_cidfile_right_after_run(self):
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "--log-level", "error", "run", "-i",
                                            "--rm", "--label", "app=x", "img", "serve", "-d"])
        p.send(initialize(1), call(2, "env"))
        self.assertEqual(p.msg()["id"], 1)
        session = p.msg()["result"]["structuredContent"]["session"]
        run = self.calls()[0]
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        self.assertEqual(run[:3], ["--log-level", "error", "run"])
        pidns = os.readlink("/proc/%d/ns/pid" % p.pid)[len("pid:["):-1]
        self.assertEqual(run[3:11], ["--label", "mcpmux.owner=" + self.owner_of(p.pid),
                                     "--label", "mcpmux.session=" + session,
                                     "--label", "mcpmux.boot=" + boot,
                                     "--label", "mcpmux.pidns=" + pidns])
        self.assertEqual(run[11], "--label")
        self.assertRegex(run[12], "^mcpmux.run=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}"
                         "-[0-9a-f]{12}$")
        self.assertEqual(run[13], "--cidfile")
        cidfile = run[14]
        self.assertEqual(run[15:], ["-i", "--rm", "--label", "app=x", "img", "serve", "-d"])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        # the server exited on EOF; mcpmux asked whether the container is gone (it was not,
        # for this stand-in: it has no --rm of its own), removed it, and its id file
        # (the helpers reach the same engine the same way: the global options come along)
        verbs = [c[:4] for c in self.calls()[1:]]
        self.assertEqual(verbs, [["--log-level", "error", "container", "inspect"],
                                 ["--log-level", "error", "container", "rm"]])
        self.assertIn("fake0123456789abcdef", self.calls()[2])
        self.assertFalse(os.path.exists(cidfile))

    def stubborn_run_with_a_hung_kill(self, kill_deadline):
        """A serve session whose container ignores SIGTERM and EOF, ended, with the engine's
        `kill --signal TERM` hung (while the file slow exists): (slow, serve, a function
        that lists the hung command's processes), once that command runs."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env["FAKE_DOCKER_SLOW_KILL"] = slow
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        deadline_opt = [] if kill_deadline is None else ["--kill-deadline", str(kill_deadline)]
        p = self.start([MCPMUX, "serve"] + GRACES + deadline_opt +
                       ["--", "docker", "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        p.send({"session": "c1", "message": req(2, "mcpmux/endRun")})

        def term_command():
            return [q for q in self.tagged() if b"--signal\0TERM" in cmdline(q)]
        wait_until(term_command, 5, "the engine's kill --signal TERM")
        return slow, p, term_command

    def test_engine_commands_get_a_blocking_stderr(self):
        """The engine's commands (the run, and the teardown's inspect and rm) write to a
        blocking stderr, as when run by hand: a non-blocking one makes a shell's or a
        runtime's write fail with EAGAIN when the pipe is full."""
        flags = os.path.join(self.tmp.name, "flags")
        p = self.initialized_run(FAKE_DOCKER_FLAGS=flags)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        with open(flags) as f:
            seen = [int(l, 8) for l in f.read().split()]
        self.assertEqual(len(seen), 3, seen)  # run, container inspect, container rm
        self.assertEqual([x & os.O_NONBLOCK for x in seen], [0, 0, 0], seen)

    def test_stubborn_container_gets_the_whole_ladder(self):
        p = self.initialized_run(FAKE_DOCKER_ARGS="--ignore-sigterm --ignore-eof")
        p.send(req(2, "mcpmux/endRun"))
        r = p.msg(10)["result"]
        self.assertEqual(r["escalation"], "kill")
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertEqual(helpers, LADDER)
        p.close_stdin()
        self.assertEqual(p.wait(), 137)
        self.assert_no_leftovers()

    def test_a_users_cidfile_is_checked_by_labels_through_the_engines_warnings(self):
        """An id read from the command's own --cidfile (another run of the same command
        line may have written it) is acted on only once the container's labels say it is
        this run's, and the engine's warnings on the same stream do not hide the answer."""
        self.users_cidfile_ladder(300)  # over 16 KiB before the answer

    def test_an_engine_that_warns_more_than_a_pipe_holds_is_read_while_it_runs(self):
        """An engine command's output is read while it runs: one that warns more than a
        pipe holds before its answer is not blocked until the watchdog kills it (and the
        run abandoned at --kill-deadline, its container never killed)."""
        self.users_cidfile_ladder(2000)  # about 100 KiB on each command's stderr

    def users_cidfile_ladder(self, warnings):
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        self.env["FAKE_DOCKER_WARN"] = str(warnings)
        cidfile = os.path.join(self.tmp.name, "mine.cid")
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "--cidfile", cidfile,
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.send(req(2, "mcpmux/endRun"))
        self.assertEqual(p.msg(10)["result"]["escalation"], "kill")
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertTrue(helpers[0].startswith("container inspect --format mcpmux-whose|"),
                        helpers)
        self.assertEqual(helpers[1:], LADDER)
        self.assertNotIn("another run's", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 137)
        self.assert_no_leftovers()

    def test_an_engine_command_that_leaves_a_flood_behind_is_let_go(self):
        """Each engine command leaves a child of its own that writes to the command's
        stderr without end: once the command has exited, mcpmux reads a bounded amount of
        it, closes the pipe, and goes on with the ladder; the flood ends with the pipe."""
        p = self.initialized_run(FAKE_DOCKER_ARGS="--ignore-sigterm --ignore-eof",
                                 FAKE_DOCKER_FLOOD="1")
        p.send(req(2, "mcpmux/endRun"))
        self.assertEqual(p.msg(10)["result"]["escalation"], "kill")
        self.assertEqual([" ".join(c) for c in self.calls()[1:]], LADDER)
        wait_until(lambda: not [q for q in self.tagged() if cmdline(q).startswith(b"yes\0")],
                   5, "the floods to end with their pipes")
        p.close_stdin()
        self.assertEqual(p.wait(), 137)
        self.assert_no_leftovers()

    def test_a_container_found_anothers_is_asked_about_again_while_its_command_runs(self):
        """A container whose labels say it is another's while the run's engine command
        still runs is not given up yet (the other may give the name up and this run's
        take it): asked again, and once its labels are this run's, ended by the ladder."""
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        cidfile = os.path.join(self.tmp.name, "mine.cid")
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "--cidfile", cidfile,
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        with open(self.log + ".labels") as f:
            labels = f.read()
        with open(self.log + ".labels", "a") as f:
            f.write("mcpmux.owner=1:2\n")  # another mcpmux's, for now
        p.send(req(2, "mcpmux/endRun"))

        def whose():
            return [c for c in self.calls()[1:] if "mcpmux-whose|{{index" in c]
        wait_until(lambda: len(whose()) >= 2, 5, "the labels to be asked for again",
                   explain=lambda: p.stderr())
        with open(self.log + ".labels", "w") as f:
            f.write(labels)  # this run's again
        self.assertEqual(p.msg(10)["result"]["escalation"], "kill")
        helpers = [" ".join(c) for c in self.calls()[1:] if c not in whose()]
        self.assertEqual(helpers, LADDER)
        self.assertNotIn("another run's", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 137)
        self.assert_no_leftovers()

    def test_a_hung_engine_command_is_killed_with_what_it_started(self):
        """An engine command that does not answer in 30 s is killed with its process group:
        what it waits for (podman its runtime; the stand-in a child of its own) does not
        live on as mcpmux's orphan, and the ladder goes on."""
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(90000)
        wait_until(lambda: ["container", "kill", "--signal", "KILL", "fake0123456789abcdef"]
                   in self.calls(), 40, "the hung command to be killed, and the next one")
        self.assertEqual(term_command(), [], "what the killed command started lives on")
        os.unlink(slow)
        self.assertEqual(self.ended(p, 20)["escalation"], "kill")
        self.assertIn(["container", "rm", "-f", "fake0123456789abcdef"], self.calls())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_an_engine_command_hung_when_its_run_is_abandoned_is_killed(self):
        """A run abandoned at --kill-deadline while an engine command of its teardown hangs:
        the command is killed then, with what it started, not left running (no longer
        watched) until mcpmux exits."""
        # slow stays: kill --signal TERM never answers
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(1000)
        self.assertEqual(self.ended(p, 10)["escalation"], "abandoned")
        wait_until(lambda: not term_command(), 3, "the hung engine command to be killed",
                   explain=lambda: p.stderr())
        self.assertIsNone(p.p.poll(), "mcpmux exited")
        self.exit_and_let_the_keeper_end_it(p, slow)  # the keeper ends the container

    def test_an_abandoned_run_names_its_container_by_its_id(self):
        """The message of a run abandoned at --kill-deadline names the container it
        leaves (to the keeper, at mcpmux's exit): by its id."""
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(1000)
        self.assertEqual(self.ended(p, 10)["escalation"], "abandoned")
        # its processes, spared while the engine stops it, are killed by then: it alone
        self.assertIn("session c1: container fake0123456789abcdef was not seen gone within "
                      "1 s of SIGKILL (abandoned; ", p.stderr())
        self.exit_and_let_the_keeper_end_it(p, slow)

    def test_a_suspend_abandoned_for_its_container_names_the_container(self):
        """A suspend whose container is not seen gone at --kill-deadline (the engine's kill
        hangs; every process is gone): the session's line names the container, not "0 of
        its server's processes"."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_KILL=slow,
                        FAKE_DOCKER_ARGS="--ignore-sigterm --ignore-eof")
        p = self.start([MCPMUX, "serve", "--idle-suspend", "1"] + GRACES +
                       ["--kill-deadline", "1000", "--", "docker", "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        wait_until(lambda: "session c1: suspended" in p.stderr(), 15, "the suspend",
                   explain=p.stderr)
        self.assertIn("session c1: container fake0123456789abcdef was not seen gone",
                      p.stderr())
        self.assertIn("session c1: suspended, but its container fake0123456789abcdef was not "
                      "seen gone (the keeper ends it at mcpmux's exit)", p.stderr())
        self.assertNotIn("0 of its server's processes", p.stderr())
        self.exit_and_let_the_keeper_end_it(p, slow)

    def test_a_suspend_abandoned_for_its_container_keeps_its_pool_slot(self):
        """A suspend abandoned with its container not seen gone (the engine's kill hangs)
        keeps its pool slot taken: a pool of one gets no second server until its wait is
        over (--eof-grace + --term-grace + --kill-deadline + 1 s), and then one over the
        cap, said.  At mcpmux's exit the keeper ends the container, and the slot's file
        goes with it."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_KILL=slow, XDG_RUNTIME_DIR=self.tmp.name,
                        FAKE_DOCKER_ARGS="--ignore-sigterm --ignore-eof")
        p = self.start([MCPMUX, "serve", "--idle-suspend", "1", "--max-servers", "1"] +
                       GRACES + ["--kill-deadline", "1000", "--", "docker", "run", "-i",
                                 "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        wait_until(lambda: "session c1: suspended" in p.stderr(), 15, "the suspend",
                   explain=p.stderr)
        self.assertIn("session c1: suspended, but its container fake0123456789abcdef was not "
                      "seen gone", p.stderr())
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")

        def slot_files():
            return [f for d in os.listdir(pools) for f in os.listdir(os.path.join(pools, d))
                    if f.startswith("s.")]
        self.assertEqual(len(slot_files()), 1)  # c1's, kept
        t0 = time.monotonic()
        p.send({"session": "c2", "message": initialize(2)})
        while True:  # c1's "suspended" event first
            m = p.msg(15)
            if m.get("event") == "started":
                break
        self.assertEqual(m["session"], "c2")
        waited = time.monotonic() - t0
        print("a slot kept for an abandoned suspend: waited %.2f s" % waited)
        self.assertGreaterEqual(waited, 2.6)  # (300 + 300 + 1000) ms + 1 s
        self.assertIn("no server's slot came free in 2.6 s", p.stderr())
        self.assertEqual(p.msg()["message"]["id"], 2)
        self.assertEqual(len(slot_files()), 2)
        self.exit_and_let_the_keeper_end_it(p, slow)
        self.assertEqual(slot_files(), [])

    def test_a_run_end_abandoned_for_its_container_keeps_its_pool_slot(self):
        """The end of a run abandoned with its container not seen gone (the engine's kill
        hangs) keeps the session's pool slot taken, as an abandoned suspend does: a pool of
        one gets no second server until its wait is over, and then one over the cap, said.
        At mcpmux's exit the keeper ends the container, and the slot's file goes with it."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_KILL=slow, XDG_RUNTIME_DIR=self.tmp.name,
                        FAKE_DOCKER_ARGS="--ignore-sigterm --ignore-eof")
        p = self.start([MCPMUX, "serve", "--max-servers", "1"] + GRACES +
                       ["--kill-deadline", "1000", "--", "docker", "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        p.send({"session": "c1", "message": req(2, "mcpmux/endRun")})
        self.ended(p, 15)
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")

        def slot_files():
            return [f for d in os.listdir(pools) for f in os.listdir(os.path.join(pools, d))
                    if f.startswith(("s.", "a."))]
        self.assertEqual(len(slot_files()), 1)  # c1's, kept
        t0 = time.monotonic()
        p.send({"session": "c2", "message": initialize(3)})
        while True:
            m = p.msg(15)
            if m.get("event") == "started":
                break
        self.assertEqual(m["session"], "c2")
        waited = time.monotonic() - t0
        print("a slot kept for an abandoned end of run: waited %.2f s" % waited)
        self.assertGreaterEqual(waited, 2.6)  # (300 + 300 + 1000) ms + 1 s
        self.assertIn("no server's slot came free in 2.6 s", p.stderr())
        self.assertEqual(p.msg()["message"]["id"], 3)
        self.assertEqual(len(slot_files()), 2)
        self.exit_and_let_the_keeper_end_it(p, slow)
        self.assertEqual(slot_files(), [])

    def test_the_default_kill_deadline_is_5000_ms(self):
        """Without --kill-deadline, a tree (here a container whose engine does not answer)
        that SIGKILL has not emptied is given up on after 5000 ms (docs/mcpmux.1)."""
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(None)
        t0 = time.monotonic()  # the engine's TERM: SIGKILL and its deadline come after
        self.assertEqual(self.ended(p, 5 + 10)["escalation"], "abandoned")
        self.assertGreaterEqual(time.monotonic() - t0, 5.0)
        self.assertIn("session c1: container fake0123456789abcdef was not seen gone within "
                      "5 s of SIGKILL (abandoned; ", p.stderr())
        self.exit_and_let_the_keeper_end_it(p, slow)

    def test_an_abandoned_run_names_its_container_by_its_name(self):
        """...and by its --name while the engine has written no id for it (the engine
        still making it, and not answering about that name)."""
        slow = os.path.join(self.tmp.name, "slow")
        fail = os.path.join(self.tmp.name, "fail")
        open(slow, "w").close()
        open(fail, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_CREATE=slow, FAKE_DOCKER_INSPECT_FAIL=fail,
                        FAKE_DOCKER_ARGS="")
        p = self.start([MCPMUX, "serve"] + GRACES + ["--kill-deadline", "1000", "--",
                                                     "docker", "run", "-i", "--name",
                                                     "mcpmux-test-name", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        wait_until(lambda: os.path.exists(self.log + ".created"), 5,
                   "the engine to make the container")
        p.send({"session": "c1", "message": {"jsonrpc": "2.0", "method": "mcpmux/endRun"}})
        self.assertEqual(self.ended(p, 10)["escalation"], "abandoned")
        self.assertIn("session c1: container mcpmux-test-name was not seen gone within 1 s "
                      "of SIGKILL (abandoned; ", p.stderr())
        self.exit_and_let_the_keeper_end_it(p, fail, slow)

    def test_a_small_kill_deadline_is_not_over_before_the_spared_tree_gets_sigkill(self):
        """--kill-deadline 0 (50 ms): the run's processes, spared while the engine stops the
        container, get SIGKILL once it has; the run is not abandoned with them before that
        SIGKILL has had its time, nor said not to die of it."""
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        p = self.start([MCPMUX, "serve"] + GRACES + ["--kill-deadline", "0", "--", "docker",
                                                     "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        p.send({"session": "c1", "message": req(2, "mcpmux/endRun")})
        self.assertEqual(self.ended(p)["escalation"], "kill", p.stderr())
        self.assertNotIn("abandoned", p.stderr())
        self.assertEqual([" ".join(c) for c in self.calls()[1:]], LADDER)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.wait_for_keeper(p)
        self.assertNotIn("keeper:", p.stderr())
        self.assert_no_leftovers()

    def test_a_small_kill_deadline_gives_the_engine_its_second(self):
        """--kill-deadline 50 with an engine whose kill hangs: the run's processes are
        spared for the second the engine is given to stop the container, then killed by
        mcpmux; the run is abandoned for the container alone, not with processes that
        never got SIGKILL, left running."""
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(50)
        server = [q for q in self.tagged() if cmdline(q).startswith(
            os.path.abspath(FIXTURE).encode() + b"\0")]
        self.assertEqual(len(server), 1, server)
        self.assertEqual(self.ended(p, 10)["escalation"], "abandoned")
        self.assertFalse(alive(server[0]), "the server lives on after its run's end")
        err = p.stderr()
        self.assertIn("session c1: container fake0123456789abcdef was not seen gone within "
                      "0.05 s of SIGKILL (abandoned; ", err)
        self.assertNotIn("would not die", err)
        self.exit_and_let_the_keeper_end_it(p, slow)

    def test_an_engine_command_without_a_process_group_of_its_own_is_killed(self):
        """An engine command that has left the process group mcpmux started it in (it has
        none of its own: killing the group finds no one) is still killed, by its pid, when
        its run is abandoned."""
        self.env["FAKE_DOCKER_NO_GROUP"] = "1"
        slow, p, term_command = self.stubborn_run_with_a_hung_kill(1000)
        wait_until(lambda: len(term_command()) >= 2, 5, "the command's child")
        command = [q for q in term_command() if ppid_of(q) == p.pid]
        self.assertEqual(len(command), 1, term_command())
        self.assertEqual(os.getpgid(command[0]), os.getpgid(p.pid))  # mcpmux's, not its own
        self.assertEqual(self.ended(p, 10)["escalation"], "abandoned")
        wait_until(lambda: command[0] not in term_command(), 3,
                   "the hung engine command to be killed", explain=lambda: p.stderr())
        self.assertIsNone(p.p.poll(), "mcpmux exited")
        self.exit_and_let_the_keeper_end_it(p, slow)  # its child ends by itself

    def test_a_named_run_whose_engine_cannot_run_ends_at_once(self):
        """A run with --name whose engine cannot be run (not there, or not found by its
        launcher): its id file (mcpmux's, or the user's --cidfile) stays empty to the end of
        the engine's command, so no container was made, whatever the engine cannot say about
        the name; or the user's --cidfile was there before the run, which the engine
        refuses.  The run ends at once, not abandoned at --kill-deadline with a container
        that never was."""
        users = ["--cidfile", os.path.join(self.tmp.name, "users.cid")]
        existing = os.path.join(self.tmp.name, "existing.cid")
        open(existing, "w").close()
        for engine, opts in ((["/nonexistent/docker"], []),
                             (["env", "PATH=/nonexistent", "docker"], []),
                             (["/nonexistent/docker"], users),
                             (["/nonexistent/docker"], ["--cidfile", existing])):
            p = self.start([MCPMUX] + GRACES + ["--kill-deadline", "5000", "--"] + engine +
                           ["run", "-i", "--name", "x"] + opts + ["img"])
            p.send(initialize(1))
            t0 = time.monotonic()
            self.assertEqual(p.wait(15), 127)
            self.assertLess(time.monotonic() - t0, 3 * SLOW, p.stderr())
            self.assertNotIn("abandoned", p.stderr())
            self.assertNotIn("exited leaving", p.stderr())
        self.assert_no_leftovers()

    def slow_create_killed(self, kill_deadline, run=(), **env):
        """A run whose engine makes the container slowly (its id file empty meanwhile),
        ended by the client's EOF: its engine's command is SIGKILLed half-way to
        --kill-deadline, before the id is written.  (mcpmux, seconds it took to exit, its
        id file.)  run: more of the run's options."""
        p = self.creating_run(["--kill-deadline", str(kill_deadline)], run, **env)
        cidfile = self.calls()[0][self.calls()[0].index("--cidfile") + 1]
        t0 = time.monotonic()
        p.close_stdin()
        self.assertEqual(p.wait(15), 137)
        return p, time.monotonic() - t0, cidfile

    def assert_listed_by_the_runs_labels(self, helpers):
        """The first engine command asked for the run's containers by its labels."""
        self.assertTrue(helpers[0].startswith("container ls -a --no-trunc --filter "
                                              "label=mcpmux.owner="), helpers)
        self.assertIn("--filter label=mcpmux.run=", helpers[0])

    def assert_ended_by_mcpmux(self, p, cidfile):
        """The run ended its container itself, not abandoned: nothing left for the keeper."""
        self.assertNotIn("abandoned", p.stderr())
        self.assertFalse(os.path.exists(cidfile))
        self.wait_for_keeper(p)
        self.assertNotIn("keeper:", p.stderr())  # nothing left for it
        self.assert_no_leftovers()

    def test_a_container_made_while_its_engines_command_is_killed_is_ended(self):
        """The engine's command killed (at half --kill-deadline) while the engine makes the
        container: the empty id file does not say that none was made.  mcpmux finds it by
        the run's labels and ends it, as one whose id it knows, before it exits, within the
        deadline."""
        p, took, cidfile = self.slow_create_killed(5000)
        self.assertLess(took, 5 + 1.6 * SLOW, p.stderr())
        # gone when mcpmux exits, by mcpmux's own engine commands (not the keeper's later)
        self.assertTrue(os.path.exists(self.log + ".removed"), p.stderr())
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assert_listed_by_the_runs_labels(helpers)
        self.assertTrue(helpers[1].startswith("container inspect --format mcpmux-whose|"),
                        helpers)
        self.assertEqual(helpers[2:], LADDER)
        self.assert_ended_by_mcpmux(p, cidfile)

    def test_a_listing_longer_than_mcpmuxs_buffer_gives_only_whole_ids(self):
        """The engine's command killed while the engine makes the container, and the listing
        by the run's labels longer than mcpmux reads (61 containers, ids of 64 hex digits,
        over 4 KiB): the line cut at the end of what is read is not an id (the engine
        would take it for a prefix, another container's), and the containers past it are
        not said gone to the keeper, which lists them again at mcpmux's exit and ends
        them."""
        p, _, _ = self.slow_create_killed(5000, FAKE_DOCKER_LS_MORE="60")
        self.wait_for_keeper(p, 60)
        listed = ["%012x%052x" % (i, 0) for i in range(1, 61)]
        named = [c[-1] for c in self.calls()[1:] if c[0] == "container" and c[1] != "ls"]
        self.assertEqual([n for n in named if n not in listed + ["fake0123456789abcdef"]], [])
        for cid in listed:
            self.assertIn(["container", "kill", "--signal", "TERM", cid], self.calls())
        self.assertIn("the engine lists more containers of run ", p.stderr())
        self.assert_no_leftovers()

    def test_a_container_gone_after_the_engines_warnings_is_seen_gone(self):
        """The engine says "no such container" after more warnings than the start of its
        output mcpmux keeps: a listed container stopped by SIGTERM is seen gone, not asked
        about until --kill-deadline and abandoned."""
        p, _, cidfile = self.slow_create_killed(5000, FAKE_DOCKER_LS_MORE="1",
                                                FAKE_DOCKER_WARN="100")
        cid = "%012x%052x" % (1, 0)
        self.assertIn(["container", "kill", "--signal", "TERM", cid], self.calls())
        self.assertNotIn(["container", "rm", "-f", cid], self.calls())
        self.assert_ended_by_mcpmux(p, cidfile)

    def test_a_listing_with_no_answer_leaves_the_container_to_the_keeper(self):
        """The engine does not answer the listing by the run's labels: the listing is
        killed in half the time left to --kill-deadline, which is said, and the run ends
        within the deadline, not abandoned; the keeper, not told the container is gone,
        lists it again at mcpmux's exit and ends it."""
        slow_ls = os.path.join(self.tmp.name, "slow-ls")
        open(slow_ls, "w").close()
        p, took, _ = self.slow_create_killed(5000, FAKE_DOCKER_SLOW_LS=slow_ls)
        self.assertLess(took, 5 + 0.6 * SLOW, p.stderr())
        err = p.stderr()
        self.assertIn("cannot ask the engine for the container of run ", err)
        self.assertIn("no answer in ", err)
        self.assertNotIn("abandoned", err)
        os.unlink(slow_ls)  # the engine answers the keeper
        self.wait_for_keeper(p)
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        self.assert_no_leftovers()

    def test_a_named_container_the_engine_cannot_be_asked_about_is_left_to_the_keeper(self):
        """A run with --name whose engine's command is killed while the engine makes the
        container, and whose engine cannot be reached for the name's labels: its empty id
        file does not say that none was made.  The run ends within --kill-deadline, not
        abandoned, and the container is not said gone to the keeper, which asks again at
        mcpmux's exit and ends it.  What is said is the engine's error, after its
        warnings."""
        self.env["FAKE_DOCKER_WARN"] = "2"
        unreachable = os.path.join(self.tmp.name, "unreachable")
        slow_ls = os.path.join(self.tmp.name, "slow-ls")  # the keeper's, until reachable
        open(unreachable, "w").close()
        open(slow_ls, "w").close()
        p, took, _ = self.slow_create_killed(5000, run=["--name", "x"],
                                             FAKE_DOCKER_INSPECT_FAIL=unreachable,
                                             FAKE_DOCKER_SLOW_LS=slow_ls)
        self.assertLess(took, 5 + 0.6 * SLOW, p.stderr())
        err = p.stderr()
        self.assertIn("cannot ask the engine for the container of run ", err)
        self.assertIn("(its name x: Cannot connect to the Docker daemon", err)
        self.assertNotIn("abandoned", err)
        os.unlink(unreachable)  # the engine answers the keeper
        os.unlink(slow_ls)
        self.wait_for_keeper(p)
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        self.assert_no_leftovers()

    def test_a_failed_listing_says_the_engines_error_after_its_warnings(self):
        """The listing by the run's labels fails, the engine having warned first: what is
        said is the engine's error (its last line), not its first warning; the container
        is left to the keeper."""
        p, took, _ = self.slow_create_killed(5000, FAKE_DOCKER_WARN="2",
                                             FAKE_DOCKER_LS_FAIL="Error: cannot list now")
        self.assertLess(took, 5 + 0.6 * SLOW, p.stderr())
        err = p.stderr()
        self.assertIn("cannot ask the engine for the container of run ", err)
        self.assertIn("(exit 1: Error: cannot list now): a container it made is left to the "
                      "keeper", err)
        self.wait_for_keeper(p)
        self.assertNotIn("WARN[0000]", p.stderr())
        self.assert_no_leftovers()

    def test_a_container_made_while_its_engines_command_is_killed_from_outside_is_ended(self):
        """The engine's command killed by another than mcpmux (the OOM killer) while the
        engine makes the container: its run exited by itself, but with a signal and its id
        file empty, which does not say that none was made.  mcpmux finds it by the run's
        labels and ends it before it exits."""
        p = self.creating_run(["--kill-deadline", "5000"])
        cidfile = self.calls()[0][self.calls()[0].index("--cidfile") + 1]
        engine = [q for q in self.tagged() if ppid_of(q) == p.pid]
        self.assertEqual(len(engine), 1, engine)
        os.kill(engine[0], signal.SIGKILL)  # not its child, which goes on as the engine
        self.assertEqual(p.wait(15), 137)
        # gone when mcpmux exits, by mcpmux's own engine commands (not the keeper's later)
        self.assertTrue(os.path.exists(self.log + ".removed"), p.stderr())
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assert_listed_by_the_runs_labels(helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assert_ended_by_mcpmux(p, cidfile)

    def test_a_run_without_an_id_file_finds_its_container_by_its_labels(self):
        """A run that has no id file (no directory for mcpmux's) and no --name: once its
        processes are gone, mcpmux asks the engine for the run's container by its labels
        and ends it, rather than take it for gone; nothing is left for the keeper."""
        self.env["XDG_RUNTIME_DIR"] = os.path.join(self.tmp.name, "none")  # not there
        p = self.initialized_run()
        self.assertNotIn("--cidfile", self.calls()[0])
        p.close_stdin()
        self.assertEqual(p.wait(15), 0)
        self.assertTrue(os.path.exists(self.log + ".removed"), p.stderr())
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assert_listed_by_the_runs_labels(helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertNotIn("abandoned", p.stderr())
        self.wait_for_keeper(p)
        self.assertNotIn("keeper:", p.stderr())
        self.assert_no_leftovers()

    def test_a_warning_that_quotes_no_such_container_does_not_make_the_container_gone(self):
        """The engine's first answer to mcpmux's inspect of the container's state, at its
        exit, is an error other than "no such container" (it cannot be reached), after
        warnings of which one says "no such container" of another container: the
        container is not taken for gone and left running.  The engine's error is said,
        mcpmux removes the container (rm -f) and exits with 0; its id file goes with it."""
        once = os.path.join(self.tmp.name, "unreachable-once")
        open(once, "w").close()
        p = self.initialized_run(FAKE_DOCKER_STATUS_UNREACHED=once)
        p.close_stdin()
        self.assertEqual(p.wait(15), 0)
        self.assertFalse(os.path.exists(once))  # the engine failed as the test says
        err = p.stderr()
        self.assertIn("the container engine: Cannot connect to the Docker daemon at "
                      "unix:///var/run/docker.sock. Is the docker daemon running?", err)
        self.assertTrue(os.path.exists(self.log + ".removed"), err)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertEqual(os.listdir(os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux",
                                                 "cid")), [], err)
        self.wait_for_keeper(p)
        self.assertNotIn("keeper:", p.stderr())  # nothing left for it
        self.assert_no_leftovers()

    def test_an_engine_command_killed_at_its_deadline_says_no_container_gone(self):
        """The engine's inspect of the container's state, at mcpmux's exit, says "No such
        container" and then hangs: killed at its 30 s, it gave no answer, whatever it said
        first.  The container is not taken for gone: mcpmux still removes it (rm -f), and
        its id file goes with it.  (--kill-deadline 70 s: the inspect's own 30 s bound
        applies.)"""
        once = os.path.join(self.tmp.name, "gone-then-hang")
        open(once, "w").close()
        p = self.initialized_run(["--kill-deadline", "70000"], FAKE_DOCKER_GONE_THEN_HANG=once)
        p.close_stdin()
        self.assertEqual(p.wait(60), 0, p.stderr())
        self.assertFalse(os.path.exists(once))  # the engine hung as the test says
        err = p.stderr()
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef", err)
        self.assertTrue(os.path.exists(self.log + ".removed"), err)
        self.assertEqual(os.listdir(os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux",
                                                 "cid")), [], err)
        self.wait_for_keeper(p)
        self.assert_no_leftovers()

    def test_detached_run_is_left_alone(self):
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-d", "img"])
        p.close_stdin()
        p.wait()
        self.assertEqual(self.calls()[0], ["run", "-d", "img"])
        self.assertIn("does not manage", p.stderr())



class FakeDockerKeeper(FakeDockerCase):
    """The keeper (docs/lifecycle.md, "When mcpmux itself dies") ends a container through
    the very words mcpmux gave its engine, however many and long, says what the engine
    answered, and still ends a container whose teardown mcpmux abandoned at a normal exit."""

    def test_the_keeper_leaves_another_mcpmuxs_container_alone(self):
        """The id file of a --cidfile may have been written by another mcpmux's run of the
        same command line: the keeper ends only a container whose owner label is its
        mcpmux's."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        self.env["FAKE_DOCKER_WARN"] = "100"  # over 4 KiB of warnings before the answer
        cidfile = os.path.join(self.tmp.name, "shared.cid")
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "--cidfile", cidfile,
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        with open(self.log + ".labels", "a") as f:
            f.write("mcpmux.owner=1:2\n")  # the container in that file is now another's
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertEqual(len(helpers), 1, helpers)
        self.assertTrue(helpers[0].startswith("container inspect --format mcpmux-whose|"))
        self.assertIn("is another mcpmux's (1:2): left alone", p.stderr())

    def test_a_keeper_killed_is_replaced_by_one_told_of_the_container(self, **env):
        """The keeper killed while mcpmux runs: the one that takes its place is told of
        the run's container again, and removes it when mcpmux is SIGKILLed."""
        p = self.initialized_run(**env)
        first = wait_until(self.keepers, 5, "the keeper")
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: "takes its place" in p.stderr(), 5, "another keeper",
                   explain=p.stderr)
        self.kill_and_wait_for_keeper(p)
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        self.assert_no_leftovers()

    def test_a_keeper_killed_is_replaced_by_one_told_of_the_container_without_a_cgroup(self):
        """The same without a cgroup: the container line alone is told again."""
        self.test_a_keeper_killed_is_replaced_by_one_told_of_the_container(
            MCPMUX_CGROUP="off")

    def test_a_container_said_gone_is_not_told_to_a_new_keeper(self):
        """A run ended, its container said gone to the keeper: the one that takes the
        keeper's place is not told of it, and asks the engine nothing when mcpmux is
        SIGKILLed."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX, "serve"] + GRACES + ["--", "docker", "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 1)
        p.send({"session": "c1", "message": req(2, "mcpmux/endRun")})
        self.assertEqual(self.ended(p)["escalation"], "eof")
        first = wait_until(self.keepers, 5, "the keeper")
        os.kill(first[0], signal.SIGKILL)
        wait_until(lambda: "takes its place" in p.stderr(), 5, "another keeper",
                   explain=p.stderr)
        calls = self.calls()
        self.kill_and_wait_for_keeper(p)
        self.assertEqual(self.calls()[len(calls):], [])
        self.assertNotIn("keeper:", p.stderr())
        self.assert_no_leftovers()

    @unittest.skipIf(not os.path.exists(SHIM) or WRAPPER, "no fault shim, or under a wrapper")
    def test_what_a_new_keeper_held_at_its_start_cannot_be_told_is_said(self):
        """Two containers whose lines (long words to their engine) do not fit in the pipe
        of a new keeper that does not read yet (held by the fault shim): mcpmux tells it
        what fits within a second, and says how many containers it could not tell it of."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        env = dict(self.env, LD_PRELOAD=SHIM, FAULT_KEEPER_STOP="1")
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                                   "verify_asan_link_order=0") if x)
        p = self.start([MCPMUX, "serve"] + GRACES + ["--", "env", "LONG=" + "x" * 70000,
                                                     "docker", "run", "-i", "img"], env=env)
        first = wait_until(lambda: [q for q in self.tagged() if q != p.pid and
                                    proc_state(q) == "T"], 10, "the first keeper held")[0]
        os.kill(first, signal.SIGCONT)  # this one reads what it is told
        for i, s in enumerate(("c1", "c2")):
            p.send({"session": s, "message": initialize(i)})
            self.assertEqual(p.msg()["event"], "started")
            self.assertEqual(p.msg()["message"]["id"], i)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "takes its place" in p.stderr(), 5, "another keeper",
                   explain=p.stderr)
        k = wait_until(lambda: [q for q in self.tagged() if proc_state(q) == "T"], 10,
                       "the new keeper held")[0]
        self.addCleanup(lambda: alive(k) and os.kill(k, signal.SIGCONT))
        said = "cannot tell the new keeper about 2 container(s), such as id file "
        wait_until(lambda: said in p.stderr(), 5, said, explain=p.stderr)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        os.kill(k, signal.SIGCONT)
        self.wait_for_keeper(p)

    def test_the_keeper_says_the_engines_error_after_its_warnings(self):
        """An engine that warns more than the keeper keeps before it fails: the keeper
        leaves the container alone and says the engine's error, not a piece of a
        warning."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        self.env["FAKE_DOCKER_WARN"] = "100"  # over 4 KiB of warnings before the error
        unreachable = os.path.join(self.tmp.name, "unreachable")
        self.env["FAKE_DOCKER_INSPECT_FAIL"] = unreachable
        cidfile = os.path.join(self.tmp.name, "shared.cid")
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "--cidfile", cidfile,
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        open(unreachable, "w").close()  # from now on, the engine cannot be reached
        self.kill_and_wait_for_keeper(p)
        self.assertIn("keeper: cannot tell whose container fake01234567 is (exit 1: Cannot "
                      "connect to the Docker daemon. Is the docker daemon running?)", p.stderr())

    def test_a_container_made_before_its_id_is_written_is_ended_by_the_keeper(self):
        """mcpmux killed while the engine makes the container: the engine has made it, with
        mcpmux's labels, but its command has not written the id yet (and never will: it dies
        with mcpmux).  The keeper finds it by this run's labels and removes it, rather than
        take the empty id file for a container that was never made."""
        p = self.creating_run()
        cidfile = self.calls()[0][self.calls()[0].index("--cidfile") + 1]
        with open(cidfile) as f:
            self.assertEqual(f.read(), "")  # the id is not written yet
        owner = self.owner_of(p.pid)
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertTrue(any(h.startswith("container ls ") and
                            "--filter label=mcpmux.owner=" + owner in h and
                            "--filter label=mcpmux.run=" in h for h in helpers), helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assertFalse(os.path.exists(cidfile))
        self.assert_no_leftovers()

    def test_the_keeper_sees_a_container_gone_after_the_engines_warnings(self):
        """The engine says "no such container" after more warnings than the start of its
        output the keeper keeps: the container, stopped by SIGTERM, is seen gone (not
        killed and removed as one still there)."""
        # about 5 KiB of warnings before each answer
        p = self.creating_run(FAKE_DOCKER_LS_MORE="2", FAKE_DOCKER_WARN="100")
        self.kill_and_wait_for_keeper(p, 60)
        err = p.stderr()
        for i in (1, 2):
            cid = "%012x%052x" % (i, 0)
            self.assertIn("keeper: removed container %s (docker: it stopped on SIGTERM)"
                          % cid[:12], err)
            self.assertNotIn(["container", "rm", "-f", cid], self.calls())
        self.assert_no_leftovers()

    def test_the_keeper_ends_every_container_a_listing_gives(self):
        """A listing by the run's labels that gives more containers than the keeper's
        buffer holds (41 with ids of 64 hex digits, over 3 KiB): the keeper takes their ids
        as they come, and ends every one."""
        p = self.creating_run(FAKE_DOCKER_LS_MORE="40")
        self.kill_and_wait_for_keeper(p, 60)
        err = p.stderr()
        for i in range(1, 41):
            cid = "%012x%052x" % (i, 0)
            self.assertIn(["container", "kill", "--signal", "TERM", cid], self.calls())
            self.assertIn("keeper: removed container %s (docker: it stopped on SIGTERM)"
                          % cid[:12], err)
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", err)
        self.assert_no_leftovers()

    def test_the_keeper_bounds_the_containers_a_listing_gives(self):
        """A listing by the run's labels that gives four containers, with an engine that
        answers `ls` but not `inspect` (10 s a command): the keeper ends them within 10 s
        and --term-grace together, not 10 s each, says those left (mcpmux sweep ends them),
        and then kills the cgroup, where the engine's command, which dropped MCPMUX_OWNER,
        is ended."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()  # stays: the id is never written, inspect never answers
        self.env.update(FAKE_DOCKER_SLOW_CREATE=slow, FAKE_DOCKER_SLOW_INSPECT=slow,
                        FAKE_DOCKER_LS_MORE="3", FAKE_DOCKER_ARGS="")
        p = self.start([MCPMUX] + GRACES + ["--", "env", "-u", "MCPMUX_OWNER", "docker",
                                            "run", "-i", "img"])
        wait_until(lambda: os.path.exists(self.log + ".created"), 5,
                   "the engine to make the container")
        engine = [q for q in self.tagged() if q != p.pid and keeper_of(q) is None and
                  comm(q) != "mcpmux"]  # nor a keeper that has not taken its name yet
        self.assertTrue(engine)
        with open("/proc/%d/cgroup" % engine[0]) as f:
            if "/mcpmux." not in f.read():
                self.skipTest("no cgroup can be made here")
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        # 10.3 s, with room for a loaded machine: far from the 40 s of one inspect each
        self.wait_for_keeper(p, 20)
        self.assertLess(time.monotonic() - t0, min(10.3 + 7.7 * SLOW, 38), p.stderr())
        self.assertFalse([q for q in engine if alive(q)], "the engine's command")
        self.assertRegex(p.stderr(), r"keeper: no time left to end [1-4] container\(s\) "
                         r"docker listed, such as \w{12} \(10\.3 s for all of them\): left "
                         r"\(mcpmux sweep ends them\)")
        self.assert_no_leftovers()

    def test_the_keeper_asks_once_for_the_containers_of_all_its_runs(self):
        """Runs whose id files are still empty when mcpmux is killed, with an engine that
        does not answer: the keeper asks once for all of them (by the owner label), not once
        a run, and all its questions together take 10 s at most, however many runs."""
        slow, slow_ls = (os.path.join(self.tmp.name, x) for x in ("slow", "slow-ls"))
        open(slow, "w").close()
        open(slow_ls, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_CREATE=slow, FAKE_DOCKER_SLOW_LS=slow_ls,
                        FAKE_DOCKER_ARGS="")
        p = self.start([MCPMUX, "serve"] + GRACES + ["--", "docker", "run", "-i", "img"])
        p.send({"session": "c1", "message": initialize(1)},
               {"session": "c2", "message": initialize(1)})

        def cidfiles():
            runs = [c for c in self.calls() if c[0] == "run"] if os.path.exists(self.log) else []
            return [c[c.index("--cidfile") + 1] for c in runs]
        wait_until(lambda: len(cidfiles()) == 2 and all(map(os.path.exists, cidfiles())), 5,
                   "the engine to make both containers")
        t0 = time.monotonic()
        self.kill_and_wait_for_keeper(p, 40)
        took = time.monotonic() - t0
        lists = [c for c in self.calls() if c[:2] == ["container", "ls"]]
        self.assertEqual(len(lists), 1, lists)
        self.assertNotIn("label=mcpmux.run=", " ".join(lists[0]))
        self.assertLess(took, 10 + 4 * SLOW, p.stderr())
        self.assertIn("keeper: cannot ask docker for the containers of 2 run(s)", p.stderr())
        self.assertFalse(any(map(os.path.exists, cidfiles())), "mcpmux's own id files")
        self.assert_no_leftovers()

    @unittest.skipIf(not os.path.exists(SHIM) or WRAPPER, "no fault shim, or under a wrapper")
    def test_a_container_whose_command_just_started_is_ended_by_the_keeper(self):
        """mcpmux killed right after the engine's command started (stopped there by the
        fault shim, before anything else of the run's start): the keeper already knows of
        the run's container, finds it by the run's labels, and removes it."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env["FAKE_DOCKER_SLOW_CREATE"] = slow
        self.env["FAKE_DOCKER_ARGS"] = ""
        env = dict(self.env, LD_PRELOAD=SHIM, FAULT_CLONE_STOP="1", FAULT_NO_CLOSE_RANGE="1",
                   MCPMUX_CGROUP="off")  # the server started by clone(), which the shim sees
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                                   "verify_asan_link_order=0") if x)
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "img"], env=env)
        wait_until(lambda: proc_state(p.pid) == "T", 10, "mcpmux stopped after the start")
        wait_until(lambda: os.path.exists(self.log + ".created"), 5,
                   "the engine to make the container")
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertTrue(helpers and helpers[0].startswith("container ls "), helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assert_no_leftovers()

    @unittest.skipIf(not os.path.exists(SHIM) or WRAPPER, "no fault shim, or under a wrapper")
    def test_a_keeper_slow_to_start_ends_the_container_of_mcpmux_killed_meanwhile(self):
        """mcpmux killed with its run's container made and answering, its keeper held
        (by the fault shim) before its first act, as on a loaded machine:
        once it goes on, the keeper reads what mcpmux told it all the same, and removes
        the container."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        env = dict(self.env, LD_PRELOAD=SHIM, FAULT_KEEPER_STOP="1")
        env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS", ""),
                                                   "verify_asan_link_order=0") if x)
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "img"], env=env)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        held = wait_until(lambda: [q for q in self.tagged() if q != p.pid and
                                   proc_state(q) == "T"], 10, "the keeper held")
        self.assertEqual(len(held), 1, held)
        self.assertEqual(comm(held[0]), "mcpmux-keeper")  # named by its middle process
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        os.kill(held[0], signal.SIGCONT)
        self.wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertIn("container kill --signal TERM fake0123456789abcdef", helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assert_no_leftovers()

    def killed_while_another_container_is_made(self, run=()):
        """mcpmux killed while its id file is empty, the engine making a container that
        turns out to be another mcpmux's: the keeper's listing finds none of its own.
        (mcpmux, its run's id file.)  run: more of the run's options."""
        p = self.creating_run(run=run)
        cidfile = self.calls()[0][self.calls()[0].index("--cidfile") + 1]
        with open(self.log + ".labels") as f:
            labels = f.read()
        with open(self.log + ".labels", "w") as f:  # the container is now another's
            f.write(labels.replace("mcpmux.owner=", "mcpmux.owner=1:2-was-"))
        self.kill_and_wait_for_keeper(p)
        return p, cidfile

    def test_the_keeper_leaves_a_container_of_another_run_alone(self):
        """A container the listing by this run's labels does not give (another mcpmux's, or
        another run's) is not ended for an empty id file."""
        p, _ = self.killed_while_another_container_is_made()
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertTrue(helpers and all(h.startswith("container ls ") for h in helpers),
                        helpers)
        self.assertNotIn("keeper: removed container", p.stderr())
        self.assert_no_leftovers()

    def removed_by_hand_then_swept(self, *context):
        """The fake engine's container removed by hand (`docker [context] container rm -f`),
        then `mcpmux sweep`: its result."""
        subprocess.run(["docker"] + list(context) + ["container", "rm", "-f",
                                                     "fake0123456789abcdef"],
                       env=self.env, check=True, timeout=10 * SLOW)
        return self.sweep()

    def ctx_a_recorded_and_kept(self, p, conf, absent):
        """p (a wrap of docker run, its config conf) started its container: the record
        names context ctx-a and holds no absent; then as ctx_a_kept_after_a_context_switch."""
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        files = sorted(os.listdir(self.cid_dir()))
        with open(os.path.join(self.cid_dir(), files[1]), "rb") as f:
            rec = f.read()
        self.assertIn(b"\0DOCKER_CONTEXT=ctx-a\0", rec)
        self.assertNotIn(absent, rec)
        self.ctx_a_kept_after_a_context_switch(p, conf, files)

    def ctx_a_kept_after_a_context_switch(self, p, conf, files):
        """mcpmux of a run in docker's current context ctx-a (files: its id file and record)
        killed with its keeper, then `docker context use default` (conf: config.json): a
        sweep asks in ctx-a, where the container is still there, and keeps the files; once
        the container is removed from ctx-a by hand, a sweep removes them."""
        self.kill_with_keeper(p)
        with open(conf, "w") as f:
            f.write('{"auths": {}, "currentContext": "default"}')  # docker context use default
        r = subprocess.run(["docker", "container", "inspect", "fake0123456789abcdef"],
                           env=self.env, capture_output=True, text=True, timeout=10 * SLOW)
        self.assertIn("No such container", r.stderr)
        r = self.sweep()
        self.assertEqual(sorted(os.listdir(self.cid_dir())), files,
                         "removed while its container is there: " + r.stderr)
        self.assertNotIn("keeping", r.stderr)
        r = self.removed_by_hand_then_swept("--context", "ctx-a")
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        os.unlink(self.log + ".removed")

    def sweep(self, *args, session=None, **env):
        """`mcpmux sweep` (with args) in the test's runtime directory, with env over the
        test's (None: unset), its --session session, or one of no session: it ends nothing
        of other tests."""
        e = dict(self.env)
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        r = subprocess.run([MCPMUX, "sweep", "--session", session or self.tag + "-none"] +
                           list(args),
                           capture_output=True, env=e, text=True, timeout=60 * SLOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def cid_dir(self):
        return os.path.join(self.env["XDG_RUNTIME_DIR"], "mcpmux", "cid")

    def test_the_record_of_the_engine_goes_with_the_id_file(self):
        """mcpmux's own id file and the record of the run's engine beside it are there
        while the run is, and go together: at mcpmux's exit, and by the keeper of a
        killed mcpmux."""
        for how in ("exit", "keeper"):
            with self.subTest(how=how):
                p = self.initialized_run()
                files = sorted(os.listdir(self.cid_dir()))
                self.assertEqual([f.rsplit(".", 1)[1] for f in files], ["cid", "ctx"], files)
                if how == "exit":
                    p.close_stdin()
                    self.assertEqual(p.wait(), 0)
                else:
                    self.kill_and_wait_for_keeper(p)
                self.assertEqual(os.listdir(self.cid_dir()), [], p.stderr())
                os.unlink(self.log + ".removed")  # the next run's container
        self.assert_no_leftovers()

    def test_sweep_removes_the_id_file_of_a_container_removed_by_hand(self):
        """mcpmux and its keeper killed together leave mcpmux's id file of the container,
        and the record of its engine beside it; the container then removed by hand
        (`docker rm -f`), sweep asks that engine about it, and removes both once it says
        there is no such container."""
        p = self.initialized_run()
        files = sorted(os.listdir(self.cid_dir()))
        self.assertEqual([f.rsplit(".", 1)[1] for f in files], ["cid", "ctx"], files)
        self.kill_with_keeper(p)
        r = self.sweep()
        self.assertEqual(sorted(os.listdir(self.cid_dir())), files,
                         "removed while its container is there")
        r = self.removed_by_hand_then_swept()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertNotIn("keeping", r.stderr)
        self.assertIn(["container", "inspect", "--format", "{{.State.Status}}",
                       "fake0123456789abcdef"], self.calls())
        self.assert_no_leftovers()

    def test_an_empty_host_option_pins_the_default_daemon(self):
        """`docker -H ""` reaches the default daemon's socket (a host: no context, docker's
        current one aside): the record pins it even when config.json cannot be read, and
        sweep removes the id file once the container is gone from there.  The last of
        several --context options is the one the engine takes: `--context ctx-b --context
        ""` chooses none, so the current context is what the record names."""
        cfg = os.path.join(self.tmp.name, "docker-config")
        os.mkdir(cfg)
        os.mkdir(os.path.join(cfg, "config.json"))  # cannot be read as a file
        self.env["DOCKER_CONFIG"] = cfg
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "-H", "", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        self.kill_with_keeper(p)
        r = self.removed_by_hand_then_swept()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertNotIn("keeping", r.stderr)
        os.rmdir(os.path.join(cfg, "config.json"))
        with open(os.path.join(cfg, "config.json"), "w") as f:
            f.write('{"auths": {}, "currentContext": "ctx-a"}')
        self.env["FAKE_DOCKER_HOST_ONLY"] = "context:ctx-a"
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "--context", "ctx-b", "--context",
                                           "", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        files = sorted(os.listdir(self.cid_dir()))
        with open(os.path.join(self.cid_dir(), files[1]), "rb") as f:
            self.assertIn(b"\0DOCKER_CONTEXT=ctx-a\0", f.read())
        self.kill_with_keeper(p)
        r = self.removed_by_hand_then_swept("--context", "ctx-a")
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assert_no_leftovers()

    def test_sweep_asks_the_engine_of_another_host_in_that_context(self):
        """A run whose engine was reached elsewhere (DOCKER_HOST, or --host before `run`)
        leaves its id file to a sweep without that context, whose engine says there is no
        such container: sweep asks the engine at that host, where it is still there, and
        removes the file only once it is gone from there too."""
        host = "tcp://elsewhere.invalid:2375"
        for how in ("DOCKER_HOST", "--host"):
            with self.subTest(how=how):
                self.run_elsewhere(how, host)
                files = sorted(os.listdir(self.cid_dir()))
                # the engine without that context does not know of it
                r = subprocess.run(["docker", "container", "inspect", "fake0123456789abcdef"],
                                   env=self.env, capture_output=True, text=True,
                                   timeout=10 * SLOW)
                self.assertIn("No such container", r.stderr)
                r = self.sweep()
                self.assertEqual(sorted(os.listdir(self.cid_dir())), files,
                                 "removed while its container is there: " + r.stderr)
                self.assertNotIn("keeping", r.stderr)
                asked = (["--host", host] if how == "--host" else []) + [
                    "container", "inspect", "--format", "{{.State.Status}}",
                    "fake0123456789abcdef"]
                self.assertIn(asked, self.calls())
                r = self.removed_by_hand_then_swept("--host", host)
                self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
                self.assert_no_leftovers()

    def session_label(self):
        """The mcpmux.session label of the fake engine's last run."""
        with open(self.log + ".labels") as f:
            return [l.split("=", 1)[1] for l in f.read().splitlines()
                    if l.startswith("mcpmux.session=")][-1]

    def run_elsewhere(self, how, host):
        """A run whose engine is reached at host (by DOCKER_HOST, or --host before `run`),
        the only daemon that knows of its container, killed with its keeper: its id file
        and record left to sweep.  (The run's session.)"""
        self.env["FAKE_DOCKER_LOG"] = self.log = os.path.join(
            self.tmp.name, "docker-%s.log" % how.strip("-"))
        self.env["FAKE_DOCKER_HOST_ONLY"] = host
        self.env["FAKE_DOCKER_KILL_STOPS"] = "1"
        if how == "DOCKER_HOST":
            p = self.initialized_run(DOCKER_HOST=host)
            self.env.pop("DOCKER_HOST")
        else:
            self.env["FAKE_DOCKER_ARGS"] = ""
            p = self.start([MCPMUX] + GRACES +
                           ["--", "docker", "--host", host, "run", "-i", "img"])
            p.send(initialize(1))
            self.assertEqual(p.msg()["id"], 1)
        self.assertEqual(len(os.listdir(self.cid_dir())), 2)
        self.kill_with_keeper(p)
        return self.session_label()

    def hosts(self):
        """The fake engine's commands (FAKE_DOCKER_HOST_ONLY): (host reached, words)."""
        with open(self.log + ".hosts") as f:
            return [(h, w.split()) for h, w in
                    (l.split("\t", 1) for l in f.read().splitlines())]

    def test_sweep_ends_a_container_of_another_host_by_the_record_of_its_run(self):
        """A gone instance's container that only the engine at the run's host knows of
        (DOCKER_HOST, or --host before `run`) is ended by sweep through that engine, with
        the record's words and variables, as one its own listing finds: its id file and
        record go with it."""
        host = "tcp://elsewhere.invalid:2375"
        for how in ("DOCKER_HOST", "--host"):
            with self.subTest(how=how):
                session = self.run_elsewhere(how, host)
                r = self.sweep(session=session)
                self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
                self.assertIn("fake01234567", r.stdout)
                self.assertIn("ended 0 process(es) and 1 container(s)", r.stdout)
                helpers = [(h, w[w.index("container") + 1:]) for h, w in self.hosts()
                           if "container" in w and w[0] != "run"]
                ended = [(h, w) for h, w in helpers if w[0] in ("kill", "rm")]
                self.assertIn((host, ["kill", "--signal", "TERM", "fake0123456789abcdef"]),
                              ended)
                self.assertEqual(ended[-1], (host, ["rm", "-f", "fake0123456789abcdef"]))
                self.assertEqual([h for h, _ in ended], [host] * len(ended), ended)
                self.assertTrue(os.path.exists(self.log + ".removed"))
                self.assert_no_leftovers()

    def test_sweep_dry_run_says_it_would_end_a_container_of_another_host(self):
        """sweep --dry-run lists the container of another host that the record of its
        run finds, and ends nothing: the container, its id file and record stay."""
        host = "tcp://elsewhere.invalid:2375"
        session = self.run_elsewhere("DOCKER_HOST", host)
        files = sorted(os.listdir(self.cid_dir()))
        r = self.sweep("--dry-run", session=session)
        self.assertIn("would end:", r.stdout)
        self.assertIn("fake01234567", r.stdout)
        self.assertEqual(sorted(os.listdir(self.cid_dir())), files, r.stderr)
        self.assertEqual([w for _, w in self.hosts()
                          if "kill" in w or "rm" in w], [], "ended by a dry run")
        self.assertFalse(os.path.exists(self.log + ".removed"))
        r = self.sweep(session=session)
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertTrue(os.path.exists(self.log + ".removed"))
        self.assert_no_leftovers()

    def test_sweep_ends_a_container_its_listing_finds_once(self):
        """A container that the engine's own listing finds is ended by that listing, not
        again by the record of its run."""
        self.env["FAKE_DOCKER_LS_JSON"] = "1"
        self.env["FAKE_DOCKER_KILL_STOPS"] = "1"
        p = self.initialized_run()
        session = self.session_label()
        self.kill_with_keeper(p)
        r = self.sweep(session=session)
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertIn("ended 0 process(es) and 1 container(s)", r.stdout)
        calls = [c[1:] for c in self.calls() if c[0] == "container"]
        self.assertEqual([c for c in calls if c[0] == "rm"],
                         [["rm", "-f", "fake0123456789abcdef"]])
        self.assertEqual([c for c in calls if c[0] == "kill"],
                         [["kill", "--signal", "TERM", "fake0123456789abcdef"]])
        self.assertEqual([c for c in calls if c[0] == "ls" and
                          any(w.startswith("id=") for w in c)], [], "listed by its record")
        self.assert_no_leftovers()

    def test_sweep_does_not_take_a_container_for_gone_when_its_inspect_said_so_and_hung(self):
        """A gone instance's container that sweep ends: the engine's first inspect of its
        state after `kill --signal TERM` says "No such container" and then hangs
        (FAKE_DOCKER_GONE_THEN_HANG): killed at sweep's 30 s for an engine command, it gave
        no answer, and the container is not taken for gone.  The next inspect says it has
        exited; sweep removes it (rm -f), and its id file and record go with it."""
        self.env["FAKE_DOCKER_LS_JSON"] = "1"
        self.env["FAKE_DOCKER_KILL_STOPS"] = "1"
        p = self.initialized_run()
        session = self.session_label()
        self.kill_with_keeper(p)
        once = os.path.join(self.tmp.name, "gone-then-hang")
        open(once, "w").close()
        t0 = time.monotonic()
        r = self.sweep(session=session, FAKE_DOCKER_GONE_THEN_HANG=once)
        took = time.monotonic() - t0
        self.assertFalse(os.path.exists(once), r.stderr)  # the engine hung as the test says
        self.assertGreaterEqual(took, 30, r.stderr)  # not before the time limit
        self.assertIn("ended 0 process(es) and 1 container(s)", r.stdout)
        calls = [c[1:] for c in self.calls() if c[0] == "container"]
        self.assertEqual([c for c in calls if c[0] == "rm"],
                         [["rm", "-f", "fake0123456789abcdef"]], r.stderr)
        self.assertTrue(os.path.exists(self.log + ".removed"), r.stderr)
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assert_no_leftovers()

    def test_sweep_keeps_the_id_file_its_engine_cannot_be_asked_about(self):
        """The engine of the run no longer there for sweep, or not answering, keeps
        mcpmux's id file of a container removed by hand, and sweep says why, once (and on
        every sweep)."""
        eng = os.path.join(self.tmp.name, "engine")  # the run's engine, found on its PATH
        os.mkdir(eng)
        os.symlink(os.path.join(HERE, "bin", "docker"), os.path.join(eng, "docker"))
        p = self.initialized_run(PATH=eng + ":" + self.env["PATH"])
        files = sorted(os.listdir(self.cid_dir()))
        self.kill_with_keeper(p)
        subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"],
                       env=self.env, check=True, timeout=10 * SLOW)
        down = os.path.join(self.tmp.name, "docker-down")
        open(down, "w").close()
        cid = os.path.join(self.cid_dir(), files[0])
        engine = os.path.join(eng, "docker") + " (DOCKER_CONTEXT=default)"
        for env, why in (({"FAKE_DOCKER_INSPECT_FAIL": down},
                          "%s cannot say whether container fake01234567 is there: "
                          "Cannot connect to the Docker daemon" % engine),
                         ({}, "the engine of its container fake01234567, %s, is not run: "
                          "it is no longer there" % engine)):
            with self.subTest(why=why):
                if not env:
                    os.rename(os.path.join(eng, "docker"), os.path.join(eng, "moved"))
                for _ in range(2):
                    r = self.sweep(**env)
                    self.assertEqual(sorted(os.listdir(self.cid_dir())), files, r.stderr)
                    said = [l for l in r.stderr.splitlines() if "keeping" in l]
                    self.assertEqual(len(said), 1, r.stderr)
                    self.assertIn("sweep: keeping %s: %s" % (cid, why), said[0])
                r = self.sweep("-q", **env)
                self.assertEqual(sorted(os.listdir(self.cid_dir())), files, r.stderr)
                self.assertNotIn("keeping", r.stderr)
        os.rename(os.path.join(eng, "moved"), os.path.join(eng, "docker"))
        r = self.sweep()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assert_no_leftovers()

    def hung_engine_sweep(self, slow_vars):
        """Id files of three runs whose engine, in its context (DOCKER_HOST), hangs on the
        commands of slow_vars, and of one run of the default context; every container
        removed by hand; one sweep: (its stderr, seconds taken, the commands that reached
        the hung host, the id files left)."""
        hung = "tcp://hung.invalid:2375"
        for _ in range(3):
            self.kill_with_keeper(self.initialized_run(DOCKER_HOST=hung))
        del self.env["DOCKER_HOST"]
        self.kill_with_keeper(self.initialized_run())
        files = sorted(os.listdir(self.cid_dir()))
        self.assertEqual(len(files), 8, files)
        subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"],
                       env=self.env, check=True, timeout=10 * SLOW)
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_HOST=hung, **{v: slow for v in slow_vars})
        t0 = time.monotonic()
        r = subprocess.run([MCPMUX, "sweep", "--session", self.tag + "-none"],
                           capture_output=True, env=self.env, text=True, timeout=120 * SLOW)
        took = time.monotonic() - t0
        os.unlink(slow)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(["container", "inspect", "--format", "{{.State.Status}}",
                       "fake0123456789abcdef"],
                      [w for h, w in self.hosts() if h == ""], "the other context not asked")
        asked = [w[:2] for h, w in self.hosts() if h == hung and "container" in w]
        return r.stderr, took, asked, sorted(os.listdir(self.cid_dir()))

    def test_an_engine_that_does_not_answer_is_not_asked_again_in_a_sweep(self):
        """Id files of three runs whose engine, in its context, hangs (hung_engine_sweep()):
        sweep lets its listing go at its time limit, and lists nothing more there; then
        its inspect, and asks that engine nothing more about the others, with the same
        words and variables: their files are kept, the first said as any file whose engine
        cannot say, the others in one line with their count.  A file of another context
        is still asked, and goes; the next sweep, the engine answering again, asks about
        each."""
        err, took, asked, left = self.hung_engine_sweep(["FAKE_DOCKER_SLOW_LS",
                                                         "FAKE_DOCKER_SLOW_INSPECT"])
        # two time limits of 10 s, not two for each file (60 s)
        self.assertLess(took, 20 + min(8 * SLOW, 9.5), err)
        self.assertEqual(asked, [["container", "ls"], ["container", "inspect"]], err)
        self.assertEqual(len(left), 6, err)
        said = [l for l in err.splitlines() if "keeping" in l]
        self.assertEqual(len(said), 2, err)
        hung = "tcp://hung.invalid:2375"
        engine = os.path.join(HERE, "bin", "docker") + " (DOCKER_HOST=%s)" % hung
        first = said[0].split("sweep: keeping ", 1)[1].split(":", 1)[0]
        self.assertIn(os.path.basename(first), left)
        self.assertIn("%s cannot say whether container fake01234567 is there: no answer "
                      "within the time limit" % engine, said[0])
        self.assertIn("sweep: keeping 2 more id file(s) in %s of containers of %s: not "
                      "asked again in this sweep, as it did not answer (said for %s)"
                      % (self.cid_dir(), engine, os.path.basename(first)), said[1])
        r = self.sweep()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertNotIn("keeping", r.stderr)
        self.assert_no_leftovers()

    def test_an_engine_whose_listing_hangs_is_still_asked_whether_a_container_is_there(self):
        """The same engine hanging on its listing alone: sweep lists nothing more there
        after its time limit, but still asks its inspect about each file, which says the
        container is gone: every id file goes, in one time limit."""
        err, took, asked, left = self.hung_engine_sweep(["FAKE_DOCKER_SLOW_LS"])
        self.assertLess(took, 10 + min(8 * SLOW, 9.5), err)
        self.assertEqual(asked, [["container", "ls"]] + [["container", "inspect"]] * 3, err)
        self.assertEqual(left, [], err)
        self.assertNotIn("keeping", err)
        self.assert_no_leftovers()

    def test_sweep_keeps_the_id_file_whose_engine_said_gone_and_hung(self):
        """The engine's inspect of a gone instance's container (removed by hand) says "No
        such container" and then hangs (FAKE_DOCKER_GONE_THEN_HANG): killed at sweep's time
        limit for it (10 s), it gave no answer, whatever it said first.  The id file and its
        record are kept, said as of an engine that did not answer; the next sweep, the
        engine answering, removes them."""
        p = self.initialized_run()
        files = sorted(os.listdir(self.cid_dir()))
        self.kill_with_keeper(p)
        subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"],
                       env=self.env, check=True, timeout=10 * SLOW)
        once = os.path.join(self.tmp.name, "gone-then-hang")
        open(once, "w").close()
        t0 = time.monotonic()
        r = self.sweep(FAKE_DOCKER_GONE_THEN_HANG=once)
        took = time.monotonic() - t0
        self.assertFalse(os.path.exists(once), r.stderr)  # the engine hung as the test says
        self.assertGreaterEqual(took, 10, r.stderr)  # not before the time limit
        self.assertEqual(sorted(os.listdir(self.cid_dir())), files, r.stderr)
        engine = os.path.join(HERE, "bin", "docker") + " (DOCKER_CONTEXT=default)"
        self.assertIn("sweep: keeping %s: %s cannot say whether container fake01234567 is "
                      "there: no answer within the time limit"
                      % (os.path.join(self.cid_dir(), files[0]), engine), r.stderr)
        r = self.sweep()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertNotIn("keeping", r.stderr)
        self.assert_no_leftovers()

    def write_script(self, path, body):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)

    def test_sweep_runs_the_engine_the_run_ran_not_another_of_its_name(self):
        """sweep asks the engine the run ran, by the absolute path found for the run: not
        another program of its name first on sweep's PATH (which says there is no such
        container), nor, for a run of a relative path (bin/docker), the one at that path
        from sweep's working directory.  The id file stays while the container is there,
        and goes once it is gone."""
        other = os.path.join(self.tmp.name, "other")
        ran = os.path.join(self.tmp.name, "other-ran")
        self.write_script(os.path.join(other, "bin", "docker"),
                          '[ "$2" = ls ] && exit 0\n'  # sweep's own listing: none
                          'echo "$@" >> %s; echo "Error: No such container: x" >&2; exit 1\n'
                          % ran)
        for how in ("PATH", "relative"):
            with self.subTest(how=how):
                self.env["FAKE_DOCKER_ARGS"] = ""
                p = self.start([MCPMUX] + GRACES + ["--", "bin/docker" if how == "relative"
                                                    else "docker", "run", "-i", "img"],
                               cwd=HERE)
                p.send(initialize(1))
                self.assertEqual(p.msg()["id"], 1)
                files = sorted(os.listdir(self.cid_dir()))
                self.assertEqual(len(files), 2, files)
                self.kill_with_keeper(p)
                env = dict(self.env, PATH=os.path.join(other, "bin") + ":" + self.env["PATH"])
                sweep = [MCPMUX, "sweep", "--session", self.tag + "-none"]
                r = subprocess.run(sweep, capture_output=True, env=env, text=True, cwd=other,
                                   timeout=60 * SLOW)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertFalse(os.path.exists(ran), "another engine was asked: " + r.stderr)
                self.assertEqual(sorted(os.listdir(self.cid_dir())), files,
                                 "removed while its container is there: " + r.stderr)
                self.assertNotIn("keeping", r.stderr)
                subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"],
                               env=self.env, check=True, timeout=10 * SLOW)
                r = subprocess.run(sweep, capture_output=True, env=env, text=True, cwd=other,
                                   timeout=60 * SLOW)
                self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
                self.assertFalse(os.path.exists(ran), "another engine was asked: " + r.stderr)
                os.unlink(self.log + ".removed")  # the next run's container
                self.assert_no_leftovers()

    def test_sweep_asks_in_the_docker_context_current_for_the_run(self):
        """A run in the context that docker's configuration made current (docker context
        use: config.json's currentContext) records it: a sweep after the current context
        changed asks in the run's, where the container is still there, and removes the id
        file only once it is gone from there.  A config.json that could not be read for
        the run leaves the context unknown: the id file is kept, said."""
        cfg = os.path.join(self.tmp.name, "docker-config")
        os.mkdir(cfg)
        conf = os.path.join(cfg, "config.json")
        self.env["DOCKER_CONFIG"] = cfg
        self.env["FAKE_DOCKER_HOST_ONLY"] = "context:ctx-a"
        with open(conf, "w") as f:
            f.write('{"auths": {}, "currentContext": "ctx-a"}')
        p = self.initialized_run()
        files = sorted(os.listdir(self.cid_dir()))
        with open(os.path.join(self.cid_dir(), files[1]), "rb") as f:
            self.assertIn(b"\0DOCKER_CONTEXT=ctx-a\0", f.read())
        self.ctx_a_kept_after_a_context_switch(p, conf, files)
        # a config.json docker could not have read either: no context recorded
        with open(conf, "w") as f:
            f.write('{"currentContext": ')
        self.env["FAKE_DOCKER_HOST_ONLY"] = ""
        p = self.initialized_run()
        files = sorted(os.listdir(self.cid_dir()))
        self.kill_with_keeper(p)
        r = self.removed_by_hand_then_swept()
        self.assertEqual(sorted(os.listdir(self.cid_dir())), files, r.stderr)
        self.assertIn("sweep: keeping %s: %s cannot be asked about container fake01234567 in "
                      "the context of its run: its context was docker's current one, which the "
                      "record does not name" % (os.path.join(self.cid_dir(), files[0]),
                                                os.path.join(HERE, "bin", "docker")), r.stderr)
        for f in files:
            os.unlink(os.path.join(self.cid_dir(), f))
        self.assert_no_leftovers()

    def test_an_empty_docker_host_or_context_leaves_the_current_context_recorded(self):
        """docker takes an empty DOCKER_HOST or DOCKER_CONTEXT (of the run's environment, or
        set by an env launcher), or an empty -c or --context, for none, and runs in
        config.json's currentContext: the record names that context (in place of the
        launcher's empty DOCKER_CONTEXT too, which would set it empty again for sweep), and
        a sweep after another context was made current asks in the run's, where the
        container is still there, and keeps its id file."""
        cfg = os.path.join(self.tmp.name, "docker-config")
        os.mkdir(cfg)
        conf = os.path.join(cfg, "config.json")
        self.env["DOCKER_CONFIG"] = cfg
        self.env["FAKE_DOCKER_HOST_ONLY"] = "context:ctx-a"
        self.env["FAKE_DOCKER_ARGS"] = ""
        for var, launcher in (("DOCKER_HOST", False), ("DOCKER_CONTEXT", False),
                              ("DOCKER_HOST", True), ("DOCKER_CONTEXT", True), ("-c", None),
                              ("--context=", None)):
            with self.subTest(var=var, launcher=launcher):
                with open(conf, "w") as f:
                    f.write('{"auths": {}, "currentContext": "ctx-a"}')
                env = dict(self.env)
                if launcher is False:
                    env[var] = ""
                # an empty option of docker's (-c "", --context=) chooses nothing either
                opts = ([] if launcher is not None else
                        [var, ""] if var == "-c" else [var])
                p = self.start([MCPMUX] + GRACES + ["--"] +
                               (["env", var + "="] if launcher else []) +
                               ["docker"] + opts + ["run", "-i", "img"], env=env)
                self.ctx_a_recorded_and_kept(p, conf, b"\0DOCKER_CONTEXT=\0")
        self.assert_no_leftovers()

    def test_an_env_launcher_taking_the_docker_context_away_leaves_the_current_one_recorded(self):
        """An env launcher that takes DOCKER_CONTEXT and DOCKER_HOST away from docker (-u
        NAME, --unset NAME, --unset=NAME, -uNAME, -i, -), both set for the run to another
        context and host: docker runs in config.json's currentContext (ctx-a, the only
        daemon that knows of the container), and the record names it, also as a word of
        the launcher's before the engine (the launcher would otherwise take it away again
        from sweep's commands).  A sweep after another context was made current asks in
        ctx-a, where the container is still there, and keeps the id file without a word;
        once it is removed there by hand, a sweep removes the file."""
        cfg = os.path.join(self.tmp.name, "docker-config")
        os.mkdir(cfg)
        conf = os.path.join(cfg, "config.json")
        self.env.update(DOCKER_CONFIG=cfg, FAKE_DOCKER_HOST_ONLY="context:ctx-a",
                        FAKE_DOCKER_ARGS="")
        # -i takes all away: what the fake and the test need is given again
        kept = ["%s=%s" % (k, v) for k, v in sorted(self.env.items())
                if k not in ("HOME", "DOCKER_HOST", "DOCKER_CONTEXT") and
                k.replace("_", "a").isalnum() and not k[0].isdigit()]
        for launcher in (["-u", "DOCKER_CONTEXT", "-u", "DOCKER_HOST"],
                         ["--unset", "DOCKER_HOST", "--unset=DOCKER_CONTEXT"],
                         ["-uDOCKER_CONTEXT", "-uDOCKER_HOST", "--"],
                         ["-i"] + kept, ["-"] + kept):
            with self.subTest(launcher=launcher[:4]):
                with open(conf, "w") as f:
                    f.write('{"auths": {}, "currentContext": "ctx-a"}')
                env = dict(self.env, DOCKER_CONTEXT="ctx-b",
                           DOCKER_HOST="tcp://elsewhere.invalid:2375")
                p = self.start([MCPMUX] + GRACES + ["--", "env"] + launcher +
                               ["docker", "run", "-i", "img"], env=env)
                self.ctx_a_recorded_and_kept(p, conf, b"ctx-b")
        self.assert_no_leftovers()

    def test_an_env_launcher_unsetting_another_variable_keeps_the_runs_path(self):
        """`env -u NAME docker` finds docker on the run's PATH (only -u PATH or -i take it
        away): the record names the engine found there, which sweep runs."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "env", "-u", "FOO", "docker", "run", "-i",
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        files = sorted(os.listdir(self.cid_dir()))
        with open(os.path.join(self.cid_dir(), files[1]), "rb") as f:
            words = f.read().split(b"\0")
        self.assertIn(os.path.join(HERE, "bin", "docker").encode(), words)
        self.kill_with_keeper(p)
        r = self.removed_by_hand_then_swept()
        self.assertEqual(os.listdir(self.cid_dir()), [], r.stderr)
        self.assertNotIn("keeping", r.stderr)
        self.assert_no_leftovers()

    def test_sweep_keeps_a_record_while_its_instance_has_a_process_left(self):
        """A record whose id file is not there (yet: podman writes it once it made the
        container) stays while the instance's keeper, or a process carrying its owner,
        still runs, though mcpmux is gone, or while a process of the user's whose
        environment cannot be read (it may carry the owner) runs; it goes once nothing of
        the instance is left."""
        gone = subprocess.Popen(["true"])
        gone.wait()
        os.makedirs(self.cid_dir(), mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(self.cid_dir()), 0o700)
        ctx = os.path.join(self.cid_dir(), "%d.1.ctx" % gone.pid)
        open(ctx, "w").close()
        keeper = os.path.join(self.tmp.name, "mcpmux-keeper")
        os.symlink("/bin/sleep", keeper)
        shim = os.path.exists(SHIM) and not WRAPPER
        for how in ("keeper", "owner") + (("unreadable",) if shim else ()):
            with self.subTest(how=how):
                env = {}
                if how == "keeper":
                    q = subprocess.Popen(["mcpmux-keeper for %d" % gone.pid, "600"],
                                         executable=keeper, env=self.env)
                elif how == "owner":
                    q = subprocess.Popen(["sleep", "600"],
                                         env=dict(self.env, MCPMUX_OWNER="%d:1" % gone.pid))
                else:  # a process of the user's whose environment sweep cannot read
                    q = subprocess.Popen(["sleep", "600"], env=self.env)
                    env = dict(LD_PRELOAD=SHIM, FAULT_ENVIRON_FAIL=str(q.pid),
                               ASAN_OPTIONS=":".join(
                                   x for x in (self.env.get("ASAN_OPTIONS", ""),
                                               "verify_asan_link_order=0") if x))
                try:
                    wait_until(lambda: comm(q.pid) in ("mcpmux-keeper", "sleep"), 10 * SLOW,
                               "the process to start")
                    r = self.sweep(**env)
                    self.assertTrue(os.path.exists(ctx), r.stderr)
                finally:
                    q.kill()
                    q.wait()
        r = self.sweep()
        self.assertFalse(os.path.exists(ctx), r.stderr)
        self.assert_no_leftovers()

    @unittest.skipIf(WRAPPER, "under a wrapper")
    def test_sweep_keeps_a_record_while_a_keeper_whose_title_was_cut_runs(self):
        """The keeper's title is written over mcpmux's argument area: one too small for
        "mcpmux-keeper for PID" (a short command line, a pid of five digits or more) cuts
        it short.  A record whose id file is not there stays while a keeper whose title is
        the start of its instance's runs; it goes once the keeper is gone."""
        os.symlink(MCPMUX, os.path.join(self.tmp.name, "m"))
        self.env["FAKE_DOCKER_ARGS"] = ""
        argv = ["./m", "--", "docker", "run", "-i", "x"]  # 23 bytes
        p = self.start(argv, cwd=self.tmp.name)
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        full = b"mcpmux-keeper for %d" % p.pid
        if len(full) < len(b"\0".join(w.encode() for w in argv)) + 1:
            p.close_stdin()
            p.wait()
            self.skipTest("a pid too short for its keeper's title to be cut")
        keeper = wait_until(lambda: [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                            10 * SLOW, "the keeper")[0]
        with open("/proc/%d/cmdline" % keeper, "rb") as f:
            title = f.read().split(b"\0")[0]
        self.assertTrue(full.startswith(title) and title != full, title)
        os.kill(keeper, signal.SIGSTOP)  # it cannot act on mcpmux's death
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        files = sorted(os.listdir(self.cid_dir()))
        self.assertEqual([f.rsplit(".", 1)[1] for f in files], ["cid", "ctx"], files)
        os.unlink(os.path.join(self.cid_dir(), files[0]))  # as if not written yet
        ctx = os.path.join(self.cid_dir(), files[1])
        try:
            r = self.sweep()
            self.assertTrue(os.path.exists(ctx), "removed while its keeper runs: " + r.stderr)
        finally:
            os.kill(keeper, signal.SIGKILL)
        wait_until(lambda: not [q for q in self.tagged() if comm(q) == "mcpmux-keeper"],
                   10 * SLOW, "the keeper to be gone")
        r = self.sweep()
        self.assertFalse(os.path.exists(ctx), r.stderr)
        subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"],
                       env=self.env, check=True, timeout=10 * SLOW)
        self.assert_no_leftovers()

    def test_the_keeper_removes_its_own_empty_id_file_not_a_users(self):
        """An id file of mcpmux's own still empty when the keeper's listing finds no
        container of the run is removed; a user's --cidfile is left where it is."""
        p, cidfile = self.killed_while_another_container_is_made()
        self.assertNotIn("keeper: removed container", p.stderr())
        self.assertFalse(os.path.exists(cidfile), "mcpmux's own id file is left")
        users = os.path.join(self.tmp.name, "users.cid")
        os.unlink(self.log)
        os.unlink(self.log + ".created")
        p, cidfile = self.killed_while_another_container_is_made(run=["--cidfile", users])
        self.assertEqual(cidfile, users)
        self.assertNotIn("keeper: removed container", p.stderr())
        self.assertTrue(os.path.exists(users), "the user's --cidfile is removed")
        self.assert_no_leftovers()

    def test_the_keeper_leaves_a_users_cidfile_of_a_container_it_removed(self):
        """The keeper removes the container a user's --cidfile names, and leaves that file
        where it is, as mcpmux itself does at the end of a run; mcpmux's own id file goes
        with its container."""
        users = os.path.join(self.tmp.name, "users.cid")
        for run in (["--cidfile", users], []):
            self.env["FAKE_DOCKER_ARGS"] = ""
            p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i"] + run + ["img"])
            p.send(initialize(1))
            self.assertEqual(p.msg()["id"], 1)
            cidfile = self.calls()[0][self.calls()[0].index("--cidfile") + 1]
            self.kill_and_wait_for_keeper(p)
            self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
            if run:
                self.assertEqual(cidfile, users)
                with open(users) as f:
                    self.assertEqual(f.read(), "fake0123456789abcdef\n")
            else:
                self.assertFalse(os.path.exists(cidfile), "mcpmux's own id file is left")
            for f in (self.log, self.log + ".removed", self.log + ".labels"):
                os.unlink(f)
        self.assert_no_leftovers()

    def test_a_run_without_an_id_file_is_ended_by_the_keeper_by_its_labels(self):
        """A run that has no id file (no directory for mcpmux's): the keeper is told of
        it all the same, and when mcpmux is killed it finds the run's container by its
        labels and removes it."""
        self.env["XDG_RUNTIME_DIR"] = os.path.join(self.tmp.name, "none")  # not there
        p = self.initialized_run()
        self.assertNotIn("--cidfile", self.calls()[0])
        self.assertIn("no directory for the container's id file", p.stderr())
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertTrue(helpers and helpers[0].startswith("container ls ") and
                        "--filter label=mcpmux.run=" in helpers[0], helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assert_no_leftovers()

    def test_long_launcher_prefix_reaches_the_keeper_whole(self):
        # 40 variables of 60 bytes (over 2 KiB, over 32 words), then the one the stand-in
        # needs to log at all: a prefix cut anywhere loses it.
        words = ["V%d=%s" % (i, "y" * 60) for i in range(40)]
        words.append("FAKE_DOCKER_LOG=" + self.log)
        del self.env["FAKE_DOCKER_LOG"]
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "env"] + words + ["docker", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertIn("container kill --signal TERM fake0123456789abcdef", helpers)
        self.assertEqual(helpers[-2:], ["container kill --signal KILL fake0123456789abcdef",
                                        "container rm -f fake0123456789abcdef"])
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assertNotIn("cannot tell the keeper", p.stderr())
        self.assert_no_leftovers()

    def test_keeper_says_when_the_engine_cannot_remove_it(self):
        p = self.initialized_run(FAKE_DOCKER_RM_FAIL="1")
        self.kill_and_wait_for_keeper(p)
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        err = p.stderr()
        self.assertIn("keeper: could not remove container fake01234567 (docker: exit 1: "
                      "Error: the engine cannot remove it now)", err)
        self.assertNotIn("keeper: removed container", err)
        self.assert_no_leftovers()

    def test_a_failed_rm_says_the_engines_error_after_its_warnings(self):
        """rm -f of a run's container fails after the engine's warnings: mcpmux says the
        engine's error (its last line), not its first warning, and so does the keeper."""
        self.env["FAKE_DOCKER_ARGS"] = ""
        self.env["FAKE_DOCKER_WARN"] = "2"
        self.env["FAKE_DOCKER_RM_FAIL"] = "1"
        p = self.start([MCPMUX] + GRACES + ["--kill-deadline", "1000", "--", "docker", "run",
                                            "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.close_stdin()
        self.assertEqual(p.wait(15), 0)
        self.wait_for_keeper(p)
        err = p.stderr()
        self.assertIn(": the container engine: Error: the engine cannot remove it now\n", err)
        # Its processes are gone: the container alone is named as abandoned.
        self.assertIn(": container fake0123456789abcdef was not seen gone within 1 s of SIGKILL "
                      "(abandoned; the keeper ends it at mcpmux's exit)\n", err)
        self.assertNotIn("would not die", err)
        self.assertIn("keeper: could not remove container fake01234567 (docker: exit 1: "
                      "Error: the engine cannot remove it now)", err)
        self.assertNotIn("WARN[0000]", err)
        self.assert_no_leftovers()

    def test_keeper_bounds_each_engine_command(self):
        """An engine that does not answer holds the keeper 10 s a command, no longer: the
        keeper kills the command with what it started (the stand-in waits in a child of its
        own, as podman waits for its runtime: assert_no_leftovers), says the container
        could not be removed, still ends the processes of the run, and exits."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env["FAKE_DOCKER_SLOW_RM"] = slow  # stays: rm -f never answers in time
        self.env["FAKE_DOCKER_ARGS"] = "--daemonize-grandchild"
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "img"])
        p.send(initialize(1), call(2, "env"))
        self.assertEqual(p.msg()["id"], 1)
        session = p.msg()["result"]["structuredContent"]["session"]
        wait_until(lambda: len(self.cookie_pids(session)) >= 2, 5, "the daemonised grandchild")
        t0 = time.monotonic()
        # rm -f, cut by the containers' 10.3 s before the processes, is asked again after them
        self.kill_and_wait_for_keeper(p, 40)
        took = time.monotonic() - t0
        self.assertGreater(took, 9.5, "the keeper did not wait for rm -f")
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        err = p.stderr()
        self.assertIn("keeper: could not remove container fake01234567 (docker: no answer in "
                      "time (killed))", err)
        self.assertNotIn("keeper: removed container", err)
        self.assertEqual(self.cookie_pids(session), [])
        self.assert_no_leftovers()

    def test_keeper_reads_an_engine_that_warns_more_than_a_pipe_holds(self):
        """The keeper keeps the start of each engine command's output and reads the rest
        and drops it: a command that warns more than a pipe holds is not blocked until
        the keeper kills it (each command held 10 s, the container said not removed)."""
        # about 100 KiB on each command's stderr
        p = self.initialized_run(FAKE_DOCKER_WARN="2000")
        t0 = time.monotonic()
        self.kill_and_wait_for_keeper(p)
        self.assertLess(time.monotonic() - t0, 9.5, "an engine command was held to its end")
        self.assertEqual(" ".join(self.calls()[-1]), "container rm -f fake0123456789abcdef")
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", p.stderr())
        self.assert_no_leftovers()

    def test_keeper_lets_go_of_an_engine_command_that_leaves_a_flood_behind(self):
        """Each engine command leaves a child of its own that writes to the command's
        stderr without end: once the command has exited, the keeper reads what is there,
        closes the pipe and goes on; the flood ends with the pipe.

        What is promised is that rm -f is asked and the container ends, said, not which
        command comes last: a machine loaded enough to hold the keeper past the containers'
        10.3 s (test_keeper_bounds_the_containers_before_the_processes) cuts the ladder
        there, rm -f included, and the container is ended again after the processes, from
        its owner's inspect, which may find it gone (nothing more asked or said then)."""
        p = self.initialized_run(FAKE_DOCKER_FLOOD="1")
        self.kill_and_wait_for_keeper(p)
        err = p.stderr()
        self.assertIn(["container", "rm", "-f", "fake0123456789abcdef"], self.calls())
        self.assertTrue(os.path.exists(self.log + ".removed"), err)
        self.assertEqual(os.listdir(self.cid_dir()), [], err)  # mcpmux's own id file too
        self.assertNotIn("could not remove", err)
        self.assertNotIn("cannot tell whose", err)
        if "keeper: no time left to end container fake01234567" not in err:
            self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", err)
        # a flood ends at its next write to the closed pipe: a loaded machine can take a
        # while to give it the CPU (5 s, as for the floods of a run's ladder)
        self.assert_no_leftovers(5, "the floods to end with their pipes")

    def test_keeper_sees_a_container_gone_whose_engine_command_leaves_a_flood_behind(self):
        """The container removed by hand before mcpmux is killed, and each engine command
        leaves a child that floods its stderr: the engine's "no such container" comes
        before far more of the flood than the keeper keeps of a command's output, and the
        keeper still takes the container for gone (as when it finds it gone after an
        rm -f cut by its deadline): nothing more is asked or said of it, and mcpmux's own
        id file goes, with the record beside it."""
        p = self.initialized_run(FAKE_DOCKER_FLOOD="1")
        self.assertEqual(len(os.listdir(self.cid_dir())), 2)
        e = dict(self.env)
        del e["FAKE_DOCKER_FLOOD"]
        subprocess.run(["docker", "container", "rm", "-f", "fake0123456789abcdef"], env=e,
                       check=True, timeout=10 * SLOW)
        self.kill_and_wait_for_keeper(p)
        helpers = [" ".join(c) for c in self.calls()[2:]]
        self.assertEqual(len(helpers), 1, helpers)
        self.assertTrue(helpers[0].startswith("container inspect --format mcpmux-whose|"))
        self.assertNotIn("container fake01234567", p.stderr())
        self.assertEqual(os.listdir(self.cid_dir()), [], p.stderr())
        self.assert_no_leftovers(5, "the floods to end with their pipes")

    def test_keeper_does_not_take_a_warning_that_quotes_no_such_container_for_gone(self):
        """The engine fails the keeper's SIGTERM of the container with "permission denied",
        after warnings of which one, far from the start and the end of its output, says
        "no such container" of another container: the container, still running, is not
        taken for gone (its id file removed, nothing more asked); the keeper goes on to
        KILL and rm -f, and removes it."""
        p = self.initialized_run(FAKE_DOCKER_KILL_DENIED="1")
        self.assertEqual(len(os.listdir(self.cid_dir())), 2)
        self.kill_and_wait_for_keeper(p)
        err = p.stderr()
        self.assertNotIn("it was gone already", err)
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertIn("container kill --signal TERM fake0123456789abcdef", helpers)
        self.assertIn("container kill --signal KILL fake0123456789abcdef", helpers)
        self.assertEqual(helpers[-1], "container rm -f fake0123456789abcdef")
        self.assertTrue(os.path.exists(self.log + ".removed"), err)
        self.assertIn("keeper: removed container fake01234567 (docker: rm -f)", err)
        self.assertEqual(os.listdir(self.cid_dir()), [], err)
        self.assert_no_leftovers()

    def test_keeper_bounds_the_containers_before_the_processes(self):
        """mcpmux killed with two container runs whose engine does not answer kill or rm
        (10 s a command, three a container): the containers, ended first, take 10 s and
        --term-grace together at most, not 30 s each, before the processes of mcpmux's (a
        grandchild that left each run's tree) are ended; what is left of the containers is
        said, and ended after them once the engine answers."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env.update(FAKE_DOCKER_SLOW_KILL=slow, FAKE_DOCKER_SLOW_RM=slow,
                        FAKE_DOCKER_ARGS="--daemonize-grandchild")
        p = self.start([MCPMUX, "serve"] + GRACES + ["--", "docker", "run", "-i", "img"])
        for s in ("c1", "c2"):
            p.send({"session": s, "message": initialize(1)},
                   {"session": s, "message": call(2, "env")})
        cookies = []
        while len(cookies) < 2:
            m = p.msg().get("message", {})
            if m.get("id") == 2:
                cookies.append(m["result"]["structuredContent"]["session"])
        wait_until(lambda: all(len(self.cookie_pids(c)) >= 2 for c in cookies), 5,
                   "the daemonised grandchildren")
        pids = [q for c in cookies for q in self.cookie_pids(c)]
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        # 10.3 s, and the processes' grace, with room for a loaded machine: far from the
        # 60 s that the two containers' ladders take first without the bound.
        wait_until(lambda: not any(alive(q) for q in pids), 25,
                   "the processes of the runs to be gone", explain=lambda: p.stderr())
        self.assertLess(time.monotonic() - t0, min(10.3 + 11.7 * SLOW, 55), p.stderr())
        self.assertIn("keeper: no time left to end container fake01234567 before the "
                      "processes (10.3 s for all the containers): it is ended after them",
                      p.stderr())
        os.unlink(slow)  # the engine answers from now on
        self.wait_for_keeper(p, 40)
        self.assertIn("keeper: removed container fake01234567 (docker: ", p.stderr())
        self.assert_no_leftovers()

    def test_keeper_says_when_the_engine_cannot_run(self):
        # env finds docker in a directory of its own, gone by the time the keeper needs it
        bindir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bindir)
        os.symlink(os.path.join(HERE, "bin", "docker"), os.path.join(bindir, "docker"))
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "env", "PATH=" + bindir + ":/usr/bin:/bin",
                                            "docker", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        os.unlink(os.path.join(bindir, "docker"))
        self.kill_and_wait_for_keeper(p)
        err = p.stderr()
        # its owner cannot even be asked: left alone, and said, with the engine's answer
        self.assertIn("keeper: cannot tell whose container fake01234567 is (exit 127", err)
        self.assertNotIn("keeper: removed container", err)
        self.assert_no_leftovers()

    def test_a_container_the_keeper_cannot_be_told_about_is_said(self):
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "env", "A=one\ttwo", "docker", "run", "-i",
                                            "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertIn("cannot tell the keeper about the container of 'env'", p.stderr())
        self.assert_no_leftovers()

    def start_with_a_slow_engine(self):
        """A stubborn server whose engine's kill hangs while the marker (returned) exists:
        mcpmux's teardown is abandoned at --kill-deadline, with the container."""
        slow = os.path.join(self.tmp.name, "slow")
        open(slow, "w").close()
        self.env["FAKE_DOCKER_SLOW_KILL"] = slow
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        p = self.start([MCPMUX] + GRACES + ["--kill-deadline", "1000", "--", "docker", "run",
                                            "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.close_stdin()
        return p, slow

    def test_container_abandoned_at_exit_is_ended_by_the_keeper(self):
        # mcpmux exits after the abandon; the keeper ends the container.
        p, slow = self.start_with_a_slow_engine()
        p.wait(15)
        self.assertIn("abandoned", p.stderr())
        self.assertNotIn(["container", "rm", "-f", "fake0123456789abcdef"], self.calls())
        os.unlink(slow)
        wait_until(lambda: ["container", "rm", "-f", "fake0123456789abcdef"] in self.calls(),
                   20, "the keeper to remove the container", explain=lambda: p.stderr())
        wait_until(lambda: not self.keepers(), 10, "the keeper to finish")
        self.assertIn("keeper: removed container fake01234567", p.stderr())
        self.assert_no_leftovers()

    def test_normal_exit_is_not_held_up_by_the_keeper(self):
        # same, but the engine stays slow: mcpmux exits without waiting for the keeper's
        # ladder, and the keeper still ends the container when the engine answers
        p, slow = self.start_with_a_slow_engine()
        wait_until(lambda: "abandoned" in p.stderr(), 15, "the teardown to be abandoned")
        t1 = time.monotonic()
        p.wait(15)
        self.assertLess(time.monotonic() - t1, 0.9 * SLOW, "mcpmux waited for the keeper")
        keepers = self.keepers()
        self.assertEqual(len(keepers), 1, "the keeper is still ending the container")
        os.unlink(slow)
        wait_until(lambda: not self.keepers(), 20, "the keeper to finish",
                   explain=lambda: p.stderr())
        self.assertIn(["container", "rm", "-f", "fake0123456789abcdef"], self.calls())
        self.assert_no_leftovers()


if __name__ == "__main__":
    main()
