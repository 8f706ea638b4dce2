# A thin wrapper over CMake presets.  `make demo` and `make check` set up everything
# they need on a fresh Debian machine.

BUILD_DEV := build/dev
BUILD_REL := build/release

.PHONY: all deps demo check build release clean format lint

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

format:
	clang-format -i src/*.c include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h

lint:
	clang-format --dry-run --Werror src/*.c include/mcpmux/*.h fixtures/*.c test/*/*.c test/*/*.h
	cppcheck --quiet --enable=warning,style,performance,portability --std=c11 \
		--inline-suppr --error-exitcode=1 -D_GNU_SOURCE -I include src fixtures

clean:
	rm -rf build
