#!/bin/sh
# scripts/fresh-check.sh [TARGET...] - run the README's commands on a fresh
# Debian 12, the way a new operator's machine is: a minimal root made with
# debootstrap (--variant=minbase: no make, no python, no compiler), a clean
# clone of this repository copied in, /proc, /sys and /dev bind-mounted,
# then, inside it with chroot, `apt-get install make` (the one step the
# README asks for on a minimal system) and `make TARGET` for each TARGET
# (default: check).  Run it by hand before a release and after any change
# to scripts/deps.sh; the last lines say what passed.
#
#   FRESH_DIR   where the root is made (default /var/tmp/castor-fresh); it is
#               removed first, and again at the end unless FRESH_KEEP=1
#   FRESH_MIRROR  the Debian mirror (default http://deb.debian.org/debian)
#
# Needs root, network access to the Debian archive, and about 3 GB of disk.
set -eu
[ "$(id -u)" = 0 ] || { echo "fresh-check: run as root" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${FRESH_DIR:-/var/tmp/castor-fresh}
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
targets=${*:-check}

command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq debootstrap >/dev/null
command -v git >/dev/null 2>&1 || apt-get install -y -qq git >/dev/null

cleanup() {
	for m in dev/pts dev sys proc; do
		mountpoint -q "$dir/$m" 2>/dev/null && umount -l "$dir/$m"
	done
	[ "${FRESH_KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cleanup
mkdir -p "$dir"
echo "fresh-check: debootstrap bookworm (minbase) into $dir"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
	{ tail -20 "$dir.debootstrap.log"; exit 1; }
# a clean clone: what is committed, nothing else from this working tree
git clone -q "$top" "$dir/root/castor"
cp /etc/resolv.conf "$dir/etc/resolv.conf"
mount --bind /proc "$dir/proc"
mount --bind /sys "$dir/sys"
mount --bind /dev "$dir/dev"
mount --bind /dev/pts "$dir/dev/pts"

rc=0
chroot "$dir" /bin/sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends make >/dev/null' ||
	{ echo "fresh-check: installing make failed"; exit 1; }
for t in $targets; do
	echo "fresh-check: make $t"
	stop=""
	[ "$t" = demo ] && stop=" && make demo-stop"   # leave nothing running in the root
	if chroot "$dir" /bin/sh -c "cd /root/castor && make $t$stop" >"$dir.$t.log" 2>&1; then
		echo "fresh-check: make $t: ok ($(tail -n 1 "$dir.$t.log"))"
	else
		echo "fresh-check: make $t: FAILED (log: $dir.$t.log)"
		tail -n 30 "$dir.$t.log"
		rc=1
	fi
done
exit $rc
