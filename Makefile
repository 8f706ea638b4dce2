# A thin wrapper over CMake presets.  `make demo` and `make check` set up everything
# they need on a fresh Debian machine.

BUILD_DEV := build/dev
BUILD_REL := build/release

.PHONY: all deps demo check build release clean format lint valgrind

all: build

deps:
	@.ci/deps

build: deps
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j2

release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j2

# Build (optimised) and run the demo: a wrapped fixture server, an end of run, no leak.
demo: release
	$(BUILD_REL)/mcpmux demo --fixture $(BUILD_REL)/fixtures/mcp-fixture

# Build with AddressSanitizer + UndefinedBehaviorSanitizer and run every test.
check: build
	ctest --preset dev

# The wrap and serve integration tests with mcpmux under valgrind (a build without
# sanitizers): any memory error or leak makes mcpmux exit 99, which fails the test.
VALGRIND := valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99
valgrind: deps
	cmake -S . -B build/valgrind -DCMAKE_BUILD_TYPE=Debug -DMCPMUX_SANITIZE= >/dev/null
	cmake --build build/valgrind -j2
	cd test/integration && MCPMUX=$(CURDIR)/build/valgrind/mcpmux \
		MCP_FIXTURE=$(CURDIR)/build/valgrind/fixtures/mcp-fixture \
		MCPMUX_WRAPPER="$(VALGRIND)" MCPMUX_TEST_TIMEOUT_MULTIPLIER=5 \
		python3 -B -m unittest test_wrap.Passthrough test_wrap.Failures \
		test_wrap.BigMessages test_wrap.Teardown.test_stdin_eof \
		test_wrap.EndOfRun.test_end_notification_is_not_forwarded \
		test_serve.Routing test_log.Writing.test_a_session_logged_once_each_way

format:
	clang-format -i src/*.c include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h

lint:
	clang-format --dry-run --Werror src/*.c include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h
	cppcheck --quiet --enable=warning,style,performance,portability --std=c11 \
		--inline-suppr --error-exitcode=1 -D_GNU_SOURCE -I include src fixtures

clean:
	rm -rf build
