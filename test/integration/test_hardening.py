"""Failure paths: a slow or stuck server, a client that does not read, a stderr nobody
reads, shared file descriptions, cancelled and oddly written request ids, the order of
replies across runs.  Each test provokes one condition and asserts what the client, the
server and the process table see."""

import json
import sys
import textwrap
import os
import pty
import select
import signal
import threading
import time
import tty
import unittest

from mcptest import (Case, FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, alive, call, cpu_seconds, deadline, encode,
                     initialize, main, note, req, rss_anon_kib, vm_hwm_kib, wait_until)

FAST = ["--eof-grace", "300", "--term-grace", "300"]
END = note("mcpmux/endRun")


def text_of(m):
    return m["result"]["content"][0]["text"]


def logged(log, what, times=1):
    """Wait until the traffic log holds what (times times)."""
    def seen():
        if not os.path.exists(log):
            return False
        with open(log, "rb") as f:
            return f.read().count(what) >= times
    wait_until(seen, 10, "%r in the log" % what)


def env_of(p, id_):
    p.send(call(id_, "env"))
    m = p.msg()
    assert m.get("id") == id_, m
    return m["result"]["structuredContent"]


class Writer(threading.Thread):
    """Writes data to fd with blocking writes, so that it is held back as a client is."""

    def __init__(self, fd, data):
        super().__init__(daemon=True)
        self.fd, self.data, self.done, self.error = fd, data, 0, None

    def run(self):
        os.set_blocking(self.fd, True)
        view = memoryview(self.data)
        try:
            while self.done < len(view):
                self.done += os.write(self.fd, view[self.done:self.done + 65536])
        except OSError as e:
            self.error = e


def wait_stalled(w, what, seconds=20):
    """Wait until a Writer has made no progress for half a second."""
    last = [-1, time.monotonic()]

    def stalled():
        if w.done != last[0]:
            last[0], last[1] = w.done, time.monotonic()
            return False
        return time.monotonic() - last[1] > 0.5
    wait_until(stalled, seconds, what)


class SlowServer(Case):
    """A server that reads slower than its client writes holds the client back."""

    N = 2000

    def flood(self, n):
        pad = "x" * 1000
        return b"".join(encode(note("notifications/progress", {"i": i, "pad": pad}))
                        for i in range(n))

    def test_wrap_every_notification_reaches_a_slow_server(self):
        w = self.wrap("--slow-reader=1", opts=["--max-queue", "64K"])
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        w.write(self.flood(self.N), seconds=120)
        w.send(call(1, "stats"))
        m = w.msg(60)
        # initialize, every notification, and this call
        self.assertEqual(int(text_of(m)), self.N + 2)
        self.assertNotIn("dropped", w.stderr())
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        if not SANITIZED and not WRAPPER:
            self.assertLess(vm_hwm_kib(w.pid) if w.p.returncode is None else 0, 32 * 1024)

    def test_serve_every_notification_reaches_a_slow_server(self):
        s = self.serve("--slow-reader=1", opts=["--max-queue", "64K"])
        env = lambda m: encode({"session": "slow", "message": m})
        s.write(env(initialize(0)))
        self.assertEqual(s.msg()["event"], "started")
        self.assertEqual(s.msg()["message"]["id"], 0)
        pad = "x" * 1000
        s.write(b"".join(env(note("notifications/progress", {"i": i, "pad": pad}))
                         for i in range(self.N)), seconds=120)
        s.write(env(call(1, "stats")))
        m = s.msg(60)
        self.assertEqual(int(text_of(m["message"])), self.N + 2)
        self.assertNotIn("dropped", s.stderr())
        s.close_stdin()
        self.assertEqual(s.msg()["event"], "ended")
        self.assertEqual(s.wait(), 0)

    def test_serve_slow_session_holds_only_its_connection(self):
        """Connection A floods a slow server; connection B's session is answered meanwhile."""
        import socket
        path = os.path.join(self.tmp.name, "s.sock")
        s = self.serve("--slow-reader=5", opts=["--listen", path, "--max-queue", "16K"] + FAST,
                       )
        wait_until(lambda: os.path.exists(path), 10, "the socket")
        a = socket.socket(socket.AF_UNIX)
        a.connect(path)
        b = socket.socket(socket.AF_UNIX)
        b.connect(path)
        pad = "x" * 1000
        data = b"".join(encode({"session": "a", "message": note("n", {"i": i, "pad": pad})})
                        for i in range(600))
        wa = Writer(a.fileno(), data)
        wa.start()
        wait_stalled(wa, "connection A to be held back")
        self.assertLess(wa.done, len(data))
        b.sendall(encode({"session": "b", "message": req(1, "ping")}))
        buf = b""
        end = deadline(10)
        while b'"id":1' not in buf:
            r, _, _ = select.select([b], [], [], max(0, end - time.monotonic()))
            self.assertTrue(r, "connection B was not answered while A is held: %r" % buf)
            buf += b.recv(65536)
        a.close()
        b.close()
        s.p.send_signal(signal.SIGTERM)
        self.assertEqual(s.wait(10), 0)


