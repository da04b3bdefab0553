# libFuzzer targets for vub (clang); conformance/FUZZING.md says what each covers.
# Included by the Makefile. Not part of `make check`.
#
#   make fuzz                 build build/fuzz/fuzz-* with -fsanitize=fuzzer,address,undefined
#   make fuzz-run             run each target for FUZZ_SECONDS (default 30) from the seed corpus
#   make fuzz-run FUZZ_TARGETS=fuzz-msg FUZZ_SECONDS=600
#   make fuzz-repro           run the reproducers (crash-*) kept in the corpus
#   make fuzz-seeds           rewrite conformance/fuzz-corpus/*/{seed,crash}-* from fuzz-seeds.c
#   make fuzz-clean           remove build/fuzz (binaries, working corpus, artifacts)

FUZZ_CC ?= clang
FUZZ_CFLAGS = -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              -Wall -Wextra -Wno-unused-function -I.
FUZZ_TARGETS ?= fuzz-msg fuzz-ring-split fuzz-ring-packed fuzz-blk fuzz-session fuzz-zstd
FUZZ_SECONDS ?= 30
FUZZ_CORPUS = conformance/fuzz-corpus
# Extra libFuzzer options per target: the ring targets' inputs carry guest memory.
FUZZ_OPTS = -timeout=10 -print_final_stats=1
FUZZ_OPTS_fuzz-ring-split = -max_len=8192
FUZZ_OPTS_fuzz-ring-packed = -max_len=8192
# zstd: the seeds are frames from tests/data/zstd; clusters' extents are small.
FUZZ_OPTS_fuzz-zstd = -max_len=65536

FUZZ_ALL = fuzz-msg fuzz-ring-split fuzz-ring-packed fuzz-blk fuzz-session fuzz-zstd
FUZZ_SHARED = conformance/fuzz-guard.c conformance/fuzz-bench.c vub.c vub.h

fuzz: $(FUZZ_ALL:%=build/fuzz/%) build/fuzz/fuzz-seeds

build/fuzz build/fuzz/artifacts:
	mkdir -p $@

build/fuzz/fuzz-%: conformance/fuzz-%.c $(FUZZ_SHARED) | build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< -o $@ -pthread

build/fuzz/fuzz-ring-split build/fuzz/fuzz-ring-packed: conformance/fuzz-ring.c

# The seed writer is a plain program.
build/fuzz/fuzz-seeds: conformance/fuzz-seeds.c vub.c vub.h | build/fuzz
	$(CC) -std=c11 -Wall -Wextra -Wno-unused-function -g -I. $< -o $@

# Each target works on its own corpus under build/fuzz/corpus, seeded from the
# committed seed-* files (libFuzzer adds what it finds there, not in the tree);
# crash-* files stay out, or every run would stop at the first one. Every
# target runs even if an earlier one failed; the exit status says if any did.
fuzz-run: $(FUZZ_TARGETS:%=build/fuzz/%) | build/fuzz/artifacts
	@failed=; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus/$$t; \
	    cp $(FUZZ_CORPUS)/$$t/seed-* build/fuzz/corpus/$$t/ 2>/dev/null; \
	    echo "== $$t: $(FUZZ_SECONDS) s"; \
	    build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_OPTS) $(FUZZ_OPTS_$$t) \
	        -artifact_prefix=build/fuzz/artifacts/$$t- build/fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	        || failed="$$failed $$t"; \
	    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|SUMMARY|check failed|Test unit written' \
	        build/fuzz/$$t.log; \
	done; \
	if [ -n "$$failed" ]; then echo "failed:$$failed (logs: build/fuzz/<target>.log)"; exit 1; fi

# The reproducers: each must now run clean. One that still fails names an
# open bug (see FUZZING.md).
fuzz-repro: $(FUZZ_ALL:%=build/fuzz/%)
	@fail=0; for f in $(FUZZ_CORPUS)/*/crash-*; do \
	    [ -e "$$f" ] || continue; \
	    t=$$(basename $$(dirname $$f)); \
	    if build/fuzz/$$t $$f >build/fuzz/repro.log 2>&1; then echo "fixed:       $$f"; \
	    else echo "still fails: $$f: $$(grep -m1 -E 'SUMMARY|check failed' build/fuzz/repro.log)"; fail=1; fi; \
	done; exit $$fail

fuzz-seeds: build/fuzz/fuzz-seeds
	build/fuzz/fuzz-seeds $(FUZZ_CORPUS)

fuzz-clean:
	rm -rf build/fuzz

clean: fuzz-clean

.PHONY: fuzz fuzz-run fuzz-repro fuzz-seeds fuzz-clean
