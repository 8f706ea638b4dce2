"""Serve mode over stdio: one backend per session ID, envelopes, events, control."""

import array
import fcntl
import json
import os
import re
import resource
import signal
import sys
import termios
import time
import unittest

from test_hardening import logged
from mcptest import (FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, Case, alive, call, deadline,
                     initialize, main, nested, note, proc_report, req, rss_anon_kib, vm_hwm_kib,
                     wait_until, ASKER)

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)

FAST = ["--eof-grace", "300", "--term-grace", "300"]
# What serve answers a plain JSON-RPC request with, and says once on stderr.
PLAIN_MCP = ('mcpmux serve speaks envelopes ({"session":ID,"message":...}), not plain MCP: '
             'to wrap one server for a client, use `mcpmux -- COMMAND` (or `mcpmux connect` '
             'to reach a serve)')
PLAIN_MCP_SAID = ("mcpmux: a client sent plain MCP (a JSON-RPC message), not an "
                  "envelope: `mcpmux serve` speaks envelopes; to wrap one server for a "
                  "client, use `mcpmux -- COMMAND` (or `mcpmux connect` to reach a serve)\n")


def env(session, message):
    return {"session": session, "message": message}


class Mux:
    """Envelope-level client of one serve process: sorts what arrives by session."""

    def __init__(self, p):
        self.p = p
        self.inbox = []

    def send(self, session, *msgs):
        self.p.send(*[env(session, m) for m in msgs])

    def control(self, id_, method, params=None):
        self.p.send({"message": req(id_, method, params)})
        return self.take(lambda e: "session" not in e and e.get("message", {}).get("id") == id_)

    def take(self, pred, seconds=10):
        """The first envelope (already received or next to arrive) matching pred."""
        end = deadline(seconds)
        while True:
            for i, e in enumerate(self.inbox):
                if pred(e):
                    return self.inbox.pop(i)
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching envelope; inbox: %r" % self.inbox[-5:])
            self.inbox.append(self.p.msg(remaining))

    def msg(self, session, seconds=10):
        return self.take(lambda e: e.get("session") == session and "message" in e,
                         seconds)["message"]

    def event(self, session, name, seconds=10):
        return self.take(lambda e: e.get("session") == session and e.get("event") == name,
                         seconds)


