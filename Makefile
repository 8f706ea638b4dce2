# A thin wrapper over CMake presets.  `make demo` and `make check` set up everything
# they need on a fresh Debian machine; they and `make deps` are the only targets that
# install anything (apt-get, npm ci).  Every other target builds with what is there.

BUILD_DEV := build/dev
BUILD_REL := build/release

.PHONY: all deps demo check build release memory clean format lint valgrind bench fuzz soak packaging

all: build

deps:
	@.ci/deps

build:
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j2

release:
	cmake --preset release >/dev/null
	cmake --build --preset release -j2

# Set up, build (optimised) and run the demo: a wrapped fixture server, an end of run, no
# leak.  mcpmux finds the fixture beside itself in the build tree, as an installed mcpmux
# finds its helper.
demo: deps
	@$(MAKE) --no-print-directory release
	$(BUILD_REL)/mcpmux demo

# Build (optimised) and run the benchmark matrix against its baselines: a table of medians
# and a pass/fail line per number of the contract (about 8 minutes; BENCH_ARGS=--quick for
# a smoke run); then the Streamable HTTP endpoints side by side, mcpmux serve --http and
# supergateway (about 6 minutes; BENCH_HTTP_ARGS=--rounds 1 for a smoke run).
# docs/performance.md describes the method.
bench: release
	python3 bench/run --build $(BUILD_REL) $(BENCH_ARGS)
	@if command -v node >/dev/null 2>&1 && [ -d test/interop/node_modules/supergateway ]; then \
		node bench/http_sessions.mjs --mcpmux $(BUILD_REL)/mcpmux $(BENCH_HTTP_ARGS); \
	else \
		echo "bench: the Streamable HTTP comparison needs node and test/interop's packages (make deps)"; \
	fi

# Set up, build with AddressSanitizer + UndefinedBehaviorSanitizer and run every test.
check: deps
	@$(MAKE) --no-print-directory build
	ctest --preset dev

# The memory tests that the sanitized and valgrind runs skip (their allocators keep freed
# memory back, or come before the fault shim's malloc()), on the release build: mcpmux
# gives memory back after big messages, and answers what it has no memory to keep.
memory: release
	cd test/integration && MCPMUX=$(CURDIR)/$(BUILD_REL)/mcpmux \
		MCP_FIXTURE=$(CURDIR)/$(BUILD_REL)/fixtures/mcp-fixture \
		python3 -B -m unittest \
		test_wrap.BigMessages.test_memory_shrinks_back_after_big_message \
		test_wrap.BigMessages.test_memory_shrinks_back_after_big_message_read_late \
		test_wrap.BigMessages.test_memory_shrinks_back_after_a_big_element_of_a_set_up_batch \
		test_wrap.BigMessages.test_memory_back_when_idle_after_a_huge_id \
		test_wrap.BigMessages.test_memory_back_when_idle_after_a_huge_escaped_id \
		test_wrap.BigMessages.test_memory_back_when_idle_after_a_batch_over_the_requests_in_flight \
		test_wrap.BigMessages.test_memory_back_when_idle_after_end_of_runs_with_huge_ids \
		test_wrap.BigMessages.test_memory_back_after_a_gone_servers_many_requests_in_flight \
		test_serve.BigMessages.test_memory_back_when_idle_after_huge_ids \
		test_serve.BigMessages.test_memory_of_the_errors_of_a_batch_too_long_to_buffer \
		test_suspend.HeldLines.test_memory_given_back_when_held_lines_are_refused \
		test_hardening.OutputThrottlesInput.test_memory_given_back_after_a_full_queue_of_small_answers \
		test_listen.ListenHardening.test_connect_memory_shrinks_back_after_big_messages \
		test_listen.KeptSessionEnds.test_memory_back_when_idle_after_huge_ids_of_serves_own_answers \
		test_listen.KeptSessionEnds.test_memory_back_when_idle_after_a_long_batch_of_no_session \
		test_http_front.Sessions.test_memory_shrinks_back_after_a_pretty_printed_body_and_a_huge_id \
		test_http_front.Sessions.test_memory_given_back_when_a_finished_streams_big_answer_is_let_go \
		test_hardening.SlowServer.test_wrap_every_notification_reaches_a_slow_server \
		test_config.Files.test_hostile_files_take_memory_in_proportion \
		test_faults.OutOfMemory

# Build as packagers do, each from a clean copy of the tree, and fail on any warning:
# Release, a distribution's flags, and without the tests (no cmocka), which is then
# installed and its demo run.  Also checks that only deps, demo and check install.
packaging:
	.ci/packaging

