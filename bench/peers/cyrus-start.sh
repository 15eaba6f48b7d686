#!/bin/bash
# bench/peers/cyrus-start.sh - start the Cyrus instances laid out by cyrus-setup.sh.
#   usage: cyrus-start.sh BASE [all|master|replica] [norepl]
#   'norepl' starts the master without the rolling sync_client (cyrus-norepl.conf).
# Each cyrmaster runs in its own session (setsid): on SIGTERM/SIGQUIT/SIGINT
# cyrmaster does kill(0, SIGTERM) to its whole process group.  Cyrus logs only
# through syslog; when this machine has no /dev/log a small catcher
# (syslogcatch.py) is started and logs to BASE/syslog/cyrus.log.
set -euo pipefail
BASE=${1:?usage: cyrus-start.sh BASE [all|master|replica] [norepl]}
WHAT=${2:-all}
VARIANT=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$BASE/ports.env"
mkdir -p "$BASE/syslog"
if [ ! -S /dev/log ]; then
	setsid /usr/bin/python3 "$HERE/syslogcatch.py" "$BASE/syslog/cyrus.log" /dev/log </dev/null >/dev/null 2>&1 &
	echo $! > "$BASE/syslog/catch.pid"
	for _ in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
fi

startone() {
	local name=$1 port=$2 d=$BASE/$1 conf
	conf=$d/etc/cyrus.conf
	[ "$name" = master ] && [ "$VARIANT" = norepl ] && conf=$d/etc/cyrus-norepl.conf
	if [ -f "$d/run/master.pid" ] && kill -0 "$(cat "$d/run/master.pid")" 2>/dev/null; then
		echo "$name already running (pid $(cat "$d/run/master.pid"))"
		return
	fi
	rm -f "$d/run/master.pid"
	setsid /usr/sbin/cyrmaster -C "$d/etc/imapd.conf" -M "$conf" \
		-p "$d/run/master.pid" -L "$d/log/master.stderr" </dev/null >/dev/null 2>&1 &
	local i
	for i in $(seq 200); do
		if [ -s "$d/run/master.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$name started (pid $(cat "$d/run/master.pid"), $conf)"
			return
		fi
		sleep 0.05
	done
	echo "$name: cyrmaster did not open port $port within 10 s" >&2
	exit 1
}
case $WHAT in
	replica) startone replica "$R_IMAP" ;;
	master) startone master "$M_IMAP" ;;
	all) startone replica "$R_IMAP"; startone master "$M_IMAP" ;;
	*) echo "cyrus-start: unknown $WHAT" >&2; exit 2 ;;
esac
