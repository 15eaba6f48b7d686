#!/bin/bash
# bench/peers/cyrus-stop.sh - stop the cyrmaster processes started by cyrus-start.sh,
# by the pid in their pidfiles; wait up to 30 s, then SIGKILL the process group.
#   usage: cyrus-stop.sh BASE [all|master|replica] [SIG]   (default TERM)
#   'all' also stops the syslog catcher if cyrus-start.sh started one.
set -u
BASE=${1:?usage: cyrus-stop.sh BASE [all|master|replica] [SIG]}
WHAT=${2:-all}
SIG=${3:-TERM}
stopone() {
	local d=$BASE/$1 pid i
	[ -f "$d/run/master.pid" ] || return 0
	pid=$(cat "$d/run/master.pid")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -"$SIG" "$pid"
		for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "$1: cyrmaster $pid alive after 30 s, SIGKILL" >&2
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
		fi
	fi
	rm -f "$d/run/master.pid"
}
case $WHAT in
	master) stopone master ;;
	replica) stopone replica ;;
	all)
		stopone master
		stopone replica
		if [ -f "$BASE/syslog/catch.pid" ]; then
			kill "$(cat "$BASE/syslog/catch.pid")" 2>/dev/null && rm -f /dev/log
			rm -f "$BASE/syslog/catch.pid"
		fi ;;
esac
exit 0
