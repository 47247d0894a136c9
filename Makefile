# Makefile -- a thin wrapper around CMake and ctest. `make demo` and `make test` are the two
# commands a new user needs on a fresh Debian 12 machine (root, or a user with sudo).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
MODEL      ?= models/tinyqwen3-mix
PROMPT     ?= In the beginning God created

PREFIX     ?= /usr/local

.PHONY: all deps build build-asan test test-asan demo demo-tools bench install package clean

all: build

deps:
	@bash deploy/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The whole suite, then the sanitizer build's suite (ASan + UBSan).
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900 -j$(JOBS)
	@$(MAKE) --no-print-directory test-asan

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTTQ_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# Under the sanitizers the long golden-perplexity runs are left out (label "slow"): they
# exercise no code the other tests do not, and take minutes under ASan.
test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure --timeout 900 -j$(JOBS) -LE slow

# The service on the bundled model: a 2-rank daemon, a streamed generation through the client,
# the figures, a clean stop (docs/demo.sh). `make demo-tools` shows the offline tools.
demo: build
	@BUILD=$(BUILD) MODEL=$(MODEL) PROMPT="$(PROMPT)" bash docs/demo.sh

demo-tools: build
	@echo "== ttqd inspect --model $(MODEL) --quant ttq --bits 4 --group 32"
	@./$(BUILD)/ttqd inspect --model $(MODEL) --quant ttq --bits 4 --group 32
	@echo
	@echo "== speed: ttqd bench (fp, then ttq W4 g32)"
	@./$(BUILD)/ttqd bench --model $(MODEL) --prompt-tokens 128 --gen-tokens 64 --repeat 3
	@./$(BUILD)/ttqd bench --model $(MODEL) --prompt-tokens 128 --gen-tokens 64 --repeat 3 --quant ttq --bits 4
	@echo
	@echo "== perplexity on two domains (fp, then ttq W3 g32)"
	@./$(BUILD)/ttqd perplexity --model $(MODEL) --max-docs 8 --ctx 512 tests/data/corpus/valid/code_c.txt tests/data/corpus/valid/scripture.txt
	@./$(BUILD)/ttqd perplexity --model $(MODEL) --max-docs 8 --ctx 512 --quant ttq --bits 3 tests/data/corpus/valid/code_c.txt tests/data/corpus/valid/scripture.txt

# Install under PREFIX (DESTDIR honoured): binaries, systemd unit, /etc/ttq example config.
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# A Debian package (CPack) in $(BUILD): apt-get install ./$(BUILD)/ttq_*.deb
package: build
	cd $(BUILD) && cpack -G DEB

bench: build
	@bash deploy/deps.sh deploy/deps.d/optional/bench.list
	@bash docs/bench.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
