#!/bin/bash
# run_checks.sh DIR: run every DIR/*.sh check in name order, each line of its output
# prefixed with its name; report the failed checks and exit 1 if there are any.
set -u

dir=${1:?usage: run_checks.sh DIR}
if [ ! -d "$dir" ]; then
	echo "run_checks: no such directory: $dir" >&2
	exit 2
fi

failed=()
for check in "$dir"/*.sh; do
	[ -f "$check" ] || continue
	name=$(basename "$check" .sh)
	if ! bash "$check" 2>&1 | sed "s/^/[$name] /"; then
		failed+=("$name")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "failed checks: ${failed[*]}"
	exit 1
fi
echo "all checks passed"
