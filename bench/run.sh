#!/usr/bin/env bash
# One command: ocserv and campusvpn on the same test bed (../shared/testbed, the real openconnect client)
# in ALTERNATING rounds, then bench/RESULTS.md with each figure's median over the rounds and its spread.
# As root:  bash bench/run.sh [--rounds 3] [--duration 8] [--quick] [options below]
#
# Each round measures, in this order (reversed in every other round, so neither gateway always goes
# first or last): ocserv DTLS on, campusvpn DTLS on, ocserv DTLS off, campusvpn DTLS off. Every slot
# starts the gateway afresh and takes the tunnel figures (bench.sh: ping RTT, TCP 1 and 4 streams both
# ways, one iperf3 run of --duration seconds each). The DTLS-off slots also take the connect time
# (bench/connect_time.py: sign-in + tunnel + first ping; campusvpn password + TOTP, ocserv password only)
# and the login rate (bench/login_rate.py, campusvpn with all its workers); ocserv's DTLS-off slot the RSS
# per idle session (bench.sh memory phase). A fifth slot per round, campusvpn with one worker, takes the
# one-worker login rate and then campusvpn's RSS per idle session (its hash pool already started by the
# sign-ins, so it is not counted as the sessions' memory). Once per run: the plain-forwarding baseline,
# --idle-tunnels idle tunnels on campusvpn (bench/idle_sessions.py) and the sign-in core alone
# (bench/signin_rate.py). The machine's load average and CPU steal are sampled at every slot.
#
# Options (defaults; --quick: 1 round, short everything, 1,000 idle tunnels, for a smoke run):
#   --rounds N (3)  --duration S (7: iperf3 seconds)  --connects N (8)  --login-seconds S (6)
#   --parallel N (4: openconnect clients of the login rate)  --sessions N (50: RSS per idle session)
#   --idle-secs S (5: keep-alive window of those sessions)  --idle-tunnels N (10000; 0 skips)
#   --out DIR (bench/results/<UTC stamp>)  --no-report (figures only, no RESULTS.md)
# Python: $PYTHON when set (it must have the project's dependencies and see its sources, e.g.
# PYTHON=python3 PYTHONPATH=$PWD/src), else the project's .venv (made and filled on first use).
# Takes about 25 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
TB=$(cd "$PROJECT/../shared/testbed" && pwd)
ROUNDS=3; DURATION=7; CONNECTS=8; LOGIN_SECONDS=6; PARALLEL=4; SESSIONS=50; IDLE_SECS=5; IDLE_TUNNELS=10000
OUT=""; REPORT=1
while (($#)); do
    case "$1" in
        --quick) ROUNDS=1; DURATION=3; CONNECTS=3; LOGIN_SECONDS=3; SESSIONS=10; IDLE_SECS=3; IDLE_TUNNELS=1000; shift ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --connects) CONNECTS=$2; shift 2 ;;
        --login-seconds) LOGIN_SECONDS=$2; shift 2 ;;
        --parallel) PARALLEL=$2; shift 2 ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --idle-secs) IDLE_SECS=$2; shift 2 ;;
        --idle-tunnels) IDLE_TUNNELS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: run as root (network namespaces)" >&2; exit 2; }
STAMP=$(date -u +%Y%m%d-%H%M)
OUT=${OUT:-$PROJECT/bench/results/$STAMP}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
# Gateway state (sites, keys, databases) and bulky logs stay out of the results folder.
WORK=$(mktemp -d /tmp/campusvpn-bench.XXXXXX)
chmod 0755 "$WORK"  # ocserv's workers run as nobody and must reach its socket files in there
OC_STATE=$WORK/oc-state; CV_STATE=$WORK/cv-state

if [ -z "${PYTHON:-}" ]; then
    . scripts/venv.sh  # a fresh clone: the project's .venv with the bench extra (matplotlib)
    ensure_venv
    install_project bench
    PYTHON=$VENV/bin/python
fi
export PYTHON  # bench/campusvpn-gw.sh starts campusvpn with it
PY=$PYTHON
command -v ocserv >/dev/null && command -v openconnect >/dev/null && command -v iperf3 >/dev/null ||
    "$TB/netns-testbed.sh" install

