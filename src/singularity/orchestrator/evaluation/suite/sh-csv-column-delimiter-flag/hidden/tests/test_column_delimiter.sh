#!/bin/sh
# Hidden tests: the -d option.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

printf 'date;amount;payee\n2024-01-02;12,50;shop\n2024-01-03;-4;cafe\n' >"$work/s.csv"
out=$(sh "$here/column.sh" -d ';' amount "$work/s.csv") || fail "-d exited non-zero"
[ "$out" = "$(printf '12,50\n-4')" ] || fail "-d ';' by file gave: $out"
out=$(sh "$here/column.sh" -d ';' payee <"$work/s.csv") || fail "-d on stdin exited non-zero"
[ "$out" = "$(printf 'shop\ncafe')" ] || fail "-d ';' on stdin gave: $out"
printf 'a|b\n1|2\n' >"$work/p.csv"
[ "$(sh "$here/column.sh" -d '|' b "$work/p.csv")" = 2 ] || fail "-d '|'"
printf 'a,b\n1,2\n' >"$work/c.csv"
[ "$(sh "$here/column.sh" b "$work/c.csv")" = 2 ] || fail "the default stays a comma"
sh "$here/column.sh" -d ';;' b "$work/c.csv" 2>/dev/null && fail "DELIM must be one character"
sh "$here/column.sh" -d 2>/dev/null && fail "-d needs a value"
exit "$failures"
