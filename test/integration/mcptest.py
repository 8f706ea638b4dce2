"""
Integration-test harness: drives the real mcpmux binary against the fixture server.

Every process a test starts is tracked and reaped at the end of the test, and every
descendant is found by a tag in its environment (MCPMUX_TEST_TAG, inherited through
mcpmux by the servers and their children), so a test can assert that nothing it started
is left, and clean up after a failure without touching anything else on the machine.

Waits are bounded: a line is awaited with select() and a deadline; a process's end with
waitpid() polled against a deadline.  Where no event exists to wait for (a grandchild
that is not our child disappearing from /proc), /proc is polled every few milliseconds
up to a deadline.

Binaries come from the environment: MCPMUX (the binary under test) and MCP_FIXTURE.
MCPMUX_TEST_TIMEOUT_MULTIPLIER stretches every deadline (slow machines, valgrind).
MCPMUX_WRAPPER (e.g. "valgrind -q --leak-check=full --error-exitcode=99") is put in
front of every mcpmux command line; mcpmux keeps its pid (valgrind runs it in place).
"""

import ctypes
import errno
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

MCPMUX = os.environ.get("MCPMUX", "mcpmux")
FIXTURE = os.environ.get("MCP_FIXTURE", "mcp-fixture")
SLOW = float(os.environ.get("MCPMUX_TEST_TIMEOUT_MULTIPLIER", "1"))
WRAPPER = os.environ.get("MCPMUX_WRAPPER", "").split()
SANITIZED = bool(os.environ.get("MCPMUX_TEST_SANITIZED"))
TAG = "MCPMUX_TEST_TAG"
PR_SET_CHILD_SUBREAPER = 36


def deadline(seconds):
    return time.monotonic() + seconds * SLOW


# A server of the client's answers: "ask" {"ids": [...]} sends the client a request with
# each id ({"count": N}: ids 0 to N - 1), "cancel" {"ids": [...]} a notifications/cancelled for each,
# "raw" {"lines": [...]} each line as it is; "texts" is answered with the messages of the
# errors it got so far, every other request with the errors themselves, as [id, code].
ASKER = """
import json, sys
got = []
texts = []
for line in sys.stdin:
    m = json.loads(line)
    if "method" not in m:
        got.append([m["id"], m["error"]["code"]])
        texts.append(m["error"]["message"])
    elif m["method"] == "raw":
        for k in m["params"]["lines"]:
            print(k, flush=True)
    elif m["method"] == "ask":
        for k in m["params"].get("ids") or range(m["params"]["count"]):
            print(json.dumps({"jsonrpc": "2.0", "id": k, "method": "sampling/createMessage"}),
                  flush=True)
    elif m["method"] == "cancel":
        for k in m["params"]["ids"]:
            print(json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                              "params": {"requestId": k}}), flush=True)
    if "id" in m and "method" in m:
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"],
                          "result": texts if m["method"] == "texts" else got}), flush=True)
"""


def req(id_, method, params=None):
    m = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        m["params"] = params
    return m


def note(method, params=None):
    m = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        m["params"] = params
    return m


def call(id_, tool, **args):
    return req(id_, "tools/call", {"name": tool, "arguments": args})


def initialize(id_=0):
    return req(id_, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "mcptest", "version": "1"}})


def nested(id_, depth, method="ping"):
    """A request whose JSON is nested depth deep (its object, params, then arrays), as
    bytes with no newline."""
    return (b'{"jsonrpc":"2.0","id":%d,"method":"%s","params":{"d":%s%s}}'
            % (id_, method.encode(), b"[" * (depth - 2), b"]" * (depth - 2)))


def encode(msg):
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def proc_state(pid):
    """The state letter of a process, None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return chr(stat[stat.rindex(b")") + 2])


def alive(pid):
    """A process that exists and is not a zombie."""
    s = proc_state(pid)
    return s is not None and s not in "ZX"


def proc_start(pid):
    """A process's start time (clock ticks since boot), None when it is not in /proc."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read()
    except OSError:
        return None
    return int(st[st.rindex(b")") + 2:].split()[19])


