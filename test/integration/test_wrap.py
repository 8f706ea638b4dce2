"""Wrap mode: mcpmux -- COMMAND, against the fixture server."""

import array
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
import unittest

from test_hardening import logged
from mcptest import (Case, FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, alive, all_pids, call, deadline, encode,
                     fd_count, initialize, main, nested, note, ppid_of, proc_report, proc_start, proc_state, req, rss_anon_kib,
                     vm_hwm_kib, wait_until, ASKER)

# An answer over the 4096 bytes the tests below give --max-message.
OVER = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}

FAST = ["--eof-grace", "300", "--term-grace", "300"]


# A server that answers each request with a result nested as deep as its id says.
NESTED_SERVER = """
import json, sys
for line in sys.stdin:
    k = json.loads(line)["id"]
    print('{"jsonrpc":"2.0","id":%d,"result":{"d":%s}}' % (k, "[" * (k - 2) + "]" * (k - 2)),
          flush=True)
"""


def env_of(p, id_):
    """The fixture's process facts, from its env tool."""
    p.send(call(id_, "env"))
    m = p.msg()
    assert m.get("id") == id_, m
    return m["result"]["structuredContent"]


def grandchild_pid(p):
    for line in wait_until(lambda: [l for l in p.stderr().splitlines()
                                    if "mcp-fixture: grandchild" in l], 5, "the grandchild's pid"):
        return int(line.split()[-1])



# ASKER that takes batches too: each element in its order, a batch's requests answered
# in one batch (an answer's [id, code] into what report returns).
BATCH_ASKER = """
import json, sys
got = []
for line in sys.stdin:
    m = json.loads(line)
    out = []
    for e in (m if isinstance(m, list) else [m]):
        if "method" not in e:
            got.append([e["id"], e["error"]["code"]])
        elif e["method"] == "ask":
            for k in e["params"]["ids"]:
                print(json.dumps({"jsonrpc": "2.0", "id": k, "method": "sampling/createMessage"}),
                      flush=True)
        if "id" in e and "method" in e:
            out.append({"jsonrpc": "2.0", "id": e["id"], "result": list(got)})
    if out:
        print(json.dumps(out if isinstance(m, list) else out[0]), flush=True)
"""


def ERR(id_):
    """The client's error answer to the server's request id_."""
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": -1, "message": "no"}}


class Passthrough(Case):
    def test_same_bytes_as_direct(self):
        """The client sees exactly the bytes the server wrote, and vice versa."""
        msgs = [initialize(1), note("notifications/initialized"), req(2, "tools/list"),
                call("x", "echo", text="h\u00e9llo \"w\"\n\\"), req(3, "ping")]
        direct = self.start([FIXTURE])
        direct.send(*msgs)
        want = [direct.line() for _ in range(4)]
        direct.close_stdin()
        self.assertEqual(direct.wait(), 0)

        w = self.wrap()
        w.send(*msgs)
        got = [w.line() for _ in range(4)]
        self.assertEqual(got, want)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assert_no_leftovers()

    def test_crlf_and_empty_lines(self):
        w = self.wrap()
        w.write(b"\r\n\n" + json.dumps(req(1, "ping")).encode() + b"\r\n\n")
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 1, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_many_messages_in_one_write_and_split_writes(self):
        w = self.wrap()
        data = b"".join(json.dumps(req(i, "ping")).encode() + b"\n" for i in range(200))
        w.write(data[:7])
        w.write(data[7:5000])
        w.write(data[5000:])
        ids = [w.msg()["id"] for _ in range(200)]
        self.assertEqual(ids, list(range(200)))
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_server_gets_exact_lines_whatever_the_reads(self):
        """Each valid line reaches the server once, in order, ending in one "\n", however
        the client's bytes are cut: lines whole in a read or across reads, CRLF, a line
        longer than a read, refused lines in between."""
        import random
        valid = [json.dumps(note("n/%d" % i, {"pad": "x" * (i * 37 % 300)})).encode()
                 for i in range(400)]
        valid[123] = json.dumps(note("big", {"pad": "y" * 150000})).encode()
        data, want = b"", b""
        for i, line in enumerate(valid):
            end = b"\r\n" if i % 7 == 3 else b"\n"
            data += line + end
            want += line + b"\n"
            if i % 50 == 25:
                data += b"not json\n" + b"\n"
        rng = random.Random(7)
        for cuts in ("whole", "small", "random"):
            with self.subTest(cuts=cuts):
                out = os.path.join(self.tmp.name, "got-" + cuts)
                # (not exec: the shell keeps stdout open, or mcpmux would end a server
                # that can no longer answer)
                p = self.start([MCPMUX, "--", "sh", "-c", 'cat > "$0"', out])
                if cuts == "whole":
                    p.write(data)
                else:
                    at = 0
                    while at < len(data):
                        n = rng.randint(1, 300) if cuts == "small" else rng.randint(1, 70000)
                        p.write(data[at:at + n])
                        at += n
                p.close_stdin()
                self.assertEqual(p.wait(30), 0, p.stderr())
                with open(out, "rb") as f:
                    got = f.read()
                self.assertEqual(len(got), len(want), p.stderr()[-2000:])
                self.assertTrue(got == want, "the server got other bytes than the valid lines")

    def test_sampling_request_from_server(self):
        """Server-to-client requests and the client's responses are routed both ways."""
        w = self.wrap()
        w.send(initialize(1))
        w.msg()
        w.send(call(2, "ask"))
        ask = w.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        w.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant", "n": 42}})
        r = self.assert_response(w.msg(), 2)
        self.assertIn('"n":42', r["content"][0]["text"])
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_stderr_passes_through(self):
        w = self.wrap("--stderr-chatter")
        w.send(req(1, "ping"))
        w.msg()
        w.close_stdin()
        w.wait()
        self.assertIn("mcp-fixture: got", w.stderr())

    def test_backend_environment_and_signal_state(self):
        """Own process group, default signal dispositions, nothing blocked, the cookie."""
        w = self.wrap()
        e = env_of(w, 1)
        self.assertEqual(e["pgid"], e["pid"])
        self.assertEqual(e["ppid"], w.pid)
        self.assertEqual(int(e["sigblk"], 16), 0)
        # (signals 32 and 33 belong to the C library's threads, or to valgrind)
        self.assertEqual(int(e["sigign"], 16) & ~(3 << 31), 0)
        self.assertRegex(e["session"], r"^[0-9a-f-]{36}$")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_the_server_inherits_the_ignored_and_blocked_signals_of_a_direct_run(self):
        """What the caller ignored (nohup's SIGHUP, a background job's SIGINT and SIGQUIT, a
        client's SIGPIPE and SIGXFSZ) or blocked, the server gets as a direct run does,
        though mcpmux ignores SIGPIPE, SIGXFSZ and SIGUSR1 and handles SIGTERM, SIGINT and
        SIGHUP itself; and what the caller did not ignore, the server does not."""
        ignored = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ)
        blocked = {signal.SIGUSR2, signal.SIGALRM}

        def caller():
            for sig in ignored:
                signal.signal(sig, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)

        def signals(argv):
            p = self.start(argv, preexec_fn=caller, restore_signals=False)
            e = env_of(p, 1)
            p.close_stdin()
            self.assertEqual(p.wait(10), 0)
            # (signals 32 and 33 belong to the C library's threads, or to valgrind)
            return [int(e["sigign"], 16) & ~(3 << 31), int(e["sigblk"], 16) & ~(3 << 31)]

        direct = signals([FIXTURE])
        self.assertEqual(direct, [sum(1 << (s - 1) for s in ignored),
                                  sum(1 << (s - 1) for s in blocked)])
        self.assertEqual(signals([MCPMUX, "--", FIXTURE]), direct)


class EndOfRun(Case):
    def test_an_end_of_run_inside_a_batch_is_the_servers(self):
        """Inside a batch the end-of-run message is not recognised: the batch goes to the
        server whole (it answers that method as unknown), and the run goes on."""
        w = self.wrap()
        e = env_of(w, 1)
        w.send([req(2, "mcpmux/endRun"), req(3, "ping")])
        answers = {m["id"]: m for m in w.msg()}
        self.assertEqual(answers[2]["error"]["code"], -32601, answers)
        self.assertEqual(answers[3]["result"], {}, answers)
        self.assertTrue(alive(e["pid"]))
        w.send(req(4, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 4, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_stubborn_tree_gone_within_graces(self):
        """SIGTERM ignored, a setsid() grandchild: all gone within eof+term grace + 0.5 s."""
        w = self.wrap("--ignore-sigterm", "--daemonize-grandchild", opts=FAST)
        e = env_of(w, 1)
        gc = grandchild_pid(w)
        self.assertTrue(alive(gc))
        self.assertNotEqual(os.getsid(gc), e["sid"])
        t0 = time.monotonic()
        w.send(req(2, "mcpmux/endRun", {"reason": "test"}))
        r = self.assert_response(w.msg(5), 2)
        elapsed = time.monotonic() - t0
        self.assertEqual(r["escalation"], "kill")  # for the grandchild
        self.assertEqual(r["exit"], {"code": 0})  # the backend itself exits at EOF
        self.assertEqual(r["pid"], e["pid"])
        self.assertEqual(r["session"], e["session"])
        self.assertLess(elapsed, 0.3 + 0.3 + 0.5 * SLOW)
        self.assertFalse(alive(gc))
        self.assertFalse(alive(e["pid"]))
        self.assertEqual(self.cookie_pids(e["session"]), [])
        self.assert_no_leftovers(0)
        # mcpmux stays up; the next message starts a fresh run
        e2 = env_of(w, 3)
        self.assertNotEqual(e2["pid"], e["pid"])
        self.assertNotEqual(e2["session"], e["session"])
        w.close_stdin()
        w.wait()
        self.assert_no_leftovers()

    def test_end_notification_is_not_forwarded(self):
        w = self.wrap("--stderr-chatter")
        e = env_of(w, 1)
        w.send(note("mcpmux/endRun"))
        wait_until(lambda: not alive(e["pid"]), 3, "the backend to exit")
        self.assertNotIn("mcpmux/endRun", w.stderr())
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_escalation_eof_and_term(self):
        w = self.wrap(opts=FAST)
        w.send(req(1, "ping"))
        w.msg()
        w.send(req(2, "mcpmux/endRun"))
        r = self.assert_response(w.msg(), 2)
        self.assertEqual(r["escalation"], "eof")
        self.assertEqual(r["exit"], {"code": 0})
        w.close_stdin()
        w.wait()

        w = self.wrap("--ignore-eof", opts=FAST)
        w.send(req(1, "ping"))
        w.msg()
        w.send(req(2, "mcpmux/endRun"))
        r = self.assert_response(w.msg(), 2)
        self.assertEqual(r["escalation"], "term")
        self.assertEqual(r["exit"], {"signal": "SIGTERM"})
        w.close_stdin()
        w.wait()

    def test_grace_ms_shortens_this_teardown(self):
        w = self.wrap("--ignore-sigterm", "--ignore-eof")  # default graces: 2 s + 2 s
        w.send(req(1, "ping"))
        w.msg()
        t0 = time.monotonic()
        w.send(req(2, "mcpmux/endRun", {"graceMs": 100}))
        r = self.assert_response(w.msg(), 2)
        self.assertEqual(r["escalation"], "kill")
        self.assertLess(time.monotonic() - t0, min(1.0 * SLOW, 3.5))  # not the 4 s of the graces
        w.close_stdin()
        w.wait()

    def test_the_default_graces_are_2000_ms_each(self):
        """Without --eof-grace or --term-grace, each wait is 2000 ms (docs/mcpmux.1): a
        server that ignores EOF and SIGTERM is killed 2 s after the other step's 0.1 s."""
        for opts in (["--term-grace", "100"], ["--eof-grace", "100"]):
            w = self.wrap("--ignore-sigterm", "--ignore-eof", opts=opts)
            w.send(req(1, "ping"))
            w.msg()
            w.send(req(2, "mcpmux/endRun"))
            r = self.assert_response(w.msg(6), 2)
            self.assertEqual(r["escalation"], "kill", opts)
            self.assertGreaterEqual(r["ms"], 2100, (opts, r))
            self.assertLess(r["ms"], 2100 + 1000 * SLOW, (opts, r))
            w.close_stdin()
            self.assertEqual(w.wait(), 128 + signal.SIGKILL)
        self.assert_no_leftovers(0)

    def test_grace_ms_longer_than_the_graces_does_not_lengthen_them(self):
        """params.graceMs replaces the grace periods only when it is shorter."""
        w = self.wrap("--ignore-sigterm", "--ignore-eof",
                      opts=["--eof-grace", "100", "--term-grace", "100"])
        w.send(req(1, "ping"))
        w.msg()
        t0 = time.monotonic()
        w.send(req(2, "mcpmux/endRun", {"graceMs": 5000}))
        r = self.assert_response(w.msg(), 2)
        self.assertEqual(r["escalation"], "kill")
        self.assertLess(time.monotonic() - t0, min(1.5 * SLOW, 9))  # not the 10 s of graceMs
        w.close_stdin()
        w.wait()

    def test_an_end_of_run_with_nothing_running_is_answered_at_once(self):
        """A second end-of-run in a row has no run to name (docs/decisions.md)."""
        w = self.wrap(opts=FAST)
        w.send(req(1, "ping"))
        w.msg()
        w.send(req(2, "mcpmux/endRun"))
        self.assertEqual(self.assert_response(w.msg(), 2)["escalation"], "eof")
        w.send(req(3, "mcpmux/endRun"))
        self.assertEqual(self.assert_response(w.msg(), 3),
                         {"session": None, "pid": None, "exit": None, "escalation": "none",
                          "ms": 0})
        self.assert_no_leftovers(0)  # no server was started for it
        w.close_stdin()
        self.assertEqual(w.read_to_eof(), b"")
        self.assertEqual(w.wait(), 0)

    def test_exit_status_after_an_end_of_run_then_eof_is_the_ended_runs(self):
        w = self.wrap("--exit-code=5", opts=FAST)
        w.send(req(1, "ping"))
        w.msg()
        w.send(req(2, "mcpmux/endRun"))
        self.assertEqual(self.assert_response(w.msg(), 2)["exit"], {"code": 5})
        w.close_stdin()
        self.assertEqual(w.wait(), 5)

    def test_last_line_without_newline_after_an_end_of_run(self):
        """The client's last line has no "\n" and comes while the ended run still owes
        its result: it is not lost at EOF, it starts the next run like any line."""
        w = self.wrap("--ignore-eof", opts=FAST)  # the ended run owes its result 0.3 s
        w.send(req(1, "ping"))
        w.msg()
        w.write(encode(req(2, "mcpmux/endRun")) + encode(req(3, "ping")).rstrip(b"\n"))
        w.close_stdin()
        self.assertEqual(self.assert_response(w.msg(), 2)["escalation"], "term")
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 3, "result": {}})
        self.assertEqual(w.wait(), 128 + signal.SIGTERM, "the second run, deaf to EOF")
        self.assert_no_leftovers(0)

    def test_custom_end_method(self):
        w = self.wrap(opts=["--end-method", "cron/done"])
        w.send(req(1, "ping"))
        w.msg()
        w.send(req(2, "cron/done"))
        self.assertEqual(self.assert_response(w.msg(), 2)["escalation"], "eof")
        w.send(req(3, "mcpmux/endRun"))  # an ordinary method now: forwarded
        self.assert_error(w.msg(), 3, -32601)
        w.close_stdin()
        w.wait()

    def test_orphan_without_cookie_found_by_ancestry(self):
        """A grandchild that cleared its environment is still part of the tree."""
        w = self.wrap("--clear-env-grandchild", "--ignore-sigterm", opts=FAST)
        e = env_of(w, 1)
        gc = grandchild_pid(w)
        self.assertTrue(alive(gc))
        w.send(req(2, "mcpmux/endRun"))
        self.assert_response(w.msg(5), 2)
        self.assertFalse(alive(gc))
        self.assertFalse(alive(e["pid"]))
        w.close_stdin()
        w.wait()

    def test_an_ending_run_spares_the_orphans_while_the_next_one_runs(self):
        """Runs overlap (the first ends slowly, the next has begun): a cookie-less orphan
        could be either's, and the next run's live one is not ended with the first run
        (here without a cgroup, where ancestry is all there is).  Nothing is left at exit."""
        self.env["MCPMUX_CGROUP"] = "off"
        w = self.wrap("--clear-env-grandchild", "--ignore-eof", "--ignore-sigterm",
                      opts=["-v", "--eof-grace", "300", "--term-grace", "300"])
        first = env_of(w, 1)["pid"]
        w.send(note("mcpmux/endRun"))
        second = env_of(w, 2)["pid"]
        orphans = wait_until(lambda: [int(l.split()[-1]) for l in w.stderr().splitlines()
                                      if "mcp-fixture: grandchild" in l][1:], 5,
                             "the second run's grandchild")
        wait_until(lambda: "ended (kill" in w.stderr(), 5, "the first run to end")
        self.assertFalse(alive(first))
        self.assertTrue(alive(second))
        self.assertTrue(alive(orphans[0]), "the running run's orphan was ended")
        w.close_stdin()
        self.assertEqual(w.wait(), 128 + 9, "the second server, deaf to EOF and SIGTERM")
        self.assert_no_leftovers(0)

    def test_hundred_runs_back_to_back(self):
        w = self.wrap("--daemonize-grandchild", opts=["--eof-grace", "50"])
        pids = set()
        fds = None
        for i in range(100):
            w.send(initialize(3 * i), call(3 * i + 1, "env"))
            w.msg()
            pid = w.msg()["result"]["structuredContent"]["pid"]
            # a pid with its start time: a busy machine can give a pid out again
            pids.add((pid, proc_start(pid)))
            w.send(req(3 * i + 2, "mcpmux/endRun"))
            # the backend exits at EOF; its daemonised grandchild needs SIGTERM
            self.assertEqual(self.assert_response(w.msg(), 3 * i + 2)["escalation"], "term")
            if i == 0:
                fds = fd_count(w.pid)
        self.assertEqual(len(pids), 100)
        self.assertEqual(fd_count(w.pid), fds)
        self.assert_no_leftovers(0)
        w.close_stdin()
        # the last server's status: 0, or 143 when a loaded machine kept it past the 50 ms
        # grace and the SIGTERM meant for its grandchild reached it too
        self.assertIn(w.wait(), (0, 128 + 15))


