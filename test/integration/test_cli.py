"""The command line: --help of every subcommand, --version, usage errors."""

import re
import subprocess

from mcptest import Case, MCPMUX, main


class Cli(Case):
    def run_mcpmux(self, *args):
        p = subprocess.run([MCPMUX] + list(args), capture_output=True, timeout=30,
                           env=self.env)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_help_of_every_subcommand(self):
        for sub, want in (([], "usage: mcpmux [OPTIONS] -- COMMAND"),
                          (["serve"], "usage: mcpmux serve"),
                          (["connect"], "usage: mcpmux connect"),
                          (["ctl"], "usage: mcpmux ctl"),
                          (["log"], "usage: mcpmux log"),
                          (["config"], "usage: mcpmux config"),
                          (["demo"], "usage: mcpmux demo"),
                          (["ps"], "usage: mcpmux ps"),
                          (["sweep"], "usage: mcpmux sweep")):
            rc, out, err = self.run_mcpmux(*sub, "--help")
            self.assertEqual(rc, 0, sub)
            self.assertIn(want, out, sub)
            self.assertEqual(err, "", sub)

    def test_version(self):
        rc, out, _ = self.run_mcpmux("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^mcpmux \d+\.\d+\.\d+\n$")

    def test_usage_errors_exit_2(self):
        for args in (["--bogus", "--", "true"], [], ["--eof-grace", "x", "--", "true"],
                     ["--max-sessions", "3", "--", "true"], ["log", "bogus"],
                     ["demo", "--bogus"], ["ctl"], ["serve", "--listen"]):
            rc, _, err = self.run_mcpmux(*args)
            self.assertEqual(rc, 2, args)
            self.assertTrue(re.search(r"mcpmux", err), (args, err))

    def test_a_session_id_or_a_pool_name_out_of_its_bounds_is_a_usage_error(self):
        """connect --session: 1 to 128 of A-Z a-z 0-9 . _ : @ -; --pool: 1 to 64 of
        A-Z a-z 0-9 . _ - (the man page)."""
        for args in (["connect", "--session", "a b", "/nonexistent/s"],
                     ["connect", "--session", "x" * 129, "/nonexistent/s"],
                     ["connect", "--session", "", "/nonexistent/s"],
                     ["--pool", "a:b", "--", "true"], ["--pool", "p" * 65, "--", "true"],
                     ["serve", "--pool", "", "--", "true"]):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertIn("mcpmux: invalid ", err, args)

    def test_the_bounds_of_sizes_origins_and_the_http_path(self):
        """The man page's bounds: --max-message at least 64, --max-queue at least 1024,
        --allow-origin at most 32 times, --http-path 1 to 255 visible characters, the first
        a '/', without '?' or '#'.  Each bound's last value that is taken goes on to the
        next check (one that fails, or an exit of `true`)."""
        for args in (["--max-message", "63", "--", "true"],
                     ["--max-queue", "1023", "--", "true"],
                     ["connect", "--max-message", "63", "/nonexistent/s"],
                     ["serve", "--http", "0"] + ["--allow-origin", "https://a.example"] * 33,
                     ["serve", "--http", "0", "--http-path", "/" + "p" * 255],
                     ["serve", "--http", "0", "--http-path", "/mcp?x"],
                     ["serve", "--http", "0", "--http-path", "/mcp#x"],
                     ["serve", "--http", "0", "--http-path", "/m p"]):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertIn("--max-message" if "--max-message" in args else
                          "--max-queue" if "--max-queue" in args else
                          "at most 32" if "--allow-origin" in args else "--http-path",
                          err, args)
        for args in (["--max-message", "64", "--max-queue", "1024", "--", "true"],):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out, err), (0, "", ""), args)
        for args, says in (
                (["connect", "--max-message", "64", "/nonexistent/s"], "/nonexistent/s"),
                (["serve"] + ["--allow-origin", "https://a.example"] * 32, "add --http"),
                (["serve", "--http-path", "/" + "p" * 254], "add --http")):
            rc, out, err = self.run_mcpmux(*(args + ["--", "true"] if args[0] == "serve"
                                             else args))
            self.assertNotIn("at most 32", err, args)
            self.assertNotIn("invalid value", err, args)
            self.assertIn(says, err, args)

    def test_a_count_out_of_its_bounds_is_said_as_a_count(self):
        """--max-sessions and --max-servers are counts, not sizes: their usage error does
        not ask for a number of bytes."""
        for args, says in (
                (["serve", "--max-sessions", "0", "--", "true"], "'0' for --max-sessions"),
                (["serve", "--max-sessions", "many", "--", "true"], "'many' for --max-sessions"),
                (["--max-servers", "-1", "--", "true"], "'-1' for --max-servers")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertEqual(err, "mcpmux: invalid value %s (expected a whole number >= %d)\n"
                             % (says, 1 if "--max-sessions" in args else 0), args)

    def test_log_bodies_says_what_it_takes(self):
        """--log-bodies takes full, none or a size: a value it does not take is said so,
        in one parenthetical, where the size's own message contradicted it."""
        for value in ("some", "0", "12x"):
            rc, out, err = self.run_mcpmux("--log-bodies", value, "--", "true")
            self.assertEqual((rc, out), (2, ""), value)
            self.assertEqual(err, "mcpmux: invalid value '%s' for --log-bodies (expected full, "
                             "none, or a number of bytes >= 1, such as 65536 or 64M)\n"
                             % value)

    def test_a_misspelt_subcommand_is_hinted_at(self):
        """A COMMAND that does not exist and is a slip of a subcommand's name (no '/', the
        same first letter, within 2 edits of a name of 5 letters or more, 1 of a shorter
        one), in a subcommand's place (first, with no -- or option before it), gets "(did you
        mean `mcpmux NAME`?)" after the reason it cannot run; another missing command (npx,
        uv, go, a path), or one after -- or an option, gets none."""
        env = dict(self.env, PATH=self.tmp.name)
        for word, hint in (("sever", "`mcpmux serve`"), ("srve", "`mcpmux serve`"),
                           ("conect", "`mcpmux connect`"), ("sweeep", "`mcpmux sweep`"),
                           ("pss", "`mcpmux ps`"),
                           ("stats", "`mcpmux log stats` or `mcpmux ctl PATH stats`"),
                           ("wrap", "`mcpmux config wrap`"),
                           ("npx", None), ("uv", None), ("go", None), ("node", None),
                           ("./sever", None), ("/usr/bin/sever", None)):
            p = subprocess.run([MCPMUX, word, "--", "x"], capture_output=True, timeout=30,
                               stdin=subprocess.DEVNULL, env=env)
            err = p.stderr.decode()
            self.assertEqual((p.returncode, p.stdout), (127, b""), (word, err))
            self.assertTrue(err.startswith("mcpmux: cannot run '%s': " % word), err)
            self.assertEqual(len(err.splitlines()), 1, err)
            if hint is None:
                self.assertNotIn("did you mean", err)
            else:
                self.assertTrue(err.endswith(" (did you mean %s?)\n" % hint), err)
        # after -- or an option, COMMAND is a server's, whatever it is called: deno, py
        for argv in (["--", "sever"], ["--", "deno"], ["-q", "sever"], ["--", "py", "x"]):
            p = subprocess.run([MCPMUX] + argv, capture_output=True, timeout=30,
                               stdin=subprocess.DEVNULL, env=env)
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 127, (argv, err))
            self.assertNotIn("did you mean", err, argv)

    def test_max_sessions_has_a_bound_that_ctl_lists_whole(self):
        """--max-sessions is at most 32768, so that the list of that many sessions and as
        many kept ones not started is a line `mcpmux ctl` takes (64 MiB): more is a usage
        error at startup, before any session."""
        for n in ("32769", "33K", "100000"):
            p = subprocess.run([MCPMUX, "serve", "--max-sessions", n, "--", "true"],
                               capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                               env=self.env)
            self.assertEqual((p.returncode, p.stdout), (2, b""), n)
            self.assertEqual(p.stderr.decode(), "mcpmux: --max-sessions %s is over 32768, the "
                             "most mcpmux serves (the list of `mcpmux ctl` must fit its "
                             "line)\n" % n)
        for n in ("32768", "32K"):
            p = subprocess.run([MCPMUX, "serve", "--max-sessions", n, "--", "true"],
                               capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                               env=self.env)
            self.assertEqual((p.returncode, p.stderr), (0, b""), n)

    def test_a_missing_subcommand_is_a_usage_error_on_stderr(self):
        """Nothing on stdout (a script reads it), one "mcpmux: " line that says what is
        missing, exit 2."""
        for args, what in ((["log"], "no log command given (show or stats"),
                           (["config"], "usage: mcpmux config (wrap | unwrap)"),
                           (["ctl"], "usage: mcpmux ctl PATH")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertTrue(err.startswith("mcpmux: " + what), (args, err))
            self.assertEqual(err.count("\n"), 1, (args, err))

    def test_demo_names_a_bad_argument(self):
        """An unknown option or an argument too many is named on one "mcpmux: " line,
        exit 2, and the demo is not run."""
        for args, want in ((["demo", "--bogus"], "unknown option '--bogus'"),
                           (["demo", "--fixture"], "option '--fixture' needs a value"),
                           (["demo", "--fixture", "/nonexistent/fixture", "extra"],
                            "unexpected argument 'extra'")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertEqual(err, "mcpmux: %s (see mcpmux demo --help)\n" % want, args)

    def test_ctl_and_log_name_what_is_wrong(self):
        """ctl and log name an unknown option; log says which option lacks its value, and
        that --follow goes with show, not stats."""
        for args, want in (
                (["log", "show", "--bogus", "/dev/null"],
                 "mcpmux: unknown option '--bogus' (see mcpmux log --help)\n"),
                (["log", "show", "/dev/null", "--session"],
                 "mcpmux: option '--session' needs a value (see mcpmux log --help)\n"),
                (["ctl", "/nonexistent/mcp.sock", "list", "--bogus"],
                 "mcpmux: unknown option '--bogus' (see mcpmux ctl --help)\n"),
                (["log", "stats", "--follow", "/dev/null"],
                 "mcpmux: option '--follow' goes with 'mcpmux log show', not stats (see "
                 "mcpmux log --help)\n")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out, err), (2, "", want), args)

    def test_connect_names_what_is_wrong(self):
        """connect, as every other command: an option without its value is said to need
        one (not to be a bad option), an unknown option is named unknown."""
        for args, want in (
                (["connect", "--keep", "--session"],
                 "mcpmux: option '--session' needs a value (see mcpmux connect --help)\n"),
                (["connect", "--max-message"],
                 "mcpmux: option '--max-message' needs a value (see mcpmux connect --help)\n"),
                (["connect", "--bogus", "/nonexistent/mcp.sock"],
                 "mcpmux: unknown option '--bogus' (see mcpmux connect --help)\n"),
                # a short option in a cluster is named as such, not by the word before it
                (["connect", "-xq", "/nonexistent/mcp.sock"],
                 "mcpmux: unknown option '-x' (see mcpmux connect --help)\n"),
                (["connect", "--keep=1", "/nonexistent/mcp.sock"],
                 "mcpmux: option '--keep' takes no value (see mcpmux connect --help)\n"),
                (["log", "show", "-xq"],
                 "mcpmux: unknown option '-x' (see mcpmux log --help)\n"),
                (["ps", "--json=1"],
                 "mcpmux: option '--json' takes no value (see mcpmux ps --help)\n"),
                (["-qx", "--", "true"], "mcpmux: unknown option '-x' (see mcpmux --help)\n")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out, err), (2, "", want), args)

    def test_a_missing_server_command_points_to_the_usage_of_its_mode(self):
        for args, want in ((["--eof-grace", "100"], "usage: mcpmux [OPTIONS] -- COMMAND"),
                           (["serve"], "usage: mcpmux serve [OPTIONS] [--listen PATH] -- "
                            "COMMAND")):
            rc, out, err = self.run_mcpmux(*args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertTrue(err.startswith("mcpmux: no server command given (" + want),
                            (args, err))
            self.assertEqual(err.count("\n"), 1, (args, err))

    def test_the_reason_of_a_failure_comes_before_the_advice(self):
        """"mcpmux: <what failed>: <why> (<what to do>)": the system's reason is not put
        after the advice."""
        path = "/nonexistent-dir/mcp.sock"
        for args, want in (
                (["ctl", path, "list"], "mcpmux: cannot connect to '%s': No such file or "
                 "directory (is `mcpmux serve --listen %s` running?)\n" % (path, path)),
                (["connect", path], "mcpmux: cannot connect to '%s': No such file or "
                 "directory (is `mcpmux serve --listen %s` running?)\n" % (path, path)),
                (["serve", "--listen", path, "--", "true"], "mcpmux: cannot listen on '%s': "
                 "No such file or directory (check that its directory exists)\n" % path)):
            p = subprocess.run([MCPMUX] + args, capture_output=True, timeout=30,
                               stdin=subprocess.DEVNULL, env=dict(self.env, LC_ALL="C"))
            self.assertEqual((p.returncode, p.stderr.decode()), (1, want), args)

    def test_a_line_too_long_is_cut_but_not_its_reason(self):
        """A diagnostic line is at most 1 KiB: a long path in it cuts the advice's end,
        then the text before the reason, never the system's reason."""
        for n in (470, 505, 1000):
            path = "/nonexistent-dir/" + "c" * n
            p = subprocess.run([MCPMUX, "ctl", path, "list"], capture_output=True,
                               timeout=30, stdin=subprocess.DEVNULL,
                               env=dict(self.env, LC_ALL="C"))
            err = p.stderr.decode()
            self.assertEqual(p.returncode, 1, n)
            self.assertEqual(err.count("\n"), 1, (n, err))
            self.assertLessEqual(len(err), 1024, n)
            self.assertTrue(err.startswith("mcpmux: cannot connect to '/nonexistent-dir/ccc"),
                            (n, err))
            if n < 1000:
                self.assertIn("': File name too long (is `mcpmux serve --listen /nonex", err)
            if n == 1000:
                self.assertTrue(err.endswith("c: File name too long\n"), err[-80:])

    def test_a_line_too_long_is_cut_between_characters(self):
        """Each cut of a long line (the text, the advice's end, the text before the
        reason) falls between two UTF-8 characters: the line stays UTF-8 text."""
        for ch in ("\u00e9", "\u20ac", "\U0001d11e"):
            for size in (600, 1000, 1400):
                for skew in range(4):
                    name = "c" * skew + ch * ((size - skew) // len(ch.encode()))
                    for args in (["ctl", "/nonexistent-dir/" + name, "list"],
                                 ["log", "show", "--" + name, "/dev/null"]):
                        p = subprocess.run([MCPMUX] + args, capture_output=True,
                                           timeout=30, stdin=subprocess.DEVNULL,
                                           env=dict(self.env, LC_ALL="C"))
                        what = (ascii(ch), size, skew, args[0])
                        self.assertIn(p.returncode, (1, 2), what)
                        self.assertLessEqual(len(p.stderr), 1024, what)
                        err = p.stderr.decode("utf-8")  # raises on a character cut in two
                        self.assertTrue(err.startswith("mcpmux: "), (what, err))
                        self.assertEqual(err.count("\n"), 1, (what, err))
                        if args[0] == "ctl":
                            self.assertIn(": File name too long", err, what)


if __name__ == "__main__":
    main()
