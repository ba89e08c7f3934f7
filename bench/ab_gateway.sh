#!/usr/bin/env bash
# Two versions of campusvpn on the shared test bed, in alternating rounds (A, B, A, B, ...), so that
# the machine's noise falls on both alike; prints each figure's median, min and max per version.
# As root:  bash bench/ab_gateway.sh [--rounds N] [--duration S] [--phases tunnel,memory] REF_A [REF_B]
# REF_A / REF_B are git revisions of this repository; REF_B defaults to the working tree.
# --b-fortinet: B is the same gateway reached over the FortiGate protocol (openconnect
# --protocol=fortinet, tunnel figures only): AnyConnect against Fortinet in alternating rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
TB=$(cd "$PROJECT/../shared/testbed" && pwd)
ROUNDS=3; DURATION=8; PHASES=tunnel,memory; B_FORTINET=0
while (($#)); do
    case "$1" in
        --b-fortinet) B_FORTINET=1; PHASES=tunnel; shift ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --phases) PHASES=$2; shift 2 ;;
        *) break ;;
    esac
done
REF_A=${1:?usage: ab_gateway.sh [options] REF_A [REF_B]}; REF_B=${2:-}
PY=${PYTHON:-python3}
OUT="$PROJECT/bench/results/ab-$(date -u +%Y%m%d-%H%M)"
WORK=$(mktemp -d /tmp/campusvpn-ab.XXXXXX)
mkdir -p "$OUT"

tree_of() {  # the source tree of a revision ("" = this working tree)
    if [ -z "$1" ]; then echo "$PROJECT"; return; fi
    local dir="$WORK/tree-$(echo "$1" | tr -c 'a-zA-Z0-9\n' _)"
    git -C "$PROJECT" archive --format=tar "$1" | { mkdir -p "$dir"; tar -x -C "$dir"; }
    echo "$dir"
}
A_TREE=$(tree_of "$REF_A"); B_TREE=$(tree_of "$REF_B")
cleanup() {
    for v in a b; do "$PROJECT/bench/campusvpn-gw.sh" stop --state "$WORK/state-$v" >/dev/null 2>&1 || true; done  # by pid
    "$TB/netns-testbed.sh" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$TB/netns-testbed.sh" up >/dev/null  # installs what the bench needs when missing
{ echo "A=${REF_A} ($(git -C "$PROJECT" rev-parse --short "$REF_A"))"
  echo "B=${REF_B:-working tree} ($(git -C "$PROJECT" rev-parse --short HEAD)$([ -z "$REF_B" ] && ! git -C "$PROJECT" diff --quiet && echo +changes))"
  echo "rounds=$ROUNDS duration=$DURATION phases=$PHASES started=$(date -u +%FT%TZ)"; } | tee "$OUT/meta.txt"
for round in $(seq 1 "$ROUNDS"); do
    for v in a b; do
        tree=$A_TREE; [ "$v" = b ] && tree=$B_TREE
        state="$WORK/state-$v"
        # Each version with its own launcher and bench user maker, run by one Python with that tree's
        # sources first on the path (the launchers' own venv is not used, so both share the same Python).
        PYTHON=$PY PYTHONPATH="$tree/src" "$tree/bench/campusvpn-gw.sh" start --dtls off --state "$state" >/dev/null
        if [ "$v" = b ] && [ "$B_FORTINET" = 1 ]; then
            # As bench/run.sh's Fortinet pass: password + TOTP on every connect, with a TOTP step newer
            # than the one the bench user was made with.
            ( . "$state/gw.env"
              sleep $((31 - $(date +%s) % 30))
              GW_URL="https://$GW_ADDR:$GW_PORT/" \
                  BENCH_OC_EXTRA="--protocol=fortinet --token-mode=totp --token-secret=base32:$BENCH_TOTP_SECRET" \
                  PYTHONPATH="$tree/src" "$TB/bench.sh" --gw-env "$state/gw.env" --gw-name "$v" --phases "$PHASES" \
                  --reps 1 --duration "$DURATION" --log-dir "$OUT/logs-$v-$round" ) \
                | grep -v '^#' | sed "s/^/round=$round /" | tee -a "$OUT/figures.txt"
        else
            PYTHONPATH="$tree/src" "$TB/bench.sh" --gw-env "$state/gw.env" --gw-name "$v" --phases "$PHASES" \
                --reps 1 --duration "$DURATION" --log-dir "$OUT/logs-$v-$round" \
                | grep -v '^#' | sed "s/^/round=$round /" | tee -a "$OUT/figures.txt"
        fi
        "$tree/bench/campusvpn-gw.sh" stop --state "$state" >/dev/null
    done
done
"$PY" - "$OUT/figures.txt" <<'PYEOF' | tee "$OUT/summary.txt"
import statistics, sys
from collections import defaultdict
vals = defaultdict(list)
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) != 4:
        continue
    _round, name, value, unit = parts
    version, _, figure = name.partition(".")
    try:
        vals[(figure, unit)].append((version, float(value)))
    except ValueError:
        pass
print(f"{'figure':46} {'A median [min-max]':>26} {'B median [min-max]':>26}  B/A")
for (figure, unit), pairs in sorted(vals.items()):
    by = {v: [x for w, x in pairs if w == v] for v in ("a", "b")}
    if not by["a"] or not by["b"]:
        continue
    ma, mb = statistics.median(by["a"]), statistics.median(by["b"])
    cell = lambda xs, m: f"{m:.3g} [{min(xs):.3g}-{max(xs):.3g}] {unit}"
    print(f"{figure:46} {cell(by['a'], ma):>26} {cell(by['b'], mb):>26}  {mb / ma if ma else float('nan'):.2f}")
PYEOF
echo "raw figures and logs: $OUT"
