#!/usr/bin/env bash
# Regenerates the real-tool tar fixtures in this directory.
#
# Usage: bash make-fixtures.sh   (as root; writes *.tar next to this script)
#
# Needs GNU tar. bsdtar (Debian: libarchive-tools), busybox and setfattr
# (Debian: attr) are optional: fixtures that need a missing tool are skipped
# with a message and the old file is left in place. Root is needed for mknod
# and for security.* xattrs; `unshare --pid` gives tar a fixed PID, because
# GNU tar writes its PID into the names of PAX sparse 1.0 headers.
#
# Every fixture is deterministic: fixed contents, modes, mtimes, owners and
# order, so running the script twice gives the same bytes. See README.md.
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022

out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
cd "$src"

MTIME=1700000000 # 2023-11-14T22:13:20Z

have() { command -v "$1" >/dev/null 2>&1; }

# gtar runs GNU tar as PID 1 of a new PID namespace when it can, so that
# %p in header names is always 1.
gtar() {
	if unshare --pid --fork true 2>/dev/null; then
		unshare --pid --fork tar "$@"
	else
		echo "warning: unshare --pid unavailable; sparse 1.0 names will hold a random PID" >&2
		tar "$@"
	fi
}

# Deterministic options for GNU tar.
GTAR_DET=(--sort=name --mtime=@$MTIME --owner=0 --group=0 --numeric-owner)
# ... plus, for --format=posix only: fixed extended-header names (the default
# holds the PID) and no atime/ctime records.
PAXOPT=--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime

