#!/usr/bin/env bash
# The soak with faults (bench/soak.py), in the project's venv with the PostgreSQL driver. As root:
#   bash bench/soak.sh [--minutes 10 --idle 1000 --signins-per-s 10 --pingers 20 --workers 2 --save FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
install_project dev
command -v pg_ctlcluster >/dev/null || apt_install postgresql
exec python3 bench/soak.py run "$@"