# The wrap and serve integration tests with mcpmux under valgrind (a build without
# sanitizers): any memory error or leak makes mcpmux exit 99, which fails the test.
VALGRIND := valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99
valgrind:
	cmake -S . -B build/valgrind -DCMAKE_BUILD_TYPE=Debug -DMCPMUX_SANITIZE= \
		-DMCPMUX_WERROR=ON >/dev/null
	cmake --build build/valgrind -j2
	cd test/integration && MCPMUX=$(CURDIR)/build/valgrind/mcpmux \
		MCP_FIXTURE=$(CURDIR)/build/valgrind/fixtures/mcp-fixture \
		MCPMUX_WRAPPER="$(VALGRIND)" MCPMUX_TEST_TIMEOUT_MULTIPLIER=5 \
		python3 -B -m unittest test_wrap.Passthrough test_wrap.Failures \
		test_wrap.BigMessages test_wrap.Pipes test_serve.Pipes test_serve.SameId \
		test_wrap.Teardown.test_stdin_eof \
		test_wrap.EndOfRun.test_end_notification_is_not_forwarded \
		test_serve.Routing test_log.Writing.test_a_session_logged_once_each_way \
		test_log.Writing.test_long_bodies_whole_and_in_order \
		test_log.Writing.test_fifo_nobody_reads_never_stops_traffic \
		test_log.Writing.test_sessions_and_methods_interleaved \
		test_log.Writing.test_reopen_on_sigusr1 test_suspend.HeldLines \
		test_hardening.RequestIds test_hardening.RunOrder test_hardening.Stall \
		test_hardening.SlowServer.test_wrap_every_notification_reaches_a_slow_server \
		test_hardening.UnreadStderr.test_repeated_noise_is_summed_up \
		test_hardening.ServerInput test_listen.ListenHardening \
		test_http_front.Transport.test_delete_answers_when_the_tree_is_gone \
		test_http_front.Sessions.test_sigterm_ends_every_session_and_stream \
		test_http_front.Sessions.test_ctl_lists_http_sessions_with_their_peer

# Fuzz every target with libFuzzer (clang, ASan + UBSan, coverage of the core library) for
# FUZZ_SECONDS each, from its seed corpus, its regressions and what earlier runs found
# (build/fuzz/corpus/); a crash is saved to build/fuzz/artifacts/ and stops the run.
# (-Werror is off there: clang warns where gcc does not, e.g. fall-through comments.)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= framer jsonrpc envelope config container httpmsg jsonspan
FUZZ_BUILD ?= build/fuzz
fuzz:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS=-O1 -DCMAKE_CXX_FLAGS=-O1 \
		-DMCPMUX_SANITIZE=address,undefined,fuzzer-no-link -DMCPMUX_FUZZ=ON \
		-DMCPMUX_WERROR=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j2 --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
		art=$(FUZZ_BUILD)/artifacts/$$t; log=$(FUZZ_BUILD)/fuzz_$$t.log; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $$art; \
		regs=test/fuzz/regressions/$$t; [ -d $$regs ] || regs=; \
		echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
		rc=0; $(FUZZ_BUILD)/test/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
			-max_len=8192 -dict=test/fuzz/json.dict -print_final_stats=1 \
			-artifact_prefix=$$art/ $(FUZZ_BUILD)/corpus/$$t test/fuzz/corpus/$$t $$regs \
			>$$log 2>&1 || rc=$$?; \
		grep -E "^stat::(number_of_exec|average_exec|new_units|peak_rss)" $$log || true; \
		if [ $$rc -ne 0 ]; then \
			grep -E "invariant|ERROR|runtime error|written to|error" $$log | head -5; \
			echo "fuzz_$$t: failed (exit $$rc); its log: $$log"; exit 1; \
		fi; \
	done

# Soak: MCPMUX_SOAK_CYCLES (10000) start/run/end cycles with misbehaving servers against
# the release build; prints the cycles, leftovers, fds and memory (docs/reliability.md).
MCPMUX_SOAK_CYCLES ?= 10000
soak: release
	cd test/integration && MCPMUX=$(CURDIR)/$(BUILD_REL)/mcpmux \
		MCP_FIXTURE=$(CURDIR)/$(BUILD_REL)/fixtures/mcp-fixture \
		MCPMUX_SOAK_CYCLES=$(MCPMUX_SOAK_CYCLES) python3 -B test_soak.py -v

format:
	clang-format -i src/*.c src/*.cc include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h \
		bench/*.c bench/*.h

lint:
	clang-format --dry-run --Werror src/*.c src/*.cc include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h \
		bench/*.c bench/*.h
	cppcheck --quiet --enable=warning,style,performance,portability --std=c11 \
		--inline-suppr --error-exitcode=1 -D_GNU_SOURCE -I include src fixtures

clean:
	rm -rf build
