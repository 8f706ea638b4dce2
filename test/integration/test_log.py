"""The traffic log (--log) and its reader (mcpmux log show | stats)."""

import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

from mcptest import (Case, FIXTURE, MCPMUX, WRAPPER, PeakRss, call, initialize, main, note,
                     polling_one_or_gone, proc_report, req, run_on_a_full_stdout, wait_until)
from test_wrap import BATCH_ASKER, ERR

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(HERE, "logs")
FAST = ["--eof-grace", "200", "--term-grace", "200"]
PING_LINE = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


def records(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f]


def messages(recs, direction):
    return [r for r in recs if r.get("dir") == direction]


def run_log(env, *args, stdin=None):
    """mcpmux log ARGS: (exit status, stdout, stderr)."""
    p = subprocess.run([MCPMUX, "log"] + list(args), input=stdin, capture_output=True,
                       timeout=60, env=env)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def request(id_, method, size=10):
    """A request's record, its members (for Reading.write_records())."""
    return {"dir": "in", "kind": "request", "id": id_, "method": method, "bytes": size}


def answer(id_, ms, kind="response", method=None, size=10):
    """An answer's record (kind: response or error), its members; with a method of its own
    (which mcpmux never writes), before its ms."""
    r = {"dir": "out", "kind": kind, "id": id_}
    if method is not None:
        r["method"] = method
    r.update(ms=ms, bytes=size)
    return r


def request_text(id_, method, size=10):
    """request() as the JSON text of its members, id_ and method JSON text as they are."""
    return '"dir":"in","kind":"request","id":%s,"method":%s,"bytes":%s' % (id_, method, size)


def answer_text(id_, ms, kind="response", size=10):
    """answer() as the JSON text of its members, id_ and ms JSON text as they are."""
    return '"dir":"out","kind":"%s","id":%s,"ms":%s,"bytes":%s' % (kind, id_, ms, size)


