#!/bin/bash
# Every script of the repository parses.
status=0
for script in "$(dirname "$0")"/../*.sh; do
	bash -n "$script" || status=1
done
echo "syntax ok"
exit "$status"