class Sessions(Case):
    def test_stats_uptime_is_the_seconds_since_start(self):
        """mcpmux/stats's uptime_s: a number of seconds since mcpmux started (monotonic),
        which grows between two calls by the time between them."""
        t0 = time.monotonic()
        m = Mux(self.serve(opts=FAST))
        sent1 = time.monotonic()
        u1 = m.control(1, "mcpmux/stats")["message"]["result"]["uptime_s"]
        got1 = time.monotonic()
        self.assertIsInstance(u1, (int, float))
        self.assertNotIsInstance(u1, bool)
        self.assertGreaterEqual(u1, 0)
        self.assertLessEqual(u1, got1 - t0 + 0.001)  # it started after t0; 3 decimals
        time.sleep(0.5)  # the known time between the two calls
        sent2 = time.monotonic()
        u2 = m.control(2, "mcpmux/stats")["message"]["result"]["uptime_s"]
        got2 = time.monotonic()
        self.assertGreaterEqual(u2 - u1, sent2 - got1 - 0.002, (u1, u2))
        self.assertLessEqual(u2 - u1, got2 - sent1 + 0.002, (u1, u2))
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_hundred_concurrent_sessions(self):
        """Each session has its own backend and gets only its own responses."""
        m = Mux(self.serve(opts=FAST))
        ids = ["s-%d" % i for i in range(100)]
        for s in ids:
            m.send(s, initialize(1), call(2, "env"))
        pids = {}
        for s in ids:
            started = m.event(s, "started")
            self.assertEqual(m.msg(s)["id"], 1)
            e = m.msg(s)["result"]["structuredContent"]
            self.assertEqual(e["session"], s)
            self.assertEqual(e["pid"], started["pid"])
            pids[s] = e["pid"]
        self.assertEqual(len(set(pids.values())), 100)
        # interleaved traffic: each answer carries its own session's text
        for s in ids:
            m.send(s, call(3, "echo", text="for " + s))
        for s in ids:
            r = m.msg(s)
            self.assertEqual(r["result"]["content"][0]["text"], "for " + s)
        stats = m.control(9, "mcpmux/stats")["message"]["result"]
        self.assertEqual(stats["sessions"], 100)
        lst = m.control(10, "mcpmux/list")["message"]["result"]
        self.assertEqual(sorted(x["session"] for x in lst["sessions"]), sorted(ids))
        # one session's end-of-run leaves the others working
        m.send("s-7", req(4, "mcpmux/endRun"))
        r = m.msg("s-7")
        self.assertEqual(r["id"], 4)
        self.assertEqual(r["result"]["escalation"], "eof")
        ended = m.event("s-7", "ended")
        self.assertEqual(ended["pid"], pids["s-7"])
        self.assertEqual(ended["escalation"], "eof")
        self.assertFalse(alive(pids["s-7"]))
        for s in ids:
            if s != "s-7":
                m.send(s, req(5, "ping"))
                self.assertEqual(m.msg(s)["id"], 5)
                self.assertTrue(alive(pids[s]))
        m.p.close_stdin()
        self.assertEqual(m.p.wait(15), 0)
        self.assert_no_leftovers(0)

    def test_stubborn_session_does_not_delay_others(self):
        # every session of this serve misbehaves; "slow" is ended while "fast" works
        m = Mux(self.serve("--ignore-sigterm", "--daemonize-grandchild",
                           opts=["--eof-grace", "500", "--term-grace", "500"]))
        m.send("slow", req(1, "ping"))
        m.send("fast", req(1, "ping"))
        m.msg("slow")
        m.msg("fast")
        t0 = time.monotonic()
        m.send("slow", req(2, "mcpmux/endRun"))
        worst = 0.0
        for i in range(50):
            t = time.monotonic()
            m.send("fast", req(10 + i, "ping"))
            self.assertEqual(m.msg("fast")["id"], 10 + i)
            worst = max(worst, time.monotonic() - t)
        self.assertLess(time.monotonic() - t0, 0.9 * SLOW, "50 round trips during the teardown")
        r = m.msg("slow", 5)
        self.assertEqual(r["result"]["escalation"], "kill")
        self.assertEqual(m.event("slow", "ended")["escalation"], "kill")
        self.assertLess(worst, 0.25)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assert_no_leftovers(0)

    def test_control_end_run(self):
        m = Mux(self.serve(opts=FAST))
        m.send("a", req(1, "ping"))
        pid = m.event("a", "started")["pid"]
        m.msg("a")
        r = m.control(2, "mcpmux/endRun", {"session": "a"})["message"]
        self.assertEqual(r["result"]["session"], "a")
        self.assertEqual(r["result"]["pid"], pid)
        self.assertFalse(alive(pid))
        r = m.control(3, "mcpmux/endRun", {"session": "nope"})["message"]
        self.assertEqual(r["result"], {"session": "nope", "pid": None, "exit": None,
                                       "escalation": "none", "ms": 0})
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_max_sessions(self):
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "2"]))
        m.send("a", req(1, "ping"))
        m.send("b", req(1, "ping"))
        m.msg("a")
        m.msg("b")
        m.send("c", req(7, "ping"))
        err = m.msg("c")
        self.assertEqual(err["id"], 7)
        self.assertEqual(err["error"]["code"], -32000)
        self.assertIn("max-sessions", err["error"]["message"])
        m.send("a", req(2, "ping"))
        self.assertEqual(m.msg("a")["id"], 2)
        m.send("b", req(2, "mcpmux/endRun"))
        m.msg("b")
        m.send("c", req(8, "ping"))
        self.assertEqual(m.msg("c")["id"], 8)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_batch_refused_by_max_sessions_gets_each_request_answered(self):
        """A batch that would start a session over --max-sessions: one array with an error
        for each of its requests, by its id, none for its notification (JSON-RPC 2.0's
        answer to a batch); a notification alone gets the error event."""
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "1"]))
        m.send("a", req(1, "ping"))
        m.msg("a")
        m.send("b", [initialize("x"), req(5, "ping"), note("notifications/initialized")])
        got = m.msg("b")
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [("x", -32000), (5, -32000)], got)
        self.assertIn("max-sessions", got[0]["error"]["message"])
        m.send("b", note("notifications/initialized"))
        self.assertIn("max-sessions", m.take(
            lambda e: e.get("session") == "b" and "error" in e)["error"]["message"])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_refused_batch_answers_each_element_that_is_no_message(self):
        """A refused batch: an element that is no JSON-RPC message (1, "a", [], an object
        of neither kind) gets -32600 in the array, in its place, with id null (its own
        id when it has one), as JSON-RPC 2.0 answers [1,2,3]; a batch of nothing else gets
        one such error each."""
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "1"]))
        m.send("a", req(1, "ping"))
        m.msg("a")
        m.send("b", [1, req(7, "ping"), "a", note("notifications/x"), [], {"id": 3},
                     {"foo": 1}])
        got = m.msg("b")
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [(None, -32600), (7, -32000), (None, -32600), (None, -32600),
                          (3, -32600), (None, -32600)], got)
        self.assertIn("max-sessions", got[1]["error"]["message"])
        self.assertEqual(got[0]["error"]["message"],
                         "Invalid Request: not a JSON-RPC 2.0 message")
        m.send("c", [1, 2, 3])
        got = m.msg("c")
        self.assertEqual(got, [{"jsonrpc": "2.0", "id": None,
                                "error": {"code": -32600, "message":
                                          "Invalid Request: not a JSON-RPC 2.0 message"}}] * 3)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_refused_batch_with_no_request_still_gets_the_reason(self):
        """A refused batch with no request (elements that are no message, notifications):
        its -32600s in one array, and the error event that gives the reason, as for a
        notification alone."""
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "1"]))
        m.send("a", req(1, "ping"))
        m.msg("a")
        m.send("b", [1, note("notifications/x")])
        got = m.msg("b")
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got], [(None, -32600)], got)
        self.assertIn("max-sessions", m.take(
            lambda e: e.get("session") == "b" and "error" in e)["error"]["message"])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_batch_of_more_than_1024_requests_refused_gets_each_answered(self):
        """A batch past the 1,024 elements mcpmux describes in full, refused (here by
        --max-sessions): its array has an error for each of its requests, in order, the
        last ones too; none for its notifications and other elements."""
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "1"]))
        m.send("a", req(1, "ping"))
        m.msg("a")
        batch = [req(i, "ping") for i in range(1100)]
        batch[1050:1050] = [note("notifications/x"), 7, [req("nested", "ping")]]
        m.send("b", batch)
        got = m.msg("b")
        self.assertIsInstance(got, list, got)
        self.assertEqual([g["id"] for g in got], list(range(1100)))
        self.assertEqual({g["error"]["code"] for g in got}, {-32000})
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    # answers a batch with one array, in the reverse order (JSON-RPC 2.0 allows any)
    REVERSER = (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    batch = json.loads(line)\n"
        "    out = [{'jsonrpc': '2.0', 'id': e['id'], 'result': {}} for e in reversed(batch)]\n"
        "    print(json.dumps(out), flush=True)\n")

    def test_the_answers_to_a_batch_of_more_than_1024_requests_are_all_matched(self):
        """A batch of 1,100 requests answered in one array in another order: each answer
        is matched to its request, past the 1,024th too, so that none is left in flight
        (a session with a request in flight never reaches its idle timeout, and would end
        with an error for an id already answered)."""
        m = Mux(self.serve(opts=FAST + ["--idle-timeout", "1"],
                           command=[sys.executable, "-c", self.REVERSER]))
        m.send("a", [req(i, "ping") for i in range(1100)])
        got = m.msg("a")
        self.assertEqual(sorted(g["id"] for g in got), list(range(1100)))
        sessions = m.control("l", "mcpmux/list")["message"]["result"]["sessions"]
        self.assertEqual(sessions[0]["pending"], 0, sessions)
        ended = m.event("a", "ended", 10)
        self.assertEqual(ended["escalation"], "eof", ended)
        self.assertEqual([e for e in m.inbox if "message" in e], [])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_idle_timeout_per_session(self):
        m = Mux(self.serve("--daemonize-grandchild", opts=FAST + ["--idle-timeout", "1"]))
        m.send("quiet", req(1, "ping"))
        m.send("busy", req(1, "ping"))
        m.msg("quiet")
        m.msg("busy")
        t0 = time.monotonic()
        i = 2
        while True:
            m.send("busy", req(i, "ping"))
            self.assertEqual(m.msg("busy")["id"], i)
            i += 1
            done = [e for e in m.inbox if e.get("session") == "quiet"
                    and e.get("event") == "ended"]
            if done:
                break
            self.assertLess(time.monotonic() - t0, 5 * SLOW)
            time.sleep(0.05)
        self.assertGreater(time.monotonic() - t0, 0.9)
        m.send("busy", req(i, "ping"))
        self.assertEqual(m.msg("busy")["id"], i)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)

    def test_an_idle_timeout_is_said(self):
        """A session ended by --idle-timeout is said on stderr at the default verbosity,
        once, naming it; -q silences it."""
        for quiet in (False, True):
            m = Mux(self.serve(opts=FAST + ["--idle-timeout", "0.5"]
                               + (["-q"] if quiet else [])))
            m.send("s-1", req(1, "ping"))
            m.msg("s-1")
            self.assertEqual(m.event("s-1", "ended")["exit"], {"code": 0})
            m.p.close_stdin()
            self.assertEqual(m.p.wait(), 0)
            said = "mcpmux: session s-1: idle for 0.5 s: ending it (--idle-timeout)\n"
            self.assertEqual(m.p.stderr().count(said), 0 if quiet else 1, m.p.stderr())
        self.assert_no_leftovers(0)

    def test_eof_ends_everything(self):
        m = Mux(self.serve("--daemonize-grandchild", "--ignore-sigterm", opts=FAST))
        for s in ("a", "b", "c"):
            m.send(s, req(1, "ping"))
        for s in ("a", "b", "c"):
            m.msg(s)
        m.p.close_stdin()
        for s in ("a", "b", "c"):
            self.assertEqual(m.event(s, "ended")["escalation"], "kill")
        self.assertEqual(m.p.wait(5), 0)
        self.assert_no_leftovers(0)

    def test_a_signal_ends_every_session_and_serve_exits_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            m = Mux(self.serve("--daemonize-grandchild", opts=FAST))
            for s in ("a", "b"):
                m.send(s, req(1, "ping"))
                m.msg(s)
            m.p.p.send_signal(sig)
            for s in ("a", "b"):
                self.assertIn(m.event(s, "ended")["escalation"], ("term", "kill"))
            self.assertEqual(m.p.wait(5), 0, sig)
            self.assert_no_leftovers(0)

    def test_signals_the_caller_ignored_end_no_session(self):
        """Under nohup (SIGHUP ignored), or as a background job of a shell without job
        control (SIGINT ignored), serve outlives those signals, as its servers, run
        directly, would: its sessions go on with the same servers.  SIGTERM, which the
        caller did not ignore, still ends every session, and serve exits 0."""
        def caller():
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        m = Mux(self.serve(opts=FAST, preexec_fn=caller))
        m.send("a", call(1, "env"))
        pid = m.msg("a")["result"]["structuredContent"]["pid"]
        m.p.p.send_signal(signal.SIGHUP)
        m.p.p.send_signal(signal.SIGINT)
        # serve has woken up to the signals by the time it has answered twice since
        for i in (2, 3):
            m.send("a", call(i, "env"))
            self.assertEqual(m.msg("a")["result"]["structuredContent"]["pid"], pid)
        m.p.p.send_signal(signal.SIGTERM)
        self.assertEqual(m.event("a", "ended")["escalation"], "eof")
        self.assertEqual(m.p.wait(5), 0)
        self.assertNotIn("Hangup", m.p.stderr())
        self.assertNotIn("Interrupt", m.p.stderr())
        self.assert_no_leftovers(0)

    def test_stdin_eof_ends_kept_sessions_too(self):
        m = Mux(self.serve(opts=FAST))
        m.p.send({"session": "k", "keep": True})
        self.assertEqual(m.event("k", "kept")["keep"], True)
        m.send("k", req(1, "ping"))
        m.msg("k")
        m.p.close_stdin()
        self.assertEqual(m.event("k", "ended")["escalation"], "eof")
        self.assertEqual(m.p.wait(5), 0)
        self.assert_no_leftovers(0)

    def test_control_requests_that_cannot_be_served(self):
        """An unknown control method gets -32601; an end without params.session -32602."""
        m = Mux(self.serve(opts=FAST))
        self.assertEqual(m.control(1, "mcpmux/bogus")["message"]["error"]["code"], -32601)
        for i, params in ((2, None), (3, {}), (4, {"session": 7})):
            self.assertEqual(m.control(i, "mcpmux/endRun", params)["message"]["error"]["code"],
                             -32602, params)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual(m.inbox, [])

    def test_the_default_max_sessions_follows_the_descriptor_limit(self):
        """Without --max-sessions: 1,024 sessions, or as many as the descriptor limit holds
        at four descriptors a session past 64 kept spare (48 under a limit of 256 or
        less); the session past it is refused."""
        def limited(n):
            return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        for nofile, want in ((8192, 1024), (300, (300 - 64) // 4), (200, 48)):
            with self.subTest(nofile=nofile):
                if os.geteuid() != 0 and hard != resource.RLIM_INFINITY and hard < nofile:
                    self.skipTest("a descriptor limit of %d is out of reach" % nofile)
                p = self.serve(opts=FAST, preexec_fn=limited(nofile))
                m = Mux(p)
                stats = m.control(1, "mcpmux/stats")["message"]["result"]
                self.assertEqual(stats["max_sessions"], want)
                if nofile == 200:
                    for i in range(want):
                        m.send("s-%d" % i, req(1, "ping"))
                    for i in range(want):
                        self.assertEqual(m.msg("s-%d" % i).get("id"), 1)
                    m.send("one-more", req(1, "ping"))
                    e = m.msg("one-more")
                    self.assertEqual(e.get("id"), 1, e)
                    self.assertIn("too many sessions (48 running; see --max-sessions)",
                                  e["error"]["message"])
                p.close_stdin()
                self.assertEqual(p.wait(10), 0, p.stderr())

    def test_a_request_while_the_run_is_ending_is_refused_at_once(self):
        """A session whose server is being ended (here it ignores stdin's EOF, and the
        EOF grace is long): a request for it gets -32000 at once, not when the teardown is
        over; the other sessions go on."""
        m = Mux(self.serve("--ignore-eof", opts=["--eof-grace", "2500",
                                                  "--term-grace", "300"]))
        for s in ("a", "b"):
            m.send(s, req(1, "ping"))
            self.assertEqual(m.msg(s).get("id"), 1)
        m.send("a", note("mcpmux/endRun"))
        wait_until(lambda: m.control(2, "mcpmux/list")["message"]["result"]["sessions"][0]
                   ["state"] == "ending", 5, "session a to be ending")
        t0 = time.monotonic()
        m.send("a", req(3, "ping"))
        e = m.msg("a")
        self.assertLess(time.monotonic() - t0, 1.0 * SLOW)  # not the 2.5 s of the grace
        self.assertEqual(e.get("id"), 3, e)
        self.assertEqual(e["error"]["code"], -32000)
        self.assertIn("the server's run is ending", e["error"]["message"])
        # a batch: one array, an error for each of its requests
        m.send("a", [req(5, "ping"), note("notifications/x"), req("six", "ping")])
        e = m.msg("a")
        self.assertIsInstance(e, list, e)
        self.assertEqual([(r["id"], r["error"]["code"]) for r in e],
                         [(5, -32000), ("six", -32000)], e)
        m.send("b", req(4, "ping"))
        self.assertEqual(m.msg("b").get("id"), 4)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assert_no_leftovers(0)

    def test_an_end_of_run_repeated_while_the_run_ends_is_bounded(self):
        """A client that repeats endRun while its session ends (in the envelope and as a
        control request): 64 of each await the result, the ones over that get -32000 at
        once, not when the (long) teardown is over; none is lost."""
        m = Mux(self.serve("--ignore-eof", opts=["--eof-grace", "3000",
                                                  "--term-grace", "300"]))
        m.send("a", req(1, "ping"))
        self.assertEqual(m.msg("a").get("id"), 1)
        t0 = time.monotonic()
        m.send("a", *[req("e%d" % i, "mcpmux/endRun") for i in range(100)])
        m.p.send(*[{"message": req("c%d" % i, "mcpmux/endRun", {"session": "a"})}
                   for i in range(100)])
        for i in range(64, 100):
            e = m.msg("a", 2)
            self.assertEqual(e.get("id"), "e%d" % i, e)
            self.assertEqual(e["error"]["code"], -32000, e)
            self.assertIn("the server's run is ending (64 end-of-run requests", e["error"]
                          ["message"])
            e = m.take(lambda x: "session" not in x and x["message"].get("id") == "c%d" % i,
                       2)["message"]
            self.assertEqual(e["error"]["code"], -32000, e)
        self.assertLess(time.monotonic() - t0, 2.0 * SLOW)  # not the 3 s of the grace
        for i in range(64):
            r = m.msg("a", 10)
            self.assertEqual(r.get("id"), "e%d" % i, r)
            self.assertEqual(r["result"]["escalation"], "term", r)
            r = m.take(lambda x: "session" not in x and x["message"].get("id") == "c%d" % i,
                       10)["message"]
            self.assertEqual(r["result"]["escalation"], "term", r)
        self.assertEqual(m.event("a", "ended")["escalation"], "term")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assertEqual([e for e in m.inbox if e.get("event") != "started"], [])
        self.assert_no_leftovers(0)


class SlowReader(Case):
    def test_after_stdin_eof_a_slow_reader_gets_all_of_it(self):
        """stdin's EOF ends every session; the reader of stdout may take its time, as in
        any pipeline (only a signal bounds the wait for it)."""
        p = self.serve(opts=FAST)
        p.send({"session": "s", "message": initialize(1)},
               {"session": "s", "message": call(2, "huge", bytes=3 << 20)})
        p.close_stdin()
        time.sleep(6)  # a reader that pauses longer than the bound after a signal (5 s)
        lines = [json.loads(l) for l in p.read_to_eof(20).splitlines()]
        self.assertEqual(p.wait(), 0, p.stderr())
        answer = [l["message"] for l in lines if l.get("message", {}).get("id") == 2][0]
        self.assertEqual(len(answer["result"]["content"][0]["text"]), 3 << 20)
        self.assertEqual([l["event"] for l in lines if "event" in l], ["started", "ended"])
        self.assertNotIn("dropped", p.stderr())

    # Answers its one request after 100 notifications of about 1 KB (four to a page of a
    # pipe), one each 5 ms, then exits 3: more than the client's pipe and the session's
    # queue hold, less than they and the server's own pipe do, so that the server exits
    # with its last lines still in its pipe.
    LAST_WORDS = (
        "import json, sys, time\n"
        "id_ = json.loads(sys.stdin.readline())['id']\n"
        "for i in range(100):\n"
        "    print(json.dumps({'jsonrpc': '2.0', 'method': 'notifications/message',\n"
        "                      'params': {'n': i, 'data': 'x' * 900}}), flush=True)\n"
        "    time.sleep(0.005)\n"
        "print(json.dumps({'jsonrpc': '2.0', 'id': id_, 'result': {}}), flush=True)\n"
        "sys.exit(3)\n")

    def test_a_server_that_exits_while_its_client_is_slow_loses_no_line(self):
        """A server that exits while its output waits for a slow client (the session's
        queue full, its stdout not read): what is left in its pipe is the server's last
        output, and reaches the client, before the "ended" that says the server exited by
        itself; not dropped, nor its request answered with an error, once the grace steps
        give up on the pipe."""
        p = self.serve(opts=["-v", "--max-queue", "1024"] + FAST,
                       command=[sys.executable, "-c", self.LAST_WORDS])
        p.send({"session": "s", "message": req(1, "go")})
        wait_until(lambda: "session s: ended" in p.stderr(), 10, "the session's end",
                   p.stderr)
        p.close_stdin()
        lines = [json.loads(l) for l in p.read_to_eof(20).splitlines()]
        self.assertEqual(p.wait(), 0, p.stderr())
        msgs = [l["message"] for l in lines if "message" in l]
        self.assertEqual([m["params"]["n"] for m in msgs if "method" in m], list(range(100)))
        self.assertEqual([m for m in msgs if "id" in m], [{"jsonrpc": "2.0", "id": 1,
                                                          "result": {}}])
        ended = lines[-1]
        self.assertEqual((ended.get("event"), ended["exit"], ended["escalation"]),
                         ("ended", {"code": 3}, "none"))

    def test_a_client_that_closes_its_stdout_while_its_server_is_held_back(self):
        """The client stops reading until its session's server is held back (its output
        waits in a full queue), then closes its stdout and its stdin: what the server
        still writes is read and dropped, so it finishes, sees EOF and exits by itself,
        not after the graces."""
        p = self.serve(opts=["-v", "--max-queue", "100000", "--eof-grace", "5000",
                             "--term-grace", "5000"])
        m = Mux(p)
        m.send("s", call(1, "env"))
        pid = m.msg("s")["result"]["structuredContent"]["pid"]
        # 3.2 MB of results: more than the client's pipe, the queue and the server's pipe
        m.send("s", *[call(i, "huge", bytes=400_000) for i in range(2, 10)])
        out = p.p.stdout.fileno()

        def held_back():  # the server blocked on its stdout, the client's pipe full
            with open("/proc/%d/wchan" % pid) as f:
                blocked = f.read().endswith("pipe_write")
            unread = array.array("i", [0])
            fcntl.ioctl(out, termios.FIONREAD, unread)
            return blocked and unread[0] >= fcntl.fcntl(out, F_GETPIPE_SZ) - (64 << 10)
        wait_until(held_back, 10, "the server to be held back", lambda: proc_report(pid))
        p.p.stdout.close()
        p.close_stdin()
        t0 = time.monotonic()
        self.assertEqual(p.wait(4), 0, p.stderr())
        self.assertLess(time.monotonic() - t0, 4 * SLOW)
        self.assertIn("session s: ended (eof,", p.stderr())  # at EOF, no signal
        self.assert_no_leftovers(0)


class Crashes(Case):
    def test_crash_is_the_servers_own_exit(self):
        """A server that crashes closes its stdout before its exit is reported: the
        teardown is still the server's own exit, escalation "none", every time.  (Long
        graces, as below: a grace that runs out before the turn that reaps the server is
        said as an escalation.)"""
        m = Mux(self.serve(opts=["--eof-grace", "10000", "--term-grace", "10000"]))
        ids = ["c-%d" % i for i in range(20)]
        for s in ids:
            m.send(s, initialize(1))
        for s in ids:
            m.msg(s)
            m.send(s, call(2, "crash"))
        for s in ids:
            self.assert_error(m.msg(s), 2, -32000)
            ended = m.event(s, "ended")
            self.assertEqual((ended["exit"], ended["escalation"]),
                             ({"signal": "SIGSEGV"}, "none"), s)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_crash_leftovers_still_signalled(self):
        """What a crashed server leaves behind gets SIGTERM at once (escalation "term")."""
        m = Mux(self.serve("--daemonize-grandchild", opts=FAST))
        m.send("a", initialize(1))
        m.msg("a")
        m.send("a", call(2, "crash"))
        self.assert_error(m.msg("a"), 2, -32000)
        ended = m.event("a", "ended")
        self.assertEqual((ended["exit"], ended["escalation"]), ({"signal": "SIGSEGV"}, "term"))
        self.assertLess(ended["ms"], 250)
        self.assert_no_leftovers(0)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_crash_while_its_input_is_written_is_the_servers_own_exit(self):
        """A server that crashes while mcpmux writes to it: the write may fail with EPIPE
        before the end of its stdout or its exit is seen.  That is still the server's own
        exit, escalation "none", not a server that closed its input.  (A race: 40
        sessions, each sent notifications until its end.)  The graces are long: the 40
        crashes and the flood of notifications make long turns of mcpmux's loop on a loaded
        machine, and a grace of 300 ms (measured from the start of the turn that saw the
        EPIPE) could run out before the turn that reaps the server, which mcpmux then
        reports as escalated, though its servers all ended by themselves."""
        m = Mux(self.serve(opts=["--eof-grace", "10000", "--term-grace", "10000"]))
        ids = ["w-%d" % i for i in range(40)]
        for s in ids:
            m.send(s, initialize(1))
        for s in ids:
            m.msg(s)
        for s in ids:
            m.send(s, call(2, "crash"))
        live, end = set(ids), deadline(20)
        while live and time.monotonic() < end:
            for s in live:
                m.send(s, {"jsonrpc": "2.0", "method": "notifications/progress"})
            try:
                while True:  # what has come so far
                    e = m.p.msg(0.002)
                    m.inbox.append(e)
                    if e.get("event") == "ended":
                        live.discard(e["session"])
            except AssertionError:
                pass
        self.assertFalse(live, "sessions not ended")
        for s in ids:
            self.assert_error(m.msg(s), 2, -32000)
            ended = m.event(s, "ended")
            self.assertEqual((ended["exit"], ended["escalation"]),
                             ({"signal": "SIGSEGV"}, "none"), s)
        self.assertNotIn("closed its input", m.p.stderr())
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)


    # reads a request and two batches, answers one request of the first, dies of SIGKILL
    PART_OF_A_BATCH = (
        "import json, os, sys\n"
        "lines = [json.loads(sys.stdin.readline()) for _ in range(3)]\n"
        "print(json.dumps({'jsonrpc': '2.0', 'id': lines[1][1]['id'], 'result': {}}),\n"
        "      flush=True)\n"
        "os.kill(os.getpid(), 9)\n")

    def test_a_batch_in_flight_when_the_server_dies_is_answered_in_one_array(self):
        """The requests of a batch that the server had not answered when it died get
        their errors in one array, in the batch's order (JSON-RPC 2.0 answers a batch with
        one array): one array a batch, after what the server wrote; a request sent alone
        gets its error alone."""
        m = Mux(self.serve(opts=FAST, command=[sys.executable, "-c", self.PART_OF_A_BATCH]))
        m.send("a", req(0, "x"),
               [req(1, "x"), req("two", "x"), note("notifications/x"), req(3, "x")],
               [req(4, "x"), req(4, "x"), req("five", "x")])
        self.assertEqual(m.msg("a"), {"jsonrpc": "2.0", "id": "two", "result": {}})
        got = [m.msg("a") for _ in range(3)]
        self.assertEqual(got[0]["id"], 0, got)
        self.assertEqual([[e["id"] for e in g] if isinstance(g, list) else g["id"]
                          for g in got[1:]], [[1, 3], [4, 4, "five"]], got)
        errors = [got[0]] + got[1] + got[2]
        self.assertEqual({e["error"]["code"] for e in errors}, {-32000}, got)
        self.assertIn("killed by SIGKILL", got[1][0]["error"]["message"])
        ended = m.event("a", "ended")
        self.assertEqual(ended["exit"], {"signal": "SIGKILL"}, ended)
        self.assertEqual([e for e in m.inbox if "message" in e], [])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assert_no_leftovers(0)


class UnreadableOrphans(Case):
    @unittest.skipUnless(os.geteuid() == 0, "needs root to run mcpmux as another user")
    def test_an_unreadable_orphan_does_not_hold_up_a_later_session(self):
        """A daemon whose environment mcpmux cannot read (non-dumpable, as ssh-agent makes
        itself) cannot be told apart from any tree that was there when it started; a server
        started after it cannot be its ancestor, and ends as it would without it."""
        self.env["MCPMUX_CGROUP"] = "off"  # as an unprivileged user gets it
        script = ('case "$MCPMUX_SESSION" in a) exec "$0" --undumpable-grandchild;; '
                  '*) exec "$0";; esac')
        m = Mux(self.serve(command=["/bin/sh", "-c", script, FIXTURE],
                           opts=FAST + ["--kill-deadline", "300"],
                           user=65534, group=65534, extra_groups=[], cwd="/"))
        m.send("a", req(1, "ping"))
        m.msg("a")
        daemon = int(wait_until(lambda: re.search(r"grandchild (\d+)", m.p.stderr()), 5,
                                "session a's daemon").group(1))
        # Start times are in clock ticks: b's server starts a tick or more after it.
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/%d/stat" % daemon) as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        wait_until(lambda: time.clock_gettime(time.CLOCK_BOOTTIME) * hz > start + 3, 1,
                   "a clock tick")
        m.send("b", req(1, "ping"))
        m.msg("b")
        m.send("b", req(2, "mcpmux/endRun"))
        r = self.assert_response(m.msg("b", 5), 2)
        self.assertEqual((r["exit"], r["escalation"]), ({"code": 0}, "eof"), r)
        self.assertLess(r["ms"], 250)
        # a's own end: the daemon may be of a's tree, so it holds it, is not signalled (it
        # cannot be told apart), and is named in the abandoned list and on stderr.
        m.send("a", req(3, "mcpmux/endRun"))
        r = self.assert_response(m.msg("a", 10), 3)
        self.assertEqual((r["escalation"], r["abandoned"]), ("abandoned", [daemon]), r)
        self.assertTrue(alive(daemon))
        wait_until(lambda: "could not be told apart from the tree" in m.p.stderr(), 5,
                   "the abandon's message")
        os.kill(daemon, signal.SIGKILL)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(10), 0)
        self.assert_no_leftovers(0)