class Teardown(Case):
    def test_stdin_eof(self):
        w = self.wrap("--daemonize-grandchild", "--exit-code=5", opts=FAST)
        e = env_of(w, 1)
        gc = grandchild_pid(w)
        w.close_stdin()
        self.assertEqual(w.wait(), 5)
        self.assertFalse(alive(gc))
        self.assertEqual(self.cookie_pids(e["session"]), [])
        self.assert_no_leftovers(0)

    def test_sigterm_to_mcpmux(self):
        """Teardown on a signal; mcpmux exits with the backend's status."""
        for sig, args, status in ((signal.SIGTERM, ["--exit-code=4", "--ignore-sigterm"], 4),
                                  (signal.SIGINT, ["--ignore-eof"], 128 + signal.SIGTERM),
                                  (signal.SIGHUP, ["--ignore-eof", "--ignore-sigterm"],
                                   128 + signal.SIGKILL)):
            w = self.wrap("--daemonize-grandchild", *args, opts=FAST)
            e = env_of(w, 1)
            gc = grandchild_pid(w)
            w.p.send_signal(sig)
            self.assertEqual(w.wait(), status)
            self.assertFalse(alive(gc))
            self.assertEqual(self.cookie_pids(e["session"]), [])
            self.assert_no_leftovers(0)

    def test_signals_the_caller_ignored_end_no_run(self):
        """Under nohup (SIGHUP ignored), or as a background job of a shell without job
        control (SIGINT ignored), a direct run does not end on those signals: nor does a
        wrap.  SIGTERM, which the caller did not ignore, still ends it."""
        def caller():
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        w = self.start([MCPMUX, "-v"] + FAST + ["--", FIXTURE, "--ignore-eof"],
                       preexec_fn=caller)
        pid = env_of(w, 1)["pid"]
        w.p.send_signal(signal.SIGHUP)
        w.p.send_signal(signal.SIGINT)
        # mcpmux has woken up to the signals by the time it has answered twice since
        self.assertEqual(env_of(w, 2)["pid"], pid)
        self.assertEqual(env_of(w, 3)["pid"], pid)
        self.assertNotIn("ended (", w.stderr())
        w.p.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(), 128 + signal.SIGTERM)
        self.assertIn("ended (term,", w.stderr())
        self.assertNotIn("Hangup", w.stderr())
        self.assertNotIn("Interrupt", w.stderr())
        self.assert_no_leftovers(0)

    def test_signals_the_caller_blocked_stay_blocked(self):
        """A signal the caller blocked and mcpmux does not watch (SIGQUIT, SIGALRM) stays
        blocked in mcpmux too, as in a direct run: sent, it is left pending, and the run
        goes on, rather than ending mcpmux by its default action without a teardown."""
        w = self.start([MCPMUX] + FAST + ["--", FIXTURE],
                       preexec_fn=lambda: signal.pthread_sigmask(
                           signal.SIG_BLOCK, {signal.SIGQUIT, signal.SIGALRM}))
        pid = env_of(w, 1)["pid"]
        w.p.send_signal(signal.SIGQUIT)
        w.p.send_signal(signal.SIGALRM)
        self.assertEqual(env_of(w, 2)["pid"], pid)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assert_no_leftovers(0)

    def test_a_caller_that_blocked_sigchld_leaves_the_teardown_as_it_is(self):
        """SIGCHLD blocked by the caller is the server's, as in a direct run, not mcpmux's:
        mcpmux still learns of its server's exit, and the run ends at its EOF, not
        abandoned at the kill deadline."""
        p = self.start([MCPMUX, "-v"] + FAST + ["--", FIXTURE],
                       preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK,
                                                                 {signal.SIGCHLD}))
        e = env_of(p, 1)
        self.assertEqual(int(e["sigblk"], 16) & ~(3 << 31), 1 << (signal.SIGCHLD - 1))
        p.close_stdin()
        self.assertEqual(p.wait(30), 0)
        self.assertIn("ended (eof,", p.stderr())
        self.assertNotIn("abandoned", p.stderr())

    def test_sigtstp_stops_the_server_with_mcpmux_and_sigcont_resumes_both(self):
        """^Z at a terminal stops a direct run's server; it reaches mcpmux's process group,
        not the server's, so mcpmux stops the server's group, then itself, and resumes
        the server when it is continued (a shell's fg or bg).  (mcpmux in a group of its
        own, as a shell's job is: one whose parent, in another group, can continue it.)"""
        w = self.start([MCPMUX, "--", FIXTURE], process_group=0)
        pid = env_of(w, 1)["pid"]
        w.p.send_signal(signal.SIGTSTP)
        wait_until(lambda: proc_state(w.pid) == "T" and proc_state(pid) == "T", 5,
                   "mcpmux and its server to stop")
        w.p.send_signal(signal.SIGCONT)
        wait_until(lambda: proc_state(w.pid) != "T" and proc_state(pid) != "T", 5,
                   "mcpmux and its server to go on")
        self.assertEqual(env_of(w, 2)["pid"], pid)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_sigtstp_in_an_orphaned_group_stops_neither(self):
        """In a process group that nothing could continue (an orphaned one: here, a
        session of its own), the kernel does not stop a direct run's server on SIGTSTP,
        and nothing would ever continue it: neither mcpmux nor its server stays stopped,
        and the run goes on."""
        w = self.start([MCPMUX, "--", FIXTURE], start_new_session=True)
        pid = env_of(w, 1)["pid"]
        w.p.send_signal(signal.SIGTSTP)
        w.send(req(5, "ping"))  # answered once mcpmux has handled the signal before it
        self.assert_response(w.msg(), 5)
        self.assertNotEqual(proc_state(w.pid), "T")
        wait_until(lambda: proc_state(pid) != "T", 5, "the server to go on")
        self.assertEqual(env_of(w, 2)["pid"], pid)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_fg_continues_a_server_stopped_by_another_hand_as_a_direct_run(self):
        """fg sends SIGCONT to the job's whole group, which continues a direct run's server
        even when it had stopped by another hand (here, by itself): so do ^Z and fg with
        mcpmux, which passes the SIGCONT on to every server's group."""
        w = self.start([MCPMUX] + FAST + ["--", FIXTURE, "--stop-self"], process_group=0)
        srv = wait_until(lambda: [p for p in self.tagged() if proc_state(p) == "T"], 5,
                         "the server to stop itself")[0]
        w.p.send_signal(signal.SIGTSTP)
        wait_until(lambda: proc_state(w.pid) == "T", 5, "mcpmux to stop")
        w.p.send_signal(signal.SIGCONT)
        wait_until(lambda: proc_state(srv) not in ("T", None), 5, "the server to go on")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assert_no_leftovers(0)

    def test_the_time_stopped_is_not_counted_in_a_grace(self):
        """^Z while a grace runs (the end of a run asked, the server's stdin closed): after
        fg the grace goes on from where it stopped, as the server, stopped too, had no
        time to end in; it is not over at once."""
        w = self.start([MCPMUX, "-v", "--eof-grace", "2000", "--term-grace", "2000", "--",
                        FIXTURE, "--ignore-eof"], process_group=0)
        pid = env_of(w, 1)["pid"]
        w.send(req(2, "mcpmux/endRun"))
        wait_until(lambda: "teardown begins" in w.stderr(), 5, "the teardown to begin")
        w.p.send_signal(signal.SIGTSTP)
        wait_until(lambda: proc_state(w.pid) == "T" and proc_state(pid) == "T", 5,
                   "mcpmux and its server to stop")
        time.sleep(3)  # the time stopped, longer than the grace: what is under test
        t0 = time.monotonic()
        w.p.send_signal(signal.SIGCONT)
        r = self.assert_response(w.msg(10), 2)
        self.assertEqual(r["escalation"], "term")
        self.assertGreater(time.monotonic() - t0, 1.0)  # the grace's rest, not 0
        w.close_stdin()
        self.assertEqual(w.wait(), 128 + signal.SIGTERM)
        self.assert_no_leftovers(0)

    def test_a_stopped_server_gets_sigcont_with_its_sigterm(self):
        """A stopped process does not act on SIGTERM: SIGCONT follows it, so the server
        ends at the SIGTERM step, not at SIGKILL after --term-grace."""
        w = self.wrap("--stop-self", opts=["--eof-grace", "300", "--term-grace", "5000"])
        wait_until(lambda: [p for p in self.tagged() if proc_state(p) == "T"], 5,
                   "the server to stop itself")
        t0 = time.monotonic()
        w.send(req(1, "mcpmux/endRun"))
        r = self.assert_response(w.msg(), 1)
        self.assertEqual((r["escalation"], r["exit"]), ("term", {"signal": "SIGTERM"}))
        self.assertLess(time.monotonic() - t0, 2.0 * SLOW)
        w.close_stdin()
        self.assertEqual(w.wait(), 128 + signal.SIGTERM)
        self.assert_no_leftovers(0)

    def test_kill_deadline_0_abandons_nothing_that_sigkill_ends(self):
        """--kill-deadline 0: a tree that ignores SIGTERM, with a setsid() grandchild, dies
        of the SIGKILL; it is not abandoned at the walk that sent it."""
        w = self.wrap("--ignore-sigterm", "--ignore-eof", "--daemonize-grandchild",
                      opts=["--eof-grace", "100", "--term-grace", "100", "--kill-deadline", "0"])
        e = env_of(w, 1)
        gc = grandchild_pid(w)
        w.close_stdin()
        self.assertEqual(w.wait(), 128 + signal.SIGKILL, w.stderr())
        self.assertNotIn("abandoned", w.stderr())
        self.assertFalse(alive(gc))
        self.assertFalse(alive(e["pid"]))
        self.assertEqual(self.cookie_pids(e["session"]), [])
        self.assert_no_leftovers(0)

    def test_sigusr1_without_a_log_is_ignored(self):
        """SIGUSR1 reopens the traffic log; without one it is ignored (docs/mcpmux.1): the
        run goes on, and mcpmux exits with its server's status."""
        w = self.wrap("--exit-code=6", opts=FAST)
        e = env_of(w, 1)
        w.p.send_signal(signal.SIGUSR1)
        self.assertEqual(env_of(w, 2)["pid"], e["pid"])
        self.assertTrue(alive(w.pid))
        w.close_stdin()
        self.assertEqual(w.wait(), 6)
        self.assertNotIn("mcpmux:", w.stderr())
        self.assert_no_leftovers(0)

    def test_verbose_says_the_lifecycle_and_the_default_does_not(self):
        """-v adds the lifecycle messages (the spawn, the teardown's steps); by default
        they are not written."""
        for opts, said in ((["-v"], True), ([], False)):
            w = self.wrap("--ignore-eof", opts=FAST + opts)
            e = env_of(w, 1)
            w.send(req(2, "mcpmux/endRun"))
            self.assertEqual(self.assert_response(w.msg(), 2)["escalation"], "term")
            w.close_stdin()
            self.assertEqual(w.wait(), 128 + signal.SIGTERM)
            err = w.stderr()
            for words in ("started '%s' as pid %d" % (FIXTURE, e["pid"]),
                          "session %s: teardown begins" % e["session"],
                          "session %s: ended (term" % e["session"]):
                self.assertEqual(words in err, said, (opts, words, err))
        self.assert_no_leftovers(0)

    def test_sigkill_to_mcpmux_takes_direct_backend(self):
        w = self.wrap("--ignore-sigterm", "--ignore-eof")
        e = env_of(w, 1)
        w.p.send_signal(signal.SIGKILL)
        w.wait()
        t0 = time.monotonic()
        wait_until(lambda: not alive(e["pid"]), 1, "the backend to die with mcpmux")
        self.assertLess(time.monotonic() - t0, 1.0 * SLOW)

    def test_idle_timeout(self):
        """A client that leaves its run open and silent: torn down, then mcpmux exits."""
        w = self.wrap("--daemonize-grandchild", "--ignore-sigterm",
                      opts=FAST + ["--idle-timeout", "1"])
        e = env_of(w, 1)
        gc = grandchild_pid(w)
        t0 = time.monotonic()
        w.wait(1 + 0.6 + 2)
        self.assertGreater(time.monotonic() - t0, 0.9)
        self.assertFalse(alive(gc))
        self.assertFalse(alive(e["pid"]))
        self.assert_no_leftovers(0)

    def test_an_idle_timeout_is_said(self):
        """--idle-timeout ends the run and with it the client's tools: said on stderr at
        the default verbosity, once; -q silences it."""
        for quiet in (False, True):
            w = self.wrap(opts=["--idle-timeout", "0.5"] + FAST + (["-q"] if quiet else []))
            w.send(initialize(1))
            self.assertEqual(w.msg()["id"], 1)
            self.assertEqual(w.read_to_eof(10), b"")
            self.assertEqual(w.wait(), 0)
            said = "mcpmux: idle for 0.5 s: ending the run (--idle-timeout)\n"
            self.assertEqual(w.stderr().count(said), 0 if quiet else 1, w.stderr())
            if quiet:
                self.assertEqual(w.stderr(), "")

    def test_idle_timer_waits_for_requests_in_flight(self):
        w = self.wrap(opts=FAST + ["--idle-timeout", "1"])
        w.send(call(1, "sleep", ms=1500))
        self.assertEqual(self.assert_response(w.msg(3), 1)["content"][0]["text"], "slept")
        w.wait(3)

    def test_backend_exits_by_itself(self):
        w = self.wrap("--setsid-child", opts=FAST)
        e = env_of(w, 1)
        w.send(call(2, "sleep", ms=5000), call(3, "exit", code=9))
        errs = {w.msg()["id"]: None for _ in range(2)}
        self.assertEqual(set(errs), {2, 3})
        self.assertEqual(w.wait(), 9)
        self.assertFalse(alive(e["pid"]))
        self.assert_no_leftovers(0)