log() { echo "[run.sh $(date +%T)] $*" | tee -a "$OUT/run.log" >&2; }
sample() {  # LABEL: load average and the cpu line of /proc/stat (for steal), one line per slot edge
    echo "$(date +%s) $1 $(cut -d' ' -f1-3 /proc/loadavg) $(head -1 /proc/stat)" >>"$OUT/load.txt"
}

CV_UP=0; OC_UP=0; BED_UP=0
cleanup() {
    set +e
    ((CV_UP)) && "$PROJECT/bench/campusvpn-gw.sh" stop --state "$CV_STATE"  # by its pid
    ((OC_UP)) && "$TB/ocserv-gw.sh" stop --state "$OC_STATE"
    ((BED_UP)) && "$TB/netns-testbed.sh" down >/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [ -s /run/vb-testbed/created ]; then
    echo "bench/run.sh: the test bed is already up (another bench?); bring it down first: $TB/netns-testbed.sh down" >&2
    exit 1
fi
"$TB/netns-testbed.sh" up --no-install >/dev/null
BED_UP=1

T0=$(date +%s)
{
    echo "started: $(date -u +%FT%TZ)"
    echo "options: rounds=$ROUNDS duration=${DURATION}s connects=$CONNECTS login_seconds=$LOGIN_SECONDS parallel=$PARALLEL sessions=$SESSIONS idle_secs=$IDLE_SECS idle_tunnels=$IDLE_TUNNELS"
    echo "campusvpn: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bench || echo +changes)"
    echo "kernel: $(uname -r)"
    for p in ocserv openconnect iperf3 libgnutls30 openssl; do
        echo "$p: $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo n/a)"
    done
    echo "python: $("$PY" --version 2>&1)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
    echo "memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
} >"$OUT/meta.txt"
: >"$OUT/figures.txt"

# figures TAG: keep stdin's figure lines as "TAG name value unit" in figures.txt, notes as they are
figures() { tee -a "$OUT/notes.txt" | awk -v t="$1" '!/^#/ && NF >= 3 {print t, $0; fflush()}' >>"$OUT/figures.txt"; }

gw_start() {  # GW MODE [WORKERS]: start one gateway in vb-gw; sets STATE
    if [ "$1" = ocserv ]; then
        "$TB/ocserv-gw.sh" start --dtls "$2" --state "$OC_STATE" >/dev/null; OC_UP=1; STATE=$OC_STATE
    else
        "$PROJECT/bench/campusvpn-gw.sh" start --dtls "$2" --workers "${3:-auto}" --state "$CV_STATE" >/dev/null
        CV_UP=1; STATE=$CV_STATE
    fi
}
gw_stop() {
    if [ "$1" = ocserv ]; then "$TB/ocserv-gw.sh" stop --state "$OC_STATE" >/dev/null; OC_UP=0
    else "$PROJECT/bench/campusvpn-gw.sh" stop --state "$CV_STATE"; CV_UP=0; fi
}
keep_logs() {  # LOGDIR DEST: the small logs of one bench.sh call (CPU per run, steal per run, notes)
    mkdir -p "$2"
    for f in runs.txt cpu.txt bench.log meta.txt setup-breakdown.txt; do
        # without campusvpn's trusted-device token (its URL path), though its site is thrown away
        [ ! -f "$1/$f" ] || sed 's,/d/[A-Za-z0-9_-]*,/d/TOKEN,g' "$1/$f" >"$2/$f"
    done
}
testbed() {  # TAG PHASES LOGDIR [bench.sh options]: the test bed's measurements on the running gateway
    local tag=$1 phases=$2 logs=$3; shift 3
    "$TB/bench.sh" --gw-env "$STATE/gw.env" --phases "$phases" --reps 1 --duration "$DURATION" \
        --sessions "$SESSIONS" --idle-secs "$IDLE_SECS" --steal-retries 1 --log-dir "$logs" "$@" |
        figures "$tag" || log "bench.sh $phases failed in $tag"
}
signins() {  # TAG GW CONNECT(yes|no) NAME: connect time and login rate against the running gateway
    local tag=$1 gw=$2 connect=$3 name=$4
    ( . "$STATE/gw.env"
      if [ "$gw" = ocserv ]; then who=(--password-only "$GW_USER" "$GW_PASS"); else who=(--config "$BENCH_CONFIG"); fi
      cd "$PROJECT/bench"
      if [ "$connect" = yes ]; then
          "$PY" connect_time.py "${who[@]}" --name "$gw" --pin "$GW_PIN" --rounds "$CONNECTS" ||
              log "connect_time.py failed in $tag"
      fi
      # campusvpn signs each user in once (a TOTP code is accepted once): enough users for 60 sign-ins/s
      "$PY" login_rate.py "${who[@]}" --name "$name" --pin "$GW_PIN" --seconds "$LOGIN_SECONDS" \
          --parallel "$PARALLEL" --users $((LOGIN_SECONDS * 60)) || log "login_rate.py failed in $tag"
    ) | figures "$tag"
}

tunnel_slot() {  # ROUND GW MODE
    local r=$1 gw=$2 mode=$3 tag="r$1" dest="$OUT/r$1/$2-dtls-$3" logs="$WORK/logs/r$1-$2-$3"
    log "round $r: $gw, DTLS $mode"
    sample "r$r.$gw.dtls-$mode.start"
    gw_start "$gw" "$mode"
    testbed "$tag" tunnel "$logs"
    keep_logs "$logs" "$dest"
    if [ "$mode" = off ]; then
        if [ "$gw" = ocserv ]; then
            signins "$tag" ocserv yes ocserv
            testbed "$tag" memory "$logs-mem"
            keep_logs "$logs-mem" "$dest-memory"
        else
            signins "$tag" campusvpn yes campusvpn.workers-all
        fi
    fi
    gw_stop "$gw"
    sample "r$r.$gw.dtls-$mode.end"
}

one_worker_slot() {  # ROUND: campusvpn with one worker: login rate, then RSS per idle session
    local r=$1 tag="r$1" logs="$WORK/logs/r$1-campusvpn-w1"
    log "round $r: campusvpn, one worker (login rate, RSS per idle session)"
    sample "r$r.campusvpn.workers-1.start"
    gw_start campusvpn off 1
    signins "$tag" campusvpn no campusvpn.workers-1
    testbed "$tag" memory "$logs"
    keep_logs "$logs" "$OUT/r$r/campusvpn-workers-1-memory"
    gw_stop campusvpn
    sample "r$r.campusvpn.workers-1.end"
}

log "results in $OUT"
sample "start"
log "plain forwarding baseline (no VPN)"
"$TB/bench.sh" --phases raw --reps 1 --duration "$DURATION" --log-dir "$WORK/logs/raw" | figures r0 ||
    log "raw baseline failed"
ORDER=("ocserv on" "campusvpn on" "ocserv off" "campusvpn off")
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$OUT/r$r"
    top -b -n1 -w 200 2>/dev/null | head -20 >"$OUT/r$r/top-at-start.txt" || true
    slots=("${ORDER[@]}")
    if ((r % 2 == 0)); then slots=("campusvpn off" "ocserv off" "campusvpn on" "ocserv on"); fi
    for s in "${slots[@]}"; do
        # shellcheck disable=SC2086
        tunnel_slot "$r" $s
    done
    one_worker_slot "$r"
done

if ((IDLE_TUNNELS > 0)); then  # campusvpn holding many idle tunnels, one worker (its pid is measured)
    log "campusvpn holding $IDLE_TUNNELS idle tunnels"
    sample "idle.start"
    gw_start campusvpn off 1
    ( . "$STATE/gw.env"
      ip netns exec vb-client "$PY" "$PROJECT/bench/idle_sessions.py" --config "$BENCH_CONFIG" \
          --sessions "$IDLE_TUNNELS" --hold 30 --gw-pid "$GW_PID" --user 3000000000 ) | figures idle ||
        log "idle_sessions.py failed"
    gw_stop campusvpn
    sample "idle.end"
fi
log "the sign-in core and Argon2id alone (no gateway)"
"$PY" "$PROJECT/bench/signin_rate.py" | figures core || log "signin_rate.py failed"
sample "end"
echo "duration: $(( $(date +%s) - T0 )) s" >>"$OUT/meta.txt"
echo "finished: $(date -u +%FT%TZ)" >>"$OUT/meta.txt"
log "done in $(( $(date +%s) - T0 )) s"
if ((REPORT)); then
    "$PY" "$PROJECT/bench/report.py" "$OUT" "$PROJECT/bench"
    log "report: $PROJECT/bench/RESULTS.md (figures and logs in $OUT)"
fi
