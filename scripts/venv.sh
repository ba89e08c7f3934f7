# Sourced by scripts/run and scripts/test: the project's own virtual environment in ./.venv.
# Debian's python3 refuses `pip install` outside one (PEP 668), and a venv keeps the system's packages apart.
# Every step fails loudly: the caller runs under `set -euo pipefail`.

VENV="$PWD/.venv"

# apt-get that waits (up to 10 minutes) for another apt or dpkg to finish instead of failing at once.
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "campusvpn: needs the Debian packages: $*; install them as root (apt-get install $*) and run this again" >&2
        return 1
    fi
    echo "== apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

# Create ./.venv with the python3 found on PATH (once), and put it first on PATH.
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "" 2>/dev/null; then
        command -v python3 >/dev/null || apt_install python3
        # Debian ships venv's pip bootstrap apart, in python3-venv.
        python3 -c "import ensurepip, venv" 2>/dev/null || apt_install python3-venv
        echo "== creating the virtual environment $VENV with $(command -v python3) ($(python3 --version))"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    export VIRTUAL_ENV="$VENV"
    export PATH="$VENV/bin:$PATH"
}

# pip install -e ".[EXTRAS]" into the venv; skipped when pyproject.toml has not changed since the last install.
install_project() {
    local spec=".${1:+[$1]}"
    local stamp
    stamp="$spec $(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$VENV/.campusvpn-installed" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    echo "== pip install -e '$spec' (into $VENV)"
    local errors
    errors=$(mktemp)
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec" 2>"$errors"; then
        cat "$errors" >&2
        rm -f "$errors"
        echo "campusvpn: pip install -e '$spec' failed (see above)" >&2
        return 1
    fi
    # pip succeeded: show its warnings, less the harmless ones about package-index folders this machine lacks.
    grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" "$errors" >&2 || true
    rm -f "$errors"
    echo "$stamp" >"$VENV/.campusvpn-installed"
}
