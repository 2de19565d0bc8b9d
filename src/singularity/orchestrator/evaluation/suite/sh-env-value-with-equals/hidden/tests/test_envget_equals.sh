#!/bin/sh
# Hidden tests: values that hold "=" signs.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

cat >"$work/.env" <<'ENV'
DATABASE_URL=postgres://db/app?sslmode=require
EMPTY=
FORMULA='a=b=c'
ENV
out=$(sh "$here/envget.sh" "$work/.env" DATABASE_URL)
[ "$out" = "postgres://db/app?sslmode=require" ] || fail "DATABASE_URL gave: $out"
out=$(sh "$here/envget.sh" "$work/.env" FORMULA)
[ "$out" = "a=b=c" ] || fail "FORMULA gave: $out"
out=$(sh "$here/envget.sh" "$work/.env" EMPTY) || fail "an empty value is set"
[ "$out" = "" ] || fail "EMPTY gave: $out"
exit "$failures"
