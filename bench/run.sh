#!/usr/bin/env bash
# One command: ocserv and campusvpn measured on the same test bed with the same openconnect, in one
# run, then bench/RESULTS.md with charts. As root:  bash bench/run.sh [-- bench.sh options]
# Takes about 30-40 minutes with the test bed's defaults (3 repetitions of 10 s per figure).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
TB=$(cd "$PROJECT/../shared/testbed" && pwd)
STAMP=$(date -u +%Y%m%d-%H%M)
OUT="$PROJECT/bench/results/$STAMP"
mkdir -p "$OUT"
python3 -m pip install -q --disable-pip-version-check -e . matplotlib 2>&1 | grep -v -e "WARNING: Running pip" -e "WARNING: Location" || true
command -v ocserv >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ocserv >/dev/null; }
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi
# ocserv with DTLS on and off (its TLS-only figures are the like-for-like comparison), then campusvpn.
"$TB/run-all.sh" --modes "on off" --out-dir "$OUT/ocserv" -- "${extra[@]}" | tee "$OUT/ocserv.out"
"$TB/run-all.sh" --gw-cmd "$PROJECT/bench/campusvpn-gw.sh" --modes "off" --out-dir "$OUT/campusvpn" -- "${extra[@]}" \
    | tee "$OUT/campusvpn.out"
python3 "$PROJECT/bench/report.py" "$OUT" "$PROJECT/bench"
echo "report: $PROJECT/bench/RESULTS.md (raw results in $OUT)"
