"""serve --http: the Streamable HTTP front end (docs/http.md), over http.client and raw
sockets.  Every status code and header rule, streams and their resumption, sessions and
their end, metrics, socket activation.  Every wait has a deadline; every process is
reaped (the harness's Case)."""

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
import threading
import time
import unittest

from mcptest import (Case, FIXTURE, MCPMUX, SANITIZED, SLOW, WRAPPER, all_pids, alive, comm,
                     deadline, main, nested, ppid_of, proc_report, rss_anon_kib, wait_until)

FAST = ["--eof-grace", "300", "--term-grace", "300"]
ACCEPT_BOTH = "application/json, text/event-stream"


def init_msg(id_=0, version="2025-11-25"):
    return {"jsonrpc": "2.0", "id": id_, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "test_http_front", "version": "1"}}}


def tool(id_, name, meta=None, **args):
    params = {"name": name, "arguments": args}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def read_text(path):
    with open(path) as f:
        return f.read()


# Run in a network namespace of its own (unshare -n), as root: mcpmux serve --http with
# the arguments after the first two (mcpmux, fixture), a session whose client accepts only
# JSON, and a call that never ends on a connection whose client then vanishes without a
# word: every packet to its port is dropped (iptables), as for a client whose machine
# slept.  Prints how long the session lived on after, and mcpmux's stderr, as JSON.
VANISHER = r"""
import json, re, socket, subprocess, sys, threading, time
mux, fixture, opts, wait = sys.argv[1], sys.argv[2], sys.argv[3:-1], float(sys.argv[-1])
p = None


def setup(argv):
    # A network namespace whose tools cannot work here (no nf_tables, no capability): a
    # skip, not a failure.
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        if p is not None:
            p.kill()
            p.wait()
        print(json.dumps({"skip": "%s: %s" % (" ".join(argv), r.stderr.decode().strip())}))
        sys.exit(0)


setup(["ip", "link", "set", "lo", "up"])
p = subprocess.Popen([mux, "serve", "--http", "127.0.0.1:0", "--metrics"] + opts +
                     ["--", fixture], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = []
port = None
while port is None:
    line = p.stderr.readline().decode()
    err.append(line)
    if not line:
        sys.exit("".join(err))
    m = re.search(r"on port (\d+)", line)
    port = int(m.group(1)) if m else None
threading.Thread(target=lambda: [err.append(l.decode()) for l in p.stderr], daemon=True).start()


def send(s, head, body=b""):
    s.sendall(head.replace("\n", "\r\n").encode() + body)


def answer(s):
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            return got.decode()
        got += d


def post(body, sid=None, close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    b = json.dumps(body).encode()
    send(s, "POST /mcp HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
            "Accept: application/json\n%sContent-Length: %d\nConnection: %s\n\n" %
            ("Mcp-Session-Id: %s\n" % sid if sid else "", len(b),
             "close" if close else "keep-alive"), b)
    return answer(s) if close else s


def sessions():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    send(s, "GET /metrics HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n")
    return int(re.search(r"\nmcpmux_http_sessions (\d+)", answer(s)).group(1))


sid = re.search(r"Mcp-Session-Id: (\S+)", post({
    "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "v", "version": "1"}}})).group(1)
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
c = post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
          "params": {"name": "sleep", "arguments": {"ms": 600000}}}, sid, close=False)
# Sent: mcpmux has it whatever becomes of the packets to the client.
setup(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(c.getsockname()[1]),
       "-j", "DROP"])
t0 = time.monotonic()
while sessions() > 0 and time.monotonic() - t0 < wait:
    time.sleep(0.2)
lived = time.monotonic() - t0 if sessions() == 0 else None
p.terminate()
p.wait(20)
print(json.dumps({"lived": lived, "stderr": "".join(err)}))
"""


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def events(self):
        return parse_sse(self.body)

    def messages(self):
        return [json.loads(e["data"]) for e in self.events() if e.get("data")]

    def __repr__(self):
        return "Resp(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


