#!/bin/sh
# column.sh NAME [FILE]: print the values of the column whose header is NAME.
# Reads standard input when FILE is not given. Fields are not quoted.
set -eu

usage() {
	echo "usage: column.sh NAME [FILE]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
name=$1
shift
[ $# -le 1 ] || usage

awk -F',' -v name="$name" '
NR == 1 {
	for (i = 1; i <= NF; i++) if ($i == name) col = i
	if (!col) { print "column: no column named " name > "/dev/stderr"; exit 1 }
	next
}
{ print $col }
' "$@"