class Routing(Case):
    def test_server_requests_and_client_responses(self):
        m = Mux(self.serve())
        m.send("a", initialize(1))
        m.msg("a")
        m.send("a", call(2, "ask"))
        ask = m.msg("a")
        self.assertEqual(ask["method"], "sampling/createMessage")
        m.send("a", {"jsonrpc": "2.0", "id": ask["id"], "result": {"v": "from a"}})
        self.assertIn("from a", m.msg("a")["result"]["content"][0]["text"])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_server_answer_that_is_not_json_answers_its_request(self):
        """A session's server answers with a line that is not JSON (invalid UTF-8, nested
        600 deep): the request it answers gets one -32000 error at once, in its session
        alone, and the line is not forwarded but said on stderr; that session's later
        calls, and another session's, still work."""
        m = Mux(self.serve(opts=FAST))
        for s in ("a", "b"):
            m.send(s, initialize(1))
            m.msg(s)
        m.send("a", call(2, "bad", how="utf8"))
        err = self.assert_error(m.msg("a"), 2, -32000)
        self.assertIn("could not be forwarded", err["message"])
        self.assertIn("invalid UTF-8", err["message"])
        m.send("a", call("x\\y", "bad", how="deep"))
        err = self.assert_error(m.msg("a"), "x\\y", -32000)
        self.assertIn("nested too deeply", err["message"])
        self.assertIn("not JSON-RPC (not forwarded)", m.p.stderr())
        m.send("b", req(2, "ping"))
        self.assertEqual(m.msg("b"), {"jsonrpc": "2.0", "id": 2, "result": {}})
        m.send("a", req(3, "ping"))
        self.assertEqual(m.msg("a"), {"jsonrpc": "2.0", "id": 3, "result": {}})
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        for s in ("a", "b"):
            m.event(s, "ended")
        self.assertEqual([e for e in m.inbox if "message" in e], [])

    def test_batch(self):
        m = Mux(self.serve(command=["cat"]))
        batch = [req(1, "x"), req(2, "y")]
        m.send("a", batch)
        self.assertEqual(m.msg("a"), batch)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_bad_envelopes(self):
        m = Mux(self.serve())
        m.p.write(b"not json\n")
        self.assertEqual(m.take(lambda e: "error" in e)["error"]["code"], -32700)
        for bad in ({"session": "", "message": req(1, "ping")},
                    {"session": "x" * 129, "message": req(1, "ping")},
                    {"session": "a b", "message": req(1, "ping")},
                    {"session": 5, "message": req(1, "ping")},
                    {"session": "a/b", "message": req(1, "ping")},
                    {"session": "ok"},
                    [1, 2]):
            m.p.send(bad)
            e = m.take(lambda e: "error" in e and "session" not in e)
            self.assertEqual(e["error"]["code"], -32600, bad)
        # A session ID is taken as written: "run-1" written with an escape is malformed
        # (docs/protocol.md), an error-only envelope, and nothing is started for it.
        m.p.write(b'{"session":"run-\\u0031","message":{"jsonrpc":"2.0","id":1,'
                  b'"method":"ping"}}\n')
        e = m.take(lambda e: "error" in e)
        self.assertEqual(set(e), {"error"}, e)
        self.assertEqual(e["error"]["code"], -32600)
        self.assertIn("invalid session ID", e["error"]["message"])
        stats = m.control(1, "mcpmux/stats")["message"]["result"]
        self.assertEqual(stats["started"], 0)
        m.p.write(b'{"session":"ok","message":{"jsonrpc":"2.0","id":3}}\n')
        err = m.msg("ok")
        self.assertEqual(err["error"]["code"], -32600)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_plain_jsonrpc_request_is_answered_by_its_id(self):
        """serve given to an MCP client by mistake (docs/protocol.md): a line that is a
        plain JSON-RPC message gets, for a request, a JSON-RPC error with its id, which the
        client reads at once; stderr says once what serve speaks.  A plain notification is
        answered as before, and envelopes are served as ever."""
        m = Mux(self.serve())
        m.p.send(initialize(1))
        self.assertEqual(m.p.msg(), {"jsonrpc": "2.0", "id": 1, "error": {
            "code": -32600, "message": PLAIN_MCP}})
        m.p.send(req("two", "tools/list"))
        self.assertEqual(m.p.msg()["id"], "two")
        m.p.send(note("notifications/initialized"))
        e = m.p.msg()
        self.assertEqual(set(e), {"error"}, e)
        self.assertEqual(e["error"]["code"], -32600)
        m.send("a", initialize(3))
        self.assertEqual(m.msg("a")["id"], 3)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual(m.p.stderr().count(PLAIN_MCP_SAID), 1, m.p.stderr())

    def test_a_message_nested_512_deep_passes_and_513_is_refused(self):
        """The nesting bound (docs/reliability.md) is the message's: its envelope is not
        counted.  A message 512 deep reaches the server, one 513 deep gets -32700 in its
        session and does not."""
        m = Mux(self.serve(command=["cat"]))

        def enveloped(id_, depth):
            return b'{"session":"s","message":%s}\n' % nested(id_, depth, "x")

        m.p.write(enveloped(1, 512))
        self.assertEqual(m.msg("s")["id"], 1)  # cat's echo of it
        m.p.write(enveloped(2, 513))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": None,
                                      "error": {"code": -32700, "message":
                                                "Parse error: the message is not valid JSON"}})
        m.send("s", req(3, "x"))
        self.assertEqual(m.msg("s"), req(3, "x"))
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_the_envelope_adds_to_max_message(self):
        """--max-message bounds the message: its envelope's own bytes come on top.  A
        message over it is refused in its session, with its id."""
        m = Mux(self.serve(opts=["--max-message", "1024"], command=["cat"]))
        fits = req(7, "x", {"p": "y" * (1024 - 60)})
        self.assertLessEqual(len(json.dumps(fits, separators=(",", ":"))), 1024)
        m.send("s", fits)
        self.assertEqual(m.msg("s"), fits)
        m.send("s", req(8, "x", {"p": "y" * 1100}))
        err = self.assert_error(m.msg("s"), 8, -32600)
        self.assertIn("--max-message", err["message"])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_batch_over_max_message_read_whole_is_answered_by_id(self):
        """A batch over --max-message but within the envelope's allowance, so read whole:
        one array with -32600 for each of its requests, by its id; the server gets an error
        for the client's answer in it, in its place; a batch of notifications alone is
        dropped, with no answer, as a notification alone is.  A batch too long to be read
        gets one -32600 with id null."""
        m = Mux(self.serve(opts=["--max-message", "4096"]))
        m.send("s", initialize(1))
        m.msg("s")
        m.send("s", call(2, "ask"))
        ask = m.msg("s")
        self.assertEqual(ask["method"], "sampling/createMessage")
        answer = {"jsonrpc": "2.0", "id": ask["id"],
                  "result": {"role": "assistant", "content": {"type": "text", "text": "x"}}}
        batch = [req(3, "ping", {"p": "y" * 4096}), note("notifications/x"), answer,
                 req("four", "ping")]
        self.assertLess(len(json.dumps(env("s", batch))), 4096 + 1024)
        m.send("s", batch)
        got = m.msg("s")
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [(3, -32600), ("four", -32600)], got)
        self.assertIn("--max-message", got[0]["error"]["message"])
        r = m.msg("s")
        self.assertEqual(r.get("id"), 2, r)
        self.assertIn("too large for mcpmux", r["result"]["content"][0]["text"])
        m.send("s", [note("notifications/x", {"p": "y" * 4096}), note("notifications/y")])
        m.send("s", req(5, "ping"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 5, "result": {}})
        # too long to be read: its ids are seen as it passes
        m.send("s", [req(6, "ping", {"p": "y" * 8192}), req(7, "ping")])
        self.assertEqual([(g["id"], g["error"]["code"]) for g in m.msg("s")],
                         [(6, -32600), (7, -32600)])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual([e for e in m.inbox if "message" in e], [])

    def test_the_error_for_a_line_over_max_message_comes_after_unread_replies(self):
        """A session's run ended while its client reads nothing, its last replies queued
        behind 31 answers of 60 KB (over the client's 1 MiB pipe): the -32600 for a request
        of that session over --max-message (whose id is the ended run's request's) comes
        after them all the same, and so does the next run's answer."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        m = Mux(self.serve(opts=FAST + ["--max-message", "100000", "--log", log,
                                        "--log-bodies", "none"]))
        ids = [1] + list(range(4, 34))
        for i in ids:
            m.send("s", call(i, "huge", bytes=60000))
        m.send("s", call(2, "sleep", ms=20000))
        m.send("s", req("e", "mcpmux/endRun"))
        logged(log, b'"event":"ended"')
        m.send("s", req(2, "ping", {"pad": "p" * 120000}))
        m.send("s", req(3, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":3,')
        got = []
        while len(got) < len(ids) + 4:
            e = m.p.msg(10)
            if "message" in e:
                self.assertEqual(e.get("session"), "s", e)
                msg = e["message"]
                got.append((msg["id"], msg["error"]["code"] if "error" in msg else "result"))
        self.assertEqual(got, [(i, "result") for i in ids] +
                         [(2, -32000), ("e", "result"), (2, -32600), (3, "result")], got)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_own_answers_about_a_session_come_before_its_next_runs(self):
        """Session s ended; 3,000 envelopes that are not JSON (their errors, of no
        session, wait for a client that reads nothing), then a request of s over
        --max-message and one reusing its id, which starts s again: the -32600 comes
        before the new run's answer, however long the errors before it."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        m = Mux(self.serve(opts=FAST + ["--max-message", "100000", "--log", log,
                                        "--log-bodies", "none"]))
        m.send("s", initialize(1))
        m.msg("s")
        m.send("s", req("e", "mcpmux/endRun"))
        m.take(lambda e: e.get("message", {}).get("id") == "e")
        m.event("s", "ended")
        m.p.write(b"not json\n" * 3000)
        m.send("s", req(7, "ping", {"pad": "p" * 120000}))
        m.send("s", req(7, "ping"))
        logged(log, b'"dir":"out","kind":"response","id":7,')
        got = []
        while len(got) < 2:
            e = m.p.msg(10)
            if e.get("session") == "s" and "message" in e:
                msg = e["message"]
                got.append((msg["id"], msg["error"]["code"] if "error" in msg else "result"))
        self.assertEqual(got, [(7, -32600), (7, "result")])
        m.p.close_stdin()
        m.p.read_to_eof(10)
        self.assertEqual(m.p.wait(), 0)

    def test_an_answer_over_max_message_gets_the_server_an_error(self):
        """The client's answer to a request of the server (its id is the server's) over
        --max-message: the server gets an error in its place, the client none; and a
        notification over it is dropped with no answer.  Both with the line short enough
        to be read whole and too long to be buffered."""
        m = Mux(self.serve(opts=["--max-message", "4096"]))
        m.send("s", initialize(1))
        m.msg("s")
        for size in (4096 + 100, 20000):
            m.send("s", call(2, "ask"))
            ask = m.msg("s")
            self.assertEqual(ask["method"], "sampling/createMessage")
            m.send("s", {"jsonrpc": "2.0", "id": ask["id"],
                         "result": {"role": "assistant", "content": {"type": "text",
                                                                     "text": "x" * size}}})
            r = m.msg("s")
            self.assertEqual(r.get("id"), 2, r)  # nothing with the answer's id first
            self.assertIn("too large for mcpmux", r["result"]["content"][0]["text"])
            m.send("s", note("notifications/message", {"data": "y" * size}))
            m.send("s", req(3, "ping"))
            self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 3, "result": {}})
        wait_until(lambda: m.p.stderr().count("a notification of the client over --max-message") == 2, 5,
                   "the two warnings")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_an_answer_over_max_message_read_whole_gets_an_error_only_for_its_request(self):
        """The client's answer over --max-message but read whole (within the envelope's
        allowance): the request of the server's in flight that it answers gets an error,
        once; an answer to no request in flight gets the server nothing, and stderr says it
        was dropped."""
        m = Mux(self.serve(opts=["--max-message", "4096"],
                           command=[sys.executable, "-c", ASKER]))
        m.send("s", req(1, "ask", {"ids": [5]}))
        self.assertEqual([m.msg("s")["id"] for _ in range(2)], [5, 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}
        m.send("s", {"jsonrpc": "2.0", "id": "nobody", "result": answer},
               {"jsonrpc": "2.0", "id": 5, "result": answer},
               {"jsonrpc": "2.0", "id": 5, "result": answer})
        m.send("s", req(2, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 2, "result": [[5, -32000]]})
        wait_until(lambda: "answers no request of the server in flight" in m.p.stderr(), 5,
                   "the warning")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_batch_over_max_message_read_whole_gets_errors_only_for_its_requests(self):
        """A batch of the client's over --max-message but read whole (within the envelope's
        allowance): each request of the server's in flight that an answer in it answers
        gets an error, once; an answer to no request in flight, and a repeat, get the
        server nothing, and stderr says they were dropped; its request gets -32600 by id."""
        m = Mux(self.serve(opts=["--max-message", "4096"],
                           command=[sys.executable, "-c", ASKER]))
        m.send("s", req(1, "ask", {"ids": [5]}))
        self.assertEqual([m.msg("s")["id"] for _ in range(2)], [5, 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x"}}
        batch = [{"jsonrpc": "2.0", "id": "nobody", "result": answer},
                 {"jsonrpc": "2.0", "id": 5, "result": answer},
                 {"jsonrpc": "2.0", "id": 5, "result": answer},
                 req(3, "ping", {"p": "y" * 4096})]
        self.assertLess(len(json.dumps(env("s", batch))), 4096 + 1024)
        m.send("s", batch)
        got = m.msg("s")
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got], [(3, -32600)], got)
        m.send("s", req(2, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 2, "result": [[5, -32000]]})
        wait_until(lambda: "answer \"nobody\" is over --max-message" in m.p.stderr()
                   and "answer 5 is over --max-message" in m.p.stderr(), 5, "the warnings")
        # the first answer 5 gets the server its error, the repeat and "nobody" are dropped
        self.assertRegex(m.p.stderr(), r"the client's answer 5 to a request of the server is "
                         r"over --max-message \(\d+ bytes\): the server gets an error in its "
                         r"place")
        for who in ('"nobody"', "5"):
            self.assertRegex(m.p.stderr(), r"the client's answer %s is over --max-message "
                             r"\(\d+ bytes\) and answers no request of the server in flight: "
                             r"dropped" % who)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual([e for e in m.inbox if "message" in e], [])

    def test_a_message_too_long_to_buffer_with_a_long_id_is_handled_by_it(self):
        """A message too long to be read whole whose id is longer than 128 bytes: a request
        gets -32600 with id null (it is no notification); the client's answer gets the
        server an error for the request of the server's in flight it answers, found by the
        id's length, hash and first bytes; an answer to no request in flight gets the server
        nothing, and stderr says it was dropped."""
        long_id = "L" * 200
        m = Mux(self.serve(opts=["--max-message", "4096"],
                           command=[sys.executable, "-c", ASKER]))
        m.send("s", req("k" * 300, "ping", {"pad": "p" * 8000}))
        self.assert_error(m.msg("s"), None, -32600)
        m.send("s", req(1, "ask", {"ids": [long_id]}))
        self.assertEqual([m.msg("s")["id"] for _ in range(2)], [long_id, 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x" * 8000}}
        m.send("s", {"jsonrpc": "2.0", "id": "nobody", "result": answer},
               {"jsonrpc": "2.0", "id": long_id, "result": answer},
               {"jsonrpc": "2.0", "id": long_id, "result": answer})
        m.send("s", req(2, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 2,
                                      "result": [[long_id, -32000]]})
        wait_until(lambda: "answers no request of the server in flight" in m.p.stderr(), 5,
                   "the warning")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_batch_too_long_to_buffer_is_handled_by_its_elements(self):
        """A batch of the client's too long to be read whole (over --max-message and the
        envelope's allowance), scanned as it passes: an answer in it to a request of the
        server's in flight gets the server an error, once, and the client nothing; an
        answer to no request in flight is dropped with a warning; its requests get -32600
        by id, in one array; the same with the session named after the message."""
        m = Mux(self.serve(opts=["--max-message", "4096"],
                           command=[sys.executable, "-c", ASKER]))
        m.send("s", req(1, "ask", {"ids": [5, 6]}))
        self.assertEqual([m.msg("s")["id"] for _ in range(3)], [5, 6, 1])
        m.send("s", [{"jsonrpc": "2.0", "id": 5, "result": {"t": "x" * 9000}}])
        m.send("s", req(2, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 2, "result": [[5, -32000]]})
        batch = [req(7, "ping", {"p": "y" * 8192}), {"jsonrpc": "2.0", "id": "nobody",
                                                     "result": {}},
                 note("notifications/x"), {"jsonrpc": "2.0", "id": 6, "result": {}},
                 req("eight", "ping")]
        m.p.write(b'{"message":%s,"session":"s"}\n'
                  % json.dumps(batch, separators=(",", ":")).encode())
        got = m.msg("s")
        self.assertIsInstance(got, list, got)
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [(7, -32600), ("eight", -32600)], got)
        self.assertIn("--max-message", got[0]["error"]["message"])
        m.send("s", req(3, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 3,
                                      "result": [[5, -32000], [6, -32000]]})
        wait_until(lambda: "answer \"nobody\" is over --max-message" in m.p.stderr(), 5,
                   "the warning", lambda: m.p.stderr())
        self.assertIn("answers no request of the server in flight: dropped", m.p.stderr())
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        self.assertEqual([e for e in m.inbox if "message" in e], [])
        self.assertEqual([e for e in m.inbox if "error" in e], [])

    def test_a_batch_too_long_to_buffer_with_nothing_to_read_gets_one_error(self):
        """A batch too long to be read whole with no element read, or with requests whose
        errors would be longer than --max-message (64 KiB at least): one -32600 with id
        null, in its session."""
        m = Mux(self.serve(opts=["--max-message", "4096"], command=["cat"]))
        m.p.write(b'{"session":"s","message":[%s]}\n' % (b" " * 9000))
        self.assert_error(m.msg("s"), None, -32600)
        many = [req(k, "x") for k in range(1024 + 4096 // 35 + 1)]
        m.send("s", many)
        self.assert_error(m.msg("s"), None, -32600)
        wait_until(lambda: "session s: a batch of the client's over --max-message has too "
                   "many requests to be answered each: their errors would be longer than "
                   "--max-message (65536 bytes)" in m.p.stderr(), 5, "the warning")
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_batch_too_long_to_buffer_with_ids_of_no_use_is_answered(self):
        """A request in a batch too long to be read whole whose id is of no use (null,
        true, an object) or longer than 128 bytes gets -32600 with id null in the batch's
        array; an answer with such a long id read before its session is dropped with a
        warning: serve goes on (none of them had an id to keep)."""
        big = {"p": "y" * 8192}
        for id_ in (None, True, {"a": 1}, "x" * 200):
            with self.subTest(id=str(id_)[:8]):
                m = Mux(self.serve(opts=["--max-message", "4096"], command=["cat"]))
                m.send("s", [req(id_, "ping", big)])
                got = m.msg("s")
                self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                                 [(None, -32600)], got)
                m.send("s", req(9, "ping"))
                self.assertEqual(m.msg("s"), req(9, "ping"))
                m.p.close_stdin()
                self.assertEqual(m.p.wait(), 0)
        with self.subTest(id="answer"):
            m = Mux(self.serve(opts=["--max-message", "4096"], command=["cat"]))
            m.send("s", req(1, "ping"))
            self.assertEqual(m.msg("s"), req(1, "ping"))
            answer = {"jsonrpc": "2.0", "id": "x" * 200, "result": big}
            m.p.write(b'{"message":[%s],"session":"s"}\n'
                      % json.dumps(answer, separators=(",", ":")).encode())
            m.send("s", req(9, "ping"))
            self.assertEqual(m.msg("s"), req(9, "ping"))
            wait_until(lambda: "answers no request of the server in flight: dropped"
                       in m.p.stderr(), 5, "the warning", lambda: m.p.stderr())
            m.p.close_stdin()
            self.assertEqual(m.p.wait(), 0)

    def test_a_batch_too_long_to_buffer_keeps_its_answers_apart_from_its_requests(self):
        """Answers of a batch too long to be read whole, read before its session, are
        kept apart from its requests, under 1,024 + --max-message/35 (what a batch within
        the bound records): requests whose errors would be longer than --max-message (64
        KiB at least) do not lose them (the server still gets its error), and answers alone
        never get the client an error; those past their bound are said lost."""
        bound = 1024 + 4096 // 35
        m = Mux(self.serve(opts=["--max-message", "4096"],
                           command=[sys.executable, "-c", ASKER]))
        m.send("s", req(1, "ask", {"ids": [5]}))
        self.assertEqual([m.msg("s")["id"] for _ in range(2)], [5, 1])
        batch = ([{"jsonrpc": "2.0", "id": 5, "result": {}}]
                 + [req(k, "x") for k in range(bound + 1)])
        m.p.write(b'{"message":%s,"session":"s"}\n'
                  % json.dumps(batch, separators=(",", ":")).encode())
        self.assert_error(m.msg("s"), None, -32600)
        m.send("s", req(2, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 2, "result": [[5, -32000]]})
        answers = [{"jsonrpc": "2.0", "id": "n%d" % k, "result": {}}
                   for k in range(bound + 2)]
        m.p.write(b'{"message":%s,"session":"s"}\n'
                  % json.dumps(answers, separators=(",", ":")).encode())
        m.send("s", req(3, "report"))
        self.assertEqual(m.msg("s"), {"jsonrpc": "2.0", "id": 3, "result": [[5, -32000]]})
        wait_until(lambda: "2 answers of a batch" in m.p.stderr(), 5, "the count",
                   lambda: m.p.stderr()[-2000:])
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_a_batch_too_long_to_buffer_answers_its_elements_that_are_no_message(self):
        """Elements of a batch too long to be read whole that are no message ({"foo": 1},
        1) get one -32600 with id null for them all, last in the batch's array, after
        the errors of requests that came after them."""
        m = Mux(self.serve(opts=["--max-message", "4096"], command=["cat"]))
        m.send("s", [{"foo": "y" * 8192}, 1, note("notifications/x")])
        got = m.msg("s")
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got], [(None, -32600)], got)
        m.send("s", [{"foo": "y" * 8192}, 1, req(3, "ping")])
        got = m.msg("s")
        self.assertEqual([(g["id"], g["error"]["code"]) for g in got],
                         [(3, -32600), (None, -32600)], got)
        m.send("s", req(9, "ping"))
        self.assertEqual(m.msg("s"), req(9, "ping"))
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_an_envelope_too_long_to_buffer_is_answered_in_its_session(self):
        """An envelope over --max-message and the envelope's own bytes is refused unread,
        in the session it names, with its message's id (seen before or after the body);
        one that names no valid session, by an envelope of its own."""
        m = Mux(self.serve(opts=["--max-message", "1024"], command=["cat"]))
        body = '"params":{"p":"%s"}' % ("y" * 4096)
        m.p.write(('{"session":"s","message":{"jsonrpc":"2.0","id":"a","method":"x",%s}}\n'
                   % body).encode())
        err = self.assert_error(m.msg("s"), "a", -32600)
        self.assertIn("--max-message", err["message"])
        m.p.write(('{"session":"s","message":{"jsonrpc":"2.0","method":"x",%s,"id":9}}\n'
                   % body).encode())
        self.assert_error(m.msg("s"), 9, -32600)
        m.p.write(('{"message":{"jsonrpc":"2.0","id":3,"method":"x",%s},"session":"s"}\n'
                   % body).encode())
        self.assert_error(m.msg("s"), 3, -32600)
        m.p.write(('{"session":"no/such","message":{"jsonrpc":"2.0","id":5,%s}}\n'
                   % body).encode())
        e = m.take(lambda e: "session" not in e)
        self.assertEqual(e["error"]["code"], -32600)
        m.send("s", req(4, "x"))
        self.assertEqual(m.msg("s"), req(4, "x"))
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    def test_missing_command_is_an_error_for_the_session(self):
        """A command that cannot be executed is named in each client's error, and said on
        serve's stderr once, as wrap says it, not once a session; -v does not say that a
        child whose exec failed was started as the server."""
        m = Mux(self.serve(command=["/nonexistent/server"], opts=["-v"]))
        said = ("cannot run '/nonexistent/server': No such file or directory (check the "
                "command name and PATH)")
        # (valgrind: the exec's errno does not reach mcpmux, test_wrap; its exit code does)
        told = ("server exited before answering (exit code 127)" if WRAPPER else
                "server could not be started: " + said)
        m.send("a", req(1, "ping"))
        err = m.msg("a")
        self.assertEqual(err["id"], 1)
        self.assertEqual(err["error"], {"code": -32000, "message": told})
        started = m.event("a", "started")
        ended = m.event("a", "ended")
        self.assertEqual(ended["exit"], {"code": 127})
        # It exited by itself before it could read anything: it did not close its input.
        self.assertEqual(ended["escalation"], "none")
        self.assertNotIn("closed its input", m.p.stderr())
        m.send("b", req(1, "ping"))
        self.assertEqual(m.msg("b")["error"]["message"], told)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        if not WRAPPER:  # (valgrind: the exec's errno does not reach mcpmux, test_wrap)
            err = m.p.stderr()
            self.assertEqual(err.count("mcpmux: " + said + "\n"), 1, err)
            self.assertIn("mcpmux: session a: its process (pid %d) could not execute "
                          "'/nonexistent/server': No such file or directory\nmcpmux: %s\n"
                          % (started["pid"], said), err)
            self.assertNotIn("started '/nonexistent/server'", err)
            self.assertNotIn("teardown begins", err)

    @unittest.skipIf(WRAPPER, "valgrind: the exec's errno does not reach mcpmux")
    def test_a_command_that_cannot_run_is_said_again_only_when_that_changes(self):
        """serve says that its command cannot be executed the first time, then again only
        when what it says changes (another error, an interpreter missing) or after a server
        that started: clients that try again do not flood its stderr."""
        cmd = os.path.join(self.tmp.name, "server")
        m = Mux(self.serve(command=[cmd]))
        missing = ("cannot run '%s': No such file or directory (check the command name and "
                   "PATH)" % cmd)
        interp = ("cannot run '%s': its interpreter '/nonexistent/interp' was not found "
                  "(check its #! line)" % cmd)
        denied = ("cannot run '%s': Permission denied (check that it is an executable file)"
                  % cmd)

        def script(text, mode):
            with open(cmd, "w") as f:
                f.write(text)
            os.chmod(cmd, mode)

        def ask(session, said):
            m.send(session, req(1, "ping"))
            if said is None:
                self.assertEqual(m.msg(session), {"jsonrpc": "2.0", "id": 1, "result": {}})
            else:
                self.assertEqual(m.msg(session)["error"],
                                 {"code": -32000, "message": "server could not be started: "
                                  + said})
            self.assertEqual(m.event(session, "ended")["exit"]["code"],
                             {missing: 127, interp: 127, denied: 126}.get(said, 0))
        ask("a", missing)
        ask("b", missing)
        script("#!/nonexistent/interp -x\n", 0o755)
        ask("c", interp)
        ask("d", interp)
        os.chmod(cmd, 0o644)
        ask("e", denied)
        ask("f", denied)
        script("#!/bin/sh\nread line\necho '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}'\n",
               0o755)
        ask("g", None)
        os.unlink(cmd)
        ask("h", missing)
        ask("i", missing)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)
        lines = [l for l in m.p.stderr().splitlines() if "cannot run" in l]
        self.maxDiff = None
        self.assertEqual(lines, ["mcpmux: " + t for t in (missing, interp, denied, missing)])


