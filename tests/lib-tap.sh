# Sourced by the shell tests:  . tests/lib-tap.sh NAME
# Gives "ok - ...", "not ok - ..." and "skip - ..." lines (ok, fail, skip,
# check "sentence" command..., quiet command...), $failures, a scratch
# directory $dir (/tmp/vub-NAME-test.XXXXXX), and pids: every process the
# test starts in the background goes in it and is stopped, by PID, at exit.
failures=0
ok()   { echo "ok - $*"; }
fail() { echo "not ok - $*"; failures=$((failures + 1)); }
skip() { echo "skip - $*"; }
quiet() { "$@" >/dev/null; }
check() { # check "sentence" command...: ok if the command succeeds
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

dir=$(mktemp -d "/tmp/vub-$1-test.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
