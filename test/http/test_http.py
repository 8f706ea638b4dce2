"""
The HTTP layer (src/http.c) over raw sockets: http_testd serves canned handlers, and
each test speaks bytes to it and checks the bytes that come back.

Waits are bounded: a response is read with a deadline, and where the server offers no
event to wait for (a connection it closed, a counter it keeps), its /stats are polled
up to a deadline.  Every server a test starts is stopped (SIGTERM, then SIGKILL) and its
exit status checked: 0 means it freed everything it held (ASan's leak check included).

Binaries come from the environment: HTTP_TESTD.  MCPMUX_TEST_TIMEOUT_MULTIPLIER
stretches every deadline.
"""

import json
import os
import random
import select
import signal
import socket
import subprocess
import tempfile
import time
import unittest

TESTD = os.environ.get("HTTP_TESTD", "http_testd")
SLOW = float(os.environ.get("MCPMUX_TEST_TIMEOUT_MULTIPLIER", "1"))
SANITIZED = bool(os.environ.get("MCPMUX_TEST_SANITIZED"))


def deadline(seconds):
    return time.monotonic() + seconds * SLOW


def left(dl):
    return max(dl - time.monotonic(), 0)


class Server:
    """One http_testd, started with its readiness handshake ("ready PORT")."""

    def __init__(self, *args, listen=("127.0.0.1:0",), pass_fd=None):
        cmd = [TESTD]
        for spec in listen:
            cmd += ["--listen", spec]
        cmd += [str(a) for a in args]
        kw = {}
        if pass_fd is not None:
            def activate():
                # dup2() onto itself (the socket already fd 3) would leave it close-on-exec.
                if pass_fd == 3:
                    os.set_inheritable(3, True)
                else:
                    os.dup2(pass_fd, 3)
                os.environ["LISTEN_PID"] = str(os.getpid())
                os.environ["LISTEN_FDS"] = "1"
            # close_fds would close fd 3 after preexec_fn; every other descriptor of
            # ours is close-on-exec anyway.
            kw = {"preexec_fn": activate, "close_fds": False}
            cmd.append("--listen-fds")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, **kw)
        dl = deadline(10)
        r, _, _ = select.select([self.p.stdout], [], [], left(dl))
        line = self.p.stdout.readline().decode() if r else ""
        if not line.startswith("ready "):
            self.p.kill()
            self.p.wait()
            self.p.stdout.close()
            raise AssertionError("http_testd did not start: %r" % line)
        self.port = int(line.split()[1])

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout * SLOW)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stats(self):
        with self.connect() as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            st, _, body = read_response(s)
        if st == 503:
            return None  # over the connection limit: not yet
        assert st == 200, st
        return json.loads(body)

    def wait_stats(self, pred, seconds=10, what="a condition"):
        """Poll /stats until pred(stats) holds, up to a deadline."""
        dl = deadline(seconds)
        while True:
            st = self.stats()
            if st is not None and pred(st):
                return st
            if time.monotonic() > dl:
                raise AssertionError("timed out waiting for %s: %r" % (what, st))
            time.sleep(0.01)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise AssertionError("http_testd ignored SIGTERM")
        self.p.stdout.close()
        return self.p.returncode


class Reader:
    """Bytes from a socket, read with a deadline."""

    def __init__(self, s, seconds=10):
        self.s = s
        self.buf = b""
        self.dl = deadline(seconds)
        self.eof = False

    def fill(self):
        if self.eof:
            raise EOFError("connection closed")
        r, _, _ = select.select([self.s], [], [], left(self.dl))
        if not r:
            raise TimeoutError("no response in time")
        try:
            chunk = self.s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self):
        try:
            while True:
                self.fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out


def read_head(rd):
    status = rd.line().split(b" ", 2)
    headers = {}
    while True:
        line = rd.line()
        if not line:
            break
        k, v = line.split(b":", 1)
        headers[k.decode().lower()] = v.strip().decode()
    return int(status[1]), headers


def read_body(rd, headers, head=False, status=200):
    if head or status in (204, 304) or 100 <= status < 200:
        return b""
    if "content-length" in headers:
        return rd.exactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(rd.line().split(b";")[0], 16)
            if size == 0:
                assert rd.line() == b"", "trailer"
                return body
            body += rd.exactly(size)
            assert rd.exactly(2) == b"\r\n", "chunk end"
    return rd.rest()