def parse_sse(raw):
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        ev = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                ev.setdefault("comment", line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                ev["data"] = ev["data"] + "\n" + value if "data" in ev else value
            else:
                ev[name] = value
        out.append(ev)
    return [e for e in out if set(e) != {"comment"}]


class Stream:
    """An SSE response read event by event, with a deadline on each read."""

    def __init__(self, conn, resp):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def event(self, seconds=10):
        """The next event (comments skipped), or None at the end of the stream."""
        self.conn.sock.settimeout(seconds * SLOW)
        ev = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if ev:
                    return ev
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                ev["data"] = ev["data"] + "\n" + value if "data" in ev else value
            else:
                ev[name] = value

    def message(self, seconds=10):
        """The next event that carries a message, decoded."""
        while True:
            ev = self.event(seconds)
            if ev is None:
                raise AssertionError("the stream ended without a message")
            if ev.get("data"):
                return json.loads(ev["data"]), ev

    def rest(self, seconds=10):
        """The events that carry a message until the end of the stream."""
        got = []
        while True:
            ev = self.event(seconds)
            if ev is None:
                return got
            if ev.get("data"):
                got.append(ev)

    def close(self):
        self.conn.close()


class HttpCase(Case):
    def assert_progress_waits_for_the_next_stream(self, sid):
        """A call's progress whose JSON client takes none of it, with no GET stream to go
        to: its 5 notifications (and the server's message) wait, and come with the next
        call's answer, before it."""
        r = self.post(tool(2, "progress", meta={"progressToken": "p"}, steps=5), sid,
                      headers={"Accept": "application/json"})
        self.assertEqual(r.json()["result"]["content"][0]["text"], "progressed")
        msgs = self.call(sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        self.assertEqual([m.get("method") for m in msgs],
                         ["notifications/progress"] * 5 + ["notifications/message", None])
        return msgs

    def http(self, *fixture_args, opts=(), command=None, addr="127.0.0.1:0", fast=True,
             **popen):
        """mcpmux serve --http ADDR [opts] -- fixture; self.port is its port."""
        o = ["--http", addr] + (FAST if fast else []) + list(opts)
        p = self.serve(*fixture_args, opts=o, command=command, **popen)
        m = wait_until(lambda: re.search(r"on port (\d+)", p.stderr()) or
                       (p.p.poll() is not None and "exited"), 10, "mcpmux to listen",
                       lambda: "stderr:\n%s\n%s" % (p.stderr()[-2000:],
                                                     proc_report(p.pid)))
        if m == "exited":
            raise AssertionError("mcpmux exited: %s" % p.stderr())
        self.port = int(m.group(1))
        self.srv = p
        return p

    def conn(self, seconds=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=seconds * SLOW)

    def slow_socket(self, seconds=5):
        """A connection whose receive buffer is small (4 KiB): a client that reads slowly,
        or not at all, holds mcpmux's bytes in mcpmux's own queue."""
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(seconds * SLOW)
        s.connect(("127.0.0.1", self.port))
        return s

    @staticmethod
    def raw_post(s, sid, msg):
        body = json.dumps(msg)
        s.sendall(("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                   "\r\nAccept: %s\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n%s" %
                   (ACCEPT_BOTH, sid, len(body), body)).encode())

    @staticmethod
    def raw_get(s, sid):
        s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                   "Mcp-Session-Id: %s\r\n\r\n" % sid).encode())

    def request(self, method, body=None, headers=None, path="/mcp", seconds=10):
        h = {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
            h["Accept"] = ACCEPT_BOTH
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        c = self.conn(seconds)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            c.close()

    def post(self, msg, sid=None, headers=None, **kw):
        h = {"Mcp-Session-Id": sid} if sid else {}
        h.update(headers or {})
        return self.request("POST", msg, h, **kw)

    def open(self, method, body=None, headers=None, path="/mcp"):
        """A request whose answer is read as a stream."""
        h = {}
        if body is not None:
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
            h["Accept"] = ACCEPT_BOTH
        h.update(headers or {})
        c = self.conn()
        c.request(method, path, body=body, headers=h)
        return Stream(c, c.getresponse())

    def get_stream(self, sid, last=None):
        h = {"Mcp-Session-Id": sid, "Accept": "text/event-stream"}
        if last is not None:
            h["Last-Event-ID"] = last
        return self.open("GET", headers=h)

    def session(self, version="2025-11-25"):
        """A new session, initialized: its ID."""
        r = self.post(init_msg(0, version))
        self.assertEqual(r.status, 200, r)
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        return sid

    def call(self, sid, msg):
        """A request whose SSE answer ends with its response: the messages."""
        r = self.post(msg, sid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "text/event-stream")
        return r.messages()

    def delete(self, sid, seconds=10):
        return self.request("DELETE", headers={"Mcp-Session-Id": sid}, seconds=seconds)

    def metrics(self):
        r = self.request("GET", path="/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
        out = {}
        for line in r.body.decode().splitlines():
            if line.startswith("#") or not line:
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def stop(self):
        self.srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(self.srv.wait(15), 0, self.srv.stderr())


class Transport(HttpCase):
    def test_initialize_opens_a_session_with_a_fresh_uuid(self):
        self.http()
        r = self.post(init_msg(7))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "text/event-stream")
        sid = r.headers["mcp-session-id"]
        self.assertRegex(sid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                              r"[0-9a-f]{12}$")
        evs = r.events()
        # The priming event first (2025-11-25): an id, a retry, empty data.
        self.assertEqual(evs[0].get("data"), "")
        self.assertIn("id", evs[0])
        self.assertEqual(evs[0].get("retry"), "1000")
        msgs = r.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["id"], 7)
        self.assertEqual(msgs[0]["result"]["protocolVersion"], "2025-11-25")
        # Every event has an id of its stream.
        self.assertTrue(all(re.match(r"^\d+:\d+$", e["id"]) for e in evs))
        env = self.call(sid, tool(1, "env"))[0]["result"]["structuredContent"]
        self.assertEqual(env["session"], sid)
        r2 = self.post(init_msg(0))
        self.assertNotEqual(r2.headers["mcp-session-id"], sid)

    def test_no_priming_event_before_2025_11_25(self):
        self.http()
        r = self.post(init_msg(0, "2025-06-18"))
        self.assertEqual(r.status, 200)
        evs = r.events()
        self.assertTrue(all(e.get("data") for e in evs), evs)
        sid = r.headers["mcp-session-id"]
        r = self.post(tool(1, "echo", text="x"), sid,
                      headers={"MCP-Protocol-Version": "2025-06-18"})
        self.assertTrue(all(e.get("data") for e in r.events()), r)

    def test_json_only_client_gets_one_json_body(self):
        self.http()
        r = self.post(init_msg(3), headers={"Accept": "application/json"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json()["id"], 3)
        sid = r.headers["mcp-session-id"]
        r = self.post(tool(4, "progress", meta={"progressToken": "t"}, steps=2), sid,
                      headers={"Accept": "application/json"})
        self.assertEqual(r.json(), {"jsonrpc": "2.0", "id": 4, "result": {
            "content": [{"type": "text", "text": "progressed"}]}})
        # What went nowhere meanwhile (the progress and the log) waits for a stream.
        g = self.get_stream(sid)
        got = [g.message()[0]["method"] for _ in range(3)]
        self.assertEqual(got, ["notifications/progress"] * 2 + ["notifications/message"])
        g.close()

    def test_notifications_and_responses_get_202(self):
        self.http()
        sid = self.session()
        r = self.post({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, sid)
        self.assertEqual(r.status, 202)
        self.assertEqual(r.body, b"")
        r = self.post({"jsonrpc": "2.0", "id": "nobody-asked", "result": {}}, sid)
        self.assertEqual(r.status, 202)

    def test_a_pretty_printed_body_reaches_the_server_as_one_line(self):
        self.http()
        sid = self.session()
        body = json.dumps(tool(5, "echo", text="a\nb"), indent=2)
        r = self.request("POST", body, {"Mcp-Session-Id": sid, "Content-Type":
                                        "application/json", "Accept": ACCEPT_BOTH})
        self.assertEqual(r.messages()[0]["result"]["content"][0]["text"], "a\nb")

    def test_a_line_break_inside_a_string_is_not_json(self):
        """A raw line break in a string is a control character, which JSON refuses: such a
        body is 400 -32700, not joined into a line that is JSON and forwarded.  Line
        breaks between tokens are white space: the text reaches the server unchanged.
        Each body is judged against Python's strict json."""
        self.http()
        sid = self.session()
        h = {"Mcp-Session-Id": sid, "Content-Type": "application/json", "Accept": ACCEPT_BOTH}
        texts = [b"a\nb", b"a\rb", b"a\r\nb", b"a\\\\\nb", b"a\\\"\nb", b"\n", b"a\\nb",
                 b"a\\\\\\nb", b"a\\\"b", b"\\\\", b"a\\u000ab"]
        for text in texts:
            for brk in (b"", b"\n", b"\r\n", b"\r"):
                body = (b'{"jsonrpc":"2.0",' + brk + b'"id":5,"method":"tools/call","params":'
                        b'{"name":"echo",' + brk + b'"arguments":{"text":"' + text + b'"}}}' + brk)
                with self.subTest(body=body):
                    try:
                        want = json.loads(body.decode())["params"]["arguments"]["text"]
                    except ValueError:
                        want = None
                    r = self.request("POST", body, h)
                    if want is None:
                        self.assertEqual(r.status, 400, r)
                        self.assertEqual(r.json()["error"]["code"], -32700, r)
                    else:
                        self.assertEqual(r.status, 200, r)
                        self.assertEqual(r.messages()[0]["result"]["content"][0]["text"], want)

    def test_json_nested_512_deep_passes_and_513_is_refused(self):
        """The nesting bound of every door (docs/reliability.md): a body 512 deep (every
        array and object counted, the message's own included) is forwarded, one 513 deep
        is 400 -32700, as a body that is not JSON."""
        self.http()
        sid = self.session()
        h = {"Mcp-Session-Id": sid, "Content-Type": "application/json", "Accept": ACCEPT_BOTH}

        r = self.request("POST", nested(1, 512), h)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.messages()[-1], {"jsonrpc": "2.0", "id": 1, "result": {}})
        r = self.request("POST", nested(2, 513), h)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"]["code"], -32700, r)
        self.assertEqual(self.call(sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})[-1],
                         {"jsonrpc": "2.0", "id": 3, "result": {}})

    def test_a_string_of_many_escapes_is_scanned_in_linear_time(self):
        """The body's members are found by a structural pass (src/jsonspan.c) that skips
        strings: one of 2,000,000 escapes (a 4 MB id, every character a backslash) is
        answered in well under 10 s; a pass that searched the rest of the string again at
        each backslash took minutes."""
        self.http()
        sid = self.session()
        big_id = "\\" * 2_000_000
        r = self.post(tool(big_id, "echo", text="x"), sid, seconds=10)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.messages()[-1]["id"], big_id)
        self.assertEqual(self.call(sid, tool(2, "echo", text="on"))[-1]["id"], 2)

    def test_a_chunked_body_with_trailer_fields(self):
        """Trailer fields after a chunked body are discarded: the head the handler reads
        (Host, the session, the token) is the one before the body."""
        self.http()
        sid = self.session()
        for trailer in ("X-T: 1\r\n", "X-T: " + "v" * 3000 + "\r\nX-U: 2\r\n"):
            body = json.dumps(tool(6, "echo", text="chunked")).encode()
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/json\r\nAccept: application/json\r\nMcp-Session-Id: " +
                      sid.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailer.encode() +
                      b"\r\n")
            f = s.makefile("rb")
            self.assertEqual(f.readline(), b"HTTP/1.1 200 OK\r\n")
            length = None
            while True:
                line = f.readline()
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = json.loads(f.read(length))
            self.assertEqual(answer["result"]["content"][0]["text"], "chunked")
            f.close()
            s.close()
        self.assertIsNone(self.srv.p.poll(), self.srv.stderr())

    def test_progress_and_log_go_on_the_request_stream(self):
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        msgs = self.call(sid, tool(9, "progress", meta={"progressToken": 77}, steps=3))
        self.assertEqual([m.get("method") for m in msgs],
                         ["notifications/progress"] * 3 + ["notifications/message", None])
        self.assertEqual([m["params"]["progress"] for m in msgs[:3]], [1, 2, 3])
        self.assertEqual(msgs[-1]["id"], 9)
        g.close()

    def test_a_progress_token_given_twice_is_the_last_as_for_the_server(self):
        """params._meta holds progressToken twice: the server takes the last (as JSON.parse
        does), and so does mcpmux, so its progress goes on the request's stream, not on
        the GET stream (another request in flight: no "only request" to fall back on)."""
        self.http()
        sid = self.session()
        a = self.open("POST", tool(2, "ask"), {"Mcp-Session-Id": sid})
        ask, _ = a.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        g = self.get_stream(sid)
        body = ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"progress",'
                '"arguments":{"steps":2},"_meta":{"progressToken":"a","progressToken":"b"}}}')
        r = self.post(body, sid, headers={"Content-Type": "application/json",
                                          "Accept": ACCEPT_BOTH})
        self.assertEqual(r.status, 200, r)
        msgs = r.messages()
        self.assertEqual([(m.get("method"), m.get("params", {}).get("progressToken"))
                          for m in msgs[:-1]], [("notifications/progress", "b")] * 2)
        self.assertEqual(msgs[-1]["id"], 3)
        # what belongs to no request, with two in flight, went on the GET stream
        self.assertEqual(g.message()[0]["method"], "notifications/message")
        self.assertEqual(self.post({"jsonrpc": "2.0", "id": ask["id"], "result": {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "y"}}},
            sid).status, 202)
        self.assertEqual(a.message()[0]["id"], 2)
        a.close()
        g.close()

    def test_a_server_request_is_answered_over_post(self):
        self.http()
        sid = self.session()
        s = self.open("POST", tool(2, "ask"), {"Mcp-Session-Id": sid})
        self.assertEqual(s.status, 200)
        ask, _ = s.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        r = self.post({"jsonrpc": "2.0", "id": ask["id"], "result": {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "yes"}}},
            sid)
        self.assertEqual(r.status, 202)
        done, _ = s.message()
        self.assertEqual(done["id"], 2)
        self.assertIn("result", done)
        self.assertIsNone(s.event(5), "the stream ends after its response")
        s.close()

    def test_concurrent_requests_each_get_their_own_stream(self):
        self.http()
        sid = self.session()
        streams = [self.open("POST", tool(100 + i, "sleep", ms=200 - 50 * i),
                             {"Mcp-Session-Id": sid}) for i in range(3)]
        for i, s in enumerate(streams):
            m, ev = s.message()
            self.assertEqual(m["id"], 100 + i)
            s.close()

    def test_messages_with_no_request_wait_for_the_get_stream(self):
        # The fixture floods right after initialize: no request is in flight then.
        self.http("--flood", "5")
        sid = self.session()
        g = self.get_stream(sid)
        self.assertEqual(g.status, 200)
        self.assertEqual(g.headers["mcp-session-id"], sid)
        for i in range(5):
            m, _ = g.message()
            self.assertTrue(m["params"]["data"].startswith("flood %d " % (i + 1)), m)
        # One GET stream per session.
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Accept": "text/event-stream"})
        self.assertEqual(r.status, 409)
        g.close()

    def test_delete_answers_when_the_tree_is_gone(self):
        self.http("--daemonize-grandchild")
        sid = self.session()
        wait_until(lambda: len(self.cookie_pids(sid)) >= 2, 5, "the server and its grandchild")
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")  # its priming event
        r = self.delete(sid)
        self.assertEqual(r.status, 200)
        res = r.json()
        self.assertEqual(res["session"], sid)
        self.assertIn(res["escalation"], ("eof", "term", "kill"))
        self.assertEqual(self.cookie_pids(sid), [], "nothing of the tree may be left")
        # Its GET stream ends; the session is unknown from now on.
        self.assertIsNone(g.event(5))
        g.close()
        self.assertEqual(self.post(tool(1, "env"), sid).status, 404)
        self.assertEqual(self.delete(sid).status, 404)
        self.stop()
        self.assert_no_leftovers(0)

    def test_end_method_over_post(self):
        self.http()
        sid = self.session()
        msgs = self.call(sid, {"jsonrpc": "2.0", "id": 5, "method": "mcpmux/endRun"})
        self.assertEqual(msgs[-1]["id"], 5)
        self.assertEqual(msgs[-1]["result"]["session"], sid)
        self.assertEqual(self.post(tool(1, "env"), sid).status, 404)

    def test_a_second_delete_while_the_first_waits_gets_the_same_answer(self):
        """A server that ignores EOF and SIGTERM: the DELETE waits for the SIGKILL, and a
        second DELETE meanwhile is answered with the same end-of-run result, once the tree
        is gone."""
        self.http("--ignore-sigterm", "--ignore-eof", fast=False,
                  opts=["--eof-grace", "300", "--term-grace", "1500"])
        sid = self.session()
        wait_until(lambda: self.cookie_pids(sid), 5, "the server")
        first = self.conn()
        first.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
        # The end takes 1.8 s (the graces, then SIGKILL): the second DELETE comes meanwhile.
        second = self.delete(sid)
        r = first.getresponse()
        body = r.read()
        first.close()
        self.assertEqual((r.status, second.status), (200, 200), second)
        self.assertEqual(json.loads(body), second.json())
        res = second.json()
        self.assertEqual((res["session"], res["escalation"]), (sid, "kill"))
        self.assertEqual(self.cookie_pids(sid), [], "nothing of the tree may be left")
        self.assertEqual(self.delete(sid).status, 404)

    def test_a_notification_while_the_run_ends_is_not_accepted(self):
        """While a DELETE waits for the end (the server ignores EOF and SIGTERM), a request
        gets its -32000 error (the run is ending), and a notification, which the server
        will not get either, is not answered 202 (accepted) but 404, with a JSON-RPC error
        without an id, as when the session has ended."""
        self.http("--ignore-sigterm", "--ignore-eof", fast=False,
                  opts=["--eof-grace", "300", "--term-grace", "1500"])
        sid = self.session()
        wait_until(lambda: self.cookie_pids(sid), 5, "the server")
        first = self.conn()
        self.addCleanup(first.close)
        first.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
        n = iter(range(1, 1000))
        last = wait_until(lambda: self.call(sid, tool(next(n), "echo", text="x"))[-1].get(
            "error"), 5, "a request to be refused: the run is ending")
        self.assertEqual(last["code"], -32000)
        self.assertIn("run is ending", last["message"])
        r = self.post({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, sid)
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.headers["content-type"], "application/json")
        err = r.json()
        self.assertIsNone(err["id"])
        self.assertEqual(err["error"]["code"], -32001)
        self.assertIn("run is ending", err["error"]["message"])
        self.assertEqual(first.getresponse().status, 200)
        self.assertEqual(self.cookie_pids(sid), [], "nothing of the tree may be left")
        self.assertEqual(self.post(INITIALIZED, sid).status, 404)

    def test_a_delete_whose_connection_goes_before_the_end_does_not_stop_it(self):
        """The DELETE's client goes while the end waits for its graces: the end goes on to
        its SIGKILL (the server ignores EOF and SIGTERM), and the session is gone."""
        self.http("--ignore-sigterm", "--ignore-eof", "--daemonize-grandchild", fast=False,
                  opts=["-v", "--eof-grace", "300", "--term-grace", "1000"])
        sid = self.session()
        wait_until(lambda: len(self.cookie_pids(sid)) >= 2, 5, "the server and its grandchild")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
        s.sendall(("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: %s\r\n\r\n"
                   % sid).encode())
        wait_until(lambda: "session %s: teardown begins" % sid in self.srv.stderr(), 5,
                   "the end to begin")
        s.close()  # 1.3 s before the end can answer
        wait_until(lambda: not self.cookie_pids(sid), 0.3 + 1.0 + 3, "the tree to be gone")
        # (a process in exit reads with no environment: gone to the test a moment before
        # mcpmux, which waits for it to be a zombie, says the end)
        wait_until(lambda: "session %s: ended (kill" % sid in self.srv.stderr(), 5,
                   "the end said")
        self.assertEqual(self.post(tool(1, "env"), sid).status, 404)
        self.stop()
        self.assert_no_leftovers(0)

    def test_streams_say_x_accel_buffering_no(self):
        """Every event stream (a request's, the GET stream, a resumed one) carries
        X-Accel-Buffering: no, so that nginx passes each event on at once."""
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        prime = g.event()
        s = self.open("POST", tool(1, "echo", text="hi"), {"Mcp-Session-Id": sid})
        self.assertEqual(s.message()[0]["id"], 1)
        s.close()
        g2 = self.get_stream(sid, last=prime["id"])
        for st in (g, s, g2):
            self.assertEqual(st.status, 200)
            self.assertEqual(st.headers["content-type"], "text/event-stream")
            self.assertEqual(st.headers.get("x-accel-buffering"), "no", st.headers)
        g.close()
        g2.close()

    def test_delete_answers_the_requests_in_flight_then_ends_every_stream(self):
        """DELETE with a request in flight (the server's question unanswered): its stream
        gets the -32000 error for it, then ends; so does the GET stream."""
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        s = self.open("POST", tool(1, "ask"), {"Mcp-Session-Id": sid})
        ask, _ = s.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        r = self.delete(sid)
        self.assertEqual(r.status, 200, r)
        m, _ = s.message()
        self.assert_error(m, 1, -32000)
        self.assertIsNone(s.event(5), "the request's stream ends after its error")
        self.assertIsNone(g.event(5), "the GET stream ends")
        s.close()
        g.close()
        self.assertEqual(self.cookie_pids(sid), [])

    def test_the_end_method_as_a_notification_is_202(self):
        self.http("--daemonize-grandchild")
        sid = self.session()
        wait_until(lambda: len(self.cookie_pids(sid)) >= 2, 5, "the server and its grandchild")
        r = self.post({"jsonrpc": "2.0", "method": "mcpmux/endRun"}, sid)
        self.assertEqual((r.status, r.body), (202, b""))
        wait_until(lambda: not self.cookie_pids(sid), 5, "the tree to be gone")
        wait_until(lambda: self.post(tool(1, "env"), sid).status == 404, 5,
                   "the session to be gone")

    def test_a_cancelled_requests_stream_ends(self):
        """notifications/cancelled: 202, and the cancelled request's stream ends without an
        answer (the server will not give one); the session goes on."""
        self.http()
        sid = self.session()
        s = self.open("POST", tool(1, "ask"), {"Mcp-Session-Id": sid})
        ask, _ = s.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        r = self.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 1, "reason": "enough"}}, sid)
        self.assertEqual(r.status, 202)
        self.assertIsNone(s.event(5), "the cancelled request's stream ends")
        s.close()
        self.assertEqual(self.call(sid, tool(2, "echo", text="on"))[-1]["id"], 2)

    def test_a_cancelled_json_requests_answer_is_204(self):
        """A request answered with one JSON body, cancelled: its server will not answer
        it, and the POST that waits gets 204 (no content: no response will come), with the
        session's ID and, for an allowed Origin, the CORS fields of every answer; the
        session goes on."""
        self.http()
        sid = self.session()
        origin = "http://localhost:%d" % self.port
        g = self.get_stream(sid)
        self.addCleanup(g.close)
        c = self.conn()
        self.addCleanup(c.close)
        c.request("POST", "/mcp", body=json.dumps(tool(1, "ask")),
                  headers={"Content-Type": "application/json", "Accept": "application/json",
                           "Mcp-Session-Id": sid, "Origin": origin})
        # The server's question goes on the GET stream: the call is in flight.
        self.assertEqual(g.message()[0]["method"], "sampling/createMessage")
        r = self.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 1, "reason": "enough"}}, sid)
        self.assertEqual(r.status, 202)
        a = c.getresponse()
        self.assertEqual((a.status, a.read()), (204, b""))
        self.assertEqual(a.getheader("Mcp-Session-Id"), sid)
        self.assertEqual(a.getheader("Access-Control-Allow-Origin"), origin)
        self.assertEqual(a.getheader("Access-Control-Expose-Headers"), "Mcp-Session-Id")
        self.assertEqual(self.call(sid, tool(2, "echo", text="on"))[-1]["id"], 2)

    def test_an_initialize_the_server_refuses_ends_the_session(self):
        self.http("--crash-after", "0")
        r = self.post(init_msg(1))
        self.assertEqual(r.status, 200)
        m = r.messages()
        self.assertEqual(m[-1]["error"]["code"], -32000)
        sid = r.headers["mcp-session-id"]
        wait_until(lambda: self.post(INITIALIZED, sid).status == 404, 5, "the session to end")


    def test_an_answer_in_a_batch_of_the_server_ends_its_stream(self):
        """A server that answers initialize in a batch, after a notification (init-batch):
        each element goes its own way, and the answer ends its request's stream (whole,
        the batch went to that stream and ended none)."""
        behave = os.path.join(self.tmp.name, "behave")
        with open(behave, "w") as f:
            f.write("init-batch\n")
        self.http("--behave-file=" + behave)
        r = self.post(init_msg(1))
        self.assertEqual(r.status, 200)
        m = r.messages()
        self.assertEqual([x.get("method") for x in m], ["notifications/message", None])
        self.assertEqual(m[-1]["id"], 1)
        self.assertIn("result", m[-1])


    def test_an_initialize_answered_with_an_error_ends_the_session(self):
        behave = os.path.join(self.tmp.name, "behave")
        log = os.path.join(self.tmp.name, "traffic.jsonl")
        with open(behave, "w") as f:
            f.write("init-error\n")
        self.http("--behave-file=" + behave, opts=["--log", log])
        r = self.post(init_msg(1))
        self.assertEqual(r.status, 200)
        self.assertIn("error", r.messages()[-1])
        sid = r.headers["mcp-session-id"]
        wait_until(lambda: self.post(INITIALIZED, sid).status == 404, 5, "the session to end")

        def ended():
            with open(log) as f:
                return [json.loads(line) for line in f if '"ended"' in line]
        ev = wait_until(ended, 5, "the ended event in the log")[0]
        self.assertEqual((ev["session"], ev["reason"]), (sid, "init-error"))


    def test_an_initialize_refused_after_a_json_client_went_ends_the_session(self):
        """The client accepts JSON only and goes before the server refuses initialize: it
        never learnt the session's ID (nobody can DELETE it), and the session ends as if
        it had stayed."""
        behave = os.path.join(self.tmp.name, "behave")
        with open(behave, "w") as f:
            f.write("init-error=600\n")
        self.http("--behave-file=" + behave, opts=["--metrics"])
        c = self.conn()
        c.request("POST", "/mcp", body=json.dumps(init_msg(1)), headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        wait_until(lambda: self.metrics()["mcpmux_sessions"] == 1, 5, "the session")
        c.close()  # gone before the answer
        wait_until(lambda: self.metrics()["mcpmux_sessions"] == 0, 5, "the session to end",
                   lambda: self.srv.stderr())
        wait_until(lambda: not [p for p in self.tagged() if comm(p) == "mcp-fixture"], 5,
                   "the server to be gone")

def read_to_eof(s, seconds=10):
    """Every byte until the peer closes (bounded)."""
    s.settimeout(seconds * SLOW)
    got = b""
    while True:
        data = s.recv(65536)
        if not data:
            return got
        got += data


def dechunk(body):
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


class HalfClose(HttpCase):
    """A client that shuts its sending side right after a complete request (RFC 9112
    allows it; nc -N does it) is answered, and its connection closed after the answer."""

    def half_closed_post(self, sid, msg, accept, tail=b""):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        self.addCleanup(s.close)
        body = json.dumps(msg).encode()
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Accept: %s\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n%s%s" %
                  (accept.encode(), sid.encode(), len(body), body, tail))
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s)

    def assert_slept_then_closed(self, raw, id_, interims=1):
        """raw: at least `interims` interim 100s, then a 200 with Connection: close whose
        JSON body answers the sleep call id_.  Its header lines."""
        n, rest = self.after_interims(raw)
        self.assertGreaterEqual(n, interims, raw)
        head, _, body = rest.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK", raw)
        self.assertIn("Connection: close", lines)
        m = json.loads(body)
        self.assertEqual((m["id"], m["result"]["content"][0]["text"]), (id_, "slept"))
        return lines

    @staticmethod
    def after_interims(raw):
        """raw less the interim 100s before its answer (one at least: the probe; more as
        the answer is waited for, and once more when the answer comes): (their number,
        the rest)."""
        n, probe = 0, b"HTTP/1.1 100 Continue\r\n\r\n"
        while raw.startswith(probe):
            n, raw = n + 1, raw[len(probe):]
        return n, raw

    def test_a_json_answer_after_a_half_close(self):
        """The answer (a call of 300 ms: the EOF is read while it runs) comes after an
        interim 100, which a client that closed its socket would have answered with a
        reset; then the connection closes.  The session goes on."""
        self.http()
        sid = self.session()
        pid = self.call(sid, tool(1, "env"))[-1]["result"]["structuredContent"]["pid"]
        raw = self.half_closed_post(sid, tool(2, "sleep", ms=300), "application/json")
        lines = self.assert_slept_then_closed(raw, 2)
        self.assertIn("Mcp-Session-Id: %s" % sid, lines)
        self.assertTrue(alive(pid))
        msgs = self.call(sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        self.assertEqual(msgs[-1], {"jsonrpc": "2.0", "id": 3, "result": {}})

    def test_an_sse_answer_after_a_half_close(self):
        """Likewise for a stream: its progress and its response, then its end and the
        connection's."""
        self.http()
        sid = self.session()
        raw = self.half_closed_post(sid, tool(2, "progress", meta={"progressToken": "p"},
                                              steps=3), ACCEPT_BOTH)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK", raw)
        self.assertIn("Content-Type: text/event-stream", lines)
        self.assertIn("Transfer-Encoding: chunked", lines)
        self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), raw)
        msgs = [json.loads(e["data"]) for e in parse_sse(dechunk(body)) if e.get("data")]
        self.assertEqual([m.get("method") for m in msgs],
                         ["notifications/progress"] * 3 + ["notifications/message", None])
        self.assertEqual(msgs[-1]["result"]["content"][0]["text"], "progressed")
        msgs = self.call(sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        self.assertEqual(msgs[-1], {"jsonrpc": "2.0", "id": 3, "result": {}})

    def test_a_call_longer_than_a_second_after_a_half_close(self):
        """While the call runs, an interim 100 is written again each second (RFC 9110
        allows any number before the answer): a client still there reads them, then its
        answer."""
        self.http()
        sid = self.session()
        raw = self.half_closed_post(sid, tool(2, "sleep", ms=2500), "application/json")
        self.assert_slept_then_closed(raw, 2, interims=2)

    def test_a_line_break_after_the_body_then_a_half_close(self):
        """What echo or a heredoc piped to nc -N sends: the body, a line break, then the
        EOF.  An empty line is no pipelined request (RFC 9112, 2.2): the call is answered
        after the interim 100, and the connection closes."""
        self.http()
        sid = self.session()
        for id_, tail in ((2, b"\n"), (3, b"\r\n")):
            with self.subTest(tail=tail):
                raw = self.half_closed_post(sid, tool(id_, "sleep", ms=300),
                                            "application/json", tail)
                self.assert_slept_then_closed(raw, id_)

    def closed_after_probes(self, id_, ms, probes):
        """A JSON call of ms milliseconds, its client half-closed, reads interim 100s until
        probes(n) holds of their number n, then closes its socket: the answer goes to the
        GET stream (rule 3), not into the closed connection."""
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        self.addCleanup(s.close)
        body = json.dumps(tool(id_, "sleep", ms=ms)).encode()
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Accept: application/json\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n"
                  b"\r\n%s" % (sid.encode(), len(body), body))
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            n, rest = self.after_interims(got)
            if rest == b"" and probes(n):
                break
            self.assertTrue(n < 8 and b"HTTP/1.1 100 Continue\r\n\r\n".startswith(rest), got)
            data = s.recv(4096)
            self.assertTrue(data, "closed before the interim 100s")
            got += data
        s.close()
        m, _ = g.message()
        self.assertEqual((m["id"], m["result"]["content"][0]["text"]), (id_, "slept"))
        g.close()

    def test_a_json_call_whose_client_closes_after_the_probe_goes_to_the_get_stream(self):
        """A client that half-closes, reads the interim 100 (one or more on a slow
        machine), then closes its socket sends nothing more: the 100 written again each
        second while the call runs draws its reset."""
        self.closed_after_probes(4, 3000, lambda n: n >= 1)

    def test_a_json_call_whose_client_closes_between_two_probes_goes_to_the_get_stream(self):
        """The same client closing after the second interim 100, less than a second before
        the answer, when no other 100 of the wait comes: the 100 written as the answer
        comes draws the reset."""
        self.closed_after_probes(5, 1500, lambda n: n == 2)

    def test_an_incomplete_request_then_a_half_close_is_dropped(self):
        """A body shorter than its Content-Length, then the EOF: nothing more can come,
        and no answer is given; nothing reaches the server."""
        log = os.path.join(self.tmp.name, "log")
        self.http(opts=["--log", log])
        sid = self.session()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        self.addCleanup(s.close)
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Accept: application/json\r\nMcp-Session-Id: %s\r\nContent-Length: 100\r\n"
                  b"\r\n{\"jsonrpc\":\"2.0\"," % sid.encode())
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"")
        msgs = self.call(sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
        self.assertEqual(msgs[-1], {"jsonrpc": "2.0", "id": 3, "result": {}})
        ins = [json.loads(l) for l in read_text(log).splitlines()]
        self.assertEqual([r.get("method") or r.get("id") for r in ins if r.get("dir") == "in"],
                         ["initialize", "notifications/initialized", "ping"])

    def test_a_get_stream_whose_client_half_closes_is_gone(self):
        """A GET has no body whose end a half-close marks, and a FIN alone does not say
        whether the client can still read: its stream ends, and the messages for it wait
        for the next stream, as for a client that closed it."""
        self.http()
        r = self.post(init_msg(1), headers={"Accept": "application/json"})
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        self.addCleanup(s.close)
        self.raw_get(s, sid)
        got = b""
        while b"data:" not in got:  # the priming event
            data = s.recv(4096)
            self.assertTrue(data, "the GET stream ended")
            got += data
        s.shutdown(socket.SHUT_WR)
        self.assertNotIn(b"progress", read_to_eof(s))
        self.assert_progress_waits_for_the_next_stream(sid)


class Refusals(HttpCase):
    def test_status_codes(self):
        self.http(opts=["--max-message", "4096", "--metrics"])
        sid = self.session()
        base = {"Mcp-Session-Id": sid}

        def err(r, status, code=None):
            self.assertEqual(r.status, status, r)
            self.assertEqual(r.headers.get("content-type"), "application/json", r)
            body = r.json()
            self.assertIsNone(body["id"])
            if code is not None:
                self.assertEqual(body["error"]["code"], code, r)
            return body["error"]["message"]

        # 400: no session ID, twice, malformed; initialize with one; bad bodies
        err(self.post(tool(1, "env")), 400)
        err(self.post(tool(1, "env"), headers={"Mcp-Session-Id": "a b"}), 400)
        err(self.post(tool(1, "env"), headers={"Mcp-Session-Id": "x" * 129}), 400)
        c = self.conn()
        c.putrequest("POST", "/mcp")
        c.putheader("Content-Type", "application/json")
        c.putheader("Mcp-Session-Id", sid)
        c.putheader("Mcp-Session-Id", sid)
        body = json.dumps(tool(1, "env")).encode()
        c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        self.assertEqual(r.status, 400)
        r.read()
        c.close()
        err(self.post(init_msg(1), sid), 400)
        h = dict(base, **{"Content-Type": "application/json", "Accept": ACCEPT_BOTH})
        err(self.request("POST", b"{not json", h), 400, -32700)
        err(self.request("POST", b"", h), 400, -32700)
        err(self.request("POST", b'{"hello":1}', h), 400, -32600)
        err(self.request("POST", b'[{"jsonrpc":"2.0","method":"x"}]', h), 400, -32600)
        err(self.request("POST", b'{"jsonrpc":"2.0","id":1,"method":"x"}\x00', h), 400)
        # MCP-Protocol-Version
        self.assertEqual(self.post(tool(1, "env"), sid, {
            "MCP-Protocol-Version": "2025-06-18"}).status, 200)
        self.assertEqual(self.post(tool(1, "env"), sid, {
            "MCP-Protocol-Version": "2025-03-26"}).status, 200)
        self.assertIn("1999-01-01", err(self.post(tool(1, "env"), sid, {
            "MCP-Protocol-Version": "1999-01-01"}), 400))
        # 404: unknown session, other paths
        err(self.post(tool(1, "env"), "5f0e2a5c-0000-4000-8000-000000000000"), 404, -32001)
        err(self.request("GET", path="/elsewhere"), 404)
        # 405 with Allow
        r = self.request("PUT", b"{}", base)
        err(r, 405)
        self.assertEqual(r.headers["allow"], "GET, POST, DELETE, OPTIONS")
        r = self.request("POST", b"x", path="/metrics")
        self.assertEqual(r.status, 405)
        # 406: accepts neither; a GET that does not accept SSE
        err(self.post(tool(1, "env"), sid, {"Accept": "text/html"}), 406)
        err(self.request("GET", headers=dict(base, Accept="application/json")), 406)
        # 415
        err(self.request("POST", json.dumps(tool(1, "env")),
                         dict(base, **{"Content-Type": "text/plain"})), 415)
        err(self.request("POST", json.dumps(tool(1, "env")),
                         dict(base, **{"Content-Type": "application/jsonx"})), 415)
        self.assertEqual(self.request("POST", json.dumps(tool(1, "env")), dict(base, **{
            "Content-Type": "Application/JSON; charset=utf-8"})).status, 200)
        # 413 over --max-message, from the layer
        r = self.request("POST", json.dumps(tool(1, "echo", text="x" * 5000)), h)
        self.assertEqual(r.status, 413)
        # ... and the server is fine after all of it
        self.assertEqual(self.call(sid, tool(2, "echo", text="ok"))[0]["id"], 2)

    def test_accept_on_several_field_lines_is_one_list(self):
        """Accept is a list: on two field lines (as Go's Header.Add writes it) it means
        the two values joined (RFC 9110, 5.3), not the first alone.  A GET whose second
        line accepts SSE gets its stream, not 406; a POST whose second line accepts JSON
        gets it, not 406; one whose two lines accept both gets SSE, as one line would."""
        self.http()
        sid = self.session()

        def raw(method, lines, body=b""):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
            self.addCleanup(s.close)
            head = ("%s /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: %s\r\n%s"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" %
                    (method, sid, "".join("Accept: %s\r\n" % v for v in lines), len(body)))
            s.sendall(head.encode() + body)
            got = b""
            while b"\r\n\r\n" not in got:
                d = s.recv(4096)
                self.assertTrue(d, got)
                got += d
            return got.split(b"\r\n\r\n")[0].decode().lower()

        def call(id_):
            return json.dumps(tool(id_, "echo", text="x")).encode()

        head = raw("GET", ["application/json", "text/event-stream"])
        self.assertTrue(head.startswith("http/1.1 200 "), head)
        self.assertIn("content-type: text/event-stream", head)
        head = raw("POST", ["text/html", "application/json"], call(1))
        self.assertTrue(head.startswith("http/1.1 200 "), head)
        self.assertIn("content-type: application/json", head)
        head = raw("POST", ["application/json", "text/event-stream"], call(2))
        self.assertTrue(head.startswith("http/1.1 200 "), head)
        self.assertIn("content-type: text/event-stream", head)
        # and the most specific range still rules, whichever line it is on
        head = raw("GET", ["*/*", "text/event-stream;q=0"])
        self.assertTrue(head.startswith("http/1.1 406 "), head)

    def test_a_server_answer_that_is_not_json_answers_its_request(self):
        """The server answers a call with a line that is not JSON (invalid UTF-8): the call
        is answered on its stream with mcpmux's -32000 error in its place, at once; the
        session's next call works."""
        self.http()
        sid = self.session()
        msgs = self.call(sid, tool(2, "bad", how="utf8"))
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0]["id"], 2)
        self.assertEqual(msgs[0]["error"]["code"], -32000)
        self.assertIn("could not be forwarded", msgs[0]["error"]["message"])
        r = self.post(tool(3, "bad", how="deep"), sid,
                      headers={"Accept": "application/json"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["error"]["code"], -32000)
        self.assertIn("nested too deeply", r.json()["error"]["message"])
        self.assertEqual(self.call(sid, {"jsonrpc": "2.0", "id": 4, "method": "ping"}),
                         [{"jsonrpc": "2.0", "id": 4, "result": {}}])
        self.assertIn("not JSON-RPC (not forwarded)", self.srv.stderr())
        self.stop()

    def test_a_content_coding_is_415_and_identity_is_accepted(self):
        """A body with a content coding (gzip here) is refused with 415 and
        Accept-Encoding: identity (RFC 9110, 8.4 and 15.5.16), not read as JSON (it was a
        400 -32700), on one field line or on several (a list); nothing reaches the server.
        Content-Encoding: identity is no coding at all."""
        import gzip
        log = os.path.join(self.tmp.name, "log")
        self.http(opts=["--log", log])
        sid = self.session()
        call = json.dumps(tool(1, "echo", text="x")).encode()
        for enc in ("gzip", "identity, gzip", "GZIP"):
            r = self.post(gzip.compress(call), sid, headers={
                "Content-Encoding": enc, "Content-Type": "application/json",
                "Accept": ACCEPT_BOTH})
            self.assertEqual(r.status, 415, (enc, r))
            self.assertEqual(r.headers["accept-encoding"], "identity")
            self.assertEqual(r.json()["error"]["code"], -32000)
            self.assertIsNone(r.json()["id"])
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        self.addCleanup(s.close)
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: %s\r\n"
                  b"Content-Type: application/json\r\nContent-Encoding: identity\r\n"
                  b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" %
                  (sid.encode(), len(call), call))
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 415 "))
        r = self.post(tool(2, "echo", text="y"), sid, headers={"Content-Encoding": "identity",
                                                               "Accept": "application/json"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["result"]["content"][0]["text"], "y")
        calls = [json.loads(l) for l in read_text(log).splitlines()]
        self.assertEqual([c["id"] for c in calls if c.get("method") == "tools/call"], [2])

    def test_host_origin_and_preflight(self):
        self.http(opts=["--allow-origin", "https://app.example"])
        r = self.post(init_msg(0), headers={"Host": "evil.example.com:80"})
        self.assertEqual(r.status, 403)
        r = self.post(init_msg(0), headers={"Host": "evil.example.com",
                                            "Origin": "http://evil.example.com"})
        self.assertEqual(r.status, 403)
        r = self.post(init_msg(0), headers={"Origin": "http://evil.example.com"})
        self.assertEqual(r.status, 403)
        self.assertNotIn("access-control-allow-origin", r.headers)
        r = self.post(init_msg(0), headers={"Origin": "https://app.example.evil"})
        self.assertEqual(r.status, 403)
        for host in ("localhost:%d" % self.port, "127.0.0.1", "[::1]:1"):
            r = self.post(init_msg(0), headers={"Host": host,
                                                "Origin": "http://localhost:%d" % self.port})
            self.assertEqual(r.status, 200, host)
            self.assertEqual(r.headers["access-control-allow-origin"],
                             "http://localhost:%d" % self.port)
        r = self.post(init_msg(0), headers={"Origin": "https://app.example"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example")
        self.assertIn("Mcp-Session-Id", r.headers["access-control-expose-headers"])
        r = self.request("OPTIONS", headers={"Origin": "https://app.example",
                                             "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example")
        self.assertEqual(r.headers["allow"], "GET, POST, DELETE, OPTIONS")
        self.assertEqual(r.headers["access-control-allow-headers"],
                         "Content-Type, Accept, Authorization, Mcp-Session-Id, "
                         "MCP-Protocol-Version, Last-Event-ID")
        self.assertEqual(r.headers["access-control-allow-methods"],
                         "GET, POST, DELETE, OPTIONS")
        self.assertEqual(r.headers["access-control-max-age"], "600")
        r = self.request("OPTIONS", headers={"Origin": "https://other.example"})
        self.assertEqual(r.status, 403)

    def test_bearer_token(self):
        tok = os.path.join(self.tmp.name, "token")
        with open(tok, "w") as f:
            f.write("s3cret-token\n")
        os.chmod(tok, 0o600)
        self.http(opts=["--auth-token-file", tok, "--metrics"])
        for auth in (None, "Bearer wrong-token!", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-toke"):
            r = self.post(init_msg(0), headers={"Authorization": auth})
            self.assertEqual(r.status, 401, auth)
            self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="mcpmux"', r)
        r = self.post(init_msg(0), headers={"Authorization": "bearer s3cret-token"})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.request("GET", path="/metrics").status, 401)
        self.assertEqual(self.request("GET", path="/metrics", headers={
            "Authorization": "Bearer s3cret-token"}).status, 200)
        # /healthz needs nothing
        self.assertEqual(self.request("GET", path="/healthz").status, 200)

    def test_the_token_is_the_first_line_of_its_file(self):
        """--auth-token-file F: the token is F's first line, the white space around it
        removed; the lines after it are not read as the token.  A file that others can
        read is said; white space inside the token, or no token on the first line, is
        refused at start (exit 1)."""
        tok = os.path.join(self.tmp.name, "token")
        with open(tok, "w") as f:
            f.write(" \ts3cret-token \r\nmade on 2026-01-01; rotate monthly\n")
        os.chmod(tok, 0o640)
        p = self.http(opts=["--auth-token-file", tok])
        self.assertIn("mcpmux: the token file '%s' can be read by others (chmod 600 it)\n"
                      % tok, p.stderr())
        self.assertEqual(self.post(init_msg(0)).status, 401)
        r = self.post(init_msg(0), headers={"Authorization": "Bearer s3cret-token"})
        self.assertEqual(r.status, 200, r)
        self.stop()
        for text, says in (("s3cret token\n", "has a character that a bearer token cannot"),
                           ("\ns3cret-token\n", "holds no token")):
            with open(tok, "w") as f:
                f.write(text)
            os.chmod(tok, 0o600)
            p = self.serve(opts=["--http", "0", "--auth-token-file", tok])
            self.assertEqual(p.wait(), 1, text)
            self.assertIn(says, p.stderr(), text)

    def test_the_start_up_line_names_the_address_listened_on(self):
        """"on port N of ADDR", ADDR as --http takes it (an IPv6 one in brackets)."""
        tok = os.path.join(self.tmp.name, "token")
        with open(tok, "w") as f:
            f.write("s3cret-token\n")
        os.chmod(tok, 0o600)
        addrs = [("127.0.0.1:0", "127.0.0.1"), ("0.0.0.0:0", "0.0.0.0")]
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
            addrs.append(("[::1]:0", "[::1]"))
        except OSError:
            pass  # no IPv6 loopback here
        for addr, shown in addrs:
            p = self.http(opts=["--auth-token-file", tok], addr=addr)
            self.assertIn("mcpmux: serving MCP over HTTP at /mcp on port %d of %s\n"
                          % (self.port, shown), p.stderr())
            p.p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(), 0, addr)

    def test_a_preflight_needs_no_token(self):
        """Browsers send a CORS preflight without credentials (Fetch): with a token and an
        allowed origin, the preflight is answered; the request it clears needs the token."""
        tok = os.path.join(self.tmp.name, "token")
        with open(tok, "w") as f:
            f.write("s3cret-token\n")
        os.chmod(tok, 0o600)
        self.http(opts=["--auth-token-file", tok, "--allow-origin", "https://app.example"])
        r = self.request("OPTIONS", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example")
        self.assertIn("Authorization", r.headers["access-control-allow-headers"])
        r = self.request("OPTIONS", headers={"Origin": "https://other.example"})
        self.assertEqual(r.status, 403)
        r = self.post(init_msg(0), headers={"Origin": "https://app.example"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example")
        r = self.post(init_msg(0), headers={"Origin": "https://app.example",
                                            "Authorization": "Bearer s3cret-token"})
        self.assertEqual(r.status, 200)

    def test_http_path_moves_the_endpoint(self):
        """--http-path PATH: the endpoint is PATH, and /mcp (the default) is not one."""
        p = self.http(opts=["--http-path", "/v1/tools"])
        self.assertIn("serving MCP over HTTP at /v1/tools on port %d" % self.port, p.stderr())
        r = self.post(init_msg(0), path="/v1/tools")
        self.assertEqual(r.status, 200, r)
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid, path="/v1/tools").status, 202)
        self.assertEqual(self.post(init_msg(0)).status, 404)
        self.assertEqual(self.post(tool(1, "env"), sid).status, 404)
        r = self.post(tool(1, "echo", text="here"), sid, path="/v1/tools")
        self.assertEqual(r.messages()[-1]["id"], 1)
        r = self.request("DELETE", headers={"Mcp-Session-Id": sid}, path="/v1/tools")
        self.assertEqual((r.status, r.json()["session"]), (200, sid))
        self.stop()
        self.assert_no_leftovers(0)

    def test_option_errors(self):
        p = self.serve(opts=["--http", "0.0.0.0:0"])
        self.assertEqual(p.wait(), 2)
        self.assertIn("--auth-token-file", p.stderr())
        for opts, says in ((["--http-path", "/x"], "add --http"),
                           (["--http", "0", "--http-path", "mcp"], "--http-path"),
                           (["--http", "0", "--allow-origin", "app.example"], "--allow-origin"),
                           (["--http", "0"] * 9, "at most 8")):
            p = self.serve(opts=opts)
            self.assertEqual(p.wait(), 2, opts)
            self.assertIn(says, p.stderr())
        p = self.start([MCPMUX, "--http", "8080", "--", FIXTURE])
        self.assertEqual(p.wait(), 2)
        self.assertIn("'--http' belongs to 'mcpmux serve'", p.stderr())
        p = self.serve(opts=["--metrics"])
        self.assertEqual(p.wait(), 2)
        p = self.serve(opts=["--http", "nonsense:port:x"])
        self.assertEqual(p.wait(), 2)
        p = self.serve(opts=["--http", "0", "--auth-token-file",
                             os.path.join(self.tmp.name, "missing")])
        self.assertEqual(p.wait(), 1)
        self.assertIn("missing", p.stderr())
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            p = self.serve(opts=["--http", str(port)])
            self.assertEqual(p.wait(), 1)
        self.assertIn("mcpmux: cannot listen on '%d': Address already in use (another "
                      "program listens there: stop it, or choose another port, 0 for any "
                      "free one)\n" % port, p.stderr())
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            low = int(f.read())
        if os.geteuid() == 0 and low > 80:
            def as_nobody():
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            p = self.serve(opts=["--http", "127.0.0.1:80"], preexec_fn=as_nobody,
                           env=dict(self.env, MCPMUX_CGROUP="off"))
            self.assertEqual(p.wait(), 1)
            self.assertIn("mcpmux: cannot listen on '127.0.0.1:80': Permission denied (a port "
                          "below 1024 needs root or CAP_NET_BIND_SERVICE: choose one of 1024 "
                          "or more)\n", p.stderr())

    def test_head_a_get_without_a_session_and_protocol_versions(self):
        """HEAD: 405 with Allow; a GET without a session ID: 400; MCP-Protocol-Version
        twice: 400; the version the session's server answered initialize with (one
        mcpmux does not know) is accepted, another unknown one is not."""
        self.http()
        r = self.post(init_msg(0, "2099-01-01"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.messages()[-1]["result"]["protocolVersion"], "2099-01-01")
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        r = self.request("HEAD", headers={"Mcp-Session-Id": sid})
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.headers["allow"], "GET, POST, DELETE, OPTIONS")
        r = self.request("GET", headers={"Accept": "text/event-stream"})
        self.assertEqual(r.status, 400, r)
        self.assertIsNone(r.json()["id"])
        c = self.conn()
        c.putrequest("POST", "/mcp")
        body = json.dumps(tool(1, "env")).encode()
        for name, value in (("Content-Type", "application/json"), ("Accept", ACCEPT_BOTH),
                            ("Mcp-Session-Id", sid), ("MCP-Protocol-Version", "2025-06-18"),
                            ("MCP-Protocol-Version", "2025-06-18"),
                            ("Content-Length", str(len(body)))):
            c.putheader(name, value)
        c.endheaders(body)
        r = c.getresponse()
        self.assertEqual(r.status, 400)
        r.read()
        c.close()
        self.assertEqual(self.post(tool(2, "env"), sid, {
            "MCP-Protocol-Version": "2099-01-01"}).status, 200)
        self.assertEqual(self.post(tool(3, "env"), sid, {
            "MCP-Protocol-Version": "2099-02-02"}).status, 400)

    def test_the_older_protocol_versions_are_accepted_in_a_newer_session(self):
        """MCP-Protocol-Version 2024-10-07 and 2024-11-05 are accepted besides the current
        versions, whatever the session negotiated: a session at 2025-06-18 takes requests
        that carry either."""
        self.http()
        sid = self.session("2025-06-18")
        for i, version in enumerate(("2024-10-07", "2024-11-05"), 1):
            r = self.post(tool(i, "echo", text=version), sid, {"MCP-Protocol-Version": version})
            self.assertEqual(r.status, 200, (version, r))
            self.assertEqual(r.messages()[-1]["id"], i, version)
        r = self.post(tool(3, "env"), sid, {"MCP-Protocol-Version": "2024-11-06"})
        self.assertEqual(r.status, 400, r)

    def test_a_unix_socket_listener_is_0600_and_serves(self):
        path = os.path.join(self.tmp.name, "http.sock")
        p = self.serve(opts=["--http", path, "--idle-timeout", "60"] + FAST)
        wait_until(lambda: os.path.exists(path), 10, "the socket", lambda: p.stderr())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        s = socket.socket(socket.AF_UNIX)
        self.addCleanup(s.close)
        s.settimeout(10 * SLOW)
        s.connect(path)
        body = json.dumps(init_msg(1))
        s.sendall(("POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                   "\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(body), body)).encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertIn(b'"id":1', data)
        self.assertNotIn("--idle-timeout", p.stderr())
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(15), 0, p.stderr())
        self.assert_no_leftovers(0)

    def test_without_idle_timeout_mcpmux_warns_at_start(self):
        p = self.http()
        self.assertIn("HTTP sessions that are never deleted keep their servers until mcpmux "
                      "exits (give --idle-timeout S to end idle ones)", p.stderr())

    def test_a_head_that_trickles_gets_408_ten_seconds_after_its_first_byte(self):
        """A slowloris on mcpmux's own listener: a head sent a byte every half second,
        never finished, gets 408 and its connection closed 10 s after its first byte (the
        deadline is not moved by each byte), and the server is fine after it."""
        self.http()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        s.sendall(b"POST /mcp HTTP/1.1\r\n")
        data = b""
        for _ in range(int(40 * SLOW)):
            r, _, _ = select.select([s], [], [], 0.5)
            if r:
                data = s.recv(4096)
                break
            s.send(b"X")
        took = time.monotonic() - t0
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data)
        self.assertGreater(took, 9.5)
        self.assertLess(took, 12 * SLOW)
        try:
            while data:
                data = s.recv(4096)  # then the end of the connection, not a timeout
        except ConnectionResetError:
            pass
        self.assertEqual(self.call(self.session(), tool(1, "echo", text="ok"))[0]["id"], 1)

    def test_the_http_layers_own_statuses(self):
        """What the HTTP layer answers by itself, through mcpmux's own limits: another HTTP
        version 505, an Expect other than 100-continue 417, a target too long 414, a head
        too long 431, a transfer coding other than chunked 501; a loopback Host may name
        any port up to 65535, not beyond (403)."""
        self.http()

        def status(raw):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
            try:
                s.sendall(raw)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else data
            finally:
                s.close()

        self.assertEqual(status(b"GET /mcp HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n"), 505)
        self.assertEqual(status(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Expect: teapot\r\n\r\n"), 417)
        self.assertEqual(status(b"GET /mcp?" + b"q" * 20000 +
                                b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 414)
        self.assertEqual(status(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
                                b"b" * 20000 + b"\r\n\r\n"), 431)
        body = json.dumps(init_msg(0)).encode()
        self.assertEqual(status(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Type: application/json\r\n"
                                b"Transfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                                % (len(body), body)), 501)
        for host in ("localhost:65535", "127.0.0.1:65535", "[::1]:65535", "a.localhost:65535",
                     "localhost:0"):
            self.assertEqual(self.post(init_msg(0), headers={"Host": host}).status, 200, host)
        for host in ("localhost:65536", "127.0.0.1:99999", "[::1]:65536"):
            self.assertEqual(self.post(init_msg(0), headers={"Host": host}).status, 403, host)
        # ... and the server is fine after all of it
        self.assertEqual(self.call(self.session(), tool(1, "echo", text="ok"))[0]["id"], 1)

    def test_an_absolute_form_target_is_served_and_its_authority_checked_as_the_host(self):
        """RFC 9112, 3.2.2: a server accepts a request target in the absolute-form
        ("http://127.0.0.1:8080/mcp", scheme in any case), and its authority, not the Host
        field, names the host: a loopback one is served whatever the Host says, a foreign
        one gets the refusal a foreign Host gets."""
        self.http(opts=["--metrics"])
        r = self.post(init_msg(0), path="http://127.0.0.1:%d/mcp" % self.port)
        self.assertEqual(r.status, 200, r)
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid, path="HTTP://localhost/mcp").status, 202)
        r = self.post(tool(1, "echo", text="absolute"), sid, path="https://[::1]:1/mcp?q",
                      headers={"Host": "evil.example"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.messages()[-1]["id"], 1)
        self.assertEqual(self.post(init_msg(0), path="http://localhost/other").status, 404)
        foreign = self.post(init_msg(0), headers={"Host": "evil.example"})
        self.assertEqual(foreign.status, 403, foreign)
        for target in ("http://evil.example/mcp", "http://evil.example:%d/mcp" % self.port,
                       "Https://localhost.evil.example/mcp", "http://127.0.0.1@evil.example/mcp",
                       "http:///mcp"):
            r = self.post(init_msg(0), path=target, headers={"Host": "127.0.0.1"})
            self.assertEqual((r.status, r.body), (403, foreign.body), target)
        self.assertEqual(self.metrics()["mcpmux_http_sessions_started_total"], 1)

    def test_malformed_http_and_a_vanished_client_leave_the_server_working(self):
        self.http()
        sid = self.session()
        for junk in (b"GARBAGE\r\n\r\n", b"POST /mcp HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                     b"POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
            s.sendall(junk)
            if junk.endswith(b"{"):
                s.close()  # gone mid-body
                continue
            data = s.recv(4096)
            self.assertTrue(data.startswith(b"HTTP/1.1 400"), data)
            s.close()
        self.assertEqual(self.call(sid, tool(1, "echo", text="still"))[0]["id"], 1)

    def test_a_body_declared_long_and_not_sent_holds_no_memory_for_it(self):
        """A POST that declares a body of 60 MB and sends one byte of it: the buffer grows
        as the bytes come, not to the length declared, so that connections that declare
        much and send little cost little."""
        self.http(opts=["--max-message", "64M"])
        sid = self.session()

        def vm_size_kib():
            with open("/proc/%d/status" % self.srv.pid) as f:
                return int(re.search(r"VmSize:\s+(\d+)", f.read()).group(1))
        before = vm_size_kib()
        held = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
            self.addCleanup(s.close)
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nAccept: " + ACCEPT_BOTH.encode() +
                      b"\r\nMcp-Session-Id: " + sid.encode() +
                      b"\r\nContent-Length: 60000000\r\n\r\n{")
            held.append(s)
        # (answered after the loop has read the 16 heads that came before it)
        self.assertEqual(self.call(sid, tool(1, "echo", text="x"))[0]["id"], 1)
        grown = vm_size_kib() - before
        self.assertLess(grown, 128 << 10, "%d KiB more address space for 16 bodies of one "
                                          "byte" % grown)
        for s in held:
            s.close()
        self.assertEqual(self.call(sid, tool(2, "echo", text="y"))[0]["id"], 2)


class Resume(HttpCase):
    def test_a_client_that_vanishes_mid_stream_resumes_with_last_event_id(self):
        self.http()
        sid = self.session()
        s = self.open("POST", tool(1, "sleep", ms=400), {"Mcp-Session-Id": sid})
        prime = s.event()
        self.assertEqual(prime["data"], "")
        s.close()  # gone before the answer
        time.sleep(0.6 * SLOW)  # the answer arrives meanwhile, into the stream
        g = self.get_stream(sid, last=prime["id"])
        self.assertEqual(g.status, 200)
        m, ev = g.message()
        self.assertEqual(m["id"], 1)
        self.assertEqual(ev["id"].split(":")[0], prime["id"].split(":")[0])
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()
        # The session lived on.
        self.assertEqual(self.call(sid, tool(2, "echo", text="x"))[0]["id"], 2)

    def test_a_resumed_answered_stream_takes_no_waiting_messages(self):
        """Messages that wait for a stream (no request running, no GET stream) are not
        for a request stream resumed after its answer: it ends with that answer, and they
        go to the next GET stream, every one of them."""
        self.http()
        sid = self.session()
        s = self.open("POST", tool(1, "sleep", ms=300), {"Mcp-Session-Id": sid})
        prime = s.event()
        s.close()  # gone before the answer, which goes into the stream
        # Two log messages while no stream can take them: each request is JSON-only.
        for id_ in (2, 3):
            r = self.post(tool(id_, "progress", steps=1), sid,
                          headers={"Accept": "application/json"})
            self.assertEqual(r.json()["id"], id_)
        g = self.get_stream(sid, last=prime["id"])
        m, _ = g.message()
        self.assertEqual(m["id"], 1)
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        for _ in range(2):
            m, _ = g.message(5)
            self.assertEqual(m["method"], "notifications/message")
        g.close()

    def test_a_get_stream_reopened_right_after_its_close(self):
        """A client that closes its GET stream and opens another at once gets it, not a
        409 for a connection it closed (whose end mcpmux may not have read yet)."""
        self.http()
        sid = self.session()

        def get():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
            s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream"
                       "\r\nMcp-Session-Id: %s\r\n\r\n" % sid).encode())
            head = b""
            while b"\r\n" not in head:
                data = s.recv(4096)
                if not data:
                    break
                head += data
            return s, head.split(b"\r\n")[0]
        statuses = []
        g, _ = get()
        for _ in range(50):
            g.close()
            g, status = get()
            statuses.append(status.decode())
        self.assertEqual(statuses, ["HTTP/1.1 200 OK"] * 50)
        # the last one is the session's GET stream: a second one is refused
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Accept": "text/event-stream"})
        self.assertEqual(r.status, 409)
        g.close()

    def test_messages_for_a_get_stream_closed_unheard_wait_for_the_next_stream(self):
        """A GET stream that its client closed, and whose end mcpmux has not read (it
        reads no more of that connection: 64 KiB sent ahead of the next request fill what
        it holds, and 4 KiB more wait unread in the socket, ahead of the close; a close
        that has to wait for the loop to be idle is the same): the
        server's messages for it are not written into the closed connection, where a
        JSON-only client loses them, but wait for the next stream to open (rule 4)."""
        self.http()
        r = self.post(init_msg(1), headers={"Accept": "application/json"})
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
        try:
            s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream"
                       "\r\nMcp-Session-Id: %s\r\n\r\n" % sid).encode() + b"x" * ((64 << 10) + 4096))
            got = b""
            while b"data:" not in got:  # the priming event
                data = s.recv(4096)
                self.assertTrue(data, "the GET stream ended")
                got += data
        finally:
            s.close()
        msgs = self.assert_progress_waits_for_the_next_stream(sid)
        self.assertEqual(msgs[-1]["id"], 3)

    def test_a_json_answer_whose_client_went_goes_to_the_get_stream(self):
        self.http()
        sid = self.session()
        c = self.conn()
        c.request("POST", "/mcp", body=json.dumps(tool(4, "sleep", ms=1000)), headers={
            "Content-Type": "application/json", "Accept": "application/json",
            "Mcp-Session-Id": sid})
        c.close()  # gone before its answer, which cannot be resumed
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        m, _ = g.message()
        self.assertEqual(m["id"], 4)
        g.close()

    def test_a_json_answer_that_comes_as_its_client_goes_goes_to_the_get_stream(self):
        """The answer comes in the same turn as the close of its connection, before the HTTP
        layer has said that the connection went (mcpmux stopped while both happen): it goes
        by rule 3 all the same, not into the closed connection."""
        self.http()
        sid = self.session()
        server = self.call(sid, tool(1, "env"))[-1]["result"]["structuredContent"]["pid"]

        def syscall():
            with open("/proc/%d/syscall" % server) as f:
                return f.read().split()[:2]
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
        body = json.dumps(tool(4, "sleep", ms=300)).encode()
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Accept: application/json\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n"
                  b"\r\n%s" % (sid.encode(), len(body), body))
        wait_until(lambda: syscall() != ["0", "0x0"], 5, "the server to take the call")
        os.kill(self.srv.pid, signal.SIGSTOP)
        try:
            s.close()
            wait_until(lambda: syscall() == ["0", "0x0"], 5, "the server to answer")
        finally:
            os.kill(self.srv.pid, signal.SIGCONT)
        m, _ = g.message()
        self.assertEqual(m["id"], 4)
        self.assertEqual(m["result"]["content"][0]["text"], "slept")
        g.close()

    def test_resume_of_a_finished_stream_replays_what_followed(self):
        self.http()
        sid = self.session()
        r = self.post(tool(3, "progress", meta={"progressToken": "p"}, steps=2), sid)
        evs = [e for e in r.events() if e.get("data")]
        # As if the connection broke after the first progress notification.
        g = self.get_stream(sid, last=evs[0]["id"])
        self.assertEqual([e["id"] for e in g.rest(5)], [e["id"] for e in evs[1:]])
        g.close()

    def test_a_resume_of_a_request_stream_that_ended_is_204_beside_the_get_stream(self):
        """A Last-Event-ID that names a request's stream which ended and is not kept (here
        a cancelled one; one answered and let go is in the test above) gets 204 No
        Content, with the session's ID: nothing of it can still come, and 204 is SSE's
        "do not reconnect".  Not 409 because the
        session's GET stream is open (the TypeScript SDK resumes a stream that ended
        without a result, and gave up with an error after three 409s), and not an empty
        stream either (it would resume that again).  The GET stream is untouched."""
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        s = self.open("POST", tool(1, "ask"), {"Mcp-Session-Id": sid})
        prime = s.event()
        self.assertEqual(prime["data"], "")
        ask, _ = s.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        self.assertEqual(self.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                    "params": {"requestId": 1}}, sid).status, 202)
        self.assertIsNone(s.event(5), "the cancelled request's stream ends")
        s.close()
        for last in (prime["id"], "%s:1" % prime["id"].split(":")[0]):
            r = self.request("GET", headers={"Mcp-Session-Id": sid, "Last-Event-ID": last,
                                             "Accept": "text/event-stream"})
            self.assertEqual((r.status, r.body), (204, b""), last)
            self.assertEqual(r.headers["mcp-session-id"], sid)
        # the session goes on, its GET stream still connected
        self.assertEqual(self.call(sid, tool(2, "echo", text="on"))[-1]["id"], 2)
        self.assertEqual(self.request("GET", headers={
            "Mcp-Session-Id": sid, "Accept": "text/event-stream"}).status, 409)
        g.close()

    def test_a_finished_stream_resumed_from_its_last_event_is_204(self):
        """A finished stream that is still kept, resumed from its last event (a client
        that counts only a result as the response resumes after an error), has nothing
        left: 204, not an empty stream; resumed from an earlier event, it replays the rest
        and ends, as before."""
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        r = self.post({"jsonrpc": "2.0", "id": 1, "method": "no/such"}, sid)
        evs = r.events()
        self.assertEqual(evs[0]["data"], "")
        self.assertIn("error", json.loads(evs[-1]["data"]))
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Last-Event-ID": evs[-1]["id"],
                                         "Accept": "text/event-stream"})
        self.assertEqual((r.status, r.body), (204, b""))
        g2 = self.get_stream(sid, last=evs[0]["id"])
        self.assertEqual(g2.status, 200)
        m, ev = g2.message(5)
        self.assertEqual((m["id"], ev["id"]), (1, evs[-1]["id"]))
        self.assertIsNone(g2.event(5), "a resumed request stream ends after its response")
        g2.close()
        g.close()

    def test_a_finished_stream_larger_than_the_linger_bound_can_be_resumed(self):
        """A response over the 1 MiB that finished streams may keep per session, written
        out whole to the connection's socket: a client whose connection then breaks before
        it read it resumes it, as a smaller one (the stream went at once, with the older
        ones, and the resume opened the GET stream instead)."""
        self.http()
        sid = self.session()
        r = self.post(tool(3, "huge", bytes=3 << 19), sid)
        evs = r.events()
        self.assertEqual(evs[0]["data"], "")  # the priming event: what the client had
        g = self.get_stream(sid, last=evs[0]["id"])
        m, ev = g.message(5)
        self.assertEqual((m["id"], len(m["result"]["content"][0]["text"])), (3, 3 << 19))
        self.assertEqual(ev["id"], evs[1]["id"])
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()
        # the bound still holds for the older ones: a second such answer lets the first go,
        # and a resume of it is told that nothing of it is left
        r = self.post(tool(4, "huge", bytes=3 << 19), sid)
        self.assertEqual(r.messages()[-1]["id"], 4)
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Accept": "text/event-stream",
                                         "Last-Event-ID": evs[0]["id"]})
        self.assertEqual((r.status, r.body), (204, b""), "the first stream was kept")

    def test_a_finished_stream_is_held_to_max_queue_and_keeps_its_answer(self):
        """A request's stream that finished keeps for a resume what it kept while it ran:
        up to --max-queue of the events before its response (the oldest first out, with
        the warning for a resume from before them), here of 3,000 progress notifications
        (about 120 KB) written in bursts far larger than 4 KiB; the response itself is
        kept whatever its size."""
        self.http(opts=["--max-queue", "4096"])
        sid = self.session()
        r = self.post(tool(1, "progress", meta={"progressToken": "p"}, steps=3000), sid)
        evs = r.events()
        self.assertEqual(evs[0]["data"], "")
        self.assertGreater(sum(len(e.get("data", "")) for e in evs), 100_000)
        g = self.get_stream(sid, last=evs[0]["id"])
        got = g.rest(5)
        g.close()
        self.assertEqual(json.loads(got[-1]["data"])["id"], 1)
        self.assertEqual([e["id"] for e in got], [e["id"] for e in evs[-len(got):]])
        self.assertLessEqual(sum(len(e["data"]) for e in got[:-1]), 4096)
        self.assertGreater(len(got), 1)
        self.assertIn("resumed after event 0, but events up to", self.srv.stderr())
        # an answer larger than --max-queue: kept whole
        r = self.post(tool(2, "huge", bytes=20_000), sid)
        evs = r.events()
        g = self.get_stream(sid, last=evs[0]["id"])
        m, _ = g.message(5)
        self.assertEqual((m["id"], len(m["result"]["content"][0]["text"])), (2, 20_000))
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()

    def test_a_get_stream_resumed_after_a_stall_gets_what_was_still_queued(self):
        """A GET client that stops reading while mcpmux queues more than the stream's
        64 KiB replay window, then goes: what it had not received was never written to its
        socket, and a resume from its last event gets all of it, with no gap."""
        flood = 30000  # about 9 MiB of notifications/message, every one for the GET stream
        self.http("--flood", str(flood), opts=["--metrics"])
        sid = self.session()
        s = self.slow_socket(5)
        self.raw_get(s, sid)
        raw = s.recv(100)
        wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] > (256 << 10), 10,
                   "mcpmux to queue more than the replay window")
        # What the socket took reaches the client; what mcpmux still queues does not.
        os.kill(self.srv.pid, signal.SIGSTOP)
        try:
            s.settimeout(0.5 * SLOW)
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                raw += data
            s.close()
        finally:
            os.kill(self.srv.pid, signal.SIGCONT)
        body = raw.split(b"\r\n\r\n", 1)[1]
        sse = b""
        while body:  # chunked: the last chunk may be cut short
            size, _, rest = body.partition(b"\r\n")
            sse += rest[:int(size, 16)]
            body = rest[int(size, 16) + 2:]
        seen = [ev for ev in parse_sse(sse.rsplit(b"\n\n", 1)[0] + b"\n\n") if ev.get("data")]
        self.assertLess(len(seen), flood - 200, "most of the flood was still queued")
        last = seen[-1]["id"] if seen else "%s:0" % parse_sse(sse)[0]["id"].split(":")[0]
        n = int(json.loads(seen[-1]["data"])["params"]["data"].split()[1]) if seen else 0
        g = self.get_stream(sid, last=last)
        self.assertEqual(g.status, 200)
        while n < flood:
            m, _ = g.message(10)
            if m.get("method") == "notifications/message":
                self.assertEqual(int(m["params"]["data"].split()[1]), n + 1)
                n += 1
        g.close()
        self.assertNotIn("no longer kept", self.srv.stderr())

    def test_a_response_still_queued_after_the_linger_time_can_be_resumed(self):
        """The 10 s a finished request stream is kept count from when its response went
        out to the connection's socket, not from when it was queued: a client that reads
        slowly, whose connection breaks while the answer is still being written, resumes
        it, however long the write took."""
        self.http(opts=["--metrics"])
        sid = self.session()
        s = self.slow_socket(5)
        self.raw_post(s, sid, tool(1, "huge", bytes=16 << 20))
        raw = b""
        while b"\n\n" not in raw.split(b"\r\n\r\n", 1)[-1]:
            data = s.recv(100)
            self.assertTrue(data, raw)
            raw += data
        prime = parse_sse(raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1])[0]
        self.assertEqual(prime["data"], "")
        wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] > 1 << 20, 10,
                   "the answer to wait for the client")
        time.sleep(11)  # past the 10 s a finished stream lingers, the answer not yet out
        self.assertGreater(self.metrics()["mcpmux_http_queued_bytes"], 1 << 20)
        s.close()
        g = self.get_stream(sid, last=prime["id"])
        m, ev = g.message(10)
        self.assertEqual(m["id"], 1)
        self.assertEqual(len(m["result"]["content"][0]["text"]), 16 << 20)
        self.assertEqual(ev["id"], "%s:1" % prime["id"].split(":")[0])
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()

    def abandon_answer(self, sid, id_, size):
        """A POST of tool huge whose client reads the stream's head and priming event,
        then goes with the answer still in mcpmux's queue: the priming event's id."""
        s = self.slow_socket(5)
        self.raw_post(s, sid, tool(id_, "huge", bytes=size))
        raw = b""
        while b"\n\n" not in raw.split(b"\r\n\r\n", 1)[-1]:
            data = s.recv(100)
            self.assertTrue(data, raw)
            raw += data
        wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] > 1 << 20, 10,
                   "the answer to wait for the client")
        s.close()
        wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] < 1 << 20, 10,
                   "the connection to be closed")
        return parse_sse(raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1])[0]["id"]

    def test_answers_whose_connection_broke_before_they_were_written_count_in_max_queue(self):
        """A request stream whose connection breaks with its answer still in mcpmux's
        queue keeps the answer as an undelivered message: within --max-queue, which then
        pauses the server, not beside it (every such answer was kept for 300 s)."""
        self.http(opts=["--metrics", "--max-queue", "1M"])
        sid = self.session()
        first = self.abandon_answer(sid, 1, 4 << 20)
        # The message that finds the queue full goes out; the server waits after it.
        second = self.abandon_answer(sid, 2, 4 << 20)
        held = self.open("POST", tool(3, "echo", text="held"),
                         {"Mcp-Session-Id": sid})
        self.assertEqual(held.status, 200)
        with self.assertRaises(socket.timeout, msg="the server must wait at --max-queue"):
            held.message(2)
        held.conn.close()
        for n, last in ((1, first), (2, second)):
            g = self.get_stream(sid, last=last)
            m, _ = g.message(10)
            self.assertEqual(m["id"], n)
            self.assertEqual(len(m["result"]["content"][0]["text"]), 4 << 20)
            self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
            g.close()
        self.assertEqual(self.call(sid, tool(4, "echo", text="flows"))[-1]["id"], 4)

    def test_resume_rules(self):
        self.http()
        sid = self.session()
        g = self.get_stream(sid)
        prime = g.event()
        # an id that does not parse, or from the future: 400
        for bad in ("nonsense", "1:", ":1", "0:0", "%s:99" % prime["id"].split(":")[0]):
            r = self.request("GET", headers={"Mcp-Session-Id": sid,
                                             "Accept": "text/event-stream",
                                             "Last-Event-ID": bad})
            self.assertEqual(r.status, 400, bad)
        # a plain second GET: 409
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Accept": "text/event-stream"})
        self.assertEqual(r.status, 409)
        # a resume of the connected stream takes it over (its old connection, likely dead
        # unnoticed, is ended), and what follows goes to the new one
        g2 = self.get_stream(sid, last=prime["id"])
        self.assertEqual(g2.status, 200)
        self.assertIsNone(g.event(5), "the old connection's stream ends")
        g.close()
        self.assertEqual(g2.event()["data"], "")
        # With two requests in flight, a log message goes to the GET stream.
        # (The fixture handles one line at a time; `ask` stays in flight, unanswered.)
        slow = self.open("POST", tool(1, "ask"), {"Mcp-Session-Id": sid})
        ask, _ = slow.message()
        self.assertEqual(ask["method"], "sampling/createMessage")
        self.assertEqual(self.call(sid, tool(2, "progress", steps=0))[-1]["id"], 2)
        m, ev = g2.message()
        self.assertEqual(m["method"], "notifications/message")
        self.assertEqual(ev["id"].split(":")[0], prime["id"].split(":")[0])
        self.assertEqual(self.post({"jsonrpc": "2.0", "id": ask["id"], "result": {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "ok"}}},
            sid).status, 202)
        self.assertEqual(slow.message()[0]["id"], 1)
        slow.close()
        g2.close()
        # An unknown (forgotten) stream: the GET stream, as without Last-Event-ID.
        g2 = self.get_stream(sid, last="999:3")
        self.assertIn(g2.status, (200, 409))
        g2.close()

    def keep_busy(self, sid):
        """A call in flight (`ask` waits for its sampling answer), its stream connected:
        the session does not idle out while a stream of it is forgotten after
        --idle-timeout."""
        busy = self.open("POST", tool(900, "ask"), {"Mcp-Session-Id": sid})
        self.addCleanup(busy.close)
        self.assertEqual(busy.message()[0]["method"], "sampling/createMessage")

    def reopened_once_forgotten(self, sid, num):
        """The GET stream opened by a resume naming GET stream num once that stream is
        forgotten (until then, an event it never sent gets 400 and leaves it as it is)."""
        def probe():
            s = self.get_stream(sid, last="%d:999999" % num)
            if s.status == 400:
                s.close()
                return None
            return s
        s = wait_until(probe, 10, "GET stream %d to be forgotten" % num)
        self.addCleanup(s.close)
        return s

    def test_the_latest_get_streams_number_once_forgotten_opens_the_get_stream(self):
        """A Last-Event-ID naming the session's latest GET stream, forgotten: a new GET
        stream (200, its priming event of a new number), as a GET without one; the old
        number then names a GET stream that is not the latest, and still opens the GET
        stream: 409 while that one is connected."""
        self.http(opts=["--idle-timeout", "1"])
        sid = self.session()
        self.keep_busy(sid)
        g = self.get_stream(sid)
        prime = g.event()
        self.assertEqual(prime["data"], "")
        num = int(prime["id"].split(":")[0])
        g.close()
        g2 = self.reopened_once_forgotten(sid, num)
        self.assertEqual(g2.status, 200)
        ev = g2.event()
        self.assertEqual(ev["data"], "")
        self.assertGreater(int(ev["id"].split(":")[0]), num, "a new GET stream")
        r = self.request("GET", headers={"Mcp-Session-Id": sid, "Last-Event-ID": prime["id"],
                                         "Accept": "text/event-stream"})
        self.assertEqual(r.status, 409, r)
        g2.close()

    def test_an_older_get_streams_number_reopens_the_get_stream(self):
        """Before 2025-11-25 no priming event: a client whose GET stream was forgotten, and
        whose next GET stream broke before its first event, still resumes with the old GET
        stream's event ID, again and again.  Each time it gets the GET stream (200), not
        204, which would stop it from ever reconnecting it."""
        self.http("--flood", "3", opts=["--idle-timeout", "1"])
        sid = self.session("2025-06-18")
        g = self.get_stream(sid)
        for _ in range(3):
            m, ev = g.message()
            self.assertEqual(m["method"], "notifications/message")
        last, num = ev["id"], int(ev["id"].split(":")[0])
        self.keep_busy(sid)
        g.close()
        g2 = self.reopened_once_forgotten(sid, num)
        self.assertEqual(g2.status, 200)
        g2.close()  # before any event of it: the client still has `last`
        for _ in range(2):
            g2 = self.get_stream(sid, last=last)
            self.addCleanup(g2.close)
            self.assertEqual((g2.status, g2.headers.get("content-type")),
                             (200, "text/event-stream"))
            r = self.request("GET", headers={"Mcp-Session-Id": sid,
                                             "Accept": "text/event-stream"})
            self.assertEqual(r.status, 409, "the GET stream is connected")
            g2.close()

    def cancelled_stream(self, sid, id_):
        """The number of the stream of a request cancelled at once (it is not kept)."""
        s = self.open("POST", tool(id_, "ask"), {"Mcp-Session-Id": sid})
        self.addCleanup(s.close)
        num = int(s.event()["id"].split(":")[0])
        self.assertEqual(self.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                    "params": {"requestId": id_}}, sid).status, 202)
        self.assertIsNone(s.event(5), "the cancelled request's stream ends")
        return num

    def test_only_a_number_known_as_a_requests_stream_is_204(self):
        """mcpmux remembers the numbers of a session's last four GET streams: a number
        between them that is none of them was a request's stream (204); one below them
        may have been a GET stream's, and opens the GET stream (409 while it is
        connected), a request's included."""
        self.http(opts=["--idle-timeout", "1"])
        sid = self.session()
        self.keep_busy(sid)
        old_request = self.cancelled_stream(sid, 1)
        g = self.get_stream(sid)
        gets = [int(g.event()["id"].split(":")[0])]
        g.close()
        for i in range(4):
            if i == 2:
                request = self.cancelled_stream(sid, 2)
            g = self.reopened_once_forgotten(sid, gets[-1])
            gets.append(int(g.event()["id"].split(":")[0]))
            g.close()
        g = self.get_stream(sid)  # the last one, connected again
        self.assertEqual(g.event()["data"], "")
        self.assertLess(old_request, gets[0])
        self.assertLess(gets[2], request)
        self.assertLess(request, gets[3])
        for num, status in [(request, 204), (old_request, 409)] + [(n, 409) for n in gets[:-1]]:
            r = self.request("GET", headers={"Mcp-Session-Id": sid,
                                             "Last-Event-ID": "%d:0" % num,
                                             "Accept": "text/event-stream"})
            self.assertEqual(r.status, status, (num, gets, r))
        g.close()

    def message_ids(self, g, n):
        """The event ids of the next n notifications/message the GET stream g gives."""
        ids = []
        while len(ids) < n:
            m, ev = g.message()
            if m.get("method") == "notifications/message":
                ids.append(ev["id"])
        return ids

    def resume_from_the_oldest_kept(self, sid, prime, ids):
        """Resume the GET stream of sid from its priming event prime, after the events ids:
        it must start past the first of them (the bound applied) and give every event after
        the oldest kept, in order, 64 KiB at most.  The number of the first event given,
        the bytes given, and the length of the last one's data."""
        g = self.get_stream(sid, last=prime["id"])
        self.assertEqual(g.status, 200)
        ev = g.event()
        if ev["data"] == "":
            ev = g.event()  # past the new connection's priming event
        first = int(ev["id"].split(":")[1])
        self.assertGreater(first, 1, "everything was kept: the bound did not apply")
        got, kept = [ev["id"]], len(ev["data"])
        while got[-1] != ids[-1]:
            m, ev = g.message(5)
            got.append(ev["id"])
            kept += len(ev["data"])
        g.close()
        self.assertEqual(got, ids[ids.index(got[0]):])
        self.assertLessEqual(kept, 64 << 10)
        return first, kept, len(ev["data"])

    def test_a_resume_from_before_what_is_kept_gets_the_oldest_kept_with_a_warning(self):
        """The GET stream keeps the last 64 KiB its socket took: a resume from an event
        before those (here its priming event, after about 250 KB) is answered from the
        oldest event kept, every one after it in order, and mcpmux says on stderr that the
        ones between are no longer kept."""
        flood = 1000  # notifications/message of about 250 bytes each, for the GET stream
        self.http("--flood", str(flood))
        sid = self.session()
        g = self.get_stream(sid)
        prime = g.event()
        self.assertEqual(prime["data"], "")
        num = prime["id"].split(":")[0]
        ids = self.message_ids(g, flood)
        g.close()
        first, kept, last_len = self.resume_from_the_oldest_kept(sid, prime, ids)
        self.assertGreater(kept, (64 << 10) - 2 * last_len)
        self.assertIn("session %s: stream %s resumed after event 0, but events up to %d "
                      "are no longer kept" % (sid, num, first - 1), self.srv.stderr())

    def test_a_resume_that_takes_an_open_stream_over_gets_the_oldest_kept(self):
        """The same when the resume takes over a stream whose old connection is still
        open (as one that died unnoticed is): the stream is trimmed as it is taken over,
        to the last 64 KiB its socket took, not left with every event since."""
        flood = 1000
        self.http("--flood", str(flood))
        sid = self.session()
        old = self.get_stream(sid)
        prime = old.event()
        num = prime["id"].split(":")[0]
        ids = self.message_ids(old, flood)
        first, _, _ = self.resume_from_the_oldest_kept(sid, prime, ids)  # the old one open
        old.close()
        self.assertIn("session %s: stream %s resumed after event 0, but events up to %d "
                      "are no longer kept" % (sid, num, first - 1), self.srv.stderr())

    def test_resumes_of_a_stream_whose_client_reads_nothing_hold_one_copy(self):
        """A resume takes over a stream whose old connection still queues bytes its client
        did not take: that connection is closed, its bytes dropped (the resume writes them
        again).  Resume after resume of a 4 MiB answer from clients that read nothing
        leaves mcpmux queueing one copy of it, not one per resume; the last resume still
        gets the answer whole."""
        self.http(opts=["--metrics"])
        sid = self.session()
        r = self.post(tool(1, "huge", bytes=4 << 20), sid)
        prime = r.events()[0]
        self.assertEqual(prime["data"], "")
        queued = []
        for _ in range(8):
            s = self.slow_socket()
            s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream"
                       "\r\nMcp-Session-Id: %s\r\nLast-Event-ID: %s\r\n\r\n" %
                       (sid, prime["id"])).encode())
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
            queued.append(wait_until(
                lambda: self.metrics()["mcpmux_http_queued_bytes"] or None, 10,
                "the answer to be queued"))
        self.assertGreater(queued[0], 256 << 10, "the socket took the answer whole")
        self.assertLess(queued[-1], 2 * queued[0], queued)
        g = self.get_stream(sid, last=prime["id"])
        m, _ = g.message(10)
        self.assertEqual((m["id"], len(m["result"]["content"][0]["text"])), (1, 4 << 20))
        self.assertIsNone(g.event(5), "a resumed request stream ends after its response")
        g.close()

    def test_a_last_event_id_names_a_stream_of_this_session_by_its_number(self):
        """Stream numbers are each session's own: a Last-Event-ID copied from another
        session names this session's stream of that number, which it resumes (taking it
        over) or, for an event that stream has not sent, 400; a number that names no
        stream kept here opens the GET stream as without one (409 while it is connected)."""
        self.http()
        a, b = self.session(), self.session()
        ga, gb = self.get_stream(a), self.get_stream(b)
        pa, pb = ga.event(), gb.event()
        self.assertEqual(pa["id"], pb["id"])  # the same numbers in both
        num = int(pb["id"].split(":")[0])
        for last, status in (("%d:99" % num, 400), ("%d:0" % (num + 5), 409)):
            r = self.request("GET", headers={"Mcp-Session-Id": a, "Last-Event-ID": last,
                                             "Accept": "text/event-stream"})
            self.assertEqual(r.status, status, (last, r))
        g2 = self.get_stream(a, last=pb["id"])
        self.assertEqual(g2.status, 200)
        self.assertIsNone(ga.event(5), "a's GET stream is taken over")
        ev = g2.event()
        self.assertEqual((ev["data"], ev["id"].split(":")[0]), ("", str(num)))
        ga.close()
        g2.close()
        gb.close()


