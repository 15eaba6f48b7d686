#!/bin/sh
# scripts/check.sh BUILD [ASAN_BUILD] - run every test suite and print one
# closing line "N passed, N failed" summing them all.
#   - C unit tests (cmocka, TAP) in each tree given;
#   - every fuzz target over its seed corpus (trees built with -Dfuzz=true);
#   - the pytest integration suite, once, against the last tree given
#     (the sanitizer tree in `make check`).
# Exit status is 0 only when nothing failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
failures=""
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

count() { # $1 = label, $2 = ok?
	if [ "$2" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures="$failures\n  $1"; fi
}

last=""
for tree in "$@"; do
	[ -d "$tree" ] || { echo "check: no build tree $tree" >&2; exit 2; }
	tree=$(cd "$tree" && pwd)
	last=$tree
	echo "== unit tests ($tree)"
	for t in "$tree"/tests/unit/test_*; do
		[ -x "$t" ] && [ -f "$t" ] || continue
		name=$(basename "$t")
		out=$(cd "$tree/tests/unit" && CMOCKA_MESSAGE_OUTPUT=TAP timeout 600 "$t" 2>&1)
		rc=$?
		ok=$(printf '%s\n' "$out" | grep -c '^ok ')
		nok=$(printf '%s\n' "$out" | grep -c '^not ok ')
		passed=$((passed + ok))
		failed=$((failed + nok))
		if [ $rc -ne 0 ] && [ "$nok" -eq 0 ]; then
			failed=$((failed + 1))
			failures="$failures\n  $name (exit $rc)"
		fi
		if [ "$nok" -gt 0 ] || [ $rc -ne 0 ]; then
			printf '%s\n' "$out" | sed 's/^/    /'
			failures="$failures\n  $name"
		fi
		if [ $rc -ne 0 ] && [ "$nok" -eq 0 ]; then
			echo "  $name: $ok passed, 1 failed (the program ended with exit $rc)"
		else
			echo "  $name: $ok passed, $nok failed"
		fi
	done
	if [ -d "$tree/fuzz" ]; then
		echo "== fuzz targets over their seed corpora ($tree)"
		for f in "$tree"/fuzz/fuzz_*; do
			[ -x "$f" ] && [ -f "$f" ] || continue
			name=$(basename "$f")
			corpus="$top/fuzz/corpus/${name#fuzz_}"
			[ -d "$corpus" ] || corpus="$top/fuzz/corpus"
			if timeout 600 "$f" -runs=0 "$corpus" >"$tree/fuzz/$name.log" 2>&1; then
				count "$name" 1; echo "  $name: ok"
			else
				count "$name" 0; echo "  $name: FAILED (see $tree/fuzz/$name.log)"; tail -20 "$tree/fuzz/$name.log"
			fi
		done
	fi
done

if [ -n "$last" ] && [ -d "$top/tests/integration" ]; then
	echo "== integration tests (pytest, binaries from $last)"
	xml="$last/pytest-junit.xml"
	rm -f "$xml"
	CASTOR_BUILD="$last" ASAN_OPTIONS="detect_leaks=0:abort_on_error=0" \
	    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
	    $PY -m pytest "$top/tests/integration" -q -rfE -p no:cacheprovider --junitxml="$xml" ${PYTEST_ARGS:-}
	rc=$?
	if [ -f "$xml" ]; then
		set -- $($PY - "$xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0)); s += int(su.get("skipped", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
print(t - f - s, f)
PYEOF
)
		passed=$((passed + $1))
		failed=$((failed + $2))
		[ "$2" -gt 0 ] && failures="$failures\n  pytest: $2 failed"
	elif [ $rc -ne 5 ]; then
		failed=$((failed + 1))
		failures="$failures\n  pytest did not run (exit $rc)"
	fi
fi

if [ $failed -gt 0 ]; then
	printf "failures:$failures\n"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