class Stall(Case):
    """A server that accepts no input at all while input waits."""

    def test_wrap_stuck_server_is_ended_and_every_request_answered(self):
        w = self.wrap("--stop-reading-after=2",
                      opts=["--max-queue", "16K", "--stall-timeout", "1"] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        n = 80
        pad = "p" * 4000
        data = b"".join(encode(call(i, "echo", text=pad)) for i in range(1, n + 1))
        wr = Writer(w.p.stdin.fileno(), data)
        wr.start()
        # Each stall ends a run and lets the client go on; the last requests sit in the
        # pipe of a server that does not read them, which no longer holds the client
        # back: the client ends that run itself.
        wr.join(60)
        self.assertFalse(wr.is_alive(), "the client was held back for good")
        self.assertIsNone(wr.error)
        w.send(END)
        replies = {}
        stalled_text = None
        while len(replies) < n:
            m = w.msg(30)
            self.assertNotIn(m["id"], replies, "two replies for one request")
            replies[m["id"]] = m
            if "error" in m and stalled_text is None:
                stalled_text = m["error"]["message"]
        self.assertEqual(sorted(replies), list(range(1, n + 1)))
        self.assertIsNotNone(stalled_text)
        self.assertIn("stopped reading its input", stalled_text)
        self.assertTrue(all(m["error"]["code"] == -32000 for m in replies.values()
                            if "error" in m))
        self.assertIn("has not read its input for 1 s", w.stderr())
        w.close_stdin()
        w.wait(10)
        self.assert_no_leftovers()

    def test_with_stall_timeout_0_a_server_that_stops_reading_keeps_its_run(self):
        """--stall-timeout 0: never.  A server that stops reading its input is not ended,
        nor are its requests answered with errors, and its client stays held back
        (backpressure).  Watched for 3 s: three times the 1 s after which --stall-timeout 1
        ends the same run (test_wrap_stuck_server_is_ended_and_every_request_answered)."""
        w = self.wrap("--stop-reading-after=2",
                      opts=["--max-queue", "16K", "--stall-timeout", "0"] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        pid = env_of(w, 1)["pid"]
        pad = "p" * 4000
        wr = Writer(w.p.stdin.fileno(), b"".join(encode(call(i, "echo", text=pad))
                                                 for i in range(2, 82)))
        wr.start()
        wait_stalled(wr, "the client to be held back")
        held = wr.done
        w.no_output(3)
        self.assertTrue(alive(pid))
        self.assertIsNone(w.p.poll())
        self.assertTrue(wr.is_alive(), "the client was let go")
        self.assertEqual(wr.done, held)
        self.assertNotIn("has not read its input", w.stderr())
        w.p.send_signal(signal.SIGTERM)
        w.wait(10)
        wr.join(10)
        self.assertFalse(wr.is_alive())
        self.assert_no_leftovers()

    def test_wrap_after_a_stall_the_next_message_starts_a_fresh_run(self):
        """wrap: a stall ends the run (its requests get errors); the next message starts a
        fresh run, whose server (a new process, which reads) answers it."""
        first = os.path.join(self.tmp.name, "first")
        open(first, "w").close()
        # the first run's server stops reading after two lines; the next ones read
        script = 'if rm "$1" 2>/dev/null; then exec "$2" --stop-reading-after=2; fi; exec "$2"'
        w = self.wrap(opts=["--max-queue", "16K", "--stall-timeout", "1"] + FAST,
                      command=["sh", "-c", script, "sh", first, FIXTURE])
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        pid = env_of(w, 1)["pid"]
        n = 40  # 160 KB: more than the server's pipe and mcpmux's queue hold
        pad = "p" * 4000
        wr = Writer(w.p.stdin.fileno(), b"".join(encode(call(i, "echo", text=pad))
                                                 for i in range(2, n + 2)))
        wr.start()
        replies = {}
        while len(replies) < n:
            m = w.msg(10)
            self.assertNotIn(m["id"], replies, "two replies for one request")
            replies[m["id"]] = m
        wr.join(10)
        self.assertFalse(wr.is_alive())
        errors = [m["error"] for m in replies.values() if "error" in m]
        self.assertTrue(errors, "no request was ended with the stalled run")
        self.assertTrue(all("stopped reading its input" in e["message"] for e in errors),
                        errors)
        self.assertIn("has not read its input for 1 s", w.stderr())
        wait_until(lambda: not alive(pid), 5, "the stalled run's server to be gone")
        fresh = env_of(w, n + 2)
        self.assertNotEqual(fresh["pid"], pid)
        self.assertTrue(alive(fresh["pid"]))
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
        self.assert_no_leftovers()

    def test_a_client_that_does_not_read_is_not_a_stalled_server(self):
        """serve over stdio: the client sends 500 requests and reads nothing for longer
        than --stall-timeout.  Its server (a slow reader: input waits for it in mcpmux's
        queue), blocked writing answers that mcpmux does not read for it, takes no input
        meanwhile: that is the client's pace, not a stall.  Every request is answered by
        the server, and its run goes on."""
        p = self.serve("--slow-reader=2",
                       opts=["--max-queue", "64K", "--stall-timeout", "1"] + FAST)
        p.send({"session": "s", "message": initialize(0)})
        self.assertEqual(p.msg()["event"], "started")
        self.assertEqual(p.msg()["message"]["id"], 0)
        n = 500
        data = b"".join(encode({"session": "s", "message": call(i, "echo", text="x" * 900)})
                        for i in range(1, n + 1))
        wr = Writer(p.p.stdin.fileno(), data)
        wr.start()
        wait_stalled(wr, "the client to be held back")
        time.sleep(2.5)  # the client reads nothing for longer than --stall-timeout
        answers, events = {}, []
        while len(answers) < n:
            m = p.msg(10)
            if "message" in m:
                answers[m["message"]["id"]] = m["message"]
            else:
                events.append(m)
        self.assertEqual(events, [])  # not ended, nor started again
        wr.join(10)
        self.assertFalse(wr.is_alive())
        self.assertEqual(sorted(answers), list(range(1, n + 1)))
        errors = [m for m in answers.values() if "error" in m]
        self.assertEqual(errors, [])
        self.assertNotIn("has not read its input", p.stderr())
        p.send({"session": "s", "message": req(n + 1, "ping")})
        self.assertEqual(p.msg()["message"]["id"], n + 1)
        p.close_stdin()
        self.assertEqual(p.msg()["event"], "ended")
        self.assertEqual(p.wait(10), 0)
        self.assert_no_leftovers()


    def test_a_server_that_writes_but_never_reads_is_stalled_across_pauses(self):
        """wrap: the server reads initialize, then only writes (an endless flood) and never
        reads the requests that wait for it.  The client reads in bursts of 0.5 s with
        0.5 s gaps: each gap pauses the server's output, and no stretch between two pauses
        reaches --stall-timeout.  The time the server spent not reading while it was read
        adds up across the pauses: its run ends as stalled, every request answered."""
        w = self.wrap("--stop-reading-after=1", "--flood=0",
                      opts=["--max-queue", "64K", "--stall-timeout", "1"] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        n = 25
        pad = "p" * 4000
        # more than the server's pipe holds: some wait in mcpmux's queue.  Written while the
        # flood is read: mcpmux stops reading the client while its answers are not read
        # (its queue to the client full of the flood), and a write alone could stall.
        writer = threading.Thread(target=w.write, args=(b"".join(
            encode(call(i, "echo", text=pad)) for i in range(1, n + 1)), 20))
        writer.start()
        self.addCleanup(writer.join, 30)
        # The flood is read as raw bytes, as fast as the client can: only the replies to
        # the requests are parsed.
        fd, tail, replies = w.p.stdout.fileno(), b"", {}
        end = deadline(20)
        while len(replies) < n:
            self.assertLess(time.monotonic(), end, "the server was never taken as stalled "
                            "(%d of %d requests answered)" % (len(replies), n))
            burst = time.monotonic() + 0.5
            while len(replies) < n and time.monotonic() < burst:
                r, _, _ = select.select([fd], [], [], max(0, burst - time.monotonic()))
                chunk = os.read(fd, 1 << 20) if r else b""
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if b'"id":' in line:
                        m = json.loads(line)
                        self.assertNotIn(m["id"], replies, "two replies for one request")
                        replies[m["id"]] = m
            time.sleep(0.5)  # the client reads nothing: the server's output is paused
        self.assertEqual(sorted(replies), list(range(1, n + 1)))
        for m in replies.values():
            self.assertEqual(m["error"]["code"], -32000, m)
            self.assertIn("stopped reading its input", m["error"]["message"])
        self.assertIn("has not read its input for 1 s", w.stderr())
        writer.join(30)
        w.close_stdin()
        w.read_to_eof(10)  # the rest of the flood
        # the last run's server was ended by SIGTERM (it ignores EOF: it never reads)
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM)
        self.assert_no_leftovers()


class OutputThrottlesInput(Case):
    """A client that writes without reading what mcpmux answers it."""

    def test_unread_answers_hold_the_client_and_none_is_lost(self):
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        w = self.start([MCPMUX, "--max-queue", "1M", "--", "sleep", "100"], env=env)
        wait_until(lambda: len(self.tagged()) >= 2, 10, "the server")
        base = rss_anon_kib(w.pid)
        lines = 300000
        wr = Writer(w.p.stdin.fileno(), b"x\n" * lines)
        wr.start()
        wait_stalled(wr, "the client to be held back")
        self.assertLess(wr.done, lines * 2, "nothing held the client back")
        grown = rss_anon_kib(w.pid) - base
        # the queue, plus one read's worth and the allocator's slack
        self.assertLess(grown, 1024 + (8 * 1024 if SANITIZED or WRAPPER else 2048),
                        "mcpmux grew by %d KiB" % grown)
        want = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": -32700, "message": "Parse error: not valid JSON"}},
            separators=(",", ":")).encode()
        for i in range(lines):
            got = w.line(30)
            if got != want:
                self.fail("answer %d: %r" % (i, got))
        wr.join(10)
        self.assertEqual(wr.done, lines * 2)
        w.close_stdin()
        w.wait(10)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_given_back_after_a_full_queue_of_small_answers(self):
        """A queue that filled with many small lines (no one of them big) gives its memory
        back once it is written and mcpmux is idle, as after one big message."""
        w = self.start([MCPMUX, "--max-queue", "8M", "--", "sleep", "100"])
        wait_until(lambda: len(self.tagged()) >= 2, 10, "the server")
        lines = 200000
        wr = Writer(w.p.stdin.fileno(), b"x\n" * lines)
        wr.start()
        wait_stalled(wr, "the client to be held back")
        self.assertGreater(rss_anon_kib(w.pid), 6 * 1024, "the queue did not fill")
        for i in range(lines):
            self.assertEqual(json.loads(w.line(30))["error"]["code"], -32700)
        wr.join(10)
        wait_until(lambda: rss_anon_kib(w.pid) < 2048, 5,
                   "mcpmux's private memory to fall back under 2 MiB")
        w.close_stdin()
        w.wait(10)


class UnreadStderr(Case):
    """A host that pipes mcpmux's stderr and does not read it."""

    def run_unread(self, opts, fixture):
        r, wfd = os.pipe()
        try:
            w = self.start([MCPMUX] + opts + FAST + ["--", FIXTURE] + fixture, stderr=wfd)
        finally:
            os.close(wfd)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        # enough noise and chatter to fill the stderr pipe many times over
        for i in range(1, 3001):
            w.send(req(i, "ping"))
        for i in range(1, 3001):
            self.assertEqual(w.msg(30)["id"], i)
        t0 = time.monotonic()
        w.p.send_signal(signal.SIGTERM)
        code = w.wait(10)
        took = time.monotonic() - t0
        os.close(r)
        return code, took

    # The fixture exits on EOF, which comes before SIGTERM: status 0, within the graces.
    def test_noise_on_unread_stderr_never_freezes_the_loop(self):
        code, took = self.run_unread([], ["--stdout-noise"])
        self.assertEqual(code, 0)
        self.assertLess(took, 3 * (5 if SANITIZED or WRAPPER else 1))

    def test_relayed_server_stderr_on_unread_stderr_never_freezes_the_loop(self):
        log = os.path.join(self.tmp.name, "log")
        code, took = self.run_unread(["--log", log], ["--stdout-noise", "--stderr-chatter"])
        self.assertEqual(code, 0)
        self.assertLess(took, 3 * (5 if SANITIZED or WRAPPER else 1))

    def test_traffic_log_on_unread_stderr_never_freezes_the_loop(self):
        code, took = self.run_unread(["--log", "-"], [])
        self.assertEqual(code, 0)
        self.assertLess(took, 3 * (5 if SANITIZED or WRAPPER else 1))

    def test_repeated_noise_is_summed_up(self):
        w = self.wrap("--stdout-noise", opts=FAST)
        self.pings(w)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
        err = w.stderr()
        # 2002 noise lines: the first, then counts, at most one line a second
        self.assertLess(err.count("not JSON-RPC"), 30)
        self.assertIn("more like it)", err)
        counted = sum(int(l.rsplit("(and ", 1)[1].split()[0]) + 1
                      for l in err.splitlines() if "more like it)" in l)
        plain = sum(1 for l in err.splitlines()
                    if "not JSON-RPC" in l and "more like it)" not in l)
        self.assertEqual(counted + plain, 2002)

    def test_a_single_suppressed_line_is_said_as_it_is(self):
        """Two like lines within a second: the second is said on its own once the second
        is over, without a count of others ("and 0 more like it")."""
        w = self.wrap("--stdout-noise", opts=FAST)
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
        noise = [l for l in w.stderr().splitlines() if "not JSON-RPC" in l]
        self.assertEqual([l.rsplit(": ", 1)[1] for l in noise], ["1", "2"], w.stderr())

    def test_dropped_lines_are_counted_once_the_reader_is_back(self):
        r, wfd = os.pipe()
        try:
            w = self.start([MCPMUX, "--log", "-"] + FAST + ["--", FIXTURE], stderr=wfd)
        finally:
            os.close(wfd)
        self.pings(w)
        os.set_blocking(r, False)
        got = b""
        end = deadline(10)
        while b"lines of stderr dropped" not in got:
            rd, _, _ = select.select([r], [], [], max(0, end - time.monotonic()))
            self.assertTrue(rd, "no count of dropped lines: %r" % got[-300:])
            got += os.read(r, 1 << 20)
        n = int(got.split(b" lines of stderr dropped")[0].rsplit(b"mcpmux: ", 1)[1])
        self.assertGreater(n, 0)
        # what was not dropped is whole records, and what was dropped is counted
        records = [l for l in got.split(b"\n") if l.startswith(b'{"ts"')]
        for rec in records:
            json.loads(rec)
        self.assertEqual(len(records) + n, 1 + 2 * 2001 + 0, (len(records), n))
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
        os.close(r)

    def test_dropped_lines_are_counted_at_exit_for_a_slow_reader(self):
        """A reader that takes stderr too slowly for the queue to drain before the exit:
        the count of the lines dropped is written first, at the end of the line being
        written, and reaches that reader; not lost with the queue."""
        r, wfd = os.pipe()
        try:
            w = self.start([MCPMUX, "--log", "-", "--eof-grace", "1000", "--term-grace",
                            "300", "--", FIXTURE], stderr=wfd)
        finally:
            os.close(wfd)
        self.addCleanup(os.close, r)
        got = bytearray()

        def read_slowly():  # 4 KiB every 0.2 s while mcpmux runs; the rest at once
            while True:
                if w.p.poll() is None:
                    time.sleep(0.2)
                chunk = os.read(r, 4096)
                if not chunk:
                    return
                got.extend(chunk)
        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        self.pings(w)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
        reader.join(10 * (5 if SANITIZED else 1))
        self.assertFalse(reader.is_alive(), "no EOF on stderr")
        lines = bytes(got).split(b"\n")
        said = [l for l in lines if b"lines of stderr dropped" in l]
        self.assertEqual(len(said), 1, (said, lines[-3:]))
        self.assertRegex(said[0], rb"^mcpmux: [0-9]+ lines of stderr dropped \(stderr was "
                                  rb"not read in time\)$")
        # the records before it are whole
        for rec in lines[:lines.index(said[0])]:
            json.loads(rec)
        # it came before what was still queued: whole records after it, but the last,
        # which the exit may cut short, and the line that may say what was not written
        after = lines[lines.index(said[0]) + 1:]
        last_words = [l for l in after if l.startswith(b"mcpmux: ")]
        self.assertLessEqual(len(last_words), 1, last_words)
        whole = [l for l in after[:-1] if not l.startswith(b"mcpmux: ")]
        if last_words:
            self.assertEqual(after[-2:], [last_words[0], b""])
            self.assertRegex(last_words[0], rb"^mcpmux: [0-9]+ lines of stderr not written "
                                            rb"at exit")
            whole = whole[:-1]
        self.assertGreater(len(whole), 0, "no record after the count")
        for rec in whole:
            self.assertIn("ts", json.loads(rec))

    def test_the_keeper_never_blocks_on_a_full_stderr_socket(self):
        """stderr a socket nobody reads (as a service's journal stream can be): the keeper
        of a SIGKILLed mcpmux ends the daemonised grandchild, and its line about it does not
        keep it alive (the socket's description is shared: it stays blocking)."""
        import socket
        ours, theirs = socket.socketpair()
        try:
            w = self.start([MCPMUX] + FAST + ["--", FIXTURE, "--daemonize-grandchild"],
                           stderr=theirs.fileno())
            session = env_of(w, 1)["session"]
            got, end = b"", deadline(10)
            while b"grandchild" not in got:  # the fixture's own line, before the socket fills
                rd, _, _ = select.select([ours], [], [], max(0, end - time.monotonic()))
                self.assertTrue(rd, "no line from the fixture: %r" % got)
                got += ours.recv(4096)
            wait_until(lambda: len(self.cookie_pids(session)) >= 2, 5, "the grandchild")
            try:
                while True:
                    theirs.send(b"x" * 4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            self.assertTrue(os.get_blocking(theirs.fileno()))
            w.p.send_signal(signal.SIGKILL)
            w.wait()
            wait_until(lambda: not self.tagged(), 5,
                       "the grandchild and the keeper to be gone (left: %r)" % self.tagged())
        finally:
            ours.close()
            theirs.close()


class SharedDescriptions(Case):
    """The server sees its file descriptors as a direct run would."""

    def flags_with_2to1(self, argv):
        p = self.start(argv, stderr=subprocess_stdout())
        p.send(initialize(0))
        self.assertEqual(p.msg()["id"], 0)
        e = env_of(p, 1)
        p.close_stdin()
        p.wait(10)
        return [e["nonblock0"], e["nonblock1"], e["nonblock2"]]

    def test_2to1(self):
        direct = self.flags_with_2to1([FIXTURE])
        through = self.flags_with_2to1([MCPMUX, "--", FIXTURE])
        self.assertEqual(direct, [0, 0, 0])
        self.assertEqual(through, direct)

    @unittest.skipUnless(os.geteuid() == 0, "needs root, to run mcpmux as another user")
    def test_2to1_pipes_of_another_user(self):
        """mcpmux cannot open again a pipe of another user (root's, here, run as nobody):
        O_NONBLOCK then goes on the shared description, so the server's stderr, which
        shares it, is relayed through a pipe of its own, blocking as in a direct run."""
        def as_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        os.chown(self.run_dir.name, 65534, 65534)  # its runtime directory, as nobody's own
        p = self.start([MCPMUX, "--", FIXTURE], stderr=subprocess_stdout(),
                       preexec_fn=as_nobody, env=dict(self.env, MCPMUX_CGROUP="off"))
        p.send(initialize(0))
        self.assertEqual(p.msg()["id"], 0)
        e = env_of(p, 1)
        self.assertEqual([e["nonblock0"], e["nonblock1"], e["nonblock2"]], [0, 0, 0])
        self.assertTrue(os.readlink("/proc/%d/fd/2" % e["pid"]).startswith("pipe:"))
        # what the server says on stderr still reaches the client's stderr (here, stdout)
        p.send(call(2, "stderr", text="to stderr\n"))
        p.close_stdin()
        self.assertIn(b"to stderr", p.read_to_eof())
        self.assertEqual(p.wait(10), 0)

    @unittest.skipUnless(os.geteuid() == 0, "needs root, to run mcpmux as another user")
    def test_the_keeper_of_a_shared_stderr_writes_to_dev_null(self):
        """The same shared pipe: the keeper, whose words must never block it, takes
        /dev/null for its stderr (it kept the pipe's shared description, which mcpmux makes
        blocking again at its exit, so that a stalled reader could hold the keeper)."""
        from mcptest import keeper_of

        def as_nobody():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        os.chown(self.run_dir.name, 65534, 65534)
        p = self.start([MCPMUX, "--", FIXTURE], stderr=subprocess_stdout(),
                       preexec_fn=as_nobody, env=dict(self.env, MCPMUX_CGROUP="off"))
        p.send(initialize(0))
        self.assertEqual(p.msg()["id"], 0)
        [k] = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == p.pid], 5,
                         "the keeper")
        self.assertEqual(os.readlink("/proc/%d/fd/2" % k), "/dev/null")
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)

    def inherited(self):
        """Two pipes' read ends for a child to inherit: one at a low number, one at 300."""
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        high = os.dup2(r2, 300, inheritable=False)
        for fd in (r2, w1, w2):
            os.close(fd)
        self.addCleanup(os.close, r1)
        self.addCleanup(os.close, high)
        return (r1, high)

    def fds_of(self, argv, pass_fds, sessions=None):
        """The descriptors the fixture was started with: one list, or one a session.
        Through mcpmux, mcpmux must hold its own end of each of a server's pipes and
        nothing more of them (no slot keeps one), and every server must end at its
        stdin's EOF."""
        if argv[0] == MCPMUX and sessions is None:
            argv = [MCPMUX, "-v"] + argv[1:]
        p = self.start(argv, pass_fds=pass_fds)
        if sessions is None:
            p.send(initialize(0))
            self.assertEqual(p.msg()["id"], 0)
            envs = [env_of(p, 1)]
        else:
            for s in sessions:
                p.send({"session": s, "message": initialize(0)})
            envs = []
            for s in sessions:
                p.send({"session": s, "message": call(1, "env")})
            while len(envs) < len(sessions):
                m = p.msg()
                if m.get("message", {}).get("id") == 1:
                    envs.append(m["message"]["result"]["structuredContent"])
        if argv[0] == MCPMUX:
            self.assert_pipes_held_once(p.pid, [e["pid"] for e in envs])
        fds = [e["fds"] for e in envs]
        p.close_stdin()
        rest = p.read_to_eof()
        self.assertEqual(p.wait(10), 0)
        if argv[0] == MCPMUX and sessions is None:
            self.assertIn("ended (eof,", p.stderr())
        elif argv[0] == MCPMUX:
            ended = [json.loads(l) for l in rest.splitlines() if b'"ended"' in l]
            self.assertEqual(sorted(e["session"] for e in ended), sorted(sessions))
            self.assertEqual({e["escalation"] for e in ended}, {"eof"}, ended)
        return fds

    def test_descriptors(self):
        """The server starts with fds 0-2 and what mcpmux inherited, low or high, as in a
        direct run: none of mcpmux's own, none of another session's pipes."""
        fds = self.inherited()
        direct = self.fds_of([FIXTURE], fds)
        self.assertEqual(direct, ["0,1,2,%d,300" % fds[0]])
        self.assertEqual(self.fds_of([MCPMUX, "--", FIXTURE], fds), direct)
        if not WRAPPER:  # valgrind has no clone3(): its servers get a copy of the table
            self.assertIn("spawn: servers share mcpmux's descriptor table",
                          self.procs[-1].stderr())
        log = os.path.join(self.tmp.name, "t.jsonl")
        self.assertEqual(self.fds_of([MCPMUX, "--log", log, "--", FIXTURE], fds), direct)
        self.assertEqual(self.fds_of([MCPMUX, "serve", "--", FIXTURE], fds, ["a", "b", "c"]),
                         direct * 3)
        self.assertEqual(self.fds_of([MCPMUX, "serve", "--log", log, "--", FIXTURE], fds,
                                     ["a", "b"]), direct * 2)

    def test_a_closed_stderr_stays_closed(self):
        """A caller that closed fd 2 (2>&-) starts a direct run without one: so does
        mcpmux's server, though mcpmux puts /dev/null there for itself."""
        def closed(argv):
            p = self.start(argv, preexec_fn=lambda: os.close(2))
            p.send(initialize(0))
            self.assertEqual(p.msg()["id"], 0)
            fds = env_of(p, 1)["fds"]
            p.close_stdin()
            self.assertEqual(p.wait(10), 0)
            return fds

        direct = closed([FIXTURE])
        self.assertEqual(direct, "0,1")
        self.assertEqual(closed([MCPMUX, "--", FIXTURE]), direct)

    def test_descriptors_without_cgroup(self):
        """The same through the spawn without a cgroup leaf (clone3() without
        CLONE_INTO_CGROUP)."""
        fds = self.inherited()
        direct = self.fds_of([FIXTURE], fds)
        self.env = dict(self.env, MCPMUX_CGROUP="off")
        self.assertEqual(self.fds_of([MCPMUX, "serve", "--", FIXTURE], fds, ["a", "b"]),
                         direct * 2)

    def test_terminal(self):
        master, slave = pty.openpty()
        tty.setraw(slave)
        import subprocess
        proc = subprocess.Popen(WRAPPER + [MCPMUX, "--", FIXTURE], stdin=slave, stdout=slave,
                                stderr=slave, env=self.env, start_new_session=True)
        os.close(slave)
        try:
            os.write(master, encode(initialize(0)) + encode(call(1, "env")))
            buf = b""
            end = deadline(10)
            while b'"nonblock2"' not in buf or not buf.rstrip().endswith(b"}"):
                r, _, _ = select.select([master], [], [], max(0, end - time.monotonic()))
                self.assertTrue(r, "no answer on the terminal: %r" % buf)
                buf += os.read(master, 65536)
            line = [l for l in buf.split(b"\n") if b'"nonblock2"' in l][0]
            e = json.loads(line.strip())["result"]["structuredContent"]
            self.assertEqual([e["nonblock0"], e["nonblock1"], e["nonblock2"]], [0, 0, 0])
            os.write(master, b"\x04")  # raw mode: no EOF from ^D; end the run instead
            os.write(master, encode(END))
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)


