"""Clients that never end their runs: --idle-suspend, the handshake replay, --max-servers.

Each test drives mcpmux against the fixture server and asserts what the client gets (bytes,
ids, errors), which server processes exist, and what the traffic log says."""

import ctypes
import fcntl
import json
import os
import random
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import time
import unittest

from mcptest import (FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, Case, alive, call, comm, deadline,
                     encode, fd_links, initialize, keeper_of, main, note, req, rss_anon_kib,
                     wait_until)
from test_hardening import Writer, wait_stalled
from test_serve import Mux

FAST = ["--eof-grace", "300", "--term-grace", "300"]
SUSPEND = ["--idle-suspend", "0.4"]
LAST_PID = "/proc/sys/kernel/ns_last_pid"
END = note("mcpmux/endRun")


def structured(m):
    assert "result" in m, m
    return m["result"]["structuredContent"]


def log_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def events(path, name):
    return [r for r in log_records(path) if r.get("event") == name]


class Base(Case):
    def servers(self):
        """The test's live server processes (the fixture; not mcpmux, not its keeper)."""
        return [p for p in self.tagged() if comm(p) == "mcp-fixture" and alive(p)]

    def setup_session(self, send, recv, level="warning"):
        """initialize, initialized, a log level and subscriptions: what a replay must carry."""
        send(initialize(1))
        self.assert_response(recv(), 1)
        send(note("notifications/initialized"))
        send(req(2, "logging/setLevel", {"level": level}))
        send(req(3, "resources/subscribe", {"uri": "fixture://a"}))
        send(req(4, "resources/subscribe", {"uri": "fixture://b"}))
        send(req(5, "resources/unsubscribe", {"uri": "fixture://a"}))
        for i in (2, 3, 4, 5):
            self.assert_response(recv(), i)

    def pid_of(self, send, recv, id_):
        send(call(id_, "env"))
        m = recv()
        self.assertEqual(m.get("id"), id_, m)
        return structured(m)["pid"]

    def fresh_handshake(self, p, pid1, id_):
        """Once the server pid1 is suspended, what the fresh server a call starts was told
        (the fixture's handshake tool)."""
        self.wait_suspended(pid1, log=self.log)
        p.send(call(id_, "handshake"))
        m = p.msg()
        self.assertEqual(m.get("id"), id_, m)
        hs = structured(m)
        self.assertNotEqual(hs["pid"], pid1)
        return hs

    def wait_suspended(self, pid, what="the idle server to be suspended", log=None, n=1):
        """The server is gone; with a traffic log, also until mcpmux recorded the n-th
        suspend (the reap comes first, then the teardown's end)."""
        wait_until(lambda: not alive(pid) and not self.servers(), 10, what)
        if log is not None:
            wait_until(lambda: len(events(log, "suspended")) >= n, 5, what + " (logged)")


