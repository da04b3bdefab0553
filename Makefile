# vub: one C file, a few programs, and the tests that hold them to the specs.
#
#   make              build/vub-serve (and the other programs)
#   make CC=clang     the same with clang
#   make check        build everything, plain and with ASan+UBSan, run all tests
#   make check-long   make check, then the kill test on every cell (about 15 min more)
#   make demo         serve a fresh image and boot a small Linux guest on it
#   make install      programs, vub.h, libvub.a and vub.pc under $(DESTDIR)$(PREFIX)
#   make uninstall    remove exactly what install put there

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -std=c11 -Wall -Wextra -Werror
SAN = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Tests #include vub.c to reach its static functions; the ones a test does
# not call are not errors there.
TEST_WARN = $(WARN) -Wno-unused-function

PROGRAMS = vub-serve vub-io vub-img vub-trace vub-bench
EXAMPLES = hello-server hello-client
UNIT_TESTS = test-backend test-client-hostile test-inflate test-zstd test-aio

BINS = $(PROGRAMS:%=build/%) $(UNIT_TESTS:%=build/%)
ASAN_BINS = $(PROGRAMS:%=build/asan/%) $(UNIT_TESTS:%=build/asan/%)

all: $(PROGRAMS:%=build/%) $(EXAMPLES:%=build/%)

build build/asan:
	mkdir -p $@

# The C files a binary is built from, besides vub.c: its own, and any
# program-side file it shares with others (listed below).
SRCS = $(filter-out vub.c,$(filter %.c,$^))

build/vub-%: examples/vub-%.c vub.c vub.h | build
	$(CC) $(WARN) $(CFLAGS) -I. vub.c $(SRCS) -o $@ $(LDLIBS)

build/hello-%: examples/hello-%.c vub.c vub.h | build
	$(CC) $(WARN) $(CFLAGS) -I. vub.c $(SRCS) -o $@

build/asan/vub-%: examples/vub-%.c vub.c vub.h | build/asan
	$(CC) $(WARN) $(SAN) -I. vub.c $(SRCS) -o $@ $(LDLIBS)

# vub-bench runs a thread per queue (the library itself starts none).
build/vub-bench build/asan/vub-bench: LDLIBS += -lpthread

build/test-%: tests/test-%.c vub.c vub.h | build
	$(CC) $(TEST_WARN) $(CFLAGS) -I. $(SRCS) -o $@ -lpthread

build/asan/test-%: tests/test-%.c vub.c vub.h | build/asan
	$(CC) $(TEST_WARN) $(SAN) -I. $(SRCS) -o $@ -lpthread

# Copying I/O over the front-end: program code, not library code.
CLIENT_COPY = examples/client-copy.c examples/client-copy.h
build/vub-io build/asan/vub-io build/vub-bench build/asan/vub-bench build/test-client-hostile build/asan/test-client-hostile: $(CLIENT_COPY)

# The conformance suite: a test tool that includes vub.c to send anything.
CONFORM_SRC = conformance/vub-conform.c $(wildcard conformance/cases-*.c) conformance/fuzz.c
build/vub-conform: $(CONFORM_SRC) vub.c vub.h | build
	$(CC) $(TEST_WARN) $(CFLAGS) -I. $< -o $@

# Reference results for vub-serve and qemu-storage-daemon (conformance/RESULTS.md).
conform-results: build/vub-serve build/vub-conform
	bash conformance/results.sh

# The library alone, as a user would build it: no warnings, libc only.
build/vub.o: vub.c vub.h | build
	$(CC) $(WARN) $(CFLAGS) -c vub.c -o $@

# A static library and a pkg-config file, for programs that link vub rather
# than copy it: cc prog.c $(pkg-config --cflags --libs vub).
VERSION := $(shell sed -n 's/^\#define VUB_VERSION "\(.*\)"/\1/p' vub.h)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
INCLUDEDIR ?= $(PREFIX)/include
LIBDIR ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALLED_PROGRAMS = $(PROGRAMS) vub-conform

build/libvub.a: build/vub.o
	rm -f $@
	$(AR) rcs $@ $<

# Written at install time, so it names the PREFIX given then.
VUB_PC = 'prefix=$(PREFIX)' 'includedir=$(INCLUDEDIR)' 'libdir=$(LIBDIR)' '' 'Name: vub' \
	'Description: vhost-user-blk back-end, front-end, virtqueues and image reader' \
	'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lvub'

install: $(INSTALLED_PROGRAMS:%=build/%) build/libvub.a
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(INSTALLED_PROGRAMS:%=build/%) $(DESTDIR)$(BINDIR)
	install -m 644 vub.h $(DESTDIR)$(INCLUDEDIR)
	install -m 644 build/libvub.a $(DESTDIR)$(LIBDIR)
	printf '%s\n' $(VUB_PC) >$(DESTDIR)$(PKGCONFIGDIR)/vub.pc

uninstall:
	rm -f $(INSTALLED_PROGRAMS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(INCLUDEDIR)/vub.h \
	    $(DESTDIR)$(LIBDIR)/libvub.a $(DESTDIR)$(PKGCONFIGDIR)/vub.pc

check: build/vub.o build/libvub.a build/vub-conform $(BINS) $(ASAN_BINS) $(EXAMPLES:%=build/%)
	bash tests/run.sh

# make check, then the kill test on every cell (tests/guest/fault-matrix.sh:
# QEMU 7.2 and 10.0, split and packed, qemu-storage-daemon beside vub-serve),
# which rewrites conformance/kill-test.md.
check-long: check
	bash tests/guest/fault-matrix.sh

demo: build/vub-serve
	bash tests/guest/demo.sh

clean:
	rm -rf build/vub.o build/libvub.a build/vub-conform $(BINS) $(EXAMPLES:%=build/%) build/asan

# libFuzzer targets (clang): make fuzz; see conformance/fuzz.mk.
-include conformance/fuzz.mk

.PHONY: all check check-long demo clean conform-results install uninstall
.SECONDARY:

build/test-backend build/asan/test-backend: tests/test-backend-packed.inc tests/test-backend-inflight.inc
build/test-inflate build/asan/test-inflate build/test-zstd build/asan/test-zstd: tests/unit-tap.h
