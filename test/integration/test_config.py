"""mcpmux config: wrap and unwrap of real-shaped client configs (configs/), in JSON and in
JSON5, --in-place with its backup, owner, mode and extended attributes (an ACL), --dry-run,
the options written into wrapped entries and re-wrapping with others, the mcpmux path
written (a symlinked install),
refusals of broken files, and a wrapped entry started the way its client starts it."""

import errno
import fcntl
import json
import os
import resource
import select
import shutil
import stat
import struct
import subprocess
import termios
import time
import unittest

import json5read
from mcptest import (Case, FIXTURE, MCPMUX, SANITIZED, SLOW, call, encode, initialize, main,
                     proc_environ, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "configs")
BROKEN = os.path.join(CONFIGS, "broken")
WRAPPED = os.path.join(CONFIGS, "wrapped")
# The path wrapped entries hold: the one mcpmux was started by, made absolute (the tests
# start it by its path, and no mcpmux on PATH is this one).
MCPMUX_PATH = os.path.abspath(MCPMUX)
MCPMUX_REAL = os.path.realpath(MCPMUX)
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
    # JSON with comments and trailing commas, as VS Code takes it in mcp.json
    "vscode-mcp-jsonc.json": ("servers",),
    # OpenClaw's ~/.openclaw/openclaw.json as it is usually written: JSON5
    "openclaw-json5.json": ("mcp", "servers"),
    # saved by Notepad: a byte-order mark and CRLF
    "claude_desktop_config-notepad.json": ("mcpServers",),
}
JSON5_CLIENTS = ("vscode-mcp-jsonc.json", "openclaw-json5.json")


# POSIX ACLs as the kernel takes them in system.posix_acl_access and _default.
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 1, 2, 4, 8, 0x10, 0x20


def posix_acl(*entries):
    """The binary value of an ACL: (tag, permissions, id or None), in the kernel's order."""
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, 0xFFFFFFFF if uid is None else uid)
        for tag, perm, uid in entries)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def load(data):
    """A config's value: JSON5 (and so JSON) with comments, a byte-order mark..."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json5read.loads(data)


def servers(doc, where):
    for key in where:
        doc = doc[key]
    return doc


def is_stdio(entry):
    return isinstance(entry.get("command"), str) and entry.get("type", "stdio") == "stdio"


def config(*args, input=None, cwd=None, preexec_fn=None):
    """Run `mcpmux config ARGS`: (exit status, stdout bytes, stderr text)."""
    p = subprocess.run([MCPMUX, "config"] + list(args), input=input, capture_output=True,
                       cwd=cwd, timeout=30 * SLOW, preexec_fn=preexec_fn)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def interpreter(path):
    """The dynamic loader a 64-bit little-endian ELF file asks for (PT_INTERP), or None."""
    with open(path, "rb") as f:
        elf = f.read()
    if elf[:6] != b"\x7fELF\x02\x01":
        return None
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 3:
            return elf[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def fnv1a(name):
    """The 32-bit FNV-1a hash of a server name (bytes): the tag of its log NAME."""
    h = 2166136261
    for c in name:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def as_nobody():
    """preexec_fn: run the child as nobody (65534), without supplementary groups."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


