#!/bin/sh
# rotate.sh FILE [KEEP]: FILE becomes FILE.1, FILE.1 becomes FILE.2, and so on; at most
# KEEP old copies are kept (default 5). FILE is left empty, ready for new lines.
set -eu

file=${1:?usage: rotate.sh FILE [KEEP]}
keep=${2:-5}
case $keep in
'' | *[!0-9]*)
	echo "rotate: KEEP must be a positive number, not '$keep'" >&2
	exit 2
	;;
esac
if [ "$keep" -lt 1 ]; then
	echo "rotate: KEEP must be at least 1" >&2
	exit 2
fi
if [ ! -f "$file" ]; then
	echo "rotate: no such file: $file" >&2
	exit 1
fi

i=$keep
while [ "$i" -ge 1 ]; do
	if [ -f "$file.$i" ]; then
		mv "$file.$i" "$file.$((i + 1))"
	fi
	i=$((i - 1))
done
mv "$file" "$file.1"
: >"$file"