class Sessions(HttpCase):
    def test_idle_timeout_ends_an_http_session(self):
        self.http(opts=["--idle-timeout", "1"])
        sid = self.session()
        pid = self.call(sid, tool(1, "env"))[0]["result"]["structuredContent"]["pid"]
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")  # its priming event
        self.assertIsNone(g.event(10), "the GET stream ends with the session")
        g.close()
        wait_until(lambda: not alive(pid), 5, "the server to end")
        self.assertEqual(self.post(tool(2, "env"), sid).status, 404)

    def test_a_call_whose_client_vanished_does_not_hold_the_session(self):
        """A client that goes during a call that never ends, and never resumes its stream:
        when the stream is forgotten (--idle-timeout after it went), the call is cancelled
        on the client's behalf, and the idle session ends with its server."""
        self.vanish_during_a_call(json_only=False)

    def test_a_json_call_whose_client_vanished_does_not_hold_the_session(self):
        """The same for a client that accepts only JSON: its request cannot be resumed (its
        answer would go to the GET stream), and it is cancelled when forgotten."""
        self.vanish_during_a_call(json_only=True)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and
                         shutil.which("iptables") and shutil.which("ip"),
                         "root, unshare, ip and iptables (a network namespace)")
    def test_a_client_that_vanishes_without_a_word_during_a_call_does_not_hold_it(self):
        """A client whose machine sleeps (or whose network goes) during a call answered
        with one JSON body sends no FIN: nothing is written on its connection while the
        call runs, and nothing but TCP keep-alive finds it dead.  Its packets dropped, the
        connection fails after --stall-timeout of silence and three probes a third of it
        apart (here 2 s, 1 s), and the call is forgotten and cancelled as for a client
        that closed it: --idle-timeout ends the session, where it lived as long as the
        call."""
        out = os.path.join(self.tmp.name, "out")
        with open(out, "wb") as f:
            p = self.start(["unshare", "-n", sys.executable, "-c", VANISHER, MCPMUX, FIXTURE]
                           + FAST + ["--stall-timeout", "2", "--idle-timeout", "2", "30"],
                           stdout=f)
        p.p.wait(90 * SLOW)
        res = json.loads(read_text(out).strip().splitlines()[-1])
        if "skip" in res:
            self.skipTest(res["skip"])
        self.assertIsNotNone(res["lived"], res["stderr"])
        self.assertLess(res["lived"], 20, res["stderr"])
        self.assertRegex(res["stderr"], r"stream \d+ not resumed for 2 s: forgotten; its "
                                        r"request is cancelled")

    def test_a_client_that_pauses_its_reading_keeps_its_get_stream(self):
        """A client that is there but reads nothing of its GET stream for a while (its
        window shut, the probes of it answered), while mcpmux's own queue is empty (what
        came fits in the system's buffers): the stream stays its, past --stall-timeout
        and its keep-alive; another GET of the session gets 409."""
        self.http(opts=["--stall-timeout", "2"])
        sid = self.session()
        s = self.slow_socket(30)
        self.raw_get(s, sid)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))
        msg = tool(1, "progress", steps=250)  # some 30 KiB for the GET stream
        msg["params"]["_meta"] = {"progressToken": "t" * 60}
        r = self.post(msg, sid, headers={"Accept": "application/json"})
        self.assertEqual(r.status, 200, r)
        time.sleep(6 * SLOW)  # the pause: three times --stall-timeout
        g = self.slow_socket()
        self.raw_get(g, sid)
        got = g.recv(100)
        self.assertTrue(got.startswith(b"HTTP/1.1 409 "), (got, self.srv.stderr()))

    def vanish_during_a_call(self, json_only):
        log = os.path.join(self.tmp.name, "log")
        self.http(opts=["--idle-timeout", "1", "--log", log])
        sid = self.session()
        pid = self.call(sid, tool(1, "env"))[0]["result"]["structuredContent"]["pid"]
        if json_only:
            c = self.conn()
            c.request("POST", "/mcp", body=json.dumps(tool(2, "sleep", ms=600000)), headers={
                "Content-Type": "application/json", "Accept": "application/json",
                "Mcp-Session-Id": sid})
            wait_until(lambda: "\"sleep\"" in read_text(log), 5, "the call to go out")
            c.close()
        else:
            s = self.open("POST", tool(2, "sleep", ms=600000), {"Mcp-Session-Id": sid})
            self.assertEqual(s.event()["data"], "")
            s.close()
        wait_until(lambda: not alive(pid), 8, "the server to end",
                   lambda: self.srv.stderr())
        self.assertRegex(self.srv.stderr(), r"stream \d+ not resumed for 1 s: forgotten; its "
                                            r"request is cancelled")
        # The server is reaped, and its tree looked for, before the session is let go.
        wait_until(lambda: '"event":"ended"' in read_text(log), 5, "the session's end")
        self.assertEqual(self.post(tool(3, "env"), sid).status, 404)
        with open(log) as f:
            recs = [json.loads(l) for l in f]
        cancels = [r for r in recs if r.get("method") == "notifications/cancelled"]
        self.assertEqual(len(cancels), 1, cancels)
        self.assertEqual(cancels[0]["dir"], "in")
        # the stream forgotten, as a timeout event naming it and its request (the id whole)
        forgot = [r for r in recs if r.get("event") == "timeout" and "stream" in r]
        self.assertEqual(len(forgot), 1, recs)
        self.assertEqual(forgot[0]["session"], sid)
        self.assertIsInstance(forgot[0]["stream"], int)
        self.assertEqual(forgot[0]["request"], 2)
        self.assertRegex(self.srv.stderr(), r"stream %d not resumed for 1 s"
                         % forgot[0]["stream"])
        ended = [r for r in recs if r.get("event") == "ended"]
        self.assertEqual([e.get("reason") for e in ended], ["idle-timeout"])

    def test_ctl_lists_http_sessions_with_their_peer(self):
        path = os.path.join(self.tmp.name, "mux.sock")
        self.http(opts=["--listen", path])
        sid = self.session()
        p = self.start([MCPMUX, "ctl", "--json", path, "list"])
        out = p.read_to_eof()
        self.assertEqual(p.wait(), 0)
        sessions = json.loads(out)["sessions"]
        mine = [s for s in sessions if s["session"] == sid]
        self.assertEqual(len(mine), 1, sessions)
        self.assertRegex(mine[0]["peer"], r"^http 127\.0\.0\.1:\d+$")
        self.assertEqual(mine[0]["state"], "running")
        # ctl end works on an HTTP session too
        p = self.start([MCPMUX, "ctl", path, "end", sid])
        p.read_to_eof()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(self.post(tool(2, "env"), sid).status, 404)
        self.stop()

    def test_an_envelope_client_cannot_take_an_http_session(self):
        path = os.path.join(self.tmp.name, "mux.sock")
        self.http(opts=["--listen", path])
        sid = self.session()
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10 * SLOW)
        f = s.makefile("rwb", buffering=0)
        f.write(json.dumps({"session": sid, "message": tool(1, "env")}).encode() + b"\n")
        m = json.loads(f.readline())
        self.assertIn("another connection", m["message"]["error"]["message"])
        s.close()
        # ... nor does an HTTP client get an envelope session by naming it.
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10 * SLOW)
        f = s.makefile("rwb", buffering=0)
        f.write(json.dumps({"session": "env-one", "message": tool(1, "env")}).encode() + b"\n")
        json.loads(f.readline())
        self.assertEqual(self.post(tool(2, "env"), "env-one").status, 404)
        s.close()

    def test_a_hundred_concurrent_sessions(self):
        n = 100
        self.http(opts=["--max-sessions", str(n + 10)])
        sids = [None] * n
        pids = [None] * n
        errors = []

        def one(i):
            try:
                sids[i] = self.session()
                env = self.call(sids[i], tool(1, "env"))[0]["result"]["structuredContent"]
                self.assertEqual(env["session"], sids[i])
                pids[i] = env["pid"]
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * SLOW)
        self.assertEqual(errors, [])
        self.assertEqual(len(set(pids)), n, "one server per session")
        self.assertTrue(all(alive(p) for p in pids))
        results = [None] * n

        def end(i):
            try:
                results[i] = self.delete(sids[i], seconds=30)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        threads = [threading.Thread(target=end, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * SLOW)
        self.assertEqual(errors, [])
        self.assertTrue(all(r.status == 200 and r.json()["session"] == sids[i]
                            for i, r in enumerate(results)))
        self.assertEqual([p for p in pids if alive(p)], [])
        self.assert_no_leftovers(5)
        self.stop()

    def test_over_max_sessions_is_503(self):
        self.http(opts=["--max-sessions", "1"])
        self.session()
        r = self.post(init_msg(4))
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers["retry-after"], "1")
        self.assertEqual(r.json()["id"], 4)
        self.assertIn("max-sessions", r.json()["error"]["message"])

    def test_stdin_is_not_read(self):
        """With --http, stdin is not read: an envelope there starts no session and gets no
        answer, and its EOF ends nothing; the HTTP sessions go on."""
        p = self.http()
        sid = self.session()
        p.send({"session": "by-stdin", "message": init_msg(1)})
        p.close_stdin()
        p.no_output(0.5)
        self.assertEqual(self.cookie_pids("by-stdin"), [])
        self.assertEqual(self.call(sid, tool(1, "echo", text="on"))[-1]["id"], 1)
        self.assertEqual(self.post(init_msg(0)).status, 200)
        self.assertTrue(alive(p.pid))
        self.stop()
        self.assertEqual(p.read_to_eof(), b"")
        self.assert_no_leftovers(0)

    def test_sigterm_ends_every_session_and_stream(self):
        self.http()
        sids = [self.session() for _ in range(3)]
        g = self.get_stream(sids[0])
        g.event()
        self.srv.p.send_signal(signal.SIGTERM)
        self.assertIsNone(g.event(10))
        g.close()
        self.assertEqual(self.srv.wait(10), 0)
        self.assert_no_leftovers(0)


    def test_while_shutting_down_healthz_and_new_sessions_get_503(self):
        """After SIGTERM, while a session's server (it ignores EOF and SIGTERM) is being
        ended: /healthz answers 503 and an initialize 503 with Retry-After, on a connection
        opened before; mcpmux exits 0 once the tree is gone."""
        self.http("--ignore-sigterm", "--ignore-eof", fast=False,
                  opts=["--eof-grace", "300", "--term-grace", "3000", "--metrics"])
        sid = self.session()
        wait_until(lambda: self.cookie_pids(sid), 5, "the server")
        c = self.conn()
        self.addCleanup(c.close)
        c.request("GET", "/healthz")
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        self.srv.p.send_signal(signal.SIGTERM)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(lambda: not listening(), 5, "the listener to close (the shutdown begun)",
                   lambda: self.srv.stderr())
        c.request("GET", "/healthz")
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (503, b"shutting down\n"))
        c.request("POST", "/mcp", body=json.dumps(init_msg(9)), headers={
            "Content-Type": "application/json", "Accept": ACCEPT_BOTH})
        r = c.getresponse()
        body = json.loads(r.read())
        self.assertEqual(r.status, 503)
        self.assertEqual(r.getheader("Retry-After"), "1")
        self.assertEqual(body["id"], 9)
        c.close()
        self.assertEqual(self.srv.wait(15), 0, self.srv.stderr())
        self.assertEqual(self.cookie_pids(sid), [])
        self.assert_no_leftovers(0)

    def test_sigterm_with_a_client_that_reads_nothing_ends_in_bounded_time(self):
        """--stall-timeout 0 (no stall limit for servers) and a client that stops reading a
        big answer: at SIGTERM the last answers get 5 s to be taken, then mcpmux exits."""
        self.http(opts=["--stall-timeout", "0", "--metrics"])
        sid = self.session()
        s = self.slow_socket(10)
        self.raw_post(s, sid, tool(1, "huge", bytes=32 << 20))
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
        # ... and nothing more is read.
        wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] > 1 << 20, 10,
                   "the answer to wait for the client")
        t0 = time.monotonic()
        self.srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(self.srv.wait(15), 0)
        self.assertLess(time.monotonic() - t0, 10 * SLOW)
        self.assertRegex(self.srv.stderr(), r"HTTP clients took not all of their last answers "
                                            r"within 5 s: \d+ bytes are dropped")
        s.close()
        self.assert_no_leftovers(0)

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_shrinks_back_after_a_pretty_printed_body_and_a_huge_id(self):
        """A body with line breaks is copied onto one line, and a request's id is keyed in
        a buffer: neither keeps the size of the biggest one."""
        self.http(opts=["--max-message", "64M"])
        sid = self.session()
        text = "p" * (12 << 20)
        body = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                           "params": {"data": text}}, indent=1)
        r = self.request("POST", body, {"Mcp-Session-Id": sid, "Content-Type":
                                        "application/json", "Accept": ACCEPT_BOTH})
        self.assertEqual(r.status, 202)
        big_id = "i" * (12 << 20)
        r = self.post(tool(big_id, "echo", text="x"), sid, seconds=30)
        self.assertEqual(r.messages()[-1]["id"], big_id)
        self.assertEqual(self.call(sid, tool(2, "echo", text="x"))[-1]["id"], 2)
        wait_until(lambda: rss_anon_kib(self.srv.pid) < 12_000, 5,
                   "mcpmux's private memory to fall back under 12 MB",
                   lambda: "RssAnon %d KiB" % rss_anon_kib(self.srv.pid))

    @unittest.skipIf(SANITIZED or WRAPPER, "a sanitizer's or valgrind's allocator")
    def test_memory_given_back_when_a_finished_streams_big_answer_is_let_go(self):
        """A 20 MB answer on a request's stream is kept for a resume for 10 s after it was
        written (docs/http.md), then given back with no further request."""
        self.http()
        sid = self.session()
        r = self.post(tool(1, "huge", bytes=20_000_000), sid, seconds=30)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.messages()[-1]["result"]["content"][0]["text"]), 20_000_000)
        wait_until(lambda: rss_anon_kib(self.srv.pid) < 5_000, 15,
                   "mcpmux's private memory to fall back under 5 MB, idle",
                   lambda: "RssAnon %d KiB" % rss_anon_kib(self.srv.pid))

