"""mcpmux config: wrap and unwrap of real-shaped client configs (configs/), --in-place and
its backup, --dry-run, refusals of broken files, and a wrapped entry started the way its
client starts it."""

import json
import os
import stat
import subprocess

from mcptest import (Case, FIXTURE, MCPMUX, SLOW, call, initialize, main, proc_environ)

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "configs")
BROKEN = os.path.join(CONFIGS, "broken")
MCPMUX_PATH = os.path.realpath(MCPMUX)
# The fixture exits at once on EOF; a generous grace keeps a loaded machine from turning
# that into a SIGTERM (status 143), and costs nothing when it does exit.
GRACE = ["--eof-grace", str(int(5000 * SLOW)), "--term-grace", "1000"]

# Each client's file and where its servers are.
CLIENTS = {
    "claude_desktop_config.json": ("mcpServers",),
    "claude-code.mcp.json": ("mcpServers",),
    "cursor-mcp.json": ("mcpServers",),
    "windsurf-mcp_config.json": ("mcpServers",),
    "vscode-mcp.json": ("servers",),
    "openclaw.json": ("mcp", "servers"),
}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def servers(doc, where):
    for key in where:
        doc = doc[key]
    return doc


def is_stdio(entry):
    return isinstance(entry.get("command"), str) and entry.get("type", "stdio") == "stdio"


def config(*args, input=None, cwd=None):
    """Run `mcpmux config ARGS`: (exit status, stdout bytes, stderr text)."""
    p = subprocess.run([MCPMUX, "config"] + list(args), input=input, capture_output=True,
                       cwd=cwd, timeout=30 * SLOW)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


