#!/usr/bin/env bash
# check-tags: the requirement tags tie vub.c, SPEC-NOTES.md and the tests together.
#
# A tag (VU-, VQ-, MEM-, BLK-, IMG-, QCOW2-, INFL-, ZSTD-) is
#   - defined in vub.c where the rule is enforced: in brackets in a comment,
#     [VQ-SPLIT-LOOP], or as a string of its own in a table, "VQ-SPLIT-LOOP";
#   - explained in SPEC-NOTES.md by an entry: a table row whose first cell names
#     it, or a paragraph that names it in brackets;
#   - proved by at least one test (tests/) or conformance case (conformance/cases-*.c).
# This script checks that each tag in vub.c has an entry and a test, that every
# tag a test or a note uses exists in vub.c (no dead tags), that no tag is split
# across a line break, and that no comment cites a file outside the repository.
# It prints the counts. Output is "ok - ..." / "not ok - ..." lines.
set -u
cd "$(dirname "$0")/.."

tag='(VU|VQ|MEM|BLK|IMG|QCOW2|INFL|ZSTD)-[A-Z0-9]+(-[A-Z0-9]+)*'
notes=(SPEC-NOTES.md conformance/README.md conformance/FUZZING.md)
tests=(tests/*.c tests/*.inc tests/*.sh tests/*.py tests/guest/*.sh tests/guest/*.c
    conformance/cases-*.c conformance/fuzz*.c)
fails=0

result() { # status sentence [detail]
    if [ "$1" -eq 0 ]; then
        echo "ok - $2"
    else
        echo "not ok - $2"
        [ -n "${3:-}" ] && printf '%s\n' "$3" | fold -s -w 96 | sed 's/^/#   /'
        fails=$((fails + 1))
    fi
}

# Every tag-like word in some files; "VQ-SPLIT-*" style globs are not tags.
words() { grep -ohE "\\b${tag}\\b-?\\*?" "$@" 2>/dev/null | grep -v '\*$' | sed 's/-$//' | sort -u; }

code=$( {
    grep -ohE "\\[${tag}\\]" vub.c | tr -d '[]'
    grep -ohE "\"${tag}\"" vub.c | tr -d '"'
} | sort -u)
code_words=$(words vub.c)
# Entries: first cells of table rows (they may list several tags, with a
# "(front-end)" remark) and bracketed tags in paragraphs.
entries=$( {
    grep -E '^\|' SPEC-NOTES.md | cut -d'|' -f2 | grep -oE "\\b${tag}\\b"
    grep -ohE "\\[${tag}\\]" SPEC-NOTES.md | tr -d '[]'
} | sort -u)
used_notes=$(words "${notes[@]}")
used_tests=$(words "${tests[@]}")

missing() { comm -23 <(printf '%s\n' "$1" | sed '/^$/d') <(printf '%s\n' "$2" | sed '/^$/d') | tr '\n' ' '; }
count() { printf '%s\n' "$1" | sed '/^$/d' | wc -l; }

m=$(missing "$code" "$entries")
result "$([ -z "$m" ]; echo $?)" "every tag in vub.c has a SPEC-NOTES.md entry" "no entry: $m"
m=$(missing "$code" "$used_tests")
result "$([ -z "$m" ]; echo $?)" "every tag in vub.c is used by a test or a conformance case" "untested: $m"
m=$(missing "$used_tests" "$code")
result "$([ -z "$m" ]; echo $?)" "every tag a test uses exists in vub.c" "not in vub.c: $m"
m=$(missing "$used_notes" "$code")
result "$([ -z "$m" ]; echo $?)" "every tag a note uses exists in vub.c" "not in vub.c: $m"
# A tag that a line break cut in two ("[VQ-SPLIT-" / "IRQ-RACE]") is found by
# no grep; and a tag mentioned in passing must be one defined somewhere.
m=$( {
    grep -nE "\\[${tag}-?\$" vub.c
    missing "$code_words" "$code" | sed '/^ *$/d; s/^/mentioned, never defined: /'
} | tr '\n' ' ')
result "$([ -z "$m" ]; echo $?)" "every tag in vub.c is written whole and defined" "$m"

# One tag, one rule: no tag is the first cell of two table rows.
m=$(grep -E '^\|' SPEC-NOTES.md | cut -d'|' -f2 | grep -oE "^ *${tag} *$" | tr -d ' ' | sort | uniq -d | tr '\n' ' ')
result "$([ -z "$m" ]; echo $?)" "no tag has two SPEC-NOTES.md entries" "twice: $m"

# Readers have the repository only: no comment may send them elsewhere.
cites=$(grep -nE 'checklist|CHECKLIST|STYLE rule|STYLE\.md|\.\./shared|wip/' vub.c vub.h examples/*.c \
    tests/*.c tests/*.inc tests/*.sh tests/guest/*.c tests/guest/*.sh conformance/*.c 2>/dev/null | grep -v '^tests/check-tags.sh:')
result "$([ -z "$cites" ]; echo $?)" "no comment cites a file outside the repository" "$cites"

tested=$(comm -12 <(printf '%s\n' "$code") <(printf '%s\n' "$used_tests") | sed '/^$/d')
conform=$(words conformance/cases-*.c)
covered=$(comm -12 <(printf '%s\n' "$entries") <(printf '%s\n' "$conform") | sed '/^$/d')
echo "# tags: $(count "$code") in vub.c, $(count "$entries") with a SPEC-NOTES.md entry," \
    "$(count "$tested") tested; conformance cases cover $(count "$covered") of $(count "$entries")"
[ "$fails" -eq 0 ]