# A stdio server whose calls run for ever: each tools/call sends {k} progress
# notifications of about 1 KB for its progressToken at once, and is never answered.
TALKER = r"""
import json, sys
pad = "x" * 900
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {
            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
            "serverInfo": {"name": "talker", "version": "1"}}}), flush=True)
    elif m.get("method") == "tools/call":
        tok = m["params"]["_meta"]["progressToken"]
        for i in range(m["params"]["arguments"]["k"]):
            print(json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                "progressToken": tok, "progress": i, "message": pad}}))
        sys.stdout.flush()
"""


class FlowControl(HttpCase):
    def test_a_max_sessions_that_leaves_few_connections_is_said(self):
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))
        srv = self.http(opts=["--max-sessions", "100"], preexec_fn=low_limit)
        self.assertIn("a descriptor limit of 300 leaves room for 16 HTTP connections beside "
                      "--max-sessions 100", srv.stderr())
        srv.p.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0)

    def test_idle_connections_leave_the_descriptors_a_server_needs(self):
        """Under a low descriptor limit, connections beyond what the sessions' servers leave
        get 503 (those that linger counted too): a flood of idle ones cannot take the
        descriptors a new server needs, with the default --max-sessions or a small one."""
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))
        log = os.path.join(self.tmp.name, "t.log")
        for opts in ([], ["--max-sessions", "5", "--log", log]):
            with self.subTest(opts=opts):
                srv = self.http(opts=opts, preexec_fn=low_limit)
                keep = self.conn()
                keep.connect()  # accepted before the flood
                flood = []
                try:
                    for _ in range(280):
                        flood.append(socket.create_connection(("127.0.0.1", self.port),
                                                              timeout=10 * SLOW))
                    # The last is refused with a 503 (it waited in the backlog, or was
                    # closed for want of a descriptor, when connections could take them).
                    self.assertEqual(flood[-1].recv(12), b"HTTP/1.1 503")
                    keep.request("POST", "/mcp", body=json.dumps(init_msg(0)),
                                 headers={"Content-Type": "application/json",
                                          "Accept": ACCEPT_BOTH})
                    r = keep.getresponse()
                    self.assertEqual(r.status, 200, r.read()[:300])
                    self.assertTrue(r.getheader("Mcp-Session-Id"))
                    r.read()
                finally:
                    keep.close()
                    for f in flood:
                        f.close()
                self.assertNotIn("descriptor limit", srv.stderr())
                srv.p.send_signal(signal.SIGTERM)
                self.assertEqual(srv.wait(), 0)

    def test_posts_wait_while_the_server_does_not_read(self):
        # The server stops reading after 3 lines; its queue is 1 KiB; stall ends it.
        self.http("--stop-reading-after", "3",
                  opts=["--max-queue", "1024", "--stall-timeout", "2"])
        sid = self.session()  # initialize, initialized: 2 lines
        big = {"jsonrpc": "2.0", "method": "notifications/message",
               "params": {"data": "x" * 60000}}
        # Fill the pipe and the queue; then a request waits for its answer.
        t0 = time.monotonic()
        held = None
        for i in range(200):
            c = self.conn(1)
            c.request("POST", "/mcp", body=json.dumps(big), headers={
                "Content-Type": "application/json", "Accept": ACCEPT_BOTH,
                "Mcp-Session-Id": sid})
            try:
                r = c.getresponse()
                self.assertEqual(r.status, 202)
                r.read()
                c.close()
            except socket.timeout:
                held = c
                break
        self.assertIsNotNone(held, "a POST must be held once the server's input is full")
        # It is answered (with the end of the stalled run) after --stall-timeout.
        held.sock.settimeout(10 * SLOW)
        r = held.getresponse()
        self.assertIn(r.status, (202, 404))
        r.read()
        held.close()
        self.assertGreater(time.monotonic() - t0, 1.5)

    def test_running_request_streams_share_one_max_queue_of_replay(self):
        """What running request streams wrote and keep for a resume is bounded by
        --max-queue for the session's running streams together, the oldest streams'
        oldest events first out, not by --max-queue for each: a client that opened
        stream after stream of calls that write much and never end, reading each, made
        mcpmux hold --max-queue for every one (40 such streams held 700 MB with the
        default 16 MiB).  Here six streams of about 100 KB each, with --max-queue 64K:
        the first stream keeps none of its events, the last about 64 of its 100; resumes
        from before what is kept are said."""
        self.http(opts=["--max-queue", "64K"], command=[sys.executable, "-c", TALKER])
        sid = self.session()
        nums = []
        for i in range(6):
            s = self.open("POST", tool(i + 1, "t", meta={"progressToken": i}, k=100),
                          {"Mcp-Session-Id": sid})
            self.assertEqual(s.status, 200)
            prime = s.event()
            self.assertEqual((prime["data"], prime["id"].split(":")[1]), ("", "0"))
            nums.append(prime["id"].split(":")[0])
            for j in range(100):
                self.assertEqual(s.message()[0]["params"]["progress"], j)
            s.close()

        def resume(num):
            g = self.get_stream(sid, last=num + ":0")
            self.addCleanup(g.close)
            self.assertEqual(g.status, 200)
            m = wait_until(lambda: re.search(r"stream %s resumed after event 0, but events up "
                                             r"to (\d+) are no longer kept" % num,
                                             self.srv.stderr()), 5, "the warning",
                           lambda: self.srv.stderr())
            return int(m.group(1))
        self.assertEqual(resume(nums[0]), 100)
        gone = resume(nums[-1])
        self.assertGreater(gone, 20)
        self.assertLess(gone, 50)

    def test_a_connected_streams_events_are_kept_whatever_other_streams_write(self):
        """The bound above is on streams that their clients let go: one still connected keeps
        its own window whole, since what its socket took may wait unread in the kernel's
        buffers.  Here stream A's 30 events go into its socket unread, stream B then writes
        100 events that its client reads, with --max-queue 64K; A's connection breaks, and a
        resume of A from its first event gets all 30, with no word of events lost."""
        self.http(opts=["--max-queue", "64K"], command=[sys.executable, "-c", TALKER])
        sid = self.session()
        a = self.open("POST", tool(1, "t", meta={"progressToken": "a"}, k=30),
                      {"Mcp-Session-Id": sid})
        self.assertEqual(a.status, 200)
        num = a.event()["id"].split(":")[0]
        b = self.open("POST", tool(2, "t", meta={"progressToken": "b"}, k=100),
                      {"Mcp-Session-Id": sid})
        b.event()
        for j in range(100):
            self.assertEqual(b.message()[0]["params"]["progress"], j)
        b.close()
        a.close()  # its client read none of the 30
        g = self.get_stream(sid, last=num + ":0")
        self.addCleanup(g.close)
        self.assertEqual(g.status, 200)
        got = []
        while len(got) < 30:
            m = g.message()
            got.append(m[0]["params"]["progress"])
        self.assertEqual(got, list(range(30)))
        self.assertNotIn("no longer kept", self.srv.stderr())

    def test_a_json_only_client_is_not_held_by_messages_it_cannot_take(self):
        """A client that accepts only JSON and opens no GET stream, and a server that sends
        notifications: they have no stream to go to, and at --max-queue they pause the
        server's output, with the client's next answer behind them.  The oldest go (said,
        and logged), and the answer comes."""
        log = os.path.join(self.tmp.name, "log")
        self.http("--flood=5000", opts=["--max-queue", "256K", "--log", log,
                                        "--log-bodies", "none"])
        r = self.post(init_msg(1), headers={"Accept": "application/json"})
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        def logged():
            with open(log) as f:
                return f.read().count('"notifications/message"')

        seen = {"n": -1, "since": 0.0}

        def held_back():
            # About 900 of them (290 bytes each) fill the 256 KiB; then mcpmux reads the
            # server no more, which stays blocked on its stdout and reads no request
            # until the queue moves: its write blocked, and no notification logged for
            # 0.2 s (one read from mcpmux would log a pipe's worth).
            n, now = logged(), time.monotonic()
            if n != seen["n"]:
                seen.update(n=n, since=now)
                return False
            servers = [p for p in all_pids() if ppid_of(p) == self.srv.pid]
            for pid in servers:
                try:
                    with open("/proc/%d/wchan" % pid) as f:
                        if not f.read().endswith("pipe_write"):
                            seen["since"] = now
                            return False
                except OSError:
                    return False
            return len(servers) == 1 and n >= 800 and now - seen["since"] >= 0.2 * SLOW
        wait_until(held_back, 10, "the flood to fill the queue and hold the server back",
                   lambda: proc_report(self.srv.pid))
        r = self.post(tool(2, "echo", text="through"), sid,
                      headers={"Accept": "application/json"}, seconds=20)
        self.assertEqual(r.json()["result"]["content"][0]["text"], "through")
        self.assertRegex(self.srv.stderr(), r"message\(s\) of the server \(\d+ bytes\) dropped: "
                                            r"they had no stream to go to")
        # The log is written at the end of the loop's turn, and the answer may have gone
        # out in the turn of the drop.
        wait_until(lambda: '"event":"dropped"' in read_text(log), 5, "the dropped event")

    def test_a_get_stream_between_connections_loses_nothing(self):
        """The same JSON-only client with a GET stream that is between two connections (it
        closed, and comes back after the retry time): what waits for it past --max-queue
        holds the server back, and nothing is dropped."""
        self.http(opts=["--max-queue", "32K"])
        r = self.post(init_msg(1), headers={"Accept": "application/json"})
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        g = self.get_stream(sid)
        prime = g.event()
        g.close()
        res = {}

        def call():
            res["r"] = self.post(tool(2, "progress", meta={"progressToken": "p"}, steps=1000),
                                 sid, headers={"Accept": "application/json"}, seconds=20)
        t = threading.Thread(target=call)
        t.start()
        time.sleep(1.0)  # the client's retry time (the priming event's is 1 s)
        g = self.get_stream(sid, last=prime["id"])
        n = 0
        while n < 1000:
            m, _ = g.message(10)
            n += m.get("method") == "notifications/progress"
        g.close()
        t.join(30)
        self.assertEqual(res["r"].json()["id"], 2)
        self.assertNotIn("dropped", self.srv.stderr())

    def test_a_json_only_client_whose_get_stream_is_forgotten_gets_its_answer(self):
        """The same client, whose GET stream never comes back: once it is forgotten
        (--idle-timeout after it went), what waited for it has no stream to go to, and the
        oldest go, as if it had never been opened; the answer comes."""
        self.http(opts=["--max-queue", "32K", "--idle-timeout", "2"])
        r = self.post(init_msg(1), headers={"Accept": "application/json"})
        sid = r.headers["mcp-session-id"]
        self.assertEqual(self.post(INITIALIZED, sid).status, 202)
        g = self.get_stream(sid)
        self.assertEqual(g.event()["data"], "")
        g.close()
        r = self.post(tool(2, "progress", meta={"progressToken": "p"}, steps=1000), sid,
                      headers={"Accept": "application/json"}, seconds=20)
        self.assertEqual(r.json()["id"], 2)
        self.assertIn("result", r.json())
        self.assertRegex(self.srv.stderr(), r"message\(s\) of the server \(\d+ bytes\) dropped: "
                                            r"they had no stream to go to")

    def test_a_client_that_reads_no_answers_holds_little_memory(self):
        """Requests sent one after another with no answer read: no more are parsed once
        64 KiB of answers wait, where --max-queue (16 MiB) of them did, on every
        connection of anyone who can connect (404s need no token)."""
        self.http(opts=["--metrics"])
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        data = b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n" * 4096
        end = time.monotonic() + 3 * SLOW
        try:
            while time.monotonic() < end:
                try:
                    s.send(data)
                except BlockingIOError:
                    time.sleep(0.05)
            queued = self.metrics()["mcpmux_http_queued_bytes"]
        finally:
            s.close()
        self.assertLess(queued, 256 << 10)

    def stalled_get_lasts(self, stall):
        """Under --stall-timeout STALL, how long a GET client that takes none of the bytes
        waiting for it keeps its connection (s)."""
        self.http("--flood", "30000", opts=["--stall-timeout", str(stall), "--metrics"])
        sid = self.session()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5 * SLOW)
        s.connect(("127.0.0.1", self.port))
        try:
            s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                       "Mcp-Session-Id: %s\r\n\r\n" % sid).encode())
            s.recv(100)
            wait_until(lambda: self.metrics()["mcpmux_http_queued_bytes"] > 0, 10,
                       "bytes to wait for the client")
            t0 = time.monotonic()
            wait_until(lambda: self.metrics()["mcpmux_http_timeouts_total"] > 0,
                       (stall or 30) + 10, "the client's connection to be closed")
            took = time.monotonic() - t0
            self.assertEqual(self.metrics()["mcpmux_http_queued_bytes"], 0)
        finally:
            s.close()
        return took

    def test_a_client_that_takes_nothing_loses_its_connection_after_stall_timeout(self):
        took = self.stalled_get_lasts(2)
        self.assertGreater(took, 1)
        self.assertLess(took, 5 * SLOW)

    def test_a_client_that_takes_nothing_loses_its_connection_after_30_s_without_stall_timeout(
            self):
        """--stall-timeout 0 lets servers take their time, not HTTP clients: a client
        that takes nothing would hold its bytes, its session's paused server and a
        shutdown for ever."""
        took = self.stalled_get_lasts(0)
        self.assertGreater(took, 25)
        self.assertLess(took, 35 * SLOW)

    def test_a_client_that_does_not_read_pauses_the_server(self):
        self.http("--flood", "0", opts=["--max-queue", "65536", "--metrics"])
        sid = self.session()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                   "Mcp-Session-Id: %s\r\n\r\n" % sid).encode())
        s.recv(100)

        def out_bytes():
            return self.metrics()['mcpmux_bytes_total{dir="out"}']

        def paused():
            # the kernel grows a loopback socket's buffers for a while: once they are full,
            # mcpmux's queue reaches its bound and the server is read no more
            a = out_bytes()
            time.sleep(0.5 * SLOW)  # a window to count in, not a wait for an event
            return out_bytes() - a < 200000
        wait_until(paused, 20, "the server to be paused, not read on")
        m = self.metrics()
        self.assertLess(m["mcpmux_http_queued_bytes"], 3 * 65536 + 100000)
        s.close()


