#!/bin/sh
# Visible tests of column.sh: run from the repository's root.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

printf 'date,amount,payee\n2024-01-02,12.50,shop\n2024-01-03,-4,cafe\n' >"$work/s.csv"
[ "$(sh "$here/column.sh" amount "$work/s.csv")" = "$(printf '12.50\n-4')" ] || fail "by file"
[ "$(sh "$here/column.sh" payee <"$work/s.csv")" = "$(printf 'shop\ncafe')" ] || fail "stdin"
sh "$here/column.sh" nope "$work/s.csv" 2>/dev/null && fail "an unknown column is an error"
sh "$here/column.sh" 2>/dev/null && fail "NAME is required"
exit "$failures"