TOML = ("neither JSON nor JSON5, and it looks like TOML: TOML configs (Codex's) are not "
        "supported; mcpmux rewrites the JSON and JSON5 configs of Claude Desktop, Claude "
        "Code, Cursor, Windsurf, VS Code and OpenClaw (docs/configs.md)")


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
                b_doc, a_doc = load(read(path)), load(self.wrap_ok(path))
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
        srv = load(out)["mcp"]["servers"]
        self.assertEqual(srv["browser"]["command"], "/opt/mcpmux/bin/mcpmux")
        self.assertEqual(srv["browser"]["args"],
                         ["--log", os.path.join(logs, "browser.jsonl"), "--eof-grace", "500",
                          "--term-grace", "700", "--", "lightpanda", "mcp"])
        self.assertEqual(self.unwrap_ok("-", input=out), read(path))
        # A relative --log-dir is made absolute: the client starts servers elsewhere.
        for rel in ("logs", "./logs/"):
            rc, out, err = config("wrap", path, "--log-dir", rel, cwd=self.tmp.name)
            self.assertEqual(rc, 0, err)
            args = load(out)["mcp"]["servers"]["memory"]["args"]
            self.assertEqual(args[:2], ["--log", os.path.join(os.path.realpath(logs),
                                                              "memory.jsonl")])

    def test_a_log_dir_that_does_not_exist_is_said_and_not_made(self):
        """--log-dir DIR where DIR is not there: a warning, the entries written all the
        same (DIR/NAME.jsonl, NAME made of safe characters, a leading '.' too), and DIR
        not created."""
        logs = os.path.join(self.tmp.name, "not-yet")
        doc = b'{"mcpServers": {"my server/1": {"command": "a"}, ".hidden": {"command": "b"}}}'
        rc, out, err = config("wrap", "-", "--log-dir", logs, input=doc)
        self.assertEqual(rc, 0, err)
        self.assertIn("mcpmux: log directory '%s' does not exist yet" % logs, err)
        srv = load(out)["mcpServers"]
        self.assertEqual(srv["my server/1"]["args"],
                         ["--log", os.path.join(logs, "my_server_1.jsonl"), "--", "a"])
        self.assertEqual(srv[".hidden"]["args"],
                         ["--log", os.path.join(logs, "_hidden.jsonl"), "--", "b"])
        self.assertFalse(os.path.exists(logs))

    def test_a_log_name_has_one_underscore_a_character(self):
        """NAME in --log DIR/NAME.jsonl has one '_' for each character that is not safe, as
        docs/configs.md says, whatever its length in UTF-8 (\u00e9: two bytes, \u5929\u6c14:
        three each, an emoji: four, a lone surrogate: three), where it had one '_' a byte."""
        doc = json.dumps({"mcpServers": {
            "caf\u00e9": {"command": "a"}, "\u5929\u6c14 1": {"command": "b"},
            "\U0001f600x": {"command": "c"}, "\ud800y": {"command": "d"}}}).encode()
        rc, out, err = config("wrap", "-", "--log-dir", self.tmp.name, input=doc)
        self.assertEqual(rc, 0, err)
        logs = [e["args"][1] for e in load(out)["mcpServers"].values()]
        self.assertEqual(logs, [os.path.join(self.tmp.name, n)
                                for n in ("caf_.jsonl", "___1.jsonl", "_x.jsonl", "_y.jsonl")])

    def test_log_names_are_unique_and_the_same_on_every_run(self):
        """Servers whose names make the same NAME ("a b" and "a_b", names that differ in
        characters made '_' or in case, one name in "mcpServers" and in "servers") had one
        log file between them: the first keeps NAME, each other one gets a tag from its
        name (and "-2"... for the same name again), and a run again, on the wrapped file or
        on the original from another directory, gives the same names."""
        doc = json.dumps({
            "mcpServers": {"a b": {"command": "a"}, "a_b": {"command": "b"},
                           "caf\u00e9": {"command": "c"}, "caf\u00ea": {"command": "d"},
                           "GitHub": {"command": "e"}, "github": {"command": "f"},
                           "x" * 300: {"command": "g"}, "x" * 250: {"command": "h"},
                           "solo": {"command": "i"}},
            "servers": {"a_b": {"command": "j"}, "r": {"url": "https://r.example/mcp"}},
        }).encode()
        logs = os.path.join(self.tmp.name, "logs")
        os.mkdir(logs)
        out = self.wrap_ok("-", "--log-dir", logs, input=doc)
        wrapped = load(out)
        names = {}
        for where in ("mcpServers", "servers"):
            for sname, entry in wrapped[where].items():
                if "args" in entry:
                    self.assertEqual(entry["args"][0], "--log")
                    self.assertEqual(os.path.dirname(entry["args"][1]), logs)
                    names[(where, sname)] = os.path.basename(entry["args"][1])
        self.assertEqual(len(names), 10)
        self.assertEqual(len({n.lower() for n in names.values()}), 10, names)
        # The first of each kept its NAME; the name alone makes the others'.
        first = {("mcpServers", "a b"): "a_b.jsonl", ("mcpServers", "caf\u00e9"): "caf_.jsonl",
                 ("mcpServers", "GitHub"): "GitHub.jsonl",
                 ("mcpServers", "x" * 300): "x" * 200 + ".jsonl",
                 ("mcpServers", "solo"): "solo.jsonl"}
        for key, name in first.items():
            self.assertEqual(names[key], name)
        for key, name in names.items():
            self.assertLessEqual(len(name), 210, key)
            if key not in first:
                self.assertRegex(name, r"-[0-9a-f]{8}(-2)?\.jsonl$")
        self.assertEqual(names[("servers", "a_b")],
                         names[("mcpServers", "a_b")][:-len(".jsonl")] + "-2.jsonl")
        # Stable: the wrapped file again, and the original from elsewhere, give the same.
        self.assertEqual(self.wrap_ok("-", "--log-dir", logs, input=out), out)
        rc, again, err = config("wrap", "-", "--log-dir", "logs", input=doc, cwd=self.tmp.name)
        self.assertEqual(rc, 0, err)
        self.assertEqual(again, out.replace(logs.encode(), os.path.realpath(logs).encode()))

    def test_log_names_take_a_number_no_other_server_has(self):
        """A server named as a "-2" that the same name a third time would get
        ("A-E40C292C-2", "a" tagged, case ignored) keeps its name, and the third "a" takes
        the next number that no server has."""
        tag = "%08x" % fnv1a(b"a")
        doc = json.dumps({
            "mcpServers": {"a": {"command": "x"}, "A-%s-2" % tag.upper(): {"command": "y"}},
            "servers": {"a": {"command": "z"}},
            "mcp": {"servers": {"a": {"command": "w"}}},
        }).encode()
        out = self.wrap_ok("-", "--log-dir", self.tmp.name, input=doc)
        wrapped = load(out)
        names = [os.path.basename(e["args"][1])
                 for where in (("mcpServers",), ("servers",), ("mcp", "servers"))
                 for e in servers(wrapped, where).values()]
        self.assertEqual(names, ["a.jsonl", "A-%s-2.jsonl" % tag.upper(), "a-%s.jsonl" % tag,
                                 "a-%s-3.jsonl" % tag])
        self.assertEqual(self.wrap_ok("-", "--log-dir", self.tmp.name, input=out), out)

    def test_log_names_of_servers_that_get_no_log(self):
        """Remote servers and others wrap leaves alone write no log and take no NAME: a
        stdio server keeps its own NAME beside a remote one of the same name in a place
        before it.  The places are taken in their order (mcpServers, servers,
        mcp.servers), and a server added after all the others renames no log."""
        first = {"fx": {"url": "https://h/mcp"}, "Amb": {"command": "x", "url": "https://h/m"},
                 "none": {"env": {}}, "other": {"command": "mcpmux", "args": ["serve"]},
                 "Dup": {"command": "d"}}
        doc = {"servers": {"FX": {"command": "a"}, "amb": {"command": "b"},
                           "None": {"command": "c"}, "Other": {"command": "e"},
                           "dup": {"command": "f"}},
               "mcpServers": first}

        def logs(doc):
            rc, out, err = config("wrap", "-", "--log-dir", self.tmp.name,
                                  input=json.dumps(doc).encode())
            self.assertEqual(rc, 0, err)
            wrapped = load(out)
            return {(where, sname): os.path.basename(e["args"][1])
                    for where in ("mcpServers", "servers")
                    for sname, e in wrapped[where].items()
                    if e.get("args", [None])[0] == "--log"}

        before = logs(doc)
        self.assertEqual(before, {
            ("servers", "FX"): "FX.jsonl", ("servers", "amb"): "amb.jsonl",
            ("servers", "None"): "None.jsonl", ("servers", "Other"): "Other.jsonl",
            ("mcpServers", "Dup"): "Dup.jsonl",
            ("servers", "dup"): "dup-%08x.jsonl" % fnv1a(b"dup")})
        # Added after the others (in the last place): the others keep theirs.
        doc["servers"]["fX"] = {"command": "g"}
        doc["servers"]["new"] = {"command": "h"}
        after = logs(doc)
        self.assertEqual({k: after[k] for k in before}, before)
        self.assertEqual(after[("servers", "fX")], "fX-%08x.jsonl" % fnv1a(b"fX"))
        self.assertEqual(after[("servers", "new")], "new.jsonl")

    def test_a_wrapped_entry_with_a_url_is_updated(self):
        """An entry with a "command" and a "url" that an earlier mcpmux wrapped is updated
        with the options given, as any wrapped entry is, without a warning."""
        hand = (b'{"mcpServers": {"both": {"command": "/x/mcpmux", "args": ["--", "npx"], '
                b'"url": "https://h/mcp"}}}')
        out = self.wrap_ok("-", "--idle-timeout", "60", input=hand)
        self.assertEqual(load(out)["mcpServers"]["both"], {
            "command": "/x/mcpmux", "args": ["--idle-timeout", "60", "--", "npx"],
            "url": "https://h/mcp"})

    def test_bad_args_beside_a_url_are_refused_and_an_empty_url_is_none(self):
        """"args" that are not strings are refused beside a "url" as anywhere, and
        "url": "" is no URL: the entry is a stdio server."""
        rc, out, err = config("wrap", "-", input=b'{"mcpServers": {"s": {"command": "npx", '
                              b'"args": "srv", "url": "https://h/mcp"}}}')
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, b"")
        self.assertIn('server s: "args" must be an array of strings', err)
        out = self.wrap_ok("-", input=b'{"mcpServers": {"s": {"command": "npx", "url": ""}}}')
        self.assertEqual(load(out)["mcpServers"]["s"],
                         {"args": ["--", "npx"], "command": MCPMUX_PATH, "url": ""})

    def test_an_entry_with_a_command_and_a_url_is_left_alone(self):
        """An entry with a "command" and a "url" (or "serverUrl"), and no "type" that is
        not "stdio", may be taken as either by a client: wrap leaves it as it is, byte for
        byte, and says so (on stdout, --dry-run and --in-place alike); unwrap of such an
        entry that was wrapped before gives it back whole, URL and all."""
        text = (b'{"mcpServers": {\n'
                b'  "both": {"command": "npx", "args": ["srv"], "url": "https://h/mcp"},\n'
                b'  "typed": {"type": "stdio", "command": "npx", "serverUrl": "https://h/m"},\n'
                b'  "remote": {"type": "http", "command": "npx", "url": "https://h/mcp"},\n'
                b'  "plain": {"command": "srv"}\n}}\n')
        path = os.path.join(self.tmp.name, "mcp.json")
        write(path, text)
        warning = ("mcpmux: %s: server %s has both a \"command\" and a URL, and a client may "
                   "take either: left as it is")
        rc, out, err = config("wrap", path)
        self.assertEqual(rc, 0, err)
        for sname in ("both", "typed"):
            self.assertIn(warning % (path, sname), err)
        self.assertNotIn("remote", err)
        srv = load(out)["mcpServers"]
        for sname in ("both", "typed", "remote"):
            self.assertEqual(srv[sname], load(text)["mcpServers"][sname])
        self.assertEqual(srv["plain"]["command"], MCPMUX_PATH)
        self.assertEqual(out.splitlines()[1:4], text.splitlines()[1:4])
        rc, out, err = config("wrap", path, "-n")
        self.assertEqual(rc, 0, err)
        self.assertIn(warning % (path, "both"), err)
        self.assertEqual(out.decode().splitlines()[:3], [
            'skip   both: ambiguous: both "command" and a URL (https://h/mcp)',
            'skip   typed: ambiguous: both "command" and a URL (https://h/m)',
            "skip   remote: remote (https://h/mcp)"])
        rc, out, err = config("wrap", path, "--in-place")
        self.assertEqual(rc, 0, err)
        self.assertIn(warning % (path, "typed"), err)
        self.assertEqual(read(path).splitlines()[1:4], text.splitlines()[1:4])
        # Wrapped by hand (or by an mcpmux before this one): unwrap restores it.
        hand = b'{"mcpServers": {"both": {"command": "/x/mcpmux", "args": ["--", "npx"], ' \
               b'"url": "https://h/mcp"}}}'
        self.assertEqual(self.unwrap_ok("-", input=hand),
                         b'{"mcpServers": {"both": {"command": "npx", "args": [], '
                         b'"url": "https://h/mcp"}}}')

    def test_a_relative_mcpmux_path_is_made_absolute(self):
        """--mcpmux PATH with a '/' that is not absolute is made absolute against the
        working directory (cleaned of "." and "..") and the wrapped entry starts from any
        other directory, as a client starts it; a bare name is kept, for the client's PATH
        to find."""
        bindir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bindir)
        os.symlink(os.path.abspath(MCPMUX), os.path.join(bindir, "mcpmux"))
        real = os.path.join(os.path.realpath(self.tmp.name), "bin", "mcpmux")
        doc = json.dumps({"mcpServers": {"fx": {"command": FIXTURE}}}).encode()
        for given in ("./bin/mcpmux", "bin/mcpmux", "bin/../bin/./mcpmux", "bin//mcpmux"):
            with self.subTest(given=given):
                rc, out, err = config("wrap", "-", "--mcpmux", given, input=doc,
                                      cwd=self.tmp.name)
                self.assertEqual(rc, 0, err)
                entry = load(out)["mcpServers"]["fx"]
                self.assertEqual(entry["command"], real)
                self.assertEqual(self.unwrap_ok("-", "--mcpmux", given, input=out), doc)
        # Started elsewhere, as a client starts it: mcpmux runs and the server answers.
        p = subprocess.run([entry["command"], *GRACE] + entry["args"], cwd="/",
                           capture_output=True, timeout=30 * SLOW, input=encode(initialize(1)))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("result", json.loads(p.stdout.splitlines()[0]))
        rc, out, err = config("wrap", "-", "--mcpmux", "mcpmux", input=doc, cwd=self.tmp.name)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out)["mcpServers"]["fx"]["command"], "mcpmux")

    def test_an_entry_wrapped_with_a_relative_mcpmux_path_is_recognised(self):
        """An entry wrapped before with a relative --mcpmux PATH ("command":
        "bin/mux-wrapper", a name other than mcpmux) is recognised by that PATH as written,
        as well as made absolute: wrap updates it (its command made absolute) rather than
        wrapping it again, and unwrap restores it from the directory, from another one,
        and from one that is gone."""
        bindir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bindir)
        os.symlink(os.path.abspath(MCPMUX), os.path.join(bindir, "mux-wrapper"))
        real = os.path.join(os.path.realpath(self.tmp.name), "bin", "mux-wrapper")
        given = ("--mcpmux", "bin/mux-wrapper")
        plain = json.dumps({"mcpServers": {"fx": {"command": FIXTURE, "args": []}}}).encode()
        rel = json.dumps({"mcpServers": {"fx": {"command": "bin/mux-wrapper",
                                                "args": ["--", FIXTURE]}}}).encode()
        rc, out, err = config("wrap", "-", *given, input=rel, cwd=self.tmp.name)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out)["mcpServers"]["fx"],
                         {"command": real, "args": ["--", FIXTURE]})
        rc, again, err = config("unwrap", "-", *given, input=out, cwd=self.tmp.name)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(again), load(plain))
        elsewhere = os.path.join(self.tmp.name, "elsewhere")
        os.mkdir(elsewhere)
        for cwd in (self.tmp.name, elsewhere):
            with self.subTest(cwd=cwd):
                rc, out, err = config("unwrap", "-", *given, input=rel, cwd=cwd)
                self.assertEqual(rc, 0, err)
                self.assertEqual(out, plain)
        gone = os.path.join(self.tmp.name, "gone")
        os.mkdir(gone)

        def in_a_directory_that_is_gone():
            os.chdir(gone)
            os.rmdir(gone)

        rc, out, err = config("unwrap", "-", *given, input=rel,
                              preexec_fn=in_a_directory_that_is_gone)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, plain)
        self.assertIn("cannot find the working directory for --mcpmux 'bin/mux-wrapper'", err)

    def test_an_entry_whose_command_is_mcpmux_by_another_name_is_recognised(self):
        """An entry whose command is the file --mcpmux PATH names, or the mcpmux running,
        by another path (a symlink, a versioned name, a name other than mcpmux) is wrapped
        already: wrap updates it rather than wrapping it twice, and unwrap restores it,
        with or without --mcpmux.  An absolute command that is another file is wrapped;
        a copy of mcpmux is known by the file --mcpmux PATH names."""
        bindir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bindir)
        versioned = os.path.join(bindir, "mcpmux-1.2")
        mux = os.path.join(bindir, "mux")
        other = os.path.join(bindir, "mux-other")
        os.symlink(MCPMUX_REAL, versioned)
        os.symlink(versioned, mux)
        shutil.copy(FIXTURE, other)
        plain = {"mcpServers": {"fx": {"command": FIXTURE, "args": ["-x"]}}}
        plain_text = json.dumps(plain).encode()

        def wrapped(command, inner=FIXTURE):
            return {"mcpServers": {"fx": {"command": command, "args": ["--", inner, "-x"]}}}

        rc, by_mux, err = config("wrap", "-", "--mcpmux", mux, input=plain_text)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(by_mux), wrapped(mux))
        for given in (mux, versioned, MCPMUX_PATH):
            with self.subTest(wrap_again_with=given):
                rc, out, err = config("wrap", "-", "--mcpmux", given, input=by_mux)
                self.assertEqual(rc, 0, err)
                self.assertEqual(load(out), wrapped(given))
            with self.subTest(unwrap_with=given):
                rc, out, err = config("unwrap", "-", "--mcpmux", given, input=by_mux)
                self.assertEqual(rc, 0, err)
                self.assertEqual(load(out), plain)
        # Without --mcpmux: the running mcpmux is the file the entry names.
        rc, out, err = config("wrap", "-", input=by_mux)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, by_mux)
        rc, out, err = config("wrap", "-", "--dry-run", input=by_mux)
        self.assertEqual((rc, out), (0, b"skip   fx: already runs through mcpmux\n"), err)
        rc, out, err = config("unwrap", "-", input=by_mux)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out), plain)
        # Another file is a server, whatever its name.
        by_other = json.dumps(wrapped(other)).encode()
        rc, out, err = config("wrap", "-", "--mcpmux", mux, input=by_other)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out)["mcpServers"]["fx"]["args"], ["--", other, "--", FIXTURE, "-x"])
        rc, out, err = config("unwrap", "-", input=by_other)
        self.assertEqual((rc, out), (0, by_other), err)
        # A copy of mcpmux (another file than the one running) is known through --mcpmux
        # PATH alone: by a symlink to it, the entry naming the copy itself.
        copydir = os.path.join(self.tmp.name, "copy")
        os.mkdir(copydir)
        copy = os.path.join(copydir, "mcpmux-1.2")
        copy_mux = os.path.join(copydir, "mux")
        shutil.copy(MCPMUX_REAL, copy)
        os.symlink(copy, copy_mux)
        by_copy = json.dumps(wrapped(copy)).encode()
        rc, out, err = config("wrap", "-", "--mcpmux", copy_mux, input=by_copy)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out), wrapped(copy_mux))
        rc, out, err = config("unwrap", "-", "--mcpmux", copy_mux, input=by_copy)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out), plain)

    def test_run_through_the_dynamic_loader(self):
        """Run as "ld.so mcpmux config ...", the running program is the loader: an entry
        whose command is the loader is a server to wrap, not an mcpmux to unwrap, and
        without --mcpmux there is no path of mcpmux to write: it says so and fails."""
        loader = interpreter(MCPMUX_REAL)
        if loader is None:
            self.skipTest("mcpmux asks for no dynamic loader")
        entry = {"mcpServers": {"l": {"command": loader, "args": ["--", FIXTURE, "-x"]}}}
        text = json.dumps(entry).encode()

        def run(*args):
            p = subprocess.run([loader, MCPMUX, "config"] + list(args), input=text,
                               capture_output=True, timeout=30 * SLOW)
            return p.returncode, p.stdout, p.stderr.decode()

        rc, out, err = run("unwrap", "-", "--mcpmux", MCPMUX_PATH)
        self.assertEqual((rc, out), (0, text), err)
        rc, out, err = run("wrap", "-", "--mcpmux", MCPMUX_PATH)
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out), {"mcpServers": {"l": {
            "command": MCPMUX_PATH, "args": ["--", loader, "--", FIXTURE, "-x"]}}})
        for op in ("wrap", "unwrap"):
            with self.subTest(op=op):
                rc, out, err = run(op, "-")
                self.assertEqual((rc, out), (1, b""), err)
                self.assertIn("give it with --mcpmux PATH", err)

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

    def test_dry_run_shows_no_control_character(self):
        """A project's .mcp.json is its author's: the names and values --dry-run and the
        messages show have each control character as '?', C1 ones too (U+009B is CSI, which a
        terminal takes as ESC [ does), and every other character as it is."""
        text = json.dumps({"mcpServers": {
            "a\u009b2J\x1b[31m\u0085": {"command": "x\u009b2J", "args": ["\u00e9\u009f"]},
            "r\u009b": {"url": "https://h/\u0080"},
            "t": {"type": "s\u009bse"},
            "n\u0000ul": {"command": "x\u0000y"},
        }}).encode()
        rc, out, err = config("wrap", "-", "-n", "--mcpmux", "/m/mcpmux", input=text)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode().splitlines(), [
            "wrap   'a?2J?[31m?': 'x?2J' '\u00e9?' -> /m/mcpmux -- 'x?2J' '\u00e9?'",
            "skip   'r?': remote (https://h/?)",
            "skip   t: remote (type s?se)",
            "wrap   'n?ul': 'x?y' -> /m/mcpmux -- 'x?y'",  # (NUL, which cut the line short)
        ])
        rc, out, err = config("wrap", "-", input=json.dumps(
            {"mcpServers": {"\u009b": {"command": 1}}}).encode())
        self.assertEqual((rc, out), (1, b""))
        self.assertEqual(err, "mcpmux: <stdin>:1:39: server '?': \"command\" is a number, "
                         "expected a string\n")

    def test_dry_run_output_that_cannot_be_written_or_must_wait(self):
        """--dry-run's lines go out as the new text does: a full disk fails the run (where
        stdio dropped the lines it could not write, and its last flush, with nothing left,
        passed), and a full non-blocking stdout (a pipe its reader shares with others) is
        waited on, not cut short."""
        path = os.path.join(self.tmp.name, "mcp.json")
        write(path, json.dumps({"mcpServers": {"a": {"command": "x" * 6000}}}).encode())
        with open("/dev/full", "wb") as full:
            p = subprocess.run([MCPMUX, "config", "wrap", "--dry-run", path], stdout=full,
                               stderr=subprocess.PIPE, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"cannot write to stdout: No space left on device", p.stderr)
        write(path, json.dumps({"mcpServers": {"s%d" % i: {"command": "srv", "args": ["y" * 50]}
                                               for i in range(300)}}).encode())
        rc, want, err = config("wrap", "--dry-run", path)
        self.assertEqual(rc, 0, err)
        self.assertGreater(len(want), 8 * 4096)
        r, w = os.pipe()
        p = None
        try:
            os.set_blocking(w, False)
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
            size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
            p = subprocess.Popen([MCPMUX, "config", "wrap", "--dry-run", path], stdout=w,
                                 stderr=subprocess.PIPE)
            os.close(w)
            w = -1
            # The pipe full: the next write of mcpmux's meets EAGAIN.
            wait_until(lambda: struct.unpack("i", fcntl.ioctl(
                r, termios.FIONREAD, struct.pack("i", 0)))[0] >= size, 10, "stdout full")
            out = b""
            deadline = time.monotonic() + 30 * SLOW
            while True:
                ready, _, _ = select.select([r], [], [], max(0, deadline - time.monotonic()))
                self.assertTrue(ready, "stdout never ended")
                b = os.read(r, 65536)
                if not b:
                    break
                out += b
            self.assertEqual(p.wait(timeout=30 * SLOW), 0)
            self.assertEqual(p.stderr.read(), b"")
            self.assertEqual(out, want)
        finally:
            os.close(r)
            if w != -1:
                os.close(w)
            if p is not None:
                if p.poll() is None:
                    p.kill()
                p.wait()
                p.stderr.close()

    @unittest.skipIf(SANITIZED, "a sanitizer's allocator takes address space of its own")
    def test_hostile_files_take_memory_in_proportion(self):
        """A file of a million empty servers, of millions of arguments, or of a key
        repeated a million times is refused (more values than any client's config holds)
        within 8 times its size and a constant of address space, where each value kept
        took hundreds of bytes (1.36 GB for the 6 MB of a million servers); a file just
        under the bound is rewritten within the same."""
        def run(name, text, *args):
            path = os.path.join(self.tmp.name, name)
            write(path, text)
            limit = 8 * len(text) + (192 << 20)
            return config("wrap", *args, path, preexec_fn=lambda: resource.setrlimit(
                resource.RLIMIT_AS, (limit, limit)))

        refused = "more than 100000 servers, members of servers and arguments in all"
        for name, text in (
                ("servers.json", b'{"mcpServers":{' + b'"":{},' * 1000000 + b'"a":{}}}'),
                ("args.json", b'{"mcpServers":{"a":{"command":"x","args":['
                 + b'"",' * 2000000 + b'""]}}}'),
                ("keys.json", b"{" + b'"mcpServers":{},' * 400000 + b'"x":1}')):
            with self.subTest(file=name):
                rc, out, err = run(name, text, "--dry-run")
                self.assertEqual(rc, 1, err)
                self.assertIn(refused, err)
                self.assertEqual(out, b"")
        text = b'{"mcpServers":{' + b'"":{"command":""},' * 49990 + b'"a":{}}}'
        rc, out, err = run("many.json", text, "--log-dir", self.tmp.name)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out.count(b'"command":"%s"' % MCPMUX_PATH.encode()), 49990)

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
        # The backup is beside the file itself: its documented undo keeps the link a link.
        self.assertFalse(os.path.exists(link + ".bak"))
        self.assertEqual(read(real + ".bak"), read(os.path.join(CONFIGS, "cursor-mcp.json")))
        self.assertIn("backup in %s.bak" % os.path.realpath(real), err)
        os.rename(real + ".bak", real)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(read(link), read(os.path.join(CONFIGS, "cursor-mcp.json")))

    def test_a_rewrite_that_fails_leaves_no_backup(self):
        """The file cannot be replaced (here: a mount point, as a read-only bind mount of
        a config is): nothing is written, and no backup of a rewrite that did not happen
        stays to be kept, older, by the next run."""
        path = self.copy("cursor-mcp.json")
        if subprocess.run(["mount", "--bind", path, path], capture_output=True).returncode:
            self.skipTest("cannot bind-mount a file here")
        try:
            rc, _, err = config("wrap", "--in-place", path)
        finally:
            subprocess.run(["umount", path], capture_output=True)
        self.assertEqual(rc, 1)
        self.assertIn("cannot replace", err)
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["cursor-mcp.json"])
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("an older one", err)

    def test_in_place_refuses_a_backup_name_that_is_not_a_file(self):
        """A FILE.bak that is a directory or a dangling symlink is no older backup to keep:
        the rewrite is refused, where it went on with no backup at all."""
        for kind in ("dangling-symlink", "directory"):
            with self.subTest(kind=kind):
                d = os.path.join(self.tmp.name, kind)
                os.mkdir(d)
                path = os.path.join(d, "cursor-mcp.json")
                write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")))
                orig = read(path)
                if kind == "directory":
                    os.mkdir(path + ".bak")
                else:
                    os.symlink(os.path.join(d, "gone"), path + ".bak")
                rc, out, err = config("wrap", "--in-place", path)
                self.assertEqual(rc, 1, err)
                self.assertIn("'%s.bak' exists but is not a file" % os.path.realpath(path),
                              err)
                self.assertEqual(read(path), orig)
                self.assertEqual(sorted(os.listdir(d)),
                                 ["cursor-mcp.json", "cursor-mcp.json.bak"])
        # A symlink to a file is a backup, an older one: kept.
        d = os.path.join(self.tmp.name, "symlink")
        os.mkdir(d)
        path = os.path.join(d, "cursor-mcp.json")
        write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")))
        write(os.path.join(d, "saved"), read(path))
        os.symlink("saved", path + ".bak")
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertIn("an older one, kept", err)

    def test_in_place_refuses_a_backup_name_that_is_the_file_itself(self):
        """A FILE.bak that is a symlink to FILE (or to the link FILE is) is no copy: kept as
        an older backup, it would show the new text once FILE is replaced, and the original
        would be lost while the message named its backup.  The rewrite is refused."""
        for via_link in (False, True):
            with self.subTest(via_link=via_link):
                d = os.path.join(self.tmp.name, "itself-%d" % via_link)
                os.mkdir(d)
                real = os.path.join(d, "cursor-mcp.json")
                write(real, read(os.path.join(CONFIGS, "cursor-mcp.json")))
                orig = read(real)
                os.symlink("cursor-mcp.json", real + ".bak")
                path = real
                if via_link:
                    path = os.path.join(d, "link.json")
                    os.symlink("cursor-mcp.json", path)
                rc, out, err = config("wrap", "--in-place", path)
                self.assertEqual((rc, out), (1, b""), err)
                self.assertEqual(err, "mcpmux: '%s.bak' is the file itself (a symlink to it), "
                                 "not a copy: no backup can be made (nothing written)\n"
                                 % os.path.realpath(real))
                self.assertEqual(read(real), orig)
                self.assertEqual(os.readlink(real + ".bak"), "cursor-mcp.json")
                self.assertEqual(sorted(os.listdir(d)), sorted(
                    ["cursor-mcp.json", "cursor-mcp.json.bak"] + ["link.json"] * via_link))

    def test_in_place_refuses_a_hard_linked_file(self):
        """A file with other hard links (one config shared by two clients) is refused: a
        new file renamed over one name would leave the others with the old text, parted
        for good, which unwrap cannot undo.  Without --in-place it is only read."""
        path = self.copy("cursor-mcp.json")
        other = os.path.join(self.tmp.name, "claude_desktop_config.json")
        os.link(path, other)
        orig = read(path)
        rc, out, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s: one of 2 hard links to the file" % path, err)
        self.assertEqual(read(path), orig)
        self.assertTrue(os.path.samefile(path, other))
        self.assertEqual(sorted(os.listdir(self.tmp.name)),
                         ["claude_desktop_config.json", "cursor-mcp.json"])
        self.assertNotEqual(self.wrap_ok(path), orig)

    def test_in_place_a_file_named_near_the_longest_name(self):
        """A file whose name is as long as FILE.bak allows (NAME_MAX less 4 bytes): the
        temporary name beside it is cut to fit, where the rewrite was refused ("File name
        too long") for a file that can have a backup."""
        longest = os.pathconf(self.tmp.name, "PC_NAME_MAX")
        path = os.path.join(self.tmp.name, "m" * (longest - len(".bak") - 5) + ".json")
        write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")))
        orig, want = read(path), self.wrap_ok(path)
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(path), want)
        self.assertEqual(read(path + ".bak"), orig)
        self.assertEqual(sorted(os.listdir(self.tmp.name)),
                         sorted([os.path.basename(path), os.path.basename(path) + ".bak"]))

    def test_in_place_waits_for_no_other_rewrite(self):
        """Another run rewriting the file holds a lock on it: this one writes nothing, and
        so cannot keep, as an older one, a backup that the other run may yet remove."""
        path = self.copy("cursor-mcp.json")
        orig = read(path)
        with open(path, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            rc, out, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s: locked by another process" % path, err)
        self.assertEqual(read(path), orig)
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["cursor-mcp.json"])
        # Without --in-place nothing is locked: the file is only read.
        with open(path, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            self.wrap_ok(path)
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)

    def test_in_place_keeps_the_group_in_a_set_group_id_directory(self):
        """A new file takes a set-group-ID directory's group: the rewrite gives it the
        original's group again (here as its owner, not root)."""
        if os.geteuid() != 0:
            self.skipTest("root prepares the files of another user")
        os.chmod(self.tmp.name, 0o755)  # nobody reaches the directory
        d = os.path.join(self.tmp.name, "sgid")
        os.mkdir(d)
        os.chown(d, 65534, 0)
        os.chmod(d, 0o2777)
        path = os.path.join(d, "cursor-mcp.json")
        write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")), 0o640)
        os.chown(path, 65534, 65534)

        rc, _, err = config("wrap", "--in-place", path, preexec_fn=as_nobody)
        self.assertEqual(rc, 0, err)
        for f in (path, path + ".bak"):
            st = os.stat(f)
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)),
                             (65534, 65534, 0o640), f)

    def test_in_place_says_an_owner_it_cannot_keep(self):
        """A user who may not give the files the original's group is told so for the
        backup and for the file itself, not only for the first of them; of a backup not
        made (an older one is kept), nothing is said."""
        if os.geteuid() != 0:
            self.skipTest("root prepares the files of another user")
        os.chmod(self.tmp.name, 0o755)
        d = os.path.join(self.tmp.name, "nobody")
        os.mkdir(d)
        os.chown(d, 65534, 65534)
        path = os.path.join(d, "cursor-mcp.json")
        write(path, read(os.path.join(CONFIGS, "cursor-mcp.json")), 0o644)
        os.chown(path, 65534, 0)

        rc, _, err = config("wrap", "--in-place", path, preexec_fn=as_nobody)
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot give %s the owner 65534:0" % path, err)
        self.assertIn("cannot give the backup %s.bak the owner 65534:0" % path, err)
        # Again, with the backup there: it is kept, and nothing is said of its owner.
        os.chown(path, 65534, 0)
        rc, _, err = config("unwrap", "--in-place", path, preexec_fn=as_nobody)
        self.assertEqual(rc, 0, err)
        self.assertIn("cannot give %s the owner 65534:0" % path, err)
        self.assertNotIn("the backup", err)
        self.assertIn("backup in %s.bak (an older one, kept)" % path, err)

    def test_broken_files(self):
        """A message naming the file, line and column, exit 1, the file untouched, no backup."""
        cases = [
            ("invalid.json", ":7:5: neither JSON nor JSON5: expected ',' or '}' after the "
             "member, found '\"'"),
            ("unquoted-value.json", ":4:16: neither JSON nor JSON5: expected a value, found "
             "'npx'"),
            ("unterminated-comment.json", ":3:5: neither JSON nor JSON5: unterminated comment"),
            ("wrong-type.json", ":7:12: server bad is a string, expected an object"),
            ("command-not-string.json", ":4:18: server fs: \"command\" is an array, expected a "
             "string"),
            ("no-servers.json", ": no MCP servers found"),
            # TOML (Codex's config.toml), its first line a key or a table header: said so.
            ("codex-config.toml", ":2:1: " + TOML),
            ("codex-table.toml", ":3:1: " + TOML),
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

    def test_json5_wrapped_as_by_hand(self):
        """JSON5 and commented configs: only command and args change, in the file's own
        style, every comment kept; the result is what the golden file holds."""
        for name in JSON5_CLIENTS:
            with self.subTest(client=name):
                path = os.path.join(CONFIGS, name)
                orig = read(path)
                out = self.wrap_ok(path, "--mcpmux", "/usr/local/bin/mcpmux",
                                   "--idle-timeout", "600")
                self.assertEqual(out, read(os.path.join(WRAPPED, name)))
                self.assertEqual(json5read.comments(out.decode()),
                                 json5read.comments(orig.decode()))
                self.assertGreater(len(json5read.comments(orig.decode())), 3)
                # Line by line: the lines that differ are those of command and args.
                a, b = orig.decode().splitlines(), out.decode().splitlines()
                changed = [line for line in a if line not in b]
                self.assertTrue(changed)
                for line in changed:
                    self.assertRegex(line, r"command|args|\[|\]|'-y'|\"run\"")
                self.assertEqual(self.unwrap_ok("-", input=out), orig)

    def test_options_of_a_newer_mcpmux(self):
        """--idle-timeout, --idle-suspend, --max-servers, --pool go into every wrapped
        entry; wrapping again with other values sets them, keeping the rest."""
        path = self.copy("openclaw-json5.json")
        orig = read(path)
        rc, _, err = config("wrap", "-i", path, "--idle-suspend", "300", "--max-servers=4",
                            "--pool", "browsers.v1", "--idle-timeout", "0.5",
                            "--eof-grace", "500")
        self.assertEqual(rc, 0, err)
        srv = load(read(path))["mcp"]["servers"]
        self.assertEqual(srv["browser"]["args"],
                         ["--eof-grace", "500", "--idle-timeout", "0.5", "--idle-suspend", "300",
                          "--max-servers", "4", "--pool", "browsers.v1", "--", "lightpanda",
                          "mcp", "--host", "127.0.0.1"])
        wrapped = read(path)
        # A different idle-suspend: that value changes, nothing else.
        rc, out, err = config("wrap", path, "-n", "--idle-suspend", "60")
        self.assertEqual(rc, 0, err)
        self.assertIn("update browser: %s --eof-grace 500 --idle-timeout 0.5 --idle-suspend 300 "
                      "--max-servers 4 --pool browsers.v1 -- lightpanda mcp --host 127.0.0.1 -> "
                      "%s --eof-grace 500 --idle-timeout 0.5 --idle-suspend 60 --max-servers 4 "
                      "--pool browsers.v1 -- lightpanda mcp --host 127.0.0.1"
                      % (MCPMUX_PATH, MCPMUX_PATH), out.decode())
        rc, _, err = config("wrap", "-i", path, "--idle-suspend", "60")
        self.assertEqual(rc, 0, err)
        self.assertIn("updated 3 of 4 servers", err)
        # The same as wrapping the original with the options as they now are.
        self.assertEqual(read(path), self.wrap_ok(
            "-", "--idle-suspend", "60", "--max-servers=4", "--pool", "browsers.v1",
            "--idle-timeout", "0.5", "--eof-grace", "500", input=orig))
        # An option not there yet goes before "--"; the same options again change nothing.
        rc, _, err = config("wrap", "-i", path, "--term-grace", "100", "--idle-suspend", "60")
        self.assertEqual(rc, 0, err)
        srv = load(read(path))["mcp"]["servers"]
        self.assertEqual(srv["notes"]["args"][-4:],
                         ["--term-grace", "100", "--", "/opt/mcp/bin/notes-server"])
        mtime = os.stat(path).st_mtime_ns
        rc, _, err = config("wrap", "-i", path, "--term-grace", "100")
        self.assertIn("no server to wrap", err)
        self.assertEqual(os.stat(path).st_mtime_ns, mtime)
        # Unwrap: the original, whatever the options became.
        rc, _, err = config("unwrap", "-i", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(path), orig)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to give files away")
    def test_in_place_keeps_owner_group_and_mode(self):
        """The backup and the new file have the original's owner, group and mode."""
        path = self.copy("openclaw-json5.json", mode=0o640)
        os.chown(path, 65534, 65534)
        orig = read(path)
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("warning", err)
        for f in (path, path + ".bak"):
            with self.subTest(file=f):
                st = os.stat(f)
                self.assertEqual((st.st_uid, st.st_gid), (65534, 65534))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(read(path + ".bak"), orig)
        # And back: the same again, the backup kept.
        rc, _, err = config("unwrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        st = os.stat(path)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (65534, 65534, 0o640))
        self.assertEqual(read(path), orig)

    def xattrs_or_skip(self, path):
        try:
            os.setxattr(path, "user.mcpmux-test", b"kept")
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EPERM):
                self.skipTest(f"no extended attributes here: {e}")
            raise

    def test_in_place_keeps_extended_attributes_and_the_acl(self):
        """The backup and the new file have the original's extended attributes: a user
        attribute and an access ACL that lets another user read it."""
        path = self.copy("claude_desktop_config.json", mode=0o640)
        self.xattrs_or_skip(path)
        # user::rw-, user:65534:r--, group::r--, mask::r--, other::---
        acl = posix_acl((ACL_USER_OBJ, 6, None), (ACL_USER, 4, 65534),
                        (ACL_GROUP_OBJ, 4, None), (ACL_MASK, 4, None), (ACL_OTHER, 0, None))
        os.setxattr(path, ACL_ACCESS, acl)
        want_acl = os.getxattr(path, ACL_ACCESS)
        orig = read(path)
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("warning", err)
        self.assertNotEqual(read(path), orig)
        for f in (path, path + ".bak"):
            with self.subTest(file=f):
                self.assertEqual(os.getxattr(f, "user.mcpmux-test"), b"kept")
                self.assertEqual(os.getxattr(f, ACL_ACCESS), want_acl)
                self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o640)

    def test_in_place_gives_no_acl_the_original_did_not_have(self):
        """A directory whose default ACL lets another user in: a file made there gets an
        access ACL of its own, and the original had none; the new file and the backup have
        none either."""
        path = self.copy("claude_desktop_config.json", mode=0o640)
        self.xattrs_or_skip(path)
        os.setxattr(self.tmp.name, ACL_DEFAULT,
                    posix_acl((ACL_USER_OBJ, 7, None), (ACL_USER, 6, 65534),
                              (ACL_GROUP_OBJ, 5, None), (ACL_MASK, 6, None),
                              (ACL_OTHER, 0, None)))
        probe = os.path.join(self.tmp.name, "probe")
        write(probe, b"{}")
        self.assertTrue(os.getxattr(probe, ACL_ACCESS))  # the default applies
        os.unlink(probe)
        with self.assertRaises(OSError):
            os.getxattr(path, ACL_ACCESS)
        rc, _, err = config("wrap", "--in-place", path)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("warning", err)
        for f in (path, path + ".bak"):
            with self.subTest(file=f):
                with self.assertRaises(OSError) as cm:
                    os.getxattr(f, ACL_ACCESS)
                self.assertEqual(cm.exception.errno, errno.ENODATA)
                self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o640)

    def test_mcpmux_path_of_a_symlinked_install(self):
        """The entry holds the path a user types: the symlink on PATH that survives an
        upgrade, not the versioned file it points to."""
        root = self.tmp.name
        versioned = os.path.join(root, "Cellar", "mcpmux", "1.2.3", "bin")
        bindir = os.path.join(root, "bin")
        os.makedirs(versioned)
        os.makedirs(bindir)
        real = os.path.join(versioned, "mcpmux")
        shutil.copy2(MCPMUX_REAL, real)
        link = os.path.join(bindir, "mcpmux")
        os.symlink("../Cellar/mcpmux/1.2.3/bin/mcpmux", link)
        # Another mcpmux earlier on PATH that is not this one is passed over.
        other = os.path.join(root, "other")
        os.makedirs(other)
        write(os.path.join(other, "mcpmux"), b"#!/bin/sh\nexit 0\n", 0o755)
        path = self.copy("cursor-mcp.json")

        def entry_command(argv, path_env, cwd=None):
            env = dict(os.environ, PATH=path_env)
            p = subprocess.run(argv + ["config", "wrap", path], env=env, cwd=cwd,
                               capture_output=True, timeout=30 * SLOW)
            self.assertEqual(p.returncode, 0, p.stderr)
            return load(p.stdout)["mcpServers"]["github"]["command"]

        # Started by name, found on PATH: the symlink.
        self.assertEqual(entry_command(["mcpmux"], "relative/dir:%s/:/usr/bin:/bin" % bindir),
                         link)
        # Started by its versioned path: still the symlink on PATH, past the other mcpmux.
        search = "relative/dir:%s:%s/:/usr/bin:/bin" % (other, bindir)
        self.assertEqual(entry_command([real], search), link)
        # Not on PATH: the path it was started by, made absolute and clean.
        self.assertEqual(entry_command([real], "/usr/bin:/bin"), real)
        self.assertEqual(entry_command(["./bin/../bin/mcpmux"], "/usr/bin:/bin", cwd=root),
                         link)
        # Neither: /proc/self/exe.
        p = subprocess.run(["bash", "-c", 'exec -a mcpmux "$0" config wrap "$1"', real, path],
                           env=dict(os.environ, PATH="/usr/bin:/bin"), capture_output=True,
                           timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(load(p.stdout)["mcpServers"]["github"]["command"], real)
        # --mcpmux says otherwise.
        rc, out, err = config("wrap", path, "--mcpmux", "mcpmux")
        self.assertEqual(rc, 0, err)
        self.assertEqual(load(out)["mcpServers"]["github"]["command"], "mcpmux")

    def test_rewrap_after_an_upgrade(self):
        """Entries written with an older install's path get the new one with --mcpmux."""
        path = self.copy("claude-code.mcp.json")
        old = "/opt/homebrew/Cellar/mcpmux/0.1.0/bin/mcpmux"
        rc, _, err = config("wrap", "-i", path, "--mcpmux", old)
        self.assertEqual(rc, 0, err)
        # Plain wrap: already wrapped, left alone.
        rc, out, err = config("wrap", path, "-n")
        self.assertIn("skip   airtable: already runs through mcpmux", out.decode())
        rc, out, err = config("wrap", "-i", path, "--mcpmux", "/opt/homebrew/bin/mcpmux")
        self.assertEqual(rc, 0, err)
        self.assertIn("updated 2 of 4 servers", err)
        doc = load(read(path))["mcpServers"]
        self.assertEqual(doc["airtable"]["command"], "/opt/homebrew/bin/mcpmux")
        self.assertEqual(doc["airtable"]["args"], ["--", "npx", "-y", "airtable-mcp-server"])
        rc, _, err = config("unwrap", "-i", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(path), read(os.path.join(CONFIGS, "claude-code.mcp.json")))

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

    @staticmethod
    def open_writer(fifo):
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            return None

    def test_output_to_the_file_itself_is_refused(self):
        """`config wrap FILE >> FILE` (or `- < FILE >> FILE`, --dry-run alike, with
        --in-place too) writes nothing: the result after the text was a second document, a
        file no client reads.  After `> FILE` the shell has emptied it: mcpmux says so.
        With stderr on FILE too (`2>&1`), nothing is said there: exit 1 alone."""
        path = self.copy("cursor-mcp.json")
        text = read(path)
        for args, what, hint in (
                (["wrap", path], "the result", True),
                (["wrap", "--dry-run", path], "the lines of --dry-run", True),
                (["wrap", "--in-place", "--dry-run", path], "the lines of --dry-run", False),
                (["unwrap", "--dry-run", "--in-place", path], "the lines of --dry-run", False),
                (["unwrap", path], "the result", True),
                (["wrap", "-"], "the result", False)):
            with self.subTest(args=args):
                write(path, text)
                with open(path, "ab") as out, open(path, "rb") as inp:
                    p = subprocess.run([MCPMUX, "config"] + args, stdin=inp, stdout=out,
                                       stderr=subprocess.PIPE, timeout=30 * SLOW)
                err = p.stderr.decode()
                self.assertEqual(p.returncode, 1, err)
                self.assertIn("is also the standard output, where %s would go: nothing "
                              "written" % what, err)
                self.assertEqual("(use --in-place to rewrite a file)" in err, hint, err)
                self.assertEqual(read(path), text)
                # stderr on the file too: not a byte more in it.
                with open(path, "ab") as out, open(path, "rb") as inp:
                    p = subprocess.run([MCPMUX, "config"] + args, stdin=inp, stdout=out,
                                       stderr=subprocess.STDOUT, timeout=30 * SLOW)
                self.assertEqual(p.returncode, 1)
                self.assertEqual(read(path), text)
        with open(path, "wb") as out:
            p = subprocess.run([MCPMUX, "config", "wrap", path], stdout=out,
                               stderr=subprocess.PIPE, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("%s: is also the standard output, where the result would go: nothing "
                      "written; it is empty (a shell's '>' empties the file before mcpmux "
                      "runs) (use --in-place to rewrite a file)\n" % path, p.stderr.decode())
        self.assertEqual(read(path), b"")
        # A file that was empty already, and >>: no word of a '>'.
        with open(path, "ab") as out:
            p = subprocess.run([MCPMUX, "config", "wrap", path], stdout=out,
                               stderr=subprocess.PIPE, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("%s: is also the standard output, where the result would go: nothing "
                      "written; it is empty (use --in-place to rewrite a file)\n" % path,
                      p.stderr.decode())
        self.assertEqual(read(path), b"")
        # Another file, or the file --in-place with stdout on it, is written as ever.
        write(path, text)
        other = os.path.join(self.tmp.name, "out.json")
        with open(other, "wb") as out:
            p = subprocess.run([MCPMUX, "config", "wrap", path], stdout=out,
                               stderr=subprocess.PIPE, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"mcpmux", read(other))
        with open(path, "ab") as out:
            p = subprocess.run([MCPMUX, "config", "wrap", "--in-place", path], stdout=out,
                               stderr=subprocess.PIPE, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read(path), read(other))
        self.assertEqual(read(path + ".bak"), text)

    def test_in_place_refuses_what_is_not_a_file(self):
        """--in-place on a FIFO (here with no writer) or a device is refused at once,
        where the FIFO's open waited for a writer for ever; without --in-place a FIFO
        is read as a pipe is."""
        fifo = os.path.join(self.tmp.name, "mcp.json")
        os.mkfifo(fifo)
        for path in (fifo, os.devnull):
            with self.subTest(path=path):
                p = subprocess.run([MCPMUX, "config", "wrap", "--in-place", path],
                                   capture_output=True, timeout=10 * SLOW)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("%s: not a regular file: cannot replace it --in-place" % path,
                              p.stderr.decode())
                self.assertEqual(p.stdout, b"")
        self.assertTrue(stat.S_ISFIFO(os.stat(fifo).st_mode))
        self.assertEqual(os.listdir(self.tmp.name), ["mcp.json"])
        text = read(os.path.join(CONFIGS, "cursor-mcp.json"))
        p = subprocess.Popen([MCPMUX, "config", "wrap", fifo], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            # Opened for writing once mcpmux has it open for reading (ENXIO until then).
            fd = wait_until(lambda: self.open_writer(fifo), 10, "the FIFO's reader")
            os.set_blocking(fd, True)
            with os.fdopen(fd, "wb") as f:
                f.write(text)
            out, err = p.communicate(timeout=30 * SLOW)
        finally:
            if p.poll() is None:
                p.kill()
            p.communicate()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, self.wrap_ok(os.path.join(CONFIGS, "cursor-mcp.json")))

    def test_paths_that_are_not_utf8(self):
        """A JSON string holds UTF-8 alone: a --mcpmux or --log-dir path that is not is
        refused, where each bad byte became U+FFFD, a path to nothing, with status 0."""
        path = self.copy("cursor-mcp.json")
        orig = read(path)
        for args in ([b"--mcpmux", b"/opt/caf\xe9/bin/mcpmux"],
                     [b"--log-dir", os.path.join(self.tmp.name.encode(), b"caf\xe9")]):
            with self.subTest(args=args):
                rc, out, err = config("wrap", "--in-place", path, *args)
                self.assertEqual(rc, 2, err)
                self.assertIn("%s " % args[0].decode(), err)
                self.assertIn(" is not UTF-8 text", err)
                self.assertEqual(out, b"")
                self.assertEqual(read(path), orig)
                self.assertEqual(os.listdir(self.tmp.name), ["cursor-mcp.json"])
        out = self.wrap_ok(path, "--mcpmux", "/opt/caf\u00e9/bin/mcpmux")
        self.assertIn("/opt/caf\u00e9/bin/mcpmux".encode(), out)
        # Unwrap only compares the path with the entries' commands.
        self.assertEqual(self.unwrap_ok(path, b"--mcpmux", b"/opt/caf\xe9/bin/mcpmux"), orig)

    def test_usage_errors(self):
        path = os.path.join(CONFIGS, "cursor-mcp.json")
        for args in ([], ["frob", path], ["wrap"], ["wrap", path, path], ["wrap", path, "--bogus"],
                     ["unwrap", path, "--log-dir", "/tmp"], ["wrap", path, "--eof-grace", "soon"],
                     ["wrap", path, "--term-grace", "-1"], ["wrap", "-", "--in-place"],
                     ["wrap", path, "--mcpmux"], ["wrap", path, "--idle-suspend", "-1"],
                     ["wrap", path, "--idle-suspend", "soon"], ["wrap", path, "--idle-timeout=x"],
                     ["wrap", path, "--max-servers", "0"], ["wrap", path, "--max-servers", "1.5"],
                     ["wrap", path, "--max-servers", "+2"], ["wrap", path, "--pool", "a b"],
                     ["wrap", path, "--pool", "p" * 65], ["wrap", path, "--pool", "x/y"],
                     ["wrap", path, "--pool="], ["unwrap", path, "--pool", "p"],
                     ["unwrap", path, "--idle-suspend", "1"], ["unwrap", path, "--max-servers", "2"]):
            with self.subTest(args=args):
                rc, out, err = config(*args)
                self.assertEqual(rc, 2, err)
                self.assertEqual(out, b"")
                self.assertTrue(err.startswith("mcpmux: "), err)
        rc, out, _ = config("--help")
        self.assertEqual(rc, 0)
        self.assertIn(b"usage: mcpmux config wrap FILE", out)
        for opt in (b"--idle-suspend S", b"--idle-timeout S", b"--max-servers N", b"--pool NAME",
                    b"JSON5"):
            self.assertIn(opt, out)
        # The edges of what is valid.
        for args in (["--idle-suspend", "0"], ["--max-servers", "1"], ["--pool", "p" * 64],
                     ["--pool", "A-z_0.9"], ["--idle-timeout", "1e3"]):
            with self.subTest(args=args):
                rc, out, err = config("wrap", path, *args)
                self.assertEqual(rc, 0, err)


class WrappedRun(Case):
    """A wrapped entry, started as its client starts it, runs the server through mcpmux."""

    def entry_config(self, name, where, extra_opts=()):
        """The client's file with its first stdio server made the fixture, wrapped."""
        doc = load(read(os.path.join(CONFIGS, name)))
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
        return sname, servers(load(out), where)[sname]

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
                self.assertEqual(os.path.realpath("/proc/%d/exe" % p.pid), MCPMUX_REAL)
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

    def test_log_dir_with_a_name_longer_than_a_file_name(self):
        """A server name longer than a file's name may be (255 bytes), where mcpmux could
        not open its log and the server, which started before the wrap, did not start
        after it: NAME is cut to 200 characters, which leaves room for the suffix of a
        rotated copy (logrotate's "-20261206.gz" and the like)."""
        logs = os.path.join(self.tmp.name, "logs")
        os.mkdir(logs)
        sname = "s" * 300
        doc = {"mcpServers": {sname: {"command": FIXTURE}}}
        rc, out, err = config("wrap", "-", *GRACE, "--log-dir", logs,
                              input=json.dumps(doc).encode())
        self.assertEqual(rc, 0, err)
        entry = load(out)["mcpServers"][sname]
        log = os.path.join(logs, "s" * 200 + ".jsonl")
        self.assertEqual(entry["args"][:2], ["--log", log])
        p = self.start_entry(entry)
        p.send(initialize(1))
        self.assertIn("result", p.msg(), p.stderr())
        p.close_stdin()
        self.assertEqual(p.wait(), 0)
        self.assertEqual(os.listdir(logs), [os.path.basename(log)])
        with open(log) as f:
            self.assertIn("initialize", [json.loads(line).get("method") for line in f])
        os.rename(log, log + ".2026-12-06T10:00:00.gz")  # a rotated copy's name fits too


if __name__ == "__main__":
    main()
