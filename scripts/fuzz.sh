#!/bin/sh
# scripts/fuzz.sh BUILD SECONDS - run every fuzz target for SECONDS each,
# growing its corpus in fuzz/corpus/<name>/ (new inputs stay local; commit
# the interesting ones).  Exits non-zero if any target found a crash.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
tree=$1
secs=${2:-60}
rc=0
for f in "$tree"/fuzz/fuzz_*; do
	[ -x "$f" ] && [ -f "$f" ] || continue
	name=$(basename "$f")
	corpus="$top/fuzz/corpus/${name#fuzz_}"
	mkdir -p "$corpus" "$tree/fuzz/artifacts"
	echo "== $name for ${secs}s"
	if ! "$f" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$tree/fuzz/artifacts/$name-" \
	    "$corpus" >"$tree/fuzz/$name.fuzz.log" 2>&1; then
		echo "  $name: CRASH (see $tree/fuzz/$name.fuzz.log)"
		tail -30 "$tree/fuzz/$name.fuzz.log"
		rc=1
	else
		echo "  $name: clean, $(grep -E 'stat::number_of_executed_units' "$tree/fuzz/$name.fuzz.log" | awk '{print $2}') runs"
	fi
done
exit $rc
