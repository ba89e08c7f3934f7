#!/usr/bin/env bash
# One command: ocserv and campusvpn measured on the same test bed with the same openconnect, in one
# run, then bench/RESULTS.md with charts. As root:  bash bench/run.sh [-- bench.sh options]
# campusvpn is measured twice: over AnyConnect (CSTP) and over the FortiGate protocol (PPP), the
# latter's tunnel figures only (openconnect --protocol=fortinet; see fortinet_pass below).
# Takes about 30-40 minutes with the test bed's defaults (3 repetitions of 10 s per figure).
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
TB=$(cd "$PROJECT/../shared/testbed" && pwd)
STAMP=$(date -u +%Y%m%d-%H%M)
OUT="$PROJECT/bench/results/$STAMP"
EXTRA_ONLY=0
if [ "${1:-}" = "--extra-only" ]; then  # redo only the extra figures of an earlier run: --extra-only DIR
    OUT=$(cd "$2" && pwd); EXTRA_ONLY=1; shift 2
    rm -f "$OUT/extra-figures.txt"
fi
mkdir -p "$OUT"
. scripts/venv.sh  # the project's venv (.venv), first on PATH: python3 below is the venv's
ensure_venv
install_project bench
command -v ocserv >/dev/null || apt_install ocserv
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi
# ocserv with DTLS on and off (its TLS-only figures are the like-for-like comparison), then campusvpn.
if [ "$EXTRA_ONLY" = 0 ]; then
    "$TB/run-all.sh" --modes "on off" --out-dir "$OUT/ocserv" -- "${extra[@]}" | tee "$OUT/ocserv.out"
    "$TB/run-all.sh" --gw-cmd "$PROJECT/bench/campusvpn-gw.sh" --modes "off" --out-dir "$OUT/campusvpn" \
        -- "${extra[@]}" | tee "$OUT/campusvpn.out"
fi

"$TB/netns-testbed.sh" up --no-install
trap '"$PROJECT/bench/campusvpn-gw.sh" stop --state "$OUT/cvf-state" || true; "$PROJECT/bench/campusvpn-gw.sh" stop --state "$OUT/cv-state" || true; "$TB/ocserv-gw.sh" stop --state "$OUT/oc-state" || true; "$TB/netns-testbed.sh" down || true' EXIT

# campusvpn over the FortiGate SSL-VPN protocol: the same launcher, test bed and openconnect, which
# bench.sh passes BENCH_OC_EXTRA. Tunnel figures only (ping, 1 and 4 TCP streams both ways): this
# protocol has no trusted-device URL, so each connect signs in with password + TOTP, and campusvpn
# accepts a TOTP code once, so the setup and memory phases' rapid reconnects cannot sign in.
fortinet_pass() {
    local dir="$OUT/campusvpn-fortinet" logs="/tmp/vb-bench/fortinet-$STAMP-$$" f
    mkdir -p "$dir"
    "$PROJECT/bench/campusvpn-gw.sh" start --dtls off --state "$OUT/cvf-state" >/dev/null
    ( . "$OUT/cvf-state/gw.env"
      sleep $((31 - $(date +%s) % 30))  # bench_user.py used this TOTP step's code: openconnect's must be newer
      GW_NAME=campusvpn-fortinet GW_URL="https://$GW_ADDR:$GW_PORT/" \
          BENCH_OC_EXTRA="--protocol=fortinet --token-mode=totp --token-secret=base32:$BENCH_TOTP_SECRET" \
          "$TB/bench.sh" --gw-env "$OUT/cvf-state/gw.env" --phases tunnel --log-dir "$logs" "${extra[@]}" ) \
        | tee "$dir/figures.txt"
    for f in runs cpu; do  # named as run-all.sh names them, for report.py's CPU per Gbit/s
        [ ! -f "$logs/$f.txt" ] || cp "$logs/$f.txt" "$dir/dtls-off-$f.txt"
    done
    [ ! -f "$logs/bench.log" ] || cp "$logs/bench.log" "$dir/dtls-off-bench.log"
    "$PROJECT/bench/campusvpn-gw.sh" stop --state "$OUT/cvf-state"
}
if [ "$EXTRA_ONLY" = 0 ]; then
    fortinet_pass
fi

# Figures the test bed does not take: sign-in with MFA, cookie resumption and login throughput for both
# gateways, and campusvpn holding 1,000 and 10,000 idle tunnels.
EXTRA="$OUT/extra-figures.txt"
"$TB/ocserv-gw.sh" start --dtls off --state "$OUT/oc-state" >/dev/null
( . "$OUT/oc-state/gw.env"; python3 "$PROJECT/bench/connect_time.py" --name ocserv --pin "$GW_PIN" \
    --password-only "$GW_USER" "$GW_PASS" --rounds 10
  python3 "$PROJECT/bench/login_rate.py" --name ocserv --pin "$GW_PIN" --password-only "$GW_USER" "$GW_PASS" ) \
    | tee -a "$EXTRA"
"$TB/ocserv-gw.sh" stop --state "$OUT/oc-state"
"$PROJECT/bench/campusvpn-gw.sh" start --dtls off --state "$OUT/cv-state" >/dev/null
( . "$OUT/cv-state/gw.env"
  python3 "$PROJECT/bench/connect_time.py" --config "$BENCH_CONFIG" --pin "$GW_PIN" --rounds 10
  python3 "$PROJECT/bench/login_rate.py" --config "$BENCH_CONFIG" --pin "$GW_PIN"
  for n in 1000 10000; do
      ip netns exec vb-client python3 "$PROJECT/bench/idle_sessions.py" --config "$BENCH_CONFIG" --sessions $n \
          --hold 30 --gw-pid "$GW_PID" --user $((3000000000 + n))
  done ) | tee -a "$EXTRA"
"$PROJECT/bench/campusvpn-gw.sh" stop --state "$OUT/cv-state"
python3 "$PROJECT/bench/signin_rate.py" | tee -a "$EXTRA"  # the sign-in core and Argon2id, no gateway

python3 "$PROJECT/bench/report.py" "$OUT" "$PROJECT/bench"
echo "report: $PROJECT/bench/RESULTS.md (raw results in $OUT)"