class WrapSuspend(Base):
    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.tmp.name, "traffic.log")

    def start_wrap(self, *fixture_args, opts=()):
        return self.wrap("--strict-handshake", *fixture_args,
                         opts=FAST + SUSPEND + ["--log", self.log] + list(opts))

    def test_the_fresh_servers_own_request_during_the_replay(self):
        """A fresh server that asks the client for its roots when it hears
        notifications/initialized, and answers nothing until it has them: its request
        reaches the client during the replay, the client's answer reaches the server
        though the client's other messages are held, and the replay then ends and the held
        call is answered.  Notifications it sends during the replay reach the client."""
        p = self.start_wrap("--roots-first", "--flood=2")
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        got = [p.msg() for _ in range(3)]  # the two notifications, the request
        ask = [m for m in got if m.get("method") == "roots/list"][0]
        self.assertEqual([m["method"] for m in got if "id" not in m],
                         ["notifications/message"] * 2)
        p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}})
        # a request the replay sends after notifications/initialized: the fresh server
        # answers it only once it has its roots
        p.send(req(4, "logging/setLevel", {"level": "info"}))
        self.assert_response(p.msg(), 4)
        pid1 = self.pid_of(p.send, p.msg, 2)
        wait_until(lambda: not alive(pid1), 10, "the suspended server to be gone")
        p.send(call(3, "handshake"))
        got = [p.msg() for _ in range(3)]  # the fresh server's notifications and request
        ask2 = [m for m in got if m.get("method") == "roots/list"][0]
        self.assertNotEqual(ask2["id"], "mcpmux-replay-1")
        self.assertEqual([m["method"] for m in got if "id" not in m],
                         ["notifications/message"] * 2)
        p.send({"jsonrpc": "2.0", "id": ask2["id"], "result": {"roots": []}})
        m = p.msg()
        self.assertEqual(m.get("id"), 3, m)
        hs = structured(m)
        self.assertNotEqual(hs["pid"], pid1)
        self.assertEqual(hs["rootsAnswers"], 1)
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["level"], "info")
        self.assertEqual(len(events(self.log, "resumed")), 1)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    # asks the client for its roots at notifications/initialized, and answers no request
    # until it has them (the answer alone or in a batch)
    ROOTS_FIRST = (
        "import json, os, sys\n"
        "waiting, held = False, []\n"
        "def out(m):\n"
        "    print(json.dumps(m), flush=True)\n"
        "def handle(e):\n"
        "    global waiting\n"
        "    if waiting and 'method' in e and 'id' in e:\n"
        "        held.append(e)\n"
        "    elif e.get('method') == 'initialize':\n"
        "        out({'jsonrpc': '2.0', 'id': e['id'], 'result': {\n"
        "            'protocolVersion': e['params']['protocolVersion'],\n"
        "            'capabilities': {}, 'serverInfo': {'name': 'r', 'version': '1'}}})\n"
        "    elif e.get('method') == 'notifications/initialized':\n"
        "        waiting = True\n"
        "        out({'jsonrpc': '2.0', 'id': 'roots', 'method': 'roots/list'})\n"
        "    elif waiting and e.get('id') == 'roots' and 'result' in e:\n"
        "        waiting = False\n"
        "        for h in held:\n"
        "            handle(h)\n"
        "        del held[:]\n"
        "    elif 'method' in e and 'id' in e:\n"
        "        out({'jsonrpc': '2.0', 'id': e['id'], 'result': {'pid': os.getpid()}})\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    for e in (m if isinstance(m, list) else [m]):\n"
        "        handle(e)\n")

    def test_the_fresh_servers_own_request_answered_in_a_batch_during_the_replay(self):
        """The client answers the fresh server's roots/list in a batch during the replay:
        the batch reaches the server as a lone answer would, the server then answers the
        replayed requests, and the held request is answered (no resume-failed at the
        replay's deadline)."""
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log, "--stall-timeout", "3"],
                      command=[sys.executable, "-c", self.ROOTS_FIRST])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        ask = p.msg()
        self.assertEqual(ask.get("method"), "roots/list", ask)
        p.send([{"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}}])
        # replayed after notifications/initialized: answered only once the roots are
        p.send(req(2, "logging/setLevel", {"level": "info"}))
        pid1 = self.assert_response(p.msg(), 2)["pid"]
        self.wait_suspended(pid1, log=self.log)
        p.send(req(3, "tools/list"))
        ask = p.msg()
        self.assertEqual(ask.get("method"), "roots/list", ask)
        p.send([{"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}}])
        pid2 = self.assert_response(p.msg(), 3)["pid"]
        self.assertNotEqual(pid2, pid1)
        wait_until(lambda: events(self.log, "resumed"), 5, "resumed logged")
        self.assertEqual(events(self.log, "resume-failed"), [])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_answers_in_a_batch_during_the_replay_reach_the_fresh_server_if_its_own(self):
        """During the replay the client sends a batch of an answer to a request of the
        server that is gone (no request of the fresh server has its id) and a notification:
        the batch is held, and the fresh server gets it without that answer, which is
        dropped with a warning, as is such an answer alone.  The answer to the fresh
        server's own roots/list, in a batch with a notification, goes on to it at once (it
        waits for it to answer the replay), and the notification is held."""
        p = self.start_wrap("--roots-first", opts=["--stall-timeout", "5"])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        ask = p.msg()
        self.assertEqual(ask.get("method"), "roots/list", ask)
        p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": []}})
        p.send(req(2, "logging/setLevel", {"level": "info"}))
        self.assert_response(p.msg(), 2)
        pid1 = self.pid_of(p.send, p.msg, 3)
        self.wait_suspended(pid1, log=self.log)
        p.send(call(4, "handshake"))
        ask2 = p.msg()  # the fresh server's, during the replay: it waits for the answer
        self.assertEqual(ask2.get("method"), "roots/list", ask2)
        p.send([{"jsonrpc": "2.0", "id": "old-" + ask["id"], "result": {"roots": []}},
                note("notifications/roots/list_changed")])
        p.send({"jsonrpc": "2.0", "id": "old2-" + ask["id"], "result": {"roots": []}})
        p.send([{"jsonrpc": "2.0", "id": ask2["id"], "result": {"roots": []}},
                note("notifications/roots/list_changed")])
        m = p.msg()
        self.assertEqual(m.get("id"), 4, m)
        self.assertNotEqual(structured(m)["pid"], pid1)
        p.send(call(5, "handshake"))
        m = p.msg()
        self.assertEqual(m.get("id"), 5, m)
        self.assertEqual(structured(m)["answersSeen"], 1, m)  # its own roots/list's
        self.assertEqual(events(self.log, "resume-failed"), [])
        self.assertIn("1 answers in a batch for a server that was suspended: dropped",
                      p.stderr())
        self.assertIn("an answer for a server that was suspended: dropped", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_resume_replays_the_handshake_to_a_fresh_server(self):
        p = self.start_wrap()
        self.setup_session(p.send, p.msg)
        p.send(call(6, "spawn", count=2))
        children = [int(x) for x in p.msg()["result"]["content"][0]["text"].split()]
        self.assertEqual(len(children), 2)
        pid1 = self.pid_of(p.send, p.msg, 7)
        # idle: the server and its whole tree go; mcpmux and the client stay
        wait_until(lambda: not alive(pid1) and not any(alive(c) for c in children), 10,
                   "the suspended server's tree to be gone")
        self.assertIsNone(p.p.poll())
        self.assertEqual(self.servers(), [])
        # the next call starts a fresh server that heard the whole handshake first
        p.send(call(8, "handshake"))
        m = p.msg()
        self.assertEqual(m.get("id"), 8, m)  # nothing of the replay reached the client
        hs = structured(m)
        self.assertNotEqual(hs["pid"], pid1)
        self.assertTrue(hs["initializeSeen"])
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["firstMethod"], "initialize")
        self.assertEqual(hs["clientName"], "mcptest")
        self.assertEqual(hs["protocolVersion"], "2025-06-18")
        self.assertEqual(hs["level"], "warning")
        self.assertEqual(hs["subscriptions"], ["fixture://b"])
        # subscriptions hold on the fresh server: updates come
        p.send(call(9, "notify", uri="fixture://b"))
        got = [p.msg(), p.msg()]
        self.assertIn({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                       "params": {"uri": "fixture://b"}}, got)
        self.assertEqual(sorted(m.get("id", -1) for m in got), [-1, 9])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        sus = events(self.log, "suspended")
        self.assertEqual([(e["reason"], e["pid"]) for e in sus], [("idle", pid1)])
        res = events(self.log, "resumed")
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0]["pid"], hs["pid"])
        self.assertGreater(res[0]["ms"], 0)
        ended = events(self.log, "ended")
        self.assertEqual([e["reason"] for e in ended], ["client-eof"])

    def test_an_initialize_under_a_long_id_is_replayed(self):
        """The client's initialize under a string id of 200 bytes (and its answer under it)
        is recorded as one under a short id is: the fresh server hears it, and the
        client's call is not refused as sent before initialize."""
        p = self.start_wrap()
        long_id = "initialize-" + "x" * 200
        p.send(initialize(long_id))
        self.assert_response(p.msg(), long_id)
        p.send(note("notifications/initialized"))
        pid1 = self.pid_of(p.send, p.msg, 2)
        hs = self.fresh_handshake(p, pid1, 3)
        self.assertTrue(hs["initializeSeen"])
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["firstMethod"], "initialize")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(len(events(self.log, "resumed")), 1)

    def wrap_suspending(self, eof_grace_ms):
        """wrap, initialized, its idle server's suspend begun: a teardown that waits
        --eof-grace (eof_grace_ms), long enough to be seen, since the server ignores EOF."""
        p = self.wrap("--ignore-eof", opts=["--eof-grace", str(eof_grace_ms), "--term-grace",
                                            "300", "-v", "--log", self.log] + SUSPEND)
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        wait_until(lambda: "teardown begins" in p.stderr(), 5, "the suspend to begin")
        return p

    def test_held_notifications_alone_do_not_hold_the_next_run_back(self):
        """An end of run while the suspend's teardown goes on (its server ignores EOF,
        3 s of --eof-grace) holding only a notification: the ended run owes the client
        nothing, and the next run answers at once, not after the teardown."""
        p = self.wrap_suspending(3000)
        t0 = time.monotonic()
        p.send(note("notifications/roots/list_changed"), END, initialize(7))
        self.assert_response(p.msg(10), 7)
        self.assertLess(time.monotonic() - t0, 2.0, "the next run waited for the teardown")
        p.close_stdin()
        self.assertEqual(p.wait(), 128 + signal.SIGTERM)  # its server too ignores EOF

    def test_a_held_requests_error_comes_before_the_next_runs_answers(self):
        """A request held while the server is being suspended, then an end-of-run sent as
        a notification (no result owed) and a request of the next run under the same id:
        the ended run's error for the held one comes first, then the next run's answer,
        as for a request in flight when a run ends (a client that restarts its ids at 1
        takes the first answer under an id for its new request)."""
        p = self.wrap_suspending(1500)
        p.send(call(2, "echo", text="held"), END, call(2, "echo", text="next run"))
        err = self.assert_error(p.msg(10), 2, -32000)
        self.assertIn("the run ended before the server was restarted", err["message"])
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "next run")
        p.close_stdin()
        self.assertEqual(p.wait(), 143)  # the next run's server ignores its EOF: SIGTERM
        self.assert_no_leftovers()

    def test_the_server_is_suspended_again_and_again(self):
        p = self.start_wrap()
        self.setup_session(p.send, p.msg)
        pids = []
        for i in range(3):
            pid = self.pid_of(p.send, p.msg, 10 + i)
            self.assertNotIn(pid, pids)
            pids.append(pid)
            self.wait_suspended(pid, log=self.log, n=i + 1)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(len(events(self.log, "suspended")), 3)
        self.assertEqual(len(events(self.log, "resumed")), 2)

    def test_a_request_in_flight_is_never_suspended(self):
        p = self.start_wrap()
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        p.send(call(7, "sleep", ms=1500))  # well past --idle-suspend
        self.assert_response(p.msg(), 7)
        self.assertEqual(self.pid_of(p.send, p.msg, 8), pid)
        self.assertEqual(events(self.log, "suspended"), [])

    def test_a_server_request_in_flight_is_never_suspended(self):
        p = self.start_wrap()
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        p.send(call(7, "ask"))
        ask = p.msg()
        self.assertEqual(ask.get("method"), "sampling/createMessage", ask)
        p.no_output(1.2)  # the server waits for its answer, unsuspended
        self.assertTrue(alive(pid))
        p.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant",
                "content": {"type": "text", "text": "late"}, "model": "m"}})
        self.assert_response(p.msg(), 7)
        self.assertEqual(self.pid_of(p.send, p.msg, 8), pid)

    # asks the client in one batch when told to ("go"), and says when both are answered
    ASKS_IN_A_BATCH = (
        "import json, os, sys\n"
        "waiting = set()\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    for e in (m if isinstance(m, list) else [m]):\n"
        "        if e.get('method') == 'initialize':\n"
        "            out = {'jsonrpc': '2.0', 'id': e['id'], 'result': {\n"
        "                'protocolVersion': e['params']['protocolVersion'],\n"
        "                'capabilities': {}, 'serverInfo': {'name': 'b', 'version': '1'}}}\n"
        "        elif e.get('method') == 'go':\n"
        "            waiting = {'s1', 's2'}\n"
        "            out = [{'jsonrpc': '2.0', 'id': i, 'method': 'roots/list',\n"
        "                    'params': {'pid': os.getpid()}} for i in sorted(waiting)]\n"
        "        elif e.get('id') in waiting and 'result' in e:\n"
        "            waiting.discard(e['id'])\n"
        "            if waiting:\n"
        "                continue\n"
        "            out = {'jsonrpc': '2.0', 'method': 'answered',\n"
        "                   'params': {'pid': os.getpid()}}\n"
        "        else:\n"
        "            continue\n"
        "        print(json.dumps(out), flush=True)\n")

    def test_server_requests_in_a_batch_are_in_flight(self):
        """A server that asks the client in a batch waits for the answers: it is not
        suspended meanwhile, and once the client has answered them (here in a batch too)
        it is idle again."""
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log],
                      command=[sys.executable, "-c", self.ASKS_IN_A_BATCH])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("go"))
        asks = p.msg()
        self.assertEqual([a["id"] for a in asks], ["s1", "s2"], asks)
        pid = asks[0]["params"]["pid"]
        p.no_output(1.2)  # the server waits for its answers, unsuspended
        self.assertTrue(alive(pid))
        self.assertEqual(events(self.log, "suspended"), [])
        p.send([{"jsonrpc": "2.0", "id": a["id"], "result": {"roots": []}} for a in asks])
        done = p.msg()
        self.assertEqual((done.get("method"), done["params"]["pid"]), ("answered", pid), done)
        wait_until(lambda: not alive(pid), 10, "the idle server to be suspended")
        wait_until(lambda: len(events(self.log, "suspended")) == 1, 5, "the suspend, logged")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_answers_for_a_suspended_server_start_none(self):
        """The client answers requests of a server that was suspended, alone and in a
        batch: nobody waits for them, each is dropped with a warning, and no server starts
        for them (a fresh one would get answers to requests it never sent); the next
        request resumes the session."""
        p = self.start_wrap(opts=["-v"])
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid, log=self.log)
        answer = {"jsonrpc": "2.0", "id": "s1", "result": {"roots": []}}
        p.send(answer)
        p.send([answer, {"jsonrpc": "2.0", "id": "s2", "error": {"code": -1,
                                                                 "message": "no"}}])
        wait_until(lambda: "a batch of 2 answers for a server that was suspended: dropped"
                   in p.stderr(), 5, "the batch's warning")
        self.assertIn("an answer for a server that was suspended: dropped", p.stderr())
        self.assertEqual(self.servers(), [])
        self.assertNotIn("resuming", p.stderr())
        self.assertEqual(events(self.log, "resumed"), [])
        p.send(call(7, "handshake"))
        m = p.msg()
        self.assertEqual(m.get("id"), 7, m)  # nothing else reached the client
        self.assertNotEqual(structured(m)["pid"], pid)
        self.assertEqual(len(events(self.log, "resumed")), 1)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_answers_in_a_batch_with_a_notification_reach_no_fresh_server(self):
        """A batch for a suspended session that holds the client's answers to requests of
        the server that is gone besides a notification: the notification wakes the session
        and goes to the fresh server, the answers do not (it never sent their requests):
        they are dropped with a warning, as a batch of answers alone is."""
        p = self.start_wrap(opts=["-v"])
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid, log=self.log)
        p.send([{"jsonrpc": "2.0", "id": "s1", "result": {"roots": []}},
                note("notifications/roots/list_changed"),
                {"jsonrpc": "2.0", "id": "s2", "error": {"code": -1, "message": "no"}}])
        wait_until(lambda: events(self.log, "resumed"), 10, "the resume")
        p.send(call(7, "handshake"))
        m = p.msg()
        self.assertEqual(m.get("id"), 7, m)  # nothing else reached the client
        self.assertNotEqual(structured(m)["pid"], pid)
        self.assertEqual(structured(m)["answersSeen"], 0, m)
        self.assertIn("2 answers in a batch for a server that was suspended: dropped",
                      p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_message_the_server_is_still_writing_is_not_cut_off(self):
        """A server writes a long notification slowly, in pieces, for longer than
        --idle-suspend: it is not suspended partway (which cut the line off, lost), the
        notification reaches the client whole, and the server is suspended after it."""
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log],
                      command=[sys.executable, "-c", self.PIECES,
                               os.path.join(self.tmp.name, "began"), "0.15"])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("go"))
        m = p.msg()
        self.assertEqual((m.get("method"), m["params"]["data"]), ("slow", "x" * 8000))
        wait_until(lambda: events(self.log, "suspended"), 5, "the suspend after the line")
        self.assertNotIn("not JSON-RPC", p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_a_message_over_max_message_still_being_written_is_not_cut_off(self):
        """The same line over --max-message: it is read to its end (and refused as too
        large, said on stderr) before the server is suspended."""
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log, "--max-message", "4096"],
                      command=[sys.executable, "-c", self.PIECES,
                               os.path.join(self.tmp.name, "began"), "0.15"])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("go"))
        wait_until(lambda: events(self.log, "suspended"), 5, "the suspend after the line")
        self.assertIn("the server's message too large", p.stderr())
        # suspended once the line was written whole: it ended at its stdin's EOF, not
        # killed partway through its writes
        self.assertEqual(events(self.log, "suspended")[0]["escalation"], "eof")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    # at "go", writes a notification of 8 KB in pieces, argv[2] seconds apart, making the
    # file argv[1] once the first is written; argv[2] negative: the first piece only, the
    # line never ended (a prompt with no newline)
    PIECES = (
        "import json, sys, time\n"
        "began, pause = sys.argv[1], float(sys.argv[2])\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    if m.get('method') == 'initialize':\n"
        "        print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'result': {\n"
        "            'protocolVersion': m['params']['protocolVersion'],\n"
        "            'capabilities': {}, 'serverInfo': {'name': 's', 'version': '1'}}}),\n"
        "              flush=True)\n"
        "    elif m.get('method') == 'go':\n"
        "        text = json.dumps({'jsonrpc': '2.0', 'method': 'slow',\n"
        "                           'params': {'data': 'x' * 8000}}) + '\\n'\n"
        "        pieces = [text[i:i + 1000] for i in range(0, len(text), 1000)]\n"
        "        for i, piece in enumerate(pieces[:1] if pause < 0 else pieces):\n"
        "            time.sleep(pause if i > 0 else 0)\n"
        "            sys.stdout.write(piece)\n"
        "            sys.stdout.flush()\n"
        "            if i == 0:\n"
        "                open(began, 'w').close()\n")

    def test_a_line_the_server_never_ends_holds_no_suspend_off(self):
        """A server writes the beginning of a line and no more (a prompt with no newline):
        that line holds the suspend off only while it grows, and the server is suspended
        all the same (it was never suspended, its timer looked again for ever)."""
        began = os.path.join(self.tmp.name, "began")
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log],
                      command=[sys.executable, "-c", self.PIECES, began, "-1"])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("go"))
        wait_until(lambda: os.path.exists(began), 5, "the line to begin")
        wait_until(lambda: events(self.log, "suspended"), 5, "the suspend")
        self.assertEqual(events(self.log, "suspended")[0]["escalation"], "eof")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_idle_timeout_still_ends_everything(self):
        p = self.start_wrap(opts=["--idle-timeout", "1.5"])
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid)
        self.assertIsNone(p.p.poll())  # suspended, still there
        self.assertEqual(p.wait(10), 0)  # then the idle timeout ends mcpmux
        self.assert_no_leftovers()
        self.assertEqual([e["reason"] for e in events(self.log, "ended")], ["idle-timeout"])

    def test_end_of_run_while_suspended(self):
        p = self.start_wrap()
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid, log=self.log)
        p.send(req(7, "mcpmux/endRun"))
        r = self.assert_response(p.msg(), 7)
        self.assertEqual((r["pid"], r["exit"], r["escalation"]), (None, None, "none"))
        # the next run hears the handshake too
        p.send(call(8, "handshake"))
        hs = structured(p.msg())
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["firstMethod"], "initialize")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual([e["reason"] for e in events(self.log, "ended")],
                         ["end-of-run", "client-eof"])

    def test_the_replayed_initialize_answered_in_a_batch(self):
        """A fresh server that answers the replayed initialize inside a batch, after a
        notification: the notification reaches the client, the answer does not, and the
        replay goes on (the held call is answered)."""
        behave = os.path.join(self.tmp.name, "behave")
        p = self.wrap(opts=FAST + SUSPEND + ["--log", self.log],
                      command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(p.send, p.msg)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=self.log)
        with open(behave, "w") as f:
            f.write("init-batch\n")
        p.send(call(7, "handshake"))
        m = p.msg(10)
        self.assertEqual((m.get("method"), m.get("params", {}).get("data")),
                         ("notifications/message", "batched"), m)
        m = p.msg(10)
        self.assertEqual(m.get("id"), 7, m)
        hs = structured(m)
        self.assertEqual((hs["initializeSeen"], hs["initialized"], hs["level"]),
                         (True, True, "warning"))
        wait_until(lambda: events(self.log, "resumed"), 5, "resumed logged")
        self.assertEqual(events(self.log, "resume-failed"), [])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(p.read_to_eof(), b"")
        self.assert_no_leftovers()

    def test_a_set_up_sent_in_a_batch_is_replayed(self):
        """notifications/initialized, logging/setLevel and the subscriptions sent in a
        batch are replayed to a fresh server as if each had come alone."""
        p = self.start_wrap()
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send([note("notifications/initialized"),
                req(2, "logging/setLevel", {"level": "debug"}),
                req(3, "resources/subscribe", {"uri": "fixture://a"}),
                req(4, "resources/subscribe", {"uri": "fixture://b"}),
                req(5, "resources/unsubscribe", {"uri": "fixture://a"})])
        answers = p.msg()
        self.assertEqual(sorted(m.get("id") for m in answers), [2, 3, 4, 5], answers)
        hs = self.fresh_handshake(p, self.pid_of(p.send, p.msg, 6), 7)
        self.assertEqual((hs["firstMethod"], hs["initialized"], hs["level"], hs["subscriptions"]),
                         ("initialize", True, "debug", ["fixture://b"]))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_a_set_up_the_client_cancelled_is_replayed(self):
        """A cancellation may come after the server acted on the request (MCP), and
        mcpmux cannot tell whether it did: the set-up is replayed all the same."""
        p = self.start_wrap()
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        cancel = "notifications/cancelled"
        p.send(note("notifications/initialized"),
               req(3, "resources/subscribe", {"uri": "fixture://c"}),
               note(cancel, {"requestId": 3, "reason": "changed my mind"}),
               req(4, "logging/setLevel", {"level": "error"}),
               note(cancel, {"requestId": 4, "reason": "changed my mind"}),
               call(6, "env"))
        m = p.msg()
        while m.get("id") != 6:  # the cancelled requests' answers, which this server sends
            self.assertIn(m.get("id"), (3, 4), m)
            m = p.msg()
        hs = self.fresh_handshake(p, structured(m)["pid"], 7)
        self.assertEqual((hs["level"], hs["subscriptions"]), ("error", ["fixture://c"]))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_a_first_initialize_answered_in_a_batch_is_replayed(self):
        """The first server answers the client's initialize inside a batch: that answer
        is the handshake's, and a fresh server hears the replay (one that enforces the
        handshake would refuse the held call otherwise)."""
        behave = os.path.join(self.tmp.name, "behave")
        with open(behave, "w") as f:
            f.write("init-batch\n")
        p = self.start_wrap("--behave-file=" + behave)
        p.send(initialize(1))
        batch = p.msg()
        self.assertEqual([m.get("id") for m in batch], [None, 1], batch)
        os.unlink(behave)
        p.send(note("notifications/initialized"))
        hs = self.fresh_handshake(p, self.pid_of(p.send, p.msg, 2), 3)
        self.assertEqual((hs["firstMethod"], hs["initialized"], hs["refusedBeforeInitialize"]),
                         ("initialize", True, 0))
        wait_until(lambda: events(self.log, "resumed"), 5, "resumed logged")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_many_messages_racing_the_suspend(self):
        """Calls sent around the moment the server is suspended are all answered, in order."""
        p = self.wrap(opts=FAST + ["--idle-suspend", "0.1"])
        self.setup_session(p.send, p.msg)
        rnd = random.Random(7)
        for i in range(30):
            time.sleep(rnd.uniform(0.05, 0.25))  # the point of the test: arrival times
            p.send(call(100 + 2 * i, "echo", text="a%d" % i),
                   call(101 + 2 * i, "echo", text="b%d" % i))
            for k, t in ((100 + 2 * i, "a%d" % i), (101 + 2 * i, "b%d" % i)):
                m = p.msg()
                self.assertEqual(m.get("id"), k, m)
                self.assertEqual(m["result"]["content"][0]["text"], t)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


