#!/bin/sh
# Hidden tests: no more than KEEP old copies.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

for n in 1 2 3 4 5 6; do
	echo "day $n" >"$work/app.log"
	sh "$here/rotate.sh" "$work/app.log" 3 || fail "rotate exited non-zero"
done
[ -f "$work/app.log.3" ] || fail "app.log.3 should exist"
[ ! -e "$work/app.log.4" ] || fail "app.log.4 should not exist with KEEP=3"
[ "$(cat "$work/app.log.1")" = "day 6" ] || fail "app.log.1 should be the newest copy"
[ "$(cat "$work/app.log.3")" = "day 4" ] || fail "app.log.3 should be the oldest kept copy"

echo one >"$work/web.log"
sh "$here/rotate.sh" "$work/web.log" 1
echo two >"$work/web.log"
sh "$here/rotate.sh" "$work/web.log" 1
[ "$(cat "$work/web.log.1")" = two ] || fail "web.log.1 should hold the last lines"
[ ! -e "$work/web.log.2" ] || fail "web.log.2 should not exist with KEEP=1"

exit "$failures"