def read_response(s, rd=None, head=False):
    rd = rd or Reader(s)
    status, headers = read_head(rd)
    return status, headers, read_body(rd, headers, head, status)


def closed(s, seconds=10):
    """Whether the peer closes s (EOF or reset) within the deadline, reading what comes."""
    dl = deadline(seconds)
    while True:
        r, _, _ = select.select([s], [], [], left(dl))
        if not r:
            return False
        try:
            if not s.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True


def get(path, extra=b"", version=b"1.1"):
    return b"GET " + path + b" HTTP/" + version + b"\r\nHost: t\r\n" + extra + b"\r\n"


def wait_taken(s, seconds=10):
    """Wait until the server has read every byte sent on s (its socket's receive queue,
    in /proc/net/tcp, is empty): what is sent next comes in a read of its own."""
    def hexaddr(addr):
        return "%08X:%04X" % (int.from_bytes(socket.inet_aton(addr[0]), "little"), addr[1])
    local, remote = hexaddr(s.getpeername()), hexaddr(s.getsockname())
    dl = deadline(seconds)
    while True:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                col = line.split()
                if col[1] == local and col[2] == remote and col[4].endswith(":00000000"):
                    return
        if time.monotonic() > dl:
            raise AssertionError("the server did not read what was sent")
        time.sleep(0.01)


