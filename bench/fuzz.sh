#!/usr/bin/env bash
# Fuzz every parser (or the targets named) for --seconds each (default 600); see bench/FUZZ.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec python3 bench/fuzz/run.py "$@"
