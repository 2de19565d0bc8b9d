#!/bin/sh
# envget.sh FILE KEY: print the value of KEY in a .env file (KEY=value lines).
# Blank lines and lines starting with # are ignored; the last assignment wins; one pair of
# matching quotes around the value is removed. Exits 1 when KEY is not set.
set -eu

file=${1:?usage: envget.sh FILE KEY}
key=${2:?usage: envget.sh FILE KEY}
case $key in
[A-Za-z_]*) ;;
*)
	echo "envget: invalid key: $key" >&2
	exit 2
	;;
esac
case $key in
*[!A-Za-z0-9_]*)
	echo "envget: invalid key: $key" >&2
	exit 2
	;;
esac

line=$(grep "^$key=" "$file" | tail -n 1) || true
if [ -z "$line" ]; then
	echo "envget: $key is not set in $file" >&2
	exit 1
fi
value=$(printf '%s\n' "$line" | cut -d= -f2)
case $value in
\"*\" | \'*\')
	value=${value#?}
	value=${value%?}
	;;
esac
printf '%s\n' "$value"
