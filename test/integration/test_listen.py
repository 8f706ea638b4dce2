"""Serve mode on a Unix socket; connect and ctl."""

import fcntl
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import termios
import time
import unittest

from mcptest import (SANITIZED, SLOW, WRAPPER, Case, MCPMUX, Proc, alive, call, encode, initialize,
                     main, note, req, rss_anon_kib, run_on_a_full_stdout, wait_until, ASKER)
from test_hardening import Writer, wait_stalled
from test_serve import PLAIN_MCP, PLAIN_MCP_SAID

FAST = ["--eof-grace", "300", "--term-grace", "300"]
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# An answer of the client's over a connect --max-message of 4096.
OVER = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}


class ListenHelpers:
    def listen(self, *fixture_args, opts=(), command=None):
        self.path = os.path.join(self.tmp.name, "mux.sock")
        p = self.serve(*fixture_args, opts=list(opts) + FAST + ["--listen", self.path],
                       command=command)
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        return p

    def connect(self, *args):
        return self.start([MCPMUX, "connect"] + list(args) + [self.path])

    def ctl(self, *args, as_json=False):
        p = self.start([MCPMUX, "ctl"] + (["--json"] if as_json else []) + [self.path]
                       + list(args))
        out = p.read_to_eof()
        return p.wait(), out.decode()


class Listen(ListenHelpers, Case):
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

    def test_connect_takes_quiet_and_verbose(self):
        """connect -v or --verbose says the session's end as serve reports it; without,
        and with -q or --quiet, it is not said."""
        self.listen()
        for i, flags in enumerate(([], ["-v"], ["--verbose"], ["-q"], ["--quiet"])):
            c = self.connect(*(flags + ["--session", "s%d" % i]))
            c.send(initialize(1))
            self.assertEqual(c.msg()["id"], 1)
            c.close_stdin()
            self.assertEqual(c.wait(5), 0, c.stderr())
            said = "mcpmux: session s%d ended: " % i in c.stderr()
            self.assertEqual(said, flags in (["-v"], ["--verbose"]), (flags, c.stderr()))

    def test_connect_end_method_is_the_end_it_sends_at_eof(self):
        """A serve with --end-method: connect --end-method NAME ends its session with NAME
        on stdin EOF, and exits with the server's status; the tree is gone."""
        self.listen("--exit-code=5", "--daemonize-grandchild", opts=["--end-method", "x/end"])
        c = self.connect("--end-method", "x/end", "--session", "e")
        c.send(initialize(1), call(2, "env"))
        self.assertEqual(c.msg()["id"], 1)
        pid = c.msg()["result"]["structuredContent"]["pid"]
        wait_until(lambda: len(self.cookie_pids("e")) >= 2, 5, "the server and its grandchild")
        c.close_stdin()
        self.assertEqual(c.wait(5), 5, c.stderr())
        self.assertEqual(c.read_to_eof(), b"")
        self.assertFalse(alive(pid))
        self.assertEqual(self.cookie_pids("e"), [])

    def test_connect_end_method_is_any_name_serve_takes(self):
        """A name with a quote, a backslash, a tab and a non-ASCII letter, as serve takes it:
        connect sends it as a JSON string, and the end it asks for ends the session (its
        request was not JSON, so serve never saw the end; a quote or backslash was refused)."""
        name = 'x"\\\t\u00e9/end'
        self.assertEqual(len(name), 9)
        self.listen("--exit-code=5", opts=["--end-method", name])
        c = self.connect("--end-method", name, "--session", "q")
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        c.close_stdin()
        self.assertEqual(c.wait(5), 5, c.stderr())
        self.assertEqual(self.cookie_pids("q"), [])
        for bad in ("", "x" * 256):
            r = subprocess.run([MCPMUX, "connect", "--end-method", bad, self.path],
                               capture_output=True, timeout=10 * SLOW)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(b"(1 to 255 bytes)", r.stderr)

    def test_connect_reads_what_serve_writes_last_before_it_closes(self):
        """connect takes serve's last lines (the "ended" event after the end's answer, the
        "kept" event) before it closes: serve says no line lost at its close.  (It closed on
        the end's answer, and serve said "session C: 89 bytes queued for it not written"
        after every run.)"""
        srv = self.listen()
        for i in range(5):
            for opts in ([], ["--keep"]):
                c = self.connect(*opts, "--session", "c%d%s" % (i, opts[0] if opts else ""))
                c.send(call(1, "echo", text="x"))
                self.assertEqual(c.msg()["id"], 1)
                c.close_stdin()
                self.assertEqual(c.wait(), 0, c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assertNotIn("lost", srv.stderr())
        self.assertNotIn("not written", srv.stderr())
        self.assertNotIn("not read", srv.stderr())
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

    def test_connect_exits_0_when_its_session_was_suspended(self):
        """A session suspended at its end (--idle-suspend: its last server was ended by
        mcpmux, not by a failure) makes connect exit 0, as wrap does; a session whose
        server exits by itself, with its status."""
        srv = self.listen(opts=["--idle-suspend", "0.3"])
        c = self.connect("--session", "s")
        c.send(initialize(1), call(2, "env"))
        self.assertEqual(c.msg()["id"], 1)
        pid = c.msg()["result"]["structuredContent"]["pid"]
        wait_until(lambda: not alive(pid), 10, "the suspend to end the server")
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())
        c = self.connect("--session", "t")
        c.send(initialize(1), call(2, "exit", code=3))
        self.assertEqual(c.msg()["id"], 1)
        c.close_stdin()
        self.assertEqual(c.wait(), 3, c.stderr())
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


