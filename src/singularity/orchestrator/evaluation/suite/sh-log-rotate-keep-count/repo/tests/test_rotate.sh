#!/bin/sh
# Visible tests of rotate.sh: run from the repository's root.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

echo first >"$work/app.log"
sh "$here/rotate.sh" "$work/app.log" 3 || fail "rotate exited non-zero"
[ "$(cat "$work/app.log.1")" = first ] || fail "app.log.1 should hold the old lines"
[ -f "$work/app.log" ] && [ ! -s "$work/app.log" ] || fail "app.log should be empty"

echo second >"$work/app.log"
sh "$here/rotate.sh" "$work/app.log" 3
[ "$(cat "$work/app.log.2")" = first ] || fail "app.log.2 should hold the oldest lines"

sh "$here/rotate.sh" "$work/missing.log" 3 2>/dev/null && fail "a missing file must be an error"
sh "$here/rotate.sh" "$work/app.log" x 2>/dev/null && fail "KEEP must be a number"

[ "$failures" -eq 0 ] && echo "rotate: all tests passed"
exit "$failures"