def subprocess_stdout():
    import subprocess
    return subprocess.STDOUT


class RequestIds(Case):
    def test_cancelled_request_is_no_longer_in_flight(self):
        """notifications/cancelled: no answer is owed, the idle timeout may fire."""
        w = self.wrap(opts=["--idle-timeout", "1"] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        w.send(call(5, "sleep", ms=20000))
        w.send(note("notifications/cancelled", {"requestId": 5, "reason": "timed out"}))
        w.wait(8)  # the idle timeout ended it, the server's sleep notwithstanding
        rest = w.read_to_eof(5)
        self.assertNotIn(b'"id":5', rest)

    def test_a_cancel_in_a_batch_ends_the_request(self):
        """notifications/cancelled inside a batch: the request it names is no longer in
        flight either, the idle timeout may fire, and no error is sent for it."""
        w = self.wrap(opts=["--idle-timeout", "1"] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        w.send(call(5, "sleep", ms=20000))
        w.send([note("notifications/progress", {"progressToken": 1, "progress": 1}),
                note("notifications/cancelled", {"requestId": 5, "reason": "timed out"})])
        w.wait(8)  # the idle timeout ended it, the server's sleep notwithstanding
        rest = w.read_to_eof(5)
        self.assertNotIn(b'"id":5', rest)

    def test_ids_are_matched_by_value(self):
        """A server that writes 1.0 back as 1 (as JavaScript does) answered request 1.0."""
        w = self.wrap("--id-style=js", opts=FAST)
        w.write(b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}\n')
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 1, "result": {}})
        w.write(b'{"jsonrpc":"2.0","id":2e0,"method":"tools/call","params":{"name":"crash"}}\n')
        rest = [json.loads(l) for l in w.read_to_eof(10).splitlines()]
        self.assertEqual(len(rest), 1, rest)
        self.assertEqual(rest[0]["id"], 2)  # the request's own text, 2e0
        self.assertEqual(rest[0]["error"]["code"], -32000)
        w.wait(10)

    def test_escaped_id_of_an_oversize_answer(self):
        """The id of a response too large to forward is decoded before it is matched."""
        w = self.wrap("--id-style=escaped", opts=["--max-message", "10000"] + FAST)
        w.send(call("ab", "huge", bytes=20000))
        m = w.msg(10)
        self.assertEqual(m["id"], "ab")
        self.assertEqual(m["error"]["code"], -32000)
        self.assertIn("too large", m["error"]["message"])
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_a_long_id_of_an_oversize_answer(self):
        """A response too large to forward whose id is longer than the part of it kept while
        it passes (128 bytes) still answers its request at once, not at the run's end."""
        w = self.wrap(opts=["--max-message", "10000"] + FAST)
        ids = ["k" * 300, "k" * 299 + "j", int("9" * 200)]
        for i in ids:
            w.send(call(i, "huge", bytes=20000))
            m = w.msg(5)
            self.assertEqual(m["id"], i)
            self.assertEqual(m["error"]["code"], -32000)
            self.assertIn("too large", m["error"]["message"])
        w.send(req(2, "ping"))
        self.assertEqual(w.msg(5), {"jsonrpc": "2.0", "id": 2, "result": {}})
        w.close_stdin()
        self.assertEqual(w.read_to_eof(10), b"")  # nothing left owed
        self.assertEqual(w.wait(10), 0)

    def test_a_batch_of_answers_over_max_message_answers_its_requests_at_once(self):
        """A server's batch of answers too large to forward: each request of the client's
        batch gets -32000 at once, in one array, as its requests were sent, not at the end
        of the run (which the client may wait for in vain); the session and the others go
        on, and nothing more is owed at their end."""
        p = self.serve(opts=["--max-message", "10000"] + FAST)
        p.send({"session": "a", "message": [call(1, "huge", bytes=20000),
                                            call("two", "echo", text="x")]})
        self.assertEqual(p.msg(10)["event"], "started")
        e = p.msg(10)
        self.assertEqual(e["session"], "a")
        self.assertEqual([m["id"] for m in e["message"]], [1, "two"])
        for m in e["message"]:
            self.assertEqual(m["error"]["code"], -32000)
            self.assertIn("too large", m["error"]["message"])
        p.send({"session": "a", "message": req(3, "ping")},
               {"session": "b", "message": call(4, "echo", text="b")})
        got = {}
        while len(got) < 2:
            e = p.msg(10)
            if "message" in e:
                got[e["session"]] = e["message"]
        self.assertEqual(got["a"], {"jsonrpc": "2.0", "id": 3, "result": {}})
        self.assertEqual(got["b"]["result"]["content"][0]["text"], "b")
        p.close_stdin()
        rest = [json.loads(line) for line in p.read_to_eof(10).splitlines()]
        self.assertEqual(sorted(e["session"] for e in rest), ["a", "b"])  # ended, no error
        self.assertEqual({e.get("event") for e in rest}, {"ended"})
        self.assertEqual(p.wait(10), 0)

    def test_an_oversize_request_of_the_servers_answers_none_of_the_clients(self):
        """A server's line too large to forward that is a request of its own (alone, or in
        a batch, after a notification), with an id that a request of the client's has too
        (both sides number from 1): it answers no request of the client's, which get their
        real answers once each, and no -32000 for the dropped line."""
        server = textwrap.dedent("""
            import json, sys
            for line in sys.stdin:
                m = json.loads(line)
                pad = {"pad": "x" * 20000}
                ask = {"jsonrpc": "2.0", "id": 1, "method": "roots/list", "params": pad}
                if isinstance(m, list):
                    big = [{"jsonrpc": "2.0", "method": "notifications/message", "params": pad},
                           {"jsonrpc": "2.0", "id": 2, "method": "roots/list"}]
                    out = [big, [{"jsonrpc": "2.0", "id": x["id"], "result": {"real": 1}}
                                 for x in m]]
                else:
                    out = [ask, [ask], {"jsonrpc": "2.0", "id": m["id"], "result": {"real": 1}}]
                for o in out:
                    sys.stdout.write(json.dumps(o) + "\\n")
                sys.stdout.flush()
            """)
        w = self.wrap(opts=["--max-message", "10000"] + FAST,
                      command=[sys.executable, "-c", server])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 1, "result": {"real": 1}})
        w.send([req(1, "ping"), req(2, "ping")])
        self.assertEqual(w.msg(10), [{"jsonrpc": "2.0", "id": i, "result": {"real": 1}}
                                     for i in (1, 2)])
        w.close_stdin()
        self.assertEqual(w.read_to_eof(10), b"")  # nothing more: no error for either
        self.assertEqual(w.wait(10), 0)
        self.assertIn("the server's message too large (20074 bytes", w.stderr())

    def test_a_batch_of_answers_over_max_message_after_a_notification(self):
        """A server's batch too large to forward whose answers come after a notification
        of its own: the requests of the client's batch that its first answer names still
        get one array of -32000 at once, not at the end of the run."""
        server = textwrap.dedent("""
            import json, sys
            for line in sys.stdin:
                m = json.loads(line)
                note = {"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"pad": "x" * 20000}}
                out = [note] + [{"jsonrpc": "2.0", "id": x["id"], "result": {}} for x in m]
                sys.stdout.write(json.dumps(out) + "\\n")
                sys.stdout.flush()
            """)
        w = self.wrap(opts=["--max-message", "10000"] + FAST,
                      command=[sys.executable, "-c", server])
        w.send([req(1, "ping"), req(2, "ping")])
        got = w.msg(10)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got], [(1, -32000), (2, -32000)])
        w.close_stdin()
        self.assertEqual(w.read_to_eof(10), b"")
        self.assertEqual(w.wait(10), 0)

    # A server that reads n lines, then writes the lines of its plan and waits for its end:
    # each line a batch of answers ("batch") or one answer ("one") to the ids given, the
    # first answer padded past 10,000 bytes when the line is "big"; "subst": pairs of texts
    # replaced in it (a key written with an escape, say).
    PLANNED_SERVER = textwrap.dedent("""
        import json, sys
        n, plan = int(sys.argv[1]), json.loads(sys.argv[2])
        for _ in range(n):
            sys.stdin.readline()
        for line in plan:
            out = [{"jsonrpc": "2.0", "id": i, "result": {}} for i in line["ids"]]
            if line.get("big"):
                out[0]["result"] = {"pad": "x" * 20000}
            text = json.dumps(out if line["kind"] == "batch" else out[0])
            for old, new in line.get("subst", []):
                text = text.replace(old, new)
            sys.stdout.write(text + "\\n")
            sys.stdout.flush()
        sys.stdin.read()
        """)

    def planned(self, serve, n, plan):
        command = [sys.executable, "-c", self.PLANNED_SERVER, str(n), json.dumps(plan)]
        opts = ["--max-message", "10000"] + FAST
        return self.serve(opts=opts, command=command) if serve else \
            self.wrap(opts=opts, command=command)

    def answers(self, p, serve, n):
        """The next n answers to the client (a batch's each), as (id, code or "ok")."""
        got = []
        while len(got) < n:
            m = p.msg(10)
            if serve:
                if "message" not in m:
                    continue
                m = m["message"]
            for a in m if isinstance(m, list) else [m]:
                if "error" in a:
                    self.assertIn("too large", a["error"]["message"])
                got.append((a["id"], a["error"]["code"] if "error" in a else "ok"))
        return got

    def nothing_more_owed(self, p, serve):
        p.close_stdin()
        rest = [json.loads(line) for line in p.read_to_eof(10).splitlines()]
        if serve:
            self.assertEqual([e.get("event") for e in rest], ["ended"], rest)
        else:
            self.assertEqual(rest, [])
        self.assertEqual(p.wait(10), 0)

    def send_to(self, p, serve, *msgs):
        p.send(*({"session": "a", "message": m} for m in msgs) if serve else msgs)

    def check_oversize_batch_of_two_batches(self, serve):
        p = self.planned(serve, 2, [{"kind": "batch", "ids": [1, 2, 3, 4], "big": True}])
        self.send_to(p, serve, [req(1, "ping"), req(2, "ping")], [req(3, "ping"), req(4, "ping")])
        got = []
        while len(got) < 2:
            m = p.msg(10)
            if serve and "message" not in m:
                continue
            m = m["message"] if serve else m
            got.append([(a["id"], a["error"]["code"]) for a in m])
        self.assertEqual(got, [[(1, -32000), (2, -32000)], [(3, -32000), (4, -32000)]])
        self.nothing_more_owed(p, serve)

    def test_an_oversize_batch_answering_two_batches_answers_both(self):
        """A server's batch too large to forward that answers the requests of two batches
        of the client's: each of the client's batches gets its array of -32000 at once."""
        self.check_oversize_batch_of_two_batches(False)

    def test_serve_an_oversize_batch_answering_two_batches_answers_both(self):
        self.check_oversize_batch_of_two_batches(True)

    def check_long_ids_of_an_oversize_batch(self, serve):
        ids = ["k" * 300, "k" * 299 + "j", "m" * 500]
        p = self.planned(serve, 3, [{"kind": "batch", "ids": ["k" * 299 + "0"] + ids[::-1],
                                     "big": True}])
        self.send_to(p, serve, *(req(i, "ping") for i in ids))
        self.assertEqual(self.answers(p, serve, 3), [(i, -32000) for i in ids])
        self.nothing_more_owed(p, serve)

    def test_long_ids_of_an_oversize_batch_answer_each_request(self):
        """A server's batch too large to forward with answers whose ids are longer than 128
        bytes: each request they answer gets -32000 at once, not only the first's, also
        after an answer with such an id that answers no request in flight."""
        self.check_long_ids_of_an_oversize_batch(False)

    def test_serve_long_ids_of_an_oversize_batch_answer_each_request(self):
        self.check_long_ids_of_an_oversize_batch(True)

    def check_escaped_keys_of_oversize_answers(self, serve):
        def esc(key, escaped):
            return [['"%s"' % key, '"%s"' % escaped]]
        plan = [{"kind": "one", "ids": [1], "big": True, "subst": esc("result", "\\u0072esult")},
                {"kind": "one", "ids": [2], "big": True, "subst": esc("result", "\\u0065rror")},
                {"kind": "batch", "ids": [3, 4], "big": True,
                 "subst": esc("result", "r\\u0065sult")},
                {"kind": "one", "ids": [5], "big": True, "subst": esc("id", "\\u0069d")},
                {"kind": "one", "ids": [6], "big": True, "subst": esc("result", "\\/result")}]
        p = self.planned(serve, 5, plan)
        self.send_to(p, serve, req(1, "ping"), req(2, "ping"), [req(3, "ping"), req(4, "ping")],
                     req(5, "ping"), req(6, "ping"))
        self.assertEqual(self.answers(p, serve, 5),
                         [(1, -32000), (2, -32000), (3, -32000), (4, -32000), (5, -32000)])
        # "\/result" is no key "result": 6 is answered at the end of the run, as for a
        # notification of the server's
        p.close_stdin()
        rest = [json.loads(line) for line in p.read_to_eof(10).splitlines()]
        msgs = [e["message"] for e in rest if "message" in e] if serve else rest
        self.assertEqual([(m["id"], m["error"]["code"]) for m in msgs], [(6, -32000)])
        self.assertEqual(p.wait(10), 0)

    def test_escaped_keys_of_oversize_answers(self):
        """A server's answer too large to forward whose "result", "error" or "id" is written
        with an escape (\\u0072esult) is still an answer: its request gets -32000 at once."""
        self.check_escaped_keys_of_oversize_answers(False)

    def test_serve_escaped_keys_of_oversize_answers(self):
        self.check_escaped_keys_of_oversize_answers(True)

    def check_an_answer_repeated_after_mcpmuxs_error_passes(self, serve):
        # The server answers 1 over the bound (mcpmux answers it with -32000), then again
        # within it: the second answer is to no request in flight, and passes as any
        # valid line does.
        p = self.planned(serve, 1, [{"kind": "one", "ids": [1], "big": True},
                                    {"kind": "one", "ids": [1]}])
        self.send_to(p, serve, req(1, "ping"))
        self.assertEqual(self.answers(p, serve, 2), [(1, -32000), (1, "ok")])
        self.nothing_more_owed(p, serve)

    def test_an_answer_repeated_after_mcpmuxs_error_passes(self):
        """A server's answer to a request that mcpmux has already answered (with -32000 in
        place of an answer over --max-message) answers no request in flight: mcpmux does
        not look whether an answer of the server's is owed, and passes it as it came."""
        self.check_an_answer_repeated_after_mcpmuxs_error_passes(False)

    def test_serve_an_answer_repeated_after_mcpmuxs_error_passes(self):
        self.check_an_answer_repeated_after_mcpmuxs_error_passes(True)

    def check_split_answers_of_batches(self, serve):
        plan = [{"kind": "batch", "ids": [2, 3], "big": True},
                {"kind": "one", "ids": [1]},
                {"kind": "batch", "ids": [5], "big": True},
                {"kind": "batch", "ids": [4]},
                {"kind": "one", "ids": [6]}]
        p = self.planned(serve, 3, plan)
        self.send_to(p, serve, [req(1, "ping"), req(2, "ping")], [req(3, "ping"), req(4, "ping")],
                     [req(5, "ping"), req(6, "ping")])
        got = self.answers(p, serve, 6)
        self.assertEqual(sorted(got, key=lambda a: a[0]),
                         [(1, "ok"), (2, -32000), (3, -32000), (4, "ok"), (5, -32000), (6, "ok")])
        self.nothing_more_owed(p, serve)

    def test_split_answers_of_batches_are_answered_once(self):
        """A server that answers the client's batches in pieces (a batch too large to
        forward that answers some requests of two of them, answers alone or in smaller
        batches): each request gets one answer, -32000 for those of the line too large,
        the server's own for the rest."""
        self.check_split_answers_of_batches(False)

    def test_serve_split_answers_of_batches_are_answered_once(self):
        self.check_split_answers_of_batches(True)

    def test_long_ids_of_an_oversize_batch_are_found_without_a_scan_of_the_table(self):
        """The answers of a server's batch too large to forward whose ids are longer than
        128 bytes, many requests in flight: each is looked up at once (by its length, hash
        and first bytes), the table of the requests in flight is not looked through (20,000
        such answers against 60,000 requests took mcpmux seconds of CPU when it was, for
        each); the run goes on."""
        n = 60000
        server = textwrap.dedent("""
            import json, sys
            for _ in range(%d + 1):
                go = json.loads(sys.stdin.readline())
            print(json.dumps([{"jsonrpc": "2.0", "id": "L" * 200 + str(k), "result": {}}
                              for k in range(20000)]), flush=True)
            print(json.dumps({"jsonrpc": "2.0", "id": go["id"], "result": {}}), flush=True)
            sys.stdin.read()
            """ % n)
        w = self.wrap(opts=["--max-message", "10000"] + FAST,
                      command=[sys.executable, "-c", server])
        w.write(b"".join(encode(req(k, "ping")) for k in range(n)), 60 * SLOW)
        t0 = cpu_seconds(w.pid)
        w.send(req("go", "ping"))  # the server's batch, then its answer
        self.assertEqual(w.msg(60), {"jsonrpc": "2.0", "id": "go", "result": {}})
        self.assertLess(cpu_seconds(w.pid) - t0, 1.0 * SLOW, "mcpmux's CPU time for the batch")
        w.close_stdin()
        rest = [json.loads(line) for line in w.read_to_eof(60).splitlines()]
        self.assertEqual(len(rest), n)
        self.assertEqual(w.wait(10), 0)

    def test_one_id_twice_in_flight_gets_two_answers(self):
        w = self.wrap(opts=FAST)
        w.send(call(7, "sleep", ms=20000), call(7, "sleep", ms=20000), END)
        a, b = w.msg(10), w.msg(10)
        self.assertEqual((a["id"], b["id"]), (7, 7))
        self.assertEqual((a["error"]["code"], b["error"]["code"]), (-32000, -32000))
        w.close_stdin()
        w.wait(10)

    def test_past_the_bound_of_requests_in_flight_only_requests_are_refused(self):
        """65,536 requests in flight: the next request gets -32000, but a notification (the
        cancellation that frees a place among them) and an answer to the server add none,
        and are forwarded; the place freed takes the next request."""
        seen = os.path.join(self.tmp.name, "seen")
        # a server that takes every line and answers none (sh keeps its stdout open)
        w = self.wrap(opts=FAST, command=["sh", "-c", 'cat > "$0"; exit 0', seen])
        n = 65536
        w.write(b"".join(encode(req(i, "x")) for i in range(n)), 60)
        w.send(req(n, "x"))
        m = w.msg(30)
        self.assert_error(m, n, -32000)
        self.assertIn("too many requests in flight", m["error"]["message"])
        cancel = note("notifications/cancelled", {"requestId": 0})
        answer = {"jsonrpc": "2.0", "id": "s1", "result": {}}
        w.send(cancel, answer, req(n + 1, "x"))
        logged(seen, encode(req(n + 1, "x")))
        with open(seen, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        self.assertEqual(lines[n:], [encode(cancel), encode(answer), encode(req(n + 1, "x"))])
        self.assertNotIn("dropped", w.stderr())
        w.close_stdin()  # cat exits: each request still in flight gets its -32000
        owed = [json.loads(l)["id"] for l in w.read_to_eof(60).splitlines()]
        self.assertEqual(sorted(owed), list(range(1, n)) + [n + 1])
        self.assertEqual(w.wait(10), 0)


class RunOrder(Case):
    def kill_with_what_it_runs(self, w):
        """mcpmux SIGKILLed, and the servers it leaves (deaf to EOF and SIGTERM) too."""
        w.p.send_signal(signal.SIGKILL)
        w.wait()
        for p in self.tagged():
            os.kill(p, signal.SIGKILL)
        self.leftovers_expected = True


    def test_own_answers_queued_before_an_end_of_run_come_before_the_next_runs(self):
        """3,000 lines that are not JSON and a request over --max-message written to a run
        whose client reads nothing: their errors, mcpmux's own, wait behind one another;
        an end of run and a request reusing that id: the -32600 comes before the end of
        run's result, and the next run's answer after both."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--max-message", "100000", "--log", log,
                                   "--log-bodies", "none"])
        w.send(initialize(1))
        w.msg()
        w.write(b"not json\n" * 3000)
        w.send(req(7, "ping", {"pad": "p" * 120000}))
        w.send(req(9, "mcpmux/endRun"), req(7, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":7,')
        keys = []
        for _ in range(3003):
            m = w.msg(10)
            keys.append((m["id"], m["error"]["code"] if "error" in m else "result"))
        self.assertEqual(keys[:3000], [(None, -32700)] * 3000)
        self.assertEqual(keys[3000:], [(7, -32600), (9, "result"), (7, "result")])
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    # A server that answers each request with {} and, once its stdin ends, waits for the
    # file COUNT.goN (N: which server of the run it is, counted in the file COUNT) and then
    # writes its last notifications: the first server 30 of 100 KB, the second one small.
    TEARDOWN_WRITER = textwrap.dedent("""
        import fcntl, json, os, sys, time
        count = sys.argv[1]
        fd = os.open(count, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        n = int(os.read(fd, 16) or b"0") + 1
        os.lseek(fd, 0, 0)
        os.write(fd, str(n).encode())
        os.close(fd)
        out = sys.stdout.buffer
        for line in sys.stdin.buffer:
            m = json.loads(line)
            if "method" in m and "id" in m:
                out.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}).encode()
                          + b"\\n")
                out.flush()
        if n < 3:
            while not os.path.exists("%s.go%d" % (count, n)):
                time.sleep(0.01)
            for i in range(30 if n == 1 else 1):
                out.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                      "params": {"n": n, "pad": "r" * (100000 if n == 1 else 1)}})
                          .encode() + b"\\n")
            out.flush()
    """)

    def test_an_own_answer_behind_an_older_runs_teardown_leaves_the_next_run_behind_it(self):
        """Two ended runs still writing as their servers end (--eof-grace): the first, R,
        writes 3 MB for a client that reads nothing, after the second, A, started (so A
        does not wait for it); with no run current, the -32600 for a line of id 7 goes
        behind R's lines, then A writes one more; a request of id 7 starts run B: its
        answer comes after the -32600, not only after A's lines."""
        count = os.path.join(self.tmp.name, "count")
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--eof-grace", "20000", "--term-grace", "300", "--log", log,
                            "--log-bodies", "none"],
                      command=[sys.executable, "-c", self.TEARDOWN_WRITER, count])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)  # run R
        w.send(END, req(5, "ping"))
        self.assertEqual(w.msg()["id"], 5)  # R ends, owing nothing; run A
        w.send(END)  # A ends, owing nothing
        open(count + ".go1", "w").close()
        logged(log, b'"kind":"notification"', 30)  # R's 3 MB, queued
        w.write(b'{"jsonrpc":"2.0","id":7}\n')
        logged(log, b'"dir":"out","kind":"error","id":7,')
        open(count + ".go2", "w").close()
        logged(log, b'"kind":"notification"', 31)  # A's last line, queued
        w.send(req(7, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":7,')
        got = []
        while len(got) < 33:
            m = w.msg(10)
            got.append((m.get("id"), "error" if "error" in m else
                        "result" if "result" in m else m["params"]["n"]))
        self.assertEqual([g for g in got if g[0] == 7], [(7, "error"), (7, "result")], got)
        # (A's line goes among R's: A's queue did not wait for R's lines, made after it)
        self.assertEqual(sorted(got[:31], key=repr), [(None, 1)] * 30 + [(None, 2)], got)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_an_own_answer_in_a_run_leaves_the_next_run_behind_the_last_replies(self):
        """A run with answers queued for a client that reads nothing; a line over
        --max-message gets its -32600 behind them; the run then ends with a request in
        flight, and a request with that id starts the next run: its answer comes after
        the ended run's -32000 for that id and end-of-run result, not once what was
        queued before the -32600 is written."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--max-message", "100000", "--log", log,
                                   "--log-bodies", "none"])
        ids = [1] + list(range(4, 34))  # 31 answers of 60 KB: over the client's 1 MiB pipe
        w.send(*[call(i, "huge", bytes=60000) for i in ids])
        logged(log, b'"dir":"out","kind":"response","id":33,')
        w.send(req(50, "ping", {"pad": "p" * 120000}))
        w.send(call(2, "sleep", ms=20000), req(3, "mcpmux/endRun"), req(2, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":2,')
        got = [w.msg(10) for _ in range(35)]
        keys = [(m["id"], m["error"]["code"] if "error" in m else "result") for m in got]
        self.assertEqual(keys, [(i, "result") for i in ids] +
                         [(50, -32600), (2, -32000), (3, "result"), (2, "result")], keys)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)
    def test_next_run_waits_for_the_last_runs_replies(self):
        """A client that restarts its ids after an end-of-run gets the old run's error
        first, then the new run's answer: never the old error as the new answer."""
        w = self.wrap(opts=FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        w.send(call(1, "sleep", ms=20000), END, req(1, "ping"))
        first, second = w.msg(10), w.msg(10)
        self.assertEqual(first["id"], 1)
        self.assertEqual(first["error"]["code"], -32000, first)
        self.assertEqual(second, {"jsonrpc": "2.0", "id": 1, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_the_last_runs_replies_come_first_to_a_client_that_reads_late(self):
        """The client reads nothing until the next run has answered: more than a write turn
        of the ended run's output (a big result) waits for it, and the old run's error and
        end-of-run result still come before the new run's answer to the same id."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=4_000_000), call(2, "sleep", ms=20000),
               req(3, "mcpmux/endRun"), req(2, "ping"))
        # the new run's answer is queued once it is in the log
        logged(log, b'"dir":"out","kind":"response","id":2,')
        got = [w.msg(10) for _ in range(4)]
        self.assertEqual([(m["id"], "error" in m) for m in got],
                         [(1, False), (2, True), (3, False), (2, False)],
                         [(m["id"], sorted(m)) for m in got])
        self.assertEqual(len(got[0]["result"]["content"][0]["text"]), 4_000_000)
        self.assertEqual(got[1]["error"]["code"], -32000, got[1])
        self.assertEqual(got[3], {"jsonrpc": "2.0", "id": 2, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def late_reader_across_an_end_notification(self, n=200):
        """n answers of 1 KiB queued for a client that reads nothing, an end-of-run
        notification (no request in flight: the next run starts at once, while the old one,
        deaf to stdin EOF, is still ending), and n pings of the next run with the same ids,
        all queued too.  Returns the wrapper and its traffic log."""
        log = os.path.join(self.tmp.name, "t%d.log" % len(self.procs))  # one per wrapper
        w = self.wrap("--ignore-eof", opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send(*[call(i, "echo", text="x" * 1000) for i in range(1, n + 1)])
        # the answers are queued for the client once logged
        logged(log, b'"dir":"out","kind":"response"', n)
        w.send(END, *[req(i, "ping") for i in range(1, n + 1)])
        logged(log, b'"dir":"out","kind":"response"', 2 * n)
        return w, log

    def test_the_ended_runs_answers_come_first_when_nothing_was_owed(self):
        """The old run's 200 answers all come before the new run's answers to the same ids:
        read while the old run is still ending, and read after it has ended (its queue given
        back to the conn half written)."""
        n = 200
        for wait_end in (False, True):
            with self.subTest(old_run_ended_first=wait_end):
                w, log = self.late_reader_across_an_end_notification(n)
                if wait_end:
                    logged(log, b'"event":"ended"')
                got = [w.msg(10) for _ in range(2 * n)]
                order = [(m["id"], "content" in m["result"]) for m in got]
                first_new = next((k + 1 for k, o in enumerate(order) if not o[1]), None)
                self.assertEqual(order, [(i, True) for i in range(1, n + 1)] +
                                 [(i, False) for i in range(1, n + 1)],
                                 "the new run's first answer came out #%s" % first_new)
                w.close_stdin()
                self.assertEqual(w.wait(10), 128 + signal.SIGTERM, "the second run, deaf to EOF")

    def test_a_client_gone_while_the_next_run_waits_for_the_last_ones_answers(self):
        """The client closes its stdout while the new run's answers wait behind the old
        run's: both runs end, and mcpmux exits, having freed both queues (sanitized: a
        dangling pointer or a leak would abort it)."""
        w, _ = self.late_reader_across_an_end_notification()
        w.p.stdout.close()
        w.close_stdin()
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM, "the second run, deaf to EOF")
        self.assert_no_leftovers(0)
    def test_a_run_after_one_in_teardown_is_not_held_by_it_once_its_lines_are_out(self):
        """Three runs, and a client that reads late: the first ends owing a big result,
        the second starts behind it, answers and ends with nothing owed, the third starts
        while the second is torn down (10 s).  Once the client reads, the third run's
        answer comes right after the first two runs' lines, not after that teardown."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap("--ignore-eof", "--ignore-sigterm",
                      opts=["--eof-grace", "5000", "--term-grace", "5000",
                            "--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=4_000_000))
        logged(log, b'"dir":"out","kind":"response","id":1,')
        w.send(req(2, "mcpmux/endRun", {"graceMs": 0}), req(3, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":3,')
        w.send(END, req(4, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":4,')
        t0 = time.monotonic()
        got = [w.msg(10) for _ in range(4)]
        self.assertLess(time.monotonic() - t0, min(4 * SLOW, 9))  # not after the second run's teardown
        self.assertEqual([m["id"] for m in got], [1, 2, 3, 4], [sorted(m) for m in got])
        self.assertEqual(len(got[0]["result"]["content"][0]["text"]), 4_000_000)
        self.assertEqual(got[3], {"jsonrpc": "2.0", "id": 4, "result": {}})
        self.kill_with_what_it_runs(w)

    def test_a_run_that_ends_with_nothing_written_keeps_the_order_of_the_one_before(self):
        """The second run writes nothing and is done while the first run's lines still
        wait for the client: the third run's answer still comes after all of them."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=4_000_000))
        logged(log, b'"dir":"out","kind":"response","id":1,')
        w.send(req(2, "mcpmux/endRun"), note("notifications/x"), END, req(4, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":4,')
        logged(log, b'"event":"ended"', 2)  # the second run is done, its queue retired
        got = [w.msg(10) for _ in range(3)]
        self.assertEqual([m["id"] for m in got], [1, 2, 4], [sorted(m) for m in got])
        self.assertEqual(got[1]["result"]["exit"], {"code": 0}, got[1])
        self.assertEqual(got[2], {"jsonrpc": "2.0", "id": 4, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_the_ended_runs_queued_answers_come_first_when_nothing_is_owed(self):
        """The ended run owes nothing, but a client that reads late has not read all of its
        answers yet: the next run's answer to the same id comes after them."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=4_000_000), call(2, "env"))
        logged(log, b'"dir":"out","kind":"response","id":2,')
        w.send(END, call(2, "env"))
        logged(log, b'"dir":"out","kind":"response","id":2,', 2)
        with open(log, "rb") as f:
            pids = [e["pid"] for e in map(json.loads, f) if e.get("event") == "started"]
        got = [w.msg(10) for _ in range(3)]
        self.assertEqual([m["id"] for m in got], [1, 2, 2], [sorted(m) for m in got])
        self.assertEqual(len(got[0]["result"]["content"][0]["text"]), 4_000_000)
        self.assertEqual([m["result"]["structuredContent"]["pid"] for m in got[1:]], pids)
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_end_notification_with_nothing_owed_starts_the_next_run_at_once(self):
        w = self.wrap("--ignore-eof", "--ignore-sigterm",
                      opts=["--eof-grace", "5000", "--term-grace", "5000"])
        pid = env_of(w, 1)["pid"]
        w.send(END, req(2, "ping"))
        t0 = time.monotonic()
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": {}})
        self.assertLess(time.monotonic() - t0, min(4 * SLOW, 9))  # not after the old run's 10 s teardown
        self.assertNotEqual(env_of(w, 3)["pid"], pid)
        self.kill_with_what_it_runs(w)

    def test_a_signal_while_lines_wait_for_the_last_runs_replies_answers_them(self):
        """SIGTERM while the client's lines wait behind an ended run's replies: the run
        they waited for never starts, and each request among them gets a -32000 after the
        ended run's replies (a batch's in one array), none is dropped."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap("--ignore-eof", "--ignore-sigterm",  # its teardown takes 2 s
                      opts=["--eof-grace", "1000", "--term-grace", "1000",
                            "--log", log, "--log-bodies", "none"])
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        # one write (one read): the lines after the end-of-run are held once it is logged
        w.write(encode(call(1, "sleep", ms=20000)) + encode(req(9, "mcpmux/endRun")) +
                encode(req(2, "ping")) + encode(note("notifications/x")) +
                b'[{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]\n')
        logged(log, b'"event":"end-requested"')
        w.p.send_signal(signal.SIGTERM)
        got = [json.loads(l) for l in w.read_to_eof(10).splitlines()]
        self.assertEqual([m["id"] for m in got[:3]], [1, 9, 2], got)
        self.assertEqual(got[0]["error"]["code"], -32000, got[0])
        self.assertIn("result", got[1], got[1])
        self.assertEqual(got[2]["error"]["code"], -32000, got)
        self.assertEqual([(m["id"], m["error"]["code"]) for m in got[3]], [(3, -32000)], got)
        self.assertEqual(len(got), 4, got)
        self.assertEqual(w.wait(10), 128 + signal.SIGKILL)
        self.assert_no_leftovers(0)



class ServerInput(Case):
    def test_epipe_on_a_big_write_ends_the_run(self):
        """A server that closed its stdin: a request too big for the pipe fails with
        EPIPE on the direct write path, and the run ends with an answer for it."""
        w = self.wrap("--stdin-close", opts=FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        w.send(call(1, "echo", text="b" * 300000))
        m = w.msg(10)
        self.assertEqual(m["id"], 1)
        self.assertEqual(m["error"]["code"], -32000)
        # the server ran on (it only closed stdin): SIGTERM ended it, as a shell reports
        self.assertEqual(w.wait(10), 143)
        self.assertIn("closed its input", w.stderr())
        self.assert_no_leftovers()


    def test_a_server_that_closes_its_stdin_is_ended(self):
        """A request already written into the server's pipe when it closes its stdin would
        wait for ever: the closed pipe is seen at once, and the run ends with an answer."""
        w = self.wrap("--stdin-close", opts=FAST)
        w.send(initialize(0), call(1, "echo", text="never read"))  # one write: both in the pipe
        self.assertEqual(w.msg()["id"], 0)
        err = w.msg(10)
        self.assertEqual((err["id"], err["error"]["code"]), (1, -32000))
        self.assertEqual(w.wait(10), 143)
        self.assertIn("the server closed its input", w.stderr())
        self.assert_no_leftovers()


class Spawning(Case):
    def test_ten_thousand_arguments_to_a_script_without_shebang(self):
        """glibc runs a file without "#!" through /bin/sh with a copy of argv on the
        child's stack: a stack sized to the arguments, not mcpmux's memory, takes it."""
        script = os.path.join(self.tmp.name, "server")
        with open(script, "w") as f:
            f.write('exec "$MCP_FIXTURE_PATH"\n')
        os.chmod(script, 0o755)
        self.env["MCP_FIXTURE_PATH"] = os.path.abspath(FIXTURE)
        for n in (10000, 30000):
            w = self.start([MCPMUX] + FAST + ["--", script] + ["arg%d" % i for i in range(n)])
            w.send(req(1, "ping"))
            self.assertEqual(w.msg(20), {"jsonrpc": "2.0", "id": 1, "result": {}})
            w.close_stdin()
            self.assertEqual(w.wait(10), 0)


class Environment(Case):
    def test_server_carries_its_owner_and_the_original_descriptor_limit(self):
        import resource
        w = self.start([MCPMUX] + FAST + ["--", FIXTURE],
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                             (256, 4096)))
        e = env_of(w, 1)
        with open("/proc/%d/stat" % w.pid) as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        self.assertEqual(e["owner"], "%d:%s" % (w.pid, start))
        self.assertEqual(e["nofile"], 256, "the server gets a direct run's limit")
        with open("/proc/%d/limits" % w.pid) as f:
            soft = [l.split()[3] for l in f if l.startswith("Max open files")][0]
        self.assertEqual(soft, "4096", "mcpmux raised its own")
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_sigusr1_without_a_log_is_ignored(self):
        w = self.wrap(opts=FAST)
        self.assertEqual(env_of(w, 1)["session"] != "", True)
        w.p.send_signal(signal.SIGUSR1)
        w.send(req(2, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 2, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

    def test_size_options_that_overflow_are_usage_errors(self):
        for opt, value in (("--max-message", "18014398509481985K"),
                           ("--max-queue", "99999999999999999999"),
                           ("--max-message", "17179869184G")):
            w = self.start([MCPMUX, opt, value, "--", FIXTURE])
            self.assertEqual(w.wait(10), 2, (opt, value))
            self.assertIn("invalid value", w.stderr())


class TrafficLogTiming(Case):
    def test_a_record_is_on_disk_before_the_loop_sleeps(self):
        """The `ended` record of a session ended by its idle timeout is written without
        waiting for another event (`log show --follow` must not lag an idle period)."""
        log = os.path.join(self.tmp.name, "log")
        s = self.serve(opts=["--idle-timeout", "1", "--log", log] + FAST)
        s.send({"session": "idle", "message": req(1, "ping")})
        self.assertEqual(s.msg()["event"], "started")
        self.assertEqual(s.msg()["message"]["id"], 1)
        ev = s.msg(10)
        self.assertEqual(ev["event"], "ended")

        def ended_logged():
            with open(log) as f:
                return any('"event":"ended"' in l for l in f)
        wait_until(ended_logged, 2, "the ended record in the log, with mcpmux idle")
        s.close_stdin()
        self.assertEqual(s.wait(10), 0)


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Clock(Case):
    @unittest.skipIf(not os.path.exists(FAKETIME) or WRAPPER,
                     "libfaketime is not installed (Debian package faketime), or a wrapper")
    def test_wall_clock_jumping_back_does_not_stretch_the_idle_timeout(self):
        stamp = os.path.join(self.tmp.name, "stamp")
        with open(stamp, "w") as f:
            f.write("+0\n")
        env = dict(self.env, LD_PRELOAD=FAKETIME, FAKETIME_TIMESTAMP_FILE=stamp,
                   FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        w = self.start([MCPMUX, "--idle-timeout", "1"] + FAST + ["--", FIXTURE], env=env)
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        with open(stamp, "w") as f:
            f.write("-3600\n")  # the wall clock goes back an hour
        self.assertEqual(w.wait(8), 0)


if __name__ == "__main__":
    main()
