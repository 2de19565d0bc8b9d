#!/bin/sh
# Visible tests of envget.sh: run from the repository's root.
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
# settings
PORT=8080
NAME="My App"
DEBUG=1
DEBUG=0
ENV
[ "$(sh "$here/envget.sh" "$work/.env" PORT)" = 8080 ] || fail "PORT"
[ "$(sh "$here/envget.sh" "$work/.env" NAME)" = "My App" ] || fail "quotes are removed"
[ "$(sh "$here/envget.sh" "$work/.env" DEBUG)" = 0 ] || fail "the last assignment wins"
sh "$here/envget.sh" "$work/.env" HOST 2>/dev/null && fail "an unset key is an error"
sh "$here/envget.sh" "$work/.env" 'P.*' 2>/dev/null && fail "a key is not a pattern"
exit "$failures"