class Flood(Case):
    def test_flooding_session_does_not_starve_another(self):
        """One backend floods as fast as it can; another session's round trips stay
        within a small factor of their unloaded latency, and memory stays bounded."""
        # ASan keeps freed memory (256 MB of quarantine by default): RSS would measure the
        # bytes that flowed, not what mcpmux holds.
        env = dict(self.env)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"
        m = Mux(self.start([MCPMUX, "serve"] + FAST + ["--max-queue", "1000000", "--",
                                                      FIXTURE, "--flood=0"], env=env))
        quiet = Mux(self.serve(opts=FAST))  # the unloaded baseline, same machine, same run

        def round_trips(mux, s, n):
            lat = []
            prefix = ('{"session":"%s","message":' % s).encode()
            for i in range(n):
                t = time.monotonic()
                mux.send(s, req(100 + i, "ping"))
                while True:  # skip the flood's lines without parsing them
                    line = mux.p.line()
                    if line.startswith(prefix):
                        self.assertEqual(json.loads(line)["message"]["id"], 100 + i)
                        break
                lat.append(time.monotonic() - t)
            lat.sort()
            return lat[len(lat) // 2]

        quiet.send("rt", req(1, "ping"))
        quiet.msg("rt")
        base = round_trips(quiet, "rt", 200)
        m.send("rt", req(1, "ping"))
        m.msg("rt")
        m.send("flood", initialize(1))  # the flood starts after initialize
        m.take(lambda e: e.get("session") == "flood" and "message" in e
               and e["message"].get("method") == "notifications/message")
        loaded = round_trips(m, "rt", 200)
        hwm = vm_hwm_kib(m.p.pid)
        print("round trip median: unloaded %.0f us, beside a flood %.0f us (x%.1f); "
              "peak RSS %d KiB" % (base * 1e6, loaded * 1e6, loaded / base, hwm))
        self.assertLess(loaded, max(20 * base, 0.010))
        self.assertLess(hwm, 64 * 1024)
        m.p.close_stdin()
        quiet.p.close_stdin()
        m.p.read_to_eof(20)
        self.assertEqual(m.p.wait(10), 0)
        self.assertEqual(quiet.p.wait(10), 0)
        self.assert_no_leftovers(0)


    def test_a_flood_the_client_reads_slower_than_it_comes_does_not_hold_another_back(self):
        """A session whose server writes faster than the client reads keeps what mcpmux
        queues for the client full, and so the client's input held: the other sessions'
        messages are read all the same, each once the client has read about half of
        --max-queue, not once the flood stops (it never does here)."""
        max_queue = 64 << 10
        m = Mux(self.serve("--flood=0", opts=FAST + ["--max-queue", str(max_queue)]))
        m.send("rt", req(1, "ping"))
        m.msg("rt")
        m.send("flood", initialize(1))  # the flood starts after initialize
        m.take(lambda e: e.get("session") == "flood" and "message" in e
               and e["message"].get("method") == "notifications/message")
        for i in range(10):
            m.send("rt", req(100 + i, "ping"))
            # What the client may read first, fairly: what was queued when the ping came
            # (--max-queue) less the half whose reading frees the input, the pipe's 64 KiB,
            # a turn of the flood's queue, and what its server wrote in the meantime.
            skipped = m.p.skip_slowly(b'{"session":"rt",', 8 * max_queue)
            self.assertEqual(json.loads(m.p.line())["message"]["id"], 100 + i)
            print("round trip %d: %d bytes of the flood first" % (i, skipped))
        m.p.close_stdin()
        m.p.read_to_eof(20)
        self.assertEqual(m.p.wait(10), 0)
        self.assert_no_leftovers(0)


class SameId(Case):
    def test_an_id_used_again_after_its_run_ended(self):
        """An ID whose run ended (in-band, by control, or by the server's exit) starts a
        fresh run when used again, with nothing of the old one: the session last looked
        up is forgotten with it."""
        m = Mux(self.serve(opts=FAST))
        pids = []
        for i, how in enumerate(("in-band", "control", "exit")):
            m.send("again", call(10 * i, "env"))
            pid = m.msg("again")["result"]["structuredContent"]["pid"]
            self.assertNotIn(pid, pids)
            pids.append(pid)
            if how == "in-band":
                m.send("again", req(10 * i + 1, "mcpmux/endRun"))
                self.assertEqual(m.msg("again")["id"], 10 * i + 1)
            elif how == "control":
                r = m.control(10 * i + 1, "mcpmux/endRun", {"session": "again"})["message"]
                self.assertEqual(r["result"]["pid"], pid)
            else:
                m.send("again", call(10 * i + 1, "exit", code=0))
                m.event("again", "ended")
            wait_until(lambda: not alive(pid), 5, "the run's server to be gone")
            m.send("other", req(100 + i, "ping"))  # another session in between
            self.assertEqual(m.msg("other")["id"], 100 + i)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)