def ppid_of(pid):
    """A process's parent, None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def cpu_seconds(pid):
    """The CPU time a process used so far (user and system), in seconds."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def pids_with_env(entry):
    """Live processes whose environment holds entry (b"NAME=value")."""
    found = []
    for pid in all_pids():
        env = proc_environ(pid)
        if env is not None and entry in env and alive(pid):
            found.append(pid)
    return found


def wait_until(pred, seconds, what, explain=None):
    """pred()'s first true value within the deadline; explain(): more words on a timeout."""
    end = deadline(seconds)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %.1f s waiting for %s%s" % (
                seconds * SLOW, what, "\n" + explain() if explain else ""))
        time.sleep(0.005)


def polling_one_or_gone(p):
    """Whether the subprocess p waits in poll() on one descriptor with no deadline (the
    x86-64 number of poll(), 7, read from /proc), or has exited."""
    if p.poll() is not None:
        return True
    try:
        with open("/proc/%d/syscall" % p.pid) as f:
            call = f.read().split()
    except OSError:
        return True
    return call[:1] == ["7"] and call[2:4] in (["0x1", "0xffffffff"],
                                               ["0x1", "0xffffffffffffffff"])


def run_on_a_full_stdout(argv, env, seconds=30):
    """argv run with its stdout a pipe that is full before it starts and non-blocking (a
    flag of the description, which a reader that set it shares): (exit code, what it
    wrote, its stderr).  The pipe is read once the command waits for room in it (in poll()
    on one descriptor, with no deadline: sys_write_fd()'s wait) or has exited: one that
    meets EAGAIN instead fails, or cuts its output short.  Both pipes are read to their
    end within `seconds`: a command that hangs fails the test."""
    if platform.machine() != "x86_64":
        raise unittest.SkipTest("the wait for room is told by x86-64's number of poll()")
    r, w = os.pipe()
    p = None
    try:
        os.set_blocking(w, False)
        filled = 0
        try:
            while True:
                filled += os.write(w, b"x" * 4096)
        except BlockingIOError:
            pass
        p = subprocess.Popen(WRAPPER + argv, stdout=w, stderr=subprocess.PIPE, env=env)
        os.close(w)
        w = -1

        wait_until(lambda: polling_one_or_gone(p), seconds, "%s to wait for room in stdout" % argv[1:],
                   lambda: proc_report(p.pid))
        err = p.stderr.fileno()
        got, ended = {r: b"", err: b""}, set()
        end = time.monotonic() + seconds * SLOW
        while len(ended) < len(got):
            rd, _, _ = select.select([fd for fd in got if fd not in ended], [], [],
                                     max(0, end - time.monotonic()))
            if not rd:
                raise AssertionError("%s: no end of its stdout and stderr in %.1f s\n%s" % (
                    argv[1:], seconds * SLOW, proc_report(p.pid)))
            for fd in rd:
                b = os.read(fd, 65536)
                got[fd] += b
                if not b:
                    ended.add(fd)
        rc = p.wait(timeout=max(0.1, end - time.monotonic()))
        return rc, got[r][filled:], got[err].decode(errors="replace")
    finally:
        if p is not None:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
        os.close(r)
        if w != -1:
            os.close(w)