def post(path, body, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


class Base(unittest.TestCase):
    args = ()

    def setUp(self):
        self.srv = Server(*self.args)

    def tearDown(self):
        self.assertEqual(self.srv.stop(), 0, "http_testd exit status")

    def roundtrip(self, raw, head=False):
        with self.srv.connect() as s:
            s.sendall(raw)
            return read_response(s, head=head)


class KeepAlive(Base):
    def test_requests_one_after_another_on_one_connection(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            for i in range(5):
                body = b"message %d" % i
                s.sendall(post(b"/echo", body))
                status, h, got = read_response(s, rd)
                self.assertEqual((status, got), (200, body))
                self.assertNotIn("connection", h)
            s.sendall(get(b"/info?x=1"))
            status, _, got = read_response(s, rd)
            self.assertEqual(got, b"GET /info x=1 11 1 0 1\n")
        self.assertEqual(self.srv.stats()["accepted"], 2)

    def test_connection_close_from_the_client(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/info", b"Connection: close\r\n"))
            status, h, _ = read_response(s)
            self.assertEqual((status, h.get("connection")), (200, "close"))
            self.assertTrue(closed(s))

    def test_connection_close_from_the_handler(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/close"))
            status, h, body = read_response(s)
            self.assertEqual((status, h.get("connection"), body), (200, "close", b"bye\n"))
            self.assertTrue(closed(s))

    def test_http10_closes_unless_asked_to_keep_alive(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/info", version=b"1.0"))
            status, h, body = read_response(s)
            self.assertEqual(body, b"GET /info - 10 1 0 1\n")
            self.assertEqual(h.get("connection"), "close")
            self.assertTrue(closed(s))
        with self.srv.connect() as s:
            rd = Reader(s)
            for _ in range(2):
                s.sendall(get(b"/info", b"Connection: keep-alive\r\n", version=b"1.0"))
                status, h, _ = read_response(s, rd)
                self.assertEqual((status, h.get("connection")), (200, "keep-alive"))

    def test_head_has_the_length_and_no_body(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(b"HEAD /info HTTP/1.1\r\nHost: t\r\n\r\n" + get(b"/info"))
            status, h, body = read_response(s, rd, head=True)
            self.assertEqual((status, body), (200, b""))
            self.assertEqual(h["content-length"], str(len(b"HEAD /info - 11 1 0 1\n")))
            # The next response follows at once: no body bytes were sent for HEAD.
            status, _, body = read_response(s, rd)
            self.assertEqual(body, b"GET /info - 11 1 0 1\n")

    def test_headers_are_found_in_any_case(self):
        status, _, body = self.roundtrip(get(b"/header?x-token", b"X-Token:  a b  \r\n"))
        self.assertEqual((status, body), (200, b"a b\n"))
        status, _, _ = self.roundtrip(get(b"/header?x-absent"))
        self.assertEqual(status, 404)

    def test_expect_100_continue(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            self.assertEqual(read_head(rd), (100, {}))
            s.sendall(b"hello")
            self.assertEqual(read_response(s, rd)[2], b"hello")

    def test_chunked_request_body(self):
        raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n")
        self.assertEqual(self.roundtrip(raw)[2], b"hello!")

    def test_date_header(self):
        _, h, _ = self.roundtrip(get(b"/info"))
        self.assertRegex(h["date"], r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                                    r"\d\d:\d\d:\d\d GMT$")


class Pipelining(Base):
    def test_answers_in_request_order_even_when_the_first_is_slow(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(get(b"/slow?200") + post(b"/echo", b"second") + get(b"/info?third")
                      + get(b"/slow?1") + post(b"/echo", b"fifth"))
            got = [read_response(s, rd)[2] for _ in range(5)]
            self.assertEqual(got, [b"slow\n", b"second", b"GET /info third 11 1 0 1\n",
                                   b"slow\n", b"fifth"])

    def test_many_pipelined_requests_in_one_write(self):
        n = 300
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(b"".join(post(b"/echo", b"%d" % i) for i in range(n)))
            got = [read_response(s, rd)[2] for _ in range(n)]
            self.assertEqual(got, [b"%d" % i for i in range(n)])

    def test_a_request_split_in_single_bytes(self):
        raw = post(b"/echo", b"byte by byte") + get(b"/info")
        with self.srv.connect() as s:
            rd = Reader(s)
            for i in range(len(raw)):
                s.send(raw[i:i + 1])
            self.assertEqual(read_response(s, rd)[2], b"byte by byte")
            self.assertEqual(read_response(s, rd)[2], b"GET /info - 11 1 0 1\n")


class Malformed(Base):
    cases = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo st: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        # RFC 9112, 6.1: a transfer coding other than chunked is not understood (6.3: one
        # that does not end in chunked, above, is a 400); chunked twice is a 400 (7)
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n", 417),
        # RFC 9112, 3.2: HTTP/1.1 needs one Host, and no request may have two
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: t\r\nhost: t\r\n\r\n", 400),
        # RFC 9112, 5.2: a field value folded onto a line of its own (obs-fold) is refused
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n\tb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX:\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: t\nX: a\n  b\n\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
         b"3\r\nabc\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n 3\r\n\r\nabc", 400),
    ]

    def test_http_1_0_needs_no_host(self):
        with self.srv.connect() as s:
            s.sendall(b"GET /info HTTP/1.0\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)

    def test_each_gets_its_status_and_the_connection_closes(self):
        for raw, want in self.cases:
            with self.subTest(raw=raw), self.srv.connect() as s:
                s.sendall(raw)
                status, h, _ = read_response(s)
                self.assertEqual(status, want)
                self.assertEqual(h.get("connection"), "close")
                self.assertTrue(closed(s))
        st = self.srv.stats()
        self.assertEqual((st["requests"] - 1, st["errors"]), (0, len(self.cases)))

    def test_a_fold_is_refused_however_the_head_is_cut(self):
        """An obs-fold is a 400 wherever the reads cut the head: between the line end and
        the fold's white space, inside that white space, after it; of a value and of an
        empty one.  A value cut by the reads, white space and all, is one value."""
        head = b"GET /info HTTP/1.1\r\nHost: t\r\n"
        folds = [(head + b"X: a", b"\r\n b\r\n\r\n"), (head + b"X: a\r", b"\n b\r\n\r\n"),
                 (head + b"X: a\r\n", b" b\r\n\r\n"), (head + b"X: a\n", b"\t b\n\n"),
                 (head + b"X: a\r\n ", b" b\r\n\r\n"), (head + b"X: a\r\n\t", b"b\r\n\r\n"),
                 (head + b"X:\r\n", b" b\r\n\r\n"), (head + b"X:\r\n  ", b"b\r\n\r\n"),
                 (head + b"X: \r\n", b" b\r\n\r\n")]
        for first, rest in folds:
            with self.subTest(first=first, rest=rest), self.srv.connect() as s:
                s.sendall(first)
                wait_taken(s)
                s.sendall(rest)
                status, h, _ = read_response(s)
                self.assertEqual((status, h.get("connection")), (400, "close"))
                self.assertTrue(closed(s))
        for first in (b"X: a", b"X: a ", b"X: a \t", b"X: ", b"X:"):
            with self.subTest(first=first), self.srv.connect() as s:
                s.sendall(head + first)
                wait_taken(s)
                s.sendall(b" b\r\n\r\n")
                self.assertEqual(read_response(s)[0], 200)

    def test_an_empty_field_value_is_no_fold(self):
        """An empty value ("X:", "X:   ", curl -H 'X;'), RFC 9110 allows it, before another
        field or the head's end, whole or cut by the reads after its line end: 200 (the
        parser hands it over as an empty piece at the next line's start)."""
        head = b"GET /info HTTP/1.1\r\nHost: t\r\n"
        for first, rest in ((head + b"X:\r\n", b"Y: z\r\n\r\n"), (head + b"X:\r\n", b"\r\n"),
                            (head + b"X:   \r\n", b"Y: z\r\n\r\n"),
                            (head + b"X:\r", b"\nY: z\r\n\r\n"),
                            (b"GET /info HTTP/1.1\nHost: t\nX:\n", b"Y: z\n\n"),
                            (b"GET /info HTTP/1.0\r\nHost:\r\n", b"\r\n")):
            with self.subTest(first=first, rest=rest), self.srv.connect() as s:
                s.sendall(first + rest)
                self.assertEqual(read_response(s)[0], 200)
            with self.subTest(first=first, rest=rest, cut=True), self.srv.connect() as s:
                s.sendall(first)
                wait_taken(s)
                s.sendall(rest)
                self.assertEqual(read_response(s)[0], 200)

    def test_an_error_after_good_requests_answers_those_first(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(post(b"/echo", b"good") + b"BAD REQUEST\r\n\r\n")
            self.assertEqual(read_response(s, rd)[2], b"good")
            self.assertEqual(read_response(s, rd)[0], 400)
            self.assertTrue(closed(s))


class Limits(Base):
    args = ("--max-body", 1000, "--max-head", 2048, "--max-headers", 20)

    def test_a_body_at_the_limit_passes(self):
        self.assertEqual(self.roundtrip(post(b"/echo", b"x" * 1000))[2], b"x" * 1000)

    def test_content_length_over_the_limit_is_refused_before_the_body(self):
        with self.srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
            status, h, _ = read_response(s)
            self.assertEqual((status, h.get("connection")), (413, "close"))

    def test_a_huge_body_is_not_buffered(self):
        rss0 = self.srv.stats()["rss_kib"]
        with self.srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
            rd = Reader(s)
            self.assertEqual(read_head(rd)[0], 413)
            sent = send_until_refused(s, 64 << 20)
        self.assertLess(sent, 64 << 20, "the server kept reading")
        self.assertLess(self.srv.stats()["rss_kib"] - rss0, 8 << 10)

    def test_a_chunked_body_over_the_limit_is_cut_short(self):
        rss0 = self.srv.stats()["rss_kib"]
        with self.srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"
            sent = send_until_refused(s, 64 << 20, chunk)
            self.assertLess(sent, 64 << 20, "the server kept reading")
            status, h, _ = read_response(s)
            self.assertEqual(status, 413)
        self.assertLess(self.srv.stats()["rss_kib"] - rss0, 8 << 10)

    def test_head_over_the_limit(self):
        status, _, _ = self.roundtrip(get(b"/info", b"X-Big: " + b"a" * 3000 + b"\r\n"))
        self.assertEqual(status, 431)

    def test_too_many_fields(self):
        extra = b"".join(b"X-%d: 1\r\n" % i for i in range(25))
        self.assertEqual(self.roundtrip(get(b"/info", extra))[0], 431)
        extra = b"".join(b"X-%d: 1\r\n" % i for i in range(19))
        self.assertEqual(self.roundtrip(get(b"/info", extra))[0], 200)

    def test_target_over_the_limit(self):
        self.assertEqual(self.roundtrip(get(b"/info?" + b"q" * 3000))[0], 414)


def send_until_refused(s, limit, chunk=b"z" * 65536):
    """Send up to limit bytes; returns how many went before the peer refused them."""
    sent = 0
    s.settimeout(5 * SLOW)
    try:
        while sent < limit:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    s.settimeout(10 * SLOW)
    return sent


class Timeouts(Base):
    args = ("--head-timeout", 1, "--body-timeout", 1, "--idle-timeout", 1)

    def test_slowloris_head_gets_408_however_it_trickles(self):
        t0 = time.monotonic()
        with self.srv.connect() as s:
            s.sendall(b"GET /info HTTP/1.1\r\n")
            # One byte of a header every 100 ms: never idle, never complete.
            got = None
            for _ in range(100):
                r, _, _ = select.select([s], [], [], 0.1)
                if r:
                    got = read_response(s)
                    break
                try:
                    s.send(b"X")
                except (BrokenPipeError, ConnectionResetError):
                    break
            self.assertIsNotNone(got, "no answer to a head that never ends")
            self.assertEqual(got[0], 408)
            self.assertTrue(closed(s))
        self.assertLess(time.monotonic() - t0, 5 * SLOW)
        self.assertEqual(self.srv.stats()["timeouts"], 1)

    def test_an_answer_read_slowly_is_not_cut_by_the_idle_timeout(self):
        # The keep-alive timeout runs from the end of the answer's write: a client still
        # taking a big answer, long after its exchange ended, is not idle.
        body = b"x" * (8 << 20)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(10 * SLOW)
        s.connect(("127.0.0.1", self.srv.port))
        with s:
            s.sendall(post(b"/echo", body))
            rd = Reader(s, 60)
            status, headers = read_head(rd)
            self.assertEqual(status, 200)
            got = len(rd.buf)
            while got < len(body):
                time.sleep(0.01)
                try:
                    chunk = s.recv(16384)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    break
                got += len(chunk)
            self.assertEqual(got, len(body), "the answer was cut short")
            self.assertTrue(closed(s), "idle after the answer")

    def test_a_body_that_stops_gets_408(self):
        with self.srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            self.assertEqual(read_response(s)[0], 408)

    def test_a_silent_connection_is_closed_without_an_answer(self):
        with self.srv.connect() as s:
            self.assertEqual(Reader(s, 5).rest(), b"")

    def test_an_idle_keepalive_connection_is_closed(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/info"))
            rd = Reader(s)
            self.assertEqual(read_response(s, rd)[0], 200)
            self.assertEqual(rd.buf + Reader(s, 5).rest(), b"")

    def test_empty_lines_after_a_request_are_not_a_request(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(post(b"/echo", b"x") + b"\r\n")
            self.assertEqual(read_response(s, rd)[2], b"x")
            # Closed by the idle timeout, without a 408 for the empty line.
            self.assertEqual(rd.buf + Reader(s, 5).rest(), b"")

    def test_a_slow_handler_is_not_timed_out(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/slow?1500"))
            self.assertEqual(read_response(s)[2], b"slow\n")


class Streams(Base):
    args = ("--keepalive", 0.2)

    def test_sse_framing(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(get(b"/sse?3&5"))
            status, h, body = read_response(s, rd)
            self.assertEqual(status, 200)
            self.assertEqual(h["content-type"], "text/event-stream")
            self.assertEqual(h["cache-control"], "no-cache")
            self.assertEqual(h["transfer-encoding"], "chunked")
            self.assertEqual(body, b"id: 0\nretry: 1000\ndata:\n\n"
                             b"id: 1\ndata: xxxxx\n\nid: 2\ndata: xxxxx\n\n"
                             b"id: 3\ndata: xxxxx\n\n")
            # The connection goes on after the stream.
            s.sendall(get(b"/info"))
            self.assertEqual(read_response(s, rd)[0], 200)

    def test_sse_data_with_line_breaks(self):
        body = self.roundtrip(get(b"/sse-lines"))[2]
        self.assertEqual(body, b"id: 7\ndata: one\ndata: two\ndata: three\ndata: four\n\n")

    def test_chunks(self):
        _, h, body = self.roundtrip(get(b"/chunked?3"))
        self.assertEqual(h["transfer-encoding"], "chunked")
        self.assertEqual(body, b"chunk 1\nchunk 2\nchunk 3\n")

    def test_http10_stream_ends_with_the_connection(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/chunked?2", version=b"1.0"))
            status, h, body = read_response(s)
            self.assertNotIn("transfer-encoding", h)
            self.assertEqual((h.get("connection"), body), ("close", b"chunk 1\nchunk 2\n"))

    def test_a_big_stream_arrives_whole_through_backpressure(self):
        # 2000 events of 4 KiB: far more than the queue (1 MiB) and the socket hold.
        with self.srv.connect() as s:
            s.sendall(get(b"/sse?2000&4096"))
            body = read_response(s)[2]
        events = body.split(b"\n\n")[1:-1]
        self.assertEqual(len(events), 2000)
        self.assertEqual(events[-1], b"id: 2000\ndata: " + b"x" * 4096)

    def test_keepalive_comments_on_a_quiet_stream(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(get(b"/flood?1&0"))  # size 0: no job pumping after the first
            read_head(rd)
            while rd.buf.count(b": keepalive\n\n") < 2:
                rd.fill()


class Vanishing(Base):
    args = ("--write-timeout", 1, "--max-queue", 65536)

    def test_a_client_that_closes_mid_stream(self):
        base = self.srv.stats()
        with self.srv.connect() as s:
            s.sendall(get(b"/flood"))
            rd = Reader(s)
            read_head(rd)
            rd.fill()
        st = self.srv.wait_stats(lambda st: st["closed_jobs"] == 1 and st["conns"] == 1,
                                 what="on_close")
        self.assertEqual((st["jobs"], st["exchanges"]), (0, 1))  # /stats itself
        self.assertEqual(st["fds"], base["fds"])

    def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(self):
        base = self.srv.stats()
        s = self.srv.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(get(b"/flood"))
        try:
            st = self.srv.wait_stats(lambda st: st["closed_jobs"] == 1, what="the stall",
                                     seconds=20)
            self.assertLessEqual(st["queued"], 65536 + 8192)
            self.assertEqual(st["timeouts"], 1)
            self.assertEqual(st["fds"], base["fds"])
        finally:
            s.close()

    def test_a_client_that_closes_before_the_answer(self):
        with self.srv.connect() as s:
            s.sendall(get(b"/hold"))
            self.srv.wait_stats(lambda st: st["jobs"] == 1, what="the request")
        self.srv.wait_stats(lambda st: st["closed_jobs"] == 1 and st["jobs"] == 0,
                            what="on_close")

    def test_a_post_whose_client_closes_before_the_answer(self):
        """A FIN after a POST may be a half-close: the layer's probe (an interim 100),
        which a closed socket answers with a reset, tells it is not, and on_close comes."""
        with self.srv.connect() as s:
            s.sendall(post(b"/hold", b"x"))
            self.srv.wait_stats(lambda st: st["jobs"] == 1, what="the request")
        self.srv.wait_stats(lambda st: st["closed_jobs"] == 1 and st["jobs"] == 0,
                            what="on_close")

    def test_a_post_whose_client_half_closes_is_answered_then_closed(self):
        """A client that shuts its sending side after a complete request (RFC 9112) gets
        an interim 100 (the probe), its answer with Connection: close, then the close; a
        GET whose client does so is gone (on_close), as are the bytes of a request cut
        short."""
        with self.srv.connect() as s:
            s.sendall(post(b"/slow?300", b"x"))
            s.shutdown(socket.SHUT_WR)
            rd = Reader(s)
            self.assertEqual(read_head(rd), (100, {}))
            status, h, body = read_response(s, rd)
            self.assertEqual((status, h.get("connection"), body), (200, "close", b"slow\n"))
            self.assertTrue(closed(s))
        with self.srv.connect() as s:
            s.sendall(get(b"/hold"))
            self.srv.wait_stats(lambda st: st["jobs"] == 1, what="the GET")
            s.shutdown(socket.SHUT_WR)
            self.srv.wait_stats(lambda st: st["closed_jobs"] == 1 and st["jobs"] == 0,
                                what="on_close")
            self.assertTrue(closed(s))
        with self.srv.connect() as s:
            s.sendall(post(b"/echo", b"x")[:-1])
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            self.assertEqual(s.recv(100), b"", "no answer")

    def test_server_shutdown_closes_open_exchanges(self):
        s = self.srv.connect()
        s.sendall(get(b"/hold"))
        self.srv.wait_stats(lambda st: st["jobs"] == 1, what="the request")
        # tearDown's exit status 0 says on_close freed the job (3 if not).
        self.addCleanup(s.close)


class Concurrency(Base):
    args = ("--max-conns", 120)

    def test_100_concurrent_connections(self):
        socks = [self.srv.connect() for _ in range(100)]
        try:
            for i, s in enumerate(socks):
                s.sendall(post(b"/echo", b"c%d" % i))
            for i, s in enumerate(socks):
                self.assertEqual(read_response(s)[2], b"c%d" % i)
            self.assertEqual(self.srv.stats()["conns"], 101)
            for i, s in enumerate(socks):
                s.sendall(get(b"/slow?50"))
            for s in socks:
                self.assertEqual(read_response(s)[2], b"slow\n")
        finally:
            for s in socks:
                s.close()
        self.srv.wait_stats(lambda st: st["conns"] == 1, what="the closes")


class StopListening(Base):
    def test_open_connections_go_on_after_the_listeners_close(self):
        with self.srv.connect() as s:
            rd = Reader(s)
            s.sendall(get(b"/stop-listening"))
            self.assertEqual(read_response(s, rd)[2], b"stopped\n")
            with self.assertRaises(ConnectionRefusedError):
                self.srv.connect().close()
            s.sendall(post(b"/echo", b"still here"))
            self.assertEqual(read_response(s, rd)[2], b"still here")


class ConnectionLimit(Base):
    args = ("--max-conns", 3)

    def test_over_the_limit_gets_503(self):
        held = [self.srv.connect() for _ in range(3)]
        try:
            with self.srv.connect() as s:
                s.sendall(get(b"/info"))
                status, h, _ = read_response(s)
                self.assertEqual((status, h.get("retry-after")), (503, "1"))
                self.assertTrue(closed(s))
        finally:
            for s in held:
                s.close()
        st = self.srv.wait_stats(lambda st: st["conns"] == 1, what="the closes")
        self.assertGreaterEqual(st["rejected"], 1)  # /stats may have been refused too


class Mutations(Base):
    args = ("--max-body", 4096, "--max-head", 1024, "--max-headers", 8)
    seeds = [
        post(b"/echo", b"hello"),
        get(b"/info?x", b"X-A: b\r\nAccept: */*\r\n"),
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        b"0\r\n\r\n",
        get(b"/sse?2&3"),
        get(b"/chunked?2") + post(b"/echo", b"two"),
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        b"abc",
    ]

    def test_mutated_requests_get_answers_or_a_close(self):
        """Each of 2,000 seeded mutations is sent, then the client closes its side: what
        comes back must be nothing or whole HTTP/1.1 responses, and the server must end
        with nothing open (and no leak: tearDown checks the exit status)."""
        rnd = random.Random(20261204)
        statuses = set()
        for i in range(2000):
            raw = bytearray(rnd.choice(self.seeds))
            for _ in range(rnd.randint(1, 4)):
                pos = rnd.randrange(len(raw) + 1)
                op = rnd.randrange(4)
                if op == 0 and raw:
                    raw[pos % len(raw)] = rnd.randrange(256)
                elif op == 1:
                    raw[pos:pos] = bytes([rnd.choice(b"\r\n :;0aZ\x00\x7f\t")])
                elif op == 2 and raw:
                    del raw[pos % len(raw)]
                else:
                    raw[pos:pos] = raw[:rnd.randrange(len(raw) + 1)]
            with self.subTest(i=i, raw=bytes(raw)), self.srv.connect() as s:
                s.sendall(bytes(raw))
                s.shutdown(socket.SHUT_WR)
                rd = Reader(s)
                rd.buf = rd.rest()
                rd.eof = True
                while rd.buf:
                    status, h, _ = read_response(None, rd)
                    statuses.add(status)
        self.assertTrue({200, 400}.issubset(statuses), statuses)
        self.srv.wait_stats(lambda st: st["conns"] == 1 and st["exchanges"] == 1,
                            what="every connection closed")


class Listeners(unittest.TestCase):
    def test_unix_socket(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "http.sock")
            srv = Server(listen=(path,))
            try:
                self.assertEqual(srv.port, 0)
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(10 * SLOW)
                    s.connect(path)
                    s.sendall(get(b"/info"))
                    self.assertEqual(read_response(s)[2], b"GET /info - 11 1 0 1\n")
            finally:
                self.assertEqual(srv.stop(), 0)

    def test_socket_activation(self):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        port = ls.getsockname()[1]
        srv = Server(listen=(), pass_fd=ls.fileno())
        ls.close()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as s:
                s.sendall(get(b"/info"))
                self.assertEqual(read_response(s)[0], 200)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_bad_address(self):
        p = subprocess.run([TESTD, "--listen", "1.2.3.4.5:x"], capture_output=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is not an address to listen on", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
