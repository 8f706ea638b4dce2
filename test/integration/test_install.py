"""Installation: `cmake --install` of the build into a DESTDIR and a prefix gives a mcpmux
that runs and reports the version of project() in CMakeLists.txt, a man page that man
renders without a warning, the documentation, and a bash completion that completes.

The demo: an installed `mcpmux demo` runs the helper installed beside it (the fixture
server, in libexec/mcpmux), with no path of the build in either program and neither the
build tree nor the source tree in its PATH or working directory; without the helper it
says what is missing.  A build tree's mcpmux finds the fixture beside itself."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from mcptest import MCPMUX, SLOW, Case, alive, keeper_of, main, ppid_of

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.dirname(os.path.realpath(MCPMUX))
PREFIX = "/opt/mcpmux"
HELPER = os.path.join("libexec", "mcpmux", "mcp-fixture")


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*mcpmux\s+VERSION\s+([0-9][0-9.]*)", f.read())
    assert m, "no project(mcpmux VERSION x.y.z) in CMakeLists.txt"
    return m.group(1)


INSTALL = None  # the DESTDIR, a TemporaryDirectory
ROOT = None  # DESTDIR + PREFIX


def setUpModule():
    global INSTALL, ROOT
    if not os.path.exists(os.path.join(BUILD, "cmake_install.cmake")):
        raise unittest.SkipTest("%s is not a CMake build directory" % BUILD)
    cmake = shutil.which("cmake")
    if cmake is None:
        raise unittest.SkipTest("cmake is not in PATH")
    INSTALL = tempfile.TemporaryDirectory(prefix="mcpmux-install-")
    env = dict(os.environ, DESTDIR=INSTALL.name)
    p = subprocess.run([cmake, "--install", BUILD, "--prefix", PREFIX], env=env,
                       capture_output=True, timeout=120 * SLOW)
    if p.returncode != 0:
        INSTALL.cleanup()
        raise AssertionError("cmake --install failed:\n%s%s" % (
            p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")))
    ROOT = os.path.realpath(INSTALL.name) + PREFIX


def tearDownModule():
    if INSTALL is not None:
        INSTALL.cleanup()


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = INSTALL
        cls.root = ROOT

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def test_only_under_destdir(self):
        """Everything went under DESTDIR + prefix, nothing beside it."""
        self.assertEqual(os.listdir(self.tmp.name), [PREFIX.strip("/").split("/")[0]])

    def test_binary(self):
        binary = self.path("bin", "mcpmux")
        self.assertTrue(os.access(binary, os.X_OK))
        p = subprocess.run([binary, "--version"], capture_output=True, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode(), "mcpmux %s\n" % project_version())
        # It runs a server: `true` ends at once, and mcpmux exits with its status.
        p = subprocess.run([binary, "--", "true"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([binary, "--", "false"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)

    def test_man_page(self):
        page = self.path("share", "man", "man1", "mcpmux.1")
        with open(page) as f:
            text = f.read()
        self.assertNotIn("@PROJECT_VERSION@", text)
        self.assertIn('"mcpmux %s"' % project_version(), text)
        man = shutil.which("man")
        if man is None:
            self.skipTest("man is not installed: the page was not rendered")
        env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
        p = subprocess.run([man, "--warnings", "-l", page], env=env, capture_output=True,
                           timeout=60 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr.decode(), "", "man warns")
        out = p.stdout.decode()
        for word in ("SYNOPSIS", "mcpmux serve", "mcpmux connect", "mcpmux ctl", "mcpmux log",
                     "mcpmux config", "--in-place", "--eof-grace", "--log-bodies",
                     "MCPMUX_SESSION", "EXIT STATUS", "mcpmux %s" % project_version(),
                     "../" + HELPER):
            self.assertIn(word, out)

    def test_documentation(self):
        with open(self.path("share", "doc", "mcpmux", "README.md"), "rb") as f, \
                open(os.path.join(SOURCE, "README.md"), "rb") as g:
            self.assertEqual(f.read(), g.read())
        self.assertTrue(os.path.exists(self.path("share", "doc", "mcpmux", "docs", "configs.md")))

    def test_bash_completion(self):
        comp = self.path("share", "bash-completion", "completions", "mcpmux")
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("bash is not installed")
        script = ('source "$1"; COMP_WORDS=(mcpmux config ""); COMP_CWORD=2; _mcpmux; '
                  'echo "${COMPREPLY[*]}"; COMP_WORDS=(mcpmux co); COMP_CWORD=1; _mcpmux; '
                  'echo "${COMPREPLY[*]}"; COMP_WORDS=(mcpmux sw); COMP_CWORD=1; _mcpmux; '
                  'echo "${COMPREPLY[*]}"; COMP_WORDS=(mcpmux sweep --o); COMP_CWORD=2; '
                  '_mcpmux; echo "${COMPREPLY[*]}"; complete -p mcpmux')
        p = subprocess.run([bash, "--norc", "-c", script, "bash", comp], capture_output=True,
                           timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode().splitlines(),
                         ["wrap unwrap", "connect config", "sweep", "--older-than",
                          "complete -F _mcpmux mcpmux"])


    def test_bash_completion_knows_every_option(self):
        """Each option a subcommand's --help shows is completed, and the completion knows
        which of them take a value (the word after one is not a FILE or a subcommand)."""
        comp = self.path("share", "bash-completion", "completions", "mcpmux")
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("bash is not installed")
        binary = self.path("bin", "mcpmux")

        def help_of(*sub):
            p = subprocess.run([binary] + list(sub) + ["--help"], capture_output=True,
                               timeout=30 * SLOW)
            self.assertEqual(p.returncode, 0, (sub, p.stderr))
            return p.stdout.decode()

        def options(text):
            """{option: takes a value} from option lines and [--opt VALUE] groups."""
            found = {}
            for m in re.finditer(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z-]*)( [A-Z\[])?|"
                                 r"\[(--[a-z][a-z-]*)( [A-Z]+)?\]", text):
                found[m.group(1) or m.group(3)] = bool(m.group(2) or m.group(4))
            return found

        main_help = help_of()
        wrap = options(main_help.split("options of wrap and serve:")[1]
                       .split("options of serve:")[0])
        cases = [((), wrap), (("serve",), dict(wrap, **options(help_of("serve"))))]
        for sub, words in (("connect", ()), ("ctl", ()), ("config", ("wrap",)),
                           ("demo", ()), ("ps", ()), ("sweep", ())):
            cases.append(((sub,) + words, options(help_of(sub))))
        usages = []  # one usage for show, one for stats, each on one line or more
        for line in help_of("log").split("\n\n")[0].splitlines():
            if "mcpmux log" in line:
                usages.append(line)
            else:
                usages[-1] += " " + line.strip()
        self.assertEqual(len(usages), 2, usages)
        for line in usages:
            words = line.split()
            cases.append((("log", words[words.index("log") + 1]), options(line)))
        script = ['source "$1"']
        want = []
        for words, opts in cases:
            self.assertGreater(len(opts), 0, words)
            for opt, value in sorted(opts.items()):
                cmd = " ".join(["mcpmux"] + list(words) + [opt])
                script.append("COMP_WORDS=(%s); COMP_CWORD=%d; _mcpmux; "
                              "echo \"%s: ${COMPREPLY[*]}\"; "
                              "_mcpmux_takes_value %s && echo \"%s: value\"" % (
                                  cmd, len(words) + 1, cmd, opt, cmd))
                want.append((cmd, opt, value))
        p = subprocess.run([bash, "--norc", "-c", "\n".join(script), "bash", comp],
                           capture_output=True, timeout=30 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode().splitlines()
        for cmd, opt, value in want:
            line = [x for x in out if x.startswith(cmd + ": ") and not x.endswith(": value")]
            self.assertEqual(len(line), 1, (cmd, out))
            self.assertIn(opt, line[0][len(cmd) + 2:].split(), "%s is not completed" % cmd)
            self.assertEqual(cmd + ": value" in out, value,
                             "%s: the completion thinks it %s a value" % (
                                 opt, "takes no" if value else "takes"))


class Demo(Case):
    """`mcpmux demo`, installed and in the build tree."""

    def run_demo(self, binary, cwd, path="/usr/bin:/bin"):
        env = dict(self.env, PATH=path)
        p = subprocess.run([binary, "demo"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60 * SLOW)
        return p, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def assert_demo_ok(self, p, out, err, server):
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn("-- %s --ignore-sigterm --daemonize-grandchild" % server, out)
        self.assertIn('server -> client {"jsonrpc":"2.0","id":2,"result":{"content":[{"type":'
                      '"text","text":"hello through mcpmux"}]}}', out)
        self.assertIn('"escalation":"kill"', out)  # it ignores SIGTERM
        self.assertRegex(out, r"processes still carrying MCPMUX_SESSION=[0-9a-f-]{36}: 0\n")
        self.assertIn("mcpmux exited with status 0", out)
        self.assertIn("demo: OK, nothing was leaked", out)
        self.assert_no_leftovers(what="the demo's server and its grandchild")

    def test_installed_programs_hold_no_build_path(self):
        """No path of the build is written into what is installed (grep -c finds 0)."""
        for rel in (os.path.join("bin", "mcpmux"), HELPER):
            with open(os.path.join(ROOT, rel), "rb") as f:
                data = f.read()
            lines = sum(1 for line in data.split(b"\n") if BUILD.encode() in line)
            self.assertEqual(lines, 0, "grep -c %s %s: %d" % (BUILD, rel, lines))

    def test_installed_demo_runs_the_installed_helper(self):
        """Run from elsewhere, with a PATH that holds neither the build nor the source."""
        helper = os.path.join(ROOT, HELPER)
        self.assertTrue(os.access(helper, os.X_OK), "%s is not installed" % HELPER)
        p, out, err = self.run_demo(os.path.join(ROOT, "bin", "mcpmux"), cwd=self.tmp.name)
        self.assert_demo_ok(p, out, err, helper)

    def test_installed_demo_without_its_helper(self):
        """A mcpmux copied alone: the demo says where it looked and what to do."""
        bindir = os.path.join(self.tmp.name, "bin")
        os.mkdir(bindir)
        binary = shutil.copy(os.path.join(ROOT, "bin", "mcpmux"), bindir)
        p, out, err = self.run_demo(binary, cwd=self.tmp.name)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("mcpmux: demo: the demo's server '%s/../%s' is not there" % (
            bindir, HELPER), err)
        self.assertIn("mcpmux demo --fixture PATH", err)
        self.assertEqual(out, "")

    def test_build_tree_demo_finds_the_fixture_beside_it(self):
        build_mcpmux = os.path.join(BUILD, "mcpmux")
        p, out, err = self.run_demo(build_mcpmux, cwd="/")
        self.assert_demo_ok(p, out, err, os.path.join(BUILD, "fixtures", "mcp-fixture"))

    def test_an_interrupted_demo_exits_once_its_mcpmux_has_ended_the_server(self):
        """Ctrl-C (SIGINT to the demo's process group) while its session runs: the demo
        exits by SIGINT, as an interrupted program does, and only once its mcpmux has ended
        the server's tree, so that nothing of the demo runs when the shell's prompt comes
        back (it used to die at once and leave its mcpmux to end the server after it)."""
        import select
        import signal
        p = subprocess.Popen([os.path.join(BUILD, "mcpmux"), "demo"], cwd=self.tmp.name,
                             env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)

        def reap():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate(timeout=30 * SLOW)
        self.addCleanup(reap)
        got = {p.stdout.fileno(): b"", p.stderr.fileno(): b""}
        end = time.monotonic() + 30 * SLOW
        # As soon as the initialize answer is out: the session runs, well before the
        # demo's end of run
        while (not re.search(rb'"id":1[,}]', got[p.stdout.fileno()]) or
               b"grandchild" not in got[p.stderr.fileno()]):
            ready = select.select(list(got), [], [], max(0, end - time.monotonic()))[0]
            self.assertTrue(ready, "the demo's session did not start: %r" % got)
            for fd in ready:
                data = os.read(fd, 65536)
                self.assertTrue(data, "the demo ended early: %r" % got)
                got[fd] += data
        # its mcpmux, the server and its grandchild (and not mcpmux's keeper, which goes
        # after mcpmux, whether the demo is there or not)
        tree = [q for q in self.tagged() if keeper_of(q) is None]
        grandchild = int(re.search(rb"grandchild (\d+)", got[p.stderr.fileno()]).group(1))
        self.assertEqual(len([q for q in tree if ppid_of(q) == p.pid]), 1, tree)
        self.assertIn(grandchild, tree)
        self.assertGreaterEqual(len(tree), 3, tree)
        os.killpg(p.pid, signal.SIGINT)
        # what is left at the demo's exit, before its output's end, which mcpmux and its
        # keeper hold too
        self.assertEqual(p.wait(30 * SLOW), -signal.SIGINT)
        left = [q for q in tree if alive(q)]
        out, err = p.communicate(timeout=30 * SLOW)
        self.assertEqual(left, [], "left when the demo exited")
        self.assertIn(b"demo: interrupted", out)


if __name__ == "__main__":
    main()
