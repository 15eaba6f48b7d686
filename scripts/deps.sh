#!/bin/sh
# scripts/deps.sh - install every Debian package Castor's build, tests,
# demo and benchmarks need.  Idempotent and quiet: only what is missing is
# installed.  Usage: scripts/deps.sh [build|test|bench|all]  (default: test)
set -eu
what=${1:-test}

build="meson ninja-build pkg-config gcc make libc6-dev libsqlite3-dev libssl-dev
libcrypt-dev libzstd-dev zlib1g-dev libgmime-3.0-dev libcmocka-dev openssl sqlite3 scdoc"
test="python3 python3-pytest clang libclang-rt-14-dev swaks libnet-ssleay-perl fetchmail isync
procps iproute2 man-db fail2ban"
bench="python3-matplotlib linux-perf"

case $what in
build) pkgs=$build ;;
test) pkgs="$build $test" ;;
bench|all) pkgs="$build $test $bench" ;;
*) echo "usage: $0 [build|test|bench|all]" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/update-success-stamp
if [ ! -d /var/lib/apt/lists/partial ] || [ -z "$(ls /var/lib/apt/lists 2>/dev/null | grep -v -e partial -e lock)" ] \
   || ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