# text N SEED: N bytes of deterministic text (sha256sum based, so the same
# on every machine, unlike awk's rand).
text() {
	local n=$1 seed=$2 i=0 o=""
	while [ ${#o} -lt "$n" ]; do
		o+="$i lorem ipsum $(printf '%s-%s' "$seed" "$i" | sha256sum | cut -c1-24) dolor"$'\n'
		i=$((i + 1))
	done
	printf '%s' "${o:0:n}"
}

# blob SEED: 32 bytes of deterministic binary.
blob() { printf "$(printf '%s' "$1" | sha256sum | cut -c1-64 | sed 's/../\\x&/g')"; }

# sparse FILE SIZE OFF...: a file of SIZE bytes with 300 bytes of data at
# each OFF and holes elsewhere.
sparse() {
	local f=$1 size=$2
	shift 2
	rm -f "$f"
	truncate -s "$size" "$f"
	local i=0
	for off in "$@"; do
		text 300 "$((i++ + off))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
	done
}

settime() { find "$@" -exec touch -h -d @$MTIME {} +; }

# --- sources -----------------------------------------------------------------

mkdir -p sparse
# Offsets are 4 KiB aligned: the filesystem reports data in whole blocks, so
# each fragment is stored as 4096 bytes (300 of text, the rest zeros).
sparse sparse/few 1048576 0 204800
# 6 fragments: more than the 4 an old GNU header holds, so an extension block.
sparse sparse/many 4194304 $(seq 4096 655360 3280896)
sparse sparse/trailing-hole 262144 4096
chmod 644 sparse/*

long_dir=$(printf 'd%.0s' $(seq 1 80))
long_file=$(printf 'f%.0s' $(seq 1 90))
very_long=$(printf 'v%.0s' $(seq 1 130))
mkdir -p "names/$long_dir" "names/$very_long"
text 700 1 >"names/$long_dir/$long_file"          # 172 bytes: ustar prefix split
text 300 2 >"names/$very_long/$very_long.txt"     # 271 bytes: PAX / GNU 'L' only
text 50 3 >names/exactly-100-bytes-$(printf 'x%.0s' $(seq 1 69))
ln -s "../names/$very_long/$very_long.txt" "names/long-symlink-target"
chmod 755 "names/$long_dir" "names/$very_long"
chmod 644 "names/$long_dir/$long_file" "names/$very_long/$very_long.txt" names/exactly-100-bytes-*

mkdir -p links/sub
text 2000 4 >links/original
ln links/original links/hard1
ln links/original links/sub/hard2
ln -s original links/soft
ln -s /etc/passwd links/absolute
chmod 644 links/original

mkdir -p v7/dir
text 513 5 >v7/file-513
: >v7/empty
ln v7/file-513 v7/hardlink
ln -s file-513 v7/symlink
chmod 644 v7/file-513 v7/empty

mkdir -p special/dir
mkfifo special/fifo
if mknod special/null c 1 3 2>/dev/null && mknod special/loop7 b 7 7 2>/dev/null; then :; else
	echo "warning: mknod failed; special fixtures have no devices" >&2
fi
: >special/empty
text 512 6 >special/exact-512
text 1024 7 >special/exact-1024
chmod 644 special/empty special/exact-* special/fifo

mkdir -p xattr
text 100 8 >xattr/file
blob 9 >xattr/binary
chmod 644 xattr/file xattr/binary
xattrs_ok=0
if have setfattr &&
	setfattr -n user.comment -v "hello xattr" xattr/file 2>/dev/null &&
	setfattr -n user.binary -v 0x00ff00ff xattr/file 2>/dev/null &&
	setfattr -n security.capability -v 0x0100000200040000000000000000000000000000 xattr/binary 2>/dev/null; then
	xattrs_ok=1
else
	echo "warning: cannot set xattrs here; skipping xattr fixtures" >&2
fi

mkdir -p nonutf8
text 40 10 >"nonutf8/caf$(printf '\351')"
text 40 11 >"nonutf8/$(printf '\377\376')bytes"
chmod 644 nonutf8/*

settime "$src"

# --- GNU tar -------------------------------------------------------------------

echo "GNU tar: $(tar --version | head -1)"
g() {
	local name=$1 opts=("${GTAR_DET[@]}")
	shift
	case " $* " in *" --format=posix "*) opts+=("$PAXOPT") ;; esac
	gtar "${opts[@]}" -cf "$out/$name" "$@"
	echo "  $name"
}

g gnu-sparse-gnu.tar --format=gnu --sparse sparse
g gnu-sparse-oldgnu.tar --format=oldgnu --sparse sparse
g gnu-sparse-pax-0.0.tar --format=posix --sparse --sparse-version=0.0 sparse
g gnu-sparse-pax-0.1.tar --format=posix --sparse --sparse-version=0.1 sparse
g gnu-sparse-pax-1.0.tar --format=posix --sparse --sparse-version=1.0 sparse
g gnu-longnames-gnu.tar --format=gnu names
g gnu-longnames-posix.tar --format=posix names
# ustar cannot hold the 271-byte name: leave that directory out.
g gnu-longnames-ustar.tar --format=ustar --exclude="names/$very_long" --exclude=names/long-symlink-target names
g gnu-hardlinks-gnu.tar --format=gnu links
g gnu-hardlinks-posix.tar --format=posix links
g gnu-v7.tar --format=v7 v7
g gnu-specials-posix.tar --format=posix special
g gnu-nonutf8-gnu.tar --format=gnu nonutf8
g gnu-nonutf8-posix.tar --format=posix nonutf8
if [ "$xattrs_ok" = 1 ]; then
	g gnu-xattrs-posix.tar --format=posix --xattrs --xattrs-include='*' xattr
fi

# --- bsdtar (libarchive) -------------------------------------------------------
# bsdtar has no --mtime/--sort, so it re-writes a deterministic GNU tar archive
# read with @ARCHIVE: the output depends only on that input.

if have bsdtar; then
	echo "bsdtar: $(bsdtar --version)"
	gtar "${GTAR_DET[@]}" "$PAXOPT" --format=posix -cf "$work/mixed.tar" names links special
	b() { local name=$1; shift; bsdtar "$@" -cf "$out/$name" "@$work/mixed.tar"; echo "  $name"; }
	b bsdtar-pax.tar --format=pax
	b bsdtar-gnutar.tar --format=gnutar
	b bsdtar-v7.tar --format=v7
	bsdtar --format=ustar -cf "$out/bsdtar-ustar.tar" --exclude="names/$very_long" \
		--exclude=names/long-symlink-target "@$work/mixed.tar"
	echo "  bsdtar-ustar.tar"
	bsdtar --format=pax -cf "$out/bsdtar-sparse-pax.tar" "@$out/gnu-sparse-pax-1.0.tar"
	echo "  bsdtar-sparse-pax.tar"
	if [ "$xattrs_ok" = 1 ]; then
		bsdtar --format=pax -cf "$out/bsdtar-xattrs-pax.tar" "@$out/gnu-xattrs-posix.tar"
		echo "  bsdtar-xattrs-pax.tar"
	fi
else
	echo "bsdtar not found (apt-get install libarchive-tools): skipping bsdtar-*.tar" >&2
fi

# --- busybox tar -----------------------------------------------------------------
# busybox takes owners and mtimes from the files (set above) and walks
# directories in readdir order, so it gets a sorted list and --no-recursion.

if have busybox && busybox tar --help >/dev/null 2>&1; then
	echo "busybox: $(busybox | head -1)"
	chown -R 0:0 names links
	find names links | sort >"$work/list"
	busybox tar -cf "$out/busybox.tar" --no-recursion $(cat "$work/list")
	echo "  busybox.tar"
else
	echo "busybox not found: skipping busybox.tar" >&2
fi

ls -l "$out"/*.tar
