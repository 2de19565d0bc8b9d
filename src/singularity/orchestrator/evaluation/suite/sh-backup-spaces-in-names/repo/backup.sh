#!/bin/bash
# backup.sh SRC DEST: copy every .txt file of SRC (not its subfolders) to DEST as NAME.bak,
# and print how many files were copied.
set -u

src=${1:?usage: backup.sh SRC DEST}
dest=${2:?usage: backup.sh SRC DEST}
if [ ! -d "$src" ]; then
	echo "backup: no such directory: $src" >&2
	exit 1
fi
mkdir -p "$dest"

count=0
for name in $(ls "$src"); do
	case $name in
	*.txt) ;;
	*) continue ;;
	esac
	if cp "$src/$name" "$dest/$name.bak"; then
		count=$((count + 1))
	fi
done
echo "backed up $count files"
