#!/usr/bin/env bash
# test-build: vub.c and vub.h as a user copies them.
#  - vub.c builds warning-free alone with gcc and with clang (-std=c11 -Wall -Wextra -Werror);
#  - it includes nothing but libc and Linux UAPI headers;
#  - vub.h compiles as C++ too (a header made to be copied into any project);
#  - every program under examples/ builds with both compilers.
set -u
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
warn="-std=c11 -Wall -Wextra -Werror -pedantic"

result() { # status sentence [detail-file]
    if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; [ -n "${3:-}" ] && sed 's/^/#   /' "$3" | head -20; fi
}

for cc in gcc clang; do
    if ! command -v "$cc" >/dev/null; then
        echo "skip - build with $cc ($cc is not installed)"
        continue
    fi
    $cc $warn -O2 -c vub.c -o "$out/vub-$cc.o" 2>"$out/err"
    result $? "vub.c alone builds warning-free with $cc -std=c11 -Wall -Wextra -Werror -pedantic" "$out/err"
    for ex in examples/*.c; do
        # A file without main() is program-side code that programs share:
        # it is built into each program that includes its header.
        grep -q '^int main' "$ex" || continue
        extra=()
        for part in examples/*.c; do
            ! grep -q '^int main' "$part" && grep -q "#include \"$(basename "$part" .c).h\"" "$ex" && extra+=("$part")
        done
        $cc -std=c11 -Wall -Wextra -Werror -O2 -I. vub.c "$ex" "${extra[@]}" -o "$out/ex" 2>"$out/err"
        result $? "$ex builds with $cc${extra[*]:+ (with ${extra[*]})}" "$out/err"
    done
done

# Only <libc> and <linux/...> (UAPI) headers, and vub.h itself.
bad=$(grep -hoE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]+[>"]' vub.c vub.h |
    sed -E 's/.*include[[:space:]]*//' | grep -vE '^<linux/|^"vub\.h"$' |
    grep -vE '^<(assert|ctype|errno|fcntl|inttypes|limits|poll|signal|stdarg|stdatomic|stdbool|stddef|stdint|stdio|stdlib|string|strings|time|unistd)\.h>$' |
    grep -vE '^<sys/(mman|socket|un|uio|types|stat|statfs|eventfd|epoll|ioctl|syscall|time)\.h>$' | sort -u | tr '\n' ' ')
[ -z "$bad" ]
result $? "vub.c and vub.h include only libc and Linux UAPI headers${bad:+ (found: $bad)}"

if command -v g++ >/dev/null; then
    printf '#include "vub.h"\nint main() { return vub_strerror(VUB_OK) ? 0 : 1; }\n' >"$out/t.cc"
    g++ -std=c++11 -Wall -Wextra -Werror -I. -fsyntax-only "$out/t.cc" 2>"$out/err"
    result $? "vub.h compiles as C++11" "$out/err"
else
    echo "skip - vub.h as C++ (g++ is not installed)"
fi