class Metrics(HttpCase):
    def test_metrics_count_both_doors(self):
        path = os.path.join(self.tmp.name, "mux.sock")
        self.http(opts=["--listen", path, "--metrics"])
        m0 = self.metrics()
        self.assertEqual(m0["mcpmux_sessions"], 0)
        sid = self.session()
        self.call(sid, tool(1, "echo", text="x"))
        self.assertEqual(self.delete(sid).status, 200)
        # an envelope session through the socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10 * SLOW)
        f = s.makefile("rwb", buffering=0)
        f.write(json.dumps({"session": "env-1", "message": init_msg(1)}).encode() + b"\n")
        while "message" not in json.loads(f.readline()):
            pass
        m = self.metrics()
        self.assertEqual(m["mcpmux_sessions"], 1)
        self.assertEqual(m["mcpmux_http_sessions"], 0)
        self.assertEqual(m["mcpmux_sessions_started_total"], 2)
        self.assertEqual(m["mcpmux_http_sessions_started_total"], 1)
        self.assertEqual(m['mcpmux_sessions_ended_total{escalation="eof"}'], 1)
        self.assertEqual(m['mcpmux_backend_exits_total{how="zero"}'], 1)
        self.assertGreaterEqual(m['mcpmux_messages_total{dir="in"}'], 4)
        self.assertGreaterEqual(m['mcpmux_messages_total{dir="out"}'], 3)
        self.assertGreater(m['mcpmux_bytes_total{dir="out"}'], 100)
        self.assertEqual(m["mcpmux_request_duration_seconds_count"], 3)
        self.assertEqual(m['mcpmux_request_duration_seconds_bucket{le="+Inf"}'], 3)
        buckets = [v for k, v in m.items() if k.startswith("mcpmux_request_duration_seconds_"
                                                            "bucket")]
        self.assertEqual(buckets, sorted(buckets), "cumulative")
        self.assertGreater(m["mcpmux_http_requests_total"], 4)
        f.close()
        s.close()
        wait_until(lambda: self.metrics()["mcpmux_sessions"] == 0, 5, "the envelope session")
        r = self.request("GET", path="/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    def test_the_answers_to_a_batch_count_in_the_latency_histogram(self):
        """A client's batch of two requests (through the envelope door), answered by its
        server in one batch: each answer is a request answered by its server, counted in
        mcpmux_request_duration_seconds as an answer alone is."""
        path = os.path.join(self.tmp.name, "mux.sock")
        self.http(opts=["--listen", path, "--metrics"])
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10 * SLOW)
        f = s.makefile("rwb", buffering=0)
        f.write(json.dumps({"session": "env-1", "message": init_msg(1)}).encode() + b"\n")
        while "message" not in json.loads(f.readline()):
            pass
        self.assertEqual(self.metrics()["mcpmux_request_duration_seconds_count"], 1)
        f.write(json.dumps({"session": "env-1", "message": [
            {"jsonrpc": "2.0", "id": 2, "method": "ping"},
            {"jsonrpc": "2.0", "id": 3, "method": "ping"}]}).encode() + b"\n")
        while True:
            m = json.loads(f.readline())
            if "message" in m:
                break
        self.assertEqual(sorted(a["id"] for a in m["message"]), [2, 3], m)
        got = self.metrics()
        self.assertEqual(got["mcpmux_request_duration_seconds_count"], 3)
        self.assertEqual(got['mcpmux_request_duration_seconds_bucket{le="+Inf"}'], 3)
        f.close()
        s.close()

    def test_a_resumed_server_that_cannot_be_executed_counts_as_noexec(self):
        """A server that could not be executed is counted as such, whether its session
        ends then or is suspended again (a failed resume)."""
        copy = os.path.join(self.tmp.name, "fixture-copy")
        shutil.copy(FIXTURE, copy)
        os.chmod(copy, 0o755)
        self.http(opts=["--metrics", "--idle-suspend", "0.4"], command=[copy])
        sid = self.session()

        def exits(how):
            return self.metrics().get('mcpmux_backend_exits_total{how="%s"}' % how, 0)
        wait_until(lambda: exits("zero") == 1, 10, "the idle server to be suspended")
        os.chmod(copy, 0o644)
        msgs = self.call(sid, tool(1, "echo", text="x"))
        self.assertEqual(msgs[-1]["error"]["message"], "the server could not be restarted: "
                         "cannot run '%s': Permission denied (check that it is an executable "
                         "file)" % copy)
        wait_until(lambda: exits("noexec") + exits("nonzero") == 1, 10,
                   "the failed server to be counted")
        self.assertEqual((exits("noexec"), exits("nonzero")), (1, 0))


