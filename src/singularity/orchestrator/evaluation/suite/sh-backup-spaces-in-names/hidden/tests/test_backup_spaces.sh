#!/bin/bash
# Hidden tests: names with spaces and other unusual characters.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

mkdir -p "$work/my docs"
echo notes >"$work/my docs/meeting notes.txt"
echo plan >"$work/my docs/plan.txt"
echo star >"$work/my docs/*.txt"
echo dash >"$work/my docs/-n.txt"
out=$(bash "$here/backup.sh" "$work/my docs" "$work/back up") || fail "backup exited non-zero"
[ "$out" = "backed up 4 files" ] || fail "unexpected summary: $out"
[ "$(cat "$work/back up/meeting notes.txt.bak")" = notes ] || fail "meeting notes.txt.bak"
[ "$(cat "$work/back up/*.txt.bak")" = star ] || fail "*.txt.bak"
[ "$(cat "$work/back up/-n.txt.bak")" = dash ] || fail "-n.txt.bak"

mkdir "$work/empty"
out=$(bash "$here/backup.sh" "$work/empty" "$work/b2") || fail "an empty SRC is fine"
[ "$out" = "backed up 0 files" ] || fail "unexpected summary for an empty SRC: $out"
exit "$failures"