class Slots(Case):
    def test_an_end_of_run_reply_means_the_slot_is_free(self):
        """With --max-sessions 1, the session after an answered end-of-run (in-band or by
        control) is never refused."""
        s = self.serve(opts=["--max-sessions", "1", "--eof-grace", "300", "--term-grace", "300"])
        env = lambda sid, m: {"session": sid, "message": m}
        for i, sid in enumerate(("a", "b", "c", "d", "e")):
            s.send(env(sid, req(10 * i, "ping")))
            while True:
                m = s.msg()
                if m.get("session") == sid:
                    break
            self.assertEqual(m.get("event"), "started", m)
            self.assertEqual(s.msg()["message"]["id"], 10 * i)
            if i % 2 == 0:
                # in-band: the reply, then at once the next session's first message
                s.send(env(sid, req(10 * i + 1, "mcpmux/endRun")))
            else:
                s.send({"message": req(10 * i + 1, "mcpmux/endRun", {"session": sid})})
            while s.msg().get("message", {}).get("id") != 10 * i + 1:
                pass
        s.close_stdin()
        self.assertEqual(s.wait(10), 0)


def pipe_size(pid, fd):
    f = os.open("/proc/%d/fd/%d" % (pid, fd), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fcntl.fcntl(f, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    finally:
        os.close(f)


class Pipes(Case):
    def test_enlarged_pipes_have_a_budget(self):
        """Long lines enlarge a server's pipes, for at most 8 servers at once; a server
        that ends gives its share back."""
        m = Mux(self.serve(opts=FAST))
        ids = ["p-%d" % i for i in range(10)]
        pids = {}
        for s in ids:
            m.send(s, call(1, "env"))
            pids[s] = m.msg(s)["result"]["structuredContent"]["pid"]
        # All in one write, and looked at as soon as answered: well before the idle trim.
        m.p.send(*[env(s, msg) for s in ids
                   for msg in (note("notifications/message", {"pad": "z" * 9000}),
                               req(2, "ping"))])
        for s in ids:
            m.msg(s)
        big = [s for s in ids if pipe_size(pids[s], 0) == 1 << 20]
        small = [s for s in ids if pipe_size(pids[s], 0) == 64 << 10]
        self.assertEqual(len(big), 8, big)
        self.assertEqual(len(small), 2, small)
        for s in big:
            self.assertEqual(pipe_size(pids[s], 1), 1 << 20)
        for i, s in enumerate(big[:2]):
            r = m.control(10 + i, "mcpmux/endRun", {"session": s})["message"]
            self.assertEqual(r["result"]["pid"], pids[s])
        m.p.send(*[env(s, msg) for s in small
                   for msg in (note("notifications/message", {"pad": "z" * 9000}),
                               req(3, "ping"))])
        for s in small:
            m.msg(s)
        for s in small:
            self.assertEqual(pipe_size(pids[s], 0), 1 << 20)
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)


class BigMessages(Case):
    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_huge_ids(self):
        """A 20 MB id in a session's request and its answer, then in an end of run for a
        session that does not exist, then in a request refused by --max-sessions (both
        answered by mcpmux): each time, with nothing more sent, the memory goes back."""
        m = Mux(self.serve(opts=FAST + ["--max-sessions", "1"]))
        big = "x" * 20_000_000

        def idle_and_small():
            wait_until(lambda: rss_anon_kib(m.p.pid) < 5_000, 5,
                       "mcpmux's private memory to fall back under 5 MB, idle")
        m.send("a", req(big, "ping"))
        self.assertEqual(m.msg("a", 30)["id"], big)
        idle_and_small()
        m.send("nope", req(big, "mcpmux/endRun"))
        self.assertIsNone(m.msg("nope", 30)["result"]["pid"])
        idle_and_small()
        m.send("b", req(big, "ping"))
        self.assertIn("max-sessions", m.msg("b", 30)["error"]["message"])
        idle_and_small()
        m.p.close_stdin()
        self.assertEqual(m.p.wait(), 0)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_of_the_errors_of_a_batch_too_long_to_buffer(self):
        """A batch over --max-message 16M too long to be read whole: of small requests
        (400,000, whose errors would take 60 MB), it gets one error with id null; of
        requests padded so that the array of their errors is just within --max-message
        (80,000 of 260 bytes), that array.  Either way the peak is under 3 times
        --max-message, in wrap, and in serve for a session of no connection's and for
        the connection's own initialized session (the array built in its envelope, or
        passed as it is to the session's queue, not copied into one: within a fifth of
        wrap's) (docs/reliability.md)."""
        limit = 16 << 20
        tiny, size = [], 0
        while size <= limit + 2000:
            tiny.append('{"jsonrpc":"2.0","id":%d,"method":"m"}' % len(tiny))
            size += len(tiny[-1]) + 1
        n = limit // 200
        padded = ['{"jsonrpc":"2.0","id":%d,"method":"m","params":{"p":"%s"}}'
                  % (k, "p" * (limit // n)) for k in range(n)]

        for name, elems, answered in (("small", tiny, 1), ("padded", padded, n)):
            batch = ("[" + ",".join(elems) + "]").encode()
            w = self.wrap(opts=["--max-message", "16M"])
            w.write(batch + b"\n", 30)
            line = w.line(30)
            self.assertLessEqual(len(line), limit)
            got = json.loads(line)
            self.assertEqual(len(got) if isinstance(got, list) else 1, answered)
            wrap_hwm = vm_hwm_kib(w.pid)
            w.close_stdin()
            self.assertEqual(w.wait(10), 0)
            print("peak RSS, %s: wrap %d KiB" % (name, wrap_hwm))
            self.assertLess(wrap_hwm, 3 * limit // 1024)

            for sid in ("s1", "s"):
                with self.subTest(batch=name, session=sid):
                    p = self.serve(opts=["--max-message", "16M"])
                    m = Mux(p)
                    if sid == "s":
                        m.send("s", initialize(0))
                        self.assertIn("result", m.msg("s", 30))
                    p.write(b'{"session":"%s","message":' % sid.encode() + batch + b"}\n",
                            30)
                    got = m.take(lambda e: e.get("session") == sid and (
                        isinstance(e.get("message"), list)
                        or "error" in e.get("message", {})), 30)["message"]
                    self.assertEqual(len(got) if isinstance(got, list) else 1, answered)
                    serve_hwm = vm_hwm_kib(p.pid)
                    p.close_stdin()
                    self.assertEqual(p.wait(10), 0)
                    print("peak RSS, %s: serve %s %d KiB" % (name, sid, serve_hwm))
                    self.assertLess(serve_hwm, max(wrap_hwm * 1.2, wrap_hwm + 4096))
                    self.assertLess(serve_hwm, 3 * limit // 1024)

if __name__ == "__main__":
    main()
