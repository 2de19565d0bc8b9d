#!/bin/bash
# Visible tests of run_checks.sh: run from the repository's root.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

out=$(bash "$here/run_checks.sh" "$here/checks") || fail "the repository's checks should pass"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "all checks passed" ] || fail "summary: $out"
[[ $out == *"[10-shell-syntax] syntax ok"* ]] || fail "output is prefixed: $out"

mkdir "$work/none"
bash "$here/run_checks.sh" "$work/none" >/dev/null || fail "no checks is a pass"
bash "$here/run_checks.sh" "$work/missing" 2>/dev/null && fail "a missing DIR is an error"
exit "$failures"
