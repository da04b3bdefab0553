#!/usr/bin/env bash
# test-install.sh - vub installs like a library people use:
#   make install PREFIX=/usr/local DESTDIR=<staging>, then the client shown
#   in README.md, taken from it as it stands, builds with
#   cc client.c $(pkg-config --cflags --libs vub) against the staged files
#   and reads sector 0 from a vub-serve; every program answers --version
#   with VUB_VERSION; make uninstall removes every file again.
set -u
cd "$(dirname "$0")/.."
top=$PWD

. tests/lib-tap.sh install

stage=$dir/stage
version=$(sed -n 's/^#define VUB_VERSION "\(.*\)"/\1/p' vub.h)
check "vub.h defines VUB_VERSION ($version)" test -n "$version"

if make -s install PREFIX=/usr/local DESTDIR="$stage" >"$dir/install.log" 2>&1; then
    ok "make install PREFIX=/usr/local DESTDIR=... succeeds"
else
    fail "make install ($(tail -n3 "$dir/install.log"))"
    exit 1
fi
for f in bin/vub-serve bin/vub-io bin/vub-img bin/vub-trace bin/vub-bench bin/vub-conform include/vub.h lib/libvub.a lib/pkgconfig/vub.pc; do
    check "installed /usr/local/$f" test -f "$stage/usr/local/$f"
done
for p in vub-serve vub-io vub-img vub-trace vub-bench vub-conform; do
    out=$("$stage/usr/local/bin/$p" --version 2>&1)
    check "$p --version says \"$p $version\" ($out)" test "$out" = "$p $version"
done

if ! command -v pkg-config >/dev/null; then
    skip "the pkg-config build (pkg-config not installed)"
else
    export PKG_CONFIG_PATH=$stage/usr/local/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
    check "pkg-config --modversion vub is $version" test "$(pkg-config --modversion vub)" = "$version"
    # README's client exactly as printed there (its one C block); it talks
    # to ./vub.sock, so it runs in this test's directory.
    awk '/^```c$/ { inside = 1; next } inside && /^```$/ { exit } inside' README.md >"$dir/client.c"
    check "README.md has the client example" grep -q vub_client_connect "$dir/client.c"
    # shellcheck disable=SC2046
    if cc -std=c11 -Wall -Wextra -Werror "$dir/client.c" -o "$dir/client" $(pkg-config --cflags --libs vub) \
        2>"$dir/cc.log"; then
        ok "the README client builds with cc \$(pkg-config --cflags --libs vub)"
        sock=$dir/vub.sock
        truncate -s 1M "$dir/disk.img"
        timeout --foreground -k 5 60 "$stage/usr/local/bin/vub-serve" --socket "$sock" "$dir/disk.img" 2>"$dir/serve.log" &
        pids+=($!)
        for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
        check "the README client reads sector 0 from the installed vub-serve" sh -c "cd '$dir' && timeout 30 ./client >/dev/null"
        kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null
        if (cd "$dir" && timeout 30 ./client) 2>"$dir/client.err"; then
            fail "the README client fails when nobody listens"
        else
            check "the README client, with nobody listening, says why: $(cat "$dir/client.err")" \
                grep -q "vub.sock" "$dir/client.err"
        fi
    else
        fail "the README client builds with pkg-config ($(head -c 400 "$dir/cc.log"))"
    fi
fi

make -s uninstall PREFIX=/usr/local DESTDIR="$stage" >/dev/null 2>&1
left=$(find "$stage" -type f | wc -l)
check "make uninstall removes every installed file ($left left)" test "$left" -eq 0

[ "$failures" -eq 0 ]
