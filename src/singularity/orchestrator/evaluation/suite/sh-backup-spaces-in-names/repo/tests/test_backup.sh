#!/bin/bash
# Visible tests of backup.sh: run from the repository's root.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

mkdir -p "$work/docs/old"
echo a >"$work/docs/a.txt"
echo b >"$work/docs/b.txt"
echo img >"$work/docs/c.png"
echo old >"$work/docs/old/d.txt"
out=$(bash "$here/backup.sh" "$work/docs" "$work/bak") || fail "backup exited non-zero"
[ "$out" = "backed up 2 files" ] || fail "unexpected summary: $out"
[ "$(cat "$work/bak/a.txt.bak")" = a ] || fail "a.txt.bak is missing"
[ ! -e "$work/bak/c.png.bak" ] || fail "only .txt files are backed up"
bash "$here/backup.sh" "$work/nope" "$work/bak" 2>/dev/null && fail "a missing SRC must be an error"
exit "$failures"