def proc_report(pid):
    """What process pid and its threads are doing (state, wait channel, system call,
    kernel stack where readable), and its children: for a message on a timeout."""
    def read(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            return "(%s)" % e.strerror
    lines = []
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return "process %d: gone" % pid
    for tid in tids:
        t = "/proc/%d/task/%d/" % (pid, tid)
        stat = read(t + "stat")
        state = stat.rsplit(")", 1)[1].split()[0] if ")" in stat else stat
        lines.append("%d/%d %s state %s wchan %s syscall %s" % (
            pid, tid, read(t + "comm"), state, read(t + "wchan"), read(t + "syscall")))
        stack = read(t + "stack")
        if stack and not stack.startswith("("):
            lines.extend("    " + l for l in stack.splitlines()[:12])
        kids = read(t + "children").split()
        if kids and not kids[0].startswith("("):
            lines.append("    children: " + " ".join("%s (%s)" % (k, comm(int(k)))
                                                    for k in kids))
    return "\n".join(lines)


def comm(pid):
    """A process's name (/proc/PID/comm), None when it is gone."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def sig_blocked(pid):
    """The mask of signals pid blocks (None when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for l in f:
                if l.startswith("SigBlk:"):
                    return int(l.split()[1], 16)
    except OSError:
        pass
    return None


def keeper_of(pid, under_way=False):
    """The mcpmux pid a keeper process is for (docs/lifecycle.md), or None: a keeper, one
    not yet under way, or the middle process that forks it, which has its title too; with
    under_way, only a keeper under way (one a test can act on)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            # the title is one string (retitle()): what follows its NUL is what is left
            # of the command line it was written over, or of the title being written
            words = f.read().split(b"\0")[0].split()
    except OSError:
        return None
    if len(words) == 3 and words[:2] == [b"mcpmux-keeper", b"for"] and words[2].isdigit():
        # The middle process has every signal blocked until it exits; so has the keeper
        # until it is under way, when it unblocks them all.
        if under_way and sig_blocked(pid) != 0:
            return None
        return int(words[2])
    # under valgrind the command line is valgrind's: the name still says keeper
    return -1 if comm(pid) == "mcpmux-keeper" else None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_links(pid):
    """{fd: what it names} of process pid ("pipe:[N]" for a pipe)."""
    out = {}
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(f)] = os.readlink("/proc/%d/fd/%s" % (pid, f))
        except OSError:
            pass  # closed meanwhile
    return out


def rss_anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


# argv[2:] run as a child of a fresh interpreter, which writes "EXIT-CODE PEAK-RSS-KIB" to
# fd argv[1] once the child is gone (run_peak_rss()).
PEAK_RSS = """
import os, sys
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(fd, b"%d %d" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss))
"""


class PeakRss:
    """argv started for its peak RSS (wait4's ru_maxrss), its stdout a pipe (self.stdout).
    Not as a child of the test process: a child's peak counts the pages that it had of its
    parent before its exec() (fork() copies their mappings, vfork() shares them), and the
    test process may have grown large in an earlier test.  A fresh interpreter in between
    (with no site packages) lends it only its own few MB.  finish(): (exit code, KiB)."""

    def __init__(self, argv, env, stdin=None, stdout=subprocess.PIPE, stderr=None):
        r, w = os.pipe()
        try:
            self.p = subprocess.Popen([sys.executable, "-S", "-c", PEAK_RSS, str(w)] + argv,
                                      stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                                      pass_fds=(w,))
        finally:
            os.close(w)
        self.r = r
        self.stdin = self.p.stdin
        self.stdout = self.p.stdout

    def finish(self, seconds=60):
        try:
            self.p.wait(timeout=seconds * SLOW)
        finally:
            for f in (self.p.stdin, self.p.stdout):
                if f is not None and not f.closed:
                    f.close()
        with os.fdopen(self.r, "rb") as f:
            got = f.read().split()
        if self.p.returncode != 0 or len(got) != 2:
            raise AssertionError("the peak RSS was not measured: exit %d" % self.p.returncode)
        return int(got[0]), int(got[1])


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Proc:
    """A process under test with line-oriented, deadline-bounded pipes."""

    def __init__(self, argv, env=None, stdin=True, stdout=True, stderr=None, **popen):
        """stderr: a file descriptor or file to use instead of a temporary file; stdout: one
        (not True or False) to use instead of a pipe."""
        self.argv = argv
        self.err_file = tempfile.TemporaryFile()
        if stdout is True or stdout is False:
            out = subprocess.PIPE if stdout else subprocess.DEVNULL
        else:
            out, stdout = stdout, False
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=out,
                                  stderr=self.err_file if stderr is None else stderr, env=env,
                                  bufsize=0, **popen)
        self.pid = self.p.pid
        self.buf = b""  # received, not yet taken: self.buf[self.pos:]
        self.pos = 0
        self.eof = False
        if stdout:
            os.set_blocking(self.p.stdout.fileno(), False)

    # -- input --
    def send(self, *msgs):
        data = b"".join(encode(m) for m in msgs)
        self.write(data)

    def write(self, data, seconds=10):
        """Write all of data, with a deadline (the reader may apply backpressure)."""
        fd = self.p.stdin.fileno()
        os.set_blocking(fd, False)
        end = deadline(seconds)
        view = memoryview(data)
        while view:
            if time.monotonic() > end:
                raise AssertionError("write to %s stalled" % self.argv[0])
            _, w, _ = select.select([], [fd], [], 0.05)
            if not w:
                continue
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def close_stdin(self):
        if self.p.stdin and not self.p.stdin.closed:
            self.p.stdin.close()

    # -- output --
    def _fill(self, end):
        fd = self.p.stdout.fileno()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([fd], [], [], remaining)
        if not r:
            return False
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def skip_slowly(self, start, most, seconds=10):
        """Skip whole lines of stdout until one that begins with start, reading 4 KiB a
        millisecond at most (a client slower than a flooding server); that line is the next
        one line() gives.  The number of bytes skipped; AssertionError once more than most
        are, or on timeout or EOF."""
        end, skipped = deadline(seconds), 0
        fd = self.p.stdout.fileno()
        while True:
            while True:  # the whole lines read so far
                i = self.buf.find(b"\n", self.pos)
                if i < 0:
                    break
                if self.buf.startswith(start, self.pos):
                    break
                skipped += i + 1 - self.pos
                self.pos = i + 1
            if skipped > most:
                raise AssertionError("%d bytes of other lines before one that begins with "
                                     "%r" % (skipped, start))
            if i >= 0:
                return skipped
            self.buf, self.pos = self.buf[self.pos:], 0
            if self.eof or time.monotonic() >= end:
                raise AssertionError("no line that begins with %r (%s)" % (
                    start, "EOF" if self.eof else "timeout"))
            r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
            if r:
                chunk = os.read(fd, 4096)
                self.eof = not chunk
                self.buf += chunk
            time.sleep(0.001)  # (the pace of a slow client, not a wait for an event)

    def line(self, seconds=10):
        """The next line of stdout (without "\\n"); AssertionError on timeout or EOF."""
        end = deadline(seconds)
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                out, self.pos = self.buf[self.pos:i], i + 1
                if self.pos == len(self.buf):
                    self.buf, self.pos = b"", 0
                return out
            if self.pos:
                self.buf, self.pos = self.buf[self.pos:], 0
            if self.eof:
                raise AssertionError("EOF on stdout of %s (pending %r)" % (
                    self.argv[0], self.buf[self.pos:self.pos + 200]))
            if not self._fill(end) and not self.eof and time.monotonic() >= end:
                raise AssertionError("no line from %s within %.1f s; stderr:\n%s" % (
                    self.argv[0], seconds * SLOW, self.stderr()[-2000:]))

    def msg(self, seconds=10):
        raw = self.line(seconds)
        try:
            return json.loads(raw)
        except ValueError:
            raise AssertionError("not JSON from %s: %r" % (self.argv[0], raw[:300]))

    def read_to_eof(self, seconds=10):
        end = deadline(seconds)
        while not self.eof:
            if not self._fill(end) and not self.eof and time.monotonic() >= end:
                raise AssertionError("no EOF from %s" % self.argv[0])
        out, self.buf, self.pos = self.buf[self.pos:], b"", 0
        return out

    def no_output(self, seconds):
        """Assert nothing arrives on stdout for this long (a negative check)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.eof:
            if len(self.buf) > self.pos:
                break
            self._fill(end)
        if len(self.buf) > self.pos:
            raise AssertionError("unexpected output: %r" % self.buf[self.pos:self.pos + 300])

    def has_line(self, seconds=0.0):
        """Is a line ready (waiting at most this long for one)?"""
        end = time.monotonic() + seconds
        while self.buf.find(b"\n", self.pos) < 0:
            if self.eof or not self._fill(end):
                return False
        return True

    def stderr(self):
        """What the process wrote to stderr so far.  Read with pread: the file's offset is
        the one the process writes at (a shared description), and a seek would make its
        next line overwrite the first."""
        fd, out = self.err_file.fileno(), b""
        while True:
            chunk = os.pread(fd, 1 << 20, len(out))
            if not chunk:
                return out.decode(errors="replace")
            out += chunk

    # -- the end --
    def wait(self, seconds=10):
        try:
            return self.p.wait(timeout=seconds * SLOW)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.1f s; stderr:\n%s" % (
                self.argv[0], seconds * SLOW, self.stderr()[-2000:]))

    def kill(self):
        if self.p.returncode is None:
            try:
                self.p.kill()
            except ProcessLookupError:
                pass
            self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            if f and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass
        self.err_file.close()


