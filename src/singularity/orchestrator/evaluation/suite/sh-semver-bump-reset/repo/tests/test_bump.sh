#!/bin/bash
# Visible tests of bump.sh and release.sh: run from the repository's root.
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
expect 1.2.4 patch 1.2.3
expect v0.9.10 patch v0.9.9
expect "" patch 1.2
expect "" patch 01.2.3
expect "" build 1.2.3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 0.1.0 >"$work/VERSION"
(cd "$work" && bash "$here/release.sh" patch >/dev/null)
[ "$(cat "$work/VERSION")" = 0.1.1 ] || {
	echo "FAIL: release.sh patch" >&2
	failures=$((failures + 1))
}
exit "$failures"
