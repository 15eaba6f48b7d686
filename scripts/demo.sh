#!/bin/sh
# scripts/demo.sh [stop] - the master + replica demo (scripts/demo.py).
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$@"
