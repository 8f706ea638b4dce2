"""Installation: `cmake --install` of the build into a DESTDIR and a prefix gives a mcpmux
that runs and reports the version of project() in CMakeLists.txt, a man page that man
renders without a warning, the documentation, and a bash completion that completes."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from mcptest import MCPMUX, SLOW, main

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.dirname(os.path.realpath(MCPMUX))
PREFIX = "/opt/mcpmux"


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*mcpmux\s+VERSION\s+([0-9][0-9.]*)", f.read())
    assert m, "no project(mcpmux VERSION x.y.z) in CMakeLists.txt"
    return m.group(1)


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(BUILD, "cmake_install.cmake")):
            raise unittest.SkipTest("%s is not a CMake build directory" % BUILD)
        cmake = shutil.which("cmake")
        if cmake is None:
            raise unittest.SkipTest("cmake is not in PATH")
        cls.tmp = tempfile.TemporaryDirectory(prefix="mcpmux-install-")
        env = dict(os.environ, DESTDIR=cls.tmp.name)
        p = subprocess.run([cmake, "--install", BUILD, "--prefix", PREFIX], env=env,
                           capture_output=True, timeout=120 * SLOW)
        if p.returncode != 0:
            cls.tmp.cleanup()
            raise AssertionError("cmake --install failed:\n%s%s" % (
                p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")))
        cls.root = cls.tmp.name + PREFIX

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

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
                     "MCPMUX_SESSION", "EXIT STATUS", "mcpmux %s" % project_version()):
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


if __name__ == "__main__":
    main()
