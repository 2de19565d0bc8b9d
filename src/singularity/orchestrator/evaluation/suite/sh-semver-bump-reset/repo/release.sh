#!/bin/bash
# release.sh PART: bump the version in the VERSION file and print it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
next=$("$BASH" "$here/bump.sh" "${1:?usage: release.sh major|minor|patch}" "$(cat VERSION)")
echo "$next" >VERSION
echo "$next"
