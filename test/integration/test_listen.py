"""Serve mode on a Unix socket; connect and ctl."""

import json
import os
import signal
import socket
import stat
import subprocess
import time

from mcptest import (Case, MCPMUX, Proc, alive, call, initialize, main, req, wait_until)

FAST = ["--eof-grace", "300", "--term-grace", "300"]


class Listen(Case):
    def listen(self, *fixture_args, opts=()):
        self.path = os.path.join(self.tmp.name, "mux.sock")
        p = self.serve(*fixture_args, opts=list(opts) + FAST + ["--listen", self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        return p

    def connect(self, *args):
        return self.start([MCPMUX, "connect"] + list(args) + [self.path])

    def ctl(self, *args, as_json=False):
        p = self.start([MCPMUX, "ctl"] + (["--json"] if as_json else []) + [self.path]
                       + list(args))
        out = p.read_to_eof()
        return p.wait(), out.decode()

    def test_socket_mode_and_connect(self):
        srv = self.listen()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        c = self.connect("--session", "one")
        c.send(initialize(1), call(2, "env"))
        self.assertEqual(c.msg()["id"], 1)
        e = c.msg()["result"]["structuredContent"]
        self.assertEqual(e["session"], "one")
        # ctl sees it
        rc, out = self.ctl("list")
        self.assertEqual(rc, 0)
        self.assertIn("one", out)
        self.assertIn(str(e["pid"]), out)
        rc, out = self.ctl("stats", as_json=True)
        self.assertEqual(json.loads(out)["sessions"], 1)
        # closing the client ends its backend
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        wait_until(lambda: not alive(e["pid"]), 2, "the backend to end")
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assertFalse(os.path.exists(self.path))
        self.assert_no_leftovers(0)

    def test_connection_close_ends_its_sessions_unless_kept(self):
        srv = self.listen()
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.path)
        s.settimeout(10)
        f = s.makefile("rwb", buffering=0)
        inbox = []

        def send(obj):
            f.write(json.dumps(obj).encode() + b"\n")

        def recv(pred):
            while True:
                for e in inbox:
                    if pred(e):
                        inbox.remove(e)
                        return e
                inbox.append(json.loads(f.readline()))
        send({"session": "gone", "message": call(1, "env")})
        send({"session": "kept", "keep": True})
        send({"session": "kept", "message": call(1, "env")})
        pid = {}
        for name in ("gone", "kept"):
            m = recv(lambda e: e.get("session") == name and "message" in e)
            pid[name] = m["message"]["result"]["structuredContent"]["pid"]
        f.close()
        s.close()
        wait_until(lambda: not alive(pid["gone"]), 2, "the unkept session to end")
        self.assertTrue(alive(pid["kept"]))
        # another connection takes the kept session over
        c = self.connect("--session", "kept")
        c.send(call(2, "env"))
        self.assertEqual(c.msg()["result"]["structuredContent"]["pid"], pid["kept"])
        rc, out = self.ctl("end", "kept")
        self.assertEqual(rc, 0)
        self.assertIn("kept", out)
        self.assertEqual(c.wait(5), 0)
        self.assertFalse(alive(pid["kept"]))
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_connect_keep(self):
        srv = self.listen()
        c = self.connect("--keep", "--session", "k")
        c.send(call(1, "env"))
        pid = c.msg()["result"]["structuredContent"]["pid"]
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        self.assertTrue(alive(pid))
        rc, out = self.ctl("list")
        self.assertIn("kept", out)
        srv.p.send_signal(signal.SIGINT)
        self.assertEqual(srv.wait(), 0)
        self.assertFalse(alive(pid))
        self.assert_no_leftovers(0)

    def test_default_session_is_a_fresh_uuid(self):
        srv = self.listen()
        sessions = set()
        for _ in range(2):
            c = self.connect()
            c.send(call(1, "env"))
            sessions.add(c.msg()["result"]["structuredContent"]["session"])
            c.close_stdin()
            self.assertEqual(c.wait(), 0)
        self.assertEqual(len(sessions), 2)
        for s in sessions:
            self.assertRegex(s, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_stale_socket_replaced_live_refused(self):
        self.path = os.path.join(self.tmp.name, "mux.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()  # a socket file nobody listens on
        srv = self.serve(opts=["--listen", self.path])
        wait_until(lambda: self.ctl("stats")[0] == 0, 5, "the serve to answer")
        second = self.serve(opts=["--listen", self.path])
        self.assertEqual(second.wait(), 1)
        self.assertIn("another", second.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_peer_of_another_uid_refused(self):
        if os.getuid() != 0:
            self.skipTest("needs root to connect as another uid")
        srv = self.listen()
        os.chmod(self.tmp.name, 0o755)
        os.chmod(self.path, 0o666)  # let the other uid reach the credential check
        p = subprocess.run([MCPMUX, "ctl", self.path, "stats"], user=65534, group=65534,
                           capture_output=True, timeout=10, env=self.env)
        self.assertNotEqual(p.returncode, 0)
        rc, out = self.ctl("stats")
        self.assertEqual(rc, 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)


if __name__ == "__main__":
    main()
