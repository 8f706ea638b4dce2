"""
A real container: the fixture server in podman (podman_env.py), answering over stdio.

Skipped, with the reason, where podman or runc is missing or the tests do not run as
root.  Prints how long a `podman run` takes to answer initialize (ctest -V shows it).
"""

import statistics
import time
import unittest

import podman_env
from mcptest import Case, FIXTURE, initialize, main, wait_until

REASON = podman_env.unavailable()


@unittest.skipIf(REASON is not None, REASON or "")
class Podman(Case):
    @classmethod
    def setUpClass(cls):
        cls.pod = podman_env.PodmanEnv(FIXTURE)
        try:
            cls.pod.setup()
        except BaseException:
            cls.pod.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pod.cleanup()

    def setUp(self):
        super().setUp()
        self.env.update({k: v for k, v in self.pod.env.items()
                         if k.startswith("CONTAINERS_")})

    def tearDown(self):
        try:
            ids = self.pod.containers()
            if ids:
                self.pod.podman("rm", "-f", "-t", "0", *ids, check=False)
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


if __name__ == "__main__":
    main()