class Files(Case):
    def copy(self, name, mode=0o644, src=CONFIGS):
        path = os.path.join(self.tmp.name, name)
        write(path, read(os.path.join(src, name)), mode)
        return path

    def wrap_ok(self, *args, input=None):
        rc, out, err = config("wrap", *args, input=input)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        return out

    def unwrap_ok(self, *args, input=None):
        rc, out, err = config("unwrap", *args, input=input)
        self.assertEqual(rc, 0, err)
        return out

    def test_round_trip_is_byte_exact(self):
        """wrap then unwrap gives the original back byte for byte; wrap twice == once."""
        for name in CLIENTS:
            with self.subTest(client=name):
                path = os.path.join(CONFIGS, name)
                orig = read(path)
                wrapped = self.wrap_ok(path)
                self.assertNotEqual(wrapped, orig)
                self.assertEqual(self.unwrap_ok("-", input=wrapped), orig)
                self.assertEqual(self.wrap_ok("-", input=wrapped), wrapped)
                self.assertEqual(orig, read(path), "the file was touched")

    def test_wrapped_entries(self):
        """Stdio entries run mcpmux -- COMMAND ARGS; everything else is as it was, in order."""
        same = json.dumps  # dicts keep their order: equal dumps, equal order
        for name, where in CLIENTS.items():
            with self.subTest(client=name):
                path = os.path.join(CONFIGS, name)
                b_doc, a_doc = json.loads(read(path)), json.loads(self.wrap_ok(path))
                b_srv, a_srv = servers(b_doc, where), servers(a_doc, where)
                self.assertEqual(list(b_srv), list(a_srv))
                n_stdio = 0
                for sname, b in b_srv.items():
                    a = a_srv[sname]
                    if not is_stdio(b):
                        self.assertEqual(same(a), same(b), "remote server %s changed" % sname)
                        continue
                    n_stdio += 1
                    self.assertEqual(a["command"], MCPMUX_PATH)
                    self.assertEqual(a["args"], ["--", b["command"]] + b.get("args", []))
                    keys = list(b)
                    if "args" not in b:  # inserted just before "command"
                        keys.insert(keys.index("command"), "args")
                    self.assertEqual(list(a), keys)
                    for key in ("command", "args"):
                        a.pop(key)
                        b.pop(key, None)
                    self.assertEqual(same(a), same(b), "%s changed" % sname)
                self.assertGreater(n_stdio, 0)
                # Outside the servers, nothing differs, order included.
                b_srv.clear()
                a_srv.clear()
                self.assertEqual(same(a_doc), same(b_doc))

    def test_options_in_wrapped_entries(self):
        logs = os.path.join(self.tmp.name, "logs")
        os.mkdir(logs)
        path = os.path.join(CONFIGS, "openclaw.json")
        out = self.wrap_ok(path, "--log-dir", logs, "--eof-grace", "500", "--term-grace=700",
                           "--mcpmux", "/opt/mcpmux/bin/mcpmux")
        srv = json.loads(out)["mcp"]["servers"]
        self.assertEqual(srv["browser"]["command"], "/opt/mcpmux/bin/mcpmux")
        self.assertEqual(srv["browser"]["args"],
                         ["--log", os.path.join(logs, "browser.jsonl"), "--eof-grace", "500",
                          "--term-grace", "700", "--", "lightpanda", "mcp"])
        self.assertEqual(self.unwrap_ok("-", input=out), read(path))
        # A relative --log-dir is made absolute: the client starts servers elsewhere.
        for rel in ("logs", "./logs/"):
            rc, out, err = config("wrap", path, "--log-dir", rel, cwd=self.tmp.name)
            self.assertEqual(rc, 0, err)
            args = json.loads(out)["mcp"]["servers"]["memory"]["args"]
            self.assertEqual(args[:2], ["--log", os.path.join(os.path.realpath(logs),
                                                              "memory.jsonl")])

    def test_dry_run(self):
        path = self.copy("claude-code.mcp.json")
        orig, mtime = read(path), os.stat(path).st_mtime_ns
        rc, out, err = config("wrap", path, "--dry-run", "--in-place")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode().splitlines(), [
            "wrap   airtable: npx -y airtable-mcp-server -> %s -- npx -y airtable-mcp-server"
            % MCPMUX_PATH,
            "skip   sentry: remote (https://mcp.sentry.dev/mcp)",
            "skip   linear: remote (https://mcp.linear.app/sse)",
            "wrap   local-tool: /opt/tools/bin/mcp-tool -> %s -- /opt/tools/bin/mcp-tool"
            % MCPMUX_PATH,
        ])
        self.assertEqual(read(path), orig)
        self.assertEqual(os.stat(path).st_mtime_ns, mtime)
        self.assertFalse(os.path.exists(path + ".bak"))
        wrapped = self.wrap_ok(path)
        rc, out, err = config("unwrap", "-", "-n", input=wrapped)
        self.assertEqual(rc, 0, err)
        self.assertIn("unwrap airtable: %s -- npx -y airtable-mcp-server -> npx -y "
                      "airtable-mcp-server" % MCPMUX_PATH, out.decode())

    def test_in_place_backup_and_mode(self):
        path = self.copy("claude_desktop_config.json", mode=0o640)
        orig = read(path)
        want = self.wrap_ok(path)
        rc, out, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"")
        self.assertIn("wrapped 4 of 4 servers", err)
        self.assertEqual(read(path), want)
        self.assertEqual(read(path + ".bak"), orig)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        self.assertEqual(stat.S_IMODE(os.stat(path + ".bak").st_mode), 0o640)
        # Again: nothing to do, nothing written, the backup is still the original.
        mtime = os.stat(path).st_mtime_ns
        rc, out, err = config("wrap", "-i", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("no server to wrap", err)
        self.assertEqual(os.stat(path).st_mtime_ns, mtime)
        # Unwrap in place: the original, and the existing backup is kept, not overwritten.
        rc, out, err = config("unwrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("an older one, kept", err)
        self.assertEqual(read(path), orig)
        self.assertEqual(read(path + ".bak"), orig)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        self.assertEqual(sorted(os.listdir(self.tmp.name)),
                         ["claude_desktop_config.json", "claude_desktop_config.json.bak"])

    def test_in_place_through_a_symlink(self):
        real = self.copy("cursor-mcp.json", mode=0o600)
        link = os.path.join(self.tmp.name, "link.json")
        os.symlink(real, link)
        rc, _, err = config("wrap", "--in-place", link)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(stat.S_IMODE(os.stat(real).st_mode), 0o600)
        self.assertIn(MCPMUX_PATH.encode(), read(real))
        self.assertEqual(read(link + ".bak"), read(os.path.join(CONFIGS, "cursor-mcp.json")))

    def test_broken_files(self):
        """A message naming the file and the line, exit 1, the file untouched, no backup."""
        cases = [
            ("invalid.json", ":7:5: invalid JSON: "),
            ("wrong-type.json", ":7:"),
            ("command-not-string.json", ":4:"),
            ("comments.json", ":2:2: comments are not supported"),
            ("trailing-comma.json", ":5:28: invalid JSON: trailing commas are not supported"),
            ("no-servers.json", ": no MCP servers found"),
        ]
        for name, what in cases:
            for op in ("wrap", "unwrap"):
                with self.subTest(file=name, op=op):
                    d = os.path.join(self.tmp.name, op + "-" + name)
                    os.mkdir(d)
                    path = os.path.join(d, name)
                    write(path, read(os.path.join(BROKEN, name)))
                    orig, mtime = read(path), os.stat(path).st_mtime_ns
                    rc, out, err = config(op, "--in-place", path)
                    self.assertEqual(rc, 1, err)
                    self.assertEqual(out, b"")
                    self.assertIn("mcpmux: %s%s" % (path, what), err)
                    self.assertEqual(len(err.splitlines()), 1, err)
                    self.assertEqual(read(path), orig)
                    self.assertEqual(os.stat(path).st_mtime_ns, mtime)
                    self.assertEqual(os.listdir(d), [name])
        _, _, err = config("wrap", os.path.join(BROKEN, "wrong-type.json"))
        self.assertIn("server bad is a string, expected an object", err)
        _, _, err = config("wrap", os.path.join(BROKEN, "command-not-string.json"))
        self.assertIn("server fs: \"command\" is an array, expected a string", err)

    def test_unreadable_files(self):
        missing = os.path.join(self.tmp.name, "missing.json")
        rc, out, err = config("wrap", missing)
        self.assertEqual((rc, out), (1, b""))
        self.assertIn("mcpmux: %s: cannot open: No such file or directory" % missing, err)
        rc, _, err = config("wrap", "--in-place", self.tmp.name)
        self.assertEqual(rc, 1)
        self.assertIn("is a directory", err)
        if os.geteuid() != 0:  # root reads a mode 000 file anyway
            path = self.copy("cursor-mcp.json", mode=0)
            rc, _, err = config("wrap", "--in-place", path)
            self.assertEqual(rc, 1)
            self.assertIn("%s: cannot open: Permission denied" % path, err)
            self.assertFalse(os.path.exists(path + ".bak"))
        # A directory that cannot be written: nothing changes, no temporary file is left.
        if os.geteuid() != 0:
            d = os.path.join(self.tmp.name, "ro")
            os.mkdir(d)
            path = os.path.join(d, "mcp.json")
            write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")))
            os.chmod(d, 0o555)
            try:
                rc, _, err = config("wrap", "--in-place", path)
            finally:
                os.chmod(d, 0o755)
            self.assertEqual(rc, 1)
            self.assertIn("nothing written", err)
            self.assertEqual(os.listdir(d), ["mcp.json"])

    def test_usage_errors(self):
        path = os.path.join(CONFIGS, "cursor-mcp.json")
        for args in ([], ["frob", path], ["wrap"], ["wrap", path, path], ["wrap", path, "--bogus"],
                     ["unwrap", path, "--log-dir", "/tmp"], ["wrap", path, "--eof-grace", "soon"],
                     ["wrap", path, "--term-grace", "-1"], ["wrap", "-", "--in-place"],
                     ["wrap", path, "--mcpmux"]):
            with self.subTest(args=args):
                rc, out, err = config(*args)
                self.assertEqual(rc, 2, err)
                self.assertEqual(out, b"")
                self.assertTrue(err.startswith("mcpmux: "), err)
        rc, out, _ = config("--help")
        self.assertEqual(rc, 0)
        self.assertIn(b"usage: mcpmux config wrap FILE", out)


class WrappedRun(Case):
    """A wrapped entry, started as its client starts it, runs the server through mcpmux."""

    def entry_config(self, name, where, extra_opts=()):
        """The client's file with its first stdio server made the fixture, wrapped."""
        doc = json.loads(read(os.path.join(CONFIGS, name)))
        srv = servers(doc, where)
        sname = next(k for k, v in srv.items() if is_stdio(v))
        entry = srv[sname]
        entry["command"] = FIXTURE
        entry["args"] = []
        entry["env"] = {"CONFIG_TEST_VAR": "from-" + name}
        if "cwd" in entry:
            entry["cwd"] = self.tmp.name
        path = os.path.join(self.tmp.name, name)
        write(path, (json.dumps(doc, indent=2) + "\n").encode())
        rc, out, err = config("wrap", path, *GRACE, *extra_opts)
        self.assertEqual(rc, 0, err)
        return sname, servers(json.loads(out), where)[sname]

    def start_entry(self, entry):
        env = dict(self.env)
        env.update(entry.get("env", {}))
        argv = [entry["command"]] + entry.get("args", [])
        return self.start(argv, env=env) if "cwd" not in entry else \
            self.start_in(argv, env, entry["cwd"])

    def start_in(self, argv, env, cwd):
        old = os.getcwd()
        os.chdir(cwd)
        try:
            return self.start(argv, env=env)
        finally:
            os.chdir(old)

    def test_each_client_entry(self):
        for name, where in CLIENTS.items():
            with self.subTest(client=name):
                _, entry = self.entry_config(name, where)
                self.assertEqual(entry["command"], MCPMUX_PATH)
                p = self.start_entry(entry)
                p.send(initialize(1))
                self.assertIn("result", p.msg(), p.stderr())
                p.send(call(2, "env"))
                facts = p.msg()["result"]["structuredContent"]
                session = facts["session"]
                self.assertTrue(session)
                env = proc_environ(facts["pid"])
                self.assertIn(("MCPMUX_SESSION=%s" % session).encode(), env)
                self.assertIn(("CONFIG_TEST_VAR=from-%s" % name).encode(), env)
                # The fixture's parent is mcpmux, the process the client started.
                self.assertEqual(facts["ppid"], p.pid)
                self.assertEqual(os.path.realpath("/proc/%d/exe" % p.pid), MCPMUX_PATH)
                p.close_stdin()
                self.assertEqual(p.wait(), 0)
                self.assert_no_leftovers()

    def test_log_dir(self):
        logs = os.path.join(self.tmp.name, "logs")
        os.mkdir(logs)
        sname, entry = self.entry_config("openclaw.json", ("mcp", "servers"),
                                         ("--log-dir", logs))
        self.assertEqual(entry["args"][:2], ["--log", os.path.join(logs, sname + ".jsonl")])
        p = self.start_entry(entry)
        p.send(initialize(1))
        self.assertIn("result", p.msg(), p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        with open(os.path.join(logs, sname + ".jsonl")) as f:
            lines = [json.loads(line) for line in f]
        self.assertIn("initialize", [m.get("method") for m in lines])


if __name__ == "__main__":
    main()