class Failures(Case):
    def test_crash_mid_request(self):
        w = self.wrap()
        w.send(initialize(1))
        w.msg()
        w.send(call(7, "crash"))
        err = self.assert_error(w.msg(), 7, -32000)
        self.assertIn("SIGSEGV", err["message"])
        self.assertEqual(w.wait(), 128 + signal.SIGSEGV)

    def test_server_that_closes_its_input(self):
        """A server that closes its stdin and runs on cannot get what it is sent: the run
        ends, and the request that could not reach it gets an error, within the graces."""
        w = self.start([MCPMUX] + FAST + ["--", "sh", "-c", "exec <&-; exec sleep 30"])
        def server_sleeps():  # it has closed its stdin once it runs sleep
            with open("/proc/%d/task/%d/children" % (w.pid, w.pid)) as f:
                kids = f.read().split()
            for pid in kids:
                try:
                    with open("/proc/%s/comm" % pid) as f:
                        if f.read().strip() == "sleep":
                            return True
                except OSError:
                    pass
            return False

        wait_until(server_sleeps, 5, "the server to close its stdin")
        t0 = time.monotonic()
        w.send(req(1, "ping"))
        self.assert_error(w.msg(5), 1, -32000)
        self.assertLess(time.monotonic() - t0, 2.5 * SLOW)
        self.assertEqual(w.wait(), 128 + signal.SIGTERM)
        self.assert_no_leftovers(0)

    def test_exit_codes(self):
        w = self.start([MCPMUX, "--", "/nonexistent/mcp-server"])
        self.assertEqual(w.wait(), 127)
        if not WRAPPER:
            # (valgrind runs clone(CLONE_VM|CLONE_VFORK) as a fork: the child's report of
            # its exec failure does not reach mcpmux there, only the exit status 127)
            self.assertIn("/nonexistent/mcp-server", w.stderr())
        path = os.path.join(self.tmp.name, "not-executable")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        w = self.start([MCPMUX, "--", path])
        self.assertEqual(w.wait(), 126)
        w = self.wrap("--exit-code=3")
        w.close_stdin()
        self.assertEqual(w.wait(), 3)
        w = self.wrap()
        w.send(call(1, "signal", sig=signal.SIGUSR1))
        self.assert_error(w.msg(), 1, -32000)
        self.assertEqual(w.wait(), 128 + signal.SIGUSR1)
        w = self.start([MCPMUX, "--no-such-option", "--", FIXTURE])
        self.assertEqual(w.wait(), 2)
        w = self.start([MCPMUX])
        self.assertEqual(w.wait(), 2)

    def assert_cannot_run(self, command, why, env=None):
        """mcpmux -- COMMAND exits 127 and says only "cannot run 'COMMAND': WHY"."""
        w = self.start([MCPMUX, "--", command], **({"env": env} if env else {}))
        self.assertEqual(w.wait(), 127)
        self.assertEqual(w.stderr(), "mcpmux: cannot run '%s': %s\n" % (command, why))

    @unittest.skipIf(WRAPPER, "valgrind: the exec's errno does not reach mcpmux")
    def test_a_missing_interpreter_is_named(self):
        """A file that exists but whose interpreter does not (exec's ENOENT) is not said to
        be missing: its #! line's interpreter is named (found in PATH too), as is an ELF
        file's dynamic loader; the exit status stays 127, as a shell gives."""
        script = os.path.join(self.tmp.name, "server.sh")
        with open(script, "w") as f:
            f.write("#!/nonexistent/interp -x\n")
        os.chmod(script, 0o755)
        self.assert_cannot_run(script, "its interpreter '/nonexistent/interp' was not found "
                               "(check its #! line)")
        env = dict(self.env, PATH=self.tmp.name + ":" + os.environ.get("PATH", ""))
        self.assert_cannot_run("server.sh", "its interpreter '/nonexistent/interp' was not "
                               "found (check its #! line)", env=env)
        # An ELF file whose loader (PT_INTERP) is not there.
        elf = os.path.join(self.tmp.name, "server.elf")
        with open(FIXTURE, "rb") as f:
            data = bytearray(f.read())
        self.assertEqual(data[:5], b"\x7fELF\x02")  # 64-bit
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phsize, phnum = struct.unpack_from("<HH", data, 0x36)
        for i in range(phnum):
            kind, = struct.unpack_from("<I", data, phoff + i * phsize)
            if kind == 3:  # PT_INTERP
                off, = struct.unpack_from("<Q", data, phoff + i * phsize + 8)
                size, = struct.unpack_from("<Q", data, phoff + i * phsize + 32)
                loader = b"/nonexistent/ld.so"
                self.assertLess(len(loader), size)
                data[off:off + size] = loader + b"\0" * (size - len(loader))
                break
        else:
            self.skipTest("the fixture has no dynamic loader")
        with open(elf, "wb") as f:
            f.write(data)
        os.chmod(elf, 0o755)
        self.assert_cannot_run(elf, "its interpreter '/nonexistent/ld.so' was not found "
                               "(check that it was built for this system)")
        # A #! line naming that ELF file: what is missing is the file's loader, not it.
        outer = os.path.join(self.tmp.name, "outer-elf.sh")
        with open(outer, "w") as f:
            f.write("#!%s\n" % elf)
        os.chmod(outer, 0o755)
        self.assert_cannot_run(outer, "its interpreter '%s' cannot run: its interpreter "
                               "'/nonexistent/ld.so' was not found (check that it was built "
                               "for this system)" % elf)
        # A file that is not there is still said to be so.
        self.assert_cannot_run(os.path.join(self.tmp.name, "none"), "No such file or "
                               "directory (check the command name and PATH)")

    @unittest.skipIf(WRAPPER, "valgrind: the exec's errno does not reach mcpmux")
    def test_a_missing_interpreter_of_an_interpreter_is_named(self):
        """A #! line naming a script that is there but whose own interpreter is not: the
        one missing at the end of the chain is named, not the script."""
        inner = os.path.join(self.tmp.name, "inner.sh")
        outer = os.path.join(self.tmp.name, "outer.sh")
        with open(inner, "w") as f:
            f.write("#!/nonexistent/interp\n")
        with open(outer, "w") as f:
            f.write("#!%s -x\n" % inner)
        os.chmod(inner, 0o755)
        os.chmod(outer, 0o755)
        self.assert_cannot_run(outer, "its interpreter '%s' cannot run: its interpreter "
                               "'/nonexistent/interp' was not found (check its #! line)"
                               % inner)
        # Five deep (Linux follows six interpreters since 5.8, and says ELOOP past them)
        chain = [os.path.join(self.tmp.name, "c%d" % i) for i in range(5)]
        for i, path in enumerate(chain):
            with open(path, "w") as f:
                f.write("#!%s\n" % (chain[i + 1] if i + 1 < len(chain) else
                                    "/nonexistent/interp"))
            os.chmod(path, 0o755)
        w = self.start([MCPMUX, "--", chain[0]])
        rc = w.wait()
        if "Too many levels" not in w.stderr():  # (a kernel before 5.8: four deep)
            self.assertEqual(rc, 127)
            self.assertEqual(w.stderr(), "mcpmux: cannot run '%s': %sits interpreter "
                             "'/nonexistent/interp' was not found (check its #! line)\n"
                             % (chain[0], "".join("its interpreter '%s' cannot run: " % c
                                                  for c in chain[1:])))

    @unittest.skipIf(WRAPPER, "valgrind: the exec's errno does not reach mcpmux")
    def test_a_dos_line_ending_of_the_interpreter_is_said(self):
        """A #! line that ends with a carriage return (a script saved with DOS line
        endings) names an interpreter that is not there, '/bin/sh\\r': it is said so, and
        the carriage return is not shown as part of the name."""
        script = os.path.join(self.tmp.name, "dos.sh")
        with open(script, "wb") as f:
            f.write(b"#!/bin/sh\r\necho hi\r\n")
        os.chmod(script, 0o755)
        self.assert_cannot_run(script, "its interpreter '/bin/sh' was not found (its #! line "
                               "ends with a carriage return: DOS line endings?)")

    def test_bad_lines_answered_and_not_forwarded(self):
        w = self.wrap("--stderr-chatter")
        w.write(b"this is not json\n")
        self.assert_error(w.msg(), None, -32700)
        w.write(b'{"id": 4, "method": "x"}\n')  # no "jsonrpc"
        self.assert_error(w.msg(), 4, -32600)
        w.write(b'[1,2]\n')
        w.write(b'{"jsonrpc":"2.0","id":5,"method":"m\xc0\xaf"}\n')  # invalid UTF-8
        w.write(b'{"jsonrpc":"2.0","id":6,"method":"a\x00b"}\n')  # NUL byte
        w.write(b"[" * 600 + b"]" * 600 + b"\n")  # nested too deep
        got = [w.msg() for _ in range(4)]
        # [1,2] reaches the server, which answers a batch with one array of errors
        self.assertTrue(all("error" in e for m in got for e in (m if isinstance(m, list)
                                                                 else [m])), got)
        w.send(req(9, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 9, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertNotIn("not json", w.stderr().split("mcp-fixture: got")[-1])

    def test_json_nested_512_deep_passes_and_513_is_refused(self):
        """JSON is nested at most 512 deep, every array and object counted, the message's
        own included (JSONRPC_MAX_DEPTH): a client's message 512 deep is forwarded, one
        513 deep gets -32700 and is not; a server's line 513 deep is not JSON to mcpmux
        either: it goes to stderr, not to the client, as any line that is not JSON, and
        the request it answers gets -32000 in its place."""
        w = self.wrap()
        w.write(nested(1, 512) + b"\n")
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 1, "result": {}})
        w.write(nested(2, 513) + b"\n")
        self.assert_error(w.msg(), None, -32700)
        w.send(req(3, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 3, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

        w = self.wrap(opts=FAST, command=[sys.executable, "-c", NESTED_SERVER])
        w.send(req(512, "x"))
        d, depth = self.assert_response(w.msg(), 512)["d"], 2
        while d:
            d, depth = d[0], depth + 1
        self.assertEqual(depth, 511)  # and the empty array: 512
        w.send(req(513, "x"))
        # its answer is not forwarded: the request gets an error in its place, at once
        err = self.assert_error(w.msg(), 513, -32000)
        self.assertIn("nested too deeply", err["message"])
        self.assertIn("not JSON-RPC (not forwarded)", w.stderr())
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.read_to_eof(), b"")

    def test_a_server_answer_that_is_not_json_answers_its_request(self):
        """A server's answer that is not JSON (invalid UTF-8, a NUL, nested 600 deep; alone
        or in a batch) is not forwarded and goes to stderr and the traffic log, as any line
        that is not JSON; the request it answers, found by its id, gets one -32000 error in
        its place at once, naming why, logged as mcpmux's own answer.  Its id is matched by
        value: a string id with escapes, an id the server writes back in another form (all
        escaped; a number as JavaScript prints it).  Later calls still work."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=FAST + ["--log", log])
        why = {"utf8": "invalid UTF-8", "nul": "a control character",
               "deep": "nested too deeply", "batch": "invalid UTF-8"}
        ids = [3, 4, 5, 6, 's"\u00e9\\']
        for id_, how in zip(ids, ("utf8", "nul", "deep", "batch", "utf8")):
            w.send(call(id_, "bad", how=how))
            err = self.assert_error(w.msg(), id_, -32000)
            self.assertTrue(err["message"].startswith(
                "the server's answer could not be forwarded: "), err)
            self.assertIn(why[how], err["message"])
        w.send(req(9, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 9, "result": {}})
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.read_to_eof(), b"")
        self.assertIn("server wrote a line that is not JSON-RPC (not forwarded): "
                      '{"jsonrpc":"2.0","id":3,"result"', w.stderr())
        with open(log) as f:
            out = [(r.get("kind"), r.get("id")) for r in map(json.loads, f)
                   if r.get("dir") == "out"]
        self.assertEqual(out, [x for i in ids for x in (("invalid", None), ("error", i))] +
                         [("response", 9)])

        for style, id_ in (("escaped", "ab"), ("js", 7.0)):
            w = self.wrap("--id-style=" + style, opts=FAST)
            w.send(call(id_, "bad", how="utf8"))
            self.assert_error(w.msg(), id_, -32000)
            w.send(req(9, "ping"))
            self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 9, "result": {}})
            w.close_stdin()
            self.assertEqual(w.wait(), 0)
            self.assertEqual(w.read_to_eof(), b"")

    def test_a_bad_batch_after_a_form_feed_answers_its_request(self):
        """A server's batch that is not JSON, after white space yajl takes (a form feed):
        its answer's request gets -32000 at once all the same."""
        w = self.wrap(opts=FAST)
        w.send(call(3, "bad", how="ff-batch"))
        err = self.assert_error(w.msg(), 3, -32000)
        self.assertIn("invalid UTF-8", err["message"])
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.read_to_eof(), b"")

    def test_two_answers_on_one_line_each_answer_their_request(self):
        """A server's line of two answers one after the other (not JSON: more than one
        value): each answer's request gets -32000 at once, the second's too."""
        w = self.wrap(opts=FAST)
        w.send(call(5, "bad", how="two", other=6), req(6, "ping"))
        got = {}
        for _ in range(2):
            m = w.msg()
            got[m.get("id")] = m
        self.assertEqual(sorted(got), [5, 6], got)
        for id_, m in got.items():
            err = self.assert_error(m, id_, -32000)
            self.assertTrue(err["message"].startswith(
                "the server's answer could not be forwarded: "), err)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_a_bad_server_line_that_answers_no_request_changes_nothing(self):
        """A server's line that is not JSON and answers no request in flight is dropped
        with its warning and nothing more: one with no id; a request of the server's own
        under the id of a client's request in flight (its real answer follows); an answer
        to a request answered already.  No request gets an error for them: the one that
        no answer came for waits, here until the run's end."""
        w = self.wrap(opts=FAST)
        w.send(call(3, "bad", how="noid"))
        w.send(call(4, "bad", how="request"))
        self.assertEqual(self.assert_response(w.msg(), 4)["content"][0]["text"], "right")
        w.send(call(5, "bad", how="after"))
        self.assertEqual(self.assert_response(w.msg(), 5)["content"][0]["text"], "right")
        w.send(req(6, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 6, "result": {}})
        self.assertIn("not JSON-RPC (not forwarded)", w.stderr())
        w.close_stdin()
        err = self.assert_error(w.msg(), 3, -32000)  # the server exited before answering
        self.assertNotIn("could not be forwarded", err["message"])
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.read_to_eof(), b"")

    def test_client_message_over_max(self):
        w = self.wrap(opts=["--max-message", "1000"])
        big = call(5, "echo", text="x" * 5000)
        w.send(big)
        self.assert_error(w.msg(), 5, -32600)
        w.send(call(6, "echo", text="ok"))
        self.assertEqual(self.assert_response(w.msg(), 6)["content"][0]["text"], "ok")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_a_batch_over_max(self):
        """A batch over --max-message gets one array with -32600 for each of its requests,
        by its id, as it passes (docs/decisions.md); nothing of it is forwarded."""
        w = self.wrap("--stderr-chatter", opts=["--max-message", "1000"])
        w.send([call(5, "echo", text="x" * 5000), req(6, "ping")])
        self.assertEqual([(m["id"], m["error"]["code"]) for m in w.msg()],
                         [(5, -32600), (6, -32600)])
        # a batch with no message in it: one array of one -32600 with id null, as serve's
        w.write(b"[" + b",".join([b"1"] * 600) + b"]\n")
        got = w.msg()
        self.assertEqual(len(got), 1, got)
        self.assert_error(got[0], None, -32600)
        w.send(req(7, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 7, "result": {}})
        w.close_stdin()
        self.assertEqual(w.read_to_eof(), b"")
        self.assertEqual(w.wait(), 0)
        self.assertEqual(w.stderr().count("mcp-fixture: got"), 1, w.stderr())  # ping 7 alone

    def test_server_message_over_max(self):
        w = self.wrap(opts=["--max-message", "1000"])
        w.send(call(5, "huge", bytes=5000))
        self.assert_error(w.msg(), 5, -32000)
        w.send(call(6, "echo", text="ok"))
        self.assertEqual(self.assert_response(w.msg(), 6)["content"][0]["text"], "ok")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_stdout_noise_kept_off_the_client(self):
        w = self.wrap("--stdout-noise")
        w.send(initialize(1), req(2, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertIn("fixture noise", w.stderr())

    def test_quiet_keeps_warnings_off_stderr_not_errors(self):
        """-q: the warning for a server's stdout noise is not written; an error of mcpmux's
        own (a command that does not exist) still is.  The server's own stderr is its own
        and passes as ever."""
        w = self.wrap("--stdout-noise", opts=["-q"])
        w.send(initialize(1), req(2, "ping"))
        self.assertEqual(w.msg()["id"], 1)
        self.assertEqual(w.msg()["id"], 2)
        w.send(call(3, "stderr", text="the server's own words\n"))
        self.assert_response(w.msg(), 3)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assertNotIn("fixture noise", w.stderr())
        self.assertNotIn("mcpmux:", w.stderr())
        self.assertIn("the server's own words", w.stderr())
        w = self.start([MCPMUX, "-q", "--", "/nonexistent/mcp-server"])
        self.assertEqual(w.wait(), 127)
        if not WRAPPER:  # (as in test_exit_codes)
            self.assertIn("mcpmux: ", w.stderr())
            self.assertIn("/nonexistent/mcp-server", w.stderr())

    def run_ended_during_an_ask(self, w):
        """w's run, initialized, ended by mcpmux/endRun while its server's question
        (sampling/createMessage) waits for the client; the question."""
        w.send(initialize(1))
        w.msg()
        w.send(call(2, "ask"))
        ask = w.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        w.send(req(3, "mcpmux/endRun"))
        got = [w.msg(), w.msg()]  # the ask's error and the end's result, in either order
        self.assertEqual(sorted(m["id"] for m in got), [2, 3])
        return ask

    def test_an_answer_for_an_ended_run_starts_no_server(self):
        """The client answers a request of a server whose run it has ended, alone and in a
        batch: nobody waits for the answers, each message is dropped with a warning, and
        no server starts for them; the next request starts one."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=FAST + ["--log", log])
        ask = self.run_ended_during_an_ask(w)
        w.send({"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant"}})
        w.send([{"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant"}},
                {"jsonrpc": "2.0", "id": "other", "error": {"code": -1, "message": "no"}}])
        wait_until(lambda: "for a server whose run is over: dropped" in w.stderr()
                   and "a batch of 2 answers of the client" in w.stderr(), 5, "the warnings")

        def started():
            with open(log) as f:
                return [r for r in map(json.loads, f) if r.get("event") == "started"]
        self.assertEqual(len(started()), 1)
        w.send(req(4, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 4, "result": {}})
        self.assertEqual(len(started()), 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assert_no_leftovers(0)

    def test_answers_in_a_batch_with_a_notification_reach_no_next_run(self):
        """After an end-of-run, the client's batch of answers to the ended run's server and
        a notification: the notification starts the next run, whose server gets the batch
        without the answers (it never sent their requests); they are dropped with a
        warning, as a batch of answers alone is."""
        w = self.wrap(opts=FAST)
        ask = self.run_ended_during_an_ask(w)
        w.send([{"jsonrpc": "2.0", "id": ask["id"], "result": {"role": "assistant"}},
                note("notifications/roots/list_changed"),
                {"jsonrpc": "2.0", "id": "other", "error": {"code": -1, "message": "no"}}])
        w.send(call(4, "handshake"))
        m = w.msg()
        self.assertEqual(m.get("id"), 4, m)  # nothing else reached the client
        self.assertEqual(m["result"]["structuredContent"]["answersSeen"], 0, m)
        self.assertIn("2 answers in a batch for a server whose run is over: dropped",
                      w.stderr())
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        self.assert_no_leftovers(0)

    def test_an_answer_over_max_message_gets_the_server_an_error(self):
        """The client's answer to a request of the server over --max-message: the server
        gets an error in its place (its tool call says so), the client no error with the
        server's id; a notification over it is dropped, with a warning, unanswered."""
        w = self.wrap(opts=["--max-message", "4096"])
        w.send(initialize(1))
        w.msg()
        w.send(call(2, "ask"))
        ask = w.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        w.send({"jsonrpc": "2.0", "id": ask["id"],
                "result": {"role": "assistant", "content": {"type": "text", "text": "x" * 20000}}})
        r = w.msg()
        self.assertEqual(r.get("id"), 2, r)
        self.assertIn("too large for mcpmux", r["result"]["content"][0]["text"])
        w.send(note("notifications/message", {"data": "y" * 20000}), req(3, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 3, "result": {}})
        wait_until(lambda: "a notification of the client over --max-message" in w.stderr(), 5,
                   "the warning")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)


    def test_a_batch_over_max_message_is_answered_by_id(self):
        """A batch of the client's too long to be read: each of its requests gets -32600
        with its id, in one array, and the server gets an error in place of each answer in
        it (its tool call says so): none waits for ever; its notifications are dropped."""
        w = self.wrap(opts=["--max-message", "4096"])
        w.send(initialize(1))
        w.msg()
        w.send(call(2, "ask"))
        ask = w.msg()
        self.assertEqual(ask["method"], "sampling/createMessage")
        w.send([req(3, "ping"),
                {"jsonrpc": "2.0", "id": ask["id"],
                 "result": {"role": "assistant", "content": {"type": "text", "text": "x" * 20000}}},
                note("notifications/progress", {"progressToken": 1, "progress": 1}),
                req("four", "ping", {"pad": [{"id": 9}]}), req("k" * 300, "ping")])
        got = [w.msg(10), w.msg(10)]
        errors = [m for m in got if isinstance(m, list)]
        self.assertEqual(len(errors), 1, got)
        self.assertEqual([(e["id"], e["error"]["code"]) for e in errors[0]],
                         [(3, -32600), ("four", -32600), (None, -32600)])
        self.assertIn("message too large", errors[0][0]["error"]["message"])
        tool = [m for m in got if not isinstance(m, list)][0]
        self.assertEqual(tool.get("id"), 2, tool)
        self.assertIn("too large for mcpmux", tool["result"]["content"][0]["text"])
        w.send(req(5, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 5, "result": {}})
        self.ends_clean(w)

    def test_a_batch_over_max_message_answers_its_elements_that_are_no_message(self):
        """Elements of a batch over --max-message that are no message ({"foo": 2}, 1, one
        cut short by the line's end too) get one -32600 with id null, last in the array of
        the batch's errors, as serve's do."""
        w = self.wrap(opts=["--max-message", "4096"])
        self.assert_no_message_elements_answered(w)
        w.send(req(5, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 5, "result": {}})
        self.ends_clean(w)

    def test_a_batch_over_max_message_with_too_many_requests_gets_one_error(self):
        """A batch over --max-message has its requests answered by id as long as the array
        of their errors is no longer than --max-message (64 KiB at least): past that,
        however long it goes on, it is answered with one -32600 with id null, and stderr
        says its errors would be longer than --max-message (docs/decisions.md), and that a
        notification in it was dropped, as when its requests get their array."""
        w = self.wrap(opts=["--max-message", "4096"])
        w.send([req(k, "ping") for k in range(300)])
        line = w.line(10)
        self.assertLessEqual(len(line), 64 << 10)
        self.assertEqual([(e["id"], e["error"]["code"]) for e in json.loads(line)],
                         [(k, -32600) for k in range(300)])
        # errors of 130 bytes or more: 505 of them are over 64 KiB
        w.send([req(k, "ping") for k in range(505)] + [note("notifications/x")])
        self.assert_error(w.msg(10), None, -32600)
        self.assertIn("has too many requests to be answered each: their errors would be "
                      "longer than --max-message (65536 bytes)", w.stderr())
        self.assertIn("a notification of the client over --max-message", w.stderr())
        w.close_stdin()
        self.assertEqual(w.wait(10), 0)

        # over the floor the bound is --max-message: 1,000 requests of 200 bytes, in a
        # batch over 128 KiB, get their array (of some 140 KiB) only with --max-message
        # 192K, not 128K
        batch = [req(k, "ping", {"p": "p" * 150}) for k in range(1000)]
        for limit, answered in (("128K", False), ("192K", True)):
            with self.subTest(limit=limit):
                w = self.wrap(opts=["--max-message", limit])
                w.send(batch)
                line = w.line(10)
                got = json.loads(line)
                if answered:
                    self.assertEqual([e["id"] for e in got], list(range(1000)))
                    self.assertLessEqual(len(line), 192 << 10)
                else:
                    self.assert_error(got, None, -32600)
                    self.assertIn("their errors would be longer than --max-message (131072 "
                                  "bytes)", w.stderr())
                w.close_stdin()
                self.assertEqual(w.wait(10), 0)
        w = self.wrap(opts=["--max-message", "4096"])
        # 9 bytes an element: the answer is one error, not 100,000 of them
        w.write(b"[" + b",".join([b'{"id":1}'] * 100_000) + b"]\n", 30)
        line = w.line(30)
        self.assertLess(len(line), 300, line[:300])
        self.assert_error(json.loads(line), None, -32600)
        w.send(req(5, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 5, "result": {}})
        self.ends_clean(w)

    def test_a_batch_over_max_message_gets_the_server_errors_only_for_its_requests(self):
        """The answers of a batch over --max-message get the server an error for each of
        its requests in flight that they answer, once, an id longer than 128 bytes too;
        answers to no request in flight, and repeats, send it nothing.  Its requests with
        an id of no use (null, true) get -32600 with id null, as they would in a batch
        within the bound."""
        long_id = "L" * 200
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": ["s1", long_id]}))
        self.assertEqual([w.msg()["id"] for _ in range(3)], ["s1", long_id, 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x"}}
        w.send([{"jsonrpc": "2.0", "id": "s1", "result": answer},
                req(3, "ping", {"pad": "p" * 5000}),
                {"jsonrpc": "2.0", "id": "s1", "result": answer},
                {"jsonrpc": "2.0", "id": "nobody", "result": answer},
                {"jsonrpc": "2.0", "id": long_id, "result": answer},
                {"jsonrpc": "2.0", "id": None, "method": "ping"},
                {"jsonrpc": "2.0", "id": True, "method": "ping"},
                {"jsonrpc": "2.0", "id": long_id, "result": answer}])
        self.assertEqual([(e["id"], e["error"]["code"]) for e in w.msg(10)],
                         [(3, -32600), (None, -32600), (None, -32600)])
        w.send(req(4, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 4,
                                     "result": [["s1", -32000], [long_id, -32000]]})
        self.ends_clean(w)

    # A server that asks the client with each id it is given ("ask"), and reports ("report")
    # the errors it got in place of its requests' answers.

    def test_a_batch_over_max_message_gets_the_server_an_error_for_each_long_id(self):
        """A batch over --max-message with several answers whose ids are longer than 128
        bytes: each request of the server's in flight that one answers gets an error, not
        only the first; one to no request in flight before them takes nothing from them."""
        ids = ["L" * 200 + "1", "L" * 200 + "2", "M" * 300]
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": ids}))
        self.assertEqual([w.msg()["id"] for _ in range(4)], ids + [1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x"}}
        w.send([{"jsonrpc": "2.0", "id": "L" * 200 + "0", "result": answer},
                {"jsonrpc": "2.0", "id": ids[1], "result": answer},
                {"jsonrpc": "2.0", "id": "p" * 5000, "result": answer},
                {"jsonrpc": "2.0", "id": ids[0], "result": answer},
                {"jsonrpc": "2.0", "id": ids[2], "result": answer}])
        w.send(req(2, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2,
                                     "result": [[ids[1], -32000], [ids[0], -32000],
                                                [ids[2], -32000]]})
        self.ends_clean(w)

    def test_an_answer_over_max_message_gets_the_server_an_error_only_for_its_request(self):
        """The client's answer over --max-message, alone: the request of the server's in
        flight that it answers gets an error, one with an id longer than 128 bytes too; an
        answer to no request in flight gets the server nothing, and stderr says it was
        dropped."""
        long_id = "L" * 200
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": [long_id]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], [long_id, 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}
        w.send({"jsonrpc": "2.0", "id": "nobody", "result": answer},
               {"jsonrpc": "2.0", "id": long_id, "result": answer},
               {"jsonrpc": "2.0", "id": long_id, "result": answer})
        w.send(req(2, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2,
                                     "result": [[long_id, -32000]]})
        wait_until(lambda: "answers no request of the server in flight" in w.stderr(), 5,
                   "the warning")
        self.ends_clean(w)

    def test_an_answer_over_max_message_for_a_run_that_is_over_is_said_so(self):
        """The client's answer over --max-message that comes after an end of run, behind a
        line held for the ended run's last reply: the request it answers is that ended
        run's server's, which is sent nothing more; it is dropped, as an answer within the
        bound is, and stderr says whose it was (not "no request in flight").  The next
        run's server gets no error either."""
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": ["s1"]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], ["s1", 1])
        answer = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}
        # One write, one read: the ping is held while the end of run's reply is owed.
        w.send(req("e", "mcpmux/endRun"), req(2, "ping"),
               {"jsonrpc": "2.0", "id": "s1", "result": answer},
               {"jsonrpc": "2.0", "id": "nobody", "result": answer})
        self.assertEqual(w.msg(10)["id"], "e")
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": []})
        w.send(req(3, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 3, "result": []})
        wait_until(lambda: w.stderr().count("dropped") >= 2, 5, "the warnings")
        self.assertRegex(w.stderr(), r'the client\'s answer "s1" is over --max-message '
                         r"\(\d+ bytes\) and answers a request of a server whose run is over: "
                         r"dropped")
        self.assertRegex(w.stderr(), r'the client\'s answer "nobody" is over --max-message '
                         r"\(\d+ bytes\) and answers no request of the server in flight: "
                         r"dropped")
        self.ends_clean(w)

    def asker(self, ids):
        """wrap with --max-message 4096 running ASKER, which has asked the client requests of
        those ids, in flight."""
        w = self.wrap(opts=["--max-message", "4096"], command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": ids}))
        self.assertEqual([w.msg()["id"] for _ in range(len(ids) + 1)], ids + [1])
        return w

    def ends_clean(self, w):
        """EOF ends wrap with 0, after nothing more for the client."""
        w.close_stdin()
        self.assertEqual(w.read_to_eof(10), b"")
        self.assertEqual(w.wait(), 0, w.stderr())

    def test_an_answer_of_a_batch_over_max_message_is_said_to_be_over_it(self):
        """An answer that ends within the first --max-message bytes of a batch over the
        bound, and one after them, are over --max-message, not out of memory: the server's
        errors and stderr say so, the batch's size being more than the bound."""
        w = self.asker([5, 6])
        self.assert_batch_answers_over_the_bound(w)
        self.ends_clean(w)

    def test_a_batch_after_more_than_max_message_of_whitespace_is_a_batch(self):
        """A batch over --max-message after more than --max-message bytes of whitespace is
        a batch: its answer gets the server an error for its request in flight."""
        w = self.asker([5])
        w.write((" \t" * 2500 + json.dumps([{"jsonrpc": "2.0", "id": 5, "result": OVER}])
                 + "\n").encode())
        w.send(req(2, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": [[5, -32000]]})
        self.ends_clean(w)

    def test_an_answer_of_a_batch_over_max_message_to_no_request_is_said_dropped(self):
        """An answer in a batch over --max-message to no request of the server's in flight,
        or to one of a server whose run is over (the end of run's reply still owed, or not),
        is dropped with a warning that says which, as one alone is; neither server gets an
        error (each says what it got on stderr as its stdin ends)."""
        told = "\nprint('answers got: %s' % json.dumps(got), file=sys.stderr, flush=True)\n"
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", ASKER + told])
        w.send(req(1, "ask", {"ids": ["s1"]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], ["s1", 1])
        w.send([{"jsonrpc": "2.0", "id": "nobody", "result": OVER}])
        wait_until(lambda: "the client's answer \"nobody\" is over --max-message (a batch of "
                           "more than 4096 bytes) and answers no request of the server in "
                           "flight: dropped" in w.stderr(), 5, "the warning")
        w.send(req("e", "mcpmux/endRun"), req(2, "ping"),
               [{"jsonrpc": "2.0", "id": "s1", "result": OVER}])
        self.assertEqual(w.msg(10)["id"], "e")
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": []})
        wait_until(lambda: "the client's answer \"s1\" is over --max-message (a batch of more "
                           "than 4096 bytes) and answers a request of a server whose run is "
                           "over: dropped" in w.stderr(), 5, "the warning")
        w.send(req(3, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 3, "result": []})
        self.ends_clean(w)
        wait_until(lambda: w.stderr().count("answers got: []") == 2, 5, "each server's report")
        self.assertNotIn("answers got: [[", w.stderr())

    def test_the_warning_for_an_answer_over_max_message_says_a_null_or_long_id(self):
        """stderr says the id of the client's answer over --max-message as null when it is
        null, and as its first 100 bytes and "..." when it is longer (one longer than 128
        bytes, which is not kept whole, too), alone or in a batch."""
        long_id = "M" * 150
        w = self.asker([long_id])
        w.send({"jsonrpc": "2.0", "id": None, "result": OVER})
        wait_until(lambda: "the client's answer null is over --max-message (" in w.stderr(), 5,
                   "the warning")
        w.send([{"jsonrpc": "2.0", "id": "L" * 300, "result": OVER}])
        wait_until(lambda: "the client's answer \"%s... is over --max-message (a batch of more "
                           "than 4096 bytes) and answers no request of the server in flight: "
                           "dropped" % ("L" * 99) in w.stderr(), 5, "the warning")
        w.send({"jsonrpc": "2.0", "id": long_id, "result": OVER})
        w.send(req(2, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": [[long_id, -32000]]})
        wait_until(lambda: "the client's answer \"%s... to a request of the server is over "
                           "--max-message (" % ("M" * 99) in w.stderr(), 5, "the warning")
        self.assertNotIn("answer  ", w.stderr())
        self.ends_clean(w)

    def test_the_warning_for_an_answer_for_an_ended_run_says_its_id(self):
        """stderr says the id of the client's answer dropped for a run that is over as it
        says one over --max-message: a number or a string as written, a longer one by its
        first 100 bytes and "...", null when it is null (with no run current)."""
        long_l, long_m = "L" * 150, "M" * 150
        w = self.wrap(opts=FAST + ["--max-message", "4096"],
                      command=[sys.executable, "-c", BATCH_ASKER])
        w.send(req(1, "ask", {"ids": [7, "s", long_l, long_m]}))
        self.assertEqual([w.msg()["id"] for _ in range(5)], [7, "s", long_l, long_m, 1])
        w.send(req("e", "mcpmux/endRun"), req(2, "ping"))
        self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(2)), ["2", "e"])
        for id_, shown in ((7, "7"), ("s", '"s"'), (long_l, '"%s...' % ("L" * 99))):
            w.send(ERR(id_))
            wait_until(lambda: "the client's answer %s is for a server whose run is over: "
                       "dropped\n" % shown in w.stderr(), 5, "the warning for %s" % shown)
        w.send(dict(ERR(long_m), error={"code": -1, "message": "no", "data": "x" * 5000}))
        wait_until(lambda: "the client's answer \"%s... is over --max-message (" % ("M" * 99)
                   in w.stderr(), 5, "the warning over --max-message")
        w.send(note("mcpmux/endRun"), ERR(None))
        wait_until(lambda: "the client's answer null is for a server whose run is over: "
                   "dropped\n" in w.stderr(), 5, "the warning for null")
        self.assertNotIn("an answer of the client", w.stderr())
        self.ends_clean(w)

    def test_the_error_for_a_line_over_max_message_comes_after_the_ended_runs_replies(self):
        """A request, or a batch, over --max-message that comes while an ended run still
        owes the client replies gets its -32600 after them, as a line within the bound
        would: a client that restarts its ids at 1 must not take it for the old run's
        answer, nor the old run's error for the answer to its new request."""
        big = req(1, "ping", {"pad": "p" * 5000})
        for held_before in ([], [req(2, "ping")]):
            with self.subTest(held_before=len(held_before)):
                w = self.wrap(opts=FAST + ["--max-message", "4096"])
                w.send(call(1, "sleep", ms=20000), req("e", "mcpmux/endRun"), *held_before,
                       big, [big])
                got = [w.msg(10) for _ in range(4 + len(held_before))]

                def key(m):
                    if isinstance(m, list):
                        return [key(e) for e in m]
                    return m["id"], m["error"]["code"] if "error" in m else "result"
                # the old run's error and end-of-run result first, then the rest, in any order
                self.assertEqual([key(m) for m in got[:2]], [(1, -32000), ("e", "result")], got)
                self.assertCountEqual([key(m) for m in got[2:]],
                                      [(1, -32600), [(1, -32600)]] +
                                      [(2, "result")] * len(held_before), got)
                w.close_stdin()
                self.assertEqual(w.read_to_eof(10), b"")
                # a line over the bound starts no run: the status is the sleeper's, if last
                self.assertEqual(w.wait(10), 0 if held_before else 128 + signal.SIGTERM)

    def test_no_line_after_the_one_that_finds_the_client_gone_reaches_the_server(self):
        """The client closes its stdout, then writes a line that is not JSON and a call
        in one write: mcpmux finds the client gone as it writes the parse error, and the
        call, read in the same chunk, is not forwarded (its answer could go nowhere), as
        a line read after a watcher finds the client gone is not."""
        w = self.wrap("--stderr-chatter", opts=FAST)
        w.send(initialize(1))
        w.msg()
        wait_until(lambda: "got initialize" in w.stderr(), 5, "the server's chatter")
        w.p.stdout.close()
        w.write(b"not json\n" + json.dumps(call(2, "echo", text="x")).encode() + b"\n")
        self.assertEqual(w.wait(10), 0, w.stderr())
        self.assertNotIn("got tools/call", w.stderr())

    def test_the_error_for_a_line_over_max_message_comes_after_unread_replies(self):
        """The same, for a client that reads nothing meanwhile, so that the ended run's
        last replies are still queued behind 40 answers when mcpmux answers the line over
        the bound: held behind that run's replies ("held"), or sent once the run is over
        ("after the end"). Each -32600 comes after them all the same, as the next run's
        answers do."""
        big = req(41, "ping", {"pad": "p" * 5000})
        for case in ("held", "after the end"):
            with self.subTest(case=case):
                log = os.path.join(self.tmp.name, "%s.jsonl" % case.replace(" ", "-"))
                w = self.wrap("--huge-result=3000",
                              opts=FAST + ["--max-message", "4096", "--log", log,
                                           "--log-bodies", "none"])
                w.send(*[call(i, "echo", text="x") for i in range(1, 41)])
                w.send(call(41, "sleep", ms=20000), req("e", "mcpmux/endRun"))
                if case == "held":
                    w.send(big, [big], req(42, "ping"))
                logged(log, b'"event":"ended"')  # the run's end, its replies queued
                if case == "after the end":
                    w.send(big, [big], req(42, "ping"))

                def key(m):
                    if isinstance(m, list):
                        return [key(e) for e in m]
                    return m["id"], m["error"]["code"] if "error" in m else "result"
                got = [key(w.msg(10)) for _ in range(45)]
                self.assertEqual(got[:42], [(i, "result") for i in range(1, 41)] +
                                 [(41, -32000), ("e", "result")], got)
                self.assertCountEqual(got[42:], [(41, -32600), [(41, -32600)],
                                                 (42, "result")], got)
                self.ends_clean(w)

    def an_ended_runs_answer_goes_to_no_new_run(self, case):
        """The client's answer (within the bound) to s1, a request of ASKER's server, whose
        run it ends, with a ping behind the end of run that starts the next run: written
        with them ("in one write"), at once after them, or once the ping's answer shows the
        next run has started (alone, "in a batch"). The answer is the ended run's, dropped
        with a warning; the next run's server never gets it."""
        ans = {"jsonrpc": "2.0", "id": "s1", "error": {"code": -1, "message": "no"}}
        w = self.wrap(command=[sys.executable, "-c", ASKER])
        w.send(req(1, "ask", {"ids": ["s1"]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], ["s1", 1])
        # In one write, one read: the ping is held while the end of run's reply is owed.
        w.send(req("e", "mcpmux/endRun"), req(2, "ping"), *([ans] if case == "in one write"
                                                             else []))
        if case == "at once":
            w.send(ans)
        self.assertEqual(w.msg(10)["id"], "e")
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 2, "result": []})
        if case == "after the next run started":
            w.send(ans)
        if case == "in a batch":
            w.send([ans])
        w.send(req(3, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 3, "result": []})
        wait_until(lambda: "for a server whose run is over: dropped" in w.stderr(), 5,
                   "the warning")
        self.ends_clean(w)

    def test_an_answer_held_behind_an_ended_run_goes_to_no_new_run(self):
        """The client's answer (within the bound) to a request of a server whose run it
        ended, held with a request behind that run's last reply: the request starts the
        next run, but the answer is that ended run's, dropped with a warning; the next
        run's server never gets it."""
        self.an_ended_runs_answer_goes_to_no_new_run("in one write")

    def test_an_answer_for_an_ended_run_goes_to_no_new_run_however_written(self):
        """The same answer written apart from the end of run and the request behind it:
        at once (read with them or after them), or once that request's answer shows the
        next run has started (its server gone, the ended run's request is still known):
        the answer is the ended run's, dropped with a warning, however it was read, in a
        batch too."""
        for case in ("at once", "after the next run started", "in a batch"):
            with self.subTest(case=case):
                self.an_ended_runs_answer_goes_to_no_new_run(case)

    def ended_twice(self, w):
        """Run 1's server asks a1 and run 2's s1, neither answered, each run ended (its server
        gone: the end's reply is sent as its session ends); run 3 is current."""
        w.send(req(1, "ask", {"ids": ["a1"]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], ["a1", 1])
        w.send(req("e", "mcpmux/endRun"), req(2, "ask", {"ids": ["s1"]}))
        self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(3)), ["2", "e", "s1"])
        w.send(req("e2", "mcpmux/endRun"), req(3, "ping"))
        self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(2)), ["3", "e2"])

    def test_only_the_last_gone_servers_requests_are_kept(self):
        """wrap keeps the requests in flight of the last server gone with some, in place of
        those of a server gone before: an answer to run 2's request is dropped in run 3,
        one to run 1's (forgotten) goes to run 3's server."""
        w = self.wrap(command=[sys.executable, "-c", BATCH_ASKER])
        self.ended_twice(w)
        w.send(ERR("s1"))
        wait_until(lambda: "for a server whose run is over: dropped" in w.stderr(), 5,
                   "the warning")
        w.send(ERR("a1"), req(4, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 4, "result": [["a1", -1]]})
        self.ends_clean(w)

    def test_an_answer_dropped_for_an_ended_run_still_running_answers_it(self):
        """The client's answer to a request of a server whose run is over but which still
        runs is dropped, and has answered it: once that server exits it is not one gone with
        requests in flight, and those kept of the server gone before stay kept.  The same
        for an answer over --max-message."""
        flag = os.path.join(self.tmp.name, "linger")
        # After its input's EOF, the server stays up while the flag is there.
        lingers = BATCH_ASKER + f"""
import os, time
end = time.monotonic() + 60
while os.path.exists({flag!r}) and time.monotonic() < end:
    time.sleep(0.01)
"""
        log = os.path.join(self.tmp.name, "t.jsonl")

        def ended():
            with open(log) as f:
                return sum(1 for r in map(json.loads, f) if r.get("event") == "ended")

        big = dict(ERR("s1"), error={"code": -1, "message": "no", "data": "x" * 5000})
        for case, answer in (("within the bound", ERR("s1")), ("over it", big)):
            with self.subTest(case=case):
                if os.path.exists(log):
                    os.unlink(log)
                w = self.wrap(opts=["--log", log, "--max-message", "4096"],
                              command=[sys.executable, "-c", lingers])
                w.send(req(1, "ask", {"ids": ["a1"]}))
                self.assertEqual([w.msg()["id"] for _ in range(2)], ["a1", 1])
                w.send(req("e", "mcpmux/endRun"), req(2, "ask", {"ids": ["s1"]}))
                self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(3)),
                                 ["2", "e", "s1"])
                # Run 1 gone with a1 in flight; run 2's server asked s1 and stays up once
                # ended.
                with open(flag, "w"):
                    pass
                w.send(note("mcpmux/endRun"), req(3, "ping"))
                self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 3, "result": []})
                w.send(answer)
                wait_until(lambda: "whose run is over: dropped" in w.stderr(), 5, "the warning")
                os.unlink(flag)
                wait_until(lambda: ended() == 2, 10, "run 2's server gone")
                w.send(ERR("a1"), req(4, "report"))
                self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 4, "result": []})
                w.send(ERR("s1"), req(5, "report"))
                self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 5, "result": [["s1", -1]]})
                self.ends_clean(w)

    def test_an_answer_dropped_from_a_batch_is_answered(self):
        """An answer to a gone server's request, dropped from a batch of the client's, has
        answered it, as one alone does: another with its id goes to the current server.
        The dropped answers are in the traffic log."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        for case in ("current run", "no run current"):
            with self.subTest(case=case):
                w = self.wrap(opts=["--log", log], command=[sys.executable, "-c", BATCH_ASKER])
                self.ended_twice(w)
                if case == "no run current":
                    w.send(req("e3", "mcpmux/endRun"))
                    self.assertEqual(w.msg(10)["id"], "e3")
                w.send([ERR("s1"), note("notifications/x")])
                wait_until(lambda: "for a server whose run is over: dropped" in w.stderr(), 5,
                           "the warning")
                w.send(ERR("s1"), req(4, "report"))
                self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 4, "result": [["s1", -1]]})
                self.ends_clean(w)
                with open(log) as f:
                    dropped = [r for r in map(json.loads, f) if r.get("dir") == "in"
                               and r.get("msg") == [ERR("s1")]]
                self.assertTrue(dropped, "the dropped answer, logged")
                os.unlink(log)

    def test_a_batch_less_its_ended_runs_answers_keeps_its_order(self):
        """A batch of an answer for the current run, a request, and an answer for a gone
        server's: the server gets the first two in one batch, in the client's order."""
        w = self.wrap(command=[sys.executable, "-c", BATCH_ASKER])
        self.ended_twice(w)
        w.send(req(4, "ask", {"ids": ["s2"]}))
        self.assertEqual([w.msg()["id"] for _ in range(2)], ["s2", 4])
        w.send([ERR("s2"), req(5, "report"), ERR("s1")])
        self.assertEqual(w.msg(10), [{"jsonrpc": "2.0", "id": 5, "result": [["s2", -1]]}])
        wait_until(lambda: "for a server whose run is over: dropped" in w.stderr(), 5,
                   "the warning")
        self.ends_clean(w)

    def test_an_answer_over_max_message_for_a_gone_server_is_said_so(self):
        """The client's answer over --max-message to a request of a server gone with its run:
        stderr says whose it was, and it has answered it: another with its id goes to the
        current server."""
        w = self.wrap(opts=["--max-message", "4096"],
                      command=[sys.executable, "-c", BATCH_ASKER])
        self.ended_twice(w)
        big = {"jsonrpc": "2.0", "id": "s1", "result": {"text": "x" * 5000}}
        w.send(big)
        wait_until(lambda: "dropped" in w.stderr(), 5, "the warning")
        self.assertRegex(w.stderr(), r'the client\'s answer "s1" is over --max-message '
                         r"\(\d+ bytes\) and answers a request of a server whose run is over: "
                         r"dropped")
        w.send(ERR("s1"), req(4, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 4, "result": [["s1", -1]]})
        self.ends_clean(w)

    def test_a_request_over_max_message_with_a_long_id_gets_an_error(self):
        """A request over --max-message, alone, whose id is longer than 128 bytes (or of no
        use: null) is no notification: it gets -32600 with id null."""
        w = self.wrap(opts=["--max-message", "4096"])
        for i in ("k" * 300, None):
            w.send(req(i, "ping", {"pad": "p" * 5000}))
            m = w.msg(10)
            self.assertEqual((m["id"], m["error"]["code"]), (None, -32600), m)
            self.assertIn("message too large", m["error"]["message"])
        w.send(req(3, "ping"))
        self.assertEqual(w.msg(), {"jsonrpc": "2.0", "id": 3, "result": {}})
        self.ends_clean(w)


class BigMessages(Case):
    def test_20mb_result_intact(self):
        w = self.wrap()
        w.send(call(1, "huge", bytes=20_000_000))
        line = w.line(30)
        self.assertEqual(len(line), len(b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""}]}}') + 20_000_000)
        m = json.loads(line)
        self.assertEqual(m["result"]["content"][0]["text"], "x" * 20_000_000)
        w.send(req(2, "ping"))
        self.assertEqual(w.msg()["id"], 2)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    def test_20mb_request_intact(self):
        w = self.wrap()
        text = "y" * 20_000_000
        w.send(call(1, "echo", text=text))
        m = w.msg(30)
        self.assertEqual(m["result"]["content"][0]["text"], text)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_shrinks_back_after_big_message(self):
        w = self.wrap()
        w.send(call(1, "huge", bytes=20_000_000))
        w.line(30)
        w.send(req(2, "ping"))
        w.msg()
        wait_until(lambda: rss_anon_kib(w.pid) < 20_000, 5,
                   "mcpmux's private memory to fall back under 20 MB")
        w.close_stdin()
        w.wait()

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_shrinks_back_after_a_big_element_of_a_set_up_batch(self):
        """A batch with a set-up message (recorded for a fresh server's handshake) and a
        20 MB element: the memory its elements were read with is given back too."""
        w = self.wrap()
        w.send(initialize(1))
        w.msg()
        w.send([note("notifications/initialized"), req("x" * 20_000_000, "ping")])
        self.assertEqual(len(w.line(30)), 20_000_000 + len('[{"jsonrpc":"2.0","id":"","result":{}}]'))
        self.assert_memory_back_after_a_ping(w)

    def assert_memory_back_after_a_ping(self, w):
        w.send(req(2, "ping"))
        w.msg()
        wait_until(lambda: rss_anon_kib(w.pid) < 20_000 // 4, 5,
                   "mcpmux's private memory to fall back under 5 MB")
        w.close_stdin()
        self.assertEqual(w.wait(), 0)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_shrinks_back_after_big_message_read_late(self):
        """A big result that waits for its client longer than the idle second (the trim
        after its allocation has come and gone) is given back once it is written."""
        w = self.wrap()
        w.send(call(1, "huge", bytes=20_000_000))
        wait_until(lambda: rss_anon_kib(w.pid) > 15_000, 10, "the result to be queued")
        time.sleep(1.5)  # the client reads late: past the idle second
        self.assertEqual(len(w.line(30)), len(b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""}]}}') + 20_000_000)
        self.assert_memory_back_after_a_ping(w)

    def assert_memory_back_when_idle(self, w, end=True):
        """Nothing is sent after the big message: the memory it took goes back all the
        same, kept for no next message (docs/reliability.md)."""
        wait_until(lambda: rss_anon_kib(w.pid) < 20_000 // 4, 5,
                   "mcpmux's private memory to fall back under 5 MB, idle")
        if end:
            w.close_stdin()
            self.assertEqual(w.wait(), 0)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_a_huge_id(self):
        """A request with a 20 MB id and its answer: what each way's scanner copied of the
        id is given back with no further message, with a traffic log too."""
        for opts in ([], ["--log", os.path.join(self.tmp.name, "t.log")]):
            w = self.wrap(opts=opts)
            w.send(req("x" * 20_000_000, "ping"))
            self.assertEqual(len(w.line(30)), 20_000_000 + len('{"jsonrpc":"2.0","id":"","result":{}}'))
            self.assert_memory_back_when_idle(w)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_a_huge_escaped_id(self):
        """An id of 4 M escaped characters (24 MB of JSON, past simdjson's 2 MiB): the
        buffer yajl decoded it into is given back too."""
        w = self.wrap()
        w.send(req("\u00e9" * 4_000_000, "ping"))
        self.assertEqual(json.loads(w.line(30))["id"], "\u00e9" * 4_000_000)
        self.assert_memory_back_when_idle(w)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_a_batch_over_the_requests_in_flight(self):
        """A batch of 200,000 requests, over the 65,536 a session keeps in flight: its
        elements, and the array of errors mcpmux answers it with, are given back."""
        w = self.wrap()
        w.send([req(i, "ping") for i in range(200_000)])
        answers = json.loads(w.line(30))
        self.assertEqual(len(answers), 200_000)
        self.assertIn("too many requests in flight", answers[0]["error"]["message"])
        self.assert_memory_back_when_idle(w)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_when_idle_after_end_of_runs_with_huge_ids(self):
        """mcpmux's own answers with a 20 MB id: an end of run's (the session's), then one
        with nothing running (wrap's)."""
        w = self.wrap(opts=FAST)
        big = "x" * 20_000_000
        w.send(req(big, "mcpmux/endRun"))
        self.assertEqual(json.loads(w.line(30))["id"], big)
        self.assert_memory_back_when_idle(w, end=False)
        w.send(req(big, "mcpmux/endRun"))
        self.assertEqual(json.loads(w.line(30))["result"]["escalation"], "none")
        self.assert_memory_back_when_idle(w)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_back_after_a_gone_servers_many_requests_in_flight(self):
        """A run ends with 50,000 requests of its server's in flight, whose ids wrap keeps
        for the client's late answers (docs/lifecycle.md): the memory they take goes back
        once they are let go, in place of those of the next server gone with one in flight,
        or all answered by the client; a run between them that ends with none in flight
        keeps them."""
        ids = ["r%d" % i for i in range(50_000)]
        w = self.wrap(opts=FAST, command=[sys.executable, "-c", BATCH_ASKER])

        def run_gone_with(n, rid):
            """The current run's server asks ids[:n] (unanswered), and its run ends: the
            next run is current."""
            w.send(req(rid, "ask", {"ids": ids[:n]}))
            got = [json.loads(w.line(30))["id"] for _ in range(n + 1)]
            self.assertEqual(got[-1], rid)
            w.send(req("e%d" % rid, "mcpmux/endRun"), req(rid + 1, "ping"))
            self.assertEqual(sorted(str(w.msg(10)["id"]) for _ in range(2)),
                             sorted(["e%d" % rid, str(rid + 1)]))

        run_gone_with(1, 1)
        wait_until(lambda: rss_anon_kib(w.pid) < 20_000 // 4, 5,
                   "mcpmux's private memory under 5 MB to begin with")
        for let_go in ("the next server gone with one in flight", "answered in batches",
                       "answered one by one"):
            with self.subTest(let_go=let_go):
                run_gone_with(len(ids), 10)
                self.assertGreater(rss_anon_kib(w.pid), 20_000 // 4,
                                   "the ids kept take memory")
                run_gone_with(0, 20)  # gone with none in flight: they stay kept
                self.assertGreater(rss_anon_kib(w.pid), 20_000 // 4, "the ids still kept")
                if let_go == "answered in batches":
                    # Of 100 answers each: one batch of them all would be a big message,
                    # whose memory goes back once idle whatever becomes of the ids.
                    w.write(b"".join(json.dumps([ERR(i) for i in ids[k:k + 100]]).encode()
                                     + b"\n" for k in range(0, len(ids), 100)))
                    w.send(req(25, "ping"))
                    self.assertEqual(w.msg(30)["id"], 25)
                    self.assertIn("100 answers in a batch for a server whose run is over: "
                                  "dropped", w.stderr())
                elif let_go == "answered one by one":
                    w.write(b"".join(json.dumps(ERR(i)).encode() + b"\n" for i in ids))
                    w.send(req(25, "ping"))
                    self.assertEqual(w.msg(30)["id"], 25)
                else:
                    run_gone_with(1, 30)
                wait_until(lambda: rss_anon_kib(w.pid) < 20_000 // 4, 5,
                           "mcpmux's private memory to fall back under 5 MB, idle")
        # None of the ids is kept any more: an answer to one goes to the current server.
        w.send(ERR("r7"), req(40, "report"))
        self.assertEqual(w.msg(10), {"jsonrpc": "2.0", "id": 40, "result": [["r7", -1]]})
        w.close_stdin()
        self.assertEqual(w.wait(), 0, w.stderr())

    def test_slow_reader_gets_all_after_the_end(self):
        """The client closes stdin and reads a big result more slowly than eof-grace
        allows for all of it: as long as it reads, it gets every byte (eof-grace bounds
        a client that stops reading, not a slow one)."""
        w = self.wrap(opts=FAST)
        w.send(call(1, "huge", bytes=4_000_000))
        w.close_stdin()
        fd, data, end = w.p.stdout.fileno(), bytearray(), deadline(30)
        while time.monotonic() < end:
            if not select.select([fd], [], [], 1)[0]:
                continue
            chunk = os.read(fd, 64 << 10)
            if not chunk:
                break
            data += chunk
            time.sleep(0.03)  # the pace of a slow reader: about 2 MB/s, 2 s in all
        self.assertEqual(w.wait(), 0)
        self.assertTrue(data.endswith(b"\n"), "%d bytes, cut" % len(data))
        self.assertEqual(len(json.loads(data)["result"]["content"][0]["text"]), 4_000_000)
        # A client that reads nothing at all is given up after eof-grace, with the server's
        # status (no signal), saying what it did not get, in the traffic log too: the ids of
        # the first 100 messages not begun, and how many more have one.
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=FAST + ["--log", log])
        w.send(call(2, "huge", bytes=4_000_000))
        w.send(*[call(i, "echo", text="after") for i in range(3, 106)])
        w.close_stdin()
        self.assertEqual(w.wait(5), 0)
        self.assertIn("the client did not read its last", w.stderr())
        self.assertIn("(104 messages, one of them cut, ids 3, 4, 5, ", w.stderr())
        self.assertIn(", 101, 102, ...): exiting without them", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"], u["ids_more"]),
                         ("eof-grace", 104, True, list(range(3, 103)), 3))

    def undelivered(self, log):
        """The traffic log's `undelivered` records."""
        with open(log) as f:
            return [r for r in map(json.loads, f) if r.get("event") == "undelivered"]

    def test_a_signal_while_the_client_reads_its_last_bytes_ends_the_wait(self):
        """The TypeScript SDK's close(): stdin's end, then SIGTERM 2 s later while it still
        reads, then SIGKILL.  A signal that comes once the run is over, while the client
        has not read a big result, ends mcpmux at once, with 128 + the signal, saying
        what was not read (on stderr and in the traffic log), as a direct server still
        writing it would die of the signal; it does not wait for the client to read it
        (and be SIGKILLed meanwhile).  A signal that begins the teardown likewise leaves
        no wait after it."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        # A client that reads nothing for --eof-grace is given up: not before the signal.
        w = self.wrap(opts=["--eof-grace", "60000", "--log", log, "--log-bodies", "100"])
        w.send(call(1, "huge", bytes=10_000_000))
        w.close_stdin()

        def ended():  # (the 10 MB fit in --max-queue: the server is done without a read)
            if not os.path.exists(log):
                return False
            with open(log) as f:
                return '"event":"ended"' in f.read()
        wait_until(ended, 10, "the run's end (the server exits on its EOF)")
        # The client reads nothing more: what it has not taken is not waited for.
        w.p.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(5), 128 + signal.SIGTERM, "not the server's 0: answers dropped")
        got = w.read_to_eof()
        self.assertFalse(got.endswith(b"\n"), "the client got it all")
        self.assertIn("Terminated: the client did not read its last", w.stderr())
        self.assertIn("(1 message, one of them cut)", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]), ("signal", 1, True, []))
        self.assertGreater(u["bytes"] + len(got), 10_000_000, "the bytes not written")
        # The signal first, stdin still open: once the teardown is done, no wait either.
        log = os.path.join(self.tmp.name, "t2.jsonl")
        w = self.wrap(opts=["--eof-grace", "60000", "--log", log, "--log-bodies", "100"])
        w.send(call(1, "huge", bytes=10_000_000))
        logged(log, b'"kind":"response"')  # the answer, queued for the client
        w.p.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(5), 128 + signal.SIGTERM)
        self.assertIn("Terminated: the client did not read its last", w.stderr())
        with open(log) as f:
            self.assertIn('"reason":"signal"', f.read())

    def test_after_a_signal_no_line_is_begun_that_does_not_fit(self):
        """After a signal, mcpmux begins a line for the client only when its pipe has room
        for all of it: a client that reads during the teardown and then stops gets whole
        lines only (not a line cut where the pipe was full), and the ids of those it did
        not get are said."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        n, size = 20, 300_000
        w = self.wrap("--ignore-eof", opts=["-v", "--eof-grace", "1000", "--term-grace", "300",
                                            "--log", log, "--log-bodies", "none"])
        for i in range(1, n + 1):
            w.send(call(i, "huge", bytes=size))

        def answered():
            if not os.path.exists(log):
                return False
            with open(log) as f:
                return f.read().count('"kind":"response"') == n
        wait_until(answered, 10, "every answer, queued for the client")
        # What was written before the signal: the client's pipe, full (it reads nothing
        # yet).  The line begun there goes on as ever, and is cut only when the client
        # reads none of the rest before the teardown is over (this process off the CPU).
        fd = w.p.stdout.fileno()

        def in_pipe():
            held = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, held)
            return held[0]
        # (Full: no free page left; the last ones may be part used.)
        wait_until(lambda: in_pipe() > pipe_size(fd) - (8 << 10), 10, "the client's pipe, full")
        w.p.send_signal(signal.SIGTERM)
        # "After the signal" is after mcpmux has taken it (its watcher runs at its next
        # loop turn; a write turn begun before goes on while the pipe takes it).
        wait_until(lambda: "Terminated: ending" in w.stderr(), 10, "the teardown, begun")
        before = in_pipe()
        # During the teardown (the server ignores its EOF for --eof-grace), the client
        # reads 2.5 MiB and then stops.
        got, end = bytearray(), deadline(10)
        while len(got) < (5 << 19) and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, min(64 << 10, (5 << 19) - len(got)))
                if not chunk:
                    break
                got += chunk
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM)
        got += w.read_to_eof()
        whole = got[:got.rfind(b"\n") + 1]
        cut = len(whole) < len(got)
        if cut:
            self.assertLess(len(whole), before,
                            "a line begun after the signal, cut: %d bytes" % len(got))
        ids = [json.loads(line)["id"] for line in whole.splitlines()]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        self.assertLess(len(ids), n, "the client got it all")
        left = list(range(len(ids) + 1 + cut, n + 1))  # (not the cut one's: it was begun)
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("signal", n - len(ids), cut, left))
        self.assertIn("(%d messages, %sids %s)" % (n - len(ids), "one of them cut, " if cut else "",
                      ", ".join(map(str, left))), w.stderr())


    def log_text(self, log):
        """The traffic log so far ("" before it is made)."""
        if not os.path.exists(log):
            return ""
        with open(log) as f:
            return f.read()

    def responses(self, log, n):
        """A predicate: the traffic log has n responses of the server (or more)."""
        def logged():
            if not os.path.exists(log):
                return False
            with open(log) as f:
                return f.read().count('"kind":"response"') >= n
        return logged

    def assert_left_whole(self, w, log, last_id, left):
        """After the signal: 128 + it, whole lines only, the ones before left in order, and
        the ids `left` said undelivered (none of them begun)."""
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM)
        got = w.read_to_eof()
        self.assertTrue(got.endswith(b"\n"), "a line cut: %d bytes" % len(got))
        ids = [json.loads(line)["id"] for line in got.splitlines()]
        self.assertEqual(ids[-1], last_id)
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("signal", len(left), False, left))

    def test_after_a_signal_an_answer_that_does_not_fit_is_not_begun(self):
        """An answer that comes during the teardown, with nothing queued before it, is begun
        only when the client's pipe will take all of it, as a queued one: a client that
        reads nothing gets the answers before it whole, and not the start of this one."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=["--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=900_000), call(2, "sleep", ms=800),
               call(3, "huge", bytes=300_000))
        wait_until(self.responses(log, 1), 10, "the first answer, written")
        w.p.send_signal(signal.SIGTERM)  # during the sleep: id 3 comes in the teardown
        self.assert_left_whole(w, log, 2, [3])

    def test_after_a_signal_a_long_answer_waits_for_an_empty_pipe(self):
        """Small lines each take a page of the pipe (a page a write), so what the pipe holds
        in bytes does not tell the room left: after a signal, a line longer than PIPE_BUF
        is begun only into an empty pipe, and is not cut where the pages ran out."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=["--log", log, "--log-bodies", "none"])
        n = 230  # 2100-byte answers, one a write: 230 of the 1 MiB pipe's 256 pages
        msgs = [call(1, "huge", bytes=10_000)]  # (the pipe is enlarged to 1 MiB)
        for i in range(n):
            msgs += [call(10 + 2 * i, "echo", text="y" * 2000), call(11 + 2 * i, "sleep", ms=3)]
        msgs += [call(1000, "sleep", ms=800), call(1001, "huge", bytes=300_000)]
        w.send(*msgs)
        wait_until(self.responses(log, 1 + 2 * n), 20, "the small answers, written")
        w.p.send_signal(signal.SIGTERM)  # during the last sleep: id 1001 in the teardown
        self.assert_left_whole(w, log, 1000, [1001])


    def test_a_client_gone_before_the_last_write_after_a_signal_is_said(self):
        """A client that stopped reading, and closed its end, before mcpmux's last write after
        a signal (EPIPE there) lost what was queued for it: said as undelivered, reason
        client-gone, and 128 + the signal.  (A socket, as the TypeScript SDK gives: its
        shutdown for reading wakes no writer, so the last write is the first to fail.)"""
        log = os.path.join(self.tmp.name, "t.jsonl")
        mine, theirs = socket.socketpair()
        self.addCleanup(mine.close)
        w = self.start([MCPMUX, "--log", log, "--log-bodies", "none", "--", FIXTURE],
                       stdout=theirs.fileno())
        theirs.close()
        w.send(call(1, "huge", bytes=2_000_000), call(2, "echo", text="after"))
        wait_until(self.responses(log, 2), 10, "both answers, queued for the client")
        mine.shutdown(socket.SHUT_RD)
        w.p.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM)
        self.assertIn("Terminated: the client closed its stdout before its last", w.stderr())
        self.assertIn("(2 messages, one of them cut, ids 2)", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("client-gone", 2, True, [2]))
        self.assertIn("its last %d bytes (" % u["bytes"], w.stderr())

    def test_a_client_gone_during_the_teardown_is_said(self):
        """A client that stopped reading and closes its stdout during the teardown, with
        no signal, loses what was queued for it: said as undelivered, reason client-gone,
        on stderr and in the traffic log, and mcpmux exits with the server's status, as
        when the client does not read it for eof-grace.  Once the run is over and mcpmux
        waits for the client to read, and while the server is being stopped."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=["--eof-grace", "60000", "--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=2_000_000), call(2, "echo", text="after"))
        wait_until(self.responses(log, 2), 10, "both answers, queued for the client")
        w.close_stdin()
        wait_until(lambda: '"event":"ended"' in self.log_text(log), 10,
                   "the run's end (the server exits on its EOF)")
        w.p.stdout.close()
        self.assertEqual(w.wait(10), 0, "the server's status")
        self.assertIn("the client closed its stdout before its last", w.stderr())
        self.assertIn("(2 messages, one of them cut, ids 2)", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("client-gone", 2, True, [2]))
        self.assertGreater(u["bytes"], 0)
        # The server deaf to its EOF: the client closes its stdout before it is stopped.
        log = os.path.join(self.tmp.name, "t2.jsonl")
        w = self.wrap("--ignore-eof", opts=["--eof-grace", "2000", "--log", log,
                                            "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=2_000_000), call(2, "echo", text="after"),
               call(3, "echo", text="last"))
        wait_until(self.responses(log, 3), 10, "the answers, queued for the client")
        w.close_stdin()
        w.p.stdout.close()
        self.assertEqual(w.wait(10), 128 + signal.SIGTERM, "the server's, stopped at eof-grace")
        self.assertIn("(3 messages, one of them cut, ids 2, 3)", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("client-gone", 3, True, [2, 3]))
        with open(log) as f:
            events = [r["event"] for r in map(json.loads, f) if "event" in r]
        self.assertLess(events.index("undelivered"), events.index("ended"),
                        "said while the server is stopped, before the run's end")

    def test_a_client_gone_after_a_signal_during_the_teardown_exits_with_the_signal(self):
        """A client that closes its stdout during the teardown that a signal began, with
        messages queued for it, lost them after the signal: said as undelivered, reason
        client-gone, once, and mcpmux exits with 128 + the signal, not the server's status."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap("--ignore-eof", opts=["-v", "--eof-grace", "1500", "--term-grace", "300",
                                            "--log", log, "--log-bodies", "none"])
        w.send(call(1, "huge", bytes=2_000_000), call(2, "echo", text="after"))
        wait_until(self.responses(log, 2), 10, "both answers, queued for the client")
        w.p.send_signal(signal.SIGHUP)
        wait_until(lambda: "Hangup: ending" in w.stderr(), 10, "the teardown, begun")
        w.p.stdout.close()
        self.assertEqual(w.wait(10), 128 + signal.SIGHUP)
        self.assertIn("Hangup: the client closed its stdout before its last", w.stderr())
        self.assertIn("(2 messages, one of them cut, ids 2)", w.stderr())
        self.assertEqual(w.stderr().count("exiting without them"), 1, w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("client-gone", 2, True, [2]))

    def test_a_direct_write_that_finds_the_client_gone_is_said(self):
        """A message written at once (nothing queued before it) to a client that closed its
        stdout is lost as a queued one is: said as undelivered, reason client-gone."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        w = self.wrap(opts=["--log", log, "--log-bodies", "none"])
        w.send(call(1, "echo", text="a"))
        self.assertEqual(w.msg(10)["id"], 1)
        w.p.stdout.close()
        w.send(call(2, "echo", text="b"))
        self.assertEqual(w.wait(10), 0, "the server's status")
        self.assertIn("the client closed its stdout before its last", w.stderr())
        self.assertIn("(1 message, ids 2)", w.stderr())
        [u] = self.undelivered(log)
        self.assertEqual((u["reason"], u["messages"], u["cut"], u["ids"]),
                         ("client-gone", 1, False, [2]))
        self.assertGreater(u["bytes"], 0)

    def test_a_stdout_that_fails_otherwise_is_said_with_its_error(self):
        """A write to the client's stdout that fails for another cause than a client gone
        (a full disk: /dev/full) is said with that cause, not as "the client closed its
        stdout"; mcpmux exits with the server's status, and the traffic log says them lost
        (reason client-gone: the client cannot have them)."""
        log = os.path.join(self.tmp.name, "t.jsonl")
        with open("/dev/full", "wb") as full:
            p = subprocess.run([MCPMUX, "--log", log, "--log-bodies", "none", "--", FIXTURE],
                               input=encode(initialize(1)) + encode(req(2, "ping")),
                               stdout=full, stderr=subprocess.PIPE, timeout=30 * SLOW,
                               env=self.env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr.decode(), r"(?m)^mcpmux: writing to stdout failed \(No "
                         r"space left on device\) before its last \d+ bytes \(\d messages?, "
                         r"ids 1(, 2)?\): exiting without them\n")
        self.assertNotIn("closed its stdout", p.stderr.decode())
        [u] = self.undelivered(log)
        self.assertEqual(u["reason"], "client-gone")
        self.assertEqual(u["ids"][0], 1)


F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
PIPE_DEFAULT, PIPE_BIG = 64 << 10, 1 << 20


def pipe_size(fd, pid=None):
    """The capacity of a pipe: our own fd, or another process's (through /proc)."""
    if pid is None:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    f = os.open("/proc/%d/fd/%d" % (pid, fd), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fcntl.fcntl(f, F_GETPIPE_SZ)
    finally:
        os.close(f)


class Pipes(Case):
    def test_long_lines_enlarge_the_pipes_until_idle(self):
        """A line of 8 KiB or more either way enlarges the server's pipes to 1 MiB until
        mcpmux has been idle, and the client's pipe in that direction for good."""
        w = self.wrap()
        pid = env_of(w, 1)["pid"]

        def sizes():
            return (pipe_size(0, pid), pipe_size(1, pid), pipe_size(w.p.stdin.fileno()),
                    pipe_size(w.p.stdout.fileno()))
        w.send(call(2, "echo", text="x" * 4000))
        w.msg()
        self.assertEqual(sizes(), (PIPE_DEFAULT,) * 4)
        # A short request, a long answer: the server's pipes, and the client's output.
        # (The server's are enlarged once the answer has been read and passed on, and
        # kept for half a second of idleness: looked for as soon as the answer comes.)
        w.send(call(3, "huge", bytes=9000))
        self.assertEqual(len(w.msg()["result"]["content"][0]["text"]), 9000)
        wait_until(lambda: sizes() == (PIPE_BIG, PIPE_BIG, PIPE_DEFAULT, PIPE_BIG), 5,
                   "the server's pipes and the client's output to be enlarged")
        wait_until(lambda: sizes() == (PIPE_DEFAULT, PIPE_DEFAULT, PIPE_DEFAULT, PIPE_BIG), 5,
                   "the server's pipes to shrink back once idle")
        # Short lines again: the pipes stay as they are (the long line was forgotten).
        w.send(req(4, "ping"))
        w.msg()
        self.assertEqual(sizes(), (PIPE_DEFAULT, PIPE_DEFAULT, PIPE_DEFAULT, PIPE_BIG))
        # A long notification from the client: the server's pipes and the client's input.
        w.send(note("notifications/message", {"pad": "y" * 9000}), req(5, "ping"))
        w.msg()
        self.assertEqual(sizes(), (PIPE_BIG, PIPE_BIG, PIPE_BIG, PIPE_BIG))
        w.close_stdin()
        self.assertEqual(w.wait(), 0)


class Backpressure(Case):
    def test_client_that_stops_reading(self):
        """A flooding server and a client that reads nothing: memory stays bounded, and
        once the client reads again every message arrives, in order, none lost."""
        n = 200_000
        w = self.wrap("--flood=%d" % n, opts=["--max-queue", "1000000"])
        w.send(initialize(1))
        # wait for the flood to stall against the full queue and pipes: the peak
        # RSS stops growing for half a second
        last = [-1, time.monotonic()]

        def stalled():
            now = vm_hwm_kib(w.pid)
            if now != last[0]:
                last[0], last[1] = now, time.monotonic()
                return False
            return time.monotonic() - last[1] > 0.5
        wait_until(stalled, 20, "the flood to stall")
        hwm = vm_hwm_kib(w.pid)
        seq = 1
        got_init = False
        while seq <= n:
            m = w.msg(30)
            if m.get("id") == 1:
                got_init = True
                continue
            self.assertEqual(m["params"]["data"].split()[1], str(seq))
            seq += 1
        self.assertTrue(got_init or w.msg()["id"] == 1)
        w.close_stdin()
        self.assertEqual(w.wait(), 0)
        # 200,000 x 200 B = 40 MB went through a 1 MB queue
        self.assertLess(hwm, 64 * 1024, "mcpmux's peak RSS %d KiB" % hwm)

    def test_a_server_that_writes_faster_than_the_client_reads_still_gets_its_input(self):
        """A server that floods faster than the client reads keeps what mcpmux queues for
        the client full, and so the client's input held: the client's requests are read
        all the same, each once it has read about half of --max-queue, not once the flood
        stops (it never does here)."""
        max_queue = 64 << 10
        w = self.wrap("--flood=0", opts=["--max-queue", str(max_queue)])
        w.send(initialize(1))
        self.assertEqual(w.msg()["id"], 1)
        for i in range(10):
            w.send(req(100 + i, "ping"))
            skipped = w.skip_slowly(b'{"jsonrpc":"2.0","id":%d,' % (100 + i), 8 * max_queue)
            self.assertIn("result", json.loads(w.line()))
            print("round trip %d: %d bytes of the flood first" % (i, skipped))
        w.close_stdin()
        w.read_to_eof(20)
        self.assertEqual(w.wait(10), 0)
        self.assert_no_leftovers(0)

    def test_client_that_closes_its_stdout_while_the_server_is_held_back(self):
        """The client stops reading until the server is held back (its output waits in a
        full queue), then closes its stdout: what the server still writes is read and
        dropped, so it finishes, sees EOF and exits by itself, not after the graces.  What
        was queued for the client is said lost, and mcpmux exits with the server's status."""
        w = self.wrap(opts=["--max-queue", "100000", "--eof-grace", "5000",
                            "--term-grace", "5000"])
        pid = env_of(w, 0)["pid"]
        # 3.2 MB of results: more than the client's pipe, the queue and the server's pipe
        w.send(*[call(i, "huge", bytes=400_000) for i in range(1, 9)])
        out = w.p.stdout.fileno()

        def held_back():  # the server blocked on its stdout, the client's pipe full
            with open("/proc/%d/wchan" % pid) as f:
                blocked = f.read().endswith("pipe_write")
            unread = array.array("i", [0])
            fcntl.ioctl(out, termios.FIONREAD, unread)
            return blocked and unread[0] >= pipe_size(out) - (64 << 10)
        wait_until(held_back, 10, "the server to be held back", lambda: proc_report(pid))
        w.p.stdout.close()
        t0 = time.monotonic()
        self.assertEqual(w.wait(4), 0, "the server's own exit at EOF")
        self.assertLess(time.monotonic() - t0, 4 * SLOW)
        self.assertIn("the client closed its stdout before its last", w.stderr())
        self.assert_no_leftovers(0)


if __name__ == "__main__":
    main()