class NextRun(Base):
    """After an end-of-run, the next run's server hears the handshake before anything else."""

    def test_first_message_not_initialize(self):
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap("--strict-handshake", opts=FAST + ["--log", log])
        self.setup_session(p.send, p.msg)
        pid1 = self.pid_of(p.send, p.msg, 6)
        p.send(req(7, "mcpmux/endRun"))
        self.assert_response(p.msg(), 7)
        # a strict server refuses anything before initialize: this one was initialized
        p.send(call(8, "handshake"))
        hs = structured(p.msg())
        self.assertNotEqual(hs["pid"], pid1)
        self.assertEqual(hs["firstMethod"], "initialize")
        self.assertTrue(hs["initialized"])
        self.assertEqual(hs["level"], "warning")
        self.assertEqual(hs["subscriptions"], ["fixture://b"])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(len(events(log, "replayed")), 1)

    def test_subscriptions_past_the_bound_are_said_at_the_replay(self):
        """At most 1,024 resource subscriptions are kept for a replay: the ones past that
        are counted, and the replay says how many the fresh server does not get."""
        p = self.wrap("--strict-handshake", opts=FAST)
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        n = 1024 + 3
        for first in range(0, n, 100):
            batch = range(first, min(n, first + 100))
            p.send(*(req(10 + i, "resources/subscribe", {"uri": "fixture://s%d" % i})
                     for i in batch))
            for i in batch:
                m = p.msg()
                self.assertEqual(m.get("id"), 10 + i, m)
                # (the fixture too keeps 1,024 and refuses more)
                self.assertIn("result" if i < 1024 else "error", m, m)
        self.assertNotIn("not kept", p.stderr())
        p.send(req(7, "mcpmux/endRun"))
        self.assert_response(p.msg(), 7)
        p.send(call(8, "handshake"))
        hs = structured(p.msg())
        self.assertEqual(hs["subscriptions"], ["fixture://s%d" % i for i in range(1024)])
        wait_until(lambda: "3 resource subscriptions (at most; counted as asked) were not "
                           "kept (more than 1024, or out of memory): the fresh server does "
                           "not get them" in p.stderr(), 10, "the warning")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_first_message_initialize_is_not_replayed(self):
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap("--strict-handshake", opts=FAST + ["--log", log])
        self.setup_session(p.send, p.msg)
        p.send(req(7, "mcpmux/endRun"))
        self.assert_response(p.msg(), 7)
        p.send(req(8, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "second", "version": "2"}}))
        self.assert_response(p.msg(), 8)
        p.send(call(9, "handshake"))
        hs = structured(p.msg())
        self.assertEqual(hs["clientName"], "second")
        self.assertIsNone(hs["level"])
        self.assertEqual(hs["subscriptions"], [])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(events(log, "replayed"), [])