class ListenHardening(ListenHelpers, Case):
    def test_two_servers_on_one_path_exactly_one_wins(self):
        path = os.path.join(self.tmp.name, "race.sock")
        for round_ in range(10):
            a = self.serve(opts=FAST + ["--listen", path])
            b = self.serve(opts=FAST + ["--listen", path])
            loser = wait_until(lambda: [p for p in (a, b) if p.p.poll() is not None], 10,
                               "one of the two to give up")
            self.assertEqual(len(loser), 1, "round %d: both gave up" % round_)
            loser = loser[0]
            winner = b if loser is a else a
            self.assertEqual(loser.wait(), 1)
            self.assertIn("listening on", loser.stderr())
            wait_until(lambda: os.path.exists(path), 5, "the socket")
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)  # the winner's socket is the one in place
            c.close()
            winner.p.send_signal(signal.SIGTERM)
            self.assertEqual(winner.wait(), 0)
            self.assertFalse(os.path.exists(path))

    def test_a_refused_client_already_gone_takes_nothing_down(self):
        """A new session refused (--max-sessions) for a client that has already closed:
        the refusal's write fails inside the session's start, and the client's end is
        handled after it, not in the middle (the entry was freed twice)."""
        srv = self.listen(opts=["--max-sessions", "1"])
        a = self.connect("--session", "a")
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        for i in range(5):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.path)
            s.sendall((json.dumps({"session": "x%d" % i, "message": initialize(1)}) +
                       "\n").encode())
            s.close()  # gone before the refusal is written
        rc, out = self.ctl("stats", as_json=True)
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(json.loads(out)["refused"], 1, out)
        self.assertIsNone(srv.p.poll(), srv.stderr())
        a.send(req(2, "ping"))
        self.assertEqual(a.msg(), {"jsonrpc": "2.0", "id": 2, "result": {}})
        a.close_stdin()
        self.assertEqual(a.wait(), 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.stderr())

    def test_sigterm_with_a_client_that_reads_nothing_ends_in_bounded_time(self):
        """Every session ends at SIGTERM; a client that reads none of its last lines holds
        the exit 5 s at most, and what it did not take is dropped with a warning."""
        srv = self.listen()
        s = socket.socket(socket.AF_UNIX)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(self.path)
        s.sendall(b"".join((json.dumps({"session": "a", "message": m}) + "\n").encode()
                           for m in [initialize(1)] + [call(10 + i, "huge", bytes=1 << 20)
                                                       for i in range(4)]))
        # The four answers come from the server, and wait for the client.
        wait_until(lambda: json.loads(self.ctl("stats", as_json=True)[1])["out"]["bytes"] >=
                   4 << 20, 10, "the answers to be read from the server")
        t0 = time.monotonic()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(15), 0)
        self.assertLess(time.monotonic() - t0, 10 * SLOW)
        self.assertRegex(srv.stderr(), r"clients took not all of their last lines within 5 s: "
                                       r"\d+ bytes are dropped")
        s.close()
        self.assert_no_leftovers(0)

    def connect_to_a_stand_in(self, name, session):
        """connect --session SESSION to a socket this test listens on in serve's place:
        (connect, the accepted connection)."""
        self.path = os.path.join(self.tmp.name, name)
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(self.path)
        srv.listen(1)
        srv.settimeout(10 * SLOW)
        self.addCleanup(srv.close)
        c = self.connect("--session", session)
        conn, _ = srv.accept()
        conn.settimeout(10 * SLOW)
        self.addCleanup(conn.close)
        return c, conn

    def test_connect_takes_an_older_serves_unnamed_refusal_of_its_end(self):
        """A serve older than connect refuses a session of another connection with id
        null: connect still takes that for its end's refusal (exit 1), and does not wait."""
        c, conn = self.connect_to_a_stand_in("old.sock", "theirs")
        c.send(req(1, "ping"))
        f = conn.makefile("rb")
        refusal = {"session": "theirs", "message": {
            "jsonrpc": "2.0", "id": None, "error": {
                "code": -32000, "message": "session belongs to another connection (only "
                "kept sessions can be taken over)"}}}
        for want in (1, "mcpmux-connect-end"):  # the ping, then connect's own end
            env = json.loads(f.readline())
            self.assertEqual((env["session"], env["message"]["id"]), ("theirs", want))
            conn.sendall((json.dumps(refusal) + "\n").encode())
            if want == 1:
                self.assertIsNone(c.msg()["id"])  # before the end: the client's
                c.close_stdin()
        self.assertEqual(c.wait(5), 1)
        self.assertIn("the session's end was refused", c.stderr())

    def test_connect_takes_the_status_of_an_end_of_any_length(self):
        """An end-of-run result, or an "ended" event, longer than a kilobyte (a long
        "abandoned" list): connect exits with its status, 128 + the signal, as wrap does."""
        pids = list(range(4194000, 4194150))
        for ended_event in (False, True):
            c, conn = self.connect_to_a_stand_in("long%d.sock" % ended_event, "long")
            c.send(req(1, "ping"))
            f = conn.makefile("rb")
            self.assertEqual(json.loads(f.readline())["message"]["id"], 1)
            c.close_stdin()
            self.assertEqual(json.loads(f.readline())["message"]["id"], "mcpmux-connect-end")
            end = {"session": "long", "pid": 4193999, "exit": {"signal": "SIGKILL"},
                   "escalation": "abandoned", "ms": 2000, "abandoned": pids}
            if ended_event:
                line = dict(end, event="ended")
            else:
                line = {"session": "long", "message": {
                    "jsonrpc": "2.0", "id": "mcpmux-connect-end", "result": end}}
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            self.assertGreater(len(data), 1024)
            conn.sendall(data)
            self.assertEqual(c.wait(5), 128 + signal.SIGKILL, (ended_event, c.stderr()))

    def test_connect_never_waits_for_an_end_that_cannot_come(self):
        """connect with nothing on stdin has no session to end; a session of another
        connection cannot be ended from this one (refused: exit 1); and a second signal,
        or one after stdin's EOF, ends the wait for an end that takes long."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve("--ignore-eof", opts=FAST + ["--eof-grace", "30000", "--listen",
                                                      self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        c = self.connect("--session", "empty")
        c.close_stdin()
        self.assertEqual(c.wait(5), 0)
        a = self.connect("--session", "dup")
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        b = self.connect("--session", "dup")
        b.send(req(2, "ping"))
        m = b.msg()
        self.assertIn("another connection", m["error"]["message"])
        self.assertEqual(m["id"], 2, "the refusal names the request it refuses")
        b.close_stdin()
        self.assertEqual(b.wait(5), 1)
        self.assertIn("the session's end was refused", b.stderr())
        # a request refused while connect is already ending is the client's, not the end's
        b = self.connect("--session", "dup")
        b.send(req(3, "ping"))
        b.close_stdin()
        m = b.msg()
        self.assertEqual((m["id"], m["error"]["code"]), (3, -32000), m)
        self.assertEqual(b.read_to_eof(), b"")
        self.assertEqual(b.wait(5), 1)
        self.assertIn("the session's end was refused", b.stderr())
        # a's server ignores its EOF: its end takes --eof-grace, 30 s
        a.p.send_signal(signal.SIGTERM)  # the first: asks for the end, and waits for it
        wait_until(lambda: "ending" in self.ctl("list")[1], 5, "the session's end to begin")
        self.assertIsNone(a.p.poll(), "the first signal only asks for the end")
        a.p.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(5), 128 + signal.SIGTERM)
        self.assertIn("again: exiting without waiting", a.stderr())
        self.assertIn("dup", self.ctl("list")[1], "the session still ends, in serve")
        # The TypeScript SDK's close(): stdin's end, then SIGTERM 2 s later: connect exits
        # at once, and says nothing of it (the client's own close).
        d = self.connect("--session", "sdk")
        d.send(initialize(1))
        self.assertEqual(d.msg()["id"], 1)
        d.close_stdin()

        def session(name, pred):
            return lambda: any(s["session"] == name and pred(s) for s in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"])

        def ending(name):
            return session(name, lambda s: s["state"] == "ending")
        wait_until(ending("sdk"), 5, "the session's end to begin")
        d.p.send_signal(signal.SIGTERM)
        self.assertEqual(d.wait(5), 128 + signal.SIGTERM)
        self.assertNotIn("exiting without waiting", d.stderr(), "the client's own close")
        # Such a signal with answers still queued for a client that does not read them:
        # what its pipe takes now, whole lines only, and what was left is said.
        e = self.connect("--session", "big")
        e.send(initialize(1))
        self.assertEqual(e.msg()["id"], 1)
        e.send(call(2, "huge", bytes=3_000_000))
        e.send(call(3, "echo", text="after"))
        wait_until(session("big", lambda s: s["out"]["messages"] == 3), 5,
                   "both answers, sent to connect")
        e.close_stdin()
        wait_until(ending("big"), 5, "the session's end to begin")
        e.p.send_signal(signal.SIGTERM)
        self.assertEqual(e.wait(5), 128 + signal.SIGTERM)
        self.assertIn("Terminated: the client did not read its last", e.stderr())
        self.assertIn("(2 messages, one of them cut, ids 3)", e.stderr())
        # A signal after stdout went (with stdin open) is said as one after stdout's end.
        f = self.connect("--session", "gone")
        f.send(initialize(1))
        self.assertEqual(f.msg()["id"], 1)
        f.p.stdout.close()
        f.send(req(2, "ping"))  # its answer finds stdout gone: the session's end is asked
        wait_until(ending("gone"), 5, "the session's end to begin")
        f.p.send_signal(signal.SIGTERM)
        self.assertEqual(f.wait(5), 128 + signal.SIGTERM)
        self.assertIn("Terminated after the end of stdout: exiting without waiting", f.stderr())
        # Not 30 s more: serve is killed, and its keeper ends the server at once.
        srv.kill()
        srv.wait()
        self.assert_no_leftovers(5)

    def test_the_typescript_sdks_close_through_connect_says_nothing(self):
        """The TypeScript SDK's close() ends connect's stdin, then sends SIGTERM 2 s later:
        connect exits 128 + the signal without waiting for the session's end and without a
        word, as wrap does (and the server run directly), and serve says no loss of the
        end's result that nobody waits for; the run ends all the same.  With -v, connect
        says why it did not wait."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve("--ignore-eof", opts=FAST + ["--eof-grace", "1500", "--listen",
                                                      self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")

        def listed():
            return [s["session"] for s in
                    json.loads(self.ctl("list", as_json=True)[1])["sessions"]]

        def states():
            return {s["session"]: s["state"] for s in
                    json.loads(self.ctl("list", as_json=True)[1])["sessions"]}
        for name, opts in (("sdk", []), ("sdk-v", ["-v"])):
            c = self.connect(*opts, "--session", name)
            c.send(initialize(1))
            self.assertEqual(c.msg()["id"], 1)
            c.close_stdin()
            wait_until(lambda: states().get(name) == "ending", 5, "the session's end to begin")
            c.p.send_signal(signal.SIGTERM)
            self.assertEqual(c.wait(5), 128 + signal.SIGTERM)
            said = "Terminated after the end of stdin: exiting without waiting"
            if opts:
                self.assertIn(said, c.stderr())
            else:
                self.assertEqual(c.stderr(), "")
            wait_until(lambda: name not in listed(), 10, "the run to end", srv.stderr)
        self.assertNotIn("lost", srv.stderr())
        self.assertNotIn("mcpmux-connect-end", srv.stderr())

    def test_connect_outlives_the_signals_its_caller_ignored(self):
        """Under nohup (SIGHUP ignored), or as a background job of a shell without job
        control (SIGINT ignored), connect outlives those signals, as a server run
        directly in its place would: its session goes on with the same server.  SIGTERM
        still ends the session, and connect exits with its status."""
        def caller():
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve(opts=FAST + ["--listen", self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        c = self.start([MCPMUX, "connect", "--session", "nohup", self.path],
                       preexec_fn=caller)
        c.send(call(1, "env"))
        pid = c.msg()["result"]["structuredContent"]["pid"]
        c.p.send_signal(signal.SIGHUP)
        c.p.send_signal(signal.SIGINT)
        # connect has woken up to the signals by the time it has relayed two answers since
        for i in (2, 3):
            c.send(call(i, "env"))
            self.assertEqual(c.msg()["result"]["structuredContent"]["pid"], pid)
        c.p.send_signal(signal.SIGTERM)
        self.assertEqual(c.wait(5), 0, c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(5), 0)
        self.assert_no_leftovers(0)

    def test_connect_exits_0_when_nothing_it_sent_starts_a_session(self):
        """Lines that serve answers itself (JSON that is not JSON-RPC, the client's own
        end-of-run) start no server: nothing failed, connect exits 0 once their answers
        are written, as wrap does after the same lines; a session whose server cannot be
        started (--max-sessions) still exits 1."""
        srv = self.listen(opts=["--max-sessions", "1"])
        lines = b'{"foo":1}\n42\n{"jsonrpc":"2.0","id":7}\n'
        w = self.wrap()
        w.write(lines)
        w.close_stdin()
        c = self.connect("--session", "none")
        c.write(lines)
        c.send(req(8, "mcpmux/endRun"))
        c.close_stdin()
        for p in (w, c):
            for want in (None, None, 7):
                self.assert_error(p.msg(), want, -32600)
        self.assertEqual(self.assert_response(c.msg(), 8)["exit"], None)
        self.assertEqual(c.read_to_eof(), b"", "connect's own end is not the client's")
        self.assertEqual(w.read_to_eof(), b"")
        self.assertEqual(w.wait(), 0, w.stderr())
        self.assertEqual(c.wait(5), 0, c.stderr())
        # a server that cannot be started: the one slot is a's
        a = self.connect("--session", "a")
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        b = self.connect("--session", "b")
        b.send(req(2, "ping"))
        b.close_stdin()
        self.assertIn("too many sessions", self.assert_error(b.msg(), 2, -32000)["message"])
        self.assertEqual(b.read_to_eof(), b"")
        self.assertEqual(b.wait(5), 1, b.stderr())
        a.close_stdin()
        self.assertEqual(a.wait(), 0, a.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_connect_says_why_serve_started_no_server_for_a_notification(self):
        """serve's error in the session's envelope, for no request (a server that could
        not be started for a notification): connect says it on stderr, and exits 1."""
        srv = self.listen(opts=["--max-sessions", "1"])
        a = self.connect("--session", "a")
        a.send(initialize(1))
        self.assertEqual(a.msg()["id"], 1)
        b = self.connect("--session", "b")
        b.send(note("notifications/initialized"))
        b.close_stdin()
        self.assertEqual(b.read_to_eof(), b"")
        self.assertEqual(b.wait(5), 1, b.stderr())
        self.assertIn("serve: session b: {\"code\":-32000,\"message\":\"too many sessions",
                      b.stderr())
        a.close_stdin()
        self.assertEqual(a.wait(), 0, a.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_never_blocks_on_a_stderr_nobody_reads(self):
        """A host that pipes connect's stderr and has stopped reading it (the pipe is
        full): connect's warnings are dropped, never waited for, so the session's answers
        keep coming; at exit it waits for that reader a bounded time only."""
        srv = self.listen()
        r, wfd = os.pipe()
        self.addCleanup(os.close, r)
        os.set_blocking(wfd, False)  # filled here; connect gets it blocking
        try:
            while True:
                os.write(wfd, b"x" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(wfd, True)
        try:
            c = self.start([MCPMUX, "connect", "--max-message", "200", "--session", "a",
                            self.path], stderr=wfd)
        finally:
            os.close(wfd)
        c.send(req(1, "ping"))
        self.assertEqual(c.msg()["id"], 1)
        for i in range(3):  # notifications over the bound: a warning each, for stderr
            c.send(note("notifications/x", {"pad": "y" * 300}))
            c.send(req(2 + i, "ping"))
            self.assertEqual(c.msg()["id"], 2 + i)
        t0 = time.monotonic()
        c.close_stdin()
        self.assertEqual(c.wait(10), 0)
        self.assertLess(time.monotonic() - t0, 2 + 3 * SLOW)  # its stderr waited 2 s at most
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_writes_all_it_received_when_serve_goes_away(self):
        """serve closes the socket while connect still has its session's messages queued
        for a client that reads stdout later: connect stops reading stdin, writes every
        one of them, then exits 1 (no end came), or with the session's status when its
        "ended" event came before the close."""
        self.path = os.path.join(self.tmp.name, "fake.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(self.path)
        srv.listen(2)
        self.addCleanup(srv.close)
        pad = "x" * 100000
        n = 80  # 8 MB: more than stdout's pipe holds, less than connect's --max-queue
        for ended, status in ((None, 1), ({"code": 3}, 3)):
            c = self.start([MCPMUX, "connect", "-v", "--session", "s", self.path])
            c.send(req("first", "ping"))
            srv.settimeout(10 * SLOW)
            conn, _ = srv.accept()
            conn.settimeout(30 * SLOW)
            self.assertEqual(json.loads(conn.makefile("rb").readline())["session"], "s")
            out = b"".join((json.dumps({"session": "s", "message": {
                "jsonrpc": "2.0", "id": i, "result": {"pad": pad}}}) + "\n").encode()
                for i in range(n))
            if ended is not None:
                out += (json.dumps({"session": "s", "event": "ended", "exit": ended})
                        + "\n").encode()
            conn.sendall(out)
            conn.close()  # serve goes away; nothing of stdout has been read yet
            wait_until(lambda: "the serve socket closed" in c.stderr(), 30,
                       "connect to read the socket to its EOF", c.stderr)
            for i in range(n):
                self.assertEqual(c.msg(30), {"jsonrpc": "2.0", "id": i,
                                             "result": {"pad": pad}})
            self.assertEqual(c.read_to_eof(30), b"")
            self.assertEqual(c.wait(10), status, c.stderr())
            self.assertEqual("the serve socket closed before the session ended" in c.stderr(),
                             ended is None, c.stderr())

    def test_connections_are_bounded_by_max_sessions(self):
        """At most --max-sessions + 64 connections: the next is told why and closed, the
        others go on, and a connection that goes makes room for another."""
        srv = self.listen(opts=["--max-sessions", "2"])

        def stats(sock):
            sock.sendall(b'{"message":{"jsonrpc":"2.0","id":1,"method":"mcpmux/stats"}}\n')
            line = sock.makefile("rb").readline()
            return json.loads(line) if line else None

        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(67):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10 * SLOW)
            s.connect(self.path)
            socks.append(s)
        refused = socks.pop()
        line = refused.makefile("rb").readline()
        self.assertIn(b"too many connections (66, --max-sessions + 64)", line)
        self.assertEqual(refused.recv(1), b"")
        refused.close()
        wait_until(lambda: "refusing connections: 66 are open" in srv.stderr(), 5,
                   "the refusal to be said")
        self.assertEqual(stats(socks[1])["message"]["result"]["connections"], 66)
        socks.pop(0).close()

        def a_new_one_is_served():
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10 * SLOW)
            s.connect(self.path)
            socks.append(s)
            m = stats(s)
            return m is not None and "message" in m
        wait_until(a_new_one_is_served, 5, "room for a new connection")
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_kept_sessions_that_never_start_are_bounded(self):
        """{"session":ID,"keep":true} for new IDs makes entries with no server: as many as
        --max-sessions, no more (a client could otherwise grow mcpmux without bound)."""
        srv = self.listen(opts=["--max-sessions", "3"])
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.path)
        s.sendall(b"".join((json.dumps({"session": "k%d" % i, "keep": True}) + "\n").encode()
                           for i in range(8)))
        f = s.makefile("rb")
        got = [json.loads(f.readline()) for _ in range(8)]
        self.assertEqual([g["session"] for g in got if g.get("event") == "kept"],
                         ["k0", "k1", "k2"])
        refused = [g for g in got if "message" in g]
        self.assertEqual(len(refused), 5)
        self.assertIn("too many kept sessions", refused[0]["message"]["error"]["message"])
        rc, out = self.ctl("stats", as_json=True)
        self.assertEqual(json.loads(out)["kept"], 3)
        f.close()
        s.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_exit_leaves_another_socket_alone(self):
        """The socket file is removed at exit only if it is still the one serve made."""
        a = self.listen()
        os.unlink(self.path)
        other = socket.socket(socket.AF_UNIX)
        other.bind(self.path)
        other.listen()
        ino = os.stat(self.path).st_ino
        a.p.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(), 0)
        self.assertTrue(os.path.exists(self.path), "serve removed a socket that was not its own")
        self.assertEqual(os.stat(self.path).st_ino, ino)
        other.close()

    def test_a_server_whose_socket_was_removed_still_holds_the_path(self):
        a = self.listen()
        os.unlink(self.path)
        b = self.serve(opts=FAST + ["--listen", self.path])
        self.assertEqual(b.wait(10), 1)
        self.assertIn("another mcpmux serve is listening", b.stderr())
        a.p.send_signal(signal.SIGTERM)
        self.assertEqual(a.wait(), 0)

    def test_connect_refuses_a_server_of_another_user(self):
        self.path = os.path.join(self.tmp.name, "other.sock")
        os.chmod(self.tmp.name, 0o777)
        code = ("import socket,os,time\n"
                "s=socket.socket(socket.AF_UNIX); s.bind(%r); os.chmod(%r,0o777); s.listen()\n"
                "c,_=s.accept(); time.sleep(30)\n" % (self.path, self.path))
        self.start(["python3", "-c", code], stdin=False, stdout=False,
                   preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        wait_until(lambda: os.path.exists(self.path), 5, "the other user's socket")
        c = self.connect("--session", "x")
        self.assertEqual(c.wait(10), 1)
        self.assertIn("uid 65534", c.stderr())

    def full_backlog(self, name):
        """A listener that never accepts, its backlog (listen(0)) full with one pending
        connection: a serve that is stopped or stuck.  Returns (listener, pending)."""
        self.path = os.path.join(self.tmp.name, name)
        lst = socket.socket(socket.AF_UNIX)
        self.addCleanup(lst.close)
        lst.bind(self.path)
        lst.listen(0)
        pending = socket.socket(socket.AF_UNIX)
        self.addCleanup(pending.close)
        pending.setblocking(False)
        pending.connect(self.path)
        probe = socket.socket(socket.AF_UNIX)
        probe.setblocking(False)
        with self.assertRaises(BlockingIOError, msg="the backlog is full"):
            probe.connect(self.path)
        probe.close()
        return lst, pending

    def test_ctl_and_connect_give_up_on_a_serve_that_accepts_nothing(self):
        """A serve whose backlog is full (stopped, stuck) does not hold ctl or connect:
        each waits 5 s for room, then exits 1 and says so; room in time lets them through."""
        lst, pending = self.full_backlog("stuck.sock")
        for argv in (["ctl", self.path, "list"], ["connect", "--session", "s", self.path]):
            t0 = time.monotonic()
            p = self.start([MCPMUX] + argv, stdout=False)
            self.assertEqual(p.wait(15), 1, argv)
            self.assertGreater(time.monotonic() - t0, 4, "waits 5 s for room")
            self.assertIn("its serve accepts no connection (none was taken within 5 s: is "
                          "it stopped or stuck?)", p.stderr())
        # room in the backlog within the 5 s: ctl connects, and takes the answer
        p = self.start([MCPMUX, "ctl", "--json", self.path, "stats"])
        time.sleep(1)
        self.assertIsNone(p.p.poll(), p.stderr())
        lst.accept()[0].close()  # the pending one: room for ctl's
        lst.settimeout(10)
        conn, _ = lst.accept()
        conn.settimeout(10 * SLOW)
        self.addCleanup(conn.close)
        request = json.loads(conn.makefile("rb").readline())
        self.assertEqual(request["message"]["method"], "mcpmux/stats")
        conn.sendall(b'{"message":{"jsonrpc":"2.0","id":1,"result":{"sessions":7}}}\n')
        self.assertEqual(json.loads(p.read_to_eof()), {"sessions": 7})
        self.assertEqual(p.wait(5), 0, p.stderr())

    def test_connect_says_what_its_stdout_lost(self):
        """Answers that connect cannot write, its stdout closed by the client (EPIPE) or
        full (/dev/full), are said on stderr as wrap says them (connect said nothing, and
        they were lost unseen), with the cause: a full disk is not a client gone.  connect
        exits with its server's status all the same."""
        srv = self.listen()
        r, w = os.pipe()
        os.close(r)
        full = open("/dev/full", "wb")
        for n, (out, why) in enumerate(((w, "the client closed its stdout"),
                                        (full, "writing to stdout failed (No space left on "
                                         "device)"))):
            p = subprocess.run([MCPMUX, "connect", "--session", "lost%d" % n, self.path],
                               input=encode(initialize(1)) + encode(req(2, "ping")),
                               stdout=out, stderr=subprocess.PIPE, timeout=30 * SLOW,
                               env=self.env)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stderr.decode(), r"(?m)^mcpmux: %s before its last \d+ bytes "
                             r"\(\d messages?, ids 1(, 2)?\): exiting without them\n"
                             % re.escape(why))
            if out is full:
                self.assertNotIn("closed its stdout", p.stderr.decode())
        os.close(w)
        full.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_says_a_stdout_closed_at_its_last_write_after_the_signal(self):
        """A client that stopped reading, and closed its end, before connect's last write at
        a signal (EPIPE there) lost what was queued for it: said after the signal, as wrap
        says it.  (A socket: its shutdown for reading wakes no writer, so the last write is
        the first to fail.)"""
        srv = self.listen()
        mine, theirs = socket.socketpair()
        self.addCleanup(mine.close)
        p = self.start([MCPMUX, "connect", "--session", "big", self.path],
                       stdout=theirs.fileno())
        theirs.close()
        p.send(initialize(1))
        mine.settimeout(10 * SLOW)
        self.assertEqual(json.loads(mine.makefile("rb").readline())["id"], 1)
        p.send(call(2, "huge", bytes=3_000_000))
        p.send(call(3, "echo", text="after"))

        def session(pred):
            return lambda: any(s["session"] == "big" and pred(s) for s in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"])
        wait_until(session(lambda s: s["out"]["messages"] == 3), 5,
                   "both answers, sent to connect")
        p.close_stdin()
        # (the fixture exits at its EOF: the session may be over, and gone, already)
        wait_until(lambda: not session(lambda s: s["state"] == "running")(), 5,
                   "the session's end to begin")
        mine.shutdown(socket.SHUT_RD)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 128 + signal.SIGTERM)
        self.assertRegex(p.stderr(), r"(?m)^mcpmux: Terminated: the client closed its stdout "
                         r"before its last \d+ bytes \(2 messages, one of them cut, ids 3\): "
                         r"exiting without them\n")
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def connect_with_answers_unread(self):
        """serve --listen, and connect to session "big" on a pipe that its test reads
        only the initialize answer of: a 3 MB answer and a small one are passed on to
        connect, unread.  (serve, connect, the pipe's read end, session(pred): a wait for
        the session as ctl list shows it.)"""
        srv = self.listen()
        r, w = os.pipe()
        p = self.start([MCPMUX, "connect", "--session", "big", self.path], stdout=w)
        os.close(w)
        out = os.fdopen(r, "rb")
        self.addCleanup(out.close)
        p.send(initialize(1))
        self.assertEqual(json.loads(out.readline())["id"], 1)
        p.send(call(2, "huge", bytes=3_000_000))
        p.send(call(3, "echo", text="after"))

        def session(pred):
            return lambda: any(s["session"] == "big" and pred(s) for s in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"])
        wait_until(session(lambda s: s["out"]["messages"] == 3), 5,
                   "both answers, sent to connect")
        return srv, p, out, session

    def assert_lost_after_sigterm(self, p):
        self.assertRegex(p.stderr(), r"(?m)^mcpmux: Terminated: the client closed its stdout "
                         r"before its last \d+ bytes \(2 messages, one of them cut, ids 3\): "
                         r"exiting without them\n")

    def test_connect_says_a_stdout_closed_after_its_first_signal_with_the_signal(self):
        """A client that closes its stdout while connect waits for the end that its first
        signal asked for, with messages left for it, lost them after the signal: said with
        the signal's name, and connect exits 128 + the signal, as wrap does, not with the
        session's status."""
        srv, p, out, session = self.connect_with_answers_unread()
        p.p.send_signal(signal.SIGTERM)
        # (the end that the signal asks for: the session may be over, and gone, already)
        wait_until(lambda: not session(lambda s: s["state"] == "running")(), 5,
                   "the session's end to begin")
        out.close()
        self.assertEqual(p.wait(10), 128 + signal.SIGTERM, p.stderr())
        self.assert_lost_after_sigterm(p)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_own_failure_after_its_first_signal_stays_1(self):
        """As above, but serve goes (SIGKILL, stopped first so that it cannot end the
        session) before the client closes its stdout: connect's own failure, "the serve
        socket closed before the session ended", exits 1, which the signal's status does
        not replace."""
        srv, p, out, _ = self.connect_with_answers_unread()
        srv.p.send_signal(signal.SIGSTOP)
        p.p.send_signal(signal.SIGTERM)
        srv.p.send_signal(signal.SIGKILL)
        srv.wait()
        wait_until(lambda: "the serve socket closed before the session ended" in p.stderr(),
                   10, "connect to find serve gone")
        out.close()
        self.assertEqual(p.wait(10), 1, p.stderr())
        self.assert_lost_after_sigterm(p)
        self.assert_no_leftovers(10, "serve's server, ended by its keeper")

    def test_ctl_and_connect_say_what_is_not_a_socket(self):
        """A PATH that is a file or a directory, not a socket, is said to be one (Linux
        refuses such a connect as if nobody listened: "Connection refused" sent the user
        looking for a serve that is not running); an empty PATH is no file at all."""
        os.makedirs(os.path.join(self.tmp.name, "dir"))
        path = os.path.join(self.tmp.name, "file")
        with open(path, "w"):
            pass
        for where in (path, os.path.join(self.tmp.name, "dir")):
            for argv in (["ctl", where, "list"], ["connect", "--session", "s", where]):
                p = self.start([MCPMUX] + argv, stdout=False)
                self.assertEqual(p.wait(10), 1, argv)
                self.assertEqual(p.stderr(), "mcpmux: cannot connect to '%s': it is not a "
                                 "socket (give the PATH of `mcpmux serve --listen PATH`)\n"
                                 % where, argv)
        for argv in (["ctl", "", "list"], ["connect", "--session", "s", ""]):
            p = self.start([MCPMUX] + argv, stdout=False, env=dict(self.env, LC_ALL="C"))
            self.assertEqual(p.wait(10), 1, argv)
            self.assertIn("mcpmux: cannot connect to '': No such file or directory",
                          p.stderr(), argv)

    def test_ctl_list_shows_what_serve_does_not_give_as_a_dash(self):
        """A kept session with no message yet has no server and no age: its PID, AGE and
        IDLE are '-' in ctl list (they were 0, a pid that is no process's)."""
        srv = self.listen()
        c = self.connect("--keep", "--session", "k")
        wait_until(lambda: "\nk " in self.ctl("list")[1], 10, "the kept session")
        rc, out = self.ctl("list")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"(?m)^k\s+-\s+not started\s+-\s+-\s+0\s+0\s+kept connected$")
        c.send(call(1, "env"))
        pid = c.msg()["result"]["structuredContent"]["pid"]
        rc, out = self.ctl("list")
        self.assertRegex(out, r"(?m)^k\s+%d\s+running\s+\d+\.\ds\s+\d+\.\ds\s" % pid)
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        self.assertEqual(self.ctl("end", "k")[0], 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_ctl_list_columns_line_up_with_a_long_id_and_a_session_not_started(self):
        """Each column of ctl list is as wide as its widest cell: with a session ID of 128
        bytes (the most) and a state of "not started", every cell of every row starts
        (left-aligned) or ends (right-aligned) under its header, and the IDs are whole
        (the SESSION column was 36 wide and STATE 8, and such rows were shifted)."""
        long_id = "long-" + "a" * 122 + "z"
        self.assertEqual(len(long_id), 128)
        srv = self.listen()
        k = self.connect("--keep", "--session", "k")
        c = self.connect("--session", long_id)
        c.send(call(1, "env"))
        pid = c.msg()["result"]["structuredContent"]["pid"]
        wait_until(lambda: "\nk " in self.ctl("list")[1], 10, "the kept session")
        rc, out = self.ctl("list")
        self.assertEqual(rc, 0, out)
        lines = out.splitlines()
        self.assertEqual((len(lines), lines[-1]), (4, "2 session(s)"), out)
        head = lines[0]
        rows = {r.split(" ", 1)[0]: r for r in lines[1:3]}
        self.assertEqual(set(rows), {"k", long_id}, out)
        cols = [("SESSION", "l"), ("PID", "r"), ("STATE", "l"), ("AGE", "r"), ("IDLE", "r"),
                ("MSGS IN", "r"), ("MSGS OUT", "r"), ("FLAGS", "l")]
        want = {"k": ["k", "-", "not started", "-", "-", "0", "0", "kept connected"],
                long_id: [long_id, str(pid), "running", None, None, None, None, "connected"]}
        for name, row in rows.items():
            for (title, align), cell in zip(cols, want[name]):
                at = head.index(title)
                if align == "l":
                    self.assertTrue(at == 0 or row[at - 1] == " ", (title, out))
                    if cell is not None:
                        self.assertEqual(row[at:at + len(cell)], cell, (title, out))
                else:
                    end = at + len(title)
                    self.assertTrue(row[end - 1] != " " and row[end] == " ", (title, out))
                    if cell is not None:
                        self.assertEqual(row[end - len(cell) - 1:end], " " + cell,
                                         (title, out))
            self.assertTrue(row.endswith(want[name][-1]), out)
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        k.close_stdin()
        self.assertEqual(k.wait(), 0)
        self.assertEqual(self.ctl("end", "k")[0], 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_ctl_ends_a_session_whose_id_starts_with_a_dash(self):
        """A session ID may start with '-': after --, ctl takes it as the session to end
        (before, it was an unknown option, and such a kept session could not be ended)."""
        srv = self.listen()
        c = self.connect("--keep", "--session", "-k")
        c.send(call(1, "env"))
        pid = c.msg()["result"]["structuredContent"]["pid"]
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        rc, out = self.ctl("end", "-k")
        self.assertEqual(rc, 2, "an option, without --")
        self.assertTrue(alive(pid))
        rc, out = self.ctl("end", "--", "-k")
        self.assertEqual(rc, 0)
        self.assertIn("session -k ended", out)
        self.assertFalse(alive(pid))
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_ctl_exits_1_when_its_output_cannot_be_written(self):
        srv = self.listen()
        for args in (["list"], ["--json", "stats"], ["end", "none"]):
            with open("/dev/full", "wb") as full:
                p = subprocess.run([MCPMUX, "ctl", self.path] + args, stdout=full,
                                   stderr=subprocess.PIPE, timeout=10 * SLOW, env=self.env)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn(b"cannot write to stdout: No space left on device", p.stderr)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_ctl_waits_for_room_in_a_full_non_blocking_stdout(self):
        """A full non-blocking stdout (a pipe its reader shares with others) is waited on,
        as config's is, where stdio failed on EAGAIN and cut the output short."""
        srv = self.listen()
        for args, want in ((["list"], "0 session(s)\n"), (["end", "none"],
                                                           "session none: not running\n")):
            rc, out, err = run_on_a_full_stdout([MCPMUX, "ctl", self.path] + args, self.env)
            self.assertEqual(rc, 0, (args, err))
            self.assertNotIn("cannot write", err)
            self.assertTrue(out.decode().endswith(want), (args, out))
        rc, out, err = run_on_a_full_stdout([MCPMUX, "ctl", "--json", self.path, "stats"],
                                            self.env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["sessions"], 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def fast_clock_ctl(self, *args):
        """ctl on self.path with a clock 20 times as fast (libfaketime: its 60 s are 3 s)."""
        env = dict(self.env, LD_PRELOAD=FAKETIME, FAKETIME="+0 x20")
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        return self.start([MCPMUX, "ctl", self.path] + list(args), env=env)

    def fake_serve(self):
        """A listening socket at self.path in place of serve's (closed at the test's end)."""
        self.path = os.path.join(self.tmp.name, "fake.sock")
        lst = socket.socket(socket.AF_UNIX)
        self.addCleanup(lst.close)
        lst.bind(self.path)
        lst.listen(1)
        lst.settimeout(10 * SLOW)
        return lst

    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_ctl_limits_the_whole_reply_not_each_read(self):
        """A serve that sends a byte now and then, never a whole line, does not hold ctl:
        its 60 s are for the whole reply."""
        lst = self.fake_serve()
        p = self.fast_clock_ctl("list")
        conn, _ = lst.accept()
        conn.settimeout(10 * SLOW)
        self.addCleanup(conn.close)
        self.assertEqual(json.loads(conn.makefile("rb").readline())["message"]["method"],
                         "mcpmux/list")
        t0 = time.monotonic()
        end = t0 + 15 * SLOW
        while p.p.poll() is None and time.monotonic() < end:
            try:
                conn.sendall(b" ")  # one byte every 0.2 s: 4 s of ctl's clock
            except BrokenPipeError:
                break  # ctl is gone
            time.sleep(0.2)
        self.assertEqual(p.wait(1), 1, p.stderr())
        self.assertIn("no reply from '%s' within 60 s" % self.path, p.stderr())
        self.assertLess(time.monotonic() - t0, 10 * SLOW)

    def test_ctl_bounds_the_line_it_takes(self):
        """A peer that streams bytes without a line's end does not grow ctl for the 60 s
        of its reply: past 64 MiB, ctl exits 1 and says so, the connection still open."""
        lst = self.fake_serve()
        p = self.start([MCPMUX, "ctl", self.path, "list"])
        conn, _ = lst.accept()
        conn.settimeout(10 * SLOW)
        self.addCleanup(conn.close)
        self.assertEqual(json.loads(conn.makefile("rb").readline())["message"]["method"],
                         "mcpmux/list")
        chunk, sent = b"x" * (1 << 20), 0
        while sent < 80 << 20:
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # ctl is gone
            sent += len(chunk)
        self.assertEqual(p.wait(10), 1, p.stderr())
        self.assertIn("'%s' sent over 64 MiB without a line's end: not a reply of serve"
                      % self.path, p.stderr())

    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_ctl_end_waits_as_long_as_serves_teardown_can_take(self):
        """ctl end learns from mcpmux/stats how long serve's teardowns take at most, and
        waits that long on top of its 60 s: an end that takes 80 s (of ctl's clock) is
        waited for; one that takes longer than both is given up.  serve says it:
        --eof-grace + --term-grace + --kill-deadline + 1 s."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve(opts=["--eof-grace", "75000", "--term-grace", "300", "--listen",
                               self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        rc, out = self.ctl("stats", as_json=True)
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out)["teardown_max_s"], 81.3)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        result = {"session": "k", "pid": 42, "exit": {"signal": "SIGTERM"},
                  "escalation": "term", "ms": 80000}
        for teardown, rc, said in ((30, 0, "session k ended: escalation term, killed by "
                                    "SIGTERM, 80000 ms"), (10, 1, "within 70 s")):
            lst = self.fake_serve()
            p = self.fast_clock_ctl("end", "k")
            conn, _ = lst.accept()
            conn.settimeout(10 * SLOW)
            self.addCleanup(conn.close)
            f = conn.makefile("rb")
            t0 = time.monotonic()
            while True:
                line = f.readline()
                self.assertTrue(line, "no end from ctl: " + p.stderr())
                m = json.loads(line)["message"]
                if m["method"] != "mcpmux/stats":
                    break
                conn.sendall((json.dumps({"message": {"jsonrpc": "2.0", "id": m["id"],
                              "result": {"sessions": 1, "teardown_max_s": teardown}}})
                              + "\n").encode())
            self.assertEqual((m["method"], m["params"]["session"]), ("mcpmux/endRun", "k"))
            if rc == 0:
                time.sleep(max(0, 4 - (time.monotonic() - t0)))  # the teardown: 80 s of ctl's
                try:
                    conn.sendall((json.dumps({"message": {"jsonrpc": "2.0", "id": m["id"],
                                                          "result": result}}) + "\n").encode())
                except BrokenPipeError:
                    pass  # ctl is gone: said below
            self.assertEqual(p.wait(10), rc, p.stderr())
            self.assertIn(said, p.read_to_eof().decode() if rc == 0 else p.stderr())
            conn.close()
            lst.close()
            os.unlink(self.path)

    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_connect_waits_for_its_end_as_long_as_serves_teardown_can_take(self):
        """After stdin's EOF, connect waits for the session's end 60 s, and as long again
        as serve says its teardowns take at most (teardown_max_s of mcpmux/stats, asked
        with the end): an end that takes 70 s (of connect's clock) is waited for; a serve
        that is stopped holds connect 60 s, then connect exits 1 and says so."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        # teardown_max_s: 3.5 + 0.3 + 30 + 1 s; the end takes --eof-grace, 3.5 s (70 s
        # of connect's clock), then SIGTERM
        srv = self.serve("--ignore-eof", opts=["--eof-grace", "3500", "--term-grace", "300",
                                               "--kill-deadline", "30000", "--listen",
                                               self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        env = dict(self.env, LD_PRELOAD=FAKETIME, FAKETIME="+0 x20")
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        c = self.start([MCPMUX, "connect", "--session", "slow", self.path], env=env)
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        c.close_stdin()
        self.assertEqual(c.wait(15), 128 + signal.SIGTERM, c.stderr())
        self.assertNotIn("did not end", c.stderr())
        # a serve that is stopped: 60 s of connect's clock (3 s), not for ever
        c = self.start([MCPMUX, "connect", "--session", "stopped", self.path], env=env)
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        srv.p.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            c.close_stdin()
            self.assertEqual(c.wait(15), 1, c.stderr())
            self.assertGreater(time.monotonic() - t0, 2.5, "60 s of connect's clock")
            self.assertIn("serve did not end session stopped within 60 s of the end of "
                          "stdin (is it stopped or stuck?)", c.stderr())
        finally:
            srv.p.send_signal(signal.SIGCONT)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(15), 0, srv.stderr())
        self.assert_no_leftovers(5)

    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_connect_end_wait_does_not_count_a_stdout_that_is_slow(self):
        """A client that closes stdin, then takes its answers late (a pipeline's slow
        reader): connect reads serve no further while its stdout takes nothing, which holds
        the session's end back; that time is the client's, not serve's.  Every answer is
        written, and connect exits with the session's status, not 1 after 60 s of its clock
        with "serve did not end session" and the rest dropped."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        # the server has 10 s from the end to write its answers (the client takes them late)
        srv = self.serve(opts=["--max-queue", "64K", "--eof-grace", "10000", "--listen",
                               self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        env = dict(self.env, LD_PRELOAD=FAKETIME, FAKETIME="+0 x20")
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        c = self.start([MCPMUX, "connect", "--session", "late", self.path], env=env)
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        n = 32  # 32 MiB of answers: more than connect's 16 MiB queue for stdout, and pipes
        c.send(*[call(2 + i, "huge", bytes=1 << 20) for i in range(n)])
        c.close_stdin()
        time.sleep(4)  # the reader's own pace: 80 s of connect's clock, stdout not read
        for i in range(n):
            m = c.msg(30)
            self.assertEqual((m.get("id"), len(m["result"]["content"][0]["text"])),
                             (2 + i, 1 << 20), c.stderr())
        self.assertEqual(c.read_to_eof(30), b"")
        self.assertEqual(c.wait(15), 0, c.stderr())
        self.assertNotIn("did not end", c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(15), 0, srv.stderr())
        self.assert_no_leftovers(5)

    def test_connect_waits_2_s_at_most_for_serve_to_close(self):
        """Once done, connect shuts down its side of the socket and reads serve to its EOF;
        a serve that answers the end and never closes holds it 2 s, not more."""
        lst = self.fake_serve()
        c = self.start([MCPMUX, "connect", "--session", "s", self.path])
        conn, _ = lst.accept()
        self.addCleanup(conn.close)
        f = conn.makefile("rb")
        c.send(note("notifications/initialized"))
        c.close_stdin()
        lines = [json.loads(f.readline()) for _ in range(3)]
        self.assertEqual(lines[1]["message"]["method"], "mcpmux/endRun", lines)
        t0 = time.monotonic()
        conn.sendall(encode({"session": "s", "message": {
            "jsonrpc": "2.0", "id": "mcpmux-connect-end", "result": {
                "session": "s", "pid": 4193999, "exit": {"code": 3}, "escalation": "eof",
                "ms": 1}}}))
        self.assertEqual(f.readline(), b"", "connect's side shut down")
        self.assertEqual(c.wait(10), 3, c.stderr())
        self.assertGreater(time.monotonic() - t0, 1.5, "serve's close awaited")

    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_connect_end_wait_does_not_count_lines_not_sent_after_the_end(self):
        """The session ends (its server crashed) while connect still queues lines for a
        serve that takes none, and its client then reads the last answers at its own
        pace, more than 60 s of connect's clock, stdout never full: those lines are not
        sent after the end, so the end wait does not take them for a stuck serve.  All of
        stdout is written, and connect exits with the session's status, not 1 with "serve
        did not take connect's last lines".  (A stand-in takes serve's place: it reads
        nothing, so the lines stay queued whatever the pace.)"""
        lst = self.fake_serve()
        env = dict(self.env, LD_PRELOAD=FAKETIME, FAKETIME="+0 x20")
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        c = self.start([MCPMUX, "connect", "--session", "s", self.path], env=env)
        conn, _ = lst.accept()
        self.addCleanup(conn.close)
        pad = "x" * (256 << 10)
        c.send(req(1, "ping"), *[note("notifications/progress", {"i": i, "pad": pad})
                                 for i in range(16)])  # 4 MiB: more than the socket takes
        wait_until(lambda: fcntl.ioctl(c.p.stdin.fileno(), termios.FIONREAD,
                                       b"\0\0\0\0") == b"\0\0\0\0", 10,
                   "connect to read its stdin")
        c.close_stdin()
        n, text = 8, "y" * (1 << 20)  # 8 MiB of answers: under connect's 16 MiB for stdout
        conn.sendall(b"".join(encode({"session": "s", "message": {
            "jsonrpc": "2.0", "id": 100 + i, "result": {"text": text}}}) for i in range(n)))
        conn.sendall(encode({"session": "s", "event": "ended", "pid": 4193999,
                             "exit": {"signal": "SIGSEGV"}}))
        out = c.p.stdout.fileno()
        got = b""
        t0 = time.monotonic()
        while True:
            r, _, _ = select.select([out], [], [], 10)
            self.assertTrue(r, "stdout stalled: " + c.stderr())
            chunk = os.read(out, 64 << 10)
            if not chunk:
                break  # connect's EOF
            got += chunk
            time.sleep(0.05)  # the reader's own pace: 8 MiB in about 6 s, 120 s of its clock
        self.assertEqual(c.wait(15), 128 + signal.SIGSEGV, c.stderr())
        self.assertGreater(time.monotonic() - t0, 3.5, "more than 60 s of connect's clock")
        self.assertNotIn("serve did not take connect's last lines", c.stderr())
        self.assertIn("lines not yet taken by serve: not sent", c.stderr())
        lines = got.splitlines()
        self.assertEqual([json.loads(x)["id"] for x in lines], list(range(100, 100 + n)))
        self.assertTrue(all(json.loads(x)["result"]["text"] == text for x in lines))

    def test_serve_refuses_a_path_whose_listener_accepts_nothing(self):
        """The socket of a serve that is stopped or stuck (its backlog full) is live: a
        second serve on its path refuses at once (exit 1), and leaves the socket alone."""
        self.full_backlog("stuck.sock")
        ino = os.stat(self.path).st_ino
        t0 = time.monotonic()
        srv = self.serve(opts=FAST + ["--listen", self.path])
        self.assertEqual(srv.wait(10), 1)
        self.assertLess(time.monotonic() - t0, 5 * SLOW, "at once, not after a wait")
        self.assertIn("another server is listening on '%s', but accepts no connection"
                      % self.path, srv.stderr())
        self.assertEqual(os.stat(self.path).st_ino, ino, "the socket was not replaced")

    def test_a_control_end_from_a_half_closed_connection_is_answered(self):
        """mcpmux/endRun sent by a client that then shuts down its writing side (socat,
        nc -N) is answered once the session's teardown is done; then the connection goes."""
        srv = self.listen("--ignore-eof")  # its end takes --eof-grace (300 ms), then TERM
        a = socket.socket(socket.AF_UNIX)
        self.addCleanup(a.close)
        a.settimeout(10)
        a.connect(self.path)
        fa = a.makefile("rwb", buffering=0)
        fa.write(b'{"session":"k","keep":true}\n'
                 b'{"session":"k","message":{"jsonrpc":"2.0","id":1,"method":"ping"}}\n')
        got = [json.loads(fa.readline()) for _ in range(3)]
        self.assertEqual(got[2]["message"], {"jsonrpc": "2.0", "id": 1, "result": {}}, got)
        pid = got[1]["pid"]
        b = socket.socket(socket.AF_UNIX)
        self.addCleanup(b.close)
        b.settimeout(10)
        b.connect(self.path)
        b.sendall(json.dumps({"message": req(8, "mcpmux/endRun",
                                             {"session": "k"})}).encode() + b"\n")
        b.shutdown(socket.SHUT_WR)
        fb = b.makefile("rb")
        line = fb.readline()
        self.assertTrue(line, "EOF instead of the answer")
        m = json.loads(line)["message"]
        self.assertEqual((m["id"], m["result"]["session"], m["result"]["pid"]), (8, "k", pid), m)
        self.assertEqual(fb.readline(), b"", "the connection goes once it is answered")
        self.assertEqual(json.loads(fa.readline())["event"], "ended")
        self.assertFalse(alive(pid))
        rc, out = self.ctl("stats", as_json=True)
        self.assertEqual(json.loads(out)["connections"], 2, "a and ctl's own: b is gone")
        fa.close()
        fb.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_connect_puts_each_line_in_its_envelope_as_one_value(self):
        self.listen()
        c = self.connect("--session", "a")
        c.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"},"session":"b"\n')
        m = c.msg()
        self.assertEqual(m["error"]["code"], -32700)
        c.send(req(2, "ping"))
        self.assertEqual(c.msg(), {"jsonrpc": "2.0", "id": 2, "result": {}})
        rc, out = self.ctl("list", as_json=True)
        self.assertEqual([x["session"] for x in json.loads(out)["sessions"]], ["a"])
        c.close_stdin()
        self.assertEqual(c.wait(), 0)

    def test_connect_max_message_bounds_both_ways(self):
        """connect --max-message: a client line over it is answered -32600 with its id and
        the limit; an answer from serve over it (and its envelope) is dropped with a word
        on stderr that says to give connect serve's own, and its request gets a -32000
        error in its place (it does not wait for ever); under it, it passes whole."""
        srv = self.listen()
        c = self.connect("--max-message", "1M", "--session", "m")
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        c.send(call(2, "huge", bytes=2_000_000), call(3, "echo", text="after"))
        err = self.assert_error(c.msg(10), 2, -32000)  # the answer of 2 MB is not passed
        self.assertIn("too large", err["message"])
        self.assertIn("the limit is 1048576: see --max-message", err["message"])
        m = c.msg(10)
        self.assertEqual(m.get("id"), 3)
        wait_until(lambda: "over --max-message 1048576 and its envelope: dropped (give "
                           "connect serve's --max-message)" in c.stderr(), 5, "the word")
        c.write(b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo",'
                b'"arguments":{"text":"' + b"x" * (1 << 20) + b'"}}}\n')
        m = c.msg(10)
        self.assertEqual((m.get("id"), m["error"]["code"]), (4, -32600), m)
        self.assertIn("the limit is 1048576: see --max-message", m["error"]["message"])
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())
        c = self.connect("--max-message", "4M", "--session", "n")
        c.send(initialize(1), call(2, "huge", bytes=2_000_000))
        self.assertEqual(c.msg()["id"], 1)
        m = c.msg(10)
        self.assertEqual(len(m["result"]["content"][0]["text"]), 2_000_000)
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_gives_the_server_an_error_for_an_answer_over_its_bound(self):
        """The client's answer to a request of the server over connect's --max-message:
        the server gets an error in its place, the client none."""
        srv = self.listen()
        c = self.connect("--max-message", "4K", "--session", "a")
        c.send(initialize(1), call(2, "ask"))
        self.assertEqual(c.msg()["id"], 1)
        ask = c.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        c.send({"jsonrpc": "2.0", "id": ask["id"],
                "result": {"role": "assistant", "content": {"type": "text", "text": "x" * 20000}}})
        r = c.msg()
        self.assertEqual(r.get("id"), 2, r)
        self.assertIn("too large for mcpmux", r["result"]["content"][0]["text"])
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def asker(self, ids=None, opts=()):
        """serve (with opts) running ASKER, and a connect of session a with --max-message
        4096; with ids, the server has asked the client requests of those ids, in flight."""
        srv = self.listen(opts=opts, command=[sys.executable, "-c", ASKER])
        c = self.connect("--max-message", "4096", "--session", "a")
        if ids is not None:
            c.send(req(1, "ask", {"ids": ids}))
            self.assertEqual([c.msg()["id"] for _ in range(len(ids) + 1)], ids + [1])
        return srv, c

    def assert_report(self, c, errors, rid=2):
        """ASKER's report: the errors it got for its requests, [id, code] each."""
        c.send(req(rid, "report"))
        self.assertEqual(c.msg(10), {"jsonrpc": "2.0", "id": rid, "result": errors})

    def ends_clean(self, srv, c):
        """EOF ends connect with 0, and SIGTERM serve with 0."""
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_connect_gives_the_server_an_error_only_for_its_request_in_flight(self):
        """The client's answer over connect's --max-message, alone: the request of the
        server's in flight that it answers gets an error, once, one with an id longer
        than 128 bytes too; an answer to no request in flight gets the server nothing, and
        stderr says it was dropped."""
        long_id = "L" * 200
        srv, c = self.asker([long_id, 5], opts=["--max-message", "4096"])
        c.send({"jsonrpc": "2.0", "id": "nobody", "result": OVER},
               {"jsonrpc": "2.0", "id": long_id, "result": OVER},
               {"jsonrpc": "2.0", "id": long_id, "result": OVER},
               {"jsonrpc": "2.0", "id": 5, "result": OVER},
               {"jsonrpc": "2.0", "id": 5, "result": OVER})
        self.assert_report(c, [[long_id, -32000], [5, -32000]])
        wait_until(lambda: "answers no request of the server in flight" in c.stderr(), 5,
                   "the warning")
        self.ends_clean(srv, c)

    def test_connect_gives_the_server_an_error_for_each_answer_of_a_batch_over_its_bound(self):
        """A batch of the client's over connect's --max-message: each answer in it to a
        request of the server's in flight gets the server an error, once, and nothing for
        one to no request in flight; a batch of answers alone gets the client nothing."""
        srv, c = self.asker([5, 6], opts=["--max-message", "4096"])
        c.send([{"jsonrpc": "2.0", "id": 5, "result": OVER},
                {"jsonrpc": "2.0", "id": "nobody", "result": OVER},
                {"jsonrpc": "2.0", "id": 6, "result": OVER}])
        c.send([{"jsonrpc": "2.0", "id": 5, "result": OVER}])
        self.assert_report(c, [[5, -32000], [6, -32000]])
        wait_until(lambda: "answers no request of the server in flight" in c.stderr(), 5,
                   "the warning")
        self.ends_clean(srv, c)

    def test_connect_says_an_answer_of_a_batch_over_its_bound_is_over_it(self):
        """An answer that ends within the first --max-message bytes of a batch over connect's
        bound, and one after them, are over --max-message, not out of memory: the server's
        errors and stderr say so, the batch's size being more than the bound."""
        srv, c = self.asker([5, 6])
        self.assert_batch_answers_over_the_bound(c)
        self.ends_clean(srv, c)

    def test_connect_sees_a_batch_after_more_than_its_bound_of_whitespace(self):
        """A batch over connect's --max-message after more than --max-message bytes of
        whitespace is a batch: its answer gets the server an error for its request in
        flight."""
        srv, c = self.asker([5])
        c.write((" \t" * 2500 + json.dumps([{"jsonrpc": "2.0", "id": 5, "result": OVER}])
                 + "\n").encode())
        self.assert_report(c, [[5, -32000]])
        self.ends_clean(srv, c)

    def test_connect_answers_each_request_of_a_mixed_batch_over_its_bound_by_id(self):
        """A batch over connect's --max-message of requests, an answer and a notification:
        its requests get -32600 each with its id (null for one longer than 128 bytes), in
        one array, as wrap's do; its answer gets the server an error for its request in
        flight, and its notification a warning on stderr."""
        srv, c = self.asker([5])
        c.send([req(9, "ping"), {"jsonrpc": "2.0", "id": 5, "result": OVER},
                note("notifications/x"), req("four", "ping", {"pad": [{"id": 7}]}),
                req("k" * 300, "ping")])
        m = c.msg(10)
        self.assertEqual([(e["id"], e["error"]["code"]) for e in m],
                         [(9, -32600), ("four", -32600), (None, -32600)], m)
        self.assertIn("too large", m[0]["error"]["message"])
        self.assert_report(c, [[5, -32000]])
        wait_until(lambda: "a notification of the client over --max-message" in c.stderr(), 5,
                   "the warning")
        self.ends_clean(srv, c)

    def test_connect_answers_the_elements_of_a_batch_over_its_bound_that_are_no_message(self):
        """Elements of a batch over connect's --max-message that are no message
        ({"foo": 2}, 1, one cut short by the line's end too) get one -32600 with id null,
        last in the array of the batch's errors, as wrap's and serve's do."""
        srv, c = self.asker()
        self.assert_no_message_elements_answered(c)
        self.assert_report(c, [])
        self.ends_clean(srv, c)

    def test_connect_answers_a_batch_over_its_bound_with_too_many_requests_once(self):
        """A batch over connect's --max-message has its requests answered by id as long as
        the array of their errors is no longer than --max-message (64 KiB at least), as
        wrap's: past that, one -32600 with id null, and stderr says their errors would be
        longer than --max-message."""
        srv, c = self.asker()
        c.send([req(k, "ping") for k in range(300)])
        self.assertEqual([(e["id"], e["error"]["code"]) for e in c.msg(10)],
                         [(k, -32600) for k in range(300)])
        # errors of 130 bytes or more: 505 of them are over 64 KiB
        c.send([req(k, "ping") for k in range(505)])
        m = c.msg(10)
        self.assertEqual((m["id"], m["error"]["code"]), (None, -32600), m)
        wait_until(lambda: "their errors would be longer than --max-message (65536 bytes)"
                   in c.stderr(), 5, "the warning")
        self.assert_report(c, [])
        self.ends_clean(srv, c)

    def test_connect_keeps_no_request_the_server_cancelled_in_flight(self):
        """A request of the server's that it cancelled is no longer in flight: the client's
        answer to it over connect's --max-message gets the server nothing, and stderr says
        it was dropped."""
        srv, c = self.asker([5], opts=["--max-message", "4096"])
        c.send(req(2, "cancel", {"ids": [5]}))
        m = c.msg()
        self.assertEqual((m["method"], m["params"]["requestId"]), ("notifications/cancelled", 5))
        self.assertEqual(c.msg()["id"], 2)
        c.send({"jsonrpc": "2.0", "id": 5, "result": OVER})
        wait_until(lambda: "answers no request of the server in flight" in c.stderr(), 5,
                   "the warning")
        self.assert_report(c, [], rid=3)
        self.ends_clean(srv, c)

    def test_connect_keeps_each_request_of_the_server_in_flight_however_written(self):
        """A request of the server's is known in flight whatever it holds and however it is
        written: "result" or "error" inside its params or its id, its members in another
        order or with spaces, an escaped key, beside an answer in a batch: the client's
        answer to each over connect's --max-message gets the server an error."""
        srv, c = self.asker()
        lines = ['{"jsonrpc":"2.0","id":5,"method":"m","params":{"result":1}}',
                 ' { "id" : 6 , "method":"m", "jsonrpc" : "2.0" } ',
                 '{"jsonrpc":"2.0","\\u0069d":7,"method":"m"}',
                 '{"jsonrpc":"2.0","id":"a\\"result\\":1","method":"m"}',
                 '{"jsonrpc":"2.0","id":"b\\\\","method":"m","params":{"error":{}}}',
                 '[{"jsonrpc":"2.0","id":99,"result":1},{"jsonrpc":"2.0","id":8,"method":"m"}]']
        c.send(req(1, "raw", {"lines": lines}))
        got = [c.msg() for _ in range(len(lines) + 1)]
        self.assertEqual(got[-1]["id"], 1)
        ids = [5, 6, 7, 'a"result":1', "b\\", 8]
        for i in ids:
            c.send({"jsonrpc": "2.0", "id": i, "result": OVER})
        self.assert_report(c, [[i, -32000] for i in ids])
        self.ends_clean(srv, c)

    def test_connect_keeps_at_most_65536_requests_of_the_server_in_flight(self):
        """connect keeps 65,536 requests of the server's in flight: one past them is not
        known in flight, and the client's answer to it over the bound is dropped, which
        stderr says; the answer to one kept still gets the server its error."""
        srv, c = self.asker()
        c.send(req("ask", "ask", {"count": 65537}))
        ids = [c.msg(30)["id"] for _ in range(65538)]
        self.assertEqual(ids, list(range(65537)) + ["ask"])
        c.send({"jsonrpc": "2.0", "id": 65536, "result": OVER})
        wait_until(lambda: "answers no request of the server in flight" in c.stderr(), 5,
                   "the warning")
        c.send({"jsonrpc": "2.0", "id": 65535, "result": OVER})
        c.send(req("report", "report"))
        self.assertEqual(c.msg(10), {"jsonrpc": "2.0", "id": "report",
                                     "result": [[65535, -32000]]})
        self.ends_clean(srv, c)

    def test_connect_answers_a_request_over_its_bound_with_a_long_id(self):
        """A request over connect's --max-message whose id is longer than 128 bytes, or of
        no use (null), is no notification: it gets -32600 with id null."""
        self.listen()
        c = self.connect("--max-message", "4096", "--session", "a")
        for i in ("k" * 300, None):
            c.send(req(i, "ping", {"pad": "p" * 5000}))
            m = c.msg(10)
            self.assertEqual((m["id"], m["error"]["code"]), (None, -32600), m)
            self.assertIn("too large", m["error"]["message"])
        c.send(req(3, "ping"))
        self.assertEqual(c.msg(), {"jsonrpc": "2.0", "id": 3, "result": {}})
        c.close_stdin()
        self.assertEqual(c.wait(), 0, c.stderr())

    def test_connect_answers_a_line_over_its_bound_with_its_id(self):
        """A client line over connect's 64 MiB is not sent: its error carries the id,
        seen after the body as well as before it."""
        self.listen()
        c = self.connect("--session", "a")
        body = b'"params":{"text":"' + b"z" * (64 << 20) + b'"}'
        c.write(b'{"jsonrpc":"2.0","id":"before","method":"ping",' + body + b"}\n", 60)
        self.assert_error(c.msg(30), "before", -32600)
        c.write(b'{"jsonrpc":"2.0","method":"ping",' + body + b',"id":7}\n', 60)
        m = c.msg(30)
        self.assert_error(m, 7, -32600)
        self.assertIn("too large", m["error"]["message"])
        c.send(req(2, "ping"))
        self.assertEqual(c.msg(), {"jsonrpc": "2.0", "id": 2, "result": {}})
        c.close_stdin()
        self.assertEqual(c.wait(), 0)

    def test_connect_gets_the_id_of_a_line_over_serves_max_message(self):
        """A line under connect's bound but over serve's --max-message (and the envelope's
        own bytes) is answered to the client with its id."""
        self.listen(opts=["--max-message", "1M"])
        c = self.connect("--session", "a")
        c.send(call(1, "echo", text="y" * (2 << 20)))
        m = c.msg()
        self.assert_error(m, 1, -32600)
        self.assertIn("--max-message", m["error"]["message"])
        c.send(req(2, "ping"))
        self.assertEqual(c.msg(), {"jsonrpc": "2.0", "id": 2, "result": {}})
        c.close_stdin()
        self.assertEqual(c.wait(), 0)

    def test_connect_reads_serve_while_its_own_queue_to_serve_is_full(self):
        """A client that writes big requests faster than a slow server reads them, and
        reads every answer: connect's queue towards serve fills (its 16 MiB mark) while
        serve holds the socket for the server's full input; connect still reads serve's
        answers (only its stdin is held), so the server is never stuck on its stdout and
        every answer arrives.  (Held by its own full queue, connect read nothing from
        serve, serve's queue for it filled, the server stopped, and nothing moved again.)"""
        self.listen("--slow-reader=20", opts=["--max-queue", "64K"])
        c = self.connect("--session", "big")
        c.send(initialize(0))
        self.assert_response(c.msg(), 0)
        n, text = 48, "z" * (512 << 10)
        data = b"".join(encode(call(i, "echo", text=text)) for i in range(1, n + 1))
        wr = Writer(c.p.stdin.fileno(), data)
        wr.start()
        for i in range(1, n + 1):
            m = c.msg(20)
            self.assertEqual(m["id"], i)
            self.assertEqual(len(m["result"]["content"][0]["text"]), len(text))
        wr.join(10)
        self.assertIsNone(wr.error)
        self.assertEqual(wr.done, len(data))
        c.close_stdin()
        self.assertEqual(c.wait(), 0)

    def test_connect_exits_when_its_session_ends_with_its_queue_to_serve_full(self):
        """The session's server crashes while connect's queue towards serve is full (the
        server reads a line every 4 s) and holds its stdin: connect exits with the
        session's status, its stdin still open, and sends serve none of the lines it still
        queued, which would start a new run that nobody follows.  (It read stdin again
        once serve took some of the queue, fed the client's lines to a new run of the
        session, and waited for that run's slow server to take them all.)"""
        self.listen("--slow-reader=4000", "--crash-after=1", opts=["--max-queue", "64K"])
        c = self.connect("--session", "s")
        c.send(initialize(0))
        self.assert_response(c.msg(), 0)
        pad = "x" * (256 << 10)
        data = encode(req(1, "ping")) + b"".join(
            encode(note("notifications/progress", {"i": i, "pad": pad})) for i in range(400))
        wr = Writer(c.p.stdin.fileno(), data)
        wr.start()
        wait_stalled(wr, "connect's full queue towards serve to hold its stdin")
        self.assert_error(c.msg(), 1, -32000)  # the crash
        self.assertEqual(c.wait(10), 128 + signal.SIGSEGV, c.stderr())
        self.assertIn("lines not yet taken by serve: not sent", c.stderr())
        self.assertLess(wr.done, len(data))
        c.close_stdin()
        wait_until(lambda: json.loads(self.ctl("stats", as_json=True)[1])["sessions"] == 0, 10,
                   "serve to end what the lines sent before the end started")

    @unittest.skipIf(WRAPPER, "valgrind's allocator")
    def test_control_requests_in_one_read_queue_no_more_than_max_queue(self):
        """A client that reads nothing sends 965 `mcpmux/list` requests in one write of
        64 KiB while 300 sessions are kept, so that each answer is about 28 KiB: serve
        reads it no further once --max-queue (1 MiB) of answers wait for it, from the end
        of the request whose answer filled the queue, not from the end of the read: it
        grows by about the queue, not by the 28 MiB of all the answers.  Once the client
        reads, every answer comes, in order."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        # No quarantine: the memory of what was written is counted as given back.
        env = dict(self.env, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":quarantine_size_mb=0")
        srv = self.serve(opts=FAST + ["--max-queue", "1M", "--listen", self.path], env=env)
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        a = Envelopes(self, self.path)
        n_kept = 300
        a.send(*({"session": "kept-%03d" % i, "keep": True} for i in range(n_kept)))
        for _ in range(n_kept):
            self.assertEqual(a.next().get("event"), "kept")
        base = rss_anon_kib(srv.pid)
        b = Envelopes(self, self.path)
        b.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data, n = b"", 0
        while True:
            line = json.dumps({"message": {"jsonrpc": "2.0", "id": n + 1,
                                           "method": "mcpmux/list"}}).encode() + b"\n"
            if len(data) + len(line) > 65536:
                break
            data, n = data + line, n + 1
        b.s.sendall(data)
        # Sent before ctl connected: read by serve before ctl's request is answered.
        self.assertEqual(self.ctl("stats")[0], 0)
        grown = rss_anon_kib(srv.pid) - base
        # the queue, an answer past it, the rest of the read, and the allocator's slack
        self.assertLess(grown, 8 * 1024, "serve grew by %d KiB for %d answers" % (grown, n))
        f = b.s.makefile("rb")  # buffered: 28 MiB to read
        self.addCleanup(f.close)
        for i in range(1, n + 1):
            m = json.loads(f.readline())["message"]
            self.assertEqual(m["id"], i)
            self.assertEqual(len(m["result"]["sessions"]), n_kept)
        b.send({"message": {"jsonrpc": "2.0", "id": "last", "method": "mcpmux/stats"}})
        self.assertEqual(json.loads(f.readline())["message"]["id"], "last")
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.stderr())

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_connect_memory_shrinks_back_after_big_messages(self):
        """Idle after 1 MiB messages both ways, connect gives the memory back."""
        self.listen()
        c = self.connect("--session", "big")
        text = "z" * (1 << 20)
        for i in range(3):
            c.send(call(i, "echo", text=text))
            self.assertEqual(c.msg(30)["result"]["content"][0]["text"], text)
        c.send(req(9, "ping"))
        c.msg()
        wait_until(lambda: rss_anon_kib(c.pid) < 1024, 5,
                   "connect's private memory to fall back under 1 MiB")
        c.close_stdin()
        self.assertEqual(c.wait(), 0)

    @unittest.skipIf(WRAPPER, "valgrind's allocator")
    def test_a_session_taken_in_turn_from_a_client_that_reads_nothing_costs_its_lines(self):
        """A reads nothing (its socket is full); A and B take kept session k in turn.  What
        A has queued is k's `kept` lines, a few bytes each, in one queue taken up again at
        each turn: not a queue, and its first chunk, for each (about 1.2 KiB a turn)."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        # No quarantine: the queues that B's turns free are reused, as without ASan.
        env = dict(self.env, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":quarantine_size_mb=0")
        srv = self.serve(opts=FAST + ["--listen", self.path], env=env)
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        a = Envelopes(self, self.path)
        a.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.send({"session": "fill", "message": initialize(1)},
               {"session": "fill", "message": call(2, "huge", bytes=1 << 20)})
        wait_until(lambda: json.loads(self.ctl("stats", as_json=True)[1])["out"]["bytes"] >=
                   1 << 20, 10, "A's socket to fill")
        b = Envelopes(self, self.path)
        base = rss_anon_kib(srv.pid)
        turns = 20000
        for _ in range(turns):
            a.send({"session": "k", "keep": True})
            b.send({"session": "k", "keep": True})
            self.assertEqual(b.next().get("event"), "kept")
        grown = rss_anon_kib(srv.pid) - base
        # the lines themselves: about 50 bytes a turn, 1 MiB in all
        self.assertLess(grown, 6 * 1024, "%d KiB for %d turns" % (grown, turns))
        a.close()
        b.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.stderr())


class RunOrder(ListenHelpers, Case):
    def test_a_new_run_on_the_connection_comes_after_the_last_lines_of_the_one_before(self):
        """A run ends while more than a write turn of its output waits in the queue of a
        connection that reads nothing; the connection starts a new run of the same session
        ID: the old run's lines and its `ended` come first, then the new run's."""
        srv = self.listen()
        a = Envelopes(self, self.path)
        a.send({"session": "o", "message": call(1, "env")})
        got = [a.next() for _ in range(2)]
        self.assertEqual(got[0].get("event"), "started", got)
        pid = got[1]["message"]["result"]["structuredContent"]["pid"]
        # more than the socket takes, less than --max-queue: it waits in the queue
        a.send({"session": "o", "message": call(2, "huge", bytes=4 << 20)},
               {"session": "o", "message": note("mcpmux/endRun")})
        wait_until(lambda: '"o"' not in self.ctl("list", as_json=True)[1], 10,
                   "the run to end")
        self.assertEqual(self.started(), 1)
        a.send({"session": "o", "message": call(3, "env")})
        wait_until(lambda: any(x["session"] == "o" and x["out"]["messages"] == 1 for x in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"]),
                   10, "the new run's answer to be queued")
        r = a.s.makefile("rb")
        self.addCleanup(r.close)
        got = [json.loads(r.readline()) for _ in range(4)]
        seen = [(g["session"], g.get("event"), g.get("pid"), g.get("message", {}).get("id"))
                for g in got]
        self.assertEqual(seen[:2], [("o", None, None, 2), ("o", "ended", pid, None)], seen)
        self.assertEqual(seen[2][1], "started", seen)
        self.assertNotEqual(seen[2][2], pid, seen)
        self.assertEqual(seen[3], ("o", None, None, 3), seen)
        self.assertEqual(len(got[0]["message"]["result"]["content"][0]["text"]), 4 << 20)
        a.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def started(self):
        return json.loads(self.ctl("stats", as_json=True)[1])["started"]


class Envelopes:
    """A raw connection to serve's socket, read by predicate."""

    def __init__(self, case, path):
        self.s = socket.socket(socket.AF_UNIX)
        case.addCleanup(self.s.close)
        self.s.settimeout(10)
        self.s.connect(path)
        self.f = self.s.makefile("rwb", buffering=0)
        case.addCleanup(self.f.close)
        self.inbox = []

    def send(self, *objs):
        self.f.write(b"".join(json.dumps(o).encode() + b"\n" for o in objs))

    def next(self):
        if self.inbox:
            return self.inbox.pop(0)
        line = self.f.readline()
        if not line:
            raise AssertionError("EOF from serve")
        return json.loads(line)

    def close(self):
        self.f.close()
        self.s.close()


class PlainClients(ListenHelpers, Case):
    def test_a_plain_jsonrpc_request_on_a_connection_is_answered_by_its_id(self):
        """A connection that speaks plain MCP gets a JSON-RPC error for its request, by
        its id, as serve's stdio does (docs/protocol.md); stderr says it once."""
        srv = self.listen()
        for id_ in (1, 2):
            c = Envelopes(self, self.path)
            c.send(initialize(id_))
            self.assertEqual(c.next(), {"jsonrpc": "2.0", "id": id_, "error": {
                "code": -32600, "message": PLAIN_MCP}})
            c.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assertEqual(srv.stderr().count(PLAIN_MCP_SAID), 1, srv.stderr())


class ForeignSessions(ListenHelpers, Case):
    def test_a_batch_for_a_session_of_another_connection_gets_each_request_answered(self):
        """A batch for a session that another connection holds, not kept: one array with
        an error for each of its requests, by its id; a notification alone, an error with
        no id."""
        srv = self.listen()
        a = Envelopes(self, self.path)
        a.send({"session": "s", "message": req(1, "ping")})
        got = [a.next() for _ in range(2)]
        self.assertEqual(got[1]["message"]["id"], 1, got)
        b = Envelopes(self, self.path)
        b.send({"session": "s", "message": [req(2, "ping"), note("notifications/x"),
                                            req("t", "ping")]},
               {"session": "s", "message": note("notifications/x")})
        got = b.next()
        self.assertEqual(got["session"], "s", got)
        self.assertIsInstance(got["message"], list, got)
        self.assertEqual([(m["id"], m["error"]["code"]) for m in got["message"]],
                         [(2, -32000), ("t", -32000)], got)
        self.assertIn("another connection", got["message"][0]["error"]["message"])
        got = b.next()
        self.assertEqual((got["message"]["id"], got["message"]["error"]["code"]),
                         (None, -32000), got)
        # a batch with no request: its -32600s, then the refusal with no id
        b.send({"session": "s", "message": [1, note("notifications/x")]})
        got = b.next()
        self.assertEqual([(m["id"], m["error"]["code"]) for m in got["message"]],
                         [(None, -32600)], got)
        got = b.next()
        self.assertEqual((got["message"]["id"], got["message"]["error"]["code"]),
                         (None, -32000), got)
        self.assertIn("another connection", got["message"]["error"]["message"])
        a.send({"session": "s", "message": req(3, "ping")})
        self.assertEqual(a.next()["message"]["id"], 3)
        a.close()
        b.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)


class KeptSessionEnds(ListenHelpers, Case):
    """A kept session that ends while no connection holds it: the next connection that
    names it learns of the end before anything else, instead of talking to a new server
    that knows nothing of the run."""

    def kept_then_gone(self, sid, ending):
        a = Envelopes(self, self.path)
        a.send({"session": sid, "keep": True}, {"session": sid, "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        pid = got[2]["message"]["result"]["structuredContent"]["pid"]
        a.close()
        wait_until(lambda: "true,\"connected\":false" in self.ctl("list", as_json=True)[1]
                   or sid not in self.ctl("list", as_json=True)[1], 5, "the connection to go")
        self.assertTrue(alive(pid))
        ending(pid)
        wait_until(lambda: '"%s"' % sid not in self.ctl("list", as_json=True)[1], 5,
                   "the kept session to end")
        return pid

    def started(self):
        return json.loads(self.ctl("stats", as_json=True)[1])["started"]

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_a_long_batch_of_no_session(self):
        """A batch too long to be read whole, in an envelope with no session, keeps the
        ids of its requests as it passes (60,000 of 122 bytes at --max-message 2 MiB,
        about 7 MB; 60,942 at most): the envelope gets its error, and with nothing more sent the memory
        goes back."""
        srv = self.listen(opts=["--max-message", str(2 << 20)])
        c = Envelopes(self, self.path)
        batch = [req("%0120d" % i, "ping") for i in range(60_000)]
        c.s.sendall(json.dumps({"message": batch}).encode() + b"\n")
        e = json.loads(c.s.makefile("rb").readline())
        self.assertEqual(e["error"]["code"], -32600, e)
        self.assertIn("envelope too large", e["error"]["message"])
        wait_until(lambda: rss_anon_kib(srv.pid) < 5_000, 5,
                   "serve's private memory to fall back under 5 MB, idle")

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_huge_ids_of_serves_own_answers(self):
        """serve's own answers with a 20 MB id: a control request's (mcpmux/stats), a control
        end of run's, answered at the session's end, and an end of run's that is the first
        envelope for a kept session that ended unseen: each time, with nothing more sent,
        the memory goes back."""
        srv = self.listen()
        big = "x" * 20_000_000

        def idle_and_small():
            wait_until(lambda: rss_anon_kib(srv.pid) < 5_000, 5,
                       "serve's private memory to fall back under 5 MB, idle")

        def send(c, obj):  # (whole: a write of 20 MB to the socket may be short)
            c.s.sendall(json.dumps(obj).encode() + b"\n")

        def answer(c, sid, id_):
            # (read buffered: the raw socket file reads a line a byte at a time)
            r = readers.setdefault(c, c.s.makefile("rb"))
            while True:
                line = r.readline()
                self.assertTrue(line, "EOF from serve")
                e = json.loads(line)
                if e.get("session") == sid and e.get("message", {}).get("id") == id_:
                    return e["message"]

        readers = {}
        c = Envelopes(self, self.path)
        send(c, {"message": req(big, "mcpmux/stats")})
        self.assertIn("sessions", answer(c, None, big)["result"])
        idle_and_small()
        c.send({"session": "a", "message": req(1, "ping")})
        answer(c, "a", 1)
        send(c, {"message": req(big, "mcpmux/endRun", {"session": "a"})})
        self.assertIn("exit", answer(c, None, big)["result"])
        idle_and_small()
        pid = self.kept_then_gone("u", lambda pid: self.assertEqual(self.ctl("end", "u")[0], 0))
        d = Envelopes(self, self.path)
        send(d, {"session": "u", "message": req(big, "mcpmux/endRun")})
        r = readers.setdefault(d, d.s.makefile("rb"))
        ended = json.loads(r.readline())
        self.assertEqual((ended.get("event"), ended.get("pid"), ended.get("unseen")),
                         ("ended", pid, True), ended)
        self.assertIsNone(answer(d, "u", big)["result"]["pid"])
        idle_and_small()
        for f in readers.values():
            f.close()
        c.close()
        d.close()
        self.stop_serve(srv)

    def end_new_run(self, srv, c):
        """connect c ends the second run of the test; then serve, and nothing is left."""
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        self.assertEqual(self.started(), 2)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def kept_and_left_in_a_call(self, opts, ms):
        """serve --listen with opts; a kept session "f" whose connection goes while a sleep
        call of ms milliseconds runs: (serve, the server's pid)."""
        srv = self.listen(opts=opts)
        a = Envelopes(self, self.path)
        a.send({"session": "f", "keep": True}, {"session": "f", "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        pid = got[2]["message"]["result"]["structuredContent"]["pid"]
        a.send({"session": "f", "message": call(2, "sleep", ms=ms)})
        a.close()
        return srv, pid

    def test_the_idle_timeout_ends_a_kept_session_left_with_a_request_in_flight(self):
        """A kept session whose connection went while a call was in flight: its answer
        waits unread in the server's pipe, and nobody waits for it, so the call does not
        hold the idle timeout off: the session ends, and the next connection that names it
        is told."""
        srv, pid = self.kept_and_left_in_a_call(["--idle-timeout", "1"], 200)

        def ended():  # its server gone, and its teardown done (not a session still ending)
            listed = json.loads(self.ctl("list", as_json=True)[1])["sessions"]
            return not alive(pid) and not any(s["session"] == "f" for s in listed)
        wait_until(ended, 10, "the idle timeout to end the kept session")
        b = Envelopes(self, self.path)
        b.send({"session": "f", "keep": True})
        ended = b.next()
        self.assertEqual((ended.get("event"), ended.get("pid"), ended.get("unseen")),
                         ("ended", pid, True), ended)
        b.close()
        self.stop_serve(srv)

    def test_a_kept_session_away_for_a_moment_during_a_long_call_keeps_its_answer(self):
        """The same session's client away for a moment (0.5 s, under --idle-timeout) during
        a call longer than the idle timeout: it was not idle for the call's length, only
        since it went; it comes back to the call's answer, not to the session's end."""
        srv = self.listen(opts=["--idle-timeout", "2"])
        a = Envelopes(self, self.path)
        a.send({"session": "f", "keep": True}, {"session": "f", "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        pid = got[2]["message"]["result"]["structuredContent"]["pid"]
        t0 = time.monotonic()
        a.send({"session": "f", "message": call(2, "sleep", ms=6000)})
        time.sleep(3.5 - (time.monotonic() - t0))  # busy past the idle timeout
        a.close()
        time.sleep(0.5)  # away for a moment
        b = Envelopes(self, self.path)
        b.send({"session": "f", "keep": True})
        self.assertEqual(b.next().get("event"), "kept")
        m = b.next()  # (10 s at most)
        self.assertEqual(m.get("message", {}).get("id"), 2, m)
        self.assertTrue(alive(pid))
        b.close()
        self.stop_serve(srv)

    def test_idle_suspend_keeps_the_server_of_a_kept_session_left_with_a_call_in_flight(self):
        """A kept session whose connection went while a call was in flight, away for many
        --idle-suspend periods (through the call and past its end, its answer waiting in
        the server's pipe): a suspend would end the server mid-call, or its answer unread,
        and the client coming back gets that answer from the same server.  Once it has it,
        nothing in flight, the session is suspended as any idle one."""
        log = os.path.join(self.tmp.name, "traffic.log")
        srv, pid = self.kept_and_left_in_a_call(
            ["--idle-suspend", "0.3", "--idle-timeout", "30", "--log", log], 1000)
        # Away through the call and 1 s past its end: ten periods of --idle-suspend.
        time.sleep(2.0)
        self.assertTrue(alive(pid))
        self.assertEqual(self.events(log, "suspended"), [])
        b = Envelopes(self, self.path)
        b.send({"session": "f", "keep": True})
        self.assertEqual(b.next().get("event"), "kept")
        m = b.next()
        self.assertEqual(m.get("message", {}).get("id"), 2, m)
        self.assertIn("result", m["message"], m)
        suspended = b.next()  # (10 s at most)
        self.assertEqual((suspended.get("event"), suspended.get("reason")),
                         ("suspended", "idle"), suspended)
        self.assertFalse(alive(pid))
        # The log's record leaves mcpmux's buffer at the end of the loop turn that wrote
        # the event to b, a moment after it.
        got = wait_until(lambda: self.events(log, "suspended"), 5, "the suspend's record")
        self.assertEqual([e.get("pid") for e in got], [pid])
        b.close()
        self.stop_serve(srv)

    @staticmethod
    def events(path, name):
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        return [r for r in records if r.get("event") == name]

    def test_connect_to_a_kept_session_whose_server_died_exits_with_its_status(self):
        srv = self.listen()
        self.kept_then_gone("k", lambda pid: os.kill(pid, signal.SIGKILL))
        c = self.connect("--keep", "--session", "k")
        # It sent only its keep: the end it missed comes, and it exits as the server did.
        self.assertEqual(c.wait(5), 128 + signal.SIGKILL)
        self.assertEqual(c.read_to_eof(), b"")
        self.assertIn("session k had ended while no connection held it", c.stderr())
        self.assertIn('"signal":"SIGKILL"', c.stderr())
        wait_until(lambda: "session k ended while no connection held it: a keep for it was "
                   "dropped" in srv.stderr(), 5, "the dropped keep to be said")
        self.assertEqual(self.started(), 1, "no new server for a run that is over")
        # The end was told once: the next connection starts a new run.
        c = self.connect("--session", "k")
        c.send(initialize(1))
        self.assertEqual(c.msg()["id"], 1)
        self.end_new_run(srv, c)

    def test_an_end_its_own_client_asked_for_is_not_told_again(self):
        """The client that asked for its kept session's end, and went before the teardown
        was over, knows of it: its next connection starts a new run."""
        srv = self.listen("--ignore-eof")  # its end takes --eof-grace (300 ms), then TERM
        a, got, pid = self.kept_env("s")
        a.send({"session": "s", "message": req(2, "mcpmux/endRun")})
        a.close()  # before the end is over
        wait_until(lambda: not alive(pid) and '"s"' not in self.ctl("list", as_json=True)[1],
                   5, "the session to end")
        c = self.connect("--keep", "--session", "s")
        c.send(call(3, "env"))
        self.assertNotEqual(c.msg()["result"]["structuredContent"]["pid"], pid)
        self.assertIsNone(c.p.poll())
        self.assertEqual(self.started(), 2)
        rc, _ = self.ctl("end", "s")
        self.assertEqual(rc, 0)
        self.assertEqual(c.wait(5), 128 + signal.SIGTERM)  # the server ignores EOF
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_an_end_asked_for_by_a_connection_that_handed_the_session_on_is_told(self):
        """A asks for its kept session's end and goes; B takes the session over while it
        ends, and goes before the end: the end is told to the next connection, C."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve("--ignore-eof", opts=["--eof-grace", "3000", "--term-grace", "300",
                                               "--listen", self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        a, got, pid = self.kept_env("h")
        a.send({"session": "h", "message": req(2, "mcpmux/endRun")})
        a.close()
        # B comes once serve has seen A go: while A waits for the end it asked for, no
        # other connection takes the session (test_a_kept_session_whose_holder_waits...)
        self.wait_connections(1, "serve to see A go (ctl's own connection left)")
        b = Envelopes(self, self.path)
        b.send({"session": "h", "keep": True})
        self.assertEqual(b.next()["event"], "kept")
        b.close()
        wait_until(lambda: not alive(pid) and '"h"' not in self.ctl("list", as_json=True)[1],
                   10, "the session to end")
        c = Envelopes(self, self.path)
        c.send({"session": "h", "keep": True})
        ended = c.next()
        self.assertEqual((ended.get("event"), ended.get("unseen")), ("ended", True), ended)
        c.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_kept_session_whose_holder_waits_for_its_end_is_not_taken_over(self):
        """A asks for its kept session's end and waits for it; C names the session while
        it ends: C's request is refused (-32000, the run is ending), and A gets its end's
        answer and the ended event, not C.  Once the session has ended, C's next request
        starts a new run."""
        self.path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve("--ignore-eof", opts=["--eof-grace", "1000", "--term-grace", "300",
                                               "--listen", self.path])
        wait_until(lambda: os.path.exists(self.path), 5, "the socket")
        a, got, pid = self.kept_env("w")
        a.send({"session": "w", "message": req(2, "mcpmux/endRun")})
        wait_until(lambda: '"state":"ending"' in self.ctl("list", as_json=True)[1], 5,
                   "the end to begin")
        c = Envelopes(self, self.path)
        c.send({"session": "w", "message": req(3, "ping")})
        err = c.next()
        self.assertEqual((err.get("session"), err["message"]["id"]), ("w", 3), err)
        self.assertEqual(err["message"]["error"]["code"], -32000, err)
        self.assertIn("run is ending", err["message"]["error"]["message"])
        got = a.next()
        self.assertEqual(got.get("message", {}).get("id"), 2, got)
        self.assertEqual(got["message"]["result"]["pid"], pid)
        self.assertEqual(a.next().get("event"), "ended")
        self.assertFalse(alive(pid))
        c.send({"session": "w", "message": call(4, "env")})
        got = [c.next() for _ in range(2)]
        self.assertEqual([g.get("event") for g in got], ["started", None], got)
        self.assertNotEqual(got[1]["message"]["result"]["structuredContent"]["pid"], pid)
        a.close()
        c.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_connect_without_keep_whose_client_initializes_goes_on_with_the_new_run(self):
        srv = self.listen()
        pid = self.kept_then_gone("n", lambda pid: os.kill(pid, signal.SIGKILL))
        c = self.connect("--session", "n")
        c.send(initialize(1))
        # The earlier run's end comes first, marked as told late; the run the initialize
        # starts goes on, and connect with it (it exited with the old run's status).
        self.assertEqual(c.msg()["id"], 1)
        c.send(call(2, "env"))
        self.assertNotEqual(c.msg()["result"]["structuredContent"]["pid"], pid)
        self.assertIn("an earlier run of it ended while no connection held it", c.stderr())
        self.end_new_run(srv, c)

    def test_a_request_for_the_run_that_is_over_is_refused_and_an_initialize_starts_anew(self):
        srv = self.listen()
        pids = {sid: self.kept_then_gone(sid, lambda pid, sid=sid: self.assertEqual(
            self.ctl("end", sid)[0], 0)) for sid in ("r", "i")}
        b = Envelopes(self, self.path)
        b.send({"session": "r", "message": call(7, "env")})
        ended = b.next()
        self.assertEqual((ended["session"], ended["event"], ended["pid"], ended["exit"],
                          ended["unseen"]), ("r", "ended", pids["r"], {"code": 0}, True), ended)
        err = b.next()
        self.assertEqual((err["session"], err["message"]["id"], err["message"]["error"]["code"]),
                         ("r", 7, -32000), err)
        self.assertIn("no connection held it", err["message"]["error"]["message"])
        self.assertEqual(self.started(), 2, "the request started nothing")
        # told once: the next message is a new run's
        b.send({"session": "r", "message": call(8, "env")})
        got = [b.next() for _ in range(2)]
        self.assertEqual(got[0]["event"], "started", got)
        self.assertEqual(got[1]["message"]["id"], 8, got)
        # an initialize is a new run: the old end, then the new server, in that order
        b.send({"session": "i", "message": initialize(3)})
        got = [b.next() for _ in range(3)]
        self.assertEqual([g["session"] for g in got], ["i"] * 3, got)
        self.assertEqual([g.get("event") for g in got], ["ended", "started", None], got)
        self.assertEqual(got[2]["message"]["id"], 3, got)
        self.assertEqual(self.started(), 4)
        b.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_each_request_of_a_batch_and_an_invalid_one_are_answered(self):
        srv = self.listen()
        for sid in ("b", "v"):
            self.kept_then_gone(sid, lambda pid, sid=sid: self.assertEqual(
                self.ctl("end", sid)[0], 0))
        b = Envelopes(self, self.path)
        b.send({"session": "b", "message": [call(5, "env"), note("notifications/x"),
                                            req(6, "mcpmux/endRun")]},
               {"session": "v", "message": {"jsonrpc": "2.0", "id": 7}})
        got = [b.next() for _ in range(4)]
        self.assertEqual([(g["session"], g.get("event")) for g in got],
                         [("b", "ended"), ("b", None), ("v", "ended"), ("v", None)], got)
        # one array, an error for each request (an end-of-run in a batch is not mcpmux's)
        self.assertEqual([(m["id"], m["error"]["code"]) for m in got[1]["message"]],
                         [(5, -32000), (6, -32000)], got)
        self.assertIn("no connection held it", got[1]["message"][1]["error"]["message"])
        self.assertEqual((got[3]["message"]["id"], got[3]["message"]["error"]["code"]),
                         (7, -32600), got)
        self.assertEqual(self.started(), 2, "nothing started")
        b.close()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def kept_env(self, sid):
        """A connection that keeps session sid and asks its server's env: (the
        connection, its first three lines: kept, started and the answer, the server's pid)."""
        a = Envelopes(self, self.path)
        a.send({"session": sid, "keep": True}, {"session": sid, "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        return a, got, got[2]["message"]["result"]["structuredContent"]["pid"]

    def wait_connections(self, n, why):
        wait_until(lambda: json.loads(self.ctl("stats", as_json=True)[1])["connections"] == n,
                   5, why)

    def assert_keep_is_told_the_end(self, c, sid, pid):
        """A keep for sid on connection c is answered with the end of server pid, unseen."""
        c.send({"session": sid, "keep": True})
        ended = c.next()
        self.assertEqual((ended.get("event"), ended.get("pid"), ended.get("unseen")),
                         ("ended", pid, True), ended)

    def stop_serve(self, srv):
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def assert_the_next_is_told(self, srv, sid, pid, who):
        """Once serve has closed connection `who`, the next connection that names kept
        session sid is told its end (that of server pid), unseen, and nothing starts."""
        self.wait_connections(1, "serve to close " + who)
        c = Envelopes(self, self.path)
        self.assert_keep_is_told_the_end(c, sid, pid)
        self.assertEqual(self.started(), 1, "no new server for a run that is over")
        c.close()
        self.stop_serve(srv)

    def test_an_end_is_not_taken_by_a_connection_whose_output_is_gone(self):
        """B names the session but reads nothing (its read side is shut): the end cannot
        reach it, and stays unseen for C."""
        srv = self.listen()
        pid = self.kept_then_gone("g", lambda pid: self.assertEqual(self.ctl("end", "g")[0], 0))
        b = Envelopes(self, self.path)
        b.s.shutdown(socket.SHUT_RD)
        b.send({"session": "g", "keep": True})
        self.assert_the_next_is_told(srv, "g", pid, "B")

    def test_an_end_its_holder_cannot_be_told_is_told_to_the_next(self):
        """A holds its kept session but reads nothing more (its read side is shut): the
        `ended` of a ctl end cannot reach it, and is told to C."""
        srv = self.listen()
        a, got, pid = self.kept_env("w")
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        a.s.shutdown(socket.SHUT_RD)
        self.assertEqual(self.ctl("end", "w")[0], 0)
        self.assert_the_next_is_told(srv, "w", pid, "A")

    def test_an_end_queued_for_a_holder_that_goes_is_told_to_the_next(self):
        """A holds its kept session and reads nothing: a big result waits in its queue, and
        the `ended` of a ctl end behind it.  A goes before its queue is written: the end
        never reached it, and is told to C."""
        srv = self.listen()
        a, pid = self.stuck_holder("q")
        a.close()
        self.assert_the_next_is_told(srv, "q", pid, "A")

    def big_result_queued(self, c, sid, rid):
        """Request rid of session sid asks for a result of 4 MiB, more than c's socket
        takes (less than --max-queue): once it waits in serve's queue for c."""
        c.send({"session": sid, "message": call(rid, "huge", bytes=4 << 20)})
        wait_until(lambda: any(x["session"] == sid and x["out"]["bytes"] > 4 << 20 for x in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"]),
                   10, "the big result to be queued")

    def assert_the_next_is_told_the_end(self, c, sid, pid):
        """c goes with sid's end not written to it: the next connection is told it."""
        c.close()
        self.wait_connections(1, "serve to close C")
        d = Envelopes(self, self.path)
        self.assert_keep_is_told_the_end(d, sid, pid)
        d.close()

    def stuck_holder(self, sid):
        """A connection holds kept session sid and reads nothing: a big result waits in
        its queue, then the `ended` of a ctl end behind it.  The connection and the
        server's pid."""
        a = Envelopes(self, self.path)
        a.send({"session": sid, "keep": True}, {"session": sid, "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        pid = got[2]["message"]["result"]["structuredContent"]["pid"]
        # more than the socket takes, less than --max-queue: it waits in the queue
        self.big_result_queued(a, sid, 2)
        self.assertEqual(self.ctl("end", sid)[0], 0)
        return a, pid

    def test_an_end_its_holder_loses_is_told_to_a_connection_that_only_kept_it(self):
        """A's `ended` waits in its queue; B sends only a keep for the session (no server
        starts).  A goes before its end is written: B's next envelope gets the end, and
        starts nothing."""
        srv = self.listen()
        a, pid = self.stuck_holder("n")
        b = Envelopes(self, self.path)
        b.send({"session": "n", "keep": True})
        self.assertEqual(b.next().get("event"), "kept")
        a.close()
        self.wait_connections(2, "serve to close A (B and ctl's are left)")
        b.send({"session": "n", "message": call(3, "env")})
        got = [b.next() for _ in range(2)]
        self.assertEqual((got[0].get("event"), got[0].get("pid"), got[0].get("unseen")),
                         ("ended", pid, True), got)
        self.assertEqual((got[1]["message"]["id"], got[1]["message"]["error"]["code"]),
                         (3, -32000), got)
        self.assertEqual(self.started(), 1, "no new server for a run that is over")
        # told once: the next message is a new run's
        b.send({"session": "n", "message": call(4, "env")})
        got = [b.next() for _ in range(2)]
        self.assertEqual((got[0].get("event"), got[1]["message"]["id"]), ("started", 4), got)
        b.close()
        self.stop_serve(srv)

    def test_an_end_its_holder_loses_after_a_later_run_started_is_not_told(self):
        """A's `ended` waits in its queue; B starts a later run of the session and ends it
        itself.  A goes before its end is written: a later run has started since, so the
        end is not kept, and C's keep starts nothing and is told nothing."""
        srv = self.listen()
        a, _ = self.stuck_holder("l")
        b = Envelopes(self, self.path)
        b.send({"session": "l", "message": call(1, "env")})
        got = [b.next() for _ in range(2)]
        self.assertEqual((got[0].get("event"), got[1]["message"]["id"]), ("started", 1), got)
        b.send({"session": "l", "message": req(2, "mcpmux/endRun")})
        got = [b.next() for _ in range(2)]
        self.assertEqual(sorted(str(g.get("event")) for g in got), ["None", "ended"], got)
        self.assertEqual(self.started(), 2)
        b.close()
        a.close()
        self.wait_connections(1, "serve to close A and B")
        c = Envelopes(self, self.path)
        c.send({"session": "l", "keep": True})
        kept = c.next()
        self.assertEqual((kept.get("event"), kept.get("unseen")), ("kept", None), kept)
        c.close()
        self.stop_serve(srv)

    def two_lost_ends(self, older_goes_first):
        """A's and then B's run of the same session end while each one's `ended` waits in
        its queue; both go: the end kept for the next is the later run's."""
        srv = self.listen()
        a, _ = self.stuck_holder("d")
        b, pid = self.stuck_holder("d")
        self.assertEqual(self.started(), 2)
        for x, left in zip((a, b) if older_goes_first else (b, a), (2, 1)):
            x.close()
            wait_until(lambda left=left: json.loads(self.ctl("stats", as_json=True)[1])
                       ["connections"] == left, 5, "serve to close a holder")
        c = Envelopes(self, self.path)
        self.assert_keep_is_told_the_end(c, "d", pid)
        c.close()
        self.stop_serve(srv)

    def test_of_two_lost_ends_the_later_is_told_when_the_older_goes_first(self):
        self.two_lost_ends(True)

    def test_of_two_lost_ends_the_later_is_told_when_the_later_goes_first(self):
        self.two_lost_ends(False)

    def test_an_end_told_to_a_connection_that_goes_before_it_is_written_is_told_again(self):
        """C reads nothing: a big result of another session waits in its queue, and the
        unseen end its keep takes behind it.  C goes before its queue is written: the end
        never reached it, and is told to D."""
        srv = self.listen()
        pid = self.kept_then_gone("u", lambda pid: self.assertEqual(self.ctl("end", "u")[0], 0))
        c = Envelopes(self, self.path)
        self.big_result_queued(c, "f", 1)
        c.send({"session": "u", "keep": True})
        wait_until(lambda: "session u ended while no connection held it: a keep for it was "
                   "dropped" in srv.stderr(), 5, "the end to be queued")
        self.assert_the_next_is_told_the_end(c, "u", pid)
        self.stop_serve(srv)

    def test_an_end_told_to_an_initialize_that_is_refused_is_told_again(self):
        """As above, but C's envelope is an initialize, refused (--max-sessions: C's other
        session holds the one slot): it started no run, so C going before the end is
        written leaves the end to D."""
        srv = self.listen(opts=["--max-sessions", "1"])
        pid = self.kept_then_gone("u", lambda pid: self.assertEqual(self.ctl("end", "u")[0], 0))
        c = Envelopes(self, self.path)
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.big_result_queued(c, "f", 1)
        c.send({"session": "u", "message": initialize(1)})
        wait_until(lambda: json.loads(self.ctl("stats", as_json=True)[1])["refused"] == 1, 5,
                   "the initialize to be refused")
        self.assert_the_next_is_told_the_end(c, "u", pid)
        self.stop_serve(srv)

    def test_a_connection_whose_output_died_takes_no_session(self):
        """B reads nothing (its read side is shut); its first line fails to be answered,
        and its next, in the same read, names A's kept session: B takes nothing, and its
        message reaches no server."""
        srv = self.listen()
        a, got, pid = self.kept_env("t")
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        b = Envelopes(self, self.path)
        b.s.shutdown(socket.SHUT_RD)
        b.f.write(b'{}\n' + encode({"session": "t", "message": call(9, "env")}))
        self.wait_connections(2, "serve to close B (A and ctl's are left)")
        listed = json.loads(self.ctl("list", as_json=True)[1])["sessions"]
        self.assertEqual([(x["session"], x["connected"], x["in"]["messages"]) for x in listed],
                         [("t", True, 1)], listed)
        a.send({"session": "t", "message": call(2, "env")})
        self.assertEqual(a.next()["message"]["id"], 2)
        a.close()
        self.stop_serve(srv)

    def test_an_envelope_too_long_to_buffer_leaves_the_end_for_the_next(self):
        """An envelope over what serve buffers, for a session whose end is unseen, is refused
        unread (-32600 with its id) and takes nothing: the next envelope gets the end."""
        srv = self.listen(opts=["--max-message", "64K"])
        pid = self.kept_then_gone("z", lambda pid: self.assertEqual(self.ctl("end", "z")[0], 0))
        b = Envelopes(self, self.path)
        b.send({"session": "z", "message": call(5, "echo", text="x" * (128 << 10))})
        err = b.next()
        self.assertEqual((err.get("session"), err["message"]["id"],
                          err["message"]["error"]["code"]), ("z", 5, -32600), err)
        self.assert_keep_is_told_the_end(b, "z", pid)
        self.assertEqual(self.started(), 1, "no new server for a run that is over")
        b.close()
        self.stop_serve(srv)

    def test_unseen_ends_are_bounded_by_max_sessions(self):
        srv = self.listen(opts=["--max-sessions", "2"])
        for sid in ("a", "b", "c"):
            self.kept_then_gone(sid, lambda pid, sid=sid: self.assertEqual(
                self.ctl("end", sid)[0], 0))
        wait_until(lambda: "session a: its end was never told to a client, and is forgotten"
                   in srv.stderr(), 5, "the forgotten end to be said")
        b = Envelopes(self, self.path)
        for sid, first in (("a", "started"), ("c", "ended"), ("b", "ended")):
            b.send({"session": sid, "message": note("notifications/initialized")})
            self.assertEqual(b.next()["event"], first, sid)
        b.close()
        self.stop_serve(srv)


class KeptSessionAnswers(ListenHelpers, Case):
    """A kept session's answer that comes as its connection goes: it reaches the next holder,
    or its loss is said on serve's stderr with the session (and the request's id), never
    lost in silence."""

    def holder(self, sid):
        """A connection that keeps sid and holds its run: the connection and the server's pid."""
        a = Envelopes(self, self.path)
        a.send({"session": sid, "keep": True}, {"session": sid, "message": call(1, "env")})
        got = [a.next() for _ in range(3)]
        self.assertEqual([g.get("event") for g in got], ["kept", "started", None], got)
        return a, got[2]["message"]["result"]["structuredContent"]["pid"]

    def next_holder_gets(self, sid):
        """The ids of what the next connection that names kept session sid gets, up to the
        answer to its own request (3)."""
        b = Envelopes(self, self.path)
        b.send({"session": sid, "keep": True}, {"session": sid, "message": call(3, "env")})
        ids = []
        while 3 not in ids:
            got = b.next()
            if "message" in got:
                ids.append(got["message"].get("id"))
        b.close()
        return ids

    def test_an_answer_for_a_connection_closed_before_serve_saw_it_go_is_not_lost_silently(self):
        """A asks, and closes its connection while serve is stopped; the answer is in the
        server's pipe when serve goes on, with A's close not yet seen: written to A's dead
        socket, it is lost, and serve says so with the session and the request's id (or, if
        serve sees the close first, the next holder gets it)."""
        srv = self.listen()
        a, pid = self.holder("p")
        a.send({"session": "p", "message": call(2, "sleep", ms=500)})
        wait_until(lambda: json.loads(self.ctl("list", as_json=True)[1])["sessions"][0]
                   ["pending"] == 1, 5, "the request to reach the server")
        srv.p.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: srv.p.poll() is None and srv.p.send_signal(signal.SIGCONT))
        a.close()
        out = os.open("/proc/%d/fd/1" % pid, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, out)
        wait_until(lambda: fcntl.ioctl(out, termios.FIONREAD, b"\0\0\0\0") != b"\0\0\0\0", 5,
                   "the answer in the server's pipe")
        srv.p.send_signal(signal.SIGCONT)
        ids = self.next_holder_gets("p")
        said = "session p: the answer to request 2"
        self.assertTrue(2 in ids or said in srv.stderr(), (ids, srv.stderr()))
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_an_answer_its_holder_closes_unread_is_said_to_be_lost(self):
        """A asks, and closes its connection with the answer in its socket, unread (as a
        client killed then would): serve learns it from the close (ECONNRESET), and says
        that the session's lines were lost; the next holder gets the next answers."""
        srv = self.listen()
        a, _ = self.holder("r")
        a.send({"session": "r", "message": call(2, "sleep", ms=100)})
        self.assertTrue(select.select([a.s], [], [], 5 * SLOW)[0], "the answer to come")
        a.close()
        wait_until(lambda: "session r: lines written to it not read" in srv.stderr(), 5,
                   "the loss to be said")
        self.assertEqual(self.next_holder_gets("r"), [3])
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_each_session_of_a_connection_closed_unread_is_named(self):
        """A connection holds three kept sessions and closes with an answer of each in its
        socket, unread: one line names each of the three (not the first and the last of
        three lines summed up)."""
        srv = self.listen()
        a = Envelopes(self, self.path)
        for sid in ("u1", "u2", "u3"):
            a.send({"session": sid, "keep": True}, {"session": sid, "message": call(1, "env")})
        got = [a.next() for _ in range(9)]
        self.assertEqual(sorted(g.get("event", "answer") for g in got),
                         ["answer"] * 3 + ["kept"] * 3 + ["started"] * 3, got)
        for sid in ("u1", "u2", "u3"):
            a.send({"session": sid, "message": call(2, "echo", text="x")})
        wait_until(lambda: all(s["pending"] == 0 for s in
                               json.loads(self.ctl("list", as_json=True)[1])["sessions"]), 5,
                   "the answers to be written")
        self.assertTrue(select.select([a.s], [], [], 5 * SLOW)[0], "the answers to come")
        a.close()
        said = wait_until(lambda: [l for l in srv.stderr().splitlines()
                                   if "not read" in l], 5, "the loss to be said")
        self.assertEqual(len(said), 1, said)
        for sid in ("u1", "u2", "u3"):
            self.assertIn("session %s:" % sid, said[0])
        self.assertNotIn("more like it", srv.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)

    def test_an_answer_queued_for_a_connection_that_goes_is_said_to_be_lost(self):
        """A does not read while a long answer comes: serve queues what the socket does not
        take.  With serve stopped, A reads what its socket holds and closes (no reset: nothing
        was left unread); when serve goes on, the queued rest can no longer be written, and
        serve says it is lost, with its session and how many bytes (as many as A did not
        get)."""
        srv = self.listen()
        a, _ = self.holder("w")
        a.send({"session": "w", "message": call(2, "huge", bytes=4 << 20)})
        wait_until(lambda: json.loads(self.ctl("list", as_json=True)[1])["sessions"][0]
                   ["pending"] == 0, 10, "the answer to be queued")
        srv.p.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: srv.p.poll() is None and srv.p.send_signal(signal.SIGCONT))
        a.s.setblocking(False)
        got = 0
        try:
            while True:
                n = len(a.s.recv(1 << 16))
                if n == 0:
                    break
                got += n
        except BlockingIOError:
            pass
        self.assertLess(got, 4 << 20)
        a.close()
        srv.p.send_signal(signal.SIGCONT)
        said = wait_until(lambda: [l for l in srv.stderr().splitlines()
                                   if "session w:" in l and "lost" in l], 5,
                          "the loss to be said")
        # every byte of the envelope's line: those A read, and those said to be lost
        line = len(json.dumps({"session": "w", "message": {"jsonrpc": "2.0", "id": 2,
               "result": {"content": [{"type": "text", "text": "x" * (4 << 20)}]}}},
                              separators=(",", ":"))) + 1
        self.assertIn("session w: %d bytes queued for it not written" % (line - got), said[0])
        self.assertEqual(self.next_holder_gets("w"), [3])
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers(0)


if __name__ == "__main__":
    main()