class Case(unittest.TestCase):
    """A test case whose processes all carry one tag, and are all gone after it."""

    prefix = []  # a command that runs mcpmux (start() puts it in front)

    def setUp(self):
        self.tag = uuid.uuid4().hex
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory(prefix="mcpmux-test-")
        self.env = dict(os.environ)
        self.env[TAG] = self.tag
        self.env.pop("MCPMUX_LOG", None)
        # The instances' status files, pools and container id files stay in the test's
        # own directory: none outlives the test, and no two tests share a pool.
        self.run_dir = tempfile.TemporaryDirectory(prefix="mcpmux-run-")
        self.env["XDG_RUNTIME_DIR"] = self.run_dir.name

    def tearDown(self):
        for p in self.procs:
            p.kill()
        # A killed mcpmux's keeper ends what it started, then goes: let it (one forked an
        # instant before mcpmux was killed still has mcpmux's name, not yet its own).
        try:
            wait_until(lambda: not [q for q in self.tagged()
                                    if keeper_of(q) is not None or comm(q) == "mcpmux"], 10,
                       "the keepers of killed instances to finish")
        except AssertionError:
            pass
        left = self.tagged()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.tmp.cleanup()
        self.run_dir.cleanup()
        if left and not getattr(self, "leftovers_expected", False):
            self.fail("processes left behind by the test: %r" % left)

    def adopt_orphans(self):
        """Make the test a child subreaper, as a supervisor is (systemd, a container's
        init): what mcpmux leaves comes to the test at mcpmux's exit, and a zombie of it stays
        in /proc until the test reaps it (where init would, a moment later).  Undone at the
        end of the test, and whatever was adopted reaped."""
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            self.skipTest("cannot become a child subreaper: %s"
                          % os.strerror(ctypes.get_errno()))

        def adopted():
            mine = {p.pid for p in self.procs}
            left = []
            for pid in all_pids():
                if pid in mine or ppid_of(pid) != os.getpid():
                    continue
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        left.append(pid)
                except ChildProcessError:
                    pass
            return left

        def release():
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
            # after tearDown: what is still running (killed then, or of no tag, such as a
            # process without its environment) is killed now; a child unreaped keeps its pid
            for pid in adopted():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until(lambda: not adopted(), 10, "what the test adopted to end")
        self.addCleanup(release)

    def tagged(self):
        return pids_with_env(("%s=%s" % (TAG, self.tag)).encode())

    def kill_with_keeper(self, p):
        """mcpmux and its keeper killed together (the keeper stopped first, so that it
        cannot act on mcpmux's death): what they leave is left to `mcpmux sweep`."""
        keepers = wait_until(lambda: [q for q in self.tagged() if keeper_of(q) == p.pid], 10,
                             "the keeper to start")
        for k in keepers:
            os.kill(k, signal.SIGSTOP)
        p.p.send_signal(signal.SIGKILL)
        p.wait()
        for k in keepers:
            os.kill(k, signal.SIGKILL)
        wait_until(lambda: not [q for q in self.tagged() if keeper_of(q) is not None], 10,
                   "the keeper to be gone")

    def start(self, argv, **kw):
        if argv and argv[0] == MCPMUX:
            argv = self.prefix + WRAPPER + list(argv)
        p = Proc(argv, env=kw.pop("env", self.env), **kw)
        self.procs.append(p)
        return p

    def wrap(self, *fixture_args, opts=(), command=None):
        """mcpmux [opts] -- mcp-fixture [fixture_args]"""
        cmd = command if command is not None else [FIXTURE] + list(fixture_args)
        return self.start([MCPMUX] + list(opts) + ["--"] + cmd)

    def serve(self, *fixture_args, opts=(), command=None, **popen):
        cmd = command if command is not None else [FIXTURE] + list(fixture_args)
        return self.start([MCPMUX, "serve"] + list(opts) + ["--"] + cmd, **popen)

    def assert_pipes_held_once(self, mux, servers):
        """Each pipe on a server's fds 0-2 is held by mcpmux exactly once (its own end):
        nothing else of mcpmux keeps a server's pipe open."""
        held = list(fd_links(mux).values())
        for pid in servers:
            for fd, what in fd_links(pid).items():
                if fd <= 2 and what.startswith("pipe:"):
                    self.assertEqual(held.count(what), 1, "server %d's fd %d (%s) in mcpmux: %r"
                                     % (pid, fd, what, held))

    def pings(self, w, n=2000):
        """initialize, then n pings sent at once, answered in order (as many records of
        a traffic log, or lines of noise, as they make)."""
        w.send(initialize(0))
        self.assertEqual(w.msg()["id"], 0)
        for i in range(1, n + 1):
            w.send(req(i, "ping"))
        for i in range(1, n + 1):
            self.assertEqual(w.msg(30)["id"], i)

    def assert_no_leftovers(self, seconds=2, what="processes of the test"):
        """Every process started by this test, except mcpmux, its keeper and the harness, is
        gone."""
        keep = {p.pid for p in self.procs if p.p.poll() is None}

        def left():
            return [p for p in self.tagged() if p not in keep and keeper_of(p) not in keep]
        wait_until(lambda: not left(), seconds, "%s to be gone (left: %r)" % (what, left()))

    def cookie_pids(self, session):
        return pids_with_env(("MCPMUX_SESSION=%s" % session).encode())

    def assert_response(self, m, id_):
        self.assertEqual(m.get("id"), id_, m)
        self.assertIn("result", m, m)
        return m["result"]

    def assert_error(self, m, id_, code):
        self.assertEqual(m.get("id"), id_, m)
        self.assertIn("error", m, m)
        self.assertEqual(m["error"]["code"], code, m)
        return m["error"]

    def assert_batch_answers_over_the_bound(self, c):
        """c, wrap or connect with --max-message 4096, its server (ASKER) having asked 5
        and 6: the client's answers in one batch over the bound, 5 ending within its first
        4096 bytes and 6 after them, are over --max-message, not out of memory: the
        server's errors (its "texts") and stderr say so, the batch being more than that."""
        over = {"role": "assistant", "content": {"type": "text", "text": "x" * 5000}}
        c.send([{"jsonrpc": "2.0", "id": 5, "result": {}},
                {"jsonrpc": "2.0", "id": 6, "result": over}])
        c.send(req(2, "texts"))
        text = ("the client's answer was too large for mcpmux (a batch of more than 4096 bytes, "
                "the limit is 4096: see --max-message)")
        self.assertEqual(c.msg(10), {"jsonrpc": "2.0", "id": 2, "result": [text, text]})
        wait_until(lambda: "the client's answer 6 to a request of the server is over "
                           "--max-message (a batch of more than 4096 bytes)" in c.stderr(), 5,
                   "the warning")
        self.assertIn("the client's answer 5 to a request of the server is over --max-message "
                      "(a batch of more than 4096 bytes)", c.stderr())
        self.assertNotIn("memory", c.stderr())

    def assert_no_message_elements_answered(self, c):
        """c, wrap or connect with --max-message 4096: the elements of a batch over the
        bound that are no message ({"foo": 2}, 1, one cut short by the line's end too) get
        one -32600 with id null, last in the array of the batch's errors."""
        def codes(m):
            return [(e["id"], e["error"]["code"]) for e in m]
        c.send([{"foo": "y" * 8192}, 1, note("notifications/x")])
        m = c.msg(10)
        self.assertEqual(codes(m), [(None, -32600)], m)
        c.send([req(1, "x", {"p": "y" * 8192}), 1, {"foo": 2}, req(3, "ping")])
        m = c.msg(10)
        self.assertEqual(codes(m), [(1, -32600), (3, -32600), (None, -32600)], m)
        c.write(b'[' + json.dumps(req(4, "x", {"p": "y" * 8192})).encode() + b', 1 ]\n')
        m = c.msg(10)
        self.assertEqual(codes(m), [(4, -32600), (None, -32600)], m)


def main():
    unittest.main(verbosity=2)
