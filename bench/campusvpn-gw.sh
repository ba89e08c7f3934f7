#!/usr/bin/env bash
# Launcher for ../shared/testbed (run-all.sh --gw-cmd): starts campusvpn in the vb-gw namespace.
#   campusvpn-gw.sh start --dtls on|off --state DIR     # returns once it listens; writes DIR/gw.env
#   campusvpn-gw.sh stop --state DIR                    # stops only the gateway it started (by pid)
#   campusvpn-gw.sh restart --state DIR                 # starts it again on the same site (bench/soak.py)
# --database URL (start) puts the site on that database instead of its SQLite file.
# --dtls on|off sets [vpn] dtls. --workers N (default 1: one process, whose pid the bench measures)
# sets [gateway] workers; with more, GW_PID is the parent's.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/.." && pwd)
cmd=${1:-}; shift || true
DTLS=off; STATE=/run/vb-bench/state-campusvpn-gw; DATABASE=; WORKERS=1
while (($#)); do
    case "$1" in
        --dtls) DTLS=$2; shift 2 ;;
        --state) STATE=$2; shift 2 ;;
        --database) DATABASE=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
GW_ADDR=10.99.0.2; GW_PORT=443; NS=vb-gw
GW_USER=${GW_USER:-1000000000}; GW_PASS=${GW_PASS:-bench-pass-12345}
PY=${PYTHON:-python3}
[ -n "${PYTHON:-}" ] || [ ! -x "$PROJECT/.venv/bin/python" ] || PY=$PROJECT/.venv/bin/python  # bench/run.sh's venv

pin_of() {
    openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
}

# Start `serve` on the site's config in the gateway namespace; returns once it listens.
launch() {
    local conf=$1 pid
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"  # 10,000 sessions need 10,000 sockets
    CAMPUSVPN_LOG_LEVEL=WARNING ip netns exec "$NS" "$PY" -m campusvpn --config "$conf" serve \
        >>"$STATE/gateway.log" 2>&1 &
    pid=$!
    echo "$pid" >"$STATE/gateway.pid"
    for _ in $(seq 1 100); do
        if ip netns exec "$NS" ss -Htln "sport = :$GW_PORT" | grep -q .; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { cat "$STATE/gateway.log" >&2; exit 1; }
        sleep 0.2
    done
}

case "$cmd" in
restart)
    launch "$STATE/site/campusvpn.toml"
    cat "$STATE/gateway.pid"
    ;;
start)
    rm -rf "$STATE"; mkdir -p "$STATE"
    site="$STATE/site"
    "$PY" -m campusvpn init --dir "$site" --service-user "" >/dev/null  # root as before (a Python under /root is out of a service user's reach)
    conf="$site/campusvpn.toml"
    # The test bed's network, and limits that let one user hold 1000+ sessions and reconnect often.
    "$PY" - "$conf" "$DATABASE" "$DTLS" "$WORKERS" <<'PYEOF'
import sys
p = sys.argv[1]; s = open(p).read()
if sys.argv[2]:
    s = s.replace('database = "sqlite:///campusvpn.db"', f'database = "{sys.argv[2]}"')
s = s.replace("\ndtls = true\n", "\ndtls = true\n" if sys.argv[3] == "on" else "\ndtls = false\n")
w = sys.argv[4]
s = s.replace('\nworkers = "auto"\n', '\nworkers = "auto"\n' if w == "auto" else f"\nworkers = {int(w)}\n")
for a, b in [('listen = "0.0.0.0:443"', 'listen = "10.99.0.2:443"'),
             ('split_include = ["10.0.0.0/8"]', 'split_include = ["10.98.0.0/24"]'),
             ('dns = []', 'dns = ["10.98.0.2"]'),
             ('max_sessions_per_user = 3', 'max_sessions_per_user = 100'),
             ('max_pending = 256', 'max_pending = 20000'),
             # the idle bench's thousands of clients share one address, which the defence caps at 16
             ('max_pending_per_address = 16', 'max_pending_per_address = 20000'),
             ('source_lock_after = 100', 'source_lock_after = 10000'),
             ('max_per_user = 10', 'max_per_user = 100'),
             ('hostname = "vpn.example.ac.jp"', 'hostname = "10.99.0.2"'),
             ('dpd = "30s"', 'dpd = "90s"'), ('keepalive = "20s"', 'keepalive = "60s"'),
             # the idle bench opens all its sessions before their tunnels connect
             ('disconnected_timeout = "5m"', 'disconnected_timeout = "30m"')]:
    assert a in s, a
    s = s.replace(a, b)
open(p, "w").write(s)
PYEOF
    # In the gateway's namespace: that is where a --database server on its loopback is reachable.
    eval "$(ip netns exec "$NS" "$PY" "$HERE/bench_user.py" "$conf" "$GW_USER" "$GW_PASS")"
    launch "$conf"
    pin="pin-sha256:$(pin_of "$site/tls/cert.pem")"
    cat >"$STATE/gw.env" <<ENV
GW_NAME=campusvpn
GW_ADDR=$GW_ADDR
GW_PORT=$GW_PORT
GW_URL=https://$GW_ADDR:$GW_PORT/d/$BENCH_DEVICE_TOKEN
GW_USER=$GW_USER
GW_PASS=$GW_PASS
GW_PIN=$pin
GW_DTLS=$DTLS
GW_PID=$(cat "$STATE/gateway.pid")
GW_NETNS=$NS
GW_SESSIONS_CMD="$PY -m campusvpn --config $conf session list"
# Repeated connects sign in from a trusted device (password only); password+TOTP is measured by
# bench/connect_time.py with this secret:
BENCH_TOTP_SECRET=$BENCH_TOTP_SECRET
BENCH_CONFIG=$conf
ENV
    echo "$pin"
    ;;
stop)
    if [ -f "$STATE/gateway.pid" ]; then
        pid=$(cat "$STATE/gateway.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$STATE/gateway.pid"
    fi
    ;;
*) echo "usage: $0 start --dtls on|off [--database URL] [--workers N|auto] --state DIR | stop --state DIR | restart --state DIR" >&2; exit 2 ;;
esac
