#!/bin/bash
# bump.sh major|minor|patch VERSION: print the next version (MAJOR.MINOR.PATCH, optional v).
set -eu

usage() {
	echo "usage: bump.sh major|minor|patch VERSION" >&2
	exit 2
}

[ $# -eq 2 ] || usage
part=$1
version=$2
prefix=
case $version in
v*)
	prefix=v
	version=${version#v}
	;;
esac
if ! [[ $version =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]]; then
	echo "bump: not a version: $2" >&2
	exit 1
fi
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
patch=${BASH_REMATCH[3]}

case $part in
major) major=$((major + 1)) ;;
minor) minor=$((minor + 1)) ;;
patch) patch=$((patch + 1)) ;;
*) usage ;;
esac
echo "$prefix$major.$minor.$patch"
