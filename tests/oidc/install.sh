#!/bin/sh
# Installs oidc-provider for the tests into a cache outside git (never node_modules in the tree).
set -e
dir="${CAMPUSVPN_NPM_CACHE:-/var/cache/campusvpn-tests/npm}"
mkdir -p "$dir"
[ -f "$dir/node_modules/oidc-provider/package.json" ] && exit 0
exec npm install --no-audit --no-fund --prefix "$dir" oidc-provider@8
