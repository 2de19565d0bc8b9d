#!/bin/bash
# Hidden tests: lower parts reset on minor and major bumps.
set -u
here=$(pwd)
failures=0
expect() {
	local want=$1
	shift
	local got
	got=$(bash "$here/bump.sh" "$@" 2>/dev/null)
	[ "$got" = "$want" ] || {
		echo "FAIL: bump.sh $* gave '$got', want '$want'" >&2
		failures=$((failures + 1))
	}
}
expect 2.4.0 minor 2.3.7
expect 3.0.0 major 2.3.7
expect v1.0.0 major v0.9.9
expect v0.10.0 minor v0.9.9
expect 0.0.2 patch 0.0.1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo v1.4.2 >"$work/VERSION"
(cd "$work" && bash "$here/release.sh" minor >/dev/null)
[ "$(cat "$work/VERSION")" = v1.5.0 ] || {
	echo "FAIL: release.sh minor" >&2
	failures=$((failures + 1))
}
exit "$failures"
