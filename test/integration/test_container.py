"""Container backends with docker's command line: a stand-in `docker` (bin/docker)
records what mcpmux asks of it, since docker's daemon cannot run here.  What podman
really does is in test_podman.py."""

import os

from mcptest import Case, FIXTURE, MCPMUX, call, initialize, main, req, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
GRACES = ["--eof-grace", "300", "--term-grace", "300"]


class FakeDocker(Case):
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
        self.assertEqual(run[3:9], ["--label", "mcpmux.owner=" + self.owner_of(p.pid),
                                    "--label", "mcpmux.session=" + session,
                                    "--label", "mcpmux.boot=" + boot])
        self.assertEqual(run[9], "--cidfile")
        cidfile = run[10]
        self.assertEqual(run[11:], ["-i", "--rm", "--label", "app=x", "img", "serve", "-d"])
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

    def test_stubborn_container_gets_the_whole_ladder(self):
        self.env["FAKE_DOCKER_ARGS"] = "--ignore-sigterm --ignore-eof"
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-i", "img"])
        p.send(initialize(1))
        self.assertEqual(p.msg()["id"], 1)
        p.send(req(2, "mcpmux/endRun"))
        r = p.msg(10)["result"]
        self.assertEqual(r["escalation"], "kill")
        helpers = [" ".join(c) for c in self.calls()[1:]]
        self.assertEqual(helpers, [
            "container kill --signal TERM fake0123456789abcdef",
            "container kill --signal KILL fake0123456789abcdef",
            "container inspect --format {{.State.Status}} fake0123456789abcdef",
            "container rm -f fake0123456789abcdef",
        ])
        p.close_stdin()
        self.assertEqual(p.wait(), 137)
        self.assert_no_leftovers()

    def test_detached_run_is_left_alone(self):
        self.env["FAKE_DOCKER_ARGS"] = ""
        p = self.start([MCPMUX] + GRACES + ["--", "docker", "run", "-d", "img"])
        p.close_stdin()
        p.wait()
        self.assertEqual(self.calls()[0], ["run", "-d", "img"])
        self.assertIn("does not manage", p.stderr())


if __name__ == "__main__":
    main()