class Writing(Case):
    def test_messages_of_one_read_share_their_time(self):
        """A record's ts is its loop turn's: the lines of one write (one read) share it,
        a message of a later turn does not."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        time.sleep(0.002)  # a later turn, at least 2 ms on (not a synchronisation)
        w.send(*[note("notifications/n%d" % i) for i in range(20)])  # one pipe write
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        ins = messages(records(log), "in")
        self.assertEqual([r.get("method") for r in ins[1:21]],
                         ["notifications/n%d" % i for i in range(20)])
        self.assertEqual(len({r["ts"] for r in ins[1:21]}), 1, ins[1:21])
        self.assertLess(ins[0]["ts"], ins[1]["ts"])

    def test_each_answer_in_a_batch_has_its_latency(self):
        """A batch's record gives each answer in it that matches a request in flight its
        latency, as an answer alone has it: `answers`, by id, in the batch's order (an
        answer to nothing in flight has none), both ways."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--log", log, "--log-bodies", "none"])
        w.send([req(1, "ping"), note("notifications/x"), req("b", "ping")])
        self.assertEqual([g["id"] for g in w.msg()], [1, "b"])
        w.send(call(2, "ask"))
        ask = w.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        w.send([{"jsonrpc": "2.0", "id": "nobody", "result": {}},
                {"jsonrpc": "2.0", "id": ask["id"], "result": {}}])
        self.assertEqual([g["id"] for g in w.msg()], [2])  # the fixture's batch
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        batches = [r for r in records(log) if r.get("kind") == "batch"]
        self.assertEqual([(r["dir"], [a["id"] for a in r.get("answers", [])])
                          for r in batches],
                         [("in", []), ("out", [1, "b"]), ("in", [ask["id"]]), ("out", [2])],
                         batches)
        for r in batches:
            self.assertNotIn("ms", r)
            for a in r.get("answers", []):
                self.assertEqual(sorted(a), ["id", "ms"])
                self.assertGreaterEqual(a["ms"], 0)

    def test_a_session_logged_once_each_way(self):
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap("--stderr-chatter", "--stdout-noise", opts=FAST + ["--log", log])
        sent = [initialize(1), note("notifications/initialized"),
                call(2, "echo", text="h\u00e9llo"), call(3, "ask")]
        w.send(*sent)
        got = [w.msg(), w.msg()]
        ask = w.msg()
        answer = {"jsonrpc": "2.0", "id": ask["id"], "result": {"x": [1, 2.50, "\u2603"]}}
        w.send(answer)
        got.append(w.msg())
        w.write(b"not json\n")
        got.append(w.msg())
        w.send(req(4, "mcpmux/endRun", {"reason": "test over"}))
        end = w.msg()
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(stat.S_IMODE(os.stat(log).st_mode), 0o600)
        recs = records(log)
        session = end["result"]["session"]
        pid = end["result"]["pid"]
        for r in recs:
            self.assertRegex(r["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertEqual(r["session"], session)
            self.assertEqual(r["pid"], pid)
        ins = messages(recs, "in")
        # every client message once, in order, bodies embedded exactly as sent
        self.assertEqual([r["msg"] for r in ins[:4]], sent)
        self.assertEqual(ins[4]["msg"], answer)
        self.assertEqual([r["kind"] for r in ins],
                         ["request", "notification", "request", "request", "response",
                          "invalid"])
        self.assertEqual(ins[5]["msg"], "not json")
        self.assertEqual([r.get("method") for r in ins[:4]],
                         ["initialize", "notifications/initialized", "tools/call",
                          "tools/call"])
        self.assertEqual([r.get("id") for r in ins[:5]], [1, None, 2, 3, ask["id"]])
        self.assertGreaterEqual(ins[4]["ms"], 0)  # the client's answer to a server request
        with open(log, "rb") as f:
            raw = f.read()
        self.assertIn(json.dumps(answer["result"], separators=(",", ":")).encode()[:10], raw)
        # every server message once; responses carry latency
        outs = messages(recs, "out")
        responses = [r for r in outs if r["kind"] in ("response", "error")]
        self.assertEqual([r["id"] for r in responses], [1, 2, 3, None, 4])
        for r in responses[:3]:
            self.assertGreaterEqual(r["ms"], 0)
        self.assertEqual(responses[0]["msg"], got[0])
        self.assertEqual(responses[3]["msg"], got[3])
        noise = [r for r in outs if r["kind"] == "invalid"]
        self.assertTrue(noise and all(isinstance(r["msg"], str) for r in noise))
        server_req = [r for r in outs if r["kind"] == "request"]
        self.assertEqual(server_req[0]["method"], "sampling/createMessage")
        events = [r["event"] for r in recs if "event" in r]
        self.assertEqual(events[0], "started")
        self.assertIn("stderr", events)
        self.assertIn("end-requested", events)
        self.assertEqual(events[-1], "ended")
        ended = recs[-1]
        self.assertEqual(ended["escalation"], "eof")
        self.assertEqual(ended["exit"], {"code": 0})
        endreq = [r for r in recs if r.get("event") == "end-requested"][0]
        self.assertEqual(endreq["reason"], "test over")
        self.assertNotIn("mcpmux/endRun", [r.get("method") for r in ins])
        self.assertIn("mcp-fixture: got", "".join(
            r["text"] for r in recs if r.get("event") == "stderr"))
        # stderr still reaches mcpmux's own stderr
        self.assertIn("mcp-fixture: got", w.stderr())

    def test_bodies_cut_and_none(self):
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log, "--log-bodies", "20"])
        w.send(call(1, "echo", text="\u00e9" * 40))
        w.msg()
        w.close_stdin()
        w.wait()
        for r in messages(records(log), "in") + messages(records(log), "out"):
            self.assertTrue(r["truncated"])
            self.assertIsInstance(r["msg"], str)
            self.assertLessEqual(len(r["msg"].encode()), 20)
            self.assertGreater(r["bytes"], 20)
        log2 = os.path.join(self.tmp.name, "t2.log")
        w = self.wrap(opts=["--log", log2, "--log-bodies", "none"])
        w.send(req(1, "ping"))
        w.msg()
        w.close_stdin()
        w.wait()
        self.assertTrue(all("msg" not in r for r in records(log2)))

    def test_long_bodies_whole_and_in_order(self):
        """Bodies of 16 KiB and more go out from where they are, between short records:
        every record whole, in order, its body the exact message."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log])
        sent = [req(1, "ping"), call(2, "echo", text="a" * 20000), req(3, "ping"),
                call(4, "echo", text="\u00e9" * 30000), call(5, "huge", bytes=100000),
                note("notifications/message", {"pad": "b" * 16384}), req(6, "ping")]
        w.send(*sent)
        got = [w.msg(30) for _ in range(6)]
        self.assertEqual([m["id"] for m in got], [1, 2, 3, 4, 5, 6])
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        recs = records(log)
        ins, outs = messages(recs, "in"), messages(recs, "out")
        self.assertEqual([r["msg"] for r in ins], sent)
        self.assertEqual([r["bytes"] for r in ins],
                         [len(json.dumps(m, separators=(",", ":")).encode()) for m in sent])
        self.assertEqual([r["msg"] for r in outs], got)
        self.assertEqual(len(outs[4]["msg"]["result"]["content"][0]["text"]), 100000)

    def test_env_variable_and_serve(self):
        log = os.path.join(self.tmp.name, "serve.log")
        self.env["MCPMUX_LOG"] = log
        p = self.serve(opts=FAST)
        p.send({"session": "a", "message": req(1, "ping")},
               {"session": "b", "message": req(1, "ping")})
        p.msg(), p.msg(), p.msg(), p.msg()
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        recs = records(log)
        for s in ("a", "b"):
            mine = [r for r in recs if r["session"] == s]
            self.assertEqual([r.get("event") or r["dir"] for r in mine],
                             ["started", "in", "out", "ended"])

    def test_the_log_option_wins_over_the_env_variable(self):
        """MCPMUX_LOG is the default of --log: with both, the log goes where --log says,
        and the variable's file is not made."""
        by_env = os.path.join(self.tmp.name, "env.log")
        by_opt = os.path.join(self.tmp.name, "opt.log")
        self.env["MCPMUX_LOG"] = by_env
        w = self.wrap(opts=FAST + ["--log", by_opt])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertFalse(os.path.exists(by_env))
        self.assertEqual([r.get("event") or r["dir"] for r in records(by_opt)],
                         ["started", "in", "out", "ended"])

    def test_sessions_and_methods_interleaved(self):
        """Records of several sessions and methods, interleaved: each names its own (the
        log keeps the JSON text of the last session and method it wrote)."""
        log = os.path.join(self.tmp.name, "serve.log")
        p = self.serve(opts=FAST + ["--log", log, "--log-bodies", "none"])
        names = ["a", "b.c", "L" * 128]  # the longest session ID there may be
        methods = ["ping", "x/\"odd\"\\\u00e9" + "m" * 200, "ping", "tools/list"]
        sent = []
        for i in range(12):
            s, m = names[i % 3], methods[i % 4]
            p.send({"session": s, "message": note(m) if "odd" in m else req(i, m)})
            sent.append((s, m))
        p.send(*({"session": s, "message": note("mcpmux/endRun")} for s in names))
        ended = 0
        while ended < 3:
            ended += p.msg().get("event") == "ended"
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        got = [(r["session"], r["method"]) for r in messages(records(log), "in")
               if r["method"] != "mcpmux/endRun"]
        self.assertEqual(got, sent)

    def test_suspend_and_resume_logged(self):
        """--idle-suspend: the suspend and the resume are events, and log show and stats
        report them."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=FAST + ["--idle-suspend", "0.3", "--log", log])
        w.send(initialize(1), note("notifications/initialized"))
        w.msg()
        wait_until(lambda: any(r.get("event") == "suspended" for r in records(log)), 10,
                   "the suspend to be logged")
        w.send(call(2, "handshake"))
        hs = w.msg()["result"]["structuredContent"]
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["firstMethod"], "initialize")  # replayed before the call
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        recs = records(log)
        events = [r for r in recs if "event" in r]
        self.assertEqual([r["event"] for r in events],
                         ["started", "suspended", "started", "resumed", "ended"])
        susp = events[1]
        self.assertEqual((susp["reason"], susp["escalation"], susp["exit"]),
                         ("idle", "eof", {"code": 0}))
        self.assertEqual(events[3]["pid"], hs["pid"])
        rc, out, _ = run_log(self.env, "show", "--color", "never", log)
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"\* suspended     idle, exit 0, escalation eof, \d+ ms\n")
        self.assertRegex(out, r"\* resumed       in \d+ ms\n")
        rc, out, _ = run_log(self.env, "stats", log)
        self.assertEqual(rc, 0)
        row = [l for l in out.splitlines() if l.startswith(susp["session"])][0]
        self.assertEqual(row.split()[6:8], ["1", "1"])  # SUSP, RESUMES
        self.assertRegex(row, r"  (\S+ \()?eof(, | \()exit 0\)$")
        self.assertIn(", 1 suspends, 1 resumes\n", out)

    def test_reopen_on_sigusr1(self):
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log])
        for i in range(50):
            w.send(req(i, "ping"))
            w.msg()
        os.rename(log, log + ".1")
        w.p.send_signal(signal.SIGUSR1)
        for i in range(50, 100):
            w.send(req(i, "ping"))
            w.msg()
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertTrue(os.path.exists(log))
        ids = [r["id"] for path in (log + ".1", log) for r in messages(records(path), "in")]
        self.assertEqual(ids, list(range(100)))  # nothing lost, nothing twice

    def test_a_record_a_killed_writer_cut_does_not_take_the_next_one(self):
        """A log that ends in the middle of a record (its writer was SIGKILLed while it
        wrote a long one, which goes out in pieces): the records of the next mcpmux to
        open it, at its start or at a reopen (SIGUSR1) onto such a file, begin on a line
        of their own; the cut record is one bad line and every record after it is whole."""
        log = os.path.join(self.tmp.name, "t.log")
        cut = b'{"ts":"2026-11-24T10:00:00.000000Z","session":"k","pid":9,"dir":"in",' \
              b'"kind":"request","id":1,"method":"tools/call","bytes":99,"msg":{"jsonr'
        with open(log, "wb") as f:
            f.write(cut)
        w = self.wrap(opts=FAST + ["-v", "--log", log])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        os.rename(log, log + ".1")
        with open(log, "wb") as f:
            f.write(cut)
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopened" in w.stderr(), 10, "the log to be reopened")
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        for path, want in ((log + ".1", ["started", "in", "out"]),
                           (log, ["in", "out", "ended"])):
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            self.assertEqual(lines[0], cut, path)
            self.assertEqual(lines[-1], b"", path)  # the file ends with a whole record
            recs = [json.loads(line) for line in lines[1:-1]]
            self.assertEqual([r.get("event") or r["dir"] for r in recs], want, path)

    def test_a_full_file_system_cuts_one_record_and_no_other(self):
        """A write that fails half way (ENOSPC) leaves part of a record: once there is room
        again, the next records start on a line of their own (the cut one is one bad line,
        and nothing after it is lost)."""
        self.on_small_tmpfs("size=64k", self.fill_cut_and_read)

    def on_small_tmpfs(self, options, run):
        """run(mount point) on a tmpfs of its own (mount -o options), unmounted after."""
        mnt = os.path.join(self.tmp.name, "mnt")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", mnt],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a small tmpfs here")
        try:
            run(mnt)
        finally:
            subprocess.run(["umount", "-l", mnt], capture_output=True)

    def fill(self, mnt, opts=()):
        """A wrap logging to mnt/t.log on a file system that a filler file leaves 24 KiB
        of, driven until a write of the log fails (one record cut): (wrap, log, filler)."""
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            f.write(b"x" * 40000)
        log = os.path.join(mnt, "t.log")
        w = self.wrap(opts=list(opts) + ["--log", log])
        i = 0
        while "No space left" not in w.stderr():
            w.send(call(i, "echo", text="y" * 3000))
            self.assertEqual(w.msg()["id"], i)
            i += 1
            self.assertLess(i, 100, "the log never filled the file system")
        return w, log, filler

    def fill_cut_and_read(self, mnt):
        w, log, filler = self.fill(mnt)
        os.unlink(filler)  # room again
        for j in range(100, 103):
            w.send(call(j, "echo", text="after"))
            self.assertEqual(w.msg()["id"], j)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        with open(log, "rb") as f:
            lines = f.read().split(b"\n")
        self.assertEqual(lines[-1], b"", "the log ends with a whole line")
        good, bad = [], 0
        for line in lines[:-1]:
            try:
                good.append(json.loads(line))
            except ValueError:
                bad += 1
        self.assertLessEqual(bad, 1)
        after = [r["id"] for r in good if r.get("id") in (100, 101, 102)]
        self.assertEqual(sorted(after), [100, 100, 101, 101, 102, 102], "in and out each")

    def test_a_rotation_after_a_cut_record_starts_the_new_file_whole(self):
        """The record a full file system cut is the old file's: after a rotation, the new
        file starts with a whole record, not with the line end that closes the cut one."""
        self.on_small_tmpfs("size=64k", self.fill_cut_and_rotate)

    def fill_cut_and_rotate(self, mnt):
        w, log, filler = self.fill(mnt, ["-v"])
        # The rotation before there is room again: a record still on its way (the answer
        # to the last call is logged after it was sent) fails whole on the new file, as
        # the file system is full, and cannot end the cut record in the old one.
        os.rename(log, log + ".1")
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopened" in w.stderr(), 10, "the log reopened")
        os.unlink(filler)  # room again
        w.send(call(100, "echo", text="after"))
        self.assertEqual(w.msg()["id"], 100)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        with open(log + ".1", "rb") as f:
            self.assertFalse(f.read().endswith(b"\n"), "the old file ends with the cut record")
        self.assertEqual([r.get("id") for r in records(log)][:2], [100, 100])
        rc, _, err = run_log(self.env, "show", log)
        self.assertEqual((rc, err), (0, ""))

    def test_a_reopen_that_fails_is_tried_again(self):
        """SIGUSR1 after a rotation, and the new file cannot be made (no inode left): the
        records are dropped, said once, and the open is tried again every second: once it
        can be made, records go to it."""
        self.on_small_tmpfs("size=1m,nr_inodes=3", self.reopen_without_an_inode)

    def reopen_without_an_inode(self, mnt):
        log = os.path.join(mnt, "t.log")
        w = self.wrap(opts=["--log", log])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        os.rename(log, log + ".1")
        open(os.path.join(mnt, "other"), "w").close()  # the last free inode
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "cannot reopen" in w.stderr(), 5, "the failed reopen")
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        os.unlink(os.path.join(mnt, "other"))  # room again
        time.sleep(1.1)  # the next try is a second after the last
        for i in (3, 4):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual([r["id"] for r in messages(records(log), "in")], [3, 4])

    def test_a_reopen_that_fails_is_tried_again_for_long_messages_too(self):
        """The retry of a failed reopen also comes when a turn has only records whose
        long body is written straight from the message (16 KiB and more): they are not
        dropped once the path can be opened again."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        os.rename(log, log + ".1")
        os.mkdir(log)  # the path cannot be opened as a file (EISDIR)
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "cannot reopen" in w.stderr(), 5, "the failed reopen")
        w.send(req(2, "ping"))  # dropped: said as what it is, not as a failed write
        self.assertEqual(w.msg()["id"], 2)
        wait_until(lambda: "closed after a failed reopen" in w.stderr(), 5, "the drop said")
        self.assertNotIn("cannot write", w.stderr())
        os.rmdir(log)  # it can again
        time.sleep(1.1)  # the next try is a second after the last
        for i in (3, 4):
            w.send(call(i, "echo", text="z" * 20000))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        recs = records(log)
        self.assertEqual([r["id"] for r in messages(recs, "in")], [3, 4])
        self.assertEqual([r["id"] for r in messages(recs, "out")], [3, 4])

    def test_sigusr1_kills_no_mcpmux(self):
        """`pkill -USR1 mcpmux` after a rotation reaches every mcpmux: the reader of the
        log and a connect bridge go on (they have no log to reopen)."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        reader = self.start([MCPMUX, "log", "show", "--follow", "--color", "never", log])

        def pings(n):
            seen = 0
            while seen < n:
                seen += "ping" in reader.line().decode()
        pings(1)
        path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve(opts=["--listen", path])
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        c = self.start([MCPMUX, "connect", "--session", "u", path])
        c.send(req(1, "ping"))
        self.assertEqual(c.msg()["id"], 1)
        for p in (reader, c):
            p.p.send_signal(signal.SIGUSR1)
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        pings(1)  # the second ping's line, after the signal
        c.send(req(2, "ping"))
        self.assertEqual(c.msg()["id"], 2)
        c.close_stdin()
        self.assertEqual(c.wait(), 0)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertIsNone(reader.p.poll())

    def test_a_refusal_to_another_connection_is_not_in_the_owners_session(self):
        """A connection that writes to a session another owns is refused; that refusal is
        not the owner's traffic, and its session's records do not show it."""
        log = os.path.join(self.tmp.name, "t.log")
        path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve(opts=["--listen", path, "--log", log])
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        a = self.start([MCPMUX, "connect", "--session", "x", path])
        a.send(req(1, "ping"))
        self.assertEqual(a.msg()["id"], 1)
        b = self.start([MCPMUX, "connect", "--session", "x", path])
        b.send(req(7, "ping"))
        self.assertIn("another connection", b.msg()["error"]["message"])
        b.close_stdin()
        b.wait()
        a.close_stdin()
        self.assertEqual(a.wait(), 0)
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        errors = [r for r in records(log) if r.get("session") == "x" and r.get("kind") == "error"]
        self.assertEqual(errors, [])

    def test_each_end_is_logged_with_its_reason(self):
        """The `ended` record of a real run says why it ended (the reasons of
        docs/traffic-log.md), and a session refused over --max-sessions is a `refused`
        event with its reason."""
        log = os.path.join(self.tmp.name, "t.log")
        p = self.serve(opts=FAST + ["--log", log, "--max-sessions", "1"])

        def ended(session):
            return wait_until(lambda: [r for r in records(log) if r.get("session") == session
                                       and r.get("event") == "ended"], 10,
                              "the end of %s" % session)[0]

        def until_message(session):
            while True:
                m = p.msg()
                if m.get("session") == session and "message" in m:
                    return m["message"]
        p.send({"session": "ok", "message": call(1, "exit", code=0)})
        until_message("ok")
        self.assertEqual(ended("ok")["reason"], "exit")
        p.send({"session": "bad", "message": call(1, "exit", code=3)})
        until_message("bad")
        self.assertEqual(ended("bad")["reason"], "crash")
        p.send({"session": "eof", "message": req(1, "ping")})
        self.assertEqual(until_message("eof")["id"], 1)
        p.send({"session": "over", "message": req(1, "ping")})
        self.assertIn("max-sessions", until_message("over")["error"]["message"])
        # The record is written with the loop's turn, not before the answer: waited for.
        refused = wait_until(lambda: [r for r in records(log) if r.get("event") == "refused"],
                             10, "the refused record")
        self.assertEqual([(r["session"], "max-sessions" in r["reason"]) for r in refused],
                         [("over", True)])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(ended("eof")["reason"], "client-eof")

        p = self.serve(command=[os.path.join(self.tmp.name, "no-such-server")],
                       opts=FAST + ["--log", log])
        p.send({"session": "noexec", "message": req(1, "ping")})
        until_message("noexec")
        self.assertEqual(ended("noexec")["reason"], "exec-failed")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

        p = self.serve(opts=FAST + ["--log", log])
        p.send({"session": "sig", "message": req(1, "ping")})
        until_message("sig")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual([r["reason"] for r in records(log)
                          if r.get("session") == "sig" and r.get("event") == "ended"][-1],
                         "signal")

        p = self.serve(opts=FAST + ["--log", log, "--http", "127.0.0.1:0"])
        port = int(wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10,
                              "the HTTP port").group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.addCleanup(c.close)
        c.request("POST", "/mcp", body=json.dumps(initialize(0)), headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        r = c.getresponse()
        r.read()
        sid = r.getheader("Mcp-Session-Id")
        c.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(ended(sid)["reason"], "delete")
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)

    @unittest.skipIf(WRAPPER, "valgrind: the exec's errno does not reach mcpmux")
    def test_an_exec_failure_is_logged_as_such_in_every_mode(self):
        """A command that cannot be executed ends its run with the reason `exec-failed` and
        the escalation `none` in wrap and in serve on stdio, --listen and --http, also when
        the client's EOF comes with the message that started the server (read in the same
        turn: it was logged as client-eof); the client's error and stderr name it."""
        log = os.path.join(self.tmp.name, "t.log")
        cmd = os.path.join(self.tmp.name, "no-such-server")
        said = ("cannot run '%s': No such file or directory (check the command name and "
                "PATH)" % cmd)

        seen = []

        def ended(session=None):  # the next run's end
            recs = wait_until(lambda: [r for r in records(log)
                                       if r.get("event") == "ended"][len(seen):],
                              10, "the end of %s" % session)
            self.assertEqual(len(recs), 1, recs)
            self.assertIn(session, (None, recs[0]["session"]))
            seen.append(recs[0])
            return (recs[0]["reason"], recs[0]["escalation"], recs[0]["exit"])
        noexec = ("exec-failed", "none", {"code": 127})

        w = self.start([MCPMUX, "--log", log] + FAST + ["--", cmd], stdin=False)
        self.assertEqual(w.wait(), 127)
        self.assertEqual(w.stderr(), "mcpmux: %s\n" % said)
        self.assertEqual(ended(), noexec)

        p = self.serve(command=[cmd], opts=FAST + ["--log", log])
        p.send({"session": "s", "message": req(1, "ping")})
        p.close_stdin()  # (read with the message, as a rule)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(ended("s"), noexec)
        m = p.msg()
        while "message" not in m:  # (the `started` event first)
            m = p.msg()
        self.assertEqual(m["message"]["error"]["message"], "server could not be started: " + said)
        self.assertEqual(p.stderr(), "mcpmux: %s\n" % said)

        path = os.path.join(self.tmp.name, "mux.sock")
        p = self.serve(command=[cmd], opts=FAST + ["--log", log, "--listen", path])
        wait_until(lambda: os.path.exists(path), 5, "the socket")
        s = socket.socket(socket.AF_UNIX)
        self.addCleanup(s.close)
        s.settimeout(10)
        s.connect(path)
        s.sendall(json.dumps({"session": "l", "message": req(1, "ping")}).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        f = s.makefile("rb")
        self.addCleanup(f.close)
        m = json.loads(f.readline())
        while "message" not in m:  # (the `started` event first)
            m = json.loads(f.readline())
        self.assertEqual(m["message"]["error"]["message"], "server could not be started: " + said)
        self.assertEqual(ended("l"), noexec)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertIn("mcpmux: %s\n" % said, p.stderr())

        p = self.serve(command=[cmd], opts=FAST + ["--log", log, "--http", "127.0.0.1:0"])
        port = int(wait_until(lambda: re.search(r"on port (\d+)", p.stderr()), 10,
                              "the HTTP port").group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.addCleanup(c.close)
        for _ in range(2):  # a client that tries again: said on stderr once
            c.request("POST", "/mcp", body=json.dumps(initialize(0)), headers={
                "Content-Type": "application/json", "Accept": "application/json"})
            r = c.getresponse()
            self.assertEqual(json.loads(r.read())["error"]["message"],
                             "server could not be started: " + said)
            self.assertEqual(ended(), noexec)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 0)
        self.assertEqual(p.stderr().count("mcpmux: %s\n" % said), 1, p.stderr())

    def test_a_stalled_run_is_logged(self):
        """A server that stops reading its input: a `stalled` event with `stall_s`, then its
        run's `ended` with the reason `stall`."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap("--stop-reading-after=1",
                      opts=["--max-queue", "4K", "--stall-timeout", "1", "--log", log] + FAST)
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        # More than the server's pipe and the queue hold: the rest waits in mcpmux.
        w.write(b"".join(json.dumps(call(i, "echo", text="p" * 4000)).encode() + b"\n"
                         for i in range(1, 21)), 20)
        stalled = wait_until(lambda: [r for r in records(log) if r.get("event") == "stalled"],
                             10, "the stalled event", lambda: w.stderr())
        self.assertEqual(len(stalled), 1, stalled)
        self.assertEqual(stalled[0]["stall_s"], 1)
        ended = wait_until(lambda: [r for r in records(log) if r.get("event") == "ended"], 10,
                           "the stalled run's end")
        self.assertEqual(ended[0]["reason"], "stall")
        self.assertEqual(ended[0]["session"], stalled[0]["session"])
        w.close_stdin()
        w.wait(10)
        self.assert_no_leftovers()

    def test_a_long_stderr_line_is_cut_between_characters(self):
        """A server's stderr line longer than 16 KiB is logged in parts, each cut between
        two UTF-8 characters: no part ends or starts inside one (a U+FFFD in its text)."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap("--stderr-chatter", opts=["--log", log])
        methods = ["x" * pad + "\u20ac" * 6000 for pad in range(3)]
        for i, m in enumerate(methods):
            w.write((json.dumps(req(i, m), ensure_ascii=False) + "\n").encode())
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        parts = [r["text"] for r in records(log) if r.get("event") == "stderr"]
        self.assertTrue(all("\ufffd" not in t for t in parts), "a character was cut")
        joined = "".join(parts)
        for m in methods:
            self.assertIn("got " + m, joined)

    def test_megabytes_of_stderr_without_a_newline_are_logged_in_bounded_parts(self):
        """A server that writes 4 MB on stderr without a newline, then dies: mcpmux keeps
        at most 16 KiB of the line at a time (each part is logged as it fills), and the part
        it had not finished when the server died is logged at the end: every byte is
        there, in parts of at most 16 KiB."""
        log = os.path.join(self.tmp.name, "t.log")
        text, times = "0123456789" * 100, 4099  # 4,099,000 bytes: 3000 past the last part
        w = self.wrap(opts=["--log", log])
        w.send(call(1, "stderr", text=text, times=times))
        self.assertEqual(w.msg(30)["id"], 1)
        w.send(call(2, "crash"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        w.wait()
        parts = [r["text"] for r in records(log) if r.get("event") == "stderr"]
        self.assertEqual(max(len(t) for t in parts), 16 << 10)
        self.assertEqual(len(parts[-1]), len(text) * times % (16 << 10))
        self.assertEqual("".join(parts), text * times)

    def test_records_on_stderr_start_a_line_after_an_unfinished_server_line(self):
        """--log -: the server's stderr and the records share mcpmux's stderr.  A record
        after a server line without its newline starts a line of its own: every record
        reads as one JSON line, and every byte of the server's is there."""
        w = self.wrap(opts=["--log", "-"])
        w.send(call(1, "stderr", text="half a line"))
        self.assertEqual(w.msg()["id"], 1)
        w.send(call(2, "echo", text="after"))
        self.assertEqual(w.msg()["id"], 2)
        w.send(call(3, "stderr", text="the rest\nanother half"))
        self.assertEqual(w.msg()["id"], 3)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        lines = w.stderr().split("\n")
        recs = [json.loads(line) for line in lines if line.startswith('{"ts"')]
        self.assertEqual([r["id"] for r in recs if r.get("dir") == "in"], [1, 2, 3])
        server = [line for line in lines if not line.startswith('{"ts"')]
        self.assertIn("half a line", server)
        self.assertIn("another half", server)
        self.assertEqual(server.count("the rest"), 1, w.stderr())
        self.assertFalse([line for line in lines if '{"ts"' in line[1:]], w.stderr())

    def test_dev_stderr_is_stderr_also_when_it_is_a_socket(self):
        """--log /dev/stderr is --log -, also when stderr is a socket (a systemd service's,
        to its journal), which open() refuses: mcpmux starts, and the records are on its
        stderr."""
        mine, theirs = socket.socketpair()
        try:
            w = self.start([MCPMUX, "--log", "/dev/stderr"] + FAST + ["--", FIXTURE],
                           stderr=theirs.fileno())
            theirs.close()
            w.send(req(1, "ping"))
            self.assertEqual(w.msg()["id"], 1)
            w.close_stdin()
            self.assertEqual(w.wait(), 0)
            mine.settimeout(10)
            got = b""
            chunk = mine.recv(1 << 16)
            while chunk:
                got += chunk
                chunk = mine.recv(1 << 16)
        finally:
            theirs.close()
            mine.close()
        recs = [json.loads(line) for line in got.splitlines() if line.startswith(b'{"ts"')]
        self.assertEqual([(r.get("dir"), r.get("id")) for r in recs if "dir" in r],
                         [("in", 1), ("out", 1)], got)
        self.assertNotIn(b"cannot open", got)

    def run_mux(self, argv, **kw):
        """mcpmux argv, its stdin one ping (or what kw says): its exit code."""
        if "stdin" not in kw:
            kw["input"] = PING_LINE
        return subprocess.run(WRAPPER + [MCPMUX] + argv, timeout=20, env=self.env,
                              **kw).returncode

    def assert_one_transcript(self, path):
        """path holds the ping's records and its answer, each on a whole line of its own."""
        with open(path, "rb") as f:
            text = f.read()
        lines = [json.loads(line) for line in text.splitlines()]
        self.assertIn({"jsonrpc": "2.0", "id": 1, "result": {}}, lines, text)
        self.assertEqual([(r.get("dir"), r.get("id")) for r in lines if "ts" in r],
                         [(None, None), ("in", 1), ("out", 1), (None, None)], text)

    def test_a_log_on_the_clients_stdin_or_stdout_is_refused(self):
        """Wrap's stdin and stdout are the client's, and so are those of serve without
        --listen or --http (its envelopes): a log there (--log /dev/stdout, a typo for
        /dev/stderr) put records among the client's messages, or had mcpmux read them
        back as the client's.  Refused as a log that cannot be opened is: exit 1, nothing
        written to the client, no server started."""
        said = {"/dev/stdout": "the traffic log '/dev/stdout' is mcpmux's stdout, the "
                "client's: its records would be among the client's messages",
                "/dev/stdin": "the traffic log '/dev/stdin' is mcpmux's stdin, the client's"}
        for path, serve in (("/dev/stdout", False), ("/dev/stdin", False),
                            ("/dev/stdout", True)):
            w = (self.serve if serve else self.wrap)(opts=FAST + ["--log", path])
            w.close_stdin()
            self.assertEqual(w.wait(5), 1, w.stderr())
            self.assertIn(said[path], w.stderr())
            self.assertEqual(w.p.stdout.read(), b"")
            self.assertNotIn("bytes of records still in the FIFO", w.stderr())
        out = os.path.join(self.tmp.name, "out")
        with open(out, "wb") as f:
            p = subprocess.run(WRAPPER + [MCPMUX, "--log", out] + FAST + ["--", FIXTURE],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                               timeout=20, env=self.env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"the traffic log '%s' is the file mcpmux's stdout writes to, and the "
                      b"two are not both opened for appending" % out.encode(), p.stderr)
        self.assertEqual(os.path.getsize(out), 0)

    def test_a_log_on_stderr_is_stderr_wherever_stderr_goes(self):
        """A log that is mcpmux's stderr is written there, as --log - is, and is never
        refused: where stderr goes is the caller's choice, also when it is the client's
        stdout too (`--log /dev/stderr 2>&1 | less`, to read records and answers together,
        in wrap and in serve on stdio).  SIGUSR1 does not reopen it by its path."""
        for serve in (False, True):
            argv = (["serve"] if serve else []) + ["--log", "/dev/stderr"] + FAST
            line = PING_LINE if not serve else (
                b'{"session":"s","message":%s}\n' % PING_LINE.strip())
            p = subprocess.run(WRAPPER + [MCPMUX] + argv + ["--", FIXTURE],
                               input=line, timeout=20,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
            self.assertEqual(p.returncode, 0, p.stdout)
            self.assertIn(b'"dir":"in"', p.stdout)
            self.assertIn(b'"result":{}', p.stdout)
        # The file stderr appends to, renamed (a rotation) and SIGUSR1: the records go on
        # to stderr, where the diagnostics go, and nothing is made at the path.
        log = os.path.join(self.tmp.name, "both")
        with open(log, "ab") as f:
            w = self.start([MCPMUX, "--log", log] + FAST + ["--", FIXTURE], stderr=f)
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        os.rename(log, log + ".1")
        w.p.send_signal(signal.SIGUSR1)
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertFalse(os.path.exists(log))
        with open(log + ".1") as f:
            ids = [json.loads(l)["msg"].get("id") for l in f
                   if l.startswith("{") and '"dir":"in"' in l]
        self.assertEqual(ids, [1, 2])

    def test_a_log_on_a_socket_that_is_the_clients_is_refused_as_such(self):
        """Stdin and stdout a socketpair (as node and libuv spawn a server): --log
        /dev/stdout or /dev/stdin cannot be opened (no open() takes a socket), and mcpmux
        says it is the client's, not that it could not be opened."""
        for path, said in (("/dev/stdout", b"is mcpmux's stdout, the client's"),
                           ("/dev/stdin", b"is mcpmux's stdin, the client's")):
            in_mine, in_theirs = socket.socketpair()
            out_mine, out_theirs = socket.socketpair()
            try:
                in_mine.sendall(PING_LINE)
                in_mine.shutdown(socket.SHUT_WR)
                p = subprocess.run(WRAPPER + [MCPMUX, "--log", path] + FAST + ["--", FIXTURE],
                                   stdin=in_theirs.fileno(), stdout=out_theirs.fileno(),
                                   stderr=subprocess.PIPE, timeout=20, env=self.env)
                out_theirs.close()
                out_mine.settimeout(10)
                got = b"".join(iter(lambda: out_mine.recv(1 << 16), b""))
            finally:
                for s in (in_mine, in_theirs, out_mine, out_theirs):
                    s.close()
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"mcpmux: the traffic log '%s' %s" % (path.encode(), said), p.stderr)
            self.assertNotIn(b"cannot open", p.stderr)
            self.assertEqual(got, b"")

    def test_a_log_on_stderr_or_an_appended_stdout_is_kept_whole(self):
        """A log that is the file stderr goes to is --log -, whatever its type
        (/dev/stderr with `>>FILE 2>&1` was refused as the client's stdout); a log that is
        the file stdout goes to is taken when their writes cannot overwrite each other:
        both append (`--log FILE >>FILE`), or they share one offset (`--log FILE >FILE
        2>&1`, the log then on stderr).  FILE holds every record and the answer, each a
        whole line."""
        out = os.path.join(self.tmp.name, "out")
        argv = FAST + ["--", FIXTURE]
        for log, out_mode, err in (("/dev/stderr", "ab", "stdout"), (out, "ab", "pipe"),
                                   (out, "wb", "stdout"), (out, "ab", "ab")):
            if os.path.exists(out):
                os.unlink(out)
            with open(out, out_mode) as f:
                if err == "ab":
                    with open(out, "ab") as g:
                        rc = self.run_mux(["--log", log] + argv, stdout=f, stderr=g)
                else:
                    rc = self.run_mux(["--log", log] + argv, stdout=f,
                                      stderr=(subprocess.STDOUT if err == "stdout"
                                              else subprocess.PIPE))
            self.assertEqual(rc, 0, (log, out_mode, err))
            self.assertTrue(os.path.getsize(out) > 0, (log, out_mode, err))
            self.assert_one_transcript(out)

    def test_a_log_on_the_terminal_the_client_uses_is_written(self):
        """A terminal is never refused (an interactive --log /dev/tty): stdout and the log
        one pseudo-terminal, the records and the answer are on it."""
        master, slave = os.openpty()
        try:
            tty = os.ttyname(slave)
            p = self.start([MCPMUX, "--log", tty] + FAST + ["--", FIXTURE], stdout=slave)
            os.close(slave)
            slave = -1
            p.send(req(1, "ping"))
            got = b""
            deadline = time.monotonic() + 10
            while b'"dir":"out"' not in got and time.monotonic() < deadline:
                if select.select([master], [], [], 0.5)[0]:
                    got += os.read(master, 1 << 16)
            p.close_stdin()
            self.assertEqual(p.wait(), 0, p.stderr())
        finally:
            if slave != -1:
                os.close(slave)
            os.close(master)
        self.assertIn(b'"result":{}', got)
        self.assertIn(b'"dir":"in"', got)
        self.assertIn(b'"dir":"out"', got)

    def test_an_end_requests_grace_is_logged_as_written(self):
        """The end-of-run's params.graceMs is logged as the client wrote it: one past a
        double's range was written "inf", which made the record no JSON (`log show` and
        jq skipped it), and others rounded (1234567 as 1.23457e+06)."""
        log = os.path.join(self.tmp.name, "t.log")
        for grace in (b"1e999", b"1234567"):
            w = self.wrap(opts=FAST + ["--log", log])
            w.write(b'{"jsonrpc":"2.0","id":9,"method":"mcpmux/endRun","params":{"graceMs":'
                    + grace + b'}}\n')
            self.assertEqual(w.msg(10)["id"], 9)
            w.close_stdin()
            self.assertEqual(w.wait(), 0)
        with open(log, "rb") as f:
            lines = [line for line in f if b'"end-requested"' in line]
        self.assertEqual([re.search(rb'"graceMs":([^,}]*)', line).group(1) for line in lines],
                         [b"1e999", b"1234567"], lines)
        for line in lines:
            json.loads(line)
        rc, out, err = run_log(self.env, "show", "--color", "never", log)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out.count("end-requested"), 2, out)

    def test_a_long_end_request_grace_is_used_and_logged_as_written(self):
        """A graceMs of 32 characters or more was neither used nor logged: here a server
        that ignores EOF and SIGTERM, under graces of a minute, ends at once with a grace
        of 0 written in 34 characters, and the record has the text as written."""
        log = os.path.join(self.tmp.name, "t.log")
        grace = b"0." + b"0" * 31 + b"1"
        w = self.wrap("--ignore-eof", "--ignore-sigterm",
                      opts=["--eof-grace", "60000", "--term-grace", "60000", "--log", log])
        w.write(b'{"jsonrpc":"2.0","id":9,"method":"mcpmux/endRun","params":{"graceMs":'
                + grace + b'}}\n')
        m = w.msg(10)
        self.assertEqual(m["id"], 9)
        self.assertLess(m["result"]["ms"], 10000, m)
        w.close_stdin()
        w.wait()
        with open(log, "rb") as f:
            lines = [line for line in f if b'"end-requested"' in line]
        self.assertEqual([json.loads(line).get("graceMs") for line in lines], [1e-32], lines)
        self.assertIn(b'"graceMs":' + grace + b"}", lines[0])

    def test_a_log_past_the_file_size_limit_does_not_stop_traffic(self):
        """A log that reaches RLIMIT_FSIZE (ulimit -f) is a log that cannot be written
        (EFBIG), not the end of mcpmux (SIGXFSZ): every request is answered, said once."""
        log = os.path.join(self.tmp.name, "t.log")
        limit = 16 << 10

        def small_files():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        w = self.start([MCPMUX, "--log", log] + FAST + ["--", FIXTURE], preexec_fn=small_files)
        for i in range(60):
            w.send(call(i, "echo", text="y" * 500))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())
        self.assertEqual(os.path.getsize(log), limit)
        self.assertEqual(w.stderr().count("cannot write"), 1, w.stderr())
        self.assertIn("File too large", w.stderr())

    def test_unwritable_log_does_not_stop_traffic(self):
        """Said once while it happens, and counted at exit: started, 20 requests, their
        answers, ended."""
        w = self.wrap(opts=["--log", "/dev/full"])
        for i in range(20):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.stderr().count("traffic log"), 2, w.stderr())
        self.assertEqual(w.stderr().count("cannot write"), 1, w.stderr())
        self.assertIn("traffic log /dev/full: 42 records lost (it could not be written)",
                      w.stderr())

    def test_fifo_nobody_reads_never_stops_traffic(self):
        """A log that is a FIFO (or a pipe, a socket, a terminal) is written without
        blocking: records wait up to a bound for its reader, then are dropped whole and
        counted; the traffic never waits for it."""
        fifo = os.path.join(self.tmp.name, "log.fifo")
        os.mkfifo(fifo)
        w = self.wrap(opts=["--log", fifo])  # no reader yet: the open must not wait
        pad = "x" * 8000
        n = 300  # two records of 8 KB each: far more than the pipe and the bound hold
        for i in range(n):
            w.send(call(i, "echo", text=pad))
            self.assertEqual(w.msg()["id"], i)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, fd)
        data = [b""]

        def drained():  # read what is there; done once mcpmux has said what it dropped
            if select.select([fd], [], [], 0.05)[0]:
                data[0] += os.read(fd, 1 << 20)
            return "records dropped" in w.stderr()
        wait_until(drained, 20, "the count of dropped records once the reader caught up")
        data = data[0]
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        while True:  # what mcpmux wrote before it exited; then EOF (no writer left)
            got = os.read(fd, 1 << 20)
            if not got:
                break
            data += got
        self.assertTrue(data.endswith(b"\n"))
        recs = [json.loads(line) for line in data.splitlines()]  # whole records only
        ids = [r["id"] for r in messages(recs, "in")]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(ids[:5], list(range(5)))  # the first ones waited for the reader
        self.assertLess(len(ids), n)
        dropped = int(re.search(r"(\d+) records dropped", w.stderr()).group(1))
        self.assertGreaterEqual(len(recs) + dropped, 2 * n)

    def test_fifo_records_lost_at_exit_are_counted(self):
        """A FIFO whose reader reads nothing until mcpmux has exited: every record that
        did not reach it, dropped on the way or still waiting at exit, is counted on
        stderr at exit; none is lost unsaid."""
        fifo = os.path.join(self.tmp.name, "log.fifo")
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that reads nothing yet
        self.addCleanup(os.close, fd)
        w = self.wrap(opts=["--log", fifo])
        pad = "x" * 8000
        n = 300
        for i in range(n):
            w.send(call(i, "echo", text=pad))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        data = b""
        while True:
            got = os.read(fd, 1 << 20)
            if not got:
                break
            data += got
        whole = data.count(b"\n")  # a record cut at exit counts as not written
        m = re.search(r"(\d+) records dropped \(its reader did not keep up\), (\d+) of "
                      r"them not written at exit", w.stderr())
        self.assertIsNotNone(m, w.stderr())
        self.assertGreater(int(m.group(2)), 0)
        # started, a request and its answer per call, ended
        self.assertEqual(whole + int(m.group(1)), 2 * n + 2, w.stderr())

    def test_a_fifo_no_reader_opened_says_what_it_held_at_exit(self):
        """mcpmux holds a FIFO open for reading too, so its records wait in the pipe for a
        reader that may never come: at exit it says how many bytes that is."""
        fifo = os.path.join(self.tmp.name, "log.fifo")
        os.mkfifo(fifo)
        w = self.wrap(opts=["--log", fifo])
        for i in range(20):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        m = re.search(r"traffic log .*: (\d+) bytes of records still in the FIFO at exit "
                      r"\(lost unless a reader has it open\)", w.stderr())
        self.assertIsNotNone(m, w.stderr())
        self.assertGreater(int(m.group(1)), 42 * 100)  # 42 records of over 100 bytes each

    def test_reopen_that_finds_a_fifo(self):
        """SIGUSR1 after the log's path became a FIFO: from then on the log is written the
        FIFO's way (records wait for the reader, then are dropped whole and counted), not
        by the regular file's writer, whose writes would fail on a full pipe."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["-v", "--log", log])
        w.send(req(0, "ping"))
        self.assertEqual(w.msg()["id"], 0)
        os.rename(log, log + ".1")
        os.mkfifo(log)
        fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)  # a reader, who reads nothing yet
        self.addCleanup(os.close, fd)
        w.p.send_signal(signal.SIGUSR1)
        wait_until(lambda: "reopened" in w.stderr(), 10, "the log reopened")
        pad = "x" * 8000
        n = 300  # far more than the pipe and the bound hold
        for i in range(1, n + 1):
            w.send(call(i, "echo", text=pad))
            self.assertEqual(w.msg()["id"], i)
        data = [b""]

        def drained():
            if select.select([fd], [], [], 0.05)[0]:
                data[0] += os.read(fd, 1 << 20)
            return "records dropped" in w.stderr()
        wait_until(drained, 20, "the count of dropped records once the reader caught up")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        while True:
            got = os.read(fd, 1 << 20)
            if not got:
                break
            data[0] += got
        self.assertNotIn("cannot write", w.stderr())
        recs = [json.loads(line) for line in data[0].splitlines()]  # whole records only
        ids = [r["id"] for r in messages(recs, "in")]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual([r["id"] for r in messages(records(log + ".1"), "in")], [0])

    def test_log_that_cannot_be_opened(self):
        w = self.wrap(opts=["--log", "/nonexistent/dir/t.log"])
        self.assertEqual(w.wait(), 1)
        self.assertIn("/nonexistent/dir/t.log", w.stderr())
        p = self.serve(opts=["--log", "/nonexistent/dir/t.log"])
        self.assertEqual(p.wait(), 1)
        self.assertIn("cannot open the traffic log '/nonexistent/dir/t.log'", p.stderr())

    def test_an_answer_dropped_for_an_ended_run_is_logged_as_dropped(self):
        """The client's answers for a gone server's requests, dropped (alone, taken out of a
        batch, or with no run current), are `in` records with "ended_run": true; the
        answers that reach a server are not; `log show` marks them DROPPED and `log stats`
        counts them apart, with no method's errors."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=FAST + ["--log", log], command=[sys.executable, "-c", BATCH_ASKER])
        w.send(req(1, "ask", {"ids": ["s1", "s2", "s3"]}))
        self.assertEqual([w.msg()["id"] for _ in range(4)], ["s1", "s2", "s3", 1])
        w.send(req("e", "mcpmux/endRun"), req(2, "ask", {"ids": ["c1"]}))
        self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(3)), ["2", "c1", "e"])
        w.send(ERR("s1"))
        w.send([ERR("s2"), ERR("c1"), req(3, "report")])
        self.assertEqual(w.msg(10), [{"jsonrpc": "2.0", "id": 3, "result": [["c1", -1]]}])
        w.send(note("mcpmux/endRun"), ERR("s3"), req(4, "ping"))
        self.assertEqual(w.msg(10)["id"], 4)
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())
        with open(log) as f:
            recs = [r for r in map(json.loads, f) if r.get("dir") == "in"]
        dropped = [r for r in recs if r.get("ended_run")]
        self.assertEqual([r["msg"] for r in dropped], [ERR("s1"), [ERR("s2")], ERR("s3")])
        self.assertEqual([r["kind"] for r in dropped], ["error", "batch", "error"])
        self.assertTrue(all(r["ended_run"] is True for r in dropped), dropped)
        self.assertIn([ERR("c1"), req(3, "report")],
                      [r["msg"] for r in recs if "ended_run" not in r])
        # Each under the session of the run whose server asked it (the first run's, over,
        # whether its server still ran or not), not the current run's, nor none.
        asker = [r["session"] for r in recs
                 if r["msg"] == req(1, "ask", {"ids": ["s1", "s2", "s3"]})]
        self.assertEqual([r["session"] for r in dropped], asker * 3)
        rc, out, err = run_log(self.env, "show", "--color", "never", "--session", asker[0], log)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len([ln for ln in out.splitlines() if "DROPPED" in ln]), 3, out)
        rc, out, err = run_log(self.env, "show", "--color", "never", log)
        self.assertEqual(rc, 0, err)
        marked = [ln for ln in out.splitlines() if "DROPPED" in ln]
        self.assertEqual(len(marked), 3, out)
        self.assertIn("#\"s1\"", marked[0])
        self.assertIn("[batch]", marked[1])
        rc, out, err = run_log(self.env, "stats", log)
        self.assertEqual(rc, 0, err)
        self.assertIn(", 3 dropped for ended runs\n", out)
        # Nobody got the dropped errors (c1's, in a batch, is no error record).
        self.assertIn(" 0 errors, ", out)

    def test_an_answer_held_while_mcpmux_ends_is_logged_as_dropped(self):
        """The client's answers held behind an ended run's replies when a signal ends
        mcpmux (alone, or in a batch whose request is refused) are dropped as any for a
        run that is over: "ended_run": true, DROPPED in `log show`, no error in `log
        stats`."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        fifo = os.path.join(self.tmp.name, "go")
        os.mkfifo(fifo)
        # "slow" is answered once the test opens the FIFO: the ended run owes its answer
        # till then, and the client's lines after the end-of-run wait behind it.
        server = BATCH_ASKER.replace(
            'elif e["method"] == "ask":',
            'elif e["method"] == "slow":\n'
            '            open(sys.argv[1]).read()\n'
            '        elif e["method"] == "ask":')
        w = self.wrap(opts=["-v", "--eof-grace", "60000", "--log", log],
                      command=[sys.executable, "-c", server, fifo])
        w.send(req(1, "ask", {"ids": ["s1", "s2"]}))
        self.assertEqual([w.msg()["id"] for _ in range(3)], ["s1", "s2", 1])
        # One write: read at once, so every line after the end-of-run is held once it is
        # in the log.
        w.send(req(2, "slow"), req("e", "mcpmux/endRun"), ERR("s1"),
               [ERR("s2"), req(3, "ping")])
        wait_until(lambda: any(r.get("method") == "mcpmux/endRun" for r in records(log)),
                   10, "the end-of-run in the log")
        w.p.send_signal(signal.SIGTERM)
        wait_until(lambda: "Terminated: ending" in w.stderr(), 10, "mcpmux ending")
        with open(fifo, "w"):
            pass  # the slow request answered: the ended run is done
        got = [w.msg(10) for _ in range(3)]
        self.assertEqual(sorted(str(m["id"]) for m in got if isinstance(m, dict)),
                         ["2", "e"])
        self.assertIn([{"jsonrpc": "2.0", "id": 3, "error": {
            "code": -32000, "message": "the server's run is ending"}}], got)
        w.wait()
        self.assertNotIn("dropped a client error", w.stderr())
        recs = messages(records(log), "in")
        dropped = [r for r in recs if r.get("ended_run")]
        self.assertEqual([r["msg"] for r in dropped], [ERR("s1"), [ERR("s2")]])
        asker = [r["session"] for r in recs
                 if r["msg"] == req(1, "ask", {"ids": ["s1", "s2"]})]
        self.assertEqual([r["session"] for r in dropped], asker * 2)
        self.assertIn([req(3, "ping")], [r["msg"] for r in recs if "ended_run" not in r])
        rc, out, err = run_log(self.env, "show", "--color", "never", log)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len([ln for ln in out.splitlines() if "DROPPED" in ln]), 2, out)
        rc, out, err = run_log(self.env, "stats", log)
        self.assertEqual(rc, 0, err)
        self.assertIn(", 2 dropped for ended runs\n", out)


class Reading(Case):
    def run_log(self, *args, stdin=None):
        return run_log(self.env, *args, stdin=stdin)

    def golden(self, name):
        with open(os.path.join(LOGS, name)) as f:
            return f.read()

    def test_show_and_stats_golden(self):
        fixed = os.path.join(LOGS, "fixed.log")
        for args, name in ((["show", "--color", "never"], "show.golden"),
                           (["show", "--color", "never", "--session", "other"],
                            "show-session.golden"),
                           (["show", "--color", "never", "--method", "tools/call"],
                            "show-method.golden"),
                           (["stats"], "stats.golden")):
            rc, out, err = self.run_log(*args, fixed)
            self.assertEqual(rc, 0)
            self.assertEqual(out, self.golden(name), name)
            self.assertIn("cut short", err)  # the fixed log's last line is truncated

    def test_suspend_events_and_end_reasons(self):
        """Suspend, resume and replay events shown readably; stats says how each session
        ended (the `ended` record's reason, else its escalation), counts suspends and
        resumes, and calls a session whose last record is `suspended` suspended."""
        def rec(ts, session, pid, **kw):
            r = {"ts": "2026-11-24T10:00:%sZ" % ts, "session": session, "pid": pid}
            r.update(kw)
            return r

        def msg(ts, session, pid, d, kind, id_, method=None, ms=None):
            kw = {"dir": d, "kind": kind, "id": id_}
            if method:
                kw["method"] = method
            if ms is not None:
                kw["ms"] = ms
            kw["bytes"] = 50
            return rec(ts, session, pid, **kw)

        differ = "the restarted server's capabilities differ from the first one's"
        log = [
            rec("00.000000", "sess-a", 100, event="started"),
            msg("00.001000", "sess-a", 100, "in", "request", 1, "initialize"),
            msg("00.011000", "sess-a", 100, "out", "response", 1, ms=10),
            rec("01.000000", "sess-a", 100, event="suspended", exit={"code": 0},
                escalation="eof", ms=12, reason="idle"),
            msg("02.000000", "sess-a", None, "in", "request", 2, "tools/call"),
            rec("02.010000", "sess-a", 101, event="started"),
            rec("02.085000", "sess-a", 101, event="resumed", ms=85),
            msg("02.090000", "sess-a", 101, "out", "response", 2, ms=5),
            rec("03.000000", "sess-a", 101, event="suspended", exit={"signal": "SIGTERM"},
                escalation="term", ms=2003, reason="pool"),
            msg("04.000000", "sess-a", None, "in", "request", 3, "tools/call"),
            rec("04.010000", "sess-a", 102, event="started"),
            rec("04.020000", "sess-a", 102, event="resume-failed", reason=differ),
            msg("04.020500", "sess-a", 102, "out", "error", 3, ms=20),
            rec("04.030000", "sess-a", 102, event="suspended", exit={"code": 0},
                escalation="eof", ms=9, reason="resume-failed"),
            # the end of a suspended session: no server to end
            rec("05.000000", "sess-a", None, event="ended", exit=None, escalation="none",
                ms=0, reason="end-of-run"),
            rec("06.000000", "sess-b", 200, event="started"),
            rec("06.500000", "sess-b", 200, event="ended", exit={"signal": "SIGSEGV"},
                escalation="none", ms=0, reason="crash"),
            rec("07.000000", "sess-c", 300, event="started"),
            rec("07.100000", "sess-c", 300, event="replayed", ms=40),
            rec("09.000000", "sess-c", 300, event="ended", exit={"signal": "SIGTERM"},
                escalation="term", ms=2001, reason="idle-timeout"),
            rec("10.000000", "sess-d", 400, event="started"),
            rec("10.500000", "sess-d", 400, event="suspended", exit={"code": 0},
                escalation="eof", ms=3, reason="idle"),
            # suspended, then a message: resuming when the log ends
            rec("11.000000", "sess-e", 500, event="started"),
            rec("11.500000", "sess-e", 500, event="suspended", exit={"code": 0},
                escalation="eof", ms=3, reason="idle"),
            msg("12.000000", "sess-e", None, "in", "request", 1, "ping"),
            rec("13.000000", "sess-f", 600, event="started"),
            rec("13.004000", "sess-f", 600, event="ended", exit={"code": 0}, escalation="eof",
                ms=4, reason="end-of-run"),
            # a log written before `reason` existed
            rec("14.000000", "sess-g", 700, event="started"),
            rec("14.012000", "sess-g", 700, event="ended", exit={"code": 0}, escalation="eof",
                ms=12),
            # and one that ended while suspended
            rec("15.000000", "sess-h", 800, event="started"),
            rec("15.500000", "sess-h", 800, event="suspended", exit={"code": 0},
                escalation="eof", ms=3, reason="idle"),
            rec("16.000000", "sess-h", None, event="ended", exit=None, escalation="none",
                ms=0),
            # wrap: what its client did not take when it exited
            rec("17.000000", None, None, event="undelivered", reason="signal", messages=2,
                bytes=300, cut=True, ids=[3]),
            # (with no reason, one message; string ids, and more than it lists)
            rec("18.000000", None, None, event="undelivered", messages=1, bytes=40,
                cut=False, ids=[]),
            rec("19.000000", None, None, event="undelivered", reason="client-gone",
                messages=105, bytes=9000, cut=False, ids=["a\x1b", 7], ids_more=103),
        ]
        path = os.path.join(self.tmp.name, "s.log")
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in log)

        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual((rc, err), (0, ""))
        events = [l for l in out.splitlines() if "  * " in l and "* started " not in l]
        self.assertEqual(events, [
            "10:00:01.000 sess-a      * suspended     idle, exit 0, escalation eof, 12 ms",
            "10:00:02.085 sess-a      * resumed       in 85 ms",
            "10:00:03.000 sess-a      * suspended     pool, SIGTERM, escalation term, 2003 ms",
            "10:00:04.020 sess-a      * resume-failed " + differ,
            "10:00:04.030 sess-a      * suspended     resume-failed, exit 0, escalation eof, "
            "9 ms",
            "10:00:05.000 sess-a      * ended         end-of-run, no server running",
            "10:00:06.500 sess-b      * ended         crash, SIGSEGV, escalation none, 0 ms",
            "10:00:07.100 sess-c      * replayed      in 40 ms",
            "10:00:09.000 sess-c      * ended         idle-timeout, SIGTERM, escalation term, "
            "2001 ms",
            "10:00:10.500 sess-d      * suspended     idle, exit 0, escalation eof, 3 ms",
            "10:00:11.500 sess-e      * suspended     idle, exit 0, escalation eof, 3 ms",
            "10:00:13.004 sess-f      * ended         end-of-run, exit 0, escalation eof, 4 ms",
            "10:00:14.012 sess-g      * ended         exit 0, escalation eof, 12 ms",
            "10:00:15.500 sess-h      * suspended     idle, exit 0, escalation eof, 3 ms",
            "10:00:16.000 sess-h      * ended         no server running",
            "10:00:17.000 -           * undelivered   signal, 2 messages, 300 bytes, one cut, "
            "ids 3",
            "10:00:18.000 -           * undelivered   1 message, 40 bytes",
            "10:00:19.000 -           * undelivered   client-gone, 105 messages, 9000 bytes, "
            "ids \"a\\x1b\", 7, ... (103 more)",
        ])

        rc, out, err = self.run_log("stats", path)
        self.assertEqual((rc, err), (0, ""))
        sessions = out.split("\n\n")[1]
        self.assertEqual(sessions, "\n".join([
            "SESSION                               DURATION     MSGS      BYTES ERRORS  SUSP"
            " RESUMES  ENDED",
            "sess-a                                    5.0s        6      300 B      1     3"
            "       1  end-of-run",
            "sess-b                                    0.5s        0        0 B      0     0"
            "       0  crash (SIGSEGV)",
            "sess-c                                    2.0s        0        0 B      0     0"
            "       0  idle-timeout (term, SIGTERM)",
            "sess-d                                    0.5s        0        0 B      0     1"
            "       0  suspended",
            "sess-e                                    1.0s        1       50 B      0     1"
            "       0  (running)",
            "sess-f                                    0.0s        0        0 B      0     0"
            "       0  end-of-run (eof, exit 0)",
            "sess-g                                    0.0s        0        0 B      0     0"
            "       0  eof (exit 0)",
            "sess-h                                    1.0s        0        0 B      0     1"
            "       0  none (no server running)",
        ]))
        self.assertTrue(out.endswith(
            "\n\n35 records, 7 messages (350 B), 1 errors, 8 sessions, 3 methods, "
            "6 suspends, 1 resumes\n"), out)
        # one session: its own counts
        rc, out, _ = self.run_log("stats", "--session", "sess-d", path)
        self.assertTrue(out.endswith(
            "\n\n35 records, 0 messages (0 B), 0 errors, 1 sessions, 0 methods, "
            "1 suspends, 0 resumes\n"), out)

    def test_stdin_and_colour(self):
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        rc, out, _ = self.run_log("show", "--color", "never", stdin=data)
        self.assertEqual(out, self.golden("show.golden"))
        rc, out, _ = self.run_log("show", "--color", "always", "-", stdin=data)
        self.assertIn("\033[31m", out)

    def show_on_a_terminal(self, no_color, *args):
        """`log show ARGS fixed.log` with its stdout on a pseudo-terminal, NO_COLOR set to
        no_color (None: not set): (exit status, what the terminal got)."""
        env = dict(self.env)
        env.pop("NO_COLOR", None)
        if no_color is not None:
            env["NO_COLOR"] = no_color
        master, slave = os.openpty()
        try:
            p = subprocess.Popen([MCPMUX, "log", "show"] + list(args) +
                                 [os.path.join(LOGS, "fixed.log")], stdin=subprocess.DEVNULL,
                                 stdout=slave, stderr=subprocess.DEVNULL, env=env)
            os.close(slave)
            slave = -1
            out = b""
            while True:
                ready, _, _ = select.select([master], [], [], 30)
                self.assertTrue(ready, "log show wrote nothing for 30 s")
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer has closed it
                    break
                if not chunk:
                    break
                out += chunk
            return p.wait(30), out.decode()
        finally:
            if slave != -1:
                os.close(slave)
            os.close(master)

    def test_colour_on_a_terminal_unless_no_color_is_set(self):
        """--color auto: colour on a terminal, none when NO_COLOR is set to anything but
        the empty string (no-color.org), none with --color never."""
        for no_color, args, coloured in ((None, [], True), ("", [], True), ("1", [], False),
                                         ("0", [], False), (None, ["--color", "never"], False),
                                         ("1", ["--color", "always"], True)):
            rc, out = self.show_on_a_terminal(no_color, *args)
            self.assertEqual(rc, 0, (no_color, args))
            self.assertIn("tools/call", out, (no_color, args))
            self.assertEqual("\033[" in out, coloured, (no_color, args, out[:200]))

    @staticmethod
    def follows(pid, path):
        """Whether process pid has the file now at path open."""
        try:
            ino = os.stat(path).st_ino
        except FileNotFoundError:
            return False
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.stat("/proc/%d/fd/%s" % (pid, fd)).st_ino == ino:
                    return True
            except OSError:
                pass
        return False

    def follow(self, path):
        reader = self.start([MCPMUX, "log", "show", "--follow", "--color", "never", path])

        def until(text):
            seen = []
            while True:
                seen.append(reader.line().decode())
                if text in seen[-1]:
                    return seen
        return reader, until

    def test_follow_goes_on_after_a_rotation(self):
        """logrotate renames the log, mcpmux reopens it on SIGUSR1: --follow shows the
        records written to the old file before the signal and to the new one after it,
        each once."""
        log = os.path.join(self.tmp.name, "t.log")
        w = self.wrap(opts=["--log", log])
        w.send(req(1, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        reader, until = self.follow(log)
        lines = until("ping #1")
        for rotation in (1, 2):
            os.rename(log, "%s.%d" % (log, rotation))
            w.send(req(10 * rotation, "ping"))  # into the renamed file
            self.assertEqual(w.msg()["id"], 10 * rotation)
            w.p.send_signal(signal.SIGUSR1)
            w.send(req(10 * rotation + 1, "ping"))  # into the new one
            self.assertEqual(w.msg()["id"], 10 * rotation + 1)
            lines += until("ping #%d" % (10 * rotation + 1))
            # The reader looks at the path every 100 ms: a file renamed away before it
            # looked is one it never sees (two rotations in 100 ms), so the next rotation
            # waits until it follows this one.
            wait_until(lambda: self.follows(reader.pid, log), 10,
                       "the reader to follow the new file")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        lines += until("* ended")
        pings = [l.split("ping #")[1].split()[0] for l in lines if "-> ping #" in l]
        self.assertEqual(pings, ["1", "10", "11", "20", "21"], "".join(lines))
        self.assertIsNone(reader.p.poll())

    def test_follow_reads_what_came_to_the_old_file_before_a_second_rotation(self):
        """A second rotation within the old file's 2 s: what another instance wrote to the
        old file meanwhile is read before that file is let go."""
        src, path = (os.path.join(self.tmp.name, n) for n in ("src.log", "f.log"))
        w = self.wrap(opts=["--log", src])
        for i in range(1, 6):
            w.send(req(i, "ping"))
            self.assertEqual(w.msg()["id"], i)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        with open(src, "rb") as f:
            lines = f.readlines()
        ping = {i: b"".join(l for l in lines if b'"id":%d,' % i in l) for i in range(1, 6)}

        def write(name, data, mode="ab"):
            with open(name, mode) as f:
                f.write(data)
        write(path, ping[1])
        reader, until = self.follow(path)
        seen = until("ping #1")
        os.rename(path, path + ".1")
        write(path, ping[2])
        seen += until("ping #2")  # on the new file, the old one read for 2 s more
        reader.p.send_signal(signal.SIGSTOP)
        try:
            write(path + ".1", ping[3])  # an instance that has not reopened yet
            os.rename(path, path + ".2")
            write(path, ping[4])
        finally:
            reader.p.send_signal(signal.SIGCONT)
        seen += until("ping #4")
        write(path, ping[5])
        seen += until("ping #5")
        pings = [l.split("ping #")[1].split()[0] for l in seen if "-> ping #" in l]
        self.assertEqual(sorted(pings), ["1", "2", "3", "4", "5"], "".join(seen))

    def two_logs(self, *runs):
        """A log a wrap wrote for each run (the ids of its pings), and the path f.log to
        follow, a copy of the first."""
        logs = []
        for n, ids in enumerate(runs):
            logs.append(os.path.join(self.tmp.name, "%d.log" % n))
            w = self.wrap(opts=["--log", logs[-1]])
            for i in ids:
                w.send(req(i, "ping"))
                self.assertEqual(w.msg()["id"], i)
            w.close_stdin()
            self.assertEqual(w.wait(), 0)
        path = os.path.join(self.tmp.name, "f.log")
        shutil.copyfile(logs[0], path)
        return logs[0], logs[1], path

    def test_follow_reads_a_truncated_file_again(self):
        first, second, path = self.two_logs((1, 2), (7,))
        reader, until = self.follow(path)
        until("ping #2")
        with open(path, "r+b") as f, open(second, "rb") as g:
            f.truncate(0)
            f.write(g.read())
        until("ping #7")
        self.assertIn("the file was truncated", reader.stderr())
        self.assertIsNone(reader.p.poll())

    def test_follow_says_a_rotated_file_ends_with_a_cut_line(self):
        """A line of the old file that is never finished is said when the old file is
        given up (quiet for 2 s), not dropped silently."""
        _, second, path = self.two_logs((1,), (7,))
        reader, until = self.follow(path)
        until("ping #1")
        os.rename(path, path + ".1")
        with open(path + ".1", "ab") as f:
            f.write(b'{"ts":"2026-12-05T00:00:00Z","sess')
        shutil.copyfile(second, path)
        until("ping #7")
        wait_until(lambda: "ends with a line cut short" in reader.stderr(), 5,
                   "the cut line to be said")
        self.assertIsNone(reader.p.poll())

    def test_show_ends_when_its_reader_goes(self):
        """show | head: once the reader of its output is gone, show stops (no more of the
        log is read); --follow too, at the next record it would show, instead of following
        the file for ever into a closed pipe.  A write that fails otherwise (a full disk)
        is an error."""
        _, second, path = self.two_logs((1,), (7,))
        reader, until = self.follow(path)
        until("ping #1")
        reader.p.stdout.close()  # | head -n N: the reader has what it wanted
        with open(path, "ab") as f, open(second, "rb") as g:
            f.write(g.read())
        self.assertEqual(reader.wait(), 0, reader.stderr())
        self.assertNotIn("cannot write", reader.stderr())
        with open("/dev/full", "wb") as full:
            p = subprocess.run([MCPMUX, "log", "show", "--follow", path], stdout=full,
                               stderr=subprocess.PIPE, timeout=20, env=self.env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot write the output: No space left on device", p.stderr.decode())

    def test_follow_waits_for_a_log_that_does_not_exist_yet(self):
        """--follow on a FILE not there yet waits for it, as tail -F does (start following,
        then start the client), its directory missing too: said once, then its records
        are shown once it appears.  Without --follow, a missing file is an error."""
        for name in ("f.log", os.path.join("later", "f.log")):
            path = os.path.join(self.tmp.name, name)
            rc, out, err = self.run_log("show", path)
            self.assertEqual((rc, out), (1, ""), name)
            self.assertEqual(err, "mcpmux: cannot open the log '%s': No such file or "
                             "directory\n" % path)
            reader, until = self.follow(path)
            waiting = ("mcpmux: the log '%s' does not exist yet: waiting for it to appear "
                       "(--follow)\n" % path)
            wait_until(lambda: reader.stderr() == waiting, 5, "the reader to say it waits")
            self.assertIsNone(reader.p.poll())
            ready = self.write_records("ready.log", [request(1, "ping"), request(2, "ping")])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.rename(ready, path)
            until("ping #2")
            self.assertEqual(reader.stderr(), waiting + "mcpmux: the log '%s' has appeared: "
                             "following it\n" % path)
            self.assertIsNone(reader.p.poll())
            reader.kill()
        # The reader of its output gone while it waits (| head): the wait ends, exit 0.
        path = os.path.join(self.tmp.name, "never.log")
        reader, _ = self.follow(path)
        wait_until(lambda: "waiting for it to appear" in reader.stderr(), 5,
                   "the reader to say it waits")
        reader.p.stdout.close()
        self.assertEqual(reader.wait(5), 0, reader.stderr())

    def test_follow_ends_when_its_reader_goes_while_the_log_is_idle(self):
        """show --follow | head: the reader of its output gone while the log gets nothing
        more, --follow ends (exit 0, nothing said), as tail -f does, instead of waiting
        for ever for a record to write into the closed pipe."""
        path = self.write_records("f.log", [request(1, "ping")])
        reader, until = self.follow(path)
        until("ping #1")
        reader.p.stdout.close()  # | head -n 1: the reader has what it wanted
        self.assertEqual(reader.wait(5), 0, reader.stderr())
        self.assertEqual(reader.stderr(), "")

    def test_output_waits_for_room_in_a_full_non_blocking_stdout(self):
        """A full non-blocking stdout (a pipe its reader shares with others) is waited on,
        as config's is, where stdio failed on EAGAIN: show and stats print all they
        would."""
        fixed = os.path.join(LOGS, "fixed.log")
        for args, name in ((["show", "--color", "never"], "show.golden"),
                           (["stats"], "stats.golden")):
            rc, out, err = run_on_a_full_stdout([MCPMUX, "log"] + args + [fixed], self.env)
            self.assertEqual(rc, 0, err)
            self.assertNotIn("cannot write", err)
            self.assertEqual(out.decode(), self.golden(name), name)

    def test_a_non_blocking_stdin_is_waited_on(self):
        """A non-blocking stdin (a pipe whose reading end another process made so) that
        has nothing yet is waited on, as a blocking one is, where stdio failed on EAGAIN
        ("read error"): show and stats read the whole log, sent in two parts, the first
        ending in the middle of a line."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        half = data.index(b"\n", len(data) // 2) - 5
        for args, name in ((["show", "--color", "never"], "show.golden"),
                           (["stats"], "stats.golden")):
            r, w = os.pipe()
            try:
                os.set_blocking(r, False)
                os.write(w, data[:half])
                p = subprocess.Popen(WRAPPER + [MCPMUX, "log"] + args + ["-"], stdin=r,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env)
                os.close(r)
                r = -1
                try:
                    wait_until(lambda: polling_one_or_gone(p), 10, "log %s to wait for its stdin" % args[0],
                               lambda: proc_report(p.pid))
                    if p.poll() is None:
                        os.write(w, data[half:])
                    os.close(w)
                    w = -1
                    out, err = p.communicate(timeout=30)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            finally:
                for fd in (r, w):
                    if fd != -1:
                        os.close(fd)
            self.assertEqual(p.returncode, 0, err)
            self.assertNotIn(b"read error", err)
            self.assertEqual(out.decode(), self.golden(name), name)

    def test_follow_on_a_pipe_ends_with_it(self):
        """--follow waits for more of a file; a pipe's end is the end."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        rc, out, _ = self.run_log("show", "--follow", "--color", "never", "-", stdin=data)
        self.assertEqual(rc, 0)
        self.assertEqual(out, self.golden("show.golden"))

    def test_a_file_that_is_not_a_log_fails(self):
        """log show and log stats of a file given by mistake (a config, /etc/passwd), none
        of whose lines is a record: exit 1, said so; an empty log (no traffic yet) is no
        mistake, and one with a bad line among its records still shows them (exit 0)."""
        path = os.path.join(self.tmp.name, "claude.json")
        with open(path, "w") as f:
            f.write('{\n  "mcpServers": {}\n}\n')
        for cmd in ("show", "stats"):
            rc, out, err = self.run_log(cmd, path)
            self.assertEqual(rc, 1, (cmd, err))
            self.assertEqual(err.splitlines()[-1], "mcpmux: %s is not a traffic log: none of "
                             "its 3 lines is a record" % path, (cmd, err))
            rc, out, err = self.run_log(cmd, os.devnull)
            self.assertEqual((rc, err), (0, ""), cmd)
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        rc, out, err = self.run_log("show", "--color", "never", "-", stdin=b"not json\n" + data)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, self.golden("show.golden"))

    def test_a_line_nested_deeper_than_any_record_is_skipped(self):
        """Not a record mcpmux could write (it refuses messages nested deeper than 512):
        skipped like any bad line, without a parse as deep as the line."""
        self.show_deep_on_a_small_stack(b"[" * 300000 + b"]" * 300000 + b"\n")

    def test_empty_lines_are_skipped_without_a_word(self):
        """An empty line is no record and stands for none lost (mcpmux ends a line that a
        killed writer left cut, and may meet one still on its way): show skips it
        without a warning, and shows the log as without it."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        lines = data.splitlines(keepends=True)  # the last one cut short, on purpose
        spaced = b"\n" + b"\n".join(lines[:-1]) + b"\n" + lines[-1]

        def show(text):
            p = subprocess.run([MCPMUX, "log", "show", "--color", "never"], input=text,
                               capture_output=True, timeout=60, env=self.env)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.decode(), p.stderr.decode().splitlines()

        out, err = show(data)
        self.assertEqual(out, self.golden("show.golden"))
        spaced_out, spaced_err = show(spaced)
        self.assertEqual(spaced_out, out)
        self.assertEqual(len(spaced_err), len(err), spaced_err)  # the fixed log's own

    def show_deep_on_a_small_stack(self, deep):
        """log show of the lines deep, then the fixed log, on a stack of 1 MiB (which could
        not free as deep a line): it exits 0, shows the fixed log as ever and skips line 1.
        Its stderr."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()

        def small_stack():
            resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, 1 << 20))
        p = subprocess.run([MCPMUX, "log", "show", "--color", "never"], input=deep + data,
                           capture_output=True, timeout=60, env=self.env,
                           preexec_fn=small_stack)
        rc, out, err = p.returncode, p.stdout.decode(), p.stderr.decode()
        self.assertEqual(rc, 0, err[-500:])
        self.assertEqual(out, self.golden("show.golden"))
        self.assertIn(":1: not a traffic log record: skipped", err)
        return err

    def test_a_line_nested_deeper_behind_a_comment_is_skipped(self):
        """yajl reads a line with comments allowed: brackets and quotes in a comment do
        not count, and a line nested deeper than any record is still skipped when a
        comment holds as many closing brackets as it is deep."""
        n = 300000
        err = self.show_deep_on_a_small_stack(
            b'{"x":/*' + b"]" * n + b'"*/' + b"[" * n + b"]" * n + b"}\n" +
            b'{"x":' + b"[" * n + b"// " + b"]" * n + b"\n")
        self.assertIn(": 2 lines in all were not traffic log records", err)

    def test_the_largest_max_message_reads_every_record(self):
        """--max-message up to its largest value (a record bound past what a size can
        hold) reads the log as without it."""
        fixed = os.path.join(LOGS, "fixed.log")
        for m in ("4611686018427387903", "9223372036854775807"):
            rc, out, err = self.run_log("show", "--color", "never", "--max-message", m, fixed)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, self.golden("show.golden"), m)

    def test_a_line_longer_than_any_record_is_skipped_in_bounded_memory(self):
        """No record of a log written with --max-message 1M is longer than 7 MiB and 128
        KiB (a body that is not JSON is written escaped, up to 6 bytes a byte): a line of
        200 MiB without a newline is read past, never held whole, and counted with the
        lines that are not records; the records after it are read as usual."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        chunk = b"x" * (1 << 20)
        for args, name in ((["show", "--color", "never"], "show.golden"),
                           (["stats"], "stats.golden")):
            with open(os.path.join(self.tmp.name, "out"), "w+b") as out, \
                    open(os.path.join(self.tmp.name, "err"), "w+b") as err:
                # the peak of mcpmux's own process (PeakRss: not of the test process's pages)
                p = PeakRss([MCPMUX, "log"] + args + ["--max-message", "1M"], env,
                            stdin=subprocess.PIPE, stdout=out, stderr=err)
                try:
                    p.stdin.write(b"".join(lines[:2]))
                    for _ in range(200):
                        p.stdin.write(chunk)
                    p.stdin.write(b"\n" + b"".join(lines[2:]))
                    p.stdin.close()
                except BrokenPipeError:
                    pass
                code, peak = p.finish()
                out.seek(0)
                err.seek(0)
                out, err = out.read().decode(), err.read().decode()
            self.assertEqual(code, 0, err[-500:])
            self.assertEqual(out, self.golden(name), name)
            self.assertIn("(stdin):3: a line longer than any record (%d bytes): skipped"
                          % (7 * (1 << 20) + (128 << 10)), err)
            print("log %s past a 200 MiB line: peak RSS %d KiB" % (args[0], peak))
            bound = 32 * 1024 if not os.environ.get("MCPMUX_TEST_SANITIZED") else 128 * 1024
            self.assertLess(peak, bound)

    def test_follow_reads_past_a_line_longer_than_any_record(self):
        """--follow: a line longer than any record, still being written, is read past as
        it comes, and the record after its newline is shown."""
        path = os.path.join(self.tmp.name, "long.log")
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        with open(path, "wb") as f:
            f.write(lines[0] + b"x" * 300000)
        p = self.start([MCPMUX, "log", "show", "--follow", "--color", "never",
                        "--max-message", "64", path], stdin=False)
        first = p.line()
        with open(path, "ab") as f:
            f.write(b"x" * 300000 + b"\n" + lines[1])
        second = p.line()
        golden = self.golden("show.golden").splitlines()
        self.assertEqual([first.decode(), second.decode()], golden[:2])
        self.assertIn(":2: a line longer than any record (%d bytes): skipped"
                      % (7 * 64 + (128 << 10)), p.stderr())
        p.p.terminate()
        self.assertEqual(p.p.wait(timeout=10), -signal.SIGTERM)

    def test_every_bad_line_is_counted(self):
        """The first line that is not a record is named; how many there were in all is
        said at the end."""
        with open(os.path.join(LOGS, "fixed.log"), "rb") as f:
            data = f.read()
        rc, out, err = self.run_log("stats", stdin=b"junk\n" + data + b"junk\njunk\n")
        self.assertEqual(rc, 0)
        self.assertIn(":1: not a traffic log record: skipped", err)
        self.assertIn(": 3 lines in all were not traffic log records (skipped)", err)

    def test_text_of_a_record_is_shown_without_controls_on_one_line(self):
        """What a server or a log put in a record's strings reaches no terminal as a
        control: C0 controls, DEL and C1 controls are shown escaped, a backslash doubled,
        printable UTF-8 as it is, every record one line; a long detail is cut between two
        characters."""
        head = "\x1b[31mred\x1b[0m\nnext\tC1:\u0085 DEL:\x7f \\ \u00e9 "
        shown = r"\x1b[31mred\x1b[0m\nnext\tC1:\u0085 DEL:\x7f \\ " + "\u00e9 "
        pad = 254 - len(shown.encode())
        recs = [
            # a euro sign (3 bytes) that would end past the 255 bytes of a detail: cut
            {"event": "stderr", "text": head + "x" * pad + "\u20ac tail"},
            # an e acute (2 bytes) that ends at the 255th: kept
            {"event": "stderr", "text": head + "x" * (pad - 1) + "\u00e9 tail"},
            {"event": "ended", "reason": "crash\r\x1b[2J", "exit": {"signal": "SIG\x07"},
             "escalation": "none", "ms": 3},
            request("a\nb", "m\x1b]0;t\x07", size=9),
            answer("a\nb", 1.5, size=9),
        ]
        path = self.write_records("ctl.log", recs, session="s\x1b\u0085")
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        sess = "%-8s" % r"s\x1b"  # \u0085 would end past the column's 8 bytes: cut
        self.assertEqual(out.split("\n"), [
            "10:00:00.000 %s    * stderr        %s" % (sess, shown + "x" * pad),
            "10:00:00.000 %s    * stderr        %s" % (sess, shown + "x" * (pad - 1) + "\u00e9"),
            r"10:00:00.000 %s    * ended         crash\r\x1b[2J, SIG\x07, escalation none, 3 ms"
            % sess,
            "10:00:00.000 %s  -> %-40s %10s %10s" % (sess, r'm\x1b]0;t\x07 #"a\nb"', "", "9 B"),
            "10:00:00.000 %s  <- %-40s %10s %10s" % (sess, r'#"a\nb" m\x1b]0;t\x07', "1.5 ms",
                                                      "9 B"),
            ""])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertNotRegex(out, "[\x00-\x09\x0b-\x1f\x7f-\x9f]")
        self.assertIn("\n" + r"m\x1b]0;t\x07" + " " * 19 + "        1", out)
        self.assertIn("\n" + r"s\x1b\u0085" + " " * 26 + "     0.0s", out)
        self.assertIn(r"  crash\r\x1b[2J (SIG\x07)" + "\n", out)

    def test_columns_line_up_in_terminal_cells_under_a_utf8_locale(self):
        """Under a UTF-8 locale the columns of show and stats are counted in terminal
        cells, as column(1) and ls(1) count them: an accented letter takes one, a CJK
        character or an emoji two, a combining accent none; the session's column of 8
        cells is cut before a character that would end past it, never inside one.  Under
        LC_ALL=C they are counted in bytes."""
        recs = [
            dict(request("\u00e91", "r\u00e9sum\u00e9"), session="r\u00e9sum\u00e9-1"),
            dict(answer("\u00e91", 1.5), session="r\u00e9sum\u00e9-1"),
            dict(request("\u4e2d", "\u5de5\u5177/\u8c03\u7528"),
                 session="\u4e2d\u6587\u4f1a\u8bdd" + "abc"),
            dict(answer(7, 2.5), session="abcdefg\u4e2d"),
            dict(request("\U0001f389", "emoji\U0001f600"), session="\U0001f600" * 4 + "x"),
            dict(request(1, "tools/call"), session="cafe\u0301-01"),
            {"event": "r\u00e9veil"},
        ]
        path = self.write_records("cells.log", recs)
        env = dict(self.env, LC_ALL="C.UTF-8")

        def cells(text, n, width):
            """text, which takes n cells, then spaces up to width cells."""
            return text + " " * (width - n)

        rc, out, err = run_log(env, "show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split("\n"), [
            "10:00:00.000 r\u00e9sum\u00e9-1  -> %s %10s %10s"
            % (cells('r\u00e9sum\u00e9 #"\u00e91"', 12, 40), "", "10 B"),
            "10:00:00.000 r\u00e9sum\u00e9-1  <- %s %10s %10s"
            % (cells('#"\u00e91" r\u00e9sum\u00e9', 12, 40), "1.5 ms", "10 B"),
            "10:00:00.000 \u4e2d\u6587\u4f1a\u8bdd  -> %s %10s %10s"
            % (cells('\u5de5\u5177/\u8c03\u7528 #"\u4e2d"', 15, 40), "", "10 B"),
            # the CJK character would end past the 8th cell: cut, and a space instead
            "10:00:00.000 abcdefg   <- %s %10s %10s" % (cells("#7 ", 3, 40), "2.5 ms", "10 B"),
            "10:00:00.000 %s  -> %s %10s %10s"
            % ("\U0001f600" * 4, cells('emoji\U0001f600 #"\U0001f389"', 13, 40), "", "10 B"),
            "10:00:00.000 %s  -> %s %10s %10s"
            % (cells("cafe\u0301-01", 7, 8), cells("tools/call #1", 13, 40), "", "10 B"),
            "10:00:00.000 s1          * %s pid 7" % cells("r\u00e9veil", 6, 13),
            ""])
        rc, out, err = run_log(env, "stats", path)
        self.assertEqual(rc, 0, err)
        rows = out.split("\n")
        for name, n in (("r\u00e9sum\u00e9", 6), ("\u5de5\u5177/\u8c03\u7528", 9),
                        ("emoji\U0001f600", 7), ("tools/call", 10)):
            self.assertTrue(any(r.startswith(cells(name, n, 32) + "        1       0")
                                for r in rows), (name, out))
        for name, n in (("r\u00e9sum\u00e9-1", 8), ("\u4e2d\u6587\u4f1a\u8bdd" + "abc", 11),
                        ("abcdefg\u4e2d", 9), ("\U0001f600" * 4 + "x", 9), ("cafe\u0301-01", 7)):
            self.assertTrue(any(r.startswith(cells(name, n, 36) + "      0.0s") for r in rows),
                            (name, out))
        # LC_ALL=C: bytes, the session's column cut at 8 of them between two characters
        rc, out, err = run_log(dict(self.env, LC_ALL="C"), "show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        what = 'r\u00e9sum\u00e9 #"\u00e91"'
        self.assertEqual(out.split("\n")[0], "10:00:00.000 r\u00e9sum\u00e9  -> %s %10s %10s"
                         % (cells(what, len(what.encode()), 40), "", "10 B"))

    def test_a_nul_in_a_text_is_shown_escaped_with_what_follows(self):
        """A NUL in a record's string (\\u0000 in the log) is shown as \\x00, as other C0
        controls are, and the text after it too: a server's stderr line, an end's reason,
        in show and in stats."""
        recs = [
            {"event": "stderr", "text": "before\x00after \x01 \u00e9\U0001f600\ud800!"},
            {"event": "end-requested", "reason": "asked\x00by client", "id": 3,
             "method": "shutdown"},
            {"event": "ended", "reason": "crash\x00\x00twice", "exit": {"code": 1},
             "escalation": "none", "ms": 3},
        ]
        path = self.write_records("nul.log", recs)
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split("\n"), [
            "10:00:00.000 s1          * stderr        "
            r"before\x00after \x01 " + "\u00e9\U0001f600\ufffd!",
            r"10:00:00.000 s1          * end-requested asked\x00by client",
            r"10:00:00.000 s1          * ended         crash\x00\x00twice, exit 1, "
            "escalation none, 3 ms",
            ""])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertIn(r"  crash\x00\x00twice (exit 1)" + "\n", out)

    def write_records(self, name, recs, session="s1"):
        """A log of recs (dicts, or their members' JSON text as it is), each with a time,
        the session and pid 7 first; its path."""
        path = os.path.join(self.tmp.name, name)
        head = {"ts": "2026-11-24T10:00:00.000100Z", "session": session, "pid": 7}
        with open(path, "w") as f:
            for r in recs:
                if isinstance(r, str):
                    f.write(json.dumps(head)[:-1] + "," + r + "}\n")
                else:
                    f.write(json.dumps(dict(head, **r)) + "\n")
        return path

    def test_an_answer_is_named_by_its_whole_id(self):
        """Ids of 300 characters that differ only in their last: each answer gets the
        method of its own request, in show and stats."""
        a, b = "p" * 299 + "1", "p" * 299 + "2"
        path = self.write_records("long-ids.log", [
            request(a, "first"), request(b, "second"), answer(b, 1.5), answer(a, 2.5),
        ])
        rc, out, err = self.run_log("show", "--color", "never", "--method", "second", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 2, out)
        self.assertIn("<- #\"" + "p" * 28, out.splitlines()[1])
        self.assertIn("1.5 ms", out.splitlines()[1])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nfirst +1 +0 +2\.50 +2\.50 +2\.50 +2\.50\n")
        self.assertRegex(out, r"\nsecond +1 +0 +1\.50 +1\.50 +1\.50 +1\.50\n")
        self.assertNotIn("(unknown)", out)

    def test_an_answer_is_matched_to_its_request_by_the_ids_value(self):
        """An answer under 1.0 (or 1e0) answers the request of id 1, as mcpmux routes it;
        the string "1" does not."""
        path = self.write_records("id-values.log", [
            request(1, "first"), request(20, "second"),
            answer_text('"1"', 0.5), answer_text("1.0", 1.5), answer_text("2e1", 2.5, "error"),
        ])
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual([line[23:50].rstrip() for line in out.splitlines()], [
            "-> first #1", "-> second #20", '<- #"1"', "<- #1.0 first", "<- #2e1 second"])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nfirst +1 +0 +1\.50 ")
        self.assertRegex(out, r"\nsecond +1 +1 +2\.50 ")
        # Two lone surrogates are two ids to mcpmux, though both are shown as U+FFFD.
        path = self.write_records("id-surrogates.log", [
            request_text(r'"\ud800"', '"first"'), request_text(r'"\ud801"', '"second"'),
            answer_text(r'"\ud801"', 2.5), answer_text(r'"\ud800"', 1.5),
        ])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nfirst +1 +0 +1\.50 ")
        self.assertRegex(out, r"\nsecond +1 +0 +2\.50 ")
        self.assertNotIn("(unknown)", out)

    def test_a_nul_in_a_method_or_an_id_is_shown_and_compared_whole(self):
        """A method and a string id with a NUL in them are shown whole, the NUL as \\x00;
        an answer is named by its whole id, --method "a" is not "a\\x00b", and stats
        counts "a\\x00b" and "a\\x00c" apart."""
        path = self.write_records("nul-method.log", [
            request("x\x00y", "a\x00b"), request("x\x00z", "a\x00c"),
            answer("x\x00z", 1.5), answer("x\x00y", 2.5, "error"),
            {"dir": "in", "kind": "notification", "method": "a", "bytes": 10},
        ])
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual([line[23:66].rstrip() for line in out.splitlines()], [
            r'-> a\x00b #"x\x00y"',
            r'-> a\x00c #"x\x00z"',
            r'<- #"x\x00z" a\x00c',
            r'<- #"x\x00y" a\x00b',
            "-> a"])
        rc, out, err = self.run_log("show", "--color", "never", "--method", "a", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 1, out)
        self.assertIn("-> a    ", out)
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\na +1 +0 +- +- +- +-\n")
        self.assertRegex(out, r"\na\\x00b +1 +1 +2\.50 +2\.50 +2\.50 +2\.50\n")
        self.assertRegex(out, r"\na\\x00c +1 +0 +1\.50 +1\.50 +1\.50 +1\.50\n")
        self.assertIn(" 3 methods,", out)

    def test_an_answer_with_a_method_of_its_own_is_named_by_its_request_only(self):
        """A response or error record with a "method" member (not one mcpmux writes) is
        named by the request it answers; with no request in the log, by nothing, its own
        method neither shown nor read past (show and stats)."""
        path = self.write_records("answer-method.log", [
            answer(1, 1.5, method="tools/call/" + "x" * 40),
            request(2, "ping"),
            answer(2, 2.5, "error", method="other"),
        ])
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual([line[23:66].rstrip() for line in out.splitlines()],
                         ["<- #1", "-> ping #2", "<- #2 ping"])
        rc, out, err = self.run_log("show", "--color", "never", "--method", "other", path)
        self.assertEqual((rc, out), (0, ""), err)
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nping +1 +1 +2\.50 +2\.50 +2\.50 +2\.50\n")
        self.assertRegex(out, r"\n\(unknown\) +0 +0 +1\.50 ")

    def test_a_latency_past_the_last_bucket_is_counted_in_it(self):
        """An answer's ms too large for a double (1e999, in a log that is not mcpmux's) or
        past the histogram's last bucket is counted in that bucket: the maximum says what
        it is."""
        path = self.write_records("huge-ms.log", [
            request_text(1, '"m"'), answer_text(1, "1e999"),
            request_text(2, '"n"'), answer_text(2, "1e300", "error"),
        ])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nm +1 +0 +[0-9.]+ +[0-9.]+ +[0-9.]+ +inf\n")
        self.assertRegex(out, r"\nn +1 +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +1000000[0-9]{294}\.00\n")
        self.assertRegex(out, r"\n\(all\) +4 +1 .* inf\n")

    def test_a_size_that_is_none_counts_no_bytes(self):
        """A message's bytes that is negative or past any size (1e999, 1e30: in a log
        that is not mcpmux's) counts nothing in stats' totals, the other sizes as they
        are."""
        path = self.write_records("odd-bytes.log", [
            '"dir":"in","kind":"notification","method":"m","bytes":' + size
            for size in ("10", "-1", "1e999", "1e30", '"12"')])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\ns1 +0\.0s +5 +10 B +0 ")
        self.assertIn("5 records, 5 messages (10 B),", out)

    def test_a_surrogate_escape_not_of_a_pair_is_shown_as_a_replacement_character(self):
        """A UTF-16 surrogate escape that is not one of a pair (a high one followed by
        another escape, or by none; a low one alone) is shown as U+FFFD, and the character
        after it as it is: in a stderr text (with a NUL after it too), a method, an id.
        Bytes of a text that are not UTF-8 (a surrogate's, unescaped) stay bytes."""
        path = self.write_records("surrogates.log", [
            r'"event":"stderr","text":"A\ud800\u0041B"',
            r'"event":"stderr","text":"C\ud800\u0041\u0000D"',
            r'"event":"stderr","text":"E\udc00F\ud800\nG\ud800"',
            r'"event":"stderr","text":"H\ud83d\ude00I"',
            request_text(r'"i\udc00"', r'"m\ud800\u0041"', size=9),
            answer_text(r'"i\udc00"', 1.5, size=9),
        ])
        with open(path, "ab") as f:
            f.write(b'{"ts":"2026-11-24T10:00:00.000100Z","session":"s1","pid":7,'
                    b'"event":"stderr","text":"J\xed\xa0\x80K\\u0000L"}\n')
        rc, out, err = self.run_log("show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual([line[23:66].rstrip() for line in out.splitlines()], [
            "  * stderr        A\ufffdAB",
            "  * stderr        C\ufffdA\\x00D",
            "  * stderr        E\ufffdF\ufffd\\nG\ufffd",
            "  * stderr        H\U0001f600I",
            '-> m\ufffdA #"i\ufffd"',
            '<- #"i\ufffd" m\ufffdA',
            "  * stderr        J\\xed\\xa0\\x80K\\x00L"])
        rc, out, err = self.run_log("stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, "\nm\ufffdA +1 +0 +1\\.50 +1\\.50 +1\\.50 +1\\.50\n")

    def test_a_read_error_fails_the_command(self):
        """A file that cannot be read (here a directory: EISDIR) is said, and the exit
        status says it too: an empty timeline or table is not taken for an empty log."""
        for cmd in ("show", "stats"):
            with self.subTest(cmd=cmd):
                rc, _, err = self.run_log(cmd, self.tmp.name)
                self.assertEqual(rc, 1, err)
                self.assertIn("%s: read error: Is a directory" % self.tmp.name, err)

    def test_a_body_of_many_small_values_takes_no_tree(self):
        """A record's body is never built as a tree: one of 4,000,000 small values (an 8 MB
        line; as a tree, hundreds of MB) is read in about its own size, and the records
        around it are read as usual; nor is a batch's long list of answers."""
        path = os.path.join(self.tmp.name, "wide.log")
        head = ('{"ts":"2026-11-24T10:00:00.%06dZ","session":"s","pid":1,"dir":"%s",'
                '"kind":"%s","id":%d,%s"bytes":%d,"msg":')
        # written in pieces: the test's own memory, which a child starts with, stays small
        piece = ",".join(["0"] * 1000)
        with open(path, "w") as f:
            f.write(head % (1, "in", "request", 1, '"method":"wide",', 40) +
                    '{"jsonrpc":"2.0","id":1,"method":"wide"}}\n')
            f.write(head % (2, "out", "response", 1, '"ms":1.5,', 8_000_000) +
                    '{"jsonrpc":"2.0","id":1,"result":{"v":[' + piece)
            for _ in range(3999):
                f.write("," + piece)
            f.write("]}}}\n")
            # a batch's answers, 400,000 of them (8 MB), the same
            f.write('{"ts":"2026-11-24T10:00:00.000002Z","session":"s","pid":1,'
                    '"dir":"out","kind":"batch","answers":[{"id":0,"ms":1.5}')
            for i in range(1, 400):
                f.write("".join(',{"id":%d,"ms":1.5}' % (i * 1000 + k) for k in range(1000)))
            f.write('],"bytes":9000000}\n')
            f.write(head % (3, "in", "request", 2, '"method":"after",', 41) +
                    '{"jsonrpc":"2.0","id":2,"method":"after"}}\n')
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        for cmd in (["stats"], ["show", "--color", "never"]):
            p = subprocess.Popen([MCPMUX, "log"] + cmd + [path], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err[-500:])
            self.assertNotIn(b"skipped", err)
            out = out.decode()
            self.assertIn("after", out)
            if cmd[0] == "show":
                self.assertEqual(len(out.splitlines()), 4, out)
        # the peak of one run of mcpmux's own (PeakRss: not of the test process's pages)
        p = PeakRss([MCPMUX, "log", "stats", path], env)
        p.stdout.read()
        code, peak = p.finish()
        self.assertEqual(code, 0)
        print("log stats over an 8 MB body of small values: peak RSS %d KiB" % peak)
        bound = 32 * 1024 if not os.environ.get("MCPMUX_TEST_SANITIZED") else 128 * 1024
        self.assertLess(peak, bound)

    def test_a_record_of_many_small_values_elsewhere_is_skipped_without_a_tree(self):
        """Small values in members other than the body and the answers (2,000 members
        "x" of 1,000 each: a 4 MB line; as a tree, hundreds of MB) are more than any
        record mcpmux writes holds: the line is skipped, unparsed, in about its own size.
        A record with a body and answers of up to 4 KiB of small values each is read."""
        path = os.path.join(self.tmp.name, "many.log")
        head = ('{"ts":"2026-11-24T10:00:00.%06dZ","session":"s","pid":1,"dir":"in",'
                '"kind":"%s",%s"bytes":5')
        piece = "[" + ",".join(["0"] * 1000) + "]"
        with open(path, "w") as f:
            f.write(head % (1, "notification", '"method":"wide",'))
            for _ in range(2000):
                f.write(',"x":' + piece)
            f.write("}\n")
            f.write(head % (2, "batch", "") + ',"answers":[' +
                    ",".join('{"id":%d,"ms":1}' % i for i in range(250)) + '],"msg":[' +
                    ",".join(["0"] * 2000) + "]}\n")
            f.write(head % (3, "notification", '"method":"after",') + "}\n")
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        p = PeakRss([MCPMUX, "log", "stats", path], env, stderr=subprocess.DEVNULL)
        p.stdout.read()
        code, peak = p.finish()
        self.assertEqual(code, 0)
        print("log stats over a line of 2,000,000 small values: peak RSS %d KiB" % peak)
        bound = 32 * 1024 if not os.environ.get("MCPMUX_TEST_SANITIZED") else 128 * 1024
        self.assertLess(peak, bound)
        p = subprocess.Popen([MCPMUX, "log", "show", "--color", "never", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err[-500:])
        self.assertEqual([line[23:66].rstrip() for line in out.decode().splitlines()],
                         ["-> [batch]", "-> after"])
        self.assertIn(b":1: not a traffic log record: skipped", err)
        self.assertNotIn(b"in all", err)

    def test_a_sessions_requests_wait_no_more_once_it_ended(self):
        """The requests a session left unanswered wait no more once its `ended` record
        comes: sessions that together left more than the bound of requests waiting
        (MCPMUX_LOG_WAITING_MAX, for the test, in place of 1,000,000) leave room for a later
        session's, whose answer still has its method and latency.  Past the bound, stderr
        says once that later answers are shown without them."""
        head = '{"ts":"2026-11-24T10:00:00.000100Z","session":"%s","pid":7,'
        req_line = head + '"dir":"in","kind":"request","id":%d,"method":"%s","bytes":10}\n'
        ans_line = head + '"dir":"out","kind":"response","id":%d,"ms":2.5,"bytes":10}\n'
        end_line = head + ('"event":"ended","exit":{"code":0},"escalation":"eof","ms":1,'
                           '"reason":"end-of-run"}\n')
        env = dict(self.env, MCPMUX_LOG_WAITING_MAX="100")

        def write(name, sessions, left, ended):
            """sessions that each leave `left` requests unanswered (then end, if ended),
            then session "late"'s request 1 and its answer."""
            path = os.path.join(self.tmp.name, name)
            with open(path, "w") as f:
                for s in range(sessions):
                    f.writelines(req_line % ("s%d" % s, i, "left") for i in range(left))
                    if ended:
                        f.write(end_line % ("s%d" % s))
                f.write(req_line % ("late", 1, "late"))
                f.write(ans_line % ("late", 1))
            return path

        full = "more than 100 requests wait for their answer"
        path = write("ended.log", 10, 50, True)
        rc, out, err = run_log(env, "stats", path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nlate +1 +0 +2\.50 +2\.50 +2\.50 +2\.50\n")
        self.assertNotIn(full, err)
        rc, out, err = run_log(env, "show", "--color", "never", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("<- #1 late", out.splitlines()[-1])
        self.assertNotIn(full, err)
        # One session past the bound: said once; the late answer is no method's, unless
        # that session ended before it.
        for ended in (False, True):
            with self.subTest(ended=ended):
                path = write("full.log", 1, 150, ended)
                rc, out, err = run_log(env, "stats", path)
                self.assertEqual(rc, 0, err)
                self.assertEqual(err.count(full), 1, err)
                if ended:
                    self.assertRegex(out, r"\nlate +1 +0 +2\.50 ")
                else:
                    self.assertRegex(out, r"\nlate +1 +0 +- ")

    def test_the_waiting_bound_for_tests_is_said_and_read_strictly(self):
        """MCPMUX_LOG_WAITING_MAX, a setting for tests, is said on stderr when it lowers
        the bound; one that is not digits alone from 1 to 1,000,000 (a sign, a space, 0,
        too large, however large) is said to be ignored, and the bound stays 1,000,000."""
        head = '{"ts":"2026-11-24T10:00:00.000100Z","session":"s","pid":7,'
        path = os.path.join(self.tmp.name, "t.log")
        with open(path, "w") as f:
            for i in range(10):
                f.write(head + '"dir":"in","kind":"request","id":%d,"method":"m",'
                        '"bytes":10}\n' % i)
            f.write(head + '"dir":"out","kind":"response","id":9,"ms":2.5,"bytes":10}\n')
        rc, out, err = run_log(dict(self.env, MCPMUX_LOG_WAITING_MAX="5"), "stats", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("MCPMUX_LOG_WAITING_MAX=5 (a setting for tests)", err)
        self.assertIn("more than 5 requests wait for their answer", err)
        self.assertRegex(out, r"\nm +10 +0 +- ")  # answer 9's request was not kept
        for bad in (" 5", "5 ", "+5", "-5", "-18446744073709551611", "0", "abc", "5x",
                    "1000001", "18446744073709551621", "9" * 40):
            with self.subTest(value=bad):
                rc, out, err = run_log(dict(self.env, MCPMUX_LOG_WAITING_MAX=bad), "stats",
                                       path)
                self.assertEqual(rc, 0, err)
                self.assertEqual(err, "mcpmux: MCPMUX_LOG_WAITING_MAX (a setting for "
                                 "tests) is not a number from 1 to 1000000: ignored\n")
                self.assertRegex(out, r"\nm +10 +0 +2\.50 ")
        rc, out, err = run_log(self.env, "stats", path)
        self.assertEqual((rc, err), (0, ""))
        self.assertRegex(out, r"\nm +10 +0 +2\.50 ")

    def test_million_lines_bounded_memory(self):
        path = os.path.join(self.tmp.name, "big.log")
        line = ('{"ts":"2026-11-24T10:00:00.%06dZ","session":"s%d","pid":1,"dir":"%s",'
                '"kind":"%s","id":%d,%s"bytes":60,"msg":{"jsonrpc":"2.0","id":%d}}\n')
        with open(path, "w") as f:
            for i in range(500_000):
                f.write(line % (i % 1000000, i % 100, "in", "request", i,
                                '"method":"m%d",' % (i % 7), i))
                f.write(line % (i % 1000000, i % 100, "out", "response", i, '"ms":1.5,', i))
        # The peak RSS of mcpmux's own process (PeakRss: not of the test process's pages;
        # a sanitizer's quarantine of freed memory is kept small so that what is measured
        # is mcpmux's own use)
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
        p = PeakRss([MCPMUX, "log", "stats", path], env)
        out = p.stdout.read().decode()
        code, peak = p.finish()
        self.assertEqual(code, 0)
        self.assertIn("1000000 messages", out)
        self.assertIn("m6 ", out)
        print("log stats over 1,000,000 lines: peak RSS %d KiB" % peak)
        bound = 32 * 1024 if not os.environ.get("MCPMUX_TEST_SANITIZED") else 128 * 1024
        self.assertLess(peak, bound)
        # show, likewise: one line out per record, memory bounded
        p = PeakRss([MCPMUX, "log", "show", "--color", "never", path], env)
        lines = sum(1 for _ in p.stdout)
        code, peak = p.finish()
        self.assertEqual(code, 0)
        self.assertEqual(lines, 1_000_000)
        print("log show over 1,000,000 lines: peak RSS %d KiB" % peak)
        self.assertLess(peak, bound)


if __name__ == "__main__":
    main()
