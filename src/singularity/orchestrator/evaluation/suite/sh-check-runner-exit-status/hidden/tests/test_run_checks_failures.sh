#!/bin/bash
# Hidden tests: a failing check fails the run, and every check still runs.
set -u
here=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
	echo "FAIL: $1" >&2
	failures=$((failures + 1))
}

mkdir "$work/checks"
printf 'echo one ok\n' >"$work/checks/1-ok.sh"
printf 'echo "lint: 2 problems" >&2\nexit 3\n' >"$work/checks/2-lint.sh"
printf 'echo three ok\n' >"$work/checks/3-ok.sh"
printf 'exit 1\n' >"$work/checks/4-silent.sh"
out=$(bash "$here/run_checks.sh" "$work/checks")
status=$?
[ "$status" -ne 0 ] || fail "a failing check must fail the run"
[[ $out == *"[2-lint] lint: 2 problems"* ]] || fail "the error is shown: $out"
[[ $out == *"[3-ok] three ok"* ]] || fail "later checks still run: $out"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "failed checks: 2-lint 4-silent" ] || fail "summary: $out"
exit "$failures"
