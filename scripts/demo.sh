#!/bin/sh
# scripts/demo.sh - start what Castor has so far on loopback.
# (grows into the master + replica demo as services land)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
echo "demo: built $(ls "$top"/build/src/*/ 2>/dev/null | grep -c . || true) files; no services exist yet."
echo "demo: run 'make check' to run the test suites."