class ResumeFailures(Base):
    """A fresh server that cannot take the session over: the waiting requests get errors that
    say why, the event is logged, and the next message tries again."""

    def fail_then_recover(self, mode, expect, fixture=None, opts=()):
        log = os.path.join(self.tmp.name, "t.log")
        behave = os.path.join(self.tmp.name, "behave")
        cmd = [fixture or FIXTURE, "--behave-file=" + behave]
        p = self.wrap(opts=FAST + SUSPEND + ["--log", log] + list(opts), command=cmd)
        self.setup_session(p.send, p.msg)
        pid1 = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid1, log=log)
        if mode is not None:
            with open(behave, "w") as f:
                f.write(mode + "\n")
        else:
            os.chmod(fixture, 0o644)
        p.send(call(7, "echo", text="x"), call(8, "echo", text="y"))
        for id_ in (7, 8):
            err = self.assert_error(p.msg(), id_, -32000)
            self.assertIn(expect, err["message"])
        self.wait_suspended(pid1, "the failed server to be gone")
        # the log is written once per loop turn: perhaps just after the answers went out
        failed = wait_until(lambda: events(log, "resume-failed"), 5, "resume-failed logged")
        self.assertEqual(len(failed), 1)
        self.assertIn(expect, failed[0]["reason"])
        # the next message tries again, with a server that behaves
        if mode is not None:
            os.unlink(behave)
        else:
            os.chmod(fixture, 0o755)
        p.send(call(9, "echo", text="z"))
        m = p.msg()
        self.assertEqual(m["result"]["content"][0]["text"], "z")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        return p

    def test_fresh_server_exits_at_once(self):
        self.fail_then_recover("exit", "ended during the handshake replay (exit code 3)")

    def test_fresh_server_cannot_be_executed(self):
        copy = os.path.join(self.tmp.name, "fixture-copy")
        shutil.copy(FIXTURE, copy)
        os.chmod(copy, 0o755)
        said = "cannot run '%s': Permission denied (check that it is an executable file)" % copy
        p = self.fail_then_recover(None, "the server could not be restarted: " + said,
                                   fixture=copy, opts=["-v"])
        if not WRAPPER:  # (valgrind: the exec's errno does not reach mcpmux)
            err = p.stderr()
            self.assertEqual(err.count(said), 1, err)
            # -v: the failed child is not said to be resuming; the one that recovers is
            self.assertEqual(err.count("could not execute '%s'" % copy), 1, err)
            self.assertEqual(err.count(": resuming (pid "), 1, err)

    def test_initialize_errors(self):
        self.fail_then_recover("init-error", "refused initialize: initialize refused")

    def test_initialize_errors_under_the_id_null(self):
        """An error under the id null is the fresh server's answer to the replayed
        initialize (it was sent nothing else): not forwarded, the resume fails."""
        self.fail_then_recover("init-null-id", "refused initialize: initialize refused")

    def test_capabilities_change(self):
        self.fail_then_recover("caps", "capabilities differ from the first one's")

    def test_protocol_version_changes(self):
        self.fail_then_recover("protocol", "protocol version differs")

    def test_crash_during_replay(self):
        self.fail_then_recover("crash-init", "ended during the handshake replay (killed by SIGSEGV)")

    def test_a_refused_first_initialize_is_not_replayed(self):
        """The first server refuses the client's initialize; the client goes on, and uses
        that id again.  The refused initialize is nothing to replay (the first server took
        no handshake either), and the later answer under its id is not taken for its
        answer: the fresh server gets the held call as it comes, and answers it."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        with open(behave, "w") as f:
            f.write("init-error\n")
        p = self.wrap(opts=FAST + SUSPEND + ["--log", log],
                      command=[FIXTURE, "--behave-file=" + behave])
        p.send(initialize(1))
        self.assert_error(p.msg(), 1, -32603)
        os.unlink(behave)
        p.send(call(1, "echo", text="the id again"))
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "the id again")
        self.wait_suspended(self.pid_of(p.send, p.msg, 2), log=log)
        p.send(call(3, "handshake"))
        m = p.msg(10)
        self.assertEqual(m.get("id"), 3, m)
        hs = structured(m)
        self.assertEqual((hs["initializeSeen"], hs["firstMethod"]), (False, "tools/call"))
        self.assertEqual(events(log, "resume-failed"), [])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()


class ServeSuspend(Base):
    def test_events_states_and_a_message_racing_the_suspend(self):
        # --ignore-eof: the suspend's teardown waits the eof grace, long enough to be seen
        p = self.serve("--ignore-eof", opts=["--eof-grace", "1500", "--term-grace", "300"]
                       + SUSPEND)
        m = Mux(p)
        s = "sus-1"
        self.setup_session(lambda x: m.send(s, x), lambda: m.msg(s))
        pid1 = m.event(s, "started")["pid"]

        def state():
            lst = m.control(50, "mcpmux/list")["message"]["result"]["sessions"]
            return [x for x in lst if x["session"] == s][0]
        wait_until(lambda: state()["state"] == "suspending", 5, "the suspend to begin")
        # a message while the server is being ended: it waits, then a fresh one answers
        m.send(s, call(6, "env"))
        env = structured(m.msg(s, 15))
        self.assertNotEqual(env["pid"], pid1)
        self.assertFalse(alive(pid1))
        ev = m.event(s, "suspended")
        self.assertEqual(ev["reason"], "idle")
        ev = m.event(s, "resumed")
        self.assertEqual(ev["pid"], env["pid"])
        self.assertGreater(ev["ms"], 0)
        st = state()
        self.assertEqual((st["state"], st["pid"], st["suspends"], st["resumes"]),
                         ("running", env["pid"], 1, 1))
        wait_until(lambda: state()["state"] == "suspending", 5, "the next suspend")
        wait_until(lambda: state()["state"] == "suspended", 5, "the suspend to complete")
        self.assertIsNone(state()["pid"])
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)
        self.assert_no_leftovers()


class SlowReplay(Base):
    def test_a_resume_slower_than_the_idle_period_is_suspended_again(self):
        """The idle timer may fire while the resumed server replays the handshake: it
        counts again from the replay's end, and the idle server is suspended again."""
        behave = os.path.join(self.tmp.name, "behave")
        p = self.serve(opts=FAST + ["--idle-suspend", "0.5"],
                       command=[FIXTURE, "--behave-file=" + behave])
        m = Mux(p)
        m.send("r", initialize(1))
        self.assert_response(m.msg("r"), 1)
        m.send("r", note("notifications/initialized"))
        self.assertEqual(m.event("r", "suspended")["reason"], "idle")
        with open(behave, "w") as f:
            f.write("slow-init=1500\n")  # three idle periods
        m.send("r", call(2, "echo", text="again"))
        self.assertGreater(m.event("r", "resumed", 10)["ms"], 1000)
        self.assertEqual(m.msg("r")["result"]["content"][0]["text"], "again")
        self.assertEqual(m.event("r", "suspended", 5)["reason"], "idle")
        wait_until(lambda: not self.servers(), 5, "the server to be gone")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)

    def test_idle_timeout_ends_a_replay_that_never_ends(self):
        """--idle-timeout during a replay: a held request is in flight (the session stays
        until it is answered, past the timeout), but a replay alone is not: a session
        woken by a notification whose fresh server never answers initialize ends."""
        p, log, behave = self.suspended_to_resume_with(
            "slow-init=3000", opts=("--idle-timeout", "2"))  # past the idle timeout
        p.send(call(7, "echo", text="held"))
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "held")
        self.wait_suspended(self.pid_of(p.send, p.msg, 8), log=log, n=2)
        with open(behave, "w") as f:
            f.write("slow-init=60000\n")  # never, for the test
        t0 = time.monotonic()
        p.send(note("notifications/roots/list_changed"))
        wait_until(lambda: self.servers(), 5, "the fresh server")
        self.assertEqual(p.wait(10), 128 + signal.SIGTERM)  # it sleeps: the ladder's TERM
        self.assertLess(time.monotonic() - t0, 2 + 0.6 + 3 * SLOW)  # the timeout, the teardown
        self.assert_no_leftovers()
        self.assertEqual([e["reason"] for e in events(log, "ended")], ["idle-timeout"])

    def test_a_held_request_the_client_cancels_no_longer_holds_the_idle_timeout(self):
        """A fresh server that does not answer the replayed initialize (within the replay's
        deadline, --stall-timeout, here past the test): the held request keeps the session
        past --idle-timeout.  The client gives up on it (notifications/cancelled, as an
        SDK's request timeout sends): the request is no longer in flight, and
        --idle-timeout ends the session."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap(opts=FAST + SUSPEND + ["--idle-timeout", "1", "--stall-timeout", "60",
                                             "--log", log],
                      command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(p.send, p.msg)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=log)
        with open(behave, "w") as f:
            f.write("slow-init=60000\n")  # never, for the test
        p.send(call(7, "echo", text="held"))
        wait_until(lambda: self.servers(), 5, "the fresh server")
        p.no_output(2.5)  # past both timeouts: the held request waits, unanswered
        self.assertIsNone(p.p.poll())
        self.assertEqual(len(self.servers()), 1)
        t0 = time.monotonic()
        p.send(note("notifications/cancelled", {"requestId": 7, "reason": "timed out"}))
        self.assertEqual(p.wait(10), 128 + signal.SIGTERM)  # it sleeps: the ladder's TERM
        self.assertLess(time.monotonic() - t0, 1 + 0.6 + 3 * SLOW)  # the timeout, the teardown
        self.assertEqual(p.read_to_eof(), b"")  # a cancelled request gets no answer
        self.assert_no_leftovers()
        self.assertEqual([e["reason"] for e in events(log, "ended")], ["idle-timeout"])

    def test_a_replay_never_answered_fails_at_its_deadline(self):
        """A fresh server that reads the replayed initialize and never answers it: at the
        replay's deadline (--stall-timeout) the held requests get -32000 that says so, the
        server's tree is ended, resume-failed is logged, and the next message tries again."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap(opts=FAST + SUSPEND + ["--stall-timeout", "1", "--log", log],
                      command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(p.send, p.msg)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=log)
        with open(behave, "w") as f:
            f.write("slow-init=60000\n")  # never, for the test
        t0 = time.monotonic()
        p.send(call(7, "echo", text="held"), call(8, "echo", text="held too"))
        for id_ in (7, 8):
            err = self.assert_error(p.msg(10), id_, -32000)
            self.assertEqual(err["message"],
                             "the restarted server did not answer the handshake replay in 1 s")
        self.assertLess(time.monotonic() - t0, 1 + 3 * SLOW)
        wait_until(lambda: not self.servers(), 5, "the server that never answered to be gone")
        failed = wait_until(lambda: events(log, "resume-failed"), 5, "resume-failed logged")
        self.assertIn("did not answer the handshake replay", failed[0]["reason"])
        self.assertIsNone(p.p.poll())
        self.assert_the_next_message_starts_a_good_server(p, behave)

    def assert_the_next_message_starts_a_good_server(self, p, behave):
        """The fresh server behaving again (behave removed), the next call is answered; the
        run then ends with nothing left."""
        os.unlink(behave)
        p.send(call(9, "echo", text="again"))
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "again")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def suspended_to_resume_with(self, behaviour, opts=("--stall-timeout", "30")):
        """A wrapped session (with opts: by default a replay deadline of 30 s) suspended,
        whose fresh server will behave so (its --behave-file): (the wrap, its log, the
        behave file)."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap(opts=FAST + SUSPEND + list(opts) + ["--log", log],
                      command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(p.send, p.msg)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=log)
        with open(behave, "w") as f:
            f.write(behaviour + "\n")
        return p, log, behave

    def test_a_replay_answered_with_a_line_that_is_not_json_fails_at_once(self):
        """A fresh server that answers the replayed initialize with a line that is not JSON
        (invalid UTF-8): the replay fails at once, not at its deadline, and the held
        requests get -32000 that says why; the next message tries again."""
        p, log, behave = self.suspended_to_resume_with("init-bad")
        t0 = time.monotonic()
        p.send(call(7, "echo", text="held"), call(8, "echo", text="held too"))
        for id_ in (7, 8):
            err = self.assert_error(p.msg(10), id_, -32000)
            self.assertEqual(err["message"],
                             "the restarted server's answer to the replay is not valid "
                             "JSON: not valid JSON text (a control character, or invalid "
                             "UTF-8)")
        self.assertLess(time.monotonic() - t0, 5 * SLOW)
        failed = wait_until(lambda: events(log, "resume-failed"), 5, "resume-failed logged")
        self.assertIn("answer to the replay is not valid JSON", failed[0]["reason"])
        wait_until(lambda: not self.servers(), 5, "the failed server to be gone")
        self.assert_the_next_message_starts_a_good_server(p, behave)

    def test_a_replayed_subscription_answered_with_a_line_that_is_not_json(self):
        """A fresh server that answers a replayed resources/subscribe with a line that is
        not JSON: it answered, as an error would: the replay ends at once, not at its
        deadline, and the held request reaches it and is answered."""
        p, log, _ = self.suspended_to_resume_with("subscribe-bad")
        t0 = time.monotonic()
        p.send(call(7, "echo", text="held"))
        self.assertEqual(p.msg(10)["result"]["content"][0]["text"], "held")
        self.assertLess(time.monotonic() - t0, 5 * SLOW)
        wait_until(lambda: events(log, "resumed"), 5, "resumed logged")
        self.assertEqual(events(log, "resume-failed"), [])
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_an_end_of_run_during_the_replay_ends_the_run(self):
        """An end-of-run while the fresh server replays the handshake: the replay's late
        answer neither resumes the session nor fails the resume; the held request gets the
        run's end, and the log says the run ended, nothing of a resume."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        # an EOF grace past the slow initialize: the fresh server answers, then sees EOF
        p = self.wrap(opts=["--eof-grace", "5000", "--term-grace", "300"] + SUSPEND
                      + ["--log", log], command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(p.send, p.msg)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=log)
        with open(behave, "w") as f:
            f.write("slow-init=1000\n")
        p.send(call(7, "echo", text="held"))
        wait_until(lambda: self.servers(), 5, "the fresh server")
        p.send(req(8, "mcpmux/endRun"))
        err = self.assert_error(p.msg(10), 7, -32000)
        self.assertEqual(err["message"], "the run ended before the server was restarted")
        r = self.assert_response(p.msg(10), 8)
        self.assertEqual((r["exit"], r["escalation"]), ({"code": 0}, "eof"))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        names = [r.get("event") for r in log_records(log) if r.get("event")]
        self.assertNotIn("resume-failed", names)
        self.assertNotIn("resumed", names)
        self.assertEqual([e["reason"] for e in events(log, "ended")], ["end-of-run"])

    def test_the_clients_eof_during_a_replay_of_initialize_alone(self):
        """The same with the client's EOF, and a replay of initialize alone (its answer
        would have ended the replay): no `resumed`, and nothing is forwarded."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "t.log")
        p = self.wrap(opts=["--eof-grace", "5000", "--term-grace", "300"] + SUSPEND
                      + ["--log", log], command=[FIXTURE, "--behave-file=" + behave])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        self.wait_suspended(self.pid_of(p.send, p.msg, 6), log=log)
        with open(behave, "w") as f:
            f.write("slow-init=1000\n")
        p.send(call(7, "echo", text="held"))
        wait_until(lambda: self.servers(), 5, "the fresh server")
        p.close_stdin()
        err = self.assert_error(p.msg(10), 7, -32000)
        self.assertEqual(err["message"], "the run ended before the server was restarted")
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        names = [r.get("event") for r in log_records(log) if r.get("event")]
        self.assertNotIn("resume-failed", names)
        self.assertNotIn("resumed", names)
        self.assertEqual([e["reason"] for e in events(log, "ended")], ["client-eof"])


class HeldLines(Base):
    """Lines that wait for a server being resumed are bounded by --max-queue: past it, the
    client is held back (wrap: its stdin; serve: its connection), and nothing is lost."""

    N = 1500

    def flood(self, wrap_in_envelope):
        pad = "x" * 1000
        return b"".join(encode(wrap_in_envelope(note("notifications/progress",
                                                      {"i": i, "pad": pad})))
                        for i in range(self.N))

    def suspend_then_slow_resume(self, behave):
        wait_until(lambda: self.servers(), 10, "the server")
        wait_until(lambda: not self.servers(), 10, "the idle server to be suspended")
        with open(behave, "w") as f:
            f.write("slow-init=4000\n")

    def test_wrap(self):
        behave = os.path.join(self.tmp.name, "behave")
        p = self.wrap(opts=FAST + SUSPEND + ["--max-queue", "16K"],
                      command=[FIXTURE, "--behave-file=" + behave])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        self.suspend_then_slow_resume(behave)
        data = self.flood(lambda m: m)
        w = Writer(p.p.stdin.fileno(), data)
        w.start()
        wait_stalled(w, "the client to be held back while the server resumes")
        self.assertLess(w.done, len(data), "nothing held the client back")
        w.join(60)
        self.assertIsNone(w.error)
        p.send(call(9, "stats"))
        # the replayed initialize and initialized, every notification, this call
        self.assertEqual(p.msg(30)["result"]["content"][0]["text"], str(self.N + 3))
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_given_back_when_held_lines_are_refused(self):
        """10 MB of lines held for a fresh server that then refuses initialize: once they are
        answered, their buffer is given back at idle (it grew long before: the trim after
        its growth came while it was still held)."""
        behave = os.path.join(self.tmp.name, "behave")
        p = self.wrap(opts=FAST + SUSPEND, command=[FIXTURE, "--behave-file=" + behave])
        p.send(initialize(1))
        self.assert_response(p.msg(), 1)
        p.send(note("notifications/initialized"))
        wait_until(lambda: self.servers(), 10, "the server")
        wait_until(lambda: not self.servers(), 10, "the idle server to be suspended")
        with open(behave, "w") as f:
            f.write("init-error=3000\n")
        pad = "x" * 1000
        p.write(b"".join(encode(note("notifications/progress", {"i": i, "pad": pad}))
                         for i in range(10000)) + encode(req(9, "ping")), 30)
        self.assertGreater(rss_anon_kib(p.pid), 8 * 1024, "the lines were not held")
        err = self.assert_error(p.msg(30), 9, -32000)
        self.assertIn("refused initialize", err["message"])
        wait_until(lambda: rss_anon_kib(p.pid) < 2048, 5,
                   "mcpmux's private memory to fall back under 2 MiB")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_serve_connection(self):
        behave = os.path.join(self.tmp.name, "behave")
        path = os.path.join(self.tmp.name, "s.sock")
        s = self.serve(opts=["--listen", path, "--max-queue", "16K"] + FAST + SUSPEND,
                       command=[FIXTURE, "--behave-file=" + behave])
        wait_until(lambda: os.path.exists(path), 10, "the socket")
        a = socket.socket(socket.AF_UNIX)
        a.connect(path)
        env = lambda m: {"session": "h", "message": m}
        buf = [b""]

        def answer(id_, seconds=30):
            end = deadline(seconds)
            while True:
                while b"\n" in buf[0]:
                    line, buf[0] = buf[0].split(b"\n", 1)
                    m = json.loads(line).get("message", {})
                    if m.get("id") == id_:
                        return m
                r, _, _ = select.select([a], [], [], max(0, end - time.monotonic()))
                self.assertTrue(r, "no answer %r" % id_)
                got = a.recv(65536)
                self.assertTrue(got, "the connection was closed")
                buf[0] += got
        a.sendall(encode(env(initialize(1))))
        self.assert_response(answer(1), 1)
        a.sendall(encode(env(note("notifications/initialized"))))
        self.suspend_then_slow_resume(behave)
        data = self.flood(env)
        w = Writer(a.fileno(), data)
        w.start()
        wait_stalled(w, "the connection to be held back while the server resumes")
        self.assertLess(w.done, len(data), "nothing held the connection back")
        w.join(60)
        self.assertIsNone(w.error)
        a.sendall(encode(env(call(9, "stats"))))
        self.assertEqual(answer(9)["result"]["content"][0]["text"], str(self.N + 3))
        a.close()
        s.p.send_signal(signal.SIGTERM)
        self.assertEqual(s.wait(10), 0)
        self.assert_no_leftovers()


class Pool(Base):
    """--max-servers: a client that leaks one wrapper per run keeps at most N servers."""

    def setUp(self):
        super().setUp()
        self.env["XDG_RUNTIME_DIR"] = self.tmp.name  # a pool directory of the test's own

    def pool_files(self):
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        return [f for sub in os.listdir(d) for f in os.listdir(os.path.join(d, sub))
                if f.startswith(("s.", "a."))]

    def slot_states(self):
        """What the pool's live slots say of their servers (idle, busy, going), sorted:
        what another instance that wants a slot goes by."""
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        got = []
        for sub in os.listdir(d):
            for f in os.listdir(os.path.join(d, sub)):
                if f.startswith("s."):
                    try:
                        with open(os.path.join(d, sub, f)) as fh:
                            got.append(fh.read().split(" ", 1)[0])
                    except FileNotFoundError:
                        pass
        return sorted(got)

    def most_at_once(self, logs):
        """The most servers alive at once, from the traffic logs: each server from its
        `started` (after the spawn) to its `suspended` or `ended` (after it was reaped)."""
        edges = []
        for path in logs:
            for r in log_records(path):
                if r.get("event") == "started":
                    edges.append((r["ts"], 1))
                elif r.get("event") in ("suspended", "ended") and r.get("pid"):
                    edges.append((r["ts"], -1))
        live = most = 0
        for _, d in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start
            live += d
            most = max(most, live)
        return most

    def test_leaking_client_keeps_two_servers(self):
        # Twenty servers get their EOF at once at the end: on a loaded machine FAST's
        # 300 ms grace would SIGTERM one (exit 143) before it has read its EOF.
        opts = ["--eof-grace", str(int(3000 * SLOW)), "--term-grace", "300"]
        ps, logs = [], []
        for i in range(20):
            logs.append(os.path.join(self.tmp.name, "w%d.log" % i))
            p = self.wrap(opts=opts + ["--max-servers", "2", "--log", logs[-1]])
            p.send(initialize(1))
            self.assert_response(p.msg(), 1)
            p.send(note("notifications/initialized"), call(2, "echo", text="run %d" % i))
            self.assertEqual(p.msg()["result"]["content"][0]["text"], "run %d" % i)
            ps.append(p)  # neither ended nor closed: leaked
        for i, p in enumerate(ps):
            p.send(call(3, "echo", text="again %d" % i))
            m = p.msg(15)
            self.assertEqual(m.get("id"), 3, m)
            self.assertEqual(m["result"]["content"][0]["text"], "again %d" % i)
        for p in ps:
            p.close_stdin()
        for p in ps:
            self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])
        most = self.most_at_once(logs)
        print("most servers alive at once: %d" % most)
        self.assertLessEqual(most, 3)  # 2, and 1 more only while all are busy

    def test_all_busy_one_more_starts_then_the_pool_shrinks(self):
        a = self.wrap(opts=FAST + ["--max-servers", "2", "--pool", "p"])
        b = self.wrap(opts=FAST + ["--max-servers", "2", "--pool", "p"])
        for p in (a, b):
            p.send(initialize(1))
            self.assert_response(p.msg(), 1)
            p.send(call(2, "sleep", ms=2500))
        # busy as the pool sees it (a server that has not yet read its call is idle, and
        # would be asked to go)
        wait_until(lambda: len(self.servers()) == 2 and self.slot_states() == ["busy"] * 2,
                   5, "two busy servers")
        c = self.wrap(opts=FAST + ["--max-servers", "2", "--pool", "p", "-v"])
        c.send(initialize(1))
        self.assert_response(c.msg(), 1)  # at once: nobody idle to wait for
        # A third server ran (it answered) while the two were busy; idle at once and over
        # the cap, it is the one asked to go.  (Not counted here: it goes within some
        # 20 ms, and an ending ASan fixture's tracer child counts as one more.)
        wait_until(lambda: len(self.servers()) == 2, 10, "the pool to shrink back to 2")
        for p in (a, b):
            self.assert_response(p.msg(), 2)  # their calls ran to the end
        for p in (a, b, c):
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        self.assertIn("none idle: one more starts", c.stderr())
        self.assertNotIn("its pool is full", c.stderr())  # it asked nobody, waited for none

    def test_a_killed_instance_holds_no_slot(self):
        a = self.wrap(opts=FAST + ["--max-servers", "1"])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        self.assertEqual(len(self.pool_files()), 1)
        apid = a.pid
        a.kill()
        wait_until(lambda: not self.servers(), 10, "the killed instance's server to be ended")
        # its keeper holds the slot until it has ended what is left, then goes
        wait_until(lambda: not [q for q in self.tagged() if keeper_of(q) == apid], 10,
                   "the killed instance's keeper to be gone")
        b = self.wrap(opts=FAST + ["--max-servers", "1", "-v"])
        b.send(initialize(1))
        self.assert_response(b.msg(), 1)
        self.assertEqual(len(self.pool_files()), 1)  # b's; a's is gone
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assertNotIn("its pool is full", b.stderr())

    def test_a_killed_instances_slot_is_free_once_its_keeper_has_ended_its_server(self):
        """mcpmux SIGKILLed while its server holds the one slot: the server dies with it
        (its parent-death signal), but not what it started, here the fixture under a shell,
        which ignores SIGTERM and EOF.  The keeper still holds that slot while it ends what
        is left (SIGTERM, then SIGKILL after --term-grace), so another instance's server
        starts only once the first is gone: never two at once."""
        a, pid1, opts = self.holding_the_one_slot()
        self.killed_then_another(a, pid1, opts)

    def holding_the_one_slot(self):
        """An instance whose server holds the pool's one slot, having started the fixture
        under a shell, which ignores SIGTERM and EOF: (it, its server's pid, its options)."""
        opts = ["--eof-grace", "200", "--term-grace", "1500", "--kill-deadline", "3000",
                "--max-servers", "1", "--pool", "p"]
        a = self.wrap(opts=opts, command=["sh", "-c", '"$0" --ignore-sigterm --ignore-eof; :',
                                          FIXTURE])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        return a, self.pid_of(a.send, a.msg, 2), opts

    def killed_then_another(self, a, pid1, opts):
        """a SIGKILLed, its server pid1 leaving what ignores SIGTERM and EOF: another
        instance's server starts only once the keeper has ended it, never two at once."""
        a.kill()
        t0 = time.monotonic()
        b = self.wrap(opts=opts)
        b.send(initialize(1))
        most = 0
        end = deadline(10)
        while not select.select([b.p.stdout], [], [], 0.005)[0]:
            most = max(most, len(self.servers()))
            self.assertLess(time.monotonic(), end, "b's server did not start")
        self.assert_response(b.msg(), 1)
        waited = time.monotonic() - t0
        print("a killed instance's slot: waited %.2f s" % waited)
        self.assertFalse(alive(pid1))
        self.assertEqual(most, 1)
        self.assertEqual(len(self.servers()), 1)
        # the keeper's ladder: SIGKILL after --term-grace, well within b's bound (5.7 s)
        self.assertGreaterEqual(waited, 1.0)
        self.assertNotIn("came free", b.stderr())
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def test_a_keeper_started_in_place_of_one_killed_holds_the_slots(self):
        """The keeper SIGKILLed: the one mcpmux starts in its place is handed the slot,
        and holds it, as the first did, when mcpmux is SIGKILLed in turn."""
        a, pid1, opts = self.holding_the_one_slot()
        first = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == a.pid], 5,
                           "the keeper")[0]
        os.kill(first, signal.SIGKILL)
        said = "the keeper (pid %d) is gone: another (pid " % first
        wait_until(lambda: said in a.stderr(), 10, said, explain=a.stderr)
        pools = os.path.join(self.tmp.name, "mcpmux", "pools")
        held = lambda: [l for q in self.tagged() if keeper_of(q) == a.pid and q != first
                        for l in fd_links(q).values() if l.startswith(pools)]
        wait_until(held, 5, "the new keeper to hold the slot")
        self.killed_then_another(a, pid1, opts)

    def keeper_stopped(self, opts):
        """a, under opts, answers initialize, and its slot's keeper is stopped (SIGSTOP):
        (a, the keeper's pid).  Skips the test where the next pid cannot be chosen."""
        if not os.access(LAST_PID, os.W_OK):
            self.skipTest("cannot choose the next pid (%s)" % LAST_PID)
        a = self.wrap(opts=opts)
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        keeper = next(q for q in self.tagged() if keeper_of(q) == a.pid)
        os.kill(keeper, signal.SIGSTOP)
        return a, keeper

    def given_pid(self, pid, start):
        """What start() starts, once it has pid, pid being chosen as the next one: other
        processes of the machine may take it first, so at most 50 are started (each
        other one killed); None if none got it."""
        for _ in range(50):
            with open(LAST_PID, "w") as f:
                f.write(str(pid - 1))
            p = start()
            if p.pid == pid:
                return p
            p.kill()
        return None

    def test_an_ask_never_signals_a_process_that_took_a_killed_instances_pid(self):
        """mcpmux SIGKILLed while its keeper has not yet marked its slot going (stopped
        here, as on a loaded machine), and its pid taken by another process: the slot is
        held by the keeper, and says idle, but the process with that pid is not the
        instance that holds it (its start time is not the one the slot records), so it is
        not sent SIGUSR2.  The slot is on its way; the waiter starts once the keeper is done."""
        opts = ["--max-servers", "1", "--pool", "p"]
        a, keeper = self.keeper_stopped(FAST + opts)
        try:
            a.kill()
            stranger = self.given_pid(a.pid, lambda: self.start(["sleep", "60"]))
            if stranger is None:
                self.skipTest("the killed instance's pid was not given to a new process")
            b = self.wrap(opts=FAST + opts + ["-v"])
            b.send(initialize(1))
            wait_until(lambda: "its pool is full" in b.stderr(), 10, "b to wait for the slot")
            self.assertEqual(self.pool_files(), ["s.%d.1" % a.pid])  # no ask left for it
        finally:
            os.kill(keeper, signal.SIGCONT)
        self.assert_response(b.msg(15), 1)
        self.assertIsNone(stranger.p.poll(), "the process that took the pid was signalled")
        stranger.kill()
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assertNotIn("came free", b.stderr())
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def asked_without(self, prefix, said, leaks_checked=True):
        """b, started under prefix, asks a for its idle server's slot, and gets it well
        before its wait's bound (--kill-deadline long here); b says `said`, once."""
        opts = FAST + ["--max-servers", "1", "--pool", "p", "--kill-deadline",
                       str(int(30000 * SLOW))]
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        a = self.wrap(opts=opts + ["--log", logs[0]])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        a_pid = self.pid_of(a.send, a.msg, 2)
        self.prefix = prefix
        try:
            b = self.wrap(opts=opts + ["--log", logs[1]])
        finally:
            self.prefix = []
        b.send(initialize(1))
        self.assert_response(b.msg(15), 1)
        # a logs its server's suspend at the end of the loop turn that let the slot go:
        # b may have started on that slot and answered before the record is in the file.
        got = wait_until(lambda: events(logs[0], "suspended"), 5, "a's suspend, logged")
        self.assertEqual([(e["reason"], e["pid"]) for e in got], [("pool", a_pid)])
        self.assertEqual(b.stderr().count(said), 1, b.stderr())
        self.assertNotIn("came free", b.stderr())
        for p in (a, b):
            p.close_stdin()
            rc = p.wait()
            if p is a or leaks_checked:
                # without /proc, LeakSanitizer fails at exit (it reads its options, and
                # the threads, there): its exit status is not mcpmux's then
                self.assertEqual(rc, 0, p.stderr())
        self.assert_no_leftovers()

    def test_an_instance_without_proc_asks_by_pid(self):
        """An instance that cannot read /proc (a tmpfs over it, in a mount namespace of its
        own) asks the others by their pids alone, as before start times, and says that
        the check that a pid is still that instance is off."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a /proc of its own")
        self.asked_without(["unshare", "-m", "sh", "-c",
                            'mount -t tmpfs none /proc && exec "$@"', "sh"],
                           "is not checked", leaks_checked=not SANITIZED)

    def test_an_ask_whose_pidfd_is_refused_goes_by_pid(self):
        """pidfd_open() refused (EPERM, from a seccomp filter): the ask goes by the pid,
        said once, rather than not at all."""
        self.asked_without([os.environ["MCPMUX_NOCLONE3"], "--errno", "1", "--nr", "434"],
                           "cannot open a pidfd to ask another instance")

    def test_an_instance_with_a_killed_instances_pid_does_not_take_its_slots(self):
        """mcpmux SIGKILLed while its keeper holds its slot (stopped here, as on a loaded
        machine), and its pid taken by a new mcpmux of the pool: that slot is not the new
        one's own (its start time is another's): the new instance's own slot is granted
        under another name, not refused as one that exists."""
        opts = FAST + ["--max-servers", "2", "--pool", "p", "-v"]
        a, keeper = self.keeper_stopped(opts)
        try:
            a.kill()
            b = self.given_pid(a.pid, lambda: self.wrap(opts=opts))
            if b is None:
                self.skipTest("the killed instance's pid was not given to a new mcpmux")
            b.send(initialize(1))
            self.assert_response(b.msg(10), 1)
            self.assertEqual(sorted(self.pool_files()), ["s.%d.1" % a.pid, "s.%d.2" % a.pid])
        finally:
            os.kill(keeper, signal.SIGCONT)
        self.assertNotIn("cannot count a server in", b.stderr())
        wait_until(lambda: self.pool_files() == ["s.%d.2" % a.pid], 10,
                   "the killed instance's slot to be removed")
        self.end_all(b)
        self.assertEqual(self.pool_files(), [])

    def test_a_killed_instances_ask_goes_with_its_slot(self):
        """An instance asked for its slot and killed before it answers: its keeper removes
        the ask with the slot's file, so none is left where it would mark a later
        instance with that pid as asked."""
        opts = FAST + ["--max-servers", "1", "--pool", "p"]
        a = self.wrap(opts=opts)
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        os.kill(a.pid, signal.SIGSTOP)  # the ask is not answered
        b = self.wrap(opts=opts + ["-v"])
        b.send(initialize(1))
        wait_until(lambda: "its pool is full" in b.stderr(), 10, "b to wait for the slot")
        self.assertEqual(sorted(self.pool_files()), ["a.%d.1" % a.pid, "s.%d.1" % a.pid])
        a.kill()
        self.assert_response(b.msg(15), 1)
        wait_until(lambda: self.pool_files() == ["s.%d.1" % b.pid], 10,
                   "a's slot and its ask to be removed")
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def test_started_comes_when_the_server_does(self):
        """A session whose pool is full waits for a slot: its "started" event comes when its
        server is spawned, with that server's pid (not before, with none)."""
        a = Mux(self.serve(opts=FAST + ["--max-servers", "1"]))
        a.send("v", initialize(1))
        self.assert_response(a.msg("v"), 1)
        b = Mux(self.serve(opts=FAST + ["--max-servers", "1", "-v"]))
        b.send("s", initialize(1), call(2, "env"))
        self.assert_response(b.msg("s", 15), 1)
        pid = structured(b.msg("s"))["pid"]
        self.assertIn("its pool is full", b.p.stderr())
        self.assertEqual(b.event("s", "started")["pid"], pid)
        self.assertEqual(a.event("v", "suspended")["reason"], "pool")
        for m in (a, b):
            m.p.close_stdin()
            self.assertEqual(m.p.wait(10), 0)

    def test_a_stopped_keepers_slot_is_waited_for_its_bound_only(self):
        """mcpmux SIGKILLed while its keeper is stopped (SIGSTOP): the keeper's lock holds
        the slot, which nothing can take from it, as a stopped keeper is not told from a
        slow one, nor what it has still to end from nothing.  A waiter waits its bound,
        then starts over the cap; the keeper, let go on, frees the slot."""
        opts = ["--eof-grace", "200", "--term-grace", "200", "--kill-deadline", "600",
                "--max-servers", "1", "--pool", "p"]
        a = self.wrap(opts=opts)
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        keeper = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == a.pid], 5,
                            "the keeper")[0]
        os.kill(keeper, signal.SIGSTOP)
        try:
            a.kill()
            bound = 2.0  # (200 + 200 + 600) ms + 1 s
            t0 = time.monotonic()
            b = self.wrap(opts=opts)
            b.send(initialize(1))
            self.assert_response(b.msg(bound + 5), 1)
            waited = time.monotonic() - t0
            self.assertEqual(sorted(self.pool_files()),
                             sorted(["s.%d.1" % a.pid, "s.%d.1" % b.pid]))
        finally:
            os.kill(keeper, signal.SIGCONT)
        print("a stopped keeper's slot: waited %.2f s" % waited)
        self.assertGreaterEqual(waited, bound)
        self.assertIn("no server's slot came free in 2 s", b.stderr())
        wait_until(lambda: self.pool_files() == ["s.%d.1" % b.pid], 10,
                   "the keeper to free the killed instance's slot")
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def test_a_wait_is_bounded_by_the_idle_servers_teardown(self):
        """An instance that cannot answer the ask (stopped) holds a new server back for no
        longer than its idle server's teardown (--eof-grace + --term-grace +
        --kill-deadline) + 1 s: then the new one starts anyway, and mcpmux says so."""
        log_a = os.path.join(self.tmp.name, "a.log")
        a = self.wrap(opts=FAST + ["--max-servers", "1", "--log", log_a])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        bound = 2.0  # (200 + 200 + 600) ms + 1 s
        os.kill(a.pid, signal.SIGSTOP)  # the ask (SIGUSR2) stays pending
        try:
            t0 = time.monotonic()
            b = self.wrap(opts=["--eof-grace", "200", "--term-grace", "200",
                                "--kill-deadline", "600", "--max-servers", "1"])
            b.send(initialize(1))
            self.assert_response(b.msg(bound + 5), 1)
            waited = time.monotonic() - t0
            self.assertEqual(len(self.servers()), 2)  # a's is still there: over the cap
        finally:
            os.kill(a.pid, signal.SIGCONT)
        print("a stopped instance's slot: waited %.2f s" % waited)
        self.assertGreaterEqual(waited, bound)
        # a's server is idle (its instance could not answer): not said to be busy
        self.assertRegex(b.stderr(), r"mcpmux: pool [^\n]*: no server's slot came free in 2 s: "
                         r"one more starts, 1 of 1 live \(the pool shrinks back as soon as one "
                         r"is idle\)\n")
        self.assertNotIn("none idle", b.stderr())
        # a, going on, answers the ask it was sent: the pool is back to one server
        wait_until(lambda: events(log_a, "suspended"), 10, "a's server to be suspended")
        self.assertEqual(events(log_a, "suspended")[0]["reason"], "pool")
        wait_until(lambda: len(self.servers()) == 1, 10, "the pool to shrink back to 1")
        for p in (a, b):
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def test_a_directory_locked_for_the_whole_wait_is_said(self):
        """The pool's directory locked by another process for longer than the wait's bound
        (an instance stopped while it looked): the server starts at the bound, and mcpmux
        says why its start waited."""
        opts = FAST + ["--kill-deadline", "600", "--max-servers", "1", "--pool", "locked"]
        bound = 2.2  # (300 + 300 + 600) ms + 1 s
        a = self.wrap(opts=opts)  # makes the pool's directory
        a.close_stdin()
        self.assertEqual(a.wait(), 0)
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        (sub,) = os.listdir(d)
        fd = os.open(os.path.join(d, sub), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            t0 = time.monotonic()
            b = self.wrap(opts=opts)
            b.send(initialize(1))
            self.assert_response(b.msg(bound + 5), 1)
            waited = time.monotonic() - t0
        finally:
            os.close(fd)
        print("a directory locked for good: waited %.2f s" % waited)
        self.assertGreaterEqual(waited, bound)
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        self.assertIn("mcpmux: pool locked: its directory stayed locked by another process "
                      "for 2.2 s: the server starts without a count of the pool (it may be "
                      "over the cap)", b.stderr())
        self.assert_no_leftovers()
        self.assertEqual(self.pool_files(), [])

    def test_sessions_waiting_in_one_instance_start_in_turn(self):
        """Sessions of one serve that wait for the pool get their slots in the order they
        asked: the first to wait is not left to its deadline (and then started over the
        cap) while later ones go first."""
        log = os.path.join(self.tmp.name, "serve.log")
        # --ignore-eof: each suspend takes the eof grace, so that all of them wait
        m = Mux(self.serve("--ignore-eof", opts=FAST + ["--max-servers", "1", "--log", log]))
        m.send("a", initialize(1))
        self.assert_response(m.msg("a"), 1)
        waiting = ["b", "c", "d", "e"]
        # A notification each, no request: a server granted to a waiter is then idle at
        # once, never busy (which would start the next waiter over the cap at once).
        for s in waiting:
            m.send(s, note("notifications/initialized"))
        order = [m.take(lambda e: e.get("event") == "started" and e.get("session") in waiting,
                        15)["session"] for _ in waiting]
        self.assertEqual(order, waiting)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assertNotIn("came free", m.p.stderr())
        self.assertEqual(self.most_at_once([log]), 1)

    def test_a_burst_of_waiters_holds_the_first_back_no_longer(self):
        """Sessions that come to wait for the slot, one every 5 ms: the first of them to
        wait gets it as soon as it is free, not once they stop coming (each new waiter put
        the pool's next look back by 20 ms, so that none came while they came)."""
        log = os.path.join(self.tmp.name, "serve.log")
        m = Mux(self.serve(opts=FAST + ["--max-servers", "1", "--log", log]))
        m.send("a", initialize(1))
        self.assert_response(m.msg("a"), 1)
        m.send("b", initialize(1))
        n = 200
        for i in range(n):  # notifications: a server granted to one of them is idle at once
            m.send("c%d" % i, note("notifications/initialized"))
            time.sleep(0.005)
        self.assert_response(m.msg("b", 15), 1)
        records = log_records(log)
        b_started = next(k for k, r in enumerate(records)
                         if r.get("session") == "b" and r.get("event") == "started")
        half = next(k for k, r in enumerate(records)
                    if r.get("session") == "c%d" % (n // 2) and r.get("dir") == "in")
        self.assertLess(b_started, half, "b started only when the others stopped coming")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(20), 0)
        self.assertNotIn("came free", m.p.stderr())

    def test_a_session_ended_while_it_waits_gives_its_turn_up(self):
        """An end-of-run for a session that waits for a slot ends it at once, with no
        server; the slot goes to the next one waiting."""
        log = os.path.join(self.tmp.name, "serve.log")
        # --ignore-eof: a's suspend takes the eof grace, so that b and c wait meanwhile
        m = Mux(self.serve("--ignore-eof", opts=["--eof-grace", "2000", "--term-grace", "300",
                                                 "--max-servers", "1", "--log", log]))
        m.send("a", initialize(1), call(2, "env"))
        self.assert_response(m.msg("a"), 1)
        a_pid = structured(m.msg("a"))["pid"]
        m.send("b", initialize(1))
        m.send("c", initialize(1))
        ids = iter(range(100, 1000))

        def states():
            got = m.control(next(ids), "mcpmux/list")["message"]["result"]["sessions"]
            return {x["session"]: x["state"] for x in got}
        wait_until(lambda: states() == {"a": "suspending", "b": "waiting", "c": "waiting"},
                   5, "b and c to wait for a's slot")
        t0 = time.monotonic()
        m.send("b", req(2, "mcpmux/endRun"))
        self.assert_error(m.msg("b"), 1, -32000)  # its held initialize
        r = self.assert_response(m.msg("b"), 2)
        self.assertEqual((r["pid"], r["escalation"], r["ms"]), (None, "none", 0))
        self.assertIsNone(m.event("b", "ended")["pid"])
        self.assertLess(time.monotonic() - t0, 1 * SLOW)
        self.assertTrue(alive(a_pid))  # at once: not when a slot came free
        # c is next: it starts as soon as a's server is gone, not at its wait's end
        self.assert_response(m.msg("c", 6), 1)
        self.assertFalse(alive(a_pid))
        c_pid = m.event("c", "started")["pid"]
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assertNotIn("came free", m.p.stderr())
        self.assertEqual([(e["session"], e["pid"]) for e in events(log, "started")],
                         [("a", a_pid), ("c", c_pid)])  # none for b
        self.assertEqual(self.most_at_once([log]), 1)

    def test_ctl_stats_shows_the_pool_over_its_cap(self):
        """Every server busy, one more starts: `ctl stats` says the pool is over, and not
        once it has shrunk back."""
        path = os.path.join(self.tmp.name, "mux.sock")
        srv = self.serve(opts=FAST + ["--max-servers", "1", "--listen", path])
        wait_until(lambda: os.path.exists(path), 5, "the socket")

        def pool():
            p = self.start([MCPMUX, "ctl", "--json", path, "stats"])
            out = p.read_to_eof()
            self.assertEqual(p.wait(), 0, p.stderr())
            return json.loads(out)["pool"]
        clients = {}
        for s in ("a", "b"):
            c = clients[s] = self.start([MCPMUX, "connect", "--session", s, path])
            c.send(initialize(1))
            self.assert_response(c.msg(), 1)
            c.send(call(2, "sleep", ms=2000))
        wait_until(lambda: len(self.servers()) == 2, 5, "two busy servers")
        self.assertEqual(pool(), {"name": pool()["name"], "max": 1, "live": 2, "over": True})
        for c in clients.values():
            self.assert_response(c.msg(), 2)
        # idle: one is suspended, and the pool is no longer over
        wait_until(lambda: pool()["live"] == 1, 10, "the pool to shrink back to 1")
        self.assertFalse(pool()["over"])
        for c in clients.values():
            c.close_stdin()
            c.wait()
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)
        self.assert_no_leftovers()

    def a_kept_its_server(self, log, pid):
        """The instance of that log was asked nothing: its server runs on."""
        self.assertEqual(events(log, "suspended"), [])
        self.assertTrue(alive(pid))

    def end_all(self, *ps):
        """Each instance exits 0 at its client's EOF, and nothing is left."""
        for p in ps:
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        self.assert_no_leftovers()

    def test_the_least_recently_active_idle_server_is_suspended(self):
        """At the cap, the idle server whose last answer is the older goes (not the one
        that was used first)."""
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b", "c")]
        a, b = [self.wrap(opts=FAST + ["--max-servers", "2", "--pool", "p", "--log", log])
                for log in logs[:2]]
        pids = []
        for p in (a, b):  # a starts first, and is used first ...
            p.send(initialize(1))
            self.assert_response(p.msg(), 1)
            pids.append(self.pid_of(p.send, p.msg, 2))
        a_pid, b_pid = pids
        b.send(call(3, "echo", text="b"))  # ... and last: b's last answer is the older
        self.assert_response(b.msg(), 3)
        a.send(call(3, "echo", text="a"))
        self.assert_response(a.msg(), 3)
        c = self.wrap(opts=FAST + ["--max-servers", "2", "--pool", "p", "--log", logs[2]])
        c.send(initialize(1))
        self.assert_response(c.msg(10), 1)
        wait_until(lambda: events(logs[1], "suspended"), 5, "b's server to be suspended")
        self.assertEqual([(e["reason"], e["pid"]) for e in events(logs[1], "suspended")],
                         [("pool", b_pid)])
        self.assertFalse(alive(b_pid))
        self.a_kept_its_server(logs[0], a_pid)
        self.end_all(a, b, c)

    def test_command_lines_that_differ_late_are_two_pools(self):
        """Two command lines equal in their first 300 bytes are two servers, two pools: the
        second starts at once, and the first's server is not asked to make room."""
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        deep = os.path.join(self.tmp.name, *(["d" * 50] * 6))  # no such file: no behaviour
        ps, pids = [], []
        for k, log in zip("ab", logs):
            p = self.wrap(opts=FAST + ["--max-servers", "1", "--log", log],
                          command=[FIXTURE, "--behave-file=" + os.path.join(deep, k)])
            p.send(initialize(1))
            self.assert_response(p.msg(10), 1)
            pids.append(self.pid_of(p.send, p.msg, 2))
            ps.append(p)
        self.a_kept_its_server(logs[0], pids[0])
        self.assertEqual(len(os.listdir(os.path.join(self.tmp.name, "mcpmux", "pools"))), 2)
        self.assertEqual(len(self.pool_files()), 2)
        self.end_all(*ps)

    def test_a_waiter_asks_one_server_while_its_slot_is_on_its_way(self):
        """The asked server is slow to go (it ignores stdin's EOF, and its EOF grace is
        half a second): the waiting instance looks again every tick meanwhile, and asks no
        other idle server to go as well; one server ends for one waiter."""
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b", "c")]
        pool = ["--max-servers", "2", "--pool", "one-for-one"]
        a = self.wrap(opts=FAST + pool + ["--log", logs[0]])
        b = self.wrap("--ignore-eof", opts=["--eof-grace", "500", "--term-grace", "300",
                                            "--log", logs[1]] + pool)
        pids = []
        for p in (b, a):  # b first: the least recently active, the one asked
            p.send(initialize(1))
            self.assert_response(p.msg(), 1)
            pids.append(self.pid_of(p.send, p.msg, 2))
        b_pid, a_pid = pids
        c = self.wrap(opts=FAST + pool + ["--log", logs[2]])
        c.send(initialize(1))
        self.assert_response(c.msg(10), 1)
        # (b logs the suspend at the end of the turn that let the slot go: waited for)
        got = wait_until(lambda: events(logs[1], "suspended"), 5, "b's suspend, logged")
        self.assertEqual([(e["reason"], e["pid"], e["escalation"]) for e in got],
                         [("pool", b_pid, "term")])
        self.a_kept_its_server(logs[0], a_pid)
        self.end_all(a, b, c)

    def watch_asks(self):
        """An inotify watch on the test's pool directory: asks() counts the asks made in it
        since (each is an a.PID.SEQ file made there).  Removals are watched too: the
        kernel merges an event with the one before it, unread, when they are the same."""
        d = os.path.join(self.tmp.name, "mcpmux", "pools")
        (sub,) = os.listdir(d)
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.addCleanup(os.close, fd)
        in_create, in_delete, in_q_overflow = 0x100, 0x200, 0x4000
        if libc.inotify_add_watch(fd, os.path.join(d, sub).encode(), in_create | in_delete) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        made = []

        def asks():
            while True:
                try:
                    buf = os.read(fd, 65536)
                except BlockingIOError:
                    return sum(1 for n in made if n.startswith("a."))
                off = 0
                while off < len(buf):
                    _, mask, _, n = struct.unpack_from("iIII", buf, off)
                    self.assertFalse(mask & in_q_overflow, "the watch's queue overflowed")
                    if mask & in_create:
                        made.append(buf[off + 16:off + 16 + n].split(b"\0")[0].decode())
                    off += 16 + n
        return asks

    def slot_of_an_ending_server(self, fixture_args, end):
        """a's server is being ended (end(a), then 1 s of EOF grace: it ignores the EOF)
        when b wants the pool's one slot.  b waits for it, asks at most once, and starts
        as soon as a's server is gone, not over the cap.  Returns the asks made."""
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        pool = ["--max-servers", "1", "--pool", "p"]
        a = self.wrap("--ignore-eof", *fixture_args,
                      opts=["--eof-grace", "1000", "--term-grace", "300", "-v",
                            "--log", logs[0]] + pool)
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        end(a)
        wait_until(lambda: "teardown begins" in a.stderr(), 5, "a's server to be ended")
        asks = self.watch_asks()
        b = self.wrap(opts=FAST + pool + ["--log", logs[1]])
        b.send(initialize(1))
        self.assert_response(b.msg(10), 1)
        self.assertEqual(a.wait(), 128 + signal.SIGTERM)  # its server ignored the EOF
        n = asks()
        print("asks for the slot of a server being ended: %d" % n)
        self.assertNotIn("came free", b.stderr())
        self.assertNotIn("one more starts", b.stderr())
        self.assertEqual(events(logs[0], "suspended"), [])
        self.assertEqual(self.most_at_once(logs), 1)
        self.end_all(b)
        return n

    def test_a_server_whose_run_ends_is_not_asked_for_its_slot(self):
        """a's client ends its run: a's server is on its way, the asker waits for it and
        asks nothing (it asked again at every look, 50 times a second, as the server,
        ended, refused to be suspended)."""
        self.assertEqual(self.slot_of_an_ending_server([], lambda a: a.close_stdin()), 0)

    def test_a_server_ending_by_itself_is_asked_for_its_slot_once(self):
        """a's server closes its stdout (a's end of the run begins) and ignores the EOF:
        asked for its slot, a says at once that it is on its way; one ask, not one at
        every look."""
        self.assertEqual(self.slot_of_an_ending_server(["--stdout-close"], lambda a: None), 1)

    def test_the_slot_given_up_goes_to_the_waiter_that_asked(self):
        """a's idle server is asked to go for b (another instance) and is slow to go (it
        ignores stdin's EOF); a's client sends a call meanwhile.  The slot a gives up goes
        to b, which asked for it: a waits behind b (and then asks b's idle server to go in
        turn), rather than taking the slot back at once, which left b to ask again and a's
        fresh server to be suspended a second time."""
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        pool = ["--max-servers", "1", "--pool", "p"]
        a = self.wrap("--ignore-eof", opts=["--eof-grace", "1000", "--term-grace", "300",
                                            "-v", "--log", logs[0]] + pool)
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        a_pid = self.pid_of(a.send, a.msg, 2)
        b = self.wrap(opts=FAST + pool + ["--log", logs[1]])  # its server starts at launch
        wait_until(lambda: "teardown begins" in a.stderr(), 5, "b to ask for a's slot")
        a.send(call(3, "echo", text="held"))
        self.assertEqual(a.msg(15)["result"]["content"][0]["text"], "held")
        self.assertFalse(alive(a_pid))
        b_started = events(logs[1], "started")
        self.assertEqual(len(b_started), 1)
        self.assertLess(b_started[0]["ts"], events(logs[0], "resumed")[0]["ts"])
        self.assertEqual([e["reason"] for e in events(logs[0], "suspended")], ["pool"])
        # (b logs its suspend at the end of the turn that let the slot go to a: waited for)
        got = wait_until(lambda: events(logs[1], "suspended"), 5, "b's suspend, logged")
        self.assertEqual([e["reason"] for e in got], ["pool"])
        a.close_stdin()
        self.assertEqual(a.wait(), 128 + signal.SIGTERM)  # its server ignores the EOF
        b.send(initialize(1))
        self.assert_response(b.msg(10), 1)
        b.close_stdin()
        self.assertEqual(b.wait(), 0)
        for p in (a, b):
            self.assertNotIn("came free", p.stderr())
            self.assertNotIn("one more starts", p.stderr())
        self.assertEqual(self.most_at_once(logs), 1)
        self.assert_no_leftovers()

    def test_a_message_the_server_is_still_writing_is_not_cut_off_by_an_ask(self):
        """a's server writes a long notification in pieces, 300 ms apart, when b asks for
        its slot: a server whose line grows is busy, so b starts at once, over the cap (a
        took the ask and cut the line off); a's client gets the notification whole, and
        the pool shrinks back to one server after it."""
        began = os.path.join(self.tmp.name, "began")
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        pool = ["--max-servers", "1", "--pool", "p"]
        a = self.wrap(opts=FAST + pool + ["--log", logs[0]],
                      command=[sys.executable, "-c", WrapSuspend.PIECES, began, "0.3"])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        a.send(note("go"))
        wait_until(lambda: os.path.exists(began), 5, "a's server to begin its line")
        b = self.wrap(opts=FAST + pool + ["--log", logs[1]])
        b.send(initialize(1))
        m = a.msg()
        self.assertEqual((m.get("method"), m["params"]["data"]), ("slow", "x" * 8000))
        self.assertNotIn("not JSON-RPC", a.stderr())
        self.assert_response(b.msg(10), 1)
        self.assertIn("none idle: one more starts", b.stderr())
        wait_until(lambda: any(events(log, "suspended") for log in logs), 10,
                   "the pool to shrink back to one server")
        self.assertEqual([e["reason"] for log in logs for e in events(log, "suspended")],
                         ["pool"])
        self.end_all(a, b)

    def test_a_server_being_resumed_is_busy(self):
        """A server whose replay is under way (slow to answer initialize) with a request
        held behind it is not idle: its instance would not give it up.  A new server of
        the full pool starts at once, over the cap, and does not wait for that replay."""
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "a.log")
        pool = ["--max-servers", "1", "--pool", "p"]
        a = self.wrap(opts=FAST + SUSPEND + pool + ["--log", log],
                      command=[FIXTURE, "--behave-file=" + behave])
        self.setup_session(a.send, a.msg)
        pid = self.pid_of(a.send, a.msg, 6)
        self.wait_suspended(pid, log=log)
        with open(behave, "w") as f:
            f.write("slow-init=3000\n")
        a.send(call(7, "echo", text="held"))
        wait_until(self.servers, 5, "a's fresh server")
        t0 = time.monotonic()
        b = self.wrap(opts=FAST + pool)
        b.send(initialize(1))
        self.assert_response(b.msg(10), 1)
        waited = time.monotonic() - t0
        self.assertFalse(a.has_line(), "b waited for a's replay")
        self.assertLess(waited, 2)
        self.assertIn("none idle: one more starts", b.stderr())
        self.assertEqual(a.msg(10)["result"]["content"][0]["text"], "held")
        self.assertEqual([e["reason"] for e in events(log, "suspended")], ["idle"])
        self.end_all(a, b)

    def test_an_ask_at_the_exit_never_ends_mcpmux(self):
        """SIGUSR2 (another instance's ask for a slot) that comes while mcpmux closes its
        pool is ignored: between the stop of its watcher (the default action back) and
        the ignore, it ended the process."""
        def catches_usr2(pid):
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return int(line.split()[1], 16) >> (signal.SIGUSR2 - 1) & 1
            return 0

        # The server's EOF grace is long: the flood of signals takes the CPU from it, and
        # on a loaded machine FAST's 300 ms ran out before it read its EOF (SIGTERM: 143).
        opts = ["--eof-grace", str(int(3000 * SLOW)), "--term-grace", "300", "--max-servers",
                "1"]
        for _ in range(40):
            p = self.wrap(opts=opts)
            wait_until(lambda: catches_usr2(p.pid), 10, "the pool's SIGUSR2 watcher")
            p.close_stdin()
            while p.p.poll() is None:  # not reaped: the pid is still p's
                for _ in range(200):
                    os.kill(p.pid, signal.SIGUSR2)
            self.assertEqual(p.wait(), 0, p.stderr())

    def test_no_pool_directory_the_server_starts_anyway(self):
        """A pool that cannot keep its files never stops a server: it starts uncounted,
        and mcpmux says so."""
        blocked = os.path.join(self.tmp.name, "not-a-dir")
        with open(blocked, "w") as f:
            f.write("a file where the runtime directory would go\n")
        self.env["XDG_RUNTIME_DIR"] = blocked
        p = self.wrap(opts=FAST + ["--max-servers", "1"])
        p.send(initialize(1), call(2, "echo", text="anyway"))
        self.assert_response(p.msg(), 1)
        self.assertEqual(p.msg()["result"]["content"][0]["text"], "anyway")
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertIn("--max-servers is not kept", p.stderr())

    def test_without_a_runtime_directory_the_pool_is_under_tmp(self):
        """No XDG_RUNTIME_DIR: the pool is /tmp/mcpmux-UID/pools/HASH (HASH: FNV-1a of its
        name), 0700, and the cap holds there."""
        del self.env["XDG_RUNTIME_DIR"]
        name = "test-" + self.tag  # the directory is the machine's: a pool of the test's own
        h = 14695981039346656037
        for ch in name.encode():
            h = ((h ^ ch) * 1099511628211) & (2 ** 64 - 1)
        pools = "/tmp/mcpmux-%d/pools" % os.getuid()
        d = os.path.join(pools, "%016x" % h)
        self.addCleanup(shutil.rmtree, d, True)

        def slots():
            return [f for f in os.listdir(d) if f.startswith("s.")]
        logs = [os.path.join(self.tmp.name, n + ".log") for n in ("a", "b")]
        opts = FAST + ["--max-servers", "1", "--pool", name, "--log"]
        a = self.wrap(opts=opts + [logs[0]])
        a.send(initialize(1))
        self.assert_response(a.msg(), 1)
        for path in (pools, d):
            st = os.lstat(path)
            self.assertTrue(stat.S_ISDIR(st.st_mode), path)
            self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o700, os.getuid()), path)
        with open(os.path.join(d, "name")) as f:
            self.assertEqual(f.read(), name + "\n")
        self.assertEqual([f.split(".")[1] for f in slots()], [str(a.pid)])
        b = self.wrap(opts=opts + [logs[1]])
        b.send(initialize(1))
        self.assert_response(b.msg(10), 1)
        wait_until(lambda: events(logs[0], "suspended"), 5, "a's server to be suspended")
        self.assertEqual(events(logs[0], "suspended")[0]["reason"], "pool")
        self.assertEqual([f.split(".")[1] for f in slots()], [str(b.pid)])
        self.assertEqual(len(self.servers()), 1)
        for p in (a, b):
            p.close_stdin()
            self.assertEqual(p.wait(), 0)
        self.assertEqual(slots(), [])

    def test_serve_caps_its_sessions(self):
        log = os.path.join(self.tmp.name, "serve.log")
        p = self.serve(opts=FAST + ["--max-servers", "2", "--log", log])
        m = Mux(p)
        sessions = ["s%d" % i for i in range(5)]
        for s in sessions:
            m.send(s, initialize(1))
            self.assert_response(m.msg(s), 1)
        for s in sessions:
            m.send(s, call(2, "echo", text=s))
            self.assertEqual(m.msg(s)["result"]["content"][0]["text"], s)
        stats = m.control(9, "mcpmux/stats")["message"]["result"]
        self.assertEqual((stats["pool"]["max"], stats["pool"]["over"]), (2, False))
        self.assertLessEqual(stats["pool"]["live"], 2)
        states = [x["state"] for x in m.control(10, "mcpmux/list")["message"]["result"]
                  ["sessions"]]
        self.assertEqual(sorted(states).count("suspended"), 3)
        p.close_stdin()
        self.assertEqual(p.wait(10), 0)
        self.assert_no_leftovers()
        self.assertEqual(self.most_at_once([log]), 2)


class Memory(Base):
    def test_a_suspended_wrapper_is_small(self):
        p = self.wrap(opts=FAST + SUSPEND)
        self.setup_session(p.send, p.msg)
        pid = self.pid_of(p.send, p.msg, 6)
        self.wait_suspended(pid)
        kib = rss_anon_kib(p.pid)
        print("suspended wrapper: RssAnon %d KiB" % kib)
        if not os.environ.get("MCPMUX_TEST_SANITIZED"):
            self.assertLessEqual(kib, 512)
        p.close_stdin()
        self.assertEqual(p.wait(), 0)


if __name__ == "__main__":
    main()