# What systemd does for a socket unit: the socket on fd 3, LISTEN_FDS, and LISTEN_PID set
# to the pid of the process that will read them (exec keeps the pid).
# argv: FD[,FD...] NAMES|- COMMAND...: the fds moved to 3, 4, ... (out of the way first).
LAUNCHER = ("import os, sys\n"
            "fds = [int(f) for f in sys.argv[1].split(',')]\n"
            "high = [100 + i for i in range(len(fds))]\n"
            "for f, h in zip(fds, high):\n"
            "    os.dup2(f, h)\n"
            "    os.close(f)\n"
            "for i, h in enumerate(high):\n"
            "    os.dup2(h, 3 + i)\n"
            "    os.close(h)\n"
            "    os.set_inheritable(3 + i, True)\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.environ['LISTEN_FDS'] = str(len(fds))\n"
            "if sys.argv[2] != '-':\n"
            "    os.environ['LISTEN_FDNAMES'] = sys.argv[2]\n"
            "os.execvp(sys.argv[3], sys.argv[3:])\n")


class SocketActivation(HttpCase):
    def activate(self, socks, opts, names="-"):
        """mcpmux serve with socks on fd 3 on, through the launcher; a harness Proc."""
        if not isinstance(socks, (list, tuple)):
            socks = [socks]
        fds = [s.fileno() for s in socks]
        cmd = [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), names, MCPMUX,
               "serve"] + FAST
        return self.start(cmd + list(opts) + ["--", FIXTURE], pass_fds=fds)

    def test_http_on_an_inherited_socket(self):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        ino = os.fstat(ls.fileno()).st_ino
        p = self.activate(ls, ["--http", "systemd", "--metrics"])
        ls.close()  # only mcpmux holds it now
        sid = self.session()
        self.assertEqual(self.call(sid, tool(1, "echo", text="hi"))[0]["result"]["content"][0]
                         ["text"], "hi")
        # The server does not inherit the listening socket.
        pid = self.call(sid, tool(2, "env"))[0]["result"]["structuredContent"]["pid"]
        links = [os.readlink("/proc/%d/fd/%s" % (pid, f)) for f in os.listdir("/proc/%d/fd"
                                                                            % pid)]
        self.assertNotIn("socket:[%d]" % ino, links)
        self.assertEqual(self.delete(sid).status, 200)
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0, p.stderr())
        self.assert_no_leftovers(0)

    def test_envelopes_on_an_inherited_unix_socket(self):
        path = os.path.join(self.tmp.name, "act.sock")
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(path)
        ls.listen(16)
        p = self.activate(ls, ["--listen", "systemd"])
        ls.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(10 * SLOW)
        f = s.makefile("rwb", buffering=0)
        f.write(json.dumps({"session": "a", "message": tool(1, "echo", text="e")}).encode()
                + b"\n")
        while True:
            m = json.loads(f.readline())
            if "message" in m:
                break
        self.assertEqual(m["message"]["result"]["content"][0]["text"], "e")
        f.close()
        s.close()
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0, p.stderr())
        self.assertTrue(os.path.exists(path), "the unit's socket file stays")

    def test_both_doors_named_as_in_the_contrib_units(self):
        hs = socket.socket()
        hs.bind(("127.0.0.1", 0))
        hs.listen(16)
        self.port = hs.getsockname()[1]
        path = os.path.join(self.tmp.name, "env.sock")
        es = socket.socket(socket.AF_UNIX)
        es.bind(path)
        es.listen(16)
        # systemd passes them in any order: the names say which door each is.
        p = self.activate([es, hs], ["--http", "systemd", "--listen", "systemd"],
                          names="listen:http")
        hs.close()
        es.close()
        sid = self.session()
        c = self.start([MCPMUX, "ctl", "--json", path, "list"])
        out = c.read_to_eof()
        self.assertEqual(c.wait(), 0, c.stderr())
        self.assertIn(sid, [s["session"] for s in json.loads(out)["sessions"]])
        p.p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0, p.stderr())
        # Unnamed sockets with both doors asked for: refused, with what to do.
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        a.listen(1)
        b = socket.socket()
        b.bind(("127.0.0.1", 0))
        b.listen(1)
        p = self.activate([a, b], ["--http", "systemd", "--listen", "systemd"])
        a.close()
        b.close()
        self.assertEqual(p.wait(10), 1)
        self.assertIn("FileDescriptorName", p.stderr())

    def test_systemd_without_sockets_is_an_error(self):
        p = self.serve(opts=["--http", "systemd"])
        self.assertEqual(p.wait(), 1)
        self.assertIn("LISTEN_FDS", p.stderr())


if __name__ == "__main__":
    main()
